//! Support for bpfns's tests against the real kernel.
//!
//! Every test loads its own instance of the kernel side under its own pin root
//! ([`TestKernel`]) and unloads it when dropped — also when the test fails — so tests never
//! share state or leave an enforcing program behind. [`Helper`] runs `bpfns-test-helper`,
//! a process the test can tag before it acts.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use bpfns_kernel::{loader, Kernel, PinLayout};

/// Why a kernel test cannot run here, if it cannot (not root, no BPF, no BTF).
pub fn skip_reason() -> Option<String> {
    // SAFETY-free: geteuid via rustix is not exposed through bpfns-sys; read /proc instead.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid_root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !euid_root {
        return Some("needs root (CAP_SYS_ADMIN, CAP_BPF): run the suite as root".into());
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("needs kernel BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF=y)".into());
    }
    None
}

/// Skip the calling test (with the reason on stderr) when the kernel tests cannot run here.
#[macro_export]
macro_rules! require_kernel {
    () => {
        if let Some(why) = $crate::skip_reason() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

/// A private instance of the kernel side, unloaded on drop.
#[derive(Debug)]
pub struct TestKernel {
    pub layout: PinLayout,
    pub kernel: Kernel,
}

impl TestKernel {
    /// Load a fresh instance pinned at `/sys/fs/bpf/bpfns-test-<name>-<pid>`.
    pub fn load(name: &str) -> Self {
        let layout = PinLayout::new(format!(
            "/sys/fs/bpf/bpfns-test-{name}-{}",
            std::process::id()
        ));
        let _ = loader::unload(&layout);
        // Unloads even if loading fails half-way.
        let guard = UnloadOnDrop(layout.clone());
        loader::load(&layout).unwrap_or_else(|e| panic!("loading the kernel side: {e}"));
        let kernel = Kernel::open(&layout).expect("opening the kernel side");
        std::mem::forget(guard);
        Self { layout, kernel }
    }
}

struct UnloadOnDrop(PinLayout);

impl Drop for UnloadOnDrop {
    fn drop(&mut self) {
        let _ = loader::unload(&self.0);
    }
}

impl Drop for TestKernel {
    fn drop(&mut self) {
        if let Err(e) = loader::unload(&self.layout) {
            eprintln!("warning: unloading {}: {e}", self.layout.root().display());
        }
    }
}

/// A unique pin path for a test object, removed on drop.
#[derive(Debug)]
pub struct TempPin(pub PathBuf);

impl TempPin {
    pub fn new(name: &str) -> Self {
        let _ = bpfns_sys::fs::ensure_bpffs(std::path::Path::new("/sys/fs/bpf"));
        let p = PathBuf::from(format!(
            "/sys/fs/bpf/bpfns-test-pin-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&p);
        Self(p)
    }
}

impl Drop for TempPin {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How long to wait for a helper's line before failing (never hang the suite).
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where cargo put `bpfns-test-helper`: beside the `deps/` folder of the running test.
pub fn helper_path() -> PathBuf {
    if let Some(p) = std::env::var_os("BPFNS_TEST_HELPER") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("test binary has a folder");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("target profile folder")
    } else {
        dir
    };
    dir.join("bpfns-test-helper")
}

/// A running `bpfns-test-helper`.
#[derive(Debug)]
pub struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pub pid: i32,
}

impl Helper {
    /// Start the helper; it waits for [`go`](Self::go) before acting.
    pub fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(helper_path())
            .arg("--wait")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning bpfns-test-helper");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            pid: child.id() as i32,
            stdin: child.stdin.take(),
            child,
            lines: rx,
        }
    }

    /// Let the helper act.
    pub fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(b"g").expect("writing the go byte");
        stdin.flush().expect("flush");
    }

    /// The next line of output, or `None` when the helper closed stdout.
    pub fn line(&mut self) -> Option<String> {
        self.lines.recv_timeout(LINE_TIMEOUT).ok()
    }

    /// Read lines until one is `key=value`; return the value. Panics if output ends first.
    pub fn expect(&mut self, key: &str) -> String {
        let prefix = format!("{key}=");
        loop {
            match self.line() {
                Some(l) => {
                    if let Some(v) = l.strip_prefix(&prefix) {
                        return v.to_string();
                    }
                }
                None => panic!("helper ended without printing {key}="),
            }
        }
    }

    /// Like [`expect`](Self::expect) but returns `None` if output ends without `key`.
    pub fn maybe(&mut self, key: &str) -> Option<String> {
        let prefix = format!("{key}=");
        while let Some(l) = self.line() {
            if let Some(v) = l.strip_prefix(&prefix) {
                return Some(v.to_string());
            }
        }
        None
    }

    /// Close stdin (ends any hold) and wait for the helper to exit.
    pub fn finish(mut self) -> ExitStatus {
        self.stdin.take();
        self.child.wait().expect("waiting for the helper")
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.stdin.take();
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Was the process killed by SIGKILL?
pub fn killed(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(9)
}
