//! `bpfns kernel ...`: load, inspect and unload the kernel side, and the low-level aids that
//! write its namespace table and task tags directly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bpfns_kernel::lsm::LsmStatus;
use bpfns_kernel::{loader, Kernel};
use bpfns_model::{NsId, MAX_DEPTH};
use bpfns_sys::fs::{fs_magic, BPF_FS_MAGIC};
use serde::Serialize;

use crate::backend::{load_command, pin_root_flag, pin_state, require_root, Direct, PinState};
use crate::error::CliError;
use crate::objects::namespace_label;
use crate::output::{Render, Table};

/// One program of the kernel side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgramView {
    /// The name of its pinned link (`links/<name>`), which is also the program's name.
    pub link: String,
    pub id: u32,
}

fn programs_table(programs: &[ProgramView]) -> String {
    let mut t = Table::new(["LINK", "PROG ID"]);
    for p in programs {
        t.row([p.link.clone(), p.id.to_string()]);
    }
    t.render_indented(2)
}

// ---- load ------------------------------------------------------------------------------------

/// What `bpfns kernel load` did.
#[derive(Debug, Clone, Serialize)]
pub struct LoadView {
    pub pin_root: PathBuf,
    /// Filesystems that had to be mounted first.
    pub mounted: Vec<String>,
    /// Whether pinned state from an earlier load was found and kept.
    pub reused_state: bool,
    pub programs: Vec<ProgramView>,
    /// Whether the BPF LSM layer runs too (`{"state":"active","hooks":[..]}`), and if not
    /// why (`{"state":"unavailable","reason":".."}`).
    pub lsm: LsmStatus,
}

impl Render for LoadView {
    fn render_text(&self) -> String {
        let mut out = format!("loaded the kernel side at {}\n", self.pin_root.display());
        if self.mounted.is_empty() {
            out.push_str("mounted: nothing (bpffs was already mounted)\n");
        } else {
            out.push_str(&format!("mounted: {}\n", self.mounted.join(", ")));
        }
        out.push_str(if self.reused_state {
            "pinned state: reused from an earlier load (task tags, ownership records and the \
             namespace table are kept)\n"
        } else {
            "pinned state: new (nothing was pinned here before)\n"
        });
        match &self.lsm {
            LsmStatus::Active { hooks } => out.push_str(&format!(
                "BPF LSM layer: loaded (the kernel refuses foreign opens with EPERM; hooks: {})\n",
                hooks.join(", ")
            )),
            LsmStatus::Unavailable { reason } => out.push_str(&format!(
                "BPF LSM layer: not loaded: {reason} (the tracepoint backstop and bpfnsd's \
                 supervisor enforce)\n"
            )),
        }
        out.push_str("programs:\n");
        out.push_str(&programs_table(&self.programs));
        out
    }
}

pub fn load(direct: &Direct) -> Result<LoadView> {
    require_root()?;
    let layout = direct.layout();
    let r = loader::load(layout).with_context(|| {
        format!(
            "loading the kernel side at {} (run `bpfns doctor` to see which kernel feature is \
             missing)",
            layout.root().display()
        )
    })?;
    Ok(LoadView {
        pin_root: r.pin_root,
        mounted: r.mounted,
        reused_state: r.reused_state,
        programs: r
            .programs
            .into_iter()
            .map(|(link, id)| ProgramView { link, id })
            .collect(),
        lsm: r.lsm,
    })
}

// ---- unload ----------------------------------------------------------------------------------

/// What `bpfns kernel unload` removed.
#[derive(Debug, Clone, Serialize)]
pub struct UnloadView {
    pub pin_root: PathBuf,
    pub removed: Vec<PathBuf>,
}

impl Render for UnloadView {
    fn render_text(&self) -> String {
        if self.removed.is_empty() {
            format!(
                "nothing to unload: the kernel side is not loaded at {}\n",
                self.pin_root.display()
            )
        } else {
            format!(
                "unloaded the kernel side at {} (removed {} pins; task tags and ownership \
                 records are gone)\n",
                self.pin_root.display(),
                self.removed.len()
            )
        }
    }
}

