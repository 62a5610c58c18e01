// SPDX-License-Identifier: GPL-2.0
/*
 * bpfns kernel side.
 *
 * - task_ns:   which namespace every task is in (task-local storage; no entry = root),
 *              inherited by every new task at fork.
 * - obj_owner: which namespace owns every prog, map, link and BTF object created by a
 *              namespace task (no entry = root), recorded when bpf() returns the new fd
 *              (raw tracepoint sys_exit), only for the object that very call created, and
 *              within the namespace's quota of records (quota_kernel, quota_daemon); a task
 *              whose record cannot be written is stopped.
 * - ns_table:  namespace id -> parent, so the kernel can decide visibility on its own.
 * - backstop:  a namespace task that comes back from bpf() holding an fd of an object it
 *              may not see is killed before it returns to user space; so is one that
 *              loaded a program its namespace's policy forbids (syscall, tracing-class, or
 *              any type with perfmon power where tracing is denied; a program or map type
 *              outside the namespace's policy, ns_policy). Each stop is counted
 *              (reasons) and reported to bpfnsd (violations ring buffer); such a
 *              program is quarantined (owner BPFNS_QUARANTINE: no namespace sees it),
 *              so that a thread that pinned it before the kill landed gets nothing.
 * - iterators: list maps, progs and links with their owners in one read; tell the
 *              credentials a unix socket's peer connected with (iter_peer_files).
 *
 * Only raw tracepoints (tp_btf), iterators and task storage are used: BPF LSM and trampolines
 * are not available on every kernel bpfns targets (the LSM layer is a separate object,
 * bpfns_lsm.bpf.c, loaded where the kernel allows it). All state lives in named maps (never
 * .bss/.data; defined in maps.bpf.h, shared with the LSM object) so that a reload can reuse
 * the pinned maps and swap in new programs.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "bpfns.h"
#include "maps.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define SIGKILL 9
#define EEXIST 17

/* bpf(2) commands, from include/uapi/linux/bpf.h (stable ABI). */
#define CMD_MAP_CREATE 0
#define CMD_PROG_LOAD 5
#define CMD_OBJ_GET 7
#define CMD_PROG_GET_FD_BY_ID 13
#define CMD_MAP_GET_FD_BY_ID 14
#define CMD_RAW_TRACEPOINT_OPEN 17
#define CMD_BTF_LOAD 18
#define CMD_BTF_GET_FD_BY_ID 19
#define CMD_LINK_CREATE 28
#define CMD_LINK_GET_FD_BY_ID 30

/* What a BPF object fd refers to. */
struct obj_ref {
	__u32 kind;
	__u32 id;
	__u32 type;
	void *obj; /* struct bpf_map, bpf_prog, bpf_link or btf */
};

/*
 * Identify a BPF object by its file: anon inode name gives the kind, private_data the object.
 * The name alone is not proof: another thread may dup2() an ordinary file called "bpf-map"
 * onto the new fd number, and its private_data must then not be read as a struct bpf_map
 * (that would let a namespace forge an ownership record). Only the kernel's BPF code makes
 * anonymous-inode files with these names: the superblock is checked first
 * (ANON_INODE_FS_MAGIC, maps.bpf.h). An object whose id is 0 is being freed (the kernel
 * clears the id when the last reference goes: another thread closed or replaced the fd since
 * the call made it) and is no object to record.
 */
