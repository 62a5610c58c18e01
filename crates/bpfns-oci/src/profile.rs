//! The container's seccomp profile (`linux.seccomp` of the OCI configuration), rewritten so
//! that bpfnsd answers the same bpf() commands as for `bpfns exec` members.
//!
//! The engine's profile is kept for every other system call. Runtimes compile it with
//! libseccomp, which has two traps:
//! - an unconditional rule for a system call swallows the conditional rules of that call:
//!   so every rule bpfns writes for `bpf`, `ioctl` and `seccomp` is conditional, and the
//!   engine's unconditional rules for them are taken out;
//! - comparisons are on 64 bits while the kernel reads only the low 32 of `bpf()`'s `cmd` and
//!   of `ioctl()`'s request: a plain `SCMP_CMP_EQ` is bypassed by setting high bits, so every
//!   rule compares `SCMP_CMP_MASKED_EQ` with the mask `0xffffffff`.
//!
//! What the rules say (as the member filter, `bpfns_sys::member_filter`):
//! - `bpf`: the trapped commands go to the listener (`SCMP_ACT_NOTIFY`), the other commands
//!   below [`CMD_LIMIT`] are allowed (beyond: the engine's default action);
//! - `ioctl`: `PERF_EVENT_IOC_QUERY_BPF` goes to the listener, its 32-bit spelling is refused
//!   (`EPERM`: only compat entry points read it, and they are not supervised), every other
//!   request is allowed — "low 32 bits differ from both" written as one rule per bit;
//! - `seccomp`: a filter with `SECCOMP_FILTER_FLAG_NEW_LISTENER` is refused (`EPERM`: a
//!   listener of the container's own would answer for it), anything else allowed.
//!
//! Every container gets them, whatever its capabilities: `PERF_EVENT_IOC_QUERY_BPF` needs
//! only `CAP_PERFMON`, `BPF_PROG_QUERY` on a cgroup only `CAP_NET_ADMIN`, a profile may allow
//! bpf() to anyone (`seccomp=unconfined`, Kubernetes' `Unconfined`), and a process joining the
//! container (`exec --privileged`) may hold more than the container's bounding set.
//! Each of the three is rewritten where the engine's profile lets the call run — `ALLOW`, but
//! also `LOG` (runs it), `TRACE` (a tracer lets it run: the container may trace itself) or an
//! action bpfns does not know — and `bpf` also where the container holds `CAP_BPF` or
//! `CAP_SYS_ADMIN` (podman's and Docker's profiles allow bpf() with `CAP_SYS_ADMIN` only; bpfns
//! lets `CAP_BPF` do what the kernel lets it). Where the engine refuses the call (`ERRNO`,
//! `KILL*`, `TRAP`) its rules stand. A profile with conditional rules of its own for one of
//! the three is refused: bpfns cannot merge them without widening or narrowing them.

use serde_json::{json, Value};

use bpfns_client::filter::{
    CmdRules, PERF_EVENT_IOC_QUERY_BPF, PERF_EVENT_IOC_QUERY_BPF_32,
    SECCOMP_FILTER_FLAG_NEW_LISTENER, TRAPPED,
};

/// bpf() commands at or above this one are left to the engine's default action (the kernel
/// knows about 40).
pub const CMD_LIMIT: u32 = 64;

const ALLOW: &str = "SCMP_ACT_ALLOW";
const NOTIFY: &str = "SCMP_ACT_NOTIFY";
const ERRNO: &str = "SCMP_ACT_ERRNO";
const LOW32: u64 = 0xffff_ffff;

/// Why a profile cannot be rewritten.
#[derive(Debug)]
pub struct ProfileError(pub String);

impl std::fmt::Display for ProfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProfileError {}

/// One rule: `names` get `action` when `(arg[index] & mask) == value` (no condition: always).
fn rule(name: &str, action: &str, cond: Option<(u32, u64, u64)>) -> Value {
    let mut r = json!({ "names": [name], "action": action });
    if action == ERRNO {
        r["errnoRet"] = json!(libc_eperm());
    }
    if let Some((index, mask, value)) = cond {
        r["args"] = json!([{
            "index": index,
            "value": mask,
            "valueTwo": value,
            "op": "SCMP_CMP_MASKED_EQ",
        }]);
    }
    r
}

