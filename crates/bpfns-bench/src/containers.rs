//! `bpfns-bench containers`: what bpfns adds to a container's start.
//!
//! Two levels, each against the same thing without bpfns, in interleaved rounds:
//!
//! - **runtime**: `RUNTIME run` of a prepared bundle whose process is `true`, directly
//!   against through `bpfns-oci-RUNTIME` (config rewrite, namespace creation, the
//!   `createRuntime` hook tagging the init and mounting its bpffs, for `--cap-add BPF` also the
//!   seccomp listener handed to bpfnsd). The runtime alone is the floor a wrapper cannot go below.
//! - **engine**: `podman run --rm IMAGE true` with the runtime against the bpfns runtime, the
//!   whole start as a user sees it.
//!
//! Everything runs against a private bpfnsd ([`crate::daemon::rig::BenchDaemon`]), private podman
//! storage and configuration, and a private runtime state root; all of it is removed at the end.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use serde::Serialize;

use crate::daemon::rig::BenchDaemon;
use crate::daemon::{sibling, which};
use crate::stats::Summary;

/// The image and its archive, as `scripts/containers/setup.sh` makes them.
const IMAGE: &str = "localhost/bpfns-test";
const ARCHIVE: &str = "/var/lib/bpfns-containers/bpfns-test.tar";
/// The rlimits this machine lets root set (see scripts/containers/setup.sh).
const ULIMITS: &str = r#"default_ulimits = ["nofile=20000:20000", "nproc=16384:16384"]"#;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Interleaved rounds (one start of every setup per round; default 30, or 3 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// A short run: a smoke test, not a measurement.
    #[arg(long)]
    quick: bool,
    /// Print the results as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,
    /// Runtimes to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "runc,crun")]
    runtimes: Vec<String>,
    /// Skip the podman level (runtime level only).
    #[arg(long)]
    no_engine: bool,
    /// The image archive (default: what scripts/containers/setup.sh builds).
    #[arg(long, default_value = ARCHIVE)]
    archive: PathBuf,
    /// bpfnsd to run (default: beside this binary).
    #[arg(long)]
    bpfnsd: Option<PathBuf>,
    /// bpfns-oci to run (default: beside this binary).
    #[arg(long)]
    bpfns_oci: Option<PathBuf>,
}

/// One setup: how a start is made, and which setup is its baseline.
#[derive(Debug, Clone)]
struct Setup {
    label: String,
    /// The argv of one start; `{id}` is replaced by a fresh container id.
    argv: Vec<String>,
    /// Bundle config to restore before each start (the wrapper rewrites it in place).
    config: Option<(PathBuf, PathBuf)>,
    baseline: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub label: String,
    pub baseline: Option<String>,
    pub start: Summary,
    /// Median over the baseline's median.
    pub ratio: Option<f64>,
    /// Median minus the baseline's median.
    pub added_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: crate::report::Machine,
    pub args: Vec<String>,
    pub rounds: usize,
    pub rows: Vec<Row>,
    /// Setups that could not be measured here, with the reason.
    pub not_measured: Vec<(String, String)>,
}

/// Private podman storage, runtime roots and bundles; removed on drop.
struct Rig {
    dir: PathBuf,
    podman: bool,
}

