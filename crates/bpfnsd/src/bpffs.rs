//! Each namespace's own bpffs instance (contract point (docs/design.md) 8).
//!
//! Every `mount -t bpf` is a new, empty instance. Namespace `N` gets one at
//! `<ns_bpffs_dir>/<id>`; `bpfns exec` bind-mounts it over `/sys/fs/bpf` in the member's
//! private mount namespace, so a member sees only its own pins there. The root namespace's
//! tree is the host's `/sys/fs/bpf`. When a namespace is deleted, its pins move to its
//! parent's tree under `orphans/<name>-<id>/`, as its objects move to the parent.

use std::path::{Path, PathBuf};

use bpfns_model::NsId;
use bpfns_sys::fs::{ensure_bpffs, fs_magic, unmount_detach, BPF_FS_MAGIC};

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
        let orphans = self.path(parent).join("orphans");
        // bpffs refuses names with dots, which namespace names may have.
        let base = format!("{}-{id}", name.replace('.', "_"));
        let mut dest = orphans.join(&base);
        let mut n = 1;
        while dest.exists() {
            n += 1;
            dest = orphans.join(format!("{base}-{n}"));
        }
        done.dest = Some(dest.clone());
        if let Err(e) = repin_tree(&src, &dest, &mut done) {
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

/// What [`NsBpffs::repin_to_parent`] made: the pins and directories it created.
#[derive(Debug, Default)]
pub struct Repinned {
    /// Where the pins went (`None`: nothing was pinned).
    pub dest: Option<PathBuf>,
    pins: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Repinned {
    /// How many pins were copied.
    pub fn count(&self) -> usize {
        self.pins.len()
    }

    /// Remove the copies (pins, then the directories made for them, deepest first).
    pub fn undo(&mut self) {
        for p in self.pins.drain(..).rev() {
            let _ = std::fs::remove_file(p);
        }
        for d in self.dirs.drain(..).rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Pin every object pinned under `src` at the same relative path under `dest`, noting what
/// was made in `done`.
fn repin_tree(src: &Path, dest: &Path, done: &mut Repinned) -> Result<(), BpffsError> {
    let entries = std::fs::read_dir(src).map_err(io(format!("reading {}", src.display())))?;
    for e in entries {
        let e = e.map_err(io(format!("reading {}", src.display())))?;
        // bpffs's own files (maps.debug, progs.debug) have dots; pins cannot.
        if e.file_name().to_string_lossy().contains('.') {
            continue;
        }
        let from = e.path();
        let to = dest.join(e.file_name());
        let ft = e
            .file_type()
            .map_err(io(format!("inspecting {}", from.display())))?;
        if ft.is_dir() {
            repin_tree(&from, &to, done)?;
        } else if ft.is_file() {
            make_dirs(dest, done)?;
            let fd = bpfns_sys::bpf::obj_get(&from).map_err(|error| BpffsError::Sys {
                what: format!("opening pin {}", from.display()),
                error,
            })?;
            bpfns_sys::bpf::obj_pin(&fd, &to).map_err(|error| BpffsError::Sys {
                what: format!("re-pinning {} at {}", from.display(), to.display()),
                error,
            })?;
            done.pins.push(to);
        }
    }
    Ok(())
}

/// Create `dir` and its missing parents, noting each one made in `done`.
fn make_dirs(dir: &Path, done: &mut Repinned) -> Result<(), BpffsError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_dirs(parent, done)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {
            done.dirs.push(dir.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(BpffsError::Io {
            what: format!("creating {}", dir.display()),
            error: e,
        }),
    }
}
