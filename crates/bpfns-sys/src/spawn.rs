//! Start a program as a supervised namespace member.
//!
//! [`MemberSetup::spawn`] runs a [`std::process::Command`] so that, in the child between fork
//! and exec:
//!
//! 1. the child sends its pid to the parent, which runs a callback meanwhile (`before_setup`:
//!    have the daemon tag the child into its namespace) while the child sets itself up (2–4,
//!    none of which depends on the tag: overlapping them takes a round trip off the start);
//! 2. optionally, in a new mount namespace with every mount made a slave (`rslave`), a
//!    directory is bind-mounted over `/sys/fs/bpf` (the namespace's own bpffs) and given paths
//!    are covered with an empty read-only tmpfs (the host's bpfns pin root, `/run/bpfns`),
//!    after the mounts below the directory of every namespace's bpffs instance (but the
//!    member's own) are detached, so that no deleted instance lives on in the member's mount
//!    namespace;
//!    optionally the working directory is set after that; in the bpffs, the kernel's preloaded
//!    iterators `maps.debug` and `progs.debug` (which list every map and program of the host,
//!    and cannot be unlinked) are covered with a read-only, device-less bind mount of
//!    `/dev/null`, so that opening them fails;
//! 3. optionally capabilities are dropped from every set, the bounding set included (a namespace
//!    whose policy denies tracing gives no member `CAP_PERFMON`), and `no_new_privs` is set
//!    (needed to install a filter without `CAP_SYS_ADMIN`);
//! 4. optionally the child enters a Landlock domain of its own (no ptrace access to processes
//!    outside it: [`crate::landlock`]); the seccomp filter is installed with
//!    `NEW_LISTENER | WAIT_KILLABLE_RECV` (by default);
//! 5. the child sends the listener fd to the parent (`SCM_RIGHTS`) and closes it, so the
//!    program never holds its own listener: without an acknowledgement to wait for (6), only
//!    after the parent's go-ahead (sent once `before_setup` succeeded); with one, at once;
//! 6. optionally the child waits for an acknowledgement (sent after `before_setup` and the
//!    `with_listener` callback succeeded) before it execs.
//!
//! Everything that allocates (C strings, the filter program) is prepared before the fork; the
//! child runs raw system calls only, with a stack buffer for the control message (no rustix
//! `net` feature needed, and no allocation).
//!
//! `std::process::Command::spawn` returns only once the child has exec'd (or failed), so the
//! parent's half of the exchange runs on a scoped helper thread.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use rustix::io::Errno;

use crate::fds::{
    above_stdio, recv_exact_raw, recv_fd, send_fd_raw, send_raw, seqpacket_pair, shutdown,
};
use crate::seccomp::{install_filter_raw, set_no_new_privs_raw, Filter, FilterFlags, Listener};
use crate::{Result, SysError};

const GO: u8 = b'g';
const ABORT: u8 = b'x';
const LISTENER: u8 = b'L';
const ACK: u8 = b'a';
/// The child's report of the setup step that failed ([`Step`]), sent before it gives up.
const FAILED: u8 = b'E';

/// How to set up a member between fork and exec. See the module documentation.
#[derive(Debug, Clone)]
pub struct MemberSetup {
    filter: Filter,
    flags: FilterFlags,
    no_new_privs: bool,
    bpffs: Option<CString>,
    detach: Vec<CString>,
    hide: Vec<CString>,
    /// Paths made read-only, and whether each is a mount point already.
    read_only: Vec<(CString, bool)>,
    cwd: Option<CString>,
    /// The working directory to take again after the mounts (`/` if it is not there).
    cwd_again: Option<CString>,
    /// bpfnsd's socket, as given and canonical: a connection to it is not inherited.
    daemon_socket: Vec<CString>,
    wait_ack: bool,
    drop_caps: u64,
    creds: Option<Credentials>,
    landlock: bool,
}

/// Who the member runs as, set after the setup and just before exec: the user and group ids,
/// and the capabilities it keeps (every other one is dropped from every set, bounding set
/// included; the kept ones are raised in the ambient set, so that they survive the exec of an
/// ordinary program by a non-root user). Supplementary groups are cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    /// `None`: keep the current user (and group).
    pub uid: Option<u32>,
    /// `None` with a `uid`: the same number as the uid.
    pub gid: Option<u32>,
    /// The capabilities kept.
    pub keep: crate::caps::CapabilitySet,
}

/// A started member: the child, and the listener of its seccomp filter.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
    pub listener: Listener,
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| SysError::new(format!("path {}", p.display()), Errno::INVAL))
}

impl MemberSetup {
    /// Install `filter` with `NEW_LISTENER | WAIT_KILLABLE_RECV`; nothing else.
    pub fn new(filter: Filter) -> Self {
        Self {
            filter,
            flags: FilterFlags::NEW_LISTENER | FilterFlags::WAIT_KILLABLE_RECV,
            no_new_privs: false,
            bpffs: None,
            detach: Vec::new(),
            hide: Vec::new(),
            read_only: Vec::new(),
            cwd: None,
            cwd_again: None,
            daemon_socket: Vec::new(),
            wait_ack: false,
            drop_caps: 0,
            creds: None,
            landlock: false,
        }
    }

    /// Filter flags (must include `NEW_LISTENER`).
    pub fn filter_flags(mut self, flags: FilterFlags) -> Self {
        self.flags = flags;
        self
    }

    /// Set `no_new_privs` before installing the filter (required without `CAP_SYS_ADMIN`).
    pub fn no_new_privs(mut self, on: bool) -> Self {
        self.no_new_privs = on;
        self
    }

    /// Put the member in a Landlock domain of its own before the filter
    /// ([`crate::landlock::restrict_self_raw`]: no ptrace access to processes outside it);
    /// only where [`crate::landlock::confines_members`] says the kernel can, or the child
    /// fails. Needs `no_new_privs` or `CAP_SYS_ADMIN`, as the filter does.
    pub fn landlock(mut self, on: bool) -> Self {
        self.landlock = on;
        self
    }

    /// In a private mount namespace, bind-mount `dir` over `/sys/fs/bpf`.
    pub fn bpffs(mut self, dir: &Path) -> Result<Self> {
        self.bpffs = Some(cpath(dir)?);
        Ok(self)
    }

    /// In a private mount namespace, make `path` (a directory) read-only: bind-mounted onto
    /// itself and remounted read-only, after the hidden paths are covered. Sockets in it can
    /// still be connected to; nothing in it can be replaced.
    pub fn read_only(mut self, path: &Path) -> Result<Self> {
        self.read_only.push((cpath(path)?, false));
        Ok(self)
    }

    /// As [`read_only`](Self::read_only), for a path that is a mount point already (as
    /// `/proc/self/mountinfo` lists it): the private namespace's copy of that mount is made
    /// read-only in place, with one system call instead of a bind mount and a remount (hosts
    /// with cgroup v1 have a dozen cgroup mounts, each made read-only at every member start).
    pub fn read_only_mount_point(mut self, path: &Path) -> Result<Self> {
        self.read_only.push((cpath(path)?, true));
        Ok(self)
    }

    /// In a private mount namespace, after the bpffs bind mount and before the paths are
    /// hidden, detach (`umount2(MNT_DETACH)`) every mount below `dir` but `keep`, as
    /// `mountinfo` (this process's `/proc/self/mountinfo`, read once by the caller for every
    /// use) lists them: a hidden mount would still keep its filesystem alive — another
    /// namespace's bpffs instance, with its pins, after its deletion — for as long as the
    /// member lives.
    pub fn detach_below(mut self, mountinfo: &str, dir: &Path, keep: &Path) -> Result<Self> {
        for m in crate::procfs::mounts_below_in(mountinfo, dir)
            .iter()
            .filter(|m| m.as_path() != keep)
        {
            self.detach.push(cpath(m)?);
        }
        Ok(self)
    }

    /// In a private mount namespace, after the bpffs bind mount and before the paths are
    /// hidden, detach (`umount2(MNT_DETACH)`) the mount at `dir` with everything below it:
    /// [`detach_below`](Self::detach_below) in one call, for a `dir` that is a mount point.
    pub fn detach(mut self, dir: &Path) -> Result<Self> {
        self.detach.push(cpath(dir)?);
        Ok(self)
    }

    /// In a private mount namespace, cover `path` (a directory) with an empty read-only tmpfs,
    /// after the bpffs bind mount.
    pub fn hide(mut self, path: &Path) -> Result<Self> {
        self.hide.push(cpath(path)?);
        Ok(self)
    }

