//! `bpfns ns create|list|show|delete`: namespaces, through bpfnsd.

use anyhow::{Context, Result};
use bpfns_client::Client;
use bpfns_model::quota::{KindLimits, Usage};
use bpfns_model::{Field, NsPath, ObjectKind, Policy};
use bpfns_proto::{ErrorCode, NsInfo, ProcessInfo};
use serde::{Serialize, Serializer};

use crate::cli::PolicyFlags;
use crate::output::{Render, Table};

/// Namespaces: a JSON array; in text a tree-indented table.
#[derive(Debug, Clone)]
pub struct NsListing(pub Vec<NsInfo>);

impl Serialize for NsListing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Whether members may load tracing-class programs; the root is the host.
fn tracing_label(n: &NsInfo) -> &'static str {
    if n.depth == 0 {
        "host"
    } else {
        let p = n.effective_policy.unwrap_or(n.policy);
        if p.allows_tracing() {
            "allowed"
        } else if p.allows_some_tracing() {
            "some"
        } else {
            "denied"
        }
    }
}

/// The cgroup subtree its members may attach programs to.
fn cgroup_label(n: &NsInfo) -> String {
    match (&n.cgroup, n.depth) {
        (_, 0) => "any (the host)".to_string(),
        (Some(c), _) => format!("{c} and below"),
        (None, _) => "none (not bound: its first member's cgroup binds it)".to_string(),
    }
}

/// Ownership records in use against the limit (`17/1024`); `-` for the root (unlimited).
fn records_label(n: &NsInfo) -> String {
    match (n.records, n.max_objects) {
        (None, None) => "-".to_string(),
        (used, limit) => Usage {
            used: used.unwrap_or(0),
            limit,
        }
        .to_string(),
    }
}

/// Records in use per kind against each kind's limit, with its descendants':
/// `progs 1/8, maps 3/16, links 0, btf 0` (no limit of a kind: its count alone); `-` for the
/// root and older daemons.
fn kind_records_label(n: &NsInfo) -> String {
    let Some(used) = n.kind_records else {
        return "-".to_string();
    };
    ObjectKind::ALL
        .iter()
        .map(|k| {
            let u = match k {
                ObjectKind::Prog => used.prog,
                ObjectKind::Map => used.map,
                ObjectKind::Link => used.link,
                ObjectKind::Btf => used.btf,
            };
            let name = match k {
                ObjectKind::Prog => "progs",
                ObjectKind::Map => "maps",
                ObjectKind::Link => "links",
                ObjectKind::Btf => "btf",
            };
            let usage = Usage {
                used: u64::from(u),
                limit: n.kind_limits.get(*k),
            };
            format!("{name} {usage}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Bytes in binary units, one word (`1.3MiB`, `0B`); `-` when bpfnsd did not say (older
/// daemons).
pub fn human_bytes(b: Option<u64>) -> String {
    let Some(b) = b else {
        return "-".to_string();
    };
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b}B")
    } else if v < 10.0 {
        format!("{v:.1}{}", UNITS[u])
    } else {
        format!("{v:.0}{}", UNITS[u])
    }
}

fn ns_table(list: &[NsInfo]) -> Table {
    let mut t = Table::new([
        "NAMESPACE",
        "ID",
        "PROGS",
        "MAPS",
        "LINKS",
        "BTF",
        "MEMBERS",
        "TRACING",
        "RECORDS",
        // Last, so that scripts reading the columns before by position go on working.
        "MEMORY",
        "MEMORY-ALL",
    ]);
    for n in list {
        // Tree view: indent by depth, show the last component.
        let name = if n.depth == 0 {
            "/".to_string()
        } else {
            format!(
                "{}{}",
                "  ".repeat(n.depth as usize - 1),
                n.path.rsplit('/').next().unwrap_or(&n.path)
            )
        };
        t.row([
            name,
            n.id.to_string(),
            n.objects.prog.to_string(),
            n.objects.map.to_string(),
            n.objects.link.to_string(),
            n.objects.btf.to_string(),
            n.members.to_string(),
            tracing_label(n).to_string(),
            records_label(n),
            human_bytes(n.map_memory),
            human_bytes(n.map_memory_total),
        ]);
    }
    t
}

impl Render for NsListing {
    fn render_text(&self) -> String {
        ns_table(&self.0).render()
    }
}

/// A policy in names, for JSON: each field a list of names (`["any"]` for every number,
/// those of later kernels included), with `*_except` for "everything but" sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyNames {
    pub cmds: Vec<String>,
    pub maps: Vec<String>,
    pub progs: Vec<String>,
    pub attachs: Vec<String>,
    /// The same in words (`any but kprobe,tracepoint,...`), one per field.
    pub text: std::collections::BTreeMap<&'static str, String>,
    /// Whether every tracing-class program type is in `progs`.
    pub allow_tracing: bool,
}

impl PolicyNames {
    pub fn of(p: &Policy) -> Self {
        use bpfns_sys::names::{describe, names_in};
        let list = |f: Field| names_in(f, p.get(f));
        PolicyNames {
            cmds: list(Field::Cmds),
            maps: list(Field::Maps),
            progs: list(Field::Progs),
            attachs: list(Field::Attachs),
            text: Field::ALL
                .into_iter()
                .map(|f| (f.name(), describe(f, p.get(f))))
                .collect(),
            allow_tracing: p.allows_tracing(),
        }
    }
}

/// `policy` in text, one line a field, each indented by `indent`.
fn policy_lines(p: &Policy, indent: &str) -> String {
    Field::ALL
        .into_iter()
        .map(|f| {
            format!(
                "{indent}{:<8} {}\n",
                format!("{}:", f.name()),
                bpfns_sys::names::describe(f, p.get(f))
            )
        })
        .collect()
}

/// A namespace's policy: its own and the effective one (capped by its ancestors').
#[derive(Debug, Clone, Serialize)]
pub struct NsPolicy {
    pub path: String,
    pub policy: PolicyNames,
    pub effective: PolicyNames,
}

impl NsPolicy {
    fn of(n: &NsInfo) -> Self {
        NsPolicy {
            path: n.path.clone(),
            policy: PolicyNames::of(&n.policy),
            effective: PolicyNames::of(&n.effective_policy.unwrap_or(n.policy)),
        }
    }
}

fn effective_text(n: &NsInfo) -> String {
    let eff = n.effective_policy.unwrap_or(n.policy);
    if eff == n.policy {
        "  effective: the same (no ancestor caps it)\n".to_string()
    } else {
        format!(
            "  effective (capped by its ancestors'):\n{}",
            policy_lines(&eff, "    ")
        )
    }
}

/// `bpfns ns policy PATH`: the text form needs the numbers, so it is rendered from the info.
#[derive(Debug, Clone)]
pub struct NsPolicyShown(pub NsInfo);

impl Serialize for NsPolicyShown {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        NsPolicy::of(&self.0).serialize(s)
    }
}

