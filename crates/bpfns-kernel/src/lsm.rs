//! The BPF LSM layer: the kernel itself refuses, with EPERM, a namespace task's attempt to open
//! a BPF object its namespace may not see (`bpf/bpfns_lsm.bpf.c`).
//!
//! It is optional and sits under the supervisor and beside the tracepoint backstop: it is loaded
//! only where the kernel accepts BPF LSM programs ("bpf" in the active LSM list, and the kernel
//! does not refuse the program type), and it works on the main object's pinned maps, so the
//! kernel side must be loaded first ([`crate::loader::load`] does both, in that order).
//!
//! Portability (Linux 6.1 to 6.18): the LSM hooks bpfns uses changed names and prototypes over
//! that range, so which programs are loaded is decided at run time from the running kernel's
//! BTF ([`plan`]): each program's hook (`bpf_lsm_<hook>`) must exist and its leading parameters
//! must have the types the program reads. Programs that do not fit are not loaded
//! (`set_autoload(false)`), and the report says which and why.
//!
//! | program | hook | kernels |
//! |---|---|---|
//! | `lsm_bpf_map` | `bpf_map(map, fmode)` | all |
//! | `lsm_bpf_prog` | `bpf_prog(prog)` | all |
//! | `lsm_bpf` | `bpf(cmd, attr, size[, kernel])` | all (`kernel` since 6.18) |
//! | `lsm_map_create` / `lsm_map_alloc` | `bpf_map_create(map, ...)` / `bpf_map_alloc_security(map)` | 6.9+ / up to 6.8 |
//! | `lsm_prog_load` / `lsm_prog_alloc` | `bpf_prog_load(prog, ...)` / `bpf_prog_alloc_security(aux)` | 6.9+ / up to 6.8 |
//! | `lsm_map_free` / `lsm_map_free_sec` | `bpf_map_free(map)` / `bpf_map_free_security(map)` | 6.9+ / up to 6.8 |
//! | `lsm_prog_free` / `lsm_prog_free_sec` | `bpf_prog_free(prog)` / `bpf_prog_free_security(aux)` | 6.9+ / up to 6.8 |
//! | `lsm_token_capable` | `bpf_token_capable(token, cap)` | 6.9+ (BPF tokens) |
//!
//! Pins: `<root>/links/lsm_<program>` (one link per program, replaced atomically like the main
//! object's), `<root>/maps/lsm_objects` (object pointer → ownership key, so that the free
//! hooks can drop the records of freed objects) and `<root>/maps/lsm_pending` (objects between
//! their create hook and their first fd).
//!
//! What this layer does not cover: `BPF_OBJ_GET` of a pinned *link* (no hook sees the link
//! before its fd exists; BTF objects cannot be pinned) — the tracepoint backstop and the
//! supervisor handle it; ownership of links and BTF objects is recorded by the tracepoint path.

use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};

use bpfns_sys::bpf::{self as sysbpf, ProgLoadOpts, RETURN_ZERO};
use bpfns_sys::fs::{self as sysfs, SECURITYFS_MAGIC};
use bpfns_sys::probe::{self, describe_errno};
use bpfns_sys::{Errno, SysError};
use libbpf_rs::btf::types::{Func, FuncProto};
use libbpf_rs::btf::{Btf, BtfKind, BtfType};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle};
use serde::Serialize;

use crate::error::{KernelError, Result};
use crate::layout::{PinLayout, MAPS};
use crate::loader::pin_replace;
use crate::lsm_skel::BpfnsLsmSkelBuilder;
use crate::migrate;

/// Prefix of the LSM layer's link pins under `<root>/links/` (the program names carry it).
pub const LINK_PREFIX: &str = "lsm_";

/// Maps the LSM layer adds under `<root>/maps/` (beside [`MAPS`], which it reuses): pinned so
/// that an upgrade's new programs continue where the old ones were (a creation whose create
/// hook ran in the old program is finished by the new one).
pub const LSM_MAPS: [&str; 2] = ["lsm_objects", "lsm_pending"];

