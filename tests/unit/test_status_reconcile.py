"""The run policies of `trainyard_operator.status.reconcile`, driven with plain values.

Each test plays one situation a user meets (a worker killed, a deadline, a suspend, a pod that
cannot be scheduled) through one or more reconcile passes, feeding each pass the status the
previous one wrote, and checks what the user would see: phase, conditions, events, restarts,
and which pods the operator creates or deletes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from trainyard_operator.api import Progress, TrainingJob, TrainingJobStatus
from trainyard_operator.status import CreateFailure, Plan, PodView, reconcile
from trainyard_operator.status.conditions import get_condition

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def make_job(status: TrainingJobStatus | None = None, **spec: Any) -> TrainingJob:
    body: dict[str, Any] = {
        "metadata": {"name": "j", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": {"workers": 2, **spec},
    }
    job = TrainingJob.from_object(body)
    return job.model_copy(update={"status": status}) if status else job


def pod(index: int, phase: str = "Running", restart: int = 0, **kw: Any) -> PodView:
    return PodView(
        name=f"j-worker-{index}",
        uid=f"uid-{restart}-{index}",
        job="j",
        index=index,
        restart=restart,
        phase=phase,
        ready=phase == "Running",
        created=kw.pop("created", T0),
        **kw,
    )


def step(job: TrainingJob, plan: Plan) -> TrainingJob:
    """The job as the API server holds it after the operator wrote plan.status."""
    return job.model_copy(update={"status": plan.status})


def reasons(plan: Plan) -> list[str]:
    return [e.reason for e in plan.events]


def cond(plan: Plan, kind: str) -> tuple[str, str] | None:
    c = get_condition(plan.status.conditions, kind)
    return (c.status, c.reason) if c else None


def running_job(**spec: Any) -> TrainingJob:
    """A job whose first gang has been created and reported Running."""
    job = make_job(**spec)
    plan = reconcile(job, [], T0)
    job = step(job, plan)
    plan = reconcile(job, [pod(0), pod(1)], T0 + timedelta(seconds=1))
    assert plan.status.phase == "Running"
    return step(job, plan)


def test_new_job_creates_every_worker_and_the_service() -> None:
    plan = reconcile(make_job(), [], T0)
    assert plan.create_workers == (0, 1)
    assert plan.gang == 0
    assert plan.ensure_children
    assert plan.status.phase == "Pending"
    assert plan.status.start_time == "2026-01-01T12:00:00Z"
    assert cond(plan, "Created") == ("True", "WorkersCreated")
    assert cond(plan, "Running") == ("False", "WorkersPending")
    # the defaults retry failed gangs but keep checkpoints on an emptyDir: say so, once
    assert reasons(plan) == ["WorkersCreated", "CheckpointsNotPersistent"]
    assert "spec.output.volumeClaimName" in plan.events[1].message
    assert plan.status.observed_generation == 1


def test_no_checkpoint_note_when_a_restart_would_resume_or_never_happens() -> None:
    for spec in (
        {"output": {"volumeClaimName": "ckpt"}},
        {"runPolicy": {"restartPolicy": "Never"}},
        {"runPolicy": {"backoffLimit": 0}},
        {"command": ["python", "train.py"]},  # a program of the user's: its storage is its own
    ):
        assert reasons(reconcile(make_job(**spec), [], T0)) == ["WorkersCreated"], spec


def test_only_missing_workers_are_created() -> None:
    job = step(make_job(), reconcile(make_job(), [], T0))
    plan = reconcile(job, [pod(0, "Pending")], T0)
    assert plan.create_workers == (1,)
    assert reasons(plan) == []


def test_all_running_makes_the_job_running_and_keeps_transition_times() -> None:
    job = running_job()
    assert job.status.workers.ready == 2
    running = get_condition(job.status.conditions, "Running")
    assert running is not None and running.status == "True"
    again = reconcile(job, [pod(0), pod(1)], T0 + timedelta(minutes=5))
    same = get_condition(again.status.conditions, "Running")
    assert same is not None and same.last_transition_time == running.last_transition_time
    assert again.create_workers == () and again.delete_pods == () and again.events == ()


def test_compression_stage_shows_as_phase_compressing() -> None:
    job = running_job()
    plan = reconcile(job, [pod(0), pod(1)], T0, progress=Progress(stage="prune", percent=80))
    assert plan.status.phase == "Compressing"
    assert plan.status.progress is not None and plan.status.progress.percent == 80


def test_all_exit_zero_succeeds_with_results_from_worker_zero() -> None:
    job = running_job()
    message = '{"accuracy": 0.97, "parameters": 10, "modelBytes": 40, "extra": 1,'
    message += ' "stages": [{"name": "train", "accuracy": 0.97, "future": 2}]}'
    pods = [pod(0, "Succeeded", exit_code=0, termination_message=message), pod(1, "Succeeded")]
    plan = reconcile(job, pods, T0 + timedelta(seconds=30))
    assert plan.status.phase == "Succeeded"
    assert plan.status.completion_time == "2026-01-01T12:00:30Z"
    assert plan.status.results is not None
    assert plan.status.results.accuracy == 0.97
    assert plan.status.results.stages[0].name == "train"
    assert plan.status.progress is not None and plan.status.progress.percent == 100
    assert cond(plan, "Succeeded") == ("True", "Succeeded")
    assert cond(plan, "Running") == ("False", "Succeeded")
    assert reasons(plan) == ["Succeeded"]
    # Finished pods are kept under the default cleanPodPolicy Running.
    assert plan.delete_pods == ()


def test_success_replaces_a_stale_progress_reading_with_the_final_results() -> None:
    # A short run can finish between two scrapes: the last reading said epoch 1 of 10.
    stale = Progress(stage="train", epoch=1, total_epochs=10, percent=8, accuracy=0.88)
    job = running_job()
    job = step(job, reconcile(job, [pod(0), pod(1)], T0, progress=stale))
    message = '{"accuracy": 0.97, "stages": [{"name": "train", "accuracy": 0.97}]}'
    pods = [pod(0, "Succeeded", exit_code=0, termination_message=message), pod(1, "Succeeded")]
    progress = reconcile(job, pods, T0 + timedelta(seconds=30)).status.progress
    assert progress is not None
    assert (progress.stage, progress.percent, progress.eta_seconds) == ("done", 100, 0)
    assert progress.epoch == progress.total_epochs == 10
    assert progress.accuracy == 0.97


def test_a_success_never_recreates_pods_even_when_they_are_gone() -> None:
    job = running_job()
    done = step(job, reconcile(job, [pod(0, "Succeeded"), pod(1, "Succeeded")], T0))
    plan = reconcile(done, [], T0 + timedelta(hours=1))
    assert plan.status.phase == "Succeeded"
    assert plan.create_workers == () and plan.events == ()


def test_on_failure_restarts_the_whole_gang_then_creates_the_next_one() -> None:
    job = running_job()
    pods = [pod(0), pod(1, "Failed", exit_code=137)]
    plan = reconcile(job, pods, T0 + timedelta(seconds=10))
    assert plan.status.restarts == 1
    assert plan.status.phase == "Restarting"
    assert cond(plan, "Restarting") == ("True", "WorkerFailed")
    assert reasons(plan) == ["GangRestart"]
    assert "exit code 137" in plan.events[0].message
    assert {p.name for p in plan.delete_pods} == {"j-worker-0", "j-worker-1"}
    assert plan.create_workers == ()
    job = step(job, plan)
    # While an old pod remains, nothing new is created (ranks of two attempts never meet).
    old_going = [pod(0, deletion_due=T0)]
    plan = reconcile(job, old_going, T0 + timedelta(seconds=11))
    assert plan.create_workers == ()
    assert plan.status.phase == "Restarting"
    job = step(job, plan)
    plan = reconcile(job, [], T0 + timedelta(seconds=12))
    assert plan.create_workers == (0, 1) and plan.gang == 1
    job = step(job, plan)
    plan = reconcile(job, [pod(0, restart=1), pod(1, restart=1)], T0 + timedelta(seconds=13))
    assert plan.status.phase == "Running"
    assert cond(plan, "Restarting") == ("False", "AllWorkersRunning")
    assert plan.status.restarts == 1


def test_past_backoff_limit_the_job_fails_and_running_workers_are_stopped() -> None:
    job = running_job(runPolicy={"backoffLimit": 0})
    pods = [pod(0), pod(1, "Failed", exit_code=137)]
    plan = reconcile(job, pods, T0 + timedelta(seconds=10))
    assert plan.status.phase == "Failed"
    assert cond(plan, "Failed") == ("True", "BackoffLimitExceeded")
    assert reasons(plan) == ["BackoffLimitExceeded"]
    assert plan.status.restarts == 0
    # cleanPodPolicy Running: the still-running worker 0 is stopped, the failed one kept.
    assert [p.name for p in plan.delete_pods] == ["j-worker-0"]


def test_restart_policy_never_fails_at_once() -> None:
    job = running_job(runPolicy={"restartPolicy": "Never"})
    plan = reconcile(job, [pod(0), pod(1, "Failed", exit_code=137)], T0)
    assert plan.status.phase == "Failed"
    assert cond(plan, "Failed") == ("True", "WorkerFailed")


def test_a_crashed_workers_last_log_lines_end_up_in_the_message() -> None:
    # FallbackToLogsOnError: the termination message is the log's tail, a traceback
    traceback = "\n".join(
        ["Traceback (most recent call last):"]
        + [f'  File "/app/train.py", line {n}, in step' for n in range(40)]
        + ["RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", ""]
    )
    job = running_job(runPolicy={"restartPolicy": "Never"})
    failed = pod(1, "Failed", exit_code=1, termination_message=traceback)
    plan = reconcile(job, [pod(0), failed], T0)
    message = get_condition(plan.status.conditions, "Failed").message  # type: ignore[union-attr]
    assert message.startswith("worker 1 failed with exit code 1: …")
    assert "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB" in message
    assert len(message) < 400


def test_exit_code_policy_fails_on_permanent_codes_and_retries_signals() -> None:
    job = running_job(runPolicy={"restartPolicy": "ExitCode"})
    plan = reconcile(job, [pod(0), pod(1, "Failed", exit_code=1)], T0)
    assert plan.status.phase == "Failed"
    assert cond(plan, "Failed") == ("True", "PermanentError")
    retry = reconcile(job, [pod(0), pod(1, "Failed", exit_code=137)], T0)
    assert retry.status.phase == "Restarting" and retry.status.restarts == 1


def test_exit_code_policy_never_stays_restarting() -> None:
    """ANCHORS #6: after a retryable failure the next gang runs, and the job says Running."""
    job = running_job(runPolicy={"restartPolicy": "ExitCode"})
    job = step(job, reconcile(job, [pod(0, "Failed", exit_code=143), pod(1)], T0))
    job = step(job, reconcile(job, [], T0))
    plan = reconcile(job, [pod(0, restart=1), pod(1, restart=1)], T0)
    assert plan.status.phase == "Running"
    assert cond(plan, "Restarting") == ("False", "AllWorkersRunning")


