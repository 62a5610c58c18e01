#!/usr/bin/env bash
# The Debian package, end to end on this machine (root): build it (scripts/package.sh), install
# it with apt-get, check its files and `bpfns --version`, start the installed bpfnsd (through
# systemd where systemd is pid 1, else directly), run the podman container tests against the
# installed binaries and that bpfnsd, register the wrapper with podman through the installed
# `bpfns containers install` and undo it, then purge the package and check that nothing of it
# is left. It refuses to run where bpfns is installed, a bpfnsd runs or a kernel side is pinned
# at the default place (it would take them away); state an earlier bpfnsd left in /var/lib/bpfns
# and /run/bpfns is moved aside meanwhile and put back.
#
#   bash scripts/package-test.sh [--deb PATH]   # --deb: test this package instead of building one
set -uo pipefail
# A reader that goes away (| head) must not kill the test before it has cleaned up.
trap '' PIPE
cd "$(dirname "$0")/.."

DEB=
while [ $# -gt 0 ]; do
    case $1 in
        --deb) DEB=${2:?--deb needs a file}; shift 2 ;;
        -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "package-test.sh: error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
say() { printf 'package-test: %s\n' "$*"; }
die() { printf 'package-test.sh: error: %s\n' "$*" >&2; exit 1; }
failures=()
fail() { printf 'package-test: FAILED: %s\n' "$*"; failures+=("$*"); }
check() { # check COMMAND...: a failure is counted, and the test goes on
    if "$@"; then say "ok: $*"; else fail "$*"; fi
}

[ "$(id -u)" -eq 0 ] || die "run as root: it installs and purges the package"
if dpkg-query -W -f='${Status}' bpfns 2>/dev/null | grep -q 'ok installed\|config-files'; then
    die "the package bpfns is installed already: this test installs and purges it (apt-get purge bpfns first)"
fi
if pgrep -x bpfnsd >/dev/null; then
    die "a bpfnsd runs here (pid $(pgrep -x bpfnsd | tr '\n' ' ')): stop it first"
fi
[ -e /sys/fs/bpf/bpfns ] &&
    die "a kernel side is pinned at /sys/fs/bpf/bpfns: a bpfns is in use here, and purging the package would remove it"
grep -q ' /run/bpfns/' /proc/mounts &&
    die "namespaces' bpffs instances are mounted below /run/bpfns: a bpfns is in use here"
MOVED=()

# shellcheck source=lib/cargo-path.sh
. scripts/lib/cargo-path.sh
find_cargo || die "cargo not found: run scripts/setup.sh first"
if [ -z "$DEB" ]; then
    DEB=$(bash scripts/package.sh) || die "building the package failed (above)"
