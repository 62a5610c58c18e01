//! The names of the kernel's BPF enum numbers, as bpffs's `delegate_cmds`, `delegate_maps`,
//! `delegate_progs` and `delegate_attachs` options spell them (the enum name lowercased
//! without its prefix: `map_create`, `hash`, `socket_filter`, `cgroup_inet_ingress`), and
//! `any`. The one table of each; a namespace's [`bpfns_model::Policy`] holds the numbers.

use bpfns_model::{Field, TypeSet};

/// One table: (name, number), in the UAPI's order; aliases (`prog_run` for `prog_test_run`)
/// are rows of their own.
pub type Table = &'static [(&'static str, u32)];

/// The bpf() commands (`enum bpf_cmd`, `delegate_cmds`).
pub const CMDS: Table = &[
    ("map_create", libbpf_sys::BPF_MAP_CREATE),
    ("map_lookup_elem", libbpf_sys::BPF_MAP_LOOKUP_ELEM),
    ("map_update_elem", libbpf_sys::BPF_MAP_UPDATE_ELEM),
    ("map_delete_elem", libbpf_sys::BPF_MAP_DELETE_ELEM),
    ("map_get_next_key", libbpf_sys::BPF_MAP_GET_NEXT_KEY),
    ("prog_load", libbpf_sys::BPF_PROG_LOAD),
    ("obj_pin", libbpf_sys::BPF_OBJ_PIN),
    ("obj_get", libbpf_sys::BPF_OBJ_GET),
    ("prog_attach", libbpf_sys::BPF_PROG_ATTACH),
    ("prog_detach", libbpf_sys::BPF_PROG_DETACH),
    ("prog_test_run", libbpf_sys::BPF_PROG_TEST_RUN),
    ("prog_run", libbpf_sys::BPF_PROG_RUN),
    ("prog_get_next_id", libbpf_sys::BPF_PROG_GET_NEXT_ID),
    ("map_get_next_id", libbpf_sys::BPF_MAP_GET_NEXT_ID),
    ("prog_get_fd_by_id", libbpf_sys::BPF_PROG_GET_FD_BY_ID),
    ("map_get_fd_by_id", libbpf_sys::BPF_MAP_GET_FD_BY_ID),
    ("obj_get_info_by_fd", libbpf_sys::BPF_OBJ_GET_INFO_BY_FD),
    ("prog_query", libbpf_sys::BPF_PROG_QUERY),
    ("raw_tracepoint_open", libbpf_sys::BPF_RAW_TRACEPOINT_OPEN),
    ("btf_load", libbpf_sys::BPF_BTF_LOAD),
    ("btf_get_fd_by_id", libbpf_sys::BPF_BTF_GET_FD_BY_ID),
    ("task_fd_query", libbpf_sys::BPF_TASK_FD_QUERY),
    (
        "map_lookup_and_delete_elem",
        libbpf_sys::BPF_MAP_LOOKUP_AND_DELETE_ELEM,
    ),
    ("map_freeze", libbpf_sys::BPF_MAP_FREEZE),
    ("btf_get_next_id", libbpf_sys::BPF_BTF_GET_NEXT_ID),
    ("map_lookup_batch", libbpf_sys::BPF_MAP_LOOKUP_BATCH),
    (
        "map_lookup_and_delete_batch",
        libbpf_sys::BPF_MAP_LOOKUP_AND_DELETE_BATCH,
    ),
    ("map_update_batch", libbpf_sys::BPF_MAP_UPDATE_BATCH),
    ("map_delete_batch", libbpf_sys::BPF_MAP_DELETE_BATCH),
    ("link_create", libbpf_sys::BPF_LINK_CREATE),
    ("link_update", libbpf_sys::BPF_LINK_UPDATE),
    ("link_get_fd_by_id", libbpf_sys::BPF_LINK_GET_FD_BY_ID),
    ("link_get_next_id", libbpf_sys::BPF_LINK_GET_NEXT_ID),
    ("enable_stats", libbpf_sys::BPF_ENABLE_STATS),
    ("iter_create", libbpf_sys::BPF_ITER_CREATE),
    ("link_detach", libbpf_sys::BPF_LINK_DETACH),
    ("prog_bind_map", libbpf_sys::BPF_PROG_BIND_MAP),
    ("token_create", libbpf_sys::BPF_TOKEN_CREATE),
    (
        "prog_stream_read_by_fd",
        libbpf_sys::BPF_PROG_STREAM_READ_BY_FD,
    ),
    (
        "prog_assoc_struct_ops",
        libbpf_sys::BPF_PROG_ASSOC_STRUCT_OPS,
    ),
];

