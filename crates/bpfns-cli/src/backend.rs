//! Where the commands get their answers.
//!
//! The object commands ask bpfnsd when it answers on the socket (each caller sees what it may),
//! else read the pinned kernel side directly, as host root ([`Direct`]); both implement
//! [`Backend`], so the command code does not care which.

use std::path::Path;

use anyhow::{bail, Context, Result};
use bpfns_kernel::layout::{DEFAULT_PIN_ROOT, LINKS, MAPS, ON_DEMAND};
use bpfns_kernel::{loader, Kernel, OwnedObject, PinLayout};
use bpfns_model::{NsId, ObjectKind};

use crate::cli::NsFilter;
use crate::error::{CliError, Code};
use crate::objects::ObjectView;

/// The questions the object commands ask.
pub trait Backend {
    /// Every object of `kind` the caller may see (of a namespace, with `filter`), with its
    /// owner, sorted by id.
    fn list(&self, kind: ObjectKind, filter: &NsFilter) -> Result<Vec<ObjectView>>;
    /// [`Backend::list`] for `-j`: the JSON array of the listing, when the backend has it
    /// as printed and no object has one of `decoded_keys`; otherwise (`Err`) the objects, as
    /// `list` gives them.
    fn list_json(
        &self,
        kind: ObjectKind,
        filter: &NsFilter,
        decoded_keys: &[&str],
    ) -> Result<Result<Vec<u8>, Vec<ObjectView>>> {
        let _ = decoded_keys;
        self.list(kind, filter).map(Err)
    }
    /// Object `id` of `kind`; not found when the caller may not see it.
    fn show(&self, kind: ObjectKind, id: u32) -> Result<ObjectView>;
    /// A file descriptor for object `id` of `kind` (read-only, for a map, if `read_only`).
    fn open(&self, kind: ObjectKind, id: u32, read_only: bool) -> Result<std::os::fd::OwnedFd>;
}

/// bpfnsd, through its socket: namespace path names, and only what the caller may see.
#[derive(Debug)]
pub struct DaemonBackend {
    pub socket: std::path::PathBuf,
    /// The connection [`choose`] made to see that bpfnsd answers, used by the first request
    /// (each connection costs bpfnsd an identification of the caller).
    first: std::cell::RefCell<Option<bpfns_client::Client>>,
}

impl DaemonBackend {
    pub fn client(&self) -> Result<bpfns_client::Client> {
        if let Some(c) = self.first.borrow_mut().take() {
            return Ok(c);
        }
        Ok(bpfns_client::Client::connect(&self.socket)?)
    }
}

impl Backend for DaemonBackend {
    fn list(&self, kind: ObjectKind, filter: &NsFilter) -> Result<Vec<ObjectView>> {
        let ns = filter.namespace.as_deref();
        let objects = self
            .client()?
            .list_in(kind, ns, filter.recursive)
            .with_context(|| format!("listing {kind}s"))?;
        Ok(sorted_views(objects))
    }

    fn list_json(
        &self,
        kind: ObjectKind,
        filter: &NsFilter,
        decoded_keys: &[&str],
    ) -> Result<Result<Vec<u8>, Vec<ObjectView>>> {
        let ns = filter.namespace.as_deref();
        let listed = self
            .client()?
            .list_json(kind, ns, filter.recursive, decoded_keys)
            .with_context(|| format!("listing {kind}s"))?;
        Ok(match listed {
            bpfns_client::ListingJson::Array(a) => Ok(a),
            bpfns_client::ListingJson::Objects(objects) => Err(sorted_views(objects)),
        })
    }

    fn show(&self, kind: ObjectKind, id: u32) -> Result<ObjectView> {
        Ok(ObjectView::from_info(self.client()?.show(kind, id)?))
    }

    fn open(&self, kind: ObjectKind, id: u32, read_only: bool) -> Result<std::os::fd::OwnedFd> {
        Ok(self.client()?.get_fd_opts(kind, id, read_only, None)?)
    }
}

fn sorted_views(objects: Vec<bpfns_proto::ObjectInfo>) -> Vec<ObjectView> {
    let mut v: Vec<ObjectView> = objects.into_iter().map(ObjectView::from_info).collect();
    v.sort_by_key(|o| o.id);
    v
}

