//! Support for bpfns's tests against the real kernel.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failed step fails the test
//!
//! Every test loads its own instance of the kernel side under its own pin root
//! ([`TestKernel`]) and unloads it when dropped — also when the test fails — so tests never
//! share state or leave an enforcing program behind. [`Helper`] runs `bpfns-test-helper`,
//! a process the test can tag before it acts.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use bpfns_kernel::{loader, Kernel, PinLayout};

/// Why a kernel test cannot run here, if it cannot (not root, no BPF, no BTF).
pub fn skip_reason() -> Option<String> {
    let status = bpfns_sys::procfs::read_status(std::process::id() as i32).unwrap_or_default();
    let euid_root = bpfns_sys::procfs::ids(&status, "Uid").is_some_and(|ids| ids[1] == 0);
    if !euid_root {
        return Some("needs root (CAP_SYS_ADMIN, CAP_BPF): run the suite as root".into());
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("needs kernel BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF=y)".into());
    }
    None
}

/// Say that the calling test skips (all of it, or the part `why` names): on stderr, and — so
/// that skips show in the suite's summary, where a passing test's stderr does not — as a line
/// `TEST: why` appended to the file `$BPFNS_SKIP_LOG` names (scripts/test.sh sets it).
pub fn skip(why: impl std::fmt::Display) {
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let bin = std::env::args()
        .next()
        .and_then(|a| {
            let name = std::path::Path::new(&a)
                .file_name()?
                .to_string_lossy()
                .into_owned();
            // Test binaries are named NAME-HASH.
            Some(
                name.rsplit_once('-')
                    .map_or(name.clone(), |(n, _)| n.to_string()),
            )
        })
        .unwrap_or_default();
    eprintln!("SKIPPED: {why}");
    if let Some(log) = std::env::var_os("BPFNS_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
        {
            let _ = writeln!(f, "{bin}::{test}: {why}");
        }
    }
}

/// Skip the calling test (with the reason, see [`skip`]) when the kernel tests cannot run here.
#[macro_export]
macro_rules! require_kernel {
    () => {
        if let Some(why) = $crate::skip_reason() {
            $crate::skip(why);
            return;
        }
    };
}

/// A private instance of the kernel side, unloaded on drop.
#[derive(Debug)]
pub struct TestKernel {
    pub layout: PinLayout,
    pub kernel: Kernel,
}

impl TestKernel {
    /// Load a fresh instance pinned at `/sys/fs/bpf/bpfns-test-<name>-<pid>`.
    pub fn load(name: &str) -> Self {
        let layout = PinLayout::new(format!(
            "/sys/fs/bpf/bpfns-test-{name}-{}",
            std::process::id()
        ));
        let _ = loader::unload(&layout);
        // Unloads even if loading fails half-way.
        let guard = UnloadOnDrop(layout.clone());
        loader::load(&layout).unwrap_or_else(|e| panic!("loading the kernel side: {e}"));
        let kernel = Kernel::open(&layout).expect("opening the kernel side");
        std::mem::forget(guard);
        Self { layout, kernel }
    }
}

struct UnloadOnDrop(PinLayout);

impl Drop for UnloadOnDrop {
    fn drop(&mut self) {
        let _ = loader::unload(&self.0);
    }
}

impl Drop for TestKernel {
    fn drop(&mut self) {
        if let Err(e) = loader::unload(&self.layout) {
            eprintln!("warning: unloading {}: {e}", self.layout.root().display());
        }
    }
}

/// A unique pin path for a test object, removed on drop.
#[derive(Debug)]
pub struct TempPin(pub PathBuf);

impl TempPin {
    pub fn new(name: &str) -> Self {
        let _ = bpfns_sys::fs::ensure_bpffs(std::path::Path::new("/sys/fs/bpf"));
        let p = PathBuf::from(format!(
            "/sys/fs/bpf/bpfns-test-pin-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&p);
        Self(p)
    }
}

impl Drop for TempPin {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How long to wait for a helper's line before failing (never hang the suite).
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where cargo put `bpfns-test-helper` (beside the `deps/` folder of the running test), as a
/// path every uid can execute ([`reachable_exe`]): the red-team suite runs it as uid 1000.
pub fn helper_path() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("BPFNS_TEST_HELPER") {
            return p.into();
        }
        let exe = std::env::current_exe().expect("current_exe");
        let dir = exe.parent().expect("test binary has a folder");
        let dir = if dir.ends_with("deps") {
            dir.parent().expect("target profile folder")
        } else {
            dir
        };
        reachable_exe(&dir.join("bpfns-test-helper"))
    })
    .clone()
}

