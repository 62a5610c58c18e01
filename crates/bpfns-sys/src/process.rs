//! Processes and threads: pidfds and thread ids.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::process::{pidfd_open, Pid, PidfdFlags};

use crate::{Result, SysError};
use rustix::io::Errno;

fn pid(raw: i32) -> Result<Pid> {
    Pid::from_raw(raw).ok_or_else(|| SysError::new(format!("pid {raw}"), Errno::SRCH))
}

/// A pidfd for the process (thread-group leader) `pid`.
pub fn open_pidfd(raw_pid: i32) -> Result<OwnedFd> {
    pidfd_open(pid(raw_pid)?, PidfdFlags::empty())
        .map_err(|e| SysError::new(format!("pidfd_open {raw_pid}"), e))
}

/// A pidfd naming one thread `tid` (`PIDFD_THREAD`, Linux 6.9+).
pub fn open_thread_pidfd(tid: i32) -> Result<OwnedFd> {
    // PIDFD_THREAD has the value of O_EXCL.
    let flags = PidfdFlags::from_bits_retain(libc::O_EXCL as u32);
    pidfd_open(pid(tid)?, flags).map_err(|e| SysError::new(format!("pidfd_open thread {tid}"), e))
}

/// The calling thread's id.
pub fn gettid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Between fork and exec, with `parent` (the parent's pid): be killed when the thread that
/// forked this process ends (`PR_SET_PDEATHSIG`), and fail with `ECANCELED` if the parent is
/// gone already; with 0: stop that, before exec (the program outlives whoever started it).
/// Raw system calls only.
pub fn die_with_parent_raw(parent: i32) -> std::io::Result<()> {
    let sig = if parent == 0 { 0 } else { libc::SIGKILL };
    // SAFETY: plain integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: getppid has no preconditions.
    if parent != 0 && unsafe { libc::getppid() } != parent {
        return Err(std::io::Error::from_raw_os_error(libc::ECANCELED));
    }
    Ok(())
}

/// The ids of every thread of process `pid`, from `/proc/PID/task`.
pub fn thread_ids(raw_pid: i32) -> Result<Vec<i32>> {
    let dir = format!("/proc/{raw_pid}/task");
    let rd = std::fs::read_dir(&dir).map_err(|e| {
        SysError::new(
            format!("read {dir}"),
            Errno::from_io_error(&e).unwrap_or(Errno::SRCH),
        )
    })?;
    let mut tids: Vec<i32> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

/// Start a child *process* that shares the caller's fd table (`clone(CLONE_FILES)` without
/// `CLONE_THREAD`), running `child` on a private stack. Returns the child's pid; reap it with
/// `waitpid`. Exists so tests can check that bpfns refuses such children of namespace tasks.
///
/// `child` runs in a copy of the address space without the parent's other threads: it must
/// only make raw system calls (no allocation, no locks) and return its exit code.
pub fn spawn_sharing_fd_table(
    child: extern "C" fn(*mut libc::c_void) -> libc::c_int,
) -> Result<i32> {
    const STACK: usize = 256 * 1024;
    // Leaked on purpose: the child may outlive this frame; 256 KiB per call, test-only use.
    let stack: &'static mut [u8] = Box::leak(vec![0u8; STACK].into_boxed_slice());
    // SAFETY: the stack is valid, writable and 16-byte aligned at its top after masking;
    // the child gets its own copy of the address space (no CLONE_VM), so it cannot corrupt
    // the parent.
    let pid = unsafe {
        let top = (stack.as_mut_ptr().add(STACK) as usize & !15) as *mut libc::c_void;
        libc::clone(
            child,
            top,
            libc::CLONE_FILES | libc::SIGCHLD,
            std::ptr::null_mut(),
        )
    };
    if pid < 0 {
        return Err(SysError::new(
            "clone(CLONE_FILES)",
            Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
        ));
    }
    Ok(pid)
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    Exited(i32),
    Signaled(i32),
}

/// Wait for child `pid` to end.
pub fn wait_child(raw_pid: i32) -> Result<ChildExit> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(raw_pid, &mut status, 0) };
        if r >= 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(SysError::new(
                format!("waitpid {raw_pid}"),
                Errno::from_io_error(&e).unwrap_or(Errno::CHILD),
            ));
        }
    }
    if libc::WIFSIGNALED(status) {
        Ok(ChildExit::Signaled(libc::WTERMSIG(status)))
    } else {
        Ok(ChildExit::Exited(libc::WEXITSTATUS(status)))
    }
}

