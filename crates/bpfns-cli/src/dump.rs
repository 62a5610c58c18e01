//! `bpfns map dump`, `bpfns prog dump xlated`, `bpfns btf dump`: an object's contents, read
//! through a descriptor the backend opens (bpfnsd's FD broker: only visible objects) or the
//! one its pin gave.

use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
use bpfns_model::ObjectKind;
use bpfns_sys::bpf::{self as sysbpf, MapAccess};
use serde::{Serialize, Serializer};

use crate::backend::Backend;
use crate::cli::Target as TargetArgs;
use crate::error::{CliError, Code};
use crate::objects::{parse_target, resolve, Resolved};
use crate::output::Render;

/// The descriptor and id of the one object OBJECT names (read-only for maps).
fn open_one(
    backend: &dyn Backend,
    kind: ObjectKind,
    target: &TargetArgs,
) -> Result<(OwnedFd, u32)> {
    let Some(t) = parse_target(kind, &target.words)? else {
        return Err(CliError::usage(format!(
            "which {kind}? `bpfns {kind} dump{} OBJECT` (see `bpfns {kind} --help`)",
            if kind == ObjectKind::Prog {
                " xlated"
            } else {
                ""
            }
        ))
        .into());
    };
    match resolve(backend, kind, &t)? {
        Resolved::One(o, Some(fd)) => Ok((fd, o.id)),
        Resolved::One(o, None) => Ok((backend.open(kind, o.id, kind == ObjectKind::Map)?, o.id)),
        Resolved::Many(found) if found.len() == 1 => {
            let id = found[0].id;
            Ok((backend.open(kind, id, kind == ObjectKind::Map)?, id))
        }
        Resolved::Many(found) => Err(CliError::usage(format!(
            "{} {kind}s match; name one by id ({})",
            found.len(),
            found
                .iter()
                .map(|o| format!("id {}", o.id))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into()),
    }
}

/// What a dump prints, whatever the kind.
#[derive(Debug)]
pub enum Dumped {
    Map(MapDump),
    Prog(ProgDump),
    Btf(BtfDump),
}

/// `bpfns KIND dump OBJECT`.
pub fn dump(backend: &dyn Backend, kind: ObjectKind, target: &TargetArgs) -> Result<Dumped> {
    let (fd, id) = open_one(backend, kind, target)?;
    Ok(match kind {
        ObjectKind::Map => Dumped::Map(map_dump(&fd, id)?),
        ObjectKind::Prog => Dumped::Prog(prog_dump(&fd, id)?),
        ObjectKind::Btf => Dumped::Btf(btf_dump(&fd, id)?),
        ObjectKind::Link => {
            return Err(CliError::usage("links have nothing to dump: `bpfns link show`").into())
        }
    })
}

// ---- maps ------------------------------------------------------------------------------------

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
pub struct MapDump(pub Vec<Entry>);

impl Serialize for MapDump {
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

impl Render for MapDump {
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

/// Why a map of type `map_type` cannot be dumped by key, in a sentence; `None` if it can.
pub fn undumpable(id: u32, map_type: u32) -> Option<String> {
    let name = sysbpf::map_type_name(map_type).unwrap_or("?");
    match sysbpf::map_access(map_type) {
        MapAccess::ByKey => None,
        MapAccess::RingBuffer => Some(format!(
            "map {id} is a ring buffer ({name}): ring buffers cannot be dumped by key, they have \
             no keys; read one with a ring-buffer consumer (e.g. libbpf's ring_buffer__poll)"
        )),
        MapAccess::NoKeys => Some(format!(
            "map {id} is a {name}: its elements have no keys, so it cannot be dumped by key \
             (queues and stacks are popped, bloom filters are tested)"
        )),
    }
}

/// Every key and value of the map behind `fd`.
fn map_dump(fd: &OwnedFd, id: u32) -> Result<MapDump> {
    let info: sysbpf::bpf_map_info =
        sysbpf::info(fd).with_context(|| format!("reading map {id}'s info"))?;
    if let Some(why) = undumpable(id, info.type_) {
        return Err(CliError::new(Code::Failed, why).into());
    }
    let (ks, vs) = (info.key_size as usize, info.value_size as usize);
    let percpu = sysbpf::is_percpu_map(info.type_);
    let ncpu = if percpu { sysbpf::possible_cpus()? } else { 1 };
    let slot = if percpu { vs.div_ceil(8) * 8 } else { vs };
    let mut entries = Vec::new();
    let mut prev: Option<Vec<u8>> = None;
    while let Some(key) = sysbpf::map_next_key(fd, prev.as_deref(), ks)
        .with_context(|| format!("map {id} cannot be dumped"))?
    {
        let value = sysbpf::map_lookup(fd, &key, slot * ncpu)
            .with_context(|| format!("looking up a key of map {id}"))?;
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
    Ok(MapDump(entries))
}

// ---- programs --------------------------------------------------------------------------------

/// One instruction of a program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InsnView {
    pub pc: usize,
    /// Its 8 bytes, in hex.
    pub raw: String,
    /// `None` for the second half of a 16-byte instruction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disasm: Option<String>,
}

/// A program's instructions: a JSON array, text as `bpftool prog dump xlated` prints them.
#[derive(Debug, Clone)]
pub struct ProgDump(pub Vec<InsnView>);

impl Serialize for ProgDump {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for ProgDump {
    fn render_text(&self) -> String {
        self.0
            .iter()
            .filter_map(|i| {
                let d = i.disasm.as_ref()?;
                Some(format!("{:4}: ({}) {d}\n", i.pc, &i.raw[..2]))
            })
            .collect()
    }
}

fn prog_dump(fd: &OwnedFd, id: u32) -> Result<ProgDump> {
    let insns = sysbpf::prog_xlated(fd)
        .with_context(|| format!("reading program {id}'s instructions"))?
        .ok_or_else(|| {
            CliError::new(
                Code::DENIED,
                format!(
                    "the kernel withholds program {id}'s instructions: reading them needs \
                     CAP_BPF (or CAP_SYS_ADMIN), and for a constant-blinded program the right \
                     to see kernel addresses (CAP_SYSLOG); run as root"
                ),
            )
        })?;
    let text = bpfns_sys::insn::disassemble(&insns);
    Ok(ProgDump(
        insns
            .iter()
            .zip(text)
            .enumerate()
            .map(|(pc, (raw, disasm))| InsnView {
                pc,
                raw: raw
                    .to_ne_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
                disasm,
            })
            .collect(),
    ))
}

// ---- BTF -------------------------------------------------------------------------------------

/// A BTF object's raw data, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct BtfDump {
    pub id: u32,
    pub name: String,
    pub size: u32,
    pub kernel: bool,
    pub types: u32,
    /// Types per kind (`STRUCT`, `FUNC`, ...).
    pub kinds: std::collections::BTreeMap<&'static str, u32>,
    pub type_len: u32,
    pub str_len: u32,
}

impl Render for BtfDump {
    fn render_text(&self) -> String {
        let kinds: Vec<String> = self.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        format!(
            "btf {}: name {}, {} bytes{}\n  types: {} ({})\n  sections: types {} bytes, strings {} bytes\n",
            self.id,
            if self.name.is_empty() { "-" } else { &self.name },
            self.size,
            if self.kernel { ", the kernel's" } else { "" },
            self.types,
            kinds.join(", "),
            self.type_len,
            self.str_len
        )
    }
}

fn btf_dump(fd: &OwnedFd, id: u32) -> Result<BtfDump> {
    let info = sysbpf::btf_info(fd).with_context(|| format!("reading BTF {id}'s info"))?;
    let data = sysbpf::btf_data(fd).with_context(|| format!("reading BTF {id}'s data"))?;
    let s = bpfns_sys::btf::summarize(&data)
        .map_err(|e| CliError::new(Code::Failed, format!("BTF {id}: {e}")))?;
    Ok(BtfDump {
        id,
        name: info.name,
        size: info.size,
        kernel: info.kernel,
        types: s.types,
        kinds: s.kinds.into_iter().collect(),
        type_len: s.type_len,
        str_len: s.str_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffers_and_keyless_maps_say_why() {
        let rb = undumpable(7, sysbpf::MAP_TYPE_RINGBUF).unwrap();
        assert!(rb.contains("ring buffers cannot be dumped by key"), "{rb}");
        assert!(!rb.contains("524"), "{rb}");
        assert!(undumpable(7, 2).is_none(), "arrays dump");
    }

    #[test]
    fn dumps_render() {
        let d = MapDump(vec![Entry {
            key: hex(&[1, 0]),
            value: Some(hex(&[0xff])),
            values: None,
        }]);
        assert_eq!(d.render_text(), "key: 01 00  value: ff\nFound 1 element\n");
        let p = ProgDump(vec![InsnView {
            pc: 0,
            raw: "b700000000000000".into(),
            disasm: Some("r0 = 0".into()),
        }]);
        assert_eq!(p.render_text(), "   0: (b7) r0 = 0\n");
    }
}