/// Unload the kernel side at `direct`'s pin root; refused while it is in use (a bpfnsd on
/// `socket` serves it, or it holds namespaces or member tasks) unless `force`.
pub fn unload(direct: &Direct, socket: &Path, force: bool) -> Result<UnloadView> {
    require_root()?;
    let layout = direct.layout();
    let root = layout.root();
    // Unloading removes every file under <root>/maps and <root>/links: never outside bpffs.
    if root.exists() && fs_magic(root).ok() != Some(BPF_FS_MAGIC) {
        bail!(
            "{} is not on a bpffs mount, so it holds no kernel side: refusing to remove files \
             there (check --pin-root)",
            root.display()
        );
    }
    let users = users_of(direct, socket);
    if !users.is_empty() {
        let why = users.join("; ");
        if !force {
            return Err(CliError::conflict(format!(
                "refusing to unload the kernel side at {}: {why}. Unloading switches \
                 enforcement off for every namespace member and loses their tags and ownership \
                 records; stop bpfnsd first (systemctl stop bpfnsd), or pass --force",
                root.display()
            ))
            .into());
        }
        tracing::warn!(
            "unloading the kernel side at {} although it is in use ({why}): enforcement is \
             off until it is loaded again",
            root.display()
        );
    }
    let r = loader::unload(layout)
        .with_context(|| format!("unloading the kernel side at {}", layout.root().display()))?;
    Ok(UnloadView {
        pin_root: layout.root().to_path_buf(),
        removed: r.removed,
    })
}

/// The debugging aids (`bpfns kernel debug`) write the kernel side's tables behind bpfnsd's
/// back: refused while a bpfnsd on `socket` serves this pin root.
pub fn refuse_under_bpfnsd(direct: &Direct, socket: &Path) -> Result<()> {
    if let Some(who) = serving_bpfnsd(direct, socket) {
        return Err(CliError::conflict(format!(
            "refusing to change the kernel side at {} behind bpfnsd's back: {who}; use `bpfns \
             ns` and `bpfns exec`, or stop bpfnsd first",
            direct.layout().root().display()
        ))
        .into());
    }
    Ok(())
}

/// "bpfnsd serves it on SOCKET" when a bpfnsd on `socket` serves `direct`'s pin root.
fn serving_bpfnsd(direct: &Direct, socket: &Path) -> Option<String> {
    let mut c = bpfns_client::Client::connect(socket).ok()?;
    let _ = c.set_timeout(Some(std::time::Duration::from_secs(5)));
    let st = c.status().ok()?;
    (Path::new(&st.pin_root) == direct.layout().root())
        .then(|| format!("bpfnsd serves it on {}", socket.display()))
}

/// Who uses the kernel side: a bpfnsd serving it on `socket`, namespaces in its table,
/// member tasks. Empty when nothing does (or it is not loaded).
fn users_of(direct: &Direct, socket: &Path) -> Vec<String> {
    let mut users: Vec<String> = serving_bpfnsd(direct, socket).into_iter().collect();
    if !loader::is_loaded(direct.layout()) {
        return users;
    }
    if let Ok(k) = Kernel::open(direct.layout()) {
        if let Ok(ns) = k.namespace_entries() {
            if !ns.is_empty() {
                users.push(format!("{} namespace(s) are in its table", ns.len()));
            }
        }
        if let Ok(tasks) = k.tagged_tasks() {
            let members = tasks.iter().filter(|t| t.ns != NsId::ROOT).count();
            if members > 0 {
                users.push(format!("{members} member task(s) are tagged"));
            }
        }
    }
    users
}

// ---- status ----------------------------------------------------------------------------------

/// One row of the kernel's namespace table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NsView {
    pub id: u32,
    pub parent: u32,
    pub depth: u32,
}

/// What a loaded kernel side holds.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedDetails {
    /// The enforcement layers running in the kernel: `tracepoint backstop`, and `BPF LSM`
    /// where that layer is loaded.
    pub layers: Vec<String>,
    /// The syscall hooks attached now (`on_sys_exit`, `on_fork`): only while some task is
    /// tagged or some cgroup bound.
    pub syscall_hooks: Vec<String>,
    pub programs: Vec<ProgramView>,
    pub stats: BTreeMap<String, u64>,
    pub namespaces: Vec<NsView>,
    pub ownership_records: usize,
    /// Threads tagged with a namespace other than the root.
    pub tagged_tasks: usize,
}

/// `bpfns kernel status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub pin_root: PathBuf,
    pub loaded: bool,
    /// `loaded`, `not-loaded` or `partial`.
    pub state: &'static str,
    /// Pins that are missing from a partial load.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// What to run when it is not loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub details: Option<LoadedDetails>,
}

