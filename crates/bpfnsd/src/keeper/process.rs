//! The keeper process: one thread polling its socket, the connections of bpfnsd and the
//! listeners it holds (see the [module documentation](super)).
//!
//! It must not die while it holds listeners that nobody else holds: no `unwrap`, no
//! indexing, no unchecked arithmetic on these paths (the lints below), every error handled by
//! logging it and going on, and a caught panic (from a library) costs one loop iteration.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bpfns_kernel::{Kernel, PinLayout};
use bpfns_model::NsId;
use bpfns_sys::fds::{poll_events, Ready};
use bpfns_sys::seccomp::{InFlight, Listener, Response};
use bpfns_sys::unix::{accept_nonblocking, recv_msg_from, send_msg, Sender};
use bpfns_sys::Errno;

use super::{Counters, Msg, Op, ABANDONED_SPAN, IDLE_EXIT, MSG_LEN, VERSION};
use crate::caller::Caller;

/// At most this many connections at a time (bpfnsd needs one; more are refused).
const MAX_CONNS: usize = 8;
/// At most this many listeners held (far above bpfnsd's own limits).
const MAX_HELD: usize = 1 << 16;
/// A `NOTIF_RECV` that would block (another holder took the call) gives up after this long.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);

fn log(msg: &str) {
    crate::logging::keeper_line(msg);
}

/// Whether `args` (as `std::env::args()` gives them) select keeper mode.
pub fn is_keeper(args: &[String]) -> bool {
    args.get(1).map(String::as_str) == Some(super::FLAG)
}

/// Run the keeper: `args` are `PROGRAM --keeper SOCKET PIN_ROOT GRACE_MS`. Returns when
/// retired, or idle for [`IDLE_EXIT`].
pub fn main(args: &[String]) -> ExitCode {
    let (Some(socket), Some(pin_root), Some(grace)) = (args.get(2), args.get(3), args.get(4))
    else {
        log("usage: --keeper SOCKET PIN_ROOT GRACE_MS");
        return ExitCode::from(2);
    };
    let Ok(grace_ms) = grace.parse::<u64>() else {
        log(&format!(
            "GRACE_MS must be a number of milliseconds, not {grace}"
        ));
        return ExitCode::from(2);
    };
    // `ps` shows this instead of bpfnsd's (or "exe", when started through /proc/self/exe).
    let _ = bpfns_sys::process::set_name("bpfnsd-keeper");
    let init_userns = match crate::caller::init_userns() {
        Ok(n) => n,
        Err(e) => {
            log(&format!("{e}"));
            return ExitCode::from(1);
        }
    };
    let path = PathBuf::from(socket);
    let listen = match bind(&path) {
        Ok(Some(l)) => l,
        Ok(None) => {
            log(&format!("another keeper answers at {}", path.display()));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            log(&e);
            return ExitCode::from(1);
        }
    };
    let mut k = Keeper {
        listen,
        path,
        pin_root: PathBuf::from(pin_root),
        init_userns,
        conns: Vec::new(),
        held: Vec::new(),
        next_key: 1,
        next_conn: 1,
        grace: Duration::from_millis(grace_ms),
        instance: instance_id(),
        counters: Counters {
            pid: u64::from(std::process::id()),
            ..Counters::default()
        },
        alone_since: None,
    };
    log(&format!(
        "holding seccomp listeners for bpfnsd at {}",
        k.path.display()
    ));
    loop {
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| k.step()));
        match step {
            Ok(Step::Go) => {}
            Ok(Step::Exit(why)) => {
                log(&why);
                // Unlink first: once our socket is closed, a new keeper may bind the path.
                let _ = std::fs::remove_file(&k.path);
                return ExitCode::SUCCESS;
            }
            Err(_) => {
                log("recovered from a panic; going on");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Bind the keeper's socket; `None` if another keeper answers there.
fn bind(path: &Path) -> Result<Option<OwnedFd>, String> {
    if path.exists() {
        if bpfns_sys::unix::seqpacket_connect(path).is_ok() {
            return Ok(None);
        }
        // Left behind by a keeper that died: nobody answers on it.
        std::fs::remove_file(path)
            .map_err(|e| format!("removing stale socket {}: {e}", path.display()))?;
    }
    bpfns_sys::unix::seqpacket_listen(path, 0o600, 16)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Tells this keeper from the one before it (bpfnsd deposits everything into a new one).
fn instance_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32) | 1
}

enum Step {
    Go,
    Exit(String),
}

/// Where a held listener is while no bpfnsd is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Nothing pending (as far as we know).
    Idle,
    /// A call is pending since then; it waits for a bpfnsd until the grace period ends.
    Waiting(Instant),
    /// The grace period ended: pending calls are answered `EAGAIN` at once.
    Expired,
}

