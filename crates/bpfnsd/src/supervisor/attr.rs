//! The trapped bpf() commands and their `union bpf_attr` layouts, parsed from raw bytes.
//!
//! Pure code: no system calls. The supervisor reads the caller's attr once, zero-padded to
//! [`ATTR_SIZE`] like the kernel's own copy (`memset` + `copy_from_user` of `size` bytes), and
//! everything it decides comes from that one copy.
//!
//! Each command also gets the kernel's `CHECK_ATTR` treatment: bytes after the command's last
//! field must be zero, or the answer is `EINVAL`, as it would be without bpfns.

use std::collections::BTreeSet;

use bpfns_model::ObjectKind;
use bpfns_sys::rawbpf::{ATTR_MAX, BPF_F_PATH_FD, BPF_F_RDONLY, BPF_F_TOKEN_FD, BPF_F_WRONLY};
use bpfns_sys::Errno;

pub use bpfns_sys::rawbpf::ATTR_SIZE;

// bpf() command numbers (include/uapi/linux/bpf.h, as libbpf carries it).
/// `BPF_MAP_CREATE` (trapped where bpfnsd makes members' maps, or the policy restricts map
/// types).
pub const MAP_CREATE: u32 = bpfns_sys::rawbpf::cmd::BPF_MAP_CREATE;
/// `BPF_BTF_LOAD` (trapped where bpfnsd makes members' BTF objects).
pub const BTF_LOAD: u32 = bpfns_sys::rawbpf::cmd::BPF_BTF_LOAD;
/// `BPF_PROG_LOAD`.
pub const PROG_LOAD: u32 = bpfns_sys::rawbpf::cmd::BPF_PROG_LOAD;
/// `BPF_OBJ_GET`.
pub const OBJ_GET: u32 = bpfns_sys::rawbpf::cmd::BPF_OBJ_GET;
/// `BPF_PROG_ATTACH`.
pub const PROG_ATTACH: u32 = bpfns_sys::rawbpf::cmd::BPF_PROG_ATTACH;
/// `BPF_PROG_DETACH`.
pub const PROG_DETACH: u32 = bpfns_sys::rawbpf::cmd::BPF_PROG_DETACH;
/// `BPF_PROG_GET_NEXT_ID`.
pub const PROG_GET_NEXT_ID: u32 = bpfns_sys::rawbpf::cmd::BPF_PROG_GET_NEXT_ID;
/// `BPF_MAP_GET_NEXT_ID`.
pub const MAP_GET_NEXT_ID: u32 = bpfns_sys::rawbpf::cmd::BPF_MAP_GET_NEXT_ID;
/// `BPF_PROG_GET_FD_BY_ID`.
pub const PROG_GET_FD_BY_ID: u32 = bpfns_sys::rawbpf::cmd::BPF_PROG_GET_FD_BY_ID;
/// `BPF_MAP_GET_FD_BY_ID`.
pub const MAP_GET_FD_BY_ID: u32 = bpfns_sys::rawbpf::cmd::BPF_MAP_GET_FD_BY_ID;
/// `BPF_PROG_QUERY`.
pub const PROG_QUERY: u32 = bpfns_sys::rawbpf::cmd::BPF_PROG_QUERY;
/// `BPF_BTF_GET_FD_BY_ID`.
pub const BTF_GET_FD_BY_ID: u32 = bpfns_sys::rawbpf::cmd::BPF_BTF_GET_FD_BY_ID;
/// `BPF_TASK_FD_QUERY`.
pub const TASK_FD_QUERY: u32 = bpfns_sys::rawbpf::cmd::BPF_TASK_FD_QUERY;
/// `BPF_BTF_GET_NEXT_ID`.
pub const BTF_GET_NEXT_ID: u32 = bpfns_sys::rawbpf::cmd::BPF_BTF_GET_NEXT_ID;
/// `BPF_LINK_GET_FD_BY_ID`.
pub const LINK_GET_FD_BY_ID: u32 = bpfns_sys::rawbpf::cmd::BPF_LINK_GET_FD_BY_ID;
/// `BPF_LINK_UPDATE`.
pub const LINK_UPDATE: u32 = bpfns_sys::rawbpf::cmd::BPF_LINK_UPDATE;
/// `BPF_LINK_GET_NEXT_ID`.
pub const LINK_GET_NEXT_ID: u32 = bpfns_sys::rawbpf::cmd::BPF_LINK_GET_NEXT_ID;
/// `BPF_LINK_CREATE`.
pub const LINK_CREATE: u32 = bpfns_sys::rawbpf::cmd::BPF_LINK_CREATE;
/// `BPF_LINK_DETACH`.
pub const LINK_DETACH: u32 = bpfns_sys::rawbpf::cmd::BPF_LINK_DETACH;

/// Every bpf() command the member filter traps, ascending.
pub use bpfns_sys::member_filter::TRAPPED;

/// A trapped command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    ObjGet,
    NextId(ObjectKind),
    FdById(ObjectKind),
    ProgQuery,
    TaskFdQuery,
    ProgLoad,
    ProgAttach,
    ProgDetach,
    LinkCreate,
    LinkUpdate,
    LinkDetach,
    /// Trapped where bpfnsd makes members' maps, or their policy restricts map types.
    MapCreate,
    /// Trapped where bpfnsd makes members' BTF objects.
    BtfLoad,
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
            PROG_LOAD => Self::ProgLoad,
            PROG_ATTACH => Self::ProgAttach,
            PROG_DETACH => Self::ProgDetach,
            LINK_CREATE => Self::LinkCreate,
            LINK_UPDATE => Self::LinkUpdate,
            LINK_DETACH => Self::LinkDetach,
            MAP_CREATE => Self::MapCreate,
            BTF_LOAD => Self::BtfLoad,
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
            Self::ProgLoad => PROG_LOAD,
            Self::ProgAttach => PROG_ATTACH,
            Self::ProgDetach => PROG_DETACH,
            Self::LinkCreate => LINK_CREATE,
            Self::LinkUpdate => LINK_UPDATE,
            Self::LinkDetach => LINK_DETACH,
            Self::MapCreate => MAP_CREATE,
            Self::BtfLoad => BTF_LOAD,
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
            Self::ProgLoad => "BPF_PROG_LOAD",
            Self::ProgAttach => "BPF_PROG_ATTACH",
            Self::ProgDetach => "BPF_PROG_DETACH",
            Self::LinkCreate => "BPF_LINK_CREATE",
            Self::LinkUpdate => "BPF_LINK_UPDATE",
            Self::LinkDetach => "BPF_LINK_DETACH",
            Self::MapCreate => "BPF_MAP_CREATE",
            Self::BtfLoad => "BPF_BTF_LOAD",
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
            // ... keyring_id (6.18)
            Self::ProgLoad => PROG_LOAD_END,
            // target, attach_bpf_fd, attach_type, attach_flags, replace_bpf_fd, relative,
            // expected_revision
            Self::ProgAttach | Self::ProgDetach => 32,
            // prog_fd, target, attach_type, flags, then the union up to uprobe_multi.pid
            Self::LinkCreate => 60,
            // link_fd, new_prog_fd, flags, old_prog_fd
            Self::LinkUpdate => 16,
            // link_fd
            Self::LinkDetach => 4,
            // The kernel checks them, on the caller's attr or on bpfnsd's copy of it.
            Self::MapCreate | Self::BtfLoad => ATTR_SIZE,
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

    /// Store a u32 at `off` (in this copy only), which then passes it whole: a caller's size
    /// that ends inside the field must not hand the kernel part of a number of bpfnsd's.
    pub fn set_u32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self.len = self.len.max(off + 4);
    }

    /// Store a u64 at `off` (in this copy only), passed whole as [`Attr::set_u32`].
    pub fn set_u64(&mut self, off: usize, v: u64) {
        self.bytes[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self.len = self.len.max(off + 8);
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

    /// `BPF_MAP_CREATE`'s fields (`union bpf_attr`, Linux 6.18; earlier kernels end earlier).
    pub const M_MAP_TYPE: usize = 0;
    pub const M_MAP_FLAGS: usize = 16;
    pub const M_INNER_MAP_FD: usize = 20;
    pub const M_MAP_IFINDEX: usize = 44;
    pub const M_BTF_FD: usize = 48;
    pub const M_BTF_KEY_TYPE_ID: usize = 52;
    pub const M_BTF_VALUE_TYPE_ID: usize = 56;
    pub const M_BTF_VMLINUX_VALUE_TYPE_ID: usize = 60;
    pub const M_VALUE_TYPE_BTF_OBJ_FD: usize = 72;
    pub const M_MAP_TOKEN_FD: usize = 76;
    pub const M_EXCL_PROG_HASH: usize = 80;
    pub const M_EXCL_PROG_HASH_SIZE: usize = 88;

    /// `BPF_BTF_LOAD`'s fields.
    pub const B_BTF: usize = 0;
    pub const B_LOG_BUF: usize = 8;
    pub const B_SIZE: usize = 16;
    pub const B_LOG_SIZE: usize = 20;
    pub const B_LOG_LEVEL: usize = 24;
    /// Output (6.4+): the log's full size.
    pub const B_LOG_TRUE_SIZE: usize = 28;
    pub const B_FLAGS: usize = 32;
    pub const B_TOKEN_FD: usize = 36;

    /// `BPF_PROG_LOAD`'s fields (`union bpf_attr`, Linux 6.18; earlier kernels end earlier).
    pub const L_PROG_TYPE: usize = 0;
    pub const L_INSN_CNT: usize = 4;
    pub const L_INSNS: usize = 8;
    pub const L_LICENSE: usize = 16;
    pub const L_LOG_LEVEL: usize = 24;
    pub const L_LOG_SIZE: usize = 28;
    pub const L_LOG_BUF: usize = 32;
    pub const L_KERN_VERSION: usize = 40;
    pub const L_PROG_FLAGS: usize = 44;
    pub const L_PROG_NAME: usize = 48;
    pub const L_PROG_IFINDEX: usize = 64;
    pub const L_EXPECTED_ATTACH_TYPE: usize = 68;
    pub const L_PROG_BTF_FD: usize = 72;
    pub const L_FUNC_INFO_REC_SIZE: usize = 76;
    pub const L_FUNC_INFO: usize = 80;
    pub const L_FUNC_INFO_CNT: usize = 88;
    pub const L_LINE_INFO_REC_SIZE: usize = 92;
    pub const L_LINE_INFO: usize = 96;
    pub const L_LINE_INFO_CNT: usize = 104;
    pub const L_ATTACH_BTF_ID: usize = 108;
    pub const L_ATTACH_PROG_FD: usize = 112;
    pub const L_CORE_RELO_CNT: usize = 116;
    pub const L_FD_ARRAY: usize = 120;
    pub const L_CORE_RELOS: usize = 128;
    pub const L_CORE_RELO_REC_SIZE: usize = 136;
    /// Output (6.4+): the log's full size.
    pub const L_LOG_TRUE_SIZE: usize = 140;
    pub const L_PROG_TOKEN_FD: usize = 144;
    pub const L_FD_ARRAY_CNT: usize = 148;
    pub const L_SIGNATURE: usize = 152;
    pub const L_SIGNATURE_SIZE: usize = 160;
    pub const L_KEYRING_ID: usize = 164;

    /// `target_fd` / `target_ifindex` (BPF_PROG_ATTACH / BPF_PROG_DETACH).
    pub const A_TARGET: usize = 0;
    /// `attach_bpf_fd`.
    pub const A_ATTACH_BPF_FD: usize = 4;
    /// `attach_type`.
    pub const A_ATTACH_TYPE: usize = 8;
    /// `attach_flags`.
    pub const A_ATTACH_FLAGS: usize = 12;
    /// `replace_bpf_fd`.
    pub const A_REPLACE_BPF_FD: usize = 16;
    /// `relative_fd` / `relative_id`.
    pub const A_RELATIVE: usize = 20;
    /// `expected_revision` (u64).
    pub const A_EXPECTED_REVISION: usize = 24;

    /// `link_update.link_fd` / `link_detach.link_fd`.
    pub const LU_LINK_FD: usize = 0;
    /// `link_update.new_prog_fd` / `new_map_fd`.
    pub const LU_NEW_FD: usize = 4;
    /// `link_update.flags`.
    pub const LU_FLAGS: usize = 8;
    /// `link_update.old_prog_fd` / `old_map_fd`.
    pub const LU_OLD_FD: usize = 12;
    /// `link_create.prog_fd` (`map_fd` for struct_ops).
    pub const LC_PROG_FD: usize = 0;
    /// `link_create.target_fd` / `target_ifindex`.
    pub const LC_TARGET: usize = 4;
    /// `link_create.attach_type`.
    pub const LC_ATTACH_TYPE: usize = 8;
    /// `link_create.flags`.
    pub const LC_FLAGS: usize = 12;
    /// `link_create.{tcx,netkit,cgroup}.relative_fd` / `relative_id`.
    pub const LC_RELATIVE: usize = 16;
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
    /// `BPF_PROG_LOAD`.
    ProgLoad(ProgLoadReq),
    /// `BPF_PROG_ATTACH`.
    Attach(AttachReq),
    /// `BPF_PROG_DETACH`.
    Detach(AttachReq),
    /// `BPF_LINK_CREATE`.
    LinkCreate(LinkCreateReq),
    /// `BPF_LINK_UPDATE`.
    LinkUpdate(LinkUpdateReq),
    /// `BPF_LINK_DETACH`.
    LinkDetach { link_fd: u32 },
    /// `BPF_MAP_CREATE`.
    MapCreate(MapCreateReq),
    /// `BPF_BTF_LOAD`.
    BtfLoad(BtfLoadReq),
}

/// `BPF_BTF_LOAD`: every field, as read from the caller's attr (the supervisor makes the call
/// itself from its copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BtfLoadReq {
    pub btf: u64,
    pub log_buf: u64,
    pub btf_size: u32,
    pub log_size: u32,
    pub log_level: u32,
    pub flags: u32,
    pub token_fd: u32,
}

impl BtfLoadReq {
    /// Whether the caller passes a BPF token (`BPF_F_TOKEN_FD`).
    pub fn with_token(&self) -> bool {
        self.flags & BPF_F_TOKEN_FD != 0
    }

    /// How many bytes of the caller's log bpfnsd gives the kernel (0: no log), or the kernel's
    /// answer to the request: `E2BIG` above [`BTF_MAX_SIZE`], `EINVAL` for a log without a
    /// buffer, size or level (`bpf_verifier_log_attr_valid`).
    pub fn log_len(&self) -> Result<usize, Errno> {
        if self.btf_size > BTF_MAX_SIZE {
            return Err(Errno::TOOBIG);
        }
        if self.log_buf == 0 && self.log_size == 0 {
            return Ok(0);
        }
        if self.log_buf == 0
            || self.log_size == 0
            || self.log_level == 0
            || self.log_size > u32::MAX >> 2
        {
            return Err(Errno::INVAL);
        }
        Ok(self.log_size.min(LOAD_LOG_MAX) as usize)
    }
}

/// `BTF_MAX_SIZE`: the largest BTF blob the kernel takes (`E2BIG` above).
pub const BTF_MAX_SIZE: u32 = 16 << 20;
/// Where `BPF_BTF_LOAD`'s fields end (Linux 6.9: after `btf_token_fd`).
pub const BTF_LOAD_END: usize = off::B_TOKEN_FD + 4;

