//! Helper actions for the kernel-side tests (`tests/kernel_side.rs`, `tests/lsm.rs`) and the
//! red-team rows built on them: racing the ownership recorder, filling a quota, loading with
//! perfmon power through a token, racing a foreign open against `SCM_RIGHTS`.
//!
//! ```text
//!   hijack PID FD KIND N [SECS]   take fd FD of process PID (pidfd_getfd: a foreign object),
//!                       then N times (or SECS seconds) close(n) + create a KIND (map|prog|btf|
//!                       link) that lands on fd n, while a second thread dup2()s the foreign
//!                       fd onto n: race=created:C failed:F rounds:R (if not stopped first)
//!   fake PATH N SECS    the same race with the file at PATH (a FIFO, directory or regular
//!                       file named like a BPF object's anonymous inode) for the dup2(), and
//!                       maps: first=ID (a map made before), race=..., last=ID (one made after)
//!   create-many KIND N [close [MS]]   create N objects of KIND (map|prog|btf|link), or until
//!                       refused: made=M errno=E (E = 0 when all were made); hold them until
//!                       EOF, or close each at once (and pause MS milliseconds)
//!   prog-token [drop]   load a socket filter with the BPF token in $BPFNS_RT_TOKEN (see
//!                       `rt-as token`), after dropping CAP_PERFMON and CAP_SYS_ADMIN when
//!                       `drop`: id=ID | errno=E
//!   race-scm SOCK KIND ID SECS    for SECS seconds, a thread opens KIND ID by id (closing
//!                       it again) while another sends the descriptor number it lands on to
//!                       the Unix socket SOCK (SCM_RIGHTS): opens=O eperm=P sent=S
//! ```

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bpfns_model::ObjectKind;
use bpfns_sys::bpf as sysbpf;
use bpfns_sys::{rawbpf, testhooks, Errno};

use super::{fail, kind, say};

pub const ACTIONS: [&str; 5] = ["hijack", "fake", "create-many", "prog-token", "race-scm"];

const BPF_MAP_CREATE: u32 = 0;
const BPF_PROG_LOAD: u32 = 5;
const BPF_BTF_LOAD: u32 = 18;
const BPF_LINK_CREATE: u32 = 28;
const PROG_SOCKET_FILTER: u32 = 1;
const PROG_SK_LOOKUP: u32 = 30;
const ATTACH_SK_LOOKUP: u32 = 36;
/// `r0 = 1; exit` (SK_PASS).
const RETURN_ONE: [u64; 2] = [0x0000_0001_0000_00b7, 0x0000_0000_0000_0095];

