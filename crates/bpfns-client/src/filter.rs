//! The member filter (defined in `bpfns_sys::member_filter`, which bpfnsd's supervisor reads
//! too), as installed by [`crate::member`].

pub use bpfns_sys::member_filter::*;
