//! `bpfns doctor`: probe the running kernel for every feature bpfns uses.
//!
//! Every probe really tries the feature (creates the map, loads the program, traps a system
//! call); nothing is inferred from version numbers. [`run`] returns a [`Report`] with one
//! [`Check`] per feature; [`Report::render_text`] prints it, [`Report::active_layers`] says
//! which enforcement layers bpfns will use on this kernel and [`Report::all_required_ok`]
//! whether bpfns can run at all.
//!
//! Status semantics: [`Status::Missing`] is only used for features bpfns cannot work without;
//! optional features that are absent are [`Status::Unavailable`]. Informational checks (such as
//! `unprivileged_bpf_disabled`) are `Ok` with the value in the detail.
//!
//! Side effects: the probes create and immediately close BPF maps and programs, fork one
//! short-lived child for the seccomp round trip (always reaped), and mount securityfs at
//! `/sys/kernel/security` when it is not mounted (idempotent; the LSM check says so). tracefs
//! and bpffs are *not* mounted: when they are missing, a detached mount (never attached to any
//! path) checks that they can be mounted.

use std::path::Path;
use std::time::Duration;

use bpfns_sys::bpf::{self, ProgLoadOpts, RETURN_ZERO};
use bpfns_sys::fs::{self as sysfs, MountOutcome, BPF_FS_MAGIC, TRACEFS_MAGIC};
use bpfns_sys::probe::{self, describe_errno, DetachedMount};
use bpfns_sys::seccomp::{self, Action, FilterFlags, NotifSizes};
use bpfns_sys::{Errno, SysError};
use serde::ser::SerializeStruct;

use crate::layout::PinLayout;
use serde::{Serialize, Serializer};

/// Stable check ids (the `id` of each [`Check`]), for the CLI, JSON consumers and tests.
pub mod ids {
    pub const BPF_SYSCALL: &str = "bpf-syscall";
    pub const BTF: &str = "btf";
    pub const BPFFS: &str = "bpffs";
    pub const TASK_STORAGE: &str = "task-storage";
    pub const TP_BTF: &str = "tp-btf";
    pub const TRACEFS: &str = "tracefs";
    pub const TRACEPOINT: &str = "tracepoint";
    pub const ITERATORS: &str = "iterators";
    pub const SECCOMP_NOTIFY: &str = "seccomp-notify";
    pub const SECCOMP_ADDFD_SEND: &str = "seccomp-addfd-send";
    pub const SECCOMP_WAIT_KILLABLE_RECV: &str = "seccomp-wait-killable-recv";
    pub const SECCOMP_SYNC_WAKEUP: &str = "seccomp-sync-wakeup";
    pub const BPF_LSM: &str = "bpf-lsm";
    pub const FENTRY: &str = "fentry";
    pub const BPF_TOKEN: &str = "bpf-token";
    pub const UNPRIVILEGED_BPF: &str = "unprivileged-bpf";
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Present and working (or, for informational checks, read successfully).
    Ok,
    /// A feature bpfns needs is missing: bpfns cannot run here until it is fixed.
    Missing,
    /// An optional feature is absent; bpfns works without it.
    Unavailable,
}

impl Status {
    /// The label used in the text report.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Missing => "missing",
            Status::Unavailable => "unavailable",
        }
    }
}

/// One probed feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable id, see [`ids`].
    pub id: &'static str,
    /// Human title.
    pub title: &'static str,
    pub status: Status,
    /// What was found, with the errno when something failed.
    pub detail: String,
    /// How to fix it, concretely (kernel config option, mount command, boot parameter).
    pub fix: Option<String>,
}

impl Check {
    fn new(
        id: &'static str,
        title: &'static str,
        status: Status,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            id,
            title,
            status,
            detail: detail.into(),
            fix: None,
        }
    }

    fn ok(id: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self::new(id, title, Status::Ok, detail)
    }

    fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// An enforcement layer bpfns can use. Named the same everywhere (`bpfns doctor`, `bpfns
/// status`, `bpfns kernel status`, the protocol's `status`): by [`Layer::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The seccomp supervisor: always used.
    Supervisor,
    /// Kernel-side task tags and object ownership via tracepoints and task storage.
    TracepointBackstop,
    /// BPF LSM programs refusing foreign opens in the kernel.
    BpfLsm,
}

impl Serialize for Layer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Layer {
    /// Its name, in text and JSON alike.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Supervisor => "supervisor",
            Layer::TracepointBackstop => "tracepoint backstop",
            Layer::BpfLsm => "BPF LSM",
        }
    }
}

/// The result of [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `uname -r`.
    pub kernel: String,
    /// Whether the probes ran as root (most need it).
    pub root: bool,
    pub checks: Vec<Check>,
}

