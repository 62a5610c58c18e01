//! The `createRuntime` hook. Runtimes run it in the host's namespaces while the container's
//! init waits inside the runtime: in its new mount namespace, its root file system prepared,
//! before `pivot_root` and before any code of the container. Every failure stops the
//! container (the runtime aborts on a non-zero exit), with the cause on stderr.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bpfns_client::Client;
use serde::Deserialize;

/// The part of the OCI state a hook reads on stdin.
#[derive(Debug, Deserialize)]
struct State {
    #[serde(default)]
    id: String,
    pid: i32,
    bundle: PathBuf,
}

/// Tag the container's init into `namespace` (bpfnsd checks it), then mount the namespace's
/// bpffs at the container's `/sys/fs/bpf` (for a container of its own user namespace, a
/// bpffs of that user namespace that delegates: see bpfnsd's `container_bpffs`).
pub fn create_runtime(socket: &Path, namespace: &str) -> Result<()> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the container's state on stdin")?;
    let state: State = serde_json::from_str(&text).context("parsing the container's state")?;
    if state.pid <= 0 {
        bail!("the container's state names no init process");
    }
    let id = &state.id;
    let mut client = Client::connect(socket)
        .with_context(|| format!("container {id}: bpfns cannot put it in {namespace}"))?;
    client
        .enter_container(namespace, state.pid)
        .with_context(|| format!("container {id}: entering namespace {namespace}"))?;
    let pidfd = bpfns_sys::process::open_pidfd(state.pid)
        .with_context(|| format!("container {id}: its init {} is gone", state.pid))?;
    // A container of its own user namespace can make BPF tokens only from a bpffs of that
    // user namespace: bpfnsd makes the namespace's bpffs one (delegating what its policy
    // allows); the others get the namespace's bpffs as it is.
    let userns = bpfns_sys::userns::in_other_user_ns(pidfd.as_fd(), state.pid)
        .with_context(|| format!("container {id}: its user namespace"))?;
    let (info, made) = if userns {
        let (info, tree) = client
            .container_bpffs(namespace, state.pid)
            .with_context(|| {
                format!("container {id}: a bpffs of its user namespace for {namespace}")
            })?;
        (info, Some(tree))
    } else {
        let info = client
            .ns_show(namespace)
            .with_context(|| format!("container {id}: namespace {namespace}"))?;
        (info, None)
    };
    // runc's state has no root at this stage: the bundle's configuration says where it is.
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(state.bundle.join("config.json")).context("reading the bundle")?,
    )
    .context("parsing the bundle's config.json")?;
    let root = config
        .pointer("/root/path")
        .and_then(|v| v.as_str())
        .context("config.json has no root.path")?;
    let rootfs = if Path::new(root).is_absolute() {
        PathBuf::from(root)
    } else {
        state.bundle.join(root)
    };
    let target = rootfs.join("sys/fs/bpf");
    let tree = match made {
        Some(tree) => tree,
        None => bpfns_sys::mounts::clone_mount(Path::new(&info.bpffs))?,
    };
    // The kernel's preloaded iterators list every map and program of the host.
    let covers = ["maps.debug", "progs.debug"]
        .map(|n| bpfns_sys::mounts::clone_mount(Path::new("/dev/null")).map(|t| (n, t)));
    let covers = covers.into_iter().collect::<Result<Vec<_>, _>>()?;
    bpfns_sys::mounts::attach_in_mount_ns(
        pidfd.as_fd(),
        &bpfns_sys::mounts::Attach {
            tree: tree.as_fd(),
            target: target.clone(),
            cover: covers
                .iter()
                .map(|(n, t)| (PathBuf::from(n), t.as_fd()))
                .collect(),
        },
    )
    .with_context(|| {
        format!(
            "container {id}: mounting the bpffs of {namespace} at {}",
            target.display()
        )
    })?;
    Ok(())
}