fn put_u32(a: &mut [u8], off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(a: &mut [u8], off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// Makes one object of a kind per call, as a raw descriptor number (no `OwnedFd`: the races
/// below close and reuse numbers by hand).
pub struct Creator {
    cmd: u32,
    attr: Vec<u8>,
    /// Buffers and fds the attr points at, kept alive.
    _btf: Vec<u8>,
    _keep: Vec<OwnedFd>,
}

static LICENSE: &[u8] = b"GPL\0";

/// The attr of a `prog_type` program of `insns` (with expected attach type `attach`), loaded
/// with `token` if given.
fn prog_attr(prog_type: u32, insns: &'static [u64; 2], attach: u32, token: Option<u32>) -> Vec<u8> {
    let mut a = vec![0u8; rawbpf::ATTR_SIZE];
    put_u32(&mut a, 0, prog_type);
    put_u32(&mut a, 4, insns.len() as u32);
    put_u64(&mut a, 8, insns.as_ptr() as u64);
    put_u64(&mut a, 16, LICENSE.as_ptr() as u64);
    put_u32(&mut a, 68, attach);
    if let Some(t) = token {
        put_u32(&mut a, 44, rawbpf::BPF_F_TOKEN_FD);
        put_u32(&mut a, 144, t);
    }
    a
}

/// The BPF token this process inherited from `rt-as token`, if any.
fn token() -> Option<u32> {
    std::env::var("BPFNS_RT_TOKEN").ok()?.parse().ok()
}

impl Creator {
    /// A creator of `what`: map, prog, btf, link (a netns sk_lookup link; its program is
    /// loaded once here). With the BPF token of `rt-as token` where this process has one.
    pub fn new(what: &str) -> Result<Self, String> {
        let mut attr = vec![0u8; rawbpf::ATTR_SIZE];
        let mut keep = Vec::new();
        let mut btf = Vec::new();
        let token = token();
        let cmd = match what {
            "map" => {
                put_u32(&mut attr, 0, 2); // BPF_MAP_TYPE_ARRAY
                put_u32(&mut attr, 4, 4);
                put_u32(&mut attr, 8, 8);
                put_u32(&mut attr, 12, 1);
                if let Some(t) = token {
                    put_u32(&mut attr, 16, rawbpf::BPF_F_TOKEN_FD);
                    put_u32(&mut attr, 76, t);
                }
                BPF_MAP_CREATE
            }
            "prog" => {
                attr = prog_attr(PROG_SOCKET_FILTER, &sysbpf::RETURN_ZERO, 0, token);
                BPF_PROG_LOAD
            }
            "btf" => {
                btf = sysbpf::minimal_btf();
                put_u64(&mut attr, 0, btf.as_ptr() as u64);
                put_u32(&mut attr, 16, btf.len() as u32);
                if let Some(t) = token {
                    put_u32(&mut attr, 32, rawbpf::BPF_F_TOKEN_FD);
                    put_u32(&mut attr, 36, t);
                }
                BPF_BTF_LOAD
            }
            "link" => {
                let mut a = prog_attr(PROG_SK_LOOKUP, &RETURN_ONE, ATTACH_SK_LOOKUP, token);
                let prog = rawbpf::sys_bpf_fd(BPF_PROG_LOAD, &mut a)
                    .map_err(|e| format!("prog:{}", e.raw_os_error()))?;
                let netns =
                    std::fs::File::open("/proc/self/ns/net").map_err(|e| format!("netns:{e}"))?;
                put_u32(&mut attr, 0, prog.as_raw_fd() as u32);
                put_u32(&mut attr, 4, netns.as_raw_fd() as u32);
                put_u32(&mut attr, 8, ATTACH_SK_LOOKUP);
                keep.push(prog);
                keep.push(OwnedFd::from(netns));
                BPF_LINK_CREATE
            }
            other => return Err(format!("unknown kind {other}")),
        };
        Ok(Self {
            cmd,
            attr,
            _btf: btf,
            _keep: keep,
        })
    }

    /// Create one object: its descriptor number.
    pub fn create(&self) -> Result<RawFd, Errno> {
        let mut a = self.attr.clone();
        rawbpf::sys_bpf(self.cmd, &mut a).map(|fd| fd as RawFd)
    }
}

pub fn run(args: &[String]) {
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| fail("missing argument"))
    };
    match arg(0).as_str() {
        "hijack" => hijack(
            arg(1).parse().unwrap_or_else(|_| fail("PID")),
            arg(2).parse().unwrap_or_else(|_| fail("FD")),
            &arg(3),
            arg(4).parse().unwrap_or_else(|_| fail("N")),
            args.get(5).and_then(|s| s.parse().ok()),
        ),
        "fake" => fake(
            &arg(1),
            arg(2).parse().unwrap_or_else(|_| fail("N")),
            arg(3).parse().unwrap_or_else(|_| fail("SECS")),
        ),
        "create-many" => {
            super::drop_perfmon();
            let c = Creator::new(&arg(1)).unwrap_or_else(|e| fail(&e));
            let n: u64 = arg(2).parse().unwrap_or_else(|_| fail("N"));
            let close = args.get(3).map(String::as_str) == Some("close");
            let pause =
                Duration::from_millis(args.get(4).and_then(|s| s.parse().ok()).unwrap_or(0));
            let mut held = Vec::new();
            let mut made = 0;
            let mut errno = 0;
            for _ in 0..n {
                match c.create() {
                    Ok(fd) if close => {
                        made += 1;
                        let _ = testhooks::close_raw(fd);
                        std::thread::sleep(pause);
                    }
                    Ok(fd) => {
                        made += 1;
                        held.push(fd);
                    }
                    Err(e) => {
                        errno = e.raw_os_error();
                        break;
                    }
                }
            }
            say(&format!("made={made}"));
            say(&format!("errno={errno}"));
            super::hold_until_eof();
            for fd in held {
                let _ = testhooks::close_raw(fd);
            }
        }
        "prog-token" => prog_token(args.get(1).map(String::as_str) == Some("drop")),
        "race-scm" => race_scm(
            &arg(1),
            kind(&arg(2)),
            arg(3).parse().unwrap_or_else(|_| fail("ID")),
            arg(4).parse().unwrap_or_else(|_| fail("SECS")),
        ),
        other => fail(&format!("unknown action {other}")),
    }
}

/// The two-thread race against the ownership recorder: `close(n); create` on one thread,
/// `dup2(foreign, n)` on the other.
pub fn hijack(pid: i32, fd: i32, what: &str, rounds: u64, secs: Option<u64>) {
    let pidfd =
        bpfns_sys::process::open_pidfd(pid).unwrap_or_else(|e| fail(&format!("pidfd: {e}")));
    let foreign = bpfns_sys::fds::pidfd_getfd(pidfd.as_fd(), fd)
        .unwrap_or_else(|e| fail(&format!("pidfd_getfd: {e}")));
    race(foreign, what, rounds, secs);
}

/// The id of a map made now (and closed again): map ids only grow, so every map made between
/// two of these calls has an id between theirs.
fn map_id_now() -> u32 {
    let c = Creator::new("map").unwrap_or_else(|e| fail(&e));
    let fd = c
        .create()
        .unwrap_or_else(|e| fail(&format!("map create: {e}")));
    let owned = testhooks::dup_raw(fd).unwrap_or_else(|e| fail(&format!("dup: {e}")));
    let _ = testhooks::close_raw(fd);
    sysbpf::info::<sysbpf::bpf_map_info>(&owned)
        .map(|i| i.id)
        .unwrap_or_else(|e| fail(&format!("map info: {e}")))
}

