//! Helper actions for the crash-and-restart torture (`tests/torture.rs`).
//!
//! ```text
//!   daemon DIR PIN_ROOT    run bpfnsd (the library the binary runs) with its socket, state and
//!                          namespace bpffs under DIR and the kernel side at PIN_ROOT (other
//!                          settings from DIR/bpfnsd.toml if a test wrote one)
//!   torture-member PIN     as a namespace member until stdin's EOF: create array maps (one
//!                          pinned at PIN, the rest kept open; print made=ID each), and walk
//!                          and open every visible map over and over
//!   torture-prober FILE PATH  as a member of another namespace until stdin's EOF: open every map
//!                          id listed in FILE (one per line, rewritten by the test), walk map ids
//!                          looking for those, and BPF_OBJ_GET PATH; print escape=HOW:ID for any
//!                          success
//! ```
//!   load-clients SOCK NS N MS [mix|OP] [RATE]  N clients of bpfnsd, mixed requests (or only
//!                              OP: hello, get_fd, ...) for MS ms, back to back or each at RATE
//!                              requests/s (tests/load.rs)
//!   orphan MAP_ID...       start `orphan-child MAP_ID...` in the background (it inherits stdin
//!                          and stdout), print child=PID and exit at once, as
//!                          `sh -c '(...) & exit 0'` does
//!   orphan-child MAP_ID... try to create a map (own=ID | own=errno:E), then for each byte on
//!                          stdin, probe: walk the map ids and open its own map and each MAP_ID
//!                          by id; print `probe walk=IDS|errno:E own=RES foreign=ID:RES,...`
//!                          (RES: opened:ID | errno:E | none); end at EOF. With
//!                          BPFNS_ORPHAN_TRIGGER=DIR, probe when DIR/probe-N appears instead
//!                          (N = 1, 2, ...), and end when DIR/stop appears or DIR goes
//! Both members end with `calls=N ok=N eagain=N enosys=N other=N max_ms=N`: how their
//! trapped calls were answered, and the longest one took.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bpfns_model::ObjectKind;
use bpfns_sys::bpf as sysbpf;
use bpfns_sys::Errno;

use super::{fail, say};

/// The actions this module handles.
pub const ACTIONS: [&str; 6] = [
    "daemon",
    "torture-member",
    "torture-prober",
    "load-clients",
    "orphan",
    "orphan-child",
];

pub fn run(args: &[String]) {
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| fail("missing argument"))
    };
    match arg(0).as_str() {
        "daemon" => daemon(Path::new(&arg(1)), Path::new(&arg(2))),
        "torture-member" => member(Path::new(&arg(1))),
        "torture-prober" => prober(Path::new(&arg(1)), Path::new(&arg(2))),
        "load-clients" => load_clients(args),
        "orphan" => orphan(&args[1..]),
        "orphan-child" => orphan_child(&args[1..]),
        other => fail(&format!("unknown action {other}")),
    }
}

fn orphan(maps: &[String]) {
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(&e.to_string()));
    #[allow(clippy::zombie_processes)] // on purpose: init reaps it, as for `( ... ) &`
    let child = std::process::Command::new(exe)
        .arg("orphan-child")
        .args(maps)
        .spawn()
        .unwrap_or_else(|e| fail(&format!("starting the background child: {e}")));
    say(&format!("child={}", child.id()));
    // Exit without waiting: the child is left to init, as a shell's `( ... ) &` is.
}

