//! `BPF_LINK_CREATE` for members of namespaces whose policy denies tracing, made by bpfnsd
//! itself from its own copy of the attr.
//!
//! tcx, netkit and (from Linux 6.16) cgroups take a relative program or link by id
//! (`BPF_F_BEFORE | BPF_F_ID`), which the kernel looks up before anything else: `EINVAL`
//! for one that exists with another type, `ENOENT` for none, so any member could tell which
//! ids exist. A check followed by `CONTINUE` cannot close that: the kernel reads the attr
//! again from the member's memory, where another thread may have put another id, flag or
//! attach type meanwhile. So bpfnsd reads the attr once, answers a relative id the caller
//! cannot see with `ENOENT` (as for one that does not exist), and makes the call on its copy
//! with copies of the caller's fds, its capabilities and, for interfaces, its network
//! namespace; the new link is recorded as the namespace's (within its quota) before its fd
//! is injected, as loads are.
//!
//! Every member's `BPF_LINK_CREATE` is made here, also where the namespace allows tracing:
//! what the kernel attaches to follows from the attach type and the program behind the fd,
//! and both could be changed by another thread between a check and a `CONTINUE` (an XDP
//! attach type read, a cgroup one attached: a link on any cgroup). Where tracing is allowed
//! the tracing attach types whose attr points to no more of the caller's memory (fentry,
//! fexit, fmod_ret, LSM, raw tracepoints, iterators without `iter_info`, struct_ops) are
//! made here too; the others (kprobe and uprobe multi and session links, iterators with
//! `iter_info`) are refused. Only root-namespace callers' calls go on to the kernel, and
//! the ids a relative id names are checked as for a namespace that denies tracing (one that
//! allows tracing may read kernel memory, which shows every id anyway, but answering the
//! same everywhere keeps one path).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use bpfns_model::ObjectKind;
use bpfns_sys::caps::CapabilitySet as C;
use bpfns_sys::Errno;

use super::{Answer, Env, Ops, Reservation, NO_FD};
use crate::supervisor::attr::{
    self, link_relative_is_fd, link_target, off, Attr, LinkCreateReq, LinkTarget,
};
use crate::supervisor::worker::caller::{Call, Caller};
use crate::supervisor::View;

/// What one `BPF_LINK_CREATE` needs, read from the caller before the validity check.
#[derive(Debug)]
pub(in crate::supervisor::worker) struct LinkPrep {
    /// The caller's attr, with bpfnsd's fds in it.
    pub attr: Attr,
    /// bpfnsd's copies of the caller's fds, open across the call.
    pub _copies: Vec<OwnedFd>,
    /// Which of them is the target (a cgroup, a network namespace), where the attach type
    /// confines it.
    pub target: Option<i32>,
    /// The caller's network namespace, where the link's target is in it.
    pub netns: Option<OwnedFd>,
    pub caps: C,
}

/// Whether bpfnsd makes the link itself: for every member. A decision followed by
/// `CONTINUE` would be on memory and fd numbers the member may change before the kernel
/// reads them again: a target it confines (a cgroup, a network namespace) could be swapped
/// in after the check.
fn made_here(ns_is_root: bool) -> bool {
    !ns_is_root
}

/// How bpfnsd makes a member's tracing link (an attach type [`link_target`] does not know)
/// where the namespace allows tracing: `Some(true)` when `target_fd` is an fd (a program,
/// for `freplace`; `0` for none), `Some(false)` when the attr holds no fd but the program;
/// `None` for the attach types whose attr points to more of the caller's memory, which
/// bpfnsd does not make (the kernel would read its own memory at those addresses).
fn tracing_shape(attach_type: u32, attr: &Attr) -> Option<bool> {
    use libbpf_sys::{
        BPF_LSM_MAC, BPF_STRUCT_OPS, BPF_TRACE_FENTRY, BPF_TRACE_ITER, BPF_TRACE_RAW_TP,
    };
    // `link_create.iter_info` (a pointer) and `iter_info_len`.
    const LC_ITER_INFO: usize = 16;
    const LC_ITER_INFO_LEN: usize = 24;
    match attach_type {
        BPF_TRACE_RAW_TP | BPF_STRUCT_OPS => Some(false),
        // fentry, fexit, fmod_ret, LSM.
        BPF_TRACE_FENTRY..=BPF_LSM_MAC => Some(true),
        BPF_TRACE_ITER => {
            (attr.u64_at(LC_ITER_INFO) == 0 && attr.u32_at(LC_ITER_INFO_LEN) == 0).then_some(false)
        }
        _ => None,
    }
}

