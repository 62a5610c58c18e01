//! The namespace tree: ids, paths, parents, and a persistable snapshot of it.

use std::collections::{BTreeMap, BTreeSet};

// The tree's maps share their structure between copies: a namespace change works on a copy
// of the registry (committed or dropped whole), and copying 10 000 namespaces' std maps
// cost milliseconds per change; these copy in O(1) and change in O(log n).
use imbl::OrdMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::id::NsId;
use crate::path::{NsPath, MAX_DEPTH};
use crate::program_policy::{Field, Policy};
use crate::quota::KindLimits;

/// One namespace in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    path: NsPath,
    /// `None` only for the root.
    parent: Option<NsId>,
    /// Children by name, so that listing them is sorted by name.
    children: OrdMap<String, NsId>,
    /// What its members may load; never more than the parent's.
    policy: Policy,
    /// How many ownership records it may use with its descendants ([`crate::quota`]); `None`
    /// for the root (unlimited) and for namespaces stored before limits existed (the
    /// daemon gives them its default: [`crate::quota::fill_default_limits`]).
    max_objects: Option<u32>,
    /// Its limits per kind of object ([`crate::quota::KindLimits`]); none: only the total.
    kind_limits: KindLimits,
    /// The cgroup v2 subtree its members may attach programs to, as a path below the
    /// cgroup2 root (`/system.slice/x`); `None` until bound: no cgroup at all.
    cgroup: Option<String>,
}

/// One namespace as the registry holds it ([`Registry::describe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsDescription<'a> {
    pub path: &'a NsPath,
    /// `None` only for the root.
    pub parent: Option<NsId>,
    pub policy: Policy,
    pub max_objects: Option<u32>,
    pub kind_limits: KindLimits,
    pub cgroup: Option<&'a str>,
}

/// The tree of BPF namespaces (contract point (docs/design.md) 1).
///
/// The root (`/`, [`NsId::ROOT`]) always exists. The registry only holds the tree; it knows
/// nothing of tasks or objects. The daemon checks that a namespace has no member tasks
/// before it deletes it, and moves the deleted namespace's objects to its parent.
///
/// It serializes as a [`Snapshot`], and deserializing validates it like
/// [`Registry::from_snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Snapshot", into = "Snapshot")]
pub struct Registry {
    nodes: OrdMap<NsId, Node>,
    /// Every namespace by path; iterating it walks the tree in pre-order.
    by_path: OrdMap<NsPath, NsId>,
    /// The next id to hand out. Only ever grows, and is persisted, so ids are never reused.
    next_id: u32,
}

/// What [`Registry::delete`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    /// The id of the deleted namespace; it will never be handed out again.
    pub id: NsId,
    /// Its parent: the new owner of whatever objects the deleted namespace still owned
    /// (contract point (docs/design.md) 10; re-tagging them is the daemon's job).
    pub parent: NsId,
}

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The namespace to create exists already.
    #[error("namespace {0} already exists")]
    AlreadyExists(NsPath),
    /// The parent of the namespace to create does not exist.
    #[error(
        "cannot create namespace {path}: its parent {parent} does not exist; namespaces are \
         created one level at a time, create the parent first"
    )]
    ParentMissing {
        /// The namespace to create.
        path: NsPath,
        /// Its missing parent.
        parent: NsPath,
    },
    /// No namespace has that path.
    #[error("namespace {0} does not exist")]
    NotFound(NsPath),
    /// The root was to be deleted.
    #[error("the root namespace / cannot be deleted: it is the host, and always exists")]
    RootIsPermanent,
    /// The namespace to delete still has child namespaces.
    #[error(
        "cannot delete namespace {path}: it still has {} child namespace(s) ({}); delete the \
         children first",
        children.len(),
        ListPaths(children)
    )]
    HasChildren {
        /// The namespace to delete.
        path: NsPath,
        /// Its children, sorted by name.
        children: Vec<NsPath>,
    },
    /// A policy would allow more than the parent's.
    #[error(
        "namespace {path} cannot have {policy}: in its {} it allows what its parent {parent} \
         does not, and a namespace never allows more than its parent; change the parent's \
         policy first",
        ListFields(fields)
    )]
    PolicyWiderThanParent {
        /// The namespace.
        path: NsPath,
        /// The policy asked for.
        policy: Box<Policy>,
        /// Where it allows more.
        fields: Vec<Field>,
        /// Its parent.
        parent: NsPath,
    },
    /// Narrowing a policy would leave descendants allowed more than it.
    #[error(
        "namespace {path} cannot have {policy}: its descendants {} allow more, and a \
         namespace never allows more than its parent; narrow them first",
        ListPaths(descendants)
    )]
    PolicyNarrowerThanDescendants {
        /// The namespace.
        path: NsPath,
        /// The policy asked for.
        policy: Box<Policy>,
        /// The descendants whose policy is wider, in tree order.
        descendants: Vec<NsPath>,
    },
    /// The root's policy was to be changed.
    #[error("the root namespace / is the host: its policy is fixed (it may load anything the kernel allows)")]
    RootPolicyIsFixed,
    /// The 32-bit id space is used up (ids are never reused).
    #[error(
        "namespace ids are exhausted: all {} have been used, and ids are never reused",
        u32::MAX - 1
    )]
    IdsExhausted,
}

/// Displays at most a few paths, comma-separated.
struct ListFields<'a>(&'a [Field]);

impl fmt::Display for ListFields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|x| x.name()).collect();
        f.write_str(&names.join(", "))
    }
}

struct ListPaths<'a>(&'a [NsPath]);

