//! `BPF_PROG_QUERY`, `BPF_TASK_FD_QUERY` and `ioctl(PERF_EVENT_IOC_QUERY_BPF)`: run by bpfnsd
//! for the caller, answered with what it may see.

use std::os::fd::{AsFd, OwnedFd};

use bpfns_model::{NsId, ObjectKind};
use bpfns_sys::caps::CapabilitySet as C;
use bpfns_sys::rawbpf;
use bpfns_sys::Errno;

use super::{Answer, Env, Ops, QueryTarget};
use crate::supervisor::attr::{
    self, off, query_reply, task_fd_name_reply, ProgQuery, QueryEntry, TaskFdQuery,
};
use crate::supervisor::worker::caller::Caller;
use crate::supervisor::View;

pub(super) fn prog_query(
    env: &Env<'_>,
    q: ProgQuery,
    target: Option<&OwnedFd>,
    netns: Option<&OwnedFd>,
) -> Answer {
    let target = match (target, netns) {
        (Some(t), _) => QueryTarget::Fd(t.as_fd()),
        (None, Some(n)) => QueryTarget::NetNs(n.as_fd()),
        (None, None) => return Answer::Error(Errno::PERM),
    };
    let answer = match env.ops.prog_query(&env.call.attr, &q, target) {
        Ok(a) => a,
        Err(e) => return Answer::Error(e),
    };
    let mut visible = Vec::with_capacity(answer.entries.len());
    for e in answer.entries {
        let ok = env
            .view
            .can_see(env.ns, ObjectKind::Prog, e.prog_id)
            .and_then(|p| {
                Ok(p && (e.link_id == 0
                    || env.view.can_see(env.ns, ObjectKind::Link, e.link_id)?))
            });
        match ok {
            Ok(true) => visible.push(e),
            Ok(false) => {}
            Err(v) => return Answer::view_failed("ownership of an attached program", v),
        }
    }
    let call = env.call;
    let reply = query_reply(visible, q.prog_cnt, q.prog_ids != 0);
    let mut writes: Vec<(u64, Vec<u8>)> = vec![
        (
            call.field(off::Q_ATTACH_FLAGS),
            answer.attach_flags.to_ne_bytes().to_vec(),
        ),
        (
            call.field(off::Q_PROG_CNT),
            reply.total.to_ne_bytes().to_vec(),
        ),
    ];
    if call.attr.len >= off::Q_REVISION + 8 {
        writes.push((
            call.field(off::Q_REVISION),
            answer.revision.to_ne_bytes().to_vec(),
        ));
    }
    let column = |f: fn(&QueryEntry) -> u32| -> Vec<u8> {
        reply.copy.iter().flat_map(|e| f(e).to_ne_bytes()).collect()
    };
    if !reply.copy.is_empty() {
        writes.push((q.prog_ids, column(|e| e.prog_id)));
        if q.prog_attach_flags != 0 {
            writes.push((q.prog_attach_flags, column(|e| e.prog_flags)));
        }
        if q.link_ids != 0 {
            writes.push((q.link_ids, column(|e| e.link_id)));
        }
        if q.link_attach_flags != 0 {
            writes.push((q.link_attach_flags, column(|e| e.link_flags)));
        }
    }
    if let Err(e) = env.write_all(&writes) {
        return Answer::Error(e);
    }
    match reply.error {
        Some(e) => Answer::Error(e),
        None => Answer::Value(0),
    }
}

