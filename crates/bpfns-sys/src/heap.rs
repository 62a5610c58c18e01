//! The C allocator's own tuning: how many heaps it keeps, and giving freed memory back.
//!
//! glibc's malloc gives each thread that allocates concurrently a heap ("arena") of its own,
//! up to 8 per CPU, and keeps the pages of freed chunks. A daemon whose worker threads each
//! build a large answer now and then (a listing of 100 000 objects is tens of MiB) then holds
//! a copy of its largest answer per arena long after it was sent. Both calls are glibc's; on
//! another C library they do nothing.

/// Let the allocator keep at most `n` heaps (`mallopt(M_ARENA_MAX)`): threads share them,
/// so memory freed by one is reused by the next instead of sitting in a heap of its own.
/// Call it before threads start. Returns whether the allocator took it.
pub fn limit_arenas(n: u32) -> bool {
    #[cfg(target_env = "gnu")]
    {
        let n = libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX).max(1);
        // SAFETY: mallopt takes two ints and only changes the allocator's parameters.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, n) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        let _ = n;
        false
    }
}

/// Give the pages of freed memory back to the kernel (`malloc_trim(0)`: every heap, also
/// free pages in the middle of one). Costs a walk of the free lists (about a millisecond per
/// hundred MiB freed), so call it after a large answer was dropped, not per request.
pub fn give_back_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Freed small chunks below a live one stay resident until given back.
    #[test]
    #[cfg(target_env = "gnu")]
    fn freed_memory_goes_back_to_the_kernel() {
        // 64 MiB in 4 KiB chunks (below the mmap threshold: they come from the heap), each
        // touched; then all freed but the last, which keeps the heap from shrinking at its top.
        let chunks: Vec<Vec<u8>> = (0..16_384).map(|i| vec![i as u8 | 1; 4096]).collect();
        let mut chunks = chunks;
        let last = chunks.pop();
        drop(chunks);
        let before = rss_kib();
        give_back_free_memory();
        let after = rss_kib();
        drop(last);
        assert!(
            before.saturating_sub(after) >= 32 * 1024,
            "RSS {before} KiB before malloc_trim, {after} KiB after: freed memory was not given back"
        );
    }

    #[test]
    fn limiting_arenas_is_taken() {
        #[cfg(target_env = "gnu")]
        assert!(limit_arenas(4));
        #[cfg(not(target_env = "gnu"))]
        assert!(!limit_arenas(4));
    }
}
