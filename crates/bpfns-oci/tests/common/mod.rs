//! What the engine tests share: the wrapper registered for a test daemon, private engine
//! directories that go away on drop, and the end-to-end table every engine must pass.
#![allow(dead_code)] // each test binary uses its part

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bpfns_model::ObjectKind;
use bpfns_tests::{skip_reason, TestDaemon};

pub mod podman;

/// The image `scripts/containers/setup.sh` builds, as podman imports it.
pub const ARCHIVE: &str = "/var/lib/bpfns-containers/bpfns-test.tar";
/// The same image as a docker archive, for `docker load` and `ctr images import`.
pub const DOCKER_ARCHIVE: &str = "/var/lib/bpfns-containers/bpfns-test.docker.tar";
/// Its name in every engine.
pub const IMAGE: &str = "localhost/bpfns-test:latest";
/// How long a container may take to reach a step of the table (engines start slowly on a
/// loaded machine; the containers' own waits are bounded by the same time).
pub const STEP: Duration = Duration::from_secs(120);

/// Why an engine test cannot run here: not root, no BTF, or `scripts/containers/setup.sh` has
/// not run. Once it has, a missing engine is a failure, not a skip.
pub fn engine_skip_reason(engine: &str, binaries: &[&str]) -> Option<String> {
    if let Some(r) = skip_reason() {
        return Some(r);
    }
    if !Path::new(DOCKER_ARCHIVE).exists() {
        return Some(format!(
            "the {engine} test image {DOCKER_ARCHIVE} is missing: run scripts/containers/setup.sh as root"
        ));
    }
    for b in binaries {
        assert!(
            which(b).is_some(),
            "{b} is missing although scripts/containers/setup.sh has run: rerun it (it installs {engine})"
        );
    }
    None
}

/// `name` in `$PATH` or the usual directories.
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| name.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A command's output, which must be a success.
pub fn ok(mut c: Command, what: &str) -> Output {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("{what}: running {c:?}: {e}"));
    assert!(out.status.success(), "{what}: {c:?}: {}", text(&out));
    out
}

/// Create a pinned map named `name` and list the maps the container sees.
pub fn create_and_list(name: &str) -> String {
    format!(
        "bpftool map create /sys/fs/bpf/{name} type array key 4 value 4 entries 1 name {name} \
         && bpftool map list && ls /sys/fs/bpf && (cat /sys/fs/bpf/maps.debug || true)"
    )
}

/// Where a test's containers reach bpfnsd: a daemon of the test's own, or a running one.
pub trait Sockets {
    fn socket(&self) -> PathBuf;
    fn seccomp_socket(&self) -> PathBuf;
}

impl Sockets for TestDaemon {
    fn socket(&self) -> PathBuf {
        self.socket.clone()
    }

    fn seccomp_socket(&self) -> PathBuf {
        self.dir.join("seccomp.sock")
    }
}

/// bpfns-oci: `$BPFNS_OCI` (an installed one, for the package test), else the one cargo built.
pub fn wrapper_path() -> PathBuf {
    std::env::var_os("BPFNS_OCI").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_bpfns-oci")),
        PathBuf::from,
    )
}

/// bpfns-oci as engines start it, talking to a test daemon: `up/bpfns-oci-runc` (and
/// `-crun`) with that daemon's sockets beside it in `bpfns-oci.toml`, and `down/...` pointed
/// at a socket nobody serves.
#[derive(Debug)]
pub struct Wrappers {
    pub up: PathBuf,
    pub down: PathBuf,
}

impl Wrappers {
    pub fn new(dir: &Path, daemon: &dyn Sockets) -> Self {
        let wrapper = wrapper_path();
        for (sub, socket) in [("up", daemon.socket()), ("down", dir.join("nobody.sock"))] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).expect("mkdir");
            for rt in ["crun", "runc"] {
                std::os::unix::fs::symlink(&wrapper, d.join(format!("bpfns-oci-{rt}")))
                    .expect("symlink");
            }
            std::fs::write(
                d.join("bpfns-oci.toml"),
                format!(
                    "socket = {:?}\nseccomp_socket = {:?}\n",
                    socket,
                    daemon.seccomp_socket()
                ),
            )
            .expect("bpfns-oci.toml");
        }
        Wrappers {
            up: dir.join("up"),
            down: dir.join("down"),
        }
    }
}

/// bpfns (the CLI): `$BPFNS_CLI`, else built now with the cargo that runs the tests (another
/// package's binary: cargo does not build it for this one), into the same target directory.
pub fn cli_path() -> PathBuf {
    if let Some(p) = std::env::var_os("BPFNS_CLI") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("the target profile folder")
        .to_path_buf();
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.args(["build", "-q", "-p", "bpfns-cli", "--bin", "bpfns"]);
    if profile_dir.ends_with("release") {
        c.arg("--release");
    }
    let status = c.status().expect("running cargo build");
    assert!(status.success(), "building bpfns: {status}");
    profile_dir.join("bpfns")
}

/// bpfns-oci as a package installs it, in a directory of its own (`DIR/installed`) with its
/// settings beside it (the test daemon's sockets), for `bpfns containers install` to register.
pub struct Installed {
    pub bin: PathBuf,
    state: PathBuf,
    bpfns: PathBuf,
}

impl Installed {
    pub fn new(dir: &Path, daemon: &dyn Sockets) -> Self {
        let bin = dir.join("installed");
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::os::unix::fs::symlink(wrapper_path(), bin.join("bpfns-oci")).expect("symlink");
        std::fs::write(
            bin.join("bpfns-oci.toml"),
            format!(
                "socket = {:?}\nseccomp_socket = {:?}\n",
                daemon.socket(),
                daemon.seccomp_socket()
            ),
        )
        .expect("bpfns-oci.toml");
        Installed {
            bin,
            state: dir.join("install-state"),
            bpfns: cli_path(),
        }
    }

