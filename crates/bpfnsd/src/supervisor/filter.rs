//! The member filter: defined in `bpfns_client::filter`, where `bpfns exec` (and container
//! runtimes) install it; the supervisor answers what it traps.

pub use bpfns_client::filter::{
    filter, flags, program, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, NR_BPF, NR_IA32_BPF, NR_IOCTL,
    PERF_EVENT_IOC_QUERY_BPF, TRAPPED, X32_SYSCALL_BIT,
};
