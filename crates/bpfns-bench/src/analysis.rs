//! Where the time goes: the BPF programs' own run time per operation, from the kernel's
//! `BPF_ENABLE_STATS` counters (`run_cnt`, `run_time_ns`).

use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
use bpfns_model::ObjectKind;
use bpfns_sys::bpf;
use serde::Serialize;

use crate::controller::{check_interrupt, set_tag, Worker};
use crate::proto::{Op, NULL_SYSCALL_BATCH};
use crate::side::{Rig, Setup};
use crate::stats::median;

/// One program's cost in one condition.
#[derive(Debug, Clone, Serialize)]
pub struct ProgCost {
    pub setup: String,
    pub tagged: bool,
    pub op: Op,
    pub program: String,
    /// Program runs per operation (all runs on the host while the batch ran, divided by the
    /// batch's operations: other processes' syscalls add a little).
    pub runs_per_op: f64,
    /// Mean run time of one program run, as the kernel counts it (includes the stats' own
    /// two clock reads; the do-nothing program shows how much that is).
    pub ns_per_run: f64,
    /// Program run time per operation.
    pub ns_per_op: f64,
}

fn counters(fd: &OwnedFd) -> Result<(u64, u64)> {
    let info: bpf::bpf_prog_info = bpf::info(fd)?;
    Ok((info.run_cnt, info.run_time_ns))
}

/// For each setup, untagged and (with a kernel side) tagged, each op: the median over `reps`
/// batches of `n` of the run time its hook programs add per operation.
pub fn program_costs(
    worker: &mut Worker,
    rig: &mut Rig,
    setups: &[Setup],
    ops: &[(Op, usize)],
    reps: usize,
) -> Result<Vec<ProgCost>> {
    let _stats = bpf::enable_run_time_stats().context("enabling BPF run-time stats")?;
    let mut out = Vec::new();
    for setup in setups {
        let ids: Vec<(&str, u32)> = match rig.instance(setup) {
            Some(inst) => ["on_sys_exit", "on_fork"]
                .into_iter()
                .filter_map(|n| inst.program_id(n).map(|id| (n, id)))
                .collect(),
            None => vec![("nop (sys_exit)", rig.nop_id())],
        };
        let progs: Vec<(&str, OwnedFd)> = ids
            .into_iter()
            .map(|(n, id)| Ok((n, bpf::fd_by_id(ObjectKind::Prog, id)?)))
            .collect::<Result<_>>()?;
        let has_kernel = rig.instance(setup).is_some();
        for tagged in [false, true] {
            if tagged && !has_kernel {
                continue;
            }
            if let Some(k) = rig.apply(setup)? {
                set_tag(k, worker, tagged)?;
            }
            for &(op, n) in ops {
                // Per operation: a null-syscall sample is a batch of calls.
                let calls = if op == Op::NullSyscall {
                    n * NULL_SYSCALL_BATCH
                } else {
                    n
                } as f64;
                let mut per: Vec<(Vec<f64>, Vec<f64>)> = vec![(vec![], vec![]); progs.len()];
                for _ in 0..reps {
                    check_interrupt()?;
                    let before: Vec<(u64, u64)> = progs
                        .iter()
                        .map(|(_, fd)| counters(fd))
                        .collect::<Result<_>>()?;
                    worker.measure(op, n)?;
                    for (i, (_, fd)) in progs.iter().enumerate() {
                        let (c, t) = counters(fd)?;
                        per[i].0.push((c - before[i].0) as f64 / calls);
                        per[i].1.push((t - before[i].1) as f64 / calls);
                    }
                }
                for (i, (name, _)) in progs.iter().enumerate() {
                    let runs = median(&per[i].0);
                    let ns = median(&per[i].1);
                    out.push(ProgCost {
                        setup: setup.label(),
                        tagged,
                        op,
                        program: name.to_string(),
                        runs_per_op: runs,
                        ns_per_run: if runs > 0.0 { ns / runs } else { 0.0 },
                        ns_per_op: ns,
                    });
                }
            }
        }
    }
    rig.apply(&Setup::None)?;
    Ok(out)
}
