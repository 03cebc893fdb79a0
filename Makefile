# Trainyard developer entry points. `make demo` and `make test` work on a fresh machine:
# they create the venv, build (or reuse) the control-plane binaries and start what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export TRAINYARD_CACHE ?= $(HOME)/.cache/trainyard
# Where `make cluster-up` keeps its state (certs, logs, kubeconfig); see README.
export TRAINYARD_HOME ?= $(CURDIR)/.trainyard
PYTEST_ARGS ?=

.PHONY: help venv local-binaries cluster-up cluster-down crds lint test test-unit \
        test-integration test-trainer test-e2e prometheus demo demo-down helm-lint \
        kind-host kind-node-image kind-up kind-down images deploy demo-kind helm-sync test-kind

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[trainer,local,dev]'
	touch $@

venv: $(VENV)/.installed ## create the project's virtualenv with every extra

local-binaries: ## build (or reuse) kube-apiserver, scheduler, controller-manager, kubectl, etcd, helm
	deploy/local/build-binaries.sh

cluster-up: venv local-binaries ## start the embedded local cluster (prints the kubeconfig path)
	$(PY) -m trainyard_local up

cluster-down: venv ## stop every process the embedded local cluster started
	$(PY) -m trainyard_local down

crds: venv ## regenerate crds/ and the chart's copy from the pydantic models
	$(PY) -m trainyard_operator.api.crdgen --out crds/ --chart deploy/helm/trainyard --docs docs/api.md

prometheus: ## install Debian's prometheus when missing (the e2e test and the demo scrape with it)
	@command -v prometheus >/dev/null || test -x /usr/bin/prometheus || { \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  ($$sudo apt-get update -qq || true) && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@# Where an init system runs, the package also starts a system daemon on :9090; the demo
	@# and the tests start their own on a free port and never touch (or kill) that one.

lint: venv ## ruff, mypy strict and the import layers
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: venv local-binaries prometheus lint ## the whole suite: unit, trainer, integration, e2e
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-unit: venv
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

test-trainer: venv
	$(VENV)/bin/pytest tests/trainer $(PYTEST_ARGS)

test-integration: venv local-binaries
	$(VENV)/bin/pytest tests/integration $(PYTEST_ARGS)

test-e2e: venv local-binaries prometheus
	$(VENV)/bin/pytest tests/e2e $(PYTEST_ARGS)

test-kind: venv local-binaries ## the kind suite alone (builds what it needs; docs/kind.md)
	$(VENV)/bin/pytest tests/kind $(PYTEST_ARGS)

# -- demo, Helm and the kind path (docs/kind.md) ------------------------------------------------
KIND_CLUSTER ?= trainyard
IMAGE_TAG ?= 0.1.0
OPERATOR_IMAGE ?= trainyard-operator:$(IMAGE_TAG)
TRAINER_IMAGE ?= trainyard-trainer:$(IMAGE_TAG)
# auto: PyTorch's CPU-only wheel where its index answers (about 5x smaller), else PyPI's torch
TORCH_VARIANT ?= auto
export KIND_CLUSTER OPERATOR_IMAGE TRAINER_IMAGE TORCH_VARIANT
HELM_RELEASE ?= trainyard
HELM_NAMESPACE ?= trainyard-system
# helm and kubectl: the ones on PATH, else the pinned builds of `make local-binaries`
BIN_DIR = $(shell $(PY) -c 'from trainyard_local.binaries import default_bin_dir; print(default_bin_dir())' 2>/dev/null)
HELM ?= $(or $(shell command -v helm),$(BIN_DIR)/helm)
KUBECTL ?= $(or $(shell command -v kubectl),$(BIN_DIR)/kubectl)

demo: venv local-binaries prometheus ## the whole flow: kind where it can run, else the embedded cluster
	OMP_NUM_THREADS=1 $(PY) -m trainyard_local.demo up

demo-down: venv ## stop the demo's operator, Prometheus and cluster
	$(PY) -m trainyard_local.demo down

helm-lint: venv local-binaries ## helm lint the chart (default values, and with every switch on)
	$(HELM) lint deploy/helm/trainyard
	$(HELM) lint deploy/helm/trainyard --set monitoring.serviceMonitor.enabled=true \
	  --set monitoring.podMonitor.enabled=true --set monitoring.prometheusRule.enabled=true \
	  --set monitoring.grafanaDashboard.enabled=true --set networkPolicy.enabled=true

helm-sync: ## copy deploy/monitoring's alerts and dashboard into the chart (a test checks they match)
	cp deploy/monitoring/alerts.yaml deploy/helm/trainyard/files/alerts.yaml
	cp deploy/monitoring/grafana-dashboard.json deploy/helm/trainyard/files/dashboard.json

kind-host: ## make this host ready for kind where it is not (dockerd, runc wrapper; docs/kind.md)
	deploy/kind/host/setup.sh

kind-node-image: kind-host local-binaries ## kindest/node where it can be pulled, else assemble one here (cached)
	deploy/kind/node-image/build.sh

images: kind-host ## build the operator and trainer images from their Dockerfiles
	deploy/images/build.sh

kind-up: venv local-binaries ## kind cluster + images + kind load + helm install (the operator in its pod)
	$(PY) -m trainyard_local.kind up

demo-kind: venv local-binaries ## the demo on kind: kind-up, then apply the example and follow it
	OMP_NUM_THREADS=1 $(PY) -m trainyard_local.kind demo

deploy: ## helm upgrade --install the chart into the current kube context (images already loaded)
	$(HELM) upgrade --install $(HELM_RELEASE) deploy/helm/trainyard \
	  --namespace $(HELM_NAMESPACE) --create-namespace --wait --timeout 5m \
	  --set image.repository=$(firstword $(subst :, ,$(OPERATOR_IMAGE))) --set image.tag=$(IMAGE_TAG) \
	  --set image.pullPolicy=IfNotPresent --set operator.trainerImage=$(TRAINER_IMAGE)

kind-down: venv ## delete the kind cluster
	$(PY) -m trainyard_local.kind down
