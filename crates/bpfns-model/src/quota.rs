//! Limits on ownership records, as pure rules.
//!
//! Every object a namespace task creates takes one record in the kernel's ownership table,
//! whose capacity is fixed. So that one namespace can never leave another's objects
//! unrecorded, each namespace has a limit (`max_objects`) on the records it uses *with its
//! descendants*: a record of namespace N counts in N and in every ancestor below the root.
//! Then:
//!
//! - a child's limit is never above its parent's (it could not use it anyway);
//! - the top-level namespaces' limits together never exceed the table's usable capacity
//!   ([`Rules::capacity`]), so their records — which include all their descendants' — always
//!   fit, whatever any other namespace does;
//! - root-namespace objects are not recorded (no record means root) and are not limited.
//!
//! Beside the total, a namespace may have a limit per kind of object ([`KindLimits`]:
//! `max_maps`, `max_progs`, `max_links`, `max_btf`), counted the same way (a map of N counts
//! in N's `max_maps` and in every ancestor's). A kind without a limit has only the total (and
//! the ancestors' limits of that kind). A limit of a kind is never above the namespace's
//! total, nor above the nearest limit of that kind among its ancestors. Limits of a kind
//! reserve nothing of the table: the totals do.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::id::NsId;
use crate::kind::ObjectKind;
use crate::path::NsPath;
use crate::registry::Registry;

/// The numbers the rules work with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// The limit a namespace gets when none is asked for (bpfnsd's `max_objects`).
    pub default: u32,
    /// The limits per kind a namespace gets when none is asked for (bpfnsd's `[quota]`
    /// `max_maps`...; none: only the total).
    pub kind_defaults: KindLimits,
    /// Records the top-level namespaces may reserve together: the ownership table's capacity
    /// less a margin for reservations in flight.
    pub capacity: u64,
}

/// Limits per kind of object: how many of each kind a namespace may own with its
/// descendants. `None`: no limit of that kind, only the total. Serialized flat, by the names
/// of the command line and bpfnsd.toml (`max_maps`...), each only when set: stores written
/// before these limits existed read as none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KindLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_progs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_maps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_links: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_btf: Option<u32>,
}

impl KindLimits {
    /// No limit of any kind.
    pub const NONE: KindLimits = KindLimits {
        max_progs: None,
        max_maps: None,
        max_links: None,
        max_btf: None,
    };

    /// The limit of `kind`.
    pub fn get(&self, kind: ObjectKind) -> Option<u32> {
        match kind {
            ObjectKind::Prog => self.max_progs,
            ObjectKind::Map => self.max_maps,
            ObjectKind::Link => self.max_links,
            ObjectKind::Btf => self.max_btf,
        }
    }

    /// Set (or with `None`, drop) the limit of `kind`.
    pub fn set(&mut self, kind: ObjectKind, limit: Option<u32>) {
        let slot = match kind {
            ObjectKind::Prog => &mut self.max_progs,
            ObjectKind::Map => &mut self.max_maps,
            ObjectKind::Link => &mut self.max_links,
            ObjectKind::Btf => &mut self.max_btf,
        };
        *slot = limit;
    }

    /// Whether no kind has a limit.
    pub fn is_empty(&self) -> bool {
        ObjectKind::ALL.iter().all(|k| self.get(*k).is_none())
    }

    /// These limits with those `over` sets replacing them.
    pub fn overlay(mut self, over: KindLimits) -> KindLimits {
        for k in ObjectKind::ALL {
            if let Some(l) = over.get(k) {
                self.set(k, Some(l));
            }
        }
        self
    }

    /// The name of the limit of `kind` (bpfnsd.toml, JSON; `--max-maps` on the command line).
    pub fn name(kind: ObjectKind) -> &'static str {
        match kind {
            ObjectKind::Prog => "max_progs",
            ObjectKind::Map => "max_maps",
            ObjectKind::Link => "max_links",
            ObjectKind::Btf => "max_btf",
        }
    }
}

