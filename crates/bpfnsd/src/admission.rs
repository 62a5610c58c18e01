//! Who may open another connection: counts per tenant (a top-level namespace with everything
//! below it), per uid within a tenant, and in all, a separate allowance for host
//! administrators, a share no other tenant can take, and a reserve of file descriptors.
//!
//! bpfnsd holds two fds per connection (the socket and the peer's pidfd); its threads do not
//! grow with connections (an event loop serves them, [`crate::server`]). Without bounds, any
//! local user could open connections until bpfnsd has no fd left for anyone, its own record
//! collection and supervisor included. Each connection is identified before any of its bytes
//! is read, and refused — with an error frame naming the limit and its setting — when its
//! caller is over a limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bpfns_model::NsId;

use crate::config::Limits;

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    Admin,
    Total,
    Uid,
    Namespace,
    Fds,
}

/// A refused connection: which limit, and the message sent to the caller.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub limit: Limit,
    pub message: String,
}

/// How often a refusal of one kind is logged (the first one at once).
const LOG_EVERY: Duration = Duration::from_secs(10);
/// How long a count of open fds is reused (counting walks `/proc/self/fd`).
const FD_COUNT_TTL: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Counts {
    admin: u32,
    others: u32,
    /// Per (tenant, uid): a uid's connections in one tenant never count against another's.
    per_uid: HashMap<(NsId, u32), u32>,
    /// Per tenant (its top-level namespace; the root for callers outside namespaces).
    per_ns: HashMap<NsId, u32>,
}

struct FdCount {
    at: Instant,
    open: u64,
    /// Connections accepted since `open` was counted (two fds each).
    since: u64,
}

/// The connection limits in force. Shared by the accepting thread and the connections'
/// [`Ticket`]s.
pub struct Admission {
    limits: Limits,
    /// RLIMIT_NOFILE's soft limit when bpfnsd started.
    fd_limit: u64,
    counts: Mutex<Counts>,
    fds: Mutex<FdCount>,
    refused: AtomicU64,
    idle_closed: AtomicU64,
    /// Per limit: when it was last logged, and refusals since.
    log: Mutex<HashMap<Limit, (Instant, u64)>>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("limits", &self.limits)
            .field("fd_limit", &self.fd_limit)
            .finish_non_exhaustive()
    }
}

/// An admitted connection; its counts are released when it drops.
#[derive(Debug)]
pub struct Ticket {
    adm: Arc<Admission>,
    class: Class,
}

#[derive(Debug, Clone, Copy)]
enum Class {
    Admin,
    Other { uid: u32, tenant: NsId },
}