impl Report {
    /// The check with this id.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    fn is_ok(&self, id: &str) -> bool {
        self.check(id).is_some_and(|c| c.status == Status::Ok)
    }

    /// Whether nothing bpfns needs is missing.
    pub fn all_required_ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Missing)
    }

    /// The checks that make [`Report::all_required_ok`] false.
    pub fn missing(&self) -> Vec<&Check> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Missing)
            .collect()
    }

    /// The enforcement layers bpfns will use here: the supervisor always; the tracepoint
    /// backstop when BTF raw tracepoints (tp_btf), task storage and iterators work; BPF LSM
    /// only when a BPF LSM program loads.
    pub fn active_layers(&self) -> Vec<Layer> {
        let mut layers = vec![Layer::Supervisor];
        if [ids::TP_BTF, ids::TASK_STORAGE, ids::ITERATORS]
            .iter()
            .all(|id| self.is_ok(id))
        {
            layers.push(Layer::TracepointBackstop);
        }
        if self.is_ok(ids::BPF_LSM) {
            layers.push(Layer::BpfLsm);
        }
        layers
    }

    /// The report as aligned text: one line per check, an indented `fix:` line under each check
    /// that is not ok, then the active layers and the verdict.
    pub fn render_text(&self) -> String {
        let id_w = self.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
        let title_w = self.checks.iter().map(|c| c.title.len()).max().unwrap_or(0);
        let status_w = "unavailable".len();
        let mut out = format!("bpfns doctor: kernel {}\n", self.kernel);
        if !self.root {
            out.push_str(
                "note: not running as root; most probes need root (CAP_SYS_ADMIN, CAP_BPF, \
                 CAP_PERFMON) and fail with EPERM otherwise\n",
            );
        }
        out.push('\n');
        for c in &self.checks {
            out.push_str(&format!(
                "{:status_w$}  {:id_w$}  {:title_w$}  {}\n",
                c.status.label(),
                c.id,
                c.title,
                c.detail
            ));
            if let (Some(fix), true) = (&c.fix, c.status != Status::Ok) {
                out.push_str(&format!("{:status_w$}  fix: {fix}\n", ""));
            }
        }
        let layers: Vec<&str> = self.active_layers().iter().map(|l| l.name()).collect();
        out.push_str(&format!("\nenforcement layers: {}\n", layers.join(", ")));
        let missing: Vec<&str> = self.missing().iter().map(|c| c.id).collect();
        if missing.is_empty() {
            out.push_str("required features: all present\n");
        } else {
            out.push_str(&format!(
                "required features MISSING: {}\n",
                missing.join(", ")
            ));
        }
        out
    }
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Report", 5)?;
        st.serialize_field("kernel", &self.kernel)?;
        st.serialize_field("root", &self.root)?;
        st.serialize_field("all_required_ok", &self.all_required_ok())?;
        st.serialize_field("active_layers", &self.active_layers())?;
        st.serialize_field("checks", &self.checks)?;
        st.end()
    }
}

// ---------------------------------------------------------------------------------------------
// Constants from the UAPI (`enum bpf_prog_type`, `enum bpf_attach_type`, `enum bpf_map_type`).

const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_TASK_STORAGE: u32 = 29;
const BPF_PROG_TYPE_TRACEPOINT: u32 = 5;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_PROG_TYPE_LSM: u32 = 29;
const BPF_TRACE_RAW_TP: u32 = 23;
const BPF_TRACE_FENTRY: u32 = 24;
const BPF_LSM_MAC: u32 = 27;
const BPF_TRACE_ITER: u32 = 28;

const TRACEFS_PATH: &str = "/sys/kernel/tracing";
const BPFFS_PATH: &str = "/sys/fs/bpf";
const SECURITYFS_PATH: &str = "/sys/kernel/security";
/// `SECURITYFS_MAGIC` ("scfs", `include/uapi/linux/magic.h`). Spelled out here because
/// `bpfns_sys::fs::SECURITYFS_MAGIC` had a wrong value (0x73656373) when this was written.
const SECURITYFS_MAGIC: i64 = 0x7363_6673;
const SYS_EXIT_BPF_ID: &str = "events/syscalls/sys_exit_bpf/id";
const FENTRY_TARGET: &str = "security_bpf";
/// Upper bound for the seccomp round trip; the doctor never waits longer.
const SECCOMP_TIMEOUT: Duration = Duration::from_secs(5);

const WITHOUT_LSM: &str = "bpfns then enforces with the supervisor + tracepoint backstop";
const WITHOUT_FENTRY: &str =
    "optional: bpfns records ownership with the sys_exit_bpf tracepoint instead";

fn err_text(e: &SysError) -> String {
    format!("{}: {}", e.op, describe_errno(e.errno))
}

/// Fix text, with "run as root" first when an EPERM/EACCES is probably just missing privilege.
fn fix_for(errno: Option<Errno>, root: bool, fix: &str) -> String {
    match errno {
        Some(Errno::PERM | Errno::ACCESS) if !root => {
            format!(
                "run bpfns doctor as root (permission errors are expected otherwise); else: {fix}"
            )
        }
        _ => fix.to_string(),
    }
}

/// Load the trivial program of `prog_type`, optionally attached to a vmlinux BTF id.
fn load(prog_type: u32, name: &str, attach: Option<(&str, u32)>) -> Result<(), SysError> {
    let opts = match attach {
        None => ProgLoadOpts::default(),
        Some((target, attach_type)) => ProgLoadOpts {
            expected_attach_type: attach_type,
            attach_btf_id: probe::vmlinux_btf_id(target, attach_type)?,
            ..Default::default()
        },
    };
    bpf::prog_load(prog_type, name, &RETURN_ZERO, opts).map(drop)
}

/// Run every probe against the running kernel.
pub fn run() -> Report {
    let root = probe::is_root();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "(unknown)".to_string());
    let mut checks = vec![
        check_bpf_syscall(root),
        check_btf(root),
        check_bpffs(),
        check_task_storage(root),
        check_tp_btf(root),
    ];
    let (tracefs, detached) = check_tracefs();
    checks.push(tracefs);
    checks.push(check_tracepoint(root, detached.as_ref()));
    drop(detached);
    checks.push(check_iterators(root));
    checks.extend(check_seccomp(root));
    checks.push(check_bpf_lsm(root));
    checks.push(check_fentry(root));
    checks.push(check_bpf_token());
    checks.push(check_unprivileged_bpf());
    Report {
        kernel,
        root,
        checks,
    }
}

