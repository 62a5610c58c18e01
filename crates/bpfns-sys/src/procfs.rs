//! The texts of `/proc/<pid>/status`, `/proc/<pid>/stat` and `/proc/self/mountinfo`, parsed
//! in one place.
//!
//! A task chooses its own name (comm) and the kernel prints it inside both files: raw between
//! parentheses in `stat`, and in `status` with `\n` and `\\` escaped (`proc_task_name()`), so
//! a name can never start a line of its own. The parsers rely on exactly that.

use std::io;

use crate::caps::CapabilitySet;

/// A /proc text, read into a buffer that fits the usual one whole. (A /proc file says its
/// size is 0, so `std::fs::read_to_string` starts from 32 bytes and doubles: 8–10 reads for a
/// status, on every caller bpfnsd identifies and every member start.)
pub fn read_text(path: impl AsRef<std::path::Path>) -> io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut text = String::with_capacity(8192);
    f.read_to_string(&mut text)?;
    Ok(text)
}

/// `/proc/<pid>/status` of process (or thread) `pid`.
pub fn read_status(pid: i32) -> io::Result<String> {
    read_text(format!("/proc/{pid}/status"))
}

/// `/proc/<pid>/stat` of process (or thread) `pid`.
pub fn read_stat(pid: i32) -> io::Result<String> {
    read_text(format!("/proc/{pid}/stat"))
}

/// The value of line `name:` (e.g. `"CapEff"`) of a status text, trimmed.
pub fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// A capability mask as status prints it (`CapEff:\t000001ffffffffff`).
pub fn parse_mask(hex: &str) -> Option<CapabilitySet> {
    u64::from_str_radix(hex.trim(), 16)
        .ok()
        .map(CapabilitySet::from_bits_retain)
}

/// A capability set of a status text: `"CapEff"`, `"CapPrm"`, `"CapBnd"`, `"CapAmb"`, ...
pub fn caps(status: &str, set: &str) -> Option<CapabilitySet> {
    field(status, set).and_then(parse_mask)
}

/// The four ids of the `Uid:` or `Gid:` line: real, effective, saved, filesystem (in the
/// reader's user namespace).
pub fn ids(status: &str, line: &str) -> Option<[u32; 4]> {
    let mut it = field(status, line)?.split_whitespace().map(str::parse);
    let mut out = [0u32; 4];
    for v in &mut out {
        *v = it.next()?.ok()?;
    }
    Some(out)
}

/// `(fsuid, fsgid, supplementary groups)` of a status text.
pub fn fs_creds(status: &str) -> Option<(u32, u32, Vec<u32>)> {
    let fsuid = ids(status, "Uid")?[3];
    let fsgid = ids(status, "Gid")?[3];
    let groups = field(status, "Groups")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<Vec<u32>, _>>()
        .ok()?;
    Some((fsuid, fsgid, groups))
}

/// The `NSpid:` list of a status text (outermost pid namespace first).
pub fn nspids(status: &str) -> Option<Vec<u32>> {
    field(status, "NSpid").map(|v| {
        v.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    })
}

/// The thread-group id (process id) of a status text.
pub fn tgid(status: &str) -> Option<i32> {
    field(status, "Tgid")?.parse().ok()
}

