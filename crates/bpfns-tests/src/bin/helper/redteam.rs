//! Helper actions for the red-team suite (`tests/redteam.rs`): the privilege levels an attacker
//! runs at, the attacks it tries from inside a namespace, and the victims it tries them on.
//! Every attack reports what it got as `key=value` lines; the suite judges them.
//!
//! ```text
//! Privilege wrappers (then exec ACTION, any action of this helper):
//!   rt-as none ACTION...      uid/gid 1000, no capabilities (bounding set untouched)
//!   rt-as bpf ACTION...       uid 0, CAP_BPF only (bounding set too)
//!   rt-as caps3 ACTION...     uid 0, CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN
//!   rt-as userns ACTION...    uid 1000 outside, root of a new user + mount namespace
//!   rt-as token ACTION...     as userns, plus a BPF token (delegate_*=any) from a bpffs the
//!                             privileged parent (this process) configured; the token's fd
//!                             number is in $BPFNS_RT_TOKEN; prints token=FD | token=error:...
//!   rt-as host ACTION...      unchanged (host root)
//!   rt-as ctr ACTION...       unchanged (inside a container: the engine set the privileges)
//!   rt-as ctr-userns ACTION...  inside a user-namespace container: a BPF token from its
//!                             /sys/fs/bpf where that bpffs delegates (then as `token`:
//!                             $BPFNS_RT_TOKEN, token=FD), else token=none:errno:E and without
//! Attacks:
//!   rt-list                   walk GET_NEXT_ID of all four kinds: ids.KIND=A,B end.KIND=ERRNO
//!   rt-open SPEC...           GET_FD_BY_ID, SPEC = KIND:ID[:ro|:tok]: open.SPEC=opened:KIND:ID|errno:E
//!   rt-objget [--umount=P] PATH...   BPF_OBJ_GET each PATH: objget.PATH=opened:KIND:ID|errno:E
//!   rt-objget-at DIR NAME     BPF_OBJ_GET NAME relative to an fd of DIR (BPF_F_PATH_FD)
//!   rt-symlink-objget TARGET...      symlink /sys/fs/bpf/rt_lN -> TARGET, then BPF_OBJ_GET it
//!   rt-bind [--umount=P] SRC:NAME... bind-mount each SRC, then BPF_OBJ_GET / read NAME in it
//!   rt-read [--umount=P] PATH...     plain open+read: read.PATH=bytes:N|errno:E
//!   rt-rename [--umount=P] PATH...   rename PATH away and back: rename.PATH=ok:..|errno:E
//!   rt-writable [--umount=P] PATH... can PATH (a file) be opened for writing, or a file be
//!                             created in PATH (a directory)? writable.PATH=ok:..|errno:E
//!   rt-mount-bpffs            mount a new bpffs instance and look inside
//!   rt-task-fd-query PID FD   BPF_TASK_FD_QUERY: prog_id=N | errno=E
//!   rt-iter                   load iter/bpf_{map,prog,link}, run them: iter.KIND=ids:...|error:...
//!   rt-race-attr OWN FOREIGN N       MAP_GET_FD_BY_ID N times while a thread flips the id
//!   rt-race-path OWN FOREIGN N       BPF_OBJ_GET N times while a thread swaps a symlink
//!   rt-kill-mid N             N children killed in the middle of trapped calls, then a walk
//!   rt-fd-exhaust MAP_ID PIN  fill the fd table, then GET_FD_BY_ID and OBJ_GET
//!   rt-steal PID FD           pidfd_getfd: steal=opened:KIND:ID|errno:E
//!   rt-ptrace PID             PTRACE_SEIZE: ptrace=ok|errno:E
//!   rt-scm SOCK               connect and receive an fd: scm=opened:KIND:ID|errno:E
//!   rt-client SOCK FOREIGN_MAP       daemon requests a member may not make: op.NAME=ok:...|denied:CODE
//!   rt-observe SOCK GO        the daemon's read-only requests: member_plan of /s, /, /t/kid,
//!                             /t (obs.plan/NS=); list with run stats, all and of /s and /
//!                             (obs.list=, obs.list/s=, obs.list/=, each ID/NAME/RUN_NS/RUN_CNT,...);
//!                             enable_stats (obs.stats=ok:FD_TARGET|denied:CODE); then
//!                             obs.ready=1, and once the file GO exists the listings again with
//!                             statistics on (obs.after=...), and obs.end=1
//!   rt-events SOCK MARKER SECS  subscribe to bpfnsd's events of /s, /, and (own) of its own
//!                             namespace (events.sub/NS=ok:NS|denied:CODE, events.subscribed=),
//!                             then print every event each subscription gets (event.SUB=KIND:NS)
//!                             until its own one shows namespace MARKER or SECS pass:
//!                             events.end=marker|timeout|closed|none
//!   rt-http ADDR              GET /metrics from ADDR: http=ok:bytes:N:namespaces:A|B|..|errno:E
//!   rt-probe SPEC...          print euid and CapEff, then rt-list and rt-open SPEC...
//!   rt-highbits SPEC...       each trapped command twice, plainly and as bpf(cmd | 1<<32):
//!                             rt-list (ids.KIND, hb.ids.KIND, hb.end.KIND), SPEC = KIND:ID
//!                             (open.SPEC, hb.open.SPEC) or pin:PATH (objget.PATH, hb.objget.PATH)
//!   rt-flood SOCK N MS [hold] open N connections to bpfnsd and keep them, ask each for hello:
//!                             holding=accepted:A refused:R other:O (refusal=MESSAGE); then
//!                             connect and close over and over from 4 threads for MS ms while
//!                             holding: flood=opened:N accepted:A refused:R other:O
//!                             connect_errors:E churn:C; with `hold`, keep the connections
//!                             until stdin's EOF
//!   rt-kill PID...            SIGKILL each PID (whatever the caller may): kill.PID=ok|errno:E
//! Victims:
//!   rt-victim LEVEL NAME      (host root) create a map pinned at /sys/fs/bpf/NAME and an
//!                             iter/bpf_map link pinned at NAME_iter, keep the map's fd across
//!                             exec into LEVEL: victim=PID fd=FD id=ID, hold until EOF
//!   rt-hold-fd FD ID          print victim=PID fd=FD id=ID, hold until EOF
//!   rt-hold-map               create a map: victim=PID fd=FD id=ID, hold until EOF
//!   rt-serve-fd SOCK          create a map and hand it to whoever connects to SOCK (on
//!                             purpose): serving=ID, until EOF
//!   rt-serve-obj KIND SOCK    the same for a map (read-only fd), prog, btf or link
//! Ownership records:
//!   rt-hijack SOCK KIND N SECS       receive a foreign KIND from SOCK, then race the ownership
//!                             recorder N times or SECS seconds: close(n) + create a KIND on n
//!                             (a map where it cannot make links) against dup2(foreign, n):
//!                             race=created:C ... (see helper/kside.rs), via=KIND
//!   rt-fill N SECS            create and close maps N times or SECS seconds, until refused:
//!                             fill=made:M errno:E
//! ```

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bpfns_model::ObjectKind;
use bpfns_sys::bpf as sysbpf;
use bpfns_sys::caps::{self, CapabilitySet};
use bpfns_sys::rawbpf;
use bpfns_sys::testhooks;

use super::{fail, hold_until_eof, kind, say};

/// The actions this module handles.
pub const ACTIONS: [&str; 82] = [
    "rt-observe",
    "rt-events",
    "rt-http",
    "rt-highbits",
    "rt-lock-hog",
    "rt-orphans",
    "rt-orphan-race",
    "rt-stall",
    "rt-flood",
    "rt-kill",
    "rt-as",
    "rt-writable",
    "rt-token-child",
    "rt-list",
    "rt-open",
    "rt-objget",
    "rt-objget-at",
    "rt-symlink-objget",
    "rt-bind",
    "rt-read",
    "rt-rename",
    "rt-mount-bpffs",
    "rt-task-fd-query",
    "rt-iter",
    "rt-race-attr",
    "rt-race-path",
    "rt-kill-mid",
    "rt-spin",
    "rt-fd-exhaust",
    "rt-steal",
    "rt-ptrace",
    "rt-scm",
    "rt-client",
    "rt-probe",
    "rt-victim",
    "rt-hold-fd",
    "rt-hold-map",
    "rt-serve-fd",
    "rt-sleep",
    "rt-serve-obj",
    "rt-hijack",
    "rt-fill",
    "rt-hold-secret",
    "rt-kread",
    "rt-kfunc-kill",
    "rt-link-oracle",
    "rt-cg-victim",
    "rt-cg-attack",
    "rt-cg-move",
    "rt-cg-mount-move",
    "rt-enter-self",
    "rt-link-race",
    "rt-query",
    "rt-netns-hold",
    "rt-fd-victim",
    "rt-fd-attack",
    "rt-sockmap-victim",
    "rt-sockmap-attack",
    "rt-sockmap-query",
    "rt-perf-query",
    "rt-xdp-victim",
    "rt-xdp-show",
    "rt-xdp-attack",
    "rt-exec",
    "rt-exec-connected",
    "rt-speak-received",
    "rt-keeper-received",
    "rt-pass-connection",
    "rt-connect-then-exec",
    "rt-hello",
    "rt-subscribe-and-pass",
    "rt-pidns-forge",
    "rt-pidns-attacker",
    "rt-pidns-a1",
    "rt-pidns-maker",
    "rt-pidns-m2",
    "rt-own-listener",
    "rt-scm-race",
    "rt-scm-race-child",
    "rt-load-low",
    "rt-load-send",
    "rt-in-netns",
];

const SETPRIV: &str = "/usr/bin/setpriv";
const UNSHARE: &str = "/usr/bin/unshare";
/// The unprivileged user the `none`, `userns` and `token` levels run as (outside).
const UID: &str = "1000";
const TOKEN_ENV: &str = "BPFNS_RT_TOKEN";

const CLONE_NEWNS: i32 = 0x0002_0000;
const CLONE_NEWUSER: i32 = 0x1000_0000;
const MS_BIND: u64 = 4096;
const MS_REC: u64 = 16384;

// bpf() commands.
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_PROG_LOAD: u32 = 5;
const BPF_PROG_GET_FD_BY_ID: u32 = 13;
const BPF_MAP_GET_FD_BY_ID: u32 = 14;
const BPF_BTF_GET_FD_BY_ID: u32 = 19;
const BPF_TASK_FD_QUERY: u32 = 20;
const BPF_LINK_CREATE: u32 = 28;
const BPF_LINK_GET_FD_BY_ID: u32 = 30;
const BPF_ITER_CREATE: u32 = 33;
const BPF_TOKEN_CREATE: u32 = 36;
const BPF_MAP_CREATE: u32 = 0;

const PROG_TYPE_TRACING: u32 = 26;
const TRACE_ITER: u32 = 28;

fn exec(program: &Path, args: &[String]) -> ! {
    use std::os::unix::process::CommandExt;
    let err = Command::new(program).args(args).exec();
    fail(&format!("exec {}: {err}", program.display()))
}

pub(crate) fn errno_str(e: bpfns_sys::Errno) -> String {
    format!("errno:{}", e.raw_os_error())
}

fn io_errno(e: &std::io::Error) -> String {
    format!("errno:{}", e.raw_os_error().unwrap_or(0))
}

/// The token fd this process inherited from `rt-as token`, if any.
pub(crate) fn token() -> Option<i32> {
    std::env::var(TOKEN_ENV).ok()?.parse().ok()
}

/// What a bpf fd is: `KIND:ID` (from its anon-inode name and its info).
pub(crate) fn describe(fd: BorrowedFd<'_>) -> String {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (k, id) = match link.as_str() {
        "anon_inode:bpf-map" => (
            "map",
            sysbpf::info::<sysbpf::bpf_map_info>(fd).map(|i| i.id),
        ),
        "anon_inode:bpf-prog" => (
            "prog",
            sysbpf::info::<sysbpf::bpf_prog_info>(fd).map(|i| i.id),
        ),
        "anon_inode:bpf_link" | "anon_inode:bpf-link" => (
            "link",
            sysbpf::info::<sysbpf::bpf_link_info>(fd).map(|i| i.id),
        ),
        "anon_inode:btf" => (
            "btf",
            sysbpf::info::<sysbpf::bpf_btf_info>(fd).map(|i| i.id),
        ),
        other => return format!("other:{other}"),
    };
    match id {
        Ok(id) => format!("{k}:{id}"),
        Err(e) => format!("{k}:?{}", e.errno.raw_os_error()),
    }
}

fn opened(r: Result<OwnedFd, bpfns_sys::Errno>) -> String {
    match r {
        Ok(fd) => format!("opened:{}", describe(fd.as_fd())),
        Err(e) => errno_str(e),
    }
}

