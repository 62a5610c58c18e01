//! The supervisor thread's loop: receive a notification, read the caller ([`caller`]), check
//! the notification is still valid, answer ([`answer`], with the thread's own kernel calls in
//! [`kernel`]), respond.

mod answer;
mod caller;
mod kernel;

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use bpfns_sys::seccomp::{AddFd, InFlightMap, Listener, Notification, Response};
use bpfns_sys::{fds, Errno};

use self::answer::{Answer, Env, IdCache};
use self::caller::{Call, Caller, OwnNs, Pidfds, ProcCaller};
use self::kernel::Home;
use super::attr::{self, Command};
use super::filter::{AUDIT_ARCH_X86_64, NR_BPF, NR_IOCTL, PERF_EVENT_IOC_QUERY_BPF};
use super::{Counters, Options, ReplyMode, View};
use crate::creds;

enum Outcome {
    /// Answer with this.
    Respond(Response),
    /// Already answered (an fd was injected with `ADDFD | SEND`).
    Injected,
    /// The caller gave up (the notification is no longer valid): nothing to answer.
    Abandoned,
}

/// What a failed namespace lookup is logged as.
const CALLER_NS: &str = "namespace of a caller";

fn err(e: Errno) -> Outcome {
    Outcome::Respond(Response::Error(e))
}

struct Worker {
    listener: Listener,
    view: Arc<dyn View>,
    opts: Options,
    counters: Arc<Counters>,
    ids: RefCell<IdCache>,
    /// What the thread comes back to after acting as a caller.
    home: Home,
    pidfds: Pidfds,
    own_ns: OwnNs,
    /// The in-flight record mapped: a store per notification instead of a `pwrite`.
    in_flight_map: Option<InFlightMap>,
}

pub(super) fn run(
    listener: Listener,
    view: Arc<dyn View>,
    opts: Options,
    counters: Arc<Counters>,
    stop: UnixStream,
) {
    if let Some(cpu) = opts.pin_cpu {
        if let Err(e) = bpfns_sys::process::pin_to_cpu(cpu) {
            tracing::warn!("supervisor: cannot pin to CPU {cpu}: {e}");
        }
    }
    let home = match Home::set_up() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("supervisor: cannot reduce capabilities ({e}); refusing to serve");
            return;
        }
    };
    if opts.sync_wakeup {
        if let Err(e) = listener.set_sync_wakeup() {
            tracing::debug!("supervisor: no synchronous wake-up ({e})");
        }
    }
    let mut w = Worker {
        listener,
        view,
        ids: RefCell::new(IdCache::new(opts.cache_ttl)),
        opts,
        counters,
        home,
        pidfds: Pidfds::default(),
        own_ns: OwnNs::of_current_thread(),
        in_flight_map: None,
    };
    if let Some(f) = &w.opts.in_flight {
        match f.map() {
            Ok(m) => w.in_flight_map = Some(m),
            Err(e) => tracing::debug!("supervisor: in-flight record written per call ({e})"),
        }
    }
    w.serve(stop);
    tracing::debug!(label = %w.opts.label, "supervisor stops");
}

