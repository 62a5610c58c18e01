//! bpfnsd against the real kernel: namespaces, membership, visibility through the API, the FD
//! broker, restart, and bad input. Each test runs its own daemon in-process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use std::path::{Path, PathBuf};

use bpfns_model::quota::KindLimits;
use bpfns_model::{ObjectKind, Policy};
use bpfns_proto::ErrorCode;
use bpfns_tests::{require_kernel, Helper, TestDaemon};

/// Run the helper as a client of `d`, inside namespace `ns` (None = root).
fn as_member(d: &TestDaemon, ns: Option<&str>, op: &[&str]) -> Result<String, String> {
    as_member_at(&d.socket, ns, op).1
}

/// [`as_member`] of the bpfnsd at `socket`; the helper's pid too.
fn as_member_at(
    socket: &std::path::Path,
    ns: Option<&str>,
    op: &[&str],
) -> (i32, Result<String, String>) {
    let sock = socket.to_string_lossy().into_owned();
    let mut args = vec!["client", sock.as_str()];
    args.extend_from_slice(op);
    let mut h = Helper::spawn(&args);
    if let Some(ns) = ns {
        bpfns_client::Client::connect(socket)
            .unwrap()
            .enter(ns, h.pid)
            .unwrap();
    }
    h.go();
    let line = h.line().expect("helper output");
    let pid = h.pid;
    h.finish();
    let r = if let Some(v) = line.strip_prefix("result=") {
        Ok(v.to_string())
    } else {
        Err(line.strip_prefix("error=").unwrap_or(&line).to_string())
    };
    (pid, r)
}

/// A helper in `ns` that creates `what` and holds it; returns it and the object id.
fn create_in(d: &TestDaemon, ns: &str, what: &str) -> (Helper, u32) {
    let mut h = Helper::spawn(&["create", what]);
    d.client().enter(ns, h.pid).unwrap();
    h.go();
    let id = h.expect("id").parse().unwrap();
    (h, id)
}

fn ids(s: &str) -> Vec<u32> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.parse().unwrap())
        .collect()
}

#[test]
fn namespaces_are_created_listed_shown_and_deleted() {
    require_kernel!();
    let d = TestDaemon::start("ns-crud");
    let mut c = d.client();
    let me = c.hello().unwrap();
    assert_eq!(me.namespace, "/");
    assert!(me.host_admin);
    c.ns_create("/a").unwrap();
    c.ns_create("/a/b").unwrap();
    c.ns_create("/c").unwrap();
    let list: Vec<String> = c.ns_list().unwrap().into_iter().map(|n| n.path).collect();
    assert_eq!(list, ["/", "/a", "/a/b", "/c"]);
    let b = c.ns_show("/a/b").unwrap();
    assert_eq!((b.parent.as_deref(), b.depth), (Some("/a"), 2));
    // The kernel knows the tree too.
    assert_eq!(d.daemon().kernel.namespaces().unwrap().len(), 3);

    fn code<T>(r: Result<T, bpfns_client::ClientError>) -> Option<ErrorCode> {
        r.err().and_then(|e| e.code())
    }
    assert_eq!(code(c.ns_create("/a")), Some(ErrorCode::Conflict));
    assert_eq!(code(c.ns_create("/x/y")), Some(ErrorCode::NotFound));
    assert_eq!(code(c.ns_create("a/../b")), Some(ErrorCode::BadRequest));
    assert_eq!(code(c.ns_show("/nope")), Some(ErrorCode::NotFound));
    assert_eq!(
        code(c.ns_delete("/a")),
        Some(ErrorCode::Conflict),
        "has a child"
    );
    assert_eq!(code(c.ns_delete("/")), Some(ErrorCode::Denied));
    c.ns_delete("/a/b").unwrap();
    c.ns_delete("/a").unwrap();
    let list: Vec<String> = c.ns_list().unwrap().into_iter().map(|n| n.path).collect();
    assert_eq!(list, ["/", "/c"]);
    assert_eq!(d.daemon().kernel.namespaces().unwrap().len(), 1);
}

/// A listing (written from descriptions kept between listings) follows every change of the
/// namespaces, and says of each what `ns show` says.
#[test]
fn a_listing_follows_every_change_and_agrees_with_show() {
    require_kernel!();
    let d = TestDaemon::start("ns-listing");
    let mut c = d.client();
    let agrees = |c: &mut bpfns_client::Client, want: &[&str]| {
        let list = c.ns_list().unwrap();
        let paths: Vec<&str> = list.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(paths, want);
        for n in &list {
            let (mut n, mut shown) = (n.clone(), c.ns_show(&n.path).unwrap());
            if n.path == "/" {
                // The root owns the host's objects, which come and go meanwhile.
                n.set_usage(Default::default());
                shown.set_usage(Default::default());
            }
            assert_eq!(n, shown, "listed and shown differ");
        }
        list
    };
    c.ns_create("/a").unwrap();
    agrees(&mut c, &["/", "/a"]);
    c.ns_create("/a/b").unwrap();
    let list = agrees(&mut c, &["/", "/a", "/a/b"]);
    assert_eq!(list[2].max_objects, list[1].max_objects);
    c.ns_set_quota("/a/b", Some(3), KindLimits::NONE).unwrap();
    let list = agrees(&mut c, &["/", "/a", "/a/b"]);
    assert_eq!(list[2].max_objects, Some(3), "a new quota is listed");
    c.ns_delete("/a/b").unwrap();
    c.ns_create("/a/b").unwrap();
    let list = agrees(&mut c, &["/", "/a", "/a/b"]);
    assert_ne!(
        list[2].max_objects,
        Some(3),
        "a namespace made again is listed anew"
    );
    c.ns_delete("/a/b").unwrap();
    agrees(&mut c, &["/", "/a"]);
}

/// `status` names the layers that run: the supervisor and the tracepoint backstop always,
/// BPF LSM exactly where the kernel runs BPF LSM programs (bpfnsd loads it there), with that
/// layer's counters.
#[test]
fn status_reports_the_layers_that_run() {
    require_kernel!();
    let d = TestDaemon::start("status-layers");
    let st = d.client().status().unwrap();
    let lsm = bpfns_kernel::lsm::kernel_allows();
    eprintln!("layers: {:?} (BPF LSM here: {lsm:?})", st.layers);
    let mut expected = vec!["supervisor", "tracepoint backstop"];
    if lsm.is_ok() {
        expected.push("BPF LSM");
    }
    assert_eq!(st.layers, expected);
    let has = |name: &str| st.counters.iter().any(|(n, _)| n == name);
    assert!(has("tasks_stopped"), "{:?}", st.counters);
    assert_eq!(has("lsm_opens_refused"), lsm.is_ok(), "{:?}", st.counters);
}

#[test]
fn members_see_and_open_only_what_their_namespace_may_see() {
    require_kernel!();
    let d = TestDaemon::start("visibility");
    let mut c = d.client();
    for p in ["/a", "/a/child", "/b"] {
        c.ns_create(p).unwrap();
    }
    let (_ha, a_map) = create_in(&d, "/a", "map");
    let (_hc, child_map) = create_in(&d, "/a/child", "map");
    let (_hb, b_map) = create_in(&d, "/b", "map");

    // Root sees everything, with owners.
    let all = c.list(ObjectKind::Map).unwrap();
    let ns_of = |id: u32| all.iter().find(|o| o.id == id).unwrap().namespace.clone();
    assert_eq!(ns_of(a_map), "/a");
    assert_eq!(ns_of(child_map), "/a/child");
    assert_eq!(ns_of(b_map), "/b");

    // A member of /a: itself and below.
    let seen = ids(&as_member(&d, Some("/a"), &["list", "map"]).unwrap());
    assert!(seen.contains(&a_map) && seen.contains(&child_map));
    assert!(!seen.contains(&b_map), "sibling's map hidden");
    assert!(seen.iter().all(|id| ![b_map].contains(id)));
    let root_maps: Vec<u32> = all
        .iter()
        .filter(|o| o.namespace == "/")
        .map(|o| o.id)
        .collect();
    assert!(
        seen.iter().all(|id| !root_maps.contains(id)),
        "root's maps hidden"
    );
    // A member of /a/child does not see its parent's.
    let seen = ids(&as_member(&d, Some("/a/child"), &["list", "map"]).unwrap());
    assert_eq!(seen, vec![child_map]);

    // The FD broker.
    let a = a_map.to_string();
    let b = b_map.to_string();
    assert!(as_member(&d, Some("/a"), &["getfd", "map", &a]).is_ok());
    assert_eq!(
        as_member(&d, Some("/a"), &["getfd", "map", &b]),
        Err("NotFound".into())
    );
    assert_eq!(
        as_member(&d, Some("/a/child"), &["getfd", "map", &a]),
        Err("NotFound".into())
    );
    assert!(as_member(&d, None, &["getfd", "map", &b]).is_ok());
    // Namespace counts.
    let info = c.ns_show("/a").unwrap();
    assert!(info.objects.map >= 1 && info.members >= 1, "{info:?}");
}

#[test]
fn members_manage_only_their_own_subtree() {
    require_kernel!();
    let d = TestDaemon::start("policy");
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    c.ns_create("/b").unwrap();
    assert_eq!(
        as_member(&d, Some("/a"), &["ns-create", "/a/x"]),
        Ok("/a/x".into())
    );
    assert_eq!(
        as_member(&d, Some("/a"), &["ns-create", "/b/x"]),
        Err("Denied".into())
    );
    assert_eq!(
        as_member(&d, Some("/a"), &["ns-create", "/z"]),
        Err("Denied".into())
    );
    // Entering: deeper only, never a sibling or the parent.
    assert_eq!(
        as_member(&d, Some("/a"), &["enter-self", "/a/x"]),
        Err("Denied".into()),
        "not its own child"
    );
    assert_eq!(
        as_member(&d, Some("/a"), &["ns-delete", "/b"]),
        Err("NotFound".into())
    );
    assert_eq!(
        as_member(&d, Some("/a"), &["hello"]),
        Ok("/a admin=true".into())
    );
    // Host root inside a namespace is still confined to its subtree.
    assert_eq!(
        as_member(&d, Some("/a"), &["ns-delete", "/a"]),
        Err("Denied".into())
    );
    // A process that is not our child cannot be moved.
    let err = c.enter("/a", 1).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Denied));
}

#[test]
fn deleting_refuses_members_and_moves_objects_to_the_parent() {
    require_kernel!();
    let d = TestDaemon::start("delete");
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    c.ns_create("/a/b").unwrap();
    let (holder, map) = create_in(&d, "/a/b", "map");
    let err = c.ns_delete("/a/b").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Conflict));
    assert!(err.to_string().contains("member task"), "{err}");
    // Keep the map alive without a member: pin it in the namespace's bpffs.
    let pin = d
        .dir
        .join("ns")
        .join(c.ns_show("/a/b").unwrap().id.to_string())
        .join("kept");
    let fd = bpfns_sys::bpf::fd_by_id(ObjectKind::Map, map).unwrap();
    bpfns_sys::bpf::obj_pin(&fd, &pin).unwrap();
    drop(fd);
    holder.finish();
    // An object made and freed in /a/b (as tools do when they probe features) is not counted.
    let (short, prog) = create_in(&d, "/a/b", "prog");
    short.finish();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while bpfns_sys::bpf::fd_by_id(ObjectKind::Prog, prog).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "prog {prog} never freed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let b_id = c.ns_show("/a/b").unwrap().id;
    let (to, moved) = c.ns_delete("/a/b").unwrap();
    assert_eq!(to, "/a");
    assert_eq!(moved, 1, "only the pinned map was still there");
    let o = c.show(ObjectKind::Map, map).unwrap();
    assert_eq!(o.namespace, "/a");
    // Its pin moved to the parent's bpffs, under a name no other deletion uses.
    let a_id = c.ns_show("/a").unwrap().id;
    let moved_pin = d
        .dir
        .join("ns")
        .join(a_id.to_string())
        .join(format!("orphans/b-{b_id}/kept"));
    assert!(moved_pin.exists(), "{}", moved_pin.display());
}

/// Pin a new map at `pin` as a member of `ns` (the helper exits; the pin keeps the map).
fn pinned_map_in(d: &TestDaemon, ns: &str, pin: &std::path::Path) -> u32 {
    let (h, id) = create_in(d, ns, "map");
    let fd = bpfns_sys::bpf::fd_by_id(ObjectKind::Map, id).unwrap();
    bpfns_sys::bpf::obj_pin(&fd, pin).unwrap();
    drop(fd);
    h.finish();
    id
}

/// The same namespace created, given a pin and deleted twice: the second deletion's pins do
/// not collide with the first's in the parent's tree.
#[test]
fn deleting_the_same_namespace_twice_works() {
    require_kernel!();
    let d = TestDaemon::start("delete-twice");
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    c.ns_create("/a/b").unwrap();
    let mut maps = Vec::new();
    for round in 0..2 {
        let n = c.ns_create("/a/b/c").unwrap();
        let map = pinned_map_in(&d, "/a/b/c", &PathBuf::from(&n.bpffs).join("m"));
        let (to, moved) = c
            .ns_delete("/a/b/c")
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!((to.as_str(), moved), ("/a/b", 1), "round {round}");
        assert_eq!(c.show(ObjectKind::Map, map).unwrap().namespace, "/a/b");
        maps.push((n.id, map));
    }
    let b = PathBuf::from(c.ns_show("/a/b").unwrap().bpffs);
    for (id, map) in maps {
        let pin = b.join(format!("orphans/c-{id}/m"));
        let fd = bpfns_sys::bpf::obj_get(&pin).unwrap();
        let info = bpfns_sys::bpf::info::<bpfns_sys::bpf::bpf_map_info>(&fd).unwrap();
        assert_eq!(info.id, map, "{}", pin.display());
    }
}

/// `status` tells a member nothing host-wide: its own subtree's namespaces, no listener
/// counts, no counters (they would tell of other tenants); the host gets all of them.
#[test]
fn status_gives_a_member_only_its_subtree() {
    require_kernel!();
    let d = TestDaemon::start("status-member");
    let mut c = d.client();
    for p in ["/a", "/a/b", "/c", "/c/d", "/c/e"] {
        c.ns_create(p).unwrap();
    }
    let host = c.status().unwrap();
    assert_eq!(host.namespaces, 6, "with the root");
    assert!(!host.counters.is_empty());
    let member = as_member(&d, Some("/a"), &["status"]).unwrap();
    // No host paths either (bpfnsd's pin root and state directory).
    assert_eq!(member, "namespaces=2 listeners=0 kept=0 counters= paths=");
    let deeper = as_member(&d, Some("/c/d"), &["status"]).unwrap();
    assert_eq!(deeper, "namespaces=1 listeners=0 kept=0 counters= paths=");
}

/// A namespace whose only task is a zombie (a member that exited, its parent not reaping it)
/// has no members: it is deleted without `force`, and a forced deletion does not wait for the
/// zombie either.
#[test]
fn a_namespace_whose_only_task_is_a_zombie_is_deleted() {
    require_kernel!();
    let d = TestDaemon::start("delete-zombie");
    let mut c = d.client();
    for (round, force) in [(0, false), (1, true)] {
        let ns = format!("/z{round}");
        c.ns_create(&ns).unwrap();
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "read x"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        c.enter(&ns, pid).unwrap();
        assert_eq!(c.ns_show(&ns).unwrap().members, 1, "a live member counts");
        drop(child.stdin.take());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let stat = bpfns_sys::procfs::read_stat(pid).unwrap();
            let state = stat.rsplit_once(')').unwrap().1.split_whitespace().next();
            if state == Some("Z") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{pid} never exited");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            c.ns_show(&ns).unwrap().members,
            0,
            "a zombie does not count"
        );
        let deleted = c.ns_delete_with(&ns, force);
        let _ = child.wait();
        let (to, _) = deleted.unwrap_or_else(|e| panic!("deleting {ns} (force {force}): {e}"));
        assert_eq!(to, "/");
    }
}

/// A member's mount namespace keeps no other namespace's bpffs instance: deleted while a
/// member of a sibling runs, an instance is gone with its pins (a map pinned only there is
/// freed: its id no longer opens) — the member's setup detached it, not only covered it.
/// (Its mount point is kept, so that the instance would stay mounted in the member's mount
/// namespace if the setup had only covered it.)
/// A member sees no other namespace's bpffs instance: bpfnsd makes their directory a mount
/// point of its own, which a member detaches whole; where instances were mounted below a
/// plain directory before bpfnsd started (an upgrade without a reboot), they are detached
/// one by one.
#[test]
fn a_member_sees_no_other_namespaces_bpffs_instance() {
    require_kernel!();
    for plain in [false, true] {
        let name = if plain {
            "own-mount-plain"
        } else {
            "own-mount"
        };
        let d = TestDaemon::start_with(name, |c| {
            if plain {
                let old = c.ns_bpffs_dir.join("old");
                std::fs::create_dir_all(&old).unwrap();
                bpfns_sys::testhooks::mount(Path::new("tmpfs"), &old, "tmpfs", 0).unwrap();
            }
        });
        let ns_dir = d.dir.join("ns");
        let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert_eq!(
            bpfns_sys::procfs::mount_points(&host).contains(&ns_dir),
            !plain,
            "the instances' directory is a mount point of its own unless mounts were below it"
        );
        if !plain {
            // In a peer group of its own: copies of the host's mount namespace made later (an
            // engine's) receive new instances and their unmounts.
            let line = host
                .lines()
                .find(|l| l.split(' ').nth(4) == Some(ns_dir.to_str().unwrap()))
                .unwrap();
            assert!(line.contains(" shared:"), "not shared: {line}");
        }
        let mut c = d.client();
        let own = PathBuf::from(c.ns_create("/a").unwrap().bpffs);
        c.ns_create("/b").unwrap();
        let mut cmd = std::process::Command::new("cat");
        cmd.arg("/proc/self/mountinfo")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped());
        let mut member = bpfns_client::member::spawn(&d.socket, "/a", &mut cmd).unwrap();
        let mut seen = String::new();
        member
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut seen)
            .unwrap();
        assert!(member.wait().unwrap().success());
        // One by one, its own instance stays where it is (beneath the cover), besides its
        // bind mount at /sys/fs/bpf.
        let below: Vec<PathBuf> = bpfns_sys::procfs::mount_points(&seen)
            .into_iter()
            .filter(|m| m.starts_with(&ns_dir) && *m != ns_dir && !(plain && *m == own))
            .collect();
        assert!(below.is_empty(), "plain: {plain}: a member sees {below:?}");
        if plain {
            let _ = bpfns_sys::testhooks::umount_detach(&ns_dir.join("old"));
        }
    }
}

