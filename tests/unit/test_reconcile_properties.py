"""Property: for every spec the API server admits and any set of pods it may hold, the pure
reconcile returns a plan and never raises (an exception there stalls a job for good: kopf
retries the same failing pass). Specs are drawn within the CRD's own bounds, pods in every
phase, exit code, waiting reason and gang attempt, times up to the bounds' reach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainyard_operator.api import TrainingJob, TrainingJobStatus
from trainyard_operator.api.spec import MAX_DURATION_SECONDS
from trainyard_operator.status import PodView, reconcile

T0 = datetime(2026, 1, 1, tzinfo=UTC)
durations = st.integers(min_value=1, max_value=MAX_DURATION_SECONDS)

specs = st.fixed_dictionaries(
    {
        "workers": st.integers(min_value=1, max_value=8),
        "suspend": st.booleans(),
        "runPolicy": st.fixed_dictionaries(
            {
                "restartPolicy": st.sampled_from(["Never", "OnFailure", "ExitCode"]),
                "backoffLimit": st.integers(min_value=0, max_value=1000),
                "cleanPodPolicy": st.sampled_from(["All", "Running", "None"]),
                "schedulingTimeoutSeconds": durations,
            },
            optional={
                "activeDeadlineSeconds": durations,
                "ttlSecondsAfterFinished": st.integers(min_value=0, max_value=MAX_DURATION_SECONDS),
                "progressDeadlineSeconds": durations,
            },
        ),
    }
)


@st.composite
def pods(draw: st.DrawFn, workers: int) -> list[PodView]:
    views = []
    for index in draw(st.lists(st.integers(0, workers + 1), max_size=workers + 2, unique=True)):
        phase = draw(st.sampled_from(["Pending", "Running", "Succeeded", "Failed", "Unknown"]))
        views.append(
            PodView(
                name=f"j-worker-{index}",
                uid=f"u-{index}",
                job="j",
                index=index,
                restart=draw(st.integers(0, 3)),
                phase=phase,
                ready=phase == "Running",
                created=T0 + timedelta(seconds=draw(st.integers(0, 3600))),
                deletion_due=draw(st.none() | st.just(T0 + timedelta(seconds=30))),
                exit_code=draw(st.none() | st.integers(0, 255)),
                termination_message=draw(st.sampled_from(["", '{"accuracy": 0.9}', "Traceback"])),
                waiting_reason=draw(st.sampled_from(["", "ImagePullBackOff", "CrashLoopBackOff"])),
                unschedulable=draw(st.none() | st.just("0/3 nodes are available")),
                disruption=draw(st.none() | st.just("EvictionByEvictionAPI")),
            )
        )
    return views


@st.composite
def statuses(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "phase": draw(st.sampled_from(["Pending", "Running", "Restarting", "Succeeded", "Failed"])),
        "restarts": draw(st.integers(0, 1000)),
        "startTime": (T0 + timedelta(seconds=draw(st.integers(0, 60)))).isoformat(),
    }


def job_of(spec: dict[str, Any], status: dict[str, Any] | None) -> TrainingJob:
    """The admitted job with that spec and (stored) status."""
    body = {"metadata": {"name": "j", "namespace": "ns", "uid": "u", "generation": 1}, "spec": spec}
    job = TrainingJob.from_object(body)
    if status is not None:
        job = job.model_copy(update={"status": TrainingJobStatus.model_validate(status)})
    return job


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=specs,
    status=st.none() | statuses(),
    data=st.data(),
    later=st.integers(min_value=0, max_value=2 * MAX_DURATION_SECONDS),
)
def test_reconcile_returns_a_plan_for_every_admitted_spec(
    spec: dict[str, Any], status: dict[str, Any] | None, data: st.DataObject, later: int
) -> None:
    job = job_of(spec, status)
    views = data.draw(pods(spec["workers"]))
    plan = reconcile(job, views, T0 + timedelta(seconds=later))
    assert plan.status.phase in {
        "Pending",
        "Running",
        "Compressing",
        "Restarting",
        "Suspended",
        "Succeeded",
        "Failed",
    }
