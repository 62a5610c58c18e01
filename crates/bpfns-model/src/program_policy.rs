//! What a namespace's members may do with bpf(), as a pure value: the BPF-token vocabulary.
//!
//! A [`Policy`] is four sets of kernel numbers, named as bpffs names them in its
//! `delegate_cmds`, `delegate_maps`, `delegate_progs` and `delegate_attachs` options: the bpf()
//! commands (`enum bpf_cmd`), map types (`enum bpf_map_type`), program types
//! (`enum bpf_prog_type`) and attach types (`enum bpf_attach_type`) members may use. Each set
//! is either finite or "everything but" a finite set, so `any` covers what a later kernel adds.
//! The names of the numbers live with the UAPI numbers in `bpfns-sys` (`bpfns_sys::names`):
//! this crate knows only the numbers, and the few of them that make the tracing class.
//!
//! Tracing-class programs (kprobes, tracepoints, tracing and iterator programs, LSM,
//! struct_ops, ext) can read kernel memory and list every BPF object, so namespaces are
//! created without them ([`Policy::DEFAULT`]); `allow_tracing` is a shorthand for them. A
//! namespace never allows more than its parent ("narrowing only", contract point
//! (docs/design.md) 7): the root (the host) has everything.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A set of kernel enum numbers (commands, map, program or attach types).
///
/// Numbers below 64 are held one bit each (the kernel's token masks are `u64` too, and its
/// enums stay below 64 for them); `co` makes the set the complement of `bits`, so that
/// [`TypeSet::ANY`] holds every number, those of later kernels included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeSet {
    bits: u64,
    co: bool,
}

impl TypeSet {
    /// Every number (`any`).
    pub const ANY: TypeSet = TypeSet { bits: 0, co: true };
    /// No number.
    pub const NONE: TypeSet = TypeSet { bits: 0, co: false };

    /// Exactly the numbers of `bits` (bit n: number n).
    pub const fn only(bits: u64) -> TypeSet {
        TypeSet { bits, co: false }
    }

    /// Every number but those of `bits`.
    pub const fn all_but(bits: u64) -> TypeSet {
        TypeSet { bits, co: true }
    }

    /// Exactly `numbers` (those of 64 and more cannot be named and are ignored).
    pub fn of(numbers: impl IntoIterator<Item = u32>) -> TypeSet {
        TypeSet::only(bits_of(numbers))
    }

    /// Whether `n` is in the set.
    pub fn contains(self, n: u32) -> bool {
        let bit = n < 64 && self.bits & (1u64 << n) != 0;
        bit != self.co
    }

    /// Whether every number is in the set.
    pub fn is_any(self) -> bool {
        self == TypeSet::ANY
    }

    /// Whether the set is "everything but" a finite set (`any` included).
    pub fn is_cofinite(self) -> bool {
        self.co
    }

    /// The numbers in the set (`false`) or, for an "everything but" set, the numbers left
    /// out (`true`).
    pub fn listed(self) -> (bool, Vec<u32>) {
        let mut out = Vec::with_capacity(self.bits.count_ones() as usize);
        let mut bits = self.bits;
        while bits != 0 {
            out.push(bits.trailing_zeros());
            bits &= bits - 1;
        }
        (self.co, out)
    }

    /// The numbers below 64 in the set, as the kernel's `u64` masks hold them.
    pub fn mask64(self) -> u64 {
        if self.co {
            !self.bits
        } else {
            self.bits
        }
    }

    /// The numbers in both.
    pub fn intersect(self, o: TypeSet) -> TypeSet {
        match (self.co, o.co) {
            (false, false) => TypeSet::only(self.bits & o.bits),
            (false, true) => TypeSet::only(self.bits & !o.bits),
            (true, false) => TypeSet::only(o.bits & !self.bits),
            (true, true) => TypeSet::all_but(self.bits | o.bits),
        }
    }

    /// The numbers in either.
    pub fn union(self, o: TypeSet) -> TypeSet {
        self.complement().intersect(o.complement()).complement()
    }

