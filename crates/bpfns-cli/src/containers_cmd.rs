//! `bpfns containers install`: register bpfns-oci with a container engine, and undo it.
//!
//! Each engine's configuration is merged, not replaced: a TOML editor (podman, containerd)
//! and an order-keeping JSON edit (Docker) change only bpfns's own entries, so comments,
//! formatting and every other setting stay as they were. Before the first change, what was
//! there is kept in a record (`/var/lib/bpfns/containers/ENGINE.*`): `--undo` puts it back
//! byte for byte, or removes a file (and directories) that did not exist. A run that would
//! change nothing writes nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::cli::{Engine, InstallArgs, OciRuntime};
use crate::error::{CliError, Code};
use crate::output::Render;

/// Where bpfns keeps what each engine's configuration was before the first install.
const STATE_DIR: &str = "/var/lib/bpfns/containers";
/// The name runtimes are registered under in Docker and containerd.
const RUNTIME_NAME: &str = "bpfns";

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "docker",
            Engine::Containerd => "containerd",
        }
    }

    /// The file bpfns writes for this engine.
    fn default_config(self) -> &'static str {
        match self {
            // podman (4.x) reads every *.conf of containers.conf.d after containers.conf: a
            // drop-in of bpfns's own leaves the administrator's files untouched.
            Engine::Podman => "/etc/containers/containers.conf.d/bpfns.conf",
            Engine::Docker => "/etc/docker/daemon.json",
            Engine::Containerd => "/etc/containerd/config.toml",
        }
    }
}

impl OciRuntime {
    fn name(self) -> &'static str {
        match self {
            OciRuntime::Runc => "runc",
            OciRuntime::Crun => "crun",
        }
    }
}

/// What `bpfns containers install` did (or, with --dry-run, would do).
#[derive(Debug, Serialize)]
pub struct InstallReport {
    pub engine: &'static str,
    /// `install` or `undo`.
    pub action: &'static str,
    pub dry_run: bool,
    /// Whether anything changed (or would change).
    pub changed: bool,
    /// The engine's configuration file.
    pub config: PathBuf,
    /// The wrapper the configuration names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wrapper: Option<PathBuf>,
    /// The runtime links made (or removed) beside the wrapper.
    pub links: Vec<PathBuf>,
    /// The change as a line diff (with --dry-run, or when something changed).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub diff: String,
    /// What was done to make the engine read it, or what is left to do.
    pub reload: String,
    /// Where the previous configuration is kept for --undo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<PathBuf>,
}

impl Render for InstallReport {
    fn render_text(&self) -> String {
        let mut s = String::new();
        let what = match (self.action, self.changed, self.dry_run) {
            (_, false, _) => "nothing to change".to_string(),
            ("install", true, true) => "would register bpfns-oci".to_string(),
            ("install", true, false) => "registered bpfns-oci".to_string(),
            (_, true, true) => "would restore the configuration from before".to_string(),
            (_, true, false) => "restored the configuration from before".to_string(),
        };
        let _ = writeln!(s, "{}: {what} ({})", self.engine, self.config.display());
        if !self.diff.is_empty() {
            s.push_str(&self.diff);
        }
        for l in &self.links {
            let verb = match (self.action, self.dry_run) {
                ("install", true) => "would link",
                ("install", false) => "linked",
                (_, true) => "would remove",
                (_, false) => "removed",
            };
            let _ = writeln!(s, "{verb} {}", l.display());
        }
        if !self.reload.is_empty() {
            let _ = writeln!(s, "{}", self.reload);
        }
        s
    }
}

/// What was there before the first install, for --undo.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    engine: String,
    config: PathBuf,
    /// Whether the configuration file existed (its bytes are in ENGINE.before).
    existed: bool,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Directories made for the configuration file, outermost first.
    created_dirs: Vec<PathBuf>,
}

/// The links made beside the wrapper, removed when the last engine's registration is undone.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Links {
    created: Vec<PathBuf>,
}

/// Paths, resolved from the flags.
struct Paths {
    config: PathBuf,
    state: PathBuf,
    /// Whether the host's engine may be signalled (not with --root or another --config).
    host: bool,
}

fn under_root(root: Option<&Path>, p: &str) -> PathBuf {
    match root {
        Some(r) => r.join(p.trim_start_matches('/')),
        None => PathBuf::from(p),
    }
}

fn paths(a: &InstallArgs) -> Paths {
    let root = a.root.as_deref();
    Paths {
        config: a
            .config
            .clone()
            .unwrap_or_else(|| under_root(root, a.engine.default_config())),
        state: a
            .state_dir
            .clone()
            .unwrap_or_else(|| under_root(root, STATE_DIR)),
        host: root.is_none() && a.config.is_none(),
    }
}

