//! A handle on the pinned kernel side: tag tasks, keep the namespace table, read ownership,
//! list objects with their owners, collect stale records.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Mutex;

use bpfns_model::{quota, NsId, ObjectKind};
use bpfns_sys::bpf::{self as sysbpf};
use compact_str::CompactString;
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle};
use serde::Serialize;

use crate::abi::{self, RawRecord, RecordDetails, Stat, TaskTag};
use crate::doctor::Layer;
use crate::error::{KernelError, Result};
use crate::layout::{PinLayout, LINKS, MAPS, ON_DEMAND, TASK_ITERATORS};
pub use crate::record_log::{RecordChange, RecordLog};

/// One BPF object and its owner namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnedObject {
    pub kind: ObjectKind,
    pub id: u32,
    /// Owner namespace id (0 = root).
    pub owner: NsId,
    /// Map, program or link type, as libbpf names it ("hash", "tracing", ...); empty for BTF.
    #[serde(rename = "type")]
    pub type_name: CompactString,
    /// Object name (maps, progs); for links, the attached program's name.
    pub name: CompactString,
    /// For links: the attached program's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prog_id: Option<u32>,
    /// What the kernel says about it beyond that: maps' and programs' from the listing
    /// itself, links' and BTF objects' once [`fill_details`] asked for them.
    #[serde(skip)]
    pub details: Details,
}

/// What is known about an object beyond its owner, type and name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Details {
    #[default]
    None,
    Map(abi::MapDetails),
    Prog(abi::ProgDetails),
    Link(sysbpf::LinkInfo),
    Btf(sysbpf::BtfInfo),
}

impl Details {
    /// As the protocol names them. `boot_time` is when the machine booted, in seconds since the
    /// epoch ([`boot_time`]): programs' load times are kept since boot.
    pub fn to_proto(&self, boot_time: Option<u64>) -> bpfns_proto::ObjectDetails {
        use sysbpf::LinkAttach as A;
        let nonzero = |v: u32| (v != 0).then_some(v);
        let attach_name = |t: u32| {
            sysbpf::attach_type_name(t).map_or_else(|| format!("type {t}"), str::to_string)
        };
        let mut d = bpfns_proto::ObjectDetails::default();
        match self {
            Details::None => {}
            Details::Map(m) => {
                d.bytes_key = Some(m.key_size);
                d.bytes_value = Some(m.value_size);
                d.max_entries = Some(m.max_entries);
                d.flags = Some(m.map_flags);
                d.btf_id = nonzero(m.btf_id);
            }
            Details::Prog(p) => {
                d.tag = Some(p.tag.iter().map(|b| format!("{b:02x}")).collect());
                d.loaded_at = boot_time.map(|b| b + p.load_time_ns / 1_000_000_000);
                d.uid = Some(p.uid);
                d.bytes_xlated = Some(p.xlated_len);
                d.bytes_jited = nonzero(p.jited_len);
                d.bytes_memlock = Some(u64::from(p.pages) * bpfns_sys::process::page_size() as u64);
                d.map_ids = Some(p.map_ids.clone());
                d.btf_id = nonzero(p.btf_id);
            }
            Details::Link(l) => match &l.attach {
                A::Other => {}
                A::RawTracepoint { tp_name } => d.tp_name = Some(tp_name.clone()),
                A::Tracing {
                    attach_type,
                    target_obj_id,
                    target_btf_id,
                } => {
                    d.attach_type = Some(attach_name(*attach_type));
                    d.target_obj_id = Some(*target_obj_id);
                    d.target_btf_id = Some(*target_btf_id);
                }
                A::Cgroup {
                    cgroup_id,
                    attach_type,
                } => {
                    d.attach_type = Some(attach_name(*attach_type));
                    d.cgroup_id = Some(*cgroup_id);
                }
                A::Iter { target_name } => d.target_name = Some(target_name.clone()),
                A::Netns {
                    netns_ino,
                    attach_type,
                } => {
                    d.attach_type = Some(attach_name(*attach_type));
                    d.netns_ino = Some(*netns_ino);
                }
                A::Xdp { ifindex } => d.ifindex = Some(*ifindex),
                A::StructOps { map_id } => d.map_id = Some(*map_id),
                A::Netfilter {
                    pf,
                    hooknum,
                    priority,
                } => {
                    d.pf = Some(*pf);
                    d.hooknum = Some(*hooknum);
                    d.priority = Some(*priority);
                }
                A::KprobeMulti { count } => d.func_cnt = Some(*count),
                A::UprobeMulti { count, pid } => {
                    d.func_cnt = Some(*count);
                    d.pid = Some(*pid);
                }
                A::PerfEvent { .. } => {}
                A::Tcx {
                    ifindex,
                    attach_type,
                }
                | A::Netkit {
                    ifindex,
                    attach_type,
                } => {
                    d.attach_type = Some(attach_name(*attach_type));
                    d.ifindex = Some(*ifindex);
                }
                A::Sockmap {
                    map_id,
                    attach_type,
                } => {
                    d.attach_type = Some(attach_name(*attach_type));
                    d.map_id = Some(*map_id);
                }
            },
            Details::Btf(b) => {
                d.size = Some(b.size);
                d.kernel = Some(b.kernel);
            }
        }
        d
    }
}

/// When the machine booted, in seconds since the epoch (`btime` in `/proc/stat`), read again
/// at most once a second: `/proc/stat` prints every CPU's and interrupt's counters (most of
/// a program listing's cost when many clients list a few programs), and `btime` moves only
/// when the clock is set.
pub fn boot_time() -> Option<u64> {
    static KEPT: std::sync::Mutex<Option<(std::time::Instant, u64)>> = std::sync::Mutex::new(None);
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, t)) = *kept {
        if at.elapsed() < std::time::Duration::from_secs(1) {
            return Some(t);
        }
    }
    let t = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    *kept = Some((std::time::Instant::now(), t));
    Some(t)
}

/// Complete what a listing could not say cheaply, for `objects` (a few, already filtered:
/// this opens each of them): links' attach points and BTF objects' names and sizes
/// (`BPF_OBJ_GET_INFO_BY_FD`), and every map id of programs using more maps than their
/// listing record holds. Objects freed meanwhile keep what they had.
pub fn fill_details(objects: &mut [OwnedObject]) {
    for o in objects {
        let needs_open = match &o.details {
            Details::Prog(p) => !p.map_ids_complete(),
            Details::None => matches!(o.kind, ObjectKind::Link | ObjectKind::Btf),
            _ => false,
        };
        if !needs_open {
            continue;
        }
        let Ok(fd) = sysbpf::fd_by_id(o.kind, o.id) else {
            continue;
        };
        match (&mut o.details, o.kind) {
            (Details::Prog(p), _) => {
                if let Ok(ids) = sysbpf::prog_map_ids(&fd) {
                    p.nr_map_ids = ids.len() as u32;
                    p.map_ids = ids;
                }
            }
            (d, ObjectKind::Link) => {
                if let Ok(info) = sysbpf::link_info(&fd) {
                    *d = Details::Link(info);
                }
            }
            (d, ObjectKind::Btf) => {
                if let Ok(info) = sysbpf::btf_info(&fd) {
                    o.name = CompactString::from(info.name.as_str());
                    *d = Details::Btf(info);
                }
            }
            _ => {}
        }
    }
}

/// One row of the kernel's namespace table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NsEntry {
    pub id: NsId,
    pub parent: NsId,
    pub depth: u32,
    /// Whether its tasks may load tracing-class programs.
    pub allow_tracing: bool,
}

impl NsEntry {
    /// The entry of namespace `id` from its `ns_info` (`depth` with its policy flags).
    fn of(id: NsId, parent: NsId, depth: u32) -> Self {
        NsEntry {
            id,
            parent,
            depth: depth & abi::DEPTH_MASK,
            allow_tracing: depth & abi::NS_ALLOW_TRACING != 0,
        }
    }
}

/// A namespace's ownership-record quota, as the kernel counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct NsQuota {
    /// Its `max_objects`; `None`: no limit of its own (only its ancestors' and the table's).
    pub limit: Option<u64>,
    /// Records in use: its own objects' and its descendants'.
    pub used: u64,
    /// The counters `used` comes from.
    pub created: u64,
    pub kfreed: u64,
    pub dfreed: u64,
    /// Per kind (indexed by [`abi::kind_index`]: progs, maps, links, BTF): records in use
    /// with its descendants' and its limit of that kind.
    pub kinds: [KindUse; abi::KINDS],
}

impl NsQuota {
    /// Whether the counters say the namespace holds no record at all: in all and of each kind
    /// none exactly (a count gone below 0 does not say so).
    pub fn holds_none(&self) -> bool {
        abi::records_counted(self.created, self.kfreed, self.dfreed) == 0
            && self.kinds.iter().all(|k| k.used == 0)
    }
}

/// A namespace's records of one kind, as the kernel counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct KindUse {
    /// Records of that kind in use: its own objects' and its descendants'.
    pub used: u64,
    /// Its limit of that kind; `None`: only the total (and its ancestors' limits).
    pub limit: Option<u64>,
}

/// An open handle on the pinned maps and iterators.
#[derive(Debug)]
pub struct Kernel {
    layout: PinLayout,
    task_ns: MapHandle,
    obj_owner: MapHandle,
    ns_table: MapHandle,
    stats: MapHandle,
    quota_kernel: MapHandle,
    quota_daemon: MapHandle,
    kquota_kernel: MapHandle,
    kquota_daemon: MapHandle,
    reasons: MapHandle,
    cgroup_ns: MapHandle,
    ns_policy: MapHandle,
    peer_query: MapHandle,
    /// `iter_peer_files`, pinned as a program (a link is made per read).
    peer_files: std::os::fd::OwnedFd,
    /// quota_daemon's id: the key of its copy in [`DAEMON_QUOTAS`] (0: no copy kept).
    quota_daemon_id: u32,
    /// Whether tagging and binding attach the syscall hooks first ([`crate::hooks`]).
    auto_hooks: bool,
}

