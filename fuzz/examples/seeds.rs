//! Writes seed inputs for the fuzz targets, made from real messages and real attrs, to
//! `fuzz/corpus/<target>/seed-*`, or with a directory argument to `DIR/<target>/seed-*` (run
//! from anywhere: `cargo run --manifest-path fuzz/Cargo.toml --example seeds [DIR]`).
//! `scripts/fuzz.sh seed` runs this and then minimises each corpus; `scripts/fuzz.sh smoke`
//! runs it into a scratch directory and fuzzes from those seeds too, so that a protocol change
//! the generator does not follow fails the fuzz lane. Every operation and reply has a seed
//! (checked here), and every seed made from a message round-trips as the proto targets demand.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use bpfns_fuzz::{attr_input, round_trip};
use bpfns_model::quota::KindLimits;
use bpfns_model::{NsId, ObjectKind, Policy, TypeSet};
use bpfns_proto::*;
use bpfns_sys::rawbpf::{BPF_F_PATH_FD, BPF_F_RDONLY, BPF_F_TOKEN_FD, BPF_F_WRONLY};
use bpfnsd::supervisor::attr::{self, off, ATTR_SIZE};

/// A frame of `msg`, checked first the way the proto targets check what decodes (it
/// round-trips), so that a seed the targets would reject fails here, naming the message.
fn frame<T>(msg: &T) -> Vec<u8>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    round_trip(msg);
    encode(msg, usize::MAX).expect("encodes")
}

/// The variant of `op`, by an exhaustive match: a new operation does not compile here until it
/// is listed, and then `requests` must give it a seed.
fn op_variant(op: &Op) -> usize {
    match op {
        Op::Hello => 0,
        Op::NsCreate { .. } => 1,
        Op::NsSetQuota { .. } => 2,
        Op::NsSetPolicy { .. } => 3,
        Op::NsDelete { .. } => 4,
        Op::NsList => 5,
        Op::NsShow { .. } => 6,
        Op::MemberPlan { .. } => 7,
        Op::Enter { .. } => 8,
        Op::EnterContainer { .. } => 9,
        Op::ContainerNamespace { .. } => 10,
        Op::ContainerDeleted { .. } => 11,
        Op::ContainerBpffs { .. } => 12,
        Op::Supervise { .. } => 13,
        Op::List { .. } => 14,
        Op::EnableStats => 15,
        Op::Show { .. } => 16,
        Op::GetFd { .. } => 17,
        Op::Status => 18,
        Op::WhyStopped { .. } => 19,
        Op::NsPs { .. } => 20,
        Op::NsIdentify { .. } => 21,
        Op::Events { .. } => 22,
    }
}
const OP_VARIANTS: usize = 23;

/// The same for replies.
fn reply_variant(r: &Reply) -> usize {
    match r {
        Reply::Hello { .. } => 0,
        Reply::Namespace(_) => 1,
        Reply::StatsEnabled => 2,
        Reply::MemberPlan(_) => 3,
        Reply::Namespaces { .. } => 4,
        Reply::Deleted { .. } => 5,
        Reply::Entered { .. } => 6,
        Reply::Supervised { .. } => 7,
        Reply::Objects { .. } => 8,
        Reply::Object(_) => 9,
        Reply::Fd { .. } => 10,
        Reply::Status(_) => 11,
        Reply::Stopped { .. } => 12,
        Reply::Processes { .. } => 13,
        Reply::Process(_) => 14,
        Reply::ContainerNamespace { .. } => 15,
        Reply::Subscribed { .. } => 16,
        Reply::Event(_) => 17,
        Reply::ContainerReleased { .. } => 18,
    }
}
const REPLY_VARIANTS: usize = 19;

/// Panics naming the variants `seen` lacks.
fn all_covered(what: &str, seen: impl IntoIterator<Item = usize>, n: usize) {
    let seen: BTreeSet<usize> = seen.into_iter().collect();
    let missing: Vec<usize> = (0..n).filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "fuzz/examples/seeds.rs: no seed for {what} variant(s) {missing:?} \
         (numbered as in {what}_variant); add one"
    );
}