/// `bpfns containers install` (and `--undo`).
pub fn run(a: &InstallArgs) -> Result<InstallReport> {
    let p = paths(a);
    if a.undo {
        undo(a, &p)
    } else {
        install(a, &p)
    }
}

fn record_path(p: &Paths, engine: Engine, what: &str) -> PathBuf {
    p.state.join(format!("{}.{what}", engine.name()))
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(e, "reading", path)),
    }
}

/// An I/O error with its cause and fix.
fn io_error(e: std::io::Error, doing: &str, path: &Path) -> anyhow::Error {
    let fix = match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "; fix: run as root, or give --root DIR (or --config and --state-dir) to write elsewhere"
        }
        _ => "",
    };
    anyhow::anyhow!("{doing} {}: {e}{fix}", path.display())
}

fn load_record(p: &Paths, engine: Engine) -> Result<Option<Record>> {
    let path = record_path(p, engine, "json");
    match read_opt(&path)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b).map(Some).with_context(|| {
            format!(
                "{} is not a record bpfns can read; fix: restore {} by hand and remove the \
                 record",
                path.display(),
                engine.name()
            )
        }),
    }
}

fn load_links(p: &Paths) -> Result<Links> {
    let path = p.state.join("links.json");
    match read_opt(&path)? {
        None => Ok(Links::default()),
        Some(b) => serde_json::from_slice(&b)
            .with_context(|| format!("{} is not a record bpfns can read", path.display())),
    }
}

/// Write `bytes` to `path` through a temporary file renamed over it, with this mode and owner.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.bpfns-{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(e, "writing", path));
    }
    Ok(())
}

/// The bpfns-oci executable: --wrapper, else beside this bpfns, else on PATH.
fn find_wrapper(a: &InstallArgs) -> Result<PathBuf> {
    if let Some(w) = &a.wrapper {
        if !w.is_absolute() {
            return Err(CliError::usage(format!(
                "--wrapper {}: give an absolute path (engines start the runtime by it)",
                w.display()
            ))
            .into());
        }
        if !w.is_file() {
            return Err(CliError::not_found(format!(
                "--wrapper {}: no such file; fix: build or install bpfns-oci there",
                w.display()
            ))
            .into());
        }
        return Ok(w.clone());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("bpfns-oci")));
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("bpfns-oci"))
            .find(|c| c.is_file() && c.is_absolute())
    });
    beside.filter(|b| b.is_file()).or(on_path).ok_or_else(|| {
        CliError::not_found(
            "bpfns-oci is neither beside bpfns nor on PATH; fix: install it (the bpfns \
                 package, or scripts/install.sh) or name it with --wrapper PATH",
        )
        .into()
    })
}

/// The links an engine starts the wrapper by: `bpfns-oci-crun` and `bpfns-oci-runc` beside it.
fn link_path(wrapper: &Path, rt: OciRuntime) -> PathBuf {
    wrapper.with_file_name(format!("bpfns-oci-{}", rt.name()))
}

/// Whether `link` already starts `wrapper` (a link to it, or the same file).
fn link_ok(link: &Path, wrapper: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(link) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(e, "looking at", link)),
        Ok(_) => {
            let (a, b) = (std::fs::metadata(link), std::fs::metadata(wrapper));
            match (a, b) {
                (Ok(a), Ok(b)) if a.dev() == b.dev() && a.ino() == b.ino() => Ok(true),
                _ => Err(CliError::conflict(format!(
                    "{} exists and is not bpfns-oci ({}); fix: remove it, or name another \
                     wrapper with --wrapper",
                    link.display(),
                    wrapper.display()
                ))
                .into()),
            }
        }
    }
}

/// The registration an engine's configuration gets.
struct Registration {
    /// bpfns-oci-crun and bpfns-oci-runc.
    crun: PathBuf,
    runc: PathBuf,
    /// The one Docker and containerd run (they register a single runtime).
    chosen: PathBuf,
    /// podman's default runtime name, with --default.
    default: bool,
    runtime: OciRuntime,
}

