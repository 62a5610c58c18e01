//! Prometheus metrics: `GET /metrics` on the address `metrics` in bpfnsd.toml (or
//! `--metrics`), off by default.
//!
//! Per namespace (the values `bpfns ns show` gives, from the same walk): objects by kind,
//! member tasks, ownership records in use and the limit, records per kind (with the limit of
//! the kind where one is set), the memory of its maps (own, and with descendants). For bpfnsd:
//! API requests by operation and outcome with a latency histogram, supervised and kept
//! listeners, namespaces, and every counter `bpfns status` shows, each in a family of its own
//! ([`STATUS_FAMILIES`]: counters as counters, the kernel side's as `bpfns_kernel_*`). The
//! families are listed in docs/protocol.md ("Metrics"). The text is
//! OpenMetrics (what `prometheus-client` writes, which Prometheus scrapes). Everything the
//! endpoint shows is what the host administrator sees: bind it where only the scraper
//! reaches. Members started by `bpfns exec` share the host's network namespace, so a loopback
//! address alone does not keep them out: `metrics_netns` binds it in a network namespace of
//! its own (or a firewall must). At most [`MAX_CONNECTIONS`] at a
//! time, each closed after [`CONNECTION_TIMEOUT`].

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::daemon::Daemon;

/// A request's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    op: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NsLabels {
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NsKindLabels {
    namespace: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    namespace: String,
    command: String,
    layer: String,
}

/// What bpfnsd records as it serves (the rest is read at each scrape).
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Histogram>,
    /// Where the endpoint listens, once bound.
    pub bound: Mutex<Option<SocketAddr>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            // 50 µs to ~13 s.
            requests: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(50e-6, 4.0, 10))
            }),
            bound: Mutex::new(None),
        }
    }
}

impl Metrics {
    /// One API request: its operation (the protocol's name), `ok` or the error code, and
    /// how long it took to answer.
    pub fn observe(&self, op: &str, outcome: &str, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                op: op.to_string(),
                outcome: outcome.to_string(),
            })
            .observe(seconds);
    }
}

fn gauge(v: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    g
}

/// What one scrape shows, read from bpfnsd (apart, so that a test can render any).
pub(crate) struct Snapshot {
    namespaces: Vec<bpfns_proto::NsInfo>,
    /// Namespace, command, layer, count.
    denials: Vec<(String, String, &'static str, u64)>,
    /// Namespace, run time (ns), runs.
    runs: Vec<(String, u64, u64)>,
    status: bpfns_proto::StatusInfo,
}

/// The text of one scrape.
pub fn render(daemon: &Daemon) -> Result<String, String> {
    let snapshot = Snapshot {
        namespaces: daemon.all_ns_infos().map_err(|f| f.message)?,
        denials: daemon.denial_counts(),
        runs: daemon.prog_run_totals().map_err(|f| f.message)?,
        status: daemon.status_info().map_err(|f| f.message)?,
    };
    encode(&snapshot, &daemon.metrics)
}

/// A metric's type, as the families of [`STATUS_FAMILIES`] have it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    /// Only grows, from 0 when what counts it starts (bpfnsd, the keeper, the kernel side when
    /// loaded): `rate()` it.
    Counter,
    Gauge,
}

