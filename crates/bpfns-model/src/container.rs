//! Containers' namespaces: where a container goes, from what its engine says of it; which
//! namespaces bpfnsd made for which containers; and when a container is gone.
//!
//! What an engine says of a container (its id, its name, its annotations) is input from
//! whoever started the container, and in Kubernetes from a pod's author: every name taken
//! from it must be one valid path component, so it cannot climb out of the parent the
//! operator configured or name an invalid path; what fails is refused with the rule it broke.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::NsPath;

/// The annotation that puts a container in a namespace of the operator's choice.
pub const NAMESPACE_ANNOTATION: &str = "io.bpfns.namespace";

/// Pod annotations, as Kubernetes' runtimes write them: containerd's CRI plugin, then CRI-O.
/// Each pair is (pod namespace, pod name).
pub const POD_ANNOTATIONS: [(&str, &str); 2] = [
    (
        "io.kubernetes.cri.sandbox-namespace",
        "io.kubernetes.cri.sandbox-name",
    ),
    ("io.kubernetes.pod.namespace", "io.kubernetes.pod.name"),
];

/// Container name annotations of Kubernetes' runtimes (containerd's CRI, CRI-O).
pub const NAME_ANNOTATIONS: [&str; 2] = [
    "io.kubernetes.cri.container-name",
    "io.kubernetes.container.name",
];

/// Characters of an id `{short_id}` keeps: what engines show of their 64-character ids.
pub const SHORT_ID: usize = 12;

/// How container namespaces are named (`[containers]` in bpfnsd.toml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Naming {
    /// Where containers go: `<parent>/<name>`.
    pub parent: String,
    /// The name of a container's namespace below `parent`: `{name}` is the container's name
    /// (where the engine gives none, its id, or its short id when the template holds the id
    /// too), `{id}` its id, `{short_id}` the id's first 12 characters (a 64-character id
    /// leaves no room for anything beside it).
    pub name: String,
    /// Where the containers of a Kubernetes pod go, together: `<k8s_parent>/<pod
    /// namespace>/<pod>`.
    pub k8s_parent: String,
    /// Honour the annotation `io.bpfns.namespace`. In Kubernetes a pod's author writes its
    /// annotations: whoever may set them chooses the namespace (within `annotation_within`).
    pub annotation: bool,
    /// The annotation may only name namespaces strictly below this one.
    pub annotation_within: String,
    /// Place the containers of a Kubernetes pod together by the pod keys their runtime writes
    /// (`io.kubernetes.cri.sandbox-*`, `io.kubernetes.pod.*`). Whoever can set a container's
    /// annotations can name any pod this way and join its namespace: turn it off where they
    /// are tenants who may (podman users, a CRI that passes `io.kubernetes.*` pod annotations
    /// through). `annotation = false` does not turn it off.
    pub pods: bool,
}

impl Default for Naming {
    fn default() -> Self {
        Self {
            parent: "/containers".into(),
            name: "{name}".into(),
            k8s_parent: "/k8s".into(),
            annotation: true,
            annotation_within: "/".into(),
            pods: true,
        }
    }
}

/// A container name, pod or annotation bpfns refuses; the message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    #[error("[containers] {key} = {value:?} in bpfnsd.toml: {why}")]
    Config {
        key: &'static str,
        value: String,
        why: String,
    },
    #[error("{what} {value:?} cannot name a namespace: {why}")]
    BadName {
        what: String,
        value: String,
        why: String,
    },
    #[error(
        "the annotation {NAMESPACE_ANNOTATION}={value:?} is refused: {why}; remove it (the \
         container then gets a namespace of its own)"
    )]
    BadAnnotation { value: String, why: String },
    #[error(
        "the container has the pod annotation {has} but not {missing}: a pod's containers need \
         both to share its namespace"
    )]
    HalfPod { has: String, missing: String },
    #[error(
        "the container names two pods, {first} (containerd's keys) and {second} (CRI-O's): one \
         runtime writes one pair; the other came from whoever set the annotations"
    )]
    TwoPods { first: String, second: String },
}

