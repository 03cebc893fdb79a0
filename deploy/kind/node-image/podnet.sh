#!/bin/bash
# podnet: the pod network of Trainyard's local kind node image (kind's kindnetd cannot be
# built here). One DaemonSet pod per node, on the host network, does what kindnetd does at
# its core: writes a ptp + host-local CNI config for the node's podCIDR, and keeps a route
# to every other node's podCIDR through that node's address. All nodes share kind's Docker
# network, so plain routes are enough: no overlay, no NAT between pods.
set -euo pipefail
: "${NODE_NAME:?NODE_NAME must come from the downward API}"
conf=/etc/cni/net.d/10-podnet.conflist
interval="${PODNET_RESYNC_SECONDS:-10}"

write_conf() { # podCIDR
  local tmp="$conf.tmp"
  cat >"$tmp" <<CONF
{
  "cniVersion": "0.4.0",
  "name": "podnet",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": false,
      "mtu": ${PODNET_MTU:-1500},
      "ipam": {
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "routes": [{ "dst": "0.0.0.0/0" }],
        "ranges": [[{ "subnet": "$1" }]]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
CONF
  if ! cmp -s "$tmp" "$conf"; then mv "$tmp" "$conf"; echo "podnet: CNI config for $1"; else rm -f "$tmp"; fi
}

while true; do
  if nodes="$(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}')"; then
    while read -r name cidr address; do
      [ -n "$cidr" ] && [ -n "$address" ] || continue
      if [ "$name" = "$NODE_NAME" ]; then
        write_conf "$cidr"
      elif [[ " $(ip route show exact "$cidr") " != *" via $address "* ]]; then
        ip route replace "$cidr" via "$address" && echo "podnet: route $cidr via $address ($name)"
      fi
    done <<<"$nodes"
  fi
  sleep "$interval"
done
