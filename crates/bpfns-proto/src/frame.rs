//! Length-prefixed JSON frames.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;
/// Largest request body the daemon accepts (64 KiB): requests are small; a bound keeps a
/// hostile client from making the daemon allocate.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Largest response body a client accepts (64 MiB: a listing of 100k+ objects fits).
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// A frame that cannot be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("malformed message: {0}")]
    Json(serde_json::Error),
}

// The message names the JSON error, so it is not also a `source` (chains would repeat it).
impl From<serde_json::Error> for FrameError {
    fn from(e: serde_json::Error) -> Self {
        FrameError::Json(e)
    }
}

/// Encode `msg` as one frame (header and body).
pub fn encode<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    // Room for most messages at once (a big listing still grows by doubling).
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    serde_json::to_writer(&mut out, msg)?;
    let len = out.len() - HEADER_LEN;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    out[..HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(out)
}

/// The body length announced by a header, checked against `max` before anything is read.
pub fn decode_len(header: [u8; HEADER_LEN], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Decode a frame body.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(serde_json::from_slice(body)?)
}

pub use decode_body as decode;

/// Decode a response body. A listing (an `objects` or `namespaces` reply: up to megabytes)
/// is read through plain structs in one pass; the derived decoding of
/// [`Response`](crate::Response) (flattened, then tagged by `reply`) buffers the whole body
/// twice before reading it, which was most of the time a 10 000-map `bpfns map list` took.
/// Every other reply is decoded as derived.
pub fn decode_response(body: &[u8]) -> Result<crate::Response, FrameError> {
    use crate::{NsInfo, ObjectInfo, Outcome, Reply, Response};
    use serde::de::DeserializeOwned;
    use serde::Deserialize;

    // A first pass that reads the tag alone (everything else is skipped, not stored).
    #[derive(Deserialize)]
    struct Peek<'a> {
        #[serde(default, borrow)]
        ok: Option<PeekReply<'a>>,
    }
    #[derive(Deserialize)]
    struct PeekReply<'a> {
        #[serde(default, borrow)]
        reply: Option<std::borrow::Cow<'a, str>>,
    }
    // Anything but a plain listing (an `error` beside `ok`, fields of a newer bpfnsd) takes
    // the derived way.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Listing<T> {
        v: u32,
        seq: u64,
        #[serde(default)]
        fds: u32,
        ok: T,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Objects {
        #[serde(rename = "reply")]
        _reply: serde::de::IgnoredAny,
        objects: Vec<ObjectInfo>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Namespaces {
        #[serde(rename = "reply")]
        _reply: serde::de::IgnoredAny,
        namespaces: Vec<NsInfo>,
    }
    fn listing<T: DeserializeOwned>(
        body: &[u8],
        reply: impl FnOnce(T) -> Reply,
    ) -> Option<Response> {
        let l = serde_json::from_slice::<Listing<T>>(body).ok()?;
        Some(Response {
            v: l.v,
            seq: l.seq,
            fds: l.fds,
            result: Outcome::Ok(reply(l.ok)),
        })
    }

    // bpfnsd writes the tag first: found there, the tag costs no pass over the whole body
    // (megabytes for a listing). What a wrong guess would take for a listing is refused by
    // `listing` and decoded as derived.
    let tag = tag_up_front(body)
        .map(std::borrow::Cow::Borrowed)
        .or_else(|| {
            serde_json::from_slice::<Peek<'_>>(body)
                .ok()
                .and_then(|p| p.ok)
                .and_then(|r| r.reply)
        });
    let fast = match tag.as_deref() {
        Some("objects") => listing(body, |o: Objects| Reply::Objects { objects: o.objects }),
        Some("namespaces") => listing(body, |n: Namespaces| Reply::Namespaces {
            namespaces: n.namespaces,
        }),
        _ => None,
    };
    match fast {
        Some(r) => Ok(r),
        None => decode_body(body),
    }
}

