#!/usr/bin/env bash
# Prints a docker client that builds with BuildKit (it reads <Dockerfile>.dockerignore and
# `-f -`): `docker` when it has the buildx plugin (Docker >= 23), else Debian's 20.10 client
# (/usr/bin/docker), which has BuildKit built in behind DOCKER_BUILDKIT=1. A newer client
# without buildx has only the legacy builder; callers export DOCKER_BUILDKIT=1 either way.
set -euo pipefail
docker="${DOCKER:-docker}"
if $docker buildx version >/dev/null 2>&1; then echo "$docker"; exit 0; fi
if [ -x /usr/bin/docker ] && [ "$(/usr/bin/docker version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)" = 20 ]; then
  echo /usr/bin/docker; exit 0
fi
echo "$docker"