fn check_bpf_syscall(root: bool) -> Check {
    const T: &str = "BPF syscall";
    match bpf::map_create(BPF_MAP_TYPE_ARRAY, "bpfns_probe", 4, 4, 1) {
        Ok(_) => Check::ok(ids::BPF_SYSCALL, T, "created a BPF array map"),
        Err(e) => Check::new(ids::BPF_SYSCALL, T, Status::Missing, err_text(&e)).with_fix(fix_for(
            Some(e.errno),
            root,
            "boot a kernel built with CONFIG_BPF=y and CONFIG_BPF_SYSCALL=y",
        )),
    }
}

fn check_btf(root: bool) -> Check {
    const T: &str = "kernel BTF";
    const FIX: &str =
        "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y (provides /sys/kernel/btf/vmlinux)";
    if let Err(e) = probe::path_status(Path::new("/sys/kernel/btf/vmlinux")) {
        return Check::new(ids::BTF, T, Status::Missing, err_text(&e)).with_fix(FIX);
    }
    match probe::load_vmlinux_btf() {
        Ok(b) => Check::ok(
            ids::BTF,
            T,
            format!(
                "/sys/kernel/btf/vmlinux loaded by libbpf ({} types)",
                b.types
            ),
        ),
        Err(e) => Check::new(ids::BTF, T, Status::Missing, err_text(&e)).with_fix(fix_for(
            Some(e.errno),
            root,
            FIX,
        )),
    }
}

/// Whether the filesystem with `magic` is mounted at `path`; if not, whether a detached mount of
/// `fstype` works (which changes nothing lasting).
fn mount_state(path: &str, fstype: &str, magic: i64) -> Result<Option<DetachedMount>, SysError> {
    if sysfs::fs_magic(Path::new(path)).ok() == Some(magic) {
        return Ok(None);
    }
    probe::detached_mount(fstype).map(Some)
}

fn check_bpffs() -> Check {
    const T: &str = "bpffs";
    match mount_state(BPFFS_PATH, "bpf", BPF_FS_MAGIC) {
        Ok(None) => Check::ok(ids::BPFFS, T, format!("mounted at {BPFFS_PATH}")),
        Ok(Some(_)) => Check::ok(
            ids::BPFFS,
            T,
            format!(
                "not mounted at {BPFFS_PATH}; mountable (checked with a detached mount; \
                 `bpfns kernel load` mounts it)"
            ),
        ),
        Err(e) => Check::new(
            ids::BPFFS,
            T,
            Status::Missing,
            format!(
                "not mounted at {BPFFS_PATH}; a test mount failed: {}",
                err_text(&e)
            ),
        )
        .with_fix(format!("mount -t bpf bpf {BPFFS_PATH}")),
    }
}

fn check_task_storage(root: bool) -> Check {
    const T: &str = "task local storage";
    const FIX: &str = "Linux 5.11+ with CONFIG_BPF_SYSCALL=y and CONFIG_DEBUG_INFO_BTF=y";
    match probe::map_type_supported(BPF_MAP_TYPE_TASK_STORAGE) {
        Ok(true) => Check::ok(
            ids::TASK_STORAGE,
            T,
            "created a BPF_MAP_TYPE_TASK_STORAGE map",
        ),
        Ok(false) => Check::new(
            ids::TASK_STORAGE,
            T,
            Status::Missing,
            "the kernel refused to create a BPF_MAP_TYPE_TASK_STORAGE map",
        )
        .with_fix(fix_for(Some(Errno::PERM), root, FIX)),
        Err(e) => Check::new(ids::TASK_STORAGE, T, Status::Missing, err_text(&e))
            .with_fix(fix_for(Some(e.errno), root, FIX)),
    }
}

fn check_tp_btf(root: bool) -> Check {
    const T: &str = "tp_btf sys_exit, sched_process_fork";
    // The kernel side attaches to exactly these two raw tracepoints.
    match load(
        BPF_PROG_TYPE_TRACING,
        "bpfns_tp_btf",
        Some(("sched_process_fork", BPF_TRACE_RAW_TP)),
    )
    .and_then(|()| {
        load(
            BPF_PROG_TYPE_TRACING,
            "bpfns_tp_btf",
            Some(("sys_exit", BPF_TRACE_RAW_TP)),
        )
    }) {
        Ok(()) => Check::ok(
            ids::TP_BTF,
            T,
            "loaded tp_btf programs for sys_exit and sched_process_fork",
        ),
        Err(e) => Check::new(ids::TP_BTF, T, Status::Missing, err_text(&e)).with_fix(fix_for(
            Some(e.errno),
            root,
            "Linux 5.5+ with CONFIG_DEBUG_INFO_BTF=y (BTF-enabled raw tracepoints)",
        )),
    }
}

fn check_tracefs() -> (Check, Option<DetachedMount>) {
    const T: &str = "tracefs";
    match mount_state(TRACEFS_PATH, "tracefs", TRACEFS_MAGIC) {
        Ok(None) => (
            Check::ok(ids::TRACEFS, T, format!("mounted at {TRACEFS_PATH}")),
            None,
        ),
        Ok(Some(m)) => (
            Check::ok(
                ids::TRACEFS,
                T,
                format!(
                    "not mounted at {TRACEFS_PATH}; mountable (checked with a detached mount; \
                     `bpfns kernel load` mounts it)"
                ),
            ),
            Some(m),
        ),
        Err(e) => (
            Check::new(
                ids::TRACEFS,
                T,
                Status::Unavailable,
                format!(
                    "not mounted at {TRACEFS_PATH}; a test mount failed: {}",
                    err_text(&e)
                ),
            )
            .with_fix(format!(
                "optional: mount -t tracefs tracefs {TRACEFS_PATH} (kernel needs CONFIG_FTRACE=y); \
                 bpfns does not need tracefs"
            )),
            None,
        ),
    }
}

