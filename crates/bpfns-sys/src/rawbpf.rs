//! bpf() with a caller-supplied `union bpf_attr`, as raw bytes.
//!
//! The supervisor performs trapped commands on a member's behalf with (a sanitised copy of) the
//! member's own attr, so that the kernel keeps validating every field it knows about.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::io::Errno;

/// `sizeof(union bpf_attr)` as this build knows it (libbpf's copy of the UAPI header). The
/// supervisor reads at most this much of a caller's attr, like the kernel reads at most its own
/// `sizeof`.
pub const ATTR_SIZE: usize = std::mem::size_of::<libbpf_sys::bpf_attr>();

/// The kernel refuses attrs larger than a page (`bpf_check_uarg_tail_zero`: `E2BIG`).
pub const ATTR_MAX: usize = 4096;

const _: () = assert!(ATTR_SIZE >= 120 && ATTR_SIZE <= ATTR_MAX);

/// The bpf() system call number (x86-64, and the low bits of the x32 number).
pub const NR_BPF: i64 = libc::SYS_bpf;

/// `BPF_F_PATH_FD` (for `BPF_OBJ_GET` / `BPF_OBJ_PIN`).
pub const BPF_F_PATH_FD: u32 = libbpf_sys::BPF_F_PATH_FD;
/// `BPF_F_TOKEN_FD`.
pub const BPF_F_TOKEN_FD: u32 = libbpf_sys::BPF_F_TOKEN_FD;
/// `BPF_F_RDONLY`.
pub const BPF_F_RDONLY: u32 = libbpf_sys::BPF_F_RDONLY;
/// `BPF_F_WRONLY`.
pub const BPF_F_WRONLY: u32 = libbpf_sys::BPF_F_WRONLY;
/// `BPF_OBJ_GET`.
pub const BPF_OBJ_GET: u32 = libbpf_sys::BPF_OBJ_GET;

use crate::errno::last as last_errno;

