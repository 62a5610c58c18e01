#!/usr/bin/env bash
# bpfns's fuzz targets (fuzz/, cargo-fuzz + libFuzzer; docs/reliability.md, "Fuzzing").
#
#   scripts/fuzz.sh smoke [SECONDS] [TARGET...]  each target for SECONDS (default 30) on the
#                                                committed corpus and fresh seeds (the seed
#                                                generator, built and run into a scratch
#                                                directory: a stale one fails); what it finds
#                                                is kept out of the tree (CI runs this)
#   scripts/fuzz.sh long [N] [TARGET...]         each target for N executions (default
#                                                10000000), one after the other, under nice;
#                                                new inputs go to fuzz/target/corpus/TARGET
#   scripts/fuzz.sh cmin [TARGET...]             minimise fuzz/corpus/TARGET, merging in what
#                                                `long` found
#   scripts/fuzz.sh seed [TARGET...]             regenerate seeds from real messages and attrs
#                                                (fuzz/examples/seeds.rs), then cmin
#   scripts/fuzz.sh list                         the targets
#
# Installs cargo-fuzz if missing. Works on a stable toolchain: RUSTC_BOOTSTRAP=1 lets it use
# the sanitizer flags cargo-fuzz passes. Builds are release with debug assertions and overflow
# checks on (-O -a), AddressSanitizer on. A crash fails the script and leaves its input in
# fuzz/artifacts/TARGET/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a TARGET fuzz/artifacts/TARGET/crash-...
# Logs (with libFuzzer's final stats) go to fuzz/target/logs/TARGET.{smoke,long}.log.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(proto_request proto_response supervisor_attr proc_text)

say() { printf 'fuzz: %s\n' "$*"; }
die() { printf 'fuzz: error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=lib/cargo-path.sh
. scripts/lib/cargo-path.sh
find_cargo || true
command -v cargo >/dev/null 2>&1 || die "cargo not found"

export RUSTC_BOOTSTRAP=1
RUNNER=()
# More input directories `run` reads (after the committed corpus).
EXTRA_CORPUS=()

ensure_cargo_fuzz() {
    if cargo fuzz --version >/dev/null 2>&1; then
        return
    fi
    say "installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install)"
    cargo install --locked --version "$CARGO_FUZZ_VERSION" cargo-fuzz
}

build() {
    say "building the fuzz targets (release, debug assertions, AddressSanitizer)"
    cargo fuzz build -O -a "$@"
}

# The libFuzzer options every run gets; the proto targets also get the protocol dictionary.
lf_opts() {
    local t=$1
    printf '%s\n' -print_final_stats=1 -timeout=10 -rss_limit_mb=4096
    case $t in
        proto_*) printf '%s\n' "-dict=fuzz/dict/proto.dict" ;;
    esac
}

# Where `build` leaves the target binaries (cargo-fuzz's layout).
BIN_DIR=fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release

# run TARGET WORK_DIR LOG LIBFUZZER_OPTS...: fuzz, new inputs to WORK_DIR, the committed
# corpus read too. Runs the binary `build` made (what `cargo fuzz run` runs), so that source
# edits made meanwhile neither rebuild nor change what is being measured.
run() {
    local t=$1 work=$2 log=$3
    shift 3
    mkdir -p "$work" fuzz/corpus/"$t" fuzz/artifacts/"$t" "$(dirname "$log")"
    [ -x "$BIN_DIR/$t" ] || die "no $BIN_DIR/$t: the build did not make it"
    local opts
    mapfile -t opts < <(lf_opts "$t")
    local start=$SECONDS rc=0
    "${RUNNER[@]}" "$BIN_DIR/$t" -artifact_prefix=fuzz/artifacts/"$t"/ "${opts[@]}" "$@" \
        "$work" fuzz/corpus/"$t" "${EXTRA_CORPUS[@]/%//$t}" >"$log" 2>&1 || rc=$?
    local done stats
    done=$(grep -E '^Done [0-9]+ runs' "$log" | tail -1 || true)
    stats=$(grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" |
        sed 's/^stat:://' | tr '\n' ' ' || true)
    if [ "$rc" -ne 0 ]; then
        # What failed and where (a stack trace's tail would hide it), then the input.
        grep -E -A3 'panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' "$log" |
            head -20 >&2 || true
        grep -E '^SUMMARY|Test unit written to|^Base64' "$log" >&2 || true
        say "FAILED: $t (exit $rc, $((SECONDS - start)) s); log: $log; input in fuzz/artifacts/$t/"
        return 1
    fi
    say "ok: $t: ${done:-?} ($((SECONDS - start)) s wall) $stats"
}

