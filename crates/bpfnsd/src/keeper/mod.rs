//! The listener keeper: holds every member's seccomp listener for as long as a task is under
//! the filter, across bpfnsd restarts and crashes.
//!
//! A member's trapped `bpf()` calls go to the listener of its filter. If every holder of that
//! listener closes it, the kernel fails the calls with `ENOSYS` for good, and — worse — the
//! filter chain has no listener any more, so the member could install a filter with a
//! listener of its own and let its calls through. bpfnsd therefore never holds a member's
//! listener alone: a second process, the keeper, holds a copy of each.
//!
//! - **What it is.** bpfnsd's own binary started with `--keeper SOCKET PIN_ROOT GRACE_MS`
//!   ([`process::main`]): one thread, no panics on its paths (lint-enforced), no allocation
//!   that grows with anything but the listeners it holds. bpfnsd starts it detached (its own
//!   process group) when none answers at `SOCKET` (`<state_dir>/keeper.sock`, mode 0600 in
//!   bpfnsd's state directory, which member setup hides from members); it outlives bpfnsd.
//! - **Who may talk to it.** Only a host administrator (`CAP_SYS_ADMIN` in the initial user
//!   namespace) whose task is in the root bpfns namespace, identified like bpfnsd identifies
//!   its callers (the peer's pidfd, its task tag, `/proc`). Anyone else is refused at once.
//! - **What bpfnsd does.** At start, it connects (starting a keeper if none answers),
//!   *attaches* (tells the keeper it serves the listeners now), and withdraws a copy of every
//!   listener held, with the supervised pid, uid, namespace and in-flight record, and serves
//!   them. For each new `supervise` it deposits the listener before answering. If the keeper
//!   dies, bpfnsd starts another and deposits every listener it serves again.
//! - **While no bpfnsd is attached** (its connection closed: it exited, crashed or was
//!   killed), the keeper answers what the dead bpfnsd left — the call it had taken (the id in
//!   the in-flight record, and the next few) fails with `EAGAIN` — and holds new trapped calls
//!   for the grace period (`outage_grace_ms`), waiting for the next bpfnsd; after that they
//!   fail with `EAGAIN`, as do the calls that follow until a bpfnsd attaches. It never lets a
//!   call through.
//! - **When it lets go.** A listener reports `POLLHUP` once no task is left under its filter:
//!   the keeper drops it. With nothing held and nobody connected for [`IDLE_EXIT`], the keeper
//!   exits.
//!
//! The wire format ([`Msg`]): `SOCK_SEQPACKET`, one fixed-size message per request and per
//! reply, file descriptors as `SCM_RIGHTS`.

pub mod link;
pub mod process;

use std::time::Duration;

pub use link::{KeeperConfig, KeeperError, KeeperStats, Link};

/// The keeper's socket in bpfnsd's state directory.
pub const SOCKET_NAME: &str = "keeper.sock";

/// The command-line flag that selects keeper mode (the first argument).
pub const FLAG: &str = "--keeper";

/// Version of the keeper protocol. `Hello`, `Next` and `Retire` keep their meaning across
/// versions, so that a bpfnsd can take the listeners from a keeper of another version and
/// replace it.
pub const VERSION: u32 = 1;

/// A keeper with nothing to hold and nobody connected exits after this long.
pub const IDLE_EXIT: Duration = Duration::from_secs(10);

/// How many notification ids after the recorded one are checked for calls a dead bpfnsd had
/// taken but not recorded yet (ids of one filter are consecutive).
pub const ABANDONED_SPAN: u64 = 8;

const MAGIC: u32 = 0x4b50_4e42;
/// Bytes of one message.
pub const MSG_LEN: usize = 64;

