//! containerd with bpfns-oci, end to end, on the path Kubernetes' CRI takes: containerd's
//! runc shim (`containerd-shim-runc-v2`) runs the wrapper as its runc (`ctr run
//! --runc-binary`). A private containerd (its own root, state and sockets under a temporary
//! directory; nothing of a host containerd is used or changed), a private bpfnsd, the local
//! image `scripts/containers/setup.sh` saves (no registry).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bpfns_tests::{skip, TestDaemon};
use common::{text, Engine, Installed, Runtime, Spec, Wrappers};

/// containerd's namespace for the test's images and containers.
const CTR_NAMESPACE: &str = "bpfns-test";

/// A private containerd under `dir`: stopped, its containers removed and `dir` deleted on
/// drop.
struct Containerd {
    dir: PathBuf,
    daemon: Child,
    /// The cgroup parent of its containers.
    cgroups: String,
    _host_dirs: common::HostDirs,
    wrappers: Wrappers,
}

impl Containerd {
    fn new(name: &str, d: &TestDaemon) -> Self {
        let host_dirs = common::HostDirs::note(&common::SHIM_DIRS);
        let dir = common::private_dir("containerd", name);
        let wrappers = Wrappers::new(&dir, d);
        // The CRI plugin is off: ctr speaks containerd's own API, and the shim runs the
        // runtime exactly as it does for CRI's pods.
        let config = format!(
            "version = 2\n\
             root = \"{d}/root\"\n\
             state = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
             [debug]\n  address = \"\"\n\
             [metrics]\n  address = \"\"\n",
            d = dir.display()
        );
        std::fs::write(dir.join("config.toml"), config).expect("config.toml");
        let daemon = start_containerd(&dir);
        let c = Containerd {
            dir,
            daemon,
            cgroups: common::cgroup_parent("containerd", name),
            _host_dirs: host_dirs,
            wrappers,
        };
        c.wait_answers();
        let mut import = c.ctr();
        import.args(["images", "import", common::DOCKER_ARCHIVE]);
        common::ok(import, "ctr images import");
        c
    }

    fn wait_answers(&self) {
        common::wait_for("containerd answers", Duration::from_secs(30), || {
            self.ctr()
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    }

    /// Stop containerd and start it again with its configuration file as it is now.
    fn restart(&mut self) {
        common::stop(&mut self.daemon, Duration::from_secs(10));
        self.daemon = start_containerd(&self.dir);
        self.wait_answers();
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.dir.join("containerd.sock"))
            .args(["--namespace", CTR_NAMESPACE]);
        c
    }

    /// `ctr run` of spec `s`: removed at its end (`--rm`, ctr waits for it), or `kept`
    /// (detached, no stdio, stays when its task ends).
    fn run_command(&self, s: &Spec<'_>, kept: bool) -> Command {
        let wrapper = match s.runtime {
            Runtime::Bpfns => Some(&self.wrappers.up),
            Runtime::Down => Some(&self.wrappers.down),
            // runc itself: ctr names the runtime's binary with each container.
            Runtime::Default => None,
        };
        let mut c = self.ctr();
        c.arg("run");
        if kept {
            c.args(["-d", "--null-io"]);
        } else {
            c.arg("--rm");
        }
        c
            // ctr's stdio FIFOs and runc's state stay under the private directory.
            .arg("--fifo-dir")
            .arg(self.dir.join("fifo"))
            .arg("--runc-root")
            .arg(self.dir.join("runc"))
            // No annotation: bpfnsd names the namespace after ctr's container id, the name
            // its user chose (`/containers/<name>`).
            .args(["--cgroup", &format!("/{}/{}", self.cgroups, s.name)]);
        if let Some(w) = wrapper {
            c.arg("--runc-binary").arg(w.join("bpfns-oci-runc"));
        }
        if s.privileged {
            c.arg("--privileged");
        } else {
            // containerd's default profile, as CRI's RuntimeDefault.
            c.arg("--seccomp");
        }
        if s.bpf {
            c.args(["--cap-add", "CAP_BPF"]);
        }
        if let Some(share) = s.share {
            c.args([
                "--mount",
                &format!("type=bind,src={},dst=/x,options=rbind:rw", share.display()),
            ]);
        }
        c.args([common::IMAGE, s.name, "sh", "-c", &s.script]);
        c
    }

    fn ctr_out(&self, args: &[&str]) -> String {
        let out = self.ctr().args(args).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

/// containerd with `dir/config.toml`, its log appended to `dir/containerd.log`.
fn start_containerd(dir: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))
        .expect("log");
    Command::new("containerd")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("starting containerd")
}

impl Engine for Containerd {
    fn name(&self) -> &str {
        "containerd"
    }

