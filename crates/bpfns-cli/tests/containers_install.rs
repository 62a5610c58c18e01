//! `bpfns containers install` on private directories (`--root`): install, a second install
//! that changes nothing, and `--undo` back to the same bytes, for each engine, over existing
//! configurations with comments and other settings. Needs no root and touches nothing of the
//! host's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A private root with a stand-in for bpfns-oci (the links only need a file to point at).
struct Root {
    dir: PathBuf,
    wrapper: PathBuf,
}

impl Root {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "bpfns-containers-install-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        // As on a host with bpfns installed: its state directory is there.
        std::fs::create_dir_all(dir.join("var/lib/bpfns")).unwrap();
        let bin = dir.join("usr/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let wrapper = bin.join("bpfns-oci");
        std::fs::write(&wrapper, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Root { dir, wrapper }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p.trim_start_matches('/'))
    }

    /// `bpfns -j containers install --root DIR --wrapper W ARGS`.
    fn install(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_bpfns"))
            .args(["-j", "containers", "install", "--root"])
            .arg(&self.dir)
            .arg("--wrapper")
            .arg(&self.wrapper)
            .args(args)
            .output()
            .expect("running bpfns")
    }

    /// Files and links below the root (relative paths), with their contents.
    fn snapshot(&self) -> Vec<(String, String)> {
        fn walk(base: &Path, d: &Path, out: &mut Vec<(String, String)>) {
            let mut entries: Vec<_> = std::fs::read_dir(d).unwrap().flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let p = e.path();
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                let meta = std::fs::symlink_metadata(&p).unwrap();
                if meta.is_symlink() {
                    out.push((rel, format!("-> {:?}", std::fs::read_link(&p).unwrap())));
                } else if meta.is_dir() {
                    out.push((
                        rel.clone() + "/",
                        format!("{:o}", meta.permissions().mode()),
                    ));
                    walk(base, &p, out);
                } else {
                    out.push((
                        rel,
                        format!(
                            "{:o} {}",
                            meta.permissions().mode(),
                            std::fs::read_to_string(&p).unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        let mut v = Vec::new();
        walk(&self.dir, &self.dir, &mut v);
        v
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "bpfns failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("JSON output")
}

/// Install (twice), check what `check` says of the result, undo, and compare with before.
fn round_trip(r: &Root, engine: &str, extra: &[&str], config: &str, check: impl Fn(&str)) {
    let before = r.snapshot();
    let mut args = vec!["--engine", engine];
    args.extend_from_slice(extra);

    // --dry-run shows the change and writes nothing.
    let mut dry = args.clone();
    dry.push("--dry-run");
    let j = json(&r.install(&dry));
    assert_eq!(j["changed"], true, "{j}");
    assert!(j["diff"].as_str().unwrap().contains("+"), "{j}");
    assert_eq!(r.snapshot(), before, "--dry-run wrote something");

    let j = json(&r.install(&args));
    assert_eq!(
        (j["action"].as_str(), j["changed"].as_bool()),
        (Some("install"), Some(true))
    );
    let written = std::fs::read_to_string(r.path(config)).unwrap();
    check(&written);
    for rt in ["crun", "runc"] {
        let l = r.wrapper.with_file_name(format!("bpfns-oci-{rt}"));
        assert_eq!(std::fs::read_link(&l).unwrap(), Path::new("bpfns-oci"));
    }

    // Again: nothing changes, not a byte.
    let after = r.snapshot();
    let j = json(&r.install(&args));
    assert_eq!(j["changed"], false, "{j}");
    assert_eq!(r.snapshot(), after, "a second install changed something");

    let j = json(&r.install(&["--engine", engine, "--undo"]));
    assert_eq!(j["changed"], true, "{j}");
    assert_eq!(
        r.snapshot(),
        before,
        "--undo did not restore what was there"
    );
    // Undoing again has nothing to do.
    let j = json(&r.install(&["--engine", engine, "--undo"]));
    assert_eq!(j["changed"], false, "{j}");
}

const CONTAINERS_CONF: &str = "# the host's own\n[containers]\n\
    default_ulimits = [\"nofile=20000:20000\"]  # kept\n\n[engine]\n# how cgroups are managed\n\
    cgroup_manager = \"cgroupfs\"\n";

#[test]
fn podman_drop_in_is_created_and_removed() {
    let r = Root::new("podman-new");
    round_trip(
        &r,
        "podman",
        &["--default"],
        "/etc/containers/containers.conf.d/bpfns.conf",
        |t| {
            // No containers.conf names a runtime: podman's own default, crun, under bpfns-oci.
            assert!(t.contains("runtime = \"bpfns-crun\""), "{t}");
            assert!(t.contains(&format!(
                "bpfns-crun = [\"{}\"]",
                r.wrapper.with_file_name("bpfns-oci-crun").display()
            )));
        },
    );
    // The directories it made are gone too.
    assert!(!r.path("/etc/containers").exists());
}

/// `--default` without `--runtime` keeps podman's default runtime (the last `[engine]
/// runtime` of its containers.conf files) under bpfns-oci; one bpfns-oci cannot run is
/// refused with the cause, and nothing is written.
#[test]
fn podman_default_follows_podmans_runtime() {
    let r = Root::new("podman-follow");
    std::fs::create_dir_all(r.path("/usr/share/containers")).unwrap();
    std::fs::write(
        r.path("/usr/share/containers/containers.conf"),
        "[engine]\nruntime = \"crun\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(r.path("/etc/containers")).unwrap();
    std::fs::write(
        r.path("/etc/containers/containers.conf"),
        "[engine]\nruntime = \"runc\"\n",
    )
    .unwrap();
    let drop_in = r.path("/etc/containers/containers.conf.d/bpfns.conf");
    let out = r.install(&["--engine", "podman", "--default"]);
    assert!(out.status.success(), "{out:?}");
    let t = std::fs::read_to_string(&drop_in).unwrap();
    assert!(t.contains("runtime = \"bpfns-runc\""), "{t}");
    // Its own value does not count: installing again changes nothing.
    let j = json(&r.install(&["--engine", "podman", "--default"]));
    assert_eq!(j["changed"], false, "{j}");
    let j = json(&r.install(&["--engine", "podman", "--undo"]));
    assert_eq!(j["changed"], true, "{j}");

    std::fs::write(
        r.path("/etc/containers/containers.conf"),
        "[engine]\nruntime = \"kata\"\n",
    )
    .unwrap();
    let out = r.install(&["--engine", "podman", "--default"]);
    let t = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("kata") && t.contains("--runtime"), "{t}");
    assert!(!drop_in.exists(), "nothing was written");
    let out = r.install(&["--engine", "podman", "--default", "--runtime", "crun"]);
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::read_to_string(&drop_in)
        .unwrap()
        .contains("runtime = \"bpfns-crun\""));
}

#[test]
fn podman_existing_configuration_is_merged() {
    let r = Root::new("podman-merge");
    let conf = "/etc/containers/containers.conf";
    std::fs::create_dir_all(r.path("/etc/containers")).unwrap();
    std::fs::write(r.path(conf), CONTAINERS_CONF).unwrap();
    std::fs::set_permissions(r.path(conf), std::fs::Permissions::from_mode(0o640)).unwrap();
    let c = r.path(conf);
    round_trip(
        &r,
        "podman",
        &[
            "--default",
            "--runtime",
            "crun",
            "--config",
            c.to_str().unwrap(),
        ],
        conf,
        |t| {
            assert!(t.starts_with("# the host's own\n[containers]\ndefault_ulimits = [\"nofile=20000:20000\"]  # kept\n"), "{t}");
            assert!(
                t.contains("# how cgroups are managed\ncgroup_manager = \"cgroupfs\"\n"),
                "{t}"
            );
            assert!(t.contains("runtime = \"bpfns-crun\""), "{t}");
            assert!(t.contains("[engine.runtimes]"), "{t}");
        },
    );
}

#[test]
fn docker_daemon_json_is_merged() {
    let r = Root::new("docker");
    std::fs::create_dir_all(r.path("/etc/docker")).unwrap();
    let old = "{\n  \"log-driver\": \"journald\",\n  \"runtimes\": {\n    \"other\": {\"path\": \"/opt/other\", \"runtimeArgs\": [\"--debug\"]}\n  },\n  \"default-runtime\": \"runc\",\n  \"storage-driver\": \"overlay2\"\n}\n";
    std::fs::write(r.path("/etc/docker/daemon.json"), old).unwrap();
    let w = r.wrapper.clone();
    round_trip(
        &r,
        "docker",
        &["--default"],
        "/etc/docker/daemon.json",
        |t| {
            let v: Value = serde_json::from_str(t).unwrap();
            assert_eq!(v["log-driver"], "journald");
            assert_eq!(v["storage-driver"], "overlay2");
            assert_eq!(v["runtimes"]["other"]["runtimeArgs"][0], "--debug");
            assert_eq!(
                v["runtimes"]["bpfns"]["path"].as_str().map(PathBuf::from),
                Some(w.with_file_name("bpfns-oci-runc"))
            );
            assert_eq!(v["default-runtime"], "bpfns");
            // Members keep their order and their text.
            assert!(t.starts_with("{\n  \"log-driver\": \"journald\",\n  \"runtimes\": {\n    \"other\": {\"path\": \"/opt/other\", \"runtimeArgs\": [\"--debug\"]},\n"), "{t}");
        },
    );
}

#[test]
fn docker_without_a_file() {
    let r = Root::new("docker-new");
    round_trip(&r, "docker", &[], "/etc/docker/daemon.json", |t| {
        let v: Value = serde_json::from_str(t).unwrap();
        assert!(v["runtimes"]["bpfns"]["path"].is_string(), "{t}");
        assert!(v.get("default-runtime").is_none(), "{t}");
    });
    assert!(!r.path("/etc/docker").exists());
}

#[test]
fn containerd_config_is_merged() {
    let r = Root::new("containerd");
    std::fs::create_dir_all(r.path("/etc/containerd")).unwrap();
    let old = "version = 2\n# the host's\nroot = \"/var/lib/containerd\"\n\n\
               [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.6\" # kept\n\n\
               [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n";
    std::fs::write(r.path("/etc/containerd/config.toml"), old).unwrap();
    let w = r.wrapper.clone();
    round_trip(
        &r,
        "containerd",
        &["--default"],
        "/etc/containerd/config.toml",
        |t| {
            // Every line that was there is still there, in its order (new tables may go
            // between them, where TOML puts them).
            let mut rest = t.lines();
            for line in old.lines() {
                assert!(rest.any(|l| l == line), "{line:?} lost: {t}");
            }
            assert!(t.contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.bpfns]\nruntime_type = \"io.containerd.runc.v2\""), "{t}");
            assert!(t.contains(&format!(
                "BinaryName = \"{}\"",
                w.with_file_name("bpfns-oci-runc").display()
            )));
            assert!(t.contains("default_runtime_name = \"bpfns\""), "{t}");
            let v: toml::Value = toml::from_str(t).unwrap();
            assert_eq!(
                v["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"].as_str(),
                Some("registry.k8s.io/pause:3.6")
            );
        },
    );
}

/// Two engines share the links: undoing one keeps them for the other.
#[test]
fn links_stay_while_an_engine_uses_them() {
    let r = Root::new("links");
    json(&r.install(&["--engine", "podman"]));
    json(&r.install(&["--engine", "docker"]));
    let link = r.wrapper.with_file_name("bpfns-oci-runc");
    json(&r.install(&["--engine", "podman", "--undo"]));
    assert!(
        std::fs::symlink_metadata(&link).is_ok(),
        "docker still uses it"
    );
    json(&r.install(&["--engine", "docker", "--undo"]));
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "the last undo removes it"
    );
}

/// A configuration changed by hand after the install is not overwritten by --undo unless
/// --force says so; a broken one is refused with its cause, and nothing changes.
#[test]
fn changed_and_broken_configurations_are_refused() {
    let r = Root::new("refuse");
    json(&r.install(&["--engine", "docker"]));
    let f = r.path("/etc/docker/daemon.json");
    let mut t = std::fs::read_to_string(&f).unwrap();
    t = t.replacen('{', "{\n    \"debug\": true,", 1);
    std::fs::write(&f, &t).unwrap();
    let o = r.install(&["--engine", "docker", "--undo"]);
    assert_eq!(o.status.code(), Some(5), "conflict");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("changed since") && err.contains("--force"),
        "{err}"
    );
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["error"]["code"], "conflict");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), t, "nothing changed");
    json(&r.install(&["--engine", "docker", "--undo", "--force"]));
    assert!(!f.exists());

    std::fs::create_dir_all(r.path("/etc/containerd")).unwrap();
    let c = r.path("/etc/containerd/config.toml");
    std::fs::write(&c, "[plugins\n").unwrap();
    let before = r.snapshot();
    let o = r.install(&["--engine", "containerd"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("config.toml is not valid TOML") && err.contains("fix:"),
        "{err}"
    );
    assert_eq!(r.snapshot(), before, "a refused install changed something");

    // A wrapper that is not there is named, with the fix.
    let o = Command::new(env!("CARGO_BIN_EXE_bpfns"))
        .args(["containers", "install", "--root"])
        .arg(&r.dir)
        .args(["--wrapper", "/nonexistent/bpfns-oci"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--wrapper /nonexistent/bpfns-oci"));
}
