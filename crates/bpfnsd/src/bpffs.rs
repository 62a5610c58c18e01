//! Each namespace's own bpffs instance (contract point (docs/design.md) 8).
//!
//! Every `mount -t bpf` is a new, empty instance. Namespace `N` gets one at
//! `<ns_bpffs_dir>/<id>`; `bpfns exec` bind-mounts it over `/sys/fs/bpf` in the member's
//! private mount namespace, so a member sees only its own pins there. The root namespace's
//! tree is the host's `/sys/fs/bpf`. When a namespace is deleted, its pins move to its
//! parent's tree under `orphans/<name>-<id>/`, as its objects move to the parent.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use bpfns_model::NsId;
use bpfns_sys::fs::{
    dir_entries, dup_fd, ensure_bpffs, fd_fs_magic, fd_stat, fs_magic, mkdir_at, open_dir_beneath,
    open_dir_beneath_readable, open_entry_beneath, unlink_at, unmount_detach, EntryType,
    BPF_FS_MAGIC,
};

/// The host's bpffs: the root namespace's pin tree.
pub const HOST_BPFFS: &str = "/sys/fs/bpf";

/// Errors managing bpffs instances.
#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error("{what}: {error}")]
    Sys {
        what: String,
        error: bpfns_sys::SysError,
    },
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error("finding the owner of the object pinned at {pin}: {error}")]
    Owner {
        pin: PathBuf,
        #[source]
        error: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BpffsError {
    /// Whether what is in the way was made by the parent's members (a symbolic link, a file
    /// or another filesystem where bpfnsd needs a bpffs directory): theirs to remove, not a
    /// failure of bpfnsd.
    pub fn is_in_the_way(&self) -> bool {
        use bpfns_sys::Errno;
        let errno = match self {
            Self::Sys { error, .. } => error.errno,
            Self::Io { error, .. } => match error.raw_os_error() {
                Some(e) => Errno::from_raw_os_error(e),
                None => return false,
            },
            Self::Owner { .. } => return false,
        };
        [Errno::LOOP, Errno::NOTDIR, Errno::XDEV].contains(&errno)
    }
}

/// Where the per-namespace instances live.
#[derive(Debug, Clone)]
pub struct NsBpffs {
    dir: PathBuf,
    root: PathBuf,
}

impl NsBpffs {
    /// Instances under `dir`; the root namespace's pin tree is `root` (normally
    /// [`HOST_BPFFS`]).
    pub fn new(dir: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        // Made and taken canonical: mount points are matched against `/proc/self/mountinfo`,
        // whose paths are (a configured `/var/run/bpfns/ns` is `/run/bpfns/ns` there), and
        // members are told this path.
        let dir = std::fs::create_dir_all(&dir)
            .and_then(|()| dir.canonicalize())
            .unwrap_or(dir);
        Self {
            dir,
            root: root.into(),
        }
    }

    /// Make the directory of the instances a mount point of its own (before any instance is
    /// mounted there): a member's private mount namespace then detaches every other
    /// namespace's instance with one call, instead of one per namespace (10 000 namespaces:
    /// 0.3 s at every `bpfns exec`). Left as it is where instances are mounted already, below
    /// a plain directory (bpfnsd upgraded without a reboot): members detach them one by one.
    pub fn prepare(&self) -> Result<bpfns_sys::fs::OwnMount, BpffsError> {
        bpfns_sys::fs::ensure_own_mount(&self.dir).map_err(|error| BpffsError::Sys {
            what: format!("making {} a mount point", self.dir.display()),
            error,
        })
    }

    /// The pin tree of namespace `id`.
    pub fn path(&self, id: NsId) -> PathBuf {
        if id == NsId::ROOT {
            self.root.clone()
        } else {
            self.dir.join(id.to_string())
        }
    }

    /// Is `id`'s instance mounted?
    pub fn is_mounted(&self, id: NsId) -> bool {
        fs_magic(&self.path(id)).ok() == Some(BPF_FS_MAGIC)
            && id != NsId::ROOT
            && self.path(id).parent().and_then(|p| fs_magic(p).ok()) != Some(BPF_FS_MAGIC)
    }

    /// Mount `id`'s instance unless it is there (idempotent).
    pub fn ensure(&self, id: NsId) -> Result<PathBuf, BpffsError> {
        let p = self.path(id);
        if id == NsId::ROOT || self.is_mounted(id) {
            return Ok(p);
        }
        ensure_bpffs(&p).map_err(|error| BpffsError::Sys {
            what: format!("mounting the bpffs of namespace {id} at {}", p.display()),
            error,
        })?;
        Ok(p)
    }

    /// Copy what is pinned in `id`'s instance into `parent`'s tree under
    /// `orphans/<name>-<id>/` (ids are never reused, so two deletions never collide), leaving
    /// `id`'s own pins in place: [`Repinned::undo`] takes the copies away again,
    /// [`NsBpffs::unmount`] then drops the instance. On an error midway, the copies made so
    /// far are removed before it returns.
    ///
    /// Only pins of objects `owns` accepts are copied (the deleted namespace's, by the kernel
    /// side's ownership records): anything else pinned there stays behind and goes with the
    /// instance ([`Repinned::left_behind`]).
    pub fn repin_to_parent<E>(
        &self,
        id: NsId,
        name: &str,
        parent: NsId,
        owns: &dyn Fn(bpfns_model::ObjectKind, u32) -> Result<bool, E>,
    ) -> Result<Repinned, BpffsError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let src_path = self.path(id);
        let mut done = Repinned::default();
        if !self.is_mounted(id) {
            return Ok(done);
        }
        let sys = |what: String| move |error| BpffsError::Sys { what, error };
        // The deleted namespace's tree is its members' /sys/fs/bpf, and the parent's theirs:
        // both may hold anything, symbolic links included, and change while bpfnsd works. Both
        // are walked through directory handles opened without following any link and without
        // leaving their bpffs; pins are opened through handles on their own inodes.
        let src = open_dir_beneath_readable(None, &src_path)
            .map_err(sys(format!("opening {}", src_path.display())))?;
        let src_dev = fd_stat(src.as_fd())
            .map_err(sys(format!("inspecting {}", src_path.display())))?
            .dev;
        if fd_fs_magic(src.as_fd()).ok() != Some(BPF_FS_MAGIC) {
            return Err(BpffsError::Io {
                what: format!("{} is not a bpffs", src_path.display()),
                error: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
        let top = self.path(parent);
        let root =
            open_dir_beneath(None, &top).map_err(sys(format!("opening {}", top.display())))?;
        if fd_fs_magic(root.as_fd()).ok() != Some(BPF_FS_MAGIC) {
            return Err(BpffsError::Io {
                what: format!("{} is not a bpffs", top.display()),
                error: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
        let orphans = subdir(
            root.as_fd(),
            OsStr::new("orphans"),
            &top.join("orphans"),
            &mut done,
        )?;
        // bpffs refuses names with dots, which namespace names may have.
        let base = format!("{}-{id}", name.replace('.', "_"));
        let mut n = 1;
        let mut leaf = base.clone();
        loop {
            match mkdir_at(orphans.as_fd(), Path::new(&leaf), 0o700) {
                Ok(()) => break,
                Err(e) if e.errno == bpfns_sys::Errno::EXIST => {
                    n += 1;
                    leaf = format!("{base}-{n}");
                }
                Err(e) => {
                    return Err(sys(format!("creating {leaf} in {}/orphans", top.display()))(e))
                }
            }
        }
        let dest_path = top.join("orphans").join(&leaf);
        done.made_dir(orphans.as_fd(), OsStr::new(&leaf))?;
        done.dest = Some(dest_path.clone());
        let walk = Walk {
            dev: src_dev,
            owns: &|kind, oid| owns(kind, oid).map_err(|e| Box::new(e) as _),
        };
        let result = open_dir_beneath(Some(orphans.as_fd()), Path::new(&leaf))
            .map_err(sys(format!("opening {}", dest_path.display())))
            .and_then(|dest| {
                walk.repin_tree(
                    src.as_fd(),
                    &src_path,
                    dest.as_fd(),
                    &dest_path,
                    0,
                    &mut done,
                )
            });
        if let Err(e) = result {
            done.undo();
            return Err(e);
        }
        Ok(done)
    }

    /// Unmount `id`'s instance and remove its mount point.
    pub fn unmount(&self, id: NsId) -> Result<(), BpffsError> {
        let src = self.path(id);
        if !self.is_mounted(id) {
            return Ok(());
        }
        unmount_detach(&src).map_err(|error| BpffsError::Sys {
            what: format!("unmounting {}", src.display()),
            error,
        })?;
        let _ = std::fs::remove_dir(&src);
        Ok(())
    }

    /// Ids of the instances mounted under the directory (for reconciliation at start).
    pub fn mounted_ids(&self) -> Vec<NsId> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .map(NsId)
            .filter(|id| self.is_mounted(*id))
            .collect()
    }
}

/// What [`NsBpffs::repin_to_parent`] made: the pins and directories it created, each as the
/// handle of the directory it is in and its name there, so that undoing them touches exactly
/// those entries, whatever the parent's members do to the paths meanwhile.
#[derive(Debug, Default)]
pub struct Repinned {
    /// Where the pins went (`None`: nothing was pinned).
    pub dest: Option<PathBuf>,
    pins: Vec<(OwnedFd, std::ffi::OsString)>,
    dirs: Vec<(OwnedFd, std::ffi::OsString)>,
    /// What was not copied, and why: pins of other namespaces' objects, entries that were
    /// not what they had been listed as (a directory become a link, say), and what lies
    /// beyond the walk's bounds. The first [`LEFT_BEHIND_NAMED`] by name.
    pub left_behind: Vec<(PathBuf, &'static str)>,
    /// How many more were left behind than `left_behind` names.
    pub left_behind_more: usize,
}

/// A deletion copies directories at most this deep into the parent's `orphans/`: the walk
/// holds a directory handle per level, and a member could nest directories without end.
pub const REPIN_MAX_DEPTH: usize = 32;
/// A deletion copies at most this many entries (pins and directories): each copy is held
/// by a directory handle until the deletion commits (to undo it on failure, without
/// following links the parent's members may plant), and a member could make millions; this
/// many stays well within bpfnsd's file descriptors on any host.
pub const REPIN_MAX_ENTRIES: usize = 512;
/// How many left-behind entries are named (the rest are counted).
pub const LEFT_BEHIND_NAMED: usize = 64;

impl Repinned {
    /// How many pins were copied.
    pub fn count(&self) -> usize {
        self.pins.len()
    }

    /// Remove the copies (pins, then the directories made for them, deepest first).
    pub fn undo(&mut self) {
        for (dir, name) in self.pins.drain(..).rev() {
            let _ = unlink_at(dir.as_fd(), Path::new(&name), false);
        }
        for (dir, name) in self.dirs.drain(..).rev() {
            let _ = unlink_at(dir.as_fd(), Path::new(&name), true);
        }
    }

    fn made_dir(&mut self, parent: BorrowedFd<'_>, name: &OsStr) -> Result<(), BpffsError> {
        let fd = dup_fd(parent).map_err(|error| BpffsError::Sys {
            what: "keeping a directory handle".into(),
            error,
        })?;
        self.dirs.push((fd, name.to_os_string()));
        Ok(())
    }

    /// Note `path` as not copied, for `why`.
    fn leave(&mut self, path: PathBuf, why: &'static str) {
        if self.left_behind.len() < LEFT_BEHIND_NAMED {
            self.left_behind.push((path, why));
        } else {
            self.left_behind_more += 1;
        }
    }

    /// Whether the walk's bound on copied entries is reached.
    fn full(&self) -> bool {
        self.pins.len() + self.dirs.len() >= REPIN_MAX_ENTRIES
    }

    fn made_pin(&mut self, dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), BpffsError> {
        let fd = dup_fd(dir).map_err(|error| BpffsError::Sys {
            what: "keeping a directory handle".into(),
            error,
        })?;
        self.pins.push((fd, name.to_os_string()));
        Ok(())
    }
}

/// How to walk a deleted namespace's tree: its instance's device, and which objects to copy.
struct Walk<'a> {
    dev: u64,
    #[allow(clippy::type_complexity)]
    owns: &'a dyn Fn(
        bpfns_model::ObjectKind,
        u32,
    ) -> Result<bool, Box<dyn std::error::Error + Send + Sync>>,
}

impl Walk<'_> {
    /// Pin every object of the deleted namespace pinned in the directory `src` (a readable
    /// handle; `src_path` names it in messages) at the same relative path in the directory
    /// `dest` (a handle; `dest_path` names it), noting what was made in `done`. An entry that
    /// is not, when opened, what it was listed as — a directory or a pin of this instance —
    /// was changed meanwhile by someone who may write there: it is left behind, never
    /// followed.
    fn repin_tree(
        &self,
        src: BorrowedFd<'_>,
        src_path: &Path,
        dest: BorrowedFd<'_>,
        dest_path: &Path,
        depth: usize,
        done: &mut Repinned,
    ) -> Result<(), BpffsError> {
        use bpfns_sys::Errno;
        let sys = |what: String| move |error| BpffsError::Sys { what, error };
        // What a member racing the walk can make an open fail with: not bpfnsd's failure.
        let changed = |e: &bpfns_sys::SysError| {
            [Errno::LOOP, Errno::NOTDIR, Errno::XDEV, Errno::NOENT].contains(&e.errno)
        };
        let entries = dir_entries(src).map_err(sys(format!("reading {}", src_path.display())))?;
        for (name, ty) in entries {
            // bpffs's own files (maps.debug, progs.debug) have dots; pins cannot.
            if name.to_string_lossy().contains('.') {
                continue;
            }
            let from = src_path.join(&name);
            let to = dest_path.join(&name);
            if done.full() {
                done.leave(from, "beyond the entries a deletion copies");
                continue;
            }
            match ty {
                EntryType::Directory if depth + 1 >= REPIN_MAX_DEPTH => {
                    done.leave(from, "deeper than a deletion copies");
                }
                EntryType::Directory => {
                    let sub = match open_dir_beneath_readable(Some(src), Path::new(&name)) {
                        Ok(sub) => sub,
                        Err(e) if changed(&e) => {
                            done.leave(from, "not a directory when opened");
                            continue;
                        }
                        Err(e) => return Err(sys(format!("opening {}", from.display()))(e)),
                    };
                    let st = fd_stat(sub.as_fd())
                        .map_err(sys(format!("inspecting {}", from.display())))?;
                    if st.dev != self.dev {
                        done.leave(from, "on another filesystem");
                        continue;
                    }
                    let into = subdir(dest, &name, &to, done)?;
                    self.repin_tree(sub.as_fd(), &from, into.as_fd(), &to, depth + 1, done)?;
                }
                EntryType::File => {
                    let handle = match open_entry_beneath(src, Path::new(&name)) {
                        Ok(h) => h,
                        Err(e) if changed(&e) => {
                            done.leave(from, "gone when opened");
                            continue;
                        }
                        Err(e) => return Err(sys(format!("opening {}", from.display()))(e)),
                    };
                    let st = fd_stat(handle.as_fd())
                        .map_err(sys(format!("inspecting {}", from.display())))?;
                    if st.kind != EntryType::File || st.dev != self.dev {
                        done.leave(from, "not a pin of this bpffs when opened");
                        continue;
                    }
                    let fd = bpfns_sys::bpf::obj_get_handle(&handle)
                        .map_err(sys(format!("opening pin {}", from.display())))?;
                    let object = bpfns_sys::bpf::object_of(&fd)
                        .map_err(sys(format!("inspecting pin {}", from.display())))?;
                    let Some((kind, oid)) = object else {
                        done.leave(from, "not a BPF map, program or link");
                        continue;
                    };
                    let own = (self.owns)(kind, oid).map_err(|error| BpffsError::Owner {
                        pin: from.clone(),
                        error,
                    })?;
                    if !own {
                        done.leave(from, "another namespace's object");
                        continue;
                    }
                    bpfns_sys::bpf::obj_pin_at(&fd, dest, &name).map_err(sys(format!(
                        "re-pinning {} at {}",
                        from.display(),
                        to.display()
                    )))?;
                    done.made_pin(dest, &name)?;
                }
                EntryType::Other => {}
            }
        }
        Ok(())
    }
}

/// The directory `name` in `dir` (created if missing, noted in `done` then), opened without
/// following links; a link or anything but a directory there is an error.
fn subdir(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    done: &mut Repinned,
) -> Result<OwnedFd, BpffsError> {
    let sys = |what: String| move |error| BpffsError::Sys { what, error };
    match mkdir_at(dir, Path::new(name), 0o755) {
        Ok(()) => done.made_dir(dir, name)?,
        Err(e) if e.errno == bpfns_sys::Errno::EXIST => {}
        Err(e) => return Err(sys(format!("creating {}", path.display()))(e)),
    }
    open_dir_beneath(Some(dir), Path::new(name)).map_err(sys(format!(
        "opening {} (a directory, not a link, is expected there)",
        path.display()
    )))
}