/// The `bpfns` CLI for the CLI's tests: `$BPFNS_CLI` if set (the VM lane installs it in the
/// VM), else `built` (the path cargo compiled into the test), made reachable by every uid.
pub fn cli_path(built: &str) -> PathBuf {
    match std::env::var_os("BPFNS_CLI") {
        Some(p) => p.into(),
        None => reachable_exe(std::path::Path::new(built)),
    }
}

/// `exe` itself if every uid can reach and run it; else a copy that every uid can run, under
/// `/tmp/bpfns-test-bin/` (a clone under a 0700 directory such as `/root` or a fresh `mktemp
/// -d` is out of reach for the tests' uid 1000 and user-namespace processes). The copy is
/// named after the original's path, size and modification time, so a rebuild gets a new one.
pub fn reachable_exe(exe: &std::path::Path) -> PathBuf {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let everyone_may_run = exe.ancestors().skip(1).all(|d| {
        d.as_os_str().is_empty()
            || std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    }) && std::fs::metadata(exe)
        .is_ok_and(|m| m.permissions().mode() & 0o001 != 0);
    if everyone_may_run {
        return exe.to_path_buf();
    }
    let meta = std::fs::metadata(exe)
        .unwrap_or_else(|e| panic!("{}: {e} (build it first: cargo build)", exe.display()));
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (exe, meta.len(), meta.mtime(), meta.mtime_nsec()).hash(&mut h);
    let top = PathBuf::from("/tmp/bpfns-test-bin");
    let dir = top.join(format!("{:016x}", h.finish()));
    let name = exe.file_name().expect("an executable has a name");
    let copy = dir.join(name);
    if copy.exists() {
        return copy;
    }
    for d in [&top, &dir] {
        let _ = std::fs::create_dir(d);
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    }
    // Copied under a private name and renamed, so that concurrent tests never run a half copy.
    let tmp = dir.join(format!(
        ".{}.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::copy(exe, &tmp).unwrap_or_else(|e| panic!("copying {}: {e}", exe.display()));
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
    std::fs::rename(&tmp, &copy).unwrap_or_else(|e| panic!("{}: {e}", copy.display()));
    copy
}

/// The shared libraries the helper program loads (`ldd`), the loader excepted: what a
/// container image may lack when the helper is run inside it.
pub fn helper_libraries() -> Vec<PathBuf> {
    let out = Command::new("ldd")
        .arg(keeper_program())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_once("=>").map(|(_, r)| r.trim()))
        .filter_map(|r| r.split_whitespace().next())
        .filter(|p| p.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

/// The program a [`TestDaemon`] starts as its listener keeper: `bpfns-test-helper --keeper`
/// runs what `bpfnsd --keeper` runs. Unless `BPFNS_TEST_HELPER` names one, the helper is
/// built (once per test process) with the cargo that runs the tests, so that it is never
/// older than the code under test (packages other than bpfns-tests do not build it).
pub fn keeper_program() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("BPFNS_TEST_HELPER").is_none() {
        BUILT.call_once(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let release = helper_path()
                .parent()
                .is_some_and(|d| d.ends_with("release"));
            let mut c = Command::new(cargo);
            c.args([
                "build",
                "-q",
                "-p",
                "bpfns-tests",
                "--bin",
                "bpfns-test-helper",
            ]);
            if release {
                c.arg("--release");
            }
            match c.status() {
                Ok(s) if s.success() => {}
                other => eprintln!("warning: building bpfns-test-helper: {other:?}"),
            }
        });
    }
    helper_path()
}

/// A running `bpfns-test-helper`.
#[derive(Debug)]
pub struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pub pid: i32,
}