impl Render for NsPolicyShown {
    fn render_text(&self) -> String {
        let n = &self.0;
        format!(
            "namespace {}\n  policy:\n{}{}",
            n.path,
            policy_lines(&n.policy, "    "),
            effective_text(n)
        )
    }
}

/// One namespace.
#[derive(Debug, Clone)]
pub struct NsOne(pub NsInfo);

/// The namespace as bpfnsd gives it, with its policy and effective policy in names too
/// (`policy_names`, `effective_policy_names`).
impl Serialize for NsOne {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = serde_json::to_value(&self.0).map_err(serde::ser::Error::custom)?;
        let p = NsPolicy::of(&self.0);
        if let Some(o) = v.as_object_mut() {
            let names = |x: &PolicyNames| serde_json::to_value(x).unwrap_or_default();
            o.insert("policy_names".into(), names(&p.policy));
            o.insert("effective_policy_names".into(), names(&p.effective));
        }
        v.serialize(s)
    }
}

impl Render for NsOne {
    fn render_text(&self) -> String {
        let n = &self.0;
        format!(
            "namespace {}\n  id:       {}\n  parent:   {}\n  depth:    {}\n  objects:  {} progs, {} maps, {} links, {} btf\n  map memory: {} own, {} with descendants'\n  members:  {}\n  bpffs:    {}\n  tracing programs: {}\n  ownership records (with descendants'; used/max): {}\n    per kind: {}\n  cgroup (attach targets): {}\n  policy:\n{}{}",
            n.path,
            n.id,
            n.parent.as_deref().unwrap_or("-"),
            n.depth,
            n.objects.prog,
            n.objects.map,
            n.objects.link,
            n.objects.btf,
            human_bytes(n.map_memory),
            human_bytes(n.map_memory_total),
            n.members,
            n.bpffs,
            tracing_label(n),
            records_label(n),
            kind_records_label(n),
            cgroup_label(n),
            policy_lines(&n.policy, "    "),
            effective_text(n)
        )
    }
}

/// The result of a deletion.
#[derive(Debug, Clone, Serialize)]
pub struct NsDeleted {
    pub deleted: String,
    pub objects_moved_to: String,
    pub objects_moved: u32,
}

