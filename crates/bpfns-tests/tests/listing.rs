//! Listings never miss a live object: the kernel side's iterators are read while objects of
//! all four kinds are created and destroyed around them, and every object the test knows was
//! alive for the whole read must be in it.
//!
//! What an id walk (`BPF_*_GET_NEXT_ID`) and an iterator disagree on is objects that are not
//! (or not yet) alive, never live ones:
//! - a link whose last reference goes from an atomic context (an unpinned link is put from the
//!   RCU callback that frees its bpffs inode) keeps its id in the kernel's IDR until a deferred
//!   work item runs: the walk still returns it, while the iterator, which takes a reference
//!   first, skips it — and so does `BPF_LINK_GET_FD_BY_ID` (`ENOENT`);
//! - a link in the middle of its creation is in the IDR before its id is set
//!   (`bpf_link_prime`, then `bpf_link_settle`): the walk returns its id, the iterator sees it
//!   with id 0 (the kernel side lists it once it has one), and opening it gives `EAGAIN`.
//!
//! On a slow machine (QEMU/TCG) both windows last long enough for a test to see them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bpfns_model::ObjectKind;
use bpfns_sys::bpf as sysbpf;
use bpfns_tests::{require_kernel, TempPin, TestKernel};
use libbpf_rs::libbpf_sys as sys;

/// One object of `kind`, with whatever keeps it alive.
fn create(kind: ObjectKind, n: u64) -> Vec<OwnedFd> {
    let name = format!("lst{n}");
    match kind {
        ObjectKind::Map => {
            vec![sysbpf::map_create(sys::BPF_MAP_TYPE_ARRAY, &name, 4, 8, 1).unwrap()]
        }
        ObjectKind::Prog => vec![sysbpf::prog_load(
            sys::BPF_PROG_TYPE_SOCKET_FILTER,
            &name,
            &sysbpf::RETURN_ZERO,
            Default::default(),
        )
        .unwrap()],
        ObjectKind::Btf => vec![sysbpf::btf_load(&sysbpf::minimal_btf()).unwrap()],
        ObjectKind::Link => {
            // A raw tracepoint link on a tracepoint that fires only for hung tasks: unlike
            // sk_lookup links (64 per network namespace), as many as the test likes.
            let p = sysbpf::prog_load(
                sys::BPF_PROG_TYPE_RAW_TRACEPOINT,
                &name,
                &sysbpf::RETURN_ZERO,
                Default::default(),
            )
            .unwrap();
            let l = sysbpf::raw_tracepoint_open("sched_process_hang", &p).unwrap();
            vec![l, p]
        }
    }
}

fn id_of(kind: ObjectKind, fd: &OwnedFd) -> u32 {
    match kind {
        ObjectKind::Map => sysbpf::info::<sysbpf::bpf_map_info>(fd).unwrap().id,
        ObjectKind::Prog => sysbpf::info::<sysbpf::bpf_prog_info>(fd).unwrap().id,
        ObjectKind::Link => sysbpf::info::<sysbpf::bpf_link_info>(fd).unwrap().id,
        ObjectKind::Btf => sysbpf::info::<sysbpf::bpf_btf_info>(fd).unwrap().id,
    }
}

/// When an object was known to exist: from just after its creation returned until just
/// before its last fd was closed (`None`: still open).
#[derive(Clone, Copy)]
struct Life {
    born: Instant,
    closing: Option<Instant>,
}

type Lives = Arc<Mutex<BTreeMap<(ObjectKind, u32), Life>>>;

/// Create and destroy objects of `kind` until `stop`, keeping the last `keep` alive.
fn churn(kind: ObjectKind, keep: usize, lives: Lives, stop: Arc<AtomicBool>) {
    let mut held: std::collections::VecDeque<(u32, Vec<OwnedFd>)> = Default::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let fds = create(kind, n);
        let id = id_of(kind, &fds[0]);
        lives.lock().unwrap().insert(
            (kind, id),
            Life {
                born: Instant::now(),
                closing: None,
            },
        );
        held.push_back((id, fds));
        if held.len() > keep {
            let (old, fds) = held.pop_front().unwrap();
            lives.lock().unwrap().get_mut(&(kind, old)).unwrap().closing = Some(Instant::now());
            drop(fds);
        }
    }
}

#[test]
fn listing_under_churn_never_misses_a_live_object() {
    require_kernel!();
    let tk = TestKernel::load("listing-churn");
    let lives: Lives = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = ObjectKind::ALL
        .into_iter()
        .map(|kind| {
            let (l, s) = (lives.clone(), stop.clone());
            std::thread::spawn(move || churn(kind, 16, l, s))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut reads = 0u32;
    let mut checked = 0usize;
    while Instant::now() < deadline {
        for kind in ObjectKind::ALL {
            let t0 = Instant::now();
            let listed: BTreeSet<u32> =
                tk.kernel.list(kind).unwrap().iter().map(|o| o.id).collect();
            let t1 = Instant::now();
            reads += 1;
            let alive: Vec<u32> = lives
                .lock()
                .unwrap()
                .iter()
                .filter(|((k, _), l)| *k == kind && l.born < t0 && l.closing.is_none_or(|c| c > t1))
                .map(|((_, id), _)| *id)
                .collect();
            checked += alive.len();
            let missed: Vec<u32> = alive
                .into_iter()
                .filter(|id| !listed.contains(id))
                .collect();
            assert!(
                missed.is_empty(),
                "{kind}: read {reads} missed live objects {missed:?}"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let made = lives.lock().unwrap().len();
    eprintln!("{reads} listings, {checked} live objects checked, {made} objects made");
    assert!(made > 100 && checked > 100, "too little churn to judge");
}

/// An id walk returns objects the iterator rightly leaves out: a link that was unpinned (its
/// last reference) is dead — not openable by id — though a walk may still return its id for a
/// while, and a link in the middle of its creation is walked before it has an id (opening it
/// gives `EAGAIN`). Every object the test holds an fd of while the listing is read must be in
/// it; whatever a walk returned and the test could not open is dead or not yet born.
#[test]
fn the_listing_has_every_held_object_and_omits_only_dead_or_unborn_ones() {
    require_kernel!();
    let tk = TestKernel::load("listing-dying");
    let mut omitted = 0;
    for round in 0..200u64 {
        let pin = TempPin::new(&format!("dying-{round}"));
        {
            let fds = create(ObjectKind::Link, round);
            sysbpf::obj_pin(&fds[0], &pin.0).unwrap();
        }
        // The pin is the last reference: unpinning puts the link from an RCU callback.
        std::fs::remove_file(&pin.0).unwrap();
        let walked = sysbpf::all_ids(ObjectKind::Link).unwrap();
        // Held across the listing: these cannot die meanwhile.
        let held: Vec<(u32, OwnedFd)> = walked
            .iter()
            .filter_map(|id| Some((*id, sysbpf::fd_by_id(ObjectKind::Link, *id).ok()?)))
            .collect();
        let listed: BTreeSet<u32> = tk
            .kernel
            .list(ObjectKind::Link)
            .unwrap()
            .iter()
            .map(|o| o.id)
            .collect();
        for (id, _) in &held {
            assert!(
                listed.contains(id),
                "round {round}: link {id} was held open during the listing but not listed"
            );
        }
        omitted += walked.iter().filter(|id| !listed.contains(id)).count();
        drop(held);
    }
    // Not asserted: whether the windows show depends on the machine's RCU and workqueues.
    eprintln!("walked but not listed (dead or unborn) links seen: {omitted}");
}
