//! Docker with bpfns-oci, end to end: the wrapper registered as a runtime in daemon.json
//! (`"runtimes": {"bpfns": {"path": ...}}`, `docker run --runtime bpfns`). A private dockerd
//! (its own data root, exec root, socket, pid file and configuration; no iptables, no bridge,
//! no sysctl changes; the containerd it starts itself, under its exec root), a private
//! bpfnsd, the local image `scripts/containers/setup.sh` saves (no registry).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use bpfns_tests::{skip, TestDaemon};
use common::{text, Engine, Installed, Running, Runtime, Spec, Wrappers};

/// A private dockerd under `dir`: stopped, its containers removed and `dir` deleted on drop.
struct Docker {
    dir: PathBuf,
    daemon: Child,
    /// The cgroup parent of its containers.
    cgroups: String,
    _host_dirs: common::HostDirs,
}

/// Debian's client (docker.io) when it is there: another docker earlier in `$PATH` may be
/// newer than the daemon.
fn client() -> PathBuf {
    ["/usr/bin/docker"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| "docker".into())
}

impl Docker {
    fn new(name: &str, d: &TestDaemon) -> Self {
        Self::configured(name, d, |w| {
            serde_json::json!({
                "runtimes": {
                    "bpfns": {"path": w.up.join("bpfns-oci-runc")},
                    "bpfns-down": {"path": w.down.join("bpfns-oci-runc")},
                },
            })
            .to_string()
        })
    }

    /// A private dockerd whose daemon.json (`DIR/daemon.json`) is what `config` makes.
    fn configured(name: &str, d: &TestDaemon, config: impl FnOnce(&Wrappers) -> String) -> Self {
        let host_dirs = common::HostDirs::note(&[common::SHIM_DIRS, common::DOCKER_DIRS].concat());
        let dir = common::private_dir("docker", name);
        let w = Wrappers::new(&dir, d);
        let cgroups = common::cgroup_parent("docker", name);
        std::fs::write(dir.join("daemon.json"), config(&w)).expect("daemon.json");
        let daemon = start_dockerd(&dir, &cgroups);
        let k = Docker {
            dir,
            daemon,
            cgroups,
            _host_dirs: host_dirs,
        };
        k.wait_answers();
        let mut load = k.docker();
        load.args(["load", "-q", "-i", common::DOCKER_ARCHIVE]);
        common::ok(load, "docker load");
        k
    }

    /// `docker run` of spec `s`: removed at its end (`--rm`, the client waits for it), or
    /// `kept` (detached, stays when it stops).
    fn run_command(&self, s: &Spec<'_>, kept: bool) -> Command {
        let mut c = self.docker();
        c.arg("run").arg(if kept { "-d" } else { "--rm" }).args([
            "--network",
            "none",
            "--name",
            &container(s.name),
        ]);
        match s.runtime {
            Runtime::Bpfns => c.args(["--runtime", "bpfns"]),
            Runtime::Down => c.args(["--runtime", "bpfns-down"]),
            Runtime::Default => &mut c,
        };
        if s.privileged && root_lacks_sys_resource() {
            // Docker 20.10's --privileged asks for every capability the kernel knows, and
            // runc fails ("unable to apply caps") where root lacks one: host root with all
            // it holds, and no seccomp profile (bpfns-oci gives it one of its own).
            c.args(["--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE"])
                .args(["--security-opt", "seccomp=unconfined"]);
        } else if s.privileged {
            c.arg("--privileged");
        }
        if s.bpf {
            // Docker 20.10 does not know CAP_BPF ("unknown capability"); CAP_SYS_ADMIN is
            // what its default profile allows bpf() with.
            c.args(["--cap-add", "SYS_ADMIN"]);
        }
        if let Some(share) = s.share {
            c.args(["--volume", &format!("{}:/x", share.display())]);
        }
        c.args([common::IMAGE, "sh", "-c", &s.script]);
        c
    }

