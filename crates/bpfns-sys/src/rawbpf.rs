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

fn last_errno() -> Errno {
    Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_attr_is_refused_locally() {
        let mut big = vec![0u8; ATTR_MAX + 1];
        assert_eq!(sys_bpf(12, &mut big), Err(Errno::TOOBIG));
    }
}
