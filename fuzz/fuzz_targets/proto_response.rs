//! The client's side of the protocol (`bpfns-client`): arbitrary bytes as what the daemon
//! writes, read as frames of a header checked by `decode_len(_, MAX_RESPONSE)` and a body
//! decoded as a `Response` the way the client does (`decode_response`: listings in one pass).
//! Properties: nothing panics; where both decode a body, the client's decoding agrees with
//! the derived one; every
//! response that decodes round-trips (re-encodes, decodes to the same value, and its encoding
//! is a fixed point); where `objects_array` copies a listing out of any body (what `bpfns KIND
//! list -j` prints), the copy is a JSON array; out of a listing as bpfnsd encodes it, the
//! copy is the decoded objects less their `kind`, and a listing of one kind in increasing id
//! order is always copied.
#![no_main]

use bpfns_fuzz::{frames, round_trip, Frame};
use bpfns_proto::{decode, decode_response, objects_array, Outcome, Reply, Response, MAX_RESPONSE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    frames(data, MAX_RESPONSE, |frame| {
        if let Frame::Body(body) = frame {
            let derived = decode::<Response>(body);
            let fast = decode_response(body);
            if let (Ok(d), Ok(f)) = (&derived, &fast) {
                assert_eq!(d, f, "the one-pass decoding of a listing differs");
            }
            // Any body: a copy, if taken, is a JSON array.
            for kind in ["map", "prog", "link", "btf"] {
                if let Some(copied) = objects_array(body, kind, &["cgroup_id", "ifindex"]) {
                    let printed: serde_json::Value =
                        serde_json::from_slice(&copied).expect("a copied listing is JSON");
                    assert!(printed.is_array(), "a copied listing is an array");
                }
            }
            // A listing as bpfnsd encodes it: the copy is exactly the decoded objects less
            // their kind.
            if let Ok(
                resp @ Response {
                    result: Outcome::Ok(Reply::Objects { objects }),
                    ..
                },
            ) = &fast
            {
                let encoded = serde_json::to_vec(resp).expect("encodes");
                let mut decoded = serde_json::to_value(objects).expect("encodes");
                for o in decoded.as_array_mut().expect("array").iter_mut() {
                    o.as_object_mut().expect("object").remove("kind");
                }
                let kinds = ["map", "prog", "link", "btf"];
                for kind in kinds {
                    if let Some(copied) = objects_array(&encoded, kind, &[]) {
                        let printed: serde_json::Value =
                            serde_json::from_slice(&copied).expect("JSON");
                        assert_eq!(printed, decoded, "the copied listing differs");
                    }
                }
                // One kind, ids increasing: always taken.
                let one_kind = objects
                    .windows(2)
                    .all(|w| w[0].id < w[1].id && w[0].kind == w[1].kind);
                if one_kind && resp.fds == 0 && resp.v == 1 {
                    if let Some(k) = objects.first() {
                        assert!(
                            objects_array(&encoded, k.kind.name(), &[]).is_some(),
                            "not taken"
                        );
                    }
                }
            }
            if let Ok(resp) = fast {
                round_trip(&resp);
            }
        }
    });
});
