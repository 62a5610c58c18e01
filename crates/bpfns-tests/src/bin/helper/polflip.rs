//! Helper actions for the red-team rows on attach types a namespace's policy leaves out,
//! rewritten after the supervisor's look (`tests/redteam.rs`, scene `polflip`). The member's
//! namespace allows tracing-class programs and only the XDP attach type. Every attack reports
//! `key=value` lines; the suite judges them.
//!
//! ```text
//!   rt-link-flip TP N      load a tracepoint program, open a perf event on tracepoint id TP,
//!                          then BPF_LINK_CREATE (program, perf event) plainly with attach type
//!                          perf_event (41) and xdp (37) (lflip_perf=, lflip_xdp=), then up to N
//!                          times (10 s at most) while another thread flips the attr's attach
//!                          type between the two: lflip=created:link:ID:type:T:after:TALLY |
//!                          refused:TALLY; lflip_setup=ok | load:errno:E | perf:errno:E
//!   rt-xdp-flip N          load an XDP program and put it into a devmap (xflip_setup=ok |
//!                          load:errno:E | devmap:errno:E; xflip_xdp_insert=...), then in
//!                          children (200, or 15 s, at most; each killable by the kernel
//!                          side): load an XDP program N times while a thread flips
//!                          expected_attach_type between xdp (37) and xdp_devmap (33), each
//!                          program it gets put into a devmap: xflip=children:C killed:K
//!                          programs_loaded:L outcomes:..; xinsert=none | ok:prog:ID;
//!                          xflip_plain=the first child's plain load for xdp_devmap
//!   rt-type-flip map|prog N  in children (200, or 8 s, at most; each killable by the kernel
//!                          side): create a map (load a program) N times while a thread flips
//!                          its type between the one the namespace allows (array 2;
//!                          socket_filter 1) and one it leaves out (hash 1; cgroup_skb 8);
//!                          tflip_plain=the first child's plain creation of the type left out;
//!                          tflip=children:C killed:K allowed_made:A outcomes:..;
//!                          tforbidden=none | kept:KIND:ID:type:T (a child holding an object of
//!                          the type left out, alive after the call)
//!   rt-smuggle TYPE|btf N fill|probe
//!                          fill the namespace's quota of maps (up to 256 arrays; of BTF
//!                          objects for btf), or make one to show the level can
//!                          (smuggle_filled=K:errno:E | K:none), then in N children (or 10 s):
//!                          create a BTF object, or a
//!                          map of TYPE (2 array, 1 hash) while a second thread sends the fd
//!                          number the map would get over SCM_RIGHTS to this process, stopping
//!                          at the first that goes (the kernel side may stop the child, too
//!                          late for an fd already sent): smuggle=children:C killed:K
//!                          outcomes:..; smuggled=none | map:ID:type:T (an over-quota or
//!                          forbidden map this process received)
//! Internal: rt-xdp-flip-load N FIRST, rt-type-flip-child map|prog N FIRST,
//! rt-smuggle-child TYPE FD.
//! ```

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bpfns_sys::bpf as sysbpf;
use bpfns_sys::rawbpf;
use bpfns_sys::testhooks;

use super::loadrace::{run_child, value};
use super::redteam::{attr, describe, errno_str, put_u32, put_u64, token};
use super::{fail, say};

/// The actions this module handles.
pub const ACTIONS: [&str; 7] = [
    "rt-link-flip",
    "rt-xdp-flip",
    "rt-xdp-flip-load",
    "rt-type-flip",
    "rt-type-flip-child",
    "rt-smuggle",
    "rt-smuggle-child",
];

const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_BTF_LOAD: u32 = 18;
const BPF_PROG_LOAD: u32 = 5;
const BPF_LINK_CREATE: u32 = 28;
const PROG_XDP: u32 = 6;
const PROG_SOCKET_FILTER: u32 = 1;
const PROG_CGROUP_SKB: u32 = 8;
const MAP_HASH: u32 = 1;
const MAP_ARRAY: u32 = 2;
const PROG_TRACEPOINT: u32 = 5;
const MAP_DEVMAP: u32 = 14;
const ATTACH_XDP_DEVMAP: u32 = 33;
const ATTACH_XDP: u32 = 37;
const ATTACH_PERF_EVENT: u32 = 41;

