//! File descriptors across processes and paths: `pidfd_getfd`, `openat2`, `poll` on several
//! fds, and fd passing over Unix sockets (`SCM_RIGHTS`).
//!
//! [`send_fd_raw`] and [`recv_exact_raw`]/[`send_raw`] allocate nothing and take no locks, so
//! they may run in a child between fork and exec (see [`crate::spawn`]).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::{Result, SysError};

use crate::errno::last as last_errno;

/// `pidfd_getfd(pidfd, fd)`: a duplicate of file descriptor `fd` of the task behind `pidfd`
/// (needs ptrace-attach rights over it). The new fd is close-on-exec.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: RawFd) -> Result<OwnedFd> {
    rustix::process::pidfd_getfd(pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
        .map_err(|e| SysError::new(format!("pidfd_getfd {fd}"), e))
}

/// `openat2(dirfd, path, O_PATH | O_CLOEXEC, resolve)`: an `O_PATH` handle on `path` (the final
/// symlink followed), resolved from `dirfd` (the working directory when `None`).
pub fn open_path_at(
    dirfd: Option<BorrowedFd<'_>>,
    path: &Path,
    resolve: ResolveFlags,
) -> Result<OwnedFd, Errno> {
    let dir = dirfd.unwrap_or(rustix::fs::CWD);
    rustix::fs::openat2(
        dir,
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    )
}

/// `RESOLVE_NO_MAGICLINKS`: refuse `/proc/<pid>/fd/N`-style links during resolution.
pub const RESOLVE_NO_MAGICLINKS: ResolveFlags = ResolveFlags::NO_MAGICLINKS;

/// Namespaces of a task that a pidfd can hand out (`PIDFD_GET_*_NAMESPACE`, Linux 6.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidfdNamespace {
    Net = 4,
    Pid = 5,
    User = 9,
}

/// `ioctl(pidfd, PIDFD_GET_<which>_NAMESPACE)`: an fd of that namespace of the task behind
/// `pidfd` (usable with `setns`, or to compare namespaces with [`file_ident`]). Cheaper than
/// opening `/proc/<tid>/ns/*`, and bound to the task rather than to a reusable id.
pub fn pidfd_namespace(pidfd: BorrowedFd<'_>, which: PidfdNamespace) -> Result<OwnedFd> {
    // _IO(PIDFS_IOCTL_MAGIC = 0xFF, nr)
    let req = (0xFF << 8) | which as libc::c_ulong;
    // SAFETY: this ioctl takes no argument and returns a new fd or -1.
    let r = unsafe { libc::ioctl(pidfd.as_raw_fd(), req as _, 0) };
    if r < 0 {
        return Err(SysError::new(
            format!("PIDFD_GET_{which:?}_NAMESPACE"),
            last_errno(),
        ));
    }
    // SAFETY: the kernel returned a new fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// `(st_dev, st_ino)` of an open file: for a namespace fd, the namespace's identity.
pub fn file_ident(fd: impl AsFd) -> Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd).map_err(|e| SysError::new("fstat", e))?;
    Ok((st.st_dev, st.st_ino))
}

/// What [`poll_any`] saw on one fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ready {
    /// Data (or a notification) to read.
    pub readable: bool,
    /// Hung up or in error.
    pub hung_up: bool,
}

/// `poll()` several fds for input, retrying on `EINTR`. `None` on timeout.
pub fn poll_any(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> Result<Option<Vec<Ready>>> {
    let ms = match timeout {
        None => -1,
        Some(t) => i32::try_from(t.as_millis()).unwrap_or(i32::MAX),
    };
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `p` is a valid, writable array of `p.len()` pollfds.
        let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
        if r < 0 {
            let e = last_errno();
            if e == Errno::INTR {
                continue;
            }
            return Err(SysError::new("poll", e));
        }
        if r == 0 {
            return Ok(None);
        }
        return Ok(Some(
            p.iter()
                .map(|q| Ready {
                    readable: q.revents & libc::POLLIN != 0,
                    hung_up: q.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
                })
                .collect(),
        ));
    }
}