/// The families the counters of `bpfns status` are exported in: name (a counter's samples
/// add `_total`), type, help. [`place`] says which counter goes where.
const STATUS_FAMILIES: &[(&str, Type, &str)] = &[
    (
        "bpfns_kernel_tasks_stopped",
        Type::Counter,
        "Tasks the kernel side's backstop stopped (SIGKILL), by reason (foreign, prog_type, \
         shared_files, hijack, unrecorded, quota, perfmon)",
    ),
    (
        "bpfns_kernel_lsm_refusals",
        Type::Counter,
        "Calls the BPF LSM layer refused (EPERM, the task lives), by reason",
    ),
    (
        "bpfns_kernel_records_written",
        Type::Counter,
        "Ownership records the kernel side wrote, by layer (backstop: the tracepoints; lsm)",
    ),
    (
        "bpfns_kernel_ownership_table_full",
        Type::Counter,
        "Ownership records the kernel side could not store (its table full): the creator was \
         stopped or refused",
    ),
    (
        "bpfns_kernel_lsm_records_dropped",
        Type::Counter,
        "Objects the BPF LSM layer could not note for its free hook (bpfnsd's collector drops \
         their records instead)",
    ),
    (
        "bpfns_kernel_shared_fd_children_stopped",
        Type::Counter,
        "Children sharing a stopped task's fd table (CLONE_FILES) the backstop stopped too",
    ),
    (
        "bpfns_kernel_fork_tag_failures",
        Type::Counter,
        "New tasks of a namespace the kernel side failed to tag",
    ),
    (
        "bpfns_kernel_tasks_tagged_by_cgroup",
        Type::Counter,
        "Tasks the kernel side tagged by their cgroup (containers)",
    ),
    (
        "bpfns_kernel_quota_notices",
        Type::Counter,
        "Quota notices the kernel side sent bpfnsd (a namespace near or at a limit)",
    ),
    (
        "bpfnsd_records_collected",
        Type::Counter,
        "Ownership records of freed objects bpfnsd's collector removed",
    ),
    (
        "bpfnsd_map_children_killed",
        Type::Counter,
        "Children making a member's map that the watchdog killed for outliving their deadline (stopped)",
    ),
    (
        "bpfnsd_containers_collected",
        Type::Counter,
        "Containers collected (gone, with their namespaces)",
    ),
    (
        "bpfnsd_kernel_events_read",
        Type::Counter,
        "Events bpfnsd read from the kernel side's ring buffers",
    ),
    (
        "bpfnsd_events_subscribers",
        Type::Gauge,
        "Event subscriptions (bpfns events) open",
    ),
    (
        "bpfnsd_events_subscribers_dropped",
        Type::Counter,
        "Event subscribers dropped for not reading their queue",
    ),
    (
        "bpfnsd_events_suppressed",
        Type::Counter,
        "Events left out by the per-namespace rate limit",
    ),
    (
        "bpfnsd_heap_in_use_bytes",
        Type::Gauge,
        "Bytes bpfnsd's own allocations hold (not what its allocator keeps)",
    ),
    (
        "bpfnsd_connections_open",
        Type::Gauge,
        "Connections to bpfnsd's socket open, by class (admin: the host's administrators; \
         other)",
    ),
    (
        "bpfnsd_connections_refused",
        Type::Counter,
        "Connections refused at a connection limit",
    ),
    (
        "bpfnsd_connections_closed_idle",
        Type::Counter,
        "Connections closed for being idle",
    ),
    (
        "bpfnsd_keeper_restarts",
        Type::Counter,
        "Times bpfnsd started the listener keeper again",
    ),
    (
        "bpfnsd_keeper_outages",
        Type::Counter,
        "Times the listener keeper answered members' calls itself because bpfnsd was away \
         (the keeper's count; from 0 when it restarts)",
    ),
    (
        "bpfnsd_keeper_abandoned_answered",
        Type::Counter,
        "Members' calls the keeper answered that bpfnsd had left unanswered",
    ),
    (
        "bpfnsd_keeper_refused_after_grace",
        Type::Counter,
        "Members' calls the keeper refused after its grace period without bpfnsd",
    ),
    (
        "bpfnsd_status_counter",
        Type::Gauge,
        "Counters of bpfns status without a family of their own, by name (none in this \
         version; a newer kernel side's)",
    ),
];

/// Where a counter of `bpfns status` goes.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    /// A family of [`STATUS_FAMILIES`], with a label where the family has one.
    In(&'static str, Option<(&'static str, String)>),
    /// Left out: the sum over a family's label (`tasks_stopped`, `lsm_opens_refused`).
    Sum,
}