/// `r0 = 0; exit` (a tracepoint program that does nothing).
static RET0: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
/// `r0 = XDP_PASS (2); exit`.
static PASS: [u64; 2] = [0x0000_0002_0000_00b7, 0x0000_0000_0000_0095];

pub fn run(exe: &Path, args: &[String]) {
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| fail("missing argument"))
    };
    let num = |i: usize| -> u64 { arg(i).parse().unwrap_or_else(|_| fail("a number")) };
    match arg(0).as_str() {
        "rt-link-flip" => link_flip(num(1), num(2) as u32),
        "rt-xdp-flip" => xdp_flip(exe, num(1) as u32),
        "rt-xdp-flip-load" => xdp_flip_load(num(1) as u32, arg(2) == "first"),
        "rt-type-flip" => type_flip(exe, flip_of(&arg(1)), num(2) as u32),
        "rt-type-flip-child" => type_flip_child(flip_of(&arg(1)), num(2) as u32, arg(3) == "first"),
        "rt-smuggle" => smuggle(
            exe,
            Made::of(&arg(1)),
            &arg(1),
            num(2) as u32,
            arg(3) == "fill",
        ),
        "rt-smuggle-child" => smuggle_child(Made::of(&arg(1)), num(2) as i32),
        other => fail(&format!("unknown action {other}")),
    }
}

/// Load `insns` as `prog_type` for `eat` (with the inherited BPF token, if any).
fn load(prog_type: u32, insns: &[u64; 2], eat: u32) -> Result<OwnedFd, bpfns_sys::Errno> {
    let license = c"GPL";
    let mut a = attr();
    put_u32(&mut a, 0, prog_type);
    put_u32(&mut a, 4, 2);
    put_u64(&mut a, 8, insns.as_ptr() as u64);
    put_u64(&mut a, 16, license.as_ptr() as u64);
    put_u32(&mut a, 68, eat);
    if let Some(t) = token() {
        put_u32(&mut a, 44, rawbpf::BPF_F_TOKEN_FD);
        put_u32(&mut a, 144, t as u32);
    }
    rawbpf::sys_bpf_fd(BPF_PROG_LOAD, &mut a)
}

fn tally(m: &std::collections::BTreeMap<String, u32>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}x{v}"))
        .collect::<Vec<_>>()
        .join(",")
}

// ---- F1: the link's attach type flipped to one the policy leaves out ------------------------

/// The `BPF_LINK_CREATE` attr (prog_fd, target_fd, attach_type, flags, ...: 144 bytes),
/// shared with the flipping thread.
static LINK_ATTR: [AtomicU32; 36] = [const { AtomicU32::new(0) }; 36];

