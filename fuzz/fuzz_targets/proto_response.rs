//! The client's side of the protocol (`bpfns-client`): arbitrary bytes as what the daemon
//! writes, read as frames of a header checked by `decode_len(_, MAX_RESPONSE)` and a body
//! decoded as a `Response`. Properties: nothing panics; every response that decodes
//! round-trips (re-encodes, decodes to the same value, and its encoding is a fixed point).
#![no_main]

use bpfns_fuzz::{frames, round_trip, Frame};
use bpfns_proto::{decode, Response, MAX_RESPONSE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    frames(data, MAX_RESPONSE, |frame| {
        if let Frame::Body(body) = frame {
            if let Ok(resp) = decode::<Response>(body) {
                round_trip(&resp);
            }
        }
    });
});
