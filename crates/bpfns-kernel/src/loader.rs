//! Loading, upgrading and unloading the kernel side.
//!
//! Loading is idempotent and upgrade-safe: state maps are pinned by name and reused by the next
//! load (libbpf checks that their definitions still match), and every program is attached
//! through a link that is pinned at a temporary path and then renamed over the old one, so the
//! old program is detached only once the new one runs. No tag or ownership record is lost and
//! enforcement never lapses.
//!
//! A state map whose definition changed (the ownership map's capacity) is migrated: its entries
//! are carried over into a map of the new definition ([`crate::migrate`]).
//!
//! `on_sys_exit` and `on_fork` are attached only while they have work ([`crate::hooks`]): a
//! load keeps them attached if they were, attaches them if some task is tagged or some cgroup
//! bound (members of an earlier bpfnsd, say), and otherwise only pins their programs.
//!
//! After the main object, [`load`] loads the optional BPF LSM layer ([`crate::lsm`]) the same
//! way; a kernel that refuses it never fails the load: [`LoadReport::lsm`] says why.

use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};

use bpfns_sys::fs::{ensure_bpffs, fs_magic, MountOutcome, BPF_FS_MAGIC};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::Link;
use serde::Serialize;

use crate::error::{KernelError, Result};
use crate::layout::{PinLayout, LINKS, MAPS, ON_DEMAND, TASK_ITERATORS};
use crate::lsm::{self, LsmStatus};
use crate::migrate;
use crate::skel::BpfnsSkelBuilder;

/// What a load did, for logs and `bpfns kernel load -j`.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub pin_root: PathBuf,
    /// Filesystems bpfns had to mount first.
    pub mounted: Vec<String>,
    /// True when pinned state from an earlier load was found and reused.
    pub reused_state: bool,
    /// `(link name, program id)` of the main object's programs: what now runs, and the syscall
    /// hooks whether attached now or not ([`crate::hooks`]).
    pub programs: Vec<(String, u32)>,
    /// Whether the BPF LSM layer runs too, and if not why.
    pub lsm: LsmStatus,
}

/// The bpffs mount that holds `root`: `/sys/fs/bpf` unless `root` is elsewhere.
fn bpffs_mount_for(root: &Path) -> PathBuf {
    let mut p = root.to_path_buf();
    while let Some(parent) = p.parent() {
        if fs_magic(parent).ok() == Some(BPF_FS_MAGIC) {
            p = parent.to_path_buf();
            continue;
        }
        if p.exists() && fs_magic(&p).ok() == Some(BPF_FS_MAGIC) {
            return p;
        }
        break;
    }
    PathBuf::from("/sys/fs/bpf")
}

fn prepare_fs(layout: &PinLayout, mounted: &mut Vec<String>) -> Result<()> {
    let root = layout.root();
    if fs_magic(root).ok() != Some(BPF_FS_MAGIC)
        && root.parent().and_then(|p| fs_magic(p).ok()) != Some(BPF_FS_MAGIC)
    {
        let mnt = bpffs_mount_for(root);
        if ensure_bpffs(&mnt).map_err(KernelError::sys("mounting bpffs"))? == MountOutcome::Mounted
        {
            tracing::info!(path = %mnt.display(), "mounted bpffs");
            mounted.push(format!("bpffs at {}", mnt.display()));
        }
    }
    for dir in [
        layout.root().to_path_buf(),
        layout.maps_dir(),
        layout.links_dir(),
        layout.progs_dir(),
    ] {
        std::fs::create_dir_all(&dir).map_err(KernelError::io(format!(
            "creating {} (is it on a bpffs mount?)",
            dir.display()
        )))?;
    }
    // Root's alone: the hooks' lock is an flock of this directory, which anyone who may open
    // it could hold to stall every tagging (and a bpffs at /sys/fs/bpf is often 1777).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(layout.root(), std::fs::Permissions::from_mode(0o700)).map_err(
        KernelError::io(format!("making {} root's alone", layout.root().display())),
    )?;
    Ok(())
}

/// Pin `link` at `path`, atomically replacing whatever was pinned there.
pub(crate) fn pin_replace(link: &mut Link, path: &Path) -> Result<()> {
    pin_via_temp(path, |tmp| {
        link.pin(tmp)
            .map_err(KernelError::libbpf(format!("pinning {}", tmp.display())))
    })
}