static __always_inline bool file_obj(struct file *f, struct obj_ref *ref)
{
	const unsigned char *nameptr;
	char name[10] = {};
	void *pd;

	if (!f)
		return false;
	if (BPF_CORE_READ(f, f_inode, i_sb, s_magic) != ANON_INODE_FS_MAGIC)
		return false;
	nameptr = BPF_CORE_READ(f, f_path.dentry, d_name.name);
	if (bpf_probe_read_kernel_str(name, sizeof(name), nameptr) < 0)
		return false;
	pd = BPF_CORE_READ(f, private_data);
	if (!pd)
		return false;
	ref->obj = pd;

	if (name[0] == 'b' && name[1] == 't' && name[2] == 'f' && name[3] == 0) {
		ref->kind = BPFNS_KIND_BTF;
		ref->id = BPF_CORE_READ((struct btf *)pd, id);
		ref->type = 0;
		return ref->id != 0;
	}
	if (name[0] != 'b' || name[1] != 'p' || name[2] != 'f' || (name[3] != '-' && name[3] != '_'))
		return false;
	if (name[4] == 'm' && name[5] == 'a' && name[6] == 'p' && name[7] == 0) {
		ref->kind = BPFNS_KIND_MAP;
		ref->id = BPF_CORE_READ((struct bpf_map *)pd, id);
		ref->type = BPF_CORE_READ((struct bpf_map *)pd, map_type);
		return ref->id != 0;
	}
	if (name[4] == 'p' && name[5] == 'r' && name[6] == 'o' && name[7] == 'g' && name[8] == 0) {
		ref->kind = BPFNS_KIND_PROG;
		ref->id = BPF_CORE_READ((struct bpf_prog *)pd, aux, id);
		ref->type = BPF_CORE_READ((struct bpf_prog *)pd, type);
		return ref->id != 0;
	}
	if (name[4] == 'l' && name[5] == 'i' && name[6] == 'n' && name[7] == 'k' && name[8] == 0) {
		ref->kind = BPFNS_KIND_LINK;
		ref->id = BPF_CORE_READ((struct bpf_link *)pd, id);
		ref->type = BPF_CORE_READ((struct bpf_link *)pd, type);
		return ref->id != 0;
	}
	return false;
}

static __always_inline void stop_task(struct task_tag *tag, __u32 cmd, struct obj_ref *ref,
				      __u32 owner, __u32 reason)
{
	/* SIGKILL is delivered before the task returns to user space; it takes the whole
	 * thread group, so no thread of the process gets to use the fd. */
	bpf_send_signal(SIGKILL);
	stat_inc(BPFNS_STAT_KILLED);
	reason_inc(reason);
	emit(tag->ns, cmd, ref ? ref->kind : 0, ref ? ref->id : 0, owner, reason);
}

/* Syscall numbers: x86-64 (and x32, with bit 30 set) and ia32; a namespace task must not
 * reach bpf() through an entry point the backstop does not watch. */
#define NR_BPF 321
#define NR_CLONE 56
#define NR_CLONE3 435
#define NR_IA32_BPF 357
#define NR_IA32_CLONE 120
#define X32_SYSCALL_BIT 0x40000000

/* Program types the kernel gates behind CAP_PERFMON (is_perfmon_prog_type), plus syscall
 * programs: they read kernel memory, iterate every BPF object, or call bpf() from inside
 * the kernel past this backstop. */
static __always_inline bool tracing_class(__u32 type)
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

/* The expected attach type a program was loaded for. */
static __always_inline __u32 prog_eat(struct bpf_prog *prog)
{
	return BPF_CORE_READ(prog, expected_attach_type);
}

static __always_inline bool ns_allows_tracing(__u32 ns)
{
	struct ns_info *ni = bpf_map_lookup_elem(&ns_table, &ns);

	return ni && (ni->depth & BPFNS_NS_ALLOW_TRACING);
}

/* The kind of object each creation command makes. */
static __always_inline __u32 created_kind(__u32 cmd)
{
	switch (cmd) {
	case CMD_MAP_CREATE:
		return BPFNS_KIND_MAP;
	case CMD_PROG_LOAD:
		return BPFNS_KIND_PROG;
	case CMD_BTF_LOAD:
		return BPFNS_KIND_BTF;
	default: /* CMD_LINK_CREATE, CMD_RAW_TRACEPOINT_OPEN */
		return BPFNS_KIND_LINK;
	}
}

/* Whether the program `prog` got perfmon power when it was loaded with credentials `cred` (the
 * credentials of the file bpf() returned for it: the loader's): the verifier allows pointer
 * leaks and bpf_base_func_proto() gives every program type bpf_probe_read_kernel,
 * bpf_get_current_task and the like when the loader is perfmon_capable() or, with a BPF token
 * (6.9+), holds CAP_PERFMON or CAP_SYS_ADMIN in the token's user namespace. */
