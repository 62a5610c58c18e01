//! Containers: tagging a container's init from an OCI `createRuntime` hook
//! (`enter_container`), and the receiver of the seccomp listeners OCI runtimes send to
//! `linux.seccomp.listenerPath` (see docs/containers.md).

use std::io::ErrorKind;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

use bpfns_kernel::abi::{TaskTag, TASK_RUNTIME};
use bpfns_model::{may_enter, NsId, NsPath};
use bpfns_proto::{ErrorCode, Reply};
use serde::Deserialize;

use super::{fd_kind, Answer, Daemon, Failure, Supervise};
use crate::caller::{parent_pid, Caller, CallerError};

/// The largest message a runtime may send to the receiver (its state JSON; podman's is a few
/// KiB, annotations included).
const MAX_MESSAGE: usize = 256 * 1024;
/// How long a runtime may take to send its message.
const RECEIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What an OCI runtime sends with the listener (the runtime spec's `ContainerProcessState`).
#[derive(Debug, Deserialize)]
pub struct ProcessState {
    /// Names of the fds sent along, in order (`["seccompFd"]`).
    #[serde(default)]
    pub fds: Vec<String>,
    /// The process whose listener this is; 0 when the runtime does not say (crun for
    /// `exec`).
    #[serde(default)]
    pub pid: i32,
    /// `linux.seccomp.listenerMetadata`: bpfns-oci puts the namespace's path there.
    #[serde(default)]
    pub metadata: String,
    pub state: ContainerState,
}

/// The container's OCI state.
#[derive(Debug, Deserialize)]
pub struct ContainerState {
    #[serde(default)]
    pub id: String,
    /// The container's init process (host pid).
    #[serde(default)]
    pub pid: i32,
    #[serde(default)]
    pub annotations: std::collections::HashMap<String, String>,
}

/// Who sent a listener to the receiver.
#[derive(Clone, Copy)]
enum Sender<'a> {
    /// Its facts were read: a host administrator outside any namespace, except for crun's
    /// exec form (below).
    Live(&'a Caller),
    /// It exited before its facts could be read (`runc create`, and both runtimes' `exec`,
    /// which podman runs detached, exit as soon as they have sent): only what the socket's
    /// peer credentials recorded at `connect()` is known.
    ///
    /// Such a sender, and crun's exec form (no pid at all) from a sender that is not (or no
    /// longer) a host administrator outside any namespace — it may come from the process
    /// joining the container, which the kernel side tags as it joins the container's cgroup,
    /// and which drops its capabilities and execs meanwhile — are taken only from uid 0 (the
    /// socket is root's, mode 0600), from a process untagged or in the very namespace named
    /// (or gone), and only with the container's own evidence: its init tagged with the
    /// namespace (the hook ran), a process named sharing the init's pid and mount namespaces,
    /// or for crun's exec form, the namespace's container cgroups bound. The listener's
    /// untagged tasks are adopted into that namespace and tagged ones answered from their own
    /// tag: a process that sends a listener without being the runtime (uid 0 on the host
    /// without CAP_SYS_ADMIN; members cannot make listeners) gains nothing, its own tasks
    /// become members.
    Departed { pid: i32, uid: u32 },
}

/// The sender's pid, for log lines.
struct CallerLabel {
    pid: i32,
}

/// How many ancestors of a runtime [`started_by_runtime`] looks through, and how many sockets
/// of a process it asks about (a container's init holds a few).
const MAX_ANCESTORS: usize = 256;
const MAX_SOCKETS: usize = 4096;

/// Check that process `pid` is the container init started by the runtime whose hook is
/// `caller` (the hook's parent is the runtime process). Kernel facts only, either:
///
/// - its parent is the runtime: runc starts the init with `CLONE_PARENT`, crun as its child
///   when one clone makes all the container's namespaces; or
/// - it holds one end of a socket pair whose other end the runtime holds, and its parent is
///   an ancestor of the runtime. crun, for a container in a new user namespace (or joining a
///   pid namespace), clones a child that forks the init and exits before the hook runs: the
///   kernel reparents the init to the nearest subreaper above the runtime (conmon, a
///   containerd shim) or to pid 1. The init keeps its end of the socket pair the runtime made
///   before cloning (its synchronisation socket, close-on-exec, closed in the runtime): no
///   other process of the host holds an end of a pair the runtime made unless the runtime
///   handed it one. Both ends are unnamed, which a connection to a listening socket (a
///   console socket, bpfnsd's receiver) never is.
pub(crate) fn started_by_runtime(caller: i32, pid: i32) -> Result<(), Failure> {
    let refused = |why: String| {
        Failure::new(
            ErrorCode::Denied,
            format!(
                "process {pid} was not started by the runtime that runs this hook ({why}): \
                 not a container's init"
            ),
        )
    };
    let Some(runtime) = parent_pid(caller) else {
        return Err(refused("the caller's parent cannot be read".into()));
    };
    let Some(parent) = parent_pid(pid) else {
        return Err(Failure::new(
            ErrorCode::NotFound,
            format!("no process {pid}"),
        ));
    };
    if parent == runtime {
        return Ok(());
    }
    let mut above = runtime;
    let mut ancestor = false;
    for _ in 0..MAX_ANCESTORS {
        match parent_pid(above) {
            Some(p) if p > 0 => {
                if p == parent {
                    ancestor = true;
                    break;
                }
                above = p;
            }
            _ => break,
        }
    }
    if !ancestor {
        return Err(refused(format!(
            "its parent {parent} is neither the caller's parent {runtime} nor an ancestor of it"
        )));
    }
    match socket_pair_with(pid, runtime) {
        Ok(true) => Ok(()),
        Ok(false) => Err(refused(format!(
            "its parent {parent} is not the caller's parent {runtime}, and it holds no end of \
             a socket pair whose other end that process holds"
        ))),
        Err(e) => Err(refused(format!(
            "its parent {parent} is not the caller's parent {runtime}, and its sockets could \
             not be compared with that process's: {e} (bpfnsd must run in the runtime's \
             network namespace, with sock_diag for Unix sockets: CONFIG_UNIX_DIAG)"
        ))),
    }
}

/// Whether process `pid` holds an unnamed Unix socket connected to an unnamed one process
/// `other` holds (the two ends of a `socketpair()`).
fn socket_pair_with(pid: i32, other: i32) -> Result<bool, String> {
    use bpfns_sys::procfs::socket_inodes;
    let read = |p: i32| socket_inodes(p).map_err(|e| format!("reading /proc/{p}/fd: {e}"));
    let theirs = read(other)?;
    if theirs.is_empty() {
        return Ok(false);
    }
    let mine = read(pid)?;
    let diag = bpfns_sys::unix::SockDiag::open().map_err(|e| e.to_string())?;
    let mut failed = None;
    for &ino in mine.iter().take(MAX_SOCKETS) {
        let d = match diag.unix(ino) {
            Ok(d) => d,
            // Not a Unix socket, or closed meanwhile.
            Err(e) if e.errno == bpfns_sys::Errno::NOENT => continue,
            Err(e) => {
                failed = Some(e.to_string());
                continue;
            }
        };
        let Some(peer) = d
            .peer
            .filter(|p| !d.named && theirs.binary_search(p).is_ok())
        else {
            continue;
        };
        match diag.unix(peer) {
            Ok(p) if !p.named && p.peer == Some(ino) => return Ok(true),
            Ok(_) => {}
            Err(e) => failed = Some(e.to_string()),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(false),
    }
}

/// The annotation that names a container's namespace.
pub const NAMESPACE_ANNOTATION: &str = "io.bpfns.namespace";

impl Daemon {
    /// `enter_container`: tag a container's init, before any code of the container runs.
    ///
    /// `enter` needs the process to be the caller's child; a runtime's hook is not the init's
    /// parent. What is checked instead, all kernel facts: the caller is a host administrator
    /// in the root namespace (a runtime runs as host root); the process is alive (through the
    /// pidfd everything is then done with); it was started by the runtime process that runs
    /// the hook ([`started_by_runtime`]), so it is not some other process of the host; it is in
    /// a mount namespace other than the caller's (the container's); and it is untagged or
    /// already in the target (a retried hook), never moved out of another namespace.
    pub(crate) fn enter_container(&self, caller: &Caller, path: &str, pid: i32) -> Answer {
        if !(caller.host_admin() && caller.ns == NsId::ROOT) {
            return Err(Failure::new(
                ErrorCode::Denied,
                "enter_container is for container runtimes: it needs CAP_SYS_ADMIN in the \
                 initial user namespace, outside any bpfns namespace",
            ));
        }
        let p = Self::parse_path(path)?;
        let _g = self.hold_changes();
        let target = {
            let reg = self.reg();
            let id = reg
                .id(&p)
                .ok_or_else(|| Failure::new(ErrorCode::NotFound, format!("no namespace {p}")))?;
            may_enter(&reg, caller.policy(), id)?;
            id
        };
        if target == NsId::ROOT {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                "a container cannot be put into the root namespace",
            ));
        }
        if self.is_deleting(target) {
            return Err(Failure::new(
                ErrorCode::Conflict,
                format!("namespace {p} is being deleted"),
            ));
        }
        let gone = || Failure::new(ErrorCode::NotFound, format!("no process {pid}"));
        let pidfd = bpfns_sys::process::open_pidfd(pid).map_err(|_| gone())?;
        started_by_runtime(caller.pid, pid)?;
        let mnt = |p: i32| bpfns_sys::mounts::namespace_inode(p, "mnt").ok();
        if mnt(pid).is_none() || mnt(pid) == mnt(caller.pid) {
            return Err(Failure::new(
                ErrorCode::Denied,
                format!(
                    "process {pid} shares the caller's mount namespace: not a container's init"
                ),
            ));
        }
        let current = self
            .kernel
            .task_ns(pidfd.as_fd())
            .map_err(Failure::internal)?;
        if current != NsId::ROOT && current != target {
            return Err(Failure::new(
                ErrorCode::Conflict,
                format!(
                    "process {pid} is in namespace {} already",
                    self.ns_name(current)
                ),
            ));
        }
        // The init is the runtime's code until it execs the container's program: it may hand
        // the seccomp listener on from a child sharing its fd table (crun).
        self.tag_process(pidfd.as_fd(), pid, target, TASK_RUNTIME, "")?;
        let bound = self.bind_container_cgroups(pid, caller.pid, target, &p)?;
        tracing::info!(pid, namespace = %p, caller = caller.pid, cgroups = %bound.join(" "), "container entered namespace");
        self.publish_entered(target, pid);
        // Not under the lock for namespace changes: placing a container takes the records'
        // lock first, then that one.
        drop(_g);
        // The container's own cgroup, where the runtime made one (else the init's).
        self.bind_first_cgroup(target, &p, pid);
        self.containers_started(&p);
        Ok((
            Reply::Entered {
                path: p.to_string(),
                pid,
            },
            vec![],
        ))
    }

    /// Bind the cgroups of a container's init `pid` to its namespace `target`: in every
    /// hierarchy where the init's cgroup is not the one of the runtime that runs the hook
    /// (`caller`), that cgroup is the container's own, and the kernel side tags every untagged
    /// task attached to it (a process a runtime joins to the container: `podman exec`).
    /// Returns the cgroups bound, as `hierarchy:path`. A cgroup bound to another existing
    /// namespace is refused (two containers in one cgroup cannot be told apart); one that
    /// cannot be found is skipped with a warning (such processes are then tagged at their
    /// first trapped call, see docs/containers.md).
    fn bind_container_cgroups(
        &self,
        pid: i32,
        caller: i32,
        target: NsId,
        p: &NsPath,
    ) -> Result<Vec<String>, Failure> {
        use bpfns_sys::procfs::{cgroup_dir, cgroup_lines};
        use std::os::unix::fs::MetadataExt;
        let read = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .map(|t| cgroup_lines(&t))
                .map_err(|e| {
                    Failure::new(
                        ErrorCode::NotFound,
                        format!("reading the cgroups of process {pid}: {e}"),
                    )
                })
        };
        let init = read(pid)?;
        let runtime = read(caller)?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Failure::internal(format!("reading /proc/self/mountinfo: {e}")))?;
        let mut bound = Vec::new();
        for line in init {
            if runtime
                .iter()
                .any(|r| r.hierarchy == line.hierarchy && r.path == line.path)
            {
                continue; // shared with the runtime: not the container's own
            }
            let Some(id) = cgroup_dir(&mountinfo, &line)
                .and_then(|d| std::fs::metadata(&d).ok())
                .map(|m| m.ino())
            else {
                tracing::warn!(
                    namespace = %p,
                    hierarchy = line.hierarchy,
                    path = %line.path,
                    "the container's cgroup is not mounted where bpfnsd can see it: processes \
                     joining the container through it are tagged at their first trapped call"
                );
                continue;
            };
            match self
                .kernel
                .bind_cgroup(line.hierarchy, id, target)
                .map_err(Failure::internal)?
            {
                None => {}
                Some(other) if self.reg().path(other).is_some() => {
                    return Err(Failure::new(
                        ErrorCode::Conflict,
                        format!(
                            "the container's cgroup {}:{} belongs to namespace {} already: \
                             give the container a cgroup of its own",
                            line.hierarchy,
                            line.path,
                            self.ns_name(other)
                        ),
                    ));
                }
                Some(_) => self
                    .kernel
                    .rebind_cgroup(line.hierarchy, id, target)
                    .map_err(Failure::internal)?,
            }
            bound.push(format!("{}:{}", line.hierarchy, line.path));
        }
        Ok(bound)
    }

    /// Tag process `pid` (behind `pidfd`) and every thread of it into `target` with `flags`
    /// (`TASK_RUNTIME` or none); a thread that cannot be tagged fails it, with `advice` after
    /// the cause.
    pub(super) fn tag_process(
        &self,
        pidfd: BorrowedFd<'_>,
        pid: i32,
        target: NsId,
        flags: u32,
        advice: &str,
    ) -> Result<(), Failure> {
        let tag = TaskTag::with_flags(target, flags);
        // Through the pidfd that was checked, not by pid: a recycled pid cannot be tagged.
        self.kernel
            .tag_with(pidfd, tag)
            .map_err(Failure::internal)?;
        let others = bpfns_sys::process::thread_ids(pid)
            .map_err(Failure::internal)?
            .into_iter()
            .filter(|&t| t != pid);
        for tid in others {
            match bpfns_sys::process::open_thread_pidfd(tid) {
                Ok(fd) => self
                    .kernel
                    .tag_with(fd.as_fd(), tag)
                    .map_err(Failure::internal)?,
                Err(e) if e.errno == bpfns_sys::Errno::SRCH => {}
                Err(e) => {
                    return Err(Failure::new(
                        ErrorCode::BadRequest,
                        // Never leave a thread untagged (before Linux 6.9 threads have no pidfds).
                        format!("thread {tid} of process {pid} cannot be tagged ({e}){advice}"),
                    ));
                }
            }
        }
        if !bpfns_sys::unix::pidfd_alive(pidfd) {
            return Err(Failure::new(
                ErrorCode::NotFound,
                format!("process {pid} exited"),
            ));
        }
        Ok(())
    }

    /// A listener a runtime sent to `listenerPath`: check it and supervise it as `supervise`
    /// does. The namespace is the one the metadata names, which must be the one the kernel
    /// side tagged the container's init with (by the `createRuntime` hook).
    fn receive_listener(
        &self,
        sender: Sender<'_>,
        msg: ProcessState,
        mut fds: Vec<OwnedFd>,
    ) -> Result<(NsId, i32), Failure> {
        let (sender_pid, sender_uid, sender_ns) = match sender {
            Sender::Live(c) => (c.pid, c.uid, Some(c.ns)),
            Sender::Departed { pid, uid } => (pid, uid, None),
        };
        let admin = matches!(sender, Sender::Live(c) if c.host_admin() && c.ns == NsId::ROOT);
        // A sender that is gone, or crun's exec form (no pid at all), which may come from the
        // process joining the container while it is tagged, loses its capabilities and execs:
        // from uid 0 they are taken on the conditions below (see `Sender`).
        let exec_form = msg.pid == 0 && msg.state.pid == 0;
        let departed = matches!(sender, Sender::Departed { .. });
        if !admin && !((exec_form || departed) && sender_uid == 0) {
            let what = match sender {
                Sender::Live(c) => format!(
                    "uid {}, namespace {}, {}CAP_SYS_ADMIN in the initial user namespace",
                    c.uid,
                    self.ns_name(c.ns),
                    if c.host_admin() { "" } else { "no " }
                ),
                Sender::Departed { uid, .. } => format!("uid {uid}, exited"),
            };
            return Err(Failure::new(
                ErrorCode::Denied,
                format!(
                    "only a container runtime (host root, outside any bpfns namespace) may hand \
                     bpfnsd a container's listener; the sender (pid {sender_pid}: {what}) is not"
                ),
            ));
        }
        if fds.len() != 1 || fd_kind(fds[0].as_fd()) != "anon_inode:seccomp notify" {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!(
                    "expected one seccomp listener, got {} fd(s) named {:?}",
                    fds.len(),
                    msg.fds
                ),
            ));
        }
        let p = NsPath::parse(&msg.metadata).map_err(|e| {
            Failure::new(
                ErrorCode::BadRequest,
                format!(
                    "listenerMetadata must name the container's namespace ({e}); the \
                     container was not set up by bpfns-oci"
                ),
            )
        })?;
        if let Some(a) = msg.state.annotations.get(NAMESPACE_ANNOTATION) {
            if a != &p.to_string() {
                return Err(Failure::new(
                    ErrorCode::BadRequest,
                    format!(
                        "the annotation {NAMESPACE_ANNOTATION}={a} and the metadata {p} disagree"
                    ),
                ));
            }
        }
        let ns = self
            .reg()
            .id(&p)
            .filter(|id| *id != NsId::ROOT)
            .ok_or_else(|| Failure::new(ErrorCode::NotFound, format!("no namespace {p}")))?;
        let init = msg.state.pid;
        let label = if init == 0 {
            // crun's exec names no process at all, not even the init. The namespace must be
            // one a container was started in: its cgroups were bound when the hook tagged the
            // init, and the kernel side tags every process a runtime joins to them.
            if msg.pid != 0 {
                return Err(Failure::new(
                    ErrorCode::BadRequest,
                    format!("the state names process {} but no container init", msg.pid),
                ));
            }
            let bound = self
                .kernel
                .cgroup_bindings()
                .map_err(Failure::internal)?
                .iter()
                .any(|b| b.2 == ns);
            if !admin && sender_ns.is_some_and(|s| s != NsId::ROOT && s != ns) {
                return Err(Failure::new(
                    ErrorCode::Denied,
                    format!(
                        "the sender (pid {sender_pid}) is in namespace {}, not {p}",
                        self.ns_name(sender_ns.unwrap_or(NsId::ROOT))
                    ),
                ));
            }
            if !bound {
                return Err(Failure::new(
                    ErrorCode::Denied,
                    format!(
                        "no container's cgroup is bound to namespace {p}: was the \
                         createRuntime hook of bpfns-oci run, and could bpfnsd see the \
                         container's cgroups (/proc/self/mountinfo)?"
                    ),
                ));
            }
            sender_pid
        } else {
            // The container's init must be in it: the hook tagged it before this listener
            // existed.
            let init_fd = bpfns_sys::process::open_pidfd(init).map_err(|_| {
                Failure::new(
                    ErrorCode::NotFound,
                    format!("the container's init (pid {init}) is gone"),
                )
            })?;
            let init_ns = self
                .kernel
                .task_ns(init_fd.as_fd())
                .map_err(Failure::internal)?;
            if init_ns != ns {
                return Err(Failure::new(
                    ErrorCode::Denied,
                    format!(
                        "the container's init (pid {init}) is in namespace {}, not {p}: was the \
                         createRuntime hook of bpfns-oci run?",
                        self.ns_name(init_ns)
                    ),
                ));
            }
            if msg.pid != 0 && msg.pid != init {
                // A process joining the container (runc's exec): it must be in the container's
                // pid and mount namespaces; it enters the container's bpfns namespace unless it
                // is in it (or below) already.
                let fd = bpfns_sys::process::open_pidfd(msg.pid).map_err(|_| {
                    Failure::new(ErrorCode::NotFound, format!("no process {}", msg.pid))
                })?;
                for kind in ["pid", "mnt"] {
                    let a = match bpfns_sys::mounts::namespace_inode(msg.pid, kind) {
                        Ok(a) => Some(a),
                        // A short exec (`docker exec C test -e F`) may end before its listener
                        // is read: nothing of it is left to supervise, and nothing is
                        // widened (a process it left running gets ENOSYS).
                        Err(e) if e.errno == bpfns_sys::Errno::NOENT => {
                            return Err(Failure::new(
                                ErrorCode::NotFound,
                                format!(
                                    "process {} (joining the container) exited before bpfnsd \
                                     read its {kind} namespace ({e}): nothing is left to \
                                     supervise unless it left processes running; fix: none \
                                     needed for an exec that has ended",
                                    msg.pid
                                ),
                            ));
                        }
                        Err(_) => None,
                    };
                    let b = bpfns_sys::mounts::namespace_inode(init, kind).ok();
                    if a.is_none() || a != b {
                        return Err(Failure::new(
                            ErrorCode::Denied,
                            format!(
                                "process {} is not in the {kind} namespace of the container's init",
                                msg.pid
                            ),
                        ));
                    }
                }
                let now = self.kernel.task_ns(fd.as_fd()).map_err(Failure::internal)?;
                if now == NsId::ROOT {
                    self.tag_process(fd.as_fd(), msg.pid, ns, 0, "")?;
                } else if !self.reg().is_same_or_ancestor(ns, now) {
                    return Err(Failure::new(
                        ErrorCode::Denied,
                        format!(
                            "process {} is in namespace {}, outside the container's",
                            msg.pid,
                            self.ns_name(now)
                        ),
                    ));
                }
            }
            if msg.pid == 0 {
                init
            } else {
                msg.pid
            }
        };
        let sink = self
            .sink
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| Failure::new(ErrorCode::Internal, "no supervisor is running"))?;
        sink.supervise(Supervise {
            pid: label,
            uid: sender_uid,
            ns,
            listener: fds.remove(0),
            in_flight: bpfns_sys::seccomp::InFlight::create().map_err(Failure::internal)?,
        })?;
        Ok((ns, label))
    }
}

