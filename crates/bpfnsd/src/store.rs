//! Durable state: the namespace registry in an embedded transactional database (redb).
//!
//! Namespaces are the only state bpfns keeps outside the kernel: memberships (task tags) and
//! ownership records live in pinned kernel maps, which outlive the daemon. Every change is one
//! committed write transaction, so a crash at any point leaves either the old or the new
//! registry, never a mix.
//!
//! The registry is kept as one row per namespace (table `namespaces`, by id) beside the next
//! id (key `next_id` of table `state`), so that a change writes the rows it touched: with
//! 10 000 namespaces, writing the whole tree as one value made every create cost milliseconds
//! more. Databases written before (the whole tree as one JSON snapshot under key `registry`)
//! are read as they are and rewritten in the new layout at the first start that writes.
//!
//! Group commit: a namespace change commits without waiting for the disk
//! ([`Store::save_changes`], under bpfnsd's change lock), and is made durable after that lock
//! is let go and before it is acknowledged ([`Store::make_durable`]): one `fdatasync` for the
//! changes that wait together. Two per create + delete, each under the change lock, made that
//! lock the queue of a busy host. Until then the change is in this process's memory only: a
//! crash loses it, and it was never acknowledged (another request may have seen it meanwhile).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::coalesce::Coalesced;

