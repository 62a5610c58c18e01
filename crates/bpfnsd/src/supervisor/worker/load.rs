//! `BPF_PROG_LOAD` for members of namespaces whose policy denies tracing, made by bpfnsd
//! itself from its own copy of the request.
//!
//! Letting the kernel run a member's load (`CONTINUE`) would have it re-read the attr and
//! judge it with the member's credentials: a racing thread could change the program type
//! after the supervisor looked at it, and a member owning the user namespace of a BPF token
//! has `CAP_PERFMON` there without holding any capability (the owner rule of
//! `ns_capable`), which gives every program type `bpf_probe_read_kernel`. So the supervisor
//! reads the attr once, then everything it points to, checks the program type on that copy,
//! replaces every file descriptor the request names by a copy of its own, and loads with
//! credentials that can never carry perfmon power: capabilities of the initial user namespace
//! limited to `CAP_BPF`, `CAP_NET_ADMIN` (and `CAP_SYSLOG`), and an effective uid that owns no
//! user namespace; never with a token. The program is recorded as the caller's namespace's
//! (within its quota) before its fd is injected.
//!
//! Every pointer in the attr bpfnsd passes is to a buffer of its own, as long as what the
//! kernel reads from it (the fd_array, which the kernel indexes on its own, between
//! inaccessible pages): a number or address of the caller's never reaches the kernel as one of
//! bpfnsd's.

use std::collections::HashMap;

use bpfns_sys::mem::GuardedBuf;

use super::*;
use crate::supervisor::attr::{
    fd_array_len, fd_array_used, insn_fds, load_caps, load_fd_set, load_sizes, load_way,
    rewrite_fd_array, rewrite_insns, signature_refusal, uses_prog_btf, LoadRefusal, LoadWay,
    ProgLoadReq, TokenInfo, ATTR_SIZE, LOAD_COPY_MAX, LOAD_FDS_MAX, LOAD_TOKEN_FLAG, PROG_LOAD_END,
};

/// The effective uid of a load made for a member: `(uid_t)-2`, which no account uses, so that
/// it owns no user namespace (the owner of a user namespace holds every capability in it).
const LOAD_UID: u32 = 0xFFFF_FFFE;

/// The license the kernel reads: at most 127 bytes (`char license[128]`).
const LICENSE_MAX: usize = 127;

/// Everything one load needs, read from the caller before the validity check.
pub(super) struct LoadPrep {
    /// The attr to pass: the caller's, with bpfnsd's fds; pointers are set at the call.
    attr: Attr,
    insns: Vec<u8>,
    /// With its NUL; empty when the caller passed none.
    license: Vec<u8>,
    func_info: Vec<u8>,
    line_info: Vec<u8>,
    core_relos: Vec<u8>,
    signature: Vec<u8>,
    fd_array: Option<GuardedBuf>,
    log: Vec<u8>,
    /// bpfnsd's copies of the caller's fds, open across the call.
    _copies: Vec<OwnedFd>,
    netns: Option<OwnedFd>,
    caps: C,
    /// The caller's token did delegate this load.
    token: bool,
}