/// The reply's tag if the body's first bytes hold it as bpfnsd writes it (`"ok":{"reply":"`
/// before anything of the reply). A `"` inside a JSON string is escaped, so these bytes are
/// the keys they look like.
fn tag_up_front(body: &[u8]) -> Option<&str> {
    const KEY: &[u8] = br#""ok":{"reply":""#;
    let head = &body[..body.len().min(256)];
    let at = head.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = head[at..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&head[at..at + len]).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let f = encode(&serde_json::json!({"a": 1}), 100).unwrap();
        let len = decode_len(f[..4].try_into().unwrap(), 100).unwrap();
        assert_eq!(len, f.len() - 4);
        let v: serde_json::Value = decode(&f[4..]).unwrap();
        assert_eq!(v["a"], 1);
        assert!(matches!(
            decode_len(1_000_000u32.to_le_bytes(), 100),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(encode(&"x".repeat(200), 100).is_err());
        assert!(decode::<serde_json::Value>(b"{not json").is_err());
    }

    /// An object with every detail set, so that a field left out of the flat wire form is
    /// seen.
    fn full_object(id: u32) -> crate::ObjectInfo {
        use crate::{ObjectDetails, ObjectInfo};
        use bpfns_model::{NsId, ObjectKind};
        ObjectInfo {
            id,
            kind: ObjectKind::Link,
            type_name: "tracing".into(),
            name: format!("o\"{id}\u{e9}"),
            namespace: "/a/b".into(),
            ns_id: NsId(7),
            prog_id: Some(3),
            details: ObjectDetails {
                bytes_key: Some(1),
                bytes_value: Some(2),
                max_entries: Some(3),
                flags: Some(4),
                btf_id: Some(5),
                tag: Some("0123456789abcdef".into()),
                loaded_at: Some(6),
                uid: Some(7),
                bytes_xlated: Some(8),
                bytes_jited: Some(9),
                bytes_memlock: Some(10),
                run_time_ns: Some(11),
                run_cnt: Some(12),
                map_ids: Some(vec![13, 14]),
                attach_type: Some("cgroup_inet_ingress".into()),
                cgroup_id: Some(15),
                ifindex: Some(16),
                netns_ino: Some(17),
                tp_name: Some("sys_enter".into()),
                target_name: Some("bpf_map".into()),
                target_obj_id: Some(18),
                target_btf_id: Some(19),
                map_id: Some(20),
                func_cnt: Some(21),
                pid: Some(22),
                pf: Some(23),
                hooknum: Some(24),
                priority: Some(-25),
                size: Some(26),
                kernel: Some(true),
            },
        }
    }

    /// The one-pass decoding of a listing gives what the derived decoding gives, every detail
    /// included; other replies and errors go the derived way.
    #[test]
    fn a_listing_decodes_as_the_derived_decoding_does() {
        use crate::{ErrorBody, ErrorCode, ObjectDetails, Outcome, Reply, Response};
        let mut sparse = full_object(2);
        sparse.prog_id = None;
        sparse.details = ObjectDetails::default();
        let listing = Response {
            v: 1,
            seq: 9,
            fds: 0,
            result: Outcome::Ok(Reply::Objects {
                objects: vec![full_object(1), sparse],
            }),
        };
        let namespaces = Response {
            v: 1,
            seq: 10,
            fds: 0,
            result: Outcome::Ok(Reply::Namespaces {
                namespaces: vec![full_namespace(), sparse_namespace()],
            }),
        };
        let others = [
            Response {
                v: 1,
                seq: 2,
                fds: 0,
                result: Outcome::Ok(Reply::Namespace(full_namespace())),
            },
            Response {
                v: 1,
                seq: 3,
                fds: 0,
                result: Outcome::Ok(Reply::Object(Box::new(full_object(4)))),
            },
            Response {
                v: 1,
                seq: 4,
                fds: 0,
                result: Outcome::Error(ErrorBody {
                    code: ErrorCode::Denied,
                    message: "no".into(),
                }),
            },
        ];
        // As encoded, a reply's tag is in the first bytes.
        for (r, tag) in [(&listing, "objects"), (&namespaces, "namespaces")] {
            assert_eq!(
                tag_up_front(&encode(r, MAX_RESPONSE).unwrap()[HEADER_LEN..]),
                Some(tag)
            );
        }
        for r in [&listing, &namespaces].into_iter().chain(&others) {
            let body = serde_json::to_vec(r).unwrap();
            let fast = decode_response(&body).unwrap();
            let derived: Response = decode(&body).unwrap();
            assert_eq!(fast, derived);
            assert_eq!(&fast, r);
        }
        // Unknown fields (a newer bpfnsd) are ignored on both paths.
        let body = br#"{"v":1,"seq":5,"ok":{"reply":"objects","objects":[{"id":1,"kind":"map","type":"array","name":"m","namespace":"/","ns_id":0,"new_field":[1,{"x":2}]}]},"extra":true}"#;
        let r = decode_response(body).unwrap();
        let Outcome::Ok(Reply::Objects { objects }) = r.result else {
            panic!("not a listing: {r:?}");
        };
        assert_eq!(objects[0].name, "m");
        // The tag after the listing (not where bpfnsd puts it) is found all the same.
        let body = br#"{"ok":{"objects":[{"id":1,"kind":"map","type":"array","name":"m","namespace":"/","ns_id":0}],"reply":"objects"},"seq":5,"v":1}"#;
        assert_eq!(tag_up_front(body), None);
        let Outcome::Ok(Reply::Objects { objects }) = decode_response(body).unwrap().result else {
            panic!("not a listing");
        };
        assert_eq!(objects[0].name, "m");
        let body = br#"{"v":1,"seq":6,"ok":{"reply":"namespaces","namespaces":[{"path":"/a","id":3,"parent":"/","depth":1,"objects":{"prog":0,"map":1,"link":0,"btf":0},"members":2,"max_maps":4,"new_field":{"x":[1]}}]}}"#;
        let r = decode_response(body).unwrap();
        let Outcome::Ok(Reply::Namespaces { namespaces }) = r.result else {
            panic!("not a namespace listing: {r:?}");
        };
        assert_eq!(
            (namespaces[0].kind_limits.max_maps, namespaces[0].members),
            (Some(4), 2)
        );
        // Left out (the same as the own policy, or an older bpfnsd): read as the own policy.
        assert_eq!(namespaces[0].effective_policy, Some(namespaces[0].policy));
        assert!(decode_response(b"{not json").is_err());
    }

    /// A namespace with every field set, limits per kind included (read back from among the
    /// namespace's own fields).
    pub(crate) fn full_namespace() -> crate::NsInfo {
        use bpfns_model::quota::KindLimits;
        use bpfns_model::{NsId, Policy};
        crate::NsInfo {
            path: "/a/b".into(),
            id: NsId(7),
            parent: Some("/a".into()),
            depth: 2,
            objects: crate::ObjectCounts {
                prog: 1,
                map: 2,
                link: 3,
                btf: 4,
            },
            members: 5,
            bpffs: "/run/bpfns/ns/7".into(),
            policy: Policy::DEFAULT,
            effective_policy: Some(Policy::HOST),
            supervised_creations: true,
            max_objects: Some(64),
            cgroup: Some("/sys/fs/cgroup/t".into()),
            records: Some(9),
            map_memory: Some(4096),
            map_memory_total: Some(8192),
            kind_limits: KindLimits {
                max_progs: Some(1),
                max_maps: Some(2),
                max_links: Some(3),
                max_btf: Some(4),
            },
            kind_records: Some(crate::ObjectCounts {
                prog: 1,
                map: 1,
                link: 1,
                btf: 1,
            }),
        }
    }

    /// The root as an older bpfnsd describes it: what may be absent is (an absent effective
    /// policy reads back as the own one).
    pub(crate) fn sparse_namespace() -> crate::NsInfo {
        crate::NsInfo {
            path: "/".into(),
            parent: None,
            depth: 0,
            bpffs: String::new(),
            effective_policy: Some(bpfns_model::Policy::DEFAULT),
            supervised_creations: false,
            max_objects: None,
            cgroup: None,
            records: None,
            map_memory: None,
            map_memory_total: None,
            kind_limits: bpfns_model::quota::KindLimits::NONE,
            kind_records: None,
            ..full_namespace()
        }
    }
}
