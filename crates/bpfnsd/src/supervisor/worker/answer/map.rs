//! `BPF_MAP_CREATE` for members where BPF LSM does not judge creations, made by bpfnsd from
//! its own copy of the request.
//!
//! Letting the kernel run a member's creation (`CONTINUE`) has it re-read the attr, and
//! without BPF LSM the kernel side can only judge the new map at syscall exit, after its fd
//! exists: a second thread of the member that sends that fd number over `SCM_RIGHTS` in a loop
//! keeps a map its namespace's quota, or its policy's map types, leave out. So the supervisor
//! reads the attr once, checks it, reserves the ownership record, replaces every fd the
//! request names by a copy of its own, and has a child process make the map: one created
//! straight into the caller's cgroup, because the kernel charges a map's memory to the
//! memory cgroup of the task that creates it (the tenant's memory limit keeps counting its
//! maps). The child runs with capabilities of the initial user namespace limited to what the
//! caller holds there or its token delegates (`CAP_BPF`, `CAP_NET_ADMIN`), and an effective
//! uid that owns no user namespace; never with a token. The map is recorded as the caller's
//! namespace's before its fd is injected.
//!
//! Where BPF LSM runs, the kernel refuses such creations before any fd exists, on its own
//! copy of the attr: the supervisor then lets the kernel answer (the filter traps
//! `BPF_MAP_CREATE` there only to check the map type).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use bpfns_model::ObjectKind;
use bpfns_sys::caps::CapabilitySet as C;
use bpfns_sys::Errno;

use super::{Answer, Env, Ops, Reservation, NO_FD};
use bpfns_sys::rawbpf::BPF_F_TOKEN_FD;

use crate::supervisor::attr::{self, map_caps, off, Attr, MapCreateReq, EXCL_PROG_HASH_SIZE};
use crate::supervisor::worker::caller::{Call, Caller};
use crate::supervisor::View;

/// Everything one creation needs, read from the caller before the validity check.
pub(in crate::supervisor::worker) struct MapPrep {
    /// The attr to pass: the caller's, with bpfnsd's fds; the hash pointer is set at the call.
    pub attr: Attr,
    /// `excl_prog_hash`'s bytes (empty: none given).
    pub hash: Vec<u8>,
    /// The caller's memory cgroup: the child is made there.
    pub home: bpfns_sys::cgroup::MemoryHome,
    /// bpfnsd's copies of the caller's fds, open across the call.
    pub copies: Vec<OwnedFd>,
    pub netns: Option<OwnedFd>,
    pub caps: C,
}

impl std::fmt::Debug for MapPrep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapPrep")
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

