//! The results: a table per section, as text or JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::analysis::ProgCost;
use crate::controller::{Plan, Results};
use crate::listing::{ListingResults, Method};
use crate::proto::Op;
use crate::side::Setup;
use crate::stats::Comparison;

/// Target ratio for work of untagged processes (the kernel side loaded against not loaded).
pub const UNTAGGED_TARGET: f64 = 1.01;
/// Target ratio for creation by tagged processes (against untagged work, not loaded).
pub const TAGGED_TARGET: f64 = 1.05;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub pinned_cpu: usize,
    pub bpftool: Option<String>,
    /// How an idle CPU waits (cpuidle driver, and a guest's halt polling where it has one):
    /// a wake-up of a halted virtual CPU costs tens of µs, and every cross-CPU answer of the
    /// supervisor may pay one.
    pub idle: String,
}

impl Machine {
    pub fn probe(cpus: usize, pinned_cpu: usize) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(String::new, |(_, v)| v.trim().to_string());
        let bpftool = std::process::Command::new("bpftool")
            .arg("version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_string)
            });
        Self {
            cpus,
            cpu_model,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            pinned_cpu,
            bpftool,
            idle: idle_policy(),
        }
    }
}

/// `haltpoll` with halt polling at 0 ns means an idle vCPU halts at once and a wake-up waits
/// for the hypervisor.
fn idle_policy() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let driver = read("/sys/devices/system/cpu/cpuidle/current_driver")
        .unwrap_or_else(|| "no cpuidle driver".to_string());
    match read("/sys/module/haltpoll/parameters/guest_halt_poll_ns") {
        Some(ns) => format!("cpuidle {driver}, guest halt polling up to {ns} ns"),
        None => format!("cpuidle {driver}"),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub baseline: String,
    pub subject: String,
    /// What one sample is: "op" (one operation) or "listing" (one whole listing).
    pub per: &'static str,
    pub stats: Comparison,
    /// Subject median minus baseline median, ns.
    pub delta_ns: f64,
    pub target: Option<f64>,
    pub verdict: Option<&'static str>,
}

impl Row {
    fn new(
        scenario: String,
        baseline: String,
        subject: String,
        per: &'static str,
        stats: Comparison,
        target: Option<f64>,
    ) -> Self {
        Self {
            delta_ns: stats.subject.median_ns - stats.baseline.median_ns,
            verdict: target.map(|t| verdict(&stats, t)),
            scenario,
            baseline,
            subject,
            per,
            stats,
            target,
        }
    }
}

/// Where the tagged map-creation overhead goes, ns per operation (differences of medians).
#[derive(Debug, Clone, Serialize)]
pub struct Breakdown {
    pub op: Op,
    /// Tagged, loaded, minus untagged, not loaded.
    pub total_ns: f64,
    /// A do-nothing sys_exit program minus nothing: the tracepoint and the slow syscall path.
    pub sys_exit_hook_ns: f64,
    /// Loaded, untagged, minus the do-nothing program: bpfns's filter and task-storage lookup.
    pub untagged_path_ns: f64,
    /// Tagged minus untagged, both loaded: recording ownership.
    pub recording_ns: f64,
    /// on_sys_exit's own run time per operation when tagged (BPF_ENABLE_STATS), if measured.
    pub on_sys_exit_run_ns: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    /// How to reproduce this run (as root, from the workspace).
    pub command: String,
    pub rounds_kept: usize,
    pub rounds_discarded: usize,
    /// Kept rounds during which another bpfns instance's hooks were attached
    /// (`--allow-foreign`): their figures understate the kernel side's cost.
    pub rounds_disturbed: usize,
    pub overhead: Vec<Row>,
    pub listing: Vec<Row>,
    /// Maps held for the listing, how many of them owned by the benchmark's namespace, and
    /// how many maps the host had in all.
    pub listing_maps: Option<usize>,
    pub listing_maps_owned: Option<usize>,
    pub listing_maps_total: Option<usize>,
    pub analysis: Vec<Row>,
    pub breakdown: Vec<Breakdown>,
    pub program_costs: Vec<ProgCost>,
}

