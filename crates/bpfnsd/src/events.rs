//! The audit event stream (`bpfns events`): what bpfnsd sees happen, fanned out to the
//! connections subscribed to it.
//!
//! Publishing never waits: each subscriber has a bounded queue ([`QUEUE`] events), and one
//! whose queue is full (it stopped reading, or reads slower than events come) is dropped on
//! the spot and counted ([`Bus::dropped`], `events_subscribers_dropped` in `status`); its
//! connection ends. Which events a subscriber gets is decided here, at publishing, from the
//! namespace chain of the event (the namespace and its ancestors, as the registry had them
//! when it happened): only those of the subscriber's own subtree.
//!
//! A namespace's members can make events as fast as they can call bpf() (a refused open in a
//! loop: 26 000 a second) or change their namespaces (creating and deleting child namespaces,
//! each new one with an id of its own), which would fill every subscriber's queue and get the
//! operator's stream dropped. So each tenant — a top-level namespace with everything below
//! it — may make at most [`PER_NAMESPACE_PER_SEC`] events a second: an event is counted
//! against the tenant of whoever made it (the member that changed a namespace; the namespace
//! of a kernel event), and the host's own changes are not counted. The rest are counted
//! (`events_suppressed` in `status`), and the tenant's next event that goes out says how many
//! of its events were left out before it (`suppressed`, to subscribers of the tenant or the
//! host only: deeper subscribers would learn of their siblings' activity).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bpfns_model::NsId;
use bpfns_proto::{EventInfo, EventKind};
use tokio::sync::{mpsc, Notify};

/// Events queued per subscriber before it is dropped.
pub const QUEUE: usize = 1024;

/// Events a tenant (a top-level namespace and everything below it) may make a second, unless
/// bpfnsd.toml says otherwise (`events_per_namespace_per_sec`).
pub const PER_NAMESPACE_PER_SEC: u32 = 50;

/// At most `per_sec` of something a second per namespace, counting what was left out.
#[derive(Debug)]
pub struct PerNamespace {
    per_sec: u32,
    windows: HashMap<NsId, Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    used: u32,
    /// Left out since the last one admitted.
    suppressed: u64,
}

/// Windows kept before old ones (nothing left out, a second past) are forgotten.
const WINDOWS_KEPT: usize = 4096;

impl PerNamespace {
    /// At most `per_sec` a second per namespace.
    pub fn new(per_sec: u32) -> Self {
        Self {
            per_sec,
            windows: HashMap::new(),
        }
    }

    /// Whether namespace `ns` may have one more now: `Some(n)` with `n` the ones of `ns`
    /// left out since its last one admitted, or `None` (this one is left out and counted).
    pub fn admit(&mut self, ns: NsId, now: Instant) -> Option<u64> {
        if self.windows.len() >= WINDOWS_KEPT && !self.windows.contains_key(&ns) {
            self.windows.retain(|_, w| {
                w.suppressed > 0 || now.duration_since(w.start) < Duration::from_secs(1)
            });
        }
        let w = self.windows.entry(ns).or_insert(Window {
            start: now,
            used: 0,
            suppressed: 0,
        });
        if now.duration_since(w.start) >= Duration::from_secs(1) {
            w.start = now;
            w.used = 0;
        }
        if w.used >= self.per_sec {
            w.suppressed += 1;
            return None;
        }
        w.used += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

/// The kinds made from the kernel side's object notices.
pub const OBJECT_KINDS: [EventKind; 2] = [EventKind::ObjectCreated, EventKind::ObjectGone];

/// Whether a subscription to `taken` (empty: all) takes one of `kinds`.
pub fn takes_any(taken: &[EventKind], kinds: &[EventKind]) -> bool {
    taken.is_empty() || kinds.iter().any(|k| taken.contains(k))
}

/// The tenant of a namespace chain (the namespace and its ancestors, the root last): its
/// top-level namespace; `None` for the root's own (the host is not held to a limit).
pub(crate) fn tenant_of(chain: &[NsId]) -> Option<NsId> {
    match chain {
        [.., t, last] if *last == NsId::ROOT && *t != NsId::ROOT => Some(*t),
        _ => None,
    }
}

/// The subscribers and the counters of the stream.
#[derive(Debug)]
pub struct Bus {
    subs: Mutex<Vec<Sub>>,
    dropped: AtomicU64,
    published: AtomicU64,
    limit: Mutex<PerNamespace>,
    suppressed: AtomicU64,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new(PER_NAMESPACE_PER_SEC)
    }
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
    /// A bus on which a namespace publishes at most `per_namespace_per_sec` events a second.
    pub fn new(per_namespace_per_sec: u32) -> Self {
        Self {
            subs: Mutex::default(),
            dropped: AtomicU64::new(0),
            published: AtomicU64::new(0),
            limit: Mutex::new(PerNamespace::new(per_namespace_per_sec)),
            suppressed: AtomicU64::new(0),
        }
    }

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

    /// Whether some subscriber takes events of `kind`.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.wants_any(&[kind])
    }

