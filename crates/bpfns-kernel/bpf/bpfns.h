/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Layouts shared between the BPF programs and the Rust loader (src/abi.rs mirrors them). */
#ifndef BPFNS_H
#define BPFNS_H

#define BPFNS_MAX_DEPTH 32
#define BPFNS_ROOT 0

/* Object kinds (bpfns_model::ObjectKind::code). */
#define BPFNS_KIND_PROG 1
#define BPFNS_KIND_MAP 2
#define BPFNS_KIND_LINK 3
#define BPFNS_KIND_BTF 4

/* task_tag.flags */
/* The task was cloned with CLONE_FILES into a new process: it shares an fd table with a
 * namespace task and is killed before it runs user code (see on_clone_exit). */
#define BPFNS_TASK_DOOMED 1u

/* Value of the task storage map: which namespace the task belongs to. No entry = root. */
struct task_tag {
	__u32 ns;
	__u32 flags;
};

/* Key and value of the ownership map. No entry = owned by root. */
struct obj_key {
	__u32 kind;
	__u32 id;
};

struct obj_owner {
	__u32 ns;
	__u32 pad;
};

/* Value of the namespace table, keyed by namespace id. */
struct ns_info {
	__u32 parent;
	__u32 depth; /* low 8 bits: depth; above: BPFNS_NS_* policy flags */
};

#define BPFNS_DEPTH_MASK 0xffu
/* Members may load tracing-class programs (kprobe, tracepoint, perf_event, raw_tp, tracing,
 * iterators, LSM, struct_ops, ext). Such programs can read kernel memory and iterate every
 * BPF object, so namespaces do not get them unless their policy says so. */
#define BPFNS_NS_ALLOW_TRACING (1u << 8)

/* One record of the listing iterators. */
struct obj_record {
	__u32 kind;
	__u32 id;
	__u32 owner;
	__u32 type;  /* map type, prog type or link type */
	__u32 extra; /* links: the attached program's id */
	__u32 pad;
	char name[16]; /* maps and progs: the object's name; links: the program's */
};

/* One record of the task iterator. */
struct task_record {
	__u32 tid;
	__u32 tgid;
	__u32 ns;
	__u32 flags;
};

/* Counters in the stats array (index). */
#define BPFNS_STAT_RECORDED 0   /* ownership records written */
#define BPFNS_STAT_KILLED 1     /* tasks stopped by the backstop */
#define BPFNS_STAT_DOOMED 2     /* CLONE_FILES children stopped */
#define BPFNS_STAT_TAG_FAILED 3 /* fork: child's tag could not be stored */
#define BPFNS_STAT_FULL 4       /* ownership record could not be stored */
#define BPFNS_STAT_MAX 8

/* Events about stopped tasks, read from the ring buffer by the daemon. */
struct violation {
	__u32 pid;
	__u32 tid;
	__u32 ns;
	__u32 cmd;
	__u32 kind;
	__u32 id;
	__u32 owner;
	__u32 reason; /* 1 = foreign object, 2 = forbidden prog type, 3 = shared fd table */
};

#endif
