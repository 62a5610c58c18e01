//! The supervisor thread: receive a notification, read the caller once, check the
//! notification is still valid, act, answer.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bpfns_model::{NsId, ObjectKind};
use bpfns_sys::caps::{self, CapabilitySet as C, CapabilitySets};
use bpfns_sys::fds::{self, PidfdNamespace, RESOLVE_NO_MAGICLINKS};
use bpfns_sys::rawbpf::{self, BPF_F_TOKEN_FD};
use bpfns_sys::seccomp::{AddFd, Listener, Notification, Response};
use bpfns_sys::{mem, thread, Errno};

use super::attr::{
    self, kind_of_link_target, next_visible, off, parse, query_reply, query_target_is_ifindex,
    task_fd_name_reply, AttachFds, AttachReq, Attr, Command, FdIds, Hook, HookState, LinkUpdateReq,
    ProgQuery, QueryEntry, Request, TaskFdQuery,
};
use super::filter::{AUDIT_ARCH_X86_64, NR_BPF, NR_IOCTL, PERF_EVENT_IOC_QUERY_BPF};
use super::{Counters, Options, ReplyMode, View, ViewError};

mod load;

/// The supervisor thread's effective capabilities between requests: what its own work needs
/// (`GET_FD_BY_ID`/`GET_NEXT_ID`/queries: SYS_ADMIN; reading callers: SYS_PTRACE; resolving
/// in their root: SYS_CHROOT, DAC_*, FOWNER; borrowing their fs ids: SETUID, SETGID), and
/// above all *not* `CAP_SYSLOG`: an fd opened here keeps these credentials.
fn base_caps() -> C {
    C::SYS_ADMIN
        | C::BPF
        | C::SYS_PTRACE
        | C::SYS_CHROOT
        | C::SETUID
        | C::SETGID
        | C::DAC_OVERRIDE
        | C::DAC_READ_SEARCH
        | C::FOWNER
}

/// The capabilities that take part in path permission checks, which a caller may bring to an
/// `OBJ_GET` resolved on its behalf (only if they are effective in the initial user
/// namespace: that is where this thread checks them).
fn fs_caps() -> C {
    C::DAC_OVERRIDE | C::DAC_READ_SEARCH | C::FOWNER
}

const PATH_MAX: usize = 4096;
/// Upper bound on a PROG_QUERY answer (programs attached at one hook).
const QUERY_MAX: u32 = 1 << 16;
/// Upper bound on a TASK_FD_QUERY name.
const NAME_MAX: u32 = 1 << 16;
/// Cached visible-id lists per thread.
const CACHE_MAX: usize = 64;
/// Cached pidfds per supervisor thread (opening one costs several microseconds; each is an fd
/// of the daemon, so keep few).
const PIDFDS_MAX: usize = 64;

/// The thread's own context, to come back to after borrowing a caller's.
struct Home {
    root: OwnedFd,
    cwd: OwnedFd,
    /// `/proc/thread-self/fd` (for `BPF_OBJ_GET` of an `O_PATH` fd through its magic link).
    fd_dir: OwnedFd,
    netns: OwnedFd,
    fsuid: u32,
    fsgid: u32,
    groups: Vec<u32>,
}

impl Home {
    fn open() -> Result<Self, bpfns_sys::SysError> {
        thread::unshare_fs()?;
        Ok(Home {
            root: thread::open_dir(Path::new("/"))?,
            cwd: thread::open_dir(Path::new("."))?,
            fd_dir: thread::open_dir(Path::new("/proc/thread-self/fd"))?,
            netns: thread::open_ns(Path::new("/proc/thread-self/ns/net"))?,
            fsuid: own_fsuid(),
            fsgid: own_fsgid(),
            groups: thread::groups()?,
        })
    }
}

fn own_fsuid() -> u32 {
    // The fs ids follow the effective ids unless changed; the daemon never changes them
    // outside a borrowed context.
    status_field_ids("Uid:").unwrap_or(0)
}

fn own_fsgid() -> u32 {
    status_field_ids("Gid:").unwrap_or(0)
}

fn status_field_ids(name: &str) -> Option<u32> {
    let s = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let line = s.lines().find_map(|l| l.strip_prefix(name))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// `AT_FDCWD`.
const AT_FDCWD: i32 = -100;

/// Namespace identity: (device, inode) of a `/proc/.../ns/*` file.
fn ns_ident(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

enum Outcome {
    /// Answer with this.
    Respond(Response),
    /// Already answered (an fd was injected with `ADDFD | SEND`).
    Injected,
    /// The caller gave up (the notification is no longer valid): nothing to answer.
    Abandoned,
}

fn err(e: Errno) -> Outcome {
    Outcome::Respond(Response::Error(e))
}

/// What a request needs beyond the attr, gathered before the validity check.
enum Prepared {
    Nothing,
    FdById {
        caller_syslog: bool,
    },
    ObjGet {
        path: Vec<u8>,
        dir: Option<OwnedFd>,
        root: OwnedFd,
        cwd: OwnedFd,
        fsuid: u32,
        fsgid: u32,
        groups: Vec<u32>,
        caps: C,
    },
    ProgQuery {
        target: Option<OwnedFd>,
        netns: Option<OwnedFd>,
    },
    TaskFdQuery {
        host_pid: u32,
    },
    /// `BPF_PROG_LOAD` the supervisor makes itself (`None`: it lets the kernel answer, or
    /// refuses).
    Load(Option<Box<load::LoadPrep>>),
    /// `BPF_PROG_ATTACH` / `BPF_PROG_DETACH`: copies of the caller's fds, its network
    /// namespace where the hook is in it, and the capabilities to act with.
    Attach {
        hook: Hook,
        fds: CallerFds,
        netns: Option<OwnedFd>,
        caps: C,
    },
    /// `BPF_LINK_UPDATE` / `BPF_LINK_DETACH`.
    Link {
        link: Option<OwnedFd>,
        new: Option<OwnedFd>,
        old: Option<OwnedFd>,
        caps: C,
    },
}

/// Copies of the fds a caller named in an attach-family attr (`None`: the caller has no such
/// fd, and the call gets an fd number that is invalid here too).
#[derive(Default)]
struct CallerFds {
    target: Option<OwnedFd>,
    prog: Option<OwnedFd>,
    replace: Option<OwnedFd>,
    relative: Option<OwnedFd>,
}

/// An fd number no process of the daemon has: stands for a caller's fd that does not exist,
/// so the kernel answers the call as it would have answered the caller (`EBADF`, or for a
/// legacy cgroup detach, "no program given").
const NO_FD: u32 = u32::MAX;

/// How many times an attach-family call is retried when the hook changed between the
/// supervisor's look and the call (`ESTALE` on a revision the supervisor pinned).
const STALE_RETRIES: usize = 3;

/// One trapped call.
struct Call {
    id: u64,
    tid: i32,
    cmd: Command,
    attr_ptr: u64,
    /// bpf()'s size argument (at most a page).
    attr_size: usize,
    attr: Attr,
    pidfd: OwnedFd,
    eff: C,
}

struct Worker {
    listener: Listener,
    view: Arc<dyn View>,
    opts: Options,
    counters: Arc<Counters>,
    cache: HashMap<(NsId, ObjectKind), (Vec<u32>, Instant)>,
    home: Option<Home>,
    base: C,
    /// The thread's capability sets between requests (effective = `base`).
    sets: CapabilitySets,
    /// pidfds of recent callers, by thread id. A cached pidfd may name an earlier task with
    /// the same id that has since exited: every use of it then fails (`ESRCH`), and the
    /// caller's pidfd is opened afresh. It can never name another *live* task.
    pidfds: HashMap<i32, OwnedFd>,
    own_userns: Option<(u64, u64)>,
    own_pidns: Option<(u64, u64)>,
    poisoned: Cell<bool>,
}

pub(super) fn run(
    listener: Listener,
    view: Arc<dyn View>,
    opts: Options,
    counters: Arc<Counters>,
    stop: UnixStream,
) {
    if let Some(cpu) = opts.pin_cpu {
        if let Err(e) = bpfns_sys::process::pin_to_cpu(cpu) {
            tracing::warn!("supervisor: cannot pin to CPU {cpu}: {e}");
        }
    }
    let home = match Home::open() {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!("supervisor: no private fs context ({e}); OBJ_GET will be refused");
            None
        }
    };
    let (base, sets) = match caps::set_current_thread_effective(base_caps())
        .and_then(|eff| Ok((eff, caps::of_current_thread()?)))
    {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("supervisor: cannot reduce capabilities ({e}); refusing to serve");
            return;
        }
    };
    if opts.sync_wakeup {
        if let Err(e) = listener.set_sync_wakeup() {
            tracing::debug!("supervisor: no synchronous wake-up ({e})");
        }
    }
    let mut w = Worker {
        listener,
        view,
        opts,
        counters,
        cache: HashMap::new(),
        home,
        base,
        sets,
        pidfds: HashMap::new(),
        own_userns: ns_ident(Path::new("/proc/thread-self/ns/user")),
        own_pidns: ns_ident(Path::new("/proc/thread-self/ns/pid")),
        poisoned: Cell::new(false),
    };
    w.serve(stop);
    tracing::debug!(label = %w.opts.label, "supervisor stops");
}

