//! `{PROG,MAP,LINK,BTF}_GET_NEXT_ID` and `_GET_FD_BY_ID`: the namespace's visible ids only.

use std::time::Instant;

use bpfns_model::ObjectKind;
use bpfns_sys::rawbpf::BPF_F_TOKEN_FD;
use bpfns_sys::Errno;

use super::{Answer, Env, IdCache, CACHE_MAX};
use crate::supervisor::attr::{next_visible, off};

/// The next visible id above `start`, written to the caller's `next_id`; `ENOENT` at the end.
pub(super) fn next_id(env: &Env<'_>, kind: ObjectKind, start: u32, cache: &mut IdCache) -> Answer {
    let key = (env.ns, kind);
    let stale = match cache.lists.get(&key) {
        None => true,
        Some((_, at)) => start == 0 || at.elapsed() > cache.ttl,
    };
    if stale {
        let ids = match env.view.visible_ids(env.ns, kind) {
            Ok(ids) => ids,
            Err(e) => return Answer::view_failed("listing visible objects", e),
        };
        if cache.lists.len() >= CACHE_MAX {
            cache.lists.clear();
        }
        cache.lists.insert(key, (ids, Instant::now()));
    }
    let next = cache
        .lists
        .get(&key)
        .and_then(|(ids, _)| next_visible(ids, start));
    match next {
        None => Answer::Error(Errno::NOENT),
        Some(id) => match env
            .caller
            .write(env.call.field(off::NEXT_ID), &id.to_ne_bytes())
        {
            Ok(()) => Answer::Value(0),
            Err(e) => Answer::Error(e),
        },
    }
}