impl Worker {
    /// Read a `BPF_PROG_LOAD` the supervisor will make itself: `None` when it will not (a
    /// root-namespace caller, a namespace that allows tracing, a refused program type), which
    /// [`Worker::prog_load`] decides again from the namespace found after the validity check.
    pub(super) fn prepare_load(
        &self,
        call: &Call,
        r: &ProgLoadReq,
    ) -> Result<Option<Box<LoadPrep>>, Errno> {
        let Ok(ns) = self.view.namespace_of(call.pidfd.as_fd()) else {
            return Ok(None);
        };
        let allows = self.view.allows_tracing(ns).unwrap_or(false);
        if load_way(ns.is_root(), allows, r.prog_type) != LoadWay::Here {
            return Ok(None);
        }
        let tid = call.tid;
        // What follows the attr bpfnsd knows must be zero: a kernel that knew more fields
        // would read them, bpfnsd cannot pass them on (E2BIG, as an older kernel answers).
        if call.attr_size > ATTR_SIZE {
            let mut tail = vec![0u8; call.attr_size - ATTR_SIZE];
            mem::read_exact(tid, call.attr_ptr.wrapping_add(ATTR_SIZE as u64), &mut tail)?;
            if tail.iter().any(|&b| b != 0) {
                return Err(Errno::TOOBIG);
            }
        }
        let sizes = load_sizes(r)?;
        let read = |ptr: u64, n: usize| -> Result<Vec<u8>, Errno> {
            let mut v = vec![0u8; n];
            if n > 0 {
                mem::read_exact_large(tid, ptr, &mut v)?;
            }
            Ok(v)
        };
        let mut insns = read(r.insns, sizes.insns)?;
        let fds = insn_fds(&insns)?;
        if let Some(refusal) = signature_refusal(r, &fds) {
            self.log_refusal(call, &ns.to_string(), r.prog_type, &refusal);
            return Err(Errno::PERM);
        }
        let license = if r.license == 0 {
            Vec::new()
        } else {
            let mut l = mem::read_cstring_upto(tid, r.license, LICENSE_MAX)?;
            l.push(0);
            l
        };
        let func_info = read(r.func_info, sizes.func_info)?;
        let line_info = read(r.line_info, sizes.line_info)?;
        let core_relos = read(r.core_relos, sizes.core_relos)?;
        let signature = read(r.signature, sizes.signature)?;
        let arr_len = fd_array_len(r, &fds)?;
        if sizes.total() + arr_len as u64 * 4 > LOAD_COPY_MAX {
            return Err(Errno::TOOBIG);
        }
        let mut fd_array = if r.fd_array == 0 {
            None
        } else {
            let mut g = GuardedBuf::new(arr_len * 4, 0xff)?;
            if arr_len > 0 {
                mem::read_exact_large(tid, r.fd_array, g.as_mut_slice())?;
            }
            Some(g)
        };
        let used = fd_array_used(r, &fds, arr_len);
        let wanted = {
            let arr: &[u8] = match fd_array.as_mut() {
                Some(g) => g.as_mut_slice(),
                None => &[],
            };
            load_fd_set(r, &insns, &fds, arr, &used)
        };
        if wanted.len() > LOAD_FDS_MAX {
            return Err(Errno::TOOBIG);
        }
        let mut copies: HashMap<i32, OwnedFd> = HashMap::new();
        for fd in wanted {
            if let Some(copy) = self.fetch_fd(call, fd as u32)? {
                copies.insert(fd, copy);
            }
        }
        // A caller fd becomes bpfnsd's copy of it, or a number no process has; a negative
        // number stays what it is (it names no fd anywhere).
        let tr = |v: u32| -> u32 {
            match attr::as_fd(v) {
                None => v,
                Some(fd) => copies.get(&fd).map_or(NO_FD, |c| c.as_raw_fd() as u32),
            }
        };
        rewrite_insns(&mut insns, &fds, &tr);
        if let Some(g) = fd_array.as_mut() {
            rewrite_fd_array(g.as_mut_slice(), &used, &tr);
        }
        let token = if r.with_token() {
            let copy = attr::as_fd(r.prog_token_fd)
                .and_then(|fd| copies.get(&fd))
                .ok_or(Errno::BADF)?;
            // bpf_token_get_from_fd: EINVAL for a file that is not a token.
            token_info(copy.as_fd())
                .ok_or(Errno::INVAL)?
                .allows_load(r.prog_type, r.expected_attach_type)
        } else {
            false
        };
        let caps = load_caps(self.borrowed_caps(call), token, r.prog_type);
        let netns = if r.prog_ifindex != 0 {
            if self.home.is_none() {
                return Err(Errno::PERM);
            }
            Some(self.caller_netns(call)?)
        } else {
            None
        };
        // Every field, also those past the caller's size (zeros there, as the kernel pads its
        // copy): a pointer of bpfnsd's cut short at the caller's size would name other memory
        // of bpfnsd.
        let mut a = call.attr.widened(PROG_LOAD_END);
        a.set_u32(
            off::L_PROG_BTF_FD,
            if uses_prog_btf(r) {
                tr(r.prog_btf_fd)
            } else {
                0
            },
        );
        if r.attach_prog_fd != 0 {
            a.set_u32(off::L_ATTACH_PROG_FD, tr(r.attach_prog_fd));
        }
        if r.with_token() {
            // Loaded without it, with what it delegates (above).
            a.set_u32(off::L_PROG_FLAGS, r.prog_flags & !LOAD_TOKEN_FLAG);
            a.set_u32(off::L_PROG_TOKEN_FD, 0);
        } else if r.prog_token_fd != 0 {
            a.set_u32(off::L_PROG_TOKEN_FD, tr(r.prog_token_fd));
        }
        if sizes.log > 0 {
            a.set_u32(off::L_LOG_SIZE, sizes.log as u32);
        }
        let copies: Vec<OwnedFd> = copies.into_values().collect();
        Ok(Some(Box::new(LoadPrep {
            attr: a,
            insns,
            license,
            func_info,
            line_info,
            core_relos,
            signature,
            fd_array,
            log: vec![0u8; sizes.log],
            _copies: copies,
            netns,
            caps,
            token,
        })))
    }

