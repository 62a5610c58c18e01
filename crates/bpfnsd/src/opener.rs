//! Opening BPF objects on behalf of namespace members, with reduced credentials.
//!
//! An fd keeps its opener's credentials (`file->f_cred`). Opened with the daemon's full set,
//! a map or program fd given to a CAP_BPF-only member would let it read kernel addresses and
//! JIT images (`bpf_dump_raw_ok` checks the fd's CAP_SYSLOG). So every open for a member
//! happens with the calling thread's effective set lowered to only what the open needs
//! ([`opener_caps`]), and raised again afterwards. Capabilities are per thread on Linux
//! (`capset` acts on the calling thread only), so other threads of the daemon are unaffected.
//!
//! This used to be one dedicated opener thread that every connection handed its opens to;
//! doing it in place saves two thread wake-ups per `get_fd` and stops 64 concurrent clients
//! from queueing behind one thread (`bpfns-bench daemon`, docs/benchmarks.md).

use std::os::fd::OwnedFd;

use bpfns_model::ObjectKind;
use bpfns_sys::process::CapabilitySet;
use bpfns_sys::SysError;

use crate::creds::{self, BorrowError, Own};

/// What an open keeps: CAP_SYS_ADMIN (GET_FD_BY_ID), CAP_BPF, and DAC overrides for pins
/// made by other users.
pub fn opener_caps() -> CapabilitySet {
    CapabilitySet::SYS_ADMIN
        | CapabilitySet::BPF
        | CapabilitySet::DAC_OVERRIDE
        | CapabilitySet::DAC_READ_SEARCH
}

/// Run `f` on the calling thread with its effective capabilities reduced to
/// [`opener_caps`]; they are restored afterwards ([`crate::creds`], whose policy applies if
/// they cannot be: the thread is poisoned and opens nothing more). If they cannot be reduced,
/// `f` does not run.
pub fn on_opener<T>(f: impl FnOnce() -> T) -> Result<T, BorrowError> {
    let own = Own::caps_of_current_thread()?;
    let reduced = own.sets.effective & opener_caps();
    if reduced == own.sets.effective {
        if creds::poisoned() {
            return Err(BorrowError::Poisoned);
        }
        return Ok(f());
    }
    creds::with_caps(&own, reduced, f)
}

/// `BPF_*_GET_FD_BY_ID` with reduced credentials.
pub fn open(kind: ObjectKind, id: u32, read_only: bool) -> Result<OwnedFd, SysError> {
    on_opener(move || {
        if read_only && kind == ObjectKind::Map {
            bpfns_sys::bpf::map_fd_by_id_rdonly(id)
        } else {
            bpfns_sys::bpf::fd_by_id(kind, id)
        }
    })
    .map_err(|e| SysError {
        op: e.to_string(),
        errno: e.errno(),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfns_sys::caps;

    #[test]
    fn opens_with_reduced_caps_and_restores_them() {
        let before = caps::of_current_thread().expect("capget");
        let during = on_opener(|| caps::of_current_thread().expect("capget")).expect("runs");
        let after = caps::of_current_thread().expect("capget");
        assert_eq!(during.effective, before.effective & opener_caps());
        assert_eq!(during.permitted, before.permitted);
        assert_eq!(after.effective, before.effective);
        // Other threads keep theirs meanwhile (capabilities are per thread).
        let (inside, go_on) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let (tx, rx) = inside;
        let (tx2, rx2) = go_on;
        let t = std::thread::spawn(move || {
            on_opener(|| {
                tx.send(()).expect("send");
                rx2.recv().expect("recv");
            })
            .expect("runs")
        });
        rx.recv().expect("the other thread is inside");
        let mine = caps::of_current_thread().expect("capget");
        tx2.send(()).expect("send");
        t.join().expect("thread");
        assert_eq!(mine.effective, before.effective);
    }
}