impl Render for NsDeleted {
    fn render_text(&self) -> String {
        format!(
            "deleted namespace {}; {} object(s) moved to {}\n",
            self.deleted, self.objects_moved, self.objects_moved_to
        )
    }
}

fn usage(e: impl ToString) -> anyhow::Error {
    crate::error::CliError::usage(e.to_string()).into()
}

pub fn create(
    c: &mut Client,
    path: &str,
    flags: &PolicyFlags,
    (max_objects, limits): (Option<u32>, KindLimits),
    cgroup: Option<&str>,
    parents: bool,
) -> Result<NsOne> {
    if parents {
        let p = NsPath::parse(path).map_err(|e| crate::error::CliError::usage(e.to_string()))?;
        let mut ancestors = Vec::new();
        let mut up = p.parent();
        while let Some(a) = up.filter(|a| !a.is_root()) {
            up = a.parent();
            ancestors.push(a);
        }
        // Ancestors first (top down), with the defaults; one that exists is fine.
        for a in ancestors.into_iter().rev() {
            match c.ns_create(a.as_str()) {
                Ok(_) => {}
                Err(e)
                    if e.code() == Some(ErrorCode::Conflict) && c.ns_show(a.as_str()).is_ok() => {}
                Err(e) => return Err(e).with_context(|| format!("creating namespace {a}")),
            }
        }
        if let Ok(existing) = c.ns_show(path) {
            return Ok(NsOne(existing));
        }
    }
    // The flags change the default as far as the parent allows it (bpfnsd gives exactly
    // that when asked for no policy).
    let policy = if flags.any() {
        let p = NsPath::parse(path).map_err(usage)?;
        let base = p
            .parent()
            .and_then(|pp| c.ns_show(pp.as_str()).ok())
            .map_or(Policy::DEFAULT, |parent| {
                Policy::DEFAULT.intersect(&parent.effective_policy.unwrap_or(parent.policy))
            });
        flags.apply(base).map_err(usage)?
    } else {
        Policy::DEFAULT
    };
    Ok(NsOne(
        c.ns_create_limited(path, policy, max_objects, limits, cgroup)
            .with_context(|| format!("creating namespace {path}"))?,
    ))
}

/// `bpfns ns quota PATH [--max-objects N] [--max-maps N] ...`.
pub fn set_quota(
    c: &mut Client,
    path: &str,
    max_objects: Option<u32>,
    limits: KindLimits,
) -> Result<NsOne> {
    if max_objects.is_none() && limits.is_empty() {
        return Err(crate::error::CliError::usage(
            "bpfns ns quota: give at least one limit (--max-objects, --max-maps, --max-progs, \
             --max-links, --max-btf)",
        )
        .into());
    }
    Ok(NsOne(
        c.ns_set_quota(path, max_objects, limits)
            .with_context(|| format!("changing the limits of namespace {path}"))?,
    ))
}

/// `bpfns ns policy PATH` with flags: the current policy, changed by them.
pub fn set_policy(c: &mut Client, path: &str, flags: &PolicyFlags) -> Result<NsOne> {
    let current = c.ns_show(path)?.policy;
    let policy = flags.apply(current).map_err(usage)?;
    Ok(NsOne(c.ns_set_policy(path, policy).with_context(|| {
        format!("changing the policy of namespace {path}")
    })?))
}

/// `bpfns ns policy PATH` without flags.
pub fn show_policy(c: &mut Client, path: &str) -> Result<NsPolicyShown> {
    Ok(NsPolicyShown(c.ns_show(path)?))
}

pub fn show(c: &mut Client, path: &str) -> Result<NsOne> {
    Ok(NsOne(c.ns_show(path)?))
}

pub fn list(c: &mut Client) -> Result<NsListing> {
    Ok(NsListing(c.ns_list()?))
}

pub fn delete(c: &mut Client, path: &str, recursive: bool, force: bool) -> Result<NsDeletions> {
    let mut order = vec![path.to_string()];
    if recursive {
        let root = NsPath::parse(path).map_err(|e| crate::error::CliError::usage(e.to_string()))?;
        let mut below: Vec<(u32, String)> = c
            .ns_list()?
            .into_iter()
            .filter(|n| NsPath::parse(&n.path).is_ok_and(|q| q != root && root.is_ancestor_of(&q)))
            .map(|n| (n.depth, n.path))
            .collect();
        // Deepest first: a namespace goes after its children.
        below.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        order = below.into_iter().map(|(_, p)| p).chain(order).collect();
    }
    let mut done = Vec::new();
    for p in order {
        let (to, n) = c
            .ns_delete_with(&p, force)
            .with_context(|| format!("deleting namespace {p}"))?;
        done.push(NsDeleted {
            deleted: p,
            objects_moved_to: to,
            objects_moved: n,
        });
    }
    Ok(NsDeletions(done))
}