/// What a link's target of `attach_type` is confined to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confined {
    /// The namespace's bound cgroup subtree.
    Cgroup,
    /// The member's own network namespace (flow dissector, sk_lookup: `target_fd` is a
    /// network namespace).
    OwnNetNs,
}

fn confined_target(attach_type: u32) -> Option<Confined> {
    use bpfns_sys::rawbpf::uapi as u;
    const BPF_SK_LOOKUP: u32 = 36;
    match attach_type {
        u::BPF_FLOW_DISSECTOR | BPF_SK_LOOKUP => Some(Confined::OwnNetNs),
        t if attr::hook_of(t) == Some(attr::Hook::Cgroup) => Some(Confined::Cgroup),
        _ => None,
    }
}

/// Whether `a` and `b` are the same file (inode).
fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let m = |f: BorrowedFd<'_>| {
        std::fs::metadata(format!("/proc/thread-self/fd/{}", f.as_raw_fd()))
            .map(|m| (m.dev(), m.ino()))
            .ok()
    };
    matches!((m(a), m(b)), (Some(x), Some(y)) if x == y)
}

/// Read a `BPF_LINK_CREATE` the supervisor will make itself: `None` when the kernel answers
/// it ([`link_create`] decides again after the validity check).
pub(super) fn prepare(
    call: &Call,
    l: &LinkCreateReq,
    caller: &dyn Caller,
    view: &dyn View,
    ops: &dyn Ops,
) -> Result<Option<Box<LinkPrep>>, Errno> {
    let Ok(ns) = view.namespace_of(caller.pidfd()) else {
        return Ok(None);
    };
    if !made_here(ns.is_root()) {
        return Ok(None);
    }
    let target = match link_target(l.attach_type) {
        Some(t) => Some(t),
        None if view.allows_tracing(ns).unwrap_or(false) => {
            let Some(fd_target) = tracing_shape(l.attach_type, &call.attr) else {
                tracing::debug!(
                    tid = call.tid,
                    namespace = %ns,
                    attach_type = l.attach_type,
                    "refused BPF_LINK_CREATE: bpfnsd makes every member's link on its own \
                     copy of the attr, and this attach type's attr points to more of the \
                     caller's memory (kprobe or uprobe multi or session links, iterators \
                     with iter_info), or is unknown to it [link-create]; fix: attach one \
                     function at a time (a kprobe or uprobe perf event link, \
                     BPF_PERF_EVENT), or attach it outside namespaces"
                );
                return Err(Errno::PERM);
            };
            fd_target.then_some(LinkTarget::Fd)
        }
        None => {
            tracing::debug!(
                tid = call.tid,
                namespace = %ns,
                attach_type = l.attach_type,
                "refused BPF_LINK_CREATE: bpfnsd makes links for members of namespaces that \
                 deny tracing, and only of the cgroup, socket map, network and perf event \
                 attach types (this one is tracing, or unknown to it) [link-create]; fix: \
                 attach it outside namespaces, or from a namespace whose policy allows tracing"
            );
            return Err(Errno::PERM);
        }
    };
    let mut copies = Vec::new();
    let mut copy = |fd: u32| -> Result<u32, Errno> {
        // A negative number names no fd anywhere: it stays what it is.
        if attr::as_fd(fd).is_none() {
            return Ok(fd);
        }
        Ok(match caller.fd(fd)? {
            Some(c) => {
                let n = c.as_raw_fd() as u32;
                copies.push(c);
                n
            }
            None => NO_FD,
        })
    };
    let mut a = call.attr.clone();
    a.set_u32(off::LC_PROG_FD, copy(l.prog_fd)?);
    let mut target_fd = None;
    // A tracing link's target fd 0 is none (not the caller's fd 0).
    let tracing = link_target(l.attach_type).is_none();
    if target == Some(LinkTarget::Fd) && !(tracing && l.target == 0) {
        let t = copy(l.target)?;
        a.set_u32(off::LC_TARGET, t);
        target_fd = attr::as_fd(t).filter(|_| t != NO_FD);
    }
    if link_relative_is_fd(l) {
        a.set_u32(off::LC_RELATIVE, copy(l.relative)?);
    }
    let netns = match target {
        Some(LinkTarget::Ifindex | LinkTarget::NetNs) => {
            if !ops.private_context() {
                return Err(Errno::PERM);
            }
            Some(caller.net_ns()?)
        }
        Some(LinkTarget::Fd) | None => None,
    };
    if confined_target(l.attach_type) == Some(Confined::OwnNetNs) {
        let own = caller.net_ns()?;
        let named = target_fd.and_then(|t| copies.iter().find(|c| c.as_raw_fd() == t));
        if let Some(named) = named {
            if !same_file(named.as_fd(), own.as_fd()) {
                tracing::debug!(
                    pid = call.tid,
                    namespace = %ns,
                    attach_type = l.attach_type,
                    "refused BPF_LINK_CREATE: the target network namespace is not the \
                     caller's own [netns-confined]; fix: attach in the network namespace the \
                     process is in (open /proc/self/ns/net)"
                );
                return Err(Errno::PERM);
            }
        }
    }
    Ok(Some(Box::new(LinkPrep {
        attr: a,
        _copies: copies,
        target: target_fd,
        netns,
        caps: caller.caps_here(),
    })))
}

