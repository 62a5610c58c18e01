//! Requests and responses.

use bpfns_model::quota::KindLimits;
use bpfns_model::{NsId, ObjectKind, Policy};
use serde::{Deserialize, Serialize};

/// A request: `{"v": 1, "seq": 7, "op": "ns_create", "path": "/a"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version ([`crate::PROTOCOL_VERSION`]).
    pub v: u32,
    /// Chosen by the client, echoed in the response.
    #[serde(default)]
    pub seq: u64,
    #[serde(flatten)]
    pub op: Op,
}

impl Request {
    pub fn new(seq: u64, op: Op) -> Self {
        Self {
            v: crate::PROTOCOL_VERSION,
            seq,
            op,
        }
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Who am I, as the daemon sees me (kernel facts only), and what does it run.
    Hello,
    /// Create a namespace; its parent must exist. Its program policy (default: no tracing
    /// programs) may not allow more than its parent's. `max_objects` (default: bpfnsd's
    /// `max_objects`, capped at the parent's) may not be above the parent's. `limits`: its
    /// limits per kind (`{"max_maps": 16}`; default: bpfnsd's `[quota]` ones, capped at the
    /// nearest ancestor's of the kind and at `max_objects`; none: only the total).
    ///
    /// `cgroup` binds it to a cgroup v2 subtree (a path below the cgroup2 root), the only
    /// cgroups its members may attach programs to; without it, its first member's cgroup
    /// binds it. Below a namespace other than the root, within the parent's cgroup.
    NsCreate {
        path: String,
        #[serde(default, skip_serializing_if = "Policy::is_default")]
        policy: Policy,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_objects: Option<u32>,
        #[serde(default, skip_serializing_if = "KindLimits::is_empty")]
        limits: KindLimits,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cgroup: Option<String>,
    },
    /// Change a namespace's limits: `max_objects` and those per kind in `limits` that are
    /// given (the others are kept). Within its parent's (per kind: the nearest ancestor's),
    /// not below any child's, a limit per kind not above the total, and a top-level
    /// namespace's total within the ownership table's free room. Who may change a policy may
    /// change limits: host root for any namespace; a member for strict descendants of its
    /// own. Objects over a lowered limit stay; new ones fail until enough are gone.
    NsSetQuota {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_objects: Option<u32>,
        #[serde(default, skip_serializing_if = "KindLimits::is_empty")]
        limits: KindLimits,
    },
    /// Change a namespace's program policy: within its parent's, and not narrower than any
    /// descendant's. Host root for any namespace; a member for strict descendants of its own.
    NsSetPolicy { path: String, policy: Policy },
    /// Delete a namespace without children; its objects move to the parent. Refused while it
    /// has member tasks, unless `force`: then they are killed (SIGKILL) first.
    NsDelete {
        path: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
    },
    /// The namespaces visible to the caller (its own and below), as a tree in pre-order.
    NsList,
    /// One namespace.
    NsShow { path: String },
    /// What starting a member of `path` needs, in one round trip and without the object and
    /// member counts `NsShow` gathers (which cost a walk of every object on the host): who
    /// the caller is, the namespace's bpffs and policy, bpfnsd's state directory.
    MemberPlan { path: String },
    /// Put process `pid` — a child of the caller, in the caller's namespace — into `path`.
    Enter { path: String, pid: i32 },
    /// Put a container's init process `pid` into `path` before it runs any code of the
    /// container (an OCI `createRuntime` hook asks). Host administrators only; bpfnsd checks
    /// that `pid` is a runtime's fresh container init (see docs/containers.md).
    EnterContainer { path: String, pid: i32 },
    /// Where a container goes, from what its engine says of it (bpfnsd's `[containers]`
    /// settings decide: its name, its pod, the annotation `io.bpfns.namespace`); the namespace
    /// is created if missing and recorded for the container, so that it is deleted when the
    /// container is gone. The same container created again (`podman start`) keeps its
    /// namespace. Host administrators only (an OCI runtime wrapper asks).
    ContainerNamespace {
        /// The container's id (the runtime's command line).
        id: String,
        /// Its name, where the engine gives one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The annotations of its `config.json`.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        annotations: std::collections::BTreeMap<String, String>,
        /// A directory the engine removes with the container: its bundle (bpfns-oci sends
        /// its writable layer where the engine removes the bundle at stop, containerd's shims).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bundle: Option<String>,
        /// The runtime's state directory for it (`<runtime root>/<id>`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state_dir: Option<String>,
    },
    /// The runtime deleted container `id` (`delete`): bpfnsd drops its namespace if the
    /// container is removed (its bundle is gone), now or at its next collection. Host
    /// administrators only.
    ContainerDeleted {
        id: String,
        /// The runtime's state directory for it (`<runtime root>/<id>`, as given to
        /// `ContainerNamespace`): only the record of the container of that runtime is
        /// released (another runtime instance may use the same id).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state_dir: Option<String>,
    },
    /// Make namespace `path`'s bpffs one of the user namespace of container init `pid` (which
    /// `EnterContainer` put into `path`), delegating what the namespace's policy allows, so
    /// that the container can create BPF tokens from it. Host administrators only; refused
    /// where the init shares bpfnsd's user namespace or the namespace's bpffs holds pins.
    ContainerBpffs { path: String, pid: i32 },
    /// Supervise the tasks of process `pid` (which `Enter`ed a namespace) through the seccomp
    /// listener passed along (1 fd), and optionally an in-flight record (a memfd, 2nd fd) where
    /// bpfnsd writes the id of each notification before answering it.
    Supervise { pid: i32 },
    /// The objects of `kind` the caller may see; with `namespace`, only that namespace's (and,
    /// with `recursive`, its descendants').
    List {
        kind: ObjectKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        recursive: bool,
        /// Programs: with their run-time statistics (`run_time_ns`, `run_cnt`; counted only
        /// while statistics are on, see `EnableStats`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        run_stats: bool,
    },
    /// Turn the kernel's BPF run-time statistics on (`BPF_ENABLE_STATS`) for as long as the
    /// fd returned is open (the kernel turns them off when the last such fd closes). For
    /// `bpfns top`; each program run then costs two clock reads.
    EnableStats,
    /// One object the caller may see, with its owner.
    Show { kind: ObjectKind, id: u32 },
    /// A file descriptor for an object the caller may see (1 fd in the response). Needs
    /// CAP_BPF in the caller's user namespace, or a BPF token passed along (1 fd).
    GetFd {
        kind: ObjectKind,
        id: u32,
        /// Ask for a read-only map fd (`BPF_F_RDONLY`).
        #[serde(default)]
        read_only: bool,
    },
    /// Daemon status: kernel side, layers, counters.
    Status,
    /// Why the kernel side stopped (SIGKILL) or refused process `pid`, a child of the caller
    /// (a zombie not yet reaped will do): what bpfnsd logged for it, most recent last.
    WhyStopped { pid: i32 },
    /// The member processes of namespace `path` (with `recursive`, of its descendants too).
    NsPs {
        path: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        recursive: bool,
    },
    /// Which namespace process `pid` is in.
    NsIdentify { pid: i32 },
    /// Subscribe to the audit event stream: answered [`Reply::Subscribed`], then one
    /// [`Reply::Event`] frame per event (same `seq`) for as long as the connection stays open;
    /// the connection takes no other request. Only events of the caller's own namespace and
    /// below (with `ns`, of that namespace and below); with `kinds`, only those.
    Events {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ns: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        kinds: Vec<EventKind>,
    },
}

impl Op {
    /// The operation's name on the wire (`op`).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Hello => "hello",
            Op::NsCreate { .. } => "ns_create",
            Op::NsSetPolicy { .. } => "ns_set_policy",
            Op::NsSetQuota { .. } => "ns_set_quota",
            Op::NsDelete { .. } => "ns_delete",
            Op::NsList => "ns_list",
            Op::NsShow { .. } => "ns_show",
            Op::MemberPlan { .. } => "member_plan",
            Op::Enter { .. } => "enter",
            Op::EnterContainer { .. } => "enter_container",
            Op::ContainerNamespace { .. } => "container_namespace",
            Op::ContainerDeleted { .. } => "container_deleted",
            Op::ContainerBpffs { .. } => "container_bpffs",
            Op::Supervise { .. } => "supervise",
            Op::List { .. } => "list",
            Op::EnableStats => "enable_stats",
            Op::Show { .. } => "show",
            Op::GetFd { .. } => "get_fd",
            Op::Status => "status",
            Op::WhyStopped { .. } => "why_stopped",
            Op::NsPs { .. } => "ns_ps",
            Op::NsIdentify { .. } => "ns_identify",
            Op::Events { .. } => "events",
        }
    }
}

