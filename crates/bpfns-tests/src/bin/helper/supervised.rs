//! Helper actions for the supervisor tests (`tests/supervisor.rs`): what a namespace member
//! does under the bpfns seccomp filter.
//!
//! ```text
//!   list KIND              walk BPF_{KIND}_GET_NEXT_ID: print ids=A,B,... and end=ERRNO
//!   obj-get-from DIR PATH  chdir DIR, then BPF_OBJ_GET PATH: opened=FD | errno=E
//!   obj-get-chroot DIR PATH  chroot DIR, then BPF_OBJ_GET PATH
//!   obj-get-at DIR NAME    BPF_OBJ_GET NAME relative to an fd of DIR (BPF_F_PATH_FD)
//!   prog-dump ID           open prog ID, print what its info may dump: jited=0|1 xlated=0|1
//!                          ksyms=0|1 (or errno=E)
//!   bpf-only ARGS...       keep only CAP_BPF, then exec ARGS (a path, or this helper's ACTION)
//!   no-caps ARGS...        keep no capability, then exec ARGS
//!   bpf-net ACTION...      the same with CAP_BPF and CAP_NET_ADMIN
//!   no-perfmon ACTION...   the same with every capability but CAP_SYS_ADMIN and CAP_PERFMON
//!                          (a loader in a namespace that denies tracing)
//!   load TYPE              BPF_PROG_LOAD of `r0 = 0; exit` as TYPE: loaded=ID | errno=E
//!   install-listener       try to install a seccomp filter with a listener: installed=1|errno=E
//!   bpf-x32 | bpf-int80    BPF_MAP_GET_NEXT_ID through the x32 / ia32 entry: ret=R | errno=E
//!   storm N                count SIGUSR1 (SA_RESTART) and make N trapped calls; print
//!                          ready=PID first, then done=N errors=E signals=S
//!   cgroup-link DIR        attach a new cgroup_skb program to cgroup DIR (ingress) through a
//!                          link: print id=PROG_ID link=LINK_ID, hold until EOF
//!   perf-tp TP_ID          a perf event on tracepoint TP_ID with a new tracepoint program:
//!                          print id=PROG_ID fd=FD, hold until EOF
//!   prog-query DIR TYPE CNT  BPF_PROG_QUERY on cgroup DIR for attach TYPE with room for CNT
//!                          ids (0: count only): ids=A,B cnt=N ret=0|errno=E
//!   bad-attrs MAP_ID       malformed bpf() calls, one line each: NAME=ret:R | NAME=errno:E
//!   load-attrs             BPF_PROG_LOAD variants (maps by fd and through fd_array, verifier
//!                          logs, bad pointers and fds, limits), one line each: NAME=ret:1 ... |
//!                          NAME=errno:E ..., with what the result says (its maps, its name, the
//!                          log), never ids
//!   create-maps N          create N array maps: print id=FIRST..LAST, hold until EOF
//!   bench KIND ID N        time N GET_NEXT_ID (1 in 100 starting a walk) and N
//!                          GET_FD_BY_ID(ID) calls: next_id_ns=... fd_by_id_ns=...
//!   oom-press SECS HOGS HOG_KIB MAP_KIB
//!                          for SECS seconds (or until stdin's EOF) keep HOGS children
//!                          (`oom-hog HOG_KIB`) alive, starting a new one for each that dies,
//!                          while two threads create array maps of MAP_KIB KiB (each keeping
//!                          up to 4 open, closing them all at EDQUOT); this process takes
//!                          oom_score_adj -1000 (protected=1 when it could). Prints
//!                          ready=PID protected=0|1 first, then
//!                          hogs=started:N killed:N other:N rss_max_kib:N and
//!                          maps=made:N enomem:N edquot:N other:[ERRNO:N,...] held_max:N
//!   oom-hog KIB            take the default oom_score_adj, fault in KIB KiB of anonymous
//!                          memory, hold it until stdin's EOF
//! ```

use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bpfns_model::ObjectKind;
use bpfns_sys::bpf as sysbpf;
use bpfns_sys::caps::{self, CapabilitySet};
use bpfns_sys::testhooks;

use super::{fail, kind, report_open, say, RETURN_ONE};

