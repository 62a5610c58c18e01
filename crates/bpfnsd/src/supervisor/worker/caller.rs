//! Reading the caller: its pidfd (cached), the trapped call and its attr, its memory, copies
//! of its fds, its credentials and namespaces. Everything read here is read before the
//! notification's validity check; answers act only on what was read.
//!
//! [`Caller`] is what an answer may ask of the caller, so that answers can be tested with a
//! fake; [`ProcCaller`] reads a real one (`process_vm_readv`, `pidfd_getfd`, `/proc`).

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bpfns_sys::caps::{self, CapabilitySet as C};
use bpfns_sys::fds::{self, PidfdNamespace};
use bpfns_sys::seccomp::{Listener, Notification};
use bpfns_sys::{mem, thread, Errno};

use crate::supervisor::attr::{self, Attr, Command};

/// Cached pidfds per supervisor thread (opening one costs several microseconds; each is an fd
/// of the daemon, so keep few).
const PIDFDS_MAX: usize = 64;

/// The capabilities that take part in path permission checks, which a caller may bring to an
/// `OBJ_GET` resolved on its behalf (only if they are effective in the initial user
/// namespace: that is where this thread checks them).
fn fs_caps() -> C {
    C::DAC_OVERRIDE | C::DAC_READ_SEARCH | C::FOWNER
}

/// One trapped call, as read from the notification and the caller's memory.
#[derive(Debug, Clone)]
pub(in crate::supervisor) struct Call {
    pub tid: i32,
    pub cmd: Command,
    pub attr_ptr: u64,
    /// bpf()'s size argument (at most a page).
    pub attr_size: usize,
    pub attr: Attr,
    /// The caller's effective capabilities (in its own user namespace).
    pub eff: C,
}

impl Call {
    /// Read the call `cmd` with bpf() arguments `args` (`cmd`, attr pointer, size): the attr,
    /// once, zero-padded as the kernel's copy.
    pub fn read(cmd: Command, args: [u64; 3], caller: &dyn Caller) -> Result<Call, Errno> {
        let len = attr::read_len(args[2])?;
        let mut a = Attr::zeroed(len);
        caller.read(args[1], a.supplied_mut())?;
        Ok(Call {
            tid: caller.tid(),
            cmd,
            attr_ptr: args[1],
            attr_size: args[2] as u32 as usize,
            attr: a,
            eff: caller.caps(),
        })
    }

    /// The address of the field at `off` in the caller's attr (wrapping like a C pointer: an
    /// attr at the very top of the address space is not writable anyway, and the write fails
    /// with `EFAULT`).
    pub fn field(&self, off: usize) -> u64 {
        self.attr_ptr.wrapping_add(off as u64)
    }
}

/// A caller's filesystem context, for an `OBJ_GET` resolved as the caller.
#[derive(Debug)]
pub(in crate::supervisor) struct CallerFs {
    pub root: OwnedFd,
    pub cwd: OwnedFd,
    pub fsuid: u32,
    pub fsgid: u32,
    pub groups: Vec<u32>,
    /// [`fs_caps`] of the caller where they count here.
    pub caps: C,
}

