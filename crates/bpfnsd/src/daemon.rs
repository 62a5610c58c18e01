//! The daemon's core: every request, answered from the registry and the kernel side.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, RwLock};

use bpfns_kernel::doctor::Layer;
use bpfns_kernel::Kernel;
use bpfns_model::quota::{self, QuotaError};
use bpfns_model::{
    may_create, may_delete, may_enter, may_set_policy, NsId, NsPath, ObjectKind, Policy, Registry,
    RegistryError, Visibility,
};
use bpfns_proto::{
    CallerInfo, EncodedObjects, ErrorCode, EventInfo, EventKind, ObjectCounts, ObjectInfo, Op,
    Reply, Request, Response, StatusInfo, MAX_RESPONSE, PROTOCOL_VERSION,
};

pub mod cgroup;
pub mod containers;
mod ns_listing;
pub mod oci;
pub mod token;

use crate::bpffs::NsBpffs;
use crate::caller::{parent_pid, Caller};
use crate::coalesce::Coalesced;
use crate::config::Config;
use crate::store::Store;

/// A failed request: an error code and a message that names cause and fix.
#[derive(Debug)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, e.to_string())
    }
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        let code = match e {
            RegistryError::NotFound { .. } | RegistryError::ParentMissing { .. } => {
                ErrorCode::NotFound
            }
            RegistryError::AlreadyExists { .. }
            | RegistryError::HasChildren { .. }
            | RegistryError::PolicyWiderThanParent { .. }
            | RegistryError::PolicyNarrowerThanDescendants { .. } => ErrorCode::Conflict,
            RegistryError::RootIsPermanent | RegistryError::RootPolicyIsFixed => ErrorCode::Denied,
            _ => ErrorCode::Internal,
        };
        Self::new(code, e.to_string())
    }
}

impl From<QuotaError> for Failure {
    fn from(e: QuotaError) -> Self {
        let code = match e {
            QuotaError::Zero { .. } | QuotaError::KindZero { .. } | QuotaError::Root => {
                ErrorCode::BadRequest
            }
            _ => ErrorCode::Conflict,
        };
        Self::new(code, e.to_string())
    }
}

impl From<bpfns_model::Denied> for Failure {
    fn from(e: bpfns_model::Denied) -> Self {
        Self::new(ErrorCode::Denied, e.to_string())
    }
}

type Answer = Result<(Reply, Vec<OwnedFd>), Failure>;

use crate::shared::{RegistryRead, SharedRegistry};

/// A change to the namespaces: the one way bpfnsd changes them. It holds the change lock
/// from [`Daemon::begin`] until it is dropped, so nothing else changes the registry meanwhile;
/// `next` is the registry to be, a copy of the current one. The caller changes `next`,
/// applies what the kernel and the bpffs need (before or after the commit, and undoing its
/// own steps if a later one fails), and [`Txn::commit`]s: the database first (durably), then
/// the registry every request reads. Readers are never blocked by the database write.
struct Txn<'a> {
    daemon: &'a Daemon,
    _lock: std::sync::MutexGuard<'a, ()>,
    next: Registry,
}

impl Txn<'_> {
    /// Make `next` the registry (`next` is left empty). The change lock stays held until the
    /// transaction is dropped, so what is applied after the commit is applied in order too.
    fn commit(&mut self) -> Result<(), Failure> {
        // Only the rows of the namespaces that changed (the registry changes only under the
        // change lock, held here: what is shared is what is stored).
        self.daemon
            .store
            .save_changes(&self.daemon.reg(), &self.next)
            .map_err(Failure::internal)?;
        // Moved, not copied (a copy of 10 000 namespaces costs milliseconds): `next` is
        // empty afterwards, and what follows the commit reads the shared registry.
        self.daemon
            .registry
            .replace(std::mem::replace(&mut self.next, Registry::new()));
        Ok(())
    }
}

/// A listener handed to the daemon (`supervise`), with what it is for.
#[derive(Debug)]
pub struct Supervise {
    /// The supervised process (the caller's child).
    pub pid: i32,
    /// The caller's uid (limits count per uid).
    pub uid: u32,
    /// The member's namespace.
    pub ns: NsId,
    pub listener: OwnedFd,
    /// Where each notification's id is written before it is answered.
    pub in_flight: bpfns_sys::seccomp::InFlight,
}

/// Something that serves seccomp listeners for the daemon (the supervisor).
pub trait ListenerSink: Send + Sync {
    /// Start answering the notifications of a listener (and, before returning, have the
    /// listener keeper hold a copy).
    fn supervise(&self, s: Supervise) -> Result<(), Failure>;
    /// How many listeners are being served.
    fn count(&self) -> usize;
    /// What the listener keeper reports, if there is one.
    fn kept(&self) -> Option<crate::keeper::KeeperStats>;
    /// Let go of the listener keeper (it goes on without this bpfnsd, as after a crash).
    fn detach_keeper(&self) {}
    /// Whether this supervisor makes members' maps (its view's answer, decided once): what
    /// bpfnsd tells clients to trap must be what the supervisor expects to see.
    fn supervises_creations(&self) -> Option<bool> {
        None
    }
}

/// A request's answer, ready to send.
// One per request, moved once: the size of a response costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outgoing {
    Response(Response),
    /// A response's frame, written as its reply was gathered (a namespace listing).
    Frame(Vec<u8>),
}

/// Refused if a request that takes no file descriptors came with some.
fn no_fds(fds: &[OwnedFd]) -> Result<(), Failure> {
    if fds.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            ErrorCode::BadRequest,
            "this request takes no file descriptors",
        ))
    }
}

