//! The line protocol between the controller and its worker process: one JSON object per line
//! on the worker's stdin (requests) and stdout (replies).

use serde::{Deserialize, Serialize};

/// One measured operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `BPF_MAP_CREATE` of a one-entry array map, then close.
    MapCreate,
    /// `BPF_PROG_LOAD` of `r0 = 0; exit` as a socket filter, then close.
    ProgLoad,
    /// `fork()`, the child `_exit(0)`s at once, the parent waits for it.
    ForkExit,
    /// `gettid()`, a syscall that does nothing: what every other syscall of every process
    /// pays (timed in batches of [`NULL_SYSCALL_BATCH`]).
    NullSyscall,
}

/// Null syscalls per timed sample (one call is too short to time alone).
pub const NULL_SYSCALL_BATCH: usize = 64;

impl Op {
    pub const ALL: [Op; 4] = [Op::MapCreate, Op::ProgLoad, Op::ForkExit, Op::NullSyscall];

    pub fn name(self) -> &'static str {
        match self {
            Op::MapCreate => "map create+close",
            Op::ProgLoad => "prog load+close",
            Op::ForkExit => "fork+exit+wait",
            Op::NullSyscall => "null syscall",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Run `op` `n` times, timing each run.
    Measure { op: Op, n: usize },
    /// Create `n` more maps and keep them open; reply with their ids.
    HoldMaps { n: usize },
    /// Close every held map.
    ReleaseMaps,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Nanoseconds per run, in run order.
    Samples {
        ns: Vec<u64>,
    },
    /// Ids of the maps just created.
    Held {
        ids: Vec<u32>,
    },
    Done,
    Error {
        message: String,
    },
}
