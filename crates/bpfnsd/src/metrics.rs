//! Prometheus metrics: `GET /metrics` on the address `metrics` in bpfnsd.toml (or
//! `--metrics`), off by default.
//!
//! Per namespace (the values `bpfns ns show` gives, from the same walk): objects by kind,
//! member tasks, ownership records in use and the limit, records per kind (with the limit of
//! the kind where one is set), the memory of its maps (own, and with descendants). For bpfnsd:
//! API requests by operation and outcome with a latency histogram, supervised and kept
//! listeners, namespaces,
//! and every counter `bpfns status` shows (the kernel side's among them). The text is
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CounterLabels {
    name: String,
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

/// The text of one scrape.
pub fn render(daemon: &Daemon) -> Result<String, String> {
    let mut reg = Registry::default();
    let objects = Family::<NsKindLabels, Gauge>::default();
    let members = Family::<NsLabels, Gauge>::default();
    let records = Family::<NsLabels, Gauge>::default();
    let limits = Family::<NsLabels, Gauge>::default();
    let kind_records = Family::<NsKindLabels, Gauge>::default();
    let kind_limits = Family::<NsKindLabels, Gauge>::default();
    let memory = Family::<NsLabels, Gauge>::default();
    let memory_all = Family::<NsLabels, Gauge>::default();
    for ns in daemon.all_ns_infos().map_err(|f| f.message)? {
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
    for (namespace, command, layer, n) in daemon.denial_counts() {
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
    for (namespace, ns, n) in daemon.prog_run_totals().map_err(|f| f.message)? {
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
    let status = daemon.status_info().map_err(|f| f.message)?;
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
    let counters = Family::<CounterLabels, Gauge>::default();
    for (name, v) in &status.counters {
        counters
            .get_or_create(&CounterLabels { name: name.clone() })
            .set(i64::try_from(*v).unwrap_or(i64::MAX));
    }
    reg.register(
        "bpfnsd_status_counter",
        "The counters of bpfns status (the kernel side's, records and containers collected, \
         the listener keeper's, connection limits), by name",
        counters,
    );
    reg.register(
        "bpfnsd_request_duration_seconds",
        "API requests by operation and outcome (ok or the error code), and how long each took \
         (`events`: until the subscription was answered)",
        daemon.metrics.requests.clone(),
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