/// What the engine says of a container: its id (the runtime's command line), its name where
/// the engine gives one, and the annotations of its `config.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerFacts {
    pub id: String,
    pub name: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// Why a container goes where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `<parent>/<name>`: a namespace of its own.
    Name,
    /// `<k8s_parent>/<pod namespace>/<pod>`: shared with the pod's other containers.
    Pod,
    /// The annotation `io.bpfns.namespace`.
    Annotation,
}

/// Where a container goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub path: NsPath,
    pub source: Source,
}

fn parse_config(key: &'static str, value: &str) -> Result<NsPath, NamingError> {
    NsPath::parse(value).map_err(|e| NamingError::Config {
        key,
        value: value.into(),
        why: e.to_string(),
    })
}

/// One path component from `value`, or why not.
fn component(what: impl Into<String>, value: &str) -> Result<String, NamingError> {
    NsPath::check_component(value)
        .map(|()| value.to_string())
        .map_err(|e| NamingError::BadName {
            what: what.into(),
            value: value.into(),
            why: e.problem().to_string(),
        })
}

impl Naming {
    /// Whether the settings can name anything (checked when bpfnsd reads its configuration).
    pub fn check(&self) -> Result<(), NamingError> {
        let parent = parse_config("parent", &self.parent)?;
        if parent.is_root() {
            return Err(NamingError::Config {
                key: "parent",
                value: self.parent.clone(),
                why: "containers' namespaces cannot be top-level namespaces of their own \
                      (deleting one would move its pins to the host's orphans); name a parent \
                      such as \"/containers\""
                    .into(),
            });
        }
        let k8s = parse_config("k8s_parent", &self.k8s_parent)?;
        if k8s.depth() + 2 > crate::MAX_DEPTH {
            return Err(NamingError::Config {
                key: "k8s_parent",
                value: self.k8s_parent.clone(),
                why: "too deep for <pod namespace>/<pod> below it".into(),
            });
        }
        if self.pods && (parent.is_same_or_ancestor_of(&k8s) || k8s.is_ancestor_of(&parent)) {
            return Err(NamingError::Config {
                key: "k8s_parent",
                value: self.k8s_parent.clone(),
                why: format!(
                    "containers' namespaces (parent {parent}) and pods' must not be one inside \
                     the other: a container could be named after a pod namespace and see its \
                     pods; choose apart parents such as \"/containers\" and \"/k8s\""
                ),
            });
        }
        parse_config("annotation_within", &self.annotation_within)?;
        let mut rest = self.name.as_str();
        while let Some(i) = rest.find('{') {
            let tail = &rest[i..];
            if !["{name}", "{id}", "{short_id}"]
                .iter()
                .any(|p| tail.starts_with(p))
            {
                return Err(NamingError::Config {
                    key: "name",
                    value: self.name.clone(),
                    why: "the only placeholders are {name}, {id} and {short_id}".into(),
                });
            }
            rest = &tail[1..];
        }
        // What is left once the placeholders are filled must be one component.
        let sample = self.render("c", "c");
        component("the name template", &sample).map_err(|e| NamingError::Config {
            key: "name",
            value: self.name.clone(),
            why: match e {
                NamingError::BadName { why, .. } => why,
                e => e.to_string(),
            },
        })?;
        Ok(())
    }

    fn render(&self, name: &str, id: &str) -> String {
        // Engines show the first 12 characters of their 64-character ids.
        let short: String = id.chars().take(SHORT_ID).collect();
        self.name
            .replace("{name}", name)
            .replace("{short_id}", &short)
            .replace("{id}", id)
    }