static __always_inline bool loaded_with_perfmon(const struct cred *cred, struct bpf_prog *prog)
{
	if (perfmon_capable_cred(cred))
		return true;
	if (bpf_core_field_exists(((struct bpf_prog_aux *)0)->token)) {
		struct bpf_token *token = BPF_CORE_READ(prog, aux, token);

		if (token && perfmon_in(cred, BPF_CORE_READ(token, userns)))
			return true;
	}
	return false;
}

static __always_inline void notify_created(struct task_tag *tag, __u32 cmd, struct obj_ref *ref)
{
	struct object_notice n = {};
	struct bpf_prog_aux *aux;
	__u64 pid_tgid;

	if (!object_events_on())
		return;
	pid_tgid = bpf_get_current_pid_tgid();
	n.v.pid = pid_tgid >> 32;
	n.v.tid = (__u32)pid_tgid;
	n.v.ns = tag->ns;
	n.v.cmd = cmd;
	n.v.kind = ref->kind;
	n.v.id = ref->id;
	n.v.owner = (__u32)bpf_get_current_uid_gid();
	n.v.reason = BPFNS_NOTICE_OBJECT_CREATED;
	bpf_get_current_comm(n.v.comm, sizeof(n.v.comm));
	/* Names are BPF_OBJ_NAME_LEN (16) bytes, NUL-padded. */
	if (ref->kind == BPFNS_KIND_MAP) {
		struct bpf_map *map = ref->obj;

		bpf_core_read(n.name, sizeof(n.name), &map->name);
	} else if (ref->kind == BPFNS_KIND_PROG) {
		struct bpf_prog *prog = ref->obj;

		aux = BPF_CORE_READ(prog, aux);
		if (aux)
			bpf_core_read(n.name, sizeof(n.name), &aux->name);
	} else if (ref->kind == BPFNS_KIND_LINK) {
		struct bpf_link *link = ref->obj;

		aux = BPF_CORE_READ(link, prog, aux);
		if (aux)
			bpf_core_read(n.name, sizeof(n.name), &aux->name);
	}
	n.name[sizeof(n.name) - 1] = 0;
	bpf_ringbuf_output(&object_notices, &n, sizeof(n), 0);
}

/*
 * Quarantine the record at `key`, charged to namespace `ns`: the object stays counted in the
 * namespace's quota until it is freed, but no namespace sees it any more (its pins, its id:
 * refused to every member), the root does. Used for a program whose loader is being stopped,
 * which another thread of the loader may have pinned or sent away before the kill lands. If
 * the record cannot be rewritten it is dropped (no record is the root's, invisible to every
 * namespace too) and the namespace's count given back.
 */
static __always_inline void quarantine(struct obj_key *key, __u32 ns)
{
	struct obj_owner q = { .ns = BPFNS_QUARANTINE, .charged = ns };

	if (bpf_map_update_elem(&obj_owner, key, &q, BPF_EXIST) == 0)
		return;
	if (bpf_map_delete_elem(&obj_owner, key) == 0)
		quota_unreserve(ns, key->kind);
}

/*
 * A creation command returned fd `ret`: record the owner of the object this call created.
 *
 * Another thread can close that fd and dup2() any file onto its number before this runs, so
 * the file there is taken as this call's object only if it is a BPF object of the kind the
 * command creates, and either already recorded as this namespace's (by the BPF LSM layer at
 * creation, or by bpfnsd for a program it loaded on this task's behalf and injected: that
 * file carries bpfnsd's credentials) or made with this task's credentials (the kernel makes a
 * new object's file with current_cred(); a file received from another process carries that
 * process's, and threads share theirs). A record is written only where none exists; any
 * other file stops the task, and the object this call made, which is not on the fd, stays
 * unrecorded: the root's, which no namespace sees. A record that cannot be written (quota,
 * full table) stops the task: a live object is never left owned by nobody while its creator
 * goes on (over a quota it stays unrecorded, so that it takes no entry of the table).
 *
 * A program this namespace may not have (syscall; tracing-class or loaded with perfmon power
 * where tracing is denied) stops the task and is quarantined: a thread that pinned it or sent
 * it away before the kill gets nothing any member can open.
 */