/// A response: `{"v": 1, "seq": 7, "ok": {...}}` or `{"v": 1, "seq": 7, "error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub seq: u64,
    /// Number of fds sent with this frame (SCM_RIGHTS).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fds: u32,
    #[serde(flatten)]
    pub result: Outcome,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Response {
    pub fn ok(seq: u64, reply: Reply) -> Self {
        Self {
            v: crate::PROTOCOL_VERSION,
            seq,
            fds: 0,
            result: Outcome::Ok(reply),
        }
    }
    pub fn error(seq: u64, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            v: crate::PROTOCOL_VERSION,
            seq,
            fds: 0,
            result: Outcome::Error(ErrorBody {
                code,
                message: message.into(),
            }),
        }
    }
}

// One per request, moved once: the size of a namespace's policies in a reply costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok(Reply),
    Error(ErrorBody),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// Names the cause and, where there is one, the fix.
    pub message: String,
}

/// Machine-readable error classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed or invalid request (bad JSON, bad path, missing fd).
    BadRequest,
    /// The request's `v` is not spoken here.
    UnsupportedVersion,
    /// The request exceeds the size bound.
    TooLarge,
    /// No such namespace or object (or not visible to the caller: the same answer).
    NotFound,
    /// The caller may not do this.
    Denied,
    /// The state forbids it now (exists already, has members, has children).
    Conflict,
    /// Something failed inside the daemon; the message says what.
    Internal,
    /// A resource limit of bpfnsd refuses the request (connections per uid, per namespace or
    /// in all, supervised members, file descriptors); the message names the limit and its
    /// setting in bpfnsd.toml.
    LimitReached,
}

