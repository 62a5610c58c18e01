//! Each namespace's own bpffs instance (contract point (docs/design.md) 8).
//!
//! Every `mount -t bpf` is a new, empty instance. Namespace `N` gets one at
//! `<ns_bpffs_dir>/<id>`; `bpfns exec` bind-mounts it over `/sys/fs/bpf` in the member's
//! private mount namespace, so a member sees only its own pins there. The root namespace's
//! tree is the host's `/sys/fs/bpf`. When a namespace is deleted, its pins move to its
//! parent's tree under `orphans/<name>/`, as its objects move to the parent.

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

    /// Remove `id`'s instance, re-pinning what is pinned there into `parent`'s tree under
    /// `orphans/<name>/`. Returns how many pins moved.
    pub fn remove(&self, id: NsId, name: &str, parent: NsId) -> Result<usize, BpffsError> {
        let src = self.path(id);
        if !self.is_mounted(id) {
            return Ok(0);
        }
        let dest = self.path(parent).join("orphans").join(name);
        let moved = repin_tree(&src, &dest)?;
        unmount_detach(&src).map_err(|error| BpffsError::Sys {
            what: format!("unmounting {}", src.display()),
            error,
        })?;
        let _ = std::fs::remove_dir(&src);
        Ok(moved)
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

/// Pin every object pinned under `src` at the same relative path under `dest`.
fn repin_tree(src: &Path, dest: &Path) -> Result<usize, BpffsError> {
    let mut moved = 0;
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
            moved += repin_tree(&from, &to)?;
        } else if ft.is_file() {
            std::fs::create_dir_all(dest).map_err(io(format!("creating {}", dest.display())))?;
            let fd = bpfns_sys::bpf::obj_get(&from).map_err(|error| BpffsError::Sys {
                what: format!("opening pin {}", from.display()),
                error,
            })?;
            bpfns_sys::bpf::obj_pin(&fd, &to).map_err(|error| BpffsError::Sys {
                what: format!("re-pinning {} at {}", from.display(), to.display()),
                error,
            })?;
            moved += 1;
        }
    }
    Ok(moved)
}
