//! Fakes of the caller, the view and the supervisor's kernel calls, so that answers are
//! tested without root and without a kernel side.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Mutex;

use bpfns_kernel::QuotaRefusal;
use bpfns_model::{NsId, ObjectKind};
use bpfns_sys::caps::CapabilitySet as C;
use bpfns_sys::Errno;

use super::{Answer, Env, LoadPrep, MapPrep, Ops, Pin, QueryAnswer, QueryTarget};
use crate::supervisor::attr::{off, AttachReq, Attr, Command, HookState, ProgQuery, TokenInfo};
use crate::supervisor::worker::caller::{Call, Caller, CallerFs};
use crate::supervisor::{View, ViewError};

pub fn ns(n: u32) -> NsId {
    NsId(n)
}

fn null() -> OwnedFd {
    std::fs::File::open("/dev/null").expect("/dev/null").into()
}

/// A call of `cmd` with `attr` from a caller with effective capabilities `eff`.
pub fn call(cmd: Command, attr: Attr, eff: C) -> Call {
    Call {
        tid: 4242,
        cmd,
        attr_ptr: 0x1000,
        attr_size: attr.len,
        attr,
        eff,
    }
}

pub fn env<'a>(
    call: &'a Call,
    view: &'a FakeView,
    caller: &'a FakeCaller,
    ops: &'a FakeOps,
) -> Env<'a> {
    Env {
        call,
        ns: view.ns,
        view,
        caller,
        ops,
    }
}

/// `c` answered as the worker answers a trapped call: [`super::request`], [`super::prepare`],
/// then [`super::answer`] (a failure on the way is the answer).
pub fn answer_call(c: &Call, view: &FakeView, mem: &FakeCaller, ops: &FakeOps) -> Answer {
    let req = match super::request(c) {
        Ok(r) => r,
        Err(e) => return Answer::Error(e),
    };
    let prep = match super::prepare(c, &req, mem, view, ops) {
        Ok(p) => p,
        Err(e) => return Answer::Error(e),
    };
    super::answer(
        &env(c, view, mem, ops),
        req,
        prep,
        &mut super::IdCache::new(std::time::Duration::ZERO),
    )
}

/// A caller: memory regions at given addresses (everything else unmapped), fd numbers it
/// holds, its capabilities; dead, every access fails with `ESRCH`.
pub struct FakeCaller {
    regions: Vec<(u64, RefCell<Vec<u8>>)>,
    fds: Vec<u32>,
    eff: C,
    here: bool,
    dead: bool,
    pidfd: OwnedFd,
    /// Its network namespace is another file than the fds it holds (which are all one).
    pub other_netns: bool,
}

impl FakeCaller {
    pub fn new() -> Self {
        FakeCaller {
            regions: Vec::new(),
            fds: Vec::new(),
            eff: C::BPF,
            here: true,
            dead: false,
            pidfd: null(),
            other_netns: false,
        }
    }

    pub fn map(mut self, addr: u64, bytes: Vec<u8>) -> Self {
        self.regions.push((addr, RefCell::new(bytes)));
        self
    }

    pub fn with_fds(mut self, fds: &[u32]) -> Self {
        self.fds.extend_from_slice(fds);
        self
    }

    /// Capabilities `eff`, which count here where `in_initial_userns`.
    pub fn caps(mut self, eff: C, in_initial_userns: bool) -> Self {
        self.eff = eff;
        self.here = in_initial_userns;
        self
    }

    pub fn dead(mut self) -> Self {
        self.dead = true;
        self
    }

    /// The region holding `addr` and how far into it `addr` is.
    fn region(&self, addr: u64) -> Option<(&RefCell<Vec<u8>>, usize)> {
        self.regions.iter().find_map(|(at, r)| {
            let len = r.borrow().len() as u64;
            (addr >= *at && addr < at + len).then(|| (r, (addr - at) as usize))
        })
    }

    /// What is readable from `addr` on (up to the end of its region).
    fn readable(&self, addr: u64) -> Result<Vec<u8>, Errno> {
        if self.dead {
            return Err(Errno::SRCH);
        }
        Ok(self
            .region(addr)
            .map(|(r, o)| r.borrow()[o..].to_vec())
            .unwrap_or_default())
    }

    pub fn bytes(&self, addr: u64, n: usize) -> Vec<u8> {
        let mut v = self.readable(addr).expect("alive");
        v.truncate(n);
        v
    }

    pub fn u32_at(&self, addr: u64) -> u32 {
        let b = self.bytes(addr, 4);
        u32::from_ne_bytes(b.try_into().expect("4 bytes mapped"))
    }
}

