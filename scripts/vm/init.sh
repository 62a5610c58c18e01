#!/bin/busybox sh
# /init of the VM lane's initramfs: mount what bpfns needs, run the test binaries listed in
# /etc/bpfns-vm/tests, and report through isa-debug-exit (QEMU's exit status: 1 = all passed,
# 3 = something failed). The console is ttyS0, captured by scripts/vm/run.sh.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
# The host programs copied into /usr/bin (util-linux's unshare and setpriv, bpftool) come
# before busybox's applets of the same name, which lack options the tests use.
export PATH=/usr/bin:/usr/sbin:/bin:/sbin HOME=/root TMPDIR=/tmp

mkdir -p /proc /sys /dev /tmp /run /root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /sys/fs/bpf /sys/kernel/tracing /sys/kernel/security /sys/kernel/debug /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t securityfs securityfs /sys/kernel/security
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
ip link set lo up 2>/dev/null

finish() {
    sync
    /bin/vm-exit "$1"
    poweroff -f
}

. /etc/bpfns-vm/env
# Tests that must not run outside a VM (an OOM experiment) look for BPFNS_VM_LABEL.
export BPFNS_VM_LABEL
export BPFNS_TEST_HELPER=/bin/bpfns-test-helper BPFNS_CLI=/usr/bin/bpfns RUST_BACKTRACE=1
echo "==> vm: $BPFNS_VM_LABEL: kernel $(uname -r), $(nproc) cpu, lsm=$(cat /sys/kernel/security/lsm)"
echo "==> vm: cmdline: $(cat /proc/cmdline)"

failed=""
start_all=$(date +%s)
while read -r name args; do
    [ -z "$name" ] && continue
    echo "==> vm: BEGIN $name"
    t0=$(date +%s)
    # shellcheck disable=SC2086 # $args are the test harness's arguments
    timeout -s KILL "$BPFNS_VM_TEST_TIMEOUT" "/tests/$name" $args
    rc=$?
    t1=$(date +%s)
    if [ $rc -eq 0 ]; then
        echo "==> vm: END $name: ok ($((t1 - t0))s)"
    else
        echo "==> vm: END $name: FAILED (exit $rc) ($((t1 - t0))s)"
        failed="$failed $name"
    fi
done < /etc/bpfns-vm/tests
echo "==> vm: tests took $(($(date +%s) - start_all))s"

if [ -n "$failed" ]; then
    echo "==> vm: RESULT: FAILED:$failed"
    finish 1
fi
echo "==> vm: RESULT: all passed"
finish 0