pub(crate) fn put_u32(a: &mut [u8], off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

pub(crate) fn put_u64(a: &mut [u8], off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

pub(crate) fn attr() -> Vec<u8> {
    vec![0u8; rawbpf::ATTR_SIZE]
}

/// `*_GET_FD_BY_ID` through a raw attr (`open_flags`, and a token fd for BTF).
fn fd_by_id(kind: ObjectKind, id: u32, flags: &str) -> Result<OwnedFd, bpfns_sys::Errno> {
    let cmd = match kind {
        ObjectKind::Prog => BPF_PROG_GET_FD_BY_ID,
        ObjectKind::Map => BPF_MAP_GET_FD_BY_ID,
        ObjectKind::Btf => BPF_BTF_GET_FD_BY_ID,
        ObjectKind::Link => BPF_LINK_GET_FD_BY_ID,
    };
    let mut a = vec![0u8; 16];
    put_u32(&mut a, 0, id);
    match flags {
        "ro" => put_u32(&mut a, 8, rawbpf::BPF_F_RDONLY),
        "tok" => {
            if let Some(t) = token() {
                put_u32(&mut a, 8, rawbpf::BPF_F_TOKEN_FD);
                put_u32(&mut a, 12, t as u32);
            }
        }
        _ => {}
    }
    rawbpf::sys_bpf_fd(cmd, &mut a)
}

/// A map whose pin can be read as text through bpffs (it carries BTF: `cat` shows entries).
fn btf_map() -> OwnedFd {
    let btf = sysbpf::btf_load(&sysbpf::minimal_btf()).unwrap_or_else(|e| fail(&e.to_string()));
    let mut a = attr();
    put_u32(&mut a, 0, 2); // BPF_MAP_TYPE_ARRAY
    put_u32(&mut a, 4, 4);
    put_u32(&mut a, 8, 4);
    put_u32(&mut a, 12, 4);
    a[28..36].copy_from_slice(b"rt_vict\0");
    put_u32(&mut a, 48, sysbpf::raw(&btf) as u32);
    put_u32(&mut a, 52, 1);
    put_u32(&mut a, 56, 1);
    let map = rawbpf::sys_bpf_fd(BPF_MAP_CREATE, &mut a)
        .unwrap_or_else(|e| fail(&format!("map create: {e}")));
    // A recognisable value: key 0 -> 0x5ec7e7.
    let key = 0u32.to_ne_bytes();
    let value = 0x005e_c7e7u32.to_ne_bytes();
    let mut u = attr();
    put_u32(&mut u, 0, sysbpf::raw(&map) as u32);
    put_u64(&mut u, 8, key.as_ptr() as u64);
    put_u64(&mut u, 16, value.as_ptr() as u64);
    let _ = rawbpf::sys_bpf(BPF_MAP_UPDATE_ELEM, &mut u);
    map
}

fn map_id(fd: impl AsFd) -> u32 {
    sysbpf::info::<sysbpf::bpf_map_info>(fd)
        .map(|i| i.id)
        .unwrap_or(0)
}

/// Strip leading `--umount=PATH` options (unmounting each first, detached) and report.
fn unmount_options(args: &[String]) -> &[String] {
    let mut rest = args;
    while let Some(first) = rest.first() {
        let Some(p) = first.strip_prefix("--umount=") else {
            break;
        };
        let r = match testhooks::umount_detach(Path::new(p)) {
            Ok(()) => "ok".to_string(),
            Err(e) => errno_str(e),
        };
        say(&format!("umount.{p}={r}"));
        rest = &rest[1..];
    }
    rest
}

/// Run `action` with `args` (args[0] is the action).
pub fn run(exe: &Path, args: &[String]) {
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| fail("missing argument"))
    };
    match arg(0).as_str() {
        "rt-as" => as_level(exe, &arg(1), &args[2..]),
        "rt-token-child" => token_child(exe, &args[1..]),
        "rt-list" => list_all(),
        "rt-open" => open_specs(&args[1..]),
        "rt-highbits" => high_bits(&args[1..]),
        "rt-probe" => {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            for key in ["Uid:", "CapEff:"] {
                if let Some(l) = status.lines().find(|l| l.starts_with(key)) {
                    say(&format!(
                        "{}={}",
                        key.trim_end_matches(':').to_lowercase(),
                        l[key.len()..]
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(",")
                    ));
                }
            }
            list_all();
            open_specs(&args[1..]);
        }
        "rt-objget" => {
            for p in unmount_options(&args[1..]) {
                let r = sysbpf::obj_get(Path::new(p)).map_err(|e| e.errno);
                say(&format!("objget.{p}={}", opened(r)));
            }
        }
        "rt-objget-at" => {
            let r = std::fs::File::open(arg(1))
                .map_err(|e| io_errno(&e))
                .and_then(|dir| {
                    let name = std::ffi::CString::new(arg(2)).map_err(|_| "name".to_string())?;
                    Ok(opened(rawbpf::obj_get_at(dir.as_fd(), &name, 0)))
                });
            say(&format!(
                "objgetat.{}/{}={}",
                arg(1),
                arg(2),
                r.unwrap_or_else(|e| e)
            ));
        }
        "rt-symlink-objget" => {
            for (i, target) in args[1..].iter().enumerate() {
                let link = PathBuf::from(format!("/sys/fs/bpf/rt_l{i}"));
                let _ = std::fs::remove_file(&link);
                let r = match std::os::unix::fs::symlink(target, &link) {
                    Err(e) => format!("symlink-{}", io_errno(&e)),
                    Ok(()) => opened(sysbpf::obj_get(&link).map_err(|e| e.errno)),
                };
                let _ = std::fs::remove_file(&link);
                say(&format!("symlink.{target}={r}"));
            }
        }
        "rt-bind" => bind_attack(&args[1..]),
        "rt-read" => {
            for p in unmount_options(&args[1..]) {
                say(&format!("read.{p}={}", plain_read(Path::new(p))));
            }
        }
        "rt-rename" => {
            for p in unmount_options(&args[1..]) {
                let p = PathBuf::from(p);
                let away = p.with_file_name("rt_renamed");
                let r = match std::fs::rename(&p, &away) {
                    Ok(()) => {
                        let back = std::fs::rename(&away, &p);
                        format!("ok:back={}", back.is_ok())
                    }
                    Err(e) => io_errno(&e),
                };
                say(&format!("rename.{}={r}", p.display()));
            }
        }
        "rt-writable" => {
            for p in unmount_options(&args[1..]) {
                let path = Path::new(p);
                let r = if path.is_dir() {
                    let probe = path.join(format!(".rt-probe-{}", std::process::id()));
                    match std::fs::File::create(&probe) {
                        Ok(_) => {
                            let _ = std::fs::remove_file(&probe);
                            "ok:created-a-file".to_string()
                        }
                        Err(e) => io_errno(&e),
                    }
                } else {
                    match std::fs::OpenOptions::new().append(true).open(path) {
                        Ok(_) => "ok:opened-for-writing".to_string(),
                        Err(e) => io_errno(&e),
                    }
                };
                say(&format!("writable.{p}={r}"));
            }
        }
        "rt-mount-bpffs" => mount_bpffs(),
        "rt-task-fd-query" => {
            let pid: u32 = arg(1).parse().unwrap_or_else(|_| fail("PID"));
            let fd: u32 = arg(2).parse().unwrap_or_else(|_| fail("FD"));
            let mut buf = vec![0u8; 256];
            let mut a = vec![0u8; 48];
            put_u32(&mut a, 0, pid);
            put_u32(&mut a, 4, fd);
            put_u32(&mut a, 12, buf.len() as u32);
            put_u64(&mut a, 16, buf.as_mut_ptr() as u64);
            match rawbpf::sys_bpf(BPF_TASK_FD_QUERY, &mut a) {
                Ok(_) => say(&format!(
                    "prog_id={}",
                    u32::from_ne_bytes([a[24], a[25], a[26], a[27]])
                )),
                Err(e) => say(&format!("errno={}", e.raw_os_error())),
            }
        }
        "rt-iter" => iterators(),
        "rt-race-attr" => race_attr(&arg(1), &arg(2), &arg(3)),
        "rt-race-path" => race_path(&arg(1), &arg(2), &arg(3)),
        "rt-kill-mid" => kill_mid(exe, &arg(1)),
        "rt-spin" => loop {
            let _ = sysbpf::next_id(ObjectKind::Map, 0);
            let _ = sysbpf::fd_by_id(ObjectKind::Map, 1);
        },
        "rt-fd-exhaust" => fd_exhaust(&arg(1), &arg(2)),
        "rt-steal" => {
            let pid: i32 = arg(1).parse().unwrap_or_else(|_| fail("PID"));
            let fd: i32 = arg(2).parse().unwrap_or_else(|_| fail("FD"));
            let r = match bpfns_sys::process::open_pidfd(pid) {
                Err(e) => format!("pidfd-{}", errno_str(e.errno)),
                Ok(pidfd) => {
                    opened(bpfns_sys::fds::pidfd_getfd(pidfd.as_fd(), fd).map_err(|e| e.errno))
                }
            };
            say(&format!("steal={r}"));
        }
        "rt-ptrace" => {
            let pid: i32 = arg(1).parse().unwrap_or_else(|_| fail("PID"));
            let r = match testhooks::ptrace_seize(pid) {
                Ok(()) => "ok".to_string(),
                Err(e) => errno_str(e),
            };
            // Exiting detaches.
            say(&format!("ptrace={r}"));
        }
        "rt-scm" => {
            let r = match UnixStream::connect(arg(1)) {
                Err(e) => format!("connect-{}", io_errno(&e)),
                Ok(s) => {
                    let mut fds = Vec::new();
                    let mut b = [0u8; 1];
                    match bpfns_sys::unix::recv_exact_with_fds(s.as_fd(), &mut b, &mut fds) {
                        Ok(true) if !fds.is_empty() => {
                            format!("opened:{}", describe(fds[0].as_fd()))
                        }
                        Ok(_) => "nothing".to_string(),
                        Err(e) => errno_str(e.errno),
                    }
                }
            };
            say(&format!("scm={r}"));
        }
        "rt-client" => client_attacks(&arg(1), &arg(2)),
        "rt-observe" => observe(&arg(1), &arg(2)),
        "rt-events" => events(&arg(1), &arg(2), &arg(3)),
        "rt-http" => http_get(&arg(1)),
        "rt-victim" => {
            let map = btf_map();
            let id = map_id(&map);
            let pin = Path::new("/sys/fs/bpf").join(arg(2));
            if let Err(e) = sysbpf::obj_pin(&map, &pin) {
                fail(&format!("pin: {e}"));
            }
            // Also an iterator over every map, pinned beside it (what a tenant allowed to
            // load tracing programs may keep in its bpffs).
            let iter = libbpf_rs::btf::Btf::from_vmlinux()
                .map_err(|e| e.to_string())
                .and_then(|btf| iter_link(&btf, "bpf_map"));
            if let Ok((_, link)) = &iter {
                let _ = sysbpf::obj_pin(
                    link,
                    &Path::new("/sys/fs/bpf").join(format!("{}_iter", arg(2))),
                );
            }
            testhooks::clear_cloexec(&map).unwrap_or_else(|e| fail(&e.to_string()));
            let fd = sysbpf::raw(&map);
            std::mem::forget(map);
            let level = arg(1);
            let rest = ["rt-hold-fd".to_string(), fd.to_string(), id.to_string()];
            as_level(exe, &level, &rest);
        }
        "rt-hold-fd" => {
            say(&format!(
                "victim={} fd={} id={}",
                std::process::id(),
                arg(1),
                arg(2)
            ));
            hold_until_eof();
        }
        "rt-hold-map" => {
            let map = btf_map();
            say(&format!(
                "victim={} fd={} id={}",
                std::process::id(),
                sysbpf::raw(&map),
                map_id(&map)
            ));
            hold_until_eof();
            drop(map);
        }
        "rt-serve-fd" => serve_fd(&arg(1)),
        "rt-sleep" => std::thread::sleep(Duration::from_secs(arg(1).parse().unwrap_or(5))),
        "rt-serve-obj" => serve_obj(&arg(1), &arg(2)),
        "rt-hijack" => hijack(&arg(1), &arg(2), &arg(3), &arg(4)),
        "rt-fill" => fill(&arg(1), &arg(2)),
        "rt-orphans" => orphans_symlink(&arg(1), &arg(2), &arg(3)),
        "rt-lock-hog" => lock_hog(
            &arg(1),
            &arg(2),
            arg(3).parse().unwrap_or(4),
            arg(4).parse().unwrap_or(5),
        ),
        "rt-orphan-race" => orphan_race(
            &arg(1),
            &arg(2),
            &arg(3),
            arg(4).parse().unwrap_or(300),
            arg(5).parse().unwrap_or(300),
            &args[6..],
        ),
        // rt-stall DIR: make DIR, hold its inode lock until stdin closes.
        "rt-stall" => {
            let dir = PathBuf::from(arg(1));
            let _ = std::fs::create_dir(&dir);
            let r = match bpfns_sys::testhooks::hold_dir_lock(&dir) {
                Ok(()) => "ok".to_string(),
                Err(e) => errno_str(e),
            };
            say(&format!("holding={r}"));
            hold_until_eof();
        }
        "rt-flood" => flood(
            &arg(1),
            arg(2).parse().unwrap_or(0),
            arg(3).parse().unwrap_or(0),
            args.get(4).is_some_and(|h| h == "hold"),
        ),
        "rt-kill" => {
            for pid in &args[1..] {
                let r = pid
                    .parse::<i32>()
                    .map_err(|_| bpfns_sys::Errno::INVAL)
                    .and_then(|p| {
                        bpfns_sys::process::open_pidfd(p)
                            .and_then(|fd| bpfns_sys::unix::pidfd_kill(fd.as_fd()))
                            .map_err(|e| e.errno)
                    });
                let v = match r {
                    Ok(()) => "ok".to_string(),
                    Err(e) => errno_str(e),
                };
                say(&format!("kill.{pid}={v}"));
            }
        }
        _ => more(exe, args),
    }
}

// ---- privilege levels --------------------------------------------------------------------

fn as_level(exe: &Path, level: &str, rest: &[String]) {
    let exe_s = exe.to_string_lossy().into_owned();
    let as_user = |tail: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            &format!("--reuid={UID}"),
            &format!("--regid={UID}"),
            "--clear-groups",
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(tail.iter().map(|s| s.to_string()));
        v.extend(rest.iter().cloned());
        v
    };
    match level {
        "host" => exec(exe, rest),
        "bpf" | "caps3" => {
            let keep = if level == "bpf" {
                CapabilitySet::BPF
            } else {
                CapabilitySet::BPF | CapabilitySet::PERFMON | CapabilitySet::NET_ADMIN
            };
            caps::restrict_for_exec(keep).unwrap_or_else(|e| fail(&e.to_string()));
            exec(exe, rest)
        }
        "none" => exec(Path::new(SETPRIV), &as_user(&[&exe_s])),
        "userns" => exec(
            Path::new(SETPRIV),
            &as_user(&[
                UNSHARE,
                "--user",
                "--map-root-user",
                "--mount",
                "--",
                &exe_s,
            ]),
        ),
        "token" => token_runtime(exe, rest),
        "ctr" => exec(exe, rest),
        "ctr-userns" => container_token(exe, rest),
        other => fail(&format!("unknown level {other}")),
    }
}

/// In a user-namespace container: a BPF token from the container's /sys/fs/bpf if that bpffs
/// delegates (a runtime made it inside the container's user namespace), used as the `token`
/// level uses its own; without one, `rest` runs as it is.
fn container_token(exe: &Path, rest: &[String]) {
    let made = std::fs::File::open("/sys/fs/bpf")
        .map_err(|e| io_errno(&e))
        .and_then(|dir| {
            let dir = OwnedFd::from(dir);
            let mut a = vec![0u8; 8];
            put_u32(&mut a, 4, sysbpf::raw(&dir) as u32);
            rawbpf::sys_bpf_fd(BPF_TOKEN_CREATE, &mut a).map_err(errno_str)
        });
    let mut cmd = Command::new(exe);
    cmd.args(rest);
    match made {
        Ok(tok) => {
            testhooks::clear_cloexec(&tok).unwrap_or_else(|e| fail(&e.to_string()));
            let n = sysbpf::raw(&tok);
            std::mem::forget(tok);
            say(&format!("token={n}"));
            cmd.env(TOKEN_ENV, n.to_string());
        }
        Err(e) => say(&format!("token=none:{e}")),
    }
    use std::os::unix::process::CommandExt;
    let err = cmd.exec();
    fail(&format!("exec: {err}"))
}

/// The privileged half of the token dance (a container runtime's part): start the child as
/// uid 1000, map it to root in its new user namespace, and set the delegation options on the
/// bpffs context it opened there.
fn token_runtime(exe: &Path, rest: &[String]) {
    let (mine, theirs) = UnixStream::pair().unwrap_or_else(|e| fail(&e.to_string()));
    let mut args: Vec<String> = [
        &format!("--reuid={UID}"),
        &format!("--regid={UID}"),
        "--clear-groups",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(exe.to_string_lossy().into_owned());
    args.push("rt-token-child".into());
    args.extend(rest.iter().cloned());
    let mut child = Command::new(SETPRIV)
        .args(&args)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .spawn()
        .unwrap_or_else(|e| fail(&format!("spawn: {e}")));
    let pid = child.id();
    let mut sock = mine;
    let step = |sock: &mut UnixStream, fds: &mut Vec<OwnedFd>| -> Option<u8> {
        let mut b = [0u8; 1];
        match bpfns_sys::unix::recv_exact_with_fds(sock.as_fd(), &mut b, fds) {
            Ok(true) => Some(b[0]),
            _ => None,
        }
    };
    let mut fds = Vec::new();
    if step(&mut sock, &mut fds) == Some(b'u') {
        let w = |f: &str, v: &str| std::fs::write(format!("/proc/{pid}/{f}"), v);
        let r = w("setgroups", "deny")
            .and_then(|()| w("uid_map", &format!("0 {UID} 1")))
            .and_then(|()| w("gid_map", &format!("0 {UID} 1")));
        let _ = sock.write_all(if r.is_ok() { b"k" } else { b"e" });
        if step(&mut sock, &mut fds) == Some(b'f') && !fds.is_empty() {
            let fs = fds.remove(0);
            let r = [
                "delegate_cmds",
                "delegate_maps",
                "delegate_progs",
                "delegate_attachs",
            ]
            .iter()
            .try_for_each(|k| testhooks::fsconfig_string(&fs, k, "any"))
            .and_then(|()| testhooks::fsconfig_create(&fs));
            let _ = sock.write_all(match r {
                Ok(()) => b"k",
                Err(_) => b"e",
            });
        }
    }
    // Pass our stdin's end on as the end of the child's (its holds end with ours).
    let forward = sock.try_clone().ok();
    std::thread::spawn(move || {
        hold_until_eof();
        if let Some(s) = forward {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    });
    let status = child.wait().unwrap_or_else(|e| fail(&e.to_string()));
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        say(&format!("token-child=signaled:{sig}"));
        std::process::exit(128 + sig);
    }
    std::process::exit(status.code().unwrap_or(1));
}

/// The unprivileged half: a user namespace, a mount namespace, a bpffs context handed to the
/// parent, then the mount and the token; exec `rest` with the token inherited.
fn token_child(exe: &Path, rest: &[String]) {
    let sock = std::io::stdin();
    let sock = sock.as_fd();
    let send = |b: &[u8], fds: &[BorrowedFd<'_>]| bpfns_sys::unix::send_with_fds(sock, b, fds);
    let recv = || {
        let mut b = [0u8; 1];
        let mut fds = Vec::new();
        match bpfns_sys::unix::recv_exact_with_fds(sock, &mut b, &mut fds) {
            Ok(true) => b[0],
            _ => 0,
        }
    };
    let fail_token = |what: &str, e: String| -> ! {
        say(&format!("token=error:{what}:{e}"));
        std::process::exit(3)
    };
    if let Err(e) = testhooks::unshare(CLONE_NEWUSER) {
        fail_token("unshare-user", errno_str(e));
    }
    if send(b"u", &[]).is_err() || recv() != b'k' {
        fail_token("uid-map", "the parent could not map us".into());
    }
    if let Err(e) = testhooks::unshare(CLONE_NEWNS) {
        fail_token("unshare-mnt", errno_str(e));
    }
    let fs = testhooks::fsopen_bpffs().unwrap_or_else(|e| fail_token("fsopen", errno_str(e)));
    if send(b"f", &[fs.as_fd()]).is_err() || recv() != b'k' {
        fail_token(
            "fsconfig",
            "the parent could not configure the bpffs".into(),
        );
    }
    let mnt = testhooks::fsmount(&fs).unwrap_or_else(|e| fail_token("fsmount", errno_str(e)));
    let dir = testhooks::reopen_dir(&mnt).unwrap_or_else(|e| fail_token("reopen", errno_str(e)));
    let mut a = vec![0u8; 8];
    put_u32(&mut a, 4, sysbpf::raw(&dir) as u32);
    let tok = rawbpf::sys_bpf_fd(BPF_TOKEN_CREATE, &mut a)
        .unwrap_or_else(|e| fail_token("token-create", errno_str(e)));
    testhooks::clear_cloexec(&tok).unwrap_or_else(|e| fail_token("cloexec", errno_str(e)));
    let n = sysbpf::raw(&tok);
    std::mem::forget(tok);
    say(&format!("token={n}"));
    use std::os::unix::process::CommandExt;
    let err = Command::new(exe)
        .args(rest)
        .env(TOKEN_ENV, n.to_string())
        .exec();
    fail(&format!("exec: {err}"))
}

// ---- listing and opening -----------------------------------------------------------------

fn list_all() {
    for k in ObjectKind::ALL {
        let mut ids = Vec::new();
        let mut cur = 0;
        let end = loop {
            match sysbpf::next_id(k, cur) {
                Ok(Some(id)) if ids.len() < 100_000 => {
                    ids.push(id.to_string());
                    cur = id;
                }
                Ok(Some(_)) => break -1,
                Ok(None) => break 2,
                Err(e) => break e.errno.raw_os_error(),
            }
        };
        say(&format!("ids.{}={}", k.name(), ids.join(",")));
        say(&format!("end.{}={end}", k.name()));
    }
}

/// `bpf(cmd | 1<<32, attr)`: a new fd described, or the errno.
fn high_fd(cmd: u32, a: &mut [u8]) -> String {
    match testhooks::bpf_cmd64(u64::from(cmd) | 1 << 32, a) {
        Err(e) => errno_str(e),
        Ok(n) => {
            let n = n as i32;
            let r = testhooks::dup_raw(n);
            let _ = testhooks::close_raw(n);
            match r {
                Ok(fd) => format!("opened:{}", describe(fd.as_fd())),
                Err(e) => format!("returned:{n}:{}", errno_str(e)),
            }
        }
    }
}

/// The trapped commands with high bits set in `cmd`, beside the plain ones.
fn high_bits(specs: &[String]) {
    list_all();
    for (k, cmd) in [
        (ObjectKind::Prog, 11u32),
        (ObjectKind::Map, 12),
        (ObjectKind::Btf, 23),
        (ObjectKind::Link, 31),
    ] {
        let mut ids = Vec::new();
        let mut cur = 0u32;
        let end = loop {
            let mut a = vec![0u8; 12];
            put_u32(&mut a, 0, cur);
            match testhooks::bpf_cmd64(u64::from(cmd) | 1 << 32, &mut a) {
                Ok(_) => {
                    let next = u32::from_ne_bytes([a[4], a[5], a[6], a[7]]);
                    if next <= cur || ids.len() >= 100_000 {
                        break -1;
                    }
                    ids.push(next.to_string());
                    cur = next;
                }
                Err(e) => break e.raw_os_error(),
            }
        };
        say(&format!("hb.ids.{}={}", k.name(), ids.join(",")));
        say(&format!("hb.end.{}={end}", k.name()));
    }
    for spec in specs {
        if let Some(path) = spec.strip_prefix("pin:") {
            let c = std::ffi::CString::new(path).unwrap_or_else(|_| fail("a path"));
            say(&format!(
                "objget.{path}={}",
                opened(sysbpf::obj_get(Path::new(path)).map_err(|e| e.errno))
            ));
            let mut a = vec![0u8; 16];
            put_u64(&mut a, 0, c.as_ptr() as u64);
            say(&format!(
                "hb.objget.{path}={}",
                high_fd(rawbpf::BPF_OBJ_GET, &mut a)
            ));
            continue;
        }
        let mut parts = spec.split(':');
        let k = kind(parts.next().unwrap_or(""));
        let id: u32 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fail("KIND:ID"));
        say(&format!("open.{spec}={}", opened(fd_by_id(k, id, ""))));
        let cmd = match k {
            ObjectKind::Prog => BPF_PROG_GET_FD_BY_ID,
            ObjectKind::Map => BPF_MAP_GET_FD_BY_ID,
            ObjectKind::Btf => BPF_BTF_GET_FD_BY_ID,
            ObjectKind::Link => BPF_LINK_GET_FD_BY_ID,
        };
        let mut a = vec![0u8; 16];
        put_u32(&mut a, 0, id);
        say(&format!("hb.open.{spec}={}", high_fd(cmd, &mut a)));
    }
}

fn open_specs(specs: &[String]) {
    for spec in specs {
        let mut parts = spec.split(':');
        let k = kind(parts.next().unwrap_or(""));
        let id: u32 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fail("KIND:ID"));
        let flags = parts.next().unwrap_or("");
        say(&format!("open.{spec}={}", opened(fd_by_id(k, id, flags))));
    }
}