fn check_tracepoint(root: bool, detached: Option<&DetachedMount>) -> Check {
    const T: &str = "sys_exit_bpf tracepoint";
    let id =
        match detached {
            Some(m) => m.read_to_string(SYS_EXIT_BPF_ID),
            None => std::fs::read_to_string(Path::new(TRACEFS_PATH).join(SYS_EXIT_BPF_ID)).map_err(
                |e| SysError {
                    op: format!("read {TRACEFS_PATH}/{SYS_EXIT_BPF_ID}"),
                    errno: Errno::from_io_error(&e).unwrap_or(Errno::IO),
                },
            ),
        };
    let id = match id {
        Ok(s) => s.trim().to_string(),
        Err(e) => {
            return Check::new(ids::TRACEPOINT, T, Status::Unavailable, err_text(&e)).with_fix(
                fix_for(
                    Some(e.errno),
                    root,
                    "optional: a kernel built with CONFIG_FTRACE_SYSCALLS=y and tracefs mounted; \
                 bpfns attaches through BTF raw tracepoints (tp-btf) and does not need it",
                ),
            )
        }
    };
    match load(BPF_PROG_TYPE_TRACEPOINT, "bpfns_tp", None) {
        Ok(()) => Check::ok(
            ids::TRACEPOINT,
            T,
            format!("syscalls/sys_exit_bpf has id {id}; loaded a tracepoint program"),
        ),
        Err(e) => Check::new(
            ids::TRACEPOINT,
            T,
            Status::Unavailable,
            format!("syscalls/sys_exit_bpf has id {id}; {}", err_text(&e)),
        )
        .with_fix(fix_for(
            Some(e.errno),
            root,
            "optional: a kernel built with CONFIG_BPF_EVENTS=y; bpfns does not need it",
        )),
    }
}

fn check_iterators(root: bool) -> Check {
    const T: &str = "BPF iterators";
    let mut failures = Vec::new();
    let mut errno = None;
    for target in ["bpf_map", "bpf_prog", "bpf_link"] {
        if let Err(e) = load(
            BPF_PROG_TYPE_TRACING,
            "bpfns_iter",
            Some((target, BPF_TRACE_ITER)),
        ) {
            errno.get_or_insert(e.errno);
            failures.push(format!("iter/{target}: {}", err_text(&e)));
        }
    }
    if failures.is_empty() {
        Check::ok(
            ids::ITERATORS,
            T,
            "loaded iter/bpf_map, iter/bpf_prog and iter/bpf_link programs",
        )
    } else {
        Check::new(ids::ITERATORS, T, Status::Missing, failures.join("; ")).with_fix(fix_for(
            errno,
            root,
            "Linux 5.8+ (bpf_map, bpf_prog iterators) and 5.19+ (bpf_link iterator) with \
             CONFIG_DEBUG_INFO_BTF=y",
        ))
    }
}

fn check_seccomp(root: bool) -> Vec<Check> {
    const T_NOTIFY: &str = "seccomp user notification";
    const T_ADDFD: &str = "seccomp ADDFD|SEND round trip";
    const T_KILLABLE: &str = "seccomp WAIT_KILLABLE_RECV";
    const T_SYNC: &str = "seccomp SYNC_WAKE_UP";
    const FIX_NOTIFY: &str = "a kernel built with CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y \
                              (Linux 5.0+; bpfns needs 5.14+ for ADDFD_FLAG_SEND)";

    // 1. The action and the listener flag.
    let action = seccomp::action_available(Action::UserNotif);
    let listener = seccomp::filter_flags_supported(FilterFlags::NEW_LISTENER);
    let notify = match (&action, &listener) {
        (Ok(true), Ok(true)) => {
            let sizes = match seccomp::notif_sizes() {
                Ok(s) if s == NotifSizes::compiled() => format!(
                    "notification sizes {}/{}/{} as compiled",
                    s.notif, s.resp, s.data
                ),
                Ok(s) => {
                    let c = NotifSizes::compiled();
                    format!(
                        "notification sizes {}/{}/{} differ from compiled {}/{}/{}",
                        s.notif, s.resp, s.data, c.notif, c.resp, c.data
                    )
                }
                Err(e) => format!("GET_NOTIF_SIZES failed: {}", err_text(&e)),
            };
            Check::ok(
                ids::SECCOMP_NOTIFY,
                T_NOTIFY,
                format!("SECCOMP_RET_USER_NOTIF available, NEW_LISTENER accepted; {sizes}"),
            )
        }
        _ => {
            let mut why = Vec::new();
            match &action {
                Ok(true) => {}
                Ok(false) => why.push("SECCOMP_RET_USER_NOTIF not available (EOPNOTSUPP)".into()),
                Err(e) => why.push(err_text(e)),
            }
            match &listener {
                Ok(true) => {}
                Ok(false) => why.push("SECCOMP_FILTER_FLAG_NEW_LISTENER unknown (EINVAL)".into()),
                Err(e) => why.push(err_text(e)),
            }
            Check::new(
                ids::SECCOMP_NOTIFY,
                T_NOTIFY,
                Status::Missing,
                why.join("; "),
            )
            .with_fix(FIX_NOTIFY)
        }
    };
    let notify_ok = notify.status == Status::Ok;

    // 2. WAIT_KILLABLE_RECV.
    let killable = seccomp::filter_flags_supported(
        FilterFlags::NEW_LISTENER | FilterFlags::WAIT_KILLABLE_RECV,
    );
    let killable_ok = matches!(killable, Ok(true));

    // 3. The round trip (with WAIT_KILLABLE_RECV when known), which also tries SYNC_WAKE_UP.
    let trip = notify_ok.then(|| {
        let flags = if killable_ok {
            FilterFlags::WAIT_KILLABLE_RECV
        } else {
            FilterFlags::EMPTY
        };
        probe::seccomp_notif_round_trip(flags, SECCOMP_TIMEOUT)
    });

    let addfd = match &trip {
        None => Check::new(
            ids::SECCOMP_ADDFD_SEND,
            T_ADDFD,
            Status::Missing,
            "not tried: no seccomp user notification",
        )
        .with_fix(FIX_NOTIFY),
        Some(t) => match &t.outcome {
            Ok(fd) => Check::ok(
                ids::SECCOMP_ADDFD_SEND,
                T_ADDFD,
                format!(
                    "child's trapped getppid() returned injected fd {fd} (listener via \
                     pidfd_getfd, NOTIF_ID_VALID, ADDFD with FLAG_SEND)"
                ),
            ),
            Err(e) => Check::new(
                ids::SECCOMP_ADDFD_SEND,
                T_ADDFD,
                Status::Missing,
                err_text(e),
            )
            .with_fix(fix_for(
                Some(e.errno),
                root,
                "Linux 5.14+ (SECCOMP_ADDFD_FLAG_SEND; pidfd_getfd needs 5.6+) with \
                     CONFIG_SECCOMP_FILTER=y",
            )),
        },
    };

    let used = match &trip {
        Some(t) if t.outcome.is_ok() => "; used in the round trip",
        _ => "",
    };
    let killable = match killable {
        Ok(true) => Check::ok(
            ids::SECCOMP_WAIT_KILLABLE_RECV,
            T_KILLABLE,
            format!("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV accepted{used}"),
        ),
        Ok(false) => Check::new(
            ids::SECCOMP_WAIT_KILLABLE_RECV,
            T_KILLABLE,
            Status::Unavailable,
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV unknown (EINVAL)",
        )
        .with_fix(
            "Linux 5.19+; optional: without it a signal can restart a trapped bpf() call and the \
             supervisor sees it again",
        ),
        Err(e) => Check::new(
            ids::SECCOMP_WAIT_KILLABLE_RECV,
            T_KILLABLE,
            Status::Unavailable,
            err_text(&e),
        ),
    };

    let sync = match trip.as_ref().and_then(|t| t.sync_wakeup.as_ref()) {
        Some(Ok(())) => Check::ok(
            ids::SECCOMP_SYNC_WAKEUP,
            T_SYNC,
            "SECCOMP_IOCTL_NOTIF_SET_FLAGS(SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) accepted",
        ),
        Some(Err(e)) => Check::new(
            ids::SECCOMP_SYNC_WAKEUP,
            T_SYNC,
            Status::Unavailable,
            err_text(e),
        )
        .with_fix("Linux 6.6+; optional: only lowers the supervisor's round-trip latency"),
        None => Check::new(
            ids::SECCOMP_SYNC_WAKEUP,
            T_SYNC,
            Status::Unavailable,
            "not tried: no listener was obtained",
        ),
    };

    vec![notify, addfd, killable, sync]
}

