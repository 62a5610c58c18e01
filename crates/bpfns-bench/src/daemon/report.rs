//! The results of `bpfns-bench daemon`: tables as text, or JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::broker::LoadResult;
use super::cpu::Usage;
use super::floor::{Floor, Mode};
use super::traps::{CreateTimes, TrapTimes};
use super::{Measured, Scenario, Sizes};
use crate::report::{fmt_ns, verdict, Machine};
use crate::stats::{median, Comparison, Summary};

/// `bpfns map list` must be at least this many times faster than `bpftool map show`.
pub const LIST_SPEEDUP_TARGET: f64 = 10.0;
/// bpftool inside a namespace, against root's bpftool over the same maps.
pub const MEMBER_TARGET: f64 = 2.0;
/// `bpfns exec NS -- true` against `unshare --mount --propagation private true`.
pub const EXEC_TARGET: f64 = 2.0;
/// FD broker with the configured clients.
pub const BROKER_RPS_TARGET: f64 = 50_000.0;
pub const BROKER_P99_TARGET_NS: f64 = 1_000_000.0;
/// A trapped call against the floor: at most this many times (the mechanism's round trip +
/// the same call made directly).
pub const TRAP_TARGET: f64 = 2.0;
/// Unmodified bpftool inside a namespace, against root's over the same maps, for the
/// supervisor's verdict.
pub const MEMBER_BPFTOOL_TARGET: f64 = 2.0;

/// Above this many CPUs of other work, the report warns that figures are disturbed.
pub const OTHER_WORK_WARNING: f64 = 0.25;

/// A direct measurement of one piece of the work.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub name: String,
    pub what: String,
    pub median_ns: f64,
    /// Objects it handled (or bytes, for an encoding).
    pub items: usize,
}

/// One process scenario over all rounds.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessRow {
    pub scenario: Scenario,
    pub label: &'static str,
    pub stats: Summary,
}

/// Baseline against subject, one sample per round each.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    pub scenario: String,
    pub baseline: String,
    pub subject: String,
    pub stats: Comparison,
    /// Subject median minus baseline median, ns.
    pub delta_ns: f64,
    /// The ratio (subject/baseline) must be at most this.
    pub target: Option<f64>,
    pub verdict: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadRow {
    pub label: String,
    pub result: LoadResult,
    pub target: Option<String>,
    pub verdict: Option<&'static str>,
}

/// The FD broker while namespace changes make events, without and with a stalled subscriber.
#[derive(Debug, Clone, Serialize)]
pub struct Stalled {
    pub alone: LoadResult,
    /// Maps the member made a second (an `object_created` each while subscribed).
    pub alone_maps_per_sec: f64,
    pub with: LoadResult,
    pub with_maps_per_sec: f64,
    /// Subscribers bpfnsd dropped during the second run (the stalled one: 1).
    pub dropped: u64,
}

/// A stalled subscriber may cost the broker at most this share of its rate.
pub const STALLED_MIN_RATIO: f64 = 0.9;

#[derive(Debug, Clone, Serialize)]
pub struct DaemonReport {
    pub machine: Machine,
    /// How to reproduce this run (as root, from the workspace).
    pub command: String,
    pub sizes: Sizes,
    pub rounds_kept: usize,
    /// Median number of the host's own maps (not the benchmark's) root's bpftool listed in
    /// the "visible maps only" phase and in the "all maps" phase.
    pub host_maps_few: usize,
    pub host_maps_all: usize,
    /// Median time to create the other maps of a round.
    pub create_other_maps_ns: f64,
    pub processes: Vec<ProcessRow>,
    pub comparisons: Vec<CompareRow>,
    pub loads: Vec<LoadRow>,
    pub analysis: Vec<Probe>,
    /// CPU over the process rounds (watched: the bench with the timed processes, the daemon,
    /// the map holders), in CPUs.
    pub rounds_cpu: Option<Usage>,
    pub traps: Vec<(String, TrapTimes)>,
    /// Map creations and program loads, root first.
    pub creates: Vec<(String, CreateTimes)>,
    pub stalled: Option<Stalled>,
    /// The seccomp user-notification floor, measured in this run.
    pub floor: Option<Floor>,
    /// Each trapped call against the floor.
    pub supervisor: Vec<TrapRow>,
    /// Row 2 as the seccomp floor of this run would have it.
    pub member_floor: Option<MemberFloor>,
}

