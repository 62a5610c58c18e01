//! Crash and restart torture: bpfnsd is SIGKILLed over and over while namespace members keep
//! creating, listing and opening maps, a member of another namespace keeps trying to open
//! them, and a client keeps creating and deleting namespaces (so that kills land in the
//! middle of database writes).
//!
//! Checked afterwards: no foreign open, walk or `OBJ_GET` ever succeeded; every restart came
//! up clean; no namespace whose creation was acknowledged is lost and none whose deletion was
//! acknowledged is back; both members are still tagged and every map they made is still
//! theirs; their trapped calls never failed with `ENOSYS` (the listener was never lost), and
//! they answered when told to stop; the relays handed the listeners to every new bpfnsd.
//!
//! `BPFNS_TORTURE_KILLS` sets the number of kills (default 100); `scripts/reliability.sh`
//! runs a long version. A summary goes to stdout and to `target/tmp/torture-report.md`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bpfns_client::member::{self, Member};
use bpfns_client::{Client, ClientError};
use bpfns_model::ObjectKind;
use bpfns_tests::{helper_path, require_kernel, ProcessDaemon};

/// A member started through `bpfns_client::member` (so with its relay), its stdout as lines.
struct Running {
    member: Member,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Running {
    fn start(
        d: &ProcessDaemon,
        ns: &str,
        args: &[&str],
        on_line: impl Fn(&str) + Send + 'static,
    ) -> Self {
        let mut cmd = Command::new(helper_path());
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut member = member::spawn(&d.socket, ns, &mut cmd).expect("starting a member");
        let stdout = member.stdout.take().unwrap();
        let stdin = member.stdin.take();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                on_line(&line);
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            member,
            stdin,
            lines: rx,
        }
    }

    /// Close stdin (the member's signal to stop) and collect what it printed until it
    /// exits; `None` if it did not exit within a minute (it hangs).
    fn finish(
        mut self,
    ) -> (
        Option<std::process::ExitStatus>,
        Vec<String>,
        member::RelayStats,
    ) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut out = Vec::new();
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) => out.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.member.kill();
                    let _ = self.member.wait();
                    return (None, out, self.member.relay_stats());
                }
            }
        }
        let status = self.member.wait().ok();
        (status, out, self.member.relay_stats())
    }
}

/// The `calls=… ok=… eagain=… enosys=… other=… max_ms=…` line, as numbers.
fn tally(lines: &[String]) -> std::collections::HashMap<String, u64> {
    lines
        .iter()
        .find(|l| l.starts_with("calls="))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// What the namespace churn saw acknowledged.
#[derive(Default)]
struct Churn {
    /// Created (acknowledged) and not deleted since.
    exist: BTreeSet<String>,
    /// Deleted (acknowledged).
    gone: BTreeSet<String>,
    /// A request whose answer was lost to a kill: either outcome is fine.
    unsure: BTreeSet<String>,
    acknowledged: u64,
    interrupted: u64,
}

/// Create and delete namespaces under /churn until `stop`.
fn churn(socket: PathBuf, stop: Arc<AtomicBool>, seen: Arc<Mutex<Churn>>) {
    let mut client: Option<Client> = None;
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let c = match client.as_mut() {
            Some(c) => c,
            None => match Client::connect(&socket) {
                Ok(c) => client.insert(c),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            },
        };
        i += 1;
        // Create c{i}; every other step, delete c{i-1}.
        let (path, create) = if i % 2 == 1 {
            (format!("/churn/c{i}"), true)
        } else {
            (format!("/churn/c{}", i - 1), false)
        };
        let r = if create {
            c.ns_create(&path).map(|_| ())
        } else {
            c.ns_delete(&path).map(|_| ())
        };
        let mut s = seen.lock().unwrap();
        match r {
            Ok(()) => {
                s.acknowledged += 1;
                s.unsure.remove(&path);
                if create {
                    s.exist.insert(path);
                } else {
                    s.exist.remove(&path);
                    s.gone.insert(path);
                }
            }
            Err(ClientError::Daemon(e)) => {
                // Only possible after a lost answer: the create had happened, or the delete.
                assert!(
                    s.unsure.contains(&path) || (!create && !s.exist.contains(&path)),
                    "{path}: {e:?}"
                );
            }
            Err(_) => {
                s.interrupted += 1;
                s.exist.remove(&path);
                s.unsure.insert(path);
                client = None;
            }
        }
    }
}

