//! `bpfns prog|map|link|btf list|show`: BPF objects with their owner namespaces and what the
//! kernel says about them (as much as bpftool shows for the same object).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bpfns_kernel::OwnedObject;
use bpfns_model::{NsId, ObjectKind};
use bpfns_proto::ObjectDetails;
use serde::{Serialize, Serializer};

use crate::backend::Backend;
use crate::cli::{NsFilter, Target as TargetArgs};
use crate::error::CliError;
use crate::output::{Render, Table};

/// The name of a namespace as the CLI prints it.
///
/// Read directly from the kernel side (no bpfnsd answering), namespaces are known by id only:
/// `/` for the root, `quarantine` for quarantined objects, `ns:<id>` for the others; bpfnsd's answers carry path names.
pub fn namespace_label(ns: NsId) -> String {
    if ns.is_root() {
        "/".to_string()
    } else if ns == NsId::QUARANTINE {
        "quarantine".to_string()
    } else {
        format!("ns:{ns}")
    }
}

/// One object, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectView {
    pub id: u32,
    /// Map, program or link type ("hash", "tracing", ...); empty for BTF.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Object name; for links, the attached program's name; for BTF, `vmlinux`, a module's
    /// or empty (a program's).
    pub name: String,
    /// The owner namespace's name (see [`namespace_label`]).
    pub namespace: String,
    /// The owner namespace's id (0 = root).
    pub ns_id: u32,
    /// Links only: the attached program's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prog_id: Option<u32>,
    /// Sizes, flags, tag, attach point...: bpftool's fields, by bpftool's names.
    #[serde(flatten)]
    pub details: ObjectDetails,
    /// Links to a cgroup: its path (found by its id under /sys/fs/cgroup, where visible).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Links to a network device: its name (in this network namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devname: Option<String>,
    /// Programs: where they are attached, as far as the links you may see tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached: Option<Vec<Attachment>>,
}

/// A program's attach point, known from a link to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub link_id: u32,
    /// The link's type (`tracing`, `cgroup`, ...).
    #[serde(rename = "type")]
    pub type_name: String,
    /// Where, in a few words (as the link's ATTACH column says it).
    pub attach: String,
}

impl ObjectView {
    /// An object as bpfnsd describes it.
    pub fn from_info(o: bpfns_proto::ObjectInfo) -> Self {
        Self {
            id: o.id,
            type_name: o.type_name,
            name: o.name,
            namespace: o.namespace,
            ns_id: o.ns_id.get(),
            prog_id: o.prog_id,
            details: o.details,
            cgroup: None,
            devname: None,
            attached: None,
        }
    }

    /// An object as the kernel side lists it; `boot_time` dates programs' loads.
    pub fn from_kernel(o: OwnedObject, boot_time: Option<u64>) -> Self {
        Self {
            details: o.details.to_proto(boot_time),
            id: o.id,
            type_name: o.type_name.into_string(),
            name: o.name.into_string(),
            namespace: namespace_label(o.owner),
            ns_id: o.owner.get(),
            prog_id: o.prog_id,
            cgroup: None,
            devname: None,
            attached: None,
        }
    }
}

