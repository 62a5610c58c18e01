//! A bpffs owned by another process's user namespace, with delegation (BPF tokens).
//!
//! `BPF_TOKEN_CREATE` takes a bpffs only from a task of the user namespace the bpffs's
//! superblock belongs to, and that is the user namespace of whoever called `fsopen("bpf")`.
//! The delegation options (`delegate_cmds`, `delegate_maps`, `delegate_progs`,
//! `delegate_attachs`) may be set only with `CAP_SYS_ADMIN` in the initial user namespace, and
//! creating the superblock of a bpffs of another user namespace needs it too. So a child of
//! ours joins the target's user and mount namespaces and opens the context
//! ([`fsopen_bpffs_in`]), and we, privileged, configure and create it ([`Delegation`],
//! [`create_delegating`]).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;

use crate::fds::{recv_fd, send_fd_raw, seqpacket_pair};
use crate::{Result, SysError};

/// What a bpffs delegates: bit masks of bpf() commands, map types, program types and attach
/// types (`delegate_*` options; the kernel takes them as numbers as well as names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delegation {
    pub cmds: u64,
    pub maps: u64,
    pub progs: u64,
    pub attachs: u64,
}

impl Delegation {
    /// The options, as `fsconfig` takes them.
    pub fn options(&self) -> [(&'static str, String); 4] {
        [
            ("delegate_cmds", format!("{:#x}", self.cmds)),
            ("delegate_maps", format!("{:#x}", self.maps)),
            ("delegate_progs", format!("{:#x}", self.progs)),
            ("delegate_attachs", format!("{:#x}", self.attachs)),
        ]
    }
}

/// Whether process `pid` (behind `pidfd`) is in a user namespace other than ours. Through the
/// pidfd where the kernel can (Linux 6.11+), else `/proc/<pid>/ns/user`, checked against the
/// pidfd afterwards (a recycled pid is never answered for).
pub fn in_other_user_ns(pidfd: BorrowedFd<'_>, pid: i32) -> Result<bool> {
    use crate::fds::{file_ident, pidfd_namespace, PidfdNamespace};
    use std::os::unix::fs::MetadataExt;
    let stat = |path: &str| {
        std::fs::metadata(path)
            .map(|m| (m.dev(), m.ino()))
            .map_err(|e| {
                SysError::new(
                    format!("stat {path}"),
                    Errno::from_io_error(&e).unwrap_or(Errno::IO),
                )
            })
    };
    let ours = stat("/proc/self/ns/user")?;
    let theirs = match pidfd_namespace(pidfd, PidfdNamespace::User) {
        Ok(ns) => file_ident(ns.as_fd())?,
        Err(_) => {
            let t = stat(&format!("/proc/{pid}/ns/user"))?;
            if !crate::unix::pidfd_alive(pidfd) {
                return Err(SysError::new(format!("process {pid} exited"), Errno::SRCH));
            }
            t
        }
    };
    Ok(theirs != ours)
}

/// What the child reports when a step fails: the step, then the errno.
const STEPS: [&str; 4] = [
    "setns(CLONE_NEWUSER | CLONE_NEWNS) into the container's namespaces",
    "setresgid(0) in the container's user namespace (is its root group mapped?)",
    "setresuid(0) in the container's user namespace (is its root user mapped?)",
    "fsopen(\"bpf\") in the container's user namespace",
];

/// A bpffs context (`fsopen("bpf")`) of the user namespace of the process behind `pidfd`,
/// opened by a child of ours that joined that process's user and mount namespaces and became
/// the namespace's root (so that the instance's root directory is the container root's).
///
/// The child runs raw system calls only (safe to fork from a process with threads); it is
/// reaped before this returns.
pub fn fsopen_bpffs_in(pidfd: BorrowedFd<'_>) -> Result<OwnedFd> {
    let (mine, theirs) = seqpacket_pair()?;
    let (pidfd_raw, sock) = (pidfd.as_raw_fd(), theirs.as_raw_fd());
    // SAFETY: the child only makes raw system calls on values prepared before the fork
    // (no allocation, no locks) and ends with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SysError::new("fork", Errno::from_raw_os_error(errno())));
    }
    if pid == 0 {
        // SAFETY: as above.
        unsafe { libc::_exit(child(pidfd_raw, sock)) }
    }
    drop(theirs);
    let mut buf = [0u8; 8];
    let got = recv_fd(mine.as_fd(), &mut buf);
    let exit = crate::process::wait_child(pid)?;
    let (n, fd) = got?;
    if let Some(fd) = fd {
        return Ok(fd);
    }
    if n == 8 {
        let step = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let e = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
        return Err(SysError::new(
            STEPS.get(step).copied().unwrap_or("the child"),
            Errno::from_raw_os_error(e),
        ));
    }
    Err(SysError::new(
        format!("the child opening the bpffs context ended ({exit:?}) without an answer"),
        Errno::IO,
    ))
}