    /// bpfnsd's socket at `path`: a connection to it is one the member may not inherit (bpfnsd
    /// knows a connection by the process that made it, so the member would speak as that
    /// process: its caller).
    pub fn daemon_socket(mut self, path: &Path) -> Result<Self> {
        self.daemon_socket.push(cpath(path)?);
        if let Ok(c) = path.canonicalize() {
            self.daemon_socket.push(cpath(&c)?);
        }
        Ok(self)
    }

    /// Change to `dir` after the mounts. (`Command::current_dir` is applied by std *before*
    /// the setup, so a working directory under `/sys/fs/bpf` would stay in the host's bpffs,
    /// beneath the bind mount.)
    pub fn cwd(mut self, dir: &Path) -> Result<Self> {
        self.cwd = Some(cpath(dir)?);
        Ok(self)
    }

    /// Drop `caps` from every capability set of the child — effective, permitted,
    /// inheritable, ambient and bounding — before exec, so that neither the program nor
    /// anything it executes (setuid-root programs included) holds them. Dropping from the
    /// bounding set needs `CAP_SETPCAP`; without it the setup fails, unless `no_new_privs` is
    /// on (an exec then never gains what the child no longer has).
    pub fn drop_capabilities(mut self, caps: crate::caps::CapabilitySet) -> Self {
        self.drop_caps = caps.bits();
        self
    }

    /// Run the program with these credentials (see [`Credentials`]): switched after the
    /// setup (which needs the caller's privileges) and its handover, just before exec.
    pub fn credentials(mut self, creds: Credentials) -> Self {
        self.creds = Some(creds);
        self
    }

    /// Wait for the parent's acknowledgement (after `before_setup` and `with_listener`) before
    /// exec; the listener is then handed over without waiting for `before_setup`.
    pub fn wait_ack(mut self, on: bool) -> Self {
        self.wait_ack = on;
        self
    }

    /// Spawn `cmd` as a member. `before_setup(pid)` runs (on a helper thread) while the child
    /// sets itself up, before it hands its listener over; `with_listener(&listener)` runs once the
    /// listener has arrived (before exec when [`wait_ack`](Self::wait_ack) is on). An error
    /// from either aborts the child and is returned.
    ///
    /// `cmd` gets a `pre_exec` hook for this one spawn: spawning it again fails.
    pub fn spawn<B, L, E>(
        self,
        cmd: &mut Command,
        before_setup: B,
        with_listener: L,
    ) -> std::result::Result<Spawned, SpawnError<E>>
    where
        B: FnOnce(i32) -> std::result::Result<(), E> + Send,
        L: FnOnce(&Listener) -> std::result::Result<(), E> + Send,
        E: std::error::Error + Send + 'static,
    {
        if !self.flags.contains(FilterFlags::NEW_LISTENER) {
            return Err(SysError::new(
                "spawn member: filter flags lack NEW_LISTENER",
                Errno::INVAL,
            )
            .into());
        }
        let mut setup = self;
        setup.canonical_covers()?;
        refuse_inherited_fds(&setup)?;
        let cwd_again = if setup.makes_mount_namespace() {
            if setup.cwd.is_none() {
                // The working directory is taken again after the mounts: one taken before
                // (the caller's, or `cmd`'s) stays in the host's mount tree, beneath every
                // cover and inside every detached instance.
                let dir = std::env::current_dir()
                    .map(|here| match cmd.get_current_dir() {
                        Some(d) => here.join(d),
                        None => here,
                    })
                    .unwrap_or_else(|_| std::path::PathBuf::from("/"));
                Some(cpath(&dir)?)
            } else {
                None
            }
        } else {
            None
        };
        setup.cwd_again = cwd_again;
        let (parent_sock, child_sock) = child_socket_pair()?;
        let wait_ack = setup.wait_ack;
        let plan = Arc::new(ChildPlan::new(
            setup,
            child_sock.as_raw_fd(),
            parent_sock.as_raw_fd(),
        )?);
        let hook = Arc::clone(&plan);
        // SAFETY: the hook runs in the forked child before exec. `child_side` makes raw system
        // calls only (getpid, fcntl, fstat, fstatfs, getpeername, send/recv, unshare, mount,
        // chdir, prctl, seccomp, sendmsg, close) on data prepared before the fork; it
        // allocates nothing and takes no locks.
        unsafe {
            cmd.pre_exec(move || child_side(&hook));
        }
        let mut report = None;
        let (spawned, parent) = std::thread::scope(|s| {
            let report = &mut report;
            let helper = s.spawn(|| {
                let r = parent_side(&parent_sock, before_setup, with_listener, wait_ack, report);
                if r.is_err() {
                    // Unblock a child still waiting for us.
                    let _ = shutdown(&parent_sock);
                }
                r
            });
            let spawned = cmd.spawn();
            // The child end is closed now; a second spawn of `cmd` must not use its number.
            plan.sock.store(-1, Ordering::SeqCst);
            // Closed before the helper is waited for: a child that died before exec without
            // telling `spawn` (killed by a signal, an abort) then ends the helper's wait (end
            // of file) instead of leaving it waiting for a message that never comes.
            drop(child_sock);
            if spawned.is_err() {
                // Unblock the helper if it still waits for the child.
                let _ = shutdown(&parent_sock);
            }
            let parent = helper.join().unwrap_or_else(|_| {
                Err(SpawnError::Sys(SysError::new(
                    "spawn member: helper thread panicked",
                    Errno::IO,
                )))
            });
            (spawned, parent)
        });
        if spawned.is_err() || parent.is_err() {
            // A child that failed in its setup said where before it gave up (the spawn has
            // returned, so the report is queued if there is one): that is the cause, and the
            // parent's error only its consequence (`EPIPE`, a tag refused for a process gone).
            if let Some((step, errno)) = report.or_else(|| read_report(&parent_sock)) {
                return Err(SpawnError::Setup(SysError::new(plan.describe(step), errno)));
            }
        }
        match (spawned, parent) {
            (Ok(child), Ok(listener)) => Ok(Spawned { child, listener }),
            (Ok(mut child), Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
            // The parent side's error explains a child that gave up (ECANCELED) best.
            (Err(_), Err(e)) => Err(e),
            // The errno is the cause (ENOENT: no such command); say it once.
            (Err(e), Ok(_)) => Err(SpawnError::Sys(match Errno::from_io_error(&e) {
                Some(errno) => SysError::new("executing the command", errno),
                None => SysError::new(format!("spawning the member: {e}"), Errno::IO),
            })),
        }
    }
}

/// The parent's and the child's ends of their socket, both above the standard descriptors:
/// the child closes the parent's by number after `Command` has set up its standard input and
/// output (a caller running with fd 0 closed gets its next socket as fd 0).
fn child_socket_pair() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    let (parent, child) = seqpacket_pair()?;
    Ok((above_stdio(parent)?, above_stdio(child)?))
}

/// Why a spawn failed: a system call (its errno says why; `ENOENT` from executing: no such
/// command), or one of the caller's callbacks, whose error is kept as it was.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Sys(#[from] SysError),
    /// A step of the child's setup between fork and exec failed (a mount, the filter, the
    /// credentials): the error names the step, and the path where it has one; the command
    /// never ran.
    #[error("setting the member up: {0}")]
    Setup(SysError),
    /// The callback that runs before the child hands its listener over failed; the program
    /// never ran.
    #[error("before starting process {pid}: {source}")]
    Before {
        pid: i32,
        #[source]
        source: E,
    },
    /// The callback given the child's listener failed; the child never ran its command.
    #[error("with the seccomp listener of process {pid}: {source}")]
    WithListener {
        pid: i32,
        #[source]
        source: E,
    },
}

/// Make `cmd` drop `caps` from every capability set before it execs, as
/// [`MemberSetup::drop_capabilities`] does, for starts that use no [`MemberSetup`] (a member
/// moving a child into a namespace below its own). Best effort for the bounding set: where the
/// child may not change it (no `CAP_SETPCAP`) it stays, and a setuid-root exec could bring the
/// capabilities back (bpfnsd's supervisor judges each call by the capabilities the caller then
/// holds).
pub fn drop_capabilities_before_exec(cmd: &mut Command, caps: crate::caps::CapabilitySet) {
    let mask = caps.bits();
    // SAFETY: the hook runs in the child between fork and exec and makes raw system calls only
    // (prctl, capget, capset) on stack data.
    unsafe {
        cmd.pre_exec(move || drop_caps_raw(mask, true));
    }
}

