//! Load on the daemon's API: N client threads, each with its own connection, sending one
//! kind of request back to back (closed loop) for a bounded time.
//!
//! It runs in a child process (this binary, hidden `load` subcommand) so that the daemon can
//! tag it into a namespace before it starts (`enter`: the client is then a namespace member
//! using the direct API, contract point (docs/design.md) 5), and so that its threads do not share a file table
//! with the controller.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bpfns_client::Client;
use bpfns_model::ObjectKind;
use serde::{Deserialize, Serialize};

use super::cpu::{Meter, Usage};
use crate::stats::quantile_sorted;

/// What each client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LoadOp {
    /// `get_fd` of a visible map (the fd is closed after the reply).
    GetFd,
    /// `list` of maps.
    List,
    /// `hello`: the cheapest request (framing, caller refresh, a thread wake-up).
    Hello,
}

impl LoadOp {
    pub fn label(self) -> &'static str {
        match self {
            LoadOp::GetFd => "get_fd (map)",
            LoadOp::List => "list (maps)",
            LoadOp::Hello => "hello",
        }
    }
}

/// Arguments of the hidden `load` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    #[arg(long)]
    pub socket: PathBuf,
    #[arg(long, value_enum)]
    pub op: LoadOp,
    #[arg(long)]
    pub threads: usize,
    #[arg(long)]
    pub warmup_ms: u64,
    #[arg(long)]
    pub duration_ms: u64,
    /// The daemon's pid, for its CPU time over the window.
    #[arg(long)]
    pub daemon_pid: Option<u32>,
    /// Pace the clients to this many requests per second in all (default: closed loop, each
    /// client sends its next request as soon as the reply arrives).
    #[arg(long)]
    pub rate: Option<f64>,
}

/// What one load run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadResult {
    pub op: LoadOp,
    /// Namespace the clients were in (as the daemon saw them).
    pub namespace: String,
    pub threads: usize,
    /// Offered load when paced (requests per second in all); `None`: closed loop.
    pub rate: Option<f64>,
    /// Objects visible to the clients (get_fd cycles through them).
    pub visible: usize,
    /// Requests completed within the measured window (latencies are theirs).
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub per_sec: f64,
    pub p50_ns: f64,
    pub p90_ns: f64,
    pub p99_ns: f64,
    pub p999_ns: f64,
    pub max_ns: f64,
    pub mean_ns: f64,
    /// CPU over the measured window: watched = [daemon, load generator].
    pub cpu: Usage,
}

impl LoadResult {
    /// CPU time per request (ns) of the daemon and of the clients.
    pub fn cpu_per_request_ns(&self) -> (f64, f64) {
        let per = |cpus: f64| cpus * self.seconds * 1e9 / self.requests.max(1) as f64;
        (
            per(self.cpu.watched.first().copied().unwrap_or(0.0)),
            per(self.cpu.watched.get(1).copied().unwrap_or(0.0)),
        )
    }
}

/// The `load` subcommand: wait for a go line on stdin (the controller tags us first), then
/// load the daemon and print one [`LoadResult`] as JSON.
pub fn serve(args: &LoadArgs) -> Result<()> {
    bpfns_sys::process::raise_nofile_limit(args.threads as u64 * 4 + 256)?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let result = run(args)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &result)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// The first failed request, told on stderr (the count alone does not say what failed).
fn note_failure(what: String) {
    static FIRST: std::sync::Once = std::sync::Once::new();
    FIRST.call_once(|| eprintln!("bpfns-bench load: the first failed request: {what}"));
}

