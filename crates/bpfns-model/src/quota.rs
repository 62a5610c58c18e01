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

use std::collections::HashMap;
use std::fmt;

use crate::id::NsId;
use crate::path::NsPath;
use crate::registry::Registry;

/// The numbers the rules work with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// The limit a namespace gets when none is asked for (bpfnsd's `max_objects`).
    pub default: u32,
    /// Records the top-level namespaces may reserve together: the ownership table's capacity
    /// less a margin for reservations in flight.
    pub capacity: u64,
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
}