/// Answer a `BPF_LINK_CREATE` of a task of namespace `env.ns`.
pub(super) fn link_create(env: &Env<'_>, l: LinkCreateReq, prep: Option<Box<LinkPrep>>) -> Answer {
    let ns = env.ns;
    if !made_here(ns.is_root()) {
        return Answer::Continue;
    }
    let Some(mut p) = prep else {
        // Read for another decision (the caller's namespace changed meanwhile): ask again.
        return Answer::Error(Errno::AGAIN);
    };
    if link_target(l.attach_type).is_none() {
        // A tracing link, read where tracing was allowed: not if the policy changed since.
        match env.view.allows_tracing(ns) {
            Ok(true) => {}
            Ok(false) => return Answer::Error(Errno::PERM),
            Err(e) => return Answer::view_failed("the namespace's policy", e),
        }
    }
    if confined_target(l.attach_type) == Some(Confined::Cgroup) {
        let target = p
            .target
            .and_then(|t| p._copies.iter().find(|c| c.as_raw_fd() == t))
            .map(|c| c.as_fd());
        if let Some(e) = super::attach::cgroup_refusal(env, target) {
            return Answer::Error(e);
        }
    }
    let mut see = |kind, id| env.view.can_see(ns, kind, id);
    match attr::relative_refusal(l.flags, l.relative, &mut see) {
        Ok(None) => {}
        Ok(Some(r)) => {
            tracing::debug!(tid = env.call.tid, namespace = %ns, "BPF_LINK_CREATE: {}", r.reason);
            return Answer::Error(r.errno);
        }
        Err(e) => return Answer::view_failed("ownership of a relative program or link", e),
    }
    let reserved = match Reservation::take(env, ObjectKind::Link) {
        Ok(r) => r,
        Err(a) => return a,
    };
    let netns = p.netns.as_ref().map(|n| n.as_fd());
    let (caps, attr) = (p.caps, &mut p.attr);
    let mut fd = None;
    let made = env.ops.in_net_ns(netns, &mut || match env.ops.bpf_fd_as(
        caps,
        attr::LINK_CREATE,
        attr,
    ) {
        Ok(f) => {
            fd = Some(f);
            Answer::Value(0)
        }
        Err(e) => Answer::Error(e),
    });
    let Some(fd) = fd else {
        return made;
    };
    // The caller may have gone meanwhile: the link goes with bpfnsd's copy.
    if !env.caller.waiting() {
        return Answer::Abandoned;
    }
    reserved.record(fd)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bpfns_model::NsId;
    use bpfns_sys::rawbpf::uapi as u;

    use super::super::fake::*;
    use super::super::{answer, IdCache, Prepared};
    use super::*;
    use crate::supervisor::attr::{Command, Request, ATTR_SIZE};

    const TCX_INGRESS: u32 = u::BPF_TCX_INGRESS;

    fn req(attach_type: u32, flags: u32, relative: u32) -> LinkCreateReq {
        LinkCreateReq {
            prog_fd: 3,
            target: 1,
            attach_type,
            flags,
            relative,
        }
    }

    fn create(view: &FakeView, ops: &FakeOps, l: LinkCreateReq) -> Answer {
        let mut a = Attr::zeroed(ATTR_SIZE);
        a.set_u32(off::LC_PROG_FD, l.prog_fd);
        a.set_u32(off::LC_TARGET, l.target);
        a.set_u32(off::LC_ATTACH_TYPE, l.attach_type);
        a.set_u32(off::LC_FLAGS, l.flags);
        a.set_u32(off::LC_RELATIVE, l.relative);
        let c = call(Command::LinkCreate, a, C::BPF | C::NET_ADMIN);
        let mem = FakeCaller::new()
            .caps(C::BPF | C::NET_ADMIN, true)
            .with_fds(&[3, 4]);
        let prep = match prepare(&c, &l, &mem, view, ops) {
            Ok(p) => p,
            Err(e) => return Answer::Error(e),
        };
        let env = env(&c, view, &mem, ops);
        answer(
            &env,
            Request::LinkCreate(l),
            Prepared::LinkCreate(prep),
            &mut IdCache::new(Duration::ZERO),
        )
    }

    #[test]
    fn a_relative_id_the_caller_cannot_see_is_answered_as_one_that_does_not_exist() {
        let ops = FakeOps {
            pinned: Some((ObjectKind::Link, 40)),
            ..FakeOps::default()
        };
        let view = FakeView::new(ns(1))
            .visible(ObjectKind::Prog, &[7])
            .visible(ObjectKind::Link, &[8]);
        let by_id = u::BPF_F_BEFORE | u::BPF_F_ID;
        // Foreign (9) and absent (0x7fff_fff0) ids alike, programs and links, tcx and cgroup.
        for attach in [TCX_INGRESS, u::BPF_CGROUP_INET_EGRESS] {
            for id in [9, 0x7fff_fff0] {
                for link in [0, u::BPF_F_LINK] {
                    let a = create(&view, &ops, req(attach, by_id | link, id));
                    assert!(
                        matches!(a, Answer::Error(Errno::NOENT)),
                        "{attach} {id} {link}"
                    );
                }
            }
        }
        assert!(ops.calls().is_empty());
        assert_eq!(*view.reserved.lock().expect("lock"), 0);
        // A visible one: the call is made here, the link recorded, then injected.
        let a = create(&view, &ops, req(TCX_INGRESS, by_id, 7));
        assert!(matches!(a, Answer::Inject(_)));
        let a = create(&view, &ops, req(TCX_INGRESS, by_id | u::BPF_F_LINK, 8));
        assert!(matches!(a, Answer::Inject(_)));
        assert_eq!(
            ops.calls(),
            [
                (attr::LINK_CREATE, C::BPF | C::NET_ADMIN),
                (attr::LINK_CREATE, C::BPF | C::NET_ADMIN)
            ]
        );
        assert_eq!(*view.recorded.lock().expect("lock"), [40, 40]);
        assert_eq!(*view.reserved.lock().expect("lock"), 2);
    }

    #[test]
    fn over_a_quota_no_link_is_made_and_the_answer_is_edquot() {
        let ops = FakeOps {
            pinned: Some((ObjectKind::Link, 40)),
            ..FakeOps::default()
        };
        let mut view = FakeView::new(ns(1));
        for (why, errno) in [
            (
                bpfns_kernel::QuotaRefusal::KindOver {
                    ns: ns(1),
                    kind: ObjectKind::Link,
                    used: 2,
                    limit: 2,
                },
                Errno::DQUOT,
            ),
            (
                bpfns_kernel::QuotaRefusal::Over {
                    ns: ns(1),
                    used: 9,
                    limit: 9,
                },
                Errno::DQUOT,
            ),
            (
                bpfns_kernel::QuotaRefusal::Unknown { ns: ns(1) },
                Errno::PERM,
            ),
        ] {
            view.quota = Some(why);
            let a = create(&view, &ops, req(TCX_INGRESS, 0, 0));
            assert!(matches!(a, Answer::Error(e) if e == errno), "{why}");
        }
        assert!(ops.calls().is_empty());
        assert!(view.recorded.lock().expect("lock").is_empty());
    }

    #[test]
    fn the_call_is_made_on_bpfnsds_copies_of_the_fds() {
        let ops = FakeOps {
            pinned: Some((ObjectKind::Link, 40)),
            ..FakeOps::default()
        };
        let view = FakeView::new(ns(1));
        // A cgroup link (target: an fd the caller has), relative by fd 4.
        let mut l = req(u::BPF_CGROUP_INET_EGRESS, u::BPF_F_BEFORE, 4);
        l.target = 4;
        assert!(matches!(create(&view, &ops, l), Answer::Inject(_)));
        for field in [off::LC_PROG_FD, off::LC_TARGET, off::LC_RELATIVE] {
            let n = ops.last_fd_arg(field).expect("a call");
            assert_ne!(n, NO_FD, "field {field}");
        }
        // tcx: the target is an ifindex, kept; an fd the caller lacks is one no process has.
        let mut l = req(TCX_INGRESS, 0, 0);
        l.prog_fd = 5;
        assert!(matches!(create(&view, &ops, l), Answer::Inject(_)));
        assert_eq!(ops.last_fd_arg(off::LC_TARGET), Some(1));
        assert_eq!(ops.last_fd_arg(off::LC_PROG_FD), Some(NO_FD));
        // Refused by the kernel: nothing recorded, the reservation given back.
        let refused = FakeOps {
            bpf_result: Err(Errno::INVAL),
            ..FakeOps::default()
        };
        let view = FakeView::new(ns(1));
        assert!(matches!(
            create(&view, &refused, req(TCX_INGRESS, 0, 0)),
            Answer::Error(Errno::INVAL)
        ));
        assert_eq!(*view.reserved.lock().expect("lock"), 0);
        assert!(view.recorded.lock().expect("lock").is_empty());
    }

    #[test]
    fn tracing_links_are_refused_and_the_kernel_answers_where_tracing_is_allowed() {
        const BPF_TRACE_FENTRY: u32 = 24;
        const BPF_TRACE_KPROBE_MULTI: u32 = 42;
        let ops = FakeOps::default();
        let view = FakeView::new(ns(1));
        for t in [BPF_TRACE_FENTRY, BPF_TRACE_KPROBE_MULTI, 9999] {
            assert!(matches!(
                create(&view, &ops, req(t, 0, 0)),
                Answer::Error(Errno::PERM)
            ));
        }
        let root = FakeView::new(NsId::ROOT);
        let by_id = u::BPF_F_BEFORE | u::BPF_F_ID;
        assert!(matches!(
            create(&root, &ops, req(TCX_INGRESS, by_id, 9)),
            Answer::Continue
        ));
        assert!(ops.calls().is_empty());
    }

    /// Where tracing is allowed too: a `CONTINUE` would let the kernel read the attach type
    /// and the fds again, after another thread changed them (an XDP link checked, a cgroup
    /// link made).
    #[test]
    fn every_members_link_is_made_here_where_tracing_is_allowed() {
        const BPF_XDP: u32 = 37;
        const BPF_TRACE_FENTRY: u32 = 24;
        const BPF_TRACE_ITER: u32 = 28;
        const BPF_TRACE_KPROBE_MULTI: u32 = 42;
        const BPF_TRACE_UPROBE_MULTI: u32 = 48;
        let mut tracing = FakeView::new(ns(1)).visible(ObjectKind::Prog, &[7]);
        tracing.allows_tracing = true;
        let made = |l: LinkCreateReq| {
            let ops = FakeOps {
                pinned: Some((ObjectKind::Link, 40)),
                ..FakeOps::default()
            };
            let a = create(&tracing, &ops, l);
            (a, ops.calls().len())
        };
        for t in [
            BPF_XDP,
            TCX_INGRESS,
            u::BPF_CGROUP_INET_EGRESS,
            BPF_TRACE_FENTRY,
            BPF_TRACE_ITER,
        ] {
            let l = LinkCreateReq {
                target: if t == u::BPF_CGROUP_INET_EGRESS { 4 } else { 0 },
                ..req(t, 0, 0)
            };
            let (a, calls) = made(l);
            assert!(matches!(a, Answer::Inject(_)), "attach type {t}");
            assert_eq!(calls, 1, "attach type {t}");
        }
        // Not by id either: a relative id the caller cannot see.
        let (a, calls) = made(req(TCX_INGRESS, u::BPF_F_BEFORE | u::BPF_F_ID, 9));
        assert!(matches!(a, Answer::Error(Errno::NOENT)));
        assert_eq!(calls, 0);
        // Attrs that point to more of the caller's memory: refused, never continued.
        for t in [BPF_TRACE_KPROBE_MULTI, BPF_TRACE_UPROBE_MULTI, 9999] {
            let (a, calls) = made(req(t, 0, 0));
            assert!(matches!(a, Answer::Error(Errno::PERM)), "attach type {t}");
            assert_eq!(calls, 0);
        }
    }

    #[test]
    fn a_cgroup_link_outside_the_namespaces_cgroup_is_refused_even_where_tracing_is_allowed() {
        let l = LinkCreateReq {
            target: 4,
            ..req(u::BPF_CGROUP_INET_INGRESS, 0, 0)
        };
        for allows_tracing in [false, true] {
            let mut view = FakeView::new(ns(1)).visible(ObjectKind::Prog, &[7]);
            view.allows_tracing = allows_tracing;
            let outside = FakeOps {
                cgroup: bpfns_sys::cgroup::Ancestry::Outside,
                ..FakeOps::default()
            };
            assert!(matches!(
                create(&view, &outside, l),
                Answer::Error(Errno::PERM)
            ));
            assert!(outside.calls().is_empty());
            let mut unbound = FakeView::new(ns(1));
            unbound.cgroup = None;
            unbound.allows_tracing = allows_tracing;
            let ops = FakeOps::default();
            assert!(matches!(
                create(&unbound, &ops, l),
                Answer::Error(Errno::PERM)
            ));
            assert!(ops.calls().is_empty());
            // Inside: made here, on bpfnsd's copy.
            let inside = FakeOps {
                pinned: Some((ObjectKind::Link, 40)),
                ..FakeOps::default()
            };
            assert!(!matches!(
                create(&view, &inside, l),
                Answer::Error(Errno::PERM) | Answer::Continue
            ));
            assert_eq!(inside.calls().len(), 1);
        }
    }

    #[test]
    fn a_network_namespace_target_must_be_the_callers_own() {
        const BPF_SK_LOOKUP: u32 = 36;
        for (attach_type, own) in [
            (u::BPF_FLOW_DISSECTOR, true),
            (u::BPF_FLOW_DISSECTOR, false),
            (BPF_SK_LOOKUP, true),
            (BPF_SK_LOOKUP, false),
        ] {
            let l = LinkCreateReq {
                target: 4,
                ..req(attach_type, 0, 0)
            };
            let mut a = Attr::zeroed(ATTR_SIZE);
            a.set_u32(off::LC_PROG_FD, l.prog_fd);
            a.set_u32(off::LC_TARGET, l.target);
            a.set_u32(off::LC_ATTACH_TYPE, l.attach_type);
            let c = call(Command::LinkCreate, a, C::BPF | C::NET_ADMIN);
            let mut mem = FakeCaller::new()
                .caps(C::BPF | C::NET_ADMIN, true)
                .with_fds(&[3, 4]);
            mem.other_netns = !own;
            let view = FakeView::new(ns(1));
            let r = prepare(&c, &l, &mem, &view, &FakeOps::default());
            assert_eq!(r.is_ok(), own, "attach type {attach_type}, own netns {own}");
            if !own {
                assert_eq!(r.err(), Some(Errno::PERM));
            }
        }
    }
}
