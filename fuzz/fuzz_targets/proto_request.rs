//! The daemon's side of the protocol: arbitrary bytes as what a client writes on its
//! connection, read as `bpfnsd::server::connection` reads it — frames of a header checked
//! by `decode_len(_, MAX_REQUEST)` and a body decoded as a `Request`; a body that does not
//! decode gets the `bad_request` answer (with the `seq` fished out of any JSON), and the
//! connection goes on. Properties: nothing panics; every answer the daemon would send here
//! encodes within `MAX_RESPONSE`; every request that decodes round-trips.
#![no_main]

use bpfns_fuzz::{frames, round_trip, Frame};
use bpfns_proto::{decode, encode, ErrorCode, Request, Response, MAX_REQUEST, MAX_RESPONSE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    frames(data, MAX_REQUEST, |frame| match frame {
        Frame::TooLarge { len, max } => {
            let msg = format!("request of {len} bytes exceeds the limit of {max} bytes");
            encode(&Response::error(0, ErrorCode::TooLarge, msg), MAX_RESPONSE)
                .expect("the too-large answer encodes");
        }
        Frame::Body(body) => match decode::<Request>(body) {
            Ok(req) => round_trip(&req),
            Err(e) => {
                let seq = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v.get("seq").and_then(|s| s.as_u64()))
                    .unwrap_or(0);
                let msg = format!("{e}; see docs/protocol.md for the request format");
                let resp = Response::error(seq, ErrorCode::BadRequest, msg);
                encode(&resp, MAX_RESPONSE).expect("the bad-request answer encodes");
            }
        },
    });
});
