//! `delete` goes through to the runtime, and its exit status back to the engine, whatever
//! bpfnsd answers: a bpfnsd that is down is a warning on stderr, never a failed `delete`.
//! (The runtime here is a script: what is checked is the wrapper's own behaviour.)

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

fn runtime(dir: &std::path::Path, code: i32) -> PathBuf {
    let p = dir.join(format!("runtime-{code}"));
    std::fs::write(
        &p,
        format!("#!/bin/sh\necho \"runtime: $*\"\nexit {code}\n"),
    )
    .expect("script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

#[test]
fn delete_passes_through_and_bpfnsd_down_is_only_a_warning() {
    let dir = PathBuf::from(format!("/tmp/bpfns-oci-delete-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let config = dir.join("oci.toml");
    std::fs::write(&config, "").expect("oci.toml");
    for code in [0, 3] {
        let out = Command::new(env!("CARGO_BIN_EXE_bpfns-oci"))
            .arg("--runtime")
            .arg(runtime(&dir, code))
            .args(["--root", "/run/x", "delete", "--force", "ctr-1"])
            .env("BPFNS_OCI_CONFIG", &config)
            .env("BPFNS_SOCKET", dir.join("nobody.sock"))
            .output()
            .expect("running bpfns-oci");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{stdout}{stderr}");
        assert!(
            stdout.contains("runtime: --root /run/x delete --force ctr-1"),
            "{stdout}"
        );
        // bpfnsd is told (here: tried and warned about) only when the runtime's delete
        // succeeded: a refused delete (an unknown id, another runtime's container) releases
        // nothing.
        assert_eq!(
            stderr.contains(
                "warning: bpfnsd was not told of the runtime's delete of container ctr-1"
            ),
            code == 0,
            "{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
