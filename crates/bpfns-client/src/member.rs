//! Starting a program as a member of a namespace: what `bpfns exec` does, as a library for
//! container runtimes.
//!
//! 1. The child is started and waits before exec (see [`bpfns_sys::spawn::MemberSetup`]).
//! 2. bpfnsd tags it into the namespace (`enter`): from then on, everything it starts inherits
//!    the tag in the kernel.
//! 3. In a private mount namespace, the namespace's own bpffs is bind-mounted over
//!    `/sys/fs/bpf`, the directory of the other namespaces' instances and bpfnsd's state are
//!    covered, and the directory of bpfnsd's socket is made read-only (it must be a directory
//!    of its own, as `/run/bpfns` is).
//! 4. The member filter is installed (`no_new_privs` first unless the caller is host admin),
//!    its listener is handed to bpfnsd (`supervise`), and only then does the child exec.
//!
//! A caller that is already a member is already under the filter (which refuses a second
//! listener): it only moves the child deeper; the existing supervisor then
//! answers from the deeper namespace's view, since it reads every caller's tag.
//!
//! **When bpfnsd dies.** The returned [`Member`] keeps a second handle on the listener and a
//! relay thread that watches bpfnsd's process. While bpfnsd is gone, a member's trapped call
//! waits up to [`Options::grace`] for it to come back (then bpfnsd answers it as usual), and
//! after that fails with `EAGAIN`, as do the calls that follow until bpfnsd is back; the call
//! bpfnsd was answering when it died fails with `EAGAIN` at once. The relay hands the listener
//! to each new bpfnsd (`supervise`) as soon as it answers. Untrapped bpf() calls never depend on
//! bpfnsd, and the kernel side keeps tagging and recording ownership meanwhile. Keep the
//! [`Member`] for as long as the member runs: dropping it stops the relay (the member is not
//! killed); with neither bpfnsd nor the relay holding the listener, trapped calls fail with
//! `ENOSYS`.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bpfns_sys::seccomp::{InFlight, Listener, Response};
use bpfns_sys::spawn::MemberSetup;
use bpfns_sys::Errno;

use crate::{Client, ClientError};

/// What can go wrong starting a member.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("starting the command: {0}")]
    Spawn(String),
    #[error("the member filter: {0}")]
    Filter(bpfns_sys::SysError),
    #[error(transparent)]
    FilterProgram(#[from] crate::filter::FilterError),
}

/// What the relay of a [`Member`] tells about bpfnsd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEvent {
    /// bpfnsd exited; the relay holds the member's trapped calls.
    DaemonGone,
    /// A new bpfnsd took the listener over.
    DaemonBack,
}

/// How a member is started.
pub struct Options {
    /// While bpfnsd is gone, how long a trapped call waits for it before failing with
    /// `EAGAIN`.
    pub grace: Duration,
    /// Called by the relay thread on each [`RelayEvent`].
    pub on_event: Option<Box<dyn Fn(RelayEvent) + Send>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(2),
            on_event: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// What a relay did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Times bpfnsd was seen gone.
    pub outages: u64,
    /// Times a new bpfnsd took the listener over.
    pub resumed: u64,
    /// Calls bpfnsd had taken and not answered when it died (answered `EAGAIN`).
    pub abandoned: u64,
    /// Calls answered `EAGAIN` because bpfnsd stayed away longer than the grace period.
    pub refused: u64,
}

/// A started member: its process, and the relay that keeps its supervision across bpfnsd
/// restarts. Dereferences to the [`Child`].
#[derive(Debug)]
pub struct Member {
    child: Child,
    relay: Option<Relay>,
}

impl Member {
    /// What the relay did so far (all zero without a relay: nested members, old bpfnsd).
    pub fn relay_stats(&self) -> RelayStats {
        self.relay.as_ref().map(Relay::stats).unwrap_or_default()
    }

    /// Stop the relay (the member keeps running) and give the process back.
    pub fn into_child(mut self) -> Child {
        self.relay.take();
        // `Member` has a Drop-free layout: moving the child out is fine.
        let Member { child, .. } = self;
        child
    }
}

