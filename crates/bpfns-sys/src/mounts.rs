//! Putting a namespace's bpffs into another process's mount namespace (a container being
//! created): a detached copy of the mount is made on the host (`open_tree(OPEN_TREE_CLONE)`),
//! then a thread of our own joins the target's mount namespace and attaches it there
//! (`move_mount`). Nothing of the host's mount table changes.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, MoveMountFlags, OpenTreeFlags};

use crate::{Result, SysError};

/// A detached copy of the mount at `path` (not recursive), ready to be attached elsewhere,
/// also in another mount namespace.
pub fn clone_mount(path: &Path) -> Result<OwnedFd> {
    rustix::mount::open_tree(
        rustix::fs::CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| SysError::new(format!("open_tree(OPEN_TREE_CLONE) {}", path.display()), e))
}

/// What [`attach_in_mount_ns`] attaches.
#[derive(Debug)]
pub struct Attach<'a> {
    /// A detached mount ([`clone_mount`]).
    pub tree: BorrowedFd<'a>,
    /// Where, as the target's mount namespace resolves it (no symbolic link is followed).
    pub target: PathBuf,
    /// After attaching: cover these entries below `target`, where they exist, each with its
    /// detached copy of `/dev/null` ([`clone_mount`]; a detached mount cannot be cloned again),
    /// made read-only and without device access.
    pub cover: Vec<(PathBuf, BorrowedFd<'a>)>,
}

/// Attach `what` in the mount namespace of the process behind `pidfd`, from a thread of our
/// own (setns into a mount namespace needs a thread that shares its filesystem information
/// with no other), so that the calling process stays where it is.
pub fn attach_in_mount_ns(pidfd: BorrowedFd<'_>, what: &Attach<'_>) -> Result<()> {
    std::thread::scope(|s| {
        s.spawn(|| attach_here(pidfd, what))
            .join()
            .unwrap_or_else(|_| {
                Err(SysError::new(
                    "the mount thread panicked",
                    rustix::io::Errno::IO,
                ))
            })
    })
}

fn attach_here(pidfd: BorrowedFd<'_>, what: &Attach<'_>) -> Result<()> {
    crate::thread::unshare_fs()?;
    rustix::thread::move_into_thread_name_spaces(pidfd, rustix::thread::ThreadNameSpaceType::MOUNT)
        .map_err(|e| SysError::new("setns(CLONE_NEWNS) into the container's mount namespace", e))?;
    let target = crate::fs::open_dir_beneath(None, &what.target)?;
    rustix::mount::move_mount(
        what.tree,
        "",
        target.as_fd(),
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(|e| SysError::new(format!("move_mount onto {}", what.target.display()), e))?;
    for (name, copy) in &what.cover {
        let path = what.target.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        rustix::mount::move_mount(
            *copy,
            "",
            rustix::fs::CWD,
            &path,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| SysError::new(format!("move_mount onto {}", path.display()), e))?;
        rustix::mount::mount_remount(
            &path,
            MountFlags::BIND
                | MountFlags::RDONLY
                | MountFlags::NODEV
                | MountFlags::NOSUID
                | MountFlags::NOEXEC,
            "",
        )
        .map_err(|e| SysError::new(format!("remount {} read-only", path.display()), e))?;
    }
    Ok(())
}

/// The inode of one of a process's namespaces (`/proc/<pid>/ns/<kind>`), to tell whether two
/// processes share it.
pub fn namespace_inode(pid: i32, kind: &str) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .map(|m| m.ino())
        .map_err(|e| {
            SysError::new(
                format!("stat /proc/{pid}/ns/{kind}"),
                rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO),
            )
        })
}