/// The map types (`enum bpf_map_type`, `delegate_maps`).
pub const MAPS: Table = &[
    ("unspec", libbpf_sys::BPF_MAP_TYPE_UNSPEC),
    ("hash", libbpf_sys::BPF_MAP_TYPE_HASH),
    ("array", libbpf_sys::BPF_MAP_TYPE_ARRAY),
    ("prog_array", libbpf_sys::BPF_MAP_TYPE_PROG_ARRAY),
    (
        "perf_event_array",
        libbpf_sys::BPF_MAP_TYPE_PERF_EVENT_ARRAY,
    ),
    ("percpu_hash", libbpf_sys::BPF_MAP_TYPE_PERCPU_HASH),
    ("percpu_array", libbpf_sys::BPF_MAP_TYPE_PERCPU_ARRAY),
    ("stack_trace", libbpf_sys::BPF_MAP_TYPE_STACK_TRACE),
    ("cgroup_array", libbpf_sys::BPF_MAP_TYPE_CGROUP_ARRAY),
    ("lru_hash", libbpf_sys::BPF_MAP_TYPE_LRU_HASH),
    ("lru_percpu_hash", libbpf_sys::BPF_MAP_TYPE_LRU_PERCPU_HASH),
    ("lpm_trie", libbpf_sys::BPF_MAP_TYPE_LPM_TRIE),
    ("array_of_maps", libbpf_sys::BPF_MAP_TYPE_ARRAY_OF_MAPS),
    ("hash_of_maps", libbpf_sys::BPF_MAP_TYPE_HASH_OF_MAPS),
    ("devmap", libbpf_sys::BPF_MAP_TYPE_DEVMAP),
    ("sockmap", libbpf_sys::BPF_MAP_TYPE_SOCKMAP),
    ("cpumap", libbpf_sys::BPF_MAP_TYPE_CPUMAP),
    ("xskmap", libbpf_sys::BPF_MAP_TYPE_XSKMAP),
    ("sockhash", libbpf_sys::BPF_MAP_TYPE_SOCKHASH),
    (
        "cgroup_storage_deprecated",
        libbpf_sys::BPF_MAP_TYPE_CGROUP_STORAGE_DEPRECATED,
    ),
    ("cgroup_storage", libbpf_sys::BPF_MAP_TYPE_CGROUP_STORAGE),
    (
        "reuseport_sockarray",
        libbpf_sys::BPF_MAP_TYPE_REUSEPORT_SOCKARRAY,
    ),
    (
        "percpu_cgroup_storage_deprecated",
        libbpf_sys::BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE_DEPRECATED,
    ),
    (
        "percpu_cgroup_storage",
        libbpf_sys::BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
    ),
    ("queue", libbpf_sys::BPF_MAP_TYPE_QUEUE),
    ("stack", libbpf_sys::BPF_MAP_TYPE_STACK),
    ("sk_storage", libbpf_sys::BPF_MAP_TYPE_SK_STORAGE),
    ("devmap_hash", libbpf_sys::BPF_MAP_TYPE_DEVMAP_HASH),
    ("struct_ops", libbpf_sys::BPF_MAP_TYPE_STRUCT_OPS),
    ("ringbuf", libbpf_sys::BPF_MAP_TYPE_RINGBUF),
    ("inode_storage", libbpf_sys::BPF_MAP_TYPE_INODE_STORAGE),
    ("task_storage", libbpf_sys::BPF_MAP_TYPE_TASK_STORAGE),
    ("bloom_filter", libbpf_sys::BPF_MAP_TYPE_BLOOM_FILTER),
    ("user_ringbuf", libbpf_sys::BPF_MAP_TYPE_USER_RINGBUF),
    ("cgrp_storage", libbpf_sys::BPF_MAP_TYPE_CGRP_STORAGE),
    ("arena", libbpf_sys::BPF_MAP_TYPE_ARENA),
    ("insn_array", libbpf_sys::BPF_MAP_TYPE_INSN_ARRAY),
];

