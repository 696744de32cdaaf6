#!/usr/bin/env bash
# Builds kube-control-plane to $1, stamped with the Kubernetes release go.mod pins (as the
# upstream release build stamps kube-apiserver; unstamped, /version says v0.0.0-master).
set -euo pipefail
out="${1:?usage: build.sh OUTPUT_PATH}"
cd "$(dirname "${BASH_SOURCE[0]}")"
version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
major="${version#v}"; major="${major%%.*}"
minor="${version#v*.}"; minor="${minor%%.*}"
pkg=k8s.io/component-base/version
go build \
    -ldflags "-X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" \
    -o "$out" .