/// A policy of all four sets, as `bpfns ns create --delegate-*` makes one: every command but
/// BPF_TOKEN_CREATE (36), hash and array maps (1, 2), socket filter and cgroup skb programs
/// (1, 8), cgroup inet ingress and egress (0, 1).
fn four_set_policy() -> Policy {
    Policy {
        cmds: TypeSet::ANY.minus(TypeSet::of([36])),
        maps: TypeSet::of([1, 2]),
        progs: TypeSet::of([1, 8]),
        attachs: TypeSet::of([0, 1]),
    }
}

fn limits() -> KindLimits {
    KindLimits {
        max_progs: Some(8),
        max_maps: Some(16),
        max_links: None,
        max_btf: Some(2),
    }
}

fn requests() -> Vec<Vec<u8>> {
    let ops = vec![
        Op::Hello,
        Op::NsCreate {
            path: "/a".into(),
            policy: Policy::default(),
            max_objects: None,
            limits: KindLimits::NONE,
            cgroup: None,
        },
        Op::NsCreate {
            path: "/team-a/ci/job-7".into(),
            policy: four_set_policy(),
            max_objects: Some(64),
            limits: limits(),
            cgroup: Some("/bpfns.slice/job-7".into()),
        },
        Op::NsCreate {
            path: "/t".into(),
            policy: Policy::tracing(true),
            max_objects: Some(0),
            limits: KindLimits {
                max_links: Some(0),
                ..KindLimits::NONE
            },
            cgroup: None,
        },
        Op::NsSetQuota {
            path: "/a".into(),
            max_objects: Some(128),
            limits: limits(),
        },
        Op::NsSetQuota {
            path: "/a/b".into(),
            max_objects: None,
            limits: KindLimits {
                max_maps: Some(4),
                ..KindLimits::NONE
            },
        },
        Op::NsSetPolicy {
            path: "/a".into(),
            policy: four_set_policy(),
        },
        Op::NsSetPolicy {
            path: "/a/b".into(),
            policy: Policy {
                cmds: TypeSet::NONE,
                maps: TypeSet::NONE,
                progs: TypeSet::NONE,
                attachs: TypeSet::NONE,
            },
        },
        Op::NsSetPolicy {
            path: "/t".into(),
            policy: Policy::HOST,
        },
        Op::NsDelete {
            path: "/a".into(),
            force: false,
        },
        Op::NsDelete {
            path: "/a/b".into(),
            force: true,
        },
        Op::NsList,
        Op::NsShow { path: "/".into() },
        Op::MemberPlan {
            path: "/team-a/ci/job-7".into(),
        },
        Op::Enter {
            path: "/a".into(),
            pid: 4242,
        },
        Op::EnterContainer {
            path: "/containers/web".into(),
            pid: 5151,
        },
        Op::ContainerNamespace {
            id: "3f2a9c0b7d1e".into(),
            name: Some("web".into()),
            annotations: [("io.bpfns.namespace".to_string(), "/team-a/web".to_string())]
                .into_iter()
                .collect(),
            bundle: Some("/run/containers/storage/overlay-containers/3f2a9c0b7d1e/userdata".into()),
            state_dir: Some("/run/crun/3f2a9c0b7d1e".into()),
        },
        Op::ContainerDeleted {
            id: "3f2a9c0b7d1e".into(),
            state_dir: Some("/run/crun/3f2a9c0b7d1e".into()),
        },
        Op::ContainerBpffs {
            path: "/containers/web".into(),
            pid: 5151,
        },
        Op::Supervise { pid: 4242 },
        Op::List {
            kind: ObjectKind::Map,
            namespace: None,
            recursive: false,
            run_stats: false,
        },
        Op::List {
            kind: ObjectKind::Prog,
            namespace: Some("/a".into()),
            recursive: true,
            run_stats: true,
        },
        Op::EnableStats,
        Op::Show {
            kind: ObjectKind::Prog,
            id: 17,
        },
        Op::GetFd {
            kind: ObjectKind::Map,
            id: 9,
            read_only: true,
        },
        Op::GetFd {
            kind: ObjectKind::Link,
            id: 3,
            read_only: false,
        },
        Op::Status,
        Op::WhyStopped { pid: 4243 },
        Op::NsPs {
            path: "/a".into(),
            recursive: true,
        },
        Op::NsIdentify { pid: 4242 },
        Op::Events {
            ns: None,
            kinds: Vec::new(),
        },
        Op::Events {
            ns: Some("/team-a".into()),
            kinds: vec![
                EventKind::Denied,
                EventKind::Stopped,
                EventKind::ObjectCreated,
            ],
        },
    ];
    all_covered("op", ops.iter().map(op_variant), OP_VARIANTS);
    let mut out: Vec<Vec<u8>> = ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| frame(&Request::new(i as u64 + 1, op)))
        .collect();
    // A connection's worth: several requests back to back.
    out.push(out[..4].concat());
    // Hand-written bodies: defaults left out, another version, the old one-switch policy,
    // partial policies, bad ones, a too-large header.
    for body in [
        &br#"{"v":1,"op":"list","kind":"btf"}"#[..],
        br#"{"v":2,"seq":5,"op":"hello"}"#,
        br#"{"v":1,"seq":6,"op":"get_fd","kind":"map","id":1}"#,
        br#"{"v":1,"seq":7,"op":"ns_create","path":"/\u00e9\n"}"#,
        br#"{"v":1,"seq":8,"op":"nope"}"#,
        br#"{"v":1,"seq":9,"op":"ns_create","path":"/a","policy":{"allow_tracing":true}}"#,
        br#"{"v":1,"seq":10,"op":"ns_set_policy","path":"/a","policy":{"allow_tracing":true,"progs":{"only":[1]}}}"#,
        br#"{"v":1,"seq":11,"op":"ns_set_policy","path":"/a","policy":{"progs":"all"}}"#,
        br#"{"v":1,"seq":12,"op":"ns_create","path":"/q","max_objects":4294967295,"limits":{"max_maps":16,"max_nope":1}}"#,
        br#"{"v":1,"seq":13,"op":"events","kinds":["denied","nope"]}"#,
        br#"{"v":1,"seq":14,"op":"list","kind":"prog","run_stats":true,"recursive":false}"#,
        br#"{"v":1,"seq":15,"op":"ns_set_quota","path":"/a","limits":{}}"#,
    ] {
        let mut f = (body.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(body);
        out.push(f);
    }
    out.push((MAX_REQUEST as u32 + 1).to_le_bytes().to_vec());
    out
}

