//! The Unix-socket API: an event loop for the connections and a small pool of workers for the
//! requests, one request at a time per connection.
//!
//! The accepting task identifies each caller (SO_PEERPIDFD) before it reads a byte from it,
//! and refuses it (an error frame with code `limit_reached`, naming the limit and its setting)
//! when its uid, namespace or everybody together are over the connection limits, or when
//! bpfnsd's file descriptors run low ([`crate::admission`]); host administrators in the root
//! namespace are counted apart. A connection idle for `idle_timeout_secs` is closed, as is
//! one whose request or answer stalls that long.
//!
//! Why an event loop: a thread per connection made 1,000 clients 1,000 runnable threads on a
//! few CPUs (reads waited a second at p99), and a client that sends half a frame and stalls
//! held a thread for the idle timeout. Here a connection is a task: frames (with the fds
//! passed along, SCM_RIGHTS) are assembled from non-blocking reads as bytes arrive, and only
//! a whole request takes a thread: a quick one (`hello`, `get_fd`: µs) is answered by the
//! loop's thread that read it, one that changes something by a worker, which answers it and
//! lets go ([`Work`]). One that needs a walk of every object or task waits for it without a
//! thread (the walk, shared by the requests that wait together, runs on a worker), then is
//! answered on the loop's thread if it looks one thing up in it (`show`, `ns_show`), else by
//! a worker. Threads: the loop's ([`EVENT_THREADS`] at most) and the workers' ([`WORKERS`]
//! for walks, [`CHANGE_WORKERS`] for changes, at most), whatever the number of clients.
//! Why tokio: it is the Rust ecosystem's event loop (bpfman's too), with readiness
//! for raw fds (`AsyncFd`, so bpfns-sys keeps doing every recvmsg/sendmsg with fds), timers
//! for the idle timeout and a bounded pool for blocking work; a hand-written epoll loop would
//! repeat all three. The handlers stay synchronous (redb, bpf(2), /proc are blocking calls).
//! The supervisor, the record collector and the keeper's link keep their OS threads.
//!
//! The socket comes from systemd (socket activation) when it passes one; otherwise bpfnsd
//! binds it itself, replacing a stale socket file left by a crash but never a live daemon.

use std::io::ErrorKind;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bpfns_proto::{
    decode, decode_len, encode, ErrorCode, FrameError, Op, Reply, Request, Response, HEADER_LEN,
    MAX_REQUEST, MAX_RESPONSE,
};
use bpfns_sys::unix::{recv_msg_from, send_some, send_with_fds, Sender, MAX_FDS};
use bpfns_sys::Errno;
use tokio::io::Interest;
use tokio::net::UnixStream as AsyncStream;
use tokio::runtime::Handle;

use crate::caller::Caller;
use crate::daemon::{Daemon, Outgoing, Prepared};

/// Errors setting up the socket.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("another bpfnsd is already serving {0}; stop it first, or pass another --socket")]
    InUse(String),
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error(
        "starting the API's event loop and workers: {0}; bpfnsd needs {EVENT_THREADS} + \
         {WORKERS} + {CHANGE_WORKERS} threads (check the unit's TasksMax and RLIMIT_NPROC)"
    )]
    Runtime(std::io::Error),
}

/// Where the listening socket came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketOrigin {
    Systemd,
    Bound,
}

/// The listening socket: systemd's if passed, else bound at `path` with `mode`.
pub fn listen(path: &Path, mode: u32) -> Result<(UnixListener, SocketOrigin), ServerError> {
    if let Some(l) = bpfns_sys::unix::systemd_listener() {
        return Ok((l, SocketOrigin::Systemd));
    }
    let io = |what: String| move |error| ServerError::Io { what, error };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    if path.exists() {
        match UnixStream::connect(path) {
            Ok(_) => return Err(ServerError::InUse(path.display().to_string())),
            Err(_) => {
                // A crash left the file behind: nobody answers on it.
                std::fs::remove_file(path)
                    .map_err(io(format!("removing stale socket {}", path.display())))?;
            }
        }
    }
    let l = bpfns_sys::unix::bind_listener(path).map_err(|e| ServerError::Io {
        what: format!("binding {}", path.display()),
        error: std::io::Error::other(e),
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("chmod {}", path.display())))?;
    Ok((l, SocketOrigin::Bound))
}