/// A column: its header, and the cell of an object.
type Column = (&'static str, fn(&ObjectView) -> String);

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// Seconds since the epoch as an ISO 8601 UTC time (`2025-01-31T12:00:00Z`).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Where a link is attached, in a few words.
fn attach_point(o: &ObjectView) -> String {
    let d = &o.details;
    let how = d.attach_type.clone().unwrap_or_default();
    let with_how = |what: String| {
        if how.is_empty() {
            what
        } else {
            format!("{what} {how}")
        }
    };
    if let Some(id) = d.cgroup_id {
        return with_how(match &o.cgroup {
            Some(p) => format!("cgroup {p}"),
            None => format!("cgroup id {id}"),
        });
    }
    if let Some(ifindex) = d.ifindex {
        return with_how(match &o.devname {
            Some(n) => format!("dev {n}"),
            None => format!("ifindex {ifindex}"),
        });
    }
    if let Some(ino) = d.netns_ino {
        return with_how(format!("netns {ino}"));
    }
    if let Some(tp) = &d.tp_name {
        return format!("tracepoint {tp}");
    }
    if let Some(t) = &d.target_name {
        return format!("iter {t}");
    }
    if let (Some(obj), Some(btf)) = (d.target_obj_id, d.target_btf_id) {
        return with_how(format!("target_obj_id {obj} target_btf_id {btf}"))
            .trim()
            .to_string();
    }
    if let Some(map) = d.map_id {
        return with_how(format!("map {map}"));
    }
    if let (Some(pf), Some(hook)) = (d.pf, d.hooknum) {
        return format!("netfilter pf {pf} hook {hook} prio {}", opt(&d.priority));
    }
    if let Some(n) = d.func_cnt {
        return match d.pid {
            Some(pid) if pid != 0 => format!("{n} functions, pid {pid}"),
            _ => format!("{n} functions"),
        };
    }
    how
}

fn columns(kind: ObjectKind) -> Vec<Column> {
    let mut c: Vec<Column> = vec![("ID", |o| o.id.to_string())];
    match kind {
        ObjectKind::Map => c.extend([
            (
                "TYPE",
                (|o| o.type_name.clone()) as fn(&ObjectView) -> String,
            ),
            ("NAME", |o| o.name.clone()),
            ("KEY", |o| opt(&o.details.bytes_key)),
            ("VALUE", |o| opt(&o.details.bytes_value)),
            ("MAX_ENTRIES", |o| opt(&o.details.max_entries)),
            ("FLAGS", |o| {
                o.details
                    .flags
                    .map(|f| format!("{f:#x}"))
                    .unwrap_or_default()
            }),
            ("BTF", |o| opt(&o.details.btf_id)),
        ]),
        ObjectKind::Prog => c.extend([
            (
                "TYPE",
                (|o| o.type_name.clone()) as fn(&ObjectView) -> String,
            ),
            ("NAME", |o| o.name.clone()),
            ("TAG", |o| opt(&o.details.tag)),
            ("LOADED_AT", |o| {
                o.details.loaded_at.map(utc).unwrap_or_default()
            }),
            ("UID", |o| opt(&o.details.uid)),
            ("XLATED", |o| opt(&o.details.bytes_xlated)),
            ("JITED", |o| opt(&o.details.bytes_jited)),
            ("MEMLOCK", |o| opt(&o.details.bytes_memlock)),
            ("MAPS", |o| {
                o.details
                    .map_ids
                    .as_ref()
                    .map(|ids| ids.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
                    .unwrap_or_default()
            }),
            ("BTF", |o| opt(&o.details.btf_id)),
            ("ATTACHED", |o| {
                o.attached
                    .iter()
                    .flatten()
                    .map(|a| format!("{} (link {})", a.attach, a.link_id))
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
        ]),
        ObjectKind::Link => c.extend([
            (
                "TYPE",
                (|o| o.type_name.clone()) as fn(&ObjectView) -> String,
            ),
            ("PROG", |o| opt(&o.prog_id)),
            ("NAME", |o| o.name.clone()),
            ("ATTACH", attach_point),
        ]),
        ObjectKind::Btf => c.extend([
            ("NAME", (|o| o.name.clone()) as fn(&ObjectView) -> String),
            ("SIZE", |o| opt(&o.details.size)),
            ("KERNEL", |o| match o.details.kernel {
                Some(true) => "yes".to_string(),
                Some(false) => "no".to_string(),
                None => String::new(),
            }),
        ]),
    }
    c.push(("NAMESPACE", |o| o.namespace.clone()));
    c
}

fn table(kind: ObjectKind, objects: &[ObjectView]) -> Table {
    let cols = columns(kind);
    let mut t = Table::new(cols.iter().map(|(h, _)| *h));
    for o in objects {
        t.row(cols.iter().map(|(_, cell)| cell(o)));
    }
    t
}

/// Objects of one kind: a JSON array, a table in text.
#[derive(Debug, Clone)]
pub struct Listing {
    pub kind: ObjectKind,
    pub objects: Vec<ObjectView>,
}

impl Serialize for Listing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.objects.serialize(s)
    }
}

impl Render for Listing {
    fn render_text(&self) -> String {
        table(self.kind, &self.objects).render()
    }
}

/// One object: a JSON object; in text one `field: value` line per column.
#[derive(Debug, Clone)]
pub struct Single {
    pub kind: ObjectKind,
    pub object: ObjectView,
}

impl Serialize for Single {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.object.serialize(s)
    }
}

impl Render for Single {
    fn render_text(&self) -> String {
        let cols = columns(self.kind);
        let width = cols.iter().map(|(h, _)| h.len()).max().unwrap_or(0) + 1;
        let mut out = format!("{} {}\n", self.kind, self.object.id);
        for (h, cell) in cols.iter().skip(1) {
            let v = cell(&self.object);
            let label = format!("{}:", h.to_lowercase());
            out.push_str(&format!(
                "  {label:width$} {}\n",
                if v.is_empty() { "-" } else { &v }
            ));
        }
        out
    }
}

/// An object named on the command line, as bpftool takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Id(u32),
    Pinned(PathBuf),
    Name(String),
    Tag(String),
}