    /// Where the container `facts` describes goes: the annotation `io.bpfns.namespace` (if
    /// honoured), else its pod's namespace (Kubernetes), else `<parent>/<name>`.
    pub fn place(&self, facts: &ContainerFacts) -> Result<Placement, NamingError> {
        let parent = parse_config("parent", &self.parent)?;
        if self.annotation {
            if let Some(value) = facts.annotations.get(NAMESPACE_ANNOTATION) {
                let bad = |why: String| NamingError::BadAnnotation {
                    value: value.clone(),
                    why,
                };
                let path = NsPath::parse(value).map_err(|e| bad(e.to_string()))?;
                let within = parse_config("annotation_within", &self.annotation_within)?;
                if !within.is_ancestor_of(&path) {
                    return Err(bad(if path.is_root() {
                        "a container cannot be put in the root namespace".into()
                    } else {
                        format!(
                            "bpfnsd.toml allows it only below {within} ([containers] \
                             annotation_within)"
                        )
                    }));
                }
                return Ok(Placement {
                    path,
                    source: Source::Annotation,
                });
            }
        }
        // Both runtimes' pairs, disagreeing: one was not written by the runtime.
        let pairs: Vec<(&String, &String)> = POD_ANNOTATIONS
            .iter()
            .filter_map(|(n, p)| Some((facts.annotations.get(*n)?, facts.annotations.get(*p)?)))
            .collect();
        if let [a, b] = pairs.as_slice() {
            if a != b {
                return Err(NamingError::TwoPods {
                    first: format!("{}/{}", a.0, a.1),
                    second: format!("{}/{}", b.0, b.1),
                });
            }
        }
        for (ns_key, pod_key) in POD_ANNOTATIONS {
            if !self.pods {
                break;
            }
            match (
                facts.annotations.get(ns_key),
                facts.annotations.get(pod_key),
            ) {
                (Some(ns), Some(pod)) => {
                    let k8s = parse_config("k8s_parent", &self.k8s_parent)?;
                    let ns = component(format!("the pod namespace ({ns_key})"), ns)?;
                    let pod = component(format!("the pod name ({pod_key})"), pod)?;
                    let path = k8s.join(&ns).and_then(|p| p.join(&pod)).map_err(|e| {
                        NamingError::BadName {
                            what: "the pod".into(),
                            value: format!("{ns}/{pod}"),
                            why: e.to_string(),
                        }
                    })?;
                    return Ok(Placement {
                        path,
                        source: Source::Pod,
                    });
                }
                (Some(_), None) | (None, Some(_)) => {
                    let (has, missing) = if facts.annotations.contains_key(ns_key) {
                        (ns_key, pod_key)
                    } else {
                        (pod_key, ns_key)
                    };
                    return Err(NamingError::HalfPod {
                        has: has.into(),
                        missing: missing.into(),
                    });
                }
                (None, None) => {}
            }
        }
        // The id is checked where it is used: in full, or its first characters.
        let holds_id = self.name.contains("{id}") || self.name.contains("{short_id}");
        let id = || component("the container id", &facts.id);
        let short = || {
            let s: String = facts.id.chars().take(SHORT_ID).collect();
            component("the container id", &s)
        };
        let name = match &facts.name {
            Some(n) => component("the container name", n)?,
            None => match NAME_ANNOTATIONS
                .iter()
                .find_map(|k| facts.annotations.get(*k).map(|v| (k, v)))
            {
                Some((k, v)) => component(format!("the container name ({k})"), v)?,
                // No name: its id, or its short id where the template holds the id already.
                None if holds_id && self.name.contains("{name}") => short()?,
                None => id()?,
            },
        };
        let full = if self.name.contains("{id}") {
            id()?
        } else {
            short()?
        };
        let leaf = component("the container's namespace name", &self.render(&name, &full))?;
        let path = parent.join(&leaf).map_err(|e| NamingError::BadName {
            what: "the container's namespace".into(),
            value: leaf.clone(),
            why: e.to_string(),
        })?;
        Ok(Placement {
            path,
            source: Source::Name,
        })
    }
}