/// Threads of the event loop at most (one per CPU up to this): they accept, identify callers,
/// move frames and answer the quick requests.
pub const EVENT_THREADS: usize = 4;
/// Workers answering requests at most (each request is synchronous work: redb, bpf(2),
/// /proc). Idle workers go after a few seconds.
pub const WORKERS: usize = 8;
/// Workers answering changes (namespace changes, entering, supervising) at most: a pool of
/// their own, so that a change neither queues behind the walks of a busy moment nor, when
/// it waits for another change (they are serialised) or for members to die, keeps a walk
/// waiting.
pub const CHANGE_WORKERS: usize = 4;

/// Serve connections until the process ends.
pub fn serve(listener: UnixListener, daemon: Arc<Daemon>) -> Result<(), ServerError> {
    serve_until(listener, daemon, &AtomicBool::new(false))
}

/// Serve connections until `stop` is set (checked after each accept: connect once to wake
/// the loop). Used by tests that run a daemon in-process. The connections end with it; a
/// request being answered finishes on its worker.
pub fn serve_until(
    listener: UnixListener,
    daemon: Arc<Daemon>,
    stop: &AtomicBool,
) -> Result<(), ServerError> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cpus.clamp(1, EVENT_THREADS))
        .max_blocking_threads(WORKERS)
        .thread_keep_alive(Duration::from_secs(5))
        .thread_name("bpfns-api")
        .enable_io()
        .enable_time()
        .build()
        .map_err(ServerError::Runtime)?;
    // Only its pool of blocking threads is used.
    let changes = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(CHANGE_WORKERS)
        .thread_keep_alive(Duration::from_secs(5))
        .thread_name("bpfns-change")
        .build()
        .map_err(ServerError::Runtime)?;
    let r = rt.block_on(accept(listener, daemon, changes.handle().clone(), stop));
    rt.shutdown_background();
    changes.shutdown_background();
    r
}

