//! CPU accounting from `/proc`: how much CPU the daemon and the benchmark's own processes
//! used over a window, and how much went to everything else on the machine (other work on a
//! shared host), so that a result can be judged against what else was running.

use serde::{Deserialize, Serialize};

use bpfns_sys::procfs::{cpu_ticks, machine_ticks as machine, USER_HZ as HZ};

/// utime + stime of a process (all its threads), plus those of its reaped children when
/// `children` is set.
fn process(pid: u32, children: bool) -> u64 {
    i32::try_from(pid).map_or(0, |p| cpu_ticks(p, children))
}

/// A snapshot to take a difference against.
#[derive(Debug, Clone)]
pub struct Meter {
    at: std::time::Instant,
    busy: u64,
    steal: u64,
    /// Per watched process: (pid, include reaped children, ticks).
    procs: Vec<(u32, bool, u64)>,
}

/// CPU used over a window, in CPUs (1.0 = one CPU fully busy).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Usage {
    pub seconds: f64,
    /// Everything on the machine.
    pub machine: f64,
    /// The watched processes, in the order given.
    pub watched: Vec<f64>,
    /// Everything else: other work on the machine.
    pub other: f64,
    /// Time the hypervisor ran something else on our CPUs (`steal`).
    pub steal: f64,
}

impl Meter {
    /// Start measuring `watched`: (pid, with its reaped children) pairs.
    pub fn start(watched: &[(u32, bool)]) -> Self {
        let (busy, steal) = machine();
        Self {
            at: std::time::Instant::now(),
            busy,
            steal,
            procs: watched
                .iter()
                .map(|&(p, c)| (p, c, process(p, c)))
                .collect(),
        }
    }

    /// Usage since [`start`](Self::start).
    pub fn stop(&self) -> Usage {
        let (busy, steal) = machine();
        let secs = self.at.elapsed().as_secs_f64().max(1e-9);
        let cpus = |ticks: u64| ticks as f64 / HZ / secs;
        let watched: Vec<f64> = self
            .procs
            .iter()
            .map(|&(p, c, before)| cpus(process(p, c).saturating_sub(before)))
            .collect();
        let machine = cpus(busy.saturating_sub(self.busy));
        let ours: f64 = watched.iter().sum();
        Usage {
            seconds: secs,
            machine,
            watched,
            other: (machine - ours).max(0.0),
            steal: cpus(steal.saturating_sub(self.steal)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_the_machine() {
        let m = Meter::start(&[(std::process::id(), true), (0, false)]);
        let u = m.stop();
        assert_eq!(u.watched.len(), 2);
        // pid 0 has no /proc entry: it counts as nothing.
        assert_eq!(u.watched[1], 0.0);
        assert!(u.machine >= 0.0 && u.other >= 0.0 && u.steal >= 0.0);
        assert!(machine().0 > 0, "/proc/stat has busy time");
    }
}