impl Report {
    pub fn new(
        machine: Machine,
        args: &[String],
        plan: &Plan,
        results: &Results,
        listing: Option<&ListingResults>,
        program_costs: Vec<ProgCost>,
    ) -> Self {
        let mut command = "cargo run --release -p bpfns-bench --".to_string();
        for a in args {
            command.push(' ');
            command.push_str(a);
        }
        let cmp = |b: usize, s: usize, op: Op| {
            Comparison::new(results.rounds(b, op), results.rounds(s, op))
        };
        let base = plan.find(&Setup::None, false);
        let mut overhead = Vec::new();
        let mut analysis = Vec::new();
        let mut breakdown = Vec::new();
        if let Some(u) = base {
            for op in Op::ALL {
                if results.rounds(u, op).is_empty() {
                    continue;
                }
                for (c, cond) in plan.conditions.iter().enumerate() {
                    if c == u {
                        continue;
                    }
                    let setup = &plan.setups[cond.setup];
                    let main = *setup == Setup::Full && op != Op::NullSyscall;
                    let target = main.then_some(if cond.tagged {
                        TAGGED_TARGET
                    } else {
                        UNTAGGED_TARGET
                    });
                    let row = Row::new(
                        format!(
                            "{}, {}",
                            op.name(),
                            if cond.tagged { "tagged" } else { "untagged" }
                        ),
                        plan.label(u),
                        plan.label(c),
                        "op",
                        cmp(u, c, op),
                        target,
                    );
                    if main {
                        overhead.push(row);
                    } else {
                        analysis.push(row);
                    }
                }
                let (Some(l), Some(t), Some(e)) = (
                    plan.find(&Setup::Full, false),
                    plan.find(&Setup::Full, true),
                    plan.find(&Setup::Nop, false),
                ) else {
                    continue;
                };
                let med = |c: usize| {
                    crate::stats::median(
                        &results
                            .rounds(c, op)
                            .iter()
                            .flatten()
                            .copied()
                            .collect::<Vec<_>>(),
                    )
                };
                breakdown.push(Breakdown {
                    op,
                    total_ns: med(t) - med(u),
                    sys_exit_hook_ns: med(e) - med(u),
                    untagged_path_ns: med(l) - med(e),
                    recording_ns: med(t) - med(l),
                    on_sys_exit_run_ns: program_costs
                        .iter()
                        .find(|p| {
                            p.op == op
                                && p.tagged
                                && p.program == "on_sys_exit"
                                && p.setup == Setup::Full.label()
                        })
                        .map(|p| p.ns_per_op),
                });
            }
        }
        let mut listing_rows = Vec::new();
        if let Some(l) = listing {
            let times = |m: Method| l.times.get(&m).cloned().unwrap_or_default();
            let iter = times(Method::Iterator);
            for (m, target) in [(Method::SyscallLoop, Some(1.0)), (Method::Bpftool, None)] {
                let t = times(m);
                if t.is_empty() || iter.is_empty() {
                    continue;
                }
                // One sample per round: each round is its own "round" for the ratio spread.
                let split = |v: &[f64]| v.iter().map(|&x| vec![x]).collect::<Vec<_>>();
                listing_rows.push(Row::new(
                    format!("list {} maps with owners", l.maps),
                    m.label().to_string(),
                    Method::Iterator.label().to_string(),
                    "listing",
                    Comparison::new(&split(&t), &split(&iter)),
                    target,
                ));
            }
        }
        Self {
            machine,
            command,
            rounds_kept: results.kept_rounds,
            rounds_discarded: results.discarded_rounds,
            rounds_disturbed: results.disturbed_rounds,
            overhead,
            listing: listing_rows,
            listing_maps: listing.map(|l| l.maps),
            listing_maps_owned: listing.map(|l| l.owned_by_ns),
            listing_maps_total: listing.map(|l| l.listed),
            analysis,
            breakdown,
            program_costs,
        }
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(
            s,
            "machine: {} CPUs ({}), kernel {}, measuring processes pinned to CPU {}{}",
            m.cpus,
            m.cpu_model,
            m.kernel,
            m.pinned_cpu,
            m.bpftool
                .as_deref()
                .map(|b| format!(", {b}"))
                .unwrap_or_default()
        );
        let _ = writeln!(s, "reproduce (as root): {}", self.command);
        let _ = writeln!(
            s,
            "rounds: {} kept, {} discarded (another bpfns instance's hooks were attached meanwhile)",
            self.rounds_kept, self.rounds_discarded
        );
        if self.rounds_disturbed > 0 {
            let _ = writeln!(
                s,
                "WARNING: {} kept rounds ran while another bpfns instance's hooks were attached \
                 (--allow-foreign): \"loaded vs not loaded\" figures are too low",
                self.rounds_disturbed
            );
        }
        s.push('\n');
        let _ = writeln!(s, "== Overhead of the kernel side (ratio = subject/baseline medians; spread = lowest-highest ratio over 10 blocks of consecutive rounds; p25 r. = ratio of 25th percentiles)");
        table(&mut s, &self.overhead);
        if !self.listing.is_empty() {
            let _ = writeln!(
                s,
                "\n== Listing (one sample = one whole listing; {} maps held, {} of them owned by a namespace, {} on the host)",
                self.listing_maps.unwrap_or(0),
                self.listing_maps_owned.unwrap_or(0),
                self.listing_maps_total.unwrap_or(0)
            );
            table(&mut s, &self.listing);
        }
        if !self.analysis.is_empty() {
            let _ = writeln!(
                s,
                "\n== Analysis: other setups against untagged, not loaded"
            );
            table(&mut s, &self.analysis);
        }
        if !self.breakdown.is_empty() {
            let _ = writeln!(
                s,
                "\n== Where the tagged overhead goes (ns per operation, differences of medians)"
            );
            let _ = writeln!(
                s,
                "{:<18} {:>9} {:>15} {:>14} {:>11} {:>17}",
                "operation",
                "total",
                "sys_exit hook",
                "untagged path",
                "recording",
                "on_sys_exit run"
            );
            for b in &self.breakdown {
                let _ = writeln!(
                    s,
                    "{:<18} {:>9.0} {:>15.0} {:>14.0} {:>11.0} {:>17}",
                    b.op.name(),
                    b.total_ns,
                    b.sys_exit_hook_ns,
                    b.untagged_path_ns,
                    b.recording_ns,
                    b.on_sys_exit_run_ns
                        .map_or_else(|| "-".into(), |v| format!("{v:.0}"))
                );
            }
        }
        if !self.program_costs.is_empty() {
            let _ = writeln!(
                s,
                "\n== Program run time (BPF_ENABLE_STATS: the program body only, not the tracepoint's \
                 dispatch; ns/run includes the stats' own clock reads, about what the do-nothing \
                 program shows)"
            );
            let _ = writeln!(
                s,
                "{:<26} {:<9} {:<18} {:<12} {:>8} {:>8} {:>8}",
                "setup", "task", "operation", "program", "runs/op", "ns/run", "ns/op"
            );
            for p in self.program_costs.iter().filter(|p| p.runs_per_op >= 0.01) {
                let _ = writeln!(
                    s,
                    "{:<26} {:<9} {:<18} {:<12} {:>8.2} {:>8.1} {:>8.1}",
                    p.setup,
                    if p.tagged { "tagged" } else { "untagged" },
                    p.op.name(),
                    p.program,
                    p.runs_per_op,
                    p.ns_per_run,
                    p.ns_per_op
                );
            }
        }
        s
    }
}