/// Tiny deterministic generator for the kill timing (no dependency, reproducible runs).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

#[test]
fn daemon_killed_over_and_over_loses_nothing() {
    require_kernel!();
    let kills: u32 = std::env::var("BPFNS_TORTURE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut d = ProcessDaemon::start("torture");
    let mut admin = d.client();
    for ns in ["/ta", "/tb", "/churn"] {
        admin.ns_create(ns).unwrap();
    }
    drop(admin);

    let targets = d.dir.with_extension("targets");
    std::fs::write(&targets, "").unwrap();
    let made = Arc::new(Mutex::new(Vec::<u32>::new()));
    let (m2, t2) = (made.clone(), targets.clone());
    let a = Running::start(
        &d,
        "/ta",
        &["torture-member", "/sys/fs/bpf/torture-pin"],
        move |l| {
            if let Some(id) = l.strip_prefix("made=").and_then(|v| v.parse::<u32>().ok()) {
                m2.lock().unwrap().push(id);
                let mut f = std::fs::OpenOptions::new().append(true).open(&t2).unwrap();
                writeln!(f, "{id}").unwrap();
            }
        },
    );
    // Wait for the pin, then start the prober on it through /proc/PID/root.
    let deadline = Instant::now() + Duration::from_secs(30);
    while made.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the member made no map");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pin = format!("/proc/{}/root/sys/fs/bpf/torture-pin", a.member.id());
    let b = Running::start(
        &d,
        "/tb",
        &["torture-prober", targets.to_str().unwrap(), &pin],
        |_| {},
    );

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Churn::default()));
    let churner = {
        let (sock, s, seen) = (d.socket.clone(), stop.clone(), seen.clone());
        std::thread::spawn(move || churn(sock, s, seen))
    };

    let mut rng = Lcg(0x5eed_b9f5);
    let mut restart_ms = Vec::new();
    let started = Instant::now();
    for k in 0..kills {
        // Mostly mid-work; every tenth kill right after start (reconcile, first requests).
        let wait = if k % 10 == 9 {
            rng.next(0, 15)
        } else {
            rng.next(20, 200)
        };
        std::thread::sleep(Duration::from_millis(wait));
        d.kill();
        match d.spawn() {
            Ok(t) => restart_ms.push(t.as_millis() as u64),
            Err(e) => panic!("restart {} of {kills} failed: {e}", k + 1),
        }
    }
    let kill_phase = started.elapsed();
    // Let the churn and the members run against the last bpfnsd for a moment.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    churner.join().expect("the churn thread");

    let mut admin = d.client();
    // The relays give the listeners to the last bpfnsd within their reconnect period.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = admin.status().unwrap();
        if st.supervised_listeners >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relays did not hand their listeners to the last bpfnsd ({} supervised)",
            st.supervised_listeners
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Namespaces: everything acknowledged is there, everything deleted is gone.
    let paths: BTreeSet<String> = admin
        .ns_list()
        .unwrap()
        .into_iter()
        .map(|n| n.path)
        .collect();
    let seen = seen.lock().unwrap();
    for p in ["/ta", "/tb", "/churn"] {
        assert!(paths.contains(p), "{p} lost; have {paths:?}");
    }
    let lost: Vec<_> = seen.exist.difference(&paths).collect();
    assert!(lost.is_empty(), "acknowledged namespaces lost: {lost:?}");
    let back: Vec<_> = seen
        .gone
        .intersection(&paths)
        .filter(|p| !seen.unsure.contains(*p))
        .collect();
    assert!(back.is_empty(), "deleted namespaces are back: {back:?}");
    assert!(seen.acknowledged > 0, "the churn got no answer at all");

    // Membership and ownership: both members still tagged, every map still /ta's.
    assert!(
        admin.ns_show("/ta").unwrap().members >= 1,
        "the member of /ta lost its tag"
    );
    assert!(
        admin.ns_show("/tb").unwrap().members >= 1,
        "the member of /tb lost its tag"
    );
    let owned_by_ta: BTreeSet<u32> = admin
        .list(ObjectKind::Map)
        .unwrap()
        .into_iter()
        .filter(|o| o.namespace == "/ta")
        .map(|o| o.id)
        .collect();
    let made: Vec<u32> = made.lock().unwrap().clone();
    let stray: Vec<_> = made.iter().filter(|id| !owned_by_ta.contains(id)).collect();
    assert!(
        stray.is_empty(),
        "maps made in /ta no longer owned by /ta: {stray:?}"
    );

    let (a_status, a_out, a_relay) = a.finish();
    let (b_status, b_out, b_relay) = b.finish();
    let a_status = a_status.expect("the member of /ta hangs");
    let b_status = b_status.expect("the prober in /tb hangs");
    let escapes: Vec<_> = b_out.iter().filter(|l| l.starts_with("escape=")).collect();
    assert!(escapes.is_empty(), "foreign objects reached: {escapes:?}");
    assert!(a_status.success(), "the member of /ta: {a_status}");
    // A SIGKILL here would be the kernel's backstop: an open got past the supervisor.
    assert!(b_status.success(), "the prober in /tb: {b_status}");
    let (ta, tb) = (tally(&a_out), tally(&b_out));
    assert!(
        ta.get("calls").copied().unwrap_or(0) > 0,
        "no tally from /ta: {a_out:?}"
    );
    assert!(
        tb.get("calls").copied().unwrap_or(0) > 0,
        "no tally from /tb: {b_out:?}"
    );
    assert_eq!(ta["enosys"], 0, "/ta's calls lost their supervisor: {ta:?}");
    assert_eq!(tb["enosys"], 0, "/tb's calls lost their supervisor: {tb:?}");
    assert!(ta["ok"] > 0, "/ta's own opens never succeeded: {ta:?}");
    for (who, r) in [("/ta", a_relay), ("/tb", b_relay)] {
        assert!(r.outages > 0, "{who}'s relay never saw bpfnsd go: {r:?}");
        assert_eq!(r.resumed, r.outages, "{who}'s relay: {r:?}");
    }

    restart_ms.sort_unstable();
    let pct = |p: usize| restart_ms[(restart_ms.len() - 1) * p / 100];
    let report = format!(
        "| kills | kill phase | restart p50 / p99 / max | namespace changes acknowledged / interrupted | maps made in /ta | /ta calls (ok / EAGAIN / ENOSYS / other, longest) | /tb probes (ok / EAGAIN / ENOSYS / other, longest) | relay /ta, /tb (outages, abandoned, refused) | foreign opens |\n\
         |---|---|---|---|---|---|---|---|---|\n\
         | {kills} | {:.1} s | {} / {} / {} ms | {} / {} | {} | {} / {} / {} / {}, {} ms | {} / {} / {} / {}, {} ms | {}, {}, {}; {}, {}, {} | 0 |\n",
        kill_phase.as_secs_f64(),
        pct(50),
        pct(99),
        pct(100),
        seen.acknowledged,
        seen.interrupted,
        made.len(),
        ta["ok"],
        ta["eagain"],
        ta["enosys"],
        ta["other"],
        ta["max_ms"],
        tb["ok"],
        tb["eagain"],
        tb["enosys"],
        tb["other"],
        tb["max_ms"],
        a_relay.outages,
        a_relay.abandoned,
        a_relay.refused,
        b_relay.outages,
        b_relay.abandoned,
        b_relay.refused,
    );
    println!("{report}");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(out.join("torture-report.md"), &report);
    let _ = std::fs::remove_file(&targets);
    let _ = std::fs::remove_file(&d.log);
}
