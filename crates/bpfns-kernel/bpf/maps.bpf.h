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

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 18);
	__type(key, struct obj_key);
	__type(value, struct obj_owner);
} obj_owner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, __u32);
	__type(value, struct ns_info);
} ns_table SEC(".maps");

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

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += 1;
}

static __always_inline __u32 owner_of(__u32 kind, __u32 id)
{
	struct obj_key key = { .kind = kind, .id = id };
	struct obj_owner *o = bpf_map_lookup_elem(&obj_owner, &key);

	return o ? o->ns : BPFNS_ROOT;
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

#endif