/// The daemon's state.
pub struct Daemon {
    pub config: Config,
    pub kernel: Kernel,
    pub registry: SharedRegistry,
    store: Store,
    bpffs: NsBpffs,
    init_userns: u64,
    /// Serialises namespace changes (registry + database + kernel table + bpffs).
    changes: Mutex<()>,
    /// [`Daemon::socket_dirs_of`] the configuration, for member plans.
    socket_dirs: Vec<String>,
    sink: RwLock<Option<Arc<dyn ListenerSink>>>,
    /// Ownership records dropped by [`Daemon::collect_garbage`] since start.
    collected: std::sync::atomic::AtomicU64,
    /// Wakes the collector at once (a namespace crossed 3/4 of its limit).
    collect_now: Mutex<Option<std::sync::mpsc::SyncSender<()>>>,
    /// Events read from the kernel side since start.
    events_read: std::sync::atomic::AtomicU64,
    /// Namespaces being deleted: their pins are being copied without the change lock held,
    /// and nothing may enter them or be created below them meanwhile.
    deleting: Mutex<std::collections::HashSet<NsId>>,
    /// The latest stops and refusals, (pid, namespace, what was logged), for `why_stopped`.
    recent_stops: Mutex<std::collections::VecDeque<(u32, NsId, String)>>,
    /// Connection limits (see [`crate::admission`]).
    pub admission: Arc<crate::admission::Admission>,
    /// The containers bpfnsd placed and the namespaces it made for them (kept in the store).
    containers: Mutex<bpfns_model::container::Containers>,
    /// The latest containers collected, for `status`.
    collected_containers: Mutex<std::collections::VecDeque<String>>,
    /// Containers collected since start.
    collected_containers_total: std::sync::atomic::AtomicU64,
    /// Containers their runtime deleted a short while ago, until when their bundle's removal
    /// is watched.
    watched_containers: Mutex<HashMap<String, std::time::Instant>>,
    /// The object and member counts of every namespace (`ns_show`, `ns_list`), one walk for
    /// the requests waiting together ([`crate::coalesce`]).
    census: Coalesced<Census>,
    /// Every namespace's description encoded, for listings (kept until the registry changes).
    descriptions: ns_listing::Descriptions,
    /// Where the census takes owners from instead of walking every object, once set.
    object_owners: std::sync::OnceLock<Arc<dyn ObjectOwners>>,
    /// Every object of a kind (`list`, `show`), by [`kind_index`], likewise.
    listings: [Coalesced<Vec<bpfns_kernel::OwnedObject>>; 4],
    /// What the metrics endpoint reports that is recorded as bpfnsd serves.
    pub metrics: crate::metrics::Metrics,
    /// Rate limit of the supervisor's denial log lines (a member looping refused calls must
    /// not flood the journal; the event stream gets every one).
    denial_log: Mutex<EventLog>,
    /// Refusals and stops since start, by namespace, command and layer (the metrics).
    denials_by: Mutex<HashMap<(NsId, String, &'static str), u64>>,
    /// The supervisor's refusals logged per tenant (at most [`DENIAL_LOG_PER_NS_PER_SEC`]).
    denial_log_ns: Mutex<crate::events::PerNamespace>,
    /// The audit event stream (`events`).
    pub events: Arc<crate::events::Bus>,
}

/// Every object of a kind and its owner, known without walking them all: the supervisor's
/// warm listing ([`crate::supervisor::install`] hands it over). What it gives is what a
/// member's walk start sees: objects made and records changed by now, an object freed since
/// its last whole read still there (until the next, about every
/// [`crate::supervisor::warm::REFRESH`], or until its record is collected).
pub trait ObjectOwners: Send + Sync {
    /// Every prog, map or link and its owner, sorted by id.
    fn owners(&self, kind: ObjectKind) -> Result<Vec<(u32, NsId)>, String>;
}

/// The object with id `id` in `all` (sorted by id, as every listing is).
fn pick(all: &[bpfns_kernel::OwnedObject], id: u32) -> Option<&bpfns_kernel::OwnedObject> {
    all.binary_search_by_key(&id, |o| o.id)
        .ok()
        .map(|i| &all[i])
}

/// Whether `op` may change the registry: all but the requests that only read (so that a new
/// kind of change is made durable before it is acknowledged).
fn changes_something(op: &Op) -> bool {
    !matches!(
        op,
        Op::Hello
            | Op::GetFd { .. }
            | Op::WhyStopped { .. }
            | Op::NsIdentify { .. }
            | Op::MemberPlan { .. }
            | Op::EnableStats
            | Op::NsList
            | Op::NsShow { .. }
            | Op::List { .. }
            | Op::Show { .. }
            | Op::Status
            | Op::NsPs { .. }
            | Op::Events { .. }
    )
}

/// What a walk gave: shared by the requests that waited for it ([`Coalesced`]).
type Walked<T> = Result<Arc<T>, String>;

/// The walk a request needs, waited for by the API server before the request takes a worker
/// ([`Daemon::prepare`]): a worker then only answers, it never sits waiting for a walk.
#[derive(Debug, Default)]
pub struct Prepared {
    census: Option<Walked<Census>>,
    /// The listing of the kind the request names.
    listing: Option<Walked<Vec<bpfns_kernel::OwnedObject>>>,
}

/// Objects and member tasks per namespace, as one walk found them.
#[derive(Debug, Default)]
struct Census {
    objects: HashMap<NsId, ObjectCounts>,
    members: HashMap<NsId, u32>,
    /// Bytes of memory the maps of each owner use (`bpfns_kernel::memory::map_census_of`).
    map_memory: HashMap<NsId, u64>,
}

fn kind_index(kind: ObjectKind) -> usize {
    match kind {
        ObjectKind::Prog => 0,
        ObjectKind::Map => 1,
        ObjectKind::Link => 2,
        ObjectKind::Btf => 3,
    }
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Assemble a daemon from its parts (the kernel side already loaded).
    pub fn new(
        config: Config,
        kernel: Kernel,
        store: Store,
        init_userns: u64,
    ) -> Result<Self, Failure> {
        let mut config = config;
        // Taken canonical, as the instances' directory is: members are told it, and covers
        // are compared by path (the store is open in it, so it exists).
        if let Ok(dir) = config.state_dir.canonicalize() {
            config.state_dir = dir;
        }
        if store.migrate().map_err(Failure::internal)? {
            tracing::info!("rewrote the stored registry as one row per namespace");
        }
        let mut registry = store.load_registry().map_err(Failure::internal)?;
        // Namespaces stored before limits existed get the configured default, once.
        let filled = quota::fill_default_limits(&mut registry, config.max_objects);
        if !filled.is_empty() {
            store.save_registry(&registry).map_err(Failure::internal)?;
            tracing::info!(
                namespaces = filled.len(),
                max_objects = config.max_objects,
                "gave namespaces stored without a limit on their objects the default"
            );
        }
        if let Some((reserved, capacity)) = quota::over_capacity(&registry, quota_rules(&config)) {
            tracing::warn!(
                "the top-level namespaces' max_objects add up to {reserved}, more than the \
                 {capacity} records the ownership table holds for them: one namespace's objects \
                 could keep another's from being recorded; delete and re-create some with a \
                 smaller --max-objects"
            );
        }
        config
            .containers
            .naming()
            .check()
            .map_err(|e| Failure::new(ErrorCode::BadRequest, e.to_string()))?;
        let containers = store.load_containers().map_err(Failure::internal)?;
        let bpffs = NsBpffs::new(&config.ns_bpffs_dir, &config.root_bpffs);
        let socket_dirs = Self::socket_dirs_of(&config);
        let admission = crate::admission::Admission::new(&config.limits);
        let events = Arc::new(crate::events::Bus::new(config.events_per_namespace_per_sec));
        Ok(Self {
            admission,
            socket_dirs,
            config,
            kernel,
            registry: SharedRegistry::new(registry),
            store,
            bpffs,
            init_userns,
            changes: Mutex::new(()),
            sink: RwLock::new(None),
            collected: std::sync::atomic::AtomicU64::new(0),
            collect_now: Mutex::new(None),
            events_read: std::sync::atomic::AtomicU64::new(0),
            recent_stops: Mutex::new(std::collections::VecDeque::new()),
            deleting: Mutex::new(std::collections::HashSet::new()),
            containers: Mutex::new(containers),
            collected_containers: Mutex::new(std::collections::VecDeque::new()),
            collected_containers_total: std::sync::atomic::AtomicU64::new(0),
            watched_containers: Mutex::new(HashMap::new()),
            census: Coalesced::default(),
            descriptions: Default::default(),
            object_owners: std::sync::OnceLock::new(),
            listings: Default::default(),
            metrics: Default::default(),
            denial_log: Mutex::new(EventLog::default()),
            denials_by: Mutex::new(HashMap::new()),
            denial_log_ns: Mutex::new(crate::events::PerNamespace::new(DENIAL_LOG_PER_NS_PER_SEC)),
            events,
        })
    }

    /// Every object of `kind`, from a walk that started after this call (or `prepared`'s).
    fn listing(
        &self,
        kind: ObjectKind,
        prepared: Option<Walked<Vec<bpfns_kernel::OwnedObject>>>,
    ) -> Result<Arc<Vec<bpfns_kernel::OwnedObject>>, Failure> {
        prepared
            .unwrap_or_else(|| self.listings[kind_index(kind)].get(|| self.list_walk(kind)))
            .map_err(Failure::internal)
    }

    /// Every object of `kind`, from the kernel side's iterator: the walk `listings` share.
    fn list_walk(&self, kind: ObjectKind) -> Result<Vec<bpfns_kernel::OwnedObject>, String> {
        self.kernel.list(kind).map_err(|e| e.to_string())
    }

    /// Wait, without a thread, for the walk `op` needs (one that started after this call,
    /// shared with the requests waiting with it): what [`Daemon::handle_prepared`] then
    /// answers from. Nothing for other requests, nor for a caller the request is refused to
    /// (its refusal is `handle`'s).
    pub async fn prepare(self: &Arc<Self>, caller: &Caller, op: &Op) -> Prepared {
        let mut p = Prepared::default();
        if self.permit(caller, op).is_err() {
            return p;
        }
        match *op {
            Op::NsList | Op::NsShow { .. } => {
                let d = Arc::clone(self);
                p.census = Some(self.census.get_async(move || d.census_walk()).await);
            }
            Op::List { kind, .. } | Op::Show { kind, .. } => {
                let d = Arc::clone(self);
                p.listing = Some(
                    self.listings[kind_index(kind)]
                        .get_async(move || d.list_walk(kind))
                        .await,
                );
            }
            _ => {}
        }
        p
    }

    /// Drop the ownership records of objects that no longer exist; how many. Not under the
    /// change lock (it walks every object, and namespace changes queue behind that lock): a
    /// deletion moving records meanwhile can at worst re-create the record of an object
    /// freed meanwhile, which the next collection drops.
    pub fn collect_garbage(&self) -> Result<usize, Failure> {
        let gone = self
            .kernel
            .collect_garbage_listed()
            .map_err(Failure::internal)?;
        self.collected
            .fetch_add(gone.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.publish_gone(&gone);
        Ok(gone.len())
    }

    /// `object_gone` for each record dropped, by the collector or by BPF LSM's free hooks
    /// (root-owned objects have none).
    fn publish_gone(&self, gone: &[(ObjectKind, u32, NsId)]) {
        if gone.is_empty() || !self.events.has_subscribers() {
            return;
        }
        let reg = self.reg();
        for &(kind, id, owner) in gone {
            let mut ev = EventInfo::new(EventKind::ObjectGone, owner_name(&reg, owner), owner);
            ev.object_kind = Some(kind);
            ev.object_id = Some(id);
            self.events.publish(ev, &Self::chain_in(&reg, owner));
        }
    }

    /// Have the kernel side write object notices while some subscriber wants object events
    /// (`known`: what it was last told; `None`: unknown, as after a start).
    fn sync_object_events(&self, known: &mut Option<bool>) {
        let _one = OBJECT_EVENTS_SWITCH
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let want = self.events.wants_any(&crate::events::OBJECT_KINDS);
        if *known == Some(want) {
            return;
        }
        match self.kernel.set_object_events(want) {
            Ok(()) => *known = Some(want),
            Err(e) => tracing::warn!(
                "turning object events {}: {e}",
                if want { "on" } else { "off" }
            ),
        }
    }

    /// Run [`Daemon::collect_garbage`] every `interval` (zero: never) on a thread of its own,
    /// and at once when the kernel side says a namespace crossed 3/4 of its limit (at most
    /// every [`EARLY_COLLECTION_GAP`]), for as long as the daemon exists (the thread holds it
    /// only while collecting). Also starts the reader of the kernel side's events
    /// ([`Daemon::spawn_event_reader`]).
    pub fn spawn_collector(daemon: &Arc<Daemon>, interval: std::time::Duration) {
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        *daemon.collect_now.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        let weak = Arc::downgrade(daemon);
        let spawned = std::thread::Builder::new()
            .name("bpfns-gc".into())
            .spawn(move || {
                use std::sync::mpsc::RecvTimeoutError;
                let mut last = std::time::Instant::now();
                loop {
                    let wait = if interval.is_zero() {
                        std::time::Duration::from_secs(3600)
                    } else {
                        interval
                    };
                    let early = match rx.recv_timeout(wait) {
                        Ok(()) => true,
                        Err(RecvTimeoutError::Timeout) => false,
                        Err(RecvTimeoutError::Disconnected) => return,
                    };
                    if !early && interval.is_zero() {
                        continue;
                    }
                    if early {
                        // A tenant that keeps crossing the mark does not keep bpfnsd busy.
                        let since = last.elapsed();
                        if since < EARLY_COLLECTION_GAP {
                            std::thread::sleep(EARLY_COLLECTION_GAP - since);
                        }
                    }
                    let Some(d) = weak.upgrade() else { return };
                    last = std::time::Instant::now();
                    match d.collect_garbage() {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::debug!(records = n, early, "dropped records of freed objects")
                        }
                        Err(f) => tracing::warn!("collecting ownership records: {}", f.message),
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the record collector: {e}");
        }
        Self::spawn_event_reader(daemon);
        Self::spawn_hook_relaxer(daemon);
        Self::spawn_container_collector(
            daemon,
            std::time::Duration::from_secs(daemon.config.containers.collect_interval_secs),
        );
    }

    /// Read the kernel side's events on a thread of its own: log every stopped or refused
    /// task (pid, command, namespace, the rule it broke and the fix; at most
    /// [`EVENT_LOG_PER_SEC`] lines a second, the rest counted), and wake the collector when a
    /// namespace crosses 3/4 of its limit.
    /// Every [`HOOK_RELAX_INTERVAL`], detach the kernel side's syscall hooks once no task is
    /// tagged and no cgroup bound (the last member gone): a host without members pays nothing
    /// on its syscalls. Tagging attaches them again first (`Kernel::tag_with`). The decision is
    /// the kernel side's own (its task iterator and bindings, under its lock: see
    /// `bpfns_kernel::hooks`), not this daemon's member accounting, which misses tasks the
    /// kernel tagged by itself (children, cgroup joins) and members of an earlier bpfnsd.
    /// bpfnsd only says when to look: it is the process that outlives members.
    pub fn spawn_hook_relaxer(daemon: &Arc<Daemon>) {
        let weak = Arc::downgrade(daemon);
        let spawned = std::thread::Builder::new()
            .name("bpfns-hooks".into())
            .spawn(move || {
                let mut attached = true;
                // Whether every hook was attached at the last look while namespaces existed.
                let mut all_seen = false;
                loop {
                    std::thread::sleep(HOOK_RELAX_INTERVAL);
                    let Some(d) = weak.upgrade() else { return };
                    // Only once no namespace is left: the task walk `relax_hooks` trusts can
                    // miss a member that execs in a loop (its thread moving to the zombie
                    // leader's pid), which would then run unwatched.
                    match bpfns_kernel::hooks::namespaces_exist(&d.kernel) {
                        Ok(false) => {}
                        Ok(true) => {
                            all_seen = d.keep_hooks_attached(all_seen);
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!("reading the kernel's namespace table: {e}");
                            continue;
                        }
                    }
                    match d.kernel.relax_hooks() {
                        Ok(detached) => {
                            if detached && attached {
                                tracing::info!(
                                    "no namespace left: syscall hooks detached until the next \
                                     member"
                                );
                            }
                            attached = !detached;
                        }
                        Err(e) => {
                            tracing::warn!("checking whether the syscall hooks are needed: {e}")
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the syscall hooks' relaxer: {e}");
        }
    }

    /// While namespaces exist, hooks that were all attached at the last look (`all_seen`) and
    /// are not now had their pins removed behind bpfnsd's back (nothing of bpfns detaches
    /// them then): attached again, and said. Whether all are attached now.
    fn keep_hooks_attached(&self, all_seen: bool) -> bool {
        let wanted = bpfns_kernel::layout::ON_DEMAND.len();
        if self.kernel.hooks_attached().len() == wanted {
            return true;
        }
        if !all_seen {
            return false;
        }
        match bpfns_kernel::hooks::ensure(self.kernel.layout()) {
            Ok(()) => {
                tracing::warn!(
                    "the syscall hooks' pins were removed while namespaces exist (not by bpfnsd): \
                     hooks attached again; tasks forked meanwhile may be untagged"
                );
                self.kernel.hooks_attached().len() == wanted
            }
            Err(e) => {
                tracing::error!("attaching the syscall hooks again: {e}");
                false
            }
        }
    }

    pub fn spawn_event_reader(daemon: &Arc<Daemon>) {
        let weak = Arc::downgrade(daemon);
        let on_event = {
            let weak = weak.clone();
            let mut log = EventLog::default();
            move |v: bpfns_kernel::abi::Violation| {
                let Some(d) = weak.upgrade() else { return };
                d.on_kernel_event(&v, &mut log);
            }
        };
        let reader = match daemon.kernel.event_reader(on_event) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot read the kernel side's events: {e}");
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("bpfns-events".into())
            .spawn(move || {
                // Object notices off once the last subscriber that wants them is gone (a
                // subscription turns them on at once: `subscribe`).
                let mut notices = None;
                loop {
                    if let Err(e) = reader.poll(std::time::Duration::from_millis(500)) {
                        tracing::warn!("{e}");
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                    let Some(d) = weak.upgrade() else { return };
                    d.sync_object_events(&mut notices);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the kernel event reader: {e}");
        }
    }

    fn on_kernel_event(&self, v: &bpfns_kernel::abi::Violation, log: &mut EventLog) {
        use bpfns_kernel::abi::Event;
        self.events_read
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match v.event() {
            Event::ObjectCreated { ns, kind, id, uid } => {
                self.publish_created(v, NsId(ns), kind, id, uid);
            }
            Event::ObjectGone { ns, kind, id } => {
                if let Some(kind) = ObjectKind::from_code(kind) {
                    self.publish_gone(&[(kind, id, NsId(ns))]);
                }
            }
            Event::QuotaHigh { ns, used, limit } => {
                tracing::debug!(
                    "namespace {} uses {used} of its {limit} ownership records: collecting the \
                     records of freed objects now",
                    self.ns_name(NsId(ns))
                );
                if let Some(tx) = self
                    .collect_now
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                {
                    let _ = tx.try_send(());
                }
            }
            ev => {
                let layer = match ev {
                    Event::Refused(_) => "lsm",
                    _ => "backstop",
                };
                self.count_denial(NsId(v.ns), command_name(v.cmd), layer);
                let line = describe_event(v, ev, &self.ns_name(NsId(v.ns)));
                {
                    let mut recent = self.recent_stops.lock().unwrap_or_else(|e| e.into_inner());
                    if recent.len() >= RECENT_STOPS {
                        recent.pop_front();
                    }
                    recent.push_back((v.pid, NsId(v.ns), line.clone()));
                }
                self.publish_kernel_event(v, ev);
                if !log.admit() {
                    return;
                }
                if log.suppressed > 0 {
                    tracing::warn!(
                        "{} more kernel events were not logged (more than {EVENT_LOG_PER_SEC} a \
                         second); bpfns status counts them all",
                        log.suppressed
                    );
                    log.suppressed = 0;
                }
                let (layer, reason) = match ev {
                    Event::Stopped(r) => ("backstop", r.name()),
                    Event::Refused(r) => ("lsm", r.name()),
                    _ => ("kernel", "unknown"),
                };
                tracing::warn!(
                    layer,
                    pid = v.pid,
                    tid = v.tid,
                    comm = %v.comm,
                    namespace = %self.ns_name(NsId(v.ns)),
                    command = v.cmd,
                    object_kind = v.kind,
                    object_id = v.id,
                    reason,
                    "{line}"
                );
            }
        }
    }

    /// A stop or refusal of the kernel side, as an event: `stopped` for the backstop's
    /// SIGKILL, `denied` (layer `lsm`) for a refusal.
    fn publish_kernel_event(&self, v: &bpfns_kernel::abi::Violation, ev: bpfns_kernel::abi::Event) {
        use bpfns_kernel::abi::Event;
        if !self.events.has_subscribers() {
            return;
        }
        let (kind, layer, reason) = match ev {
            Event::Stopped(r) => (EventKind::Stopped, "backstop", r.name().to_string()),
            Event::Refused(r) => (EventKind::Denied, "lsm", r.name().to_string()),
            Event::Unknown(code) => (EventKind::Stopped, "backstop", format!("reason {code}")),
            Event::QuotaHigh { .. } | Event::ObjectCreated { .. } | Event::ObjectGone { .. } => {
                return
            }
        };
        let ns = NsId(v.ns);
        let (path, chain) = {
            let reg = self.reg();
            (owner_name(&reg, ns), Self::chain_in(&reg, ns))
        };
        let mut e = EventInfo::new(kind, path, ns);
        e.pid = i32::try_from(v.pid).ok();
        e.comm = Some(v.comm.clone());
        // The task is usually dead (SIGKILL): its uid only while it lingers.
        e.uid = ProcFacts::read(v.pid as i32).map(|f| f.uid);
        e.command = Some(command_name(v.cmd));
        let kinds = [
            None,
            Some(ObjectKind::Prog),
            Some(ObjectKind::Map),
            Some(ObjectKind::Link),
            Some(ObjectKind::Btf),
        ];
        if let Some(Some(k)) = kinds.get(v.kind as usize) {
            if v.id != 0 {
                e.object_kind = Some(*k);
                e.object_id = Some(v.id);
            }
        }
        e.layer = Some(layer.into());
        e.reason = Some(reason);
        self.events.publish(e, &chain);
    }

    /// An object a member created (the kernel side's notice), as an `object_created` event.
    fn publish_created(
        &self,
        v: &bpfns_kernel::abi::Violation,
        ns: NsId,
        kind: u32,
        id: u32,
        uid: u32,
    ) {
        if !self.events.has_subscribers() {
            return;
        }
        let mut e = self.created_event(ns);
        e.pid = i32::try_from(v.pid).ok();
        e.comm = Some(v.comm.clone());
        e.uid = Some(uid);
        e.command = Some(command_name(v.cmd));
        e.object_kind = ObjectKind::from_code(kind);
        e.object_id = Some(id);
        e.object_name = Some(v.name.clone()).filter(|n| !n.is_empty());
        self.publish_for(e, ns);
    }

    /// Whether the supervisor makes members' maps (BPF LSM does not run here): their filters
    /// must send `BPF_MAP_CREATE` to it.
    pub(crate) fn supervises_creations(&self) -> bool {
        // The supervisor's view decided it once (reading the layers stats every pin: ~0.1 ms
        // per member start otherwise).
        let sink = self.sink.read().unwrap_or_else(|e| e.into_inner()).clone();
        sink.and_then(|s| s.supervises_creations())
            .unwrap_or_else(|| {
                !self
                    .kernel
                    .layers()
                    .contains(&bpfns_kernel::doctor::Layer::BpfLsm)
            })
    }

    fn created_event(&self, ns: NsId) -> EventInfo {
        EventInfo::new(EventKind::ObjectCreated, owner_name(&self.reg(), ns), ns)
    }

    /// Publish `e`, about namespace `ns`, to the subscribers that may see `ns`.
    fn publish_for(&self, e: EventInfo, ns: NsId) {
        let chain = Self::chain_in(&self.reg(), ns);
        self.events.publish(e, &chain);
    }

    /// `id` and its ancestors (the root last), as `reg` has them; an unknown id's chain is
    /// the root's only, so that only host subscribers see its events.
    fn chain_in(reg: &Registry, id: NsId) -> Vec<NsId> {
        if !reg.contains(id) {
            return vec![NsId::ROOT];
        }
        let mut chain = vec![id];
        chain.extend(reg.ancestors(id));
        chain
    }

    /// An event about namespace `id` as `reg` has it, done by `caller`; `None` when nobody
    /// subscribes.
    fn change_event(
        &self,
        kind: EventKind,
        reg: &Registry,
        id: NsId,
        caller: &Caller,
        policy: Option<Policy>,
    ) -> Option<(EventInfo, Vec<NsId>, Vec<NsId>)> {
        if !self.events.has_subscribers() {
            return None;
        }
        let mut ev = EventInfo::new(kind, owner_name(reg, id), id);
        ev.pid = Some(caller.pid);
        ev.uid = Some(caller.uid);
        ev.comm = ProcFacts::read(caller.pid).map(|f| f.comm);
        ev.policy = policy;
        Some((ev, Self::chain_in(reg, id), Self::chain_in(reg, caller.ns)))
    }

    fn publish_change(
        &self,
        kind: EventKind,
        reg: &Registry,
        id: NsId,
        caller: &Caller,
        policy: Option<Policy>,
    ) {
        if let Some((ev, chain, actor)) = self.change_event(kind, reg, id, caller, policy) {
            self.events.publish_by(ev, &chain, &actor);
        }
    }

    /// Process `pid` entered namespace `id`.
    pub(crate) fn publish_entered(&self, id: NsId, pid: i32) {
        if !self.events.has_subscribers() {
            return;
        }
        let (ev, chain) = {
            let reg = self.reg();
            let mut ev = EventInfo::new(EventKind::MemberEntered, owner_name(&reg, id), id);
            ev.pid = Some(pid);
            if let Some(f) = ProcFacts::read(pid) {
                ev.comm = Some(f.comm);
                ev.uid = Some(f.uid);
            }
            (ev, Self::chain_in(&reg, id))
        };
        self.events.publish(ev, &chain);
    }

    /// A call the supervisor refused: logged (at most [`EVENT_LOG_PER_SEC`] a second, with its
    /// fields) and published (every one).
    pub(crate) fn on_denial(&self, d: crate::supervisor::Denial) {
        self.count_denial(d.ns, d.command.to_string(), "supervisor");
        let facts = ProcFacts::read(d.tid);
        let tgid = bpfns_sys::procfs::read_status(d.tid)
            .ok()
            .and_then(|s| bpfns_sys::procfs::field(&s, "Tgid").and_then(|t| t.parse().ok()))
            .unwrap_or(d.tid);
        let (path, chain) = {
            let reg = self.reg();
            (owner_name(&reg, d.ns), Self::chain_in(&reg, d.ns))
        };
        let comm = facts.as_ref().map(|f| f.comm.clone());
        let uid = facts.as_ref().map(|f| f.uid);
        if let Some(suppressed) =
            self.admit_denial_log(crate::events::tenant_of(&chain).unwrap_or(d.ns))
        {
            tracing::info!(
            layer = "supervisor",
            suppressed,
            pid = tgid,
            tid = d.tid,
            comm = comm.as_deref().unwrap_or("?"),
            uid = uid.unwrap_or(u32::MAX),
            namespace = %path,
            command = d.command,
            object_kind = d.object.map(|(k, _)| k.to_string()).unwrap_or_default(),
            object_id = d.object.map_or(0, |(_, id)| id),
            path = d.path.as_deref().unwrap_or(""),
            errno = d.errno,
            "denied"
            );
        }
        if !self.events.has_subscribers() {
            return;
        }
        let mut ev = EventInfo::new(EventKind::Denied, path, d.ns);
        ev.pid = Some(tgid);
        ev.comm = comm;
        ev.uid = uid;
        ev.command = Some(d.command.to_string());
        ev.object_kind = d.object.map(|(k, _)| k);
        ev.object_id = d.object.map(|(_, id)| id);
        ev.path = d.path;
        ev.layer = Some("supervisor".into());
        ev.reason = Some(d.reason);
        self.events.publish(ev, &chain);
    }

    /// Whether one more refusal of `tenant` may be logged now: `Some(n)` with `n` the
    /// tenant's refusals left out of the log since its last one logged, or `None`. Per tenant
    /// first ([`DENIAL_LOG_PER_NS_PER_SEC`]), so that one tenant refused in a loop (in however
    /// many of its namespaces) does not use up the log's lines of everyone else's refusals,
    /// then within [`EVENT_LOG_PER_SEC`] for all.
    fn admit_denial_log(&self, tenant: NsId) -> Option<u64> {
        let mine = self
            .denial_log_ns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(tenant, std::time::Instant::now())?;
        self.denial_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit()
            .then_some(mine)
    }

    /// A request bpfnsd refused for lack of permission (`denied`; not one that names what the
    /// caller cannot see, which is `not_found` as if it did not exist, nor a malformed or
    /// untimely one): counted (the metrics), logged and published like the supervisor's
    /// refusals, with layer `api`, as a refusal of the caller's namespace. The host's callers
    /// (anyone who may connect) are held, in the log and the event stream, to one limit as
    /// if they were one tenant.
    fn on_api_denial(&self, caller: &Caller, op: &'static str, named: Named, reason: &str) {
        self.count_denial(caller.ns, op.to_string(), "api");
        let (path, chain) = {
            let reg = self.reg();
            (owner_name(&reg, caller.ns), Self::chain_in(&reg, caller.ns))
        };
        let tenant = crate::events::tenant_of(&chain).unwrap_or(NsId::ROOT);
        let comm = ProcFacts::read(caller.pid).map(|f| f.comm);
        if let Some(suppressed) = self.admit_denial_log(tenant) {
            tracing::info!(
                layer = "api",
                suppressed,
                pid = caller.pid,
                comm = comm.as_deref().unwrap_or("?"),
                uid = caller.uid,
                namespace = %path,
                command = op,
                // Absent where the request named none.
                target_namespace = named.namespace.as_deref(),
                target_pid = named.pid,
                object_kind = named.object.map(|(k, _)| k.name()),
                object_id = named.object.map(|(_, id)| id),
                reason,
                "denied"
            );
        }
        if !self.events.has_subscribers() {
            return;
        }
        let mut ev = EventInfo::new(EventKind::Denied, path, caller.ns);
        ev.pid = Some(caller.pid);
        ev.comm = comm;
        ev.uid = Some(caller.uid);
        ev.command = Some(op.to_string());
        ev.object_kind = named.object.map(|(k, _)| k);
        ev.object_id = named.object.map(|(_, id)| id);
        ev.target_namespace = named.namespace;
        ev.target_pid = named.pid;
        ev.layer = Some("api".into());
        ev.reason = Some(reason.to_string());
        self.events
            .publish_limited(ev, &chain, &chain, Some(tenant));
    }

    /// Subscribe `caller` to the events of `ns` (default: its own namespace) and below.
    pub fn subscribe(
        &self,
        caller: &Caller,
        ns: Option<&str>,
        kinds: Vec<EventKind>,
    ) -> Result<(crate::events::Subscription, String), Failure> {
        if !caller.may_list_namespaces() {
            return Err(Failure::new(
                ErrorCode::Denied,
                "permission denied: the event stream needs CAP_BPF or CAP_SYS_ADMIN (in the \
                 initial user namespace outside namespaces, in your user namespace inside one), \
                 as listing namespaces does",
            ));
        }
        let (root, path) = match ns {
            Some(path) => {
                let id = self.visible_ns(caller, path)?;
                (id, self.ns_name(id))
            }
            None => (caller.ns, self.ns_name(caller.ns)),
        };
        tracing::info!(pid = caller.pid, ns = %path, "event subscription");
        let wants_objects = crate::events::takes_any(&kinds, &crate::events::OBJECT_KINDS);
        let _one = OBJECT_EVENTS_SWITCH
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let sub = self.events.subscribe(root, kinds);
        // At once, so that what the subscriber's namespace creates next is reported; the
        // event reader turns them off again after the last such subscriber.
        if wants_objects {
            if let Err(e) = self.kernel.set_object_events(true) {
                tracing::warn!("turning object events on: {e}");
            }
        }
        Ok((sub, path))
    }

    /// Stop using the listener keeper (it goes on holding the listeners, as after a crash of
    /// bpfnsd); for daemons that run inside a longer-lived process (tests).
    pub fn detach_keeper(&self) {
        if let Some(s) = self.sink.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            s.detach_keeper();
        }
    }

    /// Who serves supervised listeners.
    pub fn set_listener_sink(&self, sink: Arc<dyn ListenerSink>) {
        *self.sink.write().unwrap_or_else(|e| e.into_inner()) = Some(sink);
    }

    pub fn init_userns(&self) -> u64 {
        self.init_userns
    }

    /// Start a change to the namespaces (see [`Txn`]): waits for any other change to end.
    fn begin(&self) -> Txn<'_> {
        let lock = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let next = self.reg().clone();
        Txn {
            daemon: self,
            _lock: lock,
            next,
        }
    }

    /// Wait for a change in progress to end and keep any other from starting (at shutdown).
    pub fn stop_changes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.hold_changes()
    }

    /// The canonical directories of the API socket and the seccomp receiver's socket (not
    /// `/`), which members must not be able to change: resolved once, at start.
    fn socket_dirs_of(config: &Config) -> Vec<String> {
        let mut dirs: Vec<String> = [&config.socket, &config.seccomp_socket]
            .into_iter()
            .filter_map(|s| s.parent())
            // Made here if missing (binding the sockets, later, makes them anyway).
            .map(|d| {
                let _ = std::fs::create_dir_all(d);
                d.canonicalize().unwrap_or_else(|_| d.to_path_buf())
            })
            .filter(|d| !d.as_os_str().is_empty() && d != std::path::Path::new("/"))
            .map(|d| d.display().to_string())
            .collect();
        dirs.dedup();
        dirs
    }

    /// Hold off changes to the namespaces without making one (the registry stays as it is
    /// while the guard lives).
    fn hold_changes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.changes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The registry, read-locked (see [`SharedRegistry::read`]).
    fn reg(&self) -> RegistryRead<'_> {
        self.registry.read()
    }

    /// Make the kernel's namespace table and the bpffs instances match the stored registry
    /// (after a crash between a database commit and the kernel update, or after a reboot).
    pub fn reconcile(&self) -> Result<Vec<String>, Failure> {
        let _g = self.hold_changes();
        let reg = self.reg();
        let mut notes = Vec::new();
        match self.bpffs.prepare() {
            Ok(bpfns_sys::fs::OwnMount::Was) => {}
            Ok(bpfns_sys::fs::OwnMount::Made) => notes.push(format!(
                "made {} a mount point of its own (members detach the other namespaces' \
                 bpffs instances in one call)",
                self.config.ns_bpffs_dir.display()
            )),
            Ok(bpfns_sys::fs::OwnMount::MountsBelow) => notes.push(format!(
                "{} is no mount point of its own and instances are mounted below it: members \
                 detach them one by one (slower with many namespaces) until the next reboot",
                self.config.ns_bpffs_dir.display()
            )),
            Err(e) => notes.push(format!(
                "FAILED to make the bpffs instances' directory a mount point ({e}): members \
                 detach them one by one"
            )),
        }
        // id -> (parent, depth, allow_tracing)
        let want: HashMap<NsId, (NsId, u32, bool)> = reg
            .kernel_parent_table()
            .into_iter()
            .map(|(id, p, d)| {
                let tracing = reg
                    .effective_policy(id)
                    .is_some_and(|x| x.allows_some_tracing());
                (id, (p, d, tracing))
            })
            .collect();
        let have: HashMap<NsId, (NsId, u32, bool)> = self
            .kernel
            .namespace_entries()
            .map_err(Failure::internal)?
            .into_iter()
            .map(|e| (e.id, (e.parent, e.depth, e.allow_tracing)))
            .collect();
        // One namespace that cannot be put right does not keep bpfnsd from starting: it is
        // reported, and (the kernel side failing closed for a namespace without its limit) its
        // tasks cannot create objects until it is.
        // Cgroup bindings of namespaces the registry does not have (deleted while a removal
        // failed): nothing may be tagged into them.
        match self.kernel.cgroup_bindings() {
            Ok(bindings) => {
                for (_, _, ns) in bindings {
                    if !want.contains_key(&ns) && !have.contains_key(&ns) {
                        if let Err(e) = self.kernel.unbind_cgroups(ns) {
                            notes.push(format!(
                                "FAILED to drop the cgroup bindings of namespace {ns} (not in \
                                 the registry): {e}"
                            ));
                        }
                    }
                }
            }
            Err(e) => notes.push(format!("FAILED to read the cgroup bindings: {e}")),
        }
        for id in have.keys() {
            if !want.contains_key(id) {
                match self.kernel.remove_namespace(*id) {
                    Ok(()) => notes.push(format!(
                        "removed namespace {id} from the kernel table (not in the registry)"
                    )),
                    Err(e) => notes.push(format!(
                        "FAILED to remove namespace {id} (not in the registry) from the kernel \
                         table: {e}"
                    )),
                }
            }
        }
        for (id, w @ (p, d, tracing)) in &want {
            let one = |notes: &mut Vec<String>| -> Result<(), Restore> {
                // The limit first: a namespace is never in the kernel's table without it.
                if let Some(limit) = reg.max_objects(*id) {
                    let q = self.kernel.namespace_quota(*id).map_err(Restore::Kernel)?;
                    if q.limit != Some(u64::from(limit)) {
                        self.kernel
                            .set_namespace_limit(*id, u64::from(limit))
                            .map_err(Restore::Kernel)?;
                        notes.push(format!(
                            "restored the limit of namespace {id} ({limit} objects)"
                        ));
                    }
                    let kinds = reg.kind_limits(*id);
                    let want = kernel_kind_limits(kinds);
                    if q.kinds.map(|k| k.limit) != want {
                        self.kernel
                            .set_namespace_kind_limits(*id, want)
                            .map_err(Restore::Kernel)?;
                        notes.push(format!(
                            "restored the limits per kind of namespace {id} ({kinds:?})"
                        ));
                    }
                }
                if have.get(id) != Some(w) {
                    self.kernel
                        .set_namespace_policy(*id, *p, *d, *tracing)
                        .map_err(Restore::Kernel)?;
                    notes.push(format!("restored namespace {id} in the kernel table"));
                }
                let types = kernel_types(&reg.effective_policy(*id).unwrap_or_default());
                if self.kernel.namespace_types(*id).map_err(Restore::Kernel)? != types {
                    self.kernel
                        .set_namespace_types(*id, types)
                        .map_err(Restore::Kernel)?;
                    notes.push(format!(
                        "restored the program and map types of namespace {id} in the kernel side"
                    ));
                }
                if !self.bpffs.is_mounted(*id) {
                    self.bpffs.ensure(*id).map_err(Restore::Bpffs)?;
                    notes.push(format!("mounted the bpffs of namespace {id}"));
                }
                Ok(())
            };
            if let Err(e) = one(&mut notes) {
                notes.push(format!(
                    "FAILED to restore namespace {} ({id}): {e}; its tasks cannot create objects \
                     until it is (restart bpfnsd once the cause is gone)",
                    reg.path(*id)
                        .map_or_else(|| "?".to_string(), |p| p.to_string())
                ));
            }
        }
        for id in self.bpffs.mounted_ids() {
            if !want.contains_key(&id) {
                let _ = bpfns_sys::fs::unmount_detach(&self.bpffs.path(id));
                notes.push(format!("unmounted the bpffs of unknown namespace {id}"));
            }
        }
        // Counts lost while no bpfnsd ran (or in an upgrade from a kernel side without them).
        for id in self
            .kernel
            .sync_quota_counters()
            .map_err(Failure::internal)?
        {
            notes.push(format!(
                "recounted the ownership records of namespace {id} from the table"
            ));
        }
        Ok(notes)
    }

    /// Answer one request from `caller`; `fds` came with it.
    pub fn handle(
        &self,
        caller: &Caller,
        req: Request,
        fds: Vec<OwnedFd>,
    ) -> (Outgoing, Vec<OwnedFd>) {
        self.handle_prepared(caller, req, fds, Prepared::default())
    }

    /// [`Daemon::handle`], from the walk `prepared` holds if it holds one.
    pub fn handle_prepared(
        &self,
        caller: &Caller,
        req: Request,
        fds: Vec<OwnedFd>,
        prepared: Prepared,
    ) -> (Outgoing, Vec<OwnedFd>) {
        let Prepared { census, listing } = prepared;
        let seq = req.seq;
        if req.v != PROTOCOL_VERSION {
            return (
                Outgoing::Response(Response::error(
                    seq,
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "protocol version {} is not supported; this bpfnsd speaks {PROTOCOL_VERSION}",
                        req.v
                    ),
                )),
                Vec::new(),
            );
        }
        let started = std::time::Instant::now();
        let op = req.op.name();
        let named = Named::of(&req.op);
        let changes = changes_something(&req.op);
        let answer = match req.op {
            // Written as it is gathered: megabytes at 10 000 namespaces.
            Op::NsList => self
                .permit(caller, &req.op)
                .and_then(|()| no_fds(&fds))
                .and_then(|()| self.ns_list(caller, seq, census))
                .map(|frame| (Outgoing::Frame(frame), Vec::new())),
            // The same: 100 000 maps are tens of megabytes, written as they are converted.
            Op::List {
                kind,
                ref namespace,
                recursive,
                run_stats,
            } => self
                .permit(caller, &req.op)
                .and_then(|()| no_fds(&fds))
                .and_then(|()| {
                    self.list_frame(
                        caller,
                        seq,
                        (kind, listing),
                        namespace.as_deref(),
                        recursive,
                        run_stats,
                    )
                })
                .map(|frame| (Outgoing::Frame(frame), Vec::new())),
            op => self
                .dispatch(caller, op, fds, Prepared { census, listing })
                .map(|(reply, fds)| {
                    let mut r = Response::ok(seq, reply);
                    r.fds = fds.len() as u32;
                    (Outgoing::Response(r), fds)
                }),
        };
        // A change is answered once durable (the change lock was let go by now: the changes
        // that wait together share one durable commit); a failed one too, for what it stored
        // before failing ("stored, but the kernel ...").
        let answer = match (answer, changes.then(|| self.store.make_durable())) {
            (Ok(_), Some(Err(e))) => Err(Failure::internal(format!("{e}; restart bpfnsd"))),
            (answer, _) => answer,
        };
        self.account(caller, op, named, started, answer.as_ref().err());
        answer.unwrap_or_else(|f| {
            (
                Outgoing::Response(Response::error(seq, f.code, f.message)),
                Vec::new(),
            )
        })
    }

    /// A request answered: counted in the metrics (by `op` and outcome, with its latency
    /// since `started`), and, if it was refused for lack of permission, reported (see
    /// [`Daemon::on_api_denial`]).
    pub(crate) fn account(
        &self,
        caller: &Caller,
        op: &'static str,
        named: Named,
        started: std::time::Instant,
        failure: Option<&Failure>,
    ) {
        let outcome = match failure {
            None => "ok".to_string(),
            Some(f) => serde_json::to_value(f.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "error".into()),
        };
        self.metrics
            .observe(op, &outcome, started.elapsed().as_secs_f64());
        if let Some(f) = failure.filter(|f| f.code == ErrorCode::Denied) {
            self.on_api_denial(caller, op, named, &f.message);
        }
    }

    /// Refused unless `caller` may make a request of `op`'s kind at all.
    fn permit(&self, caller: &Caller, op: &Op) -> Result<(), Failure> {
        let allowed = match op {
            Op::List { .. } | Op::Show { .. } | Op::EnableStats => caller.may_list_objects(),
            Op::NsList
            | Op::NsShow { .. }
            | Op::MemberPlan { .. }
            | Op::Status
            | Op::NsPs { .. }
            | Op::NsIdentify { .. } => caller.may_list_namespaces(),
            _ => true,
        };
        if !allowed {
            // Never more than the kernel would give: listing ids needs these rights there too.
            // (Logged and published as every refusal: `account`.)
            return Err(Failure::new(
                ErrorCode::Denied,
                if caller.ns == NsId::ROOT {
                    "permission denied: listing BPF objects and namespaces needs CAP_BPF or \
                     CAP_SYS_ADMIN in the initial user namespace, as the kernel's own \
                     BPF_*_GET_NEXT_ID does (run as root, or grant CAP_BPF)"
                } else {
                    "permission denied: listing BPF objects needs CAP_BPF or CAP_SYS_ADMIN in \
                     your user namespace, as inside the namespace the kernel's own \
                     BPF_*_GET_NEXT_ID does"
                },
            ));
        }
        Ok(())
    }

    fn dispatch(
        &self,
        caller: &Caller,
        op: Op,
        fds: Vec<OwnedFd>,
        Prepared { census, listing }: Prepared,
    ) -> Answer {
        self.permit(caller, &op)?;
        match op {
            Op::Hello => {
                no_fds(&fds)?;
                Ok((
                    Reply::Hello {
                        server: format!("bpfnsd {}", env!("CARGO_PKG_VERSION")),
                        protocol: PROTOCOL_VERSION,
                        caller: self.caller_info(caller),
                    },
                    vec![],
                ))
            }
            Op::NsCreate {
                path,
                policy,
                max_objects,
                limits,
                cgroup,
            } => {
                no_fds(&fds)?;
                self.ns_create(
                    caller,
                    &path,
                    policy,
                    (max_objects, limits),
                    cgroup.as_deref(),
                )
            }
            Op::NsSetQuota {
                path,
                max_objects,
                limits,
            } => {
                no_fds(&fds)?;
                self.ns_set_quota(caller, &path, max_objects, limits)
            }
            Op::NsSetPolicy { path, policy } => {
                no_fds(&fds)?;
                self.ns_set_policy(caller, &path, policy)
            }
            Op::NsDelete { path, force } => {
                no_fds(&fds)?;
                self.ns_delete(caller, &path, force)
            }
            // Answered in `handle`.
            Op::NsList => Err(Failure::internal(
                "a namespace listing is answered before it is dispatched",
            )),
            Op::NsShow { path } => {
                no_fds(&fds)?;
                let id = self.visible_ns(caller, &path)?;
                Ok((
                    Reply::Namespace(self.ns_info_with(id, &path, census)?),
                    vec![],
                ))
            }
            Op::MemberPlan { path } => {
                no_fds(&fds)?;
                let id = self.visible_ns(caller, &path)?;
                let me = self.caller_info(caller);
                let reg = self.reg();
                let plan = bpfns_proto::MemberPlan {
                    caller: me,
                    path: reg.path(id).map(|p| p.to_string()).unwrap_or(path),
                    bpffs: self.bpffs.path(id).display().to_string(),
                    policy: reg.effective_policy(id).unwrap_or_default(),
                    // Only a host administrator outside namespaces hides it from its members.
                    state_dir: if caller.ns == NsId::ROOT && caller.host_admin() {
                        self.config.state_dir.display().to_string()
                    } else {
                        String::new()
                    },
                    supervised_creations: self.supervises_creations(),
                    socket_dirs: if caller.ns == NsId::ROOT && caller.host_admin() {
                        self.socket_dirs.clone()
                    } else {
                        Vec::new()
                    },
                };
                Ok((Reply::MemberPlan(plan), vec![]))
            }
            Op::Enter { path, pid } => {
                no_fds(&fds)?;
                self.enter(caller, &path, pid)
            }
            Op::EnterContainer { path, pid } => {
                no_fds(&fds)?;
                self.enter_container(caller, &path, pid)
            }
            Op::ContainerNamespace {
                id,
                name,
                annotations,
                bundle,
                state_dir,
            } => {
                no_fds(&fds)?;
                self.container_namespace(
                    caller,
                    containers::ContainerRequest {
                        facts: bpfns_model::container::ContainerFacts {
                            id,
                            name,
                            annotations,
                        },
                        bundle,
                        state_dir,
                    },
                )
            }
            Op::ContainerDeleted { id, state_dir } => {
                no_fds(&fds)?;
                self.container_deleted(caller, &id, state_dir.as_deref())
            }
            Op::ContainerBpffs { path, pid } => {
                no_fds(&fds)?;
                self.container_bpffs(caller, &path, pid)
            }
            Op::Supervise { pid } => self.supervise(caller, pid, fds),
            Op::List { .. } => unreachable!("answered by Daemon::handle"),
            Op::EnableStats => {
                no_fds(&fds)?;
                if caller.ns != NsId::ROOT && !self.config.member_stats {
                    return Err(Failure::new(
                        ErrorCode::Denied,
                        "permission denied: this bpfnsd does not let namespace members turn BPF \
                         run-time statistics on (member_stats = false in bpfnsd.toml); the host \
                         administrator can (bpfns top as root), or set member_stats = true",
                    ));
                }
                let fd = bpfns_sys::bpf::enable_run_time_stats().map_err(Failure::internal)?;
                tracing::info!(
                    pid = caller.pid,
                    ns = %caller.ns,
                    "BPF run-time statistics on while the caller holds them"
                );
                Ok((Reply::StatsEnabled, vec![fd]))
            }
            Op::Show { kind, id } => {
                no_fds(&fds)?;
                let o = self
                    .visible_owned(caller, (kind, listing), None, Some(id))?
                    .collect::<Vec<_>>()
                    .pop()
                    .ok_or_else(|| not_visible(kind, id))?;
                Ok((Reply::Object(Box::new(o)), vec![]))
            }
            Op::GetFd {
                kind,
                id,
                read_only,
            } => self.get_fd(caller, kind, id, read_only, fds),
            Op::Status => {
                no_fds(&fds)?;
                self.status(caller)
            }
            Op::WhyStopped { pid } => {
                no_fds(&fds)?;
                self.why_stopped(caller, pid)
            }
            Op::NsPs { path, recursive } => {
                no_fds(&fds)?;
                self.ns_ps(caller, &path, recursive)
            }
            Op::NsIdentify { pid } => {
                no_fds(&fds)?;
                self.ns_identify(caller, pid)
            }
            // The API server keeps a subscription's connection itself.
            Op::Events { .. } => Err(Failure::new(
                ErrorCode::BadRequest,
                "`events` is a subscription: send it on a connection of its own",
            )),
        }
    }

    /// The member processes of namespace `path` (and, with `recursive`, of those below it),
    /// by pid. Like `ns_show`: the caller's own namespace and below only.
    fn ns_ps(&self, caller: &Caller, path: &str, recursive: bool) -> Answer {
        let id = self.visible_ns(caller, path)?;
        let (wanted, names): (std::collections::HashSet<NsId>, HashMap<NsId, String>) = {
            let reg = self.reg();
            let ids = if recursive { reg.subtree(id) } else { vec![id] };
            let names = ids.iter().map(|&i| (i, self_path(&reg, i))).collect();
            (ids.into_iter().collect(), names)
        };
        // Tagged tasks are threads: one row per process (and namespace).
        let mut seen = std::collections::BTreeSet::new();
        for t in self.kernel.tagged_tasks().map_err(Failure::internal)? {
            if wanted.contains(&t.ns) {
                seen.insert((t.tgid, t.ns));
            }
        }
        let processes = seen
            .into_iter()
            .filter_map(|(pid, ns)| {
                let facts = ProcFacts::read(pid)?;
                Some(facts.info(pid, names.get(&ns).cloned()?, ns))
            })
            .collect();
        Ok((Reply::Processes { processes }, vec![]))
    }

    /// Which namespace process `pid` is in. A process outside the caller's namespace and
    /// below is "not found", as one that does not exist (its existence is not the caller's
    /// to learn).
    fn ns_identify(&self, caller: &Caller, pid: i32) -> Answer {
        let hidden = || {
            Failure::new(
                ErrorCode::NotFound,
                format!("no process {pid} is visible to you"),
            )
        };
        if pid <= 0 {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!("{pid} is not a process id"),
            ));
        }
        let pidfd = bpfns_sys::process::open_pidfd(pid).map_err(|_| hidden())?;
        let ns = self
            .kernel
            .task_ns(pidfd.as_fd())
            .map_err(Failure::internal)?;
        let name = {
            let reg = self.reg();
            if !reg.visible(caller.ns, ns) {
                return Err(hidden());
            }
            owner_name(&reg, ns)
        };
        let facts = ProcFacts::read(pid).ok_or_else(hidden)?;
        // Read by pid: still the process the pidfd names?
        if !bpfns_sys::unix::pidfd_alive(pidfd.as_fd()) {
            return Err(hidden());
        }
        Ok((Reply::Process(facts.info(pid, name, ns)), vec![]))
    }

    /// What the kernel side did to `pid`, a child of the caller: its events reach bpfnsd
    /// through the ring buffer a moment after the kill, so wait a little for them.
    fn why_stopped(&self, caller: &Caller, pid: i32) -> Answer {
        let _pidfd = self.own_child(caller, pid)?;
        // Only events of the caller's own subtree: a pid may have been another namespace's
        // task before it was the caller's child. Outside namespaces, as for listings.
        if !caller.may_list_namespaces() {
            return Err(Failure::new(
                ErrorCode::Denied,
                "permission denied: needs CAP_BPF or CAP_SYS_ADMIN in the initial user namespace",
            ));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        loop {
            let events: Vec<String> = self
                .recent_stops
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(p, ns, _)| {
                    i64::from(*p) == i64::from(pid)
                        && self.reg().is_same_or_ancestor(caller.ns, *ns)
                })
                .map(|(_, _, l)| l.clone())
                .collect();
            if !events.is_empty() || std::time::Instant::now() >= deadline {
                return Ok((Reply::Stopped { pid, events }, vec![]));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn caller_info(&self, caller: &Caller) -> CallerInfo {
        CallerInfo {
            pid: caller.pid,
            uid: caller.uid,
            namespace: self.ns_name(caller.ns),
            host_admin: caller.host_admin(),
            cap_bpf: caller.cap_bpf(),
        }
    }

    /// The tenant of namespace `id`: its top-level ancestor (see `Registry::tenant_of`).
    pub fn tenant_of(&self, id: NsId) -> NsId {
        self.reg().tenant_of(id)
    }

    /// A namespace's path, or `ns:<id>` for an id the registry does not know.
    pub fn ns_name(&self, id: NsId) -> String {
        owner_name(&self.reg(), id)
    }

    fn parse_path(path: &str) -> Result<NsPath, Failure> {
        NsPath::parse(path).map_err(|e| Failure::new(ErrorCode::BadRequest, e.to_string()))
    }

    /// Resolve `path` if the caller may see it (its own namespace and below): others are
    /// "not found", as if they did not exist.
    fn visible_ns(&self, caller: &Caller, path: &str) -> Result<NsId, Failure> {
        visible_in(&self.reg(), caller, &Self::parse_path(path)?)
    }

    fn ns_create(
        &self,
        caller: &Caller,
        path: &str,
        policy: Policy,
        (max_objects, kind_limits): (Option<u32>, quota::KindLimits),
        cgroup: Option<&str>,
    ) -> Answer {
        let p = Self::parse_path(path)?;
        let cgroup = cgroup.map(cgroup::canonical).transpose()?;
        let mut tx = self.begin();
        may_create(&tx.next, caller.policy(), &p)?;
        self.check_namespace_count(&tx.next, caller, &p)?;
        let next = &mut tx.next;
        if let Some(parent) = p.parent().and_then(|pp| next.id(&pp)) {
            if self.is_deleting(parent) {
                return Err(Failure::new(
                    ErrorCode::Conflict,
                    format!("its parent is being deleted; {p} was not created"),
                ));
            }
        }
        // No policy asked for: the default as far as the parent's allows.
        let policy = if policy.is_default() {
            next.default_policy_under(&p)
        } else {
            policy
        };
        let id = next.create_with_policy(&p, policy)?;
        let limit = quota::limit_for_new(next, &p, max_objects, quota_rules(&self.config))?;
        next.set_max_objects(id, limit);
        let kinds =
            quota::kind_limits_for_new(next, &p, kind_limits, limit, quota_rules(&self.config))?;
        next.set_kind_limits(id, kinds);
        if let Some(cg) = &cgroup {
            if let Some(why) = cgroup::refusal(next, id, cg, caller.ns)
                .or_else(|| cgroup::overlap(next, id, cg, caller.ns))
            {
                return Err(Failure::new(
                    ErrorCode::Denied,
                    format!("{p} was not created: {why}"),
                ));
            }
            next.set_cgroup(id, cg.clone());
        }
        let (parent, depth) = (
            next.parent(id).unwrap_or(NsId::ROOT),
            next.depth(id).unwrap_or(0),
        );
        // The kernel's entries and the bpffs first, the registry last: a failure on the way
        // takes back what was done, so a namespace is either complete or not there. (After a
        // crash between the two, the next start's reconciliation drops what the registry does
        // not have.) The limit comes before the table entry: the kernel never sees the
        // namespace without it.
        let undo = |failure: Failure| {
            let _ = self.kernel.remove_namespace(id);
            let _ = self.bpffs.unmount(id);
            tracing::warn!(namespace = %p, "creating the namespace failed: {}; nothing changed", failure.message);
            Failure::new(
                failure.code,
                format!("{p} was not created (nothing changed): {}", failure.message),
            )
        };
        self.kernel
            .set_namespace_limit(id, u64::from(limit))
            .and_then(|()| self.kernel.set_namespace_types(id, kernel_types(&policy)))
            .and_then(|()| {
                self.kernel
                    .set_namespace_kind_limits(id, kernel_kind_limits(kinds))
            })
            .and_then(|()| {
                self.kernel
                    .set_namespace_policy(id, parent, depth, policy.allows_some_tracing())
            })
            .map_err(|e| undo(Failure::internal(e)))?;
        self.bpffs
            .ensure(id)
            .map_err(|e| undo(Failure::internal(e)))?;
        tx.commit().map_err(undo)?;
        tracing::info!(namespace = %p, %id, caller = caller.pid, %policy, max_objects = limit, cgroup = cgroup.as_deref().unwrap_or(""), "created namespace");
        // The registry committed (`tx.next` is moved into it by the commit).
        self.publish_change(EventKind::NsCreated, &self.reg(), id, caller, Some(policy));
        // A new namespace owns nothing and has no members (ids are never reused, and tasks
        // enter only through later requests): no need to walk every object and task.
        let reg = self.reg();
        let info = self
            .new_ns_info(&reg, id)
            .ok_or_else(|| Failure::internal(format!("{p} is missing right after its creation")))?;
        drop(reg);
        drop(tx);
        Ok((Reply::Namespace(info), vec![]))
    }

    /// `bpfns ns quota`: new limits, stored first, then written to the kernel (a crash between
    /// the two: the next start's reconciliation writes them).
    fn ns_set_quota(
        &self,
        caller: &Caller,
        path: &str,
        max_objects: Option<u32>,
        limits: quota::KindLimits,
    ) -> Answer {
        let p = Self::parse_path(path)?;
        let mut tx = self.begin();
        let id = visible_in(&tx.next, caller, &p)?;
        may_set_policy(&tx.next, caller.policy(), id)?;
        let (total, kinds) =
            quota::change_limits(&tx.next, id, max_objects, limits, quota_rules(&self.config))?;
        tx.next.set_max_objects(id, total);
        tx.next.set_kind_limits(id, kinds);
        tx.commit()?;
        self.kernel
            .set_namespace_limit(id, u64::from(total))
            .and_then(|()| {
                self.kernel
                    .set_namespace_kind_limits(id, kernel_kind_limits(kinds))
            })
            .map_err(|e| {
                Failure::internal(format!(
                    "the limits of {p} are stored but writing them to the kernel failed: {e}; \
                     restart bpfnsd to write them"
                ))
            })?;
        tracing::info!(namespace = %p, %id, caller = caller.pid, max_objects = total, limits = ?kinds, "set namespace limits");
        self.publish_change(EventKind::NsQuotaChanged, &self.reg(), id, caller, None);
        drop(tx);
        Ok((Reply::Namespace(self.ns_info_of(id, &p)?), vec![]))
    }

    fn ns_set_policy(&self, caller: &Caller, path: &str, policy: Policy) -> Answer {
        let p = Self::parse_path(path)?;
        let mut tx = self.begin();
        let id = visible_in(&tx.next, caller, &p)?;
        may_set_policy(&tx.next, caller.policy(), id)?;
        tx.next.set_policy(&p, policy)?;
        let (parent, depth) = (
            tx.next.parent(id).unwrap_or(NsId::ROOT),
            tx.next.depth(id).unwrap_or(0),
        );
        // Durable first: if we crash after this, reconcile() finishes the kernel part.
        tx.commit()?;
        // The types first: the tracing bit may widen, and the backstop then checks types.
        self.kernel
            .set_namespace_types(id, kernel_types(&policy))
            .and_then(|()| {
                self.kernel
                    .set_namespace_policy(id, parent, depth, policy.allows_some_tracing())
            })
            .map_err(Failure::internal)?;
        tracing::info!(namespace = %p, %id, caller = caller.pid, %policy, "set namespace policy");
        self.publish_change(
            EventKind::NsPolicyChanged,
            &self.reg(),
            id,
            caller,
            Some(policy),
        );
        drop(tx);
        Ok((Reply::Namespace(self.ns_info_of(id, &p)?), vec![]))
    }

    fn ns_delete(&self, caller: &Caller, path: &str, force: bool) -> Answer {
        let p = Self::parse_path(path)?;
        if p.is_root() {
            return Err(Failure::new(
                ErrorCode::Denied,
                "the root namespace cannot be deleted",
            ));
        }
        // Records of objects already freed (tools probe features with short-lived objects)
        // would inflate the count of moved objects: drop them first, before queueing for
        // the change lock (the walk is not needed under it), and only for a caller that may
        // delete (checked again under the lock).
        // (Resolve first: visible_ns takes the registry's read lock itself, and a second read
        // lock while a writer waits would deadlock.)
        let early = self.visible_ns(caller, path)?;
        may_delete(&self.reg(), caller.policy(), early)?;
        // Its own records only (it has no child by now, or the deletion is refused below):
        // a collection over every object on the host made each deletion a walk. None at all
        // when its counters say it has no record (a read of the whole table costs a
        // millisecond even empty).
        let gone = if self.may_have_records(early) {
            self.kernel
                .collect_garbage_of_listed(early)
                .map_err(Failure::internal)?
        } else {
            Vec::new()
        };
        self.collected
            .fetch_add(gone.len() as u64, std::sync::atomic::Ordering::Relaxed);
        // Reported now: once the namespace is gone, no event could name it.
        self.publish_gone(&gone);
        // Members are killed, and waited for, before the change lock is taken, never under
        // it: one that does not go keeps only this request waiting. Whether any is left is
        // checked again under the lock.
        if force {
            let members = self.members_of(early)?;
            if !members.is_empty() {
                self.kill_members(&p, early, &members)?;
            }
        }
        let tx = self.begin();
        let (id, parent, parent_path) = {
            let reg = &tx.next;
            let id = visible_in(reg, caller, &p)?;
            may_delete(reg, caller.policy(), id)?;
            let kids = reg.children(id);
            if !kids.is_empty() {
                return Err(Failure::new(
                    ErrorCode::Conflict,
                    format!(
                        "namespace {p} has {} child namespace(s); delete them first",
                        kids.len()
                    ),
                ));
            }
            let parent = reg.parent(id).unwrap_or(NsId::ROOT);
            (id, parent, self_path(reg, parent))
        };
        // Marked as being deleted, the namespace takes no member and no child; the change
        // lock is let go while its members are looked for (a walk of every task) and its pins
        // are copied into the parent's bpffs, a directory the parent's members write (and may
        // keep busy): that stalls this deletion only.
        if !self
            .deleting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id)
        {
            return Err(Failure::new(
                ErrorCode::Conflict,
                format!("namespace {p} is being deleted already"),
            ));
        }
        let _marked = Unmark(&self.deleting, id);
        drop(tx);
        // Entering takes the change lock: a member that entered before the mark is tagged by
        // now, and none enters after it.
        let members = self.members_of(id)?;
        if !members.is_empty() {
            let shown: Vec<String> = members.iter().take(8).map(|t| t.to_string()).collect();
            return Err(Failure::new(
                ErrorCode::Conflict,
                format!(
                    "namespace {p} still has {} member task(s) (tids {}{}); {}",
                    members.len(),
                    shown.join(", "),
                    if members.len() > 8 { ", ..." } else { "" },
                    if force {
                        "they were killed but had not gone yet, or entered meanwhile: try again"
                    } else {
                        "stop them first, or delete with --force, which kills them"
                    }
                ),
            ));
        }
        // Everything that can fail comes before the registry's commit and is undone if a
        // later step fails: the pins are copied (the originals stay until the end), the
        // ownership records moved (and moved back on failure).
        let name = p.name().unwrap_or("ns").to_string();
        // Only the namespace's own objects (and those of any namespace below it) go to the
        // parent: a pin of anyone else's object in its tree stays behind, and goes with it.
        let subtree: std::collections::HashSet<NsId> = self.reg().subtree(id).into_iter().collect();
        let owns = |kind: ObjectKind, oid: u32| {
            self.kernel
                .owner(kind, oid)
                .map(|owner| subtree.contains(&owner))
        };
        let mut pins = self
            .bpffs
            .repin_to_parent(id, &name, parent, &owns)
            .map_err(|e| {
                if e.is_in_the_way() {
                    let f = self.delete_failed(&p, "copying its pins to its parent's bpffs", e);
                    Failure::new(
                        ErrorCode::Conflict,
                        format!(
                            "{} (orphans/ in the parent's bpffs must be a directory of that \
                             bpffs: remove what is there, or move it away)",
                            f.message
                        ),
                    )
                } else {
                    self.delete_failed(&p, "copying its pins to its parent's bpffs", e)
                }
            })?;
        let mut tx = self.begin();
        // The kernel side's bindings of cgroups to it go first (a container's, in every
        // hierarchy): nothing moved, cloned or exec'ing into those cgroups is tagged with it
        // from here on, so the walk below is the last word. Put back if the deletion goes no
        // further.
        let unbound = match self.kernel.unbind_cgroups_listed(id) {
            Ok(u) => u,
            Err(e) => {
                pins.undo();
                return Err(self.delete_failed(&p, "dropping its cgroup bindings", e));
            }
        };
        let undo = |pins: &mut crate::bpffs::Repinned| {
            for &(h, cg) in &unbound {
                if let Err(e) = self.kernel.bind_cgroup(h, cg, id) {
                    tracing::warn!(namespace = %p, "binding cgroup {cg} (hierarchy {h}) to it again: {e}");
                }
            }
            pins.undo();
        };
        // Looked for again under the lock: a walk of every task is a snapshot in pid order,
        // which a process changing pids (exec from a later thread) may slip past; two walks it
        // must slip past.
        let members = match self.members_of(id) {
            Ok(m) => m,
            Err(f) => {
                undo(&mut pins);
                return Err(f);
            }
        };
        if !members.is_empty() || !tx.next.children(id).is_empty() {
            undo(&mut pins);
            return Err(self.delete_failed(
                &p,
                "copying its pins",
                "it gained a member task or a child meanwhile",
            ));
        }
        // No member, so no record is made any more (it has no child either).
        let moved_records = match self.may_have_records(id) {
            false => Ok(Vec::new()),
            true => self.kernel.reassign_records(id, parent),
        };
        let moved_records = match moved_records {
            Ok(m) => m,
            Err(e) => {
                undo(&mut pins);
                return Err(self.delete_failed(&p, "moving its objects to its parent", e));
            }
        };
        let moved = moved_records.len();
        // Its chain as it was: the event goes to the subscribers of its subtree.
        let deleted_event = self.change_event(EventKind::NsDeleted, &tx.next, id, caller, None);
        let committed = tx
            .next
            .delete(&p)
            .map_err(Failure::from)
            .and_then(|_| tx.commit());
        if let Err(f) = committed {
            let _ = self.kernel.restore_owner(&moved_records, id);
            undo(&mut pins);
            tracing::warn!(namespace = %p, "deleting the namespace failed; nothing changed: {}", f.message);
            return Err(f);
        }
        // The cleanup below is not under the change lock (the instance and the table entry
        // are its id's, never reused), and waits until the deletion is durable: a crash
        // before leaves the namespace stored, with its bpffs.
        drop(tx);
        self.store
            .make_durable()
            .map_err(|e| Failure::internal(format!("{e}; restart bpfnsd")))?;
        // Deleted. What is left is cleanup, which a restart's reconciliation also finishes.
        if let Err(e) = self.bpffs.unmount(id) {
            tracing::warn!(namespace = %p, "unmounting its bpffs: {e} (retried at the next start)");
        }
        // Its cgroup bindings went before the last look for members.
        if let Err(e) = self.kernel.remove_namespace_entries(id) {
            tracing::warn!(
                namespace = %p,
                "removing it from the kernel's table: {e} (retried at the next start)"
            );
        }
        if let Some(dest) = &pins.dest {
            tracing::info!(namespace = %p, pins = pins.count(), to = %dest.display(), "moved its pins");
        }
        if !pins.left_behind.is_empty() {
            // Its members may have made thousands: one line, with the first few.
            let first: Vec<String> = pins
                .left_behind
                .iter()
                .take(5)
                .map(|(pin, why)| format!("{} ({why})", pin.display()))
                .collect();
            tracing::warn!(
                namespace = %p,
                "left {} entries of its bpffs behind, not copied to its parent: {}{}",
                pins.left_behind.len() + pins.left_behind_more,
                first.join(", "),
                if pins.left_behind.len() + pins.left_behind_more > first.len() {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        tracing::info!(namespace = %p, moved, "deleted namespace");
        if let Some((ev, chain, actor)) = deleted_event {
            self.events.publish_by(ev, &chain, &actor);
        }
        Ok((
            Reply::Deleted {
                path: p.to_string(),
                objects_moved_to: parent_path,
                objects_moved: moved as u32,
            },
            vec![],
        ))
    }

    /// Refuse a new namespace beyond what the kernel's tables hold, and a member's beyond
    /// `max_namespaces_per_tenant` in its tenant (its top-level namespace and all below).
    /// Host administrators set that limit for tenants; they are bound by the tables alone.
    fn check_namespace_count(
        &self,
        reg: &Registry,
        caller: &Caller,
        p: &NsPath,
    ) -> Result<(), Failure> {
        if reg.len() >= bpfns_kernel::abi::NS_CAPACITY as usize {
            return Err(Failure::new(
                ErrorCode::Conflict,
                format!(
                    "bpfns holds {} namespaces, as many as the kernel's tables take; delete \
                     some first",
                    reg.len()
                ),
            ));
        }
        if caller.ns == NsId::ROOT && caller.host_admin() {
            return Ok(());
        }
        let Some(top) = p.components().next() else {
            return Ok(());
        };
        let top = NsPath::parse(&format!("/{top}")).map_err(Failure::internal)?;
        let Some(tenant) = reg.id(&top) else {
            return Ok(()); // a new top-level namespace: a tenant of its own
        };
        let have = reg.subtree_len(tenant);
        let max = self.config.limits.max_namespaces_per_tenant as usize;
        if have >= max {
            return Err(Failure::new(
                ErrorCode::LimitReached,
                format!(
                    "namespace {top} already has {have} namespaces with those below it, its \
                     limit (max_namespaces_per_tenant in [limits] of bpfnsd.toml); delete \
                     some first"
                ),
            ));
        }
        Ok(())
    }

    /// Whether namespace `id` is being deleted (between its deletion's two steps).
    fn is_deleting(&self, id: NsId) -> bool {
        self.deleting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    /// The live tasks (thread ids) of namespace `id` (exited ones, zombies included, are not
    /// listed by the kernel side: they can do nothing).
    /// Whether namespace `id` may hold ownership records: unless its counters (each record
    /// is counted in its namespace and every ancestor, when made and when freed) add up to
    /// exactly none, in all and of each kind. Counters that cannot be read, or that went
    /// below zero, say it may.
    fn may_have_records(&self, id: NsId) -> bool {
        self.kernel
            .namespace_quota(id)
            .map_or(true, |q| !q.holds_none())
    }

    fn members_of(&self, id: NsId) -> Result<Vec<i32>, Failure> {
        Ok(self
            .kernel
            .tagged_tasks()
            .map_err(Failure::internal)?
            .into_iter()
            .filter(|t| t.ns == id)
            .map(|t| t.tid)
            .collect())
    }

    /// Kill (SIGKILL) the processes of the member tasks `tids` of namespace `id` and wait, a
    /// few seconds at most, until none is left. Never called with the change lock held.
    fn kill_members(&self, p: &NsPath, id: NsId, tids: &[i32]) -> Result<(), Failure> {
        let mut killed = std::collections::BTreeSet::new();
        for &tid in tids {
            let Ok(tgid) = bpfns_sys::process::thread_group_of(tid) else {
                continue; // gone already
            };
            if !killed.insert(tgid) {
                continue;
            }
            // Through a pidfd checked to be a member still: a recycled pid is never killed.
            let Ok(pidfd) = bpfns_sys::process::open_pidfd(tgid) else {
                continue;
            };
            if self.kernel.task_ns(pidfd.as_fd()).ok() != Some(id) {
                continue;
            }
            match bpfns_sys::unix::pidfd_kill(pidfd.as_fd()) {
                Ok(()) => {
                    tracing::info!(namespace = %p, pid = tgid, "killed a member to delete its namespace")
                }
                Err(e) => tracing::warn!(namespace = %p, pid = tgid, "killing a member: {e}"),
            }
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !self.members_of(id)?.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }

    /// A deletion that failed at `step` and changed nothing: logged, and the error for the
    /// caller.
    fn delete_failed(&self, p: &NsPath, step: &str, e: impl std::fmt::Display) -> Failure {
        tracing::warn!(namespace = %p, "deleting the namespace failed while {step}: {e}; nothing changed");
        Failure::new(
            ErrorCode::Internal,
            format!("deleting {p} failed while {step}: {e}; nothing was changed"),
        )
    }

    fn enter(&self, caller: &Caller, path: &str, pid: i32) -> Answer {
        let p = Self::parse_path(path)?;
        // Not while the namespace is being deleted.
        let _g = self.hold_changes();
        let target = {
            let reg = self.reg();
            let id = reg
                .id(&p)
                .ok_or_else(|| Failure::new(ErrorCode::NotFound, format!("no namespace {p}")))?;
            may_enter(&reg, caller.policy(), id)?;
            id
        };
        if self.is_deleting(target) {
            return Err(Failure::new(
                ErrorCode::Conflict,
                format!("namespace {p} is being deleted"),
            ));
        }
        let pidfd = self.own_child(caller, pid)?;
        let current = self
            .kernel
            .task_ns(pidfd.as_fd())
            .map_err(Failure::internal)?;
        if current != caller.ns {
            return Err(Failure::new(
                ErrorCode::Denied,
                format!("process {pid} is not in your namespace; only a fresh child can enter"),
            ));
        }
        self.tag_process(
            pidfd.as_fd(),
            pid,
            target,
            0,
            "; enter a single-threaded process (a fresh child)",
        )?;
        tracing::info!(pid, namespace = %p, caller = caller.pid, "process entered namespace");
        self.publish_entered(target, pid);
        // Not under the lock for namespace changes: binding takes it.
        drop(_g);
        // Only host root's enter binds: a member can move itself into any cgroup it may
        // write, so a binding made from its child's cgroup would be one it chose. A
        // namespace a member starts stays unbound unless created with `--cgroup`.
        if caller.ns == NsId::ROOT && caller.host_admin() {
            self.bind_first_cgroup(target, &p, pid);
        } else if self.reg().cgroup(target).is_none() {
            tracing::info!(namespace = %p, pid, caller = caller.pid, "the namespace stays bound to no cgroup (its members may attach to none): only an enter by host root binds the first member's cgroup; fix: bpfns ns create --cgroup PATH (inside the cgroup of a bound ancestor)");
        }
        Ok((
            Reply::Entered {
                path: p.to_string(),
                pid,
            },
            vec![],
        ))
    }

    /// A pidfd for `pid` if it is a live child of the caller.
    fn own_child(&self, caller: &Caller, pid: i32) -> Result<OwnedFd, Failure> {
        let gone = || Failure::new(ErrorCode::NotFound, format!("no process {pid}"));
        let pidfd = bpfns_sys::process::open_pidfd(pid).map_err(|_| gone())?;
        if parent_pid(pid).ok_or_else(gone)? != caller.pid {
            return Err(Failure::new(
                ErrorCode::Denied,
                format!(
                    "process {pid} is not a child of the caller ({})",
                    caller.pid
                ),
            ));
        }
        Ok(pidfd)
    }

    fn supervise(&self, caller: &Caller, pid: i32, mut fds: Vec<OwnedFd>) -> Answer {
        if fds.is_empty() || fds.len() > 2 {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                "supervise takes the seccomp listener and, optionally, an in-flight record (a memfd)",
            ));
        }
        // Check what was handed over before looking at anything else: bpfnsd writes into the
        // record (a pipe could block it, a regular file would be changed) and serves the
        // listener (anything else would only fail later, less clearly).
        let in_flight = match fds.len() {
            2 => {
                let fd = fds.remove(1);
                let kind = fd_kind(fd.as_fd());
                let memfd = kind.starts_with("/memfd:");
                match bpfns_sys::seccomp::InFlight::from_fd(fd) {
                    Ok(f) if memfd => f,
                    _ => {
                        return Err(Failure::new(
                            ErrorCode::BadRequest,
                            format!(
                                "the second file descriptor of supervise must be a memfd (the \
                                 in-flight record), not {kind}"
                            ),
                        ))
                    }
                }
            }
            _ => bpfns_sys::seccomp::InFlight::create().map_err(Failure::internal)?,
        };
        let kind = fd_kind(fds[0].as_fd());
        if kind != "anon_inode:seccomp notify" {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!(
                    "the first file descriptor of supervise must be a seccomp listener \
                     (anon_inode:seccomp notify, from SECCOMP_FILTER_FLAG_NEW_LISTENER), not {kind}"
                ),
            ));
        }
        let pidfd = self.own_child(caller, pid)?;
        let ns = self
            .kernel
            .task_ns(pidfd.as_fd())
            .map_err(Failure::internal)?;
        if ns == NsId::ROOT {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!("process {pid} is in the root namespace: enter a namespace first"),
            ));
        }
        let sink = self
            .sink
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| Failure::new(ErrorCode::Internal, "no supervisor is running"))?;
        sink.supervise(Supervise {
            pid,
            uid: caller.uid,
            ns,
            listener: fds.remove(0),
            in_flight,
        })?;
        Ok((
            Reply::Supervised {
                pid,
                daemon_pid: std::process::id() as i32,
            },
            vec![],
        ))
    }

    /// The objects of `kind` the caller may see, with what the kernel says about them; only
    /// those of namespace `only.0` (and below it if `only.1`) when given, and only the one with
    /// id `id` when given.
    /// A listing's frame, each object encoded as it is converted (see [`EncodedObjects`]):
    /// the objects never exist as a `Vec<ObjectInfo>` beside the frame.
    fn list_frame(
        &self,
        caller: &Caller,
        seq: u64,
        (kind, listing): (ObjectKind, Option<Walked<Vec<bpfns_kernel::OwnedObject>>>),
        namespace: Option<&str>,
        recursive: bool,
        run_stats: bool,
    ) -> Result<Vec<u8>, Failure> {
        let only = match namespace {
            Some(path) => Some((self.visible_ns(caller, path)?, recursive)),
            None => None,
        };
        let visible = self.visible_owned(caller, (kind, listing), only, None)?;
        let too_large = |e: bpfns_proto::FrameError| {
            Failure::new(
                ErrorCode::TooLarge,
                format!("{e}; list one namespace at a time (--namespace)"),
            )
        };
        let mut out = EncodedObjects::new(seq, visible.len()).map_err(too_large)?;
        for mut o in visible {
            if run_stats && kind == ObjectKind::Prog {
                add_run_stats(std::slice::from_mut(&mut o));
            }
            out.push(&o).map_err(too_large)?;
        }
        out.into_frame(MAX_RESPONSE).map_err(too_large)
    }

    /// The objects of `kind` `caller` sees (only those of `only`'s namespace, or of its
    /// subtree; only `id`), in id order, converted to [`ObjectInfo`] as they are taken.
    fn visible_owned(
        &self,
        caller: &Caller,
        (kind, listing): (ObjectKind, Option<Walked<Vec<bpfns_kernel::OwnedObject>>>),
        only: Option<(NsId, bool)>,
        id: Option<u32>,
    ) -> Result<VisibleObjects, Failure> {
        let all = self.listing(kind, listing)?;
        let mut names: HashMap<NsId, String> = HashMap::new();
        let mut objs;
        {
            let reg = self.reg();
            let vis = Visibility::new(&reg, caller.ns);
            let wanted = |o: &bpfns_kernel::OwnedObject| {
                id.is_none_or(|id| o.id == id)
                    && vis.can_see(o.owner)
                    && only.is_none_or(|(ns, below)| {
                        o.owner == ns || (below && reg.is_same_or_ancestor(ns, o.owner))
                    })
            };
            // The walk's result is this request's alone unless others shared it: then it is
            // filtered in place, not copied (a second copy of 100 000 objects was most of
            // bpfnsd's peak memory at scale).
            objs = match id {
                // One object: found by its place in the listing (sorted by id), not by a look
                // at each of 100 000 (`show` is answered on the event loop's thread).
                Some(id) => pick(&all, id)
                    .filter(|o| wanted(o))
                    .cloned()
                    .into_iter()
                    .collect(),
                None => match Arc::try_unwrap(all) {
                    Ok(mine) => mine.into_iter().filter(|o| wanted(o)).collect::<Vec<_>>(),
                    Err(shared) => shared.iter().filter(|o| wanted(o)).cloned().collect(),
                },
            };
            // One path name per owner, not one registry lookup and formatting per object.
            for o in &objs {
                names
                    .entry(o.owner)
                    .or_insert_with(|| owner_name(&reg, o.owner));
            }
        }
        // What the listing does not carry (links' attach points, BTF names and sizes): one
        // open each, of the visible objects only.
        bpfns_kernel::fill_details(&mut objs);
        let boot = (kind == ObjectKind::Prog)
            .then(bpfns_kernel::boot_time)
            .flatten();
        Ok(VisibleObjects {
            objs: objs.into_iter(),
            names,
            boot,
        })
    }

    fn get_fd(
        &self,
        caller: &Caller,
        kind: ObjectKind,
        id: u32,
        read_only: bool,
        fds: Vec<OwnedFd>,
    ) -> Answer {
        if fds.len() > 1 {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                "get_fd takes at most one fd: a BPF token",
            ));
        }
        let token = match fds.first() {
            None => false,
            Some(fd) => {
                let Some(info) = crate::supervisor::attr::TokenInfo::of_fd(fd.as_fd()) else {
                    return Err(Failure::new(
                        ErrorCode::BadRequest,
                        "the fd passed with get_fd is not a BPF token",
                    ));
                };
                // As the kernel takes a token for *_GET_FD_BY_ID: only if it delegates that.
                let cmd = crate::supervisor::attr::Command::FdById(kind).raw();
                if !info.allows_cmd(cmd) {
                    return Err(Failure::new(
                        ErrorCode::Denied,
                        format!(
                            "the BPF token passed with get_fd does not delegate {} (its bpffs's \
                             delegate_cmds)",
                            crate::supervisor::attr::Command::FdById(kind).name()
                        ),
                    ));
                }
                true
            }
        };
        // What the kernel asks before *_GET_FD_BY_ID: in the root namespace CAP_SYS_ADMIN in
        // the initial user namespace (capabilities inside a user namespace of one's own count
        // for nothing there); a member, CAP_BPF or CAP_SYS_ADMIN in its own (its view bounds
        // what it gets); or, either way, a token that delegates the command.
        let may = if caller.ns == NsId::ROOT {
            caller.host_admin()
        } else {
            caller.cap_bpf()
        };
        if !may && !token {
            return Err(Failure::new(
                ErrorCode::Denied,
                if caller.ns == NsId::ROOT {
                    "getting a file descriptor by id outside namespaces needs CAP_SYS_ADMIN in the \
                     initial user namespace, as BPF_*_GET_FD_BY_ID does (or a BPF token passed \
                     with the request)"
                } else {
                    "getting a file descriptor needs CAP_BPF in your user namespace, or a BPF \
                     token passed with the request"
                },
            ));
        }
        let owner = self.kernel.owner(kind, id).map_err(Failure::internal)?;
        if !self.reg().visible(caller.ns, owner) {
            return Err(not_visible(kind, id));
        }
        let fd = crate::opener::open(kind, id, read_only).map_err(|e| {
            if e.errno == bpfns_sys::Errno::NOENT {
                not_visible(kind, id)
            } else {
                Failure::internal(e)
            }
        })?;
        Ok((Reply::Fd { kind, id }, vec![fd]))
    }

    /// What runs. Host-wide figures (every namespace, every member's listener, the kernel
    /// side's and bpfnsd's counters) would tell a member about other tenants: a member gets
    /// its own subtree's namespace count and none of them.
    /// Every namespace's info, as the host administrator sees them (the metrics endpoint).
    /// One refusal (or stop) of a member's call, for the metrics.
    fn count_denial(&self, ns: NsId, command: String, layer: &'static str) {
        let mut by = self.denials_by.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded by namespaces × commands × layers; entries of deleted namespaces go here.
        if by.len() >= DENIAL_COUNTS_KEPT {
            let reg = self.reg();
            by.retain(|(n, _, _), _| reg.contains(*n));
        }
        *by.entry((ns, command, layer)).or_default() += 1;
    }

    /// Refusals and stops since start of the namespaces that exist: (namespace path,
    /// command, layer, count).
    pub fn denial_counts(&self) -> Vec<(String, String, &'static str, u64)> {
        let by = self.denials_by.lock().unwrap_or_else(|e| e.into_inner());
        let reg = self.reg();
        by.iter()
            .filter_map(|((ns, cmd, layer), n)| {
                Some((reg.path(*ns)?.to_string(), cmd.clone(), *layer, *n))
            })
            .collect()
    }

    /// The run time (ns) and run count of every namespace's own programs, summed (the
    /// kernel counts them while BPF statistics are on): (namespace path, run time, runs).
    pub fn prog_run_totals(&self) -> Result<Vec<(String, u64, u64)>, Failure> {
        let progs = self.listing(ObjectKind::Prog, None)?;
        let mut sums: HashMap<NsId, (u64, u64)> = HashMap::new();
        for p in progs.iter() {
            if let Some((t, n)) = run_stats(p.id) {
                let s = sums.entry(p.owner).or_default();
                s.0 = s.0.saturating_add(t);
                s.1 = s.1.saturating_add(n);
            }
        }
        let reg = self.reg();
        Ok(sums
            .into_iter()
            .filter_map(|(ns, (t, n))| Some((reg.path(ns)?.to_string(), t, n)))
            .collect())
    }

    /// bpfnsd's status, as the host administrator sees it (the metrics endpoint).
    pub fn status_info(&self) -> Result<StatusInfo, Failure> {
        match self.status_of(None)? {
            (Reply::Status(s), _) => Ok(s),
            _ => Err(Failure::new(ErrorCode::Internal, "status gave no status")),
        }
    }

    fn status(&self, caller: &Caller) -> Answer {
        self.status_of(Some(caller))
    }

    /// The status; for `caller` (a member: its subtree only), or for the host.
    fn status_of(&self, caller: Option<&Caller>) -> Answer {
        // What runs, not what the kernel would allow: the supervisor, then the kernel side's.
        let layers: Vec<String> = std::iter::once(Layer::Supervisor)
            .chain(self.kernel.layers())
            .map(|l| l.name().to_string())
            .collect();
        let mut counters: Vec<(String, u64)> = self
            .kernel
            .all_stats()
            .map_err(Failure::internal)?
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        counters.push((
            "records_collected".to_string(),
            self.collected.load(std::sync::atomic::Ordering::Relaxed),
        ));
        counters.push((
            "map_children_killed".to_string(),
            bpfns_sys::process::children_killed(),
        ));
        counters.push((
            "kernel_events_read".to_string(),
            self.events_read.load(std::sync::atomic::Ordering::Relaxed),
        ));
        counters.push((
            "events_subscribers".to_string(),
            self.events.subscribers() as u64,
        ));
        counters.push((
            "events_subscribers_dropped".to_string(),
            self.events.dropped(),
        ));
        counters.push(("events_suppressed".to_string(), self.events.suppressed()));
        // bpfnsd's own allocations (not what its allocator merely keeps): leaks show here.
        if let Some(b) = bpfns_sys::process::heap_in_use() {
            counters.push(("bpfnsd_heap_in_use_bytes".to_string(), b));
        }
        counters.extend(self.admission.counters());
        counters.push((
            "containers_collected".to_string(),
            self.collected_containers_total
                .load(std::sync::atomic::Ordering::Relaxed),
        ));
        let (containers, collected_containers) = self.container_status();
        let sink = self.sink.read().unwrap_or_else(|e| e.into_inner()).clone();
        let kept = sink.as_ref().and_then(|s| s.kept());
        if let Some(k) = kept {
            counters.push(("keeper_restarts".to_string(), k.restarts));
            if let Some(c) = k.keeper {
                counters.push(("keeper_outages".to_string(), c.outages));
                counters.push(("keeper_abandoned_answered".to_string(), c.abandoned));
                counters.push(("keeper_refused_after_grace".to_string(), c.refused));
            }
        }
        let mut info = StatusInfo {
            server: format!("bpfnsd {}", env!("CARGO_PKG_VERSION")),
            pin_root: self.config.pin_root.display().to_string(),
            state_dir: self.config.state_dir.display().to_string(),
            layers,
            namespaces: self.reg().len() as u32,
            supervised_listeners: sink.map_or(0, |s| s.count() as u32),
            kept_listeners: kept.and_then(|k| k.keeper).map_or(0, |c| c.held as u32),
            counters,
            containers,
            collected_containers,
        };
        if let Some(caller) = caller.filter(|c| c.ns != NsId::ROOT) {
            info.namespaces = self.reg().subtree_len(caller.ns) as u32;
            info.supervised_listeners = 0;
            info.kept_listeners = 0;
            // The host's paths are not a member's business (as in `member_plan`).
            info.pin_root.clear();
            info.state_dir.clear();
            info.counters.clear();
            info.containers = 0;
            info.collected_containers.clear();
        }
        Ok((Reply::Status(info), vec![]))
    }
}

/// What a request named, for the report of its refusal ([`Daemon::on_api_denial`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Named {
    /// A namespace, as the caller gave its path.
    pub namespace: Option<String>,
    /// An object, by kind and id.
    pub object: Option<(ObjectKind, u32)>,
    /// A process.
    pub pid: Option<i32>,
}

impl Named {
    /// What `op` names.
    pub(crate) fn of(op: &Op) -> Self {
        let ns = |path: &str| Self {
            namespace: Some(path.to_string()),
            ..Self::default()
        };
        match op {
            Op::NsCreate { path, .. }
            | Op::NsSetQuota { path, .. }
            | Op::NsSetPolicy { path, .. }
            | Op::NsDelete { path, .. }
            | Op::NsShow { path }
            | Op::MemberPlan { path }
            | Op::NsPs { path, .. } => ns(path),
            Op::Enter { path, pid }
            | Op::EnterContainer { path, pid }
            | Op::ContainerBpffs { path, pid } => Self {
                pid: Some(*pid),
                ..ns(path)
            },
            Op::Supervise { pid } | Op::WhyStopped { pid } | Op::NsIdentify { pid } => Self {
                pid: Some(*pid),
                ..Self::default()
            },
            Op::List { namespace, .. } => Self {
                namespace: namespace.clone(),
                ..Self::default()
            },
            Op::Events { ns, .. } => Self {
                namespace: ns.clone(),
                ..Self::default()
            },
            Op::Show { kind, id } | Op::GetFd { kind, id, .. } => Self {
                object: Some((*kind, *id)),
                ..Self::default()
            },
            Op::Hello
            | Op::NsList
            | Op::EnableStats
            | Op::Status
            | Op::ContainerNamespace { .. }
            | Op::ContainerDeleted { .. } => Self::default(),
        }
    }
}

/// At most one early collection this often (the periodic one is separate).
pub const EARLY_COLLECTION_GAP: std::time::Duration = std::time::Duration::from_millis(200);

/// How often bpfnsd looks whether the syscall hooks can be detached (a task iterator read: a
/// few milliseconds).
pub const HOOK_RELAX_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// Refusal counters kept (namespace, command, layer) before those of deleted namespaces go.
const DENIAL_COUNTS_KEPT: usize = 16_384;

/// At most this many kernel events are logged a second.
pub const EVENT_LOG_PER_SEC: u32 = 50;
/// At most this many of one namespace's refusals are logged a second (within
/// [`EVENT_LOG_PER_SEC`] for all); the line after a gap says how many were left out.
pub const DENIAL_LOG_PER_NS_PER_SEC: u32 = 10;

/// The quota rules of this configuration: its default, and the ownership table's capacity
/// less a margin for reservations in flight.
pub fn quota_rules(config: &Config) -> quota::Rules {
    quota::Rules {
        default: config.max_objects,
        kind_defaults: config.quota.kind_limits(),
        capacity: u64::from(
            bpfns_kernel::abi::OWNERSHIP_CAPACITY - bpfns_kernel::abi::OWNERSHIP_SLACK,
        ),
    }
}

/// A namespace's limits per kind as the kernel's per-kind quota table takes them.
fn kernel_kind_limits(kinds: quota::KindLimits) -> [Option<u64>; bpfns_kernel::abi::KINDS] {
    let mut out = [None; bpfns_kernel::abi::KINDS];
    for k in ObjectKind::ALL {
        out[bpfns_kernel::abi::kind_index(k)] = kinds.get(k).map(u64::from);
    }
    out
}

/// Rate limit of the event log.
#[derive(Debug, Default)]
struct EventLog {
    second: Option<std::time::Instant>,
    lines: u32,
    suppressed: u64,
}

impl EventLog {
    /// Whether one more line may be logged now (else it is counted as suppressed).
    fn admit(&mut self) -> bool {
        let now = std::time::Instant::now();
        if self
            .second
            .is_none_or(|s| now.duration_since(s) >= std::time::Duration::from_secs(1))
        {
            self.second = Some(now);
            self.lines = 0;
        }
        if self.lines >= EVENT_LOG_PER_SEC {
            self.suppressed += 1;
            return false;
        }
        self.lines += 1;
        true
    }
}

/// Takes a namespace off the set of those being deleted when dropped.
struct Unmark<'a>(&'a Mutex<std::collections::HashSet<NsId>>, NsId);