const SECURITYFS_PATH: &str = "/sys/kernel/security";
const BPF_PROG_TYPE_LSM: u32 = 29;
const BPF_LSM_MAC: u32 = 27;

/// Indices of this layer's counters in the shared `stats` array (see `bpfns_lsm.bpf.c`).
const STAT_REFUSED: u32 = 5;
const STAT_RECORDED: u32 = 6;
const STAT_DROPPED: u32 = 7;

/// What a program of the LSM layer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Refuses foreign map/prog fds and records ownership on the creating fd.
    Open,
    /// Marks a map/prog being created (its id is still 0).
    Create,
    /// Command level: link and BTF GET_FD_BY_ID, syscall program loads.
    Command,
    /// Drops the records of freed objects.
    Free,
    /// Refuses CAP_PERFMON through a BPF token where the namespace denies tracing.
    Capability,
}

/// One program of `bpfns_lsm.bpf.c` and the hook prototype it needs.
#[derive(Debug, Clone, Copy)]
struct Spec {
    program: &'static str,
    hook: &'static str,
    /// The leading parameters the program reads, as [`render_type`] spells them.
    params: &'static [&'static str],
    role: Role,
    /// The group of programs of which exactly one (the first that fits) is loaded.
    group: &'static str,
}

const SPECS: [Spec; 12] = [
    Spec {
        program: "lsm_bpf",
        hook: "bpf",
        params: &["int", "union bpf_attr *"],
        role: Role::Command,
        group: "cmd",
    },
    Spec {
        program: "lsm_map_create",
        hook: "bpf_map_create",
        params: &["struct bpf_map *"],
        role: Role::Create,
        group: "map-create",
    },
    Spec {
        program: "lsm_map_alloc",
        hook: "bpf_map_alloc_security",
        params: &["struct bpf_map *"],
        role: Role::Create,
        group: "map-create",
    },
    Spec {
        program: "lsm_bpf_map",
        hook: "bpf_map",
        params: &["struct bpf_map *"],
        role: Role::Open,
        group: "map-open",
    },
    Spec {
        program: "lsm_prog_load",
        hook: "bpf_prog_load",
        params: &["struct bpf_prog *"],
        role: Role::Create,
        group: "prog-create",
    },
    Spec {
        program: "lsm_prog_alloc",
        hook: "bpf_prog_alloc_security",
        params: &["struct bpf_prog_aux *"],
        role: Role::Create,
        group: "prog-create",
    },
    Spec {
        program: "lsm_bpf_prog",
        hook: "bpf_prog",
        params: &["struct bpf_prog *"],
        role: Role::Open,
        group: "prog-open",
    },
    Spec {
        program: "lsm_map_free",
        hook: "bpf_map_free",
        params: &["struct bpf_map *"],
        role: Role::Free,
        group: "map-free",
    },
    Spec {
        program: "lsm_map_free_sec",
        hook: "bpf_map_free_security",
        params: &["struct bpf_map *"],
        role: Role::Free,
        group: "map-free",
    },
    Spec {
        program: "lsm_prog_free",
        hook: "bpf_prog_free",
        params: &["struct bpf_prog *"],
        role: Role::Free,
        group: "prog-free",
    },
    Spec {
        program: "lsm_prog_free_sec",
        hook: "bpf_prog_free_security",
        params: &["struct bpf_prog_aux *"],
        role: Role::Free,
        group: "prog-free",
    },
    Spec {
        program: "lsm_token_capable",
        hook: "bpf_token_capable",
        params: &["struct bpf_token *", "int"],
        role: Role::Capability,
        group: "token-cap",
    },
];

/// What the running kernel's BTF says about one hook, and whether its program is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookProbe {
    /// The program (`lsm_bpf_map`, ...): also the name of its link pin.
    pub program: &'static str,
    /// The LSM hook (`bpf_map`, ...).
    pub hook: &'static str,
    pub role: Role,
    /// Programs of one group do the same job on different kernels (old and new hook names):
    /// at most one of them is loaded.
    pub group: &'static str,
    /// The hook's parameters in this kernel, `None` when `bpf_lsm_<hook>` is not in its BTF.
    pub params: Option<Vec<String>>,
    /// Whether the program is loaded.
    pub selected: bool,
    /// Why not, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
}

