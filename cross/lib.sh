# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# Shared helpers for the scripts in cross/. Source it; do not run it.
#
#   POLYVISOR_CACHE   where downloads, guest artifacts, nested builds and logs live
#                     (default: $HOME/.cache/polyvisor); survives fresh clones.
#   POLYVISOR_VERBOSE=1  show the output of long steps instead of only their log path.

set -euo pipefail

PV_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PV_CACHE="${POLYVISOR_CACHE:-${HOME:-/root}/.cache/polyvisor}"
export PV_REPO PV_CACHE
mkdir -p "$PV_CACHE/logs"

pv_log()  { printf '%s\n' "$*" >&2; }
pv_step() { printf '[%s] %s\n' "${PV_SCRIPT:-cross}" "$*" >&2; }
pv_die()  { printf '[%s] error: %s\n' "${PV_SCRIPT:-cross}" "$*" >&2; exit 1; }

# Seconds since the epoch with millisecond resolution, and a difference of two of them.
pv_now()     { date +%s.%N | cut -c1-14; }
pv_elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# pv_timeout SECS CMD...: `timeout` that dies with this script. timeout(1) moves itself into
# its own process group, so a Ctrl-C or SIGTERM to ours would leave it (and a QEMU under it)
# running; we run it as a background job and forward the signal.
PV_CHILD=""
pv_on_signal() {
    [[ -n "$PV_CHILD" ]] && kill -TERM "$PV_CHILD" 2>/dev/null
    exit 130
}
trap pv_on_signal INT TERM HUP
pv_timeout() {
    local secs="$1" rc=0; shift
    timeout --kill-after=10 "$secs" "$@" &
    PV_CHILD=$!
    wait "$PV_CHILD" || rc=$?
    PV_CHILD=""
    return $rc
}

# pv_run LOGNAME TIMEOUT_SECONDS CMD...: run a long step quietly, bounded by a timeout.
# Its output goes to $PV_CACHE/logs/LOGNAME.log; on failure the log's tail is shown.
pv_run() {
    local name="$1" secs="$2"; shift 2
    local log="$PV_CACHE/logs/$name.log" rc=0
    if [[ "${POLYVISOR_VERBOSE:-0}" == 1 ]]; then
        pv_timeout "$secs" "$@" </dev/null > >(tee "$log" >&2) 2>&1 || rc=$?
    else
        pv_timeout "$secs" "$@" </dev/null >"$log" 2>&1 || rc=$?
    fi
    if [[ $rc -ne 0 ]]; then
        [[ $rc -eq 124 ]] && pv_log "timed out after ${secs}s: $*"
        pv_log "---- last lines of $log (rc=$rc) ----"
        tail -n 40 "$log" >&2 || true
        pv_log "---- end of $log ----"
    fi
    return $rc
}

# pv_sudo CMD...: CMD as root: directly when we are root, else through sudo (the harness
# needs root only for apt-get and the guest initramfs' device nodes).
pv_sudo() {
    if [[ $(id -u) == 0 ]]; then
        "$@"
    else
        command -v sudo >/dev/null 2>&1 || pv_die "need root, or sudo, for: $*"
        sudo "$@"
    fi
}

# Rust target triple and Debian architecture for a polyvisor ARCH name.
pv_triple() {
    case "$1" in
        x86_64|aarch64|s390x) printf '%s-unknown-linux-gnu\n' "$1" ;;
        *) pv_die "unknown architecture '$1' (expected x86_64, aarch64 or s390x)" ;;
    esac
}
pv_debarch() {
    case "$1" in
        x86_64) echo amd64 ;; aarch64) echo arm64 ;; s390x) echo s390x ;;
        *) pv_die "unknown architecture '$1' (expected x86_64, aarch64 or s390x)" ;;
    esac
}
pv_host_arch() { uname -m; }

# Where fetch-guest leaves the artifacts of ARCH.
pv_guest_dir() { printf '%s/guest/%s\n' "$PV_CACHE" "$1"; }

# Make sure cargo is on PATH (rustup installs into ~/.cargo/bin).
# pv_claim_target DIR: make DIR (a CARGO_TARGET_DIR shared between checkouts, e.g. a work
# tree and a CI clone) build THIS checkout. Cargo keys path crates by their place in the
# workspace, not by the checkout, and decides freshness by mtime: a newer build from another
# checkout would otherwise pass for this one's (seen: a stale static binary ran in Hercules).
# When DIR last built another checkout, the workspace's sources are touched, which rebuilds
# only the workspace crates.
pv_claim_target() {
    local dir="$1" mark="$1/.pv-checkout"
    mkdir -p "$dir"
    if [[ "$(cat "$mark" 2>/dev/null)" != "$PV_REPO" ]]; then
        (cd "$PV_REPO" && git ls-files -z -- '*.rs' '*.toml' 2>/dev/null | xargs -0 -r touch) || true
        printf '%s\n' "$PV_REPO" >"$mark"
    fi
}

