//! Walks shared by the requests that wait for them at the same time.
//!
//! `ns_show`, `ns_list` and `list` read every object of a kind (or of every kind) and every
//! tagged task from the kernel: milliseconds each with thousands of objects. Under load, many
//! such requests arrive together and each paid for a walk of its own, so the walks queued
//! behind each other. Here one walk at a time runs, and every request that arrived before it
//! started takes its result. A request never takes the result of a walk that started before
//! it arrived: its answer is as fresh as if it had walked itself (what a task or an object
//! did after the walk started may or may not be in it, as before).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// One kind of walk, shared by concurrent requests.
#[derive(Debug)]
pub struct Coalesced<T> {
    state: Mutex<State<T>>,
    done: Condvar,
}

#[derive(Debug)]
struct State<T> {
    running: bool,
    /// Walks started so far; the one running (if any) is number `started`.
    started: u64,
    /// The last walk that finished (0: none), and its result: kept only while a caller still
    /// waits for it (a listing of 100 000 objects is tens of MiB; holding the last one between
    /// requests doubled bpfnsd's peak at scale).
    finished: u64,
    last: Option<Result<Arc<T>, String>>,
    /// Callers in [`Coalesced::get`] that are not walking themselves.
    waiting: usize,
}

impl<T> Default for Coalesced<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                running: false,
                started: 0,
                finished: 0,
                last: None,
                waiting: 0,
            }),
            done: Condvar::new(),
        }
    }
}

/// Ends a walk even if it panicked: the waiters are woken and one of them walks again.
struct Running<'a, T> {
    of: &'a Coalesced<T>,
    result: Option<Result<Arc<T>, String>>,
}

impl<T> Drop for Running<'_, T> {
    fn drop(&mut self) {
        let mut s = self.of.lock();
        s.running = false;
        if let Some(r) = self.result.take() {
            s.finished = s.started;
            // Nobody waits: the walker has its own copy, and a later caller walks again.
            s.last = (s.waiting > 0).then_some(r);
        }
        self.of.done.notify_all();
    }
}

impl<T> Coalesced<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The result of a walk (`walk`, or another caller's) that started after this call.
    pub fn get(&self, walk: impl FnOnce() -> Result<T, String>) -> Result<Arc<T>, String> {
        let mut walk = Some(walk);
        let mut s = self.lock();
        // A walk running now started before us: the next one is ours.
        let need = if s.running {
            s.started + 1
        } else {
            s.finished + 1
        };
        s.waiting += 1;
        loop {
            if s.finished >= need {
                if let Some(r) = s.last.clone() {
                    s.waiting -= 1;
                    if s.waiting == 0 {
                        s.last = None;
                    }
                    return r;
                }
            }
            if !s.running {
                if let Some(walk) = walk.take() {
                    s.waiting -= 1;
                    s.running = true;
                    s.started += 1;
                    drop(s);
                    let mut running = Running {
                        of: self,
                        result: None,
                    };
                    let r = walk().map(Arc::new);
                    running.result = Some(r.clone());
                    return r;
                }
            }
            s = self.done.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Barrier;

    #[test]
    fn alone_each_call_walks() {
        let c = Coalesced::default();
        let n = AtomicU64::new(0);
        for i in 1..=3 {
            let r = c.get(|| Ok(n.fetch_add(1, Ordering::SeqCst) + 1)).unwrap();
            assert_eq!(*r, i);
        }
    }

    #[test]
    fn callers_during_a_walk_share_the_next_one_never_an_older_one() {
        let c = Arc::new(Coalesced::default());
        let walks = Arc::new(AtomicU64::new(0));
        let (in_walk, go) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        // A first walk, held open until the others have arrived.
        let first = {
            let (c, walks, in_walk, go) = (c.clone(), walks.clone(), in_walk.clone(), go.clone());
            std::thread::spawn(move || {
                *c.get(|| {
                    in_walk.wait();
                    go.wait();
                    Ok(walks.fetch_add(1, Ordering::SeqCst) + 1)
                })
                .unwrap()
            })
        };
        in_walk.wait();
        let later: Vec<_> = (0..8)
            .map(|_| {
                let (c, walks) = (c.clone(), walks.clone());
                std::thread::spawn(move || {
                    *c.get(|| Ok(walks.fetch_add(1, Ordering::SeqCst) + 1))
                        .unwrap()
                })
            })
            .collect();
        // Let them queue (not a timing assertion: any interleaving must give walk 2 or later).
        std::thread::sleep(std::time::Duration::from_millis(50));
        go.wait();
        assert_eq!(first.join().unwrap(), 1);
        for t in later {
            assert!(
                t.join().unwrap() >= 2,
                "an answer from a walk older than the request"
            );
        }
        assert!(walks.load(Ordering::SeqCst) <= 9);
    }

    #[test]
    fn no_result_is_kept_once_nobody_waits() {
        let c = Coalesced::default();
        let r = c.get(|| Ok(vec![0u8; 1024])).unwrap();
        assert_eq!(Arc::strong_count(&r), 1, "the last result is still held");
        assert!(c.lock().last.is_none());
        assert_eq!(c.lock().waiting, 0);
    }

    #[test]
    fn a_walk_that_panics_leaves_the_next_caller_walking() {
        let c = Arc::new(Coalesced::<u32>::default());
        let c2 = c.clone();
        let r = std::thread::spawn(move || c2.get(|| panic!("walk failed"))).join();
        assert!(r.is_err());
        assert_eq!(*c.get(|| Ok(7)).unwrap(), 7);
        assert_eq!(c.get(|| Err("no".into())).unwrap_err(), "no");
    }
}