    fn log_refusal(&self, call: &Call, ns: &str, prog_type: u32, r: &LoadRefusal) {
        tracing::warn!(
            tid = call.tid,
            namespace = %ns,
            prog_type,
            "refused BPF_PROG_LOAD: {}; fix: {}",
            r.reason(),
            r.fix()
        );
    }

    /// Answer a `BPF_PROG_LOAD` of a task of namespace `ns`.
    pub(super) fn prog_load(
        &mut self,
        call: &Call,
        ns: NsId,
        r: ProgLoadReq,
        prep: Option<Box<LoadPrep>>,
    ) -> Outcome {
        let allows = if ns.is_root() {
            false
        } else {
            match self.view.allows_tracing(ns) {
                Ok(a) => a,
                Err(e) => return self.view_failed("the namespace's policy", e),
            }
        };
        match load_way(ns.is_root(), allows, r.prog_type) {
            // The kernel's rules with the caller's credentials, which cannot change while it
            // waits. A racer that makes it a syscall program meanwhile is stopped by the
            // kernel side, which quarantines the program.
            LoadWay::Continue => Outcome::Respond(Response::Continue),
            LoadWay::Refuse(refusal) => {
                self.log_refusal(call, &ns.to_string(), r.prog_type, &refusal);
                err(Errno::PERM)
            }
            LoadWay::Here => match prep {
                Some(p) => self.load_here(call, ns, &r, *p),
                // Read for another decision (the policy changed meanwhile): ask again.
                None => err(Errno::AGAIN),
            },
        }
    }