/// A daemon whose namespaces' bpffs instances lie inside its state directory (both are
/// hidden from a member, one inside the other) starts members: they see their own instance at
/// /sys/fs/bpf and nothing of the state directory.
#[test]
fn members_start_when_the_instances_lie_in_the_state_directory() {
    require_kernel!();
    let d = TestDaemon::start_with("ns-in-state", |c| c.ns_bpffs_dir = c.state_dir.join("ns"));
    let mut c = d.client();
    let own = PathBuf::from(c.ns_create("/a").unwrap().bpffs);
    let state = d.dir.join("state");
    assert!(own.starts_with(&state), "{}", own.display());
    let m = bpfns_sys::bpf::map_create(2, "ns_in_state", 4, 4, 1).unwrap();
    bpfns_sys::bpf::obj_pin(&m, &own.join("mine")).unwrap();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ls /sys/fs/bpf; ls -A {} | wc -l", state.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let member = bpfns_client::member::spawn(&d.socket, "/a", &mut cmd)
        .expect("a member starts although its instance lies in the hidden state directory");
    let out = member.into_child().wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&"mine"),
        "its own pin at /sys/fs/bpf: {text}"
    );
    assert_eq!(
        lines.last(),
        Some(&"0"),
        "the state directory is empty to it: {text}"
    );
}

/// The same with the state directory reached through a symbolic link (and the instances in
/// it): covers are compared by where paths lead.
#[test]
fn members_start_when_the_state_directory_is_a_symbolic_link() {
    require_kernel!();
    let d = TestDaemon::start_with("ns-in-linked-state", |c| {
        let dir = c.state_dir.parent().unwrap().to_path_buf();
        let real = dir.join("state-real");
        std::fs::create_dir_all(&real).unwrap();
        let link = dir.join("state-link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        c.state_dir = link.clone();
        c.ns_bpffs_dir = link.join("ns");
    });
    d.client().ns_create("/a").unwrap();
    let real = d.dir.join("state-real");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("echo entries=$(ls -A {} | wc -l)", real.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    let member = bpfns_client::member::spawn(&d.socket, "/a", &mut cmd)
        .expect("a member starts with the state directory behind a symbolic link");
    let out = member.into_child().wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("entries=0"),
        "the state directory is visible: {text}"
    );
}

/// `ns_bpffs_dir` reached through a symbolic link (`/var/run/bpfns/ns` for `/run/bpfns/ns`):
/// bpfnsd takes it canonical, so a restart finds its own mount point and the instances below
/// it (no new mount stacked over them), and pins survive.
#[test]
fn a_symlinked_ns_bpffs_dir_keeps_pins_across_a_restart() {
    require_kernel!();
    let pid = std::process::id();
    let real = PathBuf::from(format!("/tmp/bpfns-test-symlinked-real-{pid}"));
    let link = PathBuf::from(format!("/tmp/bpfns-test-symlinked-link-{pid}"));
    std::fs::create_dir_all(&real).unwrap();
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let ns_dir = link.join("ns");
    let tweak = |c: &mut bpfnsd::Config| c.ns_bpffs_dir = ns_dir.clone();
    let seen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let d = TestDaemon::start_with("symlinked", tweak);
        let a = d.client().ns_create("/a").unwrap();
        assert!(
            a.bpffs.starts_with(real.to_str().unwrap()),
            "the bpffs path is canonical: {}",
            a.bpffs
        );
        let m = bpfns_sys::bpf::map_create(2, "symlinked", 4, 4, 1).unwrap();
        bpfns_sys::bpf::obj_pin(&m, &PathBuf::from(&a.bpffs).join("mine")).unwrap();
        let (dir, layout) = d.stop();
        let d = TestDaemon::start_configured(dir, layout, false, tweak);
        let shown = PathBuf::from(d.client().ns_show("/a").unwrap().bpffs);
        let mounts = bpfns_sys::procfs::mount_points(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
        );
        let stacked = mounts.iter().filter(|m| **m == real.join("ns")).count();
        (shown.join("mine").exists(), stacked)
    }));
    // Every mount below the real directory, deepest first, as often as it is there.
    for _ in 0..4 {
        let mounts = bpfns_sys::procfs::mounts_below(&real).unwrap_or_default();
        for m in &mounts {
            let _ = bpfns_sys::fs::unmount_detach(m);
        }
    }
    let _ = std::fs::remove_file(&link);
    let _ = std::fs::remove_dir_all(&real);
    let (kept, stacked) = seen.unwrap();
    assert!(kept, "/a's pin is gone after a restart");
    assert_eq!(
        stacked, 1,
        "one mount of the instances' directory, not one per start"
    );
}

/// A hook whose pin is removed behind bpfnsd's back while namespaces exist (the only
/// reference to its link: it is detached) is attached again within a few seconds.
#[test]
fn hooks_removed_behind_bpfnsds_back_are_attached_again() {
    require_kernel!();
    let d = TestDaemon::start("hooks-again");
    d.client().ns_create("/h").unwrap();
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("60").stdin(std::process::Stdio::null());
    let mut member = bpfns_client::member::spawn(&d.socket, "/h", &mut cmd).unwrap();
    let pin = d.layout.link("on_fork");
    assert!(pin.exists(), "a member's tag attached the hooks");
    // Seen attached by the relaxer first.
    std::thread::sleep(bpfnsd::daemon::HOOK_RELAX_INTERVAL * 2);
    std::fs::remove_file(&pin).unwrap();
    let deadline = std::time::Instant::now() + bpfnsd::daemon::HOOK_RELAX_INTERVAL * 5;
    while !pin.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let again = pin.exists();
    let _ = member.kill();
    let _ = member.wait();
    assert!(again, "the hook was not attached again");
}

#[test]
fn a_deleted_namespaces_bpffs_does_not_outlive_it_in_other_members() {
    require_kernel!();
    let d = TestDaemon::start("delete-lifetime");
    let mut c = d.client();
    c.ns_create("/m").unwrap();
    c.ns_create("/p").unwrap();
    let gone = c.ns_create("/p/gone").unwrap();
    // A map of the root's pinned only in /p/gone's bpffs: not copied at the deletion, so
    // nothing but that instance holds it.
    let map = bpfns_sys::bpf::map_create(2 /* array */, "lifetime", 4, 4, 1).unwrap();
    let id = bpfns_sys::bpf::info::<bpfns_sys::bpf::bpf_map_info>(&map)
        .unwrap()
        .id;
    bpfns_sys::bpf::obj_pin(&map, &PathBuf::from(&gone.bpffs).join("only")).unwrap();
    drop(map);
    // Removing a mount point detaches the mounts on it in every mount namespace, which would
    // hide what is tested: keep /p/gone's from being removed (a file beneath its mount), as
    // when the directory stays for any reason.
    let under = d.dir.join("under");
    std::fs::create_dir(&under).unwrap();
    let ns_dir = PathBuf::from(&gone.bpffs).parent().unwrap().to_path_buf();
    bpfns_sys::testhooks::mount(&ns_dir, &under, "", 4096 /* MS_BIND */).unwrap();
    let kept = std::fs::File::create(under.join(gone.id.to_string()).join("kept"));
    bpfns_sys::testhooks::umount_detach(&under).unwrap();
    kept.unwrap();
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("600").stdin(std::process::Stdio::null());
    let mut member = bpfns_client::member::spawn(&d.socket, "/m", &mut cmd).unwrap();
    let freed = (|| {
        c.ns_delete("/p/gone").map_err(|e| e.to_string())?;
        // Maps are freed a moment after their last reference goes (RCU, a work queue).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while bpfns_sys::bpf::fd_by_id(ObjectKind::Map, id).is_ok() {
            if std::time::Instant::now() > deadline {
                return Err(format!("map {id} still alive 20 s after the deletion"));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
    })();
    let running = member.try_wait().unwrap().is_none();
    let _ = member.kill();
    let _ = member.wait();
    freed.unwrap();
    assert!(running, "the member ran all along");
}

/// A deletion copies to the parent only the pins of the namespace's own objects, found through
/// handles (a subdirectory included): a pin of another namespace's object, or of the root's,
/// and symbolic links stay behind and go with the instance.
#[test]
fn a_deletion_copies_only_the_namespaces_own_pins() {
    require_kernel!();
    let d = TestDaemon::start("delete-own-pins");
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    let s = c.ns_create("/s").unwrap();
    let n = c.ns_create("/a/b").unwrap();
    let b = PathBuf::from(&n.bpffs);
    std::fs::create_dir(b.join("sub")).unwrap();
    let own = pinned_map_in(&d, "/a/b", &b.join("sub").join("m"));
    let foreign = pinned_map_in(&d, "/s", &PathBuf::from(&s.bpffs).join("victim"));
    // The administrator's pins in /a/b's tree: /s's map, and a map of the root.
    let fd = bpfns_sys::bpf::fd_by_id(ObjectKind::Map, foreign).unwrap();
    bpfns_sys::bpf::obj_pin(&fd, &b.join("foreign")).unwrap();
    let root_map = bpfns_sys::bpf::map_create(2 /* array */, "rootmap", 4, 4, 1).unwrap();
    bpfns_sys::bpf::obj_pin(&root_map, &b.join("rootmap")).unwrap();
    std::os::unix::fs::symlink(&s.bpffs, b.join("link")).unwrap();
    let (_, moved) = c.ns_delete("/a/b").unwrap();
    assert_eq!(moved, 1, "its own map");
    let a = PathBuf::from(c.ns_show("/a").unwrap().bpffs);
    let dest = a.join(format!("orphans/b-{}", n.id));
    let fd = bpfns_sys::bpf::obj_get(&dest.join("sub/m")).unwrap();
    let info = bpfns_sys::bpf::info::<bpfns_sys::bpf::bpf_map_info>(&fd).unwrap();
    assert_eq!(info.id, own);
    let mut left: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["sub"],
        "nothing but its own pins in {}",
        dest.display()
    );
}

/// A member may nest directories in its bpffs without end, and make thousands of them: a
/// deletion copies at most `REPIN_MAX_DEPTH` levels and `REPIN_MAX_ENTRIES` entries into the
/// parent's `orphans/` (the rest goes with the instance), and bpfnsd serves on.
#[test]
fn a_deletion_copies_a_bounded_tree() {
    require_kernel!();
    let d = TestDaemon::start("delete-deep");
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    let n = c.ns_create("/a/b").unwrap();
    let b = PathBuf::from(&n.bpffs);
    let deep: PathBuf = std::iter::repeat_n("d", 100).collect();
    std::fs::create_dir_all(b.join(&deep)).unwrap();
    c.ns_delete("/a/b").unwrap();
    let a = PathBuf::from(c.ns_show("/a").unwrap().bpffs);
    let mut levels = 0;
    let mut at = a.join(format!("orphans/b-{}/d", n.id));
    while at.is_dir() {
        levels += 1;
        at = at.join("d");
    }
    assert!(
        (1..bpfnsd::bpffs::REPIN_MAX_DEPTH).contains(&levels),
        "{levels} levels copied"
    );
    let n = c.ns_create("/a/w").unwrap();
    let w = PathBuf::from(&n.bpffs);
    for i in 0..bpfnsd::bpffs::REPIN_MAX_ENTRIES + 50 {
        std::fs::create_dir(w.join(format!("w{i}"))).unwrap();
    }
    c.ns_delete("/a/w").unwrap();
    let copied = std::fs::read_dir(a.join(format!("orphans/w-{}", n.id)))
        .unwrap()
        .count();
    assert!(
        (1..=bpfnsd::bpffs::REPIN_MAX_ENTRIES).contains(&copied),
        "{copied} entries copied"
    );
    assert!(c.hello().is_ok(), "bpfnsd serves on");
}

/// A deletion that fails midway (here: the parent's bpffs is read-only, so its pins cannot
/// move) changes nothing: the namespace, its pins and its objects' owner stay as they were,
/// and nothing is left in the parent's tree; once the cause is gone it deletes.
#[test]
fn a_deletion_failing_midway_changes_nothing() {
    require_kernel!();
    let d = TestDaemon::start("delete-fails");
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    let n = c.ns_create("/a/b").unwrap();
    let pin = PathBuf::from(&n.bpffs).join("m");
    let map = pinned_map_in(&d, "/a/b", &pin);
    let a = PathBuf::from(c.ns_show("/a").unwrap().bpffs);
    // MS_REMOUNT | MS_BIND | MS_RDONLY
    let ro = 32 | 4096 | 1;
    bpfns_sys::testhooks::mount(&a, &a, "", ro).unwrap();
    let err = c.ns_delete("/a/b").unwrap_err();
    bpfns_sys::testhooks::mount(&a, &a, "", 32 | 4096).unwrap();
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    assert_eq!(c.ns_show("/a/b").unwrap().id, n.id, "the namespace stays");
    assert_eq!(c.show(ObjectKind::Map, map).unwrap().namespace, "/a/b");
    assert!(pin.exists(), "its pin stays");
    assert!(
        !a.join("orphans").exists(),
        "nothing left in the parent's tree"
    );
    // The cause gone, it deletes.
    let (_, moved) = c.ns_delete("/a/b").unwrap();
    assert_eq!(moved, 1);
    assert!(a.join(format!("orphans/b-{}/m", n.id)).exists());
}

#[test]
fn a_restart_keeps_namespaces_memberships_and_ownership() {
    require_kernel!();
    let d = TestDaemon::start("restart");
    let mut c = d.client();
    c.ns_create("/t").unwrap();
    c.ns_create("/t/u").unwrap();
    let (holder, map) = create_in(&d, "/t/u", "map");
    drop(c);
    let (dir, layout) = d.stop();
    let d = TestDaemon::start_at(dir, layout, false);
    let mut c = d.client();
    let list: Vec<String> = c.ns_list().unwrap().into_iter().map(|n| n.path).collect();
    assert_eq!(list, ["/", "/t", "/t/u"]);
    assert_eq!(c.show(ObjectKind::Map, map).unwrap().namespace, "/t/u");
    assert_eq!(
        c.ns_show("/t/u").unwrap().members,
        1,
        "the member is still a member"
    );
    holder.finish();
}

fn raw_call(sock: &std::path::Path, frame: &[u8]) -> Option<serde_json::Value> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.write_all(frame).ok()?;
    let mut hdr = [0u8; 4];
    s.read_exact(&mut hdr).ok()?;
    let mut body = vec![0u8; u32::from_le_bytes(hdr) as usize];
    s.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    require_kernel!();
    let d = TestDaemon::start("bad-input");
    let tree = |d: &TestDaemon| -> Vec<(String, u32)> {
        d.client()
            .ns_list()
            .unwrap()
            .into_iter()
            .map(|n| (n.path, n.id.0))
            .collect()
    };
    d.client().ns_create("/keep").unwrap();
    let before = tree(&d);
    let code =
        |v: Option<serde_json::Value>| v.unwrap()["error"]["code"].as_str().unwrap().to_string();
    assert_eq!(
        code(raw_call(&d.socket, &frame(b"{not json"))),
        "bad_request"
    );
    assert_eq!(
        code(raw_call(
            &d.socket,
            &frame(br#"{"v":1,"seq":1,"op":"launch_missiles"}"#)
        )),
        "bad_request"
    );
    assert_eq!(
        code(raw_call(
            &d.socket,
            &frame(br#"{"v":99,"seq":1,"op":"hello"}"#)
        )),
        "unsupported_version"
    );
    assert_eq!(
        code(raw_call(
            &d.socket,
            &frame(br#"{"v":1,"seq":1,"op":"ns_create","path":"/x/.."}"#)
        )),
        "bad_request"
    );
    assert_eq!(
        code(raw_call(
            &d.socket,
            &frame(br#"{"v":1,"seq":1,"op":"ns_show","path":"/ghost"}"#)
        )),
        "not_found"
    );
    // Oversized: refused before the body is read.
    let mut big = (10u32 << 20).to_le_bytes().to_vec();
    big.extend_from_slice(&[b' '; 1024]);
    assert_eq!(code(raw_call(&d.socket, &big)), "too_large");
    // A peer that dies mid-request.
    {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        s.write_all(&100u32.to_le_bytes()).unwrap();
        s.write_all(b"{\"v\":1").unwrap();
    }
    // An fd where none is expected.
    let mut c = d.client();
    let f = std::fs::File::open("/dev/null").unwrap();
    use std::os::fd::AsFd;
    let err = c
        .call_with_fds(bpfns_proto::Op::NsList, &[f.as_fd()])
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
    // `supervise` whose in-flight record is not a memfd (bpfnsd would write into it: a regular
    // file, or a pipe that could block it): refused before anything else is looked at.
    let (r, w) = std::io::pipe().unwrap();
    for second in [f.as_fd(), w.as_fd()] {
        let err = c
            .call_with_fds(bpfns_proto::Op::Supervise { pid: 1 }, &[r.as_fd(), second])
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BadRequest), "{err}");
        assert!(err.to_string().contains("memfd"), "{err}");
    }
    // A pipe where the seccomp listener belongs (with a real memfd, or none).
    let record = bpfns_sys::seccomp::InFlight::create().unwrap();
    for fds in [vec![r.as_fd(), record.as_fd()], vec![w.as_fd()]] {
        let err = c
            .call_with_fds(bpfns_proto::Op::Supervise { pid: 1 }, &fds)
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BadRequest), "{err}");
        assert!(
            err.to_string().contains("seccomp listener") && err.to_string().contains("pipe:"),
            "{err}"
        );
    }
    // Nothing changed, and the daemon still serves.
    assert_eq!(tree(&d), before);
}

/// A task of `ns` loads a raw tracepoint program and link: `Ok` with the task (holding the
/// link) and the link's id, or `Err` saying how the kernel refused it (EPERM from BPF LSM
/// where it runs, else the backstop's SIGKILL).
fn load_tracing_in(d: &TestDaemon, ns: &str) -> Result<(Helper, u32), String> {
    let mut h = Helper::spawn(&["create", "rawtp-link"]);
    d.client().enter(ns, h.pid).unwrap();
    h.go();
    match h.maybe("id") {
        Some(id) => Ok((h, id.parse().unwrap())),
        None => {
            let status = h.finish();
            if bpfns_tests::killed(status) {
                Err("killed".into())
            } else if status.code() == Some(2) {
                Err("refused".into())
            } else {
                panic!("the helper in {ns} ended unexpectedly: {status}");
            }
        }
    }
}