/// The successful answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Hello {
        server: String,
        protocol: u32,
        caller: CallerInfo,
    },
    Namespace(NsInfo),
    /// Run-time statistics are on while the fd passed along is open ([`Op::EnableStats`]).
    StatsEnabled,
    /// What starting a member needs ([`Op::MemberPlan`]).
    MemberPlan(MemberPlan),
    Namespaces {
        namespaces: Vec<NsInfo>,
    },
    Deleted {
        path: String,
        /// Where its remaining objects went.
        objects_moved_to: String,
        objects_moved: u32,
    },
    Entered {
        path: String,
        pid: i32,
    },
    Supervised {
        pid: i32,
        /// bpfnsd's process id.
        #[serde(default)]
        daemon_pid: i32,
    },
    Objects {
        objects: Vec<ObjectInfo>,
    },
    Object(Box<ObjectInfo>),
    /// The fd is in the frame's SCM_RIGHTS.
    Fd {
        kind: ObjectKind,
        id: u32,
    },
    Status(StatusInfo),
    /// What the kernel side did to a process (empty: nothing bpfnsd knows of).
    Stopped {
        pid: i32,
        events: Vec<String>,
    },
    Processes {
        processes: Vec<ProcessInfo>,
    },
    Process(ProcessInfo),
    /// A container's namespace ([`Op::ContainerNamespace`]).
    ContainerNamespace {
        path: String,
        /// bpfnsd created it now.
        created: bool,
        /// The container was placed before (created again after a stop): same namespace.
        #[serde(default)]
        again: bool,
    },
    /// The event stream starts ([`Op::Events`]): events follow as [`Reply::Event`] frames.
    Subscribed {
        /// The namespace whose subtree the stream covers.
        namespace: String,
        /// How many events bpfnsd queues for this subscriber before it drops it.
        queue: u32,
    },
    /// One audit event of a subscription.
    Event(EventInfo),
    /// What became of a deleted container ([`Op::ContainerDeleted`]).
    ContainerReleased {
        id: String,
        /// Its namespace (none: bpfnsd had no record of it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        /// Namespaces deleted now.
        #[serde(default)]
        deleted: Vec<String>,
    },
}

/// What an audit event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A namespace was created.
    NsCreated,
    /// A namespace was deleted.
    NsDeleted,
    /// A namespace's program policy changed.
    NsPolicyChanged,
    /// A namespace's limits (`max_objects`, limits per kind) changed (`bpfns ns quota`).
    NsQuotaChanged,
    /// A process entered a namespace.
    MemberEntered,
    /// A call was refused (`layer` says by whom).
    Denied,
    /// The kernel side's backstop stopped a task (SIGKILL).
    Stopped,
    /// A member created a BPF object (the kernel side reports it when the creating `bpf()`
    /// returns; the namespace is the owner).
    ObjectCreated,
    /// bpfnsd found a namespace's object freed and dropped its ownership record.
    ObjectGone,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        EventKind::NsCreated,
        EventKind::NsDeleted,
        EventKind::NsPolicyChanged,
        EventKind::NsQuotaChanged,
        EventKind::MemberEntered,
        EventKind::Denied,
        EventKind::Stopped,
        EventKind::ObjectCreated,
        EventKind::ObjectGone,
    ];

    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::NsCreated => "ns_created",
            EventKind::NsDeleted => "ns_deleted",
            EventKind::NsPolicyChanged => "ns_policy_changed",
            EventKind::NsQuotaChanged => "ns_quota_changed",
            EventKind::MemberEntered => "member_entered",
            EventKind::Denied => "denied",
            EventKind::Stopped => "stopped",
            EventKind::ObjectCreated => "object_created",
            EventKind::ObjectGone => "object_gone",
        }
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let all: Vec<_> = EventKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown event kind {s:?}; known: {}", all.join(", "))
            })
    }
}

