//! What one listing step costs a process: `BPF_MAP_GET_NEXT_ID` and `BPF_MAP_GET_FD_BY_ID`,
//! each call timed alone, over every map the process can see. Run as a namespace member (the
//! supervisor answers them) and as root (the kernel answers them), it shows the per-object
//! price of the supervisor that an unmodified bpftool pays.
//!
//! The hidden `traps` subcommand prints one [`TrapTimes`] as JSON.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bpfns_model::ObjectKind;
use bpfns_sys::{bpf, Errno};
use serde::{Deserialize, Serialize};

use crate::stats::quantile;

/// Per-call times of one walk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrapTimes {
    /// Maps the walk found.
    pub maps: usize,
    /// The first `GET_NEXT_ID` (from id 0): for a member, the supervisor builds the
    /// namespace's visible list here.
    pub first_next_id_ns: f64,
    pub next_id_median_ns: f64,
    pub next_id_p90_ns: f64,
    pub fd_by_id_median_ns: f64,
    pub fd_by_id_p90_ns: f64,
}

/// The `traps` subcommand: walk all visible maps, then open each; `reps` times, keeping the
/// fastest walk start and all per-call samples.
pub fn serve(reps: usize) -> Result<()> {
    bpfns_sys::process::raise_nofile_limit(1024)?;
    let mut first = Vec::new();
    let mut next = Vec::new();
    let mut open = Vec::new();
    let mut maps = 0;
    for _ in 0..reps.max(1) {
        let mut ids = Vec::new();
        let mut cur = 0;
        loop {
            let t = Instant::now();
            let r = bpf::next_id(ObjectKind::Map, cur).context("BPF_MAP_GET_NEXT_ID")?;
            let ns = t.elapsed().as_nanos() as f64;
            if cur == 0 {
                first.push(ns);
            } else {
                next.push(ns);
            }
            match r {
                Some(id) => {
                    ids.push(id);
                    cur = id;
                }
                None => break,
            }
        }
        for &id in &ids {
            let t = Instant::now();
            match bpf::fd_by_id(ObjectKind::Map, id) {
                Ok(fd) => {
                    open.push(t.elapsed().as_nanos() as f64);
                    drop(fd);
                }
                // Freed meanwhile.
                Err(e) if e.errno == Errno::NOENT => {}
                Err(e) => return Err(e).context("BPF_MAP_GET_FD_BY_ID"),
            }
        }
        maps = ids.len();
    }
    let times = TrapTimes {
        maps,
        first_next_id_ns: quantile(&first, 0.5),
        next_id_median_ns: quantile(&next, 0.5),
        next_id_p90_ns: quantile(&next, 0.9),
        fd_by_id_median_ns: quantile(&open, 0.5),
        fd_by_id_p90_ns: quantile(&open, 0.9),
    };
    println!("{}", serde_json::to_string(&times)?);
    Ok(())
}

/// Run `cmd` (which ends in this binary's `traps` subcommand) and parse its answer.
pub fn run(cmd: Command) -> Result<TrapTimes> {
    run_probe(cmd, "traps probe")
}

/// Run `cmd`, a probe subcommand of this binary printing JSON, and parse its answer.
fn run_probe<T: serde::de::DeserializeOwned>(mut cmd: Command, what: &str) -> Result<T> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running the {what}"))?;
    if !out.status.success() {
        bail!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("parsing the {what}'s output"))
}

/// Per-call times of creations that a namespace's policy checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateTimes {
    pub map_create_median_ns: f64,
    pub map_create_p90_ns: f64,
    pub prog_load_median_ns: f64,
    pub prog_load_p90_ns: f64,
}

/// Maps a second that `creates --churn-secs` makes: twice a subscriber's queue.
const CHURN_PER_SEC: f64 = 2048.0;

/// `r0 = 0; exit`.
const RET0: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];

/// The `creates` subcommand: `reps` times `BPF_MAP_CREATE` of a one-entry array and
/// `BPF_PROG_LOAD` of a two-instruction socket filter, each timed alone and closed at once;
/// with `churn_secs`, array maps made and closed for that long instead (their count printed).
pub fn serve_creates(reps: usize, churn_secs: Option<f64>) -> Result<()> {
    if let Some(secs) = churn_secs {
        // An event source (object_created for each map while somebody subscribes).
        // Paced at CHURN_PER_SEC: faster, the namespace's records of freed maps (collected
        // every few seconds without BPF LSM) would reach its limit.
        let start = Instant::now();
        let end = start + std::time::Duration::from_secs_f64(secs);
        let mut n = 0u64;
        while Instant::now() < end {
            drop(
                bpf::map_create(libbpf_sys::BPF_MAP_TYPE_ARRAY, "bench_churn", 4, 8, 1)
                    .context("BPF_MAP_CREATE")?,
            );
            n += 1;
            let due = start + std::time::Duration::from_secs_f64(n as f64 / CHURN_PER_SEC);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        println!("{n}");
        return Ok(());
    }
    let mut maps = Vec::new();
    let mut progs = Vec::new();
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let m = bpf::map_create(libbpf_sys::BPF_MAP_TYPE_ARRAY, "bench_arr", 4, 8, 1)
            .context("BPF_MAP_CREATE")?;
        maps.push(t.elapsed().as_nanos() as f64);
        drop(m);
        let t = Instant::now();
        let p = bpf::prog_load(
            libbpf_sys::BPF_PROG_TYPE_SOCKET_FILTER,
            "bench_sf",
            &RET0,
            bpf::ProgLoadOpts::default(),
        )
        .context("BPF_PROG_LOAD")?;
        progs.push(t.elapsed().as_nanos() as f64);
        drop(p);
    }
    let times = CreateTimes {
        map_create_median_ns: quantile(&maps, 0.5),
        map_create_p90_ns: quantile(&maps, 0.9),
        prog_load_median_ns: quantile(&progs, 0.5),
        prog_load_p90_ns: quantile(&progs, 0.9),
    };
    println!("{}", serde_json::to_string(&times)?);
    Ok(())
}

/// Run `cmd` (which ends in this binary's `creates` subcommand) and parse its answer.
pub fn run_creates(cmd: Command) -> Result<CreateTimes> {
    run_probe(cmd, "creations probe")
}
