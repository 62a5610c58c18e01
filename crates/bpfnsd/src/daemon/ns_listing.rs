//! What bpfnsd says about namespaces (`ns_list`, `ns_show`): each one's description (from the
//! registry) and usage (objects, members, ownership records, map memory).
//!
//! A listing of 10 000 namespaces is written as it is gathered: each namespace's description
//! is kept encoded until the registry changes ([`Descriptions`]), so that a listing encodes
//! only the usage, which changes with every object made.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bpfns_kernel::NsQuota;
use bpfns_model::{NsId, ObjectKind, Registry};
use bpfns_proto::{
    EncodedDescription, EncodedNamespaces, ErrorCode, NsInfo, NsUsage, ObjectCounts, MAX_RESPONSE,
};

use super::{Census, Daemon, Failure, ObjectOwners, Walked};
use crate::caller::Caller;

/// Every namespace's description encoded, as of one generation of the registry.
#[derive(Debug, Default)]
pub(super) struct Descriptions(Mutex<Option<Arc<Described>>>);

#[derive(Debug)]
pub(super) struct Described {
    generation: u64,
    by_id: HashMap<NsId, EncodedDescription>,
}

impl Descriptions {
    /// The descriptions as of registry `generation`, made with `make` unless those kept are
    /// of it. (Two listings that find them out of date both make them: it is rare, and
    /// neither waits for the other.)
    fn get(
        &self,
        generation: u64,
        make: impl FnOnce() -> Result<HashMap<NsId, EncodedDescription>, Failure>,
    ) -> Result<Arc<Described>, Failure> {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(d) = kept.filter(|d| d.generation == generation) {
            return Ok(d);
        }
        let made = Arc::new(Described {
            generation,
            by_id: make()?,
        });
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // A later generation made meanwhile stays.
        if kept.as_ref().is_none_or(|k| k.generation < generation) {
            *kept = Some(Arc::clone(&made));
        }
        Ok(made)
    }
}

/// What every namespace's usage is taken from, gathered before the registry is read.
struct Counts {
    census: Arc<Census>,
    /// Every namespace's quota counters, read in a few batches (for many namespaces);
    /// `None`: each namespace's are looked up.
    quotas: Option<HashMap<NsId, NsQuota>>,
    supervised_creations: bool,
}

/// Namespaces from which a listing reads every quota counter in batches: a batched read walks
/// every bucket of tables made for 65,536 namespaces (a tenth of the API threads' CPU when
/// 1,000 clients listed a few dozen namespaces), two lookups a namespace do not.
const QUOTAS_BATCHED_FROM: usize = 256;

/// Bytes a namespace takes in a listing, about: room made up front.
const LISTED_BYTES: usize = 384;

impl Daemon {
    /// The frame answering request `seq`: the namespaces `caller` sees (its own and those below
    /// it, in path order), each one's description as kept, its usage as of now.
    pub(super) fn ns_list(
        &self,
        caller: &Caller,
        seq: u64,
        census: Option<Walked<Census>>,
    ) -> Result<Vec<u8>, Failure> {
        // Not under the registry's lock: the census reads the supervisor's listing, which
        // reads the registry.
        let listed = self.reg().subtree_len(caller.ns);
        let counts = self.counts(listed, census)?;
        let reg = self.reg();
        // Under the lock: the generation of the registry read.
        let generation = self.registry.generation();
        let ids = reg.subtree(caller.ns);
        let described = self.descriptions.get(generation, || {
            let effective = reg.effective_policies();
            let mut by_id = HashMap::with_capacity(reg.len());
            for (id, _) in reg.iter() {
                if let Some(info) = self.describe(&reg, Some(&effective), id) {
                    by_id.insert(id, EncodedDescription::of(&info).map_err(too_large)?);
                }
            }
            Ok(by_id)
        })?;
        let memory = SubtreeMemory::of(&reg, &counts.census);
        let mut out = EncodedNamespaces::new(seq, ids.len() * LISTED_BYTES).map_err(too_large)?;
        for id in ids {
            // Every namespace of this registry is described.
            let Some(d) = described.by_id.get(&id) else {
                continue;
            };
            out.push(d, &self.usage(&counts, &memory, id))
                .map_err(too_large)?;
        }
        drop(reg);
        out.into_frame(MAX_RESPONSE).map_err(too_large)
    }

    /// The info of namespace `id` (named `path` in errors); `NotFound` if it was deleted
    /// since the caller looked it up.
    pub(super) fn ns_info_of(
        &self,
        id: NsId,
        path: &dyn std::fmt::Display,
    ) -> Result<NsInfo, Failure> {
        self.ns_info_with(id, path, None)
    }