/// Sleep in the kernel, without touching the allocator: usable in a `spawn_sharing_fd_table` child.
pub fn raw_sleep_ms(ms: u64) {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as _,
        tv_nsec: ((ms % 1000) * 1_000_000) as _,
    };
    // SAFETY: `ts` is valid; a null remainder pointer is allowed.
    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
}

// ---- benchmarks (bpfns-bench) ---------------------------------------------------------------

/// Fork a child that immediately `_exit(0)`s and wait for it: the cheapest real fork+exit
/// (no exec), for benchmarking what the kernel side adds to task creation and exit.
pub fn fork_and_wait_exit() -> Result<ChildExit> {
    // SAFETY: the child calls nothing but `_exit`, which is async-signal-safe, so forking is
    // sound even from a multi-threaded process; the parent continues normally.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SysError::new(
            "fork",
            Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
        ));
    }
    if pid == 0 {
        // SAFETY: `_exit` ends the child at once, running no destructors or atexit handlers
        // that could touch state copied from the parent.
        unsafe { libc::_exit(0) }
    }
    wait_child(pid)
}

/// Pin the calling thread (and the tasks it creates from now on) to CPU `cpu`.
pub fn pin_to_cpu(cpu: usize) -> Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)
        .map_err(|e| SysError::new(format!("sched_setaffinity cpu {cpu}"), e))
}

/// The CPUs the calling thread may run on.
pub fn allowed_cpus() -> Result<Vec<usize>> {
    let set = rustix::thread::sched_getaffinity(None)
        .map_err(|e| SysError::new("sched_getaffinity", e))?;
    Ok((0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| set.is_set(c))
        .collect())
}

/// Raise the soft limit on open files to at least `n` (and the hard limit too when needed,
/// which takes `CAP_SYS_RESOURCE`). Returns the new soft limit.
pub fn raise_nofile_limit(n: u64) -> Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    if cur.current.is_none_or(|c| c >= n) {
        return Ok(cur.current.unwrap_or(u64::MAX));
    }
    let maximum = match cur.maximum {
        Some(m) if m < n => Some(n),
        m => m,
    };
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(n),
            maximum,
        },
    )
    .map_err(|e| SysError::new(format!("setrlimit NOFILE {n}"), e))?;
    Ok(n)
}

/// Raise the soft limit on open files to the hard limit (no privilege needed). Returns the
/// soft limit now in force (`u64::MAX`: unlimited).
pub fn raise_nofile_to_hard() -> Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    if cur.current == cur.maximum {
        return Ok(cur.current.unwrap_or(u64::MAX));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: cur.maximum,
            maximum: cur.maximum,
        },
    )
    .map_err(|e| SysError::new("setrlimit NOFILE to its hard limit", e))?;
    Ok(cur.maximum.unwrap_or(u64::MAX))
}

/// The soft limit on open files (`u64::MAX`: unlimited).
pub fn nofile_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

/// Name the calling thread (`comm`, what `ps` and `/proc/PID/stat` show; at most 15 bytes
/// are kept). For a single-threaded process, the process's name.
pub fn set_name(name: &str) -> Result<()> {
    let c = std::ffi::CString::new(name).map_err(|_| SysError::new("thread name", Errno::INVAL))?;
    rustix::thread::set_name(&c).map_err(|e| SysError::new("PR_SET_NAME", e))
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn note_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Turn SIGINT, SIGTERM and SIGHUP into a flag ([`interrupted`]) instead of death, so that a
/// long-running tool can stop at the next safe point and clean up (unpin, unload).
/// Child processes get the default dispositions back when they exec.
pub fn catch_interrupts() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: an all-zero `sigaction` is valid (empty mask, no flags); the handler only
        // stores to an atomic, which is async-signal-safe; the pointers are valid for the call.
        let ret = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = note_interrupt as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut())
        };
        if ret != 0 {
            return Err(SysError::new(
                format!("sigaction {sig}"),
                Errno::from_raw_os_error(
                    std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
                ),
            ));
        }
    }
    Ok(())
}

