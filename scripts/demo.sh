#!/usr/bin/env bash
# bpfns in one command (run as root): set the machine up, build, load the kernel side, check
# the kernel, put two tenants in two namespaces, list every map with its owner, and show the
# backstop stopping tenant B when it opens tenant A's map. Cleans up its own pins at the end
# and leaves the kernel side loaded.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DIR=/sys/fs/bpf/bpfns-demo
NS_A=1
NS_B=2

section() { printf '\n=== %s ===\n\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh: error: run as root (sudo scripts/demo.sh): it loads BPF programs into the kernel" >&2
    exit 1
fi
trap 'echo; echo "demo.sh: FAILED at line $LINENO (see the output above)" >&2' ERR

section "1. Setting up the machine (scripts/setup.sh)"
bash scripts/setup.sh

# Under sudo, root's PATH lacks the invoking user's ~/.cargo/bin: look there too.
if ! command -v cargo >/dev/null 2>&1; then
    for h in "${HOME:-/root}" "$(getent passwd "${SUDO_USER:-}" 2>/dev/null | cut -d: -f6)"; do
        if [ -n "$h" ] && [ -x "$h/.cargo/bin/cargo" ]; then
            export PATH="$h/.cargo/bin:$PATH"
            if [ -z "${RUSTUP_HOME:-}" ] && [ -d "$h/.rustup" ]; then export RUSTUP_HOME="$h/.rustup"; fi
            break
        fi
    done
fi

section "2. Building (cargo build --release)"
cargo build --release
BPFNS=$PWD/target/release/bpfns
bpfns() { "$BPFNS" "$@"; }

section "3. Loading the kernel side"
show bpfns kernel load

section "4. What this kernel supports (bpfns doctor)"
if ! show bpfns doctor; then
    echo
    echo "bpfns doctor reports a missing required feature (see the fix lines above); stopping."
    exit 1
fi

section "5. Two namespaces in the kernel's table: $NS_A (tenant A) and $NS_B (tenant B)"
show bpfns kernel ns-set "$NS_A" --parent 0
show bpfns kernel ns-set "$NS_B" --parent 0

section "6. Each tenant creates a map, as a process of its namespace"
mkdir -p "$DEMO_DIR"
rm -f "$DEMO_DIR/tenant_a_map" "$DEMO_DIR/tenant_b_map"
show bpfns kernel run "$NS_A" -- bpftool map create "$DEMO_DIR/tenant_a_map" \
    type array key 4 value 4 entries 1 name tenant_a_map
show bpfns kernel run "$NS_B" -- bpftool map create "$DEMO_DIR/tenant_b_map" \
    type array key 4 value 4 entries 1 name tenant_b_map
A_ID=$(bpftool map show pinned "$DEMO_DIR/tenant_a_map" | head -1 | cut -d: -f1)
B_ID=$(bpftool map show pinned "$DEMO_DIR/tenant_b_map" | head -1 | cut -d: -f1)
echo "tenant A's map has id $A_ID, tenant B's map has id $B_ID"

section "7. Every map on the host with its owner namespace (bpfns map list)"
show bpfns map list
echo
echo "(the kernel side's own maps belong to the root, \"/\"; each tenant's map to its namespace)"
echo
show bpfns map show "$A_ID"

section "8. Tenant B opens tenant A's map by id"
echo "Tenant A may open its own map:"
show bpfns kernel run "$NS_A" -- bpftool map show id "$A_ID"
echo
echo "Tenant B tries the same:"
status=0
show bpfns kernel run "$NS_B" -- bpftool map show id "$A_ID" || status=$?
echo
if [ "$status" -eq 137 ]; then
    echo "exit status $status = 128 + 9 (SIGKILL): the kernel side's backstop saw a process of"
    echo "namespace $NS_B come back from bpf(BPF_MAP_GET_FD_BY_ID) holding a file descriptor of"
    echo "map $A_ID, owned by namespace $NS_A, and killed it before it returned to user space:"
    echo "it never got to use the descriptor."
else
    echo "UNEXPECTED: exit status $status; the backstop should have stopped the process (137)"
    exit 1
fi
echo
show bpfns kernel status

section "9. Cleaning up the demo"
rm -f "$DEMO_DIR/tenant_a_map" "$DEMO_DIR/tenant_b_map"
rmdir "$DEMO_DIR"
echo "removed the demo pins under $DEMO_DIR"
sleep 1 # maps are freed asynchronously once their last reference is gone
show bpfns kernel gc
show bpfns kernel ns-rm "$NS_A"
show bpfns kernel ns-rm "$NS_B"
echo
echo "The kernel side stays loaded at /sys/fs/bpf/bpfns (it keeps recording owners and"
echo "stopping foreign opens). To remove it:"
echo "    $BPFNS kernel unload"