fn invalid(kind: ObjectKind, words: &[String]) -> CliError {
    let mut forms = "ID, id ID, pinned PATH".to_string();
    if matches!(kind, ObjectKind::Map | ObjectKind::Prog) {
        forms.push_str(", name NAME");
    }
    if kind == ObjectKind::Prog {
        forms.push_str(", tag TAG");
    }
    CliError::usage(format!(
        "invalid value '{}' for OBJECT: a {kind} is named by {forms}",
        words.join(" ")
    ))
}

/// Parse OBJECT; `None` when none is given.
pub fn parse_target(kind: ObjectKind, words: &[String]) -> Result<Option<Target>, CliError> {
    let id = |s: &str| s.parse::<u32>().map_err(|_| invalid(kind, words));
    Ok(Some(match words {
        [] => return Ok(None),
        [n] => Target::Id(id(n)?),
        [w, n] if w == "id" => Target::Id(id(n)?),
        [w, p] if w == "pinned" => Target::Pinned(PathBuf::from(p)),
        [w, n] if w == "name" && matches!(kind, ObjectKind::Map | ObjectKind::Prog) => {
            Target::Name(n.clone())
        }
        [w, t] if w == "tag" && kind == ObjectKind::Prog => {
            if t.len() != 16 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(CliError::usage(format!(
                    "invalid tag '{t}': a program's tag is 16 hex digits"
                )));
            }
            Target::Tag(t.to_ascii_lowercase())
        }
        _ => return Err(invalid(kind, words)),
    }))
}

/// Open a pin and check that it is a `kind`: the descriptor and the object's id.
pub fn open_pinned(kind: ObjectKind, path: &Path) -> Result<(OwnedFd, u32)> {
    let fd =
        bpfns_sys::bpf::obj_get(path).with_context(|| format!("opening {}", path.display()))?;
    match bpfns_sys::bpf::fd_kind(&fd) {
        Some(k) if k == kind => {}
        Some(k) => {
            return Err(CliError::usage(format!(
                "{} is a {k}, not a {kind} (`bpfns {k} show pinned {}`)",
                path.display(),
                path.display()
            ))
            .into())
        }
        None => {
            return Err(CliError::usage(format!("{} is not a BPF object", path.display())).into())
        }
    }
    let id = bpfns_sys::bpf::fd_id(&fd, kind)
        .with_context(|| format!("reading the id of {}", path.display()))?;
    Ok((fd, id))
}

/// What a target names: one object (with the descriptor its pin gave, for a pin) or all
/// those with a name or tag.
#[derive(Debug)]
pub enum Resolved {
    One(Box<ObjectView>, Option<OwnedFd>),
    Many(Vec<ObjectView>),
}