/// "meets" or "misses" when the ratio and its spread over blocks of rounds are all on one side
/// of the target; "unclear" when the spread straddles it (the difference is within the noise).
pub fn verdict(c: &Comparison, target: f64) -> &'static str {
    if c.ratio <= target && c.block_ratio_max <= target {
        "meets"
    } else if c.ratio > target && c.block_ratio_min > target {
        "misses"
    } else {
        "unclear"
    }
}

/// `1234` ns as "1.23 µs", etc.
pub fn fmt_ns(ns: f64) -> String {
    if ns.abs() >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns.abs() >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn table(s: &mut String, rows: &[Row]) {
    let _ = writeln!(
        s,
        "{:<34} {:<32} {:<34} {:>21} {:>21} {:>7} {:>13} {:>7} {:>7} {:>7}",
        "scenario",
        "baseline",
        "subject",
        "baseline med (p90)",
        "subject med (p90)",
        "ratio",
        "spread",
        "p25 r.",
        "target",
        "verdict"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<34} {:<32} {:<34} {:>21} {:>21} {:>6.3}x {:>13} {:>6.3}x {:>7} {:>7}",
            r.scenario,
            r.baseline,
            r.subject,
            format!(
                "{} ({})",
                fmt_ns(r.stats.baseline.median_ns),
                fmt_ns(r.stats.baseline.p90_ns)
            ),
            format!(
                "{} ({})",
                fmt_ns(r.stats.subject.median_ns),
                fmt_ns(r.stats.subject.p90_ns)
            ),
            r.stats.ratio,
            format!(
                "{:.3}-{:.3}",
                r.stats.block_ratio_min, r.stats.block_ratio_max
            ),
            r.stats.ratio_p25,
            r.target.map_or_else(|| "-".into(), |t| format!("≤{t:.2}")),
            r.verdict.unwrap_or("-")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let c = |ratio, lo, hi| Comparison {
            baseline: crate::stats::Summary::of(&[1.0]),
            subject: crate::stats::Summary::of(&[1.0]),
            ratio,
            ratio_p25: ratio,
            block_ratio_min: lo,
            block_ratio_max: hi,
            rounds: 10,
        };
        assert_eq!(verdict(&c(1.00, 0.99, 1.01), 1.05), "meets");
        assert_eq!(verdict(&c(1.20, 1.10, 1.30), 1.05), "misses");
        assert_eq!(verdict(&c(1.04, 1.00, 1.07), 1.05), "unclear");
        assert_eq!(verdict(&c(1.06, 1.03, 1.09), 1.05), "unclear");
    }

    #[test]
    fn formats_times() {
        assert_eq!(fmt_ns(512.0), "512 ns");
        assert_eq!(fmt_ns(2530.0), "2.53 µs");
        assert_eq!(fmt_ns(41_200_000.0), "41.20 ms");
        assert_eq!(fmt_ns(-2_590_000.0), "-2.59 ms");
    }
}
