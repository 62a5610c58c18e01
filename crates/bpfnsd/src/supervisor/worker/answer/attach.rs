//! `BPF_PROG_ATTACH`, `BPF_PROG_DETACH`, `BPF_LINK_UPDATE`, `BPF_LINK_DETACH`: what the call
//! would replace or detach is checked, then the call is made here on copies of the caller's
//! fds (a caller cannot swap its attr or fd numbers after the check).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use bpfns_sys::caps::CapabilitySet as C;
use bpfns_sys::rawbpf::uapi::BPF_F_REPLACE;
use bpfns_sys::Errno;

use super::{prog_id_of, Answer, CallerFds, Env, NO_FD};
use crate::supervisor::attr::{self, off, AttachReq, FdIds, Hook, LinkUpdateReq};

/// How many times an attach-family call is retried when the hook changed between the
/// supervisor's look and the call (`ESTALE` on a revision the supervisor pinned).
const STALE_RETRIES: usize = 3;

/// Whether a member of `env.ns` may attach programs to (or detach them from) the cgroup
/// behind `target`, bpfnsd's copy of the fd the member passed: only its namespace's bound
/// cgroup and those below it. `Some(errno)` refuses (logged at debug: the refusal reaches the
/// rate-limited denial log and the events as any other). The fd is checked, not
/// trusted: a member that is host root may hold the host's root cgroup open, or a sibling
/// tenant's cgroup.
pub(super) fn cgroup_refusal(env: &Env<'_>, target: Option<BorrowedFd<'_>>) -> Option<Errno> {
    use bpfns_sys::cgroup::Ancestry;
    if env.ns.is_root() {
        return None;
    }
    // An fd number the caller does not have: the kernel answers EBADF.
    let target = target?;
    let cmd = env.call.cmd.name();
    let (tid, ns) = (env.call.tid, env.ns);
    let (target_path, target_id) = describe(target);
    let bound = match env.view.bound_cgroup(ns) {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(pid = tid, namespace = %ns, cmd, target = ?target_path, "refused {cmd}: the namespace's cgroup is unknown ({e})");
            return Some(Errno::PERM);
        }
    };
    let Some(bound) = bound else {
        tracing::debug!(
            pid = tid, namespace = %ns, cmd, target = ?target_path, target_id,
            "refused {cmd}: the namespace is bound to no cgroup, so its members may attach \
             to none [cgroup-confined]; fix: bind it (bpfns ns create --cgroup PATH, or let \
             a member enter: the first one's cgroup binds it)"
        );
        return Some(Errno::PERM);
    };
    match env.ops.cgroup_within(target, &bound) {
        Ok(Ancestry::Inside) => None,
        // What the kernel answers for an fd that is no cgroup v2 cgroup.
        Ok(Ancestry::NotCgroup2) => Some(Errno::BADF),
        Ok(Ancestry::Outside) => {
            tracing::debug!(
                pid = tid, namespace = %ns, cmd, target = ?target_path, target_id, bound = %bound,
                "refused {cmd}: the target cgroup is outside the namespace's cgroup {bound} \
                 [cgroup-confined]; fix: attach to {bound} or a cgroup below it"
            );
            Some(Errno::PERM)
        }
        Err(e) => {
            tracing::debug!(
                pid = tid, namespace = %ns, cmd, target = ?target_path, target_id, bound = %bound,
                "refused {cmd}: the target cgroup's place could not be checked against the \
                 namespace's cgroup {bound} ({e}) [cgroup-confined]; fix: make sure \
                 /sys/fs/cgroup{bound} exists (or bind the namespace to an existing cgroup)"
            );
            Some(Errno::PERM)
        }
    }
}

/// The path (as bpfnsd sees it) and inode (the cgroup id) of `fd`, for the log.
fn describe(fd: BorrowedFd<'_>) -> (String, u64) {
    use std::os::unix::fs::MetadataExt;
    let link = format!("/proc/thread-self/fd/{}", fd.as_raw_fd());
    let path = std::fs::read_link(&link)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let id = std::fs::metadata(&link).map(|m| m.ino()).unwrap_or(0);
    (path, id)
}

fn raw(f: &Option<OwnedFd>) -> u32 {
    f.as_ref().map_or(NO_FD, |f| f.as_raw_fd() as u32)
}

/// In the caller's network namespace where the hook is in one.
pub(super) fn attach(
    env: &Env<'_>,
    detach: bool,
    hook: Hook,
    a: AttachReq,
    fds: &CallerFds,
    netns: Option<&OwnedFd>,
    caps: C,
) -> Answer {
    if !env.ops.private_context() {
        return Answer::Error(Errno::PERM);
    }
    env.ops.in_net_ns(netns.map(|n| n.as_fd()), &mut || {
        attach_here(env, detach, hook, a, fds, caps)
    })
}