pub(super) fn task_fd_query(env: &Env<'_>, q: TaskFdQuery, host_pid: u32) -> Answer {
    let (a, name) = match env.ops.task_fd_query(&env.call.attr, host_pid) {
        Ok(r) => r,
        Err(e) => return Answer::Error(e),
    };
    let prog_id = a.u32_at(off::T_PROG_ID);
    match env.view.can_see(env.ns, ObjectKind::Prog, prog_id) {
        Ok(true) => {}
        // As if no program were attached to that event.
        Ok(false) => return Answer::Error(Errno::NOENT),
        Err(e) => return Answer::view_failed("ownership of a perf event's program", e),
    }
    let call = env.call;
    let (bytes, e) = task_fd_name_reply(&name, q.buf_len, q.buf);
    let writes: [(u64, Vec<u8>); 6] = [
        (q.buf, bytes),
        (
            call.field(off::T_BUF_LEN),
            (name.len() as u32).to_ne_bytes().to_vec(),
        ),
        (call.field(off::T_PROG_ID), prog_id.to_ne_bytes().to_vec()),
        (
            call.field(off::T_FD_TYPE),
            a.u32_at(off::T_FD_TYPE).to_ne_bytes().to_vec(),
        ),
        (
            call.field(off::T_PROBE_OFFSET),
            a.u64_at(off::T_PROBE_OFFSET).to_ne_bytes().to_vec(),
        ),
        (
            call.field(off::T_PROBE_ADDR),
            a.u64_at(off::T_PROBE_ADDR).to_ne_bytes().to_vec(),
        ),
    ];
    if let Err(e) = env.write_all(&writes) {
        return Answer::Error(e);
    }
    match e {
        Some(e) => Answer::Error(e),
        None => Answer::Value(0),
    }
}

/// An `ioctl(fd, PERF_EVENT_IOC_QUERY_BPF, query)` as read from the caller.
#[derive(Debug)]
pub(in crate::supervisor::worker) struct PerfPrep {
    /// The caller's query: `ids_len`, then `prog_cnt` and `ids[]` to be written.
    uquery: u64,
    /// Its `ids_len` (an unreadable one is answered after the query, as the kernel does).
    ids_len: Result<u32, Errno>,
    /// bpfnsd's copy of the caller's fd.
    fd: OwnedFd,
    caps: C,
}

/// Read the ioctl of arguments `args` (`fd`, request, query pointer) from the caller.
pub(in crate::supervisor::worker) fn perf_prepare(
    caller: &dyn Caller,
    args: [u64; 3],
) -> Result<PerfPrep, Errno> {
    let uquery = args[2];
    let mut len = [0u8; 4];
    let ids_len = caller
        .read(uquery, &mut len)
        .map(|()| u32::from_ne_bytes(len));
    // ioctl takes `unsigned int fd`: a negative one names nothing.
    let Ok(raw) = i32::try_from(args[0] as u32) else {
        return Err(Errno::BADF);
    };
    let fd = caller.fd(raw as u32)?.ok_or(Errno::BADF)?;
    Ok(PerfPrep {
        uquery,
        ids_len,
        fd,
        caps: caller.caps_here(),
    })
}

