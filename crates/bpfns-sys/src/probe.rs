//! Kernel feature probes behind `bpfns doctor`: each one actually tries the feature.
//!
//! BPF program and map loads themselves are in [`crate::bpf`] (`prog_load`, `map_create`); this
//! module adds libbpf's probes and BTF look-ups, the raw `BPF_TOKEN_CREATE` command, detached
//! (never attached, so never lasting) mounts for checking pseudo-filesystems, and a full seccomp
//! user-notification round trip with a forked child.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{openat, statat, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{fsconfig_create, fsmount, fsopen, FsMountFlags, FsOpenFlags, MountAttrFlags};
use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::{
    kill_process, pidfd_getfd, pidfd_open, waitpid, Pid, PidfdFlags, PidfdGetfdFlags, Signal,
    WaitOptions,
};

use crate::seccomp::{self, AddFd, Filter, FilterFlags, Listener};
use crate::{Result, SysError};

pub use crate::errno::{describe as describe_errno, name as errno_name, ENOTSUPP};

/// Whether the effective user is root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| SysError::new(format!("name {s:?}"), Errno::INVAL))
}

fn libbpf_bool(op: impl FnOnce() -> String, ret: i32) -> Result<bool> {
    match ret {
        1 => Ok(true),
        0 => Ok(false),
        r if r < 0 => Err(SysError::new(op(), Errno::from_raw_os_error(-r))),
        r => Err(SysError::new(
            format!("{} returned {r}", op()),
            Errno::INVAL,
        )),
    }
}

/// `libbpf_probe_bpf_prog_type`: whether the kernel can load a trivial program of this type.
pub fn prog_type_supported(prog_type: u32) -> Result<bool> {
    // SAFETY: integer argument; null opts is required.
    let ret = unsafe { libbpf_sys::libbpf_probe_bpf_prog_type(prog_type, std::ptr::null()) };
    libbpf_bool(|| format!("libbpf_probe_bpf_prog_type({prog_type})"), ret)
}

/// `libbpf_probe_bpf_map_type`: whether the kernel can create a map of this type.
pub fn map_type_supported(map_type: u32) -> Result<bool> {
    // SAFETY: integer argument; null opts is required.
    let ret = unsafe { libbpf_sys::libbpf_probe_bpf_map_type(map_type, std::ptr::null()) };
    libbpf_bool(|| format!("libbpf_probe_bpf_map_type({map_type})"), ret)
}

/// `libbpf_find_vmlinux_btf_id(name, attach_type)`: the vmlinux BTF id a program attaches to.
///
/// libbpf adds the kernel's prefix for the attach type: `btf_trace_` for `BPF_TRACE_RAW_TP`,
/// `bpf_lsm_` for `BPF_LSM_MAC`, `bpf_iter_` for `BPF_TRACE_ITER`; so pass `"sched_process_fork"`,
/// `"bpf_map"`, `"bpf_map"`.
pub fn vmlinux_btf_id(name: &str, attach_type: u32) -> Result<u32> {
    let c = cstr(name)?;
    // SAFETY: `c` is NUL-terminated and outlives the call.
    let ret = unsafe { libbpf_sys::libbpf_find_vmlinux_btf_id(c.as_ptr(), attach_type) };
    if ret <= 0 {
        let errno = if ret == 0 {
            Errno::NOENT
        } else {
            Errno::from_raw_os_error(-ret)
        };
        Err(SysError::new(
            format!("vmlinux BTF id of {name} (attach type {attach_type})"),
            errno,
        ))
    } else {
        Ok(ret as u32)
    }
}

/// What [`load_vmlinux_btf`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmlinuxBtf {
    /// Number of types (`btf__type_cnt`).
    pub types: u32,
}

/// `btf__load_vmlinux_btf`: load and parse the kernel's BTF the way libbpf does for CO-RE.
pub fn load_vmlinux_btf() -> Result<VmlinuxBtf> {
    // SAFETY: no arguments; returns an owned `struct btf *` or NULL with errno set.
    let btf = unsafe { libbpf_sys::btf__load_vmlinux_btf() };
    if btf.is_null() {
        let e = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::ENOENT);
        return Err(SysError::new(
            "btf__load_vmlinux_btf",
            Errno::from_raw_os_error(e),
        ));
    }
    // SAFETY: `btf` is a valid object from libbpf, freed exactly once right after.
    let types = unsafe { libbpf_sys::btf__type_cnt(btf) };
    // SAFETY: as above; not used afterwards.
    unsafe { libbpf_sys::btf__free(btf) };
    Ok(VmlinuxBtf { types })
}