/// One audit event. Fields that do not apply to an event are absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInfo {
    /// When bpfnsd saw it, in milliseconds since the epoch.
    pub time_ms: u64,
    pub kind: EventKind,
    /// The namespace concerned (of the task, for denials and stops), by path.
    pub namespace: String,
    pub ns_id: NsId,
    /// The process concerned (host pid namespace): the one refused, stopped or entered, or
    /// the caller that changed a namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Denials and stops: the bpf command (`BPF_MAP_GET_FD_BY_ID`, ...) or its number; denials
    /// by bpfnsd's API: the request's `op` (`ns_create`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The object the call named, where it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_kind: Option<ObjectKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<u32>,
    /// Object events: the object's name (maps and programs; links: their program's), where
    /// it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_name: Option<String>,
    /// Denials of `OBJ_GET`: the path, as the caller gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Denials by bpfnsd's API (layer `api`): the namespace the refused request named, as the
    /// caller gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// Denials by bpfnsd's API (layer `api`): the process the refused request named (`enter`,
    /// `supervise`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<i32>,
    /// Denials and stops: who acted: `supervisor`, `lsm`, `backstop`, or `api` (bpfnsd refused
    /// a request on its socket; `command` is then the request's `op`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// Denials and stops: why (the errno answered, or the kernel side's rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Namespace creations and policy changes: the policy now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// Events of this namespace left out just before this one: over the limit of events a
    /// namespace may publish a second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<u64>,
}

impl EventInfo {
    /// An event of `kind` about namespace `namespace` (`ns_id`), stamped now.
    pub fn new(kind: EventKind, namespace: impl Into<String>, ns_id: NsId) -> Self {
        let time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self {
            time_ms,
            kind,
            namespace: namespace.into(),
            ns_id,
            pid: None,
            comm: None,
            uid: None,
            command: None,
            object_kind: None,
            object_id: None,
            object_name: None,
            path: None,
            target_namespace: None,
            target_pid: None,
            layer: None,
            reason: None,
            policy: None,
            suppressed: None,
        }
    }
}

/// A process and its namespace. Process ids are bpfnsd's (the host's pid namespace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: i32,
    /// Its command name (`/proc/PID/comm`).
    pub comm: String,
    /// Its real uid.
    pub uid: u32,
    /// Its threads.
    pub threads: u32,
    /// Its namespace's path (`/` for a process in no namespace).
    pub namespace: String,
    pub ns_id: NsId,
}

/// Who the caller is, from kernel facts (peer pidfd → task tag, capabilities).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerInfo {
    pub pid: i32,
    pub uid: u32,
    /// The caller's namespace path.
    pub namespace: String,
    /// CAP_SYS_ADMIN in the initial user namespace.
    pub host_admin: bool,
    /// CAP_BPF in the caller's own user namespace.
    pub cap_bpf: bool,
}

/// What starting a member of a namespace needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberPlan {
    /// Who asks (as `Hello` answers).
    pub caller: CallerInfo,
    /// The namespace's path, as bpfnsd spells it.
    pub path: String,
    /// Where the namespace's bpffs instance is mounted on the host.
    pub bpffs: String,
    /// Its effective policy (capped by its ancestors'): what its members may do with bpf();
    /// the member filter refuses the commands outside it.
    pub policy: Policy,
    /// bpfnsd's state directory (hidden from members).
    pub state_dir: String,
    /// bpfnsd makes its members' maps itself (BPF LSM does not run): the member filter sends
    /// every `BPF_MAP_CREATE` to the supervisor. `false` from older daemons.
    #[serde(default)]
    pub supervised_creations: bool,
    /// The directories of bpfnsd's sockets (the API's and the seccomp receiver's), canonical,
    /// as bpfnsd knows them: made read-only for the member whatever name the caller reached
    /// the socket by (a symbolic or hard link elsewhere). Empty unless the caller is a host
    /// administrator in `/`, and from older daemons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub socket_dirs: Vec<String>,
}

