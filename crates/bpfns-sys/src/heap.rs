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

/// Allocate blocks of `bytes` or more with their own mappings (`mallopt(M_MMAP_THRESHOLD)`),
/// given back to the kernel as soon as they are freed. By default glibc raises the threshold
/// to the size of the largest mapped block freed (up to 32 MiB), so after the first large
/// answer every later one is carved from a heap and its pages kept: the frame and listing of
/// 100 000 objects stayed resident in each heap. Returns whether the allocator took it.
pub fn map_large_blocks(bytes: usize) -> bool {
    #[cfg(target_env = "gnu")]
    {
        let n = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt takes two ints and only changes the allocator's parameters.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, n) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        let _ = bytes;
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

    /// The tests measure the process's RSS: one at a time.
    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Freed small chunks below a live one stay resident until given back.
    #[test]
    #[cfg(target_env = "gnu")]
    fn freed_memory_goes_back_to_the_kernel() {
        let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
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

    /// A large block freed leaves nothing resident, the second time too (by default the
    /// first one freed raises the threshold, and the second comes from a heap that keeps it).
    #[test]
    #[cfg(target_env = "gnu")]
    fn large_blocks_go_back_when_freed() {
        let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
        assert!(map_large_blocks(256 * 1024));
        for round in 0..3 {
            let before = rss_kib();
            let block = vec![round as u8 | 1; 8 << 20];
            let touched = rss_kib();
            drop(block);
            let after = rss_kib();
            assert!(touched >= before + 6 * 1024, "{before} -> {touched} KiB");
            assert!(
                after < touched.saturating_sub(6 * 1024),
                "round {round}: RSS {touched} KiB with an 8 MiB block, {after} KiB once freed"
            );
        }
    }

    #[test]
    fn limiting_arenas_is_taken() {
        #[cfg(target_env = "gnu")]
        assert!(limit_arenas(4));
        #[cfg(not(target_env = "gnu"))]
        assert!(!limit_arenas(4));
    }
}
