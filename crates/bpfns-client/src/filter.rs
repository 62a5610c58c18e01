//! The seccomp filter every namespace member runs under (installed by [`crate::member`],
//! answered by bpfnsd's supervisor).
//!
//! ```text
//! arch == AUDIT_ARCH_X86_64:
//!     nr == 321 (bpf):   cmd (low 32 bits of arg0) in TRAPPED -> USER_NOTIF, else ALLOW
//!     nr == 321 | X32:   ERRNO(EPERM)    (x32 entry point: not supervised, so refused)
//!     else               ALLOW
//! arch == AUDIT_ARCH_I386 (int 0x80, ia32 emulation):
//!     nr == 357 (bpf):   ERRNO(EPERM)
//!     else               ALLOW
//! any other arch:        KILL_PROCESS   (cannot happen on x86-64; fail closed)
//! ```
//!
//! Every entry point into bpf() is either trapped or refused . Other bpf()
//! commands run unsupervised: creation is attributed by the kernel side, and the tracepoint
//! backstop stops a member that ends up holding a foreign object anyway.

use bpfns_sys::seccomp::{Action, Filter, FilterFlags, Insn};
use bpfns_sys::SysError;

/// The bpf() commands the filter traps (cmd numbers from `include/uapi/linux/bpf.h`):
/// everything that lists or opens objects by id or path, and the queries that reveal ids.
pub const TRAPPED: [u32; 11] = [
    7,  // BPF_OBJ_GET
    11, // BPF_PROG_GET_NEXT_ID
    12, // BPF_MAP_GET_NEXT_ID
    13, // BPF_PROG_GET_FD_BY_ID
    14, // BPF_MAP_GET_FD_BY_ID
    16, // BPF_PROG_QUERY
    19, // BPF_BTF_GET_FD_BY_ID
    20, // BPF_TASK_FD_QUERY
    23, // BPF_BTF_GET_NEXT_ID
    30, // BPF_LINK_GET_FD_BY_ID
    31, // BPF_LINK_GET_NEXT_ID
];

/// `AUDIT_ARCH_X86_64`.
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// `AUDIT_ARCH_I386`.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// bpf() on x86-64.
pub const NR_BPF: u32 = 321;
/// `__X32_SYSCALL_BIT`.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// bpf() in the ia32 table.
pub const NR_IA32_BPF: u32 = 357;

// Classic BPF opcodes (include/uapi/linux/filter.h).
const LD_W_ABS: u32 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
const JEQ_K: u32 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const RET_K: u32 = 0x06; // BPF_RET | BPF_K

// Offsets into struct seccomp_data (little-endian: low word of args[0] at 16).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0_LO: u32 = 16;

/// The flags the filter is installed with: a listener, and no restarted duplicates while
/// the supervisor holds a notification (otherwise a signalled member restarts the call forever).
pub fn flags() -> FilterFlags {
    FilterFlags::NEW_LISTENER | FilterFlags::WAIT_KILLABLE_RECV
}

/// The member filter's instructions (see the module documentation).
pub fn program() -> Vec<Insn> {
    let eperm = Action::Errno(libc_eperm()).ret();
    let allow = Action::Allow.ret();
    let notif = Action::UserNotif.ret();
    let kill = Action::KillProcess.ret();
    let n = TRAPPED.len();
    let mut p = Vec::with_capacity(16 + n);
    // 0: A = arch
    p.push(Insn::stmt(LD_W_ABS, OFF_ARCH));
    // 1: x86-64? fall through : skip the x86-64 block
    //    The x86-64 block is: ld nr; jeq bpf; ld arg0; n × jeq; ret allow; ret notif;
    //    jeq x32-bpf; ret allow; ret eperm  =  n + 8 instructions.
    p.push(Insn::jump(JEQ_K, AUDIT_ARCH_X86_64, 0, (n + 8) as u8));
    // x86-64 block
    p.push(Insn::stmt(LD_W_ABS, OFF_NR));
    // not bpf: go to the x32 check (skip ld arg0, n compares, ret allow, ret notif)
    p.push(Insn::jump(JEQ_K, NR_BPF, 0, (n + 3) as u8));
    p.push(Insn::stmt(LD_W_ABS, OFF_ARG0_LO));
    for (i, &cmd) in TRAPPED.iter().enumerate() {
        // match: jump over the remaining compares and the "ret allow" to "ret notif"
        p.push(Insn::jump(JEQ_K, cmd, (n - i) as u8, 0));
    }
    p.push(Insn::stmt(RET_K, allow));
    p.push(Insn::stmt(RET_K, notif));
    // A still holds nr here.
    p.push(Insn::jump(JEQ_K, NR_BPF | X32_SYSCALL_BIT, 1, 0));
    p.push(Insn::stmt(RET_K, allow));
    p.push(Insn::stmt(RET_K, eperm));
    // ia32 block (A = arch)
    p.push(Insn::jump(JEQ_K, AUDIT_ARCH_I386, 0, 4));
    p.push(Insn::stmt(LD_W_ABS, OFF_NR));
    p.push(Insn::jump(JEQ_K, NR_IA32_BPF, 1, 0));
    p.push(Insn::stmt(RET_K, allow));
    p.push(Insn::stmt(RET_K, eperm));
    // any other architecture
    p.push(Insn::stmt(RET_K, kill));
    p
}