/// Pin with `pin` at a temporary name beside `path`, then rename it over `path`: a half-made
/// pin is never seen at `path`, and what was there is replaced atomically.
pub(crate) fn pin_via_temp(path: &Path, pin: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    // bpffs refuses names with dots (reserved for its own files such as maps.debug).
    let mut tmp = path.to_path_buf();
    tmp.set_file_name(format!(
        "new-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let _ = std::fs::remove_file(&tmp);
    pin(&tmp)?;
    std::fs::rename(&tmp, path).map_err(KernelError::io(format!(
        "renaming {} over {}",
        tmp.display(),
        path.display()
    )))
}

/// Load (or upgrade) the kernel side and pin it under `layout`.
pub fn load(layout: &PinLayout) -> Result<LoadReport> {
    let mut mounted = Vec::new();
    prepare_fs(layout, &mut mounted)?;
    let reused_state = MAPS.iter().any(|m| layout.map(m).exists());
    // The ownership map of an older version (preallocated, 1 << 18 entries): carried over.
    let migration = migrate::begin(&layout.map("obj_owner"), OBJ_OWNER)?;
    // Tagging waits while the programs are swapped: no task is tagged for the old programs
    // after the new ones were pinned.
    let hook_lock = crate::hooks::HookLock::take(layout)?;
    let (programs, migration) = match load_main(layout, &hook_lock) {
        Ok(p) => (p, migration),
        Err(e) => {
            if let Some(m) = migration {
                if let Err(a) = m.abort() {
                    tracing::error!("putting the old ownership map back: {a}");
                }
            }
            return Err(e);
        }
    };
    // The optional layer: never fails the load.
    let lsm = match lsm::load(layout) {
        Ok(r) => r.status,
        Err(e) => LsmStatus::Unavailable {
            reason: e.to_string(),
        },
    };
    match &lsm {
        LsmStatus::Active { hooks } => {
            tracing::info!(hooks = %hooks.join(","), "BPF LSM layer active")
        }
        LsmStatus::Unavailable { reason } => tracing::info!(%reason, "BPF LSM layer unavailable"),
    }
    // Both objects' old programs (which wrote the old map) are replaced now.
    if let Some(m) = migration {
        m.finish()?;
    }
    // Tasks tagged, cgroups bound (by an earlier bpfnsd, or before an unload and load), or
    // merely namespaces that may have members (a walk of the tasks can miss one that moves
    // pids meanwhile): the hooks go on watching them.
    let kernel = crate::Kernel::open(layout)?;
    if crate::hooks::namespaces_exist(&kernel)? || crate::hooks::needed(&kernel)? {
        crate::hooks::attach_locked(layout, &hook_lock)?;
    }
    drop(hook_lock);
    Ok(LoadReport {
        pin_root: layout.root().to_path_buf(),
        mounted,
        reused_state,
        programs,
        lsm,
    })
}

/// Load the main object into the kernel — the verifier checks every program against the
/// running kernel — and drop it again: nothing is pinned, attached or mounted, and no pinned
/// state is touched (its maps are fresh and go with it). What `bpfnsd --check` asks of the
/// kernel side.
pub fn verify() -> Result<Vec<String>> {
    let mut storage = MaybeUninit::uninit();
    let open = BpfnsSkelBuilder::default()
        .open(&mut storage)
        .map_err(KernelError::libbpf("opening the BPF object"))?;
    let skel = open.load().map_err(KernelError::libbpf(
        "loading the BPF programs (the verifier refused them)",
    ))?;
    let names = skel
        .object()
        .progs()
        .map(|p| p.name().to_string_lossy().into_owned())
        .collect();
    Ok(names)
}

/// The ownership map's definition (`obj_owner` in `bpf/maps.bpf.h`).
pub(crate) const OBJ_OWNER: migrate::Want = migrate::Want {
    name: "obj_owner",
    max_entries: crate::abi::OWNERSHIP_CAPACITY,
    map_flags: migrate::BPF_F_NO_PREALLOC,
};

/// Load the main object, attach its programs and pin their links over the old ones. The
/// on-demand hooks' programs are pinned, and attached only where an old link was (the caller
/// attaches them where they have work).
fn load_main(layout: &PinLayout, _hooks: &crate::hooks::HookLock) -> Result<Vec<(String, u32)>> {
    let mut storage = MaybeUninit::uninit();
    let mut open = BpfnsSkelBuilder::default()
        .open(&mut storage)
        .map_err(KernelError::libbpf("opening the BPF object"))?;
    for mut map in open.open_object_mut().maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if MAPS.contains(&name.as_str()) {
            map.set_pin_path(layout.map(&name))
                .map_err(KernelError::libbpf(format!("setting pin path of {name}")))?;
        }
    }
    let skel = open.load().map_err(KernelError::libbpf(
        "loading the BPF programs (a pinned map from an incompatible bpfns version makes this fail: \
         run `bpfns kernel unload` first)",
    ))?;

    let progs = [
        ("on_sys_exit", &skel.progs.on_sys_exit),
        ("on_fork", &skel.progs.on_fork),
        ("on_exec", &skel.progs.on_exec),
        ("on_cgroup_attach", &skel.progs.on_cgroup_attach),
        ("iter_maps", &skel.progs.iter_maps),
        ("iter_progs", &skel.progs.iter_progs),
        ("iter_links", &skel.progs.iter_links),
        ("iter_tasks", &skel.progs.iter_tasks),
    ];
    debug_assert_eq!(progs.len(), LINKS.len());
    let mut programs = Vec::new();
    for (name, prog) in progs {
        let id = bpfns_sys::bpf::info::<bpfns_sys::bpf::bpf_prog_info>(prog)
            .map(|i| i.id)
            .unwrap_or(0);
        if ON_DEMAND.contains(&name) {
            let pin = layout.prog(name);
            let tmp = layout.prog(&format!("new-{name}"));
            let _ = std::fs::remove_file(&tmp);
            bpfns_sys::bpf::obj_pin(prog, &tmp)
                .map_err(KernelError::sys(format!("pinning {}", tmp.display())))?;
            std::fs::rename(&tmp, &pin).map_err(KernelError::io(format!(
                "renaming {} over {}",
                tmp.display(),
                pin.display()
            )))?;
            programs.push((name.to_string(), id));
            if !layout.link(name).exists() {
                continue;
            }
        }
        let mut link = prog
            .attach()
            .map_err(KernelError::libbpf(format!("attaching {name}")))?;
        pin_replace(&mut link, &layout.link(name))?;
        if !ON_DEMAND.contains(&name) {
            programs.push((name.to_string(), id));
        }
    }
    // Task iterators: pinned as programs, a link made per read.
    let [name] = TASK_ITERATORS;
    let prog = &skel.progs.iter_peer_files;
    pin_via_temp(&layout.prog(name), |tmp| {
        bpfns_sys::bpf::obj_pin(prog, tmp)
            .map_err(KernelError::sys(format!("pinning {}", tmp.display())))
    })?;
    let id = bpfns_sys::bpf::info::<bpfns_sys::bpf::bpf_prog_info>(prog)
        .map(|i| i.id)
        .unwrap_or(0);
    programs.push((name.to_string(), id));
    // The pins keep maps, links and programs alive; `skel` may now be dropped.
    drop(skel);
    Ok(programs)
}

/// What an unload removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnloadReport {
    pub removed: Vec<PathBuf>,
}