/// The actions this module handles.
pub const ACTIONS: [&str; 25] = [
    "load-attrs",
    "oom-press",
    "oom-hog",
    "create-maps",
    "map",
    "cg-link",
    "bad-attrs",
    "cgroup-link",
    "perf-tp",
    "prog-query",
    "list",
    "obj-get-from",
    "obj-get-chroot",
    "obj-get-at",
    "prog-dump",
    "bpf-only",
    "bpf-net",
    "no-perfmon",
    "load",
    "no-caps",
    "install-listener",
    "bpf-x32",
    "bpf-int80",
    "storm",
    "bench",
];

fn errno_of(e: &bpfns_sys::SysError) -> i32 {
    e.errno.raw_os_error()
}

fn exec_next(exe: &Path, rest: &[String]) -> ! {
    use std::os::unix::process::CommandExt;
    let Some(first) = rest.first() else {
        fail("nothing to exec")
    };
    let err = if first.starts_with('/') {
        Command::new(first).args(&rest[1..]).exec()
    } else {
        Command::new(exe).args(rest).exec()
    };
    fail(&format!("exec: {err}"))
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut ns: Vec<u64>) {
    ns.sort_unstable();
    let mean = ns.iter().sum::<u64>() / ns.len().max(1) as u64;
    say(&format!(
        "{name}_ns=mean:{mean} p50:{} p90:{} p99:{} n:{}",
        percentile(&ns, 0.5),
        percentile(&ns, 0.9),
        percentile(&ns, 0.99),
        ns.len()
    ));
}

