//! Containers' namespaces over the containers' lives: where a container goes
//! (`container_namespace`, asked by bpfns-oci before the runtime creates it), what bpfnsd
//! made for it (recorded in the state database), and deleting that when the container is
//! gone: deleted by its runtime and removed by its engine, or vanished (see
//! [`bpfns_model::container::gone`]). See docs/containers.md.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bpfns_model::container::{gone, ContainerFacts, ContainerRecord, Containers, Gone, Observed};
use bpfns_model::{NsId, NsPath, Policy};
use bpfns_proto::{ErrorCode, Reply};

use super::{Answer, Daemon, Failure};
use crate::caller::Caller;

/// How many collected containers `status` lists.
const RECENT_COLLECTED: usize = 32;
/// How long after the runtime's `delete` a container's bundle is watched for its removal.
const WATCH_AFTER_DELETE: std::time::Duration = std::time::Duration::from_secs(30);
/// How often watched bundles are looked at.
const WATCH_STEP: std::time::Duration = std::time::Duration::from_millis(200);

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn exists(p: &Option<String>) -> bool {
    p.as_deref()
        .is_some_and(|p| std::fs::symlink_metadata(Path::new(p)).is_ok())
}

/// What runtimes send about a container (see `Op::ContainerNamespace`).
#[derive(Debug)]
pub struct ContainerRequest {
    pub facts: ContainerFacts,
    pub bundle: Option<String>,
    pub state_dir: Option<String>,
}

impl Daemon {
    fn runtime_only(caller: &Caller, op: &str) -> Result<(), Failure> {
        if caller.host_admin() && caller.ns == NsId::ROOT {
            return Ok(());
        }
        Err(Failure::new(
            ErrorCode::Denied,
            format!(
                "{op} is for container runtimes: it needs CAP_SYS_ADMIN in the initial user \
                 namespace, outside any bpfns namespace"
            ),
        ))
    }

