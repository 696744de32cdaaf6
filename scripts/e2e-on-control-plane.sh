#!/usr/bin/env bash
# Runs the end-to-end test binaries against a real Kubernetes control plane (kube-apiserver,
# kube-controller-manager and etcd v1.36.2, built from the Kubernetes Go modules by
# tests/control-plane) started on loopback for this run, then stops it. Each test installs the
# CRD and the chart's ServiceAccount, RBAC and ValidatingAdmissionPolicy (rendered by real Helm)
# and runs the operator as that ServiceAccount. Tests that need what only the fake API server
# offers (fault injection, holds, outages) skip themselves with one line; this script counts and
# lists them.
#
# Usage: scripts/e2e-on-control-plane.sh CONTROL_PLANE_BINARY [cargo test arguments...]
# Needs DSQL_OPERATOR_TEST_PYTHON (the test virtualenv), as scripts/test.sh sets it.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
binary="${1:?usage: $0 CONTROL_PLANE_BINARY [cargo test arguments...]}"
shift

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'scripts/e2e-on-control-plane.sh: %s\n' "$*" >&2; exit 1; }

[[ -x "$binary" ]] || die "no control plane binary at $binary (build it: cd tests/control-plane && go build -o $binary .)"

# The end-to-end test binaries: every tests/e2e_*.rs, the CLI's first-run tests, kubectl's view
# of the printer columns, and the chart's admission policy.
tests=()
for file in tests/e2e_*.rs tests/first_run.rs tests/kubectl_get.rs tests/chart_admission_policy.rs; do
    tests+=(--test "$(basename "$file" .rs)")
done

state="$(mktemp -d "${TMPDIR:-/tmp}/kube-control-plane.XXXXXX")"

# pids of a control plane and its components (children of its process).
plane_pids() { printf '%s\n' "$1"; pgrep -P "$1" || true; }
# Waits (bounded) until none of the given pids is alive.
wait_gone() {
    local deadline=$((SECONDS + $1)); shift
    while ((SECONDS < deadline)); do
        local alive=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || return 0
        sleep 0.2
    done
    return 1
}

# A control plane whose parent dies stops by itself (a killed test run leaves nothing running).
orphan_dir="$state/orphan"
mkdir -p "$orphan_dir"
bash -c '"$1" --dir "$2/plane" >"$2/out" 2>"$2/err" & echo $! >"$2/pid"; wait' _ "$binary" "$orphan_dir" &
orphan_parent=$!
for _ in $(seq 1 600); do grep -q '^ready ' "$orphan_dir/out" 2>/dev/null && break; sleep 0.2; done
grep -q '^ready ' "$orphan_dir/out" || { cat "$orphan_dir/err" >&2; die "the control plane did not become ready"; }
mapfile -t orphan_pids < <(plane_pids "$(cat "$orphan_dir/pid")")
((${#orphan_pids[@]} == 3)) || die "expected the control plane and its 2 components, found pids: ${orphan_pids[*]}"
kill -KILL "$orphan_parent"
wait_gone 30 "${orphan_pids[@]}" \
    || die "the control plane (pids ${orphan_pids[*]}) outlived its parent by 30 s"
say "control plane: stopped by itself when its parent was killed"

started=$SECONDS
"$binary" --dir "$state/plane" >"$state/ready" 2>"$state/control-plane.log" &
plane_pid=$!
stop_plane() {
    kill -TERM "$plane_pid" 2>/dev/null || true
    wait "$plane_pid" 2>/dev/null || true
    rm -rf "$state"
}
trap stop_plane EXIT
# Stops it on SIGTERM: every process gone, exit status 0.
stop_plane_checked() {
    local pids
    mapfile -t pids < <(plane_pids "$plane_pid")
    kill -TERM "$plane_pid"
    local plane_status=0
    wait "$plane_pid" || plane_status=$?
    [[ "$plane_status" -eq 0 ]] || die "the control plane exited with $plane_status on SIGTERM"
    wait_gone 30 "${pids[@]}" || die "control plane processes (${pids[*]}) still running 30 s after SIGTERM"
    say "control plane: stopped cleanly on SIGTERM"
}

# The control plane prints one line, `ready <kubeconfig>`, or exits.
kubeconfig=""
for _ in $(seq 1 1200); do
    if read -r word path <"$state/ready" 2>/dev/null && [[ "$word" == ready ]]; then
        kubeconfig="$path"
        break
    fi
    kill -0 "$plane_pid" 2>/dev/null || break
    sleep 0.2
done
if [[ -z "$kubeconfig" ]]; then
    cat "$state/control-plane.log" >&2 || true
    for log in "$state"/plane/*.log; do
        [[ -f "$log" ]] && { printf -- '--- %s (last 40 lines)\n' "$log" >&2; tail -n 40 "$log" >&2; }
    done
    die "the control plane did not become ready (its logs are above)"
fi
say "control plane ready in $((SECONDS - started)) s: $kubeconfig"

skips="$state/skips.log"
: >"$skips"
output="$state/cargo-test.out"
status=0
DSQL_OPERATOR_E2E_KUBECONFIG="$kubeconfig" DSQL_OPERATOR_E2E_SKIP_LOG="$skips" \
    cargo test --locked --no-fail-fast "${tests[@]}" "$@" 2>&1 | tee "$output" || status=$?

passed="$(awk '/^test result:/ {for (i = 1; i <= NF; i++) if ($(i) ~ /^passed;?$/) sum += $(i - 1)} END {print sum + 0}' "$output")"
failed="$(awk '/^test result:/ {for (i = 1; i <= NF; i++) if ($(i) ~ /^failed;?$/) sum += $(i - 1)} END {print sum + 0}' "$output")"
skipped="$(wc -l <"$skips")"
say "real API server: $((passed - skipped)) e2e tests ran and passed, $failed failed, $skipped skipped (they need the fake API server):"
sed 's/^/      /' "$skips" >&2
if [[ "$status" -eq 0 ]]; then
    stop_plane_checked
fi
if [[ "$status" -ne 0 ]]; then
    for log in "$state"/plane/*.log; do
        printf -- '--- %s (last 20 lines)\n' "$log" >&2
        tail -n 20 "$log" >&2
    done
    die "e2e tests failed on the real API server"
fi
