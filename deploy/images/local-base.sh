#!/usr/bin/env bash
# Prints the Python base image to build Trainyard's images on, making one locally when the
# Dockerfiles' default (python:3.11.13-slim-bookworm) cannot be pulled.
#
# Where the base can be pulled (a laptop, any CI with a registry), it prints nothing and
# `make images` builds the Dockerfiles exactly as users do. Where no registry is reachable
# (our machines: only Debian's and PyPI's mirrors), it builds a stand-in with the same
# shape — Debian bookworm with Python 3.11 as `python`/`pip` on PATH and pip allowed to
# install — from Debian packages (debootstrap, then `docker import`), and prints its name
# for `--build-arg PYTHON_IMAGE=`. The rootfs tarball is cached outside the repository,
# keyed by suite and package list, so later builds (and CI on the same machine) reuse it:
#   ${TRAINYARD_CACHE:-~/.cache/trainyard}/images/python-base-<key>.tar
# The host's extra CA certificates (an egress proxy's) are added to the image's trust store,
# so pip inside `docker build` reaches PyPI the way the host does.
set -euo pipefail

upstream="${PYTHON_IMAGE:-python:3.11.13-slim-bookworm}"
docker="${DOCKER:-docker}"
log() { printf '[local-base %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if $docker image inspect "$upstream" >/dev/null 2>&1; then exit 0; fi
if timeout 60 $docker pull -q "$upstream" >/dev/null 2>&1; then exit 0; fi

suite=bookworm
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages="python3,python3-venv,ca-certificates,passwd"
key="$(printf '%s %s' "$suite" "$packages" | sha256sum | cut -c1-12)"
name="trainyard-local/python-base:$suite-$key"
cache="${TRAINYARD_CACHE:-$HOME/.cache/trainyard}/images"
tarball="$cache/python-base-$key.tar"

if $docker image inspect "$name" >/dev/null 2>&1; then echo "$name"; exit 0; fi
mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || fail=1
  [ -z "${fail:-}" ] || { log "ERROR: $upstream cannot be pulled and debootstrap is missing (apt-get install debootstrap)"; exit 1; }
  root="$(mktemp -d "$cache/rootfs.XXXXXX")"
  trap 'rm -rf "$root"' EXIT
  log "$upstream cannot be pulled: building $name from Debian $suite (debootstrap, about a minute)"
  debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { log "ERROR: debootstrap failed, see $cache/debootstrap.log"; exit 1; }
  # the host's extra CAs (an egress proxy's) so pip inside builds trusts what the host trusts
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1
  fi
  # python:*-slim has `python` and a pip that may install system-wide; a venv on PATH gives
  # both without touching Debian's own Python (PEP 668)
  chroot "$root" python3 -m venv /opt/python
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man
  tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
log "importing $tarball as $name"
$docker import \
  --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' \
  "$tarball" "$name" >/dev/null
echo "$name"
