//! What is attached while a round measures: nothing, a do-nothing program on `sys_exit`, the
//! kernel side (whole, or without its `sys_exit` program), or another build of it.
//!
//! Every instance lives at its own pin root and is unloaded when its guard drops, also on
//! error, panic or interrupt.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bpfns_kernel::layout::{LINKS, MAPS};
use bpfns_kernel::{loader, Kernel, PinLayout};
use bpfns_model::{NsId, ObjectKind};
use bpfns_sys::bpf;

/// Programs whose presence changes what a syscall or a fork costs: bpfns's hooks (from any
/// instance, ours or another) and the do-nothing `sys_exit` program.
pub const HOOK_NAMES: [&str; 3] = ["on_sys_exit", "on_fork", NOP_NAME];
const NOP_NAME: &str = "bpfns_bench_nop";

const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;

/// What to attach for a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setup {
    /// Nothing: the baseline.
    None,
    /// Nothing again, as its own condition: an A/A control that shows the noise floor.
    Control,
    /// `r0 = 0; exit` on the `sys_exit` raw tracepoint: what any `sys_exit` program costs.
    Nop,
    /// The kernel side as built into this binary, with its syscall hooks attached (as they are
    /// while some task on the host is a namespace member).
    Full,
    /// The kernel side as built into this binary with no namespace member on the host: as the
    /// loader leaves it, its syscall hooks detached (checked).
    Idle,
    /// The kernel side with its `sys_exit` link removed (on_fork and the iterators stay).
    NoSysExit,
    /// Another build of the kernel side (a `.bpf.o` with the same maps), e.g. a candidate
    /// optimisation; every program in it is attached.
    Object(PathBuf),
}

impl Setup {
    pub fn label(&self) -> String {
        match self {
            Setup::None => "not loaded".into(),
            Setup::Control => "not loaded (A/A control)".into(),
            Setup::Nop => "empty sys_exit prog".into(),
            Setup::Full => "loaded".into(),
            Setup::Idle => "loaded, no members".into(),
            Setup::NoSysExit => "loaded w/o sys_exit prog".into(),
            Setup::Object(p) => format!(
                "loaded {}",
                p.file_name().map_or_else(
                    || p.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                )
            ),
        }
    }

    /// Whether the setup has tagged conditions too (`Idle` is, by definition, without
    /// members).
    pub fn has_kernel(&self) -> bool {
        matches!(self, Setup::Full | Setup::NoSysExit | Setup::Object(_))
    }
}

/// Mount bpffs at `/sys/fs/bpf` unless it is there (and say so when it was not).
pub fn ensure_host_bpffs() -> Result<()> {
    let at = Path::new("/sys/fs/bpf");
    match bpfns_sys::fs::ensure_bpffs(at) {
        Ok(bpfns_sys::fs::MountOutcome::Mounted) => {
            eprintln!("bpfns-bench: mounted bpffs at {}", at.display());
            Ok(())
        }
        Ok(bpfns_sys::fs::MountOutcome::AlreadyMounted) => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "no bpffs at {} and mounting one failed ({e}); mount it with `mount -t bpf bpf {}`",
            at.display(),
            at.display()
        )),
    }
}

/// The pin root for this run: `/sys/fs/bpf/bpfns-bench-<pid>`.
pub fn pin_layout() -> PinLayout {
    PinLayout::new(format!("/sys/fs/bpf/bpfns-bench-{}", std::process::id()))
}

/// Unload instances left by earlier runs of this benchmark that died without cleaning up
/// (their pid is gone). Returns the roots removed.
pub fn remove_stale_instances() -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/fs/bpf") else {
        return removed;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("bpfns-bench-") else {
            continue;
        };
        // `<pid>`, `<pid>-v<n>` (--object builds) or `<pid>-daemon` (`bpfns-bench daemon`).
        let Ok(pid) = rest.split('-').next().unwrap_or_default().parse::<u32>() else {
            continue;
        };
        let alive = crate::daemon::alive(pid);
        if !alive && loader::unload(&PinLayout::new(e.path())).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

/// An attached setup; detached and unpinned on drop.
#[derive(Debug)]
pub struct Active {
    layout: Option<PinLayout>,
    kernel: Option<Kernel>,
    /// Ids of the hook programs this setup attached.
    hooks: BTreeSet<u32>,
    /// Program ids by program name (kernel-side setups).
    programs: Vec<(String, u32)>,
    _nop: Option<(OwnedFd, OwnedFd)>,
}