/// One namespace. Read through [`NsInfoWire`], its flat form: serde's `flatten` (of
/// `kind_limits`) buffers every field of every namespace before reading it, most of the time
/// a 10 000-namespace listing took to decode. Written as its description (the fields that
/// come from the registry alone) followed by its [`NsUsage`]: bpfnsd keeps the first encoded
/// between listings ([`crate::EncodedDescription`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "NsInfoWire")]
pub struct NsInfo {
    pub path: String,
    pub id: NsId,
    /// `None` for the root.
    pub parent: Option<String>,
    pub depth: u32,
    /// Objects owned by this namespace itself (not its descendants), per kind, as bpfnsd's
    /// listing of every object knows them: made ones at once, freed ones from its next whole
    /// read (about every 10 s) or when bpfnsd collects their records.
    pub objects: ObjectCounts,
    /// Tasks (threads) in this namespace itself.
    pub members: u32,
    /// Where this namespace's own bpffs instance is mounted on the host (`bpfns exec` puts it
    /// at `/sys/fs/bpf` for members).
    pub bpffs: String,
    /// Its own policy: what its members may do with bpf() (`cmds`, `maps`, `progs`,
    /// `attachs`, as bpffs's `delegate_*` options; `allow_tracing` alone from older daemons).
    pub policy: Policy,
    /// Its policy as its ancestors cap it (the intersection with every ancestor's): what its
    /// members may actually do. Left out on the wire when it is `policy` (most namespaces:
    /// a fifth of a listing's bytes) and by older daemons; read back as `policy` then.
    pub effective_policy: Option<Policy>,
    /// bpfnsd makes its members' maps itself (BPF LSM does not run): a member filter made for
    /// it sends every `BPF_MAP_CREATE` to the supervisor. `false` from older daemons.
    pub supervised_creations: bool,
    /// How many objects it may own with its descendants (ownership records); `None` for the
    /// root (unlimited) and from older daemons.
    pub max_objects: Option<u32>,
    /// The cgroup v2 subtree its members may attach programs to (a path below the cgroup2
    /// root); `None`: bound to none (no cgroup at all), the root (not confined), older daemons.
    pub cgroup: Option<String>,
    /// Ownership records it uses with its descendants, as the kernel counts them (freed
    /// objects' records count until collected); `None` for the root and from older daemons.
    pub records: Option<u64>,
    /// Bytes of memory the maps it owns itself use, as the kernel reports each map's
    /// (`memlock` in the map fd's fdinfo, what `bpftool map show` prints); `None` from older
    /// daemons.
    pub map_memory: Option<u64>,
    /// The same for its maps and its descendants'.
    pub map_memory_total: Option<u64>,
    /// Its limits per kind (`max_maps`...), each only when set (none: only `max_objects`).
    pub kind_limits: KindLimits,
    /// [`NsInfo::records`] per kind; `None` for the root and from older daemons.
    pub kind_records: Option<ObjectCounts>,
}

impl NsInfo {
    /// What of it changes with its objects and members.
    pub fn usage(&self) -> NsUsage {
        NsUsage {
            objects: self.objects,
            members: self.members,
            supervised_creations: self.supervised_creations,
            records: self.records,
            map_memory: self.map_memory,
            map_memory_total: self.map_memory_total,
            kind_records: self.kind_records,
        }
    }

    /// Put `usage` in place of its usage.
    pub fn set_usage(&mut self, usage: NsUsage) {
        let NsUsage {
            objects,
            members,
            supervised_creations,
            records,
            map_memory,
            map_memory_total,
            kind_records,
        } = usage;
        self.objects = objects;
        self.members = members;
        self.supervised_creations = supervised_creations;
        self.records = records;
        self.map_memory = map_memory;
        self.map_memory_total = map_memory_total;
        self.kind_records = kind_records;
    }

    /// Its description: every field but its usage, as it is written.
    pub(crate) fn description(&self) -> NsDescription<'_> {
        // Every field named: a new one must be put in the description or the usage.
        let NsInfo {
            path,
            id,
            parent,
            depth,
            objects: _,
            members: _,
            bpffs,
            policy,
            effective_policy,
            supervised_creations: _,
            max_objects,
            cgroup,
            records: _,
            map_memory: _,
            map_memory_total: _,
            kind_limits,
            kind_records: _,
        } = self;
        NsDescription {
            path,
            id: *id,
            parent: parent.as_deref(),
            depth: *depth,
            bpffs,
            policy,
            effective_policy: effective_policy.as_ref(),
            max_objects: *max_objects,
            cgroup: cgroup.as_deref(),
            kind_limits,
        }
    }
}