fn attach_here(
    env: &Env<'_>,
    detach: bool,
    hook: Hook,
    a: AttachReq,
    fds: &CallerFds,
    caps: C,
) -> Answer {
    let call = env.call;
    if hook == Hook::Cgroup {
        if let Some(e) = cgroup_refusal(env, fds.target.as_ref().map(|f| f.as_fd())) {
            return Answer::Error(e);
        }
    }
    let ids = FdIds {
        prog: fds
            .prog
            .as_ref()
            .and_then(|f| prog_id_of(env.ops, f.as_fd())),
        replace: fds
            .replace
            .as_ref()
            .and_then(|f| prog_id_of(env.ops, f.as_fd())),
    };
    for _ in 0..STALE_RETRIES {
        let state = if attr::attach_needs_query(detach, hook, &a) {
            let target = fds.target.as_ref().map(|f| f.as_fd());
            match env.ops.query_hook(hook, &a, target) {
                Ok(s) => Some(s),
                Err(e) => return Answer::Error(e),
            }
        } else {
            None
        };
        let mut see = |kind, id| env.view.can_see(env.ns, kind, id);
        let plan = match attr::attach_verdict(detach, hook, &a, state.as_ref(), ids, &mut see) {
            Ok(Ok(p)) => p,
            Ok(Err(r)) => {
                tracing::info!(
                    tid = call.tid,
                    namespace = %env.ns,
                    cmd = call.cmd.name(),
                    "refused: {}",
                    r.reason
                );
                return Answer::Error(r.errno);
            }
            Err(e) => return Answer::view_failed("ownership of an attached program", e),
        };
        let mut attr = call.attr.clone();
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
        match env.ops.bpf_as(caps, call.cmd.raw(), &mut attr) {
            // The hook changed since it was looked at: look again.
            Err(Errno::STALE) if plan.pin_revision.is_some() => continue,
            r => return Answer::of(r),
        }
    }
    Answer::Error(Errno::AGAIN)
}

pub(super) fn link_update(
    env: &Env<'_>,
    u: LinkUpdateReq,
    link: Option<OwnedFd>,
    new: Option<OwnedFd>,
    old: Option<OwnedFd>,
    caps: C,
) -> Answer {
    let replace = u.flags & BPF_F_REPLACE != 0;
    let link_ids = link.as_ref().and_then(|f| env.ops.link_ids_of(f.as_fd()));
    let old_obj = old.as_ref().and_then(|f| env.ops.object_of(f.as_fd()));
    let mut see = |kind, id| env.view.can_see(env.ns, kind, id);
    match attr::link_verdict(link_ids, Some((replace, old_obj)), &mut see) {
        Ok(Ok(())) => {}
        Ok(Err(r)) => {
            tracing::info!(tid = env.call.tid, namespace = %env.ns, "refused BPF_LINK_UPDATE: {}", r.reason);
            return Answer::Error(r.errno);
        }
        Err(e) => return Answer::view_failed("ownership of a link", e),
    }
    let mut attr = env.call.attr.clone();
    attr.set_u32(off::LU_LINK_FD, raw(&link));
    attr.set_u32(off::LU_NEW_FD, raw(&new));
    if replace {
        attr.set_u32(off::LU_OLD_FD, raw(&old));
    }
    Answer::of(env.ops.bpf_as(caps, attr::LINK_UPDATE, &mut attr))
}

