//! The seccomp supervisor: the primary enforcement of BPF namespaces.
//!
//! Every namespace member runs under [`filter()`] (installed before exec, with
//! [`filter_flags()`] = `NEW_LISTENER | WAIT_KILLABLE_RECV`; see
//! [`bpfns_sys::spawn::MemberSetup`]). The filter traps the bpf() commands that list or open
//! objects by id or path, load programs, or attach, detach and replace ([`TRAPPED`]), and
//! `ioctl(PERF_EVENT_IOC_QUERY_BPF)`; it refuses bpf() and that ioctl through the x32 and ia32
//! entry points, and `seccomp()` asking for a listener everywhere. A [`Supervisor`] serves one
//! listener and answers each trapped call from the member's view ([`View`], normally a
//! [`KernelView`]):
//!
//! | command | answer |
//! |---|---|
//! | `{PROG,MAP,LINK,BTF}_GET_NEXT_ID` | the next *visible* id, written to the caller's `next_id`; `ENOENT` at the end |
//! | `{PROG,MAP,LINK,BTF}_GET_FD_BY_ID` | `ENOENT` unless visible (as for a vanished id); else opened here and injected (`ADDFD`) |
//! | `OBJ_GET` | the path resolved in the caller's root and cwd with the caller's fs credentials; `EPERM` if the pinned object belongs to a namespace the caller cannot see |
//! | `PROG_QUERY` | run for the caller (its target fd fetched with `pidfd_getfd`, or in its network namespace for tcx/netkit ifindexes); invisible programs removed |
//! | `TASK_FD_QUERY` | run for the caller (its pid translated from its pid namespace) about its own process, or about any with `CAP_SYS_ADMIN` in the initial user namespace (else `EPERM`); `ENOENT` if the program is invisible |
//! | `PROG_LOAD` | `CONTINUE` for root-namespace callers and where the namespace allows tracing; where it denies tracing, made here (`worker/answer/load.rs`) from a copy of the attr and everything it points to, with copies of every fd it names, without perfmon power, calling no kfunc outside [`kfuncs::ALLOWED`], recorded as the namespace's within its quota, then injected; tracing-class types `EPERM`; syscall programs always `EPERM` |
//! | `LINK_CREATE` | `CONTINUE` for root-namespace callers and where the namespace allows tracing; where it denies tracing, made here (`worker/answer/link.rs`) from a copy of the attr on copies of the caller's fds, an invisible relative id `ENOENT`, the link recorded as the namespace's before it is injected; tracing, iterator, multi-probe and struct_ops links `EPERM` |
//! | `PROG_ATTACH`, `PROG_DETACH`, `LINK_UPDATE`, `LINK_DETACH` | made here on copies of the caller's fds with its capabilities (initial user namespace only); `EPERM` if what it would replace or detach is invisible |
//! | `ioctl(PERF_EVENT_IOC_QUERY_BPF)` | run on a copy of the caller's perf event with its capabilities; invisible programs removed |
//!
//! Listing and opening need `CAP_BPF` or `CAP_SYS_ADMIN` in the caller's own user namespace
//! (contract point (docs/design.md) 5); without, `EPERM`, as the kernel answers an unprivileged caller.
//!
//! Rules every answer follows: the caller's attr is read once (at most `sizeof(union
//! bpf_attr)` bytes, zero-padded, checked like the kernel's `CHECK_ATTR`); every read of the
//! caller (memory, `/proc/<tid>`, `capget`, `pidfd_getfd`) comes before a
//! `SECCOMP_IOCTL_NOTIF_ID_VALID` check, and every action after it; the answer is never
//! `CONTINUE` except for a program load or link creation of a root-namespace caller or of a
//! member of a namespace that allows tracing (the kernel then checks it with the caller's credentials,
//! which cannot change while it waits; a type changed meanwhile into a syscall program is
//! stopped and quarantined by the kernel side); a failure is an error answer, never a panic
//! of the daemon.
//!
//! **Threads.** One thread per listener (i.e. per `bpfns exec`'d process tree). It keeps the
//! loop simple and makes per-thread state safe: the thread has its own root and cwd
//! (`unshare(CLONE_FS)`) for resolving `OBJ_GET` paths in the caller's root, its own
//! credentials for the caller's permission checks, and a reduced effective capability set —
//! an injected fd keeps its opener's credentials, and without `CAP_SYSLOG` there the kernel
//! refuses to dump JIT images and kernel addresses through it. A thread
//! costs ~8 KiB of kernel stack and a mostly untouched user stack; a host with thousands of
//! concurrently supervised process trees would want an epoll-based pool instead.
//!
//! **Latency** (reproduce: `cargo build --release -p bpfnsd -p bpfns-cli -p bpfns-bench &&
//! target/release/bpfns-bench daemon --supervisor-only`; docs/benchmarks.md, "The supervisor
//! against the seccomp floor"; 2 vCPUs, quiet): the floor, measured in the same run, is an
//! empty user-notification round trip (~2.2 µs), ~3.4 µs with the read, `NOTIF_ID_VALID` and
//! write a `GET_NEXT_ID` needs, ~2.5 µs for an fd injected with `ADDFD | SEND` and ~3.8 µs
//! with `ADDFD` then `SEND`. A trapped `MAP_GET_NEXT_ID` takes ~4.7–4.8 µs (within 2× of
//! floor + direct call), `MAP_GET_FD_BY_ID` ~8 µs for a CAP_BPF member (within 2× of the
//! two-step injection bpfnsd uses + direct call) and ~11.5–16 µs for a host-root one (the
//! user-namespace check and a `capset` pair, below), both with a tail of 65–76 µs at p90 when
//! `ADDFD`'s plain wake-up of the caller lands on the idle vCPU; the first `GET_NEXT_ID` of a
//! walk ~15–30 µs, ~55–85 µs within a second of a burst of creations, instead of 6–10 ms.
//! What matters:
//! - *Wake-ups.* `SYNC_WAKE_UP` on the listener and a thread that waits in `poll`: the
//!   caller's notification wakes the supervisor on the caller's CPU and the answer wakes the
//!   caller on the supervisor's, so a round trip stays on one CPU. Pinning ([`Options::pin_cpu`])
//!   only hurts: with caller and supervisor held on two CPUs every wake-up crosses to an idle
//!   vCPU, 57–130 µs per round trip.
//! - *Reply mode.* `ADDFD | SEND` is ~1.3 µs cheaper than `ADDFD` then `SEND` when both stay on
//!   one CPU (they do, unpinned); bpfnsd still uses the two steps ([`install`]) because an
//!   `ADDFD | SEND` cut short by bpfnsd's death leaves the call answered with fd 0.
//! - *Syscalls per call.* `GET_NEXT_ID` makes 8 (`poll`, `RECV`, `capget`,
//!   `process_vm_readv`, `ID_VALID`, the namespace lookup, `process_vm_writev`, `SEND`); the
//!   in-flight record is a store into a shared mapping, not a `pwrite`. `GET_FD_BY_ID` adds
//!   the owner lookup, the open, `ADDFD`, a `close`, and for a caller holding `CAP_SYSLOG`
//!   `PIDFD_GET_USER_NAMESPACE` + `fstat` + `close` (~2 µs: it makes a file every time) and a
//!   `capset` pair around the open. Pidfds are cached (a cached one can only name a task
//!   that exited, and then fails). Capabilities and the user namespace are read at every
//!   call: a thread changes them with its own syscalls (`capset`, `setuid`, `unshare`,
//!   `setns`, `execve`, which keeps the thread id) between two trapped calls, unseen by
//!   bpfnsd, and no cheap read tells that they changed — after `unshare(CLONE_NEWUSER)` and
//!   a `capset` back, `capget` shows the same sets, so a cached "initial user namespace"
//!   would lend capabilities the caller no longer holds there. The namespace tag is read per
//!   call too (`enter` can move a running member).
//! - *Walk start.* The visible ids come from [`warm::Warm`]: every object's owner read once
//!   and kept current by new ids, bpfnsd's own record changes and the kernel side's record
//!   counter (see there for what a walk can see that a fresh read would not: ids of objects
//!   freed since, until the collector or the next whole read).
//!
//! **Known limits.** `OBJ_GET` does not follow `/proc/<pid>/fd/N`-style magic links (`ELOOP`);
//! its permission check uses the caller's fs uid/gid, groups and — only when the caller is
//! in the initial user namespace — its DAC capabilities (capabilities held in a child user
//! namespace over inodes mapped into it are not honoured, which is narrower than the
//! kernel; LSMs see the daemon, not the caller). `TASK_FD_QUERY` from another pid
//! namespace finds processes (not bare thread ids) whose innermost pid namespace is the
//! caller's; others get `ESRCH`. A `BTF_GET_FD_BY_ID` token (`BPF_F_TOKEN_FD`) is ignored:
//! the caller still needs `CAP_BPF` or `CAP_SYS_ADMIN` in its own user namespace. Between
//! the validity check and a write into the caller (`next_id`, query results), the thread id
//! could only name another task if the caller were killed and its id reused within
//! microseconds. A task under the filter whose tag is the root namespace is answered by the
//! kernel's rules (host `CAP_SYS_ADMIN`), so the supervisor never widens anyone's view.

