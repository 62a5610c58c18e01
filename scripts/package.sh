#!/usr/bin/env bash
# Build the Debian package bpfns_VERSION_ARCH.deb with cargo-deb (installed with
# `cargo install cargo-deb --locked` if missing): bpfns, bpfnsd, bpfns-oci and its links
# bpfns-oci-crun and bpfns-oci-runc, the systemd units (dist/systemd, not enabled),
# /etc/bpfns/bpfnsd.toml (a conffile), bpfns(1), completions and the documentation. The
# package's description and maintainer scripts: crates/bpfns-cli/Cargo.toml
# ([package.metadata.deb]) and dist/debian/.
#
#   bash scripts/package.sh [--out DIR]     # default: target/debian
#
# It prints the path of the package last. Needs what scripts/setup.sh installs; root only to
# install cargo-deb where cargo's bin directory is root's.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=
while [ $# -gt 0 ]; do
    case $1 in
        --out) OUT=${2:?--out needs a directory}; shift 2 ;;
        -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "package.sh: error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
say() { printf 'package: %s\n' "$*" >&2; }
die() { printf 'package.sh: error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=lib/cargo-path.sh
. scripts/lib/cargo-path.sh
find_cargo || die "cargo not found: run scripts/setup.sh first"
if ! cargo deb --version >/dev/null 2>&1; then
    say "installing cargo-deb (cargo install cargo-deb --locked)"
    cargo install cargo-deb --locked || die "cargo install cargo-deb failed (above): the crates registry must be reachable"
fi
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found: this builds Debian packages (apt-get install dpkg-dev)"

say "building the release binaries (bpfns, bpfnsd, bpfns-oci)"
cargo build --release --locked --bin bpfns --bin bpfnsd --bin bpfns-oci >&2
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target" ] || die "cannot find cargo's target directory (cargo metadata)"
assets=$target/release/deb-assets
rm -rf "$assets"
mkdir -p "$assets"
# The manual page and completions, from the CLI's own definitions.
"$target/release/bpfns" man | gzip -9n >"$assets/bpfns.1.gz"
"$target/release/bpfns" completions bash >"$assets/bpfns.bash"
"$target/release/bpfns" completions zsh >"$assets/_bpfns"
"$target/release/bpfns" completions fish >"$assets/bpfns.fish"

# Stripped: the release profile keeps debug info (debug = 1) for benchmarks and backtraces.
args=(deb -p bpfns-cli --no-build --strip)
[ -n "$OUT" ] && args+=(--output "$OUT")
say "packaging (cargo ${args[*]})"
deb=$(cargo "${args[@]}" | tail -n 1)
[ -f "$deb" ] || die "cargo deb made no package (its output: $deb)"
say "contents:"
dpkg-deb --contents "$deb" | awk '{ print "  " $1 " " $6 ($7 ? " " $7 " " $8 : "") }' >&2
echo "$deb"
