//! bpfnsd's side of the keeper: one connection, requests serialised under a lock, and a
//! watcher thread that starts a new keeper (and deposits every listener again) when the
//! connection ends.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bpfns_model::NsId;
use bpfns_sys::fds::poll_events;
use bpfns_sys::seccomp::InFlight;
use bpfns_sys::unix::{recv_msg, send_msg, seqpacket_connect, set_timeouts};
use bpfns_sys::{Errno, SysError};

use super::{Counters, Msg, Op, MSG_LEN, VERSION};

/// A request the keeper does not answer within this long fails (and the connection is
/// dropped, so that the watcher starts over).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a new keeper may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `supervise` waits for a keeper while the watcher starts a new one.
const DEPOSIT_WAIT: Duration = Duration::from_secs(5);
/// How long the keeper's counters are reused for `status`.
const STATS_TTL: Duration = Duration::from_millis(200);

/// How to reach (and start) the keeper.
#[derive(Debug, Clone)]
pub struct KeeperConfig {
    /// Its socket (`<state_dir>/keeper.sock`).
    pub socket: PathBuf,
    /// The program started in keeper mode (bpfnsd's own executable by default).
    pub program: PathBuf,
    /// The kernel side's pin root (the keeper identifies its callers by their task tags).
    pub pin_root: PathBuf,
    /// How long a trapped call waits for a new bpfnsd before failing with `EAGAIN`.
    pub grace: Duration,
}

/// What went wrong with the keeper.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error("starting the listener keeper ({program}): {error}")]
    Spawn {
        program: PathBuf,
        error: std::io::Error,
    },
    #[error("the listener keeper ({program}) exited at start ({status}); its reasons are in bpfnsd's log")]
    Exited { program: PathBuf, status: String },
    #[error("the listener keeper did not answer at {0} within 5 s")]
    Timeout(PathBuf),
    #[error("talking to the listener keeper: {0}")]
    Io(SysError),
    #[error("the listener keeper refused: {0}")]
    Refused(Errno),
    #[error("the listener keeper closed the connection")]
    Closed,
    #[error("the listener keeper sent a malformed reply")]
    Protocol,
    #[error("no listener keeper is running ({0}); bpfnsd keeps trying to start one")]
    Unavailable(String),
}

impl From<SysError> for KeeperError {
    fn from(e: SysError) -> Self {
        KeeperError::Io(e)
    }
}

/// A listener withdrawn from the keeper, with what was deposited with it.
#[derive(Debug)]
pub struct Withdrawn {
    pub pid: i32,
    pub uid: u32,
    pub ns: NsId,
    pub listener: OwnedFd,
    pub in_flight: InFlight,
}

/// A listener to deposit.
#[derive(Debug, Clone, Copy)]
pub struct Deposit<'a> {
    pub pid: i32,
    pub uid: u32,
    pub ns: NsId,
    pub listener: BorrowedFd<'a>,
    pub in_flight: BorrowedFd<'a>,
}

/// What bpfnsd knows about its keeper (for `status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeeperStats {
    /// The keeper's own counters, if it answered.
    pub keeper: Option<Counters>,
    /// Keepers started since bpfnsd started (after the first).
    pub restarts: u64,
}

struct Conn {
    sock: OwnedFd,
    pid: i32,
    instance: u64,
    version: u32,
}

#[derive(Default)]
struct State {
    conn: Option<Conn>,
    /// A keeper this bpfnsd started (reaped when it ends).
    child: Option<Child>,
    /// The keeper instance that holds what this bpfnsd serves.
    synced: u64,
    last_error: String,
}