async fn accept(
    listener: UnixListener,
    daemon: Arc<Daemon>,
    changes: Handle,
    stop: &AtomicBool,
) -> Result<(), ServerError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |error| ServerError::Io { what, error }
    };
    // systemd's socket may come blocking.
    listener
        .set_nonblocking(true)
        .map_err(io("making the API socket non-blocking"))?;
    // Every read then says who wrote the bytes: copied into each connection made from now
    // on (systemd's socket may come without it: `PassCredentials=` unset).
    if !bpfns_sys::unix::passcred(&listener).unwrap_or(false) {
        tracing::warn!(
            "the API socket came without SO_PASSCRED (systemd: set PassCredentials=yes in \
             bpfnsd.socket); a client that connected before now may be refused once and \
             must connect again"
        );
    }
    bpfns_sys::unix::set_passcred(&listener).map_err(|e| ServerError::Io {
        what: "SO_PASSCRED on the API socket".into(),
        error: std::io::Error::other(e),
    })?;
    let listener =
        tokio::net::UnixListener::from_std(listener).map_err(io("watching the API socket"))?;
    loop {
        let conn = listener.accept().await;
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        match conn {
            Ok((stream, _)) => admit(stream, &daemon, &changes),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::error!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Identify the caller, apply the connection limits, and serve it as a task of its own.
/// Done in the accepting task, one connection after the other, as before any of its bytes
/// is read: a flood waits in the socket's backlog, not in bpfnsd's fds.
fn admit(stream: AsyncStream, daemon: &Arc<Daemon>, changes: &Handle) {
    // A caller that already hung up (connect-and-close churn) costs no identification.
    if let Ok(Some(r)) =
        bpfns_sys::fds::poll_events(&[(stream.as_fd(), false)], Some(Duration::ZERO))
    {
        if r.first().is_some_and(|r| r.hung_up) {
            return;
        }
    }
    // For a connection made before the listener had SO_PASSCRED (systemd's socket without
    // `PassCredentials=yes`, connected before bpfnsd started): bytes sent from now on carry
    // their sender (those sent before it was accepted do anyway).
    if let Err(e) = bpfns_sys::unix::set_passcred(stream.as_fd()) {
        tracing::debug!("refusing a connection: SO_PASSCRED: {e}");
        return;
    }
    // The socket is non-blocking: a refusal is one small frame into an empty socket buffer,
    // sent at once or dropped, never waited for.
    let caller = match Caller::of_peer(stream.as_fd(), &daemon.kernel, daemon.init_userns()) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("refusing a connection: {e}");
            let _ = send_with_fds(
                stream.as_fd(),
                &frame(&Response::error(0, ErrorCode::Denied, e.to_string())),
                &[],
            );
            return;
        }
    };
    let admin = caller.host_admin() && caller.ns == bpfns_model::NsId::ROOT;
    let ticket =
        match daemon
            .admission
            .admit(admin, caller.uid, daemon.tenant_of(caller.ns), || {
                daemon.ns_name(daemon.tenant_of(caller.ns))
            }) {
            Ok(t) => t,
            Err(r) => {
                daemon.admission.note_refusal(
                    &r,
                    &format!(
                        "pid {} (uid {}, namespace {})",
                        caller.pid,
                        caller.uid,
                        daemon.ns_name(caller.ns)
                    ),
                );
                let _ = send_with_fds(
                    stream.as_fd(),
                    &frame(&Response::error(0, ErrorCode::LimitReached, r.message)),
                    &[],
                );
                return;
            }
        };
    let idle = match daemon.admission.limits().idle_timeout_secs {
        0 => None,
        s => Some(Duration::from_secs(s)),
    };
    let (d, changes) = (Arc::clone(daemon), changes.clone());
    tokio::spawn(async move {
        let _ticket = ticket;
        // A writer with the maker's pid but other real ids is not the maker: one that names
        // a pid of its own pid namespace (`SCM_CREDENTIALS`, as its namespace's root may).
        let speaker = Sender {
            pid: caller.pid,
            uid: caller.real_ids.0,
            gid: caller.real_ids.1,
        };
        connection(
            Conn {
                sock: stream,
                idle,
                speaker,
            },
            caller,
            d,
            changes,
        )
        .await;
    });
}

/// A response's frame; one too large to send becomes an `internal` error saying so.
fn frame(resp: &Response) -> Vec<u8> {
    match encode(resp, MAX_RESPONSE) {
        Ok(f) => f,
        Err(e) => {
            let small = Response::error(
                resp.seq,
                ErrorCode::Internal,
                format!("response too large: {e}"),
            );
            encode(&small, MAX_RESPONSE).unwrap_or_default()
        }
    }
}

/// Why reading a frame ended.
enum Ended {
    /// Nothing came for the idle timeout.
    Idle,
    Failed(String),
    /// Bytes came from a process other than the one that connected, or under other real
    /// ids (who, when the kernel said).
    Foreign(Option<Sender>),
}

/// One frame being read: whether its first byte came, and by when the rest must.
#[derive(Default)]
struct FrameRead {
    started: bool,
    deadline: Option<tokio::time::Instant>,
}

/// A connection's socket (non-blocking, watched by the loop), its idle timeout, and the
/// process that connected with its real ids: the only writer it takes requests from.
struct Conn {
    sock: AsyncStream,
    idle: Option<Duration>,
    speaker: Sender,
}

