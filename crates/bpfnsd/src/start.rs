//! Starting bpfnsd: what the `bpfnsd` binary does after reading its flags.

use std::sync::Arc;

use crate::config::Config;
use crate::server::{listen, serve, ServerError};
use crate::store::{Store, StoreError};
use crate::Daemon;

/// Why bpfnsd could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("bpfnsd must run as root (it loads BPF programs and mounts bpffs)")]
    NotRoot,
    #[error("loading the kernel side at {pin_root}: {error}")]
    Kernel {
        pin_root: String,
        #[source]
        error: bpfns_kernel::KernelError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading /proc/self/uid_map and /proc/self/ns/user: {0}")]
    UserNamespace(std::io::Error),
    #[error("{0}")]
    Daemon(String),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
}

/// Serve bpfns: make sure no other bpfnsd serves this socket or holds this database (before
/// anything is loaded or pinned), load or upgrade the kernel side, open the state, reconcile,
/// and serve the API until the process ends. `ready` runs once the socket accepts connections.
/// With `check_only`, [`check`] instead: nothing is changed.
pub fn run(config: Config, check_only: bool, ready: impl FnOnce()) -> Result<(), StartError> {
    if !bpfns_sys::probe::is_root() {
        return Err(StartError::NotRoot);
    }
    // Settings that cannot work stop bpfnsd before anything is loaded or pinned.
    config
        .containers
        .naming()
        .check()
        .map_err(|e| StartError::Daemon(e.to_string()))?;
    if check_only {
        for line in check(&config)? {
            println!("{line}");
        }
        return Ok(());
    }
    raise_fd_limit();
    // Single instance first: a second bpfnsd must not touch the first one's kernel side.
    let (listener, origin) = listen(&config.socket, config.socket_mode)?;
    let store = Store::open(&config.db_path()).map_err(|e| match e {
        StoreError::Db { path, message } => StoreError::Db {
            message: format!(
                "{message}; is another bpfnsd using it{}? Stop it first, or pass another \
                 --state-dir",
                holders_of(&path)
            ),
            path,
        },
        e => e,
    })?;
    let kernel_err = |error| StartError::Kernel {
        pin_root: config.pin_root.display().to_string(),
        error,
    };
    let layout = bpfns_kernel::PinLayout::new(&config.pin_root);
    let report = bpfns_kernel::loader::load(&layout).map_err(kernel_err)?;
    for m in &report.mounted {
        tracing::info!("mounted {m}");
    }
    tracing::info!(
        pin_root = %config.pin_root.display(),
        reused_state = report.reused_state,
        "kernel side ready"
    );
    let kernel = bpfns_kernel::Kernel::open(&layout).map_err(kernel_err)?;
    let init_userns = crate::caller::init_userns().map_err(StartError::UserNamespace)?;
    let daemon = Daemon::new(config.clone(), kernel, store, init_userns)
        .map_err(|f| StartError::Daemon(f.message))?;
    for note in daemon
        .reconcile()
        .map_err(|f| StartError::Daemon(f.message))?
    {
        if note.starts_with("FAILED") {
            tracing::error!("reconcile: {note}");
        } else {
            tracing::info!("reconcile: {note}");
        }
    }
    let daemon = Arc::new(daemon);
    // Before serving: members of an earlier bpfnsd (held by the listener keeper) are served
    // again from here on.
    crate::supervisor::install(&daemon);
    if daemon.supervises_creations() {
        warn_if_oom_killable();
    }
    Daemon::spawn_collector(
        &daemon,
        std::time::Duration::from_secs(config.gc_interval_secs),
    );
    let receiver = crate::daemon::oci::listen_seccomp(&config.seccomp_socket).map_err(|e| {
        StartError::Io(
            format!(
                "binding the seccomp receiver at {}",
                config.seccomp_socket.display()
            ),
            e,
        )
    })?;
    crate::daemon::oci::serve_seccomp(receiver, &daemon);
    if let Some(addr) = &config.metrics {
        let bound = crate::metrics::serve(addr, &daemon).map_err(|e| {
            StartError::Io(
                match &config.metrics_netns {
                    Some(n) => format!(
                        "serving metrics at {addr} in the network namespace {} (the metrics \
                         and metrics_netns settings)",
                        n.display()
                    ),
                    None => format!("serving metrics at {addr} (the metrics setting)"),
                },
                e,
            )
        })?;
        tracing::info!("metrics at http://{bound}/metrics");
    }
    stop_on_signal(&daemon)?;
    tracing::info!(socket = %config.socket.display(), ?origin, "serving");
    ready();
    serve(listener, daemon)?;
    Ok(())
}

/// On SIGTERM or SIGINT (`systemctl stop`, Ctrl-C): let a change to the namespaces in
/// progress finish (every change is committed before it is answered, so nothing else needs
/// flushing), say so, and exit. Members stay supervised by the listener keeper until the
/// next bpfnsd, and enforcement stays in the kernel.
fn stop_on_signal(daemon: &Arc<Daemon>) -> Result<(), StartError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| StartError::Io("installing the SIGTERM handler".into(), e))?;
    let daemon = Arc::clone(daemon);
    std::thread::Builder::new()
        .name("bpfns-shutdown".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
                let _no_more_changes = daemon.stop_changes();
                tracing::info!(
                    "shutting down ({name}); members stay supervised by the listener keeper \
                     until the next bpfnsd, and enforcement stays in the kernel"
                );
                std::process::exit(0);
            }
        })
        .map_err(|e| StartError::Io("starting the shutdown thread".into(), e))?;
    Ok(())
}

