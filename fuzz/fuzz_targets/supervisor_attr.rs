//! The supervisor's reading of a trapped bpf() call (`bpfnsd::supervisor::attr`, as
//! the worker uses it). The input is the call: `cmd`, `size`, the caller's effective
//! capabilities, then its memory at the attr pointer (layout: `bpfns_fuzz::attr_input`).
//! Steps, as the worker takes them: `Command::from_raw(cmd)`; `read_len(size)`; an `Attr`
//! of that many bytes from the caller's memory, zero-padded; `parse(cmd, &attr)` (the
//! kernel's CHECK_ATTR and flag checks); the capability rule; then the pure decision for the
//! request: `next_visible` over a visible-id list, the FD_BY_ID token rewrite, the copies of
//! the attr the worker hands the kernel (`widened` + `set_*`), `query_reply` over a query's
//! entries, `task_fd_name_reply` over a perf event's name.
//!
//! Properties: nothing panics; errors are the kernel's (`E2BIG`, `EINVAL`); what `parse`
//! accepts obeys the kernel's rules; parsing depends only on the kernel's view of the attr
//! (explicit zero padding changes nothing); the worker's rewritten copies still parse; the
//! decision functions keep the kernel's reply rules.
#![no_main]

use bpfns_fuzz::{le_u32, le_u64, ATTR_INPUT_HEADER};
use bpfns_model::{Field, Policy, TypeSet};
use bpfns_sys::caps::CapabilitySet as C;
use bpfns_sys::rawbpf::{BPF_F_PATH_FD, BPF_F_RDONLY, BPF_F_TOKEN_FD, BPF_F_WRONLY};
use bpfns_sys::Errno;
use bpfnsd::supervisor::attr::{
    self, off, parse, read_len, Attr, Command, QueryEntry, Request, ATTR_SIZE,
    BPF_F_QUERY_EFFECTIVE, TRAPPED,
};
use libfuzzer_sys::fuzz_target;

