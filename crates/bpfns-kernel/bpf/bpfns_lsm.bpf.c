// SPDX-License-Identifier: GPL-2.0
/*
 * bpfns BPF LSM layer: the kernel itself refuses, with EPERM, a namespace task's attempt to
 * obtain a file descriptor for a BPF object it may not see.
 *
 * A separate object from bpfns.bpf.c: it is loaded only where the kernel accepts BPF LSM
 * programs, and it works on the main object's pinned maps (maps.bpf.h; the loader points
 * every map at its pin, so nothing here creates state of its own except lsm_objects and
 * lsm_pending, pinned beside them).
 *
 *   lsm/bpf_map, lsm/bpf_prog      every fd made for a map or program: on create, on
 *                                  *_GET_FD_BY_ID and on BPF_OBJ_GET of a pinned file.
 *                                  Creation (recognised by the object pointer recorded at the
 *                                  create hook) records ownership, within the namespace's
 *                                  quota (refused otherwise: the kernel frees the object);
 *                                  anything else is an open, refused when the owner is not
 *                                  visible.
 *   lsm/bpf_map_create             (6.9+) or lsm/bpf_map_alloc_security (up to 6.8): creation
 *   lsm/bpf_prog_load              (6.9+) or lsm/bpf_prog_alloc_security (up to 6.8): creation
 *                                  (map->id and prog->aux->id are still 0 there: the ids are
 *                                  allocated later, before the fd is made)
 *   lsm/bpf                        cmd level: BPF_LINK_GET_FD_BY_ID and BPF_BTF_GET_FD_BY_ID
 *                                  (links and BTF have no object hook); BPF_MAP_CREATE and
 *                                  BPF_PROG_LOAD of a map, program or expected attach type
 *                                  the namespace's policy leaves out (ns_policy); BPF_PROG_LOAD
 *                                  of a syscall program (which could call bpf() from inside
 *                                  the kernel), and, where the namespace's policy does not
 *                                  allow tracing, of a tracing-class program or by a loader
 *                                  with perfmon power (the same rules as the backstop's in
 *                                  bpfns.bpf.c, which kills instead)
 *   lsm/bpf_token_capable          (6.9+) no CAP_PERFMON through a BPF token for namespace
 *                                  tasks whose policy denies tracing
 *   lsm/bpf_map_free, lsm/bpf_prog_free (6.9+), *_free_security (up to 6.8): drop the records
 *                                  of freed objects (ids are already 0 there: lsm_objects maps
 *                                  the object pointer to its key), counted freed in the quota
 *
 * Every refusal is counted (reasons map) and reported to bpfnsd (violations ring buffer,
 * with BPFNS_EVENT_REFUSED).
 *
 * Not covered here: BPF_OBJ_GET of a pinned *link* (no hook sees the link before its fd is
 * installed; BTF objects cannot be pinned): the tracepoint backstop and the supervisor handle
 * it. Ownership of links and BTF objects is recorded by the tracepoint path (bpfns.bpf.c).
 *
 * Hook prototypes differ between kernels (6.18 adds a trailing `bool kernel` to bpf,
 * bpf_map_create and bpf_prog_load; 6.9 renamed the alloc/free hooks and changed the prog
 * hooks from bpf_prog_aux to bpf_prog): every program reads only leading arguments whose type
 * the loader checked in the running kernel's BTF (src/lsm.rs), never the return-value slot,
 * and every struct field through CO-RE.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "bpfns.h"
#include "maps.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define EPERM 1
#define EEXIST 17
#define EDQUOT 122

/* bpf(2) commands, flags and program types, from include/uapi/linux/bpf.h (stable ABI). */
#define CMD_MAP_CREATE 0
#define CMD_PROG_LOAD 5
#define BPF_F_TOKEN_FD (1u << 16)
#define CMD_BTF_GET_FD_BY_ID 19
#define CMD_LINK_GET_FD_BY_ID 30
#define PROG_TYPE_SYSCALL 31