/// `poll()` several fds, each for input (`true`) or only for hang-ups and errors (`false`:
/// the kernel reports those whatever was asked), retrying on `EINTR`. `None` on timeout.
pub fn poll_events(
    fds: &[(BorrowedFd<'_>, bool)],
    timeout: Option<Duration>,
) -> Result<Option<Vec<Ready>>> {
    let ms = match timeout {
        None => -1,
        // Round up: a timeout of 0.5 ms must not become a busy loop of zero timeouts.
        Some(t) => i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
    };
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, input)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: if *input { libc::POLLIN } else { 0 },
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `p` is a valid, writable array of `p.len()` pollfds.
        let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
        if r < 0 {
            let e = last_errno();
            if e == Errno::INTR {
                continue;
            }
            return Err(SysError::new("poll", e));
        }
        if r == 0 {
            return Ok(None);
        }
        return Ok(Some(
            p.iter()
                .map(|q| Ready {
                    readable: q.revents & libc::POLLIN != 0,
                    hung_up: q.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
                })
                .collect(),
        ));
    }
}

/// `fd` on a number above the standard descriptors (0–2), close-on-exec. A child that
/// closes or uses a descriptor by number between fork and exec must not meet one that
/// `Command` has just put its standard input or output on (a caller started with fd 0 closed
/// gets its next descriptor as 0).
pub fn above_stdio(fd: OwnedFd) -> Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    rustix::io::fcntl_dupfd_cloexec(&fd, 3)
        .map_err(|e| SysError::new("moving a descriptor above the standard ones", e))
}

/// A connected pair of `SOCK_SEQPACKET` Unix sockets, both close-on-exec.
pub fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a writable array of two ints.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(SysError::new("socketpair", last_errno()));
    }
    // SAFETY: the kernel returned two new fds that nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `send(sock, data, MSG_NOSIGNAL)`, retrying on `EINTR`. Allocation-free.
pub fn send_raw(sock: RawFd, data: &[u8]) -> Result<(), Errno> {
    loop {
        // SAFETY: `data` is readable for its length.
        let r = unsafe { libc::send(sock, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return if r as usize == data.len() {
                Ok(())
            } else {
                Err(Errno::MSGSIZE)
            };
        }
        let e = last_errno();
        if e != Errno::INTR {
            return Err(e);
        }
    }
}

/// Receive one message of exactly `buf.len()` bytes, retrying on `EINTR`; `EPIPE` on end of
/// stream, `EBADMSG` on a message of another size. Allocation-free.
pub fn recv_exact_raw(sock: RawFd, buf: &mut [u8]) -> Result<(), Errno> {
    loop {
        // SAFETY: `buf` is writable for its length.
        let r = unsafe { libc::recv(sock, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if r > 0 {
            return if r as usize == buf.len() {
                Ok(())
            } else {
                Err(Errno::BADMSG)
            };
        }
        if r == 0 {
            return Err(Errno::PIPE);
        }
        let e = last_errno();
        if e != Errno::INTR {
            return Err(e);
        }
    }
}

/// Control-message buffer for one fd, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct OneFdCmsg([u8; 32]);

// CMSG_SPACE(sizeof(int)) is 24 on 64-bit Linux; the buffer must hold it.
const _: () = assert!(std::mem::size_of::<libc::cmsghdr>() + 8 <= 32);

/// `sendmsg` of `data` with one fd attached (`SCM_RIGHTS`). Allocation-free: the control
/// buffer lives on the stack.
pub fn send_fd_raw(sock: RawFd, data: &[u8], fd: RawFd) -> Result<(), Errno> {
    let mut cbuf = OneFdCmsg([0; 32]);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is pure arithmetic.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as _;
    // SAFETY: `msg_control` points at `cbuf`, which is large enough (checked above) and
    // aligned for cmsghdr; CMSG_FIRSTHDR/CMSG_DATA stay inside it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() {
            return Err(Errno::INVAL);
        }
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
    }
    loop {
        // SAFETY: `msg` and everything it points to are valid for the call.
        let r = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return Ok(());
        }
        let e = last_errno();
        if e != Errno::INTR {
            return Err(e);
        }
    }
}

