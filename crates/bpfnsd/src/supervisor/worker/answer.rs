//! One answer per trapped command: a function of the call, the caller's namespace, the view
//! of what it may see and the caller ([`Caller`]: its memory and fds), with the calls the
//! supervisor makes in the kernel itself behind [`Ops`]. Nothing here touches the listener:
//! the loop (`worker.rs`) injects, answers and counts.
//!
//! Steps, as the loop takes them: [`request`] (parse and check the attr), [`prepare`] (read
//! everything else the answer needs from the caller, before the validity check), then, with
//! the caller's namespace found after it, [`answer`].

mod attach;
mod btf;
#[cfg(test)]
mod fake;
mod ids;
mod link;
mod load;
mod map;
mod obj_get;
mod query;

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use bpfns_model::{NsId, ObjectKind};
use bpfns_sys::caps::CapabilitySet as C;
use bpfns_sys::Errno;

use super::caller::{Call, Caller};
use crate::supervisor::attr::{
    self, parse, query_target_is_ifindex, AttachFds, AttachReq, Attr, Hook, HookState, ProgQuery,
    QueryEntry, Request, TokenInfo,
};
use crate::supervisor::{View, ViewError};

pub(super) use load::LoadPrep;
pub(super) use map::MapPrep;
pub(super) use obj_get::Pin;
pub(super) use query::{perf_prepare, perf_query};

/// Upper bound on a PROG_QUERY answer (programs attached at one hook).
pub(super) const QUERY_MAX: u32 = 1 << 16;
/// Upper bound on a TASK_FD_QUERY name.
pub(super) const NAME_MAX: u32 = 1 << 16;
/// Cached visible-id lists per thread.
const CACHE_MAX: usize = 64;
const PATH_MAX: usize = 4096;

/// An fd number no process of the daemon has: stands for a caller's fd that does not exist,
/// so the kernel answers the call as it would have answered the caller (`EBADF`, or for a
/// legacy cgroup detach, "no program given").
pub(super) const NO_FD: u32 = u32::MAX;

/// What a trapped call is answered with.
#[derive(Debug)]
pub(super) enum Answer {
    Error(Errno),
    Value(i64),
    /// This fd, injected into the caller (`ADDFD`); its number is the answer.
    Inject(OwnedFd),
    /// Refused because of what the caller may see (answered with this errno, and reported
    /// as a denial, `why` in words).
    Denied {
        errno: Errno,
        why: &'static str,
    },
    /// Let the kernel run the call with the caller's credentials.
    Continue,
    /// The caller gave up meanwhile: nothing to answer.
    Abandoned,
    /// The view failed: fail closed (`EPERM`; the loop logs and counts it).
    Internal {
        what: &'static str,
        error: ViewError,
    },
}

impl Answer {
    /// The answer when the view could not answer: `ESRCH` for a caller that is gone, else
    /// fail closed.
    pub(super) fn view_failed(what: &'static str, e: ViewError) -> Answer {
        match e {
            ViewError::Gone => Answer::Error(Errno::SRCH),
            error => Answer::Internal { what, error },
        }
    }

    fn of(r: Result<i64, Errno>) -> Answer {
        match r {
            Ok(v) => Answer::Value(v),
            Err(e) => Answer::Error(e),
        }
    }
}

/// Where a `BPF_PROG_QUERY` runs: on bpfnsd's copy of the caller's target fd, or in the
/// caller's network namespace (tcx/netkit ifindexes).
#[derive(Debug, Clone, Copy)]
pub(super) enum QueryTarget<'a> {
    Fd(BorrowedFd<'a>),
    NetNs(BorrowedFd<'a>),
}

/// A `BPF_PROG_QUERY` answer, all of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct QueryAnswer {
    pub attach_flags: u32,
    pub revision: u64,
    pub entries: Vec<QueryEntry>,
}

