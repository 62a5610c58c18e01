//! Helper actions for the red-team rows on program loads that race the kernel side's backstop
//! (`tests/redteam.rs`, scenes `loadrace` and `oracle`). Every attack reports `key=value`
//! lines; the suite judges them.
//!
//! ```text
//!   rt-token-configurator SOCK       (root, outside namespaces) the privileged part of making a
//!                                    BPF token: set delegate_*=any on every bpffs context sent
//!                                    to SOCK and create it; configurator=ready, until EOF
//!   rt-owner-race CFG PID FD TAG N   a BPF token of a user namespace this process owns (a child
//!                                    makes it in a new user namespace; CFG configures its
//!                                    bpffs), used from outside that namespace with every
//!                                    capability dropped: load a socket filter that reads PID's
//!                                    fd FD (an array map) through kernel memory, N times, each
//!                                    in a child whose second thread races BPF_OBJ_PIN of the
//!                                    new fd to /sys/fs/bpf/rt_TAG_prog; then this process and a
//!                                    second one open and run what was pinned
//!   rt-flip-race TAG N TARGET        load a socket filter while a thread flips its type to
//!                                    TARGET (syscall, kprobe, xdp, or syscall and kprobe in turn) and another races
//!                                    BPF_OBJ_PIN to /sys/fs/bpf/rt_TAG_flip; open and run what
//!                                    was pinned (also from a second process)
//!   rt-fd-oracle PID N               BPF_TASK_FD_QUERY of PID's fds 0..N: oracle=TALLY distinct=K
//!   rt-map-flip-race N               create an array map N times (each in a child) while a
//!                                    thread flips the attr's map type to hash:
//!                                    mapflip=attempts:.. arrays:.. hash_kept:.. refused:.. killed:..
//! Internal: rt-owner-token-child, rt-race-load, rt-flip-load, rt-pin-use, rt-map-flip-load.
//! ```

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bpfns_sys::bpf as sysbpf;
use bpfns_sys::rawbpf;
use bpfns_sys::testhooks;

use super::redteam::{attr, describe, errno_str, kread_program, put_u32, put_u64, SECRET};
use super::{fail, hold_until_eof, say};

/// The actions this module handles.
pub const ACTIONS: [&str; 10] = [
    "rt-map-flip-race",
    "rt-map-flip-load",
    "rt-token-configurator",
    "rt-owner-token-child",
    "rt-owner-race",
    "rt-race-load",
    "rt-pin-use",
    "rt-flip-race",
    "rt-flip-load",
    "rt-fd-oracle",
];

const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_PROG_LOAD: u32 = 5;
const BPF_OBJ_PIN: u32 = 6;
const BPF_PROG_TEST_RUN: u32 = 10;
const BPF_TASK_FD_QUERY: u32 = 20;
const BPF_TOKEN_CREATE: u32 = 36;
const PROG_SOCKET_FILTER: u32 = 1;
const PROG_KPROBE: u32 = 2;
const PROG_XDP: u32 = 6;
const PROG_SYSCALL: u32 = 31;
const MAP_ARRAY: u32 = 2;
const F_SLEEPABLE: u32 = 16;
const CLONE_NEWNS: i32 = 0x0002_0000;
const CLONE_NEWUSER: i32 = 0x1000_0000;

pub fn run(exe: &Path, args: &[String]) {
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| fail("missing argument"))
    };
    let num = |i: usize| -> i64 { arg(i).parse().unwrap_or_else(|_| fail("a number")) };
    match arg(0).as_str() {
        "rt-token-configurator" => configurator(&arg(1)),
        "rt-owner-token-child" => owner_token_child(&arg(1)),
        "rt-owner-race" => owner_race(
            exe,
            &arg(1),
            num(2) as i32,
            num(3) as i32,
            &arg(4),
            num(5) as u32,
        ),
        "rt-race-load" => race_load(
            &arg(1),
            num(2) as i32,
            num(3) as i32,
            num(4) as i32,
            num(5) as i32,
        ),
        "rt-pin-use" => pin_use(&arg(1), &arg(2)),
        "rt-flip-race" => flip_race(exe, &arg(1), num(2) as u32, &arg(3)),
        "rt-flip-load" => flip_load(&arg(1), &arg(2)),
        "rt-fd-oracle" => fd_oracle(num(1) as u32, num(2) as u32),
        "rt-map-flip-race" => map_flip_race(exe, num(1) as u32),
        "rt-map-flip-load" => map_flip_load(),
        other => fail(&format!("unknown action {other}")),
    }
}