fn link_flip(tp: u64, n: u32) {
    let prog = match load(PROG_TRACEPOINT, &RET0, 0) {
        Ok(p) => p,
        Err(e) => return say(&format!("lflip_setup=load:{}", errno_str(e))),
    };
    let perf = match testhooks::perf_tracepoint_open(tp) {
        Ok(p) => p,
        Err(e) => return say(&format!("lflip_setup=perf:{}", errno_str(e))),
    };
    say("lflip_setup=ok");
    LINK_ATTR[0].store(prog.as_raw_fd() as u32, Ordering::SeqCst);
    LINK_ATTR[1].store(perf.as_raw_fd() as u32, Ordering::SeqCst);
    let call = || testhooks::bpf_fd_raw_ptr(BPF_LINK_CREATE, LINK_ATTR.as_ptr() as u64, 144);
    let shown = |r: Result<OwnedFd, bpfns_sys::Errno>| match r {
        Ok(l) => format!("created:{}:type:{}", describe(l.as_fd()), link_type(&l)),
        Err(e) => errno_str(e),
    };
    for (key, t) in [("perf", ATTACH_PERF_EVENT), ("xdp", ATTACH_XDP)] {
        LINK_ATTR[2].store(t, Ordering::SeqCst);
        say(&format!("lflip_{key}={}", shown(call())));
    }
    let stop = AtomicBool::new(false);
    let mut counts = std::collections::BTreeMap::<String, u32>::new();
    let mut made = None;
    let mut tries = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                LINK_ATTR[2].store(ATTACH_XDP, Ordering::Relaxed);
                std::hint::spin_loop();
                LINK_ATTR[2].store(ATTACH_PERF_EVENT, Ordering::Relaxed);
                std::hint::spin_loop();
            }
        });
        let started = Instant::now();
        while tries < n && started.elapsed() < Duration::from_secs(10) {
            tries += 1;
            match call() {
                Ok(l) => {
                    made = Some(l);
                    break;
                }
                Err(e) => *counts.entry(errno_str(e)).or_default() += 1,
            }
        }
        stop.store(true, Ordering::SeqCst);
    });
    say(&format!(
        "lflip={}",
        match made {
            Some(l) => format!(
                "created:{}:type:{}:after:{tries}:{}",
                describe(l.as_fd()),
                link_type(&l),
                tally(&counts)
            ),
            None => format!("refused:{tries}:{}", tally(&counts)),
        }
    ));
}

/// `bpf_link_info.type` (perf_event is 7).
fn link_type(l: &OwnedFd) -> u32 {
    sysbpf::info::<sysbpf::bpf_link_info>(l.as_fd()).map_or(0, |i| i.type_)
}

// ---- F2: an XDP program's expected attach type flipped to xdp_devmap ------------------------

/// A devmap of one entry (`bpf_devmap_val`: ifindex and program fd).
fn devmap() -> Result<OwnedFd, bpfns_sys::Errno> {
    let mut a = attr();
    put_u32(&mut a, 0, MAP_DEVMAP);
    put_u32(&mut a, 4, 4);
    put_u32(&mut a, 8, 8);
    put_u32(&mut a, 12, 1);
    if let Some(t) = token() {
        put_u32(&mut a, 16, rawbpf::BPF_F_TOKEN_FD);
        put_u32(&mut a, 76, t as u32);
    }
    rawbpf::sys_bpf_fd(BPF_MAP_CREATE, &mut a)
}

/// Put program `prog` into `map` at key 0, on the loopback interface (ifindex 1): the kernel
/// takes only programs loaded for xdp_devmap.
fn insert(map: &OwnedFd, prog: &OwnedFd) -> Result<i64, bpfns_sys::Errno> {
    let key = 0u32;
    let val: [u32; 2] = [1, prog.as_raw_fd() as u32];
    let mut u = attr();
    put_u32(&mut u, 0, map.as_raw_fd() as u32);
    put_u64(&mut u, 8, &key as *const u32 as u64);
    put_u64(&mut u, 16, val.as_ptr() as u64);
    rawbpf::sys_bpf(BPF_MAP_UPDATE_ELEM, &mut u)
}

