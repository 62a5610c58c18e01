#!/usr/bin/env bash
# The VM test lane: boot real Debian kernels under QEMU (TCG: no KVM needed) with a busybox
# initramfs holding bpfns's kernel tests as static binaries, run them, and report.
#
#   scripts/vm/run.sh [MATRIX_ENTRY...]
#
# Each MATRIX_ENTRY is KERNEL:LSM[+TEST...] or KERNEL:LSM=TEST[+TEST...], KERNEL one of 6.1
# (Debian 12's linux-image-6.1.0-*-amd64) or 6.12 (linux-image-6.12*-cloud-amd64 from
# bookworm-backports, skipped with a message when unreachable), LSM `lsm` (boot with "bpf" in
# lsm=) or `nolsm` (without it); each +TEST adds a test binary to that VM's run, and =TEST...
# runs only the binaries named.
# Default: 6.1:lsm=rfc_table+redteam 6.1:nolsm+supervisor+rfc_table 6.1:lsm 6.12:lsm, the
# longest first: on the oldest kernel the end-to-end suites (the supervisor's, unmodified
# bpftool in members) with the supervisor as the only layer (no BPF_F_PATH_FD, no thread
# pidfds, ...) and with the BPF LSM layer under it, and the red-team matrix with the layer
# the development machines cannot run (BPF LSM). Each VM has one vCPU: the suites are split
# over VMs so that two cores finish them in about 25 minutes. The matrix without BPF LSM on
# 6.1 (about 15 minutes more) on demand: scripts/vm/run.sh 6.1:nolsm=redteam.
#
# Environment:
#   BPFNS_VM_CACHE         downloads and unpacked packages (default ~/.cache/bpfns-vm)
#   BPFNS_VM_TESTS         test binaries to run (default "doctor kernel_side listing lsm daemon cli";
#                          the names of integration tests of bpfns-tests, bpfns-kernel and
#                          bpfns-cli; cli and rfc_table bring the `bpfns` CLI and the host's
#                          bpftool)
#   BPFNS_VM_TIMEOUT       seconds per VM, boot to power-off (default 2700)
#   BPFNS_VM_MEM           MiB per VM (default 1024)
#   BPFNS_VM_JOBS          VMs booted at once (default: the number of cores; each takes one)
#   BPFNS_VM_LOGS          where console logs go (default target/vm/logs)
#   BPFNS_VM_SKIP_BUILD=1  reuse the binaries of the last build
#   BPFNS_VM_FILTER        test-name filter handed to every test binary (one test, for debugging)
#   BPFNS_TEST_LOG         bpfnsd's log filter in tests that start one (e.g. debug), as on the host
#
# Exit status: 0 when every VM passed (skipped kernels do not fail the lane), 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/../.."
HERE=scripts/vm

