//! Client library for bpfnsd.
//!
//! ```no_run
//! use bpfns_client::Client;
//! use bpfns_model::ObjectKind;
//!
//! let mut c = Client::connect_default()?;
//! for m in c.list(ObjectKind::Map)? {
//!     println!("{} {} {}", m.id, m.name, m.namespace);
//! }
//! # Ok::<(), bpfns_client::ClientError>(())
//! ```
//!
//! Every call is one request and one response on a Unix socket (see `docs/protocol.md`);
//! file descriptors come back through `SCM_RIGHTS`. The daemon identifies the caller by kernel
//! facts (the connecting process's pidfd), never by anything sent here.
#![forbid(unsafe_code)]

pub mod advice;
pub mod filter;
pub mod member;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use bpfns_model::quota::KindLimits;
use bpfns_model::{ObjectKind, Policy};
use bpfns_proto::{
    decode_len, decode_response, encode, CallerInfo, ErrorBody, ErrorCode, NsInfo, ObjectInfo, Op,
    Outcome, ProcessInfo, Reply, Request, Response, StatusInfo, HEADER_LEN, MAX_REQUEST,
    MAX_RESPONSE,
};
use bpfns_sys::unix::{recv_exact_with_fds, send_with_fds};

/// What can go wrong talking to bpfnsd. The messages are whole (they name the underlying
/// error), so none is also a `source`: error chains would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to bpfnsd at {path}: {error}; is bpfnsd running? (start it with `bpfnsd`, or pass --socket)")]
    Connect {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("talking to bpfnsd: {0}")]
    Io(bpfns_sys::SysError),
    #[error("bpfnsd closed the connection")]
    Closed,
    #[error("bad message from bpfnsd: {0}")]
    Protocol(String),
    #[error("{}", .0.message)]
    Daemon(ErrorBody),
}

impl From<bpfns_sys::SysError> for ClientError {
    fn from(e: bpfns_sys::SysError) -> Self {
        ClientError::Io(e)
    }
}

