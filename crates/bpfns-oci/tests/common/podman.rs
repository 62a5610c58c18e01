//! podman with private storage, configuration and libpod state, the wrapper registered for a
//! test daemon (`bpfns-crun`, `bpfns-runc`, and `bpfns-down` pointed at a socket nobody serves);
//! nothing of the host's podman changes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bpfns_tests::skip_reason;

use super::{text, Engine, Runtime, Sockets, Spec, Wrappers, ARCHIVE};

/// The test image's name in podman's storage.
pub const IMAGE: &str = "localhost/bpfns-test";

/// Why podman tests cannot run here, if they cannot.
pub fn podman_skip_reason() -> Option<String> {
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

/// One podman test at a time in a test binary: podman 4.3 loses a `run --rm` container's exit
/// code now and then on a loaded machine ("no such exit code (container in state running)").
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// podman with its own storage and configuration under `dir`; everything is removed on drop.
pub struct Podman {
    pub dir: PathBuf,
}

impl Podman {
    /// Register bpfns-oci for crun and runc (`bpfns-crun`, `bpfns-runc`) talking to `daemon`,
    /// and the same wrapper pointed at a socket nobody serves (`bpfns-down`).
    pub fn new(name: &str, daemon: &dyn Sockets) -> Self {
        let dir = PathBuf::from(format!("/tmp/bpfns-podman-{name}-{}", std::process::id()));
        super::remove_private_dir(&dir);
        let p = Podman { dir: dir.clone() };
        Wrappers::new(&dir, daemon);
        let conf = format!(
            "[containers]\n\
             default_ulimits = [\"nofile=20000:20000\", \"nproc=16384:16384\"]\n\
             [engine]\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             lock_type = \"file\"\n\
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

    /// podman with this instance's storage, configuration and libpod state.
    pub fn command(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            // Locks and liveness of its own: another podman's `system reset` (the default
            // /run/libpod, shared memory locks) would otherwise reset this one's containers.
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"));
        c
    }

    pub fn podman(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("running podman")
    }

    /// `podman run --rm` of `sh -c script` with `runtime`, `--cap-add BPF`, no network.
    pub fn run(&self, runtime: &str, extra: &[&str], script: &str) -> Output {
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
        c.args(["run", "--rm", "--network=none"]);
        match s.runtime {
            Runtime::Bpfns => c.args(["--runtime", "bpfns-runc"]),
            Runtime::Down => c.args(["--runtime", "bpfns-down"]),
            Runtime::Default => &mut c,
        };
        c.args([
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

    fn exec(&self, name: &str, cmd: &[&str]) -> Output {
        let mut c = self.command();
        c.args(["exec", name]).args(cmd);
        super::output_within(c, "podman exec")
    }

    fn remove(&self, name: &str) -> Output {
        self.podman(&["rm", "-f", "-t", "0", name])
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
        let _ = self.podman(&["system", "reset", "-f"]);
        // podman may leave its storage's own mounts behind (the overlay driver mounts its
        // directory over itself) when a container misbehaved.
        super::remove_private_dir(&self.dir);
    }
}
