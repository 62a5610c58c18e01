//! The RFC's table, end to end: bpfnsd (in-process), `bpfns exec`, the seccomp supervisor and
//! unmodified bpftool, for a member with CAP_BPF only and for a member that is host root.
//!
//! Tree: / ─┬─ /a ── /a/kid
//!          └─ /b
//! Each namespace makes a map (pinned in its own bpffs), a program and a BTF object.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::collections::BTreeSet;
use std::process::{Command, Output};

use bpfns_model::{ObjectKind, Policy};
use bpfns_tests::{require_kernel, TestDaemon};
use serde_json::Value;

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

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// How a member runs its command.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// Host root (all capabilities in the initial user namespace).
    HostRoot,
    /// uid 65534 with CAP_BPF only (ambient), like a container user allowed to load BPF.
    CapBpfOnly,
    /// uid 0 without CAP_SYS_ADMIN and CAP_PERFMON: in a namespace that denies tracing, bpfnsd
    /// refuses program loads from a thread with perfmon power, and libbpf's feature probes are
    /// program loads (without them it creates maps without names). What a tenant that loads
    /// programs there runs as.
    RootLoader,
}

fn exec(d: &TestDaemon, ns: &str, who: Who, cmd: &[&str]) -> Output {
    let mut c = Command::new(bpfns());
    c.arg("--socket").arg(&d.socket).args(["exec", ns, "--"]);
    if let Who::RootLoader = who {
        c.args([
            "setpriv",
            "--inh-caps=-sys_admin,-perfmon",
            "--bounding-set=-sys_admin,-perfmon",
            "--",
        ]);
    }
    if let Who::CapBpfOnly = who {
        c.args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all,+bpf",
            "--ambient-caps=-all,+bpf",
            "--bounding-set=-all,+bpf",
            "--",
        ]);
    }
    c.args(cmd).output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ids_of(json: &str) -> BTreeSet<u32> {
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_u64().unwrap() as u32)
        .collect()
}

