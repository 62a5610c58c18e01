//! bpfnsd: the privileged daemon of bpfns.
#![deny(unsafe_code)]

pub mod supervisor;