/// Per-namespace program policy: tracing programs only where the policy allows them, set at
/// creation or later, effective at once, never wider than the parent, changed only from
/// above, and kept across a restart.
#[test]
fn namespace_policy_decides_tracing_programs_and_only_narrows() {
    require_kernel!();
    let d = TestDaemon::start("ns-policy");
    let mut c = d.client();
    let allow = Policy::tracing(true);
    let deny = Policy::DEFAULT;
    let t = c.ns_create_with_policy("/t", allow).unwrap();
    assert_eq!(t.policy, allow);
    let n = c.ns_create("/n").unwrap();
    assert_eq!(n.policy, deny, "new namespaces deny tracing programs");

    // The kernel applies it: /t's tasks may, /n's may not.
    let (holder, link) = load_tracing_in(&d, "/t").expect("a task of /t loads a tracing program");
    assert_eq!(c.show(ObjectKind::Link, link).unwrap().namespace, "/t");
    holder.finish();
    assert!(load_tracing_in(&d, "/n").is_err());
    // Changed later, effective at once, both ways.
    assert_eq!(c.ns_set_policy("/n", allow).unwrap().policy, allow);
    load_tracing_in(&d, "/n").expect("allowed after the change");
    c.ns_set_policy("/t", deny).unwrap();
    assert!(
        load_tracing_in(&d, "/t").is_err(),
        "denied after the change"
    );

    // Never wider than the parent: refused at creation and later, nothing changed.
    fn code<T>(r: Result<T, bpfns_client::ClientError>) -> Option<ErrorCode> {
        r.err().and_then(|e| e.code())
    }
    assert_eq!(
        code(c.ns_create_with_policy("/t/kid", allow)),
        Some(ErrorCode::Conflict)
    );
    assert!(c.ns_list().unwrap().iter().all(|n| n.path != "/t/kid"));
    c.ns_create("/t/kid").unwrap();
    assert_eq!(
        code(c.ns_set_policy("/t/kid", allow)),
        Some(ErrorCode::Conflict)
    );
    // Narrowing a parent below a descendant's is refused too.
    c.ns_create_with_policy("/n/kid", allow).unwrap();
    let err = c.ns_set_policy("/n", deny).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Conflict));
    assert!(err.to_string().contains("/n/kid"), "{err}");
    assert_eq!(c.ns_show("/n").unwrap().policy, allow);
    // The root's is fixed.
    assert_eq!(code(c.ns_set_policy("/", deny)), Some(ErrorCode::Denied));

    // Only from above: a member, even host root, cannot widen its own namespace.
    assert_eq!(
        as_member(&d, Some("/t"), &["ns-policy", "/t", "allow"]),
        Err("Denied".to_string())
    );
    assert_eq!(c.ns_show("/t").unwrap().policy, deny);
    // ... but may set its descendants' within its own.
    as_member(&d, Some("/n"), &["ns-policy", "/n/kid", "deny"]).unwrap();
    assert_eq!(c.ns_show("/n/kid").unwrap().policy, deny);

    // A restart keeps policies, in the registry and in the kernel.
    drop(c);
    let (dir, layout) = d.stop();
    let d = TestDaemon::start_at(dir, layout, false);
    let mut c = d.client();
    assert_eq!(c.ns_show("/n").unwrap().policy, allow);
    assert_eq!(c.ns_show("/t").unwrap().policy, deny);
    load_tracing_in(&d, "/n").expect("still allowed after a restart");
    assert!(load_tracing_in(&d, "/t").is_err());
}

/// The four-set policy through bpfnsd: set at creation, capping what is created below
/// without one, never widened from below, enforced for `bpfns exec`-style members (program
/// types by the supervisor, commands and map types by the filter the member plan gives),
/// and kept across a restart.
#[test]
fn four_set_policies_cap_below_are_enforced_and_kept() {
    use bpfns_model::{Field, TypeSet};
    use bpfns_sys::names::parse_list;
    require_kernel!();
    let d = TestDaemon::start("ns-policy4");
    let mut c = d.client();
    let mut p = Policy::DEFAULT;
    p.set(
        Field::Progs,
        parse_list(Field::Progs, "socket_filter").unwrap(),
    );
    p.set(
        Field::Maps,
        TypeSet::ANY.minus(parse_list(Field::Maps, "hash").unwrap()),
    );
    let made = c.ns_create_with_policy("/p", p).unwrap();
    assert_eq!(made.policy, p);
    assert_eq!(made.effective_policy, Some(p));
    // Created without a policy below /p: the default as far as /p allows.
    let kid = c.ns_create("/p/kid").unwrap();
    assert_eq!(kid.policy, Policy::DEFAULT.intersect(&p));
    assert_eq!(kid.effective_policy, Some(p));
    // A child cannot widen: not at creation, not later; nothing changes.
    let mut xdp = p;
    xdp.progs = parse_list(Field::Progs, "socket_filter,xdp").unwrap();
    let err = c.ns_create_with_policy("/p/wide", xdp).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Conflict), "{err}");
    assert!(err.to_string().contains("progs"), "{err}");
    let err = c.ns_set_policy("/p/kid", xdp).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Conflict), "{err}");
    assert_eq!(c.ns_show("/p/kid").unwrap().policy, p);
    // Nor does a member widen its own namespace.
    assert_eq!(
        as_member(&d, Some("/p"), &["ns-policy", "/p", "allow"]),
        Err("Denied".to_string())
    );

    let check = |d: &TestDaemon| {
        let eperm = "errno=1";
        let line = |out: String| {
            out.lines()
                .find(|l| {
                    ["loaded=", "map=", "errno="]
                        .iter()
                        .any(|k| l.starts_with(k))
                })
                .unwrap_or("")
                .to_string()
        };
        assert!(line(supervised_in(d, "/p", &["bpf-only", "load", "1"])).starts_with("loaded="));
        assert_eq!(
            line(supervised_in(d, "/p", &["bpf-only", "load", "6"])),
            eperm
        );
        assert_eq!(
            line(supervised_in(d, "/p", &["bpf-only", "map", "1"])),
            eperm
        );
        assert!(line(supervised_in(d, "/p", &["bpf-only", "map", "2"])).starts_with("map="));
        // The child's own effective policy: the same caps.
        assert_eq!(
            line(supervised_in(d, "/p/kid", &["bpf-only", "load", "6"])),
            eperm
        );
    };
    check(&d);
    // Commands: --deny-cmds map_create, refused from the cmd alone by the member's filter.
    let mut no_maps = p;
    no_maps.cmds = TypeSet::ANY.minus(parse_list(Field::Cmds, "map_create").unwrap());
    c.ns_set_policy("/p/kid", Policy::DEFAULT.intersect(&no_maps))
        .unwrap();
    let out = supervised_in(&d, "/p/kid", &["bpf-only", "map", "2"]);
    assert!(out.contains("errno=1"), "{out}");
    // A member of /p starting a child in /p/kid (it keeps its own filter): one more filter
    // on top refuses the child what /p/kid refuses; /p itself still has it.
    let sock = d.socket.to_string_lossy().into_owned();
    let nested =
        |ns: &str| supervised_in(&d, "/p", &["rt-exec", &sock, ns, "bpf-only", "map", "2"]);
    let out = nested("/p/kid");
    assert!(out.contains("errno=1"), "{out}");
    let out = nested("/p");
    assert!(out.contains("map="), "{out}");

    // A restart keeps them, and enforcement with them.
    drop(c);
    let (dir, layout) = d.stop();
    let d = TestDaemon::start_at(dir, layout, false);
    let mut c = d.client();
    assert_eq!(c.ns_show("/p").unwrap().policy, p);
    let kid = c.ns_show("/p/kid").unwrap();
    assert_eq!(kid.policy, Policy::DEFAULT.intersect(&no_maps));
    assert_eq!(kid.effective_policy, Some(no_maps));
    check(&d);
    let out = supervised_in(&d, "/p/kid", &["bpf-only", "map", "2"]);
    assert!(out.contains("errno=1"), "{out}");
}

