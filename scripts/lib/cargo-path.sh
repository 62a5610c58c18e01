# Sourced by bpfns's scripts (from the repository root): find_cargo puts cargo on PATH.
# Under sudo, root's PATH lacks the invoking user's ~/.cargo/bin (and rustup's home): look
# there too. Returns 1 when no cargo is found.
find_cargo() {
    command -v cargo >/dev/null 2>&1 && return 0
    local h
    for h in "${HOME:-/root}" "$(getent passwd "${SUDO_USER:-}" 2>/dev/null | cut -d: -f6)"; do
        if [ -n "$h" ] && [ -x "$h/.cargo/bin/cargo" ]; then
            export PATH="$h/.cargo/bin:$PATH"
            if [ -z "${RUSTUP_HOME:-}" ] && [ -d "$h/.rustup" ]; then export RUSTUP_HOME="$h/.rustup"; fi
            return 0
        fi
    done
    return 1
}