fn orphan_child(maps: &[String]) {
    let res = |r: bpfns_sys::Result<std::os::fd::OwnedFd>| match r {
        Ok(fd) => match sysbpf::info::<sysbpf::bpf_map_info>(&fd) {
            Ok(i) => format!("opened:{}", i.id),
            Err(e) => format!("opened:?{}", e.errno.raw_os_error()),
        },
        Err(e) => format!("errno:{}", e.errno.raw_os_error()),
    };
    let own = sysbpf::map_create(BPF_MAP_TYPE_ARRAY, "orphan", 4, 8, 1);
    let own_id = match &own {
        Ok(fd) => {
            let id = sysbpf::info::<sysbpf::bpf_map_info>(fd)
                .map(|i| i.id)
                .unwrap_or(0);
            say(&format!("own={id}"));
            Some(id)
        }
        Err(e) => {
            say(&format!("own=errno:{}", e.errno.raw_os_error()));
            None
        }
    };
    let foreign: Vec<u32> = maps.iter().filter_map(|m| m.parse().ok()).collect();
    // Through wrappers that do not pass stdin's bytes on, files trigger the probes.
    let trigger = std::env::var_os("BPFNS_ORPHAN_TRIGGER").map(std::path::PathBuf::from);
    let mut stdin = std::io::stdin().lock();
    let mut b = [0u8; 1];
    let mut n = 0u32;
    let mut next = || -> bool {
        n += 1;
        match &trigger {
            None => matches!(stdin.read(&mut b), Ok(1)),
            Some(dir) => loop {
                if dir.join(format!("probe-{n}")).exists() {
                    return true;
                }
                if !dir.exists() || dir.join("stop").exists() {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            },
        }
    };
    while next() {
        let mut ids = Vec::new();
        let mut cur = 0;
        let walk = loop {
            match sysbpf::next_id(ObjectKind::Map, cur) {
                Ok(Some(id)) => {
                    ids.push(id.to_string());
                    cur = id;
                }
                Ok(None) => break ids.join(","),
                Err(e) => break format!("errno:{}", e.errno.raw_os_error()),
            }
        };
        let own = own_id.map_or("none".to_string(), |id| {
            res(sysbpf::fd_by_id(ObjectKind::Map, id))
        });
        let foreign: Vec<String> = foreign
            .iter()
            .map(|&id| format!("{id}:{}", res(sysbpf::fd_by_id(ObjectKind::Map, id))))
            .collect();
        say(&format!(
            "probe walk={walk} own={own} foreign={}",
            foreign.join(",")
        ));
    }
    drop(own);
}

fn daemon(dir: &Path, pin_root: &Path) {
    // bpfnsd's log, as the binary writes it (on stderr: the test's log file), in the format
    // the test asks for (`BPFNSD_LOG_FORMAT`: text, or json as `--log-format json`).
    bpfnsd::logging::init("info", bpfnsd::logging::LogFormat::from_env());
    // A test's own settings, if it wrote any (paths and the GC interval are the harness's).
    let base = match std::fs::read_to_string(dir.join("bpfnsd.toml")) {
        Ok(text) => {
            bpfnsd::Config::parse(&text).unwrap_or_else(|e| fail(&format!("bpfnsd.toml: {e}")))
        }
        Err(_) => bpfnsd::Config::default(),
    };
    // The keeper is this program (`--keeper`), bpfnsd's default.
    let config = bpfnsd::Config {
        socket: dir.join("bpfns.sock"),
        state_dir: dir.join("state"),
        pin_root: pin_root.to_path_buf(),
        ns_bpffs_dir: dir.join("ns"),
        seccomp_socket: dir.join("seccomp.sock"),
        root_bpffs: bpfns_tests::root_bpffs_of(&bpfns_kernel::PinLayout::new(pin_root)),
        gc_interval_secs: 1,
        ..base
    };
    if let Err(e) = std::fs::create_dir_all(&config.root_bpffs) {
        fail(&format!("creating {}: {e}", config.root_bpffs.display()));
    }
    if let Err(e) = bpfnsd::start::run(config, false, || say("ready=1")) {
        fail(&format!("bpfnsd: {e}"));
    }
}

/// How the trapped calls were answered.
#[derive(Default)]
struct Tally {
    calls: u64,
    ok: u64,
    eagain: u64,
    enosys: u64,
    other: u64,
    /// Opens that returned something else than the object asked for.
    wrong: u64,
    /// The "other" and wrong answers, the first few.
    others: Vec<String>,
    max: Duration,
}

impl Tally {
    fn time<T>(&mut self, f: impl FnOnce() -> bpfns_sys::Result<T>) -> Option<T> {
        let t = Instant::now();
        let r = f();
        self.max = self.max.max(t.elapsed());
        self.calls += 1;
        match r {
            Ok(v) => {
                self.ok += 1;
                Some(v)
            }
            Err(e) => {
                match e.errno {
                    Errno::AGAIN => self.eagain += 1,
                    Errno::NOSYS => self.enosys += 1,
                    _ => {
                        self.other += 1;
                        if self.others.len() < 8 {
                            self.others.push(e.to_string());
                        }
                    }
                }
                None
            }
        }
    }

    fn report(&self) {
        say(&format!(
            "calls={} ok={} eagain={} enosys={} other={} wrong={} max_ms={}",
            self.calls,
            self.ok,
            self.eagain,
            self.enosys,
            self.other,
            self.wrong,
            self.max.as_millis(),
        ));
        if !self.others.is_empty() {
            say(&format!("other_errors={}", self.others.join("; ")));
        }
    }
}

/// Set when stdin reaches EOF.
fn stop_on_eof() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        s.store(true, Ordering::SeqCst);
    });
    stop
}