    fn containers(&self) -> std::sync::MutexGuard<'_, Containers> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save_containers(&self, c: &Containers) -> Result<(), Failure> {
        self.store.save_containers(c).map_err(Failure::internal)
    }

    /// bpfnsd itself as a caller (host root, outside namespaces): for the deletions it
    /// decides on its own.
    fn itself(&self) -> Result<Caller, Failure> {
        let pid = std::process::id() as i32;
        let fd = bpfns_sys::process::open_pidfd(pid).map_err(Failure::internal)?;
        Caller::of_process(pid, 0, fd, &self.kernel, self.init_userns).map_err(Failure::internal)
    }

    /// `container_namespace`: place a container, creating its namespace (and missing
    /// ancestors, as far as the caller may create them) and recording it.
    pub(crate) fn container_namespace(&self, caller: &Caller, req: ContainerRequest) -> Answer {
        Self::runtime_only(caller, "container_namespace")?;
        let id = req.facts.id.clone();
        let mut table = self.containers();
        // The placement the settings give now: a container created again after the operator
        // changed them goes where they say (or is refused), not where it was.
        let placement = self
            .config
            .containers
            .naming()
            .place(&req.facts)
            .map_err(|e| Failure::new(ErrorCode::BadRequest, format!("container {id}: {e}")))?;
        // Created again (podman creates a stopped container anew at `start`): the same
        // namespace, its pins with it, as long as it exists. Only the same container, i.e.
        // the same bundle and runtime state directory: another runtime root (a containerd
        // namespace, a `--root`) may reuse the id, and must not land in this namespace.
        if let Some(rec) = table.records.get(&id).cloned() {
            let same = rec.is_same_container(req.bundle.as_deref(), req.state_dir.as_deref());
            if same
                && rec.namespace == placement.path.to_string()
                && self.reg().id(&placement.path).is_some()
            {
                // Still stopped (`released`) until its createRuntime hook has run: a create
                // the runtime then fails leaves a stopped container, not a vanished one.
                let rec = ContainerRecord {
                    since: now_secs(),
                    ..rec
                };
                let path = rec.namespace.clone();
                table.records.insert(id.clone(), rec);
                self.save_containers(&table)?;
                tracing::info!(container = %id, namespace = %path, "container created again: same namespace");
                return Ok((
                    Reply::ContainerNamespace {
                        path,
                        created: false,
                        again: true,
                    },
                    vec![],
                ));
            }
            if !same {
                // Another container with this id: the recorded one must be gone first.
                let members = self.members_by_ns()?;
                self.collect_if_gone(&mut table, &id, &members, &mut Vec::new());
                if let Some(rec) = table.records.get(&id) {
                    tracing::warn!(container = %id, namespace = %rec.namespace, bundle = ?req.bundle, state_dir = ?req.state_dir, "refused a container reusing the id of one that is not gone");
                    return Err(Failure::new(
                        ErrorCode::Conflict,
                        format!(
                            "container {id}: another container with this id (bundle {}, \
                             runtime state {}) is not gone; container ids must be unique on \
                             the host while bpfns places containers: remove the other one, or \
                             choose another id",
                            rec.bundle.as_deref().unwrap_or("unknown"),
                            rec.state_dir.as_deref().unwrap_or("unknown"),
                        ),
                    ));
                }
            } else {
                // Its namespace was deleted by hand meanwhile, or the settings place it
                // elsewhere now: placed afresh (the namespace it leaves goes as any other).
                if let Some((old, Some(delete))) = table.remove(&id) {
                    if let Err(e) = self.delete_made(&mut table, &delete) {
                        tracing::info!(container = %id, namespace = %old.namespace, "left behind for the next collection: {e}");
                    }
                }
            }
        }
        // What stands for a container (its bundle, or its writable layer) is its own: one
        // that stands for another container too would keep either from being collected.
        if let Some(b) = &req.bundle {
            if let Some((other, _)) = table
                .records
                .iter()
                .find(|(k, r)| **k != id && r.bundle.as_ref() == Some(b))
            {
                return Err(Failure::new(
                    ErrorCode::Conflict,
                    format!(
                        "container {id}: its bundle (or writable layer) {b} is container \
                         {other}'s; each container needs its own"
                    ),
                ));
            }
        }
        let path = placement.path.to_string();
        // Containers that were removed but not yet collected give their namespace up first
        // (`podman rm web && podman run --name web` gets a fresh one).
        let before: Vec<String> = table
            .records
            .iter()
            .filter(|(_, r)| r.namespace == path)
            .map(|(k, _)| k.clone())
            .collect();
        if !before.is_empty() {
            let members = self.members_by_ns()?;
            for other in before {
                self.collect_if_gone(&mut table, &other, &members, &mut Vec::new());
            }
        }
        // A namespace bpfnsd made for containers none of which is left (its deletion failed:
        // a namespace below it, a member): gone first, or this container does not start,
        // so that nobody lands in what another container left.
        if table.made.contains(&path) && table.users(&path) == 0 {
            if let Err(e) = self.delete_made(&mut table, &path) {
                return Err(Failure::new(
                    ErrorCode::Conflict,
                    format!(
                        "container {id}: namespace {path} is left from a container that is \
                         gone and cannot be deleted ({e}); delete it (bpfns ns delete -r \
                         {path}), or give the container another name"
                    ),
                ));
            }
        }
        if placement.source == bpfns_model::container::Source::Name {
            if let Some((other, _)) = table.records.iter().find(|(_, r)| r.namespace == path) {
                return Err(Failure::new(
                    ErrorCode::Conflict,
                    format!(
                        "container {id}: its namespace {path} belongs to container {other}, \
                         which is not gone; give the container another name, or set \
                         [containers] name = \"{{name}}-{{short_id}}\" in bpfnsd.toml"
                    ),
                ));
            }
        }
        // Recorded before the namespace is made: after a crash in between, bpfnsd knows it
        // as made for this container (and forgets it once it finds it missing), rather than
        // leaving a namespace it made that nothing would delete.
        let missing = self.reg().id(&placement.path).is_none();
        if missing {
            table.made.insert(path.clone());
        }
        table.records.insert(
            id.clone(),
            ContainerRecord {
                namespace: path.clone(),
                bundle: req.bundle,
                state_dir: req.state_dir,
                released: false,
                since: now_secs(),
            },
        );
        self.save_containers(&table)?;
        let step = self.make_path(caller, &id, &placement.path);
        let created = match step {
            Ok(c) => {
                if missing && !c {
                    // Someone else made it meanwhile: not bpfnsd's to delete.
                    table.made.remove(&path);
                    self.save_containers(&table)?;
                }
                c
            }
            Err(f) => {
                table.records.remove(&id);
                if missing && self.reg().id(&placement.path).is_none() {
                    table.made.remove(&path);
                }
                if let Err(g) = self.save_containers(&table) {
                    tracing::warn!(container = %id, "forgetting it: {}", g.message);
                }
                return Err(f);
            }
        };
        tracing::info!(container = %id, namespace = %path, created, source = ?placement.source, "placed a container");
        Ok((
            Reply::ContainerNamespace {
                path,
                created,
                again: false,
            },
            vec![],
        ))
    }

    /// Create `path` and its missing ancestors as `caller` (another container may create them
    /// meanwhile); whether `path` itself was created now.
    fn make_path(&self, caller: &Caller, id: &str, path: &NsPath) -> Result<bool, Failure> {
        let mut created = false;
        let mut prefix = NsPath::root();
        for part in path.components() {
            prefix = prefix.join(part).map_err(Failure::internal)?;
            if self.reg().id(&prefix).is_some() {
                continue;
            }
            match self.ns_create(
                caller,
                prefix.as_str(),
                Policy::default(),
                (None, bpfns_model::quota::KindLimits::NONE),
                None,
            ) {
                Ok(_) => created = prefix == *path,
                Err(f) if f.code == ErrorCode::Conflict && self.reg().id(&prefix).is_some() => {}
                Err(f) => {
                    return Err(Failure::new(
                        f.code,
                        format!("container {id}: creating {prefix}: {}", f.message),
                    ))
                }
            }
        }
        Ok(created)
    }

    /// `container_deleted`: the runtime deleted container `id`. Stopped, perhaps not removed
    /// (podman deletes a stopped container from the runtime and creates it again at
    /// `start`): its namespace goes now if its engine removed its bundle, else at the
    /// collection after the engine does.
    pub(crate) fn container_deleted(
        &self,
        caller: &Caller,
        id: &str,
        state_dir: Option<&str>,
    ) -> Answer {
        Self::runtime_only(caller, "container_deleted")?;
        let mut table = self.containers();
        // Only the container of the runtime that deleted it: another runtime root may use
        // the same id (a runtime without a state directory is trusted with the id alone).
        let rec = table.records.get_mut(id).filter(|r| {
            state_dir.is_none() || r.state_dir.is_none() || r.state_dir.as_deref() == state_dir
        });
        let Some(rec) = rec else {
            return Ok((
                Reply::ContainerReleased {
                    id: id.into(),
                    namespace: None,
                    deleted: vec![],
                },
                vec![],
            ));
        };
        rec.released = true;
        let namespace = rec.namespace.clone();
        self.save_containers(&table)?;
        let members = self.members_by_ns()?;
        let mut deleted = Vec::new();
        self.collect_if_gone(&mut table, id, &members, &mut deleted);
        if table.records.contains_key(id) {
            // Engines remove the bundle right after the runtime's delete when they remove
            // the container (`podman rm`): watched for a while, so that its namespace goes
            // then rather than at the next collection.
            self.watched_containers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    id.to_string(),
                    std::time::Instant::now() + WATCH_AFTER_DELETE,
                );
        }
        Ok((
            Reply::ContainerReleased {
                id: id.into(),
                namespace: Some(namespace),
                deleted,
            },
            vec![],
        ))
    }

    /// A container of namespace `path` had its createRuntime hook run: stopped containers
    /// of it whose runtime state exists again (created again, `podman start`) run again, so
    /// that they count as vanished if that state goes without a delete.
    pub(crate) fn containers_started(&self, path: &NsPath) {
        let path = path.to_string();
        let mut table = self.containers();
        let mut changed = false;
        for rec in table.records.values_mut() {
            if rec.namespace == path && rec.released && exists(&rec.state_dir) {
                rec.released = false;
                rec.since = now_secs();
                changed = true;
            }
        }
        if changed {
            if let Err(f) = self.save_containers(&table) {
                tracing::warn!(namespace = %path, "recording a container started: {}", f.message);
            }
        }
    }

    /// Live tasks per namespace.
    fn members_by_ns(&self) -> Result<HashMap<NsId, usize>, Failure> {
        let mut m = HashMap::new();
        for t in self.kernel.tagged_tasks().map_err(Failure::internal)? {
            *m.entry(t.ns).or_insert(0) += 1;
        }
        Ok(m)
    }

    /// Forget container `id` if it is gone, and delete the namespace bpfnsd made for it if
    /// no other container is in it; what was deleted goes to `deleted`.
    fn collect_if_gone(
        &self,
        table: &mut Containers,
        id: &str,
        members: &HashMap<NsId, usize>,
        deleted: &mut Vec<String>,
    ) {
        let Some(rec) = table.records.get(id) else {
            return;
        };
        let ns = NsPath::parse(&rec.namespace)
            .ok()
            .and_then(|p| self.reg().id(&p));
        let obs = Observed {
            bundle_exists: exists(&rec.bundle),
            state_exists: exists(&rec.state_dir),
            members: ns.and_then(|n| members.get(&n).copied()).unwrap_or(0),
            age_secs: now_secs().saturating_sub(rec.since),
        };
        // A namespace deleted by hand: nothing is left to collect but the record.
        let why = if ns.is_none() {
            Some("its namespace no longer exists")
        } else {
            match gone(rec, obs, self.config.containers.vanish_grace_secs) {
                Some(Gone::Removed) => Some("removed (its bundle is gone)"),
                Some(Gone::Vanished) => Some("vanished (no runtime state, no live task)"),
                None => None,
            }
        };
        let Some(why) = why else { return };
        let Some((rec, delete)) = table.remove(id) else {
            return;
        };
        if let Err(f) = self.save_containers(table) {
            tracing::warn!(container = %id, "recording that it is gone: {}", f.message);
        }
        let mut line = format!("{id} {}: {why}", rec.namespace);
        if let Some(path) = delete {
            match self.delete_made(table, &path) {
                Ok(()) => {
                    deleted.push(path.clone());
                    line.push_str("; namespace deleted");
                }
                Err(e) => line.push_str(&format!("; namespace kept for now: {e}")),
            }
        }
        tracing::info!("collected container {line}");
        self.collected_containers_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut recent = self
            .collected_containers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if recent.len() >= RECENT_COLLECTED {
            recent.pop_front();
        }
        recent.push_back(line);
    }

    /// Delete namespace `path`, which bpfnsd made for containers none of which is left (its
    /// objects go to its parent, its pins to the parent's `orphans/`, as `ns delete` does);
    /// forgotten as made once deleted (or deleted by someone else).
    fn delete_made(&self, table: &mut Containers, path: &str) -> Result<(), String> {
        let me = self.itself().map_err(|f| f.message)?;
        // The namespaces below it are the container's too (its members made them): deepest
        // first; one with members stops it all.
        let below: Vec<String> = {
            let reg = self.reg();
            NsPath::parse(path)
                .ok()
                .and_then(|p| reg.id(&p))
                .map(|id| {
                    let mut ids = reg.subtree(id);
                    ids.retain(|&d| d != id);
                    ids.sort_by_key(|&d| std::cmp::Reverse(reg.depth(d).unwrap_or(0)));
                    ids.iter()
                        .filter_map(|&d| reg.path(d).map(|p| p.to_string()))
                        .collect()
                })
                .unwrap_or_default()
        };
        for p in below
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(path))
        {
            match self.ns_delete(&me, p, false) {
                Ok(_) => {}
                Err(f) if f.code == ErrorCode::NotFound => {}
                Err(f) => return Err(f.message),
            }
        }
        let result: Result<(), String> = Ok(());
        if result.is_ok() {
            table.made.remove(path);
            if let Err(f) = self.save_containers(table) {
                tracing::warn!(namespace = %path, "recording its deletion: {}", f.message);
            }
        }
        result
    }

    /// Collect every container that is gone, and delete the namespaces bpfnsd made that no
    /// container is in any more (deletions that failed before: a member task left behind).
    /// At start and every `[containers] collect_interval_secs`.
    pub fn collect_containers(&self) -> Result<Vec<String>, Failure> {
        let mut table = self.containers();
        let members = self.members_by_ns()?;
        let ids: Vec<String> = table.records.keys().cloned().collect();
        let mut deleted = Vec::new();
        for id in ids {
            self.collect_if_gone(&mut table, &id, &members, &mut deleted);
        }
        for path in table.unused_made() {
            match self.delete_made(&mut table, &path) {
                Ok(()) => deleted.push(path),
                Err(e) => tracing::debug!(namespace = %path, "not deleted yet: {e}"),
            }
        }
        Ok(deleted)
    }

    /// Collect the containers deleted by their runtime a short while ago whose bundle is gone
    /// now; stop watching those deleted longer ago.
    fn collect_watched(&self) {
        // Lock order: the container records, then the watch list (as `container_deleted`).
        let ids: Vec<String> = {
            let mut w = self
                .watched_containers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let now = std::time::Instant::now();
            w.retain(|_, until| *until > now);
            w.keys().cloned().collect()
        };
        if ids.is_empty() {
            return;
        }
        let due: Vec<String> = {
            let table = self.containers();
            let due: Vec<String> = ids
                .into_iter()
                .filter(|id| {
                    table
                        .records
                        .get(id)
                        .is_none_or(|r| r.bundle.is_some() && !exists(&r.bundle))
                })
                .collect();
            let mut w = self
                .watched_containers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for id in &due {
                w.remove(id);
            }
            due
        };
        if due.is_empty() {
            return;
        }
        let members = match self.members_by_ns() {
            Ok(m) => m,
            Err(f) => {
                tracing::warn!("collecting removed containers: {}", f.message);
                return;
            }
        };
        let mut table = self.containers();
        for id in due {
            self.collect_if_gone(&mut table, &id, &members, &mut Vec::new());
        }
    }

    /// How many containers bpfnsd keeps a record of, and the latest collected.
    pub(super) fn container_status(&self) -> (u32, Vec<String>) {
        let n = self.containers().records.len() as u32;
        let recent = self
            .collected_containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        (n, recent)
    }

    /// Collect containers that are gone at once and then every `interval` (zero: only now;
    /// containers deleted by their runtime are watched for their removal in any case), on a
    /// thread of its own, for as long as the daemon exists.
    pub fn spawn_container_collector(daemon: &Arc<Daemon>, interval: std::time::Duration) {
        let weak = Arc::downgrade(daemon);
        let spawned = std::thread::Builder::new()
            .name("bpfns-containers".into())
            .spawn(move || {
                let mut next = std::time::Instant::now();
                loop {
                    std::thread::sleep(WATCH_STEP);
                    let Some(d) = weak.upgrade() else { return };
                    d.collect_watched();
                    if std::time::Instant::now() < next {
                        continue;
                    }
                    next = if interval.is_zero() {
                        std::time::Instant::now() + std::time::Duration::from_secs(86_400 * 365)
                    } else {
                        std::time::Instant::now() + interval
                    };
                    match d.collect_containers() {
                        Ok(v) if v.is_empty() => {}
                        Ok(v) => tracing::info!(
                            namespaces = v.len(),
                            "deleted the namespaces of containers that are gone"
                        ),
                        Err(f) => tracing::warn!("collecting containers: {}", f.message),
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the container collector: {e}");
        }
    }
}
