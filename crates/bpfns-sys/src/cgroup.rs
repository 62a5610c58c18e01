//! Cgroup v2 ancestry: whether a cgroup a process handed over lies inside a subtree.
//!
//! The fd may come from any mount of cgroup2 (a container's, rooted at its own cgroup), so
//! its path says nothing bpfnsd can trust. Its cgroup id (the kernfs inode number) does:
//! bpfnsd reopens that cgroup by id in its own cgroup2 mount (a kernfs file handle) and
//! walks `..` up to the root there, comparing ids.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where this process sees the whole cgroup2 hierarchy: the first cgroup2 mount of its
/// root (`/sys/fs/cgroup` on a unified system, `/sys/fs/cgroup/unified` on a hybrid one).
pub fn cgroup2_root() -> io::Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    root_in(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no cgroup2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup)",
        )
    })
}

/// Where a task's memory is charged, so that a new process can be put there: its cgroup in
/// the hierarchy of the memory controller. On a unified host, its cgroup v2 directory, which
/// `clone3`'s `CLONE_INTO_CGROUP` creates a process straight into (no migration); where the
/// memory controller is on a cgroup v1 hierarchy (hybrid and legacy hosts), the `cgroup.procs`
/// of its v1 memory cgroup, to move a process into (a migration: the kernel's cgroup
/// threadgroup lock taken for writing, which can wait for an RCU grace period). At most one.
#[derive(Debug)]
pub enum MemoryHome {
    V2(std::os::fd::OwnedFd),
    V1(File),
    /// Its cgroup is not mounted where this process can see it (no cgroup file system, or the
    /// task's cgroup outside this process's cgroup mounts): a process put "there" stays in
    /// the caller's cgroups.
    Unknown,
}

/// The [`MemoryHome`] of task `tid` (a host thread id), found through this process's cgroup
/// mounts (read once per process: they do not move under a running daemon). An error when
/// the task is gone.
pub fn memory_home_of_task(tid: i32) -> io::Result<MemoryHome> {
    static MOUNTINFO: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let mountinfo = match MOUNTINFO.get() {
        Some(m) => m,
        None => {
            let text = std::fs::read_to_string("/proc/self/mountinfo")?;
            MOUNTINFO.get_or_init(|| text)
        }
    };
    let text = std::fs::read_to_string(format!("/proc/{tid}/cgroup"))?;
    let lines = crate::procfs::cgroup_lines(&text);
    let dir = |l: &crate::procfs::CgroupLine| crate::procfs::cgroup_dir(mountinfo, l);
    if let Some(v1) = lines
        .iter()
        .find(|l| l.hierarchy != 0 && l.controllers.split(',').any(|c| c == "memory"))
    {
        return Ok(match dir(v1) {
            Some(d) => MemoryHome::V1(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("cgroup.procs"))?,
            ),
            None => MemoryHome::Unknown,
        });
    }
    Ok(
        match lines.iter().find(|l| l.hierarchy == 0).and_then(dir) {
            Some(d) => MemoryHome::V2(File::open(d)?.into()),
            None => MemoryHome::Unknown,
        },
    )
}

impl MemoryHome {
    pub fn is_unknown(&self) -> bool {
        matches!(self, MemoryHome::Unknown)
    }
}

fn root_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let dash = f.iter().position(|x| *x == "-")?;
        if f.get(dash + 1) != Some(&"cgroup2") || f.get(3) != Some(&"/") {
            return None;
        }
        Some(PathBuf::from(f.get(4)?.replace("\\040", " ")))
    })
}

/// A kernfs file handle's type (`FILEID_KERNFS`): its 8 bytes are the cgroup id.
const FILEID_KERNFS: i32 = 0xfe;
/// The deepest cgroup tree walked (the kernel's default `cgroup.max.depth` is unlimited, but
/// a path is at most `PATH_MAX` bytes: 2048 levels of one-byte names and slashes).
const MAX_LEVELS: usize = 2048;