    /// [`Daemon::ns_info_of`] with `census` if the API server waited for one.
    pub(super) fn ns_info_with(
        &self,
        id: NsId,
        path: &dyn std::fmt::Display,
        census: Option<Walked<Census>>,
    ) -> Result<NsInfo, Failure> {
        self.ns_infos(&[id], census)?.pop().ok_or_else(|| {
            Failure::new(
                ErrorCode::NotFound,
                format!("namespace {path} was deleted meanwhile"),
            )
        })
    }

    /// Every namespace's info.
    pub fn all_ns_infos(&self) -> Result<Vec<NsInfo>, Failure> {
        let ids: Vec<NsId> = self.reg().iter().map(|(id, _)| id).collect();
        self.ns_infos(&ids, None)
    }

    /// Infos with object and member counts, in the order of `ids` (those still known).
    fn ns_infos(
        &self,
        ids: &[NsId],
        census: Option<Walked<Census>>,
    ) -> Result<Vec<NsInfo>, Failure> {
        let counts = self.counts(ids.len(), census)?;
        let reg = self.reg();
        // Many namespaces: their effective policies in one pass down the tree.
        let effective = (ids.len() > 1).then(|| reg.effective_policies());
        let memory = SubtreeMemory::of(&reg, &counts.census);
        Ok(ids
            .iter()
            .filter_map(|&id| {
                let mut info = self.describe(&reg, effective.as_ref(), id)?;
                info.set_usage(self.usage(&counts, &memory, id));
                Some(info)
            })
            .collect())
    }

    /// Let the census take owners from `owners` instead of walking every object (once; a
    /// later call changes nothing).
    pub fn set_object_owners(&self, owners: Arc<dyn ObjectOwners>) {
        let _ = self.object_owners.set(owners);
    }

    /// Every object of `kind` and its owner, sorted by id: from [`ObjectOwners`] where it
    /// answers (never for BTF, which no iterator lists), else from a walk of them all.
    fn owners(&self, kind: ObjectKind) -> Result<Vec<(u32, NsId)>, String> {
        if let Some(o) = self.object_owners.get().filter(|_| kind != ObjectKind::Btf) {
            match o.owners(kind) {
                Ok(v) => return Ok(v),
                Err(e) => tracing::debug!(
                    "census: the warm listing of {kind}s failed ({e}); walking them"
                ),
            }
        }
        self.kernel.owners_by_id(kind).map_err(|e| e.to_string())
    }

    /// The census (`prepared`'s if the API server waited for one, else one for the requests
    /// that wait together) and, for `namespaces` of [`QUOTAS_BATCHED_FROM`] or more, every
    /// quota counter in a few batched reads instead of lookups for each.
    fn counts(
        &self,
        namespaces: usize,
        prepared: Option<Walked<Census>>,
    ) -> Result<Counts, Failure> {
        let many = namespaces >= QUOTAS_BATCHED_FROM;
        let census = prepared
            .unwrap_or_else(|| self.census.get(|| self.census_walk()))
            .map_err(Failure::internal)?;
        Ok(Counts {
            census,
            quotas: many.then(|| self.kernel.namespace_quotas().ok()).flatten(),
            supervised_creations: self.supervises_creations(),
        })
    }

    /// Every namespace's objects, members and map memory, from a walk of every object and
    /// tagged task.
    pub(super) fn census_walk(&self) -> Result<Census, String> {
        let mut c = Census::default();
        let mut maps = bpfns_kernel::memory::map_census_of(self.owners(ObjectKind::Map)?);
        for kind in ObjectKind::ALL {
            let counts = match kind {
                ObjectKind::Map => std::mem::take(&mut maps.counts),
                _ => {
                    let mut counts: HashMap<NsId, u32> = HashMap::new();
                    for (_, owner) in self.owners(kind)? {
                        *counts.entry(owner).or_default() += 1;
                    }
                    counts
                }
            };
            for (owner, n) in counts {
                let o = c.objects.entry(owner).or_default();
                match kind {
                    ObjectKind::Prog => o.prog += n,
                    ObjectKind::Map => o.map += n,
                    ObjectKind::Link => o.link += n,
                    ObjectKind::Btf => o.btf += n,
                }
            }
        }
        for t in self.kernel.tagged_tasks().map_err(|e| e.to_string())? {
            *c.members.entry(t.ns).or_default() += 1;
        }
        c.map_memory = maps.memory;
        Ok(c)
    }

