//! `bpfns top`: which namespace's BPF programs use the CPU, live (in the manner of bpftop),
//! or one sample with `-j`.
//!
//! bpfnsd turns the kernel's run-time statistics on for as long as this process holds the fd
//! it returns (`BPF_ENABLE_STATS`; the kernel turns them off when the last holder closes it,
//! also when this process is killed) and answers the programs the caller may see with their
//! `run_time_ns` and `run_cnt`. Two snapshots an interval apart give each program's share of
//! one CPU and its runs per second; namespaces sum their programs.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bpfns_proto::ObjectInfo;
use serde::Serialize;

use crate::output::Render;

/// One program over one interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgRate {
    pub id: u32,
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub namespace: String,
    /// Share of one CPU spent running it, in percent.
    pub cpu_percent: f64,
    /// Nanoseconds it ran per second.
    pub run_time_ns_per_s: f64,
    /// Runs per second.
    pub runs_per_s: f64,
    /// Totals since statistics were on.
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// One namespace's programs over one interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NsRate {
    pub namespace: String,
    pub programs: usize,
    pub cpu_percent: f64,
    pub runs_per_s: f64,
}

/// One sample: programs and namespaces, busiest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub interval_ms: u64,
    pub programs: Vec<ProgRate>,
    pub namespaces: Vec<NsRate>,
}

/// The sample between two snapshots `elapsed` apart. Programs in `after` only (loaded
/// meanwhile) count from zero; programs gone meanwhile are left out.
pub fn sample(before: &[ObjectInfo], after: &[ObjectInfo], elapsed: Duration) -> Sample {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let old: BTreeMap<u32, (u64, u64)> = before.iter().map(|p| (p.id, stats(p))).collect();
    let mut programs: Vec<ProgRate> = after
        .iter()
        .map(|p| {
            let (t1, c1) = stats(p);
            let (t0, c0) = old.get(&p.id).copied().unwrap_or((0, 0));
            let dt = t1.saturating_sub(t0) as f64;
            let dc = c1.saturating_sub(c0) as f64;
            ProgRate {
                id: p.id,
                name: p.name.clone(),
                type_name: p.type_name.clone(),
                namespace: p.namespace.clone(),
                cpu_percent: dt / secs / 1e9 * 100.0,
                run_time_ns_per_s: dt / secs,
                runs_per_s: dc / secs,
                run_time_ns: t1,
                run_cnt: c1,
            }
        })
        .collect();
    programs.sort_by(|a, b| {
        b.cpu_percent
            .total_cmp(&a.cpu_percent)
            .then(b.runs_per_s.total_cmp(&a.runs_per_s))
            .then(a.id.cmp(&b.id))
    });
    let mut by_ns: BTreeMap<&str, NsRate> = BTreeMap::new();
    for p in &programs {
        let e = by_ns.entry(&p.namespace).or_insert_with(|| NsRate {
            namespace: p.namespace.clone(),
            programs: 0,
            cpu_percent: 0.0,
            runs_per_s: 0.0,
        });
        e.programs += 1;
        e.cpu_percent += p.cpu_percent;
        e.runs_per_s += p.runs_per_s;
    }
    let mut namespaces: Vec<NsRate> = by_ns.into_values().collect();
    namespaces.sort_by(|a, b| {
        b.cpu_percent
            .total_cmp(&a.cpu_percent)
            .then(a.namespace.cmp(&b.namespace))
    });
    Sample {
        interval_ms: elapsed.as_millis() as u64,
        programs,
        namespaces,
    }
}

fn stats(p: &ObjectInfo) -> (u64, u64) {
    (
        p.details.run_time_ns.unwrap_or(0),
        p.details.run_cnt.unwrap_or(0),
    )
}

impl Render for Sample {
    fn render_text(&self) -> String {
        let mut s = format!(
            "{:<12} {:>8} {:>12}  {:>5}\n",
            "NAMESPACE", "CPU %", "RUNS/S", "PROGS"
        );
        for n in &self.namespaces {
            s.push_str(&format!(
                "{:<12} {:>8.2} {:>12.0}  {:>5}\n",
                n.namespace, n.cpu_percent, n.runs_per_s, n.programs
            ));
        }
        s.push_str(&format!(
            "\n{:>7} {:<16} {:<16} {:<12} {:>8} {:>12} {:>10}\n",
            "ID", "NAME", "TYPE", "NAMESPACE", "CPU %", "RUNS/S", "NS/RUN"
        ));
        for p in &self.programs {
            let per_run = if p.runs_per_s > 0.0 {
                format!("{:.0}", p.run_time_ns_per_s / p.runs_per_s)
            } else {
                "-".into()
            };
            s.push_str(&format!(
                "{:>7} {:<16} {:<16} {:<12} {:>8.2} {:>12.0} {:>10}\n",
                p.id,
                trunc(&p.name, 16),
                trunc(&p.type_name, 16),
                trunc(&p.namespace, 12),
                p.cpu_percent,
                p.runs_per_s,
                per_run
            ));
        }
        s
    }
}

fn trunc(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}

/// What `bpfns top` is asked for.
#[derive(Debug, Clone)]
pub struct TopArgs {
    pub interval: Duration,
    pub namespace: Option<String>,
    pub recursive: bool,
}

/// Statistics on, one snapshot after another.
struct Sampler {
    client: bpfns_client::Client,
    args: TopArgs,
    _stats: std::os::fd::OwnedFd,
    last: (Instant, Vec<ObjectInfo>),
}

impl Sampler {
    fn start(mut client: bpfns_client::Client, args: TopArgs) -> Result<Self> {
        let stats = client
            .enable_stats()
            .context("asking bpfnsd to turn BPF run-time statistics on")?;
        let first = Self::snapshot(&mut client, &args)?;
        Ok(Self {
            client,
            args,
            _stats: stats,
            last: (Instant::now(), first),
        })
    }

