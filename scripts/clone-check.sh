#!/usr/bin/env bash
# The suite must pass from wherever a user clones bpfns. This step clones the committed tree
# (HEAD) into a fresh 0700 `mktemp -d` directory, under a folder whose name has a space, and
# runs there the tests that depend on where the build lives: the red-team scene whose
# columns run the test helper as uid 1000 and in user namespaces, and the CLI's end-to-end
# test, which runs `bpfns` and bpftool in members. The clone reuses this tree's debug build
# (target/debug without its incremental caches, which the clone's new paths would not use
# anyway), so only bpfns's own crates are rebuilt and the copy stays a few GiB.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
# shellcheck source=lib/cargo-path.sh
. scripts/lib/cargo-path.sh
find_cargo || true

top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT
chmod 0700 "$top"
dest="$top/a clone/bpfns"
mkdir -p "$top/a clone"
git clone -q "$src" "$dest"
echo "clone-check: cloned $(git -C "$dest" rev-parse --short HEAD) into $dest (parent mode $(stat -c %a "$top"))"
if [ -d "$src/target/debug" ]; then
    mkdir -p "$dest/target"
    tar -C "$src/target" --exclude=./debug/incremental -cf - ./debug | tar -C "$dest/target" -xf -
    echo "clone-check: reused $(du -sh "$dest/target" | cut -f1) of this tree's debug build"
fi
cd "$dest"
cargo test -q -p bpfns-tests --test redteam scene::ids -- --nocapture
cargo test -q -p bpfns-cli --test rfc_table
