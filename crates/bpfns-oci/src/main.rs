//! bpfns-oci: an OCI runtime wrapper that puts every container in a BPF namespace of its own.
//!
//! Engines (podman, ...) run it instead of crun or runc. Every command goes through to the
//! real runtime unchanged, except `create` and `run`, for which the bundle's `config.json` is
//! rewritten first ([`bundle`]): the container's namespace is made (through bpfnsd), a
//! `createRuntime` hook (`bpfns-oci hook create-runtime`, [`hook`]) tags the container's init
//! into it and mounts the namespace's bpffs at the container's `/sys/fs/bpf`, and the
//! seccomp profile sends the trapped bpf() commands to bpfnsd ([`profile`]). See
//! docs/containers.md.

mod bundle;
mod hook;
mod profile;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

/// Which runtime, socket and receiver to use: flags first, then the environment, then the
/// name the wrapper was started as (`bpfns-oci-runc`), then its configuration file, then
/// the defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The real runtime's executable.
    pub runtime: PathBuf,
    /// bpfnsd's API socket.
    pub socket: PathBuf,
    /// bpfnsd's receiver of seccomp listeners.
    pub seccomp_socket: PathBuf,
}

impl Settings {
    /// Whether the runtime is runc (which refuses `linux.seccomp.flags`).
    pub fn is_runc(&self) -> bool {
        self.runtime
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("runc"))
    }
}

/// `bpfns-oci hook ...`: what runtimes run at the hook points bpfns-oci adds.
#[derive(Debug, Parser)]
#[command(name = "bpfns-oci", version)]
struct HookArgs {
    #[command(subcommand)]
    hook: Hook,
}

#[derive(Debug, Subcommand)]
enum Hooks {
    /// The `createRuntime` hook: tag the container's init (its OCI state on stdin) into its
    /// namespace and mount the namespace's bpffs at its `/sys/fs/bpf`.
    CreateRuntime {
        /// bpfnsd's socket.
        #[arg(long)]
        socket: PathBuf,
        /// The container's namespace.
        #[arg(long)]
        namespace: String,
    },
}

#[derive(Debug, Subcommand)]
enum Hook {
    /// Run at an OCI hook point (written into the container's configuration by bpfns-oci).
    Hook {
        #[command(subcommand)]
        which: Hooks,
    },
}

fn main() -> std::process::ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let result = if args.get(1).is_some_and(|a| a == "hook") {
        let parsed = HookArgs::parse_from(&args);
        let Hook::Hook { which } = parsed.hook;
        match which {
            Hooks::CreateRuntime { socket, namespace } => {
                hook::create_runtime(&socket, &namespace).map(|()| std::process::ExitCode::SUCCESS)
            }
        }
    } else {
        wrap(args)
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Runtimes and engines show the wrapper's stderr: the cause, named.
            eprintln!("bpfns-oci: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The runtime's global options that take a value (crun's and runc's).
const GLOBAL_WITH_VALUE: [&str; 6] = [
    "--root",
    "--log",
    "--log-format",
    "--criu",
    "--rootless",
    "--cgroup-manager",
];

/// The runtime's command line as the wrapper reads it: where the command is, and the log the
/// engine asked the runtime to write.
#[derive(Debug, Default, PartialEq)]
struct Global {
    /// Index of the command (`create`, `start`, ...) in the arguments, if there is one.
    command: Option<usize>,
    /// `--log FILE`.
    log: Option<PathBuf>,
    /// `--log-format json`: containerd's shim (and so Docker and Kubernetes) writes it.
    json: bool,
}

/// Read the global options before the command (`--root R --log F --log-format json
/// --systemd-cgroup create ...`, as containerd's shim writes them; `--opt=value` too).
fn global_options(args: &[OsString]) -> Global {
    let mut g = Global::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(OsString::from(v))),
            _ => (a.as_ref(), None),
        };
        let value = || inline.clone().or_else(|| args.get(i + 1).cloned());
        match name {
            "--log" => g.log = value().map(PathBuf::from),
            "--log-format" => g.json = value().is_some_and(|v| v == "json"),
            _ => {}
        }
        if GLOBAL_WITH_VALUE.contains(&name) && inline.is_none() {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            g.command = Some(i);
            break;
        }
    }
    g
}

