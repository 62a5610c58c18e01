//! Start a command that waits, between fork and exec, until the parent lets it go.
//!
//! Used to put a child into a namespace before it runs a single instruction of its program
//! (the tag is then inherited by everything it starts). The child writes its pid to one pipe
//! and blocks reading another; the parent's callback runs on a helper thread meanwhile
//! (`Command::spawn` returns only after exec). If the callback fails, the pipe is closed
//! unwritten and the child exits with status 126 before exec.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use rustix::io::Errno;

use crate::spawn::SpawnError;
use crate::SysError;

/// Spawn `cmd`; `before_exec(pid)` runs while the child waits. An error from it aborts the
/// child and is returned as it was ([`SpawnError::Before`]).
pub fn spawn_gated<F, E>(cmd: &mut Command, before_exec: F) -> Result<Child, SpawnError<E>>
where
    F: FnOnce(i32) -> Result<(), E> + Send,
    E: std::error::Error + Send + 'static,
{
    let (pid_r, pid_w) = std::io::pipe().map_err(|e| io_err("pipe", &e))?;
    let (go_r, go_w) = std::io::pipe().map_err(|e| io_err("pipe", &e))?;
    // Above the standard descriptors: the child closes and uses them by number after
    // `Command` has set up its standard input and output.
    let above = crate::fds::above_stdio;
    let mut pid_r = std::fs::File::from(above(pid_r.into())?);
    let pid_w = above(pid_w.into())?;
    let go_r = above(go_r.into())?;
    let mut go_w = std::fs::File::from(above(go_w.into())?);
    let parent = std::process::id() as i32;
    let (pw, gr) = (pid_w.as_raw_fd(), go_r.as_raw_fd());
    // The parent's ends, which the fork copies: closed first in the child, so that the
    // parent's death ends its wait (end of file) instead of leaving it blocked forever.
    let (pr, gw) = (pid_r.as_raw_fd(), go_w.as_raw_fd());
    // SAFETY: the hook runs in the child between fork and exec and only makes raw,
    // async-signal-safe system calls (getpid, write, read, close, _exit) on fds it owns.
    unsafe {
        cmd.pre_exec(move || {
            libc::close(pr);
            libc::close(gw);
            // Other starts of this process may hold copies of our ends: die with the parent.
            crate::process::die_with_parent_raw(parent)?;
            let pid = libc::getpid().to_ne_bytes();
            if libc::write(pw, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
                libc::_exit(126);
            }
            libc::close(pw);
            let mut b = 0u8;
            let n = loop {
                let n = libc::read(gr, (&mut b as *mut u8).cast(), 1);
                if n < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break n;
            };
            if n != 1 {
                libc::_exit(126);
            }
            libc::close(gr);
            crate::process::die_with_parent_raw(0)
        });
    }
    /// How the gate thread ended: the child let go, or why not.
    enum Gate<E> {
        Open,
        Sys(SysError),
        Refused(i32, E),
    }
    std::thread::scope(|s| {
        let waiter = s.spawn(move || {
            let mut buf = [0u8; 4];
            if let Err(e) = pid_r.read_exact(&mut buf) {
                return Gate::Sys(io_err("the child did not report its pid", &e));
            }
            let pid = i32::from_ne_bytes(buf);
            if let Err(e) = before_exec(pid) {
                return Gate::Refused(pid, e);
            }
            match go_w.write_all(b"g") {
                Ok(()) => Gate::Open,
                Err(e) => Gate::Sys(io_err("releasing the child", &e)),
            }
        });
        let child = cmd.spawn();
        // Our copies must close so the waiter sees EOF if the child died early.
        drop(pid_w);
        drop(go_r);
        let gate = waiter
            .join()
            .unwrap_or_else(|_| Gate::Sys(SysError::new("the gate thread panicked", Errno::IO)));
        let mut child = child.map_err(|e| io_err("spawn", &e))?;
        let failed = match gate {
            Gate::Open => return Ok(child),
            Gate::Sys(e) => SpawnError::Sys(SysError::new(e.op, Errno::CANCELED)),
            Gate::Refused(pid, source) => SpawnError::Before { pid, source },
        };
        let _ = child.kill();
        let _ = child.wait();
        Err(failed)
    })
}

fn io_err(op: &str, e: &std::io::Error) -> SysError {
    SysError::new(op, Errno::from_io_error(e).unwrap_or(Errno::IO))
}