/// Why a limit cannot be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// A limit of 0 would let the namespace create nothing at all.
    #[error("namespace {path} cannot have max_objects 0: its members could create nothing; ask for 1 or more")]
    Zero {
        /// The namespace.
        path: NsPath,
    },
    /// A child may not own more than its parent.
    #[error(
        "namespace {path} cannot have max_objects {asked}: its parent {parent} has {parent_limit}, \
         and a namespace's objects count in its parent's too; ask for at most {parent_limit}"
    )]
    AboveParent {
        /// The namespace.
        path: NsPath,
        /// The limit asked for.
        asked: u32,
        /// Its parent.
        parent: NsPath,
        /// The parent's limit.
        parent_limit: u32,
    },
    /// A limit of 0 of a kind.
    #[error(
        "namespace {path} cannot have {} 0: its members could create no {kind} at all; ask \
         for 1 or more, or leave it unset (only max_objects then applies)",
        KindLimits::name(*kind)
    )]
    KindZero {
        /// The namespace.
        path: NsPath,
        /// The kind.
        kind: ObjectKind,
    },
    /// A limit of a kind above the nearest limit of that kind among the ancestors.
    #[error(
        "namespace {path} cannot have {} {asked}: its ancestor {ancestor} has {} {ancestor_limit}, \
         and a namespace's objects count in its ancestors' too; ask for at most {ancestor_limit}",
        KindLimits::name(*kind),
        KindLimits::name(*kind)
    )]
    KindAboveParent {
        /// The namespace.
        path: NsPath,
        /// The kind.
        kind: ObjectKind,
        /// The limit asked for.
        asked: u32,
        /// The ancestor whose limit of that kind is the nearest.
        ancestor: NsPath,
        /// Its limit of that kind.
        ancestor_limit: u32,
    },
    /// A limit of a kind above the namespace's own total.
    #[error(
        "namespace {path} cannot have {} {asked}: its max_objects is {max_objects}, which \
         counts every kind; ask for at most {max_objects} (or raise --max-objects too)",
        KindLimits::name(*kind)
    )]
    KindAboveTotal {
        /// The namespace.
        path: NsPath,
        /// The kind.
        kind: ObjectKind,
        /// The limit asked for.
        asked: u32,
        /// Its max_objects.
        max_objects: u32,
    },
    /// A new limit below a child's limit of the same name.
    #[error(
        "namespace {path} cannot have {what} {asked}: its child {child} has {what} \
         {child_limit}, and a child's limit is never above its parent's; lower the child's \
         first (bpfns ns quota {child} --{} {asked})",
        what.replace('_', "-")
    )]
    BelowChild {
        /// The namespace.
        path: NsPath,
        /// `max_objects`, `max_maps`...
        what: &'static str,
        /// The limit asked for.
        asked: u32,
        /// The child.
        child: NsPath,
        /// The child's limit.
        child_limit: u32,
    },
    /// The root's limits cannot be set.
    #[error("the root namespace has no limits: its objects are not recorded")]
    Root,
    /// The top-level namespaces' limits would exceed the ownership table.
    #[error(
        "namespace {path} cannot have max_objects {asked}: the top-level namespaces reserve \
         {reserved} of the ownership table's {capacity} records already, {free} are left; ask \
         for at most {free}, lower other namespaces' limits (delete and re-create them), or \
         lower max_objects in bpfnsd.toml for new namespaces"
    )]
    NoRoom {
        /// The namespace.
        path: NsPath,
        /// The limit asked for.
        asked: u32,
        /// What the other top-level namespaces reserve.
        reserved: u64,
        /// The usable capacity.
        capacity: u64,
        /// What is left.
        free: u64,
    },
}

/// The records top-level namespaces reserve together (their limits; a namespace without one
/// reserves nothing yet).
pub fn reserved(reg: &Registry) -> u64 {
    reg.children(NsId::ROOT)
        .into_iter()
        .filter_map(|id| reg.max_objects(id))
        .map(u64::from)
        .sum()
}

