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
/// `BPFNS_TASK_RUNTIME`: container runtime code before its exec; its `CLONE_FILES` children
/// are not stopped. Cleared by the kernel side at exec.
pub const TASK_RUNTIME: u32 = 2;

impl TaskTag {
    pub const SIZE: usize = 8;
    pub fn new(ns: NsId) -> Self {
        Self { ns: ns.0, flags: 0 }
    }
    pub fn with_flags(ns: NsId, flags: u32) -> Self {
        Self { ns: ns.0, flags }
    }
    pub fn to_bytes(self) -> [u8; 8] {
        pair(self.ns, self.flags)
    }
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let (ns, flags) = unpair(b)?;
        Some(Self { ns, flags })
    }
}

/// `struct cgroup_key`: a cgroup of hierarchy `hierarchy` (0: cgroup v2) with kernfs id `id`
/// (its directory's inode number).
pub fn cgroup_key(hierarchy: u32, id: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&hierarchy.to_ne_bytes());
    out[8..].copy_from_slice(&id.to_ne_bytes());
    out
}

/// Decode a `cgroup_key`.
pub fn parse_cgroup_key(b: &[u8]) -> Option<(u32, u64)> {
    let h = u32::from_ne_bytes(b.get(..4)?.try_into().ok()?);
    let id = u64::from_ne_bytes(b.get(8..16)?.try_into().ok()?);
    Some((h, id))
}

/// `struct cgroup_binding`.
pub fn cgroup_binding(ns: NsId) -> [u8; 8] {
    pair(ns.0, 0)
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

/// Decode an `obj_owner`: the owner ([`NsId::QUARANTINE`] for a quarantined object).
pub fn parse_obj_owner(b: &[u8]) -> Option<NsId> {
    unpair(b).map(|(ns, _)| NsId(ns))
}

/// Decode an `obj_owner`: the namespace whose quota counts the record (a quarantined record
/// keeps it in `charged`; otherwise the owner).
pub fn parse_obj_charged(b: &[u8]) -> Option<NsId> {
    unpair(b).map(|(ns, charged)| {
        if NsId(ns) == NsId::QUARANTINE {
            NsId(charged)
        } else {
            NsId(ns)
        }
    })
}

/// `struct obj_owner` of a quarantined object charged to `charged`.
pub fn obj_quarantined(charged: NsId) -> [u8; 8] {
    pair(NsId::QUARANTINE.0, charged.0)
}

/// `BPFNS_DEPTH_MASK`: the depth bits of `ns_info.depth`; the bits above are policy flags.
pub const DEPTH_MASK: u32 = 0xff;
/// `BPFNS_NS_ALLOW_TRACING`: members may load tracing-class programs.
pub const NS_ALLOW_TRACING: u32 = 1 << 8;

/// `struct ns_policy`: what a namespace's policy allows as the backstop checks it (bit n:
/// type n).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsTypes {
    /// Program types.
    pub progs: u64,
    /// Map types.
    pub maps: u64,
    /// Expected attach types of programs (0 is always allowed: every program type without
    /// one has it).
    pub attachs: u64,
}

/// `struct ns_policy`'s bytes.
pub fn ns_policy(t: NsTypes) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&t.progs.to_ne_bytes());
    b[8..16].copy_from_slice(&t.maps.to_ne_bytes());
    b[16..].copy_from_slice(&t.attachs.to_ne_bytes());
    b
}

/// Decode an `ns_policy`.
pub fn parse_ns_policy(b: &[u8]) -> Option<NsTypes> {
    let word = |r: std::ops::Range<usize>| -> Option<u64> {
        Some(u64::from_ne_bytes(b.get(r)?.try_into().ok()?))
    };
    Some(NsTypes {
        progs: word(0..8)?,
        maps: word(8..16)?,
        attachs: word(16..24)?,
    })
}

/// `struct ns_info`: parent and depth (with policy flags) of a namespace.
pub fn ns_info(parent: NsId, depth: u32) -> [u8; 8] {
    pair(parent.0, depth)
}

/// Decode an `ns_info`.
pub fn parse_ns_info(b: &[u8]) -> Option<(NsId, u32)> {
    unpair(b).map(|(p, d)| (NsId(p), d))
}

