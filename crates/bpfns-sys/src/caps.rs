//! Capabilities: reading another task's (`capget`), and changing the calling *thread's* own
//! (`capset`, which on Linux acts on one thread only).
//!
//! The supervisor runs its threads with a reduced effective set: a file descriptor it opens
//! and injects into a namespace member keeps the opener's credentials (`file->f_cred`), and the
//! kernel decides from those whether the fd may dump JIT images and kernel addresses
//! (`bpf_dump_raw_ok(file->f_cred)` checks `CAP_SYSLOG`).

pub use rustix::thread::{CapabilitySet, CapabilitySets};

use rustix::io::Errno;
use rustix::process::Pid;

use crate::{Result, SysError};

/// The capability sets of task `tid` (any thread id; 0 = the calling thread), relative to the
/// task's own user namespace.
pub fn of_task(tid: i32) -> Result<CapabilitySets> {
    let pid = if tid == 0 { None } else { Pid::from_raw(tid) };
    rustix::thread::capabilities(pid).map_err(|e| SysError::new(format!("capget {tid}"), e))
}

/// The calling thread's capability sets.
pub fn of_current_thread() -> Result<CapabilitySets> {
    of_task(0)
}

/// Replace the calling thread's capability sets (other threads keep theirs).
pub fn set_current_thread(sets: CapabilitySets) -> Result<()> {
    rustix::thread::set_capabilities(None, sets).map_err(|e| {
        SysError::new(
            format!(
                "capset effective={:#x} permitted={:#x}",
                sets.effective.bits(),
                sets.permitted.bits()
            ),
            e,
        )
    })
}

/// Set the calling thread's effective set to `effective` ∩ its permitted set, keeping the
/// permitted and inheritable sets. Returns the effective set now in force.
pub fn set_current_thread_effective(effective: CapabilitySet) -> Result<CapabilitySet> {
    let mut sets = of_current_thread()?;
    sets.effective = effective & sets.permitted;
    set_current_thread(sets)?;
    Ok(sets.effective)
}

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drop every capability but `keep` from the calling thread's bounding set
/// (`PR_CAPBSET_DROP`; needs `CAP_SETPCAP`). After the next `execve`, a root process then
/// holds at most `keep` — the way tests run a uid-0 member "with `CAP_BPF` only".
pub fn limit_bounding_set(keep: CapabilitySet) -> Result<()> {
    for cap in 0..=last_cap().min(63) {
        if keep.bits() & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: plain integer arguments.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r != 0 {
            let e = Errno::from_raw_os_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            );
            // Unknown to this kernel: nothing to drop.
            if e == Errno::INVAL {
                continue;
            }
            return Err(SysError::new(format!("PR_CAPBSET_DROP {cap}"), e));
        }
    }
    Ok(())
}

/// Make the next `execve` run with at most `keep`, also as uid 0: limit the bounding set,
/// empty the inheritable and ambient sets (for root, the new permitted set is
/// `inheritable | bounding`).
pub fn restrict_for_exec(keep: CapabilitySet) -> Result<()> {
    limit_bounding_set(keep)?;
    let mut sets = of_current_thread()?;
    sets.inheritable = CapabilitySet::empty();
    set_current_thread(sets)?;
    rustix::thread::clear_ambient_capability_set()
        .map_err(|e| SysError::new("PR_CAP_AMBIENT_CLEAR_ALL", e))
}

pub use crate::procfs::parse_mask;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_own_and_parse() {
        let mine = of_current_thread().expect("capget");
        assert!(mine.effective.bits() & !mine.permitted.bits() == 0);
        let tid = rustix::thread::gettid().as_raw_nonzero().get();
        assert_eq!(of_task(tid).expect("capget tid"), mine);
        assert_eq!(
            parse_mask("000001ffffffffff"),
            Some(CapabilitySet::from_bits_retain(0x1ff_ffff_ffff))
        );
        assert_eq!(parse_mask("zz"), None);
    }

    /// Lowering one thread's effective set leaves the other threads alone.
    #[test]
    fn per_thread_effective_set() {
        let before = of_current_thread().expect("capget");
        let t = std::thread::spawn(|| {
            let now = set_current_thread_effective(CapabilitySet::empty()).expect("capset");
            assert!(now.is_empty());
            of_current_thread().expect("capget").effective
        });
        assert!(t.join().expect("thread").is_empty());
        assert_eq!(of_current_thread().expect("capget"), before);
    }
}