/// Processes: a JSON array; in text a table.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Processes(pub Vec<ProcessInfo>);

impl Render for Processes {
    fn render_text(&self) -> String {
        let mut t = Table::new(["PID", "COMM", "UID", "THREADS", "NAMESPACE"]);
        for p in &self.0 {
            t.row([
                p.pid.to_string(),
                crate::output::printable(&p.comm),
                p.uid.to_string(),
                p.threads.to_string(),
                p.namespace.clone(),
            ]);
        }
        t.render()
    }
}

/// One process: a JSON object; in text a one-row table.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Process(pub ProcessInfo);

impl Render for Process {
    fn render_text(&self) -> String {
        Processes(vec![self.0.clone()]).render_text()
    }
}

/// `bpfns ns ps PATH [-r]`.
pub fn ps(c: &mut Client, path: &str, recursive: bool) -> Result<Processes> {
    Ok(Processes(c.ns_ps(path, recursive).with_context(|| {
        format!("listing the processes of namespace {path}")
    })?))
}

/// `bpfns ns identify PID`.
pub fn identify(c: &mut Client, pid: i32) -> Result<Process> {
    Ok(Process(c.ns_identify(pid)?))
}

/// What `bpfns ns delete` deleted (with -r, descendants first); JSON: an array.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct NsDeletions(pub Vec<NsDeleted>);

impl Render for NsDeletions {
    fn render_text(&self) -> String {
        self.0.iter().map(Render::render_text).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfns_model::NsId;
    use bpfns_proto::ObjectCounts;

    fn ns(path: &str, id: u32, depth: u32) -> NsInfo {
        NsInfo {
            path: path.into(),
            id: NsId(id),
            parent: None,
            depth,
            objects: ObjectCounts {
                prog: 1,
                map: 2,
                link: 0,
                btf: 0,
            },
            members: 3,
            bpffs: String::new(),
            policy: Policy::tracing(path == "/a"),
            effective_policy: None,
            supervised_creations: false,
            max_objects: (depth > 0).then_some(1024 >> depth),
            cgroup: None,
            records: (depth > 0).then_some(u64::from(depth)),
            kind_limits: KindLimits {
                max_maps: (depth > 0).then_some(8),
                ..KindLimits::NONE
            },
            kind_records: (depth > 0).then_some(ObjectCounts {
                prog: 1,
                map: 2,
                link: 0,
                btf: 0,
            }),
            map_memory: Some(4096 * u64::from(depth)),
            map_memory_total: Some(1_500_000),
        }
    }

    #[test]
    fn tree_table_and_json() {
        let l = NsListing(vec![ns("/", 0, 0), ns("/a", 1, 1), ns("/a/b", 2, 2)]);
        let text = l.render_text();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE"));
        assert!(lines[1].starts_with("/ "));
        assert!(lines[2].starts_with("a "));
        assert!(lines[3].starts_with("  b "));
        assert!(
            lines[0].ends_with("TRACING  RECORDS  MEMORY  MEMORY-ALL"),
            "{text}"
        );
        assert!(
            lines[1].ends_with("host     -        0B      1.4MiB"),
            "{text}"
        );
        assert!(
            lines[2].ends_with("allowed  1/512    4.0KiB  1.4MiB"),
            "{text}"
        );
        assert!(
            lines[3].ends_with("denied   2/256    8.0KiB  1.4MiB"),
            "{text}"
        );
        let j = serde_json::to_value(&l).unwrap();
        assert_eq!(j[2]["path"], "/a/b");
        assert_eq!(j[2]["objects"]["map"], 2);
        assert_eq!(j[1]["policy"]["allow_tracing"], true);
        assert_eq!(j[1]["max_objects"], 512);
        assert_eq!(j[1]["records"], 1);
        assert!(j[0].get("max_objects").is_none(), "the root is unlimited");
        let one = NsOne(ns("/a/b", 2, 2)).render_text();
        assert!(one.contains("tracing programs: denied"), "{one}");
        assert!(one.contains("\n  members:  3\n"), "{one}");
        assert!(lines[0].contains(" MEMBERS "), "{text}");
        assert_eq!(j[2]["map_memory"], 8192);
        assert_eq!(j[2]["map_memory_total"], 1_500_000);
        assert!(
            one.contains("map memory: 8.0KiB own, 1.4MiB with descendants'"),
            "{one}"
        );
        assert_eq!(human_bytes(None), "-");
        assert_eq!(human_bytes(Some(1023)), "1023B");
        assert_eq!(human_bytes(Some(20 << 20)), "20MiB");
        assert!(one.contains("used/max): 2/256"), "{one}");
        assert!(
            one.contains("per kind: progs 1, maps 2/8, links 0, btf 0\n"),
            "{one}"
        );
        assert_eq!(j[1]["max_maps"], 8);
        assert!(
            j[1].get("max_progs").is_none(),
            "unset limits are not written"
        );
        assert_eq!(j[1]["kind_records"]["map"], 2);
        assert!(j[0].get("kind_records").is_none());
        assert!(NsOne(ns("/", 0, 0)).render_text().contains("per kind: -\n"));
        assert_eq!(serde_json::to_string(&NsListing(vec![])).unwrap(), "[]");
    }

    #[test]
    fn policy_flags_apply_and_print() {
        let flags = |args: &[&str]| {
            use clap::Parser;
            let mut v = vec!["bpfns", "ns", "policy", "/a"];
            v.extend_from_slice(args);
            match crate::cli::Cli::try_parse_from(v).unwrap().command {
                crate::cli::Command::Ns(crate::cli::NsCmd::Policy { policy, .. }) => policy,
                other => panic!("{other:?}"),
            }
        };
        assert!(!flags(&[]).any());
        let p = flags(&["--allow-progs", "socket_filter"])
            .apply(Policy::DEFAULT)
            .unwrap();
        assert!(p.progs.contains(1) && !p.progs.contains(6));
        assert_eq!(p.maps, Policy::DEFAULT.maps);
        let p = flags(&["--deny-maps", "hash", "--deny-cmds", "map_create"])
            .apply(Policy::DEFAULT)
            .unwrap();
        assert!(!p.maps.contains(1) && p.maps.contains(2));
        assert!(!p.cmds.contains(0) && p.cmds.contains(5));
        let p = flags(&["--allow-tracing"]).apply(Policy::DEFAULT).unwrap();
        assert_eq!(p, Policy::tracing(true));
        let p = flags(&["--deny-tracing"]).apply(p).unwrap();
        assert_eq!(p, Policy::DEFAULT);
        let p = flags(&["--allow-attachs", "any", "--deny-attachs", "xdp"])
            .apply(Policy::DEFAULT)
            .unwrap();
        assert!(!p.attachs.contains(37) && p.attachs.contains(0));
        let err = flags(&["--allow-maps", "hsh"])
            .apply(Policy::DEFAULT)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown maps name \"hsh\"") && err.contains("hash"),
            "{err}"
        );

