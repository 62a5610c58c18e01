#!/usr/bin/env bash
# bpfns in one command (run as root): set the machine up, build, start bpfnsd, and show the
# RFC's table live — two tenants that each see only their own BPF objects (with unmodified
# bpftool), the host that sees everything with owners, and a tenant that is host root failing
# to open the other tenant's map, which `bpfns events` for that tenant reports; then the same with podman containers (BPFNS_DEMO_CONTAINERS=0
# skips them). Leaves bpfnsd running (and says how to stop it).
set -euo pipefail
cd "$(dirname "$0")/.."

SOCKET=${BPFNS_SOCKET:-/run/bpfns/bpfns.sock}
LOG=${BPFNSD_LOG:-/var/log/bpfnsd.log}
A=/demo-tenant-a
B=/demo-tenant-b

section() { printf '\n=== %s ===\n\n' "$*"; }
# Print the command (arguments with spaces or shell characters in single quotes), then run it.
show() {
    local out='$' a
    for a in "$@"; do
        if [[ $a =~ [[:space:]\&\;\|\'\"\$\<\>] ]]; then
            out+=" '${a//\'/\'\\\'\'}'"
        else
            out+=" $a"
        fi
    done
    printf '%s\n' "$out"
    "$@"
}

if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh: error: run as root: it loads BPF programs into the kernel" >&2
    exit 1
fi
trap 'echo; echo "demo.sh: FAILED at line $LINENO (see the output above; bpfnsd logs: $LOG)" >&2' ERR

section "1. Setting up the machine (scripts/setup.sh)"
bash scripts/setup.sh

# shellcheck source=lib/cargo-path.sh
. scripts/lib/cargo-path.sh
find_cargo || true

CONTAINERS=${BPFNS_DEMO_CONTAINERS:-1}
if [ "$CONTAINERS" = 1 ]; then
    section "1b. Container engines and a local image (scripts/containers/setup.sh)"
    bash scripts/containers/setup.sh
fi

section "2. Building (cargo build --release)"
cargo build --release --bin bpfns --bin bpfnsd --bin bpfns-oci
BIN=$PWD/target/release
export BPFNS_SOCKET=$SOCKET
bpfns() { "$BIN/bpfns" "$@"; }
# A tenant's process: runs as a member of the namespace, with the caller's credentials (root).
as_tenant() { local ns=$1; shift; "$BIN/bpfns" exec "$ns" -- "$@"; }

section "3. What this kernel supports (bpfns doctor)"
if ! show bpfns doctor; then
    echo
    echo "bpfns doctor reports a missing required feature (see the fix lines above); stopping."
    exit 1
fi

section "4. Starting bpfnsd (it loads the kernel side; logs: $LOG)"
if "$BIN/bpfns" ns list >/dev/null 2>&1; then
    echo "bpfnsd already answers at $SOCKET"
else
    mkdir -p "$(dirname "$LOG")"
    # setsid: bpfnsd outlives this script (and is not one of its jobs).
    setsid "$BIN/bpfnsd" --socket "$SOCKET" >>"$LOG" 2>&1 < /dev/null &
    disown
    for _ in $(seq 100); do
        "$BIN/bpfns" ns list >/dev/null 2>&1 && break
        sleep 0.1
    done
    "$BIN/bpfns" ns list >/dev/null || { echo "bpfnsd did not start; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
    echo "bpfnsd is running (pid $(pgrep -n -x bpfnsd)), serving $SOCKET"
fi
echo
# Which layers enforce on this kernel (BPF LSM only where the kernel runs BPF LSM programs).
show bpfns status

section "5. Two tenants, two namespaces"
for ns in "$A" "$B"; do
    # A previous run's namespace: unpin its maps, then delete it (fresh ids, fresh objects).
    if "$BIN/bpfns" ns show "$ns" >/dev/null 2>&1; then
        as_tenant "$ns" sh -c 'rm -f /sys/fs/bpf/tenant_*' || true
        "$BIN/bpfns" ns delete "$ns" >/dev/null
    fi
    show bpfns ns create "$ns" >/dev/null && echo "created $ns"
done

section "5b. Watching tenant B: bpfns events --ns $B (in the background)"
# What bpfnsd sees happen in tenant B's namespace, one line an event; shown after step 9.
EVENTS=$(mktemp /tmp/bpfns-demo-events.XXXXXX)
"$BIN/bpfns" events --ns "$B" >"$EVENTS" 2>&1 &
EVENTS_PID=$!
stop_events() { kill "$EVENTS_PID" 2>/dev/null || true; wait "$EVENTS_PID" 2>/dev/null || true; rm -f "$EVENTS"; }
trap stop_events EXIT
echo "\$ bpfns events --ns $B &"
# Subscribed before anything of B's happens.
for _ in $(seq 50); do
    [ "$("$BIN/bpfns" -j status 2>/dev/null | python3 -c 'import json,sys; print(dict(json.load(sys.stdin)["counters"]).get("events_subscribers", 0))' 2>/dev/null)" != 0 ] && break
    sleep 0.1
done

section "6. Each tenant loads a map with unmodified bpftool, pinned in its own /sys/fs/bpf"
# Without CAP_PERFMON and CAP_SYS_ADMIN: libbpf probes the kernel with a program before it
# names a map, and where a namespace denies tracing nothing is loaded with perfmon power.
NOPERFMON="setpriv --bounding-set=-perfmon,-sys_admin --"
show as_tenant "$A" $NOPERFMON bpftool map create /sys/fs/bpf/tenant_a_map type array key 4 value 4 entries 1 name tenant_a_map
show as_tenant "$B" $NOPERFMON bpftool map create /sys/fs/bpf/tenant_b_map type array key 4 value 4 entries 1 name tenant_b_map
A_MAP=$("$BIN/bpfns" -j map list | python3 -c 'import json,sys; print([m["id"] for m in json.load(sys.stdin) if m["name"]=="tenant_a_map"][-1])')
echo "tenant A's map has id $A_MAP"

section "7. The host sees every object, with its owner namespace"
show bpfns ns list
echo
echo "\$ bpfns map list"
bpfns map list | awk 'NR == 1 || / \/ *$/ && n++ < 3 || /tenant_/'
echo "(the tenants' maps with their namespaces; the first few of root's, such as the kernel side's own)"

section "8. Each tenant sees only its own (bpftool map show, inside the namespace)"
echo "--- tenant A:"
show as_tenant "$A" bpftool map show
echo "--- tenant B:"
show as_tenant "$B" bpftool map show
echo "--- tenant B's /sys/fs/bpf:"
show as_tenant "$B" ls /sys/fs/bpf

section "9. Tenant B is host root, and tries to open tenant A's map by id"
as_tenant "$B" sh -c 'echo "tenant B runs as uid $(id -u) with CapEff $(grep CapEff /proc/self/status | cut -f2)"'
echo "\$ bpfns exec $B -- bpftool map show id $A_MAP"
if as_tenant "$B" bpftool map show id "$A_MAP"; then
    echo "UNEXPECTED: tenant B opened tenant A's map" >&2
    exit 1
fi
echo "=> refused: the supervisor answered ENOENT, as for an id that does not exist."
echo
# A process of tenant A, whose root shows tenant A's /sys/fs/bpf.
as_tenant "$A" sleep 30 &
HOLDER=$!
APID=""
for _ in $(seq 50); do
    APID=$(pgrep -n -x sleep -P "$HOLDER" 2>/dev/null || pgrep -n -x sleep) && break
    sleep 0.1
done
echo "\$ bpfns exec $B -- bpftool map show pinned /proc/$APID/root/sys/fs/bpf/tenant_a_map"
if as_tenant "$B" bpftool map show pinned "/proc/$APID/root/sys/fs/bpf/tenant_a_map"; then
    echo "UNEXPECTED: tenant B opened tenant A's pin" >&2
    exit 1
fi
echo "=> refused: that pin is tenant A's (on Linux 6.12 and later the kernel already refuses tenant B"
echo "   the way in: /proc/PID/root of a process outside its Landlock domain)."
kill "$APID" 2>/dev/null || true
wait "$HOLDER" 2>/dev/null || true

section "9b. What bpfns events --ns $B saw meanwhile"
# The refusal reaches the stream as the supervisor answers; give it a moment.
for _ in $(seq 50); do
    grep -q " denied $B .*object=map:$A_MAP" "$EVENTS" && break
    sleep 0.1
done
cat "$EVENTS"
if ! grep -q " denied $B .*object=map:$A_MAP" "$EVENTS"; then
    echo "UNEXPECTED: tenant B's refused open of map $A_MAP is not in its event stream" >&2
    exit 1
fi
echo "=> tenant B's objects as it created them (object_created; libbpf's feature probes among"
echo "   them), and its refused open of tenant A's map (denied), as the supervisor answered it."
stop_events
trap - EXIT

section "10. Tenant A may open its own map"
show as_tenant "$A" bpftool map dump id "$A_MAP"

if [ "$CONTAINERS" = 1 ]; then
    # podman runs bpfns-oci instead of the runtime, registered in a containers.conf of the demo's
    # own (CONTAINERS_CONF): the host's podman configuration is not changed.
    DEMO=/var/lib/bpfns-demo
    mkdir -p "$DEMO/bin"
    for rt in crun runc; do ln -sf "$BIN/bpfns-oci" "$DEMO/bin/bpfns-oci-$rt"; done
    cat "${BPFNS_CONTAINERS_DIR:-/var/lib/bpfns-containers}/containers.conf" - >"$DEMO/containers.conf" <<CONF

[engine.runtimes]
bpfns-crun = ["$DEMO/bin/bpfns-oci-crun"]
bpfns-runc = ["$DEMO/bin/bpfns-oci-runc"]
CONF
    export CONTAINERS_CONF=$DEMO/containers.conf
    RT=${BPFNS_DEMO_RUNTIME:-bpfns-crun}
    IMAGE=localhost/bpfns-test
    podman rm -f -i -t 0 demo-web demo-db >/dev/null 2>&1 || true

    section "11. Two podman containers with --cap-add BPF (runtime $RT): each makes a map"
    for c in web db; do
        show podman run -d --name "demo-$c" --runtime "$RT" --cap-add BPF --network=none "$IMAGE" \
            sh -c "bpftool map create /sys/fs/bpf/${c}_map type array key 4 value 4 entries 1 name ${c}_map && sleep 3600"
    done
    for _ in $(seq 50); do
        bpfns map list | grep -q db_map && bpfns map list | grep -q web_map && break
        sleep 0.2
    done
    WEB_MAP=$("$BIN/bpfns" -j map list | python3 -c 'import json,sys; print([m["id"] for m in json.load(sys.stdin) if m["name"]=="web_map"][-1])')

    section "12. The host sees both containers' maps, each owned by its container's namespace"
    echo "\$ bpfns map list"
    bpfns map list | awk 'NR == 1 || /web_map|db_map/'

    section "13. Inside, each container sees only its own (podman exec ... bpftool map show)"
    echo "--- demo-web:"
    show podman exec demo-web bpftool map show
    echo "--- demo-db:"
    show podman exec demo-db bpftool map show
    show podman exec demo-db ls /sys/fs/bpf

    section "14. A privileged container (host root, every capability) tries demo-web's map $WEB_MAP"
    echo "\$ podman run --rm --privileged --runtime $RT $IMAGE bpftool map show id $WEB_MAP"
    if podman run --rm --privileged --runtime "$RT" --network=none "$IMAGE" bpftool map show id "$WEB_MAP"; then
        echo "UNEXPECTED: a privileged container opened demo-web's map" >&2
        exit 1
    fi
    echo "=> refused: the map is not in its namespace."
fi

section "Done"
cat <<MSG
bpfnsd keeps running (pid $(pgrep -n -x bpfnsd)); the demo namespaces stay so you can explore:
    $BIN/bpfns ns list
    $BIN/bpfns exec $A -- bpftool map show
MSG
if [ "$CONTAINERS" = 1 ]; then
    cat <<MSG
    CONTAINERS_CONF=$CONTAINERS_CONF podman exec demo-web bpftool map show
MSG
fi
cat <<MSG
To clean up:
    CONTAINERS_CONF=${CONTAINERS_CONF:-} podman rm -f -t 0 demo-web demo-db
    $BIN/bpfns ns delete $A; $BIN/bpfns ns delete $B
    $BIN/bpfns ns list    # until the containers' namespaces are gone: bpfnsd deletes them
                          # (and unmounts their bpffs) once it sees their containers gone
    pkill -x bpfnsd; $BIN/bpfns kernel unload
MSG
