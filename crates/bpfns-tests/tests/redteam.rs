//! The red-team suite: every attack tried from inside a namespace, at every
//! privilege level, against a real bpfnsd (in-process [`TestDaemon`]) and the real member
//! path ([`bpfns_client::member::spawn`]: tagged by the daemon, private mount namespace with
//! the namespace's bpffs at /sys/fs/bpf, seccomp filter handed to the daemon's supervisor).
//!
//! Each attack group ("scene") gets its own daemon and namespaces:
//!
//! ```text
//! /  ─┬─ /t ── /t/kid      the attacker is a member of /t; /t/kid's objects are visible to it
//!     └─ /s                a sibling: everything of /s (and of the root) is foreign
//! ```
//!
//! Privilege levels (columns), applied inside the member by `bpfns-test-helper rt-as LEVEL`:
//! no capabilities (uid 1000); CAP_BPF only (uid 0); CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN
//! (uid 0); a BPF token in a user namespace (uid 1000 outside, root inside, token from a
//! bpffs whose delegate_* options the privileged parent set); root of a user namespace (uid
//! 1000 outside); host root. And four container levels: the attack runs as the process of a
//! podman container of /t (`--runtime bpfns-runc`, `--annotation io.bpfns.namespace=/t`,
//! private podman storage and configuration; `Podman`), `--privileged`, `--cap-add BPF`,
//! `--userns=auto --cap-add BPF` (there with a BPF token where the container's /sys/fs/bpf
//! delegates) or `--security-opt seccomp=unconfined --cap-add NET_ADMIN,PERFMON`. The
//! level is a parameter of how an attack is started (`Scene::attack_in`), so every scene runs
//! at every level; what a container cannot apply (a target named by host pid) is "not run"
//! with the reason.
//!
//! The suite prints the matrix (attack × level → blocked / allowed / out of scope / ESCAPE)
//! as Markdown, writes it to `$CARGO_TARGET_TMPDIR/redteam-matrix.md`, and fails on any
//! ESCAPE or harness error. "Out of scope" is only ever given for the cases
//! docs/threat-model.md lists (anchors `oos-*`).
//!
//! Run: `cargo test -p bpfns-tests --test redteam -- --nocapture` (as root; the container
//! levels need `scripts/containers/setup.sh` once); `BPFNS_REDTEAM=ids,iter` runs only those
//! scenes, `BPFNS_REDTEAM_LEVELS=exec` (or `containers`, or level names) only those columns.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bpfns_model::ObjectKind;
use bpfns_sys::bpf as sysbpf;
use bpfns_tests::{helper_path, skip_reason, Helper, TestDaemon};

// ---- the matrix ------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    NoCaps,
    Bpf,
    Caps3,
    Token,
    Userns,
    Host,
    /// `podman run --privileged` (host root, every capability).
    CtrPriv,
    /// `podman run --cap-add BPF` (uid 0, podman's default capabilities and CAP_BPF).
    CtrBpf,
    /// `podman run --userns=auto` (root of a user namespace; a BPF token where its bpffs
    /// delegates).
    CtrUserns,
    /// `podman run --security-opt seccomp=unconfined --cap-add NET_ADMIN,PERFMON`: no
    /// CAP_BPF or CAP_SYS_ADMIN, and no profile of the engine's refusing bpf().
    CtrUnconf,
}

const ALL_LEVELS: [Level; 10] = [
    Level::NoCaps,
    Level::Bpf,
    Level::Caps3,
    Level::Token,
    Level::Userns,
    Level::Host,
    Level::CtrPriv,
    Level::CtrBpf,
    Level::CtrUserns,
    Level::CtrUnconf,
];

/// The levels this run covers: every one, unless `BPFNS_REDTEAM_LEVELS` names some (`exec`
/// for the six `bpfns exec` levels, `containers` for the four container levels, or level
/// names as `Level::arg` spells them, comma-separated).
fn levels() -> &'static [Level] {
    static L: std::sync::OnceLock<Vec<Level>> = std::sync::OnceLock::new();
    L.get_or_init(|| {
        let Ok(v) = std::env::var("BPFNS_REDTEAM_LEVELS") else {
            return ALL_LEVELS.to_vec();
        };
        let want: Vec<&str> = v.split(',').map(str::trim).collect();
        let picked: Vec<Level> = ALL_LEVELS
            .into_iter()
            .filter(|l| {
                want.contains(&l.arg())
                    || (want.contains(&"exec") && !l.container())
                    || (want.contains(&"containers") && l.container())
            })
            .collect();
        assert!(
            !picked.is_empty(),
            "BPFNS_REDTEAM_LEVELS={v} names no level (exec, containers, or: {})",
            ALL_LEVELS.map(Level::arg).join(",")
        );
        picked
    })
}

impl Level {
    fn arg(self) -> &'static str {
        match self {
            Level::NoCaps => "none",
            Level::Bpf => "bpf",
            Level::Caps3 => "caps3",
            Level::Token => "token",
            Level::Userns => "userns",
            Level::Host => "host",
            Level::CtrPriv => "ctr-priv",
            Level::CtrBpf => "ctr-bpf",
            Level::CtrUserns => "ctr-userns",
            Level::CtrUnconf => "ctr-unconf",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Level::NoCaps => "no caps (uid 1000)",
            Level::Bpf => "CAP_BPF (uid 0)",
            Level::Caps3 => "BPF+PERFMON+NET_ADMIN (uid 0)",
            Level::Token => "BPF token in a userns",
            Level::Userns => "root of a userns",
            Level::Host => "host root",
            Level::CtrPriv => "container --privileged",
            Level::CtrBpf => "container --cap-add BPF",
            Level::CtrUserns => "container --userns=auto",
            Level::CtrUnconf => "container unconfined, NET_ADMIN+PERFMON",
        }
    }
    /// The level a victim of the same kind runs at (a token victim needs no token).
    fn victim(self) -> &'static str {
        match self {
            Level::Token => "userns",
            l => l.exec_equivalent().arg(),
        }
    }
    fn index(self) -> usize {
        ALL_LEVELS.iter().position(|l| *l == self).unwrap()
    }
    /// Started by podman (`bpfns-runc`) as a container of /t, not by `bpfns exec`.
    fn container(self) -> bool {
        matches!(
            self,
            Level::CtrPriv | Level::CtrBpf | Level::CtrUserns | Level::CtrUnconf
        )
    }
    /// The `bpfns exec` level with the same standing towards the host: for what is out of
    /// scope (a privileged container is host root).
    fn exec_equivalent(self) -> Level {
        match self {
            Level::CtrPriv => Level::Host,
            Level::CtrBpf => Level::Bpf,
            Level::CtrUserns => Level::Userns,
            Level::CtrUnconf => Level::Caps3,
            l => l,
        }
    }
    /// podman's options for this container level.
    fn podman_options(self) -> &'static [&'static str] {
        match self {
            Level::CtrPriv => &["--privileged"],
            Level::CtrBpf => &["--cap-add", "BPF"],
            Level::CtrUserns => &["--userns=auto", "--cap-add", "BPF"],
            Level::CtrUnconf => &[
                "--security-opt",
                "seccomp=unconfined",
                "--cap-add",
                "NET_ADMIN,PERFMON",
            ],
            _ => &[],
        }
    }
    /// The helper's `rt-as` level inside the container.
    fn in_container(self) -> &'static str {
        match self {
            Level::CtrUserns => "ctr-userns",
            _ => "ctr",
        }
    }
}

/// Why an attack that worked is out of scope (anchors in docs/threat-model.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Oos {
    /// Host root can undo mounts, read any file, ptrace anything.
    HostRoot,
    /// Processes that may ptrace each other (same uid and capability subset in one user
    /// namespace and one pid namespace) act as each other.
    PtracePeers,
    /// Plain reads of a pin someone else placed in the tenant's tree.
    AdminPin,
    /// CAP_NET_ADMIN over a network namespace shared with other tenants: netlink, not bpf().
    Netlink,
    /// uid 0 outside a user namespace, on the host's own files: owns them and most sysctls.
    HostUid0,
}

impl Oos {
    fn short(self) -> &'static str {
        match self {
            Oos::HostRoot => "host root",
            Oos::PtracePeers => "ptrace peers",
            Oos::AdminPin => "admin's pin",
            Oos::Netlink => "netlink",
            Oos::HostUid0 => "uid 0 on the host's files",
        }
    }
    fn anchor(self) -> &'static str {
        match self {
            Oos::HostRoot => "oos-host-root",
            Oos::PtracePeers => "oos-ptrace-peers",
            Oos::AdminPin => "oos-admin-pin",
            Oos::Netlink => "oos-netlink",
            Oos::HostUid0 => "oos-host-uid0",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Blocked,
    Allowed,
    OutOfScope(Oos),
    Escape,
    NotRun,
    Error,
}

#[derive(Clone, Debug)]
struct Cell {
    v: Verdict,
    why: String,
}

fn cell(v: Verdict, why: impl Into<String>) -> Cell {
    Cell { v, why: why.into() }
}

fn blocked(why: impl Into<String>) -> Cell {
    cell(Verdict::Blocked, why)
}

fn escape(why: impl Into<String>) -> Cell {
    cell(Verdict::Escape, why)
}

/// Out of scope for this reason at these levels.
type OosRule<'a> = (Oos, &'a [Level]);

/// A process to take fds from: what it is, (pid, fd, map id) if it started, and when taking
/// works, which levels are out of scope.
type Target<'a> = (&'a str, Option<(i32, i32, u32)>, &'a [OosRule<'a>]);

/// An attack that worked: out of scope for `oos` at the levels it names, an escape elsewhere.
fn worked(level: Level, oos: &[OosRule<'_>], why: impl Into<String>) -> Cell {
    let why = why.into();
    for (o, levels) in oos {
        if levels.contains(&level.exec_equivalent()) {
            return cell(Verdict::OutOfScope(*o), why);
        }
    }
    escape(why)
}

#[derive(Default)]
struct Matrix {
    rows: Vec<(String, Vec<Option<Cell>>)>,
    notes: Vec<String>,
}

impl Matrix {
    fn set(&mut self, attack: &str, level: Level, c: Cell) {
        let i = match self.rows.iter().position(|(a, _)| a == attack) {
            Some(i) => i,
            None => {
                self.rows
                    .push((attack.to_string(), vec![None; ALL_LEVELS.len()]));
                self.rows.len() - 1
            }
        };
        self.rows[i].1[level.index()] = Some(c);
    }

    fn failures(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (a, cells) in &self.rows {
            for l in levels() {
                match &cells[l.index()] {
                    Some(c) if matches!(c.v, Verdict::Escape | Verdict::Error) => {
                        v.push(format!("{:?} — {a} @ {}: {}", c.v, l.title(), c.why))
                    }
                    None => v.push(format!("missing — {a} @ {}", l.title())),
                    _ => {}
                }
            }
        }
        v
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("| attack |");
        for &l in levels() {
            s.push_str(&format!(" {} |", l.title()));
        }
        s.push_str("\n|---|");
        for _ in levels() {
            s.push_str("---|");
        }
        s.push('\n');
        for (a, cells) in &self.rows {
            // A `|` in an attack's name would end its table cell.
            s.push_str(&format!("| {} |", a.replace('|', "\\|")));
            for c in levels().iter().map(|l| &cells[l.index()]) {
                let t = match c.as_ref().map(|c| &c.v) {
                    Some(Verdict::Blocked) => "blocked".to_string(),
                    Some(Verdict::Allowed) => "allowed (by design)".to_string(),
                    Some(Verdict::OutOfScope(o)) => {
                        format!("out of scope ([{}](#{}))", o.short(), o.anchor())
                    }
                    Some(Verdict::Escape) => "**ESCAPE**".to_string(),
                    Some(Verdict::NotRun) => "not run".to_string(),
                    Some(Verdict::Error) => "**ERROR**".to_string(),
                    None => "—".to_string(),
                };
                s.push_str(&format!(" {t} |"));
            }
            s.push('\n');
        }
        s.push_str("\nEvidence (what each attempt got):\n\n");
        for (a, cells) in &self.rows {
            s.push_str(&format!("- **{a}**\n"));
            for l in levels() {
                if let Some(c) = &cells[l.index()] {
                    s.push_str(&format!("  - {}: {}\n", l.title(), c.why));
                }
            }
        }
        if !self.notes.is_empty() {
            s.push_str("\nNotes:\n\n");
            for n in &self.notes {
                s.push_str(&format!("- {n}\n"));
            }
        }
        s
    }
}

// ---- running members -------------------------------------------------------------------------

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// What one member run printed.
#[derive(Debug, Default)]
struct Run {
    out: String,
    err: String,
    status: Option<ExitStatus>,
    timed_out: bool,
    /// Why the attack was not run at all at this level (a container cannot apply it).
    na: Option<String>,
    /// Targets left out at this level (host pids a container cannot see), the rest was run.
    dropped: Vec<String>,
}

impl Run {
    /// Was the member (or, for the token level, its child) stopped by the kernel-side
    /// backstop's SIGKILL?
    fn killed(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        self.status
            .is_some_and(|s| s.signal() == Some(9) || s.code() == Some(137))
            || self.out.contains("signaled:9")
    }

    /// For a judgment over `targets`: `Some(not run)` when this level left every one out,
    /// else a note naming those it left out (empty when none).
    fn left_out(&self, targets: &[String]) -> (Option<Cell>, String) {
        let out: Vec<&String> = targets
            .iter()
            .filter(|t| self.dropped.contains(t))
            .collect();
        if out.is_empty() {
            return (None, String::new());
        }
        let why = format!(
            "not run in a container: {} (reached through host pids the container's pid \
             namespace does not show)",
            out.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if out.len() == targets.len() {
            (Some(cell(Verdict::NotRun, why)), String::new())
        } else {
            (None, format!("; {why}"))
        }
    }

    /// The value of the first `key=` line.
    fn get(&self, key: &str) -> Option<&str> {
        let p = format!("{key}=");
        self.out.lines().find_map(|l| l.strip_prefix(&p))
    }
    /// Every `prefix<rest>=value` line as (rest, value).
    fn all(&self, prefix: &str) -> Vec<(&str, &str)> {
        self.out
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|l| l.split_once('='))
            .collect()
    }
    fn brief(&self) -> String {
        let err: String = self
            .err
            .lines()
            .last()
            .unwrap_or("")
            .chars()
            .take(160)
            .collect();
        format!(
            "status {:?}{}; stderr: {err}",
            self.status.map(|s| s.to_string()),
            if self.timed_out { " (timed out)" } else { "" }
        )
    }
    /// Why this run cannot be judged, if it cannot: the token could not be set up (not run)
    /// or the harness failed.
    fn unusable(&self, level: Level, want_key: &str) -> Option<Cell> {
        if let Some(na) = &self.na {
            return Some(cell(Verdict::NotRun, na.clone()));
        }
        if level == Level::Token {
            if let Some(e) = self.get("token").filter(|t| t.starts_with("error")) {
                return Some(cell(
                    Verdict::NotRun,
                    format!("BPF token not obtained: {e}"),
                ));
            }
        }
        if self.timed_out {
            return Some(cell(Verdict::Error, format!("timed out; {}", self.brief())));
        }
        if self.get(want_key).is_none() && self.all(want_key).is_empty() {
            return Some(cell(
                Verdict::Error,
                format!("no {want_key} in output {:?}; {}", self.out, self.brief()),
            ));
        }
        None
    }
}

/// Collect a pipe's lines on a thread; the thread ends at EOF.
fn spawn_reader<R: Read + Send + 'static>(
    r: R,
) -> (Arc<Mutex<String>>, std::thread::JoinHandle<()>) {
    let s = Arc::new(Mutex::new(String::new()));
    let s2 = s.clone();
    let h = std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            let mut g = s2.lock().unwrap();
            g.push_str(&line);
            g.push('\n');
        }
    });
    (s, h)
}

/// A member running in the background (a victim), killed on drop.
struct Bg {
    child: std::process::Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// A container's name and its podman: removed on drop.
    ctr: Option<(String, Command)>,
}

