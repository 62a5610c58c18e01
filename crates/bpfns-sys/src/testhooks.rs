//! Things only tests do: reach bpf() through the 32-bit entry points, count signals, probe
//! what a program fd may dump, chroot. Used by `bpfns-test-helper`.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::io::Errno;

use crate::{Result, SysError};

use crate::errno::last as last_errno;

pub use crate::member_filter::NR_IA32_BPF;
use crate::seccomp::X32_SYSCALL_BIT;

/// bpf(cmd, attr, len) through the x32 entry point (`syscall` with `321 | __X32_SYSCALL_BIT`).
/// Kernels without `CONFIG_X86_X32_ABI` answer `ENOSYS`; the bpfns filter answers `EPERM`
/// first.
#[cfg(target_arch = "x86_64")]
pub fn bpf_via_x32(cmd: u32, attr: &mut [u8]) -> Result<i64, Errno> {
    // SAFETY: `attr` is valid and writable for its length; an x32 call of bpf() reads/writes at
    // most that many bytes there (or fails).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf | i64::from(X32_SYSCALL_BIT),
            cmd as libc::c_long,
            attr.as_mut_ptr(),
            attr.len() as libc::c_long,
        )
    };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r)
    }
}

/// bpf(cmd, attr, len) through the ia32 entry point (`int 0x80`, eax = 357). The attr is
/// copied to memory below 4 GiB (32-bit pointers) and back. Kernels without
/// `CONFIG_IA32_EMULATION` (or with it disabled) answer `ENOSYS`.
#[cfg(target_arch = "x86_64")]
pub fn bpf_via_int80(cmd: u32, attr: &mut [u8]) -> Result<i64, Errno> {
    const PAGE: usize = 4096;
    if attr.len() > PAGE {
        return Err(Errno::TOOBIG);
    }
    // SAFETY: an anonymous private mapping; checked for failure below.
    let low = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    if low == libc::MAP_FAILED {
        return Err(last_errno());
    }
    let low = low.cast::<u8>();
    // SAFETY: `low` is a fresh mapping of PAGE bytes and `attr.len() <= PAGE`.
    unsafe { std::ptr::copy_nonoverlapping(attr.as_ptr(), low, attr.len()) };
    let ptr32 = low as usize as u32;
    let ret: i32;
    // SAFETY: `int 0x80` enters the ia32 system call path with eax = nr, ebx/ecx/edx = args;
    // the kernel accesses at most `attr.len()` bytes at `ptr32`, inside the mapping above.
    // rbx is reserved by LLVM, so the first argument is swapped into it around the trap. On
    // 64-bit kernels `int 0x80` may clobber r8–r11.
    unsafe {
        std::arch::asm!(
            "xchg {b:r}, rbx",
            "int 0x80",
            "xchg {b:r}, rbx",
            b = inout(reg) u64::from(cmd) => _,
            inlateout("eax") NR_IA32_BPF => ret,
            in("ecx") ptr32,
            in("edx") attr.len() as u32,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
        );
    }
    // SAFETY: as above; then the mapping is released.
    unsafe {
        std::ptr::copy_nonoverlapping(low, attr.as_mut_ptr(), attr.len());
        libc::munmap(low.cast(), PAGE);
    }
    if ret < 0 {
        Err(Errno::from_raw_os_error(-ret))
    } else {
        Ok(i64::from(ret))
    }
}

/// bpf(cmd, ptr, size) with an arbitrary pointer (NULL, unmapped, ...), to test how malformed
/// calls are answered. The kernel validates the pointer; nothing here dereferences it.
pub fn bpf_raw_ptr(cmd: u32, ptr: u64, size: u32) -> Result<i64, Errno> {
    // SAFETY: the kernel treats `ptr` as a user pointer and fails with EFAULT where it is not
    // readable; this process's memory is only touched where the caller meant it to be.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            ptr as usize as *mut libc::c_void,
            size as libc::c_long,
        )
    };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r)
    }
}

/// bpf(cmd, attr, attr.len()) with a full 64-bit `cmd`: the kernel uses its low 32 bits,
/// seccomp filters see all 64 (a filter comparing 64 bits is bypassed by setting high bits).
pub fn bpf_cmd64(cmd: u64, attr: &mut [u8]) -> Result<i64, Errno> {
    // SAFETY: `attr` is valid and writable for `attr.len()` bytes, all the kernel may access.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr.as_mut_ptr(),
            attr.len() as libc::c_long,
        )
    };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r)
    }
}

