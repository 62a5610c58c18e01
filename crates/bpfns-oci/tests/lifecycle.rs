//! Containers' namespaces over the containers' lives, with podman on runc and a bpfnsd of the
//! test's own: named after the container, its pod or its annotation; kept over stop and start;
//! deleted when the container is removed (its pins in the parent's orphans) or has vanished;
//! hostile names refused. See docs/containers.md, "Naming" and "When containers go".

mod common;

use std::path::Path;
use std::process::{Command, Output};

use bpfns_model::ObjectKind;
use bpfns_tests::{skip, TestDaemon};
use common::podman::{one_at_a_time, podman_skip_reason, Podman, IMAGE};
use common::text;

/// A bpfnsd whose container collection runs every second, and counts a container as vanished
/// two seconds after it was placed.
fn lifecycle_daemon(name: &str) -> TestDaemon {
    TestDaemon::start_with(name, |c| {
        c.containers.collect_interval_secs = 1;
        c.containers.vanish_grace_secs = 2;
    })
}

/// Wait (30 s at most) until `f` holds.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..150 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("timed out waiting until {what}");
}

/// Wait until container `name` has pinned `pin` in namespace `ns`'s bpffs (a file, whatever
/// answers its trapped calls); on a timeout, say what it printed.
fn wait_for_pin(p: &Podman, d: &TestDaemon, name: &str, ns: &str, pin: &str) {
    let pinned = || {
        d.client()
            .ns_show(ns)
            .is_ok_and(|i| Path::new(&i.bpffs).join(pin).exists())
    };
    for _ in 0..150 {
        if pinned() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!(
        "timed out waiting for the pin {pin} of container {name} in {ns}: logs: {} ps: {} \
         namespaces: {:?}",
        text(&p.podman(&["logs", name])),
        text(&p.podman(&["ps", "-a"])),
        d.client()
            .ns_list()
            .map(|v| v.into_iter().map(|n| n.path).collect::<Vec<_>>())
    );
}

/// How many maps namespace `ns` owns.
fn maps_in(d: &TestDaemon, ns: &str) -> usize {
    d.client()
        .list_in(ObjectKind::Map, Some(ns), false)
        .expect("list")
        .len()
}

/// `base` (at most 9 characters) made unique to this test process, as a BPF object name.
fn uniq(base: &str) -> String {
    format!("{base}{}", std::process::id() % 1_000_000)
}

fn ns_exists(d: &TestDaemon, path: &str) -> bool {
    d.client().ns_show(path).is_ok()
}

/// A detached container named `name` that pins a map `pin` (or says `again` when the pin is
/// there already) and sleeps.
fn run_pinning(p: &Podman, name: &str, pin: &str, extra: &[&str]) -> Output {
    let script = format!(
        "if [ -e /sys/fs/bpf/{pin} ]; then echo again; else bpftool map create \
         /sys/fs/bpf/{pin} type array key 4 value 4 entries 1 name {pin} && echo made; fi; \
         exec sleep 1000"
    );
    let mut args = vec![
        "run",
        "-d",
        "--name",
        name,
        "--runtime",
        "bpfns-runc",
        "--network=none",
        "--cap-add",
        "BPF",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[IMAGE, "sh", "-c", &script]);
    p.podman(&args)
}

/// Named after the container; kept (with its pins) over stop, a bpfnsd restart and start;
/// deleted when the container is removed, its pins in the parent's orphans.
#[test]
fn podman_container_namespaces_live_and_die_with_their_containers() {
    if let Some(why) = podman_skip_reason() {
        skip(why);
        return;
    }
    let _serial = one_at_a_time();
    // No periodic collection: a removed container's namespace goes because bpfnsd watches
    // the bundle of a container its runtime deleted.
    let no_sweep = |c: &mut bpfnsd::Config| c.containers.collect_interval_secs = 3600;
    let d = TestDaemon::start_with("podman-lifecycle", no_sweep);
    let p = Podman::new("lifecycle", &d);
    let lcpin = &uniq("lcpin");
    let out = run_pinning(&p, "lc_web", lcpin, &[]);
    assert!(out.status.success(), "run: {}", text(&out));
    wait_for_pin(&p, &d, "lc_web", "/containers/lc_web", lcpin);
    assert_eq!(
        maps_in(&d, "/containers/lc_web"),
        1,
        "named after the container"
    );

    // Stopped: podman deletes it from the runtime; bpfnsd keeps its namespace, also over a
    // restart of bpfnsd (the record is in its database).
    let out = p.podman(&["stop", "-t", "0", "lc_web"]);
    assert!(out.status.success(), "stop: {}", text(&out));
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(ns_exists(&d, "/containers/lc_web"), "kept while stopped");
    let (dir, layout) = d.stop();
    let d = TestDaemon::start_configured(dir, layout, false, no_sweep);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(ns_exists(&d, "/containers/lc_web"), "kept over a restart");
    let out = p.podman(&["start", "lc_web"]);
    assert!(out.status.success(), "start: {}", text(&out));
    wait_until("the restarted container says what it found", || {
        let logs = text(&p.podman(&["logs", "lc_web"]));
        logs.contains("again")
    });
    assert_eq!(d.client().status().expect("status").containers, 1);

    // Removed: its namespace goes, its pin to the parent's orphans.
    let bpffs_parent = d.client().ns_show("/containers").expect("parent").bpffs;
    let out = p.podman(&["rm", "-f", "-t", "0", "lc_web"]);
    assert!(out.status.success(), "rm: {}", text(&out));
    let removed = std::time::Instant::now();
    wait_until("the namespace is deleted", || {
        !ns_exists(&d, "/containers/lc_web")
    });
    assert!(
        removed.elapsed() < std::time::Duration::from_secs(10),
        "deleted {:?} after podman rm",
        removed.elapsed()
    );
    let orphans: Vec<String> = std::fs::read_dir(Path::new(&bpffs_parent).join("orphans"))
        .expect("orphans")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let moved = orphans
        .iter()
        .find(|o| o.starts_with("lc_web-"))
        .unwrap_or_else(|| panic!("no orphans/lc_web-*: {orphans:?}"));
    assert!(
        Path::new(&bpffs_parent)
            .join("orphans")
            .join(moved)
            .join(lcpin.as_str())
            .exists(),
        "the pin moved to the parent's orphans"
    );
    assert_eq!(maps_in(&d, "/containers"), 1, "its map moved to the parent");
    let st = d.client().status().expect("status");
    assert_eq!(st.containers, 0);
    assert!(
        st.collected_containers
            .iter()
            .any(|l| l.contains("/containers/lc_web") && l.contains("removed")),
        "{:?}",
        st.collected_containers
    );
}

/// Kubernetes pod annotations put a pod's containers together in `/k8s/<namespace>/<pod>`,
/// deleted with the last of them; an annotation's namespace made for a container goes with
/// it.
#[test]
fn podman_pods_and_annotations_name_namespaces() {
    if let Some(why) = podman_skip_reason() {
        skip(why);
        return;
    }
    let _serial = one_at_a_time();
    let d = lifecycle_daemon("podman-pods");
    let p = Podman::new("pods", &d);
    let (sbpin, apppin, tpin) = (&uniq("sbpin"), &uniq("apppin"), &uniq("tpin"));
    let pod = [
        "--annotation",
        "io.kubernetes.cri.sandbox-namespace=default",
        "--annotation",
        "io.kubernetes.cri.sandbox-name=web-1",
    ];
    let sandbox = [
        &pod[..],
        &["--annotation", "io.kubernetes.cri.container-type=sandbox"],
    ]
    .concat();
    let app = [
        &pod[..],
        &["--annotation", "io.kubernetes.cri.container-type=container"],
    ]
    .concat();
    let out = run_pinning(&p, "pod_sandbox", sbpin, &sandbox);
    assert!(out.status.success(), "sandbox: {}", text(&out));
    let out = run_pinning(&p, "pod_app", apppin, &app);
    assert!(out.status.success(), "app: {}", text(&out));
    // Both in one namespace: each sees the other's pin, and the namespace owns both maps.
    wait_for_pin(&p, &d, "pod_sandbox", "/k8s/default/web-1", sbpin);
    wait_for_pin(&p, &d, "pod_app", "/k8s/default/web-1", apppin);
    assert_eq!(maps_in(&d, "/k8s/default/web-1"), 2);
    let out = p.podman(&["rm", "-f", "-t", "0", "pod_app"]);
    assert!(out.status.success(), "rm app: {}", text(&out));
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        ns_exists(&d, "/k8s/default/web-1"),
        "the pod's namespace stays while the sandbox runs"
    );
    let out = p.podman(&["rm", "-f", "-t", "0", "pod_sandbox"]);
    assert!(out.status.success(), "rm sandbox: {}", text(&out));
    wait_until("the pod's namespace is deleted", || {
        !ns_exists(&d, "/k8s/default/web-1")
    });

    // An annotation's namespace: made for the container, deleted with it.
    let out = run_pinning(
        &p,
        "tenant_web",
        tpin,
        &["--annotation", "io.bpfns.namespace=/tenant-a/web"],
    );
    assert!(out.status.success(), "annotated: {}", text(&out));
    wait_for_pin(&p, &d, "tenant_web", "/tenant-a/web", tpin);
    assert_eq!(maps_in(&d, "/tenant-a/web"), 1);
    let out = p.podman(&["rm", "-f", "-t", "0", "tenant_web"]);
    assert!(out.status.success(), "rm: {}", text(&out));
    wait_until("the annotation's namespace is deleted", || {
        !ns_exists(&d, "/tenant-a/web")
    });
    assert!(ns_exists(&d, "/tenant-a"), "its parent stays");
}

