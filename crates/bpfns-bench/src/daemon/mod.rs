//! `bpfns-bench daemon`: what bpfnsd, `bpfns` and the supervisor cost.
//!
//! One run, as root, against a private `bpfnsd` (the real binary, its own socket, database,
//! pin root and bpffs directory; see [`rig`]):
//!
//! 1. `bpfns map list -j` from the root over all maps (default 10 000), through the daemon,
//!    whole process, against `bpftool map show -j` (whole process) over the same maps.
//! 2. Unmodified bpftool inside a namespace that owns `--visible` of those maps (default
//!    1 000): `bpfns exec NS -- bpftool map show -j` as a member that is host root, and as a
//!    CAP_BPF-only member (`setpriv --reuid=65534 ... --ambient-caps=-all,+bpf`), against
//!    `bpftool map show -j` as root on a host with only those maps; with the fixed cost of
//!    `bpfns exec NS -- true` measured alongside, so the per-object cost shows.
//! 3. The FD broker under load: many client threads, each with its own connection, doing
//!    `get_fd` of visible maps for a bounded time; requests per second and latency
//!    percentiles; and briefly the same for `list`.
//!
//! The maps are made cheaply by worker processes (`bpf::map_create`) that the daemon tags
//! into namespaces (`enter`), so ownership is recorded as for any member: the visible set by
//! a worker in the members' namespace (held for the whole run), the rest half by a worker in
//! a sibling namespace and half by an untagged worker (owned by the root). Every round
//! measures the "only the visible maps" scenarios, then creates the other maps, measures the
//! "all maps" scenarios, and closes the other maps again: baseline and subject are never more
//! than a round apart, and the order within each phase rotates from round to round.

mod broker;
mod cpu;
mod floor;
mod report;
pub(crate) mod rig;
mod traps;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bpfns_model::ObjectKind;
use serde::Serialize;

pub use broker::{serve as serve_load, LoadArgs};
pub use floor::serve_caller as serve_floor_caller;
pub use rig::alive;
pub use traps::serve as serve_traps;
pub use traps::serve_creates;

use crate::controller::{check_interrupt, verbose, Worker};
use crate::stats::median;

/// The namespace members run in (owns the visible maps).
const NS: &str = "/bench";
/// A sibling namespace that owns part of the other maps.
const OTHER_NS: &str = "/other";
/// A namespace whose policy allows array maps and socket filters only: its members'
/// `BPF_MAP_CREATE` goes through the supervisor too, and their loads are checked by type.
const NARROW_NS: &str = "/narrow";

/// Arguments of `bpfns-bench daemon`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Maps on the host in all during the "all maps" phase (the visible ones included).
    #[arg(long, default_value_t = 10_000)]
    pub maps: usize,
    /// Maps owned by the members' namespace: what `bpfns exec NS -- bpftool` sees.
    #[arg(long, default_value_t = 1_000)]
    pub visible: usize,
    /// Rounds of the process benchmarks (default: 20, or 3 with --quick).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Concurrent clients (threads, one connection each) of the FD-broker benchmark.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Measured seconds of the main FD-broker run (default: 5, or 1 with --quick); the other
    /// load runs take a fifth of it, at least 1 s.
    #[arg(long)]
    pub seconds: Option<f64>,
    /// A short run: a smoke test, not a measurement.
    #[arg(long)]
    pub quick: bool,
    /// Print the results as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Skip the load benchmarks (FD broker, list).
    #[arg(long)]
    pub no_load: bool,
    /// Only the supervisor: the seccomp floor and each trapped listing call against it
    /// (no process rounds, no load).
    #[arg(long)]
    pub supervisor_only: bool,
    /// The bpfnsd binary [default: beside this binary, e.g. target/release/bpfnsd].
    #[arg(long)]
    pub bpfnsd: Option<PathBuf>,
    /// The bpfns binary [default: beside this binary].
    #[arg(long)]
    pub bpfns: Option<PathBuf>,
    /// The bpftool to compare against (and to run inside the namespace).
    #[arg(long, default_value = "bpftool")]
    pub bpftool: PathBuf,
}