/// Row 2 at the floor: root's bpftool per listed map, plus the least a supervisor can add to
/// each of the two trapped calls a listed map costs (a `GET_NEXT_ID` answered by reading the
/// attr and writing the id back; a `GET_FD_BY_ID` answered by reading, opening and injecting),
/// each net of the call made directly. No seccomp supervisor can list faster than this on the
/// machine that measured it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberFloor {
    /// (root's bpftool − true) per listed map.
    pub root_per_map_ns: f64,
    /// What the floor adds per map: `GET_NEXT_ID` and `GET_FD_BY_ID`.
    pub next_id_added_ns: f64,
    pub fd_by_id_added_ns: f64,
    /// The floor's ratio: (root + added) / root.
    pub floor_ratio: f64,
    /// Each member's listing work per map, and its distance from the floor.
    pub members: Vec<(String, f64, f64)>,
}

impl MemberFloor {
    fn new(
        floor: &Floor,
        root_traps: &TrapTimes,
        root_per_map_ns: f64,
        members: &[(&str, f64)],
    ) -> Option<Self> {
        let rw = floor.of(Mode::ReadCheckWrite)?;
        let open = floor.of(Mode::OpenAddFdThenSend)?;
        if root_per_map_ns <= 0.0 {
            return None;
        }
        let next_id_added_ns = (rw - root_traps.next_id_median_ns).max(0.0);
        let fd_by_id_added_ns = (open - root_traps.fd_by_id_median_ns).max(0.0);
        let at_floor = root_per_map_ns + next_id_added_ns + fd_by_id_added_ns;
        Some(Self {
            root_per_map_ns,
            next_id_added_ns,
            fd_by_id_added_ns,
            floor_ratio: at_floor / root_per_map_ns,
            members: members
                .iter()
                .map(|&(who, per_map)| (who.to_string(), per_map, per_map / at_floor))
                .collect(),
        })
    }
}

/// A trapped call against what the mechanism and the call itself cost.
#[derive(Debug, Clone, Serialize)]
pub struct TrapRow {
    /// Which member made the calls.
    pub member: String,
    pub call: &'static str,
    /// Median of the call as a supervised member.
    pub trapped_ns: f64,
    /// Median of the same call made directly (as root).
    pub direct_ns: f64,
    /// Which floor it is held against, and its median.
    pub floor: &'static str,
    pub floor_ns: f64,
    /// trapped / (floor + direct); the target is on this.
    pub ratio: f64,
    pub target: f64,
    pub verdict: &'static str,
}

