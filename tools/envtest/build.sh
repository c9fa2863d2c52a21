#!/usr/bin/env bash
# Builds kube-apiserver, etcd and kubectl from the Go module proxy at the versions in versions.env.
#
#   tools/envtest/build.sh [kube-apiserver|etcd|kubectl ...]   # default: all three
#
# Binaries go to $KUBE_RECONCILE_ENVTEST_DIR (default: ~/.cache/kube-reconcile/envtest/<version>),
# outside the work tree so fresh clones reuse them; a binary already built for the same version,
# Go toolchain and go.sum is not rebuilt. Prints the directory on the last line (use it as
# KUBEBUILDER_ASSETS).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
# shellcheck source=versions.env
. ./versions.env
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
k8s="$KUBERNETES_VERSION"
minor="${k8s#v1.}"; minor="${minor%%.*}"
out="${KUBE_RECONCILE_ENVTEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-reconcile/envtest/$k8s}"
mkdir -p "$out"
stamp="$k8s $(go env GOVERSION) $(sha256sum go.sum | cut -c1-16)"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(kube-apiserver etcd kubectl)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
for name in "${targets[@]}"; do
  if [ -x "$out/$name" ] && [ "$(cat "$out/$name.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$name: cached ($out/$name)" >&2
    continue
  fi
  echo "$name: building $k8s (this takes minutes on a cold cache)" >&2
  start=$SECONDS
  go build -trimpath -ldflags "$ldflags" -o "$out/$name.tmp" "./cmd/$name"
  mv "$out/$name.tmp" "$out/$name"
  echo "$stamp" > "$out/$name.stamp"
  echo "$name: built in $((SECONDS - start))s" >&2
done
echo "$out"