/// One timed process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// `true`, spawned like the others: the floor of any process.
    True,
    /// `bpftool map show -j` as root, while only the visible maps (and the host's own) exist.
    RootBpftoolFew,
    /// `bpftool map show -j` as root over all maps.
    RootBpftoolAll,
    /// `bpfns map list -j` as root over all maps, through the daemon.
    BpfnsList,
    /// `bpfns exec NS -- bpftool map show -j`: a member that is host root.
    MemberRootBpftool,
    /// `bpfns exec NS -- setpriv (uid 65534, CAP_BPF only) -- bpftool map show -j`.
    MemberCapBpfBpftool,
    /// `bpfns exec NS -- true`: the fixed cost of `bpfns exec` (host-root member).
    ExecTrue,
    /// `bpfns exec NS -- setpriv (uid 65534, CAP_BPF only) -- true`.
    ExecCapBpfTrue,
    /// `unshare --mount --propagation private true`: the floor of a process in a mount
    /// namespace of its own, which `bpfns exec` also makes (the yardstick of its fixed cost).
    UnshareTrue,
    /// `bpfns --version`: the floor of a `bpfns` process.
    BpfnsVersion,
    /// `bpftool version`: the floor of a `bpftool` process.
    BpftoolVersion,
}

impl Scenario {
    /// Measured while only the visible maps exist.
    const FEW: [Scenario; 2] = [Scenario::True, Scenario::RootBpftoolFew];
    /// Measured while all maps exist.
    const ALL: [Scenario; 9] = [
        Scenario::RootBpftoolAll,
        Scenario::BpfnsList,
        Scenario::MemberRootBpftool,
        Scenario::MemberCapBpfBpftool,
        Scenario::ExecTrue,
        Scenario::ExecCapBpfTrue,
        Scenario::UnshareTrue,
        Scenario::BpfnsVersion,
        Scenario::BpftoolVersion,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Scenario::True => "true (process floor)",
            Scenario::RootBpftoolFew => "bpftool map show -j, root, visible maps only",
            Scenario::RootBpftoolAll => "bpftool map show -j, root",
            Scenario::BpfnsList => "bpfns map list -j, root",
            Scenario::MemberRootBpftool => "bpfns exec NS -- bpftool map show -j (host root)",
            Scenario::MemberCapBpfBpftool => "bpfns exec NS -- bpftool map show -j (CAP_BPF only)",
            Scenario::ExecTrue => "bpfns exec NS -- true (host root)",
            Scenario::ExecCapBpfTrue => "bpfns exec NS -- true (CAP_BPF only, via setpriv)",
            Scenario::UnshareTrue => "unshare --mount --propagation private true",
            Scenario::BpfnsVersion => "bpfns --version",
            Scenario::BpftoolVersion => "bpftool version",
        }
    }

    /// What the output must list, if it lists maps.
    fn expect(self) -> Expect {
        match self {
            Scenario::MemberRootBpftool | Scenario::MemberCapBpfBpftool => Expect::ExactlyVisible,
            Scenario::RootBpftoolFew => Expect::Few,
            Scenario::RootBpftoolAll => Expect::All { bpfns: false },
            Scenario::BpfnsList => Expect::All { bpfns: true },
            _ => Expect::Nothing,
        }
    }
}

/// What a scenario's output is checked against (after the clock stops).
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// It lists no maps.
    Nothing,
    /// Exactly the members' namespace's maps.
    ExactlyVisible,
    /// At least the visible maps (only they are held in this phase).
    Few,
    /// At least every map held; `bpfns` output also names the owners.
    All { bpfns: bool },
}

/// Paths of the programs the scenarios run.
#[derive(Debug, Clone)]
struct Tools {
    bpfns: PathBuf,
    bpftool: PathBuf,
    setpriv: PathBuf,
    truth: PathBuf,
    unshare: PathBuf,
    socket: PathBuf,
}

/// setpriv arguments for a CAP_BPF-only member (as in the end-to-end tests).
const CAP_BPF_ONLY: [&str; 7] = [
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all,+bpf",
    "--ambient-caps=-all,+bpf",
    "--bounding-set=-all,+bpf",
    "--",
];