impl Drop for Unmark<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

/// Held while the kernel side's object notices are switched: a subscription that turns them on
/// is never undone by the event reader turning them off from what it saw just before.
static OBJECT_EVENTS_SWITCH: Mutex<()> = Mutex::new(());

/// How many recent stops and refusals bpfnsd keeps for `why_stopped`.
const RECENT_STOPS: usize = 256;

/// One line about a stopped or refused task: who, where, which rule, and the fix.
pub fn describe_event(
    v: &bpfns_kernel::abi::Violation,
    ev: bpfns_kernel::abi::Event,
    namespace: &str,
) -> String {
    use bpfns_kernel::abi::Event;
    let (what, reason) = match ev {
        Event::Stopped(r) => ("stopped (SIGKILL)", r),
        Event::Refused(r) => ("refused (EPERM)", r),
        Event::QuotaHigh { .. } => return format!("namespace {namespace}: quota notice"),
        Event::ObjectCreated { kind, id, .. } => {
            return format!(
                "namespace {namespace}: object {kind}:{id} created by pid {}",
                v.pid
            )
        }
        Event::ObjectGone { kind, id, .. } => {
            return format!("namespace {namespace}: object {kind}:{id} freed")
        }
        Event::Unknown(code) => {
            return format!(
                "the kernel side acted on task {} ({}) of namespace {namespace} for reason {code}, \
                 which this bpfnsd does not know",
                v.pid, v.comm
            )
        }
    };
    let kinds = ["", "prog", "map", "link", "btf"];
    let object = match kinds.get(v.kind as usize) {
        Some(k) if !k.is_empty() && v.id != 0 => format!(" ({k} {})", v.id),
        _ => String::new(),
    };
    use bpfns_kernel::abi::Reason;
    // A program whose loader was stopped is quarantined (a thread may have pinned it first).
    let quarantined = match ev {
        Event::Stopped(Reason::ProgType | Reason::Perfmon) if v.kind == 1 && v.id != 0 => {
            "; the program is quarantined: no namespace can open it (owner `quarantine`)"
        }
        _ => "",
    };
    format!(
        "{what}: pid {} ({}) of namespace {namespace}, bpf command {}{object}: {} [{}]{quarantined}; fix: {}",
        v.pid,
        v.comm,
        v.cmd,
        reason.rule(),
        reason.name(),
        reason.fix()
    )
}

