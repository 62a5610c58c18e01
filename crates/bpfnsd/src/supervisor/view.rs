//! [`KernelView`]: the supervisor's view of namespaces and objects, from the pinned kernel
//! side (task tags, ownership records, object iterators) and the namespace registry.

use std::os::fd::BorrowedFd;
use std::sync::{Arc, RwLock};

use bpfns_kernel::Kernel;
use bpfns_model::{NsId, ObjectKind, Registry, Visibility};

use super::{View, ViewError};

/// A [`View`] over a [`Kernel`] handle and the daemon's registry (shared, so that namespaces
/// created or deleted by the daemon count at once).
pub struct KernelView {
    kernel: Arc<Kernel>,
    registry: Arc<RwLock<Registry>>,
}

impl std::fmt::Debug for KernelView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelView")
            .field("pin_root", &self.kernel.layout().root())
            .finish_non_exhaustive()
    }
}

impl KernelView {
    pub fn new(kernel: Arc<Kernel>, registry: Arc<RwLock<Registry>>) -> Self {
        Self { kernel, registry }
    }

    fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        // A writer that panicked left the tree as it was before or after its change: both
        // are consistent trees.
        self.registry.read().unwrap_or_else(|e| e.into_inner())
    }
}

fn failed(e: impl std::fmt::Display) -> ViewError {
    ViewError::Failed(e.to_string())
}

impl View for KernelView {
    fn namespace_of(&self, pidfd: BorrowedFd<'_>) -> Result<NsId, ViewError> {
        self.kernel.task_ns(pidfd).map_err(|e| {
            // The task-storage lookup of a pidfd whose task has exited fails with ESRCH.
            if e.errno() == Some(bpfns_sys::Errno::SRCH) {
                ViewError::Gone
            } else {
                ViewError::Failed(e.to_string())
            }
        })
    }

    fn visible_ids(&self, viewer: NsId, kind: ObjectKind) -> Result<Vec<u32>, ViewError> {
        if viewer.is_root() && kind == ObjectKind::Btf {
            // The root sees everything: no ownership lookups needed.
            return bpfns_sys::bpf::all_ids(kind).map_err(failed);
        }
        let objects = self.kernel.list(kind).map_err(failed)?;
        let vis = Visibility::new(&self.registry(), viewer);
        let mut ids: Vec<u32> = objects
            .into_iter()
            .filter(|o| vis.can_see(o.owner))
            .map(|o| o.id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    fn can_see(&self, viewer: NsId, kind: ObjectKind, id: u32) -> Result<bool, ViewError> {
        if viewer.is_root() {
            return Ok(true);
        }
        let owner = self.kernel.owner(kind, id).map_err(failed)?;
        Ok(self.registry().visible(viewer, owner))
    }

    fn reserve_record(&self, ns: NsId) -> Result<Result<(), String>, ViewError> {
        self.kernel
            .reserve_record(ns)
            .map(|r| r.map_err(|refusal| refusal.to_string()))
            .map_err(failed)
    }

    fn release_record(&self, ns: NsId) -> Result<(), ViewError> {
        self.kernel.release_record(ns).map_err(failed)
    }

    fn record_program(&self, ns: NsId, id: u32) -> Result<bool, ViewError> {
        self.kernel
            .record_new(ObjectKind::Prog, id, ns)
            .map_err(failed)
    }

    fn allows_tracing(&self, ns: NsId) -> Result<bool, ViewError> {
        // A namespace never allows more than its parent (the registry keeps it so).
        Ok(self.registry().policy(ns).is_some_and(|p| p.allow_tracing))
    }
}
