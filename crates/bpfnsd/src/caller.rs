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
use bpfns_sys::caps::CapabilitySet;
use bpfns_sys::procfs;

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
    #[error(
        "process {pid} changed its credentials between connecting and being served (uid/gid \
         {connected:?} when it connected, {now:?} now: it ran a set-user-ID program?); \
         connect again after the change"
    )]
    CredentialsChanged {
        pid: i32,
        connected: (u32, u32),
        now: (u32, u32),
    },
    #[error(
        "process {pid} gained privileges between connecting and being served ({what}: it ran \
         a program with file capabilities, or connected from a thread with fewer capabilities?); \
         connect again after the change, from a thread that holds them"
    )]
    PrivilegesChanged { pid: i32, what: String },
    #[error("the kernel does not tell who made process {0}'s connection; it is not served")]
    ConnectorUnknown(i32),
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
    pub cap_eff: CapabilitySet,
    /// Inode of the process's user namespace.
    pub userns: u64,
    /// The initial user namespace's inode (from the daemon's view).
    pub init_userns: u64,
    /// Real uid and gid when identified: what `SCM_CREDENTIALS` says of the bytes it
    /// writes.
    pub real_ids: (u32, u32),
    /// Effective uid and gid when identified.
    pub effective_ids: (u32, u32),
}

impl Caller {
    /// Identify the process at the other end of `sock`.
    pub fn of_peer(
        sock: BorrowedFd<'_>,
        kernel: &Kernel,
        init_userns: u64,
    ) -> Result<Self, CallerError> {
        let (pid, uid, gid) = bpfns_sys::unix::peer_cred(sock).map_err(CallerError::Peer)?;
        let pidfd = match bpfns_sys::unix::peer_pidfd(sock) {
            Ok(fd) => fd,
            // Before Linux 6.5: a pidfd opened now; the liveness check below still rules out
            // reading a recycled pid's facts after the peer died.
            Err(e) if e.errno == bpfns_sys::Errno::NOPROTOOPT => {
                bpfns_sys::process::open_pidfd(pid).map_err(|_| CallerError::Gone(pid))?
            }
            // Any other failure is a peer gone (6.5-6.15: reaped before it was accepted,
            // EINVAL): a pidfd opened by pid now would be whichever process took it since.
            Err(_) => return Err(CallerError::Gone(pid)),
        };
        let caller = Self::of_process(pid, uid, pidfd, kernel, init_userns)?;
        // SO_PEERCRED is what the process was when it connected; capabilities and user
        // namespace are read now. A process that connected and then ran a set-user-ID
        // program would be served with that program's privileges.
        if caller.effective_ids != (uid, gid) {
            return Err(CallerError::CredentialsChanged {
                pid,
                connected: (uid, gid),
                now: caller.effective_ids,
            });
        }
        // Nor with a program's file capabilities, which change no id: a capability in effect
        // now must have been permitted when it connected (the kernel kept those credentials).
        // Asked of every caller that holds capabilities, root too: /proc does not tell
        // whether root's exec gives it capabilities (SECBIT_NOROOT).
        if !caller.cap_eff.is_empty() {
            let then = kernel
                .peer_credentials(sock)?
                .ok_or(CallerError::ConnectorUnknown(pid))?;
            caller.check_held_when_connected(&then)?;
        }
        Ok(caller)
    }

    /// That what this caller holds now it held when it connected (`then`: the kernel's
    /// record of the connector's credentials).
    fn check_held_when_connected(
        &self,
        then: &bpfns_kernel::abi::PeerRecord,
    ) -> Result<(), CallerError> {
        let changed = |what: String| CallerError::PrivilegesChanged {
            pid: self.pid,
            what,
        };
        if u64::from(then.userns) != self.userns {
            return Err(changed(format!(
                "user namespace {} when it connected, {} now",
                then.userns, self.userns
            )));
        }
        // Permitted then is what it could have raised then (the connecting thread's).
        let gained = self.cap_eff - CapabilitySet::from_bits_retain(then.cap_permitted);
        if !gained.is_empty() {
            return Err(changed(format!(
                "capabilities {gained:?}, not permitted when it connected"
            )));
        }
        Ok(())
    }

