//! Unix-socket plumbing for the bpfnsd protocol: frames with file descriptors (SCM_RIGHTS)
//! and who is on the other end (SO_PEERPIDFD, SO_PEERCRED; sock_diag for other processes'
//! sockets).

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::{Result, SysError};

/// Most fds accepted with one message; more are closed and reported as an error.
pub const MAX_FDS: usize = 4;

/// Send all of `bytes`, attaching `fds` to the first chunk.
pub fn send_with_fds(sock: impl AsFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
    let sock = sock.as_fd();
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut sent = 0;
    let mut first = true;
    while sent < bytes.len() || (first && bytes.is_empty()) {
        let mut anc = SendAncillaryBuffer::new(&mut space);
        if first
            && !fds.is_empty()
            && (fds.len() > MAX_FDS || !anc.push(SendAncillaryMessage::ScmRights(fds)))
        {
            return Err(SysError::new("sendmsg: too many fds", Errno::INVAL));
        }
        let iov = [IoSlice::new(&bytes[sent..])];
        match sendmsg(sock, &iov, &mut anc, SendFlags::NOSIGNAL) {
            Ok(n) => {
                sent += n;
                first = false;
                if bytes.is_empty() {
                    break;
                }
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(SysError::new("sendmsg", e)),
        }
    }
    Ok(())
}

/// Fill `buf` completely, collecting any fds that arrive. Returns `Ok(false)` on a clean EOF
/// before the first byte, an error on EOF in the middle.
pub fn recv_exact_with_fds(
    sock: impl AsFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> Result<bool> {
    let sock = sock.as_fd();
    let mut got = 0;
    while got < buf.len() {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut anc = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [std::io::IoSliceMut::new(&mut buf[got..])];
        let r = match recvmsg(sock, &mut iov, &mut anc, RecvFlags::CMSG_CLOEXEC) {
            Ok(r) => r,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(SysError::new("recvmsg", e)),
        };
        for msg in anc.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = msg {
                fds.extend(rights);
            }
        }
        if r.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
            return Err(SysError::new("recvmsg: too many fds sent", Errno::INVAL));
        }
        if r.bytes == 0 {
            if got == 0 {
                return Ok(false);
            }
            return Err(SysError::new(
                "recvmsg: connection closed mid-message",
                Errno::PIPE,
            ));
        }
        got += r.bytes;
    }
    Ok(true)
}

/// Credentials of the peer process as of connect(): pid, uid, gid.
pub fn peer_cred(sock: impl AsFd) -> Result<(i32, u32, u32)> {
    let c =
        rustix::net::sockopt::socket_peercred(sock).map_err(|e| SysError::new("SO_PEERCRED", e))?;
    Ok((c.pid.as_raw_nonzero().get(), c.uid.as_raw(), c.gid.as_raw()))
}

/// `SO_PEERPIDFD` (Linux 6.5): a pidfd for the peer that connected, immune to pid reuse.
const SO_PEERPIDFD: i32 = 77;

/// A pidfd of the peer process (`SO_PEERPIDFD`, Linux 6.5+).
pub fn peer_pidfd(sock: impl AsFd) -> Result<OwnedFd> {
    let mut fd: i32 = -1;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `fd` and `len` are valid out-pointers of the sizes announced.
    let r = unsafe {
        libc::getsockopt(
            sock.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&mut fd as *mut i32).cast(),
            &mut len,
        )
    };
    if r < 0 || fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(SysError::new(
            "SO_PEERPIDFD",
            Errno::from_io_error(&e).unwrap_or(Errno::INVAL),
        ));
    }
    // SAFETY: the kernel returned a new pidfd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Has the process behind `pidfd` exited (a zombie too)? A pidfd polls readable then.
pub fn pidfd_exited(pidfd: BorrowedFd<'_>) -> bool {
    !matches!(
        crate::fds::poll_any(&[pidfd], Some(std::time::Duration::ZERO)),
        Ok(None)
    )
}

/// Is the process behind `pidfd` still alive? (`pidfd_send_signal(fd, 0)`)
pub fn pidfd_alive(pidfd: BorrowedFd<'_>) -> bool {
    // SAFETY: signal 0 only checks the target; null info and zero flags are valid.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    r == 0
}

/// `SIGKILL` the process behind `pidfd` (immune to pid reuse).
pub fn pidfd_kill(pidfd: BorrowedFd<'_>) -> Result<()> {
    pidfd_signal(pidfd, libc::SIGKILL)
}

