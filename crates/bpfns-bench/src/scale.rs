//! `bpfns-bench scale`: bpfnsd with many namespaces and objects.
//!
//! One run, as root, against a private `bpfnsd` (the real binary; see
//! [`crate::daemon::rig`]):
//!
//! 1. Baselines with nothing made yet: bpfnsd's resident memory, `ns list` and a restart
//!    (SIGTERM, start over the same state, until `hello` answers); with one namespace,
//!    `bpfns exec NS -- true` and its floor, `unshare --mount --propagation private true`.
//! 2. `--namespaces` namespaces (default 10 000) under one parent, created one after the
//!    other (each create's latency kept), then `--objects` maps (default 100 000), made by
//!    worker processes that bpfnsd tags into `--holders` of those namespaces (so every map has
//!    an ownership record, as a member's would) and that hold them for the rest of the run.
//! 3. At that scale: bpfnsd's resident memory (and its peak), `ns list` and `map list` from
//!    the root (in-process client calls, `--rounds` each), `bpfns exec` and `unshare` again
//!    (every namespace's bpffs instance is a mount of the host), and a restart.
//!
//! Every figure is reported beside its baseline from step 1 and the target
//! (docs/benchmarks.md): RSS ≤ 64 MiB, `ns list` ≤ 50 ms, restart-to-serving ≤ 1 s,
//! `bpfns exec` ≤ 2× `unshare` in the same state.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bpfns_model::ObjectKind;
use serde::Serialize;

use crate::controller::{check_interrupt, Worker};
use crate::daemon::rig::BenchDaemon;
use crate::stats::{median, quantile};

/// Targets of the scale run.
const RSS_TARGET_MIB: f64 = 64.0;
const NS_LIST_TARGET_MS: f64 = 50.0;
const RESTART_TARGET_MS: f64 = 1000.0;
/// `bpfns exec NS -- true` against `unshare --mount --propagation private true`, both in the
/// same state of the host.
const EXEC_TARGET_RATIO: f64 = 2.0;

/// Arguments of `bpfns-bench scale`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Namespaces to create.
    #[arg(long, default_value_t = 10_000)]
    pub namespaces: usize,
    /// Maps to create, spread over the holders' namespaces.
    #[arg(long, default_value_t = 100_000)]
    pub objects: usize,
    /// Namespaces that own maps (one worker process each).
    #[arg(long, default_value_t = 100)]
    pub holders: usize,
    /// Timed calls of each listing at scale (and of the baselines).
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// A small run (1 000 namespaces, 10 000 maps, 5 rounds): a smoke test, not a measurement.
    #[arg(long)]
    pub quick: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The bpfnsd binary [default: beside this one].
    #[arg(long)]
    pub bpfnsd: Option<PathBuf>,
    /// The bpfns binary, for `bpfns exec` [default: beside this one].
    #[arg(long)]
    pub bpfns: Option<PathBuf>,
}

/// One measured quantity: the baseline (nothing made), the subject (at scale), the target.
#[derive(Debug, Serialize)]
struct Row {
    what: &'static str,
    unit: &'static str,
    baseline: f64,
    subject: f64,
    /// Spread of the subject: its p99 for latencies, its peak for memory.
    spread: f64,
    target: Option<f64>,
    verdict: &'static str,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: crate::report::Machine,
    args: Vec<String>,
    namespaces: usize,
    objects: usize,
    /// Namespace creation, one after the other: median and p99 per create (ms), total (s).
    create_p50_ms: f64,
    create_p99_ms: f64,
    create_total_s: f64,
    /// Maps created per second by the holders (ownership recorded).
    objects_per_s: f64,
    rows: Vec<Row>,
}