/// Size of `struct obj_record`, the head of every record of the listing iterators.
pub const OBJ_RECORD_SIZE: usize = 40;
/// Size of `struct map_record`.
pub const MAP_RECORD_SIZE: usize = 64;
/// Size of `struct prog_record`.
pub const PROG_RECORD_SIZE: usize = 144;
/// `BPFNS_PROG_MAP_IDS`: map ids a program's record carries.
pub const PROG_MAP_IDS: usize = 16;

/// `struct map_record` beyond its head: what the kernel knows about a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MapDetails {
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    /// 0: none.
    pub btf_id: u32,
}

/// `struct prog_record` beyond its head: what the kernel knows about a program.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProgDetails {
    pub tag: [u8; 8],
    /// Nanoseconds since boot (`CLOCK_BOOTTIME`) when it was loaded.
    pub load_time_ns: u64,
    pub xlated_len: u32,
    /// 0: not JITed.
    pub jited_len: u32,
    pub uid: u32,
    /// 0: none.
    pub btf_id: u32,
    /// Its memlock, in pages.
    pub pages: u32,
    /// How many maps it uses.
    pub nr_map_ids: u32,
    /// Their ids: from a record, the first [`PROG_MAP_IDS`] only.
    pub map_ids: Vec<u32>,
}

impl ProgDetails {
    /// Whether `map_ids` holds every map id.
    pub fn map_ids_complete(&self) -> bool {
        self.map_ids.len() >= self.nr_map_ids as usize
    }
}

/// What a record says beyond its head.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RecordDetails {
    /// Links, and records of kernel sides that wrote heads only.
    #[default]
    None,
    Map(MapDetails),
    Prog(ProgDetails),
}

/// An object's kind, id and owner, as an iterator's record names them.
pub type ObjectOwner = (ObjectKind, u32, NsId);

/// `struct obj_record` as decoded from an iterator, with what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub kind: ObjectKind,
    pub id: u32,
    pub owner: NsId,
    pub type_code: u32,
    pub extra: u32,
    /// At most 15 bytes: kept inline.
    pub name: compact_str::CompactString,
    pub details: RecordDetails,
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

impl RawRecord {
    /// Decode one record from the start of `b`, and its size; `None` when `b` does not start
    /// with a whole record. The record's kind is `None` when its kind code is unknown.
    pub(crate) fn parse_one(b: &[u8]) -> Option<(Option<Self>, usize)> {
        let (head, size) = Self::whole(b)?;
        let rec = &b[..size];
        let Some(kind) = ObjectKind::from_code(u32_at(head, 0)) else {
            return Some((None, size));
        };
        let name = &head[24..40];
        let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
        let details = match kind {
            ObjectKind::Map if size >= MAP_RECORD_SIZE => RecordDetails::Map(MapDetails {
                key_size: u32_at(rec, 40),
                value_size: u32_at(rec, 44),
                max_entries: u32_at(rec, 48),
                map_flags: u32_at(rec, 52),
                btf_id: u32_at(rec, 56),
            }),
            ObjectKind::Prog if size >= PROG_RECORD_SIZE => {
                let mut tag = [0u8; 8];
                tag.copy_from_slice(&rec[40..48]);
                let mut load_time = [0u8; 8];
                load_time.copy_from_slice(&rec[48..56]);
                let nr_map_ids = u32_at(rec, 76);
                let map_ids = (0..(nr_map_ids as usize).min(PROG_MAP_IDS))
                    .map(|i| u32_at(rec, 80 + 4 * i))
                    .collect();
                RecordDetails::Prog(ProgDetails {
                    tag,
                    load_time_ns: u64::from_ne_bytes(load_time),
                    xlated_len: u32_at(rec, 56),
                    jited_len: u32_at(rec, 60),
                    uid: u32_at(rec, 64),
                    btf_id: u32_at(rec, 68),
                    pages: u32_at(rec, 72),
                    nr_map_ids,
                    map_ids,
                })
            }
            _ => RecordDetails::None,
        };
        Some((
            Some(Self {
                kind,
                id: u32_at(head, 4),
                owner: NsId(u32_at(head, 8)),
                type_code: u32_at(head, 12),
                extra: u32_at(head, 16),
                name: compact_str::CompactString::from_utf8_lossy(&name[..end]),
                details,
            }),
            size,
        ))
    }