fn install(a: &InstallArgs, p: &Paths) -> Result<InstallReport> {
    let engine = a.engine;
    let wrapper = find_wrapper(a)?;
    let runtime = match (a.runtime, engine) {
        (Some(r), _) => r,
        (None, Engine::Podman) if a.default => {
            podman_default_runtime(a.root.as_deref(), &p.config)?
        }
        (None, _) => OciRuntime::Runc,
    };
    let reg = Registration {
        crun: link_path(&wrapper, OciRuntime::Crun),
        runc: link_path(&wrapper, OciRuntime::Runc),
        chosen: link_path(&wrapper, runtime),
        default: a.default,
        runtime,
    };
    let record = load_record(p, engine)?;
    let current = read_opt(&p.config)?;
    if let Some(r) = &record {
        if r.config != p.config {
            return Err(CliError::conflict(format!(
                "bpfns is registered with {} in {} already; fix: undo that first (bpfns \
                 containers install --engine {} --undo --config {})",
                engine.name(),
                r.config.display(),
                engine.name(),
                r.config.display()
            ))
            .into());
        }
        changed_since(p, engine, current.as_deref(), a.force)?;
    }
    let new = merge(engine, &p.config, current.as_deref(), &reg)?;
    let mut links = Vec::new();
    for rt in [OciRuntime::Crun, OciRuntime::Runc] {
        let l = link_path(&wrapper, rt);
        if !link_ok(&l, &wrapper)? {
            links.push(l);
        }
    }
    let changed = current.as_deref() != Some(new.as_slice());
    let mut report = InstallReport {
        engine: engine.name(),
        action: "install",
        dry_run: a.dry_run,
        changed: changed || !links.is_empty(),
        config: p.config.clone(),
        wrapper: Some(wrapper.clone()),
        links: links.clone(),
        diff: if changed {
            diff(&p.config, current.as_deref(), Some(&new))
        } else {
            String::new()
        },
        reload: String::new(),
        record: None,
    };
    if a.dry_run || !report.changed {
        if !report.changed {
            report.reload = "already registered: nothing written".into();
        }
        return Ok(report);
    }
    make_dir(&p.state, 0o700)?;
    if changed {
        if record.is_none() {
            // What was there, kept before anything changes: an interrupted install can be
            // undone too.
            let meta = match std::fs::metadata(&p.config) {
                Ok(m) => Some(m),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(io_error(e, "looking at", &p.config)),
            };
            let created_dirs = missing_dirs(&p.config);
            if let Some(before) = &current {
                write_atomic(&record_path(p, engine, "before"), before, 0o600, None)?;
            }
            let r = Record {
                engine: engine.name().into(),
                config: p.config.clone(),
                existed: current.is_some(),
                mode: meta.as_ref().map_or(0o644, |m| m.mode() & 0o7777),
                uid: meta.as_ref().map_or(0, MetadataExt::uid),
                gid: meta.as_ref().map_or(0, MetadataExt::gid),
                created_dirs,
            };
            // The record of what we are about to write first: undo then knows it wrote it.
            write_atomic(&record_path(p, engine, "after"), &new, 0o600, None)?;
            write_atomic(
                &record_path(p, engine, "json"),
                &serde_json::to_vec_pretty(&r)?,
                0o600,
                None,
            )?;
            for d in &r.created_dirs {
                make_dir(d, 0o755)?;
            }
            write_atomic(&p.config, &new, r.mode, None)?;
        } else {
            let meta = std::fs::metadata(&p.config).ok();
            write_atomic(&record_path(p, engine, "after"), &new, 0o600, None)?;
            write_atomic(
                &p.config,
                &new,
                meta.as_ref().map_or(0o644, |m| m.mode() & 0o7777),
                meta.as_ref().map(|m| (m.uid(), m.gid())),
            )?;
        }
    }
    if !links.is_empty() {
        let mut known = load_links(p)?;
        for l in &links {
            std::os::unix::fs::symlink("bpfns-oci", l).map_err(|e| io_error(e, "linking", l))?;
            if !known.created.contains(l) {
                known.created.push(l.clone());
            }
        }
        write_atomic(
            &p.state.join("links.json"),
            &serde_json::to_vec_pretty(&known)?,
            0o600,
            None,
        )?;
    }
    report.record = Some(record_path(p, engine, "json"));
    report.reload = reload(engine, p, a.no_reload, false);
    Ok(report)
}

/// podman's default runtime, which `--default` keeps under bpfns-oci: the last `[engine]
/// runtime` of the containers.conf files podman reads (below `root`, and the file being
/// edited; bpfns's own `bpfns-*` values skipped), else crun, podman's built-in default.
fn podman_default_runtime(root: Option<&Path>, edited: &Path) -> Result<OciRuntime> {
    let mut files = vec![
        under_root(root, "/usr/share/containers/containers.conf"),
        under_root(root, "/etc/containers/containers.conf"),
    ];
    let drop_ins = under_root(root, "/etc/containers/containers.conf.d");
    let mut more: Vec<PathBuf> = std::fs::read_dir(&drop_ins)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .collect()
        })
        .unwrap_or_default();
    more.sort();
    files.extend(more);
    if !files.iter().any(|f| f == edited) {
        files.push(edited.to_path_buf());
    }
    let mut found: Option<(String, PathBuf)> = None;
    for f in files {
        let Some(bytes) = read_opt(&f)? else { continue };
        let text = String::from_utf8_lossy(&bytes);
        let doc = parse_toml(&f, &text, "podman")?;
        let value = doc
            .get("engine")
            .and_then(|e| e.get("runtime"))
            .and_then(toml_edit::Item::as_str)
            .filter(|v| !v.starts_with("bpfns-"));
        if let Some(v) = value {
            found = Some((v.to_string(), f));
        }
    }
    match found {
        None => Ok(OciRuntime::Crun),
        Some((v, _)) if v == "crun" => Ok(OciRuntime::Crun),
        Some((v, _)) if v == "runc" => Ok(OciRuntime::Runc),
        Some((v, f)) => Err(CliError::usage(format!(
            "podman's default runtime is {v} ({}); bpfns-oci runs runc or crun: choose one \
             with --runtime runc|crun",
            f.display()
        ))
        .into()),
    }
}

