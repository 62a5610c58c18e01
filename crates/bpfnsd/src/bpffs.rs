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
    dup_fd, ensure_bpffs, fd_fs_magic, fs_magic, mkdir_at, open_dir_beneath, unlink_at,
    unmount_detach, BPF_FS_MAGIC,
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
        };
        [Errno::LOOP, Errno::NOTDIR, Errno::XDEV].contains(&errno)
    }
}

/// Where the per-namespace instances live.
#[derive(Debug, Clone)]
pub struct NsBpffs {
    dir: PathBuf,
}

impl NsBpffs {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The pin tree of namespace `id`.
    pub fn path(&self, id: NsId) -> PathBuf {
        if id == NsId::ROOT {
            PathBuf::from(HOST_BPFFS)
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
    pub fn repin_to_parent(
        &self,
        id: NsId,
        name: &str,
        parent: NsId,
    ) -> Result<Repinned, BpffsError> {
        let src = self.path(id);
        let mut done = Repinned::default();
        if !self.is_mounted(id) {
            return Ok(done);
        }
        // The parent's tree is its members' /sys/fs/bpf: they may have put anything there,
        // symbolic links included. Everything below is reached through directory handles
        // opened without following any link and without leaving that bpffs.
        let sys = |what: String| move |error| BpffsError::Sys { what, error };
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
        let result = open_dir_beneath(Some(orphans.as_fd()), Path::new(&leaf))
            .map_err(sys(format!("opening {}", dest_path.display())))
            .and_then(|dest| repin_tree(&src, dest.as_fd(), &dest_path, &mut done));
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

fn io(what: String) -> impl FnOnce(std::io::Error) -> BpffsError {
    move |error| BpffsError::Io { what, error }
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
}

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

    fn made_pin(&mut self, dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), BpffsError> {
        let fd = dup_fd(dir).map_err(|error| BpffsError::Sys {
            what: "keeping a directory handle".into(),
            error,
        })?;
        self.pins.push((fd, name.to_os_string()));
        Ok(())
    }
}

/// Pin every object pinned under `src` at the same relative path in the directory `dest` (a
/// handle; `dest_path` names it in messages and in `done`), noting what was made in `done`.
fn repin_tree(
    src: &Path,
    dest: BorrowedFd<'_>,
    dest_path: &Path,
    done: &mut Repinned,
) -> Result<(), BpffsError> {
    let entries = std::fs::read_dir(src).map_err(io(format!("reading {}", src.display())))?;
    for e in entries {
        let e = e.map_err(io(format!("reading {}", src.display())))?;
        // bpffs's own files (maps.debug, progs.debug) have dots; pins cannot.
        if e.file_name().to_string_lossy().contains('.') {
            continue;
        }
        let from = e.path();
        let to = dest_path.join(e.file_name());
        let ft = e
            .file_type()
            .map_err(io(format!("inspecting {}", from.display())))?;
        if ft.is_dir() {
            let sub = subdir(dest, &e.file_name(), &to, done)?;
            repin_tree(&from, sub.as_fd(), &to, done)?;
        } else if ft.is_file() {
            let fd = bpfns_sys::bpf::obj_get(&from).map_err(|error| BpffsError::Sys {
                what: format!("opening pin {}", from.display()),
                error,
            })?;
            bpfns_sys::bpf::obj_pin_at(&fd, dest, &e.file_name()).map_err(|error| {
                BpffsError::Sys {
                    what: format!("re-pinning {} at {}", from.display(), to.display()),
                    error,
                }
            })?;
            done.made_pin(dest, &e.file_name())?;
        }
    }
    Ok(())
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