/* Counters of this layer, in the shared stats array (indices 0-4 belong to bpfns.bpf.c). */
#define BPFNS_STAT_LSM_REFUSED 5 /* foreign opens refused with EPERM */
#define BPFNS_STAT_LSM_RECORDED 6 /* ownership records written at creation */
#define BPFNS_STAT_LSM_DROPPED 7 /* records dropped when the object was freed */

/* Object pointer (struct bpf_map *, or struct bpf_prog_aux * — a program's aux stays while the
 * verifier may reallocate the program) -> key of its ownership record. Only objects created by
 * namespace tasks are here, so it holds at most as many entries as obj_owner. Pinned as
 * <root>/maps/lsm_objects (an older preallocated 1 << 18 map is migrated by the loader). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNS_OWNERSHIP_CAPACITY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct obj_key);
} lsm_objects SEC(".maps");

/* Object pointer -> creating namespace, between the create hook and the first fd. Entries of
 * creations that fail in between are removed by the free hooks; LRU bounds them anyway.
 * Pinned as <root>/maps/lsm_pending, so that an upgrade's programs share it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} lsm_pending SEC(".maps");

/* Tracing-class program types (the kernel gates them behind CAP_PERFMON: they read kernel
 * memory or iterate every BPF object). Keep in step with tracing_class() in bpfns.bpf.c. */
static __always_inline bool lsm_tracing_class(__u32 type)
{
	switch (type) {
	case BPF_PROG_TYPE_KPROBE:
	case BPF_PROG_TYPE_TRACEPOINT:
	case BPF_PROG_TYPE_PERF_EVENT:
	case BPF_PROG_TYPE_RAW_TRACEPOINT:
	case BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE:
	case BPF_PROG_TYPE_TRACING:
	case BPF_PROG_TYPE_LSM:
	case BPF_PROG_TYPE_STRUCT_OPS:
	case BPF_PROG_TYPE_EXT:
		return true;
	default:
		return false;
	}
}

/* Whether namespace `ns`'s policy lets its members load tracing-class programs. */
static __always_inline bool lsm_ns_allows_tracing(__u32 ns)
{
	struct ns_info *ni = bpf_map_lookup_elem(&ns_table, &ns);

	return ni && (ni->depth & BPFNS_NS_ALLOW_TRACING);
}

/* The namespace of the current task, or 0 (root) when it has no tag. */
static __always_inline __u32 current_ns(void)
{
	struct task_tag *tag = bpf_task_storage_get(&task_ns, bpf_get_current_task_btf(), 0, 0);

	return tag ? tag->ns : BPFNS_ROOT;
}

/* Refuse the call with EPERM, counted and reported to bpfnsd (the task lives). */
static __always_inline int refuse(__u32 ns, __u32 cmd, __u32 kind, __u32 id, __u32 owner,
				  __u32 reason)
{
	stat_inc(BPFNS_STAT_LSM_REFUSED);
	reason_inc(BPFNS_REASONS_REFUSED + reason);
	emit(ns, cmd, kind, id, owner, reason | BPFNS_EVENT_REFUSED);
	return -EPERM;
}

/* Creation hooks: remember the object, which has no id yet, for its first fd. */
static __always_inline int created(__u64 ptr)
{
	__u32 ns = current_ns();

	if (ns != BPFNS_ROOT)
		bpf_map_update_elem(&lsm_pending, &ptr, &ns, BPF_ANY);
	return 0;
}

/*
 * An fd is being made for the object at `ptr` (kind, id): record ownership when this is its
 * creation by a namespace task, else refuse a namespace task whose namespace may not see it.
 * A creation whose record cannot be written (the namespace's quota, a full table) is refused
 * here, before the fd exists: the kernel then frees the object.
 */