impl Active {
    pub fn bring_up(setup: &Setup, layout: &PinLayout) -> Result<Self> {
        let mut active = Self {
            layout: None,
            kernel: None,
            hooks: BTreeSet::new(),
            programs: Vec::new(),
            _nop: None,
        };
        match setup {
            Setup::None | Setup::Control => {}
            Setup::Nop => {
                let prog = bpf::prog_load(
                    BPF_PROG_TYPE_RAW_TRACEPOINT,
                    NOP_NAME,
                    &bpf::RETURN_ZERO,
                    bpf::ProgLoadOpts::default(),
                )?;
                let id = bpf::info::<bpf::bpf_prog_info>(&prog)?.id;
                let link = bpf::raw_tracepoint_open("sys_exit", &prog)?;
                active.hooks.insert(id);
                active._nop = Some((prog, link));
            }
            Setup::Full | Setup::Idle | Setup::NoSysExit | Setup::Object(_) => {
                let _ = loader::unload(layout);
                // From here on, drop unloads whatever got pinned.
                active.layout = Some(layout.clone());
                active.programs = match setup {
                    Setup::Object(path) => load_object(layout, path)?,
                    _ => {
                        loader::load(layout)
                            .context("loading the kernel side")?
                            .programs
                    }
                };
                // The loader attaches the syscall hooks only while some task is tagged or some
                // cgroup bound: none here.
                if matches!(setup, Setup::Full | Setup::NoSysExit) {
                    bpfns_kernel::hooks::ensure(layout).context("attaching the syscall hooks")?;
                }
                if *setup == Setup::Idle && !bpfns_kernel::hooks::attached(layout).is_empty() {
                    bail!("the kernel side attached its syscall hooks with no member");
                }
                if *setup == Setup::NoSysExit {
                    let p = layout.link("on_sys_exit");
                    std::fs::remove_file(&p)
                        .with_context(|| format!("removing {}", p.display()))?;
                    active.programs.retain(|(n, _)| n != "on_sys_exit");
                }
                let attached = bpfns_kernel::hooks::attached(layout);
                active.hooks = active
                    .programs
                    .iter()
                    .filter(|(n, _)| {
                        HOOK_NAMES.contains(&n.as_str())
                            && (matches!(setup, Setup::Object(_)) || attached.contains(&n.as_str()))
                    })
                    .map(|(_, id)| *id)
                    .collect();
                // Tagging the worker must not attach the hooks: the setup decides.
                let kernel = Kernel::open(layout)
                    .context("opening the kernel side")?
                    .manual_hooks();
                kernel.ensure_namespace_limit(BENCH_NS, u64::MAX)?;
                kernel.set_namespace(BENCH_NS, NsId::ROOT, 1)?;
                active.kernel = Some(kernel);
            }
        }
        Ok(active)
    }

    pub fn kernel(&self) -> Option<&Kernel> {
        self.kernel.as_ref()
    }

    pub fn hooks(&self) -> &BTreeSet<u32> {
        &self.hooks
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.kernel = None;
        if let Some(layout) = &self.layout {
            if let Err(e) = loader::unload(layout) {
                eprintln!("warning: unloading {}: {e}", layout.root().display());
            }
        }
    }
}

/// One loaded instance of the kernel side (built in, or another build) whose two hooks,
/// `on_sys_exit` and `on_fork`, are detached right after loading so that a [`Rig`] can attach
/// and detach them at will. Its maps and iterators stay pinned; everything is unloaded on drop.
#[derive(Debug)]
pub struct Instance {
    layout: PinLayout,
    kernel: Kernel,
    sys_exit: OwnedFd,
    on_fork: OwnedFd,
    programs: Vec<(String, u32)>,
}

impl Instance {
    /// Load `build` (`None`: the built-in kernel side) at `layout`.
    pub fn load(build: Option<&Path>, layout: &PinLayout) -> Result<Self> {
        let _ = loader::unload(layout);
        let guard = UnloadGuard(Some(layout.clone()));
        let programs = match build {
            Some(path) => load_object(layout, path)?,
            None => {
                loader::load(layout)
                    .context("loading the kernel side")?
                    .programs
            }
        };
        // The rig attaches the hooks: tagging the worker must not.
        let kernel = Kernel::open(layout)
            .context("opening the kernel side")?
            .manual_hooks();
        kernel.ensure_namespace_limit(BENCH_NS, u64::MAX)?;
        kernel.set_namespace(BENCH_NS, NsId::ROOT, 1)?;
        let hook = |name: &str| -> Result<OwnedFd> {
            let id = programs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, id)| *id)
                .with_context(|| format!("the kernel side has no program {name}"))?;
            let fd = bpf::fd_by_id(ObjectKind::Prog, id)?;
            // Detach: the pinned link (if the loader attached it: another build's) was its only
            // reference.
            let pin = layout.link(name);
            match std::fs::remove_file(&pin) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", pin.display())),
            }
            Ok(fd)
        };
        let sys_exit = hook("on_sys_exit")?;
        let on_fork = hook("on_fork")?;
        std::mem::forget(guard);
        Ok(Self {
            layout: layout.clone(),
            kernel,
            sys_exit,
            on_fork,
            programs,
        })
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    pub fn program_id(&self, name: &str) -> Option<u32> {
        self.programs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Err(e) = loader::unload(&self.layout) {
            eprintln!("warning: unloading {}: {e}", self.layout.root().display());
        }
    }
}

