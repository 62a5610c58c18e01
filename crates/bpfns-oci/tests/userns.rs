//! podman `--userns=auto` containers with bpfns-oci, end to end: unprivileged on the host,
//! each container gets its namespace's bpffs made in its own user namespace, delegating what
//! the namespace's policy allows; with a BPF token from it the container creates a map, and
//! through bpfns lists and opens its own objects (the RFC table's first row) and no other's.
//! `bpftoken` (scripts/containers/bpftoken.c, in the test image) makes the raw bpf() calls.

mod common;

use std::path::Path;

use bpfns_model::{ObjectKind, Policy};
use bpfns_tests::{skip, TestDaemon};
use common::podman::{podman_skip_reason, Podman};
use common::text;

/// Why these tests cannot run here, if they cannot.
fn userns_skip_reason() -> Option<String> {
    if let Some(r) = podman_skip_reason() {
        return Some(r);
    }
    let ranges = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    if !ranges.lines().any(|l| l.starts_with("containers:")) {
        return Some(
            "/etc/subuid has no range for `containers` (podman --userns=auto): run \
             scripts/containers/setup.sh as root"
                .into(),
        );
    }
    let listing = std::process::Command::new("tar")
        .args(["-tf", common::ARCHIVE])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !listing.lines().any(|l| l == "./bin/bpftoken") {
        return Some(format!(
            "the test image {} has no bin/bpftoken: run scripts/containers/setup.sh as root",
            common::ARCHIVE
        ));
    }
    if let Err(e) = bpfns_sys::probe::token_create(-1) {
        if e.errno == bpfns_sys::Errno::INVAL {
            return Some("this kernel has no BPF tokens (Linux 6.9+)".into());
        }
    }
    None
}

/// What a container's `ENOSYS` from trapped commands means.
fn receiver_refused(out: &str) -> String {
    format!(
        "bpfnsd did not supervise the container's listener (trapped calls answered ENOSYS: \
         the receiver refused it; one known cause is `runc create` exiting before the receiver \
         read its /proc entry): {out}"
    )
}

/// The value of `key=` in a container's output.
fn value<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn hex(out: &str, key: &str) -> u64 {
    let v = value(out, key).unwrap_or_else(|| panic!("no {key} in: {out}"));
    u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("{key}={v}"))
}