impl Worker {
    fn serve(&mut self, stop: UnixStream) {
        loop {
            if self.poisoned.get() {
                tracing::error!("supervisor: could not restore its own context; stopping");
                return;
            }
            let ready = match fds::poll_any(&[self.listener.as_fd(), stop.as_fd()], None) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!("supervisor: poll: {e}");
                    return;
                }
            };
            if ready[1].readable || ready[1].hung_up {
                return;
            }
            if !ready[0].readable {
                if ready[0].hung_up {
                    // No task is left under the filter.
                    return;
                }
                continue;
            }
            let n = match self.listener.recv() {
                Ok(n) => n,
                // The caller went away between poll and recv.
                Err(e) if e.errno == Errno::NOENT || e.errno == Errno::INTR => continue,
                Err(e) => {
                    tracing::error!("supervisor: {e}");
                    return;
                }
            };
            if let Some(f) = &self.opts.in_flight {
                // Best effort: a relay that sealed its memfd against writes only loses the
                // ability to answer for us after a crash.
                let _ = f.record(n.id);
            }
            self.serve_one(&n);
        }
    }

    fn serve_one(&mut self, n: &Notification) {
        let started = Instant::now();
        self.serve_one_inner(n);
        Counters::add(
            &self.counters.busy_ns,
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
        );
    }

    fn serve_one_inner(&mut self, n: &Notification) {
        Counters::bump(&self.counters.notifications);
        let outcome = match catch_unwind(AssertUnwindSafe(|| self.handle(n))) {
            Ok(o) => o,
            Err(_) => {
                tracing::error!("supervisor: panic while handling a notification");
                Counters::bump(&self.counters.internal);
                err(Errno::PERM)
            }
        };
        match outcome {
            Outcome::Injected => Counters::bump(&self.counters.injected),
            Outcome::Abandoned => Counters::bump(&self.counters.abandoned),
            Outcome::Respond(r) => match self.listener.respond(n.id, r) {
                Ok(()) => match r {
                    Response::Error(_) => Counters::bump(&self.counters.errors),
                    _ => Counters::bump(&self.counters.succeeded),
                },
                Err(e) if e.errno == Errno::NOENT => Counters::bump(&self.counters.abandoned),
                Err(e) => tracing::warn!("supervisor: answering: {e}"),
            },
        }
    }

    fn view_failed(&self, what: &str, e: ViewError) -> Outcome {
        match e {
            ViewError::Gone => err(Errno::SRCH),
            ViewError::Failed(m) => {
                tracing::error!("supervisor: {what}: {m}");
                Counters::bump(&self.counters.internal);
                // Fail closed.
                err(Errno::PERM)
            }
        }
    }

    fn handle(&mut self, n: &Notification) -> Outcome {
        if n.arch == AUDIT_ARCH_X86_64
            && n.nr as u32 == NR_IOCTL
            && n.args[1] as u32 == PERF_EVENT_IOC_QUERY_BPF
        {
            return self.perf_query(n);
        }
        if n.arch != AUDIT_ARCH_X86_64 || n.nr as u32 != NR_BPF {
            return err(Errno::NOSYS);
        }
        let Some(cmd) = Command::from_raw(n.args[0] as u32) else {
            return err(Errno::NOSYS);
        };
        let tid = n.pid as i32;
        if tid <= 0 {
            // Not visible in our pid namespace: we cannot act for it.
            return err(Errno::PERM);
        }
        // Commands that use the pidfd beyond the namespace lookup get a fresh one.
        let fresh = matches!(
            cmd,
            Command::ObjGet
                | Command::ProgQuery
                | Command::ProgLoad
                | Command::ProgAttach
                | Command::ProgDetach
                | Command::LinkUpdate
                | Command::LinkDetach
        );
        let (pidfd, cached) = match self.take_pidfd(tid, fresh) {
            Ok(p) => p,
            Err(e) => return self.abandoned_or(n.id, err(e)),
        };
        let mut call = match self.read_call(n, cmd, tid, pidfd) {
            Ok(c) => c,
            Err(e) => return self.abandoned_or(n.id, err(e)),
        };
        let out = self.handle_call(n, &mut call, cached);
        self.keep_pidfd(call.tid, call.pidfd);
        out
    }

    fn take_pidfd(&mut self, tid: i32, fresh: bool) -> Result<(OwnedFd, bool), Errno> {
        if !fresh {
            if let Some(fd) = self.pidfds.remove(&tid) {
                return Ok((fd, true));
            }
        }
        let fd = match bpfns_sys::process::open_thread_pidfd(tid) {
            Ok(fd) => fd,
            // Before Linux 6.9 there are no thread pidfds (PIDFD_THREAD): use the process's.
            // Its threads share the tag (inherited at clone), so the view is the same.
            Err(e) if e.errno == Errno::INVAL => {
                let tgid = bpfns_sys::process::thread_group_of(tid).map_err(|e| e.errno)?;
                bpfns_sys::process::open_pidfd(tgid).map_err(|e| e.errno)?
            }
            Err(e) => return Err(e.errno),
        };
        Ok((fd, false))
    }

    fn keep_pidfd(&mut self, tid: i32, fd: OwnedFd) {
        if self.pidfds.len() >= PIDFDS_MAX {
            self.pidfds.clear();
        }
        self.pidfds.insert(tid, fd);
    }

    fn handle_call(&mut self, n: &Notification, call: &mut Call, cached: bool) -> Outcome {
        let cmd = call.cmd;
        let tid = call.tid;
        let req = match parse(cmd, &call.attr) {
            Ok(r) => r,
            Err(e) => return self.abandoned_or(n.id, err(e)),
        };
        let allowed = match &req {
            Request::NextId { .. } | Request::FdById { .. } | Request::TaskFdQuery(_) => {
                attr::may_use_ids(call.eff)
            }
            Request::ProgQuery(_) => attr::may_query(call.eff),
            // The kernel judges these with the caller's own credentials.
            Request::ObjGet { .. }
            | Request::ProgLoad { .. }
            | Request::Attach(_)
            | Request::Detach(_)
            | Request::LinkUpdate(_)
            | Request::LinkDetach { .. } => true,
        };
        if !allowed {
            return self.abandoned_or(n.id, err(Errno::PERM));
        }
        let prep = match self.prepare(call, &req) {
            Ok(p) => p,
            Err(e) => return self.abandoned_or(n.id, err(e)),
        };
        // Everything read from the caller is now in hand; from here on, act only on it.
        match self.listener.id_valid(n.id) {
            Ok(true) => {}
            Ok(false) => return Outcome::Abandoned,
            Err(e) => {
                tracing::warn!("supervisor: {e}");
                return Outcome::Abandoned;
            }
        }
        let ns = match self.view.namespace_of(call.pidfd.as_fd()) {
            Ok(ns) => ns,
            Err(_) if cached => {
                // A cached pidfd of an earlier task with this id: open the caller's own, and
                // make sure it is still the one waiting.
                match bpfns_sys::process::open_thread_pidfd(tid) {
                    Ok(fd) => call.pidfd = fd,
                    Err(e) => return err(e.errno),
                }
                if !matches!(self.listener.id_valid(n.id), Ok(true)) {
                    return Outcome::Abandoned;
                }
                match self.view.namespace_of(call.pidfd.as_fd()) {
                    Ok(ns) => ns,
                    Err(e) => return self.view_failed("namespace of a caller", e),
                }
            }
            Err(e) => return self.view_failed("namespace of a caller", e),
        };
        if ns.is_root() && !self.root_may(call, &req) {
            // Not a namespace member after all: the kernel's own rules, which want the
            // capability in the initial user namespace; bpfns grants nothing.
            return err(Errno::PERM);
        }
        let out = self.act(call, ns, req, prep);
        if let Outcome::Respond(Response::Error(e)) = out {
            tracing::debug!(
                tid,
                ns = %ns,
                cmd = call.cmd.name(),
                errno = e.raw_os_error(),
                "refused"
            );
        }
        out
    }

    /// An early error: answer it, unless the caller has gone anyway.
    fn abandoned_or(&self, id: u64, o: Outcome) -> Outcome {
        match self.listener.id_valid(id) {
            Ok(false) => Outcome::Abandoned,
            _ => o,
        }
    }

    fn read_call(
        &self,
        n: &Notification,
        cmd: Command,
        tid: i32,
        pidfd: OwnedFd,
    ) -> Result<Call, Errno> {
        let eff = caps::of_task(tid).map_err(|e| e.errno)?.effective;
        let len = attr::read_len(n.args[2])?;
        let mut a = Attr::zeroed(len);
        mem::read_exact(tid, n.args[1], a.supplied_mut())?;
        Ok(Call {
            id: n.id,
            tid,
            cmd,
            attr_ptr: n.args[1],
            attr_size: n.args[2] as u32 as usize,
            attr: a,
            pidfd,
            eff,
        })
    }

    /// For a caller in the root namespace (untagged, under the filter): what the kernel
    /// would allow it, i.e. `CAP_SYS_ADMIN` (or, for queries, `CAP_NET_ADMIN`) in the initial
    /// user namespace. Seeing everything must not come from holding `CAP_BPF` alone.
    fn root_may(&self, call: &Call, req: &Request) -> bool {
        let need = match req {
            Request::ObjGet { .. }
            | Request::ProgLoad { .. }
            | Request::Attach(_)
            | Request::Detach(_)
            | Request::LinkUpdate(_)
            | Request::LinkDetach { .. } => return true,
            Request::ProgQuery(_) => C::SYS_ADMIN | C::NET_ADMIN,
            _ => C::SYS_ADMIN,
        };
        call.eff.intersects(need) && self.in_own_userns(call.pidfd.as_fd(), call.tid)
    }

    /// Whether the caller is in our user namespace (the initial one, for the daemon): only
    /// there do its capabilities count for checks this thread makes.
    fn in_own_userns(&self, pidfd: BorrowedFd<'_>, tid: i32) -> bool {
        let Some(own) = self.own_userns else {
            return false;
        };
        let theirs = match fds::pidfd_namespace(pidfd, PidfdNamespace::User) {
            Ok(ns) => fds::file_ident(&ns).ok(),
            // Before Linux 6.11.
            Err(_) => ns_ident(Path::new(&format!("/proc/{tid}/ns/user"))),
        };
        theirs == Some(own)
    }

    /// Gather what the request needs from the caller (before the validity check).
    fn prepare(&self, call: &Call, req: &Request) -> Result<Prepared, Errno> {
        let proc = |rest: &str| PathBuf::from(format!("/proc/{}/{rest}", call.tid));
        match req {
            Request::NextId { .. } => Ok(Prepared::Nothing),
            Request::FdById { .. } => Ok(Prepared::FdById {
                caller_syslog: call.eff.contains(C::SYSLOG)
                    && self.in_own_userns(call.pidfd.as_fd(), call.tid),
            }),
            Request::ObjGet {
                pathname, path_fd, ..
            } => {
                if self.home.is_none() {
                    return Err(Errno::PERM);
                }
                let path = mem::read_cstring(call.tid, *pathname, PATH_MAX)?;
                if path.is_empty() {
                    return Err(Errno::NOENT);
                }
                let dir = match path_fd {
                    // BPF_F_PATH_FD with AT_FDCWD: the working directory, as without the flag.
                    Some(AT_FDCWD) => None,
                    // Another negative number names no fd.
                    Some(fd) if *fd < 0 => return Err(Errno::BADF),
                    Some(fd) => {
                        Some(fds::pidfd_getfd(call.pidfd.as_fd(), *fd).map_err(|e| e.errno)?)
                    }
                    None => None,
                };
                let root = thread::open_dir(&proc("root")).map_err(|e| e.errno)?;
                let cwd = thread::open_dir(&proc("cwd")).map_err(|e| e.errno)?;
                let status = std::fs::read_to_string(proc("status")).map_err(|_| Errno::SRCH)?;
                let (fsuid, fsgid, groups) =
                    attr::fs_creds_from_status(&status).ok_or(Errno::SRCH)?;
                let caps = if self.in_own_userns(call.pidfd.as_fd(), call.tid) {
                    call.eff & fs_caps()
                } else {
                    C::empty()
                };
                Ok(Prepared::ObjGet {
                    path,
                    dir,
                    root,
                    cwd,
                    fsuid,
                    fsgid,
                    groups,
                    caps,
                })
            }
            Request::ProgQuery(q) => {
                if query_target_is_ifindex(q.attach_type) {
                    if self.home.is_none() {
                        return Err(Errno::PERM);
                    }
                    let netns = fds::pidfd_namespace(call.pidfd.as_fd(), PidfdNamespace::Net)
                        .map_err(|e| e.errno)?;
                    Ok(Prepared::ProgQuery {
                        target: None,
                        netns: Some(netns),
                    })
                } else {
                    let target = i32::try_from(q.target).map_err(|_| Errno::BADF)?;
                    let target =
                        fds::pidfd_getfd(call.pidfd.as_fd(), target).map_err(|e| e.errno)?;
                    Ok(Prepared::ProgQuery {
                        target: Some(target),
                        netns: None,
                    })
                }
            }
            Request::TaskFdQuery(q) => Ok(Prepared::TaskFdQuery {
                host_pid: self.task_fd_query_target(call, q.pid)?,
            }),
            Request::ProgLoad(r) => Ok(Prepared::Load(self.prepare_load(call, r)?)),
            Request::Attach(a) | Request::Detach(a) => {
                let detach = matches!(req, Request::Detach(_));
                // Attach types PROG_ATTACH does not take: the kernel's EINVAL.
                let hook = attr::hook_of(a.attach_type).ok_or(Errno::INVAL)?;
                let which: AttachFds = attr::attach_fds(detach, hook, a);
                let get = |wanted: bool, fd: u32| -> Result<Option<OwnedFd>, Errno> {
                    if wanted {
                        self.fetch_fd(call, fd)
                    } else {
                        Ok(None)
                    }
                };
                let fds = CallerFds {
                    target: get(which.target, a.target)?,
                    prog: get(which.prog, a.attach_bpf_fd)?,
                    replace: get(which.replace, a.replace_bpf_fd)?,
                    relative: get(which.relative, a.relative)?,
                };
                let netns = match hook {
                    Hook::FlowDissector | Hook::Mprog => {
                        if self.home.is_none() {
                            return Err(Errno::PERM);
                        }
                        Some(self.caller_netns(call)?)
                    }
                    _ => None,
                };
                Ok(Prepared::Attach {
                    hook,
                    fds,
                    netns,
                    caps: self.borrowed_caps(call),
                })
            }
            Request::LinkUpdate(u) => {
                use bpfns_sys::rawbpf::uapi::BPF_F_REPLACE;
                Ok(Prepared::Link {
                    link: self.fetch_fd(call, u.link_fd)?,
                    new: self.fetch_fd(call, u.new_fd)?,
                    old: if u.flags & BPF_F_REPLACE != 0 {
                        self.fetch_fd(call, u.old_fd)?
                    } else {
                        None
                    },
                    caps: self.borrowed_caps(call),
                })
            }
            Request::LinkDetach { link_fd } => Ok(Prepared::Link {
                link: self.fetch_fd(call, *link_fd)?,
                new: None,
                old: None,
                caps: self.borrowed_caps(call),
            }),
        }
    }

    /// A copy of the caller's fd `fd`; `None` if it has none by that number.
    fn fetch_fd(&self, call: &Call, fd: u32) -> Result<Option<OwnedFd>, Errno> {
        // Negative numbers name no fd (the kernel's fdget answers EBADF for them).
        let Ok(fd) = i32::try_from(fd) else {
            return Ok(None);
        };
        match fds::pidfd_getfd(call.pidfd.as_fd(), fd) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.errno == Errno::BADF => Ok(None),
            Err(e) => Err(e.errno),
        }
    }

    /// The caller's network namespace, for setns.
    fn caller_netns(&self, call: &Call) -> Result<OwnedFd, Errno> {
        match fds::pidfd_namespace(call.pidfd.as_fd(), PidfdNamespace::Net) {
            Ok(ns) => Ok(ns),
            // Before Linux 6.11: through /proc (the validity check that follows makes sure the
            // thread id was still the caller's).
            Err(_) => thread::open_ns(Path::new(&format!("/proc/{}/ns/net", call.tid)))
                .map_err(|e| e.errno),
        }
    }

    /// The capabilities a call made on the caller's behalf runs with, so that the kernel's
    /// own checks judge the caller: its effective set where it is in our (the initial) user
    /// namespace; none otherwise (capabilities of another user namespace cannot be borrowed
    /// here, which is narrower than the kernel for objects that namespace owns).
    fn borrowed_caps(&self, call: &Call) -> C {
        if self.in_own_userns(call.pidfd.as_fd(), call.tid) {
            call.eff
        } else {
            C::empty()
        }
    }

    fn act(&mut self, call: &Call, ns: NsId, req: Request, prep: Prepared) -> Outcome {
        match (req, prep) {
            (Request::NextId { kind, start_id }, _) => self.next_id(call, ns, kind, start_id),
            (
                Request::FdById {
                    kind,
                    id,
                    open_flags,
                },
                Prepared::FdById { caller_syslog },
            ) => self.fd_by_id(call, ns, kind, id, open_flags, caller_syslog),
            (
                Request::ObjGet { file_flags, .. },
                Prepared::ObjGet {
                    path,
                    dir,
                    root,
                    cwd,
                    fsuid,
                    fsgid,
                    groups,
                    caps,
                },
            ) => {
                let borrowed = Borrowed {
                    root: root.as_fd(),
                    cwd: cwd.as_fd(),
                    fsuid,
                    fsgid,
                    groups: &groups,
                    caps,
                };
                self.obj_get(call, ns, &path, dir.as_ref(), borrowed, file_flags)
            }
            (Request::ProgQuery(q), Prepared::ProgQuery { target, netns }) => {
                self.prog_query(call, ns, q, target, netns)
            }
            (Request::TaskFdQuery(q), Prepared::TaskFdQuery { host_pid }) => {
                self.task_fd_query(call, ns, q, host_pid)
            }
            (Request::ProgLoad(r), Prepared::Load(prep)) => self.prog_load(call, ns, r, prep),
            (
                Request::Attach(a),
                Prepared::Attach {
                    hook,
                    fds,
                    netns,
                    caps,
                },
            ) => self.attach(call, ns, false, hook, a, &fds, netns.as_ref(), caps),
            (
                Request::Detach(a),
                Prepared::Attach {
                    hook,
                    fds,
                    netns,
                    caps,
                },
            ) => self.attach(call, ns, true, hook, a, &fds, netns.as_ref(), caps),
            (
                Request::LinkUpdate(u),
                Prepared::Link {
                    link,
                    new,
                    old,
                    caps,
                },
            ) => self.link_update(call, ns, u, link, new, old, caps),
            (Request::LinkDetach { .. }, Prepared::Link { link, caps, .. }) => {
                self.link_detach(call, ns, link, caps)
            }
            _ => err(Errno::PERM),
        }
    }

    // ---- PROG_ATTACH, PROG_DETACH --------------------------------------------------------

    /// Check what the call would replace or detach, then make it here on copies of the
    /// caller's fds (a caller cannot swap its attr or fd numbers after the check).
    #[allow(clippy::too_many_arguments)]
    fn attach(
        &mut self,
        call: &Call,
        ns: NsId,
        detach: bool,
        hook: Hook,
        a: AttachReq,
        fds: &CallerFds,
        netns: Option<&OwnedFd>,
        caps: C,
    ) -> Outcome {
        let Some(home) = self.home.as_ref() else {
            return err(Errno::PERM);
        };
        let home_netns = &home.netns;
        if let Some(n) = netns {
            if let Err(e) = thread::enter_net_ns(n) {
                tracing::warn!("supervisor: {e}");
                return err(Errno::PERM);
            }
        }
        let out = self.attach_here(call, ns, detach, hook, a, fds, caps);
        if netns.is_some() && thread::enter_net_ns(home_netns).is_err() {
            self.poisoned.set(true);
            return err(Errno::PERM);
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn attach_here(
        &self,
        call: &Call,
        ns: NsId,
        detach: bool,
        hook: Hook,
        a: AttachReq,
        fds: &CallerFds,
        caps: C,
    ) -> Outcome {
        let ids = FdIds {
            prog: fds.prog.as_ref().and_then(|f| prog_id_of(f.as_fd())),
            replace: fds.replace.as_ref().and_then(|f| prog_id_of(f.as_fd())),
        };
        for _ in 0..STALE_RETRIES {
            let state = if attr::attach_needs_query(detach, hook, &a) {
                match self.query_hook(hook, &a, fds) {
                    Ok(s) => Some(s),
                    Err(e) => return err(e),
                }
            } else {
                None
            };
            let mut see = |kind, id| self.view.can_see(ns, kind, id);
            let plan = match attr::attach_verdict(detach, hook, &a, state.as_ref(), ids, &mut see) {
                Ok(Ok(p)) => p,
                Ok(Err(r)) => {
                    tracing::info!(
                        tid = call.tid,
                        namespace = %ns,
                        cmd = call.cmd.name(),
                        "refused: {}",
                        r.reason
                    );
                    return err(r.errno);
                }
                Err(e) => return self.view_failed("ownership of an attached program", e),
            };
            let mut attr = call.attr.clone();
            let raw = |f: &Option<OwnedFd>| f.as_ref().map_or(NO_FD, |f| f.as_raw_fd() as u32);
            let which = attr::attach_fds(detach, hook, &a);
            if which.target {
                attr.set_u32(off::A_TARGET, raw(&fds.target));
            }
            if which.prog {
                attr.set_u32(off::A_ATTACH_BPF_FD, raw(&fds.prog));
            }
            if which.replace {
                attr.set_u32(off::A_REPLACE_BPF_FD, raw(&fds.replace));
            }
            if which.relative {
                attr.set_u32(off::A_RELATIVE, raw(&fds.relative));
            }
            if let Some(rev) = plan.pin_revision {
                attr = attr.widened(off::A_EXPECTED_REVISION + 8);
                attr.set_u64(off::A_EXPECTED_REVISION, rev);
            }
            match self.as_caller(caps, || {
                rawbpf::sys_bpf(call.cmd.raw(), attr.supplied_mut())
            }) {
                // The hook changed since it was looked at: look again.
                Err(Errno::STALE) if plan.pin_revision.is_some() => continue,
                Ok(v) => return Outcome::Respond(Response::Value(v)),
                Err(e) => return err(e),
            }
        }
        err(Errno::AGAIN)
    }

    /// What is attached at the hook of `a` now (run here, with our copies of the caller's fds,
    /// in the caller's network namespace where the hook is in one).
    fn query_hook(&self, hook: Hook, a: &AttachReq, fds: &CallerFds) -> Result<HookState, Errno> {
        const MAX: usize = 64;
        let target = match hook {
            Hook::Cgroup | Hook::SockMap | Hook::Lirc => {
                fds.target.as_ref().map_or(NO_FD, |f| f.as_raw_fd() as u32)
            }
            // The flow dissector's query wants a network namespace fd: ours now is the caller's.
            Hook::FlowDissector => return self.query_flow_dissector(a),
            Hook::Mprog => a.target,
        };
        let mut ids = [0u32; MAX];
        let mut links = [0u32; MAX];
        let mut q = Attr::zeroed(off::Q_REVISION + 8);
        q.set_u32(off::Q_TARGET, target);
        q.set_u32(off::Q_ATTACH_TYPE, a.attach_type);
        q.set_u64(off::Q_PROG_IDS, ids.as_mut_ptr() as u64);
        q.set_u32(off::Q_PROG_CNT, MAX as u32);
        if hook == Hook::Mprog {
            // Link ids exist where mprog does (6.6); older kernels refuse the field.
            q.set_u64(off::Q_LINK_IDS, links.as_mut_ptr() as u64);
        }
        self.query_raw(&mut q)?;
        Ok(hook_state(&q, &ids, &links))
    }

    /// `BPF_PROG_QUERY` of the flow dissector of the network namespace this thread is in.
    fn query_flow_dissector(&self, a: &AttachReq) -> Result<HookState, Errno> {
        let ns = thread::open_ns(Path::new("/proc/thread-self/ns/net")).map_err(|e| e.errno)?;
        let mut ids = [0u32; 64];
        let mut q = Attr::zeroed(off::Q_REVISION + 8);
        q.set_u32(off::Q_TARGET, ns.as_raw_fd() as u32);
        q.set_u32(off::Q_ATTACH_TYPE, a.attach_type);
        q.set_u64(off::Q_PROG_IDS, ids.as_mut_ptr() as u64);
        q.set_u32(off::Q_PROG_CNT, ids.len() as u32);
        self.query_raw(&mut q)?;
        Ok(hook_state(&q, &ids, &[0u32; 64]))
    }

    /// Run a `BPF_PROG_QUERY` of our own (it wants `CAP_NET_ADMIN` before Linux 6.6).
    fn query_raw(&self, q: &mut Attr) -> Result<(), Errno> {
        self.with_caps(Some(C::NET_ADMIN), || {
            rawbpf::sys_bpf(attr::PROG_QUERY, q.supplied_mut())
        })
        .map(|_| ())
    }

    /// Run `f` with exactly `caps` effective (what the caller brings), then come back to the
    /// thread's own set.
    fn as_caller<T>(&self, caps: C, f: impl FnOnce() -> T) -> T {
        let mut sets = self.sets;
        sets.effective = caps & sets.permitted;
        if caps::set_current_thread(sets).is_err() {
            // Cannot act as the caller: act with nothing rather than with our own rights.
            let mut none = self.sets;
            none.effective = C::empty();
            if caps::set_current_thread(none).is_err() {
                self.poisoned.set(true);
            }
        }
        let r = f();
        if caps::set_current_thread(self.sets).is_err() {
            self.poisoned.set(true);
        }
        r
    }

    // ---- LINK_UPDATE, LINK_DETACH --------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn link_update(
        &self,
        call: &Call,
        ns: NsId,
        u: LinkUpdateReq,
        link: Option<OwnedFd>,
        new: Option<OwnedFd>,
        old: Option<OwnedFd>,
        caps: C,
    ) -> Outcome {
        use bpfns_sys::rawbpf::uapi::BPF_F_REPLACE;
        let replace = u.flags & BPF_F_REPLACE != 0;
        let link_ids = link.as_ref().and_then(|f| link_ids_of(f.as_fd()));
        let old_obj = old.as_ref().and_then(|f| object_of(f.as_fd()));
        let mut see = |kind, id| self.view.can_see(ns, kind, id);
        match attr::link_verdict(link_ids, Some((replace, old_obj)), &mut see) {
            Ok(Ok(())) => {}
            Ok(Err(r)) => {
                tracing::info!(tid = call.tid, namespace = %ns, "refused BPF_LINK_UPDATE: {}", r.reason);
                return err(r.errno);
            }
            Err(e) => return self.view_failed("ownership of a link", e),
        }
        let raw = |f: &Option<OwnedFd>| f.as_ref().map_or(NO_FD, |f| f.as_raw_fd() as u32);
        let mut attr = call.attr.clone();
        attr.set_u32(off::LU_LINK_FD, raw(&link));
        attr.set_u32(off::LU_NEW_FD, raw(&new));
        if replace {
            attr.set_u32(off::LU_OLD_FD, raw(&old));
        }
        match self.as_caller(caps, || {
            rawbpf::sys_bpf(attr::LINK_UPDATE, attr.supplied_mut())
        }) {
            Ok(v) => Outcome::Respond(Response::Value(v)),
            Err(e) => err(e),
        }
    }

    fn link_detach(&self, call: &Call, ns: NsId, link: Option<OwnedFd>, caps: C) -> Outcome {
        let link_ids = link.as_ref().and_then(|f| link_ids_of(f.as_fd()));
        let mut see = |kind, id| self.view.can_see(ns, kind, id);
        match attr::link_verdict(link_ids, None, &mut see) {
            Ok(Ok(())) => {}
            Ok(Err(r)) => {
                tracing::info!(tid = call.tid, namespace = %ns, "refused BPF_LINK_DETACH: {}", r.reason);
                return err(r.errno);
            }
            Err(e) => return self.view_failed("ownership of a link", e),
        }
        let mut attr = call.attr.clone();
        attr.set_u32(
            off::LU_LINK_FD,
            link.as_ref().map_or(NO_FD, |f| f.as_raw_fd() as u32),
        );
        match self.as_caller(caps, || {
            rawbpf::sys_bpf(attr::LINK_DETACH, attr.supplied_mut())
        }) {
            Ok(v) => Outcome::Respond(Response::Value(v)),
            Err(e) => err(e),
        }
    }

    // ---- PERF_EVENT_IOC_QUERY_BPF --------------------------------------------------------

    /// `ioctl(fd, PERF_EVENT_IOC_QUERY_BPF, query)`: run on a copy of the caller's perf event
    /// with its capabilities, and answered with the programs it can see.
    fn perf_query(&mut self, n: &Notification) -> Outcome {
        let tid = n.pid as i32;
        if tid <= 0 {
            return err(Errno::PERM);
        }
        let (pidfd, _) = match self.take_pidfd(tid, true) {
            Ok(p) => p,
            Err(e) => return self.abandoned_or(n.id, err(e)),
        };
        let eff = match caps::of_task(tid) {
            Ok(c) => c.effective,
            Err(e) => return self.abandoned_or(n.id, err(e.errno)),
        };
        // The caller's query: ids_len, then prog_cnt and ids[] to be written.
        let uquery = n.args[2];
        let mut len = [0u8; 4];
        let ids_len = mem::read_exact(tid, uquery, &mut len).map(|()| u32::from_ne_bytes(len));
        // ioctl takes `unsigned int fd`: a negative one names nothing.
        let Ok(raw) = i32::try_from(n.args[0] as u32) else {
            return self.abandoned_or(n.id, err(Errno::BADF));
        };
        let fd = match fds::pidfd_getfd(pidfd.as_fd(), raw) {
            Ok(fd) => fd,
            Err(e) => return self.abandoned_or(n.id, err(e.errno)),
        };
        let caps = if self.in_own_userns(pidfd.as_fd(), tid) {
            eff
        } else {
            C::empty()
        };
        match self.listener.id_valid(n.id) {
            Ok(true) => {}
            _ => return Outcome::Abandoned,
        }
        let ns = match self.view.namespace_of(pidfd.as_fd()) {
            Ok(ns) => ns,
            Err(e) => return self.view_failed("namespace of a caller", e),
        };
        self.keep_pidfd(tid, pidfd);
        // The request means something else to other files.
        let target = std::fs::read_link(format!("/proc/thread-self/fd/{}", fd.as_raw_fd()));
        if !target.is_ok_and(|t| t.as_os_str() == "anon_inode:[perf_event]") {
            return err(Errno::NOTTY);
        }
        let all = match self.as_caller(caps, || rawbpf::perf_query_bpf(fd.as_fd())) {
            Ok(ids) => ids,
            Err(e) => return err(e),
        };
        let ids_len = match ids_len {
            Ok(l) => l,
            Err(e) => return err(e),
        };
        if ids_len > rawbpf::BPF_TRACE_MAX_PROGS {
            return err(Errno::TOOBIG);
        }
        let mut visible = Vec::with_capacity(all.len());
        for id in all {
            match self.view.can_see(ns, ObjectKind::Prog, id) {
                Ok(true) => visible.push(id),
                Ok(false) => {}
                Err(e) => return self.view_failed("ownership of a tracepoint's program", e),
            }
        }
        let (cnt, ids, e) = attr::perf_query_reply(&visible, ids_len);
        let ids: Vec<u8> = ids.iter().flat_map(|i| i.to_ne_bytes()).collect();
        for (addr, bytes) in [
            (uquery.wrapping_add(4), cnt.to_ne_bytes().to_vec()),
            (uquery.wrapping_add(8), ids),
        ] {
            if bytes.is_empty() {
                continue;
            }
            if let Err(e) = mem::write_all(tid, addr, &bytes) {
                return err(e);
            }
        }
        match e {
            Some(e) => err(e),
            None => Outcome::Respond(Response::Value(0)),
        }
    }

    // ---- GET_NEXT_ID ---------------------------------------------------------------------

    fn next_id(&mut self, call: &Call, ns: NsId, kind: ObjectKind, start: u32) -> Outcome {
        let key = (ns, kind);
        let stale = match self.cache.get(&key) {
            None => true,
            Some((_, at)) => start == 0 || at.elapsed() > self.opts.cache_ttl,
        };
        if stale {
            let ids = match self.view.visible_ids(ns, kind) {
                Ok(ids) => ids,
                Err(e) => return self.view_failed("listing visible objects", e),
            };
            if self.cache.len() >= CACHE_MAX {
                self.cache.clear();
            }
            self.cache.insert(key, (ids, Instant::now()));
        }
        let next = self
            .cache
            .get(&key)
            .and_then(|(ids, _)| next_visible(ids, start));
        match next {
            None => err(Errno::NOENT),
            Some(id) => {
                match mem::write_all(call.tid, field(call, off::NEXT_ID), &id.to_ne_bytes()) {
                    Ok(()) => Outcome::Respond(Response::Value(0)),
                    Err(e) => err(e),
                }
            }
        }
    }

    // ---- GET_FD_BY_ID --------------------------------------------------------------------

    fn fd_by_id(
        &mut self,
        call: &Call,
        ns: NsId,
        kind: ObjectKind,
        id: u32,
        open_flags: u32,
        caller_syslog: bool,
    ) -> Outcome {
        match self.view.can_see(ns, kind, id) {
            Ok(true) => {}
            // The same answer as for an id that does not exist.
            Ok(false) => return err(Errno::NOENT),
            Err(e) => return self.view_failed("ownership of an object", e),
        }
        let mut a = call.attr.clone();
        if open_flags & BPF_F_TOKEN_FD != 0 {
            // The supervisor opens with its own rights; the caller's token fd means nothing here.
            a.set_u32(off::OPEN_FLAGS, open_flags & !BPF_F_TOKEN_FD);
            a.set_u32(off::TOKEN_FD, 0);
        }
        let opened = self.with_caps(caller_syslog.then_some(C::SYSLOG), || {
            rawbpf::sys_bpf_fd(call.cmd.raw(), a.supplied_mut())
        });
        match opened {
            Ok(fd) => self.inject(call.id, fd),
            Err(e) => err(e),
        }
    }

    /// Run `f` with `extra` added to the effective set (the thread's opener credentials).
    fn with_caps<T>(&self, extra: Option<C>, f: impl FnOnce() -> T) -> T {
        let Some(extra) = extra else {
            return f();
        };
        let mut raised = self.sets;
        raised.effective |= extra & raised.permitted;
        if caps::set_current_thread(raised).is_err() {
            // Without the extra rights: the narrower answer.
            return f();
        }
        let r = f();
        if caps::set_current_thread(self.sets).is_err() {
            self.poisoned.set(true);
        }
        r
    }

    fn inject(&self, id: u64, fd: OwnedFd) -> Outcome {
        // bpf fds are always close-on-exec.
        let send = self.opts.reply == ReplyMode::AddFdSend;
        let opts = AddFd {
            target_fd: None,
            cloexec: true,
            send,
        };
        match self.listener.add_fd(id, fd.as_fd(), opts) {
            Ok(_) if send => Outcome::Injected,
            Ok(newfd) => Outcome::Respond(Response::Value(i64::from(newfd))),
            Err(e) if e.errno == Errno::NOENT => Outcome::Abandoned,
            // EMFILE and the like: the call is still pending; fail it.
            Err(e) => err(e.errno),
        }
    }

    // ---- OBJ_GET -------------------------------------------------------------------------

    fn obj_get(
        &mut self,
        call: &Call,
        ns: NsId,
        path: &[u8],
        dir: Option<&OwnedFd>,
        borrowed: Borrowed<'_>,
        file_flags: u32,
    ) -> Outcome {
        let Some(home) = self.home.as_ref() else {
            return err(Errno::PERM);
        };
        let opened = {
            let mut ctx = match Context::enter(home, &borrowed, self.base, &self.poisoned) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("supervisor: borrowing a caller's context: {e}");
                    return err(Errno::PERM);
                }
            };
            let r = fds::open_path_at(
                dir.map(|d| d.as_fd()),
                Path::new(OsStr::from_bytes(path)),
                RESOLVE_NO_MAGICLINKS,
            )
            .and_then(|o| {
                let name = CString::new(o.as_raw_fd().to_string()).map_err(|_| Errno::INVAL)?;
                // Checks the pin's permission bits against the borrowed credentials.
                match rawbpf::obj_get_at(home.fd_dir.as_fd(), &name, file_flags) {
                    // Before Linux 6.5 there is no BPF_F_PATH_FD: the same lookup, relative
                    // to this thread's own working directory (restored below).
                    Err(Errno::INVAL) => {
                        thread::change_dir(home.fd_dir.as_fd()).map_err(|e| e.errno)?;
                        rawbpf::obj_get_relative(&name, file_flags)
                    }
                    r => r,
                }
            });
            if ctx.restore().is_err() {
                return err(Errno::PERM);
            }
            r
        };
        let fd = match opened {
            Ok(fd) => fd,
            Err(e) => return err(e),
        };
        let target = std::fs::read_link(format!("/proc/thread-self/fd/{}", fd.as_raw_fd()));
        let Some(kind) = target
            .ok()
            .and_then(|t| kind_of_link_target(&t.to_string_lossy()))
        else {
            return err(Errno::PERM);
        };
        let Some(id) = object_id(kind, fd.as_fd()) else {
            return err(Errno::PERM);
        };
        match self.view.can_see(ns, kind, id) {
            Ok(true) => self.inject(call.id, fd),
            // The pin exists, but its object belongs to a namespace the caller cannot see.
            Ok(false) => err(Errno::PERM),
            Err(e) => self.view_failed("ownership of a pinned object", e),
        }
    }

    // ---- PROG_QUERY ----------------------------------------------------------------------

    fn prog_query(
        &mut self,
        call: &Call,
        ns: NsId,
        q: ProgQuery,
        target: Option<OwnedFd>,
        netns: Option<OwnedFd>,
    ) -> Outcome {
        // Before Linux 6.6, BPF_PROG_QUERY wants CAP_NET_ADMIN itself (later CAP_SYS_ADMIN
        // will do); it is effective here only for the query.
        if caps::set_current_thread_effective(self.base | C::NET_ADMIN).is_err() {
            return err(Errno::PERM);
        }
        let result = self.prog_query_as_net_admin(call, &q, target.as_ref(), netns.as_ref());
        if caps::set_current_thread_effective(self.base).is_err() {
            self.poisoned.set(true);
            return err(Errno::PERM);
        }
        let Some(result) = result else {
            return err(Errno::PERM);
        };
        self.prog_query_answer(call, ns, q, result)
    }

    fn prog_query_as_net_admin(
        &self,
        call: &Call,
        q: &ProgQuery,
        target: Option<&OwnedFd>,
        netns: Option<&OwnedFd>,
    ) -> Option<Result<QueryAnswer, Errno>> {
        Some(match (target, netns) {
            (Some(t), _) => run_query(&call.attr, q, Some(t.as_raw_fd() as u32)),
            (None, Some(n)) => {
                let home = self.home.as_ref()?;
                if let Err(e) = thread::enter_net_ns(n) {
                    tracing::warn!("supervisor: {e}");
                    return None;
                }
                let r = run_query(&call.attr, q, None);
                if thread::enter_net_ns(&home.netns).is_err() {
                    self.poisoned.set(true);
                    return None;
                }
                r
            }
            (None, None) => return None,
        })
    }

    fn prog_query_answer(
        &mut self,
        call: &Call,
        ns: NsId,
        q: ProgQuery,
        result: Result<QueryAnswer, Errno>,
    ) -> Outcome {
        let answer = match result {
            Ok(a) => a,
            Err(e) => return err(e),
        };
        let mut visible = Vec::with_capacity(answer.entries.len());
        for e in answer.entries {
            let ok = self
                .view
                .can_see(ns, ObjectKind::Prog, e.prog_id)
                .and_then(|p| {
                    Ok(p && (e.link_id == 0
                        || self.view.can_see(ns, ObjectKind::Link, e.link_id)?))
                });
            match ok {
                Ok(true) => visible.push(e),
                Ok(false) => {}
                Err(v) => return self.view_failed("ownership of an attached program", v),
            }
        }
        let reply = query_reply(visible, q.prog_cnt, q.prog_ids != 0);
        let mut writes: Vec<(u64, Vec<u8>)> = vec![
            (
                field(call, off::Q_ATTACH_FLAGS),
                answer.attach_flags.to_ne_bytes().to_vec(),
            ),
            (
                field(call, off::Q_PROG_CNT),
                reply.total.to_ne_bytes().to_vec(),
            ),
        ];
        if call.attr.len >= off::Q_REVISION + 8 {
            writes.push((
                field(call, off::Q_REVISION),
                answer.revision.to_ne_bytes().to_vec(),
            ));
        }
        let column = |f: fn(&QueryEntry) -> u32| -> Vec<u8> {
            reply.copy.iter().flat_map(|e| f(e).to_ne_bytes()).collect()
        };
        if !reply.copy.is_empty() {
            writes.push((q.prog_ids, column(|e| e.prog_id)));
            if q.prog_attach_flags != 0 {
                writes.push((q.prog_attach_flags, column(|e| e.prog_flags)));
            }
            if q.link_ids != 0 {
                writes.push((q.link_ids, column(|e| e.link_id)));
            }
            if q.link_attach_flags != 0 {
                writes.push((q.link_attach_flags, column(|e| e.link_flags)));
            }
        }
        for (addr, bytes) in writes {
            if let Err(e) = mem::write_all(call.tid, addr, &bytes) {
                return err(e);
            }
        }
        match reply.error {
            Some(e) => err(e),
            None => Outcome::Respond(Response::Value(0)),
        }
    }

    // ---- TASK_FD_QUERY -------------------------------------------------------------------

    fn task_fd_query(&mut self, call: &Call, ns: NsId, q: TaskFdQuery, host_pid: u32) -> Outcome {
        let mut cap = 4096u32;
        let (a, name) = loop {
            let mut buf = vec![0u8; cap as usize];
            let mut a = call.attr.widened(off::T_BUF + 8);
            a.set_u32(off::T_PID, host_pid);
            a.set_u32(off::T_BUF_LEN, cap);
            a.set_u64(off::T_BUF, buf.as_mut_ptr() as u64);
            match rawbpf::sys_bpf(attr::TASK_FD_QUERY, a.supplied_mut()) {
                Ok(_) => {
                    let n = (a.u32_at(off::T_BUF_LEN) as usize).min(buf.len());
                    buf.truncate(n);
                    break (a, buf);
                }
                Err(Errno::NOSPC) if cap < NAME_MAX => {
                    cap = (a.u32_at(off::T_BUF_LEN).saturating_add(1)).clamp(cap * 2, NAME_MAX);
                }
                Err(e) => return err(e),
            }
        };
        let prog_id = a.u32_at(off::T_PROG_ID);
        match self.view.can_see(ns, ObjectKind::Prog, prog_id) {
            Ok(true) => {}
            // As if no program were attached to that event.
            Ok(false) => return err(Errno::NOENT),
            Err(e) => return self.view_failed("ownership of a perf event's program", e),
        }
        let (bytes, e) = task_fd_name_reply(&name, q.buf_len, q.buf);
        let writes: [(u64, Vec<u8>); 6] = [
            (q.buf, bytes),
            (
                field(call, off::T_BUF_LEN),
                (name.len() as u32).to_ne_bytes().to_vec(),
            ),
            (field(call, off::T_PROG_ID), prog_id.to_ne_bytes().to_vec()),
            (
                field(call, off::T_FD_TYPE),
                a.u32_at(off::T_FD_TYPE).to_ne_bytes().to_vec(),
            ),
            (
                field(call, off::T_PROBE_OFFSET),
                a.u64_at(off::T_PROBE_OFFSET).to_ne_bytes().to_vec(),
            ),
            (
                field(call, off::T_PROBE_ADDR),
                a.u64_at(off::T_PROBE_ADDR).to_ne_bytes().to_vec(),
            ),
        ];
        for (addr, bytes) in writes {
            if let Err(e) = mem::write_all(call.tid, addr, &bytes) {
                return err(e);
            }
        }
        match e {
            Some(e) => err(e),
            None => Outcome::Respond(Response::Value(0)),
        }
    }

    /// The pid, in our pid namespace, of the task a `BPF_TASK_FD_QUERY` asks about, if the
    /// caller may ask: about its own process, or about any with `CAP_SYS_ADMIN` in the
    /// initial user namespace (the kernel's own rule; bpfnsd runs the query with its own).
    /// `EPERM` otherwise, also for a pid that does not exist, so that the answer says nothing
    /// about other processes.
    fn task_fd_query_target(&self, call: &Call, pid: u32) -> Result<u32, Errno> {
        let admin =
            call.eff.contains(C::SYS_ADMIN) && self.in_own_userns(call.pidfd.as_fd(), call.tid);
        let found = self.host_pid(call.tid, pid);
        if admin {
            return found;
        }
        let own = bpfns_sys::process::thread_group_of(call.tid).map_err(|e| e.errno)?;
        let target = found
            .ok()
            .and_then(|h| bpfns_sys::process::thread_group_of(h as i32).ok());
        match target {
            Some(t) if attr::task_fd_query_allowed(own as u32, t as u32, false) => found,
            _ => Err(Errno::PERM),
        }
    }

    /// The pid, in our pid namespace, of the task the caller calls `pid` in its own.
    fn host_pid(&self, tid: i32, pid: u32) -> Result<u32, Errno> {
        let caller_ns = ns_ident(Path::new(&format!("/proc/{tid}/ns/pid"))).ok_or(Errno::SRCH)?;
        if Some(caller_ns) == self.own_pidns {
            return Ok(pid);
        }
        let status =
            std::fs::read_to_string(format!("/proc/{tid}/status")).map_err(|_| Errno::SRCH)?;
        let depth = attr::nspids_from_status(&status)
            .map(|v| v.len())
            .ok_or(Errno::SRCH)?;
        // Processes (not threads) whose innermost pid namespace is the caller's.
        let rd = std::fs::read_dir("/proc").map_err(|_| Errno::SRCH)?;
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(st) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
                continue;
            };
            let Some(nspids) = attr::nspids_from_status(&st) else {
                continue;
            };
            if nspids.len() == depth
                && nspids.last() == Some(&pid)
                && ns_ident(Path::new(&format!("/proc/{p}/ns/pid"))) == Some(caller_ns)
            {
                return Ok(p);
            }
        }
        Err(Errno::SRCH)
    }
}