struct UnloadGuard(Option<PinLayout>);

impl Drop for UnloadGuard {
    fn drop(&mut self) {
        if let Some(l) = self.0.take() {
            let _ = loader::unload(&l);
        }
    }
}

/// A hook the rig can attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Hook {
    /// `on_sys_exit` of instance `i`.
    SysExit(usize),
    /// `on_fork` of instance `i`.
    Fork(usize),
    /// The do-nothing `sys_exit` program.
    Nop,
}

/// Every setup loaded once; switching between them attaches and detaches hooks (fast enough to
/// alternate every millisecond, which is what beats the noise of a shared 2-CPU machine).
/// "Not loaded" is every hook detached: the kernel side's maps and iterators stay in memory,
/// but nothing of it runs on any path a syscall or a fork takes.
#[derive(Debug)]
pub struct Rig {
    /// Instance 0 is the built-in kernel side; then one per `--object`.
    instances: Vec<(Option<PathBuf>, Instance)>,
    nop: OwnedFd,
    nop_id: u32,
    attached: BTreeMap<Hook, OwnedFd>,
    /// Every program id of ours that carries a hook name.
    ours: BTreeSet<u32>,
}

impl Rig {
    pub fn load(objects: &[PathBuf], layout: &PinLayout) -> Result<Self> {
        let mut instances = vec![(None, Instance::load(None, layout)?)];
        for (i, path) in objects.iter().enumerate() {
            let l = PinLayout::new(format!("{}-v{}", layout.root().display(), i + 1));
            instances.push((Some(path.clone()), Instance::load(Some(path), &l)?));
        }
        let nop = bpf::prog_load(
            BPF_PROG_TYPE_RAW_TRACEPOINT,
            NOP_NAME,
            &bpf::RETURN_ZERO,
            bpf::ProgLoadOpts::default(),
        )?;
        let nop_id = bpf::info::<bpf::bpf_prog_info>(&nop)?.id;
        let mut ours: BTreeSet<u32> = instances
            .iter()
            .flat_map(|(_, inst)| inst.programs.iter().map(|(_, id)| *id))
            .collect();
        ours.insert(nop_id);
        Ok(Self {
            instances,
            nop,
            nop_id,
            attached: BTreeMap::new(),
            ours,
        })
    }

    fn instance_of(&self, setup: &Setup) -> Option<usize> {
        match setup {
            Setup::Full | Setup::Idle | Setup::NoSysExit => Some(0),
            Setup::Object(p) => self
                .instances
                .iter()
                .position(|(q, _)| q.as_deref() == Some(p.as_path())),
            Setup::None | Setup::Control | Setup::Nop => None,
        }
    }

    fn hooks(&self, setup: &Setup) -> Result<Vec<Hook>> {
        Ok(match setup {
            Setup::None | Setup::Control | Setup::Idle => vec![],
            Setup::Nop => vec![Hook::Nop],
            Setup::NoSysExit => vec![Hook::Fork(0)],
            Setup::Full | Setup::Object(_) => {
                let i = self
                    .instance_of(setup)
                    .with_context(|| format!("{} is not loaded", setup.label()))?;
                vec![Hook::SysExit(i), Hook::Fork(i)]
            }
        })
    }

    /// Attach exactly the hooks of `setup`; its kernel side, if it has one.
    pub fn apply(&mut self, setup: &Setup) -> Result<Option<&Kernel>> {
        let want = self.hooks(setup)?;
        self.attached.retain(|h, _| want.contains(h));
        for h in want {
            if self.attached.contains_key(&h) {
                continue;
            }
            let link = match h {
                Hook::SysExit(i) => bpf::attach_tp_btf(&self.instances[i].1.sys_exit)?,
                Hook::Fork(i) => bpf::attach_tp_btf(&self.instances[i].1.on_fork)?,
                Hook::Nop => bpf::raw_tracepoint_open("sys_exit", &self.nop)?,
            };
            self.attached.insert(h, link);
        }
        if *setup == Setup::Idle && !self.instances[0].1.kernel.hooks_attached().is_empty() {
            bail!("the kernel side attached its syscall hooks with no member");
        }
        Ok(self.instance_of(setup).map(|i| &self.instances[i].1.kernel))
    }

