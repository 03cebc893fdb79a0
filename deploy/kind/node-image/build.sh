#!/usr/bin/env bash
# Prints the kind node image to create clusters with; assembles one here where kindest/node
# cannot be pulled.
#
# Where `docker pull kindest/node:<kind's default for this Kubernetes>` works (a laptop), that
# image is used as is. Where no registry is reachable (our machines), this script assembles
# an equivalent from Debian packages and Go modules, the way kind's own images/base and
# `kind build node-image` do, without any download but Debian's and the Go proxy's:
#   1. a Debian rootfs (debootstrap) with systemd and the node packages kind's base image has,
#      kind's own base files (entrypoint, systemd units, containerd config — read from the
#      kind module in the Go module cache), containerd, runc, crictl, the CNI plugins, and
#      kubelet/kubeadm/kubectl (build-components.sh, deploy/local/build-binaries.sh);
#   2. the images kubeadm and kind expect on a node, built from the same binaries: the
#      control plane, kube-proxy, etcd, CoreDNS and pause at the versions kubeadm asks for,
#      a pod network (podnet.sh: routes between nodes, kindnetd's job) and local-path
#      storage — imported into the node's containerd, as `kind build node-image` does;
#   3. /kind/version and /kind/manifests (default-cni.yaml, default-storage.yaml).
# The image is cached as a tarball outside the repository, keyed by every version and by
# the content of this directory: ${TRAINYARD_CACHE:-~/.cache/trainyard}/images/kind-node-<key>.tar
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../versions.env
source "$here/../versions.env"
# shellcheck source=../../local/versions.env
source "$here/../../local/versions.env"
cache="${TRAINYARD_CACHE:-$HOME/.cache/trainyard}"
docker="${DOCKER:-docker}"
log() { printf '[kind-node-image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { log "ERROR: $*"; exit 1; }

upstream="kindest/node:$KUBE_VERSION"
if [ "${TRAINYARD_LOCAL_NODE_IMAGE:-auto}" != always ]; then
  if $docker image inspect "$upstream" >/dev/null 2>&1 || timeout 120 $docker pull -q "$upstream" >/dev/null 2>&1; then
    echo "$upstream"; exit 0
  fi
fi

bin="$("$here/build-components.sh" | tail -1)"
# shellcheck disable=SC1091
source "$bin/images.env"
key="$( (cat "$here/../versions.env" "$here/../../local/versions.env" "$bin/images.env"; \
         find "$here" -type f | sort | xargs cat) | sha256sum | cut -c1-12)"
image="trainyard-local/kind-node:$KUBE_VERSION-$key"
tarball="$cache/images/kind-node-$key.tar"
mkdir -p "$cache/images"

if $docker image inspect "$image" >/dev/null 2>&1; then echo "$image"; exit 0; fi
if [ -s "$tarball" ]; then
  log "loading $tarball"; $docker load -i "$tarball" >/dev/null; echo "$image"; exit 0
fi
command -v debootstrap >/dev/null || fail "debootstrap is missing (apt-get install debootstrap)"
work="$(mktemp -d "$cache/images/node-build.XXXXXX")"
build_container=""
cleanup() {
  [ -z "$build_container" ] || $docker rm -f "$build_container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# rootfs_of NAME PACKAGES: a debootstrap tarball, cached by suite and package list
rootfs_of() {
  local name="$1" packages="$2"
  local k; k="$(printf '%s %s' "$DEBIAN_SUITE" "$packages" | sha256sum | cut -c1-12)"
  local tar="$cache/images/$name-$k.tar"
  if [ ! -s "$tar" ]; then
    local root="$work/$name"
    log "$name: debootstrap $DEBIAN_SUITE ($packages)"
    debootstrap --variant=minbase --include="$packages" "$DEBIAN_SUITE" "$root" \
      "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/$name-debootstrap.log" 2>&1 \
      || { tail -20 "$work/$name-debootstrap.log" >&2; fail "$name: debootstrap failed"; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man
    tar -C "$root" --numeric-owner -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$root"
  fi
  printf '%s' "$tar"
}

# -- 1. the node's root filesystem ------------------------------------------------------------
kind_src="$(GOFLAGS= go env GOMODCACHE)/sigs.k8s.io/kind@$KIND_VERSION/images/base/files"
[ -d "$kind_src" ] || fail "kind's base files are not in the module cache ($kind_src): build-components.sh builds kind first"
node_packages="systemd,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,e2fsprogs,bash,ca-certificates,curl,jq,procps"
root="$work/node"
mkdir -p "$root"
tar -C "$root" -xf "$(rootfs_of kind-node-rootfs "$node_packages")"
log "node rootfs: kind $KIND_VERSION base files, containerd $CONTAINERD_VERSION, runc $RUNC_VERSION, Kubernetes $KUBE_VERSION"
install -d -m 0755 "$root/kind" "$root/kind/bin" "$root/LICENSES" "$root/etc/kubernetes/manifests" "$root/opt/cni/bin" "$root/etc/cni/net.d"
(cd "$kind_src" && find . -type f) | while read -r f; do
  mode=0644; case "$f" in ./usr/local/bin/*|./kind/bin/*) mode=0755 ;; esac
  install -D -m "$mode" "$kind_src/$f" "$root/$f"
done
# no rootless support here: the fuse-overlayfs snapshotter is not built
rm -f "$root/etc/systemd/system/containerd-fuse-overlayfs.service"
sed -i -e '/^\[proxy_plugins\]/,/^  address = /d' \
       -e "s|sandbox_image = .*|sandbox_image = \"registry.k8s.io/pause:$PAUSE_TAG\"|" \
       "$root/etc/containerd/config.toml"
# A host whose capability bounding set lacks CAP_SYS_RESOURCE cannot lower oom_score_adj:
# restrict it to the shim's own value (what kind does for rootless nodes) instead of failing.
# Set on every host: the image is built once, and elsewhere it only keeps pods from going
# below containerd's own score.
sed -i 's|restrict_oom_score_adj = false|restrict_oom_score_adj = true|' "$root/etc/containerd/config.toml"
for b in containerd containerd-shim-runc-v2 ctr crictl; do install -m 0755 "$bin/$b" "$root/usr/local/bin/$b"; done
install -m 0755 "$bin/runc" "$root/usr/local/sbin/runc"
for p in host-local loopback ptp portmap; do install -m 0755 "$bin/cni-$p" "$root/opt/cni/bin/$p"; done
for b in kubeadm kubelet kubectl; do install -m 0755 "$(readlink -f "$bin/$b")" "$root/usr/bin/$b"; done
"$bin/ctr" oci spec \
  | jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
  | jq 'del(.process.rlimits)' > "$root/etc/containerd/cri-base.json"
chroot "$root" /bin/sh -euc '
  find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
  rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
        /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
        /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
  echo "ReadKMsg=no" >> /etc/systemd/journald.conf
  ln -sf /usr/lib/systemd/systemd /sbin/init
  systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
  systemctl mask systemd-binfmt.service >/dev/null 2>&1
'
printf '%s' "$KUBE_VERSION" > "$root/kind/version"
chmod 0755 "$root/kind" "$root/kind/bin"

# -- 2. the images a node has before it pulls anything -----------------------------------------
tools_tar="$(rootfs_of kind-node-tools "iptables,nftables,conntrack,iproute2,ca-certificates")"
tools="trainyard-local/kind-node-tools:$key"
$docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "$tools_tar" "$tools" >/dev/null
# the build context of the one-off images below: the binaries and podnet
ctx="$work/ctx"; mkdir -p "$ctx"
buildkit_docker="$("$here/../../images/buildkit-docker.sh")"
for b in kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl etcd coredns pause local-path-provisioner; do
  cp "$(readlink -f "$bin/$b")" "$ctx/$b"
done
cp "$here/podnet.sh" "$ctx/podnet"
# image_of NAME DOCKERFILE-LINES...: build one of them from that context
image_of() {
  local name="$1"; shift
  printf '%s\n' "$@" | DOCKER_BUILDKIT=1 $buildkit_docker build -q -t "$name" -f - "$ctx" >/dev/null \
    || fail "building $name failed"
  built+=("$name")
}
built=()
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  image_of "registry.k8s.io/$c:$KUBE_VERSION" "FROM scratch" "COPY $c /usr/local/bin/$c"
done
image_of "registry.k8s.io/kube-proxy:$KUBE_VERSION" "FROM $tools" "COPY kube-proxy /usr/local/bin/kube-proxy"
image_of "registry.k8s.io/etcd:$ETCD_TAG" "FROM scratch" "COPY etcd /usr/local/bin/etcd"
image_of "registry.k8s.io/coredns/coredns:$COREDNS_TAG" "FROM scratch" "COPY coredns /coredns" 'ENTRYPOINT ["/coredns"]'
image_of "registry.k8s.io/pause:$PAUSE_TAG" "FROM scratch" "COPY pause /pause" "USER 65535:65535" 'ENTRYPOINT ["/pause"]'
podnet_image="trainyard-local/podnet:$key"
image_of "$podnet_image" "FROM $tools" "COPY kubectl /usr/local/bin/kubectl" "COPY podnet /usr/local/bin/podnet"
local_path_image="trainyard-local/local-path-provisioner:$LOCAL_PATH_PROVISIONER_VERSION-$key"
image_of "$local_path_image" "FROM $tools" "COPY local-path-provisioner /usr/local/bin/local-path-provisioner"
helper_image="trainyard-local/local-path-helper:$key"
image_of "$helper_image" "FROM $tools"
install -d "$root/kind/manifests"
sed "s|PODNET_IMAGE|docker.io/$podnet_image|" "$here/manifests/default-cni.yaml" > "$root/kind/manifests/default-cni.yaml"
sed -e "s|LOCAL_PATH_IMAGE|docker.io/$local_path_image|" -e "s|HELPER_IMAGE|docker.io/$helper_image|g" \
  "$here/manifests/default-storage.yaml" > "$root/kind/manifests/default-storage.yaml"
log "saving ${#built[@]} node images for the node's containerd"
$docker save -o "$work/preload.tar" "${built[@]}"

# -- 3. the node image: the rootfs, plus the images imported into its containerd ----------------
base="trainyard-local/kind-node-base:$key"
tar -C "$root" --numeric-owner -c . | $docker import - "$base" >/dev/null
rm -rf "$root"
build_container="trainyard-node-build-$key-$$"
$docker run -d --name "$build_container" --entrypoint sleep --security-opt seccomp=unconfined "$base" infinity >/dev/null
$docker cp "$work/preload.tar" "$build_container:/preload.tar"
$docker exec "$build_container" bash -euc '
  nohup containerd >/tmp/containerd.log 2>&1 &
  for i in $(seq 1 30); do [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1 && break; sleep 1; done
  ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests /preload.tar >/dev/null
  ctr --namespace=k8s.io images list -q | grep -v "^sha256:" | sort
  pkill containerd; rm -f /preload.tar /tmp/containerd.log
' >&2 || fail "importing the images into the node's containerd failed"
$docker commit "$build_container" "$base-preloaded" >/dev/null
$docker rm -f "$build_container" >/dev/null; build_container=""
# what kind's base image declares (docker commit cannot set STOPSIGNAL): systemd as PID 1,
# stopped the way systemd wants to be
printf '%s\n' "FROM $base-preloaded" 'ENV container=docker' 'STOPSIGNAL SIGRTMIN+3' \
  'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
  | DOCKER_BUILDKIT=1 $buildkit_docker build -q -t "$image" - >/dev/null || fail "tagging $image failed"
$docker rmi "$base-preloaded" "$base" >/dev/null 2>&1 || true
log "saving $image to $tarball (the cache later runs load)"
$docker save -o "$tarball.tmp" "$image" && mv "$tarball.tmp" "$tarball"
# one node image is kept (about 1 GB each): this one replaces those of older keys
find "$cache/images" -maxdepth 1 -name 'kind-node-*.tar' ! -name "kind-node-$key.tar" \
  ! -name 'kind-node-rootfs-*' ! -name 'kind-node-tools-*' -delete
$docker images --format '{{.Repository}}:{{.Tag}}' \
  | grep -E '^trainyard-local/(kind-node|kind-node-tools|podnet|local-path-provisioner|local-path-helper):' \
  | grep -v -- "$key" | xargs -r $docker rmi >/dev/null 2>&1 || true
echo "$image"