/// Send `signal` to the process behind `pidfd` (immune to pid reuse).
pub fn pidfd_signal(pidfd: BorrowedFd<'_>, signal: i32) -> Result<()> {
    // SAFETY: null info and zero flags are valid; the signal is a plain number.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        let e = std::io::Error::last_os_error();
        Err(SysError::new(
            format!("pidfd_send_signal {signal}"),
            Errno::from_io_error(&e).unwrap_or(Errno::SRCH),
        ))
    }
}

/// The listening socket systemd passed (socket activation: `LISTEN_PID`/`LISTEN_FDS`, fd 3),
/// if there is one and it is a listening Unix stream socket. The variables are removed so
/// children do not inherit them.
pub fn systemd_listener() -> Option<std::os::unix::net::UnixListener> {
    const SD_LISTEN_FDS_START: i32 = 3;
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let nfds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    // SAFETY-free cleanup: env mutation is done before any thread is started by the daemon.
    if !pid_ok || nfds < 1 {
        return None;
    }
    // SAFETY: systemd guarantees fd 3 is open and handed to this process; we take ownership
    // only after checking it is a listening socket.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(SD_LISTEN_FDS_START) };
    let listening = rustix::net::sockopt::socket_acceptconn(fd).unwrap_or(false);
    let is_unix = rustix::net::getsockname(fd)
        .map(|a| a.address_family() == rustix::net::AddressFamily::UNIX)
        .unwrap_or(false);
    if !listening || !is_unix {
        return None;
    }
    // SAFETY: checked above; nobody else owns fd 3 in this process.
    let owned = unsafe { OwnedFd::from_raw_fd(SD_LISTEN_FDS_START) };
    // systemd passes it without close-on-exec: processes bpfnsd starts must not inherit it.
    let _ = rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC);
    Some(std::os::unix::net::UnixListener::from(owned))
}

// ---- SOCK_SEQPACKET: message-atomic sockets for small local protocols ------------------------

fn unix_addr(path: &std::path::Path) -> Result<rustix::net::SocketAddrUnix> {
    rustix::net::SocketAddrUnix::new(path)
        .map_err(|e| SysError::new(format!("socket path {}", path.display()), e))
}

/// A listening, non-blocking, close-on-exec `SOCK_SEQPACKET` Unix socket bound at `path`
/// (which must not exist), with permissions `mode`, and `SO_PASSCRED` set before it listens
/// (every message then names its sender, [`recv_msg_from`]).
pub fn seqpacket_listen(path: &std::path::Path, mode: u32, backlog: i32) -> Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| SysError::new("socket(AF_UNIX, SOCK_SEQPACKET)", e))?;
    set_passcred(&fd)?;
    rustix::net::bind(&fd, &unix_addr(path)?)
        .map_err(|e| SysError::new(format!("bind {}", path.display()), e))?;
    rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(mode))
        .map_err(|e| SysError::new(format!("chmod {}", path.display()), e))?;
    rustix::net::listen(&fd, backlog)
        .map_err(|e| SysError::new(format!("listen {}", path.display()), e))?;
    Ok(fd)
}

/// Accept one connection on a non-blocking listening socket: the new socket is close-on-exec
/// and non-blocking; `None` when nobody is waiting.
pub fn accept_nonblocking(listener: impl AsFd) -> Result<Option<OwnedFd>> {
    use rustix::net::SocketFlags;
    loop {
        match rustix::net::accept_with(&listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) {
            Ok(fd) => return Ok(Some(fd)),
            Err(Errno::AGAIN) => return Ok(None),
            Err(Errno::INTR | Errno::CONNABORTED) => continue,
            Err(e) => return Err(SysError::new("accept", e)),
        }
    }
}

/// Connect a close-on-exec, blocking `SOCK_SEQPACKET` socket to `path`.
pub fn seqpacket_connect(path: &std::path::Path) -> Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| SysError::new("socket(AF_UNIX, SOCK_SEQPACKET)", e))?;
    loop {
        match rustix::net::connect(&fd, &unix_addr(path)?) {
            Ok(()) => return Ok(fd),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(SysError::new(format!("connect {}", path.display()), e)),
        }
    }
}

