//! Thin typed wrappers over the bpf() commands bpfns issues itself (through libbpf's low-level API).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use rustix::io::Errno;

use crate::{Result, SysError};

pub use bpfns_model::ObjectKind as Kind;

/// libbpf's low-level API returns `-errno` (and sets errno) on failure.
fn check(op: impl FnOnce() -> String, ret: i32) -> Result<i32> {
    if ret < 0 {
        Err(SysError::new(op(), Errno::from_raw_os_error(-ret)))
    } else {
        Ok(ret)
    }
}

fn owned(fd: i32) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel as a new descriptor that nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `BPF_*_GET_NEXT_ID`: the next ID of `kind` after `start`, or `None` at the end.
pub fn next_id(kind: Kind, start: u32) -> Result<Option<u32>> {
    let mut next = 0u32;
    // SAFETY: `next` is a valid, writable u32 for the duration of the call.
    let ret = unsafe {
        match kind {
            Kind::Prog => libbpf_sys::bpf_prog_get_next_id(start, &mut next),
            Kind::Map => libbpf_sys::bpf_map_get_next_id(start, &mut next),
            Kind::Link => libbpf_sys::bpf_link_get_next_id(start, &mut next),
            Kind::Btf => libbpf_sys::bpf_btf_get_next_id(start, &mut next),
        }
    };
    match check(
        || format!("BPF_{}_GET_NEXT_ID", kind.name().to_uppercase()),
        ret,
    ) {
        Ok(_) => Ok(Some(next)),
        Err(e) if e.errno == Errno::NOENT => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every ID of `kind` currently in the kernel, in ascending order.
pub fn all_ids(kind: Kind) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    let mut cur = 0;
    while let Some(id) = next_id(kind, cur)? {
        ids.push(id);
        cur = id;
    }
    Ok(ids)
}

/// `BPF_*_GET_FD_BY_ID`.
pub fn fd_by_id(kind: Kind, id: u32) -> Result<OwnedFd> {
    // SAFETY: plain integer argument; the return value is a new fd or -errno.
    let ret = unsafe {
        match kind {
            Kind::Prog => libbpf_sys::bpf_prog_get_fd_by_id(id),
            Kind::Map => libbpf_sys::bpf_map_get_fd_by_id(id),
            Kind::Link => libbpf_sys::bpf_link_get_fd_by_id(id),
            Kind::Btf => libbpf_sys::bpf_btf_get_fd_by_id(id),
        }
    };
    check(
        || format!("BPF_{}_GET_FD_BY_ID {id}", kind.name().to_uppercase()),
        ret,
    )
    .map(owned)
}

fn cpath(path: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SysError::new(format!("path {}", path.display()), Errno::INVAL))
}

/// `BPF_OBJ_GET`: open a pinned object.
pub fn obj_get(path: &Path) -> Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let ret = unsafe { libbpf_sys::bpf_obj_get(c.as_ptr()) };
    check(|| format!("BPF_OBJ_GET {}", path.display()), ret).map(owned)
}

/// `BPF_OBJ_PIN`: pin `fd` at `path`.
pub fn obj_pin(fd: impl AsFd, path: &Path) -> Result<()> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid NUL-terminated string; the fd is borrowed for the call.
    let ret = unsafe { libbpf_sys::bpf_obj_pin(fd.as_fd().as_raw_fd(), c.as_ptr()) };
    check(|| format!("BPF_OBJ_PIN {}", path.display()), ret).map(|_| ())
}

/// Info structs the kernel fills for `BPF_OBJ_GET_INFO_BY_FD`.
pub use libbpf_sys::{bpf_btf_info, bpf_link_info, bpf_map_info, bpf_prog_info, bpf_token_info};

/// Marker for the kernel's info structs: plain old data that may be zero-initialised.
///
/// # Safety
/// Implementors must be `repr(C)` structs for which all-zero bytes are a valid value.
pub unsafe trait InfoStruct: Copy {}
// SAFETY: bindgen-generated repr(C) structs of integers and pointers-as-u64.
unsafe impl InfoStruct for bpf_map_info {}
// SAFETY: as above.
unsafe impl InfoStruct for bpf_prog_info {}
// SAFETY: as above.
unsafe impl InfoStruct for bpf_link_info {}
// SAFETY: as above.
unsafe impl InfoStruct for bpf_btf_info {}
// SAFETY: as above (four u64 masks; recent kernels answer it for a BPF token).
unsafe impl InfoStruct for bpf_token_info {}