/// Read a `BPF_MAP_CREATE` the supervisor will make itself: `None` when it lets the kernel
/// answer (a root-namespace caller, BPF LSM judging creations), which [`map_create`] decides
/// again from the namespace found after the validity check.
pub(super) fn prepare(
    call: &Call,
    r: &MapCreateReq,
    caller: &dyn Caller,
    view: &dyn View,
    ops: &dyn Ops,
) -> Result<Option<Box<MapPrep>>, Errno> {
    let Ok(ns) = view.namespace_of(caller.pidfd()) else {
        return Ok(None);
    };
    if ns.is_root() || !view.supervises_creations() {
        return Ok(None);
    }
    super::zero_tail(call, caller)?;
    let mut copies: HashMap<i32, OwnedFd> = HashMap::new();
    // The caller's size: fields past it are zero to the kernel, as they are here (and a
    // field bpfnsd writes is passed whole, see `Attr::set_u32`).
    let mut a = call.attr.clone();
    for (at, v) in r.used_fds() {
        let fd = match attr::as_fd(v) {
            Some(fd) => match copies.get(&fd) {
                Some(c) => c.as_raw_fd() as u32,
                None => match caller.fd(v)? {
                    Some(c) => {
                        let n = c.as_raw_fd() as u32;
                        copies.insert(fd, c);
                        n
                    }
                    None => NO_FD,
                },
            },
            None => v,
        };
        a.set_u32(at, fd);
    }
    // A number the kernel does not resolve stays unresolved: one of bpfnsd's never stands
    // in its place.
    for (at, v) in r.unused_fds() {
        if v != 0 {
            a.set_u32(at, NO_FD);
        }
    }
    let token = if r.with_token() {
        let copy = caller.fd(r.map_token_fd)?.ok_or(Errno::BADF)?;
        // bpf_token_get_from_fd: EINVAL for a file that is not a token.
        let allows = ops
            .token_info(copy.as_fd())
            .ok_or(Errno::INVAL)?
            .allows_map(r.map_type);
        // Made without it, with what it delegates.
        a.set_u32(off::M_MAP_FLAGS, r.map_flags & !BPF_F_TOKEN_FD);
        a.set_u32(off::M_MAP_TOKEN_FD, 0);
        allows
    } else {
        if r.map_token_fd != 0 {
            a.set_u32(off::M_MAP_TOKEN_FD, NO_FD);
        }
        false
    };
    let hash = if r.excl_prog_hash != 0 {
        if r.excl_prog_hash_size != EXCL_PROG_HASH_SIZE {
            return Err(Errno::INVAL);
        }
        let mut h = vec![0u8; EXCL_PROG_HASH_SIZE as usize];
        caller.read(r.excl_prog_hash, &mut h)?;
        h
    } else {
        Vec::new()
    };
    let netns = if r.map_ifindex != 0 {
        if !ops.private_context() {
            return Err(Errno::PERM);
        }
        Some(caller.net_ns()?)
    } else {
        None
    };
    let home = caller.memory_home()?;
    if home.is_unknown() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            tracing::warn!(
                "supervisor: a member's cgroups are not mounted where bpfnsd can see them: \
                 the maps bpfnsd makes for such members are charged to bpfnsd's own memory \
                 cgroup; fix: mount cgroup2 (and a cgroup v1 memory hierarchy where memory is \
                 on v1) in bpfnsd's mount namespace"
            );
        });
    }
    Ok(Some(Box::new(MapPrep {
        attr: a,
        hash,
        home,
        copies: copies.into_values().collect(),
        netns,
        caps: map_caps(caller.caps_here(), token, r.map_ifindex != 0),
    })))
}