/// The fields of a `BPF_MAP_CREATE` the supervisor looks at or rewrites (the rest of the attr
/// is passed on as it was read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MapCreateReq {
    pub map_type: u32,
    pub map_flags: u32,
    pub inner_map_fd: u32,
    pub map_ifindex: u32,
    pub btf_fd: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub value_type_btf_obj_fd: u32,
    pub map_token_fd: u32,
    pub excl_prog_hash: u64,
    pub excl_prog_hash_size: u32,
}

impl MapCreateReq {
    /// Whether the caller passes a BPF token (`BPF_F_TOKEN_FD`).
    pub fn with_token(&self) -> bool {
        self.map_flags & BPF_F_TOKEN_FD != 0
    }

    /// The fd fields the kernel resolves for this request, with their offsets: the inner map
    /// of a map-in-map, the BTF object where a type id is given, the value type's BTF object
    /// with `BPF_F_VTYPE_BTF_OBJ_FD`. (The token is taken apart: [`Self::with_token`].)
    pub fn used_fds(&self) -> Vec<(usize, u32)> {
        use bpfns_sys::rawbpf::uapi as u;
        let mut v = Vec::new();
        if matches!(
            self.map_type,
            u::BPF_MAP_TYPE_ARRAY_OF_MAPS | u::BPF_MAP_TYPE_HASH_OF_MAPS
        ) {
            v.push((off::M_INNER_MAP_FD, self.inner_map_fd));
        }
        if self.btf_key_type_id != 0
            || self.btf_value_type_id != 0
            || self.btf_vmlinux_value_type_id != 0
        {
            v.push((off::M_BTF_FD, self.btf_fd));
        }
        if self.map_flags & u::BPF_F_VTYPE_BTF_OBJ_FD != 0 {
            v.push((off::M_VALUE_TYPE_BTF_OBJ_FD, self.value_type_btf_obj_fd));
        }
        v
    }

    /// The fd fields the kernel leaves alone for this request (it never resolves them).
    pub fn unused_fds(&self) -> Vec<(usize, u32)> {
        let used: Vec<usize> = self.used_fds().iter().map(|(o, _)| *o).collect();
        [
            (off::M_INNER_MAP_FD, self.inner_map_fd),
            (off::M_BTF_FD, self.btf_fd),
            (off::M_VALUE_TYPE_BTF_OBJ_FD, self.value_type_btf_obj_fd),
        ]
        .into_iter()
        .filter(|(o, _)| !used.contains(o))
        .collect()
    }
}

/// The length of `excl_prog_hash` the kernel takes (`SHA256_DIGEST_SIZE`).
pub const EXCL_PROG_HASH_SIZE: u32 = 32;
/// Where `BPF_MAP_CREATE`'s fields end (Linux 6.18: after `excl_prog_hash_size`).
pub const MAP_CREATE_END: usize = off::M_EXCL_PROG_HASH_SIZE + 4;

/// The inputs of a `BPF_PROG_ATTACH` or `BPF_PROG_DETACH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachReq {
    /// `target_fd` or `target_ifindex`.
    pub target: u32,
    pub attach_bpf_fd: u32,
    pub attach_type: u32,
    pub flags: u32,
    pub replace_bpf_fd: u32,
    /// `relative_fd` or `relative_id`.
    pub relative: u32,
    pub expected_revision: u64,
}

/// The inputs of a `BPF_LINK_CREATE` the supervisor looks at (the rest of the attr is passed
/// on as it was read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkCreateReq {
    pub prog_fd: u32,
    /// `target_fd` or `target_ifindex`.
    pub target: u32,
    pub attach_type: u32,
    pub flags: u32,
    /// `relative_fd` or `relative_id` (tcx, netkit, cgroups).
    pub relative: u32,
}

/// The inputs of a `BPF_LINK_UPDATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkUpdateReq {
    pub link_fd: u32,
    /// `new_prog_fd` (or `new_map_fd` for struct_ops links).
    pub new_fd: u32,
    pub flags: u32,
    /// `old_prog_fd` (or `old_map_fd`), used with `BPF_F_REPLACE`.
    pub old_fd: u32,
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
        Command::ProgLoad => Ok(Request::ProgLoad(ProgLoadReq::parse(attr))),
        Command::ProgAttach | Command::ProgDetach => {
            let a = AttachReq {
                target: attr.u32_at(off::A_TARGET),
                attach_bpf_fd: attr.u32_at(off::A_ATTACH_BPF_FD),
                attach_type: attr.u32_at(off::A_ATTACH_TYPE),
                flags: attr.u32_at(off::A_ATTACH_FLAGS),
                replace_bpf_fd: attr.u32_at(off::A_REPLACE_BPF_FD),
                relative: attr.u32_at(off::A_RELATIVE),
                expected_revision: attr.u64_at(off::A_EXPECTED_REVISION),
            };
            Ok(if cmd == Command::ProgAttach {
                Request::Attach(a)
            } else {
                Request::Detach(a)
            })
        }
        Command::LinkCreate => Ok(Request::LinkCreate(LinkCreateReq {
            prog_fd: attr.u32_at(off::LC_PROG_FD),
            target: attr.u32_at(off::LC_TARGET),
            attach_type: attr.u32_at(off::LC_ATTACH_TYPE),
            flags: attr.u32_at(off::LC_FLAGS),
            relative: attr.u32_at(off::LC_RELATIVE),
        })),
        Command::LinkUpdate => Ok(Request::LinkUpdate(LinkUpdateReq {
            link_fd: attr.u32_at(off::LU_LINK_FD),
            new_fd: attr.u32_at(off::LU_NEW_FD),
            flags: attr.u32_at(off::LU_FLAGS),
            old_fd: attr.u32_at(off::LU_OLD_FD),
        })),
        Command::LinkDetach => Ok(Request::LinkDetach {
            link_fd: attr.u32_at(off::LU_LINK_FD),
        }),
        Command::BtfLoad => Ok(Request::BtfLoad(BtfLoadReq {
            btf: attr.u64_at(off::B_BTF),
            log_buf: attr.u64_at(off::B_LOG_BUF),
            btf_size: attr.u32_at(off::B_SIZE),
            log_size: attr.u32_at(off::B_LOG_SIZE),
            log_level: attr.u32_at(off::B_LOG_LEVEL),
            flags: attr.u32_at(off::B_FLAGS),
            token_fd: attr.u32_at(off::B_TOKEN_FD),
        })),
        Command::MapCreate => Ok(Request::MapCreate(MapCreateReq {
            map_type: attr.u32_at(off::M_MAP_TYPE),
            map_flags: attr.u32_at(off::M_MAP_FLAGS),
            inner_map_fd: attr.u32_at(off::M_INNER_MAP_FD),
            map_ifindex: attr.u32_at(off::M_MAP_IFINDEX),
            btf_fd: attr.u32_at(off::M_BTF_FD),
            btf_key_type_id: attr.u32_at(off::M_BTF_KEY_TYPE_ID),
            btf_value_type_id: attr.u32_at(off::M_BTF_VALUE_TYPE_ID),
            btf_vmlinux_value_type_id: attr.u32_at(off::M_BTF_VMLINUX_VALUE_TYPE_ID),
            value_type_btf_obj_fd: attr.u32_at(off::M_VALUE_TYPE_BTF_OBJ_FD),
            map_token_fd: attr.u32_at(off::M_MAP_TOKEN_FD),
            excl_prog_hash: attr.u64_at(off::M_EXCL_PROG_HASH),
            excl_prog_hash_size: attr.u32_at(off::M_EXCL_PROG_HASH_SIZE),
        })),
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

// ---------------------------------------------------------------------------------------------
// Loading programs

/// Program types that read kernel memory or iterate every BPF object (the kernel gates them
/// behind `CAP_PERFMON`: `is_perfmon_prog_type`). Keep in step with `tracing_class()` in
/// `bpfns.bpf.c`, which stops a member that loads one where its policy denies tracing.
pub fn is_tracing_class(prog_type: u32) -> bool {
    bpfns_model::TRACING_PROGS.contains(prog_type)
}

/// Program types the kernel loads only with `CAP_NET_ADMIN` (`is_net_admin_prog_type`).
pub fn is_net_admin_prog_type(prog_type: u32) -> bool {
    use bpfns_sys::rawbpf::uapi as u;
    matches!(
        prog_type,
        u::BPF_PROG_TYPE_SCHED_CLS
            | u::BPF_PROG_TYPE_SCHED_ACT
            | u::BPF_PROG_TYPE_XDP
            | u::BPF_PROG_TYPE_LWT_IN
            | u::BPF_PROG_TYPE_LWT_OUT
            | u::BPF_PROG_TYPE_LWT_XMIT
            | u::BPF_PROG_TYPE_LWT_SEG6LOCAL
            | u::BPF_PROG_TYPE_SK_SKB
            | u::BPF_PROG_TYPE_SK_MSG
            | u::BPF_PROG_TYPE_FLOW_DISSECTOR
            | u::BPF_PROG_TYPE_CGROUP_DEVICE
            | u::BPF_PROG_TYPE_CGROUP_SOCK
            | u::BPF_PROG_TYPE_CGROUP_SOCK_ADDR
            | u::BPF_PROG_TYPE_CGROUP_SOCKOPT
            | u::BPF_PROG_TYPE_CGROUP_SYSCTL
            | u::BPF_PROG_TYPE_SOCK_OPS
            | u::BPF_PROG_TYPE_EXT
            | u::BPF_PROG_TYPE_NETFILTER
    )
}

/// Why a `BPF_PROG_LOAD` of a namespace member is refused (`EPERM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadRefusal {
    /// Syscall programs call bpf() from inside the kernel, past every bpfns layer.
    Syscall,
    /// A tracing-class program where the namespace's policy denies tracing.
    TracingClass(u32),
    /// The request cannot be made from bpfnsd's copy without changing what it means.
    Unsupported(&'static str),
    /// A call of a kernel function (kfunc) that is not on bpfnsd's allowlist: generic kfuncs
    /// reach every program type, and some act on any task (`bpf_task_from_pid` with
    /// `bpf_send_signal_task` signals any process on the host). `module`: the kfunc is in a
    /// module's BTF (`insn.off != 0`), never allowed.
    Kfunc {
        insn: usize,
        btf_id: i32,
        module: bool,
    },
}

impl LoadRefusal {
    /// What was refused, for the log.
    pub fn reason(&self) -> String {
        match self {
            LoadRefusal::Syscall => {
                "syscall programs call bpf() from inside the kernel, past bpfns".to_string()
            }
            LoadRefusal::TracingClass(t) => format!(
                "program type {t} is tracing-class (it reads kernel memory) and the \
                 namespace's policy denies tracing"
            ),
            LoadRefusal::Unsupported(what) => (*what).to_string(),
            LoadRefusal::Kfunc {
                insn,
                btf_id,
                module,
            } => format!(
                "instruction {insn} calls the kernel function with BTF id {btf_id}{} [kfunc], \
                 which is not on the list of kfuncs with no power over other tasks, cgroups or \
                 kernel memory that bpfnsd lets programs it loads call (bpf_task_from_pid with \
                 bpf_send_signal_task, for one, would signal any process on the host)",
                if *module { " of a module's BTF" } else { "" }
            ),
        }
    }

    /// How to get the load through, for the log.
    pub fn fix(&self) -> &'static str {
        match self {
            LoadRefusal::Syscall => "load syscall programs outside namespaces",
            LoadRefusal::TracingClass(_) => {
                "allow tracing for the namespace (`bpfns ns policy NS --allow-tracing`) if its \
                 tenants may read kernel memory"
            }
            LoadRefusal::Unsupported(_) => {
                "load it outside namespaces, or from a namespace whose policy allows tracing \
                 (there the kernel answers the load itself)"
            }
            LoadRefusal::Kfunc { .. } => {
                "call only the kfuncs bpfns allows (docs/supervisor.md), or allow tracing for \
                 the namespace (`bpfns ns policy NS --allow-tracing`) if its tenants are \
                 trusted with the kernel"
            }
        }
    }
}

/// How a member's `BPF_PROG_LOAD` is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadWay {
    /// Let the kernel run it with the caller's credentials (`CONTINUE`): a root-namespace
    /// caller, or a namespace whose policy allows tracing (whose members may have perfmon
    /// power). A racer that turns the program into a syscall program after this look is
    /// stopped by the kernel side, which quarantines the program.
    Continue,
    /// `EPERM`, logged with the fix.
    Refuse(LoadRefusal),
    /// bpfnsd makes the call itself from its copy of the request, with credentials that never
    /// carry perfmon power ([`load_caps`]).
    Here,
}

/// The supervisor's answer to a `BPF_PROG_LOAD` whose attr (read once: what is decided here
/// is what is loaded) asks for `prog_type`, from a caller of namespace `ns_is_root` / whose
/// policy `allows_tracing`.
pub fn load_way(ns_is_root: bool, allows_tracing: bool, prog_type: u32) -> LoadWay {
    if ns_is_root {
        // The kernel's rules, as without bpfns.
        return LoadWay::Continue;
    }
    if prog_type == bpfns_sys::rawbpf::uapi::BPF_PROG_TYPE_SYSCALL {
        return LoadWay::Refuse(LoadRefusal::Syscall);
    }
    if allows_tracing {
        return LoadWay::Continue;
    }
    if is_tracing_class(prog_type) {
        return LoadWay::Refuse(LoadRefusal::TracingClass(prog_type));
    }
    LoadWay::Here
}

/// What of a namespace's policy a trapped request of one of its members falls outside of:
/// the command (`cmds`), at `BPF_MAP_CREATE` the map type (`maps`), at `BPF_PROG_LOAD` the program type (`progs`) and the attach type it
/// implies (`attachs`, when it names one: `expected_attach_type` after the kernel's fixup,
/// 0 meaning none), at `BPF_PROG_ATTACH` and `BPF_LINK_CREATE` the attach type. `None`: within
/// it. The caller is answered `EPERM` before anything is done for it.
pub fn policy_refusal(
    policy: &bpfns_model::Policy,
    cmd: Command,
    req: &Request,
) -> Option<(bpfns_model::Field, u32)> {
    use bpfns_model::Field;
    let outside = |f: Field, n: u32| (!policy.get(f).contains(n)).then_some((f, n));
    if let Some(r) = outside(Field::Cmds, cmd.raw()) {
        return Some(r);
    }
    match req {
        Request::ProgLoad(r) => outside(Field::Progs, r.prog_type).or_else(|| {
            match fixup_attach_type(r.prog_type, r.expected_attach_type) {
                0 => None,
                a => outside(Field::Attachs, a),
            }
        }),
        Request::Attach(a) => outside(Field::Attachs, a.attach_type),
        Request::LinkCreate(l) => outside(Field::Attachs, l.attach_type),
        Request::MapCreate(m) => outside(Field::Maps, m.map_type),
        _ => None,
    }
}