fn libc_eperm() -> u32 {
    1
}

/// The rules bpfns adds for `bpf`, for a container of a namespace whose policy gives
/// `cmds` (as the member filter: [`CmdRules::action`]): the trapped commands (and
/// `BPF_MAP_CREATE` where map types are restricted) go to the listener, the policy's other
/// commands below [`CMD_LIMIT`] are allowed, the rest below it refused (`EPERM`).
pub fn bpf_rules(cmds: &CmdRules) -> Vec<Value> {
    let mut out: Vec<Value> = TRAPPED
        .iter()
        .map(|&c| rule("bpf", NOTIFY, Some((0, LOW32, u64::from(c)))))
        .collect();
    out.extend((0..CMD_LIMIT).filter(|c| !TRAPPED.contains(c)).map(|c| {
        let action = match cmds.action(c) {
            bpfns_sys::seccomp::Action::UserNotif => NOTIFY,
            bpfns_sys::seccomp::Action::Allow => ALLOW,
            _ => ERRNO,
        };
        rule("bpf", action, Some((0, LOW32, u64::from(c))))
    }));
    out
}

/// The rules bpfns adds for `ioctl`.
pub fn ioctl_rules() -> Vec<Value> {
    let q = u64::from(PERF_EVENT_IOC_QUERY_BPF);
    let q32 = u64::from(PERF_EVENT_IOC_QUERY_BPF_32);
    let differ = q ^ q32;
    let mut out = vec![
        rule("ioctl", NOTIFY, Some((1, LOW32, q))),
        rule("ioctl", ERRNO, Some((1, LOW32, q32))),
    ];
    // Allowed: a request whose low 32 bits are neither: a bit where both agree is
    // different, or the bits where they disagree match neither (both clear, both set).
    for bit in 0..32 {
        let m = 1u64 << bit;
        if differ & m == 0 {
            out.push(rule("ioctl", ALLOW, Some((1, m, !q & m))));
        }
    }
    out.push(rule("ioctl", ALLOW, Some((1, differ, 0))));
    out.push(rule("ioctl", ALLOW, Some((1, differ, differ))));
    out
}

/// The rules bpfns adds for `seccomp`.
pub fn seccomp_rules() -> Vec<Value> {
    let nl = u64::from(SECCOMP_FILTER_FLAG_NEW_LISTENER);
    vec![
        rule("seccomp", ALLOW, Some((1, nl, 0))),
        rule("seccomp", ERRNO, Some((1, nl, nl))),
    ]
}

/// Rewrite `seccomp` (the value of `linux.seccomp`; `Null` if the engine set none, as for a
/// privileged container) in place, for a container that holds `CAP_BPF` or `CAP_SYS_ADMIN`
/// (`may_use_bpf`) or not. Returns whether a rule sends calls to the listener.
pub fn rewrite(
    seccomp: &mut Value,
    may_use_bpf: bool,
    cmds: &CmdRules,
) -> Result<bool, ProfileError> {
    if seccomp.is_null() {
        *seccomp = json!({
            "defaultAction": ALLOW,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [],
        });
    }
    let default = seccomp
        .get("defaultAction")
        .and_then(Value::as_str)
        .ok_or_else(|| ProfileError("linux.seccomp has no defaultAction".into()))?
        .to_string();
    let rules = seccomp
        .get_mut("syscalls")
        .map(|v| {
            if v.is_null() {
                *v = json!([]);
            }
            v
        })
        .and_then(Value::as_array_mut);
    let rules = match rules {
        Some(r) => r,
        None => {
            seccomp["syscalls"] = json!([]);
            seccomp["syscalls"]
                .as_array_mut()
                .ok_or_else(|| ProfileError("linux.seccomp.syscalls".into()))?
        }
    };
    let mut take = Vec::new();
    let mut add = Vec::new();
    for (name, extra) in [
        ("bpf", bpf_rules(cmds)),
        ("ioctl", ioctl_rules()),
        ("seccomp", seccomp_rules()),
    ] {
        let replace = match engine_answer(rules, &default, name) {
            Answer::Conditional => {
                return Err(ProfileError(format!(
                    "the container's seccomp profile has conditional rules for {name}(), which \
                     bpfns-oci cannot merge with its own without changing what they allow; fix: \
                     give it a profile whose {name} rule is unconditional (allowed or refused), \
                     or run it without bpfns-oci"
                )))
            }
            Answer::Runs => true,
            // podman's and Docker's profiles refuse bpf() without CAP_SYS_ADMIN: bpfns lets
            // CAP_BPF do what the kernel lets it.
            Answer::Refused => name == "bpf" && may_use_bpf,
        };
        if replace {
            take.push(name);
            add.extend(extra);
        }
    }
    // Out of every rule; a rule left naming nothing goes.
    for r in rules.iter_mut() {
        if let Some(names) = r.get_mut("names").and_then(Value::as_array_mut) {
            names.retain(|n| n.as_str().is_none_or(|n| !take.contains(&n)));
        }
    }
    rules.retain(|r| !names_of(r).is_empty() || r.get("names").is_none());
    let notify = add
        .iter()
        .any(|r| r.get("action").and_then(Value::as_str) == Some(NOTIFY));
    // A rule whose action is the default one is refused by some runtimes and changes nothing.
    rules.extend(
        add.into_iter()
            .filter(|r| r.get("action").and_then(Value::as_str) != Some(default.as_str())),
    );
    Ok(notify)
}

