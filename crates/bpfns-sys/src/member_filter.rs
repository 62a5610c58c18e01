//! The seccomp filter every namespace member runs under (installed by `bpfns exec` and
//! container runtimes through `bpfns_client::member`, answered by bpfnsd's supervisor): the
//! one description both sides read.
//!
//! ```text
//! arch == AUDIT_ARCH_X86_64:
//!     nr == 321 (bpf):      cmd (low 32 bits of arg0) in TRAPPED -> USER_NOTIF, else ALLOW
//!     nr == 16 (ioctl):     request == PERF_EVENT_IOC_QUERY_BPF -> USER_NOTIF, else ALLOW
//!     nr == 317 (seccomp):  flags & SECCOMP_FILTER_FLAG_NEW_LISTENER -> ERRNO(EPERM), else ALLOW
//!     nr == 56, 272 (clone, unshare): flags & CLONE_NEWCGROUP -> ERRNO(EPERM), else ALLOW
//!     nr == 308 (setns):    nstype == 0 or nstype & CLONE_NEWCGROUP -> ERRNO(EPERM), else ALLOW
//!     nr == 435 (clone3):   ERRNO(ENOSYS)  (its flags are behind a pointer; libc falls back
//!                           to clone)
//!     x32 (nr | 0x40000000): bpf -> ERRNO(EPERM); ioctl (514) with either size of
//!                           PERF_EVENT_IOC_QUERY_BPF -> ERRNO(EPERM); seccomp, clone,
//!                           unshare, setns and clone3 as above
//!     else                  ALLOW
//! arch == AUDIT_ARCH_I386 (int 0x80, ia32 emulation):
//!     bpf (357) -> ERRNO(EPERM); ioctl (54) as x32; seccomp (354), clone (120),
//!     unshare (310), setns (346) and clone3 (435) as above; else ALLOW
//! any other arch:           KILL_PROCESS   (cannot happen on x86-64; fail closed)
//! ```
//!
//! Every entry point into bpf() is either trapped or refused. A member can never install a
//! listener of its own: the kernel runs a newer filter's `USER_NOTIF` (or anything it ranks
//! below, `TRACE`, `LOG`, `ALLOW`) only after ours, which traps first, and only `KILL`,
//! `TRAP` and `ERRNO` outrank ours — none of which runs the call. So no trapped command ever
//! reaches the kernel from a member except through bpfnsd, also after bpfnsd is gone (the
//! trapped calls then fail). Other bpf() commands run unsupervised: creation is attributed by
//! the kernel side, and the tracepoint backstop stops a member that ends up holding a foreign
//! object anyway.
//!
//! A member can neither make nor join a cgroup namespace. A cgroup filesystem can be mounted
//! only by whoever holds `CAP_SYS_ADMIN` over the mounter's cgroup namespace: in a user
//! namespace of its own, a member would hold it over a cgroup namespace it made, mount a
//! writable cgroupfs of its own and, as uid 0 (the owner of every `cgroup.procs`), move other
//! namespaces' processes into its cgroup, where its cgroup programs run on them. Without a
//! cgroup namespace its user namespaces give it no such mount (user namespaces stay allowed:
//! BPF tokens need them).

use crate::cbpf::{off_arg_lo, Asm, AsmError, To, JEQ_K, JSET_K, OFF_ARCH, OFF_NR};
#[cfg(test)]
use crate::cbpf::{LD_W_ABS, RET_K};
#[cfg(test)]
use crate::seccomp::Insn;
use crate::seccomp::{
    Action, Filter, FilterFlags, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT,
};
use crate::SysError;