    /// The kind, id and owner of the whole record at the start of `b` (`None` for a record of
    /// an unknown kind), and the record's size; `None` when `b` does not start with a whole
    /// record. Nothing is decoded beyond the owner: counting owners, or knowing whose each
    /// object is, needs no names or details.
    pub fn owner_of_one(b: &[u8]) -> Option<(Option<ObjectOwner>, usize)> {
        let (head, size) = Self::whole(b)?;
        let owner = ObjectKind::from_code(u32_at(head, 0))
            .map(|k| (k, u32_at(head, 4), NsId(u32_at(head, 8))));
        Some((owner, size))
    }

    /// The head of the whole record at the start of `b`, and the record's size (kernel sides
    /// before the details wrote the head alone, with 0 as its size).
    fn whole(b: &[u8]) -> Option<(&[u8], usize)> {
        let head = b.get(..OBJ_RECORD_SIZE)?;
        let size = match u32_at(head, 20) as usize {
            0 => OBJ_RECORD_SIZE,
            n if n < OBJ_RECORD_SIZE => return None,
            n => n,
        };
        b.get(..size)?;
        Some((head, size))
    }

    /// Every record an iterator wrote, each as long as its `size` says (records of unknown
    /// kinds are skipped; a truncated tail ends the walk).
    pub fn parse_all(mut b: &[u8]) -> Vec<Self> {
        let mut out = Vec::with_capacity(b.len() / MAP_RECORD_SIZE);
        while let Some((rec, size)) = Self::parse_one(b) {
            out.extend(rec);
            b = &b[size..];
        }
        out
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

/// `struct peer_record`: the credentials the peer of one of the process's unix sockets had
/// when it connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRecord {
    /// Effective capabilities when it connected, relative to `userns`.
    pub cap_effective: u64,
    /// Permitted capabilities when it connected: what it could have raised then.
    pub cap_permitted: u64,
    /// The socket's fd in the asking process.
    pub fd: u32,
    /// The connecting process (as the initial pid namespace numbers it).
    pub pid: u32,
    pub euid: u32,
    pub egid: u32,
    /// Inode of the user namespace it connected from.
    pub userns: u32,
}

impl PeerRecord {
    pub const SIZE: usize = 40;
    pub fn parse(b: &[u8]) -> Option<Self> {
        let (cap_effective, cap_permitted) = unpair64(b.get(..16)?)?;
        let (fd, pid) = unpair(b.get(16..24)?)?;
        let (euid, egid) = unpair(b.get(24..32)?)?;
        let (userns, _) = unpair(b.get(32..40)?)?;
        Some(Self {
            cap_effective,
            cap_permitted,
            fd,
            pid,
            euid,
            egid,
            userns,
        })
    }
}

/// `BPFNS_PEER_QUERIES`: sockets the peer iterator is asked about at once (questions beyond
/// it fail, and their callers are not served).
pub const PEER_QUERIES: u32 = 256;

/// `BPFNS_OWNERSHIP_CAPACITY`: entries of the ownership map (and of the BPF LSM layer's
/// `lsm_objects`).
pub const OWNERSHIP_CAPACITY: u32 = 1 << 20;
/// `BPFNS_NS_CAPACITY`: entries of the namespace table and the per-namespace quota maps.
pub const NS_CAPACITY: u32 = 1 << 16;
/// `BPFNS_CGROUP_CAPACITY`: cgroups bound to namespaces.
pub const CGROUP_CAPACITY: u32 = 1 << 16;
/// What bpfnsd keeps free of the ownership map's capacity when it reserves namespaces' quotas:
/// room for reservations in flight while it resynchronises counters.
pub const OWNERSHIP_SLACK: u32 = 1 << 10;

/// Why the kernel side stopped (or the BPF LSM layer refused) a task: `BPFNS_REASON_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// It obtained an fd of an object its namespace may not see.
    Foreign = 1,
    /// A syscall program, or a tracing-class one its namespace's policy does not allow.
    ProgType = 2,
    /// A new process sharing a namespace task's fd table.
    SharedFiles = 3,
    /// The fd a creation command returned was not the object that call created.
    Hijack = 4,
    /// The new object's ownership record could not be written.
    Unrecorded = 5,
    /// The record would exceed a namespace's `max_objects`.
    Quota = 6,
    /// A program loaded with perfmon power where the namespace's policy denies tracing.
    Perfmon = 7,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::Foreign,
        Reason::ProgType,
        Reason::SharedFiles,
        Reason::Hijack,
        Reason::Unrecorded,
        Reason::Quota,
        Reason::Perfmon,
    ];

    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|r| *r as u32 == code)
    }

    /// Short name, for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Foreign => "foreign",
            Reason::ProgType => "prog_type",
            Reason::SharedFiles => "shared_files",
            Reason::Hijack => "hijack",
            Reason::Unrecorded => "unrecorded",
            Reason::Quota => "quota",
            Reason::Perfmon => "perfmon",
        }
    }

    /// The rule that was broken, in words.
    pub fn rule(self) -> &'static str {
        match self {
            Reason::Foreign => "a namespace task may not hold a file descriptor of an object its namespace cannot see",
            Reason::ProgType => "namespace tasks may not load syscall programs, nor tracing-class programs unless the namespace's policy allows tracing, nor program or map types outside the namespace's policy",
            Reason::SharedFiles => "a new process may not share the file descriptor table of a namespace task",
            Reason::Hijack => "a creation command's result must be the object that call created (another file was put on its descriptor)",
            Reason::Unrecorded => "every object a namespace task creates must be recorded as its namespace's (the ownership table could not take it)",
            Reason::Quota => "a namespace may own at most max_objects objects, and of a kind with a limit (max_maps, max_progs, max_links, max_btf) at most that many, counting its descendants'; one the kernel's tables hold no limit for creates nothing",
            Reason::Perfmon => "where the namespace's policy denies tracing, no program may be loaded with CAP_PERFMON or CAP_SYS_ADMIN (perfmon power lets any program type read kernel memory)",
        }
    }

    /// What fixes it, in words.
    pub fn fix(self) -> &'static str {
        match self {
            Reason::Foreign => "open objects through the namespace's own view (ids it lists, its own bpffs); share objects with SCM_RIGHTS or bpfnsd's get_fd",
            Reason::ProgType => "allow tracing for the namespace (bpfns ns policy PATH --allow-tracing), if its tenants are trusted with kernel memory; never syscall programs",
            Reason::SharedFiles => "do not use clone(CLONE_FILES) without CLONE_THREAD in a namespace",
            Reason::Hijack => "none for honest programs; this is an attempt to take over another namespace's object",
            Reason::Unrecorded => "retry later; bpfnsd collects the records of freed objects (see bpfns status)",
            Reason::Quota => "close objects the namespace no longer needs, or raise its limits (bpfns ns quota PATH --max-objects N, --max-maps N, ...; bpfns ns show PATH says which is full)",
            Reason::Perfmon => "drop CAP_PERFMON and CAP_SYS_ADMIN from the loading process (e.g. setpriv --bounding-set=-perfmon,-sys_admin), or allow tracing for the namespace (bpfns ns policy PATH --allow-tracing)",
        }
    }
}