/// What [`within`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ancestry {
    /// The target is the bound cgroup or below it.
    Inside,
    /// The target is a cgroup2 directory outside the subtree.
    Outside,
    /// The target is not a cgroup2 directory (another file, a cgroup v1 hierarchy).
    NotCgroup2,
}

/// The cgroup id of cgroup `path`, a path below the cgroup2 root (`/system.slice/x`).
pub fn id_of(path: &str) -> io::Result<u64> {
    let root = cgroup2_root()?;
    let full = root.join(path.trim_start_matches('/'));
    let m = std::fs::metadata(&full)?;
    if !m.is_dir() || m.dev() != std::fs::metadata(&root)?.dev() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a cgroup v2 cgroup", full.display()),
        ));
    }
    Ok(m.ino())
}

/// Whether the cgroup behind `target` (an fd of any cgroup2 mount) is the cgroup `bound`
/// (a path below the cgroup2 root) or one of its descendants.
pub fn within(target: BorrowedFd<'_>, bound: &str) -> io::Result<Ancestry> {
    let root_path = cgroup2_root()?;
    let root = std::fs::metadata(&root_path)?;
    let t = std::fs::metadata(format!("/proc/thread-self/fd/{}", target.as_raw_fd()))?;
    if !t.is_dir() || t.dev() != root.dev() {
        return Ok(Ancestry::NotCgroup2);
    }
    let bound_id = id_of(bound)?;
    let mut cur = open_by_id(&root_path, t.ino())?;
    for _ in 0..MAX_LEVELS {
        let m = cur.metadata()?;
        if m.ino() == bound_id {
            return Ok(Ancestry::Inside);
        }
        if m.ino() == root.ino() {
            return Ok(Ancestry::Outside);
        }
        cur = File::open(format!("/proc/thread-self/fd/{}/..", cur.as_raw_fd()))?;
    }
    Ok(Ancestry::Outside)
}

/// Open cgroup `id` in this process's cgroup2 mount at `root`.
fn open_by_id(root: &Path, id: u64) -> io::Result<File> {
    let mount = File::open(root)?;
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        id: u64,
    }
    let mut h = Handle {
        bytes: 8,
        kind: FILEID_KERNFS,
        id,
    };
    // SAFETY: `h` is a `struct file_handle` with 8 bytes of `f_handle`, as `handle_bytes`
    // says; the kernel reads only that much. The returned fd is new and owned here.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            (&mut h as *mut Handle).cast::<libc::file_handle>(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn the_cgroup2_root_is_found_on_unified_and_hybrid_systems() {
        let unified = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                      32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                      40 31 0:38 /x /c rw - cgroup2 cgroup2 rw\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(root_in(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(
            root_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            root_in("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"),
            None
        );
    }

    #[test]
    fn a_cgroup_is_within_itself_and_its_ancestors_not_the_reverse() {
        let Ok(cg) = cgroup2_root() else {
            eprintln!("skipped: no cgroup2 hierarchy is mounted");
            return;
        };
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let name = format!("bpfns-sys-cgtest-{}", std::process::id());
        let parent = cg.join(&name);
        let child = parent.join("child");
        std::fs::create_dir_all(&child).expect("mkdir cgroups");
        let rel = format!("/{name}");
        let child_rel = format!("/{name}/child");
        let check = || -> io::Result<()> {
            let c = File::open(&child)?;
            let r = File::open(&cg)?;
            let other = File::open("/proc/self")?;
            assert_eq!(within(c.as_fd(), &rel)?, Ancestry::Inside);
            assert_eq!(within(c.as_fd(), &child_rel)?, Ancestry::Inside);
            assert_eq!(
                within(File::open(&parent)?.as_fd(), &child_rel)?,
                Ancestry::Outside
            );
            assert_eq!(within(r.as_fd(), &rel)?, Ancestry::Outside);
            assert_eq!(within(other.as_fd(), &rel)?, Ancestry::NotCgroup2);
            Ok(())
        };
        let out = check();
        let _ = std::fs::remove_dir(&child);
        let _ = std::fs::remove_dir(&parent);
        out.expect("ancestry");
    }
}