/// The bpf() commands the filter traps: everything that lists or opens objects by id or path,
/// the queries that reveal ids, program loading (perfmon power is refused where tracing is
/// denied), and the commands that attach, detach or replace what is already attached
/// (performed by the supervisor after it checked that the caller can see what would be
/// replaced), `BPF_LINK_CREATE` (its relative ids, like `BPF_PROG_ATTACH`'s, answer
/// whether a program or link exists; the supervisor makes it itself), and `BPF_BTF_LOAD` (the
/// supervisor makes the object, within the namespace's quota: no kernel layer refuses one
/// over it before its fd exists).
pub const TRAPPED: [u32; 18] = [
    libbpf_sys::BPF_PROG_LOAD,
    libbpf_sys::BPF_OBJ_GET,
    libbpf_sys::BPF_PROG_ATTACH,
    libbpf_sys::BPF_PROG_DETACH,
    libbpf_sys::BPF_PROG_GET_NEXT_ID,
    libbpf_sys::BPF_MAP_GET_NEXT_ID,
    libbpf_sys::BPF_PROG_GET_FD_BY_ID,
    libbpf_sys::BPF_MAP_GET_FD_BY_ID,
    libbpf_sys::BPF_PROG_QUERY,
    libbpf_sys::BPF_BTF_LOAD,
    libbpf_sys::BPF_BTF_GET_FD_BY_ID,
    libbpf_sys::BPF_TASK_FD_QUERY,
    libbpf_sys::BPF_BTF_GET_NEXT_ID,
    libbpf_sys::BPF_LINK_UPDATE,
    libbpf_sys::BPF_LINK_GET_FD_BY_ID,
    libbpf_sys::BPF_LINK_GET_NEXT_ID,
    libbpf_sys::BPF_LINK_CREATE,
    libbpf_sys::BPF_LINK_DETACH,
];

/// bpf() on x86-64.
pub const NR_BPF: u32 = crate::rawbpf::NR_BPF as u32;
/// ioctl() on x86-64.
pub const NR_IOCTL: u32 = libc::SYS_ioctl as u32;
/// seccomp() on x86-64 (also the x32 number, with [`X32_SYSCALL_BIT`]).
pub const NR_SECCOMP: u32 = libc::SYS_seccomp as u32;
/// ioctl() in the x32 table (`compat_sys_ioctl`), without [`X32_SYSCALL_BIT`].
pub const NR_X32_IOCTL: u32 = 514;
/// bpf() in the ia32 table (`arch/x86/entry/syscalls/syscall_32.tbl`; libc for x86-64 has no
/// ia32 numbers).
pub const NR_IA32_BPF: u32 = 357;
/// ioctl() in the ia32 table.
pub const NR_IA32_IOCTL: u32 = 54;
/// seccomp() in the ia32 table.
pub const NR_IA32_SECCOMP: u32 = 354;
/// `PERF_EVENT_IOC_QUERY_BPF` = `_IOWR('$', 10, struct perf_event_query_bpf *)`: the size
/// field is a pointer's, 8 bytes on x86-64.
pub const PERF_EVENT_IOC_QUERY_BPF: u32 = 0xC008_240A;
/// The same request as a 32-bit program spells it (4-byte pointer); `perf_compat_ioctl`
/// accepts both sizes from the compat entry points.
pub const PERF_EVENT_IOC_QUERY_BPF_32: u32 = 0xC004_240A;
/// clone() on x86-64 (also the x32 number): its flags are arg0 on every ABI.
pub const NR_CLONE: u32 = libc::SYS_clone as u32;
/// unshare() on x86-64 (also the x32 number).
pub const NR_UNSHARE: u32 = libc::SYS_unshare as u32;
/// setns() on x86-64 (also the x32 number).
pub const NR_SETNS: u32 = libc::SYS_setns as u32;
/// clone3() on x86-64, x32 and ia32 alike.
pub const NR_CLONE3: u32 = 435;
/// clone() in the ia32 table.
pub const NR_IA32_CLONE: u32 = 120;
/// unshare() in the ia32 table.
pub const NR_IA32_UNSHARE: u32 = 310;
/// setns() in the ia32 table.
pub const NR_IA32_SETNS: u32 = 346;
/// `CLONE_NEWCGROUP`: in the low 32 bits of every flags argument that carries it.
pub const CLONE_NEWCGROUP: u32 = libc::CLONE_NEWCGROUP as u32;
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
pub const SECCOMP_FILTER_FLAG_NEW_LISTENER: u32 = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;

/// The flags the filter is installed with: a listener, and no restarted duplicates while
/// the supervisor holds a notification (otherwise a signalled member restarts the call forever).
pub fn flags() -> FilterFlags {
    FilterFlags::NEW_LISTENER | FilterFlags::WAIT_KILLABLE_RECV
}

/// The places jumps lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    NotX86_64,
    Bpf,
    Ioctl,
    CompatIoctl,
    Seccomp,
    CloneFlags,
    Setns,
    Allow,
    Notif,
    Eperm,
    Enosys,
    Kill,
}