/// What bpfnsd keeps of a container it placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Its namespace.
    pub namespace: String,
    /// Its bundle directory, which the engine removes with the container; for containerd's
    /// shims, which remove the bundle when the container stops, its writable layer (what
    /// bpfns-oci sends as the bundle).
    #[serde(default)]
    pub bundle: Option<String>,
    /// The runtime's state directory for it (`<runtime root>/<id>`): there while the
    /// runtime knows the container.
    #[serde(default)]
    pub state_dir: Option<String>,
    /// The runtime deleted it (`delete`): stopped, not necessarily removed (podman deletes
    /// a container from the runtime when it stops, and creates it again at `start`).
    #[serde(default)]
    pub released: bool,
    /// When it was placed (or created again), in seconds since the epoch.
    pub since: u64,
}

impl ContainerRecord {
    /// Whether a container created with this `bundle` and runtime `state_dir` is the one
    /// recorded (created again after a stop), rather than another that reuses its id: ids
    /// are the engine's or the user's choice (`ctr run ... web`), unique only within one
    /// runtime root, so the id alone proves nothing.
    pub fn is_same_container(&self, bundle: Option<&str>, state_dir: Option<&str>) -> bool {
        self.bundle.as_deref() == bundle && self.state_dir.as_deref() == state_dir
    }
}

/// What bpfnsd sees of a recorded container now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub bundle_exists: bool,
    pub state_exists: bool,
    /// Live tasks in its namespace.
    pub members: usize,
    /// Seconds since [`ContainerRecord::since`].
    pub age_secs: u64,
}

/// Why a container counts as gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Its bundle was removed: the engine removed the container.
    Removed,
    /// Not deleted through the runtime, but the runtime's state of it is gone and no task of
    /// its namespace lives (killed with its engine, the host rebooted).
    Vanished,
}

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Gone::Removed => "removed (its bundle is gone)",
            Gone::Vanished => "vanished (no runtime state, no live task)",
        })
    }
}

/// Whether a recorded container is gone. `grace` covers the time from placing a container
/// to its runtime writing its state and its init being tagged.
pub fn gone(rec: &ContainerRecord, obs: Observed, grace_secs: u64) -> Option<Gone> {
    if rec.bundle.is_some() && !obs.bundle_exists {
        return Some(Gone::Removed);
    }
    // A released container was stopped: the engine may start it again while its bundle is
    // there, with no state and no task meanwhile.
    if !rec.released
        && rec.state_dir.is_some()
        && !obs.state_exists
        && obs.members == 0
        && obs.age_secs >= grace_secs
    {
        return Some(Gone::Vanished);
    }
    None
}

/// The containers bpfnsd placed, and the namespaces it made for them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Containers {
    /// By container id.
    #[serde(default)]
    pub records: BTreeMap<String, ContainerRecord>,
    /// Namespaces bpfnsd created for containers (not those an annotation named that existed
    /// already): deleted when no recorded container is in them any more.
    #[serde(default)]
    pub made: BTreeSet<String>,
}

impl Containers {
    /// How many recorded containers are in namespace `path`.
    pub fn users(&self, path: &str) -> usize {
        self.records
            .values()
            .filter(|r| r.namespace == path)
            .count()
    }

    /// Forget container `id`; the namespace to delete now that it is gone (one bpfnsd made,
    /// with no other container in it), if any.
    pub fn remove(&mut self, id: &str) -> Option<(ContainerRecord, Option<String>)> {
        let rec = self.records.remove(id)?;
        let delete = (self.made.contains(&rec.namespace) && self.users(&rec.namespace) == 0)
            .then(|| rec.namespace.clone());
        Some((rec, delete))
    }