impl Tools {
    fn command(&self, s: Scenario) -> Command {
        let bpftool_show = || -> Vec<OsString> {
            vec![
                self.bpftool.clone().into(),
                "map".into(),
                "show".into(),
                "-j".into(),
            ]
        };
        let exec = |cap_bpf_only: bool, argv: Vec<OsString>| {
            let mut c = Command::new(&self.bpfns);
            c.arg("--socket").arg(&self.socket).args(["exec", NS, "--"]);
            if cap_bpf_only {
                c.arg(&self.setpriv).args(CAP_BPF_ONLY);
            }
            c.args(argv);
            c
        };
        match s {
            Scenario::True => Command::new(&self.truth),
            Scenario::RootBpftoolFew | Scenario::RootBpftoolAll => {
                let mut c = Command::new(&self.bpftool);
                c.args(["map", "show", "-j"]);
                c
            }
            Scenario::BpfnsList => {
                let mut c = Command::new(&self.bpfns);
                c.arg("--socket")
                    .arg(&self.socket)
                    .args(["map", "list", "-j"]);
                c
            }
            Scenario::MemberRootBpftool => exec(false, bpftool_show()),
            Scenario::MemberCapBpfBpftool => exec(true, bpftool_show()),
            Scenario::ExecTrue => exec(false, vec![self.truth.clone().into()]),
            Scenario::ExecCapBpfTrue => exec(true, vec![self.truth.clone().into()]),
            Scenario::UnshareTrue => {
                let mut c = Command::new(&self.unshare);
                c.args(["--mount", "--propagation", "private"])
                    .arg(&self.truth);
                c
            }
            Scenario::BpfnsVersion => {
                let mut c = Command::new(&self.bpfns);
                c.arg("--version");
                c
            }
            Scenario::BpftoolVersion => {
                let mut c = Command::new(&self.bpftool);
                c.arg("version");
                c
            }
        }
    }
}

/// Run `cmd` to completion with its output in pipes: wall time from spawn to reaped exit,
/// and stdout. Fails on a non-zero exit.
fn timed(mut cmd: Command, what: &str) -> Result<(f64, Vec<u8>)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    let ns = t.elapsed().as_nanos() as f64;
    if !out.status.success() {
        bail!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((ns, out.stdout))
}

/// Ids (and for `bpfns`, namespaces) in a JSON listing.
fn parse_listing(stdout: &[u8]) -> Result<Vec<(u32, Option<String>)>> {
    let v: serde_json::Value = serde_json::from_slice(stdout).context("parsing JSON output")?;
    let arr = v.as_array().context("the JSON output is not an array")?;
    arr.iter()
        .map(|o| {
            let id = o
                .get("id")
                .and_then(serde_json::Value::as_u64)
                .context("an object without id")? as u32;
            let ns = o
                .get("namespace")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string);
            Ok((id, ns))
        })
        .collect()
}

/// Where `name` is on `$PATH`.
pub(crate) fn which(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.exists().then(|| name.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// A binary of this workspace, given or beside this one.
pub(crate) fn sibling(given: Option<&Path>, name: &str) -> Result<PathBuf> {
    let p = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary has no folder")?
            .join(name),
    };
    if !p.is_file() {
        bail!(
            "{} not found: build it first (`cargo build --release -p bpfnsd -p bpfns-cli \
             -p bpfns-bench`) or pass --{name}",
            p.display()
        );
    }
    Ok(p)
}

/// Sizes of one run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sizes {
    pub maps: usize,
    pub visible: usize,
    /// Other maps owned by the sibling namespace, and by the root.
    pub other_ns: usize,
    pub other_root: usize,
    pub rounds: usize,
    pub clients: usize,
    pub load_seconds: f64,
    pub short_seconds: f64,
}

/// Everything measured.
#[derive(Debug, Default)]
pub struct Measured {
    /// Wall time (ns) per scenario, one per kept round.
    pub times: BTreeMap<Scenario, Vec<f64>>,
    /// Maps root's bpftool listed with only the visible maps present, per round, minus the
    /// visible ones: the host's own maps (the daemon's kernel side, other programs).
    pub host_maps_few: Vec<usize>,
    /// Maps listed in the "all maps" phase beyond the held ones.
    pub host_maps_all: Vec<usize>,
    /// Time to create the other maps, per round (ns).
    pub create_ns: Vec<f64>,
    pub loads: Vec<(String, broker::LoadResult)>,
    /// The FD broker with events flowing, with and without a subscriber that stops reading.
    pub stalled: Option<report::Stalled>,
    pub analysis: Vec<report::Probe>,
    /// CPU over the process rounds: watched = [this process with its reaped children (the
    /// timed processes), the daemon, the three map holders].
    pub rounds_cpu: Option<cpu::Usage>,
    /// Per-call times of a map walk: as a member (supervised) and as root.
    pub traps: Vec<(String, traps::TrapTimes)>,
    /// Map creations and program loads: root, a member, a member of a narrowed namespace.
    pub creates: Vec<(String, traps::CreateTimes)>,
    /// The seccomp user-notification floor.
    pub floor: Option<floor::Floor>,
}

