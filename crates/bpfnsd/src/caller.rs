//! Who is calling: kernel facts about the peer of a connection, never what it says.
//!
//! The peer's pidfd (`SO_PEERPIDFD`) names the process that connected, immune to pid reuse.
//! From it: the namespace (its kernel task tag), its capabilities (`/proc/<pid>/status`,
//! read and then checked against the still-live pidfd) and its user namespace. Capabilities
//! count for host-level decisions only when the caller is in the initial user namespace:
//! a user namespace bypasses nothing (contract point (docs/design.md) 7).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use bpfns_kernel::Kernel;
use bpfns_model::NsId;

/// `CAP_SYS_ADMIN`.
pub const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_BPF`.
pub const CAP_BPF: u32 = 39;

/// A caller that cannot be identified.
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error("cannot identify the peer: {0}")]
    Peer(bpfns_sys::SysError),
    #[error("the peer process {0} exited")]
    Gone(i32),
    #[error("reading /proc/{pid}: {source}")]
    Proc {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed /proc/{0}/status")]
    Status(i32),
    #[error("reading the peer's namespace: {0}")]
    Kernel(#[from] bpfns_kernel::KernelError),
}

/// Facts about one process, read from `/proc` and the kernel side.
#[derive(Debug)]
pub struct Caller {
    pub pid: i32,
    pub uid: u32,
    pub pidfd: OwnedFd,
    /// bpfns namespace (kernel task tag; root when untagged).
    pub ns: NsId,
    /// Effective capability set, relative to `userns`.
    pub cap_eff: u64,
    /// Inode of the process's user namespace.
    pub userns: u64,
    /// The initial user namespace's inode (from the daemon's view).
    pub init_userns: u64,
}

impl Caller {
    /// Identify the process at the other end of `sock`.
    pub fn of_peer(
        sock: BorrowedFd<'_>,
        kernel: &Kernel,
        init_userns: u64,
    ) -> Result<Self, CallerError> {
        let (pid, uid, _) = bpfns_sys::unix::peer_cred(sock).map_err(CallerError::Peer)?;
        let pidfd = match bpfns_sys::unix::peer_pidfd(sock) {
            Ok(fd) => fd,
            // Before Linux 6.5: a pidfd opened now; the liveness check below still rules out
            // reading a recycled pid's facts after the peer died.
            Err(_) => bpfns_sys::process::open_pidfd(pid).map_err(|_| CallerError::Gone(pid))?,
        };
        Self::of_process(pid, uid, pidfd, kernel, init_userns)
    }

    /// Facts about process `pid` whose pidfd is `pidfd`.
    pub fn of_process(
        pid: i32,
        uid: u32,
        pidfd: OwnedFd,
        kernel: &Kernel,
        init_userns: u64,
    ) -> Result<Self, CallerError> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|source| CallerError::Proc { pid, source })?;
        let cap_eff = parse_cap_eff(&status).ok_or(CallerError::Status(pid))?;
        let userns = std::fs::metadata(format!("/proc/{pid}/ns/user"))
            .map_err(|source| CallerError::Proc { pid, source })?
            .ino();
        // Everything above was read by pid: make sure it was still our process.
        if !bpfns_sys::unix::pidfd_alive(pidfd.as_fd()) {
            return Err(CallerError::Gone(pid));
        }
        let ns = kernel.task_ns(pidfd.as_fd())?;
        Ok(Self {
            pid,
            uid,
            pidfd,
            ns,
            cap_eff,
            userns,
            init_userns,
        })
    }

    /// Re-read the namespace (a task's tag is the kernel's, and only the kernel's).
    pub fn refresh_ns(&mut self, kernel: &Kernel) -> Result<(), CallerError> {
        self.ns = kernel.task_ns(self.pidfd.as_fd())?;
        Ok(())
    }

    fn has(&self, cap: u32) -> bool {
        self.cap_eff & (1u64 << cap) != 0
    }

    /// CAP_SYS_ADMIN in the initial user namespace: host root.
    pub fn host_admin(&self) -> bool {
        self.userns == self.init_userns && self.has(CAP_SYS_ADMIN)
    }

    /// CAP_BPF (or CAP_SYS_ADMIN) in the caller's own user namespace (contract point (docs/design.md) 5).
    pub fn cap_bpf(&self) -> bool {
        self.has(CAP_BPF) || self.has(CAP_SYS_ADMIN)
    }

    /// Whether the caller may list and inspect namespaces and the daemon's status: anyone
    /// inside a namespace (for its own subtree); in the root namespace, what the kernel asks
    /// before it lists ids: `CAP_BPF` or `CAP_SYS_ADMIN` in the initial user namespace.
    pub fn may_list_namespaces(&self) -> bool {
        self.ns != NsId::ROOT || (self.userns == self.init_userns && self.cap_bpf())
    }

    /// Whether the caller may list and inspect objects: as for namespaces in the root
    /// namespace; a member needs `CAP_BPF` or `CAP_SYS_ADMIN` in its own user namespace, as
    /// its trapped `*_GET_NEXT_ID` calls do (contract point 5).
    pub fn may_list_objects(&self) -> bool {
        self.may_list_namespaces() && self.cap_bpf()
    }

    /// The view the model's policy functions take.
    pub fn policy(&self) -> bpfns_model::Caller {
        bpfns_model::Caller {
            ns: self.ns,
            host_admin: self.host_admin(),
        }
    }
}

/// The `CapEff:` line of `/proc/<pid>/status`.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
}

/// The parent pid of `pid`, from `/proc/<pid>/stat` (the comm field may hold spaces and
/// parentheses: parse after the last ')').
pub fn parent_pid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_ppid(&stat)
}

/// The parent pid from a `/proc/<pid>/stat` text (public for the fuzz targets).
pub fn parse_ppid(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `PROC_USER_INIT_INO`: the kernel's fixed inode number of the initial user namespace.
pub const PROC_USER_INIT_INO: u64 = 0xEFFF_FFFD;

/// The inode of the initial user namespace. The daemon must run in it: its own user
/// namespace is the initial one when its uid map is the identity over all 2^32 ids.
pub fn init_userns() -> std::io::Result<u64> {
    let map = std::fs::read_to_string("/proc/self/uid_map")?;
    let identity = map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"];
    let own = std::fs::metadata("/proc/self/ns/user")?.ino();
    if identity && own == PROC_USER_INIT_INO {
        Ok(own)
    } else {
        Err(std::io::Error::other(
            "bpfnsd runs inside a user namespace; it must run in the host's initial user namespace",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cap_eff() {
        let s = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(s), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
    }

    #[test]
    fn parses_ppid_with_odd_comm() {
        assert_eq!(parse_ppid("42 (a) b (c)) S 17 42 42 0"), Some(17));
        assert_eq!(parse_ppid("42 (sh) S 1 42"), Some(1));
        assert_eq!(parse_ppid("garbage"), None);
    }
}