/// Whether SIGINT, SIGTERM or SIGHUP arrived since [`catch_interrupts`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Capability sets (see [`crate::caps`] for reading and setting them).
pub use rustix::thread::CapabilitySet;

/// The thread-group id (process id) of thread `tid`, from `/proc/<tid>/status`.
pub fn thread_group_of(tid: i32) -> Result<i32> {
    let status = crate::procfs::read_status(tid).map_err(|e| {
        SysError::new(
            format!("read /proc/{tid}/status"),
            Errno::from_io_error(&e).unwrap_or(Errno::SRCH),
        )
    })?;
    crate::procfs::tgid(&status)
        .ok_or_else(|| SysError::new(format!("no Tgid in /proc/{tid}/status"), Errno::SRCH))
}

/// Bytes this process's allocator has handed out and not had back: the count of
/// [`crate::heap::Counting`] where it is the Rust allocator (what Rust code holds), else
/// glibc's `mallinfo2` (in-use heap and mmapped chunks, a walk of the free lists). Unlike the
/// resident size, it does not count memory the allocator keeps after it was freed, so it
/// shows leaks. `None` off glibc without the counting allocator.
pub fn heap_in_use() -> Option<u64> {
    if let Some(n) = crate::heap::counted_in_use() {
        return Some(n);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes no arguments and returns a plain struct by value.
        let m = unsafe { libc::mallinfo2() };
        Some((m.uordblks + m.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// The size of a memory page (what the kernel counts memlock in).
pub fn page_size() -> usize {
    rustix::param::page_size()
}

// ---- a bpf() call made by a child in another cgroup -------------------------------------------

/// The credentials a [`bpf_fd_in_cgroup`] child makes its call with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildCreds {
    /// Its effective uid (real and saved stay the parent thread's).
    pub euid: u32,
    /// Its effective and permitted capabilities (none inheritable).
    pub caps: crate::caps::CapabilitySet,
}

/// `struct clone_args` (Linux 5.7 layout, with `cgroup`): what `clone3` reads.
#[repr(C)]
#[derive(Default)]
pub(crate) struct CloneArgs {
    pub(crate) flags: u64,
    pub(crate) pidfd: u64,
    pub(crate) child_tid: u64,
    pub(crate) parent_tid: u64,
    pub(crate) exit_signal: u64,
    pub(crate) stack: u64,
    pub(crate) stack_size: u64,
    pub(crate) tls: u64,
    pub(crate) set_tid: u64,
    pub(crate) set_tid_size: u64,
    pub(crate) cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `clone3(args)` whose child runs `f(arg)` on the stack `args` gives (what glibc's internal
/// `__clone3` does; glibc exports no wrapper, and `clone()` takes no cgroup). Returns the
/// child's pid or `-errno`. `f` must never return.
///
/// # Safety
/// `args.stack` must be valid for the child's whole life and `f` must be safe to run on it with
/// `arg`, sharing whatever `args.flags` shares.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_running(
    args: &CloneArgs,
    f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> i64 {
    let ret: i64;
    // SAFETY: the caller's contract. The child starts after `syscall` on its new stack with
    // every register but rax, rcx and r11 as the parent had them: it calls `f(arg)` from r12
    // and r13 and never comes back into code the compiler made for the parent.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "and rsp, -16",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") std::ptr::from_ref(args),
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") f,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// bpfns runs on x86-64 only (its member filter admits no other system call ABI).
#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_running(
    _args: &CloneArgs,
    _f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    _arg: *mut libc::c_void,
) -> i64 {
    -(libc::ENOSYS as i64)
}

/// A task-storage map entry a [`bpf_fd_in_cgroup`] child writes for itself (keyed by its own
/// pidfd, `BPF_ANY`) before its call: how bpfnsd makes it the root's in the kernel side's eyes,
/// whatever a cgroup binding made of it.
#[derive(Debug, Clone, Copy)]
pub struct SelfTag<'a> {
    pub map: BorrowedFd<'a>,
    pub value: &'a [u8],
}

/// What the child of [`bpf_fd_in_cgroup`] reads (in the parent's memory, which it shares;
/// its fds are numbers in the child's copy of the parent's fd table).
struct ChildJob {
    /// The v1 memory cgroup's `cgroup.procs` to move itself into, or -1.
    procs: i32,
    tag_map: i32,
    tag_value: *const u8,
    /// The calling thread's capabilities with `CAP_SYS_RESOURCE` effective (where it is
    /// permitted), for the child to set its oom_score_adj with.
    oom_caps: Option<crate::caps::CapabilitySets>,
    creds: ChildCreds,
    cmd: u32,
    attr: *const u8,
    len: usize,
    /// Where the child sends the new fd (`SCM_RIGHTS`).
    sock: i32,
    /// The fds it keeps (ascending; -1 past the last): it closes every other one of its copy
    /// of the table first, so that nothing of the parent's (a listening socket, a lock)
    /// outlives the parent in it.
    keep: [i32; KEEP_MAX],
}

/// The most fds a [`bpf_fd_in_cgroup`] child keeps: its own three and those the call names.
pub const KEEP_MAX: usize = 16;

/// The child's stack: it runs only [`child_job`], raw system calls and no allocation.
const CHILD_STACK: usize = 64 * 1024;

/// bpf(`cmd`, `attr`) made by a new child process in the memory cgroup `home` (created there,
/// or moving itself there first: see [`crate::cgroup::MemoryHome`]), so that what the kernel
/// allocates for a new map is charged there: the kernel charges a map's memory to the memory
/// cgroup of the task that creates it. Returns the new fd, or the call's errno.
///
/// The child shares this process's memory (`CLONE_VM`: no copy of the address space, whose
/// page tables would cost milliseconds to copy, and every page written afterwards a fault) as
/// a vfork child (`CLONE_VFORK`: the calling thread waits until it exits) with an
/// oom_score_adj of -1000 (its own; set where this process holds `CAP_SYS_RESOURCE`), which
/// the OOM killer never picks (`oom_badness` skips a task in the middle of a vfork, but the
/// vfork ends before an exiting child lets go of the memory; it skips -1000 to the end):
/// otherwise a member's memory cgroup at its limit could have it pick the child, and the OOM
/// killer kills every process sharing its victim's memory. It has a copy of the fd table:
/// killed at any point, it takes the object it made with it. It starts with the
/// calling thread's credentials and namespaces, which must be allowed to move a process into
/// `home`; it writes `tag` for itself, takes `creds` (all three uids: a task of the caller's
/// uid cannot signal it), makes the call on `attr` (which the caller keeps unchanged: nothing
/// outside this process can change it) and sends the new fd back over a socket. It runs on the
/// calling thread's CPU. `ENOMEM` when the child was killed.
///
pub fn bpf_fd_in_cgroup(
    home: &crate::cgroup::MemoryHome,
    cmd: u32,
    attr: &[u8],
    creds: ChildCreds,
    tag: Option<SelfTag<'_>>,
    uses: &[BorrowedFd<'_>],
) -> std::result::Result<OwnedFd, Errno> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let (mine, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    // Where clone3 writes the child's pidfd, which the watchdog reads while this thread waits.
    let watched = watchdog::watch(CHILD_DEADLINE);
    let job = ChildJob {
        procs: match home {
            crate::cgroup::MemoryHome::V1(f) => f.as_raw_fd(),
            _ => -1,
        },
        tag_map: tag.map_or(-1, |t| t.map.as_raw_fd()),
        tag_value: tag.map_or(std::ptr::null(), |t| t.value.as_ptr()),
        oom_caps: crate::caps::of_current_thread().ok().and_then(|mut sets| {
            let r = crate::caps::CapabilitySet::SYS_RESOURCE;
            sets.permitted.contains(r).then(|| {
                sets.effective |= r;
                sets
            })
        }),
        creds,
        cmd,
        attr: attr.as_ptr(),
        len: attr.len(),
        sock: theirs.as_raw_fd(),
        keep: [-1; KEEP_MAX],
    };
    let mut job = job;
    let mut keep: Vec<i32> = uses.iter().map(|f| f.as_raw_fd()).collect();
    keep.extend(
        [job.procs, job.tag_map, job.sock]
            .into_iter()
            .filter(|&f| f >= 0),
    );
    keep.sort_unstable();
    keep.dedup();
    if keep.len() > KEEP_MAX {
        return Err(Errno::TOOBIG);
    }
    job.keep[..keep.len()].copy_from_slice(&keep);
    let mut stack = vec![0u8; CHILD_STACK];
    let mut args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD) as u64,
        pidfd: watched.pidfd.as_ptr() as u64,
        // No exit signal: waited for with __WALL.
        exit_signal: 0,
        stack: stack.as_mut_ptr() as u64,
        stack_size: CHILD_STACK as u64,
        ..CloneArgs::default()
    };
    if let crate::cgroup::MemoryHome::V2(dir) = home {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = dir.as_raw_fd() as u64;
    }
    // The child inherits this thread's affinity: held to this CPU for the clone, it runs here
    // while this thread waits (the vfork).
    let affinity = rustix::thread::sched_getaffinity(None).ok();
    let mut one = rustix::thread::CpuSet::new();
    one.set(rustix::thread::sched_getcpu());
    let _ = rustix::thread::sched_setaffinity(None, &one);
    // SAFETY: the stack outlives the child (with CLONE_VFORK this thread resumes once the child
    // has exited; `Reap` reaps it); the child runs only `child_job`, which makes raw system
    // calls without errno (it shares this thread's TLS) and touches no allocator or lock.
    let pid =
        unsafe { clone3_running(&args, child_job, std::ptr::addr_of!(job).cast_mut().cast()) };
    if let Some(a) = &affinity {
        let _ = rustix::thread::sched_setaffinity(None, a);
    }
    // Off the watchdog's list before the pidfd can be closed (and its number reused).
    let pidfd = watched.pidfd.load(std::sync::atomic::Ordering::SeqCst);
    drop(watched);
    if pid < 0 {
        return Err(Errno::from_raw_os_error(-pid as i32));
    }
    drop(theirs);
    // SAFETY: clone3 wrote a new pidfd that nobody else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let exit = Reap { pidfd, done: false }.wait();
    drop(stack);
    match exit? {
        ChildExit::Exited(0) => receive_fd(&mine),
        ChildExit::Exited(e) => Err(Errno::from_raw_os_error(e)),
        ChildExit::Signaled(_) => Err(Errno::NOMEM),
    }
}

/// The longest a [`bpf_fd_in_cgroup`] child may run before the watchdog kills it (its caller
/// then gets `ENOMEM`, as for any killed child). It makes one object in well under a
/// millisecond; one that takes this long was stopped (a uid-0 member may `SIGSTOP` it before
/// its credentials change), and would hang that member's call and hold what it holds.
pub const CHILD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// How many [`bpf_fd_in_cgroup`] children the watchdog has killed since this process started.
pub fn children_killed() -> u64 {
    watchdog::KILLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Kills [`bpf_fd_in_cgroup`] children that outlive their deadline. The calling thread cannot:
/// it waits inside clone3 (the vfork) until the child is gone. One thread for the process,
/// started at the first use, asleep while no child runs.
mod watchdog {
    use std::os::fd::BorrowedFd;
    use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
    use std::sync::{Arc, Condvar, Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    pub(super) static KILLED: AtomicU64 = AtomicU64::new(0);

    struct Slot {
        id: u64,
        pidfd: Arc<AtomicI32>,
        deadline: Instant,
        killed: bool,
    }

    struct State {
        slots: Vec<Slot>,
        next: u64,
        running: bool,
        /// The thread sleeps until woken (no child for a while): the next child wakes it.
        /// Otherwise it wakes by itself at least once per deadline, so that a busy bpfnsd
        /// pays no wake-up per child.
        idle: bool,
    }

    /// How long the thread keeps waking by itself after the last child.
    const LINGER: Duration = Duration::from_secs(10);

    static STATE: Mutex<State> = Mutex::new(State {
        slots: Vec::new(),
        next: 0,
        running: false,
        idle: false,
    });
    static WAKE: Condvar = Condvar::new();

    fn state() -> MutexGuard<'static, State> {
        STATE.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A child being watched; dropping it takes it off the list.
    pub(super) struct Watched {
        id: u64,
        /// -1 until clone3 writes the child's pidfd here.
        pub(super) pidfd: Arc<AtomicI32>,
    }

    /// Watch the child whose pidfd clone3 will write into the returned slot.
    pub(super) fn watch(within: Duration) -> Watched {
        let pidfd = Arc::new(AtomicI32::new(-1));
        let mut st = state();
        st.next += 1;
        let id = st.next;
        st.slots.push(Slot {
            id,
            pidfd: pidfd.clone(),
            deadline: Instant::now() + within,
            killed: false,
        });
        if !st.running {
            // Without the thread (it could not start) children are not watched: best effort.
            st.running = std::thread::Builder::new()
                .name("bpfns-child-watchdog".into())
                .spawn(move || run(within))
                .is_ok();
        }
        let wake = std::mem::take(&mut st.idle);
        drop(st);
        if wake {
            WAKE.notify_one();
        }
        Watched { id, pidfd }
    }

    impl Drop for Watched {
        fn drop(&mut self) {
            state().slots.retain(|s| s.id != self.id);
        }
    }

    /// `period`: every child's deadline is this far from its start.
    fn run(period: Duration) {
        let mut st = state();
        let mut last_seen = Instant::now();
        loop {
            let now = Instant::now();
            for s in st
                .slots
                .iter_mut()
                .filter(|s| !s.killed && s.deadline <= now)
            {
                let fd = s.pidfd.load(Ordering::SeqCst);
                if fd < 0 {
                    continue; // not cloned yet
                }
                // SAFETY: the slot is on the list, so its owner has not closed the pidfd (it
                // takes the slot off under this lock first).
                let pidfd = unsafe { BorrowedFd::borrow_raw(fd) };
                if rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL).is_ok()
                {
                    KILLED.fetch_add(1, Ordering::Relaxed);
                }
                s.killed = true;
            }
            if !st.slots.is_empty() {
                last_seen = now;
            }
            // A child added while this waits has a later deadline than the wait's end (each
            // is `period` from its start): the wait never needs shortening.
            let next = st
                .slots
                .iter()
                .filter(|s| !s.killed)
                .map(|s| s.deadline)
                .min();
            st = match next {
                Some(at) => {
                    let wait = at
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1));
                    WAKE.wait_timeout(st, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None if now.duration_since(last_seen) < LINGER => {
                    WAKE.wait_timeout(st, period)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => {
                    st.idle = true;
                    WAKE.wait(st).unwrap_or_else(|e| e.into_inner())
                }
            };
        }
    }
}

/// The fd a child sent on `sock` before it exited (`EIO` if none came).
fn receive_fd(sock: &OwnedFd) -> std::result::Result<OwnedFd, Errno> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let mut b = [0u8; 1];
    rustix::net::recvmsg(
        sock,
        &mut [std::io::IoSliceMut::new(&mut b)],
        &mut anc,
        RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
    )?;
    for msg in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(Errno::IO)
}

/// Waits for the child before its stack can be freed: at [`Reap::wait`], or on unwind (after
/// killing it).
struct Reap {
    pidfd: OwnedFd,
    done: bool,
}

impl Reap {
    fn wait(mut self) -> std::result::Result<ChildExit, Errno> {
        self.done = true;
        wait_pidfd(self.pidfd.as_fd())
    }
}

impl Drop for Reap {
    fn drop(&mut self) {
        if !self.done {
            let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
            let _ = wait_pidfd(self.pidfd.as_fd());
        }
    }
}

/// The child of [`bpf_fd_in_cgroup`]: never returns. Raw system calls only (rustix's, and
/// [`raw_syscall`]): it shares the parent thread's TLS, whose errno that thread may read.
extern "C" fn child_job(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `ChildJob`, alive until the parent has waited for us.
    let job = unsafe { &*(arg as *const ChildJob) };
    let fail = |r: i64| {
        if r < 0 {
            child_exit(-r as i32);
        }
    };
    // Every fd but those it uses, first (close_range over the gaps): until its credentials
    // change below, a uid-0 member in the host's pid namespace can stop it, and a stopped
    // child must hold nothing of bpfnsd's (its listening socket held by a stopped child kept
    // every later bpfnsd from starting).
    let mut from: u64 = 0;
    for &k in job.keep.iter().take_while(|&&k| k >= 0) {
        if (k as u64) > from {
            raw_syscall(libc::SYS_close_range, [from, k as u64 - 1, 0]);
        }
        from = k as u64 + 1;
    }
    raw_syscall(libc::SYS_close_range, [from, u64::from(u32::MAX), 0]);
    // Never the OOM killer's pick: scored by bpfnsd's memory, which it shares, it would be the
    // biggest task of a member's memory cgroup, and the OOM killer kills every process sharing
    // its victim's memory. The vfork covers it only until its exit gives that memory up
    // (`mm_release` ends the vfork before the task lets go of the memory, and may sleep in
    // between, while the parent it woke runs): there it is an ordinary task of the cgroup. An
    // oom_score_adj of -1000 covers it to the end (a vfork child's is its own: bpfnsd's is
    // unchanged). Lowering it takes CAP_SYS_RESOURCE (raised here: bpfnsd's threads keep it
    // permitted only), so before the credentials change; best effort (without that capability
    // in bpfnsd's bounding set, the vfork alone).
    // Only where it can be lowered: without the capability the write fails, and each system
    // call here is one more in the window above.
    if let Some(sets) = job.oom_caps {
        let _ = rustix::thread::set_capabilities(None, sets);
        let adj = raw_syscall(
            libc::SYS_open,
            [
                OOM_SCORE_ADJ.as_ptr() as u64,
                (libc::O_WRONLY | libc::O_CLOEXEC) as u64,
                0,
            ],
        );
        if adj >= 0 {
            raw_syscall(
                libc::SYS_write,
                [
                    adj as u64,
                    OOM_SCORE_ADJ_MIN.as_ptr() as u64,
                    OOM_SCORE_ADJ_MIN.len() as u64,
                ],
            );
            raw_syscall(libc::SYS_close, [adj as u64, 0, 0]);
        }
    }
    // Its credentials first, before anything that can wait (a cgroup v1 move can wait for an
    // RCU grace period): every uid (a task of bpfnsd's uid 0 could signal, or stop, it
    // otherwise), keeping the permitted set through the change (leaving uid 0 clears it, and
    // the effective one), then the sets. What follows needs none: the move is checked against
    // the credentials `cgroup.procs` was opened with, the rest works on fds it holds.
    if let Err(e) = rustix::thread::set_keep_capabilities(true) {
        child_exit(e.raw_os_error());
    }
    let uid = rustix::process::Uid::from_raw(job.creds.euid);
    if let Err(e) = rustix::thread::set_thread_res_uid(uid, uid, uid) {
        child_exit(e.raw_os_error());
    }
    let sets = crate::caps::CapabilitySets {
        effective: job.creds.caps,
        permitted: job.creds.caps,
        inheritable: crate::caps::CapabilitySet::empty(),
    };
    if let Err(e) = rustix::thread::set_capabilities(None, sets) {
        child_exit(e.raw_os_error());
    }
    if job.procs >= 0 {
        // "0": the writer itself.
        fail(raw_syscall(
            libc::SYS_write,
            [job.procs as u64, b"0".as_ptr() as u64, 1],
        ));
    }
    if job.tag_map >= 0 {
        // A pidfd of its own (`CLONE_PIDFD` put the parent's in the parent's table only).
        let me = raw_syscall(libc::SYS_getpid, [0, 0, 0]);
        let pidfd = raw_syscall(libc::SYS_pidfd_open, [me as u64, 0, 0]);
        fail(pidfd);
        let key = pidfd as libc::c_int;
        // union bpf_attr for BPF_MAP_UPDATE_ELEM: map_fd, key, value, flags (BPF_ANY).
        let mut a = [0u64; 4];
        a[0] = job.tag_map as u64;
        a[1] = std::ptr::addr_of!(key) as u64;
        a[2] = job.tag_value as u64;
        fail(raw_syscall(
            libc::SYS_bpf,
            [
                u64::from(BPF_MAP_UPDATE_ELEM),
                a.as_ptr() as u64,
                std::mem::size_of_val(&a) as u64,
            ],
        ));
        raw_syscall(libc::SYS_close, [pidfd as u64, 0, 0]);
    }
    let fd = raw_syscall(
        libc::SYS_bpf,
        [u64::from(job.cmd), job.attr as u64, job.len as u64],
    );
    fail(fd);
    // SAFETY: fds of this task's own table (a copy of the parent's, plus the new one).
    let (sock, new) = unsafe {
        (
            BorrowedFd::borrow_raw(job.sock),
            BorrowedFd::borrow_raw(fd as i32),
        )
    };
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = rustix::net::SendAncillaryBuffer::new(&mut space);
    let fds = [new];
    if !anc.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)) {
        child_exit(libc::EIO);
    }
    if let Err(e) = rustix::net::sendmsg(
        sock,
        &[std::io::IoSlice::new(b"f")],
        &mut anc,
        rustix::net::SendFlags::empty(),
    ) {
        child_exit(e.raw_os_error());
    }
    child_exit(0)
}

use libbpf_sys::BPF_MAP_UPDATE_ELEM;

/// Where a [`bpf_fd_in_cgroup`] child sets its own oom_score_adj, and the value.
const OOM_SCORE_ADJ: &[u8] = b"/proc/self/oom_score_adj\0";
const OOM_SCORE_ADJ_MIN: &[u8] = b"-1000";

fn child_exit(code: i32) -> ! {
    loop {
        raw_syscall(libc::SYS_exit, [code.clamp(0, 255) as u64, 0, 0]);
    }
}

/// A system call that returns `-errno` instead of setting `errno`.
#[cfg(target_arch = "x86_64")]
fn raw_syscall(nr: libc::c_long, args: [u64; 3]) -> i64 {
    let ret: i64;
    // SAFETY: the x86-64 system call convention; the kernel clobbers rcx and r11 only.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// bpfns runs on x86-64 only (its member filter admits no other system call ABI).
#[cfg(not(target_arch = "x86_64"))]
fn raw_syscall(_nr: libc::c_long, _args: [u64; 3]) -> i64 {
    -(libc::ENOSYS as i64)
}

/// Wait for the child behind `pidfd` (created without an exit signal) to end.
fn wait_pidfd(pidfd: BorrowedFd<'_>) -> std::result::Result<ChildExit, Errno> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value of the plain C struct.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer; P_PIDFD takes the pidfd as the id.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::__WALL,
            )
        };
        if r == 0 {
            // SAFETY: waitid filled a CLD_* siginfo.
            let status = unsafe { info.si_status() };
            return Ok(if info.si_code == libc::CLD_EXITED {
                ChildExit::Exited(status)
            } else {
                ChildExit::Signaled(status)
            });
        }
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if e != libc::EINTR {
            return Err(Errno::from_raw_os_error(e));
        }
    }
}