    fn spawn(&self, s: &Spec<'_>) -> Command {
        self.run_command(s, false)
    }

    /// `ctr run -d` without `--rm`: the container stays when its task ends.
    fn run_kept(&self, s: &Spec<'_>) -> Output {
        common::output_within(self.run_command(s, true), "ctr run -d")
    }

    /// `ctr task kill`, and the task deleted once it stopped: the container stays.
    fn stop(&self, name: &str) -> Output {
        let mut kill = self.ctr();
        kill.args(["tasks", "kill", "-s", "SIGKILL", name]);
        let out = common::output_within(kill, "ctr task kill");
        if !out.status.success() {
            return out;
        }
        common::wait_for("the task stops", common::STEP, || {
            self.ctr_out(&["tasks", "list"])
                .lines()
                .all(|l| !(l.starts_with(&format!("{name} ")) && l.contains("RUNNING")))
        });
        let mut delete = self.ctr();
        delete.args(["tasks", "delete", name]);
        common::output_within(delete, "ctr task delete")
    }

    /// A new task of the container: `ctr task start`.
    fn start(&self, name: &str) -> Output {
        let mut c = self.ctr();
        c.args(["tasks", "start", "-d", "--null-io", "--fifo-dir"])
            .arg(self.dir.join("fifo"))
            .arg(name);
        common::output_within(c, "ctr task start")
    }

    fn crash(&self, name: &str) {
        let line = self
            .ctr_out(&["tasks", "list"])
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no task {name}"));
        let init: i32 = line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        let shim = bpfns_sys::procfs::parent_pid(init).expect("the shim");
        common::crash_leftovers(
            &[self.daemon.id() as i32, init],
            shim,
            &self.dir.join("runc"),
            name,
        );
    }

    fn is_namespace_of(&self, name: &str, namespace: &str) -> bool {
        namespace == format!("/containers/{name}")
    }

    /// `ctr task exec`, with an exec id of its own and its FIFOs under the private directory.
    fn exec(&self, name: &str, cmd: &[&str]) -> Output {
        static EXECS: AtomicU32 = AtomicU32::new(0);
        let id = format!("x{}", EXECS.fetch_add(1, Ordering::Relaxed));
        let mut c = self.ctr();
        c.args(["task", "exec", "--exec-id", &id, "--fifo-dir"])
            .arg(self.dir.join("fifo"))
            .arg(name)
            .args(cmd);
        common::output_within(c, "ctr task exec")
    }

