#!/usr/bin/env bash
# Install what a fresh Debian 12 machine lacks to build and test bpfns:
#   clang-19 and llvm-19 (the BPF programs), libelf-dev, zlib1g-dev, pkg-config and make
#   (libbpf), bpftool (the demo and the tests), a C compiler for Rust's linker,
#   and the rustfmt and clippy components when the Rust toolchain comes from rustup.
# Idempotent: it checks first and only installs what is missing. Works without a TTY.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# binutils (strip) and libc6-dev (static libc for scripts/vm/vm-exit.c): the VM lane. It downloads
# QEMU, busybox and kernels itself (apt-get download; never apt-get install qemu-system-x86).
# tmux: the tests drive `bpfns top`'s live view in a terminal. libcap2-bin (setcap): the red team
# runs a program with file capabilities.
PACKAGES=(clang-19 llvm-19 libelf-dev zlib1g-dev pkg-config bpftool make binutils libc6-dev tmux
    libcap2-bin)
# The oldest Rust the workspace accepts (rust-version in Cargo.toml).
MIN_RUST=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -1)
MIN_RUST=${MIN_RUST:-1.82}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# ---- system packages ----------------------------------------------------------------------
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for p in "${PACKAGES[@]}"; do
        if installed "$p"; then
            say "present: $p"
        else
            missing+=("$p")
        fi
    done
    if ! command -v cc >/dev/null 2>&1; then
        missing+=(gcc libc6-dev)
    else
        say "present: C compiler ($(command -v cc))"
    fi
else
    say "not a Debian system (no dpkg): checking commands only"
    for c in clang-19 llvm-strip-19 pkg-config bpftool make cc; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        die "missing: ${missing[*]}; install them (and libelf and zlib headers) with your package manager"
    fi
fi

if [ ${#missing[@]} -gt 0 ]; then
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "need to install ${missing[*]} but am not root and sudo is missing: run as root"
        SUDO=(sudo -n)
        say "not root: using sudo"
    fi
    say "installing: ${missing[*]}"
    say "running apt-get update"
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    say "installed: ${missing[*]}"
else
    say "all system packages present; nothing to install"
fi

# ---- Rust toolchain -----------------------------------------------------------------------
# shellcheck source=lib/cargo-path.sh
. scripts/lib/cargo-path.sh

find_cargo || die "no Rust toolchain (cargo) found: install Rust $MIN_RUST or newer, e.g. from https://rustup.rs, then run this again"
version=$(cargo --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$MIN_RUST" "$version" | sort -V | head -1)" != "$MIN_RUST" ]; then
    die "cargo $version is too old: bpfns needs Rust $MIN_RUST or newer (rustup update)"
fi
say "present: cargo $version ($(command -v cargo))"

for comp in rustfmt clippy; do
    case $comp in
        rustfmt) probe=(cargo fmt --version) ;;
        clippy) probe=(cargo clippy --version) ;;
    esac
    if "${probe[@]}" >/dev/null 2>&1; then
        say "present: $comp"
    elif command -v rustup >/dev/null 2>&1; then
        say "installing: rustup component $comp"
        rustup component add "$comp"
    else
        die "$comp is missing and there is no rustup to add it: install your distribution's $comp"
    fi
done

say "done: this machine can build and test bpfns"
