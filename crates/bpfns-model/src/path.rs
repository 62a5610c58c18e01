//! Namespace path names: `/`, `/tenant-a`, `/tenant-a/ci`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How deep namespaces may nest below the root (the root is depth 0). contract point (docs/design.md) 1 bounds
/// the tree so that kernel-side ancestry walks have a fixed, verifier-friendly loop bound.
pub const MAX_DEPTH: u32 = 32;

/// The longest a single path component may be, in characters (all of them ASCII).
pub const MAX_COMPONENT_LEN: usize = 64;

/// A validated, canonical namespace path name.
///
/// `/` is the root; every other path is `/` followed by one or more components separated
/// by single slashes. A component is 1 to [`MAX_COMPONENT_LEN`] characters from
/// `A-Z a-z 0-9 _ . -`, and is neither `.` nor `..`. There are no empty components (no
/// `//`, no trailing `/`), so each namespace has exactly one spelling and string equality is
/// path equality. The restricted alphabet keeps names safe to print, to use as bpffs
/// directory names and to embed in log lines without quoting.
///
/// Paths order component by component, so sorting paths yields the tree in pre-order with
/// siblings sorted by name (a parent sorts right before its descendants).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NsPath(String);

/// Why a string is not a valid [`NsPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid namespace path {path:?}: {problem}")]
pub struct PathError {
    path: String,
    problem: PathProblem,
}

impl PathError {
    fn new(path: &str, problem: PathProblem) -> Self {
        // Keep hostile input from blowing up error messages and logs.
        const SHOWN: usize = 200;
        let path = match path.char_indices().nth(SHOWN) {
            Some((cut, _)) => format!("{}...", &path[..cut]),
            None => path.to_owned(),
        };
        PathError { path, problem }
    }

    /// The offending path (cut short if it was very long).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What exactly is wrong with it.
    pub fn problem(&self) -> &PathProblem {
        &self.problem
    }
}

/// The rule a path broke; each message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathProblem {
    /// The string is empty.
    #[error("it is empty; namespace paths are absolute, and the root is \"/\"")]
    Empty,
    /// The string does not start with `/`.
    #[error("it does not start with '/'; namespace paths are absolute, like \"/tenant-a/ci\"")]
    NotAbsolute,
    /// There is a `//` or a trailing `/`.
    #[error(
        "it has an empty component (\"//\" or a trailing '/'); components are separated by a \
         single '/', and only the root \"/\" ends with '/'"
    )]
    EmptyComponent,
    /// A component is `.` or `..`.
    #[error(
        "component {component:?} is not allowed; \".\" and \"..\" are never components, \
         paths are absolute and canonical"
    )]
    DotComponent {
        /// The component.
        component: String,
    },
    /// A component has a character outside `A-Z a-z 0-9 _ . -`.
    #[error(
        "component {component:?} contains {ch:?}; components use only A-Z a-z 0-9 '_' '.' '-'"
    )]
    BadChar {
        /// The component (cut short if very long).
        component: String,
        /// The first character that is not allowed.
        ch: char,
    },
    /// A component is longer than [`MAX_COMPONENT_LEN`].
    #[error(
        "a component is {len} characters long; components are 1 to {MAX_COMPONENT_LEN} characters"
    )]
    ComponentTooLong {
        /// Its length in characters.
        len: usize,
    },
    /// The path has more than [`MAX_DEPTH`] components.
    #[error(
        "it is {depth} levels deep; namespaces nest at most {MAX_DEPTH} levels below the root"
    )]
    TooDeep {
        /// Its depth (number of components).
        depth: usize,
    },
}

/// Checks one component against the rules of [`NsPath`].
fn check_component(component: &str) -> Result<(), PathProblem> {
    if component.is_empty() {
        return Err(PathProblem::EmptyComponent);
    }
    if component == "." || component == ".." {
        return Err(PathProblem::DotComponent {
            component: component.to_owned(),
        });
    }
    if let Some(ch) = component
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        let component = if component.len() > MAX_COMPONENT_LEN {
            format!(
                "{}...",
                component
                    .chars()
                    .take(MAX_COMPONENT_LEN)
                    .collect::<String>()
            )
        } else {
            component.to_owned()
        };
        return Err(PathProblem::BadChar { component, ch });
    }
    // All characters are ASCII here, so bytes are characters.
    if component.len() > MAX_COMPONENT_LEN {
        return Err(PathProblem::ComponentTooLong {
            len: component.len(),
        });
    }
    Ok(())
}

impl NsPath {
    /// The root path, `/`.
    pub fn root() -> NsPath {
        NsPath("/".to_owned())
    }

