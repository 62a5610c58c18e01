//! The four kinds of BPF object that carry a global ID.

use serde::{Deserialize, Serialize};

/// A kind of BPF object with an ID in the kernel's global ID space.
///
/// The numeric codes (`code()`) are shared with the kernel side (`bpf/bpfns.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Prog,
    Map,
    Link,
    Btf,
}

impl ObjectKind {
    /// All kinds, in a stable order.
    pub const ALL: [ObjectKind; 4] = [Self::Prog, Self::Map, Self::Link, Self::Btf];

    /// Lower-case name, as bpftool spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Prog => "prog",
            Self::Map => "map",
            Self::Link => "link",
            Self::Btf => "btf",
        }
    }

    /// The code the kernel side uses in ownership keys.
    pub fn code(self) -> u32 {
        match self {
            Self::Prog => 1,
            Self::Map => 2,
            Self::Link => 3,
            Self::Btf => 4,
        }
    }

    /// Inverse of [`code`](Self::code).
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
