//! The kernel functions (kfuncs) a program bpfnsd loads for a member may call.
//!
//! bpfnsd loads members' programs with `CAP_BPF` in the initial user namespace (see
//! `worker/answer/load.rs`), and the kernel lets any program loaded with `CAP_BPF` call the
//! generic kfuncs it registers for its type — among them `bpf_task_from_pid`, which finds any
//! task on the host by its global pid, and `bpf_send_signal_task`, which signals it: a
//! `cgroup_skb` program run with `BPF_PROG_TEST_RUN` could kill bpfnsd, its keeper or any
//! other tenant. The kernel's own checks cannot tell a tenant from the host there, so bpfnsd
//! allows only the kfuncs below, which act on nothing but the program's own packet and stack.
//! Module kfuncs are never allowed.

use std::collections::BTreeSet;
use std::sync::OnceLock;

/// The allowed kfuncs, by name: dynamic pointers over the program's own packet (`skb`, `xdp`)
/// and stack, and the numeric open-coded iterator. None of them takes or returns a task, a
/// cgroup, a socket other than the packet's, or kernel memory beyond the program's context.
pub const ALLOWED: &[&str] = &[
    "bpf_dynptr_from_skb",
    "bpf_dynptr_from_xdp",
    "bpf_dynptr_slice",
    "bpf_dynptr_slice_rdwr",
    "bpf_dynptr_adjust",
    "bpf_dynptr_is_null",
    "bpf_dynptr_is_rdonly",
    "bpf_dynptr_size",
    "bpf_dynptr_clone",
    "bpf_iter_num_new",
    "bpf_iter_num_next",
    "bpf_iter_num_destroy",
];

static IDS: OnceLock<BTreeSet<u32>> = OnceLock::new();

/// The vmlinux BTF ids of [`ALLOWED`], resolved once (at bpfnsd's start, or at the first
/// load). Without the kernel's BTF the set is empty: every kfunc call is refused.
pub fn allowed_ids() -> &'static BTreeSet<u32> {
    IDS.get_or_init(|| match bpfns_sys::probe::vmlinux_func_ids(ALLOWED) {
        Ok(ids) => {
            let found: BTreeSet<u32> = ids.into_iter().flatten().collect();
            tracing::debug!(
                allowed = found.len(),
                of = ALLOWED.len(),
                "kfuncs members' programs may call"
            );
            found
        }
        Err(e) => {
            tracing::warn!(
                "supervisor: no kernel BTF to resolve the allowed kfuncs ({e}); programs \
                 bpfnsd loads for members may call none"
            );
            BTreeSet::new()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowlist_resolves_and_holds_no_task_kfunc() {
        for bad in [
            "bpf_task_from_pid",
            "bpf_send_signal_task",
            "bpf_task_acquire",
        ] {
            assert!(!ALLOWED.contains(&bad));
        }
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            return;
        }
        let ids = allowed_ids();
        let bad = bpfns_sys::probe::vmlinux_func_ids(&["bpf_task_from_pid"]).expect("btf");
        if let Some(id) = bad[0] {
            assert!(!ids.contains(&id));
        }
        // This kernel has the dynptr kfuncs (6.4+).
        assert!(!ids.is_empty());
    }
}
