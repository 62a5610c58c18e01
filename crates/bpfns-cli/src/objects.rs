//! `bpfns prog|map|link|btf list|show [ID]`: BPF objects with their owner namespaces.

use anyhow::{bail, Result};
use bpfns_kernel::OwnedObject;
use bpfns_model::{NsId, ObjectKind};
use serde::{Serialize, Serializer};

use crate::backend::Backend;
use crate::output::{emit, Format, Render, Table};

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
    /// Object name; for links, the attached program's name; empty for BTF.
    pub name: String,
    /// The owner namespace's name (see [`namespace_label`]).
    pub namespace: String,
    /// The owner namespace's id (0 = root).
    pub ns_id: u32,
    /// Links only: the attached program's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prog_id: Option<u32>,
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
        }
    }
}

impl From<OwnedObject> for ObjectView {
    fn from(o: OwnedObject) -> Self {
        Self {
            id: o.id,
            type_name: o.type_name,
            name: o.name,
            namespace: namespace_label(o.owner),
            ns_id: o.owner.get(),
            prog_id: o.prog_id,
        }
    }
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

fn table(kind: ObjectKind, objects: &[ObjectView]) -> Table {
    let mut t = if kind == ObjectKind::Link {
        Table::new(["ID", "TYPE", "PROG", "NAME", "NAMESPACE"])
    } else {
        Table::new(["ID", "TYPE", "NAME", "NAMESPACE"])
    };
    for o in objects {
        let mut row = vec![o.id.to_string(), o.type_name.clone()];
        if kind == ObjectKind::Link {
            row.push(o.prog_id.map(|p| p.to_string()).unwrap_or_default());
        }
        row.push(o.name.clone());
        row.push(o.namespace.clone());
        t.row(row);
    }
    t
}

impl Render for Listing {
    fn render_text(&self) -> String {
        table(self.kind, &self.objects).render()
    }
}

/// One object: a JSON object, a one-row table in text.
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
        table(self.kind, std::slice::from_ref(&self.object)).render()
    }
}

/// Every object of `kind`.
pub fn list(backend: &dyn Backend, kind: ObjectKind) -> Result<Listing> {
    Ok(Listing {
        kind,
        objects: backend.list(kind)?,
    })
}

/// The object of `kind` with `id`.
pub fn show(backend: &dyn Backend, kind: ObjectKind, id: u32) -> Result<Single> {
    match backend.list(kind)?.into_iter().find(|o| o.id == id) {
        Some(o) => Ok(Single { kind, object: o }),
        None => bail!("no {kind} with id {id} (list them with `bpfns {kind} list`)"),
    }
}

/// `bpfns KIND [list|show [ID]]`.
pub fn run(backend: &dyn Backend, format: Format, kind: ObjectKind, id: Option<u32>) -> Result<()> {
    match id {
        None => emit(format, &list(backend, kind)?),
        Some(id) => emit(format, &show(backend, kind, id)?),
    }
}

/// One map entry; per-CPU maps have one value per possible CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub key: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<CpuValue>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuValue {
    pub cpu: usize,
    pub value: Vec<String>,
}

/// A map's contents: a JSON array of entries (bpftool's shape); text `key: .. value: ..`.
#[derive(Debug, Clone)]
pub struct Dump(pub Vec<Entry>);

