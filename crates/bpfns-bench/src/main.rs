//! `bpfns-bench`: what bpfns's kernel side costs.
//!
//! Every scenario runs in one process run, as root:
//!
//! - map create (+close), prog load (+close) and fork+exit, measured in a worker process
//!   (this binary, hidden `worker` subcommand) that the controller tags and untags from
//!   outside: untagged work with the kernel side loaded against not loaded, and tagged work
//!   (loaded) against untagged work not loaded. Setups and conditions are interleaved round by
//!   round (the kernel side is loaded and unloaded every round), both processes are pinned to
//!   one CPU, and the reported figures are medians over all rounds.
//! - listing N maps with their owners: the kernel side's iterator against the per-object
//!   syscall loop and against `bpftool map show -j`.
//! - unless `--no-analysis`: where the time goes (a do-nothing `sys_exit` program, the kernel
//!   side without its `sys_exit` program, other builds given with `--object`, and the programs'
//!   own run time from `BPF_ENABLE_STATS`).
//!
//! `bpfns-bench daemon` measures the daemon, the CLI and the supervisor instead:
//! `bpfns map list` against `bpftool map show`, unmodified bpftool inside a
//! namespace against bpftool as root, and the FD broker under 64 concurrent clients (see
//! [`daemon`]).
//!
//! Results and the command that reproduces them are in docs/benchmarks.md.

mod analysis;
mod containers;
mod controller;
mod daemon;
mod listing;
mod proto;
mod report;
mod scale;
mod side;
mod stats;
mod worker;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::controller::{Condition, Plan, Worker};
use crate::proto::Op;
use crate::side::{Rig, Setup};