def test_restart_count_is_never_reset_by_suspend_or_terminal_states() -> None:
    job = running_job()
    job = step(job, reconcile(job, [pod(0, "Failed", exit_code=137), pod(1)], T0))
    assert job.status.restarts == 1
    suspended = job.model_copy(update={"spec": job.spec.model_copy(update={"suspend": True})})
    job = step(suspended, reconcile(suspended, [], T0))
    assert job.status.restarts == 1
    resumed = job.model_copy(update={"spec": job.spec.model_copy(update={"suspend": False})})
    plan = reconcile(resumed, [], T0)
    assert plan.status.restarts == 1 and plan.gang == 1


def test_suspend_deletes_pods_and_resume_creates_them_again() -> None:
    job = running_job()
    suspended = job.model_copy(update={"spec": job.spec.model_copy(update={"suspend": True})})
    plan = reconcile(suspended, [pod(0), pod(1)], T0 + timedelta(seconds=5))
    assert plan.status.phase == "Suspended"
    assert {p.name for p in plan.delete_pods} == {"j-worker-0", "j-worker-1"}
    assert cond(plan, "Suspended") == ("True", "Suspended")
    assert plan.status.start_time is None
    assert plan.status.workers.desired == 0
    assert reasons(plan) == ["Suspended"]
    job = step(suspended, plan)
    assert reasons(reconcile(job, [], T0 + timedelta(seconds=6))) == []
    resumed = job.model_copy(update={"spec": job.spec.model_copy(update={"suspend": False})})
    plan = reconcile(resumed, [], T0 + timedelta(seconds=60))
    assert plan.status.phase == "Pending"
    assert plan.create_workers == (0, 1)
    assert cond(plan, "Suspended") == ("False", "Resumed")
    assert reasons(plan) == ["Resumed", "WorkersCreated"]
    assert plan.status.start_time == "2026-01-01T12:01:00Z"