static __always_inline int record_created(struct task_struct *task, struct task_tag *tag,
					  __u32 cmd, long ret)
{
	struct file *f = fd_file(task, ret);
	struct obj_ref ref = {};
	struct obj_key key;
	struct obj_owner val = { .ns = tag->ns };
	struct obj_owner *have;
	struct quota_check qc = {};
	const struct cred *cred;
	int q, err;

	if (!file_obj(f, &ref) || ref.kind != created_kind(cmd)) {
		stop_task(tag, cmd, &ref, ref.kind ? owner_of(ref.kind, ref.id) : 0,
			  BPFNS_REASON_HIJACK);
		return 0;
	}
	cred = BPF_CORE_READ(f, f_cred);
	key.kind = ref.kind;
	key.id = ref.id;
	have = bpf_map_lookup_elem(&obj_owner, &key);
	if (have) {
		if (have->ns != tag->ns) {
			stop_task(tag, cmd, &ref, have->ns, BPFNS_REASON_HIJACK);
			return 0;
		}
	} else {
		if (cred != BPF_CORE_READ(task, cred)) {
			stop_task(tag, cmd, &ref, ref.kind ? owner_of(ref.kind, ref.id) : 0,
				  BPFNS_REASON_HIJACK);
			return 0;
		}
		q = quota_reserve(tag->ns, ref.kind, &qc);
		if (q == QUOTA_OVER || q == QUOTA_NOLIMIT) {
			stop_task(tag, cmd, &ref, qc.over, BPFNS_REASON_QUOTA);
			return 0;
		}
		if (q != QUOTA_OK) {
			stop_task(tag, cmd, &ref, 0, BPFNS_REASON_UNRECORDED);
			return 0;
		}
		err = bpf_map_update_elem(&obj_owner, &key, &val, BPF_NOEXIST);
		if (err) {
			quota_unreserve(tag->ns, ref.kind);
			if (err != -EEXIST)
				stat_inc(BPFNS_STAT_FULL);
			stop_task(tag, cmd, &ref, 0, BPFNS_REASON_UNRECORDED);
			return 0;
		}
		stat_inc(BPFNS_STAT_RECORDED);
		quota_notice(tag->ns, cmd, &qc);
	}
	/* A program or map type outside the namespace's policy: the supervisor refused it, so
	 * the caller rewrote its attr after the supervisor's look (or went around it). */
	if ((ref.kind == BPFNS_KIND_PROG || ref.kind == BPFNS_KIND_MAP) &&
	    (!ns_allows_type(tag->ns, ref.kind, ref.type) ||
	     (ref.kind == BPFNS_KIND_PROG && !ns_allows_attach(tag->ns, prog_eat(ref.obj))))) {
		quarantine(&key, tag->ns);
		stop_task(tag, cmd, &ref, tag->ns, BPFNS_REASON_PROG_TYPE);
		return 0;
	}
	if (ref.kind != BPFNS_KIND_PROG) {
		notify_created(tag, cmd, &ref);
		return 0;
	}
	/* Syscall programs can call bpf(BPF_MAP_GET_FD_BY_ID) from inside the kernel, past this
	 * backstop: namespace tasks may never load them. Tracing-class programs (iterators over
	 * all BPF objects among them), and programs of any type loaded with perfmon power
	 * (kernel-memory reads), only where the namespace's policy allows tracing. */
	if (ref.type == BPF_PROG_TYPE_SYSCALL ||
	    (tracing_class(ref.type) && !ns_allows_tracing(tag->ns))) {
		quarantine(&key, tag->ns);
		stop_task(tag, cmd, &ref, tag->ns, BPFNS_REASON_PROG_TYPE);
	} else if (!ns_allows_tracing(tag->ns) && loaded_with_perfmon(cred, ref.obj)) {
		quarantine(&key, tag->ns);
		stop_task(tag, cmd, &ref, tag->ns, BPFNS_REASON_PERFMON);
	} else {
		notify_created(tag, cmd, &ref);
	}
	return 0;
}