/// What the BPF LSM probe found, classified by [`classify_bpf_lsm`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LsmFacts {
    /// Mounting securityfs: whether this probe mounted it.
    pub securityfs: Result<MountOutcome, SysError>,
    /// The active LSMs (`/sys/kernel/security/lsm`).
    pub lsms: Result<Vec<String>, SysError>,
    /// Loading an `lsm/bpf_map` program.
    pub load: Result<(), SysError>,
    pub root: bool,
}

pub(crate) fn classify_bpf_lsm(f: &LsmFacts) -> Check {
    const T: &str = "BPF LSM";
    let mut detail = Vec::new();
    let bpf_listed = match &f.lsms {
        Ok(l) => Some(l.iter().any(|s| s == "bpf")),
        Err(_) => None,
    };
    let load_ok = f.load.is_ok();
    match &f.load {
        Ok(()) => detail.push("loaded an lsm/bpf_map program".to_string()),
        Err(e) if e.errno == Errno::PERM => detail.push(format!(
            "kernel refuses BPF LSM programs at load: {}",
            describe_errno(e.errno)
        )),
        Err(e) if e.op.starts_with("vmlinux BTF id") => detail.push(format!(
            "bpf_lsm_bpf_map is not in vmlinux BTF (kernel without CONFIG_BPF_LSM): {}",
            describe_errno(e.errno)
        )),
        Err(e) => detail.push(format!(
            "loading an lsm/bpf_map program failed: {}",
            err_text(e)
        )),
    }
    let list = f.lsms.as_ref().map(|l| l.join(",")).unwrap_or_default();
    match (&f.lsms, bpf_listed) {
        (Ok(_), Some(true)) => detail.push(format!("\"bpf\" is in the active LSM list ({list})")),
        (Ok(_), _) => detail.push(format!("bpf not in lsm= list ({list})")),
        (Err(e), _) => detail.push(format!("active LSM list unreadable: {}", err_text(e))),
    }
    match &f.securityfs {
        Ok(MountOutcome::Mounted) => {
            detail.push(format!("mounted securityfs at {SECURITYFS_PATH}"))
        }
        Ok(MountOutcome::AlreadyMounted) => {}
        Err(e) => detail.push(format!("could not mount securityfs: {}", err_text(e))),
    }
    let detail = detail.join("; ");
    if load_ok && bpf_listed == Some(true) {
        return Check::ok(ids::BPF_LSM, T, detail);
    }
    let lsm_param = match bpf_listed {
        Some(true) => format!("lsm={list}"),
        Some(false) if !list.is_empty() => format!("lsm={list},bpf"),
        _ => "lsm=<current list>,bpf".to_string(),
    };
    let fix = match (&f.load, bpf_listed) {
        (Err(e), Some(true)) if e.errno == Errno::PERM && f.root => format!(
            "nothing to do on this kernel: it refuses BPF LSM (and trampoline) programs at load \
             even though \"bpf\" is an active LSM; {WITHOUT_LSM}"
        ),
        (Err(e), _) if e.op.starts_with("vmlinux BTF id") => format!(
            "build the kernel with CONFIG_BPF_LSM=y and boot with {lsm_param}; optional: \
             {WITHOUT_LSM}"
        ),
        (Err(e), _) => fix_for(
            Some(e.errno),
            f.root,
            &format!(
                "a kernel with CONFIG_BPF_LSM=y booted with {lsm_param}; on kernels that refuse \
                 BPF LSM/trampoline programs there is nothing to do: {WITHOUT_LSM}"
            ),
        ),
        (Ok(()), _) => format!(
            "boot with {lsm_param} (CONFIG_BPF_LSM=y is there: the program loaded); optional: \
             {WITHOUT_LSM}"
        ),
    };
    Check::new(ids::BPF_LSM, T, Status::Unavailable, detail).with_fix(fix)
}

