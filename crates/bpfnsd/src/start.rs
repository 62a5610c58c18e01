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
}

/// Load or upgrade the kernel side, open the state, reconcile, and (unless `check_only`)
/// serve the API until the process ends. `ready` runs once the socket accepts connections.
pub fn run(config: Config, check_only: bool, ready: impl FnOnce()) -> Result<(), StartError> {
    if !bpfns_sys::probe::is_root() {
        return Err(StartError::NotRoot);
    }
    raise_fd_limit();
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
    let store = Store::open(&config.db_path())?;
    let init_userns = crate::caller::init_userns().map_err(StartError::UserNamespace)?;
    let daemon = Daemon::new(config.clone(), kernel, store, init_userns)
        .map_err(|f| StartError::Daemon(f.message))?;
    for note in daemon
        .reconcile()
        .map_err(|f| StartError::Daemon(f.message))?
    {
        tracing::info!("reconcile: {note}");
    }
    if check_only {
        return Ok(());
    }
    let daemon = Arc::new(daemon);
    // Before serving: members of an earlier bpfnsd (held by the listener keeper) are served
    // again from here on.
    crate::supervisor::install(&daemon);
    Daemon::spawn_collector(
        &daemon,
        std::time::Duration::from_secs(config.gc_interval_secs),
    );
    let (listener, origin) = listen(&config.socket, config.socket_mode)?;
    tracing::info!(socket = %config.socket.display(), ?origin, "serving");
    ready();
    serve(listener, daemon);
    Ok(())
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