/// The connection to the keeper. See the [module documentation](super).
pub struct Link {
    cfg: KeeperConfig,
    state: Mutex<State>,
    connected: Condvar,
    restarts: AtomicU64,
    /// Closed on drop (or [`Link::close`]): wakes the watcher, which then ends.
    stop: Mutex<Option<UnixStream>>,
    closed: std::sync::atomic::AtomicBool,
    /// The keeper's counters as last asked, and when.
    cache: Mutex<Option<(Instant, Option<Counters>)>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// What the watcher needs from whoever serves the listeners.
pub trait Served: Send + Sync {
    /// Copies of every listener served (for a new keeper).
    fn copies(&self) -> Vec<Withdrawn>;
    /// Serve listeners withdrawn from a keeper (when taking over at start failed, and a later
    /// attempt succeeds).
    fn adopt(&self, withdrawn: Vec<Withdrawn>);
}

/// The watcher's handle on what is served.
pub type Resync = Box<dyn Served>;

impl Link {
    pub fn new(cfg: KeeperConfig) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            state: Mutex::default(),
            connected: Condvar::new(),
            restarts: AtomicU64::new(0),
            stop: Mutex::new(None),
            closed: std::sync::atomic::AtomicBool::new(false),
            cache: Mutex::new(None),
        })
    }

    /// Stop watching and close the connection (the keeper goes on without this bpfnsd, as
    /// after a crash); later deposits fail. For shutting a bpfnsd down inside a process that
    /// goes on (tests).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.lock().conn = None;
        self.connected.notify_all();
    }

    pub fn config(&self) -> &KeeperConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// At bpfnsd's start: connect (starting a keeper if none answers), attach, and withdraw
    /// a copy of every listener the keeper holds.
    pub fn start(&self) -> Result<Vec<Withdrawn>, KeeperError> {
        let mut st = self.lock();
        let conn = self.connect(&mut st)?;
        let withdrawn = self.take_over(&mut st, conn)?;
        self.connected.notify_all();
        Ok(withdrawn)
    }

    /// Whether a keeper that answered is to be replaced by one of ours: of another version
    /// (bpfnsd was upgraded), or bound under another name than ours (the state directory was
    /// moved or is reached by another path since it started): a socket's bound name is what a
    /// member start checks a leaked connection against (`bpfns exec` refuses one to a socket
    /// in a hidden directory).
    fn foreign(&self, conn: &Conn) -> bool {
        if conn.version != VERSION {
            return true;
        }
        match bpfns_sys::unix::peer_path(&conn.sock) {
            Ok(Some(p)) if p == self.cfg.socket => false,
            named => {
                tracing::warn!(
                    pid = conn.pid,
                    bound = ?named.ok().flatten(),
                    socket = %self.cfg.socket.display(),
                    "the listener keeper answering at the socket was bound under another name: \
                     replacing it"
                );
                true
            }
        }
    }

    /// Attach through `conn` and withdraw what the keeper holds; a keeper of another version
    /// or bound under another name ([`Link::foreign`]) is emptied, retired and replaced by
    /// one of ours.
    fn take_over(&self, st: &mut State, conn: Conn) -> Result<Vec<Withdrawn>, KeeperError> {
        let withdrawn = withdraw_all(&conn)?;
        let conn = if self.foreign(&conn) {
            retire(&conn);
            let conn = self.spawn_and_connect(st)?;
            attach(&conn)?;
            for w in &withdrawn {
                deposit(&conn, &w.as_deposit())?;
            }
            tracing::info!(
                pid = conn.pid,
                listeners = withdrawn.len(),
                "replaced the listener keeper (of another version, or bound under another name)"
            );
            conn
        } else {
            attach(&conn)?;
            conn
        };
        st.synced = conn.instance;
        st.conn = Some(conn);
        self.forget_stats();
        Ok(withdrawn)
    }

    /// Exclusive use of the keeper connection, waiting (bounded) for one while the watcher
    /// starts a new keeper.
    pub fn session(&self) -> Result<Session<'_>, KeeperError> {
        let deadline = Instant::now() + DEPOSIT_WAIT;
        let mut st = self.lock();
        while st.conn.is_none() {
            if self.closed.load(Ordering::SeqCst) {
                return Err(KeeperError::Unavailable("bpfnsd is shutting down".into()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(KeeperError::Unavailable(st.last_error.clone()));
            }
            st = self
                .connected
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(Session { link: self, st })
    }

    /// The keeper's counters (`None` in the counters if it does not answer now). Asked at
    /// most every [`STATS_TTL`], and never waited for while the connection is busy: many
    /// concurrent `status` requests would otherwise queue behind each other's round trips.
    pub fn stats(&self) -> KeeperStats {
        let cached = *self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = cached.filter(|(at, _)| at.elapsed() < STATS_TTL);
        let keeper = match fresh {
            Some((_, c)) => c,
            None => match self.state.try_lock() {
                Ok(mut st) => {
                    let c = ask_stats(&mut st);
                    *self.cache.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((Instant::now(), c));
                    c
                }
                Err(std::sync::TryLockError::Poisoned(p)) => ask_stats(&mut p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => cached.and_then(|(_, c)| c),
            },
        };
        KeeperStats {
            keeper,
            restarts: self.restarts.load(Ordering::Relaxed),
        }
    }

    /// What changes the keeper's counters makes the next `status` ask again.
    fn forget_stats(&self) {
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Watch the connection on a thread of its own: when it ends (the keeper died), start a
    /// new keeper and deposit every listener `served` serves into it. The thread ends when the
    /// link is dropped.
    pub fn watch(self: &Arc<Self>, served: Resync) {
        let (tx, rx) = match UnixStream::pair() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("cannot watch the listener keeper: {e}");
                return;
            }
        };
        *self.stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("bpfns-keeper".into())
            .spawn(move || watch(weak, rx, served));
        if let Err(e) = spawned {
            tracing::error!("cannot start the keeper watcher: {e}");
        }
    }

    /// Connect to the keeper, starting one if none answers; its hello.
    fn connect(&self, st: &mut State) -> Result<Conn, KeeperError> {
        reap(st);
        match seqpacket_connect(&self.cfg.socket) {
            Ok(sock) => hello(sock),
            Err(_) => self.spawn_and_connect(st),
        }
    }

    fn spawn_and_connect(&self, st: &mut State) -> Result<Conn, KeeperError> {
        let program = &self.cfg.program;
        let mut cmd = Command::new(program);
        cmd.arg(super::FLAG)
            .arg(&self.cfg.socket)
            .arg(&self.cfg.pin_root)
            .arg(self.cfg.grace.as_millis().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_FDNAMES")
            .env_remove("NOTIFY_SOCKET")
            // Its own process group: a Ctrl-C meant for a bpfnsd in a terminal, or a kill of
            // bpfnsd's group, does not reach it.
            .process_group(0);
        let mut child = cmd.spawn().map_err(|error| KeeperError::Spawn {
            program: program.clone(),
            error,
        })?;
        let deadline = Instant::now() + START_TIMEOUT;
        let sock = loop {
            if let Ok(s) = seqpacket_connect(&self.cfg.socket) {
                break s;
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Exit 0: another keeper answered first; use that one.
                if status.success() {
                    if let Ok(s) = seqpacket_connect(&self.cfg.socket) {
                        break s;
                    }
                }
                return Err(KeeperError::Exited {
                    program: program.clone(),
                    status: status.to_string(),
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(KeeperError::Timeout(self.cfg.socket.clone()));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        st.child = Some(child);
        let conn = hello(sock)?;
        tracing::info!(pid = conn.pid, socket = %self.cfg.socket.display(), "started a listener keeper");
        Ok(conn)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Exclusive use of the keeper connection (see [`Link::session`]).
pub struct Session<'a> {
    link: &'a Link,
    st: MutexGuard<'a, State>,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session<'_> {
    /// Hand the keeper a copy of a listener (and its in-flight record).
    pub fn deposit(&mut self, d: &Deposit<'_>) -> Result<u64, KeeperError> {
        let conn = self
            .st
            .conn
            .as_ref()
            .ok_or_else(|| KeeperError::Unavailable("the connection ended".into()))?;
        let r = deposit(conn, d);
        self.link.forget_stats();
        if matches!(
            r,
            Err(KeeperError::Io(_) | KeeperError::Closed | KeeperError::Protocol)
        ) {
            // The watcher notices and starts over.
            self.st.conn = None;
        }
        r
    }
}

impl Withdrawn {
    fn as_deposit(&self) -> Deposit<'_> {
        Deposit {
            pid: self.pid,
            uid: self.uid,
            ns: self.ns,
            listener: self.listener.as_fd(),
            in_flight: self.in_flight.as_fd(),
        }
    }
}

fn ask_stats(st: &mut State) -> Option<Counters> {
    match st
        .conn
        .as_ref()
        .map(|c| call(c, Msg::new(Op::Stats, [0; 6]), &[]))
    {
        Some(Ok((m, _))) if m.op == Op::Ok => Some(Counters::from_words(m.a)),
        Some(_) => {
            st.conn = None;
            None
        }
        None => None,
    }
}

fn reap(st: &mut State) {
    if let Some(c) = st.child.as_mut() {
        if !matches!(c.try_wait(), Ok(None)) {
            st.child = None;
        }
    }
}

/// One request and its reply.
fn call(conn: &Conn, msg: Msg, fds: &[BorrowedFd<'_>]) -> Result<(Msg, Vec<OwnedFd>), KeeperError> {
    send_msg(&conn.sock, &msg.encode(), fds, false)?;
    read_reply(&conn.sock)
}

fn read_reply(sock: &OwnedFd) -> Result<(Msg, Vec<OwnedFd>), KeeperError> {
    let mut buf = [0u8; MSG_LEN];
    let mut fds = Vec::new();
    let n = recv_msg(sock, &mut buf, &mut fds, false)?;
    if n == 0 {
        return Err(KeeperError::Closed);
    }
    let m = Msg::decode(&buf[..n]).ok_or(KeeperError::Protocol)?;
    if m.op == Op::Err {
        return Err(KeeperError::Refused(Errno::from_raw_os_error(
            m.a[0] as i32,
        )));
    }
    Ok((m, fds))
}

fn hello(sock: OwnedFd) -> Result<Conn, KeeperError> {
    set_timeouts(&sock, Some(REQUEST_TIMEOUT))?;
    send_msg(&sock, &Msg::new(Op::Hello, [0; 6]).encode(), &[], false)?;
    let (m, _) = read_reply(&sock)?;
    if m.op != Op::Ok {
        return Err(KeeperError::Protocol);
    }
    Ok(Conn {
        sock,
        pid: m.a[0] as i32,
        instance: m.a[1],
        version: m.version,
    })
}

fn attach(conn: &Conn) -> Result<(), KeeperError> {
    match call(conn, Msg::new(Op::Attach, [0; 6]), &[])? {
        (m, _) if m.op == Op::Ok => Ok(()),
        _ => Err(KeeperError::Protocol),
    }
}

fn deposit(conn: &Conn, d: &Deposit<'_>) -> Result<u64, KeeperError> {
    let msg = Msg::new(
        Op::Deposit,
        [d.pid as u64, u64::from(d.uid), u64::from(d.ns.0), 0, 0, 0],
    );
    match call(conn, msg, &[d.listener, d.in_flight])? {
        (m, _) if m.op == Op::Ok => Ok(m.a[0]),
        _ => Err(KeeperError::Protocol),
    }
}

fn withdraw_all(conn: &Conn) -> Result<Vec<Withdrawn>, KeeperError> {
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let (m, fds) = call(conn, Msg::new(Op::Next, [after, 0, 0, 0, 0, 0]), &[])?;
        match m.op {
            Op::End => return Ok(out),
            Op::Entry => {
                let mut fds = fds.into_iter();
                let (Some(listener), Some(record)) = (fds.next(), fds.next()) else {
                    return Err(KeeperError::Protocol);
                };
                let in_flight = InFlight::from_fd(record)?;
                let [pid, uid, ns, key, ..] = m.a;
                if key <= after {
                    return Err(KeeperError::Protocol);
                }
                after = key;
                out.push(Withdrawn {
                    pid: pid as i32,
                    uid: uid as u32,
                    ns: NsId(ns as u32),
                    listener,
                    in_flight,
                });
            }
            _ => return Err(KeeperError::Protocol),
        }
    }
}

fn retire(conn: &Conn) {
    let _ = call(conn, Msg::new(Op::Retire, [0; 6]), &[]);
    wait_exit(conn.pid, Duration::from_secs(3));
}

/// Wait until process `pid` has exited; SIGKILL it after `patience`.
fn wait_exit(pid: i32, patience: Duration) {
    let Ok(pidfd) = bpfns_sys::process::open_pidfd(pid) else {
        return;
    };
    // A pidfd becomes readable when its process exits.
    if let Ok(Some(_)) = poll_events(&[(pidfd.as_fd(), true)], Some(patience)) {
        return;
    }
    let _ = bpfns_sys::unix::pidfd_kill(pidfd.as_fd());
    let _ = poll_events(&[(pidfd.as_fd(), true)], Some(Duration::from_secs(2)));
}

/// Retire the keeper at `socket` (as test harnesses and tools do when they are done): it
/// exits, closing every listener it holds. Returns its pid, or `None` if none answered.
pub fn retire_at(socket: &Path) -> Option<i32> {
    let conn = hello(seqpacket_connect(socket).ok()?).ok()?;
    let pid = conn.pid;
    retire(&conn);
    Some(pid)
}

/// The counters of the keeper at `socket`, if one answers.
pub fn stats_at(socket: &Path) -> Option<Counters> {
    let conn = hello(seqpacket_connect(socket).ok()?).ok()?;
    match call(&conn, Msg::new(Op::Stats, [0; 6]), &[]) {
        Ok((m, _)) if m.op == Op::Ok => Some(Counters::from_words(m.a)),
        _ => None,
    }
}

fn watch(link: Weak<Link>, stop: UnixStream, served: Resync) {
    let mut last_log: Option<Instant> = None;
    let mut failures = 0u32;
    loop {
        let watched = {
            let Some(l) = link.upgrade() else { return };
            let mut st = l.lock();
            reap(&mut st);
            st.conn.as_ref().and_then(|c| c.sock.try_clone().ok())
        };
        // Soon after a loss. A dying keeper may still accept a connection and then drop it,
        // so a failure is retried soon too, then less and less often (at most once a second).
        let tick = if watched.is_some() {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(10 << failures.min(7)).min(Duration::from_secs(1))
        };
        let mut fds = vec![(stop.as_fd(), true)];
        if let Some(w) = &watched {
            // Only hang-ups: the keeper never writes unasked.
            fds.push((w.as_fd(), false));
        }
        let ready = poll_events(&fds, Some(tick)).ok().flatten();
        drop(fds);
        if ready
            .as_ref()
            .and_then(|r| r.first())
            .is_some_and(|s| s.readable || s.hung_up)
        {
            return;
        }
        let lost = watched.is_none()
            || ready
                .as_ref()
                .and_then(|r| r.get(1))
                .is_some_and(|c| c.hung_up);
        drop(watched);
        if !lost {
            continue;
        }
        let Some(l) = link.upgrade() else { return };
        if l.closed.load(Ordering::SeqCst) {
            return;
        }
        match l.reconnect(&served) {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                let msg = e.to_string();
                l.lock().last_error = msg.clone();
                // The first failure is usually the dying keeper: say nothing unless it lasts.
                if failures > 3 && last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::error!("the listener keeper: {msg}");
                    last_log = Some(Instant::now());
                }
            }
        }
    }
}

impl Link {
    /// The connection ended: connect again (starting a keeper if needed); into a keeper
    /// other than the one that held our listeners, deposit them all.
    fn reconnect(&self, served: &Resync) -> Result<(), KeeperError> {
        let mut st = self.lock();
        if st.conn.is_some() {
            // Dropped by the watcher only; a hang-up closes it here.
            st.conn = None;
        }
        let mut conn = self.connect(&mut st)?;
        if st.synced == 0 {
            // Taking over at start failed: do it now.
            let withdrawn = self.take_over(&mut st, conn)?;
            tracing::info!(
                listeners = withdrawn.len(),
                "took over the listeners the keeper held"
            );
            served.adopt(withdrawn);
            self.connected.notify_all();
            return Ok(());
        }
        if self.foreign(&conn) {
            retire(&conn);
            conn = self.spawn_and_connect(&mut st)?;
        }
        attach(&conn)?;
        if conn.instance != st.synced {
            let copies = served.copies();
            for c in &copies {
                deposit(&conn, &c.as_deposit())?;
            }
            self.restarts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                pid = conn.pid,
                listeners = copies.len(),
                "the listener keeper was gone: a new one holds the listeners again"
            );
            st.synced = conn.instance;
        }
        st.conn = Some(conn);
        st.last_error.clear();
        self.forget_stats();
        self.connected.notify_all();
        Ok(())
    }
}