/// `BPFNS_NOTICE_QUOTA_HIGH`: not a violation; a namespace's records crossed 3/4 of its limit.
pub const NOTICE_QUOTA_HIGH: u32 = 16;
/// `BPFNS_NOTICE_OBJECT_CREATED`: not a violation; a namespace task created an object.
pub const NOTICE_OBJECT_CREATED: u32 = 17;
/// `BPFNS_NOTICE_OBJECT_GONE`: not a violation; BPF LSM dropped a freed object's record.
pub const NOTICE_OBJECT_GONE: u32 = 18;
/// `BPFNS_EVENT_REFUSED`: ORed into a reason when the BPF LSM layer refused the call with
/// EPERM (the task lives).
pub const EVENT_REFUSED: u32 = 1 << 16;

/// `BPFNS_CMD_OPEN`: the command of a BPF LSM refusal of a new fd of a foreign object (its
/// hooks see the object, not the command that asked for the fd).
pub const CMD_OPEN: u32 = u32::MAX;

/// `struct violation`, an event from the kernel side: a stopped or refused task, or a notice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub pid: u32,
    pub tid: u32,
    pub ns: u32,
    pub cmd: u32,
    pub kind: u32,
    pub id: u32,
    pub owner: u32,
    pub reason: u32,
    /// The task's command name (empty in events of older kernel sides).
    pub comm: String,
    /// Object-created notices (`struct object_notice`): the object's name; empty otherwise.
    pub name: String,
}

