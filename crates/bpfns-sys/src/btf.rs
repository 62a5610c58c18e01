//! The layout of raw BTF data (`include/uapi/linux/btf.h`), read far enough to summarise it:
//! how many types of each kind, and how big its sections are. No system calls.

/// `BTF_MAGIC`.
pub const MAGIC: u16 = 0xeb9f;
/// Bytes of `struct btf_header` (version 1).
pub const HEADER_LEN: usize = 24;
/// Bytes of `struct btf_type`, before its kind's own data.
const TYPE_LEN: usize = 12;

/// `BTF_KIND_*` names, indexed by kind.
pub const KIND_NAMES: [&str; 20] = [
    "UNKN",
    "INT",
    "PTR",
    "ARRAY",
    "STRUCT",
    "UNION",
    "ENUM",
    "FWD",
    "TYPEDEF",
    "VOLATILE",
    "CONST",
    "RESTRICT",
    "FUNC",
    "FUNC_PROTO",
    "VAR",
    "DATASEC",
    "FLOAT",
    "DECL_TAG",
    "TYPE_TAG",
    "ENUM64",
];

/// Bytes that follow a `struct btf_type` of `kind` with `vlen` members; `None` for a kind
/// this table does not know (a newer kernel's), whose size cannot be known.
fn extra_len(kind: usize, vlen: usize) -> Option<usize> {
    Some(match kind {
        1 | 14 | 17 => 4,             // INT encoding, VAR linkage, DECL_TAG component
        3 => 12,                      // struct btf_array
        4 | 5 | 15 | 19 => 12 * vlen, // members, datasec entries, enum64 values
        6 | 13 => 8 * vlen,           // enum values, parameters
        2 | 7..=12 | 16 | 18 => 0,
        _ => return None,
    })
}

/// What raw BTF data holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Types, per kind (indexed as [`KIND_NAMES`]).
    pub kinds: Vec<(&'static str, u32)>,
    /// Types in all.
    pub types: u32,
    /// Bytes of the type section and of the string section.
    pub type_len: u32,
    pub str_len: u32,
    /// Types of kinds this table does not know stop the count; `true` if that happened.
    pub truncated: bool,
}

/// Summarise raw BTF data; `Err` with a reason when it is not BTF.
pub fn summarize(data: &[u8]) -> Result<Summary, String> {
    let u16_at = |i: usize| data.get(i..i + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |i: usize| {
        data.get(i..i + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    if u16_at(0) != Some(MAGIC) {
        return Err("not BTF (no BTF magic)".to_string());
    }
    let (Some(hdr_len), Some(type_off), Some(type_len), Some(str_len)) =
        (u32_at(4), u32_at(8), u32_at(12), u32_at(20))
    else {
        return Err("BTF header truncated".to_string());
    };
    let start = hdr_len as usize + type_off as usize;
    let end = start + type_len as usize;
    if (hdr_len as usize) < HEADER_LEN || end > data.len() {
        return Err("BTF type section out of bounds".to_string());
    }
    let mut counts = [0u32; KIND_NAMES.len()];
    let mut at = start;
    let mut truncated = false;
    while at + TYPE_LEN <= end {
        let Some(info) = u32_at(at + 4) else { break };
        let kind = ((info >> 24) & 0x1f) as usize;
        let vlen = (info & 0xffff) as usize;
        let Some(extra) = extra_len(kind, vlen) else {
            truncated = true;
            break;
        };
        counts[kind] += 1;
        at += TYPE_LEN + extra;
    }
    Ok(Summary {
        kinds: KIND_NAMES
            .iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (*k, n))
            .collect(),
        types: counts.iter().sum(),
        type_len,
        str_len,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimal_blob_has_one_int() {
        let s = summarize(&crate::bpf::minimal_btf()).unwrap();
        assert_eq!(s.types, 1);
        assert_eq!(s.kinds, vec![("INT", 1)]);
        assert_eq!((s.type_len, s.str_len), (16, 5));
        assert!(!s.truncated);
        assert!(summarize(b"nope").is_err());
        let mut short = crate::bpf::minimal_btf();
        short.truncate(30);
        assert!(summarize(&short).is_err());
    }
}
