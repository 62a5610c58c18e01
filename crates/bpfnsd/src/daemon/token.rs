//! User-namespace containers: the namespace's bpffs made in the container's user namespace,
//! delegating what the namespace's policy allows, so that the container can create BPF tokens
//! from its `/sys/fs/bpf` (`container_bpffs`, asked by bpfns-oci's `createRuntime` hook).
//!
//! `BPF_TOKEN_CREATE` takes only a bpffs whose superblock belongs to the caller's user
//! namespace: the bpffs every namespace has (mounted by bpfnsd in the initial one) cannot give
//! a container of its own user namespace a token. So for such a container that instance is
//! replaced by one of the container's user namespace, mounted at the same place
//! (`<ns_bpffs_dir>/<id>`): it is the namespace's pin tree as before, the one `bpfns exec`
//! members and the host see, the one a deletion copies into the parent's tree.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use bpfns_model::{NsId, Policy};
use bpfns_proto::{ErrorCode, Reply};
use bpfns_sys::userns::Delegation;

use super::{Answer, Daemon, Failure};
use crate::caller::Caller;
#[cfg(test)]
use crate::supervisor::attr::is_tracing_class;

/// The bpf() commands a container's token delegates: those the kernel takes a token for
/// (creating maps, loading programs and BTF, opening BTF by id), and the listing and opening
/// by id that bpfnsd answers for a token's holder (`get_fd`; the supervisor answers members
/// from their view whatever they hold).
const DELEGATED_CMDS: [u32; 11] = [
    libbpf_sys::BPF_MAP_CREATE,
    libbpf_sys::BPF_PROG_LOAD,
    libbpf_sys::BPF_BTF_LOAD,
    libbpf_sys::BPF_BTF_GET_FD_BY_ID,
    libbpf_sys::BPF_MAP_GET_FD_BY_ID,
    libbpf_sys::BPF_PROG_GET_FD_BY_ID,
    libbpf_sys::BPF_LINK_GET_FD_BY_ID,
    libbpf_sys::BPF_MAP_GET_NEXT_ID,
    libbpf_sys::BPF_PROG_GET_NEXT_ID,
    libbpf_sys::BPF_LINK_GET_NEXT_ID,
    libbpf_sys::BPF_BTF_GET_NEXT_ID,
];

/// Attach types of tracing-class programs (fentry/fexit, LSM, iterators, perf events,
/// kprobe and uprobe multi, struct_ops): delegated only where the policy allows tracing.
const TRACING_ATTACH_TYPES: [u32; 14] = [
    libbpf_sys::BPF_TRACE_RAW_TP,
    libbpf_sys::BPF_TRACE_FENTRY,
    libbpf_sys::BPF_TRACE_FEXIT,
    libbpf_sys::BPF_MODIFY_RETURN,
    libbpf_sys::BPF_LSM_MAC,
    libbpf_sys::BPF_TRACE_ITER,
    libbpf_sys::BPF_PERF_EVENT,
    libbpf_sys::BPF_TRACE_KPROBE_MULTI,
    libbpf_sys::BPF_LSM_CGROUP,
    libbpf_sys::BPF_STRUCT_OPS,
    libbpf_sys::BPF_TRACE_UPROBE_MULTI,
    libbpf_sys::BPF_TRACE_KPROBE_SESSION,
    libbpf_sys::BPF_TRACE_UPROBE_SESSION,
    libbpf_sys::BPF_TRACE_FSESSION,
];

fn mask(upto: u32, keep: impl Fn(u32) -> bool) -> u64 {
    (0..upto.min(64))
        .filter(|&t| keep(t))
        .fold(0, |m, t| m | 1 << t)
}