// ---- the token of a user namespace the caller owns ------------------------------------------

/// The privileged part of a token of a user namespace a member owns, for whoever connects to
/// `sock`: `u` maps the peer's new user namespace's root to the peer's own ids (mapping uid 0
/// wants CAP_SETFCAP, which uid-0 members without it lack); `f` with a bpffs context sets
/// delegate_*=any on it (needs CAP_SYS_ADMIN in the initial user namespace) and creates it.
/// Each answered `k` or `e`.
fn configurator(sock: &str) {
    let _ = std::fs::remove_file(sock);
    let l = UnixListener::bind(sock).unwrap_or_else(|e| fail(&format!("bind {sock}: {e}")));
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o777));
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || configure(s));
        }
    });
    say("configurator=ready");
    hold_until_eof();
    let _ = std::fs::remove_file(sock);
}

fn configure(mut s: UnixStream) {
    loop {
        let mut b = [0u8; 1];
        let mut fds = Vec::new();
        let ok = match bpfns_sys::unix::recv_exact_with_fds(s.as_fd(), &mut b, &mut fds) {
            Ok(true) if b[0] == b'u' => match bpfns_sys::unix::peer_cred(s.as_fd()) {
                Ok((pid, uid, gid)) => {
                    let w = |f: &str, v: &str| std::fs::write(format!("/proc/{pid}/{f}"), v);
                    w("setgroups", "deny")
                        .and_then(|()| w("uid_map", &format!("0 {uid} 1")))
                        .and_then(|()| w("gid_map", &format!("0 {gid} 1")))
                        .is_ok()
                }
                Err(_) => false,
            },
            Ok(true) if b[0] == b'f' && !fds.is_empty() => {
                let fs = &fds[0];
                [
                    "delegate_cmds",
                    "delegate_maps",
                    "delegate_progs",
                    "delegate_attachs",
                ]
                .iter()
                .try_for_each(|k| testhooks::fsconfig_string(fs, k, "any"))
                .and_then(|()| testhooks::fsconfig_create(fs))
                .is_ok()
            }
            _ => return,
        };
        if s.write_all(if ok { b"k" } else { b"e" }).is_err() {
            return;
        }
    }
}

/// A BPF token of a new user namespace owned by this process's effective uid, made by a child
/// inside it; this process stays outside.
fn owner_token(exe: &Path, cfg: &str) -> Result<OwnedFd, String> {
    let (mine, theirs) = UnixStream::pair().map_err(|e| format!("socketpair:{e}"))?;
    let mut child = Command::new(exe)
        .args(["rt-owner-token-child", cfg])
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn:{e}"))?;
    let mut fds = Vec::new();
    let mut b = [0u8; 1];
    let got = bpfns_sys::unix::recv_exact_with_fds(mine.as_fd(), &mut b, &mut fds);
    let mut out = String::new();
    if let Some(o) = child.stdout.take() {
        for l in BufReader::new(o).lines().map_while(Result::ok) {
            out.push_str(&l);
        }
    }
    let _ = child.wait();
    match got {
        Ok(true) if !fds.is_empty() => Ok(fds.remove(0)),
        _ => Err(out
            .strip_prefix("token=")
            .unwrap_or("no token received")
            .to_string()),
    }
}