impl fmt::Display for ListPaths<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 5;
        for (i, p) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{p}")?;
        }
        if self.0.len() > SHOWN {
            write!(f, ", and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry with only the root namespace.
    pub fn new() -> Self {
        let root = Node {
            path: NsPath::root(),
            parent: None,
            children: OrdMap::new(),
            policy: Policy::HOST,
            max_objects: None,
            kind_limits: KindLimits::NONE,
            cgroup: None,
        };
        Registry {
            nodes: OrdMap::unit(NsId::ROOT, root),
            by_path: OrdMap::unit(NsPath::root(), NsId::ROOT),
            next_id: 1,
        }
    }

    /// Creates the namespace `path` with the default policy ([`Policy::DEFAULT`]) as far as
    /// its parent's allows, and returns its new id.
    ///
    /// Its parent must exist and `path` must not; the depth bound ([`MAX_DEPTH`]) holds by
    /// construction of [`NsPath`].
    pub fn create(&mut self, path: &NsPath) -> Result<NsId, RegistryError> {
        let policy = self.default_policy_under(path);
        self.create_with_policy(path, policy)
    }

    /// What a namespace created at `path` without a policy asked for gets: the default,
    /// capped by its parent's (a parent that allows only some program types passes on no
    /// more). The default itself where the parent is unknown.
    pub fn default_policy_under(&self, path: &NsPath) -> Policy {
        path.parent()
            .and_then(|pp| self.by_path.get(&pp))
            .and_then(|&parent| self.policy(parent))
            .map_or(Policy::DEFAULT, |pp| Policy::DEFAULT.intersect(&pp))
    }

    /// Like [`create`](Self::create), with `policy`, which must be within the parent's.
    pub fn create_with_policy(
        &mut self,
        path: &NsPath,
        policy: Policy,
    ) -> Result<NsId, RegistryError> {
        if self.by_path.contains_key(path) {
            return Err(RegistryError::AlreadyExists(path.clone()));
        }
        // Only the root has no parent, and the root always exists.
        let Some(parent_path) = path.parent() else {
            return Err(RegistryError::AlreadyExists(path.clone()));
        };
        let Some(&parent) = self.by_path.get(&parent_path) else {
            return Err(RegistryError::ParentMissing {
                path: path.clone(),
                parent: parent_path,
            });
        };
        let Some(name) = path.name() else {
            return Err(RegistryError::AlreadyExists(path.clone()));
        };
        self.check_within_parent(path, parent, policy)?;
        // u32::MAX is never handed out, so that `next_id` always fits.
        if self.next_id == u32::MAX {
            return Err(RegistryError::IdsExhausted);
        }
        let id = NsId(self.next_id);
        self.next_id += 1;
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children.insert(name.to_owned(), id);
        }
        self.nodes.insert(
            id,
            Node {
                path: path.clone(),
                parent: Some(parent),
                children: OrdMap::new(),
                policy,
                max_objects: None,
                kind_limits: KindLimits::NONE,
                cgroup: None,
            },
        );
        self.by_path.insert(path.clone(), id);
        Ok(id)
    }

    /// The limit on ownership records of namespace `id` (with its descendants'); `None` for
    /// the root, unknown ids and namespaces stored before limits existed.
    pub fn max_objects(&self, id: NsId) -> Option<u32> {
        self.nodes.get(&id).and_then(|n| n.max_objects)
    }

    /// Set the limit of namespace `id` (not the root's, which is unlimited). The rules
    /// (within the parent's, the table's capacity) are [`crate::quota`]'s to check.
    pub fn set_max_objects(&mut self, id: NsId, max_objects: u32) {
        if id == NsId::ROOT {
            return;
        }
        if let Some(n) = self.nodes.get_mut(&id) {
            n.max_objects = Some(max_objects);
        }
    }

    /// The limits per kind of namespace `id` (none for the root, unknown ids and namespaces
    /// stored before such limits existed: only the total applies).
    pub fn kind_limits(&self, id: NsId) -> KindLimits {
        self.nodes
            .get(&id)
            .map_or(KindLimits::NONE, |n| n.kind_limits)
    }

    /// Set the limits per kind of namespace `id` (not the root's). The rules (within the
    /// ancestors', within its total) are [`crate::quota`]'s to check.
    pub fn set_kind_limits(&mut self, id: NsId, limits: KindLimits) {
        if id == NsId::ROOT {
            return;
        }
        if let Some(n) = self.nodes.get_mut(&id) {
            n.kind_limits = limits;
        }
    }

    /// The cgroup v2 subtree namespace `id` is bound to (a path below the cgroup2 root);
    /// `None` for the root, unknown ids and namespaces not bound yet.
    pub fn cgroup(&self, id: NsId) -> Option<&str> {
        self.nodes.get(&id).and_then(|n| n.cgroup.as_deref())
    }

    /// Bind namespace `id` (not the root, which is not confined) to the cgroup v2 subtree
    /// `cgroup`, a path below the cgroup2 root.
    pub fn set_cgroup(&mut self, id: NsId, cgroup: String) {
        if id == NsId::ROOT {
            return;
        }
        if let Some(n) = self.nodes.get_mut(&id) {
            n.cgroup = Some(cgroup);
        }
    }

    /// `policy` for `path`, whose parent is `parent`, allows nothing the parent does not.
    fn check_within_parent(
        &self,
        path: &NsPath,
        parent: NsId,
        policy: Policy,
    ) -> Result<(), RegistryError> {
        let fields = policy.wider_fields(&self.policy(parent).unwrap_or(Policy::DEFAULT));
        if fields.is_empty() {
            return Ok(());
        }
        Err(RegistryError::PolicyWiderThanParent {
            path: path.clone(),
            policy: Box::new(policy),
            fields,
            parent: self.path(parent).cloned().unwrap_or_else(NsPath::root),
        })
    }

    /// The policy of namespace `id`; `None` for unknown ids.
    pub fn policy(&self, id: NsId) -> Option<Policy> {
        self.nodes.get(&id).map(|n| n.policy)
    }

    /// What the members of `id` may do: its policy intersected with every ancestor's (the
    /// same as its own while the tree keeps its rule that no namespace allows more than its
    /// parent; computed anyway, so that a registry that broke it still grants no more).
    /// `None` for unknown ids.
    pub fn effective_policy(&self, id: NsId) -> Option<Policy> {
        let own = self.policy(id)?;
        Some(
            self.ancestors(id)
                .into_iter()
                .filter_map(|a| self.policy(a))
                .fold(own, |p, a| p.intersect(&a)),
        )
    }

    /// What the registry holds about `id`, in one look-up; `None` for unknown ids.
    pub fn describe(&self, id: NsId) -> Option<NsDescription<'_>> {
        let n = self.nodes.get(&id)?;
        Some(NsDescription {
            path: &n.path,
            parent: n.parent,
            policy: n.policy,
            max_objects: n.max_objects,
            kind_limits: n.kind_limits,
            cgroup: n.cgroup.as_deref(),
        })
    }

    /// [`Registry::effective_policy`] of every namespace, in one pass down the tree (one
    /// look-up each, not one per ancestor).
    pub fn effective_policies(&self) -> std::collections::HashMap<NsId, Policy> {
        let mut out = std::collections::HashMap::with_capacity(self.nodes.len());
        // Sorted paths are in pre-order: a parent comes before its children.
        for (_, &id) in self.by_path.iter() {
            let Some(n) = self.nodes.get(&id) else {
                continue;
            };
            let eff = match n.parent.and_then(|p| out.get(&p)) {
                Some(parent) => n.policy.intersect(parent),
                None => n.policy,
            };
            out.insert(id, eff);
        }
        out
    }

    /// Sets the policy of `path` and returns its id. The new policy must be within the
    /// parent's, and no descendant's may be wider than it (narrow them first: nothing is
    /// narrowed behind the operator's back). The root's is fixed.
    pub fn set_policy(&mut self, path: &NsPath, policy: Policy) -> Result<NsId, RegistryError> {
        if path.is_root() {
            return Err(RegistryError::RootPolicyIsFixed);
        }
        let id = self.resolve(path)?;
        self.check_within_parent(path, self.parent(id).unwrap_or(NsId::ROOT), policy)?;
        let descendants: Vec<NsPath> = self
            .subtree(id)
            .into_iter()
            .filter(|&d| d != id)
            .filter(|&d| self.policy(d).is_some_and(|dp| !dp.is_within(policy)))
            .filter_map(|d| self.path(d).cloned())
            .collect();
        if !descendants.is_empty() {
            return Err(RegistryError::PolicyNarrowerThanDescendants {
                path: path.clone(),
                policy: Box::new(policy),
                descendants,
            });
        }
        if let Some(n) = self.nodes.get_mut(&id) {
            n.policy = policy;
        }
        Ok(id)
    }

    /// Deletes the namespace `path`, which must have no child namespaces.
    ///
    /// Whether it still has member tasks is for the caller (the daemon) to check first: the
    /// registry does not know about tasks. Its id is never handed out again.
    pub fn delete(&mut self, path: &NsPath) -> Result<Deleted, RegistryError> {
        if path.is_root() {
            return Err(RegistryError::RootIsPermanent);
        }
        let Some(&id) = self.by_path.get(path) else {
            return Err(RegistryError::NotFound(path.clone()));
        };
        let Some(node) = self.nodes.get(&id) else {
            return Err(RegistryError::NotFound(path.clone()));
        };
        if !node.children.is_empty() {
            let children = node
                .children
                .values()
                .filter_map(|c| self.path(*c).cloned())
                .collect();
            return Err(RegistryError::HasChildren {
                path: path.clone(),
                children,
            });
        }
        let parent = node.parent.unwrap_or(NsId::ROOT);
        if let (Some(name), Some(p)) = (path.name(), self.nodes.get_mut(&parent)) {
            p.children.remove(name);
        }
        self.nodes.remove(&id);
        self.by_path.remove(path);
        Ok(Deleted { id, parent })
    }

    /// The id of the namespace `path`, if it exists.
    pub fn id(&self, path: &NsPath) -> Option<NsId> {
        self.by_path.get(path).copied()
    }

    /// Like [`id`](Self::id), with an error that names the path.
    pub fn resolve(&self, path: &NsPath) -> Result<NsId, RegistryError> {
        self.id(path)
            .ok_or_else(|| RegistryError::NotFound(path.clone()))
    }

    /// The path of namespace `id`, if it exists.
    pub fn path(&self, id: NsId) -> Option<&NsPath> {
        self.nodes.get(&id).map(|n| &n.path)
    }

    /// Whether namespace `id` exists.
    pub fn contains(&self, id: NsId) -> bool {
        self.nodes.contains_key(&id)
    }

    /// The parent of `id`; `None` for the root and for unknown ids.
    pub fn parent(&self, id: NsId) -> Option<NsId> {
        self.nodes.get(&id).and_then(|n| n.parent)
    }

    /// The tenant `id` belongs to: its top-level ancestor (a namespace right below the root),
    /// `id` itself when it is top-level, the root for the root and for unknown ids. What
    /// bpfnsd shares its resources by, so that no tenant's sub-namespaces multiply them.
    pub fn tenant_of(&self, id: NsId) -> NsId {
        let mut cur = id;
        while let Some(p) = self.parent(cur) {
            if p == NsId::ROOT {
                return cur;
            }
            cur = p;
        }
        NsId::ROOT
    }

    /// How many namespaces the subtree of `id` has, `id` included (0 for unknown ids).
    pub fn subtree_len(&self, id: NsId) -> usize {
        match self.nodes.get(&id) {
            None => 0,
            Some(n) => {
                1 + n
                    .children
                    .values()
                    .map(|c| self.subtree_len(*c))
                    .sum::<usize>()
            }
        }
    }

    /// The child namespaces of `id`, sorted by name; empty for unknown ids.
    pub fn children(&self, id: NsId) -> Vec<NsId> {
        self.nodes
            .get(&id)
            .map(|n| n.children.values().copied().collect())
            .unwrap_or_default()
    }

    /// The strict ancestors of `id`, nearest first, ending with the root; empty for the root
    /// and for unknown ids.
    pub fn ancestors(&self, id: NsId) -> Vec<NsId> {
        let mut out = Vec::new();
        let mut cur = self.parent(id);
        while let Some(a) = cur {
            out.push(a);
            cur = self.parent(a);
        }
        out
    }

    /// `id` and all its descendants, in tree order; empty for unknown ids.
    pub fn subtree(&self, id: NsId) -> Vec<NsId> {
        let Some(top) = self.path(id) else {
            return Vec::new();
        };
        // Sorted paths are in pre-order, so a subtree is one contiguous run.
        self.by_path
            .range(top.clone()..)
            .take_while(|(p, _)| top.is_same_or_ancestor_of(p))
            .map(|(_, &i)| i)
            .collect()
    }

    /// The depth of `id` (root 0); `None` for unknown ids.
    pub fn depth(&self, id: NsId) -> Option<u32> {
        self.path(id).map(NsPath::depth)
    }

    /// Every namespace, root first, in tree pre-order with siblings sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (NsId, &NsPath)> + '_ {
        self.by_path.iter().map(|(p, &i)| (i, p))
    }

    /// The number of namespaces, root included (so never 0).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: the root always exists. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The id the next [`create`](Self::create) will hand out.
    pub fn next_id(&self) -> NsId {
        NsId(self.next_id)
    }

    /// Whether `a` is `b` or an ancestor of `b`. False if either is unknown.
    pub fn is_same_or_ancestor(&self, a: NsId, b: NsId) -> bool {
        if !self.contains(a) || !self.contains(b) {
            return false;
        }
        a == b || self.ancestors(b).contains(&a)
    }

    /// Whether an object owned by `owner` is visible from `viewer` (contract point (docs/design.md) 4): from its
    /// owner namespace and every ancestor of it, and from nowhere else.
    ///
    /// Fails closed: an object whose owner is unknown to the registry (say, a stale tag left
    /// by a namespace deleted before its objects were re-tagged) is visible from the root
    /// only, and an unknown viewer sees nothing.
    pub fn visible(&self, viewer: NsId, owner: NsId) -> bool {
        if viewer == NsId::ROOT {
            return true;
        }
        self.is_same_or_ancestor(viewer, owner)
    }

    /// `(id, parent, depth)` for every non-root namespace, parents before children: the rows
    /// of the kernel-side parent map, which the kernel walks (at most [`MAX_DEPTH`] steps)
    /// to decide ancestry.
    pub fn kernel_parent_table(&self) -> Vec<(NsId, NsId, u32)> {
        self.by_path
            .iter()
            .filter(|(p, _)| !p.is_root())
            .filter_map(|(p, &id)| Some((id, self.parent(id)?, p.depth())))
            .collect()
    }

    /// A serializable copy of the tree, for the daemon to persist.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            format: Snapshot::FORMAT,
            next_id: NsId(self.next_id),
            namespaces: self
                .by_path
                .iter()
                .filter(|(p, _)| !p.is_root())
                .filter_map(|(p, &id)| {
                    Some(SnapshotEntry {
                        id,
                        parent: self.parent(id)?,
                        path: p.clone(),
                        policy: self.policy(id)?,
                        max_objects: self.max_objects(id),
                        kind_limits: self.kind_limits(id),
                        cgroup: self.cgroup(id).map(str::to_owned),
                    })
                })
                .collect(),
        }
    }

    /// The snapshot entry of one non-root namespace (`None` for the root or an unknown id).
    pub fn entry(&self, id: NsId) -> Option<SnapshotEntry> {
        let n = self.nodes.get(&id)?;
        Some(SnapshotEntry {
            id,
            parent: n.parent?,
            path: n.path.clone(),
            policy: n.policy,
            max_objects: n.max_objects,
            kind_limits: n.kind_limits,
            cgroup: n.cgroup.clone(),
        })
    }

    /// What differs from `prev` in a [`Snapshot`]: the non-root namespaces whose entry is new
    /// or changed, and the ids gone; without building a snapshot, so that a change can be
    /// persisted as the entries it touched.
    pub fn changes_since(&self, prev: &Registry) -> (Vec<NsId>, Vec<NsId>) {
        let same = |a: &Node, b: &Node| {
            a.path == b.path
                && a.parent == b.parent
                && a.policy == b.policy
                && a.max_objects == b.max_objects
                && a.kind_limits == b.kind_limits
                && a.cgroup == b.cgroup
        };
        // A copy shares every part of the tree the change did not touch, and the diff skips
        // shared parts: O(changed · log n), not O(n).
        let (mut changed, mut gone) = (Vec::new(), Vec::new());
        for d in prev.nodes.diff(&self.nodes) {
            match d {
                imbl::ordmap::DiffItem::Add(id, n) if n.parent.is_some() => changed.push(*id),
                imbl::ordmap::DiffItem::Update {
                    old: (_, was),
                    new: (id, n),
                } if n.parent.is_some() && !same(n, was) => changed.push(*id),
                imbl::ordmap::DiffItem::Remove(id, _) => gone.push(*id),
                _ => {}
            }
        }
        (changed, gone)
    }

    /// Rebuilds a registry from a snapshot, after checking that it is a consistent tree.
    ///
    /// A persisted file may be damaged or hand-edited; loading a bad tree would make the
    /// kernel-side parent map wrong and so widen or narrow visibility, so every rule is
    /// checked and the first broken one reported.
    pub fn from_snapshot(snap: Snapshot) -> Result<Registry, SnapshotError> {
        if snap.format != Snapshot::FORMAT {
            return Err(SnapshotError::UnsupportedFormat(snap.format));
        }
        let next_id = snap.next_id.0;
        if next_id == 0 {
            return Err(SnapshotError::BadNextId(snap.next_id));
        }
        // Ids: not the root's, below next_id, unique. Paths: not the root, unique.
        let mut by_id: BTreeMap<NsId, &SnapshotEntry> = BTreeMap::new();
        let mut paths: BTreeSet<&NsPath> = BTreeSet::new();
        for e in &snap.namespaces {
            if e.id == NsId::ROOT || e.path.is_root() {
                return Err(SnapshotError::RootEntry {
                    id: e.id,
                    path: e.path.clone(),
                });
            }
            if e.id.0 >= next_id {
                return Err(SnapshotError::IdNotBelowNextId {
                    id: e.id,
                    next_id: snap.next_id,
                });
            }
            if by_id.insert(e.id, e).is_some() {
                return Err(SnapshotError::DuplicateId(e.id));
            }
            if !paths.insert(&e.path) {
                return Err(SnapshotError::DuplicatePath(e.path.clone()));
            }
        }
        // Parents exist, and following parents always reaches the root.
        for e in &snap.namespaces {
            if e.parent != NsId::ROOT && !by_id.contains_key(&e.parent) {
                return Err(SnapshotError::MissingParent {
                    id: e.id,
                    parent: e.parent,
                });
            }
        }
        for e in &snap.namespaces {
            let mut cur = e.parent;
            let mut steps = 0usize;
            while cur != NsId::ROOT {
                steps += 1;
                if steps > by_id.len() {
                    return Err(SnapshotError::Cycle(e.id));
                }
                cur = by_id.get(&cur).map_or(NsId::ROOT, |p| p.parent);
            }
        }
        // Each path is its parent's path plus one component.
        let path_of =
            |id: NsId| -> NsPath { by_id.get(&id).map_or_else(NsPath::root, |e| e.path.clone()) };
        for e in &snap.namespaces {
            let expected = e.path.parent().unwrap_or_else(NsPath::root);
            let actual = path_of(e.parent);
            if expected != actual {
                return Err(SnapshotError::PathMismatch {
                    id: e.id,
                    path: e.path.clone(),
                    parent: e.parent,
                    parent_path: actual,
                });
            }
        }
        // Consistent: build parents first (sorted paths are in pre-order).
        let mut reg = Registry::new();
        reg.next_id = next_id;
        let mut sorted: Vec<&SnapshotEntry> = snap.namespaces.iter().collect();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        for e in sorted {
            if let (Some(name), Some(p)) = (e.path.name(), reg.nodes.get_mut(&e.parent)) {
                p.children.insert(name.to_owned(), e.id);
            }
            // Parents come first, so the parent's policy is known here.
            let outer = reg.policy(e.parent).unwrap_or(Policy::DEFAULT);
            if !e.policy.is_within(outer) {
                return Err(SnapshotError::PolicyWiderThanParent {
                    id: e.id,
                    parent: e.parent,
                });
            }
            if let (Some(mine), Some(outer)) = (e.max_objects, reg.max_objects(e.parent)) {
                if mine > outer {
                    return Err(SnapshotError::LimitAboveParent {
                        id: e.id,
                        parent: e.parent,
                    });
                }
            }
            for kind in crate::kind::ObjectKind::ALL {
                if let (Some(mine), Some((_, outer))) = (
                    e.kind_limits.get(kind),
                    crate::quota::effective_kind_limit(&reg, e.parent, kind),
                ) {
                    if mine > outer {
                        return Err(SnapshotError::LimitAboveParent {
                            id: e.id,
                            parent: e.parent,
                        });
                    }
                }
            }
            reg.nodes.insert(
                e.id,
                Node {
                    path: e.path.clone(),
                    parent: Some(e.parent),
                    children: OrdMap::new(),
                    policy: e.policy,
                    max_objects: e.max_objects,
                    kind_limits: e.kind_limits,
                    cgroup: e.cgroup.clone(),
                },
            );
            reg.by_path.insert(e.path.clone(), e.id);
        }
        debug_assert!(reg.depth_bound_holds());
        Ok(reg)
    }

    fn depth_bound_holds(&self) -> bool {
        self.nodes
            .keys()
            .all(|&id| self.ancestors(id).len() <= MAX_DEPTH as usize)
    }
}