/// Run `action` with `args` (args[0] is the action).
pub fn run(exe: &Path, args: &[String]) {
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| fail("missing argument"))
    };
    match arg(0).as_str() {
        "list" => {
            let k = kind(&arg(1));
            let mut ids = Vec::new();
            let mut cur = 0;
            let end = loop {
                match sysbpf::next_id(k, cur) {
                    Ok(Some(id)) => {
                        ids.push(id.to_string());
                        cur = id;
                    }
                    Ok(None) => break 2,
                    Err(e) => break errno_of(&e),
                }
            };
            say(&format!("ids={}", ids.join(",")));
            say(&format!("end={end}"));
        }
        "obj-get-from" => {
            std::env::set_current_dir(arg(1)).unwrap_or_else(|e| fail(&format!("chdir: {e}")));
            let _ = report_open(sysbpf::obj_get(Path::new(&arg(2))));
        }
        "obj-get-chroot" => {
            testhooks::chroot_process(Path::new(&arg(1))).unwrap_or_else(|e| fail(&e.to_string()));
            let _ = report_open(sysbpf::obj_get(Path::new(&arg(2))));
        }
        "obj-get-at" => {
            let dir = bpfns_sys::thread::open_dir(Path::new(&arg(1)))
                .unwrap_or_else(|e| fail(&e.to_string()));
            let name = std::ffi::CString::new(arg(2)).unwrap_or_else(|_| fail("name"));
            let _ = report_open(
                bpfns_sys::rawbpf::obj_get_at(dir.as_fd(), &name, 0).map_err(|e| {
                    bpfns_sys::SysError {
                        op: "obj-get-at".into(),
                        errno: e,
                    }
                }),
            );
        }
        "prog-dump" => {
            let id = arg(1).parse().unwrap_or_else(|_| fail("ID"));
            match sysbpf::fd_by_id(ObjectKind::Prog, id) {
                Err(e) => say(&format!("errno={}", errno_of(&e))),
                Ok(fd) => match testhooks::prog_dump_probe(&fd) {
                    Ok(d) => say(&format!(
                        "dump=id:{} jited_len:{} jited:{} xlated:{} ksyms:{}",
                        d.id,
                        d.jited_prog_len,
                        u8::from(d.jited_copied),
                        u8::from(d.xlated_copied),
                        u8::from(d.ksyms_copied)
                    )),
                    Err(e) => say(&format!("errno={}", errno_of(&e))),
                },
            }
        }
        "bpf-only" | "bpf-net" | "no-perfmon" | "no-caps" => {
            let keep = match arg(0).as_str() {
                "bpf-only" => CapabilitySet::BPF,
                "bpf-net" => CapabilitySet::BPF | CapabilitySet::NET_ADMIN,
                "no-perfmon" => {
                    CapabilitySet::from_bits_retain((1u64 << (caps::last_cap() + 1)) - 1)
                        .difference(CapabilitySet::SYS_ADMIN | CapabilitySet::PERFMON)
                }
                _ => CapabilitySet::empty(),
            };
            caps::restrict_for_exec(keep).unwrap_or_else(|e| fail(&e.to_string()));
            exec_next(exe, &args[1..]);
        }
        // `load TYPE [EXPECTED_ATTACH_TYPE]`
        "load" => {
            let t: u32 = arg(1).parse().unwrap_or_else(|_| fail("TYPE"));
            let eat: u32 = args
                .get(2)
                .map_or(0, |a| a.parse().unwrap_or_else(|_| fail("EAT")));
            // Syscall programs must be sleepable.
            let flags = if t == 31 { 16 } else { 0 };
            match sysbpf::prog_load(
                t,
                "bpfns_load",
                &sysbpf::RETURN_ZERO,
                sysbpf::ProgLoadOpts {
                    prog_flags: flags,
                    expected_attach_type: eat,
                    ..Default::default()
                },
            ) {
                Ok(fd) => say(&format!(
                    "loaded={}",
                    sysbpf::info::<sysbpf::bpf_prog_info>(&fd)
                        .map(|i| i.id)
                        .unwrap_or(0)
                )),
                Err(e) => say(&format!("errno={}", errno_of(&e))),
            }
        }
        "install-listener" => {
            let _ = bpfns_sys::seccomp::set_no_new_privs_raw();
            let f = bpfns_sys::seccomp::Filter::notify_syscalls(&[libc::SYS_getppid])
                .unwrap_or_else(|e| fail(&e.to_string()));
            match bpfns_sys::seccomp::install_filter(
                &f,
                bpfns_sys::seccomp::FilterFlags::NEW_LISTENER,
            ) {
                Ok(_) => say("installed=1"),
                Err(e) => say(&format!("errno={}", errno_of(&e))),
            }
        }
        "bpf-x32" | "bpf-int80" => {
            let mut attr = [0u8; 16];
            let r = if arg(0) == "bpf-x32" {
                testhooks::bpf_via_x32(12, &mut attr)
            } else {
                testhooks::bpf_via_int80(12, &mut attr)
            };
            match r {
                Ok(v) => say(&format!("ret={v}")),
                Err(e) => say(&format!("errno={}", e.raw_os_error())),
            }
        }
        "storm" => {
            let n: u64 = arg(1).parse().unwrap_or_else(|_| fail("N"));
            testhooks::count_signals(libc::SIGUSR1).unwrap_or_else(|e| fail(&e.to_string()));
            say(&format!("ready={}", std::process::id()));
            let mut errors = 0;
            for _ in 0..n {
                if sysbpf::next_id(ObjectKind::Map, 0).is_err() {
                    errors += 1;
                }
            }
            say(&format!(
                "done={n} errors={errors} signals={}",
                testhooks::signals_counted()
            ));
        }
        "bad-attrs" => {
            let map: u32 = arg(1).parse().unwrap_or_else(|_| fail("MAP_ID"));
            let show = |name: &str, r: Result<i64, bpfns_sys::Errno>| match r {
                Ok(v) => say(&format!("{name}=ret:{}", u8::from(v >= 0))),
                Err(e) => say(&format!("{name}=errno:{}", e.raw_os_error())),
            };
            let mut a = [0u8; 64];
            let p = |a: &mut [u8]| a.as_mut_ptr() as u64;
            show("null", testhooks::bpf_raw_ptr(12, 0, 16));
            show("unmapped", testhooks::bpf_raw_ptr(12, 8, 16));
            let mut big = vec![0u8; 8192];
            show("big", testhooks::bpf_raw_ptr(12, p(&mut big), 8192));
            a[40] = 1;
            show("tail", testhooks::bpf_raw_ptr(12, p(&mut a), 64));
            a = [0u8; 64];
            a[0..4].copy_from_slice(&(i32::MAX as u32).to_ne_bytes());
            show("intmax", testhooks::bpf_raw_ptr(12, p(&mut a), 16));
            a = [0u8; 64];
            a[0..4].copy_from_slice(&1u32.to_ne_bytes());
            a[8..12].copy_from_slice(&1u32.to_ne_bytes());
            show("prog-flags", testhooks::bpf_raw_ptr(13, p(&mut a), 16));
            a = [0u8; 64];
            show("objget-null", testhooks::bpf_raw_ptr(7, p(&mut a), 20));
            let path = c"/sys/fs/bpf/none";
            a[0..8].copy_from_slice(&(path.as_ptr() as u64).to_ne_bytes());
            a[12..16].copy_from_slice(
                &(bpfns_sys::rawbpf::BPF_F_RDONLY | bpfns_sys::rawbpf::BPF_F_WRONLY).to_ne_bytes(),
            );
            show("objget-flags", testhooks::bpf_raw_ptr(7, p(&mut a), 20));
            a = [0u8; 64];
            a[0..4].copy_from_slice(&map.to_ne_bytes());
            show("short-size", testhooks::bpf_raw_ptr(14, p(&mut a), 4));
            a = [0u8; 64];
            a[0..4].copy_from_slice(&map.to_ne_bytes());
            a[8..12].copy_from_slice(&(bpfns_sys::rawbpf::BPF_F_RDONLY).to_ne_bytes());
            show("rdonly", testhooks::bpf_raw_ptr(14, p(&mut a), 12));
            say("bad=done");
        }
        "load-attrs" => load_attrs(),
        "oom-press" => {
            let n = |i: usize| -> u64 {
                arg(i)
                    .parse()
                    .unwrap_or_else(|_| fail("oom-press SECS HOGS HOG_KIB MAP_KIB"))
            };
            oom_press(exe, Duration::from_secs(n(1)), n(2) as usize, n(3), n(4));
        }
        "oom-hog" => {
            let kib: usize = arg(1).parse().unwrap_or_else(|_| fail("KIB"));
            // The OOM killer weighs this process by its memory alone (its parent protects
            // itself, and the value is inherited).
            let _ = std::fs::write("/proc/self/oom_score_adj", "0");
            let mut mem = vec![0u8; kib << 10];
            let page = bpfns_sys::process::page_size();
            for i in (0..mem.len()).step_by(page) {
                mem[i] = 1;
            }
            std::hint::black_box(&mut mem);
            super::hold_until_eof();
            drop(mem);
        }
        "create-maps" => {
            let n: usize = arg(1).parse().unwrap_or_else(|_| fail("N"));
            let maps: Vec<_> = (0..n)
                .map(|_| {
                    sysbpf::map_create(2, "bpfns_many", 4, 8, 1)
                        .unwrap_or_else(|e| fail(&e.to_string()))
                })
                .collect();
            let ids: Vec<u32> = maps
                .iter()
                .map(|m| {
                    sysbpf::info::<sysbpf::bpf_map_info>(m)
                        .map(|i| i.id)
                        .unwrap_or(0)
                })
                .collect();
            say(&format!(
                "id={}..{}",
                ids.first().copied().unwrap_or(0),
                ids.last().copied().unwrap_or(0)
            ));
            super::hold_until_eof();
        }
        "map" => {
            // A map of TYPE (key 4, value 8, one entry: fits array and hash alike).
            let t: u32 = arg(1).parse().unwrap_or_else(|_| fail("TYPE"));
            match sysbpf::map_create(t, "bpfns_pol", 4, 8, 1) {
                Ok(fd) => say(&format!(
                    "map={}",
                    sysbpf::info::<sysbpf::bpf_map_info>(&fd)
                        .map(|i| i.id)
                        .unwrap_or(0)
                )),
                Err(e) => say(&format!("errno={}", errno_of(&e))),
            }
        }
        "cg-link" => {
            // A cgroup_skb program linked to cgroup DIR with attach type ATTACH; the answer of
            // the step that failed, or the link's id.
            let dir = std::fs::File::open(arg(1)).unwrap_or_else(|e| fail(&format!("open: {e}")));
            let at: u32 = arg(2).parse().unwrap_or_else(|_| fail("ATTACH"));
            super::drop_perfmon();
            let out = sysbpf::prog_load(8, "bpfns_cg", &RETURN_ONE, Default::default())
                .and_then(|prog| sysbpf::link_create(&prog, &dir, at));
            match out {
                Ok(link) => say(&format!(
                    "link={}",
                    sysbpf::info::<sysbpf::bpf_link_info>(&link)
                        .map(|i| i.id)
                        .unwrap_or(0)
                )),
                Err(e) => say(&format!("errno={}", errno_of(&e))),
            }
        }
        "cgroup-link" => {
            let dir = std::fs::File::open(arg(1)).unwrap_or_else(|e| fail(&format!("open: {e}")));
            // BPF_PROG_TYPE_CGROUP_SKB, `r0 = 1; exit` (pass).
            // No perfmon power: the namespace may deny tracing.
            super::drop_perfmon();
            let prog = sysbpf::prog_load(8, "bpfns_cg", &RETURN_ONE, Default::default())
                .unwrap_or_else(|e| fail(&e.to_string()));
            // BPF_CGROUP_INET_INGRESS
            let link = sysbpf::link_create(&prog, &dir, 0).unwrap_or_else(|e| fail(&e.to_string()));
            let pid = sysbpf::info::<sysbpf::bpf_prog_info>(&prog).map(|i| i.id);
            let lid = sysbpf::info::<sysbpf::bpf_link_info>(&link).map(|i| i.id);
            say(&format!(
                "id={} link={}",
                pid.unwrap_or(0),
                lid.unwrap_or(0)
            ));
            super::hold_until_eof();
        }
        "perf-tp" => {
            let tp: u64 = arg(1).parse().unwrap_or_else(|_| fail("TP_ID"));
            // BPF_PROG_TYPE_TRACEPOINT
            let prog = sysbpf::prog_load(5, "bpfns_tp", &sysbpf::RETURN_ZERO, Default::default())
                .unwrap_or_else(|e| fail(&e.to_string()));
            let ev = testhooks::perf_tracepoint_with_prog(tp, &prog)
                .unwrap_or_else(|e| fail(&e.to_string()));
            let id = sysbpf::info::<sysbpf::bpf_prog_info>(&prog)
                .map(|i| i.id)
                .unwrap_or(0);
            say(&format!("id={id} fd={}", sysbpf::raw(&ev)));
            super::hold_until_eof();
        }
        "prog-query" => {
            let dir = std::fs::File::open(arg(1)).unwrap_or_else(|e| fail(&format!("open: {e}")));
            let attach: u32 = arg(2).parse().unwrap_or_else(|_| fail("TYPE"));
            let cnt: u32 = arg(3).parse().unwrap_or_else(|_| fail("CNT"));
            let mut ids = vec![0u32; cnt as usize];
            let mut attr = [0u8; 64];
            attr[0..4].copy_from_slice(&(sysbpf::raw(&dir) as u32).to_ne_bytes());
            attr[4..8].copy_from_slice(&attach.to_ne_bytes());
            if cnt > 0 {
                attr[16..24].copy_from_slice(&(ids.as_mut_ptr() as u64).to_ne_bytes());
            }
            attr[24..28].copy_from_slice(&cnt.to_ne_bytes());
            let r = bpfns_sys::rawbpf::sys_bpf(16, &mut attr);
            let got = u32::from_ne_bytes([attr[24], attr[25], attr[26], attr[27]]);
            let shown: Vec<String> = ids
                .iter()
                .take(got.min(cnt) as usize)
                .map(u32::to_string)
                .collect();
            say(&format!("ids={}", shown.join(",")));
            say(&format!("cnt={got}"));
            match r {
                Ok(v) => say(&format!("ret={v}")),
                Err(e) => say(&format!("errno={}", e.raw_os_error())),
            }
        }
        "bench" => {
            let k = kind(&arg(1));
            let id: u32 = arg(2).parse().unwrap_or_else(|_| fail("ID"));
            let n: usize = arg(3).parse().unwrap_or_else(|_| fail("N"));
            let mut next = Vec::with_capacity(n);
            let mut open = Vec::with_capacity(n);
            // Warm up (first calls fault in pages, fill caches).
            for _ in 0..n / 10 + 1 {
                let _ = sysbpf::next_id(k, 0);
                let _ = sysbpf::fd_by_id(k, id);
            }
            // Within a walk (start > 0): the supervisor answers from its cached view; a walk
            // that starts at 0 re-reads the kernel side's iterator.
            for i in 0..n {
                let t = Instant::now();
                let r = sysbpf::next_id(k, if i % 100 == 0 { 0 } else { 1 });
                next.push(t.elapsed().as_nanos() as u64);
                if r.is_err() {
                    fail(&format!("next_id: {r:?}"));
                }
            }
            for _ in 0..n {
                let t = Instant::now();
                let r = sysbpf::fd_by_id(k, id);
                open.push(t.elapsed().as_nanos() as u64);
                match r {
                    Ok(fd) => drop(fd),
                    Err(e) => fail(&format!("fd_by_id: {e}")),
                }
            }
            summary("next_id", next);
            summary("fd_by_id", open);
        }
        other => fail(&format!("unknown action {other}")),
    }
}

