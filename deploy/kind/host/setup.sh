#!/usr/bin/env bash
# Makes this host ready for kind, changing only what it lacks (docs/kind.md, "Hosts like
# ours"). On a laptop with Docker running it does nothing. Otherwise, in order:
#   - Docker installed but no daemon running (no init system): start dockerd in the
#     background, logging to ${TRAINYARD_CACHE}/host/dockerd.log;
#   - Docker not installed and we are root on Debian/Ubuntu: apt-get install docker.io;
#   - the capability bounding set lacks capabilities Docker gives privileged containers
#     (kind's nodes are privileged; moby issue 42906): dockerd runs with runc-caps-wrapper
#     as its default runtime, which drops exactly those capabilities from each container.
# A dockerd that is already running is never restarted; if it lacks the wrapper where one is
# needed, this script says so and stops.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${TRAINYARD_CACHE:-$HOME/.cache/trainyard}/host"
log() { printf '[kind-host %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { log "ERROR: $*"; exit 1; }

full_caps=1
bounding="$(awk '/^CapBnd:/ {print $2}' /proc/self/status)"
# every capability up to CAP_CHECKPOINT_RESTORE (40): 0x1ffffffffff
[ "$((16#$bounding & 16#1ffffffffff))" = "$((16#1ffffffffff))" ] || full_caps=0

# debootstrap: local-base.sh and the node image need it only where no image can be pulled;
# on a Debian host as root it is installed with Docker (small, and apt runs once)
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "installing Debian's ${missing[*]}"
  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]} failed"
fi

if info="$(docker info 2>/dev/null)"; then
  # (the output is read whole first: `docker info | grep -q` under pipefail fails whenever
  # grep exits before docker has written everything)
  if [ "$full_caps" = 0 ] && ! grep -q 'Default Runtime: trainyard-runc' <<<"$info"; then
    fail "this host's capability bounding set ($bounding) lacks capabilities Docker gives privileged containers, and the running dockerd was not started with the wrapper runtime: stop it and run this script again (docs/kind.md)"
  fi
  exit 0
fi

command -v dockerd >/dev/null \
  || fail "Docker is not installed: install Docker (https://docs.docker.com/engine/install/) and run this again"
[ "$(id -u)" = 0 ] || fail "dockerd is not running and starting it needs root: sudo dockerd & (or your init system's docker service)"

mkdir -p "$cache"
args=()
if [ "$full_caps" = 0 ]; then
  # a copy outside the checkout: the daemon may outlive it
  install -m 0755 "$here/runc-caps-wrapper" "$cache/runc-caps-wrapper"
  args+=(--add-runtime "trainyard-runc=$cache/runc-caps-wrapper" --default-runtime trainyard-runc)
  log "capability bounding set $bounding is short: dockerd's default runtime drops the missing capabilities"
fi
log "starting dockerd (log: $cache/dockerd.log)"
nohup dockerd "${args[@]}" >"$cache/dockerd.log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && { log "dockerd is up"; exit 0; }
  sleep 1
done
tail -20 "$cache/dockerd.log" >&2
fail "dockerd did not come up within 60 s"