static __always_inline int new_fd(__u64 ptr, __u32 kind, __u32 id)
{
	__u32 *pending = bpf_map_lookup_elem(&lsm_pending, &ptr);
	__u32 cmd = kind == BPFNS_KIND_MAP ? CMD_MAP_CREATE : CMD_PROG_LOAD;
	__u32 ns;

	if (pending) {
		struct obj_key key = { .kind = kind, .id = id };
		struct obj_owner val = { .ns = *pending };
		struct quota_check qc = {};
		int q, err;

		ns = *pending;
		bpf_map_delete_elem(&lsm_pending, &ptr);
		if (id == 0)
			return 0;
		q = quota_reserve(ns, kind, &qc);
		/* Over a limit: EDQUOT, as bpfnsd answers the creations it makes; a namespace
		 * without a known limit fails closed with EPERM (no quota its member can act on). */
		if (q == QUOTA_OVER) {
			refuse(ns, cmd, kind, id, qc.over, BPFNS_REASON_QUOTA);
			return -EDQUOT;
		}
		if (q == QUOTA_NOLIMIT)
			return refuse(ns, cmd, kind, id, qc.over, BPFNS_REASON_QUOTA);
		if (q != QUOTA_OK)
			return refuse(ns, cmd, kind, id, 0, BPFNS_REASON_UNRECORDED);
		/* A new id has no record: never overwrite one. */
		err = bpf_map_update_elem(&obj_owner, &key, &val, BPF_NOEXIST);
		if (err) {
			quota_unreserve(ns, kind);
			if (err != -EEXIST)
				stat_inc(BPFNS_STAT_FULL);
			return refuse(ns, cmd, kind, id, 0, BPFNS_REASON_UNRECORDED);
		}
		/* Without this entry the free hook cannot drop the record; bpfnsd's collector
		 * still does. */
		bpf_map_update_elem(&lsm_objects, &ptr, &key, BPF_ANY);
		stat_inc(BPFNS_STAT_LSM_RECORDED);
		quota_notice(ns, cmd, &qc);
		return 0;
	}
	ns = current_ns();
	if (ns == BPFNS_ROOT)
		return 0;
	__u32 owner = owner_of(kind, id);
	if (!visible(ns, owner))
		return refuse(ns, BPFNS_CMD_OPEN, kind, id, owner, BPFNS_REASON_FOREIGN);
	return 0;
}

/* The object at `ptr` is being freed: drop its records. */
static __always_inline void freed(__u64 ptr)
{
	struct obj_key *key;
	struct obj_owner *o;
	__u32 owner, kind;

	bpf_map_delete_elem(&lsm_pending, &ptr);
	key = bpf_map_lookup_elem(&lsm_objects, &ptr);
	if (!key)
		return;
	kind = key->kind;
	o = bpf_map_lookup_elem(&obj_owner, key);
	/* A quarantined record is still counted in the namespace it was charged to. */
	owner = o ? charged_ns(o) : BPFNS_ROOT;
	/* Whoever deletes the record (this hook, or bpfnsd's collector) counts it freed. */
	if (bpf_map_delete_elem(&obj_owner, key) == 0) {
		stat_inc(BPFNS_STAT_LSM_DROPPED);
		quota_kfreed(owner, kind);
		notify_gone(owner, key);
	}
	bpf_map_delete_elem(&lsm_objects, &ptr);
}

static __always_inline __u64 prog_key(struct bpf_prog *prog)
{
	return (__u64)BPF_CORE_READ(prog, aux);
}

/* ---- fds for maps and programs ------------------------------------------------------- */

SEC("lsm/bpf_map")
int BPF_PROG(lsm_bpf_map, struct bpf_map *map)
{
	return new_fd((__u64)map, BPFNS_KIND_MAP, BPF_CORE_READ(map, id));
}

SEC("lsm/bpf_prog")
int BPF_PROG(lsm_bpf_prog, struct bpf_prog *prog)
{
	struct bpf_prog_aux *aux = BPF_CORE_READ(prog, aux);

	return new_fd((__u64)aux, BPFNS_KIND_PROG, BPF_CORE_READ(aux, id));
}

/* ---- creation ------------------------------------------------------------------------ */

