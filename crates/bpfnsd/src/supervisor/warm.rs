//! [`Warm`]: the owners of every prog, map and link, kept up to date between walks, so that
//! a `GET_NEXT_ID` walk starts from a namespace's visible-id list at once instead of reading
//! every object on the host (the kernel side's iterator: milliseconds for 10 000 objects).
//!
//! It is read whole once (and again every [`REFRESH`]), and brought up to date at every walk
//! start and, when [`super::KernelView::keep_warm`] runs, every [`CATCH_UP`] off the walk
//! path (so that a walk finds little new):
//! - objects created since: ids above the highest known (ids grow until they wrap at
//!   `INT_MAX`), found with `GET_NEXT_ID` and their records looked up (a burst of creations
//!   is read whole instead, see [`WHOLE_SHARE`]);
//! - records bpfnsd itself wrote, moved or dropped (a namespace's deletion, its own loads, the
//!   collector): looked up again, as [`RecordLog`] lists them;
//! - records the kernel side writes after an object is found: an object's record is written
//!   when the call that created it returns, and a program or map is quarantined right after
//!   its record is written, so objects found without a record, programs and maps are looked
//!   up again for [`YOUNG`] after they were found (and whatever a walk found otherwise than a
//!   whole read made meanwhile), at each walk start after the kernel side's record
//!   counter moved (the counter is read before any record is looked up, so a record written
//!   after a look-up always shows as a moved counter later).
//!
//! What a walk sees is what the whole read would have shown at its start, except:
//! an object freed since is still listed until the collector drops its record or the next
//! whole read (opening it answers `ENOENT`, as for any id that vanishes during a walk); an
//! object whose creating call takes longer than [`YOUNG`] from getting its id to returning
//! is listed from the next whole read on; ids that wrapped around are found by the next whole
//! read. Nothing is listed that the namespace could not see: owners come from the records,
//! looked up at the latest at each walk start while they can still change.
//! The visible list of each (namespace, kind) is kept too, until the objects or the
//! registry change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bpfns_kernel::kernel::RecordChange;
use bpfns_model::{NsId, ObjectKind, Registry, Visibility};

use super::ViewError;

/// How often everything is read again.
pub const REFRESH: Duration = Duration::from_secs(10);
/// How often the keeping thread brings the lists up to date between whole reads.
pub const CATCH_UP: Duration = Duration::from_secs(1);
/// How long a newly found object's record is looked up again when the kernel side has
/// written records since. The kernel side writes a record (and quarantines a program) as the
/// creating call returns, microseconds after the object got its id; whatever comes later
/// still shows at the next whole read.
pub const YOUNG: Duration = Duration::from_secs(1);
/// At the first whole read, the newest this many ids are taken as newly found.
const FIRST_YOUNG: usize = 256;
/// Visible lists kept (namespace × kind).
const VIEWS_MAX: usize = 1024;
/// From this many records to look up at once, and at least 1/[`BATCH_SHARE`] of the records
/// a whole read would go through, every record is read in one go instead
/// ([`Source::owners`]): after a burst of creations, thousands of look-ups (two system calls
/// each with the walk) cost several times one batched read of the table. The table's size is
/// what the last such read found (records of every kind, and of freed objects not yet
/// collected, which a member can make many of), so that a big table is not read at every
/// walk start for a few hundred look-ups.
const BATCH_FROM: usize = 128;
const BATCH_SHARE: usize = 16;
/// A walk start that has found [`BATCH_FROM`] new ids, and at least 1/[`WHOLE_SHARE`] of the
/// objects known, stops looking for more and reads the kind whole: finding each new id is a
/// `GET_NEXT_ID` (~1 µs) and its record a look-up, while the whole read costs ~0.9 µs per
/// object and brings every owner with it. Stopping early bounds what a burst of any size
/// costs the walk that finds it (about an eighth of a whole read more than the read) instead
/// of one call per new object (measured after 9 000 creations among 10 000 maps: 18–40 ms
/// before, 8–9 ms for the read).
const WHOLE_SHARE: usize = 8;

