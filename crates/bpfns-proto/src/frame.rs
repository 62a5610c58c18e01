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
}
