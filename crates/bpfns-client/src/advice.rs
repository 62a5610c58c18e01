//! Warnings for the one who starts a member (`bpfns exec`, container runtimes): setups that
//! bpfns does not confine, with the advice that closes them.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bpfns_sys::caps::CapabilitySet;
use bpfns_sys::procfs;

/// Whether a program started now by this process holds `cap` after exec: a uid-0 (or setuid
/// root) exec gets the bounding set, anyone else the ambient set.
fn exec_holds(cap: CapabilitySet) -> bool {
    let status = procfs::read_status(std::process::id() as i32).unwrap_or_default();
    let euid_root = procfs::ids(&status, "Uid").is_some_and(|ids| ids[1] == 0);
    let after_exec = procfs::caps(&status, if euid_root { "CapBnd" } else { "CapAmb" });
    after_exec.is_some_and(|set| set.contains(cap))
}

/// Whether this process is in the network namespace of pid 1 (the host's); `false` if that
/// cannot be read.
fn in_host_netns() -> bool {
    let ident = |p: &str| {
        std::fs::metadata(Path::new(p))
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    match (ident("/proc/self/ns/net"), ident("/proc/1/ns/net")) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A warning when a member started now would hold `CAP_NET_ADMIN` in the host's network
/// namespace: it could then read and remove other tenants' XDP and tc programs attached
/// through netlink, which is not `bpf()` and reaches no bpfns layer.
pub fn net_admin_in_host_netns() -> Option<String> {
    (exec_holds(CapabilitySet::NET_ADMIN) && in_host_netns()).then(|| {
        "bpfns: warning: the member will hold CAP_NET_ADMIN in the host's network namespace: \
         through netlink (not bpf(), which bpfns confines) it can list and remove XDP and tc \
         programs that other tenants attached to shared interfaces with netlink. Give it a \
         network namespace of its own (e.g. `unshare --net`, or the container runtime's), or \
         drop CAP_NET_ADMIN; programs attached with BPF_LINK_CREATE cannot be removed through \
         netlink."
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        // Whatever the answer, it is computed from this process's own facts without error.
        let w = net_admin_in_host_netns();
        if let Some(w) = w {
            assert!(w.contains("CAP_NET_ADMIN"));
        }
        assert!(exec_holds(CapabilitySet::empty()));
    }
}
