#!/usr/bin/env bash
# Builds the controllers bench/vs_kubeflow.py measures Trainyard against, from the Go module
# proxy, into ${TRAINYARD_CACHE}/kubeflow-<component>-<version>/ (built once, reused; never
# in the repository). Prints one line per component: <name>=<binary path>.
#   training-operator   github.com/kubeflow/training-operator v1 (PyTorchJob)
#   trainer             github.com/kubeflow/trainer/v2 (TrainJob -> JobSet)
#   jobset              sigs.k8s.io/jobset (what Trainer v2 runs on)
# Their CRDs are copied next to each binary (crds/) from the module cache.
set -euo pipefail
TRAINING_OPERATOR_VERSION="${TRAINING_OPERATOR_VERSION:-v1.9.3}"
TRAINER_VERSION="${TRAINER_VERSION:-v2.3.0}"
JOBSET_VERSION="${JOBSET_VERSION:-v0.12.0}"
cache="${TRAINYARD_CACHE:-$HOME/.cache/trainyard}"
log() { printf '[kubeflow-build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
export GOFLAGS=-mod=mod

modcache="$(go env GOMODCACHE)"

# go install pkg@version into dir; copy the module's CRD folder beside it
build() {  # name dir package version module crd-subdir
  local name="$1" dir="$2" pkg="$3" version="$4" module="$5" crds="$6"
  if [ ! -x "$dir/$name" ]; then
    log "go install $pkg@$version"
    mkdir -p "$dir.tmp"
    GOBIN="$dir.tmp" go install "$pkg@$version" >&2
    mv "$dir.tmp/$(basename "$pkg")" "$dir.tmp/$name"
    local src="$modcache/$module@$version/$crds"
    [ -d "$src" ] || { log "ERROR: no CRDs at $src"; exit 1; }
    cp -r "$src" "$dir.tmp/crds" && chmod -R u+w "$dir.tmp/crds"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "$name=$dir/$name"
}

build training-operator "$cache/kubeflow-training-operator-$TRAINING_OPERATOR_VERSION" \
  github.com/kubeflow/training-operator/cmd/training-operator.v1 "$TRAINING_OPERATOR_VERSION" \
  github.com/kubeflow/training-operator manifests/base/crds
build trainer "$cache/kubeflow-trainer-$TRAINER_VERSION" \
  github.com/kubeflow/trainer/v2/cmd/trainer-controller-manager "$TRAINER_VERSION" \
  github.com/kubeflow/trainer/v2 manifests/base/crds

# sigs.k8s.io/jobset lists no versions on the proxy, so `go install @version` cannot find it:
# a scratch module that requires the pinned version resolves it, then builds its main package.
dir="$cache/kubeflow-jobset-$JOBSET_VERSION"
if [ ! -x "$dir/jobset" ]; then
  log "go build sigs.k8s.io/jobset@$JOBSET_VERSION (through a scratch module)"
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  (
    cd "$scratch"
    go mod init jobset-build >/dev/null 2>&1
    printf 'package main\nimport _ "sigs.k8s.io/jobset"\nfunc main() {}\n' >main.go
    go get "sigs.k8s.io/jobset@$JOBSET_VERSION" >&2
    go mod tidy >&2 || true
    mkdir -p "$dir.tmp"
    go build -o "$dir.tmp/jobset" sigs.k8s.io/jobset >&2
  )
  cp -r "$modcache/sigs.k8s.io/jobset@$JOBSET_VERSION/config/components/crd/bases" "$dir.tmp/crds"
  chmod -R u+w "$dir.tmp/crds"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
echo "jobset=$dir/jobset"