/// The persisted form of a [`Registry`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The snapshot format version, so that a later daemon can read (or refuse) an older
    /// file instead of misreading it.
    pub format: u32,
    /// The next id to hand out. Persisted so that ids are never reused across restarts.
    pub next_id: NsId,
    /// Every namespace but the root (which always exists), parents before children.
    pub namespaces: Vec<SnapshotEntry>,
}

impl Snapshot {
    /// The format this crate writes and reads.
    pub const FORMAT: u32 = 1;
}

/// One non-root namespace in a [`Snapshot`].
///
/// Both the path and the parent id are stored: the path keeps the file readable for an
/// operator, and the redundancy lets loading catch damage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// Its id.
    pub id: NsId,
    /// Its parent's id.
    pub parent: NsId,
    /// Its path.
    pub path: NsPath,
    /// Its program policy; absent (the default) in files written before policies existed.
    #[serde(default, skip_serializing_if = "Policy::is_default")]
    pub policy: Policy,
    /// Its limit on ownership records; absent in files written before limits existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_objects: Option<u32>,
    /// Its limits per kind (`max_maps`...), each absent when not set, and in files written
    /// before such limits existed.
    #[serde(flatten)]
    pub kind_limits: KindLimits,
    /// The cgroup v2 subtree it is bound to; absent in files written before bindings
    /// existed (such a namespace attaches to no cgroup until a member enters and binds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

