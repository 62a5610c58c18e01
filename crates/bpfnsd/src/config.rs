//! bpfnsd's configuration: defaults, an optional TOML file, then command-line flags.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the optional configuration file lives by default.
pub const DEFAULT_CONFIG: &str = "/etc/bpfns/bpfnsd.toml";

/// Every setting of the daemon.
///
/// ```toml
/// socket = "/run/bpfns/bpfns.sock"
/// state_dir = "/var/lib/bpfns"
/// pin_root = "/sys/fs/bpf/bpfns"
/// ns_bpffs_dir = "/run/bpfns/ns"
/// socket_mode = 0o666
/// gc_interval_secs = 60
/// max_objects = 1024
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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(bpfns_proto::DEFAULT_SOCKET),
            state_dir: PathBuf::from("/var/lib/bpfns"),
            pin_root: PathBuf::from(bpfns_kernel::layout::DEFAULT_PIN_ROOT),
            ns_bpffs_dir: PathBuf::from("/run/bpfns/ns"),
            socket_mode: 0o666,
            gc_interval_secs: 60,
            max_objects: 1024,
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
}