fn xdp_flip(exe: &Path, n: u32) {
    let prog = match load(PROG_XDP, &PASS, ATTACH_XDP) {
        Ok(p) => p,
        Err(e) => return say(&format!("xflip_setup=load:{}", errno_str(e))),
    };
    let map = match devmap() {
        Ok(m) => m,
        Err(e) => return say(&format!("xflip_setup=devmap:{}", errno_str(e))),
    };
    say("xflip_setup=ok");
    // The control: the kernel refuses a program loaded for xdp.
    say(&format!(
        "xflip_xdp_insert={}",
        match insert(&map, &prog) {
            Ok(_) => "ok".to_string(),
            Err(e) => errno_str(e),
        }
    ));
    drop((prog, map));
    let (mut children, mut killed, mut loads) = (0u32, 0u32, 0u64);
    let mut refused = std::collections::BTreeMap::<String, u32>::new();
    let mut inserted = None;
    let started = Instant::now();
    while children < MAX_CHILDREN
        && started.elapsed() < Duration::from_secs(15)
        && inserted.is_none()
    {
        children += 1;
        let first = if children == 1 { "first" } else { "more" };
        let (o, k) = run_child(
            Command::new(exe).args(["rt-xdp-flip-load", &n.to_string(), first]),
            Duration::from_secs(20),
        );
        killed += u32::from(k);
        if let Some(v) = value(&o, "plain") {
            say(&format!("xflip_plain={v}"));
        }
        if let Some(v) = value(&o, "inserted") {
            inserted = Some(v.to_string());
        }
        for l in o.lines().filter_map(|l| l.strip_prefix("loaded=")) {
            loads += 1;
            *refused.entry(l.to_string()).or_default() += 1;
        }
        for part in value(&o, "refused").unwrap_or("").split(',') {
            if let Some((k, c)) = part.rsplit_once('x') {
                *refused.entry(k.to_string()).or_default() += c.parse::<u32>().unwrap_or(0);
            }
        }
        if let Some(e) = value(&o, "error") {
            say(&format!("xflip_child_error={e}"));
            break;
        }
    }
    say(&format!(
        "xflip=children:{children} killed:{killed} programs_loaded:{loads} outcomes:{}",
        tally(&refused)
    ));
    say(&format!(
        "xinsert={}",
        inserted.as_deref().unwrap_or("none")
    ));
}

/// How many children `rt-xdp-flip` runs at most: each one the kernel side stops leaves a
/// quarantined program behind.
const MAX_CHILDREN: u32 = 200;

/// The attr of the flipped loads (42 words), shared with the flipping thread.
static XDP_ATTR: [AtomicU32; 42] = [const { AtomicU32::new(0) }; 42];

fn xdp_flip_load(n: u32, first: bool) {
    let map = match devmap() {
        Ok(m) => m,
        Err(e) => return say(&format!("error=devmap:{}", errno_str(e))),
    };
    if first {
        // Plainly: what the supervisor answers a load for xdp_devmap.
        let v = match load(PROG_XDP, &PASS, ATTACH_XDP_DEVMAP) {
            Ok(p) => format!(
                "loaded:{}:insert:{}",
                describe(p.as_fd()),
                insert(&map, &p).map_or_else(errno_str, |_| "ok".into())
            ),
            Err(e) => errno_str(e),
        };
        say(&format!("plain={v}"));
    }
    let license = c"GPL";
    let set = |off: usize, v: u32| XDP_ATTR[off / 4].store(v, Ordering::SeqCst);
    set(0, PROG_XDP);
    set(4, 2);
    let insns = PASS.as_ptr() as u64;
    set(8, insns as u32);
    set(12, (insns >> 32) as u32);
    let lic = license.as_ptr() as u64;
    set(16, lic as u32);
    set(20, (lic >> 32) as u32);
    set(68, ATTACH_XDP);
    let size = match token() {
        Some(t) => {
            set(44, rawbpf::BPF_F_TOKEN_FD);
            set(144, t as u32);
            152
        }
        None => 72,
    };
    let stop = AtomicBool::new(false);
    let mut refused = std::collections::BTreeMap::<String, u32>::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                XDP_ATTR[68 / 4].store(ATTACH_XDP_DEVMAP, Ordering::Relaxed);
                std::hint::spin_loop();
                XDP_ATTR[68 / 4].store(ATTACH_XDP, Ordering::Relaxed);
                std::hint::spin_loop();
            }
        });
        for _ in 0..n {
            match testhooks::bpf_fd_raw_ptr(BPF_PROG_LOAD, XDP_ATTR.as_ptr() as u64, size) {
                Ok(p) => {
                    // One line per program: the parent counts them where this child is
                    // killed before its summary.
                    match insert(&map, &p) {
                        Ok(_) => {
                            say(&format!("inserted=ok:{}", describe(p.as_fd())));
                            break;
                        }
                        Err(e) => say(&format!("loaded=insert-{}", errno_str(e))),
                    }
                }
                Err(e) => *refused.entry(format!("load-{}", errno_str(e))).or_default() += 1,
            }
        }
        stop.store(true, Ordering::SeqCst);
    });
    say(&format!("refused={}", tally(&refused)));
}