/// The worker's bounds (`QUERY_MAX`, `NAME_MAX` in worker/answer.rs).
const QUERY_MAX: u32 = 1 << 16;
const NAME_MAX: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let raw_cmd = le_u32(data, 0);
    let size = le_u64(data, 4);
    let eff = C::from_bits_retain(le_u64(data, 12));
    let mem = data.get(ATTR_INPUT_HEADER..).unwrap_or(&[]);

    // Untrapped commands never reach the supervisor (the filter allows them; were one to
    // arrive, the answer is ENOSYS).
    let Some(cmd) = Command::from_raw(raw_cmd) else {
        assert!(!TRAPPED.contains(&raw_cmd) && raw_cmd != attr::MAP_CREATE);
        return;
    };
    // BPF_MAP_CREATE is trapped too where a namespace's policy restricts map types.
    assert!(TRAPPED.contains(&raw_cmd) || raw_cmd == attr::MAP_CREATE);
    assert_eq!(cmd.raw(), raw_cmd);
    assert!(cmd.name().starts_with("BPF_"));

    // The read of the caller's attr.
    let len = match read_len(size) {
        Ok(len) => len,
        Err(e) => {
            assert_eq!(e, Errno::TOOBIG);
            assert!(size as u32 as usize > 4096);
            return;
        }
    };
    assert_eq!(len, (size as u32 as usize).min(ATTR_SIZE));
    let mut attr = Attr::zeroed(len);
    let n = len.min(mem.len());
    attr.supplied_mut()[..n].copy_from_slice(&mem[..n]);
    assert_eq!(attr.len, len);
    assert_eq!(Attr::from_bytes(attr.supplied()), attr);
    let aux = mem.get(len..).unwrap_or(&[]);

    let parsed = parse(cmd, &attr);
    // The kernel sees the attr zero-padded: padding it explicitly changes nothing.
    assert_eq!(parse(cmd, &attr.widened(ATTR_SIZE)), parsed);
    let req = match parsed {
        Ok(r) => r,
        Err(e) => {
            assert_eq!(e, Errno::INVAL);
            return;
        }
    };

    // The capability rule (DESIGN point 5): listing and opening needs CAP_BPF or
    // CAP_SYS_ADMIN; queries also accept CAP_NET_ADMIN.
    let ids = attr::may_use_ids(eff);
    assert_eq!(ids, eff.intersects(C::BPF | C::SYS_ADMIN));
    assert!(!ids || attr::may_query(eff));
    assert_eq!(
        attr::may_query(eff),
        eff.intersects(C::BPF | C::SYS_ADMIN | C::NET_ADMIN)
    );

    match req {
        Request::NextId { kind, start_id } => {
            assert_eq!(cmd, Command::NextId(kind));
            assert_eq!(start_id, attr.u32_at(off::ID));
            assert!(start_id < i32::MAX as u32);
            let mut visible: Vec<u32> = aux.chunks_exact(4).map(|c| le_u32(c, 0)).collect();
            visible.sort_unstable();
            visible.dedup();
            let above = || visible.iter().copied().filter(move |&id| id > start_id);
            assert_eq!(attr::next_visible(&visible, start_id), above().next());
            // A walk visits every visible id above the start once, ascending, and ends.
            let mut cur = start_id;
            let mut walked = Vec::new();
            while let Some(id) = attr::next_visible(&visible, cur) {
                assert!(id > cur);
                walked.push(id);
                cur = id;
            }
            assert!(above().eq(walked));
        }
        Request::FdById {
            kind,
            id,
            open_flags,
        } => {
            assert_eq!(cmd, Command::FdById(kind));
            assert_eq!(id, attr.u32_at(off::ID));
            // The supervisor opens with its own rights: a token is dropped from its copy,
            // which must still be a valid request for the same object.
            let mut a = attr.clone();
            let dropped = open_flags & BPF_F_TOKEN_FD != 0;
            if dropped {
                a.set_u32(off::OPEN_FLAGS, open_flags & !BPF_F_TOKEN_FD);
                a.set_u32(off::TOKEN_FD, 0);
            }
            // The token's field is written even where the caller's attr ends before it (the
            // kernel reads zeros there): the copy then reaches that field's end, no further.
            let want = if dropped {
                attr.len.max(off::TOKEN_FD + 4)
            } else {
                attr.len
            };
            assert_eq!(a.len, want);
            match parse(cmd, &a) {
                Ok(Request::FdById {
                    kind: k,
                    id: i,
                    open_flags: f,
                }) => {
                    assert_eq!((k, i), (kind, id));
                    assert_eq!(f & BPF_F_TOKEN_FD, 0);
                }
                r => panic!("the rewritten FD_BY_ID attr is refused: {r:?}"),
            }
        }
        Request::ObjGet {
            pathname,
            file_flags,
            path_fd,
        } => {
            assert_eq!(cmd, Command::ObjGet);
            assert_eq!(pathname, attr.u64_at(off::PATHNAME));
            assert_eq!(attr.u32_at(off::BPF_FD), 0);
            assert_eq!(file_flags & !(BPF_F_RDONLY | BPF_F_WRONLY), 0);
            assert_ne!(file_flags, BPF_F_RDONLY | BPF_F_WRONLY);
            let with_fd = attr.u32_at(off::FILE_FLAGS) & BPF_F_PATH_FD != 0;
            assert_eq!(path_fd.is_some(), with_fd);
            assert_eq!(path_fd.unwrap_or(0), attr.u32_at(off::PATH_FD) as i32);
        }
        Request::ProgQuery(q) => {
            assert_eq!(cmd, Command::ProgQuery);
            assert_eq!(q.query_flags & !BPF_F_QUERY_EFFECTIVE, 0);
            let _ = attr::query_target_is_ifindex(q.attach_type);
            // run_query's copy: widened to prog_cnt, the target and our buffers put in.
            let mut a = attr.widened(off::Q_PROG_CNT + 4);
            a.set_u32(off::Q_TARGET, 3);
            a.set_u64(off::Q_PROG_IDS, 0x7f00_0000_1000);
            a.set_u32(off::Q_PROG_CNT, q.prog_cnt.clamp(16, QUERY_MAX));
            if q.prog_attach_flags != 0 {
                a.set_u64(off::Q_PROG_ATTACH_FLAGS, 0x7f00_0000_2000);
            }
            if q.link_ids != 0 {
                a.set_u64(off::Q_LINK_IDS, 0x7f00_0000_3000);
            }
            if q.link_attach_flags != 0 {
                a.set_u64(off::Q_LINK_ATTACH_FLAGS, 0x7f00_0000_4000);
            }
            assert!(a.len >= off::Q_PROG_CNT + 4);
            assert!(
                matches!(parse(cmd, &a), Ok(Request::ProgQuery(_))),
                "the worker's PROG_QUERY copy is refused"
            );
            // The kernel's answer (entries from the input), all visible; the reply rules.
            let visible: Vec<QueryEntry> = aux
                .chunks_exact(16)
                .take(QUERY_MAX as usize)
                .map(|c| QueryEntry {
                    prog_id: le_u32(c, 0),
                    prog_flags: le_u32(c, 4),
                    link_id: le_u32(c, 8),
                    link_flags: le_u32(c, 12),
                })
                .collect();
            let total = visible.len();
            let reply = attr::query_reply(visible.clone(), q.prog_cnt, q.prog_ids != 0);
            assert_eq!(reply.total as usize, total);
            assert_eq!(reply.copy[..], visible[..reply.copy.len()]);
            if q.prog_cnt == 0 || q.prog_ids == 0 {
                assert!(reply.copy.is_empty());
                assert_eq!(reply.error, None);
            } else {
                assert_eq!(reply.copy.len(), (q.prog_cnt as usize).min(total));
                let short = (q.prog_cnt as usize) < total;
                assert_eq!(reply.error, short.then_some(Errno::NOSPC));
            }
        }
        Request::TaskFdQuery(t) => {
            assert_eq!(cmd, Command::TaskFdQuery);
            assert_eq!(attr.u32_at(off::T_FLAGS), 0);
            assert_eq!(
                (t.pid, t.fd, t.buf_len, t.buf),
                (
                    attr.u32_at(off::T_PID),
                    attr.u32_at(off::T_FD),
                    attr.u32_at(off::T_BUF_LEN),
                    attr.u64_at(off::T_BUF)
                )
            );
            // task_fd_query's copy: widened to buf, the host pid and our buffer put in.
            let mut a = attr.widened(off::T_BUF + 8);
            a.set_u32(off::T_PID, 1);
            a.set_u32(off::T_BUF_LEN, 4096);
            a.set_u64(off::T_BUF, 0x7f00_0000_1000);
            assert!(
                matches!(parse(cmd, &a), Ok(Request::TaskFdQuery(_))),
                "the worker's TASK_FD_QUERY copy is refused"
            );
            // The name the kernel gave us (from the input), copied back by the kernel's rule.
            let name = &aux[..aux.len().min(NAME_MAX)];
            let (bytes, e) = attr::task_fd_name_reply(name, t.buf_len, t.buf);
            if t.buf == 0 || t.buf_len == 0 {
                assert!(bytes.is_empty());
                assert_eq!(e, None);
            } else {
                let room = t.buf_len as usize;
                let fits = room > name.len();
                assert_eq!(bytes.len(), if fits { name.len() + 1 } else { room });
                assert_eq!(bytes.last(), Some(&0));
                assert_eq!(bytes[..bytes.len() - 1], name[..bytes.len() - 1]);
                assert_eq!(e, (!fits).then_some(Errno::NOSPC));
            }
        }
        Request::ProgLoad(p) => {
            assert_eq!(cmd, Command::ProgLoad);
            assert_eq!((p.prog_type, p.insn_cnt), (attr.u32_at(0), attr.u32_at(4)));
        }
        Request::Attach(a) | Request::Detach(a) => {
            assert!(matches!(cmd, Command::ProgAttach | Command::ProgDetach));
            assert_eq!(
                (a.target, a.attach_bpf_fd, a.attach_type, a.flags),
                (
                    attr.u32_at(off::A_TARGET),
                    attr.u32_at(off::A_ATTACH_BPF_FD),
                    attr.u32_at(off::A_ATTACH_TYPE),
                    attr.u32_at(off::A_ATTACH_FLAGS)
                )
            );
        }
        Request::LinkCreate(l) => {
            assert_eq!(cmd, Command::LinkCreate);
            assert_eq!(
                (l.prog_fd, l.target, l.attach_type, l.flags, l.relative),
                (
                    attr.u32_at(off::LC_PROG_FD),
                    attr.u32_at(off::LC_TARGET),
                    attr.u32_at(off::LC_ATTACH_TYPE),
                    attr.u32_at(off::LC_FLAGS),
                    attr.u32_at(off::LC_RELATIVE)
                )
            );
            // What bpfnsd makes itself holds no pointer; a relative fd only where the
            // attach type takes an anchor.
            if attr::link_relative_is_fd(&l) {
                assert!(attr::link_target(l.attach_type).is_some());
            }
        }
        Request::LinkUpdate(u) => {
            assert_eq!(cmd, Command::LinkUpdate);
            assert_eq!(
                (u.link_fd, u.new_fd, u.flags, u.old_fd),
                (
                    attr.u32_at(off::LU_LINK_FD),
                    attr.u32_at(off::LU_NEW_FD),
                    attr.u32_at(off::LU_FLAGS),
                    attr.u32_at(off::LU_OLD_FD)
                )
            );
        }
        Request::LinkDetach { link_fd } => {
            assert_eq!(cmd, Command::LinkDetach);
            assert_eq!(link_fd, attr.u32_at(off::LU_LINK_FD));
        }
        Request::BtfLoad(b) => {
            assert_eq!(cmd, Command::BtfLoad);
            assert_eq!(b.btf, attr.u64_at(off::B_BTF));
            assert_eq!(b.btf_size, attr.u32_at(off::B_SIZE));
            // The log bpfnsd passes is never larger than the caller's, nor than its cap.
            if let Ok(n) = b.log_len() {
                assert!(n as u64 <= u64::from(b.log_size));
            }
        }
        Request::MapCreate(ref m) => {
            let map_type = m.map_type;
            assert_eq!(cmd, Command::MapCreate);
            assert_eq!(map_type, attr.u32_at(off::M_MAP_TYPE));
            assert_eq!(m.map_flags, attr.u32_at(off::M_MAP_FLAGS));
            // Every fd field is either resolved by the kernel (bpfnsd puts its copy there) or
            // not (bpfnsd puts a number no process has there, where it is not 0): never both.
            let used: Vec<usize> = m.used_fds().iter().map(|(o, _)| *o).collect();
            assert!(m.unused_fds().iter().all(|(o, _)| !used.contains(o)));
            assert_eq!(used.len() + m.unused_fds().len(), 3);
            // A policy's map types refuse exactly the types outside them (those of 64 and
            // more cannot be listed, so only "any" or "all but" sets allow them).
            let mut p = Policy::HOST;
            assert_eq!(attr::policy_refusal(&p, cmd, &req), None);
            p.maps = TypeSet::of([map_type]);
            let refused = (map_type >= 64).then_some((Field::Maps, map_type));
            assert_eq!(attr::policy_refusal(&p, cmd, &req), refused);
            p.maps = TypeSet::NONE;
            assert_eq!(
                attr::policy_refusal(&p, cmd, &req),
                Some((Field::Maps, map_type))
            );
            p.cmds = TypeSet::ANY.minus(TypeSet::of([raw_cmd]));
            assert_eq!(
                attr::policy_refusal(&p, cmd, &req),
                Some((Field::Cmds, raw_cmd))
            );
        }
    }
});