/// The vmlinux BTF ids of the functions (`BTF_KIND_FUNC`) named `names`, in order; `None`
/// for a name the kernel's BTF does not have. Kfunc calls name their function by this id.
pub fn vmlinux_func_ids(names: &[&str]) -> Result<Vec<Option<u32>>> {
    // SAFETY: no arguments; returns an owned `struct btf *` or NULL with errno set.
    let btf = unsafe { libbpf_sys::btf__load_vmlinux_btf() };
    if btf.is_null() {
        let e = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::ENOENT);
        return Err(SysError::new(
            "btf__load_vmlinux_btf",
            Errno::from_raw_os_error(e),
        ));
    }
    let ids = names
        .iter()
        .map(|name| {
            let c = cstr(name).ok()?;
            // SAFETY: `btf` is valid until freed below; `c` is NUL-terminated and outlives
            // the call.
            let id = unsafe {
                libbpf_sys::btf__find_by_name_kind(btf, c.as_ptr(), libbpf_sys::BTF_KIND_FUNC)
            };
            u32::try_from(id).ok().filter(|&i| i > 0)
        })
        .collect();
    // SAFETY: `btf` is a valid object from libbpf, freed exactly once; not used afterwards.
    unsafe { libbpf_sys::btf__free(btf) };
    Ok(ids)
}

/// `BPF_TOKEN_CREATE` (Linux 6.9) from the bpffs fd `bpffs_fd` (an integer, so probes can pass
/// -1: a kernel that knows the command answers `EBADF`, one that does not answers `EINVAL`).
pub fn token_create(bpffs_fd: RawFd) -> Result<OwnedFd> {
    #[repr(C)]
    struct TokenCreateAttr {
        flags: u32,
        bpffs_fd: i32,
    }
    let mut attr = TokenCreateAttr { flags: 0, bpffs_fd };
    // SAFETY: `attr` is a readable `token_create` member of `union bpf_attr` of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            libbpf_sys::BPF_TOKEN_CREATE as libc::c_long,
            (&mut attr as *mut TokenCreateAttr).cast::<libc::c_void>(),
            std::mem::size_of::<TokenCreateAttr>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(SysError::new(
            format!("BPF_TOKEN_CREATE bpffs_fd={bpffs_fd}"),
            Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
        ))
    } else {
        // SAFETY: the kernel returned a new token fd that nobody else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
    }
}

/// A filesystem mounted with the new mount API (`fsopen`/`fsmount`) but never attached to any
/// path: visible only through this fd, and gone when it is dropped. Lets a probe look inside
/// tracefs or bpffs without changing the mount table.
#[derive(Debug)]
pub struct DetachedMount {
    fd: OwnedFd,
    fstype: String,
}

/// Mount a fresh `fstype` instance detached (see [`DetachedMount`]).
pub fn detached_mount(fstype: &str) -> Result<DetachedMount> {
    let err = |what: &str, e| SysError::new(format!("{what} {fstype}"), e);
    let fs = fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| err("fsopen", e))?;
    fsconfig_create(&fs).map_err(|e| err("fsconfig create", e))?;
    let fd = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .map_err(|e| err("fsmount", e))?;
    Ok(DetachedMount {
        fd,
        fstype: fstype.to_string(),
    })
}

impl DetachedMount {
    /// Whether `rel` exists inside the mount.
    pub fn exists(&self, rel: &str) -> bool {
        statat(&self.fd, rel, AtFlags::empty()).is_ok()
    }

