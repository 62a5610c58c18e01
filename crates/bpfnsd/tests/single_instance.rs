//! The `bpfnsd` binary: `--check` changes nothing, and a second bpfnsd on a socket in use stops
//! before it loads or pins anything. Needs root (skipped otherwise, with the reason).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BPFNSD: &str = env!("CARGO_BIN_EXE_bpfnsd");

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

/// A bpfnsd's paths, all private to one test; removed (and a kernel side unpinned) on drop.
struct Paths {
    dir: PathBuf,
    pins: Vec<PathBuf>,
}

impl Paths {
    fn new(name: &str) -> Self {
        let dir = PathBuf::from(format!("/tmp/bpfnsd-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self {
            dir,
            pins: Vec::new(),
        }
    }
    fn socket(&self) -> PathBuf {
        self.dir.join("run/bpfns.sock")
    }
    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    fn pin_root(&mut self, tag: &str) -> PathBuf {
        let p = PathBuf::from(format!(
            "/sys/fs/bpf/bpfnsd-test-{tag}-{}",
            std::process::id()
        ));
        self.pins.push(p.clone());
        p
    }
    /// An empty configuration file (all defaults), beside the test's directory.
    fn config(&self) -> PathBuf {
        let c = self.dir.with_extension("toml");
        std::fs::write(&c, "").unwrap();
        c
    }
    fn args(&self, pin_root: &Path) -> Vec<String> {
        vec![
            "--config".into(),
            self.config().display().to_string(),
            "--socket".into(),
            self.socket().display().to_string(),
            "--state-dir".into(),
            self.state().display().to_string(),
            "--pin-root".into(),
            pin_root.display().to_string(),
            "--ns-bpffs-dir".into(),
            self.dir.join("ns").display().to_string(),
        ]
    }
}

impl Drop for Paths {
    fn drop(&mut self) {
        for p in &self.pins {
            // Links first, then programs and maps (what `bpfns kernel unload` removes).
            for sub in ["links", "progs", "maps"] {
                if let Ok(rd) = std::fs::read_dir(p.join(sub)) {
                    for e in rd.flatten() {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
                let _ = std::fs::remove_dir(p.join(sub));
            }
            let _ = std::fs::remove_dir(p);
        }
        // bpfnsd makes the instances' directory a mount point of its own.
        let _ = bpfns_sys::fs::unmount_detach(&self.dir.join("ns"));
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.dir.with_extension("toml"));
    }
}

/// A running bpfnsd, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bpfnsd(args: &[String]) -> Output {
    Command::new(BPFNSD)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn check_changes_nothing_and_a_second_bpfnsd_touches_nothing() {
    if !is_root() {
        let why = "needs root: run the suite as root";
        eprintln!("SKIPPED: {why}");
        // As bpfns_tests::skip does (bpfns-tests depends on this crate).
        if let Some(log) = std::env::var_os("BPFNS_SKIP_LOG") {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(log)
            {
                let _ = writeln!(f, "single_instance::check_changes_nothing_and_a_second_bpfnsd_touches_nothing: {why}");
            }
        }
        return;
    }
    let mut p = Paths::new("single");
    let first = p.pin_root("first");
    let second = p.pin_root("second");

    // Nothing there yet: --check says so and creates nothing.
    let mut args = p.args(&first);
    args.push("--check".into());
    let o = bpfnsd(&args);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("none yet") && out.contains("pass this kernel's verifier"),
        "{out}"
    );
    assert!(!first.exists(), "--check pinned a kernel side");
    assert!(
        !p.dir.exists(),
        "--check created files: {}",
        p.dir.display()
    );