impl Helper {
    /// Start the helper; it waits for [`go`](Self::go) before acting.
    pub fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(helper_path())
            .arg("--wait")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning bpfns-test-helper");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            pid: child.id() as i32,
            stdin: child.stdin.take(),
            child,
            lines: rx,
        }
    }

    /// Let the helper act.
    pub fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(b"g").expect("writing the go byte");
        stdin.flush().expect("flush");
    }

    /// The next line of output, or `None` when the helper closed stdout.
    pub fn line(&mut self) -> Option<String> {
        self.lines.recv_timeout(LINE_TIMEOUT).ok()
    }

    /// Read lines until one is `key=value`; return the value. Panics if output ends first.
    pub fn expect(&mut self, key: &str) -> String {
        let prefix = format!("{key}=");
        loop {
            match self.line() {
                Some(l) => {
                    if let Some(v) = l.strip_prefix(&prefix) {
                        return v.to_string();
                    }
                }
                None => panic!("helper ended without printing {key}="),
            }
        }
    }

    /// Like [`expect`](Self::expect) but returns `None` if output ends without `key`.
    pub fn maybe(&mut self, key: &str) -> Option<String> {
        let prefix = format!("{key}=");
        while let Some(l) = self.line() {
            if let Some(v) = l.strip_prefix(&prefix) {
                return Some(v.to_string());
            }
        }
        None
    }

    /// Close stdin (ends any hold) and wait for the helper to exit.
    pub fn finish(mut self) -> ExitStatus {
        self.stdin.take();
        self.child.wait().expect("waiting for the helper")
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.stdin.take();
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Was the process killed by SIGKILL?
pub fn killed(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(9)
}

/// A bpfnsd running inside the test process, with its own socket, database, pin root and
/// namespace bpffs directory; torn down (kernel side unloaded, bpffs instances unmounted)
/// on drop.
pub struct TestDaemon {
    daemon: Option<std::sync::Arc<bpfnsd::Daemon>>,
    pub socket: PathBuf,
    pub dir: PathBuf,
    pub layout: PinLayout,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for TestDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDaemon")
            .field("socket", &self.socket)
            .finish()
    }
}

impl TestDaemon {
    /// Start a daemon named `name` (unique per test).
    pub fn start(name: &str) -> Self {
        let (dir, layout) = daemon_paths("d", name);
        Self::start_at(dir, layout, true)
    }

    /// Start a daemon named `name` whose configuration `tweak` changes first.
    pub fn start_with(name: &str, tweak: impl FnOnce(&mut bpfnsd::Config)) -> Self {
        let (dir, layout) = daemon_paths("d", name);
        Self::start_configured(dir, layout, true, tweak)
    }

    /// Start a daemon named `name` with these limits.
    pub fn start_with_limits(name: &str, limits: bpfnsd::config::Limits) -> Self {
        Self::start_with(name, |c| c.limits = limits)
    }

    /// Start a daemon over existing state (`fresh = false`: keep the database and the
    /// pinned kernel side, as after a crash or restart).
    pub fn start_at(dir: PathBuf, layout: PinLayout, fresh: bool) -> Self {
        Self::start_configured(dir, layout, fresh, |_| {})
    }

