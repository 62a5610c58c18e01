//! Compiles the BPF objects with clang and generates their libbpf-rs skeletons into `OUT_DIR`:
//! `bpf/bpfns.bpf.c` (the kernel side) and `bpf/bpfns_lsm.bpf.c` (the BPF LSM layer).

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use libbpf_cargo::SkeletonBuilder;

/// `(source, skeleton file)`.
const OBJECTS: [(&str, &str); 2] = [
    ("bpf/bpfns.bpf.c", "bpfns.skel.rs"),
    ("bpf/bpfns_lsm.bpf.c", "bpfns_lsm.skel.rs"),
];

/// The clang to build BPF with: `$BPFNS_CLANG`, else the newest versioned clang on PATH
/// (Debian 12's plain `clang` is 14, too old for some CO-RE builtins), else `clang`.
fn clang() -> PathBuf {
    if let Some(c) = env::var_os("BPFNS_CLANG") {
        return c.into();
    }
    let path = env::var_os("PATH").unwrap_or_default();
    for v in (15..=22).rev() {
        let name = format!("clang-{v}");
        for dir in env::split_paths(&path) {
            let cand = dir.join(&name);
            if cand.is_file() {
                return cand;
            }
        }
    }
    PathBuf::from("clang")
}

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let bpf_dir = manifest.join("bpf");
    let clang = clang();
    println!("cargo:rerun-if-env-changed=BPFNS_CLANG");
    for f in [
        "bpfns.bpf.c",
        "bpfns_lsm.bpf.c",
        "maps.bpf.h",
        "bpfns.h",
        "vmlinux.h",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            Path::new("bpf").join(f).display()
        );
    }
    for (src, skel) in OBJECTS {
        let res = SkeletonBuilder::new()
            .source(manifest.join(src))
            .clang(&clang)
            .clang_args([OsStr::new("-I"), bpf_dir.as_os_str(), OsStr::new("-Wall")])
            .build_and_generate(out.join(skel));
        if let Err(e) = res {
            panic!(
                "building {src} with {} failed: {e:#}\n\
                 bpfns needs clang 15 or newer with the BPF target (Debian: apt-get install clang-19), \
                 or set BPFNS_CLANG to a suitable clang",
                clang.display()
            );
        }
    }
}
