//! `bpfns`, the command-line tool for BPF namespaces: a thin layer over the libraries, in the
//! manner of bpftool (plain tables by default, `-j`/`-p` JSON).
//!
//! - [`cli`]: the command line (clap).
//! - [`backend`]: where answers come from (today the pinned kernel side, directly).
//! - [`objects`], [`kernel_cmd`], [`run`], [`doctor_cmd`]: the commands.
//! - [`output`]: tables and JSON.
#![forbid(unsafe_code)]

mod backend;
mod cli;
mod containers_cmd;
mod doctor_cmd;
mod dump;
mod error;
mod events_cmd;
mod exec_cmd;
mod kernel_cmd;
mod ns_cmd;
mod objects;
mod output;
mod run;
mod status_cmd;
mod top_cmd;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Result;
use bpfns_kernel::PinLayout;
use bpfns_model::ObjectKind;
use tracing_subscriber::EnvFilter;

use crate::backend::Direct;
use crate::cli::{Cli, Command, ContainersCmd, DebugCmd, KernelCmd, NsCmd, NsFilter, ObjectCmd};
use crate::output::{emit, to_json, write_stdout, Format};

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings); libbpf's messages go the
/// same way.
fn init_logging() {
    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // Compiling an EnvFilter's directives takes ~0.1 ms of every command's start: only when
    // RUST_LOG asks for something.
    if std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty()) {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
        let _ = fmt.with_env_filter(filter).try_init();
    } else {
        let _ = fmt.with_max_level(tracing::Level::WARN).try_init();
    }
    let level = match tracing::level_filters::LevelFilter::current() {
        l if l >= tracing::Level::DEBUG => libbpf_rs::PrintLevel::Debug,
        l if l >= tracing::Level::INFO => libbpf_rs::PrintLevel::Info,
        _ => libbpf_rs::PrintLevel::Warn,
    };
    libbpf_rs::set_print(Some((level, libbpf_log)));
}

fn libbpf_log(level: libbpf_rs::PrintLevel, msg: String) {
    let msg = msg.trim_end();
    match level {
        libbpf_rs::PrintLevel::Warn => tracing::warn!(target: "libbpf", "{msg}"),
        libbpf_rs::PrintLevel::Info => tracing::info!(target: "libbpf", "{msg}"),
        libbpf_rs::PrintLevel::Debug => tracing::debug!(target: "libbpf", "{msg}"),
    }
}

