//! Rewriting a bundle's `config.json` before the runtime creates the container.
//!
//! The configuration is edited as JSON values, not through typed OCI structures: a wrapper
//! must hand the runtime everything the engine wrote, fields newer than any crate included.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use std::collections::BTreeMap;

use bpfns_client::filter::CmdRules;
use bpfns_client::Client;
use bpfns_model::container::ContainerFacts;
use bpfns_model::NsPath;
use serde_json::{json, Value};

use crate::profile;
use crate::Settings;

/// The annotation that puts a container in a namespace of the operator's choice.
pub const NAMESPACE_ANNOTATION: &str = bpfns_model::container::NAMESPACE_ANNOTATION;

/// `create`/`run` options that take a value (crun's and runc's).
const WITH_VALUE: [&str; 6] = [
    "--bundle",
    "-b",
    "--pid-file",
    "--console-socket",
    "--preserve-fds",
    "--log",
];

/// The bundle and the container id of a `create`/`run` command line (what follows the
/// command): `--bundle B`, `-b B`, `--bundle=B` (default: the current directory).
fn bundle_and_id(args: &[OsString]) -> (PathBuf, Option<String>) {
    let mut bundle = PathBuf::from(".");
    let mut id = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if let Some(v) = a.strip_prefix("--bundle=") {
            bundle = v.into();
        } else if a == "--bundle" || a == "-b" {
            bundle = args.get(i + 1).map(PathBuf::from).unwrap_or(bundle);
            i += 1;
        } else if WITH_VALUE.contains(&a.as_ref()) {
            i += 1;
        } else if !a.starts_with('-') && id.is_none() {
            id = Some(a.into_owned());
        }
        i += 1;
    }
    (bundle, id)
}

/// Rewrite the bundle named by `args` (what follows `create` or `run`); `global` are the
/// runtime's options before the command (`--root`).
pub fn prepare(settings: &Settings, global: &[OsString], args: &[OsString]) -> Result<()> {
    let (bundle, id) = bundle_and_id(args);
    let id = id.context("no container id on the runtime's command line")?;
    let path = bundle.join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut config: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let facts = ContainerFacts {
        id: id.clone(),
        name: engine_name(),
        annotations: annotations(&config),
    };
    let bundle_dir = std::fs::canonicalize(&bundle).unwrap_or_else(|_| bundle.clone());
    let presence = presence_path(&bundle_dir, &config);
    let state_dir = runtime_root(settings, global).join(&id);
    let mut client = Client::connect(&settings.socket)
        .with_context(|| format!("container {id}: connecting to bpfnsd"))?;
    let (ns_path, _created) = client
        .container_namespace(&facts, presence.to_str(), state_dir.to_str())
        .with_context(|| format!("container {id}: its namespace"))?;
    let ns = NsPath::parse(&ns_path).with_context(|| format!("bpfnsd answered {ns_path}"))?;
    // The namespace's commands, refused from the cmd alone as for `bpfns exec` members.
    let info = client
        .ns_show(&ns_path)
        .with_context(|| format!("container {id}: the policy of namespace {ns_path}"))?;
    let cmds = CmdRules::of(
        &info.effective_policy.unwrap_or(info.policy),
        info.supervised_creations,
    );
    rewrite(&mut config, settings, &ns, &cmds)?;
    let tmp = bundle.join(".config.json.bpfns");
    std::fs::write(&tmp, serde_json::to_vec(&config)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// The directory whose removal means the engine removed the container, sent to bpfnsd as its
/// bundle. Usually the bundle; but containerd's shims (containerd's own, Docker's, Kubernetes'
/// CRI) make the bundle for the task and remove it when the task is deleted, that is when the
/// container stops (`docker stop`, `ctr task delete`), while the container stays and may start
/// again. Its writable layer (the rootfs overlay's upper directory, kept until the engine
/// removes the container) stands for it there; the bundle where the rootfs is no such overlay.
fn presence_path(bundle: &Path, config: &Value) -> PathBuf {
    let by_task = bundle
        .components()
        .any(|c| c.as_os_str() == "io.containerd.runtime.v2.task");
    let rootfs = config
        .get("root")
        .and_then(|r| r.get("path"))
        .and_then(Value::as_str)
        .map(|r| bundle.join(r));
    let upper = by_task.then_some(rootfs).flatten().and_then(|r| {
        let r = std::fs::canonicalize(&r).unwrap_or(r);
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        bpfns_sys::procfs::overlay_upperdir(&mountinfo, &r)
    });
    upper
        .filter(|u| u.is_dir())
        .unwrap_or_else(|| bundle.into())
}

/// The container's annotations (string values) from its configuration.
pub fn annotations(config: &Value) -> BTreeMap<String, String> {
    config
        .get("annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The container's name, where the engine gives one: podman puts it on the command line of
/// conmon (`-n NAME`), which starts the runtime, and nowhere in the bundle. bpfnsd validates
/// it like every name it is given.
fn engine_name() -> Option<String> {
    let parent = std::fs::read(format!(
        "/proc/{}/cmdline",
        std::os::unix::process::parent_id()
    ))
    .ok()?;
    name_from_conmon(&parent)
}

/// `-n NAME`, `--name NAME` or `--name=NAME` from conmon's command line (NUL-separated).
pub fn name_from_conmon(cmdline: &[u8]) -> Option<String> {
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let exe = args.first()?;
    if Path::new(exe).file_name().is_none_or(|n| n != "conmon") {
        return None;
    }
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--name=") {
            return Some(v.to_string());
        }
        if a == "-n" || a == "--name" {
            return it.next().cloned();
        }
    }
    None
}

/// The runtime's state directory (its `--root`, else its default for root).
pub fn runtime_root(settings: &Settings, global: &[OsString]) -> PathBuf {
    let mut it = global.iter().map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--root=") {
            return v.into();
        }
        if a == "--root" {
            if let Some(v) = it.next() {
                return PathBuf::from(v.as_ref());
            }
        }
    }
    if settings.is_runc() {
        "/run/runc".into()
    } else {
        "/run/crun".into()
    }
}

