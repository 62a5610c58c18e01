#!/usr/bin/env bash
# bpfns's reliability suites, short or long (docs/reliability.md).
#
#   bash scripts/reliability.sh short   what `cargo test --workspace` (scripts/test.sh, CI)
#                                       already runs: red-team matrix, 100 SIGKILLs of bpfnsd
#                                       (and 5 of its listener keeper) under load, 1,000
#                                       clients x 3 rounds x 3 s, a flood of 3,000 idle
#                                       connections and 5 s of churn from a member
#   bash scripts/reliability.sh long    the long versions: 1,000 SIGKILLs, 1,000 clients x
#                                       5 rounds x 60 s, a flood of 10,000 connections and
#                                       60 s of churn, then 10,000,000 fuzzing executions per
#                                       target (scripts/fuzz.sh long); about 2 hours
#
# Release builds. Reports: target/tmp/{redteam-matrix,torture-report,load-report,flood-report}.md,
# fuzzing logs in fuzz/target/logs/. Knobs (environment): BPFNS_TORTURE_KILLS,
# BPFNS_LOAD_CLIENTS, BPFNS_LOAD_ROUNDS, BPFNS_LOAD_MS, BPFNS_FLOOD_CONNECTIONS, BPFNS_FLOOD_MS;
# BPFNS_SKIP_FUZZ=1 leaves fuzzing out of `long`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "reliability.sh: error: run as root: the suites load BPF programs and start bpfnsd." >&2
    exit 1
fi
# shellcheck source=lib/cargo-path.sh
. scripts/lib/cargo-path.sh
find_cargo || true

mode=${1:-}
case $mode in
    short) ;;
    long)
        export BPFNS_TORTURE_KILLS=${BPFNS_TORTURE_KILLS:-1000}
        export BPFNS_LOAD_CLIENTS=${BPFNS_LOAD_CLIENTS:-1000}
        export BPFNS_LOAD_ROUNDS=${BPFNS_LOAD_ROUNDS:-5}
        export BPFNS_LOAD_MS=${BPFNS_LOAD_MS:-60000}
        export BPFNS_FLOOD_CONNECTIONS=${BPFNS_FLOOD_CONNECTIONS:-10000}
        export BPFNS_FLOOD_MS=${BPFNS_FLOOD_MS:-60000}
        ;;
    *)
        sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
        [ -z "$mode" ] || exit 2
        exit 0
        ;;
esac

run() {
    printf '\n==> %s\n' "$1"
    cargo test --release -p bpfns-tests --test "$1" -- --nocapture --test-threads=1
}
run redteam
run torture
run load
for r in redteam-matrix torture-report load-report flood-report; do
    printf '\n--- target/tmp/%s.md\n' "$r"
    cat "target/tmp/$r.md" 2>/dev/null || echo "(missing)"
done
if [ "$mode" = long ] && [ "${BPFNS_SKIP_FUZZ:-}" != 1 ]; then
    printf '\n==> fuzzing (scripts/fuzz.sh long)\n'
    bash scripts/fuzz.sh long
fi
