#!/usr/bin/env bash
# Builds the real control-plane binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, helm; on request kubelet, kubeadm, kube-proxy for the kind
# node image) from Go modules at the versions pinned in
# versions.env, into a cache outside the repository keyed by version:
#   ${TRAINYARD_CACHE:-~/.cache/trainyard}/bin-<kube>-<etcd>-<helm>/
# Idempotent: a binary already in the cache is not rebuilt. Prints the bin dir on stdout's
# last line so callers can `BIN=$(build-binaries.sh | tail -1)`.
#
# Why a wrapper module: k8s.io/kubernetes's go.mod replaces its staging modules with
# ./staging paths, so `go install k8s.io/kubernetes/cmd/...@v` is refused. The wrapper
# requires k8s.io/kubernetes and replaces every staging module k8s.io/X with k8s.io/X at
# the matching v0.Y.Z; the list is read from upstream's own go.mod, never hard-coded.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${TRAINYARD_CACHE:-$HOME/.cache/trainyard}"
bin="$cache/bin-${KUBE_VERSION}-etcd${ETCD_VERSION}-helm${HELM_VERSION}"
src="$cache/src"
mkdir -p "$bin" "$src"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED=0

log() { printf '[build-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { log "ERROR: $*"; exit 1; }

kube_minor="${KUBE_VERSION#v1.}"; kube_minor="${kube_minor%%.*}"
staging_version="v0.${KUBE_VERSION#v1.}"

ldflags_version() {
  local v="$1" major=1 minor="$kube_minor" flags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s' "-s -w$flags"
}

kube_wrapper() {
  local dir="$src/kube-$KUBE_VERSION"
  # the marker names the tools file's hash: adding a command re-resolves the wrapper
  local ready="$dir/.ready-$(sha256sum "$here/kube-tools.go.txt" | cut -c1-12)"
  if [ -f "$ready" ]; then printf '%s' "$dir"; return; fi
  mkdir -p "$dir"
  log "reading k8s.io/kubernetes@$KUBE_VERSION go.mod from the module proxy"
  local upstream
  upstream="$(cd "$dir" && GOFLAGS= go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')" \
    || fail "the module proxy refused k8s.io/kubernetes@$KUBE_VERSION"
  local staging
  staging="$(grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$upstream" | awk '{print $1}' | sort -u)"
  [ -n "$staging" ] || fail "found no staging replaces in $upstream"
  {
    echo "module trainyard.dev/local/kube"
    echo
    grep -E '^go ' "$upstream"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    for m in $staging; do echo "replace $m => $m $staging_version"; done
  } > "$dir/go.mod"
  cp "$here/kube-tools.go.txt" "$dir/tools.go"
  log "resolving the wrapper's $(echo "$staging" | wc -l) staging replaces at $staging_version (go mod tidy)"
  local out
  if ! out="$(cd "$dir" && go mod tidy 2>&1)"; then
    printf '%s\n' "$out" | grep -v '^go: downloading' >&2
    local refused
    refused="$(printf '%s\n' "$out" | grep -oE '[a-z0-9./-]+@v[0-9][^:]*: reading [^ ]+: 40[34]' | head -3)"
    fail "go mod tidy failed for the kubernetes wrapper${refused:+; the module proxy refused: $refused}"
  fi
  touch "$ready"
  printf '%s' "$dir"
}

etcd_wrapper() {
  local dir="$src/etcd-$ETCD_VERSION"
  if [ -f "$dir/.ready" ]; then printf '%s' "$dir"; return; fi
  mkdir -p "$dir"
  cat > "$dir/go.mod" <<MOD
module trainyard.dev/local/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  printf 'package tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$dir/tools.go"
  (cd "$dir" && go mod tidy >&2) || fail "the module proxy refused go.etcd.io/etcd/server/v3@$ETCD_VERSION or one of its dependencies"
  touch "$dir/.ready"
  printf '%s' "$dir"
}

build_one() { # name dir package ldflags [tags]
  local name="$1" dir="$2" pkg="$3" ldflags="$4" tags="${5:-}"
  if [ -x "$bin/$name" ]; then log "$name: cached"; return; fi
  log "$name: building $pkg (cold builds take minutes on 2 cores)"
  local t0=$SECONDS
  (cd "$dir" && go build -trimpath ${tags:+-tags "$tags"} -ldflags "$ldflags" -o "$bin/$name.tmp" "$pkg" >&2) \
    || fail "$name: go build $pkg failed"
  mv "$bin/$name.tmp" "$bin/$name"
  log "$name: built in $((SECONDS - t0)) s"
}

want="${*:-etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm}"
for name in $want; do
  case "$name" in
    etcd)
      dir="$(etcd_wrapper)" || exit 1
      build_one etcd "$dir" go.etcd.io/etcd/server/v3 "-s -w" ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl|kubelet|kubeadm|kube-proxy)
      dir="$(kube_wrapper)" || exit 1
      build_one "$name" "$dir" "k8s.io/kubernetes/cmd/$name" "$(ldflags_version "$KUBE_VERSION")" "selinux,notest,grpcnotrace" ;;
    helm)
      if [ ! -x "$bin/helm" ]; then
        log "helm: go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
        GOFLAGS= GOBIN="$bin" go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2 \
          || fail "the module proxy refused helm.sh/helm/v3@$HELM_VERSION or a dependency"
      else log "helm: cached"; fi ;;
    *) fail "unknown binary $name" ;;
  esac
done
echo "$bin"