    /// Namespaces bpfnsd made that no recorded container is in (a deletion that failed, to
    /// be tried again), deepest first.
    pub fn unused_made(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .made
            .iter()
            .filter(|p| self.users(p) == 0)
            .cloned()
            .collect();
        v.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(id: &str, name: Option<&str>, ann: &[(&str, &str)]) -> ContainerFacts {
        ContainerFacts {
            id: id.into(),
            name: name.map(String::from),
            annotations: ann
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn place(n: &Naming, f: &ContainerFacts) -> Result<String, NamingError> {
        n.place(f).map(|p| p.path.to_string())
    }

    #[test]
    fn by_name_then_id() {
        let n = Naming::default();
        n.check().expect("defaults");
        assert_eq!(
            place(&n, &facts("abc", Some("web"), &[])).unwrap(),
            "/containers/web"
        );
        assert_eq!(
            place(&n, &facts("abc", None, &[])).unwrap(),
            "/containers/abc"
        );
        // Kubernetes runtimes' container name annotations.
        let f = facts("abc", None, &[("io.kubernetes.container.name", "nginx")]);
        assert_eq!(place(&n, &f).unwrap(), "/containers/nginx");
        let n = Naming {
            parent: "/ci/jobs".into(),
            name: "{name}-{id}".into(),
            ..Naming::default()
        };
        n.check().expect("template");
        let p = n.place(&facts("12ab", Some("db"), &[])).unwrap();
        assert_eq!(p.path.to_string(), "/ci/jobs/db-12ab");
        assert_eq!(p.source, Source::Name);
    }

    #[test]
    fn pods_share_one_namespace() {
        let n = Naming::default();
        let cri = |t: &str| {
            facts(
                "x",
                None,
                &[
                    ("io.kubernetes.cri.sandbox-namespace", "default"),
                    ("io.kubernetes.cri.sandbox-name", "web-7d4"),
                    ("io.kubernetes.cri.container-type", t),
                ],
            )
        };
        let sandbox = n.place(&cri("sandbox")).unwrap();
        let app = n.place(&cri("container")).unwrap();
        assert_eq!(sandbox.path.to_string(), "/k8s/default/web-7d4");
        assert_eq!(sandbox, app);
        assert_eq!(app.source, Source::Pod);
        let crio = facts(
            "y",
            Some("ignored"),
            &[
                ("io.kubernetes.pod.namespace", "kube-system"),
                ("io.kubernetes.pod.name", "dns"),
            ],
        );
        assert_eq!(place(&n, &crio).unwrap(), "/k8s/kube-system/dns");
        let half = facts("z", None, &[("io.kubernetes.pod.name", "dns")]);
        let e = place(&n, &half).unwrap_err().to_string();
        assert!(e.contains("io.kubernetes.pod.namespace"), "{e}");
    }

    /// Pod keys are trusted only as the operator says (`pods`), and never when two runtimes'
    /// pairs disagree: a container that adds containerd's keys naming another pod to its own
    /// CRI-O keys is refused, not put in that pod's namespace.
    #[test]
    fn pod_keys_cannot_take_a_container_into_another_pod() {
        let both = |ns: &str, pod: &str| {
            facts(
                "x",
                Some("evil"),
                &[
                    ("io.kubernetes.pod.namespace", "team-b"),
                    ("io.kubernetes.pod.name", "evil"),
                    ("io.kubernetes.cri.sandbox-namespace", ns),
                    ("io.kubernetes.cri.sandbox-name", pod),
                ],
            )
        };
        let n = Naming {
            annotation: false,
            ..Naming::default()
        };
        let e = n.place(&both("team-a", "web")).unwrap_err();
        assert!(matches!(e, NamingError::TwoPods { .. }), "{e}");
        assert!(e.to_string().contains("team-a/web"), "{e}");
        // The same pod twice is one pod.
        let twice = both("team-b", "evil");
        assert_eq!(place(&n, &twice).unwrap(), "/k8s/team-b/evil");
        // pods = false: the keys name nothing; a namespace of its own.
        let off = Naming {
            pods: false,
            ..Naming::default()
        };
        let p = off.place(&twice).unwrap();
        assert_eq!(p.path.to_string(), "/containers/evil");
        assert_eq!(p.source, Source::Name);
        let e = off.place(&both("team-a", "web")).unwrap_err();
        assert!(matches!(e, NamingError::TwoPods { .. }), "{e}");
    }

    #[test]
    fn the_annotation_chooses_within_bounds() {
        let n = Naming::default();
        let a = |v: &str| facts("c1", Some("web"), &[(NAMESPACE_ANNOTATION, v)]);
        let p = n.place(&a("/tenant-a/web")).unwrap();
        assert_eq!(
            (p.path.to_string(), p.source),
            ("/tenant-a/web".into(), Source::Annotation)
        );
        for bad in [
            "/", "", "tenant-a", "/../etc", "/a/../b", "/a//b", "/a/b/", "/ä",
        ] {
            let e = place(&n, &a(bad)).unwrap_err();
            assert!(
                matches!(e, NamingError::BadAnnotation { .. }),
                "{bad:?}: {e}"
            );
        }
        let n = Naming {
            annotation_within: "/tenants".into(),
            ..Naming::default()
        };
        assert_eq!(place(&n, &a("/tenants/a")).unwrap(), "/tenants/a");
        let e = place(&n, &a("/tenants")).unwrap_err().to_string();
        assert!(e.contains("only below /tenants"), "{e}");
        assert!(place(&n, &a("/other")).is_err());
        // Not honoured: the container's own name.
        let n = Naming {
            annotation: false,
            ..Naming::default()
        };
        assert_eq!(place(&n, &a("/tenant-a/web")).unwrap(), "/containers/web");
    }

    #[test]
    fn hostile_names_cannot_escape_the_parent() {
        let n = Naming::default();
        let long = "x".repeat(65);
        for bad in [
            "..",
            ".",
            "a/b",
            "../../etc",
            "/",
            "",
            "a b",
            "né",
            long.as_str(),
            "a\0b",
        ] {
            let e = place(&n, &facts("id1", Some(bad), &[])).unwrap_err();
            assert!(matches!(e, NamingError::BadName { .. }), "{bad:?}: {e}");
            assert!(e.to_string().contains("container name"), "{e}");
            let e = place(&n, &facts(bad, None, &[])).unwrap_err();
            assert!(matches!(e, NamingError::BadName { .. }), "{bad:?}: {e}");
            let pod = facts(
                "id1",
                None,
                &[
                    ("io.kubernetes.cri.sandbox-namespace", bad),
                    ("io.kubernetes.cri.sandbox-name", "p"),
                ],
            );
            let e = place(&n, &pod).unwrap_err().to_string();
            assert!(e.contains("pod namespace"), "{bad:?}: {e}");
            let pod = facts(
                "id1",
                None,
                &[
                    ("io.kubernetes.pod.namespace", "default"),
                    ("io.kubernetes.pod.name", bad),
                ],
            );
            assert!(place(&n, &pod).is_err(), "{bad:?}");
        }
        // A template that fills up past one component's length is refused, not cut.
        let n = Naming {
            name: "{name}-{id}".into(),
            ..Naming::default()
        };
        let id = "f".repeat(64);
        assert!(place(&n, &facts(&id, Some("web"), &[])).is_err());
        // What fits: the short id, as engines show it.
        let n = Naming {
            name: "{name}-{short_id}".into(),
            ..Naming::default()
        };
        n.check().unwrap();
        let id = format!("0123456789ab{}", "f".repeat(52));
        assert_eq!(
            place(&n, &facts(&id, Some("web"), &[])).unwrap(),
            "/containers/web-0123456789ab"
        );
        // Engines that give no name (Docker, containerd's shim): still fits.
        assert_eq!(
            place(&n, &facts(&id, None, &[])).unwrap(),
            "/containers/0123456789ab-0123456789ab"
        );
        // An id nothing uses is not checked: a long one with a name.
        let long = "f".repeat(80);
        assert_eq!(
            place(&Naming::default(), &facts(&long, Some("web"), &[])).unwrap(),
            "/containers/web"
        );
        assert!(place(&Naming::default(), &facts(&long, None, &[])).is_err());
    }

    #[test]
    fn pods_and_containers_parents_do_not_nest() {
        for (parent, k8s) in [("/k8s", "/k8s"), ("/k8s", "/k8s/pods"), ("/a/b", "/a")] {
            let n = Naming {
                parent: parent.into(),
                k8s_parent: k8s.into(),
                ..Naming::default()
            };
            let e = n.check().unwrap_err().to_string();
            assert!(e.contains("k8s_parent"), "{parent} {k8s}: {e}");
            // Without pods, nothing is placed under k8s_parent.
            Naming { pods: false, ..n }.check().unwrap();
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = [
            Naming {
                parent: "/".into(),
                ..Naming::default()
            },
            Naming {
                parent: "containers".into(),
                ..Naming::default()
            },
            Naming {
                name: "{name}/{id}".into(),
                ..Naming::default()
            },
            Naming {
                name: "{pod}".into(),
                ..Naming::default()
            },
            Naming {
                name: "".into(),
                ..Naming::default()
            },
            Naming {
                annotation_within: "/a/../b".into(),
                ..Naming::default()
            },
        ];
        for n in bad {
            let e = n.check().unwrap_err();
            assert!(matches!(e, NamingError::Config { .. }), "{n:?}: {e}");
        }
        for ok in ["{id}", "c-{name}", "{name}.{id}", "fixed"] {
            let n = Naming {
                name: ok.into(),
                ..Naming::default()
            };
            n.check().unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    fn rec(ns: &str) -> ContainerRecord {
        ContainerRecord {
            namespace: ns.into(),
            bundle: Some("/b".into()),
            state_dir: Some("/run/runc/x".into()),
            released: false,
            since: 0,
        }
    }

    #[test]
    fn when_a_container_is_gone() {
        let live = Observed {
            bundle_exists: true,
            state_exists: true,
            members: 1,
            age_secs: 100,
        };
        let r = rec("/containers/a");
        assert_eq!(gone(&r, live, 30), None);
        let removed = Observed {
            bundle_exists: false,
            ..live
        };
        assert_eq!(gone(&r, removed, 30), Some(Gone::Removed));
        let vanished = Observed {
            state_exists: false,
            members: 0,
            ..live
        };
        assert_eq!(gone(&r, vanished, 30), Some(Gone::Vanished));
        // Too young: the runtime may not have written its state yet.
        assert_eq!(
            gone(
                &r,
                Observed {
                    age_secs: 3,
                    ..vanished
                },
                30
            ),
            None
        );
        // A live task keeps it.
        assert_eq!(
            gone(
                &r,
                Observed {
                    members: 2,
                    ..vanished
                },
                30
            ),
            None
        );
        // Stopped through the runtime (podman stop): kept until its bundle goes.
        let stopped = ContainerRecord {
            released: true,
            ..r.clone()
        };
        assert_eq!(gone(&stopped, vanished, 30), None);
        assert_eq!(gone(&stopped, removed, 30), Some(Gone::Removed));
    }

    #[test]
    fn a_made_namespace_goes_with_its_last_container() {
        let mut c = Containers::default();
        c.made.insert("/k8s/default/web".into());
        c.records.insert("sandbox".into(), rec("/k8s/default/web"));
        c.records.insert("app".into(), rec("/k8s/default/web"));
        c.records.insert("other".into(), rec("/tenant-a/web"));
        let (_, del) = c.remove("app").unwrap();
        assert_eq!(del, None);
        let (_, del) = c.remove("sandbox").unwrap();
        assert_eq!(del.as_deref(), Some("/k8s/default/web"));
        // Not made by bpfnsd (the annotation named an existing namespace): kept.
        let (_, del) = c.remove("other").unwrap();
        assert_eq!(del, None);
        assert!(c.remove("other").is_none());
        assert_eq!(c.unused_made(), vec!["/k8s/default/web".to_string()]);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Containers>(&json).unwrap(), c);
    }
}
