//! `BPF_OBJ_GET`: the pin resolved as the caller; the object injected if visible.

use std::os::fd::OwnedFd;

use bpfns_sys::Errno;

use super::{Answer, Env, PATH_MAX};
use crate::supervisor::worker::caller::{Caller, CallerFs};

/// `AT_FDCWD`.
const AT_FDCWD: i32 = -100;

/// An `OBJ_GET` as read from the caller.
#[derive(Debug)]
pub(in crate::supervisor::worker) struct Pin {
    /// Without its NUL; never empty.
    pub path: Vec<u8>,
    /// bpfnsd's copy of the caller's `path_fd` (`None`: relative to its cwd).
    pub dir: Option<OwnedFd>,
    pub fs: CallerFs,
}

/// Read the pin's path and directory, and the caller's fs context.
pub(super) fn prepare(
    caller: &dyn Caller,
    pathname: u64,
    path_fd: Option<i32>,
) -> Result<Pin, Errno> {
    let path = caller.read_path(pathname, PATH_MAX)?;
    if path.is_empty() {
        return Err(Errno::NOENT);
    }
    let dir = match path_fd {
        // BPF_F_PATH_FD with AT_FDCWD: the working directory, as without the flag.
        Some(AT_FDCWD) => None,
        // Another negative number names no fd.
        Some(fd) if fd < 0 => return Err(Errno::BADF),
        Some(fd) => Some(caller.fd(fd as u32)?.ok_or(Errno::BADF)?),
        None => None,
    };
    Ok(Pin {
        path,
        dir,
        fs: caller.fs()?,
    })
}

pub(super) fn obj_get(env: &Env<'_>, pin: &Pin, file_flags: u32) -> Answer {
    use std::os::fd::AsFd;
    let fd = match env.ops.open_pin(pin, file_flags) {
        Ok(fd) => fd,
        Err(e) => return Answer::Error(e),
    };
    let Some((kind, id)) = env.ops.object_of(fd.as_fd()) else {
        return Answer::Error(Errno::PERM);
    };
    match env.view.can_see(env.ns, kind, id) {
        Ok(true) => Answer::Inject(fd),
        // The pin exists, but its object belongs to a namespace the caller cannot see.
        Ok(false) => Answer::Denied {
            errno: Errno::PERM,
            why: "the pinned object belongs to a namespace the caller cannot see",
        },
        Err(e) => Answer::view_failed("ownership of a pinned object", e),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bpfns_model::ObjectKind;
    use bpfns_sys::caps::CapabilitySet as C;

    use super::super::fake::*;
    use super::super::{answer, IdCache, Prepared};
    use super::*;
    use crate::supervisor::attr::{Attr, Command, Request, ATTR_SIZE};
    use crate::supervisor::ViewError;

    const PATH_AT: u64 = 0x9000;

    #[test]
    fn the_path_is_read_as_getname_reads_it() {
        let ok = FakeCaller::new().map(PATH_AT, b"/sys/fs/bpf/m\0junk".to_vec());
        assert_eq!(
            prepare(&ok, PATH_AT, None).expect("pin").path,
            b"/sys/fs/bpf/m"
        );
        let empty = FakeCaller::new().map(PATH_AT, b"\0".to_vec());
        assert_eq!(prepare(&empty, PATH_AT, None).err(), Some(Errno::NOENT));
        // Memory ends before the NUL.
        let short = FakeCaller::new().map(PATH_AT, b"/sys/fs".to_vec());
        assert_eq!(prepare(&short, PATH_AT, None).err(), Some(Errno::FAULT));
        let long = FakeCaller::new().map(PATH_AT, vec![b'a'; PATH_MAX + 1]);
        assert_eq!(
            prepare(&long, PATH_AT, None).err(),
            Some(Errno::NAMETOOLONG)
        );
        let dead = FakeCaller::new()
            .map(PATH_AT, b"/sys/fs/bpf/m\0".to_vec())
            .dead();
        assert_eq!(prepare(&dead, PATH_AT, None).err(), Some(Errno::SRCH));
    }

    #[test]
    fn path_fds_follow_the_kernel() {
        let mem = FakeCaller::new()
            .map(PATH_AT, b"m\0".to_vec())
            .with_fds(&[5]);
        assert!(prepare(&mem, PATH_AT, Some(AT_FDCWD))
            .expect("cwd")
            .dir
            .is_none());
        assert!(prepare(&mem, PATH_AT, Some(5)).expect("fd 5").dir.is_some());
        assert_eq!(prepare(&mem, PATH_AT, Some(-2)).err(), Some(Errno::BADF));
        assert_eq!(prepare(&mem, PATH_AT, Some(6)).err(), Some(Errno::BADF));
    }

    fn get(view: &FakeView, ops: &FakeOps) -> Answer {
        let mem = FakeCaller::new().map(PATH_AT, b"/sys/fs/bpf/m\0".to_vec());
        let pin = prepare(&mem, PATH_AT, None).expect("pin");
        let c = call(Command::ObjGet, Attr::zeroed(ATTR_SIZE), C::empty());
        let env = env(&c, view, &mem, ops);
        let req = Request::ObjGet {
            pathname: PATH_AT,
            file_flags: 0,
            path_fd: None,
        };
        answer(
            &env,
            req,
            Prepared::ObjGet(pin),
            &mut IdCache::new(Duration::ZERO),
        )
    }

    #[test]
    fn a_visible_pin_is_injected_a_foreign_one_refused() {
        let ops = FakeOps {
            pinned: Some((ObjectKind::Map, 7)),
            ..FakeOps::default()
        };
        let mine = FakeView::new(ns(1)).visible(ObjectKind::Map, &[7]);
        assert!(matches!(get(&mine, &ops), Answer::Inject(_)));
        let theirs = FakeView::new(ns(1)).visible(ObjectKind::Map, &[8]);
        assert!(matches!(
            get(&theirs, &ops),
            Answer::Denied {
                errno: Errno::PERM,
                ..
            }
        ));
        let failing = FakeView::new(ns(1)).failing(ViewError::NoRecords);
        assert!(matches!(get(&failing, &ops), Answer::Internal { .. }));
    }

    #[test]
    fn a_pin_that_is_no_bpf_object_or_does_not_open_is_refused() {
        let view = FakeView::new(ns(1)).visible(ObjectKind::Map, &[7]);
        let not_bpf = FakeOps {
            pinned: None,
            ..FakeOps::default()
        };
        assert!(matches!(get(&view, &not_bpf), Answer::Error(Errno::PERM)));
        let denied = FakeOps {
            open_error: Some(Errno::ACCESS),
            ..FakeOps::default()
        };
        assert!(matches!(get(&view, &denied), Answer::Error(Errno::ACCESS)));
    }
}