impl Render for StatusView {
    fn render_text(&self) -> String {
        let root = self.pin_root.display();
        let mut out = match self.state {
            "loaded" => format!("kernel side: loaded at {root}\n"),
            "partial" => format!(
                "kernel side: partially loaded at {root} (missing {})\n",
                self.missing.join(", ")
            ),
            _ => format!("kernel side: not loaded at {root}\n"),
        };
        if let Some(fix) = &self.fix {
            out.push_str(&format!("fix: {fix}\n"));
        }
        let Some(d) = &self.details else {
            return out;
        };
        out.push_str(&format!("layers: {}\n", d.layers.join(", ")));
        out.push_str(&if d.syscall_hooks.is_empty() {
            "syscall hooks: detached (no task tagged, no cgroup bound)\n".to_string()
        } else {
            format!("syscall hooks: attached ({})\n", d.syscall_hooks.join(", "))
        });
        out.push_str("programs:\n");
        out.push_str(&programs_table(&d.programs));
        out.push_str("counters:\n");
        let mut t = Table::new(["COUNTER", "VALUE"]);
        for (k, v) in &d.stats {
            t.row([k.clone(), v.to_string()]);
        }
        out.push_str(&t.render_indented(2));
        out.push_str(&format!(
            "namespaces in the kernel table: {}\n",
            d.namespaces.len()
        ));
        if !d.namespaces.is_empty() {
            let mut t = Table::new(["ID", "PARENT", "DEPTH"]);
            for n in &d.namespaces {
                t.row([
                    n.id.to_string(),
                    namespace_label(NsId(n.parent)),
                    n.depth.to_string(),
                ]);
            }
            out.push_str(&t.render_indented(2));
        }
        out.push_str(&format!("ownership records: {}\n", d.ownership_records));
        out.push_str(&format!("tagged tasks (threads): {}\n", d.tagged_tasks));
        out
    }
}

pub fn status(direct: &Direct) -> Result<StatusView> {
    require_root()?;
    let layout = direct.layout();
    let root = layout.root().to_path_buf();
    let (state, missing, fix) = match pin_state(layout) {
        PinState::Loaded => ("loaded", Vec::new(), None),
        PinState::NotLoaded => (
            "not-loaded",
            Vec::new(),
            Some(format!("run `{}`", load_command(&root))),
        ),
        PinState::Partial(missing) => (
            "partial",
            missing,
            Some(format!(
                "run `{}` (it keeps the pinned state), or `bpfns kernel unload{}` to start over",
                load_command(&root),
                pin_root_flag(&root)
            )),
        ),
    };
    let details = if state == "loaded" {
        let k = direct.kernel()?;
        let lsm_programs = bpfns_kernel::lsm::program_ids(layout)
            .context("reading the BPF LSM layer's program ids")?;
        Some(LoadedDetails {
            layers: k.layers().iter().map(|l| l.name().to_string()).collect(),
            syscall_hooks: k.hooks_attached().into_iter().map(str::to_string).collect(),
            programs: k
                .program_ids()
                .context("reading the kernel side's program ids")?
                .into_iter()
                .map(|(link, id)| (link.to_string(), id))
                .chain(lsm_programs)
                .map(|(link, id)| ProgramView { link, id })
                .collect(),
            stats: k
                .all_stats()
                .context("reading the kernel side's counters")?
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            namespaces: ns_rows(&k)?,
            ownership_records: k
                .ownership_records()
                .context("reading the ownership records")?
                .len(),
            tagged_tasks: members(&k, None)?.len(),
        })
    } else {
        None
    };
    Ok(StatusView {
        pin_root: root,
        loaded: state == "loaded",
        state,
        missing,
        fix,
        details,
    })
}

/// `(tid, tgid)` of the threads tagged with `ns`, or with any non-root namespace.
fn members(k: &Kernel, ns: Option<u32>) -> Result<Vec<(i32, i32)>> {
    Ok(k.tagged_tasks()
        .context("listing tagged tasks")?
        .into_iter()
        .filter(|t| !t.ns.is_root() && ns.is_none_or(|n| t.ns.get() == n))
        .map(|t| (t.tid, t.tgid))
        .collect())
}

