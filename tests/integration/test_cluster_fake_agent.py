"""The fake-node agent follows the annotation rules of docs/contracts.md: what an operator
test sees of pods on fake nodes (phase, exit code, termination message, waiting reasons,
deletion) and of the nodes themselves (Ready, Lease heartbeats)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client, watch

from trainyard_local.cluster import LocalCluster
from trainyard_local.pytest_plugin import wait_for

pytestmark = pytest.mark.integration


def fake_pod(
    name: str, annotations: dict[str, str] | None = None, image: str = ""
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": image or "example.com/app:1"}],
        },
    }


def phase_is(core: client.CoreV1Api, namespace: str, name: str, phase: str) -> Any:
    def probe() -> client.V1Pod | None:
        found = core.read_namespaced_pod(name, namespace)
        return found if found.status and found.status.phase == phase else None

    return wait_for(f"pod {name} to be {phase}", probe)


def seen(
    core: client.CoreV1Api,
    created: client.V1Pod,
    what: str,
    match: Callable[[client.V1Pod], bool],
    timeout: float = 60.0,
) -> client.V1Pod:
    """The first version of the pod, from its creation on, for which `match` holds.

    A watch from the creation's resourceVersion delivers every update the agent writes, so a
    state the agent holds only briefly (Running for run-seconds, ErrImagePull for 2 s) is seen
    even when the test is too slow to poll within that window.
    """
    if match(created):
        return created
    name, namespace = created.metadata.name, created.metadata.namespace
    version = created.metadata.resource_version
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        watcher = watch.Watch()
        for event in watcher.stream(
            core.list_namespaced_pod,
            namespace,
            field_selector=f"metadata.name={name}",
            resource_version=version,
            timeout_seconds=max(1, int(left)),
        ):
            pod = event["object"]
            version = pod.metadata.resource_version
            if event["type"] in ("ADDED", "MODIFIED") and match(pod):
                watcher.stop()
                return pod
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}", pytrace=False)


def phase_seen(core: client.CoreV1Api, created: client.V1Pod, phase: str) -> Any:
    return seen(
        core,
        created,
        f"pod {created.metadata.name} to be {phase}",
        lambda pod: bool(pod.status and pod.status.phase == phase),
    )


def reason_seen(core: client.CoreV1Api, created: client.V1Pod, reason: str) -> client.V1Pod:
    def waiting(pod: client.V1Pod) -> bool:
        statuses = (pod.status and pod.status.container_statuses) or []
        state = statuses[0].state if statuses else None
        return bool(state and state.waiting and state.waiting.reason == reason)

    return seen(core, created, reason, waiting)


def terminated(found: client.V1Pod) -> client.V1ContainerStateTerminated:
    assert found.status and found.status.container_statuses
    state = found.status.container_statuses[0].state
    assert state and state.terminated
    return state.terminated


def waiting_reason(core: client.CoreV1Api, namespace: str, name: str) -> str:
    found = core.read_namespaced_pod(name, namespace)
    if not (found.status and found.status.container_statuses):
        return ""
    state = found.status.container_statuses[0].state
    return state.waiting.reason or "" if state and state.waiting else ""


def test_run_seconds_then_exit_zero_succeeds(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    created = core.create_namespaced_pod(
        namespace, fake_pod("done", {"fake.trainyard.dev/run-seconds": "1"})
    )
    # Running lasts about a second: watch for it rather than poll
    running = phase_seen(core, created, "Running")
    assert running.status.pod_ip.startswith("127.1.")
    assert {c.type for c in running.status.conditions if c.status == "True"} >= {
        "Ready",
        "ContainersReady",
        "PodScheduled",
        "Initialized",
    }
    finished = phase_is(core, namespace, "done", "Succeeded")
    state = terminated(finished)
    assert (state.exit_code, state.reason) == (0, "Completed")


def test_exit_code_and_termination_message_fail_the_pod(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    annotations = {
        "fake.trainyard.dev/run-seconds": "0",
        "fake.trainyard.dev/exit-code": "3",
        "fake.trainyard.dev/termination-message": "error: trainer.epochs",
    }
    core.create_namespaced_pod(namespace, fake_pod("broken", annotations))
    state = terminated(phase_is(core, namespace, "broken", "Failed"))
    assert (state.exit_code, state.reason, state.message) == (3, "Error", "error: trainer.epochs")


def test_annotating_a_running_pod_kills_it(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, fake_pod("worker-1"))
    phase_is(core, namespace, "worker-1", "Running")
    core.patch_namespaced_pod(
        "worker-1",
        namespace,
        {"metadata": {"annotations": {"fake.trainyard.dev/exit-code": "137"}}},
    )
    assert terminated(phase_is(core, namespace, "worker-1", "Failed")).exit_code == 137


def test_waiting_reason_keeps_the_pod_pending(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    held = {"fake.trainyard.dev/waiting-reason": "CreateContainerConfigError"}
    core.create_namespaced_pod(namespace, fake_pod("held", held))
    wait_for(
        "the waiting reason",
        lambda: waiting_reason(core, namespace, "held") == "CreateContainerConfigError",
    )
    assert core.read_namespaced_pod("held", namespace).status.phase == "Pending"
    # lifting the annotation lets it start, as fixing a missing ConfigMap would
    core.patch_namespaced_pod(
        "held",
        namespace,
        {"metadata": {"annotations": {"fake.trainyard.dev/waiting-reason": None}}},
    )
    phase_is(core, namespace, "held", "Running")


def pod_events(core: client.CoreV1Api, namespace: str, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the events on a pod, as `kubectl describe pod` lists them."""
    items = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.kind=Pod,involvedObject.name={name}"
    ).items
    return [(e.type, e.reason, e.message or "") for e in items]