fi
[ -f "$DEB" ] || die "no package at $DEB"
case $DEB in /*) ;; *) DEB=$PWD/$DEB ;; esac

BPFNSD_PID=
KEEPERS=
DROPIN=/etc/containers/containers.conf.d/bpfns.conf
DROPIN_OURS=
LOG=$(mktemp /tmp/bpfns-package-test.XXXXXX.log)
# Stop the bpfnsd this test started (and its listener keeper, which outlives bpfnsd by design
# and leaves by itself once idle), unload the kernel side, purge the package, and check that
# nothing of it is left.
stop_bpfnsd() {
    if [ -n "$BPFNSD_PID" ] && kill -0 "$BPFNSD_PID" 2>/dev/null; then
        KEEPERS=$(pgrep -P "$BPFNSD_PID" | tr '\n' ' ')
        kill "$BPFNSD_PID"
        for _ in $(seq 100); do kill -0 "$BPFNSD_PID" 2>/dev/null || break; sleep 0.1; done
    fi
    BPFNSD_PID=
    if [ -d /run/systemd/system ]; then
        KEEPERS="$KEEPERS $(systemctl show -p MainPID --value bpfnsd.service 2>/dev/null | xargs -r pgrep -P | tr '\n' ' ')"
        systemctl stop bpfnsd.socket bpfnsd.service 2>/dev/null
    fi
    for k in $KEEPERS; do
        for _ in $(seq 150); do kill -0 "$k" 2>/dev/null || break; sleep 0.1; done
        kill "$k" 2>/dev/null && say "ended bpfnsd's listener keeper (pid $k)"
    done
    KEEPERS=
}
# What is at the top of the host's bpffs (other than test daemons' pin roots): deleting a
# namespace moves its pins to orphans/ in its parent's bpffs, the root's being /sys/fs/bpf.
bpffs_top() { ls -A /sys/fs/bpf | grep -v '^bpfns-test-' ; }
BPFFS_BEFORE=$(bpffs_top)
ORPHANS_BEFORE=$(ls -A /sys/fs/bpf/orphans 2>/dev/null)
finish() {
    local rc=$?
    stop_bpfnsd
    # The pins of the namespaces the podman tests deleted.
    if [ -d /sys/fs/bpf/orphans ]; then
        for o in $(ls -A /sys/fs/bpf/orphans); do
            printf '%s\n' "$ORPHANS_BEFORE" | grep -qx "$o" || rm -rf "/sys/fs/bpf/orphans/$o"
        done
        [ -z "$ORPHANS_BEFORE" ] && rmdir /sys/fs/bpf/orphans 2>/dev/null
    fi
    if dpkg-query -W -f='${Status}' bpfns 2>/dev/null | grep -q 'installed\|config-files'; then
        say "purging the package (apt-get purge bpfns)"
        if DEBIAN_FRONTEND=noninteractive apt-get purge -y -q bpfns >"$LOG.purge" 2>&1; then
            grep '^bpfns:' "$LOG.purge" | sed 's/^/  /'
        else
            cat "$LOG.purge"
            fail "apt-get purge bpfns"
        fi
    fi
    for p in /usr/bin/bpfns /usr/sbin/bpfnsd /usr/bin/bpfns-oci /usr/bin/bpfns-oci-runc \
        /usr/bin/bpfns-oci-crun /usr/lib/systemd/system/bpfnsd.service /etc/bpfns \
        /var/lib/bpfns /run/bpfns /sys/fs/bpf/bpfns; do
        if [ -e "$p" ] || [ -L "$p" ]; then fail "left behind after purge: $p"; fi
    done
    # Never leave an enforcing kernel side, nor a registration naming a missing wrapper.
    if [ -e /sys/fs/bpf/bpfns ] && [ "$(stat -f -c %T /sys/fs/bpf/bpfns)" = bpf_fs ]; then
        rm -rf /sys/fs/bpf/bpfns
    fi
    if [ -n "$DROPIN_OURS" ] && [ -e "$DROPIN" ]; then
        fail "the package's removal left $DROPIN (removed now)"
        rm -f "$DROPIN"
    fi
    [ "$(bpffs_top)" = "$BPFFS_BEFORE" ] ||
        fail "/sys/fs/bpf differs from before: $(diff <(printf '%s\n' "$BPFFS_BEFORE") <(bpffs_top) | tr '\n' ' ')"
    for d in "${MOVED[@]}"; do
        if [ -e "$d" ]; then
            fail "$d exists at the end: the original is still at $d.package-test-$$"
        else
            mv "$d.package-test-$$" "$d" && say "put $d back"
        fi
    done
    rm -f "$LOG" "$LOG.purge" "$LOG.install"
    if [ "$rc" -eq 0 ] && [ ${#failures[@]} -eq 0 ]; then
        say "all passed"
        exit 0
    fi
    [ ${#failures[@]} -gt 0 ] && { say "FAILED: ${#failures[@]} check(s):"; printf '  %s\n' "${failures[@]}"; }
    exit 1
}
trap finish EXIT

# State an earlier bpfnsd left (none runs): kept aside, and put back at the end.
for d in /var/lib/bpfns /run/bpfns; do
    if [ -e "$d" ]; then
        mv "$d" "$d.package-test-$$" || die "cannot move $d aside"
        MOVED+=("$d")
        say "moved $d (left by an earlier bpfnsd) aside to $d.package-test-$$ until the end"
    fi
done

say "installing $DEB (apt-get install --no-install-recommends)"
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$DEB" >"$LOG.install" 2>&1; then
    cat "$LOG.install"
    die "apt-get install failed (above)"
fi
sed -n '/^bpfns: installed/,/containers.md)/p' "$LOG.install" | sed 's/^/  /'

# The files, as the package lays them out.
for f in /usr/bin/bpfns /usr/sbin/bpfnsd /usr/bin/bpfns-oci; do
    check test -x "$f"
done
for rt in crun runc; do
    check test "$(readlink /usr/bin/bpfns-oci-$rt)" = bpfns-oci
done
check test -f /usr/lib/systemd/system/bpfnsd.service
check grep -q '^ExecStart=/usr/sbin/bpfnsd$' /usr/lib/systemd/system/bpfnsd.service
check test -f /usr/lib/systemd/system/bpfnsd.socket
check test -f /usr/share/doc/bpfns/containers.md
check test -f /usr/share/bash-completion/completions/bpfns
check sh -c 'zcat /usr/share/man/man1/bpfns.1.gz | grep -q "^.TH bpfns 1"'
check sh -c "dpkg-query -W -f='\${Conffiles}' bpfns | grep -q '/etc/bpfns/bpfnsd.toml'"
check sh -c 'cmp -s /etc/bpfns/bpfnsd.toml dist/bpfnsd.toml'
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
check sh -c "/usr/bin/bpfns --version | grep -qx 'bpfns $version'"
check sh -c "/usr/sbin/bpfnsd --version | grep -qx 'bpfnsd $version'"
check sh -c '/usr/bin/bpfns containers install --help | grep -q -- --undo'
# postinst started nothing.
check sh -c '! pgrep -x bpfnsd >/dev/null'

# The installed bpfnsd, with the installed configuration.
check /usr/sbin/bpfnsd --check
if [ -d /run/systemd/system ]; then
    say "starting bpfnsd through systemd (socket activation)"
    systemctl start bpfnsd.socket || fail "systemctl start bpfnsd.socket"
else
    say "systemd is not pid 1 here ($(ps -p 1 -o comm=)): starting /usr/sbin/bpfnsd directly"
    setsid /usr/sbin/bpfnsd >>"$LOG" 2>&1 &
    BPFNSD_PID=$!
    for _ in $(seq 100); do [ -S /run/bpfns/bpfns.sock ] && break; sleep 0.1; done
fi
if ! /usr/bin/bpfns status >/dev/null 2>&1; then
    for _ in $(seq 50); do /usr/bin/bpfns status >/dev/null 2>&1 && break; sleep 0.2; done
fi
if ! /usr/bin/bpfns status; then
    cat "$LOG"
    die "the installed bpfnsd does not answer (its log above)"
fi

# The podman tests against the installed binaries and bpfnsd.
say "podman tests with the installed bpfns-oci, bpfns and bpfnsd"
if BPFNS_OCI=/usr/bin/bpfns-oci BPFNS_CLI=/usr/bin/bpfns \
    BPFNS_TEST_BPFNSD_SOCKET=/run/bpfns/bpfns.sock \
    BPFNS_TEST_BPFNSD_SECCOMP_SOCKET=/run/bpfns/seccomp.sock \
    cargo test -q -p bpfns-oci --test podman -- podman_on_ podman_through; then
    say "ok: podman tests"
else
    fail "podman tests against the installed binaries"
    echo "--- the installed bpfnsd's log (last 40 lines):"
    tail -n 40 "$LOG"
fi

# The installed registration with podman's own configuration directory, and its undo; then
# registered again, for the package's removal to undo (prerm).
if [ -e "$DROPIN" ]; then
    fail "$DROPIN exists already: not touching it"
else
    DROPIN_OURS=1
    check /usr/bin/bpfns containers install --engine podman
    check grep -q '^bpfns-runc = \["/usr/bin/bpfns-oci-runc"\]' "$DROPIN"
    check sh -c '/usr/bin/bpfns -j containers install --engine podman | grep -q "\"changed\":false"'
    check /usr/bin/bpfns containers install --engine podman --undo
    check test ! -e "$DROPIN"
    check /usr/bin/bpfns containers install --engine podman --default
fi

# finish (on exit) stops bpfnsd, purges the package (its prerm undoes the registration, its
# postrm removes the state and the pinned kernel side) and reports.
