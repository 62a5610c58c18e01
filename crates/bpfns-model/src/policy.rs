//! Who may create, enter and delete namespaces (contract point (docs/design.md) 7), as pure functions.
//!
//! The rules:
//! - A caller in the root namespace needs host privilege ([`Caller::host_admin`]); with it,
//!   it may do anything.
//! - A caller in any other namespace may create and delete only strict descendants of its
//!   own namespace, and enter only its own namespace or a descendant, whatever its
//!   capabilities, host `CAP_SYS_ADMIN` included. Entering only narrows, and a namespace
//!   cannot widen itself (contract points (docs/design.md) 6 and 7).
//! - Entering the namespace one is already in changes nothing, so it is always allowed.
//! - Unknown namespaces fail closed: denied.

use std::fmt;

use crate::id::NsId;
use crate::path::NsPath;
use crate::registry::Registry;

/// Who is asking, as established from kernel facts (peer pidfd to task tag, and
/// capabilities in the initial user namespace), never from what the caller says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The namespace the calling task is in.
    pub ns: NsId,
    /// Whether the caller holds `CAP_SYS_ADMIN` in the initial user namespace.
    /// Capabilities held only inside a user namespace never count (contract point (docs/design.md) 7).
    pub host_admin: bool,
}

/// An action on a namespace that needs authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Create a namespace.
    Create,
    /// Move a task into a namespace.
    Enter,
    /// Delete a namespace.
    Delete,
    /// Change a namespace's program policy.
    SetPolicy,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Create => "create",
            Action::Enter => "enter",
            Action::Delete => "delete",
            Action::SetPolicy => "set the policy of",
        })
    }
}

/// Why an action was refused; each message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// A caller in the root namespace without host privilege.
    #[error(
        "permission denied: to {action} namespace {target} from the root namespace needs \
         CAP_SYS_ADMIN in the initial user namespace"
    )]
    NotHostAdmin {
        /// What was asked.
        action: Action,
        /// The namespace it was asked for.
        target: NsPath,
    },
    /// A caller in a non-root namespace acting outside its own subtree.
    #[error(
        "permission denied: a process in namespace {caller} may only {action} {scope} of \
         {caller}, and {target} is not one; inside a namespace no capability, not even host \
         CAP_SYS_ADMIN, reaches further",
        scope = if *action == Action::Enter {
            "that namespace or a descendant"
        } else {
            "strict descendants"
        }
    )]
    OutsideOwnSubtree {
        /// What was asked.
        action: Action,
        /// The caller's namespace.
        caller: NsPath,
        /// The namespace it was asked for.
        target: NsPath,
    },
    /// The caller's namespace is not in the registry.
    #[error(
        "permission denied: the caller's namespace (id {0}) is unknown; an unknown namespace \
         is granted nothing"
    )]
    UnknownCallerNamespace(NsId),
    /// The target namespace is not in the registry.
    #[error("permission denied: to {action} namespace id {target}, which does not exist")]
    UnknownTarget {
        /// What was asked.
        action: Action,
        /// The unknown id.
        target: NsId,
    },
}

/// The common rule: root needs host privilege; elsewhere the target must be in the
/// caller's subtree (strictly, unless `same_ok`).
fn check(
    reg: &Registry,
    caller: Caller,
    action: Action,
    target: &NsPath,
    same_ok: bool,
) -> Result<(), Denied> {
    let Some(caller_path) = reg.path(caller.ns) else {
        return Err(Denied::UnknownCallerNamespace(caller.ns));
    };
    if same_ok && caller_path == target {
        return Ok(());
    }
    if caller.ns == NsId::ROOT {
        return if caller.host_admin {
            Ok(())
        } else {
            Err(Denied::NotHostAdmin {
                action,
                target: target.clone(),
            })
        };
    }
    if caller_path.is_ancestor_of(target) {
        Ok(())
    } else {
        Err(Denied::OutsideOwnSubtree {
            action,
            caller: caller_path.clone(),
            target: target.clone(),
        })
    }
}