/// What an event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The backstop stopped the task (SIGKILL) for this reason.
    Stopped(Reason),
    /// The BPF LSM layer refused the call with EPERM for this reason.
    Refused(Reason),
    /// Namespace `ns`'s records reached 3/4 of its limit (`used` of `limit`).
    QuotaHigh { ns: u32, used: u32, limit: u32 },
    /// A task of namespace `ns` (the owner) created object `kind`/`id`; `uid` is its uid.
    ObjectCreated {
        ns: u32,
        kind: u32,
        id: u32,
        uid: u32,
    },
    /// Object `kind`/`id` of namespace `ns` was freed (its record dropped by BPF LSM).
    ObjectGone { ns: u32, kind: u32, id: u32 },
    /// A code this version does not know.
    Unknown(u32),
}

impl Violation {
    /// The size of the events this kernel side writes.
    pub const SIZE: usize = 48;
    /// The smallest event readers accept (the layout before `comm`).
    pub const MIN_SIZE: usize = 32;

    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < Self::MIN_SIZE {
            return None;
        }
        let u = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let text = |c: &[u8]| {
            let end = c.iter().position(|&x| x == 0).unwrap_or(c.len());
            String::from_utf8_lossy(&c[..end]).into_owned()
        };
        let comm = b.get(32..48).map_or_else(String::new, text);
        let name = b.get(48..64).map_or_else(String::new, text);
        Some(Self {
            pid: u(0),
            tid: u(4),
            ns: u(8),
            cmd: u(12),
            kind: u(16),
            id: u(20),
            owner: u(24),
            reason: u(28),
            comm,
            name,
        })
    }

    /// What this event says.
    pub fn event(&self) -> Event {
        if self.reason == NOTICE_OBJECT_CREATED {
            return Event::ObjectCreated {
                ns: self.ns,
                kind: self.kind,
                id: self.id,
                uid: self.owner,
            };
        }
        if self.reason == NOTICE_OBJECT_GONE {
            return Event::ObjectGone {
                ns: self.ns,
                kind: self.kind,
                id: self.id,
            };
        }
        if self.reason == NOTICE_QUOTA_HIGH {
            return Event::QuotaHigh {
                ns: self.ns,
                used: self.id,
                limit: self.owner,
            };
        }
        match Reason::from_code(self.reason & !EVENT_REFUSED) {
            Some(r) if self.reason & EVENT_REFUSED != 0 => Event::Refused(r),
            Some(r) => Event::Stopped(r),
            None => Event::Unknown(self.reason),
        }
    }
}

/// `BPFNS_REASONS_*`: indices of the `reasons` per-CPU array.
pub const REASONS_NOTICES: u32 = 0;
pub const REASONS_REFUSED: u32 = 8;

/// `struct ns_kcount`: a namespace's kernel-written record counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct KernelCount {
    pub created: u64,
    pub kfreed: u64,
}

impl KernelCount {
    pub fn parse(b: &[u8]) -> Option<Self> {
        let (created, kfreed) = unpair64(b)?;
        Some(Self { created, kfreed })
    }
}

/// `struct ns_dquota`: a namespace's limit and bpfnsd's counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct DaemonQuota {
    pub limit: u64,
    pub dfreed: u64,
}

impl DaemonQuota {
    pub fn parse(b: &[u8]) -> Option<Self> {
        let (limit, dfreed) = unpair64(b)?;
        Some(Self { limit, dfreed })
    }
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.limit.to_ne_bytes());
        out[8..].copy_from_slice(&self.dfreed.to_ne_bytes());
        out
    }
}

