//! What the podman tests share: podman with private storage and a private containers.conf
//! that registers the wrapper, the local image `scripts/containers/setup.sh` builds.
//!
//! Each test crate uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bpfns_tests::{skip_reason, TestDaemon};

const IMAGE: &str = "localhost/bpfns-test";
pub const ARCHIVE: &str = "/var/lib/bpfns-containers/bpfns-test.tar";

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

/// podman with its own storage and configuration under `dir`; everything is removed on drop.
pub struct Podman {
    dir: PathBuf,
}

impl Podman {
    /// Register bpfns-oci for crun and runc (`bpfns-crun`, `bpfns-runc`) talking to `daemon`,
    /// and the same wrapper pointed at a socket nobody serves (`bpfns-down`).
    pub fn new(name: &str, daemon: &TestDaemon) -> Self {
        let dir = PathBuf::from(format!("/tmp/bpfns-podman-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = Podman { dir: dir.clone() };
        let wrapper = PathBuf::from(env!("CARGO_BIN_EXE_bpfns-oci"));
        for (sub, socket) in [
            ("up", daemon.socket.clone()),
            ("down", dir.join("nobody.sock")),
        ] {
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
                    daemon.dir.join("seccomp.sock")
                ),
            )
            .expect("bpfns-oci.toml");
        }
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

    pub fn podman(&self, args: &[&str]) -> Output {
        Command::new("podman")
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            // Its own libpod state too: `system reset` removes the tmpdir, and the default
            // (/run/libpod) is every other podman's on the machine.
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(args)
            .output()
            .expect("running podman")
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

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-a", "-f"]);
        let _ = self.podman(&["system", "reset", "-f"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
