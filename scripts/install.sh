#!/usr/bin/env bash
# Install bpfns from this checkout (run as root; scripts/package.sh builds a Debian package):
#   bpfnsd -> PREFIX/sbin/bpfnsd, bpfns -> PREFIX/bin/bpfns (PREFIX default /usr/local),
#   bpfns-oci -> PREFIX/bin/bpfns-oci with its links bpfns-oci-crun and bpfns-oci-runc,
#   the systemd units -> /etc/systemd/system (ExecStart pointing at PREFIX/sbin/bpfnsd),
#   the example configuration -> /etc/bpfns/bpfnsd.toml (never over an existing file).
#
#   bash scripts/install.sh [--prefix DIR] [--destdir DIR] [--no-build]
#
# --destdir stages everything under DIR (for packaging, or to look before installing);
# --no-build installs the release binaries already in target/release.
# It enables nothing: it says how to start bpfnsd (systemd, or by hand where there is none).
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=/usr/local
DESTDIR=
BUILD=1
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
        --destdir) DESTDIR=${2:?--destdir needs a directory}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
say() { printf 'install: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (it writes $PREFIX and /etc), or stage with --destdir DIR"
fi
if [ "$BUILD" = 1 ]; then
    # shellcheck source=lib/cargo-path.sh
    . scripts/lib/cargo-path.sh
    find_cargo || true
    command -v cargo >/dev/null 2>&1 || die "cargo not found: run scripts/setup.sh first"
    say "building the release binaries (cargo build --release --bin bpfnsd --bin bpfns --bin bpfns-oci)"
    cargo build --release --bin bpfnsd --bin bpfns --bin bpfns-oci
fi
for b in bpfnsd bpfns bpfns-oci; do
    [ -x "target/release/$b" ] || die "target/release/$b is missing: run without --no-build"
done

install -D -m 0755 target/release/bpfnsd "$DESTDIR$PREFIX/sbin/bpfnsd"
install -D -m 0755 target/release/bpfns "$DESTDIR$PREFIX/bin/bpfns"
install -D -m 0755 target/release/bpfns-oci "$DESTDIR$PREFIX/bin/bpfns-oci"
# Engines start a runtime by path, without arguments: one name per real runtime.
for rt in crun runc; do ln -sfn bpfns-oci "$DESTDIR$PREFIX/bin/bpfns-oci-$rt"; done
say "installed $DESTDIR$PREFIX/sbin/bpfnsd, $DESTDIR$PREFIX/bin/bpfns and $DESTDIR$PREFIX/bin/bpfns-oci (and its links)"
# The manual page and shell completions, generated from the CLI's own definitions.
install -d "$DESTDIR$PREFIX/share/man/man1" "$DESTDIR$PREFIX/share/bash-completion/completions" \
    "$DESTDIR$PREFIX/share/zsh/site-functions" "$DESTDIR$PREFIX/share/fish/vendor_completions.d"
target/release/bpfns man >"$DESTDIR$PREFIX/share/man/man1/bpfns.1"
target/release/bpfns completions bash >"$DESTDIR$PREFIX/share/bash-completion/completions/bpfns"
target/release/bpfns completions zsh >"$DESTDIR$PREFIX/share/zsh/site-functions/_bpfns"
target/release/bpfns completions fish >"$DESTDIR$PREFIX/share/fish/vendor_completions.d/bpfns.fish"
say "installed the manual page bpfns(1) and bash, zsh and fish completions"

units=$DESTDIR/etc/systemd/system
mkdir -p "$units"
sed "s|^ExecStart=.*|ExecStart=$PREFIX/sbin/bpfnsd|" dist/systemd/bpfnsd.service >"$units/bpfnsd.service"
install -m 0644 dist/systemd/bpfnsd.socket "$units/bpfnsd.socket"
chmod 0644 "$units/bpfnsd.service"
say "installed the systemd units in $units"

conf=$DESTDIR/etc/bpfns/bpfnsd.toml
if [ -e "$conf" ]; then
    say "kept the existing $conf"
else
    install -D -m 0644 dist/bpfnsd.toml "$conf"
    say "installed the default configuration $conf"
fi

[ -n "$DESTDIR" ] && exit 0
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    say "start it: systemctl enable --now bpfnsd.socket   (logs: journalctl -u bpfnsd)"
else
    say "no systemd here; start it by hand: setsid $PREFIX/sbin/bpfnsd >>/var/log/bpfnsd.log 2>&1 &"
fi
say "then: bpfns doctor; bpfns status; containers: bpfns containers install --engine podman|docker|containerd"
