//! seccomp(2) filters and user notification (`seccomp_unotify(2)`), typed.
//!
//! Used by the feature probes (`bpfns doctor`) and by the supervisor, which traps the bpf()
//! commands that list or open objects and answers them from the member's view.
//!
//! - [`Filter`] / [`FilterBuilder`]: a classic-BPF seccomp program built from [`Rule`]s.
//! - [`install_filter`] (and the allocation-free [`install_filter_raw`] for use between fork and
//!   exec), [`set_no_new_privs_raw`].
//! - [`action_available`] (`SECCOMP_GET_ACTION_AVAIL`), [`notif_sizes`]
//!   (`SECCOMP_GET_NOTIF_SIZES`), [`filter_flags_supported`].
//! - [`Listener`]: the notification fd: [`Listener::recv`], [`Listener::respond`],
//!   [`Listener::id_valid`], [`Listener::add_fd`], [`Listener::set_flags`].

use std::ops::BitOr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::io::Errno;

use crate::{Result, SysError};

/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (`include/uapi/linux/seccomp.h`, Linux 6.6). Not in
/// libc 0.2, so spelled out here.
pub const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;

/// `AUDIT_ARCH_X86_64` (`include/uapi/linux/audit.h`; not in libc 0.2, so spelled out here).
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// `AUDIT_ARCH_I386`: x86-64's ia32 entry point (`int 0x80`).
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `__X32_SYSCALL_BIT`: x86-64's x32 entry point numbers its calls with it.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// `AUDIT_ARCH_*` of the architecture this crate was built for.
#[cfg(target_arch = "x86_64")]
pub const NATIVE_AUDIT_ARCH: Option<u32> = Some(AUDIT_ARCH_X86_64);
/// `AUDIT_ARCH_AARCH64`.
#[cfg(target_arch = "aarch64")]
pub const NATIVE_AUDIT_ARCH: Option<u32> = Some(0xC000_00B7);
/// `AUDIT_ARCH_RISCV64`.
#[cfg(target_arch = "riscv64")]
pub const NATIVE_AUDIT_ARCH: Option<u32> = Some(0xC000_00F3);
/// Unknown architecture: [`FilterBuilder::build`] refuses.
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
pub const NATIVE_AUDIT_ARCH: Option<u32> = None;

/// `BPF_MAXINSNS` for classic BPF.
const MAX_INSNS: usize = 4096;

use crate::errno::last as last_errno;

// ---------------------------------------------------------------------------------------------
// Actions and flags

/// What a filter does with a matching system call (`SECCOMP_RET_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `SECCOMP_RET_ALLOW`.
    Allow,
    /// `SECCOMP_RET_USER_NOTIF`: park the call and notify the listener.
    UserNotif,
    /// `SECCOMP_RET_ERRNO | errno`: fail the call with this errno.
    Errno(u16),
    /// `SECCOMP_RET_LOG`: allow and log.
    Log,
    /// `SECCOMP_RET_TRAP`: send SIGSYS.
    Trap,
    /// `SECCOMP_RET_KILL_PROCESS`.
    KillProcess,
    /// `SECCOMP_RET_KILL_THREAD`.
    KillThread,
}

impl Action {
    /// The `SECCOMP_RET_*` value the filter returns.
    pub fn ret(self) -> u32 {
        match self {
            Action::Allow => libc::SECCOMP_RET_ALLOW,
            Action::UserNotif => libc::SECCOMP_RET_USER_NOTIF,
            Action::Errno(e) => libc::SECCOMP_RET_ERRNO | u32::from(e),
            Action::Log => libc::SECCOMP_RET_LOG,
            Action::Trap => libc::SECCOMP_RET_TRAP,
            Action::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
            Action::KillThread => libc::SECCOMP_RET_KILL_THREAD,
        }
    }

    /// The action part alone (no errno data), as `SECCOMP_GET_ACTION_AVAIL` wants it.
    pub fn action_only(self) -> u32 {
        self.ret() & libc::SECCOMP_RET_ACTION_FULL
    }
}

/// `SECCOMP_FILTER_FLAG_*` for [`install_filter`] (values from `include/uapi/linux/seccomp.h`;
/// libc has them as `c_ulong`, which is not `u64` everywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilterFlags(u64);

impl FilterFlags {
    /// No flags.
    pub const EMPTY: Self = Self(0);
    /// `SECCOMP_FILTER_FLAG_TSYNC`: apply to every thread of the process.
    pub const TSYNC: Self = Self(1 << 0);
    /// `SECCOMP_FILTER_FLAG_LOG`.
    pub const LOG: Self = Self(1 << 1);
    /// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`.
    pub const SPEC_ALLOW: Self = Self(1 << 2);
    /// `SECCOMP_FILTER_FLAG_NEW_LISTENER` (5.0): return a notification fd.
    pub const NEW_LISTENER: Self = Self(1 << 3);
    /// `SECCOMP_FILTER_FLAG_TSYNC_ESRCH` (5.7): needed to combine TSYNC with NEW_LISTENER.
    pub const TSYNC_ESRCH: Self = Self(1 << 4);
    /// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (5.19): once the supervisor has received a
    /// notification, only fatal signals interrupt the target's wait (no restarted duplicates).
    pub const WAIT_KILLABLE_RECV: Self = Self(1 << 5);

