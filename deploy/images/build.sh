#!/usr/bin/env bash
# `make images`: builds the operator image (Dockerfile) and the trainer image
# (trainer-image/Dockerfile) as users build them, on whatever base this machine can have:
# the Dockerfiles' default python image where it can be pulled, else the local stand-in of
# local-base.sh, passed as --build-arg PYTHON_IMAGE (the Dockerfiles are not changed).
#   OPERATOR_IMAGE (trainyard-operator:0.1.0), TRAINER_IMAGE (trainyard-trainer:0.1.0),
#   TORCH_VARIANT: cpu (PyTorch's CPU-only wheel index), cuda (PyPI's torch, CUDA libraries
#   included, several GB), auto (default: cpu where that index answers, else cuda)
# Docker's layer cache keeps both builds warm: a change to the trainer package rebuilds only
# its last layers, never the torch layer.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
operator_image="${OPERATOR_IMAGE:-trainyard-operator:0.1.0}"
trainer_image="${TRAINER_IMAGE:-trainyard-trainer:0.1.0}"
variant="${TORCH_VARIANT:-auto}"
log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# BuildKit reads trainer-image/Dockerfile.dockerignore
docker="$("$here/buildkit-docker.sh")"
export DOCKER_BUILDKIT=1

if [ "$variant" = auto ]; then
  variant=cuda
  if curl -fsS -m 20 -o /dev/null https://download.pytorch.org/whl/cpu/torch/ 2>/dev/null; then variant=cpu; fi
fi

base="$(DOCKER="$docker" "$here/local-base.sh")"
args=()
[ -z "$base" ] || { args+=(--build-arg "PYTHON_IMAGE=$base"); log "base image: $base (built locally)"; }

t0=$SECONDS
log "building $operator_image"
$docker build -q "${args[@]}" -t "$operator_image" "$repo" >/dev/null
log "building $trainer_image (torch: $variant; the first build downloads torch)"
$docker build -q "${args[@]}" --build-arg "TORCH_VARIANT=$variant" -t "$trainer_image" \
  -f "$repo/trainer-image/Dockerfile" "$repo" >/dev/null
for image in "$operator_image" "$trainer_image"; do
  log "$image: $($docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.2f GB", $1/1e9}')"
done
log "images built in $((SECONDS - t0)) s"
