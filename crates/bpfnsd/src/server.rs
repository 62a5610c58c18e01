//! The Unix-socket API: one thread per connection, one request at a time per connection.
//!
//! The accepting thread identifies each caller before it gets a thread, and refuses it (an
//! error frame with code `limit_reached`, naming the limit and its setting) when its uid,
//! namespace or everybody together are over the connection limits, or when bpfnsd's file
//! descriptors run low ([`crate::admission`]); host administrators in the root namespace are
//! counted apart. A connection idle for `idle_timeout_secs` is closed.
//!
//! The socket comes from systemd (socket activation) when it passes one; otherwise bpfnsd
//! binds it itself, replacing a stale socket file left by a crash but never a live daemon.

use std::io::ErrorKind;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

use bpfns_proto::{
    decode, decode_len, encode, ErrorCode, FrameError, Request, Response, HEADER_LEN, MAX_REQUEST,
    MAX_RESPONSE,
};
use bpfns_sys::unix::{recv_exact_with_fds, send_with_fds};

use crate::caller::Caller;
use crate::daemon::Daemon;

/// Errors setting up the socket.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("another bpfnsd is already serving {0}; stop it first, or pass another --socket")]
    InUse(String),
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
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
    let l = UnixListener::bind(path).map_err(io(format!("binding {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("chmod {}", path.display())))?;
    Ok((l, SocketOrigin::Bound))
}

/// Serve connections forever.
pub fn serve(listener: UnixListener, daemon: Arc<Daemon>) {
    serve_until(listener, daemon, &std::sync::atomic::AtomicBool::new(false));
}

/// Serve connections until `stop` is set (checked after each accept: connect once to wake
/// the loop). Used by tests that run a daemon in-process.
pub fn serve_until(
    listener: UnixListener,
    daemon: Arc<Daemon>,
    stop: &std::sync::atomic::AtomicBool,
) {
    for conn in listener.incoming() {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        match conn {
            Ok(stream) => admit(stream, &daemon),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::error!("accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

/// Identify the caller, apply the connection limits, and serve it on a thread of its own.
fn admit(stream: UnixStream, daemon: &Arc<Daemon>) {
    // A caller that already hung up (connect-and-close churn) costs no identification.
    if let Ok(Some(r)) =
        bpfns_sys::fds::poll_events(&[(stream.as_fd(), false)], Some(std::time::Duration::ZERO))
    {
        if r.first().is_some_and(|r| r.hung_up) {
            return;
        }
    }
    // Nothing this thread writes may block it: a refusal is one small frame.
    let _ = bpfns_sys::unix::set_timeouts(&stream, Some(std::time::Duration::from_secs(1)));
    let caller = match Caller::of_peer(stream.as_fd(), &daemon.kernel, daemon.init_userns()) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("refusing a connection: {e}");
            let _ = send(
                &stream,
                &Response::error(0, ErrorCode::Denied, e.to_string()),
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
                let _ = send(
                    &stream,
                    &Response::error(0, ErrorCode::LimitReached, r.message),
                    &[],
                );
                return;
            }
        };
    let idle = match daemon.admission.limits().idle_timeout_secs {
        0 => None,
        s => Some(std::time::Duration::from_secs(s)),
    };
    if let Err(e) = bpfns_sys::unix::set_timeouts(&stream, idle) {
        tracing::warn!("refusing a connection: {e}");
        return;
    }
    let d = Arc::clone(daemon);
    let spawned = std::thread::Builder::new()
        .name("bpfns-conn".into())
        .spawn(move || {
            let _ticket = ticket;
            connection(stream, caller, &d);
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start a connection thread: {e}");
    }
}

fn send(stream: &UnixStream, resp: &Response, fds: &[OwnedFd]) -> bool {
    let frame = match encode(resp, MAX_RESPONSE) {
        Ok(f) => f,
        Err(e) => {
            let small = Response::error(
                resp.seq,
                ErrorCode::Internal,
                format!("response too large: {e}"),
            );
            match encode(&small, MAX_RESPONSE) {
                Ok(f) => return send_with_fds(stream.as_fd(), &f, &[]).is_ok(),
                Err(_) => return false,
            }
        }
    };
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    send_with_fds(stream.as_fd(), &frame, &borrowed).is_ok()
}

/// One client connection (identified already): answer requests until it hangs up or idles.
fn connection(stream: UnixStream, mut caller: Caller, daemon: &Daemon) {
    tracing::debug!(pid = caller.pid, ns = %caller.ns, "connection");
    loop {
        let mut fds = Vec::new();
        let mut header = [0u8; HEADER_LEN];
        match recv_exact_with_fds(stream.as_fd(), &mut header, &mut fds) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) if e.errno == bpfns_sys::Errno::AGAIN => {
                daemon.admission.note_idle_close();
                tracing::debug!(pid = caller.pid, "closing an idle connection");
                return;
            }
            Err(e) => {
                tracing::debug!(pid = caller.pid, "connection ended: {e}");
                return;
            }
        }
        let len = match decode_len(header, MAX_REQUEST) {
            Ok(l) => l,
            Err(FrameError::TooLarge { len, max }) => {
                // The frame boundary cannot be trusted any more: answer and hang up.
                let msg = format!("request of {len} bytes exceeds the limit of {max} bytes");
                let _ = send(&stream, &Response::error(0, ErrorCode::TooLarge, msg), &[]);
                return;
            }
            Err(e) => {
                let _ = send(
                    &stream,
                    &Response::error(0, ErrorCode::BadRequest, e.to_string()),
                    &[],
                );
                return;
            }
        };
        let mut body = vec![0u8; len];
        match recv_exact_with_fds(stream.as_fd(), &mut body, &mut fds) {
            Ok(true) => {}
            _ => return,
        }
        let req: Request = match decode(&body) {
            Ok(r) => r,
            Err(e) => {
                let seq = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("seq").and_then(|s| s.as_u64()))
                    .unwrap_or(0);
                let msg = format!("{e}; see docs/protocol.md for the request format");
                if !send(
                    &stream,
                    &Response::error(seq, ErrorCode::BadRequest, msg),
                    &[],
                ) {
                    return;
                }
                continue;
            }
        };
        if let Err(e) = caller.refresh_ns(&daemon.kernel) {
            let _ = send(
                &stream,
                &Response::error(req.seq, ErrorCode::Denied, e.to_string()),
                &[],
            );
            return;
        }
        let (resp, out_fds) = daemon.handle(&caller, req, fds);
        if !send(&stream, &resp, &out_fds) {
            return;
        }
    }
}
