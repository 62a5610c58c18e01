//! The bpfnsd wire protocol (documented for humans in `docs/protocol.md`).
//!
//! A Unix stream socket carries frames: a 4-byte little-endian length, then that many bytes
//! of JSON. File descriptors travel as `SCM_RIGHTS` on the `sendmsg` that carries the first
//! byte of the frame they belong to; the frame says how many to expect (`fds`). Requests are
//! bounded by [`MAX_REQUEST`] (the daemon refuses bigger ones and closes the connection),
//! responses by [`MAX_RESPONSE`].
//!
//! This crate is pure: encoding and decoding here, sockets in `bpfns-client` and `bpfnsd`.
#![forbid(unsafe_code)]

mod frame;
mod listing;
mod messages;
mod ns_listing;
mod object_listing;

pub use frame::{
    decode, decode_len, decode_response, encode, FrameError, HEADER_LEN, MAX_REQUEST, MAX_RESPONSE,
};
pub use listing::objects_array;
pub use messages::*;
pub use ns_listing::{EncodedDescription, EncodedNamespaces};
pub use object_listing::EncodedObjects;

/// The protocol version this crate speaks. A request with another `v` gets
/// [`ErrorCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Default socket path of bpfnsd.
pub const DEFAULT_SOCKET: &str = "/run/bpfns/bpfns.sock";