    /// The numbers in `self` but not in `o`.
    pub fn minus(self, o: TypeSet) -> TypeSet {
        self.intersect(o.complement())
    }

    /// Every number not in the set.
    pub fn complement(self) -> TypeSet {
        TypeSet {
            bits: self.bits,
            co: !self.co,
        }
    }

    /// Whether every number of `self` is in `outer`.
    pub fn is_within(self, outer: TypeSet) -> bool {
        self.minus(outer) == TypeSet::NONE
    }
}

fn bits_of(numbers: impl IntoIterator<Item = u32>) -> u64 {
    numbers
        .into_iter()
        .filter(|&n| n < 64)
        .fold(0, |m, n| m | 1u64 << n)
}

/// The tracing-class program types (`enum bpf_prog_type`): kprobe 2, tracepoint 5,
/// perf_event 7, raw_tracepoint 17, raw_tracepoint_writable 24, tracing 26, struct_ops 27,
/// ext 28, lsm 29. `bpfns-sys` checks these numbers against the UAPI's.
pub const TRACING_PROGS: TypeSet = TypeSet::only(
    1 << 2 | 1 << 5 | 1 << 7 | 1 << 17 | 1 << 24 | 1 << 26 | 1 << 27 | 1 << 28 | 1 << 29,
);

/// One of a [`Policy`]'s four sets, by its bpffs option's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// bpf() commands (`delegate_cmds`).
    Cmds,
    /// Map types (`delegate_maps`).
    Maps,
    /// Program types (`delegate_progs`).
    Progs,
    /// Attach types (`delegate_attachs`).
    Attachs,
}

impl Field {
    /// The four, in bpffs's order.
    pub const ALL: [Field; 4] = [Field::Cmds, Field::Maps, Field::Progs, Field::Attachs];

    /// `cmds`, `maps`, `progs` or `attachs`.
    pub fn name(self) -> &'static str {
        match self {
            Field::Cmds => "cmds",
            Field::Maps => "maps",
            Field::Progs => "progs",
            Field::Attachs => "attachs",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the members of one namespace may do with bpf(); see the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "Wire")]
pub struct Policy {
    /// The bpf() commands members may call.
    pub cmds: TypeSet,
    /// The map types members may create.
    pub maps: TypeSet,
    /// The program types members may load.
    pub progs: TypeSet,
    /// The attach types members may load for (`expected_attach_type`) and attach with.
    pub attachs: TypeSet,
}

/// The name the policy had when it was one switch; the same type.
pub type ProgramPolicy = Policy;

impl Default for Policy {
    fn default() -> Self {
        Policy::DEFAULT
    }
}

impl Policy {
    /// What a new namespace gets unless asked otherwise: everything but tracing-class
    /// programs.
    pub const DEFAULT: Policy = Policy {
        cmds: TypeSet::ANY,
        maps: TypeSet::ANY,
        progs: TypeSet::all_but(TRACING_PROGS.bits),
        attachs: TypeSet::ANY,
    };

    /// The root's: the host does what the kernel lets it.
    pub const HOST: Policy = Policy {
        cmds: TypeSet::ANY,
        maps: TypeSet::ANY,
        progs: TypeSet::ANY,
        attachs: TypeSet::ANY,
    };

    /// The default, with tracing-class programs if `allow` (the old one-switch policy).
    pub fn tracing(allow: bool) -> Policy {
        if allow {
            Policy::DEFAULT.with_tracing()
        } else {
            Policy::DEFAULT
        }
    }

    /// This policy with the tracing-class program types added.
    pub fn with_tracing(mut self) -> Policy {
        self.progs = self.progs.union(TRACING_PROGS);
        self
    }

    /// Whether members may load every tracing-class program type (and so, where the kernel
    /// answers their loads itself, have perfmon power).
    pub fn allows_tracing(&self) -> bool {
        TRACING_PROGS.is_within(self.progs)
    }

    /// Whether members may load some tracing-class program type: they are then trusted with
    /// kernel memory, and the kernel answers their loads with their own credentials.
    pub fn allows_some_tracing(&self) -> bool {
        self.progs.intersect(TRACING_PROGS) != TypeSet::NONE
    }