fn plain_read(p: &Path) -> String {
    match std::fs::File::open(p) {
        Err(e) => io_errno(&e),
        Ok(mut f) => {
            let mut buf = vec![0u8; 1 << 16];
            match f.read(&mut buf) {
                Ok(n) => {
                    let shown: String = String::from_utf8_lossy(&buf[..n.min(48)])
                        .chars()
                        .map(|c| if c.is_ascii_graphic() { c } else { '.' })
                        .collect();
                    format!("bytes:{n}:{shown}")
                }
                Err(e) => format!("read-{}", io_errno(&e)),
            }
        }
    }
}

fn scratch_dir(tag: &str) -> PathBuf {
    let d = PathBuf::from(format!("/tmp/bpfns-rt-{tag}-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d
}

/// Bind-mount each source directory somewhere we can reach and try its pin there.
fn bind_attack(pairs: &[String]) {
    let pairs = unmount_options(pairs);
    let target = scratch_dir("bind");
    for pair in pairs {
        let (src, name) = pair.rsplit_once(':').unwrap_or((pair.as_str(), ""));
        let r = testhooks::mount(Path::new(src), &target, "", MS_BIND | MS_REC);
        match r {
            Err(e) => say(&format!("bind.{src}=mount-{}", errno_str(e))),
            Ok(()) => {
                let pin = target.join(name);
                let o = opened(sysbpf::obj_get(&pin).map_err(|e| e.errno));
                let rd = plain_read(&pin);
                say(&format!("bind.{src}=mounted objget:{o} read:{rd}"));
                let _ = testhooks::umount_detach(&target);
            }
        }
    }
    let _ = std::fs::remove_dir(&target);
}

/// Mount a new bpffs instance: what is in it, and can any of it be opened or read?
fn mount_bpffs() {
    let dir = scratch_dir("mnt");
    match testhooks::mount(Path::new("bpf"), &dir, "bpf", 0) {
        Err(e) => say(&format!("mount={}", errno_str(e))),
        Ok(()) => {
            say("mount=ok");
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            say(&format!("entries={}", names.join(",")));
            for n in &names {
                let p = dir.join(n);
                say(&format!("read.{n}={}", plain_read(&p)));
                say(&format!(
                    "objget.{n}={}",
                    opened(sysbpf::obj_get(&p).map_err(|e| e.errno))
                ));
            }
            let _ = testhooks::umount_detach(&dir);
        }
    }
    let _ = std::fs::remove_dir(&dir);
}

// ---- iterators ---------------------------------------------------------------------------

/// A BPF instruction.
pub(crate) fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst | (src << 4)) << 8)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

/// Byte offset of `field` in `struct name`, from the kernel's BTF.
fn field_offset(btf: &libbpf_rs::btf::Btf<'_>, name: &str, field: &str) -> Option<i16> {
    use libbpf_rs::btf::types::{MemberAttr, Struct};
    let s: Struct<'_> = btf.type_by_name(name)?;
    let m = s
        .iter()
        .find(|m| m.name.and_then(|n| n.to_str()) == Some(field))?;
    match m.attr {
        MemberAttr::Normal { offset } => i16::try_from(offset / 8).ok(),
        MemberAttr::BitField { .. } => None,
    }
}

/// `iter/<target>` that writes each object's id (a u32) with `bpf_seq_write`: `path` is the
/// chain of pointer fields from the object to the struct holding `id`.
fn iter_program(ptr_fields: &[i16], id_off: i16) -> Vec<u64> {
    const MOV64_X: u8 = 0xbf;
    const LDX_DW: u8 = 0x79;
    const LDX_W: u8 = 0x61;
    const STX_W: u8 = 0x63;
    const JEQ_K: u8 = 0x15;
    const ADD64_K: u8 = 0x07;
    const MOV64_K: u8 = 0xb7;
    const CALL: u8 = 0x85;
    const EXIT: u8 = 0x95;
    const SEQ_WRITE: i32 = 127;
    let mut p = vec![
        insn(MOV64_X, 6, 1, 0, 0), // r6 = ctx
        insn(LDX_DW, 2, 6, 8, 0),  // r2 = ctx->obj
    ];
    // Each pointer step: if (!r2) goto out; r2 = *(r2 + off)
    let body_after_checks = 8; // instructions from the last check to `out`
    let steps = ptr_fields.len();
    for (i, off) in ptr_fields.iter().enumerate() {
        let to_out = ((steps - i) * 2 + body_after_checks) as i16;
        p.push(insn(JEQ_K, 2, 0, to_out, 0));
        p.push(insn(LDX_DW, 2, 2, *off, 0));
    }
    p.extend([
        insn(JEQ_K, 2, 0, body_after_checks as i16, 0),
        insn(LDX_W, 3, 2, id_off, 0),   // r3 = obj->id
        insn(STX_W, 10, 3, -8, 0),      // *(u32 *)(fp - 8) = r3
        insn(LDX_DW, 1, 6, 0, 0),       // r1 = ctx->meta
        insn(LDX_DW, 1, 1, 0, 0),       // r1 = meta->seq
        insn(MOV64_X, 2, 10, 0, 0),     // r2 = fp
        insn(ADD64_K, 2, 0, 0, -8),     // r2 -= 8
        insn(MOV64_K, 3, 0, 0, 4),      // r3 = 4
        insn(CALL, 0, 0, 0, SEQ_WRITE), // bpf_seq_write(seq, fp - 8, 4)
        insn(MOV64_K, 0, 0, 0, 0),      // out: r0 = 0
        insn(EXIT, 0, 0, 0, 0),
    ]);
    p
}

fn load_iter(name: &str, func_btf_id: u32, insns: &[u64]) -> Result<OwnedFd, String> {
    let license = c"GPL";
    let mut log = vec![0u8; 1 << 16];
    let mut a = attr();
    put_u32(&mut a, 0, PROG_TYPE_TRACING);
    put_u32(&mut a, 4, insns.len() as u32);
    put_u64(&mut a, 8, insns.as_ptr() as u64);
    put_u64(&mut a, 16, license.as_ptr() as u64);
    put_u32(&mut a, 24, 1);
    put_u32(&mut a, 28, log.len() as u32);
    put_u64(&mut a, 32, log.as_mut_ptr() as u64);
    let n = name.as_bytes();
    a[48..48 + n.len().min(15)].copy_from_slice(&n[..n.len().min(15)]);
    put_u32(&mut a, 68, TRACE_ITER);
    put_u32(&mut a, 108, func_btf_id);
    if let Some(t) = token() {
        put_u32(&mut a, 44, rawbpf::BPF_F_TOKEN_FD);
        put_u32(&mut a, 144, t as u32);
    }
    rawbpf::sys_bpf_fd(BPF_PROG_LOAD, &mut a).map_err(|e| {
        let text = String::from_utf8_lossy(&log);
        let last = text
            .trim_end_matches('\0')
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .replace(' ', "_");
        format!("load-{}:{last}", errno_str(e))
    })
}

/// Load `iter/<target>` and attach it: (program, link).
fn iter_link(btf: &libbpf_rs::btf::Btf<'_>, target: &str) -> Result<(OwnedFd, OwnedFd), String> {
    use libbpf_rs::btf::types::Func;
    let func = format!("bpf_iter_{target}");
    let func_id: u32 = btf
        .type_by_name::<Func<'_>>(&func)
        .map(|f| f.type_id().into())
        .ok_or_else(|| format!("no-btf-func:{func}"))?;
    let missing = |what: &str| format!("no-btf-field:{what}");
    let insns = match target {
        "bpf_map" => iter_program(
            &[],
            field_offset(btf, "bpf_map", "id").ok_or(missing("bpf_map.id"))?,
        ),
        "bpf_link" => iter_program(
            &[],
            field_offset(btf, "bpf_link", "id").ok_or(missing("bpf_link.id"))?,
        ),
        "bpf_prog" => iter_program(
            &[field_offset(btf, "bpf_prog", "aux").ok_or(missing("bpf_prog.aux"))?],
            field_offset(btf, "bpf_prog_aux", "id").ok_or(missing("bpf_prog_aux.id"))?,
        ),
        other => return Err(format!("unknown-target:{other}")),
    };
    let prog = load_iter("rt_iter", func_id, &insns)?;
    let mut l = attr();
    put_u32(&mut l, 0, sysbpf::raw(&prog) as u32);
    put_u32(&mut l, 8, TRACE_ITER);
    let link = rawbpf::sys_bpf_fd(BPF_LINK_CREATE, &mut l)
        .map_err(|e| format!("link-{}", errno_str(e)))?;
    Ok((prog, link))
}

/// Load, attach and run one iterator; the ids it wrote, and its own program and link ids.
fn run_iter(btf: &libbpf_rs::btf::Btf<'_>, target: &str) -> Result<(Vec<u32>, u32, u32), String> {
    let (prog, link) = iter_link(btf, target)?;
    let prog_id = sysbpf::info::<sysbpf::bpf_prog_info>(&prog)
        .map(|i| i.id)
        .unwrap_or(0);
    let link_id = sysbpf::info::<sysbpf::bpf_link_info>(&link)
        .map(|i| i.id)
        .unwrap_or(0);
    let mut c = attr();
    put_u32(&mut c, 0, sysbpf::raw(&link) as u32);
    let it = rawbpf::sys_bpf_fd(BPF_ITER_CREATE, &mut c)
        .map_err(|e| format!("iter-{}", errno_str(e)))?;
    let mut f = std::fs::File::from(it);
    let mut out = Vec::new();
    f.read_to_end(&mut out)
        .map_err(|e| format!("read-{}", io_errno(&e)))?;
    let ids = out
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((ids, prog_id, link_id))
}

fn iterators() {
    let btf = match libbpf_rs::btf::Btf::from_vmlinux() {
        Ok(b) => b,
        Err(e) => {
            for k in ["map", "prog", "link"] {
                say(&format!("iter.{k}=error:vmlinux-btf:{e}"));
            }
            return;
        }
    };
    for (k, target) in [
        ("map", "bpf_map"),
        ("prog", "bpf_prog"),
        ("link", "bpf_link"),
    ] {
        match run_iter(&btf, target) {
            Ok((ids, own_prog, own_link)) => {
                let shown: Vec<String> = ids.iter().map(u32::to_string).collect();
                say(&format!("iter.{k}=ids:{}", shown.join(",")));
                say(&format!("own.prog={own_prog}"));
                say(&format!("own.link={own_link}"));
            }
            Err(e) => say(&format!("iter.{k}=error:{e}")),
        }
    }
}

// ---- races -------------------------------------------------------------------------------

/// MAP_GET_FD_BY_ID on memory another thread keeps rewriting between an own and a foreign id.
fn race_attr(own: &str, foreign: &str, n: &str) {
    let own: u32 = own.parse().unwrap_or_else(|_| fail("OWN"));
    let foreign: u32 = foreign.parse().unwrap_or_else(|_| fail("FOREIGN"));
    let n: usize = n.parse().unwrap_or_else(|_| fail("N"));
    let a: Arc<[AtomicU32; 4]> = Arc::new(Default::default());
    a[0].store(own, Ordering::SeqCst);
    let stop = Arc::new(AtomicBool::new(false));
    let (a2, s2) = (a.clone(), stop.clone());
    let flipper = std::thread::spawn(move || {
        let mut flips = 0u64;
        while !s2.load(Ordering::Relaxed) {
            a2[0].store(foreign, Ordering::Relaxed);
            std::hint::spin_loop();
            a2[0].store(own, Ordering::Relaxed);
            flips += 1;
        }
        flips
    });
    let (mut got_own, mut got_foreign, mut other, mut enoent) = (0, 0, 0, 0);
    for _ in 0..n {
        match testhooks::bpf_fd_raw_ptr(BPF_MAP_GET_FD_BY_ID, a[0].as_ptr() as u64, 12) {
            Ok(fd) => match map_id(&fd) {
                id if id == own => got_own += 1,
                id if id == foreign => got_foreign += 1,
                _ => other += 1,
            },
            Err(e) if e == bpfns_sys::Errno::NOENT => enoent += 1,
            Err(_) => other += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let flips = flipper.join().unwrap_or(0);
    say(&format!(
        "race=own:{got_own} foreign:{got_foreign} enoent:{enoent} other:{other} flips:{flips}"
    ));
}

/// BPF_OBJ_GET of a path whose symlink another thread keeps swapping between an own pin and
/// a foreign one.
fn race_path(own: &str, foreign: &str, n: &str) {
    let n: usize = n.parse().unwrap_or_else(|_| fail("N"));
    let dir = Path::new("/sys/fs/bpf");
    let x = dir.join("rt_x");
    let _ = std::fs::remove_file(&x);
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let (own_t, foreign_t) = (dir.join(own), dir.join(foreign));
    let (t1, t2) = (dir.join("rt_t1"), dir.join("rt_t2"));
    let _ = std::os::unix::fs::symlink(&own_t, &x);
    let x2 = x.clone();
    let flipper = std::thread::spawn(move || {
        let mut swaps = 0u64;
        while !s2.load(Ordering::Relaxed) {
            for (t, target) in [(&t1, &foreign_t), (&t2, &own_t)] {
                let _ = std::fs::remove_file(t);
                if std::os::unix::fs::symlink(target, t).is_ok() && std::fs::rename(t, &x2).is_ok()
                {
                    swaps += 1;
                }
            }
        }
        swaps
    });
    let mut seen: std::collections::BTreeMap<String, u32> = Default::default();
    for _ in 0..n {
        let r = opened(sysbpf::obj_get(&x).map_err(|e| e.errno));
        *seen.entry(r).or_default() += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = flipper.join().unwrap_or(0);
    let _ = std::fs::remove_file(&x);
    let shown: Vec<String> = seen.iter().map(|(k, v)| format!("{k}x{v}")).collect();
    say(&format!("race={} swaps:{swaps}", shown.join(";")));
}

/// Children killed in the middle of trapped calls (their ids free for reuse), then a walk:
/// the supervisor must neither hang nor answer the wrong task.
fn kill_mid(exe: &Path, n: &str) {
    let n: u64 = n.parse().unwrap_or_else(|_| fail("N"));
    let mut killed = 0;
    for i in 0..n {
        let Ok(mut c) = Command::new(exe)
            .arg("rt-spin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
        else {
            continue;
        };
        std::thread::sleep(Duration::from_micros(200 + (i % 7) * 300));
        if c.kill().is_ok() {
            killed += 1;
        }
        let _ = c.wait();
    }
    say(&format!("killed={killed}"));
    list_all();
}

fn fd_exhaust(map: &str, pin: &str) {
    let id: u32 = map.parse().unwrap_or_else(|_| fail("MAP_ID"));
    testhooks::set_nofile_soft_limit(64).unwrap_or_else(|e| fail(&format!("rlimit: {e}")));
    let mut filler = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => filler.push(f),
            Err(_) => break,
        }
        if filler.len() > 4096 {
            break;
        }
    }
    say(&format!(
        "full_fdbyid={}",
        opened(fd_by_id(ObjectKind::Map, id, ""))
    ));
    say(&format!(
        "full_objget={}",
        opened(sysbpf::obj_get(Path::new(pin)).map_err(|e| e.errno))
    ));
    filler.truncate(filler.len().saturating_sub(4));
    say(&format!(
        "after={}",
        opened(fd_by_id(ObjectKind::Map, id, ""))
    ));
}

// ---- victims -----------------------------------------------------------------------------

fn serve_fd(sock: &str) {
    let map = btf_map();
    let _ = std::fs::remove_file(sock);
    let l = UnixListener::bind(sock).unwrap_or_else(|e| fail(&format!("bind {sock}: {e}")));
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o777));
    say(&format!("serving={}", map_id(&map)));
    let map = Arc::new(map);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let _ = bpfns_sys::unix::send_with_fds(s.as_fd(), b"m", &[map.as_fd()]);
        }
    });
    hold_until_eof();
    let _ = std::fs::remove_file(sock);
}

// ---- the daemon's API ----------------------------------------------------------------------

fn client_attacks(sock: &str, foreign_map: &str) {
    use bpfns_client::{Client, ClientError};
    let show = |name: &str, r: Result<String, ClientError>| match r {
        Ok(v) => say(&format!("op.{name}=ok:{v}")),
        Err(e) => say(&format!(
            "op.{name}=denied:{}",
            e.code()
                .map(|c| format!("{c:?}"))
                .unwrap_or_else(|| e.to_string().replace(' ', "_"))
        )),
    };
    let connect = || Client::connect(sock);
    let mut c = match connect() {
        Ok(c) => c,
        Err(e) => {
            say(&format!(
                "op.connect=denied:{}",
                e.to_string().replace(' ', "_")
            ));
            return;
        }
    };
    show(
        "hello",
        c.hello()
            .map(|h| format!("{}:admin={}", h.namespace, h.host_admin)),
    );
    for p in ["/rt_x", "/s/rt_x"] {
        show(&format!("create{p}"), c.ns_create(p).map(|n| n.path));
    }
    for p in ["/s", "/t", "/"] {
        show(
            &format!("delete{p}"),
            c.ns_delete(p).map(|(to, n)| format!("{n}->{to}")),
        );
    }
    // Widen its own namespace's program policy, a sibling's, or a child's beyond its own.
    let allow = bpfns_model::Policy::tracing(true);
    for p in ["/t", "/s", "/", "/t/kid"] {
        show(
            &format!("policy{p}"),
            c.ns_set_policy(p, allow)
                .map(|n| format!("{}:{}", n.path, n.policy)),
        );
    }
    show(
        "create-wider/t/rt_w",
        c.ns_create_with_policy("/t/rt_w", allow).map(|n| n.path),
    );
    let me = std::process::id() as i32;
    for p in ["/", "/s", "/t/kid"] {
        show(
            &format!("enter-self{p}"),
            c.enter(p, me).map(|()| "entered".into()),
        );
    }
    for p in ["/", "/s"] {
        let r = match Command::new("/bin/sleep")
            .arg("5")
            .stdin(Stdio::null())
            .spawn()
        {
            Ok(mut child) => {
                let r = c.enter(p, child.id() as i32).map(|()| "entered".into());
                let _ = child.kill();
                let _ = child.wait();
                r
            }
            Err(e) => Ok(format!("no-child:{e}")),
        };
        show(&format!("enter-child{p}"), r);
    }
    let fid: u32 = foreign_map.parse().unwrap_or(0);
    show(
        "list-maps",
        c.list(ObjectKind::Map).map(|v| {
            v.iter()
                .map(|o| o.id.to_string())
                .collect::<Vec<_>>()
                .join(",")
        }),
    );
    show(
        "getfd-foreign",
        c.get_fd(ObjectKind::Map, fid)
            .map(|fd| describe(fd.as_fd())),
    );
    show(
        "show-foreign",
        c.show(ObjectKind::Map, fid).map(|o| o.id.to_string()),
    );
    // A listener that is not a seccomp listener, for a process that is not our child.
    let devnull = std::fs::File::open("/dev/null").map(OwnedFd::from);
    if let Ok(fd) = devnull {
        show(
            "supervise-foreign",
            c.supervise(1, fd.as_fd()).map(|()| "supervised".into()),
        );
    }
    // Junk on the wire: a bogus frame, then a fresh connection must still work.
    if let Ok(mut raw) = UnixStream::connect(sock) {
        let _ = raw.write_all(&[0xff; 64]);
        let _ = raw.write_all(&u32::MAX.to_be_bytes());
        let _ = raw.set_read_timeout(Some(Duration::from_millis(300)));
        let mut b = [0u8; 16];
        let _ = raw.read(&mut b);
    }
    show(
        "after-junk",
        connect().and_then(|mut c| c.hello()).map(|h| h.namespace),
    );
}