/// In a new user namespace (the configurator maps its root to our own ids) and mount
/// namespace: a bpffs context the configurator makes delegating, its mount, a token; sent on
/// stdin (a socket).
fn owner_token_child(cfg: &str) {
    let give_up = |what: &str, e: String| -> ! {
        say(&format!("token=error:{what}:{e}"));
        std::process::exit(3)
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = |key: &str| -> Option<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().nth(1)?.parse().ok())
    };
    let ids = effective("Uid:").zip(effective("Gid:"));
    if let Err(e) = testhooks::unshare(CLONE_NEWUSER) {
        give_up("unshare-user", errno_str(e));
    }
    let mut s = UnixStream::connect(cfg).unwrap_or_else(|e| give_up("connect", e.to_string()));
    let answer = |s: &mut UnixStream| {
        let mut b = [0u8; 1];
        std::io::Read::read_exact(s, &mut b).is_ok() && b[0] == b'k'
    };
    // Our own ids, mapped by ourselves where we may (a user namespace nested in another); the
    // configurator, in the initial one, maps them where that needs CAP_SETFCAP (uid 0).
    let w = |f: &str, v: String| std::fs::write(format!("/proc/self/{f}"), v);
    let mapped = ids.is_some_and(|(uid, gid)| {
        w("setgroups", "deny".into())
            .and_then(|()| w("uid_map", format!("0 {uid} 1")))
            .and_then(|()| w("gid_map", format!("0 {gid} 1")))
            .is_ok()
    });
    if !mapped && (s.write_all(b"u").is_err() || !answer(&mut s)) {
        give_up(
            "id-map",
            "neither we nor the configurator could map us".into(),
        );
    }
    if let Err(e) = testhooks::unshare(CLONE_NEWNS) {
        give_up("unshare-mnt", errno_str(e));
    }
    let fs = testhooks::fsopen_bpffs().unwrap_or_else(|e| give_up("fsopen", errno_str(e)));
    if bpfns_sys::unix::send_with_fds(s.as_fd(), b"f", &[fs.as_fd()]).is_err() || !answer(&mut s) {
        give_up("fsconfig", "the configurator refused".into());
    }
    let mnt = testhooks::fsmount(&fs).unwrap_or_else(|e| give_up("fsmount", errno_str(e)));
    let dir = testhooks::reopen_dir(&mnt).unwrap_or_else(|e| give_up("reopen", errno_str(e)));
    let mut a = vec![0u8; 8];
    put_u32(&mut a, 4, sysbpf::raw(&dir) as u32);
    let tok = rawbpf::sys_bpf_fd(BPF_TOKEN_CREATE, &mut a)
        .unwrap_or_else(|e| give_up("token-create", errno_str(e)));
    let stdin = std::io::stdin();
    if bpfns_sys::unix::send_with_fds(stdin.as_fd(), b"t", &[tok.as_fd()]).is_err() {
        give_up("send-token", "the parent".into());
    }
}

/// Drop every capability of this (single-threaded) process; the uid stays.
fn drop_all_caps() -> String {
    use bpfns_sys::caps::{self, CapabilitySet};
    let none = bpfns_sys::caps::CapabilitySets {
        effective: CapabilitySet::empty(),
        permitted: CapabilitySet::empty(),
        inheritable: CapabilitySet::empty(),
    };
    if let Err(e) = caps::set_current_thread(none) {
        fail(&format!("dropping capabilities: {e}"));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

// ---- racing BPF_OBJ_PIN against the backstop -------------------------------------------------

/// The fd number the next new file of this process gets.
fn next_fd() -> i32 {
    let d = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .unwrap_or_else(|e| fail(&e.to_string()));
    d.as_raw_fd()
}

/// A thread that pins fd number `fd` at `path` as soon as it names something pinnable, then
/// waits forever (the process ends with its main thread, or is killed).
fn pinner(fd: i32, path: &str) {
    let path = std::ffi::CString::new(path).unwrap_or_else(|_| fail("pin path"));
    let go = std::sync::Arc::new(AtomicBool::new(false));
    let g = go.clone();
    std::thread::spawn(move || {
        let mut a = vec![0u8; 16];
        put_u64(&mut a, 0, path.as_ptr() as u64);
        put_u32(&mut a, 8, fd as u32);
        g.store(true, Ordering::SeqCst);
        loop {
            if rawbpf::sys_bpf(BPF_OBJ_PIN, &mut a).is_ok() {
                loop {
                    std::thread::sleep(Duration::from_secs(60));
                }
            }
        }
    });
    while !go.load(Ordering::SeqCst) {
        std::hint::spin_loop();
    }
}

/// Run socket filter `prog` once; then what it wrote into array map `out` (32 bytes).
fn run_and_read(prog: BorrowedFd<'_>, out: BorrowedFd<'_>) -> String {
    let packet = [0u8; 64];
    let mut t = vec![0u8; 80];
    put_u32(&mut t, 0, sysbpf::raw(prog) as u32);
    put_u32(&mut t, 8, packet.len() as u32);
    put_u64(&mut t, 16, packet.as_ptr() as u64);
    put_u32(&mut t, 32, 1);
    if let Err(e) = rawbpf::sys_bpf(BPF_PROG_TEST_RUN, &mut t) {
        return format!("run-{}", errno_str(e));
    }
    let key = 0u32.to_ne_bytes();
    let mut val = [0u8; 32];
    let mut l = attr();
    put_u32(&mut l, 0, sysbpf::raw(out) as u32);
    put_u64(&mut l, 8, key.as_ptr() as u64);
    put_u64(&mut l, 16, val.as_mut_ptr() as u64);
    if let Err(e) = rawbpf::sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut l) {
        return format!("lookup-{}", errno_str(e));
    }
    let text: String = val
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
        .collect();
    if text.is_empty() {
        "nothing".into()
    } else {
        format!("secret:{text}")
    }
}

fn obj_get(path: &str) -> Result<OwnedFd, bpfns_sys::Errno> {
    sysbpf::obj_get(Path::new(path)).map_err(|e| e.errno)
}

/// What a child printed, and whether SIGKILL ended it.
pub(crate) fn run_child(cmd: &mut Command, limit: Duration) -> (String, bool) {
    let mut child = match cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn() {
        Ok(c) => c,
        Err(e) => return (format!("spawn-error={e}"), false),
    };
    let out = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out {
            for l in BufReader::new(o).lines().map_while(Result::ok) {
                s.push_str(&l);
                s.push('\n');
            }
        }
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    use std::os::unix::process::ExitStatusExt;
    let killed = status.is_some_and(|s| s.signal() == Some(9));
    (reader.join().unwrap_or_default(), killed)
}

pub(crate) fn value<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    let p = format!("{key}=");
    out.lines().find_map(|l| l.strip_prefix(&p))
}

