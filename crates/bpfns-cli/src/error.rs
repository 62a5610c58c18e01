//! What went wrong, by class: the class sets the exit status and the `code` of `-j` errors,
//! from the error's type (bpfnsd's code, the kernel's errno), never from its message.

use bpfns_client::member::MemberError;
use bpfns_client::ClientError;
use bpfns_kernel::KernelError;
use bpfns_proto::ErrorCode;
use bpfns_sys::{Errno, SysError};
use serde::Serialize;

/// Exit statuses (also in `bpfns --help`, the README and docs/protocol.md).
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_NOT_FOUND: u8 = 3;
pub const EXIT_DENIED: u8 = 4;
pub const EXIT_CONFLICT: u8 = 5;
pub const EXIT_LIMIT: u8 = 6;

/// The classes of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// One of the protocol's codes: bpfnsd's answer, or the same class found by the CLI.
    Api(ErrorCode),
    /// bpfnsd does not answer on its socket.
    Unavailable,
    /// Anything else (a kernel call, I/O).
    Failed,
}

impl Code {
    /// The `code` of a `-j` error: bpfnsd's codes by their protocol names, and `unavailable`
    /// and `failed`.
    pub fn name(self) -> &'static str {
        match self {
            Code::Api(c) => match c {
                ErrorCode::BadRequest => "bad_request",
                ErrorCode::UnsupportedVersion => "unsupported_version",
                ErrorCode::TooLarge => "too_large",
                ErrorCode::NotFound => "not_found",
                ErrorCode::Denied => "denied",
                ErrorCode::Conflict => "conflict",
                ErrorCode::Internal => "internal",
                ErrorCode::LimitReached => "limit_reached",
            },
            Code::Unavailable => "unavailable",
            Code::Failed => "failed",
        }
    }

    /// The exit status.
    pub fn exit(self) -> u8 {
        match self {
            Code::Api(ErrorCode::BadRequest) => EXIT_USAGE,
            Code::Api(ErrorCode::NotFound) => EXIT_NOT_FOUND,
            Code::Api(ErrorCode::Denied) => EXIT_DENIED,
            Code::Api(ErrorCode::Conflict) => EXIT_CONFLICT,
            Code::Api(ErrorCode::LimitReached) => EXIT_LIMIT,
            _ => EXIT_FAILED,
        }
    }

    pub const USAGE: Code = Code::Api(ErrorCode::BadRequest);
    pub const NOT_FOUND: Code = Code::Api(ErrorCode::NotFound);
    pub const DENIED: Code = Code::Api(ErrorCode::Denied);
    pub const CONFLICT: Code = Code::Api(ErrorCode::Conflict);
}

/// A failure of the command line's own, with its class.
#[derive(Debug)]
pub struct CliError {
    pub code: Code,
    pub message: String,
}

impl CliError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Code::USAGE, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(Code::CONFLICT, message)
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The class of an errno the kernel returned: its refusals and absences have classes of
/// their own.
fn errno_code(e: Errno) -> Code {
    match e {
        Errno::PERM | Errno::ACCESS => Code::DENIED,
        Errno::NOENT | Errno::SRCH => Code::NOT_FOUND,
        _ => Code::Failed,
    }
}

fn client_code(c: &ClientError) -> Code {
    match c {
        ClientError::Daemon(b) => Code::Api(b.code),
        ClientError::Connect { .. } => Code::Unavailable,
        _ => Code::Failed,
    }
}

/// An error's class, and the kernel's errno if a kernel call failed: from the outermost
/// cause of a known type.
pub fn classify(e: &anyhow::Error) -> (Code, Option<Errno>) {
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<CliError>() {
            return (c.code, None);
        }
        if let Some(c) = cause.downcast_ref::<ClientError>() {
            return (client_code(c), None);
        }
        if let Some(m) = cause.downcast_ref::<MemberError>() {
            return match m {
                MemberError::Client(c) => (client_code(c), None),
                MemberError::Spawn(s) | MemberError::Filter(s) => {
                    (errno_code(s.errno), Some(s.errno))
                }
                // A mount or a filter of the member's own setup, not an object: no object
                // class and no bpf() hint (the message names the step and its errno).
                MemberError::Setup(_) => (Code::Failed, None),
                _ => (Code::Failed, None),
            };
        }
        if let Some(k) = cause.downcast_ref::<KernelError>() {
            return match k {
                KernelError::Sys { error, .. } => (errno_code(error.errno), Some(error.errno)),
                _ => (Code::Failed, None),
            };
        }
        if let Some(s) = cause.downcast_ref::<SysError>() {
            return (errno_code(s.errno), Some(s.errno));
        }
    }
    (Code::Failed, None)
}

/// A `-j` error: `{"error": {"code": "not_found", "message": "...", "errno": "ENOENT",
/// "hint": "..."}}` (`errno` and `hint` when a kernel call failed).
#[derive(Debug, Serialize)]
pub struct ErrorJson {
    pub error: ErrorBodyJson,
}

#[derive(Debug, Serialize)]
pub struct ErrorBodyJson {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'static str>,
}

/// What to print for `e`: its JSON form, the hint line, and the exit status.
pub fn report(e: &anyhow::Error) -> (ErrorJson, u8) {
    let (code, errno) = classify(e);
    (
        ErrorJson {
            error: ErrorBodyJson {
                code: code.name(),
                message: format!("{e:#}"),
                errno: errno.map(bpfns_sys::errno::name),
                hint: errno.and_then(bpfns_sys::errno::explain),
            },
        },
        code.exit(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn classes_come_from_types_through_context() {
        let daemon = |code| {
            anyhow::Error::new(ClientError::Daemon(bpfns_proto::ErrorBody {
                code,
                message: "whatever it says".into(),
            }))
            .context("doing something")
        };
        for (code, exit, name) in [
            (ErrorCode::NotFound, 3, "not_found"),
            (ErrorCode::Denied, 4, "denied"),
            (ErrorCode::BadRequest, 2, "bad_request"),
            (ErrorCode::Conflict, 5, "conflict"),
            (ErrorCode::LimitReached, 6, "limit_reached"),
            (ErrorCode::Internal, 1, "internal"),
        ] {
            let (j, status) = report(&daemon(code));
            assert_eq!((j.error.code, status), (name, exit));
            assert!(j.error.message.starts_with("doing something: "));
        }
        let sys = Err::<(), _>(SysError {
            op: "BPF_MAP_GET_NEXT_KEY".into(),
            errno: Errno::from_raw_os_error(bpfns_sys::errno::ENOTSUPP),
        })
        .context("map 3 cannot be dumped")
        .unwrap_err();
        let (j, status) = report(&sys);
        assert_eq!(
            (j.error.code, status, j.error.errno),
            ("failed", 1, Some("ENOTSUPP"))
        );
        assert!(j.error.hint.is_some_and(|h| h.contains("ring buffers")));
        assert!(
            !j.error.message.contains("Unknown error"),
            "{}",
            j.error.message
        );
        let perm = anyhow::Error::new(SysError {
            op: "BPF_OBJ_GET".into(),
            errno: Errno::PERM,
        });
        assert_eq!(report(&perm).1, 4);
        let plain = anyhow::anyhow!("no map with id 5");
        assert_eq!(report(&plain).0.error.code, "failed");
        let mine = anyhow::Error::new(CliError::not_found("no map with id 5"));
        assert_eq!(report(&mine).1, 3);
    }
}