/// What an answer may read from (and write to) the caller.
pub(in crate::supervisor) trait Caller {
    /// Its thread id, in bpfnsd's pid namespace.
    fn tid(&self) -> i32;
    /// bpfnsd's pidfd of it (for the view's namespace lookup).
    fn pidfd(&self) -> BorrowedFd<'_>;
    /// Its effective capabilities (in its own user namespace).
    fn caps(&self) -> C;
    /// Its effective capabilities where they count for checks this thread makes (it is in
    /// the initial user namespace); none otherwise.
    fn caps_here(&self) -> C;
    /// Exactly `buf.len()` bytes at `addr`: `EFAULT` if any is unreadable.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// As [`Caller::read`], of any length.
    fn read_large(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// A NUL-terminated string, as the kernel's `getname()` (`ENAMETOOLONG` past `max`).
    fn read_path(&self, addr: u64, max: usize) -> Result<Vec<u8>, Errno>;
    /// A string as the kernel's `strncpy_from_user` (at most `max` bytes).
    fn read_string(&self, addr: u64, max: usize) -> Result<Vec<u8>, Errno>;
    /// All of `data` at `addr`: `EFAULT` if any of it is not writable.
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Errno>;
    /// As [`Caller::write`], of any length.
    fn write_large(&self, addr: u64, data: &[u8]) -> Result<(), Errno>;
    /// A copy of its fd `fd`; `None` if it has none by that number.
    fn fd(&self, fd: u32) -> Result<Option<OwnedFd>, Errno>;
    /// Its network namespace (for setns).
    fn net_ns(&self) -> Result<OwnedFd, Errno>;
    /// Where the caller's memory is charged (its cgroups, in bpfnsd's mounts).
    fn memory_home(&self) -> Result<bpfns_sys::cgroup::MemoryHome, Errno>;
    /// Its root, cwd and fs credentials.
    fn fs(&self) -> Result<CallerFs, Errno>;
    /// The pid, in bpfnsd's pid namespace, of the task a `BPF_TASK_FD_QUERY` asks about as
    /// `pid`, if the caller may ask about it; `EPERM` otherwise.
    fn task_fd_query_target(&self, pid: u32) -> Result<u32, Errno>;
    /// Whether the caller still waits for this answer (the notification is valid).
    fn waiting(&self) -> bool;
}

/// Namespace identity: (device, inode) of a `/proc/.../ns/*` file.
pub(super) fn ns_ident(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The supervisor thread's own namespaces, which a caller's are compared with.
#[derive(Debug, Clone, Copy)]
pub(super) struct OwnNs {
    pub userns: Option<(u64, u64)>,
    pub pidns: Option<(u64, u64)>,
}

impl OwnNs {
    pub fn of_current_thread() -> Self {
        OwnNs {
            userns: ns_ident(Path::new("/proc/thread-self/ns/user")),
            pidns: ns_ident(Path::new("/proc/thread-self/ns/pid")),
        }
    }
}

/// pidfds of recent callers, by thread id. A cached pidfd may name an earlier task with the
/// same id that has since exited: every use of it then fails (`ESRCH`), and the caller's pidfd
/// is opened afresh. It can never name another *live* task.
#[derive(Default)]
pub(super) struct Pidfds(HashMap<i32, OwnedFd>);

impl Pidfds {
    /// The pidfd of `tid`, cached unless `fresh`; and whether it came from the cache.
    pub fn take(&mut self, tid: i32, fresh: bool) -> Result<(OwnedFd, bool), Errno> {
        if !fresh {
            if let Some(fd) = self.0.remove(&tid) {
                return Ok((fd, true));
            }
        }
        Ok((open_pidfd(tid)?, false))
    }

    pub fn keep(&mut self, tid: i32, fd: OwnedFd) {
        if self.0.len() >= PIDFDS_MAX {
            self.0.clear();
        }
        self.0.insert(tid, fd);
    }
}

fn open_pidfd(tid: i32) -> Result<OwnedFd, Errno> {
    match bpfns_sys::process::open_thread_pidfd(tid) {
        Ok(fd) => Ok(fd),
        // Before Linux 6.9 there are no thread pidfds (PIDFD_THREAD): use the process's.
        // Its threads share the tag (inherited at clone), so the view is the same.
        Err(e) if e.errno == Errno::INVAL => {
            let tgid = bpfns_sys::process::thread_group_of(tid).map_err(|e| e.errno)?;
            bpfns_sys::process::open_pidfd(tgid).map_err(|e| e.errno)
        }
        Err(e) => Err(e.errno),
    }
}

/// A real caller: a thread blocked in a trapped call of notification `id`.
pub(super) struct ProcCaller<'a> {
    pub tid: i32,
    pub pidfd: OwnedFd,
    eff: C,
    id: u64,
    listener: &'a Listener,
    own: OwnNs,
}

impl<'a> ProcCaller<'a> {
    /// The caller of notification `n`, with its pidfd; reads its capabilities.
    pub fn new(
        n: &Notification,
        pidfd: OwnedFd,
        listener: &'a Listener,
        own: OwnNs,
    ) -> Result<Self, (OwnedFd, Errno)> {
        let tid = n.pid as i32;
        match caps::of_task(tid) {
            Ok(c) => Ok(ProcCaller {
                tid,
                pidfd,
                eff: c.effective,
                id: n.id,
                listener,
                own,
            }),
            Err(e) => Err((pidfd, e.errno)),
        }
    }

    /// Open the caller's own pidfd again (the cached one named an earlier task).
    pub fn reopen(&mut self) -> Result<(), Errno> {
        self.pidfd = bpfns_sys::process::open_thread_pidfd(self.tid).map_err(|e| e.errno)?;
        Ok(())
    }

    /// Whether the caller is in our user namespace (the initial one, for the daemon): only
    /// there do its capabilities count for checks this thread makes.
    fn in_own_userns(&self) -> bool {
        let Some(own) = self.own.userns else {
            return false;
        };
        let theirs = match fds::pidfd_namespace(self.pidfd(), PidfdNamespace::User) {
            Ok(ns) => fds::file_ident(&ns).ok(),
            // Before Linux 6.11.
            Err(_) => ns_ident(Path::new(&format!("/proc/{}/ns/user", self.tid))),
        };
        theirs == Some(own)
    }

    fn proc(&self, rest: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{rest}", self.tid))
    }