def test_a_job_created_suspended_creates_nothing() -> None:
    plan = reconcile(make_job(suspend=True), [], T0)
    assert plan.status.phase == "Suspended"
    assert plan.create_workers == () and not plan.ensure_children


def test_active_deadline_fails_the_job_and_cleans_per_policy() -> None:
    job = running_job(runPolicy={"activeDeadlineSeconds": 30, "cleanPodPolicy": "All"})
    early = reconcile(job, [pod(0), pod(1)], T0 + timedelta(seconds=10))
    assert early.status.phase == "Running"
    assert early.requeue_after == 20
    plan = reconcile(job, [pod(0), pod(1, "Succeeded")], T0 + timedelta(seconds=30))
    assert plan.status.phase == "Failed"
    assert cond(plan, "Failed") == ("True", "DeadlineExceeded")
    assert {p.name for p in plan.delete_pods} == {"j-worker-0", "j-worker-1"}


def test_clean_pod_policy_none_keeps_everything() -> None:
    job = running_job(runPolicy={"activeDeadlineSeconds": 5, "cleanPodPolicy": "None"})
    plan = reconcile(job, [pod(0), pod(1)], T0 + timedelta(seconds=5))
    assert plan.status.phase == "Failed" and plan.delete_pods == ()


def test_ttl_after_finished_deletes_the_job_when_it_expires() -> None:
    job = running_job(runPolicy={"ttlSecondsAfterFinished": 60})
    done = step(job, reconcile(job, [pod(0, "Succeeded"), pod(1, "Succeeded")], T0))
    waiting = reconcile(done, [], T0 + timedelta(seconds=20))
    assert not waiting.delete_job and waiting.requeue_after == 40
    assert reconcile(done, [], T0 + timedelta(seconds=60)).delete_job