/// Send one message (all of `bytes`, with `fds` attached) in one `sendmsg`; with
/// `dont_wait`, fail with `EAGAIN` instead of blocking on a full socket.
pub fn send_msg(
    sock: impl AsFd,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
    dont_wait: bool,
) -> Result<()> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && (fds.len() > MAX_FDS || !anc.push(SendAncillaryMessage::ScmRights(fds))) {
        return Err(SysError::new("sendmsg: too many fds", Errno::INVAL));
    }
    let mut flags = SendFlags::NOSIGNAL;
    if dont_wait {
        flags |= SendFlags::DONTWAIT;
    }
    let iov = [IoSlice::new(bytes)];
    loop {
        match sendmsg(sock.as_fd(), &iov, &mut anc, flags) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(_) => return Err(SysError::new("sendmsg: short write", Errno::MSGSIZE)),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(SysError::new("sendmsg", e)),
        }
    }
}

/// The path a connected Unix socket's peer was bound at (the name it gave `bind`, not where
/// its file lies now); `None` for an unnamed or abstract peer.
pub fn peer_path(sock: impl AsFd) -> Result<Option<std::path::PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    let addr = rustix::net::getpeername(sock).map_err(|e| SysError::new("getpeername", e))?;
    let Some(unix) = addr.and_then(|a| rustix::net::SocketAddrUnix::try_from(a).ok()) else {
        return Ok(None);
    };
    Ok(unix
        .path()
        .map(|p| std::ffi::OsStr::from_bytes(p.to_bytes()).into()))
}

/// Send what the socket takes of `bytes` without blocking (one `sendmsg`, `MSG_DONTWAIT`),
/// with `fds` attached: returns how many bytes went (the fds went with them if any did);
/// `EAGAIN` when the socket is full. For a stream socket served by an event loop, which sends
/// the rest, without fds, when the socket can take more.
pub fn send_some(sock: impl AsFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && (fds.len() > MAX_FDS || !anc.push(SendAncillaryMessage::ScmRights(fds))) {
        return Err(SysError::new("sendmsg: too many fds", Errno::INVAL));
    }
    let iov = [IoSlice::new(bytes)];
    loop {
        match sendmsg(
            sock.as_fd(),
            &iov,
            &mut anc,
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        ) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(SysError::new("sendmsg", e)),
        }
    }
}

/// Receive one message into `buf` (one `recvmsg`), collecting the fds that came with it
/// (close-on-exec). Returns its length: 0 at end of stream. A message longer than `buf`, or
/// with more than [`MAX_FDS`] fds, is an error (`EMSGSIZE`; its fds are closed). With
/// `dont_wait`, `EAGAIN` instead of blocking.
pub fn recv_msg(
    sock: impl AsFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    dont_wait: bool,
) -> Result<usize> {
    recv_msg_from(sock, buf, fds, dont_wait).map(|(n, _)| n)
}