/// Why a [`Snapshot`] is not a consistent tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The format version is not [`Snapshot::FORMAT`].
    #[error(
        "unsupported namespace snapshot format {0}; this version reads format {expected}",
        expected = Snapshot::FORMAT
    )]
    UnsupportedFormat(u32),
    /// `next_id` is 0, the root's id, which is never handed out.
    #[error("bad next_id {0} in namespace snapshot: ids start at 1 (0 is the root)")]
    BadNextId(NsId),
    /// An entry names the root, which is implicit.
    #[error(
        "namespace snapshot lists the root (id {id}, path {path}); the root is implicit, \
         with id 0 and path /, and no other namespace may use either"
    )]
    RootEntry {
        /// The entry's id.
        id: NsId,
        /// The entry's path.
        path: NsPath,
    },
    /// An entry's id is not below `next_id`, so it could be handed out again.
    #[error(
        "namespace id {id} in snapshot is not below next_id {next_id}; it could be handed \
         out again, and ids must never be reused"
    )]
    IdNotBelowNextId {
        /// The entry's id.
        id: NsId,
        /// The snapshot's next_id.
        next_id: NsId,
    },
    /// Two entries have the same id.
    #[error("namespace id {0} appears twice in snapshot; ids are unique")]
    DuplicateId(NsId),
    /// Two entries have the same path.
    #[error("namespace path {0} appears twice in snapshot; paths are unique")]
    DuplicatePath(NsPath),
    /// An entry's parent id is not in the snapshot.
    #[error("namespace {id} in snapshot has parent {parent}, which does not exist")]
    MissingParent {
        /// The entry's id.
        id: NsId,
        /// Its missing parent.
        parent: NsId,
    },
    /// Following parents from an entry never reaches the root.
    #[error("namespace {0} in snapshot is on a parent cycle; parents must lead to the root")]
    Cycle(NsId),
    /// An entry's path is not its parent's path plus one component.
    #[error(
        "namespace {id} in snapshot has path {path} but parent {parent}, whose path is \
         {parent_path}; a namespace's path is its parent's path plus one component"
    )]
    PathMismatch {
        /// The entry's id.
        id: NsId,
        /// The entry's path.
        path: NsPath,
        /// The entry's parent id.
        parent: NsId,
        /// The parent's path.
        parent_path: NsPath,
    },
    /// An entry's limit on ownership records is above its parent's.
    #[error(
        "namespace {id} in snapshot may own more objects than its parent {parent}; a \
         namespace's max_objects (and each limit per kind) is never above its parent's"
    )]
    LimitAboveParent {
        /// The entry's id.
        id: NsId,
        /// The entry's parent id.
        parent: NsId,
    },
    /// An entry's policy allows more than its parent's.
    #[error(
        "namespace {id} in snapshot allows tracing programs but its parent {parent} does \
         not; a namespace never allows more than its parent"
    )]
    PolicyWiderThanParent {
        /// The entry's id.
        id: NsId,
        /// The entry's parent id.
        parent: NsId,
    },
}