def test_unschedulable_worker_fails_the_job_after_the_scheduling_timeout() -> None:
    job = step(make_job(runPolicy={"schedulingTimeoutSeconds": 5}), reconcile(make_job(), [], T0))
    stuck = [pod(0, "Pending", unschedulable="0/4 nodes: Insufficient nvidia.com/gpu"), pod(1)]
    before = reconcile(job, stuck, T0 + timedelta(seconds=2))
    assert before.status.phase == "Pending" and before.requeue_after == 3
    plan = reconcile(job, stuck, T0 + timedelta(seconds=5))
    assert plan.status.phase == "Failed"
    assert cond(plan, "Failed") == ("True", "Unschedulable")
    assert "Insufficient nvidia.com/gpu" in plan.events[0].message
    assert [p.name for p in plan.delete_pods] == ["j-worker-0", "j-worker-1"]


def test_image_pull_failure_fails_the_job_with_its_own_reason() -> None:
    job = make_job(runPolicy={"schedulingTimeoutSeconds": 5})
    stuck = [pod(0, "Pending", waiting_reason="ImagePullBackOff")]
    plan = reconcile(job, stuck, T0 + timedelta(seconds=6))
    assert cond(plan, "Failed") == ("True", "ImagePullFailed")


QUOTA = 'pods "j-worker-1" is forbidden: exceeded quota: q, requested: pods=1, limited: pods=1'