/// quota_daemon (and kquota_daemon) is read, changed and written back by bpfnsd only: one writer at a time in the
/// process, whichever handle it goes through (the collector, namespace changes and the
/// supervisor's reservations run on different threads, on different [`Kernel`] handles).
static QUOTA_WRITES: Mutex<()> = Mutex::new(());

fn quota_lock() -> std::sync::MutexGuard<'static, ()> {
    QUOTA_WRITES.lock().unwrap_or_else(|e| e.into_inner())
}

/// quota_daemon and kquota_daemon as last read and written since, for listings
/// ([`Kernel::namespace_quotas`]): both are written by bpfnsd only, each write goes through
/// this process under [`QUOTA_WRITES`] and is made here too, so a listing of 10 000
/// namespaces reads only the two maps the kernel writes (each read walks the map's 65 536
/// buckets). Kept by quota_daemon's id (a process may open several kernel sides: tests), and
/// read again after [`DAEMON_QUOTAS_KEPT`]: `bpfns kernel ns-add`/`ns-rm` write behind
/// bpfnsd's back.
static DAEMON_QUOTAS: Mutex<Vec<(u32, DaemonQuotas)>> = Mutex::new(Vec::new());

/// How long a copy in [`DAEMON_QUOTAS`] is used before both maps are read again.
const DAEMON_QUOTAS_KEPT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug)]
struct DaemonQuotas {
    read_at: std::time::Instant,
    total: std::collections::BTreeMap<NsId, abi::DaemonQuota>,
    kinds: std::collections::BTreeMap<NsId, abi::KindDaemonQuota>,
}

/// quota_daemon's and kquota_daemon's entries, each sorted by namespace.
type DaemonQuotaRows = (
    Vec<(NsId, abi::DaemonQuota)>,
    Vec<(NsId, abi::KindDaemonQuota)>,
);

fn daemon_quotas() -> std::sync::MutexGuard<'static, Vec<(u32, DaemonQuotas)>> {
    DAEMON_QUOTAS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why [`Kernel::reserve_record`] refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaRefusal {
    /// Namespace `ns` (the creator's, or one of its ancestors) would exceed its limit.
    Over { ns: NsId, used: u64, limit: u64 },
    /// Namespace `ns` (the creator's, or one of its ancestors) would exceed its limit of
    /// objects of `kind` (`--max-maps` ...).
    KindOver {
        ns: NsId,
        kind: ObjectKind,
        used: u64,
        limit: u64,
    },
    /// Namespace `ns` has no limit in the kernel's quota table (a write failed): nothing is
    /// created until bpfnsd restores it (at its next start).
    NoLimit { ns: NsId },
    /// Namespace `ns` is not in the kernel's namespace table, or its chain of parents does
    /// not reach the root.
    Unknown { ns: NsId },
}

impl std::fmt::Display for QuotaRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuotaRefusal::Over { ns, used, limit } => write!(
                f,
                "namespace {ns} owns {used} objects with its descendants, its limit \
                 (max_objects {limit})"
            ),
            QuotaRefusal::KindOver {
                ns,
                kind,
                used,
                limit,
            } => write!(
                f,
                "namespace {ns} owns {used} {} with its descendants, its limit ({} {limit})",
                kind_plural(*kind),
                kind_flag(*kind)
            ),
            QuotaRefusal::NoLimit { ns } => write!(
                f,
                "namespace {ns} has no limit in the kernel's quota table (fail closed until \
                 bpfnsd restores it at its next start)"
            ),
            QuotaRefusal::Unknown { ns } => write!(
                f,
                "namespace {ns} is not in the kernel's namespace table (fail closed until \
                 bpfnsd restores it at its next start)"
            ),
        }
    }
}

impl QuotaRefusal {
    /// Whether a limit refused it (the creator gets `EDQUOT` where bpfnsd makes the object),
    /// not a namespace missing from the kernel's tables (failing closed).
    pub fn is_over(&self) -> bool {
        matches!(
            self,
            QuotaRefusal::Over { .. } | QuotaRefusal::KindOver { .. }
        )
    }

    /// What a caller whose creation bpfnsd makes is answered: over a limit `EDQUOT`, as a
    /// filesystem says of a quota; a namespace missing from the kernel's tables (failing
    /// closed) is no quota the caller can act on: `EPERM`.
    pub fn errno(&self) -> bpfns_sys::Errno {
        if self.is_over() {
            bpfns_sys::Errno::DQUOT
        } else {
            bpfns_sys::Errno::PERM
        }
    }
}

/// "maps", "programs"...: objects of `kind`, in messages.
pub fn kind_plural(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Prog => "programs",
        ObjectKind::Map => "maps",
        ObjectKind::Link => "links",
        ObjectKind::Btf => "BTF objects",
    }
}

/// The limit of objects of `kind` as `bpfns ns create|quota` and bpfnsd.toml name it.
pub fn kind_flag(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Prog => "max_progs",
        ObjectKind::Map => "max_maps",
        ObjectKind::Link => "max_links",
        ObjectKind::Btf => "max_btf",
    }
}

impl Kernel {
    /// Open the kernel side pinned under `layout`.
    pub fn open(layout: &PinLayout) -> Result<Self> {
        for p in MAPS
            .iter()
            .map(|m| layout.map(m))
            .chain(TASK_ITERATORS.iter().map(|p| layout.prog(p)))
        {
            if !p.exists() {
                return Err(KernelError::NotLoaded {
                    root: layout.root().to_path_buf(),
                    missing: p,
                });
            }
        }
        let open = |name: &str| {
            MapHandle::from_pinned_path(layout.map(name))
                .map_err(KernelError::libbpf(format!("opening pinned map {name}")))
        };
        Ok(Self {
            layout: layout.clone(),
            task_ns: open("task_ns")?,
            obj_owner: open("obj_owner")?,
            ns_table: open("ns_table")?,
            stats: open("stats")?,
            quota_kernel: open("quota_kernel")?,
            quota_daemon: open("quota_daemon")?,
            kquota_kernel: open("kquota_kernel")?,
            kquota_daemon: open("kquota_daemon")?,
            reasons: open("reasons")?,
            cgroup_ns: open("cgroup_ns")?,
            ns_policy: open("ns_policy")?,
            peer_query: open("peer_query")?,
            peer_files: sysbpf::obj_get(&layout.prog("iter_peer_files")).map_err(
                KernelError::sys("opening the pinned program iter_peer_files"),
            )?,
            quota_daemon_id: 0,
            auto_hooks: true,
        }
        .with_quota_daemon_id())
    }

    /// Keyed by quota_daemon's id, a copy of it can be kept ([`DAEMON_QUOTAS`]).
    fn with_quota_daemon_id(mut self) -> Self {
        self.quota_daemon_id =
            sysbpf::fd_id(self.quota_daemon.as_fd(), sysbpf::Kind::Map).unwrap_or(0);
        self
    }

    /// Change the copy of the daemon's quota maps, if one is kept (call with the quota lock,
    /// after the maps were written).
    fn in_daemon_copy(&self, change: impl FnOnce(&mut DaemonQuotas)) {
        if self.quota_daemon_id == 0 {
            return;
        }
        let mut all = daemon_quotas();
        if let Some((_, c)) = all.iter_mut().find(|(id, _)| *id == self.quota_daemon_id) {
            change(c);
        }
    }

    /// Drop the copy of the daemon's quota maps (a write failed: what the maps hold is not
    /// known here any more).
    fn drop_daemon_copy(&self) {
        daemon_quotas().retain(|(id, _)| *id != self.quota_daemon_id);
    }

    /// quota_daemon's and kquota_daemon's entries, each sorted by namespace: from the copy
    /// while it is recent, else read (and kept).
    fn daemon_quota_rows(&self) -> Result<DaemonQuotaRows> {
        if self.quota_daemon_id != 0 {
            let all = daemon_quotas();
            if let Some((_, c)) = all.iter().find(|(id, c)| {
                *id == self.quota_daemon_id && c.read_at.elapsed() < DAEMON_QUOTAS_KEPT
            }) {
                return Ok((
                    c.total.iter().map(|(k, v)| (*k, *v)).collect(),
                    c.kinds.iter().map(|(k, v)| (*k, *v)).collect(),
                ));
            }
        }
        // No write between the read and the copy kept.
        let _w = quota_lock();
        let mut d = Self::by_ns(&self.quota_daemon, 16, "quotas", abi::DaemonQuota::parse)?;
        let mut kd = Self::by_ns(
            &self.kquota_daemon,
            64,
            "per-kind quotas",
            abi::KindDaemonQuota::parse,
        )?;
        d.sort_unstable_by_key(|e| e.0);
        kd.sort_unstable_by_key(|e| e.0);
        if self.quota_daemon_id != 0 {
            let copy = DaemonQuotas {
                read_at: std::time::Instant::now(),
                total: d.iter().copied().collect(),
                kinds: kd.iter().copied().collect(),
            };
            let mut all = daemon_quotas();
            all.retain(|(id, _)| *id != self.quota_daemon_id);
            all.push((self.quota_daemon_id, copy));
        }
        Ok((d, kd))
    }

    /// This handle tags tasks and binds cgroups without attaching the syscall hooks: for a
    /// caller that attaches them itself (the benchmark, which measures with and without).
    pub fn manual_hooks(mut self) -> Self {
        self.auto_hooks = false;
        self
    }

    /// Attach the syscall hooks unless this handle leaves them to its caller; the lock is held
    /// until the caller has written what made them needed.
    fn hooks_for_write(&self) -> Result<Option<crate::hooks::HookLock>> {
        if !self.auto_hooks {
            return Ok(None);
        }
        let lock = crate::hooks::HookLock::take(&self.layout)?;
        crate::hooks::attach_locked(&self.layout, &lock)?;
        Ok(Some(lock))
    }

