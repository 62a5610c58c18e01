//! Processes and threads: pidfds and thread ids.

use std::os::fd::OwnedFd;

use rustix::process::{pidfd_open, Pid, PidfdFlags};

use crate::{Result, SysError};
use rustix::io::Errno;

fn pid(raw: i32) -> Result<Pid> {
    Pid::from_raw(raw).ok_or_else(|| SysError::new(format!("pid {raw}"), Errno::SRCH))
}

/// A pidfd for the process (thread-group leader) `pid`.
pub fn open_pidfd(raw_pid: i32) -> Result<OwnedFd> {
    pidfd_open(pid(raw_pid)?, PidfdFlags::empty())
        .map_err(|e| SysError::new(format!("pidfd_open {raw_pid}"), e))
}

/// A pidfd naming one thread `tid` (`PIDFD_THREAD`, Linux 6.9+).
pub fn open_thread_pidfd(tid: i32) -> Result<OwnedFd> {
    // PIDFD_THREAD has the value of O_EXCL.
    let flags = PidfdFlags::from_bits_retain(libc::O_EXCL as u32);
    pidfd_open(pid(tid)?, flags).map_err(|e| SysError::new(format!("pidfd_open thread {tid}"), e))
}

/// The calling thread's id.
pub fn gettid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// The ids of every thread of process `pid`, from `/proc/PID/task`.
pub fn thread_ids(raw_pid: i32) -> Result<Vec<i32>> {
    let dir = format!("/proc/{raw_pid}/task");
    let rd = std::fs::read_dir(&dir).map_err(|e| {
        SysError::new(
            format!("read {dir}"),
            Errno::from_io_error(&e).unwrap_or(Errno::SRCH),
        )
    })?;
    let mut tids: Vec<i32> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}
