//! Code shared by the fuzz targets (`fuzz_targets/*.rs`) and the seed generator
//! (`examples/seeds.rs`). See docs/reliability.md, "Fuzzing".

use std::fmt::Debug;

use bpfns_proto::{decode, decode_len, encode, FrameError, HEADER_LEN};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What became of one frame of a byte stream.
#[derive(Debug)]
pub enum Frame<'a> {
    /// A whole frame: its body.
    Body(&'a [u8]),
    /// The header announced more than `max` bytes: the reader answers and hangs up.
    TooLarge { len: usize, max: usize },
}

/// Split `stream` into frames as a reader with limit `max` does (the daemon's `connection`
/// with `MAX_REQUEST`, the client with `MAX_RESPONSE`): a header, checked by `decode_len`
/// before anything else is read, then that many bytes. A stream that ends inside a frame
/// ends the connection (the reader's `recv_exact` fails): no frame. Stops after a
/// `TooLarge`, as the readers do.
pub fn frames(stream: &[u8], max: usize, mut f: impl FnMut(Frame<'_>)) {
    let mut rest = stream;
    while let Some((header, tail)) = rest.split_first_chunk::<HEADER_LEN>() {
        let len = match decode_len(*header, max) {
            Ok(len) => len,
            Err(FrameError::TooLarge { len, max: m }) => {
                assert_eq!(m, max);
                assert!(len > max);
                assert_eq!(len, u32::from_le_bytes(*header) as usize);
                f(Frame::TooLarge { len, max });
                return;
            }
            Err(e) => panic!("decode_len can only fail with TooLarge, not {e}"),
        };
        assert!(len <= max);
        let Some((body, tail)) = tail.split_at_checked(len) else {
            return;
        };
        f(Frame::Body(body));
        rest = tail;
    }
}

/// The round-trip property: a message that decoded re-encodes into a frame whose header
/// announces its body, whose body decodes to the same value, and whose encoding is a fixed
/// point (encoding the decoded copy gives the same bytes).
pub fn round_trip<T>(msg: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let frame = encode(msg, usize::MAX).expect("a decoded message re-encodes");
    let (header, body) = frame
        .split_first_chunk::<HEADER_LEN>()
        .expect("a frame has a header");
    let len = decode_len(*header, usize::MAX).expect("no limit");
    assert_eq!(len, body.len(), "the header announces the body");
    let back: T = decode(body).unwrap_or_else(|e| {
        panic!(
            "re-encoded message does not decode: {e}\nvalue: {msg:?}\nbody: {}",
            String::from_utf8_lossy(body)
        )
    });
    assert_eq!(&back, msg, "round trip changed the value");
    let again = encode(&back, usize::MAX).expect("re-encodes");
    assert_eq!(again, frame, "encoding is not a fixed point");
}

/// Little-endian u32 at `off` of `b`, zeros past its end.
pub fn le_u32(b: &[u8], off: usize) -> u32 {
    let mut x = [0u8; 4];
    for (i, v) in x.iter_mut().enumerate() {
        *v = b.get(off + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(x)
}

/// Little-endian u64 at `off` of `b`, zeros past its end.
pub fn le_u64(b: &[u8], off: usize) -> u64 {
    u64::from(le_u32(b, off)) | u64::from(le_u32(b, off + 4)) << 32
}

/// Layout of a `supervisor_attr` input: `cmd` (u32 LE, bpf()'s first argument), `size`
/// (u64 LE, its third, as the seccomp notification carries it), the caller's effective
/// capabilities (u64 LE), then the caller's memory at the attr pointer: the first
/// `read_len(size)` bytes are the attr (zeros past the end of the input), the rest feeds the
/// decisions (visible ids, query entries, a perf event's name).
pub const ATTR_INPUT_HEADER: usize = 20;

/// Build a `supervisor_attr` input.
pub fn attr_input(cmd: u32, size: u64, eff: u64, mem: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(ATTR_INPUT_HEADER + mem.len());
    v.extend_from_slice(&cmd.to_le_bytes());
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(&eff.to_le_bytes());
    v.extend_from_slice(mem);
    v
}