/// `BPF_OBJ_GET_INFO_BY_FD` for the fixed part of an info struct (no variable-length arrays).
pub fn info<T: InfoStruct>(fd: impl AsFd) -> Result<T> {
    // SAFETY: `T: InfoStruct` guarantees all-zero is a valid value.
    let mut info: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as u32;
    // SAFETY: `info` is writable for `len` bytes; the kernel writes at most `len` bytes.
    let ret = unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(
            fd.as_fd().as_raw_fd(),
            (&mut info as *mut T).cast(),
            &mut len,
        )
    };
    check(|| "BPF_OBJ_GET_INFO_BY_FD".to_string(), ret).map(|_| info)
}

/// `BPF_MAP_CREATE` with no options: used by probes, tests and benchmarks.
pub fn map_create(
    map_type: u32,
    name: &str,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
) -> Result<OwnedFd> {
    let c = CString::new(name).map_err(|_| SysError::new("map name", Errno::INVAL))?;
    // SAFETY: `c` is NUL-terminated; a null opts pointer means defaults.
    let ret = unsafe {
        libbpf_sys::bpf_map_create(
            map_type,
            c.as_ptr(),
            key_size,
            value_size,
            max_entries,
            std::ptr::null(),
        )
    };
    check(|| format!("BPF_MAP_CREATE {name}"), ret).map(owned)
}

/// `BPF_BTF_LOAD` of a raw BTF blob.
pub fn btf_load(data: &[u8]) -> Result<OwnedFd> {
    // SAFETY: `data` is readable for its length; null opts means defaults.
    let ret = unsafe {
        libbpf_sys::bpf_btf_load(data.as_ptr().cast(), data.len() as _, std::ptr::null_mut())
    };
    check(|| "BPF_BTF_LOAD".to_string(), ret).map(owned)
}

/// `BPF_PROG_LOAD` of raw instructions (each instruction 8 bytes), used by probes and tests.
pub fn prog_load(prog_type: u32, name: &str, insns: &[u64], opts: ProgLoadOpts) -> Result<OwnedFd> {
    let c = CString::new(name).map_err(|_| SysError::new("prog name", Errno::INVAL))?;
    let license = c"GPL";
    let mut o = libbpf_sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        expected_attach_type: opts.expected_attach_type,
        attach_btf_id: opts.attach_btf_id,
        prog_flags: opts.prog_flags,
        ..Default::default()
    };
    // SAFETY: every pointer is valid for the call; `insns` holds `insns.len()` 8-byte instructions.
    let ret = unsafe {
        libbpf_sys::bpf_prog_load(
            prog_type,
            c.as_ptr(),
            license.as_ptr(),
            insns.as_ptr().cast(),
            insns.len() as _,
            &mut o,
        )
    };
    check(|| format!("BPF_PROG_LOAD {name}"), ret).map(owned)
}

/// Options for [`prog_load`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgLoadOpts {
    pub expected_attach_type: u32,
    pub attach_btf_id: u32,
    /// `BPF_F_*` load flags (e.g. `BPF_F_SLEEPABLE` = 16).
    pub prog_flags: u32,
}

/// The two instructions `r0 = 0; exit`, the smallest valid program.
pub const RETURN_ZERO: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];

/// Raw fd number of a borrowed descriptor, for APIs that want an integer key (task storage).
pub fn raw(fd: impl AsFd) -> RawFd {
    fd.as_fd().as_raw_fd()
}

fn static_cstr(p: *const std::os::raw::c_char) -> Option<&'static str> {
    if p.is_null() {
        return None;
    }
    // SAFETY: libbpf returns pointers into static, NUL-terminated string tables.
    unsafe { std::ffi::CStr::from_ptr(p) }.to_str().ok()
}

/// libbpf's name for a map type ("hash", "array", ...), as bpftool prints it.
pub fn map_type_name(t: u32) -> Option<&'static str> {
    // SAFETY: takes an integer, returns a static string or NULL.
    static_cstr(unsafe { libbpf_sys::libbpf_bpf_map_type_str(t) })
}

/// libbpf's name for a program type ("kprobe", "tracing", ...).
pub fn prog_type_name(t: u32) -> Option<&'static str> {
    // SAFETY: as above.
    static_cstr(unsafe { libbpf_sys::libbpf_bpf_prog_type_str(t) })
}

/// libbpf's name for a link type ("raw_tracepoint", "iter", ...).
pub fn link_type_name(t: u32) -> Option<&'static str> {
    // SAFETY: as above.
    static_cstr(unsafe { libbpf_sys::libbpf_bpf_link_type_str(t) })
}

/// `BPF_LINK_CREATE` with no options (e.g. an sk_lookup program on a network namespace).
pub fn link_create(prog: impl AsFd, target: impl AsFd, attach_type: u32) -> Result<OwnedFd> {
    // SAFETY: both fds are borrowed for the call; null opts means defaults.
    let ret = unsafe {
        libbpf_sys::bpf_link_create(
            prog.as_fd().as_raw_fd(),
            target.as_fd().as_raw_fd(),
            attach_type,
            std::ptr::null(),
        )
    };
    check(|| "BPF_LINK_CREATE".to_string(), ret).map(owned)
}

