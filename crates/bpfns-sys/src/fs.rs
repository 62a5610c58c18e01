//! Pseudo-filesystems bpfns relies on: bpffs and tracefs, mounted on demand.

use std::path::Path;

use rustix::fs::statfs;
use rustix::io::Errno;
use rustix::mount::{mount, MountFlags};

use crate::{Result, SysError};

/// `BPF_FS_MAGIC` from `include/uapi/linux/magic.h`.
pub const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// `TRACEFS_MAGIC`.
pub const TRACEFS_MAGIC: i64 = 0x7472_6163;
/// `SECURITYFS_MAGIC`.
pub const SECURITYFS_MAGIC: i64 = 0x7363_6673;

/// The filesystem magic of whatever is mounted at (or contains) `path`.
pub fn fs_magic(path: &Path) -> Result<i64> {
    statfs(path)
        .map(|s| s.f_type)
        .map_err(|e| SysError::new(format!("statfs {}", path.display()), e))
}

/// What [`ensure_mounted`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOutcome {
    /// The filesystem was already there.
    AlreadyMounted,
    /// bpfns mounted it just now.
    Mounted,
}

/// Mount a pseudo-filesystem of type `fstype` at `target` unless one with `magic` is already there.
///
/// Idempotent: a second call finds the first mount. Creates `target` if it is missing.
pub fn ensure_mounted(fstype: &str, target: &Path, magic: i64) -> Result<MountOutcome> {
    if fs_magic(target).ok() == Some(magic) {
        return Ok(MountOutcome::AlreadyMounted);
    }
    std::fs::create_dir_all(target).map_err(|e| {
        SysError::new(
            format!("mkdir {}", target.display()),
            Errno::from_io_error(&e).unwrap_or(Errno::IO),
        )
    })?;
    if fs_magic(target).ok() == Some(magic) {
        return Ok(MountOutcome::AlreadyMounted);
    }
    mount(fstype, target, fstype, MountFlags::empty(), None)
        .map_err(|e| SysError::new(format!("mount -t {fstype} {}", target.display()), e))?;
    Ok(MountOutcome::Mounted)
}

/// Mount bpffs at `/sys/fs/bpf` if needed.
pub fn ensure_bpffs(target: &Path) -> Result<MountOutcome> {
    ensure_mounted("bpf", target, BPF_FS_MAGIC)
}

/// Where tracefs lives when mounted on its own.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Mount tracefs at `/sys/kernel/tracing` if needed (libbpf attaches tracepoints through it).
pub fn ensure_tracefs() -> Result<MountOutcome> {
    ensure_mounted("tracefs", Path::new(TRACEFS), TRACEFS_MAGIC)
}

/// Detach the mount at `target` (`umount -l`): it disappears now, and is freed when unused.
pub fn unmount_detach(target: &Path) -> Result<()> {
    rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH)
        .map_err(|e| SysError::new(format!("umount {}", target.display()), e))
}
