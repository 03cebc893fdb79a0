"""spec.restartRequest: a restart of the whole gang on request (`kubectl trainyard restart`),
played through reconcile passes as in test_status_reconcile."""

from __future__ import annotations

from datetime import timedelta

from test_status_reconcile import T0, cond, make_job, pod, reasons, running_job, step

from trainyard_operator.api import TrainingJob
from trainyard_operator.status import implied_events, reconcile


def with_request(job: TrainingJob, value: str) -> TrainingJob:
    """The job after a user set spec.restartRequest (a spec change: a new generation)."""
    spec = job.spec.model_copy(update={"restart_request": value})
    return job.model_copy(update={"spec": spec, "generation": job.generation + 1})


def test_a_new_request_restarts_the_gang_once_without_spending_backoff_limit() -> None:
    job = running_job(runPolicy={"backoffLimit": 0})
    assert job.status.restart_request == ""
    job = with_request(job, "2026-01-01T12:05:00Z")
    plan = reconcile(job, [pod(0), pod(1)], T0 + timedelta(minutes=5))
    assert {ref.name for ref in plan.delete_pods} == {"j-worker-0", "j-worker-1"}
    assert plan.status.phase == "Restarting"
    assert (plan.status.restarts, plan.status.disruptions) == (1, 1)
    assert cond(plan, "Restarting") == ("True", "RestartRequested")
    (event,) = plan.events
    assert (event.type, event.reason) == ("Normal", "GangRestart")
    assert "spec.restartRequest changed to '2026-01-01T12:05:00Z'" in event.message
    assert "asked for, not counted against backoffLimit 0" in event.message
    assert plan.status.restart_request == "2026-01-01T12:05:00Z"

    # The old gang still terminating: it is not asked again, the next gang waits.
    job = step(job, plan)
    later = T0 + timedelta(minutes=5, seconds=1)
    plan = reconcile(job, [pod(0), pod(1)], later)
    assert plan.status.restarts == 1 and plan.create_workers == ()
    # Once it is gone the next attempt is created and runs; the request is done.
    job = step(job, plan)
    plan = reconcile(job, [], later)
    assert plan.create_workers == (0, 1) and plan.gang == 1
    job = step(job, plan)
    plan = reconcile(job, [pod(0, restart=1), pod(1, restart=1)], later)
    assert plan.status.phase == "Running" and plan.status.restarts == 1
    assert plan.delete_pods == ()


def test_a_value_present_at_creation_is_only_recorded() -> None:
    plan = reconcile(make_job(restartRequest="from-the-manifest"), [], T0)
    assert plan.create_workers == (0, 1) and plan.status.restarts == 0
    assert plan.status.restart_request == "from-the-manifest"


def test_a_job_from_before_the_field_records_its_value_without_restarting() -> None:
    job = running_job()
    old = job.status.model_copy(update={"restart_request": None})
    job = job.model_copy(update={"status": old})
    plan = reconcile(with_request(job, "x"), [pod(0), pod(1)], T0 + timedelta(minutes=1))
    assert plan.delete_pods == () and plan.status.restarts == 0
    assert plan.status.restart_request == "x"


def test_while_suspended_or_resuming_the_request_is_recorded_not_acted_on() -> None:
    job = running_job()
    suspended = job.model_copy(update={"spec": job.spec.model_copy(update={"suspend": True})})
    job = step(suspended, reconcile(suspended, [pod(0), pod(1)], T0 + timedelta(minutes=1)))
    assert job.status.phase == "Suspended"
    plan = reconcile(with_request(job, "r1"), [], T0 + timedelta(minutes=2))
    assert plan.status.phase == "Suspended" and plan.status.restarts == 0
    assert plan.status.restart_request == "r1"
    # Resumed and asked to restart in one change: the resume starts the new gang.
    job = with_request(step(job, plan), "r2")
    job = job.model_copy(update={"spec": job.spec.model_copy(update={"suspend": False})})
    plan = reconcile(job, [], T0 + timedelta(minutes=3))
    assert reasons(plan) == ["Resumed", "WorkersCreated"]
    assert plan.create_workers == (0, 1) and plan.status.restarts == 0


def test_a_finished_job_ignores_the_request_and_says_so() -> None:
    job = running_job()
    done = [
        pod(0, "Succeeded", exit_code=0, termination_message='{"accuracy": 0.9}'),
        pod(1, "Succeeded", exit_code=0),
    ]
    job = step(job, reconcile(job, done, T0 + timedelta(minutes=1)))
    assert job.status.phase == "Succeeded"
    plan = reconcile(with_request(job, "again"), done, T0 + timedelta(minutes=2))
    assert plan.status.phase == "Succeeded" and plan.create_workers == ()
    assert plan.delete_pods == () and plan.status.restarts == 0
    (event,) = plan.events
    assert (event.type, event.reason) == ("Warning", "RestartIgnored")
    assert "finished job is final" in event.message
    # each new value is its own event; the same value is not announced twice
    again = with_request(step(job, plan), "once more")
    second = reconcile(again, done, T0 + timedelta(minutes=3))
    assert second.events[0].key != event.key
    assert reconcile(step(again, second), done, T0 + timedelta(minutes=4)).events == ()


def test_a_lost_restart_event_is_posted_again_as_normal() -> None:
    job = with_request(running_job(), "r")
    plan = reconcile(job, [pod(0), pod(1)], T0 + timedelta(minutes=1))
    (implied,) = [
        e
        for e in implied_events(plan.status, T0 + timedelta(minutes=2), warn_checkpoints=False)
        if e.reason == "GangRestart"
    ]
    assert implied.type == "Normal" and implied.key == plan.events[0].key
