#!/usr/bin/env bash
# What the container tests need, as root (idempotent; says what it did):
#   - podman, crun, runc, conmon, busybox-static and uidmap from Debian's archive;
#   - a private containers.conf ($BPFNS_CONTAINERS_DIR/containers.conf, read through
#     CONTAINERS_CONF; the host's own configuration is not changed) with rlimits this machine
#     allows, cgroupfs and a file event log;
#   - where crun refuses this machine's cgroups (v1 controllers with hugetlb alone on the v2
#     hierarchy: "cgroups in hybrid mode not supported"), hugetlb mounted as a v1 hierarchy;
#   - subordinate id ranges for the user `containers` (podman run --userns=auto);
#   - the image localhost/bpfns-test (busybox-static and bpftool with the libraries ldd names),
#     built from files and imported with `podman import`: no registry is needed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

say() { printf 'containers/setup: %s\n' "$*"; }
die() { printf 'containers/setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root"

DIR=${BPFNS_CONTAINERS_DIR:-/var/lib/bpfns-containers}
IMAGE=localhost/bpfns-test
PACKAGES=(podman crun runc conmon busybox-static uidmap bpftool)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "present: ${PACKAGES[*]}"
fi

mkdir -p "$DIR"
conf=$DIR/containers.conf
# Root here lacks CAP_SYS_RESOURCE: podman's default rlimits cannot be set, and podman lowers
# its own NPROC first, so limits at or above 32768 fail too.
want='[containers]
default_ulimits = ["nofile=20000:20000", "nproc=16384:16384"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"'
if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
    printf '%s\n' "$want" >"$conf"
    say "wrote $conf (default_ulimits this machine allows; CONTAINERS_CONF=$conf)"
else
    say "present: $conf"
fi

# crun refuses a hybrid hierarchy where the v2 one holds a controller (hugetlb here); moving
# hugetlb to a v1 hierarchy of its own lets it run. A pure v2 host does not need this.
if [ -f /sys/fs/cgroup/unified/cgroup.controllers ] &&
    grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers &&
    ! mountpoint -q /sys/fs/cgroup/hugetlb; then
    mkdir -p /sys/fs/cgroup/hugetlb
    mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
    say "applied the crun fix for hybrid cgroups: mounted hugetlb as a v1 hierarchy at /sys/fs/cgroup/hugetlb"
elif mountpoint -q /sys/fs/cgroup/hugetlb 2>/dev/null; then
    say "present: the crun fix for hybrid cgroups (hugetlb at /sys/fs/cgroup/hugetlb)"
else
    say "cgroups: crun needs no fix here"
fi

# `podman run --userns=auto` (the red-team suite's user-namespace containers) takes its ranges
# from the user `containers` in /etc/subuid and /etc/subgid.
for f in /etc/subuid /etc/subgid; do
    if ! grep -q '^containers:' "$f" 2>/dev/null; then
        echo 'containers:2147483647:2147483648' >>"$f"
        say "added containers:2147483647:2147483648 to $f (for --userns=auto)"
    else
        say "present: the containers range in $f"
    fi
done

# The test image, in the host's default storage and in the tests' (they import the archive).
archive=$DIR/bpfns-test.tar
if [ ! -s "$archive" ] || [ "$archive" -ot /usr/sbin/bpftool ] || [ "$archive" -ot /bin/busybox ]; then
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root"/{bin,sbin,lib64,lib/x86_64-linux-gnu,tmp,proc,sys,dev,etc,sys/fs/bpf}
    cp /bin/busybox "$root/bin/busybox"
    # `busybox --list` names busybox itself: linking it would overwrite the binary.
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    cp /usr/sbin/bpftool "$root/sbin/bpftool"
    for lib in $(ldd /usr/sbin/bpftool | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
    echo 'root:x:0:' >"$root/etc/group"
    tar -C "$root" -cf "$archive" .
    rm -rf "$root"
    trap - EXIT
    say "built $archive (busybox-static, bpftool and its libraries)"
else
    say "present: $archive"
fi
if ! CONTAINERS_CONF=$conf podman image exists "$IMAGE"; then
    CONTAINERS_CONF=$conf podman import -q --change 'CMD ["/bin/sh"]' "$archive" "$IMAGE" >/dev/null
    say "imported $IMAGE into podman's storage"
else
    say "present: image $IMAGE"
fi