/// `bpf(cmd, attr, attr.len())`: the kernel reads (and may write) `attr`. Returns the call's
/// value (often a new fd: see [`sys_bpf_fd`]).
pub fn sys_bpf(cmd: u32, attr: &mut [u8]) -> Result<i64, Errno> {
    if attr.len() > ATTR_MAX {
        return Err(Errno::TOOBIG);
    }
    // An empty slice still has a valid (dangling, never dereferenced) pointer; the kernel
    // reads 0 bytes from it.
    // SAFETY: `attr` is valid and writable for `attr.len()` bytes, which is what the kernel
    // may access; any embedded pointers are the caller's business (they name memory of this
    // process or are rejected by the kernel with EFAULT).
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

/// [`sys_bpf`] for commands that return a new file descriptor.
pub fn sys_bpf_fd(cmd: u32, attr: &mut [u8]) -> Result<OwnedFd, Errno> {
    let r = sys_bpf(cmd, attr)?;
    let fd = i32::try_from(r).map_err(|_| Errno::INVAL)?;
    // SAFETY: the kernel returned a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `BPF_OBJ_GET` of `name` relative to directory `dir` (`BPF_F_PATH_FD`, Linux 6.5), with
/// `file_flags` (`BPF_F_RDONLY`/`BPF_F_WRONLY`). The kernel checks the final file's
/// permission bits against the calling thread's credentials.
pub fn obj_get_at(dir: BorrowedFd<'_>, name: &CStr, file_flags: u32) -> Result<OwnedFd, Errno> {
    let mut attr = [0u8; 20];
    attr[0..8].copy_from_slice(&(name.as_ptr() as u64).to_ne_bytes());
    attr[12..16].copy_from_slice(&(file_flags | BPF_F_PATH_FD).to_ne_bytes());
    attr[16..20].copy_from_slice(&dir.as_raw_fd().to_ne_bytes());
    // `name` outlives the call, and the attr only points at it.
    sys_bpf_fd(BPF_OBJ_GET, &mut attr)
}

/// `BPF_OBJ_GET` of `name`, relative to the working directory (no `BPF_F_PATH_FD`, which
/// Linux 6.5 added): what [`obj_get_at`] falls back to on older kernels.
pub fn obj_get_relative(name: &CStr, file_flags: u32) -> Result<OwnedFd, Errno> {
    let mut attr = [0u8; 16];
    attr[0..8].copy_from_slice(&(name.as_ptr() as u64).to_ne_bytes());
    attr[12..16].copy_from_slice(&file_flags.to_ne_bytes());
    // `name` outlives the call, and the attr only points at it.
    sys_bpf_fd(BPF_OBJ_GET, &mut attr)
}

/// bpf() command numbers (`enum bpf_cmd`, libbpf's copy of the UAPI).
pub mod cmd {
    pub use libbpf_sys::{
        BPF_BTF_GET_FD_BY_ID, BPF_BTF_GET_NEXT_ID, BPF_BTF_LOAD, BPF_LINK_CREATE, BPF_LINK_DETACH,
        BPF_LINK_GET_FD_BY_ID, BPF_LINK_GET_NEXT_ID, BPF_LINK_UPDATE, BPF_MAP_CREATE,
        BPF_MAP_GET_FD_BY_ID, BPF_MAP_GET_NEXT_ID, BPF_OBJ_GET, BPF_PROG_ATTACH, BPF_PROG_DETACH,
        BPF_PROG_GET_FD_BY_ID, BPF_PROG_GET_NEXT_ID, BPF_PROG_LOAD, BPF_PROG_QUERY,
        BPF_TASK_FD_QUERY,
    };
}

/// Numbers of the BPF UAPI (`include/uapi/linux/bpf.h`, libbpf's copy): program types,
/// attach types and attach/query flags, for the code that reads callers' attrs.
pub mod uapi {
    pub use libbpf_sys::{
        BPF_CGROUP_DEVICE, BPF_CGROUP_GETSOCKOPT, BPF_CGROUP_INET4_BIND, BPF_CGROUP_INET4_CONNECT,
        BPF_CGROUP_INET4_GETPEERNAME, BPF_CGROUP_INET4_GETSOCKNAME, BPF_CGROUP_INET4_POST_BIND,
        BPF_CGROUP_INET6_BIND, BPF_CGROUP_INET6_CONNECT, BPF_CGROUP_INET6_GETPEERNAME,
        BPF_CGROUP_INET6_GETSOCKNAME, BPF_CGROUP_INET6_POST_BIND, BPF_CGROUP_INET_EGRESS,
        BPF_CGROUP_INET_INGRESS, BPF_CGROUP_INET_SOCK_CREATE, BPF_CGROUP_INET_SOCK_RELEASE,
        BPF_CGROUP_SETSOCKOPT, BPF_CGROUP_SOCK_OPS, BPF_CGROUP_SYSCTL, BPF_CGROUP_UDP4_RECVMSG,
        BPF_CGROUP_UDP4_SENDMSG, BPF_CGROUP_UDP6_RECVMSG, BPF_CGROUP_UDP6_SENDMSG,
        BPF_CGROUP_UNIX_CONNECT, BPF_CGROUP_UNIX_GETPEERNAME, BPF_CGROUP_UNIX_GETSOCKNAME,
        BPF_CGROUP_UNIX_RECVMSG, BPF_CGROUP_UNIX_SENDMSG, BPF_FLOW_DISSECTOR, BPF_F_AFTER,
        BPF_F_ALLOW_MULTI, BPF_F_ALLOW_OVERRIDE, BPF_F_BEFORE, BPF_F_ID, BPF_F_LINK, BPF_F_REPLACE,
        BPF_LIRC_MODE2, BPF_LSM_CGROUP, BPF_NETKIT_PEER, BPF_NETKIT_PRIMARY, BPF_PROG_TYPE_EXT,
        BPF_PROG_TYPE_KPROBE, BPF_PROG_TYPE_LSM, BPF_PROG_TYPE_PERF_EVENT,
        BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE,
        BPF_PROG_TYPE_STRUCT_OPS, BPF_PROG_TYPE_SYSCALL, BPF_PROG_TYPE_TRACEPOINT,
        BPF_PROG_TYPE_TRACING, BPF_SK_MSG_VERDICT, BPF_SK_SKB_STREAM_PARSER,
        BPF_SK_SKB_STREAM_VERDICT, BPF_SK_SKB_VERDICT, BPF_TCX_EGRESS, BPF_TCX_INGRESS,
    };
    pub use libbpf_sys::{
        BPF_F_VTYPE_BTF_OBJ_FD, BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_MAP_TYPE_HASH_OF_MAPS,
    };
    pub use libbpf_sys::{
        BPF_PROG_TYPE_CGROUP_DEVICE, BPF_PROG_TYPE_CGROUP_SKB, BPF_PROG_TYPE_CGROUP_SOCK,
        BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_PROG_TYPE_CGROUP_SYSCTL,
        BPF_PROG_TYPE_FLOW_DISSECTOR, BPF_PROG_TYPE_LWT_IN, BPF_PROG_TYPE_LWT_OUT,
        BPF_PROG_TYPE_LWT_SEG6LOCAL, BPF_PROG_TYPE_LWT_XMIT, BPF_PROG_TYPE_NETFILTER,
        BPF_PROG_TYPE_SCHED_ACT, BPF_PROG_TYPE_SCHED_CLS, BPF_PROG_TYPE_SK_MSG,
        BPF_PROG_TYPE_SK_REUSEPORT, BPF_PROG_TYPE_SK_SKB, BPF_PROG_TYPE_SOCKET_FILTER,
        BPF_PROG_TYPE_SOCK_OPS, BPF_PROG_TYPE_XDP, BPF_PSEUDO_BTF_ID, BPF_PSEUDO_FUNC,
        BPF_PSEUDO_KFUNC_CALL, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE,
        BPF_PSEUDO_MAP_VALUE, BPF_SK_REUSEPORT_SELECT,
    };
}

/// `BPF_TRACE_MAX_PROGS`: at most this many programs on one tracepoint, and the largest
/// `ids_len` `PERF_EVENT_IOC_QUERY_BPF` accepts.
pub const BPF_TRACE_MAX_PROGS: u32 = 64;

/// `ioctl(perf_event_fd, PERF_EVENT_IOC_QUERY_BPF)`: the ids of the programs attached to the
/// tracepoint of the perf event behind `fd` (at most [`BPF_TRACE_MAX_PROGS`]), as the calling
/// thread may see them (the kernel wants `CAP_PERFMON` or `CAP_SYS_ADMIN`). `fd` must be a
/// perf event: the request means something else to other files.
pub fn perf_query_bpf(fd: BorrowedFd<'_>) -> Result<Vec<u32>, Errno> {
    const QUERY_BPF: libc::c_ulong = 0xC008_240A;
    const N: usize = BPF_TRACE_MAX_PROGS as usize;
    // struct perf_event_query_bpf { u32 ids_len; u32 prog_cnt; u32 ids[]; }
    let mut buf = [0u32; 2 + N];
    buf[0] = BPF_TRACE_MAX_PROGS;
    // SAFETY: `buf` is a writable perf_event_query_bpf with room for `ids_len` ids, which is
    // all the kernel reads or writes.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), QUERY_BPF as _, buf.as_mut_ptr()) };
    if r < 0 {
        return Err(last_errno());
    }
    let cnt = (buf[1] as usize).min(N);
    Ok(buf[2..2 + cnt].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_attr_is_refused_locally() {
        let mut big = vec![0u8; ATTR_MAX + 1];
        assert_eq!(sys_bpf(12, &mut big), Err(Errno::TOOBIG));
    }
}