    fn load_here(&mut self, call: &Call, ns: NsId, r: &ProgLoadReq, mut p: LoadPrep) -> Outcome {
        match self.view.reserve_record(ns) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                tracing::warn!(
                    tid = call.tid,
                    namespace = %ns,
                    prog_type = r.prog_type,
                    "refused BPF_PROG_LOAD: {why}; fix: close objects the namespace no longer \
                     needs, or give it a larger limit (bpfns ns create --max-objects N)"
                );
                return err(Errno::PERM);
            }
            Err(e) => return self.view_failed("reserving an ownership record", e),
        }
        let loaded = self.load_call(&mut p);
        let release = |w: &Worker| {
            if let Err(e) = w.view.release_record(ns) {
                tracing::warn!("supervisor: giving back an ownership record: {e}");
            }
        };
        // The caller may have gone while the verifier ran: write nothing then.
        if !matches!(self.listener.id_valid(call.id), Ok(true)) {
            release(self);
            return Outcome::Abandoned;
        }
        let fd = match loaded {
            Ok(fd) => fd,
            Err(e) => {
                release(self);
                // The log and its size are the caller's answer too.
                if let Err(w) = self.write_back_log(call, r, &p) {
                    return err(w);
                }
                return err(e);
            }
        };
        if let Err(e) = self.write_back_log(call, r, &p) {
            release(self);
            return err(e);
        }
        let Some(id) = prog_id_of(fd.as_fd()) else {
            release(self);
            return err(Errno::PERM);
        };
        // Recorded before the member holds it: the kernel side and every later look find it
        // the namespace's (a new program's id has no record).
        match self.view.record_program(ns, id) {
            Ok(true) => {}
            Ok(false) => {
                release(self);
                tracing::error!(
                    namespace = %ns,
                    id,
                    "supervisor: a program just loaded already has an ownership record"
                );
                return err(Errno::PERM);
            }
            Err(e) => {
                release(self);
                return self.view_failed("recording a program's owner", e);
            }
        }
        tracing::debug!(
            tid = call.tid,
            namespace = %ns,
            prog_type = r.prog_type,
            id,
            token = p.token,
            "loaded a program for a member"
        );
        self.inject(call.id, fd)
    }

    /// The call itself: bpfnsd's buffers in the attr, the caller's network namespace where it
    /// names an interface, the load credentials (see the module doc), then back.
    fn load_call(&self, p: &mut LoadPrep) -> Result<OwnedFd, Errno> {
        let ptr = |v: &[u8]| -> u64 {
            if v.is_empty() {
                0
            } else {
                v.as_ptr() as u64
            }
        };
        let a = &mut p.attr;
        // The instructions' pointer stays set when the count is 0 (the kernel answers E2BIG
        // before reading), as the caller's was.
        a.set_u64(off::L_INSNS, p.insns.as_ptr() as u64);
        a.set_u64(off::L_LICENSE, ptr(&p.license));
        a.set_u64(off::L_FUNC_INFO, ptr(&p.func_info));
        a.set_u64(off::L_LINE_INFO, ptr(&p.line_info));
        a.set_u64(off::L_CORE_RELOS, ptr(&p.core_relos));
        a.set_u64(off::L_SIGNATURE, ptr(&p.signature));
        a.set_u64(off::L_FD_ARRAY, p.fd_array.as_ref().map_or(0, |g| g.addr()));
        a.set_u64(
            off::L_LOG_BUF,
            if p.log.is_empty() {
                0
            } else {
                p.log.as_mut_ptr() as u64
            },
        );
        let Some(home) = self.home.as_ref() else {
            return Err(Errno::PERM);
        };
        if let Some(n) = &p.netns {
            if let Err(e) = thread::enter_net_ns(n) {
                tracing::warn!("supervisor: {e}");
                return Err(Errno::PERM);
            }
        }
        let own_euid = thread::euid();
        let r = match thread::set_euid(LOAD_UID) {
            Ok(()) => {
                let mut sets = self.sets;
                sets.effective = p.caps & sets.permitted;
                let r = match caps::set_current_thread(sets) {
                    Ok(()) => rawbpf::sys_bpf_fd(attr::PROG_LOAD, p.attr.supplied_mut()),
                    Err(e) => {
                        tracing::warn!("supervisor: {e}");
                        Err(Errno::PERM)
                    }
                };
                // Back to uid 0 makes the effective set the permitted one: set it again.
                if thread::set_euid(own_euid).is_err()
                    || thread::set_fsuid(home.fsuid).is_err()
                    || caps::set_current_thread(self.sets).is_err()
                {
                    self.poisoned.set(true);
                }
                r
            }
            Err(e) => {
                tracing::warn!("supervisor: {e}");
                Err(Errno::PERM)
            }
        };
        if p.netns.is_some() && thread::enter_net_ns(&home.netns).is_err() {
            self.poisoned.set(true);
        }
        r
    }

    /// The verifier's log and `log_true_size`, as the kernel would have written them to the
    /// caller: the log up to its NUL where the kernel wrote one, the size where the caller's
    /// attr has room for it.
    fn write_back_log(&self, call: &Call, r: &ProgLoadReq, p: &LoadPrep) -> Result<(), Errno> {
        let true_size = p.attr.u32_at(off::L_LOG_TRUE_SIZE);
        if !p.log.is_empty() && (true_size > 0 || p.log[0] != 0) {
            let end = p
                .log
                .iter()
                .position(|&b| b == 0)
                .map_or(p.log.len(), |n| n + 1);
            mem::write_all_large(call.tid, r.log_buf, &p.log[..end])?;
        }
        if call.attr.len >= off::L_LOG_TRUE_SIZE + 4 {
            mem::write_all(
                call.tid,
                field(call, off::L_LOG_TRUE_SIZE),
                &true_size.to_ne_bytes(),
            )?;
        }
        Ok(())
    }
}

/// What the BPF token behind `fd` delegates: `BPF_OBJ_GET_INFO_BY_FD` where the kernel has it,
/// else its fdinfo (every kernel with tokens). `None` if it is not a token.
fn token_info(fd: BorrowedFd<'_>) -> Option<TokenInfo> {
    // The fdinfo says whether it is a token at all (BPF_OBJ_GET_INFO_BY_FD answers for maps,
    // programs and links too, with other structs).
    let text =
        std::fs::read_to_string(format!("/proc/thread-self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    let from_fdinfo = TokenInfo::from_fdinfo(&text)?;
    Some(
        match bpfns_sys::bpf::info::<bpfns_sys::bpf::bpf_token_info>(fd) {
            Ok(i) => TokenInfo {
                cmds: i.allowed_cmds,
                maps: i.allowed_maps,
                progs: i.allowed_progs,
                attachs: i.allowed_attachs,
            },
            Err(_) => from_fdinfo,
        },
    )
}
