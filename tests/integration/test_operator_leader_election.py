"""Two operator replicas with leader election, as the chart runs them with replicas: 2: one
acts, the other stands by without touching the cluster, takes over when the leader is
killed, and a leader that stops cleanly hands the Lease over at once.

Both replicas run under the chart's rules (operator-rules.yaml plus
leader-election-rules.yaml); the Lease lives in the test's namespace. Lease timings are
shortened through the operator's own settings so a takeover does not take 15 s; nothing
below asserts a duration.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from integration.operator_fixtures import Jobs, wait_for, wait_until_authorized
from trainyard_local.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/helm/trainyard/files/leader-election-rules.yaml"
LEASE = "trainyard-operator"


@pytest.fixture
def lease_rules(api_client: client.ApiClient, namespace: str) -> Iterator[None]:
    rbac = client.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(
        namespace,
        {"metadata": {"name": "leader-election"}, "rules": yaml.safe_load(RULES.read_text())},
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "leader-election"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "leader-election",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "trainyard-operator", "namespace": namespace}
            ],
        },
    )
    wait_until_authorized(
        api_client, namespace, verb="update", group="coordination.k8s.io", resource="leases"
    )
    yield


def _elected(
    factory: Callable[..., OperatorProcess], namespace: str, identity: str
) -> OperatorProcess:
    return factory(
        TRAINYARD_LEADER_ELECTION="true",
        TRAINYARD_LEADER_ELECTION_NAMESPACE=namespace,
        TRAINYARD_LEADER_ELECTION_IDENTITY=identity,
        TRAINYARD_LEASE_DURATION_SECONDS="6",
        TRAINYARD_LEASE_RENEW_DEADLINE_SECONDS="4",
        TRAINYARD_LEASE_RETRY_SECONDS="1",
    )


def _holder(api_client: client.ApiClient, namespace: str) -> tuple[str | None, int]:
    try:
        lease = client.CoordinationV1Api(api_client).read_namespaced_lease(LEASE, namespace)
    except ApiException as err:
        if err.status == 404:
            return None, 0
        raise
    return lease.spec.holder_identity or None, int(lease.spec.lease_transitions or 0)


def _sample(process: OperatorProcess, pattern: str) -> float:
    """Sum of the operator's metric samples whose line matches `pattern`."""
    total = 0.0
    for line in process.metrics_text().splitlines():
        if not line.startswith("#") and re.match(pattern, line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_one_replica_acts_and_the_standby_takes_over_when_it_is_killed(
    operator_factory: Callable[..., OperatorProcess],
    lease_rules: None,
    api_client: client.ApiClient,
    namespace: str,
    jobs: Jobs,
) -> None:
    first = _elected(operator_factory, namespace, "replica-a")
    wait_for(
        "replica-a to hold the lease", lambda: _holder(api_client, namespace)[0] == "replica-a"
    )
    second = _elected(operator_factory, namespace, "replica-b")  # live: its /healthz answers

    jobs.create("under-a", workers=2)
    jobs.wait_phase("under-a", "Running")
    assert _sample(first, r"trainyard_operator_leader ") == 1
    assert _sample(second, r"trainyard_operator_leader ") == 0
    # the standby made no API request of its own: it neither created nor wrote anything
    assert _sample(first, r"trainyard_api_requests_total") > 0
    assert _sample(second, r"trainyard_api_requests_total") == 0
    _, transitions = _holder(api_client, namespace)

    first.kill()
    jobs.create("under-b", workers=2)
    jobs.wait_phase("under-b", "Running", timeout=120)
    holder, after = _holder(api_client, namespace)
    assert holder == "replica-b" and after == transitions + 1
    assert _sample(second, r"trainyard_operator_leader ") == 1

    # a clean stop gives the Lease up, so the next replica need not wait for it to expire
    second.stop()
    assert _holder(api_client, namespace)[0] is None
