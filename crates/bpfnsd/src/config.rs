//! bpfnsd's configuration: defaults, an optional TOML file, then command-line flags.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the optional configuration file lives by default.
pub const DEFAULT_CONFIG: &str = "/etc/bpfns/bpfnsd.toml";

/// Where container runtimes send containers' seccomp listeners by default.
pub const DEFAULT_SECCOMP_SOCKET: &str = "/run/bpfns/seccomp.sock";

/// Every setting of the daemon.
///
/// ```toml
/// socket = "/run/bpfns/bpfns.sock"
/// state_dir = "/var/lib/bpfns"
/// pin_root = "/sys/fs/bpf/bpfns"
/// ns_bpffs_dir = "/run/bpfns/ns"
/// root_bpffs = "/sys/fs/bpf"
/// seccomp_socket = "/run/bpfns/seccomp.sock"
/// socket_mode = 0o666
/// gc_interval_secs = 60
/// max_objects = 1024
/// outage_grace_ms = 2000
///
/// [quota]
/// max_maps = 256
/// # ... see [`QuotaDefaults`]
///
/// [limits]
/// max_connections = 1024
/// # ... see [`Limits`]
///
/// [containers]
/// parent = "/containers"
/// name = "{name}"
/// # ... see [`Containers`]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The Unix socket of the API (unless systemd passes one).
    pub socket: PathBuf,
    /// The database of namespaces lives here.
    pub state_dir: PathBuf,
    /// bpffs directory where the kernel side is pinned.
    pub pin_root: PathBuf,
    /// Each namespace's own bpffs instance is mounted at `<ns_bpffs_dir>/<id>`.
    pub ns_bpffs_dir: PathBuf,
    /// The root namespace's pin tree (a bpffs directory): where the pins of a deleted
    /// top-level namespace go (under `orphans/`).
    pub root_bpffs: PathBuf,
    /// Where container runtimes send containers' seccomp listeners (`linux.seccomp.listenerPath`
    /// in a container's configuration, as bpfns-oci writes it; see docs/containers.md).
    pub seccomp_socket: PathBuf,
    /// Serve Prometheus metrics at `http://<metrics>/metrics` (e.g. "127.0.0.1:9469"); off
    /// when absent. What it shows is what the host administrator sees: bind it where only the
    /// scraper reaches (see `metrics_netns`).
    pub metrics: Option<String>,
    /// Bind the metrics endpoint in this network namespace (a file such as
    /// `/run/netns/bpfns-metrics`, which `ip netns add` makes) instead of bpfnsd's own. Members
    /// started by `bpfns exec` share the host's network namespace, so any address bpfnsd binds
    /// there, loopback included, is one they can connect to; in a namespace of its own only
    /// what the operator puts there (the scraper, a veth) reaches the endpoint.
    pub metrics_netns: Option<PathBuf>,
    /// Events (`bpfns events`) one tenant (a top-level namespace with its subtree) may make a
    /// second; the rest are counted (`events_suppressed`). Keeps a member refused in a loop,
    /// or churning child namespaces, from filling every subscriber's queue, which drops the
    /// subscriber.
    pub events_per_namespace_per_sec: u32,
    /// Whether namespace members may turn BPF run-time statistics on (`enable_stats`, what
    /// `bpfns top` asks). The kernel's switch is host-wide: while any holder keeps it on,
    /// every BPF program on the host pays two clock reads a run. The host's own callers may
    /// always.
    pub member_stats: bool,
    /// Permissions of the socket. Everybody may connect: callers are authorised by kernel
    /// facts about them, not by file permissions.
    pub socket_mode: u32,
    /// Every this many seconds, drop the ownership records of objects that no longer exist
    /// (0: never). Kernels without BPF LSM have no hook that runs when an object is freed,
    /// so without this the records of short-lived objects (tools create some to probe
    /// features) would pile up until the ownership map is full.
    pub gc_interval_secs: u64,
    /// How many objects a new namespace may own with its descendants (ownership records),
    /// unless `bpfns ns create --max-objects` says otherwise; a child's default is capped at
    /// its parent's. The top-level namespaces' limits together must fit the kernel's ownership
    /// table (about a million records), so this also bounds how many of them can exist: 1024
    /// leaves room for about 1,000.
    pub max_objects: u32,
    /// While no bpfnsd runs, a member's trapped call waits this long for the next one (then
    /// fails with `EAGAIN`); see the listener keeper ([`crate::keeper`]).
    pub outage_grace_ms: u64,
    /// The program bpfnsd starts as its listener keeper (`PROGRAM --keeper ...`). Default:
    /// bpfnsd's own executable. Test harnesses that run bpfnsd inside another program set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keeper_program: Option<PathBuf>,
    /// Limits per kind of object a new namespace gets (beside `max_objects`).
    pub quota: QuotaDefaults,
    /// Bounds on what callers can make bpfnsd spend.
    pub limits: Limits,
    /// Containers' namespaces: how they are named, and how often those of containers that
    /// are gone are collected.
    pub containers: Containers,
}

