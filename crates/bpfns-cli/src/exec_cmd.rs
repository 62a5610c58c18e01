//! `bpfns exec NS -- CMD [ARGS...]`: run CMD as a member of NS (see `bpfns_client::member`).

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use bpfns_client::member;

/// Start the command as a member and return its exit status (128+signal if killed).
pub fn run(socket: &Path, ns: &str, command: &[OsString]) -> Result<u8> {
    let (prog, args) = command
        .split_first()
        .context("no command given: bpfns exec NS -- CMD [ARGS...]")?;
    if let Some(w) = bpfns_client::advice::net_admin_in_host_netns() {
        eprintln!("{w}");
    }
    let mut cmd = Command::new(prog);
    cmd.args(args);
    // bpfnsd and its listener keeper hold the member's seccomp listener: nothing is kept here,
    // and the member stays supervised across bpfnsd restarts also after this process exits.
    let mut child = member::spawn(socket, ns, &mut cmd)
        .with_context(|| format!("starting {} in namespace {ns}", prog.to_string_lossy()))?;
    let status = child.wait().context("waiting for the command")?;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => 128u8.wrapping_add(s as u8),
        _ => 1,
    })
}