    /// `bpfns -j containers install --engine ENGINE --config CONF` (records in a directory of
    /// the test's own), which must succeed; its JSON report.
    pub fn install(&self, engine: &str, conf: &Path, extra: &[&str]) -> serde_json::Value {
        let out = Command::new(&self.bpfns)
            .args([
                "-j",
                "containers",
                "install",
                "--engine",
                engine,
                "--config",
            ])
            .arg(conf)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--wrapper")
            .arg(self.bin.join("bpfns-oci"))
            .args(extra)
            .output()
            .expect("running bpfns");
        assert!(
            out.status.success(),
            "bpfns containers install --engine {engine}: {}",
            text(&out)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    }
}

/// A fresh private directory for an engine instance (`/tmp/bpfns-ENGINE-NAME-PID`).
pub fn private_dir(engine: &str, name: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/tmp/bpfns-{engine}-{name}-{}", std::process::id()));
    remove_private_dir(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

/// Unmount what an engine left mounted below `dir` (rootfs overlays, shm), then remove it.
pub fn remove_private_dir(dir: &Path) {
    if let Ok(mounts) = bpfns_sys::procfs::mounts_below(dir) {
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The cgroup the private engine instance `name` puts its containers under (in every
/// hierarchy): not the one a host engine uses (`docker`, containerd's namespaces), nor
/// another instance's of the same test binary, removed on drop.
pub fn cgroup_parent(engine: &str, name: &str) -> String {
    format!("bpfns-test-{engine}-{name}-{}", std::process::id())
}

/// Remove the (empty, once the containers are gone) cgroup `name` from every hierarchy.
pub fn remove_cgroups(name: &str) {
    fn remove(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hierarchies.flatten() {
        let dir = h.path().join(name);
        if dir.is_dir() {
            remove(&dir);
        }
    }
    let top = Path::new("/sys/fs/cgroup").join(name);
    if top.is_dir() {
        remove(&top);
    }
}

/// Host directories an engine makes whatever its configuration says: containerd 1.6's shims
/// put their sockets in `/run/containerd/s` (and remove them), dockerd makes
/// `/run/docker/plugins`. Those the test made go on drop, when empty.
#[derive(Debug)]
pub struct HostDirs(Vec<PathBuf>);

/// containerd's shims (also those of the containerd dockerd starts).
pub const SHIM_DIRS: [&str; 2] = ["/run/containerd", "/run/containerd/s"];
/// dockerd's plugin directory.
pub const DOCKER_DIRS: [&str; 2] = ["/run/docker", "/run/docker/plugins"];

impl HostDirs {
    /// Note which of `dirs` (parents first) do not exist yet.
    pub fn note(dirs: &[&str]) -> Self {
        HostDirs(
            dirs.iter()
                .map(PathBuf::from)
                .filter(|d| !d.exists())
                .collect(),
        )
    }
}

impl Drop for HostDirs {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            // Only when empty: a host engine that started meanwhile keeps its own.
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Stop a daemon the test started: SIGTERM, then SIGKILL after `grace`.
pub fn stop(child: &mut Child, grace: Duration) {
    let pid = child.id() as i32;
    // SAFETY: signalling our own child, which has not been reaped (it is waited for below).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Wait until `ready()` holds, at most `within`.
pub fn wait_for(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < until, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The output of `c`, which must end within [`STEP`] (killed and a failure otherwise): an
/// engine's client that hangs must not hang the test.
pub fn output_within(mut c: Command, what: &str) -> Output {
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: running {c:?}: {e}"));
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(STEP) {
        Ok(out) => out.unwrap_or_else(|e| panic!("{what}: {c:?}: {e}")),
        Err(_) => {
            // SAFETY: a plain kill(2) of our own child, not reaped yet (its waiter still
            // waits for it).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let out = rx.recv().ok().and_then(Result::ok);
            panic!(
                "{what}: {c:?} did not end within {STEP:?}: {}",
                out.map(|o| text(&o)).unwrap_or_default()
            );
        }
    }
}

/// Which runtime a container is started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// bpfns-oci talking to the test daemon.
    Bpfns,
    /// bpfns-oci pointed at a socket nobody serves (bpfnsd down).
    Down,
    /// The engine's default (no runtime named), as its configuration says.
    Default,
}

/// A container to run.
#[derive(Debug)]
pub struct Spec<'a> {
    /// Its name in the engine (unique within the test).
    pub name: &'a str,
    pub runtime: Runtime,
    /// Given the capability the engine grants for BPF.
    pub bpf: bool,
    /// `--privileged`: host root with every capability.
    pub privileged: bool,
    /// The host directory mounted at `/x`, if any.
    pub share: Option<&'a Path>,
    /// Run as `sh -c script`.
    pub script: String,
}

/// A container engine's private instance.
pub trait Engine {
    /// Its name in messages.
    fn name(&self) -> &str;
    /// The engine's client running the container to its end, started (not waited for).
    fn spawn(&self, spec: &Spec<'_>) -> Command;
    /// Whether `namespace` is the one bpfns-oci put the running container `name` in.
    fn is_namespace_of(&self, name: &str, namespace: &str) -> bool;
    /// The engine's exec: `cmd` run as a new process of the running container `name`, to its
    /// end.
    fn exec(&self, name: &str, cmd: &[&str]) -> Output;
    /// The engine removes the running container `name` (killed first), as its user does.
    fn remove(&self, name: &str) -> Output;
    /// The engine's client starting a container that stays when it stops (not removed with
    /// its end), detached: returns once it runs. (podman's lifetimes have tests of their
    /// own, `tests/lifecycle.rs`: the lifetime tables here are Docker's and containerd's.)
    fn run_kept(&self, _spec: &Spec<'_>) -> Output {
        unimplemented!("{}: the lifetime tables", self.name())
    }
    /// The engine stops (kills) the running container `name` without removing it.
    fn stop(&self, _name: &str) -> Output {
        unimplemented!("{}: the lifetime tables", self.name())
    }
    /// The engine starts the stopped container `name` again, detached.
    fn start(&self, _name: &str) -> Output {
        unimplemented!("{}: the lifetime tables", self.name())
    }
    /// A crash of the running container `name` with its engine: the engine's daemons, the
    /// container's shim and its init are killed (`SIGKILL`), and the runtime's state of it
    /// goes, as at a reboot (`/run` is emptied); the engine's files on disk stay.
    fn crash(&self, _name: &str) {
        unimplemented!("{}: the lifetime tables", self.name())
    }
    /// The engine's client in a container run to its end.
    fn run(&self, spec: &Spec<'_>) -> Output {
        let mut c = self.spawn(spec);
        c.output()
            .unwrap_or_else(|e| panic!("{}: running {c:?}: {e}", self.name()))
    }
}

/// An engine's client running a container; killed on drop (also when the test fails: the
/// engine's drop removes the container).
pub struct Running {
    child: Option<Child>,
    what: String,
}

impl Running {
    pub fn start(mut c: Command, what: &str) -> Self {
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: starting {c:?}: {e}"));
        Running {
            child: Some(child),
            what: what.into(),
        }
    }

    /// Whether it ended (then the test can stop waiting for it).
    pub fn ended(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    pub fn finish(mut self) -> Output {
        let child = self.child.take().expect("running");
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("{}: {e}", self.what))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A container that creates its pinned map `me`, lists, opens its own map by id, publishes
/// the id in `/x`, waits for its sibling's id, tries to open it, lists again, says it is
/// ready and waits for `/x/go` (so that both maps live while the host looks).
fn sibling_script(me: &str, sibling: &str) -> String {
    // Every wait is bounded: a test that failed elsewhere does not leave containers behind.
    let wait = |cond: &str| {
        format!(
            "i=0; while {cond} && [ $i -lt {} ]; do sleep 0.1; i=$((i+1)); done",
            STEP.as_secs() * 10
        )
    };
    format!(
        "bpftool map create /sys/fs/bpf/{me} type array key 4 value 4 entries 1 name {me} \
           || {{ echo create-failed; exit 1; }}\n\
         id=$(bpftool map show pinned /sys/fs/bpf/{me} | head -n1 | cut -d: -f1)\n\
         echo own=$id\n\
         bpftool map show id $id >/dev/null && echo own-opened\n\
         echo listing:; bpftool map list; ls /sys/fs/bpf; cat /sys/fs/bpf/maps.debug\n\
         echo $id >/x/{me}.tmp && mv /x/{me}.tmp /x/{me}.id\n\
         {}\n\
         sib=$(cat /x/{sibling}.id); echo sibling=$sib\n\
         if bpftool map show id $sib; then echo OPENED-SIBLING; else echo sibling-refused; fi\n\
         echo relisting:; bpftool map list; ls /sys/fs/bpf\n\
         touch /x/{me}.ready\n\
         {}\n\
         echo end\n",
        wait(&format!("[ ! -s /x/{sibling}.id ]")),
        wait("[ ! -e /x/go ]"),
    )
}

/// The value of `key=` on a line of `t`.
fn value_of(t: &str, key: &str) -> Option<u32> {
    t.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.trim().parse().ok())
}

/// What a container's trapped calls get when bpfnsd refused its seccomp listener.
const LISTENER_REFUSED: &str = "Function not implemented";

/// The table every engine passes, end to end: two containers allowed BPF each see their own
/// map only (listed, opened by id, pinned), not the sibling's; host root in a privileged
/// container cannot open either by id; the host sees both with their owners, and so does
/// their parent namespace (an ancestor sees its descendants); without bpfnsd a container
/// does not start and the engine's error names the cause.
///
pub fn rfc_table(e: &dyn Engine, d: &TestDaemon, dir: &Path, prefix: &str) {
    let share = dir.join("share");
    std::fs::create_dir_all(&share).expect("mkdir");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        table_once(e, d, &share, prefix, 1)
    }));
    // Containers of a failed run stop waiting.
    let _ = std::fs::write(share.join("go"), "");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn table_once(e: &dyn Engine, d: &TestDaemon, share: &Path, prefix: &str, attempt: u32) {
    let pid = std::process::id();
    let (a, b) = (format!("{prefix}_a_{pid}"), format!("{prefix}_b_{pid}"));
    let (name_a, name_b) = (format!("a{attempt}"), format!("b{attempt}"));
    let spec = |name: &'_ str, me: &str, sib: &str| -> (String, String) {
        (name.to_string(), sibling_script(me, sib))
    };
    let (sa, sb) = (spec(&name_a, &a, &b), spec(&name_b, &b, &a));
    let sibling = |(name, script): &(String, String)| {
        e.spawn(&Spec {
            name,
            runtime: Runtime::Bpfns,
            bpf: true,
            privileged: false,
            share: Some(share),
            script: script.clone(),
        })
    };
    // One after the other: a has made its map (its first calls answered) before b starts.
    // Started together, a runtime may exit before bpfnsd's receiver has read its
    // credentials, and bpfnsd then refuses the listener (docs/containers.md, "Not yet").
    let mut ca = Running::start(sibling(&sa), "container a");
    let a_published = share.join(format!("{a}.id"));
    let until = Instant::now() + STEP;
    while !a_published.exists() && !ca.ended() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut cb = Running::start(sibling(&sb), "container b");
    let both_ready =
        || share.join(format!("{a}.ready")).exists() && share.join(format!("{b}.ready")).exists();
    while !both_ready() {
        if ca.ended() || cb.ended() || Instant::now() > until + STEP {
            let _ = std::fs::write(share.join("go"), "");
            let (oa, ob) = (ca.finish(), cb.finish());
            panic!(
                "{}: the containers did not both get ready:\na: {}\nb: {}",
                e.name(),
                text(&oa),
                text(&ob)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // While both live: what the host sees, what their parent namespaces see (by the map's
    // name), and host root in a privileged container (a namespace of its own) trying both
    // ids. Asserted once every output is in, so that a failure shows them all.
    let maps = d.client().list(ObjectKind::Map).expect("list");
    let parents_see: Vec<(String, Vec<String>)> = maps
        .iter()
        .filter(|m| m.name == a || m.name == b)
        .filter_map(|m| m.namespace.rsplit_once('/').map(|(p, _)| p.to_string()))
        .filter(|p| !p.is_empty())
        .map(|p| {
            let seen = d
                .client()
                .list_in(ObjectKind::Map, Some(&p), true)
                .expect("list_in");
            (p, seen.into_iter().map(|o| o.name).collect())
        })
        .collect();
    let id_of = |n: &str| {
        std::fs::read_to_string(share.join(format!("{n}.id")))
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            // Asserted below, with the containers' outputs.
            .unwrap_or(0)
    };
    let ids = [id_of(&a), id_of(&b)];
    let owners: Vec<(String, bool)> = [&a, &b]
        .iter()
        .zip([&name_a, &name_b])
        .map(|(n, short)| {
            let ns = maps
                .iter()
                .find(|m| &&m.name == n)
                .map(|m| m.namespace.clone())
                .unwrap_or_default();
            let right = e.is_namespace_of(short, &ns);
            (ns, right)
        })
        .collect();
    let privileged = e.run(&Spec {
        name: &format!("privileged{attempt}"),
        runtime: Runtime::Bpfns,
        bpf: true,
        privileged: true,
        share: None,
        script: format!(
            "for id in {} {}; do bpftool map show id $id && echo OPENED-$id; done; \
             bpftool map list; ls /sys/fs/bpf; grep CapEff /proc/self/status; echo done",
            ids[0], ids[1]
        ),
    });
    std::fs::write(share.join("go"), "").expect("go");
    let (oa, ob) = (ca.finish(), cb.finish());
    let name = e.name();
    let (ta, tb, tp) = (text(&oa), text(&ob), text(&privileged));
    eprintln!("{name}: container {a}:\n{ta}\n{name}: container {b}:\n{tb}");
    eprintln!("{name}: privileged container:\n{tp}");

    for (who, t) in [(a.as_str(), &ta), (b.as_str(), &tb), ("privileged", &tp)] {
        assert!(
            !t.contains(LISTENER_REFUSED),
            "{who}: its trapped calls got ENOSYS ({LISTENER_REFUSED}): bpfnsd refused its \
             seccomp listener (its log says why; 'refusing a sender: reading /proc/PID' is \
             the runtime exiting before bpfnsd read its credentials): {t}"
        );
    }
    for (me, sib, out, t) in [(&a, &b, &oa, &ta), (&b, &a, &ob, &tb)] {
        assert!(out.status.success(), "{me}: {t}");
        assert!(!ids.contains(&0), "{me}: no id published: {t}");
        let own = value_of(t, "own").unwrap_or_else(|| panic!("{me}: no id: {t}"));
        assert!(
            t.contains("own-opened"),
            "{me} opens its own map by id: {t}"
        );
        assert!(
            t.contains(&format!("{own}: array  name {me}")),
            "{me} lists its map: {t}"
        );
        assert!(t.contains(&format!("\n{me}\n")), "{me} sees its pin: {t}");
        assert!(
            t.contains("Permission denied"),
            "maps.debug is covered: {t}"
        );
        assert!(
            t.contains("sibling-refused") && !t.contains("OPENED-SIBLING"),
            "{me} opens {sib} by id: {t}"
        );
        assert!(!t.contains(sib.as_str()), "{me} sees {sib}: {t}");
        assert!(t.contains("\nend\n"), "{t}");
    }

    // The host sees both, each owned by its container's namespace; so do their parents.
    for (n, (ns, right)) in [&a, &b].iter().zip(&owners) {
        assert!(
            !ns.is_empty(),
            "the host does not see {n}: {:?}",
            maps.iter()
                .map(|m| (&m.name, &m.namespace))
                .collect::<Vec<_>>()
        );
        assert!(
            right,
            "{name}: {n} is owned by {ns}, not its container's namespace"
        );
    }
    assert_ne!(owners[0].0, owners[1].0, "a and b share a namespace");
    for (parent, seen) in &parents_see {
        assert!(
            seen.contains(&a) || seen.contains(&b),
            "{parent} sees neither map: {seen:?}"
        );
    }
    for (n, ns) in [(&a, &owners[0].0), (&b, &owners[1].0)] {
        let parent = ns.rsplit_once('/').map(|(p, _)| p).unwrap_or_default();
        if !parent.is_empty() {
            assert!(
                parents_see
                    .iter()
                    .any(|(p, seen)| p == parent && seen.contains(n)),
                "{parent} does not see {n}: {parents_see:?}"
            );
        }
    }

    // Host root in a container: neither id opens, neither map is listed.
    let t = &tp;
    assert!(t.contains("done"), "the privileged container ran: {t}");
    let cap_eff = t
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no CapEff: {t}"));
    // CAP_SYS_ADMIN: everything the host's root may do with bpf().
    assert!(cap_eff & (1 << 21) != 0, "it is privileged: {t}");
    assert!(
        !t.contains("OPENED-"),
        "host root in a container opened a sibling's map: {t}"
    );
    assert_eq!(t.matches("No such file or directory").count(), 2, "{t}");
    assert!(!t.contains(&a) && !t.contains(&b), "{t}");

    // bpfnsd down: no container, and the engine's error names the cause.
    let out = e.run(&Spec {
        name: &format!("down{attempt}"),
        runtime: Runtime::Down,
        bpf: true,
        privileged: false,
        share: None,
        script: "echo started".into(),
    });
    let t = text(&out);
    eprintln!("{}: without bpfnsd:\n{t}", e.name());
    assert!(!out.status.success(), "started without bpfnsd: {t}");
    assert!(!t.contains("started\n"), "{t}");
    assert!(t.contains("cannot connect to bpfnsd"), "{t}");
}

/// A container allowed BPF that creates its pinned map `name` (named as the container), says
/// so in `/tmp/ready` and runs until `/x/go` appears in `share` (at most [`STEP`] five times).
pub fn exec_target<'a>(name: &'a str, share: &'a Path) -> Spec<'a> {
    let script = format!(
        "bpftool map create /sys/fs/bpf/{name} type array key 4 value 4 entries 1 name {name} \
           || {{ echo create-failed; exit 1; }}\n\
         touch /tmp/ready\n\
         i=0; while [ ! -e /x/go ] && [ $i -lt {} ]; do sleep 0.1; i=$((i+1)); done\n",
        STEP.as_secs() * 50
    );
    Spec {
        name,
        runtime: Runtime::Bpfns,
        bpf: true,
        privileged: false,
        share: Some(share),
        script,
    }
}

/// Wait until the running container `name` (see [`exec_target`]) made its map, asking through
/// the engine's exec; `running` is its client, whose output tells why when it ended.
pub fn wait_exec_ready(e: &dyn Engine, name: &str, running: Option<&mut Running>) {
    let until = Instant::now() + STEP;
    let mut running = running;
    loop {
        if e.exec(name, &["test", "-e", "/tmp/ready"]).status.success() {
            return;
        }
        let ended = running.as_mut().is_some_and(|r| r.ended());
        if ended || Instant::now() > until {
            // Its client's output so far (killed first if it still runs).
            let out = running.and_then(|r| r.child.take()).map(|mut c| {
                let _ = c.kill();
                c.wait_with_output()
                    .map(|o| text(&o))
                    .unwrap_or_else(|e| e.to_string())
            });
            panic!(
                "{}: container {name} never made its map: {}; its cgroups: {}",
                e.name(),
                out.unwrap_or_default(),
                text(&e.exec(name, &["cat", "/proc/self/cgroup"]))
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An engine's exec into running containers `a` and `b` (each with its pinned map named as
/// the container, see [`exec_target`]): the process joins its container's namespace before it
/// runs (runtimes join it to the container's cgroups, which bpfnsd bound to the namespace;
/// no hook runs for an exec). Its `bpftool map list` lists exactly its container's map (not
/// the sibling's, nor the root's), it opens its container's pin, opening the sibling's map by
/// id fails as for a map that does not exist (`ENOENT`), and a map it creates and pins is
/// owned by its container's namespace, also one made by its very first call. `helper` is
/// the shell command that execs the test helper inside the containers (its arguments follow).
/// Returns the namespaces of `a` and `b`.
pub fn exec_joins_the_container(
    e: &dyn Engine,
    d: &TestDaemon,
    a: &str,
    b: &str,
    helper: &str,
) -> (String, String) {
    let name = e.name();
    let maps = d.client().list(ObjectKind::Map).expect("list");
    let find = |maps: &[bpfns_proto::ObjectInfo], n: &str| {
        maps.iter()
            .find(|m| m.name == n)
            .map(|m| (m.id, m.namespace.clone()))
            .unwrap_or_else(|| panic!("{name}: the host does not see map {n}: {maps:?}"))
    };
    let ((a_id, ns_a), (b_id, ns_b)) = (find(&maps, a), find(&maps, b));
    assert!(
        e.is_namespace_of(a, &ns_a) && e.is_namespace_of(b, &ns_b) && ns_a != ns_b,
        "{name}: the containers' maps are owned by {ns_a} and {ns_b}"
    );

    for (me, sib, my_id) in [(a, b, a_id), (b, a, b_id)] {
        let out = e.exec(me, &["bpftool", "map", "list"]);
        let t = text(&out);
        eprintln!("{name}: exec in {me}: bpftool map list:\n{t}");
        assert!(out.status.success(), "{name} exec in {me}: {t}");
        let listed: Vec<&str> = t
            .lines()
            .filter(|l| {
                l.split_once(':')
                    .is_some_and(|(id, _)| id.parse::<u32>().is_ok())
            })
            .collect();
        assert_eq!(
            listed.len(),
            1,
            "{name}: exec in {me} lists exactly its container's map: {t}"
        );
        assert!(
            listed[0].starts_with(&format!("{my_id}: array  name {me}")),
            "{name}: exec in {me} lists its container's map: {t}"
        );
        assert!(!t.contains(sib), "{name}: exec in {me} sees {sib}: {t}");
    }

    let out = e.exec(
        a,
        &[
            "bpftool",
            "map",
            "show",
            "pinned",
            &format!("/sys/fs/bpf/{a}"),
        ],
    );
    let t = text(&out);
    assert!(
        out.status.success() && t.contains(&format!("{a_id}: array  name {a}")),
        "{name}: exec opens its container's pin: {t}"
    );
    // The sibling's map by id: as if it did not exist.
    let out = e.exec(a, &["bpftool", "map", "show", "id", &b_id.to_string()]);
    let t = text(&out);
    eprintln!("{name}: exec in {a}: bpftool map show id {b_id} ({b}'s):\n{t}");
    assert!(
        !out.status.success() && t.contains("No such file or directory"),
        "{name}: exec in {a} opens {b}'s map by id, or fails otherwise than ENOENT: {t}"
    );

    // Its first call is an untrapped MAP_CREATE (the test helper, which `sh -c` execs):
    // the map is the container's namespace's, so the process was in it before it ran.
    // (Pinned: the map outlives the helper.)
    let out = e.exec(
        a,
        &[
            "sh",
            "-c",
            // Its stdin at its end: the helper holds the map until EOF (`ctr task exec`
            // gives it a FIFO that stays open).
            // `create-perfmon`: with every capability it holds (`create` drops
            // CAP_SYS_ADMIN, Docker's only capability for BPF).
            &format!("{helper} create-perfmon map /sys/fs/bpf/{a}_first </dev/null"),
        ],
    );
    let t = text(&out);
    let first = value_of(&t, "id").unwrap_or_else(|| panic!("{name}: the helper: {t}"));
    let maps = d.client().list(ObjectKind::Map).expect("list");
    let owner = maps.iter().find(|m| m.id == first).map(|m| &m.namespace);
    eprintln!("{name}: exec in {a}: its first call made map {first}, owned by {owner:?}");
    assert_eq!(
        owner,
        Some(&ns_a),
        "{name}: the first map of an exec'd process is not its container's namespace's"
    );

    // A map an exec'd process creates and pins is its container's namespace's.
    let made = format!("{a}_exec");
    // What the kernel keeps of it (BPF_OBJ_NAME_LEN).
    let made_name: String = made.chars().take(15).collect();
    let out = e.exec(
        a,
        &[
            "sh",
            "-c",
            &format!(
                "bpftool map create /sys/fs/bpf/{made} type array key 4 value 4 entries 1 \
                 name {made} && bpftool map show pinned /sys/fs/bpf/{made}"
            ),
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{name}: exec creates a map: {t}");
    let maps = d.client().list(ObjectKind::Map).expect("list");
    let (made_id, owner) = find(&maps, &made_name);
    eprintln!("{name}: exec in {a} made map {made_id}, owned by {owner}");
    assert_eq!(
        owner, ns_a,
        "{name}: the map an exec'd process made is not its container's namespace's"
    );
    assert!(t.contains(&format!("{made_id}: array")), "{t}");
    // Its container sees it; the sibling does not, neither listed nor by id.
    let out = e.exec(a, &["bpftool", "map", "list"]);
    assert!(
        text(&out).contains(&format!("name {made_name}")),
        "{name}: exec in {a} does not list the map it made: {}",
        text(&out)
    );
    let out = e.exec(b, &["bpftool", "map", "show", "id", &made_id.to_string()]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("No such file or directory"),
        "{name}: exec in {b} opens the map made by an exec in {a}: {t}"
    );
    (ns_a, ns_b)
}

/// The exec table of Docker and containerd: two running containers allowed BPF, each with
/// its pinned map, and [`exec_joins_the_container`] through the engine's exec.
pub fn exec_table(e: &dyn Engine, d: &TestDaemon, dir: &Path, prefix: &str) {
    let share = dir.join("exec-share");
    std::fs::create_dir_all(&share).expect("mkdir");
    // The test helper, at /x in the containers, with the libraries it loads (the image may
    // lack some).
    std::fs::copy(bpfns_tests::keeper_program(), share.join("helper")).expect("the helper");
    for lib in bpfns_tests::helper_libraries() {
        let name = lib.file_name().expect("a library's file name");
        std::fs::copy(&lib, share.join(name)).expect("a library of the helper");
    }
    let pid = std::process::id();
    let (a, b) = (format!("{prefix}_xa_{pid}"), format!("{prefix}_xb_{pid}"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // One after the other, as in the table: a's listener taken before b starts.
        let mut ca = Running::start(e.spawn(&exec_target(&a, &share)), "container a");
        wait_exec_ready(e, &a, Some(&mut ca));
        let mut cb = Running::start(e.spawn(&exec_target(&b, &share)), "container b");
        wait_exec_ready(e, &b, Some(&mut cb));
        exec_joins_the_container(e, d, &a, &b, "export LD_LIBRARY_PATH=/x; exec /x/helper");
        std::fs::write(share.join("go"), "").expect("go");
        for (n, c) in [(&a, ca), (&b, cb)] {
            let out = c.finish();
            assert!(
                out.status.success(),
                "{}: container {n}: {}",
                e.name(),
                text(&out)
            );
        }
    }));
    // Containers of a failed run stop waiting.
    let _ = std::fs::write(share.join("go"), "");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// How long bpfnsd may take to delete a removed container's namespace: it watches the bundle
/// of a container its runtime deleted every 200 ms (docs/containers.md, "When containers go").
pub const REMOVED_WITHIN: Duration = Duration::from_secs(10);

/// The namespace of the running container `c` of engine `e`: the owner of the map named `c`
/// it made, which must be its container's.
pub fn namespace_of_map(e: &dyn Engine, d: &TestDaemon, c: &str) -> String {
    let name = e.name();
    let maps = d.client().list(ObjectKind::Map).expect("list");
    let ns = maps
        .iter()
        .find(|m| m.name == c)
        .map(|m| m.namespace.clone())
        .unwrap_or_else(|| panic!("{name}: the host does not see map {c}: {maps:?}"));
    assert!(
        e.is_namespace_of(c, &ns),
        "{name}: {c}'s map is owned by {ns}, not its container's namespace"
    );
    ns
}

/// The id of the map named `c` and its owner, as the host sees them.
fn map_named(d: &TestDaemon, c: &str) -> Option<(u32, String)> {
    let maps = d.client().list(ObjectKind::Map).expect("list");
    maps.iter()
        .find(|m| m.name == c)
        .map(|m| (m.id, m.namespace.clone()))
}

/// The engine removes container `c` (its map and pin named `c`, its namespace `ns`): the
/// namespace is gone within [`REMOVED_WITHIN`], the pin in the parent's
/// `orphans/<leaf>-<id>/`, the map owned by the parent, and `status` says it was removed.
pub fn removed_to_orphans(e: &dyn Engine, d: &TestDaemon, c: &str, ns: &str) {
    let name = e.name();
    let out = e.remove(c);
    assert!(out.status.success(), "{name}: removing {c}: {}", text(&out));
    let removed = Instant::now();
    while d.client().ns_show(ns).is_ok() {
        assert!(
            removed.elapsed() < REMOVED_WITHIN,
            "{name}: {ns} still exists {REMOVED_WITHIN:?} after the engine removed {c} \
             (bpfnsd's log: BPFNS_TEST_LOG=info)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "{name}: {ns} deleted {:?} after the engine removed {c}",
        removed.elapsed()
    );
    in_orphans(e, d, c, ns);
    let st = d.client().status().expect("status");
    assert!(
        st.collected_containers
            .iter()
            .any(|l| l.contains(ns) && l.contains("removed")),
        "{name}: {:?}",
        st.collected_containers
    );
}

/// The deleted namespace `ns`'s pin `c` is in its parent's `orphans/<leaf>-<id>/`, and the
/// map named `c` is owned by the parent.
fn in_orphans(e: &dyn Engine, d: &TestDaemon, c: &str, ns: &str) {
    let name = e.name();
    let (parent, leaf) = ns.rsplit_once('/').expect("a namespace path");
    let parent = if parent.is_empty() { "/" } else { parent };
    let parent_bpffs = d.client().ns_show(parent).expect("the parent").bpffs;
    let orphans = Path::new(&parent_bpffs).join("orphans");
    let entries: Vec<String> = std::fs::read_dir(&orphans)
        .unwrap_or_else(|e| panic!("{name}: {}: {e}", orphans.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let moved = entries
        .iter()
        .find(|o| o.starts_with(&format!("{leaf}-")))
        .unwrap_or_else(|| panic!("{name}: no orphans/{leaf}-* in {parent}: {entries:?}"));
    assert!(
        orphans.join(moved).join(c).exists(),
        "{name}: the pin {c} did not move to {parent}'s orphans/{moved}"
    );
    assert_eq!(
        map_named(d, c).map(|(_, owner)| owner).as_deref(),
        Some(parent),
        "{name}: the map moved to the parent"
    );
}

/// Whether namespace `ns` holds the pin `pin`.
fn pinned_in(d: &TestDaemon, ns: &str, pin: &str) -> bool {
    d.client()
        .ns_show(ns)
        .is_ok_and(|i| Path::new(&i.bpffs).join(pin).exists())
}

/// A running container allowed BPF pins a map; its namespace exists and owns it. The engine
/// removes the container: its namespace is gone within [`REMOVED_WITHIN`], the pin in the
/// parent's `orphans/<name>-<id>/` and the map owned by the parent.
pub fn lifecycle_table(e: &dyn Engine, d: &TestDaemon, dir: &Path, prefix: &str) {
    let share = dir.join("life-share");
    std::fs::create_dir_all(&share).expect("mkdir");
    let name = e.name();
    // At most 15 characters: the map's name is the pin's, and the kernel keeps 15.
    let c = format!("{prefix}_lc_{}", std::process::id() % 1_000_000);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut running = Running::start(e.spawn(&exec_target(&c, &share)), "container");
        wait_exec_ready(e, &c, Some(&mut running));
        let ns = namespace_of_map(e, d, &c);
        assert!(pinned_in(d, &ns, &c), "{name}: no pin {c} in {ns}");
        eprintln!("{name}: container {c} in {ns}");
        removed_to_orphans(e, d, &c, &ns);
        // The engine's client ended with its container.
        drop(running);
    }));
    let _ = std::fs::write(share.join("go"), "");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// At most [`STEP`] for `file` to appear; its text.
fn wait_file(e: &dyn Engine, file: &Path) -> String {
    wait_for(&format!("{}: {}", e.name(), file.display()), STEP, || {
        file.exists()
    });
    std::fs::read_to_string(file).unwrap_or_default()
}

/// The map lines of a `bpftool map list` output.
pub fn listed_maps(t: &str) -> Vec<&str> {
    t.lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(id, _)| id.trim().parse::<u32>().is_ok())
        })
        .collect()
}

/// A container allowed BPF that stays when it stops: at its first start it pins map `name`
/// (`/x/<name>.made`); at a later one, finding its pin, it writes what it sees of the pinned
/// map and its listing to `/x/<name>.again`. Then it sleeps.
pub fn kept_target<'a>(name: &'a str, share: &'a Path) -> Spec<'a> {
    let script = format!(
        "if [ -e /sys/fs/bpf/{name} ]; then\n\
           {{ bpftool map show pinned /sys/fs/bpf/{name}; echo listing:; bpftool map list; }} \
             >/x/{name}.tmp 2>&1; mv /x/{name}.tmp /x/{name}.again\n\
         else\n\
           bpftool map create /sys/fs/bpf/{name} type array key 4 value 4 entries 1 \
             name {name} || {{ echo create-failed; exit 1; }}\n\
           touch /x/{name}.made\n\
         fi\n\
         exec sleep {}\n",
        STEP.as_secs() * 5
    );
    Spec {
        name,
        runtime: Runtime::Bpfns,
        bpf: true,
        privileged: false,
        share: Some(share),
        script,
    }
}

/// A bpfnsd for the lifetime tables: containers collected every second, a container counted
/// as vanished two seconds after it was placed (so that the tables see what a collection
/// does, not only the watch after the runtime's `delete`).
pub fn collecting_daemon(name: &str) -> TestDaemon {
    TestDaemon::start_with(name, collect_often)
}

fn collect_often(c: &mut bpfnsd::Config) {
    c.containers.collect_interval_secs = 1;
    c.containers.vanish_grace_secs = 2;
}

/// Stopped without removal (`docker stop`; `ctr task kill` and `ctr task delete`): the
/// container's namespace and its pin stay (over several collections); started again
/// (`docker start`; a new task, `ctr task start`), it is in the same namespace and sees its
/// pinned map, the one map it lists. Removed then, its namespace goes. `d` collects often
/// ([`collecting_daemon`]).
pub fn stop_start_table(e: &dyn Engine, d: &TestDaemon, dir: &Path, prefix: &str) {
    let share = dir.join("kept-share");
    std::fs::create_dir_all(&share).expect("mkdir");
    let name = e.name();
    let c = format!("{prefix}_ks_{}", std::process::id() % 1_000_000);
    let out = e.run_kept(&kept_target(&c, &share));
    assert!(out.status.success(), "{name}: run {c}: {}", text(&out));
    wait_file(e, &share.join(format!("{c}.made")));
    let ns = namespace_of_map(e, d, &c);
    let (id, _) = map_named(d, &c).expect("its map");
    assert!(pinned_in(d, &ns, &c), "{name}: no pin {c} in {ns}");
    eprintln!("{name}: container {c} in {ns}, its map {id} pinned");

    let out = e.stop(&c);
    assert!(out.status.success(), "{name}: stopping {c}: {}", text(&out));
    // Several collections, and longer than the watch of a deleted container's bundle needs.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        d.client().ns_show(&ns).is_ok(),
        "{name}: {ns} was deleted when {c} stopped (bpfnsd's log: BPFNS_TEST_LOG=info): {:?}",
        d.client().status().map(|s| s.collected_containers)
    );
    assert!(pinned_in(d, &ns, &c), "{name}: the pin {c} left {ns}");
    assert_eq!(
        map_named(d, &c),
        Some((id, ns.clone())),
        "{name}: {c}'s map"
    );

    let out = e.start(&c);
    assert!(out.status.success(), "{name}: starting {c}: {}", text(&out));
    let t = wait_file(e, &share.join(format!("{c}.again")));
    eprintln!("{name}: {c} started again:\n{t}");
    assert!(
        t.starts_with(&format!("{id}: array  name {c}")),
        "{name}: {c} started again does not see its pinned map {id}: {t}"
    );
    let (_, listing) = t.split_once("listing:").expect("its listing");
    let listed = listed_maps(listing);
    assert!(
        listed.len() == 1 && listed[0].starts_with(&format!("{id}: array  name {c}")),
        "{name}: {c} started again lists exactly its map: {t}"
    );
    assert_eq!(
        map_named(d, &c),
        Some((id, ns.clone())),
        "{name}: {c}'s map"
    );
    removed_to_orphans(e, d, &c, &ns);
}

/// Two containers allowed BPF, each with its pinned map, wait for `/x/<name>.go` and then
/// write what they see to `/x/<name>.after`: their listing, and what opening the sibling's
/// map by id gives.
fn after_restart_script(me: &str, sibling: &str) -> String {
    let wait = |cond: &str| {
        format!(
            "i=0; while {cond} && [ $i -lt {} ]; do sleep 0.1; i=$((i+1)); done",
            STEP.as_secs() * 10
        )
    };
    format!(
        "bpftool map create /sys/fs/bpf/{me} type array key 4 value 4 entries 1 name {me} \
           || {{ echo create-failed; exit 1; }}\n\
         id=$(bpftool map show pinned /sys/fs/bpf/{me} | head -n1 | cut -d: -f1)\n\
         echo $id >/x/{me}.tmp && mv /x/{me}.tmp /x/{me}.id\n\
         {}\n\
         {}\n\
         {{ echo own:; bpftool map show pinned /sys/fs/bpf/{me}; echo listing:; bpftool map list; \
            echo sibling:; bpftool map show id $(cat /x/{sibling}.id); echo end; }} \
           >/x/{me}.tmp 2>&1; mv /x/{me}.tmp /x/{me}.after\n\
         {}\n",
        wait(&format!("[ ! -s /x/{sibling}.id ]")),
        wait(&format!("[ ! -e /x/{me}.go ]")),
        wait("[ ! -e /x/go ]"),
    )
}

/// bpfnsd restarted while two containers allowed BPF run (each with its pinned map): after
/// the restart each container's own `bpf()` calls are still answered from its namespace (it
/// lists its own map only; the sibling's id answers `ENOENT`), and removed afterwards, each
/// one's namespace goes. Returns the restarted daemon.
pub fn restart_table(e: &dyn Engine, d: TestDaemon, dir: &Path, prefix: &str) -> TestDaemon {
    let share = dir.join("restart-share");
    std::fs::create_dir_all(&share).expect("mkdir");
    let name = e.name();
    let pid = std::process::id() % 1_000_000;
    let (a, b) = (format!("{prefix}_ra_{pid}"), format!("{prefix}_rb_{pid}"));
    let spec = |me: &str, sib: &str| (me.to_string(), after_restart_script(me, sib));
    let mut d = Some(d);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut running = Vec::new();
        for (me, script) in [spec(&a, &b), spec(&b, &a)] {
            let s = Spec {
                name: &me,
                runtime: Runtime::Bpfns,
                bpf: true,
                privileged: false,
                share: Some(&share),
                script,
            };
            running.push(Running::start(e.spawn(&s), "container"));
            wait_file(e, &share.join(format!("{me}.id")));
        }
        let dd = d.as_ref().expect("the daemon");
        let (ns_a, ns_b) = (namespace_of_map(e, dd, &a), namespace_of_map(e, dd, &b));
        let ids: Vec<u32> = [&a, &b]
            .iter()
            .map(|c| map_named(dd, c).expect("its map").0)
            .collect();

        let (ddir, layout) = d.take().expect("the daemon").stop();
        d = Some(TestDaemon::start_configured(
            ddir,
            layout,
            false,
            collect_often,
        ));
        let dd = d.as_ref().expect("the daemon");
        eprintln!("{name}: bpfnsd restarted while {a} and {b} run");

        for (me, sib, my_id, sib_id) in [(&a, &b, ids[0], ids[1]), (&b, &a, ids[1], ids[0])] {
            std::fs::write(share.join(format!("{me}.go")), "").expect("go");
            let t = wait_file(e, &share.join(format!("{me}.after")));
            eprintln!("{name}: {me} after bpfnsd's restart:\n{t}");
            assert!(
                !t.contains(LISTENER_REFUSED),
                "{name}: {me} is no longer supervised: {t}"
            );
            let listing = t
                .split_once("listing:")
                .and_then(|(_, r)| r.split_once("sibling:"))
                .map(|(l, _)| l)
                .unwrap_or_else(|| panic!("{name}: {me}: {t}"));
            let listed = listed_maps(listing);
            assert!(
                listed.len() == 1 && listed[0].starts_with(&format!("{my_id}: array  name {me}")),
                "{name}: {me} lists exactly its own map after bpfnsd's restart: {t}"
            );
            let (_, sibling) = t.split_once("sibling:").expect("sibling");
            assert!(
                !sibling.contains(&format!("{sib_id}: array"))
                    && !sibling.contains(sib.as_str())
                    && sibling.contains("No such file or directory"),
                "{name}: {me} opens {sib}'s map {sib_id} after bpfnsd's restart: {t}"
            );
        }
        for (c, ns) in [(&a, &ns_a), (&b, &ns_b)] {
            removed_to_orphans(e, dd, c, ns);
        }
        drop(running);
    }));
    let _ = std::fs::write(share.join("go"), "");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    d.expect("the daemon")
}

/// A container allowed BPF with its pinned map vanishes without a stop: its engine, shim and
/// init killed, the runtime's state gone (as at a reboot). bpfnsd (collecting every second,
/// [`collecting_daemon`]) collects its namespace within a few collections, its pin in the
/// parent's orphans, and `status` says it vanished.
pub fn vanish_table(e: &dyn Engine, d: &TestDaemon, dir: &Path, prefix: &str) {
    let share = dir.join("vanish-share");
    std::fs::create_dir_all(&share).expect("mkdir");
    let name = e.name();
    let c = format!("{prefix}_vn_{}", std::process::id() % 1_000_000);
    let out = e.run_kept(&kept_target(&c, &share));
    assert!(out.status.success(), "{name}: run {c}: {}", text(&out));
    wait_file(e, &share.join(format!("{c}.made")));
    let ns = namespace_of_map(e, d, &c);
    e.crash(&c);
    let crashed = Instant::now();
    // The grace (2 s) and a few collections (every second).
    let within = Duration::from_secs(10);
    while d.client().ns_show(&ns).is_ok() {
        assert!(
            crashed.elapsed() < within,
            "{name}: {ns} still exists {within:?} after {c} vanished (bpfnsd's log: \
             BPFNS_TEST_LOG=info): {:?}",
            d.client().status().map(|s| s.collected_containers)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "{name}: {ns} deleted {:?} after {c} vanished",
        crashed.elapsed()
    );
    in_orphans(e, d, &c, &ns);
    let st = d.client().status().expect("status");
    assert!(
        st.collected_containers
            .iter()
            .any(|l| l.contains(ns.as_str()) && l.contains("vanished")),
        "{name}: {:?}",
        st.collected_containers
    );
    assert!(
        st.counters
            .iter()
            .any(|(k, v)| k == "containers_collected" && *v >= 1),
        "{name}: {:?}",
        st.counters
    );
}

/// A crashed container's leftovers on the host: SIGKILL `pids` (engine daemons first, then
/// the shim and the init), remove the runtime's state directory of container `id` below
/// `dir` (what a reboot does to `/run`), and the shim's socket (a killed shim leaves it in
/// `/run/containerd/s`).
pub fn crash_leftovers(pids: &[i32], shim: i32, dir: &Path, id: &str) {
    let sockets = shim_sockets(shim);
    for &pid in pids.iter().chain([&shim]) {
        assert!(pid > 1, "pid {pid}");
        // SAFETY: a plain kill(2); the pids are the test's engine's processes, read just now.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for s in sockets {
        let _ = std::fs::remove_file(s);
    }
    let state = find_runc_state(dir, id, 6)
        .unwrap_or_else(|| panic!("no runc state of {id} below {}", dir.display()));
    std::fs::remove_dir_all(&state).expect("removing the runtime's state");
}

/// The sockets containerd's shim `pid` listens on in `/run/containerd/s` (it leaves them when
/// it is killed).
fn shim_sockets(pid: i32) -> Vec<PathBuf> {
    let inodes = bpfns_sys::procfs::socket_inodes(pid).unwrap_or_default();
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let inode: u32 = f.get(6)?.parse().ok()?;
            let path = f.get(7)?;
            (inodes.contains(&inode) && path.starts_with("/run/containerd/s/"))
                .then(|| PathBuf::from(path))
        })
        .collect()
}

/// Kill the containerd shims an engine instance under `dir` left running (their
/// `-address` is below `dir`), and remove their sockets. containerd 1.6 left a task's shim
/// running once here after the task and its container were deleted (in the bpfnsd-restart
/// table, whose removal deletes a task that `ctr run --rm` deletes too; the cause is not
/// known).
pub fn kill_shims_below(dir: &Path) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_shim = args
            .first()
            .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"));
        let ours = args.windows(2).any(|w| {
            w[0] == b"-address" && Path::new(std::ffi::OsStr::from_bytes(w[1])).starts_with(dir)
        });
        if is_shim && ours {
            let sockets = shim_sockets(pid);
            // SAFETY: a plain kill(2) of a shim of this test's own engine instance.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            for s in sockets {
                let _ = std::fs::remove_file(s);
            }
        }
    }
}

/// The directory `id` holding runc's `state.json` below `dir` (at most `depth` levels down).
fn find_runc_state(dir: &Path, id: &str, depth: usize) -> Option<PathBuf> {
    let candidate = dir.join(id);
    if candidate.join("state.json").is_file() {
        return Some(candidate);
    }
    if depth == 0 {
        return None;
    }
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .find_map(|e| find_runc_state(&e.path(), id, depth - 1))
}
