//! eBPF instructions (`include/uapi/linux/bpf.h`, `bpf_common.h`) in the words of the
//! kernel's own disassembler (`kernel/bpf/disasm.c`), which bpftool's `prog dump xlated`
//! prints: `r0 = *(u32 *)(r1 +4)`, `if r1 == 0x5 goto pc+3`. No system calls.

/// One instruction as the kernel stores it (8 bytes; `ld_imm64` takes two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// Decode one 8-byte slot (as the kernel wrote it, in host byte order).
    pub fn from_raw(raw: u64) -> Self {
        let b = raw.to_ne_bytes();
        Self {
            code: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_ne_bytes([b[2], b[3]]),
            imm: i32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

// Instruction classes, sizes, modes, operations and sources (bpf_common.h, bpf.h).
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const ALU64: u8 = 0x07;
const MODE_IMM: u8 = 0x00;
const MODE_ABS: u8 = 0x20;
const MODE_IND: u8 = 0x40;
const MODE_MEMSX: u8 = 0x80;
const MODE_ATOMIC: u8 = 0xc0;
const SIZE_DW: u8 = 0x18;
const SRC_X: u8 = 0x08;
const OP_NEG: u8 = 0x80;
const OP_MOV: u8 = 0xb0;
const OP_END: u8 = 0xd0;
const OP_CALL: u8 = 0x80;
const OP_EXIT: u8 = 0x90;
const OP_JA: u8 = 0x00;
/// `BPF_FETCH`, `BPF_XCHG`, `BPF_CMPXCHG` of atomic instructions.
const ATOMIC_FETCH: i32 = 0x01;
const ATOMIC_XCHG: i32 = 0xe0 | ATOMIC_FETCH;
const ATOMIC_CMPXCHG: i32 = 0xf0 | ATOMIC_FETCH;
/// `src_reg` of `ld_imm64`: an fd (a map id in a dump) or a map's value; of `call`: a
/// bpf-to-bpf call or a kfunc.
const PSEUDO_MAP_FD: u8 = 1;
const PSEUDO_MAP_VALUE: u8 = 2;
const PSEUDO_CALL: u8 = 1;
const PSEUDO_KFUNC_CALL: u8 = 2;

fn size_name(code: u8) -> &'static str {
    match code & 0x18 {
        0x00 => "u32",
        0x08 => "u16",
        0x10 => "u8",
        _ => "u64",
    }
}

fn alu_op(op: u8, off: i16) -> Option<&'static str> {
    Some(match (op, off) {
        (0x00, _) => "+=",
        (0x10, _) => "-=",
        (0x20, _) => "*=",
        (0x30, 1) => "s/=",
        (0x30, _) => "/=",
        (0x40, _) => "|=",
        (0x50, _) => "&=",
        (0x60, _) => "<<=",
        (0x70, _) => ">>=",
        (0x90, 1) => "s%=",
        (0x90, _) => "%=",
        (0xa0, _) => "^=",
        (0xc0, _) => "s>>=",
        _ => return None,
    })
}

fn jmp_op(op: u8) -> Option<&'static str> {
    Some(match op {
        0x10 => "==",
        0x20 => ">",
        0x30 => ">=",
        0x40 => "&",
        0x50 => "!=",
        0x60 => "s>",
        0x70 => "s>=",
        0xa0 => "<",
        0xb0 => "<=",
        0xc0 => "s<",
        0xd0 => "s<=",
        _ => return None,
    })
}

fn atomic_op(imm: i32) -> Option<&'static str> {
    Some(match imm & !ATOMIC_FETCH {
        0x00 => "+=",
        0x40 => "|=",
        0x50 => "&=",
        0xa0 => "^=",
        _ => return None,
    })
}

fn signed_off(off: i16) -> String {
    if off < 0 {
        format!("{off}")
    } else {
        format!("+{off}")
    }
}

fn hex(imm: i32) -> String {
    format!("{:#x}", imm)
}