/// What of a namespace's policy the member filter enforces from bpf()'s `cmd` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdRules {
    /// The commands members may call: an untrapped one outside it is refused (`EPERM`);
    /// trapped ones go to the supervisor whatever this says (it checks the namespace's
    /// policy as it stands then).
    pub cmds: bpfns_model::TypeSet,
    /// Whether `BPF_MAP_CREATE` goes to the supervisor too: where bpfnsd makes members' maps
    /// itself (no BPF LSM), and to check the map type for namespaces whose policy restricts
    /// map types. Others pay nothing.
    pub trap_map_create: bool,
}

impl CmdRules {
    /// Today's filter: every command, nothing trapped but [`TRAPPED`].
    pub const ALL: CmdRules = CmdRules {
        cmds: bpfns_model::TypeSet::ANY,
        trap_map_create: false,
    };

    /// The rules for a member of a namespace with (effective) `policy`; `supervised_creations`
    /// where bpfnsd says it makes members' maps (`supervised_creations` of its member plan).
    pub fn of(policy: &bpfns_model::Policy, supervised_creations: bool) -> CmdRules {
        CmdRules {
            cmds: policy.cmds,
            trap_map_create: (supervised_creations || !policy.maps.is_any())
                && policy.cmds.contains(libbpf_sys::BPF_MAP_CREATE),
        }
    }

    /// Whether the filter sends `cmd`, which is not in [`TRAPPED`], to the supervisor.
    fn traps_too(&self, cmd: u32) -> bool {
        self.trap_map_create && cmd == libbpf_sys::BPF_MAP_CREATE
    }

    /// What the filter answers bpf() command `cmd` with (below 2^32).
    pub fn action(&self, cmd: u32) -> Action {
        if TRAPPED.contains(&cmd) || self.traps_too(cmd) {
            Action::UserNotif
        } else if self.cmds.contains(cmd) {
            Action::Allow
        } else {
            Action::Errno(rustix::io::Errno::PERM.raw_os_error() as u16)
        }
    }
}

/// The member filter's instructions (see the module documentation), with today's rules for
/// bpf() commands ([`CmdRules::ALL`]).
pub fn program() -> Result<Vec<crate::seccomp::Insn>, AsmError> {
    program_for(&CmdRules::ALL)
}