/// bpfnsd drops the ownership records of freed objects by itself (every second in tests):
/// kernels without BPF LSM have no hook at free, and the records would pile up.
#[test]
fn records_of_freed_objects_are_collected_without_being_asked() {
    require_kernel!();
    let d = TestDaemon::start("gc");
    d.client().ns_create("/g").unwrap();
    let (h, prog) = create_in(&d, "/g", "prog");
    let recorded = |k: &bpfns_kernel::Kernel| {
        k.ownership_records()
            .unwrap()
            .iter()
            .any(|(kind, id, _)| *kind == ObjectKind::Prog && *id == prog)
    };
    assert!(recorded(&d.daemon().kernel), "prog {prog} has a record");
    h.finish();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while recorded(&d.daemon().kernel) {
        assert!(
            std::time::Instant::now() < deadline,
            "the record of freed prog {prog} is still there after 15 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let st = d.client().status().unwrap();
    let collected = st
        .counters
        .iter()
        .find(|(n, _)| n == "records_collected")
        .map(|(_, v)| *v)
        .expect("records_collected in status");
    if bpfns_kernel::lsm::kernel_allows().is_err() {
        // No free hook here: bpfnsd's collector dropped it.
        assert!(collected >= 1, "{:?}", st.counters);
    }
}

/// A counter of bpfnsd's status.
fn counter(d: &TestDaemon, name: &str) -> u64 {
    d.client()
        .status()
        .unwrap()
        .counters
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| *v)
}

/// Wait (bounded) until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Every namespace may own a bounded number of objects with its descendants (ownership
/// records): the configured default or `--max-objects`, never above the parent's, and the
/// top-level namespaces' limits must fit the kernel's ownership table together. A member
/// going beyond is refused (BPF LSM) or stopped, bpfnsd reads and counts the event, and
/// `ns show`/`ns list` show the records in use.
#[test]
fn namespaces_own_a_bounded_number_of_objects() {
    require_kernel!();
    let d = TestDaemon::start("quota");
    let mut c = d.client();
    let a = c.ns_create("/a").unwrap();
    assert_eq!((a.max_objects, a.records), (Some(1024), Some(0)));
    let b = c.ns_create_with("/a/b", Policy::DEFAULT, Some(10)).unwrap();
    assert_eq!(b.max_objects, Some(10));
    let kid = c.ns_create("/a/b/kid").unwrap();
    assert_eq!(
        kid.max_objects,
        Some(10),
        "the default, capped at the parent's"
    );
    let e = c
        .ns_create_with("/a/c", Policy::DEFAULT, Some(2000))
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
    assert!(e.to_string().contains("at most 1024"), "{e}");
    let e = c
        .ns_create_with("/a/c", Policy::DEFAULT, Some(0))
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
    assert!(c.ns_show("/a/c").is_err(), "nothing was created");
    // The top-level namespaces share the table: what is left is all a new one may have.
    let capacity = (1u32 << 20) - (1 << 10);
    let left = capacity - 1024;
    c.ns_create_with("/big", Policy::DEFAULT, Some(left))
        .unwrap();
    let e = c.ns_create("/x").unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
    assert!(
        e.to_string().contains(&format!(
            "reserve {capacity} of the ownership table's {capacity} records"
        )),
        "{e}"
    );
    c.ns_delete("/big").unwrap();
    c.ns_create("/x").unwrap();
    let root = c.ns_show("/").unwrap();
    assert_eq!(
        (root.max_objects, root.records),
        (None, None),
        "the root is unlimited"
    );

    // A member of /a/b/kid beyond /a/b's limit.
    let lsm = d
        .daemon()
        .kernel
        .layers()
        .contains(&bpfns_kernel::doctor::Layer::BpfLsm);
    // Exactly the limit, held (so that no collection can lower the counts meanwhile): counted
    // in /a/b/kid and in every ancestor below the root.
    let mut h = Helper::spawn(&["create-many", "map", "10"]);
    c.enter("/a/b/kid", h.pid).unwrap();
    h.go();
    assert_eq!(h.maybe("made").as_deref(), Some("10"));
    assert_eq!(h.maybe("errno").as_deref(), Some("0"));
    for (ns, want) in [("/a/b/kid", 10), ("/a/b", 10), ("/a", 10)] {
        assert_eq!(c.ns_show(ns).unwrap().records, Some(want), "{ns}");
    }
    let list = c.ns_list().unwrap();
    assert_eq!(
        list.iter().find(|n| n.path == "/a/b").unwrap().records,
        Some(10)
    );
    // One more, from another member: refused (BPF LSM) or stopped.
    let mut more = Helper::spawn(&["create-many", "map", "1"]);
    c.enter("/a/b/kid", more.pid).unwrap();
    more.go();
    let made = more.maybe("made");
    if lsm {
        assert_eq!(made.as_deref(), Some("0"));
        assert_eq!(more.maybe("errno").as_deref(), Some("122"), "EDQUOT");
    } else {
        assert_eq!(made, None, "stopped");
        assert!(bpfns_tests::killed(more.finish()));
    }
    let holder = Some(h);
    let name = if lsm {
        "refused_quota"
    } else {
        "stopped_quota"
    };
    assert_eq!(counter(&d, name), 1);
    eventually("bpfnsd read the kernel's event", || {
        counter(&d, "kernel_events_read") >= 1
    });
    drop(holder);
}

/// A namespace that crosses 3/4 of its limit gets the records of its freed objects collected
/// at once (libbpf's feature probes create and close objects by the dozen): with periodic
/// collection off, a member that creates and closes more objects than its limit goes on.
#[test]
fn a_namespace_near_its_limit_is_collected_at_once() {
    require_kernel!();
    let d = TestDaemon::start_with("quota-early", |c| c.gc_interval_secs = 0);
    let mut c = d.client();
    c.ns_create_with("/e", Policy::DEFAULT, Some(40)).unwrap();
    let mut h = Helper::spawn(&["create-many", "map", "60", "close", "50"]);
    c.enter("/e", h.pid).unwrap();
    h.go();
    assert_eq!(h.maybe("made").as_deref(), Some("60"));
    assert_eq!(h.maybe("errno").as_deref(), Some("0"));
    h.finish();
    if bpfns_kernel::lsm::kernel_allows().is_err() {
        // No free hook: only bpfnsd's collection made room.
        assert!(counter(&d, "quota_notices") >= 1);
        assert!(counter(&d, "records_collected") >= 20);
    }
}

/// Limits are stored with the namespaces and restored into the kernel at every start; a
/// database of an older bpfnsd (no limits) gets the configured default.
#[test]
fn limits_persist_and_older_registries_get_the_default() {
    require_kernel!();
    let d = TestDaemon::start_with("quota-restart", |c| c.max_objects = 50);
    let mut c = d.client();
    assert_eq!(c.ns_create("/p").unwrap().max_objects, Some(50));
    let q = c.ns_create_with("/q", Policy::DEFAULT, Some(7)).unwrap().id;
    drop(c);
    let (dir, layout) = d.stop();
    // While bpfnsd is down: the kernel loses /q's limit, and an older bpfnsd's database
    // brings a namespace without one.
    let k = bpfns_kernel::Kernel::open(&layout).unwrap();
    k.set_namespace_limit(q, 1_000_000).unwrap();
    drop(k);
    let store = bpfnsd::store::Store::open(&dir.join("state").join("bpfns.redb")).unwrap();
    let mut reg = store.load_registry().unwrap();
    let old = reg.create(&"/old".parse().unwrap()).unwrap();
    store.save_registry(&reg).unwrap();
    drop(store);
    let d = TestDaemon::start_configured(dir, layout, false, |c| c.max_objects = 60);
    let mut c = d.client();
    assert_eq!(c.ns_show("/p").unwrap().max_objects, Some(50));
    assert_eq!(c.ns_show("/q").unwrap().max_objects, Some(7));
    assert_eq!(c.ns_show("/old").unwrap().max_objects, Some(60));
    let k = &d.daemon().kernel;
    assert_eq!(k.namespace_quota(q).unwrap().limit, Some(7), "restored");
    assert_eq!(k.namespace_quota(old).unwrap().limit, Some(60));
}

fn maps(n: u32) -> KindLimits {
    KindLimits {
        max_maps: Some(n),
        ..KindLimits::NONE
    }
}

/// Limits per kind (`--max-maps` ...): the configured defaults or those asked, never above
/// the nearest ancestor's of the kind nor the namespace's total; `ns quota` changes them
/// within the same rules; the N+1th map of a member fails (refused with EPERM by BPF LSM, else
/// the member is stopped, reason quota), other kinds go on, and once one is gone the next goes
/// in; an ancestor's limit of the kind binds its descendants' members; `ns show`/`ns list`
/// give used and limit per kind.
#[test]
fn namespaces_own_a_bounded_number_of_objects_of_each_kind() {
    require_kernel!();
    let d = TestDaemon::start_with("kquota", |c| c.quota.max_links = Some(64));
    let mut c = d.client();
    let lsm = d
        .daemon()
        .kernel
        .layers()
        .contains(&bpfns_kernel::doctor::Layer::BpfLsm);
    let a = c
        .ns_create_limited("/a", Policy::DEFAULT, Some(100), maps(3), None)
        .unwrap();
    assert_eq!(a.kind_limits.max_maps, Some(3));
    assert_eq!(a.kind_limits.max_links, Some(64), "bpfnsd.toml's default");
    assert_eq!(a.kind_limits.max_progs, None, "no default: only the total");
    assert_eq!(a.kind_records.map(|k| k.map), Some(0));
    // A child never above the nearest ancestor's limit of the kind.
    let e = c
        .ns_create_limited("/a/b", Policy::DEFAULT, None, maps(4), None)
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
    assert!(e.to_string().contains("ask for at most 3"), "{e}");
    assert!(c.ns_show("/a/b").is_err(), "nothing was created");
    let e = c
        .ns_create_limited(
            "/a/b",
            Policy::DEFAULT,
            Some(5),
            KindLimits {
                max_progs: Some(6),
                ..KindLimits::NONE
            },
            None,
        )
        .unwrap_err();
    assert!(e.to_string().contains("max_objects is 5"), "{e}");
    let b = c.ns_create("/a/b").unwrap();
    assert_eq!(b.kind_limits.max_maps, None, "counted in /a's anyway");
    assert_eq!(b.kind_limits.max_links, Some(64));
    // `ns quota`: a child cannot be given more than its parent, a parent not less than a child.
    let e = c.ns_set_quota("/a/b", None, maps(4)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
    c.ns_set_quota("/a/b", None, maps(2)).unwrap();
    let e = c.ns_set_quota("/a", None, maps(1)).unwrap_err();
    assert!(
        e.to_string().contains("its child /a/b has max_maps 2"),
        "{e}"
    );
    assert_eq!(
        c.ns_show("/a").unwrap().kind_limits.max_maps,
        Some(3),
        "unchanged"
    );
    let e = c.ns_set_quota("/", Some(5), KindLimits::NONE).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
    // A member (host root inside /a) cannot raise its own namespace's limits, nor touch a
    // sibling's; it may lower a child's within its own.
    c.ns_create("/s").unwrap();
    for (target, objects, maps) in [("/a", "100", "3"), ("/a", "-", "1000"), ("/s", "-", "1")] {
        assert_eq!(
            as_member(&d, Some("/a"), &["ns-quota", target, objects, maps]),
            Err(if target == "/s" { "NotFound" } else { "Denied" }.into()),
            "{target} {objects} {maps}"
        );
    }
    assert_eq!(
        c.ns_show("/a").unwrap().kind_limits.max_maps,
        Some(3),
        "unchanged"
    );
    assert_eq!(
        as_member(&d, Some("/a"), &["ns-quota", "/a/b", "-", "1"]),
        Ok("/a/b:Some(100):Some(1)".into())
    );
    c.ns_set_quota("/a/b", None, maps(2)).unwrap();
    let k = &d.daemon().kernel;
    assert_eq!(k.namespace_quota(b.id).unwrap().kinds[1].limit, Some(2));

    // A member of /a/b: two maps, the third fails; BTF objects go on.
    let mut h = Helper::spawn(&["create-many", "map", "2"]);
    c.enter("/a/b", h.pid).unwrap();
    h.go();
    assert_eq!(h.maybe("made").as_deref(), Some("2"));
    assert_eq!(h.maybe("errno").as_deref(), Some("0"));
    let stopped = counter(&d, "stopped_quota");
    let third = |c: &mut bpfns_client::Client, ns: &str| {
        let mut more = Helper::spawn(&["create-many", "map", "1"]);
        c.enter(ns, more.pid).unwrap();
        more.go();
        let made = more.maybe("made");
        if lsm {
            assert_eq!(made.as_deref(), Some("0"));
            assert_eq!(more.maybe("errno").as_deref(), Some("122"), "EDQUOT");
        } else {
            assert_eq!(made, None, "stopped");
            assert!(bpfns_tests::killed(more.finish()));
        }
    };
    third(&mut c, "/a/b");
    if !lsm {
        assert_eq!(counter(&d, "stopped_quota"), stopped + 1);
    }
    let mut btf = Helper::spawn(&["create-many", "btf", "3"]);
    c.enter("/a/b", btf.pid).unwrap();
    btf.go();
    assert_eq!(btf.maybe("made").as_deref(), Some("3"));
    let show = c.ns_show("/a/b").unwrap();
    let used = show.kind_records.unwrap();
    assert_eq!((used.map, used.btf), (2, 3));
    let list = c.ns_list().unwrap();
    let in_a = list.iter().find(|n| n.path == "/a").unwrap();
    assert_eq!(in_a.kind_records.unwrap().map, 2, "counted in /a too");

    // /a's limit of maps (3) binds its own members with what /a/b holds: one more.
    let mut h_a = Helper::spawn(&["create-many", "map", "1"]);
    c.enter("/a", h_a.pid).unwrap();
    h_a.go();
    assert_eq!(h_a.maybe("made").as_deref(), Some("1"));
    third(&mut c, "/a");

    // Deleting one lets the next in.
    h.finish();
    eventually("the maps of the finished member collected", || {
        let _ = d.daemon().collect_garbage();
        c.ns_show("/a/b")
            .unwrap()
            .kind_records
            .is_some_and(|k| k.map == 0)
    });
    let mut next = Helper::spawn(&["create-many", "map", "2"]);
    c.enter("/a/b", next.pid).unwrap();
    next.go();
    assert_eq!(next.maybe("made").as_deref(), Some("2"));
    assert_eq!(next.maybe("errno").as_deref(), Some("0"));
    drop((h_a, btf, next));
}

/// Limits per kind are stored with the namespaces and restored into the kernel at every
/// start; a database of a bpfnsd before them reads as before (only the totals), and the
/// counts per kind of objects made before come from the ownership table.
#[test]
fn limits_per_kind_persist_and_older_registries_have_none() {
    require_kernel!();
    let d = TestDaemon::start("kquota-restart");
    let mut c = d.client();
    let p = c
        .ns_create_limited("/p", Policy::DEFAULT, Some(20), maps(4), None)
        .unwrap()
        .id;
    let mut h = Helper::spawn(&["create-many", "map", "3"]);
    c.enter("/p", h.pid).unwrap();
    h.go();
    assert_eq!(h.maybe("made").as_deref(), Some("3"));
    drop(c);
    let (dir, layout) = d.stop();
    // While bpfnsd is down: the kernel loses /p's limits and counts per kind (as after an
    // upgrade from a kernel side without them), and an older bpfnsd's database brings a
    // namespace without limits per kind.
    let k = bpfns_kernel::Kernel::open(&layout).unwrap();
    k.set_namespace_kind_limits(p, [None; 4]).unwrap();
    drop(k);
    let pinned = layout.map("kquota_kernel");
    let m = libbpf_rs::MapHandle::from_pinned_path(&pinned).unwrap();
    use libbpf_rs::MapCore;
    m.delete(&p.0.to_ne_bytes()).unwrap();
    drop(m);
    let store = bpfnsd::store::Store::open(&dir.join("state").join("bpfns.redb")).unwrap();
    let mut reg = store.load_registry().unwrap();
    let old = reg.create(&"/old".parse().unwrap()).unwrap();
    reg.set_max_objects(old, 9);
    store.save_registry(&reg).unwrap();
    drop(store);
    let d = TestDaemon::start_configured(dir, layout, false, |c| c.quota.max_maps = Some(5));
    let mut c = d.client();
    let show = c.ns_show("/p").unwrap();
    assert_eq!(show.kind_limits, maps(4));
    assert_eq!(
        show.kind_records.map(|k| k.map),
        Some(3),
        "recounted from the table"
    );
    let old_show = c.ns_show("/old").unwrap();
    assert_eq!(
        old_show.kind_limits,
        KindLimits::NONE,
        "as before: only the total"
    );
    assert_eq!(old_show.max_objects, Some(9));
    let k = &d.daemon().kernel;
    assert_eq!(
        k.namespace_quota(p).unwrap().kinds[1].limit,
        Some(4),
        "restored"
    );
    assert_eq!(k.namespace_quota(old).unwrap().kinds[1].limit, None);
    // The restored limit binds: one more map, then the fifth fails.
    let mut more = Helper::spawn(&["create-many", "map", "1"]);
    c.enter("/p", more.pid).unwrap();
    more.go();
    assert_eq!(more.maybe("made").as_deref(), Some("1"));
    let mut over = Helper::spawn(&["create-many", "map", "1"]);
    c.enter("/p", over.pid).unwrap();
    over.go();
    if d.daemon()
        .kernel
        .layers()
        .contains(&bpfns_kernel::doctor::Layer::BpfLsm)
    {
        assert_eq!(over.maybe("made").as_deref(), Some("0"));
    } else {
        assert_eq!(over.maybe("made"), None, "stopped");
        assert!(bpfns_tests::killed(over.finish()));
    }
    drop((h, more));
}

/// Connection limits: a caller over its uid's or namespace's limit is refused with
/// `limit_reached` and a message naming the setting; host administrators in the root namespace
/// count apart and are never refused because of others; idle connections are closed.
#[test]
fn connection_limits_refuse_clearly_and_spare_administrators() {
    require_kernel!();
    let d = TestDaemon::start_with_limits(
        "limits",
        bpfnsd::config::Limits {
            max_connections: 6,
            max_connections_per_uid: 3,
            max_connections_per_namespace: 4,
            max_admin_connections: 3,
            // Long enough that the held connections outlive the steps below on a slow machine
            // (the VM lane's emulated CPUs).
            idle_timeout_secs: 8,
            // The total in all its strictness (each tenant's own share is checked apart).
            min_connections_per_namespace: 0,
            ..bpfnsd::config::Limits::default()
        },
    );
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    c.ns_create("/b").unwrap();
    let sock = d.socket.to_string_lossy().into_owned();
    // A member of /a as uid 1000 opens 6 connections and keeps them.
    let flood = |ns: &str, level: &str| {
        let mut h = Helper::spawn(&["rt-as", level, "rt-flood", &sock, "6", "0", "hold"]);
        d.client().enter(ns, h.pid).unwrap();
        h.go();
        let held = h.expect("holding");
        (h, held)
    };
    let (h1, held) = flood("/a", "none");
    assert_eq!(held, "accepted:3 refused:3 other:0", "uid 1000's limit");
    // uid 0 in /a: /a has 3 of its 4; uid 0 has none yet.
    let (mut h2, held) = flood("/a", "bpf");
    assert_eq!(held, "accepted:1 refused:5 other:0", "/a's limit");
    let refusal = h2.expect("refusal");
    assert!(
        refusal.contains("max_connections_per_namespace") && refusal.contains("/a"),
        "{refusal}"
    );
    // uid 0 in /b: 2 more reach the total of 6.
    let (_h3, held) = flood("/b", "bpf");
    assert_eq!(held, "accepted:2 refused:4 other:0", "the total");
    // Host administrators: 3 of their own (one is `c`), whatever the others hold.
    let mut admins: Vec<_> = (0..2).map(|_| d.client()).collect();
    for a in &mut admins {
        a.hello().unwrap();
    }
    let err = d.client().hello().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitReached), "{err}");
    assert!(err.to_string().contains("max_admin_connections"), "{err}");
    drop(admins);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let st = c.status().unwrap();
    let counter = |n: &str| {
        st.counters
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {n} in {:?}", st.counters))
    };
    assert_eq!(counter("connections_open"), 6);
    assert!(counter("connections_refused") >= 13);
    // Released when the member lets go.
    drop(h1);
    drop(h2);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (_h4, held) = flood("/a", "none");
    assert_eq!(
        held, "accepted:3 refused:3 other:0",
        "freed: uid 1000's limit again"
    );
    // Idle connections are closed after idle_timeout_secs.
    let mut idle = d.client();
    idle.hello().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(8500));
    assert!(idle.hello().is_err(), "an idle connection stays open");
    let st = d.client().status().unwrap();
    assert!(st
        .counters
        .iter()
        .any(|(k, v)| k == "connections_closed_idle" && *v >= 1));
}

/// A tenant (a top-level namespace with everything below it) holds at most
/// `max_namespaces_per_tenant` namespaces: beyond, creation is refused with `limit_reached`
/// naming the setting, in any tenant's subtree, and other tenants are not affected.
#[test]
fn a_tenant_creates_a_bounded_number_of_namespaces() {
    require_kernel!();
    let d = TestDaemon::start_with("ns-count", |c| c.limits.max_namespaces_per_tenant = 3);
    let mut c = d.client();
    c.ns_create("/t").unwrap();
    c.ns_create("/t/a").unwrap();
    // Members of /t/a make namespaces below it up to the tenant's limit, then are refused.
    let r = as_member(&d, Some("/t/a"), &["ns-create", "/t/a/b"]);
    assert!(r.is_ok(), "{r:?}");
    for p in ["/t/a/x", "/t/a/b/c"] {
        let r = as_member(&d, Some("/t/a"), &["ns-create", p]);
        assert!(r.as_ref().is_err_and(|e| e == "LimitReached"), "{p}: {r:?}");
        assert!(c.ns_show(p).is_err(), "{p} exists after a refusal");
    }
    let r = as_member(&d, Some("/t/a"), &["ns-create-msg", "/t/a/x"]);
    assert!(
        r.as_ref()
            .is_err_and(|e| e.contains("max_namespaces_per_tenant") && e.contains("/t ")),
        "{r:?}"
    );
    // Another tenant is not affected, and a deletion makes room.
    c.ns_create("/u").unwrap();
    c.ns_create("/u/a").unwrap();
    c.ns_delete("/t/a/b").unwrap();
    let r = as_member(&d, Some("/t/a"), &["ns-create", "/t/a/x"]);
    assert!(r.is_ok(), "{r:?}");
    // The host administrator, who sets the limit, is bound by the kernel's tables alone.
    c.ns_create("/t/h1").unwrap();
    c.ns_create("/t/h2").unwrap();
}

/// A creation failing midway (here: the directory of the namespaces' bpffs instances is
/// read-only) changes nothing: no namespace in the registry, none in the kernel's table, no
/// directory left; once the cause is gone it creates.
#[test]
fn a_creation_failing_midway_changes_nothing() {
    require_kernel!();
    let d = TestDaemon::start("create-fails");
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    let base = d.dir.join("ns");
    let before: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let kernel = bpfns_kernel::Kernel::open(&d.layout).unwrap();
    let table = kernel.namespaces().unwrap().len();
    // MS_BIND, then MS_REMOUNT | MS_BIND | MS_RDONLY.
    bpfns_sys::testhooks::mount(&base, &base, "", 4096).unwrap();
    bpfns_sys::testhooks::mount(&base, &base, "", 32 | 4096 | 1).unwrap();
    let err = c.ns_create("/a/b").unwrap_err();
    bpfns_sys::testhooks::umount_detach(&base).unwrap();
    assert!(
        err.to_string().contains("/a/b was not created") && err.to_string().contains("Read-only"),
        "{err}"
    );
    assert!(c.ns_show("/a/b").is_err(), "the namespace is not there");
    assert_eq!(
        kernel.namespaces().unwrap().len(),
        table,
        "the kernel's table is as it was"
    );
    let after: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after, "nothing left in {}", base.display());
    // The cause gone, it creates.
    let n = c.ns_create("/a/b").unwrap();
    assert!(PathBuf::from(&n.bpffs).exists());
    assert_eq!(kernel.namespaces().unwrap().len(), table + 1);
}

/// Connections are shared per tenant first: one tenant's uid holding the whole total leaves
/// every other tenant its own `min_connections_per_namespace`, even for the same uid.
#[test]
fn one_tenant_cannot_take_another_tenants_connections() {
    require_kernel!();
    let d = TestDaemon::start_with_limits(
        "limits-share",
        bpfnsd::config::Limits {
            max_connections: 4,
            max_connections_per_uid: 4,
            max_connections_per_namespace: 4,
            min_connections_per_namespace: 2,
            idle_timeout_secs: 600,
            ..bpfnsd::config::Limits::default()
        },
    );
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    c.ns_create("/b").unwrap();
    let sock = d.socket.to_string_lossy().into_owned();
    let flood = |ns: &str| {
        let mut h = Helper::spawn(&["rt-as", "none", "rt-flood", &sock, "6", "0", "hold"]);
        d.client().enter(ns, h.pid).unwrap();
        h.go();
        let held = h.expect("holding");
        (h, held)
    };
    let (_a, held) = flood("/a");
    assert_eq!(held, "accepted:4 refused:2 other:0", "/a takes the total");
    // The same uid (1000) in /b: its tenant's share, not /a's leftovers (none).
    let (_b, held) = flood("/b");
    assert_eq!(held, "accepted:2 refused:4 other:0", "/b keeps its share");
}

/// A helper that holds still in namespace `ns` (None: the root) until dropped.
fn member_in(d: &TestDaemon, ns: Option<&str>) -> Helper {
    let mut h = Helper::spawn(&["hold"]);
    if let Some(ns) = ns {
        d.client().enter(ns, h.pid).unwrap();
    }
    h.go();
    h.expect("pid");
    h
}