static SIGNALS: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
}

/// Install a counting handler for `sig`, with `SA_RESTART` (so that interrupted system calls
/// are restarted, as Go's runtime and most programs do).
pub fn count_signals(sig: i32) -> Result<()> {
    // SAFETY: an all-zero sigaction is valid; the handler only bumps an atomic, which is
    // async-signal-safe; the pointers are valid for the call.
    let r = unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as usize;
        act.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(sig, &act, std::ptr::null_mut())
    };
    if r != 0 {
        return Err(SysError::new(format!("sigaction {sig}"), last_errno()));
    }
    Ok(())
}

/// How many signals the handler of [`count_signals`] has counted.
pub fn signals_counted() -> u64 {
    SIGNALS.load(Ordering::Relaxed)
}

/// Send signal `sig` to process `pid`.
pub fn kill(pid: i32, sig: i32) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// What `BPF_OBJ_GET_INFO_BY_FD` lets the holder of a program fd dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgDump {
    pub id: u32,
    /// Length of the JIT image (reported even when it may not be dumped, if the caller is
    /// `bpf_capable`).
    pub jited_prog_len: u32,
    pub xlated_prog_len: u32,
    /// Whether the kernel copied the JIT image into our buffer.
    pub jited_copied: bool,
    /// Whether it copied the translated instructions.
    pub xlated_copied: bool,
    /// Whether it copied the kernel addresses of the program's functions.
    pub ksyms_copied: bool,
}

/// Ask for the JIT image, translated instructions and ksym addresses of the program behind
/// `fd`, and report which of them the kernel handed over (it decides with
/// `bpf_dump_raw_ok(file->f_cred)`: the credentials of whoever *opened* the fd).
pub fn prog_dump_probe(fd: impl AsFd) -> Result<ProgDump> {
    let mut jited = vec![0u8; 1 << 16];
    let mut xlated = vec![0u8; 1 << 16];
    let mut ksyms = [0u64; 64];
    // SAFETY: bindgen struct of integers; all-zero is valid.
    let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    info.jited_prog_len = jited.len() as u32;
    info.jited_prog_insns = jited.as_mut_ptr() as u64;
    info.xlated_prog_len = xlated.len() as u32;
    info.xlated_prog_insns = xlated.as_mut_ptr() as u64;
    info.nr_jited_ksyms = ksyms.len() as u32;
    info.jited_ksyms = ksyms.as_mut_ptr() as u64;
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: `info` and the buffers it points to are writable for the lengths given.
    let r = unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(
            fd.as_fd().as_raw_fd(),
            (&mut info as *mut libbpf_sys::bpf_prog_info).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(SysError::new(
            "BPF_OBJ_GET_INFO_BY_FD (prog dump probe)",
            Errno::from_raw_os_error(-r),
        ));
    }
    Ok(ProgDump {
        id: info.id,
        jited_prog_len: info.jited_prog_len,
        xlated_prog_len: info.xlated_prog_len,
        jited_copied: info.jited_prog_insns != 0 && jited.iter().any(|&b| b != 0),
        xlated_copied: info.xlated_prog_insns != 0 && xlated.iter().any(|&b| b != 0),
        ksyms_copied: info.jited_ksyms != 0 && ksyms.iter().any(|&a| a != 0),
    })
}

/// A perf event on tracepoint `tp_id` for the calling process, with no program: the handle
/// `PERF_EVENT_IOC_QUERY_BPF` asks about the tracepoint's programs through.
pub fn perf_tracepoint_open(tp_id: u64) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&2u32.to_ne_bytes()); // PERF_TYPE_TRACEPOINT
    attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&tp_id.to_ne_bytes());
    attr[16..24].copy_from_slice(&1u64.to_ne_bytes());
    // SAFETY: `attr` is a valid perf_event_attr of the size it announces; pid 0 / cpu -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            0 as libc::pid_t,
            -1 as libc::c_int,
            -1 as libc::c_int,
            8 as libc::c_ulong, // PERF_FLAG_FD_CLOEXEC
        )
    };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: a new fd from the kernel that nobody else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Send fd number `fd` over the Unix socket `sock` with one byte (`SCM_RIGHTS`), whether or