/// The member filter's instructions for a member under `rules`: as [`program`], but an
/// untrapped command outside `rules.cmds` is refused (`EPERM`), and `BPF_MAP_CREATE` trapped
/// with `rules.trap_map_create`. [`CmdRules::ALL`] gives [`program`]'s instructions exactly.
pub fn program_for(rules: &CmdRules) -> Result<Vec<crate::seccomp::Insn>, AsmError> {
    use Label::*;
    use To::{Next, L};
    let mut a = Asm::default();
    a.load(OFF_ARCH);
    a.jump(JEQ_K, AUDIT_ARCH_X86_64, Next, L(NotX86_64));
    // x86-64 entry point (native and x32 numbers).
    a.load(OFF_NR);
    a.jump(JEQ_K, NR_BPF, L(Bpf), Next);
    a.jump(JEQ_K, NR_IOCTL, L(Ioctl), Next);
    a.jump(JEQ_K, NR_SECCOMP, L(Seccomp), Next);
    namespace_calls(&mut a, 0, [NR_CLONE, NR_UNSHARE, NR_SETNS, NR_CLONE3]);
    // x32: bpf() is not supervised there, so refused.
    a.jump(JEQ_K, NR_BPF | X32_SYSCALL_BIT, L(Eperm), Next);
    a.jump(JEQ_K, NR_X32_IOCTL | X32_SYSCALL_BIT, L(CompatIoctl), Next);
    namespace_calls(
        &mut a,
        X32_SYSCALL_BIT,
        [NR_CLONE, NR_UNSHARE, NR_SETNS, NR_CLONE3],
    );
    a.jump(JEQ_K, NR_SECCOMP | X32_SYSCALL_BIT, L(Seccomp), L(Allow));
    a.label(Bpf);
    a.load(off_arg_lo(0));
    for cmd in TRAPPED {
        a.jump(JEQ_K, cmd, L(Notif), Next);
    }
    if rules.traps_too(libbpf_sys::BPF_MAP_CREATE) {
        a.jump(JEQ_K, libbpf_sys::BPF_MAP_CREATE, L(Notif), Next);
    }
    // Then the policy's commands: an "everything but" set refuses the ones left out, a
    // finite one allows the ones listed and refuses the rest (those of later kernels too).
    let (co, listed) = rules.cmds.listed();
    let untrapped = listed.into_iter().filter(|c| !TRAPPED.contains(c));
    if co {
        for cmd in untrapped {
            a.jump(JEQ_K, cmd, L(Eperm), Next);
        }
        a.ret(Action::Allow.ret());
    } else {
        for cmd in untrapped {
            a.jump(JEQ_K, cmd, L(Allow), Next);
        }
        a.jump(JEQ_K, 0, L(Eperm), L(Eperm));
    }
    a.label(Ioctl);
    a.load(off_arg_lo(1));
    a.jump(JEQ_K, PERF_EVENT_IOC_QUERY_BPF, L(Notif), L(Allow));
    // ia32 entry point (int 0x80); A still holds the architecture.
    a.label(NotX86_64);
    a.jump(JEQ_K, AUDIT_ARCH_I386, Next, L(Kill));
    a.load(OFF_NR);
    a.jump(JEQ_K, NR_IA32_BPF, L(Eperm), Next);
    a.jump(JEQ_K, NR_IA32_IOCTL, L(CompatIoctl), Next);
    namespace_calls(
        &mut a,
        0,
        [NR_IA32_CLONE, NR_IA32_UNSHARE, NR_IA32_SETNS, NR_CLONE3],
    );
    a.jump(JEQ_K, NR_IA32_SECCOMP, L(Seccomp), L(Allow));
    // ioctl through a compat entry point: the query is not supervised there.
    a.label(CompatIoctl);
    a.load(off_arg_lo(1));
    a.jump(JEQ_K, PERF_EVENT_IOC_QUERY_BPF, L(Eperm), Next);
    a.jump(JEQ_K, PERF_EVENT_IOC_QUERY_BPF_32, L(Eperm), L(Allow));
    // seccomp(), every entry point and any operation: none may ask for a listener
    // (prctl(PR_SET_SECCOMP) never makes one).
    a.label(Seccomp);
    a.load(off_arg_lo(1));
    a.jump(JSET_K, SECCOMP_FILTER_FLAG_NEW_LISTENER, L(Eperm), L(Allow));
    // clone() and unshare(): no new cgroup namespace.
    a.label(CloneFlags);
    a.load(off_arg_lo(0));
    a.jump(JSET_K, CLONE_NEWCGROUP, L(Eperm), L(Allow));
    // setns(): no cgroup namespace joined, named (nstype, or a pidfd's flags) or not (0).
    a.label(Setns);
    a.load(off_arg_lo(1));
    a.jump(JEQ_K, 0, L(Eperm), Next);
    a.jump(JSET_K, CLONE_NEWCGROUP, L(Eperm), L(Allow));
    a.label(Allow);
    a.ret(Action::Allow.ret());
    a.label(Notif);
    a.ret(Action::UserNotif.ret());
    a.label(Eperm);
    a.ret(Action::Errno(rustix::io::Errno::PERM.raw_os_error() as u16).ret());
    a.label(Enosys);
    a.ret(Action::Errno(rustix::io::Errno::NOSYS.raw_os_error() as u16).ret());
    a.label(Kill);
    a.ret(Action::KillProcess.ret());
    a.finish()
}

/// The jumps to the namespace rules for one ABI's `[clone, unshare, setns, clone3]` numbers
/// (with `bit` or'ed in: the x32 spelling); the accumulator holds the system call number.
fn namespace_calls(a: &mut Asm<Label>, bit: u32, [clone, unshare, setns, clone3]: [u32; 4]) {
    use Label::*;
    use To::{Next, L};
    a.jump(JEQ_K, clone | bit, L(CloneFlags), Next);
    a.jump(JEQ_K, unshare | bit, L(CloneFlags), Next);
    a.jump(JEQ_K, setns | bit, L(Setns), Next);
    a.jump(JEQ_K, clone3 | bit, L(Enosys), Next);
}

