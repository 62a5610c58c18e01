//! Errors of the kernel side.

use std::path::PathBuf;

/// What can go wrong loading, opening or using the kernel side.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("the kernel side is not loaded at {root} (missing {missing}); run `bpfns kernel load` or start bpfnsd")]
    NotLoaded { root: PathBuf, missing: PathBuf },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: bpfns_sys::SysError,
    },
    #[error("{what}: {source}")]
    Libbpf {
        what: String,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed {what} in the kernel side's maps")]
    Malformed { what: &'static str },
}

impl KernelError {
    pub(crate) fn libbpf(what: impl Into<String>) -> impl FnOnce(libbpf_rs::Error) -> Self {
        let what = what.into();
        move |source| Self::Libbpf { what, source }
    }
    pub(crate) fn sys(what: impl Into<String>) -> impl FnOnce(bpfns_sys::SysError) -> Self {
        let what = what.into();
        move |source| Self::Sys { what, source }
    }
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

pub type Result<T, E = KernelError> = std::result::Result<T, E>;
