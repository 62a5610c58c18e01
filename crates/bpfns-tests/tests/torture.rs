//! Crash and restart torture: bpfnsd is SIGKILLed over and over while namespace members keep
//! creating, listing and opening maps, a member of another namespace keeps trying to open
//! them, and a client keeps creating and deleting namespaces (so that kills land in the
//! middle of database writes); every twentieth round the listener keeper is SIGKILLed too,
//! while bpfnsd runs.
//!
//! Checked afterwards: no foreign open, walk or `OBJ_GET` ever succeeded; every restart came
//! up clean; no namespace whose creation was acknowledged is lost and none whose deletion was
//! acknowledged is back; both members are still tagged and every map they made is still
//! theirs; their trapped calls never failed with `ENOSYS` (the listener was never lost), and
//! they answered when told to stop; the last bpfnsd serves both listeners and its keeper
//! holds both.
//!
//! The file also has the listener keeper's own tests: a member's orphan (a background child
//! that outlives the process `bpfns exec` started) stays supervised across restarts and
//! crashes of bpfnsd; a keeper killed while bpfnsd runs is replaced.
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
use bpfns_sys::unix::pidfd_kill;
use bpfns_tests::{helper_path, require_kernel, ProcessDaemon};

/// A member started through `bpfns_client::member` (as `bpfns exec` does), its stdout as
/// lines.
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
    fn finish(mut self) -> (Option<std::process::ExitStatus>, Vec<String>) {
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
                    return (None, out);
                }
            }
        }
        let status = self.member.wait().ok();
        (status, out)
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
    let mut keeper_kills = 0u32;
    let mut replaced_ms = Vec::new();
    // The keepers' counters, summed over every keeper killed.
    let mut kept = bpfnsd::keeper::Counters::default();
    let add = |sum: &mut bpfnsd::keeper::Counters, c: bpfnsd::keeper::Counters| {
        sum.outages += c.outages;
        sum.abandoned += c.abandoned;
        sum.refused += c.refused;
    };
    let started = Instant::now();
    for k in 0..kills {
        // Mostly mid-work; every tenth kill right after start (reconcile, first requests).
        let wait = if k % 10 == 9 {
            rng.next(0, 15)
        } else {
            rng.next(20, 200)
        };
        std::thread::sleep(Duration::from_millis(wait));
        if k % 20 == 10 {
            // The keeper dies while bpfnsd runs: bpfnsd starts another and deposits both
            // listeners again (before the next bpfnsd kill: both at once lose the listeners).
            let before = d.keeper().expect("the keeper answers");
            add(&mut kept, before);
            kill_pid(before.pid as i32);
            keeper_kills += 1;
            let t = Instant::now();
            loop {
                match d.keeper() {
                    Some(c) if c.pid != before.pid && c.held >= 2 => break,
                    _ => {}
                }
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "no new keeper holds both listeners 10 s after the keeper was killed"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            replaced_ms.push(t.elapsed().as_millis() as u64);
        }
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
    // The last bpfnsd took both listeners from the keeper as it started.
    let st = admin.status().unwrap();
    assert!(
        st.supervised_listeners >= 2 && st.kept_listeners >= 2,
        "the last bpfnsd serves {} listeners, its keeper holds {}",
        st.supervised_listeners,
        st.kept_listeners
    );
    add(&mut kept, d.keeper().expect("the keeper answers"));

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
    // The maps made so far, taken before the listing: the member goes on making maps, and
    // one made after the listing is not in it.
    let made: Vec<u32> = made.lock().unwrap().clone();
    let owners: std::collections::BTreeMap<u32, String> = admin
        .list(ObjectKind::Map)
        .unwrap()
        .into_iter()
        .map(|o| (o.id, o.namespace))
        .collect();
    let stray: Vec<String> = made
        .iter()
        .filter(|id| owners.get(id).map(String::as_str) != Some("/ta"))
        .map(|id| match owners.get(id) {
            Some(ns) => format!("{id} (owned by {ns})"),
            None => format!("{id} (gone)"),
        })
        .collect();
    if !stray.is_empty() {
        // What bpfnsd said about those maps, for the failure to name a cause.
        let log = std::fs::read_to_string(&d.log).unwrap_or_default();
        let said: Vec<&str> = log
            .lines()
            .filter(|l| {
                stray
                    .iter()
                    .any(|s| l.contains(&format!("={}", s.split(' ').next().unwrap_or(""))))
            })
            .collect();
        panic!("maps made in /ta no longer owned by /ta: {stray:?}; bpfnsd logged: {said:#?}");
    }

    let (a_status, a_out) = a.finish();
    let (b_status, b_out) = b.finish();
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
    assert_eq!(ta["wrong"], 0, "/ta's opens returned another fd: {a_out:?}");
    assert_eq!(tb["enosys"], 0, "/tb's calls lost their supervisor: {tb:?}");
    assert!(ta["ok"] > 0, "/ta's own opens never succeeded: {ta:?}");
    if let Some(l) = a_out.iter().find(|l| l.starts_with("other_errors=")) {
        eprintln!("/ta's calls that failed otherwise: {l}");
    }
    assert!(
        kept.outages > 0,
        "the keepers never saw bpfnsd go: {kept:?}"
    );

    restart_ms.sort_unstable();
    replaced_ms.sort_unstable();
    let pct = |p: usize| restart_ms[(restart_ms.len() - 1) * p / 100];
    let report = format!(
        "| kills | kill phase | restart p50 / p99 / max | namespace changes acknowledged / interrupted | maps made in /ta | /ta calls (ok / EAGAIN / ENOSYS / other, longest) | /tb probes (ok / EAGAIN / ENOSYS / other, longest) | keepers (killed, replaced within max; outages seen, abandoned, refused) | foreign opens |\n\
         |---|---|---|---|---|---|---|---|---|\n\
         | {kills} | {:.1} s | {} / {} / {} ms | {} / {} | {} | {} / {} / {} / {}, {} ms | {} / {} / {} / {}, {} ms | {keeper_kills}, {} ms; {}, {}, {} | 0 |\n",
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
        replaced_ms.last().copied().unwrap_or(0),
        kept.outages,
        kept.abandoned,
        kept.refused,
    );
    println!("{report}");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(out.join("torture-report.md"), &report);
    let _ = std::fs::remove_file(&targets);
    let _ = std::fs::remove_file(&d.log);
}

/// SIGKILL process `pid` (through a pidfd: never another process that got its number).
fn kill_pid(pid: i32) {
    let fd = bpfns_sys::process::open_pidfd(pid).expect("pidfd of the keeper");
    pidfd_kill(std::os::fd::AsFd::as_fd(&fd)).expect("SIGKILL");
}

/// A member's background child that outlives the process `bpfns exec` started (as
/// `sh -c '(...) & exit 0'` leaves one), told to probe through its stdin.
struct Orphan {
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pending: Vec<String>,
    pid: i32,
    own: u32,
}

/// What one probe of an orphan got: its walk of map ids (or the errno), the open of its own
/// map and of the foreign one.
#[derive(Debug)]
struct Probe {
    walk: Result<Vec<u32>, i32>,
    own: String,
    foreign: String,
}

impl Orphan {
    fn start(d: &ProcessDaemon, ns: &str, foreign: u32) -> Orphan {
        let mut cmd = Command::new(helper_path());
        cmd.args(["orphan", &foreign.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut m = member::spawn(&d.socket, ns, &mut cmd).expect("starting a member");
        let stdout = m.stdout.take().unwrap();
        let stdin = m.stdin.take();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The process started as the member ends at once: `bpfns exec` is over.
        assert!(m.wait().unwrap().success());
        let mut o = Orphan {
            stdin,
            lines,
            pending: Vec::new(),
            pid: 0,
            own: 0,
        };
        o.pid = o.value("child=").parse().unwrap();
        o.own = o
            .value("own=")
            .parse()
            .expect("the orphan creates a map of its own");
        o
    }

    /// The first line starting with `prefix` (lines of parent and child interleave: those
    /// passed over are kept for later).
    fn value(&mut self, prefix: &str) -> String {
        if let Some(i) = self.pending.iter().position(|l| l.starts_with(prefix)) {
            return self.pending.remove(i)[prefix.len()..].to_string();
        }
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("no {prefix} from the orphan: {e}"));
            match l.strip_prefix(prefix) {
                Some(v) => return v.to_string(),
                None => self.pending.push(l),
            }
        }
    }

    fn probe(&mut self) -> Probe {
        self.stdin.as_mut().unwrap().write_all(b"p").unwrap();
        self.stdin.as_mut().unwrap().flush().unwrap();
        let line = self.value("probe ");
        let field = |k: &str| {
            line.split(' ')
                .find_map(|f| f.strip_prefix(k))
                .unwrap_or_default()
                .to_string()
        };
        let walk = field("walk=");
        Probe {
            walk: match walk.strip_prefix("errno:") {
                Some(e) => Err(e.parse().unwrap()),
                None => Ok(walk.split(',').filter_map(|i| i.parse().ok()).collect()),
            },
            own: field("own="),
            foreign: field("foreign="),
        }
    }

    /// Answered by a supervisor, from the orphan's view.
    fn served(&mut self, foreign: u32, when: &str) {
        let p = self.probe();
        let walk = p
            .walk
            .as_ref()
            .unwrap_or_else(|e| panic!("{when}: the walk failed with errno {e}: {p:?}"));
        assert!(
            walk.contains(&self.own),
            "{when}: own map not listed: {p:?}"
        );
        assert!(
            !walk.contains(&foreign),
            "{when}: foreign map listed: {p:?}"
        );
        assert_eq!(p.own, format!("opened:{}", self.own), "{when}: {p:?}");
        assert_eq!(p.foreign, format!("{foreign}:errno:2"), "{when}: {p:?}");
    }
}

impl Drop for Orphan {
    fn drop(&mut self) {
        // EOF ends it; a kill makes sure.
        self.stdin.take();
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(fd) = bpfns_sys::process::open_pidfd(self.pid) {
            let _ = pidfd_kill(std::os::fd::AsFd::as_fd(&fd));
        }
    }
}

/// Wait (bounded) for `cond` on the keeper's counters.
fn keeper_until(
    d: &ProcessDaemon,
    what: &str,
    cond: impl Fn(&bpfnsd::keeper::Counters) -> bool,
) -> bpfnsd::keeper::Counters {
    let t = Instant::now();
    loop {
        if let Some(c) = d.keeper().filter(|c| cond(c)) {
            return c;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{what}: {:?}",
            d.keeper()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The orphan's trapped calls are answered from its view after a routine restart
/// (SIGTERM, then a new bpfnsd) and after a crash (SIGKILL); while no bpfnsd runs they wait
/// for the grace period and then fail with `EAGAIN` — never `ENOSYS`. When the orphan ends,
/// the keeper lets go of its listener.
/// Changes are made durable together, after the change lock (group commit): each must be so
/// before it is answered. bpfnsd is killed right after each answer, before any later change
/// could make it durable in passing, and must come back with it.
#[test]
fn a_change_is_durable_once_answered_even_if_bpfnsd_dies_right_after() {
    require_kernel!();
    let mut d = ProcessDaemon::start("ack-kill");
    let crash = |d: &mut ProcessDaemon| {
        d.kill();
        d.spawn().unwrap();
    };
    for round in 0..3 {
        let kept = format!("/ak{round}");
        let gone = format!("/akd{round}");
        d.client().ns_create(&gone).unwrap();
        d.client().ns_create(&kept).unwrap();
        crash(&mut d);
        assert!(
            d.client().ns_show(&kept).is_ok(),
            "{kept}'s creation was lost"
        );
        d.client()
            .ns_set_quota(&kept, Some(7), bpfns_model::quota::KindLimits::NONE)
            .unwrap();
        crash(&mut d);
        assert_eq!(
            d.client().ns_show(&kept).unwrap().max_objects,
            Some(7),
            "{kept}'s new limit was lost"
        );
        d.client().ns_delete(&gone).unwrap();
        crash(&mut d);
        assert!(
            d.client().ns_show(&gone).is_err(),
            "{gone}'s deletion was lost"
        );
    }
}

#[test]
fn an_orphan_of_a_member_stays_supervised_across_restarts_and_crashes() {
    require_kernel!();
    let mut d = ProcessDaemon::start("orphan");
    d.client().ns_create("/oa").unwrap();
    let mut holder = bpfns_tests::Helper::spawn(&["create", "map"]);
    holder.go();
    let foreign: u32 = holder.expect("id").parse().unwrap();
    let mut o = Orphan::start(&d, "/oa", foreign);
    o.served(foreign, "with the bpfnsd that started it");
    assert_eq!(
        keeper_until(&d, "the keeper holds it", |c| c.held == 1).held,
        1
    );

    d.terminate();
    d.spawn().unwrap();
    o.served(foreign, "after a routine restart (SIGTERM)");
    d.kill();
    d.spawn().unwrap();
    o.served(foreign, "after a crash (SIGKILL)");

    // No bpfnsd at all: a call waits out the grace period, then EAGAIN, and so do the next.
    d.kill();
    let t = Instant::now();
    let p = o.probe();
    let waited = t.elapsed();
    assert_eq!(p.walk, Err(11), "{p:?}");
    assert_eq!(p.own, "errno:11", "{p:?}");
    assert_eq!(p.foreign, format!("{foreign}:errno:11"), "{p:?}");
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(10),
        "the first call waited {waited:?} (grace: 2 s)"
    );
    let c = d.keeper().unwrap();
    assert!(c.refused >= 3, "{c:?}");
    d.spawn().unwrap();
    o.served(foreign, "when bpfnsd is back");
    let st = d.client().status().unwrap();
    assert_eq!((st.supervised_listeners, st.kept_listeners), (1, 1));

    drop(o);
    keeper_until(&d, "the keeper lets go once the orphan is gone", |c| {
        c.held == 0
    });
    let t = Instant::now();
    while d.client().status().unwrap().supervised_listeners != 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "bpfnsd still serves it"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A keeper killed while bpfnsd runs is replaced by a new one holding every listener, and
/// a later bpfnsd crash still finds them there.
#[test]
fn a_killed_keeper_is_replaced_and_a_later_restart_finds_the_listeners() {
    require_kernel!();
    let mut d = ProcessDaemon::start("keeper-kill");
    d.client().ns_create("/ob").unwrap();
    let mut holder = bpfns_tests::Helper::spawn(&["create", "map"]);
    holder.go();
    let foreign: u32 = holder.expect("id").parse().unwrap();
    let mut o = Orphan::start(&d, "/ob", foreign);
    let first = keeper_until(&d, "the keeper holds it", |c| c.held == 1);
    kill_pid(first.pid as i32);
    let t = Instant::now();
    let second = keeper_until(&d, "a new keeper holds it", |c| {
        c.pid != first.pid && c.held == 1
    });
    eprintln!("a new keeper (pid {}) after {:?}", second.pid, t.elapsed());
    o.served(foreign, "after the keeper was killed");
    let st = d.client().status().unwrap();
    assert_eq!(st.kept_listeners, 1);
    let restarts = st
        .counters
        .iter()
        .find(|(n, _)| n == "keeper_restarts")
        .map(|(_, v)| *v);
    assert_eq!(restarts, Some(1), "{:?}", st.counters);

    d.kill();
    d.spawn().unwrap();
    o.served(foreign, "after bpfnsd crashed, from the second keeper");
    let st = d.client().status().unwrap();
    assert_eq!((st.supervised_listeners, st.kept_listeners), (1, 1));
    assert_eq!(d.keeper().unwrap().pid, second.pid);
}

/// SIGTERM (`systemctl stop`) ends bpfnsd cleanly: exit status 0, a line in its log, and the
/// next bpfnsd finds every namespace.
#[test]
fn sigterm_ends_bpfnsd_cleanly() {
    require_kernel!();
    let mut d = ProcessDaemon::start("sigterm");
    d.client().ns_create("/st").unwrap();
    let st = d.terminate().expect("bpfnsd was running");
    assert!(st.success(), "bpfnsd ended with {st} on SIGTERM");
    let log = std::fs::read_to_string(&d.log).unwrap();
    assert!(log.contains("shutting down (SIGTERM)"), "{log}");
    d.spawn().unwrap();
    assert!(d.client().ns_show("/st").is_ok());
}
