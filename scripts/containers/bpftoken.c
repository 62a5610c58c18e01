/* bpftoken: BPF tokens from inside a container, with raw bpf() calls (Debian's bpftool, on
 * libbpf 1.1, cannot use tokens). Built static by scripts/containers/setup.sh into the test
 * image as /bin/bpftoken. Prints key=value lines; exits 0 unless its arguments are wrong.
 *
 *   bpftoken create NAME   BPF_TOKEN_CREATE from /sys/fs/bpf, MAP_CREATE with the token (an
 *                          array named NAME), pin it at /sys/fs/bpf/NAME, list map ids
 *                          (MAP_GET_NEXT_ID), open its own by id (MAP_GET_FD_BY_ID), and
 *                          print what the token delegates
 *   bpftoken notoken       MAP_CREATE (a queue, which needs CAP_BPF) without a token
 *   bpftoken open ID       MAP_GET_FD_BY_ID of ID, without and with a token
 *   bpftoken widen         try to get a bpffs that delegates more: a new context with
 *                          delegate_*=any, and /sys/fs/bpf reconfigured so
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

enum {
	MAP_CREATE = 0, OBJ_PIN = 6, MAP_GET_NEXT_ID = 12, MAP_GET_FD_BY_ID = 14,
	OBJ_GET_INFO_BY_FD = 15, TOKEN_CREATE = 36,
};
#define F_TOKEN_FD (1U << 16)
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_RECONFIGURE 7

static long bpf(int cmd, void *attr, unsigned size)
{
	return syscall(SYS_bpf, cmd, attr, size);
}

static void put32(unsigned char *a, int off, uint32_t v) { memcpy(a + off, &v, 4); }
static void put64(unsigned char *a, int off, uint64_t v) { memcpy(a + off, &v, 8); }
static uint32_t get32(unsigned char *a, int off) { uint32_t v; memcpy(&v, a + off, 4); return v; }

static const char *err(void) { return strerrorname_np(errno) ? strerrorname_np(errno) : "?"; }

/* An array (with a token), or a queue: a type that needs CAP_BPF whatever
 * kernel.unprivileged_bpf_disabled says. */
static int map_create(const char *name, int token)
{
	unsigned char a[128] = {0};
	put32(a, 0, token >= 0 ? 2 /* ARRAY */ : 22 /* QUEUE */);
	put32(a, 4, token >= 0 ? 4 : 0);
	put32(a, 8, 4);
	put32(a, 12, 1);
	strncpy((char *)a + 28, name, 15);
	if (token >= 0) {
		put32(a, 16, F_TOKEN_FD);
		put32(a, 76, token);
	}
	return bpf(MAP_CREATE, a, sizeof(a));
}

/* MAP_GET_FD_BY_ID, with the token in fd_by_id_token_fd where one is given. */
static int open_id(uint32_t id, int token)
{
	unsigned char a[128] = {0};
	put32(a, 0, id);
	if (token >= 0) {
		put32(a, 8, F_TOKEN_FD);
		put32(a, 12, token);
	}
	return bpf(MAP_GET_FD_BY_ID, a, sizeof(a));
}

static int token_create(void)
{
	int fs = open("/sys/fs/bpf", O_RDONLY | O_DIRECTORY);
	if (fs < 0)
		return -1;
	unsigned char t[16] = {0};
	put32(t, 4, fs);
	int token = bpf(TOKEN_CREATE, t, sizeof(t));
	close(fs);
	return token;
}