/// The address of the field at `off` in the caller's attr (wrapping like a C pointer: an
/// attr at the very top of the address space is not writable anyway, and the write fails
/// with `EFAULT`).
fn field(call: &Call, off: usize) -> u64 {
    call.attr_ptr.wrapping_add(off as u64)
}

/// The caller's context an `OBJ_GET` borrows.
struct Borrowed<'a> {
    root: BorrowedFd<'a>,
    cwd: BorrowedFd<'a>,
    fsuid: u32,
    fsgid: u32,
    groups: &'a [u32],
    caps: C,
}

/// The thread inside a caller's root, cwd and fs credentials; [`Context::restore`] (or drop)
/// brings it home. If coming home fails, the worker is poisoned and stops serving.
struct Context<'a> {
    home: &'a Home,
    base: C,
    poisoned: &'a Cell<bool>,
    active: bool,
}

impl<'a> Context<'a> {
    fn enter(
        home: &'a Home,
        b: &Borrowed<'_>,
        base: C,
        poisoned: &'a Cell<bool>,
    ) -> Result<Self, bpfns_sys::SysError> {
        let ctx = Context {
            home,
            base,
            poisoned,
            active: true,
        };
        thread::enter_root(b.root)?;
        thread::change_dir(b.cwd)?;
        thread::set_groups(b.groups)?;
        thread::set_fsgid(b.fsgid)?;
        thread::set_fsuid(b.fsuid)?;
        caps::set_current_thread_effective(b.caps)?;
        Ok(ctx)
    }