/// [`policy_refusal`]'s finding in words, with the fix.
pub fn policy_refusal_text(ns: bpfns_model::NsId, (f, n): (bpfns_model::Field, u32)) -> String {
    use bpfns_model::Field;
    let what = match f {
        Field::Cmds => "command",
        Field::Maps => "map type",
        Field::Progs => "program type",
        Field::Attachs => "attach type",
    };
    let name = bpfns_sys::names::name(f, n).map_or_else(|| n.to_string(), str::to_owned);
    let tracing = if f == Field::Progs && is_tracing_class(n) {
        " (tracing-class: it reads kernel memory)"
    } else {
        ""
    };
    format!(
        "{what} {name}{tracing} is outside the {f} of namespace {ns}'s policy; fix: \
         `bpfns ns policy NS --allow-{f} {name}` from its parent, if its parent's policy allows it"
    )
}

/// The effective capabilities bpfnsd loads a member's program with: never `CAP_PERFMON` nor
/// `CAP_SYS_ADMIN` (either is perfmon power: every program type may then read kernel
/// memory), and never more than the kernel would grant the caller otherwise.
///
/// `borrowed` is the caller's effective set where it is in the initial user namespace (empty
/// otherwise: capabilities of another user namespace count for nothing in a load without a
/// token). `CAP_SYS_ADMIN` stands for `CAP_BPF` and `CAP_NET_ADMIN` here, as the kernel's
/// checks accept it for both. `token` is whether the caller's BPF token delegates this load
/// ([`TokenInfo::allows_load`]): then `CAP_BPF`, and `CAP_NET_ADMIN` for the program types
/// that need it, as the kernel grants through the token (`bpf_token_capable`). `CAP_SYSLOG`,
/// where the caller holds it, lets the returned fd show kernel addresses as the kernel's would.
pub fn load_caps(
    borrowed: bpfns_sys::caps::CapabilitySet,
    token: bool,
    prog_type: u32,
) -> bpfns_sys::caps::CapabilitySet {
    use bpfns_sys::caps::CapabilitySet as C;
    let mut c = C::empty();
    if borrowed.intersects(C::BPF | C::SYS_ADMIN) {
        c |= C::BPF;
    }
    if borrowed.intersects(C::NET_ADMIN | C::SYS_ADMIN) {
        c |= C::NET_ADMIN;
    }
    if borrowed.contains(C::SYSLOG) {
        c |= C::SYSLOG;
    }
    if token {
        c |= C::BPF;
        if is_net_admin_prog_type(prog_type) {
            c |= C::NET_ADMIN;
        }
    }
    c
}

/// The effective capabilities bpfnsd makes a member's map with (see `answer/map.rs`): never
/// more than the kernel would grant the caller otherwise. `borrowed` is the caller's effective
/// set where it is in the initial user namespace (empty otherwise); `CAP_SYS_ADMIN` stands for
/// `CAP_BPF` and `CAP_NET_ADMIN` there, as the kernel's checks accept it for both. `token` is
/// whether the caller's BPF token delegates this map type ([`TokenInfo::allows_map`]): then
/// `CAP_BPF` and `CAP_NET_ADMIN`, which the kernel grants through the token
/// (`bpf_token_capable`) for the map types that want them. `CAP_SYS_ADMIN` itself only for a
/// map offloaded to a device (`map_ifindex`), which the kernel wants it for, and only where the
/// caller holds it.
pub fn map_caps(
    borrowed: bpfns_sys::caps::CapabilitySet,
    token: bool,
    offload: bool,
) -> bpfns_sys::caps::CapabilitySet {
    use bpfns_sys::caps::CapabilitySet as C;
    let mut c = C::empty();
    if borrowed.intersects(C::BPF | C::SYS_ADMIN) || token {
        c |= C::BPF;
    }
    if borrowed.intersects(C::NET_ADMIN | C::SYS_ADMIN) || token {
        c |= C::NET_ADMIN;
    }
    if offload && borrowed.contains(C::SYS_ADMIN) {
        c |= C::SYS_ADMIN;
    }
    c
}

/// What a BPF token delegates (its fdinfo: `allowed_cmds`, `allowed_maps`, `allowed_progs`,
/// `allowed_attachs`; or `struct bpf_token_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenInfo {
    pub cmds: u64,
    pub maps: u64,
    pub progs: u64,
    pub attachs: u64,
}

impl TokenInfo {
    /// What the BPF token behind `fd` delegates: `BPF_OBJ_GET_INFO_BY_FD` where the kernel has
    /// it, else its fdinfo (every kernel with tokens). `None` if it is not a token.
    pub fn of_fd(fd: std::os::fd::BorrowedFd<'_>) -> Option<Self> {
        use std::os::fd::AsRawFd;
        // The file first (BPF_OBJ_GET_INFO_BY_FD answers for maps, programs and links too,
        // with other structs; fdinfo is only text), then the lines only a token's fdinfo has.
        if !bpfns_sys::procfs::is_bpf_token(fd) {
            return None;
        }
        let text =
            std::fs::read_to_string(format!("/proc/thread-self/fdinfo/{}", fd.as_raw_fd())).ok()?;
        let from_fdinfo = Self::from_fdinfo(&text)?;
        Some(
            match bpfns_sys::bpf::info::<bpfns_sys::bpf::bpf_token_info>(fd) {
                Ok(i) => Self {
                    cmds: i.allowed_cmds,
                    maps: i.allowed_maps,
                    progs: i.allowed_progs,
                    attachs: i.allowed_attachs,
                },
                Err(_) => from_fdinfo,
            },
        )
    }

    /// Whether the token delegates bpf() command `cmd`.
    pub fn allows_cmd(&self, cmd: u32) -> bool {
        cmd < 64 && self.cmds & (1u64 << cmd) != 0
    }

    /// From a token's `/proc/.../fdinfo/N` text (`bpf_token_show_fdinfo`: `any`, or a hex
    /// mask); `None` if the file is not a token.
    pub fn from_fdinfo(text: &str) -> Option<Self> {
        let field = |name: &str| -> Option<u64> {
            let v = text
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
                .trim();
            if v == "any" {
                Some(u64::MAX)
            } else {
                u64::from_str_radix(v.strip_prefix("0x")?, 16).ok()
            }
        };
        Some(Self {
            cmds: field("allowed_cmds")?,
            maps: field("allowed_maps")?,
            progs: field("allowed_progs")?,
            attachs: field("allowed_attachs")?,
        })
    }

    /// Whether the kernel would take this token for a `BPF_BTF_LOAD` (`bpf_token_allow_cmd`).
    pub fn allows_btf(&self) -> bool {
        self.cmds & (1u64 << BTF_LOAD) != 0
    }

    /// Whether the kernel would take this token for a `BPF_MAP_CREATE` of `map_type`
    /// (`bpf_token_allow_cmd`, `bpf_token_allow_map_type`).
    pub fn allows_map(&self, map_type: u32) -> bool {
        let bit = |mask: u64, b: u32| b < 64 && mask & (1u64 << b) != 0;
        bit(self.cmds, MAP_CREATE) && bit(self.maps, map_type)
    }

    /// Whether the kernel would take this token for a `BPF_PROG_LOAD` of `prog_type` with
    /// `expected_attach_type` (`bpf_token_allow_cmd`, `bpf_token_allow_prog_type`, after
    /// `bpf_prog_load_fixup_attach_type`).
    pub fn allows_load(&self, prog_type: u32, expected_attach_type: u32) -> bool {
        let attach = fixup_attach_type(prog_type, expected_attach_type);
        let bit = |mask: u64, b: u32| b < 64 && mask & (1u64 << b) != 0;
        bit(self.cmds, PROG_LOAD) && bit(self.progs, prog_type) && bit(self.attachs, attach)
    }
}

/// The kernel's `bpf_prog_load_fixup_attach_type`: the attach type a program type implies
/// when none is given.
pub fn fixup_attach_type(prog_type: u32, expected_attach_type: u32) -> u32 {
    use bpfns_sys::rawbpf::uapi as u;
    if expected_attach_type != 0 {
        return expected_attach_type;
    }
    match prog_type {
        u::BPF_PROG_TYPE_CGROUP_SOCK => u::BPF_CGROUP_INET_SOCK_CREATE,
        u::BPF_PROG_TYPE_SK_REUSEPORT => u::BPF_SK_REUSEPORT_SELECT,
        _ => 0,
    }
}

/// `BPF_PROG_LOAD`: every field, as read from the caller's attr (the supervisor makes the call
/// itself from its copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProgLoadReq {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub prog_flags: u32,
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
    pub prog_btf_fd: u32,
    pub func_info_rec_size: u32,
    pub func_info: u64,
    pub func_info_cnt: u32,
    pub line_info_rec_size: u32,
    pub line_info: u64,
    pub line_info_cnt: u32,
    /// `attach_prog_fd` / `attach_btf_obj_fd` (0: none).
    pub attach_prog_fd: u32,
    pub core_relo_cnt: u32,
    pub fd_array: u64,
    pub core_relos: u64,
    pub core_relo_rec_size: u32,
    pub prog_token_fd: u32,
    pub fd_array_cnt: u32,
    pub signature: u64,
    pub signature_size: u32,
    pub keyring_id: i32,
}

impl ProgLoadReq {
    fn parse(a: &Attr) -> Self {
        use off::*;
        Self {
            prog_type: a.u32_at(L_PROG_TYPE),
            insn_cnt: a.u32_at(L_INSN_CNT),
            insns: a.u64_at(L_INSNS),
            license: a.u64_at(L_LICENSE),
            log_level: a.u32_at(L_LOG_LEVEL),
            log_size: a.u32_at(L_LOG_SIZE),
            log_buf: a.u64_at(L_LOG_BUF),
            prog_flags: a.u32_at(L_PROG_FLAGS),
            prog_ifindex: a.u32_at(L_PROG_IFINDEX),
            expected_attach_type: a.u32_at(L_EXPECTED_ATTACH_TYPE),
            prog_btf_fd: a.u32_at(L_PROG_BTF_FD),
            func_info_rec_size: a.u32_at(L_FUNC_INFO_REC_SIZE),
            func_info: a.u64_at(L_FUNC_INFO),
            func_info_cnt: a.u32_at(L_FUNC_INFO_CNT),
            line_info_rec_size: a.u32_at(L_LINE_INFO_REC_SIZE),
            line_info: a.u64_at(L_LINE_INFO),
            line_info_cnt: a.u32_at(L_LINE_INFO_CNT),
            attach_prog_fd: a.u32_at(L_ATTACH_PROG_FD),
            core_relo_cnt: a.u32_at(L_CORE_RELO_CNT),
            fd_array: a.u64_at(L_FD_ARRAY),
            core_relos: a.u64_at(L_CORE_RELOS),
            core_relo_rec_size: a.u32_at(L_CORE_RELO_REC_SIZE),
            prog_token_fd: a.u32_at(L_PROG_TOKEN_FD),
            fd_array_cnt: a.u32_at(L_FD_ARRAY_CNT),
            signature: a.u64_at(L_SIGNATURE),
            signature_size: a.u32_at(L_SIGNATURE_SIZE),
            keyring_id: a.u32_at(L_KEYRING_ID) as i32,
        }
    }

    /// Whether the request passes a BPF token (`BPF_F_TOKEN_FD`).
    pub fn with_token(&self) -> bool {
        self.prog_flags & BPF_F_TOKEN_FD != 0
    }
}

/// End of `BPF_PROG_LOAD`'s last field (`keyring_id`, Linux 6.18): bytes after it must be
/// zero (`CHECK_ATTR`). Older kernels end earlier (6.1: `core_relo_rec_size`; 6.4:
/// `log_true_size`; 6.9: `prog_token_fd`; 6.14: `fd_array_cnt`) and refuse what they do not
/// know when given a copy that sets it, as they would refuse the caller.
pub const PROG_LOAD_END: usize = 168;
const _: () = assert!(ATTR_SIZE >= PROG_LOAD_END);
/// `BPF_COMPLEXITY_LIMIT_INSNS`: the most instructions a program may have (`E2BIG` above).
pub const MAX_INSNS: u32 = 1_000_000;
/// The largest verifier log buffer bpfnsd gives the kernel for a member (libbpf's largest).
/// A caller asking for more gets this much: a log that does not fit is truncated
/// (`ENOSPC`, `log_true_size` tells the size it needed).
pub const LOAD_LOG_MAX: u32 = 16 << 20;
/// The most bpfnsd copies from a caller for one load, log aside (instructions, func and line
/// info, CO-RE relocations, fd_array, signature): `E2BIG` above.
pub const LOAD_COPY_MAX: u64 = 64 << 20;
/// The most `fd_array` entries bpfnsd reads (`E2BIG` above).
pub const FD_ARRAY_MAX: u32 = 1 << 16;
/// The most distinct file descriptors of the caller one load may name (the kernel's own
/// limits are 64 maps, 64 BTF objects and 256 kfunc BTF objects): `E2BIG` above.
pub const LOAD_FDS_MAX: usize = 512;
/// The largest signature the kernel takes (`KMALLOC_MAX_CACHE_SIZE`); `EINVAL` above.
pub const SIGNATURE_MAX: u32 = 8192;
/// `BPF_F_TOKEN_FD` (in `prog_flags`).
pub const LOAD_TOKEN_FLAG: u32 = BPF_F_TOKEN_FD;

/// How many bytes of the caller's memory one load needs copied, per area (0: nothing passed
/// there; the pointer is then passed as 0, or as the caller gave 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadSizes {
    pub insns: usize,
    pub func_info: usize,
    pub line_info: usize,
    pub core_relos: usize,
    pub signature: usize,
    /// The own log buffer (0: no log buffer asked for).
    pub log: usize,
}

impl LoadSizes {
    /// Everything but the log and fd_array.
    pub fn total(&self) -> u64 {
        [
            self.insns,
            self.func_info,
            self.line_info,
            self.core_relos,
            self.signature,
        ]
        .iter()
        .map(|&n| n as u64)
        .sum()
    }
}

/// What to copy for `r`, with the kernel's checks of the sizes it reads by (so that no buffer
/// bpfnsd passes is shorter than what the kernel reads from it) and bpfnsd's own bounds.
pub fn load_sizes(r: &ProgLoadReq) -> Result<LoadSizes, Errno> {
    if r.insn_cnt > MAX_INSNS {
        return Err(Errno::TOOBIG);
    }
    let mut s = LoadSizes {
        insns: r.insn_cnt as usize * 8,
        ..Default::default()
    };
    // check_btf_func / check_btf_line: records of 8 (func) or 16 (line) to 252 bytes, a
    // multiple of 4, at most one per instruction (their insn_off must be increasing).
    let records = |ptr: u64, cnt: u32, rec: u32, min: u32| -> Result<usize, Errno> {
        if ptr == 0 || cnt == 0 {
            return Ok(0);
        }
        if rec < min || rec > 252 || !rec.is_multiple_of(4) || cnt > r.insn_cnt {
            return Err(Errno::INVAL);
        }
        Ok(cnt as usize * rec as usize)
    };
    s.func_info = records(r.func_info, r.func_info_cnt, r.func_info_rec_size, 8)?;
    s.line_info = records(r.line_info, r.line_info_cnt, r.line_info_rec_size, 16)?;
    if r.core_relos != 0 && r.core_relo_cnt != 0 {
        // check_core_relo: at least sizeof(struct bpf_core_relo); a record over a page is
        // refused by bpf_check_uarg_tail_zero (E2BIG).
        if r.core_relo_rec_size < 16 {
            return Err(Errno::INVAL);
        }
        if r.core_relo_rec_size > 4096 {
            return Err(Errno::TOOBIG);
        }
        s.core_relos = r.core_relo_cnt as usize * r.core_relo_rec_size as usize;
    }
    if r.signature != 0 {
        if r.signature_size > SIGNATURE_MAX {
            return Err(Errno::INVAL);
        }
        s.signature = r.signature_size as usize;
    }
    if r.log_buf != 0 || r.log_size != 0 {
        // bpf_verifier_log_attr_valid: both or neither, a level with them, at most 1 GiB.
        if r.log_buf == 0 || r.log_size == 0 || r.log_level == 0 || r.log_size > u32::MAX >> 2 {
            return Err(Errno::INVAL);
        }
        s.log = r.log_size.min(LOAD_LOG_MAX) as usize;
    }
    if s.total() > LOAD_COPY_MAX {
        return Err(Errno::TOOBIG);
    }
    Ok(s)
}