/// `EAGAIN` as the loop's "not ready" (it then waits for readiness again); any other error as
/// itself.
fn again(e: bpfns_sys::SysError) -> std::io::Error {
    if e.errno == Errno::AGAIN {
        ErrorKind::WouldBlock.into()
    } else {
        std::io::Error::other(e)
    }
}

impl Conn {
    /// Wait until the socket is readable (or writable), at most the idle timeout (or until
    /// `deadline`, when given).
    async fn ready(&self, interest: Interest) -> Result<(), Ended> {
        self.ready_until(interest, None).await
    }

    async fn ready_until(
        &self,
        interest: Interest,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), Ended> {
        let wait = self.sock.ready(interest);
        let r = match (deadline, self.idle) {
            (Some(d), _) => tokio::time::timeout_at(d, wait)
                .await
                .map_err(|_| Ended::Idle)?,
            (None, Some(t)) => tokio::time::timeout(t, wait)
                .await
                .map_err(|_| Ended::Idle)?,
            (None, None) => wait.await,
        };
        r.map(drop).map_err(|e| Ended::Failed(e.to_string()))
    }

    /// Fill `buf` from as many reads as it takes, collecting the fds that come with the
    /// bytes (SCM_RIGHTS). `Ok(false)`: a clean end before the first byte. A frame must be
    /// whole within the idle timeout of its first byte (`deadline` is set then; one trickled
    /// a byte at a time is not kept open), and fds come only with its first byte, at most
    /// [`MAX_FDS`] (protocol.md): fds sent with later bytes would pile up in bpfnsd. Every
    /// read must come from the process that connected ([`Ended::Foreign`] otherwise): a
    /// descriptor of the connection passed on or inherited does not speak for its maker.
    async fn recv_exact(
        &self,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
        frame: &mut FrameRead,
    ) -> Result<bool, Ended> {
        let mut got = 0;
        while got < buf.len() {
            self.ready_until(Interest::READABLE, frame.deadline).await?;
            let rest = &mut buf[got..];
            let had = fds.len();
            let first = !frame.started;
            let r = self.sock.try_io(Interest::READABLE, || {
                recv_msg_from(self.sock.as_fd(), rest, fds, true).map_err(again)
            });
            match r {
                Ok((0, _)) if got == 0 && first => return Ok(false),
                Ok((0, _)) => return Err(Ended::Failed("connection closed mid-message".into())),
                Ok((_, sender)) if sender != Some(self.speaker) => {
                    fds.clear();
                    return Err(Ended::Foreign(sender));
                }
                Ok((n, _)) => {
                    got += n;
                    if first {
                        frame.started = true;
                        frame.deadline = self.idle.map(|t| tokio::time::Instant::now() + t);
                    }
                    if fds.len() > had && (!first || fds.len() > MAX_FDS) {
                        return Err(Ended::Failed(
                            "file descriptors after a frame's first byte, or more than the \
                             protocol allows"
                                .into(),
                        ));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(Ended::Failed(e.to_string())),
            }
        }
        Ok(true)
    }

    /// Send `resp` as [`Conn::send`] does.
    async fn send_response(&self, resp: &Response, fds: &[OwnedFd]) -> bool {
        self.send(&frame(resp), fds).await
    }

    /// Send `frame` with `fds` (attached to its first bytes) as the socket takes it. False
    /// when the client is gone or has not read for the idle timeout.
    async fn send(&self, frame: &[u8], fds: &[OwnedFd]) -> bool {
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        let mut sent = 0;
        while sent < frame.len() {
            if self.ready(Interest::WRITABLE).await.is_err() {
                return false;
            }
            let with = if sent == 0 { &borrowed[..] } else { &[] };
            let r = self.sock.try_io(Interest::WRITABLE, || {
                send_some(self.sock.as_fd(), &frame[sent..], with).map_err(again)
            });
            match r {
                Ok(0) => return false,
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return false,
            }
        }
        !frame.is_empty()
    }
}

/// Where a request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    /// A few syscalls and a registry lookup (µs): on the event loop's thread that read it,
    /// which then answers the next ready connection without a wake-up in between.
    Quick,
    /// A walk over every object or task (ms): on a worker.
    Walk,
    /// One namespace or object looked up in a walk of them all: the walk is waited for
    /// without a thread ([`Daemon::prepare`]), the lookup (µs) is made on the loop's thread.
    Lookup,
    /// A change: can wait for another change (they are serialised) or for members to die. On
    /// worker of the changes' pool ([`CHANGE_WORKERS`]).
    Change,
}

impl Work {
    fn of(op: &Op) -> Self {
        match op {
            Op::Hello
            | Op::GetFd { .. }
            | Op::WhyStopped { .. }
            | Op::NsIdentify { .. }
            | Op::MemberPlan { .. }
            | Op::EnableStats => Work::Quick,
            // `show` finds its object in the listing of its kind, `ns_show` its namespace in
            // the census.
            Op::NsShow { .. } | Op::Show { .. } => Work::Lookup,
            Op::NsList | Op::List { .. } | Op::Status | Op::NsPs { .. } => Work::Walk,
            _ => Work::Change,
        }
    }
}

/// An answer to send, and whether the connection ends after it.
struct Answer {
    /// Encoded where it was answered (a worker's thread for a walk or a change).
    frame: Vec<u8>,
    fds: Vec<OwnedFd>,
    last: bool,
}

/// Answer one request: the caller's namespace as of now (a caller that cannot be placed any
/// more is refused and its connection ends), then the daemon's answer.
fn answer(
    daemon: &Daemon,
    caller: &mut Caller,
    req: Request,
    fds: Vec<OwnedFd>,
    prepared: Prepared,
) -> Answer {
    if let Err(e) = caller.refresh_ns(&daemon.kernel) {
        return Answer {
            frame: frame(&Response::error(req.seq, ErrorCode::Denied, e.to_string())),
            fds: Vec::new(),
            last: true,
        };
    }
    let (out, fds) = daemon.handle_prepared(caller, req, fds, prepared);
    Answer {
        frame: match out {
            Outgoing::Response(r) => frame(&r),
            Outgoing::Frame(f) => f,
        },
        fds,
        last: false,
    }
}

/// Serve an `events` subscription on `conn`: the answer, then its events as they come,
/// until the client hangs up or sends anything, its queue overflows (bpfnsd dropped it), or
/// a write stalls for the idle timeout.
#[allow(clippy::too_many_arguments)]
async fn subscription(
    conn: &Conn,
    caller: &mut Caller,
    daemon: &Daemon,
    seq: u64,
    v: u32,
    ns: Option<String>,
    kinds: Vec<bpfns_proto::EventKind>,
    fds: Vec<OwnedFd>,
) {
    let started = std::time::Instant::now();
    let named = crate::daemon::Named {
        namespace: ns.clone(),
        ..Default::default()
    };
    let refused = if v != bpfns_proto::PROTOCOL_VERSION {
        Some(Response::error(
            seq,
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {v} is not supported; this bpfnsd speaks {}",
                bpfns_proto::PROTOCOL_VERSION
            ),
        ))
    } else if !fds.is_empty() {
        Some(Response::error(
            seq,
            ErrorCode::BadRequest,
            "this request takes no file descriptors",
        ))
    } else if let Err(e) = caller.refresh_ns(&daemon.kernel) {
        Some(Response::error(seq, ErrorCode::Denied, e.to_string()))
    } else {
        None
    };
    if let Some(r) = refused {
        let _ = conn.send_response(&r, &[]).await;
        return;
    }
    // Counted (and a refusal reported) as any request is, once it is answered.
    let subscribed = daemon.subscribe(caller, ns.as_deref(), kinds);
    daemon.account(caller, "events", named, started, subscribed.as_ref().err());
    let (mut sub, namespace) = match subscribed {
        Ok(s) => s,
        Err(f) => {
            let _ = conn
                .send_response(&Response::error(seq, f.code, f.message), &[])
                .await;
            return;
        }
    };
    let ok = Response::ok(
        seq,
        Reply::Subscribed {
            namespace,
            queue: crate::events::QUEUE as u32,
        },
    );
    if !conn.send_response(&ok, &[]).await {
        return;
    }
    // The stream is its maker's: it ends when the maker exits (a process that inherited
    // the connection would otherwise keep receiving what only the maker may see); asked
    // every second.
    let mut maker_check = tokio::time::interval(MAKER_CHECK);
    loop {
        let ev = tokio::select! {
            ev = sub.events.recv() => ev,
            _ = sub.dropped.notified() => None,
            _ = maker_check.tick() => {
                if !bpfns_sys::unix::pidfd_exited(caller.pidfd.as_fd()) {
                    continue;
                }
                None
            }
            // A subscriber sends nothing more: bytes or a hangup end it (readiness alone may
            // be spurious: a read says).
            r = conn.sock.ready(Interest::READABLE) => match r {
                Ok(_) => match conn.sock.try_read(&mut [0u8; 1]) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                    _ => None,
                },
                Err(_) => None,
            },
        };
        let Some(ev) = ev else {
            tracing::debug!(pid = caller.pid, "event subscription ended");
            return;
        };
        let frame = Response::ok(seq, Reply::Event((*ev).clone()));
        let sent = tokio::select! {
            sent = conn.send_response(&frame, &[]) => sent,
            _ = sub.dropped.notified() => false,
        };
        if !sent {
            return;
        }
    }
}