static __always_inline int bpf_exit(struct task_struct *task, struct task_tag *tag, __u32 cmd,
				    long ret)
{
	struct obj_ref ref = {};
	__u32 owner;

	switch (cmd) {
	case CMD_MAP_CREATE:
	case CMD_PROG_LOAD:
	case CMD_BTF_LOAD:
	case CMD_LINK_CREATE:
	case CMD_RAW_TRACEPOINT_OPEN:
		return record_created(task, tag, cmd, ret);
	case CMD_OBJ_GET:
	case CMD_PROG_GET_FD_BY_ID:
	case CMD_MAP_GET_FD_BY_ID:
	case CMD_BTF_GET_FD_BY_ID:
	case CMD_LINK_GET_FD_BY_ID:
		if (!file_obj(fd_file(task, ret), &ref))
			return 0;
		owner = owner_of(ref.kind, ref.id);
		if (!visible(tag->ns, owner))
			stop_task(tag, cmd, &ref, owner, BPFNS_REASON_FOREIGN);
		return 0;
	default:
		return 0;
	}
}

/*
 * The namespace cgroup `cg` is bound to (0: none). Read through probe reads: only ids are
 * needed, and they work alike on every kernel bpfns supports.
 */
static __always_inline __u32 cgroup_bound(struct cgroup *cg)
{
	struct cgroup_key key = {};
	struct cgroup_binding *b;

	if (!cg)
		return 0;
	key.hierarchy = BPF_CORE_READ(cg, root, hierarchy_id);
	key.id = BPF_CORE_READ(cg, kn, id);
	b = bpf_map_lookup_elem(&cgroup_ns, &key);
	return b ? b->ns : 0;
}

/* The namespace of the first bound cgroup `task` is in: its cgroup v2 cgroup, then its
 * cgroups of every v1 hierarchy with a controller. */
static __always_inline __u32 bound_ns(struct task_struct *task)
{
	struct css_set *cs = BPF_CORE_READ(task, cgroups);
	__u32 n = bpf_core_enum_value(enum cgroup_subsys_id, CGROUP_SUBSYS_COUNT);
	__u32 ns, i;

	if (!cs)
		return 0;
	ns = cgroup_bound(BPF_CORE_READ(cs, dfl_cgrp));
	for (i = 0; !ns && i < 16 && i < n; i++) {
		struct cgroup_subsys_state *css = NULL;

		if (bpf_core_read(&css, sizeof(css), &cs->subsys[i]) || !css)
			continue;
		ns = cgroup_bound(BPF_CORE_READ(css, cgroup));
	}
	return ns;
}

/* Tag untagged `task` into `ns` (0: leave it) with `flags`. */
static __always_inline void tag_bound(struct task_struct *task, __u32 ns, __u32 flags)
{
	struct task_tag tag = { .ns = ns, .flags = flags };

	if (!ns)
		return;
	if (bpf_task_storage_get(&task_ns, task, &tag, BPF_LOCAL_STORAGE_GET_F_CREATE))
		stat_inc(BPFNS_STAT_CGROUP);
	else
		stat_inc(BPFNS_STAT_TAG_FAILED);
}

/*
 * An untagged thread of a tagged process takes its leader's tag: the kernel tags only the
 * leader when a whole process is moved into a bound cgroup (on_cgroup_attach), and a process is
 * in one namespace (its threads share its fds and memory). NULL: the leader is untagged too.
 */
static __always_inline struct task_tag *from_leader(struct task_struct *task)
{
	struct task_struct *leader = task->group_leader;
	struct task_tag *lt, tag;

	if (!leader || leader == task)
		return 0;
	lt = bpf_task_storage_get(&task_ns, leader, 0, 0);
	if (!lt)
		return 0;
	tag.ns = lt->ns;
	tag.flags = lt->flags;
	return bpf_task_storage_get(&task_ns, task, &tag, BPF_LOCAL_STORAGE_GET_F_CREATE);
}

