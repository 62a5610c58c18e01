//! [`KernelView`]: the supervisor's view of namespaces and objects, from the pinned kernel
//! side (task tags, ownership records, object iterators) and the namespace registry.

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use bpfns_kernel::{Kernel, QuotaRefusal};
use bpfns_model::{NsId, ObjectKind, Visibility};

use crate::shared::{RegistryRead, SharedRegistry};

use super::{View, ViewError};

/// A [`View`] over a [`Kernel`] handle and the daemon's registry (shared, so that namespaces
/// created or deleted by the daemon count at once).
pub struct KernelView {
    kernel: Arc<Kernel>,
    registry: SharedRegistry,
}

impl std::fmt::Debug for KernelView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelView")
            .field("pin_root", &self.kernel.layout().root())
            .finish_non_exhaustive()
    }
}

impl KernelView {
    pub fn new(kernel: Arc<Kernel>, registry: SharedRegistry) -> Self {
        Self { kernel, registry }
    }

    fn registry(&self) -> RegistryRead<'_> {
        self.registry.read()
    }
}

impl View for KernelView {
    fn namespace_of(&self, pidfd: BorrowedFd<'_>) -> Result<NsId, ViewError> {
        self.kernel.task_ns(pidfd).map_err(|e| {
            // The task-storage lookup of a pidfd whose task has exited fails with ESRCH.
            if e.errno() == Some(bpfns_sys::Errno::SRCH) {
                ViewError::Gone
            } else {
                ViewError::Kernel(e)
            }
        })
    }

    fn visible_ids(&self, viewer: NsId, kind: ObjectKind) -> Result<Vec<u32>, ViewError> {
        if viewer.is_root() && kind == ObjectKind::Btf {
            // The root sees everything: no ownership lookups needed.
            return Ok(bpfns_sys::bpf::all_ids(kind)?);
        }
        let objects = self.kernel.list(kind)?;
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
        let owner = self.kernel.owner(kind, id)?;
        Ok(self.registry().visible(viewer, owner))
    }

    fn reserve_record(&self, ns: NsId) -> Result<Result<(), QuotaRefusal>, ViewError> {
        Ok(self.kernel.reserve_record(ns)?)
    }

    fn release_record(&self, ns: NsId) -> Result<(), ViewError> {
        Ok(self.kernel.release_record(ns)?)
    }

    fn record_new(&self, ns: NsId, kind: ObjectKind, id: u32) -> Result<bool, ViewError> {
        Ok(self.kernel.record_new(kind, id, ns)?)
    }

    fn adopt(&self, pidfd: BorrowedFd<'_>, ns: NsId) -> Result<(), ViewError> {
        Ok(self.kernel.tag(pidfd, ns)?)
    }

    fn allows_tracing(&self, ns: NsId) -> Result<bool, ViewError> {
        // A namespace never allows more than its parent (the registry keeps it so).
        Ok(self.registry().policy(ns).is_some_and(|p| p.allow_tracing))
    }
}
