//! The trapped bpf() commands and their `union bpf_attr` layouts, parsed from raw bytes.
//!
//! Pure code: no system calls. The supervisor reads the caller's attr once, zero-padded to
//! [`ATTR_SIZE`] like the kernel's own copy (`memset` + `copy_from_user` of `size` bytes), and
//! everything it decides comes from that one copy.
//!
//! Each command also gets the kernel's `CHECK_ATTR` treatment: bytes after the command's last
//! field must be zero, or the answer is `EINVAL`, as it would be without bpfns.

use bpfns_model::ObjectKind;
use bpfns_sys::rawbpf::{ATTR_MAX, BPF_F_PATH_FD, BPF_F_RDONLY, BPF_F_TOKEN_FD, BPF_F_WRONLY};
use bpfns_sys::Errno;

pub use bpfns_sys::rawbpf::ATTR_SIZE;

/// `BPF_OBJ_GET`.
pub const OBJ_GET: u32 = 7;
/// `BPF_PROG_GET_NEXT_ID`.
pub const PROG_GET_NEXT_ID: u32 = 11;
/// `BPF_MAP_GET_NEXT_ID`.
pub const MAP_GET_NEXT_ID: u32 = 12;
/// `BPF_PROG_GET_FD_BY_ID`.
pub const PROG_GET_FD_BY_ID: u32 = 13;
/// `BPF_MAP_GET_FD_BY_ID`.
pub const MAP_GET_FD_BY_ID: u32 = 14;
/// `BPF_PROG_QUERY`.
pub const PROG_QUERY: u32 = 16;
/// `BPF_BTF_GET_FD_BY_ID`.
pub const BTF_GET_FD_BY_ID: u32 = 19;
/// `BPF_TASK_FD_QUERY`.
pub const TASK_FD_QUERY: u32 = 20;
/// `BPF_BTF_GET_NEXT_ID`.
pub const BTF_GET_NEXT_ID: u32 = 23;
/// `BPF_LINK_GET_FD_BY_ID`.
pub const LINK_GET_FD_BY_ID: u32 = 30;
/// `BPF_LINK_GET_NEXT_ID`.
pub const LINK_GET_NEXT_ID: u32 = 31;

/// Every bpf() command the member filter traps, ascending.
pub use bpfns_client::filter::TRAPPED;

/// A trapped command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    ObjGet,
    NextId(ObjectKind),
    FdById(ObjectKind),
    ProgQuery,
    TaskFdQuery,
}

impl Command {
    /// The command for bpf()'s `cmd` argument (the kernel uses its low 32 bits).
    pub fn from_raw(cmd: u32) -> Option<Self> {
        Some(match cmd {
            OBJ_GET => Self::ObjGet,
            PROG_GET_NEXT_ID => Self::NextId(ObjectKind::Prog),
            MAP_GET_NEXT_ID => Self::NextId(ObjectKind::Map),
            BTF_GET_NEXT_ID => Self::NextId(ObjectKind::Btf),
            LINK_GET_NEXT_ID => Self::NextId(ObjectKind::Link),
            PROG_GET_FD_BY_ID => Self::FdById(ObjectKind::Prog),
            MAP_GET_FD_BY_ID => Self::FdById(ObjectKind::Map),
            BTF_GET_FD_BY_ID => Self::FdById(ObjectKind::Btf),
            LINK_GET_FD_BY_ID => Self::FdById(ObjectKind::Link),
            PROG_QUERY => Self::ProgQuery,
            TASK_FD_QUERY => Self::TaskFdQuery,
            _ => return None,
        })
    }

    /// The raw command number.
    pub fn raw(self) -> u32 {
        match self {
            Self::ObjGet => OBJ_GET,
            Self::NextId(ObjectKind::Prog) => PROG_GET_NEXT_ID,
            Self::NextId(ObjectKind::Map) => MAP_GET_NEXT_ID,
            Self::NextId(ObjectKind::Btf) => BTF_GET_NEXT_ID,
            Self::NextId(ObjectKind::Link) => LINK_GET_NEXT_ID,
            Self::FdById(ObjectKind::Prog) => PROG_GET_FD_BY_ID,
            Self::FdById(ObjectKind::Map) => MAP_GET_FD_BY_ID,
            Self::FdById(ObjectKind::Btf) => BTF_GET_FD_BY_ID,
            Self::FdById(ObjectKind::Link) => LINK_GET_FD_BY_ID,
            Self::ProgQuery => PROG_QUERY,
            Self::TaskFdQuery => TASK_FD_QUERY,
        }
    }