fn userns_containers_use_tokens(runtime: &str) {
    if let Some(why) = userns_skip_reason() {
        skip(why);
        return;
    }
    let d = TestDaemon::start(&format!("userns-{runtime}"));
    let p = Podman::new(&format!("userns-{runtime}"), &d);
    let rt = format!("bpfns-{runtime}");
    let ns = |n: &str| format!("/containers/userns-{runtime}-{n}");
    let ann = |n: &str| format!("io.bpfns.namespace={}", ns(n));
    let (a, b) = (format!("ua_{runtime}"), format!("ub_{runtime}"));
    // Namespaces that exist before their containers outlive them (`--rm`): a's pin is still
    // in a's namespace for the last container below.
    let mut c = d.client();
    for n in ["/containers".to_string(), ns("a"), ns("b"), ns("c")] {
        c.ns_create(&n).expect("ns create");
    }
    // Container a: in a user namespace of its own; without a token it cannot create a map,
    // with one it can, and bpfns answers its listing and opening.
    let out = p.run(
        &rt,
        &["--userns=auto", "--annotation", &ann("a")],
        &format!(
            "cat /proc/self/uid_map; bpftoken notoken; bpftoken create {a}; ls /sys/fs/bpf; \
             cat /sys/fs/bpf/maps.debug || true"
        ),
    );
    let t = text(&out);
    assert!(out.status.success(), "container a: {t}");
    assert!(
        !t.contains("4294967295"),
        "container a is in a user namespace of its own: {t}"
    );
    assert_eq!(value(&t, "notoken"), Some("EPERM"), "no token, no map: {t}");
    assert_eq!(value(&t, "token"), Some("ok"), "{t}");
    assert_eq!(value(&t, "map"), Some("ok"), "{t}");
    assert_eq!(value(&t, "pin"), Some("ok"), "{t}");
    let a_id: u32 = value(&t, "map_id")
        .and_then(|v| v.parse().ok())
        .expect("map_id");
    let ids: Vec<u32> = value(&t, "ids")
        .expect("ids")
        .split(',')
        .filter_map(|v| v.parse().ok())
        .collect();
    assert!(!t.contains("ENOSYS"), "{}", receiver_refused(&t));
    assert_eq!(ids, vec![a_id], "a lists exactly its own map: {t}");
    assert_eq!(value(&t, "own_open"), Some("ok"), "{t}");
    assert!(t.lines().any(|l| l == a), "its pin in its /sys/fs/bpf: {t}");
    assert!(
        t.contains("Permission denied"),
        "maps.debug is covered: {t}"
    );
    // The token delegates what the namespace's policy allows (no tracing), never `any`.
    let want = bpfnsd::daemon::token::delegation(Policy::DEFAULT);
    assert_eq!(hex(&t, "allowed_cmds"), want.cmds, "{t}");
    assert_eq!(hex(&t, "allowed_maps"), want.maps, "{t}");
    assert_eq!(hex(&t, "allowed_progs"), want.progs, "{t}");
    assert_eq!(hex(&t, "allowed_attachs"), want.attachs, "{t}");
    assert_eq!(
        hex(&t, "allowed_progs") & (1 << 2),
        0,
        "no kprobe programs: {t}"
    );

    // The host: the map is a's namespace's, its pin in the namespace's bpffs.
    let maps = d.client().list(ObjectKind::Map).expect("list");
    let m = maps.iter().find(|m| m.id == a_id).expect("a's map");
    assert_eq!(m.namespace, ns("a"), "{maps:?}");
    let info = d.client().ns_show(&ns("a")).expect("ns");
    assert!(
        Path::new(&info.bpffs).join(&a).exists(),
        "the pin is in the namespace's bpffs {}",
        info.bpffs
    );

    // Container b: its own map, neither sees nor opens a's (the token opens nothing more).
    let out = p.run(
        &rt,
        &["--userns=auto", "--annotation", &ann("b")],
        &format!("bpftoken create {b}; bpftoken open {a_id}; ls /sys/fs/bpf"),
    );
    let t = text(&out);
    assert!(out.status.success(), "container b: {t}");
    assert_eq!(value(&t, "map"), Some("ok"), "{t}");
    let b_id: u32 = value(&t, "map_id")
        .and_then(|v| v.parse().ok())
        .expect("map_id");
    let ids = value(&t, "ids").expect("ids");
    assert!(!t.contains("ENOSYS"), "{}", receiver_refused(&t));
    assert_eq!(ids, b_id.to_string(), "b lists only its own map: {t}");
    assert_eq!(
        value(&t, "open"),
        Some("ENOENT"),
        "b opens a's map by id: {t}"
    );
    assert_eq!(
        value(&t, "open_token"),
        Some("ENOENT"),
        "b opens a's map by id with its token: {t}"
    );
    assert!(!t.contains(&a), "b does not see a's pin: {t}");

    // Container c, with CAP_SYS_ADMIN in its user namespace: it cannot make a bpffs that
    // delegates more, nor widen its own.
    let out = p.run(
        &rt,
        &[
            "--userns=auto",
            "--cap-add",
            "SYS_ADMIN",
            "--annotation",
            &ann("c"),
        ],
        "bpftoken widen; bpftoken create uc",
    );
    let t = text(&out);
    assert!(out.status.success(), "container c: {t}");
    assert_eq!(
        value(&t, "fsconfig_mode"),
        Some("ok"),
        "fsconfig is reachable: {t}"
    );
    assert_eq!(value(&t, "widen_new"), Some("EPERM"), "{t}");
    let remount = value(&t, "widen_remount").expect("widen_remount");
    assert_ne!(remount, "ok", "{t}");
    assert_eq!(hex(&t, "allowed_progs"), want.progs, "{t}");

    // A namespace whose policy allows tracing: the token delegates the tracing class too.
    let tracing = Policy::tracing(true);
    let traced = format!("/userns-{runtime}-tracing");
    c.ns_create_with_policy(&traced, tracing).expect("ns");
    c.ns_create_with_policy(&format!("{traced}/t"), tracing)
        .expect("ns");
    let out = p.run(
        &rt,
        &[
            "--userns=auto",
            "--annotation",
            &format!("io.bpfns.namespace={traced}/t"),
        ],
        "bpftoken create ut",
    );
    let t = text(&out);
    assert!(out.status.success(), "container t: {t}");
    let wide = bpfnsd::daemon::token::delegation(tracing);
    assert_eq!(hex(&t, "allowed_progs"), wide.progs, "{t}");
    assert_eq!(hex(&t, "allowed_attachs"), wide.attachs, "{t}");
    assert_ne!(
        hex(&t, "allowed_progs") & (1 << 2),
        0,
        "kprobe programs: {t}"
    );

    // A second user-namespace container in a's namespace: its bpffs holds a's pin, which a
    // bpffs of the new container's user namespace would hide; it runs with the namespace's
    // bpffs as it is (a's pin there), and without a token.
    let out = p.run(
        &rt,
        &["--userns=auto", "--annotation", &ann("a")],
        "ls /sys/fs/bpf; bpftoken create second",
    );
    let t = text(&out);
    assert!(t.lines().any(|l| l == a), "a's pin is kept: {t}");
    assert!(
        value(&t, "token").is_some_and(|v| v.starts_with("error")),
        "no token in a shared namespace: {t}"
    );
    assert_ne!(value(&t, "map"), Some("ok"), "{t}");
}