    fn restore(&mut self) -> Result<(), bpfns_sys::SysError> {
        if !self.active {
            return Ok(());
        }
        self.active = false;
        let h = self.home;
        let r = (|| {
            caps::set_current_thread_effective(self.base)?;
            thread::set_groups(&h.groups)?;
            thread::set_fsgid(h.fsgid)?;
            thread::set_fsuid(h.fsuid)?;
            // Going back to fsuid 0 re-raised the filesystem capabilities: reset exactly.
            caps::set_current_thread_effective(self.base)?;
            thread::enter_root(h.root.as_fd())?;
            thread::change_dir(h.cwd.as_fd())
        })();
        if let Err(e) = &r {
            tracing::error!("supervisor: restoring its own context: {e}");
            self.poisoned.set(true);
        }
        r
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}

/// The id of the object behind a bpf fd of `kind`.
fn object_id(kind: ObjectKind, fd: BorrowedFd<'_>) -> Option<u32> {
    use bpfns_sys::bpf as b;
    match kind {
        ObjectKind::Map => b::info::<b::bpf_map_info>(fd).ok().map(|i| i.id),
        ObjectKind::Prog => b::info::<b::bpf_prog_info>(fd).ok().map(|i| i.id),
        ObjectKind::Link => b::info::<b::bpf_link_info>(fd).ok().map(|i| i.id),
        ObjectKind::Btf => b::info::<b::bpf_btf_info>(fd).ok().map(|i| i.id),
    }
}

/// The id of the program behind `fd`, if it is one.
fn prog_id_of(fd: BorrowedFd<'_>) -> Option<u32> {
    object_of(fd).and_then(|(k, id)| (k == ObjectKind::Prog).then_some(id))
}

/// The kind and id of the bpf object behind `fd`, if it is one.
fn object_of(fd: BorrowedFd<'_>) -> Option<(ObjectKind, u32)> {
    let target = std::fs::read_link(format!("/proc/thread-self/fd/{}", fd.as_raw_fd())).ok()?;
    let kind = kind_of_link_target(&target.to_string_lossy())?;
    object_id(kind, fd).map(|id| (kind, id))
}

/// (link id, id of the program it runs or 0) of the link behind `fd`, if it is one.
fn link_ids_of(fd: BorrowedFd<'_>) -> Option<(u32, u32)> {
    use bpfns_sys::bpf as b;
    match object_of(fd)? {
        (ObjectKind::Link, _) => b::info::<b::bpf_link_info>(fd)
            .ok()
            .map(|i| (i.id, i.prog_id)),
        _ => None,
    }
}

/// A hook's state from a `BPF_PROG_QUERY` answer in `q` and the id arrays it filled.
fn hook_state(q: &Attr, ids: &[u32], links: &[u32]) -> HookState {
    let n = (q.u32_at(off::Q_PROG_CNT) as usize).min(ids.len());
    HookState {
        flags: q.u32_at(off::Q_ATTACH_FLAGS),
        revision: q.u64_at(off::Q_REVISION),
        entries: (0..n)
            .map(|i| QueryEntry {
                prog_id: ids[i],
                link_id: links.get(i).copied().unwrap_or(0),
                ..Default::default()
            })
            .collect(),
    }
}

/// A `BPF_PROG_QUERY` answer, all of it.
struct QueryAnswer {
    attach_flags: u32,
    revision: u64,
    entries: Vec<QueryEntry>,
}

/// Run the caller's query here (with `target` replacing its target fd, or its ifindex kept),
/// into buffers of our own, growing them until everything fits.
fn run_query(caller: &Attr, q: &ProgQuery, target: Option<u32>) -> Result<QueryAnswer, Errno> {
    let mut cnt = q.prog_cnt.clamp(16, QUERY_MAX);
    for _ in 0..4 {
        let n = cnt as usize;
        let mut ids = vec![0u32; n];
        let mut pflags = vec![0u32; n];
        let mut links = vec![0u32; n];
        let mut lflags = vec![0u32; n];
        // At least up to prog_cnt, so that a count-only query still returns the ids we filter.
        let mut a = caller.widened(off::Q_PROG_CNT + 4);
        if let Some(t) = target {
            a.set_u32(off::Q_TARGET, t);
        }
        a.set_u64(off::Q_PROG_IDS, ids.as_mut_ptr() as u64);
        a.set_u32(off::Q_PROG_CNT, cnt);
        if q.prog_attach_flags != 0 {
            a.set_u64(off::Q_PROG_ATTACH_FLAGS, pflags.as_mut_ptr() as u64);
        }
        if q.link_ids != 0 {
            a.set_u64(off::Q_LINK_IDS, links.as_mut_ptr() as u64);
        }
        if q.link_attach_flags != 0 {
            a.set_u64(off::Q_LINK_ATTACH_FLAGS, lflags.as_mut_ptr() as u64);
        }
        match rawbpf::sys_bpf(attr::PROG_QUERY, a.supplied_mut()) {
            Ok(_) => {
                let total = (a.u32_at(off::Q_PROG_CNT) as usize).min(n);
                let entries = (0..total)
                    .map(|i| QueryEntry {
                        prog_id: ids[i],
                        prog_flags: pflags[i],
                        link_id: links[i],
                        link_flags: lflags[i],
                    })
                    .collect();
                return Ok(QueryAnswer {
                    attach_flags: a.u32_at(off::Q_ATTACH_FLAGS),
                    revision: if a.len >= off::Q_REVISION + 8 {
                        a.u64_at(off::Q_REVISION)
                    } else {
                        0
                    },
                    entries,
                });
            }
            Err(Errno::NOSPC) => {
                let want = a.u32_at(off::Q_PROG_CNT);
                if want > QUERY_MAX {
                    return Err(Errno::NOSPC);
                }
                cnt = want.max(cnt.saturating_mul(2)).min(QUERY_MAX);
            }
            Err(e) => return Err(e),
        }
    }
    Err(Errno::NOSPC)
}
