//! The parsing of `/proc` text (`bpfns_sys::procfs`: a caller's capabilities, fs credentials
//! and pid-namespace ids, the parent pid from `/proc/<pid>/stat`), and the supervisor's
//! `kind_of_link_target`.
//!
//! Two parts. (1) The whole input as text through every parser: nothing panics.
//! (2) A task chooses its own name (comm), and the kernel prints it inside the very files
//! parsed (raw in `stat`; in `status` with only `\n` and `\\` escaped): texts laid out as
//! the kernel lays them out, with the name from the input and numbers from its first bytes,
//! must parse to exactly those numbers whatever the name.
#![no_main]

use bpfns_fuzz::{le_u32, le_u64};
use bpfns_sys::procfs::{
    caps, fs_creds as fs_creds_from_status, nspids as nspids_from_status,
    ppid_from_stat as parse_ppid,
};
use bpfnsd::supervisor::attr::kind_of_link_target;
use libfuzzer_sys::fuzz_target;

/// Numbers taken from the head of the input; the rest is the task's name.
const HEAD: usize = 40;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = caps(&text, "CapEff");
    let _ = parse_ppid(&text);
    let _ = fs_creds_from_status(&text);
    let _ = nspids_from_status(&text);
    let _ = kind_of_link_target(&text);

    let head = &data[..data.len().min(HEAD)];
    let comm = String::from_utf8_lossy(data.get(HEAD..).unwrap_or(&[]));
    let pid = le_u32(head, 0) as i32;
    let ppid = le_u32(head, 4) as i32;
    let fsuid = le_u32(head, 8);
    let fsgid = le_u32(head, 12);
    let cap_eff = le_u64(head, 16);
    let nspid = [le_u32(head, 24), le_u32(head, 28)];
    let groups: Vec<u32> = (0..(head.get(32).copied().unwrap_or(0) % 4) as usize)
        .map(|i| le_u32(head, 33 + i))
        .collect();

    // /proc/<pid>/stat: the name raw between parentheses.
    let stat =
        format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 99 0 0 0 1 2 0 0 20 0 1 0");
    assert_eq!(parse_ppid(&stat), Some(ppid), "stat: {stat:?}");

    // /proc/<pid>/status: the name escaped as proc_task_name() does.
    let escaped = comm.replace('\\', "\\\\").replace('\n', "\\n");
    let group_list: String = groups.iter().map(|g| format!("{g} ")).collect();
    let status = format!(
        "Name:\t{escaped}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\nNgid:\t0\n\
         Pid:\t{pid}\nPPid:\t{ppid}\nTracerPid:\t0\nUid:\t1\t2\t3\t{fsuid}\n\
         Gid:\t4\t5\t6\t{fsgid}\nFDSize:\t64\nGroups:\t{group_list}\n\
         NStgid:\t{}\t{}\nNSpid:\t{}\t{}\nNSpgid:\t{}\t{}\nNSsid:\t1\t1\n\
         CapInh:\t0000000000000000\nCapPrm:\t{cap_eff:016x}\nCapEff:\t{cap_eff:016x}\n\
         CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\n\
         Seccomp:\t2\nSeccomp_filters:\t1\n",
        nspid[0], nspid[1], nspid[0], nspid[1], nspid[0], nspid[1],
    );
    assert_eq!(
        caps(&status, "CapEff").map(|c| c.bits()),
        Some(cap_eff),
        "status: {status:?}"
    );
    assert_eq!(
        fs_creds_from_status(&status),
        Some((fsuid, fsgid, groups)),
        "status: {status:?}"
    );
    assert_eq!(
        nspids_from_status(&status),
        Some(nspid.to_vec()),
        "status: {status:?}"
    );
});
