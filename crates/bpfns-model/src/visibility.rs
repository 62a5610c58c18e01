//! Filtering object lists down to what a viewer may see (contract point (docs/design.md) 4).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::id::NsId;
use crate::kind::ObjectKind;
use crate::registry::Registry;

/// A BPF object and its owner namespace, as the kernel side reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// The object's kind.
    pub kind: ObjectKind,
    /// The kernel's global id of the object.
    pub id: u32,
    /// The namespace that owns it.
    pub owner: NsId,
}

/// What one viewer namespace may see, computed once from the registry so that filtering
/// long object lists costs one set lookup per object.
///
/// It is a copy: rebuild it after the registry changes. It agrees with
/// [`Registry::visible`]: the root sees everything (objects with unknown owners included),
/// any other namespace sees what its own subtree owns, and an unknown viewer sees nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    viewer: NsId,
    scope: Scope,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    All,
    Owners(BTreeSet<NsId>),
}

impl Visibility {
    /// The view from `viewer`.
    pub fn new(registry: &Registry, viewer: NsId) -> Self {
        let scope = if viewer == NsId::ROOT {
            Scope::All
        } else {
            Scope::Owners(registry.subtree(viewer).into_iter().collect())
        };
        Visibility { viewer, scope }
    }

    /// The viewer namespace.
    pub fn viewer(&self) -> NsId {
        self.viewer
    }

    /// Whether an object owned by `owner` is visible.
    pub fn can_see(&self, owner: NsId) -> bool {
        match &self.scope {
            Scope::All => true,
            Scope::Owners(set) => set.contains(&owner),
        }
    }

    /// The visible records, in their original order.
    pub fn filter(&self, records: impl IntoIterator<Item = ObjectRecord>) -> Vec<ObjectRecord> {
        records
            .into_iter()
            .filter(|r| self.can_see(r.owner))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::NsPath;

    fn p(s: &str) -> NsPath {
        NsPath::parse(s).unwrap()
    }

    fn rec(kind: ObjectKind, id: u32, owner: NsId) -> ObjectRecord {
        ObjectRecord { kind, id, owner }
    }

    #[test]
    fn filters_by_subtree() {
        let mut r = Registry::new();
        let a = r.create(&p("/a")).unwrap();
        let ab = r.create(&p("/a/b")).unwrap();
        let e = r.create(&p("/e")).unwrap();
        let stale = NsId(77);
        let records = [
            rec(ObjectKind::Prog, 10, NsId::ROOT),
            rec(ObjectKind::Map, 11, a),
            rec(ObjectKind::Link, 12, ab),
            rec(ObjectKind::Btf, 13, e),
            rec(ObjectKind::Prog, 14, stale),
            rec(ObjectKind::Map, 15, ab),
        ];
        let ids = |viewer: NsId| -> Vec<u32> {
            Visibility::new(&r, viewer)
                .filter(records.iter().copied())
                .iter()
                .map(|o| o.id)
                .collect()
        };
        assert_eq!(ids(NsId::ROOT), [10, 11, 12, 13, 14, 15]);
        assert_eq!(ids(a), [11, 12, 15]);
        assert_eq!(ids(ab), [12, 15]);
        assert_eq!(ids(e), [13]);
        assert!(ids(stale).is_empty(), "an unknown viewer sees nothing");
        let v = Visibility::new(&r, ab);
        assert_eq!(v.viewer(), ab);
        assert!(v.can_see(ab) && !v.can_see(a) && !v.can_see(NsId::ROOT));
    }

    #[test]
    fn agrees_with_registry_visible() {
        let mut r = Registry::new();
        for s in ["/a", "/a/b", "/a/b/c", "/a/d", "/e", "/e/f", "/gone"] {
            r.create(&p(s)).unwrap();
        }
        r.delete(&p("/gone")).unwrap();
        let ids: Vec<NsId> = (0..12).map(NsId).collect();
        for &viewer in &ids {
            let v = Visibility::new(&r, viewer);
            for &owner in &ids {
                assert_eq!(
                    v.can_see(owner),
                    r.visible(viewer, owner),
                    "viewer {viewer}, owner {owner}"
                );
            }
        }
    }

    #[test]
    fn record_serde() {
        let o = rec(ObjectKind::Map, 5, NsId(2));
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(json, r#"{"kind":"map","id":5,"owner":2}"#);
        assert_eq!(serde_json::from_str::<ObjectRecord>(&json).unwrap(), o);
    }
}