/// The changes to the configuration: the hook, and (for a container that may use bpf()) the
/// seccomp profile with bpfnsd as its listener.
pub fn rewrite(
    config: &mut Value,
    settings: &Settings,
    ns: &NsPath,
    cmds: &CmdRules,
) -> Result<()> {
    let exe = std::env::current_exe().context("finding bpfns-oci's own executable")?;
    let hook = json!({
        "path": exe,
        "args": ["bpfns-oci", "hook", "create-runtime",
                 "--socket", settings.socket, "--namespace", ns.to_string()],
        "timeout": 30,
    });
    let obj = config
        .as_object_mut()
        .context("config.json is not a JSON object")?;
    let hooks = obj.entry("hooks").or_insert_with(|| json!({}));
    let list = hooks
        .as_object_mut()
        .context("hooks is not an object")?
        .entry("createRuntime")
        .or_insert_with(|| json!([]));
    list.as_array_mut()
        .context("hooks.createRuntime is not a list")?
        .insert(0, hook);
    obj.entry("annotations")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .context("annotations is not an object")?
        .insert(NAMESPACE_ANNOTATION.into(), json!(ns.to_string()));
    // Every container: what a profile allows and what the container's processes hold may be
    // more than its bounding set says (see the profile module).
    let may_use_bpf = profile::may_use_bpf(config);
    let linux = config
        .as_object_mut()
        .context("config.json is not a JSON object")?
        .entry("linux")
        .or_insert_with(|| json!({}));
    let seccomp = linux
        .as_object_mut()
        .context("linux is not an object")?
        .entry("seccomp")
        .or_insert(Value::Null);
    if !profile::rewrite(seccomp, may_use_bpf, cmds)? {
        // Nothing goes to bpfnsd (the engine refuses bpf() and ioctl() alike).
        return Ok(());
    }
    seccomp["listenerPath"] = json!(settings.seccomp_socket);
    seccomp["listenerMetadata"] = json!(ns.to_string());
    if !settings.is_runc() {
        // Without it a member signalled while bpfnsd holds its call restarts the call.
        let flags = seccomp
            .as_object_mut()
            .context("linux.seccomp is not an object")?
            .entry("flags")
            .or_insert_with(|| json!([]));
        if let Some(f) = flags.as_array_mut() {
            let k = json!("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV");
            if !f.contains(&k) {
                f.push(k);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_stands_for_the_container_unless_a_shim_made_it() {
        let config = json!({"root": {"path": "rootfs"}});
        // Not a containerd shim's task bundle (podman's, CRI-O's): the bundle.
        let b = Path::new("/var/lib/containers/storage/overlay-containers/abc/userdata");
        assert_eq!(presence_path(b, &config), b);
        // A shim's, whose rootfs is no overlay mounted here: the bundle still.
        let b = Path::new("/nonexistent/io.containerd.runtime.v2.task/default/abc");
        assert_eq!(presence_path(b, &config), b);
        assert_eq!(presence_path(b, &json!({})), b);
    }

    fn settings(runtime: &str) -> Settings {
        Settings {
            runtime: runtime.into(),
            socket: "/run/b/bpfns.sock".into(),
            seccomp_socket: "/run/b/seccomp.sock".into(),
        }
    }

    fn config(caps: &[&str]) -> Value {
        json!({
            "process": {"capabilities": {"bounding": caps}},
            "annotations": {"io.container.manager": "libpod"},
            "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}},
        })
    }

    #[test]
    fn command_lines_of_engines() {
        let args = |s: &str| s.split(' ').map(OsString::from).collect::<Vec<_>>();
        // containerd's shim (ctr, Docker, Kubernetes' CRI).
        let (b, id) = bundle_and_id(&args(
            "--bundle /run/c/t/ns/abc --pid-file /run/c/t/ns/abc/init.pid --no-pivot abc",
        ));
        assert_eq!((b, id.as_deref()), ("/run/c/t/ns/abc".into(), Some("abc")));
        // conmon (podman), with a console socket and descriptors handed on.
        let (b, id) = bundle_and_id(&args(
            "--bundle=/b --console-socket /s --preserve-fds 1 --pid-file=/p id1",
        ));
        assert_eq!((b, id.as_deref()), ("/b".into(), Some("id1")));
        let (b, id) = bundle_and_id(&args("-b /b"));
        assert_eq!((b, id), ("/b".into(), None));
    }

    #[test]
    fn what_the_engine_says_of_a_container() {
        let mut c = config(&[]);
        c["annotations"]["n"] = json!(3);
        let a = annotations(&c);
        assert_eq!(
            a.get("io.container.manager").map(String::as_str),
            Some("libpod")
        );
        assert!(!a.contains_key("n"));
        let conmon = b"/usr/bin/conmon\0--api-version\x001\0-c\0abc\0-n\0web1\0-r\0/x";
        assert_eq!(name_from_conmon(conmon).as_deref(), Some("web1"));
        assert_eq!(
            name_from_conmon(b"conmon\0--name=db\0").as_deref(),
            Some("db")
        );
        assert_eq!(name_from_conmon(b"containerd-shim\0-n\0x\0"), None);
        let s = settings("/usr/sbin/runc");
        assert_eq!(runtime_root(&s, &[]), PathBuf::from("/run/runc"));
        let g = ["--root", "/run/x/runc"].map(OsString::from);
        assert_eq!(runtime_root(&s, &g), PathBuf::from("/run/x/runc"));
        assert_eq!(
            runtime_root(&settings("/usr/bin/crun"), &[OsString::from("--root=/r")]),
            PathBuf::from("/r")
        );
    }

    #[test]
    fn bpf_containers_get_the_listener_and_crun_the_flag() {
        let ns = NsPath::parse("/containers/a").expect("path");
        let mut c = config(&["CAP_BPF"]);
        rewrite(&mut c, &settings("/usr/bin/crun"), &ns, &CmdRules::ALL).expect("rewrite");
        let s = &c["linux"]["seccomp"];
        assert_eq!(s["listenerPath"], "/run/b/seccomp.sock");
        assert_eq!(s["listenerMetadata"], "/containers/a");
        assert_eq!(
            s["flags"],
            json!(["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])
        );
        let hook = &c["hooks"]["createRuntime"][0];
        assert_eq!(hook["args"][2], "create-runtime");
        assert_eq!(hook["args"][6], "/containers/a");
        assert_eq!(c["annotations"][NAMESPACE_ANNOTATION], "/containers/a");
        assert_eq!(c["annotations"]["io.container.manager"], "libpod");

        let mut c = config(&["CAP_SYS_ADMIN"]);
        rewrite(&mut c, &settings("/usr/sbin/runc"), &ns, &CmdRules::ALL).expect("rewrite");
        assert!(c["linux"]["seccomp"].get("flags").is_none());
        assert_eq!(c["linux"]["seccomp"]["listenerPath"], "/run/b/seccomp.sock");
    }

    #[test]
    fn user_namespace_containers_are_trapped_the_same() {
        // CAP_BPF in its bounding set is CAP_BPF in its own user namespace only: bpf() is
        // still trapped as for any other container (the member's view answers it).
        let ns = NsPath::parse("/containers/a").expect("path");
        let mut plain = config(&["CAP_BPF"]);
        rewrite(&mut plain, &settings("/usr/sbin/runc"), &ns, &CmdRules::ALL).expect("rewrite");
        let mut userns = config(&["CAP_BPF"]);
        userns["linux"]["namespaces"] = json!([{"type": "user"}, {"type": "mount"}]);
        userns["linux"]["uidMappings"] =
            json!([{"containerID": 0, "hostID": 2147483647, "size": 1024}]);
        rewrite(
            &mut userns,
            &settings("/usr/sbin/runc"),
            &ns,
            &CmdRules::ALL,
        )
        .expect("rewrite");
        assert_eq!(userns["linux"]["seccomp"], plain["linux"]["seccomp"]);
        assert_eq!(userns["hooks"], plain["hooks"]);
    }

    /// Without CAP_BPF or CAP_SYS_ADMIN, where the engine refuses bpf() and ioctl(): nothing
    /// to supervise, the profile as it was.
    #[test]
    fn containers_without_bpf_keep_the_engines_refusal() {
        let ns = NsPath::parse("/containers/a").expect("path");
        let mut c = config(&["CAP_CHOWN"]);
        let before = c["linux"].clone();
        rewrite(&mut c, &settings("/usr/bin/crun"), &ns, &CmdRules::ALL).expect("rewrite");
        assert_eq!(c["linux"], before);
        assert_eq!(c["hooks"]["createRuntime"][0]["args"][2], "create-runtime");
    }

    /// Without CAP_BPF or CAP_SYS_ADMIN, but with a profile that allows bpf() (none at all:
    /// `seccomp=unconfined`) or ioctl(): supervised all the same, the listener handed to
    /// bpfnsd (an exec'd process may hold more than the bounding set; CAP_PERFMON and
    /// CAP_NET_ADMIN reach BPF through ioctl() and PROG_QUERY).
    #[test]
    fn containers_without_bpf_are_supervised_where_their_profile_lets_them_reach_bpf() {
        let ns = NsPath::parse("/containers/a").expect("path");
        let mut unconfined = config(&["CAP_NET_ADMIN"]);
        unconfined["linux"]["seccomp"] = Value::Null;
        rewrite(
            &mut unconfined,
            &settings("/usr/sbin/runc"),
            &ns,
            &CmdRules::ALL,
        )
        .expect("rewrite");
        let mut ioctl = config(&["CAP_PERFMON"]);
        ioctl["linux"]["seccomp"]["syscalls"]
            .as_array_mut()
            .expect("rules")
            .push(json!({"names": ["ioctl"], "action": "SCMP_ACT_ALLOW"}));
        rewrite(&mut ioctl, &settings("/usr/sbin/runc"), &ns, &CmdRules::ALL).expect("rewrite");
        for c in [&unconfined, &ioctl] {
            assert_eq!(c["linux"]["seccomp"]["listenerPath"], "/run/b/seccomp.sock");
            assert_eq!(c["linux"]["seccomp"]["listenerMetadata"], "/containers/a");
        }
        // The engine's refusal of bpf() stands where it refused it.
        let bpf_rules: Vec<&Value> = ioctl["linux"]["seccomp"]["syscalls"]
            .as_array()
            .expect("rules")
            .iter()
            .filter(|r| {
                r["names"]
                    .as_array()
                    .is_some_and(|n| n.contains(&json!("bpf")))
            })
            .collect();
        assert_eq!(bpf_rules.len(), 1, "{bpf_rules:?}");
        assert_eq!(bpf_rules[0]["action"], "SCMP_ACT_ERRNO");
    }
}
