//! Walks shared by the requests that wait for them at the same time.
//!
//! `ns_show`, `ns_list` and `list` read every object of a kind (or of every kind) and every
//! tagged task from the kernel: milliseconds each with thousands of objects. Under load, many
//! such requests arrive together and each paid for a walk of its own, so the walks queued
//! behind each other. Here one walk at a time runs, and every request that arrived before it
//! started takes its result. A request never takes the result of a walk that started before
//! it arrived: its answer is as fresh as if it had walked itself (what a task or an object
//! did after the walk started may or may not be in it, as before).
//!
//! The API server waits for a walk without a thread ([`Coalesced::get_async`]): with 1,000
//! clients, requests that sat in [`Coalesced::get`] took the pool's every worker while one of
//! them walked, and every other request queued behind them.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// One kind of walk, shared by concurrent requests.
#[derive(Debug)]
pub struct Coalesced<T> {
    inner: Arc<Inner<T>>,
}

#[derive(Debug)]
struct Inner<T> {
    state: Mutex<State<T>>,
    /// Wakes the threads waiting in [`Coalesced::get`].
    done: Condvar,
    /// Wakes the tasks waiting in [`Coalesced::get_async`].
    done_async: tokio::sync::Notify,
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
    /// Callers that wait for a walk they do not run themselves (an async caller that started
    /// one waits for it like the others).
    waiting: usize,
}

impl<T> Default for Coalesced<T> {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    running: false,
                    started: 0,
                    finished: 0,
                    last: None,
                    waiting: 0,
                }),
                done: Condvar::new(),
                done_async: tokio::sync::Notify::new(),
            }),
        }
    }
}

/// Ends a walk even if it panicked: the waiters are woken and one of them walks again.
struct Running<'a, T> {
    of: &'a Inner<T>,
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
        drop(s);
        self.of.done.notify_all();
        self.of.done_async.notify_waiters();
    }
}

/// An async caller counted among the waiters until it has its result or is dropped (its
/// client went away): the last one out lets go of the result.
struct Waiting<'a, T>(&'a Inner<T>);

impl<T> Drop for Waiting<'_, T> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.waiting -= 1;
        if s.waiting == 0 {
            s.last = None;
        }
    }
}

impl<T> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T> Coalesced<T> {
    #[cfg(test)]
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.inner.lock()
    }

    /// The result of a walk (`walk`, or another caller's) that started after this call.
    pub fn get(&self, walk: impl FnOnce() -> Result<T, String>) -> Result<Arc<T>, String> {
        let inner = &*self.inner;
        let mut walk = Some(walk);
        let mut s = inner.lock();
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
                        of: inner,
                        result: None,
                    };
                    let r = walk().map(Arc::new);
                    running.result = Some(r.clone());
                    return r;
                }
            }
            s = inner.done.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl<T: Send + Sync + 'static> Coalesced<T> {
    /// [`Coalesced::get`] without holding a thread while it waits: `walk` (if this caller is
    /// the one to walk) runs on the runtime's pool of blocking threads, and runs to its end
    /// even if this future is dropped meanwhile (the others waiting take its result). A
    /// panicking walk is an error for everyone waiting for it. Must run inside a tokio
    /// runtime.
    pub async fn get_async(
        &self,
        walk: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<Arc<T>, String> {
        let inner = &*self.inner;
        let need = {
            let mut s = inner.lock();
            s.waiting += 1;
            if s.running {
                s.started + 1
            } else {
                s.finished + 1
            }
        };
        let _waiting = Waiting(inner);
        let mut walk = Some(walk);
        loop {
            // Registered before the state is looked at: a walk that ends in between still
            // wakes this caller.
            let woken = inner.done_async.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            {
                let mut s = inner.lock();
                if s.finished >= need {
                    if let Some(r) = s.last.clone() {
                        return r;
                    }
                }
                if !s.running {
                    if let Some(walk) = walk.take() {
                        s.running = true;
                        s.started += 1;
                        drop(s);
                        let of = Arc::clone(&self.inner);
                        tokio::task::spawn_blocking(move || {
                            let mut running = Running {
                                of: &of,
                                result: None,
                            };
                            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(walk))
                                .unwrap_or_else(|_| Err("the walk failed (a panic)".to_string()));
                            running.result = Some(r.map(Arc::new));
                        });
                    }
                }
            }
            woken.await;
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

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(4)
            .build()
            .unwrap()
    }

    #[test]
    fn async_callers_during_a_walk_share_the_next_one_never_an_older_one() {
        let rt = runtime();
        let c = Arc::new(Coalesced::default());
        let walks = Arc::new(AtomicU64::new(0));
        let (in_walk, go) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let first = {
            let (c, walks, in_walk, go) = (c.clone(), walks.clone(), in_walk.clone(), go.clone());
            rt.spawn(async move {
                *c.get_async(move || {
                    in_walk.wait();
                    go.wait();
                    Ok(walks.fetch_add(1, Ordering::SeqCst) + 1)
                })
                .await
                .unwrap()
            })
        };
        in_walk.wait();
        let later: Vec<_> = (0..16)
            .map(|_| {
                let (c, walks) = (c.clone(), walks.clone());
                rt.spawn(async move {
                    *c.get_async(move || Ok(walks.fetch_add(1, Ordering::SeqCst) + 1))
                        .await
                        .unwrap()
                })
            })
            .collect();
        // Let them queue (any interleaving must give walk 2 or later).
        std::thread::sleep(std::time::Duration::from_millis(50));
        go.wait();
        // Its own walk's result, or a later one's (taken once that one ended first).
        assert!(rt.block_on(first).unwrap() >= 1);
        for t in later {
            assert!(
                rt.block_on(t).unwrap() >= 2,
                "an answer from a walk older than the request"
            );
        }
        // 16 waiting callers held at most 4 blocking threads: they waited on none.
        assert!(walks.load(Ordering::SeqCst) <= 17);
        assert!(c.lock().last.is_none(), "the last result is still held");
        assert_eq!(c.lock().waiting, 0);
    }

    #[test]
    fn a_walk_whose_caller_went_away_still_answers_the_others() {
        let rt = runtime();
        let c = Arc::new(Coalesced::default());
        let go = Arc::new(Barrier::new(2));
        let started = Arc::new(Barrier::new(2));
        // The walker's caller is dropped while its walk runs.
        let walker = {
            let (c, go, started) = (c.clone(), go.clone(), started.clone());
            rt.spawn(async move {
                c.get_async(move || {
                    started.wait();
                    go.wait();
                    Ok(1u32)
                })
                .await
            })
        };
        started.wait();
        walker.abort();
        // Arrived during the walk: waits for the next one, which it runs itself.
        let other = {
            let c = c.clone();
            rt.spawn(async move { *c.get_async(|| Ok(2u32)).await.unwrap() })
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        go.wait();
        assert_eq!(rt.block_on(other).unwrap(), 2);
        assert_eq!(c.lock().waiting, 0);
        assert!(!c.lock().running);
    }

    #[test]
    fn an_async_walk_that_panics_is_an_error_and_the_next_caller_walks() {
        let rt = runtime();
        let c = Coalesced::<u32>::default();
        let r = rt.block_on(c.get_async(|| panic!("walk failed")));
        assert!(r.unwrap_err().contains("panic"));
        assert_eq!(*rt.block_on(c.get_async(|| Ok(7))).unwrap(), 7);
        assert_eq!(*c.get(|| Ok(8)).unwrap(), 8);
    }
}