/// `op.NAME=ok:V` or `NAME=denied:CODE` for a daemon request's result.
fn said(name: &str, r: Result<String, bpfns_client::ClientError>) {
    match r {
        Ok(v) => say(&format!("{name}=ok:{v}")),
        Err(e) => say(&format!(
            "{name}=denied:{}",
            e.code()
                .map(|c| format!("{c:?}"))
                .unwrap_or_else(|| e.to_string().replace(' ', "_"))
        )),
    }
}

/// A listing with run-time statistics as `ID/NAME/RUN_NS/RUN_CNT,...`.
fn stats_text(v: &[bpfns_proto::ObjectInfo]) -> String {
    v.iter()
        .map(|o| {
            format!(
                "{}/{}/{}/{}",
                o.id,
                o.name,
                o.details.run_time_ns.unwrap_or(0),
                o.details.run_cnt.unwrap_or(0)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn observe(sock: &str, go: &str) {
    let mut c = match bpfns_client::Client::connect(sock) {
        Ok(c) => c,
        Err(e) => {
            say(&format!(
                "obs.connect=denied:{}",
                e.to_string().replace(' ', "_")
            ));
            say("obs.ready=none");
            say("obs.end=1");
            return;
        }
    };
    for p in ["/s", "/", "/t/kid", "/t"] {
        said(
            &format!("obs.plan{p}"),
            c.member_plan(p).map(|m| {
                format!(
                    "{}:bpffs={}:state_dir={}",
                    m.path,
                    m.bpffs,
                    if m.state_dir.is_empty() {
                        "hidden"
                    } else {
                        &m.state_dir
                    }
                )
            }),
        );
    }
    let listings = |c: &mut bpfns_client::Client, tag: &str| {
        said(
            &format!("obs.{tag}"),
            c.prog_stats(None, false).map(|v| stats_text(&v)),
        );
        for p in ["/s", "/"] {
            said(
                &format!("obs.{tag}{p}"),
                c.prog_stats(Some(p), true).map(|v| stats_text(&v)),
            );
        }
    };
    listings(&mut c, "list");
    let stats = match c.enable_stats() {
        Ok(fd) => {
            say(&format!("obs.stats=ok:{}", describe_fd(fd.as_fd())));
            Some(fd)
        }
        Err(e) => {
            said("obs.stats", Err(e));
            None
        }
    };
    say("obs.ready=1");
    // Go on once GO exists (a file: the token level's wrapper passes on only stdin's end).
    let go = Path::new(go);
    for _ in 0..600 {
        if go.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    listings(&mut c, "after");
    drop(stats);
    say("obs.end=1");
}

/// What an fd is, as `/proc/self/fd` names it (`anon_inode:bpf-stats`, ...).
fn describe_fd(fd: BorrowedFd<'_>) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.display().to_string().replace(' ', "_"))
        .unwrap_or_else(|e| format!("unreadable:{e}"))
}

fn events(sock: &str, marker: &str, secs: &str) {
    use std::sync::mpsc;
    let secs: u64 = secs.parse().unwrap_or(20);
    let (tx, rx) = mpsc::channel::<(String, Option<String>)>();
    let mut own = false;
    for (tag, ns) in [("/s", Some("/s")), ("/", Some("/")), ("own", None)] {
        let mut c = match bpfns_client::Client::connect(sock) {
            Ok(c) => c,
            Err(e) => {
                say(&format!(
                    "events.sub{tag}=denied:{}",
                    e.to_string().replace(' ', "_")
                ));
                continue;
            }
        };
        let r = c.subscribe(ns, Vec::new());
        let ok = r.is_ok();
        said(&format!("events.sub{tag}"), r);
        if !ok {
            continue;
        }
        own |= tag == "own";
        let tx = tx.clone();
        let tag = tag.to_string();
        std::thread::spawn(move || loop {
            match c.next_event() {
                Ok(e) => {
                    let line = format!("{}:{}", e.kind.name(), e.namespace);
                    if tx.send((tag.clone(), Some(line))).is_err() {
                        return;
                    }
                }
                Err(_) => {
                    let _ = tx.send((tag.clone(), None));
                    return;
                }
            }
        });
    }
    drop(tx);
    say(&format!(
        "events.subscribed={}",
        if own { "ok" } else { "none" }
    ));
    if !own {
        say("events.end=none");
        return;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let mut end = "timeout";
    let mut grace: Option<std::time::Instant> = None;
    loop {
        let now = std::time::Instant::now();
        let until = grace.unwrap_or(deadline).min(deadline);
        if now >= until {
            break;
        }
        match rx.recv_timeout(until - now) {
            Ok((tag, Some(line))) => {
                say(&format!("event.{tag}={line}"));
                if tag == "own" && line.ends_with(&format!(":{marker}")) && grace.is_none() {
                    end = "marker";
                    // The other subscriptions' events of before the marker, if any, are
                    // on their way: a moment for them.
                    grace = Some(std::time::Instant::now() + Duration::from_millis(500));
                }
            }
            Ok((tag, None)) => {
                say(&format!("event.{tag}=closed"));
                if tag == "own" && grace.is_none() {
                    end = "closed";
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    say(&format!("events.end={end}"));
    // The subscriptions' threads block in reads: leave without waiting for them.
    std::process::exit(0);
}

fn http_get(addr: &str) {
    use std::net::{TcpStream, ToSocketAddrs};
    let Some(a) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        fail(&format!("bad address {addr}"));
    };
    let mut s = match TcpStream::connect_timeout(&a, Duration::from_secs(3)) {
        Ok(s) => s,
        Err(e) => {
            say(&format!("http={}", io_errno(&e)));
            return;
        }
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: bpfns\r\n\r\n");
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body);
    let text = String::from_utf8_lossy(&body);
    let mut names: Vec<&str> = text
        .split("namespace=\"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .collect();
    names.sort_unstable();
    names.dedup();
    say(&format!(
        "http=ok:bytes:{}:namespaces:{}",
        body.len(),
        names.join("|")
    ));
}

// ---- ownership records -------------------------------------------------------------------

/// Create a KIND object and hand it (a read-only fd for maps) to whoever connects to `sock`.
fn serve_obj(what: &str, sock: &str) {
    let (k, fds) = super::create_as_is(what);
    let id = super::object_id(k, &fds[0]);
    let served = if k == ObjectKind::Map {
        sysbpf::map_fd_by_id_rdonly(id).unwrap_or_else(|e| fail(&format!("read-only fd: {e}")))
    } else {
        fds[0]
            .try_clone()
            .unwrap_or_else(|e| fail(&format!("dup: {e}")))
    };
    let _ = std::fs::remove_file(sock);
    let l = UnixListener::bind(sock).unwrap_or_else(|e| fail(&format!("bind {sock}: {e}")));
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o777));
    say(&format!("serving={id}"));
    let served = Arc::new(served);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let _ = bpfns_sys::unix::send_with_fds(s.as_fd(), b"o", &[served.as_fd()]);
        }
    });
    hold_until_eof();
    drop(fds);
    let _ = std::fs::remove_file(sock);
}

/// Receive a foreign object from `sock` and race the ownership recorder with it.
fn hijack(sock: &str, what: &str, rounds: &str, secs: &str) {
    let rounds: u64 = rounds.parse().unwrap_or_else(|_| fail("N"));
    let secs: u64 = secs.parse().unwrap_or_else(|_| fail("SECS"));
    // Creating, not tracing: no perfmon power (stopped for that where tracing is denied).
    super::drop_perfmon();
    let s = UnixStream::connect(sock).unwrap_or_else(|e| fail(&format!("connect {sock}: {e}")));
    let mut fds = Vec::new();
    let mut b = [0u8; 1];
    match bpfns_sys::unix::recv_exact_with_fds(s.as_fd(), &mut b, &mut fds) {
        Ok(true) if !fds.is_empty() => {}
        other => {
            say(&format!("race=recv-failed:{other:?}"));
            return;
        }
    }
    let foreign = fds.remove(0);
    say(&format!("foreign={}", describe(foreign.as_fd())));
    // Links need an attach point this level may not have: any creation call carries any kind.
    let via = if what == "link" && super::kside::Creator::new("link").is_err() {
        "map"
    } else {
        what
    };
    say(&format!("via={via}"));
    super::kside::race(foreign, via, rounds, Some(secs));
}

/// Fill the ownership table: create and close maps as fast as possible.
fn fill(n: &str, secs: &str) {
    let n: u64 = n.parse().unwrap_or_else(|_| fail("N"));
    let secs: u64 = secs.parse().unwrap_or_else(|_| fail("SECS"));
    super::drop_perfmon();
    let c = match super::kside::Creator::new("map") {
        Ok(c) => c,
        Err(e) => {
            say(&format!("fill=made:0 errno:setup-{e}"));
            return;
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let mut made = 0u64;
    let mut errno = 0;
    while made < n && std::time::Instant::now() < deadline {
        match c.create() {
            Ok(fd) => {
                made += 1;
                let _ = testhooks::close_raw(fd);
            }
            Err(e) => {
                errno = e.raw_os_error();
                break;
            }
        }
    }
    say(&format!("fill=made:{made} errno:{errno}"));
}

// ---- programs, attachments, links, netlink, listeners ------------------------------------
//
// ```text
//   rt-hold-secret            (victim) an array map whose value is a secret text:
//                             victim=PID fd=FD id=ID, hold until EOF
//   rt-kread PID FD           a socket filter that walks the task list to PID, its fd table to
//                             FD and reads the array map's value with bpf_probe_read_kernel:
//                             kread=secret:TEXT | kread=STEP-errno:E[:verifier's last line]
//   rt-kfunc-kill PID         a cgroup_skb program calling bpf_task_from_pid and
//                             bpf_send_signal_task(SIGKILL) on PID, run with PROG_TEST_RUN:
//                             kfunc=ran:retval:R | kfunc=load-E:[verifier's last line] | ...
//   rt-link-oracle CG ID...   LINK_CREATE before program/link ID by id (BPF_F_BEFORE|BPF_F_ID)
//                             at CG's egress and lo's tcx ingress:
//                             oracle.HOOK.KIND.ID=errno:E|attached, oracle.HOOK=load-E;
//                             then a link of its own, reopened by id: oracle.own.HOOK=...
//   rt-cg-victim CG MODE [SOCK]      (victim) a cgroup_skb program on cgroup CG, ingress,
//                             MODE legacy | multi | link; hands its program (and link) fds to
//                             whoever connects to SOCK: victim=PROG_ID link=LINK_ID
//   rt-cg-attack CG WHAT [SOCK]      WHAT: detach (legacy PROG_DETACH, no program fd) |
//                             replace (own program, legacy PROG_ATTACH) | replace-multi
//                             (BPF_F_REPLACE of the program received from SOCK, then
//                             PROG_DETACH of it) | link-create (LINK_CREATE over the hook,
//                             also with BPF_F_REPLACE) | link-ops (LINK_UPDATE and LINK_DETACH
//                             of the link received from SOCK): one line per step
//   rt-cg-mount-move own|join VICTIM [HOLDER]  move VICTIM into its own cgroup through a
//                             cgroup2 mount of its own, in namespaces of its own or those of
//                             HOLDER: ns=ok|WHAT-errno:E, move=ok|errno:E|-
//   rt-netns-hold             a new network namespace (lo up): netns=PID, hold until EOF
//   rt-fd-victim NS           (victim) setns(NS), attach a flow dissector: victim=PROG_ID
//   rt-fd-attack              attach its own flow dissector (PROG_ATTACH): replace=...
//   rt-sockmap-victim SOCK    (victim) a sockmap with a stream verdict program; hands the map
//                             and the program over on SOCK: victim=PROG_ID map=MAP_ID
//   rt-sockmap-attack SOCK    detach the received program, attach its own over it
//   rt-perf-query TP_ID       a perf event on the tracepoint, PERF_EVENT_IOC_QUERY_BPF:
//                             ids=A,B cnt=N | errno=E
//   rt-xdp-victim NS MODE     (victim) setns(NS), XDP on lo, MODE netlink | link: victim=ID
//   rt-xdp-show NS            the XDP program id on lo in NS, through netlink: xdp=ID
//   rt-xdp-attack             through netlink: seen=ID (RTM_GETLINK), off=ok|errno:E
//   rt-in-netns NS ACTION...  setns(NS) (needs CAP_SYS_ADMIN), then exec ACTION
//   rt-exec SOCK NS ARGS...   what `bpfns exec` does: start this helper with ARGS as a member
//                             of NS (BPFNS_RT_EXEC_PID = our pid in its environment), wait
//   rt-own-listener DPID MAP  kill(SIGKILL) the process holding its listener ($BPFNS_RT_EXEC_PID)
//                             and bpfnsd (DPID), install a filter with its own listener that
//                             answers CONTINUE, MAP_GET_FD_BY_ID(MAP): kill.*=, install=, open=
//   rt-scm-race MS SPEC...    a child opens foreign objects (SPEC = map:ID | pin:PATH) in a loop
//                             while a second thread sends every fd number it has to us over
//                             SCM_RIGHTS, for MS milliseconds:
//                             race=received:R foreign:F child:STATUS opened:O
// ```

const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_PROG_ATTACH: u32 = 8;
const BPF_PROG_DETACH: u32 = 9;
const BPF_PROG_TEST_RUN: u32 = 10;
const BPF_PROG_QUERY: u32 = 16;
const BPF_LINK_UPDATE: u32 = 29;
const BPF_LINK_DETACH: u32 = 34;
const PROG_SOCKET_FILTER: u32 = 1;
const PROG_XDP: u32 = 6;
const PROG_CGROUP_SKB: u32 = 8;
const PROG_SK_SKB: u32 = 14;
const PROG_FLOW_DISSECTOR: u32 = 22;
const ATTACH_CGROUP_INGRESS: u32 = 0;
const ATTACH_SK_SKB_STREAM_VERDICT: u32 = 5;
const ATTACH_FLOW_DISSECTOR: u32 = 17;
const ATTACH_XDP: u32 = 37;
const F_ALLOW_MULTI: u32 = 2;
const F_REPLACE: u32 = 4;
const MAP_SOCKMAP: u32 = 15;
const MAP_ARRAY_TYPE: u32 = 2;
const EXEC_ENV: &str = "BPFNS_RT_EXEC_PID";
pub(crate) const SECRET: &[u8; 32] = b"TOP-SECRET-OF-NAMESPACE-S\0\0\0\0\0\0\0";

/// `r0 = imm; exit`.
fn returning(imm: i32) -> [u64; 2] {
    [insn(0xb7, 0, 0, 0, imm), insn(0x95, 0, 0, 0, 0)]
}

/// `BPF_PROG_LOAD` of `insns` (through the token where the process has one).
fn load_here(
    prog_type: u32,
    insns: &[u64],
    expected_attach: u32,
) -> Result<OwnedFd, bpfns_sys::Errno> {
    let license = c"GPL";
    let mut a = attr();
    put_u32(&mut a, 0, prog_type);
    put_u32(&mut a, 4, insns.len() as u32);
    put_u64(&mut a, 8, insns.as_ptr() as u64);
    put_u64(&mut a, 16, license.as_ptr() as u64);
    put_u32(&mut a, 68, expected_attach);
    if let Some(t) = token() {
        put_u32(&mut a, 44, rawbpf::BPF_F_TOKEN_FD);
        put_u32(&mut a, 144, t as u32);
    }
    rawbpf::sys_bpf_fd(BPF_PROG_LOAD, &mut a)
}

/// A program of our own: loaded here, or — where bpfns refuses loads from a thread with
/// perfmon power (CAP_PERFMON, CAP_SYS_ADMIN) — by a child that drops all but CAP_BPF and
/// CAP_NET_ADMIN and hands the fd back, as an attacker holding those would.
fn load(prog_type: u32, insns: &[u64], expected_attach: u32) -> Result<OwnedFd, String> {
    let first = match load_here(prog_type, insns, expected_attach) {
        Ok(fd) => return Ok(fd),
        Err(e) => format!("load-{}", errno_str(e)),
    };
    let exe = std::env::current_exe().map_err(|_| first.clone())?;
    let (mine, theirs) = UnixStream::pair().map_err(|_| first.clone())?;
    let imm = insns.first().map(|i| (i >> 32) as i32).unwrap_or(0);
    let child = Command::new(exe)
        .args(["rt-load-low", &prog_type.to_string(), &imm.to_string()])
        .arg(expected_attach.to_string())
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return Err(first);
    };
    let mut fds = Vec::new();
    let mut b = [0u8; 1];
    let got = bpfns_sys::unix::recv_exact_with_fds(mine.as_fd(), &mut b, &mut fds);
    let _ = child.wait();
    match got {
        Ok(true) if !fds.is_empty() => Ok(fds.remove(0)),
        _ => Err(first),
    }
}

fn prog_id(fd: impl AsFd) -> u32 {
    sysbpf::info::<sysbpf::bpf_prog_info>(fd)
        .map(|i| i.id)
        .unwrap_or(0)
}

fn link_id(fd: impl AsFd) -> u32 {
    sysbpf::info::<sysbpf::bpf_link_info>(fd)
        .map(|i| i.id)
        .unwrap_or(0)
}

fn done(r: Result<i64, bpfns_sys::Errno>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => errno_str(e),
    }
}

/// Write `pid` (`self`: this process) into the cgroup `cg`'s `cgroup.procs`: move it there.
fn cg_move(cg: &str, pid: &str) -> String {
    let pid = if pid == "self" {
        std::process::id().to_string()
    } else {
        pid.to_string()
    };
    match std::fs::write(format!("{cg}/cgroup.procs"), pid) {
        Ok(()) => "ok".into(),
        Err(e) => io_errno(&e),
    }
}

/// Move process `victim` into one's own cgroup through a cgroup2 mount of one's own: with
/// `how` = `own`, in new user, mount and cgroup namespaces; with `join`, in the user and cgroup
/// namespaces of process `holder` (created by host root: its user namespace is uid 0's, so a
/// uid-0 caller holds every capability in it), naming the cgroup namespace and then not
/// (`nstype` 0). Prints `ns=` (how the namespaces went), then `move=` (`-` if never tried).
fn cg_mount_move(how: &str, victim: &str, holder: Option<&str>) {
    let cg = libc::CLONE_NEWCGROUP;
    let ns = match how {
        "own" => testhooks::unshare(CLONE_NEWUSER | CLONE_NEWNS | cg).map_err(errno_str),
        "join" => {
            let holder = holder.unwrap_or_else(|| fail("join needs the holder's pid"));
            let open = |kind: &str| {
                std::fs::File::open(format!("/proc/{holder}/ns/{kind}"))
                    .map_err(|e| format!("open-{kind}-{}", io_errno(&e)))
            };
            open("user").and_then(|user| {
                let cgroup = open("cgroup")?;
                testhooks::setns(&user, CLONE_NEWUSER)
                    .map_err(|e| format!("setns-user-{}", errno_str(e)))?;
                testhooks::setns(&cgroup, cg).or_else(|named| {
                    testhooks::setns(&cgroup, 0).map_err(|any| {
                        format!(
                            "setns-cgroup-{};setns-any-{}",
                            errno_str(named),
                            errno_str(any)
                        )
                    })
                })?;
                testhooks::unshare(CLONE_NEWNS).map_err(|e| format!("unshare-mnt-{}", errno_str(e)))
            })
        }
        other => fail(&format!("rt-cg-mount-move: unknown way {other}")),
    };
    match ns {
        Err(e) => {
            say(&format!("ns={e}"));
            say("move=-");
        }
        Ok(()) => {
            say("ns=ok");
            // A detached cgroup2 mount: its root is the cgroup namespace's, one's own cgroup.
            let moved = testhooks::fsopen("cgroup2")
                .map_err(|e| format!("fsopen-{}", errno_str(e)))
                .and_then(|fs| {
                    testhooks::fsconfig_create(&fs)
                        .map_err(|e| format!("create-{}", errno_str(e)))?;
                    testhooks::fsmount(&fs).map_err(|e| format!("fsmount-{}", errno_str(e)))
                })
                .and_then(|mnt| {
                    let procs = format!("/proc/self/fd/{}/cgroup.procs", sysbpf::raw(&mnt));
                    std::fs::write(procs, victim).map_err(|e| io_errno(&e))
                });
            say(&format!(
                "move={}",
                moved.map_or_else(|e| e, |()| "ok".into())
            ));
        }
    }
}

/// Choose the cgroup of one's own namespace `ns`: move into the cgroup `cg`, start a child
/// there and ask bpfnsd (at `sock`) to let it enter `ns`, as a first member would.
/// Then the same with a child namespace `ns/d` it creates (key `child`).
fn enter_self(sock: &str, ns: &str, cg: &str) {
    say(&format!("move={}", cg_move(cg, "self")));
    let word = |r: Result<(), bpfns_client::ClientError>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string().replace(' ', "_"),
    };
    let enter = |ns: &str| {
        let mut child = match Command::new("/bin/sleep").arg("30").spawn() {
            Ok(c) => c,
            Err(e) => fail(&format!("spawning sleep: {e}")),
        };
        let r =
            bpfns_client::Client::connect(sock).and_then(|mut c| c.enter(ns, child.id() as i32));
        let _ = child.kill();
        let _ = child.wait();
        word(r)
    };
    say(&format!("enter={}", enter(ns)));
    let kid = format!("{ns}/d");
    let made = bpfns_client::Client::connect(sock).and_then(|mut c| c.ns_create(&kid).map(drop));
    match made {
        Ok(()) => say(&format!("child={}", enter(&kid))),
        Err(e) => say(&format!("child=create:{}", word(Err(e)))),
    }
}

/// `BPF_LINK_CREATE` of a cgroup_skb program on the cgroup `cg`, `n` times, while another
/// thread flips the attr's attach type between XDP (37), which bpfnsd once let the kernel
/// answer where tracing is allowed, and cgroup egress (1): the kernel reads the attr again.
fn link_race(cg: &str, n: u32) {
    let dir = std::fs::File::open(cg).unwrap_or_else(|e| fail(&format!("open {cg}: {e}")));
    let p = match load(PROG_CGROUP_SKB, &RETURN_ONE_PASS, 0) {
        Ok(p) => p,
        Err(e) => {
            say(&format!("plain={e}"));
            say(&format!("race={e}"));
            return;
        }
    };
    // u64s: the attach type is flipped through an aligned AtomicU32.
    let attr: Arc<Vec<AtomicU32>> = Arc::new((0..36).map(|_| AtomicU32::new(0)).collect());
    attr[0].store(sysbpf::raw(&p) as u32, Ordering::SeqCst);
    attr[1].store(sysbpf::raw(&dir) as u32, Ordering::SeqCst);
    attr[2].store(1, Ordering::SeqCst);
    let call = |a: &Arc<Vec<AtomicU32>>| {
        testhooks::bpf_fd_raw_ptr(BPF_LINK_CREATE, a[0].as_ptr() as u64, 144)
    };
    say(&format!(
        "plain={}",
        match call(&attr) {
            Ok(l) => format!("created:{}", link_id(&l)),
            Err(e) => errno_str(e),
        }
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (attr, stop) = (attr.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                attr[2].store(37, Ordering::Relaxed);
                std::hint::spin_loop();
                attr[2].store(1, Ordering::Relaxed);
                std::hint::spin_loop();
            }
        })
    };
    let mut counts = std::collections::BTreeMap::<String, u32>::new();
    let mut made = None;
    // At most `n` tries or 10 s, whichever ends first: a slow machine (a TCG virtual machine)
    // makes fewer tries, never a harness timeout.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for _ in 0..n {
        if std::time::Instant::now() > until {
            break;
        }
        match call(&attr) {
            Ok(l) => {
                made = Some(link_id(&l));
                break;
            }
            Err(e) => *counts.entry(errno_str(e)).or_default() += 1,
        }
    }
    stop.store(true, Ordering::SeqCst);
    let _ = flipper.join();
    let tally = counts
        .iter()
        .map(|(k, v)| format!("{k}x{v}"))
        .collect::<Vec<_>>()
        .join(",");
    say(&format!(
        "race={}",
        match made {
            Some(id) => format!("created:{id}:after:{tally}"),
            None => format!("refused:{tally}"),
        }
    ));
}

/// `BPF_PROG_ATTACH` / `BPF_PROG_DETACH` with a raw attr.
fn prog_attach(
    cmd: u32,
    target: i32,
    prog: i32,
    attach_type: u32,
    flags: u32,
    replace: i32,
) -> String {
    let mut a = vec![0u8; 20];
    put_u32(&mut a, 0, target as u32);
    put_u32(&mut a, 4, prog as u32);
    put_u32(&mut a, 8, attach_type);
    put_u32(&mut a, 12, flags);
    put_u32(&mut a, 16, replace as u32);
    done(rawbpf::sys_bpf(cmd, &mut a))
}

/// Receive the fds a victim hands over on `sock`.
fn receive_fds(sock: &str) -> Result<Vec<OwnedFd>, String> {
    let s = UnixStream::connect(sock).map_err(|e| format!("connect-{}", io_errno(&e)))?;
    let mut fds = Vec::new();
    let mut b = [0u8; 1];
    match bpfns_sys::unix::recv_exact_with_fds(s.as_fd(), &mut b, &mut fds) {
        Ok(true) if !fds.is_empty() => Ok(fds),
        Ok(_) => Err("nothing".into()),
        Err(e) => Err(errno_str(e.errno)),
    }
}

/// Hand `fds` to whoever connects to `sock` (on purpose), on a thread.
fn serve_fds(sock: &str, fds: Vec<OwnedFd>) {
    let _ = std::fs::remove_file(sock);
    let l = UnixListener::bind(sock).unwrap_or_else(|e| fail(&format!("bind {sock}: {e}")));
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o777));
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let b: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
            let _ = bpfns_sys::unix::send_with_fds(s.as_fd(), b"f", &b);
        }
    });
}