/// Operations (requests) and replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
    /// → `Ok { pid, instance, held }`.
    Hello = 1,
    /// "I am bpfnsd and serve the listeners now": the keeper stops answering. → `Ok`.
    Attach = 2,
    /// `{ pid, uid, ns }` + fds `[listener, in-flight memfd]` → `Ok { key }`.
    Deposit = 3,
    /// `{ after }` → `Entry { pid, uid, ns, key }` + fds `[listener, memfd]` for the held
    /// listener with the smallest key above `after`, or `End`.
    Next = 4,
    /// → `Ok { held, outages, abandoned, refused, dropped, pid }`.
    Stats = 5,
    /// → `Ok`, then the keeper exits (closing what it holds).
    Retire = 6,
    Ok = 64,
    Entry = 65,
    End = 66,
    /// `{ errno }`.
    Err = 67,
}

impl Op {
    fn from_u32(v: u32) -> Option<Op> {
        Some(match v {
            1 => Op::Hello,
            2 => Op::Attach,
            3 => Op::Deposit,
            4 => Op::Next,
            5 => Op::Stats,
            6 => Op::Retire,
            64 => Op::Ok,
            65 => Op::Entry,
            66 => Op::End,
            67 => Op::Err,
            _ => return None,
        })
    }
}

/// One message: a header (magic, the sender's protocol version, the op) and six numbers whose
/// meaning depends on the op (see [`Op`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg {
    pub version: u32,
    pub op: Op,
    pub a: [u64; 6],
}

impl Msg {
    pub fn new(op: Op, a: [u64; 6]) -> Self {
        Self {
            version: VERSION,
            op,
            a,
        }
    }

    pub fn encode(&self) -> [u8; MSG_LEN] {
        let mut b = [0u8; MSG_LEN];
        let words = [MAGIC, self.version, self.op as u32, 0];
        for (chunk, w) in b.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        for (chunk, v) in b.chunks_exact_mut(8).skip(2).zip(self.a) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// `None` for anything but a whole, well-formed message.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != MSG_LEN {
            return None;
        }
        let word = |i: usize| -> Option<u32> {
            let s = b.get(i * 4..i * 4 + 4)?;
            Some(u32::from_le_bytes(s.try_into().ok()?))
        };
        if word(0)? != MAGIC {
            return None;
        }
        let version = word(1)?;
        let op = Op::from_u32(word(2)?)?;
        let mut a = [0u64; 6];
        for (v, chunk) in a.iter_mut().zip(b.chunks_exact(8).skip(2)) {
            *v = u64::from_le_bytes(chunk.try_into().ok()?);
        }
        Some(Self { version, op, a })
    }
}

/// The keeper's counters (reply to [`Op::Stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Listeners held now.
    pub held: u64,
    /// Times the attached bpfnsd went away.
    pub outages: u64,
    /// Calls a dead bpfnsd had taken, answered `EAGAIN`.
    pub abandoned: u64,
    /// Calls answered `EAGAIN` because no bpfnsd attached within the grace period.
    pub refused: u64,
    /// Listeners let go because no task was left under their filter.
    pub dropped: u64,
    /// The keeper's process id.
    pub pid: u64,
}

impl Counters {
    fn to_words(self) -> [u64; 6] {
        [
            self.held,
            self.outages,
            self.abandoned,
            self.refused,
            self.dropped,
            self.pid,
        ]
    }

    fn from_words(a: [u64; 6]) -> Self {
        let [held, outages, abandoned, refused, dropped, pid] = a;
        Self {
            held,
            outages,
            abandoned,
            refused,
            dropped,
            pid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_junk_is_refused() {
        let m = Msg::new(Op::Deposit, [1, 2, 3, 4, 5, u64::MAX]);
        assert_eq!(Msg::decode(&m.encode()), Some(m));
        let mut b = m.encode();
        b[0] ^= 1;
        assert_eq!(Msg::decode(&b), None, "bad magic");
        let mut b = m.encode();
        b[8] = 99;
        assert_eq!(Msg::decode(&b), None, "unknown op");
        assert_eq!(Msg::decode(&m.encode()[..63]), None, "short");
        assert_eq!(Msg::decode(&[]), None);
        let c = Counters {
            held: 1,
            outages: 2,
            abandoned: 3,
            refused: 4,
            dropped: 5,
            pid: 6,
        };
        assert_eq!(Counters::from_words(c.to_words()), c);
    }
}