/// Read iterator program `prog` over the task `tid` only (`BPF_LINK_CREATE` with the task as
/// its target, then `BPF_ITER_CREATE`), to the end: what it wrote.
pub fn read_task_iter(prog: impl AsFd, tid: u32) -> Result<Vec<u8>> {
    // SAFETY: a zeroed union of plain integers is a valid value.
    let mut info: libbpf_sys::bpf_iter_link_info = unsafe { std::mem::zeroed() };
    info.task.tid = tid;
    // SAFETY: as above, for the options struct (its pointers null).
    let mut opts: libbpf_sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _;
    opts.iter_info = &mut info;
    opts.iter_info_len = std::mem::size_of::<libbpf_sys::bpf_iter_link_info>() as u32;
    // SAFETY: `opts` and the `info` it points to live across the call; the fd is borrowed.
    let ret = unsafe {
        libbpf_sys::bpf_link_create(
            prog.as_fd().as_raw_fd(),
            0,
            libbpf_sys::BPF_TRACE_ITER,
            &opts,
        )
    };
    let link = check(|| "BPF_LINK_CREATE (task iterator)".to_string(), ret).map(owned)?;
    // SAFETY: the link fd is borrowed for the call.
    let ret = unsafe { libbpf_sys::bpf_iter_create(link.as_raw_fd()) };
    let iter = check(|| "BPF_ITER_CREATE".to_string(), ret).map(owned)?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(iter), &mut out).map_err(|e| {
        SysError::new(
            "reading a task iterator",
            Errno::from_io_error(&e).unwrap_or(Errno::IO),
        )
    })?;
    Ok(out)
}

/// `BPF_RAW_TRACEPOINT_OPEN`: attach a raw tracepoint program, returning its link.
pub fn raw_tracepoint_open(name: &str, prog: impl AsFd) -> Result<OwnedFd> {
    let c = CString::new(name).map_err(|_| SysError::new("tracepoint name", Errno::INVAL))?;
    // SAFETY: `c` is NUL-terminated; the fd is borrowed for the call.
    let ret = unsafe { libbpf_sys::bpf_raw_tracepoint_open(c.as_ptr(), prog.as_fd().as_raw_fd()) };
    check(|| format!("BPF_RAW_TRACEPOINT_OPEN {name}"), ret).map(owned)
}

/// The smallest valid BTF blob: one 32-bit `int` type.
pub fn minimal_btf() -> Vec<u8> {
    let mut b = Vec::new();
    let u16s = |b: &mut Vec<u8>, v: u16| b.extend_from_slice(&v.to_ne_bytes());
    let u32s = |b: &mut Vec<u8>, v: u32| b.extend_from_slice(&v.to_ne_bytes());
    u16s(&mut b, 0xeb9f); // magic
    b.push(1); // version
    b.push(0); // flags
    u32s(&mut b, 24); // hdr_len
    u32s(&mut b, 0); // type_off
    u32s(&mut b, 16); // type_len
    u32s(&mut b, 16); // str_off
    u32s(&mut b, 5); // str_len
    u32s(&mut b, 1); // name_off -> "int"
    u32s(&mut b, 1 << 24); // info: BTF_KIND_INT
    u32s(&mut b, 4); // size
    u32s(&mut b, 32); // int encoding: 32 bits
    b.extend_from_slice(b"\0int\0");
    b
}

/// `BPF_ENABLE_STATS(BPF_STATS_RUN_TIME)`: while the returned fd is open, the kernel counts
/// every BPF program's runs and run time (`run_cnt`, `run_time_ns` in [`bpf_prog_info`]).
/// Costs two clock reads per program run, so only for measurement.
pub fn enable_run_time_stats() -> Result<OwnedFd> {
    // SAFETY: plain integer argument; the return value is a new fd or -errno.
    let ret = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
    check(|| "BPF_ENABLE_STATS".to_string(), ret).map(owned)
}

/// `BPF_PROG_TEST_RUN` of `prog` on `data`, `repeat` times in the kernel: the program's return
/// value. With run-time statistics on, each run counts in the program's `run_cnt` and
/// `run_time_ns`.
pub fn prog_test_run(prog: impl AsFd, data: &[u8], repeat: u32) -> Result<u32> {
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        data_in: data.as_ptr().cast(),
        data_size_in: u32::try_from(data.len()).unwrap_or(u32::MAX),
        repeat: i32::try_from(repeat).unwrap_or(i32::MAX),
        ..Default::default()
    };
    // SAFETY: `data` outlives the call and its length is given; no output buffers are set.
    let ret = unsafe { libbpf_sys::bpf_prog_test_run_opts(raw(&prog), &mut opts) };
    check(|| "BPF_PROG_TEST_RUN".to_string(), ret)?;
    Ok(opts.retval)
}

