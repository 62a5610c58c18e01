//! [`RecordLog`]: which ownership records this process has written, moved or dropped, in
//! order, so that a reader keeping a copy of the records (the supervisor's warm listing) can
//! look again at exactly those instead of reading the whole table. The kernel side's own
//! writes (at an object's creation) are not here: a reader finds those as new ids.

use std::collections::VecDeque;
use std::sync::Mutex;

use bpfns_model::ObjectKind;

/// Changes kept; a reader that falls further behind reads the whole table again.
const KEPT: usize = 1 << 14;

/// One change of the ownership record of (`kind`, `id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordChange {
    pub kind: ObjectKind,
    pub id: u32,
    /// The record was dropped because its object is gone (the collector).
    pub freed: bool,
}

#[derive(Debug)]
struct Log {
    /// Sequence number of the first change in `changes`.
    first: u64,
    changes: VecDeque<RecordChange>,
}

static LOG: Mutex<Log> = Mutex::new(Log {
    first: 0,
    changes: VecDeque::new(),
});

/// The process-wide log of record changes made through any [`crate::kernel::Kernel`].
#[derive(Debug)]
pub struct RecordLog;

impl RecordLog {
    /// Note a change (called by every write of the ownership map in this crate).
    pub fn note(kind: ObjectKind, id: u32, freed: bool) {
        let mut l = LOG.lock().unwrap_or_else(|e| e.into_inner());
        if l.changes.len() >= KEPT {
            l.changes.pop_front();
            l.first += 1;
        }
        l.changes.push_back(RecordChange { kind, id, freed });
    }

    /// The sequence number the next change will get: where a reader that has just read the
    /// whole table starts.
    pub fn end() -> u64 {
        let l = LOG.lock().unwrap_or_else(|e| e.into_inner());
        l.first + l.changes.len() as u64
    }

    /// The changes from sequence number `from` on, and where the next read starts; `None`
    /// when some of them are no longer kept (read the whole table again).
    pub fn since(from: u64) -> Option<(Vec<RecordChange>, u64)> {
        let l = LOG.lock().unwrap_or_else(|e| e.into_inner());
        let end = l.first + l.changes.len() as u64;
        if from < l.first || from > end {
            return None;
        }
        let skip = (from - l.first) as usize;
        Some((l.changes.iter().skip(skip).copied().collect(), end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_gets_what_changed_since_its_last_read() {
        let start = RecordLog::end();
        RecordLog::note(ObjectKind::Map, 7, false);
        RecordLog::note(ObjectKind::Prog, 9, true);
        let (changes, next) = RecordLog::since(start).unwrap();
        // Other tests of this process may log too: ours are there, in order.
        let ours: Vec<_> = changes
            .iter()
            .filter(|c| {
                (c.kind, c.id) == (ObjectKind::Map, 7) || (c.kind, c.id) == (ObjectKind::Prog, 9)
            })
            .collect();
        assert_eq!(ours.len(), 2);
        assert!(!ours[0].freed && ours[1].freed);
        assert!(next >= start + 2);
        // From the future: nothing kept to say.
        assert!(RecordLog::since(u64::MAX).is_none());
    }
}