/// Pass a runtime command through, rewriting the bundle first for `create` and `run`.
fn wrap(mut args: Vec<OsString>) -> Result<std::process::ExitCode> {
    let argv0 = args.remove(0);
    let mut runtime_flag = None;
    if args.first().is_some_and(|a| a == "--runtime") {
        args.remove(0);
        if args.is_empty() {
            bail!("--runtime needs a value: crun, runc or a path");
        }
        runtime_flag = Some(args.remove(0));
    }
    let global = global_options(&args);
    let result = wrap_command(&argv0, runtime_flag, &args, &global);
    if let (Err(e), Some(log)) = (&result, &global.log) {
        // containerd's shim reports the last error of the runtime's log, not its stderr.
        log_error(log, global.json, &format!("bpfns-oci: {e:#}"));
    }
    result
}

fn wrap_command(
    argv0: &OsString,
    runtime_flag: Option<OsString>,
    args: &[OsString],
    global: &Global,
) -> Result<std::process::ExitCode> {
    let settings = settings(argv0, runtime_flag)?;
    if let Some(i) = global.command {
        let cmd = args[i].to_string_lossy();
        if cmd == "create" || cmd == "run" {
            bundle::prepare(&settings, &args[..i], &args[i + 1..])?;
        }
        if cmd == "delete" {
            return Ok(delete(&settings, args, i));
        }
    }
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&settings.runtime)
        .args(args)
        .exec();
    Err(err).with_context(|| format!("running {}", settings.runtime.display()))
}

/// `delete`: the runtime deletes the container, then bpfnsd is told (it drops the
/// container's namespace once the engine has removed the container), naming the runtime's
/// state directory so that only this runtime's container of that id is released. The engine
/// gets the runtime's exit status: a bpfnsd that fails or is down does not make `delete`
/// fail, it is only reported on stderr. A delete the runtime refused (an unknown id, another
/// runtime's container) tells bpfnsd nothing.
fn delete(settings: &Settings, args: &[OsString], i: usize) -> std::process::ExitCode {
    let status = match std::process::Command::new(&settings.runtime)
        .args(args)
        .status()
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bpfns-oci: running {}: {e}", settings.runtime.display());
            return std::process::ExitCode::FAILURE;
        }
    };
    let id = args[i + 1..]
        .iter()
        .map(|a| a.to_string_lossy())
        .rfind(|a| !a.starts_with('-'));
    if let (Some(id), true) = (id, status.success()) {
        let state_dir = bundle::runtime_root(settings, &args[..i]).join(id.as_ref());
        let told = bpfns_client::Client::connect(&settings.socket)
            .and_then(|mut c| c.container_deleted(&id, state_dir.to_str()));
        if let Err(e) = told {
            eprintln!(
                "bpfns-oci: warning: bpfnsd was not told of the runtime's delete of container \
                 {id} ({e}); the delete itself is done as the runtime says, and bpfnsd collects \
                 the container's namespace by itself once the container is removed"
            );
        }
    }
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Append an error to the runtime's log as runc writes it (JSON lines, or logrus text).
fn log_error(log: &Path, json: bool, msg: &str) {
    use std::io::Write;
    let time = rfc3339(std::time::SystemTime::now());
    let line = if json {
        serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
    } else {
        format!("time={time:?} level=error msg={msg:?}")
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log);
    if let Ok(mut f) = file {
        let _ = writeln!(f, "{line}");
    }
}

/// `2026-01-02T03:04:05Z`.
fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm), for years from 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The wrapper's configuration file (engines start runtimes with an environment of their
/// own, so the environment alone cannot carry settings): `$BPFNS_OCI_CONFIG`, else
/// `bpfns-oci.toml` beside the path the wrapper was started as, else `/etc/bpfns/oci.toml`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    runtime: Option<PathBuf>,
    socket: Option<PathBuf>,
    seccomp_socket: Option<PathBuf>,
}