// ---- a map's or a program's type flipped to one the policy leaves out ------------------------

/// Which type a `rt-type-flip` races, and between which values.
#[derive(Clone, Copy)]
struct Flip {
    kind: &'static str,
    cmd: u32,
    allowed: u32,
    forbidden: u32,
}

fn flip_of(kind: &str) -> Flip {
    match kind {
        "map" => Flip {
            kind: "map",
            cmd: BPF_MAP_CREATE,
            allowed: MAP_ARRAY,
            forbidden: MAP_HASH,
        },
        "prog" => Flip {
            kind: "prog",
            cmd: BPF_PROG_LOAD,
            allowed: PROG_SOCKET_FILTER,
            forbidden: PROG_CGROUP_SKB,
        },
        other => fail(&format!("rt-type-flip: map or prog, not {other}")),
    }
}

/// The type of map or program `fd`.
fn type_of(f: Flip, fd: &OwnedFd) -> u32 {
    if f.cmd == BPF_MAP_CREATE {
        sysbpf::info::<sysbpf::bpf_map_info>(fd.as_fd()).map_or(0, |i| i.type_)
    } else {
        sysbpf::info::<sysbpf::bpf_prog_info>(fd.as_fd()).map_or(0, |i| i.type_)
    }
}

fn type_flip(exe: &Path, f: Flip, n: u32) {
    let (mut children, mut killed, mut allowed) = (0u32, 0u32, 0u64);
    let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
    let mut kept = None;
    let started = Instant::now();
    while children < MAX_CHILDREN && started.elapsed() < Duration::from_secs(8) && kept.is_none() {
        children += 1;
        let first = if children == 1 { "first" } else { "more" };
        let (o, k) = run_child(
            Command::new(exe).args(["rt-type-flip-child", f.kind, &n.to_string(), first]),
            Duration::from_secs(20),
        );
        killed += u32::from(k);
        if let Some(v) = value(&o, "plain") {
            say(&format!("tflip_plain={v}"));
        }
        if let Some(v) = value(&o, "kept") {
            kept = Some(v.to_string());
        }
        allowed += o.lines().filter(|l| l.starts_with("allowed=")).count() as u64;
        for part in value(&o, "refused").unwrap_or("").split(',') {
            if let Some((k, c)) = part.rsplit_once('x') {
                *outcomes.entry(k.to_string()).or_default() += c.parse::<u32>().unwrap_or(0);
            }
        }
        if let Some(e) = value(&o, "error") {
            say(&format!("tflip_child_error={e}"));
            break;
        }
        if children == 1 && !k && allowed == 0 {
            // The level cannot make even the allowed type: more children would say the same.
            break;
        }
    }
    say(&format!(
        "tflip=children:{children} killed:{killed} allowed_made:{allowed} outcomes:{}",
        tally(&outcomes)
    ));
    say(&format!("tforbidden={}", kept.as_deref().unwrap_or("none")));
}

/// The attr of the flipped creations (38 words: a program load with a token), shared with the
/// flipping thread.
static TYPE_ATTR: [AtomicU32; 38] = [const { AtomicU32::new(0) }; 38];