fn check_bpf_lsm(root: bool) -> Check {
    let securityfs =
        sysfs::ensure_mounted("securityfs", Path::new(SECURITYFS_PATH), SECURITYFS_MAGIC);
    let lsm_path = Path::new(SECURITYFS_PATH).join("lsm");
    let lsms = std::fs::read_to_string(&lsm_path)
        .map(|s| {
            s.trim()
                .split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .map_err(|e| SysError {
            op: format!("read {}", lsm_path.display()),
            errno: Errno::from_io_error(&e).unwrap_or(Errno::IO),
        });
    let load = load(
        BPF_PROG_TYPE_LSM,
        "bpfns_lsm",
        Some(("bpf_map", BPF_LSM_MAC)),
    );
    let mut check = classify_bpf_lsm(&LsmFacts {
        securityfs,
        lsms,
        load,
        root,
    });
    describe_lsm_layer(&mut check, crate::lsm::plan(), &PinLayout::default());
    check
}

/// Add to the BPF LSM check what the layer would use on this kernel (the hooks, probed in its
/// BTF: their names and prototypes differ between 6.1, 6.9+ and 6.18) and whether it is loaded
/// at the default pin root. A kernel where BPF LSM programs load but no hook fits is not ok.
fn describe_lsm_layer(
    check: &mut Check,
    plan: crate::Result<crate::lsm::Plan>,
    layout: &PinLayout,
) {
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            check
                .detail
                .push_str(&format!("; LSM hooks not probed: {e}"));
            return;
        }
    };
    let used = plan.used();
    if used.is_empty() {
        check
            .detail
            .push_str("; no usable LSM hook in this kernel's BTF");
        if check.status == Status::Ok {
            check.status = Status::Unavailable;
            check.fix = Some(format!(
                "a kernel with CONFIG_BPF_LSM=y whose BTF has the bpf_lsm_bpf* hooks; {WITHOUT_LSM}"
            ));
        }
        return;
    }
    check
        .detail
        .push_str(&format!("; hooks: {}", used.join(", ")));
    let missing = plan.missing();
    if !missing.is_empty() {
        check
            .detail
            .push_str(&format!("; not used: {}", missing.join(", ")));
    }
    if check.status == Status::Ok {
        if crate::lsm::is_active(layout) {
            check.detail.push_str(&format!(
                "; the layer is loaded at {}",
                layout.root().display()
            ));
        } else {
            check.detail.push_str(&format!(
                "; the layer is not loaded at {} (bpfnsd and `bpfns kernel load` load it)",
                layout.root().display()
            ));
        }
    }
}

fn check_fentry(root: bool) -> Check {
    const T: &str = "trampolines (fentry)";
    match load(
        BPF_PROG_TYPE_TRACING,
        "bpfns_fentry",
        Some((FENTRY_TARGET, BPF_TRACE_FENTRY)),
    ) {
        Ok(()) => Check::ok(
            ids::FENTRY,
            T,
            format!("loaded an fentry/{FENTRY_TARGET} program"),
        ),
        Err(e) => {
            let detail = if e.errno == Errno::PERM {
                format!(
                    "kernel refuses trampoline programs (fentry/{FENTRY_TARGET}) at load: {}",
                    describe_errno(e.errno)
                )
            } else {
                format!("fentry/{FENTRY_TARGET}: {}", err_text(&e))
            };
            let fix = if e.errno == Errno::PERM && root {
                format!("nothing to do on this kernel: it refuses trampoline programs at load; {WITHOUT_FENTRY}")
            } else {
                fix_for(
                    Some(e.errno),
                    root,
                    &format!(
                        "a kernel with BPF trampolines (CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS=y, \
                         a JIT that supports them); {WITHOUT_FENTRY}"
                    ),
                )
            };
            Check::new(ids::FENTRY, T, Status::Unavailable, detail).with_fix(fix)
        }
    }
}

fn check_bpf_token() -> Check {
    const T: &str = "BPF token";
    match probe::token_create(-1) {
        Err(e) if e.errno == Errno::BADF => Check::ok(
            ids::BPF_TOKEN,
            T,
            "BPF_TOKEN_CREATE known (EBADF for bpffs_fd=-1)",
        ),
        Ok(_) => Check::ok(ids::BPF_TOKEN, T, "BPF_TOKEN_CREATE known"),
        Err(e) if e.errno == Errno::INVAL => Check::new(
            ids::BPF_TOKEN,
            T,
            Status::Unavailable,
            "BPF_TOKEN_CREATE unknown to this kernel (EINVAL)",
        )
        .with_fix("Linux 6.9+; optional: tokens let containers load programs without host CAP_BPF"),
        Err(e) => Check::new(ids::BPF_TOKEN, T, Status::Unavailable, err_text(&e)),
    }
}

