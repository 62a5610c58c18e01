//! Starting a program as a member of a namespace: what `bpfns exec` does, as a library for
//! container runtimes.
//!
//! 1. The child is started and waits before exec (see [`bpfns_sys::spawn::MemberSetup`]).
//! 2. bpfnsd tags it into the namespace (`enter`): from then on, everything it starts inherits
//!    the tag in the kernel.
//! 3. In a private mount namespace, the namespace's own bpffs is bind-mounted over
//!    `/sys/fs/bpf`, the directory of the other namespaces' instances and bpfnsd's state are
//!    covered, and the directory of bpfnsd's socket is made read-only (it must be a directory
//!    of its own, as `/run/bpfns` is).
//! 4. The member filter is installed (`no_new_privs` first unless the caller is host admin),
//!    its listener is handed to bpfnsd (`supervise`), and only then does the child exec.
//!
//! A caller that is already a member is already under the filter (which refuses a second
//! listener): it only moves the child deeper; the existing supervisor then
//! answers from the deeper namespace's view, since it reads every caller's tag.
//!
//! **When bpfnsd dies.** Nothing is needed from the caller: bpfnsd holds the listener, and so
//! does its listener keeper, a process of its own that outlives bpfnsd restarts and crashes
//! and hands the listener to each new bpfnsd. While no bpfnsd runs, a member's trapped call
//! waits for the next one up to a grace period (bpfnsd's `outage_grace_ms`, 2 s by default),
//! then fails with `EAGAIN`; the call bpfnsd was answering when it died fails with `EAGAIN` at
//! once. The member stays supervised for as long as any of its tasks lives — also tasks that
//! outlive the process this module started — and the returned [`Member`] may be dropped at any
//! time (the member is not killed). Untrapped bpf() calls never depend on bpfnsd, and the
//! kernel side keeps tagging and recording ownership meanwhile.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use bpfns_sys::spawn::MemberSetup;

use crate::{Client, ClientError};

/// What can go wrong starting a member.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Setting the member up or starting the command failed; the errno says why (`ENOENT`:
    /// the command was not found, `EACCES`/`ENOEXEC`: it cannot be run).
    #[error("starting the command: {0}")]
    Spawn(bpfns_sys::SysError),
    /// A step of the new process's setup before exec failed (a mount, the filter, the
    /// credentials); the error names it. The command never ran.
    #[error("setting the member up: {0}")]
    Setup(bpfns_sys::SysError),
    #[error("the member filter: {0}")]
    Filter(bpfns_sys::SysError),
    #[error(transparent)]
    FilterProgram(#[from] crate::filter::FilterError),
    /// bpfnsd did not let the new process into the namespace (its code says why); the
    /// command never ran.
    #[error("entering {namespace}: {source}")]
    Enter {
        namespace: String,
        #[source]
        source: ClientError,
    },
    /// bpfnsd did not take the new process's seccomp listener; the command never ran.
    #[error("handing the listener to bpfnsd: {0}")]
    Handover(#[source] ClientError),
}

impl MemberError {
    fn from_spawn(e: bpfns_sys::spawn::SpawnError<ClientError>, namespace: &str) -> Self {
        use bpfns_sys::spawn::SpawnError;
        match e {
            SpawnError::Sys(e) => MemberError::Spawn(e),
            SpawnError::Setup(e) => MemberError::Setup(e),
            SpawnError::Before { source, .. } => MemberError::Enter {
                namespace: namespace.to_string(),
                source,
            },
            SpawnError::WithListener { source, .. } => MemberError::Handover(source),
        }
    }
}

impl MemberError {
    /// The errno behind a failure to start the command, if that is what failed.
    pub fn spawn_errno(&self) -> Option<bpfns_sys::Errno> {
        match self {
            MemberError::Spawn(e) => Some(e.errno),
            _ => None,
        }
    }
}

/// How a member is started.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Options {
    /// Run the command as this user, with these capabilities only (see
    /// [`bpfns_sys::spawn::Credentials`]); `CAP_PERFMON` is never kept where the namespace
    /// denies tracing. Only for members started from the root namespace.
    pub credentials: Option<bpfns_sys::spawn::Credentials>,
    /// Leave the cgroup filesystems writable in the member's mount namespace. By default a
    /// member started by host root sees every cgroup mount read-only: with a writable
    /// `cgroup.procs` a uid-0 member could move any process of the host into the cgroup its
    /// programs are attached to. (A member that keeps CAP_SYS_ADMIN can remount them.)
    pub writable_cgroups: bool,
}

impl Options {
    /// [`Options::credentials`].
    pub fn credentials(mut self, c: bpfns_sys::spawn::Credentials) -> Self {
        self.credentials = Some(c);
        self
    }

    /// [`Options::writable_cgroups`].
    pub fn writable_cgroups(mut self, on: bool) -> Self {
        self.writable_cgroups = on;
        self
    }
}