/// Where the instructions name the caller's file descriptors, found as the verifier walks
/// them (`resolve_pseudo_ldimm64`, `add_subprog_and_kfunc`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsnFds {
    /// Instructions whose `imm` is a caller fd: the first half of a `BPF_LD_IMM64` with
    /// `BPF_PSEUDO_MAP_FD` or `BPF_PSEUDO_MAP_VALUE`, and the second half of one with
    /// `BPF_PSEUDO_BTF_ID` and a module BTF fd (non-zero).
    pub imm_fds: Vec<usize>,
    /// `fd_array` indexes the instructions use: `BPF_PSEUDO_MAP_IDX(_VALUE)` immediates and
    /// the `off` of kfunc calls (`BPF_PSEUDO_KFUNC_CALL`, `off > 0`).
    pub indexes: BTreeSet<u32>,
}

const LD_IMM64: u8 = 0x18;
const JMP_CALL: u8 = 0x85;

fn insn_at(insns: &[u8], i: usize) -> (u8, u8, i16, i32) {
    let b = &insns[i * 8..i * 8 + 8];
    (
        b[0],
        b[1] >> 4,
        i16::from_ne_bytes([b[2], b[3]]),
        i32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
    )
}

/// The caller fds and `fd_array` indexes in `insns` (8 bytes each). `EINVAL` for a
/// `BPF_LD_IMM64` of a kind this supervisor does not know (the kernel refuses those too: a
/// future kind could name an fd that would then be looked up among bpfnsd's own), `EFAULT`
/// for a negative `fd_array` index, `E2BIG` for one past [`FD_ARRAY_MAX`].
pub fn insn_fds(insns: &[u8]) -> Result<InsnFds, Errno> {
    use bpfns_sys::rawbpf::uapi as u;
    let n = insns.len() / 8;
    let mut out = InsnFds::default();
    let mut index = |v: i64| -> Result<(), Errno> {
        if v < 0 {
            return Err(Errno::FAULT);
        }
        if v >= i64::from(FD_ARRAY_MAX) {
            return Err(Errno::TOOBIG);
        }
        out.indexes.insert(v as u32);
        Ok(())
    };
    // Kfunc calls: every slot, as add_subprog_and_kfunc looks (before the ld_imm64 checks).
    for i in 0..n {
        let (code, src, off, _) = insn_at(insns, i);
        if code == JMP_CALL && u32::from(src) == u::BPF_PSEUDO_KFUNC_CALL && off > 0 {
            index(i64::from(off))?;
        }
    }
    // BPF_LD_IMM64 pairs, as resolve_pseudo_ldimm64 walks them.
    let mut i = 0;
    while i < n {
        let (code, src, _, imm) = insn_at(insns, i);
        if code != LD_IMM64 {
            i += 1;
            continue;
        }
        if i + 1 == n {
            // The kernel refuses an unpaired one before it looks at any fd.
            break;
        }
        let (_, _, _, imm2) = insn_at(insns, i + 1);
        match u32::from(src) {
            0 => {}
            u::BPF_PSEUDO_MAP_FD | u::BPF_PSEUDO_MAP_VALUE => out.imm_fds.push(i),
            u::BPF_PSEUDO_BTF_ID => {
                if imm2 != 0 {
                    out.imm_fds.push(i + 1);
                }
            }
            u::BPF_PSEUDO_FUNC => {}
            u::BPF_PSEUDO_MAP_IDX | u::BPF_PSEUDO_MAP_IDX_VALUE => index(i64::from(imm))?,
            _ => return Err(Errno::INVAL),
        }
        i += 2;
    }
    Ok(out)
}

/// The first kfunc call (`BPF_JMP | BPF_CALL` with `src_reg == BPF_PSEUDO_KFUNC_CALL`) in
/// `insns` that a load bpfnsd makes may not have: one into a module's BTF (`off != 0`), or
/// one whose vmlinux BTF id `allowed` refuses. The verifier resolves each call by `imm` (and
/// `off`) as read here: bpfnsd's copy is what it loads.
pub fn kfunc_refusal(insns: &[u8], allowed: &dyn Fn(u32) -> bool) -> Option<LoadRefusal> {
    use bpfns_sys::rawbpf::uapi as u;
    (0..insns.len() / 8).find_map(|i| {
        let (code, src, off, imm) = insn_at(insns, i);
        if code != JMP_CALL || u32::from(src) != u::BPF_PSEUDO_KFUNC_CALL {
            return None;
        }
        let module = off != 0;
        let ok = !module && u32::try_from(imm).is_ok_and(|id| id > 0 && allowed(id));
        (!ok).then_some(LoadRefusal::Kfunc {
            insn: i,
            btf_id: imm,
            module,
        })
    })
}

/// How many `fd_array` entries to copy: every index the instructions use and, where the
/// kernel has `fd_array_cnt` (6.14), that many; 0 when there is no `fd_array`. `E2BIG` past
/// [`FD_ARRAY_MAX`].
pub fn fd_array_len(r: &ProgLoadReq, fds: &InsnFds) -> Result<usize, Errno> {
    if r.fd_array == 0 {
        return Ok(0);
    }
    if r.fd_array_cnt >= FD_ARRAY_MAX {
        return Err(Errno::TOOBIG);
    }
    let used = fds
        .indexes
        .iter()
        .next_back()
        .map_or(0, |&m| m as usize + 1);
    Ok(used.max(r.fd_array_cnt as usize))
}

/// The `fd_array` entries that name fds the kernel may look up: the first `fd_array_cnt`
/// (all of them are, from 6.14) and those the instructions use.
pub fn fd_array_used(r: &ProgLoadReq, fds: &InsnFds, len: usize) -> BTreeSet<usize> {
    let mut s: BTreeSet<usize> = (0..(r.fd_array_cnt as usize).min(len)).collect();
    s.extend(fds.indexes.iter().map(|&i| i as usize).filter(|&i| i < len));
    s
}

/// A caller fd number as the kernel reads it from a u32 field or an `imm`: negative numbers
/// name no fd anywhere.
pub fn as_fd(v: u32) -> Option<i32> {
    i32::try_from(v).ok()
}

/// Rewrite `insns` for bpfnsd: every fd at [`InsnFds::imm_fds`] becomes `tr(fd)`.
pub fn rewrite_insns(insns: &mut [u8], fds: &InsnFds, tr: &dyn Fn(u32) -> u32) {
    for &i in &fds.imm_fds {
        let at = i * 8 + 4;
        let v = u32::from_ne_bytes([insns[at], insns[at + 1], insns[at + 2], insns[at + 3]]);
        insns[at..at + 4].copy_from_slice(&tr(v).to_ne_bytes());
    }
}

/// Rewrite an `fd_array` (4-byte entries) for bpfnsd: the `used` entries become `tr(fd)`,
/// every other one an fd number nobody has (the kernel would look it up in bpfnsd's table).
pub fn rewrite_fd_array(arr: &mut [u8], used: &BTreeSet<usize>, tr: &dyn Fn(u32) -> u32) {
    for (i, e) in arr.chunks_exact_mut(4).enumerate() {
        let v = u32::from_ne_bytes([e[0], e[1], e[2], e[3]]);
        let new = if used.contains(&i) { tr(v) } else { u32::MAX };
        e.copy_from_slice(&new.to_ne_bytes());
    }
}

/// Whether the kernel looks at `prog_btf_fd` (`bpf_check_btf_info_early`: only with func or
/// line info; 0 is then fd 0). Otherwise bpfnsd passes 0.
pub fn uses_prog_btf(r: &ProgLoadReq) -> bool {
    r.func_info_cnt != 0 || r.line_info_cnt != 0
}

/// Every caller fd one load names, distinct: the instructions', the used `fd_array`
/// entries', `prog_btf_fd` where the kernel uses it, `attach_prog_fd` when set, and the token
/// fd when set. bpfnsd passes each as its own copy (or a number no process has): never a
/// number of its own process that it did not put there.
pub fn load_fd_set(
    r: &ProgLoadReq,
    insns: &[u8],
    fds: &InsnFds,
    arr: &[u8],
    used: &BTreeSet<usize>,
) -> BTreeSet<i32> {
    let mut s = BTreeSet::new();
    let imm = |i: usize| {
        let at = i * 8 + 4;
        u32::from_ne_bytes([insns[at], insns[at + 1], insns[at + 2], insns[at + 3]])
    };
    s.extend(fds.imm_fds.iter().filter_map(|&i| as_fd(imm(i))));
    for &i in used {
        if let Some(e) = arr.get(i * 4..i * 4 + 4) {
            s.extend(as_fd(u32::from_ne_bytes([e[0], e[1], e[2], e[3]])));
        }
    }
    if uses_prog_btf(r) {
        s.extend(as_fd(r.prog_btf_fd));
    }
    if r.attach_prog_fd != 0 {
        s.extend(as_fd(r.attach_prog_fd));
    }
    if r.prog_token_fd != 0 || r.with_token() {
        s.extend(as_fd(r.prog_token_fd));
    }
    s
}

/// Whether a program with `signature` can be loaded from bpfnsd's copy: the kernel checks it
/// over the instructions as given (which bpfnsd must not have rewritten) with a system
/// keyring (`keyring_id` 0 to 2); a user keyring is looked up among the *caller's* keyrings,
/// which bpfnsd cannot borrow.
pub fn signature_refusal(r: &ProgLoadReq, fds: &InsnFds) -> Option<LoadRefusal> {
    if r.signature == 0 {
        return None;
    }
    if !(0..=2).contains(&r.keyring_id) {
        return Some(LoadRefusal::Unsupported(
            "a signature checked against a user keyring (bpfnsd loads the program for the \
             caller and cannot use its keyrings)",
        ));
    }
    if !fds.imm_fds.is_empty() {
        return Some(LoadRefusal::Unsupported(
            "a signed program whose instructions carry fd numbers (bpfnsd rewrites them to its \
             own copies, which would break the signature; pass maps through fd_array)",
        ));
    }
    None
}

/// Whether a caller may ask `BPF_TASK_FD_QUERY` about process `target_tgid`: the kernel
/// answers only `CAP_SYS_ADMIN` in the initial user namespace (`bpf_task_fd_query`); bpfnsd,
/// which runs the query with its own, answers that and, for a caller with `CAP_BPF`, a
/// question about its own process (its perf events and tracepoints). Anything else would make
/// bpfnsd an oracle on other processes' fd tables.
pub fn task_fd_query_allowed(caller_tgid: u32, target_tgid: u32, sys_admin_in_init: bool) -> bool {
    sys_admin_in_init || caller_tgid == target_tgid
}

// ---------------------------------------------------------------------------------------------
// Attaching, detaching, replacing

/// Where a `BPF_PROG_ATTACH` / `BPF_PROG_DETACH` of an attach type acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// A cgroup (target: a cgroup fd). Without `BPF_F_ALLOW_MULTI` one program per hook,
    /// which an attach replaces and a detach removes whatever fd it is given.
    Cgroup,
    /// A sockmap or sockhash (target: the map's fd): one program per hook, which an attach
    /// replaces.
    SockMap,
    /// A lirc device (target: its fd): programs are added; a detach names its program.
    Lirc,
    /// The flow dissector of the *calling task's* network namespace (target: 0): one program,
    /// which an attach replaces.
    FlowDissector,
    /// tcx and netkit (target: an interface index in the calling task's network namespace):
    /// a list of programs (`bpf_mprog`), with revisions.
    Mprog,
}

/// The hook of an attach type; `None` for those `BPF_PROG_ATTACH` does not take (the kernel
/// answers them `EINVAL`, and so does the supervisor).
pub fn hook_of(attach_type: u32) -> Option<Hook> {
    use bpfns_sys::rawbpf::uapi as u;
    Some(match attach_type {
        u::BPF_CGROUP_INET_INGRESS
        | u::BPF_CGROUP_INET_EGRESS
        | u::BPF_CGROUP_INET_SOCK_CREATE
        | u::BPF_CGROUP_SOCK_OPS
        | u::BPF_CGROUP_DEVICE
        | u::BPF_CGROUP_INET4_BIND
        | u::BPF_CGROUP_INET6_BIND
        | u::BPF_CGROUP_INET4_CONNECT
        | u::BPF_CGROUP_INET6_CONNECT
        | u::BPF_CGROUP_INET4_POST_BIND
        | u::BPF_CGROUP_INET6_POST_BIND
        | u::BPF_CGROUP_UDP4_SENDMSG
        | u::BPF_CGROUP_UDP6_SENDMSG
        | u::BPF_CGROUP_SYSCTL
        | u::BPF_CGROUP_UDP4_RECVMSG
        | u::BPF_CGROUP_UDP6_RECVMSG
        | u::BPF_CGROUP_GETSOCKOPT
        | u::BPF_CGROUP_SETSOCKOPT
        | u::BPF_CGROUP_INET4_GETPEERNAME
        | u::BPF_CGROUP_INET6_GETPEERNAME
        | u::BPF_CGROUP_INET4_GETSOCKNAME
        | u::BPF_CGROUP_INET6_GETSOCKNAME
        | u::BPF_CGROUP_INET_SOCK_RELEASE
        | u::BPF_LSM_CGROUP
        | u::BPF_CGROUP_UNIX_CONNECT
        | u::BPF_CGROUP_UNIX_SENDMSG
        | u::BPF_CGROUP_UNIX_RECVMSG
        | u::BPF_CGROUP_UNIX_GETPEERNAME
        | u::BPF_CGROUP_UNIX_GETSOCKNAME => Hook::Cgroup,
        u::BPF_SK_SKB_STREAM_PARSER
        | u::BPF_SK_SKB_STREAM_VERDICT
        | u::BPF_SK_MSG_VERDICT
        | u::BPF_SK_SKB_VERDICT => Hook::SockMap,
        u::BPF_LIRC_MODE2 => Hook::Lirc,
        u::BPF_FLOW_DISSECTOR => Hook::FlowDissector,
        u::BPF_TCX_INGRESS | u::BPF_TCX_EGRESS | u::BPF_NETKIT_PRIMARY | u::BPF_NETKIT_PEER => {
            Hook::Mprog
        }
        _ => return None,
    })
}

