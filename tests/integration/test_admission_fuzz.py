"""The admission fuzz campaign of bench/admission_fuzz.py, small, so `make test` keeps its
property: every generated TrainingJob the API server (CRD + the chart's admission policy)
refuses is refused with a message naming the field, and every one it admits can be read and
reconciled by the operator's code, with the pods, Service and PodGroups that need building.

The same code as the bench, with a fixed seed and 200 manifests sent through server-side dry
run in the test's own namespace, as admin and as a user who may create TrainingJobs but not
pods. The report of the bench is printed when the test fails (the first manifest of each kind
of problem, verbatim).
"""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import pytest
from kubernetes import client
from rich.console import Console

BENCH = Path(__file__).resolve().parents[2] / "bench" / "admission_fuzz.py"
COUNT = 200
SEED = 20261202
THREADS = 6

pytestmark = pytest.mark.usefixtures("crd_installed")


def _load_bench() -> ModuleType:
    """bench/ is not a package: import the campaign's module from its file."""
    spec = importlib.util.spec_from_file_location("admission_fuzz", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve their annotations through sys.modules[cls.__module__]
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load_bench()


def test_generation_is_reproducible() -> None:
    """A seed and an index name one manifest: reruns and single cases regenerate it."""
    assert fuzz.generate_case(SEED, 7) == fuzz.generate_case(SEED, 7)
    assert fuzz.generate_case(SEED, 7) != fuzz.generate_case(SEED + 1, 7)


def test_refusal_path_rule() -> None:
    """What counts as naming a field, on answers the API server gives."""
    invalid = {
        "message": "...",
        "details": {
            "causes": [
                {"field": "spec.workers", "message": "Invalid value: 0: ..."},
                {
                    "field": "<nil>",
                    "message": "Invalid value: null: some validation rules were "
                    "not checked because the object was invalid",
                },
            ]
        },
    }
    cel_at_root = {
        "details": {
            "causes": [
                {
                    "field": "<nil>",
                    "message": "Invalid value: metadata.name may have at most 48 characters",
                }
            ]
        }
    }
    strict = {"message": 'strict decoding error: unknown field "spec.trainer.bar"'}
    policy_error = {
        "message": "ValidatingAdmissionPolicy 'p' denied request: expression 'variables.pod"
        ".?volumes.orValue([]) || object.spec.?env' resulted in error: no such overload"
    }
    assert fuzz.names_field_path(invalid)
    assert fuzz.names_field_path(cel_at_root)
    assert fuzz.names_field_path(strict)
    assert not fuzz.names_field_path(policy_error)


def test_admission_fuzz(api_client: client.ApiClient, kubeconfig: Path, namespace: str) -> None:
    clients = fuzz.make_clients(api_client.configuration, THREADS)
    try:
        rendered = fuzz.prepare(kubeconfig, clients, namespace)
        try:
            tally = fuzz.run_campaign(clients, namespace, count=COUNT, seed=SEED, threads=THREADS)
        finally:
            fuzz.cleanup(kubeconfig, rendered)
    finally:
        for api in clients.values():
            api.close()

    out = io.StringIO()
    fuzz.report(Console(file=out, width=160), tally, show=3)
    assert tally.sent == COUNT
    # the campaign reached both sides of admission, and the operator's code with them
    assert tally.admitted > COUNT // 5 and tally.refused > COUNT // 5, out.getvalue()
    assert not tally.unpathed, f"refusals without a field path:\n{out.getvalue()}"
    assert not tally.failures, f"admitted objects the operator cannot handle:\n{out.getvalue()}"
    assert not tally.server_errors, f"server errors:\n{out.getvalue()}"