    /// [`TestDaemon::start_at`] with a configuration `tweak` changes first.
    pub fn start_configured(
        dir: PathBuf,
        layout: PinLayout,
        fresh: bool,
        tweak: impl FnOnce(&mut bpfnsd::Config),
    ) -> Self {
        // bpfnsd's log on stderr, for debugging a test: BPFNS_TEST_LOG=info (a filter).
        if let Some(filter) = std::env::var_os("BPFNS_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter.to_string_lossy()))
                .try_init();
        }
        if fresh {
            cleanup_daemon_state(&dir, &layout);
        }
        let config = bpfnsd::Config {
            socket: dir.join("bpfns.sock"),
            state_dir: dir.join("state"),
            pin_root: layout.root().to_path_buf(),
            ns_bpffs_dir: dir.join("ns"),
            root_bpffs: root_bpffs_of(&layout),
            seccomp_socket: dir.join("seccomp.sock"),
            // Often, so that the tests run it concurrently with everything else.
            gc_interval_secs: 1,
            // The test process cannot be the keeper: the helper runs the same keeper code.
            keeper_program: Some(keeper_program()),
            limits: bpfnsd::config::Limits {
                // Suites keep one client across attacks that take long under emulation (the
                // VM lane): an idle close there would be a harness failure, not a finding.
                idle_timeout_secs: 600,
                ..bpfnsd::config::Limits::default()
            },
            ..bpfnsd::Config::default()
        };
        let mut config = config;
        tweak(&mut config);
        bpfnsd::start::raise_fd_limit();
        // Clean up if starting fails half-way.
        let guard = CleanupOnDrop(dir.clone(), layout.clone());
        loader::load(&layout).expect("loading the kernel side");
        std::fs::create_dir_all(&config.root_bpffs).expect("the root pin tree");
        let kernel = Kernel::open(&layout).expect("opening the kernel side");
        let store = bpfnsd::store::Store::open(&config.db_path()).expect("opening the store");
        let daemon = bpfnsd::Daemon::new(
            config.clone(),
            kernel,
            store,
            bpfnsd::caller::init_userns().expect("init userns"),
        )
        .unwrap_or_else(|f| panic!("daemon: {}", f.message));
        daemon
            .reconcile()
            .unwrap_or_else(|f| panic!("reconcile: {}", f.message));
        let daemon = std::sync::Arc::new(daemon);
        bpfnsd::supervisor::install(&daemon);
        bpfnsd::Daemon::spawn_collector(&daemon, Duration::from_secs(config.gc_interval_secs));
        let receiver = bpfnsd::daemon::oci::listen_seccomp(&config.seccomp_socket)
            .expect("binding the seccomp receiver");
        bpfnsd::daemon::oci::serve_seccomp(receiver, &daemon);
        if let Some(addr) = &config.metrics {
            bpfnsd::metrics::serve(addr, &daemon).expect("serving metrics");
        }
        let (listener, _) =
            bpfnsd::server::listen(&config.socket, config.socket_mode).expect("listening");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (d, s) = (daemon.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            if let Err(e) = bpfnsd::server::serve_until(listener, d, &s) {
                panic!("serving: {e}");
            }
        });
        std::mem::forget(guard);
        Self {
            daemon: Some(daemon),
            socket: config.socket,
            dir,
            layout,
            stop,
            thread: Some(thread),
        }
    }

    /// The listener keeper's socket.
    pub fn keeper_socket(&self) -> PathBuf {
        self.dir.join("state").join(bpfnsd::keeper::SOCKET_NAME)
    }

    /// The daemon.
    pub fn daemon(&self) -> &bpfnsd::Daemon {
        self.daemon.as_ref().expect("daemon running")
    }

    /// A client connected to this daemon.
    pub fn client(&self) -> bpfns_client::Client {
        bpfns_client::Client::connect(&self.socket).expect("connecting to the test daemon")
    }

    /// Stop serving (as a crash would: nothing is cleaned up; the listener keeper goes on
    /// holding the members' listeners). Returns what is needed to start again over the same
    /// state.
    pub fn stop(mut self) -> (PathBuf, PinLayout) {
        self.halt();
        self.daemon().detach_keeper();
        // Wait (bounded) for connection threads to let go, so the database is closed.
        let mut d = self.daemon.take().expect("daemon running");
        for _ in 0..200 {
            match std::sync::Arc::try_unwrap(d) {
                Ok(inner) => {
                    drop(inner);
                    break;
                }
                Err(back) => {
                    d = back;
                    std::thread::sleep(Duration::from_millis(25));
                }
            }
        }
        let dir = self.dir.clone();
        let layout = self.layout.clone();
        std::mem::forget(self);
        (dir, layout)
    }

    fn halt(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::os::unix::net::UnixStream::connect(&self.socket);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
        // The receiver's thread stays in accept() on the unlinked socket; a restart binds anew.
        let _ = std::fs::remove_file(self.dir.join("seccomp.sock"));
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.halt();
        // Before the keeper is retired: this daemon must not start a new one.
        if let Some(d) = self.daemon.take() {
            d.detach_keeper();
        }
        cleanup_daemon_state(&self.dir, &self.layout);
    }
}

struct CleanupOnDrop(PathBuf, PinLayout);

impl Drop for CleanupOnDrop {
    fn drop(&mut self) {
        cleanup_daemon_state(&self.0, &self.1);
    }
}

/// A test daemon's directory and pin root, unique per test (`name`) and test process; `kind`
/// keeps in-process and separate-process daemons apart.
fn daemon_paths(kind: &str, name: &str) -> (PathBuf, PinLayout) {
    let pid = std::process::id();
    (
        PathBuf::from(format!("/tmp/bpfns-test-{name}-{pid}")),
        PinLayout::new(format!("/sys/fs/bpf/bpfns-test-{kind}-{name}-{pid}")),
    )
}

/// A test daemon's root pin tree (where a deleted top-level namespace's pins go): beside its
/// pin root on the host's bpffs, so that no test leaves anything in `/sys/fs/bpf/orphans`.
pub fn root_bpffs_of(layout: &PinLayout) -> PathBuf {
    let mut p = layout.root().as_os_str().to_owned();
    p.push("-root");
    PathBuf::from(p)
}

/// Remove everything a test daemon leaves: its listener keeper, namespace bpffs mounts,
/// files, the kernel side, its root pin tree.
pub fn cleanup_daemon_state(dir: &std::path::Path, layout: &PinLayout) {
    bpfnsd::keeper::link::retire_at(&dir.join("state").join(bpfnsd::keeper::SOCKET_NAME));
    if let Ok(rd) = std::fs::read_dir(dir.join("ns")) {
        for e in rd.flatten() {
            let _ = bpfns_sys::fs::unmount_detach(&e.path());
        }
    }
    // bpfnsd makes the instances' directory a mount point of its own.
    let _ = bpfns_sys::fs::unmount_detach(&dir.join("ns"));
    // And whatever a test's configuration mounted elsewhere below it (an instances'
    // directory inside the state directory).
    for m in bpfns_sys::procfs::mounts_below(dir).unwrap_or_default() {
        let _ = bpfns_sys::fs::unmount_detach(&m);
    }
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(root_bpffs_of(layout));
    let _ = loader::unload(layout);
}