/// How the engine's profile answers a system call.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// The call may run: allowed, logged (`LOG`), left to a tracer (`TRACE`: the container can
    /// be its own) or to a listener — or an action bpfns does not know.
    Runs,
    /// Refused: `ERRNO`, `KILL*`, `TRAP`.
    Refused,
    /// Rules with conditions decide.
    Conditional,
}

fn refuses(action: &str) -> bool {
    matches!(
        action,
        "SCMP_ACT_ERRNO"
            | "SCMP_ACT_KILL"
            | "SCMP_ACT_KILL_PROCESS"
            | "SCMP_ACT_KILL_THREAD"
            | "SCMP_ACT_TRAP"
    )
}

/// The engine's answer for `name`: its rules naming it, else its default action.
fn engine_answer(rules: &[Value], default: &str, name: &str) -> Answer {
    let named: Vec<&Value> = rules
        .iter()
        .filter(|r| names_of(r).contains(&name))
        .collect();
    if named.iter().any(|r| {
        r.get("args")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    }) {
        return Answer::Conditional;
    }
    let actions: Vec<&str> = if named.is_empty() {
        vec![default]
    } else {
        named
            .iter()
            .map(|r| r.get("action").and_then(Value::as_str).unwrap_or(""))
            .collect()
    };
    if actions.iter().all(|a| refuses(a)) {
        Answer::Refused
    } else {
        Answer::Runs
    }
}