/// `bpfns-bench daemon`.
pub fn run(args: &Args) -> Result<()> {
    if !crate::is_root() {
        bail!("needs root (it starts a bpfnsd and runs bpftool as root): run it with sudo");
    }
    bpfns_sys::process::catch_interrupts()?;
    for d in rig::remove_stale_daemons() {
        eprintln!("removed a stale bench daemon at {}", d.display());
    }
    for root in crate::side::remove_stale_instances() {
        eprintln!("removed a stale instance at {}", root.display());
    }
    if args.visible == 0 || args.visible > args.maps {
        bail!("--visible must be between 1 and --maps");
    }
    let bpftool =
        which(&args.bpftool).with_context(|| format!("{} not found", args.bpftool.display()))?;
    let setpriv = which(Path::new("setpriv")).context("setpriv not found (util-linux)")?;
    let truth = which(Path::new("true")).context("true not found")?;
    let bpfnsd = sibling(args.bpfnsd.as_deref(), "bpfnsd")?;
    let bpfns = sibling(args.bpfns.as_deref(), "bpfns")?;
    let others = args.maps - args.visible;
    let load_seconds = args
        .seconds
        .unwrap_or(if args.quick { 1.0 } else { 5.0 })
        .max(0.1);
    let sizes = Sizes {
        maps: args.maps,
        visible: args.visible,
        other_ns: others / 2,
        other_root: others - others / 2,
        rounds: args
            .rounds
            .unwrap_or(if args.quick { 3 } else { 20 })
            .max(1),
        clients: args.clients.max(1),
        load_seconds,
        short_seconds: (load_seconds / 5.0).max(1.0).min(load_seconds),
    };
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| crate::count_cpus(s.trim()))
        .unwrap_or(1);
    let mut machine = crate::report::Machine::probe(cpus, 0);
    machine.bpftool = Command::new(&bpftool)
        .arg("version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        });

    eprintln!(
        "bpfns-bench daemon: {} CPUs, kernel {}; starting {}",
        machine.cpus,
        machine.kernel,
        bpfnsd.display()
    );
    let mut daemon = rig::BenchDaemon::start(&bpfnsd)?;
    let result = measure(
        &mut daemon,
        &sizes,
        &bpftool,
        &setpriv,
        &truth,
        &bpfns,
        args,
    );
    let result = match result {
        Err(e) => {
            let alive = daemon.check_alive();
            drop(daemon);
            return Err(match alive {
                Err(d) => e.context(d.to_string()),
                Ok(()) => e,
            });
        }
        Ok(m) => m,
    };
    drop(daemon);

    let argv: Vec<String> = std::env::args().skip(1).collect();
    let rep = report::DaemonReport::new(machine, &argv, &sizes, &result);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        print!("{}", rep.text());
    }
    Ok(())
}

/// The maps of one round's "all maps" phase; closed on drop.
struct Others<'a> {
    workers: [&'a mut Worker; 2],
}

impl Drop for Others<'_> {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.release_maps();
        }
    }
}

fn make_others<'a>(
    w_other: &'a mut Worker,
    w_root: &'a mut Worker,
    sizes: &Sizes,
    m: &mut Measured,
) -> Result<Others<'a>> {
    let t = Instant::now();
    // From here on, drop closes whatever got created.
    let others = Others {
        workers: [w_other, w_root],
    };
    others.workers[0].hold_maps(sizes.other_ns)?;
    others.workers[1].hold_maps(sizes.other_root)?;
    m.create_ns.push(t.elapsed().as_nanos() as f64);
    Ok(others)
}