/// The program types (`enum bpf_prog_type`, `delegate_progs`).
pub const PROGS: Table = &[
    ("unspec", libbpf_sys::BPF_PROG_TYPE_UNSPEC),
    ("socket_filter", libbpf_sys::BPF_PROG_TYPE_SOCKET_FILTER),
    ("kprobe", libbpf_sys::BPF_PROG_TYPE_KPROBE),
    ("sched_cls", libbpf_sys::BPF_PROG_TYPE_SCHED_CLS),
    ("sched_act", libbpf_sys::BPF_PROG_TYPE_SCHED_ACT),
    ("tracepoint", libbpf_sys::BPF_PROG_TYPE_TRACEPOINT),
    ("xdp", libbpf_sys::BPF_PROG_TYPE_XDP),
    ("perf_event", libbpf_sys::BPF_PROG_TYPE_PERF_EVENT),
    ("cgroup_skb", libbpf_sys::BPF_PROG_TYPE_CGROUP_SKB),
    ("cgroup_sock", libbpf_sys::BPF_PROG_TYPE_CGROUP_SOCK),
    ("lwt_in", libbpf_sys::BPF_PROG_TYPE_LWT_IN),
    ("lwt_out", libbpf_sys::BPF_PROG_TYPE_LWT_OUT),
    ("lwt_xmit", libbpf_sys::BPF_PROG_TYPE_LWT_XMIT),
    ("sock_ops", libbpf_sys::BPF_PROG_TYPE_SOCK_OPS),
    ("sk_skb", libbpf_sys::BPF_PROG_TYPE_SK_SKB),
    ("cgroup_device", libbpf_sys::BPF_PROG_TYPE_CGROUP_DEVICE),
    ("sk_msg", libbpf_sys::BPF_PROG_TYPE_SK_MSG),
    ("raw_tracepoint", libbpf_sys::BPF_PROG_TYPE_RAW_TRACEPOINT),
    (
        "cgroup_sock_addr",
        libbpf_sys::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
    ),
    ("lwt_seg6local", libbpf_sys::BPF_PROG_TYPE_LWT_SEG6LOCAL),
    ("lirc_mode2", libbpf_sys::BPF_PROG_TYPE_LIRC_MODE2),
    ("sk_reuseport", libbpf_sys::BPF_PROG_TYPE_SK_REUSEPORT),
    ("flow_dissector", libbpf_sys::BPF_PROG_TYPE_FLOW_DISSECTOR),
    ("cgroup_sysctl", libbpf_sys::BPF_PROG_TYPE_CGROUP_SYSCTL),
    (
        "raw_tracepoint_writable",
        libbpf_sys::BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE,
    ),
    ("cgroup_sockopt", libbpf_sys::BPF_PROG_TYPE_CGROUP_SOCKOPT),
    ("tracing", libbpf_sys::BPF_PROG_TYPE_TRACING),
    ("struct_ops", libbpf_sys::BPF_PROG_TYPE_STRUCT_OPS),
    ("ext", libbpf_sys::BPF_PROG_TYPE_EXT),
    ("lsm", libbpf_sys::BPF_PROG_TYPE_LSM),
    ("sk_lookup", libbpf_sys::BPF_PROG_TYPE_SK_LOOKUP),
    ("syscall", libbpf_sys::BPF_PROG_TYPE_SYSCALL),
    ("netfilter", libbpf_sys::BPF_PROG_TYPE_NETFILTER),
];