/// `BPF_F_RDONLY`.
pub const BPF_F_RDONLY: u32 = 1 << 3;
/// `BPF_F_WRONLY`.
pub const BPF_F_WRONLY: u32 = 1 << 4;

/// `BPF_MAP_GET_FD_BY_ID` with `open_flags` (`BPF_F_RDONLY` / `BPF_F_WRONLY`).
pub fn map_fd_by_id_flags(id: u32, open_flags: u32) -> Result<OwnedFd> {
    let opts = libbpf_sys::bpf_get_fd_by_id_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_get_fd_by_id_opts>() as _,
        open_flags,
        token_fd: 0,
    };
    // SAFETY: `opts` is a valid, correctly sized options struct for the call.
    let ret = unsafe { libbpf_sys::bpf_map_get_fd_by_id_opts(id, &opts) };
    check(
        || format!("BPF_MAP_GET_FD_BY_ID {id} flags {open_flags:#x}"),
        ret,
    )
    .map(owned)
}

/// `BPF_MAP_GET_FD_BY_ID` read-only.
pub fn map_fd_by_id_rdonly(id: u32) -> Result<OwnedFd> {
    map_fd_by_id_flags(id, BPF_F_RDONLY)
}

/// Attach a BTF-enabled raw tracepoint program (`tp_btf/...`, whose tracepoint was fixed at
/// load time) and return its link; closing the link detaches it.
pub fn attach_tp_btf(prog: impl AsFd) -> Result<OwnedFd> {
    // SAFETY: a null name is how tp_btf programs are attached; the fd is borrowed for the call.
    let ret =
        unsafe { libbpf_sys::bpf_raw_tracepoint_open(std::ptr::null(), prog.as_fd().as_raw_fd()) };
    check(|| "BPF_RAW_TRACEPOINT_OPEN (tp_btf)".to_string(), ret).map(owned)
}

/// `BPF_MAP_GET_NEXT_KEY`: the key after `prev` (the first key when `None`), or `None` at
/// the end.
pub fn map_next_key(
    fd: impl AsFd,
    prev: Option<&[u8]>,
    key_size: usize,
) -> Result<Option<Vec<u8>>> {
    if prev.is_some_and(|p| p.len() != key_size) {
        return Err(SysError::new(
            "BPF_MAP_GET_NEXT_KEY: key size",
            Errno::INVAL,
        ));
    }
    let mut next = vec![0u8; key_size];
    let prev_ptr = prev.map_or(std::ptr::null(), |p| p.as_ptr().cast());
    // SAFETY: `prev` (if any) and `next` are valid for `key_size` bytes.
    let ret = unsafe {
        libbpf_sys::bpf_map_get_next_key(fd.as_fd().as_raw_fd(), prev_ptr, next.as_mut_ptr().cast())
    };
    match check(|| "BPF_MAP_GET_NEXT_KEY".to_string(), ret) {
        Ok(_) => Ok(Some(next)),
        Err(e) if e.errno == Errno::NOENT => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every `(key, value)` of a hash map, read with `BPF_MAP_LOOKUP_BATCH` (a few system calls
/// for the whole map instead of two per entry). The kernel hands out whole buckets: a batch may
/// hold fewer entries than asked for without being the last (only `ENOENT` ends the walk), and
/// `ENOSPC` means a bucket holds more than asked for (asked again with more room). Errors for
/// maps (or kernels) without batch operations: callers then read key by key.
pub fn map_dump_batched(
    fd: impl AsFd,
    key_size: usize,
    value_size: usize,
    mut each: impl FnMut(&[u8], &[u8]),
) -> Result<()> {
    let fd = fd.as_fd().as_raw_fd();
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    // Batch positions (a bucket index for hash maps): 8 bytes hold any.
    let mut in_batch = [0u8; 8];
    let mut out_batch = [0u8; 8];
    let mut first = true;
    let mut room = 4096usize;
    let mut keys = vec![0u8; room * key_size];
    let mut values = vec![0u8; room * value_size];
    loop {
        let mut count = room as u32;
        let in_ptr = if first {
            std::ptr::null_mut()
        } else {
            in_batch.as_mut_ptr().cast()
        };
        // SAFETY: `keys` and `values` hold `room` entries of the map's key and value sizes
        // (the caller's); the batch positions are valid for 8 bytes; `opts` is initialised.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                fd,
                in_ptr,
                out_batch.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let done = match check(|| "BPF_MAP_LOOKUP_BATCH".to_string(), ret) {
            Ok(_) => false,
            Err(e) if e.errno == Errno::NOENT => true,
            Err(e) if e.errno == Errno::NOSPC && room < (1 << 20) => {
                room *= 4;
                keys = vec![0u8; room * key_size];
                values = vec![0u8; room * value_size];
                continue;
            }
            Err(e) => return Err(e),
        };
        let n = (count as usize).min(room);
        for i in 0..n {
            each(
                &keys[i * key_size..(i + 1) * key_size],
                &values[i * value_size..(i + 1) * value_size],
            );
        }
        if done {
            return Ok(());
        }
        in_batch = out_batch;
        first = false;
    }
}

/// `BPF_MAP_LOOKUP_ELEM` into a buffer of `value_len` bytes (for per-CPU maps: the rounded
/// value size times the number of possible CPUs); `None` if the key is absent.
pub fn map_lookup(fd: impl AsFd, key: &[u8], value_len: usize) -> Result<Option<Vec<u8>>> {
    let mut value = vec![0u8; value_len];
    // SAFETY: `key` is valid for the map's key size (the caller read it from the map);
    // `value` is valid for `value_len` bytes, which the caller sized for this map.
    let ret = unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            fd.as_fd().as_raw_fd(),
            key.as_ptr().cast(),
            value.as_mut_ptr().cast(),
        )
    };
    match check(|| "BPF_MAP_LOOKUP_ELEM".to_string(), ret) {
        Ok(_) => Ok(Some(value)),
        Err(e) if e.errno == Errno::NOENT => Ok(None),
        Err(e) => Err(e),
    }
}

/// The number of possible CPUs (per-CPU map values have one slot per possible CPU).
pub fn possible_cpus() -> Result<usize> {
    // SAFETY: no arguments; returns a count or -errno.
    let n = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
    check(|| "libbpf_num_possible_cpus".to_string(), n).map(|n| n as usize)
}

/// `BPF_OBJ_PIN` of `fd` as `name` in the directory `dir` refers to, by way of
/// `/proc/self/fd/<dir>/<name>`: the directory is the one the handle names whatever happens to
/// the path it was opened by, and a final component that exists (a symbolic link included) is
/// `EEXIST`, never followed. Works on every kernel (`BPF_F_PATH_FD` is Linux 6.5+).
pub fn obj_pin_at(fd: impl AsFd, dir: impl AsFd, name: &std::ffi::OsStr) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if name.as_bytes().contains(&b'/') || name.is_empty() {
        return Err(SysError::new(
            "BPF_OBJ_PIN: a name, not a path",
            Errno::INVAL,
        ));
    }
    let path = Path::new("/proc/self/fd")
        .join(dir.as_fd().as_raw_fd().to_string())
        .join(name);
    obj_pin(fd, &path)
}