/// The owners of `ids` as their records name them now: one look-up each, or one read of every
/// record where that is cheaper; `table` is the size of the table as last read, and is updated
/// when it is read again.
fn owners_of(
    src: &dyn Source,
    kind: ObjectKind,
    ids: &[u32],
    known: usize,
    table: &mut usize,
) -> Result<Vec<NsId>, ViewError> {
    if ids.len() >= BATCH_FROM && ids.len() * BATCH_SHARE >= known.max(*table) {
        let (all, read) = src.owners(kind)?;
        *table = read;
        return Ok(ids
            .iter()
            .map(|id| all.get(id).copied().unwrap_or(NsId::ROOT))
            .collect());
    }
    ids.iter().map(|&id| src.owner(kind, id)).collect()
}

/// Where the owners come from (the kernel side; a fake in tests).
pub trait Source {
    /// Every object of `kind` with its owner (the whole read).
    fn all(&self, kind: ObjectKind) -> Result<Vec<(u32, NsId)>, ViewError>;
    /// The next existing id of `kind` above `after`.
    fn next_id(&self, kind: ObjectKind, after: u32) -> Result<Option<u32>, ViewError>;
    /// The owner its record names (the root without one).
    fn owner(&self, kind: ObjectKind, id: u32) -> Result<NsId, ViewError>;
    /// Every record of `kind`, read at once (a few system calls where the kernel reads a
    /// table in batches): for many look-ups together. Also how many records were read in all
    /// (every kind's, and those of objects freed but not yet collected): what the read cost.
    fn owners(&self, kind: ObjectKind) -> Result<(HashMap<u32, NsId>, usize), ViewError>;
    /// A count that grows whenever the kernel side writes or quarantines a record.
    fn record_writes(&self) -> Result<u64, ViewError>;
    /// Where the record log ends now.
    fn log_end(&self) -> u64;
    /// The record changes from `from` on, and where the next read starts; `None` if some
    /// are no longer kept.
    fn log_since(&self, from: u64) -> Option<(Vec<RecordChange>, u64)>;
}

struct Known {
    owners: BTreeMap<u32, NsId>,
    high: u32,
    /// Ids to look up again when the kernel side has written records since, and when they
    /// were found.
    young: Vec<(u32, Instant)>,
    /// [`Source::record_writes`] when `young` was last looked up (`None`: look again).
    writes_seen: Option<u64>,
    read_at: Instant,
    /// Bumped whenever `owners` changes.
    version: u64,
}

/// Versions of every [`Known`]: never reused, so a kept visible list never matches a later
/// state by accident.
static VERSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_version() -> u64 {
    VERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Known {
    fn set(&mut self, id: u32, owner: NsId) {
        if self.owners.insert(id, owner) != Some(owner) {
            self.version = next_version();
        }
    }

    fn remove(&mut self, id: u32) {
        if self.owners.remove(&id).is_some() {
            self.version = next_version();
        }
    }
}

/// A visible list: the [`Known::version`] and registry generation it was computed from.
type View = (u64, u64, Arc<Vec<u32>>);

#[derive(Default)]
struct State {
    known: HashMap<ObjectKind, Known>,
    log_pos: Option<u64>,
    views: HashMap<(NsId, ObjectKind), View>,
    /// Records the last read of every record went through (see [`owners_of`]).
    table: usize,
}

/// See the module documentation.
#[derive(Default)]
pub struct Warm {
    state: Mutex<State>,
}

impl std::fmt::Debug for Warm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warm").finish_non_exhaustive()
    }
}

/// Whose record may still change right after it is found: an object without one (its
/// creating call has not returned), and programs and maps, which the kernel side quarantines
/// right after writing their record when their type is outside the namespace's policy.
fn young_kind(kind: ObjectKind, owner: NsId) -> bool {
    owner == NsId::ROOT || kind != ObjectKind::Link
}

