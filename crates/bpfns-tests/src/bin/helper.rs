//! A small program the kernel tests run, tag, and watch. It reports on stdout as `key=value`
//! lines and, where it holds something open, keeps it until its stdin reaches EOF.
//!
//! ```text
//! bpfns-test-helper [--wait] ACTION ARGS...
//!   --wait               read one byte from stdin before acting (the test tags us first)
//!   pid-hop US           a process that keeps changing its leader thread (exits it, execs
//!                        from another thread) every 2 × US µs
//!   hold [LABEL]         print LABEL=PID, hold until EOF
//!   tree                 self=PID, then a child (child=PID) and grandchild (grandchild=PID)
//!   threads N            start N threads, print tid=TID for each, hold until EOF
//!   exec ACTION...       exec this program again with ACTION (the pid stays)
//!   exec-cmd CMD ARGS... exec CMD (after --wait: the command starts tagged)
//!   open KIND ID         BPF_{KIND}_GET_FD_BY_ID: print opened=FD or errno=E, then exit 0
//!   obj-get PATH         BPF_OBJ_GET: the same
//!   create KIND [PATH]   create a map|ringbuf|prog|btf|link|rawtp-link|syscall-prog (pin it at PATH),
//!                        print id=ID fd=FD, hold until EOF; without CAP_PERFMON and CAP_SYS_ADMIN
//!                        (but for rawtp-link), as a namespace that denies tracing requires
//!   create-perfmon KIND [PATH]   the same, keeping them
//!   create-array NAME VALUE_SIZE ENTRIES   an array map of that size: id=ID, hold until EOF
//!   clone-files          start a child sharing our fd table; print child=exited:N|signaled:N
//!   load-kernel ROOT     load the kernel side pinned at ROOT, print loaded=1, exit
//!   client SOCK OP ...   talk to bpfnsd at SOCK as this process: hello | list KIND |
//!                        list-in KIND NS [r] | getfd KIND ID | ns-create PATH |
//!                        ns-delete PATH | enter-self PATH | ns-ps PATH [r] (pid:ns,...) |
//!                        ns-identify PID; prints result=... or error=CODE
//!   (supervisor tests)   list, obj-get-from, obj-get-chroot, obj-get-at, prog-dump,
//!                        bpf-only, no-caps, install-listener, bpf-x32, bpf-int80, storm,
//!                        bench, bad-attrs, create-maps, cgroup-link, perf-tp, prog-query,
//!                        oom-press, oom-hog: see helper/supervised.rs
//!   (torture test)       daemon, torture-member, torture-prober: see helper/torture.rs
//!   (kernel-side tests)  hijack, create-many, prog-token, race-scm: see helper/kside.rs
//! ```
#![deny(unsafe_code)]

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Command, ExitCode};

use bpfns_model::ObjectKind;
use bpfns_sys::bpf as sysbpf;
use bpfns_sys::process::{self, ChildExit};

/// As bpfnsd's (the helper runs the daemon for the tests): its heap is counted.
#[global_allocator]
static ALLOCATOR: bpfns_sys::heap::Counting = bpfns_sys::heap::Counting;

#[path = "helper/kside.rs"]
mod kside;
#[path = "helper/loadrace.rs"]
mod loadrace;
#[path = "helper/polflip.rs"]
mod polflip;
#[path = "helper/redteam.rs"]
mod redteam;
#[path = "helper/supervised.rs"]
mod supervised;
#[path = "helper/torture.rs"]
mod torture;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn hold_until_eof() {
    let mut buf = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
}

fn kind(s: &str) -> ObjectKind {
    ObjectKind::ALL
        .into_iter()
        .find(|k| k.name() == s)
        .unwrap_or_else(|| fail(&format!("unknown kind {s}")))
}

fn fail(msg: &str) -> ! {
    eprintln!("bpfns-test-helper: {msg}");
    std::process::exit(2)
}

fn report_open(r: bpfns_sys::Result<OwnedFd>) -> ExitCode {
    match r {
        Ok(fd) => say(&format!("opened={}", sysbpf::raw(&fd))),
        Err(e) => say(&format!("errno={}", e.errno.raw_os_error())),
    }
    ExitCode::SUCCESS
}