    /// Facts about process `pid` whose pidfd is `pidfd`.
    pub fn of_process(
        pid: i32,
        uid: u32,
        pidfd: OwnedFd,
        kernel: &Kernel,
        init_userns: u64,
    ) -> Result<Self, CallerError> {
        let status =
            procfs::read_status(pid).map_err(|source| CallerError::Proc { pid, source })?;
        let cap_eff = procfs::caps(&status, "CapEff").ok_or(CallerError::Status(pid))?;
        let uids = procfs::ids(&status, "Uid").ok_or(CallerError::Status(pid))?;
        let gids = procfs::ids(&status, "Gid").ok_or(CallerError::Status(pid))?;
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
            real_ids: (uids[0], gids[0]),
            effective_ids: (uids[1], gids[1]),
        })
    }

    /// Re-read the namespace (a task's tag is the kernel's, and only the kernel's).
    pub fn refresh_ns(&mut self, kernel: &Kernel) -> Result<(), CallerError> {
        self.ns = kernel.task_ns(self.pidfd.as_fd())?;
        Ok(())
    }

    fn has(&self, cap: CapabilitySet) -> bool {
        self.cap_eff.contains(cap)
    }

    /// CAP_SYS_ADMIN in the initial user namespace: host root.
    pub fn host_admin(&self) -> bool {
        self.userns == self.init_userns && self.has(CapabilitySet::SYS_ADMIN)
    }

    /// CAP_BPF (or CAP_SYS_ADMIN) in the caller's own user namespace (contract point (docs/design.md) 5).
    pub fn cap_bpf(&self) -> bool {
        self.has(CapabilitySet::BPF) || self.has(CapabilitySet::SYS_ADMIN)
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

pub use bpfns_sys::procfs::parent_pid;

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

    fn caller(ns: NsId, caps: CapabilitySet, own_userns: bool) -> Caller {
        Caller {
            pid: 1,
            uid: 0,
            pidfd: std::fs::File::open("/dev/null").expect("/dev/null").into(),
            ns,
            cap_eff: caps,
            userns: if own_userns { 7 } else { PROC_USER_INIT_INO },
            init_userns: PROC_USER_INIT_INO,
            real_ids: (0, 0),
            effective_ids: (0, 0),
        }
    }

    #[test]
    fn privileges_follow_the_kernels_rules() {
        let (root, member) = (NsId::ROOT, NsId(5));
        let admin = CapabilitySet::SYS_ADMIN;
        let bpf = CapabilitySet::BPF;
        let none = CapabilitySet::empty();
        // Host root; CAP_SYS_ADMIN in a user namespace counts for nothing on the host.
        assert!(caller(root, admin, false).host_admin());
        assert!(!caller(root, admin, true).host_admin());
        assert!(!caller(root, bpf, false).host_admin());
        // Listing in the root namespace: CAP_BPF or CAP_SYS_ADMIN of the initial namespace.
        assert!(caller(root, bpf, false).may_list_objects());
        assert!(!caller(root, bpf, true).may_list_objects());
        assert!(!caller(root, none, false).may_list_namespaces());
        // Members: their subtree's namespaces always, objects with CAP_BPF in their own.
        assert!(caller(member, none, true).may_list_namespaces());
        assert!(!caller(member, none, true).may_list_objects());
        assert!(caller(member, bpf, true).may_list_objects());
    }

    #[test]
    fn what_is_held_now_must_have_been_held_at_connect() {
        let then = |caps: CapabilitySet, userns: u64| bpfns_kernel::abi::PeerRecord {
            cap_effective: 0,
            cap_permitted: caps.bits(),
            fd: 3,
            pid: 1,
            euid: 1000,
            egid: 1000,
            userns: userns as u32,
        };
        let (admin, bpf) = (CapabilitySet::SYS_ADMIN, CapabilitySet::BPF);
        let host = PROC_USER_INIT_INO;
        let now = caller(NsId::ROOT, admin | bpf, false);
        // Permitted then (raised since, or in effect then too), or more: served.
        assert!(now
            .check_held_when_connected(&then(admin | bpf, host))
            .is_ok());
        let fewer = caller(NsId::ROOT, bpf, false);
        assert!(fewer
            .check_held_when_connected(&then(admin | bpf, host))
            .is_ok());
        // Gained since (a program with file capabilities): refused, naming what.
        let err = now.check_held_when_connected(&then(bpf, host)).unwrap_err();
        assert!(
            matches!(err, CallerError::PrivilegesChanged { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("SYS_ADMIN"), "{err}");
        assert!(now
            .check_held_when_connected(&then(CapabilitySet::empty(), host))
            .is_err());
        // Connected from another user namespace: refused, whatever it held there.
        assert!(now
            .check_held_when_connected(&then(admin | bpf, 7))
            .is_err());
    }
}
