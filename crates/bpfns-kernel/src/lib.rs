//! bpfns's kernel side: BPF programs (in `bpf/`) that keep, in the kernel and beyond any
//! daemon's lifetime, which namespace each task belongs to and which namespace owns each BPF
//! object; and the Rust code that loads, opens and unloads them.
//!
//! - [`loader`]: load/upgrade/unload, pinned under one bpffs directory ([`layout`]).
//! - [`Kernel`]: tag tasks, keep the namespace table, read ownership, list objects.
//! - [`hooks`]: the per-syscall hooks, attached only while some task is tagged.
//! - [`lsm`]: the optional BPF LSM layer, loaded beside the kernel side where the kernel allows.
//! - [`doctor`]: probe the running kernel for every feature bpfns uses.
#![deny(unsafe_code)]

pub mod abi;
pub mod error;
pub mod hooks;
pub mod kernel;
pub mod layout;
pub mod loader;
pub mod lsm;
pub mod memory;
pub mod migrate;
pub mod record_log;

#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks,
    clippy::unwrap_used,
    unsafe_code,
    unsafe_op_in_unsafe_fn,
    missing_debug_implementations,
    rust_2018_idioms,
    unused_imports
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/bpfns.skel.rs"));
}

#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks,
    clippy::unwrap_used,
    unsafe_code,
    unsafe_op_in_unsafe_fn,
    missing_debug_implementations,
    rust_2018_idioms,
    unused_imports
)]
mod lsm_skel {
    include!(concat!(env!("OUT_DIR"), "/bpfns_lsm.skel.rs"));
}

pub use error::{KernelError, Result};
pub use kernel::{
    boot_time, fill_details, kind_flag, kind_plural, Details, EventReader, Kernel, KindUse,
    NsEntry, NsQuota, OwnedObject, QuotaRefusal,
};
pub use layout::PinLayout;
pub mod doctor;
