//! bpfnsd: the privileged daemon of bpfns.
//!
//! - [`daemon`]: every request, answered from the registry ([`store`]) and the kernel side.
//! - [`server`]: the Unix-socket API (systemd socket activation, or its own bind), within the
//!   connection limits of [`admission`].
//! - [`caller`]: who is calling, from kernel facts only.
//! - [`events`]: the audit event stream, fanned out to subscribers.
//! - [`supervisor`]: answers namespace members' trapped bpf() calls.
//! - [`keeper`]: the listener keeper, which holds members' listeners across bpfnsd restarts.
//! - [`bpffs`]: each namespace's own bpffs instance.
//! - [`opener`]: opens objects for members with reduced credentials.
//! - [`creds`]: borrowing credentials on one thread, and coming back (fail closed).
//! - [`start`]: loading, reconciling and serving, as the `bpfnsd` binary does.
#![deny(unsafe_code)]

pub mod admission;
pub mod bpffs;
pub mod caller;
pub mod coalesce;
pub mod config;
pub mod creds;
pub mod daemon;
pub mod events;
pub mod keeper;
pub mod logging;
pub mod metrics;
pub mod opener;
pub mod server;
pub mod shared;
pub mod start;
pub mod store;
pub mod supervisor;

pub use config::Config;
pub use daemon::Daemon;