/*
 * Every syscall exit, filtered on the syscall number first so that other syscalls cost one
 * compare. A raw tracepoint (unlike a perf-event tracepoint) gives a link that can be pinned,
 * so it keeps running when no bpfns process is alive.
 */
SEC("tp_btf/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *task;
	struct task_tag *tag;
	/* A direct (BTF) load, not a probe-read helper call: this runs on every syscall. */
	long nr = regs->orig_ax;
	bool ia32 = false;

	if ((nr & ~X32_SYSCALL_BIT) == NR_BPF) {
	} else if (nr == NR_IA32_BPF) {
		ia32 = true;
	} else if (nr != NR_CLONE && nr != NR_CLONE3 && nr != NR_IA32_CLONE) {
		return 0;
	}
	task = bpf_get_current_task_btf();
	tag = bpf_task_storage_get(&task_ns, task, 0, 0);
	if (!tag)
		tag = from_leader(task);
	/* Root tasks: nothing to record (no entry = root) and nothing to forbid. */
	if (!tag)
		return 0;
	/* The child of clone(CLONE_FILES) leaves the kernel through here (ret_from_fork). */
	if (tag->flags & BPFNS_TASK_DOOMED) {
		stop_task(tag, 0, 0, 0, BPFNS_REASON_SHARED_FILES);
		stat_inc(BPFNS_STAT_DOOMED);
		return 0;
	}
	if (tag->ns == BPFNS_ROOT || ret < 0 || nr == NR_CLONE || nr == NR_CLONE3 ||
	    nr == NR_IA32_CLONE)
		return 0;
	/* ia32 passes the first argument in ebx; x86-64 and x32 in rdi. */
	return bpf_exit(task, tag, ia32 ? (__u32)regs->bx : (__u32)regs->di, ret);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	struct task_tag *pt, *ct;
	struct task_tag tag = {};

	pt = bpf_task_storage_get(&task_ns, parent, 0, 0);
	if (!pt)
		pt = from_leader(parent);
	if (!pt) {
		/* An untagged parent's child is in the parent's cgroups, unless it was made
		 * straight into another (clone3 CLONE_INTO_CGROUP: how runtimes join a process to a
		 * container on cgroup v2, with no attach event). Runtime code until it execs. */
		if (BPF_CORE_READ(child, cgroups) == BPF_CORE_READ(parent, cgroups))
			return 0;
		tag_bound(child, bound_ns(child), BPFNS_TASK_RUNTIME);
		return 0;
	}
	tag.ns = pt->ns;
	tag.flags = pt->flags & BPFNS_TASK_RUNTIME;
	/* A new process that shares the fd table of a namespace task could keep an fd the
	 * backstop kills the namespace task for: such a child never runs (on_sys_exit). Runtime
	 * code before its exec may (BPFNS_TASK_RUNTIME): the child is runtime code too. */
	if (tag.ns != BPFNS_ROOT && child->files == parent->files && child->tgid != parent->tgid &&
	    !(pt->flags & BPFNS_TASK_RUNTIME))
		tag.flags |= BPFNS_TASK_DOOMED;
	ct = bpf_task_storage_get(&task_ns, child, &tag, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!ct) {
		stat_inc(BPFNS_STAT_TAG_FAILED);
		return 0;
	}
	ct->ns = tag.ns;
	ct->flags = tag.flags;
	return 0;
}

/*
 * execve: the task runs a new program, with an fd table of its own (exec unshares it), so the
 * runtime's exemption ends here. An untagged task in a bound cgroup is tagged: a thread of a
 * process the kernel tagged by its leader's move into the cgroup (the leader is gone once
 * another thread execs).
 */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct task_tag *tag = bpf_task_storage_get(&task_ns, p, 0, 0);

	if (tag) {
		if (tag->flags & BPFNS_TASK_RUNTIME)
			tag->flags &= ~BPFNS_TASK_RUNTIME;
		return 0;
	}
	tag_bound(p, bound_ns(p), 0);
	return 0;
}