targets() {
    if [ $# -gt 0 ]; then
        for t in "$@"; do
            [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || die "no target $t (have: ${ALL_TARGETS[*]})"
        done
        printf '%s\n' "$@"
    else
        printf '%s\n' "${ALL_TARGETS[@]}"
    fi
}

# cmin TARGET...: minimise fuzz/corpus/TARGET, merging in fuzz/target/corpus/TARGET (what
# `long` found): libFuzzer's set-cover merge keeps a small set of inputs that covers every
# edge of both. Edges only (-use_counters=0): with hit-count buckets too the committed corpus
# would be 3-5 times larger; the working corpus in fuzz/target/corpus keeps everything.
cmin() {
    local t
    for t in "$@"; do
        local work=fuzz/target/corpus/$t new=fuzz/target/cmin/$t log=fuzz/target/logs/$t.cmin.log
        [ -x "$BIN_DIR/$t" ] || die "no $BIN_DIR/$t: the build did not make it"
        rm -rf "$new"
        mkdir -p "$new" "$work" fuzz/corpus/"$t" fuzz/target/logs
        local before
        before=$(find fuzz/corpus/"$t" "$work" -type f | wc -l)
        "$BIN_DIR/$t" -set_cover_merge=1 -use_counters=0 -timeout=10 -rss_limit_mb=4096 \
            "$new" fuzz/corpus/"$t" "$work" >"$log" 2>&1 ||
            { tail -20 "$log" >&2; die "cmin $t failed (log: $log)"; }
        rm -rf fuzz/corpus/"$t"
        mv "$new" fuzz/corpus/"$t"
        say "cmin: $t: $before inputs -> $(find fuzz/corpus/"$t" -type f | wc -l) in fuzz/corpus/$t"
    done
}

cmd=${1:-}
shift || true
case $cmd in
    smoke)
        secs=30
        if [[ ${1:-} =~ ^[0-9]+$ ]]; then secs=$1; shift; fi
        mapfile -t ts < <(targets "$@")
        ensure_cargo_fuzz
        build
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        # The seed generator follows the protocol (every operation and reply has a seed, each
        # round-trips): built and run here so that a protocol change it misses fails the lane.
        say "writing fresh seeds (cargo run --example seeds) to a scratch directory"
        cargo run -q --manifest-path fuzz/Cargo.toml --example seeds -- "$tmp/seeds" ||
            die "the seed generator (fuzz/examples/seeds.rs) fails: make it follow the protocol"
        EXTRA_CORPUS=("$tmp/seeds")
        failed=()
        for t in "${ts[@]}"; do
            run "$t" "$tmp/$t" fuzz/target/logs/"$t".smoke.log -max_total_time="$secs" || failed+=("$t")
        done
        [ ${#failed[@]} -eq 0 ] || die "crashed: ${failed[*]}"
        say "smoke: all ${#ts[@]} targets ran ${secs} s each without a crash"
        ;;
    long)
        n=10000000
        if [[ ${1:-} =~ ^[0-9]+$ ]]; then n=$1; shift; fi
        mapfile -t ts < <(targets "$@")
        ensure_cargo_fuzz
        build
        # Long campaigns yield to everything else on the machine.
        RUNNER=(nice -n 19)
        failed=()
        for t in "${ts[@]}"; do
            say "long: $t for $n executions (log: fuzz/target/logs/$t.long.log)"
            run "$t" fuzz/target/corpus/"$t" fuzz/target/logs/"$t".long.log -runs="$n" || failed+=("$t")
        done
        [ ${#failed[@]} -eq 0 ] || die "crashed: ${failed[*]}"
        say "long: all ${#ts[@]} targets ran $n executions each without a crash"
        ;;
    cmin)
        mapfile -t ts < <(targets "$@")
        ensure_cargo_fuzz
        build
        cmin "${ts[@]}"
        ;;
    seed)
        mapfile -t ts < <(targets "$@")
        ensure_cargo_fuzz
        say "writing seeds (cargo run --example seeds)"
        cargo run -q --manifest-path fuzz/Cargo.toml --example seeds
        build
        mkdir -p fuzz/target/logs
        cmin "${ts[@]}"
        ;;
    list)
        printf '%s\n' "${ALL_TARGETS[@]}"
        ;;
    *)
        sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
        [ -z "$cmd" ] || exit 2
        ;;
esac