/// Refuse (unless `force`) when the configuration is no longer what bpfns wrote.
fn changed_since(p: &Paths, engine: Engine, current: Option<&[u8]>, force: bool) -> Result<()> {
    let after = read_opt(&record_path(p, engine, "after"))?;
    if force || after.is_none() || after.as_deref() == current {
        return Ok(());
    }
    Err(CliError::conflict(format!(
        "{} changed since bpfns containers install wrote it; undoing would put back what was \
         there before bpfns and lose those changes; fix: compare it with {} (what was there \
         before), then rerun with --force",
        p.config.display(),
        record_path(p, engine, "before").display()
    ))
    .into())
}

/// The ancestors of `path` that do not exist, outermost first.
fn missing_dirs(path: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = path
        .ancestors()
        .skip(1)
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(Path::to_path_buf)
        .collect();
    v.reverse();
    v
}

fn make_dir(d: &Path, mode: u32) -> Result<()> {
    match std::fs::create_dir(d) {
        Ok(()) => std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_error(e, "setting the mode of", d)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Parents as private as the directory itself (bpfns's state directory is 0700).
            if let Some(parent) = d.parent() {
                make_dir(parent, mode)?;
            }
            make_dir(d, mode)
        }
        Err(e) => Err(io_error(e, "creating", d)),
    }
}

fn undo(a: &InstallArgs, p: &Paths) -> Result<InstallReport> {
    let engine = a.engine;
    let Some(r) = load_record(p, engine)? else {
        return Ok(InstallReport {
            engine: engine.name(),
            action: "undo",
            dry_run: a.dry_run,
            changed: false,
            config: p.config.clone(),
            wrapper: None,
            links: Vec::new(),
            diff: String::new(),
            reload: format!(
                "no registration of bpfns with {} recorded in {}: nothing to undo",
                engine.name(),
                p.state.display()
            ),
            record: None,
        });
    };
    let current = read_opt(&r.config)?;
    changed_since(p, engine, current.as_deref(), a.force)?;
    let before = if r.existed {
        Some(read_opt(&record_path(p, engine, "before"))?.ok_or_else(|| {
            anyhow::anyhow!(
                "{} is missing: what {} held before is lost; fix: restore it by hand and remove \
                 {}",
                record_path(p, engine, "before").display(),
                r.config.display(),
                record_path(p, engine, "json").display()
            )
        })?)
    } else {
        None
    };
    let others = [Engine::Podman, Engine::Docker, Engine::Containerd]
        .into_iter()
        .filter(|e| *e != engine)
        .any(|e| record_path(p, e, "json").exists());
    let links = if others {
        Vec::new()
    } else {
        load_links(p)?
            .created
            .into_iter()
            .filter(|l| std::fs::symlink_metadata(l).is_ok())
            .collect()
    };
    let report = InstallReport {
        engine: engine.name(),
        action: "undo",
        dry_run: a.dry_run,
        changed: true,
        config: r.config.clone(),
        wrapper: None,
        links: links.clone(),
        diff: diff(&r.config, current.as_deref(), before.as_deref()),
        reload: String::new(),
        record: Some(record_path(p, engine, "json")),
    };
    if a.dry_run {
        return Ok(report);
    }
    match &before {
        Some(b) => write_atomic(&r.config, b, r.mode, Some((r.uid, r.gid)))?,
        None => match std::fs::remove_file(&r.config) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e, "removing", &r.config)),
        },
    }
    for d in r.created_dirs.iter().rev() {
        // Only if empty: anything put there since stays.
        let _ = std::fs::remove_dir(d);
    }
    for l in &links {
        std::fs::remove_file(l).map_err(|e| io_error(e, "removing", l))?;
    }
    if !others {
        let _ = std::fs::remove_file(p.state.join("links.json"));
    }
    for what in ["json", "before", "after"] {
        let f = record_path(p, engine, what);
        match std::fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e, "removing", &f)),
        }
    }
    let _ = std::fs::remove_dir(&p.state);
    let mut report = report;
    report.reload = reload(engine, p, a.no_reload, true);
    Ok(report)
}

