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
    let mut out = vec![0u8; HEADER_LEN];
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

/// Decode a response body. An `objects` reply (a listing: up to megabytes) is read through
/// plain structs in one pass; the derived decoding of [`Response`](crate::Response)
/// (flattened, then tagged by `reply`) buffers the whole body twice before reading it, which
/// was most of the time a 10 000-map `bpfns map list` took. Every other reply is decoded as
/// derived.
pub fn decode_response(body: &[u8]) -> Result<crate::Response, FrameError> {
    use crate::{ObjectInfo, Outcome, Reply, Response};
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
    struct Listing {
        v: u32,
        seq: u64,
        #[serde(default)]
        fds: u32,
        ok: Objects,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Objects {
        #[serde(rename = "reply")]
        _reply: serde::de::IgnoredAny,
        objects: Vec<ObjectInfo>,
    }

    let is_listing = serde_json::from_slice::<Peek<'_>>(body)
        .ok()
        .and_then(|p| p.ok)
        .and_then(|r| r.reply)
        .is_some_and(|tag| tag == "objects");
    if is_listing {
        if let Ok(l) = serde_json::from_slice::<Listing>(body) {
            return Ok(Response {
                v: l.v,
                seq: l.seq,
                fds: l.fds,
                result: Outcome::Ok(Reply::Objects {
                    objects: l.ok.objects,
                }),
            });
        }
    }
    decode_body(body)
}

#[cfg(test)]
mod tests {
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
        let others = [
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
        for r in std::iter::once(&listing).chain(&others) {
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
        assert!(decode_response(b"{not json").is_err());
    }
}