/// The limits per kind of object a new namespace gets unless `bpfns ns create --max-maps N`
/// (...) says otherwise (`[quota]` in bpfnsd.toml): how many of that kind it may own with its
/// descendants, counted beside `max_objects` and the same way (in the namespace and every
/// ancestor). Each is capped at the nearest ancestor's limit of the kind and at the
/// namespace's `max_objects`. Absent (the default): no limit of that kind, only
/// `max_objects`. Namespaces that exist keep theirs (change them with `bpfns ns quota`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaDefaults {
    /// Programs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_progs: Option<u32>,
    /// Maps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_maps: Option<u32>,
    /// Links.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_links: Option<u32>,
    /// BTF objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_btf: Option<u32>,
}

impl QuotaDefaults {
    /// As the quota rules take them.
    pub fn kind_limits(&self) -> bpfns_model::quota::KindLimits {
        bpfns_model::quota::KindLimits {
            max_progs: self.max_progs,
            max_maps: self.max_maps,
            max_links: self.max_links,
            max_btf: self.max_btf,
        }
    }
}

/// Containers' namespaces (`[containers]` in bpfnsd.toml; see docs/containers.md): one
/// naming for every engine, decided here rather than in each runtime wrapper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Containers {
    /// Where containers go: `<parent>/<name>`.
    pub parent: String,
    /// The namespace's name below `parent`: `{name}` is the container's name (its id where
    /// the engine gives none), `{id}` its id, `{short_id}` its first 12 characters.
    pub name: String,
    /// Where a Kubernetes pod's containers go, together: `<k8s_parent>/<pod namespace>/<pod>`.
    pub k8s_parent: String,
    /// Honour the annotation `io.bpfns.namespace` (whoever sets a container's annotations
    /// chooses its namespace with it; in Kubernetes, a pod's author).
    pub annotation: bool,
    /// The annotation may name only namespaces strictly below this one.
    pub annotation_within: String,
    /// Put a Kubernetes pod's containers together by the pod keys their runtime writes
    /// (whoever can set those annotations can join any pod's namespace with them; false where
    /// tenants may: `annotation = false` does not turn this off).
    pub pods: bool,
    /// Every this many seconds, collect the namespaces of containers that are gone (0:
    /// only at start and when a runtime deletes a container).
    pub collect_interval_secs: u64,
    /// A container whose runtime state is missing and whose namespace has no live task counts
    /// as vanished only this long after it was placed (its runtime writes its state and
    /// starts its init in that time).
    pub vanish_grace_secs: u64,
}

impl Default for Containers {
    fn default() -> Self {
        let n = bpfns_model::container::Naming::default();
        Self {
            parent: n.parent,
            name: n.name,
            k8s_parent: n.k8s_parent,
            annotation: n.annotation,
            annotation_within: n.annotation_within,
            pods: n.pods,
            collect_interval_secs: 10,
            vanish_grace_secs: 30,
        }
    }
}

impl Containers {
    /// The naming rules these settings make.
    pub fn naming(&self) -> bpfns_model::container::Naming {
        bpfns_model::container::Naming {
            parent: self.parent.clone(),
            name: self.name.clone(),
            k8s_parent: self.k8s_parent.clone(),
            annotation: self.annotation,
            annotation_within: self.annotation_within.clone(),
            pods: self.pods,
        }
    }
}