/// The race against the recorder with a file that only looks like a BPF object: the file at
/// `path` (named like a map's anonymous inode) is dup2()ed over the fd each map create returns.
fn fake(path: &str, rounds: u64, secs: u64) {
    // With the credentials it creates with: the recorder takes a file made with the creator's
    // credentials (as a new object's is) for what it seems to be.
    super::drop_perfmon();
    let meta = std::fs::symlink_metadata(path).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
    // A FIFO opened for reading and writing does not wait for a peer.
    let file = if meta.is_dir() {
        std::fs::File::open(path)
    } else {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
    }
    .unwrap_or_else(|e| fail(&format!("opening {path}: {e}")));
    say(&format!("first={}", map_id_now()));
    race_as_is(OwnedFd::from(file), "map", rounds, Some(secs));
    say(&format!("last={}", map_id_now()));
}

/// The race with a foreign object already in hand.
pub fn race(foreign: OwnedFd, what: &str, rounds: u64, secs: Option<u64>) {
    // Creating, not tracing: without perfmon power (a namespace denying tracing stops that).
    super::drop_perfmon();
    race_as_is(foreign, what, rounds, secs);
}

/// [`race`] with the credentials the process has.
fn race_as_is(foreign: OwnedFd, what: &str, rounds: u64, secs: Option<u64>) {
    let creator = match Creator::new(what) {
        Ok(c) => c,
        Err(e) => {
            say(&format!("race=setup-error:{e}"));
            return;
        }
    };
    // The number new objects land on: the lowest free one.
    let n = match creator.create() {
        Ok(fd) => fd,
        Err(e) => {
            say(&format!("race=create-errno:{}", e.raw_os_error()));
            return;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let target = Arc::new(AtomicI32::new(n));
    let (s2, t2) = (stop.clone(), target.clone());
    let foreign_raw = foreign.as_raw_fd();
    let swapper = std::thread::spawn(move || {
        let mut swaps = 0u64;
        while !s2.load(Ordering::Relaxed) {
            if testhooks::dup2_raw(foreign_raw, t2.load(Ordering::Relaxed)).is_ok() {
                swaps += 1;
            }
        }
        swaps
    });
    let deadline = secs.map(|s| Instant::now() + Duration::from_secs(s));
    let (mut created, mut failed, mut done) = (0u64, 0u64, 0u64);
    let mut last_errno = 0;
    while done < rounds && deadline.is_none_or(|d| Instant::now() < d) {
        let _ = testhooks::close_raw(n);
        match creator.create() {
            Ok(fd) => {
                created += 1;
                if fd != n {
                    let _ = testhooks::close_raw(fd);
                }
            }
            Err(e) => {
                failed += 1;
                last_errno = e.raw_os_error();
            }
        }
        done += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap_or(0);
    say(&format!(
        "race=created:{created} failed:{failed} rounds:{done} swaps:{swaps} errno:{last_errno}"
    ));
}

/// A socket filter loaded with the inherited BPF token.
fn prog_token(drop: bool) {
    let Some(token) = token() else {
        say("errno=token-missing");
        return;
    };
    if drop {
        super::drop_perfmon();
    }
    let mut a = prog_attr(PROG_SOCKET_FILTER, &sysbpf::RETURN_ZERO, 0, Some(token));
    match rawbpf::sys_bpf_fd(BPF_PROG_LOAD, &mut a) {
        Ok(fd) => {
            let id = sysbpf::info::<sysbpf::bpf_prog_info>(&fd)
                .map(|i| i.id)
                .unwrap_or(0);
            say(&format!("id={id}"));
        }
        Err(e) => say(&format!("errno={}", e.raw_os_error())),
    }
}

/// One thread opens a foreign object by id again and again; another sends the descriptor
/// number that open lands on to `sock`, hoping to catch the fd between the open and the
/// backstop's SIGKILL.
fn race_scm(sock: &str, k: ObjectKind, id: u32, secs: u64) {
    let stream = std::os::unix::net::UnixStream::connect(sock)
        .unwrap_or_else(|e| fail(&format!("connect {sock}: {e}")));
    // The number the open lands on: the lowest free one.
    let probe = std::fs::File::open("/dev/null").unwrap_or_else(|e| fail(&e.to_string()));
    let n = probe.as_raw_fd();
    drop(probe);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let (s2, sent2) = (stop.clone(), sent.clone());
    let sock_raw = stream.as_raw_fd();
    let sender = std::thread::spawn(move || {
        while !s2.load(Ordering::Relaxed) {
            if bpfns_sys::fds::send_fd_raw(sock_raw, b"f", n).is_ok() {
                sent2.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut opens, mut eperm, mut other) = (0u64, 0u64, 0u64);
    while Instant::now() < deadline {
        match sysbpf::fd_by_id(k, id) {
            Ok(fd) => {
                opens += 1;
                drop(fd);
            }
            Err(e) if e.errno == Errno::PERM => eperm += 1,
            Err(_) => other += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    say(&format!(
        "opens={opens} eperm={eperm} other={other} sent={}",
        sent.load(Ordering::Relaxed)
    ));
}
