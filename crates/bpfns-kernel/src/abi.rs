//! Rust mirrors of the layouts in `bpf/bpfns.h`, with byte conversions for map access.

use bpfns_model::{NsId, ObjectKind};

/// `struct task_tag`: a task's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskTag {
    pub ns: u32,
    pub flags: u32,
}

/// `BPFNS_TASK_DOOMED`: the task shares its fd table with a namespace task and is stopped.
pub const TASK_DOOMED: u32 = 1;

impl TaskTag {
    pub fn new(ns: NsId) -> Self {
        Self { ns: ns.0, flags: 0 }
    }
    pub fn to_bytes(self) -> [u8; 8] {
        pair(self.ns, self.flags)
    }
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let (ns, flags) = unpair(b)?;
        Some(Self { ns, flags })
    }
}

/// `struct obj_key`.
pub fn obj_key(kind: ObjectKind, id: u32) -> [u8; 8] {
    pair(kind.code(), id)
}

/// Decode an `obj_key`.
pub fn parse_obj_key(b: &[u8]) -> Option<(ObjectKind, u32)> {
    let (k, id) = unpair(b)?;
    Some((ObjectKind::from_code(k)?, id))
}

/// `struct obj_owner`.
pub fn obj_owner(ns: NsId) -> [u8; 8] {
    pair(ns.0, 0)
}

/// Decode an `obj_owner`.
pub fn parse_obj_owner(b: &[u8]) -> Option<NsId> {
    unpair(b).map(|(ns, _)| NsId(ns))
}

/// `BPFNS_DEPTH_MASK`: the depth bits of `ns_info.depth`; the bits above are policy flags.
pub const DEPTH_MASK: u32 = 0xff;
/// `BPFNS_NS_ALLOW_TRACING`: members may load tracing-class programs.
pub const NS_ALLOW_TRACING: u32 = 1 << 8;

/// `struct ns_info`: parent and depth (with policy flags) of a namespace.
pub fn ns_info(parent: NsId, depth: u32) -> [u8; 8] {
    pair(parent.0, depth)
}

/// Decode an `ns_info`.
pub fn parse_ns_info(b: &[u8]) -> Option<(NsId, u32)> {
    unpair(b).map(|(p, d)| (NsId(p), d))
}

/// Size of `struct obj_record`, one record of the listing iterators.
pub const OBJ_RECORD_SIZE: usize = 40;

/// `struct obj_record` as decoded from an iterator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub kind: ObjectKind,
    pub id: u32,
    pub owner: NsId,
    pub type_code: u32,
    pub extra: u32,
    pub name: String,
}

impl RawRecord {
    /// Decode one record; `None` if the kind code is unknown.
    pub fn parse(b: &[u8; OBJ_RECORD_SIZE]) -> Option<Self> {
        let u = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let name = &b[24..40];
        let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
        Some(Self {
            kind: ObjectKind::from_code(u(0))?,
            id: u(4),
            owner: NsId(u(8)),
            type_code: u(12),
            extra: u(16),
            name: String::from_utf8_lossy(&name[..end]).into_owned(),
        })
    }
}

/// `struct task_record`: a tagged task, from the task iterator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TaskRecord {
    pub tid: i32,
    pub tgid: i32,
    pub ns: NsId,
    pub flags: u32,
}

impl TaskRecord {
    pub const SIZE: usize = 16;
    pub fn parse(b: &[u8]) -> Option<Self> {
        let (tid, tgid) = unpair(b.get(..8)?)?;
        let (ns, flags) = unpair(b.get(8..16)?)?;
        Some(Self {
            tid: tid as i32,
            tgid: tgid as i32,
            ns: NsId(ns),
            flags,
        })
    }
}

/// `struct violation`, an event from the backstop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub pid: u32,
    pub tid: u32,
    pub ns: u32,
    pub cmd: u32,
    pub kind: u32,
    pub id: u32,
    pub owner: u32,
    pub reason: u32,
}

impl Violation {
    pub const SIZE: usize = 32;
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < Self::SIZE {
            return None;
        }
        let u = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(Self {
            pid: u(0),
            tid: u(4),
            ns: u(8),
            cmd: u(12),
            kind: u(16),
            id: u(20),
            owner: u(24),
            reason: u(28),
        })
    }
}

/// Indices of the `stats` per-CPU array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Recorded = 0,
    Killed = 1,
    Doomed = 2,
    TagFailed = 3,
    Full = 4,
}

impl Stat {
    pub const ALL: [Stat; 5] = [
        Stat::Recorded,
        Stat::Killed,
        Stat::Doomed,
        Stat::TagFailed,
        Stat::Full,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Stat::Recorded => "ownership_recorded",
            Stat::Killed => "tasks_stopped",
            Stat::Doomed => "shared_fd_table_children_stopped",
            Stat::TagFailed => "fork_tag_failures",
            Stat::Full => "ownership_map_full",
        }
    }
}

fn pair(a: u32, b: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&a.to_ne_bytes());
    out[4..].copy_from_slice(&b.to_ne_bytes());
    out
}

fn unpair(b: &[u8]) -> Option<(u32, u32)> {
    if b.len() < 8 {
        return None;
    }
    Some((
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_round_trip() {
        let t = TaskTag { ns: 7, flags: 1 };
        assert_eq!(TaskTag::from_bytes(&t.to_bytes()), Some(t));
        assert_eq!(TaskTag::from_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn record_parse() {
        let mut b = [0u8; OBJ_RECORD_SIZE];
        b[0..4].copy_from_slice(&2u32.to_ne_bytes());
        b[4..8].copy_from_slice(&42u32.to_ne_bytes());
        b[8..12].copy_from_slice(&3u32.to_ne_bytes());
        b[12..16].copy_from_slice(&1u32.to_ne_bytes());
        b[24..28].copy_from_slice(b"abcd");
        let r = RawRecord::parse(&b).unwrap();
        assert_eq!(r.kind, ObjectKind::Map);
        assert_eq!((r.id, r.owner, r.type_code), (42, NsId(3), 1));
        assert_eq!(r.name, "abcd");
        b[0..4].copy_from_slice(&9u32.to_ne_bytes());
        assert!(RawRecord::parse(&b).is_none());
    }

    #[test]
    fn keys() {
        assert_eq!(
            parse_obj_key(&obj_key(ObjectKind::Btf, 5)),
            Some((ObjectKind::Btf, 5))
        );
        assert_eq!(parse_obj_owner(&obj_owner(NsId(9))), Some(NsId(9)));
        assert_eq!(parse_ns_info(&ns_info(NsId(1), 2)), Some((NsId(1), 2)));
    }
}