/// Bind the seccomp receiver's socket at `path` (mode 0600: runtimes run as root; each
/// sender is checked anyway), replacing a stale socket file but never a live receiver.
pub fn listen_seccomp(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                ErrorKind::AddrInUse,
                format!("another bpfnsd receives listeners at {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Receive the listeners runtimes send, on a thread of its own (one short thread per
/// connection), for as long as the daemon exists.
pub fn serve_seccomp(listener: UnixListener, daemon: &Arc<Daemon>) {
    let weak = Arc::downgrade(daemon);
    let spawned = std::thread::Builder::new()
        .name("bpfns-oci-recv".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Some(d) = weak.upgrade() else { return };
                match conn {
                    Ok(stream) => {
                        // Who sent it, at once: a runtime sends, closes and may exit (and be
                        // reaped) right away, and a sender that is gone cannot be identified.
                        let caller = Caller::of_peer(stream.as_fd(), &d.kernel, d.init_userns());
                        let _ = std::thread::Builder::new()
                            .name("bpfns-oci-conn".into())
                            .spawn(move || receive(stream, caller, &d));
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::error!("seccomp receiver: accept: {e}");
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the seccomp receiver: {e}");
    }
}

/// One runtime's message: read it whole (it closes the connection after sending), then act.
/// The runtime waits for no answer: a refused listener is closed, and the container's trapped
/// calls then fail (`ENOSYS`), never reaching the kernel unsupervised.
fn receive(stream: UnixStream, live: Result<Caller, CallerError>, daemon: &Daemon) {
    let departed = match &live {
        Ok(_) => None,
        // `runc create` and the runtimes' exec (podman runs it detached) exit as soon as they
        // have sent: the sender may be gone before its facts are read.
        Err(CallerError::Gone(_) | CallerError::Proc { .. }) => {
            match bpfns_sys::unix::peer_cred(stream.as_fd()) {
                Ok((pid, uid, _)) => Some((pid, uid)),
                Err(e) => {
                    tracing::warn!("seccomp receiver: refusing a sender: {e}");
                    return;
                }
            }
        }
        Err(e) => {
            tracing::warn!("seccomp receiver: refusing a sender: {e}");
            return;
        }
    };
    let caller = CallerLabel {
        pid: match (&live, departed) {
            (Ok(c), _) => c.pid,
            (_, Some((pid, _))) => pid,
            _ => 0,
        },
    };
    let _ = bpfns_sys::unix::set_timeouts(&stream, Some(RECEIVE_TIMEOUT));
    let mut body = Vec::new();
    let mut fds = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match bpfns_sys::unix::recv_msg(stream.as_fd(), &mut buf, &mut fds, false) {
            Ok(0) => break,
            Ok(n) => {
                body.extend_from_slice(&buf[..n]);
                if body.len() > MAX_MESSAGE {
                    tracing::warn!(pid = caller.pid, "seccomp receiver: message too large");
                    return;
                }
                // Some runtimes keep the connection open: a whole JSON value is the message.
                if serde_json::from_slice::<serde_json::Value>(&body).is_ok() {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(
                    pid = caller.pid,
                    "seccomp receiver: reading the message: {e}"
                );
                return;
            }
        }
    }
    let msg: ProcessState = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(
                pid = caller.pid,
                "seccomp receiver: not an OCI process state: {e}"
            );
            return;
        }
    };
    let (id, pid) = (msg.state.id.clone(), msg.pid);
    let sender = match (&live, departed) {
        (Ok(c), _) => Sender::Live(c),
        (_, Some((pid, uid))) => Sender::Departed { pid, uid },
        _ => return,
    };
    match daemon.receive_listener(sender, msg, fds) {
        Ok((ns, label)) => tracing::info!(
            container = %id,
            pid,
            init = label,
            namespace = %daemon.ns_name(ns),
            "supervising a container's listener"
        ),
        Err(f) => tracing::warn!(
            container = %id,
            pid,
            "refused a container's listener ({:?}): {}; its trapped bpf() calls fail with ENOSYS",
            f.code,
            f.message
        ),
    }
}