impl ClientError {
    /// The daemon's error code, if this is a daemon error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Daemon(b) => Some(b.code),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A listing from [`Client::list_json`].
#[derive(Debug)]
pub enum ListingJson {
    /// The objects as one JSON array, as `bpfns KIND list -j` prints them.
    Array(Vec<u8>),
    /// The objects, decoded (the answer was not a plain listing).
    Objects(Vec<ObjectInfo>),
}

/// A request sent and not yet answered ([`Client::send_request`]).
#[derive(Debug)]
#[must_use = "its answer is read with Client::finish before the next request"]
pub struct Pending {
    req: Request,
}

/// A `member_plan` request sent and not yet answered ([`Client::member_plan_sent`]).
#[derive(Debug)]
#[must_use = "its answer is read with Client::member_plan_finish before the next request"]
pub struct PlanSent {
    pending: Pending,
    path: String,
}

/// A connection to bpfnsd.
#[derive(Debug)]
pub struct Client {
    sock: UnixStream,
    seq: u64,
}

impl Client {
    /// Connect to the daemon's socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let sock = UnixStream::connect(path).map_err(|error| ClientError::Connect {
            path: path.to_path_buf(),
            error,
        })?;
        Ok(Self { sock, seq: 0 })
    }

    /// A client over a connection made already. bpfnsd answers only the process that made
    /// it: one passed to or inherited by another process is closed at its first request.
    pub fn from_stream(sock: UnixStream) -> Self {
        Self { sock, seq: 0 }
    }

    /// Connect to `$BPFNS_SOCKET` or the default socket.
    pub fn connect_default() -> Result<Self> {
        let path = std::env::var_os("BPFNS_SOCKET")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(bpfns_proto::DEFAULT_SOCKET));
        Self::connect(path)
    }

    /// Send one request (with `fds`), return the reply and the fds that came with it.
    pub fn call_with_fds(
        &mut self,
        op: Op,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(Reply, Vec<OwnedFd>)> {
        self.seq += 1;
        let req = Request::new(self.seq, op);
        self.send(&req, fds)?;
        let (resp, got_fds) = self.read_response()?;
        Self::answer_to(&req, resp, got_fds)
    }

    /// Send one request now and read its answer later ([`Client::finish`]), so that the
    /// caller works meanwhile. No other request may be made before it is finished.
    pub fn send_request(&mut self, op: Op) -> Result<Pending> {
        self.seq += 1;
        let req = Request::new(self.seq, op);
        self.send(&req, &[])?;
        Ok(Pending { req })
    }

    /// The answer to a request sent with [`Client::send_request`], and the fds that came
    /// with it.
    pub fn finish(&mut self, p: Pending) -> Result<(Reply, Vec<OwnedFd>)> {
        let (resp, got_fds) = self.read_response()?;
        Self::answer_to(&p.req, resp, got_fds)
    }

    /// The outcome of `resp`, if it answers `req`.
    fn answer_to(
        req: &Request,
        resp: Response,
        got_fds: Vec<OwnedFd>,
    ) -> Result<(Reply, Vec<OwnedFd>)> {
        // A refused connection gets one error frame (seq 0) before anything is asked.
        let refused = resp.seq == 0 && matches!(resp.result, Outcome::Error(_));
        if resp.seq != req.seq && !refused {
            return Err(ClientError::Protocol(format!(
                "response {} to request {}",
                resp.seq, req.seq
            )));
        }
        Self::outcome(resp, got_fds)
    }

    fn send(&mut self, req: &Request, fds: &[BorrowedFd<'_>]) -> Result<()> {
        let frame = encode(req, MAX_REQUEST).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if let Err(e) = send_with_fds(self.sock.as_fd(), &frame, fds) {
            // bpfnsd may have refused the connection (a limit) and closed it: its reason
            // is waiting to be read.
            return Err(match self.read_response() {
                Ok((r, _)) if r.seq == 0 => Self::outcome(r, Vec::new())
                    .err()
                    .unwrap_or(ClientError::Io(e)),
                _ => ClientError::Io(e),
            });
        }
        Ok(())
    }

    fn read_response(&mut self) -> Result<(Response, Vec<OwnedFd>)> {
        let (body, got_fds) = self.read_body()?;
        let resp = decode_response(&body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok((resp, got_fds))
    }

    fn read_body(&mut self) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        let mut got_fds = Vec::new();
        let mut header = [0u8; HEADER_LEN];
        if !recv_exact_with_fds(self.sock.as_fd(), &mut header, &mut got_fds)? {
            return Err(ClientError::Closed);
        }
        let len =
            decode_len(header, MAX_RESPONSE).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut body = vec![0u8; len];
        if !recv_exact_with_fds(self.sock.as_fd(), &mut body, &mut got_fds)? {
            return Err(ClientError::Closed);
        }
        Ok((body, got_fds))
    }

    fn outcome(resp: Response, got_fds: Vec<OwnedFd>) -> Result<(Reply, Vec<OwnedFd>)> {
        if got_fds.len() != resp.fds as usize {
            return Err(ClientError::Protocol(format!(
                "expected {} fds, got {}",
                resp.fds,
                got_fds.len()
            )));
        }
        match resp.result {
            Outcome::Ok(reply) => Ok((reply, got_fds)),
            Outcome::Error(e) => Err(ClientError::Daemon(e)),
        }
    }

    /// Send one request without fds.
    pub fn call(&mut self, op: Op) -> Result<Reply> {
        self.call_with_fds(op, &[]).map(|(r, _)| r)
    }

    fn unexpected<T>(reply: Reply) -> Result<T> {
        Err(ClientError::Protocol(format!("unexpected reply {reply:?}")))
    }

    /// Who the daemon thinks we are.
    pub fn hello(&mut self) -> Result<CallerInfo> {
        match self.call(Op::Hello)? {
            Reply::Hello { caller, .. } => Ok(caller),
            r => Self::unexpected(r),
        }
    }

    /// Create a namespace with the default policy (no tracing programs).
    pub fn ns_create(&mut self, path: &str) -> Result<NsInfo> {
        self.ns_create_with_policy(path, Policy::DEFAULT)
    }

    /// Create a namespace with `policy`, which may not allow more than its parent's.
    pub fn ns_create_with_policy(&mut self, path: &str, policy: Policy) -> Result<NsInfo> {
        self.ns_create_with(path, policy, None)
    }

    /// Create a namespace with `policy` and, if given, a limit on the objects it may own with
    /// its descendants (default: bpfnsd's `max_objects`, capped at the parent's).
    pub fn ns_create_with(
        &mut self,
        path: &str,
        policy: Policy,
        max_objects: Option<u32>,
    ) -> Result<NsInfo> {
        self.ns_create_bound(path, policy, max_objects, None)
    }

    /// Like [`ns_create_with`](Self::ns_create_with), bound to the cgroup v2 subtree `cgroup`
    /// (a path below the cgroup2 root): the only cgroups its members may attach programs to.
    /// Without one, its first member's cgroup binds it.
    pub fn ns_create_bound(
        &mut self,
        path: &str,
        policy: Policy,
        max_objects: Option<u32>,
        cgroup: Option<&str>,
    ) -> Result<NsInfo> {
        self.ns_create_limited(path, policy, max_objects, KindLimits::NONE, cgroup)
    }

    /// Like [`ns_create_bound`](Self::ns_create_bound), with limits per kind of object
    /// (`max_maps`...; those not given: bpfnsd's `[quota]` defaults, if any).
    pub fn ns_create_limited(
        &mut self,
        path: &str,
        policy: Policy,
        max_objects: Option<u32>,
        limits: KindLimits,
        cgroup: Option<&str>,
    ) -> Result<NsInfo> {
        match self.call(Op::NsCreate {
            path: path.into(),
            policy,
            max_objects,
            limits,
            cgroup: cgroup.map(str::to_owned),
        })? {
            Reply::Namespace(n) => Ok(n),
            r => Self::unexpected(r),
        }
    }

    /// Change a namespace's limits: `max_objects` if given, and the limits per kind given in
    /// `limits` (the others kept); returns the namespace as it now is.
    pub fn ns_set_quota(
        &mut self,
        path: &str,
        max_objects: Option<u32>,
        limits: KindLimits,
    ) -> Result<NsInfo> {
        match self.call(Op::NsSetQuota {
            path: path.into(),
            max_objects,
            limits,
        })? {
            Reply::Namespace(n) => Ok(n),
            r => Self::unexpected(r),
        }
    }

    /// Change a namespace's program policy; returns the namespace as it now is.
    pub fn ns_set_policy(&mut self, path: &str, policy: Policy) -> Result<NsInfo> {
        match self.call(Op::NsSetPolicy {
            path: path.into(),
            policy,
        })? {
            Reply::Namespace(n) => Ok(n),
            r => Self::unexpected(r),
        }
    }

    pub fn ns_show(&mut self, path: &str) -> Result<NsInfo> {
        match self.call(Op::NsShow { path: path.into() })? {
            Reply::Namespace(n) => Ok(n),
            r => Self::unexpected(r),
        }
    }

    /// What starting a member of `path` needs, in one round trip (see
    /// [`bpfns_proto::Op::MemberPlan`]).
    /// A bpfnsd older than the request gets the three it answers instead.
    pub fn member_plan(&mut self, path: &str) -> Result<bpfns_proto::MemberPlan> {
        let sent = self.member_plan_sent(path)?;
        self.member_plan_finish(sent)
    }

    /// [`Client::member_plan`] in two halves: the request is sent now, and its answer read by
    /// [`Client::member_plan_finish`].
    pub fn member_plan_sent(&mut self, path: &str) -> Result<PlanSent> {
        Ok(PlanSent {
            pending: self.send_request(Op::MemberPlan { path: path.into() })?,
            path: path.to_string(),
        })
    }

    /// The answer to [`Client::member_plan_sent`].
    pub fn member_plan_finish(&mut self, sent: PlanSent) -> Result<bpfns_proto::MemberPlan> {
        let PlanSent { pending, path } = sent;
        let path = path.as_str();
        match self.finish(pending).map(|(r, _)| r) {
            Ok(Reply::MemberPlan(p)) => Ok(p),
            Ok(r) => Self::unexpected(r),
            Err(e) if e.code() == Some(ErrorCode::BadRequest) => {
                let caller = self.hello()?;
                let ns = self.ns_show(path)?;
                let state_dir = self.status()?.state_dir;
                Ok(bpfns_proto::MemberPlan {
                    caller,
                    path: ns.path,
                    bpffs: ns.bpffs,
                    policy: ns.policy,
                    state_dir,
                    supervised_creations: ns.supervised_creations,
                    socket_dirs: Vec::new(),
                })
            }
            Err(e) => Err(e),
        }
    }

    pub fn ns_list(&mut self) -> Result<Vec<NsInfo>> {
        match self.call(Op::NsList)? {
            Reply::Namespaces { namespaces } => Ok(namespaces),
            r => Self::unexpected(r),
        }
    }

    /// Delete a namespace; returns where its objects went and how many.
    pub fn ns_delete(&mut self, path: &str) -> Result<(String, u32)> {
        self.ns_delete_with(path, false)
    }

    /// [`Client::ns_delete`]; with `force`, bpfnsd first kills (SIGKILL) the namespace's
    /// member tasks instead of refusing.
    pub fn ns_delete_with(&mut self, path: &str, force: bool) -> Result<(String, u32)> {
        match self.call(Op::NsDelete {
            path: path.into(),
            force,
        })? {
            Reply::Deleted {
                objects_moved_to,
                objects_moved,
                ..
            } => Ok((objects_moved_to, objects_moved)),
            r => Self::unexpected(r),
        }
    }

    /// Put our child process `pid` into namespace `path`.
    pub fn enter(&mut self, path: &str, pid: i32) -> Result<()> {
        match self.call(Op::Enter {
            path: path.into(),
            pid,
        })? {
            Reply::Entered { .. } => Ok(()),
            r => Self::unexpected(r),
        }
    }

    /// Put a container's init `pid` into namespace `path` (host administrators, from an OCI
    /// `createRuntime` hook: the init is a sibling of the caller, started by the runtime).
    pub fn enter_container(&mut self, path: &str, pid: i32) -> Result<()> {
        match self.call(Op::EnterContainer {
            path: path.into(),
            pid,
        })? {
            Reply::Entered { .. } => Ok(()),
            r => Self::unexpected(r),
        }
    }

    /// Where container `id` goes (bpfnsd decides from `facts`, creates the namespace if
    /// missing and records it for the container): its path, and whether bpfnsd created it.
    pub fn container_namespace(
        &mut self,
        facts: &bpfns_model::container::ContainerFacts,
        bundle: Option<&str>,
        state_dir: Option<&str>,
    ) -> Result<(String, bool)> {
        match self.call(Op::ContainerNamespace {
            id: facts.id.clone(),
            name: facts.name.clone(),
            annotations: facts.annotations.clone(),
            bundle: bundle.map(String::from),
            state_dir: state_dir.map(String::from),
        })? {
            Reply::ContainerNamespace { path, created, .. } => Ok((path, created)),
            r => Self::unexpected(r),
        }
    }

    /// The runtime deleted container `id`, whose state directory was `state_dir` (as given
    /// to [`Client::container_namespace`]): the namespaces bpfnsd deleted now (more may go
    /// at its next collection, once the engine removes the container's bundle).
    pub fn container_deleted(&mut self, id: &str, state_dir: Option<&str>) -> Result<Vec<String>> {
        match self.call(Op::ContainerDeleted {
            id: id.into(),
            state_dir: state_dir.map(String::from),
        })? {
            Reply::ContainerReleased { deleted, .. } => Ok(deleted),
            r => Self::unexpected(r),
        }
    }

    /// Make namespace `path`'s bpffs one of the user namespace of container init `pid`,
    /// delegating what the namespace's policy allows (host administrators, from an OCI
    /// `createRuntime` hook, after [`Client::enter_container`]); returns the namespace and a
    /// detached copy of the new bpffs mount (`open_tree(OPEN_TREE_CLONE)`), to be attached in
    /// the container (a runtime may run in a copy of the host's mount namespace made before
    /// the bpffs was mounted, where its path is an empty directory).
    pub fn container_bpffs(&mut self, path: &str, pid: i32) -> Result<(NsInfo, OwnedFd)> {
        let (reply, mut got) = self.call_with_fds(
            Op::ContainerBpffs {
                path: path.into(),
                pid,
            },
            &[],
        )?;
        match reply {
            Reply::Namespace(info) if got.len() == 1 => Ok((info, got.remove(0))),
            r => Self::unexpected(r),
        }
    }

    /// Hand the seccomp listener of our child `pid` to the daemon's supervisor.
    pub fn supervise(&mut self, pid: i32, listener: BorrowedFd<'_>) -> Result<()> {
        self.supervise_with(pid, listener, None).map(|_| ())
    }

    /// Hand bpfnsd the seccomp listener of our child `pid`, and an in-flight record (a memfd,
    /// see [`bpfns_sys::seccomp::InFlight`]; bpfnsd makes one when none is given) where bpfnsd
    /// writes the id of each notification before it answers it; returns bpfnsd's process id.
    pub fn supervise_with(
        &mut self,
        pid: i32,
        listener: BorrowedFd<'_>,
        in_flight: Option<BorrowedFd<'_>>,
    ) -> Result<i32> {
        let mut fds = vec![listener];
        fds.extend(in_flight);
        match self.call_with_fds(Op::Supervise { pid }, &fds)?.0 {
            Reply::Supervised { daemon_pid, .. } => Ok(daemon_pid),
            r => Self::unexpected(r),
        }
    }

    /// Give up on a call after `timeout` without an answer (`None`: wait forever, the default).
    pub fn set_timeout(&mut self, timeout: Option<std::time::Duration>) -> std::io::Result<()> {
        self.sock.set_read_timeout(timeout)?;
        self.sock.set_write_timeout(timeout)
    }

    /// The objects of `kind` we may see.
    pub fn list(&mut self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        self.list_in(kind, None, false)
    }

    /// The objects of `kind` we may see in namespace `namespace` (with `recursive`, in those
    /// below it too); every one we may see when `None`.
    pub fn list_in(
        &mut self,
        kind: ObjectKind,
        namespace: Option<&str>,
        recursive: bool,
    ) -> Result<Vec<ObjectInfo>> {
        match self.call(Op::List {
            kind,
            namespace: namespace.map(str::to_string),
            recursive,
            run_stats: false,
        })? {
            Reply::Objects { objects } => Ok(objects),
            r => Self::unexpected(r),
        }
    }

    /// [`list_in`](Self::list_in), as the JSON array `bpfns KIND list -j` prints when bpfnsd's
    /// answer allows it ([`bpfns_proto::objects_array`]: copied, not decoded and encoded
    /// again); otherwise the objects, decoded. `decoded_keys`: fields that make the caller
    /// want the objects (it completes them).
    pub fn list_json(
        &mut self,
        kind: ObjectKind,
        namespace: Option<&str>,
        recursive: bool,
        decoded_keys: &[&str],
    ) -> Result<ListingJson> {
        self.seq += 1;
        let req = Request::new(
            self.seq,
            Op::List {
                kind,
                namespace: namespace.map(str::to_string),
                recursive,
                run_stats: false,
            },
        );
        self.send(&req, &[])?;
        let (body, fds) = self.read_body()?;
        let ours = format!("{{\"v\":1,\"seq\":{},", req.seq);
        if fds.is_empty() && body.starts_with(ours.as_bytes()) {
            if let Some(array) = bpfns_proto::objects_array(&body, kind.name(), decoded_keys) {
                return Ok(ListingJson::Array(array));
            }
        }
        let resp = decode_response(&body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        match Self::answer_to(&req, resp, fds)?.0 {
            Reply::Objects { objects } => Ok(ListingJson::Objects(objects)),
            r => Self::unexpected(r),
        }
    }

    /// The programs we may see (in `namespace` and, with `recursive`, below it), with their
    /// run-time statistics (`run_time_ns`, `run_cnt`).
    pub fn prog_stats(
        &mut self,
        namespace: Option<&str>,
        recursive: bool,
    ) -> Result<Vec<ObjectInfo>> {
        match self.call(Op::List {
            kind: ObjectKind::Prog,
            namespace: namespace.map(str::to_string),
            recursive,
            run_stats: true,
        })? {
            Reply::Objects { objects } => Ok(objects),
            r => Self::unexpected(r),
        }
    }

    /// Turn the kernel's BPF run-time statistics on while the returned fd is open.
    pub fn enable_stats(&mut self) -> Result<OwnedFd> {
        let (reply, mut got) = self.call_with_fds(Op::EnableStats, &[])?;
        match reply {
            Reply::StatsEnabled if got.len() == 1 => Ok(got.remove(0)),
            r => Self::unexpected(r),
        }
    }

    /// The member processes of namespace `path` (with `recursive`, of those below it too).
    pub fn ns_ps(&mut self, path: &str, recursive: bool) -> Result<Vec<ProcessInfo>> {
        match self.call(Op::NsPs {
            path: path.into(),
            recursive,
        })? {
            Reply::Processes { processes } => Ok(processes),
            r => Self::unexpected(r),
        }
    }

    /// Which namespace process `pid` is in (`/` for none).
    pub fn ns_identify(&mut self, pid: i32) -> Result<ProcessInfo> {
        match self.call(Op::NsIdentify { pid })? {
            Reply::Process(p) => Ok(p),
            r => Self::unexpected(r),
        }
    }

    /// One object we may see.
    pub fn show(&mut self, kind: ObjectKind, id: u32) -> Result<ObjectInfo> {
        match self.call(Op::Show { kind, id })? {
            Reply::Object(o) => Ok(*o),
            r => Self::unexpected(r),
        }
    }

    /// A file descriptor for an object we may see.
    pub fn get_fd(&mut self, kind: ObjectKind, id: u32) -> Result<OwnedFd> {
        self.get_fd_opts(kind, id, false, None)
    }

    /// A file descriptor, optionally read-only (maps) and proving CAP_BPF with a BPF token.
    pub fn get_fd_opts(
        &mut self,
        kind: ObjectKind,
        id: u32,
        read_only: bool,
        token: Option<BorrowedFd<'_>>,
    ) -> Result<OwnedFd> {
        let fds: Vec<BorrowedFd<'_>> = token.into_iter().collect();
        let (reply, mut got) = self.call_with_fds(
            Op::GetFd {
                kind,
                id,
                read_only,
            },
            &fds,
        )?;
        match reply {
            Reply::Fd { .. } if got.len() == 1 => Ok(got.remove(0)),
            r => Self::unexpected(r),
        }
    }

    pub fn status(&mut self) -> Result<StatusInfo> {
        match self.call(Op::Status)? {
            Reply::Status(s) => Ok(s),
            r => Self::unexpected(r),
        }
    }

    /// Subscribe to bpfnsd's audit events (of namespace `ns` and below, default: our own;
    /// of `kinds`, default: all). The connection then only carries events: read them with
    /// [`next_event`](Self::next_event). Returns the namespace the stream covers.
    pub fn subscribe(
        &mut self,
        ns: Option<&str>,
        kinds: Vec<bpfns_proto::EventKind>,
    ) -> Result<String> {
        match self.call(Op::Events {
            ns: ns.map(str::to_string),
            kinds,
        })? {
            Reply::Subscribed { namespace, .. } => Ok(namespace),
            r => Self::unexpected(r),
        }
    }

    /// The next event of a subscription (waits for it); [`ClientError::Closed`] when bpfnsd
    /// ended the stream (it drops a subscriber that does not keep up).
    pub fn next_event(&mut self) -> Result<bpfns_proto::EventInfo> {
        let (resp, fds) = self.read_response()?;
        match Self::outcome(resp, fds)?.0 {
            Reply::Event(e) => Ok(e),
            r => Self::unexpected(r),
        }
    }

    /// Why the kernel side stopped or refused `pid`, a child of ours (unreaped if it exited):
    /// the lines bpfnsd logged for it, each with the rule and the fix; empty if none.
    pub fn why_stopped(&mut self, pid: i32) -> Result<Vec<String>> {
        match self.call(Op::WhyStopped { pid })? {
            Reply::Stopped { events, .. } => Ok(events),
            r => Self::unexpected(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_error_names_the_socket_the_cause_and_the_fix_once() {
        let e = Client::connect("/nonexistent/bpfns-test.sock").unwrap_err();
        let text = anyhow_like(&e);
        assert_eq!(
            text.matches("No such file or directory").count(),
            1,
            "{text}"
        );
        assert!(text.contains("/nonexistent/bpfns-test.sock"), "{text}");
        assert!(text.contains("is bpfnsd running?"), "{text}");
    }

    /// The message and every source below it, as `anyhow`'s `{:#}` prints them.
    fn anyhow_like(e: &(dyn std::error::Error + 'static)) -> String {
        let mut out = e.to_string();
        let mut cur = e.source();
        while let Some(s) = cur {
            out.push_str(": ");
            out.push_str(&s.to_string());
            cur = s.source();
        }
        out
    }
}
