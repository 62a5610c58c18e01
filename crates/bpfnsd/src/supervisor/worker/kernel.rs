//! [`HostOps`]: the calls the supervisor thread makes in the kernel for an answer, each with
//! the credentials it needs, borrowed through [`crate::creds`] (a failure to come back
//! poisons the thread and answers `EPERM`).

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use bpfns_model::ObjectKind;
use bpfns_sys::caps::{self, CapabilitySet as C};
use bpfns_sys::fds::{self, RESOLVE_NO_MAGICLINKS};
use bpfns_sys::{rawbpf, thread, Errno, SysError};

use super::answer::{
    Answer, LoadPrep, MapPrep, Ops, Pin, QueryAnswer, QueryTarget, NAME_MAX, NO_FD, QUERY_MAX,
};
use crate::creds::{Borrow, BorrowError, FsCreds, Own};
use crate::supervisor::attr::{
    self, kind_of_link_target, off, AttachReq, Attr, Hook, HookState, ProgQuery, QueryEntry,
    TokenInfo,
};

/// The effective uid of a load made for a member: `(uid_t)-2`, which no account uses, so that
/// it owns no user namespace (the owner of a user namespace holds every capability in it).
const LOAD_UID: u32 = 0xFFFF_FFFE;

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

/// The thread's own context, which every borrow comes back to.
pub(super) struct Home {
    own: Own,
    /// `/proc/thread-self/fd`, where the thread has a private fs context.
    fd_dir: Option<OwnedFd>,
}

impl Home {
    /// Give the calling thread a private fs context (without one, what would borrow it is
    /// refused) and [`base_caps`] effective; an error only if the capabilities cannot be
    /// reduced.
    pub fn set_up() -> Result<Home, SysError> {
        let private = caps::of_current_thread()
            .and_then(Own::open)
            .and_then(|own| Ok((own, thread::open_dir(Path::new("/proc/thread-self/fd"))?)));
        let private = match private {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!("supervisor: no private fs context ({e}); OBJ_GET will be refused");
                None
            }
        };
        caps::set_current_thread_effective(base_caps())?;
        let sets = caps::of_current_thread()?;
        Ok(match private {
            Some((own, fd_dir)) => Home {
                own: Own { sets, ..own },
                fd_dir: Some(fd_dir),
            },
            None => Home {
                own: Own::caps_of_current_thread()?,
                fd_dir: None,
            },
        })
    }

    pub fn ops(&self) -> HostOps<'_> {
        HostOps {
            own: &self.own,
            fd_dir: self.fd_dir.as_ref(),
        }
    }
}

/// The supervisor thread's own kernel calls.
pub(super) struct HostOps<'a> {
    own: &'a Own,
    /// `/proc/thread-self/fd` (for `BPF_OBJ_GET` of an `O_PATH` fd through its magic link);
    /// `None` without a private fs context.
    fd_dir: Option<&'a OwnedFd>,
}

fn warned(e: BorrowError) -> Errno {
    tracing::warn!("supervisor: {e}");
    Errno::PERM
}

impl HostOps<'_> {
    /// Run `f` with `extra` added to the thread's own effective set; without it where it
    /// cannot be raised (the narrower answer).
    fn raised<T>(&self, extra: C, f: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
        let mut b = Borrow::begin(self.own).map_err(|e| e.errno())?;
        let _ = b.caps(self.own.sets.effective | extra);
        let r = f();
        b.end().map_err(|_| Errno::PERM)?;
        r
    }

    /// Run `f` with exactly `caps` effective (what the caller brings).
    fn as_caller<T>(&self, caps: C, f: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
        let mut b = Borrow::begin(self.own).map_err(|e| e.errno())?;
        // Cannot act as the caller: do not act (never with the thread's own rights).
        b.caps(caps).map_err(warned)?;
        let r = f();
        b.end().map_err(|_| Errno::PERM)?;
        r
    }

    /// Run a `BPF_PROG_QUERY` of our own (it wants `CAP_NET_ADMIN` before Linux 6.6).
    fn query_raw(&self, q: &mut Attr) -> Result<(), Errno> {
        self.raised(C::NET_ADMIN, || {
            rawbpf::sys_bpf(attr::PROG_QUERY, q.supplied_mut())
        })
        .map(|_| ())
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
}