    /// `ctr task kill`, then the task and the container deleted (by `ctr run --rm`, which
    /// ran it, or here: whichever comes first).
    fn remove(&self, name: &str) -> Output {
        let mut kill = self.ctr();
        kill.args(["tasks", "kill", "-s", "SIGKILL", name]);
        let out = common::output_within(kill, "ctr task kill");
        if !out.status.success() {
            return out;
        }
        common::wait_for("ctr removes the container", common::STEP, || {
            let _ = self.ctr().args(["tasks", "delete", name]).output();
            let _ = self.ctr().args(["containers", "rm", name]).output();
            !self
                .ctr_out(&["containers", "list", "-q"])
                .lines()
                .any(|c| c == name)
        });
        out
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks first: their shims outlive containerd.
        for task in self.ctr_out(&["tasks", "list", "-q"]).lines() {
            let _ = self
                .ctr()
                .args(["tasks", "kill", "-s", "SIGKILL", task])
                .output();
        }
        for task in self.ctr_out(&["tasks", "list", "-q"]).lines() {
            let _ = self.ctr().args(["tasks", "delete", "-f", task]).output();
        }
        for c in self.ctr_out(&["containers", "list", "-q"]).lines() {
            let _ = self.ctr().args(["containers", "delete", c]).output();
        }
        common::stop(&mut self.daemon, Duration::from_secs(10));
        common::kill_shims_below(&self.dir);
        common::remove_private_dir(&self.dir);
        common::remove_cgroups(&self.cgroups);
    }
}

/// Skip (saying why) where this engine's tests cannot run; once scripts/containers/setup.sh has
/// run, a missing binary fails instead.
fn skipped() -> bool {
    match common::engine_skip_reason(
        "containerd",
        &["containerd", "ctr", "containerd-shim-runc-v2", "runc"],
    ) {
        Some(why) => {
            skip(why);
            true
        }
        None => false,
    }
}

#[test]
fn containerd_shim_on_runc() {
    if skipped() {
        return;
    }
    let d = TestDaemon::start("containerd");
    let c = Containerd::new("runc", &d);
    common::rfc_table(&c, &d, &c.dir, "ctr");
}

/// `ctr task exec` into running containers joins each one's namespace (no hook runs for an
/// exec: the shim runs `runc exec`, which joins the process to the container's cgroups,
/// bound to its namespace).
#[test]
fn containerd_exec_on_runc() {
    if skipped() {
        return;
    }
    let d = TestDaemon::start("containerd-exec");
    let c = Containerd::new("exec", &d);
    common::exec_table(&c, &d, &c.dir, "ctr");
}

/// A container's namespace (`/containers/<name>`, ctr's container id) goes when `ctr task
/// kill` and `ctr run --rm` (or `ctr container rm`) remove the container, its pin in the
/// parent's orphans.
#[test]
fn containerd_namespace_goes_with_its_container() {
    if skipped() {
        return;
    }
    let d = TestDaemon::start("containerd-life");
    let c = Containerd::new("life", &d);
    common::lifecycle_table(&c, &d, &c.dir, "ctr");
}

/// Stopped without removal (`ctr task kill`, `ctr task delete`), a container keeps its
/// namespace and pin; a new task (`ctr task start`) is put back there and sees its pinned map.
#[test]
fn containerd_stop_and_start_keep_the_namespace() {
    if skipped() {
        return;
    }
    let d = common::collecting_daemon("containerd-kept");
    let c = Containerd::new("kept", &d);
    common::stop_start_table(&c, &d, &c.dir, "ctr");
}

/// bpfnsd restarted while containers run: they stay supervised, and their namespaces go
/// when they are removed.
#[test]
fn containerd_containers_survive_a_bpfnsd_restart() {
    if skipped() {
        return;
    }
    let d = common::collecting_daemon("containerd-restart");
    let c = Containerd::new("restart", &d);
    let _d = common::restart_table(&c, d, &c.dir, "ctr");
}

/// containerd, the container's shim and its init killed, its runtime state gone: bpfnsd
/// collects the vanished container's namespace.
#[test]
fn containerd_vanished_container_is_collected() {
    if skipped() {
        return;
    }
    let d = common::collecting_daemon("containerd-vanish");
    let c = Containerd::new("vanish", &d);
    common::vanish_table(&c, &d, &c.dir, "ctr");
}

/// `bpfns containers install --engine containerd --default` registers bpfns-oci in the
/// private containerd's config.toml (merged) for the CRI plugin: containerd reads the runtime
/// `bpfns` as runc's shim with bpfns-oci as its runc, and as the default (`containerd config
/// dump`, with the CRI plugin a host's containerd has; the test's instance runs without it),
/// and restarts with the file. A second install changes nothing; `--undo` restores it byte
/// for byte. (CRI's runtimes are for CRI clients: ctr names the runtime's binary itself, so
/// no container here runs through the registration.)
#[test]
fn containerd_config_from_bpfns_containers_install() {
    if skipped() {
        return;
    }
    let d = TestDaemon::start("containerd-install");
    let mut c = Containerd::new("install", &d);
    let conf = c.dir.join("config.toml");
    let before = std::fs::read(&conf).expect("config.toml");
    let installed = Installed::new(&c.dir, &d);
    let j = installed.install("containerd", &conf, &["--default"]);
    assert_eq!(j["changed"], true, "{j}");
    let written = std::fs::read_to_string(&conf).expect("config.toml");
    let j = installed.install("containerd", &conf, &["--default"]);
    assert_eq!(j["changed"], false, "a second install changes nothing: {j}");
    assert_eq!(
        std::fs::read_to_string(&conf).expect("config.toml"),
        written
    );

    let with_cri = c.dir.join("with-cri.toml");
    let text_with_cri: String = written
        .lines()
        .filter(|l| !l.starts_with("disabled_plugins"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&with_cri, text_with_cri).expect("with-cri.toml");
    let mut dump = Command::new("containerd");
    dump.arg("--config").arg(&with_cri).args(["config", "dump"]);
    let t = text(&common::ok(dump, "containerd config dump"));
    let link = installed.bin.join("bpfns-oci-runc");
    for want in [
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.bpfns]".to_string(),
        "runtime_type = \"io.containerd.runc.v2\"".to_string(),
        format!("BinaryName = \"{}\"", link.display()),
        "default_runtime_name = \"bpfns\"".to_string(),
    ] {
        assert!(t.contains(&want), "containerd does not read {want}: {t}");
    }
    c.restart();

    let j = installed.install("containerd", &conf, &["--undo"]);
    assert_eq!(j["changed"], true, "{j}");
    assert_eq!(
        std::fs::read(&conf).expect("config.toml"),
        before,
        "--undo restores config.toml byte for byte"
    );
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "its links are gone"
    );
}