# pv_static_bench ARCH TARGET_DIR: polyvisor-bench (the objects benchmark, issue 19) built
# static and release for ARCH into TARGET_DIR, with the RUSTFLAGS the nested harness builds
# polyvisor with there (so the two builds share their dependencies); prints its path.
pv_static_bench() {
    local arch="$1" dir="$2" triple flags
    triple="$(pv_triple "$arch")"
    flags="-C target-feature=+crt-static"
    [[ "$arch" == s390x ]] && flags+=" -C link-arg=-Wl,--s390-pgste"
    pv_cargo_path
    pv_claim_target "$dir"
    (cd "$PV_REPO" && CARGO_TARGET_DIR="$dir" RUSTFLAGS="$flags" pv_run "objects-bench-build-$arch" 1800 \
        cargo build --release --target "$triple" -p polyvisor-bench --bin polyvisor-bench) \
        || pv_die "cannot build polyvisor-bench for $triple (log: $PV_CACHE/logs/objects-bench-build-$arch.log)"
    printf '%s\n' "$dir/$triple/release/polyvisor-bench"
}

pv_cargo_path() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
        PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"; export PATH
    fi
    command -v cargo >/dev/null 2>&1 || pv_die "cargo not found (install Rust with rustup first)"
}

# Cross-compilation for the foreign targets, for the harness only (not in .cargo/config.toml,
# which would also apply on a native aarch64 or s390x host): Debian's cross gcc links and
# qemu-user runs the tests (`cargo test --target s390x-unknown-linux-gnu` runs big-endian).
# Nothing is set for the host's own architecture. Packages: see cross/setup. Cross.toml
# passes the same variables into cross-rs containers.
pv_cross_env() {
    local arch var linker runner
    for arch in aarch64 s390x; do
        [[ "$arch" == "$(uname -m)" ]] && continue
        var="CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$(pv_triple "$arch")")"
        linker="${var}_LINKER" runner="${var}_RUNNER"
        # A value the user exported wins.
        [[ -n "${!linker:-}" ]] || export "$linker=$arch-linux-gnu-gcc"
        [[ -n "${!runner:-}" ]] || export "$runner=qemu-$arch-static -L /usr/$arch-linux-gnu"
    done
    # aarch64 musl (cross/release's static binary): Rust brings musl's libc.a and crt
    # objects (self-contained), the same cross gcc drives the link.
    if [[ "$(uname -m)" != aarch64 ]]; then
        [[ -n "${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER:-}" ]] ||
            export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
        [[ -n "${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER:-}" ]] ||
            export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64-static
    fi
}
pv_cross_env

# ---- offline builds from a vendor tree that keeps only Linux targets -------------------------
# cargo-vendor-filterer (crates.io, pinned) drops the crates no Linux target needs (plain
# `cargo vendor` carries ~106 MB of prebuilt Windows import libraries). cross/vendor writes
# the tree; these give its place and the cargo arguments that build from it without network.
# shellcheck disable=SC2034 # used by the scripts that source this file
PV_VENDOR_FILTERER_VERSION=0.5.18
# cargo-fuzz for the fuzz level (cross/setup installs it; the fuzz/ targets run with it).
# shellcheck disable=SC2034 # used by cross/setup
PV_CARGO_FUZZ_VERSION=0.13.2
# shellcheck disable=SC2034
PV_VENDOR_PLATFORMS=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu s390x-unknown-linux-gnu
    x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
PV_VENDOR_DIR="$PV_CACHE/vendor"
# Arguments for `cargo build` (after the subcommand): crates-io replaced by the vendor tree,
# no index or download (--offline), Cargo.lock exactly as committed (--frozen).
# shellcheck disable=SC2034
PV_OFFLINE_ARGS=(--offline --frozen
    --config 'source.crates-io.replace-with="polyvisor-vendored"'
    --config "source.polyvisor-vendored.directory=\"$PV_VENDOR_DIR\"")
# "${PV_NO_NET[@]}" CMD...: CMD in a network namespace of its own (no interface but lo),
# so an "offline" build that still tried the network fails instead of quietly downloading
# (a command prefix, so pv_run/timeout can run it). Falls back to CARGO_NET_OFFLINE=true
# alone where namespaces are not allowed; PV_NO_NET_KIND says which.
# shellcheck disable=SC2034 # PV_NO_NET is used by the scripts that source this file
if unshare -n true 2>/dev/null; then
    PV_NO_NET=(unshare -n env CARGO_NET_OFFLINE=true) PV_NO_NET_KIND="network namespace"
elif unshare -rn true 2>/dev/null; then
    PV_NO_NET=(unshare -rn env CARGO_NET_OFFLINE=true) PV_NO_NET_KIND="user+network namespace"
else
    PV_NO_NET=(env CARGO_NET_OFFLINE=true) PV_NO_NET_KIND="CARGO_NET_OFFLINE only (unshare -n not permitted)"
fi
export PV_NO_NET_KIND

# The package version from the workspace manifest.
pv_version() { sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$PV_REPO/Cargo.toml"; }