fn place(name: &str) -> Place {
    let plain = |f| Place::In(f, None);
    let with = |f, k, v: &str| Place::In(f, Some((k, v.to_string())));
    if let Some(r) = name.strip_prefix("stopped_") {
        return with("bpfns_kernel_tasks_stopped", "reason", r);
    }
    if let Some(r) = name.strip_prefix("refused_") {
        return with("bpfns_kernel_lsm_refusals", "reason", r);
    }
    match name {
        "tasks_stopped" | "lsm_opens_refused" => Place::Sum,
        "ownership_recorded" => with("bpfns_kernel_records_written", "layer", "backstop"),
        "lsm_ownership_recorded" => with("bpfns_kernel_records_written", "layer", "lsm"),
        "ownership_map_full" => plain("bpfns_kernel_ownership_table_full"),
        "lsm_records_dropped" => plain("bpfns_kernel_lsm_records_dropped"),
        "shared_fd_table_children_stopped" => plain("bpfns_kernel_shared_fd_children_stopped"),
        "fork_tag_failures" => plain("bpfns_kernel_fork_tag_failures"),
        "tagged_by_cgroup" => plain("bpfns_kernel_tasks_tagged_by_cgroup"),
        "quota_notices" => plain("bpfns_kernel_quota_notices"),
        "records_collected" => plain("bpfnsd_records_collected"),
        "map_children_killed" => plain("bpfnsd_map_children_killed"),
        "containers_collected" => plain("bpfnsd_containers_collected"),
        "kernel_events_read" => plain("bpfnsd_kernel_events_read"),
        "events_subscribers" => plain("bpfnsd_events_subscribers"),
        "events_subscribers_dropped" => plain("bpfnsd_events_subscribers_dropped"),
        "events_suppressed" => plain("bpfnsd_events_suppressed"),
        "bpfnsd_heap_in_use_bytes" => plain("bpfnsd_heap_in_use_bytes"),
        "connections_open" => with("bpfnsd_connections_open", "class", "other"),
        "admin_connections_open" => with("bpfnsd_connections_open", "class", "admin"),
        "connections_refused" => plain("bpfnsd_connections_refused"),
        "connections_closed_idle" => plain("bpfnsd_connections_closed_idle"),
        "keeper_restarts" => plain("bpfnsd_keeper_restarts"),
        "keeper_outages" => plain("bpfnsd_keeper_outages"),
        "keeper_abandoned_answered" => plain("bpfnsd_keeper_abandoned_answered"),
        "keeper_refused_after_grace" => plain("bpfnsd_keeper_refused_after_grace"),
        other => with("bpfnsd_status_counter", "name", other),
    }
}

