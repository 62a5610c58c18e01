//! The BPF namespace model: pure logic, no syscalls.
//!
//! This crate holds what bpfns decides, apart from how it enforces it: the namespace tree
//! and its path names ([`Registry`], [`NsPath`], [`NsId`]), who sees which object
//! ([`Registry::visible`], [`Visibility`]), who may create, enter or delete which
//! namespace or change its policy ([`may_create`], [`may_enter`], [`may_delete`],
//! [`may_set_policy`]), and what a namespace's members may do with bpf() ([`Policy`]). Keeping it free of syscalls,
//! `unsafe` and I/O lets every rule of the contract (docs/design.md, "The contract") be tested
//! exhaustively without root; the daemon and the kernel side only apply its answers.
//!
//! ```
//! use bpfns_model::{may_create, Caller, NsId, NsPath, Registry};
//!
//! let mut reg = Registry::new();
//! let tenant = reg.create(&"/tenant-a".parse::<NsPath>()?)?;
//! let ci = reg.create(&"/tenant-a/ci".parse::<NsPath>()?)?;
//!
//! // Objects are visible from their owner and its ancestors only.
//! assert!(reg.visible(tenant, ci));
//! assert!(!reg.visible(ci, tenant));
//! assert!(reg.visible(NsId::ROOT, ci));
//!
//! // A member, even with host CAP_SYS_ADMIN, may only create below its own namespace.
//! let member = Caller { ns: ci, host_admin: true };
//! assert!(may_create(&reg, member, &"/tenant-a/ci/job".parse()?).is_ok());
//! assert!(may_create(&reg, member, &"/tenant-b".parse()?).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod container;
mod id;
mod kind;
mod path;
mod policy;
mod program_policy;
pub mod quota;
mod registry;
mod visibility;

pub use id::NsId;
pub use kind::{ObjectKind, ParseKindError};
pub use path::{NsPath, PathError, PathProblem, MAX_COMPONENT_LEN, MAX_DEPTH};
pub use policy::{may_create, may_delete, may_enter, may_set_policy, Action, Caller, Denied};
pub use program_policy::{Field, Policy, ProgramPolicy, TypeSet, TRACING_PROGS};
pub use registry::{
    Deleted, NsDescription, Registry, RegistryError, Snapshot, SnapshotEntry, SnapshotError,
};
pub use visibility::{ObjectRecord, Visibility};