    /// Read the file `rel` inside the mount.
    pub fn read_to_string(&self, rel: &str) -> Result<String> {
        let err = |e| SysError::new(format!("read {}:{rel}", self.fstype), e);
        let fd = openat(
            &self.fd,
            rel,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        let mut s = String::new();
        std::fs::File::from(fd)
            .read_to_string(&mut s)
            .map_err(|e| err(Errno::from_io_error(&e).unwrap_or(Errno::IO)))?;
        Ok(s)
    }
}

/// Whether `path` can be opened (a cheap existence check that reports the errno).
pub fn path_status(path: &Path) -> Result<()> {
    std::fs::metadata(path).map(|_| ()).map_err(|e| {
        SysError::new(
            format!("stat {}", path.display()),
            Errno::from_io_error(&e).unwrap_or(Errno::IO),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// seccomp user-notification round trip

/// What [`seccomp_notif_round_trip`] observed.
#[derive(Debug)]
pub struct NotifRoundTrip {
    /// The flags the child installed its filter with.
    pub flags: FilterFlags,
    /// `SECCOMP_IOCTL_NOTIF_SET_FLAGS(SYNC_WAKE_UP)` on the listener; `None` if the round trip
    /// failed before a listener was obtained.
    pub sync_wakeup: Option<Result<()>>,
    /// The whole round trip: the fd number the child received as the trapped call's return
    /// value, or the first thing that went wrong.
    pub outcome: Result<RawFd>,
}

/// Messages from the child: `[tag, value]`, 8 bytes, atomic on a pipe.
const MSG_LISTENER: i32 = 1;
const MSG_RESULT: i32 = 2;
const MSG_FDFLAGS: i32 = 3;
const FAIL_NO_NEW_PRIVS: i32 = -1;
const FAIL_FILTER: i32 = -2;
const FAIL_SYSCALL: i32 = -3;
const FAIL_FCNTL: i32 = -4;

/// The forked child. Runs in a copy of a possibly multi-threaded process, so it only makes raw
/// system calls (no allocation, no locks) and leaves with `_exit`.
fn child_main(filter: &Filter, flags: FilterFlags, wr: RawFd) -> ! {
    fn send(wr: RawFd, tag: i32, val: i32) {
        let m = [tag, val];
        // SAFETY: `m` is 8 readable bytes; `wr` is the pipe's write end, open in this child.
        unsafe { libc::write(wr, m.as_ptr().cast(), 8) };
    }
    fn errno() -> i32 {
        // SAFETY: libc's thread-local errno of the only thread of this child.
        unsafe { *libc::__errno_location() }
    }
    fn exit(code: i32) -> ! {
        // SAFETY: `_exit` ends the child at once, running no Rust or libc atexit code.
        unsafe { libc::_exit(code) }
    }
    if let Err(e) = seccomp::set_no_new_privs_raw() {
        send(wr, FAIL_NO_NEW_PRIVS, e.raw_os_error());
        exit(10);
    }
    match seccomp::install_filter_raw(filter, flags) {
        Ok(Some(fd)) => send(wr, MSG_LISTENER, fd),
        Ok(None) => {
            send(wr, FAIL_FILTER, 0);
            exit(11);
        }
        Err(e) => {
            send(wr, FAIL_FILTER, e.raw_os_error());
            exit(11);
        }
    }
    // SAFETY: getppid takes no arguments; the filter turns it into a notification.
    let r = unsafe { libc::syscall(libc::SYS_getppid) };
    if r < 0 {
        send(wr, FAIL_SYSCALL, errno());
        exit(12);
    }
    send(wr, MSG_RESULT, r as i32);
    // SAFETY: F_GETFD on an integer fd touches no memory.
    let fl = unsafe { libc::fcntl(r as i32, libc::F_GETFD) };
    if fl < 0 {
        send(wr, FAIL_FCNTL, errno());
        exit(13);
    }
    send(wr, MSG_FDFLAGS, fl);
    exit(0)
}

/// Kills (if still running) and reaps the child on every path.
struct ChildGuard {
    pid: Pid,
    reaped: bool,
}

impl ChildGuard {
    /// Wait for a normal exit until `deadline`; returns the exit status.
    fn wait(&mut self, pidfd: &OwnedFd, deadline: Instant) -> Result<rustix::process::WaitStatus> {
        match seccomp::poll_in(pidfd.as_fd(), Some(remaining(deadline))) {
            Ok(seccomp::PollState::TimedOut) => {
                return Err(SysError::new(
                    "waiting for the probe child",
                    Errno::TIMEDOUT,
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(SysError::new("poll pidfd", e)),
        }
        let st = waitpid(Some(self.pid), WaitOptions::empty())
            .map_err(|e| SysError::new("waitpid", e))?;
        self.reaped = true;
        st.map(|(_, s)| s)
            .ok_or_else(|| SysError::new("waitpid: no status", Errno::CHILD))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill_process(self.pid, Signal::KILL);
            let _ = waitpid(Some(self.pid), WaitOptions::empty());
        }
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Read one `[tag, value]` message from the child before `deadline`.
fn read_msg(rd: &OwnedFd, deadline: Instant, waiting_for: &str) -> Result<(i32, i32)> {
    match seccomp::poll_in(rd.as_fd(), Some(remaining(deadline))) {
        Ok(seccomp::PollState::TimedOut) => {
            return Err(SysError::new(
                format!("timed out waiting for the child ({waiting_for})"),
                Errno::TIMEDOUT,
            ))
        }
        Ok(_) => {}
        Err(e) => return Err(SysError::new("poll child pipe", e)),
    }
    let mut buf = [0u8; 8];
    let n = rustix::io::read(rd, &mut buf).map_err(|e| SysError::new("read child pipe", e))?;
    if n != 8 {
        return Err(SysError::new(
            format!("child exited before {waiting_for}"),
            Errno::PIPE,
        ));
    }
    let tag = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let val = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let failed = |what: &str| {
        SysError::new(
            format!("child: {what}"),
            Errno::from_raw_os_error(if val == 0 { libc::EPROTO } else { val }),
        )
    };
    match tag {
        FAIL_NO_NEW_PRIVS => Err(failed("prctl(PR_SET_NO_NEW_PRIVS)")),
        FAIL_FILTER => Err(failed("seccomp(SET_MODE_FILTER) with a listener")),
        FAIL_SYSCALL => Err(failed("trapped getppid() failed")),
        FAIL_FCNTL => Err(failed("fcntl(F_GETFD) on the injected fd")),
        _ => Ok((tag, val)),
    }
}

fn expect_tag(msg: (i32, i32), tag: i32, what: &str) -> Result<i32> {
    if msg.0 == tag {
        Ok(msg.1)
    } else {
        Err(SysError::new(
            format!("child sent message {} while {what} was expected", msg.0),
            Errno::PROTO,
        ))
    }
}

/// A real user-notification round trip with `ADDFD | SEND`.
///
/// Forks a child that sets no_new_privs, installs a filter trapping `getppid()` with
/// `NEW_LISTENER | flags`, reports its listener fd number through a pipe and calls `getppid()`.
/// The parent takes the listener with `pidfd_getfd`, sets `SYNC_WAKE_UP` on it, receives the
/// notification, checks `NOTIF_ID_VALID`, and answers with `NOTIF_ADDFD` +
/// `SECCOMP_ADDFD_FLAG_SEND` (close-on-exec), injecting a pipe end. The child checks that the
/// call returned a valid close-on-exec fd and exits 0. Every wait is bounded by `timeout`; the
/// child is always reaped (killed first if need be).
pub fn seccomp_notif_round_trip(flags: FilterFlags, timeout: Duration) -> NotifRoundTrip {
    let flags = flags | FilterFlags::NEW_LISTENER;
    let mut sync_wakeup = None;
    let outcome = round_trip(flags, timeout, &mut sync_wakeup);
    NotifRoundTrip {
        flags,
        sync_wakeup,
        outcome,
    }
}

fn round_trip(
    flags: FilterFlags,
    timeout: Duration,
    sync_wakeup: &mut Option<Result<()>>,
) -> Result<RawFd> {
    let deadline = Instant::now() + timeout;
    // Everything the child needs is prepared before fork.
    let filter = Filter::notify_syscalls(&[libc::SYS_getppid])?;
    let (rd, wr) = pipe_with(PipeFlags::CLOEXEC).map_err(|e| SysError::new("pipe2", e))?;
    let wr_raw = crate::bpf::raw(&wr);

    // SAFETY: the child runs `child_main` only, which makes raw system calls and `_exit`s; it
    // never returns into Rust code that might allocate or take locks another thread held.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SysError::new(
            "fork",
            Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
        ));
    }
    if pid == 0 {
        child_main(&filter, flags, wr_raw);
    }
    let pid = Pid::from_raw(pid).ok_or_else(|| SysError::new("fork pid", Errno::SRCH))?;
    let mut child = ChildGuard { pid, reaped: false };
    drop(wr);

    // Our unreaped child: its pid cannot be reused, so this pidfd is the right process.
    let pidfd = pidfd_open(pid, PidfdFlags::empty())
        .map_err(|e| SysError::new(format!("pidfd_open {}", pid.as_raw_nonzero()), e))?;
    let fdnum = expect_tag(
        read_msg(&rd, deadline, "its listener fd")?,
        MSG_LISTENER,
        "the listener fd",
    )?;
    let listener = pidfd_getfd(&pidfd, fdnum, PidfdGetfdFlags::empty())
        .map(Listener::from_fd)
        .map_err(|e| SysError::new(format!("pidfd_getfd(child, {fdnum})"), e))?;
    *sync_wakeup = Some(listener.set_sync_wakeup());

    if !listener.wait_readable(Some(remaining(deadline)))? {
        return Err(SysError::new(
            "timed out waiting for the notification",
            Errno::TIMEDOUT,
        ));
    }
    let n = listener.recv()?;
    if n.nr as i64 != libc::SYS_getppid || n.pid as i32 != pid.as_raw_nonzero().get() {
        return Err(SysError::new(
            format!(
                "notification for syscall {} from pid {} (expected getppid from {})",
                n.nr,
                n.pid,
                pid.as_raw_nonzero()
            ),
            Errno::PROTO,
        ));
    }
    if !listener.id_valid(n.id)? {
        return Err(SysError::new(
            "SECCOMP_IOCTL_NOTIF_ID_VALID: pending notification reported invalid",
            Errno::NOENT,
        ));
    }
    let (inject, _keep) = pipe_with(PipeFlags::CLOEXEC).map_err(|e| SysError::new("pipe2", e))?;
    let target_fd = listener.add_fd(
        n.id,
        inject.as_fd(),
        AddFd {
            target_fd: None,
            cloexec: true,
            send: true,
        },
    )?;
    let got = expect_tag(
        read_msg(&rd, deadline, "the trapped call's result")?,
        MSG_RESULT,
        "the call's result",
    )?;
    if got != target_fd {
        return Err(SysError::new(
            format!("child got {got} from the trapped call, ADDFD said {target_fd}"),
            Errno::PROTO,
        ));
    }
    let fdflags = expect_tag(
        read_msg(&rd, deadline, "the fd flags")?,
        MSG_FDFLAGS,
        "the fd flags",
    )?;
    if fdflags & libc::FD_CLOEXEC == 0 {
        return Err(SysError::new("injected fd lacks FD_CLOEXEC", Errno::PROTO));
    }
    let status = child.wait(&pidfd, deadline)?;
    match status.exit_status() {
        Some(0) => Ok(target_fd),
        _ => Err(SysError::new(
            format!("probe child ended with {status:?}"),
            Errno::CHILD,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The tests below touch the real kernel and need root; they return early otherwise.

    #[test]
    fn detached_mounts_change_nothing_and_can_be_read() {
        if !is_root() {
            eprintln!("skipped: not root");
            return;
        }
        let before = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let t = detached_mount("tracefs").expect("detached tracefs");
        let id = t
            .read_to_string("events/syscalls/sys_exit_bpf/id")
            .expect("sys_exit_bpf id");
        assert!(id.trim().parse::<u32>().is_ok(), "{id:?}");
        assert!(!t.exists("events/syscalls/no_such_event"));
        let b = detached_mount("bpf").expect("detached bpffs");
        assert!(!b.exists("anything"));
        let during = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        drop((t, b));
        assert_eq!(
            before, during,
            "a detached mount must not show in the mount table"
        );
    }

    #[test]
    fn vmlinux_lookups() {
        if !is_root() {
            eprintln!("skipped: not root");
            return;
        }
        assert!(load_vmlinux_btf().expect("vmlinux BTF").types > 1000);
        // BPF_TRACE_ITER = 28: libbpf looks up "bpf_iter_bpf_map".
        assert!(vmlinux_btf_id("bpf_map", 28).expect("iter target") > 0);
        let e = vmlinux_btf_id("no_such_thing_anywhere", 28).expect_err("absent");
        assert_eq!(e.errno, Errno::NOENT);
        assert_eq!(map_type_supported(2), Ok(true)); // array
    }

    #[test]
    fn token_create_answers() {
        let e = token_create(-1).expect_err("fd -1 is never a bpffs");
        assert!(
            matches!(e.errno, Errno::BADF | Errno::INVAL | Errno::PERM),
            "{e}"
        );
    }

    #[test]
    fn seccomp_round_trip() {
        if !is_root() {
            eprintln!("skipped: not root");
            return;
        }
        let t = seccomp_notif_round_trip(FilterFlags::EMPTY, Duration::from_secs(10));
        let fd = t.outcome.expect("round trip");
        assert!(fd > 2);
        assert!(t.flags.contains(FilterFlags::NEW_LISTENER));
        assert!(t.sync_wakeup.is_some());
        // Twice in a row, concurrently: every child is reaped, nothing hangs.
        let h = std::thread::spawn(|| {
            seccomp_notif_round_trip(FilterFlags::EMPTY, Duration::from_secs(10)).outcome
        });
        let mine = seccomp_notif_round_trip(FilterFlags::EMPTY, Duration::from_secs(10)).outcome;
        assert!(mine.is_ok());
        assert!(h.join().expect("thread").is_ok());
    }
}
