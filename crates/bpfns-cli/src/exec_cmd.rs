//! `bpfns exec NS -- CMD [ARGS...]`: run CMD as a member of NS (see `bpfns_client::member`),
//! as a supervisor of it: the signals a service manager or a shell sends to `bpfns exec` go on
//! to the command, `bpfns exec` waits for it and exits with its status.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};

use anyhow::{Context, Result};
use bpfns_client::member;
use bpfns_sys::caps::CapabilitySet;
use bpfns_sys::spawn::Credentials;
use bpfns_sys::Errno;

use crate::error::CliError;
use signal_hook::consts::{SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::Cause;

/// The signals passed on to the command (what `timeout`, `systemctl stop`, a closed terminal,
/// job control and CI cancellation send).
const FORWARDED: [i32; 7] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH];

/// Exit status when the command cannot be run (as shells do).
const CANNOT_RUN: u8 = 126;
/// Exit status when the command is not found (as shells do).
const NOT_FOUND: u8 = 127;

/// Start the command as a member and return its exit status (128+signal if killed; 126 if it
/// cannot be run, 127 if it is not found).
pub fn run(
    socket: &Path,
    ns: &str,
    command: &[OsString],
    creds: Option<Credentials>,
    writable_cgroups: bool,
) -> Result<u8> {
    let (prog, args) = command
        .split_first()
        .context("no command given: bpfns exec NS -- CMD [ARGS...]")?;
    // bpfnsd is asked first: the rest of the preparations run while it answers.
    let prepared = match member::prepare(socket, ns) {
        Ok(p) => p,
        Err(e) => {
            return Err(anyhow::Error::new(e))
                .with_context(|| format!("starting {} in namespace {ns}", prog.to_string_lossy()))
        }
    };
    if let Some(w) = bpfns_client::advice::net_admin_in_host_netns() {
        eprintln!("{w}");
    }
    // Taken over before the command starts, so that none of them ends `bpfns exec` first.
    let mut signals =
        SignalsInfo::<WithOrigin>::new(FORWARDED).context("setting up signal forwarding")?;
    let mut cmd = Command::new(prog);
    cmd.args(args);
    // bpfnsd and its listener keeper hold the member's seccomp listener: nothing is kept here,
    // and the member stays supervised across bpfnsd restarts also after this process exits.
    let mut options = member::Options::default().writable_cgroups(writable_cgroups);
    if let Some(c) = creds {
        options = options.credentials(c);
    }
    let mut child = match prepared.spawn(&mut cmd, options) {
        Ok(c) => c,
        Err(e) => {
            let name = prog.to_string_lossy();
            return match e.spawn_errno() {
                Some(Errno::NOENT) => {
                    eprintln!("bpfns: {name}: command not found");
                    Ok(NOT_FOUND)
                }
                Some(errno @ (Errno::ACCESS | Errno::NOEXEC | Errno::ISDIR | Errno::PERM)) => {
                    eprintln!("bpfns: {name}: cannot run it: {errno}");
                    Ok(CANNOT_RUN)
                }
                _ => Err(anyhow::Error::new(e))
                    .with_context(|| format!("starting {name} in namespace {ns}")),
            };
        }
    };
    let pid = child.id() as i32;
    // Signals go through a pidfd: one forwarded after the command was reaped reaches nothing
    // (never a process that took its pid), so the forwarder need not be waited for at the end.
    let pidfd = bpfns_sys::process::open_pidfd(pid)
        .with_context(|| format!("opening a pidfd for the command (process {pid})"))?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("bpfns-signals".into())
        .spawn(move || {
            for info in signals.forever() {
                // What the terminal sends (Ctrl-C, a resize) reaches the whole foreground
                // process group, the command included: passing it on would deliver it twice.
                if info.cause == Cause::Kernel {
                    continue;
                }
                forward(&pidfd, info.signal);
            }
        })
        .context("starting the signal forwarder")?;
    // Wait without reaping: while the command is a zombie, bpfnsd can check that it is our
    // child when asked why it was stopped.
    let status = wait_unreaped(pid);
    handle.close();
    if status.as_ref().is_ok_and(|s| s.signal() == Some(SIGKILL)) {
        explain_kill(socket, pid);
    }
    let status = child.wait().context("waiting for the command")?;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => 128u8.wrapping_add(s as u8),
        _ => 1,
    })
}