impl Serialize for NsInfo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Whole<'a> {
            #[serde(flatten)]
            description: NsDescription<'a>,
            #[serde(flatten)]
            usage: NsUsage,
        }
        Whole {
            description: self.description(),
            usage: self.usage(),
        }
        .serialize(s)
    }
}

/// How [`NsInfo`]'s description is written (see its fields for what each means).
#[derive(Serialize)]
pub(crate) struct NsDescription<'a> {
    path: &'a str,
    id: NsId,
    parent: Option<&'a str>,
    depth: u32,
    bpffs: &'a str,
    policy: &'a Policy,
    // Left out when it is `policy` (most namespaces: a fifth of a listing's bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    effective_policy: Option<&'a Policy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_objects: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup: Option<&'a str>,
    #[serde(flatten)]
    kind_limits: &'a KindLimits,
}

/// What of a namespace's [`NsInfo`] changes with its objects and members: written after its
/// description (see [`NsInfo`]'s fields for what each means).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NsUsage {
    pub objects: ObjectCounts,
    pub members: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub supervised_creations: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map_memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map_memory_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind_records: Option<ObjectCounts>,
}

/// [`NsInfo`] as it is on the wire, its limits per kind among its fields (see [`NsInfo`]).
#[derive(Deserialize)]
struct NsInfoWire {
    path: String,
    id: NsId,
    parent: Option<String>,
    depth: u32,
    objects: ObjectCounts,
    members: u32,
    #[serde(default)]
    bpffs: String,
    #[serde(default)]
    policy: Policy,
    #[serde(default)]
    effective_policy: Option<Policy>,
    #[serde(default)]
    supervised_creations: bool,
    #[serde(default)]
    max_objects: Option<u32>,
    #[serde(default)]
    cgroup: Option<String>,
    #[serde(default)]
    records: Option<u64>,
    #[serde(default)]
    map_memory: Option<u64>,
    #[serde(default)]
    map_memory_total: Option<u64>,
    #[serde(default)]
    max_progs: Option<u32>,
    #[serde(default)]
    max_maps: Option<u32>,
    #[serde(default)]
    max_links: Option<u32>,
    #[serde(default)]
    max_btf: Option<u32>,
    #[serde(default)]
    kind_records: Option<ObjectCounts>,
}