#[derive(Debug, Parser)]
#[command(
    name = "bpfns-bench",
    about = "Benchmark bpfns's kernel side (run as root): per-operation overhead, tagged and \
             untagged, and listing by iterator against the per-object syscall loop",
    after_help = "`bpfns-bench daemon` benchmarks bpfnsd, `bpfns` and the supervisor instead \
                  (bpfns map list vs bpftool, bpftool inside a namespace, FD broker under load); \
                  see `bpfns-bench daemon --help`. Results: docs/benchmarks.md."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// A short run (fewer rounds and operations): a smoke test, not a measurement.
    #[arg(long)]
    quick: bool,
    /// Print the results as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// How many maps to create for the listing benchmark.
    #[arg(long, default_value_t = 10_000)]
    maps: usize,
    /// Rounds of the per-operation benchmark (default: 1000, or 60 with --quick; with
    /// --reload 40, or 4).
    #[arg(long)]
    rounds: Option<usize>,
    /// CPU to pin the measuring processes to (default: the last one this process may use).
    #[arg(long)]
    cpu: Option<usize>,
    /// Skip the investigation of where the time goes.
    #[arg(long)]
    no_analysis: bool,
    /// Skip the listing benchmark.
    #[arg(long)]
    no_listing: bool,
    /// Load and unload the kernel side for every condition of every round, instead of loading
    /// it once and attaching/detaching its hooks: the literal method, slower and noisier.
    #[arg(long)]
    reload: bool,
    /// Measure even while another bpfns instance's hooks are attached (its cost then lands in
    /// the baseline too, so "loaded vs not loaded" comes out too low; fine for comparing
    /// builds with --object).
    #[arg(long)]
    allow_foreign: bool,
    /// Also measure this build of the kernel side (a compiled `.bpf.o` with the same maps and
    /// programs), e.g. a candidate optimisation. Repeatable.
    #[arg(long, value_name = "BPF_OBJECT")]
    object: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Benchmark bpfnsd, the `bpfns` CLI and the supervisor against bpftool.
    ///
    /// `bpfns map list -j` from the root against `bpftool map show -j` over 10k maps;
    /// unmodified bpftool inside a namespace (`bpfns exec`, a host-root member and a
    /// CAP_BPF-only one) over 1k visible of 10k maps against bpftool as root over the same 1k,
    /// with the fixed cost of `bpfns exec` measured alongside; the FD broker (`get_fd`) and
    /// `list` under 64 concurrent clients. Interleaved rounds, medians, ratios against
    /// baselines measured in the same run.
    ///
    /// Runs its own bpfnsd (the binary beside this one: build first with `cargo build
    /// --release -p bpfnsd -p bpfns-cli -p bpfns-bench`) at its own socket and pin root, and
    /// removes everything it made at the end, on error and on Ctrl-C.
    /// `BPFNS_BENCH_PAUSE=1` stops once everything is set up (for profiling by hand);
    /// `BPFNS_BENCH_VERBOSE=1` prints every timed process.
    Daemon(daemon::Args),
    /// Benchmark a container's start with and without bpfns.
    ///
    /// The runtime level (`runc run`/`crun run` of a bundle whose process is `true`, directly
    /// against through `bpfns-oci`, with and without CAP_BPF) and the engine level (`podman run
    /// --rm IMAGE true` with the runtime against the bpfns runtime). Interleaved rounds,
    /// medians, ratios and the time added against the same start without bpfns, measured in
    /// the same run. Needs scripts/containers/setup.sh (engines and the test image) and the
    /// binaries beside this one (`cargo build --release -p bpfnsd -p bpfns-oci -p
    /// bpfns-bench`); runs its own bpfnsd, podman storage and runtime roots and removes them.
    Containers(containers::Args),
    /// Benchmark bpfnsd at scale: 10k namespaces and 100k maps.
    ///
    /// bpfnsd's resident memory, `ns list` and `map list` from the root, and restart to
    /// serving, each against the same bpfnsd before anything was made and against the
    /// targets (RSS ≤ 64 MiB, `ns list` ≤ 50 ms, restart ≤ 1 s); namespace creation latency
    /// along the way. Runs its own bpfnsd (the binary beside this one: `cargo build
    /// --release -p bpfnsd -p bpfns-bench`) and removes everything it made at the end, on
    /// error and on Ctrl-C. `BPFNS_BENCH_PAUSE=1` stops once the maps are made (for
    /// profiling by hand).
    Scale(scale::Args),
    /// Internal: a load generator on bpfnsd's API (client threads, one connection each).
    #[command(hide = true)]
    Load(daemon::LoadArgs),
    /// Internal: time each MAP_GET_NEXT_ID and MAP_GET_FD_BY_ID of a walk over all maps.
    #[command(hide = true)]
    Traps {
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// Internal: time BPF_MAP_CREATE of an array and BPF_PROG_LOAD of a socket filter.
    #[command(hide = true)]
    Creates {
        #[arg(long, default_value_t = 500)]
        reps: usize,
        /// Instead: create and close array maps for this many seconds; print how many.
        #[arg(long)]
        churn_secs: Option<f64>,
    },
    /// Internal: the caller side of the seccomp floor (traps getppid, times each call).
    #[command(hide = true)]
    FloorCaller,
    /// Internal: the measuring process the controller drives over stdin/stdout.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        cpu: Option<usize>,
    },
}

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    rounds: usize,
    map_ops: usize,
    prog_ops: usize,
    fork_ops: usize,
    null_ops: usize,
    listing_rounds: usize,
    stats_reps: usize,
}

impl Sizes {
    fn new(cli: &Cli) -> Self {
        // Toggling: many short batches. Reloading: fewer, longer ones (a load and an unload
        // take a few hundred milliseconds).
        let mut s = match (cli.reload, cli.quick) {
            (false, false) => Sizes {
                rounds: 1000,
                map_ops: 100,
                prog_ops: 20,
                fork_ops: 8,
                null_ops: 20,
                listing_rounds: 10,
                stats_reps: 20,
            },
            (false, true) => Sizes {
                rounds: 60,
                map_ops: 100,
                prog_ops: 20,
                fork_ops: 5,
                null_ops: 20,
                listing_rounds: 3,
                stats_reps: 5,
            },
            (true, false) => Sizes {
                rounds: 40,
                map_ops: 2000,
                prog_ops: 400,
                fork_ops: 100,
                null_ops: 500,
                listing_rounds: 10,
                stats_reps: 20,
            },
            (true, true) => Sizes {
                rounds: 4,
                map_ops: 300,
                prog_ops: 60,
                fork_ops: 20,
                null_ops: 100,
                listing_rounds: 3,
                stats_reps: 5,
            },
        };
        if let Some(r) = cli.rounds {
            s.rounds = r.max(1);
        }
        s
    }
}

