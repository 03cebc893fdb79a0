"""Which status changes may wait for the next (TRAINYARD_STATUS_COALESCE_SECONDS): only moves
of the worker counts; anything a user or controller acts on is written at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from trainyard_operator.api import TrainingJob, TrainingJobStatus
from trainyard_operator.status import reconcile
from trainyard_operator.status.writes import counts_only


def status(**changes: object) -> TrainingJobStatus:
    base: dict[str, object] = {
        "phase": "Pending",
        "observedGeneration": 1,
        "workers": {"desired": 4, "active": 4, "ready": 1},
        "conditions": [
            {
                "type": "Running",
                "status": "False",
                "reason": "WorkersPending",
                "message": "1 of 4 running",
                "lastTransitionTime": "2026-12-01T00:00:00Z",
            }
        ],
    }
    base.update(changes)
    return TrainingJobStatus.model_validate(base)


def running_condition(status_: str, reason: str, message: str) -> list[dict[str, str]]:
    return [
        {
            "type": "Running",
            "status": status_,
            "reason": reason,
            "message": message,
            "lastTransitionTime": "2026-12-01T00:00:00Z",
        }
    ]


def test_moving_counts_and_their_message_may_wait() -> None:
    later = status(
        workers={"desired": 4, "active": 4, "ready": 3},
        conditions=running_condition("False", "WorkersPending", "3 of 4 running"),
    )
    assert counts_only(status(), later)


def test_a_phase_a_condition_or_progress_is_written_at_once() -> None:
    assert not counts_only(status(), status(phase="Running"))
    assert not counts_only(
        status(), status(conditions=running_condition("True", "AllWorkersRunning", "4 of 4"))
    )
    assert not counts_only(
        status(), status(conditions=running_condition("False", "PodCreateFailed", "quota"))
    )
    assert not counts_only(status(), status(restarts=1))
    assert not counts_only(status(), status(observedGeneration=2))
    assert not counts_only(status(), status(progress={"epoch": 1, "totalEpochs": 3}))


def test_a_suspended_job_as_stored_needs_no_second_write() -> None:
    # The Workers column ("ready/desired") of a suspended job reads 0/0, and reconciling it
    # again from what was stored plans the same status: no write per pass.
    body: dict[str, object] = {
        "apiVersion": "trainyard.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "s", "namespace": "n", "uid": "u", "generation": 1},
        "spec": {"workers": 4, "suspend": True},
    }
    now = datetime(2026, 12, 1, tzinfo=UTC)
    first = reconcile(TrainingJob.from_object(body), [], now).status
    assert first.workers.summary == "0/0"
    stored = TrainingJob.from_object({**body, "status": first.to_wire()})
    again = reconcile(stored, [], now + timedelta(seconds=5)).status
    assert again.to_wire() == stored.status.to_wire()