/// Hostile names: refused with the rule they break, and nothing is created.
#[test]
fn podman_bad_container_names_are_refused() {
    if let Some(why) = podman_skip_reason() {
        skip(why);
        return;
    }
    let _serial = one_at_a_time();
    let d = lifecycle_daemon("podman-badnames");
    let p = Podman::new("badnames", &d);
    let long = "x".repeat(70);
    let cases: [(Vec<String>, &str); 6] = [
        (
            vec!["--annotation".into(), "io.bpfns.namespace=/../etc".into()],
            "io.bpfns.namespace",
        ),
        (
            vec!["--annotation".into(), "io.bpfns.namespace=/".into()],
            "root namespace",
        ),
        (
            vec![
                "--annotation".into(),
                "io.kubernetes.cri.sandbox-namespace=..".into(),
                "--annotation".into(),
                "io.kubernetes.cri.sandbox-name=x".into(),
            ],
            "pod namespace",
        ),
        (
            vec![
                "--annotation".into(),
                "io.kubernetes.pod.name=a/../../b".into(),
                "--annotation".into(),
                "io.kubernetes.pod.namespace=default".into(),
            ],
            "pod name",
        ),
        (vec!["--name".into(), long.clone()], "64 characters"),
        // Its own pod's keys (CRI-O's) and another pod's (containerd's): not that pod's
        // namespace, refused.
        (
            vec![
                "--annotation".into(),
                "io.kubernetes.pod.namespace=team-b".into(),
                "--annotation".into(),
                "io.kubernetes.pod.name=evil".into(),
                "--annotation".into(),
                "io.kubernetes.cri.sandbox-namespace=team-a".into(),
                "--annotation".into(),
                "io.kubernetes.cri.sandbox-name=web".into(),
            ],
            "two pods",
        ),
    ];
    for (extra, says) in &cases {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let out = p.run("bpfns-runc", &extra, "echo started");
        let t = text(&out);
        assert!(!out.status.success(), "{extra:?} started: {t}");
        assert!(
            t.contains(says),
            "{extra:?}: the message names the rule: {t}"
        );
    }
    let names: Vec<String> = d
        .client()
        .ns_list()
        .expect("list")
        .into_iter()
        .map(|n| n.path)
        .collect();
    assert_eq!(names, vec!["/".to_string()], "nothing was created");
}

