//! The member filter: described once in `bpfns_sys::member_filter`, which `bpfns exec` (and
//! container runtimes) install; the supervisor answers what it traps.

pub use bpfns_sys::member_filter::{
    filter, flags, program, NR_BPF, NR_IA32_BPF, NR_IOCTL, PERF_EVENT_IOC_QUERY_BPF, TRAPPED,
};
pub use bpfns_sys::seccomp::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