struct Held {
    key: u64,
    pid: u64,
    uid: u64,
    ns: u64,
    listener: Listener,
    in_flight: InFlight,
    hold: Hold,
}

struct Conn {
    id: u64,
    sock: OwnedFd,
    /// The process that connected, with its real ids: the only writer it takes requests
    /// from. A descriptor of the connection passed on or inherited does not speak for it.
    speaker: Sender,
    /// The same process: once it has exited, its pid may be another's.
    maker: OwnedFd,
    /// bpfnsd attached through this connection: it serves the listeners.
    serving: bool,
}

struct Keeper {
    listen: OwnedFd,
    path: PathBuf,
    pin_root: PathBuf,
    init_userns: u64,
    conns: Vec<Conn>,
    held: Vec<Held>,
    next_key: u64,
    next_conn: u64,
    grace: Duration,
    instance: u64,
    counters: Counters,
    alone_since: Option<Instant>,
}

/// What to poll, in order: the socket, each connection and its maker, each held listener.
enum Slot {
    Listen,
    Conn(u64),
    /// A connection's maker exits: the connection ends with it, also while a descriptor of it
    /// lives on elsewhere (an attached bpfnsd that died would otherwise still "serve").
    Maker(u64),
    Held(u64),
}

impl Keeper {
    fn serving(&self) -> bool {
        self.conns.iter().any(|c| c.serving)
    }

    fn step(&mut self) -> Step {
        let now = Instant::now();
        let serving = self.serving();
        if !serving {
            for h in &mut self.held {
                if let Hold::Waiting(since) = h.hold {
                    if now.saturating_duration_since(since) >= self.grace {
                        h.hold = Hold::Expired;
                    }
                }
            }
        }
        if self.held.is_empty() && self.conns.is_empty() {
            let since = *self.alone_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= IDLE_EXIT {
                return Step::Exit("nothing to hold and nobody connected: exiting".into());
            }
        } else {
            self.alone_since = None;
        }
        let mut timeout: Option<Duration> = None;
        let mut sooner = |d: Duration| {
            timeout = Some(timeout.map_or(d, |t| t.min(d)));
        };
        if let Some(since) = self.alone_since {
            sooner(IDLE_EXIT.saturating_sub(now.saturating_duration_since(since)));
        }
        if !serving {
            for h in &self.held {
                if let Hold::Waiting(since) = h.hold {
                    sooner(
                        self.grace
                            .saturating_sub(now.saturating_duration_since(since)),
                    );
                }
            }
        }

        let mut slots = Vec::with_capacity(
            1usize
                .saturating_add(self.conns.len().saturating_mul(2))
                .saturating_add(self.held.len()),
        );
        let mut fds = Vec::with_capacity(slots.capacity());
        slots.push(Slot::Listen);
        fds.push((self.listen.as_fd(), true));
        for c in &self.conns {
            slots.push(Slot::Conn(c.id));
            fds.push((c.sock.as_fd(), true));
            slots.push(Slot::Maker(c.id));
            fds.push((c.maker.as_fd(), true));
        }
        for h in &self.held {
            slots.push(Slot::Held(h.key));
            // While bpfnsd serves, only hang-ups matter (its calls are bpfnsd's to take);
            // a call waiting out the grace period is not looked at again until it ends.
            let input = !serving && !matches!(h.hold, Hold::Waiting(_));
            fds.push((h.listener.as_fd(), input));
        }
        let ready: Vec<Ready> = match poll_events(&fds, timeout) {
            Ok(Some(r)) => r,
            Ok(None) => return Step::Go,
            Err(e) => {
                log(&format!("{e}"));
                std::thread::sleep(Duration::from_millis(10));
                return Step::Go;
            }
        };
        drop(fds);
        for (slot, r) in slots.into_iter().zip(ready) {
            if !(r.readable || r.hung_up) {
                continue;
            }
            match slot {
                Slot::Listen => self.accept_all(),
                Slot::Conn(id) => {
                    if let Some(exit) = self.on_conn(id, r) {
                        return exit;
                    }
                }
                Slot::Maker(id) => {
                    if self.conns.iter().any(|c| c.id == id) {
                        log("closing a connection: the process that made it has exited");
                        self.close_conn(id);
                    }
                }
                Slot::Held(key) => self.on_held(key, r),
            }
        }
        Step::Go
    }