/// Count the CPUs in a list such as `0-3,6`.
pub(crate) fn count_cpus(list: &str) -> Option<usize> {
    list.split(',').try_fold(0, |n, part| {
        Some(
            n + match part.split_once('-') {
                Some((a, b)) => b.parse::<usize>().ok()? + 1 - a.parse::<usize>().ok()?,
                None => {
                    part.parse::<usize>().ok()?;
                    1
                }
            },
        )
    })
}

pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

fn main() {
    let cli = Cli::parse();
    // Every measurement keeps its pins under /sys/fs/bpf; hidden helpers run inside one.
    if matches!(
        cli.cmd,
        None | Some(Cmd::Daemon(_) | Cmd::Containers(_) | Cmd::Scale(_))
    ) {
        if let Err(e) = side::ensure_host_bpffs() {
            eprintln!("bpfns-bench: {e:#}");
            std::process::exit(1);
        }
    }
    let result = match cli.cmd {
        Some(Cmd::Worker { cpu }) => worker::serve(cpu),
        Some(Cmd::Daemon(ref a)) => daemon::run(a),
        Some(Cmd::Containers(ref a)) => containers::run(a),
        Some(Cmd::Scale(ref a)) => scale::run(a),
        Some(Cmd::Load(ref a)) => daemon::serve_load(a),
        Some(Cmd::Traps { reps }) => daemon::serve_traps(reps),
        Some(Cmd::Creates { reps, churn_secs }) => daemon::serve_creates(reps, churn_secs),
        Some(Cmd::FloorCaller) => daemon::serve_floor_caller(),
        None => bench(&cli),
    };
    if let Err(e) = result {
        eprintln!("bpfns-bench: {e:#}");
        std::process::exit(1);
    }
}