/// Move this process into the network namespace at `path`.
fn enter_netns(path: &str) {
    let ns = bpfns_sys::thread::open_ns(Path::new(path)).unwrap_or_else(|e| fail(&e.to_string()));
    bpfns_sys::thread::enter_net_ns(&ns).unwrap_or_else(|e| fail(&e.to_string()));
}

/// Byte offset of `field` in the struct or union `id`, looking into anonymous members.
fn offset_in(
    btf: &libbpf_rs::btf::Btf<'_>,
    id: libbpf_rs::btf::TypeId,
    field: &str,
) -> Option<u32> {
    use libbpf_rs::btf::types::{Composite, MemberAttr};
    use libbpf_rs::btf::BtfType;
    let t: BtfType<'_> = btf.type_by_id(id)?;
    let c = Composite::try_from(t.skip_mods_and_typedefs()).ok()?;
    for m in c.iter() {
        let MemberAttr::Normal { offset } = m.attr else {
            continue;
        };
        match m.name.and_then(|n| n.to_str()) {
            Some(n) if n == field => return Some(offset / 8),
            None => {
                if let Some(inner) = offset_in(btf, m.ty, field) {
                    return Some(offset / 8 + inner);
                }
            }
            _ => {}
        }
    }
    None
}

fn struct_field(btf: &libbpf_rs::btf::Btf<'_>, name: &str, field: &str) -> Result<i32, String> {
    use libbpf_rs::btf::types::Struct;
    let s: Struct<'_> = btf
        .type_by_name(name)
        .ok_or_else(|| format!("no-btf-struct:{name}"))?;
    offset_in(btf, s.type_id(), field)
        .map(|o| o as i32)
        .ok_or_else(|| format!("no-btf-field:{name}.{field}"))
}

/// The kernel-memory read: walk from the current task along `tasks` to the task whose tgid is
/// `pid`, then files->fdt->fd[fd]->private_data (a bpf_array) and copy 32 bytes of its value
/// into `out`'s value with bpf_probe_read_kernel.
pub(crate) fn kread_program(
    btf: &libbpf_rs::btf::Btf<'_>,
    pid: i32,
    fd: i32,
    out: i32,
) -> Result<Vec<u64>, String> {
    const MOV64_X: u8 = 0xbf;
    const MOV64_K: u8 = 0xb7;
    const ADD64_K: u8 = 0x07;
    const LDX_W: u8 = 0x61;
    const LDX_DW: u8 = 0x79;
    const ST_W: u8 = 0x62;
    const JEQ_K: u8 = 0x15;
    const JNE_K: u8 = 0x55;
    const CALL: u8 = 0x85;
    const EXIT: u8 = 0x95;
    const LD_IMM64: u8 = 0x18;
    const GET_CURRENT_TASK: i32 = 35;
    const PROBE_READ_KERNEL: i32 = 113;
    const MAP_LOOKUP: i32 = 1;
    let tasks = struct_field(btf, "task_struct", "tasks")?;
    let tgid = struct_field(btf, "task_struct", "tgid")?;
    let files = struct_field(btf, "task_struct", "files")?;
    let fdt = struct_field(btf, "files_struct", "fdt")?;
    let fdarr = struct_field(btf, "fdtable", "fd")?;
    let private = struct_field(btf, "file", "private_data")?;
    let value = struct_field(btf, "bpf_array", "value")?;
    // r7 = *(u64 *)(r7 + off), through the stack at fp-16.
    let read8 = |off: i32| {
        [
            insn(MOV64_X, 1, 10, 0, 0),
            insn(ADD64_K, 1, 0, 0, -16),
            insn(MOV64_K, 2, 0, 0, 8),
            insn(MOV64_X, 3, 7, 0, 0),
            insn(ADD64_K, 3, 0, 0, off),
            insn(CALL, 0, 0, 0, PROBE_READ_KERNEL),
            insn(LDX_DW, 7, 10, -16, 0),
        ]
    };
    let mut p = vec![
        insn(CALL, 0, 0, 0, GET_CURRENT_TASK),
        insn(MOV64_X, 7, 0, 0, 0),
        insn(MOV64_K, 8, 0, 0, 4096),
    ];
    // loop: tgid of r7 into fp-8
    let top = p.len();
    p.extend([
        insn(MOV64_X, 1, 10, 0, 0),
        insn(ADD64_K, 1, 0, 0, -8),
        insn(MOV64_K, 2, 0, 0, 4),
        insn(MOV64_X, 3, 7, 0, 0),
        insn(ADD64_K, 3, 0, 0, tgid),
        insn(CALL, 0, 0, 0, PROBE_READ_KERNEL),
        insn(LDX_W, 1, 10, -8, 0),
    ]);
    let found_jump = p.len();
    p.push(0); // if r1 == pid goto found (patched)
    p.extend(read8(tasks));
    p.push(insn(ADD64_K, 7, 0, 0, -tasks));
    p.push(insn(ADD64_K, 8, 0, 0, -1));
    let back = p.len();
    p.push(insn(JNE_K, 8, 0, (top as i64 - back as i64 - 1) as i16, 0));
    p.extend(returning(1));
    let found = p.len();
    p[found_jump] = insn(JEQ_K, 1, 0, (found - found_jump - 1) as i16, pid);
    p.extend(read8(files));
    p.extend(read8(fdt));
    p.extend(read8(fdarr));
    p.extend(read8(fd * 8));
    p.extend(read8(private));
    p.push(insn(ADD64_K, 7, 0, 0, value));
    p.extend([
        insn(ST_W, 10, 0, -24, 0),
        insn(LD_IMM64, 1, 1, 0, out), // BPF_PSEUDO_MAP_FD
        0,
        insn(MOV64_X, 2, 10, 0, 0),
        insn(ADD64_K, 2, 0, 0, -24),
        insn(CALL, 0, 0, 0, MAP_LOOKUP),
        insn(JEQ_K, 0, 0, 6, 0),
        insn(MOV64_X, 1, 0, 0, 0),
        insn(MOV64_K, 2, 0, 0, SECRET.len() as i32),
        insn(MOV64_X, 3, 7, 0, 0),
        insn(CALL, 0, 0, 0, PROBE_READ_KERNEL),
        insn(MOV64_K, 0, 0, 0, 2),
        insn(EXIT, 0, 0, 0, 0),
        insn(MOV64_K, 0, 0, 0, 3),
        insn(EXIT, 0, 0, 0, 0),
    ]);
    Ok(p)
}

fn kread(pid: i32, fd: i32) -> String {
    let btf = match libbpf_rs::btf::Btf::from_vmlinux() {
        Ok(b) => b,
        Err(e) => return format!("btf-error:{e}"),
    };
    // The output array, through the token where the member has one.
    let mut c = attr();
    put_u32(&mut c, 0, MAP_ARRAY_TYPE);
    put_u32(&mut c, 4, 4);
    put_u32(&mut c, 8, SECRET.len() as u32);
    put_u32(&mut c, 12, 1);
    if let Some(t) = token() {
        put_u32(&mut c, 16, rawbpf::BPF_F_TOKEN_FD);
        put_u32(&mut c, 76, t as u32);
    }
    let out = match rawbpf::sys_bpf_fd(BPF_MAP_CREATE, &mut c) {
        Ok(m) => m,
        Err(e) => return format!("map-{}", errno_str(e)),
    };
    let insns = match kread_program(&btf, pid, fd, sysbpf::raw(&out)) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let license = c"GPL";
    // Without a log first (the loop makes a long one); with one only to say why not.
    let mut log = vec![0u8; 1 << 24];
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut a = attr();
        put_u32(&mut a, 0, PROG_SOCKET_FILTER);
        put_u32(&mut a, 4, insns.len() as u32);
        put_u64(&mut a, 8, insns.as_ptr() as u64);
        put_u64(&mut a, 16, license.as_ptr() as u64);
        if let Some(log) = log {
            put_u32(&mut a, 24, 1);
            put_u32(&mut a, 28, log.len() as u32);
            put_u64(&mut a, 32, log.as_mut_ptr() as u64);
        }
        if let Some(t) = token() {
            put_u32(&mut a, 44, rawbpf::BPF_F_TOKEN_FD);
            put_u32(&mut a, 144, t as u32);
        }
        rawbpf::sys_bpf_fd(BPF_PROG_LOAD, &mut a)
    };
    let prog = match attempt(None).or_else(|_| attempt(Some(&mut log))) {
        Ok(p) => p,
        Err(e) => {
            let text = String::from_utf8_lossy(&log);
            let last = text
                .trim_end_matches('\0')
                .lines()
                .rev()
                .find(|l| {
                    !l.trim().is_empty()
                        && !l.starts_with("processed")
                        && !l.starts_with("verification time")
                        && !l.starts_with("stack depth")
                })
                .unwrap_or("")
                .replace(' ', "_");
            return format!("load-{}:{last}", errno_str(e));
        }
    };
    let packet = [0u8; 64];
    let mut t = vec![0u8; 80];
    put_u32(&mut t, 0, sysbpf::raw(&prog) as u32);
    put_u32(&mut t, 8, packet.len() as u32);
    put_u64(&mut t, 16, packet.as_ptr() as u64);
    put_u32(&mut t, 32, 1); // repeat
    if let Err(e) = rawbpf::sys_bpf(BPF_PROG_TEST_RUN, &mut t) {
        return format!("run-{}", errno_str(e));
    }
    let retval = u32::from_ne_bytes([t[4], t[5], t[6], t[7]]);
    let key = 0u32.to_ne_bytes();
    let mut val = [0u8; 32];
    let mut l = attr();
    put_u32(&mut l, 0, sysbpf::raw(&out) as u32);
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
        format!("nothing:retval:{retval}")
    } else {
        format!("secret:{text}")
    }
}