def test_a_refused_worker_is_reported_then_created_once_the_quota_allows() -> None:
    spec = {"runPolicy": {"schedulingTimeoutSeconds": 60}}
    job = step(make_job(**spec), reconcile(make_job(**spec), [], T0))
    refusal = CreateFailure(gang=0, since=T0, message=QUOTA)
    plan = reconcile(job, [pod(0)], T0 + timedelta(seconds=2), create_failure=refusal)
    # Still trying to create it, and saying why it is missing.
    assert plan.create_workers == (1,)
    assert plan.status.phase == "Pending"
    assert cond(plan, "Created") == ("False", "PodCreateFailed")
    assert cond(plan, "Running") == ("False", "PodCreateFailed")
    assert reasons(plan) == ["PodCreateFailed"]
    assert "worker 1" in plan.events[0].message and "exceeded quota" in plan.events[0].message
    assert plan.requeue_after == 58
    job = step(job, plan)
    again = reconcile(job, [pod(0)], T0 + timedelta(seconds=4), create_failure=refusal)
    assert reasons(again) == []  # one event per refusal, not one per retry
    # The quota was raised: the worker exists, and Created says so again.
    job = step(job, again)
    plan = reconcile(job, [pod(0), pod(1)], T0 + timedelta(seconds=6))
    assert cond(plan, "Created") == ("True", "WorkersCreated")
    assert plan.status.phase == "Running"
    assert reasons(plan) == ["WorkersCreated"]


def test_workers_refused_past_the_scheduling_timeout_fail_the_job() -> None:
    spec = {"runPolicy": {"schedulingTimeoutSeconds": 60}}
    job = step(make_job(**spec), reconcile(make_job(**spec), [], T0))
    refusal = CreateFailure(gang=0, since=T0, message="violates PodSecurity restricted")
    plan = reconcile(job, [pod(0)], T0 + timedelta(seconds=60), create_failure=refusal)
    assert plan.status.phase == "Failed"
    assert cond(plan, "Failed") == ("True", "PodCreateFailed")
    assert plan.create_workers == ()
    assert "PodSecurity" in plan.events[-1].message
    assert [p.name for p in plan.delete_pods] == ["j-worker-0"]  # cleanPodPolicy Running


def test_a_restarted_operator_counts_the_timeout_from_the_first_refusal() -> None:
    spec = {"runPolicy": {"schedulingTimeoutSeconds": 60}}
    job = step(make_job(**spec), reconcile(make_job(**spec), [], T0))
    refusal = CreateFailure(gang=0, since=T0, message=QUOTA)
    job = step(job, reconcile(job, [], T0 + timedelta(seconds=1), create_failure=refusal))
    # The operator restarts at T0+50 and has forgotten the refusal: it tries again, without
    # claiming the workers were created and without a second event.
    retry = reconcile(job, [], T0 + timedelta(seconds=50))
    assert retry.create_workers == (0, 1)
    assert cond(retry, "Created") == ("False", "PodCreateFailed")
    assert reasons(retry) == []
    # Refused again: its own memory starts at T0+50, the status says T0+1.
    again = CreateFailure(gang=0, since=T0 + timedelta(seconds=50), message=QUOTA)
    waiting = reconcile(job, [], T0 + timedelta(seconds=52), create_failure=again)
    assert waiting.status.phase == "Pending" and waiting.requeue_after == 9
    failed = reconcile(job, [], T0 + timedelta(seconds=61), create_failure=again)
    assert cond(failed, "Failed") == ("True", "PodCreateFailed")


def test_a_refusal_of_another_attempt_does_not_count() -> None:
    job = step(make_job(), reconcile(make_job(), [], T0))
    other = CreateFailure(gang=1, since=T0, message=QUOTA)
    plan = reconcile(job, [pod(0)], T0 + timedelta(hours=1), create_failure=other)
    assert plan.status.phase == "Pending"
    assert cond(plan, "Created") == ("True", "WorkersCreated")
    assert cond(plan, "Running") == ("False", "WorkersPending")