/// Where object commands get their answers: bpfnsd when it answers on `socket`; otherwise,
/// for host root, the pinned kernel side directly (owners then show as namespace ids).
pub fn choose(socket: &Path, direct: &Direct) -> Result<Box<dyn Backend>> {
    match bpfns_client::Client::connect(socket) {
        Ok(c) => Ok(Box::new(DaemonBackend {
            socket: socket.to_path_buf(),
            first: std::cell::RefCell::new(Some(c)),
        })),
        Err(e) => {
            if have_sys_admin() && loader::is_loaded(direct.layout()) {
                tracing::warn!(
                    "bpfnsd does not answer at {} ({e}); reading the kernel side directly \
                     (namespaces show as ids)",
                    socket.display()
                );
                Ok(Box::new(direct.clone()))
            } else if have_sys_admin() {
                Err(CliError::new(
                    Code::Unavailable,
                    format!(
                        "bpfnsd does not answer at {} ({e}), and the kernel side is not loaded \
                         at {}: start bpfnsd, or run `{}` to read the kernel side directly",
                        socket.display(),
                        direct.layout().root().display(),
                        load_command(direct.layout().root())
                    ),
                )
                .into())
            } else {
                Err(e.into())
            }
        }
    }
}

/// The kernel side, read directly through its pins.
#[derive(Debug, Clone)]
pub struct Direct {
    layout: PinLayout,
}

impl Direct {
    pub fn new(layout: PinLayout) -> Self {
        Self { layout }
    }

    pub fn layout(&self) -> &PinLayout {
        &self.layout
    }

    /// Open the pinned kernel side, with an error that says how to load it.
    pub fn kernel(&self) -> Result<Kernel> {
        require_root()?;
        if !loader::is_loaded(&self.layout) {
            bail!(
                "the kernel side is not loaded at {}: run `{}`",
                self.layout.root().display(),
                load_command(self.layout.root())
            );
        }
        Kernel::open(&self.layout).with_context(|| {
            format!(
                "opening the kernel side at {} (if it is from another bpfns version: \
                 `bpfns kernel unload` then `bpfns kernel load`)",
                self.layout.root().display()
            )
        })
    }

    /// The namespace ids `filter` keeps (`None`: all). Without bpfnsd namespaces have no
    /// paths: `/` and `ns:ID` (as listed) name them, and the kernel's table gives the tree.
    fn wanted(&self, kernel: &Kernel, filter: &NsFilter) -> Result<Option<Vec<NsId>>> {
        let Some(name) = filter.namespace.as_deref() else {
            return Ok(None);
        };
        let top = match name {
            "/" => NsId::ROOT,
            _ => match name.strip_prefix("ns:").and_then(|n| n.parse().ok()) {
                Some(n) => NsId(n),
                None => {
                    return Err(CliError::usage(format!(
                        "bpfnsd does not answer, and without it namespaces are known by id \
                         only: --namespace / or --namespace ns:ID (as `bpfns KIND list` shows \
                         them), not {name}"
                    ))
                    .into())
                }
            },
        };
        let mut ids = vec![top];
        if filter.recursive {
            let table = kernel.namespaces().context("reading the namespace table")?;
            let mut i = 0;
            while i < ids.len() {
                let parent = ids[i];
                ids.extend(
                    table
                        .iter()
                        .filter(|(_, p, _)| *p == parent)
                        .map(|(id, _, _)| *id),
                );
                i += 1;
            }
        }
        Ok(Some(ids))
    }
}

impl Backend for Direct {
    fn list(&self, kind: ObjectKind, filter: &NsFilter) -> Result<Vec<ObjectView>> {
        let kernel = self.kernel()?;
        let wanted = self.wanted(&kernel, filter)?;
        let mut v: Vec<OwnedObject> = kernel
            .list(kind)
            .with_context(|| format!("listing {kind}s with their owners"))?;
        if let Some(w) = wanted {
            v.retain(|o| w.contains(&o.owner));
        }
        v.sort_by_key(|o| o.id);
        bpfns_kernel::fill_details(&mut v);
        let boot = bpfns_kernel::boot_time();
        Ok(v.into_iter()
            .map(|o| ObjectView::from_kernel(o, boot))
            .collect())
    }