/// The text of each instruction of `insns` (8-byte slots); the second slot of an `ld_imm64`
/// has none (`None`).
pub fn disassemble(insns: &[u64]) -> Vec<Option<String>> {
    let mut out = Vec::with_capacity(insns.len());
    let mut i = 0;
    while i < insns.len() {
        let ins = Insn::from_raw(insns[i]);
        let next = insns.get(i + 1).map(|&r| Insn::from_raw(r));
        let (text, slots) = one(ins, next);
        out.push(Some(text));
        for _ in 1..slots {
            out.push(None);
        }
        i += slots;
    }
    out.truncate(insns.len());
    out
}

/// One instruction's text, and how many slots it takes.
fn one(i: Insn, next: Option<Insn>) -> (String, usize) {
    let class = i.code & 0x07;
    let (r, s) = (format!("r{}", i.dst), format!("r{}", i.src));
    let text = match class {
        ALU | ALU64 => {
            let reg = |n: u8| format!("{}{n}", if class == ALU64 { 'r' } else { 'w' });
            let (d, sr) = (reg(i.dst), reg(i.src));
            let op = i.code & 0xf0;
            // Immediates as the kernel's disassembler prints them: decimal here, hex in jumps.
            let operand = if i.code & SRC_X != 0 {
                sr
            } else {
                i.imm.to_string()
            };
            match op {
                OP_NEG => format!("{d} = -{d}"),
                OP_END => {
                    let how = if class == ALU64 {
                        "bswap"
                    } else if i.code & SRC_X != 0 {
                        "be"
                    } else {
                        "le"
                    };
                    format!("{d} = {how}{} {d}", i.imm)
                }
                OP_MOV if i.code & SRC_X != 0 && matches!(i.off, 8 | 16 | 32) => {
                    format!("{d} = (s{}){}", i.off, reg(i.src))
                }
                // BPF_ADDR_PERCPU and BPF_ADDR_SPACE_CAST (the verifier's own moves).
                OP_MOV if i.code & SRC_X != 0 && i.off == -1 => {
                    format!("{d} = &(void __percpu *)({})", reg(i.src))
                }
                OP_MOV if i.code & SRC_X != 0 && i.off == 1 => format!(
                    "{d} = addr_space_cast({}, {}, {})",
                    reg(i.src),
                    i.imm >> 16,
                    i.imm & 0xffff
                ),
                OP_MOV => format!("{d} = {operand}"),
                _ => match alu_op(op, i.off) {
                    Some(sym) => format!("{d} {sym} {operand}"),
                    None => format!("(unknown ALU op {:#04x})", i.code),
                },
            }
        }
        JMP | JMP32 => {
            let op = i.code & 0xf0;
            let reg = |n: u8| format!("{}{n}", if class == JMP { 'r' } else { 'w' });
            match op {
                OP_EXIT if class == JMP => "exit".to_string(),
                OP_CALL if class == JMP => match i.src {
                    PSEUDO_CALL => format!("call pc{}", signed_off_i32(i.imm)),
                    PSEUDO_KFUNC_CALL => format!("call kfunc#{}", i.imm),
                    // A helper's address, which the kernel zeroes for a reader who may not
                    // see kernel addresses.
                    _ if i.imm == 0 => "call helper".to_string(),
                    _ => format!("call #{}", i.imm),
                },
                OP_JA if class == JMP => format!("goto pc{}", signed_off(i.off)),
                OP_JA => format!("gotol pc{}", signed_off_i32(i.imm)),
                _ => {
                    let operand = if i.code & SRC_X != 0 {
                        reg(i.src)
                    } else {
                        hex(i.imm)
                    };
                    match jmp_op(op) {
                        Some(sym) => format!(
                            "if {} {sym} {operand} goto pc{}",
                            reg(i.dst),
                            signed_off(i.off)
                        ),
                        None => format!("(unknown jump {:#04x})", i.code),
                    }
                }
            }
        }
        LDX => {
            let sx = if i.code & 0xe0 == MODE_MEMSX { "s" } else { "" };
            let size = size_name(i.code);
            let size = if sx.is_empty() {
                size.to_string()
            } else {
                size.replacen('u', "s", 1)
            };
            format!("{r} = *({size} *)({s} {})", signed_off(i.off))
        }
        STX if i.code & 0xe0 == MODE_ATOMIC => {
            let size = size_name(i.code);
            let mem = format!("*({size} *)({r} {})", signed_off(i.off));
            match i.imm {
                ATOMIC_XCHG => format!("{s} = atomic_xchg({mem}, {s})"),
                ATOMIC_CMPXCHG => format!("r0 = atomic_cmpxchg({mem}, r0, {s})"),
                imm => match atomic_op(imm) {
                    Some(sym) if imm & ATOMIC_FETCH != 0 => {
                        format!("{s} = atomic_fetch({mem} {sym} {s})")
                    }
                    Some(sym) => format!("lock {mem} {sym} {s}"),
                    None => format!("(unknown atomic {:#x})", imm),
                },
            }
        }
        STX => format!(
            "*({} *)({r} {}) = {s}",
            size_name(i.code),
            signed_off(i.off)
        ),
        ST => format!(
            "*({} *)({r} {}) = {}",
            size_name(i.code),
            signed_off(i.off),
            i.imm
        ),
        LD if i.code == LD | MODE_IMM | SIZE_DW => {
            let hi = next.map_or(0, |n| n.imm);
            let text = match i.src {
                PSEUDO_MAP_FD => format!("{r} = map[id:{}]", i.imm),
                PSEUDO_MAP_VALUE => format!("{r} = map[id:{}][0]+{hi}", i.imm),
                0 => {
                    let v = (u64::from(hi as u32) << 32) | u64::from(i.imm as u32);
                    format!("{r} = {v:#x}")
                }
                other => format!("{r} = ld_imm64 src {other} imm {:#x}", i.imm),
            };
            return (text, 2);
        }
        LD if matches!(i.code & 0xe0, MODE_ABS | MODE_IND) => {
            let at = if i.code & 0xe0 == MODE_IND {
                format!("{s} + {}", i.imm)
            } else {
                format!("{}", i.imm)
            };
            format!("r0 = *({} *)skb[{at}]", size_name(i.code))
        }
        _ => format!("(unknown instruction {:#04x})", i.code),
    };
    (text, 1)
}