/// A walk of the map ids through trapped GET_NEXT_ID calls; `None` if a call failed.
fn walk(t: &mut Tally) -> Option<Vec<u32>> {
    let mut ids = Vec::new();
    let mut cur = 0;
    loop {
        match t.time(|| sysbpf::next_id(ObjectKind::Map, cur))? {
            Some(id) => {
                ids.push(id);
                cur = id;
            }
            None => return Some(ids),
        }
    }
}

const MAX_MAPS: usize = 400;

fn member(pin: &Path) {
    let _ = bpfns_sys::process::raise_nofile_limit(4096);
    // libbpf probes with a program before naming a map: no perfmon power, which a namespace
    // denying tracing stops.
    super::drop_perfmon();
    let stop = stop_on_eof();
    let mut t = Tally::default();
    let mut maps = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        if maps.len() < MAX_MAPS {
            // Timed and tallied like any trapped call (bpfnsd makes members' maps where BPF
            // LSM does not run): EAGAIN while bpfnsd is away.
            // (Other answers are counted by the tally, which the test judges.)
            if let Some(fd) = t.time(|| sysbpf::map_create(BPF_MAP_TYPE_ARRAY, "torture", 4, 8, 1))
            {
                if let Ok(info) = sysbpf::info::<sysbpf::bpf_map_info>(&fd) {
                    if maps.is_empty() {
                        if let Err(e) = sysbpf::obj_pin(&fd, pin) {
                            fail(&format!("pinning {}: {e}", pin.display()));
                        }
                    }
                    say(&format!("made={}", info.id));
                }
                maps.push(fd);
            }
        }
        if let Some(ids) = walk(&mut t) {
            for id in ids.into_iter().rev().take(20) {
                // An answer is right only if it is the map asked for.
                if let Some(fd) = t.time(|| sysbpf::fd_by_id(ObjectKind::Map, id)) {
                    match sysbpf::info::<sysbpf::bpf_map_info>(&fd) {
                        Ok(i) if i.id == id => {}
                        got => {
                            t.wrong += 1;
                            if t.others.len() < 8 {
                                let got = got.map(|i| format!("map {}", i.id));
                                t.others.push(format!("open of map {id} gave {got:?}"));
                            }
                        }
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    t.report();
}

const BPF_MAP_TYPE_ARRAY: u32 = 2;

fn prober(targets: &Path, pin: &Path) {
    let stop = stop_on_eof();
    let mut t = Tally::default();
    while !stop.load(Ordering::SeqCst) {
        let foreign: HashSet<u32> = std::fs::read_to_string(targets)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        for &id in &foreign {
            if t.time(|| sysbpf::fd_by_id(ObjectKind::Map, id)).is_some() {
                say(&format!("escape=open:{id}"));
            }
        }
        if let Some(ids) = walk(&mut t) {
            for id in ids.into_iter().filter(|i| foreign.contains(i)) {
                say(&format!("escape=walk:{id}"));
            }
        }
        if t.time(|| sysbpf::obj_get(pin)).is_some() {
            say(&format!("escape=obj_get:{}", pin.display()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    t.report();
}

/// The mix of `load-clients`: (last pick of 0..100 that chooses it, name).
const OPS: [(u64, &str); 8] = [
    (24, "hello"),
    (39, "get_fd"),
    (54, "show"),
    (69, "ns_show"),
    (79, "ns_list"),
    (89, "status"),
    (97, "list"),
    (99, "ns_create+delete"),
];

/// How long a load client waits for one answer before it counts an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// `load-clients SOCK NS N MS`: N client threads, each with its own connection to bpfnsd,
/// all connected before any sends, then mixed requests back to back for MS milliseconds.
/// Prints `clients=N requests=R errors=E secs=S p50_us=.. p99_us=.. max_us=..`; the first
/// error as `first_error=...`.
pub fn load_clients(args: &[String]) {
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| fail("missing argument"))
    };
    let socket = std::path::PathBuf::from(arg(1));
    let ns = arg(2);
    let n: usize = arg(3).parse().unwrap_or_else(|_| fail("N"));
    let ms: u64 = arg(4).parse().unwrap_or_else(|_| fail("MS"));
    // Only `hello` (answered on bpfnsd's event loop, no work): the floor of these clients on
    // this machine.
    // Or only one kind of request (what it costs bpfnsd): its pick, the first of its range.
    let only: Option<u64> = match args.get(5).map(String::as_str) {
        None | Some("mix") => None,
        Some(name) => match OPS.iter().position(|&(_, n)| n == name) {
            Some(0) => Some(0),
            Some(i) => Some(OPS[i - 1].0 + 1),
            None => fail(&format!(
                "unknown mix {name:?} (mix, or one of {})",
                OPS.map(|(_, n)| n).join(", ")
            )),
        },
    };
    // Paced (open loop): each client sends at RATE requests/s, and a request's latency runs
    // from when it was due, so that a late answer also delays what the client measures next
    // (no coordinated omission). 0 or nothing: back to back (closed loop).
    let rate: f64 = args
        .get(6)
        .map(|r| r.parse().unwrap_or_else(|_| fail("RATE")))
        .unwrap_or(0.0);
    let every = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let _ = bpfns_sys::process::raise_nofile_limit(n as u64 * 2 + 256);
    // A map of our own namespace, for show and get_fd (libbpf probes with a program first:
    // without perfmon power, which a namespace denying tracing stops).
    let map = super::without_perfmon(|| sysbpf::map_create(BPF_MAP_TYPE_ARRAY, "load", 4, 8, 1))
        .unwrap_or_else(|e| fail(&format!("creating a map: {e}")));
    let map_id = sysbpf::info::<sysbpf::bpf_map_info>(&map)
        .map(|i| i.id)
        .unwrap_or_else(|e| fail(&e.to_string()));
    let ready = Arc::new(std::sync::Barrier::new(n + 1));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let threads: Vec<_> = (0..n)
        .map(|t| {
            let (socket, ns, ready, first_error) = (
                socket.clone(),
                ns.clone(),
                ready.clone(),
                first_error.clone(),
            );
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let c = bpfns_client::Client::connect(&socket);
                    ready.wait();
                    // A stuck bpfnsd fails the round instead of hanging it.
                    let c = c.and_then(|mut c| {
                        c.set_timeout(Some(REQUEST_TIMEOUT))
                            .map_err(|e| bpfns_client::ClientError::Protocol(e.to_string()))?;
                        Ok(c)
                    });
                    let mut c = match c {
                        Ok(c) => c,
                        Err(e) => {
                            first_error
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get_or_insert(e.to_string());
                            return (Vec::new(), 1u64);
                        }
                    };
                    let deadline = Instant::now() + Duration::from_millis(ms);
                    let mut lat: Vec<(u8, u32)> = Vec::with_capacity(4096);
                    let mut errors = 0u64;
                    let mut rng = (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    let mut made = 0u64;
                    // Paced clients start spread over one interval, not all at once.
                    let mut due = Instant::now()
                        + every.map_or(Duration::ZERO, |e| {
                            e.mul_f64((t as f64 * 0.618_034).fract())
                        });
                    while Instant::now() < deadline {
                        let now = Instant::now();
                        if every.is_some() && due > now {
                            std::thread::sleep(due - now);
                        }
                        rng = rng
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let pick = only.unwrap_or((rng >> 33) % 100);
                        let op = OPS.iter().position(|&(upto, _)| pick <= upto).unwrap_or(0);
                        let start = if every.is_some() { due } else { Instant::now() };
                        if let Some(every) = every {
                            due += every;
                        }
                        let r: Result<(), bpfns_client::ClientError> = match pick {
                            0..=24 => c.hello().map(|_| ()),
                            25..=39 => c.get_fd(ObjectKind::Map, map_id).map(|_| ()),
                            40..=54 => c.show(ObjectKind::Map, map_id).map(|_| ()),
                            55..=69 => c.ns_show(&ns).map(|_| ()),
                            70..=79 => c.ns_list().map(|_| ()),
                            80..=89 => c.status().map(|_| ()),
                            90..=97 => c.list(ObjectKind::Prog).map(|_| ()),
                            _ => {
                                // A namespace change: a database write and the kernel table.
                                made += 1;
                                let p = format!(
                                    "{}/l{}-{t}-{made}",
                                    ns.trim_end_matches('/'),
                                    std::process::id()
                                );
                                c.ns_create(&p).and_then(|_| c.ns_delete(&p)).map(|_| ())
                            }
                        };
                        lat.push((op as u8, start.elapsed().as_micros() as u32));
                        if let Err(e) = r {
                            errors += 1;
                            let took = start.elapsed();
                            let what = if took >= REQUEST_TIMEOUT {
                                format!("no answer within {REQUEST_TIMEOUT:?} (bpfnsd stuck?): {e}")
                            } else {
                                e.to_string()
                            };
                            first_error
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get_or_insert(what);
                            if took >= REQUEST_TIMEOUT {
                                // The connection is out of step now.
                                break;
                            }
                        }
                    }
                    (lat, errors)
                })
                .unwrap_or_else(|e| fail(&format!("thread {t}: {e}")))
        })
        .collect();
    ready.wait();
    let started = Instant::now();
    let mut all = Vec::new();
    let mut by_op = vec![Vec::new(); OPS.len()];
    let mut errors = 0;
    for t in threads {
        let (lat, e) = t.join().unwrap_or_default();
        for (op, us) in lat {
            all.push(us);
            by_op[op as usize].push(us);
        }
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    let q = |v: &mut Vec<u32>, p: f64| {
        v.sort_unstable();
        v.get(((v.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    say(&format!(
        "clients={n} requests={} errors={errors} secs={secs:.2} p50_us={} p99_us={} max_us={}",
        all.len(),
        q(&mut all, 0.5),
        q(&mut all, 0.99),
        all.last().copied().unwrap_or(0)
    ));
    for (i, v) in by_op.iter_mut().enumerate() {
        say(&format!(
            "op={} n={} p50_us={} p99_us={}",
            OPS[i].1,
            v.len(),
            q(v, 0.5),
            q(v, 0.99)
        ));
    }
    if let Some(e) = first_error.lock().unwrap_or_else(|e| e.into_inner()).take() {
        say(&format!("first_error={e}"));
    }
    drop(map);
}
