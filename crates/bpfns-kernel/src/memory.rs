//! The memory BPF maps use, per owning namespace.
//!
//! The kernel accounts a map's memory in `bpf_map_memory_usage()` (6.4+: each map type's
//! `map_mem_usage`; 6.1: `bpf_map_memory_footprint()`, from key, value and entry sizes) and
//! reports it only as `memlock` in the map fd's `/proc/PID/fdinfo` (what `bpftool map show`
//! prints). Neither is reachable from the kernel side's map iterator: they are plain kernel
//! functions (no helper, no kfunc), `map->ops->map_mem_usage` is a function pointer a BPF
//! program may not call, and `struct bpf_map` has had no memory field since 5.11 (memcg
//! accounting). So the listing gives each map's owner, and each map is opened by id for its
//! fdinfo: one open and one small read per map, paid by whoever asks (`ns list`, `ns show`,
//! the metrics), never by the kernel side's hooks.

use std::collections::HashMap;
use std::os::fd::AsRawFd;

use bpfns_model::{NsId, ObjectKind};
use bpfns_sys::bpf as sysbpf;

use crate::error::Result;
use crate::kernel::Kernel;

impl Kernel {
    /// Bytes of memory the maps of each owner use, as the kernel reports them (`memlock`).
    /// A map freed between the listing and its open counts nothing.
    pub fn map_memory(&self) -> Result<HashMap<NsId, u64>> {
        let mut out: HashMap<NsId, u64> = HashMap::new();
        for m in self.list(ObjectKind::Map)? {
            if let Some(bytes) = map_memlock(m.id) {
                *out.entry(m.owner).or_default() += bytes;
            }
        }
        Ok(out)
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
}