/// The credentials `--user` and `--caps` ask for (`None`: neither given). With `--user` alone
/// no capability is kept, as for any non-root user.
pub fn credentials(user: Option<&str>, caps: Option<&str>) -> Result<Option<Credentials>> {
    if user.is_none() && caps.is_none() {
        return Ok(None);
    }
    let (uid, gid) = match user {
        None => (None, None),
        Some(u) => {
            let (name, group) = match u.split_once(':') {
                Some((n, g)) => (n, Some(g)),
                None => (u, None),
            };
            let (uid, user_gid) = lookup_user(name)?;
            let gid = match group {
                Some(g) => lookup_group(g)?,
                None => user_gid,
            };
            (Some(uid), Some(gid))
        }
    };
    let keep = match caps {
        None => CapabilitySet::empty(),
        Some(list) => parse_caps(list)?,
    };
    Ok(Some(Credentials { uid, gid, keep }))
}

/// `bpf,net_admin` (also `CAP_BPF`, any case) to a set; `none` is the empty set.
fn parse_caps(list: &str) -> Result<CapabilitySet> {
    let mut set = CapabilitySet::empty();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.eq_ignore_ascii_case("none") {
            continue;
        }
        let upper = name.to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        let cap = CapabilitySet::from_name(bare).ok_or_else(|| {
            CliError::usage(format!(
                "--caps: unknown capability {name:?} (e.g. bpf, perfmon, net_admin, sys_admin)"
            ))
        })?;
        set |= cap;
    }
    Ok(set)
}

/// A user by name or number: (uid, its primary gid) from /etc/passwd (a number not there:
/// the same number as gid).
fn lookup_user(name: &str) -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && (f[0] == name || f[2] == name) {
            if let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) {
                return Ok((uid, gid));
            }
        }
    }
    match name.parse::<u32>() {
        Ok(n) => Ok((n, n)),
        Err(_) => Err(CliError::usage(format!("--user: no user {name:?} in /etc/passwd")).into()),
    }
}

/// A group by name or number, from /etc/group.
fn lookup_group(name: &str) -> Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && f[0] == name)
        .and_then(|f| f[2].parse().ok())
        .ok_or_else(|| CliError::usage(format!("--user: no group {name:?} in /etc/group")).into())
}

/// Send `sig` to the process of `pidfd` (gone already: nothing to do).
fn forward(pidfd: &std::os::fd::OwnedFd, sig: i32) {
    let Some(s) = rustix::process::Signal::from_named_raw(sig) else {
        return;
    };
    let _ = rustix::process::pidfd_send_signal(pidfd, s);
}

/// Wait for `pid` to end, leaving it unreaped (`WNOWAIT`); its status.
fn wait_unreaped(pid: i32) -> std::io::Result<ExitStatus> {
    use rustix::process::{waitid, WaitId, WaitIdOptions};
    let p = rustix::process::Pid::from_raw(pid).ok_or(std::io::ErrorKind::InvalidInput)?;
    loop {
        match waitid(
            WaitId::Pid(p),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Ok(Some(st)) => {
                let raw = if let Some(code) = st.exit_status() {
                    (code & 0xff) << 8
                } else {
                    st.terminating_signal().unwrap_or(0) & 0x7f
                };
                return Ok(ExitStatus::from_raw(raw));
            }
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The command died of SIGKILL: if bpfns's kernel side stopped it, say why and what to do.
fn explain_kill(socket: &Path, pid: i32) {
    let Ok(mut c) = bpfns_client::Client::connect(socket) else {
        return;
    };
    let _ = c.set_timeout(Some(std::time::Duration::from_secs(2)));
    if let Ok(events) = c.why_stopped(pid) {
        for e in events {
            eprintln!("bpfns: the command was {e}");
        }
    }
}