pub(super) fn link_detach(env: &Env<'_>, link: Option<OwnedFd>, caps: C) -> Answer {
    let link_ids = link.as_ref().and_then(|f| env.ops.link_ids_of(f.as_fd()));
    let mut see = |kind, id| env.view.can_see(env.ns, kind, id);
    match attr::link_verdict(link_ids, None, &mut see) {
        Ok(Ok(())) => {}
        Ok(Err(r)) => {
            tracing::info!(tid = env.call.tid, namespace = %env.ns, "refused BPF_LINK_DETACH: {}", r.reason);
            return Answer::Error(r.errno);
        }
        Err(e) => return Answer::view_failed("ownership of a link", e),
    }
    let mut attr = env.call.attr.clone();
    attr.set_u32(off::LU_LINK_FD, raw(&link));
    Answer::of(env.ops.bpf_as(caps, attr::LINK_DETACH, &mut attr))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bpfns_model::ObjectKind;

    use super::super::fake::*;
    use super::super::{answer, IdCache, Prepared};
    use super::*;
    use crate::supervisor::attr::{Attr, Command, HookState, QueryEntry, Request, ATTR_SIZE};

    fn fd() -> Option<OwnedFd> {
        Some(std::fs::File::open("/dev/null").expect("fd").into())
    }

    fn link_call(
        view: &FakeView,
        ops: &FakeOps,
        cmd: Command,
        req: Request,
        link: Option<OwnedFd>,
        old: Option<OwnedFd>,
    ) -> Answer {
        let c = call(cmd, Attr::zeroed(ATTR_SIZE), C::BPF);
        let mem = FakeCaller::new();
        let env = env(&c, view, &mem, ops);
        let prep = Prepared::Link {
            link,
            new: fd(),
            old,
            caps: C::BPF,
        };
        answer(&env, req, prep, &mut IdCache::new(Duration::ZERO))
    }

    fn update(flags: u32) -> Request {
        Request::LinkUpdate(LinkUpdateReq {
            link_fd: 3,
            new_fd: 4,
            flags,
            old_fd: 5,
        })
    }

    #[test]
    fn a_visible_link_is_updated_and_detached_here() {
        let view = FakeView::new(ns(1))
            .visible(ObjectKind::Link, &[30])
            .visible(ObjectKind::Prog, &[7]);
        let ops = FakeOps {
            link: Some((30, 7)),
            ..FakeOps::default()
        };
        let a = link_call(&view, &ops, Command::LinkUpdate, update(0), fd(), None);
        assert!(matches!(a, Answer::Value(0)));
        let d = link_call(
            &view,
            &ops,
            Command::LinkDetach,
            Request::LinkDetach { link_fd: 3 },
            fd(),
            None,
        );
        assert!(matches!(d, Answer::Value(0)));
        assert_eq!(
            ops.calls(),
            [(attr::LINK_UPDATE, C::BPF), (attr::LINK_DETACH, C::BPF)]
        );
    }

    #[test]
    fn a_foreign_link_or_program_is_not_touched() {
        let ops = FakeOps {
            link: Some((30, 7)),
            ..FakeOps::default()
        };
        // The link is another namespace's.
        let view = FakeView::new(ns(1)).visible(ObjectKind::Prog, &[7]);
        let a = link_call(&view, &ops, Command::LinkUpdate, update(0), fd(), None);
        assert!(matches!(a, Answer::Error(Errno::PERM)));
        // The link is visible, the program it runs is not: not updated, but detached (the
        // link is the caller's).
        let view = FakeView::new(ns(1)).visible(ObjectKind::Link, &[30]);
        let u = link_call(&view, &ops, Command::LinkUpdate, update(0), fd(), None);
        assert!(matches!(u, Answer::Error(Errno::PERM)));
        assert!(ops.calls().is_empty());
        let d = link_call(
            &view,
            &ops,
            Command::LinkDetach,
            Request::LinkDetach { link_fd: 3 },
            fd(),
            None,
        );
        assert!(matches!(d, Answer::Value(0)));
        assert_eq!(ops.calls(), [(attr::LINK_DETACH, C::BPF)]);
        // The old program named by BPF_F_REPLACE is another namespace's.
        let view = FakeView::new(ns(1))
            .visible(ObjectKind::Link, &[30])
            .visible(ObjectKind::Prog, &[7]);
        let foreign_old = FakeOps {
            link: Some((30, 7)),
            pinned: Some((ObjectKind::Prog, 8)),
            ..FakeOps::default()
        };
        let r = link_call(
            &view,
            &foreign_old,
            Command::LinkUpdate,
            update(BPF_F_REPLACE),
            fd(),
            fd(),
        );
        assert!(matches!(r, Answer::Error(Errno::PERM)));
        assert!(foreign_old.calls().is_empty());
    }

    #[test]
    fn a_link_fd_the_caller_lacks_is_left_to_the_kernel() {
        // The kernel answers EBADF for the fd number no process has.
        let view = FakeView::new(ns(1));
        let ops = FakeOps {
            bpf_result: Err(Errno::BADF),
            ..FakeOps::default()
        };
        let d = link_call(
            &view,
            &ops,
            Command::LinkDetach,
            Request::LinkDetach { link_fd: 3 },
            None,
            None,
        );
        assert!(matches!(d, Answer::Error(Errno::BADF)));
        assert_eq!(ops.last_fd_arg(off::LU_LINK_FD), Some(NO_FD));
    }

    fn cgroup_attach(view: &FakeView, ops: &FakeOps, detach: bool) -> Answer {
        // BPF_CGROUP_INET_INGRESS, no flags: the legacy single-program mode.
        let a = AttachReq {
            target: 3,
            attach_bpf_fd: 4,
            attach_type: 0,
            flags: 0,
            replace_bpf_fd: 0,
            relative: 0,
            expected_revision: 0,
        };
        let cmd = if detach {
            Command::ProgDetach
        } else {
            Command::ProgAttach
        };
        let c = call(cmd, Attr::zeroed(ATTR_SIZE), C::NET_ADMIN);
        let mem = FakeCaller::new();
        let env = env(&c, view, &mem, ops);
        let req = if detach {
            Request::Detach(a)
        } else {
            Request::Attach(a)
        };
        let prep = Prepared::Attach {
            hook: Hook::Cgroup,
            fds: CallerFds {
                target: fd(),
                prog: fd(),
                replace: None,
                relative: None,
            },
            netns: None,
            caps: C::NET_ADMIN,
        };
        answer(&env, req, prep, &mut IdCache::new(Duration::ZERO))
    }

    fn hook_with(prog_id: u32) -> HookState {
        HookState {
            flags: 0,
            revision: 0,
            entries: vec![QueryEntry {
                prog_id,
                ..QueryEntry::default()
            }],
        }
    }

    #[test]
    fn a_legacy_attach_over_a_foreign_program_is_refused() {
        let view = FakeView::new(ns(1)).visible(ObjectKind::Prog, &[7]);
        let foreign = FakeOps {
            hook: Ok(hook_with(8)),
            pinned: Some((ObjectKind::Prog, 7)),
            ..FakeOps::default()
        };
        assert!(matches!(
            cgroup_attach(&view, &foreign, false),
            Answer::Error(Errno::PERM)
        ));
        assert!(foreign.calls().is_empty());
        let own = FakeOps {
            hook: Ok(hook_with(7)),
            pinned: Some((ObjectKind::Prog, 7)),
            ..FakeOps::default()
        };
        assert!(matches!(
            cgroup_attach(&view, &own, false),
            Answer::Value(0)
        ));
        assert_eq!(own.calls(), [(attr::PROG_ATTACH, C::NET_ADMIN)]);
    }

    #[test]
    fn an_attach_without_a_private_context_or_with_a_failed_look_is_refused() {
        let view = FakeView::new(ns(1)).visible(ObjectKind::Prog, &[7]);
        let none = FakeOps {
            private: false,
            ..FakeOps::default()
        };
        assert!(matches!(
            cgroup_attach(&view, &none, false),
            Answer::Error(Errno::PERM)
        ));
        let no_look = FakeOps {
            hook: Err(Errno::BADF),
            ..FakeOps::default()
        };
        assert!(matches!(
            cgroup_attach(&view, &no_look, true),
            Answer::Error(Errno::BADF)
        ));
        assert!(none.calls().is_empty() && no_look.calls().is_empty());
    }

    #[test]
    fn a_cgroup_outside_the_namespaces_cgroup_is_neither_attached_to_nor_detached_from() {
        use bpfns_sys::cgroup::Ancestry;
        let view = FakeView::new(ns(1)).visible(ObjectKind::Prog, &[7]);
        for detach in [false, true] {
            let outside = FakeOps {
                cgroup: Ancestry::Outside,
                hook: Ok(hook_with(7)),
                pinned: Some((ObjectKind::Prog, 7)),
                ..FakeOps::default()
            };
            assert!(matches!(
                cgroup_attach(&view, &outside, detach),
                Answer::Error(Errno::PERM)
            ));
            assert!(outside.calls().is_empty());
            // Not a cgroup v2 cgroup: the kernel's answer, without asking it.
            let junk = FakeOps {
                cgroup: Ancestry::NotCgroup2,
                ..FakeOps::default()
            };
            assert!(matches!(
                cgroup_attach(&view, &junk, detach),
                Answer::Error(Errno::BADF)
            ));
            assert!(junk.calls().is_empty());
            // Bound to no cgroup: none at all.
            let mut unbound = FakeView::new(ns(1)).visible(ObjectKind::Prog, &[7]);
            unbound.cgroup = None;
            let ops = FakeOps {
                hook: Ok(hook_with(7)),
                pinned: Some((ObjectKind::Prog, 7)),
                ..FakeOps::default()
            };
            assert!(matches!(
                cgroup_attach(&unbound, &ops, detach),
                Answer::Error(Errno::PERM)
            ));
            assert!(ops.calls().is_empty());
            // Inside: made.
            assert!(matches!(
                cgroup_attach(&view, &ops, detach),
                Answer::Value(0)
            ));
        }
    }
}