/// The parent pid of a stat text (parsed after the last `)`: the name may hold any).
pub fn ppid_from_stat(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Clock ticks per second of the times in `/proc` (`USER_HZ`, 100 on Linux).
pub const USER_HZ: f64 = 100.0;

/// utime + stime (clock ticks) of a `/proc/<pid>/stat` text: all the process's threads; with
/// `children`, plus cutime + cstime (its reaped children).
pub fn cpu_ticks_from_stat(stat: &str, children: bool) -> Option<u64> {
    // Fields after the command (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // rest[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
    let get = |field: usize| f.get(field - 3).copied().unwrap_or(0);
    Some(get(14) + get(15) + if children { get(16) + get(17) } else { 0 })
}

/// The CPU ticks process `pid` used ([`cpu_ticks_from_stat`]); 0 if it cannot be read.
pub fn cpu_ticks(pid: i32, children: bool) -> u64 {
    read_stat(pid)
        .ok()
        .and_then(|s| cpu_ticks_from_stat(&s, children))
        .unwrap_or(0)
}

/// Busy and steal ticks of all CPUs in a `/proc/stat` text (its `cpu ` line): busy is user,
/// nice, system, irq and softirq.
pub fn machine_ticks_from_stat(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    Some((get(0) + get(1) + get(2) + get(5) + get(6), get(7)))
}

/// The machine's busy and steal ticks so far ([`machine_ticks_from_stat`]); zeros if
/// `/proc/stat` cannot be read.
pub fn machine_ticks() -> (u64, u64) {
    read_text("/proc/stat")
        .ok()
        .and_then(|s| machine_ticks_from_stat(&s))
        .unwrap_or((0, 0))
}

/// The parent pid of process `pid`, if it can be read.
pub fn parent_pid(pid: i32) -> Option<i32> {
    ppid_from_stat(&read_stat(pid).ok()?)
}

/// The inodes of the sockets process `pid` holds open (`/proc/PID/fd/N` → `socket:[INO]`).
pub fn socket_inodes(pid: i32) -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        // An fd closed while listing is skipped.
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        if let Some(ino) = socket_inode(&target.to_string_lossy()) {
            out.push(ino);
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The inode of an fd link target `socket:[INO]`.
pub fn socket_inode(target: &str) -> Option<u32> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The mount points of a `mountinfo` text (the fifth field of each line, its `\ooo` escapes
/// of space, tab, newline and backslash undone), in the order listed (parents before the
/// mounts on them).
pub fn mount_points(mountinfo: &str) -> Vec<std::path::PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .collect()
}

/// The mount points of the cgroup filesystems (v1 `cgroup` and v2 `cgroup2`) of a
/// `mountinfo` text, each once, in the order listed.
pub fn cgroup_mount_points(mountinfo: &str) -> Vec<std::path::PathBuf> {
    let mut out: Vec<std::path::PathBuf> = Vec::new();
    for l in mountinfo.lines() {
        // The filesystem type is the first field after the optional fields' ` - `.
        let fstype = l
            .split_once(" - ")
            .and_then(|(_, rest)| rest.split(' ').next());
        if !matches!(fstype, Some("cgroup" | "cgroup2")) {
            continue;
        }
        if let Some(p) = l.split(' ').nth(4).map(unescape) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// A mountinfo field with its `\ooo` escapes undone.
fn unescape(field: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    std::path::PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// One line of `/proc/<pid>/cgroup`: the hierarchy id (0: cgroup v2), its controllers as
/// listed (`cpu,cpuacct`, `name=systemd`; empty for v2), and the cgroup's path in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine {
    pub hierarchy: u32,
    pub controllers: String,
    pub path: String,
}

/// Parse a `/proc/<pid>/cgroup` text (the path may hold `:`; it is the rest of the line).
pub fn cgroup_lines(text: &str) -> Vec<CgroupLine> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let hierarchy = it.next()?.parse().ok()?;
            let controllers = it.next()?.to_string();
            let path = it.next()?.to_string();
            Some(CgroupLine {
                hierarchy,
                controllers,
                path,
            })
        })
        .collect()
}

/// Where the cgroup of `line` is in this mount namespace, from a mountinfo text: below a mount
/// of its hierarchy (`cgroup2` for hierarchy 0, else a `cgroup` mount whose options name
/// every controller of the line) whose root is the line's path or above it.
pub fn cgroup_dir(mountinfo: &str, line: &CgroupLine) -> Option<std::path::PathBuf> {
    let want: Vec<&str> = line
        .controllers
        .split(',')
        .filter(|c| !c.is_empty())
        .collect();
    for l in mountinfo.lines() {
        let fields: Vec<&str> = l.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(root), Some(point), Some(fstype), Some(opts)) = (
            fields.get(3),
            fields.get(4),
            fields.get(dash + 1),
            fields.get(dash + 3),
        ) else {
            continue;
        };
        let ours = if line.hierarchy == 0 {
            *fstype == "cgroup2"
        } else {
            *fstype == "cgroup"
                && !want.is_empty()
                && want.iter().all(|c| opts.split(',').any(|o| o == *c))
        };
        if !ours {
            continue;
        }
        let root = unescape(root);
        let Ok(rest) = std::path::Path::new(&line.path).strip_prefix(&root) else {
            continue;
        };
        return Some(unescape(point).join(rest));
    }
    None
}

/// The upper (writable) directory of the overlay mounted last at `point`, from a mountinfo
/// text: its `upperdir=` super option, if absolute (an engine may give it relative to a
/// directory it changed into, which the text does not say).
pub fn overlay_upperdir(mountinfo: &str, point: &std::path::Path) -> Option<std::path::PathBuf> {
    mountinfo.lines().rev().find_map(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        let dash = fields.iter().position(|f| *f == "-")?;
        if unescape(fields.get(4)?) != point || *fields.get(dash + 1)? != "overlay" {
            return None;
        }
        let upper = fields
            .get(dash + 3)?
            .split(',')
            .find_map(|o| o.strip_prefix("upperdir="))?;
        Some(unescape(upper)).filter(|u| u.is_absolute())
    })
}