/// Bounds on what callers can make bpfnsd spend (`[limits]` in bpfnsd.toml). Host
/// administrators in the root namespace (`CAP_SYS_ADMIN` in the initial user namespace,
/// untagged) have connections of their own and are never refused because of anyone else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Connections open at once from all other callers together.
    pub max_connections: u32,
    /// ... from one uid (the peer's uid as the host sees it) within one tenant (a top-level
    /// namespace with everything below it; the root namespace for callers outside them).
    pub max_connections_per_uid: u32,
    /// ... from one tenant: a top-level namespace with all the namespaces below it.
    pub max_connections_per_namespace: u32,
    /// Connections a tenant may always open, even when `max_connections` are taken by
    /// others: no tenant can shut another out.
    pub min_connections_per_namespace: u32,
    /// Connections open at once from host administrators in the root namespace.
    pub max_admin_connections: u32,
    /// A connection with no request for this long is closed (as is one whose request, or
    /// whose reading of an answer, stalls for this long). 0: never.
    pub idle_timeout_secs: u64,
    /// Stop accepting connections (except host administrators') while fewer file
    /// descriptors than this remain below bpfnsd's limit, so that supervising members and
    /// collecting records keep working.
    pub fd_reserve: u64,
    /// Members supervised at once (each is a seccomp listener and a thread of bpfnsd).
    pub max_supervised: u32,
    /// ... handed over by one uid.
    pub max_supervised_per_uid: u32,
    /// ... in one tenant.
    pub max_supervised_per_namespace: u32,
    /// Namespaces one tenant's members may make in it (its top-level namespace and every one
    /// below): each is a bpffs mount and entries in the kernel's tables, which hold 65,536 in
    /// all. Host administrators are bound by the tables alone.
    pub max_namespaces_per_tenant: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_uid: 512,
            max_connections_per_namespace: 512,
            min_connections_per_namespace: 16,
            max_admin_connections: 1024,
            idle_timeout_secs: 60,
            fd_reserve: 1024,
            max_supervised: 1024,
            max_supervised_per_uid: 1024,
            max_supervised_per_namespace: 256,
            max_namespaces_per_tenant: 256,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(bpfns_proto::DEFAULT_SOCKET),
            state_dir: PathBuf::from("/var/lib/bpfns"),
            pin_root: PathBuf::from(bpfns_kernel::layout::DEFAULT_PIN_ROOT),
            ns_bpffs_dir: PathBuf::from("/run/bpfns/ns"),
            root_bpffs: PathBuf::from(crate::bpffs::HOST_BPFFS),
            seccomp_socket: PathBuf::from(DEFAULT_SECCOMP_SOCKET),
            metrics: None,
            metrics_netns: None,
            events_per_namespace_per_sec: crate::events::PER_NAMESPACE_PER_SEC,
            member_stats: true,
            socket_mode: 0o666,
            gc_interval_secs: 60,
            max_objects: 1024,
            outage_grace_ms: 2000,
            keeper_program: None,
            quota: QuotaDefaults::default(),
            limits: Limits::default(),
            containers: Containers::default(),
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is not a valid bpfnsd configuration: {error}")]
    Parse {
        path: PathBuf,
        error: toml::de::Error,
    },
}

impl Config {
    /// Read `path`. A missing file at the default location means "all defaults"; a missing
    /// file that was asked for explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Self::default())
            }
            Err(error) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    error,
                })
            }
        };
        Self::parse(&text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            error,
        })
    }

    /// Parse TOML text; unknown keys are errors (a typo should not silently do nothing).
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The database file.
    pub fn db_path(&self) -> PathBuf {
        self.state_dir.join("bpfns.redb")
    }

    /// The listener keeper's socket.
    pub fn keeper_socket(&self) -> PathBuf {
        self.state_dir.join(crate::keeper::SOCKET_NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_partial_files() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        let c = Config::parse("socket = \"/tmp/x.sock\"\n").unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.state_dir, Config::default().state_dir);
        assert!(Config::parse("sockett = \"/x\"").is_err());
        assert!(Config::parse("socket = 3").is_err());
        let c = Config::parse("[limits]\nmax_connections_per_uid = 7\n").unwrap();
        assert_eq!(c.limits.max_connections_per_uid, 7);
        assert_eq!(c.limits.max_connections, Limits::default().max_connections);
        assert!(Config::parse("[limits]\nmax_conections = 7\n").is_err());
        let c = Config::parse("[containers]\nparent = \"/ctr\"\nname = \"{id}\"\n").unwrap();
        assert_eq!(c.containers.naming().parent, "/ctr");
        assert_eq!(c.containers.collect_interval_secs, 10);
        assert!(Config::parse("[containers]\nprefix = \"/x\"\n").is_err());
        let c = Config::parse("max_objects = 512\n[quota]\nmax_maps = 64\n").unwrap();
        assert_eq!(c.quota.max_maps, Some(64));
        assert_eq!(
            c.quota.kind_limits().max_progs,
            None,
            "unset: only max_objects"
        );
        assert!(
            Config::parse("[quota]\nmax_map = 64\n").is_err(),
            "typos are refused"
        );
    }

    #[test]
    fn missing_default_file_is_fine_but_explicit_is_not() {
        let p = Path::new("/nonexistent/bpfnsd.toml");
        assert_eq!(Config::load(p, false).unwrap(), Config::default());
        assert!(Config::load(p, true).is_err());
    }
}

#[cfg(test)]
mod dist_tests {
    use super::*;

    #[test]
    fn the_shipped_example_is_the_defaults() {
        let text = include_str!("../../../dist/bpfnsd.toml");
        assert_eq!(Config::parse(text).unwrap(), Config::default());
    }

    #[test]
    fn metrics_netns_is_a_path() {
        let c = Config::parse(
            "metrics = \"127.0.0.1:9469\"\nmetrics_netns = \"/run/netns/bpfns-metrics\"\n",
        )
        .unwrap();
        assert_eq!(
            c.metrics_netns.as_deref(),
            Some(Path::new("/run/netns/bpfns-metrics"))
        );
    }
}