/// May `caller` create the namespace `path`? (Whether it can be created, that is whether
/// its parent exists and it does not, is [`Registry::create`]'s business.)
pub fn may_create(reg: &Registry, caller: Caller, path: &NsPath) -> Result<(), Denied> {
    check(reg, caller, Action::Create, path, false)
}

/// May `caller` move a task (itself or a child it starts) into `target`?
pub fn may_enter(reg: &Registry, caller: Caller, target: NsId) -> Result<(), Denied> {
    let path = target_path(reg, Action::Enter, target)?;
    check(reg, caller, Action::Enter, path, true)
}

/// May `caller` delete `target`? (Whether it can be deleted, that is whether it is not the
/// root and has no children or member tasks, is checked elsewhere.)
pub fn may_delete(reg: &Registry, caller: Caller, target: NsId) -> Result<(), Denied> {
    let path = target_path(reg, Action::Delete, target)?;
    check(reg, caller, Action::Delete, path, false)
}

/// May `caller` change the program policy of `target`? Like deleting: host privilege in the
/// root, strict descendants elsewhere; so no namespace widens its own policy. (Whether the new
/// policy fits between the parent's and the children's is [`Registry::set_policy`]'s
/// business.)
pub fn may_set_policy(reg: &Registry, caller: Caller, target: NsId) -> Result<(), Denied> {
    let path = target_path(reg, Action::SetPolicy, target)?;
    check(reg, caller, Action::SetPolicy, path, false)
}

