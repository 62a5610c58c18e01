//! [`Untagged`]: the view of one listener's tasks in which none is in the root namespace.
//!
//! A listener handed to bpfnsd belongs to a namespace: every task under its filter is a
//! member. Tasks started by `bpfns exec` and a container's init are tagged before the filter
//! exists, and their children inherit the tag; but a process that joins a running container
//! (`podman exec`) comes under the container's filter untagged, and the runtime may not say
//! which process it is (crun sends pid 0). Such a task must never be answered as a
//! root-namespace task (a privileged container would see the whole host): it is tagged into
//! the listener's namespace at its first trapped call, and answered from there.

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use bpfns_kernel::QuotaRefusal;
use bpfns_model::{NsId, ObjectKind};

use super::{View, ViewError};

/// `inner`, except that a task tagged as the root namespace is tagged into `ns` first.
pub struct Untagged {
    pub inner: Arc<dyn View>,
    pub ns: NsId,
}

impl std::fmt::Debug for Untagged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Untagged")
            .field("ns", &self.ns)
            .finish_non_exhaustive()
    }
}

impl View for Untagged {
    fn namespace_of(&self, pidfd: BorrowedFd<'_>) -> Result<NsId, ViewError> {
        let ns = self.inner.namespace_of(pidfd)?;
        if !ns.is_root() {
            return Ok(ns);
        }
        self.inner.adopt(pidfd, self.ns)?;
        Ok(self.ns)
    }
    fn visible_ids(&self, viewer: NsId, kind: ObjectKind) -> Result<Vec<u32>, ViewError> {
        self.inner.visible_ids(viewer, kind)
    }
    fn can_see(&self, viewer: NsId, kind: ObjectKind, id: u32) -> Result<bool, ViewError> {
        self.inner.can_see(viewer, kind, id)
    }
    fn allows_tracing(&self, ns: NsId) -> Result<bool, ViewError> {
        self.inner.allows_tracing(ns)
    }
    fn policy(&self, ns: NsId) -> Result<bpfns_model::Policy, ViewError> {
        self.inner.policy(ns)
    }
    fn bound_cgroup(&self, ns: NsId) -> Result<Option<String>, ViewError> {
        self.inner.bound_cgroup(ns)
    }
    fn reserve_record(
        &self,
        ns: NsId,
        kind: ObjectKind,
    ) -> Result<Result<(), QuotaRefusal>, ViewError> {
        self.inner.reserve_record(ns, kind)
    }
    fn release_record(&self, ns: NsId, kind: ObjectKind) -> Result<(), ViewError> {
        self.inner.release_record(ns, kind)
    }
    fn record_new(&self, ns: NsId, kind: ObjectKind, id: u32) -> Result<bool, ViewError> {
        self.inner.record_new(ns, kind, id)
    }
    fn adopt(&self, pidfd: BorrowedFd<'_>, ns: NsId) -> Result<(), ViewError> {
        self.inner.adopt(pidfd, ns)
    }
    fn supervises_creations(&self) -> bool {
        self.inner.supervises_creations()
    }
    fn root_tag(&self) -> Option<(BorrowedFd<'_>, [u8; 8])> {
        self.inner.root_tag()
    }
}
