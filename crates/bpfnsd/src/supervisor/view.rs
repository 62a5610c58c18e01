//! [`KernelView`]: the supervisor's view of namespaces and objects, from the pinned kernel
//! side (task tags, ownership records, object iterators) and the namespace registry.

use std::os::fd::BorrowedFd;
use std::sync::{Arc, Weak};

use bpfns_kernel::kernel::{RecordChange, RecordLog};
use bpfns_kernel::{Kernel, QuotaRefusal};
use bpfns_model::{NsId, ObjectKind, Visibility};

use crate::shared::{RegistryRead, SharedRegistry};

use super::warm::{self, Warm};
use super::{View, ViewError};

/// A [`View`] over a [`Kernel`] handle and the daemon's registry (shared, so that namespaces
/// created or deleted by the daemon count at once).
pub struct KernelView {
    kernel: Arc<Kernel>,
    registry: SharedRegistry,
    /// Owners of every prog, map and link, kept up to date between walks.
    warm: Warm,
    /// BPF LSM runs: it refuses a member's creation outside its quota or policy before the
    /// object exists (read once: loading that layer takes a restart of bpfnsd anyway).
    lsm_judges_creations: bool,
}

/// The kernel side as the warm listing reads it.
struct KernelSource<'a>(&'a Kernel);

impl warm::Source for KernelSource<'_> {
    fn all(&self, kind: ObjectKind) -> Result<Vec<(u32, NsId)>, ViewError> {
        Ok(self.0.owners_by_id(kind)?)
    }

    fn next_id(&self, kind: ObjectKind, after: u32) -> Result<Option<u32>, ViewError> {
        Ok(bpfns_sys::bpf::next_id(kind, after)?)
    }

    fn owner(&self, kind: ObjectKind, id: u32) -> Result<NsId, ViewError> {
        Ok(self.0.owner(kind, id)?)
    }

    fn owners(
        &self,
        kind: ObjectKind,
    ) -> Result<(std::collections::HashMap<u32, NsId>, usize), ViewError> {
        let records = self.0.ownership_records()?;
        let read = records.len();
        let mine = records
            .into_iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, id, owner)| (id, owner))
            .collect();
        Ok((mine, read))
    }

    fn record_writes(&self) -> Result<u64, ViewError> {
        Ok(self.0.record_writes()?)
    }

    fn log_end(&self) -> u64 {
        RecordLog::end()
    }

    fn log_since(&self, from: u64) -> Option<(Vec<RecordChange>, u64)> {
        RecordLog::since(from)
    }
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
        let lsm_judges_creations = kernel
            .layers()
            .contains(&bpfns_kernel::doctor::Layer::BpfLsm);
        Self {
            kernel,
            registry,
            warm: Warm::default(),
            lsm_judges_creations,
        }
    }

    /// Read every object whole now and every [`warm::REFRESH`], and catch up every
    /// [`warm::CATCH_UP`], on a thread of its own (until the view is dropped), so that walks
    /// find little to do.
    pub fn keep_warm(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("bpfns-warm".into())
            .spawn(move || {
                let mut last_read: Option<std::time::Instant> = None;
                loop {
                    let Some(v) = weak.upgrade() else { return };
                    let whole = last_read.is_none_or(|t| t.elapsed() >= warm::REFRESH);
                    for kind in [ObjectKind::Map, ObjectKind::Prog, ObjectKind::Link] {
                        let src = KernelSource(&v.kernel);
                        let r = if whole {
                            v.warm.refresh(&src, kind)
                        } else {
                            v.warm.catch_up(&src, kind)
                        };
                        if let Err(e) = r {
                            tracing::warn!("supervisor: reading every {kind}: {e}");
                        }
                    }
                    if whole {
                        last_read = Some(std::time::Instant::now());
                    }
                    drop(v);
                    std::thread::sleep(warm::CATCH_UP);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("supervisor: no thread keeps the listing warm ({e}); walks read it");
        }
    }

    fn registry(&self) -> RegistryRead<'_> {
        self.registry.read()
    }
}

impl crate::daemon::ObjectOwners for KernelView {
    fn owners(&self, kind: ObjectKind) -> Result<Vec<(u32, NsId)>, String> {
        self.warm
            .owners(&KernelSource(&self.kernel), kind)
            .map_err(|e| e.to_string())
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
        if kind == ObjectKind::Btf {
            if viewer.is_root() {
                // The root sees everything: no ownership lookups needed.
                return Ok(bpfns_sys::bpf::all_ids(kind)?);
            }
            // No iterator for BTF: its ids and their records, read now.
            let objects = self.kernel.list(kind)?;
            let vis = Visibility::new(&self.registry(), viewer);
            let mut ids: Vec<u32> = objects
                .into_iter()
                .filter(|o| vis.can_see(o.owner))
                .map(|o| o.id)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            return Ok(ids);
        }
        let reg = self.registry();
        // Read under the registry's read lock: the generation names the registry read.
        let generation = self.registry.generation();
        let ids = self
            .warm
            .visible(&KernelSource(&self.kernel), viewer, kind, &reg, generation)?;
        Ok(ids.to_vec())
    }

    fn can_see(&self, viewer: NsId, kind: ObjectKind, id: u32) -> Result<bool, ViewError> {
        if viewer.is_root() {
            return Ok(true);
        }
        let owner = self.kernel.owner(kind, id)?;
        Ok(self.registry().visible(viewer, owner))
    }

    fn reserve_record(
        &self,
        ns: NsId,
        kind: ObjectKind,
    ) -> Result<Result<(), QuotaRefusal>, ViewError> {
        Ok(self.kernel.reserve_record(ns, kind)?)
    }

    fn release_record(&self, ns: NsId, kind: ObjectKind) -> Result<(), ViewError> {
        Ok(self.kernel.release_record(ns, kind)?)
    }

    fn record_new(&self, ns: NsId, kind: ObjectKind, id: u32) -> Result<bool, ViewError> {
        Ok(self.kernel.record_new(kind, id, ns)?)
    }

    fn adopt(&self, pidfd: BorrowedFd<'_>, ns: NsId) -> Result<(), ViewError> {
        Ok(self.kernel.tag(pidfd, ns)?)
    }

    fn supervises_creations(&self) -> bool {
        !self.lsm_judges_creations
    }

    fn root_tag(&self) -> Option<(BorrowedFd<'_>, [u8; 8])> {
        Some((
            self.kernel.task_tag_map(),
            bpfns_kernel::abi::TaskTag::new(NsId::ROOT).to_bytes(),
        ))
    }

    fn allows_tracing(&self, ns: NsId) -> Result<bool, ViewError> {
        // Any tracing-class type: members then load with their own credentials (the kernel
        // side stops a type outside the policy, [`Kernel::set_namespace_policy`]).
        Ok(self
            .registry()
            .effective_policy(ns)
            .is_some_and(|p| p.allows_some_tracing()))
    }

    fn policy(&self, ns: NsId) -> Result<bpfns_model::Policy, ViewError> {
        Ok(self
            .registry()
            .effective_policy(ns)
            .unwrap_or(bpfns_model::Policy::DEFAULT))
    }

    fn bound_cgroup(&self, ns: NsId) -> Result<Option<String>, ViewError> {
        Ok(self.registry().cgroup(ns).map(str::to_owned))
    }
}