/// not this process has such an fd (the kernel answers `EBADF` if not).
pub fn send_fd_number(sock: impl AsFd, fd: i32) -> Result<(), Errno> {
    let byte = [b'f'];
    let mut iov = libc::iovec {
        iov_base: byte.as_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    // CMSG_SPACE(sizeof(int)) on x86-64: 16-byte header + 4, aligned to 8.
    let mut control = [0u64; 3];
    // SAFETY: a zeroed msghdr, filled with pointers valid for the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: `msg` has a control buffer of CMSG_SPACE(sizeof(int)) bytes.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<i32>(), fd);
    }
    // SAFETY: `msg` and what it points to are valid for the call.
    let r = unsafe { libc::sendmsg(sock.as_fd().as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// `IFLA_XDP` and its nested attributes, `XDP_FLAGS_SKB_MODE` (include/uapi/linux/if_link.h).
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const NLA_F_NESTED: u16 = 1 << 15;
/// `XDP_FLAGS_SKB_MODE`: generic XDP, which every device has.
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;

fn nl_attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// One rtnetlink request about interface `ifindex` (`ifinfomsg` + `attrs`); the reply's
/// bytes (an error reply becomes the errno).
fn rtnl(ty: u16, flags: u16, ifindex: i32, attrs: &[u8]) -> Result<Vec<u8>, Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain integer arguments; the new fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: a new fd from the kernel that nobody else owns.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let mut msg = Vec::new();
    let total = 16 + 16 + attrs.len();
    msg.extend_from_slice(&(total as u32).to_ne_bytes());
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
                                                // struct ifinfomsg: family, pad, type, index, flags, change
    msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    msg.extend_from_slice(&ifindex.to_ne_bytes());
    msg.extend_from_slice(&[0u8; 8]);
    msg.extend_from_slice(attrs);
    // SAFETY: a zeroed sockaddr_nl addressed to the kernel (pid 0).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: `msg` and `kernel` are valid for their lengths during the call.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(last_errno());
    }
    let mut buf = vec![0u8; 1 << 16];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(last_errno());
    }
    buf.truncate(n as usize);
    if buf.len() >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
        let e = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if e < 0 {
            return Err(Errno::from_raw_os_error(-e));
        }
    }
    Ok(buf)
}

/// Attach program `fd` as generic XDP on interface `ifindex` through netlink (`-1`:
/// remove whatever is attached), as `ip link set dev DEV xdpgeneric obj|off` does.
pub fn xdp_set_netlink(ifindex: i32, fd: i32) -> Result<(), Errno> {
    let mut nested = Vec::new();
    nl_attr(&mut nested, IFLA_XDP_FD, &fd.to_ne_bytes());
    nl_attr(
        &mut nested,
        IFLA_XDP_FLAGS,
        &XDP_FLAGS_SKB_MODE.to_ne_bytes(),
    );
    let mut attrs = Vec::new();
    nl_attr(&mut attrs, IFLA_XDP | NLA_F_NESTED, &nested);
    rtnl(RTM_SETLINK, NLM_F_ACK, ifindex, &attrs).map(|_| ())
}

/// The id of the XDP program attached to interface `ifindex` (0: none), from netlink's
/// `RTM_GETLINK` (`IFLA_XDP_PROG_ID`), as `ip link show` prints it.
pub fn xdp_prog_id_netlink(ifindex: i32) -> Result<u32, Errno> {
    let reply = rtnl(RTM_GETLINK, 0, ifindex, &[])?;
    if reply.len() < 32 || u16::from_ne_bytes([reply[4], reply[5]]) != RTM_NEWLINK {
        return Err(Errno::PROTO);
    }
    let len =
        (u32::from_ne_bytes([reply[0], reply[1], reply[2], reply[3]]) as usize).min(reply.len());
    let attrs = |mut at: usize, end: usize, want: u16| -> Option<(usize, usize)> {
        while at + 4 <= end {
            let l = u16::from_ne_bytes([reply[at], reply[at + 1]]) as usize;
            let t = u16::from_ne_bytes([reply[at + 2], reply[at + 3]]) & !NLA_F_NESTED;
            if l < 4 || at + l > end {
                return None;
            }
            if t == want {
                return Some((at + 4, at + l));
            }
            at += (l + 3) & !3;
        }
        None
    };
    let Some((xs, xe)) = attrs(32, len, IFLA_XDP) else {
        return Ok(0);
    };
    Ok(match attrs(xs, xe, IFLA_XDP_PROG_ID) {
        Some((p, e)) if e - p >= 4 => {
            u32::from_ne_bytes([reply[p], reply[p + 1], reply[p + 2], reply[p + 3]])
        }
        _ => 0,
    })
}