    /// The raw bit mask.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Flags from a raw bit mask (unknown bits are kept, for probing).
    pub const fn from_bits_retain(bits: u64) -> Self {
        Self(bits)
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for FilterFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Filters

/// One classic-BPF instruction, laid out exactly like `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// `struct sock_filter` and `Insn` must agree for the cast in `fprog`.
const _: () = assert!(std::mem::size_of::<Insn>() == std::mem::size_of::<libc::sock_filter>());

impl Insn {
    /// `BPF_STMT(code, k)`.
    pub const fn stmt(code: u32, k: u32) -> Self {
        Self {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }

    /// `BPF_JUMP(code, k, jt, jf)`.
    pub const fn jump(code: u32, k: u32, jt: u8, jf: u8) -> Self {
        Self {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }
}

/// One rule of a [`FilterBuilder`]: system call `nr` (optionally only when the low 32 bits of its
/// first argument are one of `arg0_in`) gets `action`.
///
/// Comparing the low 32 bits suits `int` arguments such as bpf()'s `cmd`, which the kernel
/// truncates to 32 bits itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub nr: i64,
    pub arg0_in: Option<Vec<u32>>,
    pub action: Action,
}

impl Rule {
    /// Every call of `nr` gets `action`.
    pub fn syscall(nr: i64, action: Action) -> Self {
        Self {
            nr,
            arg0_in: None,
            action,
        }
    }

    /// Calls of `nr` whose first argument (low 32 bits) is one of `values` get `action`.
    pub fn syscall_arg0(nr: i64, values: &[u32], action: Action) -> Self {
        Self {
            nr,
            arg0_in: Some(values.to_vec()),
            action,
        }
    }
}

/// Builds a seccomp [`Filter`]: the architecture check, then the rules in order (first match
/// wins), then the default action.
#[derive(Debug, Clone)]
pub struct FilterBuilder {
    rules: Vec<Rule>,
    default: Action,
    foreign_arch: Action,
}

impl FilterBuilder {
    /// A filter that applies `default` to every call no rule matches. Calls made with a foreign
    /// system call ABI are killed unless [`FilterBuilder::foreign_arch`] says otherwise.
    pub fn new(default: Action) -> Self {
        Self {
            rules: Vec::new(),
            default,
            foreign_arch: Action::KillProcess,
        }
    }

    /// What to do with calls made through another architecture's ABI (e.g. 32-bit on x86_64).
    pub fn foreign_arch(mut self, action: Action) -> Self {
        self.foreign_arch = action;
        self
    }

    /// Add a rule.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Assemble the program.
    pub fn build(&self) -> Result<Filter> {
        use crate::cbpf::{off_arg_lo, Asm, To, JEQ_K, OFF_ARCH, OFF_NR};
        /// Where jumps lead: rule `i`'s action, past rule `i`, the foreign-ABI action.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum L {
            Ret(usize),
            Past(usize),
            Foreign,
        }
        let arch = NATIVE_AUDIT_ARCH
            .ok_or_else(|| SysError::new("seccomp filter: unknown AUDIT_ARCH", Errno::NOSYS))?;
        let mut a = Asm::default();
        a.load(OFF_ARCH);
        a.jump(JEQ_K, arch, To::Next, To::L(L::Foreign));
        a.load(OFF_NR);
        for (i, rule) in self.rules.iter().enumerate() {
            let nr = u32::try_from(rule.nr)
                .map_err(|_| SysError::new("seccomp filter: syscall number", Errno::INVAL))?;
            match &rule.arg0_in {
                None => a.jump(JEQ_K, nr, To::L(L::Ret(i)), To::Next),
                Some(values) => {
                    a.jump(JEQ_K, nr, To::Next, To::L(L::Past(i)));
                    a.load(off_arg_lo(0));
                    for v in values {
                        a.jump(JEQ_K, *v, To::L(L::Ret(i)), To::Next);
                    }
                    // The next rules compare the number again.
                    a.load(OFF_NR);
                    a.label(L::Past(i));
                }
            }
        }
        a.ret(self.default.ret());
        a.label(L::Foreign);
        a.ret(self.foreign_arch.ret());
        for (i, rule) in self.rules.iter().enumerate() {
            a.label(L::Ret(i));
            a.ret(rule.action.ret());
        }
        let insns = a
            .finish()
            .map_err(|e| SysError::new(format!("seccomp filter: {e}"), Errno::TOOBIG))?;
        Filter::from_insns(insns)
    }
}

/// A seccomp classic-BPF program, ready to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    insns: Vec<Insn>,
}

impl Filter {
    /// A filter from hand-written instructions (checked by the kernel at install time).
    pub fn from_insns(insns: Vec<Insn>) -> Result<Self> {
        if insns.is_empty() || insns.len() > MAX_INSNS {
            return Err(SysError::new(
                format!("seccomp filter of {} instructions", insns.len()),
                Errno::INVAL,
            ));
        }
        Ok(Self { insns })
    }