/// The owner of a token's user namespace, outside it and without capabilities, loads a
/// kernel-memory reader with the token while a thread races to pin it.
fn owner_race(exe: &Path, cfg: &str, pid: i32, fd: i32, tag: &str, rounds: u32) {
    let token = match owner_token(exe, cfg) {
        Ok(t) => {
            say("owner_token=ok");
            t
        }
        Err(e) => {
            say(&format!("owner_token=error:{e}"));
            return;
        }
    };
    say(&format!("capeff={}", drop_all_caps()));
    let prog_pin = format!("/sys/fs/bpf/rt_{tag}_prog");
    let out_pin = format!("/sys/fs/bpf/rt_{tag}_out");
    let _ = std::fs::remove_file(&prog_pin);
    let _ = std::fs::remove_file(&out_pin);
    // The output array, with the token (its owner may create maps through it).
    let mut c = attr();
    put_u32(&mut c, 0, MAP_ARRAY);
    put_u32(&mut c, 4, 4);
    put_u32(&mut c, 8, SECRET.len() as u32);
    put_u32(&mut c, 12, 1);
    put_u32(&mut c, 16, rawbpf::BPF_F_TOKEN_FD);
    put_u32(&mut c, 76, sysbpf::raw(&token) as u32);
    let out = match rawbpf::sys_bpf_fd(BPF_MAP_CREATE, &mut c) {
        Ok(m) => {
            say("out_map=ok");
            m
        }
        Err(e) => {
            say(&format!("out_map={}", errno_str(e)));
            return;
        }
    };
    let _ = sysbpf::obj_pin(&out, Path::new(&out_pin));
    for f in [&token, &out] {
        testhooks::clear_cloexec(f).unwrap_or_else(|e| fail(&errno_str(e)));
    }
    let (mut loaded, mut failed, mut killed) = (0u32, 0u32, 0u32);
    let mut load = None;
    let mut direct = None;
    let mut attempts = 0;
    let started = Instant::now();
    while attempts < rounds && started.elapsed() < Duration::from_secs(20) {
        attempts += 1;
        let (o, k) = run_child(
            Command::new(exe).args([
                "rt-race-load",
                &prog_pin,
                &sysbpf::raw(&token).to_string(),
                &sysbpf::raw(&out).to_string(),
                &pid.to_string(),
                &fd.to_string(),
            ]),
            Duration::from_secs(15),
        );
        if k {
            killed += 1;
        }
        match value(&o, "load") {
            Some(v) if v.starts_with("ok") => loaded += 1,
            Some(v) => {
                failed += 1;
                load.get_or_insert_with(|| v.to_string());
            }
            None => {}
        }
        if let Some(v) = value(&o, "direct") {
            direct = Some(v.to_string());
        }
        if Path::new(&prog_pin).exists() {
            break;
        }
    }
    let pinned = Path::new(&prog_pin).exists();
    say(&format!(
        "race=attempts:{attempts} loaded:{loaded} failed:{failed} killed:{killed} pinned:{}",
        if pinned { "yes" } else { "no" }
    ));
    say(&format!("load={}", load.unwrap_or_else(|| "ok".into())));
    if let Some(d) = direct {
        say(&format!("direct={d}"));
    }
    if !pinned {
        say("survivor=nothing-pinned");
        return;
    }
    match obj_get(&prog_pin) {
        Ok(p) => {
            say(&format!("survivor=opened:{}", describe(p.as_fd())));
            say(&format!(
                "survivor_run={}",
                run_and_read(p.as_fd(), out.as_fd())
            ));
        }
        Err(e) => say(&format!("survivor={}", errno_str(e))),
    }
    let (o, _) = run_child(
        Command::new(exe).args(["rt-pin-use", &prog_pin, &out_pin]),
        Duration::from_secs(15),
    );
    say(&format!(
        "second={}",
        value(&o, "second").unwrap_or("no answer")
    ));
}

