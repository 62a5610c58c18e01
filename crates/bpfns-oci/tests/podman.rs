//! podman with bpfns-oci, end to end: a private bpfnsd, podman with private storage and a
//! private containers.conf that registers the wrapper (nothing of the host's podman changes),
//! the local image `scripts/containers/setup.sh` builds (no registry).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bpfns_model::ObjectKind;
use bpfns_tests::{skip, skip_reason, TestDaemon};
use common::{create_and_list, text, Engine, Runtime, Spec, Wrappers, ARCHIVE};

const IMAGE: &str = "localhost/bpfns-test";

/// Why podman tests cannot run here, if they cannot.
fn podman_skip_reason() -> Option<String> {
    if let Some(r) = skip_reason() {
        return Some(r);
    }
    if Command::new("podman").arg("--version").output().is_err() {
        return Some("podman is not installed: run scripts/containers/setup.sh as root".into());
    }
    if !Path::new(ARCHIVE).exists() {
        return Some(format!(
            "the test image {ARCHIVE} is missing: run scripts/containers/setup.sh as root"
        ));
    }
    None
}

/// podman with its own storage and configuration under `dir`; everything is removed on drop.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    /// Register bpfns-oci for crun and runc (`bpfns-crun`, `bpfns-runc`) talking to `daemon`,
    /// and the same wrapper pointed at a socket nobody serves (`bpfns-down`).
    fn new(name: &str, daemon: &TestDaemon) -> Self {
        let dir = PathBuf::from(format!("/tmp/bpfns-podman-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = Podman { dir: dir.clone() };
        Wrappers::new(&dir, daemon);
        let conf = format!(
            "[containers]\n\
             default_ulimits = [\"nofile=20000:20000\", \"nproc=16384:16384\"]\n\
             [engine]\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             [engine.runtimes]\n\
             bpfns-crun = [\"{d}/up/bpfns-oci-crun\"]\n\
             bpfns-runc = [\"{d}/up/bpfns-oci-runc\"]\n\
             bpfns-down = [\"{d}/down/bpfns-oci-runc\"]\n",
            d = dir.display()
        );
        std::fs::write(dir.join("containers.conf"), conf).expect("containers.conf");
        let out = p.podman(&[
            "import",
            "-q",
            "--change",
            "CMD [\"/bin/sh\"]",
            ARCHIVE,
            IMAGE,
        ]);
        assert!(out.status.success(), "import: {}", text(&out));
        p
    }

    fn command(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"));
        c
    }

    fn podman(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("running podman")
    }

    /// `podman run --rm` of `sh -c script` with `runtime`, `--cap-add BPF`, no network.
    fn run(&self, runtime: &str, extra: &[&str], script: &str) -> Output {
        let mut args = vec![
            "run",
            "--rm",
            "--runtime",
            runtime,
            "--network=none",
            "--cap-add",
            "BPF",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        self.podman(&args)
    }
}

/// The engine tests' table (tests/common/mod.rs) on podman with runc.
impl Engine for Podman {
    fn name(&self) -> &str {
        "podman"
    }

    fn spawn(&self, s: &Spec<'_>) -> Command {
        let mut c = self.command();
        c.args(["run", "--rm", "--network=none", "--runtime"])
            .arg(match s.runtime {
                Runtime::Bpfns => "bpfns-runc",
                Runtime::Down => "bpfns-down",
            })
            .args([
                "--annotation",
                &format!("io.bpfns.namespace=/containers/{}", s.name),
            ]);
        if s.privileged {
            c.arg("--privileged");
        }
        if s.bpf {
            c.args(["--cap-add", "BPF"]);
        }
        if let Some(share) = s.share {
            c.args(["--volume", &format!("{}:/x", share.display())]);
        }
        c.args([IMAGE, "sh", "-c", &s.script]);
        c
    }

    fn is_namespace_of(&self, name: &str, namespace: &str) -> bool {
        namespace == format!("/containers/{name}")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-a", "-f"]);
        let _ = self.podman(&["system", "reset", "-f"]);
        // podman may leave its storage's own mounts behind when a container misbehaved.
        common::remove_private_dir(&self.dir);
    }
}

/// One podman test at a time: podman 4.3 loses a `run --rm` container's exit code now and
/// then on a loaded machine ("no such exit code (container in state running)").
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn two_containers_see_their_own_maps(runtime: &str) {
    if let Some(why) = podman_skip_reason() {
        skip(why);
        return;
    }
    let _serial = one_at_a_time();
    let d = TestDaemon::start(&format!("podman-{runtime}"));
    let p = Podman::new(runtime, &d);
    let rt = format!("bpfns-{runtime}");
    // Unique on the host: the host's list names every map, other tests' too.
    let pid = std::process::id();
    let (a, b) = (format!("{runtime}_a_{pid}"), format!("{runtime}_b_{pid}"));
    let ann = |n: &str| format!("io.bpfns.namespace=/containers/{n}");

    let out = p.run(&rt, &["--annotation", &ann("a")], &create_and_list(&a));
    let t = text(&out);
    assert!(out.status.success(), "container a: {t}");
    assert!(t.contains(&format!("name {a}")), "a sees its map: {t}");
    // The preloaded iterators of its bpffs are covered.
    assert!(
        t.contains("Permission denied"),
        "maps.debug is covered: {t}"
    );
    let out = p.run(&rt, &["--annotation", &ann("b")], &create_and_list(&b));
    let t = text(&out);
    assert!(out.status.success(), "container b: {t}");
    assert!(t.contains(&format!("name {b}")), "b sees its map: {t}");
    assert!(!t.contains(&a), "b does not see a's map or pin: {t}");
    // a again: its pin is there, b's map is not visible.
    let out = p.run(
        &rt,
        &["--annotation", &ann("a")],
        "bpftool map list; ls /sys/fs/bpf",
    );
    let t = text(&out);
    assert!(t.contains(&a) && !t.contains(&b), "a's view: {t}");

    // The host sees both, with their owners.
    let maps = d.client().list(ObjectKind::Map).expect("list");
    let owner = |n: &str| {
        maps.iter()
            .find(|m| m.name == n)
            .map(|m| m.namespace.clone())
    };
    assert_eq!(owner(&a).as_deref(), Some("/containers/a"), "{maps:?}");
    assert_eq!(owner(&b).as_deref(), Some("/containers/b"), "{maps:?}");

    // Without bpfns-oci: the engine's profile, unchanged (bpf() refused without
    // CAP_SYS_ADMIN), and no bpffs.
    let out = p.run(runtime, &[], "bpftool map list; ls /sys/fs/bpf; echo ran");
    let t = text(&out);
    assert!(out.status.success(), "plain container: {t}");
    assert!(
        t.contains("ran") && t.contains("Operation not permitted"),
        "{t}"
    );
    assert!(!t.contains(&a) && !t.contains(&b), "{t}");

    // bpfnsd down: the container does not start, and the message names the cause.
    let out = p.run("bpfns-down", &[], "echo started");
    let t = text(&out);
    assert!(!out.status.success(), "started without bpfnsd: {t}");
    assert!(!t.contains("started\n"), "{t}");
    assert!(t.contains("cannot connect to bpfnsd"), "{t}");
}

#[test]
fn podman_on_runc() {
    two_containers_see_their_own_maps("runc");
}

/// crun 1.8 sends the listener from a child of the container's init that shares the init's
/// file descriptor table (`clone(CLONE_FILES)`), and the kernel side stops such a child of a
/// namespace task: the container does not start (see docs/containers.md).
#[test]
#[ignore = "crun sends the listener from a CLONE_FILES child of the tagged init, which the kernel side stops (docs/containers.md)"]
fn podman_on_crun() {
    two_containers_see_their_own_maps("crun");
}

/// The table the Docker and containerd tests run, on podman: with a sibling running at the
/// same time, and host root in a privileged container.
#[test]
fn podman_table_on_runc() {
    if let Some(why) = podman_skip_reason() {
        skip(why);
        return;
    }
    let _serial = one_at_a_time();
    let d = TestDaemon::start("podman-table");
    let p = Podman::new("table", &d);
    common::rfc_table(&p, &d, &p.dir, "pm");
}
