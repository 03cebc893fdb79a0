"""What the operator asks of the API server, and what an idle job costs it: its own rate
limit holds a burst of requests back (TRAINYARD_API_QPS / _BURST); a gang coming up costs one
status write, not one per pod (TRAINYARD_STATUS_COALESCE_SECONDS), while a count that stops
moving is still written; a job with nothing to do keeps no worker (it is parked) and comes
back as it was when it changes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from integration.operator_fixtures import Jobs, wait_for
from trainyard_local.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

WAITING = "fake.trainyard.dev/waiting-reason"


def metric(operator: OperatorProcess, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(operator.metrics_text()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_the_rate_limit_holds_a_burst_back(
    operator_factory: Callable[..., OperatorProcess], jobs: Jobs
) -> None:
    # one request per second, none saved up: the 4 pod creations, the Service, the status
    # write and the events of one job queue in the operator for several seconds
    operator = operator_factory(TRAINYARD_API_QPS="1", TRAINYARD_API_BURST="1")
    jobs.create("limited", workers=4)
    jobs.wait_pods("limited", 4, timeout=120)
    jobs.wait_phase("limited", "Running", timeout=120)
    waited = metric(operator, "trainyard_api_throttled_seconds_total")
    assert waited >= 3.0, f"requests waited {waited:.2f} s for the rate limit"


def test_a_gang_coming_up_costs_one_status_write_per_phase(
    operator_factory: Callable[..., OperatorProcess], jobs: Jobs
) -> None:
    # a window longer than the gang takes to come up: its counts ride on the phase writes
    operator = operator_factory(TRAINYARD_STATUS_COALESCE_SECONDS="60")
    jobs.create("gang", workers=4)
    status = jobs.wait_phase("gang", "Running", timeout=120)
    assert status["workers"]["ready"] == 4
    # one write when the workers are created (Pending), one when all run
    assert metric(operator, "trainyard_api_requests_total", verb="patch") == 2


def test_counts_that_stop_moving_are_written_after_the_window(
    operator_factory: Callable[..., OperatorProcess], jobs: Jobs
) -> None:
    operator_factory(TRAINYARD_STATUS_COALESCE_SECONDS="1")
    # the pods never start: only the worker counts change after the first write
    jobs.create("stuck", workers=3, pod_annotations={WAITING: "ImagePullBackOff"})
    wait_for(
        "3 active workers in the status",
        lambda: (jobs.status("stuck").get("workers") or {}).get("active") == 3,
        timeout=60,
    )
    assert jobs.status("stuck")["phase"] == "Pending"


def test_a_parked_job_resumes(operator_factory: Callable[..., OperatorProcess], jobs: Jobs) -> None:
    operator = operator_factory()
    jobs.create("quiet", workers=2, suspend=True)
    jobs.wait_phase("quiet", "Suspended")
    jobs.wait_event("quiet", "Suspended")
    passes = "trainyard_reconcile_duration_seconds_count"
    # parked: no reconcile pass happens any more
    seen: list[float] = []

    def settled() -> bool:
        seen.append(metric(operator, passes))
        return len(seen) > 3 and seen[-1] == seen[-4]

    wait_for("the suspended job's worker to go quiet", settled, timeout=60, interval=0.5)
    jobs.patch_spec("quiet", {"suspend": False})
    jobs.wait_pods("quiet", 2, timeout=120)
    jobs.wait_phase("quiet", "Running", timeout=120)
    # the worker brought back did not post again what the parked one had posted
    assert jobs.reasons("quiet").count("Suspended") == 1