    /// The command's name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::ObjGet => "BPF_OBJ_GET",
            Self::NextId(ObjectKind::Prog) => "BPF_PROG_GET_NEXT_ID",
            Self::NextId(ObjectKind::Map) => "BPF_MAP_GET_NEXT_ID",
            Self::NextId(ObjectKind::Btf) => "BPF_BTF_GET_NEXT_ID",
            Self::NextId(ObjectKind::Link) => "BPF_LINK_GET_NEXT_ID",
            Self::FdById(ObjectKind::Prog) => "BPF_PROG_GET_FD_BY_ID",
            Self::FdById(ObjectKind::Map) => "BPF_MAP_GET_FD_BY_ID",
            Self::FdById(ObjectKind::Btf) => "BPF_BTF_GET_FD_BY_ID",
            Self::FdById(ObjectKind::Link) => "BPF_LINK_GET_FD_BY_ID",
            Self::ProgQuery => "BPF_PROG_QUERY",
            Self::TaskFdQuery => "BPF_TASK_FD_QUERY",
        }
    }

    /// End offset of the command's last attr field (`*_LAST_FIELD`): bytes from here on must
    /// be zero.
    fn last_field_end(self) -> usize {
        match self {
            // start_id, next_id
            Self::NextId(_) => 8,
            // prog_id / link_id only
            Self::FdById(ObjectKind::Prog) | Self::FdById(ObjectKind::Link) => 4,
            // id, next_id, open_flags, fd_by_id_token_fd (tolerated for maps too: ignored)
            Self::FdById(ObjectKind::Map) | Self::FdById(ObjectKind::Btf) => 16,
            // pathname, bpf_fd, file_flags, path_fd
            Self::ObjGet => 20,
            // ... prog_attach_flags, link_ids, link_attach_flags, revision
            Self::ProgQuery => 64,
            // pid, fd, flags, buf_len, buf, prog_id, fd_type, probe_offset, probe_addr
            Self::TaskFdQuery => 48,
        }
    }
}

/// How many bytes of a caller's attr to read for `size` (bpf()'s third argument): at most
/// [`ATTR_SIZE`]; `E2BIG` above a page, like the kernel.
pub fn read_len(size: u64) -> Result<usize, Errno> {
    // The kernel takes `unsigned int size`.
    let size = size as u32 as usize;
    if size > ATTR_MAX {
        return Err(Errno::TOOBIG);
    }
    Ok(size.min(ATTR_SIZE))
}

/// An attr as the kernel would see it: [`ATTR_SIZE`] bytes, the caller's first `len` of them
/// and zeros after.
#[derive(Clone, PartialEq, Eq)]
pub struct Attr {
    bytes: [u8; ATTR_SIZE],
    /// How many bytes the caller supplied (≤ ATTR_SIZE).
    pub len: usize,
}

impl std::fmt::Debug for Attr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attr")
            .field("len", &self.len)
            .field("head", &&self.bytes[..self.len.min(64)])
            .finish()
    }
}

impl Attr {
    /// An all-zero attr of which the caller supplies `len` bytes.
    pub fn zeroed(len: usize) -> Self {
        Self {
            bytes: [0; ATTR_SIZE],
            len: len.min(ATTR_SIZE),
        }
    }

    /// From bytes (at most [`ATTR_SIZE`] are used).
    pub fn from_bytes(b: &[u8]) -> Self {
        let mut a = Self::zeroed(b.len());
        a.bytes[..a.len].copy_from_slice(&b[..a.len]);
        a
    }