impl Rig {
    fn podman_cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"));
        c
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if self.podman {
            let quiet = |mut c: Command| {
                let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
            };
            let mut c = self.podman_cmd();
            c.args(["rm", "-a", "-f"]);
            quiet(c);
            let mut c = self.podman_cmd();
            c.args(["system", "reset", "-f"]);
            quiet(c);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn run(args: &Args) -> Result<()> {
    if !crate::is_root() {
        bail!("needs root (it runs containers and a bpfnsd): run it with sudo");
    }
    bpfns_sys::process::catch_interrupts()?;
    for d in crate::daemon::rig::remove_stale_daemons() {
        eprintln!("removed a stale bench daemon at {}", d.display());
    }
    if !args.archive.exists() {
        bail!(
            "the test image {} is missing: run scripts/containers/setup.sh as root",
            args.archive.display()
        );
    }
    let bpfnsd = sibling(args.bpfnsd.as_deref(), "bpfnsd")?;
    let oci = sibling(args.bpfns_oci.as_deref(), "bpfns-oci")?;
    let rounds = args
        .rounds
        .unwrap_or(if args.quick { 3 } else { 30 })
        .max(1);
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| crate::count_cpus(s.trim()))
        .unwrap_or(1);
    let machine = crate::report::Machine::probe(cpus, 0);

    eprintln!("bpfns-bench containers: starting {}", bpfnsd.display());
    let daemon = BenchDaemon::start(&bpfnsd)?;
    let dir = PathBuf::from(format!(
        "/tmp/bpfns-bench-containers-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut rig = Rig {
        dir: dir.clone(),
        podman: false,
    };
    let mut not_measured = Vec::new();
    let setups = prepare(args, &mut rig, &daemon, &oci, &mut not_measured)?;
    if setups.is_empty() {
        bail!("nothing to measure: {not_measured:?}");
    }

    // Interleaved: every round starts every setup once, in an order that rotates.
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    let mut failed: Vec<Option<String>> = vec![None; setups.len()];
    for r in 0..rounds {
        eprintln!("round {}/{rounds}", r + 1);
        for k in 0..setups.len() {
            crate::controller::check_interrupt()?;
            let i = (k + r) % setups.len();
            if failed[i].is_some() {
                continue;
            }
            let id = format!("bench-{}-{r}-{i}", std::process::id());
            match start_once(&setups[i], &id, &rig) {
                Ok(ns) => samples[i].push(ns),
                Err(e) => failed[i] = Some(format!("{e:#}")),
            }
        }
    }
    drop(rig);
    drop(daemon);

    let mut rows = Vec::new();
    for (i, s) in setups.iter().enumerate() {
        if let Some(why) = &failed[i] {
            not_measured.push((s.label.clone(), why.clone()));
            continue;
        }
        let start = Summary::of(&samples[i]);
        let base = s
            .baseline
            .filter(|&b| failed[b].is_none())
            .map(|b| (setups[b].label.clone(), Summary::of(&samples[b])));
        rows.push(Row {
            label: s.label.clone(),
            ratio: base.as_ref().map(|(_, b)| start.median_ns / b.median_ns),
            added_ms: base
                .as_ref()
                .map(|(_, b)| (start.median_ns - b.median_ns) / 1e6),
            baseline: base.map(|(l, _)| l),
            start,
        });
    }
    let report = Report {
        machine,
        args: std::env::args().skip(1).collect(),
        rounds,
        rows,
        not_measured,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", text(&report));
    }
    Ok(())
}

/// Bundles, wrapper links, podman configuration; the setups to measure.
fn prepare(
    args: &Args,
    rig: &mut Rig,
    daemon: &BenchDaemon,
    oci: &Path,
    not_measured: &mut Vec<(String, String)>,
) -> Result<Vec<Setup>> {
    let dir = rig.dir.clone();
    // The namespace the runtime-level runs (and the "reused" podman runs) name: made here, so
    // that no run makes or deletes it (bpfnsd deletes one an annotation made with its
    // container).
    let mut client = daemon.client()?;
    for p in ["/bench", "/bench/containers"] {
        client
            .ns_create(p)
            .with_context(|| format!("creating namespace {p}"))?;
    }
    let wrappers = dir.join("wrappers");
    std::fs::create_dir_all(&wrappers)?;
    std::fs::write(
        wrappers.join("bpfns-oci.toml"),
        format!(
            "socket = {:?}\nseccomp_socket = {:?}\n",
            daemon.socket,
            daemon.dir.join("seccomp.sock")
        ),
    )?;
    let mut runtimes = Vec::new();
    for rt in &args.runtimes {
        match which(Path::new(rt)) {
            Some(path) => {
                let link = wrappers.join(format!("bpfns-oci-{rt}"));
                std::os::unix::fs::symlink(oci, &link)?;
                runtimes.push((rt.clone(), path, link));
            }
            None => not_measured.push((rt.clone(), format!("{rt} is not installed"))),
        }
    }

    // The runtime level: one bundle per runtime and capability set.
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&args.archive)
            .arg("-C")
            .arg(&rootfs),
        "unpacking the image",
    )?;
    let mut setups = Vec::new();
    for (rt, path, link) in &runtimes {
        let state = dir.join(format!("state-{rt}"));
        for bpf in [false, true] {
            let caps = if bpf { " --cap-add BPF" } else { "" };
            let bundle = dir.join(format!("bundle-{rt}{}", if bpf { "-bpf" } else { "" }));
            std::fs::create_dir_all(&bundle)?;
            let config = bundle_config(&rootfs, bpf)?;
            let pristine = bundle.join("config.pristine.json");
            std::fs::write(&pristine, serde_json::to_vec_pretty(&config)?)?;
            let argv = |bin: &Path| {
                vec![
                    bin.display().to_string(),
                    "--root".into(),
                    state.display().to_string(),
                    "run".into(),
                    "--bundle".into(),
                    bundle.display().to_string(),
                    "{id}".into(),
                ]
            };
            let base = setups.len();
            setups.push(Setup {
                label: format!("{rt} run{caps}"),
                argv: argv(path),
                config: Some((pristine.clone(), bundle.join("config.json"))),
                baseline: None,
            });
            setups.push(Setup {
                label: format!("bpfns-oci-{rt} run{caps}"),
                argv: argv(link),
                config: Some((pristine, bundle.join("config.json"))),
                baseline: Some(base),
            });
        }
    }