/// What `/proc/PID/status` says about a process.
struct ProcFacts {
    comm: String,
    uid: u32,
    threads: u32,
}

impl ProcFacts {
    /// `None` once the process is gone.
    fn read(pid: i32) -> Option<Self> {
        use bpfns_sys::procfs;
        let status = procfs::read_status(pid).ok()?;
        Some(Self {
            comm: procfs::field(&status, "Name")?.to_string(),
            uid: procfs::ids(&status, "Uid")?[0],
            threads: procfs::field(&status, "Threads")?.parse().ok()?,
        })
    }

    fn info(self, pid: i32, namespace: String, ns: NsId) -> bpfns_proto::ProcessInfo {
        bpfns_proto::ProcessInfo {
            pid,
            comm: self.comm,
            uid: self.uid,
            threads: self.threads,
            namespace,
            ns_id: ns,
        }
    }
}

/// How an owner is named in listings and logs: its path; `quarantine` for the quarantined
/// objects (programs whose loader the kernel side stopped: no namespace sees them); `ns:ID`
/// for an id the registry does not know.
/// Why a namespace could not be put back as the registry has it (at start).
#[derive(Debug, thiserror::Error)]
enum Restore {
    #[error(transparent)]
    Kernel(bpfns_kernel::KernelError),
    #[error(transparent)]
    Bpffs(crate::bpffs::BpffsError),
}