    /// The built-in instance.
    pub fn builtin(&self) -> &Instance {
        &self.instances[0].1
    }

    /// The instance `setup` runs, if any.
    pub fn instance(&self, setup: &Setup) -> Option<&Instance> {
        self.instance_of(setup).map(|i| &self.instances[i].1)
    }

    pub fn nop_id(&self) -> u32 {
        self.nop_id
    }

    /// Hook programs attached on the host that are not ours (another bpfns instance, e.g. a
    /// test run): while there are any, measurements are disturbed.
    pub fn foreign_hooks(&self) -> Result<Vec<(u32, String)>> {
        Ok(hook_programs()?
            .into_iter()
            .filter(|(id, _)| !self.ours.contains(id))
            .collect())
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Detach before the instances unload.
        self.attached.clear();
    }
}

/// The namespace the worker is tagged into for the tagged conditions.
pub const BENCH_NS: NsId = NsId(1);

/// Load every program of the object file at `path`, pinning the state maps and links
/// where [`Kernel::open`] expects them.
fn load_object(layout: &PinLayout, path: &Path) -> Result<Vec<(String, u32)>> {
    for dir in [layout.maps_dir(), layout.links_dir()] {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut open = libbpf_rs::ObjectBuilder::default()
        .open_file(path)
        .with_context(|| format!("opening {}", path.display()))?;
    for mut map in open.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if MAPS.contains(&name.as_str()) {
            map.set_pin_path(layout.map(&name))?;
        }
    }
    let obj = open
        .load()
        .with_context(|| format!("loading {}", path.display()))?;
    let mut programs = Vec::new();
    for prog in obj.progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        let mut link = prog
            .attach()
            .with_context(|| format!("attaching {name} of {}", path.display()))?;
        link.pin(layout.link(&name))
            .with_context(|| format!("pinning {name}"))?;
        programs.push((name, bpf::info::<bpf::bpf_prog_info>(&prog)?.id));
    }
    for l in LINKS {
        if !layout.link(l).exists() {
            eprintln!("note: {} has no program {l}", path.display());
        }
    }
    Ok(programs)
}

/// `(id, name)` of every hook program now attached (through a link), ours or not. A hook
/// program that is loaded but not attached costs nothing.
pub fn hook_programs() -> Result<Vec<(u32, String)>> {
    let mut progs = BTreeSet::new();
    for id in bpf::all_ids(ObjectKind::Link)? {
        // Links come and go meanwhile.
        let Ok(fd) = bpf::fd_by_id(ObjectKind::Link, id) else {
            continue;
        };
        if let Ok(info) = bpf::info::<bpf::bpf_link_info>(&fd) {
            progs.insert(info.prog_id);
        }
    }
    let mut out = Vec::new();
    for id in progs {
        let Ok(fd) = bpf::fd_by_id(ObjectKind::Prog, id) else {
            continue;
        };
        let Ok(info) = bpf::info::<bpf::bpf_prog_info>(&fd) else {
            continue;
        };
        let name: Vec<u8> = info
            .name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        let name = String::from_utf8_lossy(&name).into_owned();
        if HOOK_NAMES.contains(&name.as_str()) {
            out.push((id, name));
        }
    }
    Ok(out)
}

/// Whether exactly `expected` hook programs are attached. Waits up to `wait` for programs being
/// torn down (a detached link is freed asynchronously). `Ok(false)` means others are loaded
/// (another bpfns instance, e.g. a test run): the round is noisy and gets discarded.
pub fn hooks_settled(expected: &BTreeSet<u32>, wait: Duration) -> Result<bool> {
    let start = Instant::now();
    loop {
        let now: BTreeSet<u32> = hook_programs()?.into_iter().map(|(id, _)| id).collect();
        if let Some(missing) = expected.difference(&now).next() {
            bail!("hook program {missing} is no longer loaded");
        }
        if now == *expected {
            return Ok(true);
        }
        if start.elapsed() >= wait {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Wait until none of `ids` is attached any more.
pub fn wait_gone(ids: &BTreeSet<u32>, wait: Duration) -> Result<bool> {
    let start = Instant::now();
    loop {
        let now: BTreeSet<u32> = hook_programs()?.into_iter().map(|(id, _)| id).collect();
        if now.is_disjoint(ids) {
            return Ok(true);
        }
        if start.elapsed() >= wait {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