impl Warm {
    /// The sorted ids of `kind` visible from `viewer`, as of now.
    pub fn visible(
        &self,
        src: &dyn Source,
        viewer: NsId,
        kind: ObjectKind,
        registry: &Registry,
        registry_generation: u64,
    ) -> Result<Arc<Vec<u32>>, ViewError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = Self::sync(&mut st, src, kind) {
            // Start over at the next walk.
            st.known.clear();
            st.views.clear();
            return Err(e);
        }
        let version = st.known.get(&kind).map_or(0, |k| k.version);
        if let Some((v, g, ids)) = st.views.get(&(viewer, kind)) {
            if *v == version && *g == registry_generation {
                return Ok(Arc::clone(ids));
            }
        }
        let vis = Visibility::new(registry, viewer);
        let ids: Arc<Vec<u32>> = Arc::new(
            st.known
                .get(&kind)
                .map(|k| {
                    k.owners
                        .iter()
                        .filter(|(_, o)| vis.can_see(**o))
                        .map(|(id, _)| *id)
                        .collect()
                })
                .unwrap_or_default(),
        );
        if st.views.len() >= VIEWS_MAX {
            st.views.clear();
        }
        st.views.insert(
            (viewer, kind),
            (version, registry_generation, Arc::clone(&ids)),
        );
        Ok(ids)
    }

    /// Every object of `kind` and its owner, sorted by id, as of now (as a walk start would
    /// see them: see the module documentation for an object freed since the last whole read).
    pub fn owners(
        &self,
        src: &dyn Source,
        kind: ObjectKind,
    ) -> Result<Vec<(u32, NsId)>, ViewError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = Self::sync(&mut st, src, kind) {
            st.known.clear();
            st.views.clear();
            return Err(e);
        }
        Ok(st
            .known
            .get(&kind)
            .map(|k| k.owners.iter().map(|(&id, &owner)| (id, owner)).collect())
            .unwrap_or_default())
    }

    /// Read `kind` whole again (off the walk path: the read is made without the lock).
    pub fn refresh(&self, src: &dyn Source, kind: ObjectKind) -> Result<(), ViewError> {
        let from = src.log_end();
        let writes = src.record_writes()?;
        let all = src.all(kind)?;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.log_pos.is_none() {
            // The first read: walks go on from the log as it was before it.
            st.log_pos = Some(from);
        }
        Self::install(&mut st, kind, all, writes);
        // What bpfnsd changed while it read: looked up again (the others' log position
        // stays; looking up twice changes nothing).
        let Some((changes, _)) = src.log_since(from) else {
            st.known.remove(&kind);
            return Ok(());
        };
        let r = Self::apply(&mut st, src, &changes, Some(kind));
        if r.is_err() {
            st.known.remove(&kind);
        }
        r
    }

    fn sync(st: &mut State, src: &dyn Source, kind: ObjectKind) -> Result<(), ViewError> {
        // bpfnsd's own record changes, for every kind known.
        match st.log_pos.and_then(|p| src.log_since(p)) {
            Some((changes, next)) => {
                Self::apply(st, src, &changes, None)?;
                st.log_pos = Some(next);
            }
            None => {
                // Too far behind (or never read): read everything again.
                st.known.clear();
                st.log_pos = Some(src.log_end());
            }
        }
        let stale = st
            .known
            .get(&kind)
            .is_none_or(|k| k.read_at.elapsed() > REFRESH * 3);
        if stale {
            let writes = src.record_writes()?;
            let all = src.all(kind)?;
            Self::install(st, kind, all, writes);
        }
        let Some(k) = st.known.get_mut(&kind) else {
            return Ok(());
        };
        let now = Instant::now();
        k.young.retain(|(_, at)| now.duration_since(*at) <= YOUNG);
        // Objects created since: their ids first (until reading everything is cheaper), then
        // their records.
        let mut new_ids = Vec::new();
        let mut after = k.high;
        let mut burst = false;
        while let Some(id) = src.next_id(kind, after)? {
            new_ids.push(id);
            after = id;
            if new_ids.len() >= BATCH_FROM && new_ids.len() * WHOLE_SHARE >= k.owners.len() {
                burst = true;
                break;
            }
        }
        if new_ids.is_empty() && k.young.is_empty() {
            k.writes_seen = None;
            return Ok(());
        }
        // The kernel side's record count, read before any record below: a record written
        // after this read shows as another count at a later walk start, which looks up
        // everything young again; one written before it is seen by the look-ups here.
        let writes = src.record_writes()?;
        if burst {
            let all = src.all(kind)?;
            Self::install(st, kind, all, writes);
            return Ok(());
        }
        // Young from earlier walk starts: looked up again if records were written since.
        let earlier = k.young.len();
        let owners = owners_of(
            src,
            kind,
            &new_ids,
            k.owners.len() + new_ids.len(),
            &mut st.table,
        )?;
        for (&id, owner) in new_ids.iter().zip(owners) {
            k.set(id, owner);
            if young_kind(kind, owner) {
                k.young.push((id, now));
            }
            k.high = id;
        }
        if earlier > 0 && k.writes_seen != Some(writes) {
            let ids: Vec<u32> = k.young[..earlier]
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| k.owners.contains_key(id))
                .collect();
            let owners = owners_of(src, kind, &ids, k.owners.len(), &mut st.table)?;
            for (id, owner) in ids.into_iter().zip(owners) {
                k.set(id, owner);
            }
        }
        k.writes_seen = (!k.young.is_empty()).then_some(writes);
        Ok(())
    }

    /// Bring `kind` up to date now (off the walk path), as a walk start would.
    pub fn catch_up(&self, src: &dyn Source, kind: ObjectKind) -> Result<(), ViewError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !st.known.contains_key(&kind) {
            return Ok(());
        }
        let r = Self::sync(&mut st, src, kind);
        if r.is_err() {
            st.known.clear();
            st.views.clear();
        }
        r
    }

    /// Put a whole read of `kind` in place; `writes` is the kernel side's record count read
    /// before it.
    fn install(st: &mut State, kind: ObjectKind, all: Vec<(u32, NsId)>, writes: u64) {
        let now = Instant::now();
        let old = st.known.remove(&kind);
        let owners: BTreeMap<u32, NsId> = all.into_iter().collect();
        let high = owners.keys().next_back().copied().unwrap_or(0);
        let young: Vec<(u32, Instant)> = match &old {
            // Found since the last read, and what was young then (with its age); and what a
            // walk looked up while this read was made without the lock and found otherwise
            // than the read did (the read may be the older of the two: looked up again at the
            // next walk start, as the record count has moved since it was read).
            Some(o) => {
                let mut y: Vec<(u32, Instant)> = o
                    .young
                    .iter()
                    .filter(|(id, at)| now.duration_since(*at) <= YOUNG && owners.contains_key(id))
                    .copied()
                    .collect();
                let mut in_y: HashSet<u32> = y.iter().map(|(id, _)| *id).collect();
                for (&id, &owner) in owners.range(o.high.saturating_add(1)..) {
                    if young_kind(kind, owner) && in_y.insert(id) {
                        y.push((id, now));
                    }
                }
                // Both sorted by id: compared in one pass.
                let mut was = o.owners.iter().peekable();
                for (&id, &owner) in owners.range(..=o.high) {
                    while was.next_if(|(&w, _)| w < id).is_some() {}
                    if was.peek().is_some_and(|(&w, &wo)| w == id && wo != owner) && in_y.insert(id)
                    {
                        y.push((id, now));
                    }
                }
                y
            }
            None => owners
                .iter()
                .rev()
                .take(FIRST_YOUNG)
                .filter(|(_, ow)| young_kind(kind, **ow))
                .map(|(id, _)| (*id, now))
                .collect(),
        };
        let same = old.as_ref().is_some_and(|o| o.owners == owners);
        st.known.insert(
            kind,
            Known {
                owners,
                high,
                // The read looked every record up after the count was read.
                writes_seen: (!young.is_empty()).then_some(writes),
                young,
                read_at: now,
                // The same owners as before: the visible lists computed from them still hold.
                version: match &old {
                    Some(o) if same => o.version,
                    _ => next_version(),
                },
            },
        );
    }

    /// Look up again what `changes` name (only for `only`, if given).
    fn apply(
        st: &mut State,
        src: &dyn Source,
        changes: &[RecordChange],
        only: Option<ObjectKind>,
    ) -> Result<(), ViewError> {
        for c in changes {
            if only.is_some_and(|k| k != c.kind) {
                continue;
            }
            let Some(k) = st.known.get_mut(&c.kind) else {
                continue;
            };
            if c.freed {
                k.remove(c.id);
            } else if k.owners.contains_key(&c.id) {
                let owner = src.owner(c.kind, c.id)?;
                k.set(c.id, owner);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use bpfns_model::NsPath;

    use super::*;

    /// A host: objects with owners (records), and bpfnsd's record log.
    #[derive(Default)]
    struct Host {
        objects: RefCell<BTreeMap<u32, NsId>>,
        log: RefCell<Vec<RecordChange>>,
        reads: RefCell<usize>,
        writes: RefCell<u64>,
        /// Records looked up one by one, and read all at once.
        lookups: RefCell<usize>,
        batches: RefCell<usize>,
        /// `GET_NEXT_ID` calls.
        next_ids: RefCell<usize>,
        /// A whole read made earlier, and the record count read before it: what the next
        /// `all` (and the `record_writes` before it) answers, as a read made without the lock
        /// that a walk overtook.
        earlier_read: RefCell<Option<Vec<(u32, NsId)>>>,
        earlier_writes: RefCell<Option<u64>>,
        /// Records of freed objects not yet collected, which a whole read goes through too.
        stale: RefCell<usize>,
    }

    impl Host {
        /// An object and its record, as the kernel side writes it.
        fn put(&self, id: u32, owner: NsId) {
            self.objects.borrow_mut().insert(id, owner);
            *self.writes.borrow_mut() += 1;
        }
        fn logged(&self, id: u32, owner: NsId) {
            self.put(id, owner);
            self.log.borrow_mut().push(RecordChange {
                kind: ObjectKind::Map,
                id,
                freed: false,
            });
        }
    }

    impl Source for Host {
        fn all(&self, _: ObjectKind) -> Result<Vec<(u32, NsId)>, ViewError> {
            *self.reads.borrow_mut() += 1;
            if let Some(read) = self.earlier_read.borrow_mut().take() {
                return Ok(read);
            }
            Ok(self
                .objects
                .borrow()
                .iter()
                .map(|(a, b)| (*a, *b))
                .collect())
        }
        fn next_id(&self, _: ObjectKind, after: u32) -> Result<Option<u32>, ViewError> {
            *self.next_ids.borrow_mut() += 1;
            Ok(self
                .objects
                .borrow()
                .range(after.saturating_add(1)..)
                .next()
                .map(|(id, _)| *id))
        }
        fn owners(&self, _: ObjectKind) -> Result<(HashMap<u32, NsId>, usize), ViewError> {
            *self.batches.borrow_mut() += 1;
            let all: HashMap<u32, NsId> = self
                .objects
                .borrow()
                .iter()
                .map(|(a, b)| (*a, *b))
                .collect();
            let read = all.len() + *self.stale.borrow();
            Ok((all, read))
        }
        fn owner(&self, _: ObjectKind, id: u32) -> Result<NsId, ViewError> {
            *self.lookups.borrow_mut() += 1;
            Ok(self
                .objects
                .borrow()
                .get(&id)
                .copied()
                .unwrap_or(NsId::ROOT))
        }
        fn record_writes(&self) -> Result<u64, ViewError> {
            if let Some(w) = self.earlier_writes.borrow_mut().take() {
                return Ok(w);
            }
            Ok(*self.writes.borrow())
        }
        fn log_end(&self) -> u64 {
            self.log.borrow().len() as u64
        }
        fn log_since(&self, from: u64) -> Option<(Vec<RecordChange>, u64)> {
            let l = self.log.borrow();
            let from = usize::try_from(from).ok().filter(|&f| f <= l.len())?;
            Some((l[from..].to_vec(), l.len() as u64))
        }
    }

    struct Fixture {
        reg: Registry,
        a: NsId,
        child: NsId,
        b: NsId,
    }

    fn fixture() -> Fixture {
        let mut reg = Registry::new();
        let a = reg.create(&NsPath::parse("/a").unwrap()).unwrap();
        let child = reg.create(&NsPath::parse("/a/c").unwrap()).unwrap();
        let b = reg.create(&NsPath::parse("/b").unwrap()).unwrap();
        Fixture { reg, a, child, b }
    }

    /// A host with objects 1..=`n` of /b, read once (nothing of /a seen).
    fn read_with_others(n: u32) -> (Fixture, Host, Warm) {
        let f = fixture();
        let h = Host::default();
        for id in 1..=n {
            h.put(id, f.b);
        }
        let w = Warm::default();
        assert!(seen(&w, &h, &f, f.a, 0).is_empty());
        forget_young(&w);
        (f, h, w)
    }

    /// As if everything had been found more than [`YOUNG`] ago.
    fn forget_young(w: &Warm) {
        for k in w.state.lock().unwrap().known.values_mut() {
            k.young.clear();
        }
    }

    fn seen(w: &Warm, h: &Host, f: &Fixture, viewer: NsId, gen: u64) -> Vec<u32> {
        w.visible(h, viewer, ObjectKind::Map, &f.reg, gen)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn a_namespace_sees_its_own_and_its_descendants_objects_only() {
        let f = fixture();
        let h = Host::default();
        h.put(1, f.a);
        h.put(2, f.child);
        h.put(3, f.b);
        h.put(4, NsId::ROOT);
        h.put(5, NsId::QUARANTINE);
        let w = Warm::default();
        assert_eq!(seen(&w, &h, &f, f.a, 0), [1, 2]);
        assert_eq!(seen(&w, &h, &f, f.child, 0), [2]);
        assert_eq!(seen(&w, &h, &f, f.b, 0), [3]);
        assert_eq!(seen(&w, &h, &f, NsId::ROOT, 0), [1, 2, 3, 4, 5]);
        // One whole read for all of it.
        assert_eq!(*h.reads.borrow(), 1);
    }

    #[test]
    fn every_owner_is_given_as_of_now_without_a_second_whole_read() {
        let f = fixture();
        let h = Host::default();
        h.put(1, f.a);
        h.put(2, f.b);
        let w = Warm::default();
        assert_eq!(w.owners(&h, ObjectKind::Map).unwrap(), [(1, f.a), (2, f.b)]);
        // Made since, and a record bpfnsd moved: seen at the next call, from the log and one
        // look-up, not from reading everything again.
        h.put(3, f.child);
        h.logged(1, f.b);
        assert_eq!(
            w.owners(&h, ObjectKind::Map).unwrap(),
            [(1, f.b), (2, f.b), (3, f.child)]
        );
        assert_eq!(*h.reads.borrow(), 1);
        // What the walks see is the same.
        assert_eq!(seen(&w, &h, &f, f.b, 0), [1, 2]);
    }

    #[test]
    fn new_objects_are_found_without_reading_everything_again() {
        let f = fixture();
        let h = Host::default();
        h.put(1, f.a);
        let w = Warm::default();
        assert_eq!(seen(&w, &h, &f, f.a, 0), [1]);
        h.put(7, f.a);
        h.put(8, f.b);
        assert_eq!(seen(&w, &h, &f, f.a, 0), [1, 7]);
        assert_eq!(*h.reads.borrow(), 1);
    }

    #[test]
    fn a_burst_of_new_objects_is_looked_up_in_one_read() {
        let (f, h, w) = read_with_others(5000);
        // A few: one look-up each, once.
        h.put(5001, f.a);
        h.put(5002, NsId::ROOT);
        assert_eq!(seen(&w, &h, &f, f.a, 0), [5001]);
        assert_eq!((*h.lookups.borrow(), *h.batches.borrow()), (2, 0));
        // Hundreds (fewer than a whole read is worth), among them some whose records come
        // later: every record read at once.
        for id in 5003..=5600 {
            h.put(id, if id % 2 == 0 { f.a } else { NsId::ROOT });
        }
        let mine: Vec<u32> = [5001]
            .into_iter()
            .chain((5003..=5600).filter(|i| i % 2 == 0))
            .collect();
        assert_eq!(seen(&w, &h, &f, f.a, 0), mine);
        assert_eq!(*h.batches.borrow(), 1, "found and looked up in one read");
        // (5001 and 5002, young from the first walk start, looked up again: records were
        // written.)
        assert_eq!(*h.lookups.borrow(), 4);
        // Their records written: the young are looked up again and seen.
        for id in (5003..=5600).filter(|i| i % 2 == 1) {
            h.put(id, f.a);
        }
        assert_eq!(
            seen(&w, &h, &f, f.a, 0),
            [5001].into_iter().chain(5003..=5600).collect::<Vec<_>>()
        );
        assert_eq!(*h.reads.borrow(), 1);
    }

    #[test]
    fn a_burst_of_an_eighth_of_what_is_known_is_read_whole() {
        let (f, h, w) = read_with_others(200);
        let ids_before = *h.next_ids.borrow();
        for id in 201..=5200 {
            h.put(id, if id % 2 == 0 { f.a } else { NsId::ROOT });
        }
        let mine: Vec<u32> = (201..=5200).filter(|i| i % 2 == 0).collect();
        assert_eq!(seen(&w, &h, &f, f.a, 0), mine);
        // Not 5 000 ids found one by one and their records looked up: the search stops and
        // everything is read again, once.
        assert_eq!(*h.reads.borrow(), 2);
        assert!(*h.next_ids.borrow() - ids_before <= BATCH_FROM + 1);
        assert_eq!((*h.lookups.borrow(), *h.batches.borrow()), (0, 0));
        // Nothing written since: the next walk start looks nothing up again.
        assert_eq!(seen(&w, &h, &f, f.a, 0), mine);
        assert_eq!((*h.lookups.borrow(), *h.batches.borrow()), (0, 0));
        // The records of those found without one, written later, are seen.
        for id in (201..=5200).filter(|i| i % 2 == 1) {
            h.put(id, f.a);
        }
        assert_eq!(seen(&w, &h, &f, f.a, 0), (201..=5200).collect::<Vec<_>>());
        assert_eq!(*h.reads.borrow(), 2);
    }

    #[test]
    fn a_found_object_is_looked_up_once_until_records_are_written() {
        let (f, h, w) = read_with_others(10);
        // Found without a record: looked up once when found, not again at the same walk start.
        h.objects.borrow_mut().insert(11, NsId::ROOT);
        assert!(seen(&w, &h, &f, f.a, 0).is_empty());
        assert_eq!(*h.lookups.borrow(), 1);
        // Nothing written: nothing looked up again.
        assert!(seen(&w, &h, &f, f.a, 0).is_empty());
        assert_eq!(*h.lookups.borrow(), 1);
        // Its record written: looked up again and seen.
        h.put(11, f.a);
        assert_eq!(seen(&w, &h, &f, f.a, 0), [11]);
        assert_eq!(*h.lookups.borrow(), 2);
    }

    #[test]
    fn a_table_full_of_stale_records_is_not_read_for_a_few_hundred() {
        let (f, h, w) = read_with_others(5000);
        // A burst, read at once: and the read says the table holds 100 000 records.
        *h.stale.borrow_mut() = 100_000;
        for id in 5001..=5400 {
            h.put(id, f.a);
        }
        assert_eq!(seen(&w, &h, &f, f.a, 0).len(), 400);
        assert_eq!(*h.batches.borrow(), 1);
        // Another burst of the same size: looked up one by one now.
        let before = *h.lookups.borrow();
        for id in 5401..=5800 {
            h.put(id, f.a);
        }
        assert_eq!(seen(&w, &h, &f, f.a, 0).len(), 800);
        assert_eq!(*h.batches.borrow(), 1);
        // The 400 new, and the 400 young maps of the first burst again (records written).
        assert_eq!(*h.lookups.borrow() - before, 800);
        assert_eq!(*h.reads.borrow(), 1);
    }

    #[test]
    fn a_map_quarantined_right_after_its_record_is_no_longer_listed() {
        let (f, h, w) = read_with_others(10);
        h.put(11, f.a);
        assert_eq!(seen(&w, &h, &f, f.a, 0), [11]);
        // Its type is outside the policy: the kernel side quarantines it after recording it.
        h.put(11, NsId::QUARANTINE);
        assert!(seen(&w, &h, &f, f.a, 0).is_empty());
        assert_eq!(*h.reads.borrow(), 1);
    }

    #[test]
    fn a_whole_read_overtaken_by_a_walk_does_not_undo_what_the_walk_found() {
        let (f, h, w) = read_with_others(3);
        // Created; its record not written yet. A whole read starts now (without the lock).
        h.objects.borrow_mut().insert(5, NsId::ROOT);
        let earlier: Vec<(u32, NsId)> = h.objects.borrow().iter().map(|(a, b)| (*a, *b)).collect();
        let count = *h.writes.borrow();
        // Meanwhile a walk finds it, its record is written, another walk sees it as /a's.
        assert!(seen(&w, &h, &f, f.a, 0).is_empty());
        h.put(5, f.a);
        assert_eq!(seen(&w, &h, &f, f.a, 0), [5]);
        forget_young(&w);
        // The read lands, older than what the walk looked up.
        *h.earlier_read.borrow_mut() = Some(earlier);
        *h.earlier_writes.borrow_mut() = Some(count);
        w.refresh(&h, ObjectKind::Map).unwrap();
        assert_eq!(seen(&w, &h, &f, f.a, 0), [5]);
    }

    #[test]
    fn a_record_written_after_its_object_was_found_is_seen() {
        let f = fixture();
        let h = Host::default();
        h.put(1, f.a);
        let w = Warm::default();
        assert_eq!(seen(&w, &h, &f, f.a, 0), [1]);
        // Created, its record not written yet (its creating call has not returned).
        h.put(2, NsId::ROOT);
        assert_eq!(seen(&w, &h, &f, f.a, 0), [1]);
        h.put(2, f.a);
        assert_eq!(seen(&w, &h, &f, f.a, 0), [1, 2]);
        // The same at the very first read.
        let w = Warm::default();
        h.put(3, NsId::ROOT);
        assert_eq!(seen(&w, &h, &f, f.a, 0), [1, 2]);
        h.put(3, f.a);
        assert_eq!(seen(&w, &h, &f, f.a, 0), [1, 2, 3]);
    }

    #[test]
    fn records_bpfnsd_changes_are_looked_up_again() {
        let (f, h, w) = read_with_others(300);
        // An old object (not among the newest) given to /a: only the log says so.
        h.logged(5, f.a);
        assert_eq!(seen(&w, &h, &f, f.a, 0), [5]);
        // And taken away again.
        h.logged(5, f.b);
        assert!(seen(&w, &h, &f, f.a, 0).is_empty());
        // Dropped by the collector: no longer listed.
        h.logged(6, f.a);
        assert_eq!(seen(&w, &h, &f, f.a, 0), [6]);
        h.objects.borrow_mut().remove(&6);
        h.log.borrow_mut().push(RecordChange {
            kind: ObjectKind::Map,
            id: 6,
            freed: true,
        });
        assert!(seen(&w, &h, &f, f.a, 0).is_empty());
        assert_eq!(*h.reads.borrow(), 1);
    }

    #[test]
    fn a_quarantined_program_is_no_longer_listed() {
        let f = fixture();
        let h = Host::default();
        h.put(1, f.a);
        let w = Warm::default();
        let progs = |w: &Warm| {
            w.visible(&h, f.a, ObjectKind::Prog, &f.reg, 0)
                .unwrap()
                .to_vec()
        };
        assert_eq!(progs(&w), [1]);
        h.put(2, f.a);
        assert_eq!(progs(&w), [1, 2]);
        // The kernel side quarantines it right after writing its record.
        h.put(2, NsId::QUARANTINE);
        assert_eq!(progs(&w), [1]);
    }

    #[test]
    fn a_changed_registry_is_seen_at_once() {
        let mut f = fixture();
        let h = Host::default();
        h.put(1, f.child);
        let w = Warm::default();
        assert_eq!(seen(&w, &h, &f, f.a, 0), [1]);
        // /a/c deleted (its record not moved yet): the next generation is computed again.
        f.reg.delete(&NsPath::parse("/a/c").unwrap()).unwrap();
        assert_eq!(seen(&w, &h, &f, f.a, 0), [1], "same generation: kept");
        assert!(seen(&w, &h, &f, f.a, 1).is_empty());
    }

    #[test]
    fn a_walk_after_a_refresh_reads_nothing_whole() {
        let f = fixture();
        let h = Host::default();
        h.put(1, f.a);
        let w = Warm::default();
        w.refresh(&h, ObjectKind::Map).unwrap();
        h.logged(1, f.b);
        h.put(2, f.a);
        assert_eq!(seen(&w, &h, &f, f.a, 0), [2]);
        assert_eq!(*h.reads.borrow(), 1);
        // Refreshed again: the same answer, the objects found since kept.
        w.refresh(&h, ObjectKind::Map).unwrap();
        assert_eq!(seen(&w, &h, &f, f.a, 0), [2]);
        assert_eq!(*h.reads.borrow(), 2);
    }

    #[test]
    fn a_lost_log_reads_everything_again() {
        let f = fixture();
        let h = Host::default();
        h.put(1, f.a);
        let w = Warm::default();
        assert_eq!(seen(&w, &h, &f, f.a, 0), [1]);
        // The log moved on past what it keeps.
        h.log.borrow_mut().clear();
        w.state.lock().unwrap().log_pos = Some(5);
        h.put(1, f.b);
        assert!(seen(&w, &h, &f, f.a, 0).is_empty());
        assert_eq!(*h.reads.borrow(), 2);
    }
}