fn ns(path: &str, id: u32, parent: Option<&str>) -> NsInfo {
    let root = parent.is_none();
    NsInfo {
        path: path.into(),
        id: NsId(id),
        parent: parent.map(Into::into),
        depth: path.matches('/').count() as u32 - u32::from(path == "/"),
        objects: ObjectCounts {
            prog: 2,
            map: 3,
            link: 1,
            btf: 4,
        },
        members: 5,
        bpffs: format!("/run/bpfns/fs/{id}"),
        policy: if root {
            Policy::HOST
        } else {
            four_set_policy()
        },
        // Always there once read: left out on the wire where it is the own policy, and read
        // back as it.
        effective_policy: Some(if root {
            Policy::HOST
        } else {
            four_set_policy()
        }),
        supervised_creations: !root,
        max_objects: (!root).then_some(64),
        cgroup: (!root).then(|| format!("/bpfns.slice/ns-{id}")),
        records: (!root).then_some(11),
        map_memory: Some(3 * 4096),
        map_memory_total: Some(5 * 4096),
        kind_limits: if root { KindLimits::NONE } else { limits() },
        kind_records: (!root).then_some(ObjectCounts {
            prog: 3,
            map: 4,
            link: 1,
            btf: 3,
        }),
    }
}

fn caller() -> CallerInfo {
    CallerInfo {
        pid: 100,
        uid: 0,
        namespace: "/".into(),
        host_admin: true,
        cap_bpf: true,
    }
}

