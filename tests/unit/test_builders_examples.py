"""The manifests in examples/ through the operator's models and builders (no cluster).

tests/integration/test_admission.py shows the API server accepting them; here they must parse
into `TrainingJob` and give the pods their comments promise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from trainyard_operator.api import TrainingJob
from trainyard_operator.builders import BuildSettings
from trainyard_operator.builders.pods import worker_pod

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
SETTINGS = BuildSettings(trainer_image="registry.local/trainer:test")


def load(stem: str) -> TrainingJob:
    body: dict[str, Any] = yaml.safe_load((EXAMPLES[0].parent / f"{stem}.yaml").read_text())
    body["metadata"].update(namespace="default", uid="uid-1")
    return TrainingJob.from_object(body)


def test_there_are_examples_to_copy() -> None:
    assert {p.stem for p in EXAMPLES} >= {"digits-ddp", "gpu-transformer", "suspended"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_builds_its_pods(path: Path) -> None:
    job = load(path.stem)
    pods = [worker_pod(job, i, 0, SETTINGS) for i in range(job.spec.workers)]
    assert [p["metadata"]["name"] for p in pods] == [
        f"{job.name}-worker-{i}" for i in range(job.spec.workers)
    ]


def test_digits_example_is_two_cpu_workers_with_prune_and_quantize() -> None:
    job = load("digits-ddp")
    pod = worker_pod(job, 1, 0, SETTINGS)
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["PET_NNODES"] == env["WORLD_SIZE"] == "2"
    assert env["PET_NODE_RANK"] == "1"
    config = json.loads(env["TRAINYARD_CONFIG"])
    assert [next(iter(stage)) for stage in config["compression"]] == ["prune", "quantize"]
    assert config["trainer"]["model"] == "mlp"
    assert config["trainer"]["dataset"] == "digits"
    assert "nvidia.com/gpu" not in pod["spec"]["containers"][0]["resources"]["limits"]


def test_gpu_example_asks_for_a_gpu_and_tolerates_gpu_nodes() -> None:
    pod = worker_pod(load("gpu-transformer"), 0, 0, SETTINGS)
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"][
        "tolerations"
    ]


def test_suspended_example_starts_suspended() -> None:
    assert load("suspended").spec.suspend is True