    /// Namespace `id`'s usage from `counts`.
    fn usage(&self, counts: &Counts, memory: &SubtreeMemory, id: NsId) -> NsUsage {
        let quota = match &counts.quotas {
            // No entry in any quota map reads as namespace_quota's zeros.
            Some(all) => Some(all.get(&id).copied().unwrap_or_default()),
            None => self.kernel.namespace_quota(id).ok(),
        };
        // The root's objects are not recorded: it has no counters.
        let q = quota.filter(|_| id != NsId::ROOT);
        let census = &counts.census;
        NsUsage {
            objects: census.objects.get(&id).copied().unwrap_or_default(),
            members: census.members.get(&id).copied().unwrap_or(0),
            supervised_creations: counts.supervised_creations,
            records: q.map(|q| q.used),
            map_memory: Some(census.map_memory.get(&id).copied().unwrap_or(0)),
            map_memory_total: Some(memory.total_of(id)),
            kind_records: q.map(|q| {
                let n = |k: ObjectKind| {
                    u32::try_from(q.kinds[bpfns_kernel::abi::kind_index(k)].used)
                        .unwrap_or(u32::MAX)
                };
                ObjectCounts {
                    prog: n(ObjectKind::Prog),
                    map: n(ObjectKind::Map),
                    link: n(ObjectKind::Link),
                    btf: n(ObjectKind::Btf),
                }
            }),
        }
    }

    /// The info of namespace `id`, just made: nothing counted but its quota (ids are never
    /// reused, and tasks enter only through later requests).
    pub(super) fn new_ns_info(&self, reg: &Registry, id: NsId) -> Option<NsInfo> {
        let mut info = self.describe(reg, None, id)?;
        let census = Census::default();
        let counts = Counts {
            census: Arc::new(census),
            quotas: None,
            supervised_creations: self.supervises_creations(),
        };
        let mut usage = self.usage(&counts, &SubtreeMemory::of(reg, &counts.census), id);
        // Its maps' memory is not looked at.
        (usage.map_memory, usage.map_memory_total) = (None, None);
        info.set_usage(usage);
        Some(info)
    }

    /// Namespace `id`'s description (its usage left at zero); its effective policy from
    /// `effective` if given ([`Registry::effective_policies`]); `None` if `id` is unknown.
    fn describe(
        &self,
        reg: &Registry,
        effective: Option<&HashMap<NsId, bpfns_model::Policy>>,
        id: NsId,
    ) -> Option<NsInfo> {
        let n = reg.describe(id)?;
        Some(NsInfo {
            path: n.path.to_string(),
            id,
            parent: n.parent.and_then(|p| reg.path(p)).map(|p| p.to_string()),
            depth: n.path.depth(),
            objects: ObjectCounts::default(),
            members: 0,
            bpffs: self.bpffs.path(id).display().to_string(),
            policy: n.policy,
            // Sent only where it differs from the own policy (read back as it then).
            effective_policy: match effective {
                Some(all) => all.get(&id).copied(),
                None => reg.effective_policy(id),
            }
            .filter(|e| *e != n.policy),
            supervised_creations: false,
            max_objects: n.max_objects,
            cgroup: n.cgroup.map(str::to_owned),
            records: None,
            kind_limits: n.kind_limits,
            kind_records: None,
            map_memory: None,
            map_memory_total: None,
        })
    }
}

/// Each namespace's map memory with its descendants', summed up the tree once from the
/// owners (`reg.subtree` of each of 10 000 namespaces was a seventh of a listing).
struct SubtreeMemory {
    below: HashMap<NsId, u64>,
    /// Everything, for the root: quarantined objects' and those of owners the registry no
    /// longer has included.
    all: u64,
}

impl SubtreeMemory {
    fn of(reg: &Registry, census: &Census) -> Self {
        let mut below: HashMap<NsId, u64> = HashMap::new();
        for (&owner, &bytes) in &census.map_memory {
            if owner == NsId::ROOT || !reg.contains(owner) {
                continue;
            }
            *below.entry(owner).or_default() += bytes;
            for a in reg.ancestors(owner) {
                *below.entry(a).or_default() += bytes;
            }
        }
        Self {
            below,
            all: census.map_memory.values().sum(),
        }
    }

    fn total_of(&self, id: NsId) -> u64 {
        if id == NsId::ROOT {
            self.all
        } else {
            self.below.get(&id).copied().unwrap_or(0)
        }
    }
}

/// A listing that cannot be encoded (one too large to send).
fn too_large(e: bpfns_proto::FrameError) -> Failure {
    Failure::internal(format!("the namespace listing cannot be sent: {e}"))
}
