//! Kernel errnos in words: their names, and what each means for a `bpf()` call made through
//! bpfns and what to do about it. The one place that turns an errno into text, so that every
//! tool says the same.

use rustix::io::Errno;

/// `ENOTSUPP` (524): kernel-internal, but bpf() returns it (e.g. for unsupported attach types,
/// or a key lookup in a ring buffer); libc has no name for it ("Unknown error 524").
pub const ENOTSUPP: i32 = 524;

/// The calling thread's `errno`, left by the last failed libc call (async-signal-safe: a
/// thread-local read).
pub(crate) fn last() -> Errno {
    Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// The symbolic name of an errno, e.g. `"EPERM"`; `"errno"` for one this table lacks.
pub fn name(e: Errno) -> &'static str {
    match e.raw_os_error() {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ENOSPC => "ENOSPC",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ELOOP => "ELOOP",
        libc::EPROTO => "EPROTO",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EKEYREJECTED => "EKEYREJECTED",
        libc::ENXIO => "ENXIO",
        libc::ENOEXEC => "ENOEXEC",
        libc::EXDEV => "EXDEV",
        libc::ENFILE => "ENFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ENOTCONN => "ENOTCONN",
        libc::EDQUOT => "EDQUOT",
        ENOTSUPP => "ENOTSUPP",
        _ => "errno",
    }
}

/// The largest errno the C library has words for (`EHWPOISON`); above it are the kernel's
/// internal ones (512 and up), which it calls "Unknown error".
const LAST_LIBC_ERRNO: i32 = 133;

/// `"EPERM (Operation not permitted)"`; an errno without a name here as `"errno 121 (Remote
/// I/O error)"`, one the C library has no words for as `"errno 1234"`.
pub fn describe(e: Errno) -> String {
    let code = e.raw_os_error();
    let words = || {
        let msg = std::io::Error::from_raw_os_error(code).to_string();
        msg.split(" (os error").next().unwrap_or(&msg).to_string()
    };
    match (name(e), code) {
        (_, ENOTSUPP) => "ENOTSUPP (operation not supported by this kernel)".to_string(),
        ("errno", 1..=LAST_LIBC_ERRNO) => format!("errno {code} ({})", words()),
        ("errno", _) => format!("errno {code}"),
        (name, _) => format!("{name} ({})", words()),
    }
}

/// What an errno from a `bpf()` call means under bpfns, and what to do: one sentence, or
/// `None` for an errno that needs no explaining beyond its name.
pub fn explain(e: Errno) -> Option<&'static str> {
    Some(match e.raw_os_error() {
        libc::EPERM => {
            "the kernel refused the operation: it needs CAP_BPF (some program and map types \
             also CAP_PERFMON, CAP_NET_ADMIN or CAP_SYS_ADMIN), or bpfns refused it because the \
             object belongs to a namespace you cannot see or your namespace's policy forbids it; \
             run it as root, or from the namespace that owns the object"
        }
        libc::EACCES => {
            "permission denied: the pin's file permissions, a read-only map written to, or a \
             program the verifier rejected; check the owner and mode of the pin, or open the \
             map read-only"
        }
        libc::ENOENT => {
            "no such object: it was freed meanwhile, never existed, or belongs to a namespace \
             you cannot see (bpfns answers the same in all three cases); list what you can see \
             with `bpfns KIND list`"
        }
        libc::ESRCH => "no such process: it has exited",
        libc::E2BIG => {
            "too big: a key, value or attribute larger than the kernel accepts for this object, \
             or more entries than the map's max_entries; check the sizes the object was created \
             with (`bpfns map show ID`)"
        }
        ENOTSUPP => {
            "this kernel does not support the operation for this kind of object (ENOTSUPP, 524): \
             e.g. ring buffers have no keys to look up, and some attach types are newer than the \
             running kernel; use the object the way its type is meant to be used"
        }
        libc::EOPNOTSUPP => {
            "the object's type does not support this operation (e.g. looking up keys in a map \
             that has none); use the object the way its type is meant to be used"
        }
        libc::EINVAL => {
            "the kernel does not accept this request for this object: a wrong type, size or \
             flag, or a kernel too old for it; check the object's type and sizes (`bpfns KIND \
             show ID`) and `bpfns doctor`"
        }
        libc::EBUSY => {
            "the object or attach point is busy: something else is attached there or holds it \
             exclusively; detach that first, or try again later"
        }
        libc::ENOSPC => {
            "full: the map holds max_entries elements already, or the kernel's table of this \
             kind is full; delete entries or create a larger map"
        }
        libc::ENOMEM => {
            "the kernel is out of memory for this (or the memory cgroup's limit is reached); \
             free some BPF objects or raise the limit"
        }
        libc::EAGAIN => "the kernel asks to try again: the object is changing right now",
        libc::EEXIST => "it exists already: remove the old one first, or pick another name",
        libc::EBADF => "not a valid file descriptor of the right kind of BPF object",
        libc::EFAULT => "the kernel could not read or write the caller's memory",
        libc::EMFILE => {
            "this process has too many open files: raise its limit (`ulimit -n`) or close some"
        }
        libc::ENOSYS => {
            "the system call is not available: the kernel lacks it, or a seccomp filter refused \
             it (for a namespace member while bpfnsd is down: start bpfnsd)"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_descriptions() {
        assert_eq!(name(Errno::PERM), "EPERM");
        assert_eq!(describe(Errno::PERM), "EPERM (Operation not permitted)");
        assert!(describe(Errno::from_raw_os_error(ENOTSUPP)).starts_with("ENOTSUPP"));
        assert_eq!(describe(Errno::from_raw_os_error(4000)), "errno 4000");
        assert_eq!(describe(Errno::ROFS), "EROFS (Read-only file system)");
        assert_eq!(
            describe(Errno::from_raw_os_error(libc::EREMOTEIO)),
            "errno 121 (Remote I/O error)"
        );
    }

    #[test]
    fn the_common_errnos_are_explained() {
        for e in [
            Errno::PERM,
            Errno::ACCESS,
            Errno::NOENT,
            Errno::TOOBIG,
            Errno::from_raw_os_error(ENOTSUPP),
            Errno::INVAL,
            Errno::BUSY,
            Errno::NOSPC,
        ] {
            let s = explain(e).unwrap_or_else(|| panic!("{} unexplained", name(e)));
            assert!(!s.contains("Unknown error"), "{s}");
        }
        assert!(
            explain(Errno::from_raw_os_error(ENOTSUPP)).is_some_and(|s| s.contains("ring buffers"))
        );
        assert_eq!(explain(Errno::from_raw_os_error(4000)), None);
    }
}