/// The limit a new namespace `path` gets: `asked`, or the default — capped at the parent's
/// limit when not asked for. Checks that it is at least 1, not above the parent's, and, for a
/// top-level namespace, that the table still has room for it. Its parent must exist.
pub fn limit_for_new(
    reg: &Registry,
    path: &NsPath,
    asked: Option<u32>,
    rules: Rules,
) -> Result<u32, QuotaError> {
    let parent_path = path.parent().unwrap_or_else(NsPath::root);
    let parent = reg.id(&parent_path).unwrap_or(NsId::ROOT);
    let parent_limit = reg.max_objects(parent);
    let limit = match (asked, parent_limit) {
        (Some(a), _) => a,
        (None, Some(p)) => rules.default.min(p),
        (None, None) => rules.default,
    };
    if limit == 0 {
        return Err(QuotaError::Zero { path: path.clone() });
    }
    if let Some(p) = parent_limit {
        if limit > p {
            return Err(QuotaError::AboveParent {
                path: path.clone(),
                asked: limit,
                parent: parent_path,
                parent_limit: p,
            });
        }
    }
    if parent == NsId::ROOT {
        let have = reserved(reg);
        let free = rules.capacity.saturating_sub(have);
        if u64::from(limit) > free {
            return Err(QuotaError::NoRoom {
                path: path.clone(),
                asked: limit,
                reserved: have,
                capacity: rules.capacity,
                free,
            });
        }
    }
    Ok(limit)
}

/// The limit of `kind` that applies to namespace `id` through itself or its ancestors: the
/// nearest one set (each is within its parent's), with the namespace that set it.
pub fn effective_kind_limit(reg: &Registry, id: NsId, kind: ObjectKind) -> Option<(NsId, u32)> {
    std::iter::once(id)
        .chain(reg.ancestors(id))
        .filter(|a| *a != NsId::ROOT)
        .find_map(|a| reg.kind_limits(a).get(kind).map(|l| (a, l)))
}

/// Check the limits per kind `limits` of namespace `path` (child of `parent`) whose total is
/// `total`: each explicitly `asked` one at least 1, none above the total nor above the nearest
/// limit of its kind among the ancestors.
fn check_kinds(
    reg: &Registry,
    path: &NsPath,
    parent: NsId,
    limits: KindLimits,
    total: u32,
) -> Result<(), QuotaError> {
    for kind in ObjectKind::ALL {
        let Some(l) = limits.get(kind) else { continue };
        if l == 0 {
            return Err(QuotaError::KindZero {
                path: path.clone(),
                kind,
            });
        }
        if let Some((a, al)) = effective_kind_limit(reg, parent, kind) {
            if l > al {
                return Err(QuotaError::KindAboveParent {
                    path: path.clone(),
                    kind,
                    asked: l,
                    ancestor: reg.path(a).cloned().unwrap_or_else(NsPath::root),
                    ancestor_limit: al,
                });
            }
        }
        if l > total {
            return Err(QuotaError::KindAboveTotal {
                path: path.clone(),
                kind,
                asked: l,
                max_objects: total,
            });
        }
    }
    Ok(())
}

/// The limits per kind a new namespace `path` gets, whose total is `total`: those `asked`,
/// else the defaults capped at the nearest limit of that kind among its ancestors and at
/// `total` (none where neither is set). Asked ones are checked: at least 1, not above the
/// ancestors' of their kind, not above `total`. Its parent must exist.
pub fn kind_limits_for_new(
    reg: &Registry,
    path: &NsPath,
    asked: KindLimits,
    total: u32,
    rules: Rules,
) -> Result<KindLimits, QuotaError> {
    let parent_path = path.parent().unwrap_or_else(NsPath::root);
    let parent = reg.id(&parent_path).unwrap_or(NsId::ROOT);
    check_kinds(reg, path, parent, asked, total)?;
    let mut out = asked;
    for kind in ObjectKind::ALL {
        if asked.get(kind).is_some() {
            continue;
        }
        if let Some(d) = rules.kind_defaults.get(kind) {
            let cap = effective_kind_limit(reg, parent, kind).map_or(u32::MAX, |(_, l)| l);
            out.set(kind, Some(d.min(cap).min(total).max(1)));
        }
    }
    Ok(out)
}