impl TryFrom<Snapshot> for Registry {
    type Error = SnapshotError;

    fn try_from(s: Snapshot) -> Result<Self, Self::Error> {
        Registry::from_snapshot(s)
    }
}

impl From<Registry> for Snapshot {
    fn from(r: Registry) -> Self {
        r.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> NsPath {
        NsPath::parse(s).unwrap()
    }

    /// root, /a, /a/b, /a/b/c, /a/d, /e
    fn sample() -> (Registry, [NsId; 5]) {
        let mut r = Registry::new();
        let a = r.create(&p("/a")).unwrap();
        let ab = r.create(&p("/a/b")).unwrap();
        let abc = r.create(&p("/a/b/c")).unwrap();
        let ad = r.create(&p("/a/d")).unwrap();
        let e = r.create(&p("/e")).unwrap();
        (r, [a, ab, abc, ad, e])
    }

    #[test]
    fn new_has_only_root() {
        let r = Registry::new();
        assert_eq!(r.len(), 1);
        assert!(!r.is_empty());
        assert_eq!(r.id(&NsPath::root()), Some(NsId::ROOT));
        assert_eq!(r.path(NsId::ROOT), Some(&NsPath::root()));
        assert_eq!(r.parent(NsId::ROOT), None);
        assert_eq!(r.depth(NsId::ROOT), Some(0));
        assert!(r.ancestors(NsId::ROOT).is_empty());
        assert_eq!(r.next_id(), NsId(1));
        assert!(r.kernel_parent_table().is_empty());
        assert_eq!(Registry::default(), r);
    }

    #[test]
    fn create_allocates_monotonic_ids_and_links_the_tree() {
        let (r, [a, ab, abc, ad, e]) = sample();
        assert_eq!(
            [a, ab, abc, ad, e],
            [NsId(1), NsId(2), NsId(3), NsId(4), NsId(5)]
        );
        assert_eq!(r.len(), 6);
        assert_eq!(r.id(&p("/a/b/c")), Some(abc));
        assert_eq!(r.path(ad), Some(&p("/a/d")));
        assert_eq!(r.parent(abc), Some(ab));
        assert_eq!(r.parent(a), Some(NsId::ROOT));
        assert_eq!(r.children(NsId::ROOT), vec![a, e]);
        assert_eq!(r.children(a), vec![ab, ad]);
        assert!(r.children(abc).is_empty());
        assert_eq!(r.ancestors(abc), vec![ab, a, NsId::ROOT]);
        assert_eq!(r.ancestors(e), vec![NsId::ROOT]);
        assert_eq!(r.depth(abc), Some(3));
        assert_eq!(r.subtree(a), vec![a, ab, abc, ad]);
        assert_eq!(r.subtree(abc), vec![abc]);
        assert_eq!(r.subtree(NsId::ROOT).len(), 6);
        assert_eq!(r.resolve(&p("/e")), Ok(e));
    }

    #[test]
    fn changes_since_names_what_a_snapshot_would_differ_in() {
        let mut r = Registry::new();
        let a = r.create(&p("/a")).unwrap();
        let b = r.create(&p("/b")).unwrap();
        let prev = r.clone();
        assert_eq!(r.changes_since(&prev), (vec![], vec![]));
        let ac = r.create(&p("/a/c")).unwrap();
        r.set_max_objects(b, 9);
        // /a gained a child, which its snapshot entry does not show.
        assert_eq!(r.changes_since(&prev), (vec![b, ac], vec![]));
        let prev = r.clone();
        r.delete(&p("/a/c")).unwrap();
        assert_eq!(r.changes_since(&prev), (vec![], vec![ac]));
        assert_eq!(
            prev.changes_since(&Registry::new()),
            (vec![a, b, ac], vec![])
        );
    }

    #[test]
    fn children_are_sorted_by_name_not_creation() {
        let mut r = Registry::new();
        let z = r.create(&p("/z")).unwrap();
        let b = r.create(&p("/b")).unwrap();
        let a_dash = r.create(&p("/a-x")).unwrap();
        let a = r.create(&p("/a")).unwrap();
        assert_eq!(r.children(NsId::ROOT), vec![a, a_dash, b, z]);
    }

    #[test]
    fn iter_is_preorder_with_sorted_children() {
        let mut r = Registry::new();
        for s in ["/b", "/a", "/a-b", "/a/z", "/a/c", "/a/c/d", "/b/a"] {
            r.create(&p(s)).unwrap();
        }
        let order: Vec<&str> = r.iter().map(|(_, path)| path.as_str()).collect();
        assert_eq!(
            order,
            ["/", "/a", "/a/c", "/a/c/d", "/a/z", "/a-b", "/b", "/b/a"]
        );
        for (id, path) in r.iter() {
            assert_eq!(r.id(path), Some(id));
        }
    }

    #[test]
    fn unknown_ids_answer_nothing() {
        let (r, _) = sample();
        let x = NsId(99);
        assert_eq!(r.path(x), None);
        assert_eq!(r.parent(x), None);
        assert!(r.children(x).is_empty());
        assert!(r.ancestors(x).is_empty());
        assert!(r.subtree(x).is_empty());
        assert_eq!(r.depth(x), None);
        assert!(!r.contains(x));
        assert!(!r.is_same_or_ancestor(x, x));
        assert!(!r.is_same_or_ancestor(NsId::ROOT, x));
        assert!(!r.is_same_or_ancestor(x, NsId::ROOT));
        assert_eq!(
            r.resolve(&p("/nope")),
            Err(RegistryError::NotFound(p("/nope")))
        );
    }

    #[test]
    fn create_errors() {
        let (mut r, _) = sample();
        assert_eq!(
            r.create(&p("/a")),
            Err(RegistryError::AlreadyExists(p("/a")))
        );
        assert_eq!(
            r.create(&NsPath::root()),
            Err(RegistryError::AlreadyExists(NsPath::root()))
        );
        let err = r.create(&p("/x/y")).unwrap_err();
        assert_eq!(
            err,
            RegistryError::ParentMissing {
                path: p("/x/y"),
                parent: p("/x")
            }
        );
        assert!(err.to_string().contains("create the parent first"), "{err}");
        // Failed creates consume no id.
        assert_eq!(r.next_id(), NsId(6));
    }

    #[test]
    fn create_to_max_depth() {
        let mut r = Registry::new();
        let mut path = NsPath::root();
        for i in 0..MAX_DEPTH {
            path = path.join(&format!("d{i}")).unwrap();
            r.create(&path).unwrap();
        }
        let deepest = r.id(&path).unwrap();
        assert_eq!(r.depth(deepest), Some(32));
        assert_eq!(r.ancestors(deepest).len(), 32);
        assert!(path.join("more").is_err(), "depth 33 cannot even be named");
    }

    #[test]
    fn delete_rules() {
        let (mut r, [a, ab, abc, ad, e]) = sample();
        assert_eq!(
            r.delete(&NsPath::root()),
            Err(RegistryError::RootIsPermanent)
        );
        assert_eq!(
            r.delete(&p("/nope")),
            Err(RegistryError::NotFound(p("/nope")))
        );
        let err = r.delete(&p("/a")).unwrap_err();
        assert_eq!(
            err,
            RegistryError::HasChildren {
                path: p("/a"),
                children: vec![p("/a/b"), p("/a/d")]
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("/a/b, /a/d") && msg.contains("delete the children first"),
            "{msg}"
        );
        assert_eq!(
            r.delete(&p("/a/b/c")),
            Ok(Deleted {
                id: abc,
                parent: ab
            })
        );
        assert_eq!(r.delete(&p("/a/b")), Ok(Deleted { id: ab, parent: a }));
        assert_eq!(r.children(a), vec![ad]);
        assert_eq!(r.delete(&p("/a/d")), Ok(Deleted { id: ad, parent: a }));
        assert_eq!(
            r.delete(&p("/a")),
            Ok(Deleted {
                id: a,
                parent: NsId::ROOT
            })
        );
        assert_eq!(r.path(a), None);
        assert_eq!(r.id(&p("/a")), None);
        assert_eq!(r.children(NsId::ROOT), vec![e]);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn has_children_message_is_bounded() {
        let mut r = Registry::new();
        r.create(&p("/a")).unwrap();
        for i in 0..20 {
            r.create(&p(&format!("/a/c{i:02}"))).unwrap();
        }
        let msg = r.delete(&p("/a")).unwrap_err().to_string();
        assert!(msg.contains("20 child"), "{msg}");
        assert!(msg.contains("and 15 more"), "{msg}");
    }

    #[test]
    fn ids_are_never_reused() {
        let mut r = Registry::new();
        let a = r.create(&p("/a")).unwrap();
        r.delete(&p("/a")).unwrap();
        let a2 = r.create(&p("/a")).unwrap();
        assert_ne!(a, a2);
        assert!(a2 > a);
        // Also across a snapshot round trip, even when the newest namespace was deleted.
        let b = r.create(&p("/b")).unwrap();
        r.delete(&p("/b")).unwrap();
        let json = serde_json::to_string(&r).unwrap();
        let mut back: Registry = serde_json::from_str(&json).unwrap();
        let c = back.create(&p("/c")).unwrap();
        assert!(c > b && c > a2, "{c} reuses an id");
    }

    #[test]
    fn id_exhaustion() {
        let mut r = Registry::from_snapshot(Snapshot {
            format: Snapshot::FORMAT,
            next_id: NsId(u32::MAX - 1),
            namespaces: vec![],
        })
        .unwrap();
        assert_eq!(r.create(&p("/last")), Ok(NsId(u32::MAX - 1)));
        let err = r.create(&p("/more")).unwrap_err();
        assert_eq!(err, RegistryError::IdsExhausted);
        assert!(err.to_string().contains("never reused"));
        assert_eq!(r.id(&p("/more")), None);
        // The exhausted state survives a round trip.
        let back = Registry::from_snapshot(r.snapshot()).unwrap();
        assert_eq!(back.next_id(), NsId(u32::MAX));
    }

    #[test]
    fn ancestry_and_visibility() {
        let (r, [a, ab, abc, ad, e]) = sample();
        let root = NsId::ROOT;
        assert!(r.is_same_or_ancestor(root, abc));
        assert!(r.is_same_or_ancestor(a, abc));
        assert!(r.is_same_or_ancestor(abc, abc));
        assert!(!r.is_same_or_ancestor(abc, a));
        assert!(!r.is_same_or_ancestor(ad, abc));

        // Root sees all.
        for owner in [root, a, ab, abc, ad, e] {
            assert!(r.visible(root, owner));
        }
        // Ancestors see descendants' objects; owners see their own.
        assert!(r.visible(a, abc));
        assert!(r.visible(ab, abc));
        assert!(r.visible(abc, abc));
        // Children don't see a parent's objects, nor the root's.
        assert!(!r.visible(ab, a));
        assert!(!r.visible(abc, ab));
        assert!(!r.visible(a, root));
        // Siblings and cousins see nothing of each other.
        assert!(!r.visible(ad, ab));
        assert!(!r.visible(ab, ad));
        assert!(!r.visible(e, a));
        assert!(!r.visible(e, abc));
        assert!(!r.visible(abc, ad));
    }

    #[test]
    fn unknown_owner_is_visible_to_root_only() {
        let (mut r, [a, ab, ..]) = sample();
        let gone = r.create(&p("/gone")).unwrap();
        r.delete(&p("/gone")).unwrap();
        for owner in [gone, NsId(1000), NsId(u32::MAX)] {
            assert!(r.visible(NsId::ROOT, owner));
            assert!(!r.visible(a, owner));
            assert!(!r.visible(ab, owner));
        }
        // An unknown viewer sees nothing, not even objects of its own (stale) id.
        assert!(!r.visible(gone, gone));
        assert!(!r.visible(NsId(1000), a));
        assert!(!r.visible(NsId(1000), NsId::ROOT));
    }

    #[test]
    fn kernel_parent_table_lists_non_root_parents_first() {
        let (r, [a, ab, abc, ad, e]) = sample();
        assert_eq!(
            r.kernel_parent_table(),
            vec![
                (a, NsId::ROOT, 1),
                (ab, a, 2),
                (abc, ab, 3),
                (ad, a, 2),
                (e, NsId::ROOT, 1)
            ]
        );
    }

    #[test]
    fn a_cgroup_binding_is_kept_and_old_files_read_as_unbound() {
        let (mut r, _) = sample();
        let a = r.id(&p("/a")).unwrap();
        r.set_cgroup(a, "/tenants/a".into());
        r.set_cgroup(NsId::ROOT, "/".into());
        assert_eq!(r.cgroup(NsId::ROOT), None, "the root is not confined");
        let json = serde_json::to_string(&r).unwrap();
        let back: Registry = serde_json::from_str(&json).unwrap();
        assert_eq!(back.cgroup(a), Some("/tenants/a"));
        // A file written before bindings existed: every namespace unbound.
        let old = json.replace(",\"cgroup\":\"/tenants/a\"", "");
        assert!(!old.contains("cgroup"), "{old}");
        let back: Registry = serde_json::from_str(&old).unwrap();
        assert_eq!(back.cgroup(a), None);
    }

    #[test]
    fn snapshot_round_trip() {
        let (mut r, _) = sample();
        r.delete(&p("/e")).unwrap();
        let snap = r.snapshot();
        assert_eq!(snap.format, Snapshot::FORMAT);
        assert_eq!(snap.next_id, NsId(6));
        assert_eq!(snap.namespaces.len(), 4);
        assert_eq!(Registry::from_snapshot(snap.clone()).unwrap(), r);

        let json = serde_json::to_string_pretty(&r).unwrap();
        assert!(json.contains("\"/a/b/c\""), "{json}");
        assert!(json.contains("\"next_id\": 6"), "{json}");
        let back: Registry = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            r.iter().collect::<Vec<_>>()
        );
        assert_eq!(back.kernel_parent_table(), r.kernel_parent_table());
        let snap_json = serde_json::to_string(&snap).unwrap();
        assert_eq!(serde_json::from_str::<Snapshot>(&snap_json).unwrap(), snap);
    }

    #[test]
    fn snapshot_entries_in_any_order_load() {
        let (r, _) = sample();
        let mut snap = r.snapshot();
        snap.namespaces.reverse();
        assert_eq!(Registry::from_snapshot(snap).unwrap(), r);
    }

    fn entry(id: u32, parent: u32, path: &str) -> SnapshotEntry {
        SnapshotEntry {
            id: NsId(id),
            parent: NsId(parent),
            path: p(path),
            policy: Policy::DEFAULT,
            max_objects: None,
            kind_limits: KindLimits::NONE,
            cgroup: None,
        }
    }

    const ALLOW: Policy = Policy::HOST;
    const DENY: Policy = Policy::DEFAULT;

    #[test]
    fn policies_only_narrow_down_the_tree() {
        let mut r = Registry::new();
        assert_eq!(r.policy(NsId::ROOT), Some(Policy::HOST));
        let a = r.create(&p("/a")).unwrap();
        assert_eq!(r.policy(a), Some(DENY), "new namespaces deny tracing");
        // Below a denying parent, allowing is refused, at creation and later.
        let err = r.create_with_policy(&p("/a/x"), ALLOW).unwrap_err();
        assert!(
            matches!(&err, RegistryError::PolicyWiderThanParent { parent, .. } if *parent == p("/a")),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("change the parent's policy first"),
            "{err}"
        );
        assert_eq!(r.id(&p("/a/x")), None, "nothing created");
        let ax = r.create(&p("/a/x")).unwrap();
        assert!(matches!(
            r.set_policy(&p("/a/x"), ALLOW),
            Err(RegistryError::PolicyWiderThanParent { .. })
        ));
        assert_eq!(r.policy(ax), Some(DENY), "unchanged");
        // Widen from the top down.
        assert_eq!(r.set_policy(&p("/a"), ALLOW), Ok(a));
        assert_eq!(r.set_policy(&p("/a/x"), ALLOW), Ok(ax));
        let t = r.create_with_policy(&p("/t"), ALLOW).unwrap();
        assert_eq!(r.policy(t), Some(ALLOW));
        // Narrowing a parent with wider descendants is refused and names them.
        let err = r.set_policy(&p("/a"), DENY).unwrap_err();
        assert_eq!(
            err,
            RegistryError::PolicyNarrowerThanDescendants {
                path: p("/a"),
                policy: Box::new(DENY),
                descendants: vec![p("/a/x")],
            }
        );
        assert!(err.to_string().contains("narrow them first"), "{err}");
        assert_eq!(r.policy(a), Some(ALLOW), "unchanged");
        // Bottom up works.
        r.set_policy(&p("/a/x"), DENY).unwrap();
        r.set_policy(&p("/a"), DENY).unwrap();
        // The root's is fixed; unknown paths are named.
        assert_eq!(
            r.set_policy(&NsPath::root(), DENY),
            Err(RegistryError::RootPolicyIsFixed)
        );
        assert_eq!(
            r.set_policy(&p("/nope"), DENY),
            Err(RegistryError::NotFound(p("/nope")))
        );
    }

    #[test]
    fn four_set_policies_narrow_down_the_tree() {
        use crate::program_policy::TypeSet;
        let mut r = Registry::new();
        let mut sock = DENY;
        sock.progs = TypeSet::of([1]);
        let a = r.create_with_policy(&p("/a"), sock).unwrap();
        // Created without a policy below /a: the default as far as /a allows.
        let ab = r.create(&p("/a/b")).unwrap();
        assert_eq!(r.policy(ab), Some(sock));
        // A child cannot widen: asking for xdp (6) below /a is refused, naming the field.
        let mut xdp = sock;
        xdp.progs = TypeSet::of([1, 6]);
        let err = r.set_policy(&p("/a/b"), xdp).unwrap_err();
        assert!(
            matches!(&err, RegistryError::PolicyWiderThanParent { fields, .. } if *fields == vec![Field::Progs]),
            "{err:?}"
        );
        assert!(err.to_string().contains("in its progs"), "{err}");
        assert!(r.create_with_policy(&p("/a/c"), DENY).is_err());
        // Narrowing in another field is fine; the effective policy is the intersection.
        let mut no_hash = sock;
        no_hash.maps = TypeSet::ANY.minus(TypeSet::of([1]));
        assert_eq!(r.set_policy(&p("/a/b"), no_hash), Ok(ab));
        assert_eq!(r.effective_policy(ab), Some(no_hash));
        assert_eq!(r.effective_policy(a), Some(sock));
        assert_eq!(r.effective_policy(NsId::ROOT), Some(Policy::HOST));
        assert_eq!(r.effective_policy(NsId(99)), None);
        // All at once, as one by one.
        let all = r.effective_policies();
        assert_eq!(all.len(), r.len());
        for (id, _) in r.iter() {
            assert_eq!(all.get(&id).copied(), r.effective_policy(id), "{id}");
        }
        // Narrowing /a's maps below /a/b's is refused until /a/b narrows.
        let mut tiny = sock;
        tiny.maps = TypeSet::of([2]);
        assert!(matches!(
            r.set_policy(&p("/a"), tiny),
            Err(RegistryError::PolicyNarrowerThanDescendants { .. })
        ));
        // A registry that broke the rule (a damaged or hand-edited one) still grants only
        // the intersection.
        if let Some(n) = r.nodes.get_mut(&ab) {
            n.policy = Policy::HOST;
        }
        assert_eq!(r.effective_policy(ab), Some(sock));
        assert_eq!(r.effective_policies().get(&ab), Some(&sock));
    }

    #[test]
    fn old_registry_rows_read_as_today() {
        // Rows written when the policy was one switch, and before policies existed.
        let old = r#"{"format":1,"next_id":4,"namespaces":[
            {"id":1,"parent":0,"path":"/a","policy":{"allow_tracing":true}},
            {"id":2,"parent":1,"path":"/a/b","policy":{"allow_tracing":false}},
            {"id":3,"parent":0,"path":"/c"}]}"#;
        let back: Registry = serde_json::from_str(old).unwrap();
        assert_eq!(back.policy(NsId(1)), Some(Policy::tracing(true)));
        assert!(back.policy(NsId(1)).unwrap().allows_tracing());
        assert_eq!(back.policy(NsId(2)), Some(Policy::DEFAULT));
        assert_eq!(back.policy(NsId(3)), Some(Policy::DEFAULT));
        assert_eq!(back.effective_policy(NsId(3)), Some(Policy::DEFAULT));
    }