def test_progress_deadline_restarts_a_hung_gang() -> None:
    job = running_job(runPolicy={"progressDeadlineSeconds": 60})
    reading = Progress(stage="train", epoch=1, percent=10)
    job = step(job, reconcile(job, [pod(0), pod(1)], T0 + timedelta(seconds=30), reading))
    # The same reading later is no progress; updatedAt stays where progress last moved.
    plan = reconcile(job, [pod(0), pod(1)], T0 + timedelta(seconds=80), reading)
    assert plan.status.phase == "Running" and plan.requeue_after == 10
    plan = reconcile(job, [pod(0), pod(1)], T0 + timedelta(seconds=90), reading)
    assert plan.status.restarts == 1
    assert cond(plan, "Restarting") == ("True", "ProgressDeadlineExceeded")
    assert reasons(plan) == ["GangRestart", "ProgressDeadlineExceeded"]


def test_a_worker_vanishing_from_a_running_gang_restarts_it() -> None:
    job = running_job()
    plan = reconcile(job, [pod(0)], T0 + timedelta(seconds=5))
    assert plan.status.restarts == 1
    assert cond(plan, "Restarting") == ("True", "WorkerLost")


def test_a_disrupted_worker_restarts_the_gang_without_spending_the_backoff_limit() -> None:
    job = running_job(runPolicy={"backoffLimit": 0, "restartPolicy": "Never"})
    # The node shut down: the kubelet failed the pod and said why.
    shut = "TerminationByKubelet: Pod was terminated in response to imminent node shutdown."
    plan = reconcile(job, [pod(0), pod(1, "Failed", disruption=shut)], T0 + timedelta(seconds=5))
    assert plan.status.phase == "Restarting"
    assert (plan.status.restarts, plan.status.disruptions) == (1, 1)
    assert cond(plan, "Restarting") == ("True", "WorkerDisrupted")
    message = plan.events[0].message
    assert "imminent node shutdown" in message and "not counted against backoffLimit 0" in message
    # The next gang is taken away too (evicted): still not a failure of the job.
    job = step(job, plan)
    plan = reconcile(job, [pod(0, restart=1), pod(1, restart=1)], T0 + timedelta(seconds=9))
    job = step(job, plan)
    evicted = pod(0, restart=1, deletion_due=T0, disruption="EvictionByEvictionAPI: Eviction API")
    plan = reconcile(job, [evicted, pod(1, restart=1)], T0 + timedelta(seconds=12))
    assert (plan.status.restarts, plan.status.disruptions) == (2, 2)
    assert cond(plan, "Restarting") == ("True", "WorkerLost")
    assert "worker 0 was deleted while the gang was running (EvictionByEvictionAPI" in (
        plan.events[0].message
    )
    # A worker that fails by itself still meets backoffLimit 0 (and restartPolicy Never).
    job = step(job, plan)
    plan = reconcile(job, [pod(0, restart=2), pod(1, restart=2)], T0 + timedelta(seconds=15))
    job = step(job, plan)
    plan = reconcile(job, [pod(0, restart=2), pod(1, "Failed", restart=2, exit_code=1)], T0)
    assert cond(plan, "Failed") == ("True", "WorkerFailed")


def test_only_restarts_on_failure_spend_the_backoff_limit() -> None:
    job = running_job(runPolicy={"backoffLimit": 1})
    lost = reconcile(job, [pod(0)], T0 + timedelta(seconds=5))  # a worker vanished
    job = step(job, lost)
    job = step(job, reconcile(job, [pod(0, restart=1), pod(1, restart=1)], T0))
    failed = [pod(0, restart=1), pod(1, "Failed", restart=1, exit_code=137)]
    plan = reconcile(job, failed, T0 + timedelta(seconds=9))
    assert plan.status.phase == "Restarting" and plan.status.restarts == 2
    assert "(restart 2: 1 of backoffLimit 1)" in plan.events[0].message
    job = step(job, plan)
    job = step(job, reconcile(job, [pod(0, restart=2), pod(1, restart=2)], T0))
    failed = [pod(0, restart=2), pod(1, "Failed", restart=2, exit_code=137)]
    plan = reconcile(job, failed, T0 + timedelta(seconds=12))
    assert cond(plan, "Failed") == ("True", "BackoffLimitExceeded")
    assert "backoffLimit 1 reached after 1 restarts on failure" in plan.events[-1].message