/*
 * A task was moved into cgroup `dst` (cgroup.procs, or tasks on v1): if that cgroup is bound to a
 * namespace and the task untagged, it joins the namespace before it runs again: how runtimes
 * join a process to a running container (podman exec). A task of any namespace, the root's
 * included once tagged, is never moved. With `threadgroup` the leader is reported; the other
 * threads of its process take its tag at their next fork, bpf(), clone() or exec
 * (from_leader, on_exec).
 */
SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(on_cgroup_attach, struct cgroup *dst, const char *path, struct task_struct *task,
	     bool threadgroup)
{
	if (bpf_task_storage_get(&task_ns, task, 0, 0))
		return 0;
	tag_bound(task, cgroup_bound(dst), BPFNS_TASK_RUNTIME);
	return 0;
}

static __always_inline void emit_record(struct seq_file *seq, struct obj_record *r, __u32 size)
{
	r->owner = owner_of(r->kind, r->id);
	r->size = size;
	bpf_seq_write(seq, r, size);
}

SEC("iter/bpf_map")
int iter_maps(struct bpf_iter__bpf_map *ctx)
{
	struct bpf_map *map = ctx->map;
	struct map_record r = {};

	if (!map)
		return 0;
	r.head.kind = BPFNS_KIND_MAP;
	r.head.id = map->id;
	r.head.type = map->map_type;
	bpf_probe_read_kernel_str(r.head.name, sizeof(r.head.name), map->name);
	r.key_size = map->key_size;
	r.value_size = map->value_size;
	r.max_entries = map->max_entries;
	r.map_flags = map->map_flags;
	r.btf_id = BPF_CORE_READ(map, btf, id);
	emit_record(ctx->meta->seq, &r.head, sizeof(r));
	return 0;
}

SEC("iter/bpf_prog")
int iter_progs(struct bpf_iter__bpf_prog *ctx)
{
	struct bpf_prog *prog = ctx->prog;
	struct prog_record r = {};
	struct bpf_map **maps;
	__u32 i, n;

	if (!prog)
		return 0;
	r.head.kind = BPFNS_KIND_PROG;
	r.head.id = BPF_CORE_READ(prog, aux, id);
	r.head.type = prog->type;
	bpf_probe_read_kernel_str(r.head.name, sizeof(r.head.name), BPF_CORE_READ(prog, aux, name));
	bpf_core_read(&r.tag, sizeof(r.tag), &prog->tag);
	r.load_time = BPF_CORE_READ(prog, aux, load_time);
	r.xlated_len = BPF_CORE_READ(prog, len) * 8; /* sizeof(struct bpf_insn) */
	r.jited_len = BPF_CORE_READ(prog, jited_len);
	r.uid = BPF_CORE_READ(prog, aux, user, uid.val);
	r.btf_id = BPF_CORE_READ(prog, aux, btf, id);
	r.pages = BPF_CORE_READ(prog, pages);
	/* Read as they are now: a map bound meanwhile (BPF_PROG_BIND_MAP) may be missed. */
	n = BPF_CORE_READ(prog, aux, used_map_cnt);
	r.nr_map_ids = n;
	maps = BPF_CORE_READ(prog, aux, used_maps);
	for (i = 0; i < BPFNS_PROG_MAP_IDS && i < n; i++) {
		struct bpf_map *m = NULL;

		if (bpf_probe_read_kernel(&m, sizeof(m), &maps[i]) || !m)
			break;
		r.map_ids[i] = BPF_CORE_READ(m, id);
	}
	emit_record(ctx->meta->seq, &r.head, sizeof(r));
	return 0;
}