/// What the bpffs of a user-namespace container of a namespace with (effective) `policy`
/// delegates: the policy's own four sets, within the commands above; never syscall programs
/// (they call bpf() from inside the kernel past every bpfns layer: the supervisor refuses
/// them to every member); struct_ops maps only with struct_ops programs (they exist only for
/// them); tracing attach types only where some tracing-class program type is allowed. Never
/// `any`: what a later kernel adds is not delegated unasked.
pub fn delegation(policy: Policy) -> Delegation {
    let tracing = policy.allows_some_tracing();
    let struct_ops = policy.progs.contains(libbpf_sys::BPF_PROG_TYPE_STRUCT_OPS);
    Delegation {
        cmds: DELEGATED_CMDS
            .iter()
            .filter(|&&c| policy.cmds.contains(c))
            .fold(0, |m, &c| m | 1 << c),
        maps: mask(libbpf_sys::__MAX_BPF_MAP_TYPE, |t| {
            t != libbpf_sys::BPF_MAP_TYPE_UNSPEC
                && policy.maps.contains(t)
                && (struct_ops || t != libbpf_sys::BPF_MAP_TYPE_STRUCT_OPS)
        }),
        progs: mask(libbpf_sys::__MAX_BPF_PROG_TYPE, |t| {
            t != libbpf_sys::BPF_PROG_TYPE_UNSPEC
                && t != libbpf_sys::BPF_PROG_TYPE_SYSCALL
                && policy.progs.contains(t)
        }),
        attachs: mask(libbpf_sys::__MAX_BPF_ATTACH_TYPE, |t| {
            policy.attachs.contains(t) && (tracing || !TRACING_ATTACH_TYPES.contains(&t))
        }),
    }
}

/// The instances bpfnsd made for containers since it started: namespace -> (the instance's
/// device, the container's init). A second user-namespace container of the same namespace is
/// refused while the first runs.
struct Made {
    dev: u64,
    init: OwnedFd,
    init_pid: i32,
}

fn made() -> &'static Mutex<HashMap<NsId, Made>> {
    static MADE: OnceLock<Mutex<HashMap<NsId, Made>>> = OnceLock::new();
    MADE.get_or_init(Default::default)
}

/// The device of the bpffs mounted at `path`, and whether it holds anything but the kernel's
/// preloaded iterators (`maps.debug`, `progs.debug`: pins cannot have dots in their names).
fn instance(path: &Path) -> Result<(u64, bool), bpfns_sys::SysError> {
    let dir = bpfns_sys::fs::open_dir_beneath_readable(None, path)?;
    let dev = bpfns_sys::fs::fd_stat(dir.as_fd())?.dev;
    let used = bpfns_sys::fs::dir_entries(dir.as_fd())?
        .iter()
        .any(|(n, _)| !n.to_string_lossy().contains('.'));
    Ok((dev, used))
}