/// The attach types (`enum bpf_attach_type`, `delegate_attachs`).
pub const ATTACHS: Table = &[
    ("cgroup_inet_ingress", libbpf_sys::BPF_CGROUP_INET_INGRESS),
    ("cgroup_inet_egress", libbpf_sys::BPF_CGROUP_INET_EGRESS),
    (
        "cgroup_inet_sock_create",
        libbpf_sys::BPF_CGROUP_INET_SOCK_CREATE,
    ),
    ("cgroup_sock_ops", libbpf_sys::BPF_CGROUP_SOCK_OPS),
    ("sk_skb_stream_parser", libbpf_sys::BPF_SK_SKB_STREAM_PARSER),
    (
        "sk_skb_stream_verdict",
        libbpf_sys::BPF_SK_SKB_STREAM_VERDICT,
    ),
    ("cgroup_device", libbpf_sys::BPF_CGROUP_DEVICE),
    ("sk_msg_verdict", libbpf_sys::BPF_SK_MSG_VERDICT),
    ("cgroup_inet4_bind", libbpf_sys::BPF_CGROUP_INET4_BIND),
    ("cgroup_inet6_bind", libbpf_sys::BPF_CGROUP_INET6_BIND),
    ("cgroup_inet4_connect", libbpf_sys::BPF_CGROUP_INET4_CONNECT),
    ("cgroup_inet6_connect", libbpf_sys::BPF_CGROUP_INET6_CONNECT),
    (
        "cgroup_inet4_post_bind",
        libbpf_sys::BPF_CGROUP_INET4_POST_BIND,
    ),
    (
        "cgroup_inet6_post_bind",
        libbpf_sys::BPF_CGROUP_INET6_POST_BIND,
    ),
    ("cgroup_udp4_sendmsg", libbpf_sys::BPF_CGROUP_UDP4_SENDMSG),
    ("cgroup_udp6_sendmsg", libbpf_sys::BPF_CGROUP_UDP6_SENDMSG),
    ("lirc_mode2", libbpf_sys::BPF_LIRC_MODE2),
    ("flow_dissector", libbpf_sys::BPF_FLOW_DISSECTOR),
    ("cgroup_sysctl", libbpf_sys::BPF_CGROUP_SYSCTL),
    ("cgroup_udp4_recvmsg", libbpf_sys::BPF_CGROUP_UDP4_RECVMSG),
    ("cgroup_udp6_recvmsg", libbpf_sys::BPF_CGROUP_UDP6_RECVMSG),
    ("cgroup_getsockopt", libbpf_sys::BPF_CGROUP_GETSOCKOPT),
    ("cgroup_setsockopt", libbpf_sys::BPF_CGROUP_SETSOCKOPT),
    ("trace_raw_tp", libbpf_sys::BPF_TRACE_RAW_TP),
    ("trace_fentry", libbpf_sys::BPF_TRACE_FENTRY),
    ("trace_fexit", libbpf_sys::BPF_TRACE_FEXIT),
    ("modify_return", libbpf_sys::BPF_MODIFY_RETURN),
    ("lsm_mac", libbpf_sys::BPF_LSM_MAC),
    ("trace_iter", libbpf_sys::BPF_TRACE_ITER),
    (
        "cgroup_inet4_getpeername",
        libbpf_sys::BPF_CGROUP_INET4_GETPEERNAME,
    ),
    (
        "cgroup_inet6_getpeername",
        libbpf_sys::BPF_CGROUP_INET6_GETPEERNAME,
    ),
    (
        "cgroup_inet4_getsockname",
        libbpf_sys::BPF_CGROUP_INET4_GETSOCKNAME,
    ),
    (
        "cgroup_inet6_getsockname",
        libbpf_sys::BPF_CGROUP_INET6_GETSOCKNAME,
    ),
    ("xdp_devmap", libbpf_sys::BPF_XDP_DEVMAP),
    (
        "cgroup_inet_sock_release",
        libbpf_sys::BPF_CGROUP_INET_SOCK_RELEASE,
    ),
    ("xdp_cpumap", libbpf_sys::BPF_XDP_CPUMAP),
    ("sk_lookup", libbpf_sys::BPF_SK_LOOKUP),
    ("xdp", libbpf_sys::BPF_XDP),
    ("sk_skb_verdict", libbpf_sys::BPF_SK_SKB_VERDICT),
    ("sk_reuseport_select", libbpf_sys::BPF_SK_REUSEPORT_SELECT),
    (
        "sk_reuseport_select_or_migrate",
        libbpf_sys::BPF_SK_REUSEPORT_SELECT_OR_MIGRATE,
    ),
    ("perf_event", libbpf_sys::BPF_PERF_EVENT),
    ("trace_kprobe_multi", libbpf_sys::BPF_TRACE_KPROBE_MULTI),
    ("lsm_cgroup", libbpf_sys::BPF_LSM_CGROUP),
    ("struct_ops", libbpf_sys::BPF_STRUCT_OPS),
    ("netfilter", libbpf_sys::BPF_NETFILTER),
    ("tcx_ingress", libbpf_sys::BPF_TCX_INGRESS),
    ("tcx_egress", libbpf_sys::BPF_TCX_EGRESS),
    ("trace_uprobe_multi", libbpf_sys::BPF_TRACE_UPROBE_MULTI),
    ("cgroup_unix_connect", libbpf_sys::BPF_CGROUP_UNIX_CONNECT),
    ("cgroup_unix_sendmsg", libbpf_sys::BPF_CGROUP_UNIX_SENDMSG),
    ("cgroup_unix_recvmsg", libbpf_sys::BPF_CGROUP_UNIX_RECVMSG),
    (
        "cgroup_unix_getpeername",
        libbpf_sys::BPF_CGROUP_UNIX_GETPEERNAME,
    ),
    (
        "cgroup_unix_getsockname",
        libbpf_sys::BPF_CGROUP_UNIX_GETSOCKNAME,
    ),
    ("netkit_primary", libbpf_sys::BPF_NETKIT_PRIMARY),
    ("netkit_peer", libbpf_sys::BPF_NETKIT_PEER),
    ("trace_kprobe_session", libbpf_sys::BPF_TRACE_KPROBE_SESSION),
    ("trace_uprobe_session", libbpf_sys::BPF_TRACE_UPROBE_SESSION),
    ("trace_fsession", libbpf_sys::BPF_TRACE_FSESSION),
];

