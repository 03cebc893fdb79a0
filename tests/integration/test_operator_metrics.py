"""The operator's /metrics page reports what happened: jobs created, succeeded, failed with a
reason, gang restarts, jobs by phase, time to running and API requests by verb."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from integration.operator_fixtures import Jobs, wait_for
from trainyard_local.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

EXIT = "fake.trainyard.dev/exit-code"


def samples(operator: OperatorProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(operator.metrics_text()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def value(operator: OperatorProcess, name: str, **labels: str) -> float:
    return samples(operator).get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_match_what_the_jobs_did(
    operator: OperatorProcess, jobs: Jobs, namespace: str
) -> None:
    ns = namespace
    jobs.create("good", workers=2)
    jobs.create("bad", workers=2, runPolicy={"backoffLimit": 1})
    jobs.create("idle", workers=1, suspend=True)
    jobs.wait_phase("good", "Running")
    jobs.wait_phase("bad", "Running")
    jobs.wait_phase("idle", "Suspended")
    # The operator counts right after its status write; give its metrics a moment to follow.
    # Each job's worker moves it in the phase gauge after counting it, so waiting for the
    # gauge to hold all three jobs (not only the two Running ones) means every count is in.
    wait_for(
        "two jobs Running and one Suspended in the phase gauge",
        lambda: (
            value(operator, "trainyard_jobs", namespace=ns, phase="Running") == 2
            and value(operator, "trainyard_jobs", namespace=ns, phase="Suspended") == 1
        ),
    )
    assert value(operator, "trainyard_job_time_to_running_seconds_count") == 2
    assert value(operator, "trainyard_jobs", namespace=ns, phase="Suspended") == 1

    for i in range(2):
        jobs.annotate_pod(f"good-worker-{i}", {EXIT: "0"})
    jobs.annotate_pod("bad-worker-0", {EXIT: "137"})
    jobs.wait_pods("bad", 2, restart=1)
    jobs.annotate_pod("bad-worker-1", {EXIT: "137"})
    jobs.wait_phase("good", "Succeeded")
    jobs.wait_phase("bad", "Failed")

    def settled() -> bool:
        # Both jobs' workers count and move the gauge on their own: waiting for the Failed one
        # alone could read good's success counter before its worker got to it.
        return (
            value(operator, "trainyard_jobs", namespace=ns, phase="Failed") == 1
            and value(operator, "trainyard_jobs", namespace=ns, phase="Succeeded") == 1
        )

    wait_for("the phase gauge to follow", settled)
    assert value(operator, "trainyard_jobs_created_total", namespace=ns) == 3
    assert value(operator, "trainyard_jobs_succeeded_total", namespace=ns) == 1
    assert (
        value(operator, "trainyard_jobs_failed_total", namespace=ns, reason="BackoffLimitExceeded")
        == 1
    )
    assert (
        value(operator, "trainyard_jobs_restarted_total", namespace=ns, reason="WorkerFailed") == 1
    )
    assert value(operator, "trainyard_jobs", namespace=ns, phase="Succeeded") == 1
    assert value(operator, "trainyard_jobs", namespace=ns, phase="Running") == 0
    # 2 + 2 + 2 (bad's second gang) pods, 2 Services (the suspended job has none yet) and events.
    assert value(operator, "trainyard_api_requests_total", verb="create") >= 8
    assert value(operator, "trainyard_api_requests_total", verb="patch") >= 6
    assert value(operator, "trainyard_reconcile_duration_seconds_count") > 0

    jobs.delete("good")
    wait_for(
        "a deleted job to leave the phase gauge",
        lambda: value(operator, "trainyard_jobs", namespace=ns, phase="Succeeded") == 0,
    )