impl Caller for FakeCaller {
    fn tid(&self) -> i32 {
        4242
    }

    fn pidfd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.pidfd.as_fd()
    }

    fn caps(&self) -> C {
        self.eff
    }

    fn caps_here(&self) -> C {
        if self.here {
            self.eff
        } else {
            C::empty()
        }
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if buf.is_empty() {
            return Ok(());
        }
        let have = self.readable(addr)?;
        if have.len() < buf.len() {
            return Err(Errno::FAULT);
        }
        buf.copy_from_slice(&have[..buf.len()]);
        Ok(())
    }

    fn read_large(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.read(addr, buf)
    }

    fn read_path(&self, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        let have = self.readable(addr)?;
        let n = have.len().min(max);
        match have[..n].iter().position(|&b| b == 0) {
            Some(end) => Ok(have[..end].to_vec()),
            None if n == max => Err(Errno::NAMETOOLONG),
            None => Err(Errno::FAULT),
        }
    }

    fn read_string(&self, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        let have = self.readable(addr)?;
        let n = have.len().min(max);
        match have[..n].iter().position(|&b| b == 0) {
            Some(end) => Ok(have[..end].to_vec()),
            None if n == max => Ok(have[..n].to_vec()),
            None => Err(Errno::FAULT),
        }
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        if self.dead {
            return Err(Errno::SRCH);
        }
        if data.is_empty() {
            return Ok(());
        }
        let Some((r, o)) = self.region(addr) else {
            return Err(Errno::FAULT);
        };
        let mut r = r.borrow_mut();
        if r.len() - o < data.len() {
            return Err(Errno::FAULT);
        }
        r[o..o + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn write_large(&self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        self.write(addr, data)
    }

    fn fd(&self, fd: u32) -> Result<Option<OwnedFd>, Errno> {
        if self.dead {
            return Err(Errno::SRCH);
        }
        Ok((i32::try_from(fd).is_ok() && self.fds.contains(&fd)).then(null))
    }

    fn net_ns(&self) -> Result<OwnedFd, Errno> {
        if self.dead {
            return Err(Errno::SRCH);
        }
        if self.other_netns {
            return Ok(std::fs::File::open("/proc/self/ns/net")
                .expect("/proc/self/ns/net")
                .into());
        }
        Ok(null())
    }

    fn memory_home(&self) -> Result<bpfns_sys::cgroup::MemoryHome, Errno> {
        if self.dead {
            return Err(Errno::SRCH);
        }
        Ok(bpfns_sys::cgroup::MemoryHome::Unknown)
    }

    fn fs(&self) -> Result<CallerFs, Errno> {
        if self.dead {
            return Err(Errno::SRCH);
        }
        Ok(CallerFs {
            root: null(),
            cwd: null(),
            fsuid: 1000,
            fsgid: 1000,
            groups: Vec::new(),
            caps: C::empty(),
        })
    }

    fn task_fd_query_target(&self, pid: u32) -> Result<u32, Errno> {
        if self.dead {
            return Err(Errno::SRCH);
        }
        Ok(pid)
    }

    fn waiting(&self) -> bool {
        !self.dead
    }
}

/// A view: the namespace of every caller, the ids it may see, its policy and its ownership
/// records.
pub struct FakeView {
    pub ns: NsId,
    visible: HashMap<ObjectKind, Vec<u32>>,
    failing: Option<ViewError>,
    pub allows_tracing: bool,
    /// The namespace's bound cgroup.
    pub cgroup: Option<String>,
    /// `Some(why)`: reserving a record is refused.
    pub quota: Option<QuotaRefusal>,
    pub recorded: Mutex<Vec<u32>>,
    pub reserved: Mutex<i32>,
    /// Whether bpfnsd makes members' maps (no BPF LSM).
    pub makes_maps: bool,
    /// Tasks exempted from the kernel side.
    pub exempted: Mutex<u32>,
}

impl FakeView {
    pub fn new(ns: NsId) -> Self {
        FakeView {
            ns,
            visible: HashMap::new(),
            failing: None,
            allows_tracing: false,
            cgroup: Some("/tenant".into()),
            quota: None,
            recorded: Mutex::new(Vec::new()),
            reserved: Mutex::new(0),
            makes_maps: true,
            exempted: Mutex::new(0),
        }
    }

    pub fn visible(mut self, kind: ObjectKind, ids: &[u32]) -> Self {
        self.visible.entry(kind).or_default().extend_from_slice(ids);
        self
    }

    /// Every question about objects fails with `e`.
    pub fn failing(mut self, e: ViewError) -> Self {
        self.failing = Some(e);
        self
    }

    fn fail(&self) -> Result<(), ViewError> {
        match &self.failing {
            Some(ViewError::Gone) => Err(ViewError::Gone),
            Some(_) => Err(ViewError::NoRecords),
            None => Ok(()),
        }
    }
}

impl View for FakeView {
    fn namespace_of(&self, _pidfd: BorrowedFd<'_>) -> Result<NsId, ViewError> {
        Ok(self.ns)
    }

    fn visible_ids(&self, _viewer: NsId, kind: ObjectKind) -> Result<Vec<u32>, ViewError> {
        self.fail()?;
        let mut v = self.visible.get(&kind).cloned().unwrap_or_default();
        v.sort_unstable();
        Ok(v)
    }

    fn can_see(&self, _viewer: NsId, kind: ObjectKind, id: u32) -> Result<bool, ViewError> {
        self.fail()?;
        Ok(self.visible.get(&kind).is_some_and(|v| v.contains(&id)))
    }

    fn allows_tracing(&self, _ns: NsId) -> Result<bool, ViewError> {
        Ok(self.allows_tracing)
    }

    fn bound_cgroup(&self, _ns: NsId) -> Result<Option<String>, ViewError> {
        Ok(self.cgroup.clone())
    }

    fn reserve_record(
        &self,
        _ns: NsId,
        _kind: ObjectKind,
    ) -> Result<Result<(), QuotaRefusal>, ViewError> {
        if let Some(why) = self.quota {
            return Ok(Err(why));
        }
        *self.reserved.lock().expect("lock") += 1;
        Ok(Ok(()))
    }

    fn release_record(&self, _ns: NsId, _kind: ObjectKind) -> Result<(), ViewError> {
        *self.reserved.lock().expect("lock") -= 1;
        Ok(())
    }

    fn record_new(&self, _ns: NsId, _kind: ObjectKind, id: u32) -> Result<bool, ViewError> {
        self.recorded.lock().expect("lock").push(id);
        Ok(true)
    }

    fn supervises_creations(&self) -> bool {
        self.makes_maps
    }

    fn root_tag(&self) -> Option<(BorrowedFd<'_>, [u8; 8])> {
        *self.exempted.lock().expect("lock") += 1;
        None
    }
}

/// The supervisor's kernel calls, answered from its fields; what was asked is kept.
pub struct FakeOps {
    pub private: bool,
    /// The error of every open (`GET_FD_BY_ID`, `OBJ_GET`).
    pub open_error: Option<Errno>,
    /// What `object_of` finds behind any fd.
    pub pinned: Option<(ObjectKind, u32)>,
    /// What `link_ids_of` finds behind any fd.
    pub link: Option<(u32, u32)>,
    pub query: Result<QueryAnswer, Errno>,
    pub task_fd: Option<(Attr, Vec<u8>)>,
    pub perf_event: bool,
    pub perf: Vec<u32>,
    pub hook: Result<HookState, Errno>,
    pub bpf_result: Result<i64, Errno>,
    /// The answer of a load (and its verifier log).
    pub load_result: Result<(), Errno>,
    pub load_log: &'static [u8],
    pub opened: RefCell<Vec<(u32, u32)>>,
    pub calls: RefCell<Vec<(u32, C, Attr)>>,
    pub loads: RefCell<Vec<C>>,
    /// Maps made: the attr passed and the capabilities.
    pub maps: RefCell<Vec<(Attr, C)>>,
    /// The answer of a map creation.
    pub map_result: Result<(), Errno>,
    /// What `token_info` finds behind any fd.
    pub token: Option<TokenInfo>,
    /// The vmlinux BTF ids of the kfuncs loads may call.
    pub kfuncs: Vec<u32>,
    /// Where every cgroup target lies.
    pub cgroup: bpfns_sys::cgroup::Ancestry,
}

impl Default for FakeOps {
    fn default() -> Self {
        FakeOps {
            private: true,
            open_error: None,
            pinned: Some((ObjectKind::Map, 7)),
            link: None,
            query: Ok(QueryAnswer::default()),
            task_fd: None,
            perf_event: true,
            perf: Vec::new(),
            hook: Ok(HookState::default()),
            bpf_result: Ok(0),
            load_result: Ok(()),
            load_log: b"",
            opened: RefCell::default(),
            calls: RefCell::default(),
            loads: RefCell::default(),
            maps: RefCell::default(),
            map_result: Ok(()),
            token: None,
            kfuncs: Vec::new(),
            cgroup: bpfns_sys::cgroup::Ancestry::Inside,
        }
    }
}

impl FakeOps {
    /// Ids opened by `GET_FD_BY_ID`.
    pub fn opened(&self) -> Vec<u32> {
        self.opened.borrow().iter().map(|(id, _)| *id).collect()
    }

    pub fn last_open_flags(&self) -> Option<u32> {
        self.opened.borrow().last().map(|(_, f)| *f)
    }

    /// bpf() commands made as the caller, with the capabilities.
    pub fn calls(&self) -> Vec<(u32, C)> {
        self.calls
            .borrow()
            .iter()
            .map(|(c, k, _)| (*c, *k))
            .collect()
    }

    /// The fd number at `off` of the last call's attr.
    pub fn last_fd_arg(&self, off: usize) -> Option<u32> {
        self.calls.borrow().last().map(|(_, _, a)| a.u32_at(off))
    }
}

impl Ops for FakeOps {
    fn private_context(&self) -> bool {
        self.private
    }

    fn cgroup_within(
        &self,
        _target: BorrowedFd<'_>,
        _bound: &str,
    ) -> Result<bpfns_sys::cgroup::Ancestry, Errno> {
        Ok(self.cgroup)
    }

    fn open_by_id(&self, _cmd: u32, attr: &mut Attr, _syslog: bool) -> Result<OwnedFd, Errno> {
        if let Some(e) = self.open_error {
            return Err(e);
        }
        self.opened
            .borrow_mut()
            .push((attr.u32_at(0), attr.u32_at(off::OPEN_FLAGS)));
        Ok(null())
    }

    fn open_pin(&self, _pin: &Pin, _file_flags: u32) -> Result<OwnedFd, Errno> {
        match self.open_error {
            Some(e) => Err(e),
            None => Ok(null()),
        }
    }

    fn object_of(&self, _fd: BorrowedFd<'_>) -> Option<(ObjectKind, u32)> {
        self.pinned
    }

    fn link_ids_of(&self, _fd: BorrowedFd<'_>) -> Option<(u32, u32)> {
        self.link
    }

    fn prog_query(
        &self,
        _attr: &Attr,
        _q: &ProgQuery,
        _target: QueryTarget<'_>,
    ) -> Result<QueryAnswer, Errno> {
        self.query.clone()
    }

    fn task_fd_query(&self, _attr: &Attr, _host_pid: u32) -> Result<(Attr, Vec<u8>), Errno> {
        self.task_fd.clone().ok_or(Errno::NOENT)
    }

    fn is_perf_event(&self, _fd: BorrowedFd<'_>) -> bool {
        self.perf_event
    }

    fn perf_query(&self, _fd: BorrowedFd<'_>, _caps: C) -> Result<Vec<u32>, Errno> {
        Ok(self.perf.clone())
    }

    fn in_net_ns(&self, _ns: Option<BorrowedFd<'_>>, f: &mut dyn FnMut() -> Answer) -> Answer {
        f()
    }

    fn query_hook(
        &self,
        _hook: crate::supervisor::attr::Hook,
        _a: &AttachReq,
        _target: Option<BorrowedFd<'_>>,
    ) -> Result<HookState, Errno> {
        self.hook.clone()
    }

    fn bpf_as(&self, caps: C, cmd: u32, attr: &mut Attr) -> Result<i64, Errno> {
        self.calls.borrow_mut().push((cmd, caps, attr.clone()));
        self.bpf_result
    }

    fn bpf_fd_as(&self, caps: C, cmd: u32, attr: &mut Attr) -> Result<OwnedFd, Errno> {
        self.calls.borrow_mut().push((cmd, caps, attr.clone()));
        self.bpf_result.map(|_| null())
    }

    fn load(&self, p: &mut LoadPrep) -> Result<OwnedFd, Errno> {
        self.loads.borrow_mut().push(p.caps);
        let n = self.load_log.len().min(p.log.len());
        p.log[..n].copy_from_slice(&self.load_log[..n]);
        p.attr
            .set_u32(off::L_LOG_TRUE_SIZE, self.load_log.len() as u32);
        self.load_result.map(|()| null())
    }

    fn create_map(
        &self,
        p: &MapPrep,
        _tag: Option<(BorrowedFd<'_>, [u8; 8])>,
    ) -> Result<OwnedFd, Errno> {
        self.maps.borrow_mut().push((p.attr.clone(), p.caps));
        self.map_result.map(|()| null())
    }

    fn token_info(&self, _fd: BorrowedFd<'_>) -> Option<TokenInfo> {
        self.token
    }

    fn kfunc_allowed(&self, btf_id: u32) -> bool {
        self.kfuncs.contains(&btf_id)
    }
}
