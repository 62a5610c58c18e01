//! The floor under any seccomp supervisor, measured on this machine: a child process traps
//! `getppid` into a user-notification listener that this process answers at once, so the
//! supervisor's own figures can be judged against what the mechanism itself costs.
//!
//! Modes, each timed per call in the child (the hidden `floor-caller` subcommand):
//! - `empty`: receive, answer 0;
//! - `rw`: receive, read 128 bytes of the caller (`process_vm_readv`), `NOTIF_ID_VALID`,
//!   write 4 bytes back, answer 0 (what a trapped `GET_NEXT_ID` needs at the least);
//! - `addfd-send`: inject an fd with `ADDFD | SEND` (one ioctl answers);
//! - `addfd-then-send`: `ADDFD`, then `NOTIF_SEND` with the fd number;
//! - `capset-addfd-then-send`: the same after lowering and raising one effective capability
//!   of the answering thread (what an answer made with other credentials pays: `capset`
//!   commits new credentials each time);
//! - `open-addfd-then-send`: what a trapped `MAP_GET_FD_BY_ID` needs at the least, injected as
//!   bpfnsd injects: read 128 bytes of the caller, `NOTIF_ID_VALID`, open a map by id (a new
//!   file each time, as an answer makes), `ADDFD`, `NOTIF_SEND`, close the answer's copy.
//!
//! The listener has `SYNC_WAKE_UP` on and is waited on with `poll`, as bpfnsd's is. Each mode
//! runs unpinned (as bpfnsd runs), and the injecting ones also with caller and supervisor on
//! one CPU and on two.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bpfns_sys::seccomp::{self, AddFd, FilterFlags, Listener, Response};
use serde::{Deserialize, Serialize};

use crate::stats::quantile;

/// What the answering side does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Empty,
    ReadCheckWrite,
    AddFdSend,
    AddFdThenSend,
    CapsetAddFdThenSend,
    OpenAddFdThenSend,
}

impl Mode {
    const ALL: [Mode; 6] = [
        Mode::Empty,
        Mode::ReadCheckWrite,
        Mode::AddFdSend,
        Mode::AddFdThenSend,
        Mode::CapsetAddFdThenSend,
        Mode::OpenAddFdThenSend,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Mode::Empty => "empty round trip",
            Mode::ReadCheckWrite => "round trip + read 128 B, ID_VALID, write 4 B",
            Mode::AddFdSend => "fd injected with ADDFD|SEND",
            Mode::AddFdThenSend => "fd injected with ADDFD, then SEND",
            Mode::CapsetAddFdThenSend => "capset pair, then ADDFD, then SEND",
            Mode::OpenAddFdThenSend => "read 128 B, ID_VALID, open a map, ADDFD, SEND",
        }
    }

    fn injects(self) -> bool {
        matches!(
            self,
            Mode::AddFdSend
                | Mode::AddFdThenSend
                | Mode::CapsetAddFdThenSend
                | Mode::OpenAddFdThenSend
        )
    }

    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(c: u8) -> Mode {
        Mode::ALL[usize::from(c).min(Mode::ALL.len() - 1)]
    }
}

/// Where caller and supervisor run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// Wherever the scheduler puts them (as bpfnsd runs).
    Any,
    SameCpu,
    OtherCpus,
}

impl Placement {
    pub fn label(self) -> &'static str {
        match self {
            Placement::Any => "unpinned",
            Placement::SameCpu => "one CPU",
            Placement::OtherCpus => "two CPUs",
        }
    }
}

/// One measured mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorTime {
    pub mode: Mode,
    pub placement: Placement,
    pub median_ns: f64,
    pub p90_ns: f64,
    pub calls: usize,
}

/// Every mode of one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Floor {
    pub times: Vec<FloorTime>,
}

impl Floor {
    /// The unpinned median of `mode`.
    pub fn of(&self, mode: Mode) -> Option<f64> {
        self.times
            .iter()
            .find(|t| t.mode == mode && t.placement == Placement::Any)
            .map(|t| t.median_ns)
    }
}

const CALLS: usize = 4000;
const WARMUP: usize = 400;