/// The last line of a verifier log that says why, with spaces as `_`.
fn log_reason(log: &[u8]) -> String {
    String::from_utf8_lossy(log)
        .trim_end_matches('\0')
        .lines()
        .rev()
        .find(|l| {
            !l.trim().is_empty()
                && !l.starts_with("processed")
                && !l.starts_with("verification time")
        })
        .unwrap_or("")
        .replace(' ', "_")
}

/// A `cgroup_skb` program (loadable with `CAP_BPF` alone) that calls the generic kfuncs
/// `bpf_task_from_pid` and `bpf_send_signal_task` to SIGKILL `pid`, run with
/// `BPF_PROG_TEST_RUN`: `ran:retval:R` (0: sent; 1: no such task), or why not.
fn kfunc_kill(pid: i32) -> String {
    use libbpf_rs::btf::types::Func;
    const KFUNC: u8 = 2; // BPF_PSEUDO_KFUNC_CALL
    let btf = match libbpf_rs::btf::Btf::from_vmlinux() {
        Ok(b) => b,
        Err(e) => return format!("btf-error:{e}"),
    };
    let id = |name: &str| -> Option<i32> {
        let id: u32 = btf.type_by_name::<Func<'_>>(name)?.type_id().into();
        i32::try_from(id).ok()
    };
    let (Some(from_pid), Some(send), Some(release)) = (
        id("bpf_task_from_pid"),
        id("bpf_send_signal_task"),
        id("bpf_task_release"),
    ) else {
        return "no-kfuncs-in-btf".into();
    };
    let insns = [
        insn(0xb7, 1, 0, 0, pid),          // r1 = pid
        insn(0x85, 0, KFUNC, 0, from_pid), // r0 = bpf_task_from_pid(r1)
        insn(0x55, 0, 0, 2, 0),            // if r0 != 0 goto +2
        insn(0xb7, 0, 0, 0, 1),            // r0 = 1 (no such task)
        insn(0x95, 0, 0, 0, 0),            // exit
        insn(0xbf, 6, 0, 0, 0),            // r6 = r0
        insn(0xbf, 1, 6, 0, 0),            // r1 = task
        insn(0xb7, 2, 0, 0, 9),            // r2 = SIGKILL
        insn(0xb7, 3, 0, 0, 0),            // r3 = PIDTYPE_PID
        insn(0xb7, 4, 0, 0, 0),            // r4 = value
        insn(0x85, 0, KFUNC, 0, send),     // bpf_send_signal_task(...)
        insn(0xbf, 1, 6, 0, 0),            // r1 = task
        insn(0x85, 0, KFUNC, 0, release),  // bpf_task_release(task)
        insn(0xb7, 0, 0, 0, 0),            // r0 = 0
        insn(0x95, 0, 0, 0, 0),            // exit
    ];
    let license = c"GPL";
    let mut log = vec![0u8; 1 << 16];
    let mut a = attr();
    put_u32(&mut a, 0, PROG_CGROUP_SKB);
    put_u32(&mut a, 4, insns.len() as u32);
    put_u64(&mut a, 8, insns.as_ptr() as u64);
    put_u64(&mut a, 16, license.as_ptr() as u64);
    put_u32(&mut a, 24, 1);
    put_u32(&mut a, 28, log.len() as u32);
    put_u64(&mut a, 32, log.as_mut_ptr() as u64);
    if let Some(t) = token() {
        put_u32(&mut a, 44, rawbpf::BPF_F_TOKEN_FD);
        put_u32(&mut a, 144, t as u32);
    }
    let prog = match rawbpf::sys_bpf_fd(BPF_PROG_LOAD, &mut a) {
        Ok(p) => p,
        Err(e) => return format!("load-{}:{}", errno_str(e), log_reason(&log)),
    };
    let packet = [0u8; 64];
    let mut t = vec![0u8; 80];
    put_u32(&mut t, 0, sysbpf::raw(&prog) as u32);
    put_u32(&mut t, 8, packet.len() as u32);
    put_u64(&mut t, 16, packet.as_ptr() as u64);
    put_u32(&mut t, 32, 1); // repeat
    if let Err(e) = rawbpf::sys_bpf(BPF_PROG_TEST_RUN, &mut t) {
        return format!("run-{}", errno_str(e));
    }
    format!(
        "ran:retval:{}",
        u32::from_ne_bytes([t[4], t[5], t[6], t[7]])
    )
}

/// The id oracle of `BPF_LINK_CREATE` with `BPF_F_BEFORE | BPF_F_ID`: for each id, a link
/// of a program of our own placed before program (or, with `BPF_F_LINK`, link) `id`, at a
/// cgroup's egress (`cg`, cgroups take relative ids since 6.16) and at tcx ingress of `lo`:
/// `oracle.HOOK.KIND.ID=errno:E` (`ENOENT` for no such id, `EINVAL` for one of another type:
/// the oracle), or `attached` (the link is closed at once, which detaches it); `oracle.HOOK=
/// load-E` where our program cannot be loaded.
fn link_oracle(cg: &str, ids: &[String]) {
    const TCX_INGRESS: u32 = 46;
    const PROG_SCHED_CLS: u32 = 3;
    const ATTACH_CGROUP_EGRESS: u32 = 1;
    let dir = std::fs::File::open(cg).unwrap_or_else(|e| fail(&format!("open {cg}: {e}")));
    let hooks = [
        (
            "cgroup",
            PROG_CGROUP_SKB,
            ATTACH_CGROUP_EGRESS,
            sysbpf::raw(&dir) as u32,
            1,
        ),
        (
            "tcx",
            PROG_SCHED_CLS,
            TCX_INGRESS,
            1,  /* lo */
            -1, /* TCX_NEXT */
        ),
    ];
    for (hook, ptype, attach, target, ret) in hooks {
        let prog = match load_here(ptype, &returning(ret), attach) {
            Ok(p) => p,
            Err(e) => {
                say(&format!("oracle.{hook}=load-{}", errno_str(e)));
                continue;
            }
        };
        for id in ids {
            let n: u32 = id.parse().unwrap_or_else(|_| fail("ID"));
            for (kind, link_flag) in [("prog", 0), ("link", rawbpf::uapi::BPF_F_LINK)] {
                let mut l = attr();
                put_u32(&mut l, 0, sysbpf::raw(&prog) as u32);
                put_u32(&mut l, 4, target);
                put_u32(&mut l, 8, attach);
                let flags = rawbpf::uapi::BPF_F_BEFORE | rawbpf::uapi::BPF_F_ID | link_flag;
                put_u32(&mut l, 12, flags);
                put_u32(&mut l, 16, n);
                let r = match rawbpf::sys_bpf_fd(BPF_LINK_CREATE, &mut l) {
                    Ok(link) => {
                        drop(link);
                        "attached".to_string()
                    }
                    Err(e) => format!("errno:{}", e.raw_os_error()),
                };
                say(&format!("oracle.{hook}.{kind}.{n}={r}"));
            }
        }
        // A link of its own, without an anchor: made, then opened again by its id (which
        // works only if it is recorded as the member's namespace's), then closed (detached).
        let mut l = attr();
        put_u32(&mut l, 0, sysbpf::raw(&prog) as u32);
        put_u32(&mut l, 4, target);
        put_u32(&mut l, 8, attach);
        let own = match rawbpf::sys_bpf_fd(BPF_LINK_CREATE, &mut l) {
            Ok(link) => match sysbpf::info::<sysbpf::bpf_link_info>(&link) {
                Ok(i) => match fd_by_id(ObjectKind::Link, i.id, "") {
                    Ok(_) => format!("linked:{}:reopened", i.id),
                    Err(e) => format!("linked:{}:reopen-{}", i.id, errno_str(e)),
                },
                Err(e) => format!("linked:info-{}", errno_str(e.errno)),
            },
            Err(e) => format!("link-{}", errno_str(e)),
        };
        say(&format!("oracle.own.{hook}={own}"));
    }
}

fn cg_attack(cg: &str, what: &str, sock: Option<&str>) {
    let dir = std::fs::File::open(cg).unwrap_or_else(|e| fail(&format!("open {cg}: {e}")));
    let cgfd = sysbpf::raw(&dir);
    // A drop-everything program of its own.
    let own = || load(PROG_CGROUP_SKB, &returning(0), 0);
    match what {
        "detach" => {
            // The legacy detach needs no program: an invalid fd names "the" program.
            say(&format!(
                "detach={}",
                prog_attach(BPF_PROG_DETACH, cgfd, -1, ATTACH_CGROUP_INGRESS, 0, 0)
            ));
        }
        "replace" => {
            let r = match own() {
                Ok(p) => prog_attach(
                    BPF_PROG_ATTACH,
                    cgfd,
                    sysbpf::raw(&p),
                    ATTACH_CGROUP_INGRESS,
                    0,
                    0,
                ),
                Err(e) => e,
            };
            say(&format!("replace={r}"));
        }
        "replace-multi" => {
            let fds = match receive_fds(sock.unwrap_or("")) {
                Ok(f) => f,
                Err(e) => {
                    say(&format!("replace=receive-{e}"));
                    say(&format!("detach=receive-{e}"));
                    return;
                }
            };
            let theirs = sysbpf::raw(&fds[0]);
            let r = match own() {
                Ok(p) => prog_attach(
                    BPF_PROG_ATTACH,
                    cgfd,
                    sysbpf::raw(&p),
                    ATTACH_CGROUP_INGRESS,
                    F_ALLOW_MULTI | F_REPLACE,
                    theirs,
                ),
                Err(e) => e,
            };
            say(&format!("replace={r}"));
            say(&format!(
                "detach={}",
                prog_attach(BPF_PROG_DETACH, cgfd, theirs, ATTACH_CGROUP_INGRESS, 0, 0)
            ));
        }
        "pass" => {
            // A pass-everything program, attached (multi), detached and linked: harmless on
            // any cgroup, the host's root included, should it be let through.
            let p = match load(PROG_CGROUP_SKB, &RETURN_ONE_PASS, 0) {
                Ok(p) => p,
                Err(e) => {
                    for k in ["attach", "detach", "link"] {
                        say(&format!("{k}={e}"));
                    }
                    return;
                }
            };
            let pfd = sysbpf::raw(&p);
            let a = prog_attach(
                BPF_PROG_ATTACH,
                cgfd,
                pfd,
                ATTACH_CGROUP_INGRESS,
                F_ALLOW_MULTI,
                0,
            );
            say(&format!("attach={a}"));
            let d = prog_attach(BPF_PROG_DETACH, cgfd, pfd, ATTACH_CGROUP_INGRESS, 0, 0);
            say(&format!("detach={d}"));
            let mut l = attr();
            put_u32(&mut l, 0, pfd as u32);
            put_u32(&mut l, 4, cgfd as u32);
            put_u32(&mut l, 8, ATTACH_CGROUP_INGRESS);
            let r = match rawbpf::sys_bpf_fd(BPF_LINK_CREATE, &mut l) {
                Ok(link) => format!("created:{}", link_id(&link)),
                Err(e) => errno_str(e),
            };
            say(&format!("link={r}"));
        }
        "link-create" => {
            let p = match own() {
                Ok(p) => p,
                Err(e) => {
                    say(&format!("link={e}"));
                    say(&format!("link_replace={e}"));
                    return;
                }
            };
            for (key, flags) in [("link", 0u32), ("link_replace", F_REPLACE)] {
                let mut l = attr();
                put_u32(&mut l, 0, sysbpf::raw(&p) as u32);
                put_u32(&mut l, 4, cgfd as u32);
                put_u32(&mut l, 8, ATTACH_CGROUP_INGRESS);
                put_u32(&mut l, 12, flags);
                let r = match rawbpf::sys_bpf_fd(BPF_LINK_CREATE, &mut l) {
                    Ok(link) => format!("created:{}", link_id(&link)),
                    Err(e) => errno_str(e),
                };
                say(&format!("{key}={r}"));
            }
        }
        "link-ops" => {
            let fds = match receive_fds(sock.unwrap_or("")) {
                Ok(f) if f.len() >= 2 => f,
                Ok(_) => {
                    say("update=receive-short");
                    say("detach=receive-short");
                    return;
                }
                Err(e) => {
                    say(&format!("update=receive-{e}"));
                    say(&format!("detach=receive-{e}"));
                    return;
                }
            };
            let link = sysbpf::raw(&fds[1]);
            let new = own();
            let mut u = vec![0u8; 16];
            put_u32(&mut u, 0, link as u32);
            put_u32(&mut u, 4, new.as_ref().map_or(-1, sysbpf::raw) as u32);
            let r = done(rawbpf::sys_bpf(BPF_LINK_UPDATE, &mut u));
            say(&format!(
                "update={r}{}",
                new.as_ref()
                    .err()
                    .map(|e| format!(";own-{e}"))
                    .unwrap_or_default()
            ));
            let mut d = vec![0u8; 4];
            put_u32(&mut d, 0, link as u32);
            say(&format!(
                "detach={}",
                done(rawbpf::sys_bpf(BPF_LINK_DETACH, &mut d))
            ));
        }
        other => fail(&format!("unknown cgroup attack {other}")),
    }
}

/// Queries as root, for the harness: PROG_QUERY of `target_path` (a cgroup directory or a
/// network namespace file) for `attach_type`: ids=PROG:LINK,... flags=F
fn query_print(target_path: &str, attach_type: u32) {
    let t = std::fs::File::open(target_path).unwrap_or_else(|e| fail(&format!("open: {e}")));
    let mut ids = [0u32; 64];
    let mut links = [0u32; 64];
    let mut a = vec![0u8; 48];
    put_u32(&mut a, 0, sysbpf::raw(&t) as u32);
    put_u32(&mut a, 4, attach_type);
    put_u64(&mut a, 16, ids.as_mut_ptr() as u64);
    put_u32(&mut a, 24, 64);
    if attach_type == ATTACH_CGROUP_INGRESS {
        put_u64(&mut a, 40, links.as_mut_ptr() as u64);
    }
    let r = rawbpf::sys_bpf(BPF_PROG_QUERY, &mut a);
    if attach_type == ATTACH_CGROUP_INGRESS && r == Err(bpfns_sys::Errno::INVAL) {
        // Before 6.6 there are no link ids.
        put_u64(&mut a, 40, 0);
        if let Err(e) = rawbpf::sys_bpf(BPF_PROG_QUERY, &mut a) {
            return say(&format!("ids=errno:{}", e.raw_os_error()));
        }
    } else if let Err(e) = r {
        return say(&format!("ids=errno:{}", e.raw_os_error()));
    }
    let n = (u32::from_ne_bytes([a[24], a[25], a[26], a[27]]) as usize).min(64);
    let v: Vec<String> = (0..n).map(|i| format!("{}:{}", ids[i], links[i])).collect();
    say(&format!("ids={}", v.join(",")));
    say(&format!(
        "flags={}",
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]])
    ));
}

/// Run a command as a member the way `bpfns exec` does, and wait for it.
fn exec_member(exe: &Path, sock: &str, ns: &str, rest: &[String]) {
    let mut cmd = Command::new(exe);
    cmd.args(rest).env(EXEC_ENV, std::process::id().to_string());
    match bpfns_client::member::spawn(Path::new(sock), ns, &mut cmd) {
        Ok(mut m) => {
            let status = m.wait().unwrap_or_else(|e| fail(&e.to_string()));
            std::process::exit(status.code().unwrap_or(1));
        }
        Err(e) => fail(&format!("member::spawn: {e}")),
    }
}

/// Kill what holds our listener, install our own, answer CONTINUE, open a foreign map.
fn own_listener(daemon: i32, foreign: u32) {
    let holder: i32 = std::env::var(EXEC_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for (name, pid) in [("holder", holder), ("daemon", daemon)] {
        let r = if pid <= 0 {
            "no-pid".to_string()
        } else {
            match testhooks::kill(pid, libc::SIGKILL) {
                Ok(()) => "ok".into(),
                Err(e) => errno_str(e),
            }
        };
        say(&format!("kill.{name}={r}"));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = bpfns_sys::seccomp::set_no_new_privs_raw();
    let f = match bpfns_sys::seccomp::Filter::notify_syscalls(&[libc::SYS_bpf]) {
        Ok(f) => f,
        Err(e) => fail(&e.to_string()),
    };
    // On a thread of its own: the main thread stays free to make the call it answers.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = bpfns_sys::seccomp::install_filter(
            &f,
            bpfns_sys::seccomp::FilterFlags::NEW_LISTENER
                | bpfns_sys::seccomp::FilterFlags::TSYNC_ESRCH
                | bpfns_sys::seccomp::FilterFlags::TSYNC,
        );
        match r {
            Ok(Some(l)) => {
                let _ = tx.send("ok".to_string());
                while let Ok(n) = l.recv() {
                    let _ = l.respond(n.id, bpfns_sys::seccomp::Response::Continue);
                }
            }
            Ok(None) => {
                let _ = tx.send("no-listener".to_string());
            }
            Err(e) => {
                let _ = tx.send(errno_str(e.errno));
            }
        }
    });
    let installed = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| "timeout".into());
    say(&format!("install={installed}"));
    say(&format!(
        "open={}",
        opened(fd_by_id(ObjectKind::Map, foreign, ""))
    ));
}