    fn wait_answers(&self) {
        common::wait_for("dockerd answers", Duration::from_secs(60), || {
            self.docker()
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    }

    /// Stop dockerd and start it again (its containers are gone: the tests' are `--rm`).
    fn restart(&mut self) {
        common::stop(&mut self.daemon, Duration::from_secs(20));
        self.daemon = start_dockerd(&self.dir, &self.cgroups);
        self.wait_answers();
    }

    /// `docker info --format FORMAT`.
    fn info(&self, format: &str) -> String {
        let mut c = self.docker();
        c.args(["info", "--format", format]);
        String::from_utf8_lossy(&common::ok(c, "docker info").stdout)
            .trim()
            .to_string()
    }

    /// Tell dockerd to read its configuration again (`SIGHUP`), and wait until it did (its
    /// log says so).
    fn reload(&self) {
        let log = self.dir.join("dockerd.log");
        let reloads = || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("Reloaded configuration")
                .count()
        };
        let before = reloads();
        // SAFETY: a plain kill(2) of this test's own dockerd, not reaped yet.
        unsafe { libc::kill(self.daemon.id() as i32, libc::SIGHUP) };
        common::wait_for("dockerd reloads", Duration::from_secs(30), || {
            reloads() > before
        });
    }

    /// The containerd this dockerd started, while it runs.
    fn containerd_pid(&self) -> Option<i32> {
        let pidfile = self.dir.join("exec/containerd/containerd.pid");
        let pid = std::fs::read_to_string(pidfile)
            .ok()?
            .trim()
            .parse::<i32>()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline)
            .contains(&*self.dir.to_string_lossy())
            .then_some(pid)
    }

    fn docker(&self) -> Command {
        let mut c = Command::new(client());
        c.env("DOCKER_CONFIG", self.dir.join("client"))
            .arg("--host")
            .arg(format!("unix://{}", self.dir.join("docker.sock").display()));
        c
    }
}

