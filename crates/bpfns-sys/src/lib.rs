//! Every raw system call bpfns makes goes through this crate.
//!
//! The rest of the workspace is `#![forbid(unsafe_code)]`: unsafe blocks live here, each small and
//! justified, behind typed wrappers that return [`OwnedFd`](std::os::fd::OwnedFd)s and
//! [`Errno`](rustix::io::Errno)-carrying errors.

pub mod bpf;
pub mod btf;
pub mod caps;
pub mod cbpf;
pub mod cgroup;
pub mod errno;
pub mod fds;
pub mod fs;
pub mod gate;
pub mod heap;
pub mod insn;
pub mod landlock;
pub mod mem;
pub mod member_filter;
pub mod mounts;
pub mod names;
pub mod probe;
pub mod process;
pub mod procfs;
pub mod rawbpf;
pub mod seccomp;
pub mod spawn;
#[cfg(target_arch = "x86_64")]
#[cfg(feature = "testhooks")]
pub mod testhooks;
pub mod thread;
pub mod unix;
pub mod userns;

pub use rustix::io::Errno;

/// A failed system call: which operation, and the kernel's errno.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {}", crate::errno::describe(*.errno))]
pub struct SysError {
    /// What was being done, e.g. `"BPF_MAP_GET_FD_BY_ID 42"`.
    pub op: String,
    /// The kernel's answer.
    pub errno: Errno,
}

impl SysError {
    pub(crate) fn new(op: impl Into<String>, errno: Errno) -> Self {
        Self {
            op: op.into(),
            errno,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = SysError> = std::result::Result<T, E>;