    /// A copy that passes at least `min_len` bytes to the kernel (zeros past the caller's).
    pub fn widened(&self, min_len: usize) -> Self {
        let mut a = self.clone();
        a.len = a.len.max(min_len).min(ATTR_SIZE);
        a
    }

    /// The part the caller supplied, to be filled from its memory.
    pub fn supplied_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len]
    }

    /// The part the caller supplied.
    pub fn supplied(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// A u32 at `off`.
    pub fn u32_at(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[off..off + 4]);
        u32::from_ne_bytes(b)
    }

    /// A u64 at `off`.
    pub fn u64_at(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[off..off + 8]);
        u64::from_ne_bytes(b)
    }

    /// Store a u32 at `off` (in this copy only).
    pub fn set_u32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }

    /// Store a u64 at `off` (in this copy only).
    pub fn set_u64(&mut self, off: usize, v: u64) {
        self.bytes[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }

    fn tail_is_zero(&self, from: usize) -> bool {
        self.bytes[from.min(ATTR_SIZE)..].iter().all(|&b| b == 0)
    }
}

/// Offsets of the fields the supervisor reads or writes.
pub mod off {
    /// `start_id` / `prog_id` / `map_id` / `btf_id` / `link_id`.
    pub const ID: usize = 0;
    /// `next_id` (GET_NEXT_ID output).
    pub const NEXT_ID: usize = 4;
    /// `open_flags`.
    pub const OPEN_FLAGS: usize = 8;
    /// `fd_by_id_token_fd`.
    pub const TOKEN_FD: usize = 12;

    /// `pathname` (BPF_OBJ_GET).
    pub const PATHNAME: usize = 0;
    /// `bpf_fd`.
    pub const BPF_FD: usize = 8;
    /// `file_flags`.
    pub const FILE_FLAGS: usize = 12;
    /// `path_fd`.
    pub const PATH_FD: usize = 16;

    /// `query.target_fd` / `query.target_ifindex`.
    pub const Q_TARGET: usize = 0;
    /// `query.attach_type`.
    pub const Q_ATTACH_TYPE: usize = 4;
    /// `query.query_flags`.
    pub const Q_QUERY_FLAGS: usize = 8;
    /// `query.attach_flags` (output).
    pub const Q_ATTACH_FLAGS: usize = 12;
    /// `query.prog_ids`.
    pub const Q_PROG_IDS: usize = 16;
    /// `query.prog_cnt` (in/out).
    pub const Q_PROG_CNT: usize = 24;
    /// `query.prog_attach_flags`.
    pub const Q_PROG_ATTACH_FLAGS: usize = 32;
    /// `query.link_ids`.
    pub const Q_LINK_IDS: usize = 40;
    /// `query.link_attach_flags`.
    pub const Q_LINK_ATTACH_FLAGS: usize = 48;
    /// `query.revision` (output, u64).
    pub const Q_REVISION: usize = 56;

    /// `task_fd_query.pid`.
    pub const T_PID: usize = 0;
    /// `task_fd_query.fd`.
    pub const T_FD: usize = 4;
    /// `task_fd_query.flags`.
    pub const T_FLAGS: usize = 8;
    /// `task_fd_query.buf_len` (in/out).
    pub const T_BUF_LEN: usize = 12;
    /// `task_fd_query.buf`.
    pub const T_BUF: usize = 16;
    /// `task_fd_query.prog_id` (output).
    pub const T_PROG_ID: usize = 24;
    /// `task_fd_query.fd_type` (output).
    pub const T_FD_TYPE: usize = 28;
    /// `task_fd_query.probe_offset` (output, u64).
    pub const T_PROBE_OFFSET: usize = 32;
    /// `task_fd_query.probe_addr` (output, u64).
    pub const T_PROBE_ADDR: usize = 40;
}

/// `BPF_F_QUERY_EFFECTIVE`.
pub const BPF_F_QUERY_EFFECTIVE: u32 = 1;