pub mod attr;
pub mod filter;
pub mod kfuncs;
pub mod untagged;
pub mod view;
pub mod warm;
mod worker;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bpfns_kernel::{Kernel, QuotaRefusal};
use bpfns_model::{NsId, ObjectKind};
use bpfns_sys::seccomp::{InFlight, Listener};

pub use attr::TRAPPED;
pub use filter::{filter, flags as filter_flags};
pub use view::KernelView;

use bpfns_proto::ErrorCode;

use crate::config::Limits;
use crate::daemon::{Failure, ListenerSink, Supervise};
use crate::{keeper, Daemon};

/// What the supervisor needs to know about namespaces and objects.
pub trait View: Send + Sync {
    /// Namespace of the task behind `pidfd` (its kernel tag); [`ViewError::Gone`] if it has
    /// exited.
    fn namespace_of(&self, pidfd: BorrowedFd<'_>) -> Result<NsId, ViewError>;
    /// Sorted ids of the objects of `kind` visible from `viewer` (fresh: reflects objects
    /// created just now).
    fn visible_ids(&self, viewer: NsId, kind: ObjectKind) -> Result<Vec<u32>, ViewError>;
    /// Whether (kind, id) is visible from `viewer` (uses the kernel's ownership record).
    fn can_see(&self, viewer: NsId, kind: ObjectKind, id: u32) -> Result<bool, ViewError>;
    /// Whether `ns`'s policy allows tracing (its members may then load tracing-class
    /// programs, and with perfmon power). Denied unless a view knows better.
    fn allows_tracing(&self, ns: NsId) -> Result<bool, ViewError> {
        let _ = ns;
        Ok(false)
    }
    /// The effective policy of `ns` (its own intersected with its ancestors'): what its
    /// members may do with bpf(). The one-switch policy [`View::allows_tracing`] gives unless
    /// a view knows better.
    fn policy(&self, ns: NsId) -> Result<bpfns_model::Policy, ViewError> {
        Ok(bpfns_model::Policy::tracing(self.allows_tracing(ns)?))
    }
    /// The cgroup v2 subtree `ns`'s members may attach programs to (a path below the
    /// cgroup2 root); `None`: not bound, no cgroup at all. None unless a view knows better.
    fn bound_cgroup(&self, ns: NsId) -> Result<Option<String>, ViewError> {
        let _ = ns;
        Ok(None)
    }
    /// Reserve one ownership record for an object of `kind` bpfnsd makes for a member of `ns`:
    /// counted (in the total and its kind) in `ns` and its ancestors before it is compared with their limits, so that it and the
    /// kernel side's own reservations can never together exceed one. `Ok(Err(why))` when a
    /// limit (or a missing one: fail closed) refuses it. Refused unless a view knows better.
    fn reserve_record(
        &self,
        ns: NsId,
        kind: ObjectKind,
    ) -> Result<Result<(), QuotaRefusal>, ViewError> {
        let _ = (ns, kind);
        Err(ViewError::NoRecords)
    }
    /// Give back a reservation of [`View::reserve_record`] whose record was not written.
    fn release_record(&self, ns: NsId, kind: ObjectKind) -> Result<(), ViewError> {
        let _ = (ns, kind);
        Ok(())
    }
    /// Record object (`kind`, `id`) as `ns`'s, unless a record exists (`BPF_NOEXIST`, as the
    /// kernel side records): whether it was written.
    fn record_new(&self, ns: NsId, kind: ObjectKind, id: u32) -> Result<bool, ViewError> {
        let _ = (ns, kind, id);
        Err(ViewError::NoRecords)
    }
    /// Whether bpfnsd makes members' maps itself ([`worker`]'s `answer/map.rs`): where BPF LSM
    /// does not judge creations before their fd exists. No default: a view that wraps another
    /// must say what the kernel side under it does.
    fn supervises_creations(&self) -> bool;
    /// The kernel side's task-tag map and the tag that makes a task the root's: what a child
    /// bpfnsd makes in a member's cgroup writes for itself (a cgroup binding may have tagged
    /// it), so that what it makes is recorded by bpfnsd only. `None` where no kernel side
    /// tags tasks.
    fn root_tag(&self) -> Option<(BorrowedFd<'_>, [u8; 8])>;
    /// Tag the untagged task behind `pidfd` into `ns` (see [`untagged`]). Views that keep no
    /// tags only answer it as `ns`.
    fn adopt(&self, pidfd: BorrowedFd<'_>, ns: NsId) -> Result<(), ViewError> {
        let _ = (pidfd, ns);
        Ok(())
    }
}

/// Why a [`View`] could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The task is gone.
    #[error("the task has exited")]
    Gone,
    /// The kernel side failed (it is not loaded, a map lookup failed, ...).
    #[error(transparent)]
    Kernel(#[from] bpfns_kernel::KernelError),
    /// A system call of the view's own failed.
    #[error(transparent)]
    Sys(#[from] bpfns_sys::SysError),
    /// The view keeps no ownership records (it cannot reserve or write one).
    #[error("this view keeps no ownership records")]
    NoRecords,
}

/// How a file descriptor reaches the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyMode {
    /// `SECCOMP_IOCTL_NOTIF_ADDFD` with `SECCOMP_ADDFD_FLAG_SEND`: install and answer in one
    /// step (Linux 5.14).
    #[default]
    AddFdSend,
    /// `ADDFD` without `SEND`, then `NOTIF_SEND` with the fd number: ~1 µs slower (see the
    /// latency notes above), but a call whose answer was never sent stays pending for the
    /// listener keeper to answer.
    AddFdThenSend,
}

/// Tuning of a [`Supervisor`].
#[derive(Debug, Clone)]
pub struct Options {
    /// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (Linux 6.6): wake the member on the supervisor's
    /// CPU when answering.
    pub sync_wakeup: bool,
    /// How fds are injected.
    pub reply: ReplyMode,
    /// Pin the supervisor thread to this CPU.
    pub pin_cpu: Option<usize>,
    /// How long a namespace's visible-id list is reused within one `GET_NEXT_ID` walk
    /// (a walk starting at id 0 always refreshes it).
    pub cache_ttl: Duration,
    /// A label for logs and the thread name (e.g. the member's pid).
    pub label: String,
    /// Where the id of each notification is written before it is answered, so that the
    /// listener keeper can answer it if bpfnsd dies meanwhile.
    pub in_flight: Option<Arc<InFlight>>,
    /// Told of every call refused (see [`Denial`]), after it is answered.
    pub on_denial: Option<DenialSink>,
}

/// A call the supervisor refused: an object or pin of a namespace the caller cannot see, or
/// an `EPERM` of its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The calling thread (host pid namespace).
    pub tid: i32,
    /// The caller's namespace.
    pub ns: NsId,
    /// The bpf command (`BPF_MAP_GET_FD_BY_ID`, ...).
    pub command: &'static str,
    /// The object the call named, where it named one by id.
    pub object: Option<(ObjectKind, u32)>,
    /// The path of an `OBJ_GET`.
    pub path: Option<String>,
    /// The errno answered.
    pub errno: i32,
    /// Why, in words.
    pub reason: String,
}

/// Where a supervisor reports its [`Denial`]s (bpfnsd logs and publishes them).
#[derive(Clone)]
pub struct DenialSink(pub Arc<dyn Fn(Denial) + Send + Sync>);

impl std::fmt::Debug for DenialSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DenialSink")
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sync_wakeup: true,
            reply: ReplyMode::AddFdSend,
            pin_cpu: None,
            cache_ttl: Duration::from_secs(2),
            label: String::new(),
            in_flight: None,
            on_denial: None,
        }
    }
}