/// The table of one of a policy's fields.
pub fn table(f: Field) -> Table {
    match f {
        Field::Cmds => CMDS,
        Field::Maps => MAPS,
        Field::Progs => PROGS,
        Field::Attachs => ATTACHS,
    }
}

/// The name of `n` in `f`'s table (the first, where there are aliases).
pub fn name(f: Field, n: u32) -> Option<&'static str> {
    table(f).iter().find(|&&(_, v)| v == n).map(|&(k, _)| k)
}

/// The number named `name` in `f`'s table.
pub fn number(f: Field, name: &str) -> Option<u32> {
    table(f).iter().find(|&&(k, _)| k == name).map(|&(_, v)| v)
}

/// A name that is not in a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown {field} name {name:?}; the valid ones are any, {}",
    valid(*.field).join(", ")
)]
pub struct UnknownName {
    /// The field.
    pub field: Field,
    /// The name.
    pub name: String,
}

fn valid(f: Field) -> Vec<&'static str> {
    table(f).iter().map(|&(k, _)| k).collect()
}

/// The set a comma-separated list of names (or `any`) means in `f`: names as bpffs takes
/// them, case-insensitive. An empty list is the empty set.
pub fn parse_list(f: Field, list: &str) -> Result<TypeSet, UnknownName> {
    let mut nums = Vec::new();
    for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let w = word.to_ascii_lowercase();
        if w == "any" {
            return Ok(TypeSet::ANY);
        }
        nums.push(number(f, &w).ok_or_else(|| UnknownName {
            field: f,
            name: word.to_owned(),
        })?);
    }
    Ok(TypeSet::of(nums))
}

/// `s` in names: `any`, `any but a,b`, `a,b` or `none`; numbers without a name (of a later
/// kernel) as numbers.
pub fn describe(f: Field, s: TypeSet) -> String {
    let (co, list) = s.listed();
    let words: Vec<String> = list
        .iter()
        .map(|&n| name(f, n).map_or_else(|| n.to_string(), str::to_owned))
        .collect();
    match (co, words.is_empty()) {
        (true, true) => "any".into(),
        (true, false) => format!("any but {}", words.join(",")),
        (false, true) => "none".into(),
        (false, false) => words.join(","),
    }
}