/// Answer a `BPF_MAP_CREATE` of a task of namespace `env.ns`.
pub(super) fn map_create(env: &Env<'_>, r: &MapCreateReq, prep: Option<Box<MapPrep>>) -> Answer {
    let ns = env.ns;
    if ns.is_root() || !env.view.supervises_creations() {
        // The map type was within the policy (checked before): the kernel's rules, with the
        // caller's credentials; BPF LSM refuses one rewritten meanwhile.
        return Answer::Continue;
    }
    let Some(p) = prep else {
        // Read for another decision (the caller's namespace changed meanwhile): ask again.
        return Answer::Error(Errno::AGAIN);
    };
    let reserved = match Reservation::take(env, ObjectKind::Map) {
        Ok(r) => r,
        Err(a) => return a,
    };
    tracing::debug!(map_type = r.map_type, "making a map");
    let made = env.ops.create_map(&p, env.view.root_tag());
    if !env.caller.waiting() {
        return Answer::Abandoned;
    }
    match made {
        Ok(fd) => reserved.record(fd),
        Err(e) => Answer::Error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::*;
    use super::*;
    use crate::supervisor::attr::{Command, ATTR_SIZE};
    use bpfns_model::NsId;
    use bpfns_sys::rawbpf::uapi as u;

    const ARRAY: u32 = 2;

    fn attr_of(fields: &[(usize, u32)]) -> Attr {
        let mut a = Attr::zeroed(ATTR_SIZE);
        for &(at, v) in fields {
            a.set_u32(at, v);
        }
        a
    }

    fn create(view: &FakeView, mem: &FakeCaller, ops: &FakeOps, a: Attr) -> Answer {
        answer_call(&call(Command::MapCreate, a, C::BPF), view, mem, ops)
    }

    fn map_ops() -> FakeOps {
        FakeOps {
            pinned: Some((ObjectKind::Map, 41)),
            ..FakeOps::default()
        }
    }

    #[test]
    fn the_kernel_answers_for_the_root_and_where_bpf_lsm_judges_creations() {
        let ops = map_ops();
        let root = FakeView::new(NsId::ROOT);
        let a = attr_of(&[(off::M_MAP_TYPE, ARRAY)]);
        assert!(matches!(
            create(&root, &FakeCaller::new(), &ops, a.clone()),
            Answer::Continue
        ));
        let mut lsm = FakeView::new(ns(1));
        lsm.makes_maps = false;
        assert!(matches!(
            create(&lsm, &FakeCaller::new(), &ops, a),
            Answer::Continue
        ));
        assert!(ops.maps.borrow().is_empty());
    }

    #[test]
    fn a_map_made_here_is_recorded_before_injection_by_an_exempted_child() {
        let ops = map_ops();
        let view = FakeView::new(ns(1));
        let member = FakeCaller::new().caps(C::BPF | C::PERFMON, true);
        let a = attr_of(&[(off::M_MAP_TYPE, ARRAY)]);
        match create(&view, &member, &ops, a) {
            Answer::Inject(_) => {}
            other => panic!("injected, not {other:?}"),
        }
        assert_eq!(*view.recorded.lock().unwrap(), vec![41]);
        assert_eq!(*view.reserved.lock().unwrap(), 1);
        assert_eq!(*view.exempted.lock().unwrap(), 1);
        // Only what a map wants of what the caller holds: no CAP_PERFMON.
        assert_eq!(ops.maps.borrow()[0].1, C::BPF);
    }

    #[test]
    fn capabilities_of_another_user_namespace_count_for_nothing_without_a_token() {
        let ops = map_ops();
        let view = FakeView::new(ns(1));
        let member = FakeCaller::new().caps(C::BPF | C::NET_ADMIN | C::SYS_ADMIN, false);
        let a = attr_of(&[(off::M_MAP_TYPE, ARRAY)]);
        assert!(matches!(create(&view, &member, &ops, a), Answer::Inject(_)));
        assert_eq!(ops.maps.borrow()[0].1, C::empty());
    }

    #[test]
    fn over_its_quota_nothing_is_made_and_a_failed_creation_gives_its_record_back() {
        let ops = map_ops();
        let mut view = FakeView::new(ns(1));
        view.quota = Some(bpfns_kernel::QuotaRefusal::KindOver {
            ns: ns(1),
            kind: ObjectKind::Map,
            used: 5,
            limit: 5,
        });
        let a = attr_of(&[(off::M_MAP_TYPE, ARRAY)]);
        assert!(matches!(
            create(&view, &FakeCaller::new(), &ops, a.clone()),
            Answer::Error(e) if e == Errno::DQUOT
        ));
        assert!(ops.maps.borrow().is_empty());
        let failing = FakeOps {
            map_result: Err(Errno::NOMEM),
            ..map_ops()
        };
        let view = FakeView::new(ns(1));
        assert!(matches!(
            create(&view, &FakeCaller::new(), &failing, a),
            Answer::Error(e) if e == Errno::NOMEM
        ));
        assert_eq!(*view.reserved.lock().unwrap(), 0);
        assert!(view.recorded.lock().unwrap().is_empty());
    }

    #[test]
    fn fds_the_kernel_resolves_become_bpfnsds_and_the_others_name_none() {
        let ops = map_ops();
        let view = FakeView::new(ns(1));
        // It holds fd 5 (its inner map), not fd 6.
        let member = FakeCaller::new().with_fds(&[5]);
        let a = attr_of(&[
            (off::M_MAP_TYPE, u::BPF_MAP_TYPE_HASH_OF_MAPS),
            (off::M_INNER_MAP_FD, 5),
            (off::M_BTF_FD, 6),
        ]);
        assert!(matches!(create(&view, &member, &ops, a), Answer::Inject(_)));
        let passed = ops.maps.borrow()[0].0.clone();
        let inner = passed.u32_at(off::M_INNER_MAP_FD);
        assert!(inner != 5 && inner != NO_FD, "bpfnsd's copy, not {inner}");
        // No BTF type id: the kernel does not resolve btf_fd, and no fd of bpfnsd's is there.
        assert_eq!(passed.u32_at(off::M_BTF_FD), NO_FD);
        // An fd the caller does not hold: one that no process has.
        let ops = map_ops();
        let a = attr_of(&[
            (off::M_MAP_TYPE, ARRAY),
            (off::M_BTF_FD, 6),
            (off::M_BTF_VALUE_TYPE_ID, 3),
        ]);
        assert!(matches!(create(&view, &member, &ops, a), Answer::Inject(_)));
        assert_eq!(ops.maps.borrow()[0].0.u32_at(off::M_BTF_FD), NO_FD);
    }

    #[test]
    fn a_token_is_taken_apart_into_what_it_delegates() {
        let token = TokenInfo {
            cmds: 1 << MAP_CREATE_CMD,
            maps: 1 << ARRAY,
            progs: 0,
            attachs: 0,
        };
        let ops = FakeOps {
            token: Some(token),
            ..map_ops()
        };
        let view = FakeView::new(ns(1));
        let member = FakeCaller::new().with_fds(&[9]).caps(C::empty(), false);
        let a = attr_of(&[
            (off::M_MAP_TYPE, ARRAY),
            (off::M_MAP_FLAGS, BPF_F_TOKEN_FD),
            (off::M_MAP_TOKEN_FD, 9),
        ]);
        assert!(matches!(
            create(&view, &member, &ops, a.clone()),
            Answer::Inject(_)
        ));
        let (passed, caps) = ops.maps.borrow()[0].clone();
        assert_eq!(passed.u32_at(off::M_MAP_FLAGS) & BPF_F_TOKEN_FD, 0);
        assert_eq!(passed.u32_at(off::M_MAP_TOKEN_FD), 0);
        assert_eq!(caps, C::BPF | C::NET_ADMIN);
        // A map type the token leaves out: made without (the kernel then refuses it).
        let ops = FakeOps {
            token: Some(token),
            ..map_ops()
        };
        let mut hash = a;
        hash.set_u32(off::M_MAP_TYPE, 1);
        assert!(matches!(
            create(&view, &member, &ops, hash),
            Answer::Inject(_)
        ));
        assert_eq!(ops.maps.borrow()[0].1, C::empty());
    }

    #[test]
    fn a_short_attr_never_hands_the_kernel_part_of_an_fd_of_bpfnsds() {
        let ops = map_ops();
        let view = FakeView::new(ns(1));
        // 22 bytes: the low half of inner_map_fd only.
        let mut a = attr_of(&[(off::M_MAP_TYPE, u::BPF_MAP_TYPE_HASH_OF_MAPS)]);
        a.set_u32(off::M_INNER_MAP_FD, 5);
        let a = Attr::from_bytes(&a.supplied()[..22]);
        let member = FakeCaller::new().with_fds(&[5]);
        assert!(matches!(create(&view, &member, &ops, a), Answer::Inject(_)));
        let passed = ops.maps.borrow()[0].0.clone();
        assert!(passed.len >= off::M_INNER_MAP_FD + 4, "{passed:?}");
        let inner = passed.u32_at(off::M_INNER_MAP_FD);
        assert!(
            inner != 5 && inner != NO_FD,
            "bpfnsd's copy, whole: {inner}"
        );
    }

    #[test]
    fn an_exclusive_maps_hash_is_copied_and_its_size_checked() {
        let ops = map_ops();
        let view = FakeView::new(ns(1));
        let member = FakeCaller::new().map(0x9000, vec![7u8; 32]);
        let mut a = attr_of(&[(off::M_MAP_TYPE, ARRAY), (off::M_EXCL_PROG_HASH_SIZE, 32)]);
        a.set_u64(off::M_EXCL_PROG_HASH, 0x9000);
        assert!(matches!(
            create(&view, &member, &ops, a.clone()),
            Answer::Inject(_)
        ));
        a.set_u32(off::M_EXCL_PROG_HASH_SIZE, 20);
        assert!(matches!(
            create(&view, &member, &ops, a),
            Answer::Error(e) if e == Errno::INVAL
        ));
    }

    const MAP_CREATE_CMD: u32 = crate::supervisor::attr::MAP_CREATE;
    use crate::supervisor::attr::TokenInfo;
}
