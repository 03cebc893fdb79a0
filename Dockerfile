# The Trainyard operator image: the operator package and its runtime dependencies only (no
# torch: the trainer has its own image, trainer-image/Dockerfile). Non-root (uid 65532),
# read-only root filesystem friendly, the base pinned by version (pin a digest too when you
# mirror it: --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:...).
#
#   docker build -t trainyard-operator:0.1.0 .        (or `make images`)
#
# The Helm chart runs it with TRAINYARD_* settings in the environment (docs/contracts.md).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# the build context is filtered by .dockerignore: sources and metadata, no venv or caches
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY trainer-image/ trainer-image/
COPY deploy/local/ deploy/local/
COPY cli/ cli/
# a wheel of the project, then a venv with it and the operator's dependencies only: no
# extras, so neither torch (trainer) nor the local-cluster tooling is installed
RUN python -m venv /opt/trainyard \
 && /opt/trainyard/bin/pip install --upgrade "pip==25.1.1" \
 && /opt/trainyard/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/trainyard/bin/pip install /wheels/trainyard-*.whl \
 && /opt/trainyard/bin/python -c "import trainyard_operator.main" \
 && ! /opt/trainyard/bin/python -c "import torch" 2>/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="trainyard-operator" \
      org.opencontainers.image.description="Kubernetes operator for distributed PyTorch training" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/trainyard/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/trainyard /opt/trainyard
# a numeric user, so the kubelet can verify runAsNonRoot without a passwd lookup
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["trainyard-operator"]