fn libc_eperm() -> u16 {
    bpfns_sys::Errno::PERM.raw_os_error() as u16
}

/// The member filter, ready to install (with [`flags`]).
pub fn filter() -> Result<Filter, SysError> {
    Filter::from_insns(program())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run the classic-BPF program on one `seccomp_data`.
    fn eval(p: &[Insn], arch: u32, nr: u32, arg0_lo: u32) -> u32 {
        let mut a = 0u32;
        let mut pc = 0usize;
        for _ in 0..1000 {
            let i = p[pc];
            match u32::from(i.code) {
                LD_W_ABS => {
                    a = match i.k {
                        OFF_ARCH => arch,
                        OFF_NR => nr,
                        OFF_ARG0_LO => arg0_lo,
                        k => panic!("offset {k}"),
                    };
                    pc += 1;
                }
                JEQ_K => pc += 1 + usize::from(if a == i.k { i.jt } else { i.jf }),
                RET_K => return i.k,
                c => panic!("opcode {c:#x}"),
            }
            assert!(pc < p.len(), "fell off the end");
        }
        panic!("loop");
    }

    fn ret(a: Action) -> u32 {
        a.ret()
    }

    #[test]
    fn every_entry_point_is_trapped_or_refused() {
        let p = program();
        let notif = ret(Action::UserNotif);
        let allow = ret(Action::Allow);
        let eperm = ret(Action::Errno(1));
        for cmd in 0..64u32 {
            let want = if TRAPPED.contains(&cmd) { notif } else { allow };
            assert_eq!(eval(&p, AUDIT_ARCH_X86_64, NR_BPF, cmd), want, "cmd {cmd}");
            assert_eq!(
                eval(&p, AUDIT_ARCH_X86_64, NR_BPF | X32_SYSCALL_BIT, cmd),
                eperm,
                "x32 cmd {cmd}"
            );
            assert_eq!(
                eval(&p, AUDIT_ARCH_I386, NR_IA32_BPF, cmd),
                eperm,
                "ia32 {cmd}"
            );
        }
        // The command is the low 32 bits only; the high bits of arg0 never reach the filter.
        assert_eq!(eval(&p, AUDIT_ARCH_X86_64, NR_BPF, 14), notif);
        // Other system calls run, on both ABIs.
        for nr in [0, 1, 56, 59, 320, 322, 357, 435] {
            assert_eq!(eval(&p, AUDIT_ARCH_X86_64, nr, 14), allow, "nr {nr}");
        }
        for nr in [0, 1, 11, 120, 321, 356, 358] {
            assert_eq!(eval(&p, AUDIT_ARCH_I386, nr, 14), allow, "ia32 nr {nr}");
        }
        // x32 calls other than bpf() are the kernel's business.
        assert_eq!(eval(&p, AUDIT_ARCH_X86_64, 1 | X32_SYSCALL_BIT, 0), allow);
        // Any other architecture is killed.
        assert_eq!(eval(&p, 0xC000_00B7, NR_BPF, 14), ret(Action::KillProcess));
    }

    #[test]
    fn builds_and_flags() {
        let f = filter().expect("filter");
        assert_eq!(f.insns().len(), TRAPPED.len() + 16);
        assert!(flags().contains(FilterFlags::WAIT_KILLABLE_RECV));
        assert!(flags().contains(FilterFlags::NEW_LISTENER));
    }
}
