//! `bpfns prog|map|link|btf list|show [ID]`: BPF objects with their owner namespaces.

use anyhow::{bail, Result};
use bpfns_kernel::OwnedObject;
use bpfns_model::{NsId, ObjectKind};
use serde::{Serialize, Serializer};

use crate::backend::Backend;
use crate::output::{emit, Format, Render, Table};

/// The name of a namespace as the CLI prints it.
///
/// The namespace registry (path names) lives in the coming daemon; until then namespaces are
/// known by id only: `/` for the root, `ns:<id>` for the others.
pub fn namespace_label(ns: NsId) -> String {
    if ns.is_root() {
        "/".to_string()
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
        objects: backend.list(kind)?.into_iter().map(Into::into).collect(),
    })
}

/// The object of `kind` with `id`.
pub fn show(backend: &dyn Backend, kind: ObjectKind, id: u32) -> Result<Single> {
    match backend.list(kind)?.into_iter().find(|o| o.id == id) {
        Some(o) => Ok(Single {
            kind,
            object: o.into(),
        }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::render;

    struct Fake(Vec<OwnedObject>);

    impl Backend for Fake {
        fn list(&self, kind: ObjectKind) -> Result<Vec<OwnedObject>> {
            Ok(self.0.iter().filter(|o| o.kind == kind).cloned().collect())
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