/// A container killed with its engine (no `delete`): once its processes and its runtime
/// state are gone, bpfnsd collects its namespace and says so.
#[test]
fn podman_vanished_containers_are_collected() {
    if let Some(why) = podman_skip_reason() {
        skip(why);
        return;
    }
    let _serial = one_at_a_time();
    let d = lifecycle_daemon("podman-vanish");
    let p = Podman::new("vanish", &d);
    let gonepin = &uniq("gonepin");
    let out = run_pinning(&p, "lc_gone", gonepin, &[]);
    assert!(out.status.success(), "run: {}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    wait_for_pin(&p, &d, "lc_gone", "/containers/lc_gone", gonepin);
    let pids = text(&p.podman(&[
        "inspect",
        "-f",
        "{{.State.ConmonPid}} {{.State.Pid}}",
        "lc_gone",
    ]));
    // The engine's monitor first (it would clean up), then the container's init.
    for pid in pids.split_whitespace() {
        let pid: i32 = pid.parse().unwrap_or_else(|_| panic!("pids: {pids}"));
        assert!(pid > 0, "pids: {pids}");
        let killed = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(killed.success(), "kill -9 {pid}");
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        ns_exists(&d, "/containers/lc_gone"),
        "kept while the runtime's state is there"
    );
    let state = Path::new("/run/runc").join(&id);
    assert!(state.is_dir(), "runc's state {}", state.display());
    std::fs::remove_dir_all(&state).expect("removing the runtime's state");
    wait_until("the vanished container is collected", || {
        !ns_exists(&d, "/containers/lc_gone")
    });
    let st = d.client().status().expect("status");
    assert!(
        st.collected_containers
            .iter()
            .any(|l| l.contains("lc_gone") && l.contains("vanished")),
        "{:?}",
        st.collected_containers
    );
    assert!(
        st.counters
            .iter()
            .any(|(k, v)| k == "containers_collected" && *v >= 1),
        "{:?}",
        st.counters
    );
}

/// `podman rm` while bpfnsd is down succeeds (the wrapper only warns), and the next bpfnsd
/// finds the container removed at its start.
#[test]
fn podman_rm_while_bpfnsd_is_down() {
    if let Some(why) = podman_skip_reason() {
        skip(why);
        return;
    }
    let _serial = one_at_a_time();
    let d = lifecycle_daemon("podman-rm-down");
    let p = Podman::new("rmdown", &d);
    let downpin = &uniq("downpin");
    let out = run_pinning(&p, "lc_down", downpin, &[]);
    assert!(out.status.success(), "run: {}", text(&out));
    wait_for_pin(&p, &d, "lc_down", "/containers/lc_down", downpin);
    let out = p.podman(&["stop", "-t", "0", "lc_down"]);
    assert!(out.status.success(), "stop: {}", text(&out));
    let (dir, layout) = d.stop();
    let out = p.podman(&["rm", "lc_down"]);
    assert!(
        out.status.success(),
        "rm without bpfnsd must succeed: {}",
        text(&out)
    );
    let d = TestDaemon::start_configured(dir, layout, false, |c| {
        c.containers.collect_interval_secs = 1;
        c.containers.vanish_grace_secs = 2;
    });
    wait_until("the removed container's namespace is deleted", || {
        !ns_exists(&d, "/containers/lc_down")
    });
    assert_eq!(maps_in(&d, "/containers"), 1, "its map moved to the parent");
}