    if args.no_engine {
        return Ok(setups);
    }
    if which(Path::new("podman")).is_none() {
        not_measured.push((
            "podman".into(),
            "podman is not installed: run scripts/containers/setup.sh as root".into(),
        ));
        return Ok(setups);
    }
    let mut conf = format!(
        "[containers]\n{ULIMITS}\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
         events_logger = \"file\"\n[engine.runtimes]\n"
    );
    for (rt, _, link) in &runtimes {
        conf.push_str(&format!(
            "bpfns-{rt} = [{:?}]\n",
            link.display().to_string()
        ));
    }
    std::fs::write(dir.join("containers.conf"), conf)?;
    rig.podman = true;
    let mut import = rig.podman_cmd();
    import
        .args(["import", "-q", "--change", "CMD [\"/bin/sh\"]"])
        .arg(&args.archive)
        .arg(IMAGE);
    run_ok(
        &mut import,
        "importing the image into the bench's podman storage",
    )?;
    let podman = |runtime: &str, bpf: bool, extra: &[&str]| {
        let mut v: Vec<String> = [
            "podman",
            "--root",
            &dir.join("storage").display().to_string(),
            "--runroot",
            &dir.join("run").display().to_string(),
            "run",
            "--rm",
            "--network=none",
            "--runtime",
            runtime,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if bpf {
            v.extend(["--cap-add".into(), "BPF".into()]);
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend([IMAGE.into(), "true".into()]);
        v
    };
    for (rt, _, _) in &runtimes {
        for bpf in [false, true] {
            let caps = if bpf { " --cap-add BPF" } else { "" };
            let base = setups.len();
            setups.push(Setup {
                label: format!("podman run --runtime {rt}{caps}"),
                argv: podman(rt, bpf, &[]),
                config: None,
                baseline: None,
            });
            setups.push(Setup {
                label: format!("podman run --runtime bpfns-{rt}{caps}"),
                argv: podman(&format!("bpfns-{rt}"), bpf, &[]),
                config: None,
                baseline: Some(base),
            });
            // The same in a namespace that exists already (named by annotation): none is
            // made at create nor deleted at removal, which shows what those cost.
            if !bpf {
                setups.push(Setup {
                    label: format!("podman run --runtime bpfns-{rt}, namespace reused"),
                    argv: podman(
                        &format!("bpfns-{rt}"),
                        bpf,
                        &["--annotation", "io.bpfns.namespace=/bench/containers"],
                    ),
                    config: None,
                    baseline: Some(base),
                });
            }
        }
    }
    Ok(setups)
}

/// The OCI configuration of a container whose process is `true` (with CAP_BPF in every set
/// when `bpf`), in its own pid, mount, ipc, uts and network namespaces.
fn bundle_config(rootfs: &Path, bpf: bool) -> Result<serde_json::Value> {
    let mut caps = vec!["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"];
    if bpf {
        caps.push("CAP_BPF");
    }
    Ok(serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["true"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": rootfs, "readonly": true},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": ["/proc/kcore", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
        },
        "annotations": {"io.bpfns.namespace": "/bench/containers"}
    }))
}

/// One start, timed as a whole process; its output is kept for the error.
fn start_once(s: &Setup, id: &str, rig: &Rig) -> Result<f64> {
    if let Some((pristine, config)) = &s.config {
        std::fs::copy(pristine, config).context("restoring the bundle's config.json")?;
    }
    let argv: Vec<String> = s.argv.iter().map(|a| a.replace("{id}", id)).collect();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null());
    if argv[0] == "podman" {
        cmd.env(
            "CONTAINERS_CONF",
            rig.dir.join("containers.conf").display().to_string(),
        );
    }
    let t = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("running {}", argv[0]))?;
    let ns = t.elapsed().as_nanos() as f64;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}{}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(ns)
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| what.to_string())?;
    if !out.status.success() {
        bail!(
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn text(r: &Report) -> String {
    let mut s = format!(
        "Container start with and without bpfns ({} rounds, interleaved; {} CPUs, kernel {})\n\n",
        r.rounds, r.machine.cpus, r.machine.kernel
    );
    s.push_str(&format!(
        "{:<48} {:>10} {:>10} {:>10} {:>8} {:>10}\n",
        "setup", "p25 ms", "median ms", "p90 ms", "ratio", "added ms"
    ));
    for row in &r.rows {
        s.push_str(&format!(
            "{:<48} {:>10.1} {:>10.1} {:>10.1} {:>8} {:>10}\n",
            row.label,
            row.start.p25_ns / 1e6,
            row.start.median_ns / 1e6,
            row.start.p90_ns / 1e6,
            row.ratio.map_or_else(|| "-".into(), |x| format!("{x:.2}x")),
            row.added_ms
                .map_or_else(|| "-".into(), |x| format!("{x:+.1}")),
        ));
    }
    for (what, why) in &r.not_measured {
        let first = why.lines().next().unwrap_or_default();
        s.push_str(&format!("not measured: {what}: {first}\n"));
    }
    s
}
