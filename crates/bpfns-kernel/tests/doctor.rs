//! `bpfns doctor` against the real kernel (CI runs as root; otherwise the test is skipped).

use std::time::{Duration, Instant};

use bpfns_kernel::doctor::{self, ids, Layer, Status};
use bpfns_sys::bpf::{self, ProgLoadOpts, RETURN_ZERO};
use bpfns_sys::probe;
use bpfns_sys::Errno;

const BPF_PROG_TYPE_LSM: u32 = 29;
const BPF_LSM_MAC: u32 = 27;

/// Load an `lsm/bpf_map` program ourselves, independently of the doctor.
fn lsm_load_errno() -> Option<Errno> {
    let id = match probe::vmlinux_btf_id("bpf_map", BPF_LSM_MAC) {
        Ok(id) => id,
        Err(e) => return Some(e.errno),
    };
    let opts = ProgLoadOpts {
        expected_attach_type: BPF_LSM_MAC,
        attach_btf_id: id,
        ..Default::default()
    };
    bpf::prog_load(BPF_PROG_TYPE_LSM, "lsm_oracle", &RETURN_ZERO, opts)
        .err()
        .map(|e| e.errno)
}

#[test]
fn doctor_on_the_real_kernel() {
    if !probe::is_root() {
        eprintln!("skipped: the doctor probes need root (CI runs as root)");
        return;
    }
    let start = Instant::now();
    let report = doctor::run();
    let took = start.elapsed();
    let text = report.render_text();
    println!("{text}");
    assert!(took < Duration::from_secs(30), "doctor took {took:?}");
    assert!(report.root);

    // Ids are unique and every check is there.
    let mut seen: Vec<&str> = report.checks.iter().map(|c| c.id).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), report.checks.len(), "duplicate check ids");
    for id in [
        ids::BPF_SYSCALL,
        ids::BTF,
        ids::BPFFS,
        ids::TASK_STORAGE,
        ids::TP_BTF,
        ids::TRACEFS,
        ids::TRACEPOINT,
        ids::ITERATORS,
        ids::SECCOMP_NOTIFY,
        ids::SECCOMP_ADDFD_SEND,
        ids::SECCOMP_WAIT_KILLABLE_RECV,
        ids::SECCOMP_SYNC_WAKEUP,
        ids::BPF_LSM,
        ids::FENTRY,
        ids::BPF_TOKEN,
        ids::UNPRIVILEGED_BPF,
    ] {
        assert!(report.check(id).is_some(), "no check {id}");
    }

    // Everything bpfns needs is there on the kernels we support.
    assert!(report.all_required_ok(), "{text}");
    for id in [
        ids::BPF_SYSCALL,
        ids::BTF,
        ids::BPFFS,
        ids::TASK_STORAGE,
        ids::TP_BTF,
        ids::TRACEFS,
        ids::TRACEPOINT,
        ids::ITERATORS,
        ids::SECCOMP_NOTIFY,
        ids::SECCOMP_ADDFD_SEND,
    ] {
        let c = report.check(id).expect("check");
        assert_eq!(c.status, Status::Ok, "{id}: {}", c.detail);
    }
    let layers = report.active_layers();
    assert_eq!(layers[0], Layer::Supervisor);
    assert!(layers.contains(&Layer::TracepointBackstop), "{layers:?}");

    // Every check that is not ok says why and how to fix it.
    for c in &report.checks {
        if c.status != Status::Ok {
            assert!(!c.detail.is_empty(), "{}", c.id);
            assert!(c.fix.is_some(), "{} has no fix", c.id);
            assert!(text.contains(&format!("fix: {}", c.fix.as_deref().unwrap_or(""))));
        }
    }

    // BPF LSM: compare with our own load attempt.
    let lsm = report.check(ids::BPF_LSM).expect("bpf-lsm");
    match lsm_load_errno() {
        Some(Errno::PERM) => {
            assert_eq!(lsm.status, Status::Unavailable, "{}", lsm.detail);
            assert!(
                lsm.detail
                    .contains("kernel refuses BPF LSM programs at load: EPERM"),
                "{}",
                lsm.detail
            );
            assert!(!layers.contains(&Layer::BpfLsm));
        }
        Some(e) => {
            assert_eq!(lsm.status, Status::Unavailable, "{}", lsm.detail);
            assert!(lsm.detail.contains(probe::errno_name(e)), "{}", lsm.detail);
        }
        None => {
            // Loadable: ok exactly when "bpf" is an active LSM.
            assert_eq!(
                lsm.status == Status::Ok,
                layers.contains(&Layer::BpfLsm),
                "{}",
                lsm.detail
            );
        }
    }

    // Running again changes nothing (securityfs is mounted idempotently).
    let again = doctor::run();
    assert_eq!(
        again
            .checks
            .iter()
            .map(|c| (c.id, c.status))
            .collect::<Vec<_>>(),
        report
            .checks
            .iter()
            .map(|c| (c.id, c.status))
            .collect::<Vec<_>>()
    );
    // The second run finds securityfs where the first left it (or where it already was).
    let lsm_again = &again.check(ids::BPF_LSM).expect("bpf-lsm").detail;
    assert!(!lsm_again.contains("securityfs"), "{lsm_again}");
}