impl std::ops::Deref for Member {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Member {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

/// Start `cmd` as a member of namespace `ns`, talking to bpfnsd at `socket`.
pub fn spawn(socket: &Path, ns: &str, cmd: &mut Command) -> Result<Member, MemberError> {
    spawn_with(socket, ns, cmd, Options::default())
}

/// [`spawn`] with [`Options`].
pub fn spawn_with(
    socket: &Path,
    ns: &str,
    cmd: &mut Command,
    options: Options,
) -> Result<Member, MemberError> {
    let mut client = Client::connect(socket)?;
    let me = client.hello()?;
    let target = client.ns_show(ns)?;
    if me.namespace != "/" {
        if !target.policy.allow_tracing {
            // As below: no CAP_PERFMON where tracing is denied.
            bpfns_sys::spawn::drop_capabilities_before_exec(
                cmd,
                bpfns_sys::caps::CapabilitySet::PERFMON,
            );
        }
        return spawn_nested(client, ns, cmd).map(|child| Member { child, relay: None });
    }
    let mut setup = MemberSetup::new(crate::filter::filter()?)
        .filter_flags(crate::filter::flags())
        // Without CAP_SYS_ADMIN the kernel accepts a filter only under no_new_privs.
        .no_new_privs(!me.host_admin)
        .wait_ack(true);
    if !target.policy.allow_tracing {
        // With CAP_PERFMON (or, from 6.9, a token granting it) the kernel lets any program
        // type read kernel memory; where tracing is denied no member holds it (bpfnsd refuses
        // program loads from a thread that does, and CAP_SYS_ADMIN, which also grants it).
        setup = setup.drop_capabilities(bpfns_sys::caps::CapabilitySet::PERFMON);
    }
    if me.host_admin {
        // The daemon's own files: its state is hidden, the directory of its socket read-only
        // (connect() still works; a uid-0 member cannot unlink the socket and bind its own).
        let status = client.status()?;
        if !status.state_dir.is_empty() {
            setup = setup
                .hide(Path::new(&status.state_dir))
                .map_err(|e| MemberError::Spawn(e.to_string()))?;
        }
        if let Some(dir) = socket.parent().filter(|d| *d != Path::new("/")) {
            setup = setup
                .read_only(dir)
                .map_err(|e| MemberError::Spawn(e.to_string()))?;
        }
    }
    if me.host_admin && !target.bpffs.is_empty() {
        let bpffs = PathBuf::from(&target.bpffs);
        setup = setup
            .bpffs(&bpffs)
            .map_err(|e| MemberError::Spawn(e.to_string()))?;
        if let Some(all) = bpffs.parent() {
            setup = setup
                .hide(all)
                .map_err(|e| MemberError::Spawn(e.to_string()))?;
        }
    }
    let in_flight = InFlight::create().map_err(MemberError::Filter)?;
    let client = Arc::new(Mutex::new(client));
    let pid = Arc::new(AtomicI32::new(0));
    let daemon_pid = Arc::new(AtomicI32::new(0));
    let (c1, c2, p1, p2) = (client.clone(), client, pid.clone(), pid.clone());
    let d2 = daemon_pid.clone();
    let record = &in_flight;
    let ns1 = ns.to_string();
    let spawned = setup
        .spawn(
            cmd,
            move |child| {
                p1.store(child, Ordering::SeqCst);
                c1.lock()
                    .map_err(|_| "client lock".to_string())?
                    .enter(&ns1, child)
                    .map_err(|e| format!("entering {ns1}: {e}"))
            },
            move |listener| {
                let child = p2.load(Ordering::SeqCst);
                let daemon = c2
                    .lock()
                    .map_err(|_| "client lock".to_string())?
                    .supervise_with(child, listener.as_fd(), Some(record.as_fd()))
                    .map_err(|e| format!("handing the listener to bpfnsd: {e}"))?;
                d2.store(daemon, Ordering::SeqCst);
                Ok(())
            },
        )
        .map_err(|e| MemberError::Spawn(e.to_string()))?;
    // bpfnsd holds the listener now; we keep ours for the relay. Without bpfnsd's pid (an
    // older bpfnsd) there is nothing to watch: ours is closed.
    let relay = match daemon_pid.load(Ordering::SeqCst) {
        0 => None,
        d => Relay::start(
            RelayState {
                socket: socket.to_path_buf(),
                pid: pid.load(Ordering::SeqCst),
                listener: spawned.listener,
                in_flight,
                grace: options.grace,
                on_event: options.on_event,
                stats: Arc::default(),
            },
            d,
        ),
    };
    Ok(Member {
        child: spawned.child,
        relay,
    })
}

/// From inside a namespace: only tag the child deeper (the filter is inherited).
fn spawn_nested(client: Client, ns: &str, cmd: &mut Command) -> Result<Child, MemberError> {
    let client = Mutex::new(client);
    let ns1 = ns.to_string();
    bpfns_sys::gate::spawn_gated(cmd, |child| {
        client
            .lock()
            .map_err(|_| "client lock".to_string())?
            .enter(&ns1, child)
            .map_err(|e| format!("entering {ns1}: {e}"))
    })
    .map_err(|e| MemberError::Spawn(e.to_string()))
}

/// How often the relay tries to reach bpfnsd again while it is gone.
const RECONNECT_EVERY: Duration = Duration::from_millis(50);
/// How many notification ids after the recorded one the relay checks for calls a dead bpfnsd
/// took but had not recorded yet (ids of one filter are consecutive).
const ABANDONED_SPAN: u64 = 8;

#[derive(Debug, Default)]
struct Counters {
    outages: AtomicU64,
    resumed: AtomicU64,
    abandoned: AtomicU64,
    refused: AtomicU64,
}

struct RelayState {
    socket: PathBuf,
    pid: i32,
    listener: Listener,
    in_flight: InFlight,
    grace: Duration,
    on_event: Option<Box<dyn Fn(RelayEvent) + Send>>,
    stats: Arc<Counters>,
}

#[derive(Debug)]
struct Relay {
    stop: Option<UnixStream>,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<Counters>,
}

impl Relay {
    /// Start relaying; `None` if bpfnsd's process cannot be watched (it is then already gone,
    /// or too old a kernel for pidfds: the member simply has no relay).
    fn start(state: RelayState, daemon_pid: i32) -> Option<Relay> {
        let daemon = bpfns_sys::process::open_pidfd(daemon_pid).ok()?;
        let (stop_tx, stop_rx) = UnixStream::pair().ok()?;
        let stats = Arc::clone(&state.stats);
        let thread = std::thread::Builder::new()
            .name("bpfns-relay".into())
            .spawn(move || state.run(daemon, stop_rx))
            .ok()?;
        Some(Relay {
            stop: Some(stop_tx),
            thread: Some(thread),
            stats,
        })
    }