fn run(args: &LoadArgs) -> Result<LoadResult> {
    let mut probe = Client::connect(&args.socket)?;
    let namespace = probe.hello()?.namespace;
    let ids: Arc<Vec<u32>> = Arc::new(probe.list(ObjectKind::Map)?.iter().map(|o| o.id).collect());
    if ids.is_empty() && args.op == LoadOp::GetFd {
        bail!("no visible maps to open");
    }
    drop(probe);
    let threads = args.threads.max(1);
    // Used twice: every client connected; the window is set.
    let barrier = Arc::new(Barrier::new(threads + 1));
    let errors = Arc::new(AtomicU64::new(0));
    // Set by the main thread once every client is connected.
    let window: Arc<std::sync::OnceLock<(Instant, Instant, Instant)>> =
        Arc::new(std::sync::OnceLock::new());
    let mut handles = Vec::new();
    for t in 0..threads {
        let (ids, barrier, errors, window) = (
            Arc::clone(&ids),
            Arc::clone(&barrier),
            Arc::clone(&errors),
            Arc::clone(&window),
        );
        let socket = args.socket.clone();
        let op = args.op;
        let interval = args
            .rate
            .map(|r| Duration::from_secs_f64(threads as f64 / r.max(1.0)));
        handles.push(std::thread::spawn(move || -> Result<Vec<u32>> {
            let mut c = Client::connect(&socket)?;
            c.hello()?;
            barrier.wait();
            // The main thread sets the window now.
            barrier.wait();
            let &(start, warm_end, end) = window.get().context("no measuring window")?;
            let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
            // Threads start at different ids so they do not all open the same map.
            let mut k = t * ids.len().max(1) / threads;
            // Paced: this thread's sends are due every `interval`, phase-shifted per thread.
            let mut due =
                start + interval.map_or(Duration::ZERO, |iv| iv * t as u32 / threads as u32);
            loop {
                // Latency counts from when the request was due (paced) or sent (closed loop),
                // so a paced client that falls behind sees the queueing too.
                let t0 = match interval {
                    Some(iv) => {
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        let d = due;
                        due += iv;
                        d
                    }
                    None => Instant::now(),
                };
                if t0 >= end {
                    break;
                }
                let ok = match op {
                    LoadOp::GetFd => {
                        let id = ids[k % ids.len()];
                        k += 1;
                        let fd = c.get_fd(ObjectKind::Map, id);
                        if let Err(e) = &fd {
                            note_failure(format!("get_fd of map {id}: {e}"));
                        }
                        let ok = fd.is_ok();
                        let done = Instant::now();
                        drop(fd);
                        (ok, done)
                    }
                    LoadOp::List => {
                        let r = c.list(ObjectKind::Map);
                        if let Err(e) = &r {
                            note_failure(format!("list: {e}"));
                        }
                        (r.is_ok(), Instant::now())
                    }
                    LoadOp::Hello => {
                        let r = c.hello();
                        if let Err(e) = &r {
                            note_failure(format!("hello: {e}"));
                        }
                        (r.is_ok(), Instant::now())
                    }
                };
                if !ok.0 {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                // Every request that completes within the window counts (also one sent
                // before it: a slow request must not fall out of a short window).
                if ok.1 >= warm_end && ok.1 <= end {
                    let d = ok.1.saturating_duration_since(t0);
                    lat.push(u32::try_from(d.as_nanos()).unwrap_or(u32::MAX));
                }
            }
            Ok(lat)
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let warm_end = start + Duration::from_millis(args.warmup_ms);
    let end = warm_end + Duration::from_millis(args.duration_ms);
    let _ = window.set((start, warm_end, end));
    barrier.wait();
    std::thread::sleep(warm_end.saturating_duration_since(Instant::now()));
    let meter = Meter::start(&[
        (args.daemon_pid.unwrap_or(0), false),
        (std::process::id(), false),
    ]);
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let cpu = meter.stop();
    let mut all: Vec<f64> = Vec::new();
    for h in handles {
        let lat = h
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        all.extend(lat.into_iter().map(f64::from));
    }
    all.sort_by(f64::total_cmp);
    let seconds = Duration::from_millis(args.duration_ms).as_secs_f64();
    let q = |p: f64| quantile_sorted(&all, p);
    Ok(LoadResult {
        op: args.op,
        namespace,
        threads,
        rate: args.rate,
        visible: ids.len(),
        requests: all.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        seconds,
        per_sec: all.len() as f64 / seconds,
        p50_ns: q(0.5),
        p90_ns: q(0.9),
        p99_ns: q(0.99),
        p999_ns: q(0.999),
        max_ns: all.last().copied().unwrap_or(f64::NAN),
        mean_ns: all.iter().sum::<f64>() / all.len().max(1) as f64,
        cpu,
    })
}

/// One load run.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    /// Namespace the clients run in (`/`: untagged, the root).
    pub namespace: &'static str,
    pub op: LoadOp,
    pub threads: usize,
    /// Pace the clients to this total rate (requests/s); `None`: closed loop.
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Run a load in a child process, tagged into its namespace first unless that is `/`.
pub fn run_child(socket: &Path, daemon_pid: u32, spec: &LoadSpec) -> Result<LoadResult> {
    let &LoadSpec {
        namespace,
        op,
        threads,
        rate,
        warmup,
        duration,
    } = spec;
    let exe = std::env::current_exe().context("finding this binary")?;
    let child = Command::new(exe)
        .arg("load")
        .arg("--socket")
        .arg(socket)
        .args(["--op", op_arg(op)])
        .args(["--threads", &threads.to_string()])
        .args(["--warmup-ms", &warmup.as_millis().to_string()])
        .args(["--duration-ms", &duration.as_millis().to_string()])
        .args(["--daemon-pid", &daemon_pid.to_string()])
        .args(rate.map(|r| format!("--rate={r:.0}")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the load generator")?;
    let mut child = ChildGuard(child);
    let child = &mut child.0;
    if namespace != "/" {
        Client::connect(socket)?
            .enter(namespace, child.id() as i32)
            .with_context(|| format!("putting the load generator into {namespace}"))?;
    }
    let mut stdin = child.stdin.take().context("load generator stdin")?;
    stdin.write_all(b"go\n")?;
    drop(stdin);
    let stdout = child.stdout.take().context("load generator stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let status = child.wait()?;
    if !status.success() {
        bail!("the load generator failed ({status})");
    }
    let r: LoadResult = serde_json::from_str(&line).context("parsing the load result")?;
    if r.namespace != namespace {
        bail!(
            "the load generator ran in {}, expected {namespace}",
            r.namespace
        );
    }
    Ok(r)
}

fn op_arg(op: LoadOp) -> &'static str {
    match op {
        LoadOp::GetFd => "get-fd",
        LoadOp::List => "list",
        LoadOp::Hello => "hello",
    }
}

/// A child process, killed and reaped on drop if still running (error paths).
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