/// `FSOPEN_CLOEXEC`.
const FSOPEN_CLOEXEC: libc::c_uint = 1;

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The child's part: join, become root there, open the context, send it. Returns its exit
/// code; failures are reported on `sock` as (step, errno).
fn child(pidfd: i32, sock: i32) -> i32 {
    let fail = |step: u32| -> i32 {
        let e = errno();
        let mut m = [0u8; 8];
        m[..4].copy_from_slice(&step.to_ne_bytes());
        m[4..].copy_from_slice(&e.to_ne_bytes());
        let _ = crate::fds::send_raw(sock, &m);
        1
    };
    // SAFETY: raw system calls with integer arguments and a static C string.
    unsafe {
        if libc::syscall(
            libc::SYS_setns,
            pidfd,
            libc::CLONE_NEWUSER | libc::CLONE_NEWNS,
        ) != 0
        {
            return fail(0);
        }
        if libc::syscall(libc::SYS_setresgid, 0, 0, 0) != 0 {
            return fail(1);
        }
        if libc::syscall(libc::SYS_setresuid, 0, 0, 0) != 0 {
            return fail(2);
        }
        let fs = libc::syscall(libc::SYS_fsopen, c"bpf".as_ptr(), FSOPEN_CLOEXEC);
        if fs < 0 {
            return fail(3);
        }
        if send_fd_raw(sock, b"fs", fs as i32).is_err() {
            return 1;
        }
    }
    0
}

/// Configure `fs` (a bpffs context, [`fsopen_bpffs_in`]) to delegate `what`, create its
/// superblock and mount it detached (needs `CAP_SYS_ADMIN` in the initial user namespace).
pub fn create_delegating(fs: BorrowedFd<'_>, what: &Delegation) -> Result<OwnedFd> {
    for (key, value) in what.options() {
        rustix::mount::fsconfig_set_string(fs, key, value.as_str())
            .map_err(|e| SysError::new(format!("fsconfig {key}={value}"), e))?;
    }
    rustix::mount::fsconfig_create(fs)
        .map_err(|e| SysError::new("fsconfig(FSCONFIG_CMD_CREATE) of the bpffs", e))?;
    rustix::mount::fsmount(
        fs,
        rustix::mount::FsMountFlags::FSMOUNT_CLOEXEC,
        rustix::mount::MountAttrFlags::empty(),
    )
    .map_err(|e| SysError::new("fsmount of the bpffs", e))
}

/// Attach a detached mount (`tree`) at `target` in our mount namespace.
pub fn attach(tree: BorrowedFd<'_>, target: &std::path::Path) -> Result<()> {
    rustix::mount::move_mount(
        tree,
        "",
        rustix::fs::CWD,
        target,
        rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| SysError::new(format!("move_mount onto {}", target.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_hex_masks() {
        let d = Delegation {
            cmds: 1,
            maps: 0x10,
            progs: u64::MAX,
            attachs: 0,
        };
        let o = d.options();
        assert_eq!(o[0], ("delegate_cmds", "0x1".to_string()));
        assert_eq!(o[1].1, "0x10");
        assert_eq!(o[2].1, "0xffffffffffffffff");
        assert_eq!(o[3].1, "0x0");
    }

    #[test]
    fn we_share_our_own_user_namespace() {
        let pid = std::process::id() as i32;
        let me = crate::process::open_pidfd(pid).expect("pidfd");
        assert!(!in_other_user_ns(me.as_fd(), pid).expect("compare"));
    }
}