/// The object opened here and injected if visible; `ENOENT` otherwise, as for an id that does
/// not exist.
pub(super) fn fd_by_id(
    env: &Env<'_>,
    kind: ObjectKind,
    id: u32,
    open_flags: u32,
    syslog: bool,
) -> Answer {
    match env.view.can_see(env.ns, kind, id) {
        Ok(true) => {}
        Ok(false) => {
            return Answer::Denied {
                errno: Errno::NOENT,
                why: "the id belongs to a namespace the caller cannot see (answered ENOENT, as \
                      for a missing id)",
            }
        }
        Err(e) => return Answer::view_failed("ownership of an object", e),
    }
    let mut a = env.call.attr.clone();
    if open_flags & BPF_F_TOKEN_FD != 0 {
        // The supervisor opens with its own rights; the caller's token fd means nothing here.
        a.set_u32(off::OPEN_FLAGS, open_flags & !BPF_F_TOKEN_FD);
        a.set_u32(off::TOKEN_FD, 0);
    }
    match env.ops.open_by_id(env.call.cmd.raw(), &mut a, syslog) {
        Ok(fd) => Answer::Inject(fd),
        Err(e) => Answer::Error(e),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bpfns_sys::caps::CapabilitySet as C;

    use super::super::fake::*;
    use super::super::{answer, Prepared};
    use super::*;
    use crate::supervisor::attr::{Attr, Command, Request, ATTR_SIZE};
    use crate::supervisor::ViewError;

    const ATTR_AT: u64 = 0x7000;

    fn next_call(start: u32) -> crate::supervisor::worker::caller::Call {
        let mut a = Attr::zeroed(ATTR_SIZE);
        a.set_u32(0, start);
        let mut c = call(Command::NextId(ObjectKind::Map), a, C::BPF);
        c.attr_ptr = ATTR_AT;
        c
    }

    fn walk(view: &FakeView, mem: &FakeCaller, start: u32, cache: &mut IdCache) -> Answer {
        let c = next_call(start);
        let ops = FakeOps::default();
        let env = env(&c, view, mem, &ops);
        let req = Request::NextId {
            kind: ObjectKind::Map,
            start_id: start,
        };
        answer(&env, req, Prepared::Nothing, cache)
    }

    #[test]
    fn next_id_skips_foreign_ids_and_ends_with_enoent() {
        let view = FakeView::new(ns(1)).visible(ObjectKind::Map, &[3, 10]);
        let mem = FakeCaller::new().map(ATTR_AT, vec![0u8; ATTR_SIZE]);
        let mut cache = IdCache::new(Duration::from_secs(60));
        let mut seen = Vec::new();
        let mut start = 0;
        loop {
            match walk(&view, &mem, start, &mut cache) {
                Answer::Value(0) => {
                    start = mem.u32_at(ATTR_AT + off::NEXT_ID as u64);
                    seen.push(start);
                }
                Answer::Error(e) => {
                    assert_eq!(e, Errno::NOENT);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Ids 4..9 exist but belong to other namespaces: never named.
        assert_eq!(seen, [3, 10]);
    }

    #[test]
    fn next_id_into_unwritable_memory_is_efault() {
        let view = FakeView::new(ns(1)).visible(ObjectKind::Map, &[3]);
        // The attr was readable up to next_id, not beyond.
        let mem = FakeCaller::new().map(ATTR_AT, vec![0u8; 4]);
        let mut cache = IdCache::new(Duration::from_secs(60));
        assert!(matches!(
            walk(&view, &mem, 0, &mut cache),
            Answer::Error(Errno::FAULT)
        ));
    }

    #[test]
    fn next_id_of_a_dead_caller_is_esrch() {
        let view = FakeView::new(ns(1)).visible(ObjectKind::Map, &[3]);
        let mem = FakeCaller::new().map(ATTR_AT, vec![0u8; ATTR_SIZE]).dead();
        let mut cache = IdCache::new(Duration::from_secs(60));
        assert!(matches!(
            walk(&view, &mem, 0, &mut cache),
            Answer::Error(Errno::SRCH)
        ));
    }

    #[test]
    fn next_id_fails_closed_when_the_view_fails() {
        let view = FakeView::new(ns(1)).failing(ViewError::NoRecords);
        let mem = FakeCaller::new().map(ATTR_AT, vec![0u8; ATTR_SIZE]);
        let mut cache = IdCache::new(Duration::from_secs(60));
        assert!(matches!(
            walk(&view, &mem, 0, &mut cache),
            Answer::Internal { .. }
        ));
        let gone = FakeView::new(ns(1)).failing(ViewError::Gone);
        assert!(matches!(
            walk(&gone, &mem, 0, &mut cache),
            Answer::Error(Errno::SRCH)
        ));
    }

    #[test]
    fn a_walk_from_zero_sees_new_objects_and_a_continued_walk_reuses_its_list() {
        let mem = FakeCaller::new().map(ATTR_AT, vec![0u8; ATTR_SIZE]);
        let mut cache = IdCache::new(Duration::from_secs(60));
        let view = FakeView::new(ns(1)).visible(ObjectKind::Map, &[3]);
        assert!(matches!(walk(&view, &mem, 0, &mut cache), Answer::Value(0)));
        let grown = FakeView::new(ns(1)).visible(ObjectKind::Map, &[3, 5]);
        // Within the walk: the cached list, which ends at 3.
        assert!(matches!(
            walk(&grown, &mem, 3, &mut cache),
            Answer::Error(Errno::NOENT)
        ));
        // A new walk lists again.
        assert!(matches!(
            walk(&grown, &mem, 0, &mut cache),
            Answer::Value(0)
        ));
        assert!(matches!(
            walk(&grown, &mem, 3, &mut cache),
            Answer::Value(0)
        ));
        assert_eq!(mem.u32_at(ATTR_AT + off::NEXT_ID as u64), 5);
    }

    fn open(view: &FakeView, ops: &FakeOps, id: u32, open_flags: u32) -> Answer {
        let mut a = Attr::zeroed(ATTR_SIZE);
        a.set_u32(0, id);
        a.set_u32(off::OPEN_FLAGS, open_flags);
        let c = call(Command::FdById(ObjectKind::Map), a, C::BPF);
        let mem = FakeCaller::new();
        let env = env(&c, view, &mem, ops);
        let req = Request::FdById {
            kind: ObjectKind::Map,
            id,
            open_flags,
        };
        answer(
            &env,
            req,
            Prepared::FdById { syslog: false },
            &mut IdCache::new(Duration::ZERO),
        )
    }

    #[test]
    fn fd_by_id_opens_visible_ids_and_answers_foreign_ones_like_missing_ones() {
        let view = FakeView::new(ns(1)).visible(ObjectKind::Map, &[3]);
        let ops = FakeOps::default();
        assert!(matches!(open(&view, &ops, 3, 0), Answer::Inject(_)));
        assert_eq!(ops.opened(), [3]);
        assert!(matches!(
            open(&view, &ops, 4, 0),
            Answer::Denied {
                errno: Errno::NOENT,
                ..
            }
        ));
        // Never opened.
        assert_eq!(ops.opened(), [3]);
    }

    #[test]
    fn fd_by_id_drops_the_callers_token() {
        let view = FakeView::new(ns(1)).visible(ObjectKind::Map, &[3]);
        let ops = FakeOps::default();
        assert!(matches!(
            open(&view, &ops, 3, BPF_F_TOKEN_FD),
            Answer::Inject(_)
        ));
        assert_eq!(ops.last_open_flags(), Some(0));
    }

    #[test]
    fn fd_by_id_passes_the_kernels_error_on() {
        let view = FakeView::new(ns(1)).visible(ObjectKind::Map, &[3]);
        let ops = FakeOps {
            open_error: Some(Errno::NOENT),
            ..FakeOps::default()
        };
        // Visible, but gone by the time it is opened.
        assert!(matches!(
            open(&view, &ops, 3, 0),
            Answer::Error(Errno::NOENT)
        ));
        let failing = FakeView::new(ns(1)).failing(ViewError::Gone);
        assert!(matches!(
            open(&failing, &FakeOps::default(), 3, 0),
            Answer::Error(Errno::SRCH)
        ));
    }
}
