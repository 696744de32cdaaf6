#!/usr/bin/env bash
# The recorder: replays every golden file (../shared/apiserver-golden and
# crates/kube-fake-apiserver/golden) on fresh real control planes (tests/control-plane,
# kube-apiserver v1.36.2) and writes each again, with the responses the real server gave, to
# OUT_DIR. New behaviour is pinned by writing the requests of a new file into
# crates/kube-fake-apiserver/golden/ (responses as placeholders), recording it, reviewing the
# result, and copying it back; the fake is then made to match (`cargo test -p
# kube-fake-apiserver --test golden`).
#
# Usage: scripts/record-golden.sh OUT_DIR
# Differences from the current recordings are printed (the test fails) but everything is written.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="$(mkdir -p "${1:?usage: $0 OUT_DIR}" && cd "$1" && pwd)"
binary="${CARGO_TARGET_DIR:-$repo/target}/kube-control-plane"
bash tests/control-plane/build.sh "$binary"
DSQL_OPERATOR_CONTROL_PLANE="$binary" DSQL_OPERATOR_GOLDEN_RECORD_DIR="$out" \
    DSQL_OPERATOR_GOLDEN_DIR="${DSQL_OPERATOR_GOLDEN_DIR:-$repo/../shared/apiserver-golden}" \
    cargo test --locked -p kube-fake-apiserver --test golden -- --exact golden_recordings_hold_on_the_real_control_plane \
    || echo "record-golden.sh: the real server's answers differ from the recordings (above); new recordings are in $out" >&2
ls -l "$out"