/// One loader: the next fd number is raced to `pin` while the program is loaded.
fn race_load(pin: &str, token: i32, out: i32, pid: i32, fd: i32) {
    let btf = match libbpf_rs::btf::Btf::from_vmlinux() {
        Ok(b) => b,
        Err(e) => fail(&format!("btf: {e}")),
    };
    let insns = kread_program(&btf, pid, fd, out).unwrap_or_else(|e| fail(&e));
    let license = c"GPL";
    let mut a = attr();
    put_u32(&mut a, 0, PROG_SOCKET_FILTER);
    put_u32(&mut a, 4, insns.len() as u32);
    put_u64(&mut a, 8, insns.as_ptr() as u64);
    put_u64(&mut a, 16, license.as_ptr() as u64);
    if token >= 0 {
        put_u32(&mut a, 44, rawbpf::BPF_F_TOKEN_FD);
        put_u32(&mut a, 144, token as u32);
    }
    pinner(next_fd(), pin);
    match rawbpf::sys_bpf_fd(BPF_PROG_LOAD, &mut a) {
        Ok(p) => {
            say(&format!("load=ok:{}", describe(p.as_fd())));
            // `out` was inherited on purpose (its number is in the program).
            if let Ok(o) = testhooks::dup_raw(out) {
                say(&format!("direct={}", run_and_read(p.as_fd(), o.as_fd())));
            }
            std::process::exit(3)
        }
        Err(e) => {
            say(&format!("load={}", errno_str(e)));
            std::process::exit(2)
        }
    }
}

/// A second process opens the pinned program and output map and runs the program.
fn pin_use(prog_pin: &str, out_pin: &str) {
    let p = match obj_get(prog_pin) {
        Ok(p) => p,
        Err(e) => return say(&format!("second={}", errno_str(e))),
    };
    let what = describe(p.as_fd());
    match obj_get(out_pin) {
        Ok(o) => say(&format!(
            "second=opened:{what};{}",
            run_and_read(p.as_fd(), o.as_fd())
        )),
        Err(e) => say(&format!("second=opened:{what};out-map-{}", errno_str(e))),
    }
}

// ---- flipping the program type under the supervisor's feet ----------------------------------

/// The type of the program behind `fd` (0 if it is none).
fn prog_type(fd: BorrowedFd<'_>) -> u32 {
    sysbpf::info::<sysbpf::bpf_prog_info>(fd).map_or(0, |i| i.type_)
}

