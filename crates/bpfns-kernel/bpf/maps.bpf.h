/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The state maps of the kernel side and the helpers that read them, shared by bpfns.bpf.c
 * (tracepoints, iterators) and bpfns_lsm.bpf.c (BPF LSM layer).
 *
 * Both objects define these maps identically and the loader pins them by name under
 * <root>/maps/, so the LSM object reuses the very maps the main object created. Never change
 * a name, type, size or flag here: pinned maps are reused across reloads and upgrades, and
 * libbpf refuses a pinned map whose definition differs.
 */
#ifndef BPFNS_MAPS_BPF_H
#define BPFNS_MAPS_BPF_H

#include "bpfns.h"

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_tag);
} task_ns SEC(".maps");

/* Not preallocated: entries cost memory only when used (namespaces' quotas bound them), and
 * the loader migrates the records of an older, preallocated 1 << 18 map (src/migrate.rs). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNS_OWNERSHIP_CAPACITY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct obj_key);
	__type(value, struct obj_owner);
} obj_owner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNS_NS_CAPACITY);
	__type(key, __u32);
	__type(value, struct ns_info);
} ns_table SEC(".maps");

/* Namespace -> the program and map types its policy allows (written by bpfnsd only for a
 * namespace whose policy restricts them; a new map, so older pinned state needs no change). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNS_NS_CAPACITY);
	__type(key, __u32);
	__type(value, struct ns_policy);
} ns_policy SEC(".maps");

/* Whether namespace `ns`'s policy allows the program (kind BPFNS_KIND_PROG) or map type
 * `type`: yes without an entry in ns_policy (no restriction but the tracing class). */
static __always_inline bool ns_allows_type(__u32 ns, __u32 kind, __u32 type)
{
	struct ns_policy *p = bpf_map_lookup_elem(&ns_policy, &ns);
	__u64 mask;

	if (!p)
		return true;
	mask = kind == BPFNS_KIND_PROG ? p->progs : p->maps;
	return type < 64 && (mask & (1ULL << type));
}

/* Whether namespace `ns`'s policy allows a program loaded for expected attach type `eat`:
 * 0 always (it is also every attach-less type's), others only by the policy's attachs. */
static __always_inline bool ns_allows_attach(__u32 ns, __u32 eat)
{
	struct ns_policy *p;

	if (eat == 0)
		return true;
	p = bpf_map_lookup_elem(&ns_policy, &ns);
	if (!p)
		return true;
	return eat < 64 && (p->attachs & (1ULL << eat));
}

/* Namespace -> its kernel-written record counters (entries made on first use). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNS_NS_CAPACITY);
	__type(key, __u32);
	__type(value, struct ns_kcount);
} quota_kernel SEC(".maps");

/* Namespace -> its limit and bpfnsd's counter (no entry: no limit of its own). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNS_NS_CAPACITY);
	__type(key, __u32);
	__type(value, struct ns_dquota);
} quota_daemon SEC(".maps");

/* Namespace -> its kernel-written per-kind counters (entries made on first use). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNS_NS_CAPACITY);
	__type(key, __u32);
	__type(value, struct ns_kind_kcount);
} kquota_kernel SEC(".maps");

/* Namespace -> its per-kind limits and bpfnsd's per-kind counters (no entry: no per-kind
 * limit, only the total). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNS_NS_CAPACITY);
	__type(key, __u32);
	__type(value, struct ns_kind_dquota);
} kquota_daemon SEC(".maps");

/* Cgroups bound to namespaces: an untagged task attached to one is tagged (bpfns.bpf.c,
 * on_cgroup_attach). bpfnsd binds a container's cgroups when it tags its init and drops them
 * with the namespace. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNS_CGROUP_CAPACITY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct cgroup_key);
	__type(value, struct cgroup_binding);
} cgroup_ns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BPFNS_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} violations SEC(".maps");

/* Stops, refusals and notices by reason (BPFNS_REASONS_*). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BPFNS_REASONS_MAX);
	__type(key, __u32);
	__type(value, __u64);
} reasons SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += 1;
}

static __always_inline void reason_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&reasons, &idx);

	if (v)
		*v += 1;
}

/* Send an event to bpfnsd (dropped when nobody reads and the ring is full). */
static __always_inline void emit(__u32 ns, __u32 cmd, __u32 kind, __u32 id, __u32 owner,
				 __u32 reason)
{
	struct violation v = {};
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	v.pid = pid_tgid >> 32;
	v.tid = (__u32)pid_tgid;
	v.ns = ns;
	v.cmd = cmd;
	v.kind = kind;
	v.id = id;
	v.owner = owner;
	v.reason = reason;
	bpf_get_current_comm(v.comm, sizeof(v.comm));
	bpf_ringbuf_output(&violations, &v, sizeof(v), 0);
}