/// Which fields of a `BPF_PROG_ATTACH` / `BPF_PROG_DETACH` attr are file descriptors of the
/// caller (to be replaced by the supervisor's own copies before it makes the call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachFds {
    pub target: bool,
    pub prog: bool,
    pub replace: bool,
    pub relative: bool,
}

/// The caller's fds in `a`, as the kernel reads them for `hook`.
pub fn attach_fds(detach: bool, hook: Hook, a: &AttachReq) -> AttachFds {
    use bpfns_sys::rawbpf::uapi as u;
    AttachFds {
        target: matches!(hook, Hook::Cgroup | Hook::SockMap | Hook::Lirc),
        // An mprog detach without a program detaches by position.
        prog: !(detach && hook == Hook::Mprog && a.attach_bpf_fd == 0),
        replace: !detach && a.flags & u::BPF_F_REPLACE != 0,
        // `bpf_mprog_tuple_relative`, cgroups' `get_prog_list`: an fd unless BPF_F_ID.
        relative: a.flags & u::BPF_F_ID == 0 && (a.relative != 0 || a.flags & u::BPF_F_LINK != 0),
    }
}

/// Whether deciding on `a` needs the hook's current attachments ([`HookState`]).
pub fn attach_needs_query(detach: bool, hook: Hook, a: &AttachReq) -> bool {
    use bpfns_sys::rawbpf::uapi as u;
    match (hook, detach) {
        // A legacy attach replaces; a detach's meaning depends on the hook's mode.
        (Hook::Cgroup, false) => a.flags & u::BPF_F_ALLOW_MULTI == 0,
        (Hook::Cgroup, true) => true,
        (Hook::SockMap | Hook::FlowDissector, false) => true,
        (Hook::SockMap | Hook::FlowDissector | Hook::Lirc, true) | (Hook::Lirc, false) => false,
        (Hook::Mprog, false) => false,
        (Hook::Mprog, true) => a.attach_bpf_fd == 0,
    }
}

/// What is attached at a hook now (`BPF_PROG_QUERY` without `BPF_F_QUERY_EFFECTIVE`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookState {
    /// `query.attach_flags`: the hook's mode (`BPF_F_ALLOW_MULTI`, ...).
    pub flags: u32,
    /// `query.revision`: 0 where the kernel keeps none for the hook (cgroups before 6.16,
    /// sockmaps, the flow dissector).
    pub revision: u64,
    pub entries: Vec<QueryEntry>,
}

/// Ids of the objects behind the caller's fds (taken from the supervisor's copies): `None`
/// where the fd is not of the kind the field wants (the kernel then refuses the call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FdIds {
    /// `attach_bpf_fd`'s program.
    pub prog: Option<u32>,
    /// `replace_bpf_fd`'s program.
    pub replace: Option<u32>,
}

/// How the supervisor makes the call once allowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttachPlan {
    /// Put this `expected_revision` in the call: the kernel then refuses (`ESTALE`) if the
    /// hook changed since the supervisor looked at it.
    pub pin_revision: Option<u64>,
}

/// Why the supervisor refuses an attach-family call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub errno: Errno,
    pub reason: String,
}

fn refuse(errno: Errno, reason: impl Into<String>) -> Refusal {
    Refusal {
        errno,
        reason: reason.into(),
    }
}

/// The supervisor's decision on a member's `BPF_PROG_ATTACH` (`detach == false`) or
/// `BPF_PROG_DETACH`: `EPERM` when the program it would replace or detach is one the caller
/// cannot see; `ENOENT` for a relative id it cannot see (as if not attached there). `state`
/// is the hook's attachments when [`attach_needs_query`] says so; `can_see(kind, id)` asks
/// the view. Everything else is the kernel's to judge.
pub fn attach_verdict<E>(
    detach: bool,
    hook: Hook,
    a: &AttachReq,
    state: Option<&HookState>,
    ids: FdIds,
    can_see: &mut dyn FnMut(ObjectKind, u32) -> Result<bool, E>,
) -> Result<Result<AttachPlan, Refusal>, E> {
    use bpfns_sys::rawbpf::uapi as u;
    let mut must_see = |id: u32, what: &str| -> Result<Option<Refusal>, E> {
        Ok((!can_see(ObjectKind::Prog, id)?).then(|| {
            refuse(
                Errno::PERM,
                format!("{what} program {id} belongs to a namespace the caller cannot see"),
            )
        }))
    };
    let empty = HookState::default();
    let st = state.unwrap_or(&empty);
    let multi = a.flags & u::BPF_F_ALLOW_MULTI != 0;
    // The revision checked here is the one the kernel must find: a caller's own other
    // revision would let the hook change after this check.
    let pin = |st: &HookState| -> Result<AttachPlan, Refusal> {
        if st.revision == 0 {
            return Ok(AttachPlan::default());
        }
        if a.expected_revision != 0 && a.expected_revision != st.revision {
            return Err(refuse(
                Errno::STALE,
                format!(
                    "expected revision {} but the hook is at {}",
                    a.expected_revision, st.revision
                ),
            ));
        }
        Ok(AttachPlan {
            pin_revision: Some(st.revision),
        })
    };
    let mut plan = AttachPlan::default();
    match (hook, detach) {
        (Hook::Cgroup, false) => {
            if !multi {
                for e in &st.entries {
                    if let Some(r) = must_see(e.prog_id, "the attached")? {
                        return Ok(Err(r));
                    }
                }
                plan = match pin(st) {
                    Ok(p) => p,
                    Err(r) => return Ok(Err(r)),
                };
            } else if a.flags & u::BPF_F_REPLACE != 0 {
                if let Some(id) = ids.replace {
                    if let Some(r) = must_see(id, "the replaced")? {
                        return Ok(Err(r));
                    }
                }
            }
        }
        (Hook::Cgroup, true) => {
            let victim = if st.flags & u::BPF_F_ALLOW_MULTI != 0 {
                ids.prog
            } else {
                // Legacy hooks detach their one program whatever fd the caller gives.
                st.entries.first().map(|e| e.prog_id)
            };
            if let Some(id) = victim {
                if let Some(r) = must_see(id, "the detached")? {
                    return Ok(Err(r));
                }
            }
            plan = match pin(st) {
                Ok(p) => p,
                Err(r) => return Ok(Err(r)),
            };
        }
        (Hook::SockMap | Hook::FlowDissector, false) => {
            for e in &st.entries {
                if let Some(r) = must_see(e.prog_id, "the attached")? {
                    return Ok(Err(r));
                }
            }
        }
        (Hook::SockMap | Hook::FlowDissector | Hook::Lirc, true) => {
            // These detach exactly the program given.
            if let Some(id) = ids.prog {
                if let Some(r) = must_see(id, "the detached")? {
                    return Ok(Err(r));
                }
            }
        }
        (Hook::Lirc, false) => {}
        (Hook::Mprog, false) => {
            if a.flags & u::BPF_F_REPLACE != 0 {
                if let Some(id) = ids.replace {
                    if let Some(r) = must_see(id, "the replaced")? {
                        return Ok(Err(r));
                    }
                }
            }
        }
        (Hook::Mprog, true) => {
            if a.attach_bpf_fd != 0 {
                if let Some(id) = ids.prog {
                    if let Some(r) = must_see(id, "the detached")? {
                        return Ok(Err(r));
                    }
                }
            } else {
                // By position: whichever program that is, it must be one the caller sees.
                for e in st.entries.iter().filter(|e| e.link_id == 0) {
                    if let Some(r) = must_see(e.prog_id, "an attached")? {
                        return Ok(Err(r));
                    }
                }
                plan = match pin(st) {
                    Ok(p) => p,
                    Err(r) => return Ok(Err(r)),
                };
            }
        }
    }
    if let Some(r) = relative_refusal(a.flags, a.relative, can_see)? {
        return Ok(Err(r));
    }
    Ok(Ok(plan))
}

/// `ENOENT` for a relative id (`BPF_F_BEFORE` / `BPF_F_AFTER` with `BPF_F_ID`) of a program
/// or link the caller cannot see: the kernel looks it up before anything else and answers
/// `EINVAL` where it exists with another type, so it must look as if it did not exist.
pub fn relative_refusal<E>(
    flags: u32,
    relative: u32,
    can_see: &mut dyn FnMut(ObjectKind, u32) -> Result<bool, E>,
) -> Result<Option<Refusal>, E> {
    use bpfns_sys::rawbpf::uapi as u;
    let by_id = flags & u::BPF_F_ID != 0
        && flags & (u::BPF_F_BEFORE | u::BPF_F_AFTER) != 0
        && relative != 0;
    if !by_id {
        return Ok(None);
    }
    let kind = if flags & u::BPF_F_LINK != 0 {
        ObjectKind::Link
    } else {
        ObjectKind::Prog
    };
    Ok((!can_see(kind, relative)?).then(|| {
        refuse(
            Errno::NOENT,
            format!("relative {} {relative} is not visible", kind.name()),
        )
    }))
}

/// What the fields of a `BPF_LINK_CREATE` the supervisor makes itself are, by attach type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkTarget {
    /// `target_fd`: a cgroup, a sockmap, a network namespace, a perf event.
    Fd,
    /// `target_ifindex`, in the calling task's network namespace (XDP, tcx, netkit).
    Ifindex,
    /// No target; the calling task's network namespace (netfilter).
    NetNs,
}

/// How the supervisor makes a member's `BPF_LINK_CREATE` of `attach_type`: `None` for the
/// tracing-class attach types (tracing, iterators, kprobe/uprobe multi links, struct_ops),
/// which it makes only where the namespace allows tracing and the attr holds no pointer, and
/// for unknown types. Of those it makes here, the attr holds no pointer: what bpfnsd passes
/// is its copy, with its own fds.
pub fn link_target(attach_type: u32) -> Option<LinkTarget> {
    use bpfns_sys::rawbpf::uapi as u;
    const BPF_SK_LOOKUP: u32 = 36;
    const BPF_XDP: u32 = 37;
    const BPF_PERF_EVENT: u32 = 41;
    const BPF_NETFILTER: u32 = 45;
    Some(match attach_type {
        BPF_XDP
        | u::BPF_TCX_INGRESS
        | u::BPF_TCX_EGRESS
        | u::BPF_NETKIT_PRIMARY
        | u::BPF_NETKIT_PEER => LinkTarget::Ifindex,
        BPF_NETFILTER => LinkTarget::NetNs,
        u::BPF_FLOW_DISSECTOR | BPF_SK_LOOKUP | BPF_PERF_EVENT => LinkTarget::Fd,
        t => match hook_of(t)? {
            Hook::Cgroup | Hook::SockMap => LinkTarget::Fd,
            _ => return None,
        },
    })
}

/// Whether a `BPF_LINK_CREATE` names its relative program or link by fd (tcx, netkit and
/// cgroups read `relative_fd` unless `BPF_F_ID`).
pub fn link_relative_is_fd(l: &LinkCreateReq) -> bool {
    use bpfns_sys::rawbpf::uapi as u;
    let ordered = matches!(hook_of(l.attach_type), Some(Hook::Cgroup | Hook::Mprog));
    ordered && l.flags & u::BPF_F_ID == 0 && (l.relative != 0 || l.flags & u::BPF_F_LINK != 0)
}

/// The supervisor's decision on a member's `BPF_LINK_UPDATE` (`update` is `Some`) or
/// `BPF_LINK_DETACH`: the link must be visible, and for an update also the program it runs
/// now and, with `BPF_F_REPLACE`, the object named as the old one. `link` is (link id, its
/// program's id, 0 if none) from the supervisor's copy of the link fd; `None` if that fd is
/// not a link (the kernel then refuses the call). `old` is the kind and id behind the old fd.
pub fn link_verdict<E>(
    link: Option<(u32, u32)>,
    update: Option<(bool, Option<(ObjectKind, u32)>)>,
    can_see: &mut dyn FnMut(ObjectKind, u32) -> Result<bool, E>,
) -> Result<Result<(), Refusal>, E> {
    let Some((link_id, prog_id)) = link else {
        return Ok(Ok(()));
    };
    if !can_see(ObjectKind::Link, link_id)? {
        return Ok(Err(refuse(
            Errno::PERM,
            format!("link {link_id} belongs to a namespace the caller cannot see"),
        )));
    }
    if let Some((replace, old)) = update {
        if prog_id != 0 && !can_see(ObjectKind::Prog, prog_id)? {
            return Ok(Err(refuse(
                Errno::PERM,
                format!("link {link_id} runs program {prog_id}, which the caller cannot see"),
            )));
        }
        if let (true, Some((kind, id))) = (replace, old) {
            if !can_see(kind, id)? {
                return Ok(Err(refuse(
                    Errno::PERM,
                    format!("the old {} {id} is not visible to the caller", kind.name()),
                )));
            }
        }
    }
    Ok(Ok(()))
}

/// The kernel's `bpf_prog_array_copy_info` rule for `PERF_EVENT_IOC_QUERY_BPF`, applied to
/// the visible programs: the count is always reported and `ids_len` entries are written (the
/// ids that fit, zeros after); a short array gets `ENOSPC`.
pub fn perf_query_reply(visible: &[u32], ids_len: u32) -> (u32, Vec<u32>, Option<Errno>) {
    let cnt = visible.len() as u32;
    let mut ids = vec![0u32; ids_len as usize];
    for (slot, id) in ids.iter_mut().zip(visible) {
        *slot = *id;
    }
    let err = (ids_len != 0 && ids_len < cnt).then_some(Errno::NOSPC);
    (cnt, ids, err)
}

