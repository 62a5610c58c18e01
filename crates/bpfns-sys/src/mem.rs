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

use crate::errno::last as last_errno;

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

/// The most one [`read`] or [`write_all`] call moves ([`MAX_PIECES`] pages).
const CHUNK: u64 = MAX_PIECES as u64 * PAGE;

/// [`read_exact`] of any length: in page-aligned chunks of at most [`CHUNK`] bytes. `EFAULT`
/// if any byte is unreadable.
pub fn read_exact_large(tid: i32, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    let mut done = 0usize;
    while done < buf.len() {
        let at = addr.checked_add(done as u64).ok_or(Errno::FAULT)?;
        // Up to the next chunk boundary, so that every piece after the first is aligned.
        let room = (CHUNK - at % CHUNK) as usize;
        let n = room.min(buf.len() - done);
        read_exact(tid, at, &mut buf[done..done + n])?;
        done += n;
    }
    Ok(())
}

/// [`write_all`] of any length, in chunks as [`read_exact_large`] reads.
pub fn write_all_large(tid: i32, addr: u64, data: &[u8]) -> Result<(), Errno> {
    let mut done = 0usize;
    while done < data.len() {
        let at = addr.checked_add(done as u64).ok_or(Errno::FAULT)?;
        let room = (CHUNK - at % CHUNK) as usize;
        let n = room.min(data.len() - done);
        write_all(tid, at, &data[done..done + n])?;
        done += n;
    }
    Ok(())
}

/// Read a string of at most `max` bytes at `addr` as the kernel's `strncpy_from_user(dst,
/// addr, max)` does: up to its NUL (without it) or `max` bytes, whichever comes first;
/// `EFAULT` only if memory ends before either.
pub fn read_cstring_upto(tid: i32, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; max];
    let n = read(tid, addr, &mut buf)?;
    match buf[..n].iter().position(|&b| b == 0) {
        Some(end) => {
            buf.truncate(end);
            Ok(buf)
        }
        None if n == max => Ok(buf),
        None => Err(Errno::FAULT),
    }
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

/// A buffer of this process that ends exactly where an inaccessible page begins, and starts
/// after one: a read past either end faults (`EFAULT` when the kernel is the reader) instead
/// of reaching other memory of the process. For arrays the kernel indexes on its own (a
/// program load's `fd_array`, read at indexes taken from the instructions), so that an index
/// the supervisor did not foresee can never make the kernel read a number from elsewhere in
/// bpfnsd's memory.
pub struct GuardedBuf {
    map: *mut libc::c_void,
    map_len: usize,
    data: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone (no aliasing pointers are handed out except
// through `&mut self`), so moving it to another thread is sound.
unsafe impl Send for GuardedBuf {}

impl GuardedBuf {
    /// `len` bytes, each set to `fill`, between two inaccessible pages.
    pub fn new(len: usize, fill: u8) -> Result<Self, Errno> {
        let page = PAGE as usize;
        let data_pages = len.div_ceil(page).max(1);
        let map_len = (data_pages + 2).checked_mul(page).ok_or(Errno::NOMEM)?;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing; nothing
        // else refers to it.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(last_errno());
        }
        let inner = (map as usize + page) as *mut libc::c_void;
        // SAFETY: `inner` and `data_pages * page` lie within the mapping just made.
        let r =
            unsafe { libc::mprotect(inner, data_pages * page, libc::PROT_READ | libc::PROT_WRITE) };
        if r != 0 {
            let e = last_errno();
            // SAFETY: the mapping made above, unmapped once.
            unsafe { libc::munmap(map, map_len) };
            return Err(e);
        }
        // The data ends where the trailing inaccessible page begins.
        let data = (map as usize + page + data_pages * page - len) as *mut u8;
        // SAFETY: `[inner, inner + data_pages * page)` is readable and writable; fill it all.
        unsafe { std::ptr::write_bytes(inner.cast::<u8>(), fill, data_pages * page) };
        Ok(Self {
            map,
            map_len,
            data,
            len,
        })
    }

    /// The buffer.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `data..data+len` lies within the readable and writable part of the mapping,
        // which lives as long as `self`; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len) }
    }

    /// Its address, for the kernel.
    pub fn addr(&self) -> u64 {
        self.data as u64
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for GuardedBuf {
    fn drop(&mut self) {
        // SAFETY: the mapping this value made, unmapped once.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

impl std::fmt::Debug for GuardedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedBuf")
            .field("len", &self.len)
            .finish()
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
        assert_eq!(
            read_cstring_upto(me(), long.as_ptr() as u64, 16),
            Ok(vec![b'a'; 16])
        );
        assert_eq!(
            read_cstring_upto(me(), src.as_ptr() as u64, 16),
            Ok(b"hello".to_vec())
        );
        assert_eq!(read_cstring_upto(me(), 0, 16), Err(Errno::FAULT));
    }

    #[test]
    fn guarded_buffers_fault_past_their_ends() {
        for len in [0usize, 4, 4096, 5000] {
            let mut g = GuardedBuf::new(len, 0xff).unwrap();
            assert_eq!(g.len(), len);
            assert!(g.as_mut_slice().iter().all(|&b| b == 0xff));
            g.as_mut_slice().fill(7);
            let mut back = vec![0u8; len];
            read_exact(me(), g.addr(), &mut back).unwrap();
            assert!(back.iter().all(|&b| b == 7));
            // One byte past the end, and the page before the first one, are unreadable.
            let mut one = [0u8; 1];
            assert_eq!(
                read_exact(me(), g.addr() + len as u64, &mut one),
                Err(Errno::FAULT)
            );
            let pages = (len as u64).div_ceil(PAGE).max(1);
            let before = g.addr() + len as u64 - pages * PAGE - 1;
            assert_eq!(read_exact(me(), before, &mut one), Err(Errno::FAULT));
        }
    }

    #[test]
    fn large_reads_and_writes_cross_chunks() {
        // Not aligned, longer than several chunks.
        let src: Vec<u8> = (0..(3 * CHUNK as usize + 12345)).map(|i| i as u8).collect();
        let mut dst = vec![0u8; src.len() - 7];
        read_exact_large(me(), src.as_ptr() as u64 + 7, &mut dst).unwrap();
        assert_eq!(dst, src[7..]);
        let mut target = vec![0u8; src.len()];
        write_all_large(me(), target.as_mut_ptr() as u64, &src).unwrap();
        assert_eq!(std::hint::black_box(&target), &src);
        assert_eq!(read_exact_large(me(), 8, &mut dst), Err(Errno::FAULT));
        assert_eq!(read_exact_large(me(), 8, &mut []), Ok(()));
    }
}
