//! bpfnsd's log: stderr, plain text (coloured only on a terminal) or JSON lines. The listener
//! keeper bpfnsd starts inherits the choice through [`FORMAT_ENV`], so that one log stream
//! never mixes the two.

use std::io::{IsTerminal, Write};

/// Environment variable that carries the format to the keeper (`text` or `json`).
pub const FORMAT_ENV: &str = "BPFNSD_LOG_FORMAT";

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Plain text; colour codes only when stderr is a terminal.
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `message` and the event's fields.
    Json,
}

impl LogFormat {
    /// The format named by [`FORMAT_ENV`] (text when unset or unknown).
    pub fn from_env() -> Self {
        match std::env::var(FORMAT_ENV).as_deref() {
            Ok("json") => Self::Json,
            _ => Self::Text,
        }
    }
}

/// Log to stderr at `level` (`RUST_LOG`, when set, wins) in `format`, and pass the format on
/// to processes bpfnsd starts. Call once, before any thread is started.
pub fn init(level: &str, format: LogFormat) {
    std::env::set_var(
        FORMAT_ENV,
        match format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        },
    );
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: a program that embeds bpfnsd may have set up logging already.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        // Fields flattened so that an event's `pid`, `ns`, … are top-level keys.
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// One line of the keeper's log, in the format bpfnsd chose. Never panics (a closed stderr
/// is ignored).
pub fn keeper_line(msg: &str) {
    let pid = std::process::id();
    match LogFormat::from_env() {
        LogFormat::Json => {
            static INIT: std::sync::Once = std::sync::Once::new();
            INIT.call_once(|| init("info", LogFormat::Json));
            tracing::info!(target: "bpfnsd_keeper", pid, "{msg}");
        }
        LogFormat::Text => {
            let _ = writeln!(std::io::stderr(), "bpfnsd-keeper[{pid}]: {msg}");
        }
    }
}
