//! The memory BPF maps use, per owning namespace.
//!
//! The kernel accounts a map's memory in `bpf_map_memory_usage()` (6.4+: each map type's
//! `map_mem_usage`; 6.1: `bpf_map_memory_footprint()`, from key, value and entry sizes) and
//! reports it only as `memlock` in the map fd's `/proc/PID/fdinfo` (what `bpftool map show`
//! prints). Neither is reachable from the kernel side's map iterator: they are plain kernel
//! functions (no helper, no kfunc), `map->ops->map_mem_usage` is a function pointer a BPF
//! program may not call, and `struct bpf_map` has had no memory field since 5.11 (memcg
//! accounting). So a map is opened by id for its fdinfo (its `memlock`, type and flags): one
//! open and one small read, paid by whoever asks (`ns list`, `ns show`, the metrics), never by
//! the kernel side's hooks. A map whose memory cannot change (see [`fixed_size`]) is read once
//! and remembered by id (ids are not reused), so that an account of 100 000 array maps does
//! not open them all again; the others are read at every account.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::Mutex;

use bpfns_model::{NsId, ObjectKind};
use bpfns_sys::bpf as sysbpf;

/// memlock of the fixed-size maps read so far, sorted by id (pruned to the maps alive at each
/// account).
static FIXED: Mutex<Vec<(u32, u64)>> = Mutex::new(Vec::new());

/// The maps of each owner among `maps` (id and owner each, from wherever they were listed)
/// and the bytes of memory they use: each map's `memlock` is read from its fdinfo, except for
/// a map of fixed size read before (matched in id order, without hashing 100 000 ids). A map
/// freed before its fdinfo is read counts, with no memory.
pub fn map_census_of(mut maps: Vec<(u32, NsId)>) -> MapCensus {
    if !maps.is_sorted_by_key(|m| m.0) {
        maps.sort_unstable_by_key(|m| m.0);
    }
    let mut fixed = FIXED.lock().unwrap_or_else(|e| e.into_inner());
    let cache = std::mem::take(&mut *fixed);
    let mut kept = Vec::with_capacity(cache.len());
    let mut cached = cache.iter().peekable();
    let mut census = MapCensus::default();
    // Most maps share their owner with the map before them: one hash look-up per run.
    let mut run: Option<(NsId, u32, u64)> = None;
    let end_run = |run: &mut Option<(NsId, u32, u64)>, c: &mut MapCensus| {
        if let Some((owner, n, bytes)) = run.take() {
            *c.counts.entry(owner).or_default() += n;
            *c.memory.entry(owner).or_default() += bytes;
        }
    };
    for (id, owner) in maps {
        while cached.next_if(|(c, _)| *c < id).is_some() {}
        let bytes = match cached.next_if(|(c, _)| *c == id) {
            Some(&(_, b)) => {
                kept.push((id, b));
                Some(b)
            }
            None => map_sizing(id).map(|s| {
                if fixed_size(s.map_type, s.map_flags) {
                    kept.push((id, s.memlock));
                }
                s.memlock
            }),
        };
        if run.is_some_and(|(o, _, _)| o != owner) {
            end_run(&mut run, &mut census);
        }
        let r = run.get_or_insert((owner, 0, 0));
        r.1 += 1;
        r.2 += bytes.unwrap_or(0);
    }
    end_run(&mut run, &mut census);
    *fixed = kept;
    census
}

/// Maps per owner ([`map_census_of`]).
#[derive(Debug, Default, Clone)]
pub struct MapCensus {
    /// How many maps each owner has.
    pub counts: HashMap<NsId, u32>,
    /// Bytes of memory (`memlock`) the maps of each owner use.
    pub memory: HashMap<NsId, u64>,
}

/// Whether the kernel's account of a map of `map_type` with `flags` is fixed at its creation:
/// on 6.4+ these types count their allocation (a hash map only when preallocated); on 6.1
/// every map's is an estimate from its sizes.
fn fixed_size(map_type: u32, flags: u32) -> bool {
    const NO_PREALLOC: u32 = 1;
    match map_type {
        // array, prog_array, perf_event_array, percpu_array, cgroup_array, array_of_maps,
        // ringbuf
        2 | 3 | 4 | 6 | 8 | 12 | 27 => true,
        // hash, percpu_hash, lru_hash, lru_percpu_hash, hash_of_maps
        1 | 5 | 9 | 10 | 13 => flags & NO_PREALLOC == 0,
        _ => false,
    }
}

/// What a map's fdinfo says of its memory account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sizing {
    memlock: u64,
    map_type: u32,
    map_flags: u32,
}

/// Map `id`'s [`Sizing`]; `None` if it is gone.
fn map_sizing(id: u32) -> Option<Sizing> {
    let fd = sysbpf::fd_by_id(ObjectKind::Map, id).ok()?;
    let text =
        std::fs::read_to_string(format!("/proc/thread-self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    sizing_of(&text)
}

/// The `memlock:`, `map_type:` and `map_flags:` lines of a map fd's fdinfo (flags in hex).
fn sizing_of(fdinfo: &str) -> Option<Sizing> {
    let field = |name: &str| {
        fdinfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    Some(Sizing {
        memlock: field("memlock:")?.parse().ok()?,
        map_type: field("map_type:")?.parse().ok()?,
        map_flags: u32::from_str_radix(field("map_flags:")?.trim_start_matches("0x"), 16).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_type_and_flags_are_read_from_fdinfo() {
        let t = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t2\n\
                 key_size:\t4\nvalue_size:\t8\nmax_entries:\t128\nmap_flags:\t0x0\n\
                 map_extra:\t0x0\nmemlock:\t1368\nmap_id:\t5\nfrozen:\t0\n";
        assert_eq!(
            sizing_of(t),
            Some(Sizing {
                memlock: 1368,
                map_type: 2,
                map_flags: 0
            })
        );
        let hash = t
            .replace("map_type:\t2", "map_type:\t1")
            .replace("0x0\nmap_extra", "0x1001\nmap_extra");
        assert_eq!(
            sizing_of(&hash).map(|s| (s.map_type, s.map_flags)),
            Some((1, 0x1001))
        );
        assert_eq!(sizing_of("pos:\t0\n"), None);
    }

    #[test]
    fn only_maps_of_fixed_size_are_remembered() {
        assert!(fixed_size(2, 0), "array");
        assert!(fixed_size(1, 0), "preallocated hash");
        assert!(!fixed_size(1, 1), "hash without preallocation grows");
        assert!(!fixed_size(29, 1), "task storage grows");
        assert!(!fixed_size(11, 1), "lpm trie grows");
    }
}