    /// The filter "notify the listener on every call of these system calls, allow the rest".
    pub fn notify_syscalls(nrs: &[i64]) -> Result<Self> {
        nrs.iter()
            .fold(FilterBuilder::new(Action::Allow), |b, &nr| {
                b.rule(Rule::syscall(nr, Action::UserNotif))
            })
            .build()
    }

    /// The instructions.
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    fn fprog(&self) -> libc::sock_fprog {
        libc::sock_fprog {
            len: self.insns.len() as u16,
            // The kernel only reads the program; `Insn` has `sock_filter`'s layout.
            filter: self.insns.as_ptr() as *mut libc::sock_filter,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// seccomp(2) operations

/// Raw `seccomp(op, flags, args)`; returns the syscall's value or the errno.
///
/// # Safety
/// `args` must be what `op` expects (or null).
unsafe fn seccomp_raw(op: libc::c_uint, flags: u64, args: *mut libc::c_void) -> Result<i64, Errno> {
    // SAFETY: forwarded to the caller's contract on `args`.
    let ret = unsafe { libc::syscall(libc::SYS_seccomp, op, flags, args) };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret)
    }
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`, required before an unprivileged process installs a filter.
///
/// Async-signal-safe (no allocation): may be called between fork and exec.
pub fn set_no_new_privs_raw() -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// Install `filter` on the calling thread (or, with TSYNC, process); returns the raw listener fd
/// when `flags` has NEW_LISTENER.
///
/// Async-signal-safe (no allocation, no locks): meant for a child between fork and exec (for
/// example in `Command::pre_exec`), where the caller hands the fd on. The fd is close-on-exec.
/// With TSYNC (without TSYNC_ESRCH), a thread that could not be synchronised makes this fail
/// with `EAGAIN`.
pub fn install_filter_raw(filter: &Filter, flags: FilterFlags) -> Result<Option<RawFd>, Errno> {
    // seccomp(2) takes `unsigned int flags`: refuse bits it would silently drop.
    if flags.bits() > u64::from(u32::MAX) {
        return Err(Errno::INVAL);
    }
    let mut prog = filter.fprog();
    // SAFETY: `prog` points at `filter.insns`, which outlives the call; the kernel copies it.
    let ret = unsafe {
        seccomp_raw(
            libc::SECCOMP_SET_MODE_FILTER,
            flags.bits(),
            (&mut prog as *mut libc::sock_fprog).cast(),
        )
    }?;
    if flags.contains(FilterFlags::NEW_LISTENER) {
        Ok(Some(ret as RawFd))
    } else if ret != 0 {
        // TSYNC: `ret` is the id of a thread that could not be synchronised.
        Err(Errno::AGAIN)
    } else {
        Ok(None)
    }
}

/// [`install_filter_raw`] for ordinary (not just-forked) code: owns the listener.
pub fn install_filter(filter: &Filter, flags: FilterFlags) -> Result<Option<Listener>> {
    match install_filter_raw(filter, flags) {
        // SAFETY: with NEW_LISTENER the kernel returned a new fd that nobody else owns.
        Ok(Some(fd)) => Ok(Some(Listener(unsafe { OwnedFd::from_raw_fd(fd) }))),
        Ok(None) => Ok(None),
        Err(e) => Err(SysError::new(
            format!("seccomp(SET_MODE_FILTER, {:#x})", flags.bits()),
            e,
        )),
    }
}

/// `SECCOMP_GET_ACTION_AVAIL`: whether the kernel knows `action`.
pub fn action_available(action: Action) -> Result<bool> {
    let mut a: u32 = action.action_only();
    // SAFETY: `a` is a readable u32 for the duration of the call.
    let ret = unsafe {
        seccomp_raw(
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            (&mut a as *mut u32).cast(),
        )
    };
    match ret {
        Ok(_) => Ok(true),
        Err(Errno::OPNOTSUPP) => Ok(false),
        Err(e) => Err(SysError::new(
            format!("seccomp(GET_ACTION_AVAIL, {:#x})", action.action_only()),
            e,
        )),
    }
}

/// Whether the kernel accepts every flag in `flags` for `SECCOMP_SET_MODE_FILTER`.
///
/// Uses the classic probe: `seccomp(SECCOMP_SET_MODE_FILTER, flags, NULL)` fails with `EFAULT`
/// once the flags have been accepted (the null program is read next) and with `EINVAL` for
/// unknown flags. Nothing is installed either way.
pub fn filter_flags_supported(flags: FilterFlags) -> Result<bool> {
    // seccomp(2) takes `unsigned int flags`: higher bits would be silently dropped.
    if flags.bits() > u64::from(u32::MAX) {
        return Ok(false);
    }
    // SAFETY: a null program pointer is the point of the probe; the kernel faults on it safely.
    let ret = unsafe {
        seccomp_raw(
            libc::SECCOMP_SET_MODE_FILTER,
            flags.bits(),
            std::ptr::null_mut(),
        )
    };
    match ret {
        Err(Errno::FAULT) => Ok(true),
        Err(Errno::INVAL) => Ok(false),
        Err(e) => Err(SysError::new(
            format!("seccomp(SET_MODE_FILTER, {:#x}, NULL)", flags.bits()),
            e,
        )),
        Ok(_) => Err(SysError::new(
            format!(
                "seccomp(SET_MODE_FILTER, {:#x}, NULL) succeeded",
                flags.bits()
            ),
            Errno::INVAL,
        )),
    }
}

/// Sizes of the notification structures as the running kernel has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifSizes {
    /// `sizeof(struct seccomp_notif)`.
    pub notif: u16,
    /// `sizeof(struct seccomp_notif_resp)`.
    pub resp: u16,
    /// `sizeof(struct seccomp_data)`.
    pub data: u16,
}

impl NotifSizes {
    /// The sizes this crate was compiled with (libc's structs, the ioctl numbers' sizes).
    pub fn compiled() -> Self {
        Self {
            notif: std::mem::size_of::<libc::seccomp_notif>() as u16,
            resp: std::mem::size_of::<libc::seccomp_notif_resp>() as u16,
            data: std::mem::size_of::<libc::seccomp_data>() as u16,
        }
    }
}

/// `SECCOMP_GET_NOTIF_SIZES`.
pub fn notif_sizes() -> Result<NotifSizes> {
    let mut s = libc::seccomp_notif_sizes {
        seccomp_notif: 0,
        seccomp_notif_resp: 0,
        seccomp_data: 0,
    };
    // SAFETY: `s` is a writable `struct seccomp_notif_sizes`.
    unsafe {
        seccomp_raw(
            libc::SECCOMP_GET_NOTIF_SIZES,
            0,
            (&mut s as *mut libc::seccomp_notif_sizes).cast(),
        )
    }
    .map_err(|e| SysError::new("seccomp(GET_NOTIF_SIZES)", e))?;
    Ok(NotifSizes {
        notif: s.seccomp_notif,
        resp: s.seccomp_notif_resp,
        data: s.seccomp_data,
    })
}

// ---------------------------------------------------------------------------------------------
// The listener

/// One trapped system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    /// Cookie for [`Listener::respond`], [`Listener::id_valid`], [`Listener::add_fd`].
    pub id: u64,
    /// Thread id of the caller, in the listener's pid namespace (0 if not visible there).
    pub pid: u32,
    pub flags: u32,
    /// System call number.
    pub nr: i32,
    /// `AUDIT_ARCH_*` of the call.
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

/// The answer to a [`Notification`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// The call returns this value.
    Value(i64),
    /// The call fails with this errno.
    Error(Errno),
    /// `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: let the kernel run the call (TOCTOU-prone: only when
    /// the kernel's own checks still protect).
    Continue,
}

/// Options for [`Listener::add_fd`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddFd {
    /// `SECCOMP_ADDFD_FLAG_SETFD`: install at exactly this fd number in the target.
    pub target_fd: Option<RawFd>,
    /// Set close-on-exec on the target's new fd.
    pub cloexec: bool,
    /// `SECCOMP_ADDFD_FLAG_SEND` (5.14): also answer the notification, atomically, with the new
    /// fd number as the call's return value.
    pub send: bool,
}

/// A seccomp notification fd (`SECCOMP_FILTER_FLAG_NEW_LISTENER`).
#[derive(Debug)]
pub struct Listener(OwnedFd);

impl Listener {
    /// Adopt a listener fd received from elsewhere (SCM_RIGHTS, `pidfd_getfd`).
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self(fd)
    }

