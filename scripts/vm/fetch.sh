#!/usr/bin/env bash
# Fetch and unpack what the VM lane boots, into the cache ($BPFNS_VM_CACHE, default
# ~/.cache/bpfns-vm), with `apt-get download` + `dpkg -x` only: nothing is installed on the
# machine (installing bookworm's qemu-system-x86 would remove a newer qemu-utils).
#
#   fetch.sh tools          qemu-system-x86 (+ the libraries this machine lacks), seabios,
#                           busybox-static  -> $CACHE/root
#   fetch.sh kernel 6.1     Debian 12's linux-image-6.1.0-*-amd64 (bookworm)
#   fetch.sh kernel 6.12    linux-image-6.12*-cloud-amd64 from bookworm-backports (a private apt
#                           configuration under $CACHE/apt; nothing in /etc/apt changes)
#
# `kernel` prints the path of the kernel's directory (vmlinuz, config) on stdout; all messages
# go to stderr. A warm cache needs no network.
set -euo pipefail

CACHE=${BPFNS_VM_CACHE:-${HOME:-/root}/.cache/bpfns-vm}
DEBS=$CACHE/debs
ROOT=$CACHE/root
mkdir -p "$DEBS" "$ROOT"

say() { printf 'vm-fetch: %s\n' "$*" >&2; }
die() { printf 'vm-fetch: error: %s\n' "$*" >&2; exit 1; }

APT_DL=(-q -o APT::Sandbox::User=root)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# The cached .deb of a package (any version), or nothing.
cached_deb() { compgen -G "$DEBS/${1}_*.deb" | head -1 || true; }

# download PKG [APT_OPTIONS...]: into $DEBS unless cached.
download() {
    local pkg=$1
    shift
    [ -n "$(cached_deb "$pkg")" ] && return 0
    say "downloading $pkg"
    (cd "$DEBS" && apt-get "${APT_DL[@]}" "$@" download "$pkg" >&2) || return 1
}

# The first installable alternative of each dependency in a .deb's Depends, one per line.
deps_of() {
    dpkg-deb -f "$1" Depends 2>/dev/null | tr ',' '\n' | while read -r alt; do
        [ -z "$alt" ] && continue
        # "a (>= 1) | b" -> try a, then b
        local first=""
        for p in $(printf '%s\n' "$alt" | tr '|' '\n' | sed 's/(.*)//; s/:any//; s/ //g'); do
            if installed "$p" || [ -n "$(cached_deb "$p")" ]; then first=""; break; fi
            [ -z "$first" ] && first=$p
        done
        [ -n "$first" ] && printf '%s\n' "$first"
    done
}

# Package lists are needed for `apt-get download`; a fresh container may have none.
ensure_lists() {
    if ! apt-cache show "$1" >/dev/null 2>&1; then
        say "no apt lists for $1: apt-get update"
        apt-get -q update >&2 || die "apt-get update failed"
    fi
}