#[test]
fn userns_on_runc() {
    userns_containers_use_tokens("runc");
}

/// crun starts a user-namespace container's init as its grandchild (the child it cloned into
/// the new user namespace forks the init and exits): bpfnsd knows it by the socket pair it
/// shares with crun (see `started_by_runtime` and docs/containers.md).
#[test]
fn userns_on_crun() {
    userns_containers_use_tokens("crun");
}

/// `container_bpffs` refuses what is not a runtime's fresh container init, and changes
/// nothing then: the namespace keeps its bpffs.
#[test]
fn container_bpffs_refuses_other_processes() {
    if let Some(why) = bpfns_tests::skip_reason() {
        skip(why);
        return;
    }
    let d = TestDaemon::start("userns-refusals");
    let mut c = d.client();
    let info = c.ns_create("/refusals").expect("ns_create");
    let before = std::fs::metadata(&info.bpffs).expect("bpffs");
    let e = c
        .container_bpffs("/refusals", 999_999_999)
        .expect_err("no such process");
    assert!(e.to_string().contains("no process"), "{e}");
    // Our own child: not started by the caller's parent (not a container's init).
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let e = c
        .container_bpffs("/refusals", child.id() as i32)
        .expect_err("not a sibling");
    let _ = child.kill();
    let _ = child.wait();
    assert!(e.to_string().contains("not a container's init"), "{e}");
    // An orphan in a mount namespace of its own, holding a socket pair with this process
    // (not the caller's parent): not what a runtime started.
    let (mine, theirs) = std::os::unix::net::UnixStream::pair().expect("pair");
    let o = Orphan::start(Some(theirs.into()));
    if o.adopted_by_our_parent() {
        skip(ADOPTED);
    } else {
        let e = c
            .container_bpffs("/refusals", o.pid)
            .expect_err("a pair with someone else");
        assert!(e.to_string().contains("not a container's init"), "{e}");
        assert!(e.to_string().contains("socket pair"), "{e}");
    }
    drop((o, mine));
    let e = c
        .container_bpffs("/nowhere", std::process::id() as i32)
        .expect_err("no namespace");
    assert!(e.to_string().contains("no namespace"), "{e}");
    use std::os::unix::fs::MetadataExt;
    let after = std::fs::metadata(&info.bpffs).expect("bpffs");
    assert_eq!(before.dev(), after.dev(), "the namespace keeps its bpffs");
}

/// A `sleep` orphaned in a mount namespace of its own (the shell that started it exits, and
/// the kernel reparents it to a subreaper above this test or to pid 1: an ancestor of this
/// test's parent), holding `hold` (as its stdin) if given. Killed on drop.
struct Orphan {
    pid: i32,
    pidfd: std::os::fd::OwnedFd,
}

impl Orphan {
    fn start(hold: Option<std::os::fd::OwnedFd>) -> Self {
        use std::process::{Command, Stdio};
        let stdin = hold.map_or_else(Stdio::null, Stdio::from);
        // A background job's stdin is /dev/null unless redirected: hand it over on fd 3.
        let out = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("exec 3<&0; sleep 60 <&3 3<&- >/dev/null 2>&1 & echo $!")
            .stdin(stdin)
            .stderr(Stdio::inherit())
            .output()
            .expect("unshare");
        assert!(out.status.success(), "unshare: {}", text(&out));
        let pid: i32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the orphan's pid");
        let pidfd = bpfns_sys::process::open_pidfd(pid).expect("the orphan");
        Orphan { pid, pidfd }
    }
}

/// Why an orphan's refusal by a direct caller is not tried.
const ADOPTED: &str = "the refusal of an orphan holding a socket pair with the caller (this \
     test's parent is a subreaper: it adopted the orphan, which is then its child, as a \
     runtime's init is)";

impl Orphan {
    /// Whether this test's parent adopted it (a subreaper): the orphan is then its child.
    fn adopted_by_our_parent(&self) -> bool {
        let ours = bpfns_sys::procfs::parent_pid(std::process::id() as i32);
        ours.is_some() && bpfns_sys::procfs::parent_pid(self.pid) == ours
    }
}

