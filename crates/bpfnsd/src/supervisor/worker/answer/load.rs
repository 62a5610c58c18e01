//! `BPF_PROG_LOAD` for members of namespaces whose policy denies tracing, made by bpfnsd
//! itself from its own copy of the request.
//!
//! Letting the kernel run a member's load (`CONTINUE`) would have it re-read the attr and
//! judge it with the member's credentials: a racing thread could change the program type
//! after the supervisor looked at it, and a member owning the user namespace of a BPF token
//! has `CAP_PERFMON` there without holding any capability (the owner rule of
//! `ns_capable`), which gives every program type `bpf_probe_read_kernel`. So the supervisor
//! reads the attr once, then everything it points to, checks the program type on that copy,
//! replaces every file descriptor the request names by a copy of its own, and loads with
//! credentials that can never carry perfmon power: capabilities of the initial user namespace
//! limited to `CAP_BPF`, `CAP_NET_ADMIN` (and `CAP_SYSLOG`), and an effective uid that owns no
//! user namespace; never with a token. The program is recorded as the caller's namespace's
//! (within its quota) before its fd is injected.
//!
//! Every pointer in the attr bpfnsd passes is to a buffer of its own, as long as what the
//! kernel reads from it (the fd_array, which the kernel indexes on its own, between
//! inaccessible pages): a number or address of the caller's never reaches the kernel as one of
//! bpfnsd's.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use bpfns_model::{NsId, ObjectKind};
use bpfns_sys::caps::CapabilitySet as C;
use bpfns_sys::mem::GuardedBuf;
use bpfns_sys::Errno;

use super::{Answer, Env, Ops, Reservation, NO_FD};
use crate::supervisor::attr::{
    self, fd_array_len, fd_array_used, insn_fds, kfunc_refusal, load_caps, load_fd_set, load_sizes,
    load_way, off, rewrite_fd_array, rewrite_insns, signature_refusal, uses_prog_btf, Attr,
    LoadRefusal, LoadWay, ProgLoadReq, LOAD_COPY_MAX, LOAD_FDS_MAX, LOAD_TOKEN_FLAG, PROG_LOAD_END,
};
use crate::supervisor::worker::caller::{Call, Caller};
use crate::supervisor::View;

/// The license the kernel reads: at most 127 bytes (`char license[128]`).
const LICENSE_MAX: usize = 127;

/// Everything one load needs, read from the caller before the validity check.
pub(in crate::supervisor::worker) struct LoadPrep {
    /// The attr to pass: the caller's, with bpfnsd's fds; pointers are set at the call.
    pub attr: Attr,
    pub insns: Vec<u8>,
    /// With its NUL; empty when the caller passed none.
    pub license: Vec<u8>,
    pub func_info: Vec<u8>,
    pub line_info: Vec<u8>,
    pub core_relos: Vec<u8>,
    pub signature: Vec<u8>,
    pub fd_array: Option<GuardedBuf>,
    pub log: Vec<u8>,
    /// bpfnsd's copies of the caller's fds, open across the call.
    pub _copies: Vec<OwnedFd>,
    pub netns: Option<OwnedFd>,
    pub caps: C,
    /// The caller's token did delegate this load.
    pub token: bool,
}