/// Namespace `p` if `caller` may see it (its own namespace and below): others are not found.
fn visible_in(reg: &Registry, caller: &Caller, p: &NsPath) -> Result<NsId, Failure> {
    reg.id(p)
        .filter(|id| reg.is_same_or_ancestor(caller.ns, *id))
        .ok_or_else(|| Failure::new(ErrorCode::NotFound, format!("no namespace {p}")))
}

fn owner_name(reg: &Registry, id: NsId) -> String {
    if id == NsId::QUARANTINE {
        return "quarantine".to_string();
    }
    reg.path(id)
        .map_or_else(|| format!("ns:{id}"), |p| p.to_string())
}

fn self_path(reg: &Registry, id: NsId) -> String {
    reg.path(id)
        .map_or_else(|| "/".to_string(), |p| p.to_string())
}

fn not_visible(kind: ObjectKind, id: u32) -> Failure {
    Failure::new(
        ErrorCode::NotFound,
        format!("no {kind} with id {id} is visible to you"),
    )
}

/// What an fd is, as `/proc/self/fd` names it (`anon_inode:...`, `pipe:[N]`, a path).
fn fd_kind(fd: std::os::fd::BorrowedFd<'_>) -> String {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| format!("an fd that cannot be inspected ({e})"))
}

/// Each program's run-time statistics, read from the kernel (one open each; a program gone
/// meanwhile keeps none).
/// A bpf() command as the UAPI names it (`BPF_MAP_CREATE`), from the one table of names.
fn command_name(cmd: u32) -> String {
    if cmd == bpfns_kernel::abi::CMD_OPEN {
        // BPF LSM's fd hooks see the object, not the command that asked for the fd.
        return "open".into();
    }
    bpfns_sys::names::name(bpfns_model::Field::Cmds, cmd).map_or_else(
        || format!("bpf command {cmd}"),
        |n| format!("BPF_{}", n.to_uppercase()),
    )
}

