//! Opening BPF objects on behalf of namespace members, with reduced credentials.
//!
//! An fd keeps its opener's credentials (`file->f_cred`). Opened with the daemon's full set,
//! a map or program fd given to a CAP_BPF-only member would let it read kernel addresses and
//! JIT images (`bpf_dump_raw_ok` checks the fd's CAP_SYSLOG). So every open for a member
//! happens on one dedicated thread whose effective set is only what the open needs.

use std::os::fd::OwnedFd;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

use bpfns_model::ObjectKind;
use bpfns_sys::process::{restrict_thread_caps, CapabilitySet};
use bpfns_sys::{Errno, SysError};

/// What the opener thread keeps: CAP_SYS_ADMIN (GET_FD_BY_ID), CAP_BPF, and DAC overrides
/// for pins made by other users.
pub fn opener_caps() -> CapabilitySet {
    CapabilitySet::SYS_ADMIN
        | CapabilitySet::BPF
        | CapabilitySet::DAC_OVERRIDE
        | CapabilitySet::DAC_READ_SEARCH
}

type Job = Box<dyn FnOnce() + Send>;

fn opener() -> &'static Mutex<Sender<Job>> {
    static OPENER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    OPENER.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("bpfns-opener".into())
            .spawn(move || {
                if let Err(e) = restrict_thread_caps(opener_caps()) {
                    // Refuse to open anything with full credentials.
                    tracing::error!("cannot reduce the opener's capabilities: {e}");
                    return;
                }
                for job in rx {
                    job();
                }
            })
            .expect("spawning the opener thread");
        Mutex::new(tx)
    })
}

/// Run `f` on the reduced-credential opener thread.
pub fn on_opener<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, SysError> {
    let (tx, rx) = channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    opener()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(job)
        .map_err(|_| SysError {
            op: "opener thread".into(),
            errno: Errno::PERM,
        })?;
    rx.recv().map_err(|_| SysError {
        op: "opener thread".into(),
        errno: Errno::PERM,
    })
}

/// `BPF_*_GET_FD_BY_ID` on the opener thread.
pub fn open(kind: ObjectKind, id: u32, read_only: bool) -> Result<OwnedFd, SysError> {
    on_opener(move || {
        if read_only && kind == ObjectKind::Map {
            bpfns_sys::bpf::map_fd_by_id_rdonly(id)
        } else {
            bpfns_sys::bpf::fd_by_id(kind, id)
        }
    })?
}