fn check_unprivileged_bpf() -> Check {
    const T: &str = "unprivileged_bpf_disabled";
    const PATH: &str = "/proc/sys/kernel/unprivileged_bpf_disabled";
    match std::fs::read_to_string(PATH) {
        Ok(v) => {
            let v = v.trim();
            let meaning = match v {
                "0" => "unprivileged users may load socket filters",
                "1" => "unprivileged bpf() disabled until reboot",
                "2" => "unprivileged bpf() disabled (root may set 0 again)",
                _ => "unknown value",
            };
            Check::ok(
                ids::UNPRIVILEGED_BPF,
                T,
                format!("{v}: {meaning} (informational)"),
            )
        }
        Err(e) => Check::new(
            ids::UNPRIVILEGED_BPF,
            T,
            Status::Unavailable,
            format!("read {PATH}: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &'static str, status: Status) -> Check {
        Check {
            id,
            title: "title",
            status,
            detail: format!("detail of {id}"),
            fix: (status != Status::Ok).then(|| format!("fix {id}")),
        }
    }

    fn report(checks: Vec<Check>) -> Report {
        Report {
            kernel: "6.18.0-test".into(),
            root: true,
            checks,
        }
    }

    fn all_ok() -> Vec<Check> {
        [
            ids::BPF_SYSCALL,
            ids::TASK_STORAGE,
            ids::TP_BTF,
            ids::ITERATORS,
            ids::TRACEFS,
            ids::TRACEPOINT,
            ids::SECCOMP_NOTIFY,
            ids::BPF_LSM,
        ]
        .into_iter()
        .map(|id| c(id, Status::Ok))
        .collect()
    }

    fn set(checks: &mut [Check], id: &str, status: Status) {
        for ch in checks.iter_mut().filter(|ch| ch.id == id) {
            ch.status = status;
        }
    }

    #[test]
    fn layers_all() {
        let r = report(all_ok());
        assert_eq!(
            r.active_layers(),
            vec![Layer::Supervisor, Layer::TracepointBackstop, Layer::BpfLsm]
        );
    }

    #[test]
    fn layers_without_lsm() {
        let mut checks = all_ok();
        set(&mut checks, ids::BPF_LSM, Status::Unavailable);
        let r = report(checks);
        assert_eq!(
            r.active_layers(),
            vec![Layer::Supervisor, Layer::TracepointBackstop]
        );
        assert!(r.all_required_ok());
    }

    #[test]
    fn layers_need_task_storage_tp_btf_and_iterators() {
        for id in [ids::TASK_STORAGE, ids::TP_BTF, ids::ITERATORS] {
            let mut checks = all_ok();
            set(&mut checks, id, Status::Missing);
            let r = report(checks);
            assert_eq!(
                r.active_layers(),
                vec![Layer::Supervisor, Layer::BpfLsm],
                "{id}"
            );
            assert!(!r.all_required_ok());
            assert_eq!(r.missing().len(), 1);
        }
        // An absent check never counts as ok.
        let r = report(vec![]);
        assert_eq!(r.active_layers(), vec![Layer::Supervisor]);
        assert!(r.all_required_ok());
    }

    #[test]
    fn unavailable_is_not_required() {
        let mut checks = all_ok();
        checks.push(c(ids::FENTRY, Status::Unavailable));
        checks.push(c(ids::BPF_TOKEN, Status::Unavailable));
        assert!(report(checks).all_required_ok());
    }

    #[test]
    fn render_aligns_and_shows_fixes_only_when_not_ok() {
        let checks = vec![
            c(ids::BPF_SYSCALL, Status::Ok),
            c(ids::SECCOMP_WAIT_KILLABLE_RECV, Status::Unavailable),
            c(ids::TRACEFS, Status::Missing),
        ];
        let text = report(checks).render_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "bpfns doctor: kernel 6.18.0-test");
        let row = |id: &str| {
            *lines
                .iter()
                .find(|l| l.split_whitespace().nth(1) == Some(id))
                .expect("row")
        };
        let ok = row(ids::BPF_SYSCALL);
        let un = row(ids::SECCOMP_WAIT_KILLABLE_RECV);
        let mi = row(ids::TRACEFS);
        assert!(ok.starts_with("ok           bpf-syscall  "), "{ok:?}");
        assert!(un.starts_with("unavailable  seccomp-wait-killable-recv  title  detail"));
        // The id, title and detail columns line up.
        for l in [ok, un, mi] {
            assert_eq!(l.find("title"), un.find("title"), "{l:?}");
            assert_eq!(l.find("detail"), un.find("detail"), "{l:?}");
        }
        assert!(!text.contains("fix bpf-syscall"));
        assert!(text.contains("\n             fix: fix seccomp-wait-killable-recv\n"));
        assert!(text.contains("\n             fix: fix tracefs\n"));
        assert!(text.contains("enforcement layers: supervisor\n"));
        assert!(text.contains("required features MISSING: tracefs\n"));
        assert!(!text.contains("not running as root"));
    }

    #[test]
    fn render_verdict_when_all_present() {
        let mut r = report(all_ok());
        r.root = false;
        let text = r.render_text();
        assert!(text.contains("enforcement layers: supervisor, tracepoint backstop, BPF LSM\n"));
        assert!(text.contains("required features: all present\n"));
        assert!(text.contains("not running as root"));
        // JSON names the layers as the text and `bpfns status` do.
        let v = serde_json::to_value(&r).expect("JSON");
        assert_eq!(
            v["active_layers"],
            serde_json::json!(["supervisor", "tracepoint backstop", "BPF LSM"])
        );
    }

    fn facts(load: Result<(), SysError>, lsms: &[&str]) -> LsmFacts {
        LsmFacts {
            securityfs: Ok(MountOutcome::Mounted),
            lsms: Ok(lsms.iter().map(|s| s.to_string()).collect()),
            load,
            root: true,
        }
    }

    fn perm() -> Result<(), SysError> {
        Err(SysError {
            op: "BPF_PROG_LOAD bpfns_lsm".into(),
            errno: Errno::PERM,
        })
    }

    #[test]
    fn lsm_refused_at_load() {
        let ch = classify_bpf_lsm(&facts(perm(), &["lockdown", "capability", "bpf"]));
        assert_eq!(ch.status, Status::Unavailable);
        assert!(ch
            .detail
            .contains("kernel refuses BPF LSM programs at load: EPERM"));
        assert!(ch
            .detail
            .contains("\"bpf\" is in the active LSM list (lockdown,capability,bpf)"));
        assert!(ch
            .detail
            .contains("mounted securityfs at /sys/kernel/security"));
        let fix = ch.fix.expect("fix");
        assert!(fix.starts_with("nothing to do"), "{fix}");
        assert!(fix.contains("supervisor + tracepoint backstop"));
    }

    #[test]
    fn lsm_not_in_list() {
        let ch = classify_bpf_lsm(&facts(Ok(()), &["lockdown", "capability"]));
        assert_eq!(ch.status, Status::Unavailable);
        assert!(ch
            .detail
            .contains("bpf not in lsm= list (lockdown,capability)"));
        assert!(ch.fix.expect("fix").contains("lsm=lockdown,capability,bpf"));

        let ch = classify_bpf_lsm(&facts(perm(), &["capability"]));
        assert!(ch.detail.contains("EPERM"));
        assert!(ch.detail.contains("bpf not in lsm= list"));
        assert!(ch.fix.expect("fix").contains("lsm=capability,bpf"));
    }

    #[test]
    fn lsm_fix_when_not_root() {
        let mut f = facts(perm(), &["capability", "bpf"]);
        f.root = false;
        let fix = classify_bpf_lsm(&f).fix.expect("fix");
        assert!(fix.starts_with("run bpfns doctor as root"), "{fix}");
        assert!(fix.contains("lsm=capability,bpf;"), "{fix}");
    }

    #[test]
    fn lsm_without_config() {
        let ch = classify_bpf_lsm(&facts(
            Err(SysError {
                op: "vmlinux BTF id of bpf_map (attach type 27)".into(),
                errno: Errno::NOENT,
            }),
            &["capability"],
        ));
        assert_eq!(ch.status, Status::Unavailable);
        assert!(ch.detail.contains("CONFIG_BPF_LSM"));
        assert!(ch.fix.expect("fix").contains("CONFIG_BPF_LSM=y"));
    }

    #[test]
    fn lsm_ok() {
        let mut f = facts(Ok(()), &["capability", "bpf"]);
        f.securityfs = Ok(MountOutcome::AlreadyMounted);
        let ch = classify_bpf_lsm(&f);
        assert_eq!(ch.status, Status::Ok);
        assert!(!ch.detail.contains("mounted securityfs"));
    }

    #[test]
    fn lsm_detail_names_the_hooks_and_needs_one() {
        let layout = PinLayout::new("/nonexistent/bpfns-doctor-test");
        let ok = || classify_bpf_lsm(&facts(Ok(()), &["capability", "bpf"]));
        // 6.1: the old hook names, nothing missing.
        let mut ch = ok();
        let plan = crate::lsm::plan_with(|h| match h {
            "bpf" => Some(vec!["int".into(), "union bpf_attr *".into()]),
            "bpf_map" | "bpf_map_alloc_security" | "bpf_map_free_security" => {
                Some(vec!["struct bpf_map *".into()])
            }
            "bpf_prog" => Some(vec!["struct bpf_prog *".into()]),
            "bpf_prog_alloc_security" | "bpf_prog_free_security" => {
                Some(vec!["struct bpf_prog_aux *".into()])
            }
            _ => None,
        });
        describe_lsm_layer(&mut ch, Ok(plan), &layout);
        assert_eq!(ch.status, Status::Ok);
        assert!(
            ch.detail
                .contains("; hooks: bpf, bpf_map_alloc_security, bpf_map,"),
            "{}",
            ch.detail
        );
        assert!(!ch.detail.contains("not used"), "{}", ch.detail);
        assert!(ch
            .detail
            .contains("the layer is not loaded at /nonexistent/bpfns-doctor-test"));
        // Only the command hook: the rest is reported missing, with why.
        let mut ch = ok();
        let plan = crate::lsm::plan_with(|h| {
            (h == "bpf").then(|| vec!["int".into(), "union bpf_attr *".into()])
        });
        describe_lsm_layer(&mut ch, Ok(plan), &layout);
        assert_eq!(ch.status, Status::Ok);
        assert!(ch
            .detail
            .contains("not used: bpf_map_create (not in this kernel)"));
        // No usable hook at all: not ok, whatever the load probe said.
        let mut ch = ok();
        describe_lsm_layer(&mut ch, Ok(crate::lsm::plan_with(|_| None)), &layout);
        assert_eq!(ch.status, Status::Unavailable);
        assert!(ch.detail.contains("no usable LSM hook"));
        assert!(ch
            .fix
            .expect("fix")
            .contains("supervisor + tracepoint backstop"));
    }

    #[test]
    fn eperm_fix_mentions_root_only_when_not_root() {
        assert!(fix_for(Some(Errno::PERM), false, "x").starts_with("run bpfns doctor as root"));
        assert_eq!(fix_for(Some(Errno::PERM), true, "x"), "x");
        assert_eq!(fix_for(Some(Errno::INVAL), false, "x"), "x");
    }
}