/// `s` as a list of names for JSON output: `["any"]`, or the names in the set (for an
/// "everything but" set, every named number but those left out, then what later kernels add
/// is not listed: see [`describe`]).
pub fn names_in(f: Field, s: TypeSet) -> Vec<String> {
    if s.is_any() {
        return vec!["any".into()];
    }
    let mut seen = Vec::new();
    for &(k, v) in table(f) {
        if s.contains(v) && !seen.iter().any(|&(_, sv)| sv == v) {
            seen.push((k, v));
        }
    }
    seen.into_iter().map(|(k, _)| k.to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfns_model::{Policy, TRACING_PROGS};

    #[test]
    fn tables_are_complete_and_named_as_bpffs_names_them() {
        for (f, max) in [
            (Field::Cmds, libbpf_sys::__MAX_BPF_CMD),
            (Field::Maps, libbpf_sys::__MAX_BPF_MAP_TYPE),
            (Field::Progs, libbpf_sys::__MAX_BPF_PROG_TYPE),
            (Field::Attachs, libbpf_sys::__MAX_BPF_ATTACH_TYPE),
        ] {
            for n in 0..max {
                assert!(name(f, n).is_some(), "{f} {n}");
            }
            // Policies and the kernel's token masks hold numbers below 64.
            assert!(max <= 64, "{f}");
        }
        assert_eq!(
            number(Field::Cmds, "map_create"),
            Some(libbpf_sys::BPF_MAP_CREATE)
        );
        assert_eq!(
            number(Field::Cmds, "prog_load"),
            Some(libbpf_sys::BPF_PROG_LOAD)
        );
        assert_eq!(
            number(Field::Maps, "hash"),
            Some(libbpf_sys::BPF_MAP_TYPE_HASH)
        );
        assert_eq!(
            number(Field::Progs, "xdp"),
            Some(libbpf_sys::BPF_PROG_TYPE_XDP)
        );
        assert_eq!(
            number(Field::Progs, "socket_filter"),
            Some(libbpf_sys::BPF_PROG_TYPE_SOCKET_FILTER)
        );
        assert_eq!(
            number(Field::Attachs, "cgroup_inet_ingress"),
            Some(libbpf_sys::BPF_CGROUP_INET_INGRESS)
        );
        assert_eq!(number(Field::Attachs, "xdp"), Some(libbpf_sys::BPF_XDP));
    }

    #[test]
    fn the_models_tracing_class_is_the_uapis() {
        let want = TypeSet::of([
            libbpf_sys::BPF_PROG_TYPE_KPROBE,
            libbpf_sys::BPF_PROG_TYPE_TRACEPOINT,
            libbpf_sys::BPF_PROG_TYPE_PERF_EVENT,
            libbpf_sys::BPF_PROG_TYPE_RAW_TRACEPOINT,
            libbpf_sys::BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE,
            libbpf_sys::BPF_PROG_TYPE_TRACING,
            libbpf_sys::BPF_PROG_TYPE_STRUCT_OPS,
            libbpf_sys::BPF_PROG_TYPE_EXT,
            libbpf_sys::BPF_PROG_TYPE_LSM,
        ]);
        assert_eq!(TRACING_PROGS, want);
    }

    #[test]
    fn lists_parse_and_print() {
        assert_eq!(parse_list(Field::Maps, "any"), Ok(TypeSet::ANY));
        assert_eq!(
            parse_list(Field::Maps, "hash, ARRAY"),
            Ok(TypeSet::of([
                libbpf_sys::BPF_MAP_TYPE_HASH,
                libbpf_sys::BPF_MAP_TYPE_ARRAY
            ]))
        );
        assert_eq!(parse_list(Field::Cmds, ""), Ok(TypeSet::NONE));
        let err = parse_list(Field::Progs, "socket_filter,xpd").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown progs name \"xpd\""), "{msg}");
        assert!(
            msg.contains("socket_filter") && msg.contains("xdp"),
            "{msg}"
        );
        assert_eq!(describe(Field::Cmds, TypeSet::ANY), "any");
        let progs = describe(Field::Progs, Policy::DEFAULT.progs);
        assert!(progs.starts_with("any but kprobe,tracepoint,"), "{progs}");
        assert_eq!(
            describe(Field::Maps, parse_list(Field::Maps, "hash").unwrap()),
            "hash"
        );
        assert_eq!(describe(Field::Maps, TypeSet::of([60])), "60");
        assert_eq!(names_in(Field::Maps, TypeSet::ANY), vec!["any"]);
        assert_eq!(
            names_in(Field::Progs, TypeSet::of([1, 6])),
            vec!["socket_filter", "xdp"]
        );
    }
}