static __always_inline __u32 owner_of(__u32 kind, __u32 id)
{
	struct obj_key key = { .kind = kind, .id = id };
	struct obj_owner *o = bpf_map_lookup_elem(&obj_owner, &key);

	return o ? o->ns : BPFNS_ROOT;
}

/* The namespace whose quota counts the record `o` (a quarantined record keeps it apart). */
static __always_inline __u32 charged_ns(const struct obj_owner *o)
{
	return o->ns == BPFNS_QUARANTINE ? o->charged : o->ns;
}

/* Is an object owned by `owner` visible from namespace `viewer`? (contract point (docs/design.md) 4) */
static __always_inline bool visible(__u32 viewer, __u32 owner)
{
	if (viewer == BPFNS_ROOT)
		return true;
	for (int i = 0; i <= BPFNS_MAX_DEPTH; i++) {
		struct ns_info *ni;

		if (owner == viewer)
			return true;
		if (owner == BPFNS_ROOT)
			return false;
		ni = bpf_map_lookup_elem(&ns_table, &owner);
		if (!ni)
			return false; /* unknown namespace: fail closed */
		owner = ni->parent;
	}
	return false;
}

/* ---- ownership-record quotas (see struct ns_kcount in bpfns.h) ------------------------ */

/* What a reservation found. */
struct quota_check {
	__u32 over;  /* the namespace whose limit refused the record */
	__u32 high;  /* a namespace whose records reached 3/4 of its limit with this one, or 0 */
	__u64 used;  /* records in use in `over` or `high` (with this one) */
	__u64 limit; /* its limit */
	__u32 kind;  /* over: 0 when the total refused it, else the kind whose limit did */
	__u32 pad;
};

#define QUOTA_OK 0
#define QUOTA_OVER 1   /* a limit on the chain refused it */
#define QUOTA_NOROOM 2 /* a counter could not be made (quota_kernel full or out of memory) */
/* A namespace on the chain is unknown to the namespace table, has no limit in quota_daemon,
 * or the chain does not reach the root: fail closed (bpfnsd writes a namespace's limit before
 * its table entry, and restores both at start; an entry missing means a write failed). */
#define QUOTA_NOLIMIT 3

/* The namespace's kernel-written counters, made zero on first use. */
static __always_inline struct ns_kcount *kcount(__u32 ns)
{
	struct ns_kcount *c = bpf_map_lookup_elem(&quota_kernel, &ns);

	if (!c) {
		struct ns_kcount zero = {};

		/* Another CPU may make it first: either way, look it up again. */
		bpf_map_update_elem(&quota_kernel, &ns, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&quota_kernel, &ns);
	}
	return c;
}

/* The namespace's kernel-written per-kind counters, made zero on first use. */
static __always_inline struct ns_kind_kcount *kind_kcount(__u32 ns)
{
	struct ns_kind_kcount *c = bpf_map_lookup_elem(&kquota_kernel, &ns);

	if (!c) {
		struct ns_kind_kcount zero = {};

		bpf_map_update_elem(&kquota_kernel, &ns, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&kquota_kernel, &ns);
	}
	return c;
}

/* The per-kind index of object kind `kind` (BPFNS_KIND_*), bounded for the verifier. */
static __always_inline __u32 kind_index(__u32 kind)
{
	return (kind - 1) & (BPFNS_KINDS - 1);
}

/* The parent of `ns`; BPFNS_QUARANTINE (no namespace) for an unknown one: walks end there. */
static __always_inline __u32 parent_ns(__u32 ns)
{
	struct ns_info *ni = bpf_map_lookup_elem(&ns_table, &ns);

	return ni ? ni->parent : BPFNS_QUARANTINE;
}

/* Add `delta` to `created` (the total and that of `kind`) of `ns` and its ancestors below the
 * root, stopping before `until` (BPFNS_ROOT: the whole chain) and at an unknown namespace. */
static __always_inline void quota_add_created(__u32 ns, __u32 until, __u64 delta, __u32 kind)
{
	__u32 ki = kind_index(kind);

	for (int i = 0; i <= BPFNS_MAX_DEPTH; i++) {
		struct ns_kcount *k;
		struct ns_kind_kcount *kk;

		if (ns == BPFNS_ROOT || ns == BPFNS_QUARANTINE || ns == until)
			return;
		k = bpf_map_lookup_elem(&quota_kernel, &ns);
		if (k)
			__sync_fetch_and_add(&k->created, delta);
		kk = bpf_map_lookup_elem(&kquota_kernel, &ns);
		if (kk)
			__sync_fetch_and_add(&kk->created[ki], delta);
		ns = parent_ns(ns);
	}
}

