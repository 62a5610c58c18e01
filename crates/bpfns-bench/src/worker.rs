//! The worker: a child process that runs the measured operations, so that the controller can
//! tag it (and untag it) from outside, as bpfnsd tags a namespace's processes.

use std::io::{BufRead, Write};
use std::os::fd::OwnedFd;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bpfns_sys::bpf;
use bpfns_sys::process::{fork_and_wait_exit, ChildExit};

use crate::proto::{Op, Reply, Request, NULL_SYSCALL_BATCH};

const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

/// Run one operation once.
pub fn run_op(op: Op) -> Result<()> {
    match op {
        Op::MapCreate => drop(bpf::map_create(BPF_MAP_TYPE_ARRAY, "bpfns_bench", 4, 8, 1)?),
        Op::ProgLoad => drop(bpf::prog_load(
            BPF_PROG_TYPE_SOCKET_FILTER,
            "bpfns_bench",
            &bpf::RETURN_ZERO,
            bpf::ProgLoadOpts::default(),
        )?),
        Op::ForkExit => match fork_and_wait_exit()? {
            ChildExit::Exited(0) => {}
            other => bail!("forked child ended with {other:?}"),
        },
        Op::NullSyscall => {
            for _ in 0..NULL_SYSCALL_BATCH {
                std::hint::black_box(bpfns_sys::process::gettid());
            }
        }
    }
    Ok(())
}

/// Run `op` `n` times; the time of each run in nanoseconds.
pub fn measure(op: Op, n: usize) -> Result<Vec<u64>> {
    let mut ns = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        run_op(op).with_context(|| op.name())?;
        let mut elapsed = t.elapsed().as_nanos();
        if op == Op::NullSyscall {
            elapsed /= NULL_SYSCALL_BATCH as u128;
        }
        ns.push(u64::try_from(elapsed).unwrap_or(u64::MAX));
    }
    Ok(ns)
}

fn hold_maps(held: &mut Vec<OwnedFd>, n: usize) -> Result<Vec<u32>> {
    bpfns_sys::process::raise_nofile_limit((held.len() + n + 256) as u64)
        .context("raising the open-file limit for the held maps")?;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let fd = bpf::map_create(BPF_MAP_TYPE_ARRAY, "bpfns_bench_l", 4, 8, 1)?;
        ids.push(bpf::info::<bpf::bpf_map_info>(&fd)?.id);
        held.push(fd);
    }
    Ok(ids)
}

/// Serve requests from stdin until it closes.
pub fn serve(cpu: Option<usize>) -> Result<()> {
    if let Some(cpu) = cpu {
        bpfns_sys::process::pin_to_cpu(cpu)?;
    }
    // Tagged, the worker is in a namespace whose policy denies tracing: a program loaded
    // there with perfmon power (CAP_PERFMON or CAP_SYS_ADMIN) gets the task stopped.
    {
        use bpfns_sys::caps::{self, CapabilitySet};
        let sets = caps::of_current_thread()?;
        caps::set_current_thread_effective(
            sets.effective - (CapabilitySet::PERFMON | CapabilitySet::SYS_ADMIN),
        )?;
    }
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut held: Vec<OwnedFd> = Vec::new();
    for line in stdin.lines() {
        let line = line.context("reading a request")?;
        let req: Request = serde_json::from_str(&line).context("parsing a request")?;
        let result = match req {
            Request::Measure { op, n } => measure(op, n).map(|ns| Reply::Samples { ns }),
            Request::HoldMaps { n } => hold_maps(&mut held, n).map(|ids| Reply::Held { ids }),
            Request::ReleaseMaps => {
                held.clear();
                Ok(Reply::Done)
            }
        };
        let reply = result.unwrap_or_else(|e| Reply::Error {
            message: format!("{e:#}"),
        });
        serde_json::to_writer(&mut stdout, &reply)?;
        stdout.write_all(b"\n")?;
        stdout.flush()?;
    }
    Ok(())
}
