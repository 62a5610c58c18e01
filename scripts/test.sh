#!/usr/bin/env bash
# bpfns's whole test suite, as CI runs it (.ci/run):
#   setup (scripts/setup.sh), cargo fmt --check, cargo clippy -D warnings, cargo test --workspace
#   (every test binary runs even when an earlier one fails), the location-sensitive tests from a
#   fresh clone under a 0700 directory (scripts/clone-check.sh), the Debian package built,
#   installed, run and purged (scripts/package-test.sh), a fuzzing smoke run (scripts/fuzz.sh smoke),
#   and the VM lane (scripts/vm/run.sh: Debian 6.1 with/without BPF LSM, 6.12; BPFNS_SKIP_VM=1 skips).
# Run it as root: the kernel tests load BPF programs for real (without root they are skipped,
# so this script refuses to run unless BPFNS_TEST_UNPRIVILEGED=1 says that is intended).
# Every step runs even if an earlier check failed; the exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ] && [ "${BPFNS_TEST_UNPRIVILEGED:-}" != 1 ]; then
    echo "test.sh: error: run as root (bash scripts/test.sh as root): the kernel tests load BPF programs." >&2
    echo "test.sh: set BPFNS_TEST_UNPRIVILEGED=1 to run without them (they are then skipped)." >&2
    exit 1
fi

step "setup: build and test dependencies (scripts/setup.sh)"
bash scripts/setup.sh || { echo "FAILED: setup"; exit 1; }
step "setup: container engines and the test image (scripts/containers/setup.sh)"
bash scripts/containers/setup.sh || { echo "FAILED: containers setup"; exit 1; }

# shellcheck source=lib/cargo-path.sh
. scripts/lib/cargo-path.sh
find_cargo || true

failed=()
# Each step's output is kept too, so that the summary can repeat how a failed one ended.
STEP_LOGS=$(mktemp -d /tmp/bpfns-steps.XXXXXX)
trap 'rm -rf "$STEP_LOGS"' EXIT
# check NAME DESCRIPTION COMMAND...
check() {
    local name=$1 what=$2
    shift 2
    step "$name: $what"
    local start=$SECONDS rc
    "$@" 2>&1 | tee "$STEP_LOGS/$name.log"
    rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 0 ]; then
        echo "--- ok: $name ($((SECONDS - start))s)"
    else
        echo "--- FAILED: $name (exit $rc, $((SECONDS - start))s)"
        failed+=("$name")
    fi
}

# Only the names of unformatted files: full diffs drown the rest of the log.
format_check() {
    local out
    if out=$(cargo fmt --all --check -- --color never 2>&1); then
        return 0
    fi
    if printf '%s\n' "$out" | grep -q '^Diff in '; then
        printf '%s\n' "$out" | sed -n 's/^Diff in \(.*\):[0-9]*:$/\1/p' | sort -u |
            sed 's/^/  not formatted: /'
        echo "  (run \`cargo fmt --all\` to fix them; \`cargo fmt --all --check\` shows the diffs)"
    else
        printf '%s\n' "$out"
    fi
    return 1
}

check format "cargo fmt --all --check" format_check
check lint "cargo clippy --workspace --all-targets -- -D warnings" \
    cargo clippy --workspace --all-targets -- -D warnings
# Tests that cannot run here say so in this file (bpfns_tests::skip); listed after the tests.
BPFNS_SKIP_LOG=$(mktemp /tmp/bpfns-skips.XXXXXX)
export BPFNS_SKIP_LOG
check tests "cargo test --workspace --no-fail-fast" cargo test --workspace --no-fail-fast
if [ -s "$BPFNS_SKIP_LOG" ]; then
    echo "--- skipped here (wholly, or the part named), with the reason:"
    sort -u "$BPFNS_SKIP_LOG" | sed 's/^/  /'
else
    echo "--- no test skipped"
fi
rm -f "$BPFNS_SKIP_LOG"
unset BPFNS_SKIP_LOG
check clone "from a fresh clone in a 0700 directory (scripts/clone-check.sh)" \
    bash scripts/clone-check.sh
# The Debian package (scripts/package.sh): installed with apt-get, its bpfnsd started, the podman
# tests run against the installed binaries, then purged.
check package "the Debian package: build, install, run, purge (scripts/package-test.sh)" \
    bash scripts/package-test.sh
# Fuzzing smoke run (docs/reliability.md): the seed generator built and run (a stale one fails),
# then each target 30 s on the committed corpus and those seeds.
check fuzz "fuzz smoke (scripts/fuzz.sh smoke)" bash scripts/fuzz.sh smoke
# The VM lane (docs/vm.md): kernel tests on Debian's 6.1 kernel with and without BPF LSM, and on
# 6.12, under QEMU/TCG. BPFNS_SKIP_VM=1 skips it.
if [ "${BPFNS_SKIP_VM:-}" = 1 ]; then
    step "vm: skipped (BPFNS_SKIP_VM=1)"
else
    check vm "VM lane: Debian 6.1 +/- BPF LSM, 6.12 (scripts/vm/run.sh)" bash scripts/vm/run.sh
fi

echo
if [ ${#failed[@]} -eq 0 ]; then
    echo "==> all passed: format, lint, tests, clone, package, fuzz, vm"
    exit 0
fi
# How each failed step ended (its own summary lines name the test, target or file), so that
# the end of this log says why without scrolling back.
for name in "${failed[@]}"; do
    echo
    echo "==> how $name ended (the last 30 lines of its output):"
    tail -n 30 "$STEP_LOGS/$name.log" | sed 's/^/    /'
done
echo
echo "==> FAILED: ${failed[*]}"
exit 1