fn object_id(kind: ObjectKind, fd: impl AsFd) -> u32 {
    let r = match kind {
        ObjectKind::Map => sysbpf::info::<sysbpf::bpf_map_info>(fd).map(|i| i.id),
        ObjectKind::Prog => sysbpf::info::<sysbpf::bpf_prog_info>(fd).map(|i| i.id),
        ObjectKind::Link => sysbpf::info::<sysbpf::bpf_link_info>(fd).map(|i| i.id),
        ObjectKind::Btf => sysbpf::info::<sysbpf::bpf_btf_info>(fd).map(|i| i.id),
    };
    r.unwrap_or_else(|e| fail(&e.to_string()))
}

const PROG_SOCKET_FILTER: u32 = 1;
const PROG_RAW_TRACEPOINT: u32 = 17;
const PROG_SK_LOOKUP: u32 = 30;
const PROG_SYSCALL: u32 = 31;
const ATTACH_SK_LOOKUP: u32 = 36;
const MAP_ARRAY: u32 = 2;
const BPF_F_SLEEPABLE: u32 = 16;
/// `r0 = 1; exit` (SK_PASS).
const RETURN_ONE: [u64; 2] = [0x0000_0001_0000_00b7, 0x0000_0000_0000_0095];

/// Give up perfmon power (CAP_PERFMON and CAP_SYS_ADMIN in the effective set): where a
/// namespace's policy denies tracing, a program loaded with it is stopped (any program type
/// could read kernel memory). The helper often runs as host root; `create-perfmon` keeps both.
pub fn drop_perfmon() {
    use bpfns_sys::caps::{self, CapabilitySet};
    let Ok(sets) = caps::of_current_thread() else {
        return;
    };
    let keep = sets.effective - (CapabilitySet::PERFMON | CapabilitySet::SYS_ADMIN);
    if let Err(e) = caps::set_current_thread_effective(keep) {
        fail(&format!("dropping CAP_PERFMON and CAP_SYS_ADMIN: {e}"));
    }
}

/// Run `f` without perfmon power, then take it back (the permitted set keeps it). For a
/// process that needs CAP_SYS_ADMIN otherwise (e.g. as host admin towards bpfnsd) but may
/// create objects in a namespace that denies tracing: libbpf's feature probes load programs.
pub fn without_perfmon<T>(f: impl FnOnce() -> T) -> T {
    use bpfns_sys::caps;
    let before = caps::of_current_thread().map(|s| s.effective);
    drop_perfmon();
    let out = f();
    if let Ok(effective) = before {
        let _ = caps::set_current_thread_effective(effective);
    }
    out
}

fn create(what: &str) -> (ObjectKind, Vec<OwnedFd>) {
    // Tracing programs need CAP_PERFMON (and a namespace that allows tracing).
    if what != "rawtp-link" {
        drop_perfmon();
    }
    create_as_is(what)
}