fn dispatch(cli: &Cli) -> Result<u8> {
    let format = cli.format();
    let direct = Direct::new(PinLayout::new(&cli.pin_root));
    let objects = |kind: ObjectKind, cmd: ObjectCmd<'_>, filter: &NsFilter| -> Result<u8> {
        if let (ObjectCmd::Dump(_), Some(_)) = (cmd, &filter.namespace) {
            return Err(error::CliError::usage(
                "--namespace filters listings; dump takes one object",
            )
            .into());
        }
        let backend = backend::choose(&cli.socket, &direct)?;
        let backend = backend.as_ref();
        match cmd {
            ObjectCmd::List if format == Format::Json => {
                let mut printed = objects::list_json(backend, kind, filter)?;
                printed.push(b'\n');
                output::write_stdout_bytes(&printed)
            }
            ObjectCmd::List => emit(format, &objects::list(backend, kind, filter)?),
            ObjectCmd::Show(t) => match objects::show(backend, kind, t, filter)? {
                objects::Shown::One(o) => emit(format, o.as_ref()),
                objects::Shown::Some(l) => emit(format, &l),
            },
            ObjectCmd::Dump(t) => match dump::dump(backend, kind, t)? {
                dump::Dumped::Map(d) => emit(format, &d),
                dump::Dumped::Prog(d) => emit(format, &d),
                dump::Dumped::Btf(d) => emit(format, &d),
            },
        }
        .map(|()| 0)
    };
    let client =
        || -> Result<bpfns_client::Client> { Ok(bpfns_client::Client::connect(&cli.socket)?) };
    match &cli.command {
        Command::Prog(a) => objects(ObjectKind::Prog, a.cmd(), &a.filter),
        Command::Map(a) => objects(ObjectKind::Map, a.cmd(), &a.filter),
        Command::Link(a) => objects(ObjectKind::Link, a.cmd(), &a.filter),
        Command::Btf(a) => objects(ObjectKind::Btf, a.cmd(), &a.filter),
        Command::Ns(n) => {
            let mut c = client()?;
            match n {
                NsCmd::Create {
                    path,
                    policy,
                    max_objects,
                    limits,
                    cgroup,
                    parents,
                } => emit(
                    format,
                    &ns_cmd::create(
                        &mut c,
                        path,
                        policy,
                        (*max_objects, limits.limits()),
                        cgroup.as_deref(),
                        *parents,
                    )?,
                ),
                NsCmd::Quota {
                    path,
                    max_objects,
                    limits,
                } => emit(
                    format,
                    &ns_cmd::set_quota(&mut c, path, *max_objects, limits.limits())?,
                ),
                NsCmd::Policy { path, policy } if !policy.any() => {
                    emit(format, &ns_cmd::show_policy(&mut c, path)?)
                }
                NsCmd::Policy { path, policy } => {
                    emit(format, &ns_cmd::set_policy(&mut c, path, policy)?)
                }
                NsCmd::List => emit(format, &ns_cmd::list(&mut c)?),
                NsCmd::Show { path } => emit(format, &ns_cmd::show(&mut c, path)?),
                NsCmd::Ps { path, recursive } => {
                    emit(format, &ns_cmd::ps(&mut c, path, *recursive)?)
                }
                NsCmd::Identify { pid } => emit(format, &ns_cmd::identify(&mut c, *pid)?),
                NsCmd::Delete {
                    path,
                    recursive,
                    force,
                } => emit(format, &ns_cmd::delete(&mut c, path, *recursive, *force)?),
            }
            .map(|()| 0)
        }
        Command::Status => emit(format, &status_cmd::status(&mut client()?)?).map(|()| 0),
        Command::Events { ns, kind } => {
            events_cmd::events(client()?, ns.as_deref(), kind.clone(), format).map(|()| 0)
        }
        Command::Top {
            interval,
            namespace,
            recursive,
        } => {
            if !(interval.is_finite() && *interval >= 0.1 && *interval <= 3600.0) {
                return Err(error::CliError::usage(
                    "--interval must be between 0.1 and 3600 seconds",
                )
                .into());
            }
            let args = top_cmd::TopArgs {
                interval: std::time::Duration::from_secs_f64(*interval),
                namespace: namespace.clone(),
                recursive: *recursive,
            };
            if format != Format::Text || !std::io::stdout().is_terminal() {
                emit(format, &top_cmd::once(client()?, args)?).map(|()| 0)
            } else {
                top_cmd::live(client()?, args).map(|()| 0)
            }
        }
        Command::Exec {
            user,
            caps,
            writable_cgroups,
            namespace,
            command,
        } => {
            let creds = exec_cmd::credentials(user.as_deref(), caps.as_deref())?;
            exec_cmd::run(&cli.socket, namespace, command, creds, *writable_cgroups)
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into memory first: clap_complete panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "bpfns", &mut script);
            print_all(&script)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            print_all(&page)
        }
        Command::Doctor => doctor_cmd::run(format),
        Command::Containers(ContainersCmd::Install(a)) => {
            emit(format, &containers_cmd::run(a)?).map(|()| 0)
        }
        Command::Kernel(k) => match k {
            KernelCmd::Load => emit(format, &kernel_cmd::load(&direct)?).map(|()| 0),
            KernelCmd::Unload { force } => {
                emit(format, &kernel_cmd::unload(&direct, &cli.socket, *force)?).map(|()| 0)
            }
            KernelCmd::Status => {
                let s = kernel_cmd::status(&direct)?;
                emit(format, &s)?;
                Ok(if s.loaded { 0 } else { 1 })
            }
            KernelCmd::Gc => emit(format, &kernel_cmd::gc(&direct)?).map(|()| 0),
            KernelCmd::Debug(d) => {
                kernel_cmd::refuse_under_bpfnsd(&direct, &cli.socket)?;
                match d {
                    DebugCmd::NsSet { id, parent, depth } => {
                        emit(format, &kernel_cmd::ns_set(&direct, *id, *parent, *depth)?)
                            .map(|()| 0)
                    }
                    DebugCmd::NsRm { id } => {
                        emit(format, &kernel_cmd::ns_rm(&direct, *id)?).map(|()| 0)
                    }
                    DebugCmd::Tag { pid, ns_id } => {
                        emit(format, &kernel_cmd::tag(&direct, *pid, *ns_id)?).map(|()| 0)
                    }
                    DebugCmd::Run { ns_id, command } => run::run(&direct, *ns_id, command),
                }
            }
        },
    }
}

