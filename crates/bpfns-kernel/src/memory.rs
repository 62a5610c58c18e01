//! The memory BPF maps use, per owning namespace.
//!
//! The kernel accounts a map's memory in `bpf_map_memory_usage()` (6.4+: each map type's
//! `map_mem_usage`; 6.1: `bpf_map_memory_footprint()`, from key, value and entry sizes) and
//! reports it only as `memlock` in the map fd's `/proc/PID/fdinfo` (what `bpftool map show`
//! prints). Neither is reachable from the kernel side's map iterator: they are plain kernel
//! functions (no helper, no kfunc), `map->ops->map_mem_usage` is a function pointer a BPF
//! program may not call, and `struct bpf_map` has had no memory field since 5.11 (memcg
//! accounting). So the map iterator gives each map's owner, type and flags, and a map is opened
//! by id for its fdinfo: one open and one small read, paid by whoever asks (`ns list`, `ns
//! show`, the metrics), never by the kernel side's hooks. A map whose memory cannot change
//! (see [`fixed_size`]) is read once and remembered by id (ids are not reused), so that a walk
//! over 100 000 array maps does not open them all again; the others are read at every walk.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::Mutex;

use bpfns_model::{NsId, ObjectKind};
use bpfns_sys::bpf as sysbpf;

use crate::abi::{RawRecord, RecordDetails};
use crate::error::Result;
use crate::kernel::Kernel;

/// memlock of the fixed-size maps read so far, by id (pruned to the maps alive at each walk).
static FIXED: Mutex<Option<HashMap<u32, u64>>> = Mutex::new(None);

impl Kernel {
    /// Bytes of memory the maps of each owner use, as the kernel reports them (`memlock`).
    /// A map freed between the walk and its open counts nothing.
    pub fn map_memory(&self) -> Result<HashMap<NsId, u64>> {
        self.map_census().map(|c| c.memory)
    }

    /// The maps of each owner and the bytes of memory they use, from one walk of the maps
    /// (what [`Kernel::owner_counts`] of maps and [`Kernel::map_memory`] give, for half the
    /// walking: at 100 000 maps each walk is most of an `ns list`).
    pub fn map_census(&self) -> Result<MapCensus> {
        let mut maps: Vec<(u32, NsId, bool)> = Vec::new();
        self.stream_iter("iter_maps", RawRecord::parse_one, |r| {
            if r.kind != ObjectKind::Map {
                return;
            }
            let flags = match r.details {
                RecordDetails::Map(m) => Some(m.map_flags),
                _ => None,
            };
            maps.push((r.id, r.owner, fixed_size(r.type_code, flags)));
        })?;
        let mut fixed = FIXED.lock().unwrap_or_else(|e| e.into_inner());
        let mut cache = fixed.take().unwrap_or_default();
        let mut kept = HashMap::with_capacity(cache.len());
        let mut out: HashMap<NsId, u64> = HashMap::new();
        let mut counts: HashMap<NsId, u32> = HashMap::new();
        for (id, owner, is_fixed) in maps {
            *counts.entry(owner).or_default() += 1;
            let bytes = match cache.remove(&id) {
                Some(b) => Some(b),
                None => map_memlock(id),
            };
            if let Some(b) = bytes {
                if is_fixed {
                    kept.insert(id, b);
                }
                *out.entry(owner).or_default() += b;
            }
        }
        *fixed = Some(kept);
        Ok(MapCensus {
            counts,
            memory: out,
        })
    }
}

/// Maps per owner, from one walk ([`Kernel::map_census`]).
#[derive(Debug, Default, Clone)]
pub struct MapCensus {
    /// How many maps each owner has.
    pub counts: HashMap<NsId, u32>,
    /// Bytes of memory (`memlock`) the maps of each owner use.
    pub memory: HashMap<NsId, u64>,
}

/// Whether the kernel's account of a map of `map_type` with `flags` is fixed at its creation:
/// on 6.4+ these types count their allocation (a hash map only when preallocated); on 6.1
/// every map's is an estimate from its sizes. `flags` unknown (kernel sides that wrote record
/// heads only): not fixed.
fn fixed_size(map_type: u32, flags: Option<u32>) -> bool {
    const NO_PREALLOC: u32 = 1;
    match map_type {
        // array, prog_array, perf_event_array, percpu_array, cgroup_array, array_of_maps,
        // ringbuf
        2 | 3 | 4 | 6 | 8 | 12 | 27 => true,
        // hash, percpu_hash, lru_hash, lru_percpu_hash, hash_of_maps
        1 | 5 | 9 | 10 | 13 => flags.is_some_and(|f| f & NO_PREALLOC == 0),
        _ => false,
    }
}

/// The `memlock` the kernel reports for map `id`; `None` if it is gone.
pub fn map_memlock(id: u32) -> Option<u64> {
    let fd = sysbpf::fd_by_id(ObjectKind::Map, id).ok()?;
    let text =
        std::fs::read_to_string(format!("/proc/thread-self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    memlock_of(&text)
}

/// The `memlock:` line of a map fd's fdinfo.
fn memlock_of(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_is_read_from_fdinfo() {
        let t = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t2\n\
                 key_size:\t4\nvalue_size:\t8\nmax_entries:\t128\nmap_flags:\t0x0\n\
                 map_extra:\t0x0\nmemlock:\t1368\nmap_id:\t5\nfrozen:\t0\n";
        assert_eq!(memlock_of(t), Some(1368));
        assert_eq!(memlock_of("pos:\t0\n"), None);
    }

    #[test]
    fn only_maps_of_fixed_size_are_remembered() {
        assert!(fixed_size(2, Some(0)), "array");
        assert!(fixed_size(1, Some(0)), "preallocated hash");
        assert!(!fixed_size(1, Some(1)), "hash without preallocation grows");
        assert!(!fixed_size(1, None), "flags unknown");
        assert!(!fixed_size(29, Some(1)), "task storage grows");
        assert!(!fixed_size(11, Some(1)), "lpm trie grows");
    }
}