/// Measure every mode, with `calls` timed calls each (plus a warm-up).
pub fn measure(calls: usize) -> Result<Floor> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("floor-caller")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the floor caller")?;
    let result = drive(&mut child, if calls == 0 { CALLS } else { calls });
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn drive(child: &mut std::process::Child, calls: usize) -> Result<Floor> {
    let mut to = child.stdin.take().context("the caller's stdin")?;
    let mut from = BufReader::new(child.stdout.take().context("the caller's stdout")?);
    let mut line = String::new();
    from.read_line(&mut line)?;
    let fd: i32 = line
        .trim()
        .strip_prefix("listener ")
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("the floor caller said {line:?}"))?;
    let pidfd = bpfns_sys::process::open_pidfd(child.id() as i32)?;
    let listener = Listener::from_fd(bpfns_sys::fds::pidfd_getfd(pidfd.as_fd(), fd)?);
    listener.set_sync_wakeup().context("SYNC_WAKE_UP")?;
    let mode = Arc::new(AtomicU8::new(0));
    let pin = Arc::new(AtomicU8::new(u8::MAX));
    let cpus = bpfns_sys::process::allowed_cpus()?;
    let server = {
        let mode = Arc::clone(&mode);
        let pin = Arc::clone(&pin);
        let cpus = cpus.clone();
        std::thread::spawn(move || serve(listener, &mode, &pin, &cpus))
    };
    let mut floor = Floor::default();
    let mut placements = vec![Placement::Any];
    if cpus.len() >= 2 {
        placements.extend([Placement::SameCpu, Placement::OtherCpus]);
    }
    for m in Mode::ALL {
        for &p in &placements {
            if p != Placement::Any && !m.injects() {
                continue;
            }
            let (sup_cpu, caller_cpu) = match p {
                Placement::Any => (None, None),
                Placement::SameCpu => (Some(cpus[0]), Some(cpus[0])),
                Placement::OtherCpus => (Some(cpus[0]), Some(cpus[1])),
            };
            mode.store(m.code(), Ordering::SeqCst);
            pin.store(sup_cpu.map_or(u8::MAX, |c| c as u8), Ordering::SeqCst);
            writeln!(
                to,
                "run {} {} {}",
                m.code(),
                caller_cpu.map_or(-1, |c| c as i64),
                calls
            )?;
            to.flush()?;
            line.clear();
            from.read_line(&mut line)?;
            let v: Vec<f64> = line
                .split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect();
            if v.len() != 2 {
                bail!("the floor caller said {line:?}");
            }
            floor.times.push(FloorTime {
                mode: m,
                placement: p,
                median_ns: v[0],
                p90_ns: v[1],
                calls,
            });
        }
    }
    drop(to);
    // The caller exits on EOF; the listener hangs up and the server returns.
    let _ = child.wait();
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the floor server panicked"))??;
    Ok(floor)
}