/// `bpfns-bench scale`.
pub fn run(args: &Args) -> Result<()> {
    if !crate::is_root() {
        bail!("needs root (it starts a bpfnsd and creates BPF maps): run it with sudo");
    }
    bpfns_sys::process::catch_interrupts()?;
    for d in crate::daemon::rig::remove_stale_daemons() {
        eprintln!("removed a stale bench daemon at {}", d.display());
    }
    let (namespaces, objects, rounds) = if args.quick {
        (1_000, 10_000, 5)
    } else {
        (args.namespaces, args.objects, args.rounds.max(1))
    };
    let holders = args.holders.clamp(1, namespaces.max(1));
    if namespaces == 0 {
        bail!("--namespaces must be at least 1");
    }
    let bpfnsd = crate::daemon::sibling(args.bpfnsd.as_deref(), "bpfnsd")?;
    let bpfns = crate::daemon::sibling(args.bpfns.as_deref(), "bpfns")?;
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| crate::count_cpus(s.trim()))
        .unwrap_or(1);
    let machine = crate::report::Machine::probe(cpus, 0);
    let argv: Vec<String> = std::env::args().skip(1).collect();
    eprintln!(
        "bpfns-bench scale: {namespaces} namespaces, {objects} maps in {holders} of them; \
         starting {}",
        bpfnsd.display()
    );
    let mut daemon = BenchDaemon::start(&bpfnsd)?;
    let sizes = (namespaces, objects, holders, rounds);
    let result = measure(&mut daemon, &bpfns, machine, argv, sizes);
    let rep = match result {
        Err(e) => {
            let alive = daemon.check_alive();
            drop(daemon);
            return Err(match alive {
                Err(d) => e.context(d.to_string()),
                Ok(()) => e,
            });
        }
        Ok(r) => r,
    };
    drop(daemon);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        print!("{}", text(&rep));
    }
    Ok(())
}

/// How long bpfnsd is left alone before its resident memory at scale is read.
const SETTLE: Duration = Duration::from_secs(1);

/// bpfnsd's resident memory and its peak, in MiB (`VmRSS`, `VmHWM` of /proc/PID/status).
fn rss_mib(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    match (field("VmRSS:"), field("VmHWM:")) {
        (Some(rss), Some(hwm)) => Ok((rss, hwm)),
        _ => bail!("no VmRSS/VmHWM in /proc/{pid}/status"),
    }
}

/// Milliseconds of `rounds` calls of `f`, after one untimed call.
fn time_calls(rounds: usize, mut f: impl FnMut() -> Result<usize>) -> Result<(Vec<f64>, usize)> {
    let mut n = f()?;
    let mut ms = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        check_interrupt()?;
        let t = Instant::now();
        n = f()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok((ms, n))
}

/// Milliseconds of `rounds` runs each of `bpfns exec ns -- true` and of `unshare --mount
/// --propagation private true` (the floor: a process in a mount namespace of its own, which
/// copies every mount of the host), one after the other, after one untimed run of each.
fn time_exec(
    rounds: usize,
    bpfns: &std::path::Path,
    socket: &std::path::Path,
    ns: &str,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let run = |cmd: &mut std::process::Command| -> Result<f64> {
        let t = Instant::now();
        let st = cmd
            .stdin(std::process::Stdio::null())
            .status()
            .with_context(|| format!("running {cmd:?}"))?;
        if !st.success() {
            bail!("{cmd:?}: {st}");
        }
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let exec = || {
        let mut c = std::process::Command::new(bpfns);
        c.arg("--socket")
            .arg(socket)
            .args(["exec", ns, "--", "true"]);
        c
    };
    let unshare = || {
        let mut c = std::process::Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "true"]);
        c
    };
    run(&mut exec())?;
    run(&mut unshare())?;
    let (mut e, mut u) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds {
        check_interrupt()?;
        e.push(run(&mut exec())?);
        u.push(run(&mut unshare())?);
    }
    Ok((e, u))
}