fn create_as_is(what: &str) -> (ObjectKind, Vec<OwnedFd>) {
    let ok = |r: bpfns_sys::Result<OwnedFd>| r.unwrap_or_else(|e| fail(&e.to_string()));
    let prog = |t, insns: &[u64], opts| ok(sysbpf::prog_load(t, "bpfns_test", insns, opts));
    match what {
        "map" => (
            ObjectKind::Map,
            vec![ok(sysbpf::map_create(MAP_ARRAY, "bpfns_test", 4, 8, 4))],
        ),
        "ringbuf" => (
            ObjectKind::Map,
            vec![ok(sysbpf::map_create(
                sysbpf::MAP_TYPE_RINGBUF,
                "bpfns_test_rb",
                0,
                0,
                4096,
            ))],
        ),
        "prog" => (
            ObjectKind::Prog,
            vec![prog(
                PROG_SOCKET_FILTER,
                &sysbpf::RETURN_ZERO,
                Default::default(),
            )],
        ),
        "syscall-prog" => (
            ObjectKind::Prog,
            vec![prog(
                PROG_SYSCALL,
                &sysbpf::RETURN_ZERO,
                sysbpf::ProgLoadOpts {
                    prog_flags: BPF_F_SLEEPABLE,
                    ..Default::default()
                },
            )],
        ),
        "btf" => (
            ObjectKind::Btf,
            vec![ok(sysbpf::btf_load(&sysbpf::minimal_btf()))],
        ),
        "link" => {
            let p = prog(
                PROG_SK_LOOKUP,
                &RETURN_ONE,
                sysbpf::ProgLoadOpts {
                    expected_attach_type: ATTACH_SK_LOOKUP,
                    ..Default::default()
                },
            );
            let netns = std::fs::File::open("/proc/self/ns/net")
                .unwrap_or_else(|e| fail(&format!("open netns: {e}")));
            let l = ok(sysbpf::link_create(&p, &netns, ATTACH_SK_LOOKUP));
            (ObjectKind::Link, vec![l, p])
        }
        "rawtp-link" => {
            let p = prog(
                PROG_RAW_TRACEPOINT,
                &sysbpf::RETURN_ZERO,
                Default::default(),
            );
            let l = ok(sysbpf::raw_tracepoint_open("sched_process_hang", &p));
            (ObjectKind::Link, vec![l, p])
        }
        other => fail(&format!("cannot create {other}")),
    }
}

extern "C" fn shared_files_child(_: *mut libc::c_void) -> libc::c_int {
    // If bpfns lets us run, we get here and exit 0 after a moment.
    process::raw_sleep_ms(200);
    0
}

