//! bpfnsd: the privileged daemon of bpfns. A thin binary over the `bpfnsd` library.

use std::path::PathBuf;

use anyhow::Result;
use bpfnsd::config::{Config, DEFAULT_CONFIG};
use bpfnsd::logging::LogFormat;
use clap::Parser;

/// bpfnsd: BPF namespaces for Linux. Loads the bpfns kernel side, keeps the namespace
/// registry, serves the bpfns API on a Unix socket and supervises namespace members.
///
/// Runs in the foreground and logs to stderr (RUST_LOG=debug for more). Settings come from
/// the defaults, then the TOML file (--config), then these flags.
#[derive(Debug, Parser)]
#[command(name = "bpfnsd", version)]
struct Args {
    /// TOML configuration file (missing default file = all defaults).
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Unix socket of the API [default: /run/bpfns/bpfns.sock].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Directory of the state database [default: /var/lib/bpfns].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// bpffs directory where the kernel side is pinned [default: /sys/fs/bpf/bpfns].
    #[arg(long)]
    pin_root: Option<PathBuf>,
    /// Directory holding each namespace's bpffs instance [default: /run/bpfns/ns].
    #[arg(long)]
    ns_bpffs_dir: Option<PathBuf>,
    /// Unix socket where container runtimes hand over seccomp listeners (OCI `listenerPath`)
    /// [default: seccomp.sock beside --socket when that is given, else /run/bpfns/seccomp.sock].
    #[arg(long)]
    seccomp_socket: Option<PathBuf>,
    /// What to log: error, warn, info (every namespace change, refusal, stopped task and
    /// shutdown), debug or trace. `RUST_LOG` overrides it.
    #[arg(long, default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    log_level: String,
    /// How log lines look: `text` (plain, coloured only on a terminal) or `json` (one JSON
    /// object a line with `timestamp`, `level`, `target` and the event's fields, for log
    /// collectors; the journal keeps either).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9469; `metrics` in
    /// bpfnsd.toml). Off by default; bind it where only the scraper reaches.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Bind the metrics endpoint in this network namespace (e.g. /run/netns/bpfns-metrics;
    /// `metrics_netns` in bpfnsd.toml): members share the host's, loopback included.
    #[arg(long, value_name = "PATH")]
    metrics_netns: Option<PathBuf>,
    /// Check the configuration, the state and the kernel, and exit — changing nothing: no
    /// kernel side is loaded or pinned, no database created, a running bpfnsd left alone.
    #[arg(long)]
    check: bool,
}

/// Counts what bpfnsd holds, so that `status` reports its heap without a walk of the
/// allocator's free lists.
#[global_allocator]
static ALLOCATOR: bpfns_sys::heap::Counting = bpfns_sys::heap::Counting;

fn main() -> Result<std::process::ExitCode> {
    // The listener keeper bpfnsd starts: its own, small program (see bpfnsd::keeper).
    let argv: Vec<String> = std::env::args().collect();
    if bpfnsd::keeper::process::is_keeper(&argv) {
        return Ok(bpfnsd::keeper::process::main(&argv));
    }
    // Two heaps for all threads: with one per thread (glibc's default, up to 8 per CPU) each
    // walk worker kept the pages of its largest answer (96 MiB resident at 10 000 namespaces
    // and 100 000 maps against 17-33 MiB with two and the trim after walks; docs/benchmarks.md).
    bpfns_sys::heap::limit_arenas(2);
    // Listings' frames and object vectors (MiB) in mappings of their own, gone when freed:
    // with glibc's moving threshold the peak at that scale was 93 MiB, 61 MiB with this.
    bpfns_sys::heap::map_large_blocks(256 * 1024);
    let args = Args::parse();
    bpfnsd::logging::init(&args.log_level, args.log_format);
    let explicit = args.config.as_os_str() != DEFAULT_CONFIG;
    let mut config = Config::load(&args.config, explicit)?;
    if let Some(s) = args.socket {
        // A bpfnsd on a socket of its own receives listeners beside it, not at the default
        // path another bpfnsd may hold (unless the configuration names one).
        if config.seccomp_socket == bpfnsd::Config::default().seccomp_socket {
            config.seccomp_socket = s.with_file_name("seccomp.sock");
        }
        config.socket = s;
    }
    if let Some(s) = args.seccomp_socket {
        config.seccomp_socket = s;
    }
    if let Some(s) = args.state_dir {
        config.state_dir = s;
    }
    if let Some(s) = args.pin_root {
        config.pin_root = s;
    }
    if let Some(m) = args.metrics {
        config.metrics = Some(m);
    }
    if let Some(n) = args.metrics_netns {
        config.metrics_netns = Some(n);
    }
    if let Some(s) = args.ns_bpffs_dir {
        config.ns_bpffs_dir = s;
    }
    bpfnsd::start::run(config, args.check, notify_ready)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Tell systemd (Type=notify) that we are ready, if it is listening.
fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let p = PathBuf::from(&path);
    let _ = sock.send_to(b"READY=1", p);
}