/// Make `cmd` install `filter` (with `no_new_privs`, which an unprivileged task needs for it)
/// before it execs: for starts that use no [`MemberSetup`] (a member moving a child into a
/// namespace below its own, which keeps the filter it inherits and gets this one on top: the
/// kernel runs every filter, and an `ERRNO` of the newer one outranks the older one's
/// `USER_NOTIF` and `ALLOW`). The exec fails if the filter cannot be installed.
pub fn install_filter_before_exec(cmd: &mut Command, filter: Filter) {
    // SAFETY: the hook runs in the child between fork and exec and makes raw system calls only
    // (prctl, seccomp) on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            set_no_new_privs_raw()
                .map_err(|e| std::io::Error::from_raw_os_error(e.raw_os_error()))?;
            install_filter_raw(&filter, FilterFlags::EMPTY)
                .map(drop)
                .map_err(|e| std::io::Error::from_raw_os_error(e.raw_os_error()))
        });
    }
}

impl MemberSetup {
    /// Take the covered, detached and read-only paths canonical, then leave out the covers
    /// and read-only mounts of paths below another cover: after the cover they are not there
    /// to mount on (a daemon whose namespaces' bpffs directory lies in its state directory has
    /// both hidden), and nothing below a cover can be reached anyway.
    ///
    /// Canonical first: mount(2) resolves `..` and symbolic links, so a path that only reads as
    /// if it were below a cover (`/run/bpfns/ns/../bpfns.sock`'s directory) is elsewhere, and
    /// must keep its own mount. A path that cannot be resolved stays as given and is never
    /// left out: its mount fails, and the start with it. Mount points read from mountinfo are
    /// canonical already. The inherited-fd check compares against these same paths.
    fn canonical_covers(&mut self) -> Result<()> {
        let path = |c: &CString| PathBuf::from(std::ffi::OsStr::from_bytes(c.as_bytes()));
        // The canonical form, if the path resolves.
        let canonical = |c: &CString| -> Result<Option<CString>> {
            match path(c).canonicalize() {
                Ok(p) => cpath(&p).map(Some),
                Err(_) => Ok(None),
            }
        };
        let mut hide = Vec::new();
        for h in std::mem::take(&mut self.hide) {
            hide.push(match canonical(&h)? {
                Some(c) => (c, true),
                None => (h, false),
            });
        }
        for d in &mut self.detach {
            if let Some(c) = canonical(d)? {
                *d = c;
            }
        }
        for (r, mount_point) in &mut self.read_only {
            if !*mount_point {
                if let Some(c) = canonical(r)? {
                    *r = c;
                }
            }
        }
        let covers: Vec<PathBuf> = hide
            .iter()
            .filter(|(_, resolved)| *resolved)
            .map(|(c, _)| path(c))
            .collect();
        let below_a_cover = |p: &Path| covers.iter().any(|c| p != c && p.starts_with(c));
        self.hide = hide
            .into_iter()
            .filter(|(c, resolved)| !(*resolved && below_a_cover(&path(c))))
            .map(|(c, _)| c)
            .collect();
        self.read_only.retain(|(r, _)| !below_a_cover(&path(r)));
        Ok(())
    }

    /// Whether the child gets a private mount namespace (what `child_side` tests).
    fn makes_mount_namespace(&self) -> bool {
        self.bpffs.is_some()
            || !self.detach.is_empty()
            || !self.hide.is_empty()
            || !self.read_only.is_empty()
    }
}

/// Refuse to start a member that would inherit a file descriptor that reaches past its
/// mounts. A descriptor is not moved into the member's mount namespace (its root and working
/// directory are): a directory's `..` walks the host's mount tree, below every cover and
/// read-only mount (flock(1) leaves one open for its command, `exec 3<DIR` another). So every
/// directory and `O_PATH` descriptor is refused, and any on a bpffs or cgroupfs, or below a
/// path the member is kept from (hidden, detached, read-only), or connected to a socket below
/// a hidden or detached one (bpfnsd's listener keeper, in its state directory); and, for
/// every member, a connection to bpfnsd (it would answer the member as its caller). A descriptor of an
/// object (a map handed over on purpose), a pipe, another socket or a file elsewhere is let
/// through.
/// (Checked before the fork: a descriptor another thread opens without close-on-exec in
/// between is not seen.)
fn refuse_inherited_fds(setup: &MemberSetup) -> Result<()> {
    use std::os::fd::BorrowedFd;
    // Without a mount namespace of its own the member sees what its caller sees: only a
    // connection to bpfnsd matters then.
    let mounts = setup.makes_mount_namespace();
    // Canonical, as the descriptors' paths are ([`MemberSetup::canonical_covers`]).
    let kept: Vec<PathBuf> = setup
        .hide
        .iter()
        .chain(&setup.detach)
        .chain(setup.read_only.iter().map(|(p, _)| p))
        .map(|c| PathBuf::from(std::ffi::OsStr::from_bytes(c.as_bytes())))
        .collect();
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|e| {
        SysError::new(
            "listing /proc/self/fd",
            Errno::from_io_error(&e).unwrap_or(Errno::IO),
        )
    })?;
    for e in dir.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else {
            continue;
        };
        // SAFETY: F_GETFD only reads the flags of `fd`, which may be closed meanwhile (EBADF).
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 || flags & libc::FD_CLOEXEC != 0 {
            continue;
        }
        // SAFETY: `fd` is open (F_GETFD succeeded) and only borrowed for these calls.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        let target = crate::procfs::fd_target(b).unwrap_or_default();
        let why = if peer_is(fd, &setup.daemon_socket) {
            Some("a connection to bpfnsd, which would answer the member as you")
        } else if !mounts {
            None
        } else if peer_below(fd, &[&setup.hide, &setup.detach]) {
            Some("a connection to a socket below a path members are kept from")
        } else if rustix::fs::fcntl_getfl(b).is_ok_and(|f| f.contains(rustix::fs::OFlags::PATH)) {
            Some("an O_PATH descriptor")
        } else if rustix::fs::fstat(b)
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir())
        {
            Some("a directory")
        } else {
            match crate::fs::fd_fs_magic(b).ok() {
                Some(crate::fs::BPF_FS_MAGIC) => Some("a bpffs"),
                Some(crate::fs::CGROUP_SUPER_MAGIC | crate::fs::CGROUP2_SUPER_MAGIC) => {
                    Some("a cgroupfs")
                }
                _ if kept.iter().any(|k| Path::new(&target).starts_with(k)) => {
                    Some("a path members are kept from")
                }
                _ => None,
            }
        };
        if let Some(why) = why {
            return Err(SysError::new(
                format!(
                    "file descriptor {fd} is open on {target} ({why}): the member would inherit \
                     it and reach past its own mounts; close it before starting the member (in \
                     a shell: {fd}<&-), or open it close-on-exec"
                ),
                Errno::XDEV,
            ));
        }
    }
    Ok(())
}

