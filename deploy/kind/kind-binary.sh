#!/usr/bin/env bash
# Prints the path of a kind binary: the one on PATH, else sigs.k8s.io/kind at the version in
# versions.env, built from the Go module proxy into ${TRAINYARD_CACHE}/kind-<version>/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
if command -v kind >/dev/null; then command -v kind; exit 0; fi
dir="${TRAINYARD_CACHE:-$HOME/.cache/trainyard}/kind-$KIND_VERSION"
if [ ! -x "$dir/kind" ]; then
  printf '[kind %s] go install sigs.k8s.io/kind@%s\n' "$(date +%H:%M:%S)" "$KIND_VERSION" >&2
  GOFLAGS= GOBIN="$dir" go install "sigs.k8s.io/kind@$KIND_VERSION" >&2
fi
echo "$dir/kind"