impl HookProbe {
    /// `hook(param, param, ...)`, or `hook (absent)`.
    pub fn signature(&self) -> String {
        match &self.params {
            Some(p) => format!("{}({})", self.hook, p.join(", ")),
            None => format!("{} (absent)", self.hook),
        }
    }
}

/// Which programs to load on this kernel: one [`HookProbe`] per program of the object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub hooks: Vec<HookProbe>,
}

impl Plan {
    /// The programs to load.
    pub fn selected(&self) -> Vec<&'static str> {
        self.hooks
            .iter()
            .filter(|h| h.selected)
            .map(|h| h.program)
            .collect()
    }

    /// Whether a program is selected.
    pub fn has(&self, program: &str) -> bool {
        self.hooks
            .iter()
            .any(|h| h.selected && h.program == program)
    }

    /// The hooks used.
    pub fn used(&self) -> Vec<&'static str> {
        self.hooks
            .iter()
            .filter(|h| h.selected)
            .map(|h| h.hook)
            .collect()
    }

    /// The hooks of the groups of which nothing is used (a feature this kernel lacks), with
    /// the reason: `hook (why)`.
    pub fn missing(&self) -> Vec<String> {
        self.hooks
            .iter()
            .filter(|h| !self.hooks.iter().any(|o| o.selected && o.group == h.group))
            // A kernel without BPF tokens (before 6.9) has no token capability to refuse.
            .filter(|h| !(h.group == "token-cap" && h.params.is_none()))
            .map(|h| format!("{} ({})", h.hook, h.why_not.as_deref().unwrap_or("")))
            .collect()
    }

    /// One line: which hooks are used and which are not, with the reason.
    pub fn summary(&self) -> String {
        let mut out = format!("hooks used: {}", self.used().join(", "));
        let skipped: Vec<String> = self
            .hooks
            .iter()
            .filter(|h| !h.selected)
            .filter_map(|h| h.why_not.as_ref().map(|w| format!("{} ({w})", h.hook)))
            .collect();
        if !skipped.is_empty() {
            out.push_str(&format!("; not used: {}", skipped.join(", ")));
        }
        out
    }
}

/// Decide which programs to load from each hook's parameters in the running kernel
/// (`params(hook)` is `None` when `bpf_lsm_<hook>` does not exist).
///
/// Rules: a program is usable when its hook exists and the hook's leading parameters have the
/// types the program reads. Of each group (e.g. `bpf_map_create` on 6.9+ or
/// `bpf_map_alloc_security` up to 6.8) the first usable program is loaded. The map (prog) open
/// check is loaded only together with a map (prog) creation hook — without one, a namespace
/// task's own new object would look foreign and its creation would be refused — and the free
/// hooks only with the open check whose records they drop.
pub fn plan_with(params: impl Fn(&str) -> Option<Vec<String>>) -> Plan {
    let mut hooks: Vec<HookProbe> = Vec::new();
    let mut chosen: Vec<&'static str> = Vec::new();
    for s in SPECS {
        let p = params(s.hook);
        let mut why_not = match &p {
            None => Some("not in this kernel".to_string()),
            Some(have) => {
                let fits = s.params.len() <= have.len()
                    && s.params.iter().zip(have).all(|(want, got)| want == got);
                (!fits)
                    .then(|| format!("unexpected prototype, need ({}, ...)", s.params.join(", ")))
            }
        };
        if why_not.is_none() && chosen.contains(&s.group) {
            why_not = Some("an equivalent hook is used".to_string());
        }
        let needs = match s.group {
            "map-open" => Some(("map-create", "no map creation hook")),
            "prog-open" => Some(("prog-create", "no program creation hook")),
            "map-free" => Some(("map-open", "map check not loaded")),
            "prog-free" => Some(("prog-open", "program check not loaded")),
            _ => None,
        };
        if let (None, Some((group, why))) = (&why_not, needs) {
            if !chosen.contains(&group) {
                why_not = Some(why.to_string());
            }
        }
        if why_not.is_none() {
            chosen.push(s.group);
        }
        hooks.push(HookProbe {
            program: s.program,
            hook: s.hook,
            role: s.role,
            group: s.group,
            params: p,
            selected: why_not.is_none(),
            why_not,
        });
    }
    Plan { hooks }
}