fn main() -> ExitCode {
    // bpfnsd's listener keeper, for daemons that run inside a test process.
    let argv: Vec<String> = std::env::args().collect();
    if bpfnsd::keeper::process::is_keeper(&argv) {
        return bpfnsd::keeper::process::main(&argv);
    }
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--wait") {
        args.remove(0);
        let mut b = [0u8; 1];
        if std::io::stdin().read_exact(&mut b).is_err() {
            fail("stdin closed before the go byte");
        }
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(&e.to_string()));
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| fail("missing argument"))
    };
    match arg(0).as_str() {
        // A process that keeps moving out of a walk's way (pid order): after US µs a second
        // thread starts, the leader thread ends (a zombie while the process lives), and the
        // second thread, after US µs more, execs this again, which gives it the leader's pid.
        "pid-hop" => {
            let us: u64 = arg(1).parse().unwrap_or_else(|_| fail("US"));
            std::thread::sleep(std::time::Duration::from_micros(us));
            let exe = exe.clone();
            let again: Vec<String> = args.to_vec();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_micros(us));
                let e = std::os::unix::process::CommandExt::exec(Command::new(&exe).args(&again));
                fail(&format!("exec: {e}"));
            });
            bpfns_sys::testhooks::exit_thread();
        }
        "hold" => {
            let label = args.get(1).cloned().unwrap_or_else(|| "pid".into());
            say(&format!("{label}={}", std::process::id()));
            hold_until_eof();
        }
        "tree" | "tree-mid" => {
            let (me, next) = if arg(0) == "tree" {
                ("self", vec!["tree-mid"])
            } else {
                ("child", vec!["hold", "grandchild"])
            };
            say(&format!("{me}={}", std::process::id()));
            let mut c = Command::new(&exe)
                .args(next)
                .spawn()
                .unwrap_or_else(|e| fail(&e.to_string()));
            let _ = c.wait();
        }
        "threads" => {
            let n: usize = arg(1).parse().unwrap_or_else(|_| fail("N"));
            let (tx, rx) = std::sync::mpsc::channel();
            let mut handles = Vec::new();
            for _ in 0..n {
                let tx = tx.clone();
                handles.push(std::thread::spawn(move || {
                    let _ = tx.send(process::gettid());
                    hold_until_eof();
                }));
            }
            for _ in 0..n {
                if let Ok(tid) = rx.recv() {
                    say(&format!("tid={tid}"));
                }
            }
            say("threads=ready");
            for h in handles {
                let _ = h.join();
            }
        }
        "exec" => {
            use std::os::unix::process::CommandExt;
            let err = Command::new(&exe).args(&args[1..]).exec();
            fail(&format!("exec: {err}"));
        }
        "exec-cmd" => {
            use std::os::unix::process::CommandExt;
            let err = Command::new(arg(1)).args(&args[2..]).exec();
            fail(&format!("exec {}: {err}", arg(1)));
        }
        // busy-prog: load a socket filter, say its id, then run it (BPF_PROG_TEST_RUN) in a
        // loop until stdin closes, so that its run time shows while statistics are on.
        "busy-prog" => {
            let (k, fds) = create("prog");
            say(&format!("id={}", object_id(k, &fds[0])));
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let s = stop.clone();
            std::thread::spawn(move || {
                hold_until_eof();
                s.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            let packet = [0u8; 64];
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Err(e) = sysbpf::prog_test_run(&fds[0], &packet, 10_000) {
                    fail(&format!("test run: {e}"));
                }
            }
            drop(fds);
        }
        "open" => return report_open(sysbpf::fd_by_id(kind(&arg(1)), arg(2).parse().unwrap_or(0))),
        // `open-loop KIND ID N`: N opens of one id (a burst of refusals when it is foreign).
        "open-loop" => {
            let (k, id, n) = (
                kind(&arg(1)),
                arg(2).parse().unwrap_or(0),
                arg(3).parse().unwrap_or(1),
            );
            let refused = (0..n).filter(|_| sysbpf::fd_by_id(k, id).is_err()).count();
            say(&format!("refused={refused}"));
        }
        "obj-get" => return report_open(sysbpf::obj_get(Path::new(&arg(1)))),
        "create" | "create-perfmon" => {
            let (k, fds) = if arg(0) == "create" {
                create(&arg(1))
            } else {
                create_as_is(&arg(1))
            };
            if let Some(path) = args.get(2) {
                sysbpf::obj_pin(&fds[0], Path::new(path)).unwrap_or_else(|e| fail(&e.to_string()));
            }
            say(&format!("id={}", object_id(k, &fds[0])));
            say(&format!("fd={}", sysbpf::raw(&fds[0])));
            hold_until_eof();
            drop(fds);
        }
        // `create-array NAME VALUE_SIZE ENTRIES`: an array map of that size; id=ID, hold.
        "create-array" => {
            // libbpf probes name support with a program load, which perfmon power forbids.
            drop_perfmon();
            let fd = sysbpf::map_create(
                MAP_ARRAY,
                &arg(1),
                4,
                arg(2).parse().unwrap_or(8),
                arg(3).parse().unwrap_or(1),
            )
            .unwrap_or_else(|e| fail(&e.to_string()));
            say(&format!("id={}", object_id(ObjectKind::Map, &fd)));
            hold_until_eof();
            drop(fd);
        }
        "thread-create" => {
            // A thread that waits for a second go byte, then creates `what` (map, prog, ...):
            // for tests that move the process meanwhile.
            let what = arg(1);
            let t = std::thread::spawn(move || {
                say(&format!("tid={}", process::gettid()));
                let mut b = [0u8; 1];
                if std::io::stdin().read_exact(&mut b).is_err() {
                    fail("stdin closed before the second go byte");
                }
                let (k, fds) = create(&what);
                say(&format!("id={}", object_id(k, &fds[0])));
                hold_until_eof();
                drop(fds);
            });
            let _ = t.join();
        }
        "clone-files" => {
            let pid = process::spawn_sharing_fd_table(shared_files_child)
                .unwrap_or_else(|e| fail(&e.to_string()));
            match process::wait_child(pid) {
                Ok(ChildExit::Exited(c)) => say(&format!("child=exited:{c}")),
                Ok(ChildExit::Signaled(s)) => say(&format!("child=signaled:{s}")),
                Err(e) => fail(&e.to_string()),
            }
        }
        "load-kernel" => {
            let layout = bpfns_kernel::PinLayout::new(arg(1));
            match bpfns_kernel::loader::load(&layout) {
                Ok(r) => say(&format!("loaded={}", u8::from(r.reused_state))),
                Err(e) => fail(&e.to_string()),
            }
        }
        "relax-hooks" => {
            let layout = bpfns_kernel::PinLayout::new(arg(1));
            let k = bpfns_kernel::Kernel::open(&layout).unwrap_or_else(|e| fail(&e.to_string()));
            match k.relax_hooks() {
                Ok(d) => say(&format!("detached={}", u8::from(d))),
                Err(e) => fail(&e.to_string()),
            }
        }
        "keeper-connect" => {
            // Connect to a listener keeper (answered: this process is host root, as bpfnsd
            // is), hand the connection to whoever reads stdout (a unix socket), and exit.
            use bpfnsd::keeper::{Msg, Op, MSG_LEN};
            let sock = bpfns_sys::unix::seqpacket_connect(Path::new(&arg(1)))
                .unwrap_or_else(|e| fail(&e.to_string()));
            let stats = Msg::new(Op::Stats, [0; 6]).encode();
            bpfns_sys::unix::send_msg(&sock, &stats, &[], false)
                .unwrap_or_else(|e| fail(&e.to_string()));
            let mut buf = [0u8; MSG_LEN];
            let mut fds = Vec::new();
            let n = bpfns_sys::unix::recv_msg(&sock, &mut buf, &mut fds, false)
                .unwrap_or_else(|e| fail(&e.to_string()));
            if Msg::decode(&buf[..n]).map(|m| m.op) != Some(Op::Ok) {
                fail("the keeper did not answer its maker");
            }
            let out = std::io::stdout();
            bpfns_sys::unix::send_msg(out.as_fd(), b"k", &[sock.as_fd()], false)
                .unwrap_or_else(|e| fail(&e.to_string()));
        }
        "client" => client(&args[1..]),
        a if kside::ACTIONS.contains(&a) => kside::run(&args),
        a if supervised::ACTIONS.contains(&a) => supervised::run(&exe, &args),
        a if redteam::ACTIONS.contains(&a) => redteam::run(&exe, &args),
        a if loadrace::ACTIONS.contains(&a) => loadrace::run(&exe, &args),
        a if polflip::ACTIONS.contains(&a) => polflip::run(&exe, &args),
        a if torture::ACTIONS.contains(&a) => torture::run(&args),
        other => fail(&format!("unknown action {other}")),
    }
    ExitCode::SUCCESS
}

