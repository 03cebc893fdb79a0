#!/usr/bin/env bash
# Builds from Go modules (and gcc, for pause) every binary a kind node image needs besides
# the control plane of deploy/local/build-binaries.sh: containerd, runc,
# crictl, the CNI plugins, CoreDNS, etcd and pause at the versions kubeadm asks for, and the
# local-path provisioner. Output: one directory per set of versions, outside the repository,
#   ${TRAINYARD_CACHE:-~/.cache/trainyard}/kind-bin-<hash of the versions>/
# whose path is printed on stdout's last line. A binary already there is not rebuilt.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../versions.env
source "$here/../versions.env"
# shellcheck source=../../local/versions.env
source "$here/../../local/versions.env"
cache="${TRAINYARD_CACHE:-$HOME/.cache/trainyard}"
log() { printf '[kind-components %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { log "ERROR: $*"; exit 1; }

key="$(printf '%s\n' "$CONTAINERD_VERSION" "$RUNC_VERSION" "$CRICTL_VERSION" \
  "$CNI_PLUGINS_VERSION" "$LOCAL_PATH_PROVISIONER_VERSION" "$KUBE_VERSION" \
  | sha256sum | cut -c1-12)"
out="$cache/kind-bin-$key"
mkdir -p "$out" "$cache/src"
export GOFLAGS="-mod=mod" GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

# gobuild NAME MODULE VERSION PACKAGE [CGO] [TAGS] [LDFLAGS]: a wrapper module that requires
# MODULE@VERSION and builds PACKAGE (`go install pkg@v` refuses modules with replaces)
gobuild() {
  local name="$1" module="$2" version="$3" pkg="$4" cgo="${5:-0}" tags="${6:-}" ldflags="${7:--s -w}"
  if [ -x "$out/$name" ]; then log "$name: cached"; return; fi
  local dir="$cache/src/$(printf '%s' "$module" | tr '/' '_')-$version"
  if [ ! -f "$dir/.ready" ]; then
    mkdir -p "$dir"
    printf 'module trainyard.dev/local/build\n\ngo 1.25\n\nrequire %s %s\n' "$module" "$version" > "$dir/go.mod"
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" > "$dir/tools.go"
    (cd "$dir" && go mod tidy >&2) || fail "$name: go mod tidy for $module@$version failed (the proxy refused a module?)"
    touch "$dir/.ready"
  fi
  log "$name: building $pkg@$version"
  local t0=$SECONDS
  (cd "$dir" && CGO_ENABLED="$cgo" go build -trimpath ${tags:+-tags "$tags"} -ldflags "$ldflags" -o "$out/$name.tmp" "$pkg" >&2) \
    || fail "$name: go build $pkg@$version failed"
  mv "$out/$name.tmp" "$out/$name"
  log "$name: built in $((SECONDS - t0)) s"
}

# kind (and its module, whose base-image files build.sh copies, in the Go module cache)
"$here/../kind-binary.sh" >/dev/null || fail "building kind failed"
ctrd=github.com/containerd/containerd/v2
ctrd_ld="-s -w -X $ctrd/version.Version=$CONTAINERD_VERSION -X $ctrd/version.Package=$ctrd"
gobuild containerd "$ctrd" "$CONTAINERD_VERSION" "$ctrd/cmd/containerd" 0 "no_btrfs no_devmapper no_zfs" "$ctrd_ld"
gobuild containerd-shim-runc-v2 "$ctrd" "$CONTAINERD_VERSION" "$ctrd/cmd/containerd-shim-runc-v2" 0 "" "$ctrd_ld"
gobuild ctr "$ctrd" "$CONTAINERD_VERSION" "$ctrd/cmd/ctr" 0 "" "$ctrd_ld"
# runc needs libseccomp (cgo); the node image carries Debian's libseccomp2 of the same suite
if [ ! -x "$out/runc" ] && ! [ -f /usr/include/seccomp.h ]; then
  log "runc: installing libseccomp-dev (build dependency)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libseccomp-dev pkg-config >/dev/null \
    || fail "runc needs libseccomp-dev"
fi
gobuild runc github.com/opencontainers/runc "$RUNC_VERSION" github.com/opencontainers/runc 1 seccomp \
  "-s -w -X main.version=${RUNC_VERSION#v}"
gobuild crictl sigs.k8s.io/cri-tools "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl 0 "" \
  "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
for plugin in ipam/host-local main/loopback main/ptp meta/portmap; do
  gobuild "cni-${plugin#*/}" github.com/containernetworking/plugins "$CNI_PLUGINS_VERSION" \
    "github.com/containernetworking/plugins/plugins/$plugin"
done
kube_bin="$("$here/../../local/build-binaries.sh" kubeadm kubelet kube-proxy kubectl kube-apiserver kube-controller-manager kube-scheduler | tail -1)"
# the image versions kubeadm of this release expects; one source: kubeadm itself
images="$("$kube_bin/kubeadm" config images list --kubernetes-version "$KUBE_VERSION" 2>/dev/null)" \
  || fail "kubeadm config images list failed"
tag_of() { printf '%s\n' "$images" | grep -m1 "/$1:" | sed 's/.*://'; }
ETCD_TAG="$(tag_of etcd)"; COREDNS_TAG="$(tag_of coredns)"; PAUSE_TAG="$(tag_of pause)"
etcd_version="v${ETCD_TAG%-*}"

gobuild etcd go.etcd.io/etcd/server/v3 "$etcd_version" go.etcd.io/etcd/server/v3
gobuild coredns github.com/coredns/coredns "$COREDNS_TAG" github.com/coredns/coredns
gobuild local-path-provisioner github.com/rancher/local-path-provisioner "$LOCAL_PATH_PROVISIONER_VERSION" \
  github.com/rancher/local-path-provisioner
if [ ! -x "$out/pause" ]; then
  # kubernetes' own pause.c (build/pause in the k8s.io/kubernetes module), built as upstream does
  src="$(GOFLAGS= go list -m -f '{{.Dir}}' "k8s.io/kubernetes@$KUBE_VERSION" 2>/dev/null || true)"
  [ -n "$src" ] || src="$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBE_VERSION"
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_TAG" -o "$out/pause" "$src/build/pause/linux/pause.c" \
    || fail "pause: gcc -static failed (libc6-dev?)"
fi
for b in kubeadm kubelet kube-proxy kubectl kube-apiserver kube-controller-manager kube-scheduler; do
  ln -sf "$kube_bin/$b" "$out/$b"
done
printf 'ETCD_TAG=%s\nCOREDNS_TAG=%s\nPAUSE_TAG=%s\n' "$ETCD_TAG" "$COREDNS_TAG" "$PAUSE_TAG" > "$out/images.env"
echo "$out"