/// A perf event on tracepoint `tp_id` (from `/sys/kernel/tracing/events/.../id`) for the
/// calling process, with program `prog` attached (`PERF_EVENT_IOC_SET_BPF`): what
/// `bpftool perf show` lists, through `BPF_TASK_FD_QUERY`.
pub fn perf_tracepoint_with_prog(tp_id: u64, prog: impl AsFd) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // struct perf_event_attr, zero-extended: type, size, config, sample_period.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&2u32.to_ne_bytes()); // PERF_TYPE_TRACEPOINT
    attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&tp_id.to_ne_bytes());
    attr[16..24].copy_from_slice(&1u64.to_ne_bytes());
    // SAFETY: `attr` is a valid perf_event_attr of the size it announces; pid 0 / cpu -1:
    // this process on any CPU; no group.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            0 as libc::pid_t,
            -1 as libc::c_int,
            -1 as libc::c_int,
            8 as libc::c_ulong, // PERF_FLAG_FD_CLOEXEC
        )
    };
    if fd < 0 {
        return Err(SysError::new("perf_event_open", last_errno()));
    }
    // SAFETY: a new fd from the kernel that nobody else owns.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
    // PERF_EVENT_IOC_SET_BPF = _IOW('$', 8, __u32)
    let req: libc::c_ulong = 0x4004_2408;
    // SAFETY: the ioctl takes the program fd by value.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, prog.as_fd().as_raw_fd()) };
    if r < 0 {
        return Err(SysError::new("PERF_EVENT_IOC_SET_BPF", last_errno()));
    }
    Ok(fd)
}

/// `chroot(dir)` then `chdir("/")`, for the whole (single-threaded) process.
pub fn chroot_process(dir: &Path) -> Result<()> {
    rustix::process::chroot(dir)
        .map_err(|e| SysError::new(format!("chroot {}", dir.display()), e))?;
    rustix::process::chdir("/").map_err(|e| SysError::new("chdir /", e))
}

// ---- red-team suite (`bpfns-tests/tests/redteam.rs`, `helper/redteam.rs`) ------------------

/// `unshare(flags)` for the calling (single-threaded) process: a new user namespace
/// (`CLONE_NEWUSER`), mount namespace (`CLONE_NEWNS`), ...
pub fn unshare(flags: i32) -> Result<(), Errno> {
    // SAFETY: unsharing namespaces affects only the calling thread's own view; the red-team
    // helper calls it while single-threaded, before it starts any thread.
    unsafe {
        rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::from_bits_retain(flags as u32))
    }
}

/// `fsopen("bpf")`: a bpffs filesystem context, created in the caller's user namespace.
pub fn fsopen_bpffs() -> Result<std::os::fd::OwnedFd, Errno> {
    rustix::mount::fsopen("bpf", rustix::mount::FsOpenFlags::FSOPEN_CLOEXEC)
}

/// `fsopen(fstype)`: a filesystem context of type `fstype`, created in the caller's user
/// namespace.
pub fn fsopen(fstype: &str) -> Result<std::os::fd::OwnedFd, Errno> {
    rustix::mount::fsopen(fstype, rustix::mount::FsOpenFlags::FSOPEN_CLOEXEC)
}

/// `setns(fd, nstype)` for the calling (single-threaded) process, `nstype` one of
/// `CLONE_NEWUSER`, `CLONE_NEWCGROUP`, `CLONE_NEWNS` or 0 (any kind).
pub fn setns(fd: impl AsFd, nstype: i32) -> Result<(), Errno> {
    use rustix::thread::LinkNameSpaceType as T;
    let kind = match nstype {
        0 => None,
        libc::CLONE_NEWUSER => Some(T::User),
        libc::CLONE_NEWCGROUP => Some(T::ControlGroup),
        libc::CLONE_NEWNS => Some(T::Mount),
        _ => return Err(Errno::INVAL),
    };
    rustix::thread::move_into_link_name_space(fd.as_fd(), kind)
}

