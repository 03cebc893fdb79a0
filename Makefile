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

.PHONY: help venv local-binaries cluster-up cluster-down crds lint typecheck test test-unit \
        test-integration test-trainer test-e2e prometheus demo demo-down bench \
        kind-up kind-down images kind-load deploy demo-kind helm-sync

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
	$(PY) -m trainyard_operator.api.crdgen --out crds/ --chart deploy/helm/trainyard

prometheus: ## install Debian's prometheus when missing (the e2e test and the demo scrape with it)
	@command -v prometheus >/dev/null || test -x /usr/bin/prometheus || \
	  { (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@# the package's postinst starts a daemon on :9090 where an init system runs; ours starts its own
	-@pkill -x prometheus 2>/dev/null || true

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