fn signed_off_i32(v: i32) -> String {
    if v < 0 {
        format!("{v}")
    } else {
        format!("+{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
        let mut b = [0u8; 8];
        b[0] = code;
        b[1] = dst | (src << 4);
        b[2..4].copy_from_slice(&off.to_ne_bytes());
        b[4..8].copy_from_slice(&imm.to_ne_bytes());
        u64::from_ne_bytes(b)
    }

    #[test]
    fn common_instructions_read_as_bpftool_prints_them() {
        let prog = [
            raw(0xb7, 0, 0, 0, 0),    // r0 = 0
            raw(0x61, 2, 1, 4, 0),    // r2 = *(u32 *)(r1 +4)
            raw(0x15, 2, 0, 3, 5),    // if r2 == 0x5 goto pc+3
            raw(0x18, 1, 1, 0, 42),   // r1 = map[id:42]
            raw(0, 0, 0, 0, 0),       // (second slot)
            raw(0x7b, 10, 1, -8, 0),  // *(u64 *)(r10 -8) = r1
            raw(0x85, 0, 0, 0, 1),    // call #1
            raw(0x04, 3, 0, 0, 7),    // w3 += 7
            raw(0xdb, 1, 2, 0, 0x00), // lock *(u64 *)(r1 +0) += r2
            raw(0x18, 4, 0, 0, 1),    // r4 = 0x200000001
            raw(0, 0, 0, 0, 2),       // (second slot)
            raw(0x95, 0, 0, 0, 0),    // exit
        ];
        let text: Vec<Option<String>> = disassemble(&prog);
        let want = [
            Some("r0 = 0"),
            Some("r2 = *(u32 *)(r1 +4)"),
            Some("if r2 == 0x5 goto pc+3"),
            Some("r1 = map[id:42]"),
            None,
            Some("*(u64 *)(r10 -8) = r1"),
            Some("call #1"),
            Some("w3 += 7"),
            Some("lock *(u64 *)(r1 +0) += r2"),
            Some("r4 = 0x200000001"),
            None,
            Some("exit"),
        ];
        let got: Vec<Option<&str>> = text.iter().map(|t| t.as_deref()).collect();
        assert_eq!(got, want);
        assert_eq!(
            disassemble(&crate::bpf::RETURN_ZERO),
            [Some("r0 = 0".to_string()), Some("exit".to_string())]
        );
    }
}
