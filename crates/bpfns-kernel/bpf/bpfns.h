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
/* Container runtime code that has not exec'd yet: the container's init from the moment
 * bpfnsd tags it for a runtime (enter_container), or an untagged task the kernel tagged
 * because it was moved into a namespace's cgroup (a runtime joining a process to a running
 * container). Its CLONE_FILES children are not doomed (runtimes hand a seccomp listener on
 * from such a child); they inherit the tag and this flag. Cleared when the task execs:
 * execve unshares the fd table, so a table shared before the exec is never shared with the
 * program it runs. Never set for `bpfns exec` members. */
#define BPFNS_TASK_RUNTIME 2u

/* Value of the task storage map: which namespace the task belongs to. No entry = root. */
struct task_tag {
	__u32 ns;
	__u32 flags;
};

/* Key of the cgroup bindings (cgroup_ns): a cgroup of one hierarchy. `hierarchy` is the first
 * field of /proc/PID/cgroup (0: the cgroup v2 hierarchy), `id` the cgroup's kernfs node id,
 * which is its directory's inode number. The value is the namespace (struct cgroup_binding). */
struct cgroup_key {
	__u32 hierarchy;
	__u32 pad;
	__u64 id;
};

struct cgroup_binding {
	__u32 ns;
	__u32 pad;
};

/* Capacity of the cgroup bindings: a container's namespace binds one cgroup per hierarchy it
 * has its own cgroup in (a dozen on a host with cgroup v1 controllers). */
#define BPFNS_CGROUP_CAPACITY (1u << 16)

/* Key and value of the ownership map. No entry = owned by root. */
struct obj_key {
	__u32 kind;
	__u32 id;
};

struct obj_owner {
	__u32 ns;
	/* 0, except in a quarantined record (ns == BPFNS_QUARANTINE): the namespace whose quota
	 * still counts the object (until it is freed). Was `pad`: the layout is unchanged. */
	__u32 charged;
};

/* The owner of a quarantined object: a program whose loader the backstop stopped (a syscall
 * or tracing-class program, or one with perfmon power, where the namespace may not have it),
 * which another thread may have pinned or sent away before the kill landed. No namespace has
 * this id (the registry allocates ids upwards from 1 and never this one) and it is in no
 * namespace table, so every visibility check refuses it to every namespace; the root sees
 * it. */
#define BPFNS_QUARANTINE 0xffffffffu

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

/* One record of the listing iterators: this head, then what the kernel knows about objects of
 * its kind (struct map_record, struct prog_record; links have the head alone). `size` is the
 * whole record's size, so that a reader walks records of any length (kernel sides before the
 * details wrote the 40-byte head alone, with 0 there). */
struct obj_record {
	__u32 kind;
	__u32 id;
	__u32 owner;
	__u32 type;  /* map type, prog type or link type */
	__u32 extra; /* links: the attached program's id */
	__u32 size;  /* bytes of the whole record */
	char name[16]; /* maps and progs: the object's name; links: the program's */
};

/* A map's record: what bpftool's `map show` prints but memlock (which needs the map's ops). */
struct map_record {
	struct obj_record head;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 map_flags;
	__u32 btf_id; /* 0: none */
	__u32 pad;
};

/* Map ids a program's record carries; nr_map_ids says how many it uses in all. */
#define BPFNS_PROG_MAP_IDS 16

/* A program's record: what bpftool's `prog show` prints. */
struct prog_record {
	struct obj_record head;
	__u8 tag[8];
	__u64 load_time; /* ns since boot (CLOCK_BOOTTIME) */
	__u32 xlated_len; /* bytes of its instructions after verification */
	__u32 jited_len;  /* bytes of its JIT image; 0: not JITed */
	__u32 uid;        /* the loader's uid (in the initial user namespace) */
	__u32 btf_id;     /* 0: none */
	__u32 pages;      /* memlock, in pages */
	__u32 nr_map_ids; /* maps it uses; the first BPFNS_PROG_MAP_IDS are in map_ids */
	__u32 map_ids[BPFNS_PROG_MAP_IDS];
};

/* One record of the task iterator. */
struct task_record {
	__u32 tid;
	__u32 tgid;
	__u32 ns;
	__u32 flags;
};

/* One record of the peer iterator: the credentials the peer of one of bpfnsd's unix sockets
 * had when it connected (sk_peer_cred and sk_peer_pid, taken by the kernel at connect). */
struct peer_record {
	__u64 cap_effective;
	__u64 cap_permitted;
	__u32 fd;
	__u32 pid;
	__u32 euid;
	__u32 egid;
	__u32 userns;
	__u32 pad;
};

/* Sockets the peer iterator is asked about at once (peer_query). */
#define BPFNS_PEER_QUERIES 256

/* Capacity of the ownership map (obj_owner) and of the BPF LSM layer's lsm_objects: one entry
 * per recorded object. Namespaces' quotas (quota_daemon) are chosen so that their records
 * always fit (bpfnsd reserves every top-level namespace's limit). */
#define BPFNS_OWNERSHIP_CAPACITY (1u << 20)
/* Capacity of the namespace table and of the quota maps. */
#define BPFNS_NS_CAPACITY (1u << 16)

/* A namespace's effective policy as the backstop checks it (ns_policy): the program and map
 * types its members may create, and the expected attach types of its programs (other than 0,
 * which every program type without one has), bit n for type n. No entry: no restriction
 * beyond the tracing class (BPFNS_NS_ALLOW_TRACING). */