/// `ns_ps` lists a namespace's member processes (and, recursively, those below it), and
/// `ns_identify` names a process's namespace; both only within the caller's subtree, and in
/// the root namespace only for a caller that may list namespaces.
#[test]
fn processes_of_a_namespace_and_the_namespace_of_a_process() {
    require_kernel!();
    let d = TestDaemon::start("ns-ps");
    let mut c = d.client();
    for p in ["/a", "/a/b", "/c"] {
        c.ns_create(p).unwrap();
    }
    let ha = member_in(&d, Some("/a"));
    let hb = member_in(&d, Some("/a/b"));
    let hc = member_in(&d, Some("/c"));
    let pids = |ps: Vec<bpfns_proto::ProcessInfo>| {
        ps.into_iter()
            .map(|p| (p.pid, p.namespace))
            .collect::<std::collections::BTreeSet<_>>()
    };
    let only_a = c.ns_ps("/a", false).unwrap();
    assert_eq!(only_a.len(), 1, "{only_a:?}");
    let p = &only_a[0];
    assert_eq!((p.pid, p.namespace.as_str(), p.uid), (ha.pid, "/a", 0));
    assert!(p.threads >= 1 && !p.comm.is_empty(), "{p:?}");
    assert_eq!(
        pids(c.ns_ps("/a", true).unwrap()),
        [(ha.pid, "/a".to_string()), (hb.pid, "/a/b".to_string())].into()
    );
    assert!(
        c.ns_ps("/", false).unwrap().is_empty(),
        "root's processes are not members"
    );
    assert_eq!(
        c.ns_ps("/nope", false).unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(c.ns_identify(hb.pid).unwrap().namespace, "/a/b");
    let me = c.ns_identify(std::process::id() as i32).unwrap();
    assert_eq!(
        (me.namespace.as_str(), me.ns_id),
        ("/", bpfns_model::NsId::ROOT)
    );
    assert_eq!(
        c.ns_identify(i32::MAX).unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );

    // A member of /a: its subtree only; another tenant's process, or a root process, is
    // "not found", as one that does not exist.
    let (a, b, cc) = (ha.pid.to_string(), hb.pid.to_string(), hc.pid.to_string());
    assert_eq!(
        as_member(&d, Some("/a"), &["ns-identify", &b]),
        Ok("/a/b".into())
    );
    for pid in [cc.as_str(), "1", &std::process::id().to_string()] {
        assert_eq!(
            as_member(&d, Some("/a"), &["ns-identify", pid]),
            Err("NotFound".into()),
            "{pid}"
        );
    }
    assert_eq!(
        as_member(&d, Some("/a/b"), &["ns-identify", &a]),
        Err("NotFound".into()),
        "the parent's process"
    );
    assert_eq!(
        as_member(&d, Some("/a"), &["ns-ps", "/c"]),
        Err("NotFound".into())
    );
    let seen = as_member(&d, Some("/a"), &["ns-ps", "/a/b"]).unwrap();
    assert_eq!(seen, format!("{b}:/a/b"));
    assert_eq!(
        as_member(&d, Some("/a"), &["ns-ps", "/"]),
        Err("NotFound".into())
    );

    // uid 1000 without capabilities in the root namespace: denied, as listing is.
    let sock = d.socket.to_string_lossy().into_owned();
    for op in [&["ns-identify", a.as_str()][..], &["ns-ps", "/a"]] {
        let mut args = vec!["rt-as", "none", "client", sock.as_str()];
        args.extend_from_slice(op);
        let mut h = Helper::spawn(&args);
        h.go();
        let line = h.line().expect("helper output");
        h.finish();
        assert_eq!(line, "error=Denied", "{op:?}");
    }
    drop((ha, hb, hc));
}

/// `list` with a namespace: that namespace's objects, and with `recursive` those below it;
/// a namespace the caller cannot see is not found.
#[test]
fn listings_filter_by_namespace() {
    require_kernel!();
    let d = TestDaemon::start("list-ns");
    let mut c = d.client();
    for p in ["/a", "/a/b", "/c"] {
        c.ns_create(p).unwrap();
    }
    let (_ha, a_map) = create_in(&d, "/a", "map");
    let (_hb, b_map) = create_in(&d, "/a/b", "map");
    let (_hc, c_map) = create_in(&d, "/c", "map");
    let ids_in = |c: &mut bpfns_client::Client, ns: &str, r: bool| {
        c.list_in(ObjectKind::Map, Some(ns), r)
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids_in(&mut c, "/a", false), [a_map]);
    assert_eq!(ids_in(&mut c, "/a", true), [a_map, b_map]);
    assert_eq!(ids_in(&mut c, "/c", true), [c_map]);
    assert!(ids_in(&mut c, "/", false)
        .iter()
        .all(|id| ![a_map, b_map, c_map].contains(id)));
    assert_eq!(
        c.list_in(ObjectKind::Map, Some("/nope"), false)
            .unwrap_err()
            .code(),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        as_member(&d, Some("/a"), &["list-in", "map", "/a", "r"]),
        Ok(format!("{a_map},{b_map}"))
    );
    assert_eq!(
        as_member(&d, Some("/a"), &["list-in", "map", "/c"]),
        Err("NotFound".into())
    );
    assert_eq!(
        as_member(&d, Some("/a/b"), &["list-in", "map", "/a"]),
        Err("NotFound".into())
    );
}

/// Listings carry what the kernel says about each object, as bpftool names it: maps' sizes,
/// programs' tag, load time, sizes and maps, links' attach points, BTF objects' sizes; `show`
/// carries the same.
#[test]
fn listings_carry_what_the_kernel_says() {
    require_kernel!();
    let d = TestDaemon::start("details");
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    let (_hm, map) = create_in(&d, "/a", "map");
    let (_hp, prog) = create_in(&d, "/a", "prog");
    let (_hl, link) = create_in(&d, "/a", "link");
    let (_hb, btf) = create_in(&d, "/a", "btf");
    let find = |c: &mut bpfns_client::Client, kind, id| {
        let listed = c
            .list(kind)
            .unwrap()
            .into_iter()
            .find(|o| o.id == id)
            .unwrap_or_else(|| panic!("{kind} {id} listed"));
        assert_eq!(c.show(kind, id).unwrap(), listed, "show = list");
        listed.details
    };
    let m = find(&mut c, ObjectKind::Map, map);
    assert_eq!(
        (m.bytes_key, m.bytes_value, m.max_entries, m.flags),
        (Some(4), Some(8), Some(4), Some(0)),
        "{m:?}"
    );
    let p = find(&mut c, ObjectKind::Prog, prog);
    let fd = bpfns_sys::bpf::fd_by_id(ObjectKind::Prog, prog).unwrap();
    let info: bpfns_sys::bpf::bpf_prog_info = bpfns_sys::bpf::info(&fd).unwrap();
    let tag: String = info.tag.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(p.tag.as_deref(), Some(tag.as_str()), "{p:?}");
    assert_eq!(p.bytes_xlated, Some(info.xlated_prog_len), "{p:?}");
    assert_eq!(
        p.bytes_jited,
        (info.jited_prog_len != 0).then_some(info.jited_prog_len)
    );
    assert_eq!(
        (p.uid, p.map_ids.as_deref()),
        (Some(0), Some(&[][..])),
        "{p:?}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = p.loaded_at.expect("loaded_at");
    assert!(at + 600 > now && at <= now + 2, "loaded at {at}, now {now}");
    let l = find(&mut c, ObjectKind::Link, link);
    assert_eq!(l.attach_type.as_deref(), Some("sk_lookup"), "{l:?}");
    assert!(l.netns_ino.is_some_and(|i| i != 0), "{l:?}");
    let b = find(&mut c, ObjectKind::Btf, btf);
    assert_eq!(
        (b.size, b.kernel),
        (
            Some(bpfns_sys::bpf::minimal_btf().len() as u32),
            Some(false)
        ),
        "{b:?}"
    );
    let vmlinux = c.show(ObjectKind::Btf, 1).unwrap();
    assert_eq!(
        (vmlinux.name.as_str(), vmlinux.details.kernel),
        ("vmlinux", Some(true))
    );
}

/// Outside namespaces bpfnsd asks what the kernel asks: a user namespace of one's own (where
/// an unprivileged user is root with every capability) or CAP_BPF alone gets no object's fd
/// by id, and no listing, through bpfnsd; host root does.
#[test]
fn capabilities_of_a_user_namespace_get_nothing_outside_namespaces() {
    require_kernel!();
    let d = TestDaemon::start("userns-caps");
    let mut holder = Helper::spawn(&["create", "map"]);
    holder.go();
    let id = holder.expect("id");
    let sock = d.socket.to_string_lossy().into_owned();
    let ask = |level: &str, op: &[&str]| {
        let mut args = vec!["rt-as", level, "client", sock.as_str()];
        args.extend_from_slice(op);
        let mut h = Helper::spawn(&args);
        h.go();
        let line = h.line().expect("helper output");
        h.finish();
        line
    };
    for level in ["userns", "none", "bpf"] {
        assert_eq!(
            ask(level, &["getfd", "map", &id]),
            "error=Denied",
            "get_fd as {level}"
        );
    }
    for level in ["userns", "none"] {
        assert_eq!(
            ask(level, &["list", "map"]),
            "error=Denied",
            "list as {level}"
        );
    }
    assert!(ask("host", &["getfd", "map", &id]).starts_with("result=fd"));
    drop(holder);
}

/// What `bpfns exec` asks before it starts a member, in one round trip: the same facts as
/// `hello`, `ns show` and `status` give; a namespace the caller cannot see is not found, and
/// a member learns nothing of bpfnsd's state directory.
#[test]
fn member_plan_gives_what_exec_needs_and_no_more() {
    require_kernel!();
    let d = TestDaemon::start("member-plan");
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    c.ns_create("/a/b").unwrap();
    c.ns_create("/c").unwrap();
    let plan = c.member_plan("/a/b").unwrap();
    let shown = c.ns_show("/a/b").unwrap();
    assert_eq!(plan.caller, c.hello().unwrap());
    assert_eq!(
        (plan.path.as_str(), plan.bpffs.as_str(), plan.policy),
        (shown.path.as_str(), shown.bpffs.as_str(), shown.policy)
    );
    assert_eq!(plan.state_dir, c.status().unwrap().state_dir);
    assert_eq!(
        c.member_plan("/nope").unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    // A member of /a: its descendant, without the state directory; a sibling's is not found.
    let b_bpffs = shown.bpffs;
    assert_eq!(
        as_member(&d, Some("/a"), &["member-plan", "/a/b"]),
        Ok(format!("/a/b,{b_bpffs},"))
    );
    assert_eq!(
        as_member(&d, Some("/a"), &["member-plan", "/c"]),
        Err("NotFound".to_string())
    );
}

/// `GET /metrics` (bpfnsd's `metrics` setting): parses as Prometheus text; its per-namespace
/// values are those `ns show` gives; requests are counted by operation and outcome.
#[test]
fn metrics_match_ns_show_and_count_requests() {
    require_kernel!();
    // No periodic collection: the records compared below stay as they are between the
    // scrape and `ns show`.
    let d = TestDaemon::start_with("metrics", |c| {
        c.metrics = Some("127.0.0.1:0".into());
        c.gc_interval_secs = 0;
    });
    let addr = d
        .daemon()
        .metrics
        .bound
        .lock()
        .unwrap()
        .expect("the endpoint's address");
    let mut c = d.client();
    c.ns_create("/m1").unwrap();
    c.ns_create("/m1/kid").unwrap();
    c.ns_create("/m2").unwrap();
    // Limits per kind: /m1 of maps and programs, /m1/kid of programs (below /m1's).
    let limits = |progs, maps| KindLimits {
        max_progs: Some(progs),
        max_maps: maps,
        ..KindLimits::NONE
    };
    c.ns_set_quota("/m1", None, limits(10, Some(20))).unwrap();
    c.ns_set_quota("/m1/kid", None, limits(5, None)).unwrap();
    let _ = c.ns_show("/nope");
    let (_h, map) = create_in(&d, "/m1", "map");
    let (_h2, _prog) = create_in(&d, "/m1/kid", "prog");
    // A member of /m2 refused /m1's map, twice; and refused a namespace outside its subtree.
    for _ in 0..2 {
        let out = supervised_in(&d, "/m2", &["open", "map", &map.to_string()]);
        assert_eq!(out.trim(), "errno=2");
    }
    assert_eq!(
        as_member(&d, Some("/m2"), &["ns-create", "/x"]),
        Err("Denied".into())
    );
    // Unsupervised, the kernel side acts on the same open: the backstop's SIGKILL, or BPF
    // LSM's refusal; counted by reason.
    let mut h = Helper::spawn(&["open", "map", &map.to_string()]);
    d.client().enter("/m2", h.pid).unwrap();
    h.go();
    let stopped = bpfns_tests::killed(h.finish());
    // A supervised member that stays while the endpoint is read: its listener, supervised
    // and held by the listener keeper.
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("600").stdin(std::process::Stdio::null());
    let _member = KillOnDrop(
        bpfns_client::member::spawn(&d.socket, "/m1", &mut cmd)
            .unwrap()
            .into_child(),
    );
    eventually("the keeper holds the member's listener", || {
        let st = c.status().unwrap();
        st.supervised_listeners >= 1 && st.kept_listeners >= 1
    });
    // A map freed and its record collected (by bpfnsd's collector; where BPF LSM runs, its
    // free hook may drop the record first).
    let (freed, freed_map) = create_in(&d, "/m1/kid", "map");
    freed.finish();
    eventually("the map is freed", || {
        bpfns_sys::bpf::fd_by_id(ObjectKind::Map, freed_map).is_err()
    });
    let mut collected = 0;
    eventually("its record is collected", || {
        collected += d.daemon().collect_garbage().unwrap();
        c.ns_show("/m1/kid")
            .unwrap()
            .kind_records
            .is_some_and(|r| r.map == 0)
    });
    let lsm = c.status().unwrap().layers.iter().any(|l| l == "BPF LSM");
    assert!(collected >= 1 || lsm, "nothing collected");
    // Event subscriptions are requests too: one served, one of a namespace that is not there.
    let mut sub = d.client();
    sub.subscribe(None, vec![]).unwrap();
    let err = d.client().subscribe(Some("/nope"), vec![]).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    // A program of /m2 running while statistics are on.
    let _stats = bpfns_sys::bpf::enable_run_time_stats().expect("BPF_ENABLE_STATS");
    let mut busy = Helper::spawn(&["busy-prog"]);
    c.enter("/m2", busy.pid).unwrap();
    busy.go();
    let busy_id: u32 = busy.expect("id").parse().unwrap();
    eventually("the busy program runs", || {
        bpfns_sys::bpf::fd_by_id(ObjectKind::Prog, busy_id)
            .and_then(|fd| bpfns_sys::bpf::info::<bpfns_sys::bpf::bpf_prog_info>(&fd))
            .is_ok_and(|i| i.run_cnt > 0)
    });
    let get = |path: &str| -> String {
        let mut s = TcpClient::connect(addr);
        write!(s.0, "GET {path} HTTP/1.0\r\nHost: bpfnsd\r\n\r\n").unwrap();
        let mut out = String::new();
        s.0.read_to_string(&mut out).unwrap();
        out
    };
    let reply = get("/metrics");
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |metric: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    for path in ["/m1", "/m1/kid", "/m2"] {
        let ns = c.ns_show(path).unwrap();
        for (kind, n) in [
            ("map", ns.objects.map),
            ("prog", ns.objects.prog),
            ("link", ns.objects.link),
            ("btf", ns.objects.btf),
        ] {
            assert_eq!(
                value(
                    "bpfns_namespace_objects",
                    &[("namespace", path), ("kind", kind)]
                ),
                Some(f64::from(n)),
                "{path} {kind}:\n{body}"
            );
        }
        assert_eq!(
            value("bpfns_namespace_members", &[("namespace", path)]),
            Some(f64::from(ns.members)),
            "{path}"
        );
        assert_eq!(
            value("bpfns_namespace_records", &[("namespace", path)]),
            ns.records.map(|r| r as f64),
            "{path}"
        );
        assert_eq!(
            value("bpfns_namespace_max_objects", &[("namespace", path)]),
            ns.max_objects.map(f64::from),
            "{path}"
        );
        for kind in ObjectKind::ALL {
            let labels = [("namespace", path), ("kind", kind.name())];
            let records = ns.kind_records.map(|r| match kind {
                ObjectKind::Prog => r.prog,
                ObjectKind::Map => r.map,
                ObjectKind::Link => r.link,
                ObjectKind::Btf => r.btf,
            });
            assert_eq!(
                value("bpfns_namespace_kind_records", &labels),
                records.map(f64::from),
                "{path} {kind:?}"
            );
            assert_eq!(
                value("bpfns_namespace_kind_limit", &labels),
                ns.kind_limits.get(kind).map(f64::from),
                "{path} {kind:?}"
            );
        }
    }
    // What was set and made: not merely absent on both sides.
    let labels = |ns, kind| [("namespace", ns), ("kind", kind)];
    assert_eq!(
        value("bpfns_namespace_kind_limit", &labels("/m1/kid", "prog")),
        Some(5.0)
    );
    assert_eq!(
        value("bpfns_namespace_kind_limit", &labels("/m1", "map")),
        Some(20.0)
    );
    assert_eq!(
        value("bpfns_namespace_kind_limit", &labels("/m1/kid", "map")),
        None,
        "no limit of maps set on /m1/kid"
    );
    // /m1/kid's program counts for /m1 too.
    for ns in ["/m1", "/m1/kid"] {
        assert_eq!(
            value("bpfns_namespace_kind_records", &labels(ns, "prog")),
            Some(1.0),
            "{ns}"
        );
    }
    assert!(value("bpfns_namespace_max_objects", &[("namespace", "/m1")]).is_some_and(|m| m > 0.0));
    assert_eq!(
        value(
            "bpfns_namespace_objects",
            &[("namespace", "/m1"), ("kind", "map")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "bpfns_namespace_denials_total",
            &[
                ("namespace", "/m2"),
                ("command", "BPF_MAP_GET_FD_BY_ID"),
                ("layer", "supervisor")
            ]
        ),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        value("bpfns_namespace_denials_total", &[("namespace", "/m1")]),
        None,
        "/m1 was refused nothing"
    );
    let runs = value("bpfns_namespace_prog_runs", &[("namespace", "/m2")]);
    assert!(runs.is_some_and(|r| r > 0.0), "/m2's program ran: {runs:?}");
    let time = value(
        "bpfns_namespace_prog_run_time_seconds",
        &[("namespace", "/m2")],
    );
    assert!(
        time.is_some_and(|t| t > 0.0),
        "/m2's program took time: {time:?}"
    );
    assert_eq!(
        value("bpfns_namespace_prog_runs", &[("namespace", "/m1/kid")]),
        Some(0.0),
        "/m1/kid's program did not run"
    );
    assert!(
        body.contains(r#"bpfnsd_request_duration_seconds_count{op="ns_create",outcome="ok"} 3"#),
        "{body}"
    );
    assert!(
        body.contains(r#"bpfnsd_request_duration_seconds_count{op="ns_show",outcome="not_found"}"#),
        "{body}"
    );
    assert_eq!(
        value(
            "bpfns_namespace_denials_total",
            &[
                ("namespace", "/m2"),
                ("command", "ns_create"),
                ("layer", "api")
            ]
        ),
        Some(1.0),
        "{body}"
    );
    for (op, outcome) in [
        ("ns_create", "denied"),
        ("events", "ok"),
        ("events", "not_found"),
    ] {
        let series =
            format!(r#"bpfnsd_request_duration_seconds_count{{op="{op}",outcome="{outcome}"}} 1"#);
        assert!(body.contains(&series), "no {series} in {body}");
    }
    // bpfnsd's own: listeners, the keeper, the collector.
    let st = c.status().unwrap();
    let supervised = value("bpfnsd_supervised_listeners", &[]);
    assert!(
        supervised.is_some_and(|v| v >= 1.0),
        "{supervised:?}\n{body}"
    );
    let kept = value("bpfnsd_kept_listeners", &[]);
    assert!(kept.is_some_and(|v| v >= 1.0), "{kept:?}\n{body}");
    assert_eq!(
        value("bpfnsd_namespaces", &[]),
        Some(f64::from(st.namespaces))
    );
    assert_eq!(
        value("bpfnsd_keeper_outages_total", &[]),
        Some(0.0),
        "a keeper answers, and bpfnsd was never away: {body}"
    );
    let records_collected = value("bpfnsd_records_collected_total", &[]);
    assert!(
        records_collected.is_some_and(|v| v >= collected as f64),
        "{records_collected:?} < {collected}"
    );
    // The kernel side's: the stop (or refusal) by its reason, the records it wrote.
    let (family, other) = if stopped {
        (
            "bpfns_kernel_tasks_stopped_total",
            "bpfns_kernel_lsm_refusals_total",
        )
    } else {
        (
            "bpfns_kernel_lsm_refusals_total",
            "bpfns_kernel_tasks_stopped_total",
        )
    };
    assert_eq!(
        value(family, &[("reason", "foreign")]),
        Some(1.0),
        "{family}: {body}"
    );
    assert_eq!(value(other, &[("reason", "foreign")]), Some(0.0), "{body}");
    let written: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "bpfns_kernel_records_written_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .sum();
    assert!(
        written >= 3.0,
        "a map and two programs recorded: {written}\n{body}"
    );
    assert_eq!(
        value("bpfns_kernel_ownership_table_full_total", &[]),
        Some(0.0)
    );
    assert!(
        !body.contains("bpfnsd_status_counter"),
        "every counter of status has a family of its own: {body}"
    );
    drop(sub);
    assert!(get("/other").contains(" 404 "));
}

/// `metrics_netns`: the endpoint is bound in that network namespace, where a scraper gets it;
/// from bpfnsd's own (the host's, which `bpfns exec` members share) the same address is
/// refused. The red-team scene `observe` tries it from inside namespaces.
#[test]
fn metrics_bound_in_a_network_namespace_of_their_own() {
    require_kernel!();
    let mut holder = Helper::spawn(&["rt-netns-hold"]);
    holder.go();
    let netns = format!("/proc/{}/ns/net", holder.expect("netns"));
    let up = std::process::Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["ip", "link", "set", "lo", "up"])
        .status();
    assert!(
        matches!(up, Ok(s) if s.success()),
        "bringing up lo (nsenter, ip): {up:?}"
    );
    let path = PathBuf::from(&netns);
    let d = TestDaemon::start_with("metrics-netns", |c| {
        c.metrics = Some("127.0.0.1:0".into());
        c.metrics_netns = Some(path);
    });
    let addr = d
        .daemon()
        .metrics
        .bound
        .lock()
        .unwrap()
        .expect("the endpoint's address");
    let here = std::net::TcpStream::connect(addr).map(|_| ());
    assert_eq!(
        here.as_ref().map_err(std::io::Error::kind),
        Err(std::io::ErrorKind::ConnectionRefused),
        "the endpoint answered in the host's network namespace: {here:?}"
    );
    // A thread of its own enters the namespace (and ends with it).
    let ns = netns.clone();
    let reply = std::thread::spawn(move || {
        let f = bpfns_sys::thread::open_ns(std::path::Path::new(&ns)).unwrap();
        bpfns_sys::thread::enter_net_ns(&f).unwrap();
        let mut s = TcpClient::connect(addr);
        write!(s.0, "GET /metrics HTTP/1.0\r\nHost: bpfnsd\r\n\r\n").unwrap();
        let mut out = String::new();
        s.0.read_to_string(&mut out).unwrap();
        out
    })
    .join()
    .unwrap();
    assert!(
        reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"),
        "{reply}"
    );
    assert!(reply.contains("bpfnsd_namespaces"), "{reply}");
}

/// The listener keeper answers only the process that connected to it (bpfnsd): a process
/// that inherited or was passed bpfnsd's connection would otherwise withdraw every member's
/// listener with `Next` and answer its trapped calls. The keeper closes such a connection.
#[test]
fn the_listener_keeper_answers_only_the_process_that_connected() {
    use bpfnsd::keeper::{Msg, Op, MSG_LEN};
    use std::os::fd::AsFd;
    require_kernel!();
    let d = TestDaemon::start("keeper-writer");
    let mut c = d.client();
    c.ns_create("/k").unwrap();
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("600").stdin(std::process::Stdio::null());
    let _member = KillOnDrop(
        bpfns_client::member::spawn(&d.socket, "/k", &mut cmd)
            .unwrap()
            .into_child(),
    );
    eventually("the keeper holds the member's listener", || {
        c.status().unwrap().kept_listeners >= 1
    });
    let sock = bpfns_sys::unix::seqpacket_connect(&d.keeper_socket()).unwrap();
    bpfns_sys::unix::set_timeouts(&sock, Some(std::time::Duration::from_secs(10))).unwrap();
    let ask = |sock: &std::os::fd::OwnedFd| {
        let mut buf = [0u8; MSG_LEN];
        let mut fds = Vec::new();
        let n = bpfns_sys::unix::recv_msg(sock, &mut buf, &mut fds, false).unwrap_or_else(|e| {
            panic!("the keeper neither answered nor closed the connection within 10 s: {e}")
        });
        (buf[..n].to_vec(), fds.len())
    };
    // Its maker (this process: host root, as bpfnsd is) is answered.
    let stats = Msg::new(Op::Stats, [0; 6]).encode();
    bpfns_sys::unix::send_msg(&sock, &stats, &[], false).unwrap();
    let (reply, _) = ask(&sock);
    assert_eq!(Msg::decode(&reply).map(|m| m.op), Some(Op::Ok));
    // Another process writing on the same connection is not.
    let next = Msg::new(Op::Next, [0; 6]).encode();
    let writer = bpfns_sys::testhooks::write_from_child(sock.as_fd(), &next).unwrap();
    let (reply, fds) = ask(&sock);
    assert!(
        reply.is_empty() && fds == 0,
        "the keeper answered pid {writer} on a connection it did not make: {:?} with {fds} fd(s)",
        Msg::decode(&reply).map(|m| m.op)
    );
    assert!(c.status().unwrap().kept_listeners >= 1);

    // A connection whose maker has exited is closed, also while its descriptor lives on
    // elsewhere (its pid could be another process's by now): here the maker is a helper that
    // connects, hands the connection over and exits.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let status = std::process::Command::new(bpfns_tests::keeper_program())
        .args(["keeper-connect", &d.keeper_socket().to_string_lossy()])
        .stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            theirs,
        )))
        .status()
        .unwrap();
    assert!(status.success(), "keeper-connect: {status}");
    let mut byte = [0u8; 1];
    let mut passed = Vec::new();
    bpfns_sys::unix::recv_msg(&ours, &mut byte, &mut passed, false).unwrap();
    let orphan = passed.pop().expect("the helper's connection");
    bpfns_sys::unix::set_timeouts(&orphan, Some(std::time::Duration::from_secs(10))).unwrap();
    let (reply, fds) = ask(&orphan);
    assert!(
        reply.is_empty() && fds == 0,
        "the keeper kept a connection whose maker exited: {:?} with {fds} fd(s)",
        Msg::decode(&reply).map(|m| m.op)
    );
}

/// A listener keeper answering at bpfnsd's keeper socket but bound under another name (the
/// state directory moved, or reached by another path, since it started) is replaced by one
/// bound at the socket's own name: a member start refuses a leaked connection by the name a
/// socket was bound at, and would not know the old one for the hidden state directory.
#[test]
fn a_keeper_bound_under_another_name_is_replaced() {
    require_kernel!();
    let d = TestDaemon::start("keeper-alias");
    let socket = d.keeper_socket();
    let (dir, layout) = d.stop();
    // The keeper bpfnsd started goes; one bound through an alias of the state directory
    // takes its place at the same socket file.
    bpfnsd::keeper::link::retire_at(&socket);
    let alias = dir.join("state-alias");
    std::os::unix::fs::symlink(dir.join("state"), &alias).unwrap();
    let mut foreign = KillOnDrop(
        std::process::Command::new(bpfns_tests::keeper_program())
            .arg(bpfnsd::keeper::FLAG)
            .arg(alias.join(bpfnsd::keeper::SOCKET_NAME))
            .arg(layout.root())
            .arg("2000")
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let bound = |s: &Path| {
        bpfns_sys::unix::seqpacket_connect(s)
            .ok()
            .and_then(|c| bpfns_sys::unix::peer_path(&c).ok().flatten())
    };
    eventually("the aliased keeper answers", || bound(&socket).is_some());
    assert_ne!(bound(&socket).as_deref(), Some(socket.as_path()));
    let d = TestDaemon::start_at(dir, layout, false);
    assert_eq!(
        bound(&d.keeper_socket()).as_deref(),
        Some(d.keeper_socket().as_path()),
        "bpfnsd kept a keeper bound under another name"
    );
    eventually("the aliased keeper was retired", || {
        foreign.0.try_wait().ok().flatten().is_some()
    });
}

/// A child process killed (and waited for) when dropped: a failed assertion leaves none.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP connection (the metrics endpoint), with read and write timeouts.
struct TcpClient(std::net::TcpStream);

impl TcpClient {
    fn connect(addr: std::net::SocketAddr) -> Self {
        let s = std::net::TcpStream::connect(addr).expect("connecting to /metrics");
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        Self(s)
    }
}

/// Wait (bounded) until the kernel side's syscall hooks are attached (`on`) or detached.
fn hooks_become(layout: &bpfns_kernel::PinLayout, on: bool) -> bool {
    let k = bpfns_kernel::Kernel::open(layout).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if k.hooks_attached().is_empty() != on {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The syscall hooks run only while the host has namespaces: a member attaches them before it
/// is tagged, they stay while any namespace is left (a walk of the tasks can miss a member
/// that execs in a loop, so bpfnsd does not trust one), a bpfnsd that stops (as in a crash)
/// leaves them on, and bpfnsd detaches them once the last namespace is deleted.
#[test]
fn the_syscall_hooks_follow_the_members() {
    require_kernel!();
    let d = TestDaemon::start("hooks");
    let k = bpfns_kernel::Kernel::open(&d.layout).unwrap();
    assert!(hooks_become(&d.layout, false), "attached with no member");
    d.client().ns_create("/h").unwrap();
    let (h, id) = create_in(&d, "/h", "map");
    assert_eq!(k.hooks_attached(), ["on_sys_exit", "on_fork"]);
    let h_id = d.client().ns_show("/h").unwrap().id;
    assert_eq!(k.owner(ObjectKind::Map, id).unwrap(), h_id);
    h.finish();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        !k.hooks_attached().is_empty(),
        "detached while a namespace exists"
    );

    // A member alive across a restart.
    let (h, _) = create_in(&d, "/h", "map");
    assert!(!k.hooks_attached().is_empty());
    let (dir, layout) = d.stop();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        !k.hooks_attached().is_empty(),
        "detached under a live member"
    );
    let d = TestDaemon::start_at(dir, layout, false);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        !k.hooks_attached().is_empty(),
        "detached under a live member"
    );
    h.finish();
    d.client().ns_delete("/h").unwrap();
    assert!(
        hooks_become(&d.layout, false),
        "still attached after the last namespace"
    );
}

/// Run the helper's `args` as a supervised member of `ns` (as `bpfns exec` starts one); its
/// output.
fn supervised_in(d: &TestDaemon, ns: &str, args: &[&str]) -> String {
    supervised_at(&d.socket, ns, args).1
}

/// [`supervised_in`] of the bpfnsd at `socket`; the member's pid too.
fn supervised_at(socket: &std::path::Path, ns: &str, args: &[&str]) -> (i32, String) {
    let mut cmd = std::process::Command::new(bpfns_tests::helper_path());
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    let m = bpfns_client::member::spawn(socket, ns, &mut cmd).expect("a supervised member");
    let child = m.into_child();
    let pid = child.id() as i32;
    let out = child.wait_with_output().expect("waiting for the member");
    (pid, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Read a subscription's events until `want` holds for the events read (bounded).
fn events_until(
    c: &mut bpfns_client::Client,
    what: &str,
    mut want: impl FnMut(&[bpfns_proto::EventInfo]) -> bool,
) -> Vec<bpfns_proto::EventInfo> {
    let mut got = Vec::new();
    while !want(&got) {
        match c.next_event() {
            Ok(e) => got.push(e),
            Err(e) => panic!("{what}: the stream ended ({e}) after {got:#?}"),
        }
    }
    got
}

/// `member_stats = false`: a member may not turn the host-wide statistics switch on; the host
/// may. By default a member may (the same member, in a bpfnsd with the default).
#[test]
fn member_stats_is_the_operators_choice() {
    require_kernel!();
    let d = TestDaemon::start_with("member-stats", |c| c.member_stats = false);
    d.client().ns_create("/s").unwrap();
    assert_eq!(
        as_member(&d, Some("/s"), &["enable-stats"]).unwrap_err(),
        "Denied"
    );
    assert!(d.client().enable_stats().is_ok(), "the host may");
    let d2 = TestDaemon::start("member-stats-on");
    d2.client().ns_create("/s").unwrap();
    assert_eq!(
        as_member(&d2, Some("/s"), &["enable-stats"]).as_deref(),
        Ok("on")
    );
}

/// A call the supervisor refuses because it is outside the namespace's policy (a hash map
/// where the policy leaves hash maps out) is a `denied` event like any other refusal, with the
/// rule in its reason, and counted in the metrics.
#[test]
fn policy_refusals_are_events() {
    use bpfns_model::{Field, TypeSet};
    use bpfns_proto::EventKind as K;
    use bpfns_sys::names::parse_list;
    require_kernel!();
    let d = TestDaemon::start("events-policy");
    let mut c = d.client();
    let mut p = Policy::DEFAULT;
    p.set(
        Field::Maps,
        TypeSet::ANY.minus(parse_list(Field::Maps, "hash").unwrap()),
    );
    c.ns_create_with_policy("/p", p).unwrap();
    let mut host = d.client();
    host.set_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    host.subscribe(None, vec![K::Denied]).unwrap();
    let hash = parse_list(Field::Maps, "hash")
        .unwrap()
        .mask64()
        .trailing_zeros();
    let out = supervised_in(&d, "/p", &["map", &hash.to_string()]);
    assert_eq!(out.trim(), format!("errno={}", libc::EPERM));
    let got = events_until(&mut host, "host subscriber", |got| {
        got.iter().any(|e| e.namespace == "/p")
    });
    let e = got.iter().find(|e| e.namespace == "/p").unwrap();
    assert_eq!(e.command.as_deref(), Some("BPF_MAP_CREATE"), "{e:?}");
    assert_eq!(e.layer.as_deref(), Some("supervisor"), "{e:?}");
    assert!(
        e.reason
            .as_deref()
            .is_some_and(|r| r.starts_with("EPERM") && r.contains("hash")),
        "{e:?}"
    );
    let counts = d.daemon().denial_counts();
    assert!(
        counts.iter().any(|(ns, cmd, layer, n)| ns == "/p"
            && cmd == "BPF_MAP_CREATE"
            && *layer == "supervisor"
            && *n == 1),
        "{counts:?}"
    );
}

/// Requests bpfnsd itself refuses for lack of permission are `denied` events of layer `api`:
/// who asked (pid, comm, uid, namespace), what (the op) and on which namespace or process,
/// with the reason; to the subscribers of the caller's namespace and its ancestors only (as a
/// refused call); counted in the metrics. Requests that name what the caller cannot see (not
/// found, as if it did not exist) are no denials.
#[test]
fn requests_bpfnsd_refuses_are_denied_events() {
    use bpfns_proto::EventKind as K;
    require_kernel!();
    let d = TestDaemon::start("events-api");
    let mut c = d.client();
    for p in ["/a", "/a/kid", "/b"] {
        c.ns_create(p).unwrap();
    }
    let (_hb, b_map) = create_in(&d, "/b", "map");
    let subscriber = |ns: Option<&str>| {
        let mut s = d.client();
        s.set_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        s.subscribe(ns, vec![K::Denied, K::NsCreated]).unwrap();
        s
    };
    let mut host = subscriber(None);
    let mut in_a = subscriber(Some("/a"));
    let mut in_kid = subscriber(Some("/a/kid"));
    let mut in_b = subscriber(Some("/b"));
    // A member of /a: a namespace outside its subtree, its own namespace's policy (no
    // namespace widens its own), a process that is not its child.
    let (create_pid, r) = as_member_at(&d.socket, Some("/a"), &["ns-create", "/c"]);
    assert_eq!(r, Err("Denied".into()));
    let (policy_pid, r) = as_member_at(&d.socket, Some("/a"), &["ns-policy", "/a", "allow"]);
    assert_eq!(r, Err("Denied".into()));
    let (enter_pid, r) = as_member_at(&d.socket, Some("/a"), &["enter-self", "/a/kid"]);
    assert_eq!(r, Err("Denied".into()));
    // Not found, as if they did not exist: no denial.
    assert_eq!(
        as_member(&d, Some("/a"), &["ns-delete", "/b"]),
        Err("NotFound".into())
    );
    assert_eq!(
        as_member(&d, Some("/a"), &["getfd", "map", &b_map.to_string()]),
        Err("NotFound".into())
    );
    // Markers, made last, in every subscriber's subtree.
    c.ns_create("/a/kid/mark").unwrap();
    c.ns_create("/b/mark").unwrap();
    let until = |s: &mut bpfns_client::Client, mark: &str| {
        let got = events_until(s, mark, |got| {
            got.iter()
                .any(|e| e.kind == K::NsCreated && e.namespace == mark)
        });
        got.into_iter()
            .filter(|e| e.kind == K::Denied)
            .collect::<Vec<_>>()
    };
    let denied = until(&mut host, "/b/mark");
    assert_eq!(denied.len(), 3, "{denied:#?}");
    for e in &denied {
        assert_eq!(
            (e.namespace.as_str(), e.layer.as_deref(), e.uid),
            ("/a", Some("api"), Some(0)),
            "{e:?}"
        );
        // The helper's name, as the kernel keeps it (15 bytes).
        assert_eq!(e.comm.as_deref(), Some("bpfns-test-help"), "{e:?}");
        assert!(
            e.reason
                .as_deref()
                .is_some_and(|r| r.contains("permission denied") || r.contains("not a child")),
            "{e:?}"
        );
    }
    let find = |op: &str| denied.iter().find(|e| e.command.as_deref() == Some(op));
    let e = find("ns_create").expect("the refused ns_create");
    assert_eq!(
        (e.pid, e.target_namespace.as_deref(), e.target_pid),
        (Some(create_pid), Some("/c"), None),
        "{e:?}"
    );
    let e = find("ns_set_policy").expect("the refused ns_set_policy");
    assert_eq!(
        (e.pid, e.target_namespace.as_deref()),
        (Some(policy_pid), Some("/a")),
        "{e:?}"
    );
    let e = find("enter").expect("the refused enter");
    assert_eq!(
        (e.pid, e.target_namespace.as_deref(), e.target_pid),
        (Some(enter_pid), Some("/a/kid"), Some(enter_pid)),
        "{e:?}"
    );
    // /a's own subscriber gets them; one below /a, or beside it, does not.
    assert_eq!(until(&mut in_a, "/a/kid/mark").len(), 3);
    assert_eq!(until(&mut in_kid, "/a/kid/mark").len(), 0);
    assert_eq!(until(&mut in_b, "/b/mark").len(), 0);
    let counts = d.daemon().denial_counts();
    for op in ["ns_create", "ns_set_policy", "enter"] {
        assert!(
            counts
                .iter()
                .any(|(ns, cmd, layer, n)| ns == "/a" && cmd == op && *layer == "api" && *n == 1),
            "{op}: {counts:?}"
        );
    }
    assert!(
        !counts
            .iter()
            .any(|(_, cmd, _, _)| cmd == "ns_delete" || cmd == "get_fd"),
        "{counts:?}"
    );
}

/// The `denied` lines of a bpfnsd log, each as its fields (`message` included), from plain
/// text (`key=value`, `key="quoted value"`) or JSON lines.
fn denial_lines(log: &str, json: bool) -> Vec<std::collections::HashMap<String, String>> {
    let mut out = Vec::new();
    for line in log.lines() {
        let mut fields = std::collections::HashMap::new();
        if json {
            let Ok(serde_json::Value::Object(o)) = serde_json::from_str(line) else {
                panic!("not a JSON line: {line}");
            };
            for (k, v) in o {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                fields.insert(k, v);
            }
        } else {
            // `<time>  INFO <target>: <message> key=value ...`
            let Some((_, rest)) = line.split_once(": ") else {
                continue;
            };
            let Some(rest) = rest.strip_prefix("denied ") else {
                continue;
            };
            fields.insert("message".to_string(), "denied".to_string());
            let mut chars = rest.chars().peekable();
            while chars.peek().is_some() {
                let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                let mut value = String::new();
                if chars.peek() == Some(&'"') {
                    chars.next();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => value.extend(chars.next()),
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    chars.next(); // the space after
                } else {
                    value = chars.by_ref().take_while(|&c| c != ' ').collect();
                }
                fields.insert(key.trim().to_string(), value);
            }
        }
        if fields.get("message").map(String::as_str) == Some("denied") {
            out.push(fields);
        }
    }
    out
}

/// Every refusal is also in bpfnsd's log, with who and where: the supervisor's (a member
/// opening a foreign map by id) and its API's (a member creating a namespace outside its
/// subtree), in plain text and as JSON lines (`--log-format json`). A member refused in a loop
/// gets at most 10 lines a second, and the next line says how many were left out: every
/// refusal is logged or counted.
#[test]
fn refusals_are_logged_with_who_and_where() {
    require_kernel!();
    for format in ["text", "json"] {
        let d =
            bpfns_tests::ProcessDaemon::start_logging(&format!("denial-log-{format}"), "", format);
        let mut c = d.client();
        c.ns_create("/a").unwrap();
        c.ns_create("/b").unwrap();
        let mut hb = Helper::spawn(&["create", "map"]);
        c.enter("/b", hb.pid).unwrap();
        hb.go();
        let b_map = hb.expect("id");
        let (supervised, out) = supervised_at(&d.socket, "/a", &["open", "map", &b_map]);
        assert_eq!(out.trim(), "errno=2", "the foreign open is refused");
        let (api, r) = as_member_at(&d.socket, Some("/a"), &["ns-create", "/c"]);
        assert_eq!(r, Err("Denied".into()));
        let read = || {
            let log = std::fs::read_to_string(&d.log).unwrap();
            denial_lines(&log, format == "json")
        };
        let is = |l: &std::collections::HashMap<String, String>, layer: &str, pid: i32| {
            l.get("layer").map(String::as_str) == Some(layer)
                && l.get("pid") == Some(&pid.to_string())
                && l.get("namespace").map(String::as_str) == Some("/a")
        };
        eventually(&format!("{format}: both refusals logged"), || {
            let lines = read();
            lines.iter().any(|l| is(l, "supervisor", supervised))
                && lines.iter().any(|l| is(l, "api", api))
        });
        let lines = read();
        let l = lines
            .iter()
            .find(|l| is(l, "supervisor", supervised))
            .unwrap();
        assert_eq!(l["command"], "BPF_MAP_GET_FD_BY_ID", "{l:?}");
        assert_eq!(
            (l["object_kind"].as_str(), &l["object_id"]),
            ("map", &b_map)
        );
        assert_eq!(l["uid"], "0", "{l:?}");
        let l = lines.iter().find(|l| is(l, "api", api)).unwrap();
        assert_eq!(
            (l["command"].as_str(), l["target_namespace"].as_str()),
            ("ns_create", "/c"),
            "{l:?}"
        );
        assert_eq!(
            (l["comm"].as_str(), l["uid"].as_str()),
            ("bpfns-test-help", "0"),
            "{l:?}"
        );
        assert!(l["reason"].contains("permission denied"), "{l:?}");

        // 300 refused requests, as fast as they come; a second later, one more.
        let sock = d.socket.to_string_lossy().into_owned();
        let mut member = Helper::spawn(&["client", &sock, "ns-churn", "/z", "300"]);
        c.enter("/a", member.pid).unwrap();
        let started = std::time::Instant::now();
        member.go();
        assert_eq!(member.expect("churned"), "0");
        let secs = started.elapsed().as_secs();
        member.finish();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (last, r) = as_member_at(&d.socket, Some("/a"), &["ns-create", "/c2"]);
        assert_eq!(r, Err("Denied".into()));
        eventually(&format!("{format}: the last refusal logged"), || {
            read().iter().any(|l| is(l, "api", last))
        });
        let of_a: Vec<_> = read()
            .into_iter()
            .filter(|l| l.get("namespace").map(String::as_str) == Some("/a"))
            .collect();
        let loop_lines = of_a
            .iter()
            .filter(|l| {
                l.get("target_namespace")
                    .is_some_and(|t| t.starts_with("/z"))
            })
            .count() as u64;
        assert!(
            loop_lines <= 10 * (secs + 2),
            "{format}: {loop_lines} lines of 300 refusals in {secs} s: no limit per tenant"
        );
        let left_out: u64 = of_a
            .iter()
            .map(|l| l.get("suppressed").map_or(0, |n| n.parse::<u64>().unwrap()))
            .sum();
        assert_eq!(
            of_a.len() as u64 + left_out,
            303,
            "{format}: every refusal of /a (1 call, 302 requests) is logged or counted"
        );
        drop(hb);
    }
}

/// A member whose requests bpfnsd refuses in a loop is held to its tenant's event limit, as
/// one refused calls in a loop: the operator's stream is not dropped and goes on.
#[test]
fn a_member_refused_by_bpfnsd_in_a_loop_is_held_to_its_tenants_limit() {
    use bpfns_proto::EventKind as K;
    require_kernel!();
    let d = TestDaemon::start_with("events-api-flood", |c| {
        c.events_per_namespace_per_sec = 5;
    });
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    let mut host = d.client();
    host.set_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    host.subscribe(None, vec![K::Denied, K::NsCreated]).unwrap();
    // `ns-churn /z 300`: 300 creations outside its subtree, each refused (nothing to delete).
    let sock = d.socket.to_string_lossy().into_owned();
    let mut member = Helper::spawn(&["client", &sock, "ns-churn", "/z", "300"]);
    c.enter("/a", member.pid).unwrap();
    member.go();
    assert_eq!(member.expect("churned"), "0");
    member.finish();
    c.ns_create("/after").unwrap();
    let got = events_until(&mut host, "host subscriber after the refusals", |got| {
        got.iter()
            .any(|e| e.kind == K::NsCreated && e.namespace == "/after")
    });
    let denials = got
        .iter()
        .filter(|e| e.kind == K::Denied && e.layer.as_deref() == Some("api"))
        .count();
    assert!(denials >= 1, "no refusal reported at all");
    assert!(denials < 300, "every one of the 300 refusals was published");
    assert_eq!(counter(&d, "events_subscribers_dropped"), 0);
    assert_eq!(counter(&d, "events_suppressed") as usize + denials, 300);
}

/// A member refused in a loop (thousands a second) cannot get the operator's subscription
/// dropped: its namespace's events beyond the per-namespace limit are left out and counted,
/// and the stream goes on (a later event still arrives).
#[test]
fn a_flood_of_refusals_does_not_drop_the_operators_stream() {
    use bpfns_proto::EventKind as K;
    require_kernel!();
    // 5 a second: however slowly the member's refusals come (a virtual machine without
    // acceleration answers a few hundred a second), what one namespace publishes during the
    // flood stays far below the subscriber's queue.
    let d = TestDaemon::start_with("events-flood", |c| c.events_per_namespace_per_sec = 5);
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    c.ns_create("/b").unwrap();
    let (_hb, b_map) = create_in(&d, "/b", "map");
    let mut host = d.client();
    host.set_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    host.subscribe(None, vec![K::Denied, K::NsCreated]).unwrap();
    // Not read while the member floods: 2 000 refusals would overflow its queue twice.
    let out = supervised_in(&d, "/a", &["open-loop", "map", &b_map.to_string(), "2000"]);
    assert!(!out.trim().is_empty(), "the member ran: {out}");
    c.ns_create("/after").unwrap();
    let got = events_until(&mut host, "host subscriber after the flood", |got| {
        got.iter()
            .any(|e| e.kind == K::NsCreated && e.namespace == "/after")
    });
    let denials = got.iter().filter(|e| e.kind == K::Denied).count();
    assert!(denials >= 1, "no refusal reported at all");
    assert!(
        denials < 2000,
        "every one of the 2 000 refusals was published: no per-namespace limit"
    );
    assert_eq!(counter(&d, "events_subscribers_dropped"), 0);
    assert_eq!(counter(&d, "events_suppressed") as usize + denials, 2000);
}

/// A member creating and deleting child namespaces in a loop (each a new namespace id, two
/// events each) is held to its tenant's event limit like a member refused in a loop: an
/// operator's subscription that pauses meanwhile is not dropped, and the host's own changes
/// still come through.
#[test]
fn a_member_churning_namespaces_is_held_to_its_tenants_limit() {
    use bpfns_proto::EventKind as K;
    require_kernel!();
    let d = TestDaemon::start_with("events-churn", |c| c.events_per_namespace_per_sec = 5);
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    let mut host = d.client();
    host.set_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    host.subscribe(None, vec![K::NsCreated, K::NsDeleted])
        .unwrap();
    // Not read while the member churns: 400 events, each of a new namespace id (200 cycles:
    // a virtual machine without acceleration makes a few a second).
    let sock = d.socket.to_string_lossy().into_owned();
    let mut member = Helper::spawn(&["client", &sock, "ns-churn", "/a/c", "200"]);
    d.client().enter("/a", member.pid).unwrap();
    member.go();
    let churned: u32 = member.expect("churned").parse().unwrap();
    member.finish();
    assert_eq!(churned, 200, "the member's namespace changes failed");
    c.ns_create("/after").unwrap();
    let got = events_until(&mut host, "host subscriber after the churn", |got| {
        got.iter()
            .any(|e| e.kind == K::NsCreated && e.namespace == "/after")
    });
    let of_member = got
        .iter()
        .filter(|e| e.namespace.starts_with("/a/"))
        .count();
    assert!(
        of_member < 400,
        "every one of the member's 400 events was published: no limit per tenant"
    );
    assert_eq!(counter(&d, "events_subscribers_dropped"), 0);
    assert_eq!(counter(&d, "events_suppressed") as usize + of_member, 400);
}

/// `events`: namespace changes, a member entering, the supervisor's refusal of a foreign id
/// and the backstop's stop of an unsupervised member reach a host subscriber, with who did
/// what; a member's subscription carries its own subtree's events and never another's.
#[test]
fn events_report_changes_denials_and_stops_within_the_subscribers_subtree() {
    use bpfns_proto::EventKind as K;
    require_kernel!();
    let d = TestDaemon::start("events");
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    c.ns_create("/b").unwrap();
    let mut host = d.client();
    host.set_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    assert_eq!(host.subscribe(None, Vec::new()).unwrap(), "/");
    // A member of /a subscribed to everything it may get.
    let sock = d.socket.to_string_lossy().into_owned();
    let mut member = Helper::spawn(&["client", &sock, "events"]);
    d.client().enter("/a", member.pid).unwrap();
    member.go();
    assert_eq!(member.expect("subscribed"), "/a");

    let x_id = c.ns_create("/a/x").unwrap().id;
    c.ns_set_policy("/b", Policy::tracing(true)).unwrap();
    c.ns_set_quota("/b", None, maps(7)).unwrap();
    c.ns_delete("/a/x").unwrap();
    let (hb, b_map) = create_in(&d, "/b", "map");
    // The supervisor refuses a member of /a the map of /b (ENOENT, as for a missing id).
    let out = supervised_in(&d, "/a", &["open", "map", &b_map.to_string()]);
    assert_eq!(out.trim(), "errno=2", "the foreign open is refused");
    // ... and the same map pinned in /a's bpffs (EPERM: another namespace's object).
    let a_id = c.ns_show("/a").unwrap().id;
    let fd = bpfns_sys::bpf::fd_by_id(ObjectKind::Map, b_map).unwrap();
    bpfns_sys::bpf::obj_pin(
        &fd,
        &d.dir.join("ns").join(a_id.to_string()).join("foreign"),
    )
    .unwrap();
    drop(fd);
    let out = supervised_in(&d, "/a", &["obj-get", "/sys/fs/bpf/foreign"]);
    assert_eq!(
        out.trim(),
        format!("errno={}", libc::EPERM),
        "the foreign pin is refused"
    );
    // Unsupervised, the kernel side acts: the backstop's SIGKILL (or BPF LSM's refusal).
    let mut h = Helper::spawn(&["open", "map", &b_map.to_string()]);
    d.client().enter("/a", h.pid).unwrap();
    h.go();
    let h_pid = h.pid;
    let status = h.finish();

    let is = |e: &bpfns_proto::EventInfo, k: K, ns: &str| e.kind == k && e.namespace == ns;
    let got = events_until(&mut host, "host subscriber", |got| {
        let has = |f: &dyn Fn(&bpfns_proto::EventInfo) -> bool| got.iter().any(f);
        has(&|e| is(e, K::NsCreated, "/a/x"))
            && has(&|e| is(e, K::NsPolicyChanged, "/b"))
            && has(&|e| is(e, K::NsQuotaChanged, "/b"))
            && has(&|e| is(e, K::NsDeleted, "/a/x"))
            && has(&|e| is(e, K::MemberEntered, "/b"))
            && has(&|e| is(e, K::Denied, "/a") && e.layer.as_deref() == Some("supervisor"))
            && has(&|e| is(e, K::Denied, "/a") && e.command.as_deref() == Some("BPF_OBJ_GET"))
            && has(&|e| {
                e.namespace == "/a"
                    && e.layer.as_deref() != Some("supervisor")
                    && matches!(e.kind, K::Stopped | K::Denied)
            })
    });
    let created = got.iter().find(|e| is(e, K::NsCreated, "/a/x")).unwrap();
    assert_eq!(created.pid, Some(std::process::id() as i32), "{created:?}");
    // Its deletion: which namespace, and who deleted it (this test, as host root).
    let deleted = got.iter().find(|e| is(e, K::NsDeleted, "/a/x")).unwrap();
    assert_eq!(
        (deleted.ns_id, deleted.pid, deleted.uid),
        (x_id, Some(std::process::id() as i32), Some(0)),
        "{deleted:?}"
    );
    assert!(
        deleted.comm.as_ref().is_some_and(|c| !c.is_empty()),
        "{deleted:?}"
    );
    // The process that entered /b: the helper, as root. Its name is read at the entry: the
    // helper's, or still this test thread's where the spawn (a vfork) returned before the
    // exec renamed the child (the exec wakes its parent before it sets the new name).
    let entered = got.iter().find(|e| is(e, K::MemberEntered, "/b")).unwrap();
    assert_eq!(
        (entered.pid, entered.uid),
        (Some(hb.pid), Some(0)),
        "{entered:?}"
    );
    let spawner: String = std::thread::current()
        .name()
        .unwrap_or_default()
        .chars()
        .take(15)
        .collect();
    assert!(
        entered
            .comm
            .as_deref()
            .is_some_and(|c| c == "bpfns-test-help" || c == spawner),
        "{entered:?}"
    );
    let policy = got
        .iter()
        .find(|e| is(e, K::NsPolicyChanged, "/b"))
        .unwrap();
    assert_eq!(policy.policy.map(|p| p.allows_tracing()), Some(true));
    let denied = got
        .iter()
        .find(|e| {
            is(e, K::Denied, "/a")
                && e.layer.as_deref() == Some("supervisor")
                && e.command.as_deref() != Some("BPF_OBJ_GET")
        })
        .unwrap();
    assert_eq!(
        denied.command.as_deref(),
        Some("BPF_MAP_GET_FD_BY_ID"),
        "{denied:?}"
    );
    assert_eq!(
        (denied.object_kind, denied.object_id),
        (Some(ObjectKind::Map), Some(b_map))
    );
    assert!(denied.pid.is_some() && denied.uid == Some(0), "{denied:?}");
    assert!(
        denied.comm.as_ref().is_some_and(|c| !c.is_empty()),
        "{denied:?}"
    );
    let kernel = got
        .iter()
        .find(|e| {
            e.namespace == "/a"
                && matches!(e.kind, K::Stopped | K::Denied)
                && e.layer.as_deref() != Some("supervisor")
        })
        .unwrap();
    // The pin: which path the member gave.
    let pin = got
        .iter()
        .find(|e| is(e, K::Denied, "/a") && e.command.as_deref() == Some("BPF_OBJ_GET"))
        .unwrap();
    assert_eq!(
        (pin.layer.as_deref(), pin.path.as_deref()),
        (Some("supervisor"), Some("/sys/fs/bpf/foreign")),
        "{pin:?}"
    );
    assert!(
        pin.reason
            .as_deref()
            .is_some_and(|r| r.starts_with("EPERM")),
        "{pin:?}"
    );
    assert_eq!(kernel.pid, Some(h_pid), "{kernel:?}");
    assert_eq!(kernel.reason.as_deref(), Some("foreign"), "{kernel:?}");
    assert_eq!(
        (kernel.object_kind, kernel.object_id),
        (Some(ObjectKind::Map), Some(b_map)),
        "{kernel:?}"
    );
    if bpfns_tests::killed(status) {
        assert_eq!(
            (kernel.kind, kernel.layer.as_deref()),
            (K::Stopped, Some("backstop")),
            "{kernel:?}"
        );
        // The call the backstop caught, by whom (the task is gone: no uid).
        assert_eq!(
            (kernel.command.as_deref(), kernel.comm.as_deref()),
            (Some("BPF_MAP_GET_FD_BY_ID"), Some("bpfns-test-help")),
            "{kernel:?}"
        );
    } else {
        // BPF LSM refused the fd (its hook sees the map, not the command).
        assert_eq!(
            (
                kernel.kind,
                kernel.layer.as_deref(),
                kernel.command.as_deref()
            ),
            (K::Denied, Some("lsm"), Some("open")),
            "{kernel:?}"
        );
    }

    // The member's stream: /a's subtree only, up to a marker made last.
    c.ns_create("/a/marker").unwrap();
    let mut seen = Vec::new();
    loop {
        let line = member.expect("event");
        let e: bpfns_proto::EventInfo = serde_json::from_str(&line).unwrap();
        let mark = is(&e, K::NsCreated, "/a/marker");
        seen.push(e);
        if mark {
            break;
        }
    }
    for e in &seen {
        assert!(
            e.namespace == "/a" || e.namespace.starts_with("/a/"),
            "a member of /a got an event of {}: {e:?}",
            e.namespace
        );
    }
    assert!(
        seen.iter().any(|e| is(e, K::NsCreated, "/a/x")),
        "{seen:#?}"
    );
    assert!(seen.iter().any(|e| is(e, K::Denied, "/a")), "{seen:#?}");
    assert!(!seen.iter().any(|e| e.namespace == "/b"), "{seen:#?}");
}

/// A subscriber that stops reading is dropped once its queue is full, and counted; bpfnsd
/// goes on answering requests and serving the other subscribers meanwhile.
#[test]
fn a_subscriber_that_stops_reading_is_dropped_and_counted() {
    use bpfns_proto::EventKind as K;
    require_kernel!();
    // One namespace's refusals must be able to overflow a queue here: no per-namespace limit.
    let d = TestDaemon::start_with("events-slow", |c| {
        c.events_per_namespace_per_sec = u32::MAX;
    });
    let mut c = d.client();
    c.ns_create("/a").unwrap();
    c.ns_create("/b").unwrap();
    let (_hb, b_map) = create_in(&d, "/b", "map");
    let mut slow = d.client();
    slow.subscribe(None, Vec::new()).unwrap();
    let mut other = d.client();
    other
        .set_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    other.subscribe(None, vec![K::NsCreated]).unwrap();
    assert_eq!(counter(&d, "events_subscribers"), 2);
    // Far more refusals than the slow one's queue and socket hold.
    let n = 4 * bpfnsd::events::QUEUE + 4096;
    let out = supervised_in(
        &d,
        "/a",
        &["open-loop", "map", &b_map.to_string(), &n.to_string()],
    );
    assert_eq!(out.trim(), format!("refused={n}"));
    eventually("the slow subscriber is dropped", || {
        counter(&d, "events_subscribers_dropped") == 1
    });
    // Still serving: requests, and the other subscriber.
    c.ns_create("/a/after").unwrap();
    events_until(&mut other, "the other subscriber", |got| {
        got.iter()
            .any(|e| e.kind == K::NsCreated && e.namespace == "/a/after")
    });
    assert_eq!(counter(&d, "events_subscribers"), 1);
    // The slow one reads what was queued, then the end.
    slow.set_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut read = 0;
    let end = loop {
        match slow.next_event() {
            Ok(_) => read += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(end, bpfns_client::ClientError::Closed), "{end}");
    assert!(
        read < n,
        "dropped before the last event: read {read} of {n}"
    );
}

/// A cgroup v2 directory `bpfns-test-<what>-<pid>` with a child `kid`, removed on drop;
/// `None` (and the test skipped) where no cgroup2 hierarchy is mounted.
struct TestCgroup {
    name: String,
    path: PathBuf,
}

impl TestCgroup {
    fn new(what: &str) -> Option<Self> {
        let Ok(root) = bpfns_sys::cgroup::cgroup2_root() else {
            bpfns_tests::skip("no cgroup2 hierarchy is mounted");
            return None;
        };
        let name = format!("bpfns-test-{what}-{}", std::process::id());
        let cg = TestCgroup {
            path: root.join(&name),
            name,
        };
        let _ = std::fs::remove_dir(cg.path.join("kid"));
        let _ = std::fs::remove_dir(&cg.path);
        std::fs::create_dir_all(cg.path.join("kid")).unwrap();
        Some(cg)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(self.path.join("kid"));
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// A namespace's cgroup (where its members may attach programs): given at creation
/// (`--cgroup`, checked: it must exist, and below a bound namespace lie inside that one's),
/// else bound by its first member's cgroup; shown, and kept across a restart.
#[test]
fn a_namespace_is_bound_to_a_cgroup_given_or_its_first_members() {
    require_kernel!();
    let Some(cg) = TestCgroup::new("bind") else {
        return;
    };
    let name = cg.name.clone();
    let (top, kid) = (format!("/{name}"), format!("/{name}/kid"));
    let d = TestDaemon::start("cgbind");
    let mut c = d.client();
    let p = Policy::DEFAULT;
    // Given: by its path below the cgroup2 root or under the mount.
    let n = c
        .ns_create_bound("/g", p, None, Some(&cg.path.to_string_lossy()))
        .unwrap();
    assert_eq!(n.cgroup.as_deref(), Some(top.as_str()));
    assert_eq!(
        c.ns_create_bound("/g/in", p, None, Some(&kid))
            .unwrap()
            .cgroup
            .as_deref(),
        Some(kid.as_str())
    );
    // Outside the parent's, missing, or not absolute: refused, nothing created.
    let e = c.ns_create_bound("/g/out", p, None, Some("/")).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Denied), "{e}");
    let e = c
        .ns_create_bound("/h", p, None, Some("/bpfns-no-such-cgroup"))
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
    let e = c
        .ns_create_bound("/h", p, None, Some("a/../b"))
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
    assert!(c.ns_show("/g/out").is_err() && c.ns_show("/h").is_err());
    // Not given: its first member's cgroup binds it (one apart from /g's: unrelated
    // namespaces never share one); the next member's changes nothing.
    let Some(cg_f) = TestCgroup::new("bind-f") else {
        return;
    };
    let kid_f = format!("/{}/kid", cg_f.name);
    c.ns_create("/f").unwrap();
    assert_eq!(c.ns_show("/f").unwrap().cgroup, None);
    let mut first = Helper::spawn(&["create", "map"]);
    std::fs::write(cg_f.path.join("kid/cgroup.procs"), first.pid.to_string()).unwrap();
    c.enter("/f", first.pid).unwrap();
    assert_eq!(
        c.ns_show("/f").unwrap().cgroup.as_deref(),
        Some(kid_f.as_str())
    );
    let mut second = Helper::spawn(&["create", "map"]);
    std::fs::write(cg_f.path.join("cgroup.procs"), second.pid.to_string()).unwrap();
    c.enter("/f", second.pid).unwrap();
    assert_eq!(
        c.ns_show("/f").unwrap().cgroup.as_deref(),
        Some(kid_f.as_str())
    );
    // Back where they came from, so that the test cgroups can go.
    let root = cg.path.parent().expect("the cgroup2 root").to_path_buf();
    for h in [&first, &second] {
        let _ = std::fs::write(root.join("cgroup.procs"), h.pid.to_string());
    }
    first.go();
    second.go();
    let _ = first.finish();
    let _ = second.finish();
    // Kept across a restart.
    drop(c);
    let (dir, layout) = d.stop();
    let d = TestDaemon::start_at(dir, layout, false);
    let mut c = d.client();
    assert_eq!(
        c.ns_show("/g").unwrap().cgroup.as_deref(),
        Some(top.as_str())
    );
    assert_eq!(
        c.ns_show("/f").unwrap().cgroup.as_deref(),
        Some(kid_f.as_str())
    );
    assert_eq!(c.ns_show("/").unwrap().cgroup, None);
}

/// Two namespaces neither of which is the other's ancestor never share a cgroup (the
/// programs of each would run on the other's processes): a `--cgroup` at, above or below
/// another's is refused with both named, and a first member in another's cgroup binds
/// nothing. A descendant may share, and `--cgroup /` (attach anywhere, on purpose) is exempt.
#[test]
fn unrelated_namespaces_never_share_a_cgroup() {
    require_kernel!();
    let Some(cg) = TestCgroup::new("share") else {
        return;
    };
    let name = cg.name.clone();
    let (top, kid) = (format!("/{name}"), format!("/{name}/kid"));
    let d = TestDaemon::start("cgshare");
    let mut c = d.client();
    let p = Policy::DEFAULT;
    c.ns_create_bound("/p2", p, None, Some(&top)).unwrap();
    for at in [&top, &kid] {
        let e = c.ns_create_bound("/p1", p, None, Some(at)).unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Denied), "{e}");
        let m = e.to_string();
        assert!(
            m.contains("/p1") && m.contains("/p2") && m.contains("--cgroup"),
            "{m}"
        );
        assert!(c.ns_show("/p1").is_err(), "nothing created");
    }
    // A descendant may share; the root cgroup is exempt.
    c.ns_create_bound("/p2/in", p, None, Some(&kid)).unwrap();
    c.ns_create_bound("/any", p, None, Some("/")).unwrap();
    // Above another's: refused too.
    c.ns_create("/q").unwrap();
    let e = c.ns_create_bound("/q/x", p, None, Some(&top)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Denied), "{e}");
    // A first member in /p2's cgroup (a shell both were started from) binds nothing.
    c.ns_create("/p3").unwrap();
    let mut h = Helper::spawn(&["create", "map"]);
    std::fs::write(cg.path.join("cgroup.procs"), h.pid.to_string()).unwrap();
    c.enter("/p3", h.pid).unwrap();
    assert_eq!(c.ns_show("/p3").unwrap().cgroup, None);
    let _ = std::fs::write(
        cg.path
            .parent()
            .expect("the cgroup2 root")
            .join("cgroup.procs"),
        h.pid.to_string(),
    );
    h.go();
    let _ = h.finish();
}

/// An array map of `entries` values of `value_size` bytes, named `name`, made by a member of
/// `ns`; the helper holds it until dropped.
/// A namespace's objects freed before it is deleted, their records not collected yet (the
/// collector runs once an hour here), are reported gone by the deletion, under the deleted
/// namespace's name, to its ancestors' subscribers: after the deletion no event could name it.
#[test]
fn objects_freed_in_a_namespace_being_deleted_are_reported_gone() {
    use bpfns_proto::EventKind as K;
    require_kernel!();
    let d = TestDaemon::start_with("delgone", |c| c.gc_interval_secs = 3600);
    let mut c = d.client();
    c.ns_create("/q").unwrap();
    c.ns_create("/q/x").unwrap();
    let mut sub = d.client();
    sub.set_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    sub.subscribe(Some("/q"), vec![K::ObjectGone, K::NsCreated])
        .unwrap();
    let (h, id) = array_in(&d, "/q/x", "dg_map", 8, 4);
    h.finish();
    c.ns_delete("/q/x").unwrap();
    // Up to a marker made after the deletion answered.
    c.ns_create("/q/marker").unwrap();
    let got = events_until(&mut sub, "subscriber of /q", |g| {
        g.iter()
            .any(|e| e.kind == K::NsCreated && e.namespace == "/q/marker")
    });
    let gone = got
        .iter()
        .find(|e| e.kind == K::ObjectGone && e.object_id == Some(id));
    let gone = gone.unwrap_or_else(|| panic!("no object_gone for map {id}: {got:#?}"));
    assert_eq!(
        (gone.namespace.as_str(), gone.object_kind),
        ("/q/x", Some(ObjectKind::Map)),
        "{gone:?}"
    );
}

fn array_in(d: &TestDaemon, ns: &str, name: &str, value_size: u32, entries: u32) -> (Helper, u32) {
    let (vs, n) = (value_size.to_string(), entries.to_string());
    let mut h = Helper::spawn(&["create-array", name, &vs, &n]);
    d.client().enter(ns, h.pid).unwrap();
    h.go();
    let id = h.expect("id").parse().unwrap();
    (h, id)
}

/// The value of `metric` for namespace `ns` in a scrape.
fn metric_of(scrape: &str, metric: &str, ns: &str) -> Option<u64> {
    let head = format!("{metric}{{namespace=\"{ns}\"}} ");
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(&head))
        .and_then(|v| v.trim().parse().ok())
}

/// Map memory per namespace: the kernel's own account of each map (memlock) summed for its
/// owner, and with the descendants' for each ancestor; `ns show`, `ns list` and the metrics
/// say the same.
#[test]
fn map_memory_is_summed_per_namespace_and_agrees_with_the_metrics() {
    require_kernel!();
    let d = TestDaemon::start("mapmem");
    let mut c = d.client();
    c.ns_create("/m").unwrap();
    c.ns_create("/m/c").unwrap();
    c.ns_create("/other").unwrap();
    // 256 KiB and 16 KiB of values.
    let (_ha, _) = array_in(&d, "/m", "mem_a", 4096, 64);
    let (hb, _) = array_in(&d, "/m/c", "mem_b", 1024, 16);
    let m = c.ns_show("/m").unwrap();
    let mc = c.ns_show("/m/c").unwrap();
    let other = c.ns_show("/other").unwrap();
    let (own, child) = (m.map_memory.unwrap(), mc.map_memory.unwrap());
    assert!(own >= 4096 * 64, "/m's map is 256 KiB of values: {own}");
    assert!(
        child >= 1024 * 16,
        "/m/c's map is 16 KiB of values: {child}"
    );
    assert!(
        own < 4096 * 64 * 2,
        "only /m's own map counts in its own: {own}"
    );
    assert_eq!(m.map_memory_total, Some(own + child));
    assert_eq!(mc.map_memory_total, Some(child));
    assert_eq!(
        (other.map_memory, other.map_memory_total),
        (Some(0), Some(0))
    );
    let root = c.ns_show("/").unwrap();
    assert!(root.map_memory_total.unwrap() >= own + child + root.map_memory.unwrap());

    let list = c.ns_list().unwrap();
    let listed = list.iter().find(|n| n.path == "/m").unwrap();
    assert_eq!(
        (listed.map_memory, listed.map_memory_total),
        (m.map_memory, m.map_memory_total)
    );
    let scrape = bpfnsd::metrics::render(d.daemon()).unwrap();
    for n in [&m, &mc, &other] {
        assert_eq!(
            metric_of(&scrape, "bpfns_namespace_map_memory_bytes", &n.path),
            n.map_memory,
            "{scrape}"
        );
        assert_eq!(
            metric_of(&scrape, "bpfns_namespace_subtree_map_memory_bytes", &n.path),
            n.map_memory_total,
            "{scrape}"
        );
    }
    // A freed map counts no more (bpfnsd remembers the size of fixed-size maps by id).
    hb.finish();
    eventually("/m/c's map freed", || {
        let mc = c.ns_show("/m/c").unwrap();
        let m = c.ns_show("/m").unwrap();
        mc.map_memory == Some(0) && m.map_memory_total == Some(own)
    });
}

/// `object_created` reaches a subscriber of the creator's namespace with what was created
/// and by whom; a sibling namespace's subscriber never gets it. `object_gone` follows once
/// the object is freed and bpfnsd drops its record. The kernel side writes object notices
/// only while a subscriber wants them.
#[test]
fn object_events_reach_the_owners_subtree_only() {
    use bpfns_proto::EventKind as K;
    require_kernel!();
    let d = TestDaemon::start("objev");
    let mut c = d.client();
    c.ns_create("/p").unwrap();
    c.ns_create("/p/a").unwrap();
    c.ns_create("/p/b").unwrap();
    let flag = || {
        let m = libbpf_rs::MapHandle::from_pinned_path(d.layout.map("object_events")).unwrap();
        use libbpf_rs::MapCore;
        m.lookup(&0u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            .unwrap()
            .is_some_and(|v| v.iter().any(|b| *b != 0))
    };
    let mut sub_a = d.client();
    sub_a
        .set_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    sub_a
        .subscribe(Some("/p/a"), vec![K::ObjectCreated, K::ObjectGone])
        .unwrap();
    assert!(flag(), "a subscription turns object notices on at once");
    let mut sub_b = d.client();
    sub_b
        .set_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    sub_b
        .subscribe(Some("/p/b"), vec![K::ObjectCreated, K::NsCreated])
        .unwrap();

    let (h, id) = array_in(&d, "/p/a", "ev_map", 8, 4);
    let h_pid = h.pid;
    let is_ours = |e: &bpfns_proto::EventInfo, k: K| e.kind == k && e.object_id == Some(id);
    let got = events_until(&mut sub_a, "subscriber of /p/a", |g| {
        g.iter().any(|e| is_ours(e, K::ObjectCreated))
    });
    let e = got.iter().find(|e| is_ours(e, K::ObjectCreated)).unwrap();
    assert_eq!(
        (e.namespace.as_str(), e.object_kind),
        ("/p/a", Some(ObjectKind::Map)),
        "{e:?}"
    );
    assert_eq!(e.object_name.as_deref(), Some("ev_map"), "{e:?}");
    assert_eq!((e.pid, e.uid), (Some(h_pid), Some(0)), "{e:?}");
    assert_eq!(e.command.as_deref(), Some("BPF_MAP_CREATE"), "{e:?}");
    assert!(
        e.comm
            .as_deref()
            .is_some_and(|c| c.starts_with("bpfns-test")),
        "{e:?}"
    );

    // The sibling's stream, up to a marker made after the creation was published.
    c.ns_create("/p/b/marker").unwrap();
    let seen = events_until(&mut sub_b, "subscriber of /p/b", |g| {
        g.iter()
            .any(|e| e.kind == K::NsCreated && e.namespace == "/p/b/marker")
    });
    assert!(
        !seen.iter().any(|e| e.kind == K::ObjectCreated),
        "a subscriber of /p/b got another namespace's object: {seen:#?}"
    );

    // Freed (the helper exits), then collected.
    h.finish();
    d.daemon().collect_garbage().unwrap();
    let got = events_until(&mut sub_a, "subscriber of /p/a", |g| {
        g.iter().any(|e| is_ours(e, K::ObjectGone))
    });
    let gone = got.iter().find(|e| is_ours(e, K::ObjectGone)).unwrap();
    assert_eq!(gone.namespace, "/p/a", "{gone:?}");

    drop(sub_a);
    drop(sub_b);
    eventually("object notices off once nobody subscribes", || !flag());
}