tools() {
    local stamp=$CACHE/root/.complete
    if [ -f "$stamp" ]; then
        return 0
    fi
    ensure_lists qemu-system-x86
    # ipxe-qemu only has network boot ROMs: the VMs have no network card.
    # Breadth first, one `apt-get download` per level.
    local level=(qemu-system-x86 qemu-system-data seabios busybox-static) seen=" " p
    while [ ${#level[@]} -gt 0 ]; do
        local new=() fetch=()
        for p in "${level[@]}"; do
            case "$seen" in *" $p "*) continue ;; esac
            [ "$p" = ipxe-qemu ] && continue
            seen="$seen$p "
            new+=("$p")
            [ -n "$(cached_deb "$p")" ] || fetch+=("$p")
        done
        if [ ${#fetch[@]} -gt 0 ]; then
            say "downloading ${fetch[*]}"
            (cd "$DEBS" && apt-get "${APT_DL[@]}" download "${fetch[@]}" >&2) ||
                die "apt-get download failed (network? apt-get update?)"
        fi
        level=()
        for p in "${new[@]}"; do
            while read -r d; do
                [ -n "$d" ] && level+=("$d")
            done < <(deps_of "$(cached_deb "$p")")
        done
    done
    rm -rf "$ROOT"
    mkdir -p "$ROOT"
    for p in $seen; do
        dpkg -x "$(cached_deb "$p")" "$ROOT"
    done
    local q=$ROOT/usr/bin/qemu-system-x86_64
    [ -x "$q" ] || die "no qemu-system-x86_64 in the unpacked packages"
    local missing
    missing=$(LD_LIBRARY_PATH=$(libpath) ldd "$q" | grep 'not found' || true)
    [ -z "$missing" ] || die "qemu-system-x86_64 lacks libraries: $missing"
    [ -x "$ROOT/bin/busybox" ] || die "no busybox in busybox-static"
    touch "$stamp"
    say "tools unpacked in $ROOT ($(du -sh "$DEBS" | cut -f1) of .debs)"
}

libpath() {
    printf '%s' "$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/lib/x86_64-linux-gnu:$ROOT/usr/lib/x86_64-linux-gnu/pulseaudio"
}

# A private apt configuration for bookworm-backports (lists under $CACHE/apt).
backports_apt() {
    local dir=$CACHE/apt
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    cat > "$dir/sources.list" <<EOS
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main
EOS
    APT_BPO=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache"
        -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o Debug::NoLocking=1)
}

# kernel VERSION: unpack the newest matching image; print its directory.
kernel() {
    local want=$1 meta pkg opts=()
    case $want in
        6.1)
            meta=linux-image-amd64
            ensure_lists "$meta"
            ;;
        6.12)
            meta=linux-image-cloud-amd64
            backports_apt
            opts=("${APT_BPO[@]}")
            # The lists are refreshed at most once a day.
            if [ -z "$(find "$CACHE/apt/lists" -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
                say "apt-get update (bookworm-backports only, private lists)"
                apt-get -q "${opts[@]}" update >&2 || return 2
            fi
            ;;
        *) die "unknown kernel $want (known: 6.1, 6.12)" ;;
    esac
    pkg=$(apt-cache "${opts[@]}" depends "$meta" 2>/dev/null |
        sed -n "s/^  Depends: \(linux-image-${want//./\\.}[.0-9+a-z~-]*-amd64\)$/\1/p" | head -1)
    if [ -z "$pkg" ]; then
        # Offline: whatever is cached.
        local d
        d=$(compgen -G "$CACHE/kernels/linux-image-${want}*" | sort -V | tail -1 || true)
        [ -n "$d" ] && { printf '%s\n' "$d"; return 0; }
        say "no $meta in the apt lists and nothing cached"
        return 2
    fi
    local dir=$CACHE/kernels/$pkg
    if [ ! -f "$dir/.complete" ]; then
        download "$pkg" "${opts[@]}" || return 2
        rm -rf "$dir" "$dir.tmp"
        mkdir -p "$dir.tmp"
        dpkg-deb --fsys-tarfile "$(cached_deb "$pkg")" |
            tar -x -C "$dir.tmp" --wildcards './boot/*'
        mv "$dir.tmp/boot/vmlinuz-"* "$dir.tmp/vmlinuz"
        mv "$dir.tmp/boot/config-"* "$dir.tmp/config"
        rm -rf "$dir.tmp/boot"
        mv "$dir.tmp" "$dir"
        # Only the image is kept: the .deb (with its modules) is not needed any more.
        rm -f "$(cached_deb "$pkg")"
        touch "$dir/.complete"
        say "kernel $pkg unpacked in $dir"
    fi
    printf '%s\n' "$dir"
}

case ${1:-} in
    tools) tools ;;
    kernel) kernel "${2:?kernel version}" ;;
    libpath) libpath ;;
    *) die "usage: fetch.sh tools | kernel 6.1|6.12 | libpath" ;;
esac
