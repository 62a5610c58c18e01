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
/// `CGROUP_SUPER_MAGIC` (cgroup v1).
pub const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
/// `CGROUP2_SUPER_MAGIC`.
pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

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

/// A directory handle opened without following any symbolic link on the way
/// (`openat2(O_PATH | O_DIRECTORY, RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH | RESOLVE_NO_XDEV)`):
/// `name` is resolved beneath `dir` (`None`: an absolute path, from `/`), never outside it,
/// never onto another filesystem. For working inside directories someone else may write.
pub fn open_dir_beneath(
    dir: Option<std::os::fd::BorrowedFd<'_>>,
    name: &Path,
) -> Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let (base, resolve) = match dir {
        Some(d) => (
            d,
            ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH | ResolveFlags::NO_XDEV,
        ),
        None => (rustix::fs::CWD, ResolveFlags::NO_SYMLINKS),
    };
    rustix::fs::openat2(
        base,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    )
    .map_err(|e| SysError::new(format!("opening directory {}", name.display()), e))
}

/// `mkdirat(dir, name, mode)`; an existing entry is `EEXIST` (whatever it is).
pub fn mkdir_at(dir: std::os::fd::BorrowedFd<'_>, name: &Path, mode: u32) -> Result<()> {
    rustix::fs::mkdirat(dir, name, rustix::fs::Mode::from_raw_mode(mode))
        .map_err(|e| SysError::new(format!("mkdir {}", name.display()), e))
}

/// Open directory `path` and hold an exclusive `flock` on it until the returned handle is
/// dropped (waits for another holder). Locks of different opens exclude each other, within one
/// process too.
pub fn lock_dir(path: &Path) -> Result<std::os::fd::OwnedFd> {
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| SysError::new(format!("open {}", path.display()), e))?;
    loop {
        match rustix::fs::flock(&fd, rustix::fs::FlockOperation::LockExclusive) {
            Ok(()) => return Ok(fd),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(SysError::new(format!("flock {}", path.display()), e)),
        }
    }
}

/// The filesystem magic of the filesystem `fd` is on.
pub fn fd_fs_magic(fd: std::os::fd::BorrowedFd<'_>) -> Result<i64> {
    rustix::fs::fstatfs(fd)
        .map(|s| s.f_type)
        .map_err(|e| SysError::new("fstatfs", e))
}

/// `unlinkat(dir, name, flags)`: remove the entry `name` of the directory `dir` refers to (a
/// directory with `dir_too`), never following a link.
pub fn unlink_at(dir: std::os::fd::BorrowedFd<'_>, name: &Path, dir_too: bool) -> Result<()> {
    let flags = if dir_too {
        rustix::fs::AtFlags::REMOVEDIR
    } else {
        rustix::fs::AtFlags::empty()
    };
    rustix::fs::unlinkat(dir, name, flags)
        .map_err(|e| SysError::new(format!("unlink {}", name.display()), e))
}

/// A duplicate of a directory handle, so that it can be kept beside the original.
pub fn dup_fd(fd: std::os::fd::BorrowedFd<'_>) -> Result<std::os::fd::OwnedFd> {
    fd.try_clone_to_owned()
        .map_err(|e| SysError::new("dup", Errno::from_io_error(&e).unwrap_or(Errno::IO)))
}

/// `openat2` beneath `dir` with `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH | RESOLVE_NO_XDEV` and
/// `O_NOFOLLOW`: no link is followed on the way or at the end, nothing outside `dir` or on
/// another mount is reached (`None`: an absolute path, resolved without following links).
fn open_beneath(
    dir: Option<std::os::fd::BorrowedFd<'_>>,
    name: &Path,
    flags: rustix::fs::OFlags,
) -> Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let (base, resolve) = match dir {
        Some(d) => (
            d,
            ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH | ResolveFlags::NO_XDEV,
        ),
        None => (rustix::fs::CWD, ResolveFlags::NO_SYMLINKS),
    };
    rustix::fs::openat2(
        base,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    )
    .map_err(|e| SysError::new(format!("opening {}", name.display()), e))
}

/// A directory opened for reading its entries ([`dir_entries`]) the way
/// [`open_dir_beneath`] opens one: beneath `dir`, never through a link, never onto another
/// mount. A link there is `ELOOP`, anything but a directory `ENOTDIR`.
pub fn open_dir_beneath_readable(
    dir: Option<std::os::fd::BorrowedFd<'_>>,
    name: &Path,
) -> Result<std::os::fd::OwnedFd> {
    open_beneath(
        dir,
        name,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
    )
}