def test_a_pod_stuck_terminating_holds_the_restart_and_the_job_says_so() -> None:
    job = running_job()
    restart = reconcile(job, [pod(0), pod(1, "Failed", exit_code=137)], T0 + timedelta(seconds=5))
    job = step(job, restart)
    # worker 1's node stopped answering: its pod keeps Terminating past its grace period.
    due = T0 + timedelta(seconds=35)
    lost = pod(1, "Running", deletion_due=due, node="gpu-7")
    waiting = reconcile(job, [lost], T0 + timedelta(seconds=40))
    assert waiting.status.phase == "Restarting" and waiting.create_workers == ()
    assert reasons(waiting) == [] and waiting.requeue_after == 25  # due + 30 s
    stuck = reconcile(job, [lost], T0 + timedelta(seconds=70))
    assert cond(stuck, "Running") == ("False", "WorkersTerminating")
    assert reasons(stuck) == ["WorkersTerminating"]
    message = stuck.events[0].message
    assert "j-worker-1 on node gpu-7 is still terminating" in message
    assert "out-of-service" in message
    job = step(job, stuck)
    assert reasons(reconcile(job, [lost], T0 + timedelta(seconds=90))) == []  # said once
    # The pod is gone at last: the next gang is created.
    assert reconcile(job, [], T0 + timedelta(seconds=95)).create_workers == (0, 1)


def test_evicted_worker_without_exit_code_is_retried_under_exit_code_policy() -> None:
    job = running_job(runPolicy={"restartPolicy": "ExitCode"})
    plan = reconcile(job, [pod(0), pod(1, "Failed")], T0)
    assert plan.status.restarts == 1


def test_pod_view_reads_a_real_pod_object() -> None:
    body = {
        "metadata": {
            "name": "j-worker-0",
            "uid": "abc",
            "creationTimestamp": "2026-01-01T12:00:00Z",
            "labels": {
                "trainyard.dev/job-name": "j",
                "trainyard.dev/worker-index": "0",
                "trainyard.dev/restart": "2",
            },
        },
        "spec": {"nodeName": "n1"},
        "status": {
            "phase": "Failed",
            "podIP": "127.1.0.5",
            "conditions": [
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "PreemptionByScheduler",
                    "message": "default-scheduler: preempting to accommodate a higher priority pod",
                }
            ],
            "containerStatuses": [
                {"name": "trainer", "state": {"terminated": {"exitCode": 137, "message": "killed"}}}
            ],
        },
    }
    view = PodView.from_object(body)
    assert view is not None
    assert (view.index, view.restart, view.exit_code, view.ip) == (0, 2, 137, "127.1.0.5")
    assert view.termination_message == "killed"
    assert view.disruption == (
        "PreemptionByScheduler: default-scheduler: preempting to accommodate a higher priority pod"
    )
    assert view.created == T0
    assert PodView.from_object({"metadata": {"name": "x", "labels": {}}}) is None


def test_the_trainer_status_is_found_by_name_behind_a_sidecar_sorted_first() -> None:
    # a kubelet sorts containerStatuses by name: a podTemplate sidecar "a-proxy" comes first,
    # and its clean exit must not hide the trainer's exit code or termination message
    body = {
        "metadata": {
            "name": "j-worker-0",
            "labels": {"trainyard.dev/job-name": "j", "trainyard.dev/worker-index": "0"},
        },
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {"name": "a-proxy", "state": {"terminated": {"exitCode": 0, "message": "bye"}}},
                {"name": "trainer", "state": {"terminated": {"exitCode": 3, "message": "bad"}}},
            ],
        },
    }
    view = PodView.from_object(body)
    assert view is not None
    assert (view.exit_code, view.termination_message) == (3, "bad")


def test_conditions_follow_the_generation_of_the_spec_they_were_judged_against() -> None:
    job = running_job()
    bumped = job.model_copy(update={"generation": 2})
    plan = reconcile(bumped, [pod(0), pod(1)], T0 + timedelta(seconds=5))
    assert {c.observed_generation for c in plan.status.conditions} == {2}
    assert plan.status.observed_generation == 2
