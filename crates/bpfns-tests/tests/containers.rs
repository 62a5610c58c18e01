//! bpfnsd's side of containers' namespaces, without an engine: placing a container
//! (`container_namespace`), what only runtimes may ask, records that survive a restart, and
//! the collection at start. (tests/podman.rs of bpfns-oci runs the same with podman.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::collections::BTreeMap;

use bpfns_model::container::ContainerFacts;
use bpfns_proto::ErrorCode;
use bpfns_tests::{require_kernel, Helper, TestDaemon};

fn facts(id: &str, name: Option<&str>, ann: &[(&str, &str)]) -> ContainerFacts {
    ContainerFacts {
        id: id.into(),
        name: name.map(String::from),
        annotations: ann
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// A directory `n` in the daemon's test directory (a bundle or runtime state stand-in).
fn made_dir(d: &TestDaemon, n: &str) -> String {
    let p = d.dir.join(n);
    std::fs::create_dir_all(&p).unwrap();
    p.to_str().unwrap().to_string()
}

fn paths(d: &TestDaemon) -> Vec<String> {
    d.client()
        .ns_list()
        .unwrap()
        .into_iter()
        .map(|n| n.path)
        .collect()
}

/// The helper as a client of `d`: in namespace `ns`, or (`as_nobody`) as uid 1000 without
/// capabilities in the root namespace.
fn helper_asks(d: &TestDaemon, ns: Option<&str>, as_nobody: bool, op: &[&str]) -> String {
    let sock = d.socket.to_string_lossy().into_owned();
    let mut args = if as_nobody {
        vec!["rt-as", "none", "client", sock.as_str()]
    } else {
        vec!["client", sock.as_str()]
    };
    args.extend_from_slice(op);
    let mut h = Helper::spawn(&args);
    if let Some(ns) = ns {
        d.client().enter(ns, h.pid).unwrap();
    }
    h.go();
    let line = h.line().expect("helper output");
    h.finish();
    line
}

/// Only a host administrator outside namespaces (a runtime) places containers or tells
/// bpfnsd one was deleted: a member with every capability, and an unprivileged user, are
/// refused, and nothing changes.
#[test]
fn only_runtimes_place_and_release_containers() {
    require_kernel!();
    let d = TestDaemon::start("ctr-authz");
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    let (path, created) = c
        .container_namespace(&facts("victim", Some("victim"), &[]), None, None)
        .unwrap();
    assert_eq!((path.as_str(), created), ("/containers/victim", true));
    let before = paths(&d);
    for (ns, nobody) in [(Some("/a"), false), (None, true)] {
        let ask = |op: &[&str]| helper_asks(&d, ns, nobody, op);
        // Placing itself (or anything) outside its namespace, by annotation.
        assert_eq!(
            ask(&["container-ns", "evil", "io.bpfns.namespace=/escape"]),
            "error=Denied",
            "{ns:?} {nobody}"
        );
        // Releasing another container's namespace.
        assert_eq!(
            ask(&["container-deleted", "victim"]),
            "error=Denied",
            "{ns:?} {nobody}"
        );
    }
    assert_eq!(paths(&d), before, "nothing changed");
    assert_eq!(d.client().status().unwrap().containers, 1);
}

/// Placing: by name (again after a restart of the container), a name taken by a container
/// that is not gone, bad names refused without creating anything, records kept over a
/// restart of bpfnsd, and a container whose bundle went while bpfnsd was down collected at
/// start, its pins in the parent's orphans.
#[test]
fn containers_are_placed_recorded_and_collected_at_start() {
    require_kernel!();
    let d = TestDaemon::start_with("ctr-place", |c| c.containers.collect_interval_secs = 0);
    let bundle = d.dir.join("bundle-web");
    std::fs::create_dir_all(&bundle).unwrap();
    let b = bundle.to_str().unwrap();
    let mut c = d.client();
    let web = facts("id-web", Some("web"), &[]);
    assert_eq!(
        c.container_namespace(&web, Some(b), None).unwrap(),
        ("/containers/web".to_string(), true)
    );
    // Created again (a stopped container started): the same namespace.
    assert_eq!(
        c.container_namespace(&web, Some(b), None).unwrap(),
        ("/containers/web".to_string(), false)
    );
    // Another container of the same name while the first is not gone.
    let e = c
        .container_namespace(&facts("id-other", Some("web"), &[]), None, None)
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
    assert!(e.to_string().contains("id-web"), "{e}");
    // Hostile names: refused, nothing created.
    let before = paths(&d);
    for f in [
        facts("x1", Some(".."), &[]),
        facts("x2", Some("a/../../b"), &[]),
        facts("../../x3", None, &[]),
        facts("x4", None, &[("io.bpfns.namespace", "/")]),
        facts("x5", None, &[("io.bpfns.namespace", "/a/../b")]),
        facts(
            "x6",
            None,
            &[
                ("io.kubernetes.pod.namespace", "default"),
                ("io.kubernetes.pod.name", "../../../etc"),
            ],
        ),
        facts("x7", None, &[("io.kubernetes.cri.sandbox-name", "p")]),
    ] {
        let e = c.container_namespace(&f, None, None).unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{f:?}: {e}");
    }
    assert_eq!(paths(&d), before, "nothing created");
    // Released (the runtime deleted it) but its bundle is there: kept.
    assert_eq!(
        c.container_deleted("id-web", None).unwrap(),
        Vec::<String>::new()
    );
    assert!(c.ns_show("/containers/web").is_ok());
    assert!(c.container_deleted("unknown", None).unwrap().is_empty());
    // A pin in its bpffs, to follow.
    let ns_bpffs = c.ns_show("/containers/web").unwrap().bpffs;
    let pin = std::path::Path::new(&ns_bpffs).join("web-pin");
    // A map of the container's (made by a member), pinned in its bpffs.
    let mut h = Helper::spawn(&["create", "map"]);
    c.enter("/containers/web", h.pid).unwrap();
    h.go();
    let id: u32 = h.expect("id").parse().unwrap();
    let map = c.get_fd(bpfns_model::ObjectKind::Map, id).unwrap();
    bpfns_sys::bpf::obj_pin(&map, &pin).unwrap();
    drop((map, h));
    drop(c);

    // bpfnsd restarts; meanwhile the engine removed the container (its bundle).
    let (dir, layout) = d.stop();
    std::fs::remove_dir_all(&bundle).unwrap();
    let d = TestDaemon::start_configured(dir, layout, false, |c| {
        c.containers.collect_interval_secs = 0
    });
    let mut c = d.client();
    let mut collected = false;
    for _ in 0..50 {
        if c.ns_show("/containers/web").is_err() {
            collected = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(collected, "collected at start");
    let parent = c.ns_show("/containers").unwrap().bpffs;
    let orphans: Vec<_> = std::fs::read_dir(std::path::Path::new(&parent).join("orphans"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        orphans.iter().any(|o| o.join("web-pin").exists()),
        "its pin is in the parent's orphans: {orphans:?}"
    );
    let st = c.status().unwrap();
    assert_eq!(st.containers, 0);
    assert!(
        st.collected_containers
            .iter()
            .any(|l| l.starts_with("id-web /containers/web: removed")),
        "{:?}",
        st.collected_containers
    );
}

/// A container id is unique only within one runtime root (`ctr -n a run ... web` and `ctr -n b
/// run ... web`; a runtime's `--root`): a second container reusing a live container's id
/// neither joins its namespace (refused, naming the other) nor releases it with its own
/// runtime's `delete`; once the first is gone, the id gets a fresh namespace.
#[test]
fn a_reused_container_id_neither_joins_nor_releases_the_first() {
    require_kernel!();
    let d = TestDaemon::start_with("ctr-reuse", |c| {
        c.containers.collect_interval_secs = 0;
        c.containers.vanish_grace_secs = 0;
    });
    let dir = |n: &str| made_dir(&d, n);
    let (bundle_a, state_a) = (dir("a/bundle/web"), dir("a/state/web"));
    let (bundle_b, state_b) = (dir("b/bundle/web"), dir("b/state/web"));
    let web = facts("web", None, &[]);
    let mut c = d.client();
    let place = |c: &mut bpfns_client::Client, b: &str, s: &str| {
        c.container_namespace(&web, Some(b), Some(s))
    };
    assert_eq!(
        place(&mut c, &bundle_a, &state_a).unwrap(),
        ("/containers/web".to_string(), true)
    );
    let first = c.ns_show("/containers/web").unwrap().id;
    // Another runtime root's container "web": refused, the first's namespace untouched.
    let e = place(&mut c, &bundle_b, &state_b).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
    assert!(e.to_string().contains(&bundle_a), "{e}");
    // Its runtime's delete does not release the first.
    let released = |c: &mut bpfns_client::Client, s: &str| match c
        .call(bpfns_proto::Op::ContainerDeleted {
            id: "web".into(),
            state_dir: Some(s.into()),
        })
        .unwrap()
    {
        bpfns_proto::Reply::ContainerReleased { namespace, .. } => namespace,
        r => panic!("unexpected reply {r:?}"),
    };
    assert_eq!(released(&mut c, &state_b), None);
    // Not released, the first still counts as running: with its runtime state gone and no
    // task in it, it is collected as vanished (a released one would be kept as stopped).
    std::fs::remove_dir_all(&state_a).unwrap();
    let mut collected = false;
    for _ in 0..100 {
        if c.ns_show("/containers/web").is_err() {
            collected = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        collected,
        "the first container was released by the other runtime's delete"
    );
    // The first is gone: the id gets a fresh namespace.
    let (path, created) = place(&mut c, &bundle_b, &state_b).unwrap();
    assert_eq!((path.as_str(), created), ("/containers/web", true));
    assert_ne!(c.ns_show("/containers/web").unwrap().id, first);
    // The same container created again (same bundle and state): the same namespace; its
    // own runtime's delete releases it.
    assert_eq!(
        place(&mut c, &bundle_b, &state_b).unwrap(),
        ("/containers/web".to_string(), false)
    );
    assert_eq!(
        released(&mut c, &state_b).as_deref(),
        Some("/containers/web")
    );
}

fn wait_gone(c: &mut bpfns_client::Client, path: &str) -> bool {
    for _ in 0..100 {
        if c.ns_show(path).is_err() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// What a removed container leaves is not the next one's: namespaces below its own (its
/// members made them) go with it; one that cannot go (a member left in it) keeps a container
/// of the same name from starting rather than letting it in.
#[test]
fn a_removed_containers_namespace_is_not_inherited() {
    require_kernel!();
    let d = TestDaemon::start_with("ctr-leftover", |c| c.containers.collect_interval_secs = 0);
    let dir = |n: &str| made_dir(&d, n);
    let mut c = d.client();
    let web = |id: &str| facts(id, Some("web"), &[]);
    // Removed with a namespace below its own: both go.
    let (b1, s1) = (dir("b1"), dir("s1"));
    c.container_namespace(&web("id1"), Some(&b1), Some(&s1))
        .unwrap();
    c.ns_create("/containers/web/kid").unwrap();
    std::fs::remove_dir_all(&b1).unwrap();
    c.container_deleted("id1", Some(&s1)).unwrap();
    assert!(
        wait_gone(&mut c, "/containers/web"),
        "namespace left behind"
    );
    // Removed while a task lives below its namespace: kept, and the next "web" is refused.
    let (b2, s2) = (dir("b2"), dir("s2"));
    c.container_namespace(&web("id2"), Some(&b2), Some(&s2))
        .unwrap();
    c.ns_create("/containers/web/kid").unwrap();
    let mut h = Helper::spawn(&["hold", "ready"]);
    c.enter("/containers/web/kid", h.pid).unwrap();
    h.go();
    h.expect("ready");
    std::fs::remove_dir_all(&b2).unwrap();
    c.container_deleted("id2", Some(&s2)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        c.ns_show("/containers/web").is_ok(),
        "deleted with a member"
    );
    let (b3, s3) = (dir("b3"), dir("s3"));
    let e = c
        .container_namespace(&web("id3"), Some(&b3), Some(&s3))
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
    assert!(e.to_string().contains("left from a container"), "{e}");
    // Once the member is gone, the next "web" gets a fresh namespace.
    h.finish();
    let (path, created) = c
        .container_namespace(&web("id3"), Some(&b3), Some(&s3))
        .unwrap();
    assert_eq!((path.as_str(), created), ("/containers/web", true));
    assert!(c.ns_show("/containers/web/kid").is_err());
}

/// A stopped container created again counts as running only once its createRuntime hook
/// has run: a create the runtime then fails leaves it stopped (its namespace and pins kept),
/// not vanished.
#[test]
fn a_failed_create_again_leaves_the_container_stopped() {
    require_kernel!();
    let d = TestDaemon::start_with("ctr-again-failed", |c| {
        c.containers.collect_interval_secs = 0;
        c.containers.vanish_grace_secs = 0;
    });
    let dir = |n: &str| made_dir(&d, n);
    let (b, s) = (dir("bundle"), dir("state"));
    let pv = facts("pv", Some("pv"), &[]);
    let mut c = d.client();
    c.container_namespace(&pv, Some(&b), Some(&s)).unwrap();
    // Stopped: deleted by its runtime, its state gone, its bundle kept.
    c.container_deleted("pv", Some(&s)).unwrap();
    std::fs::remove_dir_all(&s).unwrap();
    // Created again; the runtime fails before the hook (no state written).
    assert_eq!(
        c.container_namespace(&pv, Some(&b), Some(&s)).unwrap(),
        ("/containers/pv".to_string(), false)
    );
    assert!(
        !wait_gone(&mut c, "/containers/pv"),
        "collected as vanished after a failed create"
    );
}

/// A container created again goes where the settings say now: an annotation placement the
/// operator turned off meanwhile is not kept.
#[test]
fn a_container_created_again_follows_the_settings_of_now() {
    require_kernel!();
    let d = TestDaemon::start("ctr-again-settings");
    let dir = |n: &str| made_dir(&d, n);
    let (b, s) = (dir("bundle"), dir("state"));
    let sq = facts(
        "sq",
        Some("sq"),
        &[("io.bpfns.namespace", "/containers/v1")],
    );
    let mut c = d.client();
    assert_eq!(
        c.container_namespace(&sq, Some(&b), Some(&s)).unwrap().0,
        "/containers/v1"
    );
    c.container_deleted("sq", Some(&s)).unwrap();
    drop(c);
    let (dir, layout) = d.stop();
    let d = TestDaemon::start_configured(dir, layout, false, |c| c.containers.annotation = false);
    let mut c = d.client();
    assert_eq!(
        c.container_namespace(&sq, Some(&b), Some(&s)).unwrap().0,
        "/containers/sq"
    );
}