/// The limits of existing namespace `id` after `bpfns ns quota`: its total (`max_objects`, or
/// the one it has) and its limits per kind (those it has, with the ones asked replacing them).
/// Checks what [`limit_for_new`] and [`kind_limits_for_new`] check, that no child has a limit
/// above the new ones, and for a top-level namespace that the table has room for a larger
/// total.
pub fn change_limits(
    reg: &Registry,
    id: NsId,
    max_objects: Option<u32>,
    asked: KindLimits,
    rules: Rules,
) -> Result<(u32, KindLimits), QuotaError> {
    if id == NsId::ROOT {
        return Err(QuotaError::Root);
    }
    let path = reg.path(id).cloned().unwrap_or_else(NsPath::root);
    let parent = reg.parent(id).unwrap_or(NsId::ROOT);
    let current = reg.max_objects(id);
    let total = match max_objects.or(current) {
        Some(t) => t,
        None => rules.default,
    };
    if total == 0 {
        return Err(QuotaError::Zero { path });
    }
    if let Some(p) = reg.max_objects(parent) {
        if total > p {
            return Err(QuotaError::AboveParent {
                path,
                asked: total,
                parent: reg.path(parent).cloned().unwrap_or_else(NsPath::root),
                parent_limit: p,
            });
        }
    }
    let kinds = reg.kind_limits(id).overlay(asked);
    check_kinds(reg, &path, parent, kinds, total)?;
    for child in reg.children(id) {
        let child_path = || reg.path(child).cloned().unwrap_or_else(NsPath::root);
        if let Some(c) = reg.max_objects(child) {
            if c > total {
                return Err(QuotaError::BelowChild {
                    path,
                    what: "max_objects",
                    asked: total,
                    child: child_path(),
                    child_limit: c,
                });
            }
        }
        for kind in ObjectKind::ALL {
            if let (Some(mine), Some(c)) = (kinds.get(kind), reg.kind_limits(child).get(kind)) {
                if c > mine {
                    return Err(QuotaError::BelowChild {
                        path,
                        what: KindLimits::name(kind),
                        asked: mine,
                        child: child_path(),
                        child_limit: c,
                    });
                }
            }
        }
    }
    if parent == NsId::ROOT && Some(total) > current {
        let have = reserved(reg) - u64::from(current.unwrap_or(0));
        let free = rules.capacity.saturating_sub(have);
        if u64::from(total) > free {
            return Err(QuotaError::NoRoom {
                path,
                asked: total,
                reserved: have,
                capacity: rules.capacity,
                free,
            });
        }
    }
    Ok((total, kinds))
}

/// Give every namespace without a limit (stored before limits existed) the default, capped at
/// its parent's, parents first. Returns the namespaces changed. The table's capacity is not
/// checked: these namespaces exist already ([`over_capacity`] says whether they fit).
pub fn fill_default_limits(reg: &mut Registry, default: u32) -> Vec<NsId> {
    let ids: Vec<NsId> = reg.iter().map(|(id, _)| id).collect();
    let mut changed = Vec::new();
    for id in ids {
        if id == NsId::ROOT || reg.max_objects(id).is_some() {
            continue;
        }
        let parent = reg.parent(id).unwrap_or(NsId::ROOT);
        let limit = reg
            .max_objects(parent)
            .map_or(default, |p| default.min(p))
            .max(1);
        reg.set_max_objects(id, limit);
        changed.push(id);
    }
    changed
}

/// When the top-level namespaces reserve more than the usable capacity: (reserved, capacity).
pub fn over_capacity(reg: &Registry, rules: Rules) -> Option<(u64, u64)> {
    let r = reserved(reg);
    (r > rules.capacity).then_some((r, rules.capacity))
}

/// `id` and its ancestors below the root, nearest first, by `parents` (id -> parent, the
/// kernel's namespace table): the namespaces a record of `id` counts in. An id missing from
/// `parents` ends the chain.
pub fn counted_in(parents: &HashMap<NsId, NsId>, id: NsId) -> Vec<NsId> {
    let mut out = Vec::new();
    let mut cur = id;
    while cur != NsId::ROOT && out.len() <= crate::path::MAX_DEPTH as usize {
        out.push(cur);
        match parents.get(&cur) {
            Some(p) => cur = *p,
            None => break,
        }
    }
    out
}

/// Records per namespace, counted hierarchically: each owner's records count in the owner
/// and its ancestors below the root.
pub fn hierarchical_counts(
    parents: &HashMap<NsId, NsId>,
    owners: impl IntoIterator<Item = NsId>,
) -> HashMap<NsId, u64> {
    let mut out: HashMap<NsId, u64> = HashMap::new();
    let mut per_owner: HashMap<NsId, u64> = HashMap::new();
    for o in owners {
        *per_owner.entry(o).or_default() += 1;
    }
    for (owner, n) in per_owner {
        for ns in counted_in(parents, owner) {
            *out.entry(ns).or_default() += n;
        }
    }
    out
}

