//! Listing every map with its owner: the kernel side's iterator (one read) against the
//! per-object syscall loop (`NEXT_ID` + `GET_FD_BY_ID` + `GET_INFO` + owner lookup per map),
//! and against `bpftool map show -j` run as a process.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bpfns_kernel::{Kernel, OwnedObject};
use bpfns_model::{NsId, ObjectKind};
use bpfns_sys::{bpf, Errno};

use crate::controller::{check_interrupt, set_tag, Worker};
use crate::side::{Rig, Setup, BENCH_NS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Iterator,
    SyscallLoop,
    Bpftool,
}

impl Method {
    pub fn label(self) -> &'static str {
        match self {
            Method::Iterator => "iterator (Kernel::list)",
            Method::SyscallLoop => "per-object syscall loop",
            Method::Bpftool => "bpftool map show -j (process)",
        }
    }
}

/// The per-object loop, as a tool without the iterator would list maps with owners.
pub fn list_by_syscalls(kernel: &Kernel) -> Result<Vec<OwnedObject>> {
    let mut out = Vec::new();
    let mut cur = 0;
    while let Some(id) = bpf::next_id(ObjectKind::Map, cur)? {
        cur = id;
        let fd = match bpf::fd_by_id(ObjectKind::Map, id) {
            Ok(fd) => fd,
            // Freed since NEXT_ID returned it.
            Err(e) if e.errno == Errno::NOENT => continue,
            Err(e) => return Err(e.into()),
        };
        let info: bpf::bpf_map_info = bpf::info(&fd)?;
        let name: Vec<u8> = info
            .name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        out.push(OwnedObject {
            kind: ObjectKind::Map,
            id,
            owner: kernel.owner(ObjectKind::Map, id)?,
            type_name: bpf::map_type_name(info.type_)
                .map_or_else(|| format!("type {}", info.type_), str::to_string)
                .into(),
            name: String::from_utf8_lossy(&name).into_owned().into(),
            prog_id: None,
            // The iterator's listing is what is compared: the bare records.
            details: Default::default(),
        });
    }
    Ok(out)
}

/// Run `bpftool map show -j`; the number of maps it printed.
fn bpftool_list() -> Result<usize> {
    let out = Command::new("bpftool")
        .args(["map", "show", "-j"])
        .stdin(Stdio::null())
        .output()
        .context("running bpftool")?;
    if !out.status.success() {
        bail!(
            "bpftool map show -j: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing bpftool's output")?;
    Ok(v.as_array().map_or(0, Vec::len))
}

pub fn bpftool_available() -> bool {
    Command::new("bpftool")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Wall times (ns) per method, one per kept round.
#[derive(Debug, Default)]
pub struct ListingResults {
    pub times: HashMap<Method, Vec<f64>>,
    pub maps: usize,
    pub owned_by_ns: usize,
    pub listed: usize,
    pub discarded_rounds: usize,
}

/// Create `maps` maps (half of them from the worker while tagged, so half have an owner),
/// then list them `rounds` times by each method, in rotating order.
pub fn run(
    worker: &mut Worker,
    rig: &mut Rig,
    maps: usize,
    rounds: usize,
    with_bpftool: bool,
    allow_foreign: bool,
) -> Result<ListingResults> {
    // Loaded, hooks attached, as on a host that runs bpfns.
    rig.apply(&Setup::Full)?;
    let kernel = rig.builtin().kernel();
    set_tag(kernel, worker, true)?;
    let mut owned = worker.hold_maps(maps / 2)?;
    set_tag(kernel, worker, false)?;
    let unowned = worker.hold_maps(maps - maps / 2)?;

    // Both methods must agree on the owners before their times mean anything.
    let by_iter = kernel.list(ObjectKind::Map)?;
    let by_loop = list_by_syscalls(kernel)?;
    let owners =
        |l: &[OwnedObject]| -> HashMap<u32, NsId> { l.iter().map(|o| (o.id, o.owner)).collect() };
    let (oi, ol) = (owners(&by_iter), owners(&by_loop));
    owned.sort_unstable();
    for id in &owned {
        if oi.get(id) != Some(&BENCH_NS) || ol.get(id) != Some(&BENCH_NS) {
            bail!("map {id}, created tagged, is not listed as owned by {BENCH_NS}");
        }
    }
    for id in &unowned {
        if oi.get(id) != Some(&NsId::ROOT) || ol.get(id) != Some(&NsId::ROOT) {
            bail!("map {id}, created untagged, is not listed as owned by root");
        }
    }

    let mut methods = vec![Method::Iterator, Method::SyscallLoop];
    if with_bpftool {
        let n = bpftool_list()?;
        if n < maps {
            bail!("bpftool listed {n} maps, fewer than the {maps} held");
        }
        methods.push(Method::Bpftool);
    }
    let mut res = ListingResults {
        maps,
        owned_by_ns: owned.len(),
        listed: by_iter.len(),
        ..Default::default()
    };
    // Warm-up.
    kernel.list(ObjectKind::Map)?;
    list_by_syscalls(kernel)?;
    for round in 0..rounds {
        let mut order = methods.clone();
        let k = round % order.len();
        order.rotate_left(k);
        let mut times = Vec::new();
        for m in order {
            check_interrupt()?;
            let t = Instant::now();
            let n = match m {
                Method::Iterator => kernel.list(ObjectKind::Map)?.len(),
                Method::SyscallLoop => list_by_syscalls(kernel)?.len(),
                Method::Bpftool => bpftool_list()?,
            };
            let ns = t.elapsed().as_nanos() as f64;
            if n < maps {
                bail!("{} listed {n} maps, fewer than the {maps} held", m.label());
            }
            times.push((m, ns));
        }
        if allow_foreign || rig.foreign_hooks()?.is_empty() {
            for (m, ns) in times {
                res.times.entry(m).or_default().push(ns);
            }
        } else {
            res.discarded_rounds += 1;
        }
        eprintln!("  listing round {}/{rounds} done", round + 1);
    }
    worker.release_maps()?;
    rig.apply(&Setup::None)?;
    Ok(res)
}
