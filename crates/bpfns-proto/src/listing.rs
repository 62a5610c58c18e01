//! A listing's objects as JSON, taken from bpfnsd's answer without decoding it.
//!
//! `bpfns KIND list -j` prints what bpfnsd sends, less each object's `kind` (a listing has
//! one). Decoding a 10 000-object answer into structs and encoding it again was most of the
//! CLI's work; [`objects_array`] instead copies the array once, checking its shape on the way.
//! Anything it does not recognise is left to the full decoding ([`decode_response`]), so that
//! a reply of another shape (an error, a newer field order) still prints correctly.
//!
//! [`decode_response`]: crate::decode_response

/// The `objects` array of an `objects` reply `body`, each object without its leading
/// `"kind":"<kind>"` field: the bytes `bpfns KIND list -j` prints. `None` unless `body` is
/// exactly a plain listing of `kind` whose objects start `{"id":N,"kind":"<kind>"`, come in
/// increasing id order, and contain none of the keys `decoded_keys` (fields the CLI completes
/// itself, such as a map's `ifindex`, which it turns into a device name).
pub fn objects_array(body: &[u8], kind: &str, decoded_keys: &[&str]) -> Option<Vec<u8>> {
    const SUFFIX: &[u8] = b"]}}";
    let rest = body.strip_prefix(b"{\"v\":1,\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = rest[digits..].strip_prefix(b",\"ok\":{\"reply\":\"objects\",\"objects\":")?;
    if digits == 0 || !rest.ends_with(SUFFIX) {
        return None;
    }
    // The array, with its closing bracket.
    let array = &rest[..rest.len() - SUFFIX.len() + 1];
    // A key's quoted name followed by a colon can only be a key: inside a string the quotes
    // are escaped.
    if decoded_keys
        .iter()
        .any(|k| contains(array, format!("\"{k}\":").as_bytes()))
    {
        return None;
    }
    let kind_field = format!(",\"kind\":\"{kind}\"");
    let mut out = Vec::with_capacity(array.len());
    let mut depth = 0u32;
    let mut last_id: Option<u64> = None;
    // `array[copied..i]` is still to be copied to `out`.
    let (mut copied, mut i) = (0, 0);
    while i < array.len() {
        match array[i] {
            b'"' => {
                // To the string's closing quote: the next one not escaped.
                let mut j = i + 1;
                loop {
                    j += memchr::memchr2(b'"', b'\\', array.get(j..)?)?;
                    if array[j] == b'"' {
                        break;
                    }
                    j += escape_len(array.get(j..)?)?;
                }
                i = j + 1;
                continue;
            }
            b'[' => depth += 1,
            b'{' if depth == 1 => {
                // An object of the listing: `{"id":N,"kind":"<kind>"`, ids increasing.
                let obj = array[i..].strip_prefix(b"{\"id\":")?;
                let n = obj.iter().take_while(|b| b.is_ascii_digit()).count();
                let id: u64 = std::str::from_utf8(&obj[..n]).ok()?.parse().ok()?;
                if last_id.is_some_and(|last| id <= last) {
                    return None;
                }
                last_id = Some(id);
                obj[n..].strip_prefix(kind_field.as_bytes())?;
                let head = i + b"{\"id\":".len() + n;
                out.extend_from_slice(&array[copied..head]);
                copied = head + kind_field.len();
                i = copied;
                depth += 1;
                continue;
            }
            b'{' => depth += 1,
            b']' | b'}' => depth = depth.checked_sub(1)?,
            _ => {}
        }
        i += 1;
        if depth == 0 && i < array.len() {
            return None;
        }
    }
    if depth != 0 {
        return None;
    }
    out.extend_from_slice(&array[copied..]);
    // The scan follows strings, escapes and nesting only; the JSON itself is checked here
    // (skipped, not stored: a fraction of decoding it), and its text, which skipping does not
    // look at, must be UTF-8.
    std::str::from_utf8(&out).ok()?;
    serde_json::from_slice::<serde::de::IgnoredAny>(&out).ok()?;
    Some(out)
}