/// Who wrote the bytes of one read (`SCM_CREDENTIALS`), in the reader's namespaces: the
/// writer's process (its thread group; 0 when not visible in the reader's pid namespace) and
/// its real uid and gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// [`recv_msg`], also returning who sent the bytes ([`Sender`], from `SCM_CREDENTIALS`):
/// present only on a socket with `SO_PASSCRED` (see [`set_passcred`]). A stream socket never
/// returns the bytes of two senders from one call, so it covers all of them.
pub fn recv_msg_from(
    sock: impl AsFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    dont_wait: bool,
) -> Result<(usize, Option<Sender>)> {
    // libc, not rustix: rustix reads `struct ucred` into a non-zero pid type, and the kernel
    // reports pid 0 for a sender outside the caller's pid namespace.
    const FD: usize = std::mem::size_of::<i32>();
    const UCRED: usize = std::mem::size_of::<libc::ucred>();
    // CMSG_SPACE(MAX_FDS fds) + CMSG_SPACE(struct ucred), in u64s for the header's alignment.
    let mut space = [0u64; (MAX_FDS * FD + UCRED + 4 * std::mem::size_of::<libc::cmsghdr>()) / 8];
    let mut flags = libc::MSG_CMSG_CLOEXEC;
    if dont_wait {
        flags |= libc::MSG_DONTWAIT;
    }
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: zeroed msghdr is valid; the pointers below outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&space) as _;
        // SAFETY: msg points at a live iovec over `buf` and at `space`, sized as said.
        let n = unsafe { libc::recvmsg(sock.as_fd().as_raw_fd(), &mut msg, flags) };
        if n < 0 {
            match crate::errno::last() {
                Errno::INTR => continue,
                e => return Err(SysError::new("recvmsg", e)),
            }
        }
        let mut sender = None;
        // SAFETY: the kernel filled `msg_controllen` bytes of `space` with cmsghdrs; the
        // CMSG_* macros walk them within that length.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let h = std::ptr::read_unaligned(c);
                let data = libc::CMSG_DATA(c);
                let len = (h.cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                match (h.cmsg_level, h.cmsg_type) {
                    (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                        for i in 0..len / FD {
                            let fd = std::ptr::read_unaligned(data.add(i * FD).cast::<i32>());
                            fds.push(OwnedFd::from_raw_fd(fd));
                        }
                    }
                    (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) if len >= UCRED => {
                        let u = std::ptr::read_unaligned(data.cast::<libc::ucred>());
                        sender = Some(Sender {
                            pid: u.pid,
                            uid: u.uid,
                            gid: u.gid,
                        });
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        if msg.msg_flags & (libc::MSG_CTRUNC | libc::MSG_TRUNC) != 0 {
            fds.clear();
            return Err(SysError::new("recvmsg: message truncated", Errno::MSGSIZE));
        }
        return Ok((n as usize, sender));
    }
}

/// A listening stream socket bound at `path`, with `SO_PASSCRED` set before it listens: the
/// kernel copies the flag into each connection when it is made, so every byte any client
/// sends carries its sender (set after `listen`, connections made in between would have
/// none until accepted and set).
pub fn bind_listener(path: &std::path::Path) -> Result<std::os::unix::net::UnixListener> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| SysError::new("socket(AF_UNIX)", e))?;
    set_passcred(&sock)?;
    let addr = SocketAddrUnix::new(path).map_err(|e| SysError::new("socket path", e))?;
    rustix::net::bind(&sock, &addr).map_err(|e| SysError::new("bind", e))?;
    rustix::net::listen(&sock, libc::SOMAXCONN).map_err(|e| SysError::new("listen", e))?;
    Ok(std::os::unix::net::UnixListener::from(sock))
}

/// Whether `SO_PASSCRED` is set on `sock`.
pub fn passcred(sock: impl AsFd) -> Result<bool> {
    rustix::net::sockopt::socket_passcred(sock).map_err(|e| SysError::new("SO_PASSCRED", e))
}

/// Set `SO_PASSCRED`: every `recvmsg` then says who sent its bytes ([`recv_msg_from`]). Set
/// on a listening socket, the kernel copies it to each connection `accept` returns, and the
/// bytes a client sends before it is accepted carry its credentials too.
pub fn set_passcred(sock: impl AsFd) -> Result<()> {
    rustix::net::sockopt::set_socket_passcred(sock, true)
        .map_err(|e| SysError::new("SO_PASSCRED", e))
}

/// Set `SO_RCVTIMEO` and `SO_SNDTIMEO` (`None`: block forever): a blocking read or write that
/// waits longer fails with `EAGAIN`.
pub fn set_timeouts(sock: impl AsFd, timeout: Option<std::time::Duration>) -> Result<()> {
    use rustix::net::sockopt::{set_socket_timeout, Timeout};
    set_socket_timeout(&sock, Timeout::Recv, timeout)
        .map_err(|e| SysError::new("SO_RCVTIMEO", e))?;
    set_socket_timeout(&sock, Timeout::Send, timeout).map_err(|e| SysError::new("SO_SNDTIMEO", e))
}

// ---- sock_diag: who holds the other end of a Unix socket ------------------------------------

/// What the kernel's `sock_diag` says of one Unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixSocketDiag {
    /// Its inode (what `/proc/PID/fd/N` shows as `socket:[INO]`).
    pub ino: u32,
    /// The inode of the socket it is connected to, if any.
    pub peer: Option<u32>,
    /// Whether it has an address: bound, or accepted from a bound listener (both ends of a
    /// `socketpair()` have none).
    pub named: bool,
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const UDIAG_SHOW_NAME: u32 = 1;
const UDIAG_SHOW_PEER: u32 = 4;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_PEER: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
/// `struct unix_diag_msg`.
const UNIX_DIAG_MSG_LEN: usize = 16;

