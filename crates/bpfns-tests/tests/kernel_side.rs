//! The kernel side against the real kernel: tags, ownership, listing, backstop, reload, unload.
//!
//! Every test loads its own instance under its own pin root and uses its own namespace ids
//! (instances do not see each other's tags), and unloads it when it ends, pass or fail.
//!
//! Where the kernel runs the BPF LSM layer too (`loader::load` adds it where allowed; the VM
//! lane boots such a kernel), foreign opens are refused with EPERM before the backstop sees
//! them: the tests expect whichever layer is loaded to act ([`expected_denial`]).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use bpfns_kernel::{loader, lsm};
use bpfns_model::{NsId, ObjectKind};
use bpfns_sys::bpf as sysbpf;
use bpfns_sys::process::open_pidfd;
use bpfns_tests::{killed, require_kernel, Helper, TempPin, TestKernel};

const A: NsId = NsId(11);
const A_CHILD: NsId = NsId(12);
const B: NsId = NsId(21);

/// Root ─┬─ A ── A_CHILD
///       └─ B
fn with_tree(name: &str) -> TestKernel {
    let tk = TestKernel::load(name);
    // A quota entry first (no limit of its own): the kernel side lets a namespace without one
    // create nothing.
    for ns in [A, A_CHILD, B] {
        tk.kernel.ensure_namespace_limit(ns, u64::MAX).unwrap();
    }
    tk.kernel.set_namespace(A, NsId::ROOT, 1).unwrap();
    tk.kernel.set_namespace(A_CHILD, A, 2).unwrap();
    tk.kernel.set_namespace(B, NsId::ROOT, 1).unwrap();
    tk
}

fn ns_of(tk: &TestKernel, pid: i32) -> NsId {
    let fd = open_pidfd(pid).unwrap();
    tk.kernel.task_ns(fd.as_fd()).unwrap()
}

/// A thread's namespace: through a thread pidfd (PIDFD_THREAD, Linux 6.9+), else (older
/// kernels answer EINVAL) from the task iterator.
fn ns_of_thread(tk: &TestKernel, tid: i32) -> NsId {
    match bpfns_sys::process::open_thread_pidfd(tid) {
        Ok(fd) => tk.kernel.task_ns(fd.as_fd()).unwrap(),
        Err(e) if e.errno == bpfns_sys::Errno::INVAL => tk
            .kernel
            .tagged_tasks()
            .unwrap()
            .iter()
            .find(|t| t.tid == tid)
            .map_or(NsId::ROOT, |t| t.ns),
        Err(e) => panic!("{e}"),
    }
}

/// Start a helper creating `what` in namespace `ns` (None = untagged); returns it (holding
/// the object) and the object's id.
fn create_in(
    tk: &TestKernel,
    ns: Option<NsId>,
    what: &str,
    pin: Option<&TempPin>,
) -> (Helper, u32) {
    let mut args = vec!["create", what];
    let pin_str;
    if let Some(p) = pin {
        pin_str = p.0.to_string_lossy().into_owned();
        args.push(&pin_str);
    }
    let mut h = Helper::spawn(&args);
    if let Some(ns) = ns {
        tk.kernel.tag_process(h.pid, ns).unwrap();
    }
    h.go();
    let id = h.expect("id").parse().unwrap();
    (h, id)
}

/// What became of an open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// The task got the fd.
    Opened,
    /// The backstop killed the task.
    Killed,
    /// The BPF LSM layer refused with EPERM; the task lives on.
    Refused,
}

/// Run `open KIND ID` (or `obj-get PATH`) as a task of `ns` and say what happened. Any other
/// outcome (another errno, another exit) fails the test.
fn open_as(tk: &TestKernel, ns: Option<NsId>, args: &[&str]) -> Open {
    let mut h = Helper::spawn(args);
    if let Some(ns) = ns {
        tk.kernel.tag_process(h.pid, ns).unwrap();
    }
    h.go();
    let mut result = None;
    while let Some(l) = h.line() {
        if l.starts_with("opened=") || l.starts_with("errno=") {
            result = Some(l);
            break;
        }
    }
    let status = h.finish();
    match (result.as_deref(), killed(status)) {
        (Some(l), false) if status.success() && l.starts_with("opened=") => Open::Opened,
        (None, true) => Open::Killed,
        (Some("errno=1"), false) if status.success() => Open::Refused,
        (r, _) => panic!("{args:?}: unexpected outcome: {r:?} status={status}"),
    }
}

/// `true` if the task got the fd; `false` if the layer that guards this open stopped it (see
/// [`expected_denial`]). Anything else fails the test.
fn try_open(tk: &TestKernel, ns: Option<NsId>, args: &[&str]) -> bool {
    match open_as(tk, ns, args) {
        Open::Opened => true,
        denied => {
            assert_eq!(
                denied,
                expected_denial(tk, args),
                "{args:?}: the wrong layer acted"
            );
            false
        }
    }
}

/// How a foreign open is stopped here: refused by the BPF LSM layer when the program that
/// guards it is loaded, else killed by the backstop.
fn expected_denial(tk: &TestKernel, args: &[&str]) -> Open {
    let program = match args {
        ["open", "map", ..] => "lsm_bpf_map",
        ["open", "prog", ..] => "lsm_bpf_prog",
        ["open", "link" | "btf", ..] => "lsm_bpf",
        // Pinned maps and programs (the tests pin nothing else).
        ["obj-get", path] if path.contains("-map-") => "lsm_bpf_map",
        ["obj-get", _] => "lsm_bpf_prog",
        _ => return Open::Killed,
    };
    if lsm::has_program(&tk.layout, program) {
        Open::Refused
    } else {
        Open::Killed
    }
}

#[test]
fn tag_is_inherited_by_child_grandchild_thread_and_exec() {
    require_kernel!();
    let tk = with_tree("inherit");

    let mut tree = Helper::spawn(&["tree"]);
    tk.kernel.tag_process(tree.pid, A).unwrap();
    tree.go();
    let me: i32 = tree.expect("self").parse().unwrap();
    let child: i32 = tree.expect("child").parse().unwrap();
    let grandchild: i32 = tree.expect("grandchild").parse().unwrap();
    assert_eq!(me, tree.pid);
    assert_eq!(ns_of(&tk, child), A, "child inherits");
    assert_eq!(ns_of(&tk, grandchild), A, "grandchild inherits");
    tree.finish();

    let mut th = Helper::spawn(&["threads", "3"]);
    tk.kernel.tag_process(th.pid, B).unwrap();
    th.go();
    let mut tids = Vec::new();
    loop {
        let l = th.line().expect("threads output");
        if l == "threads=ready" {
            break;
        }
        tids.push(l.strip_prefix("tid=").unwrap().parse::<i32>().unwrap());
    }
    assert_eq!(tids.len(), 3);
    for tid in tids {
        assert_eq!(ns_of_thread(&tk, tid), B, "thread {tid} inherits");
    }
    th.finish();

    let mut ex = Helper::spawn(&["exec", "hold", "after-exec"]);
    tk.kernel.tag_process(ex.pid, A_CHILD).unwrap();
    ex.go();
    let pid: i32 = ex.expect("after-exec").parse().unwrap();
    assert_eq!(pid, ex.pid, "exec keeps the pid");
    assert_eq!(ns_of(&tk, pid), A_CHILD, "exec keeps the tag");
    ex.finish();

    // Untagged tasks stay untagged: root.
    let mut un = Helper::spawn(&["tree"]);
    un.go();
    let child: i32 = un.expect("child").parse().unwrap();
    assert_eq!(ns_of(&tk, child), NsId::ROOT);
    un.finish();
}

#[test]
fn objects_of_all_four_kinds_are_attributed_at_creation() {
    require_kernel!();
    let tk = with_tree("attrib");
    // The raw tracepoint link needs a tracing-class program: allowed for A only by policy.
    tk.kernel
        .set_namespace_policy(A, NsId::ROOT, 1, true)
        .unwrap();
    for (what, kind) in [
        ("map", ObjectKind::Map),
        ("prog", ObjectKind::Prog),
        ("btf", ObjectKind::Btf),
        ("link", ObjectKind::Link),
        ("rawtp-link", ObjectKind::Link),
    ] {
        let (h, id) = create_in(&tk, Some(A), what, None);
        assert_eq!(
            tk.kernel.owner(kind, id).unwrap(),
            A,
            "{what} {id} owned by A"
        );
        let listed = tk.kernel.list(kind).unwrap();
        let o = listed
            .iter()
            .find(|o| o.id == id)
            .unwrap_or_else(|| panic!("{what} {id} listed"));
        assert_eq!(o.owner, A, "{what} {id} listed with owner A");
        if kind == ObjectKind::Map || kind == ObjectKind::Prog {
            assert_eq!(o.name, "bpfns_test");
        }
        drop(h);
    }
    // A link's program is attributed too.
    let (_h, link_id) = create_in(&tk, Some(B), "link", None);
    let link = tk
        .kernel
        .list(ObjectKind::Link)
        .unwrap()
        .into_iter()
        .find(|o| o.id == link_id)
        .unwrap();
    let prog_id = link.prog_id.expect("link carries its program id");
    assert_eq!(tk.kernel.owner(ObjectKind::Prog, prog_id).unwrap(), B);
    assert_eq!(link.type_name, "netns");
}

#[test]
fn objects_made_before_load_or_by_untagged_tasks_belong_to_root() {
    require_kernel!();
    // A map that exists before this instance is loaded.
    let before = sysbpf::map_create(2, "bpfns_before", 4, 4, 1).unwrap();
    let before_id = sysbpf::info::<sysbpf::bpf_map_info>(&before).unwrap().id;
    let tk = with_tree("preexisting");
    assert_eq!(
        tk.kernel.owner(ObjectKind::Map, before_id).unwrap(),
        NsId::ROOT
    );
    let (_h, id) = create_in(&tk, None, "map", None);
    assert_eq!(tk.kernel.owner(ObjectKind::Map, id).unwrap(), NsId::ROOT);
    let maps = tk.kernel.list(ObjectKind::Map).unwrap();
    assert_eq!(
        maps.iter().find(|m| m.id == before_id).unwrap().owner,
        NsId::ROOT
    );
    // The kernel side's own maps are root's.
    assert!(maps
        .iter()
        .any(|m| m.name == "task_ns" && m.owner == NsId::ROOT));
}