struct World {
    d: TestDaemon,
    /// map id per namespace
    maps: Vec<(&'static str, u32)>,
}

impl World {
    fn map(&self, ns: &str) -> u32 {
        self.maps.iter().find(|(n, _)| *n == ns).unwrap().1
    }
}

fn world(name: &str) -> World {
    let d = TestDaemon::start(name);
    let mut c = d.client();
    for p in ["/a", "/a/kid", "/b"] {
        c.ns_create(p).unwrap();
    }
    let mut maps = Vec::new();
    for ns in ["/a", "/a/kid", "/b"] {
        let mname = format!("m{}", ns.replace('/', "_"));
        ok(&exec(
            &d,
            ns,
            Who::RootLoader,
            &[
                "bpftool",
                "map",
                "create",
                &format!("/sys/fs/bpf/{mname}"),
                "type",
                "array",
                "key",
                "4",
                "value",
                "4",
                "entries",
                "1",
                "name",
                &mname,
            ],
        ));
        let id = c
            .list(ObjectKind::Map)
            .unwrap()
            .into_iter()
            .find(|m| m.name == mname && m.namespace == ns)
            .unwrap_or_else(|| panic!("{mname} attributed to {ns}"))
            .id;
        maps.push((ns, id));
    }
    World { d, maps }
}

fn rfc_table(who: Who) {
    if !have("bpftool") || !have("setpriv") {
        bpfns_tests::skip("needs bpftool and setpriv");
        return;
    }
    let w = world(&format!("rfc-{who:?}").to_lowercase());
    let (a, kid, b) = (w.map("/a"), w.map("/a/kid"), w.map("/b"));

    // Iterate: own and descendants' ids yes, others' no (exactly the namespace's view).
    let seen = ids_of(&ok(&exec(
        &w.d,
        "/a",
        who,
        &["bpftool", "-j", "map", "show"],
    )));
    assert_eq!(
        seen,
        BTreeSet::from([a, kid]),
        "/a sees its own and /a/kid's maps only"
    );
    let seen = ids_of(&ok(&exec(
        &w.d,
        "/a/kid",
        who,
        &["bpftool", "-j", "map", "show"],
    )));
    assert_eq!(
        seen,
        BTreeSet::from([kid]),
        "/a/kid does not see its parent's"
    );
    let seen = ids_of(&ok(&exec(
        &w.d,
        "/b",
        who,
        &["bpftool", "-j", "map", "show"],
    )));
    assert_eq!(seen, BTreeSet::from([b]), "/b sees only its own");

    // Own id -> fd: yes. Others' -> no (as if the id did not exist).
    ok(&exec(
        &w.d,
        "/a",
        who,
        &["bpftool", "map", "dump", "id", &a.to_string()],
    ));
    ok(&exec(
        &w.d,
        "/a",
        who,
        &["bpftool", "map", "show", "id", &kid.to_string()],
    ));
    for (ns, id) in [("/a", b), ("/a/kid", a), ("/b", a)] {
        let o = exec(
            &w.d,
            ns,
            who,
            &["bpftool", "map", "show", "id", &id.to_string()],
        );
        assert!(!o.status.success(), "{ns} opened map {id}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("No such file or directory"), "{ns}: {err}");
    }

    // Pins: a member's /sys/fs/bpf is its own namespace's bpffs.
    let listing = ok(&exec(&w.d, "/b", who, &["ls", "/sys/fs/bpf"]));
    assert!(
        listing.contains("m_b") && !listing.contains("m_a"),
        "{listing}"
    );
    // Another namespace's pin, reached through its host path, is refused.
    let a_pin = w.d.dir.join("ns");
    let a_id = w.d.client().ns_show("/a").unwrap().id;
    let a_pin = a_pin.join(a_id.to_string()).join("m_a");
    let o = exec(
        &w.d,
        "/b",
        who,
        &["bpftool", "map", "show", "pinned", a_pin.to_str().unwrap()],
    );
    assert!(!o.status.success(), "/b opened /a's pin");

    // The other kinds list only what the namespace owns (it owns none here but the maps'
    // BTF-less creation leaves nothing): programs, links and BTF lists must not include root's.
    let root_progs: BTreeSet<u32> =
        w.d.client()
            .list(ObjectKind::Prog)
            .unwrap()
            .into_iter()
            .filter(|o| o.namespace == "/")
            .map(|o| o.id)
            .collect();
    let progs = ids_of(&ok(&exec(
        &w.d,
        "/a",
        who,
        &["bpftool", "-j", "prog", "show"],
    )));
    assert!(
        progs.is_disjoint(&root_progs),
        "/a sees root's programs: {progs:?}"
    );
    for kind in ["link", "btf"] {
        let out = ok(&exec(&w.d, "/b", who, &["bpftool", "-j", kind, "show"]));
        let visible: BTreeSet<u32> =
            w.d.client()
                .list(if kind == "link" {
                    ObjectKind::Link
                } else {
                    ObjectKind::Btf
                })
                .unwrap()
                .into_iter()
                .filter(|o| o.namespace == "/b")
                .map(|o| o.id)
                .collect();
        assert!(
            ids_of(&out).is_subset(&visible),
            "{kind}: /b sees foreign ids: {out}"
        );
    }

    // The daemon's own view, from inside: `bpfns map list` through the API.
    let out = ok(&exec(
        &w.d,
        "/a",
        who,
        &[
            bpfns(),
            "--socket",
            w.d.socket.to_str().unwrap(),
            "-j",
            "map",
            "list",
        ],
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    let names: BTreeSet<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{}@{}",
                o["name"].as_str().unwrap(),
                o["namespace"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["m_a@/a".to_string(), "m_a_kid@/a/kid".to_string()])
    );
}

#[test]
fn rfc_table_for_a_member_with_cap_bpf_only() {
    require_kernel!();
    rfc_table(Who::CapBpfOnly);
}

#[test]
fn rfc_table_for_a_member_that_is_host_root() {
    require_kernel!();
    rfc_table(Who::HostRoot);
}

#[test]
fn exec_returns_the_commands_status_and_refuses_bad_input() {
    require_kernel!();
    let d = TestDaemon::start("exec-status");
    d.client().ns_create("/s").unwrap();
    let o = exec(&d, "/s", Who::HostRoot, &["sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let o = exec(&d, "/nope", Who::HostRoot, &["true"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no namespace /nope"));
    // Inside a namespace, exec only goes deeper.
    d.client().ns_create("/s/deeper").unwrap();
    d.client().ns_create("/t").unwrap();
    let sock = d.socket.to_str().unwrap().to_string();
    let o = exec(
        &d,
        "/s",
        Who::HostRoot,
        &[
            bpfns(),
            "--socket",
            &sock,
            "exec",
            "/s/deeper",
            "--",
            bpfns(),
            "--socket",
            &sock,
            "-j",
            "ns",
            "list",
        ],
    );
    let out = ok(&o);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v[0]["path"], "/s/deeper",
        "the nested member is in /s/deeper: {out}"
    );
    let o = exec(
        &d,
        "/s",
        Who::HostRoot,
        &[bpfns(), "--socket", &sock, "exec", "/t", "--", "true"],
    );
    assert!(!o.status.success(), "a member entered a sibling namespace");
}

#[test]
fn status_names_the_layers_that_run_and_tells_a_member_only_its_subtree() {
    require_kernel!();
    let d = TestDaemon::start("cli-status");
    d.client().ns_create("/s").unwrap();
    let sock = d.socket.to_str().unwrap().to_string();
    let status = |extra: &[&str]| {
        Command::new(bpfns())
            .args(["--socket", &sock])
            .args(extra)
            .arg("status")
            .output()
            .unwrap()
    };
    let v: Value = serde_json::from_str(&ok(&status(&["-j"]))).unwrap();
    let mut layers = vec!["supervisor", "tracepoint backstop"];
    if bpfns_kernel::lsm::kernel_allows().is_ok() {
        layers.push("BPF LSM");
    }
    assert_eq!(v["layers"], serde_json::json!(layers), "{v}");
    assert_eq!(v["namespaces"], 2, "{v}");
    assert_eq!(v["supervised_listeners"], 0, "{v}");
    assert!(v["counters"]["tasks_stopped"].is_u64(), "{v}");
    // A member asks from inside: its own subtree's namespaces, none of the host-wide figures
    // (listeners, counters), which would tell it of other tenants.
    let inner = ok(&exec(
        &d,
        "/s",
        Who::HostRoot,
        &[bpfns(), "--socket", &sock, "-j", "status"],
    ));
    let v: Value = serde_json::from_str(&inner).unwrap();
    assert_eq!(v["namespaces"], 1, "{v}");
    assert_eq!(v["member_of"], "/s", "{v}");
    assert_eq!(v["supervised_listeners"], 0, "{v}");
    assert_eq!(v["counters"], serde_json::json!({}), "{v}");
    let text = ok(&status(&[]));
    assert!(
        text.contains(&format!("\nlayers: {}\n", layers.join(", "))),
        "{text}"
    );
    // Unloading the kernel side under the running bpfnsd is refused (and changes nothing).
    let root = d.layout.root().to_str().unwrap().to_string();
    let o = Command::new(bpfns())
        .args(["--socket", &sock, "kernel", "unload", "--pin-root", &root])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(
        err.contains(&format!("bpfnsd serves it on {sock}")) && err.contains("--force"),
        "{err}"
    );
    assert!(
        bpfns_kernel::loader::is_loaded(&d.layout),
        "a refused unload removed pins"
    );
    // Forced, it unloads; bpfnsd's status then no longer reports the kernel side's layers.
    let o = Command::new(bpfns())
        .args([
            "--socket",
            &sock,
            "kernel",
            "unload",
            "--force",
            "--pin-root",
            &root,
        ])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_str(&ok(&status(&["-j"]))).unwrap();
    assert_eq!(v["layers"], serde_json::json!(["supervisor"]), "{v}");
    // No daemon: the error names the socket and how to start bpfnsd.
    let o = Command::new(bpfns())
        .args(["--socket", "/nonexistent/bpfns.sock", "status"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/nonexistent/bpfns.sock"), "{err}");
}

#[test]
fn ns_policy_from_the_cli() {
    require_kernel!();
    let d = TestDaemon::start("cli-policy");
    let sock = d.socket.to_str().unwrap().to_string();
    let bpfns = |args: &[&str]| {
        Command::new(bpfns())
            .args(["--socket", &sock])
            .args(args)
            .output()
            .unwrap()
    };
    let v: Value = serde_json::from_str(&ok(&bpfns(&[
        "-j",
        "ns",
        "create",
        "/t",
        "--allow-tracing",
    ])))
    .unwrap();
    assert_eq!(v["policy"]["allow_tracing"], true, "{v}");
    let text = ok(&bpfns(&["ns", "create", "/t/kid"]));
    assert!(text.contains("tracing programs: denied"), "{text}");
    // Wider than the parent: refused with the reason and the fix.
    ok(&bpfns(&["ns", "create", "/n"]));
    let o = bpfns(&["ns", "policy", "/n/x", "--allow-tracing"]);
    assert_eq!(o.status.code(), Some(3), "no such namespace");
    let o = bpfns(&["ns", "create", "/n/x", "--allow-tracing"]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "a conflict with the parent's policy"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("change the parent's policy first"), "{err}");
    // Changing it; the list shows it.
    let v: Value = serde_json::from_str(&ok(&bpfns(&[
        "-j",
        "ns",
        "policy",
        "/n",
        "--allow-tracing",
    ])))
    .unwrap();
    assert_eq!(v["policy"]["allow_tracing"], true, "{v}");
    let list = ok(&bpfns(&["ns", "list"]));
    let row = |name: &str| {
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} in {list}"))
            .to_string()
    };
    // The TRACING column (the 8th), before RECORDS.
    let col = |line: String| line.split_whitespace().nth(7).unwrap_or("").to_string();
    assert_eq!(
        col(list.lines().next().unwrap().to_string()),
        "TRACING",
        "{list}"
    );
    assert_eq!(col(row("/")), "host", "{list}");
    assert_eq!(col(row("n")), "allowed", "{list}");
    assert_eq!(col(row("kid")), "denied", "{list}");
    // Bad usage: both flags.
    let args = ["ns", "policy", "/n", "--allow-tracing", "--deny-tracing"];
    assert_eq!(bpfns(&args).status.code(), Some(2), "{args:?}");
    ok(&bpfns(&["ns", "policy", "/n", "--deny-tracing"]));
    assert!(ok(&bpfns(&["ns", "show", "/n"])).contains("tracing programs: denied"));

    // The four sets, in bpffs's names.
    let v: Value = serde_json::from_str(&ok(&bpfns(&[
        "-j",
        "ns",
        "create",
        "/f",
        "--allow-progs",
        "socket_filter,xdp",
        "--deny-maps",
        "hash",
        "--deny-cmds",
        "map_freeze",
        "--allow-attachs",
        "xdp,cgroup_inet_ingress",
    ])))
    .unwrap();
    assert_eq!(
        v["policy_names"]["progs"],
        serde_json::json!(["socket_filter", "xdp"]),
        "{v}"
    );
    assert_eq!(v["policy_names"]["text"]["maps"], "any but hash", "{v}");
    assert_eq!(
        v["policy_names"]["text"]["cmds"], "any but map_freeze",
        "{v}"
    );
    assert_eq!(
        v["policy_names"]["attachs"],
        serde_json::json!(["cgroup_inet_ingress", "xdp"]),
        "{v}"
    );
    // Without flags, `ns policy` prints it: its own, and what its ancestors cap it to.
    ok(&bpfns(&["ns", "create", "/f/kid"]));
    let text = ok(&bpfns(&["ns", "policy", "/f/kid"]));
    assert!(text.contains("    progs:   socket_filter,xdp\n"), "{text}");
    assert!(text.contains("    maps:    any but hash\n"), "{text}");
    let v: Value = serde_json::from_str(&ok(&bpfns(&["-j", "ns", "policy", "/f/kid"]))).unwrap();
    assert_eq!(
        v["effective"]["progs"],
        serde_json::json!(["socket_filter", "xdp"]),
        "{v}"
    );
    // Narrowing from above works; widening from below is refused, naming the field.
    ok(&bpfns(&["ns", "policy", "/f/kid", "--deny-progs", "xdp"]));
    let o = bpfns(&["ns", "policy", "/f/kid", "--allow-progs", "any"]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "a conflict with the parent's policy"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("in its progs"), "{err}");
    // An unknown name is a usage error that lists the valid ones.
    let o = bpfns(&["ns", "policy", "/f", "--deny-maps", "hsh"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unknown maps name \"hsh\"") && err.contains("lru_hash"),
        "{err}"
    );
    let show = ok(&bpfns(&["ns", "show", "/f/kid"]));
    assert!(show.contains("    progs:   socket_filter\n"), "{show}");
}

/// bpfnsd never shows more than the kernel would: a host user without capabilities lists
/// nothing through it (the kernel refuses it `BPF_*_GET_NEXT_ID` too), and a root caller does.
#[test]
fn a_user_without_capabilities_lists_nothing_through_bpfnsd() {
    require_kernel!();
    if !have("setpriv") {
        bpfns_tests::skip("needs setpriv");
        return;
    }
    let d = TestDaemon::start("cli-nocaps");
    d.client().ns_create("/t").unwrap();
    let sock = d.socket.to_str().unwrap().to_string();
    let as_user = |args: &[&str]| {
        Command::new("setpriv")
            .args([
                "--reuid=1000",
                "--regid=1000",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                bpfns(),
                "--socket",
                &sock,
            ])
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["-j", "map", "list"][..],
        &["-j", "prog", "list"],
        &["-j", "ns", "list"],
        &["-j", "ns", "show", "/t"],
        &["-j", "status"],
    ] {
        let o = as_user(args);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(4), "{args:?}: {out}");
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(v["error"]["code"], "denied", "{args:?}: {out}");
        assert!(
            out.contains("needs CAP_BPF or CAP_SYS_ADMIN in the initial user namespace"),
            "{args:?}: {out}"
        );
    }
    let o = Command::new(bpfns())
        .args(["--socket", &sock, "-j", "ns", "list"])
        .output()
        .unwrap();
    assert!(ok(&o).contains("\"/t\""));
}

#[test]
fn ns_max_objects_from_the_cli() {
    require_kernel!();
    let d = TestDaemon::start("cli-quota");
    let sock = d.socket.to_str().unwrap().to_string();
    let cli = |args: &[&str]| {
        Command::new(bpfns())
            .args(["--socket", &sock])
            .args(args)
            .output()
            .unwrap()
    };
    let v: Value = serde_json::from_str(&ok(&cli(&[
        "-j",
        "ns",
        "create",
        "/q",
        "--max-objects",
        "64",
    ])))
    .unwrap();
    assert_eq!(
        (v["max_objects"].as_u64(), v["records"].as_u64()),
        (Some(64), Some(0)),
        "{v}"
    );
    let text = ok(&cli(&["ns", "create", "/q/kid"]));
    assert!(
        text.contains("used/max): 0/64"),
        "capped at the parent's: {text}"
    );
    // Above the parent's: refused with the fix; 0: a usage error.
    let o = cli(&["ns", "create", "/q/big", "--max-objects", "65"]);
    assert_eq!(o.status.code(), Some(5));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ask for at most 64"), "{err}");
    assert_eq!(
        cli(&["ns", "create", "/q/z", "--max-objects", "0"])
            .status
            .code(),
        Some(2)
    );
    let list = ok(&cli(&["ns", "list"]));
    assert!(
        list.lines()
            .next()
            .unwrap()
            .ends_with("RECORDS  MEMORY  MEMORY-ALL"),
        "{list}"
    );
    let q = list
        .lines()
        .find(|l| l.split_whitespace().next() == Some("q"))
        .unwrap();
    assert!(q.ends_with("0/64     0B      0B"), "{list}");
    let all: Value = serde_json::from_str(&ok(&cli(&["-j", "ns", "list"]))).unwrap();
    assert_eq!(all[0]["path"], "/");
    assert!(all[0].get("max_objects").is_none(), "{all}");
}

/// `--max-maps` (and the other kinds) on `ns create` and `ns quota`: shown per kind by
/// `ns show` (used/limit) and `-j`; a child above its parent's refused with the fix; `ns quota`
/// changes them; `--help` says how a creation over a limit fails.
#[test]
fn ns_limits_per_kind_from_the_cli() {
    require_kernel!();
    let d = TestDaemon::start("cli-kquota");
    let sock = d.socket.to_str().unwrap().to_string();
    let cli = |args: &[&str]| {
        Command::new(bpfns())
            .args(["--socket", &sock])
            .args(args)
            .output()
            .unwrap()
    };
    let v: Value = serde_json::from_str(&ok(&cli(&[
        "-j",
        "ns",
        "create",
        "/k",
        "--max-maps",
        "4",
        "--max-progs",
        "2",
    ])))
    .unwrap();
    assert_eq!(v["max_maps"].as_u64(), Some(4), "{v}");
    assert_eq!(v["max_progs"].as_u64(), Some(2), "{v}");
    assert!(v.get("max_links").is_none(), "{v}");
    assert_eq!(v["kind_records"]["map"].as_u64(), Some(0), "{v}");
    let text = ok(&cli(&["ns", "show", "/k"]));
    assert!(
        text.contains("per kind: progs 0/2, maps 0/4, links 0, btf 0"),
        "{text}"
    );
    let o = cli(&["ns", "create", "/k/kid", "--max-maps", "5"]);
    assert_eq!(o.status.code(), Some(5));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ask for at most 4"), "{err}");
    ok(&cli(&["ns", "create", "/k/kid", "--max-maps", "3"]));
    let o = cli(&["ns", "quota", "/k", "--max-maps", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("lower the child's first"), "{err}");
    let v: Value = serde_json::from_str(&ok(&cli(&[
        "-j",
        "ns",
        "quota",
        "/k",
        "--max-maps",
        "8",
        "--max-links",
        "3",
    ])))
    .unwrap();
    assert_eq!(
        (
            v["max_maps"].as_u64(),
            v["max_links"].as_u64(),
            v["max_progs"].as_u64()
        ),
        (Some(8), Some(3), Some(2)),
        "the others kept: {v}"
    );
    assert_eq!(
        cli(&["ns", "quota", "/k"]).status.code(),
        Some(2),
        "no limit given"
    );
    assert_eq!(
        cli(&["ns", "quota", "/k", "--max-maps", "0"]).status.code(),
        Some(2)
    );
    let help = ok(&cli(&["ns", "quota", "--help"]));
    assert!(help.contains("EDQUOT") && help.contains("EPERM"), "{help}");
}

/// `bpfns exec` supervises its command: a TERM (what `timeout` and `systemctl stop` send)
/// reaches the command, and `bpfns exec` returns the command's own status once it has ended;
/// a command that cannot be found exits 127 with one line; one the kernel side stopped gets
/// the rule it broke and the fix.
#[test]
fn exec_passes_signals_on_and_explains_failures() {
    require_kernel!();
    let d = TestDaemon::start("exec-signals");
    d.client().ns_create("/s").unwrap();
    let sock = d.socket.to_str().unwrap().to_string();
    let marker = std::env::temp_dir().join(format!("bpfns-exec-term-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let script = format!(
        "trap 'touch {m}; exit 42' TERM; echo ready; while :; do sleep 0.05; done",
        m = marker.display()
    );
    let mut c = Command::new(bpfns())
        .args(["--socket", &sock, "exec", "/s", "--", "sh", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(c.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    let t = std::time::Instant::now();
    bpfns_sys::testhooks::kill(c.id() as i32, 15).unwrap();
    let st = c.wait().unwrap();
    assert_eq!(
        st.code(),
        Some(42),
        "the command's own status, after its TERM handler"
    );
    assert!(marker.exists(), "the command got the TERM");
    let _ = std::fs::remove_file(&marker);
    eprintln!("TERM to exit: {:?}", t.elapsed());

    // Not found: 127 and one line; cannot run (a directory): 126.
    let o = Command::new(bpfns())
        .args(["--socket", &sock, "exec", "/s", "--", "/nonexistent/cmd"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(127), "{err}");
    // One line of error (after warnings about the member's setup, which depend on the host).
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("bpfns: warning:"))
        .collect();
    assert_eq!(
        lines,
        ["bpfns: /nonexistent/cmd: command not found"],
        "{err}"
    );
    let o = Command::new(bpfns())
        .args(["--socket", &sock, "exec", "/s", "--", "/"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(126),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Stopped by the kernel side (its namespace's limit on objects): the rule and the fix. The
    // kernel makes the programs of a namespace that allows tracing, and the backstop judges
    // them at syscall exit (maps, BTF objects and the programs of other namespaces bpfnsd
    // makes itself, refusing what is over a limit with EDQUOT).
    d.client()
        .ns_create_with("/q", Policy::tracing(true), Some(2))
        .unwrap();
    let helper = bpfns_tests::helper_path();
    let o = Command::new(bpfns())
        .args(["--socket", &sock, "exec", "/q", "--"])
        .arg(&helper)
        .args(["create-many", "prog", "5"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    if bpfns_kernel::lsm::kernel_allows().is_ok() {
        // BPF LSM refuses the third map with EPERM instead: nothing is killed.
        assert_eq!(o.status.code(), Some(0), "{err}");
    } else {
        assert_eq!(o.status.code(), Some(137), "{err}");
        assert!(
            err.contains("bpfns: the command was stopped (SIGKILL)")
                && err.contains("of namespace /q")
                && err.contains("[quota]")
                && err.contains("fix:"),
            "{err}"
        );
    }
}

/// `ns create --parents` makes the missing ancestors; `ns delete -r` deletes a subtree deepest first;
/// `--force` kills a namespace's members instead of refusing.
#[test]
fn ns_create_parents_and_delete_recursive_and_forced() {
    require_kernel!();
    let d = TestDaemon::start("cli-tree");
    let sock = d.socket.to_str().unwrap().to_string();
    let cli = |args: &[&str]| {
        Command::new(bpfns())
            .args(["--socket", &sock])
            .args(args)
            .output()
            .unwrap()
    };
    ok(&cli(&["ns", "create", "--parents", "/x/y/z"]));
    ok(&cli(&["ns", "create", "--parents", "/x/y/z"]));
    for p in ["/x", "/x/y", "/x/y/z"] {
        assert!(d.client().ns_show(p).is_ok(), "{p}");
    }
    let o = cli(&["ns", "delete", "/x"]);
    assert_eq!(o.status.code(), Some(5), "has children");
    assert!(d.client().ns_show("/x/y/z").is_ok(), "nothing deleted");
    let v: Value = serde_json::from_str(&ok(&cli(&["-j", "ns", "delete", "-r", "/x"]))).unwrap();
    let deleted: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["deleted"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, ["/x/y/z", "/x/y", "/x"]);
    assert!(d.client().ns_show("/x").is_err());

    // A member keeps its namespace until --force.
    d.client().ns_create("/f").unwrap();
    let mut member = Command::new(bpfns())
        .args(["--socket", &sock, "exec", "/f", "--", "sleep", "600"])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while d.client().ns_show("/f").unwrap().members == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the member never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = cli(&["ns", "delete", "/f"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(
        err.contains("member task") && err.contains("--force"),
        "{err}"
    );
    ok(&cli(&["ns", "delete", "--force", "/f"]));
    let st = member.wait().unwrap();
    assert_eq!(st.code(), Some(137), "the member was killed");
    assert!(d.client().ns_show("/f").is_err());
}

/// `bpfns exec --user --caps` starts a member with exactly those credentials, without setpriv:
/// a non-root user holding CAP_BPF alone (ambient, kept across its exec) creates a map in its
/// namespace and lists it with unmodified bpftool; --caps perfmon is not kept where the
/// namespace denies tracing.
/// A member started by host root sees the cgroup filesystems read-only (a uid-0 member could
/// otherwise move any process into the cgroup its programs are attached to); with
/// `--writable-cgroups` they stay writable. Negative: the write is tried and must fail.
#[test]
fn exec_mounts_cgroupfs_read_only_unless_asked() {
    require_kernel!();
    let Ok(root) = bpfns_sys::cgroup::cgroup2_root() else {
        bpfns_tests::skip("no cgroup2 hierarchy is mounted");
        return;
    };
    let d = TestDaemon::start("exec-cgro");
    d.client().ns_create("/a").unwrap();
    let sock = d.socket.to_str().unwrap().to_string();
    // The shell writes its own pid to the cgroup it is in: a move that changes nothing.
    let procs = root.join("cgroup.procs").display().to_string();
    let script = format!(
        "grep -q '^0::/$' /proc/self/cgroup || {{ echo not-in-root; exit 3; }}; \
         echo $$ > {procs} && echo wrote"
    );
    let exec = |extra: &[&str]| {
        Command::new(bpfns())
            .args(["--socket", &sock, "exec"])
            .args(extra)
            .args(["/a", "--", "sh", "-c", &script])
            .output()
            .unwrap()
    };
    let o = exec(&[]);
    let out = String::from_utf8_lossy(&o.stdout);
    if out.contains("not-in-root") {
        bpfns_tests::skip("the test does not run in the root cgroup v2 cgroup");
        return;
    }
    assert!(!o.status.success() && !out.contains("wrote"), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Read-only file system"),
        "{o:?}"
    );
    assert!(ok(&exec(&["--writable-cgroups"])).contains("wrote"));
}

#[test]
fn exec_with_a_user_and_capabilities() {
    require_kernel!();
    let d = TestDaemon::start("exec-creds");
    d.client().ns_create("/a").unwrap();
    let sock = d.socket.to_str().unwrap().to_string();
    let exec = |args: &[&str]| {
        Command::new(bpfns())
            .args(["--socket", &sock, "exec"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = ok(&exec(&[
        "--user",
        "65534",
        "--caps",
        "bpf,perfmon",
        "/a",
        "--",
        "sh",
        "-c",
        "id -u; grep -E '^Cap(Eff|Bnd|Amb)' /proc/self/status",
    ]));
    let bpf_only = format!("{:016x}", 1u64 << 39);
    assert!(out.starts_with("65534\n"), "{out}");
    for set in ["CapEff", "CapBnd", "CapAmb"] {
        assert!(out.contains(&format!("{set}:\t{bpf_only}")), "{set}: {out}");
    }
    if !have("bpftool") {
        bpfns_tests::skip("part: no bpftool");
        return;
    }
    ok(&exec(&[
        "--user",
        "65534",
        "--caps",
        "bpf",
        "/a",
        "--",
        "bpftool",
        "map",
        "create",
        "/sys/fs/bpf/creds_map",
        "type",
        "array",
        "key",
        "4",
        "value",
        "4",
        "entries",
        "1",
        "name",
        "creds_map",
    ]));
    let listed = ok(&exec(&[
        "--user", "65534", "--caps", "bpf", "/a", "--", "bpftool", "-j", "map", "show",
    ]));
    assert!(listed.contains("\"creds_map\""), "{listed}");
    let o = exec(&["--caps", "no_such_cap", "/a", "--", "true"]);
    assert_eq!(o.status.code(), Some(2), "bad usage");
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown capability"));
}