/// `fsconfig(fs, FSCONFIG_SET_STRING, key, value)`.
pub fn fsconfig_string(fs: impl AsFd, key: &str, value: &str) -> Result<(), Errno> {
    rustix::mount::fsconfig_set_string(fs, key, value)
}

/// `fsconfig(fs, FSCONFIG_CMD_CREATE)`.
pub fn fsconfig_create(fs: impl AsFd) -> Result<(), Errno> {
    rustix::mount::fsconfig_create(fs)
}

/// `fsmount(fs)`: a detached mount of a created context.
pub fn fsmount(fs: impl AsFd) -> Result<std::os::fd::OwnedFd, Errno> {
    rustix::mount::fsmount(
        fs,
        rustix::mount::FsMountFlags::FSMOUNT_CLOEXEC,
        rustix::mount::MountAttrFlags::empty(),
    )
}

/// `openat(dir, ".", O_RDONLY | O_DIRECTORY)`: a real (not `O_PATH`) fd on a directory such
/// as a detached mount's root.
pub fn reopen_dir(dir: impl AsFd) -> Result<std::os::fd::OwnedFd, Errno> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// `mount(src, target, fstype, flags)` with no data.
pub fn mount(src: &Path, target: &Path, fstype: &str, flags: u64) -> Result<(), Errno> {
    rustix::mount::mount(
        src,
        target,
        fstype,
        rustix::mount::MountFlags::from_bits_retain(flags as _),
        None,
    )
}

/// `umount2(target, MNT_DETACH)`.
pub fn umount_detach(target: &Path) -> Result<(), Errno> {
    rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH)
}

/// `ptrace(PTRACE_SEIZE, pid)`: become `pid`'s tracer without stopping it. Exiting (or
/// `PTRACE_DETACH`) lets it go.
pub fn ptrace_seize(pid: i32) -> Result<(), Errno> {
    // SAFETY: PTRACE_SEIZE takes integer arguments only (addr and data are ignored/zero).
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            pid as libc::pid_t,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// Set the soft `RLIMIT_NOFILE` to `soft` (the hard limit stays).
pub fn set_nofile_soft_limit(soft: u64) -> Result<(), Errno> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(soft),
            maximum: cur.maximum,
        },
    )
}

/// Clear `FD_CLOEXEC` on `fd`, so that it survives `execve` (a victim process keeps its object
/// across a privilege drop).
pub fn clear_cloexec(fd: impl AsFd) -> Result<(), Errno> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())
}

/// bpf(cmd, ptr, size) for a command that returns a new fd, with the attr at an arbitrary
/// address (e.g. memory another thread rewrites while the call is trapped).
pub fn bpf_fd_raw_ptr(cmd: u32, ptr: u64, size: u32) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    let fd = bpf_raw_ptr(cmd, ptr, size)?;
    let fd = i32::try_from(fd).map_err(|_| Errno::INVAL)?;
    // SAFETY: the kernel (or the supervisor's ADDFD) returned a new descriptor that nobody
    // else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// `dup2(old, new)` on raw descriptor numbers: another thread may be using `new` (the point
/// of the races the tests run). Errors are returned, not retried.
pub fn dup2_raw(old: std::os::fd::RawFd, new: std::os::fd::RawFd) -> Result<(), Errno> {
    // SAFETY: dup2 only changes the descriptor table; no memory is passed. Whatever `new` was
    // is closed by the kernel, which is what the caller asks for.
    let r = unsafe { libc::dup2(old, new) };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// A new descriptor (close-on-exec) for the file at raw number `fd`, e.g. one inherited on
/// purpose from a parent that passed its number: `fcntl(fd, F_DUPFD_CLOEXEC)`.
pub fn dup_raw(fd: std::os::fd::RawFd) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_DUPFD_CLOEXEC only adds a descriptor to the table; no memory is passed.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if r < 0 {
        return Err(last_errno());
    }
    // SAFETY: the kernel just returned this new descriptor, which nobody else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(r) })
}