impl std::fmt::Debug for LoadPrep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadPrep")
            .field("insns", &self.insns.len())
            .field("caps", &self.caps)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Read a `BPF_PROG_LOAD` the supervisor will make itself: `None` when it will not (a
/// root-namespace caller, a namespace that allows tracing, a refused program type), which
/// [`prog_load`] decides again from the namespace found after the validity check.
pub(super) fn prepare(
    call: &Call,
    r: &ProgLoadReq,
    caller: &dyn Caller,
    view: &dyn View,
    ops: &dyn Ops,
) -> Result<Option<Box<LoadPrep>>, Errno> {
    let Ok(ns) = view.namespace_of(caller.pidfd()) else {
        return Ok(None);
    };
    let allows = view.allows_tracing(ns).unwrap_or(false);
    if load_way(ns.is_root(), allows, r.prog_type) != LoadWay::Here {
        return Ok(None);
    }
    super::zero_tail(call, caller)?;
    let sizes = load_sizes(r)?;
    let read = |ptr: u64, n: usize| -> Result<Vec<u8>, Errno> {
        let mut v = vec![0u8; n];
        if n > 0 {
            caller.read_large(ptr, &mut v)?;
        }
        Ok(v)
    };
    let mut insns = read(r.insns, sizes.insns)?;
    let fds = insn_fds(&insns)?;
    if let Some(refusal) = signature_refusal(r, &fds) {
        log_refusal(call, ns, r.prog_type, &refusal);
        return Err(Errno::PERM);
    }
    // Loaded with CAP_BPF of the initial user namespace, the program could call every
    // generic kfunc of its type, some of which act on any task on the host.
    if let Some(refusal) = kfunc_refusal(&insns, &|id| ops.kfunc_allowed(id)) {
        log_refusal(call, ns, r.prog_type, &refusal);
        return Err(Errno::PERM);
    }
    let license = if r.license == 0 {
        Vec::new()
    } else {
        let mut l = caller.read_string(r.license, LICENSE_MAX)?;
        l.push(0);
        l
    };
    let func_info = read(r.func_info, sizes.func_info)?;
    let line_info = read(r.line_info, sizes.line_info)?;
    let core_relos = read(r.core_relos, sizes.core_relos)?;
    let signature = read(r.signature, sizes.signature)?;
    let arr_len = fd_array_len(r, &fds)?;
    if sizes.total() + arr_len as u64 * 4 > LOAD_COPY_MAX {
        return Err(Errno::TOOBIG);
    }
    let mut fd_array = if r.fd_array == 0 {
        None
    } else {
        let mut g = GuardedBuf::new(arr_len * 4, 0xff)?;
        if arr_len > 0 {
            caller.read_large(r.fd_array, g.as_mut_slice())?;
        }
        Some(g)
    };
    let used = fd_array_used(r, &fds, arr_len);
    let wanted = {
        let arr: &[u8] = match fd_array.as_mut() {
            Some(g) => g.as_mut_slice(),
            None => &[],
        };
        load_fd_set(r, &insns, &fds, arr, &used)
    };
    if wanted.len() > LOAD_FDS_MAX {
        return Err(Errno::TOOBIG);
    }
    let mut copies: HashMap<i32, OwnedFd> = HashMap::new();
    for fd in wanted {
        if let Some(copy) = caller.fd(fd as u32)? {
            copies.insert(fd, copy);
        }
    }
    // A caller fd becomes bpfnsd's copy of it, or a number no process has; a negative
    // number stays what it is (it names no fd anywhere).
    let tr = |v: u32| -> u32 {
        match attr::as_fd(v) {
            None => v,
            Some(fd) => copies.get(&fd).map_or(NO_FD, |c| c.as_raw_fd() as u32),
        }
    };
    rewrite_insns(&mut insns, &fds, &tr);
    if let Some(g) = fd_array.as_mut() {
        rewrite_fd_array(g.as_mut_slice(), &used, &tr);
    }
    let token = if r.with_token() {
        let copy = attr::as_fd(r.prog_token_fd)
            .and_then(|fd| copies.get(&fd))
            .ok_or(Errno::BADF)?;
        // bpf_token_get_from_fd: EINVAL for a file that is not a token.
        ops.token_info(copy.as_fd())
            .ok_or(Errno::INVAL)?
            .allows_load(r.prog_type, r.expected_attach_type)
    } else {
        false
    };
    let caps = load_caps(caller.caps_here(), token, r.prog_type);
    let netns = if r.prog_ifindex != 0 {
        if !ops.private_context() {
            return Err(Errno::PERM);
        }
        Some(caller.net_ns()?)
    } else {
        None
    };
    // Every field, also those past the caller's size (zeros there, as the kernel pads its
    // copy): a pointer of bpfnsd's cut short at the caller's size would name other memory
    // of bpfnsd.
    let mut a = call.attr.widened(PROG_LOAD_END);
    a.set_u32(
        off::L_PROG_BTF_FD,
        if uses_prog_btf(r) {
            tr(r.prog_btf_fd)
        } else {
            0
        },
    );
    if r.attach_prog_fd != 0 {
        a.set_u32(off::L_ATTACH_PROG_FD, tr(r.attach_prog_fd));
    }
    if r.with_token() {
        // Loaded without it, with what it delegates (above).
        a.set_u32(off::L_PROG_FLAGS, r.prog_flags & !LOAD_TOKEN_FLAG);
        a.set_u32(off::L_PROG_TOKEN_FD, 0);
    } else if r.prog_token_fd != 0 {
        a.set_u32(off::L_PROG_TOKEN_FD, tr(r.prog_token_fd));
    }
    if sizes.log > 0 {
        a.set_u32(off::L_LOG_SIZE, sizes.log as u32);
    }
    let copies: Vec<OwnedFd> = copies.into_values().collect();
    Ok(Some(Box::new(LoadPrep {
        attr: a,
        insns,
        license,
        func_info,
        line_info,
        core_relos,
        signature,
        fd_array,
        log: vec![0u8; sizes.log],
        _copies: copies,
        netns,
        caps,
        token,
    })))
}

fn log_refusal(call: &Call, ns: NsId, prog_type: u32, r: &LoadRefusal) {
    tracing::warn!(
        tid = call.tid,
        namespace = %ns,
        prog_type,
        "refused BPF_PROG_LOAD: {}; fix: {}",
        r.reason(),
        r.fix()
    );
}

/// Answer a `BPF_PROG_LOAD` of a task of namespace `env.ns`.
pub(super) fn prog_load(env: &Env<'_>, r: ProgLoadReq, prep: Option<Box<LoadPrep>>) -> Answer {
    let ns = env.ns;
    let allows = if ns.is_root() {
        false
    } else {
        match env.view.allows_tracing(ns) {
            Ok(a) => a,
            Err(e) => return Answer::view_failed("the namespace's policy", e),
        }
    };
    match load_way(ns.is_root(), allows, r.prog_type) {
        // The kernel's rules with the caller's credentials, which cannot change while it
        // waits. A racer that makes it a syscall program meanwhile is stopped by the
        // kernel side, which quarantines the program.
        LoadWay::Continue => Answer::Continue,
        LoadWay::Refuse(refusal) => {
            log_refusal(env.call, ns, r.prog_type, &refusal);
            Answer::Error(Errno::PERM)
        }
        LoadWay::Here => match prep {
            Some(p) => load_here(env, &r, *p),
            // Read for another decision (the policy changed meanwhile): ask again.
            None => Answer::Error(Errno::AGAIN),
        },
    }
}

fn load_here(env: &Env<'_>, r: &ProgLoadReq, mut p: LoadPrep) -> Answer {
    let reserved = match Reservation::take(env, ObjectKind::Prog) {
        Ok(r) => r,
        Err(a) => return a,
    };
    let loaded = env.ops.load(&mut p);
    // The caller may have gone while the verifier ran: write nothing then.
    if !env.caller.waiting() {
        return Answer::Abandoned;
    }
    // The log and its size are the caller's answer too.
    let logged = write_back_log(env, r, &p);
    match (loaded, logged) {
        (Ok(fd), Ok(())) => {
            tracing::debug!(
                prog_type = r.prog_type,
                token = p.token,
                "loading a program"
            );
            reserved.record(fd)
        }
        (Ok(_), Err(e)) => Answer::Error(e),
        // The log's failure first, as before.
        (Err(_), Err(w)) => Answer::Error(w),
        (Err(e), Ok(())) => Answer::Error(e),
    }
}

/// The verifier's log and `log_true_size`, written back to the caller.
fn write_back_log(env: &Env<'_>, r: &ProgLoadReq, p: &LoadPrep) -> Result<(), Errno> {
    let true_size = p.attr.u32_at(off::L_LOG_TRUE_SIZE);
    super::write_back_log(env, r.log_buf, &p.log, true_size, off::L_LOG_TRUE_SIZE)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::fake::*;
    use super::super::{answer, IdCache, Prepared};
    use super::*;
    use crate::supervisor::attr::{Command, Request, ATTR_SIZE};

    const ATTR_AT: u64 = 0x50_000;
    const INSNS_AT: u64 = 0x60_000;
    const LOG_AT: u64 = 0x70_000;
    const SOCKET_FILTER: u32 = 1;
    const KPROBE: u32 = 2;

    /// `r0 = 0; exit`.
    fn insns() -> Vec<u8> {
        let mut v = vec![0u8; 16];
        v[0] = 0xb7;
        v[8] = 0x95;
        v
    }

    fn req(prog_type: u32) -> ProgLoadReq {
        ProgLoadReq {
            prog_type,
            insn_cnt: 2,
            insns: INSNS_AT,
            log_level: 1,
            log_size: 64,
            log_buf: LOG_AT,
            ..ProgLoadReq::default()
        }
    }

    fn load_call() -> Call {
        let mut c = call(Command::ProgLoad, Attr::zeroed(ATTR_SIZE), C::BPF);
        c.attr_ptr = ATTR_AT;
        c
    }

    fn member() -> FakeCaller {
        FakeCaller::new()
            .caps(C::BPF | C::PERFMON | C::SYS_ADMIN, true)
            .map(ATTR_AT, vec![0u8; ATTR_SIZE])
            .map(INSNS_AT, insns())
            .map(LOG_AT, vec![0u8; 64])
    }

    fn load(view: &FakeView, mem: &FakeCaller, ops: &FakeOps, r: ProgLoadReq) -> Answer {
        let c = load_call();
        let prep = match prepare(&c, &r, mem, view, ops) {
            Ok(p) => p,
            Err(e) => return Answer::Error(e),
        };
        let env = env(&c, view, mem, ops);
        answer(
            &env,
            Request::ProgLoad(r),
            Prepared::Load(prep),
            &mut IdCache::new(Duration::ZERO),
        )
    }

    #[test]
    fn loads_are_left_to_the_kernel_for_the_root_and_where_tracing_is_allowed() {
        let ops = FakeOps::default();
        let root = FakeView::new(NsId::ROOT);
        assert!(matches!(
            load(&root, &member(), &ops, req(KPROBE)),
            Answer::Continue
        ));
        let mut tracing = FakeView::new(ns(1));
        tracing.allows_tracing = true;
        assert!(matches!(
            load(&tracing, &member(), &ops, req(KPROBE)),
            Answer::Continue
        ));
        assert!(ops.loads.borrow().is_empty());
    }

    #[test]
    fn tracing_class_and_syscall_programs_are_refused_where_tracing_is_denied() {
        let ops = FakeOps::default();
        let view = FakeView::new(ns(1));
        assert!(matches!(
            load(&view, &member(), &ops, req(KPROBE)),
            Answer::Error(Errno::PERM)
        ));
        let syscall = bpfns_sys::rawbpf::uapi::BPF_PROG_TYPE_SYSCALL;
        let mut tracing = FakeView::new(ns(1));
        tracing.allows_tracing = true;
        assert!(matches!(
            load(&tracing, &member(), &ops, req(syscall)),
            Answer::Error(Errno::PERM)
        ));
        assert!(ops.loads.borrow().is_empty());
    }

    #[test]
    fn a_load_made_here_has_no_perfmon_power_and_is_recorded_before_injection() {
        let ops = FakeOps {
            pinned: Some((bpfns_model::ObjectKind::Prog, 33)),
            ..FakeOps::default()
        };
        let view = FakeView::new(ns(1));
        assert!(matches!(
            load(&view, &member(), &ops, req(SOCKET_FILTER)),
            Answer::Inject(_)
        ));
        let caps = ops.loads.borrow()[0];
        assert!(!caps.intersects(C::PERFMON | C::SYS_ADMIN));
        assert!(caps.contains(C::BPF));
        assert_eq!(*view.recorded.lock().expect("lock"), [33]);
        assert_eq!(*view.reserved.lock().expect("lock"), 1);
    }

    #[test]
    fn a_refused_load_gives_back_its_reservation_and_the_log() {
        let ops = FakeOps {
            load_result: Err(Errno::ACCESS),
            load_log: b"R0 !read_ok\0",
            ..FakeOps::default()
        };
        let view = FakeView::new(ns(1));
        let mem = member();
        assert!(matches!(
            load(&view, &mem, &ops, req(SOCKET_FILTER)),
            Answer::Error(Errno::ACCESS)
        ));
        assert_eq!(mem.bytes(LOG_AT, 12), b"R0 !read_ok\0");
        assert_eq!(mem.u32_at(ATTR_AT + off::L_LOG_TRUE_SIZE as u64), 12);
        assert_eq!(*view.reserved.lock().expect("lock"), 0);
        assert!(view.recorded.lock().expect("lock").is_empty());
    }

    #[test]
    fn over_quota_nothing_is_loaded() {
        let ops = FakeOps::default();
        let mut view = FakeView::new(ns(1));
        view.quota = Some(bpfns_kernel::QuotaRefusal::Over {
            ns: ns(1),
            used: 10,
            limit: 10,
        });
        assert!(matches!(
            load(&view, &member(), &ops, req(SOCKET_FILTER)),
            Answer::Error(Errno::DQUOT)
        ));
        view.quota = Some(bpfns_kernel::QuotaRefusal::KindOver {
            ns: ns(1),
            kind: ObjectKind::Prog,
            used: 3,
            limit: 3,
        });
        assert!(matches!(
            load(&view, &member(), &ops, req(SOCKET_FILTER)),
            Answer::Error(Errno::DQUOT)
        ));
        // Failing closed (no limit in the kernel's tables) is no quota: EPERM.
        view.quota = Some(bpfns_kernel::QuotaRefusal::NoLimit { ns: ns(1) });
        assert!(matches!(
            load(&view, &member(), &ops, req(SOCKET_FILTER)),
            Answer::Error(Errno::PERM)
        ));
        assert!(ops.loads.borrow().is_empty());
    }

    #[test]
    fn a_caller_gone_during_the_load_is_abandoned_and_its_reservation_given_back() {
        let ops = FakeOps::default();
        let view = FakeView::new(ns(1));
        let c = load_call();
        let r = req(SOCKET_FILTER);
        let prep = prepare(&c, &r, &member(), &view, &ops).expect("read while alive");
        let gone = member().dead();
        let env = env(&c, &view, &gone, &ops);
        let a = answer(
            &env,
            Request::ProgLoad(r),
            Prepared::Load(prep),
            &mut IdCache::new(Duration::ZERO),
        );
        assert!(matches!(a, Answer::Abandoned));
        assert_eq!(*view.reserved.lock().expect("lock"), 0);
    }

    #[test]
    fn malformed_or_unreadable_requests_are_refused_before_loading() {
        let ops = FakeOps::default();
        let view = FakeView::new(ns(1));
        // Instructions past the caller's memory.
        let mut long = req(SOCKET_FILTER);
        long.insn_cnt = 3;
        assert!(matches!(
            load(&view, &member(), &ops, long),
            Answer::Error(Errno::FAULT)
        ));
        // A log without a level.
        let mut no_level = req(SOCKET_FILTER);
        no_level.log_level = 0;
        assert!(matches!(
            load(&view, &member(), &ops, no_level),
            Answer::Error(Errno::INVAL)
        ));
        // A dead caller.
        assert!(matches!(
            load(&view, &member().dead(), &ops, req(SOCKET_FILTER)),
            Answer::Error(Errno::SRCH)
        ));
        assert!(ops.loads.borrow().is_empty());
    }

    /// `r1 = 1; call kfunc btf_id (module BTF at fd_array[off] where off != 0); r0 = 0;
    /// exit`.
    fn kfunc_insns(btf_id: i32, off: i16) -> Vec<u8> {
        let mut v = vec![0u8; 32];
        v[0] = 0xb7;
        v[1] = 1;
        v[4] = 1;
        v[8] = 0x85;
        v[9] = (bpfns_sys::rawbpf::uapi::BPF_PSEUDO_KFUNC_CALL as u8) << 4;
        v[10..12].copy_from_slice(&off.to_ne_bytes());
        v[12..16].copy_from_slice(&btf_id.to_ne_bytes());
        v[16] = 0xb7;
        v[24] = 0x95;
        v
    }

    #[test]
    fn kfunc_calls_are_refused_unless_allowed_and_nothing_is_loaded() {
        // bpf_task_from_pid on the kernel the report came from; any id not allowed will do.
        const TASK_FROM_PID: i32 = 65_326;
        const ALLOWED: i32 = 64_000;
        let ops = FakeOps {
            pinned: Some((bpfns_model::ObjectKind::Prog, 33)),
            kfuncs: vec![ALLOWED as u32],
            ..FakeOps::default()
        };
        let view = FakeView::new(ns(1));
        let mut r = req(bpfns_sys::rawbpf::uapi::BPF_PROG_TYPE_CGROUP_SKB);
        r.insn_cnt = 4;
        let with = |insns: Vec<u8>| member().map(INSNS_AT + 0x1000, insns);
        r.insns = INSNS_AT + 0x1000;
        for (id, off) in [(TASK_FROM_PID, 0), (ALLOWED, 1), (ALLOWED, -1)] {
            assert!(
                matches!(
                    load(&view, &with(kfunc_insns(id, off)), &ops, r),
                    Answer::Error(Errno::PERM)
                ),
                "kfunc {id} off {off}"
            );
        }
        assert!(ops.loads.borrow().is_empty());
        assert_eq!(*view.reserved.lock().expect("lock"), 0);
        // An allowed vmlinux kfunc loads.
        assert!(matches!(
            load(&view, &with(kfunc_insns(ALLOWED, 0)), &ops, r),
            Answer::Inject(_)
        ));
        assert_eq!(ops.loads.borrow().len(), 1);
    }

    #[test]
    fn bytes_past_the_known_attr_must_be_zero() {
        let ops = FakeOps::default();
        let view = FakeView::new(ns(1));
        let mut c = load_call();
        c.attr_size = ATTR_SIZE + 8;
        let mut tail = vec![0u8; ATTR_SIZE + 8];
        tail[ATTR_SIZE + 3] = 1;
        let dirty = FakeCaller::new().map(ATTR_AT, tail).map(INSNS_AT, insns());
        assert_eq!(
            prepare(&c, &req(SOCKET_FILTER), &dirty, &view, &ops).err(),
            Some(Errno::TOOBIG)
        );
        let clean = FakeCaller::new()
            .map(ATTR_AT, vec![0u8; ATTR_SIZE + 8])
            .map(INSNS_AT, insns());
        assert!(prepare(&c, &req(SOCKET_FILTER), &clean, &view, &ops)
            .expect("zeros")
            .is_some());
    }

    #[test]
    fn the_policy_is_asked_again_after_the_validity_check() {
        let ops = FakeOps::default();
        let c = load_call();
        let view = FakeView::new(ns(1));
        let mem = member();
        let env = env(&c, &view, &mem, &ops);
        // Read for a namespace that let the kernel answer; now it denies tracing.
        let a = answer(
            &env,
            Request::ProgLoad(req(SOCKET_FILTER)),
            Prepared::Load(None),
            &mut IdCache::new(Duration::ZERO),
        );
        assert!(matches!(a, Answer::Error(Errno::AGAIN)));
        assert!(ops.loads.borrow().is_empty());
    }
}
