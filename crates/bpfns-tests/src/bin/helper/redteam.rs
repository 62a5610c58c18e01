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
//!   rt-probe SPEC...          print euid and CapEff, then rt-list and rt-open SPEC...
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
pub const ACTIONS: [&str; 31] = [
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

fn errno_str(e: bpfns_sys::Errno) -> String {
    format!("errno:{}", e.raw_os_error())
}

fn io_errno(e: &std::io::Error) -> String {
    format!("errno:{}", e.raw_os_error().unwrap_or(0))
}

/// The token fd this process inherited from `rt-as token`, if any.
fn token() -> Option<i32> {
    std::env::var(TOKEN_ENV).ok()?.parse().ok()
}

/// What a bpf fd is: `KIND:ID` (from its anon-inode name and its info).
fn describe(fd: BorrowedFd<'_>) -> String {
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

fn put_u32(a: &mut [u8], off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(a: &mut [u8], off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

fn attr() -> Vec<u8> {
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
        other => fail(&format!("unknown action {other}")),
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
        other => fail(&format!("unknown level {other}")),
    }
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
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
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
    let allow = bpfns_model::ProgramPolicy {
        allow_tracing: true,
    };
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