    /// One of the four sets.
    pub fn get(&self, f: Field) -> TypeSet {
        match f {
            Field::Cmds => self.cmds,
            Field::Maps => self.maps,
            Field::Progs => self.progs,
            Field::Attachs => self.attachs,
        }
    }

    /// Sets one of the four sets.
    pub fn set(&mut self, f: Field, s: TypeSet) {
        match f {
            Field::Cmds => self.cmds = s,
            Field::Maps => self.maps = s,
            Field::Progs => self.progs = s,
            Field::Attachs => self.attachs = s,
        }
    }

    /// What both allow: the effective policy of a namespace is its own intersected with
    /// every ancestor's.
    pub fn intersect(&self, o: &Policy) -> Policy {
        Policy {
            cmds: self.cmds.intersect(o.cmds),
            maps: self.maps.intersect(o.maps),
            progs: self.progs.intersect(o.progs),
            attachs: self.attachs.intersect(o.attachs),
        }
    }

    /// Whether this policy allows nothing that `outer` does not.
    pub fn is_within(self, outer: Policy) -> bool {
        self.wider_fields(&outer).is_empty()
    }

    /// The fields in which this policy allows something `outer` does not.
    pub fn wider_fields(&self, outer: &Policy) -> Vec<Field> {
        Field::ALL
            .into_iter()
            .filter(|&f| !self.get(f).is_within(outer.get(f)))
            .collect()
    }

    /// Whether this is [`Policy::DEFAULT`] (for `skip_serializing_if`).
    pub fn is_default(&self) -> bool {
        *self == Self::DEFAULT
    }
}

impl fmt::Display for TypeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (co, list) = self.listed();
        let nums = list
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        match (co, list.is_empty()) {
            (true, true) => f.write_str("any"),
            (true, false) => write!(f, "any but {nums}"),
            (false, true) => f.write_str("none"),
            (false, false) => f.write_str(&nums),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Policy::DEFAULT {
            return f.write_str("the default policy (no tracing programs)");
        }
        if *self == Policy::tracing(true) || *self == Policy::HOST {
            return f.write_str("tracing programs allowed");
        }
        write!(
            f,
            "cmds {}; maps {}; progs {}; attachs {} (kernel numbers)",
            self.cmds, self.maps, self.progs, self.attachs
        )
    }
}

/// A set as stored and sent: `"any"`, `{"only": [numbers]}` or `{"all_but": [numbers]}`.
/// Read by hand: serde's `untagged` buffers each set and tries every form in turn, most of
/// what reading a 10 000-namespace listing took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
enum WireSet {
    Any(AnyWord),
    Only { only: Vec<u32> },
    AllBut { all_but: Vec<u32> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum AnyWord {
    Any,
}

impl<'de> Deserialize<'de> for WireSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = WireSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""any", {"only": [numbers]} or {"all_but": [numbers]}"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<WireSet, E> {
                match v {
                    "any" => Ok(WireSet::Any(AnyWord::Any)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<WireSet, A::Error> {
                let (mut only, mut all_but) = (None, None);
                while let Some(key) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "only" => only = Some(m.next_value::<Vec<u32>>()?),
                        "all_but" => all_but = Some(m.next_value::<Vec<u32>>()?),
                        // Fields of a newer writer are skipped, as for any struct here.
                        _ => {
                            m.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                // `only` wins where both are given, as the form tried first did.
                match (only, all_but) {
                    (Some(only), _) => Ok(WireSet::Only { only }),
                    (None, Some(all_but)) => Ok(WireSet::AllBut { all_but }),
                    (None, None) => Err(serde::de::Error::invalid_value(
                        serde::de::Unexpected::Map,
                        &self,
                    )),
                }
            }
        }
        d.deserialize_any(Visit)
    }
}

impl From<TypeSet> for WireSet {
    fn from(s: TypeSet) -> Self {
        match s.listed() {
            (true, l) if l.is_empty() => WireSet::Any(AnyWord::Any),
            (true, all_but) => WireSet::AllBut { all_but },
            (false, only) => WireSet::Only { only },
        }
    }
}

impl From<WireSet> for TypeSet {
    fn from(w: WireSet) -> Self {
        match w {
            WireSet::Any(_) => TypeSet::ANY,
            WireSet::Only { only } => TypeSet::of(only),
            WireSet::AllBut { all_but } => TypeSet::of(all_but).complement(),
        }
    }
}

/// A policy as stored and sent. `allow_tracing` alone is the old one-switch form (registry
/// rows and requests written before the four sets existed read as it meant); written next to
/// the sets for readers that know only it, and ignored when `progs` is given.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Wire {
    #[serde(default)]
    allow_tracing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cmds: Option<WireSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    maps: Option<WireSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    progs: Option<WireSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attachs: Option<WireSet>,
}

impl Serialize for Policy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Most namespaces have the default policy: its sets are listed once, not for every
        // namespace of a listing.
        static DEFAULT: std::sync::LazyLock<Wire> =
            std::sync::LazyLock::new(|| Wire::from(Policy::DEFAULT));
        if *self == Policy::DEFAULT {
            DEFAULT.serialize(s)
        } else {
            Wire::from(*self).serialize(s)
        }
    }
}

