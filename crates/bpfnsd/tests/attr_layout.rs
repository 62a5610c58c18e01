//! The supervisor reads and writes `union bpf_attr` by offset (`supervisor::attr::off`): each
//! offset is checked here against the layout libbpf's UAPI headers give `bpf_attr`, so a wrong
//! number cannot hide. No root needed.

use std::mem::offset_of;

use bpfnsd::supervisor::attr::off;
use libbpf_sys::bpf_attr as A;

#[test]
fn attr_offsets_match_the_uapi_layout() {
    let checks: &[(&str, usize, usize)] = &[
        // *_GET_NEXT_ID, *_GET_FD_BY_ID
        (
            "start_id",
            off::ID,
            offset_of!(A, __bindgen_anon_6.__bindgen_anon_1.start_id),
        ),
        (
            "next_id",
            off::NEXT_ID,
            offset_of!(A, __bindgen_anon_6.next_id),
        ),
        (
            "open_flags",
            off::OPEN_FLAGS,
            offset_of!(A, __bindgen_anon_6.open_flags),
        ),
        (
            "fd_by_id_token_fd",
            off::TOKEN_FD,
            offset_of!(A, __bindgen_anon_6.fd_by_id_token_fd),
        ),
        // BPF_OBJ_GET
        (
            "pathname",
            off::PATHNAME,
            offset_of!(A, __bindgen_anon_4.pathname),
        ),
        (
            "bpf_fd",
            off::BPF_FD,
            offset_of!(A, __bindgen_anon_4.bpf_fd),
        ),
        (
            "file_flags",
            off::FILE_FLAGS,
            offset_of!(A, __bindgen_anon_4.file_flags),
        ),
        (
            "path_fd",
            off::PATH_FD,
            offset_of!(A, __bindgen_anon_4.path_fd),
        ),
        // BPF_PROG_QUERY
        (
            "query.target_fd",
            off::Q_TARGET,
            offset_of!(A, query.__bindgen_anon_1.target_fd),
        ),
        (
            "query.attach_type",
            off::Q_ATTACH_TYPE,
            offset_of!(A, query.attach_type),
        ),
        (
            "query.query_flags",
            off::Q_QUERY_FLAGS,
            offset_of!(A, query.query_flags),
        ),
        (
            "query.attach_flags",
            off::Q_ATTACH_FLAGS,
            offset_of!(A, query.attach_flags),
        ),
        (
            "query.prog_ids",
            off::Q_PROG_IDS,
            offset_of!(A, query.prog_ids),
        ),
        (
            "query.prog_cnt",
            off::Q_PROG_CNT,
            offset_of!(A, query.__bindgen_anon_2.prog_cnt),
        ),
        (
            "query.prog_attach_flags",
            off::Q_PROG_ATTACH_FLAGS,
            offset_of!(A, query.prog_attach_flags),
        ),
        (
            "query.link_ids",
            off::Q_LINK_IDS,
            offset_of!(A, query.link_ids),
        ),
        (
            "query.link_attach_flags",
            off::Q_LINK_ATTACH_FLAGS,
            offset_of!(A, query.link_attach_flags),
        ),
        (
            "query.revision",
            off::Q_REVISION,
            offset_of!(A, query.revision),
        ),
        // BPF_TASK_FD_QUERY
        (
            "task_fd_query.pid",
            off::T_PID,
            offset_of!(A, task_fd_query.pid),
        ),
        (
            "task_fd_query.fd",
            off::T_FD,
            offset_of!(A, task_fd_query.fd),
        ),
        (
            "task_fd_query.flags",
            off::T_FLAGS,
            offset_of!(A, task_fd_query.flags),
        ),
        (
            "task_fd_query.buf_len",
            off::T_BUF_LEN,
            offset_of!(A, task_fd_query.buf_len),
        ),
        (
            "task_fd_query.buf",
            off::T_BUF,
            offset_of!(A, task_fd_query.buf),
        ),
        (
            "task_fd_query.prog_id",
            off::T_PROG_ID,
            offset_of!(A, task_fd_query.prog_id),
        ),
        (
            "task_fd_query.fd_type",
            off::T_FD_TYPE,
            offset_of!(A, task_fd_query.fd_type),
        ),
        (
            "task_fd_query.probe_offset",
            off::T_PROBE_OFFSET,
            offset_of!(A, task_fd_query.probe_offset),
        ),
        (
            "task_fd_query.probe_addr",
            off::T_PROBE_ADDR,
            offset_of!(A, task_fd_query.probe_addr),
        ),
        // BPF_PROG_LOAD
        (
            "prog_type",
            off::L_PROG_TYPE,
            offset_of!(A, __bindgen_anon_3.prog_type),
        ),
        (
            "insn_cnt",
            off::L_INSN_CNT,
            offset_of!(A, __bindgen_anon_3.insn_cnt),
        ),
        ("insns", off::L_INSNS, offset_of!(A, __bindgen_anon_3.insns)),
        (
            "license",
            off::L_LICENSE,
            offset_of!(A, __bindgen_anon_3.license),
        ),
        (
            "log_level",
            off::L_LOG_LEVEL,
            offset_of!(A, __bindgen_anon_3.log_level),
        ),
        (
            "log_size",
            off::L_LOG_SIZE,
            offset_of!(A, __bindgen_anon_3.log_size),
        ),
        (
            "log_buf",
            off::L_LOG_BUF,
            offset_of!(A, __bindgen_anon_3.log_buf),
        ),
        (
            "kern_version",
            off::L_KERN_VERSION,
            offset_of!(A, __bindgen_anon_3.kern_version),
        ),
        (
            "prog_flags",
            off::L_PROG_FLAGS,
            offset_of!(A, __bindgen_anon_3.prog_flags),
        ),
        (
            "prog_name",
            off::L_PROG_NAME,
            offset_of!(A, __bindgen_anon_3.prog_name),
        ),
        (
            "prog_ifindex",
            off::L_PROG_IFINDEX,
            offset_of!(A, __bindgen_anon_3.prog_ifindex),
        ),
        (
            "expected_attach_type",
            off::L_EXPECTED_ATTACH_TYPE,
            offset_of!(A, __bindgen_anon_3.expected_attach_type),
        ),
        (
            "prog_btf_fd",
            off::L_PROG_BTF_FD,
            offset_of!(A, __bindgen_anon_3.prog_btf_fd),
        ),
        (
            "func_info_rec_size",
            off::L_FUNC_INFO_REC_SIZE,
            offset_of!(A, __bindgen_anon_3.func_info_rec_size),
        ),
        (
            "func_info",
            off::L_FUNC_INFO,
            offset_of!(A, __bindgen_anon_3.func_info),
        ),
        (
            "func_info_cnt",
            off::L_FUNC_INFO_CNT,
            offset_of!(A, __bindgen_anon_3.func_info_cnt),
        ),
        (
            "line_info_rec_size",
            off::L_LINE_INFO_REC_SIZE,
            offset_of!(A, __bindgen_anon_3.line_info_rec_size),
        ),
        (
            "line_info",
            off::L_LINE_INFO,
            offset_of!(A, __bindgen_anon_3.line_info),
        ),
        (
            "line_info_cnt",
            off::L_LINE_INFO_CNT,
            offset_of!(A, __bindgen_anon_3.line_info_cnt),
        ),
        (
            "attach_btf_id",
            off::L_ATTACH_BTF_ID,
            offset_of!(A, __bindgen_anon_3.attach_btf_id),
        ),
        (
            "attach_prog_fd",
            off::L_ATTACH_PROG_FD,
            offset_of!(A, __bindgen_anon_3.__bindgen_anon_1.attach_prog_fd),
        ),
        (
            "core_relo_cnt",
            off::L_CORE_RELO_CNT,
            offset_of!(A, __bindgen_anon_3.core_relo_cnt),
        ),
        (
            "fd_array",
            off::L_FD_ARRAY,
            offset_of!(A, __bindgen_anon_3.fd_array),
        ),
        (
            "core_relos",
            off::L_CORE_RELOS,
            offset_of!(A, __bindgen_anon_3.core_relos),
        ),
        (
            "core_relo_rec_size",
            off::L_CORE_RELO_REC_SIZE,
            offset_of!(A, __bindgen_anon_3.core_relo_rec_size),
        ),
        (
            "log_true_size",
            off::L_LOG_TRUE_SIZE,
            offset_of!(A, __bindgen_anon_3.log_true_size),
        ),
        (
            "prog_token_fd",
            off::L_PROG_TOKEN_FD,
            offset_of!(A, __bindgen_anon_3.prog_token_fd),
        ),
        (
            "fd_array_cnt",
            off::L_FD_ARRAY_CNT,
            offset_of!(A, __bindgen_anon_3.fd_array_cnt),
        ),
        (
            "signature",
            off::L_SIGNATURE,
            offset_of!(A, __bindgen_anon_3.signature),
        ),
        (
            "signature_size",
            off::L_SIGNATURE_SIZE,
            offset_of!(A, __bindgen_anon_3.signature_size),
        ),
        (
            "keyring_id",
            off::L_KEYRING_ID,
            offset_of!(A, __bindgen_anon_3.keyring_id),
        ),
        // BPF_PROG_ATTACH / BPF_PROG_DETACH
        (
            "target_fd",
            off::A_TARGET,
            offset_of!(A, __bindgen_anon_5.__bindgen_anon_1.target_fd),
        ),
        (
            "attach_bpf_fd",
            off::A_ATTACH_BPF_FD,
            offset_of!(A, __bindgen_anon_5.attach_bpf_fd),
        ),
        (
            "attach_type",
            off::A_ATTACH_TYPE,
            offset_of!(A, __bindgen_anon_5.attach_type),
        ),
        (
            "attach_flags",
            off::A_ATTACH_FLAGS,
            offset_of!(A, __bindgen_anon_5.attach_flags),
        ),
        (
            "replace_bpf_fd",
            off::A_REPLACE_BPF_FD,
            offset_of!(A, __bindgen_anon_5.replace_bpf_fd),
        ),
        (
            "relative_fd",
            off::A_RELATIVE,
            offset_of!(A, __bindgen_anon_5.__bindgen_anon_2.relative_fd),
        ),
        (
            "expected_revision",
            off::A_EXPECTED_REVISION,
            offset_of!(A, __bindgen_anon_5.expected_revision),
        ),
        // BPF_LINK_UPDATE / BPF_LINK_DETACH
        (
            "link_update.link_fd",
            off::LU_LINK_FD,
            offset_of!(A, link_update.link_fd),
        ),
        (
            "link_update.new_prog_fd",
            off::LU_NEW_FD,
            offset_of!(A, link_update.__bindgen_anon_1.new_prog_fd),
        ),
        (
            "link_update.flags",
            off::LU_FLAGS,
            offset_of!(A, link_update.flags),
        ),
        (
            "link_update.old_prog_fd",
            off::LU_OLD_FD,
            offset_of!(A, link_update.__bindgen_anon_2.old_prog_fd),
        ),
        (
            "link_detach.link_fd",
            off::LU_LINK_FD,
            offset_of!(A, link_detach.link_fd),
        ),
    ];
    let wrong: Vec<String> = checks
        .iter()
        .filter(|(_, ours, uapi)| ours != uapi)
        .map(|(name, ours, uapi)| format!("{name}: ours {ours}, bpf_attr {uapi}"))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
