//! Namespace ids.

use serde::{Deserialize, Serialize};

/// The id of a BPF namespace: the tag the kernel side stores per task and per object.
///
/// Ids are allocated by the [`Registry`](crate::Registry), monotonically, and are never
/// reused, not even after a restart (the next id is persisted in the snapshot). A reused id
/// would let a stale kernel record (a task tag or an object's owner left behind by a deleted
/// namespace) silently point at an unrelated new namespace and leak its objects.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct NsId(pub u32);

impl NsId {
    /// The root namespace: the host. It always exists, and everything that predates bpfns
    /// belongs to it.
    pub const ROOT: NsId = NsId(0);

    /// The owner of a quarantined object (`BPFNS_QUARANTINE` in the kernel side): a program
    /// whose loader the kernel side stopped, which another thread may have pinned first. No
    /// namespace has this id (the [`Registry`](crate::Registry) never hands out `u32::MAX`),
    /// so no namespace sees such an object; the root does.
    pub const QUARANTINE: NsId = NsId(u32::MAX);

    /// The raw value, as stored in kernel maps.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Whether this is [`NsId::ROOT`].
    pub const fn is_root(self) -> bool {
        self.0 == 0
    }
}

impl From<u32> for NsId {
    fn from(v: u32) -> Self {
        NsId(v)
    }
}

impl From<NsId> for u32 {
    fn from(id: NsId) -> Self {
        id.0
    }
}

impl std::fmt::Display for NsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::str::FromStr for NsId {
    type Err = std::num::ParseIntError;

    /// Parses the decimal form that [`Display`](std::fmt::Display) prints.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(NsId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_display() {
        assert_eq!(NsId::ROOT, NsId(0));
        assert!(NsId::ROOT.is_root());
        assert!(!NsId(3).is_root());
        assert_eq!(NsId(42).to_string(), "42");
        assert_eq!("42".parse::<NsId>().unwrap(), NsId(42));
        assert!("-1".parse::<NsId>().is_err());
        assert_eq!(u32::from(NsId(7)), 7);
    }

    #[test]
    fn serde_is_transparent() {
        assert_eq!(serde_json::to_string(&NsId(5)).unwrap(), "5");
        assert_eq!(serde_json::from_str::<NsId>("9").unwrap(), NsId(9));
    }
}