/// `BPF_OBJ_GET` of the pin a handle ([`crate::fs::open_entry_beneath`], `O_PATH`) holds,
/// through its `/proc/self/fd/<n>` magic link, which resolves to that very inode whatever
/// happens to the path meanwhile. `BPF_OBJ_GET` follows a final symbolic link
/// (`LOOKUP_FOLLOW`), also with `BPF_F_PATH_FD`, so opening a pin by name in a directory
/// someone else writes could open whatever they swapped in; the handle's inode cannot be
/// swapped. Works on every kernel.
pub fn obj_get_handle(handle: impl AsFd) -> Result<OwnedFd> {
    let path = Path::new("/proc/self/fd").join(handle.as_fd().as_raw_fd().to_string());
    obj_get(&path)
}

/// The kind and id of the BPF object behind `fd` (a map, program or link: what can be
/// pinned), or `None` for anything else.
pub fn object_of(fd: impl AsFd) -> Result<Option<(Kind, u32)>> {
    let fd = fd.as_fd();
    let what = std::fs::read_link(Path::new("/proc/self/fd").join(fd.as_raw_fd().to_string()))
        .map_err(|e| {
            SysError::new(
                "reading /proc/self/fd",
                Errno::from_io_error(&e).unwrap_or(Errno::IO),
            )
        })?;
    let kind = match what.to_str() {
        Some("anon_inode:bpf-map") => Kind::Map,
        Some("anon_inode:bpf-prog") => Kind::Prog,
        Some("anon_inode:bpf_link" | "anon_inode:bpf-link") => Kind::Link,
        _ => return Ok(None),
    };
    let id = match kind {
        Kind::Map => info::<bpf_map_info>(fd)?.id,
        Kind::Prog => info::<bpf_prog_info>(fd)?.id,
        Kind::Link => info::<bpf_link_info>(fd)?.id,
        Kind::Btf => info::<bpf_btf_info>(fd)?.id,
    };
    Ok(Some((kind, id)))
}

