//! The BPF LSM layer against the real kernel.
//!
//! Where the kernel runs BPF LSM programs (the VM lane boots Debian's 6.1 kernel with "bpf" in
//! `lsm=`), a namespace task's GET_FD_BY_ID of a foreign map, program, link or BTF object and
//! its BPF_OBJ_GET of a foreign pinned map or program fail with EPERM — and the task is not
//! killed: the LSM refuses before the backstop would act. Where the layer is unavailable (this
//! project's development machines refuse BPF LSM programs with EPERM; a kernel booted without
//! "bpf" in `lsm=`), the tests check that the loader and the doctor say so, with the reason,
//! and say they skip the EPERM assertions (`bpfns_tests::skip`).
//!
//! Lines starting with `lsm:` are the evidence the VM lane's console shows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::{Duration, Instant};

use bpfns_kernel::doctor::{self, ids, Layer, Status};
use bpfns_kernel::lsm::{self, LsmStatus};
use bpfns_kernel::{loader, PinLayout};
use bpfns_model::{NsId, ObjectKind};
use bpfns_sys::bpf as sysbpf;
use bpfns_tests::{killed, require_kernel, Helper, TempPin, TestKernel};

const A: NsId = NsId(31);
const A_CHILD: NsId = NsId(32);
const B: NsId = NsId(41);

/// Root ─┬─ A ── A_CHILD
///       └─ B
fn with_tree(name: &str) -> TestKernel {
    let tk = TestKernel::load(name);
    // A quota entry first (no limit of its own): the kernel side lets a namespace without one
    // create nothing.
    for ns in [A, A_CHILD, B] {
        tk.kernel.ensure_namespace_limit(ns, u64::MAX).unwrap();
    }
    tk.kernel.set_namespace(A, NsId::ROOT, 1).unwrap();
    tk.kernel.set_namespace(A_CHILD, A, 2).unwrap();
    tk.kernel.set_namespace(B, NsId::ROOT, 1).unwrap();
    tk
}

/// The layer's status for this instance (loading it again is idempotent), printed.
fn status(tk: &TestKernel) -> LsmStatus {
    let r = lsm::load(&tk.layout).unwrap();
    if let Some(plan) = &r.plan {
        eprintln!("lsm: {}", plan.summary());
    }
    eprintln!("lsm: status: {:?}", r.status);
    r.status
}

/// `true` when the layer runs; otherwise says it skips, with the reason.
fn active_or_skip(tk: &TestKernel, what: &str) -> bool {
    match status(tk) {
        LsmStatus::Active { .. } => true,
        LsmStatus::Unavailable { reason } => {
            bpfns_tests::skip(format!(
                "{what}: the BPF LSM layer is unavailable here: {reason}"
            ));
            false
        }
    }
}

/// Start a helper creating `what` in namespace `ns` (None = untagged), optionally pinned;
/// returns it (holding the object) and the object's id.
fn create_in(
    tk: &TestKernel,
    ns: Option<NsId>,
    what: &str,
    pin: Option<&TempPin>,
) -> (Helper, u32) {
    let mut args = vec!["create", what];
    let pin_str;
    if let Some(p) = pin {
        pin_str = p.0.to_string_lossy().into_owned();
        args.push(&pin_str);
    }
    let mut h = Helper::spawn(&args);
    if let Some(ns) = ns {
        tk.kernel.tag_process(h.pid, ns).unwrap();
    }
    h.go();
    let id = h.expect("id").parse().unwrap();
    (h, id)
}

/// What happened to one open.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Open {
    Opened,
    /// The call failed with this errno and the task went on to exit normally.
    Failed(i32),
    Killed,
}

fn open_as(tk: &TestKernel, ns: Option<NsId>, args: &[&str]) -> Open {
    let mut h = Helper::spawn(args);
    if let Some(ns) = ns {
        tk.kernel.tag_process(h.pid, ns).unwrap();
    }
    h.go();
    let mut line = None;
    while let Some(l) = h.line() {
        if l.starts_with("opened=") || l.starts_with("errno=") {
            line = Some(l);
            break;
        }
    }
    let status = h.finish();
    match line {
        _ if killed(status) => Open::Killed,
        Some(l) if status.success() => match l.strip_prefix("errno=") {
            Some(e) => Open::Failed(e.parse().unwrap()),
            None => Open::Opened,
        },
        other => panic!("{args:?}: unexpected outcome {other:?}, {status}"),
    }
}

const EPERM: i32 = 1;