/// Attach types whose PROG_QUERY target is an interface index (in the caller's network
/// namespace), not an fd: tcx and netkit.
pub fn query_target_is_ifindex(attach_type: u32) -> bool {
    // BPF_TCX_INGRESS, BPF_TCX_EGRESS, BPF_NETKIT_PRIMARY, BPF_NETKIT_PEER
    matches!(attach_type, 46 | 47 | 54 | 55)
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `BPF_*_GET_NEXT_ID`.
    NextId { kind: ObjectKind, start_id: u32 },
    /// `BPF_*_GET_FD_BY_ID`.
    FdById {
        kind: ObjectKind,
        id: u32,
        open_flags: u32,
    },
    /// `BPF_OBJ_GET`.
    ObjGet {
        pathname: u64,
        /// `file_flags` without `BPF_F_PATH_FD`.
        file_flags: u32,
        /// The caller's directory fd, with `BPF_F_PATH_FD`.
        path_fd: Option<i32>,
    },
    /// `BPF_PROG_QUERY`.
    ProgQuery(ProgQuery),
    /// `BPF_TASK_FD_QUERY`.
    TaskFdQuery(TaskFdQuery),
}

/// The inputs of a `BPF_PROG_QUERY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgQuery {
    /// `target_fd` or `target_ifindex`.
    pub target: u32,
    pub attach_type: u32,
    pub query_flags: u32,
    pub prog_ids: u64,
    pub prog_cnt: u32,
    pub prog_attach_flags: u64,
    pub link_ids: u64,
    pub link_attach_flags: u64,
}

/// The inputs of a `BPF_TASK_FD_QUERY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskFdQuery {
    /// In the caller's pid namespace.
    pub pid: u32,
    pub fd: u32,
    pub buf_len: u32,
    pub buf: u64,
}