#[test]
fn iterator_listing_matches_the_kernels_id_walk() {
    require_kernel!();
    let tk = with_tree("listing");
    // Make sure there is something of every kind.
    let _objs: Vec<_> = ["map", "prog", "link"]
        .iter()
        .map(|w| create_in(&tk, Some(A), w, None))
        .collect();
    for kind in [
        ObjectKind::Map,
        ObjectKind::Prog,
        ObjectKind::Link,
        ObjectKind::Btf,
    ] {
        // Other tests create and free objects concurrently: every object held open across
        // the listing must be in it (a walk also returns dying and half-created objects,
        // which cannot be opened: tests/listing.rs); everything listed was walked, or was
        // made after the first walk (ids only grow) and is gone by the second.
        let walk1: BTreeSet<u32> = sysbpf::all_ids(kind).unwrap().into_iter().collect();
        let held: Vec<(u32, std::os::fd::OwnedFd)> = walk1
            .iter()
            .filter_map(|id| Some((*id, sysbpf::fd_by_id(kind, *id).ok()?)))
            .collect();
        let listed: BTreeSet<u32> = tk.kernel.list(kind).unwrap().iter().map(|o| o.id).collect();
        let walk2: BTreeSet<u32> = sysbpf::all_ids(kind).unwrap().into_iter().collect();
        let any: BTreeSet<u32> = walk1.union(&walk2).copied().collect();
        let missed: Vec<u32> = held
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !listed.contains(id))
            .collect();
        assert!(missed.is_empty(), "{kind}: listed misses live {missed:?}");
        let newest = walk1.last().copied().unwrap_or(0);
        let extra: Vec<u32> = listed
            .difference(&any)
            .copied()
            .filter(|&id| id <= newest || sysbpf::fd_by_id(kind, id).is_ok())
            .collect();
        assert!(extra.is_empty(), "{kind}: listed has extra {extra:?}");
    }
}