        let mut n = ns("/a/b", 2, 2);
        n.policy = flags(&["--deny-maps", "hash"])
            .apply(Policy::DEFAULT)
            .unwrap();
        let mut cap = n.policy;
        cap.progs = bpfns_model::TypeSet::of([1]);
        n.effective_policy = Some(cap);
        let text = NsPolicyShown(n.clone()).render_text();
        assert!(text.contains("maps:    any but hash"), "{text}");
        assert!(text.contains("capped by its ancestors'"), "{text}");
        assert!(text.contains("    progs:   socket_filter\n"), "{text}");
        let j = serde_json::to_value(NsPolicyShown(n.clone())).unwrap();
        assert_eq!(
            j["effective"]["progs"],
            serde_json::json!(["socket_filter"])
        );
        assert_eq!(j["policy"]["cmds"], serde_json::json!(["any"]));
        assert_eq!(j["policy"]["text"]["maps"], "any but hash");
        let j = serde_json::to_value(NsOne(n.clone())).unwrap();
        assert_eq!(
            j["effective_policy_names"]["progs"],
            serde_json::json!(["socket_filter"])
        );
        assert_eq!(j["path"], "/a/b");
        let one = NsOne(n).render_text();
        assert!(one.contains("  policy:\n    cmds:    any\n"), "{one}");
    }

    #[test]
    fn processes_table_and_json() {
        let p = ProcessInfo {
            pid: 42,
            comm: "sleep".into(),
            uid: 1000,
            threads: 1,
            namespace: "/a".into(),
            ns_id: NsId(3),
        };
        let text = Processes(vec![p.clone()]).render_text();
        assert_eq!(
            text,
            "PID  COMM   UID   THREADS  NAMESPACE\n42   sleep  1000  1        /a\n"
        );
        let v = serde_json::to_value(Process(p)).unwrap();
        assert_eq!(v["namespace"], "/a");
        assert_eq!(v["pid"], 42);
    }
}
