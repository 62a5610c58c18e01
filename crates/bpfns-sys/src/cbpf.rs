//! A small assembler for classic BPF (the language of seccomp filters): instructions with
//! forward jumps to labels, each offset checked to fit its 8-bit field. Every seccomp
//! program bpfns makes is assembled here.

use std::fmt::Debug;

use crate::seccomp::Insn;

/// `BPF_LD | BPF_W | BPF_ABS`: load the 32-bit word at offset `k` of `struct seccomp_data`.
pub const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
pub const JEQ_K: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
/// `BPF_JMP | BPF_JSET | BPF_K`.
pub const JSET_K: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
/// `BPF_RET | BPF_K`.
pub const RET_K: u32 = libc::BPF_RET | libc::BPF_K;

/// Offsets into `struct seccomp_data` (`include/uapi/linux/seccomp.h`).
pub const OFF_NR: u32 = 0;
pub const OFF_ARCH: u32 = 4;
/// The low 32 bits of `args[i]`: `args` starts at 16, eight bytes each.
pub const fn off_arg_lo(i: u32) -> u32 {
    if cfg!(target_endian = "little") {
        16 + 8 * i
    } else {
        20 + 8 * i
    }
}

/// Where a conditional jump goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To<L> {
    /// The next instruction.
    Next,
    /// A label, placed later with [`Asm::label`].
    L(L),
}

#[derive(Debug, Clone, Copy)]
enum Slot<L> {
    Plain(Insn),
    Jump {
        code: u32,
        k: u32,
        jt: To<L>,
        jf: To<L>,
    },
}

/// A jump that cannot be encoded, or a label misused: a bug in the program being assembled,
/// which its tests catch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    #[error("jump from instruction {from} to {to}: offset {offset} does not fit 0..=255")]
    TooFar {
        from: usize,
        to: String,
        offset: i64,
    },
    #[error("label {0} used but never placed")]
    Unplaced(String),
    #[error("label {0} placed twice")]
    Twice(String),
}

/// Instructions whose jump targets are labels of type `L` until [`Asm::finish`].
#[derive(Debug)]
pub struct Asm<L> {
    slots: Vec<Slot<L>>,
    labels: Vec<(L, usize)>,
}

impl<L> Default for Asm<L> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            labels: Vec::new(),
        }
    }
}

impl<L: Copy + Eq + Debug> Asm<L> {
    /// `BPF_STMT(code, k)`.
    pub fn stmt(&mut self, code: u32, k: u32) {
        self.slots.push(Slot::Plain(Insn::stmt(code, k)));
    }

    /// `BPF_JUMP(code, k, jt, jf)` with labelled targets.
    pub fn jump(&mut self, code: u32, k: u32, jt: To<L>, jf: To<L>) {
        self.slots.push(Slot::Jump { code, k, jt, jf });
    }

    /// Load word `off` of `struct seccomp_data`.
    pub fn load(&mut self, off: u32) {
        self.stmt(LD_W_ABS, off);
    }

    /// Return `ret` (a `SECCOMP_RET_*` value).
    pub fn ret(&mut self, ret: u32) {
        self.stmt(RET_K, ret);
    }

    /// Place label `l` at the next instruction.
    pub fn label(&mut self, l: L) {
        self.labels.push((l, self.slots.len()));
    }

    /// The instructions, every jump resolved (classic BPF jumps only forward, at most 255).
    pub fn finish(self) -> Result<Vec<Insn>, AsmError> {
        for (i, (l, _)) in self.labels.iter().enumerate() {
            if self.labels[..i].iter().any(|(x, _)| x == l) {
                return Err(AsmError::Twice(format!("{l:?}")));
            }
        }
        let at = |l: L| {
            self.labels
                .iter()
                .find(|(x, _)| *x == l)
                .map(|(_, pc)| *pc)
                .ok_or_else(|| AsmError::Unplaced(format!("{l:?}")))
        };
        let offset = |pc: usize, to: To<L>| -> Result<u8, AsmError> {
            let target = match to {
                To::Next => return Ok(0),
                To::L(l) => at(l)?,
            };
            let off = target as i64 - pc as i64 - 1;
            u8::try_from(off).map_err(|_| AsmError::TooFar {
                from: pc,
                to: format!("{to:?}"),
                offset: off,
            })
        };
        self.slots
            .iter()
            .enumerate()
            .map(|(pc, s)| match *s {
                Slot::Plain(i) => Ok(i),
                Slot::Jump { code, k, jt, jf } => {
                    Ok(Insn::jump(code, k, offset(pc, jt)?, offset(pc, jf)?))
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_resolve_and_bad_ones_are_refused() {
        let mut a = Asm::default();
        a.load(OFF_NR);
        a.jump(JEQ_K, 1, To::L("x"), To::Next);
        a.ret(0);
        a.label("x");
        a.ret(1);
        let p = a.finish().unwrap();
        assert_eq!((p[1].jt, p[1].jf), (1, 0));

        let mut a = Asm::default();
        a.jump(JEQ_K, 1, To::L("far"), To::Next);
        for _ in 0..300 {
            a.ret(0);
        }
        a.label("far");
        a.ret(1);
        assert!(matches!(a.finish(), Err(AsmError::TooFar { .. })));

        let mut a = Asm::<&str>::default();
        a.jump(JEQ_K, 1, To::L("nowhere"), To::Next);
        assert!(matches!(a.finish(), Err(AsmError::Unplaced(_))));

        let mut a = Asm::default();
        a.label("x");
        a.ret(0);
        a.label("x");
        a.ret(0);
        assert!(matches!(a.finish(), Err(AsmError::Twice(_))));
    }

    #[test]
    fn backward_jumps_are_refused() {
        let mut a = Asm::default();
        a.label("back");
        a.ret(0);
        a.jump(JEQ_K, 1, To::L("back"), To::Next);
        a.ret(0);
        assert!(matches!(a.finish(), Err(AsmError::TooFar { .. })));
    }
}