/// Why the member filter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("assembling the member filter: {0}")]
    Asm(#[from] AsmError),
    #[error(transparent)]
    Sys(#[from] SysError),
}

/// A filter that only refuses (`EPERM`) the untrapped bpf() commands outside `cmds`, for a
/// task already under the member filter that moves into a namespace with fewer commands (it
/// keeps the filter it has; this one is stacked on it); `None` when it would refuse nothing
/// the outer filter's `outer` commands allow. Trapped commands stay the supervisor's.
pub fn narrowing_program(
    cmds: bpfns_model::TypeSet,
    outer: bpfns_model::TypeSet,
) -> Result<Option<Vec<crate::seccomp::Insn>>, AsmError> {
    use Label::*;
    use To::{Next, L};
    let newly_refused = outer.minus(cmds);
    if newly_refused == bpfns_model::TypeSet::NONE {
        return Ok(None);
    }
    let mut a = Asm::default();
    a.load(OFF_ARCH);
    a.jump(JEQ_K, AUDIT_ARCH_X86_64, Next, L(Allow));
    a.load(OFF_NR);
    a.jump(JEQ_K, NR_BPF, Next, L(Allow));
    a.load(off_arg_lo(0));
    for cmd in TRAPPED {
        a.jump(JEQ_K, cmd, L(Allow), Next);
    }
    let (co, listed) = cmds.listed();
    if co {
        for cmd in listed {
            a.jump(JEQ_K, cmd, L(Eperm), Next);
        }
        a.ret(Action::Allow.ret());
    } else {
        for cmd in listed {
            a.jump(JEQ_K, cmd, L(Allow), Next);
        }
        a.jump(JEQ_K, 0, L(Eperm), L(Eperm));
    }
    a.label(Allow);
    a.ret(Action::Allow.ret());
    a.label(Eperm);
    a.ret(Action::Errno(rustix::io::Errno::PERM.raw_os_error() as u16).ret());
    a.finish().map(Some)
}

/// The member filter, ready to install (with [`flags`]).
pub fn filter() -> Result<Filter, FilterError> {
    Ok(Filter::from_insns(program()?)?)
}

/// [`narrowing_program`], ready to install.
pub fn narrowing_filter(
    cmds: bpfns_model::TypeSet,
    outer: bpfns_model::TypeSet,
) -> Result<Option<Filter>, FilterError> {
    match narrowing_program(cmds, outer)? {
        Some(p) => Ok(Some(Filter::from_insns(p)?)),
        None => Ok(None),
    }
}

/// The member filter for a member under `rules` (see [`program_for`]).
pub fn filter_for(rules: &CmdRules) -> Result<Filter, FilterError> {
    Ok(Filter::from_insns(program_for(rules)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One call as the filter sees it.
    #[derive(Clone, Copy)]
    struct Call {
        arch: u32,
        nr: u32,
        arg0: u32,
        arg1: u32,
    }

    fn call(arch: u32, nr: u32, arg0: u32, arg1: u32) -> Call {
        Call {
            arch,
            nr,
            arg0,
            arg1,
        }
    }

    /// Run the classic-BPF program on one `seccomp_data`.
    fn eval(p: &[Insn], c: Call) -> u32 {
        let mut a = 0u32;
        let mut pc = 0usize;
        for _ in 0..1000 {
            let i = p[pc];
            match u32::from(i.code) {
                LD_W_ABS => {
                    a = match i.k {
                        OFF_ARCH => c.arch,
                        OFF_NR => c.nr,
                        k if k == off_arg_lo(0) => c.arg0,
                        k if k == off_arg_lo(1) => c.arg1,
                        k => panic!("offset {k}"),
                    };
                    pc += 1;
                }
                JEQ_K => pc += 1 + usize::from(if a == i.k { i.jt } else { i.jf }),
                JSET_K => pc += 1 + usize::from(if a & i.k != 0 { i.jt } else { i.jf }),
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

    const X64: u32 = AUDIT_ARCH_X86_64;
    const I386: u32 = AUDIT_ARCH_I386;
    const X32: u32 = X32_SYSCALL_BIT;

    #[test]
    fn every_bpf_entry_point_is_trapped_or_refused() {
        let p = program().expect("assembles");
        let notif = ret(Action::UserNotif);
        let allow = ret(Action::Allow);
        let eperm = ret(Action::Errno(1));
        for cmd in 0..64u32 {
            let want = if TRAPPED.contains(&cmd) { notif } else { allow };
            assert_eq!(eval(&p, call(X64, NR_BPF, cmd, 0)), want, "cmd {cmd}");
            assert_eq!(
                eval(&p, call(X64, NR_BPF | X32, cmd, 0)),
                eperm,
                "x32 {cmd}"
            );
            assert_eq!(
                eval(&p, call(I386, NR_IA32_BPF, cmd, 0)),
                eperm,
                "ia32 {cmd}"
            );
        }
        // The attach family, program loading and the link commands are among them
        // (LINK_CREATE for its relative ids).
        for cmd in [5, 8, 9, 28, 29, 34] {
            assert_eq!(eval(&p, call(X64, NR_BPF, cmd, 0)), notif, "cmd {cmd}");
        }
        // Map commands and BPF_PROG_TEST_RUN are not.
        for cmd in [0, 1, 2, 10] {
            assert_eq!(eval(&p, call(X64, NR_BPF, cmd, 0)), allow, "cmd {cmd}");
        }
        // Other system calls run, on both ABIs.
        for nr in [0, 1, 15, 17, 56, 59, 316, 318, 320, 322, 357, 434, 436] {
            assert_eq!(eval(&p, call(X64, nr, 14, 0)), allow, "nr {nr}");
        }
        for nr in [0, 1, 11, 53, 55, 120, 321, 353, 355, 356, 358] {
            assert_eq!(eval(&p, call(I386, nr, 14, 0)), allow, "ia32 nr {nr}");
        }
        // x32 calls other than these are the kernel's business.
        assert_eq!(eval(&p, call(X64, 1 | X32, 0, 0)), allow);
        assert_eq!(eval(&p, call(X64, NR_IOCTL | X32, 0, 0)), allow);
        // Any other architecture is killed.
        assert_eq!(
            eval(&p, call(0xC000_00B7, NR_BPF, 14, 0)),
            ret(Action::KillProcess)
        );
    }

    #[test]
    fn the_policys_commands_are_refused_from_the_cmd_alone() {
        use bpfns_model::{Policy, TypeSet};
        // The default policy gives today's filter, instruction for instruction.
        assert_eq!(CmdRules::of(&Policy::DEFAULT, false), CmdRules::ALL);
        assert_eq!(
            program_for(&CmdRules::of(&Policy::DEFAULT, false)).unwrap(),
            program().unwrap()
        );
        let notif = ret(Action::UserNotif);
        let allow = ret(Action::Allow);
        let eperm = ret(Action::Errno(1));
        let map_create = libbpf_sys::BPF_MAP_CREATE;
        let btf_load = libbpf_sys::BPF_BTF_LOAD;
        // "Everything but map_create": refused; the rest as today.
        let mut no_maps = Policy::DEFAULT;
        no_maps.cmds = TypeSet::ANY.minus(TypeSet::of([map_create]));
        let rules = CmdRules::of(&no_maps, false);
        let p = program_for(&rules).unwrap();
        for cmd in 0..100u32 {
            let want = if TRAPPED.contains(&cmd) {
                notif
            } else if cmd == map_create {
                eperm
            } else {
                allow
            };
            assert_eq!(eval(&p, call(X64, NR_BPF, cmd, 0)), want, "cmd {cmd}");
            assert_eq!(rules.action(cmd).ret(), want, "cmd {cmd}");
        }
        // A finite list: what is listed runs, trapped commands still go to the supervisor,
        // the rest (later kernels' too) is refused.
        let mut only = Policy::DEFAULT;
        only.cmds = TypeSet::of([btf_load, libbpf_sys::BPF_PROG_LOAD]);
        let rules = CmdRules::of(&only, false);
        assert!(!rules.trap_map_create);
        let p = program_for(&rules).unwrap();
        for cmd in 0..100u32 {
            let want = if TRAPPED.contains(&cmd) {
                notif
            } else if cmd == btf_load {
                allow
            } else {
                eperm
            };
            assert_eq!(eval(&p, call(X64, NR_BPF, cmd, 0)), want, "cmd {cmd}");
            assert_eq!(rules.action(cmd).ret(), want, "cmd {cmd}");
        }
        // Map types restricted: map_create goes to the supervisor.
        let mut no_hash = Policy::DEFAULT;
        no_hash.maps = TypeSet::ANY.minus(TypeSet::of([libbpf_sys::BPF_MAP_TYPE_HASH]));
        let rules = CmdRules::of(&no_hash, false);
        assert!(rules.trap_map_create);
        let p = program_for(&rules).unwrap();
        assert_eq!(eval(&p, call(X64, NR_BPF, map_create, 0)), notif);
        assert_eq!(eval(&p, call(X64, NR_BPF, map_create + 1, 0)), allow);
        // bpfnsd makes members' maps (no BPF LSM): map creation goes to the supervisor too,
        // unless the policy leaves the command out.
        let rules = CmdRules::of(&Policy::DEFAULT, true);
        let made = program_for(&rules).unwrap();
        for cmd in 0..100u32 {
            let want = if TRAPPED.contains(&cmd) || cmd == map_create || cmd == btf_load {
                notif
            } else {
                allow
            };
            assert_eq!(eval(&made, call(X64, NR_BPF, cmd, 0)), want, "cmd {cmd}");
            assert_eq!(rules.action(cmd).ret(), want, "cmd {cmd}");
        }
        let rules = CmdRules::of(&only, true);
        assert!(!rules.trap_map_create);
        assert_eq!(rules.action(map_create).ret(), eperm);
        // x32 and ia32 stay refused, other calls run.
        for p in [program_for(&CmdRules::of(&only, false)).unwrap(), p, made] {
            assert_eq!(eval(&p, call(X64, NR_BPF | X32, btf_load, 0)), eperm);
            assert_eq!(eval(&p, call(I386, NR_IA32_BPF, btf_load, 0)), eperm);
            assert_eq!(eval(&p, call(X64, 1, btf_load, 0)), allow);
        }
    }

    #[test]
    fn a_narrower_namespace_below_gets_a_refusing_filter_on_top() {
        use bpfns_model::TypeSet;
        let map_create = libbpf_sys::BPF_MAP_CREATE;
        assert_eq!(narrowing_program(TypeSet::ANY, TypeSet::ANY).unwrap(), None);
        let no_maps = TypeSet::ANY.minus(TypeSet::of([map_create]));
        assert_eq!(narrowing_program(no_maps, no_maps).unwrap(), None);
        let p = narrowing_program(no_maps, TypeSet::ANY).unwrap().unwrap();
        let allow = ret(Action::Allow);
        let eperm = ret(Action::Errno(1));
        for cmd in 0..100u32 {
            let want = if cmd == map_create { eperm } else { allow };
            assert_eq!(eval(&p, call(X64, NR_BPF, cmd, 0)), want, "cmd {cmd}");
        }
        // Only a trapped command listed: everything else untrapped refused; trapped ones left
        // to the outer filter.
        let only = TypeSet::of([libbpf_sys::BPF_PROG_LOAD]);
        let p = narrowing_program(only, TypeSet::ANY).unwrap().unwrap();
        for cmd in 0..100u32 {
            let want = if TRAPPED.contains(&cmd) { allow } else { eperm };
            assert_eq!(eval(&p, call(X64, NR_BPF, cmd, 0)), want, "cmd {cmd}");
        }
        assert_eq!(eval(&p, call(X64, 1, 0, 0)), allow);
        assert_eq!(eval(&p, call(I386, NR_IA32_BPF, 0, 0)), allow);
    }

    #[test]
    fn the_perf_query_ioctl_is_trapped_or_refused() {
        let p = program().expect("assembles");
        let notif = ret(Action::UserNotif);
        let allow = ret(Action::Allow);
        let eperm = ret(Action::Errno(1));
        let q = PERF_EVENT_IOC_QUERY_BPF;
        let q32 = PERF_EVENT_IOC_QUERY_BPF_32;
        assert_eq!(eval(&p, call(X64, NR_IOCTL, 3, q)), notif);
        // The 4-byte spelling means nothing to the native ioctl: its handler compares exactly.
        assert_eq!(eval(&p, call(X64, NR_IOCTL, 3, q32)), allow);
        // Other requests, also other perf ioctls (PERF_EVENT_IOC_ID = 0x80082407).
        for req in [0, 0x5401, 0x8008_2407, 0x4008_2406, q ^ 1] {
            assert_eq!(eval(&p, call(X64, NR_IOCTL, 3, req)), allow, "{req:#x}");
        }
        for (arch, nr) in [(X64, NR_X32_IOCTL | X32), (I386, NR_IA32_IOCTL)] {
            assert_eq!(eval(&p, call(arch, nr, 3, q)), eperm, "{nr:#x}");
            assert_eq!(eval(&p, call(arch, nr, 3, q32)), eperm, "{nr:#x}");
            assert_eq!(eval(&p, call(arch, nr, 3, 0x5401)), allow, "{nr:#x}");
        }
    }

    #[test]
    fn no_entry_point_installs_a_listener() {
        let p = program().expect("assembles");
        let allow = ret(Action::Allow);
        let eperm = ret(Action::Errno(1));
        let nl = SECCOMP_FILTER_FLAG_NEW_LISTENER;
        for (arch, nr) in [
            (X64, NR_SECCOMP),
            (X64, NR_SECCOMP | X32),
            (I386, NR_IA32_SECCOMP),
        ] {
            // SECCOMP_SET_MODE_FILTER (1) with the flag, alone or with others; any op.
            for op in [0, 1, 2, 3, 4, 99] {
                for flags in [nl, nl | 1, nl | (1 << 5), u32::MAX] {
                    assert_eq!(
                        eval(&p, call(arch, nr, op, flags)),
                        eperm,
                        "{nr} {op} {flags:#x}"
                    );
                }
            }
            // Filters without a listener, and the other operations, are the kernel's business.
            for flags in [0, 1, 2, 1 << 5, !nl] {
                assert_eq!(eval(&p, call(arch, nr, 1, flags)), allow, "{nr} {flags:#x}");
            }
        }
    }

    #[test]
    fn no_entry_point_makes_or_joins_a_cgroup_namespace() {
        let p = program().expect("assembles");
        let allow = ret(Action::Allow);
        let eperm = ret(Action::Errno(1));
        let enosys = ret(Action::Errno(38));
        let cg = CLONE_NEWCGROUP;
        let (user, net, mnt) = (
            libc::CLONE_NEWUSER as u32,
            libc::CLONE_NEWNET as u32,
            libc::CLONE_NEWNS as u32,
        );
        let abis = [
            (X64, NR_CLONE, NR_UNSHARE, NR_SETNS),
            (X64, NR_CLONE | X32, NR_UNSHARE | X32, NR_SETNS | X32),
            (I386, NR_IA32_CLONE, NR_IA32_UNSHARE, NR_IA32_SETNS),
        ];
        for (arch, clone, unshare, setns) in abis {
            for nr in [clone, unshare] {
                // The attack's own call, and the flag alone or among others.
                for flags in [cg, cg | user | mnt, u32::MAX] {
                    assert_eq!(eval(&p, call(arch, nr, flags, 0)), eperm, "{nr} {flags:#x}");
                }
                // Threads, forks, user, mount and network namespaces stay the kernel's business.
                for flags in [0, 0x003D_0F00, user, user | mnt | net, !cg] {
                    assert_eq!(eval(&p, call(arch, nr, flags, 0)), allow, "{nr} {flags:#x}");
                }
            }
            // setns(): a cgroup namespace named, or an fd of any kind (0) refused; a pidfd's
            // flags with it too; other named kinds run.
            for nstype in [0, cg, cg | user | net] {
                assert_eq!(eval(&p, call(arch, setns, 3, nstype)), eperm, "{nstype:#x}");
            }
            for nstype in [net, user, mnt, user | mnt | net] {
                assert_eq!(eval(&p, call(arch, setns, 3, nstype)), allow, "{nstype:#x}");
            }
            // clone3()'s flags are behind a pointer: ENOSYS, and libc uses clone().
            let clone3 = if arch == X64 && clone & X32 != 0 {
                NR_CLONE3 | X32
            } else {
                NR_CLONE3
            };
            assert_eq!(eval(&p, call(arch, clone3, 0, 88)), enosys);
        }
        // The policy's filters keep the rule.
        let rules = CmdRules {
            cmds: bpfns_model::TypeSet::of([libbpf_sys::BPF_PROG_LOAD]),
            trap_map_create: true,
        };
        let narrowed = program_for(&rules).unwrap();
        assert_eq!(eval(&narrowed, call(X64, NR_UNSHARE, cg, 0)), eperm);
        assert_eq!(eval(&narrowed, call(X64, NR_CLONE3, 0, 88)), enosys);
    }

    #[test]
    fn builds_and_flags() {
        let f = filter().expect("filter");
        assert_eq!(f.insns().len(), program().expect("assembles").len());
        assert!(f.insns().len() < 64);
        assert!(flags().contains(FilterFlags::WAIT_KILLABLE_RECV));
        assert!(flags().contains(FilterFlags::NEW_LISTENER));
    }
}