    /// The fd.
    pub fn into_fd(self) -> OwnedFd {
        self.0
    }

    fn ioctl(&self, name: &str, req: libc::Ioctl, arg: *mut libc::c_void) -> Result<i32> {
        // SAFETY: each caller passes the argument type `req` encodes, valid for the call.
        let ret = unsafe { libc::ioctl(self.0.as_raw_fd(), req, arg) };
        if ret < 0 {
            Err(SysError::new(name, last_errno()))
        } else {
            Ok(ret)
        }
    }

    /// Wait up to `timeout` (forever if `None`) for a notification. `Ok(false)` on timeout;
    /// `Err(EPIPE)` once no task can trigger the filter any more (POLLHUP).
    pub fn wait_readable(&self, timeout: Option<Duration>) -> Result<bool> {
        match poll_in(self.0.as_fd(), timeout) {
            Ok(PollState::Readable) => Ok(true),
            Ok(PollState::TimedOut) => Ok(false),
            Ok(PollState::HungUp) => Err(SysError::new("poll seccomp listener", Errno::PIPE)),
            Err(e) => Err(SysError::new("poll seccomp listener", e)),
        }
    }

    /// `SECCOMP_IOCTL_NOTIF_RECV`: the next notification (blocks; see
    /// [`Listener::wait_readable`]). `ENOENT` if the target went away meanwhile.
    pub fn recv(&self) -> Result<Notification> {
        // The kernel insists on a zeroed buffer.
        // SAFETY: `seccomp_notif` is plain integers; all-zero is valid.
        let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        self.ioctl(
            "SECCOMP_IOCTL_NOTIF_RECV",
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            (&mut n as *mut libc::seccomp_notif).cast(),
        )?;
        Ok(Notification {
            id: n.id,
            pid: n.pid,
            flags: n.flags,
            nr: n.data.nr,
            arch: n.data.arch,
            instruction_pointer: n.data.instruction_pointer,
            args: n.data.args,
        })
    }