impl Worker {
    fn serve(&mut self, stop: UnixStream) {
        loop {
            if creds::poisoned() {
                tracing::error!("supervisor: could not restore its own context; stopping");
                return;
            }
            let ready = match fds::poll_any(&[self.listener.as_fd(), stop.as_fd()], None) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!("supervisor: poll: {e}");
                    return;
                }
            };
            if ready[1].readable || ready[1].hung_up {
                return;
            }
            if !ready[0].readable {
                if ready[0].hung_up {
                    // No task is left under the filter.
                    return;
                }
                continue;
            }
            let n = match self.listener.recv() {
                Ok(n) => n,
                // The caller went away between poll and recv.
                Err(e) if e.errno == Errno::NOENT || e.errno == Errno::INTR => continue,
                Err(e) => {
                    tracing::error!("supervisor: {e}");
                    return;
                }
            };
            if let Some(m) = &self.in_flight_map {
                m.record(n.id);
            } else if let Some(f) = &self.opts.in_flight {
                // Best effort: a relay that sealed its memfd against writes only loses the
                // ability to answer for us after a crash.
                let _ = f.record(n.id);
            }
            let started = Instant::now();
            self.serve_one(&n);
            Counters::add(
                &self.counters.busy_ns,
                u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            );
        }
    }

    fn serve_one(&mut self, n: &Notification) {
        Counters::bump(&self.counters.notifications);
        let outcome = match catch_unwind(AssertUnwindSafe(|| self.handle(n))) {
            Ok(o) => o,
            Err(_) => {
                tracing::error!("supervisor: panic while handling a notification");
                Counters::bump(&self.counters.internal);
                err(Errno::PERM)
            }
        };
        match outcome {
            Outcome::Injected => Counters::bump(&self.counters.injected),
            Outcome::Abandoned => Counters::bump(&self.counters.abandoned),
            Outcome::Respond(r) => match self.listener.respond(n.id, r) {
                Ok(()) => match r {
                    Response::Error(_) => Counters::bump(&self.counters.errors),
                    _ => Counters::bump(&self.counters.succeeded),
                },
                Err(e) if e.errno == Errno::NOENT => Counters::bump(&self.counters.abandoned),
                Err(e) => tracing::warn!("supervisor: answering: {e}"),
            },
        }
    }

    /// Read the caller of `n` (its pidfd cached unless `fresh`), and answer with `answer`;
    /// the pidfd is kept for its next call.
    fn with_caller(
        &mut self,
        n: &Notification,
        fresh: bool,
        answer: impl FnOnce(&Self, &mut ProcCaller<'_>, bool) -> (Outcome, bool),
    ) -> Outcome {
        let tid = n.pid as i32;
        if tid <= 0 {
            // Not visible in our pid namespace: we cannot act for it.
            return err(Errno::PERM);
        }
        let (pidfd, cached) = match self.pidfds.take(tid, fresh) {
            Ok(p) => p,
            Err(e) => return self.abandoned_or(n.id, err(e)),
        };
        let mut caller = match ProcCaller::new(n, pidfd, &self.listener, self.own_ns) {
            Ok(c) => c,
            Err((_, e)) => return self.abandoned_or(n.id, err(e)),
        };
        let (out, keep) = answer(self, &mut caller, cached);
        if keep {
            self.pidfds.keep(tid, caller.pidfd);
        }
        out
    }

    fn handle(&mut self, n: &Notification) -> Outcome {
        if n.arch == AUDIT_ARCH_X86_64
            && n.nr as u32 == NR_IOCTL
            && n.args[1] as u32 == PERF_EVENT_IOC_QUERY_BPF
        {
            return self.with_caller(n, true, |w, c, _| w.perf_query(n, c));
        }
        if n.arch != AUDIT_ARCH_X86_64 || n.nr as u32 != NR_BPF {
            return err(Errno::NOSYS);
        }
        let Some(cmd) = Command::from_raw(n.args[0] as u32) else {
            return err(Errno::NOSYS);
        };
        // Commands that use the pidfd beyond the namespace lookup get a fresh one.
        let fresh = matches!(
            cmd,
            Command::ObjGet
                | Command::ProgQuery
                | Command::ProgLoad
                | Command::ProgAttach
                | Command::ProgDetach
                | Command::LinkCreate
                | Command::LinkUpdate
                | Command::LinkDetach
        );
        self.with_caller(n, fresh, |w, c, cached| {
            let args = [n.args[0], n.args[1], n.args[2]];
            match Call::read(cmd, args, c) {
                Ok(call) => (w.bpf(n, &call, c, cached), true),
                Err(e) => (w.abandoned_or(n.id, err(e)), false),
            }
        })
    }

    /// A trapped bpf() call, read as `call`.
    fn bpf(
        &self,
        n: &Notification,
        call: &Call,
        caller: &mut ProcCaller<'_>,
        cached: bool,
    ) -> Outcome {
        let ops = self.home.ops();
        let prepared = answer::request(call)
            .and_then(|req| Ok((answer::prepare(call, &req, caller, &*self.view, &ops)?, req)));
        let (prep, req) = match prepared {
            Ok(p) => p,
            Err(e) => return self.abandoned_or(n.id, err(e)),
        };
        // Everything read from the caller is now in hand; from here on, act only on it.
        if !self.still_valid(n.id) {
            return Outcome::Abandoned;
        }
        let ns = match self.view.namespace_of(caller.pidfd()) {
            Ok(ns) => ns,
            Err(_) if cached => {
                // A cached pidfd of an earlier task with this id: open the caller's own, and
                // make sure it is still the one waiting.
                if let Err(e) = caller.reopen() {
                    return err(e);
                }
                if !matches!(self.listener.id_valid(n.id), Ok(true)) {
                    return Outcome::Abandoned;
                }
                match self.view.namespace_of(caller.pidfd()) {
                    Ok(ns) => ns,
                    Err(e) => return self.settle(n.id, Answer::view_failed(CALLER_NS, e)),
                }
            }
            Err(e) => return self.settle(n.id, Answer::view_failed(CALLER_NS, e)),
        };
        if ns.is_root() && !answer::root_may(caller, &req) {
            // Not a namespace member after all: the kernel's own rules, which want the
            // capability in the initial user namespace; bpfns grants nothing.
            return err(Errno::PERM);
        }
        // Outside the namespace's policy: refused before anything is done.
        let mut refused_by_policy = None;
        if !ns.is_root() {
            let refusal = match self.view.policy(ns) {
                Ok(policy) => attr::policy_refusal(&policy, call.cmd, &req),
                Err(e) => {
                    return self.settle(n.id, Answer::view_failed("the namespace's policy", e))
                }
            };
            if let Some(r) = refusal {
                let text = attr::policy_refusal_text(ns, r);
                tracing::debug!(tid = call.tid, ns = %ns, cmd = call.cmd.name(), "refused: {text}");
                refused_by_policy = Some(text);
            }
        }
        let target = self
            .opts
            .on_denial
            .as_ref()
            .map(|_| answer::target(&req, &prep));
        let (a, why) = match refused_by_policy {
            Some(text) => (
                Answer::Denied {
                    errno: Errno::PERM,
                    why: "outside the namespace's policy",
                },
                Some(std::borrow::Cow::Owned(text)),
            ),
            None => {
                let env = Env {
                    call,
                    ns,
                    view: &*self.view,
                    caller,
                    ops: &ops,
                };
                let a = answer::answer(&env, req, prep, &mut self.ids.borrow_mut());
                let why = match &a {
                    Answer::Denied { why, .. } => Some(*why),
                    Answer::Error(e) if *e == Errno::PERM => {
                        Some("refused by the supervisor's rules")
                    }
                    _ => None,
                };
                (a, why.map(std::borrow::Cow::Borrowed))
            }
        };
        let out = self.settle(n.id, a);
        if let Outcome::Respond(Response::Error(e)) = out {
            tracing::debug!(
                tid = call.tid,
                ns = %ns,
                cmd = call.cmd.name(),
                errno = e.raw_os_error(),
                "refused"
            );
            // Logged (rate-limited per namespace), published and counted by bpfnsd.
            if let (Some(why), Some(sink), Some((object, path))) =
                (why, &self.opts.on_denial, target)
            {
                (sink.0)(super::Denial {
                    tid: call.tid,
                    ns,
                    command: call.cmd.name(),
                    object,
                    path,
                    errno: e.raw_os_error(),
                    reason: format!("{} ({why})", bpfns_sys::errno::name(e)),
                });
            }
        }
        out
    }

    /// `ioctl(fd, PERF_EVENT_IOC_QUERY_BPF, query)`; and whether to keep the caller's pidfd.
    fn perf_query(&self, n: &Notification, caller: &ProcCaller<'_>) -> (Outcome, bool) {
        let p = match answer::perf_prepare(caller, [n.args[0], n.args[1], n.args[2]]) {
            Ok(p) => p,
            Err(e) => return (self.abandoned_or(n.id, err(e)), false),
        };
        if !matches!(self.listener.id_valid(n.id), Ok(true)) {
            return (Outcome::Abandoned, false);
        }
        let ns = match self.view.namespace_of(caller.pidfd()) {
            Ok(ns) => ns,
            Err(e) => return (self.settle(n.id, Answer::view_failed(CALLER_NS, e)), false),
        };
        let a = answer::perf_query(ns, &*self.view, caller, &self.home.ops(), p);
        (self.settle(n.id, a), true)
    }

    fn still_valid(&self, id: u64) -> bool {
        match self.listener.id_valid(id) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("supervisor: {e}");
                false
            }
        }
    }

    /// An early error: answer it, unless the caller has gone anyway.
    fn abandoned_or(&self, id: u64, o: Outcome) -> Outcome {
        match self.listener.id_valid(id) {
            Ok(false) => Outcome::Abandoned,
            _ => o,
        }
    }

    /// What the loop does with an answer.
    fn settle(&self, id: u64, a: Answer) -> Outcome {
        match a {
            Answer::Error(e) | Answer::Denied { errno: e, .. } => err(e),
            Answer::Value(v) => Outcome::Respond(Response::Value(v)),
            Answer::Continue => Outcome::Respond(Response::Continue),
            Answer::Inject(fd) => self.inject(id, fd),
            Answer::Abandoned => Outcome::Abandoned,
            Answer::Internal { what, error } => {
                tracing::error!("supervisor: {what}: {error}");
                Counters::bump(&self.counters.internal);
                // Fail closed.
                err(Errno::PERM)
            }
        }
    }

    fn inject(&self, id: u64, fd: OwnedFd) -> Outcome {
        // bpf fds are always close-on-exec.
        let send = self.opts.reply == ReplyMode::AddFdSend;
        let opts = AddFd {
            target_fd: None,
            cloexec: true,
            send,
        };
        match self.listener.add_fd(id, fd.as_fd(), opts) {
            Ok(_) if send => Outcome::Injected,
            Ok(newfd) => Outcome::Respond(Response::Value(i64::from(newfd))),
            Err(e) if e.errno == Errno::NOENT => Outcome::Abandoned,
            // EMFILE and the like: the call is still pending; fail it.
            Err(e) => err(e.errno),
        }
    }
}