CACHE=${BPFNS_VM_CACHE:-${HOME:-/root}/.cache/bpfns-vm}
export BPFNS_VM_CACHE=$CACHE
TESTS=${BPFNS_VM_TESTS:-doctor kernel_side listing lsm daemon cli}
TIMEOUT=${BPFNS_VM_TIMEOUT:-2700}
MEM=${BPFNS_VM_MEM:-1024}
JOBS=${BPFNS_VM_JOBS:-$(nproc)}
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || JOBS=1
TARGET=x86_64-unknown-linux-gnu
CARGO_OUT=${CARGO_TARGET_DIR:-target}
WORK=target/vm
LOGS=${BPFNS_VM_LOGS:-$WORK/logs}
MATRIX=("$@")
[ ${#MATRIX[@]} -gt 0 ] ||
    MATRIX=(6.1:lsm=rfc_table+redteam 6.1:nolsm+supervisor+rfc_table 6.1:lsm 6.12:lsm)
# entry_tests ENTRY: the test binaries an entry runs (KERNEL:LSM[+T...] or KERNEL:LSM=T[+T...]).
entry_tests() {
    local mode=${1#*:}
    if [[ $mode == *=* ]]; then
        mode=${mode#*=}
        echo "${mode//+/ }"
    elif [[ $mode == *+* ]]; then
        mode=${mode#*+}
        echo "$TESTS ${mode//+/ }"
    else
        echo "$TESTS"
    fi
}
# Every test binary some entry runs is built once.
ALL_TESTS=""
for entry in "${MATRIX[@]}"; do
    for t in $(entry_tests "$entry"); do
        [[ " $ALL_TESTS " == *" $t "* ]] || ALL_TESTS="${ALL_TESTS:+$ALL_TESTS }$t"
    done
done

say() { printf 'vm: %s\n' "$*"; }
die() { printf 'vm: error: %s\n' "$*" >&2; exit 1; }
t_start=$SECONDS
lap() { printf '%ss' "$((SECONDS - $1))"; }

# shellcheck source=../lib/cargo-path.sh
. scripts/lib/cargo-path.sh
find_cargo || true
for c in cargo cc strip dpkg-deb apt-get; do
    command -v "$c" >/dev/null 2>&1 || die "$c is missing (scripts/setup.sh installs what the lane needs)"
done
# The CLI's tests (bpfns-cli: cli, rfc_table) run the `bpfns` binary and the machine's bpftool
# in the VM: without bpftool they would only skip.
needs_cli() { [[ " $1 " == *" cli "* || " $1 " == *" rfc_table "* ]]; }
if needs_cli "$ALL_TESTS" && ! command -v bpftool >/dev/null 2>&1; then
    die "the CLI's tests need bpftool on this machine, to copy into the VM (scripts/setup.sh installs it)"
fi
[ "$(uname -m)" = x86_64 ] || die "the VM lane boots x86-64 kernels and builds x86-64 binaries"

# ---- 1. QEMU, busybox ------------------------------------------------------------------------
t=$SECONDS
bash $HERE/fetch.sh tools || die "fetching QEMU and busybox failed"
ROOT=$CACHE/root
QEMU=$ROOT/usr/bin/qemu-system-x86_64
QEMU_LIBS=$(bash $HERE/fetch.sh libpath)
say "tools ready ($(lap $t))"

# ---- 2. static test binaries -------------------------------------------------------------------
BIN=$WORK/bin
mkdir -p "$BIN"
if [ "${BPFNS_VM_SKIP_BUILD:-}" != 1 ]; then
    t=$SECONDS
    say "building static test binaries (cargo test --no-run --target $TARGET, crt-static)"
    test_args=()
    for n in $ALL_TESTS; do test_args+=(--test "$n"); done
    # --target keeps these artifacts apart from the normal build's (and RUSTFLAGS away from
    # build scripts); libbpf-sys links libelf and zlib statically under crt-static.
    json=$WORK/build.json
    if ! RUSTFLAGS="-C target-feature=+crt-static" cargo test --no-run --target $TARGET \
        -p bpfns-tests -p bpfns-kernel -p bpfns-cli "${test_args[@]}" \
        --message-format=json-render-diagnostics >"$json"; then
        die "building the test binaries failed"
    fi
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --target $TARGET \
        -p bpfns-tests --bin bpfns-test-helper || die "building bpfns-test-helper failed"
    rm -f "$BIN"/*
    for n in $ALL_TESTS; do
        exe=$(grep '"reason":"compiler-artifact"' "$json" | grep "\"name\":\"$n\"" |
            grep '"test":true' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
        [ -n "$exe" ] || die "no test binary for $n in the cargo output"
        strip -o "$BIN/$n" "$exe"
    done
    strip -o "$BIN/bpfns-test-helper" "$CARGO_OUT/$TARGET/debug/bpfns-test-helper"
    # The CLI's tests run `bpfns`; in the VM they find it through $BPFNS_CLI (init.sh), not at
    # the path cargo compiled into them, which may lie where the VM mounts a tmpfs (/tmp).
    cli=$(grep '"reason":"compiler-artifact"' "$json" | grep '"name":"bpfns"' |
        grep '"kind":\["bin"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
    rm -f "$BIN/bpfns.path"
    if [ -n "$cli" ]; then
        strip -o "$BIN/bpfns" "$cli"
    fi
    cc -static -Os -o "$BIN/vm-exit" $HERE/vm-exit.c || die "building vm-exit failed"
    say "binaries built ($(lap $t))"
fi
for f in $ALL_TESTS bpfns-test-helper vm-exit; do
    [ -x "$BIN/$f" ] || die "$BIN/$f is missing (build without BPFNS_VM_SKIP_BUILD)"
done

# ---- 3. initramfs ------------------------------------------------------------------------------
# copy_host BIN: a dynamically linked host program with its libraries (util-linux's unshare:
# busybox's lacks --kill-child, which the pid-namespace test uses; setpriv, with which the
# supervisor tests drop privileges).
copy_host() {
    local prog lib
    prog=$(command -v "$1") || return 0
    install -D "$prog" "$STAGE/usr/bin/$1"
    for lib in $(ldd "$prog" | grep -o '/[^ ]*'); do
        install -D "$lib" "$STAGE$lib"
    done
}
make_initramfs() { # LABEL OUT TESTS
    rm -rf "$STAGE"
    mkdir -p "$STAGE"/{bin,tests,etc/bpfns-vm,proc,sys,dev,tmp,run,root}
    cp "$ROOT/bin/busybox" "$STAGE/bin/busybox"
    cp $HERE/init.sh "$STAGE/init"
    chmod +x "$STAGE/init"
    cp "$BIN/bpfns-test-helper" "$BIN/vm-exit" "$STAGE/bin/"
    for n in $3; do cp "$BIN/$n" "$STAGE/tests/$n"; done
    copy_host unshare
    copy_host setpriv
    if needs_cli "$3"; then
        [ -x "$BIN/bpfns" ] ||
            die "the bpfns CLI binary is missing from $BIN (build without BPFNS_VM_SKIP_BUILD)"
        install -D "$BIN/bpfns" "$STAGE/usr/bin/bpfns"
        copy_host bpftool
    fi
    {
        # One line per test binary: NAME HARNESS-ARGS.
        for n in $3; do
            case $n in
                doctor) echo "$n --test-threads=1 --nocapture ${BPFNS_VM_FILTER:-}" ;;
                lsm) echo "$n --test-threads=1 --nocapture ${BPFNS_VM_FILTER:-}" ;;
                redteam) echo "$n --nocapture ${BPFNS_VM_FILTER:-}" ;; # the matrix, in the log
                *) echo "$n --test-threads=2 ${BPFNS_VM_FILTER:-}" ;;
            esac
        done
    } >"$STAGE/etc/bpfns-vm/tests"
    cat >"$STAGE/etc/bpfns-vm/env" <<EOF
BPFNS_VM_LABEL='$1'
BPFNS_VM_TEST_TIMEOUT=$((TIMEOUT - 30))
${BPFNS_TEST_LOG:+export BPFNS_TEST_LOG='$BPFNS_TEST_LOG'}
EOF
    (cd "$STAGE" && find . | "$ROOT/bin/busybox" cpio -o -H newc 2>/dev/null) >"$2"
}

# ---- 4. boot -----------------------------------------------------------------------------------
# Kernels and initramfs images are prepared one after the other; then up to JOBS VMs boot at
# once, one per core (TCG keeps a vCPU's core busy), each reported whole when it ends.
mkdir -p "$LOGS"
LSM_BASE=lockdown,capability,landlock,yama,apparmor
labels=()
declare -A appends=() kdirs=() initrds=() verdicts=() lsms=()
for entry in "${MATRIX[@]}"; do
    kver=${entry%%:*}
    mode=${entry#*:}
    tests=$(entry_tests "$entry")
    extra=""
    if [[ $mode == *=* ]]; then
        extra=only+${mode#*=}
        mode=${mode%%=*}
    elif [[ $mode == *+* ]]; then
        extra=${mode#*+}
        mode=${mode%%+*}
    fi
    case $mode in
        lsm) lsm=$LSM_BASE,bpf ;;
        nolsm) lsm=$LSM_BASE ;;
        *) die "matrix entry $entry: the mode is lsm or nolsm" ;;
    esac
    label="linux-$kver-$mode${extra:+-${extra//+/-}}"
    kdir=$(bash $HERE/fetch.sh kernel "$kver")
    rc=$?
    if [ $rc -ne 0 ] || [ -z "$kdir" ]; then
        if [ "$kver" = 6.1 ]; then
            die "cannot fetch Debian's $kver kernel"
        fi
        say "SKIPPED $label: kernel $kver not reachable (see the messages above)"
        verdicts[$label]="skipped (kernel not reachable)"
        labels+=("$label")
        continue
    fi
    STAGE=$WORK/initramfs-$label
    initrds[$label]=$WORK/initramfs-$label.cpio
    make_initramfs "$label" "${initrds[$label]}" "$tests"
    rm -rf "$STAGE"
    kdirs[$label]=$kdir
    appends[$label]="console=ttyS0 quiet panic=-1 lsm=$lsm rdinit=/init"
    lsms[$label]=$lsm
    labels+=("$label")
done

# boot LABEL: one VM; writes its QEMU exit status to $WORK/rc-LABEL.
boot() {
    local label=$1 log=$LOGS/$1.log
    # -cpu qemu64,cx16=off: QEMU 7.2's TCG sometimes corrupts RFLAGS on `cmpxchg16b %gs:`
    # (SLUB's per-CPU fast path), which double-faults Debian's 6.12 kernel (about 1 boot in
    # 10, also with `-cpu max`); without CX16 the kernel takes its fallback path. qemu64 is
    # also the fastest model under TCG.
    LD_LIBRARY_PATH=$QEMU_LIBS timeout -k 5 "$TIMEOUT" "$QEMU" \
        -L "$ROOT/usr/share/seabios" -L "$ROOT/usr/share/qemu" \
        -accel tcg -cpu qemu64,cx16=off -m "$MEM" -smp 1 -nographic -no-reboot -nic none -vga none \
        -kernel "${kdirs[$label]}/vmlinuz" -initrd "${initrds[$label]}" \
        -append "${appends[$label]}" \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        </dev/null >"$log" 2>&1
    echo $? >"$WORK/rc-$label"
}

# report LABEL SECONDS: what the tests of a finished VM said, without the noise, and its verdict.
overall=0
report() {
    local label=$1 took=$2 log=$LOGS/$1.log qrc verdict
    qrc=$(cat "$WORK/rc-$label")
    tr -d '\r' <"$log" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1b[a-zA-Z]//g' |
        grep -aE '^==> vm:|^test .* \.\.\. |^test result:|SKIPPED|^lsm: |panicked|BUG|WARNING' |
        sed 's/^/    /'
    case $qrc in
        1) verdict="passed" ;;
        3) verdict="FAILED (tests failed)" ;;
        124 | 137) verdict="FAILED (timeout after ${TIMEOUT}s)" ;;
        *) verdict="FAILED (QEMU exited $qrc: kernel panic or power-off before the tests finished)" ;;
    esac
    say "$label: $verdict (${took}s)"
    verdicts[$label]="$verdict (${took}s)"
    if [ "$qrc" -ne 1 ]; then
        overall=1
        echo "---- console of $label ($log) ----"
        cat "$log"
        echo "---- end of console of $label ----"
    fi
}

declare -A started=()
pending=()
for label in "${labels[@]}"; do
    [ -n "${kdirs[$label]:-}" ] && pending+=("$label")
done
running=()
while [ ${#pending[@]} -gt 0 ] || [ ${#running[@]} -gt 0 ]; do
    while [ ${#pending[@]} -gt 0 ] && [ ${#running[@]} -lt "$JOBS" ]; do
        label=${pending[0]}
        pending=("${pending[@]:1}")
        rm -f "$WORK/rc-$label"
        say "booting $label: $(basename "${kdirs[$label]}") with lsm=${lsms[$label]} (timeout ${TIMEOUT}s, console: $LOGS/$label.log)"
        started[$label]=$SECONDS
        boot "$label" &
        running+=("$label")
    done
    wait -n 2>/dev/null || true
    still=()
    for label in "${running[@]}"; do
        if [ -s "$WORK/rc-$label" ]; then
            report "$label" "$((SECONDS - ${started[$label]}))"
        else
            still+=("$label")
        fi
    done
    running=("${still[@]}")
done
wait

echo
say "summary ($(lap $t_start) in all, up to $JOBS VMs at once):"
for label in "${labels[@]}"; do echo "    $label: ${verdicts[$label]}"; done
exit $overall