    /// Parses and validates a path; see the type's documentation for the rules.
    pub fn parse(s: &str) -> Result<NsPath, PathError> {
        if s.is_empty() {
            return Err(PathError::new(s, PathProblem::Empty));
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Err(PathError::new(s, PathProblem::NotAbsolute));
        };
        if rest.is_empty() {
            return Ok(NsPath::root());
        }
        let mut depth = 0usize;
        for component in rest.split('/') {
            check_component(component).map_err(|p| PathError::new(s, p))?;
            depth += 1;
        }
        if depth > MAX_DEPTH as usize {
            return Err(PathError::new(s, PathProblem::TooDeep { depth }));
        }
        Ok(NsPath(s.to_owned()))
    }

    /// Checks that `component` would be a valid single component (for example a name typed
    /// by a user before it is joined to a parent path).
    pub fn check_component(component: &str) -> Result<(), PathError> {
        check_component(component).map_err(|p| PathError::new(component, p))
    }

    /// The path as a string; always canonical.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the root, `/`.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The components from the root down; none for the root.
    pub fn components(&self) -> impl DoubleEndedIterator<Item = &str> + Clone + '_ {
        let rest = if self.is_root() {
            None
        } else {
            self.0.strip_prefix('/')
        };
        rest.into_iter().flat_map(|r| r.split('/'))
    }

    /// The number of components: 0 for the root, at most [`MAX_DEPTH`].
    pub fn depth(&self) -> u32 {
        if self.is_root() {
            0
        } else {
            // At most MAX_DEPTH separators, by construction; cannot truncate.
            self.0.bytes().filter(|&b| b == b'/').count() as u32
        }
    }

    /// The last component; `None` for the root, which has no name.
    pub fn name(&self) -> Option<&str> {
        self.components().next_back()
    }

    /// The parent path; `None` for the root.
    pub fn parent(&self) -> Option<NsPath> {
        if self.is_root() {
            return None;
        }
        match self.0.rfind('/') {
            Some(0) | None => Some(NsPath::root()),
            Some(i) => Some(NsPath(self.0[..i].to_owned())),
        }
    }

    /// The child path `self/component`, validated (the component and the resulting depth).
    pub fn join(&self, component: &str) -> Result<NsPath, PathError> {
        let joined = if self.is_root() {
            format!("/{component}")
        } else {
            format!("{}/{component}", self.0)
        };
        check_component(component).map_err(|p| PathError::new(&joined, p))?;
        let depth = self.depth() as usize + 1;
        if depth > MAX_DEPTH as usize {
            return Err(PathError::new(&joined, PathProblem::TooDeep { depth }));
        }
        Ok(NsPath(joined))
    }

    /// Whether `self` is a strict ancestor of `other` (`/a` of `/a/b`, not of `/a` or `/ab`).
    pub fn is_ancestor_of(&self, other: &NsPath) -> bool {
        if self.is_root() {
            return !other.is_root();
        }
        other
            .0
            .strip_prefix(self.0.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Whether `self` is `other` or a strict ancestor of it.
    pub fn is_same_or_ancestor_of(&self, other: &NsPath) -> bool {
        self == other || self.is_ancestor_of(other)
    }
}

impl Default for NsPath {
    fn default() -> Self {
        NsPath::root()
    }
}

impl Ord for NsPath {
    /// Component-wise, so that sorted order is tree pre-order (plain string order would put
    /// `/a-b` between `/a` and `/a/b`, since `-` sorts before `/`).
    fn cmp(&self, other: &Self) -> Ordering {
        self.components().cmp(other.components())
    }
}

impl PartialOrd for NsPath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for NsPath {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NsPath::parse(s)
    }
}

impl TryFrom<String> for NsPath {
    type Error = PathError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        NsPath::parse(&s)
    }
}

impl TryFrom<&str> for NsPath {
    type Error = PathError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        NsPath::parse(s)
    }
}

impl From<NsPath> for String {
    fn from(p: NsPath) -> Self {
        p.0
    }
}