impl Daemon {
    /// `container_bpffs`: make namespace `path`'s bpffs one of the user namespace of container
    /// init `pid`, delegating what the namespace's policy allows (see the module).
    ///
    /// Host administrators outside namespaces only (a runtime's hook). The init must be the
    /// one the hook just put into `path` (`enter_container`: tagged with it, started by the
    /// runtime that runs the hook) and in a user namespace other than bpfnsd's. The instance it replaces must hold
    /// no pins (they would be hidden from the namespace), and must not be the instance of
    /// another container of the namespace that still runs.
    pub(crate) fn container_bpffs(&self, caller: &Caller, path: &str, pid: i32) -> Answer {
        if !(caller.host_admin() && caller.ns == NsId::ROOT) {
            return Err(Failure::new(
                ErrorCode::Denied,
                "container_bpffs is for container runtimes: it needs CAP_SYS_ADMIN in the \
                 initial user namespace, outside any bpfns namespace",
            ));
        }
        let p = Self::parse_path(path)?;
        let _g = self.hold_changes();
        let (target, policy) = {
            let reg = self.reg();
            let id = reg
                .id(&p)
                .ok_or_else(|| Failure::new(ErrorCode::NotFound, format!("no namespace {p}")))?;
            (id, reg.effective_policy(id).unwrap_or_default())
        };
        if target == NsId::ROOT || self.is_deleting(target) {
            return Err(Failure::new(
                ErrorCode::Conflict,
                format!(
                    "namespace {p} cannot get a container's bpffs now (the root, or being deleted)"
                ),
            ));
        }
        let gone = || Failure::new(ErrorCode::NotFound, format!("no process {pid}"));
        let pidfd = bpfns_sys::process::open_pidfd(pid).map_err(|_| gone())?;
        super::oci::started_by_runtime(caller.pid, pid)?;
        let tag = self
            .kernel
            .task_ns(pidfd.as_fd())
            .map_err(Failure::internal)?;
        if tag != target {
            return Err(Failure::new(
                ErrorCode::Conflict,
                format!(
                    "process {pid} is not in namespace {p} (enter_container puts it there first)"
                ),
            ));
        }
        let other =
            bpfns_sys::userns::in_other_user_ns(pidfd.as_fd(), pid).map_err(Failure::internal)?;
        if !other {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!(
                    "process {pid} is in bpfnsd's user namespace: its container uses the \
                     namespace's bpffs as it is"
                ),
            ));
        }
        let dir = self.bpffs.path(target);
        let mut made = made().lock().unwrap_or_else(|e| e.into_inner());
        let current = if self.bpffs.is_mounted(target) {
            Some(instance(&dir).map_err(Failure::internal)?)
        } else {
            None
        };
        if let (Some((dev, _)), Some(m)) = (current, made.get(&target)) {
            if m.dev == dev && bpfns_sys::unix::pidfd_alive(m.init.as_fd()) {
                if m.init_pid == pid {
                    // A retried hook.
                    return self.container_bpffs_done(target);
                }
                return Err(Failure::new(
                    ErrorCode::Conflict,
                    format!(
                        "namespace {p}'s bpffs belongs to the user namespace of another running \
                         container (init pid {}): user-namespace containers cannot share a \
                         namespace; fix: give each its own (bpfns-oci's default, \
                         /containers/<id>, or a distinct io.bpfns.namespace)",
                        m.init_pid
                    ),
                ));
            }
        }
        // The bpffs of one user namespace serves no other (a token is made only from a bpffs
        // of the caller's own user namespace, and pins made there by others fail with
        // EOVERFLOW): a namespace with live members outside this container is shared.
        let init_pidns = bpfns_sys::mounts::namespace_inode(pid, "pid").ok();
        let outsiders = self
            .members_of(target)?
            .into_iter()
            .filter(|&t| bpfns_sys::mounts::namespace_inode(t, "pid").ok() != init_pidns)
            .count();
        if outsiders > 0 {
            return Err(Failure::new(
                ErrorCode::Conflict,
                format!(
                    "namespace {p} has {outsiders} member task(s) outside this container: a \
                     user-namespace container gets a bpffs of its own user namespace only in a \
                     namespace of its own; fix: run it in one (bpfns-oci's default, \
                     /containers/<id>, or a distinct io.bpfns.namespace)"
                ),
            ));
        }
        if let Some((_, true)) = current {
            return Err(Failure::new(
                ErrorCode::Conflict,
                format!(
                    "namespace {p}'s bpffs ({}) holds pins: a user-namespace container gets a \
                     bpffs of its own user namespace in its place, which would hide them; fix: \
                     run the container in a namespace of its own (bpfns-oci's default, \
                     /containers/<id>), or unpin them first",
                    dir.display()
                ),
            ));
        }
        let what = delegation(policy);
        let fs = bpfns_sys::userns::fsopen_bpffs_in(pidfd.as_fd()).map_err(|e| {
            Failure::new(
                ErrorCode::BadRequest,
                format!("making a bpffs in the user namespace of process {pid}: {e}"),
            )
        })?;
        let tree =
            bpfns_sys::userns::create_delegating(fs.as_fd(), &what).map_err(Failure::internal)?;
        if current.is_some() {
            self.bpffs.unmount(target).map_err(Failure::internal)?;
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| Failure::internal(format!("creating {}: {e}", dir.display())))?;
        if let Err(e) = bpfns_sys::userns::attach(tree.as_fd(), &dir) {
            // Never leave the namespace without its pin tree.
            let _ = self.bpffs.ensure(target);
            return Err(Failure::internal(e));
        }
        let (dev, _) = instance(&dir).map_err(Failure::internal)?;
        // Entries of containers that ended hold a pidfd each and decide nothing any more.
        made.retain(|_, m| bpfns_sys::unix::pidfd_alive(m.init.as_fd()));
        made.insert(
            target,
            Made {
                dev,
                init: pidfd,
                init_pid: pid,
            },
        );
        tracing::info!(
            pid,
            namespace = %p,
            cmds = format_args!("{:#x}", what.cmds),
            maps = format_args!("{:#x}", what.maps),
            progs = format_args!("{:#x}", what.progs),
            attachs = format_args!("{:#x}", what.attachs),
            "bpffs of the container's user namespace mounted at {}",
            dir.display()
        );
        self.container_bpffs_done(target)
    }

    /// The namespace, and a detached copy of its bpffs mount for the hook to attach (a
    /// runtime may run in a copy of the host's mount namespace made before the new instance
    /// was mounted: the path would show it an empty directory there).
    fn container_bpffs_done(&self, target: NsId) -> Answer {
        let info = self.ns_info_of(target, &target)?;
        let tree =
            bpfns_sys::mounts::clone_mount(&self.bpffs.path(target)).map_err(Failure::internal)?;
        Ok((Reply::Namespace(info), vec![tree]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegation_follows_the_policy() {
        let deny = delegation(Policy::DEFAULT);
        let allow = delegation(Policy::tracing(true));
        let has = |m: u64, b: u32| m & (1 << b) != 0;
        for d in [deny, allow] {
            assert!(has(d.cmds, libbpf_sys::BPF_MAP_CREATE));
            assert!(has(d.cmds, libbpf_sys::BPF_PROG_LOAD));
            assert!(!has(d.cmds, libbpf_sys::BPF_TOKEN_CREATE));
            assert!(has(d.maps, libbpf_sys::BPF_MAP_TYPE_ARRAY));
            assert!(has(d.progs, libbpf_sys::BPF_PROG_TYPE_SOCKET_FILTER));
            assert!(has(d.progs, libbpf_sys::BPF_PROG_TYPE_XDP));
            assert!(!has(d.progs, libbpf_sys::BPF_PROG_TYPE_SYSCALL));
            assert!(has(d.attachs, libbpf_sys::BPF_CGROUP_INET_INGRESS));
            // Never `any`.
            for m in [d.cmds, d.maps, d.progs, d.attachs] {
                assert_ne!(m, u64::MAX);
            }
        }
        for t in 0..libbpf_sys::__MAX_BPF_PROG_TYPE {
            if is_tracing_class(t) {
                assert!(!has(deny.progs, t), "{t}");
                assert!(has(allow.progs, t), "{t}");
            }
        }
        assert!(!has(deny.maps, libbpf_sys::BPF_MAP_TYPE_STRUCT_OPS));
        assert!(has(allow.maps, libbpf_sys::BPF_MAP_TYPE_STRUCT_OPS));
        assert!(!has(deny.attachs, libbpf_sys::BPF_TRACE_FENTRY));
        assert!(!has(deny.attachs, libbpf_sys::BPF_TRACE_KPROBE_MULTI));
        assert!(has(allow.attachs, libbpf_sys::BPF_TRACE_FENTRY));
    }

    #[test]
    fn delegation_narrows_with_the_four_sets() {
        use bpfns_model::{Field, TypeSet};
        let mut p = Policy::DEFAULT;
        p.set(
            Field::Cmds,
            TypeSet::ANY.minus(TypeSet::of([libbpf_sys::BPF_MAP_CREATE])),
        );
        p.set(Field::Maps, TypeSet::of([libbpf_sys::BPF_MAP_TYPE_ARRAY]));
        p.set(
            Field::Progs,
            TypeSet::of([libbpf_sys::BPF_PROG_TYPE_SOCKET_FILTER]),
        );
        p.set(
            Field::Attachs,
            TypeSet::of([libbpf_sys::BPF_CGROUP_INET_INGRESS]),
        );
        let d = delegation(p);
        assert_eq!(d.cmds & (1 << libbpf_sys::BPF_MAP_CREATE), 0);
        assert_ne!(d.cmds & (1 << libbpf_sys::BPF_PROG_LOAD), 0);
        assert_eq!(d.maps, 1 << libbpf_sys::BPF_MAP_TYPE_ARRAY);
        assert_eq!(d.progs, 1 << libbpf_sys::BPF_PROG_TYPE_SOCKET_FILTER);
        assert_eq!(d.attachs, 1 << libbpf_sys::BPF_CGROUP_INET_INGRESS);
    }
}