fn bench(cli: &Cli) -> Result<()> {
    if !is_root() {
        bail!("needs root (CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON): run it with sudo");
    }
    bpfns_sys::process::catch_interrupts()?;
    for root in side::remove_stale_instances() {
        eprintln!("removed a stale instance at {}", root.display());
    }
    let foreign = side::hook_programs()?;
    if !foreign.is_empty() {
        let ids: Vec<String> = foreign
            .iter()
            .map(|(id, n)| format!("{n} (id {id})"))
            .collect();
        let what = format!(
            "another bpfns instance's hooks are attached: {}; they run on every syscall and \
             fork, in the baseline too",
            ids.join(", ")
        );
        if !cli.allow_foreign {
            bail!(
                "{what}. Unload it first (`bpfns kernel unload`, or `bpftool link` to find \
                 it), or pass --allow-foreign to measure anyway (loaded-vs-not-loaded figures \
                 then come out too low)"
            );
        }
        eprintln!("warning: {what}");
    }
    let cpus = bpfns_sys::process::allowed_cpus()?;
    let cpus_online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| count_cpus(s.trim()))
        .unwrap_or(cpus.len());
    let cpu = match cli.cpu {
        Some(c) if !cpus.contains(&c) => bail!("CPU {c} is not available (have {cpus:?})"),
        Some(c) => c,
        None => *cpus.last().context("no CPU available")?,
    };
    bpfns_sys::process::pin_to_cpu(cpu)?;
    let sizes = Sizes::new(cli);
    let layout = side::pin_layout();
    let machine = report::Machine::probe(cpus_online, cpu);
    eprintln!(
        "bpfns-bench: {} CPUs, kernel {}, pinned to CPU {cpu}; pin root {}",
        machine.cpus,
        machine.kernel,
        layout.root().display()
    );

    let mut worker = Worker::spawn(Some(cpu))?;

    let mut setups = vec![Setup::None, Setup::Idle, Setup::Full];
    if !cli.no_analysis {
        setups.extend([Setup::Control, Setup::Nop, Setup::NoSysExit]);
    }
    setups.extend(cli.object.iter().cloned().map(Setup::Object));
    let mut conditions = Vec::new();
    for (i, s) in setups.iter().enumerate() {
        conditions.push(Condition {
            setup: i,
            tagged: false,
        });
        if s.has_kernel() {
            conditions.push(Condition {
                setup: i,
                tagged: true,
            });
        }
    }
    let mut ops = vec![
        (Op::MapCreate, sizes.map_ops),
        (Op::ProgLoad, sizes.prog_ops),
        (Op::ForkExit, sizes.fork_ops),
    ];
    if !cli.no_analysis {
        ops.push((Op::NullSyscall, sizes.null_ops));
    }
    let plan = Plan {
        setups,
        conditions,
        ops,
        rounds: sizes.rounds,
        allow_foreign: cli.allow_foreign,
    };
    eprintln!(
        "per-operation benchmark: {} rounds of {} conditions, {}",
        plan.rounds,
        plan.conditions.len(),
        if cli.reload {
            "loading and unloading the kernel side for every condition"
        } else {
            "switching conditions by attaching and detaching the hooks"
        }
    );
    let results = if cli.reload {
        controller::run_reload(&plan, &mut worker, &layout)?
    } else {
        let mut rig = Rig::load(&cli.object, &layout)?;
        controller::run_toggle(&plan, &mut worker, &mut rig)?
    };

    // Loaded once for the rest (in --reload mode too: nothing else is timed against a reload).
    let mut rig = Rig::load(&cli.object, &layout)?;
    let listing = if cli.no_listing {
        None
    } else {
        let with_bpftool = listing::bpftool_available();
        if !with_bpftool {
            eprintln!("bpftool not found: listing without the bpftool comparison");
        }
        eprintln!("listing benchmark: {} maps", cli.maps);
        Some(listing::run(
            &mut worker,
            &mut rig,
            cli.maps,
            sizes.listing_rounds,
            with_bpftool,
            cli.allow_foreign,
        )?)
    };

    let costs = if cli.no_analysis {
        Vec::new()
    } else {
        eprintln!("program run time (BPF_ENABLE_STATS)");
        let mut setups = vec![Setup::Nop, Setup::Full];
        setups.extend(cli.object.iter().cloned().map(Setup::Object));
        analysis::program_costs(&mut worker, &mut rig, &setups, &plan.ops, sizes.stats_reps)?
    };
    drop(rig);
    drop(worker);

    let args: Vec<String> = std::env::args().skip(1).collect();
    let rep = report::Report::new(machine, &args, &plan, &results, listing.as_ref(), costs);
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        print!("{}", rep.text());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cpu_lists() {
        assert_eq!(count_cpus("0-1"), Some(2));
        assert_eq!(count_cpus("0-3,6"), Some(5));
        assert_eq!(count_cpus("5"), Some(1));
        assert_eq!(count_cpus("x"), None);
    }

    #[test]
    fn cli_parses() {
        let c = Cli::try_parse_from(["bpfns-bench", "--quick", "--json", "--maps", "500"])
            .expect("parses");
        assert!(c.quick && c.json && c.cmd.is_none());
        assert_eq!(c.maps, 500);
        let s = Sizes::new(&c);
        assert!(s.rounds > 0 && s.map_ops > 0);
        let w = Cli::try_parse_from(["bpfns-bench", "worker", "--cpu", "1"]).expect("parses");
        assert!(matches!(w.cmd, Some(Cmd::Worker { cpu: Some(1) })));
        let d = Cli::try_parse_from(["bpfns-bench", "daemon", "--quick", "--clients", "8"])
            .expect("parses");
        assert!(
            matches!(d.cmd, Some(Cmd::Daemon(ref a)) if a.quick && a.clients == 8 && a.maps == 10_000 && a.visible == 1_000)
        );
    }

    #[test]
    fn protocol_round_trips() {
        let r = proto::Request::Measure {
            op: Op::MapCreate,
            n: 3,
        };
        let line = serde_json::to_string(&r).expect("serializes");
        assert_eq!(line, r#"{"cmd":"measure","op":"map_create","n":3}"#);
        let back: proto::Reply =
            serde_json::from_str(r#"{"reply":"samples","ns":[1,2]}"#).expect("parses");
        assert!(matches!(back, proto::Reply::Samples { ns } if ns == vec![1, 2]));
    }
}