    // A bpfnsd serving.
    let mut d = Running(
        Command::new(BPFNSD)
            .args(p.args(&first))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // It binds its socket first (single instance), then loads the kernel side.
    let pinned = |root: &Path| std::fs::read_dir(root.join("links")).map_or(0, |r| r.count());
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(p.socket()).is_err() || pinned(&first) == 0 {
        assert!(Instant::now() < deadline, "bpfnsd did not start");
        assert!(d.0.try_wait().unwrap().is_none(), "bpfnsd exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = pinned(&first);

    // --check beside it: names it, leaves its pins and database alone.
    let o = bpfnsd(&args);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains(&format!("a bpfnsd serves it (pid {})", d.0.id())),
        "{out}"
    );
    assert!(
        out.contains("in use by the running bpfnsd, not opened"),
        "{out}"
    );
    assert_eq!(pinned(&first), before);

    // A second bpfnsd on the same socket: refused before it loads anything.
    let o = bpfnsd(&p.args(&second));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("another bpfnsd is already serving"), "{err}");
    assert!(!second.exists(), "the second bpfnsd pinned a kernel side");
    // The first is unharmed.
    assert!(d.0.try_wait().unwrap().is_none(), "the first bpfnsd died");
    assert!(std::os::unix::net::UnixStream::connect(p.socket()).is_ok());
    assert_eq!(pinned(&first), before);
}

/// Container naming settings that cannot name anything are refused by `--check` and at start,
/// with the setting and the rule, before anything is created or loaded.
#[test]
fn bad_container_naming_is_refused_before_anything_starts() {
    if !is_root() {
        eprintln!("SKIPPED: needs root: run the suite as root");
        return;
    }
    let mut p = Paths::new("naming");
    let pins = p.pin_root("naming");
    for (toml, says) in [
        ("[containers]\nparent = \"/\"\n", "[containers] parent"),
        (
            "[containers]\nname = \"{name}/{id}\"\n",
            "[containers] name",
        ),
        ("[containers]\nname = \"{pod}\"\n", "placeholders"),
    ] {
        for check in [true, false] {
            let mut args = p.args(&pins);
            std::fs::write(&args[1], toml).unwrap();
            if check {
                args.push("--check".into());
            }
            let o = bpfnsd(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{toml}: started");
            assert!(err.contains(says), "{toml}: {err}");
        }
    }
    assert!(!pins.exists(), "a kernel side was loaded");
}

/// bpfnsd's log is plain text when stderr is a file (no terminal colour codes for the journal
/// or a log file), and one JSON object a line with `--log-format json`.
#[test]
fn log_is_plain_text_in_a_file_and_json_lines_on_request() {
    if !is_root() {
        eprintln!("SKIPPED: needs root: run the suite as root");
        return;
    }
    for format in ["text", "json"] {
        let mut p = Paths::new(&format!("log-{format}"));
        let pins = p.pin_root(&format!("log-{format}"));
        std::fs::create_dir_all(&p.dir).unwrap();
        let log_path = p.dir.join("bpfnsd.log");
        let mut args = p.args(&pins);
        args.extend(["--log-format".into(), format.into()]);
        // Ready when it says so (sd_notify), i.e. with its SIGTERM handler in place.
        let notify_path = p.dir.join("notify.sock");
        let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut d = Running(
            Command::new(BPFNSD)
                .args(&args)
                .env_remove("RUST_LOG")
                .env("NOTIFY_SOCKET", &notify_path)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log_path).unwrap())
                .spawn()
                .unwrap(),
        );
        let mut buf = [0u8; 64];
        let n = notify
            .recv(&mut buf)
            .expect("bpfnsd did not notify READY=1");
        assert_eq!(&buf[..n], b"READY=1");
        // SIGTERM: a clean stop, which is logged too.
        let pidfd = bpfns_sys::process::open_pidfd(d.0.id() as i32).unwrap();
        bpfns_sys::unix::pidfd_signal(std::os::fd::AsFd::as_fd(&pidfd), libc::SIGTERM).unwrap();
        let status = d.0.wait().unwrap();
        assert!(status.success(), "{format}: bpfnsd ended with {status}");
        let log = std::fs::read_to_string(&log_path).unwrap();
        // The keeper bpfnsd started writes to the same stream, in the same format.
        let mut keeper = format == "text";
        assert!(
            log.lines().count() >= 2,
            "{format}: too little logged:\n{log}"
        );
        assert!(
            !log.contains('\u{1b}'),
            "{format}: colour codes in a file:\n{log}"
        );
        for line in log.lines() {
            let parsed = serde_json::from_str::<serde_json::Value>(line);
            if format == "json" {
                let v = parsed.unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                for key in ["timestamp", "level", "target", "message"] {
                    assert!(v.get(key).is_some(), "no {key} in {line}");
                }
                keeper |= v["target"] == "bpfnsd_keeper";
            } else {
                assert!(parsed.is_err(), "a JSON line in the text log: {line}");
                assert!(
                    ["ERROR", "WARN", "INFO"].iter().any(|l| line.contains(l))
                        || line.starts_with("bpfnsd-keeper["),
                    "neither a level nor the keeper's prefix in {line}"
                );
            }
        }
        assert!(keeper, "{format}: no line of the keeper:\n{log}");
    }
}
