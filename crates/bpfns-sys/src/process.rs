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

/// Bytes this process's allocator has handed out and not had back (glibc's `mallinfo2`:
/// in-use heap and mmapped chunks). Unlike the resident size, it does not count memory the
/// allocator keeps after it was freed, so it shows leaks. `None` off glibc.
pub fn heap_in_use() -> Option<u64> {
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

/// `struct clone_args` (Linux 5.7 layout, with `cgroup`): what `clone3` reads.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The credentials a [`bpf_fd_in_cgroup`] child makes its call with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildCreds {
    /// Its effective uid (real and saved stay the parent thread's).
    pub euid: u32,
    /// Its effective and permitted capabilities (none inheritable).
    pub caps: crate::caps::CapabilitySet,
}

/// bpf(`cmd`, `attr`) made by a new child process put in the memory cgroup `home` (created
/// straight into its cgroup v2 directory with `clone3`'s `CLONE_INTO_CGROUP`, and moved into
/// its cgroup v1 memory cgroup where there is one, before it runs), so that what the kernel
/// allocates for a new map is charged there: the kernel charges a map's memory to the memory
/// cgroup of the task that creates it. Returns the new fd, in this process (the child shares
/// its fd table), or the call's errno.
///
/// The child is created with the calling thread's credentials and namespaces, which must be
/// allowed to move a process into `home`; it then takes `creds`, and waits until `before`
/// (given its pidfd, e.g. to tag it) has returned `Ok`, before it makes the call on its own
/// copy of `attr`, which nothing outside it can change. `ENOMEM` when the child was killed
/// (the memory controller's OOM killer).
pub fn bpf_fd_in_cgroup(
    home: &crate::cgroup::MemoryHome,
    cmd: u32,
    attr: &[u8],
    creds: ChildCreds,
    before: impl FnOnce(BorrowedFd<'_>) -> std::result::Result<(), Errno>,
) -> std::result::Result<OwnedFd, Errno> {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};
    // A number of ours the child moves the new fd to: the table is shared, so the parent
    // finds the object there.
    let (go_r, go_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let slot = rustix::io::fcntl_dupfd_cloexec(&go_r, 0)?;
    let mut pidfd: i32 = -1;
    let mut flags = (libc::CLONE_FILES | libc::CLONE_PIDFD) as u64;
    let mut cgroup = 0;
    if let Some(d) = &home.v2 {
        flags |= CLONE_INTO_CGROUP;
        cgroup = d.as_raw_fd() as u64;
    }
    let args = CloneArgs {
        flags,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        cgroup,
        // No signal at exit: bpfnsd's SIGCHLD handling stays as it is (waited with __WALL).
        exit_signal: 0,
        ..CloneArgs::default()
    };
    let (slot_raw, go_raw) = (slot.as_raw_fd(), go_r.as_raw_fd());
    let (attr_ptr, attr_len) = (attr.as_ptr(), attr.len());
    // SAFETY: without CLONE_VM the child runs on its own copy of the address space and of
    // this stack, like fork(); from here to `_exit` it only makes raw system calls (rustix's
    // are raw too) and touches no lock or allocator state copied from other threads.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of!(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        child_call(go_raw, creds, cmd, attr_ptr, attr_len, slot_raw);
    }
    if pid < 0 {
        return Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    // SAFETY: clone3 wrote a new pidfd that nobody else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let go = match &home.v1_procs {
        Some(procs) => (&*procs)
            .write_all(pid.to_string().as_bytes())
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::PERM)),
        None => Ok(()),
    }
    .and_then(|()| before(pidfd.as_fd()));
    if go.is_ok() {
        let _ = rustix::io::write(&go_w, &[1]);
    }
    // Closed unwritten, it tells the child to give up.
    drop(go_w);
    let exit = wait_pidfd(pidfd.as_fd())?;
    go?;
    match exit {
        ChildExit::Exited(0) => Ok(slot),
        ChildExit::Exited(e) => Err(Errno::from_raw_os_error(e)),
        ChildExit::Signaled(_) => Err(Errno::NOMEM),
    }
}

/// The child of [`bpf_fd_in_cgroup`]: never returns.
fn child_call(go: i32, creds: ChildCreds, cmd: u32, attr: *const u8, len: usize, slot: i32) -> ! {
    fn errno() -> i32 {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    }
    fn fail(e: i32) -> ! {
        // SAFETY: `_exit` ends the child at once, running nothing copied from the parent.
        unsafe { libc::_exit(e.clamp(1, 255)) }
    }
    let mut b = 0u8;
    loop {
        // SAFETY: reads one byte into `b`.
        let n = unsafe { libc::read(go, std::ptr::addr_of_mut!(b).cast(), 1) };
        match n {
            1 => break,
            0 => fail(libc::ECANCELED),
            _ if errno() == libc::EINTR => {}
            _ => fail(errno()),
        }
    }
    // The effective uid first (leaving uid 0 clears the effective set), then the sets.
    // SAFETY: a raw setresuid of this (single-threaded) process; -1 keeps a field.
    if unsafe { libc::syscall(libc::SYS_setresuid, -1i64, i64::from(creds.euid), -1i64) } < 0 {
        fail(errno());
    }
    let sets = crate::caps::CapabilitySets {
        effective: creds.caps,
        permitted: creds.caps,
        inheritable: crate::caps::CapabilitySet::empty(),
    };
    if let Err(e) = rustix::thread::set_capabilities(None, sets) {
        fail(e.raw_os_error());
    }
    // SAFETY: `attr` points at `len` bytes of this process's copy of the caller's buffer.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd as libc::c_long, attr, len) };
    if fd < 0 {
        fail(errno());
    }
    // SAFETY: plain fd-table calls on the shared table.
    unsafe {
        if libc::dup3(fd as i32, slot, libc::O_CLOEXEC) < 0 {
            fail(errno());
        }
        libc::close(fd as i32);
        libc::_exit(0)
    }
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