#[test]
fn the_layer_is_reported_truthfully() {
    require_kernel!();
    let tk = with_tree("lsm-report");
    let st = status(&tk);
    // The loader's own report (a second load: idempotent) agrees.
    let again = loader::load(&tk.layout).unwrap();
    assert_eq!(again.lsm.is_active(), st.is_active(), "{:?}", again.lsm);
    // So does the doctor, which probes the kernel on its own.
    let report = doctor::run();
    let check = report.check(ids::BPF_LSM).unwrap();
    eprintln!("lsm: doctor: {} {}", check.status.label(), check.detail);
    eprintln!(
        "lsm: doctor: enforcement layers: {}",
        report
            .active_layers()
            .iter()
            .map(|l| l.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    match &st {
        LsmStatus::Active { hooks } => {
            assert!(lsm::is_active(&tk.layout));
            for h in ["bpf", "bpf_map", "bpf_prog"] {
                assert!(hooks.iter().any(|x| x == h), "{h} in {hooks:?}");
            }
            // One pinned link per hook.
            assert_eq!(lsm::pinned_links(&tk.layout).len(), hooks.len());
            assert_eq!(check.status, Status::Ok, "{}", check.detail);
            assert!(report.active_layers().contains(&Layer::BpfLsm));
        }
        LsmStatus::Unavailable { reason } => {
            assert!(!reason.is_empty());
            assert!(
                !lsm::is_active(&tk.layout),
                "nothing pinned when unavailable"
            );
            for m in lsm::LSM_MAPS {
                assert!(!tk.layout.map(m).exists(), "{m} not pinned");
            }
            assert_ne!(check.status, Status::Ok, "{}", check.detail);
            assert!(!report.active_layers().contains(&Layer::BpfLsm));
            assert!(check.fix.is_some());
            bpfns_tests::skip(format!(
                "the layer's enforcement tests: unavailable here: {reason}"
            ));
        }
    }
}

#[test]
fn loading_needs_the_kernel_side_and_unloading_is_idempotent() {
    require_kernel!();
    let layout = PinLayout::new(format!(
        "/sys/fs/bpf/bpfns-test-lsm-alone-{}",
        std::process::id()
    ));
    match lsm::load(&layout) {
        Err(bpfns_kernel::KernelError::NotLoaded { .. }) => {}
        other => panic!("expected NotLoaded, got {other:?}"),
    }
    let tk = with_tree("lsm-unload");
    let active = status(&tk).is_active();
    let removed = lsm::unload(&tk.layout).unwrap();
    assert_eq!(!removed.is_empty(), active, "{removed:?}");
    assert!(!lsm::is_active(&tk.layout));
    assert!(lsm::unload(&tk.layout).unwrap().is_empty());
    // The main kernel side is untouched.
    assert!(loader::is_loaded(&tk.layout));
}

#[test]
fn foreign_opens_are_refused_with_eperm_and_the_task_lives() {
    require_kernel!();
    let tk = with_tree("lsm-eperm");
    if !active_or_skip(&tk, "EPERM for foreign GET_FD_BY_ID / OBJ_GET") {
        return;
    }
    let before = lsm::counters(&tk.layout).unwrap().refused;
    let mut refusals = 0;
    for kind in ["map", "prog", "btf", "link"] {
        let (_h, id) = create_in(&tk, Some(A), kind, None);
        let id_s = id.to_string();
        let args = ["open", kind, id_s.as_str()];
        assert_eq!(open_as(&tk, Some(A), &args), Open::Opened, "{kind}: owner");
        assert_eq!(open_as(&tk, None, &args), Open::Opened, "{kind}: untagged");
        for (ns, who) in [(B, "sibling B"), (A_CHILD, "child of A")] {
            let got = open_as(&tk, Some(ns), &args);
            assert_eq!(got, Open::Failed(EPERM), "{kind} {id}: {who}");
            refusals += 1;
            eprintln!(
                "lsm: {who} (ns {ns}): BPF_{}_GET_FD_BY_ID {id} (owned by A) -> EPERM, task not killed",
                kind.to_uppercase()
            );
        }
    }
    // An ancestor sees its descendants' objects; nobody in a namespace sees root's.
    let (_c, child_map) = create_in(&tk, Some(A_CHILD), "map", None);
    let s = child_map.to_string();
    assert_eq!(open_as(&tk, Some(A), &["open", "map", &s]), Open::Opened);
    let (_r, root_map) = create_in(&tk, None, "map", None);
    let s = root_map.to_string();
    assert_eq!(
        open_as(&tk, Some(A), &["open", "map", &s]),
        Open::Failed(EPERM)
    );
    refusals += 1;

    // BPF_OBJ_GET of pinned maps and programs.
    let map_pin = TempPin::new("lsm-map");
    let prog_pin = TempPin::new("lsm-prog");
    let (_m, _) = create_in(&tk, Some(A), "map", Some(&map_pin));
    let (_p, _) = create_in(&tk, Some(A), "prog", Some(&prog_pin));
    for pin in [&map_pin, &prog_pin] {
        let path = pin.0.to_string_lossy().into_owned();
        let args = ["obj-get", path.as_str()];
        assert_eq!(open_as(&tk, Some(A), &args), Open::Opened, "owner: {path}");
        assert_eq!(open_as(&tk, None, &args), Open::Opened, "untagged: {path}");
        assert_eq!(
            open_as(&tk, Some(B), &args),
            Open::Failed(EPERM),
            "B: {path}"
        );
        refusals += 1;
        eprintln!("lsm: sibling B: BPF_OBJ_GET {path} (owned by A) -> EPERM, task not killed");
    }
    let after = lsm::counters(&tk.layout).unwrap().refused;
    assert!(
        after - before >= refusals,
        "refusals counted: {before} -> {after}, expected {refusals} more"
    );
    eprintln!("lsm: {refusals} foreign opens refused with EPERM (counter {before} -> {after})");
}

#[test]
fn ownership_is_recorded_at_creation_and_dropped_when_freed() {
    require_kernel!();
    let tk = with_tree("lsm-owner");
    if !active_or_skip(&tk, "ownership records from the LSM hooks") {
        return;
    }
    let before = lsm::counters(&tk.layout).unwrap();
    let mut made = Vec::new();
    for (what, kind) in [("map", ObjectKind::Map), ("prog", ObjectKind::Prog)] {
        let (h, id) = create_in(&tk, Some(B), what, None);
        assert_eq!(tk.kernel.owner(kind, id).unwrap(), B, "{what} {id}");
        made.push((h, kind, id));
    }
    let mid = lsm::counters(&tk.layout).unwrap();
    assert!(mid.recorded >= before.recorded + 2, "{before:?} -> {mid:?}");
    let free_hooks = ["lsm_map_free", "lsm_map_free_sec"]
        .iter()
        .any(|p| lsm::has_program(&tk.layout, p))
        && ["lsm_prog_free", "lsm_prog_free_sec"]
            .iter()
            .any(|p| lsm::has_program(&tk.layout, p));
    if !free_hooks {
        bpfns_tests::skip("dropping records when objects are freed: no free hooks here");
        return;
    }
    for (h, kind, id) in made {
        h.finish();
        // Freed after an RCU grace period (programs) or from a work queue (maps).
        let deadline = Instant::now() + Duration::from_secs(30);
        while tk.kernel.owner(kind, id).unwrap() != NsId::ROOT {
            assert!(Instant::now() < deadline, "{kind} {id}: record not dropped");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!sysbpf::all_ids(kind).unwrap().contains(&id));
        eprintln!("lsm: {kind} {id} freed: its ownership record was dropped by the free hook");
    }
    let after = lsm::counters(&tk.layout).unwrap();
    assert!(after.dropped >= mid.dropped + 2, "{mid:?} -> {after:?}");
}

#[test]
fn namespace_tasks_get_eperm_for_forbidden_program_types() {
    require_kernel!();
    let tk = with_tree("lsm-progtype");
    if !active_or_skip(&tk, "EPERM for syscall and tracing programs") {
        return;
    }
    // Syscall programs never; tracing-class programs (a raw tracepoint here) only where the
    // namespace's policy allows tracing.
    for what in ["syscall-prog", "rawtp-link"] {
        let mut h = Helper::spawn(&["create", what]);
        tk.kernel.tag_process(h.pid, A).unwrap();
        h.go();
        assert_eq!(h.maybe("id"), None, "{what}");
        let status = h.finish();
        // The helper reports the failed load and exits 2; the backstop had nothing to kill.
        assert_eq!(status.code(), Some(2), "{what}: {status}");
        eprintln!("lsm: namespace task: BPF_PROG_LOAD for {what} -> EPERM, task not killed");
    }
    // Nor, where tracing is denied, any program loaded with perfmon power (host root here):
    // it could read kernel memory whatever its type.
    let mut h = Helper::spawn(&["create-perfmon", "prog"]);
    tk.kernel.tag_process(h.pid, A).unwrap();
    h.go();
    assert_eq!(h.maybe("id"), None);
    let status = h.finish();
    assert_eq!(
        status.code(),
        Some(2),
        "socket filter with perfmon power: {status}"
    );
    eprintln!(
        "lsm: namespace task with CAP_SYS_ADMIN/CAP_PERFMON: BPF_PROG_LOAD of a socket filter -> \
         EPERM, task not killed"
    );
    let (_p, id) = create_in(&tk, Some(A), "prog", None);
    assert_eq!(
        tk.kernel.owner(ObjectKind::Prog, id).unwrap(),
        A,
        "without it: loaded"
    );
    tk.kernel
        .set_namespace_policy(A, NsId::ROOT, 1, true)
        .unwrap();
    let (_t, id) = create_in(&tk, Some(A), "rawtp-link", None);
    assert_eq!(tk.kernel.owner(ObjectKind::Link, id).unwrap(), A);
    // Untagged tasks may load both.
    let (_h, id) = create_in(&tk, None, "syscall-prog", None);
    assert!(id > 0);
}

/// A namespace's policy on map, program and expected attach types (the `ns_policy` map, written
/// by bpfnsd for namespaces that restrict them): BPF LSM refuses what it leaves out with EPERM
/// on the kernel's copy of the attr, so that a member that rewrote its attr after the
/// supervisor looked gets EPERM too, and lives; what the policy allows is made.
#[test]
fn types_outside_the_namespaces_policy_get_eperm() {
    use bpfns_sys::names::number;
    require_kernel!();
    let tk = with_tree("lsm-types");
    if !active_or_skip(&tk, "EPERM for types outside the namespace's policy") {
        return;
    }
    let ty = |f, name| 1u64 << number(f, name).unwrap();
    use bpfns_model::Field::{Attachs, Maps, Progs};
    tk.kernel
        .set_namespace_types(
            A,
            Some(bpfns_kernel::abi::NsTypes {
                maps: ty(Maps, "array"),
                progs: ty(Progs, "xdp"),
                attachs: ty(Attachs, "xdp"),
            }),
        )
        .unwrap();
    // Refused, the task alive: a ring buffer, a socket filter, an XDP program for devmaps.
    let xdp = number(Progs, "xdp").unwrap().to_string();
    let devmap = number(Attachs, "xdp_devmap").unwrap().to_string();
    let plain_xdp = number(Attachs, "xdp").unwrap().to_string();
    for args in [
        &["create", "ringbuf"][..],
        &["create", "prog"][..],
        &["no-perfmon", "load", &xdp, &devmap][..],
    ] {
        let mut h = Helper::spawn(args);
        tk.kernel.tag_process(h.pid, A).unwrap();
        h.go();
        let line = h.line().unwrap_or_default();
        let status = h.finish();
        assert!(!killed(status), "{args:?}: killed, not refused: {line:?}");
        assert!(
            !line.starts_with("id=") && !line.starts_with("loaded="),
            "{args:?}: made: {line:?}"
        );
        eprintln!(
            "lsm: policy maps=array progs=xdp attachs=xdp: {args:?} -> {line:?}, task not killed"
        );
    }
    let refused = lsm::counters(&tk.layout).unwrap().refused;
    assert!(refused >= 3, "refusals counted: {refused}");
    // Allowed: an array, an XDP program for xdp.
    let (_m, id) = create_in(&tk, Some(A), "map", None);
    assert_eq!(tk.kernel.owner(ObjectKind::Map, id).unwrap(), A);
    let mut h = Helper::spawn(&["no-perfmon", "load", &xdp, &plain_xdp]);
    tk.kernel.tag_process(h.pid, A).unwrap();
    h.go();
    let line = h.line().unwrap_or_default();
    h.finish();
    assert!(line.starts_with("loaded="), "{line:?}");
    // Without an entry: no restriction but the tracing class.
    tk.kernel.set_namespace_types(A, None).unwrap();
    let (_r, id) = create_in(&tk, Some(A), "ringbuf", None);
    assert_eq!(tk.kernel.owner(ObjectKind::Map, id).unwrap(), A);
}

/// A tagged task without the supervisor's filter races opens of a foreign object by id against
/// a second thread that sends the descriptor number the open lands on to another process
/// (SCM_RIGHTS), hoping to get the fd out between the open and the backstop's SIGKILL. With
/// BPF LSM the open itself is refused: nothing foreign ever exists in the task to send.
#[test]
fn a_foreign_fd_never_travels_where_bpf_lsm_refuses_the_open() {
    require_kernel!();
    let tk = with_tree("lsm-scm");
    if !active_or_skip(&tk, "foreign opens raced against SCM_RIGHTS") {
        return;
    }
    use std::os::fd::AsFd;
    for (what, kind) in [("map", ObjectKind::Map), ("btf", ObjectKind::Btf)] {
        let (_owner, id) = create_in(&tk, Some(A), what, None);
        let sock = std::path::PathBuf::from(format!(
            "/tmp/bpfns-test-lsm-scm-{what}-{}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&sock);
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        // The receiving parent: counts what arrives, and what arrives foreign.
        let receiver = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let (mut got, mut foreign) = (0u64, 0u64);
            let mut buf = [0u8; 1];
            while let Ok((n, fd)) = bpfns_sys::fds::recv_fd(s.as_fd(), &mut buf) {
                if n == 0 {
                    break;
                }
                if let Some(fd) = fd {
                    got += 1;
                    let same = match kind {
                        ObjectKind::Map => sysbpf::info::<sysbpf::bpf_map_info>(&fd).map(|i| i.id),
                        _ => sysbpf::info::<sysbpf::bpf_btf_info>(&fd).map(|i| i.id),
                    };
                    if same.is_ok_and(|i| i == id) {
                        foreign += 1;
                    }
                }
            }
            (got, foreign)
        });
        let sock_s = sock.to_string_lossy().into_owned();
        let id_s = id.to_string();
        let mut h = Helper::spawn(&["race-scm", &sock_s, what, &id_s, "3"]);
        tk.kernel.tag_process(h.pid, B).unwrap();
        h.go();
        let line = h.maybe("opens");
        let status = h.finish();
        let (got, foreign) = receiver.join().unwrap();
        let _ = std::fs::remove_file(&sock);
        assert!(status.success(), "{what}: the task was stopped: {status}");
        let line = line.unwrap_or_default();
        assert!(line.starts_with("0 "), "{what}: opened: {line}");
        assert!(!line.contains("eperm=0 "), "{what}: never refused: {line}");
        assert_eq!(foreign, 0, "{what}: {foreign} foreign fds arrived");
        eprintln!(
            "lsm: {what} {id} of A raced by B against SCM_RIGHTS for 3 s: opens={line}; \
             the parent received {got} fds, {foreign} of them foreign"
        );
    }
}

/// Where the kernel has BPF tokens (6.9+), the layer also refuses CAP_PERFMON through a token
/// to namespace tasks whose policy denies tracing (the race-free half of the perfmon rule).
#[test]
fn the_token_capability_hook_is_used_where_tokens_exist() {
    require_kernel!();
    let tk = with_tree("lsm-token-cap");
    if !active_or_skip(&tk, "lsm/bpf_token_capable") {
        return;
    }
    let plan = lsm::plan().unwrap();
    let hook = plan
        .hooks
        .iter()
        .find(|h| h.program == "lsm_token_capable")
        .unwrap();
    match &hook.params {
        None => eprintln!("lsm: no BPF tokens in this kernel: no token capability to refuse"),
        Some(p) => {
            assert!(hook.selected, "{}: {:?}", hook.signature(), hook.why_not);
            assert!(lsm::has_program(&tk.layout, "lsm_token_capable"));
            eprintln!(
                "lsm: {} refuses CAP_PERFMON where tracing is denied ({p:?})",
                hook.hook
            );
        }
    }
}

/// Over a namespace's limit of maps, BPF LSM refuses the creation with `EDQUOT` (as bpfnsd
/// answers the creations it makes) before any fd exists: a member racing to send the fd number
/// away gets nothing out, and lives.
#[test]
fn creations_over_a_quota_get_edquot_and_nothing_gets_out() {
    require_kernel!();
    let tk = with_tree("lsm-quota");
    if !active_or_skip(&tk, "EDQUOT for creations over a quota") {
        return;
    }
    let maps = bpfns_kernel::abi::kind_index(ObjectKind::Map);
    let used = tk.kernel.namespace_quota(A).unwrap().kinds[maps].used;
    let mut limits = [None; 4];
    limits[maps] = Some(used + 2);
    tk.kernel.set_namespace_kind_limits(A, limits).unwrap();
    let mut h = Helper::spawn(&["rt-smuggle", "2", "20", "fill"]);
    tk.kernel.tag_process(h.pid, A).unwrap();
    h.go();
    assert_eq!(h.expect("smuggle_filled"), "2:errno:122");
    let line = h.expect("smuggle");
    assert!(
        line.ends_with("outcomes:errno:122x20") && line.contains("killed:0 "),
        "{line}"
    );
    assert_eq!(h.expect("smuggled"), "none");
    let status = h.finish();
    assert!(status.success(), "{status}");
    eprintln!("lsm: namespace task over max_maps: BPF_MAP_CREATE -> EDQUOT, nothing sent away");
}