/// `close(fd)` on a raw descriptor number that no `OwnedFd` owns (see [`dup2_raw`]).
pub fn close_raw(fd: std::os::fd::RawFd) -> Result<(), Errno> {
    // SAFETY: the caller owns `fd` by number only (no Rust object refers to it).
    let r = unsafe { libc::close(fd) };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Unfiltered: x32 is compiled out here (ENOSYS) or works; int 0x80 reaches bpf() (any
    /// answer but ENOSYS when IA32 emulation is on). Neither may crash.
    #[test]
    fn entry_points_do_not_crash() {
        let mut attr = [0u8; 16];
        let _ = bpf_via_x32(12, &mut attr);
        let _ = bpf_via_int80(12, &mut attr);
        let _ = bpf_via_int80(12, &mut []);
    }
}

/// Hold `dir`'s inode lock (shared) until the process exits: a thread's `getdents64` on it
/// copies into a page that faults into a userfaultfd nobody serves, so whoever needs the lock
/// exclusively (a mkdir, a pin, an unlink in `dir`) waits. Kernel-mode faults into a
/// userfaultfd need `CAP_SYS_PTRACE` or `vm.unprivileged_userfaultfd = 1`: others get
/// `EPERM` here.
pub fn hold_dir_lock(dir: &Path) -> Result<(), Errno> {
    // <linux/userfaultfd.h>
    const UFFD_API: u64 = 0xaa;
    const UFFDIO_API: libc::c_ulong = 0xc018_aa3f; // _IOWR(0xaa, 0x3f, struct uffdio_api)
    const UFFDIO_REGISTER: libc::c_ulong = 0xc020_aa00; // _IOWR(0xaa, 0x00, struct uffdio_register)
    const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
    const PAGE: usize = 4096;
    // SAFETY: userfaultfd(2) takes flags only; the fd it returns is owned here.
    let uffd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) };
    if uffd < 0 {
        return Err(last_errno());
    }
    let uffd = uffd as i32;
    let mut api = [UFFD_API, 0, 0];
    // SAFETY: UFFDIO_API reads and writes a `struct uffdio_api` (three u64s).
    if unsafe { libc::ioctl(uffd, UFFDIO_API as _, api.as_mut_ptr()) } < 0 {
        return Err(last_errno());
    }
    // SAFETY: a fresh private anonymous mapping, never unmapped: the blocked thread keeps
    // faulting on it until the process exits.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err(last_errno());
    }
    let mut reg = [page as u64, PAGE as u64, UFFDIO_REGISTER_MODE_MISSING, 0];
    // SAFETY: UFFDIO_REGISTER reads and writes a `struct uffdio_register` (four u64s).
    if unsafe { libc::ioctl(uffd, UFFDIO_REGISTER as _, reg.as_mut_ptr()) } < 0 {
        return Err(last_errno());
    }
    let dfd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let (page, dfd) = (page as usize, std::mem::ManuallyDrop::new(dfd));
    let raw = dfd.as_raw_fd();
    std::thread::spawn(move || {
        // SAFETY: getdents64 writes at most PAGE bytes into the registered page.
        unsafe { libc::syscall(libc::SYS_getdents64, raw, page as *mut libc::c_void, PAGE) };
    });
    // Let the thread reach the fault (it then sleeps with the lock held).
    std::thread::sleep(std::time::Duration::from_millis(300));
    Ok(())
}

/// `renameat2(dir, a, dir, b, RENAME_EXCHANGE)`: swap two entries of one directory atomically
/// (whatever each is: a directory and a symbolic link, say).
pub fn rename_exchange_at(dir: impl AsFd, a: &Path, b: &Path) -> Result<(), Errno> {
    rustix::fs::renameat_with(&dir, a, &dir, b, rustix::fs::RenameFlags::EXCHANGE)
}

/// `mkdirat(dir, name, 0755)`.
pub fn mkdir_at(dir: impl AsFd, name: &Path) -> Result<(), Errno> {
    rustix::fs::mkdirat(dir, name, rustix::fs::Mode::from_raw_mode(0o755))
}

/// `symlinkat(target, dir, name)`.
pub fn symlink_at(target: &Path, dir: impl AsFd, name: &Path) -> Result<(), Errno> {
    rustix::fs::symlinkat(target, dir, name)
}

/// An inotify instance watching `path` (a directory: it reports opens of itself and of what
/// is in it) for `IN_OPEN`.
pub fn watch_opens(path: &Path) -> Result<std::os::fd::OwnedFd, Errno> {
    use rustix::fs::inotify;
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC)?;
    inotify::add_watch(&fd, path, inotify::WatchFlags::OPEN)?;
    Ok(fd)
}