/// The child's standard descriptors, as `Command` set them up after the parent's check
/// ([`refuse_inherited_fds`]; `Stdio::from` a directory's `File` is close-on-exec there): none
/// may be a connection to bpfnsd, nor, with `mounts` (a mount namespace of its own), a
/// connection to a socket below `kept` (hidden or detached paths), a directory, an `O_PATH`
/// descriptor, or on a bpffs or cgroupfs. Raw system calls.
fn stdio_reaches_nothing(
    daemon_socket: &[CString],
    kept: &[&[CString]],
    mounts: bool,
) -> io::Result<()> {
    for fd in 0..3 {
        if peer_is(fd, daemon_socket) {
            return Err(io_err(Errno::XDEV));
        }
        if !mounts {
            continue;
        }
        if peer_below(fd, kept) {
            return Err(io_err(Errno::XDEV));
        }
        // SAFETY: F_GETFL reads the status flags of `fd` (EBADF if it is closed).
        let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if fl < 0 {
            continue;
        }
        // SAFETY: a plain-data struct, all zeroes valid; filled by the kernel below.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to the structs above.
        let dir =
            unsafe { libc::fstat(fd, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        // SAFETY: as above.
        let magic = if unsafe { libc::fstatfs(fd, &mut fs) } == 0 {
            fs.f_type as i64
        } else {
            0
        };
        if fl & libc::O_PATH != 0
            || dir
            || [
                crate::fs::BPF_FS_MAGIC,
                crate::fs::CGROUP_SUPER_MAGIC,
                crate::fs::CGROUP2_SUPER_MAGIC,
            ]
            .contains(&magic)
        {
            return Err(io_err(Errno::XDEV));
        }
    }
    Ok(())
}

/// Whether `fd` is a Unix socket connected to one of the paths `paths`. Raw system calls.
fn peer_is(fd: RawFd, paths: &[CString]) -> bool {
    with_peer_name(fd, |got| {
        paths.iter().any(|p| {
            let want = p.as_bytes();
            want.len() == got.len() && want.iter().zip(got).all(|(a, b)| *a as libc::c_char == *b)
        })
    })
}

/// Whether `fd` is a Unix socket connected to a path below (or at) one of `dirs`: a socket
/// in a directory the member is kept from (the listener keeper's, in bpfnsd's hidden state
/// directory). Raw system calls.
fn peer_below(fd: RawFd, dirs: &[&[CString]]) -> bool {
    with_peer_name(fd, |got| {
        dirs.iter().flat_map(|d| d.iter()).any(|d| {
            let d = d.as_bytes();
            let d = d.strip_suffix(b"/").unwrap_or(d);
            got.len() >= d.len()
                && d.iter().zip(got).all(|(a, b)| *a as libc::c_char == *b)
                && (got.len() == d.len() || got[d.len()] == b'/' as libc::c_char)
        })
    })
}

/// `f` of the path `fd` is connected to (a Unix socket's peer name, up to its NUL); false for
/// anything else. Raw system calls, nothing allocated.
fn with_peer_name(fd: RawFd, f: impl FnOnce(&[libc::c_char]) -> bool) -> bool {
    // SAFETY: a plain-data struct, all zeroes valid; filled by the kernel below.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` and `len` describe a buffer of that size; ENOTSOCK for anything else.
    let r = unsafe { libc::getpeername(fd, (&raw mut addr).cast(), &mut len) };
    if r != 0 || addr.sun_family != libc::AF_UNIX as libc::sa_family_t {
        return false;
    }
    let n = (len as usize)
        .saturating_sub(std::mem::size_of::<libc::sa_family_t>())
        .min(addr.sun_path.len());
    let got = &addr.sun_path[..n];
    // An abstract name (a leading NUL) names no path.
    if got.first().is_none_or(|&c| c == 0) {
        return false;
    }
    f(got.split(|&c| c == 0).next().unwrap_or(got))
}

/// What the child needs, prepared before the fork.
#[derive(Debug)]
struct ChildPlan {
    filter: Filter,
    flags: FilterFlags,
    no_new_privs: bool,
    bpffs: Option<CString>,
    detach: Vec<CString>,
    hide: Vec<CString>,
    /// Paths made read-only, and whether each is a mount point already.
    read_only: Vec<(CString, bool)>,
    cwd: Option<CString>,
    cwd_again: Option<CString>,
    daemon_socket: Vec<CString>,
    /// A mount namespace of its own ([`MemberSetup::makes_mount_namespace`]).
    mounts: bool,
    wait_ack: bool,
    drop_caps: u64,
    creds: Option<Credentials>,
    landlock: bool,
    sock: AtomicI32,
    /// The parent's end, which the fork copied: closed first in the child, so that the
    /// parent's death ends the child's waits (end of file) instead of leaving it blocked.
    parent_sock: RawFd,
    /// The parent's pid: the child dies with the thread that forked it
    /// (`PR_SET_PDEATHSIG`) until it is let go, and gives up if the parent is gone already.
    /// (Other starts of the same process may hold copies of this one's ends.)
    parent_pid: i32,
    root: CString,
    sys_fs_bpf: CString,
    tmpfs: CString,
    tmpfs_opts: CString,
    dev_null: CString,
    preloaded: [CString; 2],
}

impl ChildPlan {
    fn new(s: MemberSetup, sock: RawFd, parent_sock: RawFd) -> Result<Self> {
        let c = |v: &str| {
            CString::new(v).map_err(|_| SysError::new("spawn member: string", Errno::INVAL))
        };
        Ok(Self {
            mounts: s.makes_mount_namespace(),
            filter: s.filter,
            flags: s.flags,
            no_new_privs: s.no_new_privs,
            bpffs: s.bpffs,
            detach: s.detach,
            hide: s.hide,
            read_only: s.read_only,
            cwd: s.cwd,
            cwd_again: s.cwd_again,
            daemon_socket: s.daemon_socket,
            wait_ack: s.wait_ack,
            drop_caps: s.drop_caps,
            creds: s.creds,
            landlock: s.landlock,
            sock: AtomicI32::new(sock),
            parent_sock,
            parent_pid: std::process::id() as i32,
            root: c("/")?,
            sys_fs_bpf: c("/sys/fs/bpf")?,
            tmpfs: c("tmpfs")?,
            tmpfs_opts: c("mode=0555")?,
            dev_null: c("/dev/null")?,
            preloaded: [c("/sys/fs/bpf/maps.debug")?, c("/sys/fs/bpf/progs.debug")?],
        })
    }
}

fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A step of the child's setup, as the child reports the one that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Waiting for the parent or handing the listener over: a failure there is the parent's
    /// doing (or the end of the parent), reported by the parent itself.
    Exchange,
    Stdio,
    Unshare,
    Slave,
    Bpffs,
    Preloaded,
    Detach(u16),
    Hide(u16),
    ReadOnly(u16),
    Chdir,
    DropCaps,
    NoNewPrivs,
    Landlock,
    Filter,
    Credentials,
}

impl Step {
    const KINDS: [Step; 15] = [
        Step::Exchange,
        Step::Stdio,
        Step::Unshare,
        Step::Slave,
        Step::Bpffs,
        Step::Preloaded,
        Step::Detach(0),
        Step::Hide(0),
        Step::ReadOnly(0),
        Step::Chdir,
        Step::DropCaps,
        Step::NoNewPrivs,
        Step::Landlock,
        Step::Filter,
        Step::Credentials,
    ];

    fn kind(self) -> u8 {
        let same = |k: &Step| std::mem::discriminant(k) == std::mem::discriminant(&self);
        Step::KINDS.iter().position(same).unwrap_or(0) as u8
    }

    fn index(self) -> u16 {
        match self {
            Step::Detach(i) | Step::Hide(i) | Step::ReadOnly(i) => i,
            _ => 0,
        }
    }

    /// The report: `FAILED`, the kind, the index, the errno. Allocation-free.
    fn report(self, errno: i32) -> [u8; 8] {
        let [i0, i1] = self.index().to_ne_bytes();
        let [e0, e1, e2, e3] = errno.to_ne_bytes();
        [FAILED, self.kind(), i0, i1, e0, e1, e2, e3]
    }

    fn from_report(b: &[u8]) -> Option<(Step, Errno)> {
        let [FAILED, kind, i0, i1, e0, e1, e2, e3] = *b else {
            return None;
        };
        let i = u16::from_ne_bytes([i0, i1]);
        let step = match *Step::KINDS.get(kind as usize)? {
            Step::Detach(_) => Step::Detach(i),
            Step::Hide(_) => Step::Hide(i),
            Step::ReadOnly(_) => Step::ReadOnly(i),
            s => s,
        };
        Some((
            step,
            Errno::from_raw_os_error(i32::from_ne_bytes([e0, e1, e2, e3])),
        ))
    }
}

/// Read a child's [`Step`] report if one is queued on `sock` (without waiting).
fn read_report(sock: &std::os::fd::OwnedFd) -> Option<(Step, Errno)> {
    let mut b = [0u8; 8];
    // SAFETY: `b` is writable for its length; MSG_DONTWAIT: never blocks.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            b.as_mut_ptr().cast(),
            b.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n != b.len() as isize {
        return None;
    }
    Step::from_report(&b)
}

impl ChildPlan {
    /// What the child was doing at `step`, for an error message.
    fn describe(&self, step: Step) -> String {
        let path = |list: &[CString], i: u16| {
            list.get(i as usize)
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        match step {
            Step::Exchange => "talking to the parent".into(),
            Step::Stdio => "a standard descriptor (0, 1 or 2) is a directory, an O_PATH \
                            descriptor, on a bpffs or cgroupfs, or a connection to bpfnsd: the \
                            member would reach past its own mounts through it"
                .into(),
            Step::Unshare => "making a mount namespace of its own (unshare)".into(),
            Step::Slave => "making every mount of it a slave".into(),
            Step::Bpffs => format!(
                "bind-mounting the namespace's bpffs {} over /sys/fs/bpf",
                self.bpffs
                    .as_ref()
                    .map(|c| c.to_string_lossy())
                    .unwrap_or_default()
            ),
            Step::Preloaded => {
                "covering the preloaded iterators /sys/fs/bpf/maps.debug and progs.debug".into()
            }
            Step::Detach(i) => format!("detaching the mount {}", path(&self.detach, i)),
            Step::Hide(i) => format!("covering {} with an empty tmpfs", path(&self.hide, i)),
            Step::ReadOnly(i) => {
                let list: Vec<CString> = self.read_only.iter().map(|(p, _)| p.clone()).collect();
                format!("making {} read-only", path(&list, i))
            }
            Step::Chdir => "changing to the working directory".into(),
            Step::DropCaps => "dropping capabilities".into(),
            Step::NoNewPrivs => "setting no_new_privs".into(),
            Step::Landlock => "entering a Landlock domain".into(),
            Step::Filter => "installing the seccomp filter".into(),
            Step::Credentials => "switching to the requested user, groups and capabilities".into(),
        }
    }
}

/// The child's half, between fork and exec: raw system calls only. A step that fails is
/// reported to the parent ([`Step`]) before the child gives up.
fn child_side(plan: &ChildPlan) -> io::Result<()> {
    let sock = plan.sock.load(Ordering::SeqCst);
    if sock < 0 {
        return Err(io_err(Errno::BADF));
    }
    // SAFETY: the parent's end, copied by the fork; nothing in the child uses it (it is above
    // the standard descriptors, which `Command` may have just set up).
    unsafe { libc::close(plan.parent_sock) };
    crate::process::die_with_parent_raw(plan.parent_pid)?;
    let mut step = Step::Exchange;
    let mut r = child_steps(plan, sock, &mut step);
    if r.is_ok() {
        // Let go: the program outlives whoever started it.
        r = crate::process::die_with_parent_raw(0);
    }
    if let Err(e) = &r {
        if step != Step::Exchange {
            let _ = send_raw(sock, &step.report(e.raw_os_error().unwrap_or(libc::EIO)));
        }
    }
    r
}

fn child_steps(plan: &ChildPlan, sock: RawFd, step: &mut Step) -> io::Result<()> {
    // SAFETY: getpid has no preconditions.
    let pid: i32 = unsafe { libc::getpid() };
    send_raw(sock, &pid.to_ne_bytes()).map_err(io_err)?;
    *step = Step::Stdio;
    stdio_reaches_nothing(
        &plan.daemon_socket,
        &[&plan.hide, &plan.detach],
        plan.mounts,
    )?;
    // The setup runs while the parent's `before_setup` (bpfnsd tagging this process) is under
    // way: none of it depends on the tag, and nothing of the program runs before GO or ACK.
    if plan.mounts {
        *step = Step::Unshare;
        // SAFETY: plain flag argument.
        check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
        *step = Step::Slave;
        // SAFETY: every pointer is a NUL-terminated string prepared before the fork, or null
        // where mount(2) allows it.
        check(unsafe {
            libc::mount(
                std::ptr::null(),
                plan.root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            )
        })?;
        if let Some(src) = &plan.bpffs {
            *step = Step::Bpffs;
            // SAFETY: as above.
            check(unsafe {
                libc::mount(
                    src.as_ptr(),
                    plan.sys_fs_bpf.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                )
            })?;
            *step = Step::Preloaded;
            for p in &plan.preloaded {
                cover_file(p, &plan.dev_null)?;
            }
        }
        for (i, m) in plan.detach.iter().enumerate() {
            *step = Step::Detach(i as u16);
            // SAFETY: a NUL-terminated string prepared before the fork.
            let r = unsafe { libc::umount2(m.as_ptr(), libc::MNT_DETACH) };
            // Gone since the list was made, or detached with a mount above it: nothing to do.
            if r != 0 {
                let e = io::Error::last_os_error();
                if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) {
                    return Err(e);
                }
            }
        }
        for (i, h) in plan.hide.iter().enumerate() {
            *step = Step::Hide(i as u16);
            // SAFETY: as above.
            check(unsafe {
                libc::mount(
                    plan.tmpfs.as_ptr(),
                    h.as_ptr(),
                    plan.tmpfs.as_ptr(),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    plan.tmpfs_opts.as_ptr().cast(),
                )
            })?;
        }
        for (i, (r, mount_point)) in plan.read_only.iter().enumerate() {
            *step = Step::ReadOnly(i as u16);
            if !mount_point {
                // SAFETY: as above.
                check(unsafe {
                    libc::mount(
                        r.as_ptr(),
                        r.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    )
                })?;
            }
            // SAFETY: as above.
            check(unsafe {
                libc::mount(
                    std::ptr::null(),
                    r.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND
                        | libc::MS_REMOUNT
                        | libc::MS_RDONLY
                        | libc::MS_NOSUID
                        | libc::MS_NODEV,
                    std::ptr::null(),
                )
            })?;
        }
    }
    *step = Step::Chdir;
    if let Some(dir) = &plan.cwd_again {
        // SAFETY: NUL-terminated strings prepared before the fork.
        if unsafe { libc::chdir(dir.as_ptr()) } != 0 {
            // SAFETY: as above.
            check(unsafe { libc::chdir(plan.root.as_ptr()) })?;
        }
    }
    if let Some(dir) = &plan.cwd {
        // SAFETY: a NUL-terminated string prepared before the fork.
        check(unsafe { libc::chdir(dir.as_ptr()) })?;
    }
    *step = Step::DropCaps;
    if plan.drop_caps != 0 {
        drop_caps_raw(plan.drop_caps, plan.no_new_privs)?;
    }
    *step = Step::NoNewPrivs;
    if plan.no_new_privs {
        set_no_new_privs_raw().map_err(io_err)?;
    }
    *step = Step::Landlock;
    if plan.landlock {
        crate::landlock::restrict_self_raw().map_err(io_err)?;
    }
    *step = Step::Filter;
    let fd = install_filter_raw(&plan.filter, plan.flags)
        .map_err(io_err)?
        .ok_or_else(|| io_err(Errno::INVAL))?;
    *step = Step::Exchange;
    let mut b = [0u8; 1];
    // With an acknowledgement to wait for, the listener goes over at once, while the parent's
    // `before_setup` may still be under way: the ACK comes after it and before exec. Without
    // one, nothing may go further before `before_setup` succeeded (GO).
    if !plan.wait_ack {
        let go = recv_exact_raw(sock, &mut b).map_err(io_err);
        if go.is_err() || b[0] != GO {
            // SAFETY: `fd` is the listener the kernel just gave us; nothing else uses it.
            unsafe { libc::close(fd) };
            go?;
            return Err(io_err(Errno::CANCELED));
        }
    }
    let sent = send_fd_raw(sock, &[LISTENER], fd);
    // The program must never hold its own listener.
    // SAFETY: `fd` is the listener the kernel just gave us; nothing else uses it.
    unsafe { libc::close(fd) };
    sent.map_err(io_err)?;
    if plan.wait_ack {
        recv_exact_raw(sock, &mut b).map_err(io_err)?;
        if b[0] != ACK {
            return Err(io_err(Errno::CANCELED));
        }
    }
    if let Some(c) = &plan.creds {
        *step = Step::Credentials;
        set_credentials_raw(c)?;
    }
    Ok(())
}

/// Become `c`, with raw system calls only: drop every other capability from the bounding set
/// (while `CAP_SETPCAP` is still held), keep the permitted set across the uid change
/// (`PR_SET_KEEPCAPS`), change groups and ids, set the kept capabilities as effective,
/// permitted and inheritable, and raise them in the ambient set.
fn set_credentials_raw(c: &Credentials) -> io::Result<()> {
    let keep = c.keep.bits();
    for cap in 0..64u32 {
        if keep & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: plain integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
    }
    if let Some(uid) = c.uid {
        let gid = c.gid.unwrap_or(uid);
        // SAFETY: plain integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) })?;
        // SAFETY: a zero-length list with a null pointer clears the supplementary groups.
        check(unsafe { libc::setgroups(0, std::ptr::null()) })?;
        // SAFETY: plain integer arguments.
        check(unsafe { libc::setresgid(gid, gid, gid) })?;
        // SAFETY: plain integer arguments.
        check(unsafe { libc::setresuid(uid, uid, uid) })?;
    }
    let header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let data = [0usize, 1].map(|i| {
        let m = (keep >> (32 * i)) as u32;
        CapData {
            effective: m,
            permitted: m,
            inheritable: m,
        }
    });
    // SAFETY: `header` and two `CapData` are what capset(2) reads for version 3; the kept
    // capabilities are a subset of the permitted set (kept across the uid change).
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for cap in 0..64u32 {
        if keep & (1u64 << cap) == 0 {
            continue;
        }
        // SAFETY: plain integer arguments.
        check(unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            )
        })?;
    }
    Ok(())
}

