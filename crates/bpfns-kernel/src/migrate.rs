//! Pinned maps whose definition changed between bpfns versions: their entries are carried
//! over into a map of the new definition.
//!
//! libbpf reuses a pinned map only if its type, key and value sizes, capacity and flags match
//! the object's definition; otherwise the load fails. When a release changes a state map's
//! capacity or flags (the ownership map grew from a preallocated `1 << 18` to a
//! non-preallocated `1 << 20`), the loader:
//!
//! 1. [`begin`]: creates a map of the new definition, copies every entry, and renames its pin
//!    over the old one (atomic in bpffs): the new programs, loaded next, reuse it;
//! 2. loads and attaches the new programs, which replace the old ones link by link;
//! 3. [`Migration::finish`]: copies again what the old programs wrote into the old map until
//!    they were replaced (entries the new map lacks; never overwriting one).
//!
//! Between 1 and 3 a record written by an old program is missing from the new map: the new
//! programs see that object as root's and refuse it to namespace tasks (fail closed), for the
//! milliseconds of the swap. A record the old programs deleted meanwhile (a freed object)
//! stays in the new map until bpfnsd's collector drops it. If loading fails before the
//! programs were swapped, [`Migration::abort`] puts the old map back.

use std::path::{Path, PathBuf};

use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::error::{KernelError, Result};

/// `BPF_F_NO_PREALLOC`.
pub const BPF_F_NO_PREALLOC: u32 = 1;

/// The definition a pinned map must have.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    pub name: &'static str,
    pub max_entries: u32,
    pub map_flags: u32,
}

/// A migration between [`begin`] and [`Migration::finish`].
#[derive(Debug)]
pub struct Migration {
    name: &'static str,
    path: PathBuf,
    old: MapHandle,
    new: MapHandle,
    /// Entries copied so far.
    pub copied: usize,
}

/// Start migrating the map pinned at `path` if its definition differs from `want`; `None` when
/// nothing is pinned there or it already matches.
pub fn begin(path: &Path, want: Want) -> Result<Option<Migration>> {
    if !path.exists() {
        return Ok(None);
    }
    let old = MapHandle::from_pinned_path(path).map_err(KernelError::libbpf(format!(
        "opening pinned map {}",
        want.name
    )))?;
    let info = old
        .info()
        .map_err(KernelError::libbpf(format!("reading map {}", want.name)))?
        .info;
    if info.max_entries == want.max_entries && info.map_flags == want.map_flags {
        return Ok(None);
    }
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        map_flags: want.map_flags,
        ..Default::default()
    };
    let mut new = MapHandle::create(
        old.map_type(),
        Some(want.name),
        info.key_size,
        info.value_size,
        want.max_entries,
        &opts,
    )
    .map_err(KernelError::libbpf(format!(
        "creating the new {} ({} entries)",
        want.name, want.max_entries
    )))?;
    let copied = copy(&old, &new, MapFlags::ANY, want.name)?;
    let tmp = path.with_file_name(format!("new-{}", want.name));
    let _ = std::fs::remove_file(&tmp);
    new.pin(&tmp)
        .map_err(KernelError::libbpf(format!("pinning {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(KernelError::io(format!(
        "renaming {} over {}",
        tmp.display(),
        path.display()
    )))?;
    tracing::info!(
        map = want.name,
        from = info.max_entries,
        to = want.max_entries,
        copied,
        "migrating a pinned map to its new definition"
    );
    Ok(Some(Migration {
        name: want.name,
        path: path.to_path_buf(),
        old,
        new,
        copied,
    }))
}

/// Copy every entry of `from` into `to` with `flags`; entries `to` has already are kept
/// (`MapFlags::NO_EXIST`). Returns how many were written.
fn copy(from: &MapHandle, to: &MapHandle, flags: MapFlags, name: &str) -> Result<usize> {
    let mut n = 0;
    for key in from.keys() {
        let Some(value) = from
            .lookup(&key, MapFlags::ANY)
            .map_err(KernelError::libbpf(format!("reading {name}")))?
        else {
            continue; // deleted meanwhile
        };
        match to.update(&key, &value, flags) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == libbpf_rs::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(KernelError::libbpf(format!("copying {name}"))(e)),
        }
    }
    Ok(n)
}

impl Migration {
    /// The old programs are gone: copy what they wrote since [`begin`]. The old map is freed
    /// when this returns (nothing refers to it any more).
    pub fn finish(mut self) -> Result<usize> {
        let late = copy(&self.old, &self.new, MapFlags::NO_EXIST, self.name)?;
        self.copied += late;
        tracing::info!(
            map = self.name,
            copied = self.copied,
            late,
            "migrated a pinned map"
        );
        Ok(self.copied)
    }

    /// Loading failed before the new programs ran: pin the old map back.
    pub fn abort(mut self) -> Result<()> {
        let tmp = self.path.with_file_name(format!("old-{}", self.name));
        let _ = std::fs::remove_file(&tmp);
        self.old
            .pin(&tmp)
            .map_err(KernelError::libbpf(format!("pinning {}", tmp.display())))?;
        std::fs::rename(&tmp, &self.path).map_err(KernelError::io(format!(
            "renaming {} over {}",
            tmp.display(),
            self.path.display()
        )))
    }
}
