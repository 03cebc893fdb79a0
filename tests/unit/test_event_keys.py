"""Events survive an operator killed between a status write and the event post.

Property: whatever a reconcile pass plans to post, the status it writes implies the same
events under the same keys (so a restarted operator that posts `implied_events` of the stored
status recreates exactly the lost ones, and the API server refuses the ones already posted).
When the pass ends the job, only the final event is implied: it is the one a user needs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainyard_operator.api import TrainingJobStatus
from trainyard_operator.api.spec import MAX_DURATION_SECONDS
from trainyard_operator.status import (
    TERMINAL_PHASES,
    checkpoints_lost_on_restart,
    implied_events,
    reconcile,
)
from trainyard_operator.status.events import IMPLIED_WINDOW, event_key
from unit.test_reconcile_properties import T0, job_of, pods, specs, statuses


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=specs,
    status=st.none() | statuses(),
    data=st.data(),
    later=st.integers(min_value=0, max_value=2 * MAX_DURATION_SECONDS),
)
def test_the_written_status_implies_every_planned_event(
    spec: dict[str, Any], status: dict[str, Any] | None, data: st.DataObject, later: int
) -> None:
    job = job_of(spec, status)
    now = T0 + timedelta(seconds=later)
    plan = reconcile(job, data.draw(pods(spec["workers"])), now)
    implied = implied_events(plan.status, now, warn_checkpoints=checkpoints_lost_on_restart(job))
    implied_keys = {e.key for e in implied}
    planned = {e.key: e for e in plan.events}
    assert all(planned), "every planned event is keyed"
    if plan.status.phase in TERMINAL_PHASES and planned:
        final = [
            k for k in planned if k.endswith(f"/{plan.status.phase}@{plan.status.completion_time}")
        ]
        assert final and set(final) <= implied_keys
    else:
        assert set(planned) <= implied_keys, (plan.status.phase, planned, implied_keys)
    for event in implied:
        if event.key in planned:
            assert event.reason == planned[event.key].reason


def _running_status(restarts: int, since: datetime) -> TrainingJobStatus:
    stamp = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    return TrainingJobStatus.model_validate(
        {
            "phase": "Restarting",
            "restarts": restarts,
            "conditions": [
                {
                    "type": "Restarting",
                    "status": "True",
                    "reason": "WorkerFailed",
                    "message": "worker 1 failed with exit code 137; restarting the gang",
                    "lastTransitionTime": stamp,
                }
            ],
        }
    )


def test_each_gang_restart_is_its_own_occurrence() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    first, second = (event_key("GangRestart", "", _running_status(n, now)) for n in (1, 2))
    assert first != second
    assert event_key("GangRestart", "", _running_status(2, now)) == second


def test_a_restart_long_after_the_last_transition_reposts_nothing() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    status = _running_status(2, now)
    assert [e.reason for e in implied_events(status, now, warn_checkpoints=False)] == [
        "GangRestart"
    ]
    later = now + IMPLIED_WINDOW + timedelta(seconds=1)
    assert implied_events(status, later, warn_checkpoints=False) == ()


def test_after_a_gang_restart_the_old_gangs_event_does_not_take_the_new_gangs_key() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def status(restarts: int, attempt: int, restarting: bool) -> TrainingJobStatus:
        conditions = [
            {
                "type": "Created",
                "status": "True",
                "reason": "WorkersCreated",
                "message": f"creating 2 worker pods (attempt {attempt})",
                "lastTransitionTime": stamp,
            }
        ]
        if restarting:
            conditions.append(
                {
                    "type": "Restarting",
                    "status": "True",
                    "reason": "WorkerFailed",
                    "message": "worker 1 failed; restarting the gang",
                    "lastTransitionTime": stamp,
                }
            )
        return TrainingJobStatus.model_validate(
            {"phase": "Restarting", "restarts": restarts, "conditions": conditions}
        )

    first_gang = event_key(
        "WorkersCreated", "creating 2 worker pods (attempt 0)", status(0, 0, False)
    )
    # killed right after the restart's status write: the Created condition still tells of
    # attempt 0, and what the restarted operator derives from it is that same occurrence
    implied = implied_events(status(1, 0, True), now, warn_checkpoints=False)
    (created,) = [e for e in implied if e.reason == "WorkersCreated"]
    assert created.key == first_gang
    second_gang = event_key(
        "WorkersCreated", "creating 2 worker pods (attempt 1)", status(1, 1, True)
    )
    assert second_gang != first_gang