/// The child of `rt-scm-race`: open foreign objects on one thread while another sends every
/// fd it has to the parent (stdin is the socket).
fn scm_race_child(ms: u64, specs: &[String]) {
    let stop = Arc::new(AtomicBool::new(false));
    let opened_n = Arc::new(AtomicU32::new(0));
    let (s2, o2) = (stop.clone(), opened_n.clone());
    let specs: Vec<String> = specs.to_vec();
    let opener = std::thread::spawn(move || {
        let mut held = Vec::new();
        while !s2.load(Ordering::Relaxed) {
            for spec in &specs {
                let r = if let Some(id) = spec.strip_prefix("map:") {
                    fd_by_id(ObjectKind::Map, id.parse().unwrap_or(0), "")
                } else if let Some(p) = spec.strip_prefix("pin:") {
                    sysbpf::obj_get(Path::new(p)).map_err(|e| e.errno)
                } else {
                    continue;
                };
                if let Ok(fd) = r {
                    o2.fetch_add(1, Ordering::Relaxed);
                    held.push(fd);
                    if held.len() > 32 {
                        held.remove(0);
                    }
                }
            }
        }
    });
    let sock = std::io::stdin();
    let deadline = std::time::Instant::now() + Duration::from_millis(ms);
    while std::time::Instant::now() < deadline {
        // Every fd number it may have, the socket and stdio included (so that something always
        // travels): a foreign object that lands on one of them would go with it.
        for n in 0..48 {
            let _ = testhooks::send_fd_number(sock.as_fd(), n);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = opener.join();
    say(&format!(
        "child_opened={}",
        opened_n.load(Ordering::Relaxed)
    ));
}

fn scm_race(exe: &Path, ms: &str, specs: &[String]) {
    let ms: u64 = ms.parse().unwrap_or_else(|_| fail("MS"));
    let (mine, theirs) = UnixStream::pair().unwrap_or_else(|e| fail(&e.to_string()));
    let mut child = Command::new(exe)
        .arg("rt-scm-race-child")
        .arg(ms.to_string())
        .args(specs)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("spawn: {e}")));
    let _ = mine.set_read_timeout(Some(Duration::from_millis(200)));
    let (mut received, mut foreign) = (0u32, Vec::new());
    loop {
        let mut b = [0u8; 1];
        let mut fds = Vec::new();
        match bpfns_sys::unix::recv_exact_with_fds(mine.as_fd(), &mut b, &mut fds) {
            Ok(true) => {
                for fd in fds {
                    received += 1;
                    let d = describe(fd.as_fd());
                    // Only bpf objects can be foreign; the child opened no own ones.
                    if d.starts_with("map:")
                        || d.starts_with("prog:")
                        || d.starts_with("link:")
                        || d.starts_with("btf:")
                    {
                        foreign.push(d);
                    }
                }
            }
            Ok(false) => break,
            Err(e) if e.errno == bpfns_sys::Errno::AGAIN => {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let status = child.wait().map(|s| {
        use std::os::unix::process::ExitStatusExt;
        match (s.code(), s.signal()) {
            (Some(c), _) => format!("exited:{c}"),
            (_, Some(sig)) => format!("signaled:{sig}"),
            _ => "?".into(),
        }
    });
    foreign.sort();
    foreign.dedup();
    say(&format!(
        "race=received:{received} foreign:{} child:{} {}",
        foreign.len(),
        status.unwrap_or_else(|e| e.to_string()),
        foreign.join(",")
    ));
}

/// The actions of this section.
fn more(exe: &Path, args: &[String]) {
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| fail("missing argument"))
    };
    match arg(0).as_str() {
        "rt-hold-secret" => {
            let map = sysbpf::map_create(MAP_ARRAY_TYPE, "rt_secret", 4, SECRET.len() as u32, 1)
                .unwrap_or_else(|e| fail(&e.to_string()));
            let key = 0u32.to_ne_bytes();
            let mut u = attr();
            put_u32(&mut u, 0, sysbpf::raw(&map) as u32);
            put_u64(&mut u, 8, key.as_ptr() as u64);
            put_u64(&mut u, 16, SECRET.as_ptr() as u64);
            rawbpf::sys_bpf(BPF_MAP_UPDATE_ELEM, &mut u).unwrap_or_else(|e| fail(&e.to_string()));
            say(&format!(
                "victim={} fd={} id={}",
                std::process::id(),
                sysbpf::raw(&map),
                map_id(&map)
            ));
            hold_until_eof();
            drop(map);
        }
        "rt-kread" => {
            let pid: i32 = arg(1).parse().unwrap_or_else(|_| fail("PID"));
            let fd: i32 = arg(2).parse().unwrap_or_else(|_| fail("FD"));
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            if let Some(l) = status.lines().find(|l| l.starts_with("CapEff:")) {
                say(&format!("capeff={}", l["CapEff:".len()..].trim()));
            }
            say(&format!("kread={}", kread(pid, fd)));
        }
        "rt-kfunc-kill" => {
            let pid: i32 = arg(1).parse().unwrap_or_else(|_| fail("PID"));
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            if let Some(l) = status.lines().find(|l| l.starts_with("CapEff:")) {
                say(&format!("capeff={}", l["CapEff:".len()..].trim()));
            }
            say(&format!("kfunc={}", kfunc_kill(pid)));
        }
        "rt-link-oracle" => link_oracle(&arg(1), &args[2..]),
        "rt-cg-victim" => {
            let dir = std::fs::File::open(arg(1)).unwrap_or_else(|e| fail(&format!("open: {e}")));
            let prog = load(PROG_CGROUP_SKB, &RETURN_ONE_PASS, 0).unwrap_or_else(|e| fail(&e));
            let pid = prog_id(&prog);
            let mut keep: Vec<OwnedFd> = Vec::new();
            let mut lid = 0;
            match arg(2).as_str() {
                "legacy" | "multi" => {
                    let flags = if arg(2) == "multi" { F_ALLOW_MULTI } else { 0 };
                    let r = prog_attach(
                        BPF_PROG_ATTACH,
                        sysbpf::raw(&dir),
                        sysbpf::raw(&prog),
                        ATTACH_CGROUP_INGRESS,
                        flags,
                        0,
                    );
                    if r != "ok" {
                        fail(&format!("attach: {r}"));
                    }
                }
                "link" => {
                    let link = sysbpf::link_create(&prog, &dir, ATTACH_CGROUP_INGRESS)
                        .unwrap_or_else(|e| fail(&e.to_string()));
                    lid = link_id(&link);
                    keep.push(link);
                }
                other => fail(&format!("mode {other}")),
            }
            if let Some(sock) = args.get(3) {
                let mut fds = vec![prog.try_clone().unwrap_or_else(|e| fail(&e.to_string()))];
                for k in &keep {
                    fds.push(k.try_clone().unwrap_or_else(|e| fail(&e.to_string())));
                }
                serve_fds(sock, fds);
            }
            say(&format!("victim={pid} link={lid}"));
            hold_until_eof();
            if keep.is_empty() {
                let _ = prog_attach(
                    BPF_PROG_DETACH,
                    sysbpf::raw(&dir),
                    sysbpf::raw(&prog),
                    ATTACH_CGROUP_INGRESS,
                    0,
                    0,
                );
            }
            if let Some(sock) = args.get(3) {
                let _ = std::fs::remove_file(sock);
            }
        }
        "rt-cg-attack" => cg_attack(&arg(1), &arg(2), args.get(3).map(String::as_str)),
        "rt-cg-move" => say(&format!("move={}", cg_move(&arg(1), &arg(2)))),
        "rt-cg-mount-move" => cg_mount_move(&arg(1), &arg(2), args.get(3).map(String::as_str)),
        "rt-enter-self" => enter_self(&arg(1), &arg(2), &arg(3)),
        "rt-link-race" => link_race(&arg(1), arg(2).parse().unwrap_or(20000)),
        "rt-query" => {
            let t: u32 = arg(2).parse().unwrap_or_else(|_| fail("TYPE"));
            query_print(&arg(1), t);
        }
        "rt-netns-hold" => {
            testhooks::unshare(libc::CLONE_NEWNET).unwrap_or_else(|e| fail(&errno_str(e)));
            say(&format!("netns={}", std::process::id()));
            hold_until_eof();
        }
        "rt-fd-victim" => {
            enter_netns(&arg(1));
            let prog = load(PROG_FLOW_DISSECTOR, &returning(0), ATTACH_FLOW_DISSECTOR)
                .unwrap_or_else(|e| fail(&e));
            let r = prog_attach(
                BPF_PROG_ATTACH,
                0,
                sysbpf::raw(&prog),
                ATTACH_FLOW_DISSECTOR,
                0,
                0,
            );
            if r != "ok" {
                fail(&format!("attach: {r}"));
            }
            say(&format!("victim={}", prog_id(&prog)));
            hold_until_eof();
            let _ = prog_attach(
                BPF_PROG_DETACH,
                0,
                sysbpf::raw(&prog),
                ATTACH_FLOW_DISSECTOR,
                0,
                0,
            );
        }
        "rt-fd-attack" => {
            let r = match load(PROG_FLOW_DISSECTOR, &returning(2), ATTACH_FLOW_DISSECTOR) {
                Ok(p) => prog_attach(
                    BPF_PROG_ATTACH,
                    0,
                    sysbpf::raw(&p),
                    ATTACH_FLOW_DISSECTOR,
                    0,
                    0,
                ),
                Err(e) => e,
            };
            say(&format!("replace={r}"));
        }
        "rt-sockmap-victim" => {
            let map = sysbpf::map_create(MAP_SOCKMAP, "rt_sockmap", 4, 4, 1)
                .unwrap_or_else(|e| fail(&e.to_string()));
            let prog = load(PROG_SK_SKB, &RETURN_ONE_PASS, 0).unwrap_or_else(|e| fail(&e));
            let r = prog_attach(
                BPF_PROG_ATTACH,
                sysbpf::raw(&map),
                sysbpf::raw(&prog),
                ATTACH_SK_SKB_STREAM_VERDICT,
                0,
                0,
            );
            if r != "ok" {
                fail(&format!("attach: {r}"));
            }
            let fds = vec![
                map.try_clone().unwrap_or_else(|e| fail(&e.to_string())),
                prog.try_clone().unwrap_or_else(|e| fail(&e.to_string())),
            ];
            serve_fds(&arg(1), fds);
            say(&format!("victim={} map={}", prog_id(&prog), map_id(&map)));
            hold_until_eof();
            let _ = std::fs::remove_file(arg(1));
        }
        "rt-sockmap-attack" => {
            let fds = match receive_fds(&arg(1)) {
                Ok(f) if f.len() >= 2 => f,
                r => {
                    let e = r.err().unwrap_or_else(|| "short".into());
                    say(&format!("detach=receive-{e}"));
                    say(&format!("replace=receive-{e}"));
                    return;
                }
            };
            let (map, theirs) = (sysbpf::raw(&fds[0]), sysbpf::raw(&fds[1]));
            say(&format!(
                "detach={}",
                prog_attach(
                    BPF_PROG_DETACH,
                    map,
                    theirs,
                    ATTACH_SK_SKB_STREAM_VERDICT,
                    0,
                    0
                )
            ));
            let r = match load(PROG_SK_SKB, &returning(0), 0) {
                Ok(p) => prog_attach(
                    BPF_PROG_ATTACH,
                    map,
                    sysbpf::raw(&p),
                    ATTACH_SK_SKB_STREAM_VERDICT,
                    0,
                    0,
                ),
                Err(e) => e,
            };
            say(&format!("replace={r}"));
        }
        "rt-sockmap-query" => {
            // As root, for the harness: the program attached to map ID.
            let id: u32 = arg(1).parse().unwrap_or_else(|_| fail("ID"));
            let map =
                sysbpf::fd_by_id(ObjectKind::Map, id).unwrap_or_else(|e| fail(&e.to_string()));
            let mut ids = [0u32; 4];
            let mut a = vec![0u8; 28];
            put_u32(&mut a, 0, sysbpf::raw(&map) as u32);
            put_u32(&mut a, 4, ATTACH_SK_SKB_STREAM_VERDICT);
            put_u64(&mut a, 16, ids.as_mut_ptr() as u64);
            put_u32(&mut a, 24, 4);
            match rawbpf::sys_bpf(BPF_PROG_QUERY, &mut a) {
                Ok(_) => {
                    let n = (u32::from_ne_bytes([a[24], a[25], a[26], a[27]]) as usize).min(4);
                    let v: Vec<String> = ids[..n].iter().map(u32::to_string).collect();
                    say(&format!("ids={}", v.join(",")));
                }
                Err(e) => say(&format!("ids=errno:{}", e.raw_os_error())),
            }
        }
        "rt-perf-query" => {
            let tp: u64 = arg(1).parse().unwrap_or_else(|_| fail("TP_ID"));
            match testhooks::perf_tracepoint_open(tp) {
                Err(e) => say(&format!("errno=open-{}", e.raw_os_error())),
                Ok(ev) => match rawbpf::perf_query_bpf(ev.as_fd()) {
                    Ok(ids) => {
                        let v: Vec<String> = ids.iter().map(u32::to_string).collect();
                        say(&format!("ids={}", v.join(",")));
                    }
                    Err(e) => say(&format!("errno={}", e.raw_os_error())),
                },
            }
        }
        "rt-xdp-victim" => {
            enter_netns(&arg(1));
            let prog = load(PROG_XDP, &returning(2), 0).unwrap_or_else(|e| fail(&e));
            let mut keep = None;
            match arg(2).as_str() {
                "netlink" => testhooks::xdp_set_netlink(1, sysbpf::raw(&prog))
                    .unwrap_or_else(|e| fail(&format!("netlink attach: {}", errno_str(e)))),
                "link" => {
                    let mut l = attr();
                    put_u32(&mut l, 0, sysbpf::raw(&prog) as u32);
                    put_u32(&mut l, 4, 1); // lo
                    put_u32(&mut l, 8, ATTACH_XDP);
                    put_u32(&mut l, 12, testhooks::XDP_FLAGS_SKB_MODE);
                    keep = Some(
                        rawbpf::sys_bpf_fd(BPF_LINK_CREATE, &mut l)
                            .unwrap_or_else(|e| fail(&format!("link: {}", errno_str(e)))),
                    );
                }
                other => fail(&format!("mode {other}")),
            }
            say(&format!("victim={}", prog_id(&prog)));
            hold_until_eof();
            if keep.is_none() {
                let _ = testhooks::xdp_set_netlink(1, -1);
            }
        }
        "rt-xdp-show" => {
            enter_netns(&arg(1));
            match testhooks::xdp_prog_id_netlink(1) {
                Ok(id) => say(&format!("xdp={id}")),
                Err(e) => say(&format!("xdp={}", errno_str(e))),
            }
        }
        "rt-xdp-attack" => {
            match testhooks::xdp_prog_id_netlink(1) {
                Ok(id) => say(&format!("seen={id}")),
                Err(e) => say(&format!("seen={}", errno_str(e))),
            }
            let r = match testhooks::xdp_set_netlink(1, -1) {
                Ok(()) => "ok".to_string(),
                Err(e) => errno_str(e),
            };
            say(&format!("off={r}"));
        }
        "rt-exec" => exec_member(exe, &arg(1), &arg(2), &args[3..]),
        // rt-exec-connected SOCK NS ACTION...: as rt-exec, holding a connection to bpfnsd
        // that the member would inherit (close-on-exec cleared), as a careless caller would.
        "rt-exec-connected" => {
            let conn = std::os::unix::net::UnixStream::connect(arg(1))
                .unwrap_or_else(|e| fail(&format!("connect: {e}")));
            bpfns_sys::testhooks::set_inheritable(std::os::fd::AsFd::as_fd(&conn))
                .unwrap_or_else(|e| fail(&format!("F_SETFD: {e}")));
            say(&format!("fd={}", std::os::fd::AsRawFd::as_raw_fd(&conn)));
            exec_member(exe, &arg(1), &arg(2), &args[3..]);
        }
        "rt-pass-connection" => {
            // Connect to bpfnsd, hand the connection over stdin (SCM_RIGHTS), and exit.
            let conn = std::os::unix::net::UnixStream::connect(arg(1))
                .unwrap_or_else(|e| fail(&format!("connect: {e}")));
            bpfns_sys::unix::send_with_fds(std::io::stdin(), b"c", &[conn.as_fd()])
                .unwrap_or_else(|e| fail(&format!("passing the connection: {e}")));
        }
        "rt-pidns-forge" => pidns_forge(exe, &arg(1)),
        "rt-pidns-attacker" => pidns_attacker(exe),
        "rt-pidns-a1" => pidns_a1(),
        "rt-pidns-maker" => pidns_maker(exe, &arg(1), &arg(2)),
        "rt-pidns-m2" => pidns_m2(&arg(1)),
        "rt-subscribe-and-pass" => {
            // Subscribe to every event below the root, hand the connection over stdin, exit.
            let conn = std::os::unix::net::UnixStream::connect(arg(1))
                .unwrap_or_else(|e| fail(&format!("connect: {e}")));
            let mut c = bpfns_client::Client::from_stream(
                conn.try_clone()
                    .unwrap_or_else(|e| fail(&format!("dup: {e}"))),
            );
            c.subscribe(Some("/"), vec![])
                .unwrap_or_else(|e| fail(&format!("subscribing: {e}")));
            bpfns_sys::unix::send_with_fds(std::io::stdin(), b"c", &[conn.as_fd()])
                .unwrap_or_else(|e| fail(&format!("passing the connection: {e}")));
        }
        "rt-connect-then-exec" => {
            // Connect to bpfnsd, send `hello` and `ns_list`, hand the connection over stdin
            // (the test reads the answers), then become PROGRAM (a set-user-ID one), whose
            // stdin is that socket: `su` waits on it for a password.
            let mut conn = std::os::unix::net::UnixStream::connect(arg(1))
                .unwrap_or_else(|e| fail(&format!("connect: {e}")));
            let mut frames = Vec::new();
            for (seq, op) in [(1, bpfns_proto::Op::Hello), (2, bpfns_proto::Op::NsList)] {
                let req = bpfns_proto::Request::new(seq, op);
                frames.extend(
                    bpfns_proto::encode(&req, bpfns_proto::MAX_REQUEST).unwrap_or_default(),
                );
            }
            std::io::Write::write_all(&mut conn, &frames)
                .unwrap_or_else(|e| fail(&format!("sending: {e}")));
            bpfns_sys::unix::send_with_fds(std::io::stdin(), b"c", &[conn.as_fd()])
                .unwrap_or_else(|e| fail(&format!("passing the connection: {e}")));
            exec(Path::new(&arg(2)), &args[3..]);
        }
        "rt-hello" => {
            // Who bpfnsd says this process is: `served NS admin=.. cap_bpf=..` or `refused ...`.
            let hello = bpfns_client::Client::connect(arg(1)).and_then(|mut c| c.hello());
            match hello {
                Ok(h) => say(&format!(
                    "served {} admin={} cap_bpf={}",
                    h.namespace, h.host_admin, h.cap_bpf
                )),
                Err(e) => say(&format!("refused {e}")),
            }
        }
        "rt-speak-received" => {
            // A connection to bpfnsd arrives on stdin (SCM_RIGHTS): ask it for the
            // namespaces, as whoever made it.
            let mut fds = Vec::new();
            let got =
                bpfns_sys::unix::recv_exact_with_fds(std::io::stdin(), &mut [0u8; 1], &mut fds);
            let Some(conn) = fds.pop().filter(|_| got.is_ok()) else {
                fail("no connection came on stdin");
            };
            let mut c =
                bpfns_client::Client::from_stream(std::os::unix::net::UnixStream::from(conn));
            match c.ns_list() {
                Ok(l) => {
                    let names: Vec<_> = l.iter().map(|n| n.path.as_str()).collect();
                    say(&format!("answered {}", names.join(",")));
                }
                Err(e) => say(&format!("refused {e}")),
            }
        }
        "rt-keeper-received" => {
            // rt-keeper-received MAKER_PID FORGE: a connection to the listener keeper
            // arrives on stdin (SCM_RIGHTS); ask it for the first listener it holds (`Next`),
            // as whoever made it, naming the maker (SCM_CREDENTIALS) when FORGE is 1.
            use bpfnsd::keeper::{Msg, Op, MSG_LEN};
            let maker: i32 = arg(1).parse().unwrap_or_else(|_| fail("MAKER_PID"));
            let mut fds = Vec::new();
            let got =
                bpfns_sys::unix::recv_exact_with_fds(std::io::stdin(), &mut [0u8; 1], &mut fds);
            let Some(conn) = fds.pop().filter(|_| got.is_ok()) else {
                fail("no connection came on stdin");
            };
            let _ = bpfns_sys::unix::set_timeouts(&conn, Some(Duration::from_secs(10)));
            let next = Msg::new(Op::Next, [0; 6]).encode();
            let sent = if arg(2) == "1" {
                testhooks::send_with_credentials(&conn, &next, maker, 0, 0).map_err(errno_str)
            } else {
                bpfns_sys::unix::send_msg(&conn, &next, &[], false).map_err(|e| errno_str(e.errno))
            };
            if let Err(e) = sent {
                say(&format!("send={e}"));
                return;
            }
            let mut buf = [0u8; MSG_LEN];
            let mut got = Vec::new();
            match bpfns_sys::unix::recv_msg(&conn, &mut buf, &mut got, false) {
                Ok(0) => say("closed"),
                Ok(n) => say(&format!(
                    "answered op={:?} fds={}",
                    Msg::decode(&buf[..n]).map(|m| m.op),
                    got.len()
                )),
                Err(e) => say(&format!("recv={}", errno_str(e.errno))),
            }
        }
        "rt-in-netns" => {
            enter_netns(&arg(1));
            exec(exe, &args[2..]);
        }
        "rt-own-listener" => {
            let daemon: i32 = arg(1).parse().unwrap_or_else(|_| fail("DAEMON_PID"));
            let map: u32 = arg(2).parse().unwrap_or_else(|_| fail("MAP"));
            own_listener(daemon, map);
        }
        "rt-scm-race" => scm_race(exe, &arg(1), &args[2..]),
        "rt-load-low" => {
            caps::restrict_for_exec(CapabilitySet::BPF | CapabilitySet::NET_ADMIN)
                .unwrap_or_else(|e| fail(&e.to_string()));
            let mut rest = args.to_vec();
            rest[0] = "rt-load-send".into();
            exec(exe, &rest);
        }
        "rt-load-send" => {
            let t: u32 = arg(1).parse().unwrap_or_else(|_| fail("TYPE"));
            let imm: i32 = arg(2).parse().unwrap_or_else(|_| fail("IMM"));
            let ea: u32 = arg(3).parse().unwrap_or_else(|_| fail("ATTACH"));
            let p = load_here(t, &returning(imm), ea).unwrap_or_else(|e| fail(&errno_str(e)));
            let _ = bpfns_sys::unix::send_with_fds(std::io::stdin().as_fd(), b"p", &[p.as_fd()]);
        }
        "rt-scm-race-child" => scm_race_child(arg(1).parse().unwrap_or(1000), &args[2..]),
        other => fail(&format!("unknown action {other}")),
    }
}

// ---- SCM_CREDENTIALS named from a pid namespace of one's own -------------------------------
//
// The attacker (uid 1000 outside) is root of a user namespace of its own and init of a pid
// namespace that user namespace owns, so the kernel lets it name any pid of that pid
// namespace in SCM_CREDENTIALS. A host-root process that joined only that pid namespace
// (`nsenter -p`) connects to bpfnsd and its connection reaches the attacker, which writes a
// request naming the maker's pid.

/// The orchestration, as host root: prints `answered ...` or `refused ...` (the attacker's).
fn pidns_forge(exe: &Path, sock: &str) {
    use std::os::unix::process::CommandExt;
    let (a_end, m_end) = UnixStream::pair().unwrap_or_else(|e| fail(&format!("pair: {e}")));
    let mut attacker = Command::new(exe)
        .arg("rt-pidns-attacker")
        .uid(1000)
        .gid(1000)
        .stdin(Stdio::from(OwnedFd::from(a_end)))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("attacker: {e}")));
    let mut out = std::io::BufReader::new(attacker.stdout.take().unwrap_or_else(|| fail("stdout")));
    let mut line = String::new();
    // Its first line: the global pid of its pid namespace's init.
    std::io::BufRead::read_line(&mut out, &mut line).unwrap_or_else(|e| fail(&e.to_string()));
    let init = line
        .trim()
        .strip_prefix("init=")
        .unwrap_or_else(|| fail(&format!("attacker said {line:?}")))
        .to_string();
    let mut maker = Command::new(exe)
        .args(["rt-pidns-maker", sock, &init])
        .stdin(Stdio::from(OwnedFd::from(m_end)))
        .spawn()
        .unwrap_or_else(|e| fail(&format!("maker: {e}")));
    let mut rest = String::new();
    let _ = out.read_to_string(&mut rest);
    let _ = attacker.wait();
    let _ = maker.kill();
    let _ = maker.wait();
    say(rest.lines().last().unwrap_or("attacker said nothing"));
}

