//! Landlock, used for one thing: every member started by `bpfns exec` gets a Landlock domain
//! of its own, so that the kernel refuses it ptrace access (`PTRACE_MODE_READ` included) to any
//! process outside that domain: `/proc/PID/root`, `/proc/PID/cwd`, `/proc/PID/ns/*`,
//! `/proc/PID/fd/*` and `pidfd_getfd` of other processes fail with `EPERM`, its own
//! processes stay reachable. Without it a uid-0 member reaches, through the root of a
//! process with its uid and no more capabilities than its own, that process's mounts (a
//! writable cgroupfs among them).
//!
//! The domain handles no filesystem or network access (a domain that handles any filesystem
//! access also refuses every mount, which user-namespace tenants need for BPF tokens), only
//! scopes (Landlock ABI 6, Linux 6.12): a member can neither signal a process outside its
//! domain (a uid-0 member could otherwise stop or kill bpfnsd, its listener keeper, the child
//! bpfnsd makes a member's map with, or another tenant's processes of its uid) nor connect to
//! an abstract unix socket made outside it. Signals the kernel sends (a child's exit to its
//! parent) are not refused. Older kernels have no such domain; members start without one
//! there.

use crate::Errno;

/// `LANDLOCK_CREATE_RULESET_VERSION`: `landlock_create_ruleset(NULL, 0, this)` answers the
/// ABI version.
const CREATE_RULESET_VERSION: u32 = 1 << 0;
/// `LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET` (ABI 6).
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
/// `LANDLOCK_SCOPE_SIGNAL` (ABI 6).
const SCOPE_SIGNAL: u64 = 1 << 1;
/// The first ABI with scopes.
pub const SCOPES_ABI: u32 = 6;

/// `struct landlock_ruleset_attr` (ABI 6 layout).
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

use crate::errno::last as last_errno;

/// The kernel's Landlock ABI version; `EOPNOTSUPP` where Landlock is built but not enabled,
/// `ENOSYS` where it is not built.
pub fn abi_version() -> Result<u32, Errno> {
    // SAFETY: a null attr with size 0 and the version flag reads nothing.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r as u32)
    }
}

/// Whether members can get a domain of their own here ([`restrict_self_raw`] works).
pub fn confines_members() -> bool {
    abi_version().is_ok_and(|v| v >= SCOPES_ABI)
}

/// Put the calling thread in a new Landlock domain that scopes signals and abstract unix
/// sockets and handles nothing else (see the module documentation). Needs `no_new_privs` or `CAP_SYS_ADMIN`.
///
/// Async-signal-safe (no allocation, no locks): meant for a child between fork and exec.
pub fn restrict_self_raw() -> Result<(), Errno> {
    let attr = RulesetAttr {
        handled_access_fs: 0,
        handled_access_net: 0,
        scoped: SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL,
    };
    // SAFETY: `attr` is a valid ruleset attribute of the size given; the kernel copies it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::addr_of!(attr),
            std::mem::size_of::<RulesetAttr>(),
            0u32,
        )
    };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: `fd` is the ruleset the kernel just made; no flags.
    let r = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd as libc::c_int, 0u32) };
    // Read before close() can change it; only after a failure (errno is 0 otherwise).
    let failed = (r < 0).then(last_errno);
    // SAFETY: `fd` is ours and used by nothing else.
    unsafe { libc::close(fd as libc::c_int) };
    failed.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attr_has_the_kernels_layout() {
        assert_eq!(std::mem::size_of::<RulesetAttr>(), 24);
    }
}