/// Make the engine read its configuration again where it keeps it in memory; else say what
/// takes effect when.
fn reload(engine: Engine, p: &Paths, no_reload: bool, undo: bool) -> String {
    match engine {
        // dockerd's SIGHUP applies the keys the file has and keeps those it no longer has
        // (checked with dockerd 20.10: `runtimes` and `default-runtime` stay as they were).
        Engine::Docker if undo => "dockerd keeps the bpfns runtime (and default-runtime) until \
                                   it restarts: SIGHUP does not drop settings removed from the \
                                   file; restart it: systemctl restart docker"
            .into(),
        Engine::Podman => "podman reads it at its next command: nothing to restart".into(),
        Engine::Containerd => "restart containerd to apply it: systemctl restart containerd \
                               (running containers keep running)"
            .into(),
        Engine::Docker => {
            if !p.host || no_reload {
                return "dockerd reads it when it starts, or at SIGHUP (kill -HUP $(pidof \
                        dockerd))"
                    .into();
            }
            match dockerd_pid() {
                None => "dockerd is not running: it reads it when it starts".into(),
                Some(pid) => match rustix::process::Pid::from_raw(pid)
                    .map(|pid| rustix::process::kill_process(pid, rustix::process::Signal::HUP))
                {
                    Some(Ok(())) => format!(
                        "dockerd (pid {pid}) told to reload its configuration (SIGHUP): \
                         runtimes and default-runtime apply to new containers"
                    ),
                    _ => format!(
                        "could not signal dockerd (pid {pid}); restart it to apply it: \
                         systemctl restart docker"
                    ),
                },
            }
        }
    }
}

/// dockerd's pid from its pid file, if that process is dockerd.
fn dockerd_pid() -> Option<i32> {
    ["/run/docker.pid", "/var/run/docker.pid"]
        .iter()
        .find_map(|f| std::fs::read_to_string(f).ok())
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "dockerd")
        })
}

/// The configuration with bpfns registered, from what is there now.
fn merge(
    engine: Engine,
    path: &Path,
    current: Option<&[u8]>,
    reg: &Registration,
) -> Result<Vec<u8>> {
    let text = match current {
        None => String::new(),
        Some(b) => String::from_utf8(b.to_vec()).map_err(|_| {
            CliError::new(
                Code::Failed,
                format!(
                    "{} is not UTF-8 text; fix: correct it (the engine cannot read it either)",
                    path.display()
                ),
            )
        })?,
    };
    let out = match engine {
        Engine::Podman => merge_podman(path, &text, reg)?,
        Engine::Containerd => merge_containerd(path, &text, reg)?,
        Engine::Docker => merge_docker(path, &text, reg)?,
    };
    Ok(out.into_bytes())
}

fn parse_toml(path: &Path, text: &str, engine: &str) -> Result<toml_edit::DocumentMut> {
    text.parse::<toml_edit::DocumentMut>().map_err(|e| {
        CliError::new(
            Code::Failed,
            format!(
                "{} is not valid TOML ({}); fix: correct it ({engine} cannot read it either) \
                 and run again",
                path.display(),
                e.to_string().trim()
            ),
        )
        .into()
    })
}

/// The table at `keys` below `doc`, made (as implicit tables: no empty headers) where missing.
fn table_at<'a>(
    path: &Path,
    doc: &'a mut toml_edit::Table,
    keys: &[&str],
) -> Result<&'a mut toml_edit::Table> {
    let mut t = doc;
    for (i, k) in keys.iter().enumerate() {
        if !t.contains_key(k) {
            let mut new = toml_edit::Table::new();
            new.set_implicit(true);
            t.insert(k, toml_edit::Item::Table(new));
        }
        let item = t.get_mut(k).expect("just inserted");
        t = match item {
            toml_edit::Item::Table(t) => t,
            other => {
                // An inline table (`options = { ... }`) is turned into a standard one.
                if let Some(inline) = other.as_inline_table().cloned() {
                    *other = toml_edit::Item::Table(inline.into_table());
                    other.as_table_mut().expect("a table")
                } else {
                    return Err(CliError::new(
                        Code::Failed,
                        format!(
                            "{}: {} is not a table; fix: correct it and run again",
                            path.display(),
                            keys[..=i].join(".")
                        ),
                    )
                    .into());
                }
            }
        };
    }
    Ok(t)
}

/// Set `key` to a string unless it already is that string (keeps its comments then).
fn set_str(t: &mut toml_edit::Table, key: &str, v: &str) {
    if t.get(key).and_then(toml_edit::Item::as_str) != Some(v) {
        t.insert(key, toml_edit::value(v));
    }
}