pub use bpfns_sys::bpf::kind_of_link_target;

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
        // Map commands, BPF_OBJ_GET_INFO_BY_FD, BPF_PROG_RUN (10), BPF_ENABLE_STATS and
        // BPF_TOKEN_CREATE are not trapped; BPF_MAP_CREATE only where map types are
        // restricted, so it is answered when it comes.
        for c in [1, 2, 6, 10, 15, 32, 33, 36] {
            assert_eq!(Command::from_raw(c), None);
        }
        assert_eq!(Command::from_raw(MAP_CREATE), Some(Command::MapCreate));
        assert_eq!(Command::MapCreate.raw(), MAP_CREATE);
    }

    #[test]
    fn requests_outside_the_policy_are_named() {
        use bpfns_model::{Field, NsId, Policy, TypeSet};
        use bpfns_sys::rawbpf::uapi as u;
        let load = |prog_type, expected_attach_type| {
            Request::ProgLoad(ProgLoadReq {
                prog_type,
                expected_attach_type,
                ..Default::default()
            })
        };
        let mut p = Policy::DEFAULT;
        p.progs = TypeSet::of([u::BPF_PROG_TYPE_SOCKET_FILTER, u::BPF_PROG_TYPE_CGROUP_SOCK]);
        let sock = u::BPF_PROG_TYPE_SOCKET_FILTER;
        assert_eq!(policy_refusal(&p, Command::ProgLoad, &load(sock, 0)), None);
        assert_eq!(
            policy_refusal(&p, Command::ProgLoad, &load(u::BPF_PROG_TYPE_XDP, 0)),
            Some((Field::Progs, u::BPF_PROG_TYPE_XDP))
        );
        // The default denies the tracing class, and says so.
        let d = policy_refusal(
            &Policy::DEFAULT,
            Command::ProgLoad,
            &load(u::BPF_PROG_TYPE_KPROBE, 0),
        )
        .unwrap();
        let text = policy_refusal_text(NsId(3), d);
        assert!(
            text.contains("program type kprobe (tracing-class"),
            "{text}"
        );
        assert!(text.contains("--allow-progs kprobe"), "{text}");
        // Attach types: the one a load implies (after the kernel's fixup), and at attach and
        // link creation.
        p.attachs = TypeSet::ANY.minus(TypeSet::of([u::BPF_CGROUP_INET_SOCK_CREATE]));
        assert_eq!(
            policy_refusal(
                &p,
                Command::ProgLoad,
                &load(u::BPF_PROG_TYPE_CGROUP_SOCK, 0)
            ),
            Some((Field::Attachs, u::BPF_CGROUP_INET_SOCK_CREATE))
        );
        let attach = |attach_type| AttachReq {
            target: 3,
            attach_bpf_fd: 4,
            attach_type,
            flags: 0,
            replace_bpf_fd: 0,
            relative: 0,
            expected_revision: 0,
        };
        let sc = u::BPF_CGROUP_INET_SOCK_CREATE;
        let a = Request::Attach(attach(sc));
        assert_eq!(
            policy_refusal(&p, Command::ProgAttach, &a),
            Some((Field::Attachs, sc))
        );
        // Detaching is not attaching.
        let d = Request::Detach(attach(sc));
        assert_eq!(policy_refusal(&p, Command::ProgDetach, &d), None);
        let l = Request::LinkCreate(LinkCreateReq {
            prog_fd: 3,
            target: 4,
            attach_type: sc,
            flags: 0,
            relative: 0,
        });
        assert_eq!(
            policy_refusal(&p, Command::LinkCreate, &l),
            Some((Field::Attachs, sc))
        );
        // Commands, whatever the request.
        p.cmds = TypeSet::ANY.minus(TypeSet::of([PROG_GET_NEXT_ID]));
        let n = Request::NextId {
            kind: ObjectKind::Prog,
            start_id: 0,
        };
        assert_eq!(
            policy_refusal(&p, Command::NextId(ObjectKind::Prog), &n),
            Some((Field::Cmds, PROG_GET_NEXT_ID))
        );
        // Map types.
        p.maps = TypeSet::ANY.minus(TypeSet::of([u32::from(1u8)]));
        let m = |map_type| {
            Request::MapCreate(MapCreateReq {
                map_type,
                ..MapCreateReq::default()
            })
        };
        assert_eq!(
            policy_refusal(&p, Command::MapCreate, &m(1)),
            Some((Field::Maps, 1))
        );
        assert_eq!(policy_refusal(&p, Command::MapCreate, &m(2)), None);
        assert_eq!(
            parse(Command::MapCreate, &attr(&[(0, 1), (4, 4)])),
            Ok(m(1))
        );
        // The fds the kernel resolves, and those it leaves alone.
        let r = MapCreateReq {
            map_type: u::BPF_MAP_TYPE_HASH_OF_MAPS,
            inner_map_fd: 7,
            btf_fd: 8,
            value_type_btf_obj_fd: 9,
            ..MapCreateReq::default()
        };
        assert_eq!(r.used_fds(), vec![(off::M_INNER_MAP_FD, 7)]);
        assert_eq!(
            r.unused_fds(),
            vec![(off::M_BTF_FD, 8), (off::M_VALUE_TYPE_BTF_OBJ_FD, 9)]
        );
        let r = MapCreateReq {
            btf_value_type_id: 3,
            map_flags: u::BPF_F_VTYPE_BTF_OBJ_FD,
            ..r
        };
        assert_eq!(
            r.used_fds(),
            vec![
                (off::M_INNER_MAP_FD, 7),
                (off::M_BTF_FD, 8),
                (off::M_VALUE_TYPE_BTF_OBJ_FD, 9)
            ]
        );
        // The host's policy refuses nothing.
        assert_eq!(
            policy_refusal(
                &Policy::HOST,
                Command::ProgLoad,
                &load(u::BPF_PROG_TYPE_KPROBE, 0)
            ),
            None
        );
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
    fn program_loads() {
        use bpfns_sys::rawbpf::uapi as u;
        const SOCKET_FILTER: u32 = 1;
        const XDP: u32 = 6;
        // Root-namespace callers: the kernel's rules, syscall programs included.
        assert_eq!(
            load_way(true, false, u::BPF_PROG_TYPE_SYSCALL),
            LoadWay::Continue
        );
        assert_eq!(
            load_way(true, false, u::BPF_PROG_TYPE_KPROBE),
            LoadWay::Continue
        );
        // Where tracing is allowed, everything but syscall programs goes to the kernel.
        for t in [
            SOCKET_FILTER,
            u::BPF_PROG_TYPE_KPROBE,
            u::BPF_PROG_TYPE_TRACING,
        ] {
            assert_eq!(load_way(false, true, t), LoadWay::Continue);
        }
        for allow in [true, false] {
            assert_eq!(
                load_way(false, allow, u::BPF_PROG_TYPE_SYSCALL),
                LoadWay::Refuse(LoadRefusal::Syscall)
            );
        }
        // Denied: tracing-class types; every other type is loaded by bpfnsd itself.
        for t in [
            u::BPF_PROG_TYPE_KPROBE,
            u::BPF_PROG_TYPE_TRACEPOINT,
            u::BPF_PROG_TYPE_PERF_EVENT,
            u::BPF_PROG_TYPE_RAW_TRACEPOINT,
            u::BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE,
            u::BPF_PROG_TYPE_TRACING,
            u::BPF_PROG_TYPE_LSM,
            u::BPF_PROG_TYPE_STRUCT_OPS,
            u::BPF_PROG_TYPE_EXT,
        ] {
            assert!(is_tracing_class(t), "{t}");
            assert_eq!(
                load_way(false, false, t),
                LoadWay::Refuse(LoadRefusal::TracingClass(t))
            );
        }
        for t in [SOCKET_FILTER, XDP, u::BPF_PROG_TYPE_CGROUP_SKB] {
            assert!(!is_tracing_class(t));
            assert_eq!(load_way(false, false, t), LoadWay::Here);
        }
        let r = LoadRefusal::TracingClass(2);
        assert!(r.reason().contains("tracing-class") && r.fix().contains("--allow-tracing"));
    }

    #[test]
    fn load_credentials_never_carry_perfmon_power() {
        use bpfns_sys::rawbpf::uapi as u;
        let all = C::all();
        for borrowed in [
            C::empty(),
            C::BPF,
            C::PERFMON,
            C::SYS_ADMIN,
            C::BPF | C::PERFMON | C::NET_ADMIN,
            all,
        ] {
            for token in [false, true] {
                for t in [1, u::BPF_PROG_TYPE_XDP, u::BPF_PROG_TYPE_CGROUP_SKB] {
                    let c = load_caps(borrowed, token, t);
                    assert!(
                        !c.intersects(C::PERFMON | C::SYS_ADMIN),
                        "{borrowed:?} {c:?}"
                    );
                    assert!((c - (C::BPF | C::NET_ADMIN | C::SYSLOG)).is_empty());
                }
            }
        }
        // What the kernel would grant otherwise.
        assert_eq!(load_caps(C::empty(), false, 1), C::empty());
        assert_eq!(load_caps(C::PERFMON, false, 1), C::empty());
        assert_eq!(load_caps(C::BPF, false, 1), C::BPF);
        assert_eq!(load_caps(C::SYS_ADMIN, false, 1), C::BPF | C::NET_ADMIN);
        assert_eq!(load_caps(C::BPF | C::SYSLOG, false, 1), C::BPF | C::SYSLOG);
        // A token grants CAP_BPF, and CAP_NET_ADMIN for the types that need it.
        assert_eq!(load_caps(C::empty(), true, 1), C::BPF);
        assert_eq!(
            load_caps(C::empty(), true, u::BPF_PROG_TYPE_XDP),
            C::BPF | C::NET_ADMIN
        );
        assert!(is_net_admin_prog_type(u::BPF_PROG_TYPE_SCHED_CLS));
        assert!(!is_net_admin_prog_type(u::BPF_PROG_TYPE_CGROUP_SKB));
        assert!(!is_net_admin_prog_type(u::BPF_PROG_TYPE_SK_REUSEPORT));
    }

    #[test]
    fn tokens_delegate_loads() {
        use bpfns_sys::rawbpf::uapi as u;
        let any = "pos:\t0\nflags:\t02000002\nallowed_cmds:\tany\nallowed_maps:\tany\n\
                   allowed_progs:\tany\nallowed_attachs:\tany\n";
        let t = TokenInfo::from_fdinfo(any).unwrap();
        assert_eq!(t.cmds, u64::MAX);
        assert!(t.allows_load(1, 0));
        // Only map creation delegated.
        let maps = "allowed_cmds:\t0x1\nallowed_maps:\tany\nallowed_progs:\t0x0\n\
                    allowed_attachs:\t0x0\n";
        let m = TokenInfo::from_fdinfo(maps).unwrap();
        assert!(!m.allows_load(1, 0));
        // PROG_LOAD (bit 5) of socket filters (bit 1), attach type 0.
        let sf = "allowed_cmds:\t0x20\nallowed_maps:\t0x0\nallowed_progs:\t0x2\n\
                  allowed_attachs:\t0x1\n";
        let s = TokenInfo::from_fdinfo(sf).unwrap();
        assert!(s.allows_load(1, 0));
        assert!(!s.allows_load(u::BPF_PROG_TYPE_XDP, 0));
        assert!(!s.allows_load(1, 2));
        // CGROUP_SOCK without an attach type means INET_SOCK_CREATE (the kernel's fixup).
        assert_eq!(
            fixup_attach_type(u::BPF_PROG_TYPE_CGROUP_SOCK, 0),
            u::BPF_CGROUP_INET_SOCK_CREATE
        );
        assert_eq!(fixup_attach_type(1, 0), 0);
        assert!(!s.allows_load(200, 0), "types past 63 are never delegated");
        // Not a token: a map's or a file's fdinfo.
        assert!(TokenInfo::from_fdinfo("pos:\t0\nmap_type:\t2\n").is_none());
        assert!(TokenInfo::from_fdinfo("allowed_cmds:\tzz\n").is_none());
    }

    fn load_attr(fields: &[(usize, u64, usize)]) -> Attr {
        let mut a = Attr::zeroed(PROG_LOAD_END);
        for &(o, v, w) in fields {
            if w == 8 {
                a.set_u64(o, v);
            } else {
                a.set_u32(o, v as u32);
            }
        }
        a
    }

    #[test]
    fn prog_load_parsing_and_sizes() {
        use off::*;
        let a = load_attr(&[
            (L_PROG_TYPE, 1, 4),
            (L_INSN_CNT, 10, 4),
            (L_INSNS, 0x1000, 8),
            (L_LICENSE, 0x2000, 8),
            (L_LOG_LEVEL, 1, 4),
            (L_LOG_SIZE, 1 << 29, 4),
            (L_LOG_BUF, 0x3000, 8),
            (L_PROG_FLAGS, u64::from(BPF_F_TOKEN_FD), 4),
            (L_PROG_BTF_FD, 7, 4),
            (L_FUNC_INFO_REC_SIZE, 8, 4),
            (L_FUNC_INFO, 0x4000, 8),
            (L_FUNC_INFO_CNT, 2, 4),
            (L_LINE_INFO_REC_SIZE, 16, 4),
            (L_LINE_INFO, 0x5000, 8),
            (L_LINE_INFO_CNT, 10, 4),
            (L_CORE_RELO_CNT, 3, 4),
            (L_CORE_RELOS, 0x6000, 8),
            (L_CORE_RELO_REC_SIZE, 16, 4),
            (L_FD_ARRAY, 0x7000, 8),
            (L_PROG_TOKEN_FD, 9, 4),
            (L_FD_ARRAY_CNT, 4, 4),
            (L_SIGNATURE, 0x8000, 8),
            (L_SIGNATURE_SIZE, 100, 4),
            (L_KEYRING_ID, (-3i32) as u32 as u64, 4),
        ]);
        let Ok(Request::ProgLoad(r)) = parse(Command::ProgLoad, &a) else {
            panic!("{:?}", parse(Command::ProgLoad, &a));
        };
        assert_eq!((r.prog_type, r.insn_cnt, r.insns), (1, 10, 0x1000));
        assert!(r.with_token());
        assert_eq!((r.prog_token_fd, r.fd_array_cnt, r.keyring_id), (9, 4, -3));
        let s = load_sizes(&r).unwrap();
        assert_eq!(
            s,
            LoadSizes {
                insns: 80,
                func_info: 16,
                line_info: 160,
                core_relos: 48,
                signature: 100,
                log: LOAD_LOG_MAX as usize,
            }
        );
        // Garbage after keyring_id: EINVAL, as CHECK_ATTR.
        let mut g = Attr::zeroed(ATTR_SIZE);
        if ATTR_SIZE > PROG_LOAD_END {
            g.set_u32(PROG_LOAD_END, 1);
            assert_eq!(parse(Command::ProgLoad, &g), Err(Errno::INVAL));
        }
        // Bounds.
        let mut big = r;
        big.insn_cnt = MAX_INSNS + 1;
        assert_eq!(load_sizes(&big), Err(Errno::TOOBIG));
        let mut bad = r;
        bad.func_info_rec_size = 6;
        assert_eq!(load_sizes(&bad), Err(Errno::INVAL));
        let mut bad = r;
        bad.line_info_cnt = 11;
        assert_eq!(
            load_sizes(&bad),
            Err(Errno::INVAL),
            "more line info than instructions"
        );
        let mut bad = r;
        bad.core_relo_rec_size = 8192;
        assert_eq!(load_sizes(&bad), Err(Errno::TOOBIG));
        let mut bad = r;
        bad.signature_size = SIGNATURE_MAX + 1;
        assert_eq!(load_sizes(&bad), Err(Errno::INVAL));
        for (buf, size, level) in [(0x3000, 0, 1), (0, 4096, 1), (0x3000, 4096, 0)] {
            let mut bad = r;
            (bad.log_buf, bad.log_size, bad.log_level) = (buf, size, level);
            assert_eq!(load_sizes(&bad), Err(Errno::INVAL), "{buf} {size} {level}");
        }
        let mut bad = r;
        bad.log_size = (u32::MAX >> 2) + 1;
        assert_eq!(load_sizes(&bad), Err(Errno::INVAL));
        let mut small = r;
        small.log_size = 4096;
        assert_eq!(load_sizes(&small).unwrap().log, 4096);
        // Nothing passed: nothing copied (an info count without a pointer is the kernel's
        // EFAULT, from a null pointer in bpfnsd's copy).
        let mut none = r;
        (none.func_info, none.log_buf, none.log_size) = (0, 0, 0);
        let s = load_sizes(&none).unwrap();
        assert_eq!((s.func_info, s.log), (0, 0));
        let mut huge = r;
        (huge.core_relo_cnt, huge.core_relo_rec_size) = (1 << 20, 4096);
        assert_eq!(load_sizes(&huge), Err(Errno::TOOBIG), "the copy bound");
    }

    fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = code;
        b[1] = dst | (src << 4);
        b[2..4].copy_from_slice(&off.to_ne_bytes());
        b[4..8].copy_from_slice(&imm.to_ne_bytes());
        b
    }

    fn prog(insns: &[[u8; 8]]) -> Vec<u8> {
        insns.concat()
    }

    #[test]
    fn kfunc_calls_outside_the_allowlist_are_refused() {
        use bpfns_sys::rawbpf::uapi as u;
        let kfunc =
            |off: i16, imm: i32| insn(JMP_CALL, 0, u::BPF_PSEUDO_KFUNC_CALL as u8, off, imm);
        let allowed = |id: u32| id == 7;
        let helper = insn(JMP_CALL, 0, 0, 0, 65_326);
        let exit = insn(0x95, 0, 0, 0, 0);
        // Helpers and allowed vmlinux kfuncs pass.
        assert_eq!(
            kfunc_refusal(&prog(&[helper, kfunc(0, 7), exit]), &allowed),
            None
        );
        // Any other vmlinux kfunc: the first one is named.
        assert_eq!(
            kfunc_refusal(
                &prog(&[kfunc(0, 7), kfunc(0, 65_326), kfunc(0, 9)]),
                &allowed
            ),
            Some(LoadRefusal::Kfunc {
                insn: 1,
                btf_id: 65_326,
                module: false
            })
        );
        // A module's kfunc, even with an allowed id; ids the kernel cannot have.
        for (off, imm) in [(1, 7), (-1, 7), (0, 0), (0, -7)] {
            let r = kfunc_refusal(&prog(&[kfunc(off, imm), exit]), &allowed);
            assert!(
                matches!(r, Some(LoadRefusal::Kfunc { insn: 0, module, .. }) if module == (off != 0)),
                "off {off} imm {imm}: {r:?}"
            );
        }
        // A bpf-to-bpf call (BPF_PSEUDO_CALL) is no kfunc.
        let local = insn(JMP_CALL, 0, 1, 0, 1);
        assert_eq!(kfunc_refusal(&prog(&[local, exit, exit]), &allowed), None);
        let r = LoadRefusal::Kfunc {
            insn: 1,
            btf_id: 65_326,
            module: false,
        };
        assert!(r.reason().contains("[kfunc]") && r.fix().contains("kfuncs bpfns allows"));
    }

    #[test]
    fn fds_in_instructions() {
        use bpfns_sys::rawbpf::uapi as u;
        let ld = |src: u32, imm: i32| insn(LD_IMM64, 1, src as u8, 0, imm);
        let second = |imm: i32| insn(0, 0, 0, 0, imm);
        let p = prog(&[
            ld(u::BPF_PSEUDO_MAP_FD, 5),                                // 0: fd 5
            second(0),                                                  // 1
            ld(u::BPF_PSEUDO_MAP_VALUE, 6),                             // 2: fd 6
            second(16),                                                 // 3
            ld(u::BPF_PSEUDO_BTF_ID, 77),                               // 4: btf id 77 ...
            second(8),                                                  // 5: ... of module BTF fd 8
            ld(u::BPF_PSEUDO_BTF_ID, 78),                               // 6: vmlinux
            second(0),                                                  // 7
            ld(u::BPF_PSEUDO_MAP_IDX, 3),                               // 8: fd_array[3]
            second(0),                                                  // 9
            ld(u::BPF_PSEUDO_MAP_IDX_VALUE, 1),                         // 10: fd_array[1]
            second(0),                                                  // 11
            ld(0, 5),                                                   // 12: a plain constant
            second(5),                                                  // 13
            insn(JMP_CALL, 0, u::BPF_PSEUDO_KFUNC_CALL as u8, 6, 1234), // 14: fd_array[6]
            insn(JMP_CALL, 0, u::BPF_PSEUDO_KFUNC_CALL as u8, 0, 99),   // 15: vmlinux
            insn(JMP_CALL, 0, 0, 0, 1),                                 // 16: a helper
            insn(0x95, 0, 0, 0, 0),                                     // 17: exit
        ]);
        let f = insn_fds(&p).unwrap();
        assert_eq!(f.imm_fds, vec![0, 2, 5]);
        assert_eq!(f.indexes.iter().copied().collect::<Vec<_>>(), vec![1, 3, 6]);
        // The second half of a pair is not an instruction of its own for ld_imm64 (a 0x18 there
        // is data), but kfunc calls are found in every slot, as the kernel looks.
        let tricky = prog(&[
            ld(0, 0),
            insn(LD_IMM64, 0, u::BPF_PSEUDO_MAP_FD as u8, 0, 42),
            insn(JMP_CALL, 0, u::BPF_PSEUDO_KFUNC_CALL as u8, 2, 0),
        ]);
        let f = insn_fds(&tricky).unwrap();
        assert!(f.imm_fds.is_empty());
        assert_eq!(f.indexes.iter().copied().collect::<Vec<_>>(), vec![2]);
        // An unpaired ld_imm64 at the end: the kernel refuses it before any fd lookup.
        assert_eq!(
            insn_fds(&prog(&[ld(u::BPF_PSEUDO_MAP_FD, 3)])).unwrap(),
            InsnFds::default()
        );
        // Unknown pseudo sources, negative and huge indexes.
        assert_eq!(insn_fds(&prog(&[ld(7, 3), second(0)])), Err(Errno::INVAL));
        assert_eq!(
            insn_fds(&prog(&[ld(u::BPF_PSEUDO_MAP_IDX, -1), second(0)])),
            Err(Errno::FAULT)
        );
        assert_eq!(
            insn_fds(&prog(&[
                ld(u::BPF_PSEUDO_MAP_IDX, FD_ARRAY_MAX as i32),
                second(0)
            ])),
            Err(Errno::TOOBIG)
        );
        // Negative kfunc offsets are the kernel's EINVAL; nothing to read.
        assert!(insn_fds(&prog(&[insn(JMP_CALL, 0, 2, -4, 0)]))
            .unwrap()
            .indexes
            .is_empty());
    }

    #[test]
    fn translation_plan() {
        use bpfns_sys::rawbpf::uapi as u;
        let ld = |src: u32, imm: i32| insn(LD_IMM64, 1, src as u8, 0, imm);
        let mut p = prog(&[
            ld(u::BPF_PSEUDO_MAP_FD, 5),
            insn(0, 0, 0, 0, 0),
            ld(u::BPF_PSEUDO_MAP_FD, 5),
            insn(0, 0, 0, 0, 0),
            ld(u::BPF_PSEUDO_MAP_IDX, 2),
            insn(0, 0, 0, 0, 0),
            insn(0x95, 0, 0, 0, 0),
        ]);
        let f = insn_fds(&p).unwrap();
        let r = ProgLoadReq {
            insn_cnt: 7,
            fd_array: 0x1000,
            fd_array_cnt: 1,
            prog_btf_fd: 0,
            attach_prog_fd: 11,
            prog_flags: LOAD_TOKEN_FLAG,
            prog_token_fd: 12,
            ..Default::default()
        };
        let len = fd_array_len(&r, &f).unwrap();
        assert_eq!(len, 3, "index 2 used; fd_array_cnt 1");
        let used = fd_array_used(&r, &f, len);
        assert_eq!(used.iter().copied().collect::<Vec<_>>(), vec![0, 2]);
        let mut arr: Vec<u8> = [20i32, 21, 22]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let set = load_fd_set(&r, &p, &f, &arr, &used);
        // 5 (twice), fd_array[0] and [2] (not [1]), attach 11, token 12; prog_btf_fd only with
        // func or line info (then even fd 0).
        assert_eq!(
            set.iter().copied().collect::<Vec<_>>(),
            vec![5, 11, 12, 20, 22]
        );
        let mut with_info = r;
        with_info.line_info_cnt = 1;
        assert!(load_fd_set(&with_info, &p, &f, &arr, &used).contains(&0));
        // bpfnsd's copies: caller fd + 1000; the caller has no fd 22.
        let tr = |v: u32| -> u32 {
            match v {
                22 => u32::MAX,
                v if (v as i32) < 0 => v,
                v => v + 1000,
            }
        };
        rewrite_insns(&mut p, &f, &tr);
        let imm = |i: usize| i32::from_ne_bytes(p[i * 8 + 4..i * 8 + 8].try_into().unwrap());
        assert_eq!(
            (imm(0), imm(2), imm(4)),
            (1005, 1005, 2),
            "indexes stay indexes"
        );
        rewrite_fd_array(&mut arr, &used, &tr);
        let e = |i: usize| i32::from_ne_bytes(arr[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!((e(0), e(1), e(2)), (1020, -1, -1));
        // Without an fd_array there is nothing to read; an fd_array_cnt past the bound: E2BIG.
        let mut no = r;
        no.fd_array = 0;
        assert_eq!(fd_array_len(&no, &f), Ok(0));
        let mut big = r;
        big.fd_array_cnt = FD_ARRAY_MAX;
        assert_eq!(fd_array_len(&big, &f), Err(Errno::TOOBIG));
        // Negative numbers name no fd.
        assert_eq!(as_fd(u32::MAX), None);
        assert_eq!(as_fd(3), Some(3));
    }

    #[test]
    fn signed_programs() {
        use bpfns_sys::rawbpf::uapi as u;
        let none = InsnFds::default();
        let mut r = ProgLoadReq {
            signature: 0x1000,
            signature_size: 64,
            ..Default::default()
        };
        assert_eq!(signature_refusal(&r, &none), None, "the builtin keyring");
        r.keyring_id = 2;
        assert_eq!(signature_refusal(&r, &none), None, "the platform keyring");
        r.keyring_id = -3;
        assert!(matches!(
            signature_refusal(&r, &none),
            Some(LoadRefusal::Unsupported(_))
        ));
        r.keyring_id = 0;
        let with_fd = insn_fds(&prog(&[
            insn(LD_IMM64, 1, u::BPF_PSEUDO_MAP_FD as u8, 0, 3),
            insn(0, 0, 0, 0, 0),
        ]))
        .unwrap();
        assert!(signature_refusal(&r, &with_fd).is_some());
        r.signature = 0;
        assert_eq!(signature_refusal(&r, &with_fd), None);
    }

    #[test]
    fn task_fd_queries() {
        assert!(task_fd_query_allowed(10, 10, false), "its own process");
        assert!(!task_fd_query_allowed(10, 11, false), "another one");
        assert!(
            task_fd_query_allowed(10, 11, true),
            "CAP_SYS_ADMIN in the initial userns"
        );
    }

    #[test]
    fn prog_load_offsets_match_libbpf() {
        use std::mem::offset_of;
        type A = libbpf_sys::bpf_attr__bindgen_ty_4;
        assert_eq!(offset_of!(A, insn_cnt), off::L_INSN_CNT);
        assert_eq!(offset_of!(A, license), off::L_LICENSE);
        assert_eq!(offset_of!(A, log_buf), off::L_LOG_BUF);
        assert_eq!(offset_of!(A, prog_flags), off::L_PROG_FLAGS);
        assert_eq!(offset_of!(A, prog_name), off::L_PROG_NAME);
        assert_eq!(offset_of!(A, prog_ifindex), off::L_PROG_IFINDEX);
        assert_eq!(offset_of!(A, prog_btf_fd), off::L_PROG_BTF_FD);
        assert_eq!(offset_of!(A, func_info), off::L_FUNC_INFO);
        assert_eq!(offset_of!(A, line_info_cnt), off::L_LINE_INFO_CNT);
        assert_eq!(offset_of!(A, core_relo_cnt), off::L_CORE_RELO_CNT);
        assert_eq!(offset_of!(A, fd_array), off::L_FD_ARRAY);
        assert_eq!(offset_of!(A, core_relos), off::L_CORE_RELOS);
        assert_eq!(offset_of!(A, log_true_size), off::L_LOG_TRUE_SIZE);
        assert_eq!(offset_of!(A, prog_token_fd), off::L_PROG_TOKEN_FD);
        assert_eq!(offset_of!(A, fd_array_cnt), off::L_FD_ARRAY_CNT);
        assert_eq!(offset_of!(A, signature), off::L_SIGNATURE);
        assert_eq!(offset_of!(A, keyring_id), off::L_KEYRING_ID);
        assert_eq!(off::L_KEYRING_ID + 4, PROG_LOAD_END);
    }

    #[test]
    fn btf_load_offsets_match_libbpf() {
        use std::mem::offset_of;
        type A = libbpf_sys::bpf_attr__bindgen_ty_12;
        assert_eq!(offset_of!(A, btf), off::B_BTF);
        assert_eq!(offset_of!(A, btf_log_buf), off::B_LOG_BUF);
        assert_eq!(offset_of!(A, btf_size), off::B_SIZE);
        assert_eq!(offset_of!(A, btf_log_size), off::B_LOG_SIZE);
        assert_eq!(offset_of!(A, btf_log_level), off::B_LOG_LEVEL);
        assert_eq!(offset_of!(A, btf_log_true_size), off::B_LOG_TRUE_SIZE);
        assert_eq!(offset_of!(A, btf_flags), off::B_FLAGS);
        assert_eq!(offset_of!(A, btf_token_fd), off::B_TOKEN_FD);
        assert_eq!(std::mem::size_of::<A>(), BTF_LOAD_END);
    }

    #[test]
    fn map_create_offsets_match_libbpf() {
        use std::mem::offset_of;
        type A = libbpf_sys::bpf_attr__bindgen_ty_1;
        assert_eq!(offset_of!(A, map_type), off::M_MAP_TYPE);
        assert_eq!(offset_of!(A, map_flags), off::M_MAP_FLAGS);
        assert_eq!(offset_of!(A, inner_map_fd), off::M_INNER_MAP_FD);
        assert_eq!(offset_of!(A, map_ifindex), off::M_MAP_IFINDEX);
        assert_eq!(offset_of!(A, btf_fd), off::M_BTF_FD);
        assert_eq!(offset_of!(A, btf_key_type_id), off::M_BTF_KEY_TYPE_ID);
        assert_eq!(offset_of!(A, btf_value_type_id), off::M_BTF_VALUE_TYPE_ID);
        assert_eq!(
            offset_of!(A, btf_vmlinux_value_type_id),
            off::M_BTF_VMLINUX_VALUE_TYPE_ID
        );
        assert_eq!(
            offset_of!(A, value_type_btf_obj_fd),
            off::M_VALUE_TYPE_BTF_OBJ_FD
        );
        assert_eq!(offset_of!(A, map_token_fd), off::M_MAP_TOKEN_FD);
        assert_eq!(offset_of!(A, excl_prog_hash), off::M_EXCL_PROG_HASH);
        assert_eq!(
            offset_of!(A, excl_prog_hash_size),
            off::M_EXCL_PROG_HASH_SIZE
        );
    }

    fn attach(attach_type: u32, flags: u32) -> AttachReq {
        AttachReq {
            target: 3,
            attach_bpf_fd: 4,
            attach_type,
            flags,
            replace_bpf_fd: 0,
            relative: 0,
            expected_revision: 0,
        }
    }

    #[test]
    fn attach_parsing_and_hooks() {
        use bpfns_sys::rawbpf::uapi as u;
        let mut a = Attr::zeroed(32);
        for (o, v) in [
            (0, 7),
            (4, 8),
            (8, u::BPF_TCX_INGRESS),
            (12, 4),
            (16, 9),
            (20, 10),
        ] {
            a.set_u32(o, v);
        }
        a.set_u64(24, 5);
        let want = AttachReq {
            target: 7,
            attach_bpf_fd: 8,
            attach_type: u::BPF_TCX_INGRESS,
            flags: 4,
            replace_bpf_fd: 9,
            relative: 10,
            expected_revision: 5,
        };
        assert_eq!(parse(Command::ProgAttach, &a), Ok(Request::Attach(want)));
        assert_eq!(parse(Command::ProgDetach, &a), Ok(Request::Detach(want)));
        let mut bad = a.clone();
        bad.set_u32(32, 1);
        assert_eq!(parse(Command::ProgAttach, &bad), Err(Errno::INVAL));
        let mut l = Attr::zeroed(16);
        for (o, v) in [(0, 3), (4, 4), (8, u::BPF_F_REPLACE), (12, 5)] {
            l.set_u32(o, v);
        }
        assert_eq!(
            parse(Command::LinkUpdate, &l),
            Ok(Request::LinkUpdate(LinkUpdateReq {
                link_fd: 3,
                new_fd: 4,
                flags: u::BPF_F_REPLACE,
                old_fd: 5
            }))
        );
        assert_eq!(
            parse(Command::LinkDetach, &attr(&[(0, 6)])),
            Ok(Request::LinkDetach { link_fd: 6 })
        );
        assert_eq!(
            parse(Command::LinkDetach, &attr(&[(0, 6), (4, 1)])),
            Err(Errno::INVAL)
        );
        // PROG_LOAD: every field is read.
        assert!(matches!(
            parse(Command::ProgLoad, &attr(&[(0, 1), (96, 7)])),
            Ok(Request::ProgLoad(ProgLoadReq {
                prog_type: 1,
                line_info: 7,
                ..
            }))
        ));
        assert_eq!(hook_of(u::BPF_CGROUP_INET_INGRESS), Some(Hook::Cgroup));
        assert_eq!(hook_of(u::BPF_CGROUP_UNIX_GETSOCKNAME), Some(Hook::Cgroup));
        assert_eq!(hook_of(u::BPF_LSM_CGROUP), Some(Hook::Cgroup));
        assert_eq!(hook_of(u::BPF_SK_SKB_VERDICT), Some(Hook::SockMap));
        assert_eq!(hook_of(u::BPF_SK_MSG_VERDICT), Some(Hook::SockMap));
        assert_eq!(hook_of(u::BPF_LIRC_MODE2), Some(Hook::Lirc));
        assert_eq!(hook_of(u::BPF_FLOW_DISSECTOR), Some(Hook::FlowDissector));
        assert_eq!(hook_of(u::BPF_NETKIT_PEER), Some(Hook::Mprog));
        // Link-only and tracing attach types are not PROG_ATTACH's.
        for t in [23, 28, 36, 37, 41, 44, 45, 56, 57, 58, 1000] {
            assert_eq!(hook_of(t), None, "{t}");
        }
    }

    #[test]
    fn which_attach_fields_are_fds() {
        use bpfns_sys::rawbpf::uapi as u;
        let ingress = u::BPF_CGROUP_INET_INGRESS;
        let a = attach(ingress, u::BPF_F_ALLOW_MULTI | u::BPF_F_REPLACE);
        assert_eq!(
            attach_fds(false, Hook::Cgroup, &a),
            AttachFds {
                target: true,
                prog: true,
                replace: true,
                relative: false
            }
        );
        // A detach never reads replace_bpf_fd; the flow dissector and mprog targets are not fds.
        let f = attach_fds(true, Hook::FlowDissector, &a);
        assert!(!f.target && f.prog && !f.replace);
        let mut m = attach(u::BPF_TCX_INGRESS, u::BPF_F_BEFORE);
        m.attach_bpf_fd = 0;
        m.relative = 9;
        let f = attach_fds(true, Hook::Mprog, &m);
        assert!(!f.target && !f.prog && f.relative);
        // Relative by id is not an fd; BPF_F_LINK makes even 0 an fd.
        m.flags |= u::BPF_F_ID;
        assert!(!attach_fds(false, Hook::Mprog, &m).relative);
        m.flags = u::BPF_F_AFTER | u::BPF_F_LINK;
        m.relative = 0;
        assert!(attach_fds(false, Hook::Mprog, &m).relative);
        // What needs a look at the hook first.
        let legacy = attach(ingress, 0);
        assert!(attach_needs_query(false, Hook::Cgroup, &legacy));
        assert!(!attach_needs_query(false, Hook::Cgroup, &a));
        assert!(attach_needs_query(true, Hook::Cgroup, &a));
        assert!(attach_needs_query(false, Hook::SockMap, &legacy));
        assert!(!attach_needs_query(true, Hook::SockMap, &legacy));
        assert!(attach_needs_query(false, Hook::FlowDissector, &legacy));
        assert!(!attach_needs_query(false, Hook::Lirc, &legacy));
        assert!(attach_needs_query(true, Hook::Mprog, &m.clone()) == (m.attach_bpf_fd == 0));
    }

    /// A fake view: the ids it may see.
    fn seer(
        progs: &'static [u32],
        links: &'static [u32],
    ) -> impl FnMut(ObjectKind, u32) -> Result<bool, ()> {
        move |k, id| {
            Ok(match k {
                ObjectKind::Prog => progs.contains(&id),
                ObjectKind::Link => links.contains(&id),
                ObjectKind::Map => id < 100,
                ObjectKind::Btf => false,
            })
        }
    }

    fn st(flags: u32, revision: u64, progs: &[(u32, u32)]) -> HookState {
        HookState {
            flags,
            revision,
            entries: progs
                .iter()
                .map(|&(p, l)| QueryEntry {
                    prog_id: p,
                    link_id: l,
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn verdict(
        detach: bool,
        hook: Hook,
        a: &AttachReq,
        state: Option<&HookState>,
        ids: FdIds,
    ) -> Result<AttachPlan, Errno> {
        let mut see = seer(&[1, 2, 3], &[21]);
        attach_verdict(detach, hook, a, state, ids, &mut see)
            .expect("view answers")
            .map_err(|r| r.errno)
    }

    #[test]
    fn cgroup_attach_and_detach_decisions() {
        use bpfns_sys::rawbpf::uapi as u;
        let ingress = u::BPF_CGROUP_INET_INGRESS;
        let multi = u::BPF_F_ALLOW_MULTI;
        let mine = FdIds {
            prog: Some(2),
            replace: None,
        };
        // Legacy attach over a foreign program replaces it: refused; over one's own or
        // nothing: allowed, pinned to the revision seen where the kernel keeps one.
        let legacy = attach(ingress, 0);
        let foreign = st(0, 0, &[(50, 0)]);
        assert_eq!(
            verdict(false, Hook::Cgroup, &legacy, Some(&foreign), mine),
            Err(Errno::PERM)
        );
        assert_eq!(
            verdict(
                false,
                Hook::Cgroup,
                &legacy,
                Some(&st(0, 0, &[(1, 0)])),
                mine
            ),
            Ok(AttachPlan::default())
        );
        assert_eq!(
            verdict(false, Hook::Cgroup, &legacy, Some(&st(0, 7, &[])), mine),
            Ok(AttachPlan {
                pin_revision: Some(7)
            })
        );
        // A caller's own revision must be the one checked.
        let mut own_rev = legacy;
        own_rev.expected_revision = 9;
        assert_eq!(
            verdict(false, Hook::Cgroup, &own_rev, Some(&st(0, 7, &[])), mine),
            Err(Errno::STALE)
        );
        own_rev.expected_revision = 7;
        assert_eq!(
            verdict(false, Hook::Cgroup, &own_rev, Some(&st(0, 7, &[])), mine),
            Ok(AttachPlan {
                pin_revision: Some(7)
            })
        );
        // Multi attach adds; with BPF_F_REPLACE the replaced program must be visible.
        let add = attach(ingress, multi);
        assert!(verdict(false, Hook::Cgroup, &add, None, mine).is_ok());
        let repl = attach(ingress, multi | u::BPF_F_REPLACE);
        let theirs = FdIds {
            prog: Some(2),
            replace: Some(50),
        };
        assert_eq!(
            verdict(false, Hook::Cgroup, &repl, None, theirs),
            Err(Errno::PERM)
        );
        let ours = FdIds {
            prog: Some(2),
            replace: Some(3),
        };
        assert!(verdict(false, Hook::Cgroup, &repl, None, ours).is_ok());
        // Legacy detach takes the hook's program whatever fd comes with it.
        let det = attach(ingress, 0);
        assert_eq!(
            verdict(true, Hook::Cgroup, &det, Some(&foreign), mine),
            Err(Errno::PERM)
        );
        assert_eq!(
            verdict(true, Hook::Cgroup, &det, Some(&foreign), FdIds::default()),
            Err(Errno::PERM)
        );
        assert!(verdict(true, Hook::Cgroup, &det, Some(&st(0, 0, &[(3, 0)])), mine).is_ok());
        // Nothing attached: the kernel's ENOENT.
        assert!(verdict(true, Hook::Cgroup, &det, Some(&st(0, 0, &[])), mine).is_ok());
        // Multi detach removes exactly the given program.
        let multi_hook = st(multi, 4, &[(50, 0), (2, 0)]);
        assert_eq!(
            verdict(true, Hook::Cgroup, &det, Some(&multi_hook), mine),
            Ok(AttachPlan {
                pin_revision: Some(4)
            })
        );
        let theirs = FdIds {
            prog: Some(50),
            replace: None,
        };
        assert_eq!(
            verdict(true, Hook::Cgroup, &det, Some(&multi_hook), theirs),
            Err(Errno::PERM)
        );
        // Relative to an invisible program or link: not there.
        let mut rel = attach(ingress, multi | u::BPF_F_BEFORE | u::BPF_F_ID);
        rel.relative = 50;
        assert_eq!(
            verdict(false, Hook::Cgroup, &rel, None, mine),
            Err(Errno::NOENT)
        );
        rel.relative = 1;
        assert!(verdict(false, Hook::Cgroup, &rel, None, mine).is_ok());
        rel.flags |= u::BPF_F_LINK;
        rel.relative = 21;
        assert!(verdict(false, Hook::Cgroup, &rel, None, mine).is_ok());
        rel.relative = 22;
        assert_eq!(
            verdict(false, Hook::Cgroup, &rel, None, mine),
            Err(Errno::NOENT)
        );
    }

    #[test]
    fn other_hook_decisions() {
        use bpfns_sys::rawbpf::uapi as u;
        let mine = FdIds {
            prog: Some(2),
            replace: None,
        };
        let theirs = FdIds {
            prog: Some(50),
            replace: Some(50),
        };
        // Sockmaps and the flow dissector: an attach replaces their one program.
        for (hook, t) in [
            (Hook::SockMap, u::BPF_SK_SKB_VERDICT),
            (Hook::FlowDissector, u::BPF_FLOW_DISSECTOR),
        ] {
            let a = attach(t, 0);
            assert_eq!(
                verdict(false, hook, &a, Some(&st(0, 0, &[(50, 0)])), mine),
                Err(Errno::PERM)
            );
            assert!(verdict(false, hook, &a, Some(&st(0, 0, &[(1, 0)])), mine).is_ok());
            assert!(verdict(false, hook, &a, Some(&st(0, 0, &[])), mine).is_ok());
            // A detach names its program.
            assert_eq!(verdict(true, hook, &a, None, theirs), Err(Errno::PERM));
            assert!(verdict(true, hook, &a, None, mine).is_ok());
        }
        // lirc adds; its detach names the program.
        let l = attach(u::BPF_LIRC_MODE2, 0);
        assert!(verdict(false, Hook::Lirc, &l, None, theirs).is_ok());
        assert_eq!(
            verdict(true, Hook::Lirc, &l, None, theirs),
            Err(Errno::PERM)
        );
        // tcx/netkit: BPF_F_REPLACE names the replaced program.
        let r = attach(u::BPF_TCX_INGRESS, u::BPF_F_REPLACE);
        assert_eq!(
            verdict(false, Hook::Mprog, &r, None, theirs),
            Err(Errno::PERM)
        );
        assert!(verdict(
            false,
            Hook::Mprog,
            &r,
            None,
            FdIds {
                prog: Some(2),
                replace: Some(1)
            }
        )
        .is_ok());
        // Detach of a named program; by position only where every program attached without
        // a link is visible, pinned to the revision seen.
        let d = attach(u::BPF_TCX_INGRESS, 0);
        assert_eq!(
            verdict(true, Hook::Mprog, &d, None, theirs),
            Err(Errno::PERM)
        );
        let mut pos = attach(u::BPF_TCX_INGRESS, u::BPF_F_BEFORE);
        pos.attach_bpf_fd = 0;
        let mixed = st(0, 11, &[(1, 0), (50, 0)]);
        assert_eq!(
            verdict(true, Hook::Mprog, &pos, Some(&mixed), FdIds::default()),
            Err(Errno::PERM)
        );
        // A foreign program attached through a link cannot be detached this way (EBUSY).
        let linked = st(0, 11, &[(1, 0), (50, 21)]);
        assert_eq!(
            verdict(true, Hook::Mprog, &pos, Some(&linked), FdIds::default()),
            Ok(AttachPlan {
                pin_revision: Some(11)
            })
        );
    }

    #[test]
    fn link_decisions() {
        let mut see = seer(&[1, 2], &[21, 22]);
        let mut v = |link, update| {
            link_verdict(link, update, &mut see)
                .expect("view answers")
                .map_err(|r| r.errno)
        };
        // Detach: the link must be visible.
        assert_eq!(v(Some((21, 50)), None), Ok(()));
        assert_eq!(v(Some((30, 1)), None), Err(Errno::PERM));
        // Not a link: the kernel's answer.
        assert_eq!(v(None, None), Ok(()));
        // Update: the link and the program it runs now; with REPLACE the old one too.
        assert_eq!(v(Some((21, 1)), Some((false, None))), Ok(()));
        assert_eq!(v(Some((21, 50)), Some((false, None))), Err(Errno::PERM));
        assert_eq!(v(Some((30, 1)), Some((false, None))), Err(Errno::PERM));
        assert_eq!(
            v(Some((21, 1)), Some((true, Some((ObjectKind::Prog, 50))))),
            Err(Errno::PERM)
        );
        assert_eq!(
            v(Some((21, 1)), Some((true, Some((ObjectKind::Prog, 2))))),
            Ok(())
        );
        // A struct_ops link runs no program; its maps are checked as the old object.
        assert_eq!(
            v(Some((22, 0)), Some((true, Some((ObjectKind::Map, 500))))),
            Err(Errno::PERM)
        );
        assert_eq!(
            v(Some((22, 0)), Some((true, Some((ObjectKind::Map, 5))))),
            Ok(())
        );
    }

    #[test]
    fn perf_query_rules() {
        assert_eq!(perf_query_reply(&[4, 5], 4), (2, vec![4, 5, 0, 0], None));
        assert_eq!(
            perf_query_reply(&[4, 5, 6], 2),
            (3, vec![4, 5], Some(Errno::NOSPC))
        );
        assert_eq!(perf_query_reply(&[4], 0), (1, vec![], None));
        assert_eq!(perf_query_reply(&[], 3), (0, vec![0, 0, 0], None));
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
}