/// A handle (`O_PATH`) on the entry `name` of `dir` itself, never what a link there points
/// to (the handle is then the link's: [`fd_stat`] tells).
pub fn open_entry_beneath(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &Path,
) -> Result<std::os::fd::OwnedFd> {
    open_beneath(Some(dir), name, rustix::fs::OFlags::PATH)
}

/// What a directory entry is, as `getdents64` says (`d_type`): a hint, which may be stale by
/// the time the entry is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    Directory,
    File,
    Other,
}

/// The entries of the directory `dir` (opened readable, [`open_dir_beneath_readable`]),
/// without `.` and `..`.
pub fn dir_entries(
    dir: std::os::fd::BorrowedFd<'_>,
) -> Result<Vec<(std::ffi::OsString, EntryType)>> {
    use std::os::unix::ffi::OsStrExt;
    let mut d = rustix::fs::Dir::read_from(dir).map_err(|e| SysError::new("opendir", e))?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e.map_err(|e| SysError::new("getdents64", e))?;
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let ty = match e.file_type() {
            rustix::fs::FileType::Directory => EntryType::Directory,
            rustix::fs::FileType::RegularFile => EntryType::File,
            _ => EntryType::Other,
        };
        out.push((std::ffi::OsStr::from_bytes(name).to_os_string(), ty));
    }
    Ok(out)
}

/// What `fstat` says of a handle: the device of its filesystem and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdStat {
    pub dev: u64,
    pub kind: EntryType,
}

/// `fstat(fd)`: its device and type.
pub fn fd_stat(fd: std::os::fd::BorrowedFd<'_>) -> Result<FdStat> {
    let st = rustix::fs::fstat(fd).map_err(|e| SysError::new("fstat", e))?;
    let kind = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::Directory => EntryType::Directory,
        rustix::fs::FileType::RegularFile => EntryType::File,
        _ => EntryType::Other,
    };
    Ok(FdStat {
        dev: st.st_dev,
        kind,
    })
}

/// What [`ensure_own_mount`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnMount {
    /// The directory was a mount point already.
    Was,
    /// It is one now: bound onto itself, in a peer group of its own.
    Made,
    /// It is not one, and is left so: mounts below it would stay, hidden, under one made now.
    MountsBelow,
}

/// Make directory `dir` (made if missing) a mount point of its own, so that everything later
/// mounted below it can be detached in one call (a private mount namespace's copy of it,
/// with one `umount2(MNT_DETACH)`, instead of one per mount below it): bound onto itself, in
/// a peer group of its own, so that what is mounted below it is not also mounted, hidden,
/// under its peers. Left as it is if it is a mount point already, or has mounts below it.
pub fn ensure_own_mount(dir: &Path) -> Result<OwnMount> {
    let io = |what: String| {
        move |e: std::io::Error| SysError::new(what, Errno::from_io_error(&e).unwrap_or(Errno::IO))
    };
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    // Matched against mountinfo's paths, which are canonical.
    let dir = &dir
        .canonicalize()
        .map_err(io(format!("resolving {}", dir.display())))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(io("reading /proc/self/mountinfo".to_string()))?;
    let points = crate::procfs::mount_points(&mountinfo);
    if points.iter().any(|m| m == dir) {
        return Ok(OwnMount::Was);
    }
    if points.iter().any(|m| m.starts_with(dir)) {
        return Ok(OwnMount::MountsBelow);
    }
    rustix::mount::mount_bind(dir, dir)
        .map_err(|e| SysError::new(format!("bind-mounting {} onto itself", dir.display()), e))?;
    // Private, then shared: a peer group of its own. Nothing mounted below it is mounted again,
    // hidden, under a peer (the mount it was bound from); copies of the host's mount namespace
    // made from now on (a service's, an engine's) still receive new instances and their
    // unmounts.
    use rustix::mount::MountPropagationFlags as Propagation;
    for (flags, what) in [
        (Propagation::PRIVATE, "private"),
        (Propagation::SHARED, "shared"),
    ] {
        if let Err(e) = rustix::mount::mount_change(dir, flags) {
            let _ = unmount_detach(dir);
            return Err(SysError::new(format!("making {} {what}", dir.display()), e));
        }
    }
    Ok(OwnMount::Made)
}