/// A denial with every field an event may carry, and one bare event of each kind.
fn events() -> Vec<EventInfo> {
    let mut full = EventInfo::new(EventKind::Denied, "/team-a/ci", NsId(3));
    full.time_ms = 1_764_982_800_000;
    full.pid = Some(4242);
    full.comm = Some("bpftool".into());
    full.uid = Some(1000);
    full.command = Some("MAP_GET_FD_BY_ID".into());
    full.object_kind = Some(ObjectKind::Map);
    full.object_id = Some(9);
    full.object_name = Some("counts".into());
    full.path = Some("/sys/fs/bpf/counts".into());
    full.layer = Some("supervisor".into());
    full.reason = Some("EPERM: owned by /team-b".into());
    full.policy = Some(four_set_policy());
    full.suppressed = Some(12);
    let mut out = vec![full];
    for (i, kind) in EventKind::ALL.into_iter().enumerate() {
        let mut e = EventInfo::new(kind, "/a", NsId(1));
        e.time_ms = 1_764_982_800_000 + i as u64;
        out.push(e);
    }
    out
}

fn responses() -> Vec<Vec<u8>> {
    let obj = |id, kind, prog_id| ObjectInfo {
        id,
        kind,
        type_name: "hash".into(),
        name: "counts".into(),
        namespace: "/a".into(),
        ns_id: NsId(1),
        prog_id,
        details: ObjectDetails {
            bytes_key: Some(4),
            bytes_value: Some(8),
            max_entries: Some(1024),
            flags: Some(0),
            btf_id: Some(2),
            ..ObjectDetails::default()
        },
    };
    let prog = |id, with_stats: bool| ObjectInfo {
        id,
        kind: ObjectKind::Prog,
        type_name: "cgroup_skb".into(),
        name: "count_egress".into(),
        namespace: "/a".into(),
        ns_id: NsId(1),
        prog_id: None,
        details: ObjectDetails {
            btf_id: Some(2),
            tag: Some("a04f5eef06a7f555".into()),
            loaded_at: Some(1_764_982_800),
            uid: Some(0),
            bytes_xlated: Some(344),
            bytes_jited: Some(212),
            bytes_memlock: Some(4096),
            run_time_ns: with_stats.then_some(1_234_567),
            run_cnt: with_stats.then_some(890),
            map_ids: Some(vec![9, 10]),
            ..ObjectDetails::default()
        },
    };
    let link = ObjectInfo {
        id: 4,
        kind: ObjectKind::Link,
        type_name: "cgroup".into(),
        name: "count_egress".into(),
        namespace: "/a".into(),
        ns_id: NsId(1),
        prog_id: Some(17),
        details: ObjectDetails {
            attach_type: Some("cgroup_inet_egress".into()),
            cgroup_id: Some(4711),
            ..ObjectDetails::default()
        },
    };
    let process = |pid, ns: &str, id| ProcessInfo {
        pid,
        comm: "sleep".into(),
        uid: 1000,
        threads: 1,
        namespace: ns.into(),
        ns_id: NsId(id),
    };
    let mut replies = vec![
        Reply::Hello {
            server: "bpfnsd 0.1.0".into(),
            protocol: PROTOCOL_VERSION,
            caller: caller(),
        },
        Reply::Namespace(ns("/a", 1, Some("/"))),
        Reply::StatsEnabled,
        Reply::MemberPlan(MemberPlan {
            caller: caller(),
            path: "/team-a/ci/job-7".into(),
            bpffs: "/run/bpfns/fs/7".into(),
            policy: four_set_policy(),
            state_dir: "/var/lib/bpfns".into(),
            supervised_creations: true,
            socket_dirs: vec!["/run/bpfns".into()],
        }),
        Reply::Namespaces {
            namespaces: vec![
                ns("/", 0, None),
                ns("/a", 1, Some("/")),
                ns("/a/b", 2, Some("/a")),
            ],
        },
        Reply::Deleted {
            path: "/a/b".into(),
            objects_moved_to: "/a".into(),
            objects_moved: 3,
        },
        Reply::Entered {
            path: "/a".into(),
            pid: 4242,
        },
        Reply::Supervised {
            pid: 4242,
            daemon_pid: 99,
        },
        Reply::Objects {
            objects: vec![obj(9, ObjectKind::Map, None), link.clone()],
        },
        Reply::Objects {
            objects: vec![prog(17, true), prog(18, false)],
        },
        Reply::Object(Box::new(prog(17, false))),
        Reply::Fd {
            kind: ObjectKind::Map,
            id: 9,
        },
        Reply::Status(StatusInfo {
            server: "bpfnsd 0.1.0".into(),
            pin_root: "/sys/fs/bpf/bpfns".into(),
            state_dir: "/var/lib/bpfns".into(),
            layers: vec!["kernel".into(), "supervisor".into(), "lsm".into()],
            namespaces: 3,
            supervised_listeners: 1,
            kept_listeners: 1,
            counters: vec![("requests".into(), 12), ("denied".into(), 1)],
            containers: 2,
            collected_containers: vec!["3f2a9c0b7d1e /containers/web: bundle gone".into()],
        }),
        Reply::Stopped {
            pid: 4243,
            events: vec!["backstop: MAP_GET_FD_BY_ID of map 9 owned by /b: SIGKILL".into()],
        },
        Reply::Stopped {
            pid: 4244,
            events: Vec::new(),
        },
        Reply::Processes {
            processes: vec![process(4242, "/a", 1), process(4250, "/a/b", 2)],
        },
        Reply::Process(process(1, "/", 0)),
        Reply::ContainerNamespace {
            path: "/containers/web".into(),
            created: true,
            again: false,
        },
        Reply::Subscribed {
            namespace: "/team-a".into(),
            queue: 1024,
        },
        Reply::ContainerReleased {
            id: "3f2a9c0b7d1e".into(),
            namespace: Some("/containers/web".into()),
            deleted: vec!["/containers/web".into()],
        },
        Reply::ContainerReleased {
            id: "unknown".into(),
            namespace: None,
            deleted: Vec::new(),
        },
    ];
    replies.extend(events().into_iter().map(Reply::Event));
    all_covered("reply", replies.iter().map(reply_variant), REPLY_VARIANTS);
    let mut out: Vec<Vec<u8>> = replies
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let mut resp = Response::ok(i as u64, r);
            if matches!(
                resp.result,
                Outcome::Ok(Reply::Fd { .. } | Reply::StatsEnabled)
            ) {
                resp.fds = 1;
            }
            frame(&resp)
        })
        .collect();
    // A subscription as the client reads it: the answer, then events with the same seq.
    let mut stream = frame(&Response::ok(
        30,
        Reply::Subscribed {
            namespace: "/".into(),
            queue: 1024,
        },
    ));
    for e in events().into_iter().take(4) {
        stream.extend(frame(&Response::ok(30, Reply::Event(e))));
    }
    out.push(stream);
    for code in [
        ErrorCode::BadRequest,
        ErrorCode::UnsupportedVersion,
        ErrorCode::TooLarge,
        ErrorCode::NotFound,
        ErrorCode::Denied,
        ErrorCode::Conflict,
        ErrorCode::Internal,
        ErrorCode::LimitReached,
    ] {
        out.push(frame(&Response::error(7, code, "no namespace /x")));
    }
    out
}

