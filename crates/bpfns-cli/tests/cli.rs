//! Runs the built `bpfns` binary as root against the real kernel, with a private pin root that
//! is unloaded and removed at the end, also when an assertion fails.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bpfns_kernel::layout::{LINKS, MAPS, ON_DEMAND, TASK_ITERATORS};
use bpfns_tests::{Helper, TestDaemon};
use serde_json::Value;

/// The lines a streaming command prints, as they come (read on a thread of their own).
fn lines_of(out: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// The CLI under test (see [`bpfns_tests::cli_path`]).
static BPFNS_PATH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    bpfns_tests::cli_path(env!("CARGO_BIN_EXE_bpfns"))
        .to_string_lossy()
        .into_owned()
});

/// [`BPFNS_PATH`] as a `&str`, for argument lists.
fn bpfns() -> &'static str {
    BPFNS_PATH.as_str()
}

fn skip_reason() -> Option<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !root {
        return Some("needs root (the kernel side is loaded for real): run the suite as root");
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("needs kernel BTF (/sys/kernel/btf/vmlinux)");
    }
    None
}

fn have_bpftool() -> bool {
    Command::new("bpftool")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// util-linux's setpriv (busybox's, first in some PATHs, lacks --bounding-set).
const SETPRIV: &str = "/usr/bin/setpriv";

fn have_setpriv() -> bool {
    Command::new(SETPRIV)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Unloads the test's kernel side and removes its pins on drop.
struct Cleanup {
    pin_root: PathBuf,
    extra_pins: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.extra_pins {
            let _ = std::fs::remove_file(p);
        }
        let _ = Command::new(bpfns())
            .args(["kernel", "unload", "--force", "--pin-root"])
            .arg(&self.pin_root)
            .output();
        let _ = std::fs::remove_dir_all(&self.pin_root);
    }
}

struct Cli {
    pin_root: PathBuf,
}

impl Cli {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bpfns());
        // No daemon answers here: the object commands read this test's pins directly.
        c.env("BPFNS_SOCKET", "/nonexistent/bpfns-clitest.sock");
        c.arg("--pin-root").arg(&self.pin_root).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().expect("running bpfns");
        eprintln!(
            "$ bpfns {}\n{}{}[exit {:?}]",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            out.status.code()
        );
        out
    }

    /// Run, expect success, return stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "bpfns {args:?} failed");
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Run with -j, expect success, parse stdout.
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("-j");
        let s = self.ok(&a);
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("bpfns {a:?}: invalid JSON ({e}): {s}"))
    }

    /// Run, expect failure with `code`, return stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "bpfns {args:?}");
        String::from_utf8(out.stderr).expect("utf-8 stderr")
    }

    fn maps(&self) -> Vec<Value> {
        self.json(&["map", "list"])
            .as_array()
            .expect("map list -j is an array")
            .clone()
    }
}

fn find<'a>(objs: &'a [Value], name: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["name"] == name).collect()
}

