"""What the operator creates for the shipped examples, read back from the API server: the
headless Service and worker pods with exactly the documented env, labels, ownership and
security (admitted by the restricted Pod Security Standard), and GPU pods that land only on
GPU nodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration.operator_fixtures import Jobs
from trainyard_local.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CONTRACT_ENV = {
    "PET_NNODES",
    "PET_NPROC_PER_NODE",
    "PET_NODE_RANK",
    "PET_MASTER_ADDR",
    "PET_MASTER_PORT",
    "PET_MAX_RESTARTS",
    "MASTER_ADDR",
    "MASTER_PORT",
    "NODE_RANK",
    "WORLD_SIZE",
    "TRAINYARD_JOB",
    "TRAINYARD_NAMESPACE",
    "TRAINYARD_RESTART",
    "TRAINYARD_CONFIG",
    "TRAINYARD_OUTPUT_DIR",
    "TRAINYARD_METRICS_PORT",
    "TRAINYARD_TERMINATION_LOG",
    "TRAINYARD_LOG_FORMAT",
    "PYTHONUNBUFFERED",
}


def example(name: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return manifest


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def test_digits_example_gets_the_documented_service_and_pods(
    operator: OperatorProcess, jobs: Jobs, namespace: str
) -> None:
    # Enforce the restricted Pod Security Standard: the pods must be admitted as built.
    jobs.core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    manifest = example("digits-ddp.yaml")
    job = jobs.apply(manifest)
    uid = job["metadata"]["uid"]
    pods = jobs.wait_pods("digits-ddp", 2)

    service = jobs.core.read_namespaced_service("digits-ddp", namespace)
    assert service.spec.cluster_ip == "None"
    assert service.spec.publish_not_ready_addresses is True
    assert service.metadata.owner_references[0].uid == uid

    master = f"digits-ddp-worker-0.digits-ddp.{namespace}.svc"
    for index, pod in enumerate(pods):
        meta, spec = pod["metadata"], pod["spec"]
        assert meta["name"] == f"digits-ddp-worker-{index}"
        assert meta["labels"]["trainyard.dev/job-name"] == "digits-ddp"
        assert meta["labels"]["trainyard.dev/worker-index"] == str(index)
        assert meta["labels"]["trainyard.dev/restart"] == "0"
        (owner,) = meta["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("TrainingJob", "digits-ddp", uid)
        assert owner["controller"] is True
        assert (spec["hostname"], spec["subdomain"]) == (meta["name"], "digits-ddp")
        assert spec["automountServiceAccountToken"] is False
        assert not any(v.get("projected") or v.get("secret") for v in spec.get("volumes") or []), (
            "a trainer pod must get no API credentials"
        )
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        container = spec["containers"][0]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert "nvidia.com/gpu" not in container["resources"].get("limits", {})

        env = env_of(pod)
        assert set(env) >= CONTRACT_ENV, CONTRACT_ENV - set(env)
        assert env["PET_NNODES"] == "2"
        assert env["PET_NPROC_PER_NODE"] == "1"
        assert env["PET_NODE_RANK"] == env["NODE_RANK"] == str(index)
        assert env["PET_MASTER_ADDR"] == env["MASTER_ADDR"] == master
        assert env["PET_MASTER_PORT"] == env["MASTER_PORT"] == "29500"
        assert env["WORLD_SIZE"] == "2"
        assert env["TRAINYARD_JOB"] == "digits-ddp"
        assert env["TRAINYARD_NAMESPACE"] == namespace
        config = json.loads(env["TRAINYARD_CONFIG"])
        # The trainer config is the example's, with the CRD's defaults filled in.
        assert manifest["spec"]["trainer"].items() <= config["trainer"].items()
        stages = [next(iter(stage)) for stage in config["compression"]]
        assert stages == [next(iter(stage)) for stage in manifest["spec"]["compression"]]
    jobs.wait_phase("digits-ddp", "Running")


def test_gpu_example_gets_gpu_limits_and_lands_only_on_gpu_nodes(
    operator: OperatorProcess, jobs: Jobs
) -> None:
    jobs.apply(example("gpu-transformer.yaml"))
    (pod,) = jobs.wait_pods("gpu-transformer", 1)
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in [
        {k: t.get(k) for k in ("key", "operator", "effect")} for t in pod["spec"]["tolerations"]
    ]
    node = jobs.core.read_node(pod["spec"]["nodeName"])
    assert node.status.allocatable["nvidia.com/gpu"] == "8"
    assert node.metadata.labels["nvidia.com/gpu.present"] == "true"
    assert env_of(pod)["PET_NPROC_PER_NODE"] == "1"


def test_cpu_jobs_never_land_on_gpu_nodes(operator: OperatorProcess, jobs: Jobs) -> None:
    jobs.create("cpu-only", workers=4)
    for pod in jobs.wait_pods("cpu-only", 4):
        node = jobs.core.read_node(pod["spec"]["nodeName"])
        assert "nvidia.com/gpu.present" not in (node.metadata.labels or {})
