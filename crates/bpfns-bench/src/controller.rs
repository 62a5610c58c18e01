//! The controller: drives the worker through interleaved rounds of every condition.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bpfns_kernel::{abi::Stat, Kernel};
use bpfns_model::NsId;

use crate::proto::{Op, Reply, Request};
use crate::side::{hooks_settled, wait_gone, Active, Rig, Setup, BENCH_NS};

/// The worker process; killed and reaped on drop.
#[derive(Debug)]
pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    pub fn spawn(cpu: Option<usize>) -> Result<Self> {
        let exe = std::env::current_exe().context("finding this binary")?;
        let mut cmd = Command::new(exe);
        cmd.arg("worker");
        if let Some(cpu) = cpu {
            cmd.arg("--cpu").arg(cpu.to_string());
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the worker")?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("worker stdin"))?;
        let stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("worker stdout"))?,
        );
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn call(&mut self, req: &Request) -> Result<Reply> {
        let mut line = serde_json::to_string(req)?;
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
            .context("sending to the worker")?;
        let mut reply = String::new();
        if self
            .stdout
            .read_line(&mut reply)
            .context("reading from the worker")?
            == 0
        {
            bail!("the worker exited");
        }
        match serde_json::from_str(&reply).context("parsing the worker's reply")? {
            Reply::Error { message } => bail!("worker: {message}"),
            r => Ok(r),
        }
    }

    pub fn measure(&mut self, op: Op, n: usize) -> Result<Vec<u64>> {
        match self.call(&Request::Measure { op, n })? {
            Reply::Samples { ns } if ns.len() == n => Ok(ns),
            r => bail!("unexpected reply {r:?}"),
        }
    }

    pub fn hold_maps(&mut self, n: usize) -> Result<Vec<u32>> {
        match self.call(&Request::HoldMaps { n })? {
            Reply::Held { ids } => Ok(ids),
            r => bail!("unexpected reply {r:?}"),
        }
    }

    pub fn release_maps(&mut self) -> Result<()> {
        self.call(&Request::ReleaseMaps).map(drop)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `BPFNS_BENCH_VERBOSE=1`: print timings of every step to stderr.
pub fn verbose() -> bool {
    std::env::var_os("BPFNS_BENCH_VERBOSE").is_some_and(|v| v != "0")
}

pub fn check_interrupt() -> Result<()> {
    if bpfns_sys::process::interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// One measured condition: a setup, and whether the worker is tagged into a namespace.
#[derive(Debug, Clone)]
pub struct Condition {
    pub setup: usize,
    pub tagged: bool,
}

/// What to run: every condition of every round runs every op `n` times.
#[derive(Debug, Clone)]
pub struct Plan {
    pub setups: Vec<Setup>,
    pub conditions: Vec<Condition>,
    pub ops: Vec<(Op, usize)>,
    pub rounds: usize,
    /// Keep rounds during which another instance's hooks were attached (and count them).
    pub allow_foreign: bool,
}

impl Plan {
    pub fn label(&self, cond: usize) -> String {
        let c = &self.conditions[cond];
        format!(
            "{}, {}",
            if c.tagged { "tagged" } else { "untagged" },
            self.setups[c.setup].label()
        )
    }

    pub fn find(&self, setup: &Setup, tagged: bool) -> Option<usize> {
        self.conditions
            .iter()
            .position(|c| self.setups[c.setup] == *setup && c.tagged == tagged)
    }
}

/// Samples by (condition, op), one `Vec` per kept round.
#[derive(Debug, Default)]
pub struct Results {
    pub samples: BTreeMap<(usize, Op), Vec<Vec<f64>>>,
    pub kept_rounds: usize,
    pub discarded_rounds: usize,
    /// Kept rounds during which another instance's hooks were attached (`allow_foreign`).
    pub disturbed_rounds: usize,
}

impl Results {
    pub fn rounds(&self, cond: usize, op: Op) -> &[Vec<f64>] {
        self.samples.get(&(cond, op)).map_or(&[], Vec::as_slice)
    }
}

fn stat(kernel: &Kernel, which: Stat) -> Result<u64> {
    Ok(kernel
        .stats()?
        .into_iter()
        .find(|(n, _)| *n == which.name())
        .map_or(0, |(_, v)| v))
}

/// Put the worker in `ns` (tagged) or back in root, and check that the kernel agrees.
pub fn set_tag(kernel: &Kernel, worker: &Worker, tagged: bool) -> Result<()> {
    let pidfd = bpfns_sys::process::open_pidfd(worker.pid())?;
    if tagged {
        kernel.tag_process(worker.pid(), BENCH_NS)?;
    } else {
        kernel.untag(pidfd.as_fd())?;
    }
    let want = if tagged { BENCH_NS } else { NsId::ROOT };
    let got = kernel.task_ns(pidfd.as_fd())?;
    if got != want {
        bail!("worker is in namespace {got}, expected {want}");
    }
    Ok(())
}

/// Check the kernel side's count of ownership records made while `f` ran: every object a
/// tagged worker creates, nothing else.
fn checked<T>(
    kernel: Option<&Kernel>,
    op: Op,
    n: usize,
    tagged: bool,
    what: &dyn Fn() -> String,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let before = kernel.map(|k| stat(k, Stat::Recorded)).transpose()?;
    let out = f()?;
    if let (Some(k), Some(before)) = (kernel, before) {
        let recorded = stat(k, Stat::Recorded)? - before;
        let creates = matches!(op, Op::MapCreate | Op::ProgLoad);
        let want = if tagged && creates { n as u64 } else { 0 };
        if recorded != want {
            bail!(
                "{} ({}): the kernel side recorded {recorded} objects, expected {want}",
                op.name(),
                what()
            );
        }
    }
    Ok(out)
}

/// Run `plan` with everything loaded once in `rig`: every round runs, for each op in turn, one
/// short batch in every condition (rotating the order), switching conditions by attaching and
/// detaching hooks and tagging or untagging the worker. Consecutive batches of different
/// conditions are a millisecond or so apart, so slow drifts of the machine (the other CPU's
/// load, the host) hit every condition alike.
pub fn run_toggle(plan: &Plan, worker: &mut Worker, rig: &mut Rig) -> Result<Results> {
    let mut results = Results::default();
    let warmup = (plan.rounds / 20).max(2);
    for round in 0..warmup + plan.rounds {
        let mut buf: BTreeMap<(usize, Op), Vec<f64>> = BTreeMap::new();
        let mut foreign = rig.foreign_hooks()?;
        for &(op, n) in &plan.ops {
            let mut order: Vec<usize> = (0..plan.conditions.len()).collect();
            let k = round % order.len();
            order.rotate_left(k);
            for c in order {
                check_interrupt()?;
                let cond = &plan.conditions[c];
                let setup = &plan.setups[cond.setup];
                let kernel = rig.apply(setup)?;
                match kernel {
                    Some(k) => set_tag(k, worker, cond.tagged)?,
                    None if cond.tagged => bail!("a tagged condition needs the kernel side"),
                    None => {}
                }
                let verify = (*setup == Setup::Full).then_some(kernel).flatten();
                let ns = checked(verify, op, n, cond.tagged, &|| plan.label(c), || {
                    worker.measure(op, n)
                })?;
                buf.insert((c, op), ns.into_iter().map(|v| v as f64).collect());
            }
        }
        rig.apply(&Setup::None)?;
        foreign.extend(rig.foreign_hooks()?);
        if round < warmup {
            continue;
        }
        if foreign.is_empty() || plan.allow_foreign {
            results.kept_rounds += 1;
            results.disturbed_rounds += usize::from(!foreign.is_empty());
            for (k, v) in buf {
                results.samples.entry(k).or_default().push(v);
            }
        } else {
            results.discarded_rounds += 1;
            if verbose() {
                eprintln!("  round {round}: foreign hooks {foreign:?}; discarded");
            }
        }
        let r = round + 1 - warmup;
        if r.is_multiple_of(50) || r == plan.rounds {
            eprintln!(
                "  round {r}/{} ({} kept, {} discarded: another bpfns instance was loaded)",
                plan.rounds, results.kept_rounds, results.discarded_rounds
            );
        }
    }
    if results.kept_rounds == 0 {
        bail!(
            "every round was disturbed by other BPF hooks (another bpfns instance running?); \
             nothing to report"
        );
    }
    Ok(results)
}

/// Run `plan` with `worker`, loading and unloading the kernel side for every setup of every
/// round (the literal method: slower, so batches are longer and further apart in time, and
/// more exposed to the machine's drift than [`run_toggle`]).
pub fn run_reload(
    plan: &Plan,
    worker: &mut Worker,
    layout: &bpfns_kernel::PinLayout,
) -> Result<Results> {
    let mut results = Results::default();
    // Warm-up (caches, allocator, JIT pools), not recorded.
    for &(op, n) in &plan.ops {
        worker.measure(op, n.div_ceil(2))?;
    }
    for round in 0..plan.rounds {
        let mut order: Vec<usize> = (0..plan.setups.len()).collect();
        let k = round % order.len();
        order.rotate_left(k);
        let mut buf: BTreeMap<(usize, Op), Vec<f64>> = BTreeMap::new();
        let mut clean = true;
        for s in order {
            check_interrupt()?;
            let setup = &plan.setups[s];
            let t = std::time::Instant::now();
            let active = Active::bring_up(setup, layout)?;
            if verbose() {
                eprintln!("    {}: up in {:?}", setup.label(), t.elapsed());
            }
            let settle = if plan.allow_foreign {
                Duration::from_millis(300)
            } else {
                Duration::from_secs(3)
            };
            clean &= hooks_settled(active.hooks(), settle)?;
            let mut conds: Vec<usize> = (0..plan.conditions.len())
                .filter(|&c| plan.conditions[c].setup == s)
                .collect();
            let k = round % conds.len().max(1);
            conds.rotate_left(k);
            for c in conds {
                let tagged = plan.conditions[c].tagged;
                match active.kernel() {
                    Some(k) => set_tag(k, worker, tagged)?,
                    None if tagged => bail!("a tagged condition needs the kernel side"),
                    None => {}
                }
                for &(op, n) in &plan.ops {
                    check_interrupt()?;
                    let full = (*setup == Setup::Full).then(|| active.kernel()).flatten();
                    let ns = checked(full, op, n, tagged, &|| plan.label(c), || {
                        worker.measure(op, n)
                    })?;
                    buf.entry((c, op))
                        .or_default()
                        .extend(ns.into_iter().map(|v| v as f64));
                }
            }
            clean &= hooks_settled(active.hooks(), Duration::ZERO)?;
            let ids = active.hooks().clone();
            let t = std::time::Instant::now();
            drop(active);
            clean &= wait_gone(&ids, Duration::from_secs(5))?;
            if verbose() {
                eprintln!("    {}: down in {:?}", setup.label(), t.elapsed());
            }
        }
        if clean || plan.allow_foreign {
            results.kept_rounds += 1;
            results.disturbed_rounds += usize::from(!clean);
            for (k, v) in buf {
                results.samples.entry(k).or_default().push(v);
            }
        } else {
            results.discarded_rounds += 1;
            eprintln!(
                "  round {}: another bpfns instance or sys_exit hook was loaded meanwhile; \
                 round discarded",
                round + 1
            );
        }
        eprintln!(
            "  round {}/{} done ({} kept)",
            round + 1,
            plan.rounds,
            results.kept_rounds
        );
    }
    if results.kept_rounds == 0 {
        bail!(
            "every round was disturbed by other BPF hooks (another bpfns instance running?); \
             nothing to report"
        );
    }
    Ok(results)
}
