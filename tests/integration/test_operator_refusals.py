"""Workers (or their Service) the API server refuses to create (a ResourceQuota, Pod Security
admission): the job says why it has no pods, keeps trying while the cause may go away, and
fails with reason PodCreateFailed after schedulingTimeoutSeconds instead of sitting in
Pending."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from integration.operator_fixtures import Jobs, condition, wait_for
from trainyard_local.operator_process import OperatorProcess
from trainyard_operator.status.times import parse_time

pytestmark = pytest.mark.integration


def add_quota(jobs: Jobs, name: str, hard: dict[str, str]) -> None:
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name=name), spec=client.V1ResourceQuotaSpec(hard=hard)
    )
    jobs.core.create_namespaced_resource_quota(jobs.namespace, quota)
    # Until the quota controller has counted usage, admission refuses every object it covers.
    wait_for(
        "the quota to be counted",
        lambda: jobs.core.read_namespaced_resource_quota(name, jobs.namespace).status.used,
    )


def enforce_restricted(jobs: Jobs) -> None:
    """Pod Security's restricted profile on the test namespace (a hostNetwork pod is refused)."""
    jobs.core.patch_namespace(
        jobs.namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )


def wait_refused(jobs: Jobs, name: str) -> dict[str, Any]:
    """The job's Created condition once it says PodCreateFailed."""

    def refused() -> dict[str, Any] | None:
        created = condition(jobs.status(name), "Created")
        return created if created and created["reason"] == "PodCreateFailed" else None

    found: dict[str, Any] = wait_for(f"the refusal in {name}'s status", refused, 60)
    return found


def test_a_quota_that_refuses_a_worker_is_reported_and_the_job_runs_once_it_is_raised(
    operator: OperatorProcess, jobs: Jobs
) -> None:
    add_quota(jobs, "one-pod", {"pods": "1"})
    jobs.create("squeezed", workers=2, runPolicy={"schedulingTimeoutSeconds": 600})
    created = wait_refused(jobs, "squeezed")
    assert created["status"] == "False"
    # The two creations race for the one slot; the loser is named.
    assert "refused to create worker 0:" in created["message"] or (
        "refused to create worker 1:" in created["message"]
    )
    assert "exceeded quota" in created["message"]
    running = condition(jobs.status("squeezed"), "Running")
    assert running is not None and running["reason"] == "PodCreateFailed"
    assert jobs.status("squeezed")["phase"] == "Pending"
    kind, _, message = jobs.wait_event("squeezed", "PodCreateFailed")
    assert kind == "Warning" and "exceeded quota" in message
    assert len(jobs.pods("squeezed")) == 1

    jobs.core.delete_namespaced_resource_quota("one-pod", jobs.namespace)
    # The operator retries with a backoff of at most a minute.
    status = jobs.wait_phase("squeezed", "Running", timeout=120)
    created = condition(status, "Created")
    assert created is not None and created["status"] == "True"
    assert len(jobs.pods("squeezed")) == 2
    assert jobs.reasons("squeezed").count("PodCreateFailed") == 1


def test_a_refused_service_is_reported_too_and_the_job_starts_once_allowed(
    operator: OperatorProcess, jobs: Jobs
) -> None:
    add_quota(jobs, "no-services", {"services": "0"})
    jobs.create("serviceless", workers=2, runPolicy={"schedulingTimeoutSeconds": 600})
    created = wait_refused(jobs, "serviceless")
    assert "headless Service serviceless" in created["message"]
    assert "exceeded quota" in created["message"]
    assert jobs.pods("serviceless") == []  # workers wait for their Service (DNS of worker 0)

    jobs.core.delete_namespaced_resource_quota("no-services", jobs.namespace)
    jobs.wait_phase("serviceless", "Running", timeout=120)
    assert len(jobs.pods("serviceless")) == 2


def test_pods_refused_by_pod_security_fail_the_job_after_the_scheduling_timeout(
    operator: OperatorProcess, jobs: Jobs
) -> None:
    enforce_restricted(jobs)
    jobs.create(
        "on-host",
        workers=2,
        podTemplate={"spec": {"hostNetwork": True}},
        runPolicy={"schedulingTimeoutSeconds": 3},
    )
    status = jobs.wait_phase("on-host", "Failed", timeout=90)
    failed = condition(status, "Failed")
    assert failed is not None and failed["reason"] == "PodCreateFailed"
    assert "PodSecurity" in failed["message"] and "hostNetwork" in failed["message"]
    assert jobs.pods("on-host") == []
    jobs.wait_event("on-host", "PodCreateFailed")


def test_a_restarted_operator_keeps_counting_from_the_first_refusal(
    operator_factory: Callable[[], OperatorProcess], jobs: Jobs
) -> None:
    enforce_restricted(jobs)
    first = operator_factory()
    timeout = 30
    jobs.create(
        "remembered",
        workers=2,
        podTemplate={"spec": {"hostNetwork": True}},
        runPolicy={"schedulingTimeoutSeconds": timeout},
    )
    refused_at = parse_time(wait_refused(jobs, "remembered")["lastTransitionTime"])
    first.kill()
    # The whole timeout runs out while no operator runs: a restarted operator that counts from
    # the refusal in the status fails the job on its first pass; one that counts from its own
    # first try would wait a whole timeout more. (The wait is the feature under test.)
    time.sleep(
        max(0.0, (refused_at + timedelta(seconds=timeout) - datetime.now(UTC)).total_seconds())
    )
    restarted_at = datetime.now(UTC)
    operator_factory()

    status = jobs.wait_phase("remembered", "Failed", timeout=90)
    failed = condition(status, "Failed")
    assert failed is not None and failed["reason"] == "PodCreateFailed"
    failed_at = parse_time(failed["lastTransitionTime"])
    # Counted from the refusal the status recorded, not from the restarted operator's first
    # try (which would fail the job no earlier than restarted_at + timeout).
    assert failed_at >= refused_at + timedelta(seconds=timeout)
    assert failed_at < restarted_at + timedelta(seconds=timeout)
    # One event for the refusal and one for the failure: the retry after the restart did not
    # take the refusal for a new one (and the refusal's event, lost if the kill came between
    # its status write and its post, was posted by the restarted operator). Events follow
    # the status write, so they are waited for.
    wait_for(
        "the refusal's and the failure's events",
        lambda: jobs.reasons("remembered").count("PodCreateFailed") >= 2,
    )
    assert jobs.reasons("remembered").count("PodCreateFailed") == 2