fn ns_rows(k: &Kernel) -> Result<Vec<NsView>> {
    Ok(k.namespaces()
        .context("reading the namespace table")?
        .into_iter()
        .map(|(id, parent, depth)| NsView {
            id: id.get(),
            parent: parent.get(),
            depth,
        })
        .collect())
}

// ---- gc --------------------------------------------------------------------------------------

/// `bpfns kernel gc`.
#[derive(Debug, Clone, Serialize)]
pub struct GcView {
    pub removed: usize,
}

impl Render for GcView {
    fn render_text(&self) -> String {
        format!(
            "removed {} stale ownership record{} (of objects that no longer exist)\n",
            self.removed,
            if self.removed == 1 { "" } else { "s" }
        )
    }
}

pub fn gc(direct: &Direct) -> Result<GcView> {
    let removed = direct
        .kernel()?
        .collect_garbage()
        .context("collecting stale ownership records")?;
    Ok(GcView { removed })
}

// ---- namespace table -------------------------------------------------------------------------

/// Fail unless `ns` is the root or in the kernel's namespace table.
pub fn ensure_ns_known(k: &Kernel, ns: NsId, pin_root: &std::path::Path) -> Result<()> {
    if ns.is_root() || ns_rows(k)?.iter().any(|n| n.id == ns.get()) {
        return Ok(());
    }
    Err(CliError::not_found(format!(
        "namespace {ns} is not in the kernel's namespace table: add it first with \
         `bpfns kernel debug ns-set {ns} --parent 0{}`",
        pin_root_flag(pin_root)
    ))
    .into())
}

/// Choose the depth of a new namespace `id` below `parent`, given the table `rows`, and check
/// that the tree stays a tree.
pub fn plan_ns_set(rows: &[NsView], id: u32, parent: u32, depth: Option<u32>) -> Result<u32> {
    if id == 0 {
        bail!("namespace 0 is the root; it is never in the table");
    }
    if id == parent {
        bail!("namespace {id} cannot be its own parent");
    }
    let parent_depth = if parent == 0 {
        0
    } else {
        let Some(p) = rows.iter().find(|n| n.id == parent) else {
            return Err(CliError::not_found(format!(
                "parent namespace {parent} is not in the kernel's namespace table: add it first \
                 (`bpfns kernel debug ns-set {parent} --parent 0`), or use --parent 0 for the root"
            ))
            .into());
        };
        // Walk up from the parent: reaching `id` would make a cycle.
        let mut cur = p.parent;
        for _ in 0..=MAX_DEPTH {
            if cur == id {
                bail!(
                    "namespace {parent} is below {id}: making it {id}'s parent would form a cycle"
                );
            }
            match rows.iter().find(|n| n.id == cur) {
                Some(n) => cur = n.parent,
                None => break,
            }
        }
        p.depth
    };
    let depth = depth.unwrap_or(parent_depth + 1);
    if depth == 0 || depth > MAX_DEPTH {
        bail!(
            "depth {depth} is out of range: namespaces nest 1 to {MAX_DEPTH} levels below the root"
        );
    }
    Ok(depth)
}

pub fn ns_set(direct: &Direct, id: u32, parent: u32, depth: Option<u32>) -> Result<NsView> {
    let k = direct.kernel()?;
    let depth = plan_ns_set(&ns_rows(&k)?, id, parent, depth)?;
    // The limit first, as bpfnsd writes them: the kernel side lets a namespace without one
    // create nothing. One that has none gets no limit of its own (its ancestors' still count).
    k.ensure_namespace_limit(NsId(id), u64::MAX)
        .with_context(|| format!("writing the quota entry of namespace {id}"))?;
    k.set_namespace(NsId(id), NsId(parent), depth)
        .with_context(|| format!("writing namespace {id} into the namespace table"))?;
    Ok(NsView { id, parent, depth })
}

impl Render for NsView {
    fn render_text(&self) -> String {
        format!(
            "namespace {} (parent {}, depth {}) is in the kernel's namespace table\n",
            self.id,
            namespace_label(NsId(self.parent)),
            self.depth
        )
    }
}

/// `bpfns kernel debug ns-rm`.
#[derive(Debug, Clone, Serialize)]
pub struct NsRmView {
    pub id: u32,
    /// Objects still owned by the namespace (now visible from the root only).
    pub owned_objects: usize,
}