impl From<Wire> for Policy {
    fn from(w: Wire) -> Self {
        let base = Policy::tracing(w.allow_tracing);
        let pick = |s: Option<WireSet>, d: TypeSet| s.map(TypeSet::from).unwrap_or(d);
        Policy {
            cmds: pick(w.cmds, base.cmds),
            maps: pick(w.maps, base.maps),
            progs: pick(w.progs, base.progs),
            attachs: pick(w.attachs, base.attachs),
        }
    }
}

impl From<Policy> for Wire {
    fn from(p: Policy) -> Self {
        Wire {
            allow_tracing: p.allows_tracing(),
            cmds: Some(p.cmds.into()),
            maps: Some(p.maps.into()),
            progs: Some(p.progs.into()),
            attachs: Some(p.attachs.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing_only() {
        let (deny, allow) = (Policy::DEFAULT, Policy::HOST);
        assert!(deny.is_within(deny));
        assert!(deny.is_within(allow));
        assert!(allow.is_within(allow));
        assert!(!allow.is_within(deny));
        assert_eq!(allow.wider_fields(&deny), vec![Field::Progs]);
        let mut sock = Policy::DEFAULT;
        sock.progs = TypeSet::of([1]);
        assert!(sock.is_within(deny));
        assert!(!deny.is_within(sock));
        let mut no_hash = Policy::DEFAULT;
        no_hash.maps = TypeSet::ANY.minus(TypeSet::of([1]));
        assert!(no_hash.is_within(deny));
        assert!(!Policy::DEFAULT.is_within(no_hash));
        assert_eq!(Policy::DEFAULT.wider_fields(&no_hash), vec![Field::Maps]);
        // The intersection is within both, and the widest such policy.
        let both = sock.intersect(&no_hash);
        assert!(both.is_within(sock) && both.is_within(no_hash));
        assert_eq!(both.progs, TypeSet::of([1]));
        assert!(!both.maps.contains(1) && both.maps.contains(2));
    }

    #[test]
    fn set_algebra() {
        let a = TypeSet::of([1, 2, 3]);
        let b = TypeSet::of([3, 4]);
        let not_b = b.complement();
        assert_eq!(a.intersect(b), TypeSet::of([3]));
        assert_eq!(a.union(b), TypeSet::of([1, 2, 3, 4]));
        assert_eq!(a.minus(b), TypeSet::of([1, 2]));
        assert_eq!(a.intersect(not_b), TypeSet::of([1, 2]));
        assert_eq!(
            not_b.intersect(a.complement()),
            TypeSet::of([1, 2, 3, 4]).complement()
        );
        for n in 0..200 {
            assert!(TypeSet::ANY.contains(n));
            assert!(!TypeSet::NONE.contains(n));
            assert_eq!(not_b.contains(n), n != 3 && n != 4, "{n}");
            assert_eq!(a.union(not_b).contains(n), n != 4);
        }
        assert!(TypeSet::NONE.is_within(a));
        assert!(a.is_within(TypeSet::ANY));
        assert!(!TypeSet::ANY.is_within(TypeSet::all_but(1 << 60)));
        assert_eq!(TypeSet::ANY.mask64(), u64::MAX);
        assert_eq!(a.mask64(), 0b1110);
        assert_eq!(not_b.mask64(), !0b11000);
        assert_eq!(TypeSet::ANY.to_string(), "any");
        assert_eq!(a.to_string(), "1,2,3");
        assert_eq!(not_b.to_string(), "any but 3,4");
    }

    #[test]
    fn tracing_is_a_shorthand() {
        assert!(!Policy::DEFAULT.allows_tracing());
        assert!(Policy::tracing(true).allows_tracing());
        assert_eq!(Policy::tracing(true), Policy::HOST);
        assert_eq!(Policy::tracing(false), Policy::DEFAULT);
        for t in [2, 5, 7, 17, 24, 26, 27, 28, 29] {
            assert!(!Policy::DEFAULT.progs.contains(t), "{t}");
        }
        for t in [1, 3, 6, 8, 31, 32, 40] {
            assert!(Policy::DEFAULT.progs.contains(t), "{t}");
        }
        let mut sock = Policy::DEFAULT;
        sock.progs = TypeSet::of([1]);
        assert!(sock.with_tracing().progs.contains(2));
        assert!(!sock.with_tracing().progs.contains(6));
    }

    #[test]
    fn old_forms_read_as_they_meant() {
        let p: Policy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, Policy::DEFAULT);
        assert!(p.is_default());
        let p: Policy = serde_json::from_str(r#"{"allow_tracing":false}"#).unwrap();
        assert_eq!(p, Policy::DEFAULT);
        let p: Policy = serde_json::from_str(r#"{"allow_tracing":true}"#).unwrap();
        assert_eq!(p, Policy::tracing(true));
        assert!(p.allows_tracing());
    }

    #[test]
    fn round_trips() {
        let mut p = Policy::DEFAULT;
        p.cmds = TypeSet::ANY.minus(TypeSet::of([0]));
        p.maps = TypeSet::of([2]);
        p.attachs = TypeSet::NONE;
        let s = serde_json::to_string(&p).unwrap();
        assert!(s.contains(r#""cmds":{"all_but":[0]}"#), "{s}");
        assert!(s.contains(r#""maps":{"only":[2]}"#), "{s}");
        assert!(s.contains(r#""attachs":{"only":[]}"#), "{s}");
        assert!(s.contains(r#""allow_tracing":false"#), "{s}");
        assert_eq!(serde_json::from_str::<Policy>(&s).unwrap(), p);
        for p in [Policy::DEFAULT, Policy::HOST, Policy::tracing(true)] {
            let s = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Policy>(&s).unwrap(), p, "{s}");
        }
        let s = serde_json::to_string(&Policy::HOST).unwrap();
        assert!(s.contains(r#""progs":"any""#), "{s}");
        // `progs` wins over the shorthand.
        let p: Policy =
            serde_json::from_str(r#"{"allow_tracing":true,"progs":{"only":[1]}}"#).unwrap();
        assert_eq!(p.progs, TypeSet::of([1]));
        assert!(serde_json::from_str::<Policy>(r#"{"progs":"all"}"#).is_err());
        for bad in [
            r#"{"progs":{}}"#,
            r#"{"progs":[1]}"#,
            r#"{"progs":{"only":"any"}}"#,
        ] {
            assert!(serde_json::from_str::<Policy>(bad).is_err(), "{bad}");
        }
        // A newer writer's fields beside a set are skipped; `only` wins over `all_but`.
        let p: Policy =
            serde_json::from_str(r#"{"maps":{"all_but":[2],"x":{"y":[]},"only":[1]}}"#).unwrap();
        assert_eq!(p.maps, TypeSet::of([1]));
    }
}