impl Admission {
    pub fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(Self {
            limits: limits.clone(),
            fd_limit: bpfns_sys::process::nofile_limit(),
            counts: Mutex::default(),
            fds: Mutex::new(FdCount {
                at: Instant::now() - FD_COUNT_TTL * 2,
                open: 0,
                since: 0,
            }),
            refused: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
            log: Mutex::default(),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Admit a connection of a caller (`admin`: a host administrator in the root namespace)
    /// of `tenant` (its top-level namespace, see `Registry::tenant_of`) or say which limit
    /// refuses it. `ns_name` names the tenant for the message.
    pub fn admit(
        self: &Arc<Self>,
        admin: bool,
        uid: u32,
        tenant: NsId,
        ns_name: impl FnOnce() -> String,
    ) -> Result<Ticket, Refusal> {
        let l = &self.limits;
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if admin {
            if c.admin >= l.max_admin_connections {
                return Err(Refusal {
                    limit: Limit::Admin,
                    message: format!(
                        "bpfnsd already serves {} connections of host administrators, its \
                         limit (max_admin_connections in [limits] of bpfnsd.toml); close idle \
                         ones or raise the limit",
                        c.admin
                    ),
                });
            }
            c.admin += 1;
            self.note_accept();
            return Ok(Ticket {
                adm: Arc::clone(self),
                class: Class::Admin,
            });
        }
        let from_uid = c.per_uid.get(&(tenant, uid)).copied().unwrap_or(0);
        let from_ns = c.per_ns.get(&tenant).copied().unwrap_or(0);
        let refuse = |limit, message| Err(Refusal { limit, message });
        if from_uid >= l.max_connections_per_uid {
            return refuse(
                Limit::Uid,
                format!(
                    "uid {uid} already has {from_uid} connections to bpfnsd from {}, its \
                     limit (max_connections_per_uid in [limits] of bpfnsd.toml); close idle \
                     connections, or ask the administrator to raise the limit",
                    ns_name()
                ),
            );
        }
        if from_ns >= l.max_connections_per_namespace {
            return refuse(
                Limit::Namespace,
                format!(
                    "namespace {} (with the namespaces below it) already has {from_ns} \
                     connections to bpfnsd, its limit (max_connections_per_namespace in \
                     [limits] of bpfnsd.toml); close idle connections, or ask the \
                     administrator to raise the limit",
                    ns_name()
                ),
            );
        }
        // Every tenant keeps a share of its own: below it, the total does not refuse it.
        if c.others >= l.max_connections && from_ns >= l.min_connections_per_namespace {
            return refuse(
                Limit::Total,
                format!(
                    "bpfnsd already serves {} connections, its limit for callers other than \
                     host administrators (max_connections in [limits] of bpfnsd.toml); try \
                     again later",
                    c.others
                ),
            );
        }
        let left = self.fds_left();
        if left < l.fd_reserve {
            return refuse(
                Limit::Fds,
                format!(
                    "bpfnsd has only {left} file descriptors left of its {} (RLIMIT_NOFILE) \
                     and keeps {} for its own work (fd_reserve in [limits] of bpfnsd.toml); \
                     try again later",
                    self.fd_limit, l.fd_reserve
                ),
            );
        }
        c.others += 1;
        *c.per_uid.entry((tenant, uid)).or_default() += 1;
        *c.per_ns.entry(tenant).or_default() += 1;
        self.note_accept();
        Ok(Ticket {
            adm: Arc::clone(self),
            class: Class::Other { uid, tenant },
        })
    }

    /// File descriptors left below the limit (counted at most every 200 ms, plus two for
    /// each connection accepted since: a bound from above on what is in use).
    fn fds_left(&self) -> u64 {
        let mut f = self.fds.lock().unwrap_or_else(|e| e.into_inner());
        if f.at.elapsed() >= FD_COUNT_TTL {
            f.open = open_fds();
            f.since = 0;
            f.at = Instant::now();
        }
        self.fd_limit
            .saturating_sub(f.open)
            .saturating_sub(f.since.saturating_mul(2))
    }

    fn note_accept(&self) {
        let mut f = self.fds.lock().unwrap_or_else(|e| e.into_inner());
        f.since += 1;
    }

    /// Count a refusal and log it: the first of its kind at once, then at most one line per
    /// kind every 10 s, with the number refused meanwhile.
    pub fn note_refusal(&self, r: &Refusal, who: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match log.get_mut(&r.limit) {
            Some((at, n)) if now.duration_since(*at) < LOG_EVERY => *n += 1,
            Some((at, n)) => {
                tracing::warn!(
                    "refused a connection from {who}: {} ({} more of this kind refused in the \
                     last {} s)",
                    r.message,
                    *n,
                    now.duration_since(*at).as_secs()
                );
                *at = now;
                *n = 0;
            }
            None => {
                tracing::warn!("refused a connection from {who}: {}", r.message);
                log.insert(r.limit, (now, 0));
            }
        }
    }

    /// Count a connection closed for idling.
    pub fn note_idle_close(&self) {
        self.idle_closed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counters for `status`.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        vec![
            ("connections_open".into(), u64::from(c.others)),
            ("admin_connections_open".into(), u64::from(c.admin)),
            (
                "connections_refused".into(),
                self.refused.load(Ordering::Relaxed),
            ),
            (
                "connections_closed_idle".into(),
                self.idle_closed.load(Ordering::Relaxed),
            ),
        ]
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.adm.counts.lock().unwrap_or_else(|e| e.into_inner());
        match self.class {
            Class::Admin => c.admin = c.admin.saturating_sub(1),
            Class::Other { uid, tenant } => {
                c.others = c.others.saturating_sub(1);
                decrement(&mut c.per_uid, (tenant, uid));
                decrement(&mut c.per_ns, tenant);
            }
        }
    }
}

/// Count down, forgetting keys at zero (so the maps stay as small as the live callers).
fn decrement<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u32>, k: K) {
    if let Some(n) = m.get_mut(&k) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            m.remove(&k);
        }
    }
}