/// Wait at most `timeout` for an event of an inotify instance ([`watch_opens`]); whether one
/// came (it is consumed).
pub fn wait_inotify(fd: impl AsFd, timeout: std::time::Duration) -> Result<bool, Errno> {
    match crate::fds::poll_any(&[fd.as_fd()], Some(timeout)) {
        Ok(None) => Ok(false),
        Ok(Some(_)) => {
            let mut buf = [0u8; 4096];
            rustix::io::read(&fd, &mut buf)?;
            Ok(true)
        }
        Err(e) => Err(e.errno),
    }
}

/// Clear `fd`'s close-on-exec flag: a descriptor a careless caller lets a child inherit.
pub fn set_inheritable(fd: std::os::fd::BorrowedFd<'_>) -> Result<(), Errno> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())
}

/// Send `bytes` on `sock` from a new process that has pid `pid` (`clone3` with `set_tid`,
/// which needs `pid` free and `CAP_SYS_ADMIN` over the pid namespace): a process that reused
/// a dead process's pid. Returns once that process has exited; `EEXIST` if `pid` is taken.
pub fn send_as_pid(pid: i32, sock: std::os::fd::BorrowedFd<'_>, bytes: &[u8]) -> Result<(), Errno> {
    use crate::process::CloneArgs;
    let tid = [pid];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tid.as_ptr() as u64,
        set_tid_size: 1,
        ..Default::default()
    };
    let raw = sock.as_raw_fd();
    // SAFETY: like fork(): the child runs on a copy of this thread's stack and only makes
    // async-signal-safe calls (send, _exit) on memory prepared before the clone.
    let child = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if child < 0 {
        return Err(last_errno());
    }
    if child == 0 {
        // SAFETY: `bytes` is readable for its length; then the child ends.
        unsafe {
            let n = libc::send(raw, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL);
            libc::_exit(if n == bytes.len() as isize { 0 } else { 1 });
        }
    }
    let mut status = 0;
    // SAFETY: waiting for the child made above.
    unsafe { libc::waitpid(child as i32, &mut status, 0) };
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(Errno::IO)
    }
}

/// Send `bytes` on `sock` with `SCM_CREDENTIALS` naming `pid`, `uid` and `gid` (in the
/// sender's namespaces): the kernel lets a process name a pid other than its own when it has
/// `CAP_SYS_ADMIN` over its pid namespace's owner, and ids its user namespace maps.
pub fn send_with_credentials(
    sock: impl AsFd,
    bytes: &[u8],
    pid: i32,
    uid: u32,
    gid: u32,
) -> Result<(), Errno> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, UCred};
    let pid = rustix::process::Pid::from_raw(pid).ok_or(Errno::INVAL)?;
    let cred = UCred {
        pid,
        uid: rustix::process::Uid::from_raw(uid),
        gid: rustix::process::Gid::from_raw(gid),
    };
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    if !anc.push(SendAncillaryMessage::ScmCredentials(cred)) {
        return Err(Errno::INVAL);
    }
    let iov = [std::io::IoSlice::new(bytes)];
    rustix::net::sendmsg(sock, &iov, &mut anc, SendFlags::NOSIGNAL).map(drop)
}

/// Write `bytes` to `fd` from a forked child, which then exits; returns the child's pid once
/// it has been reaped. For tests of what a socket's reader learns about a writer that is not
/// the process that made the connection (an inherited descriptor).
pub fn write_from_child(fd: std::os::fd::BorrowedFd<'_>, bytes: &[u8]) -> Result<i32> {
    let raw = fd.as_raw_fd();
    // SAFETY: the child calls nothing but `write` and `_exit`, both async-signal-safe, so
    // forking is sound even from a multi-threaded process.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SysError::new("fork", last_errno()));
    }
    if pid == 0 {
        // SAFETY: `bytes` is valid for its length in the child's copy of the memory; `_exit`
        // ends the child without running anything copied from the parent.
        unsafe {
            libc::write(raw, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(0)
        }
    }
    crate::process::wait_child(pid)?;
    Ok(pid)
}

/// End the calling thread only (`SYS_exit`, not the process's `exit_group`): the process
/// goes on in its other threads; called from the main thread, its leader becomes a zombie
/// while they run.
pub fn exit_thread() -> ! {
    // SAFETY: SYS_exit takes a status and ends only this thread; nothing of it runs again.
    unsafe {
        libc::syscall(libc::SYS_exit, 0);
    }
    unreachable!("SYS_exit returned")
}