#[allow(clippy::too_many_arguments)]
fn measure(
    daemon: &mut rig::BenchDaemon,
    sizes: &Sizes,
    bpftool: &Path,
    setpriv: &Path,
    truth: &Path,
    bpfns: &Path,
    args: &Args,
) -> Result<Measured> {
    let mut m = Measured::default();
    let tools = Tools {
        bpfns: bpfns.to_path_buf(),
        bpftool: bpftool.to_path_buf(),
        setpriv: setpriv.to_path_buf(),
        truth: truth.to_path_buf(),
        unshare: which(Path::new("unshare")).context("unshare not found (util-linux)")?,
        socket: daemon.socket.clone(),
    };
    let mut c = daemon.client()?;
    // Room for every map of a round and the records of the last round's until they are
    // collected (namespaces own at most max_objects, 1024 by default).
    let limit = Some(u32::try_from(4 * sizes.maps).unwrap_or(u32::MAX));
    c.ns_create_with(NS, bpfns_model::Policy::DEFAULT, limit)?;
    c.ns_create_with(OTHER_NS, bpfns_model::Policy::DEFAULT, limit)?;
    let mut narrow = bpfns_model::Policy::DEFAULT;
    narrow.maps = bpfns_model::TypeSet::of([libbpf_sys::BPF_MAP_TYPE_ARRAY]);
    narrow.progs = bpfns_model::TypeSet::of([libbpf_sys::BPF_PROG_TYPE_SOCKET_FILTER]);
    c.ns_create_with(NARROW_NS, narrow, limit)?;

    // The map holders: tagged by the daemon like any member (ownership recorded at creation).
    let mut w_vis = Worker::spawn(None)?;
    let mut w_other = Worker::spawn(None)?;
    let mut w_root = Worker::spawn(None)?;
    c.enter(NS, w_vis.pid())?;
    c.enter(OTHER_NS, w_other.pid())?;
    let visible: BTreeSet<u32> = w_vis.hold_maps(sizes.visible)?.into_iter().collect();
    let listed: BTreeSet<u32> = c
        .list(ObjectKind::Map)?
        .into_iter()
        .filter(|o| o.namespace == NS)
        .map(|o| o.id)
        .collect();
    if listed != visible {
        bail!(
            "the daemon attributes {} maps to {NS}, expected the {} its member created",
            listed.len(),
            visible.len()
        );
    }
    eprintln!(
        "{} maps owned by {NS}; every round: {} scenarios with only those, then {} more maps \
         ({} owned by {OTHER_NS}, {} by the root) and {} scenarios",
        sizes.visible,
        Scenario::FEW.len(),
        sizes.maps - sizes.visible,
        sizes.other_ns,
        sizes.other_root,
        Scenario::ALL.len()
    );

    let check = |s: Scenario, stdout: &[u8], m: &mut Measured, few: bool| -> Result<()> {
        let expect = s.expect();
        if matches!(expect, Expect::Nothing) {
            return Ok(());
        }
        let list = parse_listing(stdout).with_context(|| s.label())?;
        let ids: BTreeSet<u32> = list.iter().map(|(id, _)| *id).collect();
        match expect {
            Expect::Nothing => {}
            Expect::ExactlyVisible => {
                if ids != visible {
                    bail!(
                        "{}: listed {} maps, expected exactly the {} of {NS}",
                        s.label(),
                        ids.len(),
                        visible.len()
                    );
                }
            }
            Expect::Few | Expect::All { .. } => {
                let held = if few { sizes.visible } else { sizes.maps };
                if !visible.is_subset(&ids) || ids.len() < held {
                    bail!(
                        "{}: listed {} maps, expected at least the {held} held",
                        s.label(),
                        ids.len()
                    );
                }
                if let Expect::All { bpfns: true } = expect {
                    let wrong = list
                        .iter()
                        .filter(|(id, ns)| visible.contains(id) && ns.as_deref() != Some(NS))
                        .count();
                    if wrong > 0 {
                        bail!(
                            "{}: {wrong} maps of {NS} shown with another owner",
                            s.label()
                        );
                    }
                }
                if s == Scenario::RootBpftoolFew {
                    m.host_maps_few.push(ids.len() - held);
                } else if s == Scenario::RootBpftoolAll {
                    m.host_maps_all.push(ids.len() - held);
                }
            }
        }
        Ok(())
    };

    let warmup = 1;
    let mut meter = None;
    let rounds = if args.supervisor_only {
        0
    } else {
        warmup + sizes.rounds
    };
    for round in 0..rounds {
        if round == warmup {
            meter = Some(cpu::Meter::start(&[
                (std::process::id(), true),
                (daemon.pid(), false),
                (w_vis.pid() as u32, false),
                (w_other.pid() as u32, false),
                (w_root.pid() as u32, false),
            ]));
        }
        let keep = round >= warmup;
        let mut buf: Vec<(Scenario, f64)> = Vec::new();
        let mut phase = |list: &[Scenario], few: bool, m: &mut Measured| -> Result<()> {
            let mut order = list.to_vec();
            order.rotate_left(round % list.len());
            for s in order {
                check_interrupt()?;
                let (ns, out) = timed(tools.command(s), s.label())?;
                if verbose() {
                    eprintln!("    {}: {}", s.label(), crate::report::fmt_ns(ns));
                }
                check(s, &out, m, few)?;
                buf.push((s, ns));
            }
            Ok(())
        };
        phase(&Scenario::FEW, true, &mut m)?;
        {
            let _others = make_others(&mut w_other, &mut w_root, sizes, &mut m)?;
            phase(&Scenario::ALL, false, &mut m)?;
        }
        daemon.check_alive()?;
        if keep {
            for (s, ns) in buf {
                m.times.entry(s).or_default().push(ns);
            }
        }
        eprintln!(
            "  round {}/{}{}",
            round + 1 - warmup.min(round + 1),
            sizes.rounds,
            if keep { "" } else { " (warm-up)" }
        );
    }

    m.rounds_cpu = meter.map(|m| m.stop());

    // Loads and probes, with all maps present.
    let _others = make_others(&mut w_other, &mut w_root, sizes, &mut m)?;
    if std::env::var_os("BPFNS_BENCH_PAUSE").is_some_and(|v| v != "0") {
        eprintln!(
            "paused with all maps present (BPFNS_BENCH_PAUSE): daemon socket {}, namespace {NS}; \
             e.g. `{} --socket {} exec {NS} -- bpftool map show`. Press Enter to go on.",
            daemon.socket.display(),
            bpfns.display(),
            daemon.socket.display()
        );
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
    }
    if !args.supervisor_only {
        analysis(daemon, &mut m)?;
    }
    check_interrupt()?;
    eprintln!("timing the seccomp floor");
    m.floor = Some(floor::measure(0)?);
    let exe = std::env::current_exe()?;
    let mut member = Command::new(bpfns);
    member
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["exec", NS, "--"])
        .arg(&exe)
        .args(["traps", "--reps", "3"]);
    let mut root = Command::new(&exe);
    root.args(["traps", "--reps", "3"]);
    let mut cap_bpf = Command::new(bpfns);
    cap_bpf
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["exec", NS, "--"])
        .arg(setpriv)
        .args(CAP_BPF_ONLY)
        .arg(&exe)
        .args(["traps", "--reps", "3"]);
    // The first two are what the supervisor's table compares (report::trap_rows).
    for (who, cmd) in [
        ("member (host root), supervised", member),
        ("root, direct", root),
        ("member (CAP_BPF only), supervised", cap_bpf),
    ] {
        check_interrupt()?;
        eprintln!("timing each listing call: {who}");
        m.traps.push((who.to_string(), traps::run(cmd)?));
    }
    // Creations with and without a policy that restricts types (CAP_BPF-only members).
    let creates = |ns: Option<&str>| {
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new(bpfns);
                c.arg("--socket")
                    .arg(&daemon.socket)
                    .args(["exec", ns, "--"])
                    .arg(setpriv)
                    .args(CAP_BPF_ONLY)
                    .arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(["creates", "--reps", "500"]);
        cmd
    };
    for (who, ns) in [
        ("root, direct", None),
        ("member (CAP_BPF only), default policy", Some(NS)),
        ("member (CAP_BPF only), types restricted", Some(NARROW_NS)),
    ] {
        check_interrupt()?;
        eprintln!("timing map creations and program loads: {who}");
        m.creates
            .push((who.to_string(), traps::run_creates(creates(ns))?));
    }
    if !args.no_load && !args.supervisor_only {
        let full = Duration::from_secs_f64(sizes.load_seconds);
        let short = Duration::from_secs_f64(sizes.short_seconds);
        let warm = Duration::from_millis(if args.quick { 200 } else { 500 });
        use broker::LoadOp::{GetFd, Hello, List};
        let spec = |namespace, op, threads, duration| broker::LoadSpec {
            namespace,
            op,
            threads,
            rate: None,
            warmup: warm,
            duration,
        };
        let n = sizes.clients;
        // (label, run, paced at this fraction of the first run's rate)
        let runs = [
            ("FD broker, member", spec(NS, GetFd, n, full), None),
            (
                "FD broker, member, paced",
                spec(NS, GetFd, n, short),
                Some(0.5),
            ),
            ("FD broker, root", spec("/", GetFd, n, short), None),
            ("hello (floor), member", spec(NS, Hello, n, short), None),
            ("list, member", spec(NS, List, n, full), None),
            ("FD broker, member", spec(NS, GetFd, 1, short), None),
            ("hello (floor), member", spec(NS, Hello, 1, short), None),
        ];
        for (label, mut run, paced) in runs {
            check_interrupt()?;
            run.rate = paced.and_then(|f| m.loads.first().map(|(_, r)| r.per_sec * f));
            eprintln!(
                "load: {label}, {} from {} client(s){}, {:.1} s",
                run.op.label(),
                run.threads,
                run.rate
                    .map(|r| format!(" paced at {r:.0}/s"))
                    .unwrap_or_default(),
                run.duration.as_secs_f64()
            );
            let r = broker::run_child(&daemon.socket, daemon.pid(), &run)?;
            if r.errors > 0 {
                bail!("{label}: {} requests failed", r.errors);
            }
            m.loads.push((label.to_string(), r));
            daemon.check_alive()?;
        }
        check_interrupt()?;
        m.stalled = Some(stalled_subscriber(
            daemon,
            bpfns,
            spec(NS, GetFd, n, short),
        )?);
        daemon.check_alive()?;
    }
    drop(_others);
    drop(w_vis);
    Ok(m)
}