impl AsRef<str> for NsPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NsPath({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> NsPath {
        NsPath::parse(s).unwrap()
    }

    fn problem(s: &str) -> PathProblem {
        NsPath::parse(s).unwrap_err().problem().clone()
    }

    fn deep(n: usize) -> String {
        (0..n).map(|i| format!("/l{i}")).collect()
    }

    #[test]
    fn valid_paths() {
        for s in [
            "/",
            "/a",
            "/tenant-a",
            "/tenant-a/ci",
            "/A_Z.09-x",
            "/.hidden",
            "/...",
            "/a.b/..c/c..",
            "/-",
            "/_",
        ] {
            let path = p(s);
            assert_eq!(path.as_str(), s);
            assert_eq!(path.to_string(), s);
        }
        p(&format!("/{}", "x".repeat(64)));
    }

    #[test]
    fn root() {
        let r = NsPath::root();
        assert!(r.is_root());
        assert_eq!(r, p("/"));
        assert_eq!(r.depth(), 0);
        assert_eq!(r.name(), None);
        assert_eq!(r.parent(), None);
        assert_eq!(r.components().count(), 0);
        assert_eq!(NsPath::default(), r);
    }

    #[test]
    fn rejects_empty_and_relative() {
        assert_eq!(problem(""), PathProblem::Empty);
        assert_eq!(problem("a"), PathProblem::NotAbsolute);
        assert_eq!(problem("a/b"), PathProblem::NotAbsolute);
        assert_eq!(problem(" /a"), PathProblem::NotAbsolute);
        assert_eq!(problem("./a"), PathProblem::NotAbsolute);
    }

    #[test]
    fn rejects_empty_components() {
        for s in ["//", "/a/", "/a//b", "//a", "/a/b/", "///"] {
            assert_eq!(problem(s), PathProblem::EmptyComponent, "{s}");
        }
    }

    #[test]
    fn rejects_dot_components() {
        for (s, c) in [("/.", "."), ("/..", ".."), ("/a/./b", "."), ("/a/..", "..")] {
            assert_eq!(
                problem(s),
                PathProblem::DotComponent {
                    component: c.to_owned()
                },
                "{s}"
            );
        }
    }

    #[test]
    fn rejects_bad_characters_including_unicode() {
        for (s, ch) in [
            ("/a b", ' '),
            ("/café", 'é'),
            ("/ｆｕｌｌ", 'ｆ'),
            ("/a\0b", '\0'),
            ("/a\nb", '\n'),
            ("/a\\b", '\\'),
            ("/a:b", ':'),
            ("/a*", '*'),
            ("/x/🦀", '🦀'),
            ("/a\u{200b}", '\u{200b}'),
        ] {
            match problem(s) {
                PathProblem::BadChar { ch: got, .. } => assert_eq!(got, ch, "{s:?}"),
                other => panic!("{s:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn component_length_bound() {
        let ok = format!("/{}", "a".repeat(64));
        assert!(NsPath::parse(&ok).is_ok());
        let long = format!("/{}", "a".repeat(65));
        assert_eq!(problem(&long), PathProblem::ComponentTooLong { len: 65 });
        // 64 characters of a multi-byte letter are rejected for the letter, not the length.
        let uni = format!("/{}", "é".repeat(40));
        assert!(matches!(
            problem(&uni),
            PathProblem::BadChar { ch: 'é', .. }
        ));
    }

    #[test]
    fn depth_bound() {
        let ok = p(&deep(32));
        assert_eq!(ok.depth(), 32);
        assert_eq!(problem(&deep(33)), PathProblem::TooDeep { depth: 33 });
        assert_eq!(problem(&deep(1000)), PathProblem::TooDeep { depth: 1000 });
        assert!(ok.join("x").is_err());
        assert_eq!(
            ok.join("x").unwrap_err().problem(),
            &PathProblem::TooDeep { depth: 33 }
        );
        let d31 = p(&deep(31));
        assert_eq!(d31.join("x").unwrap().depth(), 32);
    }

    #[test]
    fn error_messages_name_the_path_and_the_rule() {
        let msg = NsPath::parse("/a//b").unwrap_err().to_string();
        assert!(msg.contains("\"/a//b\""), "{msg}");
        assert!(msg.contains("empty component"), "{msg}");
        let msg = NsPath::parse("/a/café").unwrap_err().to_string();
        assert!(msg.contains("'é'") && msg.contains("A-Z a-z 0-9"), "{msg}");
        let msg = NsPath::parse(&deep(33)).unwrap_err().to_string();
        assert!(msg.contains("33") && msg.contains("at most 32"), "{msg}");
        let msg = NsPath::parse("tenant").unwrap_err().to_string();
        assert!(msg.contains("start with '/'"), "{msg}");
        let msg = NsPath::parse(&format!("/{}", "a".repeat(65)))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("65") && msg.contains("1 to 64"), "{msg}");
        let msg = NsPath::parse("/a/..").unwrap_err().to_string();
        assert!(msg.contains("\"..\""), "{msg}");
    }

    #[test]
    fn error_messages_stay_short_for_huge_input() {
        let huge = format!("/{}", "a/".repeat(100_000));
        let msg = NsPath::parse(&huge).unwrap_err().to_string();
        assert!(msg.len() < 600, "{}", msg.len());
        let huge = format!("/{} x", "a".repeat(100_000));
        let msg = NsPath::parse(&huge).unwrap_err().to_string();
        assert!(msg.len() < 600, "{}", msg.len());
    }

    #[test]
    fn parent_name_components_depth() {
        let x = p("/tenant-a/ci/job.1");
        assert_eq!(x.depth(), 3);
        assert_eq!(x.name(), Some("job.1"));
        assert_eq!(
            x.components().collect::<Vec<_>>(),
            ["tenant-a", "ci", "job.1"]
        );
        assert_eq!(x.parent(), Some(p("/tenant-a/ci")));
        assert_eq!(p("/tenant-a").parent(), Some(NsPath::root()));
        let mut cur = x.clone();
        let mut n = 0;
        while let Some(parent) = cur.parent() {
            assert_eq!(parent.depth() + 1, cur.depth());
            assert_eq!(parent.join(cur.name().unwrap()).unwrap(), cur);
            cur = parent;
            n += 1;
        }
        assert_eq!(n, 3);
        assert!(cur.is_root());
    }

    #[test]
    fn join_validates() {
        let r = NsPath::root();
        assert_eq!(r.join("a").unwrap(), p("/a"));
        assert_eq!(p("/a").join("b").unwrap(), p("/a/b"));
        for bad in ["", ".", "..", "a/b", "é", "a b"] {
            let err = r.join(bad).unwrap_err();
            assert!(!err.to_string().is_empty());
        }
        assert!(NsPath::check_component("ok-1").is_ok());
        assert!(NsPath::check_component("a/b").is_err());
        assert!(NsPath::check_component("").is_err());
    }

    #[test]
    fn ancestry() {
        let root = NsPath::root();
        let a = p("/a");
        let ab = p("/a/b");
        let abc = p("/a/b/c");
        let ab2 = p("/ab");
        assert!(root.is_ancestor_of(&a));
        assert!(root.is_ancestor_of(&abc));
        assert!(!root.is_ancestor_of(&root));
        assert!(root.is_same_or_ancestor_of(&root));
        assert!(a.is_ancestor_of(&ab));
        assert!(a.is_ancestor_of(&abc));
        assert!(!a.is_ancestor_of(&a));
        assert!(a.is_same_or_ancestor_of(&a));
        assert!(
            !a.is_ancestor_of(&ab2),
            "prefix of the string is not ancestry"
        );
        assert!(!a.is_ancestor_of(&p("/a-b")));
        assert!(!ab.is_ancestor_of(&a));
        assert!(!a.is_ancestor_of(&root));
        assert!(!ab.is_same_or_ancestor_of(&p("/a/c")));
    }

    #[test]
    fn ordering_is_tree_preorder() {
        let mut v: Vec<NsPath> = ["/a/b", "/a-b", "/", "/a", "/b", "/a/a", "/a.b", "/a/b/c"]
            .into_iter()
            .map(p)
            .collect();
        v.sort();
        let got: Vec<&str> = v.iter().map(NsPath::as_str).collect();
        assert_eq!(
            got,
            ["/", "/a", "/a/a", "/a/b", "/a/b/c", "/a-b", "/a.b", "/b"]
        );
    }

    #[test]
    fn serde_as_string_and_validates() {
        let x = p("/tenant-a/ci");
        let json = serde_json::to_string(&x).unwrap();
        assert_eq!(json, "\"/tenant-a/ci\"");
        assert_eq!(serde_json::from_str::<NsPath>(&json).unwrap(), x);
        for bad in ["\"\"", "\"a\"", "\"/a/\"", "\"/..\"", "\"/é\"", "5"] {
            assert!(serde_json::from_str::<NsPath>(bad).is_err(), "{bad}");
        }
        let err = serde_json::from_str::<NsPath>("\"/a//b\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty component"), "{err}");
    }

    #[test]
    fn from_str_and_conversions() {
        let x: NsPath = "/a".parse().unwrap();
        assert_eq!(x, NsPath::try_from("/a").unwrap());
        assert_eq!(x, NsPath::try_from("/a".to_owned()).unwrap());
        assert_eq!(String::from(x.clone()), "/a");
        assert_eq!(x.as_ref(), "/a");
        assert_eq!(format!("{x:?}"), "NsPath(\"/a\")");
    }
}