impl Bg {
    fn expect(&mut self, key: &str) -> Option<String> {
        let p = format!("{key}=");
        while let Ok(l) = self.lines.recv_timeout(RUN_TIMEOUT) {
            if let Some(v) = l.strip_prefix(&p) {
                return Some(v.to_string());
            }
        }
        None
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        self.stdin.take();
        let deadline =
            Instant::now() + Duration::from_secs(if self.ctr.is_some() { 10 } else { 2 });
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some((name, mut podman)) = self.ctr.take() {
            let _ = podman.args(["rm", "-f", "-t", "0", &name]).output();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `victim=PID fd=FD id=ID` → (pid, fd, id).
fn victim_line(v: &str) -> Option<(i32, i32, u32)> {
    let mut pid = None;
    let mut fd = None;
    let mut id = None;
    for (i, part) in v.split(' ').enumerate() {
        let val = part.split_once('=').map_or(part, |(_, v)| v);
        match i {
            0 => pid = val.parse().ok(),
            1 => fd = val.parse().ok(),
            2 => id = val.parse().ok(),
            _ => {}
        }
    }
    Some((pid?, fd?, id?))
}

/// Wait for `child` to end (bounded) and collect what it printed. For a container
/// (`ctr`: its name and podman), a run that timed out is removed.
fn finish(mut child: std::process::Child, ctr: Option<(&str, &Podman)>) -> Run {
    let out = spawn_reader(child.stdout.take().unwrap());
    let err = spawn_reader(child.stderr.take().unwrap());
    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            timed_out = true;
            if let Some((name, p)) = ctr {
                let _ = p.command().args(["rm", "-f", "-t", "0", name]).output();
            }
            let _ = child.kill();
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // Let the readers drain to EOF (bounded: a leftover grandchild may hold the pipes).
    let drained = Instant::now() + Duration::from_secs(10);
    while !(out.1.is_finished() && err.1.is_finished()) && Instant::now() < drained {
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = out.0.lock().unwrap().clone();
    let err = err.0.lock().unwrap().clone();
    Run {
        out,
        err,
        status,
        timed_out,
        ..Default::default()
    }
}

impl Bg {
    fn new(mut child: std::process::Child, ctr: Option<(String, Command)>) -> Bg {
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Bg {
            stdin: child.stdin.take(),
            child,
            lines: rx,
            ctr,
        }
    }
}

// ---- containers ------------------------------------------------------------------------------

const IMAGE: &str = "localhost/bpfns-test";
const ARCHIVE: &str = "/var/lib/bpfns-containers/bpfns-test.tar";

/// Attacks whose first argument is a host pid: the container's pid namespace cannot see it.
const NEEDS_HOST_PID: [&str; 5] = [
    "rt-steal",
    "rt-ptrace",
    "rt-task-fd-query",
    "rt-fd-oracle",
    "rt-kill",
];

/// Attacks that try each of their arguments in turn (after `--` options).
const ONE_BY_ONE: [&str; 6] = [
    "rt-objget",
    "rt-read",
    "rt-symlink-objget",
    "rt-bind",
    "rt-probe",
    "rt-open",
];

/// `/proc/PID...` of a host process: nothing a container's pid namespace shows.
fn names_host_pid(a: &str) -> bool {
    a.split("/proc/")
        .skip(1)
        .any(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// The arguments an attack keeps in a container, and those left out (targets named by host
/// pid); `Err`: the attack cannot apply in a container at all, and why.
fn container_args(args: &[&str]) -> Result<(Vec<String>, Vec<String>), String> {
    let action = args.first().copied().unwrap_or("");
    if NEEDS_HOST_PID.contains(&action) {
        return Err(format!(
            "not applicable in a container: {action} names host pid {}, which the \
             container's pid namespace does not show",
            args.get(1).copied().unwrap_or("?")
        ));
    }
    let dropped: Vec<String> = args
        .iter()
        .filter(|a| names_host_pid(a))
        .map(|a| a.to_string())
        .collect();
    if dropped.is_empty() {
        return Ok((args.iter().map(|a| a.to_string()).collect(), dropped));
    }
    let kept: Vec<String> = args
        .iter()
        .filter(|a| !names_host_pid(a))
        .map(|a| a.to_string())
        .collect();
    if !ONE_BY_ONE.contains(&action) || kept.iter().skip(1).all(|a| a.starts_with("--")) {
        return Err(format!(
            "not applicable in a container: the targets {} are reached through host pids, \
             which the container's pid namespace does not show",
            dropped.join(", ")
        ));
    }
    Ok((kept, dropped))
}

/// The library directories the helper needs (it is linked dynamically), as `ldd` names
/// them, the loader's included.
fn helper_library_dirs() -> Vec<PathBuf> {
    let out = Command::new("ldd")
        .arg(helper_path())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut dirs = BTreeSet::new();
    for w in out.split_whitespace().filter(|w| w.starts_with('/')) {
        if let Some(d) = Path::new(w).parent() {
            dirs.insert(d.to_path_buf());
        }
    }
    dirs.into_iter().collect()
}

/// The OCI runtime wrapper, built (once per test process) with the cargo that runs the tests.
fn oci_wrapper() -> Result<PathBuf, String> {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let dir = exe.parent().ok_or("test binary has no folder")?;
            let dir = if dir.ends_with("deps") {
                dir.parent().ok_or("no target profile folder")?
            } else {
                dir
            };
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut c = Command::new(cargo);
            c.args(["build", "-q", "-p", "bpfns-oci", "--bin", "bpfns-oci"]);
            if dir.ends_with("release") {
                c.arg("--release");
            }
            let built = dir.join("bpfns-oci");
            match c.status() {
                Ok(s) if s.success() => Ok(built),
                _ if built.exists() => Ok(built),
                other => Err(format!(
                    "bpfns-oci could not be built ({other:?}): cargo build -p bpfns-oci"
                )),
            }
        })
        .clone()
}

/// How a container is started: a member of `ns` at `level`, in the network namespace `netns`
/// (else none), with stdin passed in if `interactive`, with the environment `env`.
#[derive(Clone, Copy)]
struct CtrRun<'a> {
    ns: &'a str,
    level: Level,
    netns: Option<&'a str>,
    interactive: bool,
    env: &'a [(&'a str, &'a str)],
}

impl<'a> CtrRun<'a> {
    fn new(ns: &'a str, level: Level) -> Self {
        CtrRun {
            ns,
            level,
            netns: None,
            interactive: false,
            env: &[],
        }
    }
}

/// podman with storage and configuration of its own under the scene's work folder (nothing
/// of the host's podman changes), `bpfns-runc` registered as a runtime that talks to the
/// scene's bpfnsd; containers and storage are removed on drop.
struct Podman {
    dir: PathBuf,
    /// `-v` options every container gets: the helper, its libraries, the scene's work folder
    /// (sockets victims serve on), bpfnsd's socket.
    mounts: Vec<String>,
    next: std::sync::atomic::AtomicU32,
}

impl Podman {
    /// For the bpfnsd whose API is `socket` and whose listener receiver is `receiver`.
    fn new(work: &Path, socket: &Path, receiver: &Path) -> Result<Podman, String> {
        if Command::new("podman").arg("--version").output().is_err() {
            return Err("not run: podman is not installed (scripts/containers/setup.sh)".into());
        }
        if !Path::new(ARCHIVE).exists() {
            return Err(format!(
                "not run: the test image {ARCHIVE} is missing (scripts/containers/setup.sh)"
            ));
        }
        let wrapper = oci_wrapper().map_err(|e| format!("not run: {e}"))?;
        let dir = work.join("podman");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut p = Podman {
            dir: dir.clone(),
            mounts: Vec::new(),
            next: std::sync::atomic::AtomicU32::new(0),
        };
        std::os::unix::fs::symlink(&wrapper, dir.join("bpfns-oci-runc"))
            .map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("bpfns-oci.toml"),
            format!("socket = {socket:?}\nseccomp_socket = {receiver:?}\n"),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=20000:20000\", \"nproc=16384:16384\"]\n\
                 [engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 [engine.runtimes]\n\
                 bpfns-runc = [\"{}/bpfns-oci-runc\"]\n",
                dir.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let out = p
            .command()
            .args([
                "import",
                "-q",
                "--change",
                "CMD [\"/bin/sh\"]",
                ARCHIVE,
                IMAGE,
            ])
            .output()
            .map_err(|e| format!("podman import: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "podman import: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let mut mounts = vec![format!("{}:/rt/helper:ro", helper_path().display())];
        for l in helper_library_dirs() {
            mounts.push(format!("{0}:{0}:ro", l.display()));
        }
        mounts.push(format!("{0}:{0}", work.display()));
        mounts.push(format!("{0}:{0}", socket.display()));
        p.mounts = mounts;
        Ok(p)
    }

    /// podman with this storage and configuration.
    fn command(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"));
        c
    }

    /// A fresh container name.
    fn name(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("rt{}-{n}", std::process::id())
    }

    /// `podman run` of `rt-as LEVEL args...` in a container as `how` says.
    fn run_command(&self, name: &str, how: &CtrRun<'_>, args: &[String]) -> Command {
        let CtrRun {
            ns,
            level,
            netns,
            interactive,
            env,
        } = *how;
        let mut c = self.command();
        c.args(["run", "--rm", "--name", name, "--runtime", "bpfns-runc"]);
        for (k, v) in env {
            c.args(["-e", &format!("{k}={v}")]);
        }
        c.arg(match netns {
            Some(n) => format!("--network=ns:{n}"),
            None => "--network=none".to_string(),
        });
        c.args(["--annotation", &format!("io.bpfns.namespace={ns}")]);
        if interactive {
            c.arg("-i");
        }
        c.args(level.podman_options());
        for m in &self.mounts {
            c.args(["-v", m]);
        }
        // The scene's cgroup directories, where an attack names one (under /rt-host: the
        // container's /sys/fs/cgroup is its own).
        let cg = cgroup2_mount();
        let mut shown = Vec::new();
        for a in args {
            if let Some(root) = &cg {
                if Path::new(a).starts_with(root) && Path::new(a).is_dir() {
                    c.args(["-v", &format!("{a}:/rt-host{a}")]);
                    shown.push(format!("/rt-host{a}"));
                    continue;
                }
            }
            shown.push(a.clone());
        }
        c.args([IMAGE, "/rt/helper", "rt-as", level.in_container()]);
        c.args(shown);
        c
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.command().args(["rm", "-a", "-f", "-t", "0"]).output();
        let _ = self.command().args(["system", "reset", "-f"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---- a scene: a daemon, namespaces, foreign objects ---------------------------------------

struct Scene {
    d: TestDaemon,
    admin: bpfns_client::Client,
    /// /tmp/bpfns-rt-<scene>-<pid>: sockets, setuid copies (0755).
    work: PathBuf,
    bpffs: BTreeMap<&'static str, PathBuf>,
    holders: Vec<Helper>,
    host_pins: Vec<PathBuf>,
    /// podman for the container levels, made at the first container attack.
    ctr: std::sync::OnceLock<Result<Podman, String>>,
}

impl Drop for Scene {
    fn drop(&mut self) {
        // Containers go first, while bpfnsd still runs.
        self.ctr.take();
        self.holders.clear();
        for p in &self.host_pins {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

impl Scene {
    fn new(name: &str) -> Scene {
        Self::new_with(name, |_| {})
    }

    /// A scene whose daemon's configuration `tweak` changes first.
    fn new_with(name: &str, tweak: impl FnOnce(&mut bpfnsd::Config)) -> Scene {
        let d = TestDaemon::start_with(&format!("rt-{name}"), tweak);
        let mut admin = d.client();
        let mut bpffs = BTreeMap::new();
        for p in ["/t", "/t/kid", "/s"] {
            // Bound to the whole cgroup tree: the rows of these namespaces test what the
            // ownership checks stop on a cgroup both can reach; scene "confine" tests the
            // confinement of attach targets with namespaces of its own.
            let n = admin
                .ns_create_bound(p, bpfns_model::Policy::DEFAULT, None, Some("/"))
                .unwrap();
            bpffs.insert(p, PathBuf::from(n.bpffs));
            // The victims' namespace /s may load tracing programs (its objects include
            // iterator and perf-event programs); the attacker's /t has the default policy.
            if p == "/s" {
                admin
                    .ns_set_policy(p, bpfns_model::Policy::tracing(true))
                    .unwrap();
            }
        }
        let work = PathBuf::from(format!("/tmp/bpfns-rt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scene {
            d,
            admin,
            work,
            bpffs,
            holders: Vec::new(),
            host_pins: Vec::new(),
            ctr: std::sync::OnceLock::new(),
        }
    }

    fn bpffs(&self, ns: &str) -> &Path {
        &self.bpffs[ns]
    }

    /// Start a helper with `args` as a task of `ns` (None: root); return its `key=` value.
    /// In /t and /t/kid, which deny tracing, it loads without perfmon power (CAP_SYS_ADMIN,
    /// CAP_PERFMON), as bpfns requires there.
    fn holder(&mut self, ns: Option<&str>, args: &[&str], key: &str) -> String {
        let mut all: Vec<&str> = Vec::new();
        if matches!(ns, Some("/t" | "/t/kid")) {
            all.push("no-perfmon");
        }
        all.extend(args);
        let mut h = Helper::spawn(&all);
        if let Some(ns) = ns {
            self.admin.enter(ns, h.pid).unwrap();
        }
        h.go();
        let v = h.expect(key);
        self.holders.push(h);
        v
    }

    /// Create `what` (map, prog, btf, link) as a task of `ns`; pinned at `pin` if given.
    fn create(&mut self, ns: Option<&str>, what: &str, pin: Option<&Path>) -> u32 {
        let p = pin.map(|p| p.to_string_lossy().into_owned());
        let mut args = vec!["create", what];
        if let Some(p) = &p {
            args.push(p);
        }
        self.holder(ns, &args, "id").parse().unwrap()
    }

    /// A map with BTF (readable as text through its pin), held by a task of `ns`.
    fn btf_map(&mut self, ns: Option<&str>) -> u32 {
        let v = self.holder(ns, &["rt-hold-map"], "victim");
        victim_line(&format!("victim={v}")).unwrap().2
    }

    /// Pin object `id` of `kind` at `path` (as host root: the "admin").
    fn pin(&mut self, kind: ObjectKind, id: u32, path: &Path) {
        let fd = sysbpf::fd_by_id(kind, id).unwrap();
        let _ = std::fs::remove_file(path);
        sysbpf::obj_pin(&fd, path).unwrap();
        if !path.starts_with(&self.d.dir) {
            self.host_pins.push(path.to_path_buf());
        }
    }

    /// A unique path in the host's bpffs for a root-owned pin.
    fn host_pin_path(&self, tag: &str) -> PathBuf {
        PathBuf::from(format!(
            "/sys/fs/bpf/bpfns-rt-{tag}-{}-{}",
            self.work.file_name().unwrap().to_string_lossy(),
            std::process::id()
        ))
    }

    fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(helper_path());
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// Run `args` as a member of `ns` to its end (bounded).
    fn run_in(&self, ns: &str, args: &[String]) -> Run {
        self.run_in_with(ns, args, bpfns_client::member::Options::default())
    }

    fn run_in_with(
        &self,
        ns: &str,
        args: &[String],
        options: bpfns_client::member::Options,
    ) -> Run {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null());
        match bpfns_client::member::spawn_with(&self.d.socket, ns, &mut cmd, options) {
            Ok(c) => finish(c.into_child(), None),
            Err(e) => Run {
                err: format!("member::spawn failed: {e}"),
                ..Default::default()
            },
        }
    }

    /// Run `action args...` at `level` as a member of /t.
    fn attack(&self, level: Level, args: &[&str]) -> Run {
        self.attack_in("/t", level, None, args)
    }

    /// Run `action args...` at `level` as a member of `ns`: through `bpfns exec`
    /// (`rt-as LEVEL`), or in a container of `ns` that podman starts with `bpfns-runc` (in the
    /// network namespace `netns` if given).
    fn attack_in(&self, ns: &str, level: Level, netns: Option<&str>, args: &[&str]) -> Run {
        if !level.container() {
            let mut v: Vec<String> = Vec::new();
            if let Some(n) = netns {
                // The member starts as host root: it enters the namespace, then takes on its
                // level.
                v.extend(["rt-in-netns".to_string(), n.to_string()]);
            }
            v.extend(["rt-as".to_string(), level.arg().to_string()]);
            v.extend(args.iter().map(|s| s.to_string()));
            return self.run_in(ns, &v);
        }
        if netns.is_some() && level == Level::CtrUserns {
            return Run {
                na: Some(
                    "not applicable in a container: a user-namespace container cannot join a \
                     network namespace of the host's user namespace (runc cannot mount sysfs \
                     for it: EPERM)"
                        .into(),
                ),
                ..Default::default()
            };
        }
        let (args, dropped) = match container_args(args) {
            Ok(v) => v,
            Err(na) => {
                return Run {
                    na: Some(na),
                    ..Default::default()
                }
            }
        };
        let p = match self.podman() {
            Ok(p) => p,
            Err(e) => {
                return Run {
                    na: Some(e.clone()),
                    ..Default::default()
                }
            }
        };
        let name = p.name();
        let mut cmd = p.run_command(
            &name,
            &CtrRun {
                netns,
                ..CtrRun::new(ns, level)
            },
            &args,
        );
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut r = match cmd.spawn() {
            Ok(c) => finish(c, Some((&name, p))),
            Err(e) => Run {
                err: format!("podman run: {e}"),
                ..Default::default()
            },
        };
        r.dropped = dropped;
        r
    }

    /// The scene's podman (private storage and configuration, `bpfns-runc` talking to the
    /// scene's bpfnsd), made at the first container attack.
    fn podman(&self) -> &Result<Podman, String> {
        self.ctr.get_or_init(|| {
            Podman::new(&self.work, &self.d.socket, &self.d.dir.join("seccomp.sock"))
        })
    }

    /// Start `args` as a member of `ns` in the background.
    fn start_in(&self, ns: &str, args: &[String]) -> Bg {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped()).stderr(Stdio::null());
        let child = bpfns_client::member::spawn(&self.d.socket, ns, &mut cmd).unwrap();
        Bg::new(child.into_child(), None)
    }

    /// Start `action args...` at `level` as a member of /t in the background: through
    /// `bpfns exec`, or in a container of /t (`Err`: why it cannot run).
    fn attack_bg(&self, level: Level, args: &[&str]) -> Result<Bg, String> {
        if !level.container() {
            let mut v = vec!["rt-as".to_string(), level.arg().to_string()];
            v.extend(args.iter().map(|s| s.to_string()));
            return Ok(self.start_in("/t", &v));
        }
        let (args, _) = container_args(args)?;
        let p = self.podman().as_ref().map_err(Clone::clone)?;
        let name = p.name();
        let mut cmd = p.run_command(
            &name,
            &CtrRun {
                interactive: true,
                ..CtrRun::new("/t", level)
            },
            &args,
        );
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| format!("podman run: {e}"))?;
        Ok(Bg::new(child, Some((name, p.command()))))
    }

    /// A peer of the attacker in /s: same privilege level, holding (fd) a map of /s that is
    /// pinned in /s's bpffs as `name`. Returns (process, pid, fd, map id).
    fn peer(&self, level: Level, name: &str) -> Option<(Bg, i32, i32, u32)> {
        let mut bg = self.start_in(
            "/s",
            &[
                "rt-victim".to_string(),
                level.victim().to_string(),
                name.to_string(),
            ],
        );
        let v = bg.expect("victim")?;
        let (pid, fd, id) = victim_line(&format!("victim={v}"))?;
        Some((bg, pid, fd, id))
    }

    /// Ids of `kind` the member of /t may see (its own and /t/kid's), from the kernel's
    /// ownership records.
    fn visible(&mut self, kind: ObjectKind) -> BTreeSet<u32> {
        self.admin
            .list(kind)
            .unwrap()
            .into_iter()
            .filter(|o| o.namespace == "/t" || o.namespace == "/t/kid")
            .map(|o| o.id)
            .collect()
    }

    /// The daemon's own kernel side: (kind, id, name) of its pinned maps, links and programs.
    fn bpfns_objects(&self) -> Vec<(ObjectKind, u32, String)> {
        let mut v = Vec::new();
        for m in bpfns_kernel::layout::MAPS {
            if let Ok(fd) = sysbpf::obj_get(&self.d.layout.map(m)) {
                let i = sysbpf::info::<sysbpf::bpf_map_info>(&fd).unwrap();
                v.push((ObjectKind::Map, i.id, m.to_string()));
                if i.btf_id != 0 {
                    v.push((ObjectKind::Btf, i.btf_id, format!("{m}'s BTF")));
                }
            }
        }
        for l in bpfns_kernel::layout::LINKS {
            if let Ok(fd) = sysbpf::obj_get(&self.d.layout.link(l)) {
                let i = sysbpf::info::<sysbpf::bpf_link_info>(&fd).unwrap();
                v.push((ObjectKind::Link, i.id, l.to_string()));
                v.push((ObjectKind::Prog, i.prog_id, format!("{l}'s program")));
            }
        }
        for p in bpfns_kernel::layout::TASK_ITERATORS {
            if let Ok(fd) = sysbpf::obj_get(&self.d.layout.prog(p)) {
                let i = sysbpf::info::<sysbpf::bpf_prog_info>(&fd).unwrap();
                v.push((ObjectKind::Prog, i.id, p.to_string()));
            }
        }
        v
    }
}

fn ids(s: &str) -> BTreeSet<u32> {
    s.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}

fn show(ids: &BTreeSet<u32>) -> String {
    let v: Vec<String> = ids.iter().take(12).map(u32::to_string).collect();
    if ids.len() > 12 {
        format!("{}, … ({} in all)", v.join(","), ids.len())
    } else {
        v.join(",")
    }
}

/// `opened:KIND:ID` → (kind, id).
fn opened(v: &str) -> Option<(String, u32)> {
    let rest = v.strip_prefix("opened:")?;
    let (k, id) = rest.rsplit_once(':')?;
    Some((k.to_string(), id.parse().ok()?))
}

/// Count results by their errno-ish text ("errno:2" → "ENOENT").
fn tally<'a>(vals: impl IntoIterator<Item = &'a str>) -> String {
    let mut m: BTreeMap<String, u32> = BTreeMap::new();
    for v in vals {
        *m.entry(errname(v)).or_default() += 1;
    }
    m.iter()
        .map(|(k, n)| format!("{k}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn errname(v: &str) -> String {
    let Some(n) = v.rsplit("errno:").next().filter(|_| v.contains("errno:")) else {
        return v.split(':').next().unwrap_or(v).to_string();
    };
    let pre = v.split("errno:").next().unwrap_or("");
    let name = match n.trim().parse::<i32>().unwrap_or(-1) {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        5 => "EIO",
        6 => "ENXIO",
        9 => "EBADF",
        13 => "EACCES",
        16 => "EBUSY",
        20 => "ENOTDIR",
        22 => "EINVAL",
        24 => "EMFILE",
        38 => "ENOSYS",
        40 => "ELOOP",
        95 => "EOPNOTSUPP",
        101 => "ENETUNREACH",
        111 => "ECONNREFUSED",
        _ => return v.to_string(),
    };
    format!("{pre}{name}")
}

// ---- scenes ---------------------------------------------------------------------------------

/// GET_NEXT_ID walks and GET_FD_BY_ID of foreign ids (four kinds); bpfns's own objects by id.
fn scene_ids(m: &mut Matrix) {
    let mut sc = Scene::new("ids");
    let mut foreign: BTreeMap<ObjectKind, Vec<u32>> = BTreeMap::new();
    for ns in [Some("/t"), Some("/t/kid"), Some("/s"), None] {
        for what in ["map", "prog", "btf", "link"] {
            let id = sc.create(ns, what, None);
            if matches!(ns, Some("/s") | None) {
                let k = match what {
                    "map" => ObjectKind::Map,
                    "prog" => ObjectKind::Prog,
                    "btf" => ObjectKind::Btf,
                    _ => ObjectKind::Link,
                };
                foreign.entry(k).or_default().push(id);
            }
        }
    }
    let own = sc.bpfns_objects();
    let mut specs: Vec<String> = Vec::new();
    for (k, list) in &foreign {
        for id in list {
            specs.push(format!("{}:{id}", k.name()));
            match k {
                ObjectKind::Map => specs.push(format!("map:{id}:ro")),
                ObjectKind::Btf => specs.push(format!("btf:{id}:tok")),
                _ => {}
            }
        }
    }
    let tamper: Vec<String> = own
        .iter()
        .map(|(k, id, _)| format!("{}:{id}", k.name()))
        .collect();
    for &level in levels() {
        let mut args: Vec<&str> = vec!["rt-probe"];
        args.extend(specs.iter().map(String::as_str));
        args.extend(tamper.iter().map(String::as_str));
        let r = sc.attack(level, &args);
        for kind in ObjectKind::ALL {
            let row = format!("GET_NEXT_ID walk: {}s", kind.name());
            if let Some(c) = r.unusable(level, &format!("ids.{}", kind.name())) {
                m.set(&row, level, c);
                continue;
            }
            let seen = ids(r.get(&format!("ids.{}", kind.name())).unwrap_or(""));
            let end = r.get(&format!("end.{}", kind.name())).unwrap_or("?");
            let visible = sc.visible(kind);
            let leaked: BTreeSet<u32> = seen.difference(&visible).copied().collect();
            let c = if !leaked.is_empty() {
                escape(format!("foreign ids listed: {}", show(&leaked)))
            } else {
                blocked(format!(
                    "{} ids listed, all visible ({}); walk ended with {}",
                    seen.len(),
                    show(&seen),
                    errname(&format!("errno:{end}"))
                ))
            };
            m.set(&row, level, c);
        }
        let results = r.all("open.");
        for kind in ObjectKind::ALL {
            let row = format!("GET_FD_BY_ID of foreign ids: {}s", kind.name());
            if let Some(c) = r.unusable(level, "open.") {
                m.set(&row, level, c);
                continue;
            }
            let mine: Vec<&(&str, &str)> = results
                .iter()
                .filter(|(spec, _)| {
                    spec.starts_with(&format!("{}:", kind.name()))
                        && specs.iter().any(|s| s == spec)
                })
                .collect();
            let got: Vec<String> = mine
                .iter()
                .filter(|(_, v)| v.starts_with("opened:"))
                .map(|(s, v)| format!("{s} -> {v}"))
                .collect();
            let c = if !got.is_empty() {
                escape(format!("opened: {}", got.join(", ")))
            } else if mine.is_empty() {
                cell(Verdict::Error, "no attempts recorded")
            } else {
                blocked(format!(
                    "{} attempts ({}): {}",
                    mine.len(),
                    mine.iter().map(|(s, _)| *s).collect::<Vec<_>>().join(" "),
                    tally(mine.iter().map(|(_, v)| *v))
                ))
            };
            m.set(&row, level, c);
        }
        let row = "bpfns's own maps/progs/links/BTF by id (task_ns to untag oneself, ...)";
        let mine: Vec<&(&str, &str)> = results
            .iter()
            .filter(|(spec, _)| tamper.iter().any(|s| s == spec))
            .collect();
        let got: Vec<String> = mine
            .iter()
            .filter(|(_, v)| v.starts_with("opened:"))
            .map(|(s, v)| format!("{s} -> {v}"))
            .collect();
        let c = if let Some(c) = r.unusable(level, "open.") {
            c
        } else if !got.is_empty() {
            escape(format!("opened: {}", got.join(", ")))
        } else {
            blocked(format!(
                "{} of bpfns's objects ({}): {}",
                mine.len(),
                own.iter()
                    .map(|(_, _, n)| n.as_str())
                    .filter(|n| !n.contains('\''))
                    .collect::<Vec<_>>()
                    .join(","),
                tally(mine.iter().map(|(_, v)| *v))
            ))
        };
        m.set(row, level, c);
    }
    high_bits_row(&mut sc, m, &specs);
}

/// The trapped commands with high bits set in `cmd` (`bpf(cmd | 1<<32, ...)`): the kernel
/// uses the low 32 bits, seccomp compares 64. Each must be trapped and answered as the plain
/// command is; a rule comparing all 64 bits would let the walk reach the kernel.
fn high_bits_row(sc: &mut Scene, m: &mut Matrix, specs: &[String]) {
    let row = "bpf(cmd | 1<<32): GET_NEXT_ID walks, GET_FD_BY_ID and OBJ_GET of foreign \
               objects with high bits set in cmd (answered as the plain cmd)";
    let smap = sc.create(Some("/s"), "map", None);
    let theirs = sc.bpffs("/t").join("theirs_hb");
    sc.pin(ObjectKind::Map, smap, &theirs);
    let mut args: Vec<&str> = vec!["rt-highbits"];
    args.extend(specs.iter().map(String::as_str));
    args.push("pin:/sys/fs/bpf/theirs_hb");
    for &level in levels() {
        let r = sc.attack(level, &args);
        let c =
            match r.unusable(level, "hb.ids.map") {
                Some(c) => c,
                None => {
                    let mut leaks = Vec::new();
                    let mut unlike = Vec::new();
                    let mut said = Vec::new();
                    for kind in ObjectKind::ALL {
                        let k = kind.name();
                        let hb = ids(r.get(&format!("hb.ids.{k}")).unwrap_or(""));
                        let plain = ids(r.get(&format!("ids.{k}")).unwrap_or(""));
                        let visible = sc.visible(kind);
                        let leaked: BTreeSet<u32> = hb.difference(&visible).copied().collect();
                        if !leaked.is_empty() {
                            leaks.push(format!("{k} walk listed foreign ids {}", show(&leaked)));
                        }
                        let (he, pe) = (
                            r.get(&format!("hb.end.{k}")).unwrap_or("?"),
                            r.get(&format!("end.{k}")).unwrap_or("?"),
                        );
                        if hb != plain || he != pe {
                            unlike.push(format!(
                                "{k} walk: {} ids ending {} (plain: {} ids ending {})",
                                hb.len(),
                                errname(&format!("errno:{he}")),
                                plain.len(),
                                errname(&format!("errno:{pe}"))
                            ));
                        }
                        said.push(format!(
                            "{k} walk {} ids, ends {}",
                            hb.len(),
                            errname(&format!("errno:{he}"))
                        ));
                    }
                    let mut opens = Vec::new();
                    for (key, plain_key) in
                        r.all("hb.open.")
                            .into_iter()
                            .map(|(s, v)| ((s.to_string(), v.to_string()), format!("open.{s}")))
                            .chain(r.all("hb.objget.").into_iter().map(|(p, v)| {
                                ((p.to_string(), v.to_string()), format!("objget.{p}"))
                            }))
                    {
                        let (spec, v) = key;
                        if v.starts_with("opened:") || v.starts_with("returned:") {
                            leaks.push(format!("{spec} -> {v}"));
                        }
                        let plain = r.get(&plain_key).unwrap_or("?");
                        if errname(plain) != errname(&v) {
                            unlike.push(format!(
                                "{spec}: {} (plain: {})",
                                errname(&v),
                                errname(plain)
                            ));
                        }
                        opens.push(errname(&v));
                    }
                    let mut text = format!(
                        "{}; {} foreign opens: {}",
                        said.join(", "),
                        opens.len(),
                        tally(opens.iter().map(String::as_str))
                    );
                    if level == Level::CtrUserns {
                        // Whether the container's /sys/fs/bpf gave the attack a token.
                        text.push_str(&format!(
                            "; BPF token from its /sys/fs/bpf: {}",
                            errname_words(r.get("token").unwrap_or("?"))
                        ));
                    }
                    if !leaks.is_empty() {
                        escape(format!("{}; {text}", leaks.join("; ")))
                    } else if opens.is_empty() {
                        cell(Verdict::Error, format!("no opens recorded; {text}"))
                    } else if !unlike.is_empty() {
                        cell(
                            Verdict::Error,
                            format!(
                                "answered unlike the plain command: {}; {text}",
                                unlike.join("; ")
                            ),
                        )
                    } else {
                        blocked(format!("{text} (as the plain commands)"))
                    }
                }
            };
        m.set(row, level, c);
    }
}

/// OBJ_GET and plain reads of foreign pins, by every path a member can think of.
fn scene_pins(m: &mut Matrix) {
    let mut sc = Scene::new("pins");
    let t = sc.bpffs("/t").to_path_buf();
    let s = sc.bpffs("/s").to_path_buf();
    let ns_dir = sc.d.dir.join("ns");
    // /t's own pinned map (for the race), /s's and the root's foreign ones (BTF: readable).
    sc.create(Some("/t"), "map", Some(&t.join("mine")));
    let smap = sc.btf_map(Some("/s"));
    sc.pin(ObjectKind::Map, smap, &s.join("smap"));
    let rv = sc.holder(None, &["rt-hold-map"], "victim");
    let (rpid, _, rmap) = victim_line(&format!("victim={rv}")).unwrap();
    let root_pin = sc.host_pin_path("root");
    sc.pin(ObjectKind::Map, rmap, &root_pin);
    // A foreign pin the member can reach: put into /t's tree by the admin.
    sc.pin(ObjectKind::Map, smap, &t.join("theirs"));
    let foreign: BTreeSet<u32> = [smap, rmap].into();
    let s_host = s.join("smap");
    let s_str = |p: &Path| p.to_string_lossy().into_owned();
    for &level in levels() {
        let name = format!("vmap_{}", level.arg());
        let Some((_peer, vpid, _vfd, vid)) = sc.peer(level, &name) else {
            for row in PIN_ROWS {
                m.set(
                    row,
                    level,
                    cell(Verdict::Error, "the peer victim did not start"),
                );
            }
            continue;
        };
        let mut foreign = foreign.clone();
        foreign.insert(vid);
        let peer_dir = format!("/proc/{vpid}/root/sys/fs/bpf");
        let peer_pin = format!("{peer_dir}/{name}");
        // A root-namespace process (host root, the host's mount namespace).
        let host_via_1 = format!("/proc/{rpid}/root{}", root_pin.display());
        let judge_open = |r: &Run, paths: &[String], key: &str| -> Cell {
            if let Some(c) = r.unusable(level, key) {
                return c;
            }
            let (none, note) = r.left_out(paths);
            if let Some(c) = none {
                return c;
            }
            let vals: Vec<(&str, &str)> = r
                .all(&format!("{key}."))
                .into_iter()
                .filter(|(p, _)| paths.iter().any(|x| x == p))
                .collect();
            let got: Vec<String> = vals
                .iter()
                .filter_map(|(p, v)| opened(v).map(|(k, id)| (p, k, id)))
                .map(|(p, k, id)| format!("{p} -> {k} {id}"))
                .collect();
            if !got.is_empty() {
                escape(format!("opened: {}", got.join(", ")))
            } else {
                blocked(format!(
                    "{}{note}",
                    vals.iter()
                        .map(|(p, v)| format!("{p}: {}", errname(v)))
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            }
        };
        // OBJ_GET by path.
        let direct = vec![
            s_str(&s_host),
            s_str(&root_pin),
            s_str(&sc.d.layout.map("obj_owner")),
        ];
        let admin_placed = vec!["/sys/fs/bpf/theirs".to_string()];
        let proc_paths = vec![peer_pin.clone(), host_via_1.clone()];
        let mut args: Vec<&str> = vec!["rt-objget"];
        args.extend(direct.iter().map(String::as_str));
        args.extend(admin_placed.iter().map(String::as_str));
        args.extend(proc_paths.iter().map(String::as_str));
        let r = sc.attack(level, &args);
        m.set(PIN_ROWS[0], level, judge_open(&r, &direct, "objget"));
        m.set(PIN_ROWS[1], level, judge_open(&r, &admin_placed, "objget"));
        // /proc/PID/root, and a directory fd opened through it (BPF_F_PATH_FD).
        let at = sc.attack(level, &["rt-objget-at", &peer_dir, &name]);
        let mut c = judge_open(&r, &proc_paths, "objget");
        if c.v == Verdict::Blocked {
            let at_key = format!("{peer_dir}/{name}");
            let c2 = judge_open(&at, &[at_key], "objgetat");
            c = if c2.v == Verdict::Blocked {
                blocked(format!(
                    "{}; via a dir fd (BPF_F_PATH_FD): {}",
                    c.why, c2.why
                ))
            } else {
                c2
            };
        }
        m.set(PIN_ROWS[2], level, c);
        // Symlinks in its own bpffs pointing at foreign pins.
        let targets = vec![
            s_str(&s_host),
            s_str(&root_pin),
            peer_pin.clone(),
            host_via_1.clone(),
            "/sys/fs/bpf/theirs".to_string(),
        ];
        let mut args = vec!["rt-symlink-objget"];
        args.extend(targets.iter().map(String::as_str));
        let r = sc.attack(level, &args);
        m.set(PIN_ROWS[3], level, judge_open(&r, &targets, "symlink"));
        // Bind mounts (after trying to uncover the hidden bpffs directory).
        let pairs = [
            format!("{}:smap", s_str(&s)),
            format!("{peer_dir}:{name}"),
            format!(
                "/proc/{rpid}/root{}:{}",
                root_pin.parent().unwrap().display(),
                root_pin.file_name().unwrap().to_string_lossy()
            ),
        ];
        let umount = format!("--umount={}", ns_dir.display());
        let mut args = vec!["rt-bind", umount.as_str()];
        args.extend(pairs.iter().map(String::as_str));
        let r = sc.attack(level, &args);
        let (none, note) = r.left_out(&pairs);
        let c = match r.unusable(level, "bind.").or(none) {
            Some(c) => c,
            None => {
                let vals = r.all("bind.");
                let opened_any: Vec<String> = vals
                    .iter()
                    .filter(|(_, v)| v.contains("objget:opened:"))
                    .map(|(p, v)| format!("{p}: {v}"))
                    .collect();
                if !opened_any.is_empty() {
                    escape(format!(
                        "OBJ_GET through a bind mount: {}",
                        opened_any.join("; ")
                    ))
                } else {
                    blocked(format!(
                        "{}{note}",
                        vals.iter()
                            .map(|(p, v)| format!("{p}: {}", errname_words(v)))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ))
                }
            }
        };
        m.set(PIN_ROWS[4], level, c);
        // A path swapped between the supervisor's check and its use.
        let r = sc.attack(level, &["rt-race-path", "mine", "theirs", "400"]);
        let c = match r.unusable(level, "race") {
            Some(c) => c,
            None => {
                let v = r.get("race").unwrap();
                let foreign_hits: Vec<&str> = v
                    .split(';')
                    .filter(|x| {
                        opened(x.split('x').next().unwrap_or(""))
                            .is_some_and(|(_, id)| foreign.contains(&id))
                    })
                    .collect();
                if foreign_hits.is_empty() {
                    blocked(format!("results: {}", errname_words(v)))
                } else {
                    escape(format!("foreign pin opened: {v}"))
                }
            }
        };
        m.set(PIN_ROWS[5], level, c);
        // Plain open/read, no bpf() at all.
        let reads_admin = vec!["/sys/fs/bpf/theirs".to_string()];
        let reads_peer = vec![peer_pin.clone(), format!("{peer_pin}_iter")];
        let reads_host = vec![s_str(&s_host), host_via_1.clone()];
        let reads_debug = vec![
            "/sys/fs/bpf/maps.debug".to_string(),
            "/sys/fs/bpf/progs.debug".to_string(),
        ];
        let mut args = vec!["rt-read"];
        for v in [&reads_admin, &reads_peer, &reads_host, &reads_debug] {
            args.extend(v.iter().map(String::as_str));
        }
        let r = sc.attack(level, &args);
        let judge_read = |paths: &[String], oos: &[OosRule<'_>]| -> Cell {
            if let Some(c) = r.unusable(level, "read.") {
                return c;
            }
            let (none, note) = r.left_out(paths);
            if let Some(c) = none {
                return c;
            }
            let vals: Vec<(&str, &str)> = r
                .all("read.")
                .into_iter()
                .filter(|(p, _)| paths.iter().any(|x| x == p))
                .collect();
            let got: Vec<String> = vals
                .iter()
                .filter(|(_, v)| v.starts_with("bytes:") && !v.starts_with("bytes:0"))
                .map(|(p, v)| format!("{p} -> {v}"))
                .collect();
            let text = vals
                .iter()
                .map(|(p, v)| format!("{p}: {}", errname(v)))
                .collect::<Vec<_>>()
                .join("; ")
                + &note;
            if got.is_empty() {
                blocked(text)
            } else {
                worked(level, oos, format!("read: {}", got.join(", ")))
            }
        };
        let uid0 = [Level::Bpf, Level::Caps3, Level::Host];
        m.set(
            PIN_ROWS[6],
            level,
            judge_read(&reads_admin, &[(Oos::AdminPin, &uid0)]),
        );
        m.set(
            PIN_ROWS[7],
            level,
            judge_read(
                &reads_peer,
                &[
                    (Oos::HostRoot, &[Level::Host]),
                    (Oos::PtracePeers, &[Level::NoCaps, Level::Bpf, Level::Caps3]),
                ],
            ),
        );
        m.set(
            PIN_ROWS[8],
            level,
            judge_read(&reads_host, &[(Oos::HostRoot, &[Level::Host])]),
        );
        m.set(PIN_ROWS[9], level, judge_read(&reads_debug, &[]));
    }
}

const PIN_ROWS: [&str; 10] = [
    "OBJ_GET of foreign pins by host path (/s's bpffs, host bpffs, bpfns's pin root)",
    "OBJ_GET of a foreign pin placed in the member's own bpffs",
    "OBJ_GET through /proc/PID/root (peer in /s, root-namespace process), also as a BPF_F_PATH_FD dir fd",
    "OBJ_GET through symlinks in its own bpffs",
    "OBJ_GET through bind mounts (after trying to unmount the cover)",
    "OBJ_GET of a path swapped between check and use (400 tries)",
    "plain open/read of a foreign pin placed in its own bpffs",
    "plain open/read of a peer's pinned map and iterator link through /proc/PID/root",
    "plain open/read of foreign pins by host path / /proc/PID/root of a root-namespace process",
    "bpffs preload iterators (maps.debug, progs.debug) in its bpffs",
];

/// Words of a result with errnos named.
fn errname_words(v: &str) -> String {
    v.split([' ', ';'])
        .map(|w| {
            if w.contains("errno:") {
                errname(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Mounting a new bpffs instance.
fn scene_mount(m: &mut Matrix) {
    let mut sc = Scene::new("mount");
    let _ = sc.create(Some("/s"), "map", Some(&sc.bpffs("/s").join("smap")));
    let row = "mount a new bpffs instance (and read what is in it)";
    for &level in levels() {
        let r = sc.attack(level, &["rt-mount-bpffs"]);
        let c = match r.unusable(level, "mount") {
            Some(c) => c,
            None => {
                let mount = r.get("mount").unwrap();
                if mount != "ok" {
                    blocked(format!("mount: {}", errname(mount)))
                } else {
                    let opened_any: Vec<String> = r
                        .all("objget.")
                        .iter()
                        .filter(|(_, v)| v.starts_with("opened:"))
                        .map(|(p, v)| format!("{p} -> {v}"))
                        .collect();
                    let reads: Vec<String> = r
                        .all("read.")
                        .iter()
                        .filter(|(_, v)| v.starts_with("bytes:") && !v.starts_with("bytes:0"))
                        .map(|(p, v)| format!("{p} -> {v}"))
                        .collect();
                    if !opened_any.is_empty() || !reads.is_empty() {
                        escape(format!(
                            "in the new instance: {} {}",
                            opened_any.join(", "),
                            reads.join(", ")
                        ))
                    } else {
                        blocked(format!(
                            "mounted: a new, empty instance (entries: {}; reads: {})",
                            r.get("entries").unwrap_or(""),
                            r.all("read.")
                                .iter()
                                .map(|(p, v)| format!("{p} {}", errname(v)))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    }
                }
            }
        };
        m.set(row, level, c);
    }
}

/// BPF_PROG_QUERY and BPF_TASK_FD_QUERY leaking foreign program ids.
fn scene_query(m: &mut Matrix) {
    let mut sc = Scene::new("query");
    let cg_root = std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        });
    // Perf events on tracepoints need tracefs: mounted here if it is not (idempotent).
    let _ = bpfns_sys::fs::ensure_tracefs();
    let tp = std::fs::read_to_string("/sys/kernel/tracing/events/syscalls/sys_enter_getpid/id")
        .ok()
        .map(|s| s.trim().to_string());
    let q_row = "BPF_PROG_QUERY on a cgroup with foreign programs attached";
    let t_row = "BPF_TASK_FD_QUERY of foreign processes' perf-event programs";
    let cg = cg_root.map(|r| r.join(format!("bpfns-rt-query-{}", std::process::id())));
    let mut foreign: BTreeSet<u32> = BTreeSet::new();
    if let Some(cg) = &cg {
        let _ = std::fs::remove_dir(cg);
        std::fs::create_dir(cg).unwrap();
        let cgs = cg.to_string_lossy().into_owned();
        for ns in [Some("/t"), Some("/s"), None] {
            let v = sc.holder(ns, &["cgroup-link", &cgs], "id");
            let id: u32 = v.split(' ').next().unwrap().parse().unwrap();
            if ns != Some("/t") {
                foreign.insert(id);
            }
        }
    }
    let mut perf: Vec<(i32, u32, u32)> = Vec::new();
    if let Some(tp) = &tp {
        for ns in [Some("/s"), None] {
            let mut h = Helper::spawn(&["perf-tp", tp]);
            if let Some(ns) = ns {
                sc.admin.enter(ns, h.pid).unwrap();
            }
            h.go();
            let v = h.expect("id");
            let mut it = v.split(' ');
            let prog: u32 = it.next().unwrap().parse().unwrap();
            let fd: u32 = it
                .next()
                .and_then(|x| x.strip_prefix("fd="))
                .unwrap()
                .parse()
                .unwrap();
            perf.push((h.pid, fd, prog));
            foreign.insert(prog);
            sc.holders.push(h);
        }
    }
    for &level in levels() {
        match &cg {
            None => m.set(q_row, level, cell(Verdict::NotRun, "no cgroup2 mount")),
            Some(cg) => {
                let cgs = cg.to_string_lossy().into_owned();
                let r = sc.attack(level, &["prog-query", &cgs, "0", "64"]);
                let c = match r.unusable(level, "cnt") {
                    Some(c) => c,
                    None => {
                        let mut seen = ids(r.get("ids").unwrap_or(""));
                        seen.remove(&0);
                        let cnt: u32 = r.get("cnt").and_then(|c| c.parse().ok()).unwrap_or(0);
                        let visible = sc.visible(ObjectKind::Prog);
                        let leaked: BTreeSet<u32> = seen.difference(&visible).copied().collect();
                        let shown_visible = seen.len() as u32;
                        if let Some(e) = r.get("errno").filter(|_| seen.is_empty()) {
                            blocked(format!("refused: {}", errname(&format!("errno:{e}"))))
                        } else if !leaked.is_empty() {
                            escape(format!("foreign program ids: {}", show(&leaked)))
                        } else if cnt > shown_visible && r.get("errno").is_none() {
                            escape(format!("count {cnt} reveals foreign programs"))
                        } else {
                            blocked(format!(
                                "ids [{}] (all visible), cnt {cnt}, {}",
                                show(&seen),
                                r.get("ret")
                                    .map(|v| format!("ret {v}"))
                                    .or_else(|| r
                                        .get("errno")
                                        .map(|e| errname(&format!("errno:{e}"))))
                                    .unwrap_or_default()
                            ))
                        }
                    }
                };
                m.set(q_row, level, c);
            }
        }
        if perf.is_empty() {
            m.set(
                t_row,
                level,
                cell(Verdict::NotRun, "no tracepoint sys_enter_getpid"),
            );
            continue;
        }
        let mut results = Vec::new();
        let mut leak = Vec::new();
        let mut err = None;
        for (pid, fd, prog) in &perf {
            let r = sc.attack(
                level,
                &["rt-task-fd-query", &pid.to_string(), &fd.to_string()],
            );
            if let Some(c) = r
                .unusable(level, "errno")
                .filter(|_| r.get("prog_id").is_none())
            {
                err = Some(c);
                break;
            }
            if let Some(p) = r.get("prog_id") {
                leak.push(format!("pid {pid} fd {fd}: prog {p} (owner's id {prog})"));
            } else {
                results.push(errname(&format!("errno:{}", r.get("errno").unwrap())));
            }
        }
        let c = if let Some(c) = err {
            c
        } else if !leak.is_empty() {
            escape(leak.join("; "))
        } else {
            blocked(format!(
                "/s's and the root's perf-event programs: {}",
                results.join(", ")
            ))
        };
        m.set(t_row, level, c);
    }
    drop(sc);
    if let Some(cg) = cg {
        let _ = std::fs::remove_dir(cg);
    }
}

/// BPF iterators over maps, programs and links, loaded by the member.
fn scene_iter(m: &mut Matrix) {
    let mut sc = Scene::new("iter");
    let mut fixture: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for ns in [Some("/t"), Some("/s"), None] {
        for what in ["map", "prog", "link"] {
            let id = sc.create(ns, what, None);
            if ns != Some("/t") {
                fixture.entry(what).or_default().push(id);
            }
        }
    }
    for &level in levels() {
        let r = sc.attack(level, &["rt-iter"]);
        let own: BTreeSet<u32> = r
            .all("own.")
            .iter()
            .filter_map(|(_, v)| v.parse().ok())
            .collect();
        for (k, kind) in [
            ("map", ObjectKind::Map),
            ("prog", ObjectKind::Prog),
            ("link", ObjectKind::Link),
        ] {
            let row = format!("BPF iterator iter/bpf_{k} loaded by the member");
            if r.get(&format!("iter.{k}")).is_none() && r.killed() {
                m.set(
                    &row,
                    level,
                    blocked(
                        "the kernel side stopped the member (SIGKILL) when it loaded a \
                         tracing-class program: its namespace's policy does not allow tracing"
                            .to_string(),
                    ),
                );
                continue;
            }
            let c = match r.unusable(level, &format!("iter.{k}")) {
                Some(c) => c,
                None => {
                    let v = r.get(&format!("iter.{k}")).unwrap();
                    match v.strip_prefix("ids:") {
                        None => blocked(errname_words(v)),
                        Some(list) => {
                            let seen = ids(list);
                            let visible = sc.visible(kind);
                            let leaked: BTreeSet<u32> = seen
                                .iter()
                                .filter(|id| !visible.contains(id) && !own.contains(id))
                                .copied()
                                .collect();
                            if leaked.is_empty() {
                                blocked(format!("ran; listed only visible ids {}", show(&seen)))
                            } else {
                                let fx: Vec<String> = fixture
                                    .get(k)
                                    .map(|v| {
                                        v.iter()
                                            .filter(|id| leaked.contains(id))
                                            .map(u32::to_string)
                                            .collect()
                                    })
                                    .unwrap_or_default();
                                escape(format!(
                                    "the iterator listed {} foreign ids (every {k} in the kernel), \
                                     including /s's and the root's [{}]: {}",
                                    leaked.len(),
                                    fx.join(","),
                                    show(&leaked)
                                ))
                            }
                        }
                    }
                }
            };
            m.set(&row, level, c);
        }
    }
}

/// Leaving the filter: nested listener, setuid exec, CLONE_FILES, 32-bit entry points,
/// threads racing the supervisor, callers killed mid-request, fd exhaustion.
fn scene_filter(m: &mut Matrix) {
    let mut sc = Scene::new("filter");
    let t = sc.bpffs("/t").to_path_buf();
    let own = sc.create(Some("/t"), "map", Some(&t.join("mine")));
    let smap = sc.create(Some("/s"), "map", None);
    let rmap = sc.create(None, "map", None);
    let foreign: BTreeSet<u32> = [smap, rmap].into();
    // A setuid-root copy of the helper (the member's mount namespace sees /tmp).
    let suid = sc.work.join("helper-suid");
    std::fs::copy(helper_path(), &suid).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let suid_s = suid.to_string_lossy().into_owned();
    let fspec = [format!("map:{smap}"), format!("map:{rmap}")];
    for &level in levels() {
        // A nested seccomp listener.
        let r = sc.attack(level, &["install-listener"]);
        let c = match r
            .unusable(level, "errno")
            .filter(|_| r.get("installed").is_none())
        {
            Some(c) => c,
            None => match r.get("installed") {
                // A container the engine's profile refuses bpf() altogether (its ERRNO rule
                // outranks any listener's USER_NOTIF): a listener of its own answers no bpf().
                Some(_) if level.container() => {
                    let l = sc.attack(level, &["rt-list"]);
                    match l.get("end.map") {
                        Some("1") => blocked(
                            "a listener of its own was installed (bpfns-oci keeps the engine's \
                             profile for a container without CAP_BPF or CAP_SYS_ADMIN), but it \
                             answers no bpf(): the engine's profile refuses bpf() to this \
                             container (EPERM; an ERRNO rule outranks USER_NOTIF)",
                        ),
                        other => escape(format!(
                            "a second listener was installed, and bpf() reaches the filters \
                             (MAP_GET_NEXT_ID walk ended {other:?})"
                        )),
                    }
                }
                Some(_) => escape("a second listener was installed"),
                None => blocked(format!(
                    "seccomp(NEW_LISTENER): {}",
                    errname(&format!("errno:{}", r.get("errno").unwrap()))
                )),
            },
        };
        m.set("a nested seccomp listener", level, c);
        // exec of a setuid-root program, which then lists and opens.
        let r = sc.attack(
            level,
            &["exec-cmd", &suid_s, "rt-probe", &fspec[0], &fspec[1]],
        );
        let c = match r.unusable(level, "ids.map") {
            Some(c) => c,
            None => {
                let seen = ids(r.get("ids.map").unwrap_or(""));
                let visible = sc.visible(ObjectKind::Map);
                let leaked: BTreeSet<u32> = seen.difference(&visible).copied().collect();
                let opens: Vec<(&str, &str)> = r.all("open.");
                let got: Vec<String> = opens
                    .iter()
                    .filter(|(_, v)| v.starts_with("opened:"))
                    .map(|(s, v)| format!("{s} -> {v}"))
                    .collect();
                let who = format!(
                    "after exec: uid {} capeff {}",
                    r.get("uid").unwrap_or("?"),
                    r.get("capeff").unwrap_or("?")
                );
                if !leaked.is_empty() || !got.is_empty() {
                    escape(format!(
                        "{who}; listed {} opened {}",
                        show(&leaked),
                        got.join(",")
                    ))
                } else {
                    blocked(format!(
                        "{who}; still supervised: walk shows {} visible ids, foreign opens {}",
                        seen.len(),
                        tally(opens.iter().map(|(_, v)| *v))
                    ))
                }
            }
        };
        m.set("exec of a setuid-root program", level, c);
        // clone(CLONE_FILES).
        let r = sc.attack(level, &["clone-files"]);
        let c = match r.unusable(level, "child") {
            Some(c) => c,
            None => match r.get("child").unwrap() {
                "signaled:9" => blocked("the child sharing the fd table was killed (SIGKILL)"),
                other => escape(format!("the child sharing the fd table ran: {other}")),
            },
        };
        m.set("clone(CLONE_FILES) child sharing the fd table", level, c);
        // 32-bit entry points.
        for (action, row) in [
            ("bpf-int80", "bpf() through the ia32 entry point (int 0x80)"),
            ("bpf-x32", "bpf() through the x32 entry point"),
        ] {
            let r = sc.attack(level, &[action]);
            let c = match r
                .unusable(level, "errno")
                .filter(|_| r.get("ret").is_none())
            {
                Some(c) => c,
                None => match r.get("ret") {
                    Some(v) => escape(format!("the call reached the kernel: ret {v}")),
                    None => blocked(format!(
                        "refused: {}",
                        errname(&format!("errno:{}", r.get("errno").unwrap()))
                    )),
                },
            };
            m.set(row, level, c);
        }
        // Threads racing the supervisor: the attr's id flips between own and foreign.
        let r = sc.attack(
            level,
            &["rt-race-attr", &own.to_string(), &smap.to_string(), "2000"],
        );
        let c = match r.unusable(level, "race") {
            Some(c) => c,
            None => {
                let v = r.get("race").unwrap();
                if v.contains(" foreign:0 ") {
                    blocked(format!("2000 calls: {v}"))
                } else {
                    escape(format!("a foreign map was opened: {v}"))
                }
            }
        };
        m.set(
            "threads racing the supervisor (attr rewritten during the call)",
            level,
            c,
        );
        // Callers killed in the middle of a request (their ids free for reuse).
        let r = sc.attack(level, &["rt-kill-mid", "40"]);
        let alive = sc.admin.hello().is_ok();
        let c = match r.unusable(level, "killed") {
            Some(c) => c,
            None => {
                let seen = ids(r.get("ids.map").unwrap_or(""));
                let visible = sc.visible(ObjectKind::Map);
                let leaked: BTreeSet<u32> = seen.difference(&visible).copied().collect();
                let end = r.get("end.map").unwrap_or("?");
                if !leaked.is_empty() {
                    escape(format!("foreign ids after the kills: {}", show(&leaked)))
                } else if !alive || !(end == "2" || end == "1") {
                    cell(
                        Verdict::Error,
                        format!("daemon alive: {alive}; walk after the kills ended with {end}"),
                    )
                } else {
                    blocked(format!(
                        "{} callers killed mid-call; then a walk: {} visible ids, ends {}; daemon serving",
                        r.get("killed").unwrap(),
                        seen.len(),
                        errname(&format!("errno:{end}"))
                    ))
                }
            }
        };
        m.set(
            "a caller killed (pid freed for reuse) during its request",
            level,
            c,
        );
        // fd exhaustion in the target.
        let before = daemon_fds();
        let r = sc.attack(
            level,
            &["rt-fd-exhaust", &own.to_string(), "/sys/fs/bpf/mine"],
        );
        std::thread::sleep(Duration::from_millis(200));
        let after = daemon_fds();
        let c = match r.unusable(level, "after") {
            Some(c) => c,
            None => {
                let full = [r.get("full_fdbyid").unwrap(), r.get("full_objget").unwrap()];
                let text = format!(
                    "with a full fd table: GET_FD_BY_ID {}, OBJ_GET {}; with room again: {}; daemon fds {before} -> {after}",
                    errname(full[0]),
                    errname(full[1]),
                    errname(r.get("after").unwrap())
                );
                let leaked_foreign = full
                    .iter()
                    .filter_map(|v| opened(v))
                    .any(|(_, id)| foreign.contains(&id));
                if leaked_foreign {
                    escape(text)
                } else if after > before + 2 {
                    cell(Verdict::Error, format!("the daemon leaked fds: {text}"))
                } else {
                    blocked(text)
                }
            }
        };
        m.set("fd exhaustion in the target", level, c);
    }
}

/// Open fds of this process (the daemon runs in it).
fn daemon_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Taking fds from processes outside: pidfd_getfd, ptrace; SCM_RIGHTS on purpose.
fn scene_steal(m: &mut Matrix) {
    let mut sc = Scene::new("steal");
    let v = sc.holder(None, &["rt-hold-map"], "victim");
    let (rpid, rfd, rid) = victim_line(&format!("victim={v}")).unwrap();
    let sock = sc.work.join("scm.sock");
    let sock_s = sock.to_string_lossy().into_owned();
    let mut server = sc.start_in("/s", &["rt-serve-fd".to_string(), sock_s.clone()]);
    let served: u32 = server.expect("serving").unwrap().parse().unwrap();
    let host = [(Oos::HostRoot, &[Level::Host][..])];
    let peers = [
        (Oos::HostRoot, &[Level::Host][..]),
        (
            Oos::PtracePeers,
            &[Level::NoCaps, Level::Bpf, Level::Caps3][..],
        ),
    ];
    for &level in levels() {
        let name = format!("vmap_{}", level.arg());
        let peer = sc.peer(level, &name);
        let targets: [Target<'_>; 2] = [
            (
                "a root-namespace process (host root)",
                Some((rpid, rfd, rid)),
                &host,
            ),
            (
                "a peer in /s with the same credentials",
                peer.as_ref().map(|(_, p, f, i)| (*p, *f, *i)),
                &peers,
            ),
        ];
        for (what, target, oos) in targets {
            let steal_row = format!("pidfd_getfd of {what}");
            let ptrace_row = format!("ptrace of {what}");
            let Some((pid, fd, id)) = target else {
                m.set(
                    &steal_row,
                    level,
                    cell(Verdict::Error, "victim did not start"),
                );
                m.set(
                    &ptrace_row,
                    level,
                    cell(Verdict::Error, "victim did not start"),
                );
                continue;
            };
            let r = sc.attack(level, &["rt-steal", &pid.to_string(), &fd.to_string()]);
            let c = match r.unusable(level, "steal") {
                Some(c) => c,
                None => {
                    let v = r.get("steal").unwrap();
                    match opened(v) {
                        Some((k, got)) => worked(
                            level,
                            oos,
                            format!("took {k} {got} (the victim's map {id}) from pid {pid}"),
                        ),
                        None => blocked(errname(v)),
                    }
                }
            };
            m.set(&steal_row, level, c);
            let r = sc.attack(level, &["rt-ptrace", &pid.to_string()]);
            let c = match r.unusable(level, "ptrace") {
                Some(c) => c,
                None => match r.get("ptrace").unwrap() {
                    "ok" => worked(level, oos, format!("PTRACE_SEIZE of pid {pid} succeeded")),
                    v => blocked(format!("PTRACE_SEIZE: {}", errname(v))),
                },
            };
            m.set(&ptrace_row, level, c);
            let path = format!("/proc/{pid}/fd/{fd}");
            let r = sc.attack(level, &["rt-read", &path]);
            let c = match r.unusable(level, "read.") {
                Some(c) => c,
                None => {
                    let v = r.get(&format!("read.{path}")).unwrap_or("missing");
                    if v.starts_with("errno:") || v.starts_with("read-errno:") {
                        blocked(format!("open {path}: {}", errname(v)))
                    } else {
                        worked(level, oos, format!("reopened {path}: {v}"))
                    }
                }
            };
            m.set(
                &format!("open /proc/PID/fd/N (a bpf fd) of {what}"),
                level,
                c,
            );
        }
        drop(peer);
        let _ = std::fs::remove_file(sc.bpffs("/s").join(&name));
        // SCM_RIGHTS from a process of /s that sends on purpose.
        let r = sc.attack(level, &["rt-scm", &sock_s]);
        let c = match r.unusable(level, "scm") {
            Some(c) => c,
            None => {
                let v = r.get("scm").unwrap();
                match opened(v) {
                    Some((_, id)) if id == served => cell(
                        Verdict::Allowed,
                        format!("received /s's map {id}, sent on purpose; not killed"),
                    ),
                    // Received, but bpf() (its info) is refused here: the engine's profile.
                    None if level.container() && v.starts_with("opened:map:?1") => cell(
                        Verdict::Allowed,
                        "received a map fd, sent on purpose; not killed (its id is unreadable: \
                         the engine's profile refuses bpf() to this container, EPERM)",
                    ),
                    _ => cell(
                        Verdict::Error,
                        format!("an fd sent on purpose did not arrive: {v}"),
                    ),
                }
            }
        };
        m.set(
            "SCM_RIGHTS from a foreign process that sends on purpose",
            level,
            c,
        );
    }
    let _ = server.stdin.take().map(|mut s| s.flush());
}

/// Namespaces a member may not create, enter or delete; the daemon's own pins and socket.
fn scene_daemon(m: &mut Matrix) {
    let mut sc = Scene::new("daemon");
    let smap = sc.create(Some("/s"), "map", None);
    let sock = sc.d.socket.to_string_lossy().into_owned();
    let obj_paths = [
        sc.d.layout.map("task_ns"),
        sc.d.layout.map("ns_table"),
        sc.d.layout.link("on_sys_exit"),
        sc.d.layout.link("iter_maps"),
    ];
    let obj_paths: Vec<String> = obj_paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let read_paths: Vec<String> = [sc.d.layout.link("iter_maps"), sc.d.layout.map("obj_owner")]
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let rename_path = sc.d.layout.link("on_fork").to_string_lossy().into_owned();
    let host_only = [(Oos::HostRoot, &[Level::Host][..])];
    for &level in levels() {
        let r = sc.attack(level, &["rt-client", &sock, &smap.to_string()]);
        let ops = r.all("op.");
        let get = |k: &str| ops.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let judge = |names: &[&str], must_fail: bool| -> Cell {
            if let Some(c) = r.unusable(level, "op.") {
                return c;
            }
            let mut bad = Vec::new();
            let mut text = Vec::new();
            for n in names {
                let v = get(n).unwrap_or("missing");
                text.push(format!("{n}: {v}"));
                if must_fail && v.starts_with("ok") {
                    bad.push(format!("{n}: {v}"));
                }
            }
            if bad.is_empty() {
                blocked(text.join("; "))
            } else {
                escape(bad.join("; "))
            }
        };
        m.set(
            "create a namespace outside its subtree (/x, /s/x)",
            level,
            judge(&["create/rt_x", "create/s/rt_x"], true),
        );
        m.set(
            "delete a sibling, its own or the root namespace",
            level,
            judge(&["delete/s", "delete/t", "delete/"], true),
        );
        m.set(
            "allow tracing programs to itself, a sibling, the root, or a child or new child \
             beyond its own policy",
            level,
            judge(
                &[
                    "policy/t",
                    "policy/s",
                    "policy/",
                    "policy/t/kid",
                    "create-wider/t/rt_w",
                ],
                true,
            ),
        );
        m.set(
            "move itself or a child into the parent or a sibling",
            level,
            judge(
                &[
                    "enter-self/",
                    "enter-self/s",
                    "enter-child/",
                    "enter-child/s",
                ],
                true,
            ),
        );
        let c = match r.unusable(level, "op.") {
            Some(c) => c,
            None => {
                let listed = ids(get("list-maps").unwrap_or("").trim_start_matches("ok:"));
                let visible = sc.visible(ObjectKind::Map);
                let leaked: BTreeSet<u32> = listed.difference(&visible).copied().collect();
                let mut bad = Vec::new();
                if !leaked.is_empty() {
                    bad.push(format!("list shows {}", show(&leaked)));
                }
                for n in ["getfd-foreign", "show-foreign"] {
                    if get(n).is_some_and(|v| v.starts_with("ok")) {
                        bad.push(format!("{n}: {}", get(n).unwrap()));
                    }
                }
                if bad.is_empty() {
                    let list = match get("list-maps") {
                        Some(v) if v.starts_with("ok") => format!("{} visible maps", listed.len()),
                        other => other.unwrap_or("?").to_string(),
                    };
                    blocked(format!(
                        "list: {list}; getfd /s's map: {}; show: {}",
                        get("getfd-foreign").unwrap_or("?"),
                        get("show-foreign").unwrap_or("?")
                    ))
                } else {
                    escape(bad.join("; "))
                }
            }
        };
        m.set(
            "the daemon's API: list/show/get_fd of foreign objects",
            level,
            c,
        );
        let c = match r.unusable(level, "op.") {
            Some(c) => c,
            None => {
                let sup = get("supervise-foreign").unwrap_or("missing");
                let after = get("after-junk").unwrap_or("missing");
                if sup.starts_with("ok") {
                    escape(format!("the daemon took a listener for pid 1: {sup}"))
                } else if !after.starts_with("ok") || sc.admin.hello().is_err() {
                    cell(
                        Verdict::Error,
                        format!("the daemon stopped answering: {after}"),
                    )
                } else {
                    blocked(format!(
                        "supervise(pid 1, not a listener): {sup}; after junk frames: {after}; hello: {}",
                        get("hello").unwrap_or("?")
                    ))
                }
            }
        };
        m.set(
            "the daemon's socket: junk frames, a listener for someone else's process",
            level,
            c,
        );
        // bpfns's own pins: OBJ_GET, plain reads, renaming (unpinning).
        let cover = "--umount=/sys/fs/bpf".to_string();
        let mut args = vec!["rt-objget", cover.as_str()];
        args.extend(obj_paths.iter().map(String::as_str));
        let r = sc.attack(level, &args);
        let c = match r.unusable(level, "objget.") {
            Some(c) => c,
            None => {
                let vals = r.all("objget.");
                let got: Vec<String> = vals
                    .iter()
                    .filter(|(_, v)| v.starts_with("opened:"))
                    .map(|(p, v)| format!("{p} -> {v}"))
                    .collect();
                if got.is_empty() {
                    blocked(format!(
                        "umount of its /sys/fs/bpf: {}; {}",
                        errname(r.get("umount./sys/fs/bpf").unwrap_or("?")),
                        tally(vals.iter().map(|(_, v)| *v))
                    ))
                } else {
                    escape(got.join(", "))
                }
            }
        };
        m.set(
            "OBJ_GET of bpfns's pins (task_ns, ns_table, links)",
            level,
            c,
        );
        let mut args = vec!["rt-read", cover.as_str()];
        args.extend(read_paths.iter().map(String::as_str));
        let r = sc.attack(level, &args);
        let c = match r.unusable(level, "read.") {
            Some(c) => c,
            None => {
                let vals = r.all("read.");
                let got: Vec<String> = vals
                    .iter()
                    .filter(|(_, v)| v.starts_with("bytes:") && !v.starts_with("bytes:0"))
                    .map(|(p, v)| format!("{p} -> {v}"))
                    .collect();
                if got.is_empty() {
                    blocked(tally(vals.iter().map(|(_, v)| *v)))
                } else {
                    worked(level, &host_only, format!("read: {}", got.join(", ")))
                }
            }
        };
        m.set(
            "plain read of bpfns's pins (iter_maps link, obj_owner map)",
            level,
            c,
        );
        let r = sc.attack(level, &["rt-rename", cover.as_str(), &rename_path]);
        let c = match r.unusable(level, "rename.") {
            Some(c) => c,
            None => {
                let vals = r.all("rename.");
                let got: Vec<String> = vals
                    .iter()
                    .filter(|(_, v)| v.starts_with("ok"))
                    .map(|(p, v)| format!("{p} -> {v}"))
                    .collect();
                if got.is_empty() {
                    blocked(tally(vals.iter().map(|(_, v)| *v)))
                } else {
                    worked(
                        level,
                        &host_only,
                        format!("renamed (could unpin) {}", got.join(", ")),
                    )
                }
            }
        };
        m.set("rename/unpin bpfns's pinned links", level, c);
        // The daemon's socket and database, as the member's mount namespace shows them.
        let r = sc.attack(level, &["rt-rename", &sock]);
        let c = match r.unusable(level, "rename.") {
            Some(c) => c,
            None => {
                let v = r.get(&format!("rename.{sock}")).unwrap_or("missing");
                if v.starts_with("ok") {
                    worked(
                        level,
                        &host_only,
                        format!(
                            "renamed {sock} away and back: the member can unlink the daemon's \
                             socket and bind its own in its place (clients, an admin's \
                             `bpfns exec` included, would then talk to it)"
                        ),
                    )
                } else {
                    blocked(errname(v))
                }
            }
        };
        m.set("replace the daemon's socket", level, c);
        let state = [
            sc.d.dir.join("state"),
            sc.d.dir.join("state").join("bpfns.redb"),
        ];
        let state: Vec<String> = state
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let mut args = vec!["rt-writable"];
        args.extend(state.iter().map(String::as_str));
        let r = sc.attack(level, &args);
        let c = match r.unusable(level, "writable.") {
            Some(c) => c,
            None => {
                let vals = r.all("writable.");
                let got: Vec<String> = vals
                    .iter()
                    .filter(|(_, v)| v.starts_with("ok"))
                    .map(|(p, v)| format!("{p}: {v}"))
                    .collect();
                if got.is_empty() {
                    blocked(tally(vals.iter().map(|(_, v)| *v)))
                } else {
                    worked(
                        level,
                        &host_only,
                        format!(
                            "the registry database is writable from inside the namespace \
                             (namespaces, policy and the kernel table are restored from it \
                             at the next start): {}",
                            got.join("; ")
                        ),
                    )
                }
            }
        };
        m.set("write the daemon's state (registry database)", level, c);
    }
    // Nothing the members asked for happened.
    let names: Vec<String> = sc
        .admin
        .ns_list()
        .unwrap()
        .into_iter()
        .map(|n| n.path)
        .collect();
    let expected = ["/", "/s", "/t", "/t/kid"];
    if names.iter().any(|n| !expected.contains(&n.as_str())) {
        m.notes
            .push(format!("namespaces after the daemon scene: {names:?}"));
    }
}

/// A counter of the kernel side, as bpfnsd reports it (`stopped_hijack`, ...).
fn kernel_counter(sc: &Scene, name: &str) -> u64 {
    sc.d.daemon()
        .kernel
        .all_stats()
        .unwrap()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, v)| v)
}

/// Taking over another namespace's object by racing the ownership recorder: holding a fd of
/// /s's (or the root's) object, received on purpose by SCM_RIGHTS (a read-only one for maps),
/// the member loops `close(n); create` on one thread and `dup2(foreign, n)` on another, so
/// that the recorder finds the foreign object on the new object's descriptor. Blocked when the
/// foreign object never changes owner and its owner still sees it.
fn scene_hijack(m: &mut Matrix) {
    // Room for the attacker's many objects: its quota would stop it first otherwise.
    let mut sc = Scene::new_with("hijack", |c| c.max_objects = 100_000);
    let ns_s = sc.admin.ns_show("/s").unwrap().id;
    // (kind, owner path, socket, id)
    let mut victims: Vec<(ObjectKind, &str, String, u32)> = Vec::new();
    let kinds = [
        ("map", ObjectKind::Map, "4096", "20"),
        ("prog", ObjectKind::Prog, "20000", "20"),
        ("btf", ObjectKind::Btf, "1024", "20"),
        ("link", ObjectKind::Link, "1024", "20"),
    ];
    for (what, kind, _, _) in kinds {
        for owner in [Some("/s"), None] {
            let sock = sc
                .work
                .join(format!("hj-{what}-{}.sock", owner.map_or("root", |_| "s")))
                .to_string_lossy()
                .into_owned();
            let id: u32 = sc
                .holder(owner, &["rt-serve-obj", what, &sock], "serving")
                .parse()
                .unwrap();
            victims.push((kind, owner.unwrap_or("/"), sock, id));
        }
    }
    for &level in levels() {
        for (what, kind, rounds, secs) in kinds {
            let row = format!(
                "take over a foreign {what} by racing the ownership recorder (close+create against \
                 dup2 of a received fd; /s's and the root's)"
            );
            let mut evidence = Vec::new();
            let mut verdict = Verdict::Blocked;
            for (_, owner, sock, id) in victims.iter().filter(|v| v.0 == kind) {
                let stopped = kernel_counter(&sc, "stopped_hijack");
                let r = sc.attack(level, &["rt-hijack", sock, what, rounds, secs]);
                let stopped = kernel_counter(&sc, "stopped_hijack") - stopped;
                if let Some(c) = r.unusable(level, "foreign") {
                    if c.v == Verdict::NotRun && verdict == Verdict::Blocked {
                        verdict = Verdict::NotRun;
                    } else if c.v != Verdict::NotRun {
                        verdict = Verdict::Error;
                    }
                    evidence.push(c.why);
                    continue;
                }
                let want = if *owner == "/" {
                    bpfns_model::NsId::ROOT
                } else {
                    ns_s
                };
                let now = sc.d.daemon().kernel.owner(kind, *id).unwrap();
                let seen = sc.admin.show(kind, *id).map(|o| o.namespace);
                let outcome = if r.killed() && stopped > 0 {
                    format!(
                        "won the race and was stopped (SIGKILL) for it: {}",
                        r.get("foreign").unwrap_or("?")
                    )
                } else if r.killed() {
                    "stopped (SIGKILL), not for a hijack".to_string()
                } else {
                    format!("{} (never won)", r.get("race").unwrap_or("?"))
                };
                if now != want || seen.as_deref().ok() != Some(*owner) {
                    verdict = Verdict::Escape;
                    evidence.push(format!(
                        "{owner}'s {what} {id} is now owned by ns {now} (listed: {seen:?}); {outcome}"
                    ));
                } else {
                    evidence.push(format!(
                        "{owner}'s {what} {id} via {}: {outcome}; still {owner}'s, listed for it",
                        r.get("via").unwrap_or(what)
                    ));
                }
            }
            m.set(&row, level, cell(verdict, evidence.join("; ")));
        }
    }
}

/// Filling the ownership table: the member creates and closes maps as fast as it can (300,000,
/// or for 5 s). Blocked when a map a member of /s creates afterwards is recorded as /s's
/// (listed, opened by id from /s, pinned in /s's bpffs) and the table never overflowed.
fn scene_fill(m: &mut Matrix) {
    let mut sc = Scene::new("fill");
    let row = "fill the ownership table (create and close maps in a loop, 300,000 or 5 s)";
    for &level in levels() {
        let full = kernel_counter(&sc, "ownership_map_full");
        let quota = ["stopped_quota", "refused_quota"].map(|c| kernel_counter(&sc, c));
        let r = sc.attack(level, &["rt-fill", "300000", "5"]);
        let unusable = if r.killed() {
            None
        } else {
            r.unusable(level, "fill")
        };
        let c = if let Some(c) = unusable {
            c
        } else {
            let stopped = ["stopped_quota", "refused_quota"]
                .iter()
                .zip(quota)
                .map(|(n, b)| kernel_counter(&sc, n) - b)
                .sum::<u64>();
            let attack = match r.get("fill") {
                Some(f) => format!("{f} (stopped or refused at its limit: {stopped})"),
                None => format!("stopped (SIGKILL) at its limit: {stopped}"),
            };
            let t = sc.admin.ns_show("/t").unwrap();
            // A member of /s, afterwards.
            let pin = format!("fill_{}", level.arg());
            let mut bg = sc.start_in(
                "/s",
                &[
                    "create".to_string(),
                    "map".to_string(),
                    format!("/sys/fs/bpf/{pin}"),
                ],
            );
            let id: Option<u32> = bg.expect("id").and_then(|v| v.parse().ok());
            let full_after = kernel_counter(&sc, "ownership_map_full");
            match id {
                None => cell(Verdict::Error, format!("{attack}; /s's member made no map")),
                Some(id) => {
                    let owner = sc.admin.show(ObjectKind::Map, id).map(|o| o.namespace);
                    let opened = sc.run_in("/s", &["rt-open".to_string(), format!("map:{id}")]);
                    let opened = opened
                        .get(&format!("open.map:{id}"))
                        .unwrap_or("?")
                        .to_string();
                    let pinned = sc.bpffs("/s").join(&pin).exists();
                    let why = format!(
                        "{attack}; /t uses {:?} of {:?} records; then /s's map {id}: owner {owner:?}, \
                         opened by id from /s: {}, pinned: {pinned}; ownership_map_full {full} -> {full_after}",
                        t.records,
                        t.max_objects,
                        errname(&opened)
                    );
                    if owner.as_deref().ok() == Some("/s")
                        && opened.starts_with("opened:")
                        && pinned
                        && full_after == full
                    {
                        blocked(why)
                    } else {
                        escape(why)
                    }
                }
            }
        };
        m.set(row, level, c);
    }
}

// ---- programs that read kernel memory; attach, detach, replace; other id paths; netlink;
// ---- a member's own listener; fds raced out past the backstop

/// Run `f(args)` as a root helper outside namespaces (no tag, no filter); its `key=` value.
fn as_root(args: &[&str], key: &str) -> Option<String> {
    let mut h = Helper::spawn(args);
    h.go();
    let v = h.maybe(key);
    drop(h);
    v
}

/// Run `args` as a root helper outside namespaces and return every `key=value` line it
/// prints, joined: the control that shows what an attack gets where bpfns does not stand.
fn control(args: &[&str]) -> String {
    let mut h = Helper::spawn(args);
    h.go();
    let mut out = Vec::new();
    while let Some(l) = h.line() {
        if l.contains('=') {
            out.push(errname_words(&l));
        }
    }
    out.join("; ")
}

/// `PID fd=FD id=ID` from a holder's `victim=` value.
fn victim_of(v: &str) -> Option<(i32, i32, u32)> {
    victim_line(&format!("victim={v}"))
}

/// A socket filter that walks kernel memory with bpf_probe_read_kernel to a sibling's map value.
fn scene_kread(m: &mut Matrix) {
    let mut sc = Scene::new("kread");
    let row = "socket filter reading a sibling's map value through kernel memory \
               (bpf_get_current_task, bpf_probe_read_kernel)";
    let v = sc.holder(Some("/s"), &["rt-hold-secret"], "victim");
    let Some((pid, fd, _)) = victim_of(&v) else {
        for &l in levels() {
            m.set(row, l, cell(Verdict::Error, "the victim did not start"));
        }
        return;
    };
    let (ps, fs) = (pid.to_string(), fd.to_string());
    // The same program, unconfined: the attack works where nothing stops it.
    let control = as_root(&["rt-kread", &ps, &fs], "kread").unwrap_or_default();
    for &level in levels() {
        let r = sc.attack(level, &["rt-kread", &ps, &fs]);
        let c = match r.unusable(level, "kread") {
            Some(c) => c,
            None => {
                let v = r.get("kread").unwrap();
                let who = format!("capeff {}", r.get("capeff").unwrap_or("?"));
                if v.starts_with("secret:") {
                    escape(format!("{who}; read {v}"))
                } else if !control.starts_with("secret:") {
                    cell(
                        Verdict::Error,
                        format!("the attack does not work unconfined either ({control}): {v}"),
                    )
                } else {
                    blocked(format!(
                        "{who}; {}; (host root outside namespaces: {control})",
                        errname_words(v)
                    ))
                }
            }
        };
        m.set(row, level, c);
    }
}

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0)) >= (major, minor)
}

/// A process of the test's own (root, outside namespaces) that `f` attacks; and whether it
/// died of SIGKILL. It is stopped with SIGTERM after `f` in any case, so the way it ended
/// says whether the attack reached it, with no timing involved.
fn with_victim<T>(f: impl FnOnce(&str) -> T) -> (T, bool) {
    use std::os::unix::process::ExitStatusExt;
    let mut v = Command::new("sleep")
        .arg("600")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = v.id() as i32;
    let out = f(&pid.to_string());
    let _ = bpfns_sys::testhooks::kill(pid, libc::SIGTERM);
    let st = v.wait().unwrap();
    (out, st.signal() == Some(libc::SIGKILL))
}

/// A cgroup_skb program that bpfnsd loads for the member calls the generic kfuncs
/// bpf_task_from_pid and bpf_send_signal_task to SIGKILL a process of the host.
fn scene_kfunc(m: &mut Matrix) {
    let sc = Scene::new("kfunc");
    let row = "SIGKILL a host process from a cgroup_skb program through kfuncs \
               (bpf_task_from_pid, bpf_send_signal_task; run with BPF_PROG_TEST_RUN)";
    // The same program, unconfined: the attack works where nothing stops it.
    let (control, control_killed) =
        with_victim(|pid| as_root(&["rt-kfunc-kill", pid], "kfunc").unwrap_or_default());
    if control == "no-kfuncs-in-btf" {
        for &l in levels() {
            m.set(
                row,
                l,
                cell(
                    Verdict::NotRun,
                    "this kernel has no bpf_send_signal_task (Linux 6.13+): nothing to block",
                ),
            );
        }
        return;
    }
    m.notes.push(format!(
        "control, kfunc kill by host root outside namespaces: {control}; the victim {}",
        if control_killed {
            "was killed (SIGKILL)"
        } else {
            "survived"
        }
    ));
    for &level in levels() {
        let (r, killed) = with_victim(|pid| sc.attack(level, &["rt-kfunc-kill", pid]));
        let c = match r.unusable(level, "kfunc") {
            Some(c) => c,
            None => {
                let v = r.get("kfunc").unwrap();
                let who = format!("capeff {}", r.get("capeff").unwrap_or("?"));
                if killed {
                    escape(format!("{who}; {v}; the victim was killed"))
                } else if !control_killed {
                    cell(
                        Verdict::Error,
                        format!("the attack does not work unconfined either ({control}): {v}"),
                    )
                } else {
                    blocked(format!(
                        "{who}; {}; the victim survived (host root outside namespaces: \
                         {control}, the victim killed)",
                        errname_words(v)
                    ))
                }
            }
        };
        m.set(row, level, c);
    }
}

/// Every `key=value` line a root helper outside namespaces prints.
fn root_lines(args: &[&str]) -> Vec<String> {
    let mut h = Helper::spawn(args);
    h.go();
    let mut out = Vec::new();
    while let Some(l) = h.line() {
        if l.contains('=') {
            out.push(l);
        }
    }
    out
}

/// An id no object has (ids count up from 1; this is near the kernel's INT_MAX bound).
const ABSENT_ID: u32 = 0x7fff_fff0;

/// The LINK_CREATE oracle in `lines` (`oracle.HOOK.KIND.ID=R`): whether a foreign id's
/// answer ever differs from the absent id's at any hook, and what each hook answered.
fn oracle_judged(lines: &[(String, String)], foreign: &[u32]) -> (bool, String) {
    let mut differs = false;
    let mut parts = Vec::new();
    for hook in ["cgroup", "tcx"] {
        if let Some((_, v)) = lines.iter().find(|(k, _)| *k == format!("oracle.{hook}")) {
            parts.push(format!("{hook}: our program {}", errname(v)));
            continue;
        }
        for kind in ["prog", "link"] {
            let get = |id: u32| {
                lines
                    .iter()
                    .find(|(k, _)| *k == format!("oracle.{hook}.{kind}.{id}"))
                    .map_or("missing".to_string(), |(_, v)| errname(v))
            };
            let absent = get(ABSENT_ID);
            let got: Vec<String> = foreign.iter().map(|&id| get(id)).collect();
            differs |= got.iter().any(|g| *g != absent);
            parts.push(format!(
                "{hook} {kind}: foreign {} / absent {absent}",
                got.join(",")
            ));
        }
    }
    (differs, parts.join("; "))
}

/// BPF_LINK_CREATE with a relative id (tcx, cgroups) as an existence and type oracle on
/// every program and link id.
fn scene_linkoracle(m: &mut Matrix) {
    let mut sc = Scene::new("linkoracle");
    let row = "BPF_LINK_CREATE before a foreign program or link by id (BPF_F_BEFORE|BPF_F_ID, \
               tcx and cgroup) as an existence oracle: foreign ids answered as absent ones";
    if !kernel_at_least(6, 6) {
        for &l in levels() {
            m.set(
                row,
                l,
                cell(
                    Verdict::NotRun,
                    "relative attachment by id (tcx, cgroup mprog) came with Linux 6.6",
                ),
            );
        }
        return;
    }
    let Some(root) = cgroup2_mount() else {
        for &l in levels() {
            m.set(row, l, cell(Verdict::NotRun, "no cgroup2 mount"));
        }
        return;
    };
    let cg = root.join(format!("bpfns-rt-linkoracle-{}", std::process::id()));
    let _ = std::fs::remove_dir(&cg);
    std::fs::create_dir(&cg).unwrap();
    let cgs = cg.to_string_lossy().into_owned();
    // /s's and the root's programs and links.
    let foreign = [
        sc.create(Some("/s"), "prog", None),
        sc.create(Some("/s"), "link", None),
        sc.create(None, "prog", None),
        sc.create(None, "link", None),
    ];
    let ids: Vec<String> = foreign
        .iter()
        .chain([&ABSENT_ID])
        .map(u32::to_string)
        .collect();
    let mut args = vec!["rt-link-oracle", cgs.as_str()];
    args.extend(ids.iter().map(String::as_str));
    let pairs = |lines: Vec<String>| -> Vec<(String, String)> {
        lines
            .into_iter()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect()
    };
    let control = pairs(root_lines(&args));
    let (control_differs, control_says) = oracle_judged(&control, &foreign);
    m.notes.push(format!(
        "control, LINK_CREATE id oracle by host root outside namespaces: {control_says}"
    ));
    for &level in levels() {
        let r = sc.attack(level, &args);
        let c = if let Some(c) = r.unusable(level, "oracle.") {
            c
        } else {
            let lines = pairs(r.out.lines().map(str::to_string).collect());
            let (differs, says) = oracle_judged(&lines, &foreign);
            // A plain link of its own that the kernel lets it make (cgroup links want
            // CAP_NET_ADMIN, as without bpfns) is the member's: it opens again by id (bpfnsd
            // made it and recorded it as /t's).
            let own: Vec<String> = lines
                .iter()
                .filter_map(|(k, v)| Some(format!("{}:{v}", k.strip_prefix("oracle.own.")?)))
                .collect();
            let says = format!("{says}; own links: {}", own.join(", "));
            let broken = own
                .iter()
                .any(|o| o.contains(":linked:") && !o.ends_with(":reopened"))
                || (level == Level::Host
                    && own.iter().filter(|o| o.ends_with(":reopened")).count() < 2);
            if differs {
                escape(format!("foreign ids answered unlike an absent one: {says}"))
            } else if !control_differs {
                cell(
                    Verdict::Error,
                    format!("the oracle does not work unconfined either ({control_says}): {says}"),
                )
            } else if broken {
                cell(
                    Verdict::Error,
                    format!("its own link does not work: {says}"),
                )
            } else {
                blocked(format!(
                    "{says} (host root outside namespaces: {control_says})"
                ))
            }
        };
        m.set(row, level, c);
    }
    let _ = std::fs::remove_dir(&cg);
}

/// Programs attached at a cgroup's ingress hook: `PROG:LINK` pairs (as root).
fn cg_ids(cg: &Path) -> Vec<(u32, u32)> {
    let v = as_root(&["rt-query", &cg.to_string_lossy(), "0"], "ids").unwrap_or_default();
    v.split(',')
        .filter_map(|p| p.split_once(':'))
        .filter_map(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .collect()
}

/// Detaching and replacing a sibling's cgroup programs, legacy and multi; links.
fn scene_attach(m: &mut Matrix) {
    let mut sc = Scene::new("attach");
    let rows = [
        "PROG_DETACH of a sibling's legacy cgroup_skb program (no program fd needed)",
        "PROG_ATTACH over a sibling's legacy cgroup_skb program (replaces it)",
        "BPF_F_REPLACE and PROG_DETACH of a sibling's multi-attached program (its fd received by SCM_RIGHTS)",
        "LINK_CREATE over a sibling's legacy attachment (occupied hook, BPF_F_REPLACE)",
        "LINK_UPDATE / LINK_DETACH of a sibling's link (received by SCM_RIGHTS)",
    ];
    let Some(root) = cgroup2_mount() else {
        for r in rows {
            for &l in levels() {
                m.set(r, l, cell(Verdict::NotRun, "no cgroup2 mount"));
            }
        }
        return;
    };
    let mut dirs = Vec::new();
    for &level in levels() {
        // (victim mode, attack, row)
        let plan: [(&str, &str, usize); 5] = [
            ("legacy", "detach", 0),
            ("legacy", "replace", 1),
            ("multi", "replace-multi", 2),
            ("legacy", "link-create", 3),
            ("link", "link-ops", 4),
        ];
        for (mode, attack, row) in plan {
            let cg = root.join(format!(
                "bpfns-rt-attach-{}-{}-{row}",
                std::process::id(),
                level.arg()
            ));
            let _ = std::fs::remove_dir(&cg);
            std::fs::create_dir(&cg).unwrap();
            dirs.push(cg.clone());
            let cgs = cg.to_string_lossy().into_owned();
            let sock = sc
                .work
                .join(format!("{}-{row}.sock", level.arg()))
                .to_string_lossy()
                .into_owned();
            let v = sc.holder(Some("/s"), &["rt-cg-victim", &cgs, mode, &sock], "victim");
            let mut it = v.split(' ');
            let prog: u32 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            let link: u32 = it
                .next()
                .and_then(|x| x.strip_prefix("link="))
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            let r = sc.attack(level, &["rt-cg-attack", &cgs, attack, &sock]);
            let after = cg_ids(&cg);
            // Queries of cgroups give no link ids: a replaced link program changes the id.
            let still = after.iter().any(|(p, _)| *p == prog);
            let steps: Vec<String> = ["detach", "replace", "link", "link_replace", "update"]
                .iter()
                .filter_map(|k| r.get(k).map(|v| format!("{k}: {}", errname_words(v))))
                .collect();
            let c = match r.unusable(level, steps_key(attack)) {
                Some(c) => c,
                None if !still => escape(format!(
                    "{}; the sibling's program {prog} (link {link}) is gone from the hook: {after:?}",
                    steps.join("; ")
                )),
                None => blocked(format!(
                    "{}; the sibling's program {prog}{} still attached",
                    steps.join("; "),
                    if link != 0 {
                        format!(" (link {link})")
                    } else {
                        String::new()
                    }
                )),
            };
            m.set(rows[row], level, c);
        }
    }
    // Controls: the same attacks by an unconfined process with CAP_BPF, CAP_PERFMON and
    // CAP_NET_ADMIN (no bpfns member, no supervisor): what the kernel alone allows.
    for (mode, attack) in [
        ("legacy", "detach"),
        ("legacy", "replace"),
        ("multi", "replace-multi"),
        ("link", "link-ops"),
    ] {
        let cg = root.join(format!(
            "bpfns-rt-attach-{}-control-{attack}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir(&cg);
        std::fs::create_dir(&cg).unwrap();
        dirs.push(cg.clone());
        let cgs = cg.to_string_lossy().into_owned();
        let sock = sc
            .work
            .join(format!("control-{attack}.sock"))
            .to_string_lossy()
            .into_owned();
        let v = sc.holder(Some("/s"), &["rt-cg-victim", &cgs, mode, &sock], "victim");
        let prog: u32 = v
            .split(' ')
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        let got = control(&["rt-as", "caps3", "rt-cg-attack", &cgs, attack, &sock]);
        let after = cg_ids(&cg);
        m.notes.push(format!(
            "control, {attack} on a {mode} attachment, unconfined: {got}; the victim's program {}",
            if after.iter().any(|(p, _)| *p == prog) {
                "is still attached"
            } else {
                "is gone"
            }
        ));
    }
    drop(sc);
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
}

/// The first key an attack prints.
/// Attach targets confined to the namespace's cgroup subtree: `/ca`, bound to a cgroup of
/// its own, attaches (`PROG_ATTACH`), links (`LINK_CREATE`) and detaches (`PROG_DETACH`) on
/// the host's root cgroup and on the cgroup of a sibling namespace `/cb` (which attached a
/// program there). The program tried passes every packet, so a hole harms nothing.
fn scene_confine(m: &mut Matrix) {
    let mut sc = Scene::new("confine");
    let rows = [
        "PROG_ATTACH / LINK_CREATE on the host's root cgroup from a namespace bound to a cgroup of its own",
        "PROG_ATTACH / LINK_CREATE / PROG_DETACH on a sibling namespace's cgroup",
        "PROG_ATTACH / LINK_CREATE / PROG_DETACH on the namespace's own cgroup (control: works)",
        "A member binds its unbound namespace (or a child namespace it creates) to a cgroup it moved into (a sibling's): enter of a child of its own",
        "LINK_CREATE while another thread flips the attach type XDP <-> cgroup egress, on the host's root cgroup (namespace allowing tracing)",
        "A member writes the host's cgroupfs: moves a sibling namespace's process into its own cgroup",
        "A member mounts a cgroupfs of its own (new user, mount and cgroup namespaces) and moves a sibling namespace's process into its own cgroup",
        "A member joins the user and cgroup namespaces of a process host root started, mounts a cgroupfs there and moves a sibling namespace's process into its own cgroup",
        "A member opens /proc/sys/kernel/core_pattern for writing (a pipe there runs as host root, which can then move any process)",
    ];
    let Some(root) = cgroup2_mount() else {
        for r in rows {
            for &l in levels() {
                m.set(r, l, cell(Verdict::NotRun, "no cgroup2 mount"));
            }
        }
        return;
    };
    let pid = std::process::id();
    let (na, nb) = (
        format!("bpfns-rt-conf-a-{pid}"),
        format!("bpfns-rt-conf-b-{pid}"),
    );
    let (cg_a, cg_b) = (root.join(&na), root.join(&nb));
    /// Removes the scene's cgroups however it ends (after the scene's holders are gone).
    struct Gone(Vec<PathBuf>);
    impl Drop for Gone {
        fn drop(&mut self) {
            for cg in &self.0 {
                let _ = std::fs::remove_dir(cg);
            }
        }
    }
    let nt = format!("bpfns-rt-conf-t-{pid}");
    let cg_t = root.join(&nt);
    let _gone = Gone(vec![cg_a.clone(), cg_b.clone(), cg_t.clone()]);
    for cg in [&cg_a, &cg_b, &cg_t] {
        let _ = std::fs::remove_dir(cg);
        std::fs::create_dir(cg).unwrap();
    }
    let policy = bpfns_model::Policy::DEFAULT;
    sc.admin
        .ns_create_bound("/ca", policy, None, Some(&format!("/{na}")))
        .unwrap();
    sc.admin
        .ns_create_bound("/cb", policy, None, Some(&format!("/{nb}")))
        .unwrap();
    // Tracing allowed: bpfnsd once left such a namespace's non-cgroup links to the kernel.
    sc.admin
        .ns_create_bound(
            "/ct",
            bpfns_model::Policy::tracing(true),
            None,
            Some(&format!("/{nt}")),
        )
        .unwrap();
    let sock = sc.d.socket.to_string_lossy().into_owned();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let (a_s, b_s, root_s) = (s(&cg_a), s(&cg_b), s(&root));
    // A process host root started in user and cgroup namespaces of its own (as a container
    // runtime does): uid 0 holds every capability in that user namespace.
    let holder = match Command::new("unshare")
        .args(["--user", "--map-root-user", "--cgroup", "sleep", "600"])
        .spawn()
    {
        Ok(c) => Killed(c),
        Err(e) => panic!("starting the namespace holder (unshare): {e}"),
    };
    // /cb denies tracing: its holder loads without perfmon power.
    let v = sc.holder(
        Some("/cb"),
        &["no-perfmon", "rt-cg-victim", &b_s, "legacy"],
        "victim",
    );
    let prog: u32 = v
        .split(' ')
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    let words = |r: &Run, keys: &[&str]| -> String {
        keys.iter()
            .filter_map(|k| r.get(k).map(|v| format!("{k}: {}", errname_words(v))))
            .collect::<Vec<_>>()
            .join("; ")
    };
    for &level in levels() {
        // The host's root cgroup.
        let r = sc.attack_in("/ca", level, None, &["rt-cg-attack", &root_s, "pass"]);
        let c = match r.unusable(level, "attach") {
            Some(c) => c,
            None if r.get("attach") == Some("ok")
                || r.get("link").is_some_and(|l| l.starts_with("created")) =>
            {
                escape(format!(
                    "on the host's root cgroup: {}",
                    words(&r, &["attach", "link"])
                ))
            }
            None => blocked(format!(
                "on the host's root cgroup: {}",
                words(&r, &["attach", "link"])
            )),
        };
        m.set(rows[0], level, c);
        // The sibling's cgroup: attach and link, then detach its program.
        let r = sc.attack_in("/ca", level, None, &["rt-cg-attack", &b_s, "pass"]);
        let d = sc.attack_in("/ca", level, None, &["rt-cg-attack", &b_s, "detach"]);
        let still = cg_ids(&cg_b).iter().any(|(p, _)| *p == prog);
        let c = match r
            .unusable(level, "attach")
            .or_else(|| d.unusable(level, "detach"))
        {
            Some(c) => c,
            None if r.get("attach") == Some("ok")
                || r.get("link").is_some_and(|l| l.starts_with("created"))
                || !still =>
            {
                escape(format!(
                    "on /cb's cgroup: {}; detach: {}; /cb's program {prog} {}",
                    words(&r, &["attach", "link"]),
                    d.get("detach").map(errname_words).unwrap_or_default(),
                    if still { "still attached" } else { "gone" }
                ))
            }
            None => blocked(format!(
                "on /cb's cgroup: {}; detach: {}; /cb's program {prog} still attached",
                words(&r, &["attach", "link"]),
                d.get("detach").map(errname_words).unwrap_or_default()
            )),
        };
        m.set(rows[1], level, c);
        // Its own cgroup: what the confinement leaves (where the level may attach at all).
        let r = sc.attack_in("/ca", level, None, &["rt-cg-attack", &a_s, "pass"]);
        let c = match r.unusable(level, "attach") {
            Some(c) => c,
            // Allowed where the level may attach at all (CAP_NET_ADMIN); the kernel's own
            // refusal elsewhere.
            None if r.get("attach") == Some("ok") => cell(
                Verdict::Allowed,
                format!(
                    "on its own cgroup: {}",
                    words(&r, &["attach", "detach", "link"])
                ),
            ),
            None => blocked(format!(
                "on its own cgroup, by the kernel (the level lacks what cgroup attach needs): {}",
                words(&r, &["attach", "detach", "link"])
            )),
        };
        m.set(rows[2], level, c);
        m.set(
            rows[3],
            level,
            choose_binding(&mut sc, level, &sock, &b_s, &format!("/{nb}")),
        );
        // The race: on the host's root cgroup, outside /ct's.
        let r = sc.attack_in("/ct", level, None, &["rt-link-race", &root_s, "20000"]);
        let c = match r.unusable(level, "race") {
            Some(c) => c,
            None if r.get("race").is_some_and(|v| v.starts_with("created"))
                || r.get("plain").is_some_and(|v| v.starts_with("created")) =>
            {
                escape(format!(
                    "a link on the host's root cgroup: {}",
                    words(&r, &["plain", "race"])
                ))
            }
            None => blocked(words(&r, &["plain", "race"])),
        };
        m.set(rows[4], level, c);
        m.set(
            rows[5],
            level,
            move_victim(&mut sc, level, &cg_b, |v| {
                vec!["rt-cg-move".into(), a_s.clone(), v.to_string()]
            }),
        );
        m.set(
            rows[6],
            level,
            move_victim(&mut sc, level, &cg_b, |v| {
                ["rt-cg-mount-move", "own", &v.to_string()]
                    .map(String::from)
                    .to_vec()
            }),
        );
        let holder = holder.0.id().to_string();
        m.set(
            rows[7],
            level,
            move_victim(&mut sc, level, &cg_b, |v| {
                ["rt-cg-mount-move", "join", &v.to_string(), &holder]
                    .map(String::from)
                    .to_vec()
            }),
        );
        // Opened for writing only: nothing is written.
        let key = format!("writable.{CORE_PATTERN}");
        let r = sc.attack_in("/ca", level, None, &["rt-writable", CORE_PATTERN]);
        let c = match r.unusable(level, &key) {
            Some(c) => c,
            None => {
                let got = r.get(&key).unwrap_or_default();
                if got.starts_with("ok") {
                    worked(
                        level,
                        &[
                            (Oos::HostRoot, &[Level::Host]),
                            (Oos::HostUid0, &[Level::Bpf, Level::Caps3]),
                        ],
                        format!("{CORE_PATTERN}: {got}"),
                    )
                } else {
                    blocked(format!("{CORE_PATTERN}: {}", errname_words(got)))
                }
            }
        };
        m.set(rows[8], level, c);
    }
    drop(sc);
}

/// Row "a member binds its unbound namespace": `/cu-LEVEL` is created unbound and its first
/// member started from the root cgroup (so nothing binds it); the member, with cgroupfs left
/// writable (`--writable-cgroups`: this row is about the binding, not the mount), moves into
/// `/cb`'s cgroup, lets a child of its own enter `/cu-LEVEL`, then creates `/cu-LEVEL/d` and
/// lets a child enter it. Neither namespace may end up bound to that cgroup (`b_rel`, below
/// the cgroup2 root); a container's namespace is bound to the container's own cgroup by its
/// runtime's hook, which is no escape.
fn choose_binding(sc: &mut Scene, level: Level, sock: &str, b_cg: &str, b_rel: &str) -> Cell {
    let ns = format!("/cu-{}", level.arg());
    if let Err(e) = sc.admin.ns_create(&ns) {
        return cell(Verdict::Error, format!("creating {ns}: {e}"));
    }
    let r = if level.container() {
        sc.attack_in(&ns, level, None, &["rt-enter-self", sock, &ns, b_cg])
    } else {
        let mut v = vec!["rt-as".to_string(), level.arg().to_string()];
        v.extend(["rt-enter-self", sock, &ns, b_cg].map(String::from));
        sc.run_in_with(
            &ns,
            &v,
            bpfns_client::member::Options::default().writable_cgroups(true),
        )
    };
    let mut bound = |p: &str| {
        sc.admin
            .ns_show(p)
            .ok()
            .and_then(|i| i.cgroup)
            .unwrap_or_default()
    };
    let (top, child) = (bound(&ns), bound(&format!("{ns}/d")));
    let text = format!(
        "move: {}; enter: {}; child namespace: {}; {ns} bound to [{top}], {ns}/d to [{child}]",
        r.get("move").map(errname_words).unwrap_or_default(),
        r.get("enter").unwrap_or("?"),
        r.get("child").unwrap_or("?"),
    );
    match r.unusable(level, "enter") {
        Some(c) => c,
        None if [&top, &child].iter().any(|c| {
            c.as_str() == b_rel || c.strip_prefix(b_rel).is_some_and(|r| r.starts_with('/'))
        }) || (!level.container() && !top.is_empty())
            || !child.is_empty() =>
        {
            escape(text)
        }
        None => blocked(text),
    }
}

/// The sysctl whose `|program` the kernel runs as host root on a core dump.
const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";

/// Kills a process however a row ends (before the scene removes the cgroups).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Rows "a member writes the host's cgroupfs" and "mounts a cgroupfs of its own": a process of
/// `/cb` (a `sleep` in `/cb`'s cgroup `b_cg`) is moved out of it by a member of `/ca` running
/// the helper with `attack(victim pid)`, which prints `move=` (and `ns=`, how its namespaces
/// went, for the mounts of its own).
fn move_victim(
    sc: &mut Scene,
    level: Level,
    b_cg: &Path,
    attack: impl Fn(u32) -> Vec<String>,
) -> Cell {
    if level.container() {
        return cell(
            Verdict::NotRun,
            "not applicable in a container: the victim is named by a host pid, and a \
             container's cgroupfs is its engine's (podman mounts it read-only, in a cgroup \
             namespace of its own, unless --privileged)",
        );
    }
    let v = match Command::new("sleep").arg("300").spawn() {
        Ok(c) => Killed(c),
        Err(e) => return cell(Verdict::Error, format!("spawning sleep: {e}")),
    };
    let victim = v.0.id();
    if let Err(e) = std::fs::write(b_cg.join("cgroup.procs"), victim.to_string()) {
        return cell(
            Verdict::Error,
            format!("moving the victim into /cb's cgroup: {e}"),
        );
    }
    if let Err(e) = sc.admin.enter("/cb", victim as i32) {
        return cell(Verdict::Error, format!("the victim entering /cb: {e}"));
    }
    let args = attack(victim);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = sc.attack_in("/ca", level, None, &args);
    let moved = !cg_procs(b_cg).contains(&victim);
    let text = format!(
        "moving /cb's process {victim} into /ca's cgroup: {}{}",
        r.get("ns")
            .map(|n| format!("namespaces: {}; move: ", errname_words(n)))
            .unwrap_or_default(),
        r.get("move").map(errname_words).unwrap_or_default()
    );
    match r.unusable(level, "move") {
        Some(c) => c,
        None if moved || r.get("move") == Some("ok") => escape(text),
        None => blocked(text),
    }
}

/// The processes in cgroup `cg` (its `cgroup.procs`).
fn cg_procs(cg: &Path) -> Vec<u32> {
    std::fs::read_to_string(cg.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn steps_key(attack: &str) -> &'static str {
    match attack {
        "replace" => "replace",
        "link-create" => "link",
        "link-ops" => "update",
        "replace-multi" => "replace",
        _ => "detach",
    }
}

/// The cgroup2 mount, if there is one.
fn cgroup2_mount() -> Option<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
}

/// A network namespace shared by the victim and the attacker (held by a root helper), named
/// by a file it is bind-mounted on, as `ip netns add` names one: members cannot open
/// `/proc/PID/ns/net` of a process outside their Landlock domain.
struct SharedNetns {
    _holder: Helper,
    path: String,
}

impl Drop for SharedNetns {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn shared_netns() -> Option<SharedNetns> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let mut h = Helper::spawn(&["rt-netns-hold"]);
    h.go();
    let pid = h.maybe("netns")?;
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = format!("/run/bpfns-rt-netns-{}-{n}", std::process::id());
    std::fs::write(&path, "").ok()?;
    let ns = SharedNetns { _holder: h, path };
    let bound = Command::new("mount")
        .args(["--bind", &format!("/proc/{pid}/ns/net"), &ns.path])
        .status()
        .is_ok_and(|s| s.success());
    bound.then_some(ns)
}

impl Scene {
    /// Run `action args...` at `level` as a member of /t, inside the network namespace `ns`.
    fn attack_in_netns(&self, level: Level, ns: &str, args: &[&str]) -> Run {
        self.attack_in("/t", level, Some(ns), args)
    }
}

/// Types a namespace's policy leaves out, rewritten after the supervisor's look. Attach types
/// in a namespace `/pf` whose policy allows tracing-class programs (so the kernel answers its
/// members' loads) and of the attach types only xdp: a link of a tracepoint program on a perf
/// event (attach type perf_event), and an XDP program loaded for xdp_devmap put into a devmap.
/// Map and program types in a namespace `/pt` allowing only array maps and socket filters.
fn scene_polflip(m: &mut Matrix) {
    let mut sc = Scene::new("polflip");
    let link_row = "LINK_CREATE of a tracepoint program on a perf event while another thread \
                    flips the attach type xdp <-> perf_event (namespace allowing tracing \
                    programs and only the xdp attach type)";
    let load_row = "PROG_LOAD of an XDP program while another thread flips its expected attach \
                    type xdp <-> xdp_devmap, then MAP_UPDATE_ELEM of it into a devmap \
                    (namespace allowing tracing programs and only the xdp attach type)";
    let map_row = "MAP_CREATE of an array while another thread flips the map type array <-> \
                   hash (namespace allowing only array maps), in children the kernel side may \
                   stop";
    let prog_row = "PROG_LOAD of a socket filter while another thread flips the program type \
                    socket_filter <-> cgroup_skb (namespace allowing only socket filters), in \
                    children the kernel side may stop";
    let mut policy = bpfns_model::Policy::tracing(true);
    policy.attachs = bpfns_model::TypeSet::of([37]);
    sc.admin.ns_create_with_policy("/pf", policy).unwrap();
    let mut narrow = bpfns_model::Policy::DEFAULT;
    narrow.maps = bpfns_model::TypeSet::of([2]);
    narrow.progs = bpfns_model::TypeSet::of([1]);
    sc.admin.ns_create_with_policy("/pt", narrow).unwrap();
    let quota_row = "fd of a new map sent away over SCM_RIGHTS before the creation returns, \
                     the namespace at its limit of maps (--max-maps 4), in children the kernel \
                     side may stop";
    let type_row = "fd of a new hash map sent away over SCM_RIGHTS before the creation returns \
                    (namespace allowing only array maps), in children the kernel side may stop";
    let btf_row = "fd of a new BTF object sent away over SCM_RIGHTS before the load returns, the \
                   namespace at its limit of BTF objects (--max-btf 4), in children the kernel \
                   side may stop";
    sc.admin
        .ns_create_with_policy("/pq", bpfns_model::Policy::DEFAULT)
        .unwrap();
    sc.admin
        .ns_set_quota(
            "/pq",
            None,
            bpfns_model::quota::KindLimits {
                max_maps: Some(4),
                max_btf: Some(4),
                ..bpfns_model::quota::KindLimits::NONE
            },
        )
        .unwrap();
    // Perf events on tracepoints need tracefs: mounted here if it is not (idempotent).
    let _ = bpfns_sys::fs::ensure_tracefs();
    let tp = std::fs::read_to_string("/sys/kernel/tracing/events/syscalls/sys_enter_getpid/id")
        .ok()
        .map(|s| s.trim().to_string());
    let w = |r: &Run, k: &str| errname_words(r.get(k).unwrap_or("?"));
    for &level in levels() {
        let c = match &tp {
            None => cell(Verdict::NotRun, "no tracepoint sys_enter_getpid"),
            Some(tp) => {
                let r = sc.attack_in("/pf", level, None, &["rt-link-flip", tp, "20000"]);
                let text = format!(
                    "plain perf_event: {}; plain xdp: {}; flipping: {}",
                    w(&r, "lflip_perf"),
                    w(&r, "lflip_xdp"),
                    w(&r, "lflip")
                );
                match r.unusable(level, "lflip_setup") {
                    Some(c) => c,
                    None if r.get("lflip_setup") != Some("ok") => cell(
                        Verdict::NotRun,
                        format!(
                            "the level cannot make the program (CAP_BPF and CAP_PERFMON, over \
                             the host or, with a token, in its user namespace) or the perf \
                             event on a tracepoint (CAP_PERFMON over the host): {}{}",
                            w(&r, "lflip_setup"),
                            token_note(&r)
                        ),
                    ),
                    None if ["lflip_perf", "lflip_xdp", "lflip"]
                        .iter()
                        .any(|k| r.get(k).is_some_and(|v| v.starts_with("created"))) =>
                    {
                        escape(text)
                    }
                    None => blocked(text),
                }
            }
        };
        m.set(link_row, level, c);
        let r = sc.attack_in("/pf", level, None, &["rt-xdp-flip", "20000"]);
        let text = format!(
            "plain xdp_devmap load: {}; flipping: {}; devmap insert: {}",
            w(&r, "xflip_plain"),
            w(&r, "xflip"),
            w(&r, "xinsert")
        );
        let c = match r.unusable(level, "xflip_setup") {
            Some(c) => c,
            None if r.get("xflip_setup") != Some("ok") => cell(
                Verdict::NotRun,
                format!(
                    "the level cannot load an XDP program or make a devmap (CAP_BPF and \
                     CAP_NET_ADMIN, over the host or, with a token, in its user namespace): \
                     {}{}",
                    w(&r, "xflip_setup"),
                    token_note(&r)
                ),
            ),
            None if r.get("xflip").is_none() => cell(
                Verdict::Error,
                format!("the race did not report: {:?}; {}", r.out, r.brief()),
            ),
            None if r.get("xinsert") != Some("none")
                || r.get("xflip_plain")
                    .is_some_and(|v| v.contains("insert:ok")) =>
            {
                escape(text)
            }
            None => blocked(text),
        };
        m.set(load_row, level, c);
        for (ns, map_type, fill, row) in [
            ("/pq", "2", "fill", quota_row),
            ("/pt", "1", "probe", type_row),
            ("/pq", "btf", "fill", btf_row),
        ] {
            let r = sc.attack_in(ns, level, None, &["rt-smuggle", map_type, "40", fill]);
            let text = format!(
                "{} {}; racing children: {}; received: {}",
                match (fill, map_type) {
                    ("fill", "btf") => "BTF objects loaded to the limit:",
                    ("fill", _) => "arrays made to the limit:",
                    _ => "plain array:",
                },
                r.get("smuggle_filled").unwrap_or("?"),
                r.get("smuggle").unwrap_or("?"),
                r.get("smuggled").unwrap_or("?"),
            );
            let c = match r.unusable(level, "smuggled") {
                Some(c) => c,
                None if r.get("smuggled") != Some("none") => escape(text),
                None if r.get("smuggle_filled").is_some_and(|v| v.starts_with("0:")) => cell(
                    Verdict::NotRun,
                    format!(
                        "the level cannot make an array map or load BTF (CAP_BPF, over the host \
                         or, with a token, in its user namespace): {text}{}",
                        token_note(&r)
                    ),
                ),
                None => blocked(text),
            };
            m.set(row, level, c);
        }
        for (kind, row) in [("map", map_row), ("prog", prog_row)] {
            let r = sc.attack_in("/pt", level, None, &["rt-type-flip", kind, "2000"]);
            let text = format!(
                "plain {}: {}; flipping: {}; kept: {}",
                if kind == "map" {
                    "hash map"
                } else {
                    "cgroup_skb program"
                },
                w(&r, "tflip_plain"),
                w(&r, "tflip"),
                w(&r, "tforbidden")
            );
            let c = match r.unusable(level, "tflip") {
                Some(c) => c,
                None if r.get("tforbidden") != Some("none")
                    || r.get("tflip_plain").is_some_and(|v| v.starts_with("made")) =>
                {
                    escape(text)
                }
                None if r
                    .get("tflip")
                    .is_some_and(|v| v.contains("allowed_made:0 ")) =>
                {
                    cell(
                        Verdict::NotRun,
                        format!(
                        "the level cannot make a {kind} of the allowed type (CAP_BPF, over the \
                         host or, with a token, in its user namespace): {text}{}",
                        token_note(&r)
                    ),
                    )
                }
                None => blocked(text),
            };
            m.set(row, level, c);
        }
    }
}

/// `; token: ...` where the level looked for a BPF token (`rt-as token`, `ctr-userns`).
fn token_note(r: &Run) -> String {
    r.get("token")
        .map(|t| format!("; token: {}", errname_words(t)))
        .unwrap_or_default()
}

/// A sibling's flow dissector and sockmap program: replaced or detached through PROG_ATTACH /
/// PROG_DETACH.
fn scene_netattach(m: &mut Matrix) {
    let mut sc = Scene::new("netattach");
    let fd_row = "PROG_ATTACH over a sibling's flow dissector (shared network namespace)";
    let sm_row = "PROG_DETACH / PROG_ATTACH over a sibling's sockmap program (map and program received by SCM_RIGHTS)";
    for &level in levels() {
        // The flow dissector of a network namespace both use.
        let c = match shared_netns() {
            None => cell(Verdict::Error, "no network namespace"),
            Some(ns) => {
                let v = sc.holder(Some("/s"), &["rt-fd-victim", &ns.path], "victim");
                let victim: u32 = v.parse().unwrap_or(0);
                let r = sc.attack_in_netns(level, &ns.path, &["rt-fd-attack"]);
                let after = as_root(&["rt-query", &ns.path, "17"], "ids").unwrap_or_default();
                let still = after
                    .split(',')
                    .any(|p| p.starts_with(&format!("{victim}:")));
                match r.unusable(level, "replace") {
                    Some(c) => c,
                    None if !still => escape(format!(
                        "replace: {}; the sibling's flow dissector {victim} is gone: {after}",
                        errname_words(r.get("replace").unwrap())
                    )),
                    None => blocked(format!(
                        "replace: {}; the sibling's flow dissector {victim} still attached",
                        errname_words(r.get("replace").unwrap())
                    )),
                }
            }
        };
        m.set(fd_row, level, c);
        // A sockmap whose map and program the sibling shares on purpose.
        let sock = sc
            .work
            .join(format!("sm-{}.sock", level.arg()))
            .to_string_lossy()
            .into_owned();
        let v = sc.holder(Some("/s"), &["rt-sockmap-victim", &sock], "victim");
        let mut it = v.split(' ');
        let victim: u32 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        let map = it
            .next()
            .and_then(|x| x.strip_prefix("map="))
            .unwrap_or("0")
            .to_string();
        let r = sc.attack(level, &["rt-sockmap-attack", &sock]);
        let after = as_root(&["rt-sockmap-query", &map], "ids").unwrap_or_default();
        let c = match r.unusable(level, "detach") {
            Some(c) => c,
            None => {
                let text = format!(
                    "detach: {}; replace: {}",
                    errname_words(r.get("detach").unwrap_or("?")),
                    errname_words(r.get("replace").unwrap_or("?"))
                );
                if after == victim.to_string() {
                    blocked(format!(
                        "{text}; the sibling's program {victim} still attached"
                    ))
                } else {
                    escape(format!("{text}; attached now: [{after}], not {victim}"))
                }
            }
        };
        m.set(sm_row, level, c);
    }
    // Controls: the same attacks by an unconfined CAP_BPF+CAP_PERFMON+CAP_NET_ADMIN process.
    if let Some(ns) = shared_netns() {
        let v = sc.holder(Some("/s"), &["rt-fd-victim", &ns.path], "victim");
        let got = control(&["rt-in-netns", &ns.path, "rt-as", "caps3", "rt-fd-attack"]);
        let after = as_root(&["rt-query", &ns.path, "17"], "ids").unwrap_or_default();
        m.notes.push(format!(
            "control, flow dissector replace, unconfined: {got}; attached now: {after} (the \
             victim's was {v})"
        ));
    }
    let sock = sc
        .work
        .join("sm-control.sock")
        .to_string_lossy()
        .into_owned();
    let v = sc.holder(Some("/s"), &["rt-sockmap-victim", &sock], "victim");
    let map = v
        .split(' ')
        .nth(1)
        .and_then(|x| x.strip_prefix("map="))
        .unwrap_or("0")
        .to_string();
    let got = control(&["rt-as", "caps3", "rt-sockmap-attack", &sock]);
    let after = as_root(&["rt-sockmap-query", &map], "ids").unwrap_or_default();
    m.notes.push(format!(
        "control, sockmap detach and replace, unconfined: {got}; attached now: [{after}] (the \
         victim's was {})",
        v.split(' ').next().unwrap_or("?")
    ));
}

/// PERF_EVENT_IOC_QUERY_BPF on a tracepoint with foreign programs attached.
fn scene_perfquery(m: &mut Matrix) {
    let mut sc = Scene::new("perfq");
    let row = "PERF_EVENT_IOC_QUERY_BPF on a tracepoint with foreign programs attached";
    // Perf events on tracepoints need tracefs: mounted here if it is not (idempotent).
    let _ = bpfns_sys::fs::ensure_tracefs();
    let Some(tp) =
        std::fs::read_to_string("/sys/kernel/tracing/events/syscalls/sys_enter_getpid/id")
            .ok()
            .map(|s| s.trim().to_string())
    else {
        for &l in levels() {
            m.set(
                row,
                l,
                cell(Verdict::NotRun, "no tracepoint sys_enter_getpid"),
            );
        }
        return;
    };
    let mut foreign = BTreeSet::new();
    for ns in [Some("/s"), None] {
        let v = sc.holder(ns, &["perf-tp", &tp], "id");
        if let Some(id) = v.split(' ').next().and_then(|x| x.parse().ok()) {
            foreign.insert(id);
        }
    }
    m.notes.push(format!(
        "control, PERF_EVENT_IOC_QUERY_BPF by host root outside namespaces: {}",
        control(&["rt-perf-query", &tp])
    ));
    for &level in levels() {
        let r = sc.attack(level, &["rt-perf-query", &tp]);
        let c = match r
            .unusable(level, "ids")
            .filter(|_| r.get("errno").is_none())
        {
            Some(c) => c,
            None => match r.get("ids") {
                Some(list) => {
                    let seen = ids(list);
                    let visible = sc.visible(ObjectKind::Prog);
                    let leaked: BTreeSet<u32> = seen.difference(&visible).copied().collect();
                    if leaked.is_empty() {
                        blocked(format!(
                            "ids [{}] (all visible; the tracepoint carries /s's and the root's {})",
                            show(&seen),
                            show(&foreign)
                        ))
                    } else {
                        escape(format!("foreign program ids: {}", show(&leaked)))
                    }
                }
                None => blocked(format!(
                    "refused: {}",
                    errname(&format!("errno:{}", r.get("errno").unwrap()))
                )),
            },
        };
        m.set(row, level, c);
    }
}

/// XDP on an interface of a shared network namespace, over netlink.
fn scene_xdp(m: &mut Matrix) {
    let mut sc = Scene::new("xdp");
    let rows = [
        ("netlink", "XDP of a sibling attached through netlink, removed through netlink (CAP_NET_ADMIN in a shared network namespace)"),
        ("link", "XDP of a sibling attached through BPF_LINK_CREATE, removed through netlink"),
    ];
    let net_admin = [(Oos::Netlink, &[Level::Caps3, Level::Host][..])];
    for &level in levels() {
        for (mode, row) in rows {
            let Some(ns) = shared_netns() else {
                m.set(row, level, cell(Verdict::Error, "no network namespace"));
                continue;
            };
            let v = sc.holder(Some("/s"), &["rt-xdp-victim", &ns.path, mode], "victim");
            let victim: u32 = v.parse().unwrap_or(0);
            let r = sc.attack_in_netns(level, &ns.path, &["rt-xdp-attack"]);
            let after = as_root(&["rt-xdp-show", &ns.path], "xdp").unwrap_or_default();
            let c = match r.unusable(level, "off") {
                Some(c) => c,
                None => {
                    let text = format!(
                        "saw id {} through RTM_GETLINK; removal: {}",
                        r.get("seen").unwrap_or("?"),
                        errname_words(r.get("off").unwrap_or("?"))
                    );
                    if after == victim.to_string() {
                        blocked(format!(
                            "{text}; the sibling's XDP program {victim} still attached"
                        ))
                    } else if mode == "netlink" {
                        worked(level, &net_admin, format!("{text}; removed (now: {after})"))
                    } else {
                        escape(format!("{text}; the link's program is gone (now: {after})"))
                    }
                }
            };
            m.set(row, level, c);
        }
    }
}

/// A member that kills what holds its listener and installs its own, to answer CONTINUE.
fn scene_listener(m: &mut Matrix) {
    let row = "install its own seccomp listener after killing its supervision (bpfns exec, bpfnsd) and answer CONTINUE";
    let mut d = bpfns_tests::ProcessDaemon::start("rt-listener");
    let mut admin = d.client();
    for p in ["/t", "/t/kid", "/s"] {
        admin.ns_create(p).unwrap();
    }
    let mut victim = Helper::spawn(&["create", "map"]);
    admin.enter("/s", victim.pid).unwrap();
    victim.go();
    let map = victim.expect("id");
    drop(admin);
    let sock = d.socket.to_string_lossy().into_owned();
    for &level in levels() {
        if level.container() {
            m.set(
                row,
                level,
                cell(
                    Verdict::NotRun,
                    "not applicable in a container: the attack kills `bpfns exec` and bpfnsd by \
                     host pid (the container's pid namespace shows neither; its listener goes \
                     to bpfnsd from the runtime); a listener of its own is the \
                     `a nested seccomp listener` row",
                ),
            );
            continue;
        }
        let dpid = d.pid().unwrap_or(0).to_string();
        let out = Command::new(helper_path())
            .args([
                "rt-exec",
                &sock,
                "/t",
                "rt-as",
                level.arg(),
                "rt-own-listener",
            ])
            .args([&dpid, &map])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map(|mut c| {
                let out = spawn_reader(c.stdout.take().unwrap());
                let err = spawn_reader(c.stderr.take().unwrap());
                let deadline = Instant::now() + RUN_TIMEOUT;
                let status = loop {
                    if let Ok(Some(s)) = c.try_wait() {
                        break Some(s);
                    }
                    if Instant::now() > deadline {
                        let _ = c.kill();
                        break c.wait().ok();
                    }
                    std::thread::sleep(Duration::from_millis(5));
                };
                // The member may outlive its killed parent a moment: read to EOF (bounded).
                let drained = Instant::now() + Duration::from_secs(10);
                while !(out.1.is_finished() && err.1.is_finished()) && Instant::now() < drained {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let o = out.0.lock().unwrap().clone();
                let e = err.0.lock().unwrap().clone();
                Run {
                    out: o,
                    err: e,
                    status,
                    timed_out: false,
                    ..Default::default()
                }
            });
        let c = match out {
            Err(e) => cell(Verdict::Error, format!("rt-exec: {e}")),
            Ok(r) => match r.unusable(level, "install") {
                Some(c) => c,
                None => {
                    let kills = format!(
                        "kill bpfns exec: {}, kill bpfnsd: {}",
                        errname(r.get("kill.holder").unwrap_or("?")),
                        errname(r.get("kill.daemon").unwrap_or("?"))
                    );
                    let install = r.get("install").unwrap();
                    let open = r.get("open").unwrap_or("?");
                    if install == "ok" || open.starts_with("opened:") {
                        escape(format!("{kills}; own listener: {install}; MAP_GET_FD_BY_ID of /s's map: {open}"))
                    } else {
                        blocked(format!(
                            "{kills}; seccomp(NEW_LISTENER): {}; MAP_GET_FD_BY_ID of /s's map: {}",
                            errname(install),
                            errname(open)
                        ))
                    }
                }
            },
        };
        m.set(row, level, c);
        // Start bpfnsd again where the attacker killed it.
        let alive = bpfns_client::Client::connect(&d.socket)
            .ok()
            .and_then(|mut c| c.hello().ok())
            .is_some();
        if !alive {
            d.kill();
            if let Err(e) = d.spawn() {
                m.notes.push(format!("bpfnsd did not come back: {e}"));
                return;
            }
        }
    }
    drop(victim);
}

/// Foreign fds raced out of a member over SCM_RIGHTS while it opens them.
fn scene_scmrace(m: &mut Matrix) {
    let mut sc = Scene::new("scmrace");
    let row =
        "race sendmsg(SCM_RIGHTS) of every fd against GET_FD_BY_ID / OBJ_GET of foreign objects";
    let smap = sc.create(Some("/s"), "map", None);
    let rmap = sc.create(None, "map", None);
    let t = sc.bpffs("/t").to_path_buf();
    sc.pin(ObjectKind::Map, smap, &t.join("theirs"));
    let specs = [
        format!("map:{smap}"),
        format!("map:{rmap}"),
        "pin:/sys/fs/bpf/theirs".to_string(),
    ];
    for &level in levels() {
        let mut args = vec!["rt-scm-race", "2000"];
        args.extend(specs.iter().map(String::as_str));
        let r = sc.attack(level, &args);
        let c = match r.unusable(level, "race") {
            Some(c) => c,
            None => {
                let v = r.get("race").unwrap();
                if v.contains(" foreign:0 ") {
                    blocked(format!("2 s: {v}"))
                } else {
                    escape(format!("a foreign object reached the parent: {v}"))
                }
            }
        };
        m.set(row, level, c);
    }
}

// ---- bpfnsd's own lifetime and resources ---------------------------------------------------

/// A scene whose bpfnsd runs in a process of its own (so that it can be restarted, and killed
/// by an attacker that may kill it): /t, /t/kid and /s; a map of /s and one of the root.
struct ProcScene {
    d: bpfns_tests::ProcessDaemon,
    work: PathBuf,
    smap: u32,
    rmap: u32,
    _holders: Vec<Helper>,
    /// podman for the container levels, made at the first container.
    ctr: std::sync::OnceLock<Result<Podman, String>>,
}

impl Drop for ProcScene {
    fn drop(&mut self) {
        self.ctr.take();
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// A member's background child left behind by a process that ended (see `orphan` in the
/// helper), told to probe through trigger files.
struct OrphanRt {
    lines: Receiver<String>,
    dir: PathBuf,
    n: u32,
    pid: i32,
    /// In a container: its podman run, name and podman (removed on drop).
    ctr: Option<(std::process::Child, String, Command)>,
}

impl OrphanRt {
    /// The next `probe ...` line (bounded).
    fn probe(&mut self) -> Option<String> {
        self.n += 1;
        std::fs::write(self.dir.join(format!("probe-{}", self.n)), b"").ok()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = self.lines.recv_timeout(left).ok()?;
            if let Some(p) = l.strip_prefix("probe ") {
                return Some(p.to_string());
            }
        }
    }
}

impl Drop for OrphanRt {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("stop"), b"");
        std::thread::sleep(Duration::from_millis(50));
        if self.pid > 0 {
            if let Ok(fd) = bpfns_sys::process::open_pidfd(self.pid) {
                let _ = bpfns_sys::unix::pidfd_kill(std::os::fd::AsFd::as_fd(&fd));
            }
        }
        if let Some((mut child, name, mut podman)) = self.ctr.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = podman.args(["rm", "-f", "-t", "0", &name]).output();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl ProcScene {
    fn new(name: &str) -> ProcScene {
        let d = bpfns_tests::ProcessDaemon::start(&format!("rt-{name}"));
        let mut admin = d.client();
        for p in ["/t", "/t/kid", "/s"] {
            admin.ns_create(p).unwrap();
        }
        let mut holders = Vec::new();
        let mut map_in = |ns: Option<&str>| -> u32 {
            let mut h = Helper::spawn(&["create", "map"]);
            if let Some(ns) = ns {
                admin.enter(ns, h.pid).unwrap();
            }
            h.go();
            let id = h.expect("id").parse().unwrap();
            holders.push(h);
            id
        };
        let smap = map_in(Some("/s"));
        let rmap = map_in(None);
        let work = PathBuf::from(format!("/tmp/bpfns-rt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755)).unwrap();
        ProcScene {
            d,
            work,
            smap,
            rmap,
            _holders: holders,
            ctr: std::sync::OnceLock::new(),
        }
    }

    /// Start `rt-as LEVEL ACTION...` as a member of /t; its stdout as lines.
    fn member(
        &self,
        level: Level,
        args: &[&str],
        env: &[(&str, &Path)],
    ) -> Result<(bpfns_client::member::Member, Receiver<String>), String> {
        let mut cmd = Command::new(helper_path());
        cmd.args(["rt-as", level.arg()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut m = bpfns_client::member::spawn(&self.d.socket, "/t", &mut cmd)
            .map_err(|e| format!("member::spawn: {e}"))?;
        let stdout = m.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok((m, rx))
    }

    /// A member at `level` that starts a background child and ends (`sh -c '(...) & exit 0'`),
    /// the child trying to create a map of its own; `bpfns exec` is over when this returns.
    fn orphan(&self, level: Level) -> Result<OrphanRt, String> {
        let dir = self.work.join(format!("orphan-{}", level.arg()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
        let (s, r) = (self.smap.to_string(), self.rmap.to_string());
        let (mut m, lines) = self.member(
            level,
            &["orphan", &s, &r],
            &[("BPFNS_ORPHAN_TRIGGER", &dir)],
        )?;
        let deadline = Instant::now() + RUN_TIMEOUT;
        loop {
            if let Ok(Some(st)) = m.try_wait() {
                if !st.success() {
                    return Err(format!("the member ended {st}"));
                }
                break;
            }
            if Instant::now() > deadline {
                let _ = m.kill();
                return Err("the member did not end".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut o = OrphanRt {
            lines,
            dir,
            n: 0,
            pid: 0,
            ctr: None,
        };
        let mut token_error = None;
        while o.pid == 0 {
            match o.lines.recv_timeout(RUN_TIMEOUT) {
                Ok(l) => {
                    if let Some(p) = l.strip_prefix("child=") {
                        o.pid = p.parse().unwrap_or(0);
                    } else if let Some(t) = l.strip_prefix("token=error") {
                        token_error = Some(t.to_string());
                    }
                }
                Err(_) => {
                    return Err(match token_error {
                        Some(t) => format!("token:{t}"),
                        None => "no child= from the member".into(),
                    })
                }
            }
        }
        Ok(o)
    }

    /// Judge a probe of an orphan: never ENOSYS (its listener lost: it could then install one
    /// of its own), never a foreign id listed or opened.
    /// The container counterpart of [`ProcScene::orphan`]: a container of /t at `level`
    /// whose process (the probing child of `orphan`, as the container's own process: a
    /// container's processes end with it) keeps running after podman started it.
    fn container_orphan(&self, level: Level) -> Result<OrphanRt, String> {
        let p = self
            .ctr
            .get_or_init(|| {
                Podman::new(&self.work, &self.d.socket, &self.d.dir.join("seccomp.sock"))
            })
            .as_ref()
            .map_err(Clone::clone)?;
        let dir = self.work.join(format!("orphan-{}", level.arg()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
        let name = p.name();
        let d = dir.to_string_lossy().into_owned();
        let args = [
            "orphan-child".to_string(),
            self.smap.to_string(),
            self.rmap.to_string(),
        ];
        let env = [("BPFNS_ORPHAN_TRIGGER", d.as_str())];
        let mut cmd = p.run_command(
            &name,
            &CtrRun {
                env: &env,
                ..CtrRun::new("/t", level)
            },
            &args,
        );
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| format!("podman run: {e}"))?;
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let o = OrphanRt {
            lines,
            dir,
            n: 0,
            pid: 0,
            ctr: Some((child, name, p.command())),
        };
        // It has made its own map (or was refused) once it says so.
        loop {
            match o.lines.recv_timeout(RUN_TIMEOUT) {
                Ok(l) if l.starts_with("own=") => return Ok(o),
                Ok(_) => {}
                Err(_) => return Err("the container printed no own=".into()),
            }
        }
    }

    fn judge(&self, probe: &str, context: &str) -> Cell {
        let field = |k: &str| {
            probe
                .split(' ')
                .find_map(|f| f.strip_prefix(k))
                .unwrap_or("")
                .to_string()
        };
        let (walk, own, foreign) = (field("walk="), field("own="), field("foreign="));
        let listed = ids(&walk);
        if listed.contains(&self.smap) || listed.contains(&self.rmap) || foreign.contains("opened")
        {
            return escape(format!("{context}: {probe}"));
        }
        if probe.contains("errno:38") {
            return escape(format!(
                "{context}: ENOSYS, the member's listener is gone (it could install one of its \
                 own and answer CONTINUE): {probe}"
            ));
        }
        let walk_text = if walk.starts_with("errno:") {
            errname(&walk)
        } else {
            format!("{} visible ids", listed.len())
        };
        blocked(format!(
            "{context}: walk {walk_text}, own map {}, /s's and root's maps {}",
            errname(&own),
            tally(
                foreign
                    .split(',')
                    .filter_map(|f| f.split_once(':').map(|(_, v)| v))
            )
        ))
    }
}

/// Why the token level cannot run on this kernel, if it cannot (before Linux 6.9 there are no
/// BPF tokens: `BPF_TOKEN_CREATE` is unknown).
fn tokens_unavailable() -> Option<String> {
    match bpfns_sys::probe::token_create(-1) {
        Err(e) if e.errno == bpfns_sys::Errno::INVAL => {
            Some("BPF tokens need Linux 6.9 (BPF_TOKEN_CREATE is unknown here)".to_string())
        }
        _ => None,
    }
}

/// The member's listener outlives the process `bpfns exec` started: a background child it
/// left behind is still supervised after a routine restart of bpfnsd.
fn scene_keeper(m: &mut Matrix) {
    let mut sc = ProcScene::new("keeper");
    let orphan_row =
        "an orphan left behind by a member (sh -c '(...) & exit 0'), after a routine bpfnsd restart";
    let kill_row = "a uid-0 member kills what it can (bpfnsd, the listener keeper) and tries again";
    for &level in levels() {
        if let Some(why) = tokens_unavailable().filter(|_| level == Level::Token) {
            m.set(orphan_row, level, cell(Verdict::NotRun, why.clone()));
            m.set(kill_row, level, cell(Verdict::NotRun, why));
            continue;
        }
        if level.container() {
            // A container's processes end with it: what outlives `podman run` is the
            // container itself, its process probing across bpfnsd's restart.
            let c = match sc.container_orphan(level) {
                // podman or its image missing (the VM lane): the level cannot be tried here.
                Err(e) if e.starts_with("not run") => cell(Verdict::NotRun, e),
                Err(e) => cell(Verdict::Error, e),
                Ok(mut o) => {
                    // A first trapped call answered: bpfnsd holds the container's listener
                    // (and has handed the keeper its copy). Before that, the runtime does not
                    // wait for bpfnsd (docs/containers.md).
                    let before = o.probe();
                    sc.d.terminate();
                    match (before, sc.d.spawn()) {
                        (None, _) => cell(Verdict::Error, "the container did not answer"),
                        (_, Err(e)) => cell(Verdict::Error, format!("restarting bpfnsd: {e}")),
                        (Some(_), Ok(_)) => match o.probe() {
                            None => cell(Verdict::Error, "the container did not answer"),
                            Some(p) => sc.judge(
                                &p,
                                "a running container of /t (a first call answered), bpfnsd \
                                 restarted (SIGTERM)",
                            ),
                        },
                    }
                }
            };
            m.set(orphan_row, level, c);
            m.set(
                kill_row,
                level,
                cell(
                    Verdict::NotRun,
                    "not applicable in a container: bpfnsd's and the keeper's host pids are \
                     not in the container's pid namespace",
                ),
            );
            continue;
        }
        let mut o = match sc.orphan(level) {
            Ok(o) => o,
            Err(e) if e.starts_with("token:") => {
                m.set(orphan_row, level, cell(Verdict::NotRun, e.clone()));
                m.set(kill_row, level, cell(Verdict::NotRun, e));
                continue;
            }
            Err(e) => {
                m.set(orphan_row, level, cell(Verdict::Error, e.clone()));
                m.set(kill_row, level, cell(Verdict::Error, e));
                continue;
            }
        };
        // A routine restart: SIGTERM (systemctl stop/restart), then a new bpfnsd.
        sc.d.terminate();
        let c = match sc.d.spawn() {
            Err(e) => cell(Verdict::Error, format!("restarting bpfnsd: {e}")),
            Ok(_) => match o.probe() {
                None => cell(Verdict::Error, "the orphan did not answer"),
                Some(p) => sc.judge(&p, "`bpfns exec` over, bpfnsd restarted (SIGTERM)"),
            },
        };
        m.set(orphan_row, level, c);

        // The member kills bpfnsd and the keeper if it may, then its orphan tries again.
        let bpfnsd = sc.d.pid().unwrap_or(0).to_string();
        let keeper = sc.d.keeper().map_or(0, |k| k.pid).to_string();
        let killed = match sc.member(level, &["rt-kill", &bpfnsd, &keeper], &[]) {
            Err(e) => Err(e),
            Ok((mut k, lines)) => {
                let _ = k.wait();
                // Everything it printed (the reader ends at EOF; bounded).
                let mut out = Vec::new();
                while let Ok(l) = lines.recv_timeout(Duration::from_secs(10)) {
                    out.push(l);
                }
                let got = |pid: &str| {
                    out.iter()
                        .find_map(|l| l.strip_prefix(&format!("kill.{pid}=")))
                        .map_or("missing".to_string(), errname)
                };
                Ok((got(&bpfnsd), got(&keeper)))
            }
        };
        let c = match killed {
            Err(e) => cell(Verdict::Error, e),
            Ok((kd, kk)) => {
                std::thread::sleep(Duration::from_millis(200));
                let first = o.probe();
                // Back to a running bpfnsd (and a keeper: it starts one) for the next level.
                sc.d.kill();
                let restarted = sc.d.spawn();
                let again = o.probe();
                match (first, restarted) {
                    (None, _) => cell(Verdict::Error, "the orphan did not answer"),
                    (_, Err(e)) => cell(Verdict::Error, format!("restarting bpfnsd: {e}")),
                    (Some(p), Ok(_)) => {
                        let what = format!("kill bpfnsd: {kd}, kill keeper: {kk}; then");
                        let field = |k: &str| {
                            p.split(' ')
                                .find_map(|f| f.strip_prefix(k))
                                .unwrap_or("")
                                .to_string()
                        };
                        let listed = ids(&field("walk="));
                        let leaked = field("foreign=").contains("opened")
                            || listed.contains(&sc.smap)
                            || listed.contains(&sc.rmap);
                        let enosys = p.contains("errno:38");
                        let after = again.map_or("no answer".into(), |a| {
                            if a.contains("errno:38") {
                                "still ENOSYS after a new bpfnsd started (for good)".to_string()
                            } else {
                                sc.judge(&a, "after a new bpfnsd started").why
                            }
                        });
                        if leaked {
                            escape(format!("{what}: {p}"))
                        } else if enosys && kd == "ok" && kk == "ok" {
                            // Both holders of its listener gone: its calls fail closed. What
                            // keeps it from adding a listener of its own is the member filter
                            // (row "a nested seccomp listener").
                            blocked(format!(
                                "{what} its trapped calls fail closed with ENOSYS ({p}); no \
                                 foreign id listed or opened; {after}: a denial of service of \
                                 itself (docs/threat-model.md)"
                            ))
                        } else {
                            let c = sc.judge(&p, &what);
                            cell(c.v, format!("{}; {after}", c.why))
                        }
                    }
                }
            }
        };
        m.set(kill_row, level, c);
        drop(o);
    }
}

/// Flooding bpfnsd with connections: idle ones kept open, then connect/close churn, while
/// the host works.
fn scene_flood(m: &mut Matrix) {
    let sc = Scene::new("flood");
    let sock = sc.d.socket.to_string_lossy().into_owned();
    let limits = bpfnsd::config::Limits::default();
    let row = "flood bpfnsd: 1,500 idle connections kept, then connect/close churn";
    for &level in levels() {
        if let Some(why) = tokens_unavailable().filter(|_| level == Level::Token) {
            m.set(row, level, cell(Verdict::NotRun, why));
            continue;
        }
        let mut bg = match sc.attack_bg(level, &["rt-flood", &sock, "1500", "3000"]) {
            Ok(bg) => bg,
            Err(e) => {
                m.set(row, level, cell(Verdict::NotRun, e));
                continue;
            }
        };
        let Some(holding) = bg.expect("holding") else {
            m.set(
                "flood bpfnsd: 1,500 idle connections kept, then connect/close churn",
                level,
                cell(Verdict::Error, "the flooder printed nothing"),
            );
            continue;
        };
        // The host, meanwhile: each request on a connection of its own.
        let mut host = Vec::new();
        let mut failed = Vec::new();
        let mut time = |what: &str, f: &mut dyn FnMut() -> Result<(), String>| {
            let t = Instant::now();
            if let Err(e) = f() {
                failed.push(format!("{what}: {e}"));
            }
            host.push(format!("{what} {} ms", t.elapsed().as_millis()));
        };
        let client = || bpfns_client::Client::connect(&sc.d.socket).map_err(|e| e.to_string());
        time("hello", &mut || {
            client()?.hello().map(|_| ()).map_err(|e| e.to_string())
        });
        time("ns list", &mut || {
            client()?.ns_list().map(|_| ()).map_err(|e| e.to_string())
        });
        time("ns create+delete", &mut || {
            let mut c = client()?;
            c.ns_create("/rt_flood").map_err(|e| e.to_string())?;
            c.ns_delete("/rt_flood")
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        time("a member of /s started, listing", &mut || {
            let r = sc.run_in("/s", &["rt-list".to_string()]);
            match r.get("ids.map") {
                Some(_) if r.status.is_some_and(|s| s.success()) => Ok(()),
                _ => Err(r.brief()),
            }
        });
        let flood = bg.expect("flood").unwrap_or_default();
        let field = |k: &str| -> u64 {
            flood
                .split(' ')
                .find_map(|f| f.strip_prefix(k))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let (accepted, refused) = (field("accepted:"), field("refused:"));
        let bound = u64::from(
            limits
                .max_connections_per_uid
                .max(limits.max_connections_per_namespace),
        );
        let text = format!(
            "the flooder held {accepted} of {} connections, {refused} refused (limit_reached); \
             churn: {} connect+close in 3 s; meanwhile the host: {}",
            field("opened:"),
            field("churn:"),
            host.join(", ")
        );
        let c = if !failed.is_empty() {
            escape(format!(
                "the host was not served: {}; {text}",
                failed.join("; ")
            ))
        } else if refused == 0 || accepted > bound {
            cell(
                Verdict::Error,
                format!("the limits did not hold ({holding}): {text}"),
            )
        } else {
            blocked(text)
        };
        m.set(
            "flood bpfnsd: 1,500 idle connections kept, then connect/close churn",
            level,
            c,
        );
    }
}

/// Flooding the event stream with namespace changes, each of a new namespace id (an outside
/// review bypassed a limit counted per namespace id that way and got an operator's paused
/// stream dropped). Blocked when the member's events reaching a host subscriber that does not
/// read meanwhile are held to its tenant's limit (5 a second here), the rest counted as
/// suppressed, and the subscriber is not dropped.
fn scene_evflood(m: &mut Matrix) {
    use bpfns_proto::EventKind as K;
    let mut sc = Scene::new_with("evflood", |c| c.events_per_namespace_per_sec = 5);
    let sock = sc.d.socket.to_string_lossy().into_owned();
    let row = "flood the event stream: create and delete child namespaces in a loop (200 \
               cycles, each a new namespace id) while a host subscriber does not read";
    let counter = |sc: &Scene, name: &str| -> u64 {
        sc.d.client()
            .status()
            .ok()
            .and_then(|s| s.counters.into_iter().find(|(n, _)| n == name))
            .map_or(0, |(_, v)| v)
    };
    for &level in levels() {
        if let Some(why) = tokens_unavailable().filter(|_| level == Level::Token) {
            m.set(row, level, cell(Verdict::NotRun, why));
            continue;
        }
        let mut host = sc.d.client();
        let _ = host.set_timeout(Some(Duration::from_secs(60)));
        if let Err(e) = host.subscribe(None, vec![K::NsCreated, K::NsDeleted]) {
            m.set(
                row,
                level,
                cell(Verdict::Error, format!("host subscription: {e}")),
            );
            continue;
        }
        let (suppressed, dropped) = (
            counter(&sc, "events_suppressed"),
            counter(&sc, "events_subscribers_dropped"),
        );
        let prefix = format!("/t/ev_{}_", level.arg());
        let mut bg = match sc.attack_bg(level, &["client", &sock, "ns-churn", &prefix, "200"]) {
            Ok(bg) => bg,
            Err(e) => {
                m.set(row, level, cell(Verdict::NotRun, e));
                continue;
            }
        };
        let churned: u32 = bg
            .expect("churned")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        drop(bg);
        if churned == 0 {
            m.set(
                row,
                level,
                cell(
                    Verdict::NotRun,
                    "the level cannot create namespaces below its own (it reaches no bpfnsd \
                     socket, or bpfnsd refuses it)",
                ),
            );
            continue;
        }
        // Up to a marker the host makes afterwards.
        let marker = format!("/ev_mark_{}", level.arg());
        let _ = sc.admin.ns_create(&marker);
        let mut got = Vec::new();
        let mut ended = None;
        while !got
            .iter()
            .any(|e: &bpfns_proto::EventInfo| e.kind == K::NsCreated && e.namespace == marker)
        {
            match host.next_event() {
                Ok(e) => got.push(e),
                Err(e) => {
                    ended = Some(e.to_string());
                    break;
                }
            }
        }
        let _ = sc.admin.ns_delete(&marker);
        let of_member = got
            .iter()
            .filter(|e| e.namespace.starts_with(&prefix))
            .count() as u64;
        let suppressed = counter(&sc, "events_suppressed") - suppressed;
        let dropped = counter(&sc, "events_subscribers_dropped") - dropped;
        let text = format!(
            "{churned} cycles ({} events); the host subscriber got {of_member} of them, \
             {suppressed} counted suppressed; subscribers dropped: {dropped}",
            2 * churned
        );
        let c = match ended {
            Some(e) => escape(format!("the host subscriber's stream ended ({e}): {text}")),
            None if dropped > 0 => escape(format!("a subscriber was dropped: {text}")),
            None if of_member >= u64::from(2 * churned) => {
                escape(format!("every event was published (no limit): {text}"))
            }
            None => blocked(text),
        };
        m.set(row, level, c);
    }
}

/// The owner namespace (as bpfnsd lists it) of the program pinned at `pin` (a host path), if
/// one is pinned there: (id, owner).
fn pinned_owner(sc: &mut Scene, pin: &Path) -> Option<(u32, String)> {
    let fd = sysbpf::obj_get(pin).ok()?;
    let id = sysbpf::info::<sysbpf::bpf_prog_info>(&fd).ok()?.id;
    let owner = sc
        .admin
        .list(ObjectKind::Prog)
        .ok()?
        .into_iter()
        .find(|o| o.id == id)
        .map_or_else(|| "?".to_string(), |o| o.namespace);
    Some((id, owner))
}

/// Program loads racing the kernel side's backstop, each with a second thread that pins the
/// new fd before the kill can land: the owner of a BPF token's user namespace loading from
/// outside it without any capability (the owner holds every capability in its namespace,
/// CAP_PERFMON included), and a program type flipped after the supervisor's look.
fn scene_loadrace(m: &mut Matrix) {
    let mut sc = Scene::new("loadrace");
    let owner_row = "a token's user-namespace owner loads from outside it (no capabilities) and \
                     races BPF_OBJ_PIN against the backstop";
    let flip_row = "flip prog_type to syscall/tracing while pinning the new fd";
    let flip_u_row = "flip prog_type to syscall while pinning the new fd, in a namespace that \
                      allows tracing";
    let rows = [owner_row, flip_row, flip_u_row];
    // /u allows tracing: there the kernel answers program loads itself.
    let u = sc.admin.ns_create("/u").unwrap();
    sc.admin
        .ns_set_policy("/u", bpfns_model::Policy::tracing(true))
        .unwrap();
    let u_bpffs = PathBuf::from(u.bpffs);
    let v = sc.holder(Some("/s"), &["rt-hold-secret"], "victim");
    let Some((pid, fd, _)) = victim_of(&v) else {
        for r in rows {
            for &l in levels() {
                m.set(r, l, cell(Verdict::Error, "the victim did not start"));
            }
        }
        return;
    };
    let (ps, fs) = (pid.to_string(), fd.to_string());
    let cfg = sc.work.join("cfg.sock").to_string_lossy().into_owned();
    let mut cfgh = Helper::spawn(&["rt-token-configurator", &cfg]);
    cfgh.go();
    cfgh.expect("configurator");
    sc.holders.push(cfgh);
    // The control: uid 1000 without any capability, outside namespaces, owning the token's
    // user namespace, reads /s's secret.
    let control_text = control(&["rt-as", "none", "rt-owner-race", &cfg, &ps, &fs, "ctl", "2"]);
    for p in ["/sys/fs/bpf/rt_ctl_prog", "/sys/fs/bpf/rt_ctl_out"] {
        let _ = std::fs::remove_file(p);
    }
    let tokens = !control_text.contains("owner_token=error");
    for &level in levels() {
        let tag = format!("owner_{}", level.arg());
        let c = if !tokens {
            cell(
                Verdict::NotRun,
                format!("no BPF token on this kernel: {control_text}"),
            )
        } else if !control_text.contains("secret:") {
            cell(
                Verdict::Error,
                format!("the attack does not work unconfined either: {control_text}"),
            )
        } else {
            let r = sc.attack(level, &["rt-owner-race", &cfg, &ps, &fs, &tag, "40"]);
            let pin = sc.bpffs("/t").join(format!("rt_{tag}_prog"));
            let host_view = pinned_owner(&mut sc, &pin);
            for p in [pin.clone(), sc.bpffs("/t").join(format!("rt_{tag}_out"))] {
                let _ = std::fs::remove_file(p);
            }
            match r.unusable(level, "owner_token") {
                Some(c) => c,
                // A container the engine's profile refuses bpf() to cannot make the token the
                // attack needs.
                None if level.container()
                    && r.get("owner_token")
                        .is_some_and(|t| t.ends_with("token-create:errno:1")) =>
                {
                    blocked(format!(
                        "BPF_TOKEN_CREATE refused (EPERM: the engine's profile refuses bpf() to \
                         this container): {}",
                        r.get("owner_token").unwrap_or("")
                    ))
                }
                None if r.get("owner_token") != Some("ok") => cell(
                    Verdict::Error,
                    format!(
                        "no token of an owned user namespace at this level: {}",
                        r.get("owner_token").unwrap_or("")
                    ),
                ),
                None => judge_owner_race(&r, host_view, &control_text),
            }
        };
        m.set(owner_row, level, c);
    }
    // Flipping the type: /t denies tracing (bpfnsd loads from its copy); /u allows it (the
    // kernel loads, the kernel side stops and quarantines what it may not have).
    for &level in levels() {
        let tag = format!("flip_{}", level.arg());
        let r = sc.attack(level, &["rt-flip-race", &tag, "60", "both"]);
        let _ = std::fs::remove_file(sc.bpffs("/t").join(format!("rt_{tag}_flip")));
        let c = judge_flip(&mut sc, level, &r, "/t");
        m.set(flip_row, level, c);
        let r = sc.attack_in("/u", level, None, &["rt-flip-race", &tag, "60", "syscall"]);
        let _ = std::fs::remove_file(u_bpffs.join(format!("rt_{tag}_flip")));
        let c = judge_flip(&mut sc, level, &r, "/u");
        m.set(flip_u_row, level, c);
    }
}

fn judge_owner_race(r: &Run, host_view: Option<(u32, String)>, control_text: &str) -> Cell {
    let get = |k: &str| r.get(k).unwrap_or("").to_string();
    let evidence = format!(
        "CapEff {}; {}; load {}; survivor {}; second process {}",
        get("capeff"),
        get("race"),
        errname_words(&get("load")),
        errname_words(&get("survivor")),
        errname_words(&get("second")),
    );
    let read = ["direct", "survivor_run", "second"]
        .iter()
        .any(|k| r.get(k).is_some_and(|v| v.contains("secret:")));
    if read {
        return escape(format!("read the secret: {evidence}; {}", get("direct")));
    }
    if get("survivor").starts_with("opened:prog") || get("second").starts_with("opened:prog") {
        return escape(format!(
            "a pinned program with perfmon power was opened: {evidence}"
        ));
    }
    if let Some((id, owner)) = &host_view {
        if owner != "quarantine" {
            return escape(format!(
                "program {id} pinned by the racer is recorded as {owner}'s: {evidence}"
            ));
        }
    }
    let pinned = host_view.map_or_else(String::new, |(id, owner)| {
        format!("; the racer's pin holds program {id}, owner {owner}")
    });
    blocked(format!(
        "{evidence}{pinned}; (unconfined: {})",
        control_text
            .split("; ")
            .filter(|s| s.starts_with("direct") || s.starts_with("race"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// A flip race's verdict: no program of a type the namespace may not have is usable by the
/// member (pin, second process) or recorded as its namespace's.
fn judge_flip(sc: &mut Scene, level: Level, r: &Run, ns: &str) -> Cell {
    if let Some(c) = r.unusable(level, "flip") {
        return c;
    }
    let get = |k: &str| r.get(k).unwrap_or("").to_string();
    if get("bad") != "none" {
        return escape(format!(
            "{}; {}; run {}; second process {}",
            get("flip"),
            get("bad"),
            errname_words(&get("bad_run")),
            errname_words(&get("second"))
        ));
    }
    let refused_types = |t: &str| t == "syscall" || (ns == "/t" && t != "socket_filter");
    let progs = sc.admin.list(ObjectKind::Prog).unwrap_or_default();
    let owned: Vec<String> = progs
        .iter()
        .filter(|o| o.name == "rt_flip" && o.namespace == ns && refused_types(&o.type_name))
        .map(|o| format!("{} ({})", o.id, o.type_name))
        .collect();
    if !owned.is_empty() {
        return escape(format!(
            "programs of refused types recorded as {ns}'s: {}; {}",
            owned.join(", "),
            get("flip")
        ));
    }
    let quarantined = progs
        .iter()
        .filter(|o| o.name == "rt_flip" && o.namespace == "quarantine")
        .count();
    blocked(format!(
        "{}{}",
        errname_words(&get("flip")),
        if quarantined > 0 {
            format!("; {quarantined} quarantined program(s) still alive")
        } else {
            String::new()
        }
    ))
}

/// `errno:1×30,errno:9×2` → `EPERM×30 EBADF×2` (`ENOTSUPP` for the kernel's 524).
fn tally_words(v: &str) -> String {
    v.split([',', ';'])
        .map(|part| {
            let (what, n) = part.split_once('×').unwrap_or((part, ""));
            let name = match what.trim() {
                "errno:524" => "ENOTSUPP".to_string(),
                w => errname(w),
            };
            if n.is_empty() {
                name
            } else {
                format!("{name}×{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `BPF_TASK_FD_QUERY` of another process's fds: the answer (`EBADF` for a closed fd,
/// `ENOTSUPP` for an open one that is no perf event, ...) tells which fds it has open.
fn scene_oracle(m: &mut Matrix) {
    let mut sc = Scene::new("oracle");
    let row = "TASK_FD_QUERY as an fd-table oracle on another process";
    let v = sc.holder(Some("/s"), &["rt-hold-secret"], "victim");
    let Some((pid, _, _)) = victim_of(&v) else {
        for &l in levels() {
            m.set(row, l, cell(Verdict::Error, "the victim did not start"));
        }
        return;
    };
    let ps = pid.to_string();
    let control_text = control(&["rt-fd-oracle", &ps, "32"]);
    for &level in levels() {
        let r = sc.attack(level, &["rt-fd-oracle", &ps, "32"]);
        let c = match r.unusable(level, "oracle") {
            Some(c) => c,
            None => {
                let raw = r.get("oracle").unwrap();
                let o = tally_words(raw);
                if r.get("distinct") == Some("1") && raw.starts_with("errno:1×") {
                    blocked(format!(
                        "fds 0-31 of /s's process: {o}; (host root outside namespaces: {})",
                        tally_words(control_text.trim_start_matches("oracle="))
                    ))
                } else {
                    worked(
                        level,
                        &[(Oos::HostRoot, &[Level::Host])],
                        format!("the answers tell open fds from closed ones: {o}"),
                    )
                }
            }
        };
        m.set(row, level, c);
    }
}

/// A namespace's deletion moves its pins into its parent's bpffs, which the parent's members
/// write: a member plants `orphans` there as a symbolic link to a directory of its choosing
/// and deletes a child namespace that has a pin. Blocked when nothing appears at the link's
/// target (bpfnsd works through handles opened without following links, beneath the parent's
/// bpffs) — the deletion then fails and changes nothing, or goes into a real directory.
fn scene_orphans(m: &mut Matrix) {
    let mut sc = Scene::new("orphans");
    let row = "plant orphans/ as a symlink in its bpffs, then delete a child namespace with pins";
    let sock = sc.d.socket.to_string_lossy().into_owned();
    let t_bpffs = sc.bpffs("/t").to_path_buf();
    for &level in levels() {
        let kid = format!("/t/o{}", level.index());
        let n = sc.admin.ns_create(&kid).unwrap();
        // A pinned map, and no member left (a namespace with members is not deleted).
        let pin = PathBuf::from(&n.bpffs).join("kept");
        let id = sc.create(Some(&kid), "map", None);
        sc.pin(ObjectKind::Map, id, &pin);
        drop(sc.holders.pop());
        let deadline = Instant::now() + Duration::from_secs(10);
        while sc.admin.ns_show(&kid).map(|n| n.members).unwrap_or(0) > 0
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let target = sc.work.join(format!("target-{}", level.arg()));
        std::fs::create_dir_all(&target).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o777)).unwrap();
        let r = sc.attack(
            level,
            &["rt-orphans", target.to_str().unwrap(), &sock, &kid],
        );
        let c = match r.unusable(level, "delete") {
            Some(c) => c,
            None => {
                let planted: Vec<String> = std::fs::read_dir(&target)
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                let why = format!(
                    "symlink: {}; delete {kid}: {}; at the target: {}",
                    errname(r.get("symlink").unwrap_or("?")),
                    r.get("delete").unwrap_or("?"),
                    if planted.is_empty() {
                        "nothing".to_string()
                    } else {
                        planted.join(",")
                    }
                );
                if planted.is_empty() {
                    blocked(why)
                } else {
                    escape(why)
                }
            }
        };
        m.set(row, level, c);
        // Clean up for the next level: the link, the child if it is still there, and the
        // orphans/ its deletion made.
        let _ = std::fs::remove_file(t_bpffs.join("orphans"));
        let _ = sc.admin.ns_delete(&kid);
        let _ = std::fs::remove_dir_all(t_bpffs.join("orphans"));
    }
    orphan_race_row(&mut sc, m);
}

/// Tries of the race of [`orphan_race_row`] at each level (the copy as it was lost the first).
const ORPHAN_RACE_TRIES: usize = 4;

/// The copy into `orphans/` raced: a member of /t holding a directory fd of its child's bpffs
/// (a member of the child sends it, as `SCM_RIGHTS` lets it) fills that bpffs with empty
/// directories and symbolic links to another tenant's bpffs (/s's, with a map pinned) and to
/// bpfns's own pins, deletes the child, and swaps every directory with its link
/// (`RENAME_EXCHANGE`) as soon as bpfnsd opens the child's bpffs to copy it. Blocked when, over
/// every try, nothing but /t's own objects appears in /t's bpffs.
fn orphan_race_row(sc: &mut Scene, m: &mut Matrix) {
    let row = "race the copy into orphans/: swap a child's directories for symlinks to another \
               tenant's and bpfns's pins while its deletion copies them";
    let sock = sc.d.socket.to_string_lossy().into_owned();
    let t_bpffs = sc.bpffs("/t").to_path_buf();
    let victim_pin = sc.bpffs("/s").join("race_victim");
    let victim = sc.create(Some("/s"), "map", Some(&victim_pin));
    let targets = [
        sc.bpffs("/s").to_string_lossy().into_owned(),
        sc.d.layout.maps_dir().to_string_lossy().into_owned(),
        sc.d.layout.links_dir().to_string_lossy().into_owned(),
    ];
    for &level in levels() {
        let mut tries = Vec::new();
        let mut found = Vec::new();
        let mut failed = None;
        for t in 0..ORPHAN_RACE_TRIES {
            let kid = format!("/t/race{}x{t}", level.index());
            let n = sc.admin.ns_create(&kid).unwrap();
            let dir = sc.work.join(format!("race-{}-{t}", level.arg()));
            std::fs::create_dir_all(&dir).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            let fd_sock = dir.join("fd.sock");
            let listener = std::os::unix::net::UnixListener::bind(&fd_sock).unwrap();
            std::fs::set_permissions(&fd_sock, std::fs::Permissions::from_mode(0o777)).unwrap();
            let kid_dir = std::fs::File::open(&n.bpffs).unwrap();
            let server = std::thread::spawn(move || {
                use std::os::fd::AsFd;
                if let Ok((s, _)) = listener.accept() {
                    let _ = bpfns_sys::unix::send_with_fds(s.as_fd(), b"f", &[kid_dir.as_fd()]);
                }
            });
            let mut args = vec![
                "rt-orphan-race",
                fd_sock.to_str().unwrap(),
                &sock,
                &kid,
                "300",
                "300",
            ];
            args.extend(targets.iter().map(String::as_str));
            let r = sc.attack(level, &args);
            // Unblock the server if the attacker never connected.
            let _ = std::os::unix::net::UnixStream::connect(&fd_sock);
            let _ = server.join();
            let got = foreign_pins(sc, &t_bpffs.join("orphans"), &["/t"]);
            let _ = sc.admin.ns_delete(&kid);
            let _ = std::fs::remove_dir_all(t_bpffs.join("orphans"));
            if let Some(c) = r.unusable(level, "delete") {
                failed = Some(c);
                break;
            }
            tries.push(format!(
                "setup {}, delete {}, swapped {}",
                errname(r.get("setup").unwrap_or("?")),
                r.get("delete")
                    .unwrap_or("?")
                    .split(':')
                    .next()
                    .unwrap_or("?"),
                r.get("swapped").unwrap_or("-")
            ));
            if !got.is_empty() {
                found = got;
                break;
            }
            if r.get("setup") != Some("ok") {
                break; // nothing to race at this level
            }
        }
        let why = format!(
            "{} tr{}: {}; in /t's bpffs: {}",
            tries.len(),
            if tries.len() == 1 { "y" } else { "ies" },
            tally(tries.iter().map(String::as_str)),
            if found.is_empty() {
                "nothing foreign".to_string()
            } else {
                found.join(", ")
            }
        );
        let c = match failed {
            Some(c) => c,
            None if found.is_empty() => blocked(why),
            None => escape(format!("{why} (the victim map is {victim})")),
        };
        m.set(row, level, c);
    }
    let _ = std::fs::remove_file(&victim_pin);
}

/// Pins under `dir` (a host path, walked without following links) whose objects are owned by
/// none of `own` nor a namespace below them: "KIND ID of OWNER".
fn foreign_pins(sc: &mut Scene, dir: &Path, own: &[&str]) -> Vec<String> {
    let mut owners: BTreeMap<(String, u32), String> = BTreeMap::new();
    for kind in ObjectKind::ALL {
        for o in sc.admin.list(kind).unwrap_or_default() {
            owners.insert((kind.name().to_string(), o.id), o.namespace);
        }
    }
    let mine = |ns: &str| {
        own.iter()
            .any(|o| ns == *o || ns.strip_prefix(o).is_some_and(|r| r.starts_with('/')))
    };
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            let Ok(fd) = sysbpf::obj_get(&e.path()) else {
                continue;
            };
            use std::os::fd::AsRawFd;
            let what = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            let (kind, id) = if what.contains("map") {
                (
                    "map",
                    sysbpf::info::<sysbpf::bpf_map_info>(&fd).map(|i| i.id),
                )
            } else if what.contains("prog") {
                (
                    "prog",
                    sysbpf::info::<sysbpf::bpf_prog_info>(&fd).map(|i| i.id),
                )
            } else if what.contains("link") {
                (
                    "link",
                    sysbpf::info::<sysbpf::bpf_link_info>(&fd).map(|i| i.id),
                )
            } else {
                (
                    "btf",
                    sysbpf::info::<sysbpf::bpf_btf_info>(&fd).map(|i| i.id),
                )
            };
            let id = id.unwrap_or(0);
            let owner = owners
                .get(&(kind.to_string(), id))
                .cloned()
                .unwrap_or_else(|| "?".into());
            if !mine(&owner) {
                *out.entry(format!("{kind} {id} of {owner}")).or_insert(0u32) += 1;
            }
        }
    }
    out.into_iter()
        .map(|(k, n)| format!("{k} ({n} pins)"))
        .collect()
}

/// bpfnsd works in tenants' bpffs trees (a deletion moves pins into the parent's), where a
/// member may hold a directory's inode lock for as long as it likes (a getdents64 into a page
/// that faults into a userfaultfd nobody serves). A member of /t holds its `orphans/` so that
/// the deletion of its child waits; meanwhile the host's requests must be answered. Blocked
/// when they are (the deletion, in the member's own subtree, may wait: it finishes when the
/// member lets go).
fn scene_stall(m: &mut Matrix) {
    let mut sc = Scene::new("stall");
    let row = "hold a directory lock in its bpffs while a child namespace is deleted";
    let t_bpffs = sc.bpffs("/t").to_path_buf();
    for &level in levels() {
        let kid = format!("/t/st{}", level.index());
        let n = sc.admin.ns_create(&kid).unwrap();
        let pin = PathBuf::from(&n.bpffs).join("kept");
        let id = sc.create(Some(&kid), "map", None);
        sc.pin(ObjectKind::Map, id, &pin);
        drop(sc.holders.pop());
        let deadline = Instant::now() + Duration::from_secs(10);
        while sc.admin.ns_show(&kid).map(|n| n.members).unwrap_or(0) > 0
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut bg = match sc.attack_bg(level, &["rt-stall", "/sys/fs/bpf/orphans"]) {
            Ok(bg) => bg,
            Err(e) => {
                m.set(row, level, cell(Verdict::NotRun, e));
                continue;
            }
        };
        let holding = bg.expect("holding").unwrap_or_else(|| "no answer".into());
        // The deletion, on a connection of its own.
        let (done_tx, done) = channel();
        let (sock, k) = (sc.d.socket.clone(), kid.clone());
        std::thread::spawn(move || {
            let r = bpfns_client::Client::connect(&sock).and_then(|mut c| c.ns_delete(&k));
            let _ = done_tx.send(r.map(|(_, n)| n).map_err(|e| e.to_string()));
        });
        std::thread::sleep(Duration::from_millis(500));
        let early = done.try_recv().ok();
        let waiting = early.is_none();
        // The host, meanwhile.
        let (ops_tx, ops) = channel();
        let sock = sc.d.socket.clone();
        let other = format!("/rt_stall{}", level.index());
        std::thread::spawn(move || {
            let r = (|| -> Result<(), String> {
                let mut c = bpfns_client::Client::connect(&sock).map_err(|e| e.to_string())?;
                c.hello().map_err(|e| format!("hello: {e}"))?;
                c.ns_list().map_err(|e| format!("ns list: {e}"))?;
                c.ns_create(&other).map_err(|e| format!("ns create: {e}"))?;
                c.ns_delete(&other).map_err(|e| format!("ns delete: {e}"))?;
                c.list(ObjectKind::Map).map_err(|e| format!("list: {e}"))?;
                Ok(())
            })();
            let _ = ops_tx.send(r);
        });
        let answered = ops.recv_timeout(Duration::from_secs(15));
        drop(bg);
        let deleted = match early.or_else(|| done.recv_timeout(RUN_TIMEOUT).ok()) {
            Some(Ok(n)) => format!("deleted ({n} moved)"),
            Some(Err(e)) => format!("failed: {e}"),
            None => "no answer".to_string(),
        };
        let why = format!(
            "lock held: {}; deletion {} while held, then {deleted}",
            errname(&holding),
            if waiting { "waited" } else { "did not wait" },
        );
        let c = match answered {
            Ok(Ok(())) => blocked(format!(
                "{why}; the host's requests were answered meanwhile"
            )),
            Ok(Err(e)) => cell(Verdict::Error, format!("{why}; a host request failed: {e}")),
            Err(_) => escape(format!("{why}; the host's requests waited with it")),
        };
        m.set(row, level, c);
        let _ = sc.admin.ns_delete(&kid);
        let _ = std::fs::remove_dir_all(t_bpffs.join("orphans"));
    }
    lock_hog_row(&mut sc, m);
}

/// How long `ns_delete --force` waits for killed members to go: the most one request held
/// bpfnsd's change lock for when it waited under it.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// The host's everyday requests, timed: create a namespace, start a member there (as
/// `bpfns exec` does) and let it finish, delete the namespace.
fn host_round(sock: &Path, ns: &str) -> Result<Duration, String> {
    let t = Instant::now();
    let mut c = bpfns_client::Client::connect(sock).map_err(|e| e.to_string())?;
    c.ns_create(ns).map_err(|e| format!("ns create: {e}"))?;
    let mut cmd = Command::new("/bin/true");
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    let ran = bpfns_client::member::spawn(sock, ns, &mut cmd)
        .map_err(|e| format!("member: {e}"))
        .and_then(|mut m| m.wait().map_err(|e| format!("member: {e}")));
    let deleted = c.ns_delete(ns).map_err(|e| format!("ns delete: {e}"));
    ran?;
    deleted?;
    Ok(t.elapsed())
}

/// [`host_round`] on a thread of its own, bounded.
fn timed_host_round(sock: &Path, ns: String) -> Result<Duration, String> {
    let (tx, rx) = channel();
    let sock = sock.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(host_round(&sock, &ns));
    });
    rx.recv_timeout(RUN_TIMEOUT)
        .unwrap_or_else(|_| Err("no answer within a minute".into()))
}

/// A member keeps bpfnsd's change lock busy: a zombie of its own entered into a namespace
/// below it, and four threads asking `ns_delete --force` of that namespace in a loop (each
/// request waited for the zombie, which never goes, for [`KILL_WAIT`] under the lock).
/// Meanwhile the host creates a namespace, starts a member in it and deletes it. Blocked when
/// the host's round under the hog takes less than one such wait (a control round with no hog,
/// in the same run, gives the ratio).
fn lock_hog_row(sc: &mut Scene, m: &mut Matrix) {
    let row =
        "a zombie member and ns_delete --force in a loop from four threads (the change-lock hog)";
    let sock = sc.d.socket.to_string_lossy().into_owned();
    for &level in levels() {
        let i = level.index();
        let control = timed_host_round(&sc.d.socket, format!("/rt_hogc{i}"));
        let mut bg = match sc.attack_bg(
            level,
            &["rt-lock-hog", &sock, &format!("/t/z{i}"), "4", "4"],
        ) {
            Ok(bg) => bg,
            Err(e) => {
                m.set(row, level, cell(Verdict::NotRun, e));
                continue;
            }
        };
        let hogging = bg.expect("hogging").unwrap_or_else(|| "no answer".into());
        std::thread::sleep(Duration::from_millis(200));
        let hogged = timed_host_round(&sc.d.socket, format!("/rt_hogh{i}"));
        let hog = bg.expect("hog").unwrap_or_else(|| "no answer".into());
        drop(bg);
        let _ = sc.admin.ns_delete_with(&format!("/t/z{i}"), true);
        let c = match (control, hogged) {
            (Err(e), _) => cell(Verdict::Error, format!("the control round failed: {e}")),
            (_, Err(e)) if e.contains("within a minute") => escape(format!(
                "{hogging}; the host's round waited over a minute; the hog's deletions: {hog}"
            )),
            (_, Err(e)) => cell(
                Verdict::Error,
                format!("{hogging}; a host request failed: {e}"),
            ),
            (Ok(ctl), Ok(h)) => {
                let why = format!(
                    "{hogging}; the hog's deletions: {hog}; the host's round (ns create, a \
                     member, ns delete): {} ms, {} ms with no hog (×{:.1})",
                    h.as_millis(),
                    ctl.as_millis(),
                    h.as_secs_f64() / ctl.as_secs_f64().max(1e-3)
                );
                if h < KILL_WAIT {
                    blocked(why)
                } else {
                    escape(format!("{why}: it waited behind the hog"))
                }
            }
        };
        m.set(row, level, c);
    }
}

/// A process that joins a running container of /t (`podman exec`; runc sends its pid with
/// its listener): the ids and pins attacks, and the owner of a map it creates as its very
/// first bpf() call (untrapped: nothing of bpfns sees the call itself).
fn scene_podexec(m: &mut Matrix) {
    let mut sc = Scene::new("podexec");
    let row = "podman exec into a running container of /t: walks, GET_FD_BY_ID and OBJ_GET of \
               foreign objects, and the owner of a map the exec'd process creates first";
    let t = sc.bpffs("/t").to_path_buf();
    let smap = sc.create(Some("/s"), "map", None);
    let rmap = sc.create(None, "map", None);
    sc.pin(ObjectKind::Map, smap, &t.join("theirs"));
    let foreign: BTreeSet<u32> = [smap, rmap].into();
    let mut admin = sc.d.client();
    for &level in levels() {
        if !level.container() {
            m.set(
                row,
                level,
                cell(
                    Verdict::NotRun,
                    "podman exec joins containers; at the bpfns exec levels every row is \
                     already a process started into /t from outside",
                ),
            );
            continue;
        }
        let mut bg = match sc.attack_bg(level, &["hold", "ready"]) {
            Ok(bg) => bg,
            Err(e) => {
                m.set(row, level, cell(Verdict::NotRun, e));
                continue;
            }
        };
        let Some(init) = bg.expect("ready") else {
            m.set(
                row,
                level,
                cell(Verdict::Error, "the container did not start"),
            );
            continue;
        };
        let name = bg.ctr.as_ref().map(|(n, _)| n.clone()).unwrap_or_default();
        let Ok(p) = sc.podman() else { continue };
        let exec = |args: &[&str]| -> Run {
            let mut c = p.command();
            c.args(["exec", &name, "/rt/helper", "rt-as", level.in_container()])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            match c.spawn() {
                Ok(child) => finish(child, None),
                Err(e) => Run {
                    err: format!("podman exec: {e}"),
                    ..Default::default()
                },
            }
        };
        let pin = format!("exec_made_{}", level.arg().replace('-', "_"));
        let made = exec(&["create", "map", &format!("/sys/fs/bpf/{pin}")]);
        let created = made.get("id").and_then(|v| v.parse::<u32>().ok());
        let owner = created.map(|id| {
            admin
                .show(ObjectKind::Map, id)
                .map(|o| o.namespace)
                .map_err(|e| e.to_string())
        });
        let _ = std::fs::remove_file(t.join(&pin));
        let probe = exec(&["rt-probe", &format!("map:{smap}"), &format!("map:{rmap}")]);
        let objget = exec(&["rt-objget", "/sys/fs/bpf/theirs"]);
        drop(bg);
        let c = if let Some(c) = probe
            .unusable(level, "ids.map")
            .or_else(|| objget.unusable(level, "objget."))
        {
            c
        } else {
            let seen = ids(probe.get("ids.map").unwrap_or(""));
            let leaked: BTreeSet<u32> = seen.intersection(&foreign).copied().collect();
            let opens = probe.all("open.");
            let got: Vec<String> = opens
                .iter()
                .chain(objget.all("objget.").iter())
                .filter(|(_, v)| v.starts_with("opened:"))
                .map(|(s, v)| format!("{s} -> {v}"))
                .collect();
            let made_text = match (&created, &owner) {
                (Some(id), Some(Ok(o))) => format!("its map {id} is owned by {o}"),
                (Some(id), Some(Err(e))) => format!("its map {id}: not listed ({e})"),
                _ => format!("it created no map: {}", made.brief()),
            };
            let text = format!(
                "container init pid {init} (in the container); exec'd: walk {} visible maps, \
                 foreign opens {}, OBJ_GET of /s's pin: {}; {made_text}",
                seen.len(),
                tally(opens.iter().map(|(_, v)| *v)),
                errname(objget.get("objget./sys/fs/bpf/theirs").unwrap_or("?"))
            );
            let wrong_owner = matches!(&owner, Some(Ok(o)) if o != "/t");
            if !leaked.is_empty() || !got.is_empty() || wrong_owner {
                escape(format!(
                    "{text}; listed {}; opened {}",
                    show(&leaked),
                    got.join(", ")
                ))
            } else {
                blocked(text)
            }
        };
        m.set(row, level, c);
    }
}

// ---- what a member may ask bpfnsd to show: events, run statistics, plans, metrics ---------

/// Lines of a background member, gathered until one starts with `key=` (true) or the run's
/// timeout passes (false).
fn bg_until(bg: &mut Bg, key: &str, out: &mut String) -> bool {
    let p = format!("{key}=");
    let deadline = Instant::now() + RUN_TIMEOUT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match bg.lines.recv_timeout(left) {
            Ok(l) => {
                out.push_str(&l);
                out.push('\n');
                if l.starts_with(&p) {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

/// The ids of an `ID/NAME/RUN_NS/RUN_CNT,...` listing (after `ok:`).
fn stats_ids(v: &str) -> BTreeSet<u32> {
    v.strip_prefix("ok:")
        .unwrap_or("")
        .split(',')
        .filter_map(|e| e.split('/').next()?.parse().ok())
        .collect()
}

/// The events a host-root subscriber gets, as (kind, namespace), until one of `marker`.
fn host_events(rx: &Receiver<(String, String)>, marker: &str) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(e) = rx.recv_timeout(left) else { break };
        let end = e.1 == marker;
        v.push(e);
        if end {
            break;
        }
    }
    v
}

/// Is namespace `ns` (as an event names it) /t or below?
fn in_t(ns: &str) -> bool {
    ns == "/t" || ns.starts_with("/t/")
}

/// What a member may ask bpfnsd to show it: the event stream (`bpfns events`), `list` with run
/// statistics (`bpfns top`), `enable_stats`, `member_plan` (`bpfns exec`), and the metrics
/// endpoint, which this scene's bpfnsd binds in a network namespace of its own
/// (`metrics_netns`): the members share the host's.
fn scene_observe(m: &mut Matrix) {
    // Declared before the scene: it outlives the daemon that binds in it.
    let mnet = shared_netns().expect("a network namespace for the metrics endpoint");
    let up = Command::new("nsenter")
        .arg(format!("--net={}", mnet.path))
        .args(["ip", "link", "set", "lo", "up"])
        .status();
    assert!(
        matches!(up, Ok(s) if s.success()),
        "bringing up lo in the metrics namespace (nsenter, ip: util-linux, iproute2): {up:?}"
    );
    let netns = PathBuf::from(&mnet.path);
    let mut sc = Scene::new_with("observe", |c| {
        c.metrics = Some("127.0.0.1:0".into());
        c.metrics_netns = Some(netns);
    });
    let addr =
        sc.d.daemon()
            .metrics
            .bound
            .lock()
            .unwrap()
            .expect("the metrics endpoint is bound")
            .to_string();
    let sock = sc.d.socket.to_string_lossy().into_owned();
    let sprog = sc.create(Some("/s"), "prog", None);
    let rprog = sc.create(None, "prog", None);
    let tprog = sc.create(Some("/t"), "prog", None);
    let tmap = sc.create(Some("/t"), "map", None);

    // The scraper's view, from the endpoint's namespace: what a member must not get.
    let scrape = Command::new(helper_path())
        .args(["rt-in-netns", &mnet.path, "rt-http", &addr])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let scraped = scrape
        .lines()
        .find_map(|l| l.strip_prefix("http="))
        .unwrap_or("nothing")
        .to_string();
    let metrics_control = scraped.contains("namespaces:") && scraped.contains("/s");
    m.notes.push(format!(
        "control, the metrics endpoint scraped from its own network namespace: {scraped}"
    ));

    for (i, &level) in levels().iter().enumerate() {
        // ---- member_plan, list with run statistics, enable_stats
        let plan_row = "member_plan of a sibling's or the root namespace (bpfns exec's request)";
        let list_row =
            "list with run stats (bpfns top): foreign programs' ids, names and run time, also \
             asked for /s or /";
        let stats_row = "enable_stats: what the member gets, and foreign programs' run time \
                         while statistics are on";
        let mut out = String::new();
        let mut host_counted = String::from("not asked");
        let go = sc.work.join(format!("observe-go-{i}"));
        let go_arg = go.to_string_lossy().into_owned();
        let r = match sc.attack_bg(level, &["rt-observe", &sock, &go_arg]) {
            Err(e) => Run {
                na: Some(e),
                ..Default::default()
            },
            Ok(mut bg) => {
                let ready = bg_until(&mut bg, "obs.ready", &mut out);
                if ready && out.contains("obs.stats=ok") {
                    // Programs run while the member holds statistics on: the host sees the
                    // foreign ones' run time counted, the member only its own's.
                    for id in [sprog, rprog, tprog] {
                        let fd = sysbpf::fd_by_id(ObjectKind::Prog, id).unwrap();
                        let _ = sysbpf::prog_test_run(&fd, &[0u8; 64], 500);
                    }
                    let host = sc.admin.prog_stats(None, false).unwrap();
                    let cnt = |id: u32| {
                        host.iter()
                            .find(|o| o.id == id)
                            .and_then(|o| o.details.run_cnt)
                            .unwrap_or(0)
                    };
                    host_counted = format!(
                        "the host sees /s's program {sprog} run {} times, the root's {rprog} {}",
                        cnt(sprog),
                        cnt(rprog)
                    );
                }
                std::fs::write(&go, b"").unwrap();
                let ended = ready && bg_until(&mut bg, "obs.end", &mut out);
                Run {
                    out,
                    timed_out: !ended,
                    ..Default::default()
                }
            }
        };
        let visible = sc.visible(ObjectKind::Prog);
        let (pc, lc, stc) = match r.unusable(level, "obs.plan/s") {
            Some(c) => (c.clone(), c.clone(), c),
            None => {
                let get = |k: &str| r.get(k).unwrap_or("missing").to_string();
                // member_plan
                let plans: Vec<String> = ["/s", "/", "/t/kid", "/t"]
                    .iter()
                    .map(|p| format!("{p}: {}", get(&format!("obs.plan{p}"))))
                    .collect();
                let bad: Vec<&String> = plans[..2].iter().filter(|v| v.contains(": ok")).collect();
                let pc = if bad.is_empty() {
                    blocked(plans.join("; "))
                } else {
                    escape(
                        bad.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join("; "),
                    )
                };
                // list with run statistics
                let mut leaked = BTreeSet::new();
                for k in ["obs.list", "obs.after"] {
                    leaked.extend(stats_ids(&get(k)).difference(&visible).copied());
                }
                let foreign_ns: Vec<String> =
                    ["obs.list/s", "obs.list/", "obs.after/s", "obs.after/"]
                        .iter()
                        .filter(|k| get(k).starts_with("ok"))
                        .map(|k| format!("{k}: {}", get(k)))
                        .collect();
                let listed = get("obs.after");
                let own_seen = stats_ids(&listed).contains(&tprog);
                let lc = if !leaked.is_empty() || !foreign_ns.is_empty() {
                    escape(format!(
                        "foreign ids {}; {}; listing {listed}",
                        show(&leaked),
                        foreign_ns.join("; ")
                    ))
                } else {
                    blocked(format!(
                        "listing: {} ({}its own program {tprog}); --ns /s: {}; --ns /: {}",
                        if listed.starts_with("ok") {
                            format!("{} programs", stats_ids(&listed).len())
                        } else {
                            listed.clone()
                        },
                        if own_seen { "" } else { "not " },
                        get("obs.list/s"),
                        get("obs.list/")
                    ))
                };
                // enable_stats
                let st = get("obs.stats");
                let stc = if st.starts_with("ok") && !st.contains("anon_inode:bpf-stats") {
                    escape(format!("enable_stats handed it something else: {st}"))
                } else if !leaked.is_empty() || !foreign_ns.is_empty() {
                    escape(format!(
                        "with statistics on ({host_counted}) it read foreign run time: ids {}; {}",
                        show(&leaked),
                        foreign_ns.join("; ")
                    ))
                } else {
                    blocked(format!(
                        "enable_stats: {st}; {host_counted}; its listing with statistics on: {}",
                        get("obs.after")
                            .split(',')
                            .filter(|e| e.contains(&format!("{tprog}/")))
                            .map(|e| format!("own {e}"))
                            .next()
                            .unwrap_or_else(|| "no program of its own".into())
                    ))
                };
                (pc, lc, stc)
            }
        };
        m.set(plan_row, level, pc);
        m.set(list_row, level, lc);
        m.set(stats_row, level, stc);

        // ---- the event stream
        let events_row = "events: a member's subscription (its own, --ns /s, --ns /) gets no \
                          foreign namespace change or denial";
        let marker = format!("/t/rt_mark{i}");
        let fsub = format!("/s/rt_ev{i}");
        let froot = format!("/rt_ev{i}");
        let mut hc = sc.d.client();
        hc.subscribe(None, Vec::new()).unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            while let Ok(e) = hc.next_event() {
                if tx.send((e.kind.name().to_string(), e.namespace)).is_err() {
                    return;
                }
            }
        });
        let mut out = String::new();
        let bg = sc.attack_bg(level, &["rt-events", &sock, &marker, "30"]);
        let mut bg = match bg {
            Ok(mut bg) => {
                if bg_until(&mut bg, "events.subscribed", &mut out) {
                    Ok(bg)
                } else {
                    Err(format!("never subscribed: {out:?}"))
                }
            }
            Err(e) => Err(e),
        };
        // Foreign changes and a foreign denial while it listens, then its own marker.
        let allow = bpfns_model::Policy::tracing(true);
        sc.admin.ns_create(&fsub).unwrap();
        sc.admin.ns_set_policy(&fsub, allow).unwrap();
        sc.admin.ns_delete(&fsub).unwrap();
        sc.admin.ns_create(&froot).unwrap();
        sc.admin.ns_delete(&froot).unwrap();
        let denial = sc.run_in(
            "/s",
            &[
                "rt-as".to_string(),
                "host".to_string(),
                "rt-open".to_string(),
                format!("map:{tmap}"),
            ],
        );
        sc.admin.ns_create(&marker).unwrap();
        let host = host_events(&rx, &marker);
        let ended = match &mut bg {
            Ok(b) => bg_until(b, "events.end", &mut out),
            Err(_) => false,
        };
        let _ = sc.admin.ns_delete(&marker);
        let host_text = tally_events(&host);
        let control = [
            ("ns_created", fsub.as_str()),
            ("ns_policy_changed", fsub.as_str()),
            ("ns_created", froot.as_str()),
            ("denied", "/s"),
        ];
        let missed: Vec<String> = control
            .iter()
            .filter(|(k, n)| !host.iter().any(|(hk, hn)| hk == k && hn == n))
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        // A level whose BPF token could not be made (kernels before 6.9) never subscribes.
        let no_token = Run {
            out: out.clone(),
            ..Default::default()
        }
        .unusable(level, "token")
        .filter(|_| level == Level::Token && out.contains("token=error"));
        let c = match (&bg, no_token) {
            (Err(_), Some(c)) => c,
            (Err(e), None) if e.starts_with("never") => cell(Verdict::Error, e.clone()),
            (Err(e), None) => cell(Verdict::NotRun, e.clone()),
            (Ok(_), _) if !missed.is_empty() => cell(
                Verdict::Error,
                format!(
                    "control: the host's subscriber missed {} (it got {host_text}; the /s \
                     member's open: {})",
                    missed.join(", "),
                    denial.out.trim()
                ),
            ),
            (Ok(_), _) => {
                let r = Run {
                    out: out.clone(),
                    timed_out: !ended,
                    ..Default::default()
                };
                match r.unusable(level, "events.subscribed") {
                    Some(c) => c,
                    None => {
                        let subs: Vec<String> = ["/s", "/", "own"]
                            .iter()
                            .map(|t| {
                                format!(
                                    "{t}: {}",
                                    r.get(&format!("events.sub{t}")).unwrap_or("missing")
                                )
                            })
                            .collect();
                        let got = r.all("event.");
                        let foreign: Vec<String> = got
                            .iter()
                            .filter(|(_, v)| {
                                *v != "closed" && !in_t(v.split_once(':').map_or(*v, |(_, n)| n))
                            })
                            .map(|(t, v)| format!("{t}: {v}"))
                            .collect();
                        let foreign_sub = subs[..2].iter().any(|s| s.contains(": ok"));
                        let end = r.get("events.end").unwrap_or("missing");
                        let text = format!(
                            "subscriptions {}; it got {} events ({}), end: {end}; the host's \
                             subscriber got {host_text}",
                            subs.join(", "),
                            got.len(),
                            got.iter()
                                .map(|(t, v)| format!("{t} {v}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        if !foreign.is_empty() || foreign_sub {
                            escape(format!("{text}; foreign: {}", foreign.join(", ")))
                        } else if r.get("events.subscribed") == Some("ok") && end != "marker" {
                            cell(
                                Verdict::Error,
                                format!("its own subscription never saw {marker}: {text}"),
                            )
                        } else {
                            blocked(text)
                        }
                    }
                }
            }
        };
        m.set(events_row, level, c);

        // ---- the metrics endpoint, from the member's network namespace
        let metrics_row = "the metrics endpoint (every namespace's names and counts) from the \
                           member's network namespace, bound in a network namespace of its own";
        let r = sc.attack(level, &["rt-http", &addr]);
        let c = match r.unusable(level, "http") {
            Some(c) => c,
            None => {
                let v = r.get("http").unwrap_or("missing");
                let names = v.split("namespaces:").nth(1).unwrap_or("");
                if v.starts_with("ok") && !names.is_empty() {
                    escape(format!("{addr}: {v}"))
                } else if !metrics_control {
                    cell(
                        Verdict::Error,
                        format!(
                            "control: the scraper in the endpoint's namespace got {scraped}; \
                             the member: {v}"
                        ),
                    )
                } else {
                    blocked(format!("{addr}: {}", errname(v)))
                }
            }
        };
        m.set(metrics_row, level, c);
    }
}

/// Events as `KIND NS×N` counts.
fn tally_events(v: &[(String, String)]) -> String {
    let mut m: BTreeMap<String, u32> = BTreeMap::new();
    for (k, n) in v {
        *m.entry(format!("{k} {n}")).or_default() += 1;
    }
    m.iter()
        .map(|(k, n)| format!("{k}×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

type SceneFn = fn(&mut Matrix);

const SCENES: [(&str, SceneFn); 30] = [
    ("ids", scene_ids),
    ("pins", scene_pins),
    ("mount", scene_mount),
    ("query", scene_query),
    ("iter", scene_iter),
    ("filter", scene_filter),
    ("steal", scene_steal),
    ("daemon", scene_daemon),
    ("hijack", scene_hijack),
    ("fill", scene_fill),
    ("kread", scene_kread),
    ("kfunc", scene_kfunc),
    ("linkoracle", scene_linkoracle),
    ("loadrace", scene_loadrace),
    ("oracle", scene_oracle),
    ("orphans", scene_orphans),
    ("stall", scene_stall),
    ("attach", scene_attach),
    ("confine", scene_confine),
    ("polflip", scene_polflip),
    ("netattach", scene_netattach),
    ("perfquery", scene_perfquery),
    ("xdp", scene_xdp),
    ("listener", scene_listener),
    ("scmrace", scene_scmrace),
    ("keeper", scene_keeper),
    ("flood", scene_flood),
    ("evflood", scene_evflood),
    ("podexec", scene_podexec),
    ("observe", scene_observe),
];

/// The scenes run one at a time (their races and the flood's figures need the machine); the
/// matrix of what has run so far in this process, in the order of `SCENES`.
static RUN: std::sync::Mutex<Vec<Option<(Matrix, Duration)>>> = std::sync::Mutex::new(Vec::new());

/// Run scene `name` as a test of its own: its cells join the matrix (printed, and written to
/// `target/tmp/redteam-matrix.md` with every scene run so far), and the test fails on any
/// escape, harness error or missing cell of that scene.
fn run_scene(name: &str) {
    if let Some(why) = skip_reason() {
        bpfns_tests::skip(why);
        return;
    }
    let only: Option<Vec<String>> = std::env::var("BPFNS_REDTEAM")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    if only.as_ref().is_some_and(|o| !o.iter().any(|x| x == name)) {
        return; // not asked for: nothing to say
    }
    let (i, f) = SCENES
        .iter()
        .enumerate()
        .find_map(|(i, (n, f))| (*n == name).then_some((i, *f)))
        .expect("a scene of SCENES");
    let mut run = RUN.lock().unwrap_or_else(|e| e.into_inner());
    let t = Instant::now();
    let mut local = Matrix::default();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut local)));
    if let Err(e) = r {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        for &l in levels() {
            local.set(
                &format!("scene {name}"),
                l,
                cell(Verdict::Error, format!("the scene panicked: {msg}")),
            );
        }
    }
    let took = t.elapsed();
    eprintln!("scene {name}: {took:.1?}");
    let failures = local.failures();
    println!("\n{}", local.markdown());
    if run.len() < SCENES.len() {
        run.resize_with(SCENES.len(), || None);
    }
    run[i] = Some((local, took));
    write_matrix(&run);
    drop(run);
    assert!(
        failures.is_empty(),
        "scene {name}: {} escape(s) or error(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every scene run so far, as one matrix, in `target/tmp/redteam-matrix.md`.
fn write_matrix(run: &[Option<(Matrix, Duration)>]) {
    let mut m = Matrix::default();
    let mut total = Duration::ZERO;
    let mut names = Vec::new();
    for ((name, _), entry) in SCENES.iter().zip(run) {
        let Some((local, took)) = entry else { continue };
        for (a, cells) in &local.rows {
            for l in levels() {
                if let Some(c) = &cells[l.index()] {
                    m.set(a, *l, c.clone());
                }
            }
        }
        m.notes.extend(local.notes.iter().cloned());
        total += *took;
        names.push(*name);
    }
    m.notes.push(format!(
        "kernel {}; {} of {} scenes ({}), {:.0?} in all",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        names.len(),
        SCENES.len(),
        if names.len() == SCENES.len() {
            "all".to_string()
        } else {
            names.join(", ")
        },
        total
    ));
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("redteam-matrix.md");
    let _ = std::fs::write(&path, m.markdown());
}

/// One test per scene, named after it (`scene::ids`, ...): a failure names its scene, and
/// `cargo test --test redteam scene::hijack` runs one.
mod scene {
    macro_rules! scenes {
        ($($name:ident),* $(,)?) => {
            $(#[test]
            fn $name() {
                super::run_scene(stringify!($name));
            })*
            /// Every entry of `SCENES` has its test.
            #[test]
            fn every_scene_has_a_test() {
                let tested = [$(stringify!($name)),*];
                for (name, _) in super::SCENES {
                    assert!(tested.contains(&name), "scene {name} has no test");
                }
            }
        };
    }
    scenes!(
        ids, pins, mount, query, iter, filter, steal, daemon, hijack, fill, kread, kfunc,
        linkoracle, loadrace, oracle, orphans, stall, attach, confine, polflip, netattach,
        perfquery, xdp, listener, scmrace, keeper, flood, evflood, podexec, observe,
    );
}

/// Rows outside the matrix: what `bpfns exec`'s caller could hand its member without meaning
/// to (a working directory, an open descriptor), tried by a host-root member and by a uid-0
/// member with CAP_BPF only. Each must reach nothing but the member's own tree.
/// A member that keeps moving out of the way of the walk that finds members (tasks in pid
/// order): its leader thread exits (a zombie, which the walk used to leave out) and another
/// thread execs, which gives that thread the leader's pid, behind the walk, over and over.
/// A walk that missed it let its namespace be deleted under it: a member of a namespace that
/// no longer exists, still holding its fds and bpffs, found by no later member check.
mod pid_hop {
    use super::*;

    #[test]
    fn a_member_changing_its_leader_is_found_by_every_walk_and_keeps_its_namespace() {
        bpfns_tests::require_kernel!();
        let d = TestDaemon::start("rt-pid-hop");
        let mut c = d.client();
        let ns = "/rthop";
        c.ns_create(ns).unwrap();
        // Many threads elsewhere make each walk longer, the window wider.
        let mut filler = Helper::spawn(&["threads", "1500"]);
        filler.go();
        let _ = filler.expect("tid");
        let mut cmd = Command::new(helper_path());
        cmd.args(["pid-hop", "300"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let mut hopper = bpfns_client::member::spawn(&d.socket, ns, &mut cmd).unwrap();
        let until = |what: &str,
                     c: &mut bpfns_client::Client,
                     cond: &dyn Fn(&mut bpfns_client::Client) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !cond(c) {
                assert!(Instant::now() < deadline, "{what}: not within 10 s");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        until("the hopper is a member", &mut c, &|c| {
            c.ns_show(ns).map(|n| n.members).unwrap_or(0) >= 1
        });
        // Every walk finds it: each ns_show counts members from a walk of its own. (Before,
        // about 1 in 1,500 missed it here: enough walks to see that.)
        const WALKS: usize = 4000;
        let mut missed = 0;
        for _ in 0..WALKS {
            if c.ns_show(ns).unwrap().members == 0 {
                missed += 1;
            }
        }
        // And no deletion gets past it.
        let mut deleted = false;
        for _ in 0..100 {
            match c.ns_delete(ns) {
                Ok(_) => {
                    deleted = true;
                    break;
                }
                Err(e) => assert!(
                    e.to_string().contains("member"),
                    "deleting {ns} failed otherwise: {e}"
                ),
            }
        }
        let _ = hopper.kill();
        let _ = hopper.wait();
        drop(filler);
        assert_eq!(
            missed, 0,
            "{missed} of {WALKS} walks did not find the member"
        );
        assert!(!deleted, "{ns} was deleted with a live member");
        until("the namespace goes once its member is gone", &mut c, &|c| {
            c.ns_delete(ns).is_ok()
        });
    }
}

mod inherited {
    use super::*;
    use bpfns_sys::caps::CapabilitySet;
    use bpfns_sys::spawn::Credentials;

    /// The two members tried: host root, and uid 0 with CAP_BPF only.
    fn levels() -> [(&'static str, Option<Credentials>); 2] {
        [
            ("host root", None),
            (
                "CAP_BPF only",
                Some(Credentials {
                    uid: Some(0),
                    gid: Some(0),
                    keep: CapabilitySet::BPF,
                }),
            ),
        ]
    }

    /// Run `script` (sh) as a member of `ns` started from working directory `cwd`; its
    /// output.
    fn run_in(
        d: &TestDaemon,
        ns: &str,
        creds: Option<Credentials>,
        cwd: &Path,
        script: &str,
    ) -> String {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script])
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut options = bpfns_client::member::Options::default();
        if let Some(c) = creds {
            options = options.credentials(c);
        }
        let mut m = bpfns_client::member::spawn_with(&d.socket, ns, &mut cmd, options)
            .expect("starting the member");
        let mut out = String::new();
        m.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let _ = m.wait();
        out
    }

    /// Run `script` as a member of `ns` started through bpfnsd's socket named `socket`.
    fn run_via(socket: &Path, ns: &str, creds: Option<Credentials>, script: &str) -> String {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut options = bpfns_client::member::Options::default();
        if let Some(c) = creds {
            options = options.credentials(c);
        }
        let mut m = bpfns_client::member::spawn_with(socket, ns, &mut cmd, options)
            .expect("starting the member");
        let mut out = String::new();
        m.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let _ = m.wait();
        out
    }

    /// A member started through bpfnsd's socket named `via` tries to write in the socket's
    /// real directory and to move the socket away (put back if it could, for the daemon's
    /// teardown); what it managed, if anything.
    fn socket_directory_attack(
        d: &TestDaemon,
        via: &Path,
        level: &str,
        creds: Option<Credentials>,
    ) -> Option<String> {
        let dir = d.socket.parent().unwrap();
        let out = run_via(
            via,
            "/t",
            creds,
            &format!(
                "touch {d}/probe 2>/dev/null && echo WROTE; \
                 mv {d}/bpfns.sock {d}/moved 2>/dev/null && echo MOVED; echo end",
                d = dir.display()
            ),
        );
        let moved = dir.join("moved").exists();
        if moved {
            std::fs::rename(dir.join("moved"), &d.socket).unwrap();
        }
        (!out.contains("end") || moved || out.contains("WROTE") || out.contains("MOVED"))
            .then(|| format!("{} ({level}): {out}", via.display()))
    }

    /// bpfnsd's socket named through a covered directory (`…/state/../bpfns.sock`): the
    /// socket's directory still becomes read-only for the member, which therefore cannot
    /// replace the socket with one of its own (a cover decided by how a path reads, not where
    /// it leads, was left out).
    #[test]
    fn a_socket_named_through_a_covered_directory() {
        bpfns_tests::require_kernel!();
        let d = TestDaemon::start("rt-dotdot-socket");
        d.client().ns_create("/t").unwrap();
        let roundabout = d.dir.join("state").join("..").join("bpfns.sock");
        let found: Vec<String> = levels()
            .into_iter()
            .filter_map(|(level, creds)| socket_directory_attack(&d, &roundabout, level, creds))
            .collect();
        assert!(
            found.is_empty(),
            "the socket's directory is writable: {found:?}"
        );
    }

    /// bpfnsd's socket named through a symbolic link, and through a hard link, in another
    /// directory: the directory the socket really is in still becomes read-only for the
    /// member (bpfnsd names its sockets' directories in the member plan).
    #[test]
    fn a_socket_named_through_a_link_elsewhere() {
        bpfns_tests::require_kernel!();
        let d = TestDaemon::start("rt-link-socket");
        d.client().ns_create("/t").unwrap();
        let elsewhere = PathBuf::from(format!("/tmp/bpfns-rt-link-socket-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&elsewhere);
        std::fs::create_dir_all(&elsewhere).unwrap();
        let soft = elsewhere.join("soft.sock");
        let hard = elsewhere.join("hard.sock");
        std::os::unix::fs::symlink(&d.socket, &soft).unwrap();
        std::fs::hard_link(&d.socket, &hard).unwrap();
        let found: Vec<String> = [&soft, &hard]
            .into_iter()
            .flat_map(|via| levels().map(|(level, creds)| (via, level, creds)))
            .filter_map(|(via, level, creds)| socket_directory_attack(&d, via, level, creds))
            .collect();
        let _ = std::fs::remove_dir_all(&elsewhere);
        assert!(
            found.is_empty(),
            "the socket's directory is writable: {found:?}"
        );
    }

    /// bpfnsd's state directory configured through the instances' directory
    /// (`ns_bpffs_dir/../state`): it stays covered for every member (its database and the
    /// keeper's socket unseen and unwritable).
    #[test]
    fn a_state_directory_named_through_the_instances_directory() {
        bpfns_tests::require_kernel!();
        let d = TestDaemon::start_with("rt-dotdot-state", |c| {
            c.state_dir = c.ns_bpffs_dir.join("..").join("state");
        });
        d.client().ns_create("/t").unwrap();
        let state = d.dir.join("state");
        for (level, creds) in levels() {
            let out = run_via(
                &d.socket,
                "/t",
                creds,
                &format!(
                    "echo entries=$(ls -A {s} | wc -l); touch {s}/x 2>/dev/null && echo WROTE",
                    s = state.display()
                ),
            );
            assert!(
                out.contains("entries=0"),
                "{level}: the state is visible: {out}"
            );
            assert!(!out.contains("WROTE"), "{level}: {out}");
        }
    }

    /// A working directory in the host's bpffs: the member's `.` is its own bpffs (the path
    /// taken again after its mounts), never the host's with bpfns's pins (whose hook links
    /// it could unlink, leaving its children untagged).
    #[test]
    fn a_working_directory_in_the_host_bpffs() {
        bpfns_tests::require_kernel!();
        let d = TestDaemon::start("rt-cwd-host");
        d.client().ns_create("/t").unwrap();
        let pins = d.layout.root().to_path_buf();
        let rel = pins
            .strip_prefix("/sys/fs/bpf")
            .expect("test pins below /sys/fs/bpf");
        for (level, creds) in levels() {
            let out = run_in(
                &d,
                "/t",
                creds,
                Path::new("/sys/fs/bpf"),
                &format!(
                    "ls ./{r}/links 2>&1; rm -f ./{r}/links/on_fork; echo pwd=$(pwd)",
                    r = rel.display()
                ),
            );
            assert!(
                !out.contains("on_fork"),
                "{level}: a member sees the hook links: {out}"
            );
            assert!(out.contains("pwd=/sys/fs/bpf"), "{level}: {out}");
        }
        assert!(
            pins.join("links").join("on_fork").exists() || !pins.join("links").exists(),
            "a member removed a hook link's pin"
        );
    }

    /// A working directory in another namespace's bpffs instance: nothing of it is reached
    /// (the member starts in `/`).
    #[test]
    fn a_working_directory_in_another_namespaces_bpffs() {
        bpfns_tests::require_kernel!();
        let d = TestDaemon::start("rt-cwd-other");
        let mut c = d.client();
        c.ns_create("/t").unwrap();
        let s = PathBuf::from(c.ns_create("/s").unwrap().bpffs);
        let map = sysbpf::map_create(2, "rt_victim", 4, 4, 1).unwrap();
        sysbpf::obj_pin(&map, &s.join("victim")).unwrap();
        for (level, creds) in levels() {
            let out = run_in(
                &d,
                "/t",
                creds,
                &s,
                "rm -f ./victim; ls -a .; echo pwd=$(pwd)",
            );
            assert!(
                s.join("victim").exists(),
                "{level}: a member of /t removed /s's pin"
            );
            assert!(out.contains("pwd=/\n"), "{level}: {out}");
        }
        let _ = std::fs::remove_file(s.join("victim"));
    }

    /// A working directory in bpfnsd's hidden state directory: the member's `.` is the cover.
    #[test]
    fn a_working_directory_in_the_state_directory() {
        bpfns_tests::require_kernel!();
        let d = TestDaemon::start("rt-cwd-state");
        d.client().ns_create("/t").unwrap();
        let state = d.dir.join("state");
        for (level, creds) in levels() {
            let out = run_in(&d, "/t", creds, &state, "ls -a .");
            assert!(
                !out.contains("redb") && !out.contains(".sock"),
                "{level}: a member reads bpfnsd's state: {out}"
            );
        }
    }

    /// Descriptors inherited from the caller (a shell's `exec 3<DIR`, flock(1)'s lock fd): a
    /// descriptor is not moved into the member's mount namespace, so a directory's `..` walks
    /// the host's mount tree. A directory anywhere, a bpffs, a cgroupfs file: the member is not
    /// started, and the error names the descriptor and the fix. Each tried from a process of
    /// its own (the helper's `rt-exec`, what `bpfns exec` does), so that no other test's
    /// members inherit the descriptor.
    #[test]
    fn an_inherited_descriptor_that_reaches_past_the_mounts() {
        bpfns_tests::require_kernel!();
        let d = TestDaemon::start("rt-fd-inherited");
        d.client().ns_create("/t").unwrap();
        let cgroup_file = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .find(|l| l.contains(" - cgroup2 ") || l.contains(" - cgroup "))
            .and_then(|l| l.split(' ').nth(4).map(|p| format!("{p}/cgroup.procs")))
            .expect("a cgroupfs");
        for (what, path) in [
            ("a directory elsewhere", "/usr".to_string()),
            ("the host's bpffs", "/sys/fs/bpf".to_string()),
            ("a cgroupfs file", cgroup_file),
        ] {
            let out = Command::new("/bin/sh")
                .args([
                    "-c",
                    &format!(
                        "exec 3<'{path}' && exec '{}' rt-exec '{}' /t exec-cmd /bin/true",
                        helper_path().display(),
                        d.socket.display()
                    ),
                ])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{what}: a member started with fd 3 on {path}"
            );
            assert!(
                err.contains("file descriptor 3") && err.contains("3<&-"),
                "{what}: {err}"
            );
        }
        // The same start without the descriptor works.
        let out = Command::new(helper_path())
            .args([
                "rt-exec",
                d.socket.to_str().unwrap(),
                "/t",
                "exec-cmd",
                "/bin/true",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A directory handed to the member as standard input (`Stdio::from` a `File`: close-on-
    /// exec in the caller, put in place by `Command` in the child after the caller's check):
    /// refused in the child; the same start with /dev/null works.
    #[test]
    fn a_directory_as_standard_input() {
        bpfns_tests::require_kernel!();
        let d = TestDaemon::start("rt-fd-stdin");
        d.client().ns_create("/t").unwrap();
        for (what, stdin, started) in [
            ("a directory", std::fs::File::open("/usr").unwrap(), false),
            ("/dev/null", std::fs::File::open("/dev/null").unwrap(), true),
        ] {
            let mut cmd = Command::new("/bin/true");
            cmd.stdin(Stdio::from(stdin));
            let r = bpfns_client::member::spawn_with(
                &d.socket,
                "/t",
                &mut cmd,
                bpfns_client::member::Options::default(),
            )
            .map(|mut m| m.wait().unwrap().success());
            assert_eq!(r.is_ok(), started, "{what} as stdin: {r:?}");
        }
    }

    /// A connection to bpfnsd left open by the caller: bpfnsd knows a connection by the
    /// process that made it, so through it the member would be answered as its caller (host
    /// root). Refused, whether inherited or handed over as standard input; and so is a
    /// connection to its listener keeper.
    #[test]
    fn an_inherited_connection_to_bpfnsd() {
        bpfns_tests::require_kernel!();
        let d = TestDaemon::start("rt-fd-conn");
        d.client().ns_create("/t").unwrap();
        let out = Command::new(helper_path())
            .args([
                "rt-exec-connected",
                d.socket.to_str().unwrap(),
                "/t",
                "exec-cmd",
                "/bin/true",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "a member inherited a connection to bpfnsd"
        );
        assert!(err.contains("connection to bpfnsd"), "{err}");
        let conn = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
        let mut cmd = Command::new("/bin/true");
        cmd.stdin(Stdio::from(std::os::fd::OwnedFd::from(conn)));
        let r = bpfns_client::member::spawn_with(
            &d.socket,
            "/t",
            &mut cmd,
            bpfns_client::member::Options::default(),
        );
        assert!(r.is_err(), "a member got a connection to bpfnsd as stdin");
        // Nor a connection to bpfnsd's listener keeper, in the state directory members are
        // kept from: it would withdraw every member's listener, as bpfnsd.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let keeper = loop {
            match bpfns_sys::unix::seqpacket_connect(&d.keeper_socket()) {
                Ok(k) => break k,
                Err(e) => {
                    assert!(std::time::Instant::now() < deadline, "no keeper: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        let mut cmd = Command::new("/bin/true");
        cmd.stdin(Stdio::from(keeper));
        let r = bpfns_client::member::spawn_with(
            &d.socket,
            "/t",
            &mut cmd,
            bpfns_client::member::Options::default(),
        );
        assert!(
            r.is_err(),
            "a member got a connection to the listener keeper as stdin"
        );
    }

    /// A connection to bpfnsd handed to another process speaks for nobody: passed over a
    /// socket (or inherited where `bpfns exec` is not the launcher), it would be answered as
    /// the process that made it (here host root outside namespaces: every namespace, every
    /// object, `ns_delete` of any tenant). bpfnsd checks who wrote each request
    /// (`SCM_CREDENTIALS`) and closes the connection at the first one another process sends.
    #[test]
    fn a_connection_passed_to_another_process_speaks_for_nobody() {
        use std::os::unix::process::CommandExt;
        bpfns_tests::require_kernel!();
        let d = TestDaemon::start("rt-conn-pass");
        d.client().ns_create("/t").unwrap();
        d.client().ns_create("/u").unwrap();
        let mut receivers: Vec<(&str, Option<Option<Credentials>>)> = levels()
            .into_iter()
            .map(|(level, creds)| (level, Some(creds)))
            .collect();
        receivers.push(("uid 1000 outside namespaces", None));
        for (who, member) in receivers {
            let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
            let mut cmd = Command::new(helper_path());
            cmd.arg("rt-speak-received")
                .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            let mut child = match member {
                Some(creds) => {
                    let mut options = bpfns_client::member::Options::default();
                    if let Some(c) = creds {
                        options = options.credentials(c);
                    }
                    bpfns_client::member::spawn_with(&d.socket, "/t", &mut cmd, options)
                        .expect("starting the member")
                        .into_child()
                }
                None => cmd.uid(1000).gid(1000).spawn().unwrap(),
            };
            // The maker's own request is answered as host root: the connection works.
            let conn = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
            let mut maker = bpfns_client::Client::from_stream(conn.try_clone().unwrap());
            assert_eq!(
                maker.ns_list().unwrap().len(),
                3,
                "{who}: the maker sees all"
            );
            bpfns_sys::unix::send_with_fds(&mine, b"c", &[std::os::fd::AsFd::as_fd(&conn)])
                .unwrap();
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            let _ = child.wait();
            assert!(
                !out.contains("answered"),
                "{who} was answered on a connection host root made: {out}"
            );
            assert!(out.contains("refused"), "{who}: {out}");
            // The connection is over for its maker too.
            assert!(
                maker.ns_list().is_err(),
                "{who}: the connection stayed open"
            );
        }
    }

    /// A connection to bpfnsd's listener keeper handed to a member speaks for nobody: as
    /// bpfnsd, it would withdraw every member's listener (`Next`) and answer their trapped
    /// calls. The keeper closes a connection at the first message another process writes, and
    /// a member without `CAP_SYS_ADMIN` cannot name the maker instead (`SCM_CREDENTIALS`:
    /// `EPERM`). A host-root member can name any pid: documented (threat model, "A thirteenth
    /// review's findings"), not tried here.
    #[test]
    fn a_keeper_connection_handed_to_a_member_speaks_for_nobody() {
        bpfns_tests::require_kernel!();
        let d = TestDaemon::start("rt-keeper-pass");
        let mut c = d.client();
        c.ns_create("/t").unwrap();
        // A supervised member: the keeper holds its listener.
        let mut cmd = Command::new("sleep");
        cmd.arg("600").stdin(Stdio::null());
        let mut held = bpfns_client::member::spawn(&d.socket, "/t", &mut cmd)
            .expect("starting the member")
            .into_child();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while c.status().unwrap().kept_listeners < 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the keeper holds no listener"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let maker = std::process::id().to_string();
        for (level, creds) in levels() {
            // Naming the maker is tried where the member may not (no CAP_SYS_ADMIN).
            let forges: &[&str] = if creds.is_some() { &["0", "1"] } else { &["0"] };
            for &forge in forges {
                let conn = bpfns_sys::unix::seqpacket_connect(&d.keeper_socket()).unwrap();
                let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
                let mut cmd = Command::new(helper_path());
                cmd.args(["rt-keeper-received", &maker, forge])
                    .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit());
                let mut options = bpfns_client::member::Options::default();
                if let Some(c) = creds {
                    options = options.credentials(c);
                }
                let mut child =
                    bpfns_client::member::spawn_with(&d.socket, "/t", &mut cmd, options)
                        .expect("starting the member")
                        .into_child();
                bpfns_sys::unix::send_with_fds(&mine, b"c", &[std::os::fd::AsFd::as_fd(&conn)])
                    .unwrap();
                let mut out = String::new();
                child
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_string(&mut out)
                    .unwrap();
                let _ = child.wait();
                let who = format!("{level} (naming the maker: {forge})");
                assert!(
                    !out.contains("answered"),
                    "{who} was answered on the keeper connection host root made: {out}"
                );
                // Closed by the keeper, or the naming refused by the kernel (EPERM).
                assert!(
                    out.contains("closed") || out.contains("send=errno:1"),
                    "{who}: {out}"
                );
            }
        }
        let _ = held.kill();
        let _ = held.wait();
    }

    /// The process that made a connection has exited and a process with its pid (reused)
    /// writes a request on the connection it inherited: bytes from the maker's pid are not
    /// the maker's once it is gone. bpfnsd asks the maker's pidfd whether it still lives.
    #[test]
    fn a_connection_whose_maker_exited_speaks_for_nobody_from_its_pid() {
        bpfns_tests::require_kernel!();
        let d = TestDaemon::start("rt-conn-reuse");
        d.client().ns_create("/t").unwrap();
        let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut maker = Command::new(helper_path())
            .args(["rt-pass-connection", d.socket.to_str().unwrap()])
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .spawn()
            .unwrap();
        let pid = maker.id() as i32;
        let mut fds = Vec::new();
        bpfns_sys::unix::recv_exact_with_fds(&mine, &mut [0u8; 1], &mut fds).unwrap();
        let conn = fds.pop().expect("the maker's connection");
        assert!(maker.wait().unwrap().success());
        // The maker is reaped: its pid is free for the next process that asks for it.
        let req = bpfns_proto::Request::new(1, bpfns_proto::Op::NsList);
        let frame = bpfns_proto::encode(&req, bpfns_proto::MAX_REQUEST).unwrap();
        bpfns_sys::testhooks::send_as_pid(pid, std::os::fd::AsFd::as_fd(&conn), &frame)
            .unwrap_or_else(|e| panic!("a process with the maker's pid {pid}: {e}"));
        // Closed, or one error frame: the refusal of a connection whose maker is gone when
        // bpfnsd comes to accept it (under load, after the request was written).
        let mut conn = std::os::unix::net::UnixStream::from(conn);
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let answer = first_answer(&mut conn);
        assert!(
            !matches!(
                answer.as_ref().map(|r| &r.result),
                Some(bpfns_proto::Outcome::Ok(_))
            ),
            "bpfnsd answered a request from the exited maker's pid, as the maker: {answer:?}"
        );
    }

    /// A process without privileges connects, sends its requests, and runs a set-user-ID
    /// root program (`su`, waiting for a password) before bpfnsd accepts the connection
    /// (300 connections ahead of it): it was answered with that program's identity, host
    /// root outside namespaces (bpfnsd read the capabilities when it accepted, the uid when
    /// the process connected). A connection whose maker's effective ids changed since it
    /// connected is refused.
    #[test]
    fn a_set_user_id_program_run_after_connecting_is_not_served_as_itself() {
        use std::os::unix::process::CommandExt;
        bpfns_tests::require_kernel!();
        let su = Path::new("/usr/bin/su");
        if !su.exists() {
            bpfns_tests::skip("no /usr/bin/su (util-linux) to run as a set-user-ID program");
            return;
        }
        let d = TestDaemon::start("rt-suid-accept");
        d.client().ns_create("/t").unwrap();
        let _ahead: Vec<_> = (0..300)
            .map(|_| std::os::unix::net::UnixStream::connect(&d.socket).unwrap())
            .collect();
        let mut cmd = Command::new(helper_path());
        cmd.args(["rt-connect-then-exec", d.socket.to_str().unwrap()])
            .arg(su)
            .args(["root", "-c", "true"])
            .uid(1000)
            .gid(1000);
        let (mut child, mine, mut conn) = spawn_connecting(cmd);
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let hello = first_answer(&mut conn);
        drop(mine);
        let _ = child.wait();
        assert!(
            !answered_as_host_root(&hello),
            "uid 1000 was answered as host root after running a set-user-ID program: {hello:?}"
        );
    }

    /// Spawn `cmd` (an `rt-connect-then-exec`) with one end of a socket pair as its stdin
    /// and take the connection it hands over there: the child, this end, the connection.
    fn spawn_connecting(
        mut cmd: Command,
    ) -> (
        std::process::Child,
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixStream,
    ) {
        let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let child = cmd
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut fds = Vec::new();
        bpfns_sys::unix::recv_exact_with_fds(&mine, &mut [0u8; 1], &mut fds).unwrap();
        let conn = std::os::unix::net::UnixStream::from(fds.pop().expect("the connection"));
        (child, mine, conn)
    }

    /// The first answer on a connection (only read: a request from here would be another
    /// writer's).
    fn first_answer(conn: &mut std::os::unix::net::UnixStream) -> Option<bpfns_proto::Response> {
        let mut header = [0u8; bpfns_proto::HEADER_LEN];
        conn.read_exact(&mut header).ok()?;
        let mut body = vec![0u8; u32::from_le_bytes(header) as usize];
        conn.read_exact(&mut body).ok()?;
        bpfns_proto::decode_response(&body).ok()
    }

    fn answered_as_host_root(hello: &Option<bpfns_proto::Response>) -> bool {
        matches!(
            hello.as_ref().map(|r| &r.result),
            Some(bpfns_proto::Outcome::Ok(bpfns_proto::Reply::Hello { caller, .. })) if caller.host_admin
        )
    }

    /// A process without privileges connects, sends its requests, and runs a program with
    /// file capabilities (CAP_SYS_ADMIN and CAP_BPF; no set-user-ID bit, so no id changes)
    /// before bpfnsd accepts the connection (bpfnsd is stopped meanwhile, SIGSTOP): it was
    /// answered with the program's capabilities, as host root (bpfnsd read them when it
    /// accepted). What the process held when it connected, as the kernel recorded it, decides.
    #[test]
    fn a_program_with_file_capabilities_run_after_connecting_is_not_served_as_itself() {
        use std::os::unix::process::CommandExt;
        bpfns_tests::require_kernel!();
        let Some(hello) = hello_after_running_file_capabilities("rt-fcaps", |cmd| {
            let mut c = Command::new(cmd.get_program());
            c.args(cmd.get_args()).uid(1000).gid(1000);
            c
        }) else {
            return;
        };
        assert!(
            !answered_as_host_root(&hello),
            "uid 1000 was answered as host root after running a program with file \
             capabilities: {hello:?}"
        );
        assert!(
            matches!(
                hello.as_ref().map(|r| &r.result),
                Some(bpfns_proto::Outcome::Error(e)) if e.message.contains("gained privileges")
            ),
            "expected a refusal naming the change: {hello:?}"
        );
    }

    /// A copy of `sleep` with the file capabilities CAP_SYS_ADMIN and CAP_BPF (effective), in
    /// a directory of its own that uid 1000 reaches; `None` (the test skipped) where they
    /// cannot be given.
    fn file_capabilities_program(name: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let dir = PathBuf::from(format!("/tmp/bpfns-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let program = dir.join("sleep-with-capabilities");
        std::fs::copy("/bin/sleep", &program).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        match Command::new("setcap")
            .args(["cap_sys_admin,cap_bpf+ep"])
            .arg(&program)
            .status()
        {
            Ok(s) if s.success() => Some(program),
            other => {
                let _ = std::fs::remove_dir_all(&dir);
                bpfns_tests::skip(format!(
                    "cannot give {} file capabilities (setcap from libcap2-bin, a filesystem \
                     with extended attributes): {other:?}",
                    program.display()
                ));
                None
            }
        }
    }

    /// [`connect_then_exec_while_stopped`] with a program with file capabilities
    /// ([`file_capabilities_program`]), removed afterwards; `None`: skipped.
    fn hello_after_running_file_capabilities(
        name: &str,
        wrap: impl FnOnce(&Command) -> Command,
    ) -> Option<Option<bpfns_proto::Response>> {
        let program = file_capabilities_program(name)?;
        let hello = connect_then_exec_while_stopped(&format!("{name}-accept"), &program, wrap);
        let _ = std::fs::remove_dir_all(program.parent().unwrap());
        Some(hello)
    }

    /// With a bpfnsd of its own stopped (`SIGSTOP`), run `rt-connect-then-exec SOCKET PROGRAM
    /// 30` as `wrap` makes it (credentials, a wrapper program): it connects, queues `hello`
    /// and `ns_list`, hands the connection here and becomes PROGRAM. Once it runs PROGRAM
    /// bpfnsd is continued and accepts: bpfnsd's first answer on the connection.
    fn connect_then_exec_while_stopped(
        name: &str,
        program: &Path,
        wrap: impl FnOnce(&Command) -> Command,
    ) -> Option<bpfns_proto::Response> {
        use std::os::fd::AsFd;
        let mut d = bpfns_tests::ProcessDaemon::start(name);
        let daemon = bpfns_sys::process::open_pidfd(d.pid().expect("bpfnsd's pid") as i32)
            .expect("bpfnsd's pidfd");
        // bpfnsd accepts nothing while stopped; continued however this ends.
        struct Continue(std::os::fd::OwnedFd);
        impl Drop for Continue {
            fn drop(&mut self) {
                let _ = bpfns_sys::unix::pidfd_signal(self.0.as_fd(), libc::SIGCONT);
            }
        }
        bpfns_sys::unix::pidfd_signal(daemon.as_fd(), libc::SIGSTOP).unwrap();
        let stopped = Continue(daemon);
        let mut plain = Command::new(helper_path());
        plain
            .args(["rt-connect-then-exec", d.socket.to_str().unwrap()])
            .arg(program)
            .arg("30");
        let (mut child, _mine, mut conn) = spawn_connecting(wrap(&plain));
        // Accepted only once the child runs the program.
        let exe = format!("/proc/{}/exe", child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(&exe).ok().as_deref() != Some(program) {
            assert!(
                Instant::now() < deadline,
                "the child never ran {}",
                program.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(stopped);
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let hello = first_answer(&mut conn);
        let _ = child.kill();
        let _ = child.wait();
        d.terminate();
        hello
    }

    /// Root whose exec gives no capabilities (`SECBIT_NOROOT`, none inherited, its bounding
    /// set CAP_SYS_ADMIN and CAP_BPF) connects with none, queues `hello` and runs a program
    /// with file capabilities before bpfnsd accepts (bpfnsd stopped meanwhile): with root
    /// never asked about it was served as host root, and so it was with root asked about only
    /// when it held less than its whole bounding set (which it then does). Every caller that
    /// holds capabilities is asked about.
    #[test]
    fn root_without_root_privileges_is_not_served_with_file_capabilities_gained_later() {
        bpfns_tests::require_kernel!();
        let Some(hello) = hello_after_running_file_capabilities("rt-noroot", |cmd| {
            let mut setpriv = Command::new("setpriv");
            setpriv
                .args(["--securebits", "+noroot", "--inh-caps", "-all"])
                .args(["--bounding-set", "-all,+sys_admin,+bpf", "--"])
                .arg(cmd.get_program())
                .args(cmd.get_args());
            setpriv
        }) else {
            return;
        };
        assert!(
            !answered_as_host_root(&hello),
            "root without capabilities was answered as host root after running a program \
             with file capabilities: {hello:?}"
        );
    }

    /// The fix above must not refuse who it should serve: a process of uid 1000 that is root
    /// of its own user and network namespace (its connection is a socket of that network
    /// namespace) holds capabilities there and is served with them.
    #[test]
    fn a_caller_with_capabilities_in_a_network_namespace_of_its_own_is_still_served() {
        use std::os::unix::process::CommandExt;
        bpfns_tests::require_kernel!();
        let d = TestDaemon::start("rt-fcaps-netns");
        let out = Command::new("unshare")
            .args(["--user", "--map-root-user", "--net", "--"])
            .arg(helper_path())
            .args(["rt-hello", d.socket.to_str().unwrap()])
            .uid(1000)
            .gid(1000)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        if said.is_empty() && !out.status.success() {
            bpfns_tests::skip(format!(
                "uid 1000 cannot make a user namespace here: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            return;
        }
        assert_eq!(said.trim(), "served / admin=false cap_bpf=true", "{out:?}");
    }

    /// Host root subscribes to every namespace's events and exits; a process that inherited
    /// the connection kept receiving them (a tenant's new namespaces, its members, its
    /// objects). The stream ends when its maker exits.
    #[test]
    fn an_event_stream_ends_with_its_maker() {
        bpfns_tests::require_kernel!();
        let d = TestDaemon::start("rt-events-maker");
        let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut maker = Command::new(helper_path())
            .args(["rt-subscribe-and-pass", d.socket.to_str().unwrap()])
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .spawn()
            .unwrap();
        let mut fds = Vec::new();
        bpfns_sys::unix::recv_exact_with_fds(&mine, &mut [0u8; 1], &mut fds).unwrap();
        let conn = std::os::unix::net::UnixStream::from(fds.pop().expect("the connection"));
        assert!(maker.wait().unwrap().success());
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut stream = bpfns_client::Client::from_stream(conn);
        // A namespace made now and then, its event read (reading writes nothing), until the
        // stream ends or half a minute has passed.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        let ended = loop {
            if Instant::now() > deadline {
                break false;
            }
            let path = format!("/secret-{}", seen.len());
            d.client().ns_create(&path).unwrap();
            match stream.next_event() {
                Ok(e) => seen.push(e.namespace),
                Err(_) => break true,
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            ended,
            "the event stream of a maker that exited went on: {} events, {:?}",
            seen.len(),
            seen.last()
        );
    }

    /// A uid-1000 user, root of a user namespace of its own and init of a pid namespace that
    /// user namespace owns, may name any pid of that pid namespace in `SCM_CREDENTIALS`. A
    /// host-root process that joined only that pid namespace (`nsenter -p`) connects, and its
    /// connection reaches the attacker, which writes `ns_list` naming the maker's pid: it was
    /// answered as host root. The writer's real uid and gid must be the maker's too.
    #[test]
    fn credentials_named_from_a_pid_namespace_of_ones_own() {
        bpfns_tests::require_kernel!();
        let d = TestDaemon::start("rt-pidns-forge");
        d.client().ns_create("/t").unwrap();
        let out = Command::new(helper_path())
            .args(["rt-pidns-forge", d.socket.to_str().unwrap()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !text.contains("answered"),
            "a request naming host root's pid from a pid namespace of the writer's own was \
             answered: {text}"
        );
        assert!(text.contains("refused"), "{text}\n{err}");
    }
}