    fn show(&self, kind: ObjectKind, id: u32) -> Result<ObjectView> {
        let kernel = self.kernel()?;
        let mut v: Vec<OwnedObject> = kernel
            .list(kind)
            .with_context(|| format!("listing {kind}s with their owners"))?;
        v.retain(|o| o.id == id);
        bpfns_kernel::fill_details(&mut v);
        v.pop()
            .map(|o| ObjectView::from_kernel(o, bpfns_kernel::boot_time()))
            .ok_or_else(|| {
                CliError::not_found(format!(
                    "no {kind} with id {id} (list them with `bpfns {kind} list`)"
                ))
                .into()
            })
    }

    fn open(&self, kind: ObjectKind, id: u32, read_only: bool) -> Result<std::os::fd::OwnedFd> {
        require_root()?;
        if read_only && kind == ObjectKind::Map {
            bpfns_sys::bpf::map_fd_by_id_rdonly(id)
        } else {
            bpfns_sys::bpf::fd_by_id(kind, id)
        }
        .with_context(|| format!("opening {kind} {id}"))
    }
}

/// What is pinned under a pin root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinState {
    Loaded,
    NotLoaded,
    /// Some pins are there, some are missing (listed).
    Partial(Vec<String>),
}

/// Inspect the pins under `layout`.
pub fn pin_state(layout: &PinLayout) -> PinState {
    if loader::is_loaded(layout) {
        return PinState::Loaded;
    }
    let mut missing = Vec::new();
    let mut present = 0;
    for m in MAPS {
        if layout.map(m).exists() {
            present += 1;
        } else {
            missing.push(format!("maps/{m}"));
        }
    }
    for l in LINKS {
        // The syscall hooks are attached only while needed: their programs are pinned.
        let (path, name) = if ON_DEMAND.contains(&l) {
            (layout.prog(l), format!("progs/{l}"))
        } else {
            (layout.link(l), format!("links/{l}"))
        };
        if path.exists() {
            present += 1;
        } else {
            missing.push(name);
        }
    }
    if present == 0 {
        PinState::NotLoaded
    } else {
        PinState::Partial(missing)
    }
}

/// `bpfns kernel load`, with `--pin-root` when the root is not the default.
pub fn load_command(root: &Path) -> String {
    format!("bpfns kernel load{}", pin_root_flag(root))
}

/// ` --pin-root ROOT` unless `root` is the default, for commands printed as advice.
pub fn pin_root_flag(root: &Path) -> String {
    if root == Path::new(DEFAULT_PIN_ROOT) {
        String::new()
    } else {
        format!(" --pin-root {}", root.display())
    }
}

/// Whether the process holds CAP_SYS_ADMIN in its effective set (root normally does).
pub fn have_sys_admin() -> bool {
    use bpfns_sys::{caps::CapabilitySet, procfs};
    procfs::read_status(std::process::id() as i32)
        .ok()
        .and_then(|s| procfs::caps(&s, "CapEff"))
        .is_some_and(|c| c.contains(CapabilitySet::SYS_ADMIN))
}

/// Fail with a clear message unless the process is privileged enough for the kernel side.
pub fn require_root() -> Result<()> {
    if have_sys_admin() {
        Ok(())
    } else {
        Err(CliError::new(
            Code::DENIED,
            "this command needs root (CAP_SYS_ADMIN and CAP_BPF in the initial user namespace) \
             until bpfnsd serves it: run it as root",
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_names_the_pin_root_only_when_it_is_not_the_default() {
        assert_eq!(
            load_command(Path::new(DEFAULT_PIN_ROOT)),
            "bpfns kernel load"
        );
        assert_eq!(
            load_command(Path::new("/sys/fs/bpf/other")),
            "bpfns kernel load --pin-root /sys/fs/bpf/other"
        );
    }

    #[test]
    fn nothing_pinned_is_not_loaded() {
        let l = PinLayout::new("/nonexistent/bpfns-cli-unit-test");
        assert_eq!(pin_state(&l), PinState::NotLoaded);
    }
}