    fn accept_all(&mut self) {
        loop {
            let sock = match accept_nonblocking(&self.listen) {
                Ok(Some(s)) => s,
                Ok(None) => return,
                Err(e) => {
                    log(&format!("{e}"));
                    return;
                }
            };
            if self.conns.len() >= MAX_CONNS {
                log("refusing a connection: too many open");
                continue;
            }
            let (speaker, maker) = match self.authorize(&sock) {
                Ok(s) => s,
                Err(why) => {
                    log(&format!("refusing a connection: {why}"));
                    let _ = send_msg(
                        &sock,
                        &Msg::new(Op::Err, [Errno::PERM.raw_os_error() as u64, 0, 0, 0, 0, 0])
                            .encode(),
                        &[],
                        true,
                    );
                    continue;
                }
            };
            let id = self.next_conn;
            self.next_conn = self.next_conn.wrapping_add(1);
            self.conns.push(Conn {
                id,
                sock,
                speaker,
                maker,
                serving: false,
            });
        }
    }

    /// Only a host administrator in the root bpfns namespace: bpfnsd. Returns who it is, as
    /// each message's `SCM_CREDENTIALS` names it, and its pidfd.
    fn authorize(&self, sock: &OwnedFd) -> Result<(Sender, OwnedFd), Refusal> {
        // Opened for each check: a kernel side reloaded meanwhile has new maps, and a stale
        // task_ns map would call everybody a root-namespace task.
        let kernel = Kernel::open(&PinLayout::new(&self.pin_root)).map_err(Refusal::NoKernel)?;
        let c = Caller::of_peer(sock.as_fd(), &kernel, self.init_userns)
            .map_err(Refusal::Unidentified)?;
        if c.host_admin() && c.ns == NsId::ROOT {
            let speaker = Sender {
                pid: c.pid,
                uid: c.real_ids.0,
                gid: c.real_ids.1,
            };
            Ok((speaker, c.pidfd))
        } else {
            Err(Refusal::NotAdmin {
                pid: c.pid,
                uid: c.uid,
            })
        }
    }

    fn close_conn(&mut self, id: u64) {
        let Some(i) = self.conns.iter().position(|c| c.id == id) else {
            return;
        };
        let was_serving = self.conns.swap_remove(i).serving;
        if was_serving {
            self.counters.outages = self.counters.outages.saturating_add(1);
            self.bpfnsd_gone();
        }
    }