/// dockerd with its data, state, socket, configuration and containers' cgroups below `dir`,
/// its log appended to `dir/dockerd.log`.
fn start_dockerd(dir: &std::path::Path, cgroups: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dockerd.log"))
        .expect("log");
    Command::new("dockerd")
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--host")
        .arg(format!("unix://{}", dir.join("docker.sock").display()))
        .arg("--pidfile")
        .arg(dir.join("docker.pid"))
        .arg("--config-file")
        .arg(dir.join("daemon.json"))
        .arg("--cgroup-parent")
        .arg(format!("/{cgroups}"))
        // Nothing of the host's network changes: no rules, no bridge, no sysctls.
        .args([
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--ip-forward=false",
            "--ip-masq=false",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("starting dockerd")
}

/// Whether this process's bounding set lacks CAP_SYS_RESOURCE (root on some machines does).
fn root_lacks_sys_resource() -> bool {
    let status = bpfns_sys::procfs::read_status(std::process::id() as i32).unwrap_or_default();
    let bounding = bpfns_sys::procfs::field(&status, "CapBnd")
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    bounding & (1 << 24) == 0
}

/// Docker's name for the test's container `name` (at least two characters).
fn container(name: &str) -> String {
    format!("bpfns-{name}")
}

impl Engine for Docker {
    fn name(&self) -> &str {
        "docker"
    }

    fn spawn(&self, s: &Spec<'_>) -> Command {
        self.run_command(s, false)
    }

    fn run_kept(&self, s: &Spec<'_>) -> Output {
        common::output_within(self.run_command(s, true), "docker run -d")
    }

    fn stop(&self, name: &str) -> Output {
        let mut c = self.docker();
        c.args(["stop", "-t", "0", &container(name)]);
        common::output_within(c, "docker stop")
    }

    fn start(&self, name: &str) -> Output {
        let mut c = self.docker();
        c.args(["start", &container(name)]);
        common::output_within(c, "docker start")
    }

    fn crash(&self, name: &str) {
        let out = self
            .docker()
            .args([
                "inspect",
                "--format",
                "{{.State.Pid}} {{.Id}}",
                &container(name),
            ])
            .output()
            .expect("docker inspect");
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        let (init, id) = t.trim().split_once(' ').unwrap_or_else(|| panic!("{t}"));
        let init: i32 = init.parse().unwrap_or_else(|_| panic!("{t}"));
        let shim = bpfns_sys::procfs::parent_pid(init).expect("the shim");
        common::crash_leftovers(
            &[
                self.daemon.id() as i32,
                self.containerd_pid().expect("its containerd"),
                init,
            ],
            shim,
            &self.dir.join("exec"),
            id,
        );
    }

    /// Docker 20.10 cannot pass annotations: the container's namespace is named after its id.
    fn is_namespace_of(&self, name: &str, namespace: &str) -> bool {
        let out = self
            .docker()
            .args(["inspect", "--format", "{{.Id}}", &container(name)])
            .output()
            .expect("docker inspect");
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        !id.is_empty()
            && (namespace.contains(&id) || namespace.ends_with(&format!("/{}", container(name))))
    }

    fn exec(&self, name: &str, cmd: &[&str]) -> Output {
        let mut c = self.docker();
        c.args(["exec", &container(name)]).args(cmd);
        common::output_within(c, "docker exec")
    }

    fn remove(&self, name: &str) -> Output {
        let mut c = self.docker();
        c.args(["rm", "-f", &container(name)]);
        common::output_within(c, "docker rm -f")
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let ids = self.docker().args(["ps", "-a", "-q"]).output();
        let ids = ids
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in ids.lines() {
            let _ = self.docker().args(["rm", "-f", id]).output();
        }
        // dockerd stops the containerd it started; one that outlived it is stopped here.
        common::stop(&mut self.daemon, Duration::from_secs(20));
        if let Some(pid) = self.containerd_pid() {
            // SAFETY: a plain kill(2) of a process verified to be this test's containerd.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        common::kill_shims_below(&self.dir);
        common::remove_private_dir(&self.dir);
        common::remove_cgroups(&self.cgroups);
    }
}

/// Skip (saying why) where this engine's tests cannot run; once scripts/containers/setup.sh has
/// run, a missing binary fails instead.
fn skipped() -> bool {
    match common::engine_skip_reason(
        "docker.io",
        &[
            "dockerd",
            "containerd",
            "containerd-shim-runc-v2",
            "runc",
            "/usr/bin/docker",
        ],
    ) {
        Some(why) => {
            skip(why);
            true
        }
        None => false,
    }
}

#[test]
fn docker_runtime_on_runc() {
    if skipped() {
        return;
    }
    let d = TestDaemon::start("docker");
    let k = Docker::new("runc", &d);
    common::rfc_table(&k, &d, &k.dir, "dk");
}

/// `docker exec` into running containers joins each one's namespace (no hook runs for an
/// exec: containerd's shim runs `runc exec`, which joins the process to the container's
/// cgroups, bound to its namespace).
#[test]
fn docker_exec_on_runc() {
    if skipped() {
        return;
    }
    let d = TestDaemon::start("docker-exec");
    let k = Docker::new("exec", &d);
    common::exec_table(&k, &d, &k.dir, "dk");
}

/// A container's namespace (`/containers/<id>`: Docker 20.10 gives no name) goes when
/// `docker rm -f` removes the container, its pin in the parent's orphans.
#[test]
fn docker_namespace_goes_with_its_container() {
    if skipped() {
        return;
    }
    let d = TestDaemon::start("docker-life");
    let k = Docker::new("life", &d);
    common::lifecycle_table(&k, &d, &k.dir, "dk");
}

/// Stopped without removal (`docker stop`), a container keeps its namespace and pin; `docker
/// start` puts it back there, and it sees its pinned map.
#[test]
fn docker_stop_and_start_keep_the_namespace() {
    if skipped() {
        return;
    }
    let d = common::collecting_daemon("docker-kept");
    let k = Docker::new("kept", &d);
    common::stop_start_table(&k, &d, &k.dir, "dk");
}

/// bpfnsd restarted while containers run: they stay supervised, and their namespaces go
/// when they are removed.
#[test]
fn docker_containers_survive_a_bpfnsd_restart() {
    if skipped() {
        return;
    }
    let d = common::collecting_daemon("docker-restart");
    let k = Docker::new("restart", &d);
    let _d = common::restart_table(&k, d, &k.dir, "dk");
}

/// dockerd, the container's shim and its init killed, its runtime state gone: bpfnsd
/// collects the vanished container's namespace.
#[test]
fn docker_vanished_container_is_collected() {
    if skipped() {
        return;
    }
    let d = common::collecting_daemon("docker-vanish");
    let k = Docker::new("vanish", &d);
    common::vanish_table(&k, &d, &k.dir, "dk");
}

/// `bpfns containers install --engine docker --default` registers bpfns-oci in the private
/// dockerd's daemon.json (merged: the administrator's settings and indentation stay).
/// dockerd takes it at `SIGHUP`, without a restart: a plain `docker run` (no `--runtime`) then
/// runs through bpfns-oci, its container in a namespace of its own, listing its own map only.
/// A second install changes nothing; `--undo` restores daemon.json byte for byte, and runc is
/// dockerd's default again at the next `SIGHUP`.
#[test]
fn docker_through_bpfns_containers_install() {
    if skipped() {
        return;
    }
    let d = TestDaemon::start("docker-install");
    let mut k = Docker::configured("install", &d, |_| {
        "{\n  \"log-level\": \"info\"\n}\n".into()
    });
    let conf = k.dir.join("daemon.json");
    let before = std::fs::read(&conf).expect("daemon.json");
    let installed = Installed::new(&k.dir, &d);
    let j = installed.install("docker", &conf, &["--default"]);
    assert_eq!(j["changed"], true, "{j}");
    let written = std::fs::read(&conf).expect("daemon.json");
    eprintln!(
        "daemon.json written:\n{}",
        String::from_utf8_lossy(&written)
    );
    let j = installed.install("docker", &conf, &["--default"]);
    assert_eq!(j["changed"], false, "a second install changes nothing: {j}");
    assert_eq!(std::fs::read(&conf).expect("daemon.json"), written);

    assert_eq!(k.info("{{.DefaultRuntime}}"), "runc");
    k.reload();
    let runtimes = k.info("{{json .Runtimes}}");
    assert_eq!(
        k.info("{{.DefaultRuntime}}"),
        "bpfns",
        "dockerd did not take the registration at SIGHUP: runtimes {runtimes}"
    );

    let share = k.dir.join("install-share");
    std::fs::create_dir_all(&share).expect("mkdir");
    let c = format!("dk_in_{}", std::process::id() % 1_000_000);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let spec = Spec {
            runtime: Runtime::Default,
            ..common::exec_target(&c, &share)
        };
        let mut running = Running::start(k.spawn(&spec), "container");
        common::wait_exec_ready(&k, &c, Some(&mut running));
        let ns = common::namespace_of_map(&k, &d, &c);
        let out = k.exec(&c, &["bpftool", "map", "list"]);
        let t = text(&out);
        let listed = common::listed_maps(&t);
        assert!(
            out.status.success() && listed.len() == 1 && listed[0].contains(&format!("name {c}")),
            "the container lists its own map only: {t}"
        );
        eprintln!("docker: a plain docker run landed in {ns}");
        common::removed_to_orphans(&k, &d, &c, &ns);
        drop(running);
    }));
    let _ = std::fs::write(share.join("go"), "");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }

    let j = installed.install("docker", &conf, &["--undo"]);
    assert_eq!(j["changed"], true, "{j}");
    assert_eq!(
        std::fs::read(&conf).expect("daemon.json"),
        before,
        "--undo restores daemon.json byte for byte"
    );
    for rt in ["crun", "runc"] {
        assert!(
            std::fs::symlink_metadata(installed.bin.join(format!("bpfns-oci-{rt}"))).is_err(),
            "the links it made are gone"
        );
    }
    // SIGHUP does not drop what the file no longer says: dockerd keeps bpfns (registered and
    // the default) until it restarts.
    k.reload();
    eprintln!(
        "docker: after --undo and SIGHUP: default runtime {}, runtimes {}",
        k.info("{{.DefaultRuntime}}"),
        k.info("{{json .Runtimes}}")
    );
    k.restart();
    assert_eq!(k.info("{{.DefaultRuntime}}"), "runc");
    let runtimes = k.info("{{json .Runtimes}}");
    assert!(!runtimes.contains("bpfns"), "{runtimes}");
}