/// Program `id`'s run time (ns) and run count, as the kernel counts them while BPF statistics
/// are on; `None` if it is gone.
fn run_stats(id: u32) -> Option<(u64, u64)> {
    use bpfns_sys::bpf;
    let i = bpf::fd_by_id(ObjectKind::Prog, id)
        .and_then(|fd| bpf::info::<bpf::bpf_prog_info>(&fd))
        .ok()?;
    Some((i.run_time_ns, i.run_cnt))
}

/// Visible objects as the kernel side lists them, each converted to [`ObjectInfo`] when
/// taken (its strings move, so the listing shrinks as it is read).
struct VisibleObjects {
    objs: std::vec::IntoIter<bpfns_kernel::OwnedObject>,
    /// Each owner's path.
    names: HashMap<NsId, String>,
    boot: Option<u64>,
}

impl Iterator for VisibleObjects {
    type Item = ObjectInfo;

    fn next(&mut self) -> Option<ObjectInfo> {
        let o = self.objs.next()?;
        Some(ObjectInfo {
            details: o.details.to_proto(self.boot),
            namespace: self.names.get(&o.owner).cloned().unwrap_or_default(),
            id: o.id,
            kind: o.kind,
            type_name: o.type_name.into_string(),
            name: o.name.into_string(),
            ns_id: o.owner,
            prog_id: o.prog_id,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.objs.size_hint()
    }
}

impl ExactSizeIterator for VisibleObjects {}

fn add_run_stats(progs: &mut [ObjectInfo]) {
    for p in progs {
        if let Some((t, n)) = run_stats(p.id) {
            p.details.run_time_ns = Some(t);
            p.details.run_cnt = Some(n);
        }
    }
}

/// What the kernel side's backstop checks of a namespace's (effective) policy: the program
/// and map types it may create and its programs' expected attach types, as masks; `None`
/// where it restricts none of them beyond the default (the tracing class, which the kernel
/// table's bit covers), so that such namespaces have no entry and cost nothing.
pub fn kernel_types(p: &Policy) -> Option<bpfns_kernel::abi::NsTypes> {
    if p.maps.is_any() && p.attachs.is_any() && Policy::DEFAULT.progs.is_within(p.progs) {
        None
    } else {
        Some(bpfns_kernel::abi::NsTypes {
            progs: p.progs.mask64(),
            maps: p.maps.mask64(),
            attachs: p.attachs.mask64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfns_kernel::abi::{Event, Reason, Violation};

    fn violation(reason: u32) -> Violation {
        Violation {
            pid: 42,
            tid: 43,
            ns: 3,
            cmd: 0,
            kind: 2,
            id: 7,
            owner: 5,
            reason,
            comm: "evil".into(),
            name: String::new(),
        }
    }

    #[test]
    fn events_name_pid_comm_namespace_rule_and_fix() {
        let v = violation(Reason::Hijack as u32);
        let line = describe_event(&v, v.event(), "/t");
        for part in [
            "stopped (SIGKILL)",
            "pid 42 (evil)",
            "namespace /t",
            "(map 7)",
            "[hijack]",
            "fix:",
        ] {
            assert!(line.contains(part), "{part}: {line}");
        }
        let v = violation(Reason::Quota as u32 | bpfns_kernel::abi::EVENT_REFUSED);
        assert_eq!(v.event(), Event::Refused(Reason::Quota));
        let line = describe_event(&v, v.event(), "/t");
        assert!(line.starts_with("refused (EPERM)"), "{line}");
        assert!(line.contains("--max-objects"), "{line}");
    }

    #[test]
    fn the_event_log_is_rate_limited() {
        let mut log = EventLog::default();
        let admitted = (0..EVENT_LOG_PER_SEC + 10).filter(|_| log.admit()).count();
        assert_eq!(admitted, EVENT_LOG_PER_SEC as usize);
        assert_eq!(log.suppressed, 10);
    }

    /// A refused request's report names what it named: a namespace, a process, an object.
    #[test]
    fn a_request_names_its_namespace_process_or_object() {
        let enter = Op::Enter {
            path: "/a/b".into(),
            pid: 7,
        };
        assert_eq!(
            Named::of(&enter),
            Named {
                namespace: Some("/a/b".into()),
                pid: Some(7),
                object: None
            }
        );
        let get = Op::GetFd {
            kind: ObjectKind::Map,
            id: 9,
            read_only: false,
        };
        assert_eq!(Named::of(&get).object, Some((ObjectKind::Map, 9)));
        assert_eq!(Named::of(&Op::Status), Named::default());
        let all = Op::Events {
            ns: None,
            kinds: Vec::new(),
        };
        assert_eq!(Named::of(&all), Named::default());
    }

    #[test]
    fn quota_rules_leave_the_slack_free() {
        let r = quota_rules(&Config::default());
        assert_eq!(r.default, 1024);
        assert_eq!(r.capacity, (1 << 20) - (1 << 10));
    }
}