/* 6.9+: (struct bpf_map *map, union bpf_attr *attr, struct bpf_token *token[, bool kernel]) */
SEC("lsm/bpf_map_create")
int BPF_PROG(lsm_map_create, struct bpf_map *map)
{
	return created((__u64)map);
}

/* Up to 6.8: (struct bpf_map *map) */
SEC("lsm/bpf_map_alloc_security")
int BPF_PROG(lsm_map_alloc, struct bpf_map *map)
{
	return created((__u64)map);
}

/* 6.9+: (struct bpf_prog *prog, union bpf_attr *attr, struct bpf_token *token[, bool kernel]) */
SEC("lsm/bpf_prog_load")
int BPF_PROG(lsm_prog_load, struct bpf_prog *prog)
{
	return created(prog_key(prog));
}

/* Up to 6.8: (struct bpf_prog_aux *aux) */
SEC("lsm/bpf_prog_alloc_security")
int BPF_PROG(lsm_prog_alloc, struct bpf_prog_aux *aux)
{
	return created((__u64)aux);
}

/* ---- command level: links, BTF, program loads ------------------------------------------- */

/* The user namespace of the BPF token at fd `fd` of the current task, or NULL. Best effort:
 * another thread can swap the fd before the kernel takes the token; lsm_token_capable below is
 * what holds against that. */
static __always_inline struct user_namespace *token_userns(int fd)
{
	struct file *f = fd_file(bpf_get_current_task_btf(), fd);
	const unsigned char *nameptr;
	char name[10] = {};
	void *pd;

	/* A BPF token's file lives on bpffs. */
	if (!f || BPF_CORE_READ(f, f_inode, i_sb, s_magic) != BPF_FS_MAGIC)
		return NULL;
	nameptr = BPF_CORE_READ(f, f_path.dentry, d_name.name);
	if (bpf_probe_read_kernel_str(name, sizeof(name), nameptr) < 0)
		return NULL;
	if (name[0] != 'b' || name[1] != 'p' || name[2] != 'f' || name[3] != '-' || name[4] != 't' ||
	    name[5] != 'o' || name[6] != 'k' || name[7] != 'e' || name[8] != 'n' || name[9] != 0)
		return NULL;
	pd = BPF_CORE_READ(f, private_data);
	if (!pd)
		return NULL;
	return BPF_CORE_READ((struct bpf_token *)pd, userns);
}

/* Whether BPF_PROG_LOAD with `attr` would give the program perfmon power: the loader is
 * perfmon_capable() (CAP_PERFMON or CAP_SYS_ADMIN in the initial user namespace), or (6.9+)
 * it passes a BPF token and holds either capability in the token's user namespace. */
static __always_inline bool load_with_perfmon(union bpf_attr *attr)
{
	const struct cred *cred = BPF_CORE_READ(bpf_get_current_task_btf(), cred);

	if (perfmon_capable_cred(cred))
		return true;
	if (bpf_core_field_exists(attr->prog_token_fd) &&
	    (BPF_CORE_READ(attr, prog_flags) & BPF_F_TOKEN_FD)) {
		struct user_namespace *userns = token_userns(BPF_CORE_READ(attr, prog_token_fd));

		if (userns && perfmon_in(cred, userns))
			return true;
	}
	return false;
}

/* (int cmd, union bpf_attr *attr, unsigned int size[, bool kernel]); attr is the kernel's
 * copy, read after copy_from_user, so what is checked is what the command will use. */