static int create(const char *name)
{
	int token = token_create();
	if (token < 0) {
		printf("token=error:%s\n", err());
		return 0;
	}
	printf("token=ok\n");
	uint64_t info[4] = {0};
	unsigned char g[128] = {0};
	put32(g, 0, token);
	put32(g, 4, sizeof(info));
	put64(g, 8, (uintptr_t)info);
	if (bpf(OBJ_GET_INFO_BY_FD, g, sizeof(g)) == 0)
		printf("allowed_cmds=%#llx\nallowed_maps=%#llx\nallowed_progs=%#llx\n"
		       "allowed_attachs=%#llx\n",
		       (unsigned long long)info[0], (unsigned long long)info[1],
		       (unsigned long long)info[2], (unsigned long long)info[3]);
	else
		printf("token_info=error:%s\n", err());
	int map = map_create(name, token);
	if (map < 0) {
		printf("map=error:%s\n", err());
		return 0;
	}
	uint32_t info_m[32] = {0};
	memset(g, 0, sizeof(g));
	put32(g, 0, map);
	put32(g, 4, sizeof(info_m));
	put64(g, 8, (uintptr_t)info_m);
	uint32_t own = 0;
	if (bpf(OBJ_GET_INFO_BY_FD, g, sizeof(g)) == 0)
		own = info_m[1]; /* bpf_map_info.id */
	printf("map=ok\nmap_id=%u\n", own);
	char path[256];
	snprintf(path, sizeof(path), "/sys/fs/bpf/%s", name);
	unsigned char p[128] = {0};
	put64(p, 0, (uintptr_t)path);
	put32(p, 8, map);
	if (bpf(OBJ_PIN, p, sizeof(p)) == 0)
		printf("pin=ok\n");
	else
		printf("pin=error:%s\n", err());
	printf("ids=");
	uint32_t id = 0;
	for (int n = 0; n < 100000; n++) {
		unsigned char a[128] = {0};
		put32(a, 0, id);
		if (bpf(MAP_GET_NEXT_ID, a, sizeof(a)) != 0) {
			if (errno != ENOENT)
				printf("error:%s", err());
			break;
		}
		id = get32(a, 4);
		printf("%s%u", n ? "," : "", id);
	}
	printf("\n");
	int fd = open_id(own, -1);
	printf("own_open=%s\n", fd >= 0 ? "ok" : err());
	return 0;
}

static int widen(void)
{
	int fs = syscall(SYS_fsopen, "bpf", 0);
	/* A harmless option first: fsconfig itself is reachable (not refused by seccomp). */
	if (fs >= 0)
		printf("fsconfig_mode=%s\n",
		       syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "mode", "0700", 0) ? err() : "ok");
	if (fs < 0) {
		printf("widen_new=fsopen:%s\n", err());
	} else if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "delegate_cmds", "any", 0) != 0) {
		printf("widen_new=%s\n", err());
	} else {
		printf("widen_new=ok\n");
	}
	int pick = syscall(SYS_fspick, AT_FDCWD, "/sys/fs/bpf", 0);
	if (pick < 0) {
		printf("widen_remount=fspick:%s\n", err());
	} else if (syscall(SYS_fsconfig, pick, FSCONFIG_SET_STRING, "delegate_progs", "any", 0) != 0) {
		printf("widen_remount=%s\n", err());
	} else if (syscall(SYS_fsconfig, pick, FSCONFIG_CMD_RECONFIGURE, NULL, NULL, 0) != 0) {
		printf("widen_remount=reconfigure:%s\n", err());
	} else {
		printf("widen_remount=ok\n");
	}
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "create"))
		return create(argv[2]);
	if (argc == 2 && !strcmp(argv[1], "notoken")) {
		int m = map_create("notoken", -1);
		printf("notoken=%s\n", m >= 0 ? "ok" : err());
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "open")) {
		uint32_t id = strtoul(argv[2], NULL, 10);
		int fd = open_id(id, -1);
		printf("open=%s\n", fd >= 0 ? "ok" : err());
		int token = token_create();
		if (token < 0) {
			printf("open_token=token:%s\n", err());
			return 0;
		}
		fd = open_id(id, token);
		printf("open_token=%s\n", fd >= 0 ? "ok" : err());
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "widen"))
		return widen();
	fprintf(stderr, "usage: bpftoken create NAME | notoken | open ID | widen\n");
	return 2;
}