    /// The attached bpfnsd is gone: answer the calls it had taken, then hold new ones.
    fn bpfnsd_gone(&mut self) {
        let mut answered = 0u64;
        for h in &mut self.held {
            h.hold = Hold::Idle;
            if let Ok(last) = h.in_flight.last() {
                if last != 0 {
                    let n = h
                        .listener
                        .answer_abandoned(last, ABANDONED_SPAN, Errno::AGAIN);
                    answered = answered.saturating_add(n as u64);
                }
            }
        }
        self.counters.abandoned = self.counters.abandoned.saturating_add(answered);
        if !self.serving() && !self.held.is_empty() {
            log(&format!(
                "bpfnsd is gone: holding {} listener(s); answered {answered} call(s) it had \
                 taken with EAGAIN; new calls wait {} ms for the next bpfnsd",
                self.held.len(),
                self.grace.as_millis()
            ));
        }
    }

    /// A connection is readable or hung up: one request, or its end.
    fn on_conn(&mut self, id: u64, r: Ready) -> Option<Step> {
        let conn = self.conns.iter().find(|c| c.id == id)?;
        if !r.readable {
            self.close_conn(id);
            return None;
        }
        let mut buf = [0u8; MSG_LEN];
        let mut fds = Vec::new();
        let n = match recv_msg_from(&conn.sock, &mut buf, &mut fds, true) {
            // The end of the connection.
            Ok((0, None)) => 0,
            // From its maker, still alive (the pid names it, not a process that took it over).
            Ok((n, Some(s)))
                if s == conn.speaker && !bpfns_sys::unix::pidfd_exited(conn.maker.as_fd()) =>
            {
                n
            }
            Ok((_, sender)) => {
                log(&format!(
                    "closing a connection: a message from {} (the connection was made by pid \
                     {}, which {}; no other process may use it)",
                    match sender {
                        Some(s) => format!("pid {} (uid {}, gid {})", s.pid, s.uid, s.gid),
                        None => "an unnamed sender".into(),
                    },
                    conn.speaker.pid,
                    if bpfns_sys::unix::pidfd_exited(conn.maker.as_fd()) {
                        "has exited"
                    } else {
                        "is alive"
                    }
                ));
                drop(fds);
                self.close_conn(id);
                return None;
            }
            Err(e) if e.errno == Errno::AGAIN => return None,
            Err(_) => {
                self.close_conn(id);
                return None;
            }
        };
        let Some(msg) = buf.get(..n).and_then(Msg::decode) else {
            self.close_conn(id);
            return None;
        };
        let stable = matches!(msg.op, Op::Hello | Op::Next | Op::Retire);
        let (reply, out, exit) = if msg.version != VERSION && !stable {
            (err(Errno::PROTONOSUPPORT), Vec::new(), None)
        } else {
            self.request(id, msg, fds)
        };
        let sent = match self.conns.iter().find(|c| c.id == id) {
            Some(c) => {
                let borrowed: Vec<_> = out.iter().map(|f| f.as_fd()).collect();
                send_msg(&c.sock, &reply.encode(), &borrowed, true).is_ok()
            }
            None => false,
        };
        if exit.is_some() {
            return exit;
        }
        if !sent || (reply.op == Op::Err && msg.op != Op::Deposit) {
            self.close_conn(id);
        }
        None
    }