/// Run on bpfnsd's copy of the caller's perf event with its capabilities; answered with the
/// programs a caller of `ns` can see.
pub(in crate::supervisor::worker) fn perf_query(
    ns: NsId,
    view: &dyn View,
    caller: &dyn Caller,
    ops: &dyn Ops,
    p: PerfPrep,
) -> Answer {
    // The request means something else to other files.
    if !ops.is_perf_event(p.fd.as_fd()) {
        return Answer::Error(Errno::NOTTY);
    }
    let all = match ops.perf_query(p.fd.as_fd(), p.caps) {
        Ok(ids) => ids,
        Err(e) => return Answer::Error(e),
    };
    let ids_len = match p.ids_len {
        Ok(l) => l,
        Err(e) => return Answer::Error(e),
    };
    if ids_len > rawbpf::BPF_TRACE_MAX_PROGS {
        return Answer::Error(Errno::TOOBIG);
    }
    let mut visible = Vec::with_capacity(all.len());
    for id in all {
        match view.can_see(ns, ObjectKind::Prog, id) {
            Ok(true) => visible.push(id),
            Ok(false) => {}
            Err(e) => return Answer::view_failed("ownership of a tracepoint's program", e),
        }
    }
    let (cnt, ids, e) = attr::perf_query_reply(&visible, ids_len);
    let ids: Vec<u8> = ids.iter().flat_map(|i| i.to_ne_bytes()).collect();
    for (addr, bytes) in [
        (p.uquery.wrapping_add(4), cnt.to_ne_bytes().to_vec()),
        (p.uquery.wrapping_add(8), ids),
    ] {
        if bytes.is_empty() {
            continue;
        }
        if let Err(e) = caller.write(addr, &bytes) {
            return Answer::Error(e);
        }
    }
    match e {
        Some(e) => Answer::Error(e),
        None => Answer::Value(0),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::fake::*;
    use super::super::{answer, IdCache, Prepared, QueryAnswer};
    use super::*;
    use crate::supervisor::attr::{Attr, Command, Request, ATTR_SIZE};
    use crate::supervisor::ViewError;

    const ATTR_AT: u64 = 0x10_000;
    const IDS_AT: u64 = 0x20_000;

    fn entry(prog_id: u32, link_id: u32) -> QueryEntry {
        QueryEntry {
            prog_id,
            prog_flags: 0,
            link_id,
            link_flags: 0,
        }
    }

    fn query(prog_cnt: u32) -> ProgQuery {
        ProgQuery {
            target: 5,
            attach_type: 0,
            query_flags: 0,
            prog_ids: IDS_AT,
            prog_cnt,
            prog_attach_flags: 0,
            link_ids: 0,
            link_attach_flags: 0,
        }
    }

    fn run_query(view: &FakeView, mem: &FakeCaller, ops: &FakeOps, q: ProgQuery) -> Answer {
        let mut c = call(Command::ProgQuery, Attr::zeroed(ATTR_SIZE), C::BPF);
        c.attr_ptr = ATTR_AT;
        let env = env(&c, view, mem, ops);
        let target = std::fs::File::open("/dev/null").expect("fd").into();
        answer(
            &env,
            Request::ProgQuery(q),
            Prepared::ProgQuery {
                target: Some(target),
                netns: None,
            },
            &mut IdCache::new(Duration::ZERO),
        )
    }

    fn attached(entries: Vec<QueryEntry>) -> FakeOps {
        FakeOps {
            query: Ok(QueryAnswer {
                attach_flags: 2,
                revision: 9,
                entries,
            }),
            ..FakeOps::default()
        }
    }

    #[test]
    fn a_query_reports_only_visible_programs_and_links() {
        let view = FakeView::new(ns(1))
            .visible(ObjectKind::Prog, &[1, 3, 4])
            .visible(ObjectKind::Link, &[40]);
        let ops = attached(vec![
            entry(1, 0),
            entry(2, 0),
            entry(3, 0),
            // A visible program through a foreign link: hidden too.
            entry(4, 41),
        ]);
        let mem = FakeCaller::new()
            .map(ATTR_AT, vec![0u8; ATTR_SIZE])
            .map(IDS_AT, vec![0u8; 16]);
        assert!(matches!(
            run_query(&view, &mem, &ops, query(4)),
            Answer::Value(0)
        ));
        assert_eq!(mem.u32_at(ATTR_AT + off::Q_PROG_CNT as u64), 2);
        assert_eq!(mem.u32_at(ATTR_AT + off::Q_ATTACH_FLAGS as u64), 2);
        assert_eq!(mem.u32_at(IDS_AT), 1);
        assert_eq!(mem.u32_at(IDS_AT + 4), 3);
        // Nothing past what is visible.
        assert_eq!(mem.u32_at(IDS_AT + 8), 0);
    }

    #[test]
    fn a_short_array_gets_what_fits_and_enospc() {
        let view = FakeView::new(ns(1)).visible(ObjectKind::Prog, &[1, 3]);
        let ops = attached(vec![entry(1, 0), entry(3, 0)]);
        let mem = FakeCaller::new()
            .map(ATTR_AT, vec![0u8; ATTR_SIZE])
            .map(IDS_AT, vec![0u8; 4]);
        assert!(matches!(
            run_query(&view, &mem, &ops, query(1)),
            Answer::Error(Errno::NOSPC)
        ));
        assert_eq!(mem.u32_at(ATTR_AT + off::Q_PROG_CNT as u64), 2);
        assert_eq!(mem.u32_at(IDS_AT), 1);
    }

    #[test]
    fn an_unwritable_array_is_efault_and_a_dead_caller_esrch() {
        let view = FakeView::new(ns(1)).visible(ObjectKind::Prog, &[1]);
        let ops = attached(vec![entry(1, 0)]);
        let no_array = FakeCaller::new().map(ATTR_AT, vec![0u8; ATTR_SIZE]);
        assert!(matches!(
            run_query(&view, &no_array, &ops, query(4)),
            Answer::Error(Errno::FAULT)
        ));
        let dead = FakeCaller::new()
            .map(ATTR_AT, vec![0u8; ATTR_SIZE])
            .map(IDS_AT, vec![0u8; 16])
            .dead();
        assert!(matches!(
            run_query(&view, &dead, &ops, query(4)),
            Answer::Error(Errno::SRCH)
        ));
    }

    #[test]
    fn the_kernels_refusal_and_a_failing_view_are_the_answer() {
        let view = FakeView::new(ns(1)).visible(ObjectKind::Prog, &[1]);
        let mem = FakeCaller::new().map(ATTR_AT, vec![0u8; ATTR_SIZE]);
        let refused = FakeOps {
            query: Err(Errno::BADF),
            ..FakeOps::default()
        };
        assert!(matches!(
            run_query(&view, &mem, &refused, query(4)),
            Answer::Error(Errno::BADF)
        ));
        let failing = FakeView::new(ns(1)).failing(ViewError::NoRecords);
        assert!(matches!(
            run_query(&failing, &mem, &attached(vec![entry(1, 0)]), query(4)),
            Answer::Internal { .. }
        ));
    }

    const BUF_AT: u64 = 0x30_000;

    fn task_fd(view: &FakeView, mem: &FakeCaller, buf_len: u32) -> Answer {
        let mut c = call(Command::TaskFdQuery, Attr::zeroed(ATTR_SIZE), C::BPF);
        c.attr_ptr = ATTR_AT;
        let mut kernel = Attr::zeroed(ATTR_SIZE);
        kernel.set_u32(off::T_PROG_ID, 12);
        kernel.set_u32(off::T_FD_TYPE, 6);
        let ops = FakeOps {
            task_fd: Some((kernel, b"do_sys_open".to_vec())),
            ..FakeOps::default()
        };
        let env = env(&c, view, mem, &ops);
        let q = TaskFdQuery {
            pid: 1,
            fd: 3,
            buf_len,
            buf: BUF_AT,
        };
        answer(
            &env,
            Request::TaskFdQuery(q),
            Prepared::TaskFdQuery { host_pid: 100 },
            &mut IdCache::new(Duration::ZERO),
        )
    }

    #[test]
    fn task_fd_query_answers_for_visible_programs_only() {
        let mem = FakeCaller::new()
            .map(ATTR_AT, vec![0u8; ATTR_SIZE])
            .map(BUF_AT, vec![0xffu8; 32]);
        let mine = FakeView::new(ns(1)).visible(ObjectKind::Prog, &[12]);
        assert!(matches!(task_fd(&mine, &mem, 32), Answer::Value(0)));
        assert_eq!(mem.u32_at(ATTR_AT + off::T_PROG_ID as u64), 12);
        assert_eq!(mem.u32_at(ATTR_AT + off::T_FD_TYPE as u64), 6);
        assert_eq!(mem.bytes(BUF_AT, 12), b"do_sys_open\0");
        let theirs = FakeView::new(ns(1)).visible(ObjectKind::Prog, &[13]);
        let untouched = FakeCaller::new()
            .map(ATTR_AT, vec![0u8; ATTR_SIZE])
            .map(BUF_AT, vec![0xffu8; 32]);
        assert!(matches!(
            task_fd(&theirs, &untouched, 32),
            Answer::Error(Errno::NOENT)
        ));
        // Nothing about the foreign program reached the caller.
        assert_eq!(untouched.u32_at(ATTR_AT + off::T_PROG_ID as u64), 0);
    }

    #[test]
    fn task_fd_query_truncates_a_long_name_with_enospc() {
        let mem = FakeCaller::new()
            .map(ATTR_AT, vec![0u8; ATTR_SIZE])
            .map(BUF_AT, vec![0xffu8; 32]);
        let view = FakeView::new(ns(1)).visible(ObjectKind::Prog, &[12]);
        assert!(matches!(
            task_fd(&view, &mem, 4),
            Answer::Error(Errno::NOSPC)
        ));
        assert_eq!(mem.bytes(BUF_AT, 4), b"do_\0");
        assert_eq!(mem.u32_at(ATTR_AT + off::T_BUF_LEN as u64), 11);
        // A dead caller: no write succeeds.
        let dead = FakeCaller::new()
            .map(ATTR_AT, vec![0u8; ATTR_SIZE])
            .map(BUF_AT, vec![0u8; 32])
            .dead();
        assert!(matches!(
            task_fd(&view, &dead, 32),
            Answer::Error(Errno::SRCH)
        ));
    }

    const QUERY_AT: u64 = 0x40_000;

    fn perf(view: &FakeView, mem: &FakeCaller, ops: &FakeOps) -> Answer {
        match perf_prepare(mem, [5, 0, QUERY_AT]) {
            Ok(p) => perf_query(ns(1), view, mem, ops, p),
            Err(e) => Answer::Error(e),
        }
    }

    fn perf_mem(ids_len: u32) -> FakeCaller {
        let mut q = ids_len.to_ne_bytes().to_vec();
        q.resize(8 + 4 * 8, 0);
        FakeCaller::new().map(QUERY_AT, q).with_fds(&[5])
    }

    #[test]
    fn a_perf_query_lists_visible_programs_only() {
        let view = FakeView::new(ns(1)).visible(ObjectKind::Prog, &[2, 4]);
        let ops = FakeOps {
            perf: vec![1, 2, 3, 4],
            ..FakeOps::default()
        };
        let mem = perf_mem(8);
        assert!(matches!(perf(&view, &mem, &ops), Answer::Value(0)));
        assert_eq!(mem.u32_at(QUERY_AT + 4), 2);
        assert_eq!(mem.u32_at(QUERY_AT + 8), 2);
        assert_eq!(mem.u32_at(QUERY_AT + 12), 4);
        assert_eq!(mem.u32_at(QUERY_AT + 16), 0);
    }

    #[test]
    fn perf_query_refusals() {
        let view = FakeView::new(ns(1)).visible(ObjectKind::Prog, &[2]);
        let ops = FakeOps {
            perf: vec![2],
            ..FakeOps::default()
        };
        // Not a perf event.
        let not_perf = FakeOps {
            perf_event: false,
            ..FakeOps::default()
        };
        assert!(matches!(
            perf(&view, &perf_mem(8), &not_perf),
            Answer::Error(Errno::NOTTY)
        ));
        // An fd the caller does not have; a negative one.
        let no_fd = FakeCaller::new().map(QUERY_AT, vec![0u8; 8]);
        assert!(matches!(
            perf(&view, &no_fd, &ops),
            Answer::Error(Errno::BADF)
        ));
        assert_eq!(
            perf_prepare(&perf_mem(8), [u64::from(u32::MAX), 0, QUERY_AT]).err(),
            Some(Errno::BADF)
        );
        // More ids asked for than a perf event can have.
        assert!(matches!(
            perf(&view, &perf_mem(rawbpf::BPF_TRACE_MAX_PROGS + 1), &ops),
            Answer::Error(Errno::TOOBIG)
        ));
        // An unreadable query, answered after the kernel's own checks.
        let unreadable = FakeCaller::new().with_fds(&[5]);
        assert!(matches!(
            perf(&view, &unreadable, &ops),
            Answer::Error(Errno::FAULT)
        ));
        // Room for one id: the count, the first id, ENOSPC.
        let two = FakeOps {
            perf: vec![2, 2],
            ..FakeOps::default()
        };
        let mem = perf_mem(1);
        assert!(matches!(
            perf(&view, &mem, &two),
            Answer::Error(Errno::NOSPC)
        ));
        assert_eq!(mem.u32_at(QUERY_AT + 4), 2);
    }
}