/// [`plan_with`] the running kernel's BTF (`/sys/kernel/btf/vmlinux`).
pub fn plan() -> Result<Plan> {
    let btf = Btf::from_vmlinux().map_err(KernelError::libbpf("reading the kernel's BTF"))?;
    Ok(plan_with(|hook| hook_params(&btf, hook)))
}

/// The parameter types of `bpf_lsm_<hook>` in `btf`.
fn hook_params(btf: &Btf<'_>, hook: &str) -> Option<Vec<String>> {
    let func: Func<'_> = btf.type_by_name(&format!("bpf_lsm_{hook}"))?;
    let proto: FuncProto<'_> = func.next_type()?.try_into().ok()?;
    Some(
        proto
            .iter()
            .map(|p| {
                btf.type_by_id::<BtfType<'_>>(p.ty)
                    .map_or_else(|| "?".to_string(), |t| render_type(&t))
            })
            .collect(),
    )
}

/// A C spelling of a parameter type, enough to compare prototypes: `int`, `struct bpf_map *`,
/// `union bpf_attr *` (qualifiers and typedefs skipped).
fn render_type(t: &BtfType<'_>) -> String {
    let t = t.skip_mods_and_typedefs();
    let name = || {
        t.name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    match t.kind() {
        BtfKind::Ptr => match t.next_type() {
            Some(inner) => format!("{} *", render_type(&inner)),
            None => "void *".to_string(),
        },
        BtfKind::Struct => format!("struct {}", name()),
        BtfKind::Union => format!("union {}", name()),
        BtfKind::Enum | BtfKind::Enum64 => format!("enum {}", name()),
        BtfKind::Fwd => name(),
        BtfKind::Void => "void".to_string(),
        _ => name(),
    }
}

/// Whether the LSM layer is running, as reported by [`load`] and [`crate::loader::LoadReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum LsmStatus {
    /// The kernel refuses foreign opens itself, through these hooks.
    Active { hooks: Vec<String> },
    /// Not loaded; why (the kernel's answer when it refused).
    Unavailable { reason: String },
}

impl LsmStatus {
    pub fn is_active(&self) -> bool {
        matches!(self, LsmStatus::Active { .. })
    }
}

/// What [`load`] did.
#[derive(Debug, Clone, Serialize)]
pub struct LsmReport {
    pub status: LsmStatus,
    /// `(link name, program id)` of what now runs.
    pub programs: Vec<(String, u32)>,
    /// The hook probes, when the kernel got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

impl LsmReport {
    fn unavailable(reason: impl Into<String>, plan: Option<Plan>) -> Self {
        Self {
            status: LsmStatus::Unavailable {
                reason: reason.into(),
            },
            programs: Vec::new(),
            plan,
        }
    }