/// If `path` exists, cover it with a read-only bind mount of `src` (`/dev/null`) that allows
/// no device access: opening it then fails (`EACCES`), and nothing but host root can undo it.
fn cover_file(path: &CString, src: &CString) -> io::Result<()> {
    // SAFETY: a NUL-terminated string prepared before the fork.
    if unsafe { libc::access(path.as_ptr(), libc::F_OK) } != 0 {
        return Ok(());
    }
    // SAFETY: NUL-terminated strings prepared before the fork, or null where mount(2) allows.
    check(unsafe {
        libc::mount(
            src.as_ptr(),
            path.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    })?;
    // SAFETY: as above.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            path.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND
                | libc::MS_REMOUNT
                | libc::MS_RDONLY
                | libc::MS_NOSUID
                | libc::MS_NODEV
                | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    })
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct` (two of them with version 3: capabilities 0-31, 32-63).
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`.
const CAP_VERSION_3: u32 = 0x2008_0522;

/// Drop the capabilities in `mask` from the calling thread's bounding and ambient sets and
/// from its effective, permitted and inheritable sets, with raw system calls only. A bounding
/// set the thread may not change (`EPERM`, no `CAP_SETPCAP`) is tolerated when
/// `no_new_privs` will be set: an exec then cannot raise the permitted set.
fn drop_caps_raw(mask: u64, no_new_privs: bool) -> io::Result<()> {
    for cap in 0..64u32 {
        if mask & (1u64 << cap) == 0 {
            continue;
        }
        // SAFETY: plain integer arguments.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r != 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // A capability this kernel does not know: nothing to drop.
                Some(libc::EINVAL) => continue,
                Some(libc::EPERM) if no_new_privs => {}
                _ => return Err(e),
            }
        }
        // SAFETY: plain integer arguments. Failure (no ambient sets) leaves nothing to lower.
        unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_LOWER as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            )
        };
    }
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: `header` and two `CapData` are what capget(2) reads and writes for version 3.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for (i, d) in data.iter_mut().enumerate() {
        let m = (mask >> (32 * i)) as u32;
        d.effective &= !m;
        d.permitted &= !m;
        d.inheritable &= !m;
    }
    // SAFETY: as above; lowering one's own sets is always allowed.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The parent's half, on a helper thread while `Command::spawn` waits for the exec.