    fn stats(&self) -> RelayStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RelayStats {
            outages: g(&self.stats.outages),
            resumed: g(&self.stats.resumed),
            abandoned: g(&self.stats.abandoned),
            refused: g(&self.stats.refused),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Closing our end wakes the thread.
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl RelayState {
    fn event(&self, e: RelayEvent) {
        if let Some(f) = &self.on_event {
            f(e);
        }
    }

    fn run(self, mut daemon: OwnedFd, stop: UnixStream) {
        use bpfns_sys::fds::poll_any;
        loop {
            // bpfnsd serves the listener: wait until its process exits.
            match poll_any(&[daemon.as_fd(), stop.as_fd()], None) {
                Ok(Some(r)) if r[1].readable || r[1].hung_up => return,
                Ok(Some(r)) if r[0].readable || r[0].hung_up => {}
                Ok(_) => continue,
                Err(_) => return,
            }
            self.stats.outages.fetch_add(1, Ordering::Relaxed);
            self.event(RelayEvent::DaemonGone);
            // The call it was answering waits for an answer nobody else will give.
            if let Ok(last) = self.in_flight.last() {
                if last != 0 {
                    let n = self
                        .listener
                        .answer_abandoned(last, ABANDONED_SPAN, Errno::AGAIN);
                    self.stats.abandoned.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            match self.wait_for_daemon(&stop) {
                Some(pidfd) => {
                    daemon = pidfd;
                    self.stats.resumed.fetch_add(1, Ordering::Relaxed);
                    self.event(RelayEvent::DaemonBack);
                }
                None => return,
            }
        }
    }

    /// Hold or refuse trapped calls until a new bpfnsd takes the listener; its pidfd, or
    /// `None` when the relay should end (stopped, or no task is left under the filter).
    fn wait_for_daemon(&self, stop: &UnixStream) -> Option<OwnedFd> {
        use bpfns_sys::fds::poll_any;
        let mut pending_since: Option<Instant> = None;
        let mut expired = false;
        loop {
            if let Some(pidfd) = self.resupervise() {
                return Some(pidfd);
            }
            let r = poll_any(
                &[self.listener.as_fd(), stop.as_fd()],
                Some(RECONNECT_EVERY),
            )
            .ok()?;
            let Some(r) = r else {
                pending_since = None;
                continue;
            };
            if r[1].readable || r[1].hung_up {
                return None;
            }
            if !r[0].readable {
                if r[0].hung_up {
                    return None;
                }
                continue;
            }
            let since = *pending_since.get_or_insert_with(Instant::now);
            if expired || since.elapsed() >= self.grace {
                // bpfnsd has been away too long: answer what is queued. (A caller killed
                // between poll and recv could leave recv waiting for the next call; that
                // call is then answered here too.)
                expired = true;
                pending_since = None;
                if let Ok(n) = self.listener.recv() {
                    if self
                        .listener
                        .respond(n.id, Response::Error(Errno::AGAIN))
                        .is_ok()
                    {
                        self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                continue;
            }
            // Queued calls wait for the new bpfnsd; sleep instead of spinning on them.
            if matches!(
                poll_any(&[stop.as_fd()], Some(RECONNECT_EVERY)),
                Ok(Some(_))
            ) {
                return None;
            }
        }
    }

    /// Hand the listener to bpfnsd if it answers; its pidfd.
    fn resupervise(&self) -> Option<OwnedFd> {
        let mut c = Client::connect(&self.socket).ok()?;
        c.set_timeout(Some(Duration::from_secs(5))).ok()?;
        let d = c
            .supervise_with(
                self.pid,
                self.listener.as_fd(),
                Some(self.in_flight.as_fd()),
            )
            .ok()?;
        if d == 0 {
            return None;
        }
        bpfns_sys::process::open_pidfd(d).ok()
    }
}