impl Render for NsRmView {
    fn render_text(&self) -> String {
        let mut out = format!(
            "removed namespace {} from the kernel's namespace table\n",
            self.id
        );
        if self.owned_objects > 0 {
            out.push_str(&format!(
                "note: {} object(s) still owned by ns:{} are now visible from the root only\n",
                self.owned_objects, self.id
            ));
        }
        out
    }
}

pub fn ns_rm(direct: &Direct, id: u32) -> Result<NsRmView> {
    let k = direct.kernel()?;
    let rows = ns_rows(&k)?;
    if !rows.iter().any(|n| n.id == id) {
        return Err(CliError::not_found(format!(
            "namespace {id} is not in the kernel's namespace table (see `bpfns kernel status{}`)",
            pin_root_flag(direct.layout().root())
        ))
        .into());
    }
    let children: Vec<String> = rows
        .iter()
        .filter(|n| n.parent == id)
        .map(|n| n.id.to_string())
        .collect();
    if !children.is_empty() {
        return Err(CliError::conflict(format!(
            "namespace {id} still has child namespaces in the table ({}): remove them first",
            children.join(", ")
        ))
        .into());
    }
    let mut pids: Vec<i32> = members(&k, Some(id))?.into_iter().map(|(_, p)| p).collect();
    pids.dedup();
    if !pids.is_empty() {
        let list: Vec<String> = pids.iter().take(10).map(i32::to_string).collect();
        return Err(CliError::conflict(format!(
            "namespace {id} still has member processes ({}{}): they must exit first, or be \
             moved with `bpfns kernel debug tag PID 0`",
            list.join(", "),
            if pids.len() > 10 { ", ..." } else { "" }
        ))
        .into());
    }
    let owned_objects = k
        .ownership_records()
        .context("reading the ownership records")?
        .iter()
        .filter(|(_, _, ns)| ns.get() == id)
        .count();
    k.remove_namespace(NsId(id))
        .with_context(|| format!("removing namespace {id} from the namespace table"))?;
    Ok(NsRmView { id, owned_objects })
}

// ---- tag -------------------------------------------------------------------------------------

/// `bpfns kernel debug tag`.
#[derive(Debug, Clone, Serialize)]
pub struct TagView {
    pub pid: i32,
    pub ns_id: u32,
    pub namespace: String,
}

impl Render for TagView {
    fn render_text(&self) -> String {
        format!(
            "process {} (all its threads) is now in namespace {}\n",
            self.pid, self.namespace
        )
    }
}

