//! Borrowed credentials: a thread of bpfnsd acting for a while with credentials other than
//! its own, then coming back.
//!
//! The supervisor makes calls *as* a member (its capabilities, its filesystem ids, root and
//! working directory, its network namespace, the load uid), and the FD broker opens objects
//! with a reduced capability set. Credentials are per thread on Linux, so each borrow changes
//! the calling thread only, through a [`Borrow`] guard that restores the thread's own
//! credentials ([`Own`]) when it ends or is dropped.
//!
//! **When coming back fails**, the thread may still hold someone else's credentials (a
//! member's root, its capabilities, an unprivileged uid). The one policy: fail closed. The
//! thread is *poisoned* ([`poisoned`]); every later [`Borrow::begin`] on it is refused, so it
//! never acts for anyone again, and the supervisor thread stops serving (its listener closes,
//! and its members' trapped calls fail).

use std::cell::Cell;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use bpfns_sys::caps::{self, CapabilitySet, CapabilitySets};
use bpfns_sys::{thread, Errno, SysError};

thread_local! {
    static POISONED: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread failed to restore its own credentials after a borrow.
pub fn poisoned() -> bool {
    POISONED.with(Cell::get)
}

fn poison() {
    POISONED.with(|p| p.set(true));
}

/// Why a borrow could not begin (or end).
#[derive(Debug, thiserror::Error)]
pub enum BorrowError {
    /// An earlier borrow on this thread could not be undone.
    #[error("this thread could not restore its own credentials after an earlier borrow")]
    Poisoned,
    /// The thread has no home to come back to for this part (no private fs context or
    /// network namespace).
    #[error("this thread keeps no {0} of its own to come back to")]
    NoHome(&'static str),
    /// A system call changing the thread's credentials failed.
    #[error(transparent)]
    Sys(#[from] SysError),
}

impl BorrowError {
    /// The errno a call refused for this reason answers: the kernel's where it gave one,
    /// `EPERM` otherwise.
    pub fn errno(&self) -> Errno {
        match self {
            BorrowError::Sys(e) => e.errno,
            BorrowError::Poisoned | BorrowError::NoHome(_) => Errno::PERM,
        }
    }
}

/// A thread's own filesystem context (needs `unshare(CLONE_FS)` first, see [`Own::open`]).
#[derive(Debug)]
pub struct FsOwn {
    pub root: OwnedFd,
    pub cwd: OwnedFd,
    pub fsuid: u32,
    pub fsgid: u32,
    pub groups: Vec<u32>,
}

/// What a thread comes back to after a borrow.
#[derive(Debug)]
pub struct Own {
    /// Its capability sets between borrows.
    pub sets: CapabilitySets,
    pub euid: u32,
    /// Its root, cwd and fs ids, where it has a private fs context.
    pub fs: Option<FsOwn>,
    /// Its network namespace, where it may enter others.
    pub netns: Option<OwnedFd>,
}

impl Own {
    /// The calling thread's capabilities only: a borrow from it may change nothing else.
    pub fn caps_of_current_thread() -> Result<Self, SysError> {
        Ok(Own {
            sets: caps::of_current_thread()?,
            euid: thread::euid(),
            fs: None,
            netns: None,
        })
    }

    /// Give the calling thread its own root and cwd (`unshare(CLONE_FS)`) and record them
    /// with its fs ids, groups and network namespace; `sets` are its capabilities between
    /// borrows.
    pub fn open(sets: CapabilitySets) -> Result<Self, SysError> {
        thread::unshare_fs()?;
        let fs = FsOwn {
            root: thread::open_dir(std::path::Path::new("/"))?,
            cwd: thread::open_dir(std::path::Path::new("."))?,
            fsuid: own_fs_id("Uid").unwrap_or(0),
            fsgid: own_fs_id("Gid").unwrap_or(0),
            groups: thread::groups()?,
        };
        Ok(Own {
            sets,
            euid: thread::euid(),
            fs: Some(fs),
            netns: Some(thread::open_ns(std::path::Path::new(
                "/proc/thread-self/ns/net",
            ))?),
        })
    }
}

/// The calling thread's fs id from its `status` line `name` (the fourth column). The fs ids
/// follow the effective ids unless changed; bpfnsd never changes them outside a borrow.
fn own_fs_id(name: &str) -> Option<u32> {
    let s = bpfns_sys::procfs::read_text("/proc/thread-self/status").ok()?;
    Some(bpfns_sys::procfs::ids(&s, name)?[3])
}

/// A caller's filesystem credentials, for path lookups made as the caller.
#[derive(Debug, Clone, Copy)]
pub struct FsCreds<'a> {
    pub root: BorrowedFd<'a>,
    pub cwd: BorrowedFd<'a>,
    pub fsuid: u32,
    pub fsgid: u32,
    pub groups: &'a [u32],
    /// Effective capabilities for the lookup (those that take part in permission checks).
    pub caps: CapabilitySet,
}

/// The calling thread with borrowed credentials until [`Borrow::end`] or drop, which restore
/// [`Own`] (and poison the thread if they cannot: see the module doc).
#[derive(Debug)]
#[must_use = "the borrow ends when the guard is dropped"]
pub struct Borrow<'a> {
    own: &'a Own,
    caps: bool,
    euid: bool,
    fs: bool,
    netns: bool,
    ended: bool,
}

impl<'a> Borrow<'a> {
    /// Begin a borrow on the calling thread; refused on a poisoned thread.
    pub fn begin(own: &'a Own) -> Result<Self, BorrowError> {
        if poisoned() {
            return Err(BorrowError::Poisoned);
        }
        Ok(Borrow {
            own,
            caps: false,
            euid: false,
            fs: false,
            netns: false,
            ended: false,
        })
    }

    /// Act with exactly `effective` (∩ the permitted set) as effective capabilities.
    pub fn caps(&mut self, effective: CapabilitySet) -> Result<(), BorrowError> {
        let mut sets = self.own.sets;
        sets.effective = effective & sets.permitted;
        self.caps = true;
        caps::set_current_thread(sets)?;
        Ok(())
    }

    /// Act with the effective uid `euid` (the capabilities are cleared by leaving uid 0: set
    /// them after).
    pub fn euid(&mut self, euid: u32) -> Result<(), BorrowError> {
        self.euid = true;
        thread::set_euid(euid)?;
        Ok(())
    }

    /// Act in the caller's root and cwd with its fs ids, groups and `caps`.
    pub fn fs(&mut self, c: &FsCreds<'_>) -> Result<(), BorrowError> {
        if self.own.fs.is_none() {
            return Err(BorrowError::NoHome("filesystem context"));
        }
        self.fs = true;
        thread::enter_root(c.root)?;
        thread::change_dir(c.cwd)?;
        thread::set_groups(c.groups)?;
        thread::set_fsgid(c.fsgid)?;
        thread::set_fsuid(c.fsuid)?;
        self.caps(c.caps)
    }

    /// Act in the network namespace `ns`. Enter it before lowering capabilities (`setns`
    /// wants `CAP_SYS_ADMIN`); it is left last.
    pub fn net_ns(&mut self, ns: BorrowedFd<'_>) -> Result<(), BorrowError> {
        if self.own.netns.is_none() {
            return Err(BorrowError::NoHome("network namespace"));
        }
        self.netns = true;
        thread::enter_net_ns(ns)?;
        Ok(())
    }

    /// Come back now; an error means the thread is poisoned.
    pub fn end(mut self) -> Result<(), BorrowError> {
        self.restore()
    }

    fn restore(&mut self) -> Result<(), BorrowError> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        let r = self.restore_steps();
        if let Err(e) = &r {
            tracing::error!(
                "restoring this thread's own credentials: {e}; it acts for nobody from now on"
            );
            poison();
        }
        r
    }

    fn restore_steps(&self) -> Result<(), BorrowError> {
        let own = self.own;
        let ids = self.euid || self.fs;
        if self.caps || ids {
            // First: the thread's own set has the capabilities the steps below need.
            caps::set_current_thread(own.sets)?;
        }
        if self.euid {
            thread::set_euid(own.euid)?;
        }
        if let (true, Some(fs)) = (ids, &own.fs) {
            thread::set_groups(&fs.groups)?;
            thread::set_fsgid(fs.fsgid)?;
            thread::set_fsuid(fs.fsuid)?;
        }
        if ids {
            // Going back to (fs)uid 0 re-raised capabilities: reset exactly.
            caps::set_current_thread(own.sets)?;
        }
        if let (true, Some(fs)) = (self.fs, &own.fs) {
            thread::enter_root(fs.root.as_fd())?;
            thread::change_dir(fs.cwd.as_fd())?;
        }
        if let (true, Some(ns)) = (self.netns, &own.netns) {
            thread::enter_net_ns(ns)?;
        }
        Ok(())
    }
}