/// Records in use: `created - kfreed - dfreed` in wrapping arithmetic, read as signed (bpfnsd
/// may set `dfreed` so that this equals the records it counted); never below 0.
pub fn records_in_use(k: KernelCount, dfreed: u64) -> u64 {
    records_counted(k.created, k.kfreed, dfreed).max(0) as u64
}

/// `created - kfreed - dfreed` as the counters say, below 0 too (a count lost upwards).
pub fn records_counted(created: u64, kfreed: u64, dfreed: u64) -> i64 {
    created.wrapping_sub(kfreed).wrapping_sub(dfreed) as i64
}

/// The `dfreed` that makes [`records_in_use`] equal `records`.
pub fn dfreed_for(k: KernelCount, records: u64) -> u64 {
    k.created.wrapping_sub(k.kfreed).wrapping_sub(records)
}

/// `BPFNS_KINDS`: per-kind counters, indexed by [`kind_index`].
pub const KINDS: usize = 4;
/// `BPFNS_NO_LIMIT`: no limit of that kind (only the total).
pub const NO_LIMIT: u64 = u64::MAX;

/// The per-kind index of `kind` (`kind - 1` in `bpfns.h`'s codes).
pub fn kind_index(kind: bpfns_model::ObjectKind) -> usize {
    (kind.code() as usize - 1) % KINDS
}

fn parse_u64s<const N: usize>(b: &[u8]) -> Option<[u64; N]> {
    let mut out = [0u64; N];
    for (i, v) in out.iter_mut().enumerate() {
        *v = u64::from_ne_bytes(b.get(i * 8..i * 8 + 8)?.try_into().ok()?);
    }
    Some(out)
}

/// `struct ns_kind_kcount`: a namespace's kernel-written per-kind counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct KindKernelCount {
    pub created: [u64; KINDS],
    pub kfreed: [u64; KINDS],
}

impl KindKernelCount {
    pub fn parse(b: &[u8]) -> Option<Self> {
        let v: [u64; 8] = parse_u64s(b)?;
        Some(Self {
            created: [v[0], v[1], v[2], v[3]],
            kfreed: [v[4], v[5], v[6], v[7]],
        })
    }
    /// The counters of one kind, as the total's are kept.
    pub fn of(&self, i: usize) -> KernelCount {
        KernelCount {
            created: self.created[i],
            kfreed: self.kfreed[i],
        }
    }
}

/// `struct ns_kind_dquota`: a namespace's per-kind limits ([`NO_LIMIT`]: none) and bpfnsd's
/// per-kind counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KindDaemonQuota {
    pub limit: [u64; KINDS],
    pub dfreed: [u64; KINDS],
}

impl Default for KindDaemonQuota {
    fn default() -> Self {
        Self {
            limit: [NO_LIMIT; KINDS],
            dfreed: [0; KINDS],
        }
    }
}

impl KindDaemonQuota {
    pub fn parse(b: &[u8]) -> Option<Self> {
        let v: [u64; 8] = parse_u64s(b)?;
        Some(Self {
            limit: [v[0], v[1], v[2], v[3]],
            dfreed: [v[4], v[5], v[6], v[7]],
        })
    }
    pub fn to_bytes(self) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (i, v) in self.limit.iter().chain(self.dfreed.iter()).enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
        }
        out
    }
}

fn unpair64(b: &[u8]) -> Option<(u64, u64)> {
    let a = u64::from_ne_bytes(b.get(..8)?.try_into().ok()?);
    let c = u64::from_ne_bytes(b.get(8..16)?.try_into().ok()?);
    Some((a, c))
}

/// Indices of the `stats` per-CPU array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Recorded = 0,
    Killed = 1,
    Doomed = 2,
    TagFailed = 3,
    Full = 4,
    Cgroup = 5,
}