/// uid 1000: root of a new user namespace, then the parent of a new pid namespace's init.
fn pidns_attacker(exe: &Path) {
    testhooks::unshare(libc::CLONE_NEWUSER).unwrap_or_else(|e| fail(&format!("unshare user: {e}")));
    for (file, text) in [
        ("setgroups", "deny"),
        ("uid_map", "0 1000 1"),
        ("gid_map", "0 1000 1"),
    ] {
        std::fs::write(format!("/proc/self/{file}"), text)
            .unwrap_or_else(|e| fail(&format!("{file}: {e}")));
    }
    testhooks::unshare(libc::CLONE_NEWPID).unwrap_or_else(|e| fail(&format!("unshare pid: {e}")));
    let mut a1 = Command::new(exe)
        .arg("rt-pidns-a1")
        .spawn()
        .unwrap_or_else(|e| fail(&format!("init: {e}")));
    say(&format!("init={}", a1.id()));
    let _ = a1.wait();
}

/// pid 1 of the attacker's pid namespace: gets the maker's pid there and its connection, and
/// writes a request naming that pid (uid and gid 0: its own, mapped to 1000 outside).
fn pidns_a1() {
    let mut pid = [0u8; 4];
    let mut fds = Vec::new();
    match bpfns_sys::unix::recv_exact_with_fds(std::io::stdin(), &mut pid, &mut fds) {
        Ok(true) => {}
        r => fail(&format!("no maker: {r:?}")),
    }
    let conn = fds.pop().unwrap_or_else(|| fail("no connection"));
    let maker = i32::from_ne_bytes(pid);
    let req = bpfns_proto::Request::new(1, bpfns_proto::Op::NsList);
    let frame = bpfns_proto::encode(&req, bpfns_proto::MAX_REQUEST).unwrap_or_default();
    if let Err(e) = testhooks::send_with_credentials(&conn, &frame, maker, 0, 0) {
        say(&format!(
            "refused sending with the maker's pid {maker}: {e}"
        ));
        return;
    }
    let mut conn = UnixStream::from(conn);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut header = [0u8; bpfns_proto::HEADER_LEN];
    let answer = conn.read_exact(&mut header).ok().and_then(|()| {
        let mut body = vec![0u8; u32::from_le_bytes(header) as usize];
        conn.read_exact(&mut body).ok()?;
        bpfns_proto::decode_response(&body).ok()
    });
    match answer.map(|r| r.result) {
        Some(bpfns_proto::Outcome::Ok(bpfns_proto::Reply::Namespaces { namespaces })) => {
            say(&format!(
                "answered {}",
                namespaces
                    .iter()
                    .map(|n| n.path.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ))
        }
        other => say(&format!("refused {other:?}")),
    }
}

/// Host root: joins the pid namespace whose init is `init` (its children are born there).
fn pidns_maker(exe: &Path, sock: &str, init: &str) {
    let ns = std::fs::File::open(format!("/proc/{init}/ns/pid"))
        .unwrap_or_else(|e| fail(&format!("/proc/{init}/ns/pid: {e}")));
    testhooks::setns(&ns, 0).unwrap_or_else(|e| fail(&format!("setns: {e}")));
    let mut m2 = Command::new(exe)
        .args(["rt-pidns-m2", sock])
        .spawn()
        .unwrap_or_else(|e| fail(&format!("m2: {e}")));
    let _ = m2.wait();
}

/// Host root in the attacker's pid namespace: connects to bpfnsd and hands its pid there and
/// the connection to the attacker, then waits to be killed.
fn pidns_m2(sock: &str) {
    let conn = UnixStream::connect(sock).unwrap_or_else(|e| fail(&format!("connect: {e}")));
    let me = (std::process::id() as i32).to_ne_bytes();
    bpfns_sys::unix::send_with_fds(std::io::stdin(), &me, &[conn.as_fd()])
        .unwrap_or_else(|e| fail(&format!("passing the connection: {e}")));
    std::thread::sleep(Duration::from_secs(60));
}

/// `r0 = 1; exit`: pass (cgroup_skb), SK_PASS (sk_skb).
const RETURN_ONE_PASS: [u64; 2] = [0x0000_0001_0000_00b7, 0x0000_0000_0000_0095];

// ---- flooding bpfnsd ---------------------------------------------------------------------

/// One hello on a raw connection: `ok`, the error code of an error frame (a refusal comes
/// before anything is asked, with seq 0), or what went wrong.
fn hello_on(s: &mut UnixStream) -> (String, Option<String>) {
    use bpfns_proto::{decode, decode_len, encode, Op, Outcome, Request, Response, MAX_REQUEST};
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    if let Ok(f) = encode(&Request::new(1, Op::Hello), MAX_REQUEST) {
        // A refused connection is closed already: its reason is still there to be read.
        let _ = s.write_all(&f);
    }
    let mut header = [0u8; 4];
    if let Err(e) = s.read_exact(&mut header) {
        return (format!("read:{}", io_errno(&e)), None);
    }
    let Ok(len) = decode_len(header, 1 << 20) else {
        return ("bad-frame".into(), None);
    };
    let mut body = vec![0u8; len];
    if let Err(e) = s.read_exact(&mut body) {
        return (format!("read:{}", io_errno(&e)), None);
    }
    match decode::<Response>(&body) {
        Ok(r) => match r.result {
            Outcome::Ok(_) => ("ok".into(), None),
            Outcome::Error(e) => (
                serde_json::to_value(e.code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                Some(e.message),
            ),
        },
        Err(_) => ("bad-body".into(), None),
    }
}

fn flood(sock: &str, n: usize, churn_ms: u64, hold: bool) {
    let _ = bpfns_sys::process::raise_nofile_limit(n as u64 + 512);
    let path = PathBuf::from(sock);
    let mut conns = Vec::with_capacity(n);
    let mut connect_errors = 0u64;
    for _ in 0..n {
        match UnixStream::connect(&path) {
            Ok(c) => conns.push(c),
            Err(_) => connect_errors += 1,
        }
    }
    let (mut accepted, mut refused, mut other) = (0u64, 0u64, 0u64);
    let mut refusal = None;
    let mut others = std::collections::BTreeMap::<String, u64>::new();
    for c in &mut conns {
        match hello_on(c) {
            (v, _) if v == "ok" => accepted += 1,
            (v, m) if v == "limit_reached" => {
                refused += 1;
                refusal = refusal.or(m);
            }
            (v, _) => {
                other += 1;
                *others.entry(v).or_default() += 1;
            }
        }
    }
    say(&format!(
        "holding=accepted:{accepted} refused:{refused} other:{other}"
    ));
    if let Some(m) = &refusal {
        say(&format!("refusal={m}"));
    }
    if !others.is_empty() {
        say(&format!("others={others:?}"));
    }
    let churned = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (path, churned, stop) = (path.clone(), churned.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if UnixStream::connect(&path).is_ok() {
                        churned.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(churn_ms));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    say(&format!(
        "flood=opened:{} accepted:{accepted} refused:{refused} other:{other} connect_errors:{connect_errors} churn:{}",
        conns.len(),
        churned.load(Ordering::Relaxed)
    ));
    if hold {
        hold_until_eof();
    }
    drop(conns);
}

// ---- namespace deletion through a tenant's directories -------------------------------------

/// Plant `/sys/fs/bpf/orphans` (the member's own bpffs) as a symbolic link to `target`, then ask
/// bpfnsd on `sock` to delete namespace `ns` (a child with pins, whose pins move into this
/// bpffs under `orphans/`): `symlink=`, `delete=`.
fn orphans_symlink(target: &str, sock: &str, ns: &str) {
    let link = Path::new("/sys/fs/bpf/orphans");
    let r = match std::os::unix::fs::symlink(target, link) {
        Ok(()) => "ok".to_string(),
        Err(e) => io_errno(&e),
    };
    say(&format!("symlink={r}"));
    let r = match bpfns_client::Client::connect(sock).and_then(|mut c| c.ns_delete(ns)) {
        Ok((to, n)) => format!("ok:{n}-to-{to}"),
        Err(e) => format!(
            "denied:{}",
            e.code()
                .map(|c| format!("{c:?}"))
                .unwrap_or_else(|| e.to_string().replace(' ', "_"))
        ),
    };
    say(&format!("delete={r}"));
}

/// The race of a deletion's copy into `orphans/`: with a directory fd of the child namespace's
/// bpffs (received from `fd_sock`, as a member of the child would send it), make `pairs`
/// empty directories `dN` and symbolic links `lN` to the `targets` (in turn) there, wait for
/// bpfnsd to open that directory (inotify), and `delay_us` later swap every pair
/// (`RENAME_EXCHANGE`) while bpfnsd copies: a copy that follows links would take whatever is
/// pinned at the targets into this namespace's `orphans/`.
fn orphan_race(
    fd_sock: &str,
    sock: &str,
    ns: &str,
    pairs: usize,
    delay_us: u64,
    targets: &[String],
) {
    let dir = match UnixStream::connect(fd_sock) {
        Ok(s) => {
            let mut fds = Vec::new();
            let mut b = [0u8; 1];
            match bpfns_sys::unix::recv_exact_with_fds(s.as_fd(), &mut b, &mut fds) {
                Ok(true) if !fds.is_empty() => fds.swap_remove(0),
                Ok(_) => fail("no fd received"),
                Err(e) => fail(&format!("receiving the fd: {e}")),
            }
        }
        Err(e) => fail(&format!("connect {fd_sock}: {e}")),
    };
    let mut setup = "ok".to_string();
    for i in 0..pairs {
        let target = Path::new(&targets[i % targets.len().max(1)]);
        let (d, l) = (
            PathBuf::from(format!("d{i}")),
            PathBuf::from(format!("l{i}")),
        );
        if let Err(e) = testhooks::mkdir_at(dir.as_fd(), &d)
            .and_then(|()| testhooks::symlink_at(target, dir.as_fd(), &l))
        {
            setup = errno_str(e);
            break;
        }
    }
    say(&format!("setup={setup}"));
    let watched = format!("/proc/self/fd/{}", dir.as_raw_fd());
    let racer = (setup == "ok").then(|| {
        let watch = testhooks::watch_opens(Path::new(&watched))
            .unwrap_or_else(|e| fail(&format!("inotify: {}", errno_str(e))));
        let dir = dir.try_clone().unwrap_or_else(|e| fail(&e.to_string()));
        std::thread::spawn(move || {
            // Bounded: a copy that never opens the directory is simply not raced.
            let opened = testhooks::wait_inotify(&watch, Duration::from_secs(20)).unwrap_or(false);
            std::thread::sleep(Duration::from_micros(delay_us));
            let swapped = (0..pairs)
                .filter(|i| {
                    testhooks::rename_exchange_at(
                        dir.as_fd(),
                        Path::new(&format!("d{i}")),
                        Path::new(&format!("l{i}")),
                    )
                    .is_ok()
                })
                .count();
            format!("{}{swapped}", if opened { "" } else { "unopened:" })
        })
    });
    // The child may still have a member for a moment (its fd's sender): retry a conflict.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = bpfns_client::Client::connect(sock).and_then(|mut c| c.ns_delete(ns));
        match r {
            Err(e)
                if e.code() == Some(bpfns_proto::ErrorCode::Conflict)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok((to, n)) => break format!("ok:{n}-to-{to}"),
            Err(e) => {
                break format!(
                    "denied:{}",
                    e.code()
                        .map(|c| format!("{c:?}"))
                        .unwrap_or_else(|| e.to_string().replace(' ', "_"))
                )
            }
        }
    };
    say(&format!("delete={r}"));
    if let Some(h) = racer {
        say(&format!(
            "swapped={}",
            h.join().unwrap_or_else(|_| "panicked".into())
        ));
    }
}

/// The lock hog: create namespace `ns` (below this member's own), enter a child of ours into
/// it and let the child exit unreaped (a zombie, which never goes while we live), then have
/// `threads` threads ask `ns_delete --force` of it for `secs` seconds. Says `hogging=` once the
/// threads run and `hog=` with the answers they got (code×count).
fn lock_hog(sock: &str, ns: &str, threads: usize, secs: u64) {
    use bpfns_client::Client;
    let code = |e: &bpfns_client::ClientError| {
        e.code()
            .map(|c| format!("{c:?}"))
            .unwrap_or_else(|| "io".to_string())
    };
    let mut c = Client::connect(sock).unwrap_or_else(|e| fail(&format!("connect: {e}")));
    if let Err(e) = c.ns_create(ns) {
        say(&format!("hogging=create-{}", code(&e)));
        say("hog=none");
        return;
    }
    let mut child = Command::new("/bin/sh")
        .args(["-c", "read x"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("spawn: {e}")));
    let pid = child.id() as i32;
    let entered = c.enter(ns, pid).map(|_| ()).map_err(|e| code(&e));
    drop(child.stdin.take()); // it exits; never reaped until the end
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let zombie = loop {
        let state = bpfns_sys::procfs::read_stat(pid)
            .ok()
            .and_then(|st| {
                st.rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().next().map(str::to_string))
            })
            .unwrap_or_default();
        if state == "Z" || std::time::Instant::now() > deadline {
            break state == "Z";
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    say(&format!(
        "hogging=entered-{} zombie-{zombie}",
        entered.err().unwrap_or_else(|| "ok".into())
    ));
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    let answers: Vec<_> = (0..threads)
        .map(|_| {
            let (sock, ns) = (sock.to_string(), ns.to_string());
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while std::time::Instant::now() < end {
                    let r = Client::connect(&sock).and_then(|mut c| c.ns_delete_with(&ns, true));
                    got.push(match r {
                        Ok(_) => "deleted".to_string(),
                        Err(e) => code(&e),
                    });
                }
                got
            })
        })
        .collect();
    let mut tally = std::collections::BTreeMap::<String, u32>::new();
    for h in answers {
        for a in h.join().unwrap_or_default() {
            *tally.entry(a).or_default() += 1;
        }
    }
    let _ = child.wait();
    let _ = c.ns_delete_with(ns, true);
    let t: Vec<String> = tally.iter().map(|(k, n)| format!("{k}×{n}")).collect();
    say(&format!("hog={}", t.join(",")));
}
