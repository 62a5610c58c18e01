//! Writes seed inputs for the fuzz targets, made from real messages and real attrs, to
//! `fuzz/corpus/<target>/seed-*` (run from anywhere:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds`). `scripts/fuzz.sh seed`
//! runs this and then minimises each corpus with `cargo fuzz cmin`.

use std::fs;
use std::path::{Path, PathBuf};

use bpfns_fuzz::attr_input;
use bpfns_model::{NsId, ObjectKind};
use bpfns_proto::*;
use bpfns_sys::rawbpf::{BPF_F_PATH_FD, BPF_F_RDONLY, BPF_F_TOKEN_FD, BPF_F_WRONLY};
use bpfnsd::supervisor::attr::{self, off, ATTR_SIZE};

fn frame<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    encode(msg, usize::MAX).expect("encodes")
}

fn requests() -> Vec<Vec<u8>> {
    let ops = vec![
        Op::Hello,
        Op::NsCreate { path: "/a".into() },
        Op::NsCreate {
            path: "/team-a/ci/job-7".into(),
        },
        Op::NsDelete {
            path: "/a".into(),
            force: false,
        },
        Op::NsList,
        Op::NsShow { path: "/".into() },
        Op::Enter {
            path: "/a".into(),
            pid: 4242,
        },
        Op::Supervise { pid: 4242 },
        Op::List {
            kind: ObjectKind::Map,
        },
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
    ];
    let mut out: Vec<Vec<u8>> = ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| frame(&Request::new(i as u64 + 1, op)))
        .collect();
    // A connection's worth: several requests back to back.
    out.push(out[..4].concat());
    // Hand-written bodies: defaults left out, another version, a bad one, a too-large header.
    for body in [
        &br#"{"v":1,"op":"list","kind":"btf"}"#[..],
        br#"{"v":2,"seq":5,"op":"hello"}"#,
        br#"{"v":1,"seq":6,"op":"get_fd","kind":"map","id":1}"#,
        br#"{"v":1,"seq":7,"op":"ns_create","path":"/\u00e9\n"}"#,
        br#"{"v":1,"seq":8,"op":"nope"}"#,
    ] {
        let mut f = (body.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(body);
        out.push(f);
    }
    out.push((MAX_REQUEST as u32 + 1).to_le_bytes().to_vec());
    out
}

fn ns(path: &str, id: u32, parent: Option<&str>) -> NsInfo {
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
    }
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
    };
    let replies = vec![
        Reply::Hello {
            server: "bpfnsd 0.1.0".into(),
            protocol: PROTOCOL_VERSION,
            caller: CallerInfo {
                pid: 100,
                uid: 0,
                namespace: "/".into(),
                host_admin: true,
                cap_bpf: true,
            },
        },
        Reply::Namespace(ns("/a", 1, Some("/"))),
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
        Reply::Supervised { pid: 4242 },
        Reply::Objects {
            objects: vec![
                obj(9, ObjectKind::Map, None),
                obj(4, ObjectKind::Link, Some(17)),
            ],
        },
        Reply::Object(obj(17, ObjectKind::Prog, None)),
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
        }),
    ];
    let mut out: Vec<Vec<u8>> = replies
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let mut resp = Response::ok(i as u64, r);
            if matches!(resp.result, Outcome::Ok(Reply::Fd { .. })) {
                resp.fds = 1;
            }
            frame(&resp)
        })
        .collect();
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
    // Not trapped, and too big.
    out.push(attr_input(0, 72, CAP_BPF, &[0; 72]));
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
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    write(&corpus.join("proto_request"), requests());
    write(&corpus.join("proto_response"), responses());
    write(&corpus.join("supervisor_attr"), attrs());
    write(&corpus.join("proc_text"), proc_texts());
}