impl Drop for Borrow<'_> {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}

/// Run `f` with exactly `effective` capabilities, then come back to `own`. `f` does not run if
/// the borrow cannot begin.
pub fn with_caps<T>(
    own: &Own,
    effective: CapabilitySet,
    f: impl FnOnce() -> T,
) -> Result<T, BorrowError> {
    let mut b = Borrow::begin(own)?;
    b.caps(effective)?;
    let out = f();
    b.end()?;
    Ok(out)
}

#[cfg(test)]
pub(crate) fn poison_for_test() {
    poison();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_restored_after_a_borrow() {
        let own = Own::caps_of_current_thread().expect("capget");
        let during = with_caps(&own, CapabilitySet::BPF, || {
            caps::of_current_thread().expect("capget")
        })
        .expect("borrow");
        assert_eq!(during.effective, CapabilitySet::BPF & own.sets.permitted);
        assert_eq!(caps::of_current_thread().expect("capget"), own.sets);
        assert!(!poisoned());
    }

    #[test]
    fn a_dropped_guard_restores() {
        let own = Own::caps_of_current_thread().expect("capget");
        {
            let mut b = Borrow::begin(&own).expect("begin");
            b.caps(CapabilitySet::empty()).expect("caps");
            assert!(caps::of_current_thread()
                .expect("capget")
                .effective
                .is_empty());
        }
        assert_eq!(caps::of_current_thread().expect("capget"), own.sets);
    }

    #[test]
    fn no_home_refuses_fs_and_netns_borrows() {
        let own = Own::caps_of_current_thread().expect("capget");
        let dir = std::fs::File::open("/").expect("open /");
        let mut b = Borrow::begin(&own).expect("begin");
        let creds = FsCreds {
            root: dir.as_fd(),
            cwd: dir.as_fd(),
            fsuid: 0,
            fsgid: 0,
            groups: &[],
            caps: CapabilitySet::empty(),
        };
        assert!(matches!(b.fs(&creds), Err(BorrowError::NoHome(_))));
        assert!(matches!(b.net_ns(dir.as_fd()), Err(BorrowError::NoHome(_))));
        b.end().expect("nothing to restore");
    }

    /// As root, on a thread of its own: a borrowed uid, fs ids and capabilities are all
    /// given back.
    #[test]
    fn ids_and_fs_context_are_restored() {
        if thread::euid() != 0 {
            return;
        }
        std::thread::spawn(|| {
            let own = Own::open(caps::of_current_thread().expect("capget")).expect("own");
            let fs_uid = || own_fs_id("Uid").expect("status");
            {
                let mut b = Borrow::begin(&own).expect("begin");
                b.euid(65534).expect("euid");
                b.caps(CapabilitySet::BPF).expect("caps");
                assert_eq!(thread::euid(), 65534);
                assert_eq!(
                    caps::of_current_thread().expect("capget").effective,
                    CapabilitySet::BPF & own.sets.permitted
                );
                b.end().expect("restored");
            }
            assert_eq!(thread::euid(), own.euid);
            assert_eq!(fs_uid(), own.fs.as_ref().expect("fs").fsuid);
            assert_eq!(caps::of_current_thread().expect("capget"), own.sets);
            let dir = std::fs::File::open("/").expect("open /");
            let creds = FsCreds {
                root: dir.as_fd(),
                cwd: dir.as_fd(),
                fsuid: 1000,
                fsgid: 1000,
                groups: &[1000],
                caps: CapabilitySet::empty(),
            };
            {
                let mut b = Borrow::begin(&own).expect("begin");
                b.fs(&creds).expect("fs");
                assert_eq!(fs_uid(), 1000);
                // Dropped: restored all the same.
            }
            assert_eq!(fs_uid(), own.fs.as_ref().expect("fs").fsuid);
            assert_eq!(
                thread::groups().expect("groups"),
                own.fs.as_ref().expect("fs").groups
            );
            assert_eq!(caps::of_current_thread().expect("capget"), own.sets);
            assert!(!poisoned());
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn a_poisoned_thread_borrows_nothing() {
        // Poison is per thread: a thread of its own.
        std::thread::spawn(|| {
            let own = Own::caps_of_current_thread().expect("capget");
            poison_for_test();
            let ran = std::cell::Cell::new(false);
            let r = with_caps(&own, CapabilitySet::empty(), || ran.set(true));
            assert!(matches!(r, Err(BorrowError::Poisoned)));
            assert_eq!(r.unwrap_err().errno(), Errno::PERM);
            assert!(!ran.get());
        })
        .join()
        .expect("thread");
        assert!(!poisoned());
    }
}
