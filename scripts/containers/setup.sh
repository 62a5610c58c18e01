#!/usr/bin/env bash
# What the container tests need, as root (idempotent; says what it did):
#   - podman, crun, runc, conmon, busybox-static, uidmap, gcc, libc6-dev, containerd and docker.io from
#     Debian's archive, with no service started by the installation (the tests run private
#     engine instances; the host's stay as they were);
#   - a private containers.conf ($BPFNS_CONTAINERS_DIR/containers.conf, read through
#     CONTAINERS_CONF; the host's own configuration is not changed) with rlimits this machine
#     allows, cgroupfs and a file event log;
#   - where crun refuses this machine's cgroups (v1 controllers with hugetlb alone on the v2
#     hierarchy: "cgroups in hybrid mode not supported"), hugetlb mounted as a v1 hierarchy;
#   - ranges in /etc/subuid and /etc/subgid for the user `containers` (`podman --userns=auto`);
#   - the image localhost/bpfns-test (busybox-static, bpftool with the libraries ldd names, and
#     bpftoken, built here from bpftoken.c: BPF tokens with raw bpf() calls, which Debian's
#     bpftool cannot make), built from files and imported with `podman import`: no registry is
#     needed; saved as a docker archive for `docker load` and `ctr images import`
#     (bpfns-test.docker.tar).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

say() { printf 'containers/setup: %s\n' "$*"; }
die() { printf 'containers/setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root"

DIR=${BPFNS_CONTAINERS_DIR:-/var/lib/bpfns-containers}
IMAGE=localhost/bpfns-test
PACKAGES=(podman crun runc conmon busybox-static uidmap bpftool gcc libc6-dev containerd docker.io)
HERE=$(cd "$(dirname "$0")" && pwd)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    # Debian's postinst scripts start containerd and dockerd through invoke-rc.d where it
    # can: a policy-rc.d that refuses every start keeps the host's services as they were.
    policy=/usr/sbin/policy-rc.d
    own_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# bpfns containers/setup: no service starts while it installs\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
        trap 'rm -f "$policy"' EXIT
    fi
    engines_before=$(pgrep -x 'containerd|dockerd' | sort || true)
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "$own_policy" ]; then
        rm -f "$policy"
        trap - EXIT
        say "installed with services held back (a temporary $policy)"
    else
        say "installed with services held back by the existing $policy"
    fi
    started=$(comm -13 <(printf '%s\n' "$engines_before") <(pgrep -x 'containerd|dockerd' | sort || true) | tr '\n' ' ')
    if [ -n "${started// /}" ]; then
        die "the installation started engine daemons (pids $started) although policy-rc.d refuses it: stop them (systemctl stop docker.socket docker containerd) and rerun"
    fi
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

# podman --userns=auto takes the container's ids from the ranges of the user `containers`.
for f in /etc/subuid /etc/subgid; do
    if ! grep -q '^containers:' "$f" 2>/dev/null; then
        echo 'containers:2147483647:2147483648' >>"$f"
        say "added containers:2147483647:2147483648 to $f (podman --userns=auto)"
    else
        say "present: the containers range in $f"
    fi
done

# The test image, in the host's default storage and in the tests' (they import the archive).
archive=$DIR/bpfns-test.tar
if [ ! -s "$archive" ] || [ "$archive" -ot /usr/sbin/bpftool ] || [ "$archive" -ot /bin/busybox ] ||
    [ "$archive" -ot "$HERE/bpftoken.c" ]; then
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root"/{bin,sbin,lib64,lib/x86_64-linux-gnu,tmp,proc,sys,dev,etc,sys/fs/bpf}
    cp /bin/busybox "$root/bin/busybox"
    # `busybox --list` names busybox itself: linking it would overwrite the binary.
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    cp /usr/sbin/bpftool "$root/sbin/bpftool"
    gcc -static -O2 -Wall -o "$root/bin/bpftoken" "$HERE/bpftoken.c"
    for lib in $(ldd /usr/sbin/bpftool | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
    echo 'root:x:0:' >"$root/etc/group"
    # Renamed into place: tests running meanwhile import the old archive or the new one whole.
    tar -C "$root" -cf "$archive.tmp" .
    mv -f "$archive.tmp" "$archive"
    rm -rf "$root"
    trap - EXIT
    say "built $archive (busybox-static, bpftool and its libraries, bpftoken)"
else
    say "present: $archive"
fi
if ! CONTAINERS_CONF=$conf podman image exists "$IMAGE" ||
    [ "$(CONTAINERS_CONF=$conf podman image inspect -f '{{.Created.Unix}}' "$IMAGE")" -lt "$(stat -c %Y "$archive")" ]; then
    CONTAINERS_CONF=$conf podman import -q --change 'CMD ["/bin/sh"]' "$archive" "$IMAGE" >/dev/null
    say "imported $IMAGE into podman's storage"
else
    say "present: image $IMAGE"
fi

# docker and containerd import the same image from a docker archive (tag
# localhost/bpfns-test:latest): `docker load -i`, `ctr images import`.
docker_archive=$DIR/bpfns-test.docker.tar
if [ ! -s "$docker_archive" ] || [ "$docker_archive" -ot "$archive" ]; then
    rm -f "$docker_archive.tmp"
    CONTAINERS_CONF=$conf podman save -q --format docker-archive -o "$docker_archive.tmp" "$IMAGE"
    mv "$docker_archive.tmp" "$docker_archive"
    say "saved $docker_archive (for docker load and ctr images import)"
else
    say "present: $docker_archive"
fi