struct ns_policy {
	__u64 progs;
	__u64 maps;
	__u64 attachs;
};

/* Counters in the stats array (index). */
#define BPFNS_STAT_RECORDED 0   /* ownership records written */
#define BPFNS_STAT_KILLED 1     /* tasks stopped by the backstop */
#define BPFNS_STAT_DOOMED 2     /* CLONE_FILES children stopped */
#define BPFNS_STAT_TAG_FAILED 3 /* fork: child's tag could not be stored */
#define BPFNS_STAT_FULL 4       /* ownership record could not be stored */
#define BPFNS_STAT_CGROUP 5     /* untagged tasks tagged by a namespace's cgroup */
#define BPFNS_STAT_MAX 8

/* Why a task was stopped (or, with BPFNS_EVENT_REFUSED, refused by the BPF LSM layer):
 * struct violation's reason, and the index of its counter in the reasons array. */
#define BPFNS_REASON_FOREIGN 1      /* it obtained an fd of an object its namespace may not see */
#define BPFNS_REASON_PROG_TYPE 2    /* syscall program, or tracing-class without the policy */
#define BPFNS_REASON_SHARED_FILES 3 /* a new process sharing a namespace task's fd table */
#define BPFNS_REASON_HIJACK 4       /* the fd bpf() returned is not the object this call created */
#define BPFNS_REASON_UNRECORDED 5   /* the new object's ownership record could not be written */
#define BPFNS_REASON_QUOTA 6        /* the record would exceed a namespace's max_objects or its limit of that kind */
#define BPFNS_REASON_PERFMON 7      /* a program loaded with perfmon power where tracing is denied */
/* Not a violation: a namespace's records crossed 3/4 of its limit (ns = that namespace, id =
 * records in use, owner = its limit); bpfnsd collects stale records at once. */
#define BPFNS_NOTICE_QUOTA_HIGH 16
/* Not a violation: a namespace task created an object (struct object_notice, in the
 * object_notices ring buffer, written only while bpfnsd sets object_events[0]). ns = the
 * owner, kind and id = the object, cmd = the creating command, owner = the creator's uid. */
#define BPFNS_NOTICE_OBJECT_CREATED 17
/* Not a violation: an object of namespace ns (kind, id) was freed and BPF LSM dropped its
 * record (object_notices; pid, cmd and owner are 0). */
#define BPFNS_NOTICE_OBJECT_GONE 18
/* ORed into reason: the BPF LSM layer refused the call with EPERM; the task was not killed. */
#define BPFNS_EVENT_REFUSED (1u << 16)
/* struct violation's cmd when the BPF LSM layer refused a new fd of a foreign object: its
 * bpf_map/bpf_prog hooks see the object, not the command that asked (GET_FD_BY_ID, OBJ_GET,
 * a map fd taken from a program, ...). No bpf(2) command has this number. */
#define BPFNS_CMD_OPEN 0xffffffffu

/* Events read from the ring buffer (violations) by the daemon: stopped or refused tasks,
 * and notices. 48 bytes; readers accept the first 32 (before comm existed). */
struct violation {
	__u32 pid;
	__u32 tid;
	__u32 ns;
	__u32 cmd;
	__u32 kind;
	__u32 id;
	__u32 owner;
	__u32 reason; /* BPFNS_REASON_* | BPFNS_EVENT_REFUSED, or BPFNS_NOTICE_* */
	char comm[16];
};

/* An object_created notice: the event, then the object's name (maps and programs; links:
 * their program's; BTF: none). 64 bytes. */
struct object_notice {
	struct violation v;
	char name[16];
};

/* Counters of the reasons array (per-CPU, index): tasks stopped by reason (index = reason),
 * refusals by the BPF LSM layer (BPFNS_REASONS_REFUSED + reason), quota notices (0). */
#define BPFNS_REASONS_NOTICES 0
#define BPFNS_REASONS_REFUSED 8
#define BPFNS_REASONS_MAX 16

/* Ownership-record quotas. A record of namespace N counts in N and in each of its ancestors
 * below the root; in use = created - kfreed - dfreed (wrapping u64 arithmetic, read as
 * signed). Two maps, so that the kernel and bpfnsd never overwrite each other's counters:
 * quota_kernel (written by BPF programs with atomic adds only) and quota_daemon (written by
 * bpfnsd only). */
struct ns_kcount {
	__u64 created; /* records written (a reservation that failed is subtracted again) */
	__u64 kfreed;  /* records dropped by the kernel when their object was freed (BPF LSM) */
};

struct ns_dquota {
	__u64 limit;  /* max_objects: records in use may not exceed it */
	__u64 dfreed; /* records bpfnsd dropped (objects found freed), or its correction */
};

/* Per-kind quotas, beside the total: the same counters, one per object kind (index = kind -
 * 1), in two maps of their own (kquota_kernel, kquota_daemon) so that the pinned
 * total maps keep their layout. A namespace without a kquota_daemon entry, or with
 * BPFNS_NO_LIMIT for a kind, has only the total (and its ancestors' limits) for that kind. */
#define BPFNS_KINDS 4
#define BPFNS_NO_LIMIT ((__u64)-1)

struct ns_kind_kcount {
	__u64 created[BPFNS_KINDS];
	__u64 kfreed[BPFNS_KINDS];
};

struct ns_kind_dquota {
	__u64 limit[BPFNS_KINDS];  /* max_maps, max_progs...: BPFNS_NO_LIMIT for none */
	__u64 dfreed[BPFNS_KINDS]; /* as ns_dquota's, per kind */
};

#endif