SEC("iter/bpf_link")
int iter_links(struct bpf_iter__bpf_link *ctx)
{
	struct bpf_link *link = ctx->link;
	struct obj_record r = {};

	/* A link in the middle of its creation is in the kernel's IDR before its id is set
	 * (bpf_link_prime, then bpf_link_settle): it has no id yet and cannot be opened by id
	 * (EAGAIN). It is listed once its creation returns. */
	if (!link || !link->id)
		return 0;
	r.kind = BPFNS_KIND_LINK;
	r.id = link->id;
	r.type = link->type;
	r.extra = BPF_CORE_READ(link, prog, aux, id);
	bpf_probe_read_kernel_str(r.name, sizeof(r.name), BPF_CORE_READ(link, prog, aux, name));
	emit_record(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

/* Tagged tasks: one task_record per thread that has a tag (untagged ones are root). Tasks that
 * have exited (zombies whose parent has not reaped them, and tasks being released) are not
 * listed: they run no code and make no call, and a zombie goes only when its parent wants, so
 * counting it as a member would let that parent keep its namespace from being deleted.
 * Except a thread-group leader that exited while other threads of its process live: it stands
 * for that process at its pid. Left out, a process could keep out of a walk's way (pid order)
 * by exiting its leader and having a later thread exec, which moves that thread to the
 * leader's pid, behind the walk, over and over. */
SEC("iter/task")
int iter_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct task_record r = {};
	struct task_tag *tag;

	if (!task)
		return 0;
	if (task->exit_state &&
	    (task->pid != task->tgid || BPF_CORE_READ(task, signal, live.counter) <= 0))
		return 0;
	tag = bpf_task_storage_get(&task_ns, task, 0, 0);
	if (!tag)
		return 0;
	r.tid = task->pid;
	r.tgid = task->tgid;
	r.ns = tag->ns;
	r.flags = tag->flags;
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

/* The sockets iter_peer_files reports, keyed by process and fd (tgid << 32 | fd): bpfnsd
 * (or its listener keeper) adds the fd of the connection it asks about, reads the iterator
 * over its own process and removes the key again (several threads and processes may ask at
 * once). Not state: never migrated. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPFNS_PEER_QUERIES);
	__type(key, __u64);
	__type(value, __u8);
} peer_query SEC(".maps");

/* The credentials a socket's peer had when it connected. SO_PEERCRED gives only their uid and
 * gid, and /proc tells capabilities as they are now: a process that connected without
 * privileges and then ran a program with file capabilities would be served with them. The
 * kernel keeps the connector's whole credentials in sk_peer_cred; each capability set's 8
 * bytes are read as they are (two __u32 before 6.3, one u64 since: the same bytes). */
static __always_inline void emit_peer(struct seq_file *seq, __u32 fd, struct sock *sk)
{
	struct peer_record r = {};
	const struct cred *cred = BPF_CORE_READ(sk, sk_peer_cred);
	struct pid *pid = BPF_CORE_READ(sk, sk_peer_pid);

	if (!cred || !pid)
		return;
	r.fd = fd;
	r.euid = BPF_CORE_READ(cred, euid.val);
	r.egid = BPF_CORE_READ(cred, egid.val);
	if (bpf_core_read(&r.cap_effective, sizeof(r.cap_effective), &cred->cap_effective) ||
	    bpf_core_read(&r.cap_permitted, sizeof(r.cap_permitted), &cred->cap_permitted) ||
	    bpf_core_read(&r.pid, sizeof(r.pid), &pid->numbers[0].nr))
		return;
	r.userns = BPF_CORE_READ(cred, user_ns, ns.inum);
	bpf_seq_write(seq, &r, sizeof(r));
}

/* Run over bpfnsd's own process only (a link made per question, with its tid): the cost is
 * that of its own fd table, whatever the host holds, and the answer is the very file asked
 * about, in whatever network namespace its socket was made. */
SEC("iter/task_file")
int iter_peer_files(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct socket *sock;
	__u32 fd = ctx->fd;
	__u64 key;

	if (!file || !task)
		return 0;
	key = (__u64)task->tgid << 32 | fd;
	if (!bpf_map_lookup_elem(&peer_query, &key))
		return 0;
	sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	emit_peer(ctx->meta->seq, fd, BPF_CORE_READ(sock, sk));
	return 0;
}