    /// Whether some subscriber takes events of one of `kinds` (the kernel side writes object
    /// notices only while one takes [`OBJECT_KINDS`]).
    pub fn wants_any(&self, kinds: &[EventKind]) -> bool {
        let mut subs = self.lock();
        subs.retain(|s| !s.tx.is_closed());
        subs.iter().any(|s| takes_any(&s.kinds, kinds))
    }

    /// Hand `ev` to every subscriber whose subtree holds it. `chain` is the event's namespace
    /// and its ancestors (the root last); an event of a namespace the registry did not know
    /// reaches the root's subscribers only.
    pub fn publish(&self, ev: EventInfo, chain: &[NsId]) {
        self.publish_by(ev, chain, chain);
    }

    /// [`Bus::publish`] of an event done by a task of namespace chain `actor` (the caller of
    /// a namespace change, who may be outside the event's namespace): subscribers outside
    /// `actor`'s subtree get it without the doer's pid, comm and uid (the host's processes
    /// are none of a member's business).
    pub fn publish_by(&self, ev: EventInfo, chain: &[NsId], actor: &[NsId]) {
        self.publish_limited(ev, chain, actor, tenant_of(actor));
    }

    /// [`Bus::publish_by`], counted against the limit of `tenant` (`None`: not limited). A
    /// request the host's callers make that anybody may make (a refused one: see
    /// `Daemon::on_api_denial`) counts against [`NsId::ROOT`]'s, so that an unprivileged host
    /// process refused in a loop cannot fill the operator's queue either.
    pub fn publish_limited(
        &self,
        mut ev: EventInfo,
        chain: &[NsId],
        actor: &[NsId],
        tenant: Option<NsId>,
    ) {
        let mut subs = self.lock();
        if subs.is_empty() {
            return;
        }
        if let Some(t) = tenant {
            let admitted = self
                .limit
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .admit(t, Instant::now());
            match admitted {
                None => {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(n) => ev.suppressed = (n > 0).then_some(n),
            }
        }
        self.published.fetch_add(1, Ordering::Relaxed);
        let ev = Arc::new(ev);
        // Variants without what a subscriber may not see: the doer (outside the doer's
        // subtree), the tenant's count of left-out events (below the tenant).
        let mut variants: [Option<Arc<EventInfo>>; 4] = Default::default();
        subs.retain(|s| {
            if s.tx.is_closed() {
                return false;
            }
            let inside = s.root == NsId::ROOT || chain.contains(&s.root);
            if !inside || !(s.kinds.is_empty() || s.kinds.contains(&ev.kind)) {
                return true;
            }
            let sees_doer = s.root == NsId::ROOT || actor.contains(&s.root);
            let sees_count =
                ev.suppressed.is_none() || s.root == NsId::ROOT || Some(s.root) == tenant;
            let this = match (sees_doer, sees_count) {
                (true, true) => Arc::clone(&ev),
                _ => Arc::clone(
                    variants[usize::from(sees_doer) * 2 + usize::from(sees_count)]
                        .get_or_insert_with(|| {
                            let mut e = EventInfo::clone(&ev);
                            if !sees_doer {
                                (e.pid, e.comm, e.uid) = (None, None, None);
                            }
                            if !sees_count {
                                e.suppressed = None;
                            }
                            Arc::new(e)
                        }),
                ),
            };
            match s.tx.try_send(this) {
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

    /// Events left out since start: over their namespace's [`PER_NAMESPACE_PER_SEC`].
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
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
            // Spread over namespaces: one alone is held to its limit.
            let ns = (i / PER_NAMESPACE_PER_SEC as usize) as u32 + 1;
            bus.publish(ev(EventKind::Stopped, ns), &[NsId(ns), NsId::ROOT]);
            // The other one keeps reading.
            assert!(fast.events.try_recv().is_ok(), "event {i}");
        }
        assert_eq!(bus.dropped(), 1);
        assert_eq!(bus.subscribers(), 1);
        drop(slow);
        drop(fast);
        assert_eq!(bus.subscribers(), 0);
    }

    /// One namespace flooding cannot fill an operator's queue: its events beyond the limit
    /// are left out and counted, the others' still go out, and its next one says how many.
    #[test]
    fn a_flooding_namespace_is_held_to_its_limit() {
        let bus = Bus::default();
        let mut op = bus.subscribe(NsId::ROOT, vec![]);
        for _ in 0..10 * QUEUE {
            bus.publish(ev(EventKind::Denied, 7), &[NsId(7), NsId::ROOT]);
        }
        bus.publish(ev(EventKind::Denied, 8), &[NsId(8), NsId::ROOT]);
        let mut got = Vec::new();
        while let Ok(e) = op.events.try_recv() {
            got.push(e);
        }
        assert_eq!(bus.dropped(), 0, "the operator was dropped");
        assert_eq!(
            got.iter().filter(|e| e.ns_id == NsId(7)).count(),
            PER_NAMESPACE_PER_SEC as usize
        );
        assert!(
            got.iter().any(|e| e.ns_id == NsId(8)),
            "another namespace's event"
        );
        assert_eq!(
            bus.suppressed(),
            10 * QUEUE as u64 - u64::from(PER_NAMESPACE_PER_SEC)
        );
    }

    /// A member creating and deleting child namespaces makes a new namespace id each time:
    /// its events are still held to its tenant's limit. The host's own changes are not.
    #[test]
    fn a_tenants_new_namespaces_share_its_limit() {
        let bus = Bus::default();
        let mut op = bus.subscribe(NsId::ROOT, vec![]);
        let member = [NsId(7), NsId::ROOT];
        for i in 0..10 * QUEUE as u32 {
            let child = NsId(100 + i);
            bus.publish_by(
                ev(EventKind::NsCreated, 100 + i),
                &[child, NsId(7), NsId::ROOT],
                &member,
            );
        }
        let host = [NsId::ROOT];
        for i in 0..2 * PER_NAMESPACE_PER_SEC {
            let ns = NsId(50_000 + i);
            bus.publish_by(
                ev(EventKind::NsCreated, 50_000 + i),
                &[ns, NsId::ROOT],
                &host,
            );
        }
        let mut got = Vec::new();
        while let Ok(e) = op.events.try_recv() {
            got.push(e);
        }
        assert_eq!(bus.dropped(), 0, "the operator was dropped");
        let of_member = got.iter().filter(|e| e.ns_id.0 < 50_000).count();
        assert_eq!(of_member, PER_NAMESPACE_PER_SEC as usize);
        assert_eq!(
            got.len() - of_member,
            2 * PER_NAMESPACE_PER_SEC as usize,
            "the host's changes are not limited"
        );
    }

    /// Refusals of the host's callers (anybody may ask bpfnsd something and be refused) are
    /// held to a limit of their own, the root's: they do not fill the operator's queue.
    #[test]
    fn the_hosts_refusals_are_held_to_the_roots_limit() {
        let bus = Bus::default();
        let mut op = bus.subscribe(NsId::ROOT, vec![]);
        let host = [NsId::ROOT];
        for _ in 0..10 * QUEUE {
            bus.publish_limited(ev(EventKind::Denied, 0), &host, &host, Some(NsId::ROOT));
        }
        // A tenant's own limit is apart from it.
        let member = [NsId(7), NsId::ROOT];
        bus.publish_limited(ev(EventKind::Denied, 7), &member, &member, Some(NsId(7)));
        let mut got = Vec::new();
        while let Ok(e) = op.events.try_recv() {
            got.push(e);
        }
        assert_eq!(bus.dropped(), 0, "the operator was dropped");
        assert_eq!(
            got.iter().filter(|e| e.ns_id == NsId::ROOT).count(),
            PER_NAMESPACE_PER_SEC as usize
        );
        assert!(got.iter().any(|e| e.ns_id == NsId(7)));
    }

    /// The count of left-out events goes to the tenant's and the host's subscribers only.
    #[test]
    fn the_left_out_count_stays_with_the_tenant() {
        let bus = Bus::new(1);
        let mut host = bus.subscribe(NsId::ROOT, vec![]);
        let mut tenant = bus.subscribe(NsId(7), vec![]);
        let mut deeper = bus.subscribe(NsId(8), vec![]);
        let chain8 = [NsId(8), NsId(7), NsId::ROOT];
        let chain9 = [NsId(9), NsId(7), NsId::ROOT];
        // /7/9's event goes out; /7/9's next two are left out (the tenant's limit is 1).
        bus.publish(ev(EventKind::Denied, 9), &chain9);
        bus.publish(ev(EventKind::Denied, 9), &chain9);
        bus.publish(ev(EventKind::Denied, 9), &chain9);
        // A second later, /7/8's event says 2 were left out, but not to /7/8's subscriber.
        std::thread::sleep(Duration::from_millis(1010));
        bus.publish(ev(EventKind::Denied, 8), &chain8);
        let last = |r: &mut Subscription| {
            let mut l = None;
            while let Ok(e) = r.events.try_recv() {
                l = Some(e);
            }
            l.unwrap()
        };
        assert_eq!(last(&mut host).suppressed, Some(2));
        assert_eq!(last(&mut tenant).suppressed, Some(2));
        let d = last(&mut deeper);
        assert_eq!((d.ns_id, d.suppressed), (NsId(8), None));
    }

    #[test]
    fn the_next_admitted_one_counts_what_was_left_out() {
        let mut l = PerNamespace::new(2);
        let t0 = Instant::now();
        assert_eq!(l.admit(NsId(1), t0), Some(0));
        assert_eq!(l.admit(NsId(1), t0), Some(0));
        assert_eq!(l.admit(NsId(1), t0), None);
        assert_eq!(l.admit(NsId(1), t0), None);
        assert_eq!(l.admit(NsId(2), t0), Some(0), "namespaces apart");
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.admit(NsId(1), t1), Some(2));
        assert_eq!(l.admit(NsId(1), t1), Some(0));
    }

    /// A namespace change made by the host is shown to the namespace's own subscribers
    /// without the host process that made it.
    #[test]
    fn the_doer_is_shown_only_inside_its_own_subtree() {
        let bus = Bus::default();
        let mut member = bus.subscribe(NsId(2), vec![]);
        let mut host = bus.subscribe(NsId::ROOT, vec![]);
        let mut e = ev(EventKind::NsCreated, 3);
        (e.pid, e.comm, e.uid) = (Some(17), Some("bpfns".into()), Some(0));
        bus.publish_by(e.clone(), &[NsId(3), NsId(2), NsId::ROOT], &[NsId::ROOT]);
        let m = member.events.try_recv().unwrap();
        assert_eq!((m.pid, m.comm.as_deref(), m.uid), (None, None, None));
        let h = host.events.try_recv().unwrap();
        assert_eq!(h.pid, Some(17));
        // Done by a member of /n2 itself: its subscribers see who.
        bus.publish_by(e, &[NsId(3), NsId(2), NsId::ROOT], &[NsId(2), NsId::ROOT]);
        assert_eq!(member.events.try_recv().unwrap().pid, Some(17));
    }
}