fn parent_side<B, L, E>(
    sock: &std::os::fd::OwnedFd,
    before_setup: B,
    with_listener: L,
    wait_ack: bool,
    report: &mut Option<(Step, Errno)>,
) -> std::result::Result<Listener, SpawnError<E>>
where
    B: FnOnce(i32) -> std::result::Result<(), E>,
    L: FnOnce(&Listener) -> std::result::Result<(), E>,
    E: std::error::Error + 'static,
{
    use std::os::fd::AsFd;
    let raw = sock.as_raw_fd();
    let mut pid = [0u8; 4];
    recv_exact_raw(raw, &mut pid)
        .map_err(|e| SysError::new("spawn member: waiting for the child's pid", e))?;
    let pid = i32::from_ne_bytes(pid);
    if let Err(source) = before_setup(pid) {
        let _ = send_raw(raw, &[ABORT]);
        return Err(SpawnError::Before { pid, source });
    }
    if !wait_ack {
        send_raw(raw, &[GO]).map_err(|e| SysError::new("spawn member: go", e))?;
    }
    // Room for a child's report of a failed step, which comes instead of the listener.
    let mut b = [0u8; 8];
    let (n, fd) = recv_fd(sock.as_fd(), &mut b).map_err(|e| {
        SysError::new(
            format!("spawn member: receiving the listener: {}", e.op),
            e.errno,
        )
    })?;
    let fd = match fd {
        Some(fd) if n == 1 && b[0] == LISTENER => fd,
        // EOF, or the step that failed: the child gave up before sending (spawn reports why).
        _ => {
            *report = Step::from_report(&b[..n]);
            return Err(
                SysError::new("spawn member: the child sent no listener", Errno::PIPE).into(),
            );
        }
    };
    let listener = Listener::from_fd(fd);
    if let Err(source) = with_listener(&listener) {
        if wait_ack {
            let _ = send_raw(raw, &[ABORT]);
        }
        return Err(SpawnError::WithListener { pid, source });
    }
    if wait_ack {
        send_raw(raw, &[ACK]).map_err(|e| SysError::new("spawn member: ack", e))?;
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::{Action, FilterBuilder, Response, Rule};
    use std::time::Duration;

    fn getppid_filter() -> Filter {
        FilterBuilder::new(Action::Allow)
            .rule(Rule::syscall(libc::SYS_getppid, Action::UserNotif))
            .build()
            .expect("filter")
    }

    /// Spawning with callbacks that do nothing.
    trait SpawnPlain {
        fn spawn_plain(
            self,
            cmd: &mut Command,
        ) -> std::result::Result<Spawned, SpawnError<std::convert::Infallible>>;
    }

    impl SpawnPlain for MemberSetup {
        fn spawn_plain(
            self,
            cmd: &mut Command,
        ) -> std::result::Result<Spawned, SpawnError<std::convert::Infallible>> {
            self.spawn(cmd, |_| Ok(()), |_| Ok(()))
        }
    }

    /// A filter that traps nothing a shell calls (a shell reads $PPID, through getppid, at
    /// start).
    fn trapping_nothing_a_shell_calls() -> Filter {
        FilterBuilder::new(Action::Allow)
            .rule(Rule::syscall(libc::SYS_acct, Action::UserNotif))
            .build()
            .expect("filter")
    }

    /// A shell under a filter trapping getppid: the supervisor (this test) answers 4242, and
    /// the callbacks saw the child's pid before anything ran.
    #[test]
    fn spawned_member_is_supervised() {
        let mut cmd = Command::new("/bin/sh");
        // `$PPID` is read by the shell at start-up through getppid().
        cmd.args(["-c", "echo $PPID"])
            .stdout(std::process::Stdio::piped());
        let mut seen = 0;
        let setup = MemberSetup::new(getppid_filter())
            .no_new_privs(true)
            .wait_ack(true);
        let sp = setup
            .spawn(
                &mut cmd,
                |pid| {
                    seen = pid;
                    Ok::<(), std::convert::Infallible>(())
                },
                |_| Ok(()),
            )
            .expect("spawn");
        assert_eq!(seen as u32, sp.child.id());
        let l = sp.listener;
        assert!(l
            .wait_readable(Some(Duration::from_secs(30)))
            .expect("poll"));
        let n = l.recv().expect("recv");
        assert_eq!(i64::from(n.nr), libc::SYS_getppid);
        l.respond(n.id, Response::Value(4242)).expect("respond");
        let out = sp.child.wait_with_output().expect("wait");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4242");
    }

    /// A capability dropped by the setup is in none of the child's sets, the bounding set
    /// included, and stays out across exec.
    #[test]
    fn dropped_capabilities_are_gone_from_every_set() {
        use crate::caps::CapabilitySet;
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "grep ^Cap /proc/self/status"])
            .stdout(std::process::Stdio::piped());
        let sp = MemberSetup::new(trapping_nothing_a_shell_calls())
            .no_new_privs(true)
            .drop_capabilities(CapabilitySet::PERFMON | CapabilitySet::SYS_ADMIN)
            .spawn_plain(&mut cmd)
            .expect("spawn");
        let out = sp.child.wait_with_output().expect("wait");
        let text = String::from_utf8_lossy(&out.stdout);
        let gone = CapabilitySet::PERFMON | CapabilitySet::SYS_ADMIN;
        let mut seen = 0;
        for line in text.lines() {
            let (name, hex) = line.split_once(':').expect("Cap line");
            let set = crate::caps::parse_mask(hex).expect("mask");
            assert!(!set.intersects(gone), "{name}: {hex}");
            seen += 1;
        }
        assert_eq!(seen, 5, "{text}");
    }

    /// A child killed before it execs (here by the callback, as an OOM kill or a signal
    /// would) makes the spawn fail; it does not leave it waiting for the listener.
    #[test]
    fn a_child_killed_before_exec_fails_the_spawn() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut cmd = Command::new("/bin/true");
            let r = MemberSetup::new(getppid_filter()).no_new_privs(true).spawn(
                &mut cmd,
                |pid| {
                    let pid = rustix::process::Pid::from_raw(pid).expect("a pid");
                    rustix::process::kill_process(pid, rustix::process::Signal::KILL)
                        .map_err(|e| SysError::new("kill", e))
                },
                |_| Ok(()),
            );
            let _ = tx.send(r.map(drop).map_err(|e| e.to_string()));
        });
        // Not a measure of speed: a spawn that never returns is the failure.
        let r = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the spawn of a killed child still waits after 2 minutes");
        assert!(r.is_err(), "a killed child spawned");
    }

    /// In a Landlock domain of its own, a member cannot reach the root (nor the namespaces) of
    /// a process outside it, this test's own included, nor signal it, while its own stay
    /// reachable; without one it can.
    #[test]
    fn a_confined_member_cannot_reach_into_other_processes() {
        if !crate::landlock::confines_members() {
            eprintln!(
                "skipped: the kernel has no Landlock scopes (ABI {:?}, 6 needed)",
                crate::landlock::abi_version()
            );
            return;
        }
        let me = std::process::id();
        let run = |confined: bool| {
            let mut cmd = Command::new("/bin/sh");
            cmd.args([
                "-c",
                "for p in \"/proc/$1/root/\" \"/proc/$1/ns/mnt\" /proc/self/root/; do \
                 if ls \"$p\" >/dev/null 2>&1; then echo ok; else echo refused; fi; done; \
                 for p in \"$1\" $$; do \
                 if kill -0 \"$p\" 2>/dev/null; then echo ok; else echo refused; fi; done",
                "sh",
                &me.to_string(),
            ])
            .stdout(std::process::Stdio::piped());
            let sp = MemberSetup::new(trapping_nothing_a_shell_calls())
                .no_new_privs(true)
                .landlock(confined)
                .spawn_plain(&mut cmd)
                .expect("spawn");
            let out = sp.child.wait_with_output().expect("wait");
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        // Its root, its mount namespace, then its own root; a signal to this process, then
        // to its own.
        assert_eq!(run(true), ["refused", "refused", "ok", "refused", "ok"]);
        // The control: the same uid, unconfined, reaches both (as root, or as the test's
        // own user reading its own process).
        assert_eq!(run(false), ["ok", "ok", "ok", "ok", "ok"]);
    }

    /// The same for a plain command (a member moving a child deeper).
    #[test]
    fn dropping_before_exec_without_a_member_setup() {
        use crate::caps::CapabilitySet;
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "grep ^Cap /proc/self/status"]);
        drop_capabilities_before_exec(&mut cmd, CapabilitySet::PERFMON);
        let out = cmd.output().expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        let root = rustix::process::geteuid().is_root();
        for line in text.lines() {
            let (name, hex) = line.split_once(':').expect("Cap line");
            let set = crate::caps::parse_mask(hex).expect("mask");
            // Without CAP_SETPCAP the bounding set stays (best effort).
            if name != "CapBnd" || root {
                assert!(!set.contains(CapabilitySet::PERFMON), "{name}: {hex}");
            }
        }
    }

    #[test]
    fn failing_callback_aborts_the_child() {
        let mut cmd = Command::new("/bin/true");
        let e = MemberSetup::new(getppid_filter())
            .no_new_privs(true)
            .spawn(
                &mut cmd,
                |_| Err(std::io::Error::other("no namespace")),
                |_| Ok(()),
            )
            .expect_err("aborted");
        // The callback's own error comes back, as it was.
        match e {
            SpawnError::Before { source, .. } => assert_eq!(source.to_string(), "no namespace"),
            e => panic!("{e}"),
        }
        // The hook refuses a second use of the same command.
        assert!(cmd.spawn().is_err());
    }

    /// Whether this test may make mount namespaces (`CAP_SYS_ADMIN`); says so when not.
    fn may_mount() -> bool {
        let ok = rustix::process::geteuid().is_root();
        if !ok {
            eprintln!("skipped: making a mount namespace needs root");
        }
        ok
    }

    /// A setup step that fails in the child is named in the error, with its path and errno,
    /// even when the parent's callback fails first because the child is gone by then (as
    /// bpfnsd's tag of a process that has exited does).
    #[test]
    fn a_failing_setup_step_is_named_with_its_path() {
        if !may_mount() {
            return;
        }
        let missing = Path::new("/nonexistent-bpfns-spawn-test/dir");
        let mut cmd = Command::new("/bin/true");
        let e = MemberSetup::new(getppid_filter())
            .no_new_privs(true)
            .hide(missing)
            .expect("path")
            .spawn(
                &mut cmd,
                |pid| {
                    // Fail only once the child has given up (a zombie, or reaped by `spawn`),
                    // as a tag of a process gone does.
                    for _ in 0..2000 {
                        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                            .unwrap_or_default();
                        let state = stat.rsplit(')').next().map(str::trim_start);
                        if stat.is_empty() || state.is_some_and(|r| r.starts_with('Z')) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(SysError::new("tagging the child", Errno::NOENT))
                },
                |_| Ok(()),
            )
            .expect_err("the cover cannot be mounted");
        match e {
            SpawnError::Setup(s) => {
                assert_eq!(s.errno, Errno::NOENT, "{s}");
                assert!(s.op.contains(&missing.display().to_string()), "{s}");
            }
            e => panic!("expected the setup step, got: {e}"),
        }
    }

    /// A cover below another cover is left out (after the first, the second has nothing to
    /// mount on), and what lies below both stays hidden.
    #[test]
    fn a_cover_below_another_cover_is_left_out() {
        if !may_mount() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("bpfns-spawn-covers-{}", std::process::id()));
        let inner = dir.join("ns");
        std::fs::create_dir_all(&inner).expect("mkdir");
        std::fs::write(inner.join("secret"), "x").expect("write");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!(
                "test ! -e {}/secret && echo hidden",
                inner.display()
            ))
            .stdout(std::process::Stdio::piped());
        let r = MemberSetup::new(trapping_nothing_a_shell_calls())
            .no_new_privs(true)
            .hide(&dir)
            .and_then(|s| s.hide(&inner))
            .expect("paths")
            .spawn_plain(&mut cmd);
        let out = r.map(|sp| sp.child.wait_with_output().expect("wait"));
        let _ = std::fs::remove_dir_all(&dir);
        let out = out.expect("a cover inside a cover is no error");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hidden");
    }

    /// A connection to a socket in a hidden directory (bpfnsd's listener keeper, in its state
    /// directory) is not handed to a member: neither inherited nor as a standard descriptor.
    /// The command never runs.
    #[test]
    fn a_connection_to_a_socket_in_a_hidden_directory_is_not_inherited() {
        if !may_mount() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("bpfns-spawn-keeper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let _listener =
            std::os::unix::net::UnixListener::bind(dir.join("keeper.sock")).expect("bind");
        let connect = || std::os::unix::net::UnixStream::connect(dir.join("keeper.sock"));
        let attempt = |cmd: &mut Command| {
            MemberSetup::new(trapping_nothing_a_shell_calls())
                .no_new_privs(true)
                .hide(&dir)
                .expect("path")
                .spawn_plain(cmd)
                .map(|sp| sp.child.wait_with_output().expect("wait"))
        };
        let shell = || {
            let mut cmd = Command::new("/bin/sh");
            cmd.args(["-c", "echo ran"])
                .stdout(std::process::Stdio::piped());
            cmd
        };
        // Inherited: refused before the fork, naming the descriptor.
        let conn = connect().expect("connect");
        rustix::io::fcntl_setfd(&conn, rustix::io::FdFlags::empty()).expect("F_SETFD");
        let inherited = attempt(&mut shell());
        drop(conn);
        // As standard input: refused by the child before it sets anything up.
        let mut cmd = shell();
        cmd.stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            connect().expect("connect"),
        )));
        let stdin = attempt(&mut cmd);
        let _ = std::fs::remove_dir_all(&dir);
        match inherited {
            Err(SpawnError::Sys(e)) => {
                assert_eq!(e.errno, Errno::XDEV, "{e}");
                assert!(
                    e.op.contains("a socket below a path members are kept from"),
                    "{e}"
                );
            }
            other => panic!("a member inherited a connection to a hidden socket: {other:?}"),
        }
        match stdin {
            Err(e) => assert!(
                e.to_string().contains("Invalid cross-device link")
                    || matches!(&e, SpawnError::Setup(s) if s.errno == Errno::XDEV),
                "{e}"
            ),
            Ok(out) => panic!(
                "a member got a connection to a hidden socket as stdin: {}",
                String::from_utf8_lossy(&out.stdout)
            ),
        }
    }

    /// With an acknowledgement to wait for, the listener goes over before `before_setup` is
    /// done; when that fails, the command still never runs.
    #[test]
    fn a_refused_member_never_runs_although_its_listener_went_over() {
        let mark = std::env::temp_dir().join(format!("bpfns-spawn-ran-{}", std::process::id()));
        let _ = std::fs::remove_file(&mark);
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(format!("echo > {}", mark.display()));
        let listener_first = std::sync::atomic::AtomicBool::new(false);
        let e = MemberSetup::new(trapping_nothing_a_shell_calls())
            .no_new_privs(true)
            .wait_ack(true)
            .spawn(
                &mut cmd,
                |_| {
                    // Refused only once the child's listener is waiting to be read.
                    std::thread::sleep(Duration::from_millis(200));
                    listener_first.store(true, Ordering::SeqCst);
                    Err(std::io::Error::other("refused"))
                },
                |_| Ok(()),
            )
            .expect_err("refused");
        assert!(matches!(e, SpawnError::Before { .. }), "{e}");
        assert!(listener_first.load(Ordering::SeqCst));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!mark.exists(), "the refused command ran");
    }

    /// A path that only reads as if it lay below a cover (`..`) is elsewhere: it keeps its own
    /// cover or read-only mount (leaving it out would leave bpfnsd's socket directory writable
    /// to a member started with `--socket /run/bpfns/ns/../bpfns.sock`).
    #[test]
    fn a_path_that_only_reads_as_below_a_cover_keeps_its_own_mount() {
        if !may_mount() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("bpfns-spawn-dotdot-{}", std::process::id()));
        for d in ["state", "run", "secret"] {
            std::fs::create_dir_all(dir.join(d)).expect("mkdir");
        }
        std::fs::write(dir.join("secret").join("s"), "x").expect("write");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!(
                "touch {d}/run/probe 2>/dev/null && echo run-writable; \
                 test -e {d}/secret/s && echo secret-seen; echo done",
                d = dir.display()
            ))
            .stdout(std::process::Stdio::piped());
        let r = MemberSetup::new(trapping_nothing_a_shell_calls())
            .no_new_privs(true)
            .hide(&dir.join("state"))
            .and_then(|s| s.hide(&dir.join("state/../secret")))
            .and_then(|s| s.read_only(&dir.join("state/../run")))
            .expect("paths")
            .spawn_plain(&mut cmd);
        let out = r.map(|sp| sp.child.wait_with_output().expect("wait"));
        let _ = std::fs::remove_dir_all(&dir);
        let out = out.expect("spawn");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("done"), "{text}");
        assert!(
            !text.contains("run-writable"),
            "a read-only mount was left out: {text}"
        );
        assert!(
            !text.contains("secret-seen"),
            "a cover was left out: {text}"
        );
    }

    /// Run by [`a_child_waiting_for_a_starter_that_was_killed_gives_up`] in a process of its
    /// own (nothing otherwise): start eight members (`member`) or gated children (`gate`) at
    /// once, from eight threads, whose parent callbacks never return; print each child's pid;
    /// wait.
    #[test]
    #[ignore = "a helper process of a_child_waiting_for_a_starter_that_was_killed_gives_up"]
    fn starter_that_hangs() {
        let Some(mode) = std::env::var_os("BPFNS_SPAWN_TEST_STARTER") else {
            return;
        };
        let announce = |pid: i32| {
            use std::io::Write;
            println!("child {pid}");
            let _ = std::io::stdout().flush();
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        };
        // Started together, so that each child is forked holding copies of the other starts'
        // sockets.
        let together = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    together.wait();
                    let mut cmd = Command::new("/bin/true");
                    if mode == "gate" {
                        let _ = crate::gate::spawn_gated(&mut cmd, |pid| -> std::io::Result<()> {
                            announce(pid)
                        });
                    } else {
                        let _ = MemberSetup::new(getppid_filter()).no_new_privs(true).spawn(
                            &mut cmd,
                            |pid| -> std::io::Result<()> { announce(pid) },
                            |_| Ok(()),
                        );
                    }
                });
            }
        });
    }

    /// Children waiting between fork and exec for a parent that was killed (`bpfns exec`
    /// SIGKILLed while bpfnsd tags its child) give up, instead of waiting forever with the
    /// caller's privileges, its filter and the caller's connection to bpfnsd — also when
    /// other starts of the same process hold copies of their sockets (or pipes): each child
    /// closes the parent's ends and dies with the thread that forked it.
    #[test]
    fn a_child_waiting_for_a_starter_that_was_killed_gives_up() {
        use std::io::BufRead;
        for mode in ["member", "gate"] {
            let mut starter = Command::new(std::env::current_exe().expect("test binary"))
                .args([
                    "spawn::tests::starter_that_hangs",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("BPFNS_SPAWN_TEST_STARTER", mode)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("starter");
            let lines = std::io::BufReader::new(starter.stdout.take().expect("stdout")).lines();
            let pids: Vec<i32> = lines
                .map_while(|l| l.ok())
                // Also after the harness's "test NAME ... ", on the same line.
                .filter_map(|l| l.split("child ").nth(1).and_then(|p| p.trim().parse().ok()))
                .take(8)
                .collect();
            assert_eq!(pids.len(), 8, "{mode}: the starter's children");
            let _ = starter.kill();
            let _ = starter.wait();
            let mut waiting = Vec::new();
            for pid in pids {
                // Gone, or a zombie for its new parent to reap. Not a measure of speed: a
                // child still waiting after a minute waits forever.
                let gone = (0..600).any(|_| {
                    let stat =
                        std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    let state = stat.rsplit(')').next().map(str::trim_start);
                    let done = stat.is_empty() || state.is_some_and(|r| r.starts_with('Z'));
                    if !done {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    done
                });
                if !gone {
                    let _ = rustix::process::kill_process(
                        rustix::process::Pid::from_raw(pid).expect("pid"),
                        rustix::process::Signal::KILL,
                    );
                    waiting.push(pid);
                }
            }
            assert!(
                waiting.is_empty(),
                "{mode}: children {waiting:?} of a killed starter still waited"
            );
        }
    }

    /// Run by [`the_child_socket_is_above_the_standard_descriptors`] in a process of its own:
    /// with fd 0 closed, make the socket pair the way `MemberSetup::spawn` makes it and print
    /// the numbers its ends get.
    #[test]
    #[ignore = "a helper process of the_child_socket_is_above_the_standard_descriptors"]
    fn socket_pair_without_stdin() {
        if std::env::var_os("BPFNS_SPAWN_TEST_NO_STDIN").is_none() {
            return;
        }
        // Closed here: std opens /dev/null on a standard descriptor closed at start.
        // SAFETY: fd 0 of this helper process, used by nothing else.
        unsafe { libc::close(0) };
        let (a, b) = child_socket_pair().expect("pair");
        println!("ends {} {}", a.as_raw_fd(), b.as_raw_fd());
    }

    /// A caller running with fd 0 closed gets its next socket as fd 0: the child closes the
    /// parent's end by number after `Command` set up its standard input, so neither end may be
    /// a standard descriptor.
    #[test]
    fn the_child_socket_is_above_the_standard_descriptors() {
        let out = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "spawn::tests::socket_pair_without_stdin",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("BPFNS_SPAWN_TEST_NO_STDIN", "1")
            .stderr(std::process::Stdio::null())
            .output()
            .expect("the helper");
        let text = String::from_utf8_lossy(&out.stdout);
        let ends: Vec<i32> = text
            .split("ends ")
            .nth(1)
            .expect("the helper's answer")
            .split_whitespace()
            .take(2)
            .map(|n| n.parse().expect("fd"))
            .collect();
        assert!(ends.len() == 2 && ends.iter().all(|&fd| fd > 2), "{text}");
    }

    #[test]
    fn failing_exec_is_reported() {
        let mut cmd = Command::new("/nonexistent/bpfns-test");
        let e = MemberSetup::new(getppid_filter())
            .no_new_privs(true)
            .spawn_plain(&mut cmd)
            .expect_err("no such program");
        assert!(
            matches!(e, SpawnError::Sys(ref s) if s.errno == Errno::NOENT),
            "{e}"
        );
    }
}