/// The FD broker's load while a member of another namespace creates and closes maps in a loop
/// (an `object_created` event each while somebody subscribes; the benchmark's bpfnsd has no
/// per-namespace event limit, [`rig::EVENTS_PER_NS`]), first without a subscriber, then with
/// one that subscribed to everything and never reads: bpfnsd must drop it (counted) and go
/// on at the same pace.
fn stalled_subscriber(
    daemon: &rig::BenchDaemon,
    bpfns: &Path,
    run: broker::LoadSpec,
) -> Result<report::Stalled> {
    let exe = std::env::current_exe()?;
    let dropped = || -> Result<u64> {
        let st = daemon.client()?.status()?;
        Ok(st
            .counters
            .iter()
            .find(|(k, _)| k == "events_subscribers_dropped")
            .map_or(0, |(_, v)| *v))
    };
    let churned = |stalled: bool| -> Result<(broker::LoadResult, f64, u64)> {
        let mut sub = None;
        if stalled {
            let mut c = daemon.client()?;
            c.subscribe(None, Vec::new())?;
            sub = Some(c);
        }
        let before = dropped()?;
        let secs = (run.warmup + run.duration).as_secs_f64() + 0.5;
        let churn = Command::new(bpfns)
            .arg("--socket")
            .arg(&daemon.socket)
            .args(["exec", OTHER_NS, "--"])
            .arg(&exe)
            .args(["creates", "--churn-secs", &format!("{secs:.1}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the map churn")?;
        let r = broker::run_child(&daemon.socket, daemon.pid(), &run);
        let out = churn.wait_with_output().context("the map churn")?;
        if !out.status.success() {
            bail!(
                "the map churn: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let r = r?;
        let made: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        let after = dropped()?;
        drop(sub);
        Ok((r, made as f64 / secs, after - before))
    };
    eprintln!("load: FD broker while a member makes maps, without a subscriber");
    let (alone, alone_maps_per_sec, _) = churned(false)?;
    eprintln!("load: FD broker while a member makes maps, and a subscriber that never reads");
    let (with, with_maps_per_sec, dropped) = churned(true)?;
    Ok(report::Stalled {
        alone,
        alone_maps_per_sec,
        with,
        with_maps_per_sec,
        dropped,
    })
}

/// Direct measurements of the pieces a request is made of, with all maps present: what the
/// daemon's kernel-side listing costs, what one `list` and one `ns_show` round trip cost
/// (as root, from this process), for the analysis in docs/benchmarks.md.
fn analysis(daemon: &rig::BenchDaemon, m: &mut Measured) -> Result<()> {
    let kernel = bpfns_kernel::Kernel::open(&daemon.layout)?;
    let mut c = daemon.client()?;
    let reps = 7;
    let mut probe = |name: &str, what: &str, f: &mut dyn FnMut() -> Result<usize>| -> Result<()> {
        let mut ns = Vec::new();
        let mut n = 0;
        for _ in 0..reps {
            check_interrupt()?;
            let t = Instant::now();
            n = f()?;
            ns.push(t.elapsed().as_nanos() as f64);
        }
        m.analysis.push(report::Probe {
            name: name.to_string(),
            what: what.to_string(),
            median_ns: median(&ns),
            items: n,
        });
        Ok(())
    };
    probe(
        "Kernel::list(Map)",
        "the kernel side's map iterator, read in the bench process (what every list request pays)",
        &mut || Ok(kernel.list(ObjectKind::Map)?.len()),
    )?;
    probe(
        "Kernel::owners_by_id(Map)",
        "the same iterator, ids and owners only (the supervisor's whole read: every 10 s, and after a burst of creations)",
        &mut || Ok(kernel.owners_by_id(ObjectKind::Map)?.len()),
    )?;
    let (here, _there) = std::os::unix::net::UnixStream::pair()?;
    probe(
        "Kernel::peer_credentials",
        "what a connection's maker held when it connected: the fd iterator over this process (asked for callers with capabilities)",
        &mut || {
            use std::os::fd::AsFd;
            Ok(usize::from(kernel.peer_credentials(here.as_fd())?.is_some()))
        },
    )?;
    probe(
        "ns_infos work: Kernel::list of every kind + tagged tasks",
        "what every ns_show/ns_list request computes",
        &mut || {
            let mut n = 0;
            for k in ObjectKind::ALL {
                n += kernel.list(k)?.len();
            }
            n += kernel.tagged_tasks()?.len();
            Ok(n)
        },
    )?;
    probe(
        "client.list(Map) as root",
        "one list request round trip: daemon work + JSON both ways",
        &mut || Ok(c.list(ObjectKind::Map)?.len()),
    )?;
    probe("client.ns_show(NS)", "one ns_show round trip", &mut || {
        Ok(c.ns_show(NS)?.objects.map as usize)
    })?;
    let objs = c.list(ObjectKind::Map)?;
    probe(
        "encode the root's list reply",
        "serde_json of the list reply, in the bench process",
        &mut || {
            let resp = bpfns_proto::Response::ok(
                1,
                bpfns_proto::Reply::Objects {
                    objects: objs.clone(),
                },
            );
            Ok(bpfns_proto::encode(&resp, bpfns_proto::MAX_RESPONSE)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .len())
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listings() {
        let l = parse_listing(br#"[{"id":7,"namespace":"/a"},{"id":9}]"#).expect("parses");
        assert_eq!(l, vec![(7, Some("/a".to_string())), (9, None)]);
        assert!(parse_listing(b"[]").expect("empty").is_empty());
        assert!(parse_listing(br#"{"error":"x"}"#).is_err());
        assert!(parse_listing(br#"[{"name":"no id"}]"#).is_err());
    }

    #[test]
    fn every_scenario_is_in_one_phase() {
        for s in Scenario::FEW {
            assert!(!Scenario::ALL.contains(&s));
        }
        assert_eq!(Scenario::FEW.len() + Scenario::ALL.len(), 11);
    }

    #[test]
    fn members_run_bpftool_through_bpfns_exec() {
        let t = Tools {
            bpfns: "/b/bpfns".into(),
            bpftool: "/s/bpftool".into(),
            setpriv: "/u/setpriv".into(),
            truth: "/u/true".into(),
            unshare: "/u/unshare".into(),
            socket: "/tmp/s.sock".into(),
        };
        let argv = |s| -> Vec<String> {
            let c = t.command(s);
            std::iter::once(c.get_program())
                .chain(c.get_args())
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            argv(Scenario::MemberRootBpftool).join(" "),
            "/b/bpfns --socket /tmp/s.sock exec /bench -- /s/bpftool map show -j"
        );
        let cap = argv(Scenario::MemberCapBpfBpftool);
        assert!(cap.contains(&"--ambient-caps=-all,+bpf".to_string()));
        assert_eq!(cap.last().map(String::as_str), Some("-j"));
        assert_eq!(
            argv(Scenario::BpfnsList).join(" "),
            "/b/bpfns --socket /tmp/s.sock map list -j"
        );
    }
}