    /// A failed upgrade leaves the programs of an earlier load running: say so.
    fn failed(layout: &PinLayout, reason: String, plan: Option<Plan>) -> Self {
        let earlier = pinned_links(layout);
        if earlier.is_empty() {
            return Self::unavailable(reason, plan);
        }
        Self::unavailable(
            format!(
                "{reason}; the LSM programs of an earlier load stay attached ({})",
                earlier.join(", ")
            ),
            plan,
        )
    }
}

/// Why this kernel runs no BPF LSM programs (see [`kernel_allows`]).
#[derive(Debug, thiserror::Error)]
pub enum LsmUnavailable {
    /// "bpf" is not among the active LSMs.
    #[error("\"bpf\" is not in the active LSM list ({list}): boot with lsm={list},bpf")]
    NotActive { list: String },
    /// The active LSM list cannot be read (securityfs missing or not mountable).
    #[error("cannot read the active LSM list {}: {source}{}", path.display(), mount.as_ref().map(|m| format!("; mounting securityfs failed: {m}")).unwrap_or_default())]
    ListUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
        mount: Option<SysError>,
    },
    /// "bpf" is active, and still the kernel refuses BPF LSM programs (EPERM on some kernels).
    #[error("the kernel refuses BPF LSM programs at load: {}, although \"bpf\" is an active LSM", describe_errno(.0.errno))]
    Refused(#[source] SysError),
    /// The hook is not in the kernel's BTF: built without CONFIG_BPF_LSM.
    #[error("bpf_lsm_bpf_map is not in the kernel's BTF (kernel without CONFIG_BPF_LSM): {}", describe_errno(.0.errno))]
    NoHook(#[source] SysError),
    /// Loading the probe program failed otherwise.
    #[error("loading a test lsm/bpf_map program failed: {}: {}", .0.op, describe_errno(.0.errno))]
    ProbeFailed(#[source] SysError),
}

/// Whether this kernel runs BPF LSM programs at all: "bpf" in the active LSM list (mounting
/// securityfs at `/sys/kernel/security` if needed) and an `lsm/bpf_map` program loads.
/// Nothing is left behind either way.
pub fn kernel_allows() -> std::result::Result<(), LsmUnavailable> {
    let mount = sysfs::ensure_mounted("securityfs", Path::new(SECURITYFS_PATH), SECURITYFS_MAGIC);
    let list_path = Path::new(SECURITYFS_PATH).join("lsm");
    match std::fs::read_to_string(&list_path) {
        Ok(list) => {
            let list = list.trim().trim_end_matches('\0');
            if !list.split(',').any(|l| l == "bpf") {
                return Err(LsmUnavailable::NotActive {
                    list: list.to_string(),
                });
            }
        }
        Err(source) => {
            return Err(LsmUnavailable::ListUnreadable {
                path: list_path,
                source,
                mount: mount.err(),
            });
        }
    }
    let attach_btf_id =
        probe::vmlinux_btf_id("bpf_map", BPF_LSM_MAC).map_err(LsmUnavailable::NoHook)?;
    let opts = ProgLoadOpts {
        expected_attach_type: BPF_LSM_MAC,
        attach_btf_id,
        ..Default::default()
    };
    // A trivial `lsm/bpf_map` program, closed again at once.
    sysbpf::prog_load(BPF_PROG_TYPE_LSM, "bpfns_lsm", &RETURN_ZERO, opts)
        .map(drop)
        .map_err(|e| {
            if e.errno == Errno::PERM {
                LsmUnavailable::Refused(e)
            } else {
                LsmUnavailable::ProbeFailed(e)
            }
        })
}

/// `lsm_objects`' definition (`bpf/bpfns_lsm.bpf.c`).
const LSM_OBJECTS: migrate::Want = migrate::Want {
    name: "lsm_objects",
    max_entries: crate::abi::OWNERSHIP_CAPACITY,
    map_flags: migrate::BPF_F_NO_PREALLOC,
};

/// Load (or upgrade) the LSM layer beside the kernel side pinned under `layout`.
///
/// Returns [`LsmStatus::Unavailable`] with the reason, changing nothing, when the kernel does
/// not run BPF LSM programs (not in the LSM list, refused at load — EPERM on some kernels —
/// or no usable hook). Errors are for a kernel side that is not loaded and for failures half-way
/// through pinning.
pub fn load(layout: &PinLayout) -> Result<LsmReport> {
    for m in MAPS {
        let p = layout.map(m);
        if !p.exists() {
            return Err(KernelError::NotLoaded {
                root: layout.root().to_path_buf(),
                missing: p,
            });
        }
    }
    if let Err(reason) = kernel_allows() {
        return Ok(LsmReport::unavailable(reason.to_string(), None));
    }
    let plan = match plan() {
        Ok(p) => p,
        Err(e) => return Ok(LsmReport::unavailable(e.to_string(), None)),
    };
    let selected = plan.selected();
    if !selected
        .iter()
        .any(|p| *p == "lsm_bpf_map" || *p == "lsm_bpf_prog" || *p == "lsm_bpf")
    {
        return Ok(LsmReport::unavailable(
            format!("no usable LSM hook in this kernel: {}", plan.summary()),
            Some(plan),
        ));
    }

    let new_pins: Vec<PathBuf> = LSM_MAPS
        .iter()
        .map(|m| layout.map(m))
        .filter(|p| !p.exists())
        .collect();
    // lsm_objects of an older version (preallocated, 1 << 18 entries): carried over.
    let migration = migrate::begin(&layout.map("lsm_objects"), LSM_OBJECTS)?;
    let restore = |m: Option<migrate::Migration>| {
        if let Some(m) = m {
            if let Err(e) = m.abort() {
                tracing::error!("putting the old lsm_objects back: {e}");
            }
        }
    };
    let mut storage = MaybeUninit::uninit();
    let mut open = BpfnsLsmSkelBuilder::default()
        .open(&mut storage)
        .map_err(KernelError::libbpf("opening the BPF LSM object"))?;
    for mut prog in open.open_object_mut().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        prog.set_autoload(selected.contains(&name.as_str()));
    }
    for mut map in open.open_object_mut().maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if MAPS.contains(&name.as_str()) || LSM_MAPS.contains(&name.as_str()) {
            map.set_pin_path(layout.map(&name))
                .map_err(KernelError::libbpf(format!("setting pin path of {name}")))?;
        }
    }
    let skel = match open.load() {
        Ok(s) => s,
        Err(e) => {
            restore(migration);
            return Ok(LsmReport::failed(
                layout,
                format!("loading the BPF LSM programs failed: {e}"),
                Some(plan),
            ));
        }
    };
    let unpin_new_maps = || {
        for p in &new_pins {
            let _ = std::fs::remove_file(p);
        }
    };

    // Attach everything before pinning anything, so that a refusal changes nothing.
    let mut links: Vec<(String, Link, u32)> = Vec::new();
    for prog in skel.object().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        if !selected.contains(&name.as_str()) {
            continue;
        }
        match prog.attach() {
            Ok(link) => {
                let id = sysbpf::info::<sysbpf::bpf_prog_info>(&prog)
                    .map(|i| i.id)
                    .unwrap_or(0);
                links.push((name, link, id));
            }
            Err(e) => {
                drop(links);
                unpin_new_maps();
                restore(migration);
                return Ok(LsmReport::failed(
                    layout,
                    format!("attaching {name} failed: {e}"),
                    Some(plan),
                ));
            }
        }
    }
    let mut programs = Vec::new();
    for (name, mut link, id) in links {
        pin_replace(&mut link, &layout.link(&name))?;
        programs.push((name, id));
    }
    // Programs of an earlier load that this kernel no longer gets (none in practice).
    for stale in pinned_links(layout) {
        if !programs.iter().any(|(n, _)| *n == stale) {
            let _ = std::fs::remove_file(layout.link(&stale));
        }
    }
    if let Some(m) = migration {
        m.finish()?;
    }
    let hooks = plan
        .hooks
        .iter()
        .filter(|h| h.selected)
        .map(|h| h.hook.to_string())
        .collect();
    Ok(LsmReport {
        status: LsmStatus::Active { hooks },
        programs,
        plan: Some(plan),
    })
}

