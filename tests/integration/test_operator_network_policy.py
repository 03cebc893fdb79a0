"""The per-job NetworkPolicy (TRAINYARD_NETWORK_POLICY) against the local control plane: with
the switch on every job gets one, owned by the job and gone with it through the garbage
collector; with it off none is made; a refused one is reported in the job's status like a
refused Service. The operator runs under exactly the chart's rules (operator_fixtures), so
these tests also show that the rules allow it. Whether traffic is actually blocked is the
CNI's business (docs/operator.md); the local cluster has none, so that is not tested here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from integration.operator_fixtures import Jobs, condition, wait_for
from trainyard_local.operator_process import OperatorProcess
from trainyard_operator.api.constants import LABEL_JOB_NAME, METRICS_PORT

pytestmark = pytest.mark.integration

#: where the chart would run the operator; the local operator process is told through
#: POD_NAMESPACE, as the chart's Deployment does
OPERATOR_NAMESPACE = "trainyard-system"
QUOTA = "count/networkpolicies.networking.k8s.io"


def network_policy(jobs: Jobs, name: str) -> dict[str, Any] | None:
    """The NetworkPolicy of that name in the job's namespace, as stored; None if there is none."""
    networking = client.NetworkingV1Api(jobs.core.api_client)
    try:
        policy: dict[str, Any] = networking.api_client.sanitize_for_serialization(
            networking.read_namespaced_network_policy(name, jobs.namespace)
        )
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return policy


def forbid_network_policies(jobs: Jobs) -> None:
    """A ResourceQuota of no NetworkPolicies: the API server refuses each one (403)."""
    jobs.core.create_namespaced_resource_quota(
        jobs.namespace,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="no-policies"),
            spec=client.V1ResourceQuotaSpec(hard={QUOTA: "0"}),
        ),
    )
    # until the quota controller has counted usage, admission refuses with "status unknown
    # for quota" instead of the "exceeded quota" asserted below
    wait_for(
        "the quota to be counted",
        lambda: jobs.core.read_namespaced_resource_quota("no-policies", jobs.namespace).status.used,
    )


def test_with_the_switch_on_each_job_gets_a_policy_that_goes_with_it(
    operator_factory: Callable[..., OperatorProcess], jobs: Jobs
) -> None:
    operator_factory(TRAINYARD_NETWORK_POLICY="true", POD_NAMESPACE=OPERATOR_NAMESPACE)
    created = jobs.create("fenced", workers=2)
    jobs.wait_phase("fenced", "Running", timeout=120)

    policy = network_policy(jobs, "fenced")
    assert policy is not None
    (owner,) = policy["metadata"]["ownerReferences"]
    assert owner["kind"] == "TrainingJob"
    assert owner["uid"] == created["metadata"]["uid"]
    assert owner["controller"] is True
    spec = policy["spec"]
    job_pods = {"matchLabels": {LABEL_JOB_NAME: "fenced"}}
    assert spec["podSelector"] == job_pods
    assert spec["policyTypes"] == ["Ingress"]
    peers, metrics = spec["ingress"]
    assert peers == {"from": [{"podSelector": job_pods}]}  # every port, own workers only
    assert metrics["ports"] == [{"port": METRICS_PORT, "protocol": "TCP"}]
    monitoring, operator_pods = metrics["from"]
    assert monitoring == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    assert operator_pods["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": OPERATOR_NAMESPACE}
    }

    jobs.delete("fenced")
    wait_for(
        "the garbage collector to delete the NetworkPolicy",
        lambda: network_policy(jobs, "fenced") is None,
        timeout=120,
    )


def test_with_the_switch_off_no_policy_is_made(
    operator: OperatorProcess, jobs: Jobs, namespace: str
) -> None:
    jobs.create("open", workers=1)
    # the policy would be created before the workers: once they run, none is coming
    jobs.wait_phase("open", "Running", timeout=120)
    networking = client.NetworkingV1Api(jobs.core.api_client)
    assert networking.list_namespaced_network_policy(namespace).items == []


def test_a_refused_policy_is_reported_and_no_worker_runs_unfenced(
    operator_factory: Callable[..., OperatorProcess], jobs: Jobs
) -> None:
    operator_factory(TRAINYARD_NETWORK_POLICY="true", POD_NAMESPACE=OPERATOR_NAMESPACE)
    forbid_network_policies(jobs)
    jobs.create("unfenced", workers=2, runPolicy={"schedulingTimeoutSeconds": 600})

    def refused() -> dict[str, Any] | None:
        created = condition(jobs.status("unfenced"), "Created")
        return created if created and created["reason"] == "PodCreateFailed" else None

    created = wait_for("the refusal in the job's status", refused, timeout=120)
    assert isinstance(created, dict)
    assert "NetworkPolicy unfenced" in created["message"]
    assert "exceeded quota" in created["message"]
    assert jobs.pods("unfenced") == []

    jobs.core.delete_namespaced_resource_quota("no-policies", jobs.namespace)
    jobs.wait_phase("unfenced", "Running", timeout=120)
    assert network_policy(jobs, "unfenced") is not None
