//! A namespace's cgroup: the cgroup v2 subtree its members may attach programs to (the
//! supervisor checks every cgroup target against it). Bound when the namespace is created
//! with `--cgroup`, else by the cgroup of its first member placed by host root (a
//! container's own cgroup for a container), never by a member's choice; unrelated
//! namespaces never share one. A namespace bound to none attaches to no cgroup.

use bpfns_model::{NsId, NsPath, Registry};
use bpfns_proto::ErrorCode;

use super::{Daemon, Failure};

/// `raw` (a path below the cgroup2 root, `/x/y`, or one under the cgroup2 mount itself,
/// `/sys/fs/cgroup/x/y`) as the registry keeps it: below the root, no `.`, `..` or empty
/// parts; the cgroup must exist.
pub(super) fn canonical(raw: &str) -> Result<String, Failure> {
    let bad = |why: String| Failure::new(ErrorCode::BadRequest, why);
    let root = bpfns_sys::cgroup::cgroup2_root().map_err(|e| bad(format!("{e}")))?;
    let root_s = root.display().to_string();
    let below = match raw.strip_prefix(root_s.as_str()) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => raw,
    };
    if !below.is_empty() && !below.starts_with('/') {
        return Err(bad(format!(
            "cgroup {raw:?} is not absolute; fix: give its path below {root_s} (/x/y) or \
             under it ({root_s}/x/y)"
        )));
    }
    let mut parts = Vec::new();
    for c in below.split('/').filter(|c| !c.is_empty()) {
        if c == "." || c == ".." {
            return Err(bad(format!(
                "cgroup {raw:?} holds {c:?}; fix: give the path without . or .."
            )));
        }
        parts.push(c);
    }
    let path = format!("/{}", parts.join("/"));
    bpfns_sys::cgroup::id_of(&path).map_err(|e| {
        Failure::new(
            ErrorCode::NotFound,
            format!(
                "no cgroup v2 cgroup {path} below {root_s} ({e}); fix: create it first \
                 (mkdir {root_s}{path})"
            ),
        )
    })?;
    Ok(path)
}