/// The supervisor's rows: `member` and `root` are the traps probe's two callers.
fn trap_rows(floor: &Floor, who: &str, member: &TrapTimes, root: &TrapTimes) -> Vec<TrapRow> {
    let mut rows = Vec::new();
    let empty = floor.of(Mode::Empty);
    // An fd answer cannot be cheaper than the cheaper of the two ways to inject one.
    let inject = match (floor.of(Mode::AddFdSend), floor.of(Mode::AddFdThenSend)) {
        (Some(a), Some(b)) => Some((a.min(b), if a <= b { "ADDFD|SEND" } else { "ADDFD+SEND" })),
        _ => None,
    };
    let mut row = |call, trapped: f64, direct: f64, floor: Option<(f64, &'static str)>| {
        if let Some((f, name)) = floor {
            let ratio = trapped / (f + direct);
            rows.push(TrapRow {
                member: who.to_string(),
                call,
                trapped_ns: trapped,
                direct_ns: direct,
                floor: name,
                floor_ns: f,
                ratio,
                target: TRAP_TARGET,
                verdict: meets(ratio <= TRAP_TARGET),
            });
        }
    };
    let empty = empty.map(|e| (e, "empty"));
    row(
        "MAP_GET_NEXT_ID",
        member.next_id_median_ns,
        root.next_id_median_ns,
        empty,
    );
    row(
        "MAP_GET_NEXT_ID, first of a walk",
        member.first_next_id_ns,
        root.first_next_id_ns,
        empty,
    );
    row(
        "MAP_GET_FD_BY_ID",
        member.fd_by_id_median_ns,
        root.fd_by_id_median_ns,
        inject,
    );
    // bpfnsd injects in two steps (a call whose answer was never sent stays pending for the
    // listener keeper): held against that way too.
    row(
        "MAP_GET_FD_BY_ID (vs ADDFD+SEND, as bpfnsd)",
        member.fd_by_id_median_ns,
        root.fd_by_id_median_ns,
        floor.of(Mode::AddFdThenSend).map(|f| (f, "ADDFD+SEND")),
    );
    // Held against the least such an answer does (read, check, open, inject as bpfnsd does):
    // the distance left is bpfnsd's own work. That floor makes the open itself, so no direct
    // call is added to it.
    row(
        "MAP_GET_FD_BY_ID (vs an open answered)",
        member.fd_by_id_median_ns,
        0.0,
        floor
            .of(Mode::OpenAddFdThenSend)
            .map(|f| (f, "open answered")),
    );
    // Held against the empty round trip literally, too: what the target says as written.
    if let Some(e) = empty {
        row(
            "MAP_GET_FD_BY_ID (vs the empty round trip)",
            member.fd_by_id_median_ns,
            root.fd_by_id_median_ns,
            Some(e),
        );
    }
    rows
}

fn meets(ok: bool) -> &'static str {
    if ok {
        "meets"
    } else {
        "misses"
    }
}

fn per_round(v: &[f64]) -> Vec<Vec<f64>> {
    v.iter().map(|&x| vec![x]).collect()
}

fn usize_median(v: &[usize]) -> usize {
    let f: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    let m = median(&f);
    if m.is_nan() {
        0
    } else {
        m.round() as usize
    }
}