/// Whether values of map type `t` have one slot per possible CPU (a lookup returns them all,
/// each rounded up to 8 bytes).
pub fn is_percpu_map(t: u32) -> bool {
    matches!(
        t,
        libbpf_sys::BPF_MAP_TYPE_PERCPU_HASH
            | libbpf_sys::BPF_MAP_TYPE_PERCPU_ARRAY
            | libbpf_sys::BPF_MAP_TYPE_LRU_PERCPU_HASH
            | libbpf_sys::BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE
    )
}

/// `BPF_MAP_TYPE_RINGBUF`.
pub const MAP_TYPE_RINGBUF: u32 = libbpf_sys::BPF_MAP_TYPE_RINGBUF;

/// How the elements of a map type are reached from user space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapAccess {
    /// Keys: `BPF_MAP_GET_NEXT_KEY` and `BPF_MAP_LOOKUP_ELEM` walk them.
    ByKey,
    /// A ring buffer: a consumer maps and reads it; there are no keys (a key walk fails with
    /// `ENOTSUPP`).
    RingBuffer,
    /// A queue or stack (pushed and popped) or a bloom filter (tested): no keys either.
    NoKeys,
}

/// How the elements of map type `t` are reached.
pub fn map_access(t: u32) -> MapAccess {
    match t {
        libbpf_sys::BPF_MAP_TYPE_RINGBUF | libbpf_sys::BPF_MAP_TYPE_USER_RINGBUF => {
            MapAccess::RingBuffer
        }
        libbpf_sys::BPF_MAP_TYPE_QUEUE
        | libbpf_sys::BPF_MAP_TYPE_STACK
        | libbpf_sys::BPF_MAP_TYPE_BLOOM_FILTER => MapAccess::NoKeys,
        _ => MapAccess::ByKey,
    }
}

/// libbpf's name for an attach type ("cgroup_inet_ingress", "trace_fentry", ...).
pub fn attach_type_name(t: u32) -> Option<&'static str> {
    // SAFETY: takes an integer, returns a static string or NULL.
    static_cstr(unsafe { libbpf_sys::libbpf_bpf_attach_type_str(t) })
}

/// `BPF_OBJ_GET_INFO_BY_FD` into `info` as the caller prepared it (buffers to fill).
///
/// # Safety
/// Every pointer field of `info` with a non-zero length must point to memory writable for
/// that length (in the unit the kernel uses for that field) for the duration of the call.
unsafe fn info_into<T: InfoStruct>(fd: BorrowedFd<'_>, info: &mut T) -> Result<()> {
    let mut len = std::mem::size_of::<T>() as u32;
    // SAFETY: `info` is writable for `len` bytes; the buffers it names are the caller's promise.
    let ret = unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(fd.as_raw_fd(), (info as *mut T).cast(), &mut len)
    };
    check(|| "BPF_OBJ_GET_INFO_BY_FD".to_string(), ret).map(|_| ())
}

use std::os::fd::BorrowedFd;

/// Where a link is attached, as `BPF_OBJ_GET_INFO_BY_FD` tells it (fields a kernel does not
/// fill stay zero).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LinkAttach {
    /// A link type this table does not know (newer than bpfns).
    #[default]
    Other,
    RawTracepoint {
        tp_name: String,
    },
    Tracing {
        attach_type: u32,
        target_obj_id: u32,
        target_btf_id: u32,
    },
    Cgroup {
        cgroup_id: u64,
        attach_type: u32,
    },
    Iter {
        target_name: String,
    },
    Netns {
        netns_ino: u32,
        attach_type: u32,
    },
    Xdp {
        ifindex: u32,
    },
    StructOps {
        map_id: u32,
    },
    Netfilter {
        pf: u32,
        hooknum: u32,
        priority: i32,
    },
    KprobeMulti {
        count: u32,
    },
    UprobeMulti {
        count: u32,
        pid: u32,
    },
    PerfEvent {
        event_type: u32,
    },
    Tcx {
        ifindex: u32,
        attach_type: u32,
    },
    Netkit {
        ifindex: u32,
        attach_type: u32,
    },
    Sockmap {
        map_id: u32,
        attach_type: u32,
    },
}

/// A link's type, program and attach point.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkInfo {
    pub link_type: u32,
    pub id: u32,
    pub prog_id: u32,
    pub attach: LinkAttach,
}