/// Find what `target` names.
pub fn resolve(backend: &dyn Backend, kind: ObjectKind, target: &Target) -> Result<Resolved> {
    Ok(match target {
        Target::Id(id) => Resolved::One(Box::new(backend.show(kind, *id)?), None),
        Target::Pinned(path) => {
            let (fd, id) = open_pinned(kind, path)?;
            Resolved::One(Box::new(backend.show(kind, id)?), Some(fd))
        }
        Target::Name(n) | Target::Tag(n) => {
            let by_tag = matches!(target, Target::Tag(_));
            let found: Vec<ObjectView> = backend
                .list(kind, &NsFilter::default())?
                .into_iter()
                .filter(|o| {
                    if by_tag {
                        o.details.tag.as_deref() == Some(n)
                    } else {
                        &o.name == n
                    }
                })
                .collect();
            if found.is_empty() {
                let what = if by_tag { "tag" } else { "name" };
                return Err(CliError::not_found(format!(
                    "no {kind} with {what} {n} is visible to you (list them with `bpfns {kind} list`)"
                ))
                .into());
            }
            Resolved::Many(found)
        }
    })
}

/// The cgroup directories under `root` by id (a cgroup's id is its directory's inode).
fn cgroup_paths(root: &Path) -> HashMap<u64, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(m) = std::fs::metadata(&dir) {
            out.insert(m.ino(), dir.display().to_string());
        }
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    out
}

/// Network device names by index, in this network namespace.
fn devices() -> HashMap<u32, String> {
    let Ok(rd) = std::fs::read_dir("/sys/class/net") else {
        return HashMap::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let index = std::fs::read_to_string(e.path().join("ifindex")).ok()?;
            Some((
                index.trim().parse().ok()?,
                e.file_name().to_string_lossy().into_owned(),
            ))
        })
        .collect()
}

/// Name links' cgroups and devices, where this process can see them (looked up only when a
/// link needs it).
pub fn name_attach_points(objects: &mut [ObjectView]) {
    let mut cgroups = None;
    let mut devs = None;
    for o in objects {
        if let Some(id) = o.details.cgroup_id {
            o.cgroup = cgroups
                .get_or_insert_with(|| cgroup_paths(Path::new("/sys/fs/cgroup")))
                .get(&id)
                .cloned();
        }
        if let Some(ifindex) = o.details.ifindex {
            o.devname = devs.get_or_insert_with(devices).get(&ifindex).cloned();
        }
    }
}

/// Programs' attach points, from the links to them that the caller may see (whatever their
/// namespace): the kernel keeps a program's attachments with its links, not with it.
fn attach_programs(backend: &dyn Backend, programs: &mut [ObjectView]) -> Result<()> {
    if programs.is_empty() {
        return Ok(());
    }
    let mut links = backend.list(ObjectKind::Link, &NsFilter::default())?;
    name_attach_points(&mut links);
    let mut by_prog: HashMap<u32, Vec<Attachment>> = HashMap::new();
    for l in &links {
        if let Some(prog) = l.prog_id {
            by_prog.entry(prog).or_default().push(Attachment {
                link_id: l.id,
                type_name: l.type_name.clone(),
                attach: attach_point(l),
            });
        }
    }
    for p in programs {
        p.attached = by_prog.remove(&p.id);
    }
    Ok(())
}

/// What is said beside an object's own record: links' cgroups and devices by name, programs'
/// attach points.
fn complete(backend: &dyn Backend, kind: ObjectKind, objects: &mut [ObjectView]) -> Result<()> {
    name_attach_points(objects);
    if kind == ObjectKind::Prog {
        attach_programs(backend, objects)?;
    }
    Ok(())
}

/// `bpfns KIND [list]`: every object of `kind` (of a namespace, with `filter`).
pub fn list(backend: &dyn Backend, kind: ObjectKind, filter: &NsFilter) -> Result<Listing> {
    let mut objects = backend.list(kind, filter)?;
    complete(backend, kind, &mut objects)?;
    Ok(Listing { kind, objects })
}