type Labels = Vec<(&'static str, String)>;

/// The counters of `status`, each in its family ([`place`]): a family without a label as one
/// plain metric; a family only where `status` has a counter for it (the keeper's need a
/// keeper that answers).
fn register_status(reg: &mut Registry, counters: &[(String, u64)]) {
    let mut values: Vec<Vec<(Labels, u64)>> = vec![Vec::new(); STATUS_FAMILIES.len()];
    for (name, v) in counters {
        let Place::In(family, label) = place(name) else {
            continue;
        };
        if let Some(i) = STATUS_FAMILIES.iter().position(|(f, ..)| *f == family) {
            values[i].push((label.into_iter().collect(), *v));
        }
    }
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for ((name, kind, help), values) in STATUS_FAMILIES.iter().zip(values) {
        match (kind, values.as_slice()) {
            (_, []) => {}
            (Type::Counter, [(l, v)]) if l.is_empty() => {
                let c = Counter::<u64>::default();
                c.inc_by(*v);
                reg.register(*name, *help, c);
            }
            (Type::Gauge, [(l, v)]) if l.is_empty() => reg.register(*name, *help, gauge(*v)),
            (Type::Counter, values) => {
                let f = Family::<Labels, Counter>::default();
                for (l, v) in values {
                    f.get_or_create(l).inc_by(*v);
                }
                reg.register(*name, *help, f);
            }
            (Type::Gauge, values) => {
                let f = Family::<Labels, Gauge>::default();
                for (l, v) in values {
                    f.get_or_create(l).set(int(*v));
                }
                reg.register(*name, *help, f);
            }
        }
    }
}

/// The text of one scrape of `s`, with the requests `metrics` recorded.
fn encode(s: &Snapshot, metrics: &Metrics) -> Result<String, String> {
    let mut reg = Registry::default();
    let objects = Family::<NsKindLabels, Gauge>::default();
    let members = Family::<NsLabels, Gauge>::default();
    let records = Family::<NsLabels, Gauge>::default();
    let limits = Family::<NsLabels, Gauge>::default();
    let kind_records = Family::<NsKindLabels, Gauge>::default();
    let kind_limits = Family::<NsKindLabels, Gauge>::default();
    let memory = Family::<NsLabels, Gauge>::default();
    let memory_all = Family::<NsLabels, Gauge>::default();
    for ns in &s.namespaces {
        for kind in bpfns_model::ObjectKind::ALL {
            let labels = NsKindLabels {
                namespace: ns.path.clone(),
                kind: kind.name().into(),
            };
            if let Some(r) = ns.kind_records {
                let n = match kind {
                    bpfns_model::ObjectKind::Prog => r.prog,
                    bpfns_model::ObjectKind::Map => r.map,
                    bpfns_model::ObjectKind::Link => r.link,
                    bpfns_model::ObjectKind::Btf => r.btf,
                };
                kind_records.get_or_create(&labels).set(i64::from(n));
            }
            if let Some(l) = ns.kind_limits.get(kind) {
                kind_limits.get_or_create(&labels).set(i64::from(l));
            }
        }
        let o = ns.objects;
        for (kind, n) in [
            ("prog", o.prog),
            ("map", o.map),
            ("link", o.link),
            ("btf", o.btf),
        ] {
            objects
                .get_or_create(&NsKindLabels {
                    namespace: ns.path.clone(),
                    kind: kind.into(),
                })
                .set(i64::from(n));
        }
        let l = NsLabels {
            namespace: ns.path.clone(),
        };
        members.get_or_create(&l).set(i64::from(ns.members));
        if let Some(r) = ns.records {
            records
                .get_or_create(&l)
                .set(i64::try_from(r).unwrap_or(i64::MAX));
        }
        if let Some(m) = ns.max_objects {
            limits.get_or_create(&l).set(i64::from(m));
        }
        if let Some(b) = ns.map_memory {
            memory
                .get_or_create(&l)
                .set(i64::try_from(b).unwrap_or(i64::MAX));
        }
        if let Some(b) = ns.map_memory_total {
            memory_all
                .get_or_create(&l)
                .set(i64::try_from(b).unwrap_or(i64::MAX));
        }
    }
    // Own and with descendants apart, so that summing one metric over namespaces counts
    // every map once.
    reg.register(
        "bpfns_namespace_map_memory_bytes",
        "Bytes of memory the maps a namespace owns itself use (the kernel's memlock of each, \
         as bpfns ns show sums them)",
        memory,
    );
    reg.register(
        "bpfns_namespace_subtree_map_memory_bytes",
        "Bytes of memory the maps of a namespace and its descendants use",
        memory_all,
    );
    reg.register(
        "bpfns_namespace_objects",
        "BPF objects a namespace owns itself, by kind (as bpfns ns show counts them)",
        objects,
    );
    reg.register(
        "bpfns_namespace_members",
        "Member tasks (threads) of a namespace itself",
        members,
    );
    reg.register(
        "bpfns_namespace_records",
        "Ownership records a namespace uses with its descendants",
        records,
    );
    reg.register(
        "bpfns_namespace_max_objects",
        "Ownership records a namespace may use with its descendants",
        limits,
    );
    reg.register(
        "bpfns_namespace_kind_records",
        "Ownership records of one kind a namespace uses with its descendants",
        kind_records,
    );
    reg.register(
        "bpfns_namespace_kind_limit",
        "Objects of one kind a namespace may own with its descendants (max_maps...; only where set)",
        kind_limits,
    );
    let denials = Family::<DenialLabels, Counter>::default();
    for (namespace, command, layer, n) in s.denials.iter().cloned() {
        denials
            .get_or_create(&DenialLabels {
                namespace,
                command,
                layer: layer.into(),
            })
            .inc_by(n);
    }
    reg.register(
        "bpfns_namespace_denials",
        "Calls of a namespace's members refused (layer supervisor, lsm) or stopped (backstop), \
         and requests to bpfnsd refused (layer api; command: the request's op), since bpfnsd \
         started, by command",
        denials,
    );
    // Sums over the programs that exist now: a gauge (a freed program takes its share away).
    let run_time = Family::<NsLabels, Gauge<f64, AtomicU64>>::default();
    let run_count = Family::<NsLabels, Gauge>::default();
    for (namespace, ns, n) in s.runs.iter().cloned() {
        let l = NsLabels { namespace };
        run_time.get_or_create(&l).set(ns as f64 / 1e9);
        run_count
            .get_or_create(&l)
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    reg.register(
        "bpfns_namespace_prog_run_time_seconds",
        "Run time of the programs a namespace owns itself, summed (counted by the kernel only \
         while BPF statistics are on: bpfns top, or sysctl kernel.bpf_stats_enabled)",
        run_time,
    );
    reg.register(
        "bpfns_namespace_prog_runs",
        "Runs of the programs a namespace owns itself, summed (while BPF statistics are on)",
        run_count,
    );
    let status = &s.status;
    reg.register(
        "bpfnsd_namespaces",
        "Namespaces, the root included",
        gauge(u64::from(status.namespaces)),
    );
    reg.register(
        "bpfnsd_supervised_listeners",
        "Seccomp listeners bpfnsd supervises (member process trees)",
        gauge(u64::from(status.supervised_listeners)),
    );
    reg.register(
        "bpfnsd_kept_listeners",
        "Seccomp listeners the listener keeper holds",
        gauge(u64::from(status.kept_listeners)),
    );
    reg.register(
        "bpfnsd_containers",
        "Containers bpfnsd placed and keeps a record of",
        gauge(u64::from(status.containers)),
    );
    register_status(&mut reg, &status.counters);
    reg.register(
        "bpfnsd_request_duration_seconds",
        "API requests by operation and outcome (ok or the error code), and how long each took \
         (`events`: until the subscription was answered)",
        metrics.requests.clone(),
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).map_err(|e| e.to_string())?;
    Ok(text)
}

/// Scrapes served at a time; more connections are closed at once (a scraper needs one).
const MAX_CONNECTIONS: usize = 8;
/// A connection is closed after this long, whatever it sends (a slow or silent client holds
/// no fd for long).
const CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Bind `addr` in the network namespace `netns` (a socket stays in the namespace it was made
/// in): from a thread of its own, which enters it and ends.
fn bind_in(addr: &str, netns: &std::path::Path) -> std::io::Result<std::net::TcpListener> {
    let (addr, netns) = (addr.to_string(), netns.to_path_buf());
    std::thread::Builder::new()
        .name("bpfnsd-metrics-bind".into())
        .spawn(move || {
            let fix = |e: bpfns_sys::SysError| {
                std::io::Error::other(format!(
                    "{e}: metrics_netns must name a network namespace file (`ip netns add \
                     bpfns-metrics` makes /run/netns/bpfns-metrics)"
                ))
            };
            let ns = bpfns_sys::thread::open_ns(&netns).map_err(fix)?;
            bpfns_sys::thread::enter_net_ns(&ns).map_err(fix)?;
            std::net::TcpListener::bind(&addr)
        })?
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the binding thread panicked")))
}

/// Serve `GET /metrics` on `addr` (in the network namespace `metrics_netns` of the
/// configuration, if it names one) from a thread of its own, for as long as `daemon` lives;
/// the address bound (a port 0 asks for any free one).
pub fn serve(addr: &str, daemon: &Arc<Daemon>) -> std::io::Result<SocketAddr> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Response, StatusCode};

    let listener = match &daemon.config.metrics_netns {
        Some(netns) => bind_in(addr, netns)?,
        None => std::net::TcpListener::bind(addr)?,
    };
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    *daemon
        .metrics
        .bound
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(bound);
    // Not kept alive by its endpoint: once bpfnsd's daemon is dropped (tests), it stops.
    let daemon = Arc::downgrade(daemon);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("bpfnsd-metrics".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("metrics endpoint: {e}");
                        return;
                    }
                };
                let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
                while daemon.strong_count() > 0 {
                    let accepted = tokio::time::timeout(
                        std::time::Duration::from_millis(500),
                        listener.accept(),
                    )
                    .await;
                    let Ok(Ok((stream, _))) = accepted else {
                        continue;
                    };
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        drop(stream);
                        continue;
                    };
                    let d = daemon.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let d = d.upgrade();
                        async move {
                            let (status, ctype, body) = if req.uri().path() != "/metrics" {
                                (
                                    StatusCode::NOT_FOUND,
                                    "text/plain",
                                    "bpfnsd serves /metrics only\n".to_string(),
                                )
                            } else if let Some(d) = d {
                                match render(&d) {
                                    Ok(t) => (
                                        StatusCode::OK,
                                        "application/openmetrics-text; version=1.0.0; \
                                         charset=utf-8",
                                        t,
                                    ),
                                    Err(e) => (
                                        StatusCode::INTERNAL_SERVER_ERROR,
                                        "text/plain",
                                        format!("{e}\n"),
                                    ),
                                }
                            } else {
                                (
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    "text/plain",
                                    "bpfnsd is stopping\n".to_string(),
                                )
                            };
                            Response::builder()
                                .status(status)
                                .header("content-type", ctype)
                                .body(Full::new(Bytes::from(body)))
                        }
                    });
                    tokio::task::spawn(async move {
                        let _slot = slot;
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let conn = hyper::server::conn::http1::Builder::new()
                            .keep_alive(false)
                            .serve_connection(io, service);
                        let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
                    });
                }
            });
        })?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    const DOC: &str = include_str!("../../../docs/protocol.md");
    const DASHBOARD: &str = include_str!("../../../dist/prometheus/grafana-dashboard.json");

    /// Every counter name `bpfns status` can report (the kernel side's and bpfnsd's).
    fn status_names() -> Vec<String> {
        let mut names: Vec<String> = bpfns_kernel::abi::Stat::ALL
            .iter()
            .map(|s| s.name().to_string())
            .collect();
        names.extend(
            bpfns_kernel::lsm::Counters::default()
                .named()
                .iter()
                .map(|(n, _)| n.to_string()),
        );
        names.push("quota_notices".into());
        for r in [
            "foreign",
            "prog_type",
            "shared_files",
            "hijack",
            "unrecorded",
            "quota",
            "perfmon",
        ] {
            names.push(format!("stopped_{r}"));
            names.push(format!("refused_{r}"));
        }
        for n in [
            "records_collected",
            "map_children_killed",
            "kernel_events_read",
            "events_subscribers",
            "events_subscribers_dropped",
            "events_suppressed",
            "bpfnsd_heap_in_use_bytes",
            "connections_open",
            "admin_connections_open",
            "connections_refused",
            "connections_closed_idle",
            "containers_collected",
            "keeper_restarts",
            "keeper_outages",
            "keeper_abandoned_answered",
            "keeper_refused_after_grace",
        ] {
            names.push(n.into());
        }
        names
    }

    /// A scrape with a sample in every family.
    fn full() -> String {
        let ns: bpfns_proto::NsInfo = serde_json::from_value(serde_json::json!({
            "path": "/a", "id": 1, "parent": "/", "depth": 1,
            "objects": {"prog": 1, "map": 2, "link": 0, "btf": 0},
            "members": 3, "max_objects": 100, "records": 3,
            "map_memory": 640, "map_memory_total": 640,
            "max_maps": 10,
            "kind_records": {"prog": 1, "map": 2, "link": 0, "btf": 0},
        }))
        .unwrap();
        let mut counters: Vec<(String, u64)> = status_names().into_iter().map(|n| (n, 1)).collect();
        // A counter of a newer kernel side, without a family of its own.
        counters.push(("newer_counter".into(), 1));
        let snapshot = Snapshot {
            namespaces: vec![ns],
            denials: vec![("/a".into(), "BPF_MAP_GET_FD_BY_ID".into(), "supervisor", 2)],
            runs: vec![("/a".into(), 1_000, 10)],
            status: bpfns_proto::StatusInfo {
                server: String::new(),
                pin_root: String::new(),
                state_dir: String::new(),
                layers: Vec::new(),
                namespaces: 2,
                supervised_listeners: 1,
                kept_listeners: 1,
                counters,
                containers: 0,
                collected_containers: Vec::new(),
            },
        };
        let metrics = Metrics::default();
        metrics.observe("ns_show", "ok", 0.001);
        encode(&snapshot, &metrics).unwrap()
    }

    /// The families of a scrape: the name as the doc gives it (a counter's with `_total`), its
    /// type, and the labels of its samples (a histogram's `le` left out).
    fn families(text: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
        let mut out = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let (name, kind) = t.split_once(' ').unwrap();
                let doc = if kind == "counter" {
                    format!("{name}_total")
                } else {
                    name.to_string()
                };
                types.insert(name.to_string(), doc.clone());
                out.insert(doc, (kind.to_string(), BTreeSet::new()));
            }
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let sample = line.split(['{', ' ']).next().unwrap();
            let family = ["", "_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| types.get(sample.strip_suffix(s).unwrap_or("\0")))
                .unwrap_or_else(|| panic!("a sample of no family: {line}"));
            let labels = &mut out.get_mut(family).unwrap().1;
            if let Some((_, rest)) = line.split_once('{') {
                let inner = &rest[..rest.rfind('}').unwrap()];
                for pair in inner.split("\",") {
                    let key = pair.split_once('=').unwrap().0.trim();
                    if key != "le" {
                        labels.insert(key.to_string());
                    }
                }
            }
        }
        out
    }

    /// The rows of the table of families in docs/protocol.md: name, type, labels, on the
    /// dashboard.
    fn documented() -> BTreeMap<String, (String, BTreeSet<String>, bool)> {
        let section = DOC
            .split("\n## Metrics\n")
            .nth(1)
            .expect("docs/protocol.md has a section Metrics");
        let section = section.split("\n## ").next().unwrap();
        let mut out = BTreeMap::new();
        for row in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 5, "{row}");
            let name = cells[0].trim_matches('`').to_string();
            let labels = cells[2]
                .split(", ")
                .filter(|l| *l != "-")
                .map(|l| l.trim_matches('`').to_string())
                .collect();
            let shown = match cells[4] {
                "yes" => true,
                "no" => false,
                other => panic!("dashboard: yes or no, not {other}: {row}"),
            };
            assert!(
                out.insert(name, (cells[1].to_string(), labels, shown))
                    .is_none(),
                "twice: {row}"
            );
        }
        out
    }

    /// The metric names the dashboard's queries use.
    fn dashboard_names() -> BTreeSet<String> {
        DASHBOARD
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("bpfns_") || w.starts_with("bpfnsd_"))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_status_counter_has_a_family_of_its_own() {
        for name in status_names() {
            match place(&name) {
                Place::In(family, _) => {
                    assert_ne!(family, "bpfnsd_status_counter", "{name}");
                    assert!(
                        STATUS_FAMILIES.iter().any(|(f, ..)| *f == family),
                        "{name}: {family}"
                    );
                }
                Place::Sum => {}
            }
        }
    }

    /// The families bpfnsd renders are the ones docs/protocol.md lists, with their types and
    /// labels; the dashboard queries those it says it shows, and no other.
    #[test]
    fn every_family_is_documented_and_on_the_dashboard_or_said_not_to_be() {
        let text = full();
        let rendered = families(&text);
        let doc = documented();
        let shown = dashboard_names();
        for (name, (kind, labels)) in &rendered {
            let Some((doc_kind, doc_labels, on_dashboard)) = doc.get(name) else {
                panic!("{name} is not in docs/protocol.md's table of metrics");
            };
            assert_eq!((kind, labels), (doc_kind, doc_labels), "{name}");
            let samples: Vec<String> = match kind.as_str() {
                "histogram" => ["_bucket", "_count", "_sum"]
                    .iter()
                    .map(|s| format!("{name}{s}"))
                    .collect(),
                _ => vec![name.clone()],
            };
            let queried = samples.iter().any(|s| shown.contains(s));
            assert_eq!(
                queried, *on_dashboard,
                "{name}: the dashboard queries it: {queried}; docs/protocol.md says {on_dashboard}"
            );
        }
        for name in doc.keys() {
            assert!(
                rendered.contains_key(name),
                "{name} is documented, not rendered"
            );
        }
        let samples: BTreeSet<String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
            .collect();
        for name in &shown {
            assert!(
                samples.contains(name),
                "the dashboard queries {name}, which bpfnsd does not render"
            );
        }
    }
}
