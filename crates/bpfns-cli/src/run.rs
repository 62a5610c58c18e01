//! `bpfns kernel debug run NS_ID -- CMD ARGS...`: start CMD already tagged with a namespace.
//!
//! The child must be tagged before it runs a single instruction of CMD, and CMD must keep the
//! user's stdin. Without `unsafe` (no `pre_exec`, no extra inherited fd), the child is a shell
//! that waits on a named FIFO in a private temporary directory:
//!
//! ```text
//! sh -c 'read _ < "$1" || exit 125; shift; exec "$@"' bpfns FIFO CMD ARGS...
//! ```
//!
//! bpfns spawns it, tags its pid (the tag survives `exec` and is inherited by everything CMD
//! starts), then writes one line into the FIFO. If tagging fails, the shell is killed before
//! it reads anything, so CMD never runs untagged. bpfns holds the FIFO open read-write for the
//! child's whole life: the line cannot be lost before the shell opens the FIFO, and the
//! shell's `open` never blocks.

use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use anyhow::{Context, Result};
use bpfns_model::NsId;
use rustix::fs::{mkfifoat, Mode, CWD};

use crate::backend::Direct;
use crate::kernel_cmd::ensure_ns_known;

/// The waiting shell's script; `$1` is the FIFO, the rest is CMD and its arguments.
const SCRIPT: &str = r#"read _ < "$1" || exit 125; shift; exec "$@""#;

/// A FIFO in a private (0700) temporary directory, open read-write; removed on drop.
#[derive(Debug)]
struct Gate {
    dir: PathBuf,
    fifo: PathBuf,
    file: File,
}

impl Gate {
    fn create() -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("bpfns-run-{}-{nanos}", std::process::id()));
        // create (not create_all): fails if the name exists, so nobody else owns the directory.
        DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating the private directory {}", dir.display()))?;
        let fifo = dir.join("gate");
        let made = mkfifoat(CWD, &fifo, Mode::RUSR | Mode::WUSR)
            .with_context(|| format!("creating the FIFO {}", fifo.display()))
            .and_then(|()| {
                // Read-write: opening never blocks, and the FIFO keeps its data while open.
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&fifo)
                    .with_context(|| format!("opening the FIFO {}", fifo.display()))
            });
        match made {
            Ok(file) => Ok(Self { dir, fifo, file }),
            Err(e) => {
                let _ = std::fs::remove_file(&fifo);
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    fn path(&self) -> &Path {
        &self.fifo
    }

    /// Let the child go on to exec CMD.
    fn open(&mut self) -> Result<()> {
        self.file
            .write_all(b"go\n")
            .context("releasing the child through its FIFO")
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.fifo);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The shell convention for a child's end: its exit code, or 128+N for signal N.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + (sig & 0x7f)).unwrap_or(255),
        (None, None) => 1,
    }
}

/// Run `command` in namespace `ns_id`; returns its exit status.
pub fn run(direct: &Direct, ns_id: u32, command: &[OsString]) -> Result<u8> {
    let Some((program, args)) = command.split_first() else {
        anyhow::bail!("no command given: `bpfns kernel debug run NS_ID -- CMD ARGS...`");
    };
    let ns = NsId(ns_id);
    let kernel = direct.kernel()?;
    ensure_ns_known(&kernel, ns, direct.layout().root())?;

    let mut gate = Gate::create()?;
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("bpfns")
        .arg(gate.path())
        .arg(program)
        .args(args)
        .spawn()
        .context("starting /bin/sh to run the command")?;
    let pid = i32::try_from(child.id()).context("child pid out of range")?;
    tracing::debug!(pid, ns = ns_id, "tagging the waiting child");

    if let Err(e) = kernel.tag_process(pid, ns) {
        // Never let CMD run untagged.
        let _ = child.kill();
        let _ = child.wait();
        return Err(e).with_context(|| {
            format!(
                "tagging the child {pid} with namespace {ns_id}; {} was not run",
                program.to_string_lossy()
            )
        });
    }
    if let Err(e) = gate.open() {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    let status = child.wait().context("waiting for the command")?;
    drop(gate);
    tracing::debug!(?status, "command ended");
    Ok(exit_code(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }

    #[test]
    fn gate_releases_a_waiting_shell_and_cleans_up() {
        let mut gate = Gate::create().unwrap();
        let dir = gate.dir.clone();
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("bpfns")
            .arg(gate.path())
            .args(["sh", "-c", "exit 7"])
            .spawn()
            .unwrap();
        gate.open().unwrap();
        assert_eq!(exit_code(child.wait().unwrap()), 7);
        drop(gate);
        assert!(!dir.exists());
    }

    #[test]
    fn closed_gate_never_runs_the_command() {
        let gate = Gate::create().unwrap();
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("bpfns")
            .arg(gate.path())
            .args(["sh", "-c", "exit 0"])
            .spawn()
            .unwrap();
        // Wait until the shell has the FIFO open, then close ours: it sees EOF.
        let fifo = gate.path().to_path_buf();
        let fds = format!("/proc/{}/fd", child.id());
        let has_fifo_open = || {
            std::fs::read_dir(&fds).is_ok_and(|rd| {
                rd.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .any(|l| l == fifo)
            })
        };
        for _ in 0..1000 {
            if has_fifo_open() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(has_fifo_open(), "the shell never opened the FIFO");
        drop(gate);
        assert_eq!(exit_code(child.wait().unwrap()), 125);
    }
}