/// Counters of one supervisor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Notifications received.
    pub notifications: u64,
    /// Answered with a value (success).
    pub succeeded: u64,
    /// Answered with an fd injected.
    pub injected: u64,
    /// Answered with an error (refusals, invalid attrs, `ENOENT` at the end of a walk, ...).
    pub errors: u64,
    /// Abandoned by the caller before the answer (signal, exit): nothing to answer.
    pub abandoned: u64,
    /// Internal failures (view errors, panics caught): answered with an error too.
    pub internal: u64,
    /// Time spent handling notifications, from receipt to answer, in nanoseconds.
    pub busy_ns: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    notifications: AtomicU64,
    succeeded: AtomicU64,
    injected: AtomicU64,
    errors: AtomicU64,
    abandoned: AtomicU64,
    internal: AtomicU64,
    busy_ns: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Stats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            notifications: g(&self.notifications),
            succeeded: g(&self.succeeded),
            injected: g(&self.injected),
            errors: g(&self.errors),
            abandoned: g(&self.abandoned),
            internal: g(&self.internal),
            busy_ns: g(&self.busy_ns),
        }
    }

    pub(crate) fn bump(a: &AtomicU64) {
        a.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// Serves one seccomp listener on its own thread until [`stop`](Self::stop) (or drop), or
/// until every task under the filter has exited.
///
/// When the supervisor stops, the listener is closed: trapped calls of the members then fail
/// with `ENOSYS` (never hang).
#[derive(Debug)]
pub struct Supervisor {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Option<UnixStream>,
    counters: Arc<Counters>,
}

impl Supervisor {
    /// Start serving `listener`.
    pub fn spawn(
        listener: Listener,
        view: Arc<dyn View>,
        options: Options,
    ) -> std::io::Result<Supervisor> {
        Self::spawn_then(listener, view, options, || {})
    }

    /// [`spawn`](Self::spawn), and run `on_exit` on the thread when it stops serving.
    pub fn spawn_then(
        listener: Listener,
        view: Arc<dyn View>,
        options: Options,
        on_exit: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<Supervisor> {
        let (stop_tx, stop_rx) = UnixStream::pair()?;
        let counters = Arc::new(Counters::default());
        let name = if options.label.is_empty() {
            "bpfns-supervisor".to_string()
        } else {
            format!("bpfns-sup-{}", options.label)
        };
        let c = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name(name.chars().take(15).collect())
            .spawn(move || {
                worker::run(listener, view, options, c, stop_rx);
                on_exit();
            })?;
        Ok(Supervisor {
            thread: Some(thread),
            stop: Some(stop_tx),
            counters,
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Whether the thread has ended (every supervised task exited, or stopped).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stop serving and close the listener; returns the final counters.
    pub fn stop(mut self) -> Stats {
        self.halt();
        self.stats()
    }

    /// Wait until every supervised task has exited; returns the final counters.
    pub fn wait(mut self) -> Stats {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stats()
    }

    /// Let go of a thread that is ending by itself (no join: it may be the caller).
    fn detach(mut self) {
        self.stop.take();
        self.thread.take();
    }

    fn halt(&mut self) {
        // Closing our end wakes the worker's poll.
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The daemon's supervisors: one [`Supervisor`] per listener handed over by `bpfns exec`
/// (or withdrawn from the listener keeper at start), each listener also deposited with the
/// keeper ([`crate::keeper`]) before `supervise` is answered.
pub struct SupervisorPool {
    view: Arc<dyn View>,
    options: Options,
    /// Each supervisor removes itself when its thread ends, so that nothing of a finished
    /// member (its stop socket, the copies kept for a new keeper) stays open in bpfnsd.
    live: Arc<Mutex<Live>>,
    keeper: Option<Arc<keeper::Link>>,
    limits: Limits,
    /// The tenant (top-level namespace) of a namespace: limits count per tenant.
    tenant_of: TenantOf,
}

/// Maps a namespace to its tenant (see `Registry::tenant_of`).
type TenantOf = Arc<dyn Fn(NsId) -> NsId + Send + Sync>;

#[derive(Default)]
struct Live {
    next: u64,
    by_key: std::collections::HashMap<u64, Entry>,
}

/// A supervised listener: its supervisor, and what a new keeper would be given.
struct Entry {
    sup: Supervisor,
    pid: i32,
    uid: u32,
    ns: NsId,
    listener: OwnedFd,
    in_flight: Arc<InFlight>,
}

impl std::fmt::Debug for SupervisorPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorPool")
            .field("options", &self.options)
            .field("live", &self.count())
            .finish_non_exhaustive()
    }
}

impl SupervisorPool {
    /// A pool without a keeper (its members lose their supervision when bpfnsd exits).
    pub fn new(view: Arc<dyn View>, options: Options) -> Self {
        Self {
            view,
            options,
            live: Arc::default(),
            keeper: None,
            limits: Limits::default(),
            tenant_of: Arc::new(|ns| ns),
        }
    }

    /// Count limits per tenant as `tenant_of` says (default: per namespace).
    pub fn with_tenants(mut self, tenant_of: TenantOf) -> Self {
        self.tenant_of = tenant_of;
        self
    }

    /// A pool whose listeners are also held by the keeper behind `link`.
    pub fn with_keeper(
        view: Arc<dyn View>,
        options: Options,
        link: Arc<keeper::Link>,
        limits: Limits,
    ) -> Self {
        Self {
            keeper: Some(link),
            limits,
            ..Self::new(view, options)
        }
    }

    /// Serve everything the keeper holds (at bpfnsd's start), and from then on keep the
    /// keeper supplied: if it dies, a new one gets every listener served here.
    pub fn take_over_from_keeper(self: &Arc<Self>) {
        let Some(link) = &self.keeper else { return };
        match link.start() {
            Ok(withdrawn) => self.adopt(withdrawn),
            Err(e) => tracing::error!("the listener keeper: {e}"),
        }
        link.watch(Box::new(Served(Arc::downgrade(self))));
    }

    /// Serve listeners withdrawn from the keeper (it holds them already).
    fn adopt(&self, withdrawn: Vec<keeper::link::Withdrawn>) {
        let n = withdrawn.len();
        for w in withdrawn {
            let in_flight = Arc::new(w.in_flight);
            if let Err(e) = self.start(w.pid, w.uid, w.ns, w.listener, in_flight, false) {
                tracing::error!(
                    pid = w.pid,
                    "serving a listener from the keeper: {}",
                    e.message
                );
            }
        }
        if n > 0 {
            tracing::info!(listeners = n, "took over the listeners the keeper held");
        }
    }

    /// Start a supervisor for `listener`; with `bounded`, refuse it if a limit is reached.
    /// Returns its key.
    fn start(
        &self,
        pid: i32,
        uid: u32,
        ns: NsId,
        listener: OwnedFd,
        in_flight: Arc<InFlight>,
        bounded: bool,
    ) -> Result<u64, Failure> {
        let copy = listener
            .try_clone()
            .map_err(|e| Failure::new(ErrorCode::Internal, format!("dup of a listener: {e}")))?;
        let mut options = self.options.clone();
        options.label = pid.to_string();
        options.in_flight = Some(Arc::clone(&in_flight));
        // Held across the spawn: the thread's own removal waits until it is inserted.
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if bounded {
            self.check_limits(&live, uid, ns)?;
        }
        let key = live.next;
        live.next += 1;
        let pool = Arc::downgrade(&self.live);
        // No task under a member's listener is answered as the root namespace's.
        let view: Arc<dyn View> = if ns.is_root() {
            Arc::clone(&self.view)
        } else {
            Arc::new(untagged::Untagged {
                inner: Arc::clone(&self.view),
                ns,
            })
        };
        let sup = Supervisor::spawn_then(Listener::from_fd(listener), view, options, move || {
            if let Some(pool) = pool.upgrade() {
                let gone = pool
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .by_key
                    .remove(&key);
                if let Some(e) = gone {
                    e.sup.detach();
                }
            }
        })
        .map_err(|e| {
            Failure::new(
                ErrorCode::LimitReached,
                format!("bpfnsd cannot start a supervisor thread: {e}"),
            )
        })?;
        tracing::info!(pid, "supervising a namespace member");
        live.by_key.insert(
            key,
            Entry {
                sup,
                pid,
                uid,
                ns,
                listener: copy,
                in_flight,
            },
        );
        Ok(key)
    }

    fn check_limits(&self, live: &Live, uid: u32, ns: NsId) -> Result<(), Failure> {
        let l = &self.limits;
        let all = live.by_key.len() as u64;
        // Per tenant, and per uid within it: nobody's members count against another tenant.
        let tenant = (self.tenant_of)(ns);
        let mine: Vec<&Entry> = live
            .by_key
            .values()
            .filter(|e| (self.tenant_of)(e.ns) == tenant)
            .collect();
        let of_uid = mine.iter().filter(|e| e.uid == uid).count() as u64;
        let of_ns = mine.len() as u64;
        let refuse = |what: String, n: u64, setting: &str| {
            Err(Failure::new(
                ErrorCode::LimitReached,
                format!(
                    "bpfnsd already supervises {n} members {what}, its limit ({setting} in \
                     [limits] of bpfnsd.toml); stop some, or raise the limit"
                ),
            ))
        };
        if of_uid >= u64::from(l.max_supervised_per_uid) {
            return refuse(
                format!("handed over by uid {uid} in this tenant"),
                of_uid,
                "max_supervised_per_uid",
            );
        }
        if of_ns >= u64::from(l.max_supervised_per_namespace) {
            return refuse(
                format!("in the tenant of namespace {ns}"),
                of_ns,
                "max_supervised_per_namespace",
            );
        }
        if all >= u64::from(l.max_supervised) {
            return refuse("in all".into(), all, "max_supervised");
        }
        Ok(())
    }

    fn remove(&self, key: u64) {
        let gone = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_key
            .remove(&key);
        drop(gone);
    }
}

/// The keeper watcher's handle on a pool.
struct Served(std::sync::Weak<SupervisorPool>);

impl keeper::link::Served for Served {
    fn copies(&self) -> Vec<keeper::link::Withdrawn> {
        let Some(pool) = self.0.upgrade() else {
            return Vec::new();
        };
        let live = pool.live.lock().unwrap_or_else(|e| e.into_inner());
        live.by_key
            .values()
            .filter_map(|e| {
                Some(keeper::link::Withdrawn {
                    pid: e.pid,
                    uid: e.uid,
                    ns: e.ns,
                    listener: e.listener.try_clone().ok()?,
                    in_flight: e.in_flight.try_clone().ok()?,
                })
            })
            .collect()
    }

    fn adopt(&self, withdrawn: Vec<keeper::link::Withdrawn>) {
        if let Some(pool) = self.0.upgrade() {
            pool.adopt(withdrawn);
        }
    }
}

impl ListenerSink for SupervisorPool {
    fn supervise(&self, s: Supervise) -> Result<(), Failure> {
        let in_flight = Arc::new(s.in_flight);
        let Some(link) = &self.keeper else {
            self.start(s.pid, s.uid, s.ns, s.listener, in_flight, true)?;
            return Ok(());
        };
        // The keeper's copy is in place before the caller hears back (and lets its child run):
        // from then on, the member's listener outlives any one bpfnsd.
        let mut session = link.session().map_err(|e| {
            Failure::new(
                ErrorCode::Internal,
                format!("{e}; the member was not started"),
            )
        })?;
        let listener =
            s.listener.as_fd().try_clone_to_owned().map_err(|e| {
                Failure::new(ErrorCode::Internal, format!("dup of a listener: {e}"))
            })?;
        let key = self.start(s.pid, s.uid, s.ns, s.listener, Arc::clone(&in_flight), true)?;
        let deposited = session.deposit(&keeper::link::Deposit {
            pid: s.pid,
            uid: s.uid,
            ns: s.ns,
            listener: listener.as_fd(),
            in_flight: in_flight.as_fd(),
        });
        if let Err(e) = deposited {
            drop(session);
            self.remove(key);
            return Err(Failure::new(
                ErrorCode::Internal,
                format!(
                    "handing the listener to the listener keeper: {e}; the member was not started"
                ),
            ));
        }
        Ok(())
    }

    fn count(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_key
            .len()
    }

    fn kept(&self) -> Option<keeper::KeeperStats> {
        self.keeper.as_ref().map(|l| l.stats())
    }

    fn detach_keeper(&self) {
        if let Some(l) = &self.keeper {
            l.close();
        }
    }

    fn supervises_creations(&self) -> Option<bool> {
        Some(self.view.supervises_creations())
    }
}

/// Connect the supervisor to the daemon: listeners the daemon receives are served by a
/// [`SupervisorPool`] over a [`KernelView`] of the daemon's kernel side and registry, and held
/// by a listener keeper too; what a keeper already holds (members of an earlier bpfnsd) is
/// served from now on.
pub fn install(daemon: &Arc<Daemon>) {
    // Resolved once, before any member's load waits on it.
    let _ = kfuncs::allowed_ids();
    match Kernel::open(daemon.kernel.layout()) {
        Ok(kernel) => {
            let view = Arc::new(KernelView::new(Arc::new(kernel), daemon.registry.clone()));
            view.keep_warm();
            // The census (`ns list`, `ns show`, the metrics) counts from the same warm listing.
            daemon.set_object_owners(view.clone());
            let c = &daemon.config;
            let link = keeper::Link::new(keeper::KeeperConfig {
                socket: c.keeper_socket(),
                program: c
                    .keeper_program
                    .clone()
                    .unwrap_or_else(|| "/proc/self/exe".into()),
                pin_root: c.pin_root.clone(),
                grace: Duration::from_millis(c.outage_grace_ms),
            });
            // ADDFD, then SEND: an ADDFD|SEND interrupted by bpfnsd's death after it was
            // queued leaves the call answered with 0 (the kernel marks it replied when the
            // request is queued, and drops the request when the ioctl is interrupted), so the
            // member gets fd 0 — libbpf then dups and closes it. In two steps, a call whose
            // answer bpfnsd never sent stays pending, and the keeper answers it EAGAIN. The
            // cost: about 1 µs per open (docs/benchmarks.md).
            let weak = Arc::downgrade(daemon);
            let options = Options {
                reply: ReplyMode::AddFdThenSend,
                on_denial: Some(DenialSink(Arc::new(move |d| {
                    if let Some(daemon) = weak.upgrade() {
                        daemon.on_denial(d);
                    }
                }))),
                ..Options::default()
            };
            let registry = daemon.registry.clone();
            let pool = Arc::new(
                SupervisorPool::with_keeper(view, options, link, c.limits.clone())
                    .with_tenants(Arc::new(move |ns| registry.read().tenant_of(ns))),
            );
            pool.take_over_from_keeper();
            daemon.set_listener_sink(pool);
        }
        Err(e) => tracing::error!("the supervisor cannot open the kernel side: {e}"),
    }
}
