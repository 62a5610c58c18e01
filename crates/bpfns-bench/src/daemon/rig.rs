//! A private bpfnsd for the benchmark: the real `bpfnsd` binary as a child process, with its
//! own socket, database, pin root and namespace bpffs directory. Everything it made is
//! removed when the guard drops (also on error and after Ctrl-C): the daemon is killed and its
//! listener keeper retired, the namespaces' bpffs instances are unmounted, the directory is removed and its kernel side
//! is unloaded. A run that was SIGKILLed is cleaned up by the next one
//! ([`remove_stale_daemons`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bpfns_kernel::{loader, PinLayout};

/// `/tmp/bpfns-bench-daemon-<bench pid>`: socket, database, namespace bpffs mounts, log.
const DIR_PREFIX: &str = "/tmp/bpfns-bench-daemon-";
/// `events_per_namespace_per_sec` of the benchmark's bpfnsd.
pub const EVENTS_PER_NS: u32 = 1_000_000;

fn dir_of(bench_pid: u32) -> PathBuf {
    PathBuf::from(format!("{DIR_PREFIX}{bench_pid}"))
}

/// The daemon's pin root: `/sys/fs/bpf/bpfns-bench-<bench pid>-daemon` (the kernel
/// benchmark's stale-instance sweep keys on the pid before the first `-`).
fn layout_of(bench_pid: u32) -> PinLayout {
    PinLayout::new(format!("/sys/fs/bpf/bpfns-bench-{bench_pid}-daemon"))
}

/// The running daemon; killed and cleaned up on drop.
#[derive(Debug)]
pub struct BenchDaemon {
    child: Option<Child>,
    program: PathBuf,
    pub socket: PathBuf,
    pub dir: PathBuf,
    pub layout: PinLayout,
    log: PathBuf,
}

impl BenchDaemon {
    /// Start `bpfnsd` and wait until it answers.
    pub fn start(bpfnsd: &Path) -> Result<Self> {
        let pid = std::process::id();
        let dir = dir_of(pid);
        let layout = layout_of(pid);
        cleanup(&dir, &layout, None);
        // From here on, drop removes whatever got made.
        let mut me = Self {
            child: None,
            program: bpfnsd.to_path_buf(),
            socket: dir.join("bpfns.sock"),
            log: dir.join("bpfnsd.log"),
            dir,
            layout,
        };
        std::fs::create_dir_all(&me.dir)
            .with_context(|| format!("creating {}", me.dir.display()))?;
        // The root pin tree beside the kernel side's, so that nothing lands in the host's
        // /sys/fs/bpf/orphans; the rest from the flags below.
        let root_bpffs = root_bpffs_of(&me.layout);
        std::fs::create_dir_all(&root_bpffs)
            .with_context(|| format!("creating {}", root_bpffs.display()))?;
        let config = me.dir.join("bpfnsd.toml");
        // Events unlimited per namespace: the stalled-subscriber run needs a stream faster
        // than a subscriber's queue (no other run subscribes).
        std::fs::write(
            &config,
            format!(
                "root_bpffs = {:?}\nevents_per_namespace_per_sec = {EVENTS_PER_NS}\n",
                root_bpffs
            ),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        me.spawn()?;
        Ok(me)
    }

    /// Start the process over this daemon's state and wait until it answers; how long
    /// that took.
    fn spawn(&mut self) -> Result<Duration> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let start = Instant::now();
        let child = Command::new(&self.program)
            .arg("--config")
            .arg(self.dir.join("bpfnsd.toml"))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("--pin-root")
            .arg(self.layout.root())
            .arg("--ns-bpffs-dir")
            .arg(self.dir.join("ns"))
            .arg("--seccomp-socket")
            .arg(self.dir.join("seccomp.sock"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        std::fs::write(self.dir.join("bpfnsd.pid"), child.id().to_string())?;
        self.child = Some(child);
        loop {
            crate::controller::check_interrupt()?;
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    bail!(
                        "bpfnsd exited at start ({status}); its log:\n{}",
                        self.log_tail()
                    );
                }
            }
            if let Ok(mut c) = bpfns_client::Client::connect(&self.socket) {
                if c.hello().is_ok() {
                    return Ok(start.elapsed());
                }
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "bpfnsd did not answer on {} within 60 s; its log:\n{}",
                    self.socket.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stop bpfnsd as `systemctl restart` does (SIGTERM, wait), start it again over the same
    /// state: the time from the new process's start until it answers `hello`.
    pub fn restart(&mut self) -> Result<Duration> {
        if let Some(mut c) = self.child.take() {
            if let Some(p) = rustix::process::Pid::from_raw(c.id() as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
            }
            c.wait().context("waiting for bpfnsd to stop")?;
        }
        self.spawn()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn client(&self) -> Result<bpfns_client::Client> {
        bpfns_client::Client::connect(&self.socket).context("connecting to the bench's bpfnsd")
    }

    /// The last lines of the daemon's log (for error messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Whether the daemon is still running.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut() {
            if let Some(status) = c.try_wait()? {
                bail!("bpfnsd exited ({status}); its log:\n{}", self.log_tail());
            }
        }
        Ok(())
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        cleanup(&self.dir, &self.layout, None);
    }
}

/// Remove what a bench daemon leaves: the daemon (if `daemon_pid` is given and still is
/// bpfnsd), namespace bpffs mounts, files, the kernel side.
fn cleanup(dir: &Path, layout: &PinLayout, daemon_pid: Option<i32>) {
    if let Some(pid) = daemon_pid {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let ours = String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy());
        if ours {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                // Wait until it has exited (its files and mounts released; init reaps it).
                for _ in 0..100 {
                    if pid <= 0 || !alive(pid as u32) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    // bpfnsd's listener keeper outlives bpfnsd on purpose; the benchmark is done with it.
    bpfnsd::keeper::link::retire_at(&dir.join("state").join(bpfnsd::keeper::SOCKET_NAME));
    if let Ok(rd) = std::fs::read_dir(dir.join("ns")) {
        for e in rd.flatten() {
            let _ = bpfns_sys::fs::unmount_detach(&e.path());
        }
    }
    // bpfnsd makes the instances' directory a mount point of its own.
    let _ = bpfns_sys::fs::unmount_detach(&dir.join("ns"));
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(root_bpffs_of(layout));
    let _ = loader::unload(layout);
    let _ = std::fs::remove_dir_all(layout.root());
}

/// The benchmark daemon's root pin tree: beside its kernel side's pin root.
fn root_bpffs_of(layout: &PinLayout) -> PathBuf {
    let mut p = layout.root().as_os_str().to_owned();
    p.push("-root");
    PathBuf::from(p)
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command, which may hold spaces and parentheses.
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Clean up after earlier runs that died without doing it (their bench process is gone).
/// Returns the directories removed.
pub fn remove_stale_daemons() -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return removed;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(DIR_PREFIX.trim_start_matches("/tmp/"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if alive(pid) {
            continue;
        }
        let dir = dir_of(pid);
        let daemon = std::fs::read_to_string(dir.join("bpfnsd.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        cleanup(&dir, &layout_of(pid), daemon);
        removed.push(dir);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness() {
        assert!(alive(std::process::id()));
        // Above the kernel's pid_max limit (2^22): never a process.
        assert!(!alive(1 << 23));
    }

    #[test]
    fn paths_carry_the_bench_pid() {
        assert_eq!(dir_of(42), PathBuf::from("/tmp/bpfns-bench-daemon-42"));
        assert_eq!(
            layout_of(42).root(),
            Path::new("/sys/fs/bpf/bpfns-bench-42-daemon")
        );
    }
}