/// Parse `attr` for `cmd`, with the kernel's validity checks. `EINVAL` for what the kernel
/// would reject as malformed.
pub fn parse(cmd: Command, attr: &Attr) -> Result<Request, Errno> {
    if !attr.tail_is_zero(cmd.last_field_end()) {
        return Err(Errno::INVAL);
    }
    match cmd {
        Command::NextId(kind) => {
            let start_id = attr.u32_at(off::ID);
            if start_id >= i32::MAX as u32 {
                return Err(Errno::INVAL);
            }
            Ok(Request::NextId { kind, start_id })
        }
        Command::FdById(kind) => {
            let open_flags = attr.u32_at(off::OPEN_FLAGS);
            if kind == ObjectKind::Map
                && open_flags & !(BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_TOKEN_FD) != 0
            {
                return Err(Errno::INVAL);
            }
            if kind == ObjectKind::Btf && open_flags & !BPF_F_TOKEN_FD != 0 {
                return Err(Errno::INVAL);
            }
            Ok(Request::FdById {
                kind,
                id: attr.u32_at(off::ID),
                open_flags,
            })
        }
        Command::ObjGet => {
            let file_flags = attr.u32_at(off::FILE_FLAGS);
            let path_fd = attr.u32_at(off::PATH_FD) as i32;
            if attr.u32_at(off::BPF_FD) != 0
                || file_flags & !(BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_PATH_FD) != 0
                || file_flags & (BPF_F_RDONLY | BPF_F_WRONLY) == BPF_F_RDONLY | BPF_F_WRONLY
            {
                return Err(Errno::INVAL);
            }
            let with_fd = file_flags & BPF_F_PATH_FD != 0;
            if !with_fd && path_fd != 0 {
                return Err(Errno::INVAL);
            }
            Ok(Request::ObjGet {
                pathname: attr.u64_at(off::PATHNAME),
                file_flags: file_flags & !BPF_F_PATH_FD,
                path_fd: with_fd.then_some(path_fd),
            })
        }
        Command::ProgQuery => {
            let q = ProgQuery {
                target: attr.u32_at(off::Q_TARGET),
                attach_type: attr.u32_at(off::Q_ATTACH_TYPE),
                query_flags: attr.u32_at(off::Q_QUERY_FLAGS),
                prog_ids: attr.u64_at(off::Q_PROG_IDS),
                prog_cnt: attr.u32_at(off::Q_PROG_CNT),
                prog_attach_flags: attr.u64_at(off::Q_PROG_ATTACH_FLAGS),
                link_ids: attr.u64_at(off::Q_LINK_IDS),
                link_attach_flags: attr.u64_at(off::Q_LINK_ATTACH_FLAGS),
            };
            if q.query_flags & !BPF_F_QUERY_EFFECTIVE != 0 {
                return Err(Errno::INVAL);
            }
            Ok(Request::ProgQuery(q))
        }
        Command::TaskFdQuery => {
            if attr.u32_at(off::T_FLAGS) != 0 {
                return Err(Errno::INVAL);
            }
            Ok(Request::TaskFdQuery(TaskFdQuery {
                pid: attr.u32_at(off::T_PID),
                fd: attr.u32_at(off::T_FD),
                buf_len: attr.u32_at(off::T_BUF_LEN),
                buf: attr.u64_at(off::T_BUF),
            }))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decisions

/// The next visible id after `start` in the ascending list `visible`, or `None` at the end —
/// the kernel's `idr_get_next(start + 1)` restricted to the caller's view.
pub fn next_visible(visible: &[u32], start: u32) -> Option<u32> {
    let i = visible.partition_point(|&id| id <= start);
    visible.get(i).copied()
}

/// Whether a caller with effective set `eff` (in its own user namespace) may list object ids
/// and turn them into fds: `CAP_BPF` or `CAP_SYS_ADMIN` (contract point (docs/design.md) 5).
pub fn may_use_ids(eff: bpfns_sys::caps::CapabilitySet) -> bool {
    use bpfns_sys::caps::CapabilitySet as C;
    eff.intersects(C::BPF | C::SYS_ADMIN)
}

/// Whether a caller may run `BPF_PROG_QUERY`: what the kernel asks (`CAP_NET_ADMIN` or
/// `CAP_SYS_ADMIN`), or `CAP_BPF`, in its own user namespace.
pub fn may_query(eff: bpfns_sys::caps::CapabilitySet) -> bool {
    use bpfns_sys::caps::CapabilitySet as C;
    eff.intersects(C::BPF | C::SYS_ADMIN | C::NET_ADMIN)
}

/// One attached program in a `BPF_PROG_QUERY` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueryEntry {
    pub prog_id: u32,
    pub prog_flags: u32,
    pub link_id: u32,
    pub link_flags: u32,
}

/// What to tell the caller of `BPF_PROG_QUERY` once the invisible entries are gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryReply {
    /// Written to `prog_cnt`: how many visible programs there are.
    pub total: u32,
    /// The entries to copy to the caller's arrays (at most its `prog_cnt`).
    pub copy: Vec<QueryEntry>,
    /// `ENOSPC` when the caller's arrays were too small (after copying what fits).
    pub error: Option<Errno>,
}

/// The kernel's reply rules (`cgroup_bpf_query`, `bpf_mprog_query`) applied to the visible
/// entries: the count is always reported; nothing is copied when the caller asked for no
/// ids; a short array gets what fits and `ENOSPC`.
pub fn query_reply(visible: Vec<QueryEntry>, user_cnt: u32, user_wants_ids: bool) -> QueryReply {
    let total = visible.len() as u32;
    if user_cnt == 0 || !user_wants_ids || total == 0 {
        return QueryReply {
            total,
            copy: Vec::new(),
            error: None,
        };
    }
    let n = user_cnt.min(total) as usize;
    let mut copy = visible;
    copy.truncate(n);
    QueryReply {
        total,
        copy,
        error: (user_cnt < total).then_some(Errno::NOSPC),
    }
}

/// The kernel's `bpf_task_fd_query_copy` rule for the name buffer: the caller gets `len`
/// (the full string length) in `buf_len`, and as much of the string as fits with a NUL; a
/// short buffer gets a truncated string and `ENOSPC`. Returns the bytes to write to the
/// caller's buffer (empty when it gave none) and the error.
pub fn task_fd_name_reply(name: &[u8], user_len: u32, user_buf: u64) -> (Vec<u8>, Option<Errno>) {
    if user_buf == 0 || user_len == 0 {
        return (Vec::new(), None);
    }
    let room = user_len as usize;
    if room < name.len() + 1 {
        let mut out = name[..room - 1].to_vec();
        out.push(0);
        (out, Some(Errno::NOSPC))
    } else {
        let mut out = name.to_vec();
        out.push(0);
        (out, None)
    }
}

/// The kind of a bpf object fd, from its `/proc/self/fd` link target
/// (`anon_inode:bpf-map`, `anon_inode:bpf-prog`, `anon_inode:bpf_link`, `anon_inode:btf`).
pub fn kind_of_link_target(target: &str) -> Option<ObjectKind> {
    match target {
        "anon_inode:bpf-map" => Some(ObjectKind::Map),
        "anon_inode:bpf-prog" => Some(ObjectKind::Prog),
        "anon_inode:bpf_link" | "anon_inode:bpf-link" => Some(ObjectKind::Link),
        "anon_inode:btf" => Some(ObjectKind::Btf),
        _ => None,
    }
}

/// From a `/proc/<tid>/status` text: `(fsuid, fsgid, supplementary groups)`, in the reader's
/// user namespace.
pub fn fs_creds_from_status(status: &str) -> Option<(u32, u32, Vec<u32>)> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let fourth = |s: &str| s.split_whitespace().nth(3).and_then(|v| v.parse().ok());
    let fsuid = fourth(field("Uid:")?)?;
    let fsgid = fourth(field("Gid:")?)?;
    let groups = field("Groups:")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<Vec<u32>, _>>()
        .ok()?;
    Some((fsuid, fsgid, groups))
}