use bpfns_model::container::Containers;
use bpfns_model::{NsId, Registry, Snapshot, SnapshotEntry};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const STATE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("state");
/// One namespace's [`SnapshotEntry`] (JSON) by its id.
const NAMESPACES: TableDefinition<'_, u32, &[u8]> = TableDefinition::new("namespaces");
/// The whole registry as one JSON [`Snapshot`]: the layout before per-namespace rows.
const REGISTRY_KEY: &str = "registry";
/// The next id to hand out (JSON), present once the registry is stored as rows.
const NEXT_ID_KEY: &str = "next_id";
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
    /// Commits not yet made durable: how many were made, and how many of them are durable.
    committed: AtomicU64,
    durable: AtomicU64,
    /// One durable commit for the callers of [`Store::make_durable`] that wait together.
    flushes: Coalesced<()>,
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
    let corrupt = |message: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    if let Some(v) = table.get(NEXT_ID_KEY).map_err(|e| err(&e))? {
        let next_id: NsId =
            serde_json::from_slice(v.value()).map_err(|e| corrupt(format!("next_id: {e}")))?;
        let mut namespaces = Vec::new();
        match txn.open_table(NAMESPACES) {
            Ok(rows) => {
                for row in rows.iter().map_err(|e| err(&e))? {
                    let (k, v) = row.map_err(|e| err(&e))?;
                    let e: SnapshotEntry = serde_json::from_slice(v.value())
                        .map_err(|e| corrupt(format!("namespace row {}: {e}", k.value())))?;
                    if e.id.0 != k.value() {
                        return Err(corrupt(format!(
                            "namespace row {} holds namespace {}",
                            k.value(),
                            e.id
                        )));
                    }
                    namespaces.push(e);
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(err(&e)),
        }
        let snap = Snapshot {
            format: Snapshot::FORMAT,
            next_id,
            namespaces,
        };
        return Registry::from_snapshot(snap).map_err(|e| corrupt(e.to_string()));
    }
    let Some(v) = table.get(REGISTRY_KEY).map_err(|e| err(&e))? else {
        return Ok(Registry::new());
    };
    let snap: Snapshot = serde_json::from_slice(v.value()).map_err(|e| corrupt(e.to_string()))?;
    Registry::from_snapshot(snap).map_err(|e| corrupt(e.to_string()))
}

/// Whether the database still holds the registry as one snapshot (the old layout).
fn is_old_layout(db: &Database) -> Result<bool, redb::Error> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(STATE) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    Ok(table.get(NEXT_ID_KEY)?.is_none() && table.get(REGISTRY_KEY)?.is_some())
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
            committed: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            flushes: Coalesced::default(),
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

    /// Replace the stored registry, atomically and durably: every row written again (at
    /// start; changes use [`Store::save_changes`]). A database in the old layout is
    /// rewritten in the new one in the same transaction.
    pub fn save_registry(&self, reg: &Registry) -> Result<(), StoreError> {
        self.write(reg, None)
    }

    /// Store `next` in place of `prev` (what is stored now), atomically, writing only the rows
    /// of the namespaces that changed; durable once [`Store::make_durable`] returns.
    pub fn save_changes(&self, prev: &Registry, next: &Registry) -> Result<(), StoreError> {
        self.write(next, Some(prev))?;
        self.committed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Make every commit made before this call durable: at once if they are, else by one
    /// durable commit (of nothing more) shared with the callers waiting meanwhile.
    pub fn make_durable(&self) -> Result<(), StoreError> {
        let want = self.committed.load(Ordering::SeqCst);
        if self.durable.load(Ordering::SeqCst) >= want {
            return Ok(());
        }
        self.flushes
            .get(|| {
                // Counted after each commit returned: every commit counted here is in the
                // database this transaction makes durable.
                let upto = self.committed.load(Ordering::SeqCst);
                let txn = self.db.begin_write().map_err(|e| e.to_string())?;
                txn.commit().map_err(|e| e.to_string())?;
                self.durable.fetch_max(upto, Ordering::SeqCst);
                Ok(())
            })
            .map(drop)
            .map_err(|message| StoreError::Db {
                path: self.path.clone(),
                message: format!("making changes durable: {message}"),
            })
    }

    fn write(&self, next: &Registry, prev: Option<&Registry>) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(|e| self.err(e))?;
        if prev.is_some() {
            // A change: made durable by `make_durable`, with the others waiting then.
            txn.set_durability(redb::Durability::None)
                .map_err(|e| self.err(e))?;
        }
        {
            let mut state = txn.open_table(STATE).map_err(|e| self.err(e))?;
            let mut rows = txn.open_table(NAMESPACES).map_err(|e| self.err(e))?;
            let (changed, gone): (Vec<NsId>, Vec<NsId>) = match prev {
                Some(prev) => next.changes_since(prev),
                None => {
                    // Everything: rows no longer in the registry go too.
                    let stale: Vec<u32> = rows
                        .iter()
                        .map_err(|e| self.err(e))?
                        .filter_map(|r| r.ok().map(|(k, _)| k.value()))
                        .filter(|id| !next.contains(NsId(*id)))
                        .collect();
                    let all = next.iter().map(|(id, _)| id).filter(|id| *id != NsId::ROOT);
                    (all.collect(), stale.into_iter().map(NsId).collect())
                }
            };
            for id in changed {
                let Some(e) = next.entry(id) else { continue };
                let bytes = serde_json::to_vec(&e).map_err(|e| self.err(e))?;
                rows.insert(id.0, bytes.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            for id in gone {
                rows.remove(id.0).map_err(|e| self.err(e))?;
            }
            let next_id = serde_json::to_vec(&next.next_id()).map_err(|e| self.err(e))?;
            state
                .insert(NEXT_ID_KEY, next_id.as_slice())
                .map_err(|e| self.err(e))?;
            if prev.is_none() {
                state.remove(REGISTRY_KEY).map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// Rewrite a database that holds the registry as one snapshot (written before rows
    /// existed) in the row layout, once; whether it did.
    pub fn migrate(&self) -> Result<bool, StoreError> {
        if !is_old_layout(&self.db).map_err(|e| self.err(e))? {
            return Ok(false);
        }
        let reg = self.load_registry()?;
        self.save_registry(&reg)?;
        Ok(true)
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

impl Drop for Store {
    /// Changes committed but not yet durable (a request still on its way out at shutdown)
    /// are made durable.
    fn drop(&mut self) {
        if let Err(e) = self.make_durable() {
            tracing::error!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfns_model::NsPath;

    /// The registry in the database file as the disk has it now (a copy opened apart).
    fn on_disk(path: &Path) -> Registry {
        let copy = path.with_extension("copy");
        std::fs::copy(path, &copy).unwrap();
        let reg = Store::open(&copy).unwrap().load_registry().unwrap();
        std::fs::remove_file(&copy).unwrap();
        reg
    }

    #[test]
    fn a_change_is_on_disk_once_made_durable_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bpfns.redb");
        let store = Store::open(&path).unwrap();
        let a = NsPath::parse("/a").unwrap();
        let mut reg = Registry::new();
        store.save_registry(&reg).unwrap();
        let prev = reg.clone();
        reg.create(&a).unwrap();
        store.save_changes(&prev, &reg).unwrap();
        // Readers of this process see it at once; the disk does not have it yet.
        assert!(store.load_registry().unwrap().id(&a).is_some());
        assert!(on_disk(&path).id(&a).is_none());
        store.make_durable().unwrap();
        assert!(on_disk(&path).id(&a).is_some());
        // Nothing left to make durable: no commit at all.
        let before = std::fs::metadata(&path).unwrap().len();
        store.make_durable().unwrap();
        assert_eq!(store.durable.load(Ordering::SeqCst), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
    }

    #[test]
    fn changes_made_from_many_threads_are_all_made_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bpfns.redb");
        let store = std::sync::Arc::new(Store::open(&path).unwrap());
        let reg = std::sync::Mutex::new(Registry::new());
        std::thread::scope(|s| {
            for i in 0..8 {
                let (store, reg) = (&store, &reg);
                s.spawn(move || {
                    {
                        let mut reg = reg.lock().unwrap();
                        let prev = reg.clone();
                        reg.create(&NsPath::parse(&format!("/n{i}")).unwrap())
                            .unwrap();
                        store.save_changes(&prev, &reg).unwrap();
                    }
                    store.make_durable().unwrap();
                });
            }
        });
        assert_eq!(store.durable.load(Ordering::SeqCst), 8);
        assert_eq!(on_disk(&path).len(), Registry::new().len() + 8);
    }

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
    fn changes_write_their_rows_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bpfns.redb");
        let store = Store::open(&path).unwrap();
        let mut reg = Registry::new();
        for p in ["/a", "/a/b", "/c"] {
            let prev = reg.clone();
            reg.create(&NsPath::parse(p).unwrap()).unwrap();
            store.save_changes(&prev, &reg).unwrap();
        }
        let prev = reg.clone();
        reg.delete(&NsPath::parse("/a/b").unwrap()).unwrap();
        reg.set_max_objects(reg.id(&NsPath::parse("/c").unwrap()).unwrap(), 7);
        store.save_changes(&prev, &reg).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        let back = store.load_registry().unwrap();
        assert_eq!(back.snapshot(), reg.snapshot());
        assert_eq!(
            back.next_id(),
            reg.next_id(),
            "ids are never handed out twice"
        );
        assert_eq!(rows(&store), 2, "the deleted namespace's row is gone");
    }

    fn rows(store: &Store) -> usize {
        let txn = store.db.begin_read().unwrap();
        let t = txn.open_table(NAMESPACES).unwrap();
        t.iter().unwrap().count()
    }

    /// A database written before rows existed: the registry as one JSON snapshot.
    fn old_layout(path: &Path, reg: &Registry) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(STATE).unwrap();
            let bytes = serde_json::to_vec(&reg.snapshot()).unwrap();
            t.insert(REGISTRY_KEY, bytes.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }

    #[test]
    fn an_old_snapshot_is_read_and_migrated_to_rows_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bpfns.redb");
        let mut reg = Registry::new();
        reg.create(&NsPath::parse("/a").unwrap()).unwrap();
        reg.create(&NsPath::parse("/a/b").unwrap()).unwrap();
        reg.create(&NsPath::parse("/gone").unwrap()).unwrap();
        reg.delete(&NsPath::parse("/gone").unwrap()).unwrap();
        old_layout(&path, &reg);
        // Read as it is, without writing (`bpfnsd --check`).
        let peeked = Store::peek_registry(&path).unwrap().unwrap();
        assert_eq!(peeked.snapshot(), reg.snapshot());
        let store = Store::open(&path).unwrap();
        assert!(store.migrate().unwrap());
        assert!(!store.migrate().unwrap(), "migrated twice");
        assert_eq!(rows(&store), 2);
        let back = store.load_registry().unwrap();
        assert_eq!(back.snapshot(), reg.snapshot());
        assert_eq!(
            back.next_id(),
            reg.next_id(),
            "the deleted namespace's id is not reused"
        );
        {
            let txn = store.db.begin_read().unwrap();
            let t = txn.open_table(STATE).unwrap();
            assert!(
                t.get(REGISTRY_KEY).unwrap().is_none(),
                "the old snapshot stays"
            );
        }
        // And changes after it land in rows.
        let prev = back.clone();
        let mut next = back;
        next.create(&NsPath::parse("/a/c").unwrap()).unwrap();
        store.save_changes(&prev, &next).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.load_registry().unwrap().snapshot(), next.snapshot());
    }

    #[test]
    fn old_policy_rows_read_as_they_meant_and_new_ones_round_trip() {
        use bpfns_model::{Policy, TypeSet};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bpfns.redb");
        let store = Store::open(&path).unwrap();
        let mut reg = Registry::new();
        reg.create(&NsPath::parse("/t").unwrap()).unwrap();
        store.save_registry(&reg).unwrap();
        // Rows as bpfnsd wrote them when the policy was one switch (or before it existed).
        {
            let txn = store.db.begin_write().unwrap();
            {
                let mut t = txn.open_table(NAMESPACES).unwrap();
                let row = br#"{"id":1,"parent":0,"path":"/t","policy":{"allow_tracing":true}}"#;
                t.insert(1, row.as_slice()).unwrap();
                let row = br#"{"id":2,"parent":1,"path":"/t/x","max_objects":10}"#;
                t.insert(2, row.as_slice()).unwrap();
                let mut st = txn.open_table(STATE).unwrap();
                st.insert(NEXT_ID_KEY, b"3".as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let back = store.load_registry().unwrap();
        assert_eq!(back.policy(NsId(1)), Some(Policy::tracing(true)));
        assert_eq!(back.policy(NsId(2)), Some(Policy::DEFAULT));
        assert_eq!(back.effective_policy(NsId(2)), Some(Policy::DEFAULT));
        // A four-set policy is written and read back as it was.
        let prev = back.clone();
        let mut next = back;
        let mut p = Policy::DEFAULT;
        p.progs = TypeSet::of([1]);
        p.maps = TypeSet::ANY.minus(TypeSet::of([1]));
        next.set_policy(&NsPath::parse("/t/x").unwrap(), p).unwrap();
        store.save_changes(&prev, &next).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        let again = store.load_registry().unwrap();
        assert_eq!(again.policy(NsId(2)), Some(p));
        assert_eq!(again.snapshot(), next.snapshot());
    }

    #[test]
    fn a_damaged_row_is_reported_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bpfns.redb");
        let store = Store::open(&path).unwrap();
        let mut reg = Registry::new();
        reg.create(&NsPath::parse("/a").unwrap()).unwrap();
        store.save_registry(&reg).unwrap();
        {
            let txn = store.db.begin_write().unwrap();
            {
                let mut t = txn.open_table(NAMESPACES).unwrap();
                t.insert(99, b"{not json".as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let e = store.load_registry().unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
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
