"""A TrainingJob's life as a user watches it: pods created, Running, Succeeded with results,
and every child gone when the job is deleted. The operator runs as a subprocess under its own
ServiceAccount (operator_fixtures); pods are driven by the fake-node agent's annotations."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from integration.operator_fixtures import Jobs, condition, wait_for, wait_until_authorized
from trainyard_local.operator_process import OperatorProcess
from trainyard_local.pytest_plugin import Kubectl

pytestmark = pytest.mark.integration

RESULTS = {
    "accuracy": 0.97,
    "parameters": 567434,
    "modelBytes": 2270000,
    "stages": [{"name": "train", "accuracy": 0.97, "modelBytes": 2270000, "seconds": 3.1}],
    "artifactPath": "/output/model-final.pt",
}


def test_running_job_shows_conditions_and_printer_columns(
    operator: OperatorProcess, jobs: Jobs, kubectl: Kubectl, namespace: str
) -> None:
    jobs.create("alive", workers=2)
    status = jobs.wait_phase("alive", "Running")
    assert status["workers"]["desired"] == 2
    assert status["workers"]["ready"] == 2
    assert status["startTime"]
    generation = jobs.get("alive")["metadata"]["generation"]  # type: ignore[index]
    for kind in ("Created", "Running"):
        cond = condition(status, kind)
        assert cond is not None and cond["status"] == "True", status["conditions"]
        assert cond["observedGeneration"] == generation
    assert status["observedGeneration"] == generation
    # one event per creation, and the note that its checkpoints would not survive a restart
    assert sorted(jobs.reasons("alive")) == ["CheckpointsNotPersistent", "WorkersCreated"]
    kind, _, message = jobs.wait_event("alive", "CheckpointsNotPersistent")
    assert kind == "Normal" and "spec.output.volumeClaimName" in message

    table = kubectl("get", "tj", "-n", namespace)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    for column in ("NAME", "PHASE", "WORKERS", "RESTARTS", "AGE"):
        assert column in header, header
    assert row.split()[:3] == ["alive", "Running", "2/2"], table.stdout


def test_all_workers_exiting_zero_succeed_with_results(
    operator: OperatorProcess, jobs: Jobs
) -> None:
    jobs.create(
        "done",
        workers=2,
        pod_annotations={
            "fake.trainyard.dev/run-seconds": "1",
            "fake.trainyard.dev/termination-message": json.dumps(RESULTS),
        },
    )
    status = jobs.wait_phase("done", "Succeeded")
    assert status["completionTime"] >= status["startTime"]
    assert status["results"]["accuracy"] == 0.97
    assert status["results"]["modelBytes"] == 2270000
    assert status["results"]["stages"][0]["name"] == "train"
    assert status["results"]["artifactPath"] == "/output/model-final.pt"
    assert status["progress"]["percent"] == 100
    succeeded = condition(status, "Succeeded")
    assert succeeded is not None and succeeded["status"] == "True"
    running = condition(status, "Running")
    assert running is not None and running["status"] == "False"
    assert jobs.wait_event("done", "Succeeded")[0] == "Normal"
    # Succeeded pods are kept (cleanPodPolicy Running) so their logs stay readable.
    assert jobs.pod_phases("done") == ["Succeeded", "Succeeded"]


def test_deleting_the_job_removes_every_child(
    operator: OperatorProcess, jobs: Jobs, namespace: str
) -> None:
    jobs.create("gone", workers=3)
    jobs.wait_phase("gone", "Running")
    assert jobs.core.read_namespaced_service("gone", namespace).spec.cluster_ip == "None"
    jobs.delete("gone")
    wait_for("the garbage collector to delete the pods", lambda: not jobs.pods("gone"))

    def service_gone() -> bool:
        try:
            jobs.core.read_namespaced_service("gone", namespace)
        except ApiException as err:
            return err.status == 404
        return False

    wait_for("the garbage collector to delete the Service", service_gone)
    assert jobs.get("gone") is None


def test_cluster_wide_operator_serves_every_namespace(
    api_client: client.ApiClient,
    sa_kubeconfig: Callable[[str, str], Path],
    operator_rules: str,
    jobs: Jobs,
    tmp_path: Path,
) -> None:
    """The Helm chart's default: one ClusterRoleBinding, TRAINYARD_NAMESPACES empty."""
    namespace = jobs.namespace
    kubeconfig = sa_kubeconfig(namespace, "cluster-operator")
    rbac = client.RbacAuthorizationV1Api(api_client)
    binding = f"trainyard-operator-{namespace}"
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": binding},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": operator_rules,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "cluster-operator", "namespace": namespace}
            ],
        }
    )
    try:
        # as the operator fixture does for its RoleBinding: start once the binding is in effect
        wait_until_authorized(api_client, namespace, "cluster-operator", cluster_wide=True)
        with OperatorProcess(kubeconfig, [], log_path=tmp_path / "operator.log"):
            jobs.create("anywhere", workers=2)
            jobs.wait_phase("anywhere", "Running")
    finally:
        rbac.delete_cluster_role_binding(binding)


def test_a_job_recreated_after_an_orphaning_delete_does_not_adopt_the_old_pods(
    operator: OperatorProcess, jobs: Jobs, kubectl: Kubectl, namespace: str
) -> None:
    def job(accuracy: float) -> None:
        jobs.create(
            "again",
            workers=2,
            pod_annotations={
                "fake.trainyard.dev/run-seconds": "1",
                "fake.trainyard.dev/termination-message": json.dumps(
                    {**RESULTS, "accuracy": accuracy}
                ),
            },
        )

    job(0.5)
    assert jobs.wait_phase("again", "Succeeded")["results"]["accuracy"] == 0.5
    first_uid = jobs.get("again")["metadata"]["uid"]  # type: ignore[index]
    done = kubectl("delete", "tj", "again", "-n", namespace, "--cascade=orphan", "--wait")
    assert done.returncode == 0, done.stderr
    # the garbage collector strips the owner references: the old pods stay, owned by nobody
    wait_for(
        "the old pods to be orphaned",
        lambda: all(not p["metadata"].get("ownerReferences") for p in jobs.pods("again")),
    )
    assert len(jobs.pods("again")) == 2

    job(0.9)
    status = jobs.wait_phase("again", "Succeeded", timeout=120)
    # the new job's own workers ran: their results, not the old pods' stale ones
    assert status["results"]["accuracy"] == 0.9
    new_uid = jobs.get("again")["metadata"]["uid"]  # type: ignore[index]
    assert new_uid != first_uid
    owners = {
        ref["uid"] for p in jobs.pods("again") for ref in p["metadata"].get("ownerReferences", [])
    }
    assert owners == {new_uid}
    kind, _, message = jobs.wait_event("again", "StrayWorkersRemoved")
    assert kind == "Warning" and "again-worker-0" in message and "again-worker-1" in message