/// The length of the escape at the start of `s` (a backslash), if it is one JSON decoders
/// take: a `\\u` escape must name a character (a high surrogate only with its low half), as
/// serde_json wants it.
fn escape_len(s: &[u8]) -> Option<usize> {
    let hex = |at: usize| -> Option<u32> {
        let h = s.get(at..at + 4)?;
        if !h.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    match s.get(1)? {
        b'u' => match hex(2)? {
            0xD800..=0xDBFF => {
                (s.get(6..8)? == b"\\u" && (0xDC00..=0xDFFF).contains(&hex(8)?)).then_some(12)
            }
            0xDC00..=0xDFFF => None,
            _ => Some(6),
        },
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(2),
        _ => None,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ObjectDetails, ObjectInfo, Outcome, Reply, Response};
    use bpfns_model::{NsId, ObjectKind};

    fn map(id: u32, name: &str, ifindex: Option<u32>) -> ObjectInfo {
        ObjectInfo {
            id,
            kind: ObjectKind::Map,
            type_name: "hash".into(),
            name: name.into(),
            namespace: "/a".into(),
            ns_id: NsId(3),
            prog_id: None,
            details: ObjectDetails {
                max_entries: Some(16),
                ifindex,
                ..Default::default()
            },
        }
    }

    fn body(objects: Vec<ObjectInfo>) -> Vec<u8> {
        serde_json::to_vec(&Response {
            v: 1,
            seq: 42,
            fds: 0,
            result: Outcome::Ok(Reply::Objects { objects }),
        })
        .unwrap()
    }

    /// What the CLI printed before: each object decoded, `kind` left out.
    fn decoded_without_kind(body: &[u8]) -> serde_json::Value {
        let r = crate::decode_response(body).unwrap();
        let Outcome::Ok(Reply::Objects { objects }) = r.result else {
            panic!("not a listing")
        };
        let mut v = serde_json::to_value(objects).unwrap();
        for o in v.as_array_mut().unwrap() {
            o.as_object_mut().unwrap().remove("kind");
        }
        v
    }

    #[test]
    fn a_listing_is_copied_without_kind_as_decoding_would_give_it() {
        let b = body(vec![
            map(7, "plain", None),
            map(9, "with\"quote{\"id\":1,\"kind\":\"map\"}]", None),
            map(12, "", None),
        ]);
        let out = objects_array(&b, "map", &["ifindex"]).expect("a plain listing");
        let printed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(printed, decoded_without_kind(&b));
        // Field order as the decoded objects serialize, not just the same values.
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("[{\"id\":7,\"type\":\"hash\",\"name\":\"plain\""),
            "{text}"
        );
        assert_eq!(objects_array(&body(vec![]), "map", &[]).unwrap(), b"[]");
    }

    #[test]
    fn anything_unusual_is_left_to_decoding() {
        let plain = body(vec![map(7, "a", None), map(9, "b", None)]);
        assert!(objects_array(&plain, "map", &[]).is_some());
        // Another kind, a key the CLI completes, ids out of order or repeated.
        assert!(objects_array(&plain, "prog", &[]).is_none());
        assert!(objects_array(&body(vec![map(7, "a", Some(2))]), "map", &["ifindex"]).is_none());
        assert!(objects_array(
            &body(vec![map(9, "a", None), map(7, "b", None)]),
            "map",
            &[]
        )
        .is_none());
        assert!(objects_array(
            &body(vec![map(7, "a", None), map(7, "b", None)]),
            "map",
            &[]
        )
        .is_none());
        // A key named like it only inside a string does not count.
        assert!(objects_array(
            &body(vec![map(7, "\"ifindex\":", None)]),
            "map",
            &["ifindex"]
        )
        .is_some());
        // Errors, other replies, passed fds, truncated or trailing bytes.
        let err = br#"{"v":1,"seq":3,"error":{"code":"denied","message":"no"}}"#;
        assert!(objects_array(err, "map", &[]).is_none());
        let fds = String::from_utf8(plain.clone())
            .unwrap()
            .replace("\"ok\"", "\"fds\":1,\"ok\"");
        assert!(objects_array(fds.as_bytes(), "map", &[]).is_none());
        assert!(objects_array(&plain[..plain.len() - 1], "map", &[]).is_none());
        let text = String::from_utf8(plain.clone()).unwrap();
        let stray = text.replace("}]}}", "},{\"x\":1}]}}");
        assert!(objects_array(stray.as_bytes(), "map", &[]).is_none());
        let closed_early = text.replace("}]}}", "}]]}}");
        assert!(objects_array(closed_early.as_bytes(), "map", &[]).is_none());
        let two = String::from_utf8(plain).unwrap().replace("]}}", "],[]}}");
        assert!(objects_array(two.as_bytes(), "map", &[]).is_none());
    }

    #[test]
    fn escapes_are_taken_only_where_decoders_take_them() {
        let with_name = |name: &str| {
            let b = String::from_utf8(body(vec![map(7, "x", None)])).unwrap();
            b.replace("\"name\":\"x\"", &format!("\"name\":\"{name}\""))
        };
        for good in [r"\u0041", r"\ud83d\ude00", r#"\"\\\/\b\f\n\r\t"#] {
            let b = with_name(good);
            let out = objects_array(b.as_bytes(), "map", &[]).expect(good);
            serde_json::from_slice::<serde_json::Value>(&out).expect(good);
        }
        let raw = with_name("x").replace("\"name\":\"x\"", "\"name\":\"\u{1}\"");
        assert!(
            objects_array(raw.as_bytes(), "map", &[]).is_none(),
            "a control character"
        );
        let mut latin1 = with_name("ab").into_bytes();
        let at = latin1.windows(2).position(|w| w == b"ab").unwrap();
        latin1[at] = 0xBB;
        assert!(objects_array(&latin1, "map", &[]).is_none(), "not UTF-8");
        for bad in [
            r"\ud800",
            r"\udc00",
            r"\ud800\u0041",
            r"\uzzzz",
            r"\x",
            r"\u12",
        ] {
            assert!(
                objects_array(with_name(bad).as_bytes(), "map", &[]).is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn cut_or_changed_answers_never_panic_and_are_never_taken() {
        let b = body(vec![map(7, "a\\\"b", None), map(9, "c", None)]);
        for cut in 0..b.len() {
            // Cut, and cut with the suffix put back (an unterminated string or object).
            assert!(objects_array(&b[..cut], "map", &[]).is_none(), "{cut}");
            let mut patched = b[..cut].to_vec();
            patched.extend_from_slice(b"]}}");
            if let Some(out) = objects_array(&patched, "map", &[]) {
                serde_json::from_slice::<serde_json::Value>(&out).expect("valid JSON");
            }
        }
    }
}