    /// [`Listener::recv`] that gives up with `EINTR` after `timeout` instead of blocking
    /// for good: `NOTIF_RECV` ignores `O_NONBLOCK` and waits for the next notification when
    /// another holder of the listener took the one `poll` reported. A `SIGALRM` timer
    /// interrupts the wait, so this is for single-threaded processes that use no other
    /// `ITIMER_REAL` (the listener keeper).
    pub fn recv_interruptible(&self, timeout: Duration) -> Result<Notification> {
        alarm_handler_installed()?;
        arm_alarm(timeout);
        let r = self.recv();
        arm_alarm(Duration::ZERO);
        r
    }

    /// `SECCOMP_IOCTL_NOTIF_ID_VALID`: whether the notification `id` is still pending (the
    /// target has not been interrupted or died). Check it between reading target memory and
    /// acting on what was read.
    pub fn id_valid(&self, id: u64) -> Result<bool> {
        let mut id = id;
        match self.ioctl(
            "SECCOMP_IOCTL_NOTIF_ID_VALID",
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            (&mut id as *mut u64).cast(),
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.errno == Errno::NOENT => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `SECCOMP_IOCTL_NOTIF_SEND`. `ENOENT` if the target is no longer waiting.
    pub fn respond(&self, id: u64, response: Response) -> Result<()> {
        let (val, error, flags) = match response {
            Response::Value(v) => (v, 0, 0),
            Response::Error(e) => (0, -e.raw_os_error(), 0),
            Response::Continue => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
        };
        let mut r = libc::seccomp_notif_resp {
            id,
            val,
            error,
            flags,
        };
        self.ioctl(
            "SECCOMP_IOCTL_NOTIF_SEND",
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            (&mut r as *mut libc::seccomp_notif_resp).cast(),
        )
        .map(|_| ())
    }

    /// `SECCOMP_IOCTL_NOTIF_ADDFD`: install a copy of `fd` in the target; returns its fd number
    /// there. With [`AddFd::send`] this also answers the notification.
    pub fn add_fd(&self, id: u64, fd: BorrowedFd<'_>, opts: AddFd) -> Result<RawFd> {
        let mut flags = 0u32;
        if opts.target_fd.is_some() {
            flags |= libc::SECCOMP_ADDFD_FLAG_SETFD as u32;
        }
        if opts.send {
            flags |= libc::SECCOMP_ADDFD_FLAG_SEND as u32;
        }
        let mut a = libc::seccomp_notif_addfd {
            id,
            flags,
            srcfd: fd.as_raw_fd() as u32,
            newfd: opts.target_fd.unwrap_or(0) as u32,
            newfd_flags: if opts.cloexec {
                libc::O_CLOEXEC as u32
            } else {
                0
            },
        };
        self.ioctl(
            "SECCOMP_IOCTL_NOTIF_ADDFD",
            libc::SECCOMP_IOCTL_NOTIF_ADDFD,
            (&mut a as *mut libc::seccomp_notif_addfd).cast(),
        )
    }

    /// `SECCOMP_IOCTL_NOTIF_SET_FLAGS` (6.6), e.g. [`SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`].
    pub fn set_flags(&self, flags: u64) -> Result<()> {
        // The kernel takes the flags by value in the ioctl argument, not through a pointer.
        // SAFETY: no memory is passed; the argument is an integer.
        let ret = unsafe {
            libc::ioctl(
                self.0.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
                flags as libc::c_ulong,
            )
        };
        if ret < 0 {
            Err(SysError::new(
                format!("SECCOMP_IOCTL_NOTIF_SET_FLAGS {flags:#x}"),
                last_errno(),
            ))
        } else {
            Ok(())
        }
    }

    /// Ask the kernel to wake the target on the supervisor's CPU when answering (lower latency
    /// for synchronous round trips): `SET_FLAGS(SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)`.
    pub fn set_sync_wakeup(&self) -> Result<()> {
        self.set_flags(SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

extern "C" fn on_alarm(_signal: libc::c_int) {}

/// Install a do-nothing `SIGALRM` handler without `SA_RESTART` (once): the signal then only
/// interrupts a blocking system call with `EINTR`.
fn alarm_handler_installed() -> Result<()> {
    static DONE: std::sync::OnceLock<std::result::Result<(), Errno>> = std::sync::OnceLock::new();
    let r = DONE.get_or_init(|| {
        // SAFETY: an all-zero `sigaction` is valid (empty mask, no flags); the handler does
        // nothing, which is async-signal-safe; the pointers are valid for the call.
        let ret = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(libc::SIGALRM, &act, std::ptr::null_mut())
        };
        if ret == 0 {
            Ok(())
        } else {
            Err(last_errno())
        }
    });
    r.map_err(|e| SysError::new("sigaction SIGALRM", e))
}

/// Arm (or, with zero, disarm) a one-shot `ITIMER_REAL`.
fn arm_alarm(after: Duration) {
    let t = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: after.as_secs() as libc::time_t,
            tv_usec: libc::suseconds_t::from(after.subsec_micros()),
        },
    };
    // SAFETY: `t` is a valid itimerval; the old value is not wanted (null is allowed).
    unsafe { libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut()) };
}

/// Result of waiting on one fd for input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PollState {
    Readable,
    HungUp,
    TimedOut,
}

/// `poll()` one fd for POLLIN, retrying on EINTR.
pub(crate) fn poll_in(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> Result<PollState, Errno> {
    let ms = match timeout {
        None => -1,
        Some(t) => i32::try_from(t.as_millis()).unwrap_or(i32::MAX),
    };
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `p` is one valid, writable pollfd.
        let ret = unsafe { libc::poll(&mut p, 1, ms) };
        if ret < 0 {
            let e = last_errno();
            if e == Errno::INTR {
                continue;
            }
            return Err(e);
        }
        return Ok(if ret == 0 {
            PollState::TimedOut
        } else if p.revents & libc::POLLIN != 0 {
            PollState::Readable
        } else {
            PollState::HungUp
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_mapped_in_flight_record_reads_back_as_written() {
        let f = InFlight::create().unwrap();
        let m = f.map().unwrap();
        m.record(0x0102_0304_0506_0708);
        assert_eq!(f.last().unwrap(), 0x0102_0304_0506_0708);
        f.record(5).unwrap();
        drop(m);
        assert_eq!(f.last().unwrap(), 5);
    }

    #[test]
    fn an_in_flight_record_that_may_shrink_is_not_mapped() {
        let fd = rustix::fs::memfd_create(
            "bpfns-test",
            rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
        )
        .unwrap();
        rustix::fs::ftruncate(&fd, 8).unwrap();
        let f = InFlight::from_fd(fd).unwrap();
        assert_eq!(f.map().unwrap_err().errno, Errno::INVAL);
        // Writing through the fd still works.
        f.record(3).unwrap();
        assert_eq!(f.last().unwrap(), 3);
    }

    use super::*;
    use crate::cbpf::{off_arg_lo, JEQ_K, LD_W_ABS, OFF_ARCH, OFF_NR, RET_K};

    #[test]
    fn plain_rule_layout() {
        let f = Filter::notify_syscalls(&[39]).expect("build");
        let i = f.insns();
        assert_eq!(i.len(), 7);
        assert_eq!(i[0], Insn::stmt(LD_W_ABS, OFF_ARCH));
        assert_eq!(i[1], Insn::jump(JEQ_K, AUDIT_ARCH_X86_64, 0, 3));
        assert_eq!(i[3], Insn::jump(JEQ_K, 39, 2, 0));
        assert_eq!(i[4].k, libc::SECCOMP_RET_ALLOW);
        assert_eq!(i[5].k, libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(i[6].k, libc::SECCOMP_RET_USER_NOTIF);
    }

    /// Interpret the filter for a (nr, arg0) pair, to check the jump arithmetic.
    fn eval(f: &Filter, arch: u32, nr: u32, arg0: u32) -> u32 {
        let mut a = 0u32;
        let mut pc = 0usize;
        loop {
            let i = f.insns()[pc];
            match u32::from(i.code) {
                LD_W_ABS => {
                    a = match i.k {
                        OFF_ARCH => arch,
                        OFF_NR => nr,
                        k if k == off_arg_lo(0) => arg0,
                        _ => panic!("offset"),
                    };
                    pc += 1;
                }
                JEQ_K => {
                    pc += 1 + usize::from(if a == i.k { i.jt } else { i.jf });
                }
                RET_K => return i.k,
                c => panic!("code {c:#x}"),
            }
        }
    }

    #[test]
    fn arg0_rules_evaluate() {
        let arch = NATIVE_AUDIT_ARCH.expect("arch");
        let f = FilterBuilder::new(Action::Allow)
            .rule(Rule::syscall_arg0(321, &[11, 12, 13], Action::UserNotif))
            .rule(Rule::syscall(321, Action::Errno(1)))
            .rule(Rule::syscall(39, Action::Log))
            .build()
            .expect("build");
        let notif = libc::SECCOMP_RET_USER_NOTIF;
        assert_eq!(eval(&f, arch, 321, 11), notif);
        assert_eq!(eval(&f, arch, 321, 12), notif);
        assert_eq!(eval(&f, arch, 321, 13), notif);
        assert_eq!(eval(&f, arch, 321, 14), libc::SECCOMP_RET_ERRNO | 1);
        assert_eq!(eval(&f, arch, 39, 0), libc::SECCOMP_RET_LOG);
        assert_eq!(eval(&f, arch, 1, 11), libc::SECCOMP_RET_ALLOW);
        assert_eq!(
            eval(&f, 0x4000_0003, 321, 11),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    #[test]
    fn too_many_values_is_an_error() {
        let values: Vec<u32> = (0..300).collect();
        let r = FilterBuilder::new(Action::Allow)
            .rule(Rule::syscall_arg0(321, &values, Action::UserNotif))
            .build();
        assert!(r.is_err());
    }

    /// A filter installed on one helper thread only (no TSYNC), answered from the test thread.
    #[test]
    fn listener_respond_round_trip_on_a_thread() {
        use std::sync::mpsc;
        let (tx, rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            set_no_new_privs_raw().expect("no_new_privs");
            let f = Filter::notify_syscalls(&[libc::SYS_getppid]).expect("filter");
            let l = install_filter(&f, FilterFlags::NEW_LISTENER)
                .expect("install")
                .expect("listener");
            tx.send(l).expect("send");
            go_rx.recv().expect("go");
            // SAFETY: no arguments; trapped by this thread's filter.
            unsafe { libc::syscall(libc::SYS_getppid) }
        });
        let l = rx.recv().expect("listener");
        assert!(!l
            .wait_readable(Some(Duration::from_millis(50)))
            .expect("poll"));
        go_tx.send(()).expect("go");
        assert!(l
            .wait_readable(Some(Duration::from_secs(10)))
            .expect("poll"));
        let n = l.recv().expect("recv");
        assert_eq!(i64::from(n.nr), libc::SYS_getppid);
        assert_eq!(Some(n.arch), NATIVE_AUDIT_ARCH);
        assert!(l.id_valid(n.id).expect("id_valid"));
        l.respond(n.id, Response::Value(4242)).expect("respond");
        assert!(!l.id_valid(n.id).expect("id_valid after answer"));
        assert_eq!(t.join().expect("thread"), 4242);
        // The only task the filter applied to is gone.
        let e = l
            .wait_readable(Some(Duration::from_secs(10)))
            .expect_err("hung up");
        assert_eq!(e.errno, Errno::PIPE);
    }

    /// arg0 matching against the real kernel, on a helper thread: close(12345) fails with the
    /// filter's errno, close(12346) with the kernel's EBADF.
    #[test]
    fn arg0_rule_in_the_kernel() {
        let t = std::thread::spawn(|| {
            set_no_new_privs_raw().expect("no_new_privs");
            let f = FilterBuilder::new(Action::Allow)
                .rule(Rule::syscall_arg0(
                    libc::SYS_close,
                    &[12_344, 12_345],
                    Action::Errno(libc::EBADMSG as u16),
                ))
                .build()
                .expect("filter");
            assert!(install_filter(&f, FilterFlags::EMPTY)
                .expect("install")
                .is_none());
            let close = |fd: i32| {
                // SAFETY: closing fd numbers nobody uses; the filter or the kernel refuses.
                let r = unsafe { libc::close(fd) };
                assert_eq!(r, -1);
                last_errno()
            };
            (close(12_345), close(12_346))
        });
        let (a, b) = t.join().expect("thread");
        assert_eq!(a, Errno::BADMSG);
        assert_eq!(b, Errno::BADF);
    }

    #[test]
    fn kernel_answers_probes() {
        assert!(action_available(Action::UserNotif).expect("GET_ACTION_AVAIL"));
        assert!(action_available(Action::Allow).expect("GET_ACTION_AVAIL"));
        assert!(filter_flags_supported(FilterFlags::NEW_LISTENER).expect("flags"));
        assert!(!filter_flags_supported(FilterFlags::from_bits_retain(1 << 30)).expect("flags"));
        // Bits the kernel's `unsigned int flags` would drop are never "supported".
        assert!(!filter_flags_supported(FilterFlags::from_bits_retain(1 << 40)).expect("flags"));
        assert_eq!(notif_sizes().expect("sizes"), NotifSizes::compiled());
    }

    #[test]
    fn flags_compose() {
        let f = FilterFlags::NEW_LISTENER | FilterFlags::WAIT_KILLABLE_RECV;
        assert!(f.contains(FilterFlags::NEW_LISTENER));
        assert!(!f.contains(FilterFlags::TSYNC));
        assert_eq!(f.bits(), (1 << 3) | (1 << 5));
    }
}

/// A shared record of the notification a supervisor is answering: an 8-byte memfd.
///
/// A listener can have several holders. When the supervisor that received a notification dies
/// before answering, the notification stays `SENT` and its caller waits until some holder of
/// the listener answers it, which only works knowing its id. The supervisor [`record`]s each id
/// it receives here; another holder (bpfnsd's listener keeper) reads it with [`last`] and
/// answers what is left ([`Listener::id_valid`] tells whether it is still waiting).
///
/// [`record`]: InFlight::record
/// [`last`]: InFlight::last
#[derive(Debug)]
pub struct InFlight(OwnedFd);

impl InFlight {
    /// A new, zeroed record (a close-on-exec memfd).
    pub fn create() -> Result<Self> {
        let fd = rustix::fs::memfd_create(
            "bpfns-in-flight",
            rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
        )
        .map_err(|e| SysError::new("memfd_create", e))?;
        rustix::fs::ftruncate(&fd, 8).map_err(|e| SysError::new("ftruncate memfd", e))?;
        // Its size is fixed: whoever else holds it cannot make reads or writes fail.
        rustix::fs::fcntl_add_seals(
            &fd,
            rustix::fs::SealFlags::SHRINK
                | rustix::fs::SealFlags::GROW
                | rustix::fs::SealFlags::SEAL,
        )
        .map_err(|e| SysError::new("F_ADD_SEALS", e))?;
        Ok(Self(fd))
    }

    /// Adopt a record received from elsewhere. Refuses anything but a memfd (no pipe, FIFO,
    /// socket or regular file: writing to those could block or change a real file).
    pub fn from_fd(fd: OwnedFd) -> Result<Self> {
        rustix::fs::fcntl_get_seals(&fd)
            .map_err(|e| SysError::new("F_GET_SEALS (not a memfd)", e))?;
        Ok(Self(fd))
    }

    /// A second handle on the same record (`dup`).
    pub fn try_clone(&self) -> Result<Self> {
        self.0.try_clone().map(Self).map_err(|e| {
            SysError::new(
                "dup in-flight record",
                Errno::from_io_error(&e).unwrap_or(Errno::BADF),
            )
        })
    }

    /// The fd.
    pub fn into_fd(self) -> OwnedFd {
        self.0
    }

    /// Record that notification `id` is being answered.
    pub fn record(&self, id: u64) -> Result<()> {
        rustix::io::pwrite(&self.0, &id.to_le_bytes(), 0)
            .map(|_| ())
            .map_err(|e| SysError::new("pwrite in-flight record", e))
    }

    /// A mapping of the record, to [`record`](InFlightMap::record) ids with a plain store
    /// instead of a system call. Only for a record whose size is sealed at 8 bytes or more
    /// and that may be written (else `EINVAL` / `EPERM`): a mapped file that shrank would
    /// fault.
    pub fn map(&self) -> Result<InFlightMap> {
        let seals = rustix::fs::fcntl_get_seals(&self.0)
            .map_err(|e| SysError::new("F_GET_SEALS in-flight record", e))?;
        if !seals.contains(rustix::fs::SealFlags::SHRINK) {
            return Err(SysError::new(
                "mapping an in-flight record that may shrink",
                Errno::INVAL,
            ));
        }
        if seals.intersects(rustix::fs::SealFlags::WRITE | rustix::fs::SealFlags::FUTURE_WRITE) {
            return Err(SysError::new(
                "mapping a write-sealed in-flight record",
                Errno::PERM,
            ));
        }
        let st = rustix::fs::fstat(&self.0).map_err(|e| SysError::new("fstat in-flight", e))?;
        if st.st_size < 8 {
            return Err(SysError::new(
                "mapping an in-flight record under 8 bytes",
                Errno::INVAL,
            ));
        }
        // SAFETY: a new shared mapping of 8 bytes of a file at least that long, which cannot
        // shrink (sealed); nothing else is mapped there.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.0.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(SysError::new("mmap in-flight record", last_errno()));
        }
        Ok(InFlightMap(p.cast()))
    }

    /// The last id recorded (0: none yet).
    pub fn last(&self) -> Result<u64> {
        let mut b = [0u8; 8];
        let n = rustix::io::pread(&self.0, &mut b, 0)
            .map_err(|e| SysError::new("pread in-flight record", e))?;
        Ok(if n == 8 { u64::from_le_bytes(b) } else { 0 })
    }
}

/// An [`InFlight`] record mapped into this process ([`InFlight::map`]).
#[derive(Debug)]
pub struct InFlightMap(*mut std::sync::atomic::AtomicU64);

// SAFETY: the mapping is process memory like any other; the atomic makes stores from any
// thread sound.
unsafe impl Send for InFlightMap {}
// SAFETY: as above.
unsafe impl Sync for InFlightMap {}

impl InFlightMap {
    /// Record that notification `id` is being answered (as [`InFlight::record`] writes it:
    /// little-endian, read back with [`InFlight::last`]).
    pub fn record(&self, id: u64) {
        // SAFETY: the mapping is page-aligned, 8 bytes long and lives as long as `self`.
        unsafe { &*self.0 }.store(
            u64::from_ne_bytes(id.to_le_bytes()),
            std::sync::atomic::Ordering::Release,
        );
    }
}

impl Drop for InFlightMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `InFlight::map` mapped.
        unsafe { libc::munmap(self.0.cast(), 8) };
    }
}

impl AsFd for InFlight {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Listener {
    /// Answer, with `errno`, every notification among `first..first+span` that a receiver
    /// took and left unanswered (`SENT`: [`Listener::id_valid`]). Notification ids of one
    /// filter are consecutive, so this finds the one a dead supervisor was answering (and the
    /// next few, should it have died between receiving and recording). Returns how many.
    pub fn answer_abandoned(&self, first: u64, span: u64, errno: Errno) -> usize {
        (first..first.saturating_add(span))
            .filter(|&id| matches!(self.id_valid(id), Ok(true)))
            .filter(|&id| self.respond(id, Response::Error(errno)).is_ok())
            .count()
    }

    /// A second handle on the same listener (`dup`).
    pub fn try_clone(&self) -> Result<Self> {
        self.0.try_clone().map(Self).map_err(|e| {
            SysError::new(
                "dup listener",
                Errno::from_io_error(&e).unwrap_or(Errno::BADF),
            )
        })
    }
}