SEC("lsm/bpf")
int BPF_PROG(lsm_bpf, int cmd, union bpf_attr *attr)
{
	__u32 ns, kind, id, owner;

	if (cmd != CMD_LINK_GET_FD_BY_ID && cmd != CMD_BTF_GET_FD_BY_ID && cmd != CMD_PROG_LOAD &&
	    cmd != CMD_MAP_CREATE)
		return 0;
	ns = current_ns();
	if (ns == BPFNS_ROOT)
		return 0;
	/* The namespace's policy on map, program and expected attach types, on the kernel's copy
	 * of the attr: a type rewritten after the supervisor looked is refused here too. */
	if (cmd == CMD_MAP_CREATE) {
		if (!ns_allows_type(ns, BPFNS_KIND_MAP, BPF_CORE_READ(attr, map_type)))
			return refuse(ns, cmd, BPFNS_KIND_MAP, 0, ns, BPFNS_REASON_PROG_TYPE);
		return 0;
	}
	if (cmd == CMD_PROG_LOAD) {
		__u32 type = BPF_CORE_READ(attr, prog_type);

		/* A syscall program can call bpf(BPF_MAP_GET_FD_BY_ID) from inside the kernel. */
		if (type == PROG_TYPE_SYSCALL)
			return refuse(ns, cmd, BPFNS_KIND_PROG, 0, ns, BPFNS_REASON_PROG_TYPE);
		if (!ns_allows_type(ns, BPFNS_KIND_PROG, type) ||
		    !ns_allows_attach(ns, BPF_CORE_READ(attr, expected_attach_type)))
			return refuse(ns, cmd, BPFNS_KIND_PROG, 0, ns, BPFNS_REASON_PROG_TYPE);
		if (lsm_ns_allows_tracing(ns))
			return 0;
		if (lsm_tracing_class(type))
			return refuse(ns, cmd, BPFNS_KIND_PROG, 0, ns, BPFNS_REASON_PROG_TYPE);
		/* Perfmon power lets a program of any type read kernel memory. */
		if (load_with_perfmon(attr))
			return refuse(ns, cmd, BPFNS_KIND_PROG, 0, ns, BPFNS_REASON_PERFMON);
		return 0;
	}
	if (cmd == CMD_LINK_GET_FD_BY_ID) {
		kind = BPFNS_KIND_LINK;
		id = BPF_CORE_READ(attr, link_id);
	} else {
		kind = BPFNS_KIND_BTF;
		id = BPF_CORE_READ(attr, btf_id);
	}
	owner = owner_of(kind, id);
	if (!visible(ns, owner))
		return refuse(ns, cmd, kind, id, owner, BPFNS_REASON_FOREIGN);
	return 0;
}

/* 6.9+: (const struct bpf_token *token, int cap). Through a BPF token, namespace tasks whose
 * policy denies tracing never get CAP_PERFMON's power (kernel-memory reads from any program
 * type, tracing program types): race-free, whatever fd swaps happen around lsm/bpf above. */
SEC("lsm/bpf_token_capable")
int BPF_PROG(lsm_token_capable, const struct bpf_token *token, int cap)
{
	__u32 ns;

	if (cap != CAP_PERFMON)
		return 0;
	ns = current_ns();
	if (ns == BPFNS_ROOT || lsm_ns_allows_tracing(ns))
		return 0;
	/* Not counted or reported: the verifier asks many times per program load. */
	return -EPERM;
}

/* ---- frees ----------------------------------------------------------------------------- */

/* 6.9+: (struct bpf_map *map) */
SEC("lsm/bpf_map_free")
int BPF_PROG(lsm_map_free, struct bpf_map *map)
{
	freed((__u64)map);
	return 0;
}

/* Up to 6.8: (struct bpf_map *map) */
SEC("lsm/bpf_map_free_security")
int BPF_PROG(lsm_map_free_sec, struct bpf_map *map)
{
	freed((__u64)map);
	return 0;
}

/* 6.9+: (struct bpf_prog *prog) */
SEC("lsm/bpf_prog_free")
int BPF_PROG(lsm_prog_free, struct bpf_prog *prog)
{
	freed(prog_key(prog));
	return 0;
}

/* Up to 6.8: (struct bpf_prog_aux *aux) */
SEC("lsm/bpf_prog_free_security")
int BPF_PROG(lsm_prog_free_sec, struct bpf_prog_aux *aux)
{
	freed((__u64)aux);
	return 0;
}