fn type_flip_child(f: Flip, n: u32, first: bool) {
    let set = |off: usize, v: u32| TYPE_ATTR[off / 4].store(v, Ordering::SeqCst);
    let size = if f.cmd == BPF_MAP_CREATE {
        // key 4, value 8, one entry: valid for both an array and a hash.
        set(4, 4);
        set(8, 8);
        set(12, 1);
        match token() {
            Some(t) => {
                set(16, rawbpf::BPF_F_TOKEN_FD);
                set(76, t as u32);
                80
            }
            None => 72,
        }
    } else {
        // `r0 = 0; exit`: valid for both a socket filter and a cgroup skb program.
        let license = c"GPL";
        set(4, 2);
        let insns = RET0.as_ptr() as u64;
        set(8, insns as u32);
        set(12, (insns >> 32) as u32);
        let lic = license.as_ptr() as u64;
        set(16, lic as u32);
        set(20, (lic >> 32) as u32);
        match token() {
            Some(t) => {
                set(44, rawbpf::BPF_F_TOKEN_FD);
                set(144, t as u32);
                152
            }
            None => 72,
        }
    };
    let call = || testhooks::bpf_fd_raw_ptr(f.cmd, TYPE_ATTR.as_ptr() as u64, size);
    if first {
        // Plainly: what the supervisor (or the kernel side) answers the type left out.
        set(0, f.forbidden);
        let v = match call() {
            Ok(o) => format!("made:{}:type:{}", describe(o.as_fd()), type_of(f, &o)),
            Err(e) => errno_str(e),
        };
        say(&format!("plain={v}"));
    }
    set(0, f.allowed);
    let stop = AtomicBool::new(false);
    let mut refused = std::collections::BTreeMap::<String, u32>::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                TYPE_ATTR[0].store(f.forbidden, Ordering::Relaxed);
                std::hint::spin_loop();
                TYPE_ATTR[0].store(f.allowed, Ordering::Relaxed);
                std::hint::spin_loop();
            }
        });
        for _ in 0..n {
            match call() {
                Ok(o) => {
                    let t = type_of(f, &o);
                    if t == f.forbidden {
                        // Alive after the call that made it: the kernel side let it be.
                        say(&format!("kept={}:type:{t}", describe(o.as_fd())));
                        break;
                    }
                    // One line per object: the parent counts them where this child is
                    // killed before its summary.
                    say(&format!("allowed=type:{t}"));
                }
                Err(e) => *refused.entry(errno_str(e)).or_default() += 1,
            }
        }
        stop.store(true, Ordering::SeqCst);
    });
    say(&format!("refused={}", tally(&refused)));
}

// ---- an fd sent away before the kernel side judges its object ---------------------------------

/// What `rt-smuggle` creates: a map of a type (its number), or a BTF object (`btf`).
#[derive(Clone, Copy)]
enum Made {
    Map(u32),
    Btf,
}

impl Made {
    fn of(arg: &str) -> Made {
        match arg {
            "btf" => Made::Btf,
            n => Made::Map(n.parse().unwrap_or_else(|_| fail("a map type or btf"))),
        }
    }

    fn create(self) -> Result<OwnedFd, bpfns_sys::Errno> {
        match self {
            Made::Map(t) => small_map(t),
            Made::Btf => {
                // Raw: libbpf's btf_load probes the kernel with a program load first.
                let data = sysbpf::minimal_btf();
                let mut a = attr();
                put_u64(&mut a, 0, data.as_ptr() as u64);
                put_u32(&mut a, 16, data.len() as u32);
                if let Some(t) = token() {
                    put_u32(&mut a, 32, rawbpf::BPF_F_TOKEN_FD);
                    put_u32(&mut a, 36, t as u32);
                }
                rawbpf::sys_bpf_fd(BPF_BTF_LOAD, &mut a)
            }
        }
    }

    /// What `fd` is, if it is what this makes: `map:ID:type:T` or `btf:ID`.
    fn describe(self, fd: &OwnedFd) -> Option<String> {
        let what = describe(fd.as_fd());
        match self {
            Made::Map(_) if what.starts_with("map:") => Some(format!(
                "{what}:type:{}",
                sysbpf::info::<sysbpf::bpf_map_info>(fd.as_fd()).map_or(0, |i| i.type_)
            )),
            Made::Btf if what.starts_with("btf:") => Some(what),
            _ => None,
        }
    }
}