impl Drop for Orphan {
    fn drop(&mut self) {
        use std::os::fd::AsFd;
        let _ = bpfns_sys::unix::pidfd_kill(self.pidfd.as_fd());
    }
}

/// Run bpfns-oci's `createRuntime` hook for "init" `pid` (this test is then the runtime: the
/// hook's parent); the bundle does not exist, so a hook that got past `enter_container` fails
/// reading it.
fn hook_for(d: &TestDaemon, namespace: &str, pid: i32) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut hook = Command::new(common::wrapper_path())
        .args(["hook", "create-runtime", "--socket"])
        .arg(&d.socket)
        .args(["--namespace", namespace])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bpfns-oci hook");
    let state = format!(r#"{{"id":"runtime-init","pid":{pid},"bundle":"/nonexistent/bpfns"}}"#);
    hook.stdin
        .take()
        .expect("stdin")
        .write_all(state.as_bytes())
        .expect("state");
    let out = hook.wait_with_output().expect("hook");
    assert!(
        !out.status.success(),
        "the hook cannot succeed here: {}",
        text(&out)
    );
    text(&out)
}

/// `enter_container` takes only a process the runtime running the hook started: its child,
/// or (crun's user-namespace init) a process that holds one end of a socket pair whose other
/// end the runtime holds, reparented above it. A process of the host that is neither is
/// refused and stays where it is, whatever else it holds.
#[test]
fn enter_container_refuses_other_processes() {
    if let Some(why) = bpfns_tests::skip_reason() {
        skip(why);
        return;
    }
    if common::which("unshare").is_none() {
        skip("unshare (util-linux) is not installed");
        return;
    }
    let d = TestDaemon::start("runtime-init");
    let mut c = d.client();
    c.ns_create("/rt").expect("ns_create");
    let not_init = |e: &str| e.contains("not a container's init");
    let untagged = |c: &mut bpfns_client::Client, pid: i32| {
        let p = c.ns_identify(pid).expect("identify");
        assert_eq!(p.namespace, "/", "process {pid} stays where it was");
    };
    // This test calls: the process must be a child of this test's parent.
    let mut child = std::process::Command::new("unshare")
        .args(["-m", "sleep", "30"])
        .spawn()
        .expect("sleep");
    let e = c
        .enter_container("/rt", child.id() as i32)
        .expect_err("our own child");
    assert!(not_init(&e.to_string()), "{e}");
    untagged(&mut c, child.id() as i32);
    let _ = child.kill();
    let _ = child.wait();
    let (mine, theirs) = std::os::unix::net::UnixStream::pair().expect("pair");
    let o = Orphan::start(Some(theirs.into()));
    if o.adopted_by_our_parent() {
        skip(ADOPTED);
    } else {
        let e = c
            .enter_container("/rt", o.pid)
            .expect_err("a pair with someone else");
        assert!(
            not_init(&e.to_string()) && e.to_string().contains("socket pair"),
            "{e}"
        );
        untagged(&mut c, o.pid);
    }

    // The hook calls, this test is its runtime. An orphan holding nothing of ours:
    let bare = Orphan::start(None);
    let t = hook_for(&d, "/rt", bare.pid);
    assert!(not_init(&t) && t.contains("socket pair"), "{t}");
    untagged(&mut c, bare.pid);
    // ... one holding our end of a connection to a listening socket of ours (named: not a
    // pair; a runtime's console socket is of that kind) ...
    let dir = std::env::temp_dir().join(format!("bpfns-runtime-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let _remove = RemoveDir(dir.clone());
    let listener = std::os::unix::net::UnixListener::bind(dir.join("s")).expect("bind");
    let client = std::os::unix::net::UnixStream::connect(dir.join("s")).expect("connect");
    let (accepted, _) = listener.accept().expect("accept");
    let connected = Orphan::start(Some(client.into()));
    let t = hook_for(&d, "/rt", connected.pid);
    assert!(not_init(&t) && t.contains("socket pair"), "{t}");
    untagged(&mut c, connected.pid);
    // ... and one holding the other end of a pair with us: what a runtime's init holds,
    // which no other process of the host can come by. It is taken (the hook fails later, at
    // the missing bundle).
    let t = hook_for(&d, "/rt", o.pid);
    assert!(!not_init(&t), "{t}");
    assert!(t.contains("bundle"), "{t}");
    assert_eq!(c.ns_identify(o.pid).expect("identify").namespace, "/rt");
    drop((o, mine, bare, connected, accepted, listener));
}

/// Removes a directory on drop (also when the test fails).
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
