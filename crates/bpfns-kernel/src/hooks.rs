//! The hooks every process of the host pays for, attached only while they have work.
//!
//! `on_sys_exit` runs at the exit of every syscall of every task and `on_fork` at every fork;
//! attached, the first alone puts every syscall of the host on the slow exit path (a null
//! syscall costs 1.4× on the development machine, docs/benchmarks.md). They have work only
//! for tagged tasks, and for tasks the kernel side itself may tag: those that enter a cgroup
//! bound to a namespace (`on_cgroup_attach`, `on_exec`, and `on_fork` for `CLONE_INTO_CGROUP`).
//! So they are attached while some task is tagged or some cgroup is bound, and detached
//! otherwise; tags, ownership records and the namespace table stay in their maps throughout.
//!
//! Where the decision lives: a BPF program cannot detach its own link, so user space attaches
//! and detaches. Attaching is done here, by every path that tags a task or binds a cgroup
//! ([`Kernel::tag_with`](crate::Kernel::tag_with),
//! [`Kernel::bind_cgroup`](crate::Kernel::bind_cgroup)), before the tag is written, so no
//! caller (bpfnsd, the CLI, tests) can tag a task the hooks do not watch; only a handle that
//! asks to attach them itself ([`Kernel::manual_hooks`](crate::Kernel::manual_hooks): the
//! benchmark) is exempt. Detaching is asked for by
//! whoever watches members come and go (bpfnsd, periodically: [`relax`]) and decided here,
//! from the kernel's own state (the task iterator and the cgroup bindings), not from bpfnsd's
//! idea of its members, which can lag (a member's child, a task tagged by its cgroup, members
//! left by an earlier bpfnsd). A kernel side nobody relaxes keeps its hooks: failing to detach
//! costs time, never enforcement.
//!
//! Only a process in the initial pid namespace detaches them: a task iterator read from any
//! other lists only that namespace's tasks.
//!
//! Races: attaching and tagging, and checking and detaching, each happen under one `flock` of
//! the pin root, so a task cannot be tagged between [`relax`]'s check and its detach. The
//! kernel side tags tasks on its own only through a bound cgroup, and bindings are made under
//! the same lock after attaching, so none appears during the check either; a tagged task's
//! children are tagged by `on_fork`, which is attached while that task lives.

use std::os::fd::OwnedFd;
use std::path::Path;

use bpfns_sys::bpf as sysbpf;

use crate::error::{KernelError, Result};
use crate::layout::{PinLayout, ON_DEMAND};

/// Held while hooks are attached or detached, or a task tagged: an exclusive `flock` of the
/// pin root directory (locks of every process and every handle exclude each other).
#[derive(Debug)]
pub struct HookLock(#[allow(dead_code)] OwnedFd);

impl HookLock {
    pub fn take(layout: &PinLayout) -> Result<Self> {
        bpfns_sys::fs::lock_dir(layout.root())
            .map(HookLock)
            .map_err(KernelError::sys(format!(
                "locking {} (to attach or detach the syscall hooks)",
                layout.root().display()
            )))
    }
}

/// The on-demand hooks attached now (their links are pinned).
pub fn attached(layout: &PinLayout) -> Vec<&'static str> {
    ON_DEMAND
        .into_iter()
        .filter(|n| layout.link(n).exists())
        .collect()
}

/// Attach every on-demand hook not attached yet, from its pinned program. Call with the lock.
pub fn attach_locked(layout: &PinLayout, _lock: &HookLock) -> Result<()> {
    for name in ON_DEMAND {
        let pin = layout.link(name);
        if pin.exists() {
            continue;
        }
        let prog_pin = layout.prog(name);
        let prog = sysbpf::obj_get(&prog_pin).map_err(KernelError::sys(format!(
            "opening the pinned program {} (a kernel side loaded by an older bpfns has none: \
             run `bpfns kernel load` or restart bpfnsd)",
            prog_pin.display()
        )))?;
        let link =
            sysbpf::attach_tp_btf(&prog).map_err(KernelError::sys(format!("attaching {name}")))?;
        pin_new(&link, &pin)?;
        tracing::debug!(hook = name, "attached");
    }
    Ok(())
}

/// Pin `link` at `path` (nothing is there: the lock is held), through a temporary name so
/// that a half-made pin is never seen as attached.
fn pin_new(link: &OwnedFd, path: &Path) -> Result<()> {
    crate::loader::pin_via_temp(path, |tmp| {
        sysbpf::obj_pin(link, tmp).map_err(KernelError::sys(format!("pinning {}", tmp.display())))
    })
}

/// Attach the on-demand hooks (if they are not attached).
pub fn ensure(layout: &PinLayout) -> Result<()> {
    let lock = HookLock::take(layout)?;
    attach_locked(layout, &lock)
}

/// The initial pid namespace's inode number (`PROC_PID_INIT_INO`, include/linux/proc_ns.h).
const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;

/// Whether this process sees every task of the host: a task iterator lists only the tasks of
/// its reader's pid namespace, so from any other it cannot show that no member is left.
pub fn sees_every_task() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").is_ok_and(|m| m.ino() == PROC_PID_INIT_INO)
}

/// Whether the hooks have work: some task is tagged, or some cgroup bound. Asked from outside
/// the initial pid namespace, always yes.
pub fn needed(kernel: &crate::Kernel) -> Result<bool> {
    if !sees_every_task() {
        return Ok(true);
    }
    Ok(!kernel.cgroup_bindings()?.is_empty() || !kernel.tagged_tasks()?.is_empty())
}

/// Whether the kernel's namespace table holds a namespace (the root is not in it). Unlike
/// [`needed`], not a walk of the tasks: a member that execs in a loop (its thread taking the
/// zombie leader's pid) can be missed by a walk, never by this.
pub fn namespaces_exist(kernel: &crate::Kernel) -> Result<bool> {
    kernel.holds_namespace_besides(bpfns_model::NsId::ROOT)
}

/// Detach the on-demand hooks if they have no work ([`needed`]); whether they are detached
/// now. A walk of the tasks can miss a member (see [`namespaces_exist`]): bpfnsd asks only
/// once no namespace is left.
pub fn relax(kernel: &crate::Kernel) -> Result<bool> {
    let layout = kernel.layout();
    let lock = HookLock::take(layout)?;
    if attached(layout).is_empty() {
        return Ok(true);
    }
    if needed(kernel)? {
        return Ok(false);
    }
    detach_locked(layout, &lock)?;
    tracing::debug!("no tagged task and no bound cgroup: syscall hooks detached");
    Ok(true)
}

/// Detach the on-demand hooks: remove their links' pins (the only reference). Call with the
/// lock.
pub fn detach_locked(layout: &PinLayout, _lock: &HookLock) -> Result<()> {
    for name in ON_DEMAND {
        let pin = layout.link(name);
        match std::fs::remove_file(&pin) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(KernelError::io(format!("removing {}", pin.display()))(e)),
        }
    }
    Ok(())
}