/// What `bpfnsd --check` finds, one line each, changing nothing (like `nginx -t`): the
/// configuration (already parsed), whether another bpfnsd serves the socket, the stored
/// registry (read only), the kernel side (its programs loaded through the verifier and
/// dropped again; nothing pinned, attached or mounted) and the BPF LSM layer's availability.
pub fn check(config: &Config) -> Result<Vec<String>, StartError> {
    let mut lines = vec!["configuration: ok".to_string()];
    let running = std::os::unix::net::UnixStream::connect(&config.socket)
        .ok()
        .and_then(|s| {
            use std::os::fd::AsFd;
            bpfns_sys::unix::peer_cred(s.as_fd()).ok()
        });
    match running {
        Some((pid, _, _)) => lines.push(format!(
            "socket {}: a bpfnsd serves it (pid {pid}); this check leaves it alone",
            config.socket.display()
        )),
        None => lines.push(format!("socket {}: free", config.socket.display())),
    }
    let db = config.db_path();
    if running.is_some() {
        lines.push(format!(
            "database {}: in use by the running bpfnsd, not opened",
            db.display()
        ));
    } else {
        match Store::peek_registry(&db)? {
            Some(reg) => lines.push(format!(
                "database {}: {} namespace(s) stored, readable",
                db.display(),
                reg.len().saturating_sub(1)
            )),
            None => lines.push(format!(
                "database {}: none yet (bpfnsd creates it at its first start)",
                db.display()
            )),
        }
    }
    let progs = bpfns_kernel::loader::verify().map_err(|error| StartError::Kernel {
        pin_root: config.pin_root.display().to_string(),
        error,
    })?;
    lines.push(format!(
        "kernel side: its {} programs pass this kernel's verifier (loaded and dropped; nothing \
         pinned or attached)",
        progs.len()
    ));
    let layout = bpfns_kernel::PinLayout::new(&config.pin_root);
    lines.push(if bpfns_kernel::loader::is_loaded(&layout) {
        format!(
            "pin root {}: a kernel side is loaded there (bpfnsd reuses its state)",
            config.pin_root.display()
        )
    } else {
        format!(
            "pin root {}: nothing loaded yet (bpfnsd loads and pins the kernel side there)",
            config.pin_root.display()
        )
    });
    // Asking the kernel would mount securityfs where it is not: this check mounts nothing.
    lines.push(
        if !std::path::Path::new("/sys/kernel/security/lsm").exists() {
            "BPF LSM layer: not checked (securityfs is not mounted; bpfnsd mounts it at start)"
                .to_string()
        } else {
            match bpfns_kernel::lsm::kernel_allows() {
                Ok(()) => "BPF LSM layer: available (bpfnsd loads it)".to_string(),
                Err(why) => format!("BPF LSM layer: unavailable: {why}"),
            }
        },
    );
    Ok(lines)
}

/// ` (pid N, ...)` for the processes that have `path` open, or nothing.
fn holders_of(path: &std::path::Path) -> String {
    let mut pids = Vec::new();
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
                continue;
            };
            if fds
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == path))
            {
                pids.push(pid.to_string());
            }
        }
    }
    if pids.is_empty() {
        String::new()
    } else {
        format!(" (pid {})", pids.join(", "))
    }
}

/// Raise the soft limit on open files to the hard limit: connections, supervised members and
/// record collection all need fds, and the connection limits keep a reserve of them
/// (`fd_reserve`) counted from this limit.
pub fn raise_fd_limit() {
    match bpfns_sys::process::raise_nofile_to_hard() {
        Ok(n) => tracing::debug!(limit = n, "open file limit"),
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
}

/// Where bpfnsd makes members' maps, the children that make them share its memory inside the
/// members' memory cgroups: they are kept from the OOM killer by an oom_score_adj of -1000,
/// which they set themselves with `CAP_SYS_RESOURCE` or inherit from bpfnsd. Say so when
/// neither holds (threat model §4, "Map and BTF creation").
fn warn_if_oom_killable() {
    let adj = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    let can_lower = bpfns_sys::caps::of_current_thread().is_ok_and(|c| {
        c.permitted
            .contains(bpfns_sys::caps::CapabilitySet::SYS_RESOURCE)
    });
    if adj != Some(-1000) && !can_lower {
        tracing::warn!(
            oom_score_adj = adj,
            "bpfnsd lacks CAP_SYS_RESOURCE and runs with an oom_score_adj above -1000: a member \
             whose memory cgroup reaches its limit while bpfnsd makes its map can get bpfnsd \
             OOM-killed; fix: run it under the systemd unit (OOMScoreAdjust=-1000), or with \
             CAP_SYS_RESOURCE, or echo -1000 > /proc/PID/oom_score_adj as a privileged user"
        );
    }
}