/// End a connection that another process than its maker wrote to (an inherited or passed
/// descriptor of it): it would otherwise be answered as the maker, whose namespace and
/// privileges it may not have. The writer is told why (an error frame), then the connection
/// is closed. Logged at debug level: any process can do this at will.
async fn refuse_foreign(conn: &Conn, daemon: &Daemon, caller: &Caller, sender: Option<Sender>) {
    let who = match sender {
        Some(s) => format!("pid {} (uid {}, gid {})", s.pid, s.uid, s.gid),
        None => "a writer the kernel did not name".into(),
    };
    tracing::debug!(
        "closing a connection of pid {} (namespace {}): a request came from {who}; a \
         connection speaks only for the process that made it",
        caller.pid,
        daemon.ns_name(caller.ns)
    );
    let msg = format!(
        "this connection speaks only for the process that made it (pid {}), and a request \
         came from {who}: connect again from the process that asks (a descriptor of a \
         connection inherited or passed on is refused)",
        caller.pid
    );
    let _ = conn
        .send_response(&Response::error(0, ErrorCode::Denied, msg), &[])
        .await;
}

/// How often an event subscription asks whether its maker is still alive.
const MAKER_CHECK: Duration = Duration::from_secs(1);

/// One client connection (identified already): answer requests until it hangs up or idles.
/// Reading and writing happen in the event loop; a request, once whole, goes to a worker.
async fn connection(conn: Conn, mut caller: Caller, daemon: Arc<Daemon>, changes: Handle) {
    tracing::debug!(pid = caller.pid, ns = %caller.ns, "connection");
    loop {
        let mut fds = Vec::new();
        let mut header = [0u8; HEADER_LEN];
        let mut frame_read = FrameRead::default();
        match conn
            .recv_exact(&mut header, &mut fds, &mut frame_read)
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(Ended::Idle) => {
                daemon.admission.note_idle_close();
                tracing::debug!(pid = caller.pid, "closing an idle connection");
                return;
            }
            Err(Ended::Failed(e)) => {
                tracing::debug!(pid = caller.pid, "connection ended: {e}");
                return;
            }
            Err(Ended::Foreign(sender)) => {
                return refuse_foreign(&conn, &daemon, &caller, sender).await
            }
        }
        let len = match decode_len(header, MAX_REQUEST) {
            Ok(l) => l,
            Err(FrameError::TooLarge { len, max }) => {
                // The frame boundary cannot be trusted any more: answer and hang up.
                let msg = format!("request of {len} bytes exceeds the limit of {max} bytes");
                let _ = conn
                    .send_response(&Response::error(0, ErrorCode::TooLarge, msg), &[])
                    .await;
                return;
            }
            Err(e) => {
                let _ = conn
                    .send_response(
                        &Response::error(0, ErrorCode::BadRequest, e.to_string()),
                        &[],
                    )
                    .await;
                return;
            }
        };
        let mut body = vec![0u8; len];
        match conn.recv_exact(&mut body, &mut fds, &mut frame_read).await {
            Ok(true) => {}
            Err(Ended::Foreign(sender)) => {
                return refuse_foreign(&conn, &daemon, &caller, sender).await
            }
            _ => return,
        }
        // The bytes came from the connector's pid; once it has exited (a zombie too: its
        // pid namespace's init decides when it is reaped), that pid may be another process's,
        // which an inherited connection would then speak for.
        if bpfns_sys::unix::pidfd_exited(caller.pidfd.as_fd()) {
            tracing::debug!(pid = caller.pid, "the process that connected exited");
            return;
        }
        let req: Request = match decode(&body) {
            Ok(r) => r,
            Err(e) => {
                let seq = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("seq").and_then(|s| s.as_u64()))
                    .unwrap_or(0);
                let msg = format!("{e}; see docs/protocol.md for the request format");
                if !conn
                    .send_response(&Response::error(seq, ErrorCode::BadRequest, msg), &[])
                    .await
                {
                    return;
                }
                continue;
            }
        };
        if let Op::Events { ns, kinds } = req.op {
            // The connection becomes the subscription's, until either side ends it.
            subscription(&conn, &mut caller, &daemon, req.seq, req.v, ns, kinds, fds).await;
            return;
        }
        let work = Work::of(&req.op);
        let answer = match work {
            Work::Quick => answer(&daemon, &mut caller, req, fds, Prepared::default()),
            Work::Lookup => {
                let prepared = daemon.prepare(&caller, &req.op).await;
                answer(&daemon, &mut caller, req, fds, prepared)
            }
            work => {
                let (pool, prepared) = match work {
                    Work::Change => (changes.clone(), Prepared::default()),
                    // The walk it needs is waited for here, on no thread: a worker only
                    // answers.
                    _ => (Handle::current(), daemon.prepare(&caller, &req.op).await),
                };
                let d = Arc::clone(&daemon);
                let job = pool.spawn_blocking(move || {
                    let a = answer(&d, &mut caller, req, fds, prepared);
                    (caller, a)
                });
                let a;
                (caller, a) = match job.await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!("a request's worker failed: {e}");
                        return;
                    }
                };
                a
            }
        };
        let go_on = conn.send(&answer.frame, &answer.fds).await && !answer.last;
        drop(answer);
        if work == Work::Walk {
            give_back_soon();
        }
        if !go_on {
            return;
        }
    }
}

/// A trim is scheduled ([`give_back_soon`]).
static TRIM_PENDING: AtomicBool = AtomicBool::new(false);

/// After a walk's answer (tens of MiB at 100 000 objects) was sent and dropped, give the
/// freed memory back to the kernel: otherwise the allocator keeps the pages of each worker's
/// largest answer (bpfnsd held 96 MiB at 10 000 namespaces and 100 000 maps, 42 MiB after a
/// trim). One trim for the walks that end within [`TRIM_DELAY`] of each other, on a worker.
fn give_back_soon() {
    if TRIM_PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        tokio::time::sleep(TRIM_DELAY).await;
        TRIM_PENDING.store(false, Ordering::Release);
        let _ = tokio::task::spawn_blocking(bpfns_sys::heap::give_back_free_memory).await;
    });
}

/// How long walks' answers may gather before their memory is given back.
const TRIM_DELAY: Duration = Duration::from_millis(200);