pub fn tag(direct: &Direct, pid: i32, ns_id: u32) -> Result<TagView> {
    if pid <= 0 {
        return Err(CliError::usage(format!("{pid} is not a process id")).into());
    }
    let k = direct.kernel()?;
    ensure_ns_known(&k, NsId(ns_id), direct.layout().root())?;
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(CliError::not_found(format!("no process with pid {pid}")).into());
    }
    k.tag_process(pid, NsId(ns_id))
        .with_context(|| format!("tagging process {pid} with namespace {ns_id}"))?;
    Ok(TagView {
        pid,
        ns_id,
        namespace: namespace_label(NsId(ns_id)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<NsView> {
        vec![
            NsView {
                id: 1,
                parent: 0,
                depth: 1,
            },
            NsView {
                id: 2,
                parent: 1,
                depth: 2,
            },
        ]
    }

    #[test]
    fn depth_follows_the_parent() {
        assert_eq!(plan_ns_set(&rows(), 5, 0, None).unwrap(), 1);
        assert_eq!(plan_ns_set(&rows(), 5, 1, None).unwrap(), 2);
        assert_eq!(plan_ns_set(&rows(), 5, 2, None).unwrap(), 3);
        assert_eq!(plan_ns_set(&rows(), 5, 2, Some(7)).unwrap(), 7);
    }

    #[test]
    fn bad_trees_are_refused() {
        let e = |r: Result<u32>| r.unwrap_err().to_string();
        assert!(e(plan_ns_set(&rows(), 0, 0, None)).contains("root"));
        assert!(e(plan_ns_set(&rows(), 3, 3, None)).contains("own parent"));
        assert!(e(plan_ns_set(&rows(), 3, 9, None)).contains("not in the kernel's namespace table"));
        assert!(e(plan_ns_set(&rows(), 1, 2, None)).contains("cycle"));
        assert!(e(plan_ns_set(&rows(), 3, 0, Some(0))).contains("out of range"));
        assert!(e(plan_ns_set(&rows(), 3, 0, Some(MAX_DEPTH + 1))).contains("out of range"));
    }

    fn loaded_status() -> StatusView {
        StatusView {
            pin_root: "/sys/fs/bpf/bpfns".into(),
            loaded: true,
            state: "loaded",
            missing: vec![],
            fix: None,
            details: Some(LoadedDetails {
                layers: vec!["tracepoint backstop".into(), "BPF LSM".into()],
                syscall_hooks: vec!["on_sys_exit".into(), "on_fork".into()],
                programs: vec![ProgramView {
                    link: "on_sys_exit".into(),
                    id: 41,
                }],
                stats: [("tasks_stopped".to_string(), 2)].into_iter().collect(),
                namespaces: rows(),
                ownership_records: 3,
                tagged_tasks: 4,
            }),
        }
    }

    #[test]
    fn status_json_shape() {
        let v = serde_json::to_value(loaded_status()).unwrap();
        assert_eq!(v["loaded"], true);
        assert_eq!(v["state"], "loaded");
        assert_eq!(
            v["programs"][0],
            serde_json::json!({"link": "on_sys_exit", "id": 41})
        );
        assert_eq!(v["stats"]["tasks_stopped"], 2);
        assert_eq!(
            v["layers"],
            serde_json::json!(["tracepoint backstop", "BPF LSM"])
        );
        assert_eq!(
            v["namespaces"][1],
            serde_json::json!({"id": 2, "parent": 1, "depth": 2})
        );
        assert_eq!(v["ownership_records"], 3);
        assert_eq!(v["tagged_tasks"], 4);
        assert_eq!(
            v["syscall_hooks"],
            serde_json::json!(["on_sys_exit", "on_fork"])
        );
        assert!(v.get("fix").is_none());

        let not = StatusView {
            pin_root: "/sys/fs/bpf/x".into(),
            loaded: false,
            state: "not-loaded",
            missing: vec![],
            fix: Some("run `bpfns kernel load --pin-root /sys/fs/bpf/x`".into()),
            details: None,
        };
        let v = serde_json::to_value(&not).unwrap();
        assert_eq!(v["loaded"], false);
        assert!(v["fix"].as_str().unwrap().contains("kernel load"));
        assert!(v.get("programs").is_none());
        let t = not.render_text();
        assert!(
            t.starts_with("kernel side: not loaded at /sys/fs/bpf/x\nfix: run"),
            "{t}"
        );
    }

    #[test]
    fn status_text() {
        let t = loaded_status().render_text();
        assert!(
            t.starts_with("kernel side: loaded at /sys/fs/bpf/bpfns\n"),
            "{t}"
        );
        assert!(
            t.contains("\nlayers: tracepoint backstop, BPF LSM\n"),
            "{t}"
        );
        assert!(
            t.contains("\nsyscall hooks: attached (on_sys_exit, on_fork)\n"),
            "{t}"
        );
        assert!(t.contains("  on_sys_exit  41\n"), "{t}");
        assert!(t.contains("  tasks_stopped  2\n"), "{t}");
        assert!(t.contains("namespaces in the kernel table: 2\n"), "{t}");
        assert!(t.contains("  2   ns:1    2\n"), "{t}");
        assert!(t.contains("  1   /       1\n"), "{t}");
        assert!(t.contains("ownership records: 3\n"), "{t}");
        assert!(t.ends_with("tagged tasks (threads): 4\n"), "{t}");
    }

    #[test]
    fn load_text() {
        let l = LoadView {
            pin_root: "/sys/fs/bpf/bpfns".into(),
            mounted: vec![],
            reused_state: true,
            programs: vec![ProgramView {
                link: "on_fork".into(),
                id: 9,
            }],
            lsm: LsmStatus::Unavailable {
                reason: "\"bpf\" is not in the active LSM list".into(),
            },
        };
        let t = l.render_text();
        assert!(t.contains("mounted: nothing"), "{t}");
        assert!(t.contains("reused"), "{t}");
        assert!(t.contains("  on_fork  9\n"), "{t}");
        assert!(
            t.contains("BPF LSM layer: not loaded: \"bpf\" is not in the active LSM list"),
            "{t}"
        );
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(v["lsm"]["state"], "unavailable");
        assert_eq!(v["programs"][0]["id"], 9);
        assert_eq!(v["reused_state"], true);
    }
}