#[test]
fn cli_against_the_kernel() {
    if let Some(why) = skip_reason() {
        bpfns_tests::skip(why);
        return;
    }
    let pid = std::process::id();
    let pin_root = PathBuf::from(format!("/sys/fs/bpf/bpfns-clitest-{pid}"));
    let map_pin = PathBuf::from(format!("/sys/fs/bpf/bpfns-clitest-map-{pid}"));
    let _cleanup = Cleanup {
        pin_root: pin_root.clone(),
        extra_pins: vec![map_pin.clone()],
    };
    let cli = Cli {
        pin_root: pin_root.clone(),
    };

    // Not loaded yet: a clear error naming the fix, and a non-zero exit.
    let err = cli.fails(&["map", "list"], 1);
    assert!(err.contains("not loaded"), "{err}");
    assert!(err.contains("bpfns kernel load --pin-root"), "{err}");
    let st = cli.run(&["kernel", "status", "-j"]);
    assert_eq!(st.status.code(), Some(1));
    let st: Value = serde_json::from_slice(&st.stdout).expect("status -j is JSON");
    assert_eq!(st["loaded"], false);
    assert!(st["fix"].as_str().unwrap_or("").contains("kernel load"));

    // Load. The BPF LSM layer comes with it exactly where the kernel runs BPF LSM programs,
    // and load and status say which layers run.
    let load = cli.json(&["kernel", "load"]);
    assert_eq!(load["reused_state"], false);
    assert_eq!(
        load["programs"].as_array().map(Vec::len),
        Some(LINKS.len() + TASK_ITERATORS.len())
    );
    let allowed = bpfns_kernel::lsm::kernel_allows();
    eprintln!("BPF LSM here: {allowed:?}");
    if allowed.is_ok() {
        assert_eq!(load["lsm"]["state"], "active", "{load}");
    } else {
        assert_eq!(load["lsm"]["state"], "unavailable", "{load}");
        assert!(load["lsm"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()));
    }
    let text = cli.ok(&["kernel", "load"]);
    assert!(text.contains("reused"), "{text}");
    assert!(text.contains("BPF LSM layer: "), "{text}");
    let st = cli.json(&["kernel", "status"]);
    let layers: Vec<String> = st["layers"]
        .as_array()
        .expect("status lists the layers")
        .iter()
        .filter_map(|l| l.as_str().map(str::to_string))
        .collect();
    let mut expected = vec!["tracepoint backstop".to_string()];
    if allowed.is_ok() {
        expected.push("BPF LSM".to_string());
    }
    assert_eq!(layers, expected);
    let lsm_links = st["programs"]
        .as_array()
        .expect("programs")
        .iter()
        .filter(|p| p["link"].as_str().is_some_and(|l| l.starts_with("lsm_")))
        .count();
    assert_eq!(lsm_links > 0, allowed.is_ok(), "{st}");
    assert_eq!(
        st["stats"].get("lsm_opens_refused").is_some(),
        allowed.is_ok(),
        "{st}"
    );

    // The kernel side's own maps are listed, owned by the root.
    let maps = cli.maps();
    for name in MAPS {
        let found = find(&maps, name);
        assert!(!found.is_empty(), "map {name} not listed");
        for m in found {
            assert_eq!(m["namespace"], "/", "{m}");
            assert_eq!(m["ns_id"], 0, "{m}");
            assert!(m["id"].as_u64().is_some() && m["type"].is_string(), "{m}");
        }
    }
    let text = cli.ok(&["map", "list"]);
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "ID",
            "TYPE",
            "NAME",
            "KEY",
            "VALUE",
            "MAX_ENTRIES",
            "FLAGS",
            "BTF",
            "NAMESPACE"
        ]
    );
    for kind in ["prog", "link", "btf"] {
        let v = cli.json(&[kind, "list"]);
        assert!(v.is_array(), "{kind} list -j: {v}");
        let pretty = cli.ok(&[kind, "show", "-p"]);
        let p: Value = serde_json::from_str(&pretty).expect("pretty JSON");
        assert!(p.is_array());
    }
    let progs = cli.json(&["prog", "list"]);
    let on_fork = progs
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "on_fork"))
        .expect("on_fork listed");
    assert_eq!(on_fork["namespace"], "/");

    // Namespace table.
    cli.ok(&["kernel", "debug", "ns-set", "7", "--parent", "0"]);
    cli.ok(&["kernel", "debug", "ns-set", "8", "--parent", "0"]);
    let ns = cli.json(&["kernel", "debug", "ns-set", "9", "--parent", "7"]);
    assert_eq!(ns, serde_json::json!({"id": 9, "parent": 7, "depth": 2}));
    let err = cli.fails(&["kernel", "debug", "ns-set", "10", "--parent", "55"], 3);
    assert!(err.contains("not in the kernel's namespace table"), "{err}");
    let err = cli.fails(&["kernel", "debug", "ns-rm", "7"], 5);
    assert!(err.contains("child namespaces"), "{err}");
    cli.ok(&["kernel", "debug", "ns-rm", "9"]);

    // `kernel run`: exit status, the user's stdin, unknown namespaces.
    assert_eq!(
        cli.run(&["kernel", "debug", "run", "7", "--", "sh", "-c", "exit 5"])
            .status
            .code(),
        Some(5)
    );
    let mut child = cli
        .cmd(&[
            "kernel",
            "debug",
            "run",
            "7",
            "--",
            "sh",
            "-c",
            "read x; echo got:$x",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning bpfns kernel run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"hello\n")
        .expect("writing stdin");
    let out = child.wait_with_output().expect("waiting");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got:hello\n");
    // A namespace with a member process cannot be removed.
    let mut member = cli
        .cmd(&[
            "kernel",
            "debug",
            "run",
            "8",
            "--",
            "sh",
            "-c",
            "read x; exit 0",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawning a member");
    let deadline = Instant::now() + Duration::from_secs(20);
    while cli.json(&["kernel", "status"])["tagged_tasks"].as_u64() == Some(0) {
        assert!(Instant::now() < deadline, "the member was never tagged");
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = cli.fails(&["kernel", "debug", "ns-rm", "8"], 5);
    assert!(err.contains("still has member processes"), "{err}");
    drop(member.stdin.take());
    assert!(member.wait().expect("waiting for the member").success());
    let err = cli.fails(&["kernel", "debug", "run", "42", "--", "true"], 3);
    assert!(
        err.contains("namespace 42 is not in the kernel's namespace table"),
        "{err}"
    );

    if have_bpftool() && have_setpriv() {
        // A child tagged with ns 7 creates a map: it is listed as owned by ns:7. Without
        // CAP_PERFMON and CAP_SYS_ADMIN: libbpf probes features by loading programs, and
        // where tracing is denied (ns 7) nothing is loaded with perfmon power.
        let pin = map_pin.to_str().expect("utf-8 path");
        let args = [
            "kernel",
            "debug",
            "run",
            "7",
            "--",
            SETPRIV,
            "--bounding-set=-perfmon,-sys_admin",
            "--",
            "bpftool",
            "map",
            "create",
            pin,
            "type",
            "array",
            "key",
            "4",
            "value",
            "4",
            "entries",
            "1",
            "name",
            "clitest",
        ];
        cli.ok(&args);
        let maps = cli.maps();
        let ours = find(&maps, "clitest");
        let m = ours
            .iter()
            .find(|m| m["ns_id"] == 7)
            .unwrap_or_else(|| panic!("clitest not listed with ns 7: {ours:?}"));
        assert_eq!(m["namespace"], "ns:7");
        assert_eq!(m["type"], "array");
        let id_num = m["id"].as_u64().expect("id");
        let id = id_num.to_string();
        let one = cli.json(&["map", "show", &id]);
        assert_eq!(&one, *m);
        assert_eq!(cli.json(&["map", "show", "id", &id]), one);
        assert_eq!(cli.json(&["map", "show", "pinned", pin]), one);
        assert_eq!(
            (&one["bytes_key"], &one["bytes_value"], &one["max_entries"]),
            (&4.into(), &4.into(), &1.into()),
            "{one}"
        );
        let text = cli.ok(&["map", "show", &id]);
        assert!(text.contains("\n  namespace:   ns:7\n"), "{text}");
        // Without bpfnsd namespaces are ids: --namespace takes them as listed.
        let ns7 = cli.json(&["map", "list", "--namespace", "ns:7"]);
        assert!(
            ns7.as_array()
                .is_some_and(|a| !a.is_empty() && a.iter().all(|m| m["ns_id"] == 7)),
            "{ns7}"
        );
        cli.fails(&["map", "list", "--namespace", "/tenant"], 2);

        // A task of ns 8 opening it: where BPF LSM is loaded the kernel refuses the open
        // with EPERM (bpftool reports it and exits 255); elsewhere the backstop stops the
        // task (128 + SIGKILL).
        let lsm = layers.iter().any(|l| l == "BPF LSM");
        let out = cli.run(&[
            "kernel", "debug", "run", "8", "--", "bpftool", "map", "show", "id", &id,
        ]);
        if lsm {
            assert_eq!(out.status.code(), Some(255));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("Operation not permitted"), "{err}");
        } else {
            assert_eq!(out.status.code(), Some(137));
        }
        // Its owner may open it.
        cli.ok(&[
            "kernel", "debug", "run", "7", "--", "bpftool", "map", "show", "id", &id,
        ]);

        let st = cli.json(&["kernel", "status"]);
        assert!(st["ownership_records"].as_u64().unwrap_or(0) >= 1, "{st}");
        let (counter, what) = if lsm {
            ("lsm_opens_refused", "refused by BPF LSM")
        } else {
            ("tasks_stopped", "stopped by the backstop")
        };
        assert!(
            st["stats"][counter].as_u64().unwrap_or(0) >= 1,
            "the open was {what}, but {counter} is not counted: {st}"
        );

        // Once the map is gone its record goes: dropped by the BPF LSM layer's free hook
        // where that layer runs, else by gc (which may still win the race with the hook).
        let records = |st: &Value| st["ownership_records"].as_u64().expect("records");
        let before = records(&st);
        std::fs::remove_file(&map_pin).expect("removing the map pin");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut removed = 0;
        let mut after = before;
        while Instant::now() < deadline {
            removed += cli.json(&["kernel", "gc"])["removed"]
                .as_u64()
                .expect("removed");
            after = records(&cli.json(&["kernel", "status"]));
            if after < before && cli.maps().iter().all(|m| m["id"].as_u64() != Some(id_num)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            after < before,
            "the freed map's record stayed ({before} records before, {after} after)"
        );
        if !lsm {
            assert!(removed >= 1, "gc removed nothing");
        }
    } else {
        bpfns_tests::skip("part: bpftool is not installed; the map-creation checks did not run");
        let gc = cli.json(&["kernel", "gc"]);
        assert!(gc["removed"].is_u64(), "{gc}");
    }

    // Status.
    let st = cli.json(&["kernel", "status"]);
    assert_eq!(st["loaded"], true);
    assert_eq!(
        st["programs"].as_array().map(Vec::len),
        Some(LINKS.len() + TASK_ITERATORS.len() + lsm_links)
    );
    let ids: Vec<u64> = st["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter_map(|n| n["id"].as_u64())
        .collect();
    assert_eq!(ids, [7, 8]);
    let text = cli.ok(&["kernel", "status"]);
    assert!(text.starts_with("kernel side: loaded at"), "{text}");
    assert!(
        text.contains(&format!("\nlayers: {}\n", layers.join(", "))),
        "{text}"
    );
    assert!(text.contains("namespaces in the kernel table: 2"), "{text}");

    // Bad input.
    let err = cli.fails(&["maps", "list"], 2);
    assert!(err.contains("unrecognized subcommand"), "{err}");
    let err = cli.fails(&["map", "show", "abc"], 2);
    assert!(err.contains("invalid value 'abc'"), "{err}");
    let err = cli.fails(&["map", "show", "4294967295"], 3);
    assert!(err.contains("no map with id 4294967295"), "{err}");
    let out = cli.run(&["map", "show", "4294967295", "-j"]);
    assert_eq!(out.status.code(), Some(3));
    let e: Value = serde_json::from_slice(&out.stdout).expect("error JSON on stdout");
    assert_eq!(e["error"]["code"], "not_found", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no map with id"),
        "{e}"
    );
    let err = cli.fails(&["kernel", "debug", "tag", "999999999", "7"], 3);
    assert!(err.contains("no process with pid 999999999"), "{err}");
    let other = format!("/sys/fs/bpf/bpfns-clitest-missing-{pid}");
    let err = cli.fails(&["btf", "list", "--pin-root", &other], 1);
    assert!(err.contains(&format!("not loaded at {other}")), "{err}");

    let err = cli.fails(&["kernel", "unload", "--pin-root", "/tmp"], 1);
    assert!(err.contains("not on a bpffs mount"), "{err}");

    // Unload: refused while the kernel side is in use (namespaces in its table), since that
    // switches enforcement off for their members.
    cli.ok(&["kernel", "debug", "ns-set", "77", "--parent", "0"]);
    let err = cli.fails(&["kernel", "unload"], 5);
    assert!(
        err.contains("refusing to unload")
            && err.contains("namespace(s) are in its table")
            && err.contains("--force"),
        "{err}"
    );
    assert!(pin_root.exists(), "a refused unload removed something");
    // Everything pinned goes, the BPF LSM layer's links and maps too where it ran, the syscall
    // hooks' programs, and their links where they are attached now.
    let hooks = cli.json(&["kernel", "status"])["syscall_hooks"]
        .as_array()
        .map(Vec::len)
        .expect("syscall_hooks");
    let un = cli.json(&["kernel", "unload", "--force"]);
    let lsm_pins = if layers.iter().any(|l| l == "BPF LSM") {
        lsm_links + bpfns_kernel::lsm::LSM_MAPS.len()
    } else {
        0
    };
    assert_eq!(
        un["removed"].as_array().map(Vec::len),
        Some(
            MAPS.len() + LINKS.len() - ON_DEMAND.len()
                + hooks
                + ON_DEMAND.len()
                + TASK_ITERATORS.len()
                + lsm_pins
        ),
        "{un}"
    );
    assert!(!pin_root.exists(), "pin root left behind");
    let text = cli.ok(&["kernel", "unload"]);
    assert!(text.starts_with("nothing to unload"), "{text}");
}

/// `bpfns` against a private bpfnsd, as `bpfns --socket SOCK ARGS -j`: the parsed stdout (an
/// error's JSON too) and the exit status.
struct Via {
    socket: String,
}

impl Via {
    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(bpfns())
            .args(["--socket", &self.socket])
            .args(args)
            .output()
            .expect("running bpfns");
        eprintln!(
            "$ bpfns {}\n{}{}[exit {:?}]",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            out.status.code()
        );
        out
    }

    fn text(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "bpfns {args:?} failed");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// With -j: the exit status and the JSON on stdout.
    fn json_status(&self, args: &[&str]) -> (i32, Value) {
        let mut a = vec!["-j"];
        a.extend_from_slice(args);
        let out = self.run(&a);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "bpfns {a:?}: invalid JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (out.status.code().unwrap_or(-1), v)
    }

    fn json(&self, args: &[&str]) -> Value {
        let (code, v) = self.json_status(args);
        assert_eq!(code, 0, "bpfns -j {args:?}: {v}");
        v
    }

    /// Expect failure with exit status `status` and JSON error code `code`; the message.
    fn fails(&self, args: &[&str], status: i32, code: &str) -> String {
        let (got, v) = self.json_status(args);
        assert_eq!(got, status, "bpfns -j {args:?}: {v}");
        assert_eq!(v["error"]["code"], code, "bpfns -j {args:?}: {v}");
        v["error"]["message"].as_str().unwrap_or("").to_string()
    }
}

fn ids(v: &Value) -> BTreeSet<u64> {
    v.as_array()
        .expect("an array")
        .iter()
        .filter_map(|o| o["id"].as_u64())
        .collect()
}

/// A helper holding `what` (see `bpfns-test-helper create`) as a member of `ns`.
fn holding(d: &TestDaemon, ns: &str, what: &[&str]) -> (Helper, u32) {
    let mut args = vec!["create"];
    args.extend_from_slice(what);
    let mut h = Helper::spawn(&args);
    d.client().enter(ns, h.pid).expect("entering the helper");
    h.go();
    let id = h.expect("id").parse().expect("an id");
    (h, id)
}

/// What bpftool says of an object (`bpftool -j KIND show id ID`), if bpftool is installed.
fn bpftool_show(kind: &str, id: u32) -> Option<Value> {
    if !have_bpftool() {
        return None;
    }
    let out = Command::new("bpftool")
        .args(["-j", kind, "show", "id", &id.to_string()])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// Through bpfnsd: listings say what bpftool says of the same object, objects are named as
/// bpftool names them (ID, `id ID`, `pinned PATH`, `name NAME`), listings filter by namespace,
/// `ns ps` and `ns identify` find processes, dumps work or say in a sentence why not, and
/// errors carry the protocol's code in JSON and in the exit status.
#[test]
fn objects_processes_and_errors_through_bpfnsd() {
    if let Some(why) = skip_reason() {
        bpfns_tests::skip(why);
        return;
    }
    let d = TestDaemon::start("cli-objects");
    let mut c = d.client();
    for p in ["/a", "/a/kid", "/b"] {
        c.ns_create(p).expect("creating namespaces");
    }
    let via = Via {
        socket: d.socket.to_str().expect("utf-8 path").to_string(),
    };
    let a_id = c.ns_show("/a").expect("/a").id;
    let a_pin = d.dir.join("ns").join(a_id.to_string()).join("cli_m");
    let a_pin_s = a_pin.to_str().expect("utf-8 path");
    let (_hm, a_map) = holding(&d, "/a", &["map", a_pin_s]);
    let (_hk, kid_map) = holding(&d, "/a/kid", &["map"]);
    let (_hr, b_rb) = holding(&d, "/b", &["ringbuf"]);
    let (_hp, a_prog) = holding(&d, "/a", &["prog"]);
    let (_hl, a_link) = holding(&d, "/a", &["link"]);
    let (a_map_s, b_rb_s) = (a_map.to_string(), b_rb.to_string());

    // The debugging aids that write the kernel side's tables are refused under bpfnsd.
    let pin_root = d.layout.root().to_str().expect("utf-8 path").to_string();
    let (code, err) = via.json_status(&[
        "--pin-root",
        &pin_root,
        "kernel",
        "debug",
        "ns-set",
        "77",
        "--parent",
        "0",
    ]);
    assert_eq!(code, 5, "{err}");
    assert!(err.to_string().contains("behind bpfnsd's back"), "{err}");

    // `KIND list -j` prints bpfnsd's answer as sent where nothing needs completing (maps,
    // BTF, links without a cgroup or device); byte for byte what the decoded listing prints
    // (`KIND show -j` without an object), and the same objects as `-p`, whichever way it took.
    // Within /a: other tests change the host's objects meanwhile.
    for kind in ["map", "link", "prog"] {
        let args =
            |how: &'static str, fmt: &'static str| [kind, how, fmt, "--namespace", "/a", "-r"];
        let listed = via.text(&args("list", "-j"));
        assert_eq!(listed, via.text(&args("show", "-j")), "{kind} list -j");
        let pretty: Value = serde_json::from_str(&via.text(&args("list", "-p"))).expect("-p");
        let compact: Value = serde_json::from_str(&listed).expect("-j");
        assert_eq!(compact, pretty, "{kind} list -j against -p");
        assert!(
            !compact.as_array().expect("an array").is_empty(),
            "{kind}: {listed}"
        );
        assert!(!listed.contains("\"kind\""), "{kind}: {listed}");
    }
    let in_a = via.text(&["map", "list", "-j", "--namespace", "/a", "-r"]);
    for (id, seen) in [(a_map, true), (kid_map, true), (b_rb, false)] {
        assert_eq!(
            in_a.contains(&format!("{{\"id\":{id},")),
            seen,
            "{id}: {in_a}"
        );
    }
    let btf: Value = serde_json::from_str(&via.text(&["btf", "list", "-j"])).expect("btf -j");
    assert!(btf
        .as_array()
        .is_some_and(|a| a.iter().all(|o| o.get("kind").is_none())));

    // One vocabulary: members, in the table, the text and JSON.
    let list = via.text(&["ns", "list"]);
    let header = list.lines().next().unwrap_or("");
    assert!(
        header.contains(" MEMBERS ") && !header.contains("TASKS"),
        "{list}"
    );
    let show = via.text(&["ns", "show", "/a"]);
    assert!(
        show.contains("\n  members:  ") && !show.contains("tasks"),
        "{show}"
    );
    assert!(via.json(&["ns", "show", "/a"])["members"].is_u64());

    // Maps: sizes and flags, as bpftool has them; named by ID, `id ID`, `pinned PATH`, `name`.
    let m = via.json(&["map", "show", &a_map_s]);
    assert_eq!(
        (
            &m["namespace"],
            &m["type"],
            &m["bytes_key"],
            &m["bytes_value"],
            &m["max_entries"]
        ),
        (
            &"/a".into(),
            &"array".into(),
            &4.into(),
            &8.into(),
            &4.into()
        ),
        "{m}"
    );
    assert_eq!(via.json(&["map", "show", "id", &a_map_s]), m);
    assert_eq!(via.json(&["map", "show", "pinned", a_pin_s]), m);
    let named = via.json(&["map", "show", "name", "bpfns_test"]);
    assert!(ids(&named).contains(&u64::from(a_map)), "{named}");
    if let Some(b) = bpftool_show("map", a_map) {
        for f in ["bytes_key", "bytes_value", "max_entries", "flags", "name"] {
            assert_eq!(m[f], b[f], "{f}: bpfns {m} bpftool {b}");
        }
    }
    let text = via.text(&["map", "show", "id", &a_map_s]);
    assert!(text.starts_with(&format!("map {a_map}\n")), "{text}");
    assert!(text.contains("\n  max_entries: 4\n"), "{text}");

    // Programs: tag, load time, uid, sizes, maps, as bpftool has them; the kernel side's own
    // programs use maps.
    let on_fork = via.json(&[
        "link",
        "show",
        "pinned",
        d.layout.link("on_fork").to_str().expect("utf-8"),
    ]);
    assert_eq!(on_fork["tp_name"], "sched_process_fork", "{on_fork}");
    let kernel_prog = on_fork["prog_id"].as_u64().expect("prog_id") as u32;
    for id in [a_prog, kernel_prog] {
        let p = via.json(&["prog", "show", "id", &id.to_string()]);
        assert_eq!(p["tag"].as_str().map(str::len), Some(16), "{p}");
        assert!(p["loaded_at"].is_u64() && p["bytes_xlated"].is_u64(), "{p}");
        if let Some(b) = bpftool_show("prog", id) {
            for f in [
                "tag",
                "uid",
                "bytes_xlated",
                "bytes_jited",
                "btf_id",
                "name",
            ] {
                assert_eq!(p[f], b[f], "{f}: bpfns {p} bpftool {b}");
            }
            let maps = |v: &Value| v["map_ids"].as_array().cloned().unwrap_or_default();
            assert_eq!(maps(&p), maps(&b), "map_ids: bpfns {p} bpftool {b}");
            let (x, y) = (p["loaded_at"].as_i64(), b["loaded_at"].as_i64());
            assert!(x.zip(y).is_some_and(|(x, y)| (x - y).abs() <= 1), "{p} {b}");
        }
    }
    let kp = via.json(&["prog", "show", &kernel_prog.to_string()]);
    assert!(
        kp["map_ids"].as_array().is_some_and(|a| !a.is_empty()),
        "{kp}"
    );
    // A program's attach points, from the links to it.
    assert!(
        kp["attached"].as_array().is_some_and(|a| a.iter().any(
            |x| x["link_id"] == on_fork["id"] && x["attach"] == "tracepoint sched_process_fork"
        )),
        "{kp}"
    );

    // Links: the attach point; BTF: name, size, the kernel's or not.
    let l = via.json(&["link", "show", &a_link.to_string()]);
    assert_eq!(l["attach_type"], "sk_lookup", "{l}");
    assert!(l["netns_ino"].is_u64(), "{l}");
    let linked = via.json(&["prog", "show", &l["prog_id"].to_string()]);
    assert_eq!(linked["attached"][0]["link_id"], a_link, "{linked}");
    assert!(
        linked["attached"][0]["attach"]
            .as_str()
            .is_some_and(|a| a.starts_with("netns ") && a.ends_with(" sk_lookup")),
        "{linked}"
    );
    assert!(
        via.text(&["prog", "list", "--namespace", "/a"])
            .contains(&format!("(link {a_link})")),
        "the ATTACHED column"
    );
    let links = via.text(&["link", "list"]);
    assert!(
        links.contains("tracepoint sched_process_fork") && links.contains(" netns "),
        "{links}"
    );
    let v = via.json(&["btf", "show", "1"]);
    assert_eq!(
        (&v["name"], &v["kernel"]),
        (&"vmlinux".into(), &true.into()),
        "{v}"
    );
    assert!(v["size"].as_u64().is_some_and(|s| s > 0), "{v}");

    // --namespace (and -r for the namespaces below); a namespace you cannot see is not found.
    let only_a = ids(&via.json(&["map", "list", "--namespace", "/a"]));
    assert_eq!(only_a, BTreeSet::from([u64::from(a_map)]));
    let below_a = ids(&via.json(&["map", "list", "--namespace", "/a", "-r"]));
    assert_eq!(
        below_a,
        BTreeSet::from([u64::from(a_map), u64::from(kid_map)])
    );
    via.fails(&["map", "list", "--namespace", "/nope"], 3, "not_found");
    via.fails(&["prog", "list", "-r"], 2, "bad_request");
    let inside = |args: &[&str]| {
        let mut a = vec!["exec", "/a", "--", bpfns(), "--socket", &via.socket, "-j"];
        a.extend_from_slice(args);
        via.run(&a)
    };
    let o = inside(&["map", "list", "--namespace", "/b"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "another tenant's namespace is not found"
    );
    let o = inside(&["map", "list", "--namespace", "/a", "-r"]);
    let seen: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(ids(&seen), below_a, "a member's view of its subtree");

    // Dumps: a map by pin and by id; a program's instructions; a BTF summary. A ring buffer
    // cannot be dumped by key, and says so.
    let dump = via.json(&["map", "dump", "pinned", a_pin_s]);
    assert_eq!(dump.as_array().map(Vec::len), Some(4), "{dump}");
    assert_eq!(via.json(&["map", "dump", "id", &a_map_s]), dump);
    let insns = via.json(&["prog", "dump", "xlated", "id", &a_prog.to_string()]);
    let last = insns
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["disasm"], "exit", "{insns}");
    assert!(via
        .text(&["prog", "dump", "xlated", &kernel_prog.to_string()])
        .contains("(95) exit"));
    let btf = via.json(&["btf", "dump", "1"]);
    assert!(btf["types"].as_u64().is_some_and(|n| n > 1000), "{btf}");
    assert!(
        btf["kinds"]["STRUCT"].as_u64().is_some_and(|n| n > 0),
        "{btf}"
    );
    let why = via.fails(&["map", "dump", &b_rb_s], 1, "failed");
    assert!(
        why.contains("ring buffers cannot be dumped by key"),
        "{why}"
    );
    let o = via.run(&["map", "dump", &b_rb_s]);
    let err = String::from_utf8_lossy(&o.stderr);
    // The kernel's internal ENOTSUPP (524) never reaches the user as a number; the message
    // names the map's id, which may contain "524" itself.
    assert!(
        !err.contains("error 524") && !err.contains("(524)") && !err.contains("Unknown error"),
        "{err}"
    );
    // Commands that cannot work are not offered; a pin of another kind is named.
    assert_eq!(via.run(&["link", "dump", "1"]).status.code(), Some(2));
    let why = via.fails(&["prog", "show", "pinned", a_pin_s], 2, "bad_request");
    assert!(why.contains("is a map, not a prog"), "{why}");

    // Processes: a member of /a/kid, found by `ns ps -r /a` and `ns identify`. It is `cat`
    // reading our pipe: it ends when the pipe closes, also when this test fails.
    let mut member = Command::new(bpfns())
        .args(["--socket", &via.socket, "exec", "/a/kid", "--", "cat"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("starting a member");
    // The helper holding kid_map is a member already: wait for `cat` itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c
        .ns_ps("/a/kid", false)
        .expect("ns_ps")
        .iter()
        .any(|p| p.comm == "cat")
    {
        assert!(Instant::now() < deadline, "the member never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kid_ps = via.json(&["ns", "ps", "/a/kid"]);
    let sleeper = kid_ps
        .as_array()
        .and_then(|a| a.iter().find(|p| p["comm"] == "cat"))
        .cloned()
        .unwrap_or_else(|| panic!("cat in {kid_ps}"));
    let pid = sleeper["pid"].as_u64().expect("pid").to_string();
    assert_eq!(
        (&sleeper["namespace"], &sleeper["uid"]),
        (&"/a/kid".into(), &0.into())
    );
    let not_r = via.json(&["ns", "ps", "/a"]);
    assert!(not_r
        .as_array()
        .is_some_and(|a| a.iter().all(|p| p["namespace"] == "/a")));
    let r = via.json(&["ns", "ps", "-r", "/a"]);
    assert!(r
        .as_array()
        .is_some_and(|a| a.iter().any(|p| p["pid"] == sleeper["pid"])));
    assert!(
        via.text(&["ns", "ps", "-r", "/a"]).starts_with("PID "),
        "a table"
    );
    assert_eq!(via.json(&["ns", "identify", &pid])["namespace"], "/a/kid");
    let me = std::process::id().to_string();
    assert_eq!(via.json(&["ns", "identify", &me])["namespace"], "/");
    via.fails(&["ns", "identify", "2147483647"], 3, "not_found");
    let o = inside(&["ns", "identify", &me]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "a member does not see a root process"
    );
    drop(member.stdin.take());
    assert!(member.wait().expect("waiting for the member").success());

    // Errors: the protocol's code in JSON and the exit status; kernel errnos in a sentence.
    via.fails(&["ns", "show", "/nope"], 3, "not_found");
    via.fails(&["ns", "create", "/a"], 5, "conflict");
    via.fails(&["map", "show", "abc"], 2, "bad_request");
    via.fails(&["ns", "delete", "/"], 4, "denied");
    let (code, v) = via.json_status(&["map", "show", "pinned", "/sys/fs/bpf/bpfns-cli-nothing"]);
    assert_eq!((code, &v["error"]["errno"]), (3, &"ENOENT".into()), "{v}");
    assert!(
        v["error"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("no such object")),
        "{v}"
    );
    let o = via.run(&["map", "show", "pinned", "/sys/fs/bpf/bpfns-cli-nothing"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("\nbpfns: ENOENT: no such object"),
        "the errno in a sentence"
    );
    if have_setpriv() {
        let o = Command::new(SETPRIV)
            .args([
                "--reuid=1000",
                "--regid=1000",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                bpfns(),
                "--socket",
                &via.socket,
                "-j",
                "ns",
                "identify",
                &me,
            ])
            .output()
            .expect("setpriv");
        let v: Value = serde_json::from_slice(&o.stdout).expect("error JSON");
        assert_eq!(
            (o.status.code(), &v["error"]["code"]),
            (Some(4), &"denied".into()),
            "{v}"
        );
    }
    let limited = TestDaemon::start_with("cli-limit", |c| c.limits.max_namespaces_per_tenant = 1);
    let lim = Via {
        socket: limited.socket.to_str().expect("utf-8").to_string(),
    };
    lim.json(&["ns", "create", "/t"]);
    // The limit binds a tenant's members (host root, who sets it, is bound by the kernel's
    // tables alone).
    let o = lim.run(&[
        "exec",
        "/t",
        "--",
        bpfns(),
        "--socket",
        &lim.socket,
        "-j",
        "ns",
        "create",
        "/t/x",
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("error JSON");
    assert_eq!(
        (o.status.code(), &v["error"]["code"]),
        (Some(6), &"limit_reached".into()),
        "{v}"
    );

    // The layers have one name: doctor's are status's.
    let doctor = via.json_status(&["doctor"]).1;
    let status = via.json(&["status"]);
    for l in doctor["active_layers"].as_array().expect("active_layers") {
        assert!(
            status["layers"].as_array().is_some_and(|s| s.contains(l)),
            "doctor's {l} is not among status's {}",
            status["layers"]
        );
    }
}

/// Whether the kernel counts program `id`'s runs now (run-time statistics on): its `run_cnt`
/// grows while it runs (the sysctl does not show statistics turned on by `BPF_ENABLE_STATS`).
fn counting(id: u64) -> bool {
    let runs = || {
        let fd = bpfns_sys::bpf::fd_by_id(bpfns_model::ObjectKind::Prog, id as u32)
            .expect("opening the busy program");
        bpfns_sys::bpf::info::<bpfns_sys::bpf::bpf_prog_info>(&fd)
            .expect("its info")
            .run_cnt
    };
    let before = runs();
    std::thread::sleep(Duration::from_millis(300));
    runs() != before
}

/// `bpfns top`: a busy program's run time is attributed to its namespace, in one JSON sample
/// and in the live view as a person uses it (in tmux: start, read the screen, pause, quit); a
/// member sees its own subtree only; statistics are on only while `bpfns top` runs.
#[test]
fn top_attributes_run_time_to_the_owner_namespace() {
    if let Some(why) = skip_reason() {
        bpfns_tests::skip(why);
        return;
    }
    let d = TestDaemon::start("cli-top");
    let mut c = d.client();
    for p in ["/busy", "/idle"] {
        c.ns_create(p).expect("creating namespaces");
    }
    let via = Via {
        socket: d.socket.to_str().expect("utf-8 path").to_string(),
    };
    let mut busy = Helper::spawn(&["busy-prog"]);
    c.enter("/busy", busy.pid).expect("entering the helper");
    busy.go();
    let id: u64 = busy.expect("id").parse().expect("an id");
    // Nobody else has statistics on (else what is checked below proves nothing).
    let stats_before = counting(id);

    // One sample, as root: the program, its namespace, both busy; stderr says (once) that
    // statistics are on meanwhile.
    let notices = |out: &Output| {
        String::from_utf8_lossy(&out.stderr)
            .matches("BPF_ENABLE_STATS")
            .count()
    };
    let out = via.run(&["-j", "top", "--interval", "1"]);
    assert!(out.status.success(), "bpfns -j top failed");
    assert_eq!(
        notices(&out),
        1,
        "bpfns -j top did not say statistics are on"
    );
    let s: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let p = s["programs"]
        .as_array()
        .expect("programs")
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("program {id} not in {s}"))
        .clone();
    assert_eq!(p["namespace"], "/busy", "{p}");
    assert!(p["cpu_percent"].as_f64().unwrap_or(0.0) > 0.0, "{p}");
    assert!(p["runs_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{p}");
    let ns = s["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .find(|n| n["namespace"] == "/busy")
        .unwrap_or_else(|| panic!("/busy not in {s}"))
        .clone();
    assert!(
        ns["cpu_percent"].as_f64().unwrap_or(0.0) >= p["cpu_percent"].as_f64().unwrap_or(0.0),
        "{ns}"
    );
    if !stats_before {
        assert!(!counting(id), "statistics left on after bpfns top -j");
    }
    // The text sample when stdout is not a terminal: the notice on stderr, not in the table.
    let out = via.run(&["top", "--interval", "0.5"]);
    assert!(out.status.success(), "bpfns top | ... failed");
    assert_eq!(
        notices(&out),
        1,
        "bpfns top | ... did not say statistics are on"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("/busy") && !table.contains("BPF_ENABLE_STATS"),
        "{table}"
    );

    // A member of /idle: only its own subtree.
    let out = via.run(&[
        "exec",
        "/idle",
        "--",
        bpfns(),
        "--socket",
        &via.socket,
        "-j",
        "top",
        "-d",
        "0.5",
    ]);
    assert!(out.status.success(), "bpfns top as a member failed");
    let m: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        m["programs"]
            .as_array()
            .expect("programs")
            .iter()
            .all(|p| p["namespace"] == "/idle"),
        "a member of /idle saw {m}"
    );

    // The live view, in a terminal.
    if Command::new("tmux").arg("-V").output().is_err() {
        bpfns_tests::skip("the live view needs tmux (scripts/setup.sh installs it)");
        return;
    }
    let session = format!("bpfns-top-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(args)
            .output()
            .expect("running tmux")
    };
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", &self.0])
                .output();
        }
    }
    let _kill = Kill(session.clone());
    let cmd = format!("{} --socket {} top -d 0.5", bpfns(), via.socket);
    let start = || {
        assert!(tmux(&[
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "150",
            "-y",
            "40",
            &cmd
        ])
        .status
        .success());
    };
    let screen = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned()
    };
    let wait_for = |what: &dyn Fn(&str) -> bool| -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = screen();
            if what(&s) || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Press `key` and wait for the view to end; statistics must be off again afterwards
    // (unless they were on before).
    let quit_with = |key: &str, name: &str| {
        tmux(&["send-keys", "-t", &session, key]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tmux(&["has-session", "-t", &session]).status.success() {
            assert!(
                Instant::now() < deadline,
                "bpfns top did not quit on {name}: {}",
                screen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        if !stats_before {
            assert!(
                !counting(id),
                "statistics left on after bpfns top quit on {name}"
            );
        }
    };
    let id_s = id.to_string();
    start();
    let s = wait_for(&|s| s.contains("/busy") && s.contains(&id_s));
    assert!(
        s.contains("bpfns top") && s.contains("BPF_ENABLE_STATS"),
        "{s}"
    );
    assert!(s.contains("/busy") && s.contains(&id_s), "{s}");
    assert!(counting(id), "statistics off while bpfns top runs");
    tmux(&["send-keys", "-t", &session, "Space"]);
    let s = wait_for(&|s| s.contains("paused"));
    assert!(s.contains("paused"), "{s}");
    quit_with("q", "q");
    // Again, quitting with Ctrl-C.
    start();
    let s = wait_for(&|s| s.contains("/busy") && s.contains(&id_s));
    assert!(s.contains("/busy") && s.contains(&id_s), "{s}");
    assert!(counting(id), "statistics off while bpfns top runs again");
    quit_with("C-c", "Ctrl-C");
    drop(busy);
}

/// `bpfns events`: JSON lines with -j, one line of text without; --kind and --ns filter; an
/// unknown kind is a usage error naming the known ones.
#[test]
fn events_stream_as_json_lines_and_text() {
    if let Some(why) = skip_reason() {
        bpfns_tests::skip(why);
        return;
    }
    let d = TestDaemon::start("cli-events");
    let socket = d.socket.to_str().expect("utf-8 path").to_string();
    let subscribers = || {
        d.client()
            .status()
            .expect("status")
            .counters
            .iter()
            .find(|(n, _)| n == "events_subscribers")
            .map_or(0, |(_, v)| *v)
    };
    // A stream's lines, read on a thread; the process is killed when the guard goes.
    struct Stream(std::process::Child, std::sync::mpsc::Receiver<String>);
    impl Drop for Stream {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let start = |args: &[&str], now: u64| {
        let mut child = Command::new(bpfns())
            .args(["--socket", &socket])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("bpfns events");
        let rx = lines_of(child.stdout.take().expect("stdout"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while subscribers() <= now {
            assert!(
                Instant::now() < deadline,
                "bpfns {args:?} did not subscribe"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Stream(child, rx)
    };
    let json = start(&["-j", "events", "--kind", "ns_created"], 0);
    let pretty = start(&["-p", "events", "--kind", "ns_created"], 1);
    let mut c = d.client();
    c.ns_create("/e1").expect("creating /e1");
    let text = start(&["events", "--ns", "/e1"], 2);
    c.ns_set_policy("/e1", bpfns_model::Policy::tracing(true))
        .expect("policy");
    c.ns_create("/e1/x").expect("creating /e1/x");
    let line = |s: &Stream| {
        s.1.recv_timeout(Duration::from_secs(20))
            .expect("an event line")
    };
    let first: Value = serde_json::from_str(&line(&json)).expect("a JSON line");
    assert_eq!(
        (first["kind"].as_str(), first["namespace"].as_str()),
        (Some("ns_created"), Some("/e1")),
        "{first}"
    );
    assert!(
        first["time_ms"].as_u64().is_some() && first.get("reply").is_none(),
        "{first}"
    );
    // The policy change is not of the kind asked for.
    let second: Value = serde_json::from_str(&line(&json)).expect("a JSON line");
    assert_eq!(second["namespace"], "/e1/x", "{second}");
    // -p: the same objects, pretty-printed (over several lines each).
    for want in ["/e1", "/e1/x"] {
        let mut object = Vec::new();
        loop {
            let l = line(&pretty);
            let end = l == "}";
            object.push(l);
            if end {
                break;
            }
        }
        assert!(object.len() > 3, "not pretty-printed: {object:?}");
        let v: Value = serde_json::from_str(&object.join("\n")).expect("a JSON object");
        assert_eq!(v["namespace"], want, "{v}");
    }
    // /e1 and below only: its policy change, then its child.
    let t = line(&text);
    assert!(
        t.contains(" ns_policy_changed /e1 ") && t.contains("policy="),
        "{t}"
    );
    let t = line(&text);
    assert!(t.contains(" ns_created /e1/x "), "{t}");
    drop((json, pretty, text));

    let out = Command::new(bpfns())
        .args(["--socket", &socket, "events", "--kind", "nope"])
        .output()
        .expect("bpfns events");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("member_entered"),
        "{out:?}"
    );
}

/// `bpfns events` in text says when events were left out: a tenant making more events a
/// second than its limit (a member creating and deleting namespaces in a loop) gets a line
/// "… N events of /t left out" before its next event, N as many as bpfnsd left out.
#[test]
fn events_in_text_say_how_many_were_left_out() {
    if let Some(why) = skip_reason() {
        bpfns_tests::skip(why);
        return;
    }
    let d = TestDaemon::start_with("cli-events-left-out", |c| {
        c.events_per_namespace_per_sec = 3;
    });
    let socket = d.socket.to_str().expect("utf-8 path").to_string();
    let counter = |name: &str| {
        d.client()
            .status()
            .expect("status")
            .counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    };
    let mut c = d.client();
    c.ns_create("/t").expect("creating /t");
    let mut child = Command::new(bpfns())
        .args(["--socket", &socket, "events", "--ns", "/t"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("bpfns events");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let rx = lines_of(child.stdout.take().expect("stdout"));
    let _kill = Kill(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while counter("events_subscribers") == 0 {
        assert!(Instant::now() < deadline, "bpfns events did not subscribe");
        std::thread::sleep(Duration::from_millis(50));
    }
    // 20 events of /t in well under a second (and one for the member entering).
    let mut member = Helper::spawn(&["client", &socket, "ns-churn", "/t/c", "10"]);
    c.enter("/t", member.pid).expect("entering the member");
    member.go();
    assert_eq!(member.expect("churned"), "10");
    member.finish();
    let left_out = counter("events_suppressed");
    assert!(
        left_out > 0,
        "nothing was left out: the test proves nothing"
    );
    // A second later, the tenant's next event goes out, after the line.
    std::thread::sleep(Duration::from_millis(1100));
    let mut marker = Helper::spawn(&["client", &socket, "ns-create", "/t/after"]);
    c.enter("/t", marker.pid).expect("entering the marker");
    marker.go();
    assert_eq!(marker.expect("result"), "/t/after");
    marker.finish();
    let mut lines = Vec::new();
    loop {
        let l = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no ns_created /t/after line after {lines:#?}"));
        let done = l.contains(" ns_created /t/after ");
        lines.push(l);
        if done {
            break;
        }
    }
    // Every event left out is told, on the line before the tenant's next event that went out
    // (one line here; two if the loop outlasted a second).
    let told: Vec<(usize, u64)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(" of /t left out "))
        .map(|(i, l)| {
            let n = l
                .split(" … ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no count in {l:?}"));
            (i, n)
        })
        .collect();
    assert!(
        !told.is_empty(),
        "no line says events were left out: {lines:#?}"
    );
    assert_eq!(
        told.iter().map(|(_, n)| n).sum::<u64>(),
        left_out,
        "{lines:#?}"
    );
    for (i, _) in told {
        assert!(
            lines.get(i + 1).is_some_and(|l| l.contains(" /t")),
            "not before an event of /t: {lines:#?}"
        );
    }
}
