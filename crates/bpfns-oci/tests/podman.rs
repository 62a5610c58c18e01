//! podman with bpfns-oci, end to end: a private bpfnsd, podman with private storage and a
//! private containers.conf that registers the wrapper (nothing of the host's podman changes),
//! the local image `scripts/containers/setup.sh` builds (no registry).
//!
//! Installed binaries instead of the built ones (the package test, scripts/package-test.sh,
//! runs `podman_on_*` and `podman_through_bpfns_containers_install` so): `BPFNS_OCI` names
//! bpfns-oci, `BPFNS_CLI` bpfns, and `BPFNS_TEST_BPFNSD_SOCKET` (with
//! `BPFNS_TEST_BPFNSD_SECCOMP_SOCKET`) a running bpfnsd to use instead of one in the test.

mod common;

use std::path::PathBuf;
use std::process::Command;

use bpfns_model::ObjectKind;
use bpfns_tests::{skip, TestDaemon};
use common::podman::{one_at_a_time, podman_skip_reason, Podman, IMAGE};
use common::{create_and_list, text, Engine, Installed, Sockets};

/// The bpfnsd the containers use: one of the test's own, or a running one named by the
/// environment, shared by the tests that run at once and by earlier runs: there, namespace
/// and map names carry the test process's id, and the namespaces a test made are deleted on
/// drop (their parent `/containers`, which another test may be using, stays).
enum Bpfnsd {
    Test(TestDaemon),
    Running {
        socket: PathBuf,
        seccomp_socket: PathBuf,
        made: std::cell::RefCell<Vec<String>>,
    },
}

impl Bpfnsd {
    fn start(name: &str) -> Self {
        match std::env::var_os("BPFNS_TEST_BPFNSD_SOCKET") {
            Some(socket) => {
                let socket = PathBuf::from(socket);
                let seccomp_socket = std::env::var_os("BPFNS_TEST_BPFNSD_SECCOMP_SOCKET")
                    .map_or_else(|| socket.with_file_name("seccomp.sock"), PathBuf::from);
                Bpfnsd::Running {
                    socket,
                    seccomp_socket,
                    made: Default::default(),
                }
            }
            None => Bpfnsd::Test(TestDaemon::start(name)),
        }
    }

    fn client(&self) -> bpfns_client::Client {
        bpfns_client::Client::connect(self.socket()).expect("connecting to bpfnsd")
    }

    /// What names of namespaces and maps end with: `_PID`, unique on the host (the host's
    /// list names every map, other tests' and earlier runs' too).
    fn suffix(&self) -> String {
        format!("_{}", std::process::id())
    }

    /// The namespace `/containers/NAME` for the test's containers (with [`suffix`]); deleted
    /// at the end from a running bpfnsd.
    ///
    /// [`suffix`]: Bpfnsd::suffix
    fn namespace(&self, name: &str) -> String {
        let path = format!("/containers/{name}{}", self.suffix());
        if let Bpfnsd::Running { made, .. } = self {
            made.borrow_mut().push(path.clone());
        }
        path
    }
}

impl Sockets for Bpfnsd {
    fn socket(&self) -> PathBuf {
        match self {
            Bpfnsd::Test(d) => d.socket(),
            Bpfnsd::Running { socket, .. } => socket.clone(),
        }
    }

    fn seccomp_socket(&self) -> PathBuf {
        match self {
            Bpfnsd::Test(d) => d.seccomp_socket(),
            Bpfnsd::Running { seccomp_socket, .. } => seccomp_socket.clone(),
        }
    }
}

impl Drop for Bpfnsd {
    fn drop(&mut self) {
        if let Bpfnsd::Running { made, .. } = self {
            let made = made.borrow().clone();
            if let Ok(mut c) = bpfns_client::Client::connect(self.socket()) {
                for p in made {
                    let _ = c.ns_delete_with(&p, true);
                }
            }
        }
    }
}