    fn request(
        &mut self,
        id: u64,
        msg: Msg,
        fds: Vec<OwnedFd>,
    ) -> (Msg, Vec<OwnedFd>, Option<Step>) {
        let ok = |a| (Msg::new(Op::Ok, a), Vec::new(), None);
        match msg.op {
            Op::Hello => ok([
                u64::from(std::process::id()),
                self.instance,
                self.held.len() as u64,
                0,
                0,
                0,
            ]),
            Op::Attach => {
                for c in &mut self.conns {
                    if c.id == id {
                        c.serving = true;
                    }
                }
                for h in &mut self.held {
                    h.hold = Hold::Idle;
                }
                ok([0; 6])
            }
            Op::Deposit => match self.deposit(msg, fds) {
                Ok(key) => ok([key, 0, 0, 0, 0, 0]),
                Err(e) => (err(e), Vec::new(), None),
            },
            Op::Next => {
                let after = msg.a[0];
                let next = self
                    .held
                    .iter()
                    .filter(|h| h.key > after)
                    .min_by_key(|h| h.key);
                match next {
                    None => (Msg::new(Op::End, [0; 6]), Vec::new(), None),
                    Some(h) => match (h.listener.try_clone(), h.in_flight.try_clone()) {
                        (Ok(l), Ok(f)) => (
                            Msg::new(Op::Entry, [h.pid, h.uid, h.ns, h.key, 0, 0]),
                            vec![l.into_fd(), f.into_fd()],
                            None,
                        ),
                        _ => (err(Errno::MFILE), Vec::new(), None),
                    },
                }
            }
            Op::Stats => {
                self.counters.held = self.held.len() as u64;
                ok(self.counters.to_words())
            }
            Op::Retire => (
                Msg::new(Op::Ok, [0; 6]),
                Vec::new(),
                Some(Step::Exit(format!(
                    "retired by bpfnsd; letting go of {} listener(s)",
                    self.held.len()
                ))),
            ),
            Op::Ok | Op::Entry | Op::End | Op::Err => (err(Errno::INVAL), Vec::new(), None),
        }
    }

    fn deposit(&mut self, msg: Msg, fds: Vec<OwnedFd>) -> Result<u64, Errno> {
        if self.held.len() >= MAX_HELD {
            return Err(Errno::NOSPC);
        }
        let mut fds = fds.into_iter();
        let (Some(listener), Some(record), None) = (fds.next(), fds.next(), fds.next()) else {
            return Err(Errno::INVAL);
        };
        let in_flight = InFlight::from_fd(record).map_err(|e| e.errno)?;
        let key = self.next_key;
        self.next_key = self.next_key.wrapping_add(1);
        let [pid, uid, ns, ..] = msg.a;
        self.held.push(Held {
            key,
            pid,
            uid,
            ns,
            listener: Listener::from_fd(listener),
            in_flight,
            hold: Hold::Idle,
        });
        Ok(key)
    }

    /// A held listener hung up (no task left under its filter), or has a call pending while
    /// no bpfnsd serves it.
    fn on_held(&mut self, key: u64, r: Ready) {
        let Some(i) = self.held.iter().position(|h| h.key == key) else {
            return;
        };
        if r.hung_up {
            self.held.swap_remove(i);
            self.counters.dropped = self.counters.dropped.saturating_add(1);
            return;
        }
        if self.serving() {
            return;
        }
        let Some(h) = self.held.get_mut(i) else {
            return;
        };
        match h.hold {
            Hold::Idle => h.hold = Hold::Waiting(Instant::now()),
            Hold::Waiting(_) => {}
            Hold::Expired => {
                // (Interruptible: if the caller gave up meanwhile, the kernel answers ENOENT;
                // if another holder took the call, the wait ends after RECV_TIMEOUT.)
                if let Ok(n) = h.listener.recv_interruptible(RECV_TIMEOUT) {
                    if h.listener
                        .respond(n.id, Response::Error(Errno::AGAIN))
                        .is_ok()
                    {
                        self.counters.refused = self.counters.refused.saturating_add(1);
                    }
                }
            }
        }
    }
}

fn err(e: Errno) -> Msg {
    Msg::new(Op::Err, [e.raw_os_error() as u64, 0, 0, 0, 0, 0])
}

/// Why the keeper refused a connection.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("the kernel side is needed to identify callers: {0}")]
    NoKernel(#[source] bpfns_kernel::KernelError),
    #[error("{0}")]
    Unidentified(#[source] crate::caller::CallerError),
    #[error("pid {pid} (uid {uid}) is not a host administrator in the root namespace")]
    NotAdmin { pid: i32, uid: u32 },
}