    /// The pid, in our pid namespace, of the task the caller calls `pid` in its own.
    fn host_pid(&self, pid: u32) -> Result<u32, Errno> {
        let caller_ns = ns_ident(&self.proc("ns/pid")).ok_or(Errno::SRCH)?;
        if Some(caller_ns) == self.own.pidns {
            return Ok(pid);
        }
        let status = std::fs::read_to_string(self.proc("status")).map_err(|_| Errno::SRCH)?;
        let depth = bpfns_sys::procfs::nspids(&status)
            .map(|v| v.len())
            .ok_or(Errno::SRCH)?;
        // Processes (not threads) whose innermost pid namespace is the caller's.
        let rd = std::fs::read_dir("/proc").map_err(|_| Errno::SRCH)?;
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(st) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
                continue;
            };
            let Some(nspids) = bpfns_sys::procfs::nspids(&st) else {
                continue;
            };
            if nspids.len() == depth
                && nspids.last() == Some(&pid)
                && ns_ident(Path::new(&format!("/proc/{p}/ns/pid"))) == Some(caller_ns)
            {
                return Ok(p);
            }
        }
        Err(Errno::SRCH)
    }
}

impl Caller for ProcCaller<'_> {
    fn tid(&self) -> i32 {
        self.tid
    }

    fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    fn caps(&self) -> C {
        self.eff
    }

    fn caps_here(&self) -> C {
        // Capabilities of another user namespace cannot be borrowed here, which is narrower
        // than the kernel for objects that namespace owns.
        if self.in_own_userns() {
            self.eff
        } else {
            C::empty()
        }
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        mem::read_exact(self.tid, addr, buf)
    }

    fn read_large(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        mem::read_exact_large(self.tid, addr, buf)
    }

    fn read_path(&self, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        mem::read_cstring(self.tid, addr, max)
    }

    fn read_string(&self, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        mem::read_cstring_upto(self.tid, addr, max)
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        mem::write_all(self.tid, addr, data)
    }

    fn write_large(&self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        mem::write_all_large(self.tid, addr, data)
    }

    fn fd(&self, fd: u32) -> Result<Option<OwnedFd>, Errno> {
        // Negative numbers name no fd (the kernel's fdget answers EBADF for them).
        let Ok(fd) = i32::try_from(fd) else {
            return Ok(None);
        };
        match fds::pidfd_getfd(self.pidfd(), fd) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.errno == Errno::BADF => Ok(None),
            Err(e) => Err(e.errno),
        }
    }

    fn net_ns(&self) -> Result<OwnedFd, Errno> {
        match fds::pidfd_namespace(self.pidfd(), PidfdNamespace::Net) {
            Ok(ns) => Ok(ns),
            // Before Linux 6.11: through /proc (the validity check that follows makes sure the
            // thread id was still the caller's).
            Err(_) => thread::open_ns(&self.proc("ns/net")).map_err(|e| e.errno),
        }
    }

    fn memory_home(&self) -> Result<bpfns_sys::cgroup::MemoryHome, Errno> {
        bpfns_sys::cgroup::memory_home_of_task(self.tid).map_err(|e| {
            let errno = Errno::from_io_error(&e).unwrap_or(Errno::PERM);
            if errno != Errno::NOENT && errno != Errno::SRCH {
                tracing::warn!("supervisor: the cgroup of task {}: {e}", self.tid);
            }
            // A task that is gone: ESRCH, as for its other reads.
            if errno == Errno::NOENT {
                Errno::SRCH
            } else {
                errno
            }
        })
    }

    fn fs(&self) -> Result<CallerFs, Errno> {
        let root = thread::open_dir(&self.proc("root")).map_err(|e| e.errno)?;
        let cwd = thread::open_dir(&self.proc("cwd")).map_err(|e| e.errno)?;
        let status = std::fs::read_to_string(self.proc("status")).map_err(|_| Errno::SRCH)?;
        let (fsuid, fsgid, groups) = bpfns_sys::procfs::fs_creds(&status).ok_or(Errno::SRCH)?;
        Ok(CallerFs {
            root,
            cwd,
            fsuid,
            fsgid,
            groups,
            caps: self.caps_here() & fs_caps(),
        })
    }

    /// About its own process, or about any with `CAP_SYS_ADMIN` in the initial user namespace
    /// (the kernel's own rule; bpfnsd runs the query with its own). `EPERM` otherwise, also
    /// for a pid that does not exist, so that the answer says nothing about other processes.
    fn task_fd_query_target(&self, pid: u32) -> Result<u32, Errno> {
        let admin = self.eff.contains(C::SYS_ADMIN) && self.in_own_userns();
        let found = self.host_pid(pid);
        if admin {
            return found;
        }
        let own = bpfns_sys::process::thread_group_of(self.tid).map_err(|e| e.errno)?;
        let target = found
            .ok()
            .and_then(|h| bpfns_sys::process::thread_group_of(h as i32).ok());
        match target {
            Some(t) if attr::task_fd_query_allowed(own as u32, t as u32, false) => found,
            _ => Err(Errno::PERM),
        }
    }

    fn waiting(&self) -> bool {
        matches!(self.listener.id_valid(self.id), Ok(true))
    }
}