fn target_path(reg: &Registry, action: Action, target: NsId) -> Result<&NsPath, Denied> {
    reg.path(target)
        .ok_or(Denied::UnknownTarget { action, target })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> NsPath {
        NsPath::parse(s).unwrap()
    }

    /// root, /a, /a/b, /a/b/c, /e
    fn sample() -> (Registry, NsId, NsId, NsId, NsId) {
        let mut r = Registry::new();
        let a = r.create(&p("/a")).unwrap();
        let ab = r.create(&p("/a/b")).unwrap();
        let abc = r.create(&p("/a/b/c")).unwrap();
        let e = r.create(&p("/e")).unwrap();
        (r, a, ab, abc, e)
    }

    fn caller(ns: NsId, host_admin: bool) -> Caller {
        Caller { ns, host_admin }
    }

    #[test]
    fn host_admin_in_root_may_do_anything() {
        let (r, a, ab, abc, e) = sample();
        let c = caller(NsId::ROOT, true);
        for path in ["/x", "/a/new", "/a/b/c/d", "/"] {
            assert_eq!(may_create(&r, c, &p(path)), Ok(()), "{path}");
        }
        for t in [NsId::ROOT, a, ab, abc, e] {
            assert_eq!(may_enter(&r, c, t), Ok(()));
            assert_eq!(may_delete(&r, c, t), Ok(()));
            assert_eq!(may_set_policy(&r, c, t), Ok(()));
        }
    }

    #[test]
    fn root_without_host_admin_is_denied() {
        let (r, a, ..) = sample();
        let c = caller(NsId::ROOT, false);
        let err = may_create(&r, c, &p("/x")).unwrap_err();
        assert_eq!(
            err,
            Denied::NotHostAdmin {
                action: Action::Create,
                target: p("/x")
            }
        );
        assert!(err
            .to_string()
            .contains("CAP_SYS_ADMIN in the initial user namespace"));
        assert!(matches!(
            may_enter(&r, c, a),
            Err(Denied::NotHostAdmin {
                action: Action::Enter,
                ..
            })
        ));
        assert!(matches!(
            may_delete(&r, c, a),
            Err(Denied::NotHostAdmin {
                action: Action::Delete,
                ..
            })
        ));
        assert!(matches!(
            may_set_policy(&r, c, a),
            Err(Denied::NotHostAdmin {
                action: Action::SetPolicy,
                ..
            })
        ));
        // Staying where one is changes nothing.
        assert_eq!(may_enter(&r, c, NsId::ROOT), Ok(()));
    }

    #[test]
    fn members_act_on_strict_descendants_only() {
        let (r, a, ab, abc, e) = sample();
        for host_admin in [false, true] {
            let c = caller(a, host_admin);
            assert_eq!(may_create(&r, c, &p("/a/new")), Ok(()));
            assert_eq!(may_create(&r, c, &p("/a/b/new")), Ok(()));
            assert_eq!(may_delete(&r, c, ab), Ok(()));
            assert_eq!(may_delete(&r, c, abc), Ok(()));
            assert_eq!(may_set_policy(&r, c, ab), Ok(()));
            assert_eq!(may_set_policy(&r, c, abc), Ok(()));
            assert_eq!(may_enter(&r, c, a), Ok(()), "own namespace");
            assert_eq!(may_enter(&r, c, ab), Ok(()));
            assert_eq!(may_enter(&r, c, abc), Ok(()));

            // Not itself, not upwards, not sideways: host_admin does not help inside.
            for path in ["/a", "/", "/x", "/e/x", "/ab", "/a-b/x"] {
                let err = may_create(&r, c, &p(path)).unwrap_err();
                assert!(
                    matches!(
                        err,
                        Denied::OutsideOwnSubtree {
                            action: Action::Create,
                            ..
                        }
                    ),
                    "{path}: {err:?}"
                );
            }
            for t in [a, NsId::ROOT, e] {
                assert!(matches!(
                    may_delete(&r, c, t),
                    Err(Denied::OutsideOwnSubtree {
                        action: Action::Delete,
                        ..
                    })
                ));
                // Not even its own: a namespace never widens itself.
                assert!(matches!(
                    may_set_policy(&r, c, t),
                    Err(Denied::OutsideOwnSubtree {
                        action: Action::SetPolicy,
                        ..
                    })
                ));
            }
            for t in [NsId::ROOT, e] {
                assert!(matches!(
                    may_enter(&r, c, t),
                    Err(Denied::OutsideOwnSubtree {
                        action: Action::Enter,
                        ..
                    })
                ));
            }
        }
        // A deeper member cannot climb back up.
        let c = caller(abc, true);
        assert!(may_enter(&r, c, ab).is_err());
        assert!(may_enter(&r, c, a).is_err());
        assert!(may_create(&r, c, &p("/a/b/x")).is_err());
    }

    #[test]
    fn denial_messages_name_the_rule() {
        let (r, a, _, _, e) = sample();
        let msg = may_create(&r, caller(a, true), &p("/e/x"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("namespace /a may only create strict descendants of /a"),
            "{msg}"
        );
        assert!(msg.contains("/e/x is not one"), "{msg}");
        assert!(msg.contains("not even host CAP_SYS_ADMIN"), "{msg}");
        let msg = may_enter(&r, caller(a, false), e).unwrap_err().to_string();
        assert!(
            msg.contains("may only enter that namespace or a descendant of /a"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_namespaces_fail_closed() {
        let (mut r, a, ..) = sample();
        let gone = r.create(&p("/gone")).unwrap();
        r.delete(&p("/gone")).unwrap();
        // A caller tagged with a deleted namespace is granted nothing, admin or not.
        for host_admin in [false, true] {
            let c = caller(gone, host_admin);
            assert_eq!(
                may_create(&r, c, &p("/gone/x")),
                Err(Denied::UnknownCallerNamespace(gone))
            );
            assert!(may_enter(&r, c, a).is_err());
            assert!(may_delete(&r, c, a).is_err());
        }
        // Unknown targets are refused even to the host admin.
        let admin = caller(NsId::ROOT, true);
        assert_eq!(
            may_enter(&r, admin, gone),
            Err(Denied::UnknownTarget {
                action: Action::Enter,
                target: gone
            })
        );
        assert!(matches!(
            may_delete(&r, admin, NsId(999)),
            Err(Denied::UnknownTarget { .. })
        ));
        // Entering one's own unknown namespace is no exception.
        assert_eq!(
            may_enter(&r, caller(gone, true), gone),
            Err(Denied::UnknownTarget {
                action: Action::Enter,
                target: gone
            })
        );
    }
}