/// A NUL-terminated name of at most `len` bytes that the kernel copies out for a link
/// (`tp_name`, `target_name`), asked for once its length is known.
fn link_name(fd: BorrowedFd<'_>, len: u32, set: impl Fn(&mut bpf_link_info, u64, u32)) -> String {
    let len = len.min(4096);
    if len == 0 {
        return String::new();
    }
    let mut buf = vec![0u8; len as usize];
    // SAFETY: all-zero is a valid bpf_link_info.
    let mut info: bpf_link_info = unsafe { std::mem::zeroed() };
    set(&mut info, buf.as_mut_ptr() as u64, len);
    // SAFETY: the one buffer named in `info` is `buf`, writable for `len` bytes.
    if unsafe { info_into(fd, &mut info) }.is_err() {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `BPF_OBJ_GET_INFO_BY_FD` of a link: its type, program and attach point (one call, and a
/// second for link types whose attach point is a name).
pub fn link_info(fd: impl AsFd) -> Result<LinkInfo> {
    let fd = fd.as_fd();
    let info: bpf_link_info = info(fd)?;
    let u = &info.__bindgen_anon_1;
    // SAFETY: every union read below is of the member that belongs to `info.type_`, which the
    // kernel filled; each member is plain integers, for which any bytes are valid.
    let attach = unsafe {
        match info.type_ {
            libbpf_sys::BPF_LINK_TYPE_RAW_TRACEPOINT => LinkAttach::RawTracepoint {
                tp_name: link_name(fd, u.raw_tracepoint.tp_name_len, |i, p, l| {
                    i.__bindgen_anon_1.raw_tracepoint.tp_name = p;
                    i.__bindgen_anon_1.raw_tracepoint.tp_name_len = l;
                }),
            },
            libbpf_sys::BPF_LINK_TYPE_TRACING => LinkAttach::Tracing {
                attach_type: u.tracing.attach_type,
                target_obj_id: u.tracing.target_obj_id,
                target_btf_id: u.tracing.target_btf_id,
            },
            libbpf_sys::BPF_LINK_TYPE_CGROUP => LinkAttach::Cgroup {
                cgroup_id: u.cgroup.cgroup_id,
                attach_type: u.cgroup.attach_type,
            },
            libbpf_sys::BPF_LINK_TYPE_ITER => LinkAttach::Iter {
                target_name: link_name(fd, u.iter.target_name_len, |i, p, l| {
                    i.__bindgen_anon_1.iter.target_name = p;
                    i.__bindgen_anon_1.iter.target_name_len = l;
                }),
            },
            libbpf_sys::BPF_LINK_TYPE_NETNS => LinkAttach::Netns {
                netns_ino: u.netns.netns_ino,
                attach_type: u.netns.attach_type,
            },
            libbpf_sys::BPF_LINK_TYPE_XDP => LinkAttach::Xdp {
                ifindex: u.xdp.ifindex,
            },
            libbpf_sys::BPF_LINK_TYPE_STRUCT_OPS => LinkAttach::StructOps {
                map_id: u.struct_ops.map_id,
            },
            libbpf_sys::BPF_LINK_TYPE_NETFILTER => LinkAttach::Netfilter {
                pf: u.netfilter.pf,
                hooknum: u.netfilter.hooknum,
                priority: u.netfilter.priority,
            },
            libbpf_sys::BPF_LINK_TYPE_KPROBE_MULTI => LinkAttach::KprobeMulti {
                count: u.kprobe_multi.count,
            },
            libbpf_sys::BPF_LINK_TYPE_UPROBE_MULTI => LinkAttach::UprobeMulti {
                count: u.uprobe_multi.count,
                pid: u.uprobe_multi.pid,
            },
            libbpf_sys::BPF_LINK_TYPE_PERF_EVENT => LinkAttach::PerfEvent {
                event_type: u.perf_event.type_,
            },
            libbpf_sys::BPF_LINK_TYPE_TCX => LinkAttach::Tcx {
                ifindex: u.tcx.ifindex,
                attach_type: u.tcx.attach_type,
            },
            libbpf_sys::BPF_LINK_TYPE_NETKIT => LinkAttach::Netkit {
                ifindex: u.netkit.ifindex,
                attach_type: u.netkit.attach_type,
            },
            libbpf_sys::BPF_LINK_TYPE_SOCKMAP => LinkAttach::Sockmap {
                map_id: u.sockmap.map_id,
                attach_type: u.sockmap.attach_type,
            },
            _ => LinkAttach::Other,
        }
    };
    Ok(LinkInfo {
        link_type: info.type_,
        id: info.id,
        prog_id: info.prog_id,
        attach,
    })
}

/// The ids of every map a program uses (`map_ids` of its info).
pub fn prog_map_ids(fd: impl AsFd) -> Result<Vec<u32>> {
    let fd = fd.as_fd();
    let first: bpf_prog_info = info(fd)?;
    if first.nr_map_ids == 0 {
        return Ok(Vec::new());
    }
    let mut ids = vec![0u32; first.nr_map_ids as usize];
    // SAFETY: all-zero is a valid bpf_prog_info.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    info.nr_map_ids = ids.len() as u32;
    info.map_ids = ids.as_mut_ptr() as u64;
    // SAFETY: `map_ids` points to `nr_map_ids` writable u32s; no other buffer is named.
    unsafe { info_into(fd, &mut info) }?;
    // More maps may have been bound meanwhile: the kernel wrote at most what was asked for.
    ids.truncate((info.nr_map_ids as usize).min(ids.len()));
    Ok(ids)
}

/// A program's instructions as the verifier left them (`xlated_prog_insns`), 8 bytes each;
/// `None` when the kernel withholds them (the caller lacks `CAP_BPF`, or the program was
/// constant-blinded and the descriptor's opener may not see kernel addresses).
pub fn prog_xlated(fd: impl AsFd) -> Result<Option<Vec<u64>>> {
    let fd = fd.as_fd();
    let first: bpf_prog_info = info(fd)?;
    if first.xlated_prog_len == 0 {
        return Ok(None);
    }
    let mut insns = vec![0u64; first.xlated_prog_len.div_ceil(8) as usize];
    // SAFETY: all-zero is a valid bpf_prog_info.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    info.xlated_prog_len = (insns.len() * 8) as u32;
    info.xlated_prog_insns = insns.as_mut_ptr() as u64;
    // SAFETY: `xlated_prog_insns` points to `xlated_prog_len` writable bytes; no other buffer.
    unsafe { info_into(fd, &mut info) }?;
    if info.xlated_prog_insns == 0 {
        return Ok(None);
    }
    insns.truncate((info.xlated_prog_len as usize / 8).min(insns.len()));
    Ok(Some(insns))
}

/// A BTF object's name (`vmlinux`, a module's, or empty for a program's), size and origin.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BtfInfo {
    pub id: u32,
    pub name: String,
    /// Bytes of raw BTF data.
    pub size: u32,
    /// The kernel's own (vmlinux or a module's), not loaded by a program.
    pub kernel: bool,
}

/// `BPF_OBJ_GET_INFO_BY_FD` of a BTF object.
pub fn btf_info(fd: impl AsFd) -> Result<BtfInfo> {
    let fd = fd.as_fd();
    // Module names are at most 56 bytes (MODULE_NAME_LEN).
    let mut name = [0u8; 128];
    // SAFETY: all-zero is a valid bpf_btf_info.
    let mut info: bpf_btf_info = unsafe { std::mem::zeroed() };
    info.name = name.as_mut_ptr() as u64;
    info.name_len = name.len() as u32;
    // SAFETY: `name` points to `name_len` writable bytes; `btf` is null with size 0.
    unsafe { info_into(fd, &mut info) }?;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok(BtfInfo {
        id: info.id,
        name: String::from_utf8_lossy(&name[..end]).into_owned(),
        size: info.btf_size,
        kernel: info.kernel_btf != 0,
    })
}

/// A BTF object's raw data (header, types, strings), as the kernel holds it.
pub fn btf_data(fd: impl AsFd) -> Result<Vec<u8>> {
    let fd = fd.as_fd();
    let first: bpf_btf_info = info(fd)?;
    let mut data = vec![0u8; first.btf_size as usize];
    if data.is_empty() {
        return Ok(data);
    }
    // SAFETY: all-zero is a valid bpf_btf_info.
    let mut info: bpf_btf_info = unsafe { std::mem::zeroed() };
    info.btf = data.as_mut_ptr() as u64;
    info.btf_size = data.len() as u32;
    // SAFETY: `btf` points to `btf_size` writable bytes; no other buffer is named.
    unsafe { info_into(fd, &mut info) }?;
    data.truncate((info.btf_size as usize).min(data.len()));
    Ok(data)
}

/// The kind of a BPF object fd, from its `/proc/self/fd` link target: the name of its
/// anonymous inode (`anon_inode:bpf-map`, `anon_inode:bpf-prog`, `anon_inode:bpf_link`,
/// `anon_inode:btf`).
pub fn kind_of_link_target(target: &str) -> Option<Kind> {
    match target {
        "anon_inode:bpf-map" => Some(Kind::Map),
        "anon_inode:bpf-prog" => Some(Kind::Prog),
        "anon_inode:bpf_link" | "anon_inode:bpf-link" => Some(Kind::Link),
        "anon_inode:btf" => Some(Kind::Btf),
        _ => None,
    }
}

/// What kind of BPF object `fd` is; `None` for anything else.
pub fn fd_kind(fd: impl AsFd) -> Option<Kind> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).ok()?;
    kind_of_link_target(link.to_str()?)
}

/// The kernel's id of the BPF object behind `fd`, of kind `kind`.
pub fn fd_id(fd: impl AsFd, kind: Kind) -> Result<u32> {
    let fd = fd.as_fd();
    Ok(match kind {
        Kind::Map => info::<bpf_map_info>(fd)?.id,
        Kind::Prog => info::<bpf_prog_info>(fd)?.id,
        Kind::Link => info::<bpf_link_info>(fd)?.id,
        Kind::Btf => info::<bpf_btf_info>(fd)?.id,
    })
}