/// The calls the supervisor makes in the kernel itself, each with the credentials it needs
/// (borrowed through [`crate::creds`]; a failure to come back answers `EPERM`).
pub(super) trait Ops {
    /// Whether the thread has its own fs context and network namespace to come back to
    /// (without, what would borrow them is refused).
    fn private_context(&self) -> bool;
    /// `cmd` (`*_GET_FD_BY_ID`) with the thread's own rights, and `CAP_SYSLOG` where `syslog`.
    fn open_by_id(&self, cmd: u32, attr: &mut Attr, syslog: bool) -> Result<OwnedFd, Errno>;
    /// `BPF_OBJ_GET` of `pin`, resolved as the caller.
    fn open_pin(&self, pin: &Pin, file_flags: u32) -> Result<OwnedFd, Errno>;
    /// The kind and id of the bpf object behind `fd`, if it is one.
    fn object_of(&self, fd: BorrowedFd<'_>) -> Option<(ObjectKind, u32)>;
    /// (link id, id of the program it runs or 0) of the link behind `fd`, if it is one.
    fn link_ids_of(&self, fd: BorrowedFd<'_>) -> Option<(u32, u32)>;
    /// The caller's `BPF_PROG_QUERY`, run at `target` into buffers of bpfnsd's.
    fn prog_query(
        &self,
        attr: &Attr,
        q: &ProgQuery,
        target: QueryTarget<'_>,
    ) -> Result<QueryAnswer, Errno>;
    /// The caller's `BPF_TASK_FD_QUERY` about `host_pid`: the kernel's attr and the name.
    fn task_fd_query(&self, attr: &Attr, host_pid: u32) -> Result<(Attr, Vec<u8>), Errno>;
    /// Whether `fd` is a perf event.
    fn is_perf_event(&self, fd: BorrowedFd<'_>) -> bool;
    /// `PERF_EVENT_IOC_QUERY_BPF` on `fd` with `caps`: every program id.
    fn perf_query(&self, fd: BorrowedFd<'_>, caps: C) -> Result<Vec<u32>, Errno>;
    /// Run `f` in the network namespace `ns` (where given), then come back.
    fn in_net_ns(&self, ns: Option<BorrowedFd<'_>>, f: &mut dyn FnMut() -> Answer) -> Answer;
    /// What is attached at the hook of `a` now (`target`: bpfnsd's copy of the caller's).
    fn query_hook(
        &self,
        hook: Hook,
        a: &AttachReq,
        target: Option<BorrowedFd<'_>>,
    ) -> Result<HookState, Errno>;
    /// bpf(`cmd`, `attr`) with exactly `caps` effective.
    fn bpf_as(&self, caps: C, cmd: u32, attr: &mut Attr) -> Result<i64, Errno>;
    /// The same, for a command that returns a new fd.
    fn bpf_fd_as(&self, caps: C, cmd: u32, attr: &mut Attr) -> Result<OwnedFd, Errno>;
    /// The `BPF_PROG_LOAD` of `p`, with the load credentials.
    fn load(&self, p: &mut LoadPrep) -> Result<OwnedFd, Errno>;
    /// The `BPF_MAP_CREATE` of `p`, made by a child process in the caller's memory cgroup with
    /// `p.caps`, which writes `tag` for itself first (see [`View::root_tag`]).
    fn create_map(
        &self,
        p: &MapPrep,
        tag: Option<(BorrowedFd<'_>, [u8; 8])>,
    ) -> Result<OwnedFd, Errno>;
    /// What the BPF token behind `fd` delegates; `None` if it is not a token.
    fn token_info(&self, fd: BorrowedFd<'_>) -> Option<TokenInfo>;
    /// Whether a program bpfnsd loads may call the vmlinux kfunc with BTF id `btf_id`.
    fn kfunc_allowed(&self, btf_id: u32) -> bool;
    /// Whether the cgroup behind `target` (bpfnsd's copy of a caller's fd) is the cgroup v2
    /// cgroup `bound` (a path below the cgroup2 root) or below it.
    fn cgroup_within(
        &self,
        target: BorrowedFd<'_>,
        bound: &str,
    ) -> Result<bpfns_sys::cgroup::Ancestry, Errno>;
}

/// Everything an answer works with.
pub(super) struct Env<'a> {
    pub call: &'a Call,
    /// The caller's namespace, found after the validity check.
    pub ns: NsId,
    pub view: &'a dyn View,
    pub caller: &'a dyn Caller,
    pub ops: &'a dyn Ops,
}

impl Env<'_> {
    /// Write `writes` into the caller, in order; the first failure is the answer.
    fn write_all(&self, writes: &[(u64, Vec<u8>)]) -> Result<(), Errno> {
        for (addr, bytes) in writes {
            self.caller.write(*addr, bytes)?;
        }
        Ok(())
    }
}

/// Visible-id lists per (namespace, kind), reused within one `GET_NEXT_ID` walk.
pub(super) struct IdCache {
    lists: HashMap<(NsId, ObjectKind), (Vec<u32>, Instant)>,
    ttl: Duration,
}

impl IdCache {
    pub fn new(ttl: Duration) -> Self {
        IdCache {
            lists: HashMap::new(),
            ttl,
        }
    }
}

/// The request of `call`, if the caller may make it at all.
pub(super) fn request(call: &Call) -> Result<Request, Errno> {
    let req = parse(call.cmd, &call.attr)?;
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
        | Request::LinkCreate(_)
        | Request::LinkUpdate(_)
        | Request::LinkDetach { .. }
        | Request::MapCreate { .. }
        | Request::BtfLoad(_) => true,
    };
    if allowed {
        Ok(req)
    } else {
        Err(Errno::PERM)
    }
}

/// For a caller in the root namespace (untagged, under the filter): what the kernel would
/// allow it, i.e. `CAP_SYS_ADMIN` (or, for queries, `CAP_NET_ADMIN`) in the initial user
/// namespace. Seeing everything must not come from holding `CAP_BPF` alone.
pub(super) fn root_may(caller: &dyn Caller, req: &Request) -> bool {
    let need = match req {
        Request::ObjGet { .. }
        | Request::ProgLoad { .. }
        | Request::Attach(_)
        | Request::Detach(_)
        | Request::LinkCreate(_)
        | Request::LinkUpdate(_)
        | Request::LinkDetach { .. }
        | Request::MapCreate { .. }
        | Request::BtfLoad(_) => return true,
        Request::ProgQuery(_) => C::SYS_ADMIN | C::NET_ADMIN,
        _ => C::SYS_ADMIN,
    };
    caller.caps().intersects(need) && caller.caps_here().intersects(need)
}

/// What a request needs beyond the attr, gathered before the validity check.
pub(super) enum Prepared {
    Nothing,
    FdById {
        syslog: bool,
    },
    ObjGet(Pin),
    ProgQuery {
        target: Option<OwnedFd>,
        netns: Option<OwnedFd>,
    },
    TaskFdQuery {
        host_pid: u32,
    },
    /// `BPF_PROG_LOAD` the supervisor makes itself (`None`: it lets the kernel answer, or
    /// refuses).
    Load(Option<Box<LoadPrep>>),
    /// `BPF_MAP_CREATE` the supervisor makes itself (`None`: it lets the kernel answer).
    Map(Option<Box<MapPrep>>),
    /// `BPF_BTF_LOAD` the supervisor makes itself (`None`: it lets the kernel answer).
    Btf(Option<Box<btf::BtfPrep>>),
    /// `BPF_PROG_ATTACH` / `BPF_PROG_DETACH`: copies of the caller's fds, its network
    /// namespace where the hook is in it, and the capabilities to act with.
    Attach {
        hook: Hook,
        fds: CallerFds,
        netns: Option<OwnedFd>,
        caps: C,
    },
    /// `BPF_LINK_CREATE` the supervisor makes itself (`None`: it lets the kernel answer, or
    /// refuses).
    LinkCreate(Option<Box<link::LinkPrep>>),
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
#[derive(Debug, Default)]
pub(super) struct CallerFds {
    pub target: Option<OwnedFd>,
    pub prog: Option<OwnedFd>,
    pub replace: Option<OwnedFd>,
    pub relative: Option<OwnedFd>,
}

/// Gather what `req` needs from the caller (before the validity check).
pub(super) fn prepare(
    call: &Call,
    req: &Request,
    caller: &dyn Caller,
    view: &dyn View,
    ops: &dyn Ops,
) -> Result<Prepared, Errno> {
    match req {
        Request::NextId { .. } => Ok(Prepared::Nothing),
        Request::MapCreate(r) => Ok(Prepared::Map(map::prepare(call, r, caller, view, ops)?)),
        Request::BtfLoad(r) => Ok(Prepared::Btf(btf::prepare(call, r, caller, view, ops)?)),
        // Of the fds opened here, only a program's lends its opener's CAP_SYSLOG to what it
        // reveals (`bpf_dump_raw_ok(file->f_cred)`: JIT image, addresses); map, link and BTF
        // info read no capability of the fd. Raising it costs a `capset` pair, whose
        // `commit_creds` shows as a 2-3× slower answer (docs/benchmarks.md).
        Request::FdById { kind, .. } => Ok(Prepared::FdById {
            syslog: *kind == ObjectKind::Prog
                && call.eff.contains(C::SYSLOG)
                && caller.caps_here().contains(C::SYSLOG),
        }),
        Request::ObjGet {
            pathname, path_fd, ..
        } => {
            if !ops.private_context() {
                return Err(Errno::PERM);
            }
            obj_get::prepare(caller, *pathname, *path_fd).map(Prepared::ObjGet)
        }
        Request::ProgQuery(q) => {
            if query_target_is_ifindex(q.attach_type) {
                if !ops.private_context() {
                    return Err(Errno::PERM);
                }
                Ok(Prepared::ProgQuery {
                    target: None,
                    netns: Some(caller.net_ns()?),
                })
            } else {
                let target = i32::try_from(q.target).map_err(|_| Errno::BADF)?;
                let target = caller.fd(target as u32)?.ok_or(Errno::BADF)?;
                Ok(Prepared::ProgQuery {
                    target: Some(target),
                    netns: None,
                })
            }
        }
        Request::TaskFdQuery(q) => Ok(Prepared::TaskFdQuery {
            host_pid: caller.task_fd_query_target(q.pid)?,
        }),
        Request::ProgLoad(r) => Ok(Prepared::Load(load::prepare(call, r, caller, view, ops)?)),
        Request::Attach(a) | Request::Detach(a) => {
            let detach = matches!(req, Request::Detach(_));
            // Attach types PROG_ATTACH does not take: the kernel's EINVAL.
            let hook = attr::hook_of(a.attach_type).ok_or(Errno::INVAL)?;
            let which: AttachFds = attr::attach_fds(detach, hook, a);
            let get = |wanted: bool, fd: u32| -> Result<Option<OwnedFd>, Errno> {
                if wanted {
                    caller.fd(fd)
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
                    if !ops.private_context() {
                        return Err(Errno::PERM);
                    }
                    Some(caller.net_ns()?)
                }
                _ => None,
            };
            Ok(Prepared::Attach {
                hook,
                fds,
                netns,
                caps: caller.caps_here(),
            })
        }
        Request::LinkCreate(l) => Ok(Prepared::LinkCreate(link::prepare(
            call, l, caller, view, ops,
        )?)),
        Request::LinkUpdate(u) => {
            use bpfns_sys::rawbpf::uapi::BPF_F_REPLACE;
            Ok(Prepared::Link {
                link: caller.fd(u.link_fd)?,
                new: caller.fd(u.new_fd)?,
                old: if u.flags & BPF_F_REPLACE != 0 {
                    caller.fd(u.old_fd)?
                } else {
                    None
                },
                caps: caller.caps_here(),
            })
        }
        Request::LinkDetach { link_fd } => Ok(Prepared::Link {
            link: caller.fd(*link_fd)?,
            new: None,
            old: None,
            caps: caller.caps_here(),
        }),
    }
}

/// The answer to `req`, prepared as `prep`, for a caller of namespace `env.ns`.
pub(super) fn answer(env: &Env<'_>, req: Request, prep: Prepared, ids: &mut IdCache) -> Answer {
    match (req, prep) {
        (Request::NextId { kind, start_id }, _) => ids::next_id(env, kind, start_id, ids),
        (
            Request::FdById {
                kind,
                id,
                open_flags,
            },
            Prepared::FdById { syslog },
        ) => ids::fd_by_id(env, kind, id, open_flags, syslog),
        (Request::ObjGet { file_flags, .. }, Prepared::ObjGet(pin)) => {
            obj_get::obj_get(env, &pin, file_flags)
        }
        (Request::ProgQuery(q), Prepared::ProgQuery { target, netns }) => {
            query::prog_query(env, q, target.as_ref(), netns.as_ref())
        }
        (Request::TaskFdQuery(q), Prepared::TaskFdQuery { host_pid }) => {
            query::task_fd_query(env, q, host_pid)
        }
        (Request::ProgLoad(r), Prepared::Load(prep)) => load::prog_load(env, r, prep),
        (
            Request::Attach(a),
            Prepared::Attach {
                hook,
                fds,
                netns,
                caps,
            },
        ) => attach::attach(env, false, hook, a, &fds, netns.as_ref(), caps),
        (
            Request::Detach(a),
            Prepared::Attach {
                hook,
                fds,
                netns,
                caps,
            },
        ) => attach::attach(env, true, hook, a, &fds, netns.as_ref(), caps),
        (Request::LinkCreate(l), Prepared::LinkCreate(prep)) => link::link_create(env, l, prep),
        (
            Request::LinkUpdate(u),
            Prepared::Link {
                link,
                new,
                old,
                caps,
            },
        ) => attach::link_update(env, u, link, new, old, caps),
        (Request::LinkDetach { .. }, Prepared::Link { link, caps, .. }) => {
            attach::link_detach(env, link, caps)
        }
        (Request::MapCreate(r), Prepared::Map(prep)) => map::map_create(env, &r, prep),
        (Request::BtfLoad(r), Prepared::Btf(prep)) => btf::btf_load(env, &r, prep),
        _ => Answer::Error(Errno::PERM),
    }
}

/// The ownership record of an object bpfnsd is about to make for a caller of `env.ns`,
/// reserved within the quotas (of the namespace and its ancestors) before anything is made,
/// and given back when dropped unless [`Reservation::record`] wrote it.
struct Reservation<'e> {
    env: &'e Env<'e>,
    kind: ObjectKind,
    held: bool,
}

impl<'e> Reservation<'e> {
    /// Reserve, or the answer: `EDQUOT` over a limit (logged with the fix), the view's
    /// failure.
    fn take(env: &'e Env<'e>, kind: ObjectKind) -> Result<Self, Answer> {
        match env.view.reserve_record(env.ns, kind) {
            Ok(Ok(())) => Ok(Reservation {
                env,
                kind,
                held: true,
            }),
            Ok(Err(why)) => {
                tracing::warn!(
                    tid = env.call.tid,
                    namespace = %env.ns,
                    "refused {}: {why}; fix: close objects the namespace no longer needs, or \
                     give it larger limits (bpfns ns quota PATH --max-objects N --{} N)",
                    env.call.cmd.name(),
                    bpfns_kernel::kernel::kind_flag(kind).replace('_', "-"),
                );
                Err(Answer::Error(why.errno()))
            }
            Err(e) => Err(Answer::view_failed("reserving an ownership record", e)),
        }
    }

    /// Record the new object behind `fd` as the namespace's, then inject it: recorded before
    /// the member holds it, so that the kernel side and every later look find it the
    /// namespace's (a new object's id has no record). The member's call returning it is the
    /// kernel side's cue for `object_created`.
    fn record(mut self, fd: OwnedFd) -> Answer {
        let (env, kind) = (self.env, self.kind);
        let Some(id) = env
            .ops
            .object_of(fd.as_fd())
            .and_then(|(k, id)| (k == kind).then_some(id))
        else {
            return Answer::Error(Errno::PERM);
        };
        match env.view.record_new(env.ns, kind, id) {
            Ok(true) => {
                self.held = false;
                tracing::debug!(tid = env.call.tid, namespace = %env.ns, %kind, id, "made for a member");
                Answer::Inject(fd)
            }
            Ok(false) => {
                tracing::error!(
                    namespace = %env.ns,
                    %kind,
                    id,
                    "supervisor: an object just made already has an ownership record"
                );
                Answer::Error(Errno::PERM)
            }
            Err(e) => Answer::view_failed("recording a new object's owner", e),
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.held {
            if let Err(e) = self.env.view.release_record(self.env.ns, self.kind) {
                tracing::warn!("supervisor: giving back an ownership record: {e}");
            }
        }
    }
}

/// A verifier log and its `log_true_size` (at `true_size_at` in the attr), as the kernel would
/// have written them to the caller: the log up to its NUL where the kernel wrote one, the size
/// where the caller's attr has room for it.
fn write_back_log(
    env: &Env<'_>,
    log_buf: u64,
    log: &[u8],
    true_size: u32,
    true_size_at: usize,
) -> Result<(), Errno> {
    let call = env.call;
    if !log.is_empty() && (true_size > 0 || log[0] != 0) {
        let end = log
            .iter()
            .position(|&b| b == 0)
            .map_or(log.len(), |n| n + 1);
        env.caller.write_large(log_buf, &log[..end])?;
    }
    if call.attr.len >= true_size_at + 4 {
        env.caller
            .write(call.field(true_size_at), &true_size.to_ne_bytes())?;
    }
    Ok(())
}

/// What follows the attr bpfnsd knows must be zero where bpfnsd makes the call itself: a
/// kernel that knew more fields would read them, bpfnsd cannot pass them on (`E2BIG`, as an
/// older kernel answers).
fn zero_tail(call: &Call, caller: &dyn Caller) -> Result<(), Errno> {
    use bpfns_sys::rawbpf::ATTR_SIZE;
    if call.attr_size > ATTR_SIZE {
        let mut tail = vec![0u8; call.attr_size - ATTR_SIZE];
        caller.read(call.attr_ptr.wrapping_add(ATTR_SIZE as u64), &mut tail)?;
        if tail.iter().any(|&b| b != 0) {
            return Err(Errno::TOOBIG);
        }
    }
    Ok(())
}

/// What a call names, for a report of its denial: the object of a `*_GET_FD_BY_ID`, the
/// path of an `OBJ_GET`.
pub(super) fn target(
    req: &Request,
    prep: &Prepared,
) -> (Option<(ObjectKind, u32)>, Option<String>) {
    match (req, prep) {
        (Request::FdById { kind, id, .. }, _) => (Some((*kind, *id)), None),
        (_, Prepared::ObjGet(pin)) => (None, Some(String::from_utf8_lossy(&pin.path).into_owned())),
        _ => (None, None),
    }
}

/// The id of the program behind `fd`, if it is one.
fn prog_id_of(ops: &dyn Ops, fd: BorrowedFd<'_>) -> Option<u32> {
    ops.object_of(fd)
        .and_then(|(k, id)| (k == ObjectKind::Prog).then_some(id))
}

#[cfg(test)]
mod tests {
    use super::fake::*;
    use super::*;
    use crate::supervisor::attr::{off, Command, ATTR_SIZE};

    fn prog_query(target: u32) -> ProgQuery {
        ProgQuery {
            target,
            attach_type: 0,
            query_flags: 0,
            prog_ids: 0,
            prog_cnt: 0,
            prog_attach_flags: 0,
            link_ids: 0,
            link_attach_flags: 0,
        }
    }

    #[test]
    fn malformed_attrs_are_refused_as_the_kernel_does() {
        // Garbage past GET_NEXT_ID's last field.
        let mut a = Attr::zeroed(ATTR_SIZE);
        a.set_u32(off::OPEN_FLAGS, 1);
        let c = call(Command::NextId(ObjectKind::Map), a, C::BPF);
        assert_eq!(request(&c).unwrap_err(), Errno::INVAL);
        // A start id the kernel refuses.
        let mut a = Attr::zeroed(ATTR_SIZE);
        a.set_u32(0, i32::MAX as u32);
        let c = call(Command::NextId(ObjectKind::Map), a, C::BPF);
        assert_eq!(request(&c).unwrap_err(), Errno::INVAL);
    }

    #[test]
    fn malformed_attrs_of_every_answered_command_are_einval() {
        let with = |fields: &[(usize, u32)]| {
            let mut a = Attr::zeroed(ATTR_SIZE);
            for &(o, v) in fields {
                a.set_u32(o, v);
            }
            a
        };
        let cases = [
            // An open flag a map does not take; any flag but a token's for BTF.
            (
                Command::FdById(ObjectKind::Map),
                with(&[(off::OPEN_FLAGS, 1)]),
            ),
            (
                Command::FdById(ObjectKind::Btf),
                with(&[(off::OPEN_FLAGS, 1 << 3)]),
            ),
            // A path fd without BPF_F_PATH_FD; an fd where none belongs.
            (Command::ObjGet, with(&[(off::PATH_FD, 3)])),
            (Command::ObjGet, with(&[(off::BPF_FD, 3)])),
            // A query flag the kernel does not know.
            (Command::ProgQuery, with(&[(off::Q_QUERY_FLAGS, 1 << 7)])),
            // TASK_FD_QUERY takes no flags.
            (Command::TaskFdQuery, with(&[(off::T_FLAGS, 1)])),
        ];
        for (cmd, a) in cases {
            let c = call(cmd, a, C::SYS_ADMIN);
            assert_eq!(request(&c).err(), Some(Errno::INVAL), "{}", cmd.name());
        }
    }

    #[test]
    fn listing_needs_bpf_or_sys_admin_and_queries_net_admin_will_do() {
        let a = Attr::zeroed(ATTR_SIZE);
        let next = Command::NextId(ObjectKind::Prog);
        assert_eq!(
            request(&call(next, a.clone(), C::NET_ADMIN)).unwrap_err(),
            Errno::PERM
        );
        assert!(request(&call(next, a.clone(), C::BPF)).is_ok());
        assert!(request(&call(next, a.clone(), C::SYS_ADMIN)).is_ok());
        let mut q = Attr::zeroed(ATTR_SIZE);
        q.set_u32(off::Q_TARGET, 3);
        assert!(request(&call(Command::ProgQuery, q.clone(), C::NET_ADMIN)).is_ok());
        assert_eq!(
            request(&call(Command::ProgQuery, q, C::PERFMON)).unwrap_err(),
            Errno::PERM
        );
    }

    #[test]
    fn a_short_attr_read_is_efault() {
        let mem = FakeCaller::new().map(0x1000, vec![0u8; 8]);
        // 16 bytes asked for, 8 readable.
        let r = Call::read(Command::NextId(ObjectKind::Map), [0, 0x1000, 16], &mem);
        assert_eq!(r.unwrap_err(), Errno::FAULT);
        let r = Call::read(Command::NextId(ObjectKind::Map), [0, 0x1000, 8], &mem);
        assert!(r.is_ok());
        let r = Call::read(Command::NextId(ObjectKind::Map), [0, 0x1000, 8192], &mem);
        assert_eq!(r.unwrap_err(), Errno::TOOBIG);
    }

    #[test]
    fn a_dead_caller_is_read_as_esrch() {
        let mem = FakeCaller::new().map(0x1000, vec![0u8; 64]).dead();
        let r = Call::read(Command::NextId(ObjectKind::Map), [0, 0x1000, 8], &mem);
        assert_eq!(r.unwrap_err(), Errno::SRCH);
    }

    #[test]
    fn root_namespace_callers_need_capabilities_of_the_initial_user_namespace() {
        let next = Request::NextId {
            kind: ObjectKind::Map,
            start_id: 0,
        };
        let bpf_only = FakeCaller::new().caps(C::BPF, true);
        assert!(!root_may(&bpf_only, &next));
        let admin = FakeCaller::new().caps(C::SYS_ADMIN, true);
        assert!(root_may(&admin, &next));
        // Held in another user namespace: counts for nothing here.
        let elsewhere = FakeCaller::new().caps(C::SYS_ADMIN, false);
        assert!(!root_may(&elsewhere, &next));
        let q = Request::ProgQuery(prog_query(0));
        assert!(root_may(&FakeCaller::new().caps(C::NET_ADMIN, true), &q));
    }

    #[test]
    fn only_program_opens_carry_the_callers_syslog() {
        let view = FakeView::new(ns(1));
        let ops = FakeOps::default();
        let syslog_of = |kind: ObjectKind, caller: &FakeCaller, eff: C| {
            let req = Request::FdById {
                kind,
                id: 7,
                open_flags: 0,
            };
            let c = call(Command::FdById(kind), Attr::zeroed(ATTR_SIZE), eff);
            match prepare(&c, &req, caller, &view, &ops) {
                Ok(Prepared::FdById { syslog }) => syslog,
                _ => panic!("FdById prepares FdById"),
            }
        };
        let root = FakeCaller::new().caps(C::SYS_ADMIN | C::SYSLOG, true);
        assert!(syslog_of(ObjectKind::Prog, &root, C::SYS_ADMIN | C::SYSLOG));
        for kind in [ObjectKind::Map, ObjectKind::Link, ObjectKind::Btf] {
            assert!(!syslog_of(kind, &root, C::SYS_ADMIN | C::SYSLOG), "{kind}");
        }
        // Not held, or held in another user namespace: never.
        let bpf_only = FakeCaller::new().caps(C::BPF, true);
        assert!(!syslog_of(ObjectKind::Prog, &bpf_only, C::BPF));
        let elsewhere = FakeCaller::new().caps(C::SYS_ADMIN | C::SYSLOG, false);
        assert!(!syslog_of(
            ObjectKind::Prog,
            &elsewhere,
            C::SYS_ADMIN | C::SYSLOG
        ));
    }

    #[test]
    fn prepare_without_a_private_context_refuses_path_and_netns_commands() {
        let mem = FakeCaller::new().map(0x2000, b"/sys/fs/bpf/m\0".to_vec());
        let view = FakeView::new(ns(1));
        let ops = FakeOps {
            private: false,
            ..FakeOps::default()
        };
        let req = Request::ObjGet {
            pathname: 0x2000,
            path_fd: None,
            file_flags: 0,
        };
        let c = call(Command::ObjGet, Attr::zeroed(ATTR_SIZE), C::BPF);
        assert_eq!(
            prepare(&c, &req, &mem, &view, &ops).err(),
            Some(Errno::PERM)
        );
    }

    #[test]
    fn a_query_of_an_fd_the_caller_lacks_is_ebadf() {
        let mem = FakeCaller::new();
        let view = FakeView::new(ns(1));
        let ops = FakeOps::default();
        let q = prog_query(7);
        let c = call(Command::ProgQuery, Attr::zeroed(ATTR_SIZE), C::BPF);
        let r = prepare(&c, &Request::ProgQuery(q), &mem, &view, &ops);
        assert_eq!(r.err(), Some(Errno::BADF));
        // A target fd that is no fd number at all.
        let q = prog_query(u32::MAX);
        let r = prepare(&c, &Request::ProgQuery(q), &mem, &view, &ops);
        assert_eq!(r.err(), Some(Errno::BADF));
    }

    #[test]
    fn attach_of_an_unknown_type_is_einval() {
        let mem = FakeCaller::new();
        let view = FakeView::new(ns(1));
        let ops = FakeOps::default();
        let a = AttachReq {
            target: 3,
            attach_bpf_fd: 4,
            attach_type: 9999,
            flags: 0,
            replace_bpf_fd: 0,
            relative: 0,
            expected_revision: 0,
        };
        let c = call(Command::ProgAttach, Attr::zeroed(ATTR_SIZE), C::BPF);
        let r = prepare(&c, &Request::Attach(a), &mem, &view, &ops);
        assert_eq!(r.err(), Some(Errno::INVAL));
    }
}
