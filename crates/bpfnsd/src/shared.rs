//! [`SharedRegistry`]: the namespace registry as bpfnsd holds it — read by every request and
//! by the supervisor's threads through [`SharedRegistry::read`], replaced only by the
//! daemon's transactions once they are durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bpfns_model::Registry;

#[cfg(debug_assertions)]
thread_local! {
    /// Registry read guards alive on this thread (see [`SharedRegistry::read`]).
    static READS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// The one handle on the registry every reader uses (cheap to clone: it is shared).
#[derive(Debug, Clone, Default)]
pub struct SharedRegistry(Arc<RwLock<Registry>>, Arc<AtomicU64>);

/// A read guard on the registry, counted per thread in debug builds.
#[derive(Debug)]
pub struct RegistryRead<'a>(std::sync::RwLockReadGuard<'a, Registry>);

impl std::ops::Deref for RegistryRead<'_> {
    type Target = Registry;
    fn deref(&self) -> &Registry {
        &self.0
    }
}

impl Drop for RegistryRead<'_> {
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        READS.with(|n| n.set(0));
    }
}

impl SharedRegistry {
    pub fn new(registry: Registry) -> Self {
        Self(Arc::new(RwLock::new(registry)), Arc::default())
    }

    /// How many times the registry was replaced: what was derived from it (a namespace's
    /// visible ids) is still right while this stays the same.
    pub fn generation(&self) -> u64 {
        self.1.load(Ordering::Acquire)
    }

    /// The registry, read-locked. At most one such guard per thread: std's RwLock deadlocks
    /// when a thread read-locks twice while a writer waits, so debug builds — the tests —
    /// panic on the second read. (A writer never panics mid-change: it swaps in a whole
    /// registry, so a poisoned lock still guards a consistent tree.)
    pub fn read(&self) -> RegistryRead<'_> {
        #[cfg(debug_assertions)]
        READS.with(|n| {
            assert_eq!(
                n.get(),
                0,
                "the registry is read-locked twice on one thread: this deadlocks when a writer \
                 waits in between"
            );
            n.set(1);
        });
        RegistryRead(self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Put `next` in place. The daemon's transactions call this once `next` is stored; tests
    /// that stand in for the daemon call it directly.
    pub fn replace(&self, next: Registry) {
        let mut w = self.0.write().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::replace(&mut *w, next);
        // Under the write lock: a reader that saw the old generation read the old registry.
        self.1.fetch_add(1, Ordering::AcqRel);
        // Freed after readers are let in again.
        drop(w);
        drop(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_a_replacement_at_once() {
        let shared = SharedRegistry::default();
        let other = shared.clone();
        let mut next = Registry::default();
        let p = bpfns_model::NsPath::parse("/a").unwrap();
        next.create(&p).unwrap();
        shared.replace(next);
        assert!(other.read().id(&p).is_some());
    }
}