/// The names of the LSM layer's pinned links under `layout`.
pub fn pinned_links(layout: &PinLayout) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(layout.links_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(LINK_PREFIX))
        .collect();
    names.sort();
    names
}

/// The program id behind each of the LSM layer's pinned links under `layout`, by link name.
pub fn program_ids(layout: &PinLayout) -> Result<Vec<(String, u32)>> {
    pinned_links(layout)
        .into_iter()
        .map(|name| {
            let id = crate::kernel::pinned_link_prog_id(&layout.link(&name))?;
            Ok((name, id))
        })
        .collect()
}

/// Whether LSM programs are pinned (and so running) under `layout`.
pub fn is_active(layout: &PinLayout) -> bool {
    !pinned_links(layout).is_empty()
}

/// Whether the program `name` (e.g. `lsm_bpf_map`) is pinned under `layout`.
pub fn has_program(layout: &PinLayout, name: &str) -> bool {
    layout.link(name).exists()
}

/// Detach the LSM layer pinned under `layout` and remove its pins (links and [`LSM_MAPS`]);
/// the main object's maps stay. Idempotent. [`crate::loader::unload`] removes these too.
pub fn unload(layout: &PinLayout) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let paths = pinned_links(layout)
        .into_iter()
        .map(|n| layout.link(&n))
        .chain(LSM_MAPS.iter().map(|m| layout.map(m)));
    for p in paths {
        match std::fs::remove_file(&p) {
            Ok(()) => removed.push(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(KernelError::io(format!("removing {}", p.display()))(e)),
        }
    }
    Ok(removed)
}