/// `bpfns KIND list -j`: the listing's JSON array. Where no object needs completing (a
/// program's attach points always do; a link's cgroup or a device by name, where the object
/// has one), it is bpfnsd's answer as sent, without decoding and encoding 10 000 objects
/// again.
pub fn list_json(backend: &dyn Backend, kind: ObjectKind, filter: &NsFilter) -> Result<Vec<u8>> {
    if kind == ObjectKind::Prog {
        return Ok(serde_json::to_vec(&list(backend, kind, filter)?)?);
    }
    match backend.list_json(kind, filter, &["cgroup_id", "ifindex"])? {
        Ok(array) => Ok(array),
        Err(mut objects) => {
            complete(backend, kind, &mut objects)?;
            Ok(serde_json::to_vec(&Listing { kind, objects })?)
        }
    }
}

/// What `bpfns KIND show` prints: one object, or a listing.
#[derive(Debug)]
pub enum Shown {
    One(Box<Single>),
    Some(Listing),
}

/// `bpfns KIND show [OBJECT]`.
pub fn show(
    backend: &dyn Backend,
    kind: ObjectKind,
    target: &TargetArgs,
    filter: &NsFilter,
) -> Result<Shown> {
    let Some(target) = parse_target(kind, &target.words)? else {
        return Ok(Shown::Some(list(backend, kind, filter)?));
    };
    if filter.namespace.is_some() {
        return Err(CliError::usage(
            "--namespace filters listings; show names one object (leave OBJECT out to list)",
        )
        .into());
    }
    Ok(match resolve(backend, kind, &target)? {
        Resolved::One(o, _) => {
            let mut v = [*o];
            complete(backend, kind, &mut v)?;
            let [object] = v;
            Shown::One(Box::new(Single { kind, object }))
        }
        Resolved::Many(mut objects) => {
            complete(backend, kind, &mut objects)?;
            Shown::Some(Listing { kind, objects })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{render, Format};

    struct Fake(Vec<OwnedObject>);

    impl Backend for Fake {
        fn list(&self, kind: ObjectKind, _: &NsFilter) -> Result<Vec<ObjectView>> {
            Ok(self
                .0
                .iter()
                .filter(|o| o.kind == kind)
                .cloned()
                .map(|o| ObjectView::from_kernel(o, Some(1_700_000_000)))
                .collect())
        }
        fn show(&self, kind: ObjectKind, id: u32) -> Result<ObjectView> {
            self.list(kind, &NsFilter::default())?
                .into_iter()
                .find(|o| o.id == id)
                .ok_or_else(|| CliError::not_found(format!("no {kind} with id {id}")).into())
        }
        fn open(&self, _: ObjectKind, _: u32, _: bool) -> Result<OwnedFd> {
            anyhow::bail!("no fds in the fake")
        }
    }

    fn obj(kind: ObjectKind, id: u32, owner: u32, ty: &str, name: &str) -> OwnedObject {
        OwnedObject {
            kind,
            id,
            owner: NsId(owner),
            type_name: ty.into(),
            name: name.into(),
            prog_id: (kind == ObjectKind::Link).then_some(id + 100),
            details: bpfns_kernel::Details::None,
        }
    }

    fn fake() -> Fake {
        let mut m = obj(ObjectKind::Map, 17, 4, "array", "clitest");
        m.details = bpfns_kernel::Details::Map(bpfns_kernel::abi::MapDetails {
            key_size: 4,
            value_size: 8,
            max_entries: 16,
            map_flags: 0x400,
            btf_id: 0,
        });
        let mut p = obj(ObjectKind::Prog, 9, 4, "socket_filter", "filter");
        p.details = bpfns_kernel::Details::Prog(bpfns_kernel::abi::ProgDetails {
            tag: [0xa0, 1, 2, 3, 4, 5, 6, 7],
            load_time_ns: 5_000_000_000,
            xlated_len: 16,
            jited_len: 20,
            uid: 0,
            btf_id: 3,
            pages: 1,
            nr_map_ids: 2,
            map_ids: vec![17, 3],
        });
        let mut l = obj(ObjectKind::Link, 5, 0, "cgroup", "on_sys_exit");
        l.details = bpfns_kernel::Details::Link(bpfns_sys::bpf::LinkInfo {
            link_type: 3,
            id: 5,
            prog_id: 105,
            // No cgroup of this machine's: the id stays a number.
            attach: bpfns_sys::bpf::LinkAttach::Cgroup {
                cgroup_id: 0xdead_0000_0001,
                attach_type: 0,
            },
        });
        let mut b = obj(ObjectKind::Btf, 1, 0, "", "vmlinux");
        b.details = bpfns_kernel::Details::Btf(bpfns_sys::bpf::BtfInfo {
            id: 1,
            name: "vmlinux".into(),
            size: 5000,
            kernel: true,
        });
        // The program link 5 attaches (its prog_id is 105).
        let attached = obj(ObjectKind::Prog, 105, 0, "raw_tracepoint", "on_sys_exit");
        Fake(vec![
            obj(ObjectKind::Map, 3, 0, "task_storage", "task_ns"),
            m,
            p,
            attached,
            l,
            b,
        ])
    }

    fn all() -> NsFilter {
        NsFilter::default()
    }

    #[test]
    fn labels_and_times() {
        assert_eq!(namespace_label(NsId::ROOT), "/");
        assert_eq!(namespace_label(NsId(12)), "ns:12");
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_700_000_005), "2023-11-14T22:13:25Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn list_json_shape() {
        let l = list(&fake(), ObjectKind::Map, &all()).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &l).unwrap()).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 2);
        assert_eq!(
            arr[1],
            serde_json::json!({
                "id": 17, "type": "array", "name": "clitest", "namespace": "ns:4", "ns_id": 4,
                "bytes_key": 4, "bytes_value": 8, "max_entries": 16, "flags": 0x400
            })
        );
        assert_eq!(arr[0]["namespace"], "/");
        assert_eq!(arr[0]["ns_id"], 0);
        let p = serde_json::to_value(list(&fake(), ObjectKind::Prog, &all()).unwrap()).unwrap();
        assert_eq!(p[0]["tag"], "a001020304050607");
        assert_eq!(p[0]["loaded_at"], 1_700_000_005u64);
        assert_eq!(p[0]["map_ids"], serde_json::json!([17, 3]));
        assert_eq!(p[0]["bytes_xlated"], 16);
        let b = serde_json::to_value(list(&fake(), ObjectKind::Btf, &all()).unwrap()).unwrap();
        assert_eq!(
            (&b[0]["name"], &b[0]["size"], &b[0]["kernel"]),
            (&"vmlinux".into(), &5000.into(), &true.into())
        );
    }

    #[test]
    fn programs_show_where_their_links_attach_them() {
        let p = serde_json::to_value(list(&fake(), ObjectKind::Prog, &all()).unwrap()).unwrap();
        assert!(p[0].get("attached").is_none(), "{p}");
        assert_eq!(
            p[1]["attached"],
            serde_json::json!([{"link_id": 5, "type": "cgroup", "attach": "cgroup id 244834610708481 cgroup_inet_ingress"}])
        );
        let t = |s: &[&str]| TargetArgs {
            words: s.iter().map(|x| x.to_string()).collect(),
        };
        let Shown::One(one) = show(&fake(), ObjectKind::Prog, &t(&["105"]), &all()).unwrap() else {
            panic!("one");
        };
        let text = one.render_text();
        assert!(
            text.contains(
                "\n  attached:  cgroup id 244834610708481 cgroup_inet_ingress (link 5)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn empty_list_is_an_empty_json_array() {
        let l = list(&Fake(vec![]), ObjectKind::Prog, &all()).unwrap();
        assert_eq!(render(Format::Json, &l).unwrap(), "[]\n");
        assert_eq!(render(Format::PrettyJson, &l).unwrap(), "[]\n");
        assert!(render(Format::Text, &l)
            .unwrap()
            .starts_with("ID  TYPE  NAME  TAG  LOADED_AT"));
    }

    #[test]
    fn list_text_tables() {
        let l = list(&fake(), ObjectKind::Map, &all()).unwrap();
        assert_eq!(
            l.render_text(),
            "ID  TYPE          NAME     KEY  VALUE  MAX_ENTRIES  FLAGS  BTF  NAMESPACE\n\
             3   task_storage  task_ns  -    -      -            -      -    /\n\
             17  array         clitest  4    8      16           0x400  -    ns:4\n"
        );
        let l = list(&fake(), ObjectKind::Link, &all()).unwrap();
        let text = l.render_text();
        assert!(
            text.starts_with("ID  TYPE    PROG  NAME         ATTACH"),
            "{text}"
        );
        assert!(text.contains("cgroup "), "{text}");
        let l = list(&fake(), ObjectKind::Btf, &all()).unwrap();
        assert_eq!(
            l.render_text(),
            "ID  NAME     SIZE  KERNEL  NAMESPACE\n1   vmlinux  5000  yes     /\n"
        );
        let l = list(&fake(), ObjectKind::Prog, &all()).unwrap();
        assert!(
            l.render_text().contains("2023-11-14T22:13:25Z"),
            "{}",
            l.render_text()
        );
    }

    #[test]
    fn links_carry_their_program_in_json() {
        let l = list(&fake(), ObjectKind::Link, &all()).unwrap();
        let v: serde_json::Value = serde_json::to_value(&l).unwrap();
        assert_eq!(v[0]["prog_id"], 105);
        assert_eq!(v[0]["cgroup_id"], 0xdead_0000_0001u64);
        let m: serde_json::Value =
            serde_json::to_value(list(&fake(), ObjectKind::Map, &all()).unwrap()).unwrap();
        assert!(m[0].get("prog_id").is_none());
    }

    #[test]
    fn targets_as_bpftool_takes_them() {
        let w = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let p = |k, s: &[&str]| parse_target(k, &w(s));
        assert_eq!(p(ObjectKind::Map, &[]).unwrap(), None);
        assert_eq!(p(ObjectKind::Map, &["42"]).unwrap(), Some(Target::Id(42)));
        assert_eq!(
            p(ObjectKind::Map, &["id", "42"]).unwrap(),
            Some(Target::Id(42))
        );
        assert_eq!(
            p(ObjectKind::Link, &["pinned", "/sys/fs/bpf/x"]).unwrap(),
            Some(Target::Pinned("/sys/fs/bpf/x".into()))
        );
        assert_eq!(
            p(ObjectKind::Prog, &["tag", "A001020304050607"]).unwrap(),
            Some(Target::Tag("a001020304050607".into()))
        );
        for (k, bad) in [
            (ObjectKind::Map, &["abc"][..]),
            (ObjectKind::Map, &["id", "x"]),
            (ObjectKind::Link, &["name", "x"]),
            (ObjectKind::Map, &["tag", "a001020304050607"]),
            (ObjectKind::Prog, &["tag", "xyz"]),
            (ObjectKind::Map, &["handle", "3"]),
        ] {
            let e = p(k, bad).unwrap_err();
            assert_eq!(e.code, crate::error::Code::USAGE, "{bad:?}");
        }
        assert!(p(ObjectKind::Map, &["abc"])
            .unwrap_err()
            .message
            .contains("invalid value 'abc'"));
    }

    #[test]
    fn show_one_by_id_and_name_and_missing() {
        let t = |s: &[&str]| TargetArgs {
            words: s.iter().map(|x| x.to_string()).collect(),
        };
        let Shown::One(s) = show(&fake(), ObjectKind::Map, &t(&["17"]), &all()).unwrap() else {
            panic!("one");
        };
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(v["name"], "clitest");
        let text = s.render_text();
        assert!(text.starts_with("map 17\n"), "{text}");
        assert!(text.contains("\n  max_entries: 16\n"), "{text}");
        assert!(text.contains("\n  namespace:   ns:4\n"), "{text}");
        let Shown::Some(l) =
            show(&fake(), ObjectKind::Map, &t(&["name", "clitest"]), &all()).unwrap()
        else {
            panic!("by name: a listing");
        };
        assert_eq!(l.objects.len(), 1);
        let e = show(&fake(), ObjectKind::Map, &t(&["5"]), &all()).unwrap_err();
        assert_eq!(crate::error::classify(&e).0, crate::error::Code::NOT_FOUND);
    }
}