/// The peer iterator tells the credentials a connection's maker had when it connected (the
/// kernel's record), whatever became of it since: bpfnsd takes the capabilities its callers
/// held then from here, not from `/proc` when it accepts.
#[test]
fn the_peer_iterator_tells_what_a_connector_held_when_it_connected() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    require_kernel!();
    let tk = TestKernel::load("peers");
    // Made here: this process's own credentials, capabilities and all.
    let (here, _there) = std::os::unix::net::UnixStream::pair().unwrap();
    let own = bpfns_sys::caps::of_current_thread()
        .unwrap()
        .effective
        .bits();
    let me = tk
        .kernel
        .peer_credentials(here.as_fd())
        .unwrap()
        .expect("listed");
    assert_eq!((me.euid, me.egid, me.cap_effective), (0, 0, own));
    assert_eq!(u64::from(me.userns), bpfnsd::caller::PROC_USER_INIT_INO);
    // Made by a process of uid 1000 without capabilities, which then exited.
    let dir = std::path::PathBuf::from(format!("/tmp/bpfns-test-peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("s");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let connect_to = path.clone();
    // SAFETY: the closure only connects (a socket and a connect call) before exec.
    let mut child = unsafe {
        std::process::Command::new("/bin/true")
            .uid(1000)
            .gid(1000)
            .pre_exec(move || std::os::unix::net::UnixStream::connect(&connect_to).map(|_| ()))
            .spawn()
            .unwrap()
    };
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let (theirs, _) = listener.accept().unwrap();
    let peer = tk
        .kernel
        .peer_credentials(theirs.as_fd())
        .unwrap()
        .expect("listed");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!((peer.euid, peer.egid, peer.pid), (1000, 1000, pid));
    assert_eq!((peer.cap_effective, peer.cap_permitted), (0, 0));
    assert_eq!(u64::from(peer.userns), bpfnsd::caller::PROC_USER_INIT_INO);
}

#[test]
fn backstop_stops_foreign_opens_by_id_of_all_four_kinds() {
    require_kernel!();
    let tk = with_tree("backstop-id");
    for (what, kind) in [
        ("map", "map"),
        ("prog", "prog"),
        ("btf", "btf"),
        ("link", "link"),
    ] {
        let (_h, id) = create_in(&tk, Some(A), what, None);
        let id_s = id.to_string();
        let args = ["open", kind, id_s.as_str()];
        assert!(try_open(&tk, Some(A), &args), "{kind}: owner opens its own");
        assert!(try_open(&tk, None, &args), "{kind}: root opens anything");
        assert!(
            !try_open(&tk, Some(B), &args),
            "{kind}: sibling B is stopped"
        );
        assert!(
            !try_open(&tk, Some(A_CHILD), &args),
            "{kind}: child of A is stopped"
        );
    }
    // An ancestor sees its descendants' objects; nobody in a namespace sees root's.
    let (_h, id) = create_in(&tk, Some(A_CHILD), "map", None);
    let id_s = id.to_string();
    assert!(
        try_open(&tk, Some(A), &["open", "map", &id_s]),
        "parent sees child's"
    );
    let (_r, root_map) = create_in(&tk, None, "map", None);
    let root_s = root_map.to_string();
    assert!(
        !try_open(&tk, Some(A), &["open", "map", &root_s]),
        "root's map hidden"
    );
    // Counted (by the layer that acted).
    let stats = tk.kernel.stats().unwrap();
    let stopped = stats.iter().find(|(n, _)| *n == "tasks_stopped").unwrap().1;
    let refused = lsm::counters(&tk.layout).unwrap().refused;
    assert!(
        stopped + refused >= 9,
        "stats count stopped tasks: {stats:?}, refused: {refused}"
    );
}

#[test]
fn backstop_stops_foreign_obj_get_of_pinned_files() {
    require_kernel!();
    let tk = with_tree("backstop-pin");
    let map_pin = TempPin::new("map");
    let prog_pin = TempPin::new("prog");
    let (_m, _) = create_in(&tk, Some(A), "map", Some(&map_pin));
    let (_p, _) = create_in(&tk, Some(A), "prog", Some(&prog_pin));
    for pin in [&map_pin, &prog_pin] {
        let path = pin.0.to_string_lossy().into_owned();
        let args = ["obj-get", path.as_str()];
        assert!(try_open(&tk, Some(A), &args), "owner opens its pin {path}");
        assert!(!try_open(&tk, Some(B), &args), "B is stopped on {path}");
    }
}

#[test]
fn children_sharing_the_fd_table_of_a_namespace_task_are_stopped() {
    require_kernel!();
    let tk = with_tree("clone-files");
    let mut h = Helper::spawn(&["clone-files"]);
    tk.kernel.tag_process(h.pid, A).unwrap();
    h.go();
    assert_eq!(h.expect("child"), "signaled:9");
    assert!(h.finish().success());
    // Untagged tasks may do it.
    let mut h = Helper::spawn(&["clone-files"]);
    h.go();
    assert_eq!(h.expect("child"), "exited:0");
    h.finish();
}

#[test]
fn tracing_programs_need_the_namespaces_policy() {
    require_kernel!();
    let tk = with_tree("tracing-policy");
    // B may not load tracing-class programs (a raw tracepoint here; iterators alike).
    let mut h = Helper::spawn(&["create", "rawtp-link"]);
    tk.kernel.tag_process(h.pid, B).unwrap();
    h.go();
    assert_eq!(h.maybe("id"), None, "B loaded a tracing program");
    let status = h.finish();
    if lsm::has_program(&tk.layout, "lsm_bpf") {
        // The BPF LSM layer refuses the load with EPERM: the helper reports it and exits 2.
        assert_eq!(status.code(), Some(2), "{status}");
    } else {
        assert!(killed(status), "{status}");
    }
    // With the policy, it may; the policy flag does not change the depth the kernel reports.
    tk.kernel
        .set_namespace_policy(B, NsId::ROOT, 1, true)
        .unwrap();
    let (_h, id) = create_in(&tk, Some(B), "rawtp-link", None);
    assert_eq!(tk.kernel.owner(ObjectKind::Link, id).unwrap(), B);
    assert!(tk
        .kernel
        .namespaces()
        .unwrap()
        .contains(&(B, NsId::ROOT, 1)));
    // Untagged (root) tasks are not concerned.
    let (_r, _) = create_in(&tk, None, "rawtp-link", None);
}

#[test]
fn namespace_tasks_may_not_load_syscall_programs() {
    require_kernel!();
    let tk = with_tree("syscall-prog");
    let mut h = Helper::spawn(&["create", "syscall-prog"]);
    tk.kernel.tag_process(h.pid, A).unwrap();
    h.go();
    assert_eq!(h.maybe("id"), None);
    let status = h.finish();
    if lsm::has_program(&tk.layout, "lsm_bpf") {
        // Refused at load with EPERM: the helper reports the error and exits 2.
        assert_eq!(status.code(), Some(2), "{status}");
    } else {
        assert!(killed(status), "{status}");
    }
}

#[test]
fn state_survives_loader_exit_and_reload() {
    require_kernel!();
    let tk = with_tree("reload");
    let root = tk.layout.root().to_string_lossy().into_owned();
    let ids_before = tk.kernel.program_ids().unwrap();

    // A tagged long-lived task and an object it owns.
    let mut holder = Helper::spawn(&["tree"]);
    tk.kernel.tag_process(holder.pid, A).unwrap();
    holder.go();
    holder.expect("grandchild");
    let (_m, map_id) = create_in(&tk, Some(B), "map", None);

    // Reload from another process, which then exits.
    let mut loader_proc = Helper::spawn(&["load-kernel", &root]);
    loader_proc.go();
    assert_eq!(loader_proc.expect("loaded"), "1", "pinned state was reused");
    assert!(loader_proc.finish().success());

    let ids_after = tk.kernel.program_ids().unwrap();
    for ((name, old), (_, new)) in ids_before.iter().zip(&ids_after) {
        assert_ne!(old, new, "{name} was replaced by a new program");
    }
    // Tags, ownership and the namespace table are intact.
    assert_eq!(ns_of(&tk, holder.pid), A);
    assert_eq!(tk.kernel.owner(ObjectKind::Map, map_id).unwrap(), B);
    assert_eq!(tk.kernel.namespaces().unwrap().len(), 3);
    // And the new programs work: inheritance, attribution, backstop.
    let mut tree = Helper::spawn(&["tree"]);
    tk.kernel.tag_process(tree.pid, A).unwrap();
    tree.go();
    let child: i32 = tree.expect("child").parse().unwrap();
    assert_eq!(ns_of(&tk, child), A);
    tree.finish();
    let (_n, id2) = create_in(&tk, Some(A), "map", None);
    assert_eq!(tk.kernel.owner(ObjectKind::Map, id2).unwrap(), A);
    let id_s = map_id.to_string();
    assert!(!try_open(&tk, Some(A), &["open", "map", &id_s]));
    holder.finish();
}

/// Wait (bounded) until none of `ids` of `kind` exists: the kernel frees objects after an
/// RCU grace period.
fn gone(kind: ObjectKind, ids: &[u32]) -> Result<(), Vec<u32>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live: BTreeSet<u32> = sysbpf::all_ids(kind).unwrap().into_iter().collect();
        let left: Vec<u32> = ids.iter().copied().filter(|i| live.contains(i)).collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(left);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn unload_leaves_nothing_behind() {
    require_kernel!();
    let layout = bpfns_kernel::PinLayout::new(format!(
        "/sys/fs/bpf/bpfns-test-unload-{}",
        std::process::id()
    ));
    // Unloaded however the test ends (the unload under test comes first when it passes).
    struct UnloadAtEnd(bpfns_kernel::PinLayout);
    impl Drop for UnloadAtEnd {
        fn drop(&mut self) {
            let _ = loader::unload(&self.0);
        }
    }
    let _at_end = UnloadAtEnd(layout.clone());
    let report = loader::load(&layout).unwrap();
    let kernel = bpfns_kernel::Kernel::open(&layout).unwrap();
    let mut prog_ids: Vec<u32> = kernel.program_ids().unwrap().iter().map(|p| p.1).collect();
    assert_eq!(prog_ids.len(), report.programs.len());
    // The BPF LSM layer's programs, where it runs, go too.
    for name in lsm::pinned_links(&layout) {
        let fd = sysbpf::obj_get(&layout.link(&name)).unwrap();
        prog_ids.push(sysbpf::info::<sysbpf::bpf_link_info>(&fd).unwrap().prog_id);
    }
    let map_ids: Vec<u32> = bpfns_kernel::layout::MAPS
        .iter()
        .map(|m| {
            let fd = sysbpf::obj_get(&layout.map(m)).unwrap();
            sysbpf::info::<sysbpf::bpf_map_info>(&fd).unwrap().id
        })
        .collect();
    drop(kernel);
    let removed = loader::unload(&layout).unwrap();
    assert!(!removed.removed.is_empty());
    assert!(!layout.root().exists(), "pin root removed");
    gone(ObjectKind::Prog, &prog_ids).unwrap_or_else(|left| panic!("programs left: {left:?}"));
    // Our maps are freed too (other instances' maps of the same names may exist).
    gone(ObjectKind::Map, &map_ids).unwrap_or_else(|left| panic!("maps left: {left:?}"));
    // Idempotent.
    loader::unload(&layout).unwrap();
}

#[test]
fn garbage_collection_drops_records_of_vanished_objects_only() {
    require_kernel!();
    let tk = with_tree("gc");
    let (h, gone_id) = create_in(&tk, Some(A), "map", None);
    let (_keep, kept_id) = create_in(&tk, Some(A), "map", None);
    h.finish();
    gone(ObjectKind::Map, &[gone_id]).unwrap();
    let free_hook = ["lsm_map_free", "lsm_map_free_sec"]
        .iter()
        .any(|p| lsm::has_program(&tk.layout, p));
    if free_hook {
        // The BPF LSM layer drops the record when the map is freed (after the id is gone).
        let deadline = Instant::now() + Duration::from_secs(30);
        while tk.kernel.owner(ObjectKind::Map, gone_id).unwrap() != NsId::ROOT {
            assert!(
                Instant::now() < deadline,
                "record of freed map {gone_id} not dropped"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        tk.kernel.collect_garbage().unwrap();
    } else {
        assert_eq!(
            tk.kernel.owner(ObjectKind::Map, gone_id).unwrap(),
            A,
            "stale until collected"
        );
        let removed = tk.kernel.collect_garbage().unwrap();
        assert!(removed >= 1);
    }
    assert_eq!(
        tk.kernel.owner(ObjectKind::Map, gone_id).unwrap(),
        NsId::ROOT
    );
    assert_eq!(tk.kernel.owner(ObjectKind::Map, kept_id).unwrap(), A);
}

#[test]
fn the_namespace_table_is_read_whole_and_asked_whether_it_holds_any() {
    require_kernel!();
    let tk = TestKernel::load("ns-table");
    // The root is not in the table.
    assert!(!tk.kernel.holds_namespace_besides(NsId::ROOT).unwrap());
    assert!(tk.kernel.namespace_entries().unwrap().is_empty());
    tk.kernel.set_namespace(B, NsId::ROOT, 1).unwrap();
    tk.kernel.set_namespace(A, NsId::ROOT, 1).unwrap();
    tk.kernel.set_namespace(A_CHILD, A, 2).unwrap();
    assert!(tk.kernel.holds_namespace_besides(NsId::ROOT).unwrap());
    let entries: Vec<(NsId, NsId, u32)> = tk
        .kernel
        .namespace_entries()
        .unwrap()
        .into_iter()
        .map(|e| (e.id, e.parent, e.depth))
        .collect();
    let mut want = vec![(A, NsId::ROOT, 1), (A_CHILD, A, 2), (B, NsId::ROOT, 1)];
    want.sort();
    assert_eq!(entries, want, "every namespace, sorted by id");
    for gone in [A_CHILD, B] {
        tk.kernel.remove_namespace(gone).unwrap();
    }
    // Only A is left: it is seen, and it is the one asked about.
    assert!(tk.kernel.holds_namespace_besides(NsId::ROOT).unwrap());
    assert!(!tk.kernel.holds_namespace_besides(A).unwrap());
    tk.kernel.remove_namespace(A).unwrap();
    assert!(!tk.kernel.holds_namespace_besides(NsId::ROOT).unwrap());
}

#[test]
fn reassign_moves_a_namespaces_objects_to_another() {
    require_kernel!();
    let tk = with_tree("reassign");
    let (_h, id) = create_in(&tk, Some(A_CHILD), "map", None);
    // libbpf's feature probes in the helper create (short-lived) objects too.
    assert!(tk.kernel.reassign(A_CHILD, A).unwrap() >= 1);
    assert_eq!(tk.kernel.owner(ObjectKind::Map, id).unwrap(), A);
    tk.kernel.remove_namespace(A_CHILD).unwrap();
    assert_eq!(tk.kernel.namespaces().unwrap().len(), 2);
}

/// Run the helper as pid 1 of a new pid namespace, tagged `ns`, opening map `id`.
fn open_as_pidns_init(tk: &TestKernel, ns: NsId, id: u32) -> (String, std::process::ExitStatus) {
    use std::io::Write;
    // The helper is tagged while it waits, then execs unshare, whose child inherits the tag.
    let mut child = std::process::Command::new(bpfns_tests::helper_path())
        .args([
            "--wait",
            "exec-cmd",
            "unshare",
            "--pid",
            "--fork",
            "--kill-child",
        ])
        .arg(bpfns_tests::helper_path())
        .args(["open", "map", &id.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tk.kernel.tag_process(child.id() as i32, ns).unwrap();
    child.stdin.take().unwrap().write_all(b"g").unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status,
    )
}

#[test]
fn backstop_stops_the_init_of_a_pid_namespace_too() {
    require_kernel!();
    // Container inits ignore most signals (SIGNAL_UNKILLABLE); the backstop's kill is a
    // kernel-generated SIGKILL, which they cannot ignore.
    if std::process::Command::new("unshare")
        .arg("--version")
        .output()
        .is_err()
    {
        bpfns_tests::skip("needs unshare(1) from util-linux");
        return;
    }
    let tk = with_tree("pidns-init");
    let (_h, id) = create_in(&tk, Some(A), "map", None);
    let (out, status) = open_as_pidns_init(&tk, A, id);
    assert!(
        out.contains("opened=") && status.success(),
        "control: owner opens: {out} {status}"
    );
    let (out, status) = open_as_pidns_init(&tk, B, id);
    assert!(
        !out.contains("opened="),
        "pid 1 of a pid namespace kept the fd: {out}"
    );
    if lsm::has_program(&tk.layout, "lsm_bpf_map") {
        assert!(out.contains("errno=1"), "refused with EPERM: {out}");
    } else {
        assert!(!status.success(), "{status}");
    }
}

#[test]
fn task_iterator_lists_every_tagged_thread() {
    require_kernel!();
    let tk = with_tree("tasks");
    let mut th = Helper::spawn(&["threads", "2"]);
    tk.kernel.tag_process(th.pid, B).unwrap();
    th.go();
    let mut tids = vec![th.pid];
    loop {
        let l = th.line().unwrap();
        if l == "threads=ready" {
            break;
        }
        tids.push(l.strip_prefix("tid=").unwrap().parse().unwrap());
    }
    let tasks = tk.kernel.tagged_tasks().unwrap();
    for tid in &tids {
        let t = tasks
            .iter()
            .find(|t| t.tid == *tid)
            .unwrap_or_else(|| panic!("thread {tid} listed"));
        assert_eq!((t.tgid, t.ns), (th.pid, B));
    }
    th.finish();
    let after = tk.kernel.tagged_tasks().unwrap();
    assert!(
        after.iter().all(|t| !tids.contains(&t.tid)),
        "exited tasks vanish"
    );
}

/// A counter of [`bpfns_kernel::Kernel::reason_stats`] (`stopped_hijack`, ...).
fn reason_count(tk: &TestKernel, name: &str) -> u64 {
    tk.kernel
        .reason_stats()
        .unwrap()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, v)| v)
}

/// Start a helper creating `what` in `ns`: (helper, id, its fd number).
fn victim(tk: &TestKernel, ns: Option<NsId>, what: &str) -> (Helper, u32, i32) {
    let (mut h, id) = create_in(tk, ns, what, None);
    let fd = h.expect("fd").parse().unwrap();
    (h, id, fd)
}

/// The race from the outside red team's report: a namespace task holding a foreign object's
/// fd loops `close(n); create` on one thread and `dup2(foreign, n)` on another, so that the
/// recorder finds the foreign object where the new one should be. The recorder takes only the
/// object the call created (kind and credentials match, no existing record of another owner):
/// the foreign object never changes owner, its owner still opens it, and an attacker that
/// wins the race is stopped.
#[test]
fn racing_the_recorder_never_takes_over_a_foreign_object() {
    require_kernel!();
    let tk = with_tree("hijack");
    for (what, kind, rounds) in [
        ("map", ObjectKind::Map, "4096"),
        ("btf", ObjectKind::Btf, "1024"),
        ("link", ObjectKind::Link, "1024"),
        ("prog", ObjectKind::Prog, "1024"),
    ] {
        for owner in [Some(A), None] {
            let (v, id, fd) = victim(&tk, owner, what);
            let before = reason_count(&tk, "stopped_hijack");
            let (pid, fd) = (v.pid.to_string(), fd.to_string());
            let mut h = Helper::spawn(&["hijack", &pid, &fd, what, rounds, "10"]);
            tk.kernel.tag_process(h.pid, B).unwrap();
            h.go();
            let result = h.maybe("race");
            let status = h.finish();
            let stopped = reason_count(&tk, "stopped_hijack") - before;
            let want = owner.unwrap_or(NsId::ROOT);
            assert_eq!(
                tk.kernel.owner(kind, id).unwrap(),
                want,
                "{what} {id}: owner changed ({result:?}, {status})"
            );
            if killed(status) {
                assert!(stopped >= 1, "{what}: killed, but not for a hijack");
            } else {
                assert!(
                    status.success()
                        && result.as_deref().is_some_and(|r| r.starts_with("created:")),
                    "{what}: {result:?} {status}"
                );
            }
            // Its owner (or root) still opens it.
            let id_s = id.to_string();
            assert!(
                try_open(&tk, owner, &["open", kind.name(), &id_s]),
                "{what} {id}: its owner cannot open it"
            );
            eprintln!(
                "hijack race, {what} of {}: {} ({})",
                owner.map_or("root".to_string(), |n| format!("ns {n}")),
                result.unwrap_or_default(),
                if killed(status) {
                    "attacker stopped"
                } else {
                    "race not won"
                }
            );
        }
    }
}

/// A file that only looks like a BPF object: on a tmpfs, named as the kernel names a map's
/// anonymous inode (`bpf-map`), with private data of its own (a FIFO's pipe, a directory's
/// readdir cursor) or none (a regular file). A namespace task dup2()s it over the fd each of its
/// map creates returns. The recorder must not take it for a map: read as a `struct bpf_map`,
/// a pipe gives the id its ring size says (16 by default, set with `F_SETPIPE_SZ`), and the
/// namespace would own whatever object has that id. A task that wins the race is stopped, and
/// no record is written but for maps it made.
#[test]
fn a_file_named_like_a_bpf_object_is_not_taken_for_one() {
    require_kernel!();
    let tk = with_tree("fakeobj");
    let shm =
        std::path::Path::new("/dev/shm").join(format!("bpfns-fakeobj-{}", std::process::id()));
    // /dev/shm is a tmpfs; a directory per fake, each holding one entry named "bpf-map".
    let _cleanup = Cleanup(shm.clone());
    // With one CPU and no preemption inside the kernel (Debian's default), no other thread runs
    // between the fd's installation and the tracepoint: the race cannot be won there (the VM
    // lane's single vCPU), and one try only checks that nothing is forged.
    let one_cpu = std::thread::available_parallelism().map_or(true, |n| n.get() < 2);
    let mut fakes = Vec::new();
    for what in ["fifo", "dir", "file"] {
        let d = shm.join(what);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("bpf-map");
        match what {
            "fifo" => assert!(std::process::Command::new("mkfifo")
                .arg(&p)
                .status()
                .unwrap()
                .success()),
            "dir" => std::fs::create_dir(&p).unwrap(),
            _ => std::fs::write(&p, b"not a map").unwrap(),
        }
        fakes.push((what, p));
    }
    for (what, path) in &fakes {
        let path_s = path.to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut tries = 0;
        loop {
            tries += 1;
            let before = reason_count(&tk, "stopped_hijack");
            let mut h = Helper::spawn(&["fake", &path_s, "100000000", "5"]);
            tk.kernel.tag_process(h.pid, B).unwrap();
            h.go();
            let first: u32 = h.expect("first").parse().unwrap();
            let race = h.maybe("race");
            let last = h.maybe("last").map(|l| l.parse::<u32>().unwrap());
            let status = h.finish();
            // Every record of B is of a map the task made: ids between `first` and the last
            // map made (`last`, or the newest id once the task was stopped).
            let upto = last.unwrap_or(u32::MAX);
            let forged: Vec<_> = tk
                .kernel
                .ownership_records()
                .unwrap()
                .into_iter()
                .filter(|&(k, id, ns)| ns == B && (k != ObjectKind::Map || id < first || id > upto))
                .collect();
            assert!(
                forged.is_empty(),
                "{what}: the recorder took the fake {path_s} for a map: records {forged:?} \
                 (maps made: {first}..{upto}; {race:?}, {status})"
            );
            let stopped = reason_count(&tk, "stopped_hijack") - before;
            if killed(status) {
                assert!(stopped >= 1, "{what}: killed, but not for a hijack");
                eprintln!("fake {what}: stopped on try {tries} ({race:?})");
                break;
            }
            assert!(
                status.success() && race.as_deref().is_some_and(|r| r.starts_with("created:")),
                "{what}: {race:?} {status}"
            );
            tk.kernel.collect_garbage().unwrap();
            if one_cpu {
                eprintln!("fake {what}: race not won (one CPU: it cannot be), nothing forged");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the race was never won in {tries} tries ({race:?}): the recorder was \
                 not tested"
            );
        }
        tk.kernel.collect_garbage().unwrap();
    }
}

/// Removes a directory tree when dropped (pass or fail).
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a `create-many` helper in `ns` got: (made, errno) when it lived, None when stopped.
fn create_many(tk: &TestKernel, ns: NsId, what: &str, n: u32) -> (Helper, Option<(u32, i32)>) {
    let mut h = Helper::spawn(&["create-many", what, &n.to_string()]);
    tk.kernel.tag_process(h.pid, ns).unwrap();
    h.go();
    let made = h.maybe("made").map(|m| m.parse().unwrap());
    let errno = made.and_then(|_| h.maybe("errno").map(|e| e.parse().unwrap()));
    (h, made.zip(errno))
}

/// Whether the BPF LSM layer records maps at creation here (and so refuses over-quota
/// creations with EPERM instead of the backstop stopping the task).
fn lsm_records_maps(tk: &TestKernel) -> bool {
    lsm::has_program(&tk.layout, "lsm_bpf_map")
}

/// Per-namespace, hierarchical limits on ownership records: a record counts in its namespace
/// and every ancestor below the root; a creation beyond any limit on the chain fails for the
/// creator (EPERM where the BPF LSM layer records, else the task is stopped); freed objects'
/// records go (free hook or collector) and their counts with them; 3/4 of a limit notifies.
#[test]
fn quotas_are_hierarchical_and_fail_closed() {
    require_kernel!();
    let tk = with_tree("quota");
    tk.kernel.set_namespace_limit(A, 8).unwrap();
    tk.kernel.set_namespace_limit(A_CHILD, 5).unwrap();
    let notices = reason_count(&tk, "quota_notices");
    let lsm = lsm_records_maps(&tk);

    // The child's own limit.
    let (child, got) = create_many(&tk, A_CHILD, "map", 100);
    let child = if lsm {
        assert_eq!(got, Some((5, 122)), "the 6th map refused with EDQUOT");
        assert_eq!(reason_count(&tk, "refused_quota"), 1);
        Some(child)
    } else {
        assert_eq!(got, None, "the task creating the 6th map is stopped");
        let st = child.finish();
        assert!(killed(st), "{st}");
        assert_eq!(reason_count(&tk, "stopped_quota"), 1);
        None
    };
    assert_eq!(tk.kernel.namespace_quota(A_CHILD).unwrap().used, 5);
    assert_eq!(
        tk.kernel.namespace_quota(A).unwrap().used,
        5,
        "counted in A too"
    );
    assert!(
        reason_count(&tk, "quota_notices") > notices,
        "3/4 of the child's limit notified"
    );

    // The parent's limit binds its own tasks with what its child uses: 3 more. (BTF objects
    // are recorded by the backstop, with or without BPF LSM: the task is stopped.)
    let (parent, got) = create_many(&tk, A, "btf", 100);
    assert_eq!(got, None, "the 4th BTF object in A is beyond A's limit");
    assert!(killed(parent.finish()));
    assert_eq!(tk.kernel.namespace_quota(A).unwrap().used, 8);

    // Another namespace is not affected.
    let (_b, got) = create_many(&tk, B, "map", 20);
    assert_eq!(got, Some((20, 0)));
    assert_eq!(tk.kernel.namespace_quota(B).unwrap().limit, None);
    assert_eq!(tk.kernel.namespace_quota(B).unwrap().used, 20);

    // Freed objects' records go, and their counts: by the free hook, else the collector.
    drop(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while tk.kernel.namespace_quota(A).unwrap().used != 0 {
        tk.kernel.collect_garbage().unwrap();
        assert!(
            Instant::now() < deadline,
            "{:?}",
            tk.kernel.namespace_quota(A).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(tk.kernel.namespace_quota(A_CHILD).unwrap().used, 0);
    let (_again, got) = create_many(&tk, A_CHILD, "map", 5);
    assert_eq!(got, Some((5, 0)), "room again after the frees");
}

/// The per-kind counts of namespace `ns` (with its descendants'): (progs, maps, links, btf).
fn kind_used(tk: &TestKernel, ns: NsId) -> [u64; 4] {
    tk.kernel.namespace_quota(ns).unwrap().kinds.map(|k| k.used)
}

/// Limits per kind beside the total: the N+1th object of a kind fails for its creator as over
/// the total (EDQUOT where the BPF LSM layer records, else the task is stopped, reason quota),
/// other kinds go on; counted in every ancestor, whose own limit of the kind binds the whole
/// subtree; frees make room again; bpfnsd's own reservations follow the same per-kind rule.
#[test]
fn quotas_per_kind_are_hierarchical() {
    require_kernel!();
    use bpfns_kernel::QuotaRefusal;
    let tk = with_tree("kquota");
    let lsm = lsm_records_maps(&tk);
    let none = [None; 4];
    let maps = |n: u64| [None, Some(n), None, None];
    tk.kernel.set_namespace_kind_limits(A, maps(4)).unwrap();
    tk.kernel
        .set_namespace_kind_limits(A_CHILD, maps(3))
        .unwrap();
    let q = tk.kernel.namespace_quota(A_CHILD).unwrap();
    assert_eq!(q.kinds[1].limit, Some(3));
    assert_eq!(
        q.kinds[0].limit, None,
        "no limit of programs: only the total"
    );
    let stopped_before = reason_count(&tk, "stopped_quota");

    // The child's 4th map fails; its BTF objects do not count against maps.
    let (child, got) = create_many(&tk, A_CHILD, "map", 100);
    let child = if lsm {
        assert_eq!(got, Some((3, 122)), "the 4th map refused with EDQUOT");
        Some(child)
    } else {
        assert_eq!(got, None, "the task creating the 4th map is stopped");
        assert!(killed(child.finish()));
        assert_eq!(reason_count(&tk, "stopped_quota"), stopped_before + 1);
        None
    };
    let (_btf, got) = create_many(&tk, A_CHILD, "btf", 2);
    assert_eq!(got, Some((2, 0)), "other kinds go on");
    assert_eq!(kind_used(&tk, A_CHILD), [0, 3, 0, 2]);
    assert_eq!(kind_used(&tk, A), [0, 3, 0, 2], "counted in the parent too");
    assert_eq!(tk.kernel.namespace_quota(A).unwrap().used, 5);

    // The parent's limit of maps binds its own tasks with what its child holds: one more.
    let (parent, got) = create_many(&tk, A, "map", 100);
    if lsm {
        assert_eq!(got, Some((1, 122)), "EDQUOT");
    } else {
        assert_eq!(
            got, None,
            "A's 5th map (with the child's) is beyond A's max_maps"
        );
        assert!(killed(parent.finish()));
    }
    // Programs have no limit of their own here (the kernel answers these loads: tagged
    // directly, no supervisor).
    let (_progs, got) = create_many(&tk, A, "prog", 3);
    assert_eq!(got, Some((3, 0)));
    // A refused creation left no count behind (a stopped task's map counts until collected).
    assert_eq!(kind_used(&tk, A), [3, 4, 0, 2]);

    // Another namespace is not affected.
    let (_b, got) = create_many(&tk, B, "map", 10);
    assert_eq!(got, Some((10, 0)));
    assert_eq!(kind_used(&tk, B), [0, 10, 0, 0]);
    // The batched read of every namespace's counters (listings) reads the same.
    listing_agrees(&tk);

    // bpfnsd's own reservations: the limit of the kind, then the total, in the same order.
    tk.kernel
        .set_namespace_kind_limits(A_CHILD, [Some(1), Some(3), None, None])
        .unwrap();
    tk.kernel
        .reserve_record(A_CHILD, ObjectKind::Prog)
        .unwrap()
        .unwrap();
    assert_eq!(
        tk.kernel.reserve_record(A_CHILD, ObjectKind::Prog).unwrap(),
        Err(QuotaRefusal::KindOver {
            ns: A_CHILD,
            kind: ObjectKind::Prog,
            used: 1,
            limit: 1
        })
    );
    assert_eq!(kind_used(&tk, A_CHILD)[0], 1, "the refused one given back");
    listing_agrees(&tk);
    let (_p, got) = create_many(&tk, A_CHILD, "prog", 1);
    assert_eq!(
        got,
        // BPF LSM refuses the load over the limit (EDQUOT; it records programs at creation);
        // else it is stopped.
        lsm.then_some((0, libc::EDQUOT)),
        "the kernel side sees bpfnsd's reservation of the kind"
    );
    tk.kernel.release_record(A_CHILD, ObjectKind::Prog).unwrap();
    assert_eq!(kind_used(&tk, A_CHILD)[0], 0);
    assert_eq!(kind_used(&tk, A)[0], 3);
    listing_agrees(&tk);

    // Frees make room again (the free hook, else the collector, counts them per kind).
    drop(child);
    tk.kernel
        .set_namespace_kind_limits(A_CHILD, maps(3))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while kind_used(&tk, A_CHILD)[1] != 0 {
        tk.kernel.collect_garbage().unwrap();
        assert!(Instant::now() < deadline, "{:?}", kind_used(&tk, A_CHILD));
        std::thread::sleep(Duration::from_millis(100));
    }
    listing_agrees(&tk);
    let (_again, got) = create_many(&tk, A_CHILD, "map", 3);
    assert_eq!(got, Some((3, 0)), "room again after the frees");
    // Dropping the limits of a kind leaves only the total.
    tk.kernel.set_namespace_kind_limits(A_CHILD, none).unwrap();
    tk.kernel.set_namespace_kind_limits(A, none).unwrap();
    let (_more, got) = create_many(&tk, A_CHILD, "map", 5);
    assert_eq!(got, Some((5, 0)));
}

/// Every namespace's quota as the listing's batched read gives it (bpfnsd's own quota maps
/// from the copy it keeps) is what a lookup of each gives.
fn listing_agrees(tk: &TestKernel) {
    let all = tk.kernel.namespace_quotas().unwrap();
    for ns in [A, A_CHILD, B] {
        assert_eq!(all[&ns], tk.kernel.namespace_quota(ns).unwrap(), "{ns}");
    }
}

/// The listing's copy of bpfnsd's quota maps follows every write, through any handle of the
/// process, and a namespace removed.
#[test]
fn the_listed_quotas_follow_every_write() {
    require_kernel!();
    let tk = with_tree("quota-listed");
    listing_agrees(&tk);
    tk.kernel.set_namespace_limit(A, 7).unwrap();
    assert_eq!(tk.kernel.namespace_quotas().unwrap()[&A].limit, Some(7));
    // Through another handle on the same kernel side.
    let other = bpfns_kernel::Kernel::open(&tk.layout).unwrap();
    other.set_namespace_limit(A, 9).unwrap();
    other
        .set_namespace_kind_limits(B, [None, Some(2), None, None])
        .unwrap();
    let all = tk.kernel.namespace_quotas().unwrap();
    assert_eq!(all[&A].limit, Some(9));
    assert_eq!(all[&B].kinds[1].limit, Some(2));
    listing_agrees(&tk);
    other
        .reserve_record(A_CHILD, ObjectKind::Map)
        .unwrap()
        .unwrap();
    let all = tk.kernel.namespace_quotas().unwrap();
    assert_eq!((all[&A_CHILD].used, all[&A].used), (1, 1));
    listing_agrees(&tk);
    other.release_record(A_CHILD, ObjectKind::Map).unwrap();
    listing_agrees(&tk);
    tk.kernel.remove_namespace(B).unwrap();
    let all = tk.kernel.namespace_quotas().unwrap();
    assert!(!all.contains_key(&B), "a removed namespace is not listed");
    assert_eq!(all[&A].limit, Some(9));
}

/// Quotas fail closed: a namespace without a limit entry (a failed write), or one the
/// namespace table does not know (nor its parent), creates nothing: its creator is refused
/// (EPERM with BPF LSM) or stopped; and no count is left behind.
#[test]
fn quotas_fail_closed_without_a_limit_or_a_known_namespace() {
    require_kernel!();
    const NO_LIMIT: NsId = NsId(51);
    const ORPHAN: NsId = NsId(52);
    const GONE: NsId = NsId(53);
    let tk = with_tree("quota-closed");
    let lsm = lsm_records_maps(&tk);
    // In the namespace table, but without an entry in the quota table.
    tk.kernel.set_namespace(NO_LIMIT, NsId::ROOT, 1).unwrap();
    // With a limit, but its parent is in neither table.
    tk.kernel.ensure_namespace_limit(ORPHAN, u64::MAX).unwrap();
    tk.kernel.set_namespace(ORPHAN, GONE, 2).unwrap();
    for ns in [NO_LIMIT, ORPHAN] {
        let before = reason_count(
            &tk,
            if lsm {
                "refused_quota"
            } else {
                "stopped_quota"
            },
        );
        let (h, got) = create_many(&tk, ns, "map", 3);
        if lsm {
            assert_eq!(got, Some((0, 1)), "{ns}: refused with EPERM");
        } else {
            assert_eq!(got, None, "{ns}: the creator is stopped");
            assert!(killed(h.finish()));
        }
        assert_eq!(
            reason_count(
                &tk,
                if lsm {
                    "refused_quota"
                } else {
                    "stopped_quota"
                }
            ),
            before + 1
        );
        assert_eq!(tk.kernel.namespace_quota(ns).unwrap().used, 0, "{ns}");
    }
    // bpfnsd's own reservations (programs it loads for members) fail closed the same way.
    use bpfns_kernel::QuotaRefusal;
    assert_eq!(
        tk.kernel.reserve_record(NO_LIMIT, ObjectKind::Map).unwrap(),
        Err(QuotaRefusal::NoLimit { ns: NO_LIMIT })
    );
    assert_eq!(
        tk.kernel.reserve_record(ORPHAN, ObjectKind::Map).unwrap(),
        Err(QuotaRefusal::Unknown { ns: GONE })
    );
    // Within a limit: counted in the namespace and its ancestors before it is compared,
    // given back on release; refused at the limit, naming it.
    tk.kernel.set_namespace_limit(A, 2).unwrap();
    tk.kernel.set_namespace_limit(A_CHILD, 100).unwrap();
    tk.kernel
        .reserve_record(A_CHILD, ObjectKind::Map)
        .unwrap()
        .unwrap();
    assert_eq!(tk.kernel.namespace_quota(A_CHILD).unwrap().used, 1);
    assert_eq!(tk.kernel.namespace_quota(A).unwrap().used, 1);
    tk.kernel
        .reserve_record(A, ObjectKind::Map)
        .unwrap()
        .unwrap();
    assert_eq!(
        tk.kernel.reserve_record(A_CHILD, ObjectKind::Map).unwrap(),
        Err(QuotaRefusal::Over {
            ns: A,
            used: 2,
            limit: 2
        })
    );
    assert_eq!(
        tk.kernel.namespace_quota(A_CHILD).unwrap().used,
        1,
        "given back"
    );
    // The kernel side sees bpfnsd's reservations: A is full for its tasks too.
    let (h, got) = create_many(&tk, A, "map", 1);
    if lsm {
        assert_eq!(got, Some((0, 122)), "EDQUOT");
    } else {
        assert_eq!(got, None);
        assert!(killed(h.finish()));
    }
    tk.kernel.release_record(A_CHILD, ObjectKind::Map).unwrap();
    tk.kernel.release_record(A, ObjectKind::Map).unwrap();
    assert_eq!(tk.kernel.namespace_quota(A).unwrap().used, 0);
    assert_eq!(tk.kernel.namespace_quota(A_CHILD).unwrap().used, 0);
    for ns in [NO_LIMIT, ORPHAN] {
        tk.kernel.remove_namespace(ns).unwrap();
    }
}

/// Deleting a namespace moves its records to the parent, which counted them already; the
/// child's counters go. A daemon that lost count (crash between dropping a record and counting
/// it, an upgrade from a kernel side without counters) resynchronises from the records.
#[test]
fn quota_counters_survive_deletion_and_resynchronise() {
    require_kernel!();
    let tk = with_tree("quota-sync");
    tk.kernel.set_namespace_limit(A, 100).unwrap();
    tk.kernel.set_namespace_limit(A_CHILD, 10).unwrap();
    let (holder, got) = create_many(&tk, A_CHILD, "map", 3);
    assert_eq!(got, Some((3, 0)));
    assert_eq!(tk.kernel.namespace_quota(A).unwrap().used, 3);
    assert_eq!(tk.kernel.reassign(A_CHILD, A).unwrap(), 3);
    tk.kernel.remove_namespace(A_CHILD).unwrap();
    assert_eq!(tk.kernel.namespace_quota(A).unwrap().used, 3);
    let gone = tk.kernel.namespace_quota(A_CHILD).unwrap();
    assert_eq!((gone.limit, gone.created), (None, 0), "{gone:?}");

    // Lose count both ways: a record dropped behind the counters' back, and one written
    // behind them (as after an upgrade).
    let recs: Vec<_> = tk
        .kernel
        .ownership_records()
        .unwrap()
        .into_iter()
        .filter(|r| r.2 == A)
        .collect();
    tk.kernel
        .set_owner(recs[0].0, recs[0].1, NsId::ROOT)
        .unwrap();
    let (_root_map, id) = create_in(&tk, None, "map", None);
    tk.kernel.set_owner(ObjectKind::Map, id, A).unwrap();
    tk.kernel
        .set_owner(ObjectKind::Map, id + 1_000_000, B)
        .unwrap();
    assert_eq!(tk.kernel.namespace_quota(A).unwrap().used, 3);
    let fixed = tk.kernel.sync_quota_counters().unwrap();
    assert!(fixed.contains(&B), "{fixed:?}");
    assert_eq!(
        tk.kernel.namespace_quota(A).unwrap().used,
        3,
        "2 live + 1 written"
    );
    assert_eq!(tk.kernel.namespace_quota(B).unwrap().used, 1);
    assert!(
        tk.kernel.sync_quota_counters().unwrap().is_empty(),
        "idempotent"
    );
    tk.kernel
        .set_owner(ObjectKind::Map, id + 1_000_000, NsId::ROOT)
        .unwrap();
    drop(holder);
}

/// Where the namespace's policy denies tracing, no program is loaded with perfmon power (any
/// program type could then read kernel memory): the loader's CAP_PERFMON or CAP_SYS_ADMIN in
/// the initial user namespace, or either in a BPF token's user namespace.
#[test]
fn programs_loaded_with_perfmon_power_need_the_tracing_policy() {
    require_kernel!();
    let tk = with_tree("perfmon");
    let lsm = lsm::has_program(&tk.layout, "lsm_bpf");
    let before = reason_count(&tk, "stopped_perfmon");
    // Host root (CAP_SYS_ADMIN, CAP_PERFMON) in B, which denies tracing.
    let mut h = Helper::spawn(&["create-perfmon", "prog"]);
    tk.kernel.tag_process(h.pid, B).unwrap();
    h.go();
    assert_eq!(
        h.maybe("id"),
        None,
        "a program loaded with perfmon power in B"
    );
    let status = h.finish();
    if lsm {
        assert_eq!(status.code(), Some(2), "refused with EPERM: {status}");
        assert!(reason_count(&tk, "refused_perfmon") >= 1);
    } else {
        assert!(killed(status), "{status}");
        assert_eq!(reason_count(&tk, "stopped_perfmon"), before + 1);
    }
    // Without perfmon power: fine.
    let (_p, id) = create_in(&tk, Some(B), "prog", None);
    assert_eq!(tk.kernel.owner(ObjectKind::Prog, id).unwrap(), B);
    // Where the policy allows tracing, and for root tasks: fine with it.
    tk.kernel
        .set_namespace_policy(A, NsId::ROOT, 1, true)
        .unwrap();
    for ns in [Some(A), None] {
        let mut h = Helper::spawn(&["create-perfmon", "prog"]);
        if let Some(ns) = ns {
            tk.kernel.tag_process(h.pid, ns).unwrap();
        }
        h.go();
        assert!(h.maybe("id").is_some(), "{ns:?}");
        drop(h);
    }
    // Through a BPF token: root of the token's user namespace has perfmon power there.
    for (drop_caps, expect_ok) in [(false, false), (true, true)] {
        let mut args = vec!["rt-as", "token", "prog-token"];
        if drop_caps {
            args.push("drop");
        }
        let mut h = Helper::spawn(&args);
        tk.kernel.tag_process(h.pid, B).unwrap();
        h.go();
        let token = h.expect("token");
        if token.starts_with("error") {
            bpfns_tests::skip(format!("BPF token: {token}"));
            return;
        }
        let mut id = None;
        let mut errno = None;
        while let Some(l) = h.line() {
            if let Some(v) = l.strip_prefix("id=") {
                id = Some(v.to_string());
            }
            if let Some(v) = l.strip_prefix("errno=") {
                errno = Some(v.to_string());
            }
        }
        let status = h.finish();
        if expect_ok {
            assert!(
                id.is_some(),
                "token, CAP_PERFMON dropped: {errno:?} {status}"
            );
        } else if lsm {
            assert_eq!(errno.as_deref(), Some("1"), "token: refused with EPERM");
        } else {
            assert!(id.is_none() && !status.success(), "token: {status}");
        }
        eprintln!(
            "perfmon: token, caps {}: id {id:?} errno {errno:?} {status}",
            if drop_caps { "dropped" } else { "kept" }
        );
    }
}

/// A program whose loader the backstop stops (here: perfmon power where tracing is denied,
/// and a type flipped to syscall while the call runs) may have been pinned by another thread
/// before the kill landed: it is quarantined — no namespace sees it, the root does — and
/// still counted in its namespace's quota until it is freed.
#[test]
fn stopped_loaders_programs_are_quarantined() {
    require_kernel!();
    let tk = with_tree("quarantine");
    if lsm::has_program(&tk.layout, "lsm_bpf") {
        bpfns_tests::skip("the BPF LSM layer refuses these loads before any fd exists");
        return;
    }
    tk.kernel.set_namespace_limit(B, 1000).unwrap();
    let pin = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/bpfns-test-pinned-by-a-racer-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&pin);
    let before = tk.kernel.namespace_quota(B).unwrap().used;
    for _ in 0..300 {
        let mut h = Helper::spawn(&["rt-flip-load", &pin.to_string_lossy(), "syscall"]);
        tk.kernel.tag_process(h.pid, B).unwrap();
        h.go();
        let st = h.finish();
        if !pin.exists() {
            continue;
        }
        assert!(killed(st), "host root loads with perfmon power in B: {st}");
        let fd = sysbpf::obj_get(&pin).unwrap();
        let id = sysbpf::info::<sysbpf::bpf_prog_info>(&fd).unwrap().id;
        assert_eq!(
            tk.kernel.owner(ObjectKind::Prog, id).unwrap(),
            NsId::QUARANTINE
        );
        let listed = tk.kernel.list(ObjectKind::Prog).unwrap();
        assert!(listed
            .iter()
            .any(|o| o.id == id && o.owner == NsId::QUARANTINE));
        // Still B's to pay for, until it is freed.
        assert!(tk.kernel.namespace_quota(B).unwrap().used > before);
        std::fs::remove_file(&pin).unwrap();
        drop(fd);
        let deadline = Instant::now() + Duration::from_secs(30);
        while tk.kernel.namespace_quota(B).unwrap().used != before {
            tk.kernel.collect_garbage().unwrap();
            assert!(
                Instant::now() < deadline,
                "the quarantined record's count stays"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        return;
    }
    let _ = std::fs::remove_file(&pin);
    bpfns_tests::skip("the pinning thread never won the race in 300 attempts");
}

/// A pinned ownership map of an older version (preallocated, 1 << 18 entries) is carried
/// over into the new definition with its records; records the old programs write between
/// the copy and their replacement are copied again.
#[test]
fn an_older_ownership_map_is_migrated_with_its_records() {
    require_kernel!();
    use bpfns_kernel::migrate;
    use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
    let layout = bpfns_kernel::PinLayout::new(format!(
        "/sys/fs/bpf/bpfns-test-migrate-{}",
        std::process::id()
    ));
    let _ = loader::unload(&layout);
    std::fs::create_dir_all(layout.maps_dir()).unwrap();
    let old_def = |name: &str| {
        let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        MapHandle::create(MapType::Hash, Some(name), 8, 8, 1 << 18, &opts).unwrap()
    };
    let mut old = old_def("obj_owner");
    let rec = |kind: ObjectKind, id: u32, ns: NsId| {
        (
            bpfns_kernel::abi::obj_key(kind, id),
            bpfns_kernel::abi::obj_owner(ns),
        )
    };
    let (k1, v1) = rec(ObjectKind::Map, 4_000_001, A);
    old.update(&k1, &v1, MapFlags::ANY).unwrap();
    old.pin(layout.map("obj_owner")).unwrap();

    // The steps the loader takes, with an old program's write in between.
    let want = migrate::Want {
        name: "obj_owner",
        max_entries: bpfns_kernel::abi::OWNERSHIP_CAPACITY,
        map_flags: migrate::BPF_F_NO_PREALLOC,
    };
    let m = migrate::begin(&layout.map("obj_owner"), want)
        .unwrap()
        .expect("a migration");
    let (k2, v2) = rec(ObjectKind::Btf, 4_000_002, B);
    old.update(&k2, &v2, MapFlags::ANY).unwrap();
    assert_eq!(m.finish().unwrap(), 2);
    let new = MapHandle::from_pinned_path(layout.map("obj_owner")).unwrap();
    let info = new.info().unwrap().info;
    assert_eq!(
        (info.max_entries, info.map_flags),
        (1 << 20, migrate::BPF_F_NO_PREALLOC)
    );
    assert_eq!(new.lookup(&k2, MapFlags::ANY).unwrap(), Some(v2.to_vec()));
    assert!(migrate::begin(&layout.map("obj_owner"), want)
        .unwrap()
        .is_none());

    // The whole load over an older pinned map.
    let _ = loader::unload(&layout);
    std::fs::create_dir_all(layout.maps_dir()).unwrap();
    let mut old = old_def("obj_owner");
    old.update(&k1, &v1, MapFlags::ANY).unwrap();
    old.pin(layout.map("obj_owner")).unwrap();
    drop(old);
    let guard = TestKernelAt(layout.clone());
    loader::load(&layout).unwrap();
    let k = bpfns_kernel::Kernel::open(&layout).unwrap();
    assert_eq!(k.owner(ObjectKind::Map, 4_000_001).unwrap(), A);
    let new = MapHandle::from_pinned_path(layout.map("obj_owner")).unwrap();
    assert_eq!(new.info().unwrap().info.max_entries, 1 << 20);
    drop(guard);
}

/// Unloads a kernel side pinned at a custom root when dropped.
struct TestKernelAt(bpfns_kernel::PinLayout);

impl Drop for TestKernelAt {
    fn drop(&mut self) {
        let _ = loader::unload(&self.0);
    }
}

/// Reading the ownership table returns every record: it is read in batches of whole hash
/// buckets, which may hold fewer records than asked for without being the last.
#[test]
fn every_ownership_record_is_read() {
    require_kernel!();
    let tk = with_tree("read-all");
    let n = 30_000u32;
    for i in 0..n {
        tk.kernel
            .set_owner(ObjectKind::Btf, 3_500_000_000 + i, B)
            .unwrap();
    }
    let mine = tk
        .kernel
        .ownership_records()
        .unwrap()
        .into_iter()
        .filter(|r| r.2 == B && r.1 >= 3_500_000_000)
        .count();
    assert_eq!(mine, n as usize);
    assert!(tk.kernel.collect_garbage().unwrap() >= n as usize);
}

/// Counting and collection stay exact with many records (200,000 of objects that do not
/// exist, as an attacker filling its quotas would leave); the times are printed for the
/// curious (`--nocapture`), never asserted (docs/benchmarks.md has the figures).
#[test]
fn collection_over_200000_records() {
    require_kernel!();
    let tk = with_tree("gc-timing");
    tk.kernel.set_namespace_limit(A, 1 << 20).unwrap();
    let n = 200_000u32;
    let t = Instant::now();
    for i in 0..n {
        tk.kernel
            .set_owner(ObjectKind::Map, 3_000_000_000 + i, A)
            .unwrap();
    }
    eprintln!("wrote {n} records in {:?}", t.elapsed());
    let t = Instant::now();
    let recs = tk.kernel.ownership_records().unwrap();
    eprintln!("read {} records in {:?}", recs.len(), t.elapsed());
    let t = Instant::now();
    let fixed = tk.kernel.sync_quota_counters().unwrap();
    eprintln!("resynchronised counters ({fixed:?}) in {:?}", t.elapsed());
    assert_eq!(tk.kernel.namespace_quota(A).unwrap().used, u64::from(n));
    let t = Instant::now();
    let dropped = tk.kernel.collect_garbage().unwrap();
    eprintln!("collected {dropped} records in {:?}", t.elapsed());
    assert!(dropped >= n as usize);
    assert_eq!(tk.kernel.namespace_quota(A).unwrap().used, 0);
}

/// The listing iterators' records carry what `BPF_OBJ_GET_INFO_BY_FD` says of each map and
/// program (the records' layout is the BPF object's and the reader's alike).
#[test]
fn listing_records_carry_what_get_info_says() {
    require_kernel!();
    let tk = with_tree("record-details");
    let (_hm, map) = create_in(&tk, Some(A), "map", None);
    let (_hp, prog) = create_in(&tk, Some(A), "prog", None);
    let maps = tk.kernel.list(ObjectKind::Map).unwrap();
    // This instance's own maps (a hash, task storage, a ring buffer...) and the helper's.
    let own: Vec<u32> = tk
        .kernel
        .program_ids()
        .unwrap()
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    let mut checked = 0;
    for o in maps
        .iter()
        .filter(|o| o.id == map || o.name == "obj_owner" || o.name == "violations")
    {
        let Ok(fd) = sysbpf::fd_by_id(ObjectKind::Map, o.id) else {
            continue; // freed meanwhile
        };
        let info: sysbpf::bpf_map_info = sysbpf::info(&fd).unwrap();
        let bpfns_kernel::Details::Map(d) = &o.details else {
            panic!("map {} without details: {o:?}", o.id);
        };
        assert_eq!(
            (
                d.key_size,
                d.value_size,
                d.max_entries,
                d.map_flags,
                d.btf_id
            ),
            (
                info.key_size,
                info.value_size,
                info.max_entries,
                info.map_flags,
                info.btf_id
            ),
            "map {}",
            o.id
        );
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} maps checked");
    let progs = tk.kernel.list(ObjectKind::Prog).unwrap();
    for id in own.iter().copied().chain([prog]) {
        let o = progs
            .iter()
            .find(|o| o.id == id)
            .unwrap_or_else(|| panic!("prog {id} listed"));
        let fd = sysbpf::fd_by_id(ObjectKind::Prog, id).unwrap();
        let info: sysbpf::bpf_prog_info = sysbpf::info(&fd).unwrap();
        let bpfns_kernel::Details::Prog(d) = &o.details else {
            panic!("prog {id} without details: {o:?}");
        };
        assert_eq!(d.tag, info.tag, "prog {id}");
        assert_eq!(
            (d.xlated_len, d.jited_len, d.uid, d.btf_id, d.load_time_ns),
            (
                info.xlated_prog_len,
                info.jited_prog_len,
                info.created_by_uid,
                info.btf_id,
                info.load_time
            ),
            "prog {id}"
        );
        assert_eq!(d.nr_map_ids, info.nr_map_ids, "prog {id}");
        let all = sysbpf::prog_map_ids(&fd).unwrap();
        assert_eq!(
            d.map_ids,
            all[..all.len().min(d.map_ids.len())],
            "prog {id}"
        );
        assert!(d.map_ids_complete() || all.len() > bpfns_kernel::abi::PROG_MAP_IDS);
    }
    // Programs using maps are among them (the kernel side's own).
    assert!(progs
        .iter()
        .filter(|o| own.contains(&o.id))
        .any(|o| matches!(&o.details, bpfns_kernel::Details::Prog(d) if !d.map_ids.is_empty())));
}

/// The flags of a process's tag (`None`: untagged).
fn tag_of(tk: &TestKernel, pid: i32) -> Option<bpfns_kernel::abi::TaskTag> {
    let fd = open_pidfd(pid).unwrap();
    tk.kernel.task_tag(fd.as_fd()).unwrap()
}

/// Wait until helper `pid` waits for its go byte (in `read`): its exec is over, so the kernel
/// side's exec hook (which clears the runtime mark) has run for it.
fn wait_for_go(pid: i32) {
    for _ in 0..500 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        if s.starts_with("0 ") {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("helper {pid} never waited for its go byte");
}

fn tag_runtime(tk: &TestKernel, pid: i32, ns: NsId) {
    wait_for_go(pid);
    let fd = open_pidfd(pid).unwrap();
    tk.kernel
        .tag_with(
            fd.as_fd(),
            bpfns_kernel::abi::TaskTag::with_flags(ns, bpfns_kernel::abi::TASK_RUNTIME),
        )
        .unwrap();
}

#[test]
fn runtime_code_may_share_its_fd_table_until_it_execs() {
    require_kernel!();
    let tk = with_tree("runtime-flag");
    // A container's init before its exec (how crun hands its seccomp listener on).
    let mut h = Helper::spawn(&["clone-files"]);
    tag_runtime(&tk, h.pid, A);
    h.go();
    assert_eq!(h.expect("child"), "exited:0");
    assert!(h.finish().success());
    // After its exec the program it runs is the container's: the rule holds again.
    let mut h = Helper::spawn(&["exec", "clone-files"]);
    tag_runtime(&tk, h.pid, A);
    h.go();
    assert_eq!(h.expect("child"), "signaled:9");
    assert!(h.finish().success());
    // The exec clears the flag and keeps the namespace.
    let mut h = Helper::spawn(&["exec", "hold", "after-exec"]);
    tag_runtime(&tk, h.pid, A);
    h.go();
    h.expect("after-exec");
    assert_eq!(
        tag_of(&tk, h.pid),
        Some(bpfns_kernel::abi::TaskTag::new(A)),
        "exec clears the runtime flag"
    );
    h.finish();
    // A member without the flag (bpfns exec, enter): its CLONE_FILES child is stopped.
    let mut h = Helper::spawn(&["clone-files"]);
    tk.kernel.tag_process(h.pid, B).unwrap();
    h.go();
    assert_eq!(h.expect("child"), "signaled:9");
    h.finish();
}

/// A cgroup of its own for a test, in one hierarchy, removed on drop (its processes moved back
/// to the hierarchy's root first).
struct TestCgroup {
    hierarchy: u32,
    dir: std::path::PathBuf,
    root: std::path::PathBuf,
}

impl TestCgroup {
    /// In the cgroup v2 hierarchy (`v2`) or the v1 hierarchy of the `pids` controller; `None`
    /// when this machine has no such hierarchy mounted.
    fn new(name: &str, v2: bool) -> Option<Self> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let lines =
            bpfns_sys::procfs::cgroup_lines(&std::fs::read_to_string("/proc/self/cgroup").unwrap());
        let line = lines.into_iter().find(|l| {
            if v2 {
                l.hierarchy == 0
            } else {
                l.hierarchy != 0 && l.controllers.split(',').any(|c| c == "pids")
            }
        })?;
        let here = bpfns_sys::procfs::cgroup_dir(&mountinfo, &line)?;
        // The hierarchy's root: where our own cgroup's path ends.
        let mut root = here.clone();
        for _ in std::path::Path::new(&line.path)
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
        {
            root.pop();
        }
        let dir = root.join(format!("bpfns-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).ok()?;
        Some(Self {
            hierarchy: line.hierarchy,
            dir,
            root,
        })
    }

    fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.dir).unwrap().ino()
    }

    fn attach(&self, pid: i32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for p in procs.lines() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), p);
            }
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: could not remove {}", self.dir.display());
    }
}

fn cgroup_tagging_in(tk: &TestKernel, cg: &TestCgroup) {
    use bpfns_kernel::abi::{TaskTag, TASK_RUNTIME};
    let what = format!("hierarchy {} ({})", cg.hierarchy, cg.dir.display());
    assert_eq!(
        tk.kernel.bind_cgroup(cg.hierarchy, cg.id(), A).unwrap(),
        None
    );
    assert_eq!(
        tk.kernel.bind_cgroup(cg.hierarchy, cg.id(), B).unwrap(),
        Some(A),
        "a bound cgroup is not taken over"
    );
    // Bindings are state: a reload keeps them.
    loader::load(&tk.layout).unwrap();
    assert_eq!(
        tk.kernel.cgroup_binding(cg.hierarchy, cg.id()).unwrap(),
        Some(A),
        "{what}: reloaded"
    );
    // An untagged process attached to it is tagged, as runtime code until it execs.
    let h = Helper::spawn(&["hold"]);
    wait_for_go(h.pid);
    cg.attach(h.pid);
    assert_eq!(
        tag_of(tk, h.pid),
        Some(TaskTag::with_flags(A, TASK_RUNTIME)),
        "{what}"
    );
    // ... and what it then starts, and runs after its exec, is in it.
    drop(h);
    let mut h = Helper::spawn(&["exec", "tree"]);
    cg.attach(h.pid);
    h.go();
    let child: i32 = h.expect("child").parse().unwrap();
    assert_eq!(
        tag_of(tk, h.pid),
        Some(TaskTag::new(A)),
        "{what}: after exec"
    );
    assert_eq!(ns_of(tk, child), A, "{what}: child");
    h.finish();
    // A task of another namespace is not moved.
    let mut h = Helper::spawn(&["hold"]);
    tk.kernel.tag_process(h.pid, B).unwrap();
    cg.attach(h.pid);
    assert_eq!(ns_of(tk, h.pid), B, "{what}: moved out of its namespace");
    h.go();
    drop(h);
    // A thread that existed when its process was moved takes the process's namespace at its
    // next call: the map it creates is the namespace's.
    let mut h = Helper::spawn(&["thread-create", "map"]);
    h.go();
    let tid: i32 = h.expect("tid").parse().unwrap();
    cg.attach(h.pid);
    h.go();
    let Some(id) = h.maybe("id") else {
        panic!(
            "{what}: the thread created nothing: {:?}, stats {:?}",
            h.finish(),
            tk.kernel.all_stats()
        );
    };
    let id: u32 = id.parse().unwrap();
    assert_eq!(tk.kernel.owner(ObjectKind::Map, id).unwrap(), A, "{what}");
    assert_eq!(ns_of_thread(tk, tid), A, "{what}: thread");
    drop(h);
    // An untagged process that was in the cgroup before it was bound is tagged at its exec.
    assert_eq!(tk.kernel.unbind_cgroups(A).unwrap(), 1);
    let mut h = Helper::spawn(&["exec", "hold", "after-exec"]);
    cg.attach(h.pid);
    assert_eq!(tag_of(tk, h.pid), None, "{what}: unbound");
    assert_eq!(
        tk.kernel.bind_cgroup(cg.hierarchy, cg.id(), A).unwrap(),
        None
    );
    h.go();
    h.expect("after-exec");
    assert_eq!(tag_of(tk, h.pid), Some(TaskTag::new(A)), "{what}: exec");
    drop(h);
    // Unbound (the namespace was deleted): nothing is tagged any more.
    tk.kernel.remove_namespace(A).unwrap();
    assert_eq!(
        tk.kernel.cgroup_binding(cg.hierarchy, cg.id()).unwrap(),
        None
    );
    let h = Helper::spawn(&["hold"]);
    cg.attach(h.pid);
    assert_eq!(tag_of(tk, h.pid), None, "{what}: after the namespace went");
    drop(h);
}

#[test]
fn tasks_attached_to_a_bound_cgroup_join_its_namespace() {
    require_kernel!();
    let mut tried = 0;
    for v2 in [true, false] {
        let Some(cg) = TestCgroup::new(if v2 { "cg2" } else { "cg1" }, v2) else {
            eprintln!(
                "no {} hierarchy here",
                if v2 { "cgroup v2" } else { "v1 pids" }
            );
            continue;
        };
        let tk = with_tree(if v2 { "cgroup-v2" } else { "cgroup-v1" });
        cgroup_tagging_in(&tk, &cg);
        tried += 1;
    }
    assert!(tried > 0, "no cgroup hierarchy found to test");
}

/// The programs the host's links run now, among `ids`.
fn attached_among(ids: &[u32]) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for id in sysbpf::all_ids(ObjectKind::Link).unwrap() {
        // Links come and go meanwhile.
        let Ok(fd) = sysbpf::fd_by_id(ObjectKind::Link, id) else {
            continue;
        };
        if let Ok(info) = sysbpf::info::<sysbpf::bpf_link_info>(&fd) {
            if ids.contains(&info.prog_id) {
                out.insert(info.prog_id);
            }
        }
    }
    out
}

/// The syscall hooks' program ids: (on_sys_exit, on_fork).
fn hook_prog_ids(tk: &TestKernel) -> Vec<u32> {
    tk.kernel
        .program_ids()
        .unwrap()
        .into_iter()
        .filter(|(n, _)| bpfns_kernel::layout::ON_DEMAND.contains(n))
        .map(|(_, id)| id)
        .collect()
}

/// Whether the syscall hooks are attached, by the kernel side's own account and by the host's
/// links (the two must agree).
fn hooks_on(tk: &TestKernel) -> bool {
    let ids = hook_prog_ids(tk);
    let own = tk.kernel.hooks_attached();
    let links = attached_among(&ids);
    assert_eq!(
        own.len(),
        links.len(),
        "pins {own:?}, links to {links:?} of {ids:?}"
    );
    assert!(
        own.is_empty() || own.len() == 2,
        "one hook without the other: {own:?}"
    );
    !own.is_empty()
}

/// Relax until the hooks are detached (a task just reaped may still be listed a moment).
fn relaxed(tk: &TestKernel) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if tk.kernel.relax_hooks().unwrap() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `on_sys_exit` and `on_fork` run on every syscall and fork of the host: they are attached
/// only while some task is tagged (or some cgroup bound), before the first tag is written, and
/// detached once the last member is gone; records and tags stay in the maps meanwhile.
#[test]
fn syscall_hooks_are_attached_only_while_needed() {
    require_kernel!();
    let tk = with_tree("hooks");
    assert!(!hooks_on(&tk), "attached with no member");
    assert!(tk.kernel.relax_hooks().unwrap());

    // The first member: attached before its tag, and what it creates is recorded.
    let pin = TempPin::new("hooks");
    let (h, id) = create_in(&tk, Some(A), "map", Some(&pin));
    assert!(hooks_on(&tk));
    assert_eq!(tk.kernel.owner(ObjectKind::Map, id).unwrap(), A);
    // Its child is a member too (on_fork ran).
    let mut tree = Helper::spawn(&["tree"]);
    tk.kernel.tag_process(tree.pid, B).unwrap();
    tree.go();
    let child: i32 = tree.expect("child").parse().unwrap();
    assert_eq!(ns_of(&tk, child), B);
    tree.finish();
    // Not detached while a member lives.
    assert!(!tk.kernel.relax_hooks().unwrap());
    assert!(hooks_on(&tk));

    // The last member gone: detached; its map (pinned) keeps its owner.
    h.finish();
    assert!(relaxed(&tk), "still needed: {:?}", tk.kernel.tagged_tasks());
    assert!(!hooks_on(&tk));
    assert_eq!(tk.kernel.owner(ObjectKind::Map, id).unwrap(), A);
    // An untagged task creating now is not watched, and nothing is recorded for it.
    let (_u, uid) = create_in(&tk, None, "map", None);
    assert_eq!(tk.kernel.owner(ObjectKind::Map, uid).unwrap(), NsId::ROOT);
    assert!(!hooks_on(&tk));

    // The next member attaches them again; the backstop works again.
    let id_s = id.to_string();
    assert!(!try_open(&tk, Some(B), &["open", "map", &id_s]));
    assert!(try_open(&tk, Some(A), &["open", "map", &id_s]));
    assert!(relaxed(&tk));

    // A bound cgroup keeps them attached (the kernel tags the tasks that enter it).
    tk.kernel.bind_cgroup(0, 0xb9f5_0001, A).unwrap();
    assert!(hooks_on(&tk));
    assert!(!tk.kernel.relax_hooks().unwrap());
    assert_eq!(tk.kernel.unbind_cgroups(A).unwrap(), 1);
    assert!(relaxed(&tk));
    assert!(!hooks_on(&tk));
}

/// A deletion drops its namespace's cgroup bindings before its last look for members, and
/// puts back what it dropped if it goes no further: the dropped ones are listed, exactly.
#[test]
fn the_cgroup_bindings_a_deletion_drops_are_listed_and_can_be_put_back() {
    require_kernel!();
    let tk = with_tree("unbind-listed");
    tk.kernel.bind_cgroup(0, 0xb9f5_0002, A).unwrap();
    tk.kernel.bind_cgroup(1, 0xb9f5_0003, A).unwrap();
    tk.kernel.bind_cgroup(0, 0xb9f5_0004, B).unwrap();
    let mut dropped = tk.kernel.unbind_cgroups_listed(A).unwrap();
    dropped.sort_unstable();
    assert_eq!(dropped, [(0, 0xb9f5_0002), (1, 0xb9f5_0003)]);
    assert_eq!(tk.kernel.cgroup_binding(0, 0xb9f5_0002).unwrap(), None);
    assert_eq!(tk.kernel.cgroup_binding(1, 0xb9f5_0003).unwrap(), None);
    assert_eq!(tk.kernel.cgroup_binding(0, 0xb9f5_0004).unwrap(), Some(B));
    for (h, id) in dropped {
        assert_eq!(tk.kernel.bind_cgroup(h, id, A).unwrap(), None);
    }
    assert_eq!(tk.kernel.cgroup_binding(0, 0xb9f5_0002).unwrap(), Some(A));
    assert_eq!(tk.kernel.cgroup_binding(1, 0xb9f5_0003).unwrap(), Some(A));
    assert_eq!(tk.kernel.unbind_cgroups(A).unwrap(), 2);
    assert_eq!(tk.kernel.unbind_cgroups(B).unwrap(), 1);
}

/// A process in a pid namespace of its own sees only that namespace's tasks through the task
/// iterator: it never detaches the hooks, whatever it sees (here: no member at all).
#[test]
fn a_pid_namespace_never_detaches_the_hooks() {
    require_kernel!();
    let tk = with_tree("hooks-pidns");
    assert!(bpfns_kernel::hooks::sees_every_task());
    let (h, _) = create_in(&tk, Some(A), "map", None);
    assert!(hooks_on(&tk));
    let root = tk.layout.root().to_string_lossy().into_owned();
    let out = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .arg(bpfns_tests::helper_path())
        .args(["relax-hooks", &root])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("detached=0"), "{stdout}");
    assert!(
        hooks_on(&tk),
        "detached from a pid namespace under a live member"
    );
    // From the initial pid namespace, once the member is gone: detached.
    h.finish();
    assert!(relaxed(&tk));
}

/// A load (bpfnsd restarting) with members alive keeps or puts the hooks on the new programs;
/// so does one with namespaces and no member found (a walk of the tasks can miss a member
/// that execs in a loop: the namespace table is what a load trusts).
#[test]
fn a_reload_with_live_members_attaches_the_hooks() {
    require_kernel!();
    let tk = with_tree("hooks-reload");
    loader::load(&tk.layout).unwrap();
    assert!(hooks_on(&tk), "a load with namespaces left them off");
    let lock = bpfns_kernel::hooks::HookLock::take(&tk.layout).unwrap();
    bpfns_kernel::hooks::detach_locked(&tk.layout, &lock).unwrap();
    drop(lock);

    let mut holder = Helper::spawn(&["tree"]);
    tk.kernel.tag_process(holder.pid, A).unwrap();
    holder.go();
    holder.expect("grandchild");
    assert!(hooks_on(&tk));
    // Attached: a reload moves them to the new programs.
    let before = hook_prog_ids(&tk);
    loader::load(&tk.layout).unwrap();
    let after = hook_prog_ids(&tk);
    assert!(
        before.iter().all(|b| !after.contains(b)),
        "{before:?} {after:?}"
    );
    assert!(hooks_on(&tk));
    assert_eq!(
        attached_among(&before),
        BTreeSet::new(),
        "old programs still attached"
    );
    // Detached behind its back (as by a kernel side whose links were removed): the load
    // attaches them, for the member that is alive.
    let lock = bpfns_kernel::hooks::HookLock::take(&tk.layout).unwrap();
    bpfns_kernel::hooks::detach_locked(&tk.layout, &lock).unwrap();
    drop(lock);
    assert!(!hooks_on(&tk));
    loader::load(&tk.layout).unwrap();
    assert!(hooks_on(&tk));
    let (_m, id) = create_in(&tk, Some(A), "map", None);
    assert_eq!(tk.kernel.owner(ObjectKind::Map, id).unwrap(), A);
    assert_eq!(ns_of(&tk, holder.pid), A);
    holder.finish();
}

/// Tagging and detaching race: one thread detaches whenever the kernel side has no member,
/// another makes members one after the other. A member is never left unwatched: once its tag
/// is written the hooks are on, and its objects are recorded.
#[test]
fn a_member_tagged_while_the_hooks_are_detached_is_watched() {
    require_kernel!();
    let tk = with_tree("hooks-race");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let layout = tk.layout.clone();
    let s2 = stop.clone();
    let relaxer = std::thread::spawn(move || {
        // Its own handle: the lock is the pin root's, not the handle's.
        let k = bpfns_kernel::Kernel::open(&layout).unwrap();
        let mut detached = 0u32;
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            if k.relax_hooks().unwrap() {
                detached += 1;
            }
        }
        detached
    });
    let mut rounds = 0;
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        let (h, id) = create_in(&tk, Some(A), "map", None);
        assert!(
            !tk.kernel.hooks_attached().is_empty(),
            "a member without hooks"
        );
        assert_eq!(tk.kernel.owner(ObjectKind::Map, id).unwrap(), A);
        h.finish();
        rounds += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let detached = relaxer.join().unwrap();
    eprintln!("hooks race: {rounds} members, {detached} relaxations found nothing to watch");
    assert!(
        rounds > 5 && detached > 0,
        "{rounds} rounds, {detached} detaches"
    );
}

/// The pin root is root's alone: its flock is the hooks' lock, which anyone who may open the
/// directory could hold to stall every tagging.
#[test]
fn the_pin_root_is_roots_alone() {
    require_kernel!();
    use std::os::unix::fs::PermissionsExt;
    let tk = with_tree("pinroot-mode");
    let mode = std::fs::metadata(tk.layout.root())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
}