impl From<NsInfoWire> for NsInfo {
    fn from(w: NsInfoWire) -> Self {
        NsInfo {
            path: w.path,
            id: w.id,
            parent: w.parent,
            depth: w.depth,
            objects: w.objects,
            members: w.members,
            bpffs: w.bpffs,
            policy: w.policy,
            effective_policy: w.effective_policy.or(Some(w.policy)),
            supervised_creations: w.supervised_creations,
            max_objects: w.max_objects,
            cgroup: w.cgroup,
            records: w.records,
            map_memory: w.map_memory,
            map_memory_total: w.map_memory_total,
            kind_limits: KindLimits {
                max_progs: w.max_progs,
                max_maps: w.max_maps,
                max_links: w.max_links,
                max_btf: w.max_btf,
            },
            kind_records: w.kind_records,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectCounts {
    pub prog: u32,
    pub map: u32,
    pub link: u32,
    pub btf: u32,
}

impl ObjectCounts {
    pub fn add(&mut self, kind: ObjectKind) {
        match kind {
            ObjectKind::Prog => self.prog += 1,
            ObjectKind::Map => self.map += 1,
            ObjectKind::Link => self.link += 1,
            ObjectKind::Btf => self.btf += 1,
        }
    }
    pub fn total(&self) -> u32 {
        self.prog + self.map + self.link + self.btf
    }
}

/// One BPF object as the caller may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "FlatObjectInfo")]
pub struct ObjectInfo {
    pub id: u32,
    pub kind: ObjectKind,
    /// Map/prog/link type as libbpf names it; "" for BTF.
    #[serde(rename = "type")]
    pub type_name: String,
    pub name: String,
    /// The owner namespace's path ("/" for root).
    pub namespace: String,
    /// The owner namespace's id (0 for root).
    pub ns_id: NsId,
    /// For links: the attached program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prog_id: Option<u32>,
    /// What the kernel says about it beyond that, as bpftool shows it.
    #[serde(flatten)]
    pub details: ObjectDetails,
}

/// Defines [`ObjectDetails`] (every field optional, absent from the JSON when `None`) and the
/// flat form an [`ObjectInfo`] has on the wire, from one list of fields: `ObjectInfo` is read
/// through the flat form, since serde's `flatten` buffers every object of a listing before
/// reading it (most of the time a 10 000-object listing took to decode).
macro_rules! object_details {
    ($( $(#[doc = $doc:expr])* $name:ident : $ty:ty, )*) => {
        /// What the kernel says about an object beyond its type and name, named as bpftool's
        /// JSON names it. A field is absent where it does not apply to the object (or its
        /// kernel did not say).
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct ObjectDetails {
            $(
                $(#[doc = $doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $name: Option<$ty>,
            )*
        }

        /// [`ObjectInfo`] as the wire has it: its own fields and its details side by side.
        #[derive(Deserialize)]
        struct FlatObjectInfo {
            id: u32,
            kind: ObjectKind,
            #[serde(rename = "type")]
            type_name: String,
            name: String,
            namespace: String,
            ns_id: NsId,
            #[serde(default)]
            prog_id: Option<u32>,
            $(
                #[serde(default)]
                $name: Option<$ty>,
            )*
        }

        impl From<FlatObjectInfo> for ObjectInfo {
            fn from(f: FlatObjectInfo) -> Self {
                ObjectInfo {
                    id: f.id,
                    kind: f.kind,
                    type_name: f.type_name,
                    name: f.name,
                    namespace: f.namespace,
                    ns_id: f.ns_id,
                    prog_id: f.prog_id,
                    details: ObjectDetails { $( $name: f.$name, )* },
                }
            }
        }
    };
}

object_details! {
    /// Maps: key size in bytes.
    bytes_key: u32,
    /// Maps: value size in bytes.
    bytes_value: u32,
    /// Maps.
    max_entries: u32,
    /// Maps: `BPF_F_*` creation flags.
    flags: u32,
    /// Maps and programs: their BTF object.
    btf_id: u32,
    /// Programs: the kernel's tag (hash of the instructions), 16 hex digits.
    tag: String,
    /// Programs: when loaded, in seconds since the epoch.
    loaded_at: u64,
    /// Programs: the loader's uid.
    uid: u32,
    /// Programs: bytes of instructions after verification.
    bytes_xlated: u32,
    /// Programs: bytes of the JIT image (absent: not JITed).
    bytes_jited: u32,
    /// Programs: memory charged for them.
    bytes_memlock: u64,
    /// Programs: nanoseconds run, while run-time statistics were on (`List` with
    /// `run_stats`).
    run_time_ns: u64,
    /// Programs: runs counted, while run-time statistics were on.
    run_cnt: u64,
    /// Programs: the maps they use.
    map_ids: Vec<u32>,
    /// Links: how they attach (libbpf's name, e.g. `cgroup_inet_ingress`).
    attach_type: String,
    /// Links to a cgroup: its id (the inode of its directory in cgroupfs).
    cgroup_id: u64,
    /// Links to a network device (XDP, tcx, netkit).
    ifindex: u32,
    /// Links to a network namespace: its inode.
    netns_ino: u32,
    /// Raw tracepoint links: the tracepoint.
    tp_name: String,
    /// Iterator links: what they iterate (`bpf_map`, `task`, ...).
    target_name: String,
    /// Tracing links: the target program (0: the kernel) and the BTF id of the function.
    target_obj_id: u32,
    target_btf_id: u32,
    /// struct_ops and sockmap links: the map.
    map_id: u32,
    /// kprobe_multi and uprobe_multi links: how many functions.
    func_cnt: u32,
    /// uprobe_multi links: the process (0: every process).
    pid: u32,
    /// netfilter links: protocol family, hook and priority.
    pf: u32,
    hooknum: u32,
    priority: i32,
    /// BTF: bytes of raw data.
    size: u32,
    /// BTF: the kernel's own (vmlinux or a module's).
    kernel: bool,
}

/// Daemon status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    pub server: String,
    pub pin_root: String,
    pub state_dir: String,
    pub layers: Vec<String>,
    pub namespaces: u32,
    pub supervised_listeners: u32,
    /// Listeners the listener keeper holds (every supervised member's, also while bpfnsd
    /// restarts); 0 when it does not answer.
    #[serde(default)]
    pub kept_listeners: u32,
    pub counters: Vec<(String, u64)>,
    /// Containers bpfnsd placed and keeps a record of.
    #[serde(default)]
    pub containers: u32,
    /// The latest containers collected (gone, and their namespaces with them), most recent
    /// last: `<id> <namespace>: <why>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collected_containers: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_json_shape() {
        let r = Request::new(
            3,
            Op::GetFd {
                kind: ObjectKind::Map,
                id: 9,
                read_only: false,
            },
        );
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"v":1,"seq":3,"op":"get_fd","kind":"map","id":9,"read_only":false}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
    }

    #[test]
    fn response_json_shape() {
        let r = Response::error(4, ErrorCode::NotFound, "no namespace /x");
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"v":1,"seq":4,"error":{"code":"not_found","message":"no namespace /x"}}"#
        );
        let back: Response = serde_json::from_str(&s).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn object_details_are_flat_optional_and_round_trip() {
        let o = ObjectInfo {
            id: 4,
            kind: ObjectKind::Map,
            type_name: "hash".into(),
            name: "m".into(),
            namespace: "/a".into(),
            ns_id: NsId(2),
            prog_id: None,
            details: ObjectDetails {
                bytes_key: Some(4),
                max_entries: Some(16),
                ..ObjectDetails::default()
            },
        };
        let r = Response::ok(1, Reply::Object(Box::new(o)));
        let s = serde_json::to_string(&r).unwrap();
        assert!(
            s.contains(r#""bytes_key":4,"max_entries":16"#) && !s.contains("bytes_value"),
            "{s}"
        );
        assert_eq!(serde_json::from_str::<Response>(&s).unwrap(), r);
        // An older daemon's object (no details) still reads.
        let old = r#"{"v":1,"seq":1,"ok":{"reply":"object","id":1,"kind":"map","type":"array","name":"","namespace":"/","ns_id":0}}"#;
        let back: Response = serde_json::from_str(old).unwrap();
        let Outcome::Ok(Reply::Object(o)) = back.result else {
            panic!("{back:?}");
        };
        assert_eq!(o.details, ObjectDetails::default());
    }

    #[test]
    fn list_filters_are_optional() {
        let bare = r#"{"v":1,"seq":1,"op":"list","kind":"map"}"#;
        let r: Request = serde_json::from_str(bare).unwrap();
        assert_eq!(
            r.op,
            Op::List {
                kind: ObjectKind::Map,
                namespace: None,
                recursive: false,
                run_stats: false
            }
        );
        assert_eq!(serde_json::to_string(&r).unwrap(), bare);
        let r: Request =
            serde_json::from_str(r#"{"v":1,"seq":1,"op":"ns_ps","path":"/a","recursive":true}"#)
                .unwrap();
        assert_eq!(
            r.op,
            Op::NsPs {
                path: "/a".into(),
                recursive: true
            }
        );
    }
    #[test]
    fn events_json_shape() {
        let r: Request =
            serde_json::from_str(r#"{"v":1,"seq":2,"op":"events","kinds":["denied","stopped"]}"#)
                .unwrap();
        assert_eq!(
            r.op,
            Op::Events {
                ns: None,
                kinds: vec![EventKind::Denied, EventKind::Stopped]
            }
        );
        let mut e = EventInfo::new(EventKind::Denied, "/a", NsId(2));
        e.time_ms = 5;
        e.object_kind = Some(ObjectKind::Map);
        e.object_id = Some(9);
        let s = serde_json::to_string(&Response::ok(2, Reply::Event(e.clone()))).unwrap();
        assert_eq!(
            s,
            r#"{"v":1,"seq":2,"ok":{"reply":"event","time_ms":5,"kind":"denied","namespace":"/a","ns_id":2,"object_kind":"map","object_id":9}}"#
        );
        assert_eq!(
            serde_json::from_str::<Response>(&s).unwrap(),
            Response::ok(2, Reply::Event(e))
        );
        assert_eq!("ns_created".parse::<EventKind>(), Ok(EventKind::NsCreated));
        assert!("nope"
            .parse::<EventKind>()
            .unwrap_err()
            .contains("member_entered"));
    }

    #[test]
    fn op_names_are_the_wire_names() {
        for op in [
            Op::Hello,
            Op::NsList,
            Op::EnableStats,
            Op::MemberPlan { path: "/a".into() },
            Op::GetFd {
                kind: ObjectKind::Map,
                id: 1,
                read_only: false,
            },
            Op::NsIdentify { pid: 1 },
        ] {
            let v = serde_json::to_value(&op).unwrap();
            assert_eq!(v["op"], op.name(), "{op:?}");
        }
    }
}
