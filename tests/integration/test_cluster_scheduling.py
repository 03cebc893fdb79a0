"""GPU scheduling on the local cluster is decided by the real kube-scheduler against the
`nvidia.com/gpu` capacity the fake nodes report (trainyard_local.nodes)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from trainyard_local.pytest_plugin import GPUS_PER_NODE, wait_for

pytestmark = pytest.mark.integration

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def gpu_pod(name: str, gpus: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "tolerations": [GPU_TOLERATION],
            "containers": [
                {
                    "name": "main",
                    "image": "example.com/trainer:1",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                }
            ],
        },
    }


def test_pod_limiting_one_gpu_runs_on_a_gpu_node(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, gpu_pod("one-gpu", 1))

    def running() -> client.V1Pod | None:
        found = core.read_namespaced_pod("one-gpu", namespace)
        return found if found.status and found.status.phase == "Running" else None

    found = wait_for("the 1-GPU pod to run", running)
    assert isinstance(found, client.V1Pod) and found.spec and found.status
    node = core.read_node(found.spec.node_name or "")
    assert node.metadata and node.metadata.labels
    assert node.metadata.labels.get("nvidia.com/gpu.present") == "true"
    assert node.status and node.status.allocatable
    assert node.status.allocatable["nvidia.com/gpu"] == str(GPUS_PER_NODE)
    assert (found.status.pod_ip or "").startswith("127.1.")


def test_pod_asking_more_gpus_than_any_node_has_stays_pending(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, gpu_pod("nine-gpus", GPUS_PER_NODE + 1))

    def failed_scheduling() -> list[str]:
        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=nine-gpus,reason=FailedScheduling"
        )
        return [event.message or "" for event in events.items]

    messages = wait_for("a FailedScheduling event", failed_scheduling)
    assert isinstance(messages, list)
    assert any("Insufficient nvidia.com/gpu" in message for message in messages), messages
    stuck = core.read_namespaced_pod("nine-gpus", namespace)
    assert stuck.status and stuck.status.phase == "Pending"
    assert stuck.spec and not stuck.spec.node_name
