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
        // Other tests create and free objects concurrently: compare against two walks.
        let walk1: BTreeSet<u32> = sysbpf::all_ids(kind).unwrap().into_iter().collect();
        let listed: BTreeSet<u32> = tk.kernel.list(kind).unwrap().iter().map(|o| o.id).collect();
        let walk2: BTreeSet<u32> = sysbpf::all_ids(kind).unwrap().into_iter().collect();
        let stable: BTreeSet<u32> = walk1.intersection(&walk2).copied().collect();
        let any: BTreeSet<u32> = walk1.union(&walk2).copied().collect();
        // A walk also returns dying objects (an unpinned link keeps its id until a deferred
        // work item frees it; tests/listing.rs): what the listing leaves out must be dead.
        let missed: Vec<u32> = stable
            .difference(&listed)
            .copied()
            .filter(|id| sysbpf::fd_by_id(kind, *id).is_ok())
            .collect();
        assert!(missed.is_empty(), "{kind}: listed misses live {missed:?}");
        assert!(
            listed.is_subset(&any),
            "{kind}: listed has extra {:?}",
            listed.difference(&any).collect::<Vec<_>>()
        );
    }
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
        eprintln!("SKIPPED: needs unshare(1) from util-linux");
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
