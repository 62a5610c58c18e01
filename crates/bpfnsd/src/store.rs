//! Durable state: the namespace registry in an embedded transactional database (redb).
//!
//! Namespaces are the only state bpfns keeps outside the kernel: memberships (task tags) and
//! ownership records live in pinned kernel maps, which outlive the daemon. Every change is one
//! committed write transaction, so a crash at any point leaves either the old or the new
//! registry, never a mix.

use std::path::{Path, PathBuf};

use bpfns_model::container::Containers;
use bpfns_model::{Registry, Snapshot};
use redb::{Database, ReadableDatabase, TableDefinition};

const STATE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("state");
const REGISTRY_KEY: &str = "registry";
/// The containers bpfnsd placed and the namespaces it made for them.
const CONTAINERS_KEY: &str = "containers";

/// A state database that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("creating state directory {path}: {error}")]
    Dir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("state database {path}: {message}")]
    Db { path: PathBuf, message: String },
    #[error("state database {path} holds an invalid registry: {message}; move the file away to start empty (namespaces would be lost)")]
    Corrupt { path: PathBuf, message: String },
}

/// The open database.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
}

/// Read the registry from an open database (no table or key yet: an empty registry).
fn read_registry(db: &impl ReadableDatabase, path: &Path) -> Result<Registry, StoreError> {
    let err = |e: &dyn std::fmt::Display| StoreError::Db {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let txn = db.begin_read().map_err(|e| err(&e))?;
    let table = match txn.open_table(STATE) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Registry::new()),
        Err(e) => return Err(err(&e)),
    };
    let Some(v) = table.get(REGISTRY_KEY).map_err(|e| err(&e))? else {
        return Ok(Registry::new());
    };
    let corrupt = |message: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let snap: Snapshot = serde_json::from_slice(v.value()).map_err(|e| corrupt(e.to_string()))?;
    Registry::from_snapshot(snap).map_err(|e| corrupt(e.to_string()))
}

impl Store {
    /// Open (or create) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|error| StoreError::Dir {
                path: dir.to_path_buf(),
                error,
            })?;
        }
        let db = Database::create(path).map_err(|e| StoreError::Db {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// The stored registry, or an empty one (just the root) if none was stored yet.
    pub fn load_registry(&self) -> Result<Registry, StoreError> {
        read_registry(&self.db, &self.path)
    }

    /// The registry stored at `path`, read without creating, locking for writing or changing
    /// anything (`bpfnsd --check`); `None` when there is no database yet.
    pub fn peek_registry(path: &Path) -> Result<Option<Registry>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        let db = redb::ReadOnlyDatabase::open(path).map_err(|e| StoreError::Db {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        read_registry(&db, path).map(Some)
    }

    /// Replace the stored registry, atomically and durably.
    pub fn save_registry(&self, reg: &Registry) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(&reg.snapshot()).map_err(|e| self.err(e))?;
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(STATE).map_err(|e| self.err(e))?;
            table
                .insert(REGISTRY_KEY, bytes.as_slice())
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// The stored container records (none stored: empty).
    pub fn load_containers(&self) -> Result<Containers, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match txn.open_table(STATE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Containers::default()),
            Err(e) => return Err(self.err(e)),
        };
        let Some(v) = table.get(CONTAINERS_KEY).map_err(|e| self.err(e))? else {
            return Ok(Containers::default());
        };
        serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            message: format!("its container records: {e}"),
        })
    }

    /// Replace the stored container records, atomically and durably.
    pub fn save_containers(&self, c: &Containers) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(c).map_err(|e| self.err(e))?;
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(STATE).map_err(|e| self.err(e))?;
            table
                .insert(CONTAINERS_KEY, bytes.as_slice())
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfns_model::NsPath;

    #[test]
    fn registry_round_trips_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s/bpfns.redb");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.load_registry().unwrap().len(), Registry::new().len());
        let mut reg = Registry::new();
        reg.create(&NsPath::parse("/a").unwrap()).unwrap();
        reg.create(&NsPath::parse("/a/b").unwrap()).unwrap();
        store.save_registry(&reg).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        let back = store.load_registry().unwrap();
        assert_eq!(back.snapshot(), reg.snapshot());
    }

    #[test]
    fn container_records_survive_reopen_beside_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bpfns.redb");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.load_containers().unwrap(), Containers::default());
        let mut c = Containers::default();
        c.made.insert("/containers/web".into());
        c.records.insert(
            "abc".into(),
            bpfns_model::container::ContainerRecord {
                namespace: "/containers/web".into(),
                bundle: Some("/b".into()),
                state_dir: None,
                released: true,
                since: 7,
            },
        );
        store.save_containers(&c).unwrap();
        store.save_registry(&Registry::new()).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.load_containers().unwrap(), c);
    }
}
