"""The operator can die at any moment: killed with SIGKILL while it creates a large gang and
started again, it finishes the gang without a duplicate or a replaced pod; events it could
not post before it died are posted by its successor, once."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from kubernetes import client

from integration.operator_fixtures import (
    ROLE,
    RULES,
    Jobs,
    wait_for,
    wait_until_authorized,
)
from trainyard_local.cluster import LocalCluster
from trainyard_local.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

WORKERS = 40


def test_killed_mid_creation_and_restarted_creates_no_duplicates(
    operator_factory: Callable[[], OperatorProcess], jobs: Jobs
) -> None:
    first = operator_factory()
    jobs.create("big", workers=WORKERS)
    wait_for("the first pods of the gang", lambda: jobs.pods("big"), interval=0.02)
    first.kill()
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in jobs.pods("big")}
    print(f"{len(before)} of {WORKERS} pods existed when the operator was killed")

    operator_factory()
    # 40 pods through a restarted operator and the agent: more than the default minute can
    # take on a loaded 2-core machine (the timeout only bounds a hang)
    pods = jobs.wait_pods("big", WORKERS, timeout=180)
    status = jobs.wait_phase("big", "Running")
    names = [p["metadata"]["name"] for p in pods]
    assert sorted(names) == sorted(f"big-worker-{i}" for i in range(WORKERS))
    assert {p["metadata"]["labels"]["trainyard.dev/restart"] for p in pods} == {"0"}
    # Pods created before the kill are the same objects now: none was deleted and remade.
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}
    assert {name: after[name] for name in before} == before
    assert status["restarts"] == 0
    assert status["workers"]["active"] == WORKERS


def _bind_operator_rules(
    api: client.ApiClient, namespace: str, rules: list[dict[str, Any]] | None
) -> None:
    """Replace the operator's namespace binding: `rules` as a Role, or (None) the full
    ClusterRole the fixture bound. A roleRef cannot change, so the binding is re-created."""
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.delete_namespaced_role_binding("trainyard-operator", namespace)
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE}
    if rules is not None:
        rbac.create_namespaced_role(namespace, {"metadata": {"name": "no-events"}, "rules": rules})
        role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "no-events"}
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "trainyard-operator"},
            "roleRef": role_ref,
            "subjects": [
                {"kind": "ServiceAccount", "name": "trainyard-operator", "namespace": namespace}
            ],
        },
    )


def _may_post_events(api: client.ApiClient, namespace: str) -> bool:
    review = {
        "spec": {
            "user": f"system:serviceaccount:{namespace}:trainyard-operator",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            "resourceAttributes": {"namespace": namespace, "verb": "create", "resource": "events"},
        }
    }
    answer = client.AuthorizationV1Api(api).create_subject_access_review(review)
    return bool(answer.status and answer.status.allowed)


def test_events_lost_before_a_restart_are_posted_once_by_the_next_operator(
    operator_factory: Callable[[], OperatorProcess],
    jobs: Jobs,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    # The status write succeeds and the event post fails: what a kill between the two does,
    # made certain here by taking the operator's right to post events away.
    without_events = [
        rule for rule in yaml.safe_load(RULES.read_text()) if "events" not in rule["resources"]
    ]
    _bind_operator_rules(api_client, namespace, without_events)
    wait_for("the binding without events", lambda: not _may_post_events(api_client, namespace))
    wait_until_authorized(api_client, namespace)
    first = operator_factory()
    jobs.create("told", workers=2)
    jobs.wait_phase("told", "Running")
    assert "WorkersCreated" not in jobs.reasons("told")
    first.kill()

    _bind_operator_rules(api_client, namespace, None)
    wait_for("the full binding", lambda: _may_post_events(api_client, namespace))
    second = operator_factory()
    jobs.wait_event("told", "WorkersCreated")
    jobs.wait_event("told", "CheckpointsNotPersistent")

    # Killed again and restarted: the events already posted are not posted twice. A worker's
    # failure afterwards is handled by the third operator, after its first pass.
    second.kill()
    operator_factory()
    jobs.annotate_pod("told-worker-1", {"fake.trainyard.dev/exit-code": "137"})
    jobs.wait_event("told", "GangRestart")
    reasons = jobs.reasons("told")
    assert reasons.count("CheckpointsNotPersistent") == 1, reasons
    created = [m for _, r, m in jobs.events("told") if r == "WorkersCreated" and "attempt 0" in m]
    assert len(created) == 1, jobs.events("told")


def _jobs_in_phase(process: OperatorProcess, namespace: str, phase: str) -> float:
    for line in process.metrics_text().splitlines():
        labels = (f'namespace="{namespace}"', f'phase="{phase}"')
        if line.startswith("trainyard_jobs{") and all(label in line for label in labels):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_what_was_deleted_while_the_watch_was_away_is_noticed(
    operator_factory: Callable[..., OperatorProcess],
    jobs: Jobs,
    local_cluster: LocalCluster,
    namespace: str,
) -> None:
    # The operator is frozen across an API server restart while a job and another job's
    # worker are deleted and etcd's history is compacted: its watches cannot resume (410
    # Gone), kopf lists again, and no DELETED event ever reports either deletion.
    operator = operator_factory(TRAINYARD_RESYNC_SECONDS="3")
    jobs.create("stays", workers=2)
    jobs.create("goes", workers=2)
    jobs.wait_phase("stays", "Running")
    jobs.wait_phase("goes", "Running")
    assert operator.pid is not None
    os.kill(operator.pid, signal.SIGSTOP)
    try:
        # first the restart, so no DELETED event can wait in the frozen process's socket
        local_cluster.restart("kube-apiserver")
        jobs.delete("goes")
        jobs.core.delete_namespaced_pod("stays-worker-1", namespace, grace_period_seconds=0)
        wait_for(
            "the job, its pods and the worker to be gone",
            lambda: (
                jobs.get("goes") is None
                and not jobs.pods("goes")
                and "stays-worker-1" not in [p["metadata"]["name"] for p in jobs.pods("stays")]
            ),
            timeout=120,
        )
        local_cluster.compact_etcd()
    finally:
        os.kill(operator.pid, signal.SIGCONT)

    # The lost worker is noticed (the gang restarts) and the deleted job is forgotten.
    jobs.wait_event("stays", "GangRestart", timeout=120)
    wait_for(
        "stays running again, and the only running job the operator counts",
        lambda: (
            jobs.status("stays").get("phase") == "Running"
            and _jobs_in_phase(operator, namespace, "Running") == 1
        ),
        timeout=120,
    )
