//! Another task's memory: `process_vm_readv(2)` / `process_vm_writev(2)`.
//!
//! Used by the seccomp supervisor to read a trapped bpf() call's `union bpf_attr` (and the
//! strings and arrays it points to) from the caller, and to write the results back.
//!
//! Both calls address the task by *thread id*, so they race with the id being reused once the
//! task dies. The supervisor therefore checks `SECCOMP_IOCTL_NOTIF_ID_VALID` after every read
//! and before every write (see `seccomp_unotify(2)`): while the notification is valid, the
//! thread is blocked in the trapped call, alive, and the id still names it.
//!
//! Remote ranges are split at page boundaries, so a range that runs into an unmapped page is
//! read (or written) up to that page, and the short count tells where it stopped — the same
//! granularity at which the kernel's own `copy_from_user` fails.

use rustix::io::Errno;

const PAGE: u64 = 4096;
/// At most this many remote pieces per call (`UIO_MAXIOV` is 1024; stay well below).
const MAX_PIECES: usize = 64;

fn last_errno() -> Errno {
    Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// Split `[addr, addr+len)` into page-bounded `(addr, len)` pieces.
fn pieces(addr: u64, len: usize) -> Result<Vec<(u64, usize)>, Errno> {
    let mut out = Vec::new();
    let mut a = addr;
    let mut left = len as u64;
    while left > 0 {
        let room = PAGE - (a % PAGE);
        let n = room.min(left);
        out.push((a, n as usize));
        a = a.checked_add(n).ok_or(Errno::FAULT)?;
        left -= n;
        if out.len() > MAX_PIECES {
            return Err(Errno::TOOBIG);
        }
    }
    Ok(out)
}

fn remote_iovs(addr: u64, len: usize) -> Result<Vec<libc::iovec>, Errno> {
    Ok(pieces(addr, len)?
        .into_iter()
        .map(|(a, n)| libc::iovec {
            iov_base: a as usize as *mut libc::c_void,
            iov_len: n,
        })
        .collect())
}

/// Read up to `buf.len()` bytes at `addr` in task `tid`; returns how many bytes were read
/// before the first unreadable page (0 if the first byte is unreadable).
pub fn read(tid: i32, addr: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    if buf.is_empty() {
        return Ok(0);
    }
    let remote = remote_iovs(addr, buf.len())?;
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, writable for its length; the remote iovecs are only
    // addresses in the other process, which the kernel checks.
    let n = unsafe {
        libc::process_vm_readv(
            tid,
            &local,
            1,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    if n < 0 {
        let e = last_errno();
        // The first page was unreadable.
        if e == Errno::FAULT {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(n as usize)
}

/// Read exactly `buf.len()` bytes at `addr`; `EFAULT` if any of them is unreadable.
pub fn read_exact(tid: i32, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    if read(tid, addr, buf)? == buf.len() {
        Ok(())
    } else {
        Err(Errno::FAULT)
    }
}

/// Write all of `data` at `addr` in task `tid`; `EFAULT` if any of it is not writable.
pub fn write_all(tid: i32, addr: u64, data: &[u8]) -> Result<(), Errno> {
    if data.is_empty() {
        return Ok(());
    }
    let remote = remote_iovs(addr, data.len())?;
    let local = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: `local` describes `data`, which the kernel only reads; the remote iovecs are
    // addresses in the other process, checked by the kernel.
    let n = unsafe {
        libc::process_vm_writev(
            tid,
            &local,
            1,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    if n < 0 {
        return Err(last_errno());
    }
    if n as usize != data.len() {
        return Err(Errno::FAULT);
    }
    Ok(())
}

/// Read a NUL-terminated string at `addr`, without the NUL. `ENAMETOOLONG` if there is no
/// NUL within `max` bytes (like the kernel's `getname()` with `max` = `PATH_MAX`), `EFAULT`
/// if memory ends before the NUL.
pub fn read_cstring(tid: i32, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; max];
    let n = read(tid, addr, &mut buf)?;
    match buf[..n].iter().position(|&b| b == 0) {
        Some(end) => {
            buf.truncate(end);
            Ok(buf)
        }
        None if n == max => Err(Errno::NAMETOOLONG),
        None => Err(Errno::FAULT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> i32 {
        rustix::thread::gettid().as_raw_nonzero().get()
    }

    #[test]
    fn pieces_split_at_pages() {
        assert_eq!(pieces(4090, 10).unwrap(), vec![(4090, 6), (4096, 4)]);
        assert_eq!(pieces(0, 0).unwrap(), vec![]);
        assert_eq!(pieces(8192, 4096).unwrap(), vec![(8192, 4096)]);
        assert!(pieces(u64::MAX - 2, 10).is_err());
    }

    #[test]
    fn read_and_write_own_memory() {
        let src = *b"hello\0world";
        let mut dst = [0u8; 11];
        read_exact(me(), src.as_ptr() as u64, &mut dst).unwrap();
        assert_eq!(dst, src);
        let s = read_cstring(me(), src.as_ptr() as u64, 4096).unwrap();
        assert_eq!(s, b"hello");
        let mut target = [0u8; 4];
        write_all(me(), target.as_mut_ptr() as u64, &[1, 2, 3, 4]).unwrap();
        assert_eq!(std::hint::black_box(target), [1, 2, 3, 4]);
        assert_eq!(read_exact(me(), 8, &mut dst), Err(Errno::FAULT));
        assert_eq!(read_cstring(me(), 0, 16), Err(Errno::FAULT));
        let long = [b'a'; 32];
        assert_eq!(
            read_cstring(me(), long.as_ptr() as u64, 16),
            Err(Errno::NAMETOOLONG)
        );
    }
}