impl Serialize for Dump {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

fn spaced(bytes: &[String]) -> String {
    bytes
        .iter()
        .map(|b| b.trim_start_matches("0x"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Render for Dump {
    fn render_text(&self) -> String {
        let mut out = String::new();
        for e in &self.0 {
            match (&e.value, &e.values) {
                (Some(v), _) => {
                    out.push_str(&format!("key: {}  value: {}\n", spaced(&e.key), spaced(v)))
                }
                (None, Some(vs)) => {
                    out.push_str(&format!("key: {}\n", spaced(&e.key)));
                    for cv in vs {
                        out.push_str(&format!(
                            "  value (CPU {:02}): {}\n",
                            cv.cpu,
                            spaced(&cv.value)
                        ));
                    }
                }
                (None, None) => out.push_str(&format!("key: {}  value: <none>\n", spaced(&e.key))),
            }
        }
        out.push_str(&format!(
            "Found {} element{}\n",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        ));
        out
    }
}

fn hex(bytes: &[u8]) -> Vec<String> {
    bytes.iter().map(|b| format!("0x{b:02x}")).collect()
}

/// Map types whose values have one slot per possible CPU.
fn is_percpu(map_type: u32) -> bool {
    // PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH, PERCPU_CGROUP_STORAGE
    matches!(map_type, 5 | 6 | 10 | 21)
}

/// `bpfns map dump ID`: every key and value, through an fd the backend opens (bpfnsd's FD
/// broker, so only visible maps can be dumped).
pub fn dump(backend: &dyn Backend, kind: ObjectKind, id: u32) -> Result<Dump> {
    if kind != ObjectKind::Map {
        bail!("only maps can be dumped (`bpfns map dump ID`)");
    }
    let fd = backend.open(kind, id)?;
    let info: bpfns_sys::bpf::bpf_map_info =
        bpfns_sys::bpf::info(&fd).map_err(|e| anyhow::anyhow!("reading map {id}'s info: {e}"))?;
    let (ks, vs) = (info.key_size as usize, info.value_size as usize);
    let percpu = is_percpu(info.type_);
    let ncpu = if percpu {
        bpfns_sys::bpf::possible_cpus()?
    } else {
        1
    };
    let slot = if percpu { vs.div_ceil(8) * 8 } else { vs };
    let mut entries = Vec::new();
    let mut prev: Option<Vec<u8>> = None;
    while let Some(key) = bpfns_sys::bpf::map_next_key(&fd, prev.as_deref(), ks)
        .map_err(|e| anyhow::anyhow!("map {id} cannot be dumped: {e}"))?
    {
        let value = bpfns_sys::bpf::map_lookup(&fd, &key, slot * ncpu)
            .map_err(|e| anyhow::anyhow!("looking up a key of map {id}: {e}"))?;
        let (value, values) = match value {
            None => (None, None),
            Some(v) if percpu => (
                None,
                Some(
                    v.chunks(slot)
                        .enumerate()
                        .map(|(cpu, c)| CpuValue {
                            cpu,
                            value: hex(&c[..vs]),
                        })
                        .collect(),
                ),
            ),
            Some(v) => (Some(hex(&v)), None),
        };
        entries.push(Entry {
            key: hex(&key),
            value,
            values,
        });
        prev = Some(key);
    }
    Ok(Dump(entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::render;

    struct Fake(Vec<OwnedObject>);

    impl Backend for Fake {
        fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectView>> {
            Ok(self
                .0
                .iter()
                .filter(|o| o.kind == kind)
                .cloned()
                .map(Into::into)
                .collect())
        }
        fn open(&self, _: ObjectKind, _: u32) -> Result<std::os::fd::OwnedFd> {
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
        }
    }

    fn fake() -> Fake {
        Fake(vec![
            obj(ObjectKind::Map, 3, 0, "task_storage", "task_ns"),
            obj(ObjectKind::Map, 17, 4, "array", "clitest"),
            obj(ObjectKind::Link, 5, 0, "tracing", "on_sys_exit"),
            obj(ObjectKind::Btf, 1, 0, "", ""),
        ])
    }

    #[test]
    fn labels() {
        assert_eq!(namespace_label(NsId::ROOT), "/");
        assert_eq!(namespace_label(NsId(12)), "ns:12");
    }

    #[test]
    fn list_json_shape() {
        let l = list(&fake(), ObjectKind::Map).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &l).unwrap()).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 2);
        assert_eq!(
            arr[1],
            serde_json::json!({
                "id": 17, "type": "array", "name": "clitest", "namespace": "ns:4", "ns_id": 4
            })
        );
        assert_eq!(arr[0]["namespace"], "/");
        assert_eq!(arr[0]["ns_id"], 0);
    }

    #[test]
    fn empty_list_is_an_empty_json_array() {
        let l = list(&Fake(vec![]), ObjectKind::Prog).unwrap();
        assert_eq!(render(Format::Json, &l).unwrap(), "[]\n");
        assert_eq!(render(Format::PrettyJson, &l).unwrap(), "[]\n");
        assert_eq!(
            render(Format::Text, &l).unwrap(),
            "ID  TYPE  NAME  NAMESPACE\n"
        );
    }

    #[test]
    fn list_text_table() {
        let l = list(&fake(), ObjectKind::Map).unwrap();
        assert_eq!(
            l.render_text(),
            "ID  TYPE          NAME     NAMESPACE\n\
             3   task_storage  task_ns  /\n\
             17  array         clitest  ns:4\n"
        );
        let l = list(&fake(), ObjectKind::Link).unwrap();
        assert_eq!(
            l.render_text(),
            "ID  TYPE     PROG  NAME         NAMESPACE\n\
             5   tracing  105   on_sys_exit  /\n"
        );
        let l = list(&fake(), ObjectKind::Btf).unwrap();
        assert_eq!(
            l.render_text(),
            "ID  TYPE  NAME  NAMESPACE\n1   -     -     /\n"
        );
    }

    #[test]
    fn links_carry_their_program_in_json() {
        let l = list(&fake(), ObjectKind::Link).unwrap();
        let v: serde_json::Value = serde_json::to_value(&l).unwrap();
        assert_eq!(v[0]["prog_id"], 105);
        let m: serde_json::Value =
            serde_json::to_value(list(&fake(), ObjectKind::Map).unwrap()).unwrap();
        assert!(m[0].get("prog_id").is_none());
    }

    #[test]
    fn show_one_and_missing() {
        let s = show(&fake(), ObjectKind::Map, 17).unwrap();
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert!(v.is_object());
        assert_eq!(v["name"], "clitest");
        assert_eq!(s.render_text().lines().count(), 2);
        let e = show(&fake(), ObjectKind::Map, 5).unwrap_err().to_string();
        assert!(e.starts_with("no map with id 5"), "{e}");
    }
}