    /// The syscall hooks (`on_sys_exit`, `on_fork`) attached now: both while some task is
    /// tagged or some cgroup bound, none otherwise once [`relax_hooks`](Self::relax_hooks)
    /// ran.
    pub fn hooks_attached(&self) -> Vec<&'static str> {
        crate::hooks::attached(&self.layout)
    }

    /// Detach the syscall hooks if no task is tagged and no cgroup bound; whether they are
    /// detached now ([`crate::hooks::relax`]).
    pub fn relax_hooks(&self) -> Result<bool> {
        crate::hooks::relax(self)
    }

    pub fn layout(&self) -> &PinLayout {
        &self.layout
    }

    /// The enforcement layers this kernel side runs: the tracepoint backstop whenever it is
    /// loaded, and BPF LSM when that layer's programs are pinned beside it (they are loaded
    /// only where the kernel allows them).
    pub fn layers(&self) -> Vec<Layer> {
        // What is pinned, not what this handle once opened: an unload under a running daemon
        // detaches the programs while the handle's maps stay open.
        if !crate::loader::is_loaded(&self.layout) {
            return Vec::new();
        }
        let mut layers = vec![Layer::TracepointBackstop];
        if crate::lsm::is_active(&self.layout) {
            layers.push(Layer::BpfLsm);
        }
        layers
    }

    /// The counters of every loaded layer, by name: [`Kernel::stats`], then the BPF LSM
    /// layer's when it is loaded.
    pub fn all_stats(&self) -> Result<Vec<(&'static str, u64)>> {
        let mut all = self.stats()?;
        all.extend(self.reason_stats()?);
        if crate::lsm::is_active(&self.layout) {
            all.extend(crate::lsm::counters(&self.layout)?.named());
        }
        Ok(all)
    }

    // ---- tasks ------------------------------------------------------------------------

    /// Put the task named by `pidfd` into namespace `ns`. A process pidfd names the
    /// thread-group leader only; see [`tag_process`](Self::tag_process) for all threads.
    /// New tasks it creates inherit the tag in the kernel.
    pub fn tag(&self, pidfd: BorrowedFd<'_>, ns: NsId) -> Result<()> {
        self.tag_with(pidfd, TaskTag::new(ns))
    }

    /// [`tag`](Self::tag) with flags: [`abi::TASK_RUNTIME`] for a container's init, which is
    /// the runtime's code until it execs.
    ///
    /// The syscall hooks are attached first (and the tag written under their lock): a tagged
    /// task is never left unwatched ([`crate::hooks`]).
    pub fn tag_with(&self, pidfd: BorrowedFd<'_>, tag: TaskTag) -> Result<()> {
        let key = pidfd.as_raw_fd().to_ne_bytes();
        let ns = tag.ns;
        let _hooks = self.hooks_for_write()?;
        self.task_ns
            .update(&key, &tag.to_bytes(), MapFlags::ANY)
            .map_err(KernelError::libbpf(format!(
                "tagging task with namespace {ns}"
            )))
    }

    /// Tag every thread of process `pid` (needs PIDFD_THREAD, Linux 6.9+, for threads other
    /// than the leader; on older kernels only the leader is tagged and an error is returned
    /// if the process has other threads).
    pub fn tag_process(&self, pid: i32, ns: NsId) -> Result<()> {
        let leader = bpfns_sys::process::open_pidfd(pid)
            .map_err(KernelError::sys(format!("opening process {pid}")))?;
        self.tag(leader.as_fd(), ns)?;
        let tids = bpfns_sys::process::thread_ids(pid)
            .map_err(KernelError::sys(format!("listing threads of {pid}")))?;
        for tid in tids.into_iter().filter(|&t| t != pid) {
            match bpfns_sys::process::open_thread_pidfd(tid) {
                Ok(fd) => self.tag(fd.as_fd(), ns)?,
                // The thread exited meanwhile.
                Err(e) if e.errno == bpfns_sys::Errno::SRCH => {}
                Err(e) => return Err(KernelError::sys(format!("opening thread {tid}"))(e)),
            }
        }
        Ok(())
    }

    /// The tag of the task named by `pidfd`; `None` means untagged, i.e. root.
    pub fn task_tag(&self, pidfd: BorrowedFd<'_>) -> Result<Option<TaskTag>> {
        let key = pidfd.as_raw_fd().to_ne_bytes();
        // Through bpfns-sys, which keeps the errno: a task that has exited is ESRCH, which
        // callers tell apart from a failure.
        let v = bpfns_sys::bpf::map_lookup(self.task_ns.as_fd(), &key, abi::TaskTag::SIZE)
            .map_err(KernelError::sys("reading a task's namespace"))?;
        match v {
            None => Ok(None),
            Some(b) => TaskTag::from_bytes(&b)
                .map(Some)
                .ok_or(KernelError::Malformed { what: "task tag" }),
        }
    }

    /// The namespace of the task named by `pidfd` (root when untagged).
    pub fn task_ns(&self, pidfd: BorrowedFd<'_>) -> Result<NsId> {
        Ok(self.task_tag(pidfd)?.map_or(NsId::ROOT, |t| NsId(t.ns)))
    }

    /// The map of task tags (task storage keyed by pidfd), for a task that writes its own
    /// entry: a child bpfnsd makes to create a member's map tags itself the root's with it.
    pub fn task_tag_map(&self) -> BorrowedFd<'_> {
        self.task_ns.as_fd()
    }

    /// Remove a task's tag (it returns to root).
    pub fn untag(&self, pidfd: BorrowedFd<'_>) -> Result<()> {
        let key = pidfd.as_raw_fd().to_ne_bytes();
        match self.task_ns.delete(&key) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(KernelError::libbpf("untagging a task")(e)),
        }
    }

    // ---- cgroup bindings ----------------------------------------------------------------

    /// Bind the cgroup `id` of hierarchy `hierarchy` (0: cgroup v2) to namespace `ns`: the
    /// kernel side tags every untagged task attached to it. A cgroup bound to another namespace
    /// already is left alone: `Ok(Some(that namespace))`. The syscall hooks are attached
    /// first: the kernel side tags tasks that enter the cgroup.
    pub fn bind_cgroup(&self, hierarchy: u32, id: u64, ns: NsId) -> Result<Option<NsId>> {
        let key = abi::cgroup_key(hierarchy, id);
        let _hooks = self.hooks_for_write()?;
        match self
            .cgroup_ns
            .update(&key, &abi::cgroup_binding(ns), MapFlags::NO_EXIST)
        {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::AlreadyExists => {
                let have = self.cgroup_binding(hierarchy, id)?;
                Ok(have.filter(|&h| h != ns))
            }
            Err(e) => Err(KernelError::libbpf(format!(
                "binding cgroup {id} of hierarchy {hierarchy} to namespace {ns}"
            ))(e)),
        }
    }

    /// Replace the binding of a cgroup (one whose namespace is gone).
    pub fn rebind_cgroup(&self, hierarchy: u32, id: u64, ns: NsId) -> Result<()> {
        let key = abi::cgroup_key(hierarchy, id);
        let _hooks = self.hooks_for_write()?;
        self.cgroup_ns
            .update(&key, &abi::cgroup_binding(ns), MapFlags::ANY)
            .map_err(KernelError::libbpf(format!(
                "binding cgroup {id} of hierarchy {hierarchy} to namespace {ns}"
            )))
    }

    /// The namespace a cgroup is bound to.
    pub fn cgroup_binding(&self, hierarchy: u32, id: u64) -> Result<Option<NsId>> {
        let key = abi::cgroup_key(hierarchy, id);
        let v = self
            .cgroup_ns
            .lookup(&key, MapFlags::ANY)
            .map_err(KernelError::libbpf("reading a cgroup binding"))?;
        Ok(
            v.and_then(|b| b.get(..4)?.try_into().ok().map(u32::from_ne_bytes))
                .map(NsId),
        )
    }

    /// Every binding: `(hierarchy, cgroup id, namespace)`.
    pub fn cgroup_bindings(&self) -> Result<Vec<(u32, u64, NsId)>> {
        let mut out = Vec::new();
        for key in self.cgroup_ns.keys() {
            let Some((h, id)) = abi::parse_cgroup_key(&key) else {
                continue;
            };
            if let Some(ns) = self.cgroup_binding(h, id)? {
                out.push((h, id, ns));
            }
        }
        Ok(out)
    }

    /// Drop every binding of namespace `ns` (it is being deleted); how many there were.
    pub fn unbind_cgroups(&self, ns: NsId) -> Result<usize> {
        self.unbind_cgroups_listed(ns).map(|v| v.len())
    }

    /// [`Kernel::unbind_cgroups`], saying which (hierarchy, cgroup id) it dropped: what
    /// [`Kernel::bind_cgroup`] puts back if the deletion goes no further.
    pub fn unbind_cgroups_listed(&self, ns: NsId) -> Result<Vec<(u32, u64)>> {
        let mut dropped = Vec::new();
        for (h, id, owner) in self.cgroup_bindings()? {
            if owner != ns {
                continue;
            }
            match self.cgroup_ns.delete(&abi::cgroup_key(h, id)) {
                Ok(()) => dropped.push((h, id)),
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(e) => return Err(KernelError::libbpf("dropping a cgroup binding")(e)),
            }
        }
        Ok(dropped)
    }

    // ---- namespace table ----------------------------------------------------------------

    /// Record namespace `id` with its parent, so the kernel can decide visibility. Its
    /// members may not load tracing-class programs (see [`set_namespace_policy`](Self::set_namespace_policy)).
    pub fn set_namespace(&self, id: NsId, parent: NsId, depth: u32) -> Result<()> {
        self.set_namespace_policy(id, parent, depth, false)
    }

    /// Record namespace `id`, and whether its members may load tracing-class programs
    /// (kprobes, tracepoints, tracing and iterator programs, LSM, struct_ops, ext): such
    /// programs can read kernel memory and list every BPF object, so it is off by default.
    pub fn set_namespace_policy(
        &self,
        id: NsId,
        parent: NsId,
        depth: u32,
        allow_tracing: bool,
    ) -> Result<()> {
        let flags = if allow_tracing {
            abi::NS_ALLOW_TRACING
        } else {
            0
        };
        self.ns_table
            .update(
                &id.0.to_ne_bytes(),
                &abi::ns_info(parent, (depth & abi::DEPTH_MASK) | flags),
                MapFlags::ANY,
            )
            .map_err(KernelError::libbpf(format!("recording namespace {id}")))
    }

    /// The program and map types namespace `id`'s members may create, as the backstop checks
    /// them (bit n: type n): `None` removes the entry (no restriction but the tracing class,
    /// [`Kernel::set_namespace_policy`]). A member that gets another type past the
    /// supervisor (by rewriting its attr after the supervisor looked) is stopped and the
    /// object quarantined.
    pub fn set_namespace_types(&self, id: NsId, types: Option<abi::NsTypes>) -> Result<()> {
        let key = id.0.to_ne_bytes();
        match types {
            Some(t) => self
                .ns_policy
                .update(&key, &abi::ns_policy(t), MapFlags::ANY)
                .map_err(KernelError::libbpf(format!(
                    "recording the types namespace {id} may create"
                ))),
            None => match self.ns_policy.delete(&key) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(KernelError::libbpf(format!(
                    "removing the types namespace {id} may create"
                ))(e)),
            },
        }
    }

    /// What [`Kernel::set_namespace_types`] recorded for namespace `id`.
    pub fn namespace_types(&self, id: NsId) -> Result<Option<abi::NsTypes>> {
        let v = self
            .ns_policy
            .lookup(&id.0.to_ne_bytes(), MapFlags::ANY)
            .map_err(KernelError::libbpf(format!(
                "reading the types namespace {id} may create"
            )))?;
        Ok(v.as_deref().and_then(abi::parse_ns_policy))
    }

    /// Forget namespace `id` and its quota counters. Objects still owned by it become visible
    /// to root only. (Deleting a namespace first moves its records to the parent, which
    /// counted them already: counts are hierarchical.)
    pub fn remove_namespace(&self, id: NsId) -> Result<()> {
        // Its cgroups first: nothing is tagged into it once it is gone.
        self.unbind_cgroups(id)?;
        self.remove_namespace_entries(id)
    }

    /// [`Kernel::remove_namespace`] for a namespace whose cgroup bindings were dropped
    /// already ([`Kernel::unbind_cgroups_listed`]; reading every binding again is a walk of a
    /// table made for every cgroup).
    pub fn remove_namespace_entries(&self, id: NsId) -> Result<()> {
        let key = id.0.to_ne_bytes();
        let _w = quota_lock();
        for (map, what) in [
            (&self.ns_table, "namespace"),
            (&self.quota_kernel, "quota counters of namespace"),
            (&self.quota_daemon, "quota of namespace"),
            (&self.ns_policy, "types of namespace"),
            (&self.kquota_kernel, "per-kind quota counters of namespace"),
            (&self.kquota_daemon, "per-kind quota of namespace"),
        ] {
            match map.delete(&key) {
                Ok(()) => {}
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(e) => {
                    self.drop_daemon_copy();
                    return Err(KernelError::libbpf(format!("removing {what} {id}"))(e));
                }
            }
        }
        self.in_daemon_copy(|c| {
            c.total.remove(&id);
            c.kinds.remove(&id);
        });
        Ok(())
    }

    // ---- quotas -------------------------------------------------------------------------

    /// Set namespace `id`'s limit on ownership records (its own and its descendants'):
    /// creating beyond it fails for the creator (refused with EPERM by the BPF LSM layer,
    /// else stopped by the backstop). Keeps bpfnsd's counter.
    pub fn set_namespace_limit(&self, id: NsId, limit: u64) -> Result<()> {
        let _w = quota_lock();
        let mut q = self.daemon_quota(id)?.unwrap_or_default();
        q.limit = limit;
        self.write_daemon_quota(id, q)
    }

    /// Set namespace `id`'s limits per kind (indexed by [`abi::kind_index`]; `None`: no limit
    /// of that kind, only the total): creating beyond one fails as beyond the total does.
    /// Keeps bpfnsd's counters.
    pub fn set_namespace_kind_limits(
        &self,
        id: NsId,
        limits: [Option<u64>; abi::KINDS],
    ) -> Result<()> {
        let _w = quota_lock();
        let mut q = self.kind_daemon_quota(id)?.unwrap_or_default();
        for (l, want) in q.limit.iter_mut().zip(limits) {
            *l = want.unwrap_or(abi::NO_LIMIT);
        }
        self.write_kind_daemon_quota(id, q)
    }

    /// Give namespace `id` the limit `limit` unless it has one (`u64::MAX`: no limit of its
    /// own, only its ancestors' and the table's). The kernel side fails closed: a namespace
    /// without an entry in the quota table creates nothing. Whether it wrote one.
    pub fn ensure_namespace_limit(&self, id: NsId, limit: u64) -> Result<bool> {
        let _w = quota_lock();
        if self.daemon_quota(id)?.is_some() {
            return Ok(false);
        }
        self.write_daemon_quota(id, abi::DaemonQuota { limit, dfreed: 0 })?;
        Ok(true)
    }

    /// Namespace `id`'s quota as the kernel counts it.
    pub fn namespace_quota(&self, id: NsId) -> Result<NsQuota> {
        Ok(Self::quota_of(
            self.kernel_count(id)?,
            self.daemon_quota(id)?,
            self.kind_kernel_count(id)?,
            self.kind_daemon_quota(id)?,
        ))
    }

    /// Every namespace's quota as the kernel counts it ([`Kernel::namespace_quota`] of each
    /// namespace with an entry in the kernel's quota maps), in a few batched reads of the four
    /// maps where the kernel can batch: for listings of many namespaces.
    pub fn namespace_quotas(&self) -> Result<HashMap<NsId, NsQuota>> {
        let mut k = Self::by_ns(
            &self.quota_kernel,
            16,
            "quota counters",
            abi::KernelCount::parse,
        )?;
        let mut kk = Self::by_ns(
            &self.kquota_kernel,
            64,
            "per-kind quota counters",
            abi::KindKernelCount::parse,
        )?;
        let (d, kd) = self.daemon_quota_rows()?;
        // Each sorted by namespace, then merged: one hash insert per namespace, not four.
        k.sort_unstable_by_key(|e| e.0);
        kk.sort_unstable_by_key(|e| e.0);
        let mut ids: Vec<NsId> = (k.iter().map(|e| e.0))
            .chain(d.iter().map(|e| e.0))
            .chain(kk.iter().map(|e| e.0))
            .chain(kd.iter().map(|e| e.0))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        fn take<T: Copy>(rows: &[(NsId, T)], at: &mut usize, id: NsId) -> Option<T> {
            let row = rows.get(*at).filter(|r| r.0 == id)?;
            *at += 1;
            Some(row.1)
        }
        let mut at = [0usize; 4];
        let mut out = HashMap::with_capacity(ids.len());
        for id in ids {
            let q = Self::quota_of(
                take(&k, &mut at[0], id),
                take(&d, &mut at[1], id),
                take(&kk, &mut at[2], id),
                take(&kd, &mut at[3], id),
            );
            out.insert(id, q);
        }
        Ok(out)
    }

    /// The entries of a map keyed by namespace id, parsed by `parse` as they are read (no
    /// copy of each): batched where the kernel can, else one lookup per key.
    fn by_ns<T>(
        map: &MapHandle,
        value_size: usize,
        what: &str,
        parse: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<Vec<(NsId, T)>> {
        let id_of = |k: &[u8]| Some(NsId(u32::from_ne_bytes(k.get(..4)?.try_into().ok()?)));
        let mut out = Vec::new();
        let batched = sysbpf::map_dump_batched(map.as_fd(), 4, value_size, |k, v| {
            if let (Some(id), Some(v)) = (id_of(k), parse(v)) {
                out.push((id, v));
            }
        });
        if batched.is_ok() {
            return Ok(out);
        }
        // Read again key by key (what a failed batch had read included).
        out.clear();
        for key in map.keys() {
            if let Some(v) = map
                .lookup(&key, MapFlags::ANY)
                .map_err(KernelError::libbpf(format!("reading {what}")))?
            {
                if let (Some(id), Some(v)) = (id_of(&key), parse(&v)) {
                    out.push((id, v));
                }
            }
        }
        Ok(out)
    }

    fn quota_of(
        k: Option<abi::KernelCount>,
        d: Option<abi::DaemonQuota>,
        kk: Option<abi::KindKernelCount>,
        kd: Option<abi::KindDaemonQuota>,
    ) -> NsQuota {
        let k = k.unwrap_or_default();
        let dfreed = d.map_or(0, |d| d.dfreed);
        let kk = kk.unwrap_or_default();
        let kd = kd.unwrap_or_default();
        let kinds = std::array::from_fn(|i| KindUse {
            used: abi::records_in_use(kk.of(i), kd.dfreed[i]),
            limit: Some(kd.limit[i]).filter(|l| *l != abi::NO_LIMIT),
        });
        NsQuota {
            // u64::MAX: an entry that only carries bpfnsd's counter.
            limit: d.map(|d| d.limit).filter(|l| *l != u64::MAX),
            used: abi::records_in_use(k, dfreed),
            created: k.created,
            kfreed: k.kfreed,
            dfreed,
            kinds,
        }
    }

    fn kind_kernel_count(&self, id: NsId) -> Result<Option<abi::KindKernelCount>> {
        let v = self
            .kquota_kernel
            .lookup(&id.0.to_ne_bytes(), MapFlags::ANY)
            .map_err(KernelError::libbpf("reading per-kind quota counters"))?;
        v.map(|b| {
            abi::KindKernelCount::parse(&b).ok_or(KernelError::Malformed {
                what: "ns_kind_kcount",
            })
        })
        .transpose()
    }

    fn kind_daemon_quota(&self, id: NsId) -> Result<Option<abi::KindDaemonQuota>> {
        let v = self
            .kquota_daemon
            .lookup(&id.0.to_ne_bytes(), MapFlags::ANY)
            .map_err(KernelError::libbpf("reading a per-kind quota"))?;
        v.map(|b| {
            abi::KindDaemonQuota::parse(&b).ok_or(KernelError::Malformed {
                what: "ns_kind_dquota",
            })
        })
        .transpose()
    }

    fn write_kind_daemon_quota(&self, id: NsId, q: abi::KindDaemonQuota) -> Result<()> {
        match self
            .kquota_daemon
            .update(&id.0.to_ne_bytes(), &q.to_bytes(), MapFlags::ANY)
        {
            Ok(()) => {
                self.in_daemon_copy(|c| {
                    c.kinds.insert(id, q);
                });
                Ok(())
            }
            Err(e) => {
                self.drop_daemon_copy();
                Err(KernelError::libbpf(format!(
                    "writing the per-kind quota of namespace {id}"
                ))(e))
            }
        }
    }

    fn kernel_count(&self, id: NsId) -> Result<Option<abi::KernelCount>> {
        let v = self
            .quota_kernel
            .lookup(&id.0.to_ne_bytes(), MapFlags::ANY)
            .map_err(KernelError::libbpf("reading quota counters"))?;
        v.map(|b| abi::KernelCount::parse(&b).ok_or(KernelError::Malformed { what: "ns_kcount" }))
            .transpose()
    }

    fn daemon_quota(&self, id: NsId) -> Result<Option<abi::DaemonQuota>> {
        let v = self
            .quota_daemon
            .lookup(&id.0.to_ne_bytes(), MapFlags::ANY)
            .map_err(KernelError::libbpf("reading a quota"))?;
        v.map(|b| abi::DaemonQuota::parse(&b).ok_or(KernelError::Malformed { what: "ns_dquota" }))
            .transpose()
    }

    fn write_daemon_quota(&self, id: NsId, q: abi::DaemonQuota) -> Result<()> {
        match self
            .quota_daemon
            .update(&id.0.to_ne_bytes(), &q.to_bytes(), MapFlags::ANY)
        {
            Ok(()) => {
                self.in_daemon_copy(|c| {
                    c.total.insert(id, q);
                });
                Ok(())
            }
            Err(e) => {
                self.drop_daemon_copy();
                Err(KernelError::libbpf(format!(
                    "writing the quota of namespace {id}"
                ))(e))
            }
        }
    }

    fn parents(&self) -> Result<HashMap<NsId, NsId>> {
        Ok(self
            .namespace_entries()?
            .into_iter()
            .map(|e| (e.id, e.parent))
            .collect())
    }

    /// Count `freed` records of each owner and kind freed by bpfnsd (added to `dfreed`, the
    /// total's and the kind's, of the owner and its ancestors below the root).
    fn add_dfreed(&self, freed: &HashMap<(NsId, ObjectKind), u64>) -> Result<()> {
        if freed.is_empty() {
            return Ok(());
        }
        let parents = self.parents()?;
        let mut per_ns: HashMap<NsId, [u64; abi::KINDS]> = HashMap::new();
        for ((owner, kind), n) in freed {
            for ns in quota::counted_in(&parents, *owner) {
                // A namespace no longer in the table (deleted meanwhile) counts nothing.
                if parents.contains_key(&ns) {
                    per_ns.entry(ns).or_default()[abi::kind_index(*kind)] += n;
                }
            }
        }
        let _w = quota_lock();
        for (ns, by_kind) in per_ns {
            // No entry: a namespace whose limit was never written creates nothing (the kernel
            // side fails closed); an entry made here would lift that.
            let Some(mut q) = self.daemon_quota(ns)? else {
                continue;
            };
            q.dfreed = q.dfreed.wrapping_add(by_kind.iter().sum());
            self.write_daemon_quota(ns, q)?;
            // Per kind, an entry without limits is only counters: made here if missing.
            let mut kq = self.kind_daemon_quota(ns)?.unwrap_or_default();
            for (d, n) in kq.dfreed.iter_mut().zip(by_kind) {
                *d = d.wrapping_add(n);
            }
            self.write_kind_daemon_quota(ns, kq)?;
        }
        Ok(())
    }

    /// Make every namespace's records in use equal the ownership records it (with its
    /// descendants) really has, by setting bpfnsd's counter: after an upgrade from a kernel
    /// side without quotas, a crash between dropping a record and counting it, or a
    /// collection by another process. Namespaces whose kernel counters change meanwhile (a
    /// creation or free in flight) are left as they are. Returns the namespaces corrected.
    pub fn sync_quota_counters(&self) -> Result<Vec<NsId>> {
        let _w = quota_lock();
        let before = self.all_kernel_counts()?;
        let kinds_before = self.all_kind_kernel_counts()?;
        let records = self.records_with_charges()?;
        let after = self.all_kernel_counts()?;
        let kinds_after = self.all_kind_kernel_counts()?;
        let parents = self.parents()?;
        let have = quota::hierarchical_counts(&parents, records.iter().map(|r| r.3));
        let have_kind: Vec<HashMap<NsId, u64>> = ObjectKind::ALL
            .iter()
            .map(|kind| {
                quota::hierarchical_counts(
                    &parents,
                    records.iter().filter(|r| r.0 == *kind).map(|r| r.3),
                )
            })
            .collect();
        let mut fixed = Vec::new();
        for ns in parents.keys().copied() {
            let k = after.get(&ns).copied().unwrap_or_default();
            if before.get(&ns).copied().unwrap_or_default() != k {
                continue;
            }
            let kk = kinds_after.get(&ns).copied().unwrap_or_default();
            if kinds_before.get(&ns).copied().unwrap_or_default() == kk {
                let mut kq = self.kind_daemon_quota(ns)?;
                let mut changed = false;
                for kind in ObjectKind::ALL {
                    let i = abi::kind_index(kind);
                    let want = have_kind[i].get(&ns).copied().unwrap_or(0);
                    let dfreed = kq.map_or(0, |q| q.dfreed[i]);
                    if abi::records_in_use(kk.of(i), dfreed) != want
                        || (kk
                            .of(i)
                            .created
                            .wrapping_sub(kk.of(i).kfreed)
                            .wrapping_sub(dfreed) as i64)
                            < 0
                    {
                        kq.get_or_insert_with(Default::default).dfreed[i] =
                            abi::dfreed_for(kk.of(i), want);
                        changed = true;
                    }
                }
                if let (true, Some(q)) = (changed, kq) {
                    self.write_kind_daemon_quota(ns, q)?;
                    fixed.push(ns);
                }
            }
            let want = have.get(&ns).copied().unwrap_or(0);
            let q = self.daemon_quota(ns)?;
            let dfreed = q.map_or(0, |q| q.dfreed);
            if abi::records_in_use(k, dfreed) == want
                && k.created.wrapping_sub(k.kfreed).wrapping_sub(dfreed) as i64 >= 0
            {
                continue;
            }
            // Without an entry the namespace creates nothing: leave it so.
            let Some(mut q) = q else {
                continue;
            };
            q.dfreed = abi::dfreed_for(k, want);
            self.write_daemon_quota(ns, q)?;
            fixed.push(ns);
        }
        fixed.sort();
        fixed.dedup();
        Ok(fixed)
    }

    fn all_kernel_counts(&self) -> Result<HashMap<NsId, abi::KernelCount>> {
        let mut out = HashMap::new();
        for key in self.quota_kernel.keys() {
            let Ok(id) = <[u8; 4]>::try_from(key.as_slice()) else {
                continue;
            };
            let id = NsId(u32::from_ne_bytes(id));
            if let Some(k) = self.kernel_count(id)? {
                out.insert(id, k);
            }
        }
        Ok(out)
    }

    fn all_kind_kernel_counts(&self) -> Result<HashMap<NsId, abi::KindKernelCount>> {
        let mut out = HashMap::new();
        for key in self.kquota_kernel.keys() {
            let Ok(id) = <[u8; 4]>::try_from(key.as_slice()) else {
                continue;
            };
            let id = NsId(u32::from_ne_bytes(id));
            if let Some(k) = self.kind_kernel_count(id)? {
                out.insert(id, k);
            }
        }
        Ok(out)
    }

    /// `(id, parent, depth)` of every namespace in the kernel's table.
    pub fn namespaces(&self) -> Result<Vec<(NsId, NsId, u32)>> {
        Ok(self
            .namespace_entries()?
            .into_iter()
            .map(|e| (e.id, e.parent, e.depth))
            .collect())
    }

    /// Every namespace in the kernel's table with its policy, sorted by id: in a few batched
    /// reads where the kernel can batch.
    pub fn namespace_entries(&self) -> Result<Vec<NsEntry>> {
        let mut out = Vec::new();
        let mut malformed = false;
        let batched = sysbpf::map_dump_batched(self.ns_table.as_fd(), 4, 8, |k, v| {
            match (k.try_into().map(u32::from_ne_bytes), abi::parse_ns_info(v)) {
                (Ok(id), Some((parent, depth))) => out.push(NsEntry::of(NsId(id), parent, depth)),
                _ => malformed = true,
            }
        });
        if batched.is_err() {
            // Read again key by key (what a failed batch had read included).
            out.clear();
            malformed = false;
            for key in self.ns_table.keys() {
                let Ok(id) = key.as_slice().try_into().map(u32::from_ne_bytes) else {
                    malformed = true;
                    continue;
                };
                if let Some(v) = self
                    .ns_table
                    .lookup(&key, MapFlags::ANY)
                    .map_err(KernelError::libbpf("reading the namespace table"))?
                {
                    match abi::parse_ns_info(&v) {
                        Some((parent, depth)) => out.push(NsEntry::of(NsId(id), parent, depth)),
                        None => malformed = true,
                    }
                }
            }
        }
        if malformed {
            return Err(KernelError::Malformed { what: "ns info" });
        }
        out.sort_by_key(|e| e.id);
        Ok(out)
    }

    /// Whether the kernel's namespace table holds a namespace other than `except`: its keys
    /// read until one is found (two system calls at most, where reading the table is two per
    /// namespace), no values.
    pub fn holds_namespace_besides(&self, except: NsId) -> Result<bool> {
        let except = except.0.to_ne_bytes();
        let mut key: Option<Vec<u8>> = None;
        loop {
            key = sysbpf::map_next_key(self.ns_table.as_fd(), key.as_deref(), 4)
                .map_err(KernelError::sys("reading the namespace table's keys"))?;
            match &key {
                None => return Ok(false),
                Some(k) if k.as_slice() != except.as_slice() => return Ok(true),
                Some(_) => {}
            }
        }
    }

    // ---- ownership ----------------------------------------------------------------------

    /// The owner of an object (root when there is no record).
    pub fn owner(&self, kind: ObjectKind, id: u32) -> Result<NsId> {
        let v = self
            .obj_owner
            .lookup(&abi::obj_key(kind, id), MapFlags::ANY)
            .map_err(KernelError::libbpf("reading an ownership record"))?;
        Ok(v.and_then(|b| abi::parse_obj_owner(&b))
            .unwrap_or(NsId::ROOT))
    }

    /// Set an object's owner (tests and aids; namespaces' objects move with [`Kernel::reassign`]).
    /// Quota counters are not changed.
    pub fn set_owner(&self, kind: ObjectKind, id: u32, ns: NsId) -> Result<()> {
        self.write_owner(kind, id, ns, MapFlags::ANY).map(drop)
    }

    /// Write (or with `ns` root, delete) a record; `MapFlags::EXIST` only changes an existing
    /// one. Whether it was there to change.
    fn write_owner(&self, kind: ObjectKind, id: u32, ns: NsId, flags: MapFlags) -> Result<bool> {
        let key = abi::obj_key(kind, id);
        // Logged before the write and again after it: a reader that syncs in between (and
        // read the old owner) finds the second note at its next sync and looks again.
        RecordLog::note(kind, id, false);
        let written = if ns == NsId::ROOT {
            match self.obj_owner.delete(&key) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(KernelError::libbpf("deleting an ownership record")(e)),
            }
        } else {
            match self.obj_owner.update(&key, &abi::obj_owner(ns), flags) {
                Ok(()) => Ok(true),
                Err(e)
                    if flags == MapFlags::EXIST && e.kind() == libbpf_rs::ErrorKind::NotFound =>
                {
                    Ok(false)
                }
                Err(e) => Err(KernelError::libbpf("writing an ownership record")(e)),
            }
        };
        RecordLog::note(kind, id, false);
        written
    }

    /// Every ownership record: `(kind, id, owner)` ([`NsId::QUARANTINE`] for a quarantined
    /// object).
    pub fn ownership_records(&self) -> Result<Vec<(ObjectKind, u32, NsId)>> {
        Ok(self
            .records_with_charges()?
            .into_iter()
            .map(|(kind, id, owner, _)| (kind, id, owner))
            .collect())
    }

    /// Every ownership record: `(kind, id, owner, the namespace its quota counts it in)`.
    fn records_with_charges(&self) -> Result<Vec<(ObjectKind, u32, NsId, NsId)>> {
        let parse = |k: &[u8], v: &[u8]| {
            let (kind, id) = abi::parse_obj_key(k)?;
            Some((
                kind,
                id,
                abi::parse_obj_owner(v)?,
                abi::parse_obj_charged(v)?,
            ))
        };
        // In batches (a few system calls for the whole table) where the kernel can.
        let mut out = Vec::new();
        let batched = sysbpf::map_dump_batched(self.obj_owner.as_fd(), 8, 8, |k, v| {
            out.extend(parse(k, v));
        });
        if batched.is_ok() {
            out.sort();
            return Ok(out);
        }
        out.clear();
        for key in self.obj_owner.keys() {
            if let Some(v) = self
                .obj_owner
                .lookup(&key, MapFlags::ANY)
                .map_err(KernelError::libbpf("reading ownership records"))?
            {
                if let Some(r) = parse(&key, &v) {
                    out.push(r);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Give the existing record of (kind, id) to `to`: its owner, or for a quarantined object
    /// the namespace it is charged to (it stays quarantined). Whether there was one.
    fn move_record(&self, kind: ObjectKind, id: u32, to: NsId) -> Result<bool> {
        let key = abi::obj_key(kind, id);
        let Some(v) = self
            .obj_owner
            .lookup(&key, MapFlags::ANY)
            .map_err(KernelError::libbpf("reading an ownership record"))?
        else {
            return Ok(false);
        };
        if abi::parse_obj_owner(&v) == Some(NsId::QUARANTINE) {
            RecordLog::note(kind, id, false);
            return match self
                .obj_owner
                .update(&key, &abi::obj_quarantined(to), MapFlags::EXIST)
            {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(KernelError::libbpf("writing an ownership record")(e)),
            };
        }
        self.write_owner(kind, id, to, MapFlags::EXIST)
    }

    // ---- records bpfnsd makes itself ------------------------------------------------------

    /// Reserve one ownership record for namespace `ns` (a program bpfnsd loads on behalf of a
    /// member, on a thread of its own the kernel side does not record): counted in `ns` and
    /// each ancestor below the root *before* it is compared with their limits, as the kernel
    /// side counts its own, so that bpfnsd's reservations and concurrent creations in the
    /// kernel can never together exceed a limit (at worst both are refused). bpfnsd's counter
    /// (`dfreed`) goes down by one: records in use are `created - kfreed - dfreed`, read as
    /// signed. Refused, with every count given back, over a limit, and — failing closed as
    /// the kernel side does — for a namespace the namespace table does not know or that has no
    /// limit in the quota table. Give it back with [`Kernel::release_record`] if the record is
    /// not written; once written, the record is given back as every other one is, when the
    /// collector finds its object freed.
    pub fn reserve_record(
        &self,
        ns: NsId,
        kind: ObjectKind,
    ) -> Result<std::result::Result<(), QuotaRefusal>> {
        let _w = quota_lock();
        let ki = abi::kind_index(kind);
        let mut chain: Vec<(NsId, abi::DaemonQuota, abi::KindDaemonQuota)> = Vec::new();
        let mut cur = ns;
        let mut reached_root = false;
        for _ in 0..=bpfns_model::MAX_DEPTH {
            if cur == NsId::ROOT {
                reached_root = true;
                break;
            }
            let Some(parent) = self.parent_of(cur)? else {
                return Ok(Err(QuotaRefusal::Unknown { ns: cur }));
            };
            let Some(q) = self.daemon_quota(cur)? else {
                return Ok(Err(QuotaRefusal::NoLimit { ns: cur }));
            };
            // No per-kind entry: no limit of that kind; one is made to carry the counter.
            let kq = self.kind_daemon_quota(cur)?.unwrap_or_default();
            chain.push((cur, q, kq));
            cur = parent;
        }
        if !reached_root {
            return Ok(Err(QuotaRefusal::Unknown { ns: cur }));
        }
        // Reserve first (the total and the kind), then compare.
        for (written, (n, q, kq)) in chain.iter().enumerate() {
            let mut r = *q;
            r.dfreed = r.dfreed.wrapping_sub(1);
            let mut kr = *kq;
            kr.dfreed[ki] = kr.dfreed[ki].wrapping_sub(1);
            let done = self
                .write_daemon_quota(*n, r)
                .and_then(|()| self.write_kind_daemon_quota(*n, kr));
            if let Err(e) = done {
                self.give_back(&chain[..=written]);
                return Err(e);
            }
        }
        for (n, q, kq) in &chain {
            let k = self.kernel_count(*n)?.unwrap_or_default();
            let used = k
                .created
                .wrapping_sub(k.kfreed)
                .wrapping_sub(q.dfreed.wrapping_sub(1)) as i64;
            if used > 0 && used as u64 > q.limit {
                self.give_back(&chain);
                return Ok(Err(QuotaRefusal::Over {
                    ns: *n,
                    used: used as u64 - 1,
                    limit: q.limit,
                }));
            }
            if kq.limit[ki] == abi::NO_LIMIT {
                continue;
            }
            let kk = self.kind_kernel_count(*n)?.unwrap_or_default().of(ki);
            let used = kk
                .created
                .wrapping_sub(kk.kfreed)
                .wrapping_sub(kq.dfreed[ki].wrapping_sub(1)) as i64;
            if used > 0 && used as u64 > kq.limit[ki] {
                self.give_back(&chain);
                return Ok(Err(QuotaRefusal::KindOver {
                    ns: *n,
                    kind,
                    used: used as u64 - 1,
                    limit: kq.limit[ki],
                }));
            }
        }
        Ok(Ok(()))
    }

    /// Give back a reservation [`Kernel::reserve_record`] made for an object of `kind` of
    /// `ns` whose record was not written (the load failed, the record could not be written).
    pub fn release_record(&self, ns: NsId, kind: ObjectKind) -> Result<()> {
        let _w = quota_lock();
        let ki = abi::kind_index(kind);
        let mut chain = Vec::new();
        let mut cur = ns;
        for _ in 0..=bpfns_model::MAX_DEPTH {
            if cur == NsId::ROOT {
                break;
            }
            let Some(parent) = self.parent_of(cur)? else {
                break;
            };
            if let Some(q) = self.daemon_quota(cur)? {
                chain.push((cur, q, self.kind_daemon_quota(cur)?));
            }
            cur = parent;
        }
        for (n, mut q, kq) in chain {
            q.dfreed = q.dfreed.wrapping_add(1);
            self.write_daemon_quota(n, q)?;
            if let Some(mut kq) = kq {
                kq.dfreed[ki] = kq.dfreed[ki].wrapping_add(1);
                self.write_kind_daemon_quota(n, kq)?;
            }
        }
        Ok(())
    }

    /// Undo the reservations written for `chain` (best effort: called on a failure path).
    fn give_back(&self, chain: &[(NsId, abi::DaemonQuota, abi::KindDaemonQuota)]) {
        for (n, q, kq) in chain {
            let _ = self.write_daemon_quota(*n, *q);
            let _ = self.write_kind_daemon_quota(*n, *kq);
        }
    }

    /// The parent of `ns` in the kernel's namespace table; `None` if it is not there.
    fn parent_of(&self, ns: NsId) -> Result<Option<NsId>> {
        let v = self
            .ns_table
            .lookup(&ns.0.to_ne_bytes(), MapFlags::ANY)
            .map_err(KernelError::libbpf("reading the namespace table"))?;
        Ok(v.and_then(|b| abi::parse_ns_info(&b)).map(|(p, _)| p))
    }

    /// Write the ownership record of object (kind, id) as `ns`'s unless one exists
    /// (`BPF_NOEXIST`, as the kernel side writes its own). Whether it was written.
    pub fn record_new(&self, kind: ObjectKind, id: u32, ns: NsId) -> Result<bool> {
        // Logged before the write and again after it, as in `write_owner`.
        RecordLog::note(kind, id, false);
        let written = match self.obj_owner.update(
            &abi::obj_key(kind, id),
            &abi::obj_owner(ns),
            MapFlags::NO_EXIST,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(KernelError::libbpf("writing an ownership record")(e)),
        };
        RecordLog::note(kind, id, false);
        written
    }

    /// Move every object owned by `from` to `to`. Returns how many moved. A record dropped
    /// meanwhile (its object freed) is not written again. Quotas: `to` is `from`'s parent
    /// when a namespace is deleted, which counted these records already.
    pub fn reassign(&self, from: NsId, to: NsId) -> Result<usize> {
        self.reassign_records(from, to).map(|moved| moved.len())
    }

    /// [`Kernel::reassign`], returning the objects that moved, so that a caller can put them
    /// back ([`Kernel::restore_owner`]) when what follows fails. On an error midway, the
    /// records moved so far are put back before it returns.
    pub fn reassign_records(&self, from: NsId, to: NsId) -> Result<Vec<(ObjectKind, u32)>> {
        let mut moved = Vec::new();
        for (kind, id, _, charged) in self.records_with_charges()? {
            // A quarantined object charged to `from` stays quarantined, charged to `to`.
            if charged != from {
                continue;
            }
            match self.move_record(kind, id, to) {
                Ok(true) => moved.push((kind, id)),
                Ok(false) => {}
                Err(e) => {
                    let _ = self.restore_owner(&moved, from);
                    return Err(e);
                }
            }
        }
        Ok(moved)
    }

    /// Give `objects` back to `owner` (undoing [`Kernel::reassign_records`]); a record dropped
    /// meanwhile (its object freed) is not written again.
    pub fn restore_owner(&self, objects: &[(ObjectKind, u32)], owner: NsId) -> Result<()> {
        for (kind, id) in objects {
            self.move_record(*kind, *id, owner)?;
        }
        Ok(())
    }

    // ---- listing ------------------------------------------------------------------------

    /// Every tagged task (thread) on the host: its namespace is in the kernel, so this is
    /// how bpfns knows a namespace's members. Untagged tasks (root) are not listed.
    pub fn tagged_tasks(&self) -> Result<Vec<abi::TaskRecord>> {
        Ok(self
            .read_iter_bytes("iter_tasks")?
            .chunks_exact(abi::TaskRecord::SIZE)
            .filter_map(abi::TaskRecord::parse)
            .collect())
    }

    /// The credentials the peer of this process's connected unix socket `sock` had when it
    /// connected (the kernel's `sk_peer_cred` and `sk_peer_pid`): its capabilities then, which
    /// `/proc` no longer tells once it ran another program. `None`: the kernel listed no such
    /// socket. The kernel walks this process's fd table for it (not the host's sockets).
    pub fn peer_credentials(&self, sock: BorrowedFd<'_>) -> Result<Option<abi::PeerRecord>> {
        let fd = sock.as_raw_fd() as u32;
        let pid = std::process::id();
        // This process's fd: asked about by one thread at a time.
        let key = (u64::from(pid) << 32 | u64::from(fd)).to_ne_bytes();
        self.peer_query
            .update(&key, &[1], MapFlags::ANY)
            .map_err(KernelError::libbpf("asking the peer iterator"))?;
        let read = sysbpf::read_task_iter(&self.peer_files, pid);
        let _ = self.peer_query.delete(&key);
        Ok(read
            .map_err(KernelError::sys("reading iter_peer_files"))?
            .chunks_exact(abi::PeerRecord::SIZE)
            .filter_map(abi::PeerRecord::parse)
            .find(|r| r.fd == fd))
    }

    fn read_iter_bytes(&self, link_name: &str) -> Result<Vec<u8>> {
        let path = self.layout.link(link_name);
        let link = Link::open(&path)
            .map_err(KernelError::libbpf(format!("opening {}", path.display())))?;
        let mut iter = libbpf_rs::Iter::new(&link).map_err(KernelError::libbpf(format!(
            "starting iterator {link_name}"
        )))?;
        let mut buf = Vec::with_capacity(64 * 1024);
        iter.read_to_end(&mut buf)
            .map_err(KernelError::io(format!("reading iterator {link_name}")))?;
        Ok(buf)
    }

    /// Read iterator `link_name` through a 64 KiB buffer, handing `each` every whole record
    /// as `decode` makes it: the iterator's output is never held whole (for 100 000 objects
    /// it is megabytes, doubled while a growing buffer is copied).
    pub(crate) fn stream_iter<T>(
        &self,
        link_name: &str,
        decode: impl Fn(&[u8]) -> Option<(Option<T>, usize)>,
        mut each: impl FnMut(T),
    ) -> Result<()> {
        let path = self.layout.link(link_name);
        let link = Link::open(&path)
            .map_err(KernelError::libbpf(format!("opening {}", path.display())))?;
        let mut iter = libbpf_rs::Iter::new(&link).map_err(KernelError::libbpf(format!(
            "starting iterator {link_name}"
        )))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut have = 0;
        loop {
            if have == buf.len() {
                // A record larger than the buffer (never, today): make room.
                buf.resize(buf.len() * 2, 0);
            }
            let n = iter
                .read(&mut buf[have..])
                .map_err(KernelError::io(format!("reading iterator {link_name}")))?;
            have += n;
            let mut at = 0;
            while let Some((rec, size)) = decode(&buf[at..have]) {
                if let Some(rec) = rec {
                    each(rec);
                }
                at += size;
            }
            buf.copy_within(at..have, 0);
            have -= at;
            if n == 0 {
                return Ok(());
            }
        }
    }

    /// Every object of `kind` on the host with its owner.
    ///
    /// Maps, progs and links come from one iterator read each; BTF objects (which have no
    /// iterator) from `BPF_BTF_GET_NEXT_ID` plus the ownership map.
    pub fn list(&self, kind: ObjectKind) -> Result<Vec<OwnedObject>> {
        let Some(link) = iter_link(kind) else {
            return self.list_btf();
        };
        let type_name: fn(u32) -> Option<&'static str> = match kind {
            ObjectKind::Map => sysbpf::map_type_name,
            ObjectKind::Prog => sysbpf::prog_type_name,
            _ => sysbpf::link_type_name,
        };
        let mut out: Vec<OwnedObject> = Vec::new();
        self.stream_iter(link, RawRecord::parse_one, |r| {
            if r.kind != kind {
                return;
            }
            out.push(OwnedObject {
                kind,
                id: r.id,
                owner: r.owner,
                // Known names are static: nothing allocated per object.
                type_name: type_name(r.type_code).map_or_else(
                    || compact_str::format_compact!("type {}", r.type_code),
                    CompactString::const_new,
                ),
                name: r.name,
                prog_id: (kind == ObjectKind::Link).then_some(r.extra),
                details: match r.details {
                    RecordDetails::Map(m) => Details::Map(m),
                    RecordDetails::Prog(p) => Details::Prog(p),
                    RecordDetails::None => Details::None,
                },
            });
        })?;
        out.sort_by_key(|o| o.id);
        Ok(out)
    }

    /// Every object of `kind` and its owner, sorted by id: [`Kernel::list`] without the names
    /// and details (for what needs only whose each object is).
    pub fn owners_by_id(&self, kind: ObjectKind) -> Result<Vec<(u32, NsId)>> {
        let mut out = Vec::new();
        self.each_owner(kind, |id, owner| out.push((id, owner)))?;
        out.sort_unstable_by_key(|&(id, _)| id);
        Ok(out)
    }

    /// Each object of `kind` and its owner, in the iterator's order.
    fn each_owner(&self, kind: ObjectKind, mut each: impl FnMut(u32, NsId)) -> Result<()> {
        let Some(link_name) = iter_link(kind) else {
            // No iterator over BTF objects: their ids, and each one's record.
            for id in sysbpf::all_ids(kind).map_err(KernelError::sys("listing BTF ids"))? {
                each(id, self.owner(kind, id)?);
            }
            return Ok(());
        };
        self.stream_iter(link_name, RawRecord::owner_of_one, |(k, id, owner)| {
            if k == kind {
                each(id, owner);
            }
        })
    }

    fn list_btf(&self) -> Result<Vec<OwnedObject>> {
        let ids = sysbpf::all_ids(ObjectKind::Btf).map_err(KernelError::sys("listing BTF ids"))?;
        ids.into_iter()
            .map(|id| {
                Ok(OwnedObject {
                    kind: ObjectKind::Btf,
                    id,
                    owner: self.owner(ObjectKind::Btf, id)?,
                    type_name: CompactString::default(),
                    name: CompactString::default(),
                    prog_id: None,
                    details: Details::None,
                })
            })
            .collect()
    }

    /// Remove ownership records of objects that no longer exist (the kernel has no free
    /// hook bpfns can use everywhere). Returns how many were removed.
    ///
    /// Records are read before the live set, so a record written meanwhile is never
    /// mistaken for a stale one.
    pub fn collect_garbage(&self) -> Result<usize> {
        self.collect_garbage_listed().map(|v| v.len())
    }

    /// [`Kernel::collect_garbage`], saying which records it dropped: (kind, id, owner).
    pub fn collect_garbage_listed(&self) -> Result<Vec<(ObjectKind, u32, NsId)>> {
        let records = self.records_with_charges()?;
        let mut live: HashSet<(ObjectKind, u32)> = HashSet::new();
        for kind in ObjectKind::ALL {
            if kind == ObjectKind::Btf {
                for id in sysbpf::all_ids(kind).map_err(KernelError::sys("listing BTF ids"))? {
                    live.insert((kind, id));
                }
            } else {
                for o in self.list(kind)? {
                    live.insert((kind, o.id));
                }
            }
        }
        let mut removed = Vec::new();
        let mut freed: HashMap<(NsId, ObjectKind), u64> = HashMap::new();
        let mut result = Ok(());
        for (kind, id, owner, charged) in records {
            // Not in the listing; confirm by id before dropping the record (opening it fails
            // with ENOENT only once the object is gone), so that an object the listing missed
            // never loses its owner. Whoever deletes the record (this, or the BPF LSM layer's
            // free hook) counts it freed in the owner's quota.
            if !live.contains(&(kind, id)) && sysbpf::fd_by_id(kind, id).is_err() {
                match self.write_owner(kind, id, NsId::ROOT, MapFlags::ANY) {
                    Ok(true) => {
                        RecordLog::note(kind, id, true);
                        removed.push((kind, id, owner));
                        *freed.entry((charged, kind)).or_default() += 1;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        // Count what was dropped even when a later step failed.
        self.add_dfreed(&freed)?;
        result.map(|()| removed)
    }

    /// [`Kernel::collect_garbage`] for the records owned by or charged to `ns` only: no walk
    /// of the host's objects (one batched read of the records, then one open by id per record
    /// of `ns`), for a namespace's deletion, which needs only its own records right.
    pub fn collect_garbage_of(&self, ns: NsId) -> Result<usize> {
        self.collect_garbage_of_listed(ns).map(|v| v.len())
    }

    /// [`Kernel::collect_garbage_of`], saying which records it dropped: (kind, id, owner).
    pub fn collect_garbage_of_listed(&self, ns: NsId) -> Result<Vec<(ObjectKind, u32, NsId)>> {
        let mut removed = Vec::new();
        let mut freed: HashMap<(NsId, ObjectKind), u64> = HashMap::new();
        let mut result = Ok(());
        for (kind, id, owner, charged) in self.records_with_charges()? {
            if owner != ns && charged != ns {
                continue;
            }
            // Only ENOENT says the object is gone; any other failure keeps the record.
            let gone =
                matches!(sysbpf::fd_by_id(kind, id), Err(e) if e.errno == bpfns_sys::Errno::NOENT);
            if !gone {
                continue;
            }
            match self.write_owner(kind, id, NsId::ROOT, MapFlags::ANY) {
                Ok(true) => {
                    RecordLog::note(kind, id, true);
                    removed.push((kind, id, owner));
                    *freed.entry((charged, kind)).or_default() += 1;
                }
                Ok(false) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.add_dfreed(&freed)?;
        result.map(|()| removed)
    }

    /// A count that grows whenever the kernel side writes an ownership record (either layer)
    /// or stops a task (which may quarantine a program's record first): read before looking
    /// records up, it tells a reader whether any may have changed since.
    pub fn record_writes(&self) -> Result<u64> {
        // The BPF LSM layer's "recorded" counter (see lsm.rs).
        const LSM_RECORDED: u32 = 6;
        let mut n = 0u64;
        for idx in [Stat::Recorded as u32, Stat::Killed as u32, LSM_RECORDED] {
            let per_cpu = self
                .stats
                .lookup_percpu(&idx.to_ne_bytes(), MapFlags::ANY)
                .map_err(KernelError::libbpf("reading stats"))?
                .unwrap_or_default();
            for v in &per_cpu {
                if let Some(b) = v.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                    n = n.wrapping_add(u64::from_ne_bytes(b));
                }
            }
        }
        Ok(n)
    }

    /// The kernel side's counters, summed over CPUs.
    pub fn stats(&self) -> Result<Vec<(&'static str, u64)>> {
        Stat::ALL
            .iter()
            .map(|s| {
                let key = (*s as u32).to_ne_bytes();
                let per_cpu = self
                    .stats
                    .lookup_percpu(&key, MapFlags::ANY)
                    .map_err(KernelError::libbpf("reading stats"))?
                    .unwrap_or_default();
                let sum = per_cpu
                    .iter()
                    .filter_map(|v| v.get(..8)?.try_into().ok().map(u64::from_ne_bytes))
                    .sum();
                Ok((s.name(), sum))
            })
            .collect()
    }

    /// Stops, BPF LSM refusals and quota notices by reason: `stopped_<reason>`,
    /// `refused_<reason>`, `quota_notices`.
    pub fn reason_stats(&self) -> Result<Vec<(&'static str, u64)>> {
        const STOPPED: [&str; 7] = [
            "stopped_foreign",
            "stopped_prog_type",
            "stopped_shared_files",
            "stopped_hijack",
            "stopped_unrecorded",
            "stopped_quota",
            "stopped_perfmon",
        ];
        const REFUSED: [&str; 7] = [
            "refused_foreign",
            "refused_prog_type",
            "refused_shared_files",
            "refused_hijack",
            "refused_unrecorded",
            "refused_quota",
            "refused_perfmon",
        ];
        let mut out = vec![(
            "quota_notices",
            self.percpu_sum(&self.reasons, abi::REASONS_NOTICES)?,
        )];
        for r in abi::Reason::ALL {
            let i = r as usize - 1;
            out.push((STOPPED[i], self.percpu_sum(&self.reasons, r as u32)?));
        }
        for r in abi::Reason::ALL {
            if matches!(r, abi::Reason::SharedFiles | abi::Reason::Hijack) {
                continue; // the LSM layer never refuses for these
            }
            let i = r as usize - 1;
            out.push((
                REFUSED[i],
                self.percpu_sum(&self.reasons, abi::REASONS_REFUSED + r as u32)?,
            ));
        }
        Ok(out)
    }

    fn percpu_sum(&self, map: &MapHandle, idx: u32) -> Result<u64> {
        let per_cpu = map
            .lookup_percpu(&idx.to_ne_bytes(), MapFlags::ANY)
            .map_err(KernelError::libbpf("reading counters"))?
            .unwrap_or_default();
        Ok(per_cpu
            .iter()
            .filter_map(|v| v.get(..8)?.try_into().ok().map(u64::from_ne_bytes))
            .sum())
    }

    /// The ids of the programs of the kernel side, by link name: the syscall hooks' whether
    /// attached now or not ([`hooks_attached`](Self::hooks_attached)).
    pub fn program_ids(&self) -> Result<Vec<(&'static str, u32)>> {
        let pinned_prog = |name: &'static str| {
            let path = self.layout.prog(name);
            let fd = sysbpf::obj_get(&path)
                .map_err(KernelError::sys(format!("opening {}", path.display())))?;
            let info: sysbpf::bpf_prog_info = sysbpf::info(&fd)
                .map_err(KernelError::sys(format!("info of {}", path.display())))?;
            Ok((name, info.id))
        };
        LINKS
            .iter()
            .map(|name| {
                if ON_DEMAND.contains(name) {
                    return pinned_prog(name);
                }
                Ok((*name, pinned_link_prog_id(&self.layout.link(name))?))
            })
            .chain(TASK_ITERATORS.iter().map(|name| pinned_prog(name)))
            .collect()
    }
}

/// Reads the kernel side's events (the `violations` ring buffer): stopped and refused tasks,
/// quota notices. One reader per kernel side: readers of the same ring buffer share its
/// position, so each event goes to one of them.
pub struct EventReader {
    // Dropped first: it stops using the map before the map's fd goes.
    rb: libbpf_rs::RingBuffer<'static>,
    _map: MapHandle,
    _notices: MapHandle,
}

impl std::fmt::Debug for EventReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReader").finish_non_exhaustive()
    }
}

impl EventReader {
    /// Wait up to `timeout` for events and hand each to the callback.
    pub fn poll(&self, timeout: std::time::Duration) -> Result<()> {
        self.rb
            .poll(timeout)
            .map_err(KernelError::libbpf("reading kernel events"))
    }
}

impl Kernel {
    /// A reader that hands every event to `on_event` (from [`EventReader::poll`]): those of
    /// the `violations` ring buffer and the object-created notices of `object_notices`.
    pub fn event_reader(
        &self,
        on_event: impl FnMut(abi::Violation) + 'static,
    ) -> Result<EventReader> {
        let map = MapHandle::from_pinned_path(self.layout.map("violations"))
            .map_err(KernelError::libbpf("opening pinned map violations"))?;
        let notices = MapHandle::from_pinned_path(self.layout.map("object_notices"))
            .map_err(KernelError::libbpf("opening pinned map object_notices"))?;
        // Both callbacks run on the polling thread, one at a time.
        let on_event = std::rc::Rc::new(std::cell::RefCell::new(on_event));
        let mut b = libbpf_rs::RingBufferBuilder::new();
        for (m, what) in [
            (&map, "reading the violations ring buffer"),
            (&notices, "reading the object_notices ring buffer"),
        ] {
            let on_event = std::rc::Rc::clone(&on_event);
            b.add(m, move |data: &[u8]| {
                if let Some(v) = abi::Violation::parse(data) {
                    (on_event.borrow_mut())(v);
                }
                0
            })
            .map_err(KernelError::libbpf(what))?;
        }
        let rb = b
            .build()
            .map_err(KernelError::libbpf("reading the violations ring buffer"))?;
        Ok(EventReader {
            rb,
            _map: map,
            _notices: notices,
        })
    }

    /// Ask the kernel side for object-created notices (`on`), or stop them: bpfnsd asks
    /// while some event subscriber wants them, so that creations cost no ring-buffer write
    /// otherwise.
    pub fn set_object_events(&self, on: bool) -> Result<()> {
        let map = MapHandle::from_pinned_path(self.layout.map("object_events"))
            .map_err(KernelError::libbpf("opening pinned map object_events"))?;
        map.update(
            &0u32.to_ne_bytes(),
            &u32::from(on).to_ne_bytes(),
            MapFlags::ANY,
        )
        .map_err(KernelError::libbpf("writing object_events"))
    }
}

/// The id of the program behind the link pinned at `path`.
pub(crate) fn pinned_link_prog_id(path: &std::path::Path) -> Result<u32> {
    let fd =
        sysbpf::obj_get(path).map_err(KernelError::sys(format!("opening {}", path.display())))?;
    let info: sysbpf::bpf_link_info =
        sysbpf::info(&fd).map_err(KernelError::sys(format!("info of {}", path.display())))?;
    Ok(info.prog_id)
}

/// The pinned iterator link that lists `kind` (none for BTF objects).
fn iter_link(kind: ObjectKind) -> Option<&'static str> {
    match kind {
        ObjectKind::Map => Some("iter_maps"),
        ObjectKind::Prog => Some("iter_progs"),
        ObjectKind::Link => Some("iter_links"),
        ObjectKind::Btf => None,
    }
}
