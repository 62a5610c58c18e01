//! Where the kernel side is pinned in bpffs.
//!
//! ```text
//! <root>/maps/{task_ns,obj_owner,ns_table,stats,violations,     state: survives reloads
//!              quota_kernel,quota_daemon,reasons,cgroup_ns,
//!              object_events,object_notices,ns_policy,kquota_kernel,
//!              kquota_daemon,
//!              peer_query}                                (iter_peer_files' questions)
//! <root>/links/{on_exec,on_cgroup_attach,iter_maps,iter_progs,     always
//!               iter_links,iter_tasks,
//!               on_sys_exit,on_fork}                                only while needed
//! <root>/progs/{on_sys_exit,on_fork}          the programs, to attach them again
//! <root>/progs/iter_peer_files                 run over one process per read (a link each)
//! ```
//!
//! `on_sys_exit` and `on_fork` run on every syscall and every fork of the host: they are
//! attached only while some task is tagged or some cgroup is bound ([`crate::hooks`]).

use std::path::{Path, PathBuf};

/// Default pin root.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/bpfns";

/// The state maps, by their names in `bpfns.bpf.c`.
/// A kernel side loaded by an older release lacks the newest (`object_events`,
/// `object_notices`, `ns_policy`, the per-kind quota maps): the next load creates them, and
/// [`Kernel::open`](crate::Kernel::open) asks for that load.
pub const MAPS: [&str; 15] = [
    "task_ns",
    "obj_owner",
    "ns_table",
    "stats",
    "violations",
    "quota_kernel",
    "quota_daemon",
    "reasons",
    "cgroup_ns",
    "object_events",
    "object_notices",
    "ns_policy",
    "kquota_kernel",
    "kquota_daemon",
    "peer_query",
];

/// The programs, each attached through one pinned link.
pub const LINKS: [&str; 8] = [
    "on_sys_exit",
    "on_fork",
    "on_exec",
    "on_cgroup_attach",
    "iter_maps",
    "iter_progs",
    "iter_links",
    "iter_tasks",
];

/// The programs attached only while needed ([`crate::hooks`]); pinned as programs too, so
/// that they can be attached again without a reload.
pub const ON_DEMAND: [&str; 2] = ["on_sys_exit", "on_fork"];

/// Iterators run over one task at a time, so pinned as programs, each read making its own
/// link: `iter_peer_files` over bpfnsd's own fds.
pub const TASK_ITERATORS: [&str; 1] = ["iter_peer_files"];

/// Paths of one pinned instance of the kernel side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinLayout {
    root: PathBuf,
}

impl PinLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn maps_dir(&self) -> PathBuf {
        self.root.join("maps")
    }
    pub fn links_dir(&self) -> PathBuf {
        self.root.join("links")
    }
    pub fn progs_dir(&self) -> PathBuf {
        self.root.join("progs")
    }
    pub fn prog(&self, name: &str) -> PathBuf {
        self.progs_dir().join(name)
    }
    pub fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }
    pub fn link(&self, name: &str) -> PathBuf {
        self.links_dir().join(name)
    }
}

impl Default for PinLayout {
    fn default() -> Self {
        Self::new(DEFAULT_PIN_ROOT)
    }
}