/// The mount points strictly below `dir` in this process's mount namespace, deepest first.
pub fn mounts_below(dir: &std::path::Path) -> io::Result<Vec<std::path::PathBuf>> {
    Ok(mounts_below_in(&read_text("/proc/self/mountinfo")?, dir))
}

/// The mount points strictly below `dir` in a `mountinfo` text, deepest first.
pub fn mounts_below_in(mountinfo: &str, dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut below: Vec<_> = mount_points(mountinfo)
        .into_iter()
        .filter(|m| m != dir && m.starts_with(dir))
        .collect();
    below.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    below.dedup();
    below
}

/// What `/proc/thread-self/fd/<fd>` names `fd` (`anon_inode:bpf-map`, `pipe:[N]`, a path),
/// as the calling thread's fd table has it.
pub fn fd_target(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<String> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/thread-self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
}

/// The link target of a BPF token's file: `bpf_token_create` makes it a pseudo file of the
/// bpffs instance it was created from, named `bpf-token` and never linked into a directory.
pub const BPF_TOKEN_TARGET: &str = "/bpf-token (deleted)";

/// Whether `fd` may be a BPF token: an unlinked `bpf-token` on a bpffs. Necessary, not
/// sufficient (an object pinned as `bpf-token` at the root of a bpffs instance, opened and
/// unlinked, looks the same): only a token's fdinfo carries its `allowed_*` lines, which a
/// caller still reads. Never the fdinfo alone: its format is plain text.
pub fn is_bpf_token(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    fd_target(fd).is_ok_and(|t| t == BPF_TOKEN_TARGET)
        && crate::fs::fd_fs_magic(fd).is_ok_and(|m| m == crate::fs::BPF_FS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_past_a_command_with_spaces_and_parentheses() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 5 0 0";
        assert_eq!(cpu_ticks_from_stat(stat, false), Some(10));
        assert_eq!(cpu_ticks_from_stat(stat, true), Some(13));
        assert_eq!(cpu_ticks_from_stat("no parenthesis", false), None);
        let machine = "cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 5 0 2 500 3 1 1 2 0 0\n";
        assert_eq!(machine_ticks_from_stat(machine), Some((21, 4)));
        assert!(machine_ticks().0 > 0, "/proc/stat has busy time");
        assert!(cpu_ticks(std::process::id() as i32, true) < u64::MAX);
    }

    #[test]
    fn cgroup_mounts_are_found_by_type() {
        let mi = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
42 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
43 23 0:40 / /mnt/my\\040cg rw - cgroup2 none rw
44 23 0:41 / /mnt/x rw - ext4 /dev/cgroup rw
";
        let p: Vec<_> = cgroup_mount_points(mi);
        assert_eq!(
            p,
            ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/unified", "/mnt/my cg"]
                .map(std::path::PathBuf::from)
        );
    }

    #[test]
    fn socket_fd_targets() {
        assert_eq!(socket_inode("socket:[189585723]"), Some(189585723));
        assert_eq!(socket_inode("pipe:[12]"), None);
        assert_eq!(socket_inode("/tmp/socket:[12]"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("pair");
        use std::os::unix::fs::MetadataExt;
        let a = std::fs::File::from(std::os::fd::OwnedFd::from(a));
        let ino = a.metadata().expect("fstat").ino() as u32;
        let mine = socket_inodes(std::process::id() as i32).expect("our fds");
        assert!(mine.contains(&ino), "{mine:?} lacks {ino}");
    }

    #[test]
    fn overlay_upper_directories() {
        let text = "86 55 0:44 / /run/t/ns/a/rootfs rw,relatime - overlay overlay \
                    rw,lowerdir=/s/1/fs,upperdir=/s/2/fs,workdir=/s/2/work\n\
                    87 55 0:45 / /var/lib/docker/overlay2/x/merged rw - overlay overlay \
                    rw,lowerdir=l/A:l/B,upperdir=x/diff,workdir=x/work\n\
                    88 55 0:46 / /run/t/ns/b/rootfs rw - tmpfs tmpfs rw\n";
        let up = |p: &str| overlay_upperdir(text, std::path::Path::new(p));
        assert_eq!(up("/run/t/ns/a/rootfs"), Some("/s/2/fs".into()));
        // Relative: not knowable from the text.
        assert_eq!(up("/var/lib/docker/overlay2/x/merged"), None);
        assert_eq!(up("/run/t/ns/b/rootfs"), None);
        assert_eq!(up("/run/t/ns/c/rootfs"), None);
    }

    #[test]
    fn mountinfo_mount_points() {
        let text = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                    40 22 0:40 / /run/bpfns/ns/3 rw - bpf bpf rw\n\
                    41 22 0:41 / /run/a\\040b\\134c rw - bpf bpf rw\n";
        assert_eq!(
            mount_points(text),
            [
                std::path::PathBuf::from("/proc"),
                "/run/bpfns/ns/3".into(),
                "/run/a b\\c".into()
            ]
        );
        assert!(mount_points("short line").is_empty());
    }

    #[test]
    fn cgroup_lines_and_their_directories() {
        let cg =
            "10:hugetlb:/\n4:cpu,cpuacct:/libpod_parent/libpod-ab:c\n1:name=systemd:/x\n0::/\n";
        let lines = cgroup_lines(cg);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1].hierarchy, 4);
        assert_eq!(lines[1].controllers, "cpu,cpuacct");
        assert_eq!(lines[1].path, "/libpod_parent/libpod-ab:c");
        assert_eq!(lines[3].hierarchy, 0);
        let mi = "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpuacct,cpu\n\
                  31 25 0:27 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n\
                  32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                  33 25 0:29 /sub /mnt/h rw - cgroup cgroup rw,hugetlb\n";
        assert_eq!(
            cgroup_dir(mi, &lines[1]),
            Some("/sys/fs/cgroup/cpu,cpuacct/libpod_parent/libpod-ab:c".into())
        );
        assert_eq!(
            cgroup_dir(mi, &lines[2]),
            Some("/sys/fs/cgroup/systemd/x".into())
        );
        assert_eq!(
            cgroup_dir(mi, &lines[3]),
            Some("/sys/fs/cgroup/unified".into())
        );
        // The hugetlb mount's root is below the cgroup: not reachable through it.
        assert_eq!(cgroup_dir(mi, &lines[0]), None);
        let only_cpu = CgroupLine {
            hierarchy: 4,
            controllers: "cpu,memory".into(),
            path: "/".into(),
        };
        assert_eq!(cgroup_dir(mi, &only_cpu), None);
    }

    #[test]
    fn mounts_below_this_root() {
        let all = mounts_below(std::path::Path::new("/")).expect("own mountinfo");
        assert!(all.iter().all(|m| m != std::path::Path::new("/")));
        assert!(all.iter().any(|m| m == std::path::Path::new("/proc")));
    }

    const STATUS: &str =
        "Name:\tCapEff: 0 (x\nUmask:\t0022\nTgid:\t4242\nUid:\t1000\t1001\t1002\t1003\n\
         Gid:\t100\t101\t102\t103\nGroups:\t4 24 27 \nNSpid:\t4242\t7\n\
         CapEff:\t000001ffffffffff\nCapBnd:\t0000000000200000\nCapAmb:\t0000000000000000\n";

    #[test]
    fn status_fields() {
        assert_eq!(
            caps(STATUS, "CapEff"),
            Some(CapabilitySet::from_bits_retain(0x1ff_ffff_ffff))
        );
        assert_eq!(caps(STATUS, "CapBnd"), Some(CapabilitySet::SYS_ADMIN));
        assert_eq!(caps(STATUS, "CapAmb"), Some(CapabilitySet::empty()));
        assert_eq!(caps(STATUS, "CapPrm"), None);
        assert_eq!(caps("CapEff:\tzz\n", "CapEff"), None);
        assert_eq!(ids(STATUS, "Uid"), Some([1000, 1001, 1002, 1003]));
        assert_eq!(fs_creds(STATUS), Some((1003, 103, vec![4, 24, 27])));
        assert_eq!(fs_creds("Uid:\t0\n"), None);
        let empty_groups = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n";
        assert_eq!(fs_creds(empty_groups), Some((0, 0, vec![])));
        assert_eq!(nspids(STATUS), Some(vec![4242, 7]));
        assert_eq!(tgid(STATUS), Some(4242));
        // `CapEffX:` is not `CapEff:`.
        assert_eq!(field("CapEffX:\t1\n", "CapEff"), None);
    }

    #[test]
    fn stat_parent_with_odd_names() {
        assert_eq!(ppid_from_stat("42 (a) b (c)) S 17 42 42 0"), Some(17));
        assert_eq!(ppid_from_stat("42 (sh) S 1 42"), Some(1));
        assert_eq!(ppid_from_stat("garbage"), None);
    }

    #[test]
    fn this_process() {
        let me = std::process::id() as i32;
        let status = read_status(me).expect("own status");
        assert_eq!(tgid(&status), Some(me));
        assert!(caps(&status, "CapEff").is_some());
        assert_eq!(
            parent_pid(me),
            Some(rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get()))
        );
    }

    #[test]
    fn a_file_is_no_token() {
        use std::os::fd::AsFd;
        let f = std::fs::File::open("/dev/null").expect("/dev/null");
        assert_eq!(fd_target(f.as_fd()).expect("target"), "/dev/null");
        assert!(!is_bpf_token(f.as_fd()));
    }
}
