//! Per-thread state the supervisor borrows from a trapped caller: root directory, working
//! directory, filesystem ids, supplementary groups, network namespace.
//!
//! Every function here changes the *calling thread* only (raw system calls; no glibc
//! "set*id on all threads" broadcast). [`unshare_fs`] must come first, so that `chroot` and
//! `chdir` stop being shared with the rest of the process.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::{Result, SysError};

/// `unshare(CLONE_FS)`: give the calling thread its own root, cwd and umask, so that
/// [`enter_root`] and [`change_dir`] affect it alone.
pub fn unshare_fs() -> Result<()> {
    // SAFETY: CLONE_FS only detaches root/cwd/umask; it cannot invalidate file descriptors
    // (the hazard `unshare_unsafe` warns about is CLONE_FILES).
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }
        .map_err(|e| SysError::new("unshare(CLONE_FS)", e))
}

/// Open a directory as an `O_PATH` handle (follows a final symlink, including the magic
/// links `/proc/<tid>/root` and `/proc/<tid>/cwd`).
pub fn open_dir(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SysError::new(format!("open {}", path.display()), e))
}

/// Open any file as an `O_PATH` handle (e.g. `/proc/<tid>/ns/net`).
pub fn open_path(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| SysError::new(format!("open {}", path.display()), e))
}

/// Open a namespace file (e.g. `/proc/<tid>/ns/net`) for `setns`, which refuses `O_PATH`
/// handles (`EBADF`).
pub fn open_ns(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| SysError::new(format!("open {}", path.display()), e))
}

/// Make `dir` the calling thread's root directory (`fchdir(dir)` + `chroot(".")`; needs
/// `CAP_SYS_CHROOT`). Also leaves the working directory at `dir`.
pub fn enter_root(dir: BorrowedFd<'_>) -> Result<()> {
    rustix::process::fchdir(dir).map_err(|e| SysError::new("fchdir (root)", e))?;
    rustix::process::chroot(".").map_err(|e| SysError::new("chroot", e))
}

/// `fchdir(dir)`.
pub fn change_dir(dir: BorrowedFd<'_>) -> Result<()> {
    rustix::process::fchdir(dir).map_err(|e| SysError::new("fchdir", e))
}

fn set_fs_id(nr: libc::c_long, id: u32, what: &str) -> Result<()> {
    // SAFETY: setfsuid/setfsgid take an integer; the raw call acts on this thread only.
    unsafe { libc::syscall(nr, id as libc::c_long) };
    // Both calls return the previous value and never fail; asking with an invalid id (-1)
    // reads the current one.
    // SAFETY: as above.
    let now = unsafe { libc::syscall(nr, -1 as libc::c_long) } as u32;
    if now == id {
        Ok(())
    } else {
        Err(SysError::new(format!("{what} {id}"), Errno::PERM))
    }
}

/// The calling thread's filesystem uid (`setfsuid`): the uid permission checks use. Switching
/// away from 0 drops the filesystem capabilities from the effective set; switching back to 0
/// restores those in the permitted set.
pub fn set_fsuid(uid: u32) -> Result<()> {
    set_fs_id(libc::SYS_setfsuid, uid, "setfsuid")
}

/// The calling thread's filesystem gid (`setfsgid`).
pub fn set_fsgid(gid: u32) -> Result<()> {
    set_fs_id(libc::SYS_setfsgid, gid, "setfsgid")
}

/// The calling thread's effective uid (raw `setresuid(-1, euid, -1)`, this thread only; needs
/// `CAP_SETUID`). The filesystem uid follows it. Leaving uid 0 (with the real and saved uids
/// still 0) clears the effective capabilities and keeps the permitted ones; coming back to 0
/// makes the effective set the permitted one: set it again afterwards.
pub fn set_euid(euid: u32) -> Result<()> {
    const UNCHANGED: libc::c_long = -1;
    // SAFETY: setresuid takes three integers; the raw call changes this thread's credentials
    // only (glibc's wrapper would change every thread's).
    let r = unsafe {
        libc::syscall(
            libc::SYS_setresuid,
            UNCHANGED as u32 as libc::c_long,
            euid as libc::c_long,
            UNCHANGED as u32 as libc::c_long,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(SysError::new(
            format!("setresuid(-1, {euid}, -1)"),
            Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
        ))
    }
}

/// The calling thread's effective uid.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The calling thread's supplementary groups (raw `setgroups`, this thread only; needs
/// `CAP_SETGID`).
pub fn set_groups(groups: &[u32]) -> Result<()> {
    let gids: Vec<rustix::process::Gid> = groups
        .iter()
        .map(|&g| rustix::process::Gid::from_raw(g))
        .collect();
    rustix::thread::set_thread_groups(&gids)
        .map_err(|e| SysError::new(format!("setgroups ({} groups)", groups.len()), e))
}

/// The calling thread's supplementary groups.
pub fn groups() -> Result<Vec<u32>> {
    rustix::process::getgroups()
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .map_err(|e| SysError::new("getgroups", e))
}

/// Move the calling thread into the network namespace `ns` (an fd of `/proc/<tid>/ns/net`).
pub fn enter_net_ns(ns: impl AsFd) -> Result<()> {
    rustix::thread::move_into_link_name_space(
        ns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| SysError::new("setns(CLONE_NEWNET)", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread with its own fs_struct can chroot and come back without touching the others.
    #[test]
    fn chroot_on_one_thread_only() {
        let is_root = rustix::process::geteuid().is_root();
        let t = std::thread::spawn(move || {
            unshare_fs().expect("unshare");
            let home = open_dir(Path::new("/")).expect("open /");
            let tmp = std::env::temp_dir();
            let dir = open_dir(&tmp).expect("open tmp");
            if !is_root {
                return true;
            }
            enter_root(dir.as_fd()).expect("chroot");
            let inside = std::fs::metadata("/proc/self").is_ok();
            enter_root(home.as_fd()).expect("chroot back");
            // /tmp has no proc mount; / has.
            !inside && std::fs::metadata("/proc/self").is_ok()
        });
        assert!(t.join().expect("thread"));
        assert!(std::fs::metadata("/proc/self").is_ok());
    }
}