/// A namespace's records in use against its limit, for display: `17/1024`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Records in use (its own and its descendants').
    pub used: u64,
    /// Its limit, if it has one.
    pub limit: Option<u32>,
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.limit {
            Some(l) => write!(f, "{}/{l}", self.used),
            None => write!(f, "{}", self.used),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> NsPath {
        NsPath::parse(s).unwrap()
    }

    const RULES: Rules = Rules {
        default: 1024,
        kind_defaults: KindLimits::NONE,
        capacity: 3000,
    };

    #[test]
    fn defaults_children_and_capacity() {
        let mut r = Registry::new();
        let a = r.create(&p("/a")).unwrap();
        assert_eq!(limit_for_new(&r, &p("/a"), None, RULES), Ok(1024));
        r.set_max_objects(a, 1024);
        // A child gets the default, capped at its parent's; never more than it.
        let ab = r.create(&p("/a/b")).unwrap();
        assert_eq!(limit_for_new(&r, &p("/a/b"), Some(10), RULES), Ok(10));
        assert_eq!(limit_for_new(&r, &p("/a/b"), None, RULES), Ok(1024));
        r.set_max_objects(ab, 10);
        assert_eq!(limit_for_new(&r, &p("/a/b/c"), None, RULES), Ok(10));
        let err = limit_for_new(&r, &p("/a/b/c"), Some(11), RULES).unwrap_err();
        assert!(matches!(
            err,
            QuotaError::AboveParent {
                parent_limit: 10,
                ..
            }
        ));
        assert!(err.to_string().contains("ask for at most 10"), "{err}");
        assert!(matches!(
            limit_for_new(&r, &p("/a/b/c"), Some(0), RULES),
            Err(QuotaError::Zero { .. })
        ));
        // Children reserve nothing from the table: their records are their parent's too.
        assert_eq!(reserved(&r), 1024);
        // Top-level namespaces share the table's capacity.
        let e = r.create(&p("/e")).unwrap();
        r.set_max_objects(e, 1900);
        assert_eq!(reserved(&r), 2924);
        let err = limit_for_new(&r, &p("/f"), None, RULES).unwrap_err();
        assert_eq!(
            err,
            QuotaError::NoRoom {
                path: p("/f"),
                asked: 1024,
                reserved: 2924,
                capacity: 3000,
                free: 76
            }
        );
        assert!(err.to_string().contains("76 are left"), "{err}");
        assert_eq!(limit_for_new(&r, &p("/f"), Some(76), RULES), Ok(76));
        assert!(over_capacity(&r, RULES).is_none());
    }

    #[test]
    fn old_registries_get_the_default_parents_first() {
        let mut r = Registry::new();
        let a = r.create(&p("/a")).unwrap();
        let ab = r.create(&p("/a/b")).unwrap();
        let z = r.create(&p("/z")).unwrap();
        r.set_max_objects(z, 5);
        let zy = r.create(&p("/z/y")).unwrap();
        let changed = fill_default_limits(&mut r, 100);
        assert_eq!(changed, vec![a, ab, zy]);
        assert_eq!(r.max_objects(a), Some(100));
        assert_eq!(r.max_objects(ab), Some(100));
        assert_eq!(r.max_objects(zy), Some(5), "capped at its parent's");
        assert_eq!(r.max_objects(NsId::ROOT), None, "the root is unlimited");
        assert!(fill_default_limits(&mut r, 100).is_empty());
        let tight = Rules {
            default: 100,
            kind_defaults: KindLimits::NONE,
            capacity: 50,
        };
        assert_eq!(over_capacity(&r, tight), Some((105, 50)));
    }

    #[test]
    fn limits_persist_and_a_child_above_its_parent_is_corrupt() {
        let mut r = Registry::new();
        let a = r.create(&p("/a")).unwrap();
        let ab = r.create(&p("/a/b")).unwrap();
        r.set_max_objects(a, 7);
        r.set_max_objects(ab, 3);
        let back = Registry::from_snapshot(r.snapshot()).unwrap();
        assert_eq!(back.max_objects(ab), Some(3));
        // Files of older versions have no limits: they load, without them.
        let json = r#"{"format":1,"next_id":2,"namespaces":[{"id":1,"parent":0,"path":"/a"}]}"#;
        let old: crate::Snapshot = serde_json::from_str(json).unwrap();
        assert_eq!(Registry::from_snapshot(old).unwrap().max_objects(a), None);
        let mut snap = r.snapshot();
        snap.namespaces[1].max_objects = Some(8);
        assert!(matches!(
            Registry::from_snapshot(snap),
            Err(crate::SnapshotError::LimitAboveParent { .. })
        ));
    }

    #[test]
    fn records_count_in_their_namespace_and_its_ancestors_below_the_root() {
        let (a, ab, abc, e) = (NsId(1), NsId(2), NsId(3), NsId(4));
        let parents: HashMap<NsId, NsId> =
            [(a, NsId::ROOT), (ab, a), (abc, ab), (e, NsId::ROOT)].into();
        assert_eq!(counted_in(&parents, abc), vec![abc, ab, a]);
        assert_eq!(counted_in(&parents, NsId::ROOT), Vec::<NsId>::new());
        assert_eq!(
            counted_in(&parents, NsId(99)),
            vec![NsId(99)],
            "unknown: itself"
        );
        let c = hierarchical_counts(&parents, [abc, abc, ab, e]);
        assert_eq!(c[&a], 3);
        assert_eq!(c[&ab], 3);
        assert_eq!(c[&abc], 2);
        assert_eq!(c[&e], 1);
        assert!(!c.contains_key(&NsId::ROOT));
        assert_eq!(
            Usage {
                used: 3,
                limit: Some(8)
            }
            .to_string(),
            "3/8"
        );
    }

    fn maps(n: u32) -> KindLimits {
        KindLimits {
            max_maps: Some(n),
            ..KindLimits::NONE
        }
    }

    #[test]
    fn limits_per_kind_within_the_ancestors_and_the_total() {
        let mut r = Registry::new();
        let a = r.create(&p("/a")).unwrap();
        r.set_max_objects(a, 100);
        // None asked, no default: only the total.
        assert_eq!(
            kind_limits_for_new(&r, &p("/a"), KindLimits::NONE, 100, RULES),
            Ok(KindLimits::NONE)
        );
        assert_eq!(
            kind_limits_for_new(&r, &p("/a"), maps(5), 100, RULES),
            Ok(maps(5))
        );
        r.set_kind_limits(a, maps(5));
        let ab = r.create(&p("/a/b")).unwrap();
        r.set_max_objects(ab, 100);
        assert_eq!(effective_kind_limit(&r, ab, ObjectKind::Map), Some((a, 5)));
        assert_eq!(effective_kind_limit(&r, ab, ObjectKind::Prog), None);
        // A child never above the nearest ancestor's limit of the kind.
        let err = kind_limits_for_new(&r, &p("/a/b/c"), maps(6), 100, RULES).unwrap_err();
        assert!(matches!(
            err,
            QuotaError::KindAboveParent {
                kind: ObjectKind::Map,
                asked: 6,
                ancestor_limit: 5,
                ..
            }
        ));
        assert!(err.to_string().contains("max_maps 6"), "{err}");
        assert!(err.to_string().contains("ask for at most 5"), "{err}");
        assert_eq!(
            kind_limits_for_new(&r, &p("/a/b/c"), maps(5), 100, RULES),
            Ok(maps(5))
        );
        // Never above its own total, never 0.
        let progs = KindLimits {
            max_progs: Some(11),
            ..KindLimits::NONE
        };
        assert!(matches!(
            kind_limits_for_new(&r, &p("/a/b/c"), progs, 10, RULES),
            Err(QuotaError::KindAboveTotal {
                max_objects: 10,
                ..
            })
        ));
        assert!(matches!(
            kind_limits_for_new(&r, &p("/a/b/c"), maps(0), 10, RULES),
            Err(QuotaError::KindZero {
                kind: ObjectKind::Map,
                ..
            })
        ));
        // Defaults are capped at the ancestors' and the total.
        let rules = Rules {
            kind_defaults: KindLimits {
                max_maps: Some(64),
                max_links: Some(64),
                ..KindLimits::NONE
            },
            ..RULES
        };
        let got = kind_limits_for_new(&r, &p("/a/b/c"), KindLimits::NONE, 20, rules).unwrap();
        assert_eq!(got.max_maps, Some(5));
        assert_eq!(got.max_links, Some(20));
        assert_eq!(got.max_progs, None);
        // Asked ones win over the defaults.
        let got = kind_limits_for_new(&r, &p("/a/b/c"), maps(2), 20, rules).unwrap();
        assert_eq!(got.max_maps, Some(2));
    }

    #[test]
    fn changing_limits_keeps_children_within_and_the_table_within_capacity() {
        let mut r = Registry::new();
        let a = r.create(&p("/a")).unwrap();
        r.set_max_objects(a, 1000);
        let ab = r.create(&p("/a/b")).unwrap();
        r.set_max_objects(ab, 50);
        r.set_kind_limits(ab, maps(10));
        // Raising a child's kind within its parent; the total kept.
        assert_eq!(
            change_limits(&r, ab, None, maps(20), RULES),
            Ok((50, maps(20)))
        );
        // A parent cannot go below a child's limit of the same name.
        let err = change_limits(&r, a, None, maps(5), RULES).unwrap_err();
        assert!(
            matches!(
                err,
                QuotaError::BelowChild {
                    what: "max_maps",
                    child_limit: 10,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("--max-maps 5"), "{err}");
        let err = change_limits(&r, a, Some(40), KindLimits::NONE, RULES).unwrap_err();
        assert!(matches!(
            err,
            QuotaError::BelowChild {
                what: "max_objects",
                ..
            }
        ));
        assert_eq!(
            change_limits(&r, a, None, maps(10), RULES),
            Ok((1000, maps(10)))
        );
        r.set_kind_limits(a, maps(10));
        assert!(matches!(
            change_limits(&r, ab, None, maps(11), RULES),
            Err(QuotaError::KindAboveParent { .. })
        ));
        assert!(matches!(
            change_limits(&r, ab, Some(1001), KindLimits::NONE, RULES),
            Err(QuotaError::AboveParent { .. })
        ));
        // Lowering a total below the namespace's own kind limit is refused, not hidden.
        assert!(matches!(
            change_limits(&r, ab, Some(5), KindLimits::NONE, RULES),
            Err(QuotaError::KindAboveTotal { .. })
        ));
        // A top-level namespace grows only into the table's free room (its own counted).
        let e = r.create(&p("/e")).unwrap();
        r.set_max_objects(e, 1900);
        assert_eq!(
            change_limits(&r, a, Some(1100), KindLimits::NONE, RULES).map(|x| x.0),
            Ok(1100)
        );
        assert!(matches!(
            change_limits(&r, a, Some(1101), KindLimits::NONE, RULES),
            Err(QuotaError::NoRoom { free: 1100, .. })
        ));
        assert_eq!(
            change_limits(&r, NsId::ROOT, Some(1), KindLimits::NONE, RULES),
            Err(QuotaError::Root)
        );
    }

    #[test]
    fn limits_per_kind_persist_and_old_stores_have_none() {
        let mut r = Registry::new();
        let a = r.create(&p("/a")).unwrap();
        let ab = r.create(&p("/a/b")).unwrap();
        r.set_max_objects(a, 7);
        r.set_max_objects(ab, 7);
        r.set_kind_limits(a, maps(3));
        r.set_kind_limits(ab, maps(2));
        let snap = r.snapshot();
        let json = serde_json::to_string(&snap).unwrap();
        assert!(json.contains("\"max_maps\":3"), "{json}");
        assert!(
            !json.contains("max_progs"),
            "unset limits are not written: {json}"
        );
        let back = Registry::from_snapshot(serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(back.kind_limits(ab), maps(2));
        assert_eq!(back, r);
        // A store written before limits per kind: none, only the totals.
        let old = r#"{"format":1,"next_id":2,"namespaces":[{"id":1,"parent":0,"path":"/a","max_objects":9}]}"#;
        let old: crate::Snapshot = serde_json::from_str(old).unwrap();
        let old = Registry::from_snapshot(old).unwrap();
        assert_eq!(old.kind_limits(a), KindLimits::NONE);
        assert_eq!(old.max_objects(a), Some(9));
        // A child above its parent's limit of a kind is damage.
        let mut bad = r.snapshot();
        bad.namespaces[1].kind_limits = maps(4);
        assert!(matches!(
            Registry::from_snapshot(bad),
            Err(crate::SnapshotError::LimitAboveParent { .. })
        ));
    }
}