/// How one thread's map creations of `oom-press` were answered.
#[derive(Default)]
struct MapTally {
    made: u64,
    enomem: u64,
    edquot: u64,
    other: std::collections::BTreeMap<i32, u64>,
    held_max: usize,
}

/// `oom-press`: hogs that keep this process's memory cgroup at its limit while maps are
/// created (by bpfnsd's child in this cgroup, where bpfnsd makes them).
fn oom_press(exe: &Path, secs: Duration, hogs: usize, hog_kib: u64, map_kib: u64) {
    use std::process::{Child, ChildStdin, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let protected = std::fs::write("/proc/self/oom_score_adj", "-1000").is_ok();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        super::hold_until_eof();
        s.store(true, Ordering::SeqCst);
    });
    let deadline = Instant::now() + secs;
    let done = move |stop: &AtomicBool| stop.load(Ordering::SeqCst) || Instant::now() >= deadline;
    say(&format!(
        "ready={} protected={}",
        std::process::id(),
        u8::from(protected)
    ));
    let entries = (map_kib / 4).max(1) as u32;
    let creators: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                super::drop_perfmon();
                let mut t = MapTally::default();
                let mut held = Vec::new();
                while !done(&stop) {
                    // An array of `entries` values of 4 KiB, allocated at creation.
                    let mut attr = [0u8; 72];
                    attr[0..4].copy_from_slice(&2u32.to_ne_bytes());
                    attr[4..8].copy_from_slice(&4u32.to_ne_bytes());
                    attr[8..12].copy_from_slice(&4096u32.to_ne_bytes());
                    attr[12..16].copy_from_slice(&entries.to_ne_bytes());
                    match bpfns_sys::rawbpf::sys_bpf_fd(
                        bpfns_sys::rawbpf::cmd::BPF_MAP_CREATE,
                        &mut attr,
                    ) {
                        Ok(fd) => {
                            t.made += 1;
                            held.push(fd);
                            t.held_max = t.held_max.max(held.len());
                            if held.len() >= 4 {
                                held.clear();
                            }
                        }
                        Err(e) if e == bpfns_sys::Errno::DQUOT => {
                            t.edquot += 1;
                            held.clear();
                            // bpfnsd collects the freed maps' records meanwhile.
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) if e == bpfns_sys::Errno::NOMEM => t.enomem += 1,
                        Err(e) => *t.other.entry(e.raw_os_error()).or_default() += 1,
                    }
                }
                t
            })
        })
        .collect();
    let spawn = || -> (Child, ChildStdin) {
        let mut c = Command::new(exe)
            .args(["oom-hog", &hog_kib.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("starting a hog: {e}")));
        let stdin = c.stdin.take().unwrap_or_else(|| fail("a hog's stdin"));
        (c, stdin)
    };
    let (mut started, mut killed, mut other, mut rss_max) = (0u64, 0u64, 0u64, 0u64);
    let mut running: Vec<(Child, ChildStdin)> = Vec::new();
    let mut last_look = Instant::now();
    while !done(&stop) {
        running.retain_mut(|(c, _)| match c.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                if status.signal() == Some(libc::SIGKILL) {
                    killed += 1;
                } else {
                    other += 1;
                }
                false
            }
            Err(_) => false,
        });
        while running.len() < hogs {
            running.push(spawn());
            started += 1;
        }
        if last_look.elapsed() >= Duration::from_millis(200) {
            last_look = Instant::now();
            for (c, _) in &running {
                let status = bpfns_sys::procfs::read_status(c.id() as i32).unwrap_or_default();
                let rss = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                    .unwrap_or(0);
                rss_max = rss_max.max(rss);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (mut c, stdin) in running {
        drop(stdin);
        let _ = c.kill();
        let _ = c.wait();
    }
    let mut tally = MapTally::default();
    for h in creators {
        let t = h
            .join()
            .unwrap_or_else(|_| fail("a creator thread panicked"));
        tally.made += t.made;
        tally.enomem += t.enomem;
        tally.edquot += t.edquot;
        tally.held_max += t.held_max;
        for (e, n) in t.other {
            *tally.other.entry(e).or_default() += n;
        }
    }
    say(&format!(
        "hogs=started:{started} killed:{killed} other:{other} rss_max_kib:{rss_max}"
    ));
    let other: Vec<String> = tally
        .other
        .iter()
        .map(|(e, n)| format!("{e}:{n}"))
        .collect();
    say(&format!(
        "maps=made:{} enomem:{} edquot:{} other:[{}] held_max:{}",
        tally.made,
        tally.enomem,
        tally.edquot,
        other.join(","),
        tally.held_max
    ));
}

/// `BPF_PROG_LOAD` variants whose answers must be the kernel's, also when bpfnsd makes the call
/// from its own copy of the request.
fn load_attrs() {
    use bpfns_sys::rawbpf;
    const PROG_LOAD: u32 = 5;
    let put32 =
        |a: &mut [u8], off: usize, v: u32| a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    let put64 =
        |a: &mut [u8], off: usize, v: u64| a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    let insn = |code: u8, dst: u8, src: u8, off: i16, imm: i32| -> u64 {
        u64::from(code)
            | (u64::from(dst | (src << 4)) << 8)
            | (u64::from(off as u16) << 16)
            | (u64::from(imm as u32) << 32)
    };
    let map = sysbpf::map_create(2, "rt_load_m", 4, 8, 1).unwrap_or_else(|e| fail(&e.to_string()));
    let map_id = sysbpf::info::<sysbpf::bpf_map_info>(&map).map_or(0, |i| i.id);
    let mfd = sysbpf::raw(&map);
    let license = c"GPL";
    let base = |insns: &[u64]| -> Vec<u8> {
        let mut a = vec![0u8; rawbpf::ATTR_SIZE];
        put32(&mut a, 0, 1);
        put32(&mut a, 4, insns.len() as u32);
        put64(&mut a, 8, insns.as_ptr() as u64);
        put64(&mut a, 16, license.as_ptr() as u64);
        a
    };
    // What a loaded program says about itself: its maps (as "ok" when they are the map made
    // here) and its name.
    let describe = |fd: &std::os::fd::OwnedFd| -> String {
        use libbpf_rs::libbpf_sys::bpf_prog_info as I;
        use std::mem::offset_of;
        let (nr, ptr) = (offset_of!(I, nr_map_ids), offset_of!(I, map_ids));
        let name_at = offset_of!(I, name);
        let mut ids = [0u32; 4];
        let mut info = [0u8; 240];
        let mut a = [0u8; 16];
        put32(&mut info, nr, ids.len() as u32);
        put64(&mut info, ptr, ids.as_mut_ptr() as u64);
        put32(&mut a, 0, sysbpf::raw(fd) as u32);
        put32(&mut a, 4, info.len() as u32);
        put64(&mut a, 8, info.as_mut_ptr() as u64);
        if rawbpf::sys_bpf(15, &mut a).is_err() {
            return "info-failed".into();
        }
        let n = u32::from_ne_bytes([info[nr], info[nr + 1], info[nr + 2], info[nr + 3]]) as usize;
        let maps: Vec<&str> = ids[..n.min(4)]
            .iter()
            .map(|&i| if i == map_id { "mine" } else { "other" })
            .collect();
        let name: String = info[name_at..name_at + 16]
            .iter()
            .take_while(|&&b| b != 0)
            .map(|&b| b as char)
            .collect();
        format!("maps:[{}] name:{name}", maps.join(","))
    };
    let show = |name: &str, a: &mut [u8]| match rawbpf::sys_bpf_fd(PROG_LOAD, a) {
        Ok(fd) => say(&format!("{name}=ret:1 {}", describe(&fd))),
        Err(e) => say(&format!("{name}=errno:{}", e.raw_os_error())),
    };
    let exit0 = [insn(0xb7, 0, 0, 0, 0), insn(0x95, 0, 0, 0, 0)];
    let mut a = base(&exit0);
    a[48..51].copy_from_slice(b"abc");
    show("plain", &mut a);
    // r1 = map (by fd); r0 = 0; exit
    let by_fd = [
        insn(0x18, 1, 1, 0, mfd),
        insn(0, 0, 0, 0, 0),
        insn(0xb7, 0, 0, 0, 0),
        insn(0x95, 0, 0, 0, 0),
    ];
    show("map-fd", &mut base(&by_fd));
    // r1 = &map value (by fd)
    let value = [
        insn(0x18, 1, 2, 0, mfd),
        insn(0, 0, 0, 0, 0),
        insn(0xb7, 0, 0, 0, 0),
        insn(0x95, 0, 0, 0, 0),
    ];
    show("map-value", &mut base(&value));
    // Through fd_array (index 2), entries 0 and 1 not fds of this process's.
    let fds: [i32; 3] = [-1, 9999, mfd];
    let by_idx = [
        insn(0x18, 1, 5, 0, 2),
        insn(0, 0, 0, 0, 0),
        insn(0xb7, 0, 0, 0, 0),
        insn(0x95, 0, 0, 0, 0),
    ];
    let mut a = base(&by_idx);
    put64(&mut a, 120, fds.as_ptr() as u64);
    show("fd-array", &mut a);
    let mut a = base(&by_idx);
    show("idx-without-array", &mut a);
    // fd_array_cnt (6.14): every entry must be a map or BTF.
    let all_maps: [i32; 2] = [mfd, mfd];
    let mut a = base(&exit0);
    put64(&mut a, 120, all_maps.as_ptr() as u64);
    put32(&mut a, 148, 2);
    show("fd-array-cnt", &mut a);
    let mut a = base(&exit0);
    put64(&mut a, 120, fds.as_ptr() as u64);
    put32(&mut a, 148, 3);
    show("fd-array-cnt-bad", &mut a);
    let bad_fd = [
        insn(0x18, 1, 1, 0, 9999),
        insn(0, 0, 0, 0, 0),
        insn(0xb7, 0, 0, 0, 0),
        insn(0x95, 0, 0, 0, 0),
    ];
    show("bad-fd", &mut base(&bad_fd));
    let not_map = [
        insn(0x18, 1, 1, 0, 0),
        insn(0, 0, 0, 0, 0),
        insn(0xb7, 0, 0, 0, 0),
        insn(0x95, 0, 0, 0, 0),
    ];
    show("not-a-map", &mut base(&not_map));
    // The verifier's log: `exit` with R0 never written.
    let bad_prog = [insn(0x95, 0, 0, 0, 0)];
    for (name, size) in [("log", 4096usize), ("short-log", 128)] {
        let mut log = vec![0u8; size];
        let mut a = base(&bad_prog);
        put32(&mut a, 24, 1);
        put32(&mut a, 28, size as u32);
        put64(&mut a, 32, log.as_mut_ptr() as u64);
        let r = rawbpf::sys_bpf_fd(PROG_LOAD, &mut a);
        let text = String::from_utf8_lossy(&log);
        let text = text.trim_end_matches('\0');
        say(&format!(
            "{name}={} r0:{} len:{} true_size:{}",
            match r {
                Ok(_) => "ret:1".to_string(),
                Err(e) => format!("errno:{}", e.raw_os_error()),
            },
            text.contains("R0 !read_ok"),
            text.len(),
            u32::from_ne_bytes([a[140], a[141], a[142], a[143]])
        ));
    }
    let mut a = base(&exit0);
    put64(&mut a, 8, 0);
    show("insns-null", &mut a);
    let mut a = base(&exit0);
    put64(&mut a, 8, 8);
    show("insns-unmapped", &mut a);
    let mut a = base(&exit0);
    put32(&mut a, 4, 1_000_001);
    show("too-many", &mut a);
    let mut a = base(&exit0);
    put64(&mut a, 16, 0);
    show("license-null", &mut a);
    let mut log = [0u8; 256];
    let mut a = base(&exit0);
    put32(&mut a, 24, 1);
    put64(&mut a, 32, log.as_mut_ptr() as u64);
    show("log-without-size", &mut a);
    let mut a = base(&exit0);
    a[48..52].copy_from_slice(b"a-b\0");
    show("bad-name", &mut a);
    let mut a = base(&exit0);
    put32(&mut a, 44, 1 << 30);
    show("bad-flags", &mut a);
    let mut a = base(&exit0);
    put32(&mut a, 0, 9999);
    show("bad-type", &mut a);
    // Short attrs: the kernel pads its copy with zeros (a cut pointer, no license).
    for (name, size) in [("size-12", 12usize), ("size-16", 16), ("size-24", 24)] {
        let mut a = base(&exit0);
        a.truncate(size);
        show(name, &mut a);
    }
    say("load=done");
}
