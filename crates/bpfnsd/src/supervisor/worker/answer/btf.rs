//! `BPF_BTF_LOAD` for members, made by bpfnsd from its own copy of the request.
//!
//! Letting the kernel load a member's BTF (`CONTINUE`) leaves the object to the backstop's
//! judgment at syscall exit, after its fd exists (BPF LSM records no BTF object, so it refuses
//! none over a quota): a second thread that sends that fd number away over `SCM_RIGHTS` keeps
//! a BTF object past its namespace's quotas. So the supervisor
//! reads the attr and the BTF blob once, reserves the ownership record, loads the blob with
//! capabilities of the initial user namespace limited to `CAP_BPF` where the caller holds it
//! there (or its token delegates `BPF_BTF_LOAD`), never with a token, records the object as
//! the caller's namespace's, and injects its fd. The kernel charges a BTF object to no memory
//! cgroup (it is at most 16 MiB), so bpfnsd's own thread makes it.

use std::os::fd::AsFd;

use bpfns_model::ObjectKind;
use bpfns_sys::caps::CapabilitySet as C;
use bpfns_sys::rawbpf::BPF_F_TOKEN_FD;
use bpfns_sys::Errno;

use super::{Answer, Env, Ops, Reservation};
use crate::supervisor::attr::{off, Attr, BtfLoadReq, BTF_LOAD};
use crate::supervisor::worker::caller::{Call, Caller};
use crate::supervisor::View;

/// Everything one load needs, read from the caller before the validity check.
pub(in crate::supervisor::worker) struct BtfPrep {
    /// The attr to pass: the caller's, without its token; pointers are set at the call.
    pub attr: Attr,
    pub data: Vec<u8>,
    pub log: Vec<u8>,
    pub caps: C,
}

impl std::fmt::Debug for BtfPrep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BtfPrep")
            .field("data", &self.data.len())
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

/// Read a `BPF_BTF_LOAD` the supervisor will make itself: `None` when it lets the kernel
/// answer (a root-namespace caller).
pub(super) fn prepare(
    call: &Call,
    r: &BtfLoadReq,
    caller: &dyn Caller,
    view: &dyn View,
    ops: &dyn Ops,
) -> Result<Option<Box<BtfPrep>>, Errno> {
    let Ok(ns) = view.namespace_of(caller.pidfd()) else {
        return Ok(None);
    };
    if ns.is_root() {
        return Ok(None);
    }
    super::zero_tail(call, caller)?;
    let log_len = r.log_len()?;
    let mut data = vec![0u8; r.btf_size as usize];
    if !data.is_empty() {
        caller.read_large(r.btf, &mut data)?;
    }
    let mut a = call.attr.clone();
    let token = if r.with_token() {
        let copy = caller.fd(r.token_fd)?.ok_or(Errno::BADF)?;
        // bpf_token_get_from_fd: EINVAL for a file that is not a token.
        let allows = ops
            .token_info(copy.as_fd())
            .ok_or(Errno::INVAL)?
            .allows_btf();
        // Loaded without it, with what it delegates.
        a.set_u32(off::B_FLAGS, r.flags & !BPF_F_TOKEN_FD);
        a.set_u32(off::B_TOKEN_FD, 0);
        allows
    } else {
        false
    };
    let here = caller.caps_here();
    let caps = if token || here.intersects(C::BPF | C::SYS_ADMIN) {
        C::BPF
    } else {
        C::empty()
    };
    if log_len > 0 {
        a.set_u32(off::B_LOG_SIZE, log_len as u32);
    }
    Ok(Some(Box::new(BtfPrep {
        attr: a,
        data,
        log: vec![0u8; log_len],
        caps,
    })))
}