impl Stat {
    pub const ALL: [Stat; 6] = [
        Stat::Recorded,
        Stat::Killed,
        Stat::Doomed,
        Stat::TagFailed,
        Stat::Full,
        Stat::Cgroup,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Stat::Recorded => "ownership_recorded",
            Stat::Killed => "tasks_stopped",
            Stat::Doomed => "shared_fd_table_children_stopped",
            Stat::TagFailed => "fork_tag_failures",
            Stat::Full => "ownership_map_full",
            Stat::Cgroup => "tagged_by_cgroup",
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

    fn head(kind: u32, id: u32, size: u32) -> Vec<u8> {
        let mut b = vec![0u8; OBJ_RECORD_SIZE];
        b[0..4].copy_from_slice(&kind.to_ne_bytes());
        b[4..8].copy_from_slice(&id.to_ne_bytes());
        b[8..12].copy_from_slice(&3u32.to_ne_bytes());
        b[12..16].copy_from_slice(&1u32.to_ne_bytes());
        b[20..24].copy_from_slice(&size.to_ne_bytes());
        b[24..28].copy_from_slice(b"abcd");
        b
    }

    #[test]
    fn record_parse() {
        // A head alone (an older kernel side: size 0), of a known and an unknown kind.
        let mut b = head(2, 42, 0);
        b.extend(head(9, 43, 0));
        b.extend(head(2, 44, 0));
        let r = RawRecord::parse_all(&b);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].kind, ObjectKind::Map);
        assert_eq!((r[0].id, r[0].owner, r[0].type_code), (42, NsId(3), 1));
        assert_eq!(r[0].name, "abcd");
        assert_eq!(r[0].details, RecordDetails::None);
        assert_eq!(r[1].id, 44);
    }

    #[test]
    fn map_and_prog_records_carry_details() {
        let mut m = head(2, 7, MAP_RECORD_SIZE as u32);
        for v in [4u32, 8, 16, 1, 5, 0] {
            m.extend(v.to_ne_bytes());
        }
        assert_eq!(m.len(), MAP_RECORD_SIZE);
        let mut p = head(1, 9, PROG_RECORD_SIZE as u32);
        p.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        p.extend(1_000_000_000u64.to_ne_bytes());
        for v in [16u32, 40, 1000, 6, 1, 17] {
            p.extend(v.to_ne_bytes());
        }
        for i in 0..PROG_MAP_IDS as u32 {
            p.extend((100 + i).to_ne_bytes());
        }
        assert_eq!(p.len(), PROG_RECORD_SIZE);
        let mut b = m.clone();
        b.extend(&p);
        b.extend(&m[..50]); // a truncated tail ends the walk
        let r = RawRecord::parse_all(&b);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0].details,
            RecordDetails::Map(MapDetails {
                key_size: 4,
                value_size: 8,
                max_entries: 16,
                map_flags: 1,
                btf_id: 5
            })
        );
        let RecordDetails::Prog(d) = &r[1].details else {
            panic!("{:?}", r[1]);
        };
        assert_eq!(d.tag, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(d.load_time_ns, 1_000_000_000);
        assert_eq!(
            (d.xlated_len, d.jited_len, d.uid, d.btf_id),
            (16, 40, 1000, 6)
        );
        assert_eq!(d.pages, 1);
        assert_eq!(d.map_ids, (100..116).collect::<Vec<u32>>());
        assert!(!d.map_ids_complete(), "17 maps, 16 carried");
        // A size below the head's is not a record.
        assert!(RawRecord::parse_all(&head(2, 1, 8)).is_empty());
    }

    #[test]
    fn owners_alone_agree_with_whole_records() {
        let mut b = head(2, 42, 0);
        b.extend(head(9, 43, 0));
        let mut m = head(2, 7, MAP_RECORD_SIZE as u32);
        m.resize(MAP_RECORD_SIZE, 0);
        b.extend(&m);
        let mut rest = &b[..];
        let mut owners = Vec::new();
        while let Some((o, size)) = RawRecord::owner_of_one(rest) {
            owners.extend(o);
            rest = &rest[size..];
        }
        let whole: Vec<_> = RawRecord::parse_all(&b)
            .into_iter()
            .map(|r| (r.kind, r.id, r.owner))
            .collect();
        assert_eq!(owners, whole);
        assert_eq!(owners[1], (ObjectKind::Map, 7, NsId(3)));
        // A truncated record or a size below the head's is none.
        assert!(RawRecord::owner_of_one(&m[..50]).is_none());
        assert!(RawRecord::owner_of_one(&head(2, 1, 8)).is_none());
    }

    #[test]
    fn violations_old_and_new_layouts() {
        let mut b = vec![0u8; 48];
        for (i, v) in [7u32, 8, 3, 0, 2, 42, 5, 4].iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b[32..36].copy_from_slice(b"evil");
        let v = Violation::parse(&b).unwrap();
        assert_eq!((v.pid, v.ns, v.id, v.owner), (7, 3, 42, 5));
        assert_eq!(v.comm, "evil");
        assert_eq!(v.event(), Event::Stopped(Reason::Hijack));
        let old = Violation::parse(&b[..32]).unwrap();
        assert_eq!(old.comm, "");
        assert!(Violation::parse(&b[..31]).is_none());
        b[28..32].copy_from_slice(&(6 | EVENT_REFUSED).to_ne_bytes());
        assert_eq!(
            Violation::parse(&b).unwrap().event(),
            Event::Refused(Reason::Quota)
        );
        b[28..32].copy_from_slice(&NOTICE_QUOTA_HIGH.to_ne_bytes());
        assert_eq!(
            Violation::parse(&b).unwrap().event(),
            Event::QuotaHigh {
                ns: 3,
                used: 42,
                limit: 5
            }
        );
        b[28..32].copy_from_slice(&99u32.to_ne_bytes());
        assert_eq!(Violation::parse(&b).unwrap().event(), Event::Unknown(99));
        // An object_created notice: 64 bytes, the name last.
        b[28..32].copy_from_slice(&NOTICE_OBJECT_CREATED.to_ne_bytes());
        b.resize(64, 0);
        b[48..52].copy_from_slice(b"m_ab");
        let n = Violation::parse(&b).unwrap();
        assert_eq!(n.name, "m_ab");
        assert_eq!(
            n.event(),
            Event::ObjectCreated {
                ns: 3,
                kind: 2,
                id: 42,
                uid: 5
            }
        );
        assert_eq!(Violation::parse(&b[..48]).unwrap().name, "");
        b[28..32].copy_from_slice(&NOTICE_OBJECT_GONE.to_ne_bytes());
        assert_eq!(
            Violation::parse(&b).unwrap().event(),
            Event::ObjectGone {
                ns: 3,
                kind: 2,
                id: 42
            }
        );
    }

    #[test]
    fn quota_arithmetic_wraps() {
        let k = KernelCount {
            created: 10,
            kfreed: 3,
        };
        assert_eq!(records_in_use(k, 2), 5);
        assert_eq!(records_in_use(k, 9), 0, "never below zero");
        // A correction larger than what the kernel counted (records found after an upgrade).
        let d = dfreed_for(KernelCount::default(), 40);
        assert_eq!(records_in_use(KernelCount::default(), d), 40);
        assert_eq!(records_in_use(k, dfreed_for(k, 4)), 4);
        let q = DaemonQuota {
            limit: 1024,
            dfreed: d,
        };
        assert_eq!(DaemonQuota::parse(&q.to_bytes()), Some(q));
        let kq = KindDaemonQuota {
            limit: [1, NO_LIMIT, 3, 4],
            dfreed: [5, 6, 7, u64::MAX - 1],
        };
        assert_eq!(KindDaemonQuota::parse(&kq.to_bytes()), Some(kq));
        assert_eq!(KindDaemonQuota::parse(&[0u8; 63]), None);
        assert_eq!(kind_index(bpfns_model::ObjectKind::Prog), 0);
        assert_eq!(kind_index(bpfns_model::ObjectKind::Btf), 3);
    }

    #[test]
    fn keys() {
        assert_eq!(
            parse_obj_key(&obj_key(ObjectKind::Btf, 5)),
            Some((ObjectKind::Btf, 5))
        );
        assert_eq!(parse_obj_owner(&obj_owner(NsId(9))), Some(NsId(9)));
        assert_eq!(parse_obj_charged(&obj_owner(NsId(9))), Some(NsId(9)));
        let q = obj_quarantined(NsId(9));
        assert_eq!(parse_obj_owner(&q), Some(NsId::QUARANTINE));
        assert_eq!(parse_obj_charged(&q), Some(NsId(9)));
        assert_eq!(parse_ns_info(&ns_info(NsId(1), 2)), Some((NsId(1), 2)));
    }
}
