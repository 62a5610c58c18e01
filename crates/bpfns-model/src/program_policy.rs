//! What program types a namespace's members may load beyond the default, as a pure value.
//!
//! Tracing-class programs (kprobes, tracepoints, tracing and iterator programs, LSM,
//! struct_ops, ext) can read kernel memory and list every BPF object, so namespaces are
//! created without them. A namespace may be given them, but never more than its parent has
//! ("narrowing only", contract point (docs/design.md) 7): the root (the host) has everything, and a namespace
//! allowed tracing can only be under namespaces allowed tracing.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The program-type policy of one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ProgramPolicy {
    /// Whether members may load tracing-class programs. Off by default.
    #[serde(default)]
    pub allow_tracing: bool,
}

impl ProgramPolicy {
    /// What a new namespace gets unless asked otherwise: no tracing-class programs.
    pub const DEFAULT: ProgramPolicy = ProgramPolicy {
        allow_tracing: false,
    };

    /// The root's: the host loads what the kernel lets it.
    pub const HOST: ProgramPolicy = ProgramPolicy {
        allow_tracing: true,
    };

    /// Whether this policy allows nothing that `outer` does not.
    pub fn is_within(self, outer: ProgramPolicy) -> bool {
        !self.allow_tracing || outer.allow_tracing
    }

    /// Whether this is [`ProgramPolicy::DEFAULT`] (for `skip_serializing_if`).
    pub fn is_default(&self) -> bool {
        *self == Self::DEFAULT
    }
}

impl fmt::Display for ProgramPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.allow_tracing {
            "tracing programs allowed"
        } else {
            "no tracing programs"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing_only() {
        let (deny, allow) = (ProgramPolicy::DEFAULT, ProgramPolicy::HOST);
        assert!(deny.is_within(deny));
        assert!(deny.is_within(allow));
        assert!(allow.is_within(allow));
        assert!(!allow.is_within(deny));
    }

    #[test]
    fn serde_defaults_to_deny() {
        let p: ProgramPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, ProgramPolicy::DEFAULT);
        assert!(p.is_default());
        let p: ProgramPolicy = serde_json::from_str(r#"{"allow_tracing":true}"#).unwrap();
        assert!(p.allow_tracing);
    }
}