/// Detach everything and remove every pin under `layout` (links, programs, maps). Idempotent.
///
/// Links go first so that no program runs against maps being torn down. This includes the BPF
/// LSM layer's pins (`links/lsm_*`, `maps/lsm_objects`): everything under `links/` and `maps/`.
pub fn unload(layout: &PinLayout) -> Result<UnloadReport> {
    let mut report = UnloadReport::default();
    for dir in [layout.links_dir(), layout.progs_dir(), layout.maps_dir()] {
        // A running bpfnsd (a forced unload) may pin a hook's link again meanwhile (it
        // attaches the syscall hooks where namespaces need them): what appears is removed in
        // the next pass.
        let mut passes = 0;
        loop {
            passes += 1;
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(KernelError::io(format!("reading {}", dir.display()))(e)),
            };
            for entry in entries {
                let path = entry
                    .map_err(KernelError::io(format!("reading {}", dir.display())))?
                    .path();
                match std::fs::remove_file(&path) {
                    Ok(()) => report.removed.push(path),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(KernelError::io(format!("removing {}", path.display()))(e))
                    }
                }
            }
            match std::fs::remove_dir(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && passes < 10 => {}
                _ => break,
            }
        }
        remove_dir_if_exists(&dir)?;
    }
    remove_dir_if_exists(layout.root())?;
    Ok(report)
}

fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(KernelError::io(format!(
            "removing {} (something else is pinned there?)",
            dir.display()
        ))(e)),
    }
}

/// Is a complete kernel side pinned under `layout`? (The on-demand hooks' programs pinned,
/// every other program attached.)
pub fn is_loaded(layout: &PinLayout) -> bool {
    MAPS.iter().all(|m| layout.map(m).exists())
        && LINKS.iter().all(|l| {
            if ON_DEMAND.contains(l) {
                layout.prog(l).exists()
            } else {
                layout.link(l).exists()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Rust mirrors of `bpfns.h`'s capacities are the compiled object's (opening a
    /// skeleton parses the ELF only: no privilege needed).
    #[test]
    fn map_capacities_match_the_bpf_object() {
        let mut storage = MaybeUninit::uninit();
        let open = BpfnsSkelBuilder::default().open(&mut storage).unwrap();
        let size = |name: &str| {
            open.open_object()
                .maps()
                .find(|m| m.name() == name)
                .unwrap_or_else(|| panic!("no map {name}"))
                .max_entries()
        };
        assert_eq!(size("obj_owner"), crate::abi::OWNERSHIP_CAPACITY);
        assert_eq!(size("peer_query"), crate::abi::PEER_QUERIES);
        for m in [
            "ns_table",
            "quota_kernel",
            "quota_daemon",
            "ns_policy",
            "kquota_kernel",
            "kquota_daemon",
        ] {
            assert_eq!(size(m), crate::abi::NS_CAPACITY, "{m}");
        }
        assert_eq!(size("cgroup_ns"), crate::abi::CGROUP_CAPACITY);
    }
}