impl Ops for HostOps<'_> {
    fn private_context(&self) -> bool {
        self.fd_dir.is_some() && self.own.fs.is_some() && self.own.netns.is_some()
    }

    fn cgroup_within(
        &self,
        target: BorrowedFd<'_>,
        bound: &str,
    ) -> Result<bpfns_sys::cgroup::Ancestry, Errno> {
        bpfns_sys::cgroup::within(target, bound)
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
    }

    fn open_by_id(&self, cmd: u32, attr: &mut Attr, syslog: bool) -> Result<OwnedFd, Errno> {
        if !syslog {
            return rawbpf::sys_bpf_fd(cmd, attr.supplied_mut());
        }
        self.raised(C::SYSLOG, || rawbpf::sys_bpf_fd(cmd, attr.supplied_mut()))
    }

    fn open_pin(&self, pin: &Pin, file_flags: u32) -> Result<OwnedFd, Errno> {
        let Some(fd_dir) = self.fd_dir else {
            return Err(Errno::PERM);
        };
        let creds = FsCreds {
            root: pin.fs.root.as_fd(),
            cwd: pin.fs.cwd.as_fd(),
            fsuid: pin.fs.fsuid,
            fsgid: pin.fs.fsgid,
            groups: &pin.fs.groups,
            caps: pin.fs.caps,
        };
        let mut b = Borrow::begin(self.own).map_err(warned)?;
        b.fs(&creds).map_err(|e| {
            tracing::warn!("supervisor: borrowing a caller's context: {e}");
            Errno::PERM
        })?;
        let r = fds::open_path_at(
            pin.dir.as_ref().map(|d| d.as_fd()),
            Path::new(OsStr::from_bytes(&pin.path)),
            RESOLVE_NO_MAGICLINKS,
        )
        .and_then(|o| {
            let name = CString::new(o.as_raw_fd().to_string()).map_err(|_| Errno::INVAL)?;
            // Checks the pin's permission bits against the borrowed credentials.
            match rawbpf::obj_get_at(fd_dir.as_fd(), &name, file_flags) {
                // Before Linux 6.5 there is no BPF_F_PATH_FD: the same lookup, relative to
                // this thread's own working directory (restored with the rest).
                Err(Errno::INVAL) => {
                    thread::change_dir(fd_dir.as_fd()).map_err(|e| e.errno)?;
                    rawbpf::obj_get_relative(&name, file_flags)
                }
                r => r,
            }
        });
        b.end().map_err(|_| Errno::PERM)?;
        r
    }

    fn object_of(&self, fd: BorrowedFd<'_>) -> Option<(ObjectKind, u32)> {
        object_of(fd)
    }

    fn link_ids_of(&self, fd: BorrowedFd<'_>) -> Option<(u32, u32)> {
        use bpfns_sys::bpf as b;
        match object_of(fd)? {
            (ObjectKind::Link, _) => b::info::<b::bpf_link_info>(fd)
                .ok()
                .map(|i| (i.id, i.prog_id)),
            _ => None,
        }
    }

    fn prog_query(
        &self,
        attr: &Attr,
        q: &ProgQuery,
        target: QueryTarget<'_>,
    ) -> Result<QueryAnswer, Errno> {
        let mut b = Borrow::begin(self.own).map_err(|e| e.errno())?;
        // Before Linux 6.6, BPF_PROG_QUERY wants CAP_NET_ADMIN itself (later CAP_SYS_ADMIN
        // will do); it is effective here only for the query.
        b.caps(self.own.sets.effective | C::NET_ADMIN)
            .map_err(|_| Errno::PERM)?;
        let r = match target {
            QueryTarget::Fd(t) => run_query(attr, q, Some(t.as_raw_fd() as u32)),
            QueryTarget::NetNs(n) => {
                if self.fd_dir.is_none() {
                    return Err(Errno::PERM);
                }
                b.net_ns(n).map_err(warned)?;
                run_query(attr, q, None)
            }
        };
        b.end().map_err(|_| Errno::PERM)?;
        r
    }

    fn task_fd_query(&self, attr: &Attr, host_pid: u32) -> Result<(Attr, Vec<u8>), Errno> {
        let mut cap = 4096u32;
        loop {
            let mut buf = vec![0u8; cap as usize];
            let mut a = attr.widened(off::T_BUF + 8);
            a.set_u32(off::T_PID, host_pid);
            a.set_u32(off::T_BUF_LEN, cap);
            a.set_u64(off::T_BUF, buf.as_mut_ptr() as u64);
            match rawbpf::sys_bpf(attr::TASK_FD_QUERY, a.supplied_mut()) {
                Ok(_) => {
                    let n = (a.u32_at(off::T_BUF_LEN) as usize).min(buf.len());
                    buf.truncate(n);
                    return Ok((a, buf));
                }
                Err(Errno::NOSPC) if cap < NAME_MAX => {
                    cap = (a.u32_at(off::T_BUF_LEN).saturating_add(1)).clamp(cap * 2, NAME_MAX);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn is_perf_event(&self, fd: BorrowedFd<'_>) -> bool {
        let target = std::fs::read_link(format!("/proc/thread-self/fd/{}", fd.as_raw_fd()));
        target.is_ok_and(|t| t.as_os_str() == "anon_inode:[perf_event]")
    }

    fn perf_query(&self, fd: BorrowedFd<'_>, caps: C) -> Result<Vec<u32>, Errno> {
        self.as_caller(caps, || rawbpf::perf_query_bpf(fd))
    }

    fn in_net_ns(&self, ns: Option<BorrowedFd<'_>>, f: &mut dyn FnMut() -> Answer) -> Answer {
        let Some(ns) = ns else {
            return f();
        };
        let mut b = match Borrow::begin(self.own) {
            Ok(b) => b,
            Err(e) => return Answer::Error(e.errno()),
        };
        if let Err(e) = b.net_ns(ns) {
            return Answer::Error(warned(e));
        }
        let out = f();
        match b.end() {
            Ok(()) => out,
            Err(_) => Answer::Error(Errno::PERM),
        }
    }

    fn query_hook(
        &self,
        hook: Hook,
        a: &AttachReq,
        target: Option<BorrowedFd<'_>>,
    ) -> Result<HookState, Errno> {
        const MAX: usize = 64;
        let target = match hook {
            Hook::Cgroup | Hook::SockMap | Hook::Lirc => {
                target.map_or(NO_FD, |f| f.as_raw_fd() as u32)
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

    fn bpf_as(&self, caps: C, cmd: u32, attr: &mut Attr) -> Result<i64, Errno> {
        self.as_caller(caps, || rawbpf::sys_bpf(cmd, attr.supplied_mut()))
    }

    fn bpf_fd_as(&self, caps: C, cmd: u32, attr: &mut Attr) -> Result<OwnedFd, Errno> {
        self.as_caller(caps, || rawbpf::sys_bpf_fd(cmd, attr.supplied_mut()))
    }

    /// The call itself: bpfnsd's buffers in the attr, the caller's network namespace where it
    /// names an interface, the load credentials (see `answer/load.rs`), then back.
    fn load(&self, p: &mut LoadPrep) -> Result<OwnedFd, Errno> {
        let ptr = |v: &[u8]| -> u64 {
            if v.is_empty() {
                0
            } else {
                v.as_ptr() as u64
            }
        };
        let a = &mut p.attr;
        // The instructions' pointer stays set when the count is 0 (the kernel answers E2BIG
        // before reading), as the caller's was.
        a.set_u64(off::L_INSNS, p.insns.as_ptr() as u64);
        a.set_u64(off::L_LICENSE, ptr(&p.license));
        a.set_u64(off::L_FUNC_INFO, ptr(&p.func_info));
        a.set_u64(off::L_LINE_INFO, ptr(&p.line_info));
        a.set_u64(off::L_CORE_RELOS, ptr(&p.core_relos));
        a.set_u64(off::L_SIGNATURE, ptr(&p.signature));
        a.set_u64(off::L_FD_ARRAY, p.fd_array.as_ref().map_or(0, |g| g.addr()));
        a.set_u64(
            off::L_LOG_BUF,
            if p.log.is_empty() {
                0
            } else {
                p.log.as_mut_ptr() as u64
            },
        );
        if !self.private_context() {
            return Err(Errno::PERM);
        }
        let mut b = Borrow::begin(self.own).map_err(|e| e.errno())?;
        if let Some(n) = &p.netns {
            b.net_ns(n.as_fd()).map_err(warned)?;
        }
        // An uid that owns no user namespace, then exactly the load capabilities (leaving
        // uid 0 cleared the effective set).
        b.euid(LOAD_UID).map_err(warned)?;
        b.caps(p.caps).map_err(warned)?;
        let r = rawbpf::sys_bpf_fd(attr::PROG_LOAD, p.attr.supplied_mut());
        b.end().map_err(|_| Errno::PERM)?;
        r
    }

    /// The child is made with the thread's own credentials (moving a process into another
    /// cgroup wants them), in the caller's network namespace where the map names an
    /// interface; it takes the map's own (an uid that owns no user namespace, `p.caps`)
    /// before the call.
    fn create_map(
        &self,
        p: &MapPrep,
        tag: Option<(BorrowedFd<'_>, [u8; 8])>,
    ) -> Result<OwnedFd, Errno> {
        let mut a = p.attr.clone();
        if !p.hash.is_empty() {
            a.set_u64(off::M_EXCL_PROG_HASH, p.hash.as_ptr() as u64);
        }
        let creds = bpfns_sys::process::ChildCreds {
            euid: LOAD_UID,
            caps: p.caps,
        };
        let tag = tag
            .as_ref()
            .map(|(map, value)| bpfns_sys::process::SelfTag {
                map: *map,
                value: value.as_slice(),
            });
        let make = || {
            bpfns_sys::process::bpf_fd_in_cgroup(
                &p.home,
                attr::MAP_CREATE,
                a.supplied(),
                creds,
                tag,
                &p.copies.iter().map(AsFd::as_fd).collect::<Vec<_>>(),
            )
        };
        match &p.netns {
            None => make(),
            Some(n) => {
                if !self.private_context() {
                    return Err(Errno::PERM);
                }
                let mut b = Borrow::begin(self.own).map_err(|e| e.errno())?;
                b.net_ns(n.as_fd()).map_err(warned)?;
                let r = make();
                b.end().map_err(|_| Errno::PERM)?;
                r
            }
        }
    }

    fn token_info(&self, fd: BorrowedFd<'_>) -> Option<TokenInfo> {
        TokenInfo::of_fd(fd)
    }

    fn kfunc_allowed(&self, btf_id: u32) -> bool {
        crate::supervisor::kfuncs::allowed_ids().contains(&btf_id)
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

/// The kind and id of the bpf object behind `fd`, if it is one.
fn object_of(fd: BorrowedFd<'_>) -> Option<(ObjectKind, u32)> {
    let target = std::fs::read_link(format!("/proc/thread-self/fd/{}", fd.as_raw_fd())).ok()?;
    let kind = kind_of_link_target(&target.to_string_lossy())?;
    object_id(kind, fd).map(|id| (kind, id))
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
