#!/usr/bin/env bash
# The one test command: sets up the Python test tools (moto, boto3/botocore, Helm
# via helm-python-sdk, kubernetes-validate, pytest) in .venv, promtool (Debian's
# prometheus package) and libfaketime (Debian's faketime package), builds the test control plane
# (tests/control-plane: kube-apiserver, kube-controller-manager and etcd from the Kubernetes Go
# modules), then runs rustfmt, clippy, every cargo test (end-to-end tests on the in-process fake API
# server), the end-to-end tests a second time on the real control plane, and the chart/deploy/alert
# tests. Needs kubectl (client) and Go 1.26 on PATH.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

venv="$repo/.venv"
python="$venv/bin/python"
requirements="$repo/requirements-test.txt"
stamp="$venv/.requirements-test.sha256"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is required for the AWS test tools (moto, botocore)"
command -v cargo >/dev/null || die "cargo is required"
command -v go >/dev/null \
    || die "go (1.26 or later) is required: the tests build a real Kubernetes control plane from its Go modules (tests/control-plane)"
command -v kubectl >/dev/null \
    || die "kubectl (the client only) is required: tests/kubectl_get.rs runs it against the fake API server"

# A venv whose interpreter is gone (e.g. Python upgraded) is rebuilt.
if [[ -d "$venv" ]] && ! "$python" -c 'import sys' >/dev/null 2>&1; then
    say "removing broken $venv"
    rm -rf "$venv"
fi
if [[ ! -x "$python" ]]; then
    say "creating $venv"
    if ! python3 -m venv "$venv"; then
        rm -rf "$venv"
        die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
fi

want="$(sha256sum "$requirements" | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [[ "$want" != "$have" ]] || ! "$python" -c 'import moto.server, boto3, helm_python, kubernetes_validate, pytest' >/dev/null 2>&1; then
    say "installing requirements-test.txt into .venv"
    log="$(mktemp)"
    if ! "$python" -m pip install --quiet --disable-pip-version-check \
            -r "$requirements" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "pip install -r requirements-test.txt failed (output above)"
    fi
    rm -f "$log"
    "$python" -c 'import moto.server, boto3, helm_python, kubernetes_validate, pytest' \
        || die "requirements-test.txt installed but its packages do not import"
    printf '%s\n' "$want" >"$stamp"
fi

# promtool (Debian package `prometheus`) evaluates the chart's alert rules in tests/python.
if ! command -v promtool >/dev/null; then
    install_promtool="apt-get install -y --no-install-recommends prometheus"
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
        say "installing promtool: $install_promtool"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive $install_promtool >/dev/null; } \
            || die "installing promtool failed: $install_promtool"
        command -v promtool >/dev/null || die "the prometheus package did not install promtool"
    else
        die "promtool is required for the alert tests; as root run: $install_promtool"
    fi
fi

# libfaketime (Debian package `faketime`) runs the operator binary on a fast fake clock in the
# kill campaign (tests/e2e_kill_campaign.rs), which fails without it.
faketime_lib=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
if [[ ! -e "$faketime_lib" ]]; then
    install_faketime="apt-get install -y --no-install-recommends faketime"
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
        say "installing libfaketime: $install_faketime"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive $install_faketime >/dev/null; } \
            || die "installing libfaketime failed: $install_faketime"
        [[ -e "$faketime_lib" ]] || die "the faketime package did not install $faketime_lib"
    else
        die "libfaketime ($faketime_lib) is required for the kill campaign; as root run: $install_faketime"
    fi
fi

# A cold build of every test binary needs about 5 GiB; running out of disk midway shows up as
# confusing compiler errors, so say it first.
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
mkdir -p "$target_dir"
free_kib="$(df -Pk "$target_dir" | awk 'NR==2 {print $4}')"
if [[ -n "$free_kib" && "$free_kib" -lt $((6 * 1024 * 1024)) ]]; then
    say "WARNING: only $((free_kib / 1024)) MiB free for $target_dir; a cold build needs about 5 GiB"
fi

export DSQL_OPERATOR_TEST_PYTHON="$python"
export DSQL_OPERATOR_GOLDEN_DIR="${DSQL_OPERATOR_GOLDEN_DIR:-$repo/../shared/apiserver-golden}"

# The real Kubernetes control plane the end-to-end tests run on a second time. Go's module and
# build caches make a rebuild fast.
control_plane="$target_dir/kube-control-plane"
say "go build tests/control-plane (kube-apiserver, kube-controller-manager, etcd; pinned in its go.mod)"
bash tests/control-plane/build.sh "$control_plane" \
    || die "building the test control plane failed (output above)"
export DSQL_OPERATOR_CONTROL_PLANE="$control_plane"
say "gofmt -l and go vet (tests/control-plane)"
unformatted="$(gofmt -l tests/control-plane)"
[[ -z "$unformatted" ]] || die "gofmt would reformat: $unformatted"
(cd tests/control-plane && go vet ./...) || die "go vet found problems in tests/control-plane (above)"

say "module import cycles (scripts/module-cycles.py): the fake API server's layers, the operator's modules"
python3 scripts/module-cycles.py --quiet \
    || die "crates/kube-fake-apiserver: a module uses one above it or a cycle (above); see its README's Layers"
python3 scripts/module-cycles.py --crate . --cycles-only --quiet \
    || die "src/: modules import each other in a cycle (above)"

say "cargo fmt --check"
cargo fmt --check
say "cargo clippy --workspace --all-targets --locked -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
say "cargo test --workspace --locked --all-targets"
cargo test --workspace --locked --all-targets
say "end-to-end tests on the real control plane"
bash scripts/e2e-on-control-plane.sh "$control_plane"
say "pytest tests/python (Helm chart, deploy/, Dockerfile)"
"$python" -m pytest -q tests/python
