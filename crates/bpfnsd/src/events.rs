//! The audit event stream (`bpfns events`): what bpfnsd sees happen, fanned out to the
//! connections subscribed to it.
//!
//! Publishing never waits: each subscriber has a bounded queue ([`QUEUE`] events), and one
//! whose queue is full (it stopped reading, or reads slower than events come) is dropped on
//! the spot and counted ([`Bus::dropped`], `events_subscribers_dropped` in `status`); its
//! connection ends. Which events a subscriber gets is decided here, at publishing, from the
//! namespace chain of the event (the namespace and its ancestors, as the registry had them
//! when it happened): only those of the subscriber's own subtree.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bpfns_model::NsId;
use bpfns_proto::{EventInfo, EventKind};
use tokio::sync::{mpsc, Notify};

/// Events queued per subscriber before it is dropped.
pub const QUEUE: usize = 1024;

/// The subscribers and the counters of the stream.
#[derive(Debug, Default)]
pub struct Bus {
    subs: Mutex<Vec<Sub>>,
    dropped: AtomicU64,
    published: AtomicU64,
}

#[derive(Debug)]
struct Sub {
    /// Events of this namespace and below.
    root: NsId,
    /// Only these kinds (empty: all).
    kinds: Vec<EventKind>,
    tx: mpsc::Sender<Arc<EventInfo>>,
    dropped: Arc<Notify>,
}

/// What a subscribed connection reads: its events, and a wake-up when it was dropped.
#[derive(Debug)]
pub struct Subscription {
    pub events: mpsc::Receiver<Arc<EventInfo>>,
    pub dropped: Arc<Notify>,
}

impl Bus {
    /// Subscribe to the events of `root`'s subtree, of `kinds` (empty: all).
    pub fn subscribe(&self, root: NsId, kinds: Vec<EventKind>) -> Subscription {
        let (tx, events) = mpsc::channel(QUEUE);
        let dropped = Arc::new(Notify::new());
        self.lock().push(Sub {
            root,
            kinds,
            tx,
            dropped: Arc::clone(&dropped),
        });
        Subscription { events, dropped }
    }

    /// Whether anybody listens (events need not be assembled otherwise).
    pub fn has_subscribers(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Whether some subscriber takes events of `kind` (the kernel side writes object
    /// notices only then).
    pub fn wants(&self, kind: EventKind) -> bool {
        let mut subs = self.lock();
        subs.retain(|s| !s.tx.is_closed());
        subs.iter()
            .any(|s| s.kinds.is_empty() || s.kinds.contains(&kind))
    }

    /// Hand `ev` to every subscriber whose subtree holds it. `chain` is the event's namespace
    /// and its ancestors (the root last); an event of a namespace the registry did not know
    /// reaches the root's subscribers only.
    pub fn publish(&self, ev: EventInfo, chain: &[NsId]) {
        let mut subs = self.lock();
        if subs.is_empty() {
            return;
        }
        self.published.fetch_add(1, Ordering::Relaxed);
        let ev = Arc::new(ev);
        subs.retain(|s| {
            if s.tx.is_closed() {
                return false;
            }
            let inside = s.root == NsId::ROOT || chain.contains(&s.root);
            if !inside || !(s.kinds.is_empty() || s.kinds.contains(&ev.kind)) {
                return true;
            }
            match s.tx.try_send(Arc::clone(&ev)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        queue = QUEUE,
                        "dropped an event subscriber that does not keep up (its {QUEUE} queued \
                         events unread); it may subscribe again"
                    );
                    s.dropped.notify_one();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Subscribers dropped for not keeping up, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        let mut subs = self.lock();
        subs.retain(|s| !s.tx.is_closed());
        subs.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sub>> {
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, ns: u32) -> EventInfo {
        EventInfo::new(kind, format!("/n{ns}"), NsId(ns))
    }

    #[test]
    fn a_subscriber_gets_its_subtree_and_kinds_only() {
        let bus = Bus::default();
        let mut a = bus.subscribe(NsId(2), vec![]);
        let mut root = bus.subscribe(NsId::ROOT, vec![EventKind::Denied]);
        // /n3 under /n2; /n4 elsewhere.
        bus.publish(ev(EventKind::NsCreated, 3), &[NsId(3), NsId(2), NsId::ROOT]);
        bus.publish(ev(EventKind::Denied, 4), &[NsId(4), NsId::ROOT]);
        assert_eq!(a.events.try_recv().unwrap().ns_id, NsId(3));
        assert!(a.events.try_recv().is_err());
        assert_eq!(root.events.try_recv().unwrap().ns_id, NsId(4));
        assert!(root.events.try_recv().is_err());
        assert!(bus.wants(EventKind::ObjectCreated), "a takes every kind");
        drop(a);
        assert!(
            !bus.wants(EventKind::ObjectCreated),
            "root takes denials only"
        );
        assert!(bus.wants(EventKind::Denied));
    }

    #[test]
    fn a_full_queue_drops_the_subscriber_and_counts_it() {
        let bus = Bus::default();
        let slow = bus.subscribe(NsId::ROOT, vec![]);
        let mut fast = bus.subscribe(NsId::ROOT, vec![]);
        for i in 0..=QUEUE {
            bus.publish(ev(EventKind::Stopped, 1), &[NsId(1), NsId::ROOT]);
            // The other one keeps reading.
            assert!(fast.events.try_recv().is_ok(), "event {i}");
        }
        assert_eq!(bus.dropped(), 1);
        assert_eq!(bus.subscribers(), 1);
        drop(slow);
        drop(fast);
        assert_eq!(bus.subscribers(), 0);
    }
}