    #[test]
    fn policies_survive_snapshots_and_old_files_read_as_deny() {
        let mut r = Registry::new();
        r.create_with_policy(&p("/a"), ALLOW).unwrap();
        r.create_with_policy(&p("/a/b"), ALLOW).unwrap();
        r.create(&p("/c")).unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.contains(r#""policy":{"allow_tracing":true,"cmds":"any""#),
            "{json}"
        );
        let back: Registry = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.policy(back.id(&p("/a/b")).unwrap()), Some(ALLOW));
        // A file from before policies: every namespace denies tracing.
        let old = r#"{"format":1,"next_id":2,"namespaces":[{"id":1,"parent":0,"path":"/a"}]}"#;
        let back: Registry = serde_json::from_str(old).unwrap();
        assert_eq!(back.policy(NsId(1)), Some(DENY));
        // A damaged file where a child allows more than its parent is refused.
        let mut child = entry(2, 1, "/a/b");
        child.policy = ALLOW;
        assert_eq!(
            load(3, vec![entry(1, 0, "/a"), child]),
            Err(SnapshotError::PolicyWiderThanParent {
                id: NsId(2),
                parent: NsId(1)
            })
        );
    }

    fn load(next_id: u32, entries: Vec<SnapshotEntry>) -> Result<Registry, SnapshotError> {
        Registry::from_snapshot(Snapshot {
            format: Snapshot::FORMAT,
            next_id: NsId(next_id),
            namespaces: entries,
        })
    }

    #[test]
    fn corrupt_snapshots_are_rejected() {
        assert!(load(3, vec![entry(1, 0, "/a"), entry(2, 1, "/a/b")]).is_ok());

        let bad_format = Registry::from_snapshot(Snapshot {
            format: 2,
            next_id: NsId(1),
            namespaces: vec![],
        });
        assert_eq!(bad_format, Err(SnapshotError::UnsupportedFormat(2)));
        assert_eq!(load(0, vec![]), Err(SnapshotError::BadNextId(NsId(0))));

        assert!(matches!(
            load(3, vec![entry(0, 0, "/a")]),
            Err(SnapshotError::RootEntry { .. })
        ));
        assert!(matches!(
            load(3, vec![entry(1, 0, "/")]),
            Err(SnapshotError::RootEntry { .. })
        ));
        assert_eq!(
            load(2, vec![entry(1, 0, "/a"), entry(2, 1, "/a/b")]),
            Err(SnapshotError::IdNotBelowNextId {
                id: NsId(2),
                next_id: NsId(2)
            })
        );
        assert_eq!(
            load(9, vec![entry(1, 0, "/a"), entry(1, 0, "/b")]),
            Err(SnapshotError::DuplicateId(NsId(1)))
        );
        assert_eq!(
            load(9, vec![entry(1, 0, "/a"), entry(2, 0, "/a")]),
            Err(SnapshotError::DuplicatePath(p("/a")))
        );
        assert_eq!(
            load(9, vec![entry(1, 7, "/a/b")]),
            Err(SnapshotError::MissingParent {
                id: NsId(1),
                parent: NsId(7)
            })
        );
        // /a/b missing its /a: the parent id is given but no entry holds it.
        assert!(matches!(
            load(9, vec![entry(2, 1, "/a/b")]),
            Err(SnapshotError::MissingParent { .. })
        ));
        // Self-parent and a two-cycle.
        assert_eq!(
            load(9, vec![entry(1, 1, "/a")]),
            Err(SnapshotError::Cycle(NsId(1)))
        );
        assert!(matches!(
            load(9, vec![entry(1, 2, "/a/b/c"), entry(2, 1, "/a/b")]),
            Err(SnapshotError::Cycle(_))
        ));
        // A parent link that disagrees with the path.
        let err = load(9, vec![entry(1, 0, "/a"), entry(2, 0, "/a/b")]).unwrap_err();
        assert_eq!(
            err,
            SnapshotError::PathMismatch {
                id: NsId(2),
                path: p("/a/b"),
                parent: NsId::ROOT,
                parent_path: NsPath::root()
            }
        );
        assert!(err.to_string().contains("parent's path plus one component"));
        assert!(matches!(
            load(9, vec![entry(1, 0, "/a"), entry(2, 1, "/b/c")]),
            Err(SnapshotError::PathMismatch { .. })
        ));
    }

    #[test]
    fn corrupt_json_is_rejected() {
        let bad = [
            // Invalid path.
            r#"{"format":1,"next_id":3,"namespaces":[{"id":1,"parent":0,"path":"/a/"}]}"#,
            // Missing next_id.
            r#"{"format":1,"namespaces":[]}"#,
            // Id at next_id.
            r#"{"format":1,"next_id":1,"namespaces":[{"id":1,"parent":0,"path":"/a"}]}"#,
            // Cycle.
            r#"{"format":1,"next_id":9,"namespaces":[{"id":1,"parent":2,"path":"/a"},{"id":2,"parent":1,"path":"/b"}]}"#,
        ];
        for json in bad {
            assert!(serde_json::from_str::<Registry>(json).is_err(), "{json}");
        }
        let err = serde_json::from_str::<Registry>(
            r#"{"format":1,"next_id":2,"namespaces":[{"id":5,"parent":0,"path":"/a"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("never be reused"), "{err}");
    }

    /// A small deterministic generator, so the randomized test needs no extra crate.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    #[test]
    fn random_operations_keep_invariants() {
        let names = ["a", "b", "c", "a-b", "x.y"];
        for seed in 0..20u64 {
            let mut rng = Lcg(seed);
            let mut r = Registry::new();
            let mut issued: BTreeSet<NsId> = BTreeSet::new();
            for _ in 0..300 {
                let existing: Vec<NsPath> = r.iter().map(|(_, p)| p.clone()).collect();
                let base = &existing[rng.below(existing.len())];
                if rng.below(3) == 0 {
                    let expect_ok = !base.is_root() && r.children(r.id(base).unwrap()).is_empty();
                    let res = r.delete(base);
                    assert_eq!(res.is_ok(), expect_ok, "{base}: {res:?}");
                } else if let Ok(path) = base.join(names[rng.below(names.len())]) {
                    let existed = r.id(&path).is_some();
                    match r.create(&path) {
                        Ok(id) => {
                            assert!(!existed);
                            assert!(issued.insert(id), "id {id} reused");
                            assert!(issued.iter().all(|&i| i <= id));
                        }
                        Err(e) => assert!(existed, "{e}"),
                    }
                }
                if rng.below(25) == 0 {
                    r = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
                }
            }
            check_invariants(&r);
        }
    }

    fn check_invariants(r: &Registry) {
        let all: Vec<(NsId, NsPath)> = r.iter().map(|(i, p)| (i, p.clone())).collect();
        assert_eq!(all.len(), r.len());
        for w in all.windows(2) {
            assert!(w[0].1 < w[1].1);
        }
        for (id, path) in &all {
            assert!(id.0 < r.next_id().0);
            assert_eq!(r.depth(*id), Some(path.depth()));
            assert_eq!(r.ancestors(*id).len() as u32, path.depth());
            if let Some(parent) = r.parent(*id) {
                assert_eq!(r.path(parent), path.parent().as_ref());
                assert!(r.children(parent).contains(id));
            }
            for (other, other_path) in &all {
                assert_eq!(
                    r.is_same_or_ancestor(*id, *other),
                    path.is_same_or_ancestor_of(other_path)
                );
                assert_eq!(
                    r.visible(*id, *other),
                    id.is_root() || path.is_same_or_ancestor_of(other_path)
                );
            }
        }
        assert_eq!(Registry::from_snapshot(r.snapshot()).as_ref(), Ok(r));
        assert_eq!(r.kernel_parent_table().len(), r.len() - 1);
    }

    #[test]
    fn tenants_are_top_level_namespaces() {
        let mut r = Registry::new();
        let a = r.create(&NsPath::parse("/a").unwrap()).unwrap();
        let b = r.create(&NsPath::parse("/a/b").unwrap()).unwrap();
        let c = r.create(&NsPath::parse("/a/b/c").unwrap()).unwrap();
        let d = r.create(&NsPath::parse("/d").unwrap()).unwrap();
        assert_eq!(r.tenant_of(c), a);
        assert_eq!(r.tenant_of(b), a);
        assert_eq!(r.tenant_of(a), a);
        assert_eq!(r.tenant_of(d), d);
        assert_eq!(r.tenant_of(NsId::ROOT), NsId::ROOT);
        assert_eq!(r.tenant_of(NsId(999)), NsId::ROOT);
        assert_eq!(r.subtree_len(a), 3);
        assert_eq!(r.subtree_len(NsId::ROOT), 5);
        assert_eq!(r.subtree_len(NsId(999)), 0);
    }
}