/// A `NETLINK_SOCK_DIAG` socket, for asking the kernel about sockets of the caller's network
/// namespace.
#[derive(Debug)]
pub struct SockDiag(OwnedFd);

impl SockDiag {
    pub fn open() -> Result<Self> {
        use rustix::net::{netlink, AddressFamily, SocketFlags, SocketType};
        let sock = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            Some(netlink::SOCK_DIAG),
        )
        .map_err(|e| SysError::new("socket(AF_NETLINK, NETLINK_SOCK_DIAG)", e))?;
        set_timeouts(&sock, Some(std::time::Duration::from_secs(5)))?;
        Ok(Self(sock))
    }

    /// One exact lookup of the Unix socket with inode `ino`: its peer and whether it is
    /// named. `ENOENT` when no such Unix socket exists in this network namespace (closed, not
    /// a Unix socket, or made in another network namespace).
    pub fn unix(&self, ino: u32) -> Result<UnixSocketDiag> {
        let op = || format!("sock_diag of Unix socket {ino}");
        // struct nlmsghdr, then struct unix_diag_req.
        let mut req = Vec::with_capacity(NLMSG_HDRLEN + 24);
        req.extend_from_slice(&((NLMSG_HDRLEN + 24) as u32).to_ne_bytes());
        req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        req.extend_from_slice(&ino.to_ne_bytes()); // sequence number
        req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        req.push(libc::AF_UNIX as u8);
        req.push(0); // protocol
        req.extend_from_slice(&0u16.to_ne_bytes());
        req.extend_from_slice(&u32::MAX.to_ne_bytes()); // states: all (only dumps filter)
        req.extend_from_slice(&ino.to_ne_bytes());
        req.extend_from_slice(&(UDIAG_SHOW_NAME | UDIAG_SHOW_PEER).to_ne_bytes());
        req.extend_from_slice(&u32::MAX.to_ne_bytes()); // no cookie
        req.extend_from_slice(&u32::MAX.to_ne_bytes());
        loop {
            match rustix::net::send(&self.0, &req, SendFlags::empty()) {
                Ok(_) => break,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(SysError::new(op(), e)),
            }
        }
        let mut buf = vec![0u8; 8192];
        let n = loop {
            match rustix::net::recv(&self.0, &mut buf[..], RecvFlags::empty()) {
                Ok((n, _)) => break n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(SysError::new(op(), e)),
            }
        };
        parse_unix_diag(&buf[..n.min(buf.len())], ino).map_err(|e| SysError::new(op(), e))
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parse the kernel's answer to [`SockDiag::unix`]: one `unix_diag_msg` with its
/// attributes, or an error message.
fn parse_unix_diag(b: &[u8], ino: u32) -> std::result::Result<UnixSocketDiag, Errno> {
    let bad = Errno::PROTO;
    let len = u32_at(b, 0).ok_or(bad)? as usize;
    let kind = u16_at(b, 4).ok_or(bad)?;
    if len < NLMSG_HDRLEN || len > b.len() {
        return Err(bad);
    }
    let b = &b[..len];
    if kind == NLMSG_ERROR {
        let code = u32_at(b, NLMSG_HDRLEN).ok_or(bad)? as i32;
        return Err(if code < 0 {
            Errno::from_raw_os_error(-code)
        } else {
            bad
        });
    }
    if kind != SOCK_DIAG_BY_FAMILY || len < NLMSG_HDRLEN + UNIX_DIAG_MSG_LEN {
        return Err(bad);
    }
    if u32_at(b, NLMSG_HDRLEN + 4) != Some(ino) {
        return Err(bad);
    }
    let mut diag = UnixSocketDiag {
        ino,
        peer: None,
        named: false,
    };
    let mut at = NLMSG_HDRLEN + UNIX_DIAG_MSG_LEN;
    while at + 4 <= len {
        let alen = u16_at(b, at).ok_or(bad)? as usize;
        let atype = u16_at(b, at + 2).ok_or(bad)?;
        if alen < 4 || at + alen > len {
            return Err(bad);
        }
        match atype {
            UNIX_DIAG_NAME => diag.named = true,
            UNIX_DIAG_PEER => diag.peer = Some(u32_at(b, at + 4).ok_or(bad)?),
            _ => {}
        }
        at += (alen + 3) & !3;
    }
    Ok(diag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn ino(fd: impl AsFd) -> u32 {
        let f = std::fs::File::from(fd.as_fd().try_clone_to_owned().expect("dup"));
        f.metadata().expect("fstat").ino() as u32
    }

    #[test]
    fn each_read_says_who_wrote_its_bytes() {
        let dir = std::env::temp_dir().join(format!("bpfns-passcred-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("mkdir");
        let path = dir.join("s");
        let l = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        set_passcred(&l).expect("SO_PASSCRED");
        let c = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        // Written before the connection is accepted.
        send_with_fds(&c, b"a", &[]).expect("send");
        let (a, _) = l.accept().expect("accept");
        set_timeouts(&a, Some(std::time::Duration::from_secs(10))).expect("timeout");
        let me = std::process::id() as i32;
        let recv = || {
            let (mut buf, mut fds) = ([0u8; 8], Vec::new());
            let (n, sender) = recv_msg_from(&a, &mut buf, &mut fds, false).expect("recv");
            let sender = sender.expect("SCM_CREDENTIALS");
            // SAFETY: getuid and getgid have no preconditions.
            let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
            assert_eq!((sender.uid, sender.gid), (uid, gid));
            (buf[..n].to_vec(), Some(sender.pid), fds.len())
        };
        assert_eq!(recv(), (b"a".to_vec(), Some(me), 0));
        let (r, _w) = std::os::unix::net::UnixStream::pair().expect("pair");
        send_with_fds(&c, b"b", &[r.as_fd()]).expect("send");
        assert_eq!(recv(), (b"b".to_vec(), Some(me), 1));
        // SAFETY: the child only makes async-signal-safe calls before _exit.
        let child = unsafe { libc::fork() };
        if child == 0 {
            let _ = send_with_fds(&c, b"c", &[]);
            // SAFETY: the forked child ends without running any destructor.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(child, &mut status, 0) };
        // Bytes of two writers are never returned by one read.
        send_with_fds(&c, b"d", &[]).expect("send");
        assert_eq!(recv(), (b"c".to_vec(), Some(child), 0));
        assert_eq!(recv(), (b"d".to_vec(), Some(me), 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sock_diag_tells_socket_pairs_from_named_connections() {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        let (ia, ib) = (ino(&a), ino(&b));
        let diag = SockDiag::open().expect("sock_diag");
        let da = diag.unix(ia).expect("diag a");
        assert_eq!(da.peer, Some(ib));
        assert!(!da.named);
        assert_eq!(diag.unix(ib).expect("diag b").peer, Some(ia));

        let dir = std::env::temp_dir().join(format!("bpfns-sys-diag-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("s");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let client = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let (ic, is) = (ino(&client), ino(&server));
        let dc = diag.unix(ic).expect("diag client");
        let ds = diag.unix(is).expect("diag server");
        assert_eq!((dc.peer, ds.peer), (Some(is), Some(ic)));
        assert!(!dc.named, "the client is unnamed");
        assert!(ds.named, "the accepted end has the listener's name");
        assert!(diag.unix(ino(&listener)).expect("listener").named);
        let _ = std::fs::remove_dir_all(&dir);

        drop((a, b));
        // A child another test forks holds copies of every fd until it exits or execs: the
        // pair is gone once the last copy is.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let gone = loop {
            match diag.unix(ia) {
                Err(e) => break e,
                Ok(d) if std::time::Instant::now() > deadline => panic!("not closed: {d:?}"),
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        };
        assert_eq!(gone.errno, Errno::NOENT, "{gone}");
    }

    #[test]
    fn sock_diag_answers_are_parsed_strictly() {
        assert_eq!(parse_unix_diag(&[], 1), Err(Errno::PROTO));
        let mut err = Vec::new();
        err.extend_from_slice(&20u32.to_ne_bytes());
        err.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err.extend_from_slice(&[0; 10]);
        err.extend_from_slice(&(-2i32).to_ne_bytes());
        assert_eq!(parse_unix_diag(&err, 1), Err(Errno::NOENT));
        // An attribute running past the message.
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[1, 5, 1, 0]);
        m.extend_from_slice(&7u32.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&40u16.to_ne_bytes());
        m.extend_from_slice(&UNIX_DIAG_PEER.to_ne_bytes());
        assert_eq!(parse_unix_diag(&m, 7), Err(Errno::PROTO));
        assert_eq!(
            parse_unix_diag(&m, 8),
            Err(Errno::PROTO),
            "another socket's answer"
        );
    }
}