fn two_containers_see_their_own_maps(runtime: &str) {
    if let Some(why) = podman_skip_reason() {
        skip(why);
        return;
    }
    let _serial = one_at_a_time();
    let d = Bpfnsd::start(&format!("podman-{runtime}"));
    let p = Podman::new(runtime, &d);
    let rt = format!("bpfns-{runtime}");
    let (a, b) = (
        format!("{runtime}_a{}", d.suffix()),
        format!("{runtime}_b{}", d.suffix()),
    );
    let (ns_a, ns_b) = (d.namespace("a"), d.namespace("b"));
    let ann = |ns: &str| format!("io.bpfns.namespace={ns}");
    // Namespaces that exist before their containers stay when the containers go (`--rm`):
    // a's pin is still there for the next container in a's namespace.
    let mut c = d.client();
    for ns in ["/containers", ns_a.as_str(), ns_b.as_str()] {
        if c.ns_show(ns).is_err() {
            c.ns_create(ns).expect("ns create");
        }
    }

    let out = p.run(&rt, &["--annotation", &ann(&ns_a)], &create_and_list(&a));
    let t = text(&out);
    assert!(out.status.success(), "container a: {t}");
    assert!(t.contains(&format!("name {a}")), "a sees its map: {t}");
    // The preloaded iterators of its bpffs are covered.
    assert!(
        t.contains("Permission denied"),
        "maps.debug is covered: {t}"
    );
    let out = p.run(&rt, &["--annotation", &ann(&ns_b)], &create_and_list(&b));
    let t = text(&out);
    assert!(out.status.success(), "container b: {t}");
    assert!(t.contains(&format!("name {b}")), "b sees its map: {t}");
    assert!(!t.contains(&a), "b does not see a's map or pin: {t}");
    // a again: its pin is there, b's map is not visible.
    let out = p.run(
        &rt,
        &["--annotation", &ann(&ns_a)],
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
    assert_eq!(owner(&a), Some(ns_a.clone()), "{maps:?}");
    assert_eq!(owner(&b), Some(ns_b.clone()), "{maps:?}");

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

/// The test helper inside a container: bind-mounted at /helper with the libraries it loads
/// (the image may lack some), each at its own path.
fn helper_mounts() -> Vec<String> {
    let helper = bpfns_tests::keeper_program();
    let mut v = vec!["-v".into(), format!("{}:/helper:ro", helper.display())];
    for lib in bpfns_tests::helper_libraries() {
        v.push("-v".into());
        v.push(format!("{}:{}:ro", lib.display(), lib.display()));
    }
    v
}

/// `key=value` of a helper's output.
fn value<'a>(t: &'a str, key: &str) -> Option<&'a str> {
    t.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// `podman exec`: a process joining a running container is in its namespace before its first
/// call (its cgroup is bound to the namespace), sees the container's view and never the
/// root's, and owns what it creates; user code in the container may not share its fd table
/// with a new process.
fn exec_joins_the_container(runtime: &str) {
    if let Some(why) = podman_skip_reason() {
        skip(why);
        return;
    }
    let d = TestDaemon::start(&format!("podman-exec-{runtime}"));
    let p = Podman::new(&format!("exec-{runtime}"), &d);
    let rt = format!("bpfns-{runtime}");
    let mounts = helper_mounts();
    let (a, b) = (format!("{runtime}_xa"), format!("{runtime}_xb"));
    for name in [&a, &b] {
        // As the engine tests name namespaces (`Engine::is_namespace_of`).
        let ann = format!("io.bpfns.namespace=/containers/{name}");
        let script = format!(
            "bpftool map create /sys/fs/bpf/{name} type array key 4 value 4 entries 1 \
             name {name} && touch /tmp/ready && exec sleep 600"
        );
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--runtime",
            &rt,
            "--network=none",
            "--cap-add",
            "BPF",
            "--annotation",
            &ann,
        ];
        args.extend(mounts.iter().map(String::as_str));
        args.extend_from_slice(&[IMAGE, "sh", "-c", &script]);
        let out = p.podman(&args);
        assert!(out.status.success(), "container {name}: {}", text(&out));
    }
    for name in [&a, &b] {
        common::wait_exec_ready(&p, name, None);
    }
    // Its view, its pin, the sibling's id, the maps it creates: as for Docker and containerd.
    let (_, ns_b) = common::exec_joins_the_container(&p, &d, &a, &b, "exec /helper");
    let exec = |name: &str, cmd: &[&str]| p.exec(name, cmd);

    // User code may not share its fd table with a new process: not the container's first
    // program, nor an exec'd one.
    let out = exec(&a, &["/helper", "clone-files"]);
    let t = text(&out);
    assert_eq!(value(&t, "child"), Some("signaled:9"), "exec'd: {t}");
    let mut args = vec![
        "run",
        "--rm",
        "--runtime",
        &rt,
        "--network=none",
        "--cap-add",
        "BPF",
    ];
    args.extend(mounts.iter().map(String::as_str));
    args.extend_from_slice(&[IMAGE, "/helper", "clone-files"]);
    let out = p.podman(&args);
    let t = text(&out);
    assert_eq!(
        value(&t, "child"),
        Some("signaled:9"),
        "container's init: {t}"
    );
    // The container's cgroups were bound to its namespace, and go with it.
    let kernel = &d.daemon().kernel;
    let bound = || {
        kernel
            .cgroup_bindings()
            .expect("bindings")
            .iter()
            .filter(|x| d.daemon().ns_name(x.2) == ns_b)
            .count()
    };
    assert!(bound() > 0, "{:?}", kernel.cgroup_bindings());
    let out = p.podman(&["rm", "-f", "-t", "0", &b]);
    assert!(out.status.success(), "{}", text(&out));
    // bpfnsd made b's namespace for the container: it deletes it once the container is
    // removed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while d.client().ns_show(&ns_b).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "{ns_b} outlived its container"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // (Its id is gone with it: any binding of a namespace the registry lacks counts. The
    // registry lets go of a namespace before the kernel side does: wait for both.)
    let known = |ns| d.daemon().ns_name(ns).starts_with("/containers/");
    let clean = || {
        kernel
            .cgroup_bindings()
            .expect("bindings")
            .iter()
            .all(|x| known(x.2) && d.daemon().ns_name(x.2) != ns_b)
    };
    while !clean() {
        assert!(
            std::time::Instant::now() < deadline,
            "bindings of {ns_b} outlived it: {:?}",
            kernel.cgroup_bindings()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn podman_exec_on_runc() {
    exec_joins_the_container("runc");
}

#[test]
fn podman_exec_on_crun() {
    exec_joins_the_container("crun");
}

#[test]
fn podman_on_runc() {
    two_containers_see_their_own_maps("runc");
}

/// crun 1.8 sends the listener from a child of the container's init that shares the init's
/// file descriptor table (`clone(CLONE_FILES)`): the init is runtime code until its exec, and
/// the kernel side lets such code do it (BPFNS_TASK_RUNTIME).
#[test]
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

/// `bpfns containers install` registers the wrapper in podman's configuration (here the
/// test's private containers.conf, merged), as the default runtime: a plain `podman run`
/// then lands in a namespace of its own; `--undo` puts the configuration back byte for byte.
#[test]
fn podman_through_bpfns_containers_install() {
    if let Some(why) = podman_skip_reason() {
        skip(why);
        return;
    }
    let _serial = one_at_a_time();
    let d = Bpfnsd::start("podman-install");
    let p = Podman::new("install", &d);
    let conf = p.dir.join("containers.conf");
    let before = std::fs::read(&conf).expect("containers.conf");
    let installed = Installed::new(&p.dir, &d);
    let install = |extra: &[&str]| installed.install("podman", &conf, extra);
    let j = install(&["--default"]);
    assert_eq!(j["changed"], true, "{j}");
    let j = install(&["--default"]);
    assert_eq!(j["changed"], false, "a second install changes nothing: {j}");

    // No --runtime: podman's default is now bpfns-oci on podman's own default runtime (crun
    // unless a containers.conf of the host names runc).
    let ns = d.namespace("installed");
    // Made beforehand, so that it outlives the `--rm` container and still owns its map below.
    let mut c = d.client();
    for n in ["/containers", ns.as_str()] {
        if c.ns_show(n).is_err() {
            c.ns_create(n).expect("ns create");
        }
    }
    let map = format!("inst_m{}", d.suffix());
    let out = p.podman(&[
        "run",
        "--rm",
        "--network=none",
        "--cap-add",
        "BPF",
        "--annotation",
        &format!("io.bpfns.namespace={ns}"),
        IMAGE,
        "sh",
        "-c",
        &create_and_list(&map),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "podman run: {t}");
    assert!(
        t.contains(&format!("name {map}")),
        "the container sees its map: {t}"
    );
    let maps = d.client().list(ObjectKind::Map).expect("list");
    let owner = maps
        .iter()
        .find(|m| m.name == map)
        .map(|m| m.namespace.clone());
    assert_eq!(owner.as_deref(), Some(ns.as_str()), "{maps:?}");

    let j = install(&["--undo"]);
    assert_eq!(j["changed"], true, "{j}");
    assert_eq!(
        std::fs::read(&conf).expect("containers.conf"),
        before,
        "--undo restores the configuration byte for byte"
    );
    for rt in ["crun", "runc"] {
        assert!(
            std::fs::symlink_metadata(installed.bin.join(format!("bpfns-oci-{rt}"))).is_err(),
            "the links it made are gone"
        );
    }
}

/// A container without CAP_BPF or CAP_SYS_ADMIN whose profile lets bpf() run
/// (`seccomp=unconfined`, a profile that only logs) is supervised all the same: a process `podman exec --privileged`
/// joins to it (every capability, more than the container's bounding set) and a container
/// with CAP_NET_ADMIN walk the ids of their namespace only, never the host's.
#[test]
fn unconfined_containers_without_bpf_capabilities_are_supervised() {
    if let Some(why) = podman_skip_reason() {
        skip(why);
        return;
    }
    let _serial = one_at_a_time();
    let d = TestDaemon::start("podman-unconfined");
    let p = Podman::new("unconfined", &d);
    // A map of the host's (the root namespace's), pinned where the test alone uses it.
    let host_map = format!("uc_host_{}", std::process::id());
    let pin = format!("/sys/fs/bpf/bpfns-test-{host_map}");
    struct Unpin(String);
    impl Drop for Unpin {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _unpin = Unpin(pin.clone());
    let out = Command::new("bpftool")
        .args([
            "map", "create", &pin, "type", "array", "key", "4", "value", "4",
        ])
        .args(["entries", "1", "name", &host_map])
        .output()
        .expect("bpftool");
    assert!(out.status.success(), "{}", text(&out));
    let maps = d.client().list(ObjectKind::Map).expect("list");
    let host_id = maps
        .iter()
        .find(|m| m.name == host_map)
        .map(|m| m.id)
        .expect("the host's map");
    // The ids a walk (MAP_GET_NEXT_ID, nothing opened) returns.
    let walked = |t: &str| -> Vec<u32> {
        value(t, "ids")
            .unwrap_or_else(|| panic!("no walk: {t}"))
            .split(',')
            .filter_map(|v| v.parse().ok())
            .collect()
    };
    let mounts = helper_mounts();
    // No profile, and one whose default action logs the call and lets it run.
    let log_profile = p.dir.join("log.json");
    std::fs::write(
        &log_profile,
        r#"{"defaultAction": "SCMP_ACT_LOG",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": []}"#,
    )
    .expect("log.json");
    for (i, profile) in ["unconfined".to_string(), log_profile.display().to_string()]
        .iter()
        .enumerate()
    {
        let name = format!("uc{i}_{}", std::process::id());
        let opt = format!("seccomp={profile}");
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--runtime",
            "bpfns-runc",
            "--network=none",
            "--security-opt",
            &opt,
        ];
        args.extend(mounts.iter().map(String::as_str));
        args.extend_from_slice(&[IMAGE, "sleep", "600"]);
        let out = p.podman(&args);
        assert!(out.status.success(), "{}", text(&out));
        let out = p.podman(&["exec", "--privileged", &name, "/helper", "list", "map"]);
        let t = text(&out);
        assert!(
            !walked(&t).contains(&host_id),
            "a privileged exec into a container with seccomp={profile} walks to the host's map \
             {host_id}: {t}"
        );
        let _ = p.podman(&["rm", "-f", "-t", "0", &name]);
    }
    let mut args = vec![
        "run",
        "--rm",
        "--runtime",
        "bpfns-runc",
        "--network=none",
        "--cap-add",
        "NET_ADMIN",
        "--security-opt",
        "seccomp=unconfined",
    ];
    args.extend(mounts.iter().map(String::as_str));
    args.extend_from_slice(&[IMAGE, "/helper", "list", "map"]);
    let out = p.podman(&args);
    let t = text(&out);
    assert!(
        !walked(&t).contains(&host_id),
        "an unconfined CAP_NET_ADMIN container walks to the host's map {host_id}: {t}"
    );
}
