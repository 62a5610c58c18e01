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
mod doctor_cmd;
mod exec_cmd;
mod kernel_cmd;
mod ns_cmd;
mod objects;
mod output;
mod run;
mod status_cmd;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Result;
use bpfns_kernel::PinLayout;
use bpfns_model::ObjectKind;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::backend::Direct;
use crate::cli::{Cli, Command, KernelCmd, NsCmd};
use crate::output::{emit, to_json, write_stdout, ErrorJson, Format};

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings); libbpf's messages go the
/// same way.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
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
    let objects = |kind: ObjectKind, a: &crate::cli::ObjectArgs| -> Result<u8> {
        let backend = backend::choose(&cli.socket, &direct)?;
        match a.dump_id() {
            Some(id) => emit(format, &objects::dump(backend.as_ref(), kind, id)?),
            None => objects::run(backend.as_ref(), format, kind, a.id()),
        }
        .map(|()| 0)
    };
    let client =
        || -> Result<bpfns_client::Client> { Ok(bpfns_client::Client::connect(&cli.socket)?) };
    match &cli.command {
        Command::Prog(a) => objects(ObjectKind::Prog, a),
        Command::Map(a) => objects(ObjectKind::Map, a),
        Command::Link(a) => objects(ObjectKind::Link, a),
        Command::Btf(a) => objects(ObjectKind::Btf, a),
        Command::Ns(n) => {
            let mut c = client()?;
            match n {
                NsCmd::Create {
                    path,
                    allow_tracing,
                    max_objects,
                    parents,
                } => emit(
                    format,
                    &ns_cmd::create(&mut c, path, *allow_tracing, *max_objects, *parents)?,
                ),
                NsCmd::Policy {
                    path,
                    allow_tracing,
                    ..
                } => emit(format, &ns_cmd::set_policy(&mut c, path, *allow_tracing)?),
                NsCmd::List => emit(format, &ns_cmd::list(&mut c)?),
                NsCmd::Show { path } => emit(format, &ns_cmd::show(&mut c, path)?),
                NsCmd::Delete {
                    path,
                    recursive,
                    force,
                } => emit(format, &ns_cmd::delete(&mut c, path, *recursive, *force)?),
            }
            .map(|()| 0)
        }
        Command::Status => emit(format, &status_cmd::status(&mut client()?)?).map(|()| 0),
        Command::Exec {
            user,
            caps,
            namespace,
            command,
        } => {
            let creds = exec_cmd::credentials(user.as_deref(), caps.as_deref())?;
            exec_cmd::run(&cli.socket, namespace, command, creds)
        }
        Command::Doctor => doctor_cmd::run(format),
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
            KernelCmd::NsSet { id, parent, depth } => {
                emit(format, &kernel_cmd::ns_set(&direct, *id, *parent, *depth)?).map(|()| 0)
            }
            KernelCmd::NsRm { id } => emit(format, &kernel_cmd::ns_rm(&direct, *id)?).map(|()| 0),
            KernelCmd::Tag { pid, ns_id } => {
                emit(format, &kernel_cmd::tag(&direct, *pid, *ns_id)?).map(|()| 0)
            }
            KernelCmd::Run { ns_id, command } => run::run(&direct, *ns_id, command),
        },
    }
}

fn report_error(format: Format, e: &anyhow::Error) {
    let text = format!("{e:#}");
    let _ = writeln!(std::io::stderr().lock(), "bpfns: error: {text}");
    if format.is_json() {
        if let Ok(j) = to_json(&ErrorJson { error: text }, format == Format::PrettyJson) {
            let _ = write_stdout(&(j + "\n"));
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report_error(cli.format(), &e);
            ExitCode::FAILURE
        }
    }
}