/// podman: `[engine.runtimes] bpfns-crun/bpfns-runc`, with --default `[engine] runtime`.
fn merge_podman(path: &Path, text: &str, reg: &Registration) -> Result<String> {
    let mut doc = parse_toml(path, text, "podman")?;
    let header = if text.is_empty() {
        "# bpfns-oci for podman: written by `bpfns containers install --engine podman`;\n\
         # `bpfns containers install --engine podman --undo` takes it back.\n"
    } else {
        ""
    };
    if reg.default {
        let engine = table_at(path, doc.as_table_mut(), &["engine"])?;
        set_str(engine, "runtime", &format!("bpfns-{}", reg.runtime.name()));
    }
    let runtimes = table_at(path, doc.as_table_mut(), &["engine", "runtimes"])?;
    for (name, link) in [("bpfns-crun", &reg.crun), ("bpfns-runc", &reg.runc)] {
        let want = link.to_string_lossy();
        let same = runtimes
            .get(name)
            .and_then(toml_edit::Item::as_array)
            .is_some_and(|a| a.len() == 1 && a.get(0).and_then(|v| v.as_str()) == Some(&want));
        if !same {
            let mut arr = toml_edit::Array::new();
            arr.push(want.as_ref());
            runtimes.insert(name, toml_edit::value(arr));
        }
    }
    Ok(format!("{header}{doc}"))
}

/// containerd: a runc-v2 runtime `bpfns` for the CRI plugin, whose runc is the wrapper.
fn merge_containerd(path: &Path, text: &str, reg: &Registration) -> Result<String> {
    let mut doc = parse_toml(path, text, "containerd")?;
    let version = match doc.get("version") {
        None if doc.is_empty() => {
            // A new file: the format containerd 1.x documents.
            doc.insert("version", toml_edit::value(2));
            2
        }
        None => 1,
        Some(v) => v.as_integer().ok_or_else(|| {
            CliError::new(
                Code::Failed,
                format!(
                    "{}: version is not a number; fix: correct it",
                    path.display()
                ),
            )
        })?,
    };
    // Where the CRI plugin's runtimes are, by configuration version.
    let plugin = match version {
        1 => "cri",
        2 => "io.containerd.grpc.v1.cri",
        3 => "io.containerd.cri.v1.runtime",
        v => {
            return Err(CliError::new(
                Code::Failed,
                format!(
                    "{}: configuration version {v} is unknown to bpfns (1, 2 and 3 are known); \
                     fix: register the runtime by hand (docs/containers.md)",
                    path.display()
                ),
            )
            .into())
        }
    };
    if reg.default {
        let c = table_at(path, doc.as_table_mut(), &["plugins", plugin, "containerd"])?;
        set_str(c, "default_runtime_name", RUNTIME_NAME);
    }
    let rt = table_at(
        path,
        doc.as_table_mut(),
        &["plugins", plugin, "containerd", "runtimes", RUNTIME_NAME],
    )?;
    set_str(rt, "runtime_type", "io.containerd.runc.v2");
    let options = table_at(path, rt, &["options"])?;
    set_str(options, "BinaryName", &reg.chosen.to_string_lossy());
    Ok(doc.to_string())
}