/// Real attrs, as libbpf lays them out (size = `offsetofend` of the command's last field) and
/// as callers passing the whole union do (`sizeof(union bpf_attr)`), each with a tail of
/// decision input.
fn attrs() -> Vec<Vec<u8>> {
    const CAP_BPF: u64 = 1 << 39;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    const CAP_NET_ADMIN: u64 = 1 << 12;
    let mut out = Vec::new();
    let ids: Vec<u8> = [3u32, 7, 9, 200]
        .iter()
        .flat_map(|i| i.to_le_bytes())
        .collect();
    let mut put =
        |cmd: u32, libbpf_size: usize, fields: &[(usize, u64, usize)], eff: u64, tail: &[u8]| {
            let mut a = [0u8; ATTR_SIZE];
            for &(o, v, w) in fields {
                a[o..o + w].copy_from_slice(&v.to_ne_bytes()[..w]);
            }
            for size in [libbpf_size, ATTR_SIZE] {
                let mut mem = a[..size].to_vec();
                mem.extend_from_slice(tail);
                out.push(attr_input(cmd, size as u64, eff, &mem));
            }
        };
    for (cmd, kind) in [
        (attr::PROG_GET_NEXT_ID, 0),
        (attr::MAP_GET_NEXT_ID, 1),
        (attr::LINK_GET_NEXT_ID, 2),
        (attr::BTF_GET_NEXT_ID, 3),
    ] {
        put(cmd, 12, &[(off::ID, kind, 4)], CAP_BPF, &ids);
    }
    put(
        attr::PROG_GET_FD_BY_ID,
        16,
        &[(off::ID, 17, 4)],
        CAP_BPF,
        &[],
    );
    put(
        attr::LINK_GET_FD_BY_ID,
        16,
        &[(off::ID, 4, 4)],
        CAP_SYS_ADMIN,
        &[],
    );
    put(
        attr::MAP_GET_FD_BY_ID,
        16,
        &[(off::ID, 9, 4), (off::OPEN_FLAGS, BPF_F_RDONLY.into(), 4)],
        CAP_BPF,
        &[],
    );
    put(
        attr::BTF_GET_FD_BY_ID,
        16,
        &[
            (off::ID, 2, 4),
            (off::OPEN_FLAGS, BPF_F_TOKEN_FD.into(), 4),
            (off::TOKEN_FD, 5, 4),
        ],
        CAP_BPF,
        &[],
    );
    put(
        attr::OBJ_GET,
        20,
        &[
            (off::PATHNAME, 0x7ffd_1234_5000, 8),
            (off::FILE_FLAGS, BPF_F_WRONLY.into(), 4),
        ],
        0,
        &[],
    );
    put(
        attr::OBJ_GET,
        20,
        &[
            (off::PATHNAME, 0x7ffd_1234_5000, 8),
            (off::FILE_FLAGS, (BPF_F_PATH_FD | BPF_F_RDONLY).into(), 4),
            (off::PATH_FD, 3, 4),
        ],
        0,
        &[],
    );
    let entries: Vec<u8> = [(17u32, 0u32, 4u32, 0u32), (18, 1, 0, 0), (19, 0, 5, 2)]
        .iter()
        .flat_map(|&(a, b, c, d)| [a, b, c, d].into_iter().flat_map(u32::to_le_bytes))
        .collect();
    put(
        attr::PROG_QUERY,
        64,
        &[
            (off::Q_TARGET, 5, 4),
            (off::Q_ATTACH_TYPE, 0, 4),
            (off::Q_QUERY_FLAGS, 1, 4),
            (off::Q_PROG_IDS, 0x7ffd_0000_1000, 8),
            (off::Q_PROG_CNT, 2, 4),
            (off::Q_PROG_ATTACH_FLAGS, 0x7ffd_0000_2000, 8),
        ],
        CAP_NET_ADMIN,
        &entries,
    );
    put(
        attr::PROG_QUERY,
        64,
        &[
            (off::Q_TARGET, 2, 4),
            (off::Q_ATTACH_TYPE, 46, 4),
            (off::Q_PROG_IDS, 0x7ffd_0000_1000, 8),
            (off::Q_PROG_CNT, 8, 4),
            (off::Q_LINK_IDS, 0x7ffd_0000_3000, 8),
            (off::Q_LINK_ATTACH_FLAGS, 0x7ffd_0000_4000, 8),
        ],
        CAP_BPF,
        &entries,
    );
    put(
        attr::TASK_FD_QUERY,
        48,
        &[
            (off::T_PID, 4242, 4),
            (off::T_FD, 7, 4),
            (off::T_BUF_LEN, 8, 4),
            (off::T_BUF, 0x7ffd_0000_5000, 8),
        ],
        CAP_BPF,
        b"do_sys_openat2",
    );
    // BPF_MAP_CREATE (trapped where map types are restricted): a hash map, as libbpf makes
    // it (up to map_token_fd).
    put(
        attr::MAP_CREATE,
        72,
        &[(0, 1, 4), (4, 4, 4), (8, 8, 4), (12, 1024, 4)],
        CAP_BPF,
        &[],
    );
    // BPF_PROG_LOAD of a cgroup_skb program (prog_type, insn_cnt, insns, license,
    // expected_attach_type), BPF_PROG_ATTACH and BPF_LINK_CREATE to a cgroup's egress,
    // BPF_LINK_UPDATE and BPF_LINK_DETACH.
    put(
        attr::PROG_LOAD,
        attr::PROG_LOAD_END,
        &[
            (0, 8, 4),
            (4, 2, 4),
            (8, 0x7ffd_0000_6000, 8),
            (16, 0x7ffd_0000_7000, 8),
            (68, 1, 4),
        ],
        CAP_BPF,
        &[],
    );
    put(
        attr::PROG_ATTACH,
        32,
        &[
            (off::A_TARGET, 5, 4),
            (off::A_ATTACH_BPF_FD, 6, 4),
            (off::A_ATTACH_TYPE, 1, 4),
            (off::A_ATTACH_FLAGS, 2, 4),
        ],
        CAP_NET_ADMIN,
        &[],
    );
    put(
        attr::LINK_CREATE,
        60,
        &[
            (off::LC_PROG_FD, 6, 4),
            (off::LC_TARGET, 5, 4),
            (off::LC_ATTACH_TYPE, 1, 4),
        ],
        CAP_BPF,
        &[],
    );
    put(
        attr::LINK_UPDATE,
        16,
        &[(off::LU_LINK_FD, 7, 4), (off::LU_NEW_FD, 6, 4)],
        CAP_BPF,
        &[],
    );
    put(
        attr::LINK_DETACH,
        4,
        &[(off::LU_LINK_FD, 7, 4)],
        CAP_BPF,
        &[],
    );
    // Not trapped (BPF_MAP_LOOKUP_ELEM), and too big.
    out.push(attr_input(1, 32, CAP_BPF, &[0; 32]));
    out.push(attr_input(attr::MAP_GET_NEXT_ID, 4097, CAP_BPF, &[]));
    out
}

fn proc_texts() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for p in [
        "/proc/self/status",
        "/proc/self/stat",
        "/proc/1/status",
        "/proc/1/stat",
    ] {
        if let Ok(b) = fs::read(p) {
            out.push(b);
        }
    }
    // Numbers (40 bytes) then a hostile name.
    let mut v = vec![7u8; 40];
    v.extend_from_slice(b"a) S 1 (\nUid:\t0\t0\t0\t0\\");
    out.push(v);
    for t in [
        "anon_inode:bpf-map",
        "anon_inode:bpf_link",
        "anon_inode:btf",
    ] {
        out.push(t.as_bytes().to_vec());
    }
    out
}

fn write(dir: &Path, seeds: Vec<Vec<u8>>) {
    fs::create_dir_all(dir).expect("mkdir");
    for (i, s) in seeds.iter().enumerate() {
        fs::write(dir.join(format!("seed-{i:03}")), s).expect("write");
    }
    println!("{}: {} seeds", dir.display(), seeds.len());
}

fn main() {
    let corpus = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"),
    };
    write(&corpus.join("proto_request"), requests());
    write(&corpus.join("proto_response"), responses());
    write(&corpus.join("supervisor_attr"), attrs());
    write(&corpus.join("proc_text"), proc_texts());
}