    fn snapshot(c: &mut bpfns_client::Client, a: &TopArgs) -> Result<Vec<ObjectInfo>> {
        Ok(c.prog_stats(a.namespace.as_deref(), a.recursive)?)
    }

    fn next(&mut self) -> Result<Sample> {
        let now = Self::snapshot(&mut self.client, &self.args)?;
        let at = Instant::now();
        let s = sample(&self.last.1, &now, at - self.last.0);
        self.last = (at, now);
        Ok(s)
    }
}

/// `bpfns top -j` (or with stdout not a terminal): one sample over one interval. Says on
/// stderr that statistics are on, as the live view does on screen.
pub fn once(client: bpfns_client::Client, args: TopArgs) -> Result<Sample> {
    let interval = args.interval;
    let mut s = Sampler::start(client, args)?;
    eprintln!("{NOTICE}");
    std::thread::sleep(interval);
    s.next()
}

/// The notice every view starts with.
const NOTICE: &str = "BPF run-time statistics are on while bpfns top runs (BPF_ENABLE_STATS: \
                      two clock reads per program run); they go off when it ends.";

/// `bpfns top`: the live view, redrawn every interval, until `q`, Esc or Ctrl-C.
pub fn live(client: bpfns_client::Client, args: TopArgs) -> Result<()> {
    use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyModifiers};
    use crossterm::{cursor, execute, terminal};

    let interval = args.interval;
    let scope = match &args.namespace {
        Some(ns) if args.recursive => format!("namespace {ns} and below"),
        Some(ns) => format!("namespace {ns}"),
        None => "every program you may see".into(),
    };
    let mut sampler = Sampler::start(client, args)?;
    let mut out = std::io::stdout();
    terminal::enable_raw_mode().context("the live view needs a terminal (or use -j)")?;
    // Restored however this ends (an error, a panic unwinding through here).
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = crossterm::execute!(
                std::io::stdout(),
                crossterm::cursor::Show,
                crossterm::terminal::LeaveAlternateScreen
            );
            let _ = crossterm::terminal::disable_raw_mode();
        }
    }
    let _restore = Restore;
    execute!(out, terminal::EnterAlternateScreen, cursor::Hide)?;
    let mut paused = false;
    let mut sample: Option<Sample> = None;
    let mut next_at = Instant::now() + interval;
    loop {
        let (_, rows) = terminal::size().unwrap_or((80, 24));
        let mut text = format!(
            "bpfns top — {scope}, every {:.1} s{}  (q: quit, space: pause)\r\n{NOTICE}\r\n\r\n",
            interval.as_secs_f64(),
            if paused { " — paused" } else { "" }
        );
        match &sample {
            Some(s) => text.push_str(&s.render_text().replace('\n', "\r\n")),
            None => text.push_str("sampling…\r\n"),
        }
        // No line break after the last row: the terminal would scroll the first one away.
        let shown = text
            .split("\r\n")
            .take(usize::from(rows.max(1)))
            .collect::<Vec<_>>()
            .join("\r\n");
        execute!(
            out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        )?;
        out.write_all(shown.as_bytes())?;
        out.flush()?;
        let wait = next_at.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            if let Event::Key(KeyEvent {
                code, modifiers, ..
            }) = event::read()?
            {
                match code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => {
                        return Ok(())
                    }
                    KeyCode::Char(' ') => paused = !paused,
                    _ => {}
                }
            }
            continue;
        }
        next_at = Instant::now() + interval;
        let s = sampler.next()?;
        if !paused {
            sample = Some(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(id: u32, ns: &str, t: u64, c: u64) -> ObjectInfo {
        ObjectInfo {
            id,
            kind: bpfns_model::ObjectKind::Prog,
            type_name: "socket_filter".into(),
            name: format!("p{id}"),
            namespace: ns.into(),
            ns_id: bpfns_model::NsId(0),
            prog_id: None,
            details: bpfns_proto::ObjectDetails {
                run_time_ns: Some(t),
                run_cnt: Some(c),
                ..Default::default()
            },
        }
    }

    #[test]
    fn rates_per_program_and_namespace_busiest_first() {
        let before = [
            prog(1, "/a", 1_000, 10),
            prog(2, "/b", 0, 0),
            prog(9, "/a", 5, 1),
        ];
        let after = [
            prog(1, "/a", 1_000 + 100_000_000, 1010),
            prog(2, "/b", 300_000_000, 3000),
            prog(3, "/a", 50_000_000, 50),
        ];
        let s = sample(&before, &after, Duration::from_secs(1));
        let ids: Vec<u32> = s.programs.iter().map(|p| p.id).collect();
        assert_eq!(ids, [2, 1, 3], "busiest first; 9 is gone");
        assert!((s.programs[0].cpu_percent - 30.0).abs() < 1e-9);
        assert!((s.programs[1].runs_per_s - 1000.0).abs() < 1e-9);
        // New programs count from zero.
        assert!((s.programs[2].cpu_percent - 5.0).abs() < 1e-9);
        let ns: Vec<(&str, usize)> = s
            .namespaces
            .iter()
            .map(|n| (n.namespace.as_str(), n.programs))
            .collect();
        assert_eq!(ns, [("/b", 1), ("/a", 2)]);
        assert!((s.namespaces[1].cpu_percent - 15.0).abs() < 1e-9);
        // Counters that went backwards (a program replaced under the same id) count nothing.
        let s = sample(&after, &before, Duration::from_secs(1));
        assert!(s
            .programs
            .iter()
            .filter(|p| p.id != 9)
            .all(|p| p.cpu_percent == 0.0 && p.runs_per_s == 0.0));
    }
}