/// Receive one message with at most one attached fd (received close-on-exec). Returns the
/// bytes read into `buf` and the fd, if any.
pub fn recv_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(usize, Option<OwnedFd>)> {
    let mut cbuf = OneFdCmsg([0; 32]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.0.len() as _;
    let n = loop {
        // SAFETY: `msg` points at `buf` and `cbuf`, writable for their lengths.
        let r = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if r >= 0 {
            break r as usize;
        }
        let e = last_errno();
        if e != Errno::INTR {
            return Err(SysError::new("recvmsg", e));
        }
    };
    let mut got: Option<OwnedFd> = None;
    let mut extra = false;
    // SAFETY: walking the control messages the kernel wrote into `cbuf`, with the libc
    // macros that bound every step by `msg_controllen`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let len = (*c).cmsg_len as usize - (data as usize - c as usize);
                let count = len / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    // Every received fd is ours now: own it so that extras get closed.
                    let owned = OwnedFd::from_raw_fd(fd);
                    if got.is_none() {
                        got = Some(owned);
                    } else {
                        extra = true;
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 || extra {
        return Err(SysError::new(
            "recvmsg: unexpected file descriptors",
            Errno::BADMSG,
        ));
    }
    Ok((n, got))
}

/// `shutdown(sock, SHUT_RDWR)`: wakes up a thread blocked receiving on it.
pub fn shutdown(sock: impl AsFd) -> Result<()> {
    // SAFETY: plain integer arguments on a borrowed fd.
    let r = unsafe { libc::shutdown(sock.as_fd().as_raw_fd(), libc::SHUT_RDWR) };
    if r != 0 {
        return Err(SysError::new("shutdown", last_errno()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_an_fd_over_a_pair() {
        let (a, b) = seqpacket_pair().expect("pair");
        let f = std::fs::File::open("/proc/self/status").expect("open");
        send_fd_raw(a.as_raw_fd(), b"L", f.as_raw_fd()).expect("send");
        let mut buf = [0u8; 1];
        let (n, fd) = recv_fd(b.as_fd(), &mut buf).expect("recv");
        assert_eq!((n, &buf), (1, b"L"));
        let fd = fd.expect("an fd");
        let st = rustix::fs::fstat(&fd).expect("fstat");
        let st0 = rustix::fs::fstat(&f).expect("fstat");
        assert_eq!((st.st_dev, st.st_ino), (st0.st_dev, st0.st_ino));
        send_raw(a.as_raw_fd(), &[7, 8]).expect("send");
        let mut two = [0u8; 2];
        recv_exact_raw(b.as_raw_fd(), &mut two).expect("recv");
        assert_eq!(two, [7, 8]);
        drop(a);
        assert_eq!(recv_exact_raw(b.as_raw_fd(), &mut two), Err(Errno::PIPE));
    }

    #[test]
    fn namespaces_through_a_pidfd() {
        use std::os::unix::fs::MetadataExt;
        let me = crate::process::open_thread_pidfd(crate::process::gettid()).expect("pidfd");
        for (which, name) in [
            (PidfdNamespace::User, "user"),
            (PidfdNamespace::Net, "net"),
            (PidfdNamespace::Pid, "pid"),
        ] {
            let ns = pidfd_namespace(me.as_fd(), which).expect("ioctl");
            let m = std::fs::metadata(format!("/proc/thread-self/ns/{name}")).expect("stat");
            assert_eq!(
                file_ident(&ns).expect("fstat"),
                (m.dev(), m.ino()),
                "{name}"
            );
        }
    }

    #[test]
    fn poll_times_out_and_sees_data() {
        let (a, b) = seqpacket_pair().expect("pair");
        assert!(poll_any(&[b.as_fd()], Some(Duration::from_millis(10)))
            .expect("poll")
            .is_none());
        send_raw(a.as_raw_fd(), b"x").expect("send");
        let r = poll_any(&[a.as_fd(), b.as_fd()], None)
            .expect("poll")
            .expect("ready");
        assert_eq!(
            r[1],
            Ready {
                readable: true,
                hung_up: false
            }
        );
        assert!(!r[0].readable);
    }
}