/// Print `e` (on stderr; with -j also as JSON on stdout) and return the exit status its class
/// calls for.
fn report_error(format: Format, e: &anyhow::Error) -> u8 {
    let (json, status) = error::report(e);
    let mut text = format!("bpfns: error: {}\n", json.error.message);
    if let (Some(name), Some(hint)) = (json.error.errno, json.error.hint) {
        text.push_str(&format!("bpfns: {name}: {hint}\n"));
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
    if format.is_json() {
        if let Ok(j) = to_json(&json, format == Format::PrettyJson) {
            let _ = write_stdout(&(j + "\n"));
        }
    }
    status
}

/// Whether the raw command line asks for JSON (for errors found before it is parsed): `-j`,
/// `--json`, `-p`, `--pretty`, or a cluster of short flags with j or p, before a `--`.
fn wants_json(args: &[std::ffi::OsString]) -> Option<Format> {
    let mut format = None;
    for a in args.iter().skip(1) {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        let short = a.strip_prefix('-').filter(|s| !s.starts_with('-'));
        if a == "--pretty" || short.is_some_and(|s| s.contains('p')) {
            return Some(Format::PrettyJson);
        }
        if a == "--json" || short.is_some_and(|s| s.contains('j')) {
            format = Some(Format::Json);
        }
    }
    format
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(v) = Cli::version_fast(&args) {
        return match write_stdout(&v) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let cli = match Cli::parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || !e.use_stderr()
            {
                e.exit();
            }
            // Bad usage: clap's own words on stderr; with -j, the same as JSON on stdout.
            if let Some(format) = wants_json(&args) {
                let rendered = e.to_string();
                let message = rendered.lines().next().unwrap_or("").to_string();
                let body = error::ErrorJson {
                    error: error::ErrorBodyJson {
                        code: error::Code::USAGE.name(),
                        message: message.trim_start_matches("error: ").to_string(),
                        errno: None,
                        hint: None,
                    },
                };
                if let Ok(j) = to_json(&body, format == Format::PrettyJson) {
                    let _ = write_stdout(&(j + "\n"));
                }
            }
            let _ = e.print();
            return ExitCode::from(error::EXIT_USAGE);
        }
    };
    init_logging();
    match dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(report_error(cli.format(), &e)),
    }
}

/// Write `bytes` to stdout; a reader that stopped early (`| head`) is no error.
fn print_all(bytes: &[u8]) -> Result<u8> {
    match std::io::Write::write_all(&mut std::io::stdout(), bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        r => r.map(|()| 0).map_err(Into::into),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_wanted_before_the_command_line_parses() {
        let w = |s: &[&str]| {
            wants_json(
                &std::iter::once("bpfns")
                    .chain(s.iter().copied())
                    .map(Into::into)
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(w(&["map", "show", "x", "-j"]), Some(Format::Json));
        assert_eq!(w(&["--pretty", "maps"]), Some(Format::PrettyJson));
        assert_eq!(w(&["ns", "delete", "-rj", "/a"]), Some(Format::Json));
        assert_eq!(w(&["exec", "/a", "--", "sh", "-j"]), None);
        assert_eq!(w(&["map", "list"]), None);
    }
}