fn client(args: &[String]) {
    let a = |i: usize| args.get(i).cloned().unwrap_or_default();
    let mut c = match bpfns_client::Client::connect(a(0)) {
        Ok(c) => c,
        Err(e) => return say(&format!("error=connect {e}")),
    };
    let out = |r: Result<String, bpfns_client::ClientError>| match r {
        Ok(v) => say(&format!("result={v}")),
        Err(e) => say(&format!(
            "error={}",
            e.code()
                .map(|c| format!("{c:?}"))
                .unwrap_or_else(|| e.to_string())
        )),
    };
    match a(1).as_str() {
        "hello" => out(c
            .hello()
            .map(|h| format!("{} admin={}", h.namespace, h.host_admin))),
        "list" => out(c.list(kind(&a(2))).map(|v| {
            v.iter()
                .map(|o| o.id.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })),
        "getfd" => out(c
            .get_fd(kind(&a(2)), a(3).parse().unwrap_or(0))
            .map(|fd| format!("fd{}", sysbpf::raw(&fd)))),
        // `events [NS]`: subscribe, then one `event=JSON` line per event until the stream ends.
        "events" => {
            let ns = Some(a(2)).filter(|n| !n.is_empty());
            match c.subscribe(ns.as_deref(), Vec::new()) {
                Ok(n) => say(&format!("subscribed={n}")),
                Err(e) => return out(Err(e)),
            }
            loop {
                match c.next_event() {
                    Ok(e) => say(&format!(
                        "event={}",
                        serde_json::to_string(&e).unwrap_or_default()
                    )),
                    Err(e) => return say(&format!("ended={e}")),
                }
            }
        }
        "ns-create" => out(c.ns_create(&a(2)).map(|n| n.path)),
        // The whole error message, for tests that check what it says.
        "ns-create-msg" => match c.ns_create(&a(2)) {
            Ok(n) => say(&format!("result={}", n.path)),
            Err(e) => say(&format!("error={e}")),
        },
        "ns-delete" => out(c.ns_delete(&a(2)).map(|(to, n)| format!("{n}->{to}"))),
        // ns-churn PREFIX N: create and delete PREFIX0..PREFIX{N-1} (an event each, each a new
        // namespace id); how many cycles succeeded.
        "ns-churn" => {
            let n: u32 = a(3).parse().unwrap_or_else(|_| fail("N"));
            let mut done = 0;
            for i in 0..n {
                let p = format!("{}{i}", a(2));
                if c.ns_create(&p).is_ok() && c.ns_delete(&p).is_ok() {
                    done += 1;
                }
                // A line now and then: slow machines take minutes over it.
                if i % 20 == 19 {
                    say(&format!("progress={}", i + 1));
                }
            }
            say(&format!("churned={done}"))
        }
        // ns-quota PATH MAX_OBJECTS MAX_MAPS
        "ns-quota" => out(c
            .ns_set_quota(
                &a(2),
                a(3).parse().ok(),
                bpfns_model::quota::KindLimits {
                    max_maps: a(4).parse().ok(),
                    ..bpfns_model::quota::KindLimits::NONE
                },
            )
            .map(|n| {
                format!(
                    "{}:{:?}:{:?}",
                    n.path, n.max_objects, n.kind_limits.max_maps
                )
            })),
        // ns-policy PATH allow|deny
        "ns-policy" => out(c
            .ns_set_policy(&a(2), bpfns_model::Policy::tracing(a(3) == "allow"))
            .map(|n| format!("{}:{}", n.path, n.policy))),
        // enable-stats: whether bpfnsd hands BPF run-time statistics over
        "enable-stats" => out(c.enable_stats().map(|_| "on".to_string())),
        // status: namespaces, listeners, kept listeners, counters (names)
        "status" => out(c.status().map(|s| {
            let names: Vec<&str> = s.counters.iter().map(|(n, _)| n.as_str()).collect();
            format!(
                "namespaces={} listeners={} kept={} counters={} paths={}{}",
                s.namespaces,
                s.supervised_listeners,
                s.kept_listeners,
                names.join(","),
                s.pin_root,
                s.state_dir
            )
        })),
        "enter-self" => out(c
            .enter(&a(2), std::process::id() as i32)
            .map(|()| "entered".into())),
        // ns-ps PATH [r]: pid:namespace,...
        "ns-ps" => out(c.ns_ps(&a(2), a(3) == "r").map(|ps| {
            ps.iter()
                .map(|p| format!("{}:{}", p.pid, p.namespace))
                .collect::<Vec<_>>()
                .join(",")
        })),
        // member-plan PATH: namespace,bpffs,state_dir (empty: hidden)
        "member-plan" => out(c
            .member_plan(&a(2))
            .map(|p| format!("{},{},{}", p.path, p.bpffs, p.state_dir))),
        "ns-identify" => out(c
            .ns_identify(a(2).parse().unwrap_or(0))
            .map(|p| p.namespace)),
        // container-ns ID [KEY=VALUE...]: a container's namespace (runtimes only)
        "container-ns" => {
            let facts = bpfns_model::container::ContainerFacts {
                id: a(2),
                name: None,
                annotations: args
                    .iter()
                    .skip(3)
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            out(c.container_namespace(&facts, None, None).map(|(p, _)| p))
        }
        "container-deleted" => out(c.container_deleted(&a(2), None).map(|v| v.join(","))),
        // list-in KIND NS [r]: ids
        "list-in" => out(c.list_in(kind(&a(2)), Some(&a(3)), a(4) == "r").map(|v| {
            v.iter()
                .map(|o| o.id.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })),
        other => fail(&format!("unknown client op {other}")),
    }
}