fn measure(
    daemon: &mut BenchDaemon,
    bpfns: &std::path::Path,
    machine: crate::report::Machine,
    args: Vec<String>,
    (namespaces, objects, holders, rounds): (usize, usize, usize, usize),
) -> Result<Report> {
    // Baselines: nothing made yet.
    let restart_base = daemon.restart()?.as_secs_f64() * 1e3;
    let (rss_base, _) = rss_mib(daemon.pid())?;
    let mut c = daemon.client()?;
    let (ns_list_base, _) = time_calls(rounds, || Ok(c.ns_list()?.len()))?;
    let (map_list_base, _) = time_calls(rounds, || Ok(c.list(ObjectKind::Map)?.len()))?;

    // One parent, so that the top-level reservation of ownership records stays one
    // namespace's; the holders get room for their share.
    let parent = format!("/scale-{}", std::process::id());
    let per_holder = objects.div_ceil(holders);
    let parent_limit = u32::try_from(objects + objects / 4 + 1024).unwrap_or(u32::MAX);
    c.ns_create_with(&parent, bpfns_model::Policy::DEFAULT, Some(parent_limit))
        .context("creating the parent namespace (lower --objects if its limit is refused)")?;
    // With one namespace: every other one's bpffs instance is a mount a member's private
    // mount namespace copies and detaches.
    let (exec_base, unshare_base) = time_exec(rounds, bpfns, &daemon.socket, &parent)?;
    let holder_limit = u32::try_from(per_holder + per_holder / 4 + 16).unwrap_or(u32::MAX);
    let mut create_ms = Vec::with_capacity(namespaces);
    let started = Instant::now();
    for i in 0..namespaces {
        check_interrupt()?;
        let path = format!("{parent}/n{i:05}");
        let t = Instant::now();
        if i < holders {
            c.ns_create_with(&path, bpfns_model::Policy::DEFAULT, Some(holder_limit))?;
        } else {
            c.ns_create(&path)?;
        }
        create_ms.push(t.elapsed().as_secs_f64() * 1e3);
        if (i + 1) % 1000 == 0 {
            eprintln!(
                "  {} namespaces ({:.1} s)",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let create_total_s = started.elapsed().as_secs_f64();

    // The maps: one worker per holder namespace, tagged by bpfnsd (ownership recorded).
    let started = Instant::now();
    let mut workers = Vec::with_capacity(holders);
    let mut made = 0;
    for i in 0..holders {
        check_interrupt()?;
        let n = per_holder.min(objects - made);
        if n == 0 {
            break;
        }
        let mut w = Worker::spawn(None)?;
        c.enter(&format!("{parent}/n{i:05}"), w.pid())?;
        made += w.hold_maps(n)?.len();
        workers.push(w);
        if (i + 1) % 10 == 0 {
            eprintln!("  {made} maps ({:.1} s)", started.elapsed().as_secs_f64());
        }
    }
    let objects_per_s = made as f64 / started.elapsed().as_secs_f64().max(1e-9);
    if std::env::var_os("BPFNS_BENCH_PAUSE").is_some_and(|v| v != "0") {
        eprintln!(
            "paused at scale (BPFNS_BENCH_PAUSE): bpfnsd pid {}, socket {}. Press Enter to go on.",
            daemon.pid(),
            daemon.socket.display()
        );
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        // bpfnsd drops a client idle for long: a new connection for what follows.
        c = daemon.client()?;
    }

    // At scale.
    let (ns_list, listed_ns) = time_calls(rounds, || Ok(c.ns_list()?.len()))?;
    if listed_ns < namespaces {
        bail!("ns list shows {listed_ns} namespaces, expected at least {namespaces}");
    }
    let (map_list, listed_maps) = time_calls(rounds, || Ok(c.list(ObjectKind::Map)?.len()))?;
    if listed_maps < made {
        bail!("map list shows {listed_maps} maps, expected at least the {made} made");
    }
    let (exec, unshare) = time_exec(rounds, bpfns, &daemon.socket, &parent)?;
    // Resident memory once the listings' answers are sent and given back (bpfnsd trims its
    // heap shortly after a walk); the peak (VmHWM) includes them.
    std::thread::sleep(SETTLE);
    let (rss, hwm) = rss_mib(daemon.pid())?;
    drop(c);
    let restart = daemon.restart()?.as_secs_f64() * 1e3;
    let (rss_after_restart, _) = rss_mib(daemon.pid())?;
    drop(workers);

    let verdict = |value: f64, target: f64| if value <= target { "meets" } else { "misses" };
    let ns_list_p50 = median(&ns_list);
    let rows = vec![
        Row {
            what: "bpfnsd resident memory",
            unit: "MiB",
            baseline: rss_base,
            subject: rss,
            spread: hwm,
            target: Some(RSS_TARGET_MIB),
            verdict: verdict(hwm, RSS_TARGET_MIB),
        },
        Row {
            what: "bpfnsd resident memory after a restart at scale",
            unit: "MiB",
            baseline: rss_base,
            subject: rss_after_restart,
            spread: rss_after_restart,
            target: Some(RSS_TARGET_MIB),
            verdict: verdict(rss_after_restart, RSS_TARGET_MIB),
        },
        Row {
            what: "ns list (client call, from the root)",
            unit: "ms",
            baseline: median(&ns_list_base),
            subject: ns_list_p50,
            spread: quantile(&ns_list, 0.99),
            target: Some(NS_LIST_TARGET_MS),
            verdict: verdict(ns_list_p50, NS_LIST_TARGET_MS),
        },
        Row {
            what: "map list (client call, from the root)",
            unit: "ms",
            baseline: median(&map_list_base),
            subject: median(&map_list),
            spread: quantile(&map_list, 0.99),
            target: None,
            verdict: "-",
        },
        Row {
            what: "unshare --mount --propagation private true",
            unit: "ms",
            baseline: median(&unshare_base),
            subject: median(&unshare),
            spread: quantile(&unshare, 0.99),
            target: None,
            verdict: "-",
        },
        Row {
            what: "bpfns exec NS -- true (target: 2x unshare)",
            unit: "ms",
            baseline: median(&exec_base),
            subject: median(&exec),
            spread: quantile(&exec, 0.99),
            target: Some(EXEC_TARGET_RATIO * median(&unshare)),
            verdict: verdict(median(&exec), EXEC_TARGET_RATIO * median(&unshare)),
        },
        Row {
            what: "restart to serving (SIGTERM, start, hello)",
            unit: "ms",
            baseline: restart_base,
            subject: restart,
            spread: restart,
            target: Some(RESTART_TARGET_MS),
            verdict: verdict(restart, RESTART_TARGET_MS),
        },
    ];
    Ok(Report {
        machine,
        args,
        namespaces,
        objects: made,
        create_p50_ms: median(&create_ms),
        create_p99_ms: quantile(&create_ms, 0.99),
        create_total_s,
        objects_per_s,
        rows,
    })
}

fn text(r: &Report) -> String {
    let mut s = format!(
        "bpfns-bench scale: {} namespaces, {} maps ({}); kernel {}\n\
         namespace create, one after the other: p50 {:.2} ms, p99 {:.2} ms, {:.1} s in all; \
         maps made at {:.0}/s\n\n",
        r.namespaces,
        r.objects,
        r.args.join(" "),
        r.machine.kernel,
        r.create_p50_ms,
        r.create_p99_ms,
        r.create_total_s,
        r.objects_per_s
    );
    s.push_str(&format!(
        "{:<50} {:>10} {:>10} {:>10} {:>8} {:>7}\n",
        "", "baseline", "at scale", "spread", "target", "verdict"
    ));
    for row in &r.rows {
        s.push_str(&format!(
            "{:<50} {:>7.1} {:<2} {:>7.1} {:<2} {:>7.1} {:<2} {:>8} {:>7}\n",
            row.what,
            row.baseline,
            row.unit,
            row.subject,
            row.unit,
            row.spread,
            row.unit,
            row.target.map_or("-".into(), |t| format!("{t:.0}")),
            row.verdict
        ));
    }
    s.push_str(
        "\nbaseline: the same bpfnsd before anything was made (`unshare` and `bpfns exec`: with \
         one namespace); spread: p99 of the calls, or the peak resident memory (VmHWM); the \
         target of `bpfns exec`: twice `unshare` at scale.\n",
    );
    s
}
