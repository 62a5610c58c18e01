//! The four kinds of BPF object that carry a global ID.

use serde::{Deserialize, Serialize};

/// A kind of BPF object with an ID in the kernel's global ID space.
///
/// The numeric codes (`code()`) are shared with the kernel side (`bpf/bpfns.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// A BPF program.
    Prog,
    /// A BPF map.
    Map,
    /// A BPF link (an attachment of a program).
    Link,
    /// A BTF object (type information).
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

/// The error of parsing an [`ObjectKind`] from its name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown BPF object kind {input:?}: expected one of prog, map, link, btf")]
pub struct ParseKindError {
    input: String,
}

impl std::str::FromStr for ObjectKind {
    type Err = ParseKindError;

    /// Parses the bpftool name (`prog`, `map`, `link`, `btf`), ignoring ASCII case,
    /// since that is how users type it on a command line.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseKindError {
                input: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        for k in ObjectKind::ALL {
            assert_eq!(ObjectKind::from_code(k.code()), Some(k));
        }
        assert_eq!(ObjectKind::from_code(0), None);
        assert_eq!(ObjectKind::from_code(5), None);
    }

    #[test]
    fn names_parse_and_display() {
        for k in ObjectKind::ALL {
            assert_eq!(k.to_string(), k.name());
            assert_eq!(k.name().parse::<ObjectKind>(), Ok(k));
            assert_eq!(k.name().to_uppercase().parse::<ObjectKind>(), Ok(k));
        }
        let err = "program".parse::<ObjectKind>().unwrap_err();
        assert!(err.to_string().contains("\"program\""), "{err}");
        assert!("".parse::<ObjectKind>().is_err());
    }

    #[test]
    fn serde_uses_lowercase_names() {
        assert_eq!(serde_json::to_string(&ObjectKind::Btf).unwrap(), "\"btf\"");
        let k: ObjectKind = serde_json::from_str("\"link\"").unwrap();
        assert_eq!(k, ObjectKind::Link);
    }
}