fn flip_race(exe: &Path, tag: &str, rounds: u32, target: &str) {
    let pin = format!("/sys/fs/bpf/rt_{tag}_flip");
    let _ = std::fs::remove_file(&pin);
    let (mut sf, mut other, mut refused, mut killed) = (0u32, 0u32, 0u32, 0u32);
    let (mut pinned_sf, mut pinned_refused) = (0u32, 0u32);
    let mut errnos = std::collections::BTreeMap::<String, u32>::new();
    let mut bad = None;
    let mut attempts = 0;
    let started = Instant::now();
    while attempts < rounds && started.elapsed() < Duration::from_secs(20) {
        attempts += 1;
        let (o, k) = run_child(
            Command::new(exe).args(["rt-flip-load", &pin, target]),
            Duration::from_secs(15),
        );
        if k {
            killed += 1;
        }
        match value(&o, "load") {
            Some(v) if v.ends_with(&format!(":type:{PROG_SOCKET_FILTER}")) => sf += 1,
            Some(v) if v.starts_with("ok") => other += 1,
            Some(v) => {
                refused += 1;
                *errnos.entry(v.to_string()).or_default() += 1;
            }
            None => {}
        }
        if !Path::new(&pin).exists() {
            continue;
        }
        match obj_get(&pin) {
            Ok(p) => {
                let t = prog_type(p.as_fd());
                if t == PROG_SOCKET_FILTER {
                    pinned_sf += 1;
                } else {
                    bad = Some((p, t));
                    break;
                }
            }
            Err(_) => pinned_refused += 1,
        }
        let _ = std::fs::remove_file(&pin);
    }
    let errs: Vec<String> = errnos.iter().map(|(k, n)| format!("{k}×{n}")).collect();
    say(&format!(
        "flip=attempts:{attempts} socket_filters:{sf} other_types:{other} refused:{refused} \
         killed:{killed} pinned_socket_filters:{pinned_sf} pinned_unopenable:{pinned_refused} \
         errors:{}",
        errs.join(",")
    ));
    match bad {
        None => say("bad=none"),
        Some((p, t)) => {
            say(&format!("bad=opened:{} type:{t}", describe(p.as_fd())));
            let mut r = vec![0u8; 80];
            put_u32(&mut r, 0, sysbpf::raw(&p) as u32);
            say(&format!(
                "bad_run={}",
                match rawbpf::sys_bpf(BPF_PROG_TEST_RUN, &mut r) {
                    Ok(_) => "ok".to_string(),
                    Err(e) => errno_str(e),
                }
            ));
            let (o, _) = run_child(
                Command::new(exe).args(["rt-pin-use", &pin, "/nonexistent"]),
                Duration::from_secs(15),
            );
            say(&format!(
                "second={}",
                value(&o, "second").unwrap_or("no answer")
            ));
        }
    }
    let _ = std::fs::remove_file(&pin);
}

/// The attr of one flip load, shared with the flipping thread (42 words: 168 bytes).
static FLIP_ATTR: [AtomicU32; 42] = [const { AtomicU32::new(0) }; 42];
static FLIP_INSNS: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];

fn flip_load(pin: &str, target: &str) {
    let license = c"GPL";
    let set = |off: usize, v: u32| FLIP_ATTR[off / 4].store(v, Ordering::SeqCst);
    set(0, PROG_SOCKET_FILTER);
    set(4, 2);
    let insns = FLIP_INSNS.as_ptr() as u64;
    set(8, insns as u32);
    set(12, (insns >> 32) as u32);
    let lic = license.as_ptr() as u64;
    set(16, lic as u32);
    set(20, (lic >> 32) as u32);
    // prog_name "rt_flip"
    let name = *b"rt_flip\0";
    set(48, u32::from_ne_bytes([name[0], name[1], name[2], name[3]]));
    set(52, u32::from_ne_bytes([name[4], name[5], name[6], name[7]]));
    let targets: Vec<u32> = match target {
        "syscall" => vec![PROG_SYSCALL],
        "kprobe" => vec![PROG_KPROBE],
        // A type a namespace's policy may leave out (--allow-progs).
        "xdp" => vec![PROG_XDP],
        _ => vec![PROG_SYSCALL, PROG_KPROBE],
    };
    std::thread::spawn(move || {
        let mut i = 0usize;
        loop {
            let t = targets[i % targets.len()];
            i += 1;
            FLIP_ATTR[44 / 4].store(
                if t == PROG_SYSCALL { F_SLEEPABLE } else { 0 },
                Ordering::SeqCst,
            );
            FLIP_ATTR[0].store(t, Ordering::SeqCst);
            for _ in 0..3000 {
                std::hint::spin_loop();
            }
            FLIP_ATTR[0].store(PROG_SOCKET_FILTER, Ordering::SeqCst);
            FLIP_ATTR[44 / 4].store(0, Ordering::SeqCst);
            for _ in 0..3000 {
                std::hint::spin_loop();
            }
        }
    });
    pinner(next_fd(), pin);
    match testhooks::bpf_fd_raw_ptr(BPF_PROG_LOAD, FLIP_ATTR.as_ptr() as u64, 72) {
        Ok(p) => {
            say(&format!(
                "load=ok:{}:type:{}",
                describe(p.as_fd()),
                prog_type(p.as_fd())
            ));
            std::process::exit(3)
        }
        Err(e) => {
            say(&format!("load={}", errno_str(e)));
            std::process::exit(2)
        }
    }
}