/// Open fds of this process.
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections: 3,
            max_connections_per_uid: 2,
            max_connections_per_namespace: 2,
            max_admin_connections: 1,
            fd_reserve: 0,
            min_connections_per_namespace: 0,
            ..Limits::default()
        }
    }

    #[test]
    fn each_limit_refuses_and_tickets_give_back() {
        let a = Admission::new(&limits());
        let ns = |n| NsId(n);
        let name = || "/t".to_string();
        let t1 = a.admit(false, 1000, ns(1), name).unwrap();
        let _t2 = a.admit(false, 1000, ns(1), name).unwrap();
        let r = a.admit(false, 1000, ns(1), name).unwrap_err();
        assert_eq!(r.limit, Limit::Uid);
        assert!(
            r.message.contains("max_connections_per_uid"),
            "{}",
            r.message
        );
        // The same uid in another tenant has a budget of its own.
        let _t3 = a.admit(false, 1000, ns(2), name).unwrap();
        let r = a.admit(false, 1002, ns(1), name).unwrap_err();
        assert_eq!(r.limit, Limit::Namespace);
        assert!(r.message.contains("/t"), "{}", r.message);
        let r = a.admit(false, 1002, ns(4), name).unwrap_err();
        assert_eq!(r.limit, Limit::Total);
        // Host administrators count apart: never refused because of the others.
        let admin = a.admit(true, 0, NsId::ROOT, name).unwrap();
        assert_eq!(
            a.admit(true, 0, NsId::ROOT, name).unwrap_err().limit,
            Limit::Admin
        );
        drop(admin);
        let _admin = a.admit(true, 0, NsId::ROOT, name).unwrap();
        // Giving back.
        drop(t1);
        let _t4 = a.admit(false, 1002, ns(4), name).unwrap();
        assert_eq!(
            a.admit(false, 1003, ns(5), name).unwrap_err().limit,
            Limit::Total
        );
        let c: HashMap<String, u64> = a.counters().into_iter().collect();
        assert_eq!(c["connections_open"], 3);
        assert_eq!(c["admin_connections_open"], 1);
    }

    #[test]
    fn every_tenant_keeps_a_share_the_others_cannot_take() {
        let a = Admission::new(&Limits {
            min_connections_per_namespace: 1,
            ..limits()
        });
        let name = || "/t".to_string();
        // Tenant 1 takes what the per-tenant limit allows, tenant 2 the rest of the total.
        let _a = [
            a.admit(false, 1, NsId(1), name).unwrap(),
            a.admit(false, 2, NsId(1), name).unwrap(),
            a.admit(false, 3, NsId(2), name).unwrap(),
        ];
        // The total is reached; tenant 3 still gets its share of one, not more.
        let _t3 = a.admit(false, 4, NsId(3), name).unwrap();
        assert_eq!(
            a.admit(false, 4, NsId(3), name).unwrap_err().limit,
            Limit::Total
        );
    }

    #[test]
    fn the_fd_reserve_refuses_all_but_administrators() {
        let a = Admission::new(&Limits {
            fd_reserve: u64::MAX,
            ..Limits::default()
        });
        let r = a.admit(false, 1000, NsId(1), String::new).unwrap_err();
        assert_eq!(r.limit, Limit::Fds);
        assert!(r.message.contains("fd_reserve"), "{}", r.message);
        a.admit(true, 0, NsId::ROOT, String::new).unwrap();
    }
}