fn config_file(argv0: &OsString) -> Result<File> {
    let candidates = [
        std::env::var_os("BPFNS_OCI_CONFIG").map(PathBuf::from),
        PathBuf::from(argv0)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map(|d| d.join("bpfns-oci.toml")),
        Some(PathBuf::from("/etc/bpfns/oci.toml")),
    ];
    for c in candidates.into_iter().flatten() {
        match std::fs::read_to_string(&c) {
            Ok(text) => {
                return toml::from_str(&text).with_context(|| format!("parsing {}", c.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", c.display())),
        }
    }
    Ok(File::default())
}

fn settings(argv0: &OsString, runtime_flag: Option<OsString>) -> Result<Settings> {
    let file = config_file(argv0)?;
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    // `bpfns-oci-runc`, `bpfns-oci-crun`: one name per runtime, for engines that take a path
    // without arguments.
    let by_name = PathBuf::from(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("bpfns-oci-"))
        .map(OsString::from);
    let wanted = runtime_flag
        .or_else(|| env("BPFNS_OCI_RUNTIME"))
        .or(by_name)
        .or(file.runtime.map(OsString::from));
    let runtime = match wanted {
        Some(w) => find_runtime(&w)?,
        None => find_runtime(&OsString::from("crun"))
            .or_else(|_| find_runtime(&OsString::from("runc")))
            .context("no OCI runtime found: install crun or runc, or set BPFNS_OCI_RUNTIME")?,
    };
    Ok(Settings {
        runtime,
        socket: env("BPFNS_SOCKET")
            .map(PathBuf::from)
            .or(file.socket)
            .unwrap_or_else(|| bpfns_proto::DEFAULT_SOCKET.into()),
        seccomp_socket: env("BPFNS_SECCOMP_SOCKET")
            .map(PathBuf::from)
            .or(file.seccomp_socket)
            .unwrap_or_else(|| "/run/bpfns/seccomp.sock".into()),
    })
}

/// A runtime by path, or by name in `$PATH` and the usual directories; never bpfns-oci itself.
fn find_runtime(name: &OsString) -> Result<PathBuf> {
    let p = PathBuf::from(name);
    let me = std::env::current_exe()
        .ok()
        .and_then(|e| e.canonicalize().ok());
    let ok = |c: &PathBuf| c.is_file() && c.canonicalize().ok() != me;
    if p.components().count() > 1 {
        if ok(&p) {
            return Ok(p);
        }
        bail!("the runtime {} does not exist", p.display());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"].map(PathBuf::from));
    for d in dirs {
        let c = d.join(&p);
        if ok(&c) {
            return Ok(c);
        }
    }
    bail!("the runtime {} was not found in $PATH", p.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn global_options_of_engines() {
        // containerd's shim: the command after its own global flags, its log in JSON.
        let a = args(
            "--root /run/c/runc/k8s.io --log /run/c/t/log.json --log-format json \
             --systemd-cgroup create --bundle /b --pid-file /b/init.pid id",
        );
        let g = global_options(&a);
        assert_eq!(g.command, Some(7));
        assert_eq!(a[7], "create");
        assert_eq!(g.log.as_deref(), Some(Path::new("/run/c/t/log.json")));
        assert!(g.json);
        for cmd in ["start", "kill", "delete", "state"] {
            let a = args(&format!("--root /r --log /l --log-format json {cmd} id"));
            assert_eq!(global_options(&a).command, Some(6), "{cmd}");
        }
        // --opt=value, text logs, crun's options.
        let g = global_options(&args(
            "--cgroup-manager cgroupfs --log=/l --log-format=text --debug run id",
        ));
        assert_eq!(g.command, Some(5));
        assert_eq!(g.log.as_deref(), Some(Path::new("/l")));
        assert!(!g.json);
        assert_eq!(global_options(&args("--version")).command, None);
    }

    #[test]
    fn errors_go_to_the_runtimes_log() {
        let dir = std::env::temp_dir().join(format!("bpfns-oci-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let log = dir.join("log.json");
        std::fs::write(&log, "{\"level\":\"info\",\"msg\":\"before\"}\n").expect("write");
        log_error(&log, true, "bpfns-oci: cannot connect to bpfnsd");
        let text = std::fs::read_to_string(&log).expect("read");
        let last: serde_json::Value =
            serde_json::from_str(text.lines().last().expect("a line")).expect("JSON");
        assert_eq!(last["level"], "error");
        assert_eq!(last["msg"], "bpfns-oci: cannot connect to bpfnsd");
        assert!(last["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        let text_log = dir.join("log.txt");
        log_error(&text_log, false, "a \"quoted\" cause");
        let line = std::fs::read_to_string(&text_log).expect("read");
        assert!(
            line.contains("level=error msg=\"a \\\"quoted\\\" cause\""),
            "{line}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dates() {
        let at = |s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_798_761_599)), "2026-12-31T23:59:59Z");
    }
}