// ---- map types flipped after the supervisor's look --------------------------------------------

/// The attr of one flipped BPF_MAP_CREATE (map_type, key_size, value_size, max_entries).
static MAP_FLIP_ATTR: [AtomicU32; 18] = [const { AtomicU32::new(0) }; 18];
const MAP_HASH: u32 = 1;

fn map_flip_race(exe: &Path, rounds: u32) {
    let (mut arrays, mut hash_kept, mut refused, mut killed, mut attempts) = (0, 0, 0, 0, 0);
    let started = Instant::now();
    while attempts < rounds && started.elapsed() < Duration::from_secs(20) {
        attempts += 1;
        let (o, k) = run_child(
            Command::new(exe).arg("rt-map-flip-load"),
            Duration::from_secs(15),
        );
        if k {
            killed += 1;
        }
        match value(&o, "map") {
            Some(v) if v == format!("type:{MAP_ARRAY}") => arrays += 1,
            Some(v) if v.starts_with("type:") => hash_kept += 1,
            Some(_) => refused += 1,
            None => {}
        }
    }
    say(&format!(
        "mapflip=attempts:{attempts} arrays:{arrays} hash_kept:{hash_kept} refused:{refused} \
         killed:{killed}"
    ));
}

fn map_flip_load() {
    let set = |i: usize, v: u32| MAP_FLIP_ATTR[i].store(v, Ordering::SeqCst);
    set(0, MAP_ARRAY);
    set(1, 4);
    set(2, 8);
    set(3, 1);
    std::thread::spawn(|| loop {
        MAP_FLIP_ATTR[0].store(MAP_HASH, Ordering::SeqCst);
        for _ in 0..3000 {
            std::hint::spin_loop();
        }
        MAP_FLIP_ATTR[0].store(MAP_ARRAY, Ordering::SeqCst);
        for _ in 0..3000 {
            std::hint::spin_loop();
        }
    });
    match testhooks::bpf_fd_raw_ptr(BPF_MAP_CREATE, MAP_FLIP_ATTR.as_ptr() as u64, 72) {
        Ok(m) => {
            let t = sysbpf::info::<sysbpf::bpf_map_info>(&m)
                .map(|i| i.type_)
                .unwrap_or(0);
            say(&format!("map=type:{t}"));
        }
        Err(e) => say(&format!("map={}", errno_str(e))),
    }
    std::process::exit(0)
}

// ---- TASK_FD_QUERY as an oracle ------------------------------------------------------------

fn fd_oracle(pid: u32, n: u32) {
    let mut tally = std::collections::BTreeMap::<String, u32>::new();
    for fd in 0..n {
        let mut buf = vec![0u8; 256];
        let mut a = vec![0u8; 48];
        put_u32(&mut a, 0, pid);
        put_u32(&mut a, 4, fd);
        put_u32(&mut a, 12, buf.len() as u32);
        put_u64(&mut a, 16, buf.as_mut_ptr() as u64);
        let r = match rawbpf::sys_bpf(BPF_TASK_FD_QUERY, &mut a) {
            Ok(_) => "answered".to_string(),
            Err(e) => errno_str(e),
        };
        *tally.entry(r).or_default() += 1;
    }
    let t: Vec<String> = tally.iter().map(|(k, n)| format!("{k}×{n}")).collect();
    say(&format!("oracle={}", t.join(",")));
    say(&format!("distinct={}", tally.len()));
}