/// A map of `map_type` (key 4, value 8, one entry), with the inherited BPF token if any.
fn small_map(map_type: u32) -> Result<OwnedFd, bpfns_sys::Errno> {
    let mut a = attr();
    put_u32(&mut a, 0, map_type);
    put_u32(&mut a, 4, 4);
    put_u32(&mut a, 8, 8);
    put_u32(&mut a, 12, 1);
    if let Some(t) = token() {
        put_u32(&mut a, 16, rawbpf::BPF_F_TOKEN_FD);
        put_u32(&mut a, 76, t as u32);
    }
    rawbpf::sys_bpf_fd(BPF_MAP_CREATE, &mut a)
}

fn smuggle(exe: &Path, what: Made, what_arg: &str, n: u32, fill: bool) {
    use std::os::unix::net::UnixDatagram;
    // The namespace's quota of maps, used up (the maps stay held); or one map.
    let mut held = Vec::new();
    let most = if fill { 256 } else { 1 };
    let stop = loop {
        if held.len() >= most {
            break "none".to_string();
        }
        let one = match what {
            Made::Btf => what.create(),
            Made::Map(_) => small_map(MAP_ARRAY),
        };
        match one {
            Ok(m) => held.push(m),
            Err(e) => break errno_str(e),
        }
    };
    say(&format!("smuggle_filled={}:{stop}", held.len()));
    let (mine, theirs) = UnixDatagram::pair().unwrap_or_else(|e| fail(&format!("socketpair: {e}")));
    mine.set_nonblocking(true)
        .unwrap_or_else(|e| fail(&format!("{e}")));
    // The child's end, inherited.
    let raw = theirs.as_raw_fd();
    testhooks::clear_cloexec(&theirs).unwrap_or_else(|e| fail(&format!("fcntl: {e}")));
    let (mut children, mut killed) = (0u32, 0u32);
    let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
    let mut smuggled: Option<String> = None;
    let started = Instant::now();
    while children < n && started.elapsed() < Duration::from_secs(10) && smuggled.is_none() {
        children += 1;
        let (o, k) = run_child(
            Command::new(exe).args(["rt-smuggle-child", what_arg, &raw.to_string()]),
            Duration::from_secs(15),
        );
        killed += u32::from(k);
        *outcomes
            .entry(value(&o, "made").unwrap_or("killed").to_string())
            .or_default() += 1;
        // Whatever arrived: a map here is one its creator was not to keep.
        loop {
            let mut fds = Vec::new();
            let mut b = [0u8; 1];
            match bpfns_sys::unix::recv_exact_with_fds(&mine, &mut b, &mut fds) {
                Ok(true) => {
                    for fd in fds {
                        if let Some(d) = what.describe(&fd) {
                            smuggled = Some(d);
                        }
                    }
                }
                _ => break,
            }
        }
    }
    drop(held);
    say(&format!(
        "smuggle=children:{children} killed:{killed} outcomes:{}",
        tally(&outcomes)
    ));
    say(&format!(
        "smuggled={}",
        smuggled.as_deref().unwrap_or("none")
    ));
}

fn smuggle_child(what: Made, sock: i32) {
    // The number the new map's fd gets: the lowest free one.
    let sock = testhooks::dup_raw(sock).unwrap_or_else(|e| fail(&format!("dup: {e}")));
    let guess = testhooks::dup_raw(0)
        .map(|f| f.as_raw_fd())
        .unwrap_or_else(|e| fail(&format!("dup: {e}")));
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if testhooks::send_fd_number(&sock, guess).is_ok() {
                    return;
                }
            }
        });
        let r = what.create();
        stop.store(true, Ordering::SeqCst);
        match r {
            Ok(m) => say(&format!(
                "made={}",
                what.describe(&m).unwrap_or_else(|| "?".into())
            )),
            Err(e) => say(&format!("made={}", errno_str(e))),
        }
    });
}