fn names_of(r: &Value) -> Vec<&str> {
    r.get("names")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether the container holds `CAP_BPF` or `CAP_SYS_ADMIN` (in its bounding set): only then
/// may it call bpf(), as the engines' profiles decide (podman's and Docker's allow bpf() with
/// `CAP_SYS_ADMIN` only; bpfns lets `CAP_BPF` do what the kernel lets it).
pub fn may_use_bpf(config: &Value) -> bool {
    config
        .pointer("/process/capabilities/bounding")
        .and_then(Value::as_array)
        .is_some_and(|caps| {
            caps.iter()
                .any(|c| matches!(c.as_str(), Some("CAP_BPF" | "CAP_SYS_ADMIN")))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The actions of the rules for `name` that match `args` (libseccomp's reading of them).
    fn matching(rules: &[Value], name: &str, args: [u64; 2]) -> Vec<String> {
        rules
            .iter()
            .filter(|r| names_of(r).contains(&name))
            .filter(|r| {
                r.get("args").and_then(Value::as_array).is_none_or(|conds| {
                    conds.iter().all(|c| {
                        let i = c["index"].as_u64().expect("index") as usize;
                        let mask = c["value"].as_u64().expect("mask");
                        let v = c["valueTwo"].as_u64().expect("value");
                        assert_eq!(c["op"], "SCMP_CMP_MASKED_EQ");
                        args[i] & mask == v
                    })
                })
            })
            .map(|r| r["action"].as_str().expect("action").to_string())
            .collect()
    }

    fn podman_like() -> Value {
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["read", "ioctl", "seccomp", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            ]
        })
    }

    /// Exactly one action for every value: rules that overlap agree, none is missing.
    fn one(rules: &[Value], name: &str, args: [u64; 2]) -> String {
        let mut m = matching(rules, name, args);
        m.sort();
        m.dedup();
        assert_eq!(m.len(), 1, "{name} {args:x?}: {m:?}");
        m[0].clone()
    }

    #[test]
    fn bpf_commands_are_trapped_on_their_low_32_bits() {
        let mut s = podman_like();
        rewrite(&mut s, true, &CmdRules::ALL).expect("rewrite");
        let rules = s["syscalls"].as_array().expect("rules").clone();
        for cmd in 0..CMD_LIMIT {
            for high in [0u64, 1 << 32, 0xffff_ffff_0000_0000] {
                let want = if TRAPPED.contains(&cmd) {
                    NOTIFY
                } else {
                    ALLOW
                };
                assert_eq!(
                    one(&rules, "bpf", [high | u64::from(cmd), 0]),
                    want,
                    "{cmd} {high:x}"
                );
            }
        }
        // Unknown commands: the engine's default.
        assert!(matching(&rules, "bpf", [200, 0]).is_empty());
        // The engine's rules for bpf are gone, other rules stay.
        assert!(rules
            .iter()
            .all(|r| !(names_of(r) == ["bpf"] && r["action"] == ERRNO)));
        assert!(rules.iter().any(|r| names_of(r) == ["read", "write"]));
        assert!(rules.iter().any(|r| names_of(r) == ["personality"]));
        // Nothing unconditional names the three.
        for n in ["bpf", "ioctl", "seccomp"] {
            assert!(rules
                .iter()
                .filter(|r| names_of(r).contains(&n))
                .all(|r| r.get("args").is_some()));
        }
    }

    #[test]
    fn the_namespaces_commands_are_refused_as_the_member_filter_refuses_them() {
        use bpfns_model::{Policy, TypeSet};
        let mut p = Policy::DEFAULT;
        p.cmds = TypeSet::ANY.minus(TypeSet::of([0, 21]));
        p.maps = TypeSet::of([2]);
        // map_create out: not trapped either, refused.
        let rules = CmdRules::of(&p, false);
        let r = bpf_rules(&rules);
        for cmd in 0..CMD_LIMIT {
            let got = one(&r, "bpf", [u64::from(cmd), 0]);
            let want = if TRAPPED.contains(&cmd) {
                NOTIFY
            } else if cmd == 0 || cmd == 21 {
                ERRNO
            } else {
                ALLOW
            };
            assert_eq!(got, want, "cmd {cmd}");
        }
        // Map types restricted, map_create allowed: it goes to the listener.
        p.cmds = TypeSet::ANY;
        let r = bpf_rules(&CmdRules::of(&p, false));
        assert_eq!(one(&r, "bpf", [0, 0]), NOTIFY);
        assert_eq!(one(&r, "bpf", [21, 0]), ALLOW);
        // BTF loads always go to the listener (bpfnsd makes them); map creation too where
        // bpfnsd makes members' maps.
        assert_eq!(one(&r, "bpf", [18, 0]), NOTIFY);
        let r = bpf_rules(&CmdRules::of(&Policy::DEFAULT, true));
        assert_eq!(one(&r, "bpf", [0, 0]), NOTIFY);
        // The default policy: today's rules.
        assert_eq!(
            bpf_rules(&CmdRules::of(&Policy::DEFAULT, false)),
            bpf_rules(&CmdRules::ALL)
        );
    }

    #[test]
    fn every_ioctl_request_has_exactly_one_answer() {
        let rules = ioctl_rules();
        let q = u64::from(PERF_EVENT_IOC_QUERY_BPF);
        let q32 = u64::from(PERF_EVENT_IOC_QUERY_BPF_32);
        assert_eq!(one(&rules, "ioctl", [3, q]), NOTIFY);
        assert_eq!(one(&rules, "ioctl", [3, q | 1 << 32]), NOTIFY);
        assert_eq!(one(&rules, "ioctl", [3, q32]), ERRNO);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for v in [
            0,
            0x5401,
            0x8008_2407,
            q ^ 1,
            q ^ (1 << 31),
            q | q32,
            q & q32,
            u64::MAX,
        ] {
            assert_eq!(one(&rules, "ioctl", [3, v]), ALLOW, "{v:x}");
        }
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let want = match x & LOW32 {
                v if v == q => NOTIFY,
                v if v == q32 => ERRNO,
                _ => ALLOW,
            };
            assert_eq!(one(&rules, "ioctl", [3, x]), want, "{x:x}");
        }
    }

    #[test]
    fn no_new_listener() {
        let rules = seccomp_rules();
        let nl = u64::from(SECCOMP_FILTER_FLAG_NEW_LISTENER);
        for flags in [0, 1, 2, 1 << 5, !nl] {
            assert_eq!(one(&rules, "seccomp", [1, flags]), ALLOW);
        }
        for flags in [nl, nl | 1, u64::MAX] {
            assert_eq!(one(&rules, "seccomp", [1, flags]), ERRNO);
        }
    }

    #[test]
    fn privileged_containers_get_a_profile_of_their_own() {
        let mut s = Value::Null;
        rewrite(&mut s, true, &CmdRules::ALL).expect("rewrite");
        assert_eq!(s["defaultAction"], ALLOW);
        let rules = s["syscalls"].as_array().expect("rules");
        // Only what differs from the default action: the notifications and refusals.
        assert!(rules.iter().all(|r| r["action"] != ALLOW));
        assert_eq!(matching(rules, "bpf", [0, 0]), [NOTIFY; 0]);
        assert_eq!(matching(rules, "bpf", [14, 0]), [NOTIFY]);
        assert_eq!(matching(rules, "seccomp", [1, 8]), [ERRNO]);
    }

    #[test]
    fn ioctl_and_seccomp_stay_the_engines_where_it_did_not_allow_them() {
        let mut s = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]
        });
        rewrite(&mut s, true, &CmdRules::ALL).expect("rewrite");
        let rules = s["syscalls"].as_array().expect("rules");
        assert!(matching(rules, "ioctl", [0, 0x5401]).is_empty());
        assert!(matching(rules, "seccomp", [0, 0]).is_empty());
        assert_eq!(matching(rules, "bpf", [14, 0]), [NOTIFY]);
    }

    /// Without CAP_BPF or CAP_SYS_ADMIN the engine's refusal of bpf() stands (every command,
    /// high bits or not), but `PERF_EVENT_IOC_QUERY_BPF` still goes to bpfnsd, and the
    /// container gets no listener of its own.
    #[test]
    fn without_bpf_capabilities_the_engines_refusal_stands() {
        let mut s = podman_like();
        assert!(
            rewrite(&mut s, false, &CmdRules::ALL).expect("rewrite"),
            "a listener is needed"
        );
        let rules = s["syscalls"].as_array().expect("rules").clone();
        for cmd in [0u64, 14, 12, 1 << 32 | 12, 200] {
            assert_eq!(matching(&rules, "bpf", [cmd, 0]), [ERRNO], "{cmd:x}");
        }
        let q = u64::from(PERF_EVENT_IOC_QUERY_BPF);
        assert_eq!(one(&rules, "ioctl", [3, q]), NOTIFY);
        // A listener of its own is refused (by the engine's default action, an ERRNO too).
        let nl = u64::from(SECCOMP_FILTER_FLAG_NEW_LISTENER);
        assert!(matching(&rules, "seccomp", [1, nl]).is_empty());
        assert_eq!(s["defaultAction"], ERRNO);
        assert_eq!(one(&rules, "seccomp", [1, 0]), ALLOW);
    }

    /// A profile that allows bpf() to anyone (`seccomp=unconfined`: no profile; or an
    /// unconditional allow) gets the member filter's rules whatever the capabilities.
    #[test]
    fn where_the_engine_allows_bpf_it_is_supervised_whatever_the_capabilities() {
        let mut none = Value::Null;
        assert!(rewrite(&mut none, false, &CmdRules::ALL).expect("rewrite"));
        let mut allowing = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["bpf", "read"], "action": "SCMP_ACT_ALLOW"}]
        });
        assert!(rewrite(&mut allowing, false, &CmdRules::ALL).expect("rewrite"));
        for s in [none, allowing] {
            let rules = s["syscalls"].as_array().expect("rules").clone();
            for cmd in TRAPPED {
                for high in [0u64, 1 << 32] {
                    assert_eq!(
                        matching(&rules, "bpf", [high | u64::from(cmd), 0]),
                        [NOTIFY],
                        "{cmd}"
                    );
                }
            }
        }
    }

    /// An engine's conditional rules for bpf() cannot be merged: refused, not widened.
    #[test]
    fn conditional_engine_rules_for_bpf_are_refused() {
        let mut s = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["bpf"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]
        });
        for caps in [true, false] {
            let e = rewrite(&mut s, caps, &CmdRules::ALL).expect_err("conditional bpf rules");
            assert!(e.0.contains("conditional rules for bpf()"), "{e}");
        }
    }

    /// Profiles that let a call run without `SCMP_ACT_ALLOW` — a `LOG` default, a `TRACE`
    /// rule (the container can be its own tracer), an unknown action — are rewritten as an
    /// allowing one, with or without capabilities; conditional rules for ioctl() or seccomp()
    /// are refused, not merged.
    #[test]
    fn every_action_that_lets_a_call_run_is_supervised() {
        let q = u64::from(PERF_EVENT_IOC_QUERY_BPF);
        let log_default = json!({"defaultAction": "SCMP_ACT_LOG", "syscalls": []});
        let trace_bpf = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["bpf"], "action": "SCMP_ACT_TRACE", "errnoRet": 1},
                {"names": ["ioctl"], "action": "SCMP_ACT_LOG"},
            ]
        });
        let unknown = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["bpf", "ioctl"], "action": "SCMP_ACT_SOMETHING_NEW"}]
        });
        for (what, profile) in [("log", log_default), ("trace", trace_bpf), ("new", unknown)] {
            for caps in [false, true] {
                let mut s = profile.clone();
                assert!(
                    rewrite(&mut s, caps, &CmdRules::ALL).expect("rewrite"),
                    "{what}: a listener"
                );
                let rules = s["syscalls"].as_array().expect("rules").clone();
                for cmd in TRAPPED {
                    assert_eq!(
                        matching(&rules, "bpf", [u64::from(cmd), 0]),
                        [NOTIFY],
                        "{what} {cmd}"
                    );
                }
                assert_eq!(one(&rules, "ioctl", [3, q]), NOTIFY, "{what}");
                // The engine's rules for them are gone (none would outrank bpfns's).
                assert!(
                    rules.iter().all(|r| {
                        !names_of(r).contains(&"bpf")
                            || r["action"] == NOTIFY
                            || r["action"] == ALLOW
                    }),
                    "{what}: {rules:?}"
                );
            }
        }
        for name in ["ioctl", "seccomp"] {
            let mut s = json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": [name], "action": "SCMP_ACT_ALLOW",
                              "args": [{"index": 1, "value": 0x5412, "op": "SCMP_CMP_NE"}]}]
            });
            let e = rewrite(&mut s, true, &CmdRules::ALL).expect_err("conditional rules");
            assert!(
                e.0.contains(&format!("conditional rules for {name}()")),
                "{e}"
            );
        }
    }

    #[test]
    fn capabilities() {
        let c = |caps: &[&str]| json!({"process": {"capabilities": {"bounding": caps}}});
        assert!(may_use_bpf(&c(&["CAP_CHOWN", "CAP_BPF"])));
        assert!(may_use_bpf(&c(&["CAP_SYS_ADMIN"])));
        assert!(!may_use_bpf(&c(&["CAP_CHOWN", "CAP_NET_ADMIN"])));
        assert!(!may_use_bpf(&json!({})));
    }
}