/// A started member: its process. Dereferences to the [`Child`]. Dropping it neither kills
/// the member nor ends its supervision.
#[derive(Debug)]
pub struct Member {
    child: Child,
}

impl Member {
    /// The process.
    pub fn into_child(self) -> Child {
        self.child
    }
}

impl std::ops::Deref for Member {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Member {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

/// Start `cmd` as a member of namespace `ns`, talking to bpfnsd at `socket`.
pub fn spawn(socket: &Path, ns: &str, cmd: &mut Command) -> Result<Member, MemberError> {
    spawn_with(socket, ns, cmd, Options::default())
}

/// [`spawn`] with [`Options`].
pub fn spawn_with(
    socket: &Path,
    ns: &str,
    cmd: &mut Command,
    options: Options,
) -> Result<Member, MemberError> {
    prepare(socket, ns)?.spawn(cmd, options)
}

/// Connect to bpfnsd at `socket` and ask what starting a member of `ns` needs; the answer is
/// read by [`Prepared::spawn`], so that the caller can do its own preparations (signal
/// handlers, the command) while bpfnsd answers.
pub fn prepare(socket: &Path, ns: &str) -> Result<Prepared, MemberError> {
    let mut client = Client::connect(socket)?;
    let plan = client.member_plan_sent(ns)?;
    Ok(Prepared {
        client,
        plan,
        socket: socket.to_path_buf(),
        ns: ns.to_string(),
    })
}

/// A member start under way: bpfnsd has been asked for its plan ([`prepare`]).
#[derive(Debug)]
pub struct Prepared {
    client: Client,
    plan: crate::PlanSent,
    socket: PathBuf,
    ns: String,
}

impl Prepared {
    /// Start `cmd` as the member ([`spawn_with`]).
    pub fn spawn(self, cmd: &mut Command, options: Options) -> Result<Member, MemberError> {
        let Prepared {
            client,
            plan,
            socket,
            ns,
        } = self;
        start(client, plan, &socket, &ns, cmd, options)
    }
}

fn start(
    mut client: Client,
    plan: crate::PlanSent,
    socket: &Path,
    ns: &str,
    cmd: &mut Command,
    options: Options,
) -> Result<Member, MemberError> {
    let Options {
        credentials,
        writable_cgroups,
    } = options;
    // Read while bpfnsd answers, when it will most likely be needed (host root's members get
    // mounts of their own; a host with many mounts makes it ~0.1 ms).
    let early_mountinfo = (bpfns_sys::thread::euid() == 0)
        .then(|| bpfns_sys::procfs::read_text("/proc/self/mountinfo").ok())
        .flatten();
    let target = client.member_plan_finish(plan)?;
    let me = &target.caller;
    if me.namespace != "/" {
        if credentials.is_some() {
            return Err(MemberError::Spawn(bpfns_sys::SysError {
                op: "choosing the user and capabilities applies to members started from the \
                     root namespace; inside one, run the command through setpriv"
                    .into(),
                errno: bpfns_sys::Errno::INVAL,
            }));
        }
        if !target.policy.allows_some_tracing() {
            // As below: no CAP_PERFMON where tracing is denied.
            bpfns_sys::spawn::drop_capabilities_before_exec(
                cmd,
                bpfns_sys::caps::CapabilitySet::PERFMON,
            );
        }
        // The filter it inherits refuses what its own namespace refuses: the target's
        // commands, if fewer, are refused by one more on top.
        if let Some(f) =
            crate::filter::narrowing_filter(target.policy.cmds, bpfns_model::TypeSet::ANY)?
        {
            bpfns_sys::spawn::install_filter_before_exec(cmd, f);
        }
        return spawn_nested(client, ns, cmd).map(|child| Member { child });
    }
    // The namespace's commands are refused from bpf()'s cmd alone; the default policy gives
    // the same filter as without policies.
    let rules = crate::filter::CmdRules::of(&target.policy, target.supervised_creations);
    let mut setup = MemberSetup::new(crate::filter::filter_for(&rules)?)
        .daemon_socket(socket)
        .map_err(MemberError::Spawn)?
        .filter_flags(crate::filter::flags())
        // Without CAP_SYS_ADMIN the kernel accepts a filter only under no_new_privs.
        .no_new_privs(!me.host_admin)
        // No ptrace access to processes outside the member (their roots, namespaces and
        // fds), where the kernel has Landlock scopes.
        .landlock(bpfns_sys::landlock::confines_members())
        .wait_ack(true);
    if !target.policy.allows_some_tracing() {
        // With CAP_PERFMON (or, from 6.9, a token granting it) the kernel lets any program
        // type read kernel memory; where tracing is denied no member holds it (bpfnsd refuses
        // program loads from a thread that does, and CAP_SYS_ADMIN, which also grants it).
        setup = setup.drop_capabilities(bpfns_sys::caps::CapabilitySet::PERFMON);
    }
    if let Some(mut c) = credentials {
        if !target.policy.allows_some_tracing() {
            c.keep -= bpfns_sys::caps::CapabilitySet::PERFMON;
        }
        setup = setup.credentials(c);
    }
    // Read once, when needed (a host with many mounts makes it ~0.1 ms each time).
    let mountinfo_text: std::cell::OnceCell<String> = std::cell::OnceCell::new();
    if let Some(t) = early_mountinfo {
        let _ = mountinfo_text.set(t);
    }
    let mountinfo = || -> Result<&str, MemberError> {
        if let Some(t) = mountinfo_text.get() {
            return Ok(t.as_str());
        }
        let t = bpfns_sys::procfs::read_text("/proc/self/mountinfo").map_err(|e| {
            MemberError::Spawn(bpfns_sys::SysError {
                op: "reading /proc/self/mountinfo".into(),
                errno: bpfns_sys::Errno::from_io_error(&e).unwrap_or(bpfns_sys::Errno::IO),
            })
        })?;
        Ok(mountinfo_text.get_or_init(|| t).as_str())
    };
    if me.host_admin {
        // The daemon's own files: its state is hidden, the directory of its socket read-only
        // (connect() still works; a uid-0 member cannot unlink the socket and bind its own).
        if !target.state_dir.is_empty() {
            setup = setup
                .hide(Path::new(&target.state_dir))
                .map_err(MemberError::Spawn)?;
        }
        // The socket's own directory, where the name the caller used leads (a symbolic link
        // elsewhere, or a bare `bpfns.sock`, names no directory of bpfnsd's), and the
        // directories bpfnsd says its sockets are in (a hard link names none at all).
        let named = socket
            .canonicalize()
            .unwrap_or_else(|_| socket.to_path_buf());
        let mut dirs: Vec<PathBuf> = named.parent().map(Path::to_path_buf).into_iter().collect();
        dirs.extend(target.socket_dirs.iter().map(PathBuf::from));
        dirs.sort();
        dirs.dedup();
        for dir in dirs
            .iter()
            .filter(|d| !d.as_os_str().is_empty() && *d != Path::new("/"))
        {
            setup = setup.read_only(dir).map_err(MemberError::Spawn)?;
        }
        // cgroupfs read-only, as container runtimes mount it: a member must not move
        // processes (another namespace's, the host's) into the cgroup it attaches to, nor
        // rename or create the cgroups its namespace's binding names.
        if !writable_cgroups {
            for m in bpfns_sys::procfs::cgroup_mount_points(mountinfo()?) {
                setup = setup
                    .read_only_mount_point(&m)
                    .map_err(MemberError::Spawn)?;
            }
        }
    }
    if me.host_admin && !target.bpffs.is_empty() {
        let bpffs = PathBuf::from(&target.bpffs);
        setup = setup.bpffs(&bpffs).map_err(MemberError::Spawn)?;
        if let Some(all) = bpffs.parent() {
            // The other namespaces' instances are detached, not only hidden: a mount hidden
            // under the cover would keep a deleted instance, and its pins, alive. All at once
            // where their directory is a mount point (bpfnsd makes it one), else one by one.
            let mountinfo = mountinfo()?;
            setup = if bpfns_sys::procfs::mount_points(mountinfo)
                .iter()
                .any(|m| m == all)
            {
                setup.detach(all)
            } else {
                setup.detach_below(mountinfo, all, &bpffs)
            }
            .and_then(|s| s.hide(all))
            .map_err(MemberError::Spawn)?;
        }
    }
    let client = Arc::new(Mutex::new(client));
    let pid = Arc::new(AtomicI32::new(0));
    let (c1, c2, p1, p2) = (client.clone(), client, pid.clone(), pid);
    let ns1 = ns.to_string();
    let spawned = setup
        .spawn(
            cmd,
            move |child| {
                p1.store(child, Ordering::SeqCst);
                c1.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .enter(&ns1, child)
                    .map(drop)
            },
            move |listener| {
                let child = p2.load(Ordering::SeqCst);
                c2.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .supervise(child, listener.as_fd())
                    .map(drop)
            },
        )
        .map_err(|e| MemberError::from_spawn(e, ns))?;
    // bpfnsd and its listener keeper hold the listener now; ours is closed here.
    drop(spawned.listener);
    Ok(Member {
        child: spawned.child,
    })
}

/// From inside a namespace: only tag the child deeper (the filter is inherited; a narrowing
/// one is installed on top by the caller).
fn spawn_nested(client: Client, ns: &str, cmd: &mut Command) -> Result<Child, MemberError> {
    let client = Mutex::new(client);
    let ns1 = ns.to_string();
    bpfns_sys::gate::spawn_gated(cmd, |child| {
        client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .enter(&ns1, child)
            .map(drop)
    })
    .map_err(|e| MemberError::from_spawn(e, ns))
}