/// Whether `path` is `outer` or below it.
pub(super) fn is_within(path: &str, outer: &str) -> bool {
    outer == "/"
        || path == outer
        || path
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Why namespace `id` may not be bound to `path` by a caller of namespace `by` (the root for
/// host root, and for bindings bpfnsd makes from a member's cgroup): a namespace stays
/// inside the cgroup of its nearest bound ancestor, so a member that creates a namespace
/// cannot widen what its own may reach; and a member may bind a namespace only inside one
/// bound ancestor's cgroup.
pub(super) fn refusal(reg: &Registry, id: NsId, path: &str, by: NsId) -> Option<String> {
    let mut up = reg.parent(id);
    while let Some(a) = up.filter(|a| !a.is_root()) {
        if let Some(outer) = reg.cgroup(a) {
            return (!is_within(path, outer)).then(|| {
                format!(
                    "cgroup {path} is outside the cgroup {outer} of {}; fix: bind it to \
                     {outer} or a cgroup below it",
                    reg.path(a).map(|p| p.to_string()).unwrap_or_default()
                )
            });
        }
        up = reg.parent(a);
    }
    (!by.is_root()).then(|| {
        "no namespace above it is bound to a cgroup, so a member may not bind it; fix: ask \
         host root, or let a member enter the namespace (its cgroup binds it)"
            .to_string()
    })
}

/// Why namespace `id` may not be bound to `path` because another namespace, neither its
/// ancestor nor its descendant, is bound to `path`, a cgroup above it or one below it: the
/// programs of either would run on the other's members (and each could attach to cgroups
/// the other's members are in). The root cgroup is exempt: host root binds a namespace to
/// it only on purpose (`--cgroup /`: attach anywhere), which confines nothing to share. The
/// reason names the other namespace and its cgroup only where `viewer` (the caller's
/// namespace) sees it.
pub(super) fn overlap(reg: &Registry, id: NsId, path: &str, viewer: NsId) -> Option<String> {
    let here = reg.path(id)?;
    let sees = |other: &bpfns_model::NsPath| {
        viewer.is_root()
            || reg
                .path(viewer)
                .is_some_and(|v| v.is_same_or_ancestor_of(other))
    };
    if path == "/" {
        return None;
    }
    reg.iter().find_map(|(other, op)| {
        if other == id || other.is_root() {
            return None;
        }
        if op.is_same_or_ancestor_of(here) || here.is_same_or_ancestor_of(op) {
            return None;
        }
        let c = reg.cgroup(other).filter(|c| *c != "/")?;
        (is_within(path, c) || is_within(c, path)).then(|| {
            let whose = if sees(op) {
                format!("the cgroup {c} of namespace {op}, which is not related to {here}")
            } else {
                format!("the cgroup of a namespace not related to {here}")
            };
            format!(
                "cgroup {path} overlaps {whose}: each could attach programs to the other's \
                 processes; fix: give {here} a cgroup of its own (mkdir one, move its processes \
                 there, and bpfns ns create {here} --cgroup PATH)"
            )
        })
    })
}

impl Daemon {
    /// Bind namespace `id` to the cgroup v2 cgroup of process `pid`, its first member (or a
    /// container's init), unless it is bound already. A member in the root cgroup binds
    /// nothing: that would confine nothing. Only for processes a host administrator in the
    /// root namespace placed (`enter` by host root, `enter_container`): a member chooses its
    /// own cgroup (where cgroupfs is writable to it) and so would choose the binding.
    pub(super) fn bind_first_cgroup(&self, id: NsId, p: &NsPath, pid: i32) {
        if self.reg().cgroup(id).is_some() {
            return;
        }
        let text = match std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(namespace = %p, pid, "the namespace stays bound to no cgroup (its members may attach to none): reading /proc/{pid}/cgroup: {e}");
                return;
            }
        };
        let Some(line) = bpfns_sys::procfs::cgroup_lines(&text)
            .into_iter()
            .find(|l| l.hierarchy == 0)
        else {
            tracing::warn!(namespace = %p, pid, "the namespace stays bound to no cgroup (its members may attach to none): process {pid} is in no cgroup v2 cgroup");
            return;
        };
        if line.path == "/" {
            tracing::info!(namespace = %p, pid, "the namespace stays bound to no cgroup (its members may attach to none): its first member is in the root cgroup; fix: bpfns ns create --cgroup PATH, or enter from a cgroup of its own");
            return;
        }
        let mut tx = self.begin();
        if tx.next.cgroup(id).is_some() || tx.next.path(id).is_none() {
            return;
        }
        if let Some(why) = refusal(&tx.next, id, &line.path, NsId::ROOT)
            .or_else(|| overlap(&tx.next, id, &line.path, NsId::ROOT))
        {
            tracing::warn!(namespace = %p, pid, cgroup = %line.path, "the namespace stays bound to no cgroup: {why}");
            return;
        }
        tx.next.set_cgroup(id, line.path.clone());
        match tx.commit() {
            Ok(()) => {
                tracing::info!(namespace = %p, pid, cgroup = %line.path, "namespace bound to its first member's cgroup: its members may attach programs to it and the cgroups below it")
            }
            Err(e) => {
                tracing::warn!(namespace = %p, pid, "binding the namespace to cgroup {}: {}", line.path, e.message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_is_by_whole_path_components() {
        assert!(is_within("/a/b", "/a"));
        assert!(is_within("/a", "/a"));
        assert!(is_within("/x", "/"));
        assert!(!is_within("/ab", "/a"));
        assert!(!is_within("/a", "/a/b"));
        assert!(!is_within("/", "/a"));
    }

    #[test]
    fn a_child_stays_inside_its_parents_cgroup() {
        let mut reg = Registry::new();
        let a = reg.create(&"/a".parse().unwrap()).unwrap();
        let ab = reg.create(&"/a/b".parse().unwrap()).unwrap();
        let abc = reg.create(&"/a/b/c".parse().unwrap()).unwrap();
        let host = NsId::ROOT;
        assert!(
            refusal(&reg, a, "/anything", host).is_none(),
            "below the root: any"
        );
        assert!(
            refusal(&reg, ab, "/t/x", host).is_none(),
            "nothing bound above"
        );
        assert!(
            refusal(&reg, ab, "/t/x", a).is_some(),
            "a member binds only inside"
        );
        reg.set_cgroup(a, "/t".into());
        for by in [host, a] {
            assert!(refusal(&reg, ab, "/t/x", by).is_none());
            assert!(refusal(&reg, ab, "/t", by).is_none());
            assert!(refusal(&reg, ab, "/u", by).is_some());
            assert!(refusal(&reg, ab, "/", by).is_some());
            assert!(
                refusal(&reg, abc, "/t/y", by).is_none(),
                "the nearest bound ancestor"
            );
            assert!(refusal(&reg, abc, "/", by).is_some());
        }
    }

    #[test]
    fn unrelated_namespaces_do_not_share_a_cgroup() {
        let mut reg = Registry::new();
        let a = reg.create(&"/a".parse().unwrap()).unwrap();
        let ab = reg.create(&"/a/b".parse().unwrap()).unwrap();
        let c = reg.create(&"/c".parse().unwrap()).unwrap();
        reg.set_cgroup(a, "/x".into());
        assert!(
            overlap(&reg, ab, "/x", NsId::ROOT).is_none(),
            "a descendant may share"
        );
        assert!(overlap(&reg, ab, "/x/y", NsId::ROOT).is_none());
        assert!(
            overlap(&reg, c, "/x", NsId::ROOT).is_some(),
            "a sibling may not"
        );
        assert!(
            overlap(&reg, c, "/x/y", NsId::ROOT).is_some(),
            "nor below it"
        );
        assert!(
            overlap(&reg, c, "/", NsId::ROOT).is_none(),
            "the root cgroup: on purpose"
        );
        assert!(
            overlap(&reg, c, "/xy", NsId::ROOT).is_none(),
            "by whole components"
        );
        let why = overlap(&reg, c, "/x", NsId::ROOT).unwrap();
        assert!(why.contains("/a") && why.contains("/c") && why.contains("--cgroup"));
        // A member of /c is not told which namespace holds /x, nor where it is bound.
        let why = overlap(&reg, c, "/x/y", c).unwrap();
        assert!(!why.contains("/a") && !why.contains("cgroup /x "), "{why}");
        assert!(why.contains("/c") && why.contains("--cgroup"), "{why}");
        reg.set_cgroup(c, "/z".into());
        assert!(
            overlap(&reg, a, "/x", NsId::ROOT).is_none(),
            "its own binding is no overlap"
        );
    }

    #[test]
    fn bad_cgroup_paths_are_refused() {
        assert!(canonical("x").is_err());
        assert!(canonical("/a/../b").is_err());
        assert!(canonical("/bpfns-no-such-cgroup-here").is_err());
        if bpfns_sys::cgroup::cgroup2_root().is_ok() {
            assert_eq!(canonical("/").unwrap(), "/");
            let root = bpfns_sys::cgroup::cgroup2_root().unwrap();
            assert_eq!(canonical(&root.display().to_string()).unwrap(), "/");
        }
    }
}