def wait_events(
    core: client.CoreV1Api, namespace: str, name: str, reasons: set[str]
) -> list[tuple[str, str, str]]:
    def probe() -> list[tuple[str, str, str]] | None:
        found = pod_events(core, namespace, name)
        return found if reasons <= {reason for _, reason, _ in found} else None

    return wait_for(f"events {sorted(reasons)} on pod {name}", probe)


def test_describe_pod_shows_the_container_starting_and_being_stopped(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, fake_pod("storied"))
    phase_is(core, namespace, "storied", "Running")
    # the scheduler's event, then the agent's, as a kubelet records them
    found = wait_events(core, namespace, "storied", {"Scheduled", "Pulled", "Created", "Started"})
    assert ("Normal", "Started", "Started container main") in found
    core.delete_namespaced_pod("storied", namespace)
    found = wait_events(core, namespace, "storied", {"Killing"})
    assert ("Normal", "Killing", "Stopping container main") in found


def test_unresolvable_registry_gives_image_pull_errors(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    created = core.create_namespaced_pod(
        namespace, fake_pod("pull", image="registry.invalid/missing:1")
    )
    # ErrImagePull shows for 2 s only: watch for it, then for what follows it
    pulling = reason_seen(core, created, "ErrImagePull")
    reason_seen(core, pulling, "ImagePullBackOff")
    assert core.read_namespaced_pod("pull", namespace).status.phase == "Pending"
    found = wait_events(core, namespace, "pull", {"Failed", "BackOff"})
    failed = [message for kind, reason, message in found if reason == "Failed"]
    assert failed and "failed to pull image" in failed[0]
    assert ("Warning", "Failed") in {(kind, reason) for kind, reason, _ in found}
    assert "Started" not in {reason for _, reason, _ in found}


def test_deleted_pod_is_removed_at_once(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, fake_pod("victim"))
    phase_is(core, namespace, "victim", "Running")
    # the default 30 s grace period would keep it Terminating without an agent
    core.delete_namespaced_pod("victim", namespace)

    def gone() -> bool:
        return not core.list_namespaced_pod(namespace, field_selector="metadata.name=victim").items

    # well under the 30 s grace period, so waiting it out would still fail; 15 s was tight
    # for a loaded 2-core machine
    wait_for("the pod to disappear", gone, timeout=25)


def test_nodes_are_ready_and_renew_their_leases(
    api_client: client.ApiClient, local_cluster: LocalCluster
) -> None:
    core = client.CoreV1Api(api_client)
    leases = client.CoordinationV1Api(api_client)
    names = [spec.name for spec in local_cluster.node_specs]
    for name in names:
        node = core.read_node(name)
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True"
        assert not [t for t in node.spec.taints or [] if t.key == "node.kubernetes.io/not-ready"]
    first = leases.read_namespaced_lease(names[0], "kube-node-lease").spec.renew_time
    wait_for(
        "a lease renewal",
        lambda: leases.read_namespaced_lease(names[0], "kube-node-lease").spec.renew_time > first,
        timeout=40,
        interval=1.0,
    )


def test_malformed_annotation_is_reported_on_the_pod(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, fake_pod("typo", {"fake.trainyard.dev/exit-code": "x"}))
    wait_for(
        "CreateContainerConfigError",
        lambda: waiting_reason(core, namespace, "typo") == "CreateContainerConfigError",
    )
    status = core.read_namespaced_pod("typo", namespace).status
    message = status.container_statuses[0].state.waiting.message
    assert message == "fake.trainyard.dev/exit-code: 'x' is not an integer"