/// From a `/proc/<pid>/status` text: the `NSpid:` list (outermost pid namespace first).
pub fn nspids_from_status(status: &str) -> Option<Vec<u32>> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfns_sys::caps::CapabilitySet as C;

    fn attr(fields: &[(usize, u32)]) -> Attr {
        let mut a = Attr::zeroed(ATTR_SIZE);
        for &(o, v) in fields {
            a.set_u32(o, v);
        }
        a
    }

    #[test]
    fn commands_round_trip() {
        for c in TRAPPED {
            let cmd = Command::from_raw(c).expect("trapped");
            assert_eq!(cmd.raw(), c);
            assert!(cmd.name().starts_with("BPF_"));
        }
        // BPF_OBJ_GET_INFO_BY_FD, BPF_PROG_RUN (10) and BPF_ENABLE_STATS are not trapped.
        for c in [0, 5, 10, 15, 32, 33, 36] {
            assert_eq!(Command::from_raw(c), None);
        }
    }

    #[test]
    fn read_len_follows_the_kernel() {
        assert_eq!(read_len(0), Ok(0));
        assert_eq!(read_len(16), Ok(16));
        assert_eq!(read_len(4096), Ok(ATTR_SIZE));
        assert_eq!(read_len(4097), Err(Errno::TOOBIG));
        // Only the low 32 bits count: 2^32 + 8 is 8.
        assert_eq!(read_len((1 << 32) + 8), Ok(8));
    }

    #[test]
    fn next_id_parsing() {
        let a = attr(&[(0, 41)]);
        assert_eq!(
            parse(Command::NextId(ObjectKind::Map), &a),
            Ok(Request::NextId {
                kind: ObjectKind::Map,
                start_id: 41
            })
        );
        // next_id is an output, but a non-zero one is accepted (it is within LAST_FIELD).
        assert!(parse(Command::NextId(ObjectKind::Map), &attr(&[(4, 9)])).is_ok());
        // open_flags is past LAST_FIELD for GET_NEXT_ID.
        assert_eq!(
            parse(Command::NextId(ObjectKind::Prog), &attr(&[(8, 1)])),
            Err(Errno::INVAL)
        );
        assert_eq!(
            parse(
                Command::NextId(ObjectKind::Prog),
                &attr(&[(0, i32::MAX as u32)])
            ),
            Err(Errno::INVAL)
        );
        // Garbage far in the tail.
        let mut g = Attr::zeroed(ATTR_SIZE);
        g.set_u32(ATTR_SIZE - 4, 1);
        assert_eq!(
            parse(Command::NextId(ObjectKind::Btf), &g),
            Err(Errno::INVAL)
        );
    }

    #[test]
    fn fd_by_id_parsing() {
        let rd = BPF_F_RDONLY;
        assert_eq!(
            parse(Command::FdById(ObjectKind::Map), &attr(&[(0, 7), (8, rd)])),
            Ok(Request::FdById {
                kind: ObjectKind::Map,
                id: 7,
                open_flags: rd
            })
        );
        // Programs and links take no flags at all.
        assert_eq!(
            parse(Command::FdById(ObjectKind::Prog), &attr(&[(0, 7), (8, rd)])),
            Err(Errno::INVAL)
        );
        assert_eq!(
            parse(Command::FdById(ObjectKind::Link), &attr(&[(0, 7), (4, 1)])),
            Err(Errno::INVAL)
        );
        // BTF may carry a token.
        assert!(parse(
            Command::FdById(ObjectKind::Btf),
            &attr(&[(0, 7), (8, BPF_F_TOKEN_FD), (12, 5)])
        )
        .is_ok());
        assert_eq!(
            parse(Command::FdById(ObjectKind::Btf), &attr(&[(0, 7), (8, rd)])),
            Err(Errno::INVAL)
        );
        assert_eq!(
            parse(Command::FdById(ObjectKind::Map), &attr(&[(8, 1 << 30)])),
            Err(Errno::INVAL)
        );
    }

    #[test]
    fn obj_get_parsing() {
        let mut a = Attr::zeroed(20);
        a.set_u64(0, 0xdead_beef);
        assert_eq!(
            parse(Command::ObjGet, &a),
            Ok(Request::ObjGet {
                pathname: 0xdead_beef,
                file_flags: 0,
                path_fd: None
            })
        );
        a.set_u32(off::FILE_FLAGS, BPF_F_PATH_FD | BPF_F_RDONLY);
        a.set_u32(off::PATH_FD, 3);
        assert_eq!(
            parse(Command::ObjGet, &a),
            Ok(Request::ObjGet {
                pathname: 0xdead_beef,
                file_flags: BPF_F_RDONLY,
                path_fd: Some(3)
            })
        );
        // path_fd without the flag; bpf_fd set; both RDONLY and WRONLY; unknown flags.
        for (o, v) in [
            (off::FILE_FLAGS, 0),
            (off::BPF_FD, 4),
            (off::FILE_FLAGS, BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_PATH_FD),
            (off::FILE_FLAGS, 1 << 2 | BPF_F_PATH_FD),
        ] {
            let mut b = a.clone();
            b.set_u32(o, v);
            assert_eq!(parse(Command::ObjGet, &b), Err(Errno::INVAL), "{o} {v:#x}");
        }
        let mut b = a.clone();
        b.set_u32(20, 1);
        assert_eq!(parse(Command::ObjGet, &b), Err(Errno::INVAL));
    }

    #[test]
    fn query_parsing() {
        let a = attr(&[(0, 5), (4, 46), (8, 1), (24, 10)]);
        match parse(Command::ProgQuery, &a) {
            Ok(Request::ProgQuery(q)) => {
                assert_eq!((q.target, q.attach_type, q.prog_cnt), (5, 46, 10));
                assert!(query_target_is_ifindex(q.attach_type));
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(
            parse(Command::ProgQuery, &attr(&[(8, 2)])),
            Err(Errno::INVAL)
        );
        assert!(!query_target_is_ifindex(0));
        let t = attr(&[(0, 1), (4, 3), (12, 64)]);
        match parse(Command::TaskFdQuery, &t) {
            Ok(Request::TaskFdQuery(q)) => assert_eq!((q.pid, q.fd, q.buf_len), (1, 3, 64)),
            r => panic!("{r:?}"),
        }
        assert_eq!(
            parse(Command::TaskFdQuery, &attr(&[(8, 1)])),
            Err(Errno::INVAL)
        );
    }

    #[test]
    fn walking_visible_ids() {
        let v = [3, 7, 9, 200];
        assert_eq!(next_visible(&v, 0), Some(3));
        assert_eq!(next_visible(&v, 3), Some(7));
        assert_eq!(next_visible(&v, 4), Some(7));
        assert_eq!(next_visible(&v, 9), Some(200));
        assert_eq!(next_visible(&v, 200), None);
        assert_eq!(next_visible(&[], 0), None);
        // A full walk visits exactly the visible ids.
        let mut seen = vec![];
        let mut cur = 0;
        while let Some(n) = next_visible(&v, cur) {
            seen.push(n);
            cur = n;
        }
        assert_eq!(seen, v);
    }

    #[test]
    fn capability_rules() {
        assert!(may_use_ids(C::BPF));
        assert!(may_use_ids(C::SYS_ADMIN));
        assert!(!may_use_ids(C::PERFMON | C::NET_ADMIN | C::SYSLOG));
        assert!(!may_use_ids(C::empty()));
        assert!(may_query(C::NET_ADMIN));
        assert!(may_query(C::BPF));
        assert!(!may_query(C::PERFMON));
    }

    fn e(p: u32) -> QueryEntry {
        QueryEntry {
            prog_id: p,
            ..Default::default()
        }
    }

    #[test]
    fn query_reply_rules() {
        let r = query_reply(vec![e(1), e(2), e(3)], 10, true);
        assert_eq!((r.total, r.copy.len(), r.error), (3, 3, None));
        let r = query_reply(vec![e(1), e(2), e(3)], 2, true);
        assert_eq!((r.total, r.copy.len(), r.error), (3, 2, Some(Errno::NOSPC)));
        assert_eq!(r.copy, vec![e(1), e(2)]);
        let r = query_reply(vec![e(1)], 0, true);
        assert_eq!((r.total, r.copy.len(), r.error), (1, 0, None));
        let r = query_reply(vec![e(1)], 5, false);
        assert_eq!((r.total, r.copy.len(), r.error), (1, 0, None));
        let r = query_reply(vec![], 5, true);
        assert_eq!((r.total, r.copy.len(), r.error), (0, 0, None));
    }

    #[test]
    fn task_fd_name_rules() {
        assert_eq!(
            task_fd_name_reply(b"sys_enter", 64, 1),
            (b"sys_enter\0".to_vec(), None)
        );
        assert_eq!(
            task_fd_name_reply(b"sys_enter", 4, 1),
            (b"sys\0".to_vec(), Some(Errno::NOSPC))
        );
        assert_eq!(task_fd_name_reply(b"x", 0, 1), (vec![], None));
        assert_eq!(task_fd_name_reply(b"x", 8, 0), (vec![], None));
    }

    #[test]
    fn fd_kinds() {
        assert_eq!(
            kind_of_link_target("anon_inode:bpf-map"),
            Some(ObjectKind::Map)
        );
        assert_eq!(
            kind_of_link_target("anon_inode:bpf-prog"),
            Some(ObjectKind::Prog)
        );
        assert_eq!(
            kind_of_link_target("anon_inode:bpf_link"),
            Some(ObjectKind::Link)
        );
        assert_eq!(kind_of_link_target("anon_inode:btf"), Some(ObjectKind::Btf));
        assert_eq!(kind_of_link_target("anon_inode:bpf-token"), None);
        assert_eq!(kind_of_link_target("/etc/passwd"), None);
    }

    #[test]
    fn status_parsing() {
        let s = "Name:\tx\nUid:\t1000\t1000\t1000\t1001\nGid:\t100\t100\t100\t101\n\
                 Groups:\t4 24 27 \nNSpid:\t4242\t7\n";
        assert_eq!(fs_creds_from_status(s), Some((1001, 101, vec![4, 24, 27])));
        assert_eq!(nspids_from_status(s), Some(vec![4242, 7]));
        let empty_groups = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n";
        assert_eq!(fs_creds_from_status(empty_groups), Some((0, 0, vec![])));
        assert_eq!(fs_creds_from_status("Uid:\t0\n"), None);
    }
}
