//! The client's side of the protocol (`bpfns-client`): arbitrary bytes as what the daemon
//! writes, read as frames of a header checked by `decode_len(_, MAX_RESPONSE)` and a body
//! decoded as a `Response` the way the client does (`decode_response`: listings in one pass).
//! Properties: nothing panics; where both decode a body, the client's decoding agrees with
//! the derived one; every
//! response that decodes round-trips (re-encodes, decodes to the same value, and its encoding
//! is a fixed point).
#![no_main]

use bpfns_fuzz::{frames, round_trip, Frame};
use bpfns_proto::{decode, decode_response, Response, MAX_RESPONSE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    frames(data, MAX_RESPONSE, |frame| {
        if let Frame::Body(body) = frame {
            let derived = decode::<Response>(body);
            let fast = decode_response(body);
            if let (Ok(d), Ok(f)) = (&derived, &fast) {
                assert_eq!(d, f, "the one-pass decoding of a listing differs");
            }
            if let Ok(resp) = fast {
                round_trip(&resp);
            }
        }
    });
});