/// A JSON object whose members keep their order and their text.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Members, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = m.next_entry::<String, Box<RawValue>>()? {
                    v.push((k, val));
                }
                Ok(Members(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Render `members` as an object, each member on its own line indented by `indent` more than
/// `outer`.
fn render_object(members: &[(String, String)], outer: &str, indent: &str) -> String {
    if members.is_empty() {
        return "{}".into();
    }
    let mut s = String::from("{\n");
    for (i, (k, v)) in members.iter().enumerate() {
        let key = serde_json::to_string(k).expect("a string serializes");
        let _ = write!(s, "{outer}{indent}{key}: {v}");
        s.push_str(if i + 1 < members.len() { ",\n" } else { "\n" });
    }
    s.push_str(outer);
    s.push('}');
    s
}

/// Docker: `"runtimes": {"bpfns": {"path": ...}}`, with --default `"default-runtime"`; every
/// other member kept as it was written.
fn merge_docker(path: &Path, text: &str, reg: &Registration) -> Result<String> {
    let bad = |e: serde_json::Error| -> anyhow::Error {
        CliError::new(
            Code::Failed,
            format!(
                "{} is not a JSON object ({e}); fix: correct it (dockerd refuses it too) and \
                 run again",
                path.display()
            ),
        )
        .into()
    };
    let top: Members = if text.trim().is_empty() {
        Members(Vec::new())
    } else {
        serde_json::from_str(text).map_err(bad)?
    };
    // The file's own indentation, if it has one.
    let indent = text
        .lines()
        .nth(1)
        .map(|l| &l[..l.len() - l.trim_start().len()])
        .filter(|i| !i.is_empty())
        .unwrap_or("    ")
        .to_string();
    let chosen = reg.chosen.to_string_lossy().into_owned();
    let entry = serde_json::json!({ "path": chosen });
    let mut members: Vec<(String, String)> = Vec::new();
    let mut seen_runtimes = false;
    let mut seen_default = false;
    let mut changed = false;
    for (k, v) in &top.0 {
        let raw = v.get().to_string();
        if k == "runtimes" {
            seen_runtimes = true;
            let rts: Members = serde_json::from_str(v.get()).map_err(bad)?;
            let mut inner: Vec<(String, String)> = Vec::new();
            let mut found = false;
            for (rk, rv) in rts.0 {
                if rk == RUNTIME_NAME {
                    found = true;
                    let cur: serde_json::Value = serde_json::from_str(rv.get()).map_err(bad)?;
                    if cur.get("path").and_then(|p| p.as_str()) == Some(chosen.as_str()) {
                        inner.push((rk, rv.get().to_string()));
                    } else {
                        changed = true;
                        inner.push((rk, entry_text(&entry, &indent, 2)));
                    }
                } else {
                    inner.push((rk, rv.get().to_string()));
                }
            }
            if !found {
                changed = true;
                inner.push((RUNTIME_NAME.into(), entry_text(&entry, &indent, 2)));
            }
            members.push((k.clone(), render_object(&inner, &indent, &indent)));
        } else if k == "default-runtime" && reg.default {
            seen_default = true;
            let cur: serde_json::Value = serde_json::from_str(v.get()).map_err(bad)?;
            if cur.as_str() == Some(RUNTIME_NAME) {
                members.push((k.clone(), raw));
            } else {
                changed = true;
                members.push((k.clone(), format!("\"{RUNTIME_NAME}\"")));
            }
        } else {
            members.push((k.clone(), raw));
        }
    }
    if !seen_runtimes {
        changed = true;
        let inner = vec![(RUNTIME_NAME.to_string(), entry_text(&entry, &indent, 2))];
        members.push(("runtimes".into(), render_object(&inner, &indent, &indent)));
    }
    if reg.default && !seen_default {
        changed = true;
        members.push(("default-runtime".into(), format!("\"{RUNTIME_NAME}\"")));
    }
    if !changed {
        return Ok(text.to_string());
    }
    Ok(render_object(&members, "", &indent) + "\n")
}

/// A small JSON value rendered at nesting `depth` with `indent` per level.
fn entry_text(v: &serde_json::Value, indent: &str, depth: usize) -> String {
    match v.as_object() {
        Some(o) => {
            let members: Vec<(String, String)> =
                o.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
            render_object(&members, &indent.repeat(depth), indent)
        }
        None => v.to_string(),
    }
}

/// A line diff of `before` → `after` (`-`/`+` lines and a few lines of context).
fn diff(path: &Path, before: Option<&[u8]>, after: Option<&[u8]>) -> String {
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    let (b, a) = (text(before), text(after));
    let bl: Vec<&str> = b.as_deref().map_or(Vec::new(), |t| t.lines().collect());
    let al: Vec<&str> = a.as_deref().map_or(Vec::new(), |t| t.lines().collect());
    let mut out = format!(
        "--- {}{}\n+++ {}{}\n",
        path.display(),
        if b.is_none() { " (does not exist)" } else { "" },
        path.display(),
        if a.is_none() { " (removed)" } else { "" }
    );
    // Longest common subsequence; configuration files are small.
    let (n, m) = (bl.len(), al.len());
    if n * m > 4_000_000 {
        out.push_str("(too large to compare line by line)\n");
        return out;
    }
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if bl[i] == al[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut lines: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && bl[i] == al[j] {
            lines.push((' ', bl[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            lines.push(('-', bl[i]));
            i += 1;
        } else {
            lines.push(('+', al[j]));
            j += 1;
        }
    }
    // Context: two lines around each change.
    let near: BTreeMap<usize, ()> = lines
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| *c != ' ')
        .flat_map(|(k, _)| k.saturating_sub(2)..=k + 2)
        .map(|k| (k, ()))
        .collect();
    let mut last = None;
    for (k, (c, l)) in lines.iter().enumerate() {
        if !near.contains_key(&k) {
            continue;
        }
        if last.is_some_and(|p: usize| p + 1 != k) {
            out.push_str("@@\n");
        }
        let _ = writeln!(out, "{c}{l}");
        last = Some(k);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(default: bool) -> Registration {
        Registration {
            crun: "/usr/bin/bpfns-oci-crun".into(),
            runc: "/usr/bin/bpfns-oci-runc".into(),
            chosen: "/usr/bin/bpfns-oci-runc".into(),
            default,
            runtime: OciRuntime::Runc,
        }
    }

    #[test]
    fn podman_drop_in_from_nothing_and_idempotent() {
        let p = Path::new("/x/bpfns.conf");
        let new = merge_podman(p, "", &reg(true)).unwrap();
        assert!(new.contains("[engine]\nruntime = \"bpfns-runc\""), "{new}");
        assert!(
            new.contains("bpfns-crun = [\"/usr/bin/bpfns-oci-crun\"]"),
            "{new}"
        );
        assert!(!new.contains("[engine.runtimes]\n[engine"), "{new}");
        assert_eq!(merge_podman(p, &new, &reg(true)).unwrap(), new);
        assert_eq!(merge_podman(p, &new, &reg(false)).unwrap(), new);
    }

    #[test]
    fn podman_keeps_comments_and_other_keys() {
        let p = Path::new("/x/containers.conf");
        let old = "# mine\n[containers]\ndefault_ulimits = [\"nofile=20000:20000\"] # why\n\n\
                   [engine]\n# the manager\ncgroup_manager = \"cgroupfs\"\n";
        let new = merge_podman(p, old, &reg(false)).unwrap();
        assert!(new.starts_with(old), "{new}");
        assert!(new.contains("[engine.runtimes]"), "{new}");
        assert!(!new.contains("runtime = "), "{new}");
    }

    #[test]
    fn containerd_versions() {
        let p = Path::new("/x/config.toml");
        let new = merge_containerd(p, "", &reg(true)).unwrap();
        assert!(new.starts_with("version = 2\n"), "{new}");
        assert!(
            new.contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.bpfns]\nruntime_type = \"io.containerd.runc.v2\""),
            "{new}"
        );
        assert!(
            new.contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.bpfns.options]\nBinaryName = \"/usr/bin/bpfns-oci-runc\""),
            "{new}"
        );
        assert!(new.contains("default_runtime_name = \"bpfns\""), "{new}");
        assert_eq!(merge_containerd(p, &new, &reg(true)).unwrap(), new);
        let v1 = "# old style\n[plugins.cri]\n  sandbox_image = \"pause\"\n";
        let new = merge_containerd(p, v1, &reg(false)).unwrap();
        assert!(new.starts_with(v1), "{new}");
        assert!(
            new.contains("[plugins.cri.containerd.runtimes.bpfns]"),
            "{new}"
        );
        let v3 = "version = 3\n";
        let new = merge_containerd(p, v3, &reg(false)).unwrap();
        assert!(
            new.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.bpfns]"),
            "{new}"
        );
        assert!(merge_containerd(p, "version = 9\n", &reg(false)).is_err());
        assert!(merge_containerd(p, "[plugins\n", &reg(false)).is_err());
    }

    #[test]
    fn docker_keeps_members_order_and_text() {
        let p = Path::new("/x/daemon.json");
        let new = merge_docker(p, "", &reg(false)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&new).unwrap();
        assert_eq!(v["runtimes"]["bpfns"]["path"], "/usr/bin/bpfns-oci-runc");
        assert_eq!(merge_docker(p, &new, &reg(false)).unwrap(), new);
        let old =
            "{\n  \"log-driver\": \"journald\",\n  \"log-opts\": {\"tag\": \"x\", \"a\": 1},\n  \
                   \"runtimes\": {\"other\": {\"path\": \"/bin/other\"}}\n}\n";
        let new = merge_docker(p, old, &reg(true)).unwrap();
        assert!(
            new.starts_with("{\n  \"log-driver\": \"journald\",\n  \"log-opts\": {\"tag\": \"x\", \"a\": 1},\n  \"runtimes\": {\n    \"other\": {\"path\": \"/bin/other\"},\n    \"bpfns\": {"),
            "{new}"
        );
        let v: serde_json::Value = serde_json::from_str(&new).unwrap();
        assert_eq!(v["default-runtime"], "bpfns");
        assert_eq!(v["runtimes"]["other"]["path"], "/bin/other");
        assert_eq!(merge_docker(p, &new, &reg(true)).unwrap(), new);
        assert!(merge_docker(p, "[1]", &reg(false)).is_err());
        assert!(merge_docker(p, "{\"runtimes\": 3}", &reg(false)).is_err());
    }

    #[test]
    fn diff_shows_the_change() {
        let d = diff(Path::new("f"), Some(b"a\nb\nc\n"), Some(b"a\nB\nc\nd\n"));
        assert!(d.contains("-b\n+B\n c\n+d\n"), "{d}");
        let d = diff(Path::new("f"), None, Some(b"x\n"));
        assert!(d.contains("(does not exist)") && d.contains("+x"), "{d}");
    }
}