/// The LSM layer's counters (summed over CPUs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Opens refused with EPERM.
    pub refused: u64,
    /// Ownership records written at creation.
    pub recorded: u64,
    /// Records dropped because their object was freed.
    pub dropped: u64,
}

impl Counters {
    /// The counters with the names `status` reports them under.
    pub fn named(&self) -> [(&'static str, u64); 3] {
        [
            ("lsm_opens_refused", self.refused),
            ("lsm_ownership_recorded", self.recorded),
            ("lsm_records_dropped", self.dropped),
        ]
    }
}

/// Read the LSM layer's counters from the pinned `stats` map.
pub fn counters(layout: &PinLayout) -> Result<Counters> {
    let stats = MapHandle::from_pinned_path(layout.map("stats"))
        .map_err(KernelError::libbpf("opening pinned map stats"))?;
    let read = |idx: u32| -> Result<u64> {
        let per_cpu = stats
            .lookup_percpu(&idx.to_ne_bytes(), MapFlags::ANY)
            .map_err(KernelError::libbpf("reading stats"))?
            .unwrap_or_default();
        Ok(per_cpu
            .iter()
            .filter_map(|v| v.get(..8)?.try_into().ok().map(u64::from_ne_bytes))
            .sum())
    };
    Ok(Counters {
        refused: read(STAT_REFUSED)?,
        recorded: read(STAT_RECORDED)?,
        dropped: read(STAT_DROPPED)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(s: &[&str]) -> Option<Vec<String>> {
        Some(s.iter().map(|x| x.to_string()).collect())
    }

    /// The hook prototypes of Linux 6.1 (include/linux/lsm_hook_defs.h).
    fn linux_6_1(hook: &str) -> Option<Vec<String>> {
        match hook {
            "bpf" => sig(&["int", "union bpf_attr *", "unsigned int"]),
            "bpf_map" => sig(&["struct bpf_map *", "unsigned int"]),
            "bpf_prog" => sig(&["struct bpf_prog *"]),
            "bpf_map_alloc_security" | "bpf_map_free_security" => sig(&["struct bpf_map *"]),
            "bpf_prog_alloc_security" | "bpf_prog_free_security" => sig(&["struct bpf_prog_aux *"]),
            _ => None,
        }
    }

    /// 6.9 to 6.17: renamed hooks, no trailing `bool kernel`.
    fn linux_6_12(hook: &str) -> Option<Vec<String>> {
        match hook {
            "bpf" => sig(&["int", "union bpf_attr *", "unsigned int"]),
            "bpf_map" => sig(&["struct bpf_map *", "unsigned int"]),
            "bpf_prog" | "bpf_prog_free" => sig(&["struct bpf_prog *"]),
            "bpf_map_free" => sig(&["struct bpf_map *"]),
            "bpf_map_create" => {
                sig(&["struct bpf_map *", "union bpf_attr *", "struct bpf_token *"])
            }
            "bpf_prog_load" => sig(&[
                "struct bpf_prog *",
                "union bpf_attr *",
                "struct bpf_token *",
            ]),
            "bpf_token_capable" => sig(&["struct bpf_token *", "int"]),
            _ => None,
        }
    }

    /// 6.18: `bool kernel` appended to bpf, bpf_map_create and bpf_prog_load.
    fn linux_6_18(hook: &str) -> Option<Vec<String>> {
        let mut p = linux_6_12(hook)?;
        if matches!(hook, "bpf" | "bpf_map_create" | "bpf_prog_load") {
            p.push("_Bool".into());
        }
        Some(p)
    }

    #[test]
    fn plan_6_1_uses_the_old_hook_names() {
        let p = plan_with(linux_6_1);
        assert_eq!(
            p.selected(),
            vec![
                "lsm_bpf",
                "lsm_map_alloc",
                "lsm_bpf_map",
                "lsm_prog_alloc",
                "lsm_bpf_prog",
                "lsm_map_free_sec",
                "lsm_prog_free_sec"
            ]
        );
        let s = p.summary();
        assert!(s.contains("bpf_map_create (not in this kernel)"), "{s}");
        // Every job has a hook: nothing is missing.
        assert!(p.missing().is_empty(), "{:?}", p.missing());
    }

    #[test]
    fn plan_6_12_and_6_18_use_the_new_ones() {
        for f in [linux_6_12 as fn(&str) -> Option<Vec<String>>, linux_6_18] {
            let p = plan_with(f);
            assert_eq!(
                p.selected(),
                vec![
                    "lsm_bpf",
                    "lsm_map_create",
                    "lsm_bpf_map",
                    "lsm_prog_load",
                    "lsm_bpf_prog",
                    "lsm_map_free",
                    "lsm_prog_free",
                    "lsm_token_capable"
                ]
            );
        }
    }

    #[test]
    fn open_checks_need_a_creation_hook() {
        // A kernel with bpf_map/bpf_prog but no creation hooks: refusing there would refuse a
        // namespace task its own new objects, so only the command-level program is loaded.
        let p = plan_with(|h| match h {
            "bpf" => sig(&["int", "union bpf_attr *", "unsigned int"]),
            "bpf_map" => sig(&["struct bpf_map *", "unsigned int"]),
            "bpf_prog" => sig(&["struct bpf_prog *"]),
            "bpf_map_free" => sig(&["struct bpf_map *"]),
            _ => None,
        });
        assert_eq!(p.selected(), vec!["lsm_bpf"]);
        let map = p.hooks.iter().find(|h| h.program == "lsm_bpf_map").unwrap();
        assert_eq!(map.why_not.as_deref(), Some("no map creation hook"));
        let free = p
            .hooks
            .iter()
            .find(|h| h.program == "lsm_map_free")
            .unwrap();
        assert_eq!(free.why_not.as_deref(), Some("map check not loaded"));
        let missing = p.missing();
        assert!(missing.contains(&"bpf_map_create (not in this kernel)".to_string()));
        assert!(missing.contains(&"bpf_map (no map creation hook)".to_string()));
    }

    #[test]
    fn unexpected_prototypes_are_not_loaded() {
        let p = plan_with(|h| match h {
            "bpf_prog_free" => sig(&["struct bpf_prog_aux *"]),
            other => linux_6_12(other),
        });
        assert!(!p.has("lsm_prog_free"));
        let h = p
            .hooks
            .iter()
            .find(|h| h.program == "lsm_prog_free")
            .unwrap();
        assert!(h
            .why_not
            .as_deref()
            .unwrap()
            .contains("unexpected prototype"));
        assert_eq!(h.signature(), "bpf_prog_free(struct bpf_prog_aux *)");
        assert!(p.has("lsm_bpf_prog"));
    }
}