/// Answer a `BPF_BTF_LOAD` of a task of namespace `env.ns`.
pub(super) fn btf_load(env: &Env<'_>, r: &BtfLoadReq, prep: Option<Box<BtfPrep>>) -> Answer {
    let ns = env.ns;
    if ns.is_root() {
        return Answer::Continue;
    }
    let Some(mut p) = prep else {
        // Read for another decision (the caller's namespace changed meanwhile): ask again.
        return Answer::Error(Errno::AGAIN);
    };
    let reserved = match Reservation::take(env, ObjectKind::Btf) {
        Ok(r) => r,
        Err(a) => return a,
    };
    // Every pointer is to bpfnsd's copy (the blob's stays set for a size of 0, as the
    // caller's was: the kernel answers before reading).
    p.attr.set_u64(off::B_BTF, p.data.as_ptr() as u64);
    p.attr.set_u64(
        off::B_LOG_BUF,
        if p.log.is_empty() {
            0
        } else {
            p.log.as_mut_ptr() as u64
        },
    );
    let loaded = env.ops.bpf_fd_as(p.caps, BTF_LOAD, &mut p.attr);
    if !env.caller.waiting() {
        return Answer::Abandoned;
    }
    // The log and its size are the caller's answer too.
    let true_size = p.attr.u32_at(off::B_LOG_TRUE_SIZE);
    let logged = super::write_back_log(env, r.log_buf, &p.log, true_size, off::B_LOG_TRUE_SIZE);
    match (loaded, logged) {
        (Ok(fd), Ok(())) => reserved.record(fd),
        (Err(e), _) | (Ok(_), Err(e)) => Answer::Error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::*;
    use super::*;
    use crate::supervisor::attr::{Command, TokenInfo, ATTR_SIZE};
    use bpfns_model::NsId;

    const ATTR_AT: u64 = 0x50_000;
    const BTF_AT: u64 = 0x60_000;
    const LOG_AT: u64 = 0x70_000;

    fn attr_of(fields: &[(usize, u32)]) -> Attr {
        let mut a = Attr::zeroed(ATTR_SIZE);
        a.set_u64(off::B_BTF, BTF_AT);
        a.set_u32(off::B_SIZE, 24);
        for &(at, v) in fields {
            a.set_u32(at, v);
        }
        a
    }

    fn member() -> FakeCaller {
        FakeCaller::new()
            .caps(C::BPF | C::PERFMON, true)
            .map(ATTR_AT, vec![0u8; ATTR_SIZE])
            .map(BTF_AT, vec![7u8; 24])
            .map(LOG_AT, vec![0u8; 256])
    }

    fn load(view: &FakeView, mem: &FakeCaller, ops: &FakeOps, a: Attr) -> Answer {
        let mut c = call(Command::BtfLoad, a, C::BPF);
        c.attr_ptr = ATTR_AT;
        answer_call(&c, view, mem, ops)
    }

    fn btf_ops() -> FakeOps {
        FakeOps {
            pinned: Some((ObjectKind::Btf, 51)),
            ..FakeOps::default()
        }
    }

    #[test]
    fn the_kernel_answers_for_the_root_only() {
        let ops = btf_ops();
        assert!(matches!(
            load(&FakeView::new(NsId::ROOT), &member(), &ops, attr_of(&[])),
            Answer::Continue
        ));
        assert!(ops.calls().is_empty());
        // Where BPF LSM runs too: it refuses no BTF object over a quota.
        let mut lsm = FakeView::new(ns(1));
        lsm.makes_maps = false;
        assert!(matches!(
            load(&lsm, &member(), &ops, attr_of(&[])),
            Answer::Inject(_)
        ));
    }

    #[test]
    fn a_btf_object_made_here_is_recorded_with_cap_bpf_at_most() {
        let ops = btf_ops();
        let view = FakeView::new(ns(1));
        assert!(matches!(
            load(&view, &member(), &ops, attr_of(&[])),
            Answer::Inject(_)
        ));
        assert_eq!(ops.calls(), vec![(BTF_LOAD, C::BPF)]);
        assert_eq!(*view.recorded.lock().unwrap(), vec![51]);
        // Capabilities of another user namespace count for nothing without a token.
        let ops = btf_ops();
        let other = member().caps(C::BPF | C::SYS_ADMIN, false);
        assert!(matches!(
            load(&view, &other, &ops, attr_of(&[])),
            Answer::Inject(_)
        ));
        assert_eq!(ops.calls(), vec![(BTF_LOAD, C::empty())]);
    }

    #[test]
    fn over_its_quota_nothing_is_loaded() {
        let ops = btf_ops();
        let mut view = FakeView::new(ns(1));
        view.quota = Some(bpfns_kernel::QuotaRefusal::KindOver {
            ns: ns(1),
            kind: ObjectKind::Btf,
            used: 2,
            limit: 2,
        });
        assert!(matches!(
            load(&view, &member(), &ops, attr_of(&[])),
            Answer::Error(e) if e == Errno::DQUOT
        ));
        assert!(ops.calls().is_empty());
    }

    #[test]
    fn bad_sizes_get_the_kernels_answers() {
        let ops = btf_ops();
        let view = FakeView::new(ns(1));
        let big = attr_of(&[(off::B_SIZE, (16 << 20) + 1)]);
        assert!(matches!(
            load(&view, &member(), &ops, big),
            Answer::Error(e) if e == Errno::TOOBIG
        ));
        // A log size without a buffer.
        let half = attr_of(&[(off::B_LOG_SIZE, 64), (off::B_LOG_LEVEL, 1)]);
        assert!(matches!(
            load(&view, &member(), &ops, half),
            Answer::Error(e) if e == Errno::INVAL
        ));
        assert!(ops.calls().is_empty());
    }

    #[test]
    fn a_token_is_taken_apart_into_cap_bpf() {
        let ops = FakeOps {
            token: Some(TokenInfo {
                cmds: 1 << BTF_LOAD,
                maps: 0,
                progs: 0,
                attachs: 0,
            }),
            ..btf_ops()
        };
        let view = FakeView::new(ns(1));
        let mem = member().with_fds(&[9]).caps(C::empty(), false);
        let a = attr_of(&[(off::B_FLAGS, BPF_F_TOKEN_FD), (off::B_TOKEN_FD, 9)]);
        assert!(matches!(load(&view, &mem, &ops, a), Answer::Inject(_)));
        assert_eq!(ops.calls(), vec![(BTF_LOAD, C::BPF)]);
        assert_eq!(ops.last_fd_arg(off::B_TOKEN_FD), Some(0));
        assert_eq!(ops.last_fd_arg(off::B_FLAGS), Some(0));
    }
}