/*
 * Reserve one record of object kind `kind` for namespace `ns`: count it in `ns` and each
 * ancestor below the root, in the total and in that kind's counter, refusing it (and undoing
 * the counts) when that would exceed any of their limits: max_objects, or the limit of that
 * kind where one is set. Each counter is incremented before it is compared, so two racing
 * creators can never both take the last free record (at worst both are refused); bpfnsd's own
 * reservations (for programs and links it makes for members) follow the same order. Fails
 * closed: a namespace on the chain that the namespace table does not know, or that has no
 * limit, refuses the record (QUOTA_NOLIMIT), and so does a chain that does not reach the root
 * within BPFNS_MAX_DEPTH steps. A namespace without per-kind limits has only the total.
 */
static __always_inline int quota_reserve(__u32 ns, __u32 kind, struct quota_check *qc)
{
	__u32 cur = ns;
	__u32 ki = kind_index(kind);
	int err = QUOTA_NOLIMIT;

	for (int i = 0; i <= BPFNS_MAX_DEPTH; i++) {
		struct ns_info *ni;
		struct ns_kcount *k;
		struct ns_dquota *d;
		struct ns_kind_kcount *kk;
		struct ns_kind_dquota *kd;
		__s64 used;
		__u64 limit;

		if (cur == BPFNS_ROOT) {
			err = QUOTA_OK;
			break;
		}
		ni = bpf_map_lookup_elem(&ns_table, &cur);
		d = bpf_map_lookup_elem(&quota_daemon, &cur);
		if (!ni || !d) {
			qc->over = cur;
			qc->used = 0;
			qc->limit = 0;
			err = QUOTA_NOLIMIT;
			break;
		}
		k = kcount(cur);
		kk = kind_kcount(cur);
		if (!k || !kk) {
			err = QUOTA_NOROOM;
			break;
		}
		__sync_fetch_and_add(&k->created, 1);
		__sync_fetch_and_add(&kk->created[ki], 1);
		used = (__s64)(k->created - k->kfreed - d->dfreed);
		limit = d->limit;
		if (used > 0 && (__u64)used > limit) {
			__sync_fetch_and_add(&k->created, (__u64)-1);
			__sync_fetch_and_add(&kk->created[ki], (__u64)-1);
			qc->over = cur;
			qc->used = used - 1;
			qc->limit = limit;
			qc->kind = 0;
			err = QUOTA_OVER;
			break;
		}
		if (!qc->high && limit >= 4 && (__u64)used == (limit * 3 + 3) / 4) {
			qc->high = cur;
			qc->used = used;
			qc->limit = limit;
		}
		kd = bpf_map_lookup_elem(&kquota_daemon, &cur);
		if (kd && kd->limit[ki] != BPFNS_NO_LIMIT) {
			__s64 kused = (__s64)(kk->created[ki] - kk->kfreed[ki] - kd->dfreed[ki]);

			if (kused > 0 && (__u64)kused > kd->limit[ki]) {
				__sync_fetch_and_add(&k->created, (__u64)-1);
				__sync_fetch_and_add(&kk->created[ki], (__u64)-1);
				qc->over = cur;
				qc->used = kused - 1;
				qc->limit = kd->limit[ki];
				qc->kind = kind;
				err = QUOTA_OVER;
				break;
			}
		}
		cur = ni->parent;
	}
	if (err != QUOTA_OK)
		quota_add_created(ns, cur, (__u64)-1, kind);
	return err;
}

/* Undo a reservation whose record could not be written. */
static __always_inline void quota_unreserve(__u32 ns, __u32 kind)
{
	quota_add_created(ns, BPFNS_ROOT, (__u64)-1, kind);
}

/* A record of kind `kind` of `ns` was dropped by the kernel: count it freed in the namespace
 * and its ancestors below the root. */
static __always_inline void quota_kfreed(__u32 ns, __u32 kind)
{
	__u32 ki = kind_index(kind);

	for (int i = 0; i <= BPFNS_MAX_DEPTH; i++) {
		struct ns_kcount *k;
		struct ns_kind_kcount *kk;

		if (ns == BPFNS_ROOT || ns == BPFNS_QUARANTINE)
			return;
		k = bpf_map_lookup_elem(&quota_kernel, &ns);
		if (k)
			__sync_fetch_and_add(&k->kfreed, 1);
		kk = bpf_map_lookup_elem(&kquota_kernel, &ns);
		if (kk)
			__sync_fetch_and_add(&kk->kfreed[ki], 1);
		ns = parent_ns(ns);
	}
}

