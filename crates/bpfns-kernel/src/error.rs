//! Errors of the kernel side.

use std::path::PathBuf;

/// What can go wrong loading, opening or using the kernel side.
///
/// Each message is whole: it names the underlying error itself, which is therefore not also
/// the `source` (`{:#}` in anyhow would print it twice).
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("the kernel side is not loaded at {root} (missing {missing}); run `bpfns kernel load` or start bpfnsd")]
    NotLoaded { root: PathBuf, missing: PathBuf },
    #[error("{what}: {error}")]
    Sys {
        what: String,
        error: bpfns_sys::SysError,
    },
    #[error("{what}: {error}")]
    Libbpf {
        what: String,
        error: libbpf_rs::Error,
    },
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error("malformed {what} in the kernel side's maps")]
    Malformed { what: &'static str },
}

impl KernelError {
    pub(crate) fn libbpf(what: impl Into<String>) -> impl FnOnce(libbpf_rs::Error) -> Self {
        let what = what.into();
        move |error| Self::Libbpf { what, error }
    }
    pub(crate) fn sys(what: impl Into<String>) -> impl FnOnce(bpfns_sys::SysError) -> Self {
        let what = what.into();
        move |error| Self::Sys { what, error }
    }
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |error| Self::Io { what, error }
    }

    /// The kernel's errno, where the failure was a system call that gave one.
    pub fn errno(&self) -> Option<bpfns_sys::Errno> {
        match self {
            Self::Sys { error, .. } => Some(error.errno),
            Self::Io { error, .. } => error
                .raw_os_error()
                .map(bpfns_sys::Errno::from_raw_os_error),
            _ => None,
        }
    }
}

pub type Result<T, E = KernelError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_cause_once() {
        let e = KernelError::io("reading x")(std::io::Error::from_raw_os_error(2));
        assert_eq!(
            e.to_string(),
            "reading x: No such file or directory (os error 2)"
        );
        assert!(std::error::Error::source(&e).is_none());
    }
}