impl DaemonReport {
    pub fn new(machine: Machine, args: &[String], sizes: &Sizes, m: &Measured) -> Self {
        let mut command = "cargo build --release -p bpfnsd -p bpfns-cli -p bpfns-bench && \
                           target/release/bpfns-bench"
            .to_string();
        for a in args {
            command.push(' ');
            command.push_str(a);
        }
        let t = |s: Scenario| m.times.get(&s).cloned().unwrap_or_default();
        let processes = m
            .times
            .iter()
            .map(|(&s, v)| ProcessRow {
                scenario: s,
                label: s.label(),
                stats: Summary::of(v),
            })
            .collect();
        let host_few = usize_median(&m.host_maps_few);
        let host_all = usize_median(&m.host_maps_all);
        let mut comparisons = Vec::new();
        let mut cmp = |scenario: String,
                       baseline: String,
                       subject: String,
                       b: &[f64],
                       s: &[f64],
                       target: Option<f64>| {
            if b.is_empty() || s.is_empty() {
                return;
            }
            let stats = Comparison::new(&per_round(b), &per_round(s));
            comparisons.push(CompareRow {
                delta_ns: stats.subject.median_ns - stats.baseline.median_ns,
                verdict: target.map(|x| verdict(&stats, x)),
                scenario,
                baseline,
                subject,
                stats,
                target,
            });
        };
        let all = sizes.maps + host_all;
        let few = sizes.visible + host_few;
        // The listing work alone: each process minus its fixed cost, per listed map.
        let net = |a: &[f64], b: &[f64], n: usize| -> Vec<f64> {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y) / n.max(1) as f64)
                .collect()
        };
        let mut per_map_members = Vec::new();
        cmp(
            format!("1. list {all} maps from the root (≥{LIST_SPEEDUP_TARGET}x faster)"),
            Scenario::RootBpftoolAll.label().into(),
            Scenario::BpfnsList.label().into(),
            &t(Scenario::RootBpftoolAll),
            &t(Scenario::BpfnsList),
            Some(1.0 / LIST_SPEEDUP_TARGET),
        );
        for (member, exec, who) in [
            (
                Scenario::MemberRootBpftool,
                Scenario::ExecTrue,
                "host-root member",
            ),
            (
                Scenario::MemberCapBpfBpftool,
                Scenario::ExecCapBpfTrue,
                "CAP_BPF-only member",
            ),
        ] {
            cmp(
                format!(
                    "2. bpftool in NS, {who}: {} visible of {all} vs root over {few}",
                    sizes.visible
                ),
                Scenario::RootBpftoolFew.label().into(),
                member.label().into(),
                &t(Scenario::RootBpftoolFew),
                &t(member),
                Some(MEMBER_TARGET),
            );
            let member_net = net(&t(member), &t(exec), sizes.visible);
            if !member_net.is_empty() {
                per_map_members.push((who, median(&member_net)));
            }
            cmp(
                format!("2. per listed map, {who}, fixed costs subtracted"),
                format!("(root bpftool − true) / {few} maps"),
                format!(
                    "({} − {}) / {} maps",
                    "member bpftool",
                    if exec == Scenario::ExecTrue {
                        "exec true"
                    } else {
                        "exec setpriv true"
                    },
                    sizes.visible
                ),
                &net(&t(Scenario::RootBpftoolFew), &t(Scenario::True), few),
                &member_net,
                Some(MEMBER_TARGET),
            );
        }
        let root_net = net(&t(Scenario::RootBpftoolFew), &t(Scenario::True), few);
        let member_floor = match (&m.floor, m.traps.get(1)) {
            (Some(f), Some((_, root))) if !root_net.is_empty() => {
                MemberFloor::new(f, root, median(&root_net), &per_map_members)
            }
            _ => None,
        };
        cmp(
            "fixed cost of bpfns exec (host root)".into(),
            Scenario::True.label().into(),
            Scenario::ExecTrue.label().into(),
            &t(Scenario::True),
            &t(Scenario::ExecTrue),
            None,
        );
        cmp(
            format!("3. bpfns exec fixed cost vs a private mount namespace (≤{EXEC_TARGET}x)"),
            Scenario::UnshareTrue.label().into(),
            Scenario::ExecTrue.label().into(),
            &t(Scenario::UnshareTrue),
            &t(Scenario::ExecTrue),
            Some(EXEC_TARGET),
        );
        cmp(
            "fixed cost of bpfns exec + setpriv".into(),
            Scenario::True.label().into(),
            Scenario::ExecCapBpfTrue.label().into(),
            &t(Scenario::True),
            &t(Scenario::ExecCapBpfTrue),
            None,
        );
        let loads = m
            .loads
            .iter()
            .map(|(label, r)| {
                let full = r.op == super::broker::LoadOp::GetFd && r.threads == sizes.clients;
                let p99_ok = r.p99_ns < BROKER_P99_TARGET_NS;
                let (target, verdict) = match (full, r.rate) {
                    (true, None) => (
                        Some(format!(
                            "≥{}k/s, p99<{}",
                            BROKER_RPS_TARGET / 1000.0,
                            fmt_ns(BROKER_P99_TARGET_NS)
                        )),
                        Some(match (r.per_sec >= BROKER_RPS_TARGET, p99_ok) {
                            (true, true) => "meets",
                            (false, false) => "misses both",
                            (false, true) => "misses rate",
                            (true, false) => "misses p99",
                        }),
                    ),
                    (true, Some(_)) => (
                        Some(format!("p99<{}", fmt_ns(BROKER_P99_TARGET_NS))),
                        Some(if p99_ok { "meets" } else { "misses" }),
                    ),
                    _ => (None, None),
                };
                LoadRow {
                    label: match r.rate {
                        Some(rate) => format!("{label} {:.1}k/s", rate / 1000.0),
                        None => label.clone(),
                    },
                    result: r.clone(),
                    target,
                    verdict,
                }
            })
            .collect();
        Self {
            machine,
            command,
            sizes: *sizes,
            rounds_kept: m.times.values().map(Vec::len).max().unwrap_or(0),
            host_maps_few: host_few,
            host_maps_all: host_all,
            create_other_maps_ns: median(&m.create_ns),
            processes,
            comparisons,
            loads,
            analysis: m.analysis.clone(),
            rounds_cpu: m.rounds_cpu.clone(),
            traps: m.traps.clone(),
            creates: m.creates.clone(),
            stalled: m.stalled.clone(),
            floor: m.floor.clone(),
            member_floor,
            supervisor: match (&m.floor, m.traps.get(1)) {
                (Some(f), Some((_, root))) => m
                    .traps
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != 1)
                    .flat_map(|(_, (who, member))| trap_rows(f, who, member, root))
                    .collect(),
                _ => Vec::new(),
            },
        }
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let z = &self.sizes;
        let _ = writeln!(
            s,
            "machine: {} CPUs ({}), kernel {}{}; idle: {}",
            m.cpus,
            m.cpu_model,
            m.kernel,
            m.bpftool
                .as_deref()
                .map(|b| format!(", {b}"))
                .unwrap_or_default(),
            m.idle
        );
        let _ = writeln!(s, "reproduce (as root): {}", self.command);
        let _ = writeln!(
            s,
            "maps: {} held ({} owned by {}, {} by {}, {} by the root), plus the host's own: {} \
             while only the visible ones exist, {} with all; {} rounds; creating the other \
             maps took {} per round",
            z.maps,
            z.visible,
            super::NS,
            z.other_ns,
            super::OTHER_NS,
            z.other_root,
            self.host_maps_few,
            self.host_maps_all,
            self.rounds_kept,
            fmt_ns(self.create_other_maps_ns)
        );
        if let Some(u) = &self.rounds_cpu {
            let _ = writeln!(
                s,
                "CPU during the rounds ({:.0} s): machine {:.2} CPUs busy, of which the timed \
                 processes {:.2}, bpfnsd {:.2}, map holders {:.2}, other work on the machine \
                 {:.2}; steal {:.2}",
                u.seconds,
                u.machine,
                u.watched.first().copied().unwrap_or(0.0),
                u.watched.get(1).copied().unwrap_or(0.0),
                u.watched.iter().skip(2).sum::<f64>(),
                u.other,
                u.steal
            );
        }
        let busy = |u: &Usage| u.other > OTHER_WORK_WARNING;
        if self.rounds_cpu.as_ref().is_some_and(busy)
            || self.loads.iter().any(|l| busy(&l.result.cpu))
        {
            let _ = writeln!(
                s,
                "WARNING: other work on the machine used more than {OTHER_WORK_WARNING} CPUs \
                 during parts of this run (see \"other\" above and in the load table): those \
                 figures are disturbed; rerun on a quiet machine"
            );
        }
        let _ = writeln!(
            s,
            "\n== Whole processes (one sample = one process, spawn to exit, output read from a pipe)"
        );
        let _ = writeln!(
            s,
            "{:<62} {:>12} {:>12} {:>12}",
            "scenario", "median", "p25", "p90"
        );
        for p in &self.processes {
            let _ = writeln!(
                s,
                "{:<62} {:>12} {:>12} {:>12}",
                p.label,
                fmt_ns(p.stats.median_ns),
                fmt_ns(p.stats.p25_ns),
                fmt_ns(p.stats.p90_ns)
            );
        }
        let _ = writeln!(
            s,
            "\n== Comparisons (ratio = subject/baseline medians; spread = lowest-highest ratio over \
             blocks of consecutive rounds; target is on the ratio)"
        );
        for r in &self.comparisons {
            let _ = writeln!(s, "{}", r.scenario);
            let _ = writeln!(
                s,
                "    baseline {:<58} {:>10} (p90 {})",
                r.baseline,
                fmt_ns(r.stats.baseline.median_ns),
                fmt_ns(r.stats.baseline.p90_ns)
            );
            let _ = writeln!(
                s,
                "    subject  {:<58} {:>10} (p90 {})",
                r.subject,
                fmt_ns(r.stats.subject.median_ns),
                fmt_ns(r.stats.subject.p90_ns)
            );
            let speed = if r.stats.ratio < 1.0 {
                format!(" ({:.1}x faster)", 1.0 / r.stats.ratio)
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "    ratio {:.3}{speed}, spread {:.3}-{:.3}, delta {}, target {}, {}",
                r.stats.ratio,
                r.stats.block_ratio_min,
                r.stats.block_ratio_max,
                fmt_ns(r.delta_ns),
                r.target.map_or_else(|| "-".into(), |t| format!("≤{t:.2}")),
                r.verdict.unwrap_or("-")
            );
        }
        if !self.loads.is_empty() {
            let _ = writeln!(
                s,
                "\n== Load (closed loop: each client sends its next request when the reply \
                 arrives; paced: each client's requests are due at fixed intervals, the given \
                 total rate; latency = request due/sent to reply decoded, fd closed after)"
            );
            let _ = writeln!(
                s,
                "{:<32} {:<13} {:>7} {:>7} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6} {:>20} {:>12}",
                "run",
                "request",
                "clients",
                "visible",
                "req/s",
                "p50",
                "p90",
                "p99",
                "p99.9",
                "max",
                "daemon/req",
                "client/req",
                "other",
                "target",
                "verdict"
            );
            for l in &self.loads {
                let r = &l.result;
                let (d, c) = r.cpu_per_request_ns();
                let _ = writeln!(
                    s,
                    "{:<32} {:<13} {:>7} {:>7} {:>8.0} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6.2} {:>20} {:>12}",
                    l.label,
                    r.op.label(),
                    r.threads,
                    r.visible,
                    r.per_sec,
                    fmt_ns(r.p50_ns),
                    fmt_ns(r.p90_ns),
                    fmt_ns(r.p99_ns),
                    fmt_ns(r.p999_ns),
                    fmt_ns(r.max_ns),
                    fmt_ns(d),
                    fmt_ns(c),
                    r.cpu.other,
                    l.target.as_deref().unwrap_or("-"),
                    l.verdict.unwrap_or("-")
                );
            }
            let _ = writeln!(
                s,
                "(daemon/req, client/req: CPU time of bpfnsd and of the client process per \
                 request over the window; other: CPUs used by other work on the machine meanwhile)"
            );
        }
        if !self.traps.is_empty() {
            let _ = writeln!(
                s,
                "\n== One listing step, each call timed alone (median of a walk over every \
                 visible map, 3 walks)"
            );
            let _ = writeln!(
                s,
                "{:<34} {:>6} {:>16} {:>20} {:>20}",
                "caller", "maps", "walk start", "MAP_GET_NEXT_ID", "MAP_GET_FD_BY_ID"
            );
            for (who, t) in &self.traps {
                let _ = writeln!(
                    s,
                    "{:<34} {:>6} {:>16} {:>20} {:>20}",
                    who,
                    t.maps,
                    fmt_ns(t.first_next_id_ns),
                    format!(
                        "{} (p90 {})",
                        fmt_ns(t.next_id_median_ns),
                        fmt_ns(t.next_id_p90_ns)
                    ),
                    format!(
                        "{} (p90 {})",
                        fmt_ns(t.fd_by_id_median_ns),
                        fmt_ns(t.fd_by_id_p90_ns)
                    )
                );
            }
        }
        if let Some(st) = &self.stalled {
            let ratio = st.with.per_sec / st.alone.per_sec;
            let _ = writeln!(
                s,
                "\n== A subscriber that stops reading: the FD broker ({} clients) while a member \
                 of another namespace makes and closes maps in a loop (an object_created event \
                 each while somebody subscribes)",
                st.alone.threads
            );
            for (who, r, ev) in [
                ("no subscriber", &st.alone, st.alone_maps_per_sec),
                (
                    "a subscriber that never reads",
                    &st.with,
                    st.with_maps_per_sec,
                ),
            ] {
                let _ = writeln!(
                    s,
                    "{who:<32} {:>9.0}/s  p99 {:>9}  maps made {:>7.0}/s",
                    r.per_sec,
                    fmt_ns(r.p99_ns),
                    ev
                );
            }
            let _ = writeln!(
                s,
                "ratio {ratio:.2} (target ≥ {STALLED_MIN_RATIO}: {}); subscribers dropped: {} \
                 (target 1: {})",
                if ratio >= STALLED_MIN_RATIO {
                    "meets"
                } else {
                    "misses"
                },
                st.dropped,
                if st.dropped == 1 { "meets" } else { "misses" }
            );
        }
        if let Some((_, root)) = self.creates.first() {
            let _ = writeln!(
                s,
                "\n== Creations: BPF_MAP_CREATE of an array, BPF_PROG_LOAD of a socket filter \
                 (median of 500 each, p90; ratio against root's)"
            );
            let _ = writeln!(
                s,
                "{:<42} {:>30} {:>30}",
                "caller", "MAP_CREATE", "PROG_LOAD"
            );
            for (who, t) in &self.creates {
                let _ = writeln!(
                    s,
                    "{:<42} {:>30} {:>30}",
                    who,
                    format!(
                        "{} (p90 {}) {:.2}x",
                        fmt_ns(t.map_create_median_ns),
                        fmt_ns(t.map_create_p90_ns),
                        t.map_create_median_ns / root.map_create_median_ns
                    ),
                    format!(
                        "{} (p90 {}) {:.2}x",
                        fmt_ns(t.prog_load_median_ns),
                        fmt_ns(t.prog_load_p90_ns),
                        t.prog_load_median_ns / root.prog_load_median_ns
                    )
                );
            }
        }
        if let Some(f) = &self.floor {
            let _ = writeln!(
                s,
                "\n== The seccomp floor (a child traps getppid; this process answers at once; \
                 SYNC_WAKE_UP on, poll then recv as bpfnsd; median per call)"
            );
            for t in &f.times {
                let _ = writeln!(
                    s,
                    "{:<50} {:<10} {:>10} (p90 {})",
                    t.mode.label(),
                    t.placement.label(),
                    fmt_ns(t.median_ns),
                    fmt_ns(t.p90_ns)
                );
            }
        }
        if !self.supervisor.is_empty() {
            let _ = writeln!(
                s,
                "\n== Trapped calls against the floor (ratio = trapped / (floor + direct), \
                 target ≤{TRAP_TARGET:.1})"
            );
            let _ = writeln!(
                s,
                "{:<44} {:>10} {:>10} {:>22} {:>7} {:>8}",
                "call", "trapped", "direct", "floor", "ratio", "verdict"
            );
            let mut member = "";
            for r in &self.supervisor {
                if r.member != member {
                    member = &r.member;
                    let _ = writeln!(s, "{member}:");
                }
                let _ = writeln!(
                    s,
                    "{:<44} {:>10} {:>10} {:>22} {:>7.2} {:>8}",
                    r.call,
                    fmt_ns(r.trapped_ns),
                    fmt_ns(r.direct_ns),
                    format!("{} {}", r.floor, fmt_ns(r.floor_ns)),
                    r.ratio,
                    r.verdict
                );
            }
        }
        if let Some(f) = &self.member_floor {
            let _ = writeln!(
                s,
                "\n== Row 2 at the seccomp floor (per listed map: root's bpftool + the floor's \
                 GET_NEXT_ID and GET_FD_BY_ID answers, net of the direct calls)\n\
                 root {} + GET_NEXT_ID {} + GET_FD_BY_ID {} = {}: ratio {:.2} at the floor \
                 (target ≤{MEMBER_BPFTOOL_TARGET:.1})",
                fmt_ns(f.root_per_map_ns),
                fmt_ns(f.next_id_added_ns),
                fmt_ns(f.fd_by_id_added_ns),
                fmt_ns(f.root_per_map_ns + f.next_id_added_ns + f.fd_by_id_added_ns),
                f.floor_ratio
            );
            for (who, per_map, distance) in &f.members {
                let _ = writeln!(
                    s,
                    "{who}: {} per map, {distance:.2}× the floor",
                    fmt_ns(*per_map)
                );
            }
        }
        if let Some(r) = self
            .comparisons
            .iter()
            .find(|c| c.subject == Scenario::MemberRootBpftool.label())
        {
            let ok = r.stats.ratio <= MEMBER_BPFTOOL_TARGET;
            let _ = writeln!(
                s,
                "unmodified bpftool in a namespace ({} visible of {}) against root's over the \
                 same maps: ratio {:.2}, target ≤{MEMBER_BPFTOOL_TARGET:.1}, {}",
                z.visible,
                z.maps,
                r.stats.ratio,
                meets(ok)
            );
        }
        if !self.analysis.is_empty() {
            let _ = writeln!(
                s,
                "\n== Pieces (medians of 7, in the bench process, all maps present)"
            );
            for p in &self.analysis {
                let _ = writeln!(
                    s,
                    "{:<58} {:>10}  ({} items) {}",
                    p.name,
                    fmt_ns(p.median_ns),
                    p.items,
                    p.what
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::super::floor::{FloorTime, Placement};
    use super::*;

    fn floor(rw: f64, open: f64) -> Floor {
        let time = |mode, median_ns| FloorTime {
            mode,
            placement: Placement::Any,
            median_ns,
            p90_ns: median_ns,
            calls: 1,
        };
        Floor {
            times: vec![
                time(Mode::ReadCheckWrite, rw),
                time(Mode::OpenAddFdThenSend, open),
            ],
        }
    }

    fn root(next_id: f64, fd_by_id: f64) -> TrapTimes {
        TrapTimes {
            maps: 1,
            first_next_id_ns: next_id,
            next_id_median_ns: next_id,
            next_id_p90_ns: next_id,
            fd_by_id_median_ns: fd_by_id,
            fd_by_id_p90_ns: fd_by_id,
        }
    }

    #[test]
    fn row_two_at_the_floor_adds_each_answer_net_of_the_direct_call() {
        // Root lists at 20 µs a map; the floor answers GET_NEXT_ID in 11 µs (1 µs direct)
        // and GET_FD_BY_ID in 17 µs (2 µs direct): 20 + 10 + 15 = 45 µs, 2.25x.
        let f = MemberFloor::new(
            &floor(11_000.0, 17_000.0),
            &root(1_000.0, 2_000.0),
            20_000.0,
            &[("host-root member", 90_000.0)],
        )
        .expect("every part measured");
        assert_eq!(f.next_id_added_ns, 10_000.0);
        assert_eq!(f.fd_by_id_added_ns, 15_000.0);
        assert!((f.floor_ratio - 2.25).abs() < 1e-9);
        assert_eq!(f.members[0].0, "host-root member");
        assert!((f.members[0].2 - 2.0).abs() < 1e-9);
    }

    #[test]
    fn row_two_at_the_floor_needs_the_open_answer_measured() {
        let mut f = floor(11_000.0, 17_000.0);
        f.times.retain(|t| t.mode != Mode::OpenAddFdThenSend);
        assert!(MemberFloor::new(&f, &root(1_000.0, 2_000.0), 20_000.0, &[]).is_none());
        assert!(MemberFloor::new(&floor(1.0, 1.0), &root(1.0, 1.0), 0.0, &[]).is_none());
    }
}