/// A bpfnsd in a process of its own (the helper's `daemon` action runs what the `bpfnsd`
/// binary runs), so that it can be SIGKILLed and started again over the same state. Torn
/// down (killed, kernel side unloaded, bpffs instances unmounted) on drop.
#[derive(Debug)]
pub struct ProcessDaemon {
    pub socket: PathBuf,
    pub dir: PathBuf,
    pub layout: PinLayout,
    /// bpfnsd's stderr, across restarts.
    pub log: PathBuf,
    /// Its log format (`--log-format`): `text` or `json`.
    log_format: &'static str,
    child: Option<Child>,
}

impl ProcessDaemon {
    /// Start a daemon named `name` (unique per test) over fresh state.
    pub fn start(name: &str) -> Self {
        Self::start_with_toml(name, "")
    }

    /// [`ProcessDaemon::start`] with bpfnsd.toml settings `toml` (paths are the harness's).
    pub fn start_with_toml(name: &str, toml: &str) -> Self {
        Self::start_logging(name, toml, "text")
    }

    /// [`ProcessDaemon::start_with_toml`], logging in `format` (`text` or `json`, as
    /// `bpfnsd --log-format` does).
    pub fn start_logging(name: &str, toml: &str, format: &'static str) -> Self {
        let (dir, layout) = daemon_paths("p", name);
        cleanup_daemon_state(&dir, &layout);
        if !toml.is_empty() {
            std::fs::create_dir_all(&dir).expect("the daemon's directory");
            std::fs::write(dir.join("bpfnsd.toml"), toml).expect("writing bpfnsd.toml");
        }
        let mut d = Self {
            socket: dir.join("bpfns.sock"),
            log: dir.with_extension("log"),
            dir,
            layout,
            log_format: format,
            child: None,
        };
        let _ = std::fs::remove_file(&d.log);
        if let Err(e) = d.spawn() {
            panic!("starting bpfnsd: {e}");
        }
        d
    }

    /// Start the process and wait until it serves; how long that took.
    pub fn spawn(&mut self) -> Result<Duration, String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        let mut cmd = Command::new(helper_path());
        cmd.arg("daemon")
            .arg(&self.dir)
            .arg(self.layout.root())
            .env(bpfnsd::logging::FORMAT_ENV, self.log_format)
            // At info, whatever the test's environment says (what the tests read is logged
            // there), unless BPFNS_TEST_DAEMON_LOG asks for more to find a failure's cause.
            .env_remove("RUST_LOG");
        if let Some(filter) = std::env::var_os("BPFNS_TEST_DAEMON_LOG") {
            cmd.env("RUST_LOG", filter);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawning the helper: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(LINE_TIMEOUT).unwrap_or_default();
        if line.trim() != "ready=1" {
            let _ = child.kill();
            let status = child.wait().map_err(|e| e.to_string())?;
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            return Err(format!(
                "bpfnsd did not become ready ({status}); its stderr ends with:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        self.child = Some(child);
        Ok(started.elapsed())
    }

    /// bpfnsd's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How bpfnsd ended, if it has (reaped then); `None` while it runs (or was never started).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGKILL bpfnsd and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM bpfnsd (what `systemctl stop` and `restart` send) and reap it; how it ended.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        if let Ok(fd) = bpfns_sys::process::open_pidfd(c.id() as i32) {
            let _ = bpfns_sys::unix::pidfd_signal(std::os::fd::AsFd::as_fd(&fd), libc::SIGTERM);
        }
        c.wait().ok()
    }

    /// A client connected to this daemon.
    pub fn client(&self) -> bpfns_client::Client {
        bpfns_client::Client::connect(&self.socket).expect("connecting to the test daemon")
    }

    /// The listener keeper's socket.
    pub fn keeper_socket(&self) -> PathBuf {
        self.dir.join("state").join(bpfnsd::keeper::SOCKET_NAME)
    }

    /// The listener keeper's counters (its pid among them), if one answers.
    pub fn keeper(&self) -> Option<bpfnsd::keeper::Counters> {
        bpfnsd::keeper::link::stats_at(&self.keeper_socket())
    }
}

impl Drop for ProcessDaemon {
    fn drop(&mut self) {
        self.kill();
        cleanup_daemon_state(&self.dir, &self.layout);
        // The log tells what went wrong: kept only then.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