/* Tell bpfnsd that namespace qc->high crossed 3/4 of its limit. */
static __always_inline void quota_notice(__u32 ns, __u32 cmd, struct quota_check *qc)
{
	if (!qc->high)
		return;
	reason_inc(BPFNS_REASONS_NOTICES);
	emit(qc->high, cmd, 0, (__u32)qc->used, (__u32)qc->limit, BPFNS_NOTICE_QUOTA_HIGH);
}

/* ---- files and credentials --------------------------------------------------------------- */

/* Superblock magics, from include/uapi/linux/magic.h (stable ABI): a file is what its name says
 * only on the filesystem that makes such files. BPF objects (maps, programs, links, BTF) are
 * anonymous-inode files; a BPF token is a file on bpffs. */
#define ANON_INODE_FS_MAGIC 0x09041934
#define BPF_FS_MAGIC 0xcafe4a11

/* The file at descriptor `fd` of `task`, or NULL. */
static __always_inline struct file *fd_file(struct task_struct *task, long fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **arr;
	struct file *f = NULL;

	if (!fdt || fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	arr = BPF_CORE_READ(fdt, fd);
	bpf_core_read(&f, sizeof(f), &arr[fd]);
	return f;
}

#define CAP_SYS_ADMIN 21
#define CAP_PERFMON 38
#define PERFMON_CAPS ((1ull << CAP_PERFMON) | (1ull << CAP_SYS_ADMIN))

/* The effective capabilities of `cred`, as a bit mask. kernel_cap_t is { u64 val } since 6.3
 * and { u32 cap[2] } before: the same 8 bytes on little-endian x86-64. */
static __always_inline __u64 cap_effective(const struct cred *cred)
{
	__u64 caps = 0;

	bpf_probe_read_kernel(&caps, sizeof(caps),
			      __builtin_preserve_access_index(&cred->cap_effective));
	return caps;
}

/* Whether `cred` holds CAP_PERFMON or CAP_SYS_ADMIN in user namespace `target`, as the
 * kernel's cap_capable() decides: effective capabilities in its own user namespace, full
 * capabilities in the namespaces it (its euid) owns below it and their descendants. */
static __always_inline bool perfmon_in(const struct cred *cred, struct user_namespace *target)
{
	struct user_namespace *own = BPF_CORE_READ(cred, user_ns);
	int own_level = BPF_CORE_READ(own, level);
	__u32 euid = BPF_CORE_READ(cred, euid.val);

	for (int i = 0; i <= BPFNS_MAX_DEPTH + 1; i++) {
		struct user_namespace *parent;

		if (!target)
			return false;
		if (target == own)
			return cap_effective(cred) & PERFMON_CAPS;
		if (BPF_CORE_READ(target, level) <= own_level)
			return false;
		parent = BPF_CORE_READ(target, parent);
		if (parent == own && BPF_CORE_READ(target, owner.val) == euid)
			return true;
		target = parent;
	}
	return false;
}

/* perfmon_capable() of `cred`: CAP_PERFMON or CAP_SYS_ADMIN in the initial user namespace
 * (the only one at level 0). */
static __always_inline bool perfmon_capable_cred(const struct cred *cred)
{
	return BPF_CORE_READ(cred, user_ns, level) == 0 && (cap_effective(cred) & PERFMON_CAPS);
}

/*
 * Object events for `bpfns events`: object_created notices (bpfns.bpf.c, at the creating
 * syscall's exit) and, where BPF LSM drops the records of freed objects, object_gone notices
 * (bpfns_lsm.bpf.c; elsewhere bpfnsd's collector finds the freed objects). In a ring buffer of
 * their own, so that a member that creates objects in a loop cannot crowd violations out.
 *
 * object_events[0] != 0 while bpfnsd has a subscriber that wants them. Cost per object a
 * namespace task creates or frees: one array lookup while nobody subscribes; while somebody
 * does, a 64-byte ring-buffer write and bpfnsd's wake-up.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} object_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} object_notices SEC(".maps");

static __always_inline bool object_events_on(void)
{
	__u32 zero = 0;
	__u32 *on = bpf_map_lookup_elem(&object_events, &zero);

	return on && *on;
}

/* Object `key` of namespace `ns` was freed. The freeing context is not the creator (often a
 * kernel worker): no pid, uid or command. */
static __always_inline void notify_gone(__u32 ns, struct obj_key *key)
{
	struct object_notice n = {};

	if (!object_events_on())
		return;
	n.v.ns = ns;
	n.v.kind = key->kind;
	n.v.id = key->id;
	n.v.reason = BPFNS_NOTICE_OBJECT_GONE;
	bpf_ringbuf_output(&object_notices, &n, sizeof(n), 0);
}

#endif