/// Answer every notification as `mode` says, until the caller is gone.
fn serve(listener: Listener, mode: &AtomicU8, pin: &AtomicU8, cpus: &[usize]) -> Result<()> {
    let null = std::fs::File::open("/dev/null")?;
    let map = bpfns_sys::bpf::map_create(libbpf_sys::BPF_MAP_TYPE_ARRAY, "bpfns_floor", 4, 8, 1)?;
    let map_id = bpfns_sys::bpf::fd_id(&map, bpfns_sys::bpf::Kind::Map)?;
    let mut buf = [0u8; 128];
    let mut pinned = u8::MAX;
    loop {
        let want = pin.load(Ordering::SeqCst);
        if want != pinned {
            if want == u8::MAX {
                unpin(cpus)?;
            } else {
                bpfns_sys::process::pin_to_cpu(usize::from(want))?;
            }
            pinned = want;
        }
        match bpfns_sys::fds::poll_any(&[listener.as_fd()], None)? {
            Some(r) if r[0].readable => {}
            Some(r) if r[0].hung_up => return Ok(()),
            _ => continue,
        }
        let n = match listener.recv() {
            Ok(n) => n,
            Err(e) if e.errno == bpfns_sys::Errno::NOENT => continue,
            Err(e) => return Err(e.into()),
        };
        let tid = n.pid as i32;
        match Mode::from_code(mode.load(Ordering::SeqCst)) {
            Mode::Empty => listener.respond(n.id, Response::Value(0))?,
            Mode::ReadCheckWrite => {
                bpfns_sys::mem::read_exact(tid, n.args[0], &mut buf)
                    .map_err(|e| anyhow::anyhow!("reading the caller: {e}"))?;
                if !listener.id_valid(n.id)? {
                    continue;
                }
                bpfns_sys::mem::write_all(tid, n.args[0], &buf[..4])
                    .map_err(|e| anyhow::anyhow!("writing the caller: {e}"))?;
                listener.respond(n.id, Response::Value(0))?;
            }
            Mode::AddFdSend => {
                let opts = AddFd {
                    target_fd: None,
                    cloexec: true,
                    send: true,
                };
                listener.add_fd(n.id, null.as_fd(), opts)?;
            }
            m @ (Mode::AddFdThenSend | Mode::CapsetAddFdThenSend) => {
                if m == Mode::CapsetAddFdThenSend {
                    let own = bpfns_sys::caps::of_current_thread()?.effective;
                    bpfns_sys::caps::set_current_thread_effective(
                        own - bpfns_sys::caps::CapabilitySet::SYSLOG,
                    )?;
                    bpfns_sys::caps::set_current_thread_effective(own)?;
                }
                let opts = AddFd {
                    target_fd: None,
                    cloexec: true,
                    send: false,
                };
                let fd = listener.add_fd(n.id, null.as_fd(), opts)?;
                listener.respond(n.id, Response::Value(i64::from(fd)))?;
            }
            Mode::OpenAddFdThenSend => {
                bpfns_sys::mem::read_exact(tid, n.args[0], &mut buf)
                    .map_err(|e| anyhow::anyhow!("reading the caller: {e}"))?;
                if !listener.id_valid(n.id)? {
                    continue;
                }
                let file = bpfns_sys::bpf::fd_by_id(bpfns_sys::bpf::Kind::Map, map_id)?;
                let opts = AddFd {
                    target_fd: None,
                    cloexec: true,
                    send: false,
                };
                let fd = listener.add_fd(n.id, file.as_fd(), opts)?;
                drop(file);
                listener.respond(n.id, Response::Value(i64::from(fd)))?;
            }
        }
    }
}

fn unpin(cpus: &[usize]) -> Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    for &c in cpus {
        set.set(c);
    }
    rustix::thread::sched_setaffinity(None, &set).context("sched_setaffinity")
}

/// The `floor-caller` subcommand: install the filter, say where the listener is, then time
/// `getppid` calls as told.
pub fn serve_caller() -> Result<()> {
    let cpus = bpfns_sys::process::allowed_cpus()?;
    let filter = seccomp::Filter::notify_syscalls(&[libc::SYS_getppid])?;
    seccomp::set_no_new_privs_raw().map_err(|e| anyhow::anyhow!("no_new_privs: {e}"))?;
    let listener = seccomp::install_filter(&filter, FilterFlags::NEW_LISTENER)?
        .context("no listener returned")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listener {}", listener.as_fd().as_raw_fd())?;
    out.flush()?;
    let mut buf = [0u8; 128];
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let w: Vec<i64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|s| s.parse().ok())
            .collect();
        let [code, cpu, calls] = w[..] else {
            bail!("floor caller: unexpected {line:?}");
        };
        if cpu < 0 {
            unpin(&cpus)?;
        } else {
            bpfns_sys::process::pin_to_cpu(cpu as usize)?;
        }
        let inject = Mode::from_code(code as u8).injects();
        let mut ns = Vec::with_capacity(calls as usize);
        for i in 0..WARMUP + calls as usize {
            let t = Instant::now();
            // SAFETY: getppid takes no arguments; the pointer is only read by the supervisor.
            let r = unsafe { libc::syscall(libc::SYS_getppid, buf.as_mut_ptr()) };
            let e = t.elapsed().as_nanos() as f64;
            if r < 0 {
                bail!("trapped getppid: {}", std::io::Error::last_os_error());
            }
            if inject {
                // SAFETY: the supervisor just installed this fd for us.
                unsafe { libc::close(r as i32) };
            }
            if i >= WARMUP {
                ns.push(e);
            }
        }
        writeln!(out, "{} {}", quantile(&ns, 0.5), quantile(&ns, 0.9))?;
        out.flush()?;
    }
    drop(listener);
    Ok(())
}
