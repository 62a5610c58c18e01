//! The C allocator's own tuning: how many heaps it keeps, and giving freed memory back.
//!
//! glibc's malloc gives each thread that allocates concurrently a heap ("arena") of its own,
//! up to 8 per CPU, and keeps the pages of freed chunks. A daemon whose worker threads each
//! build a large answer now and then (a listing of 100 000 objects is tens of MiB) then holds
//! a copy of its largest answer per arena long after it was sent. Both calls are glibc's; on
//! another C library they do nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// The Rust allocator of a binary that reports its heap in use (bpfnsd): the system
/// allocator, counting the bytes it handed out and did not have back. Reading the count is
/// free; glibc's `mallinfo2` walks every free chunk of every heap (milliseconds after a busy
/// moment: a tenth of bpfnsd's CPU when `status` was asked a few thousand times a second).
/// Install it with `#[global_allocator] static A: bpfns_sys::heap::Counting = Counting;`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counting;

static COUNTED: AtomicU64 = AtomicU64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

impl Counting {
    fn add(bytes: usize) {
        // Read first: a store on every allocation would move the line between CPUs.
        if !INSTALLED.load(Ordering::Relaxed) {
            INSTALLED.store(true, Ordering::Relaxed);
        }
        COUNTED.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn sub(bytes: usize) {
        COUNTED.fetch_sub(bytes as u64, Ordering::Relaxed);
    }
}

// SAFETY: every call goes to the system allocator with the caller's arguments unchanged; the
// counting touches nothing but two atomics (no allocation, no panic).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            Self::add(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            Self::add(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        Self::sub(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            Self::add(new_size);
            Self::sub(layout.size());
        }
        p
    }
}

/// Bytes handed out and not given back, if [`Counting`] is this process's allocator.
pub fn counted_in_use() -> Option<u64> {
    INSTALLED
        .load(Ordering::Relaxed)
        .then(|| COUNTED.load(Ordering::Relaxed))
}

#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: Counting = Counting;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counting_allocator_counts_what_is_held() {
        // Other tests allocate meanwhile: sizes far beyond theirs (untouched, so cheap).
        const MIB: u64 = 1 << 20;
        let before = counted_in_use().expect("installed in this test binary");
        let mut v: Vec<u8> = Vec::with_capacity(256 << 20);
        v.push(1);
        let held = counted_in_use().unwrap();
        assert!(held >= before + 200 * MIB, "{before} then {held}");
        v.reserve_exact(512 << 20);
        let grown = counted_in_use().unwrap();
        assert!(grown >= before + 500 * MIB, "{before} then {grown}");
        drop(v);
        let after = counted_in_use().unwrap();
        assert!(
            after < before + 50 * MIB,
            "{before} then {after} after the drop"
        );
    }

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
