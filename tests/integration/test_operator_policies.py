"""Suspend/resume, deadlines, TTL and the scheduling timeout, end to end on the local cluster:
the job's phase and reason, and what happens to its pods."""

from __future__ import annotations

import pytest

from integration.operator_fixtures import Jobs, condition, wait_for
from trainyard_local.operator_process import OperatorProcess

pytestmark = pytest.mark.integration


def test_suspend_deletes_the_pods_and_resume_brings_them_back(
    operator: OperatorProcess, jobs: Jobs
) -> None:
    jobs.create("pausable", workers=2)
    jobs.wait_phase("pausable", "Running")
    jobs.patch_spec("pausable", {"suspend": True})
    status = jobs.wait_phase("pausable", "Suspended")
    wait_for("the suspended job's pods to go", lambda: not jobs.pods("pausable"))
    suspended = condition(jobs.status("pausable"), "Suspended")
    assert suspended is not None and suspended["status"] == "True"
    assert "startTime" not in status
    jobs.patch_spec("pausable", {"suspend": False})
    jobs.wait_pods("pausable", 2)
    status = jobs.wait_phase("pausable", "Running")
    suspended = condition(status, "Suspended")
    assert suspended is not None and suspended["status"] == "False"
    assert suspended["reason"] == "Resumed"
    assert status["restarts"] == 0
    jobs.wait_event("pausable", "Resumed")
    assert jobs.reasons("pausable").count("Suspended") == 1


def test_active_deadline_fails_the_job_and_stops_running_pods(
    operator: OperatorProcess, jobs: Jobs
) -> None:
    jobs.create(
        "slow",
        workers=2,
        runPolicy={"activeDeadlineSeconds": 3, "cleanPodPolicy": "Running"},
    )
    status = jobs.wait_phase("slow", "Failed")
    failed = condition(status, "Failed")
    assert failed is not None and failed["reason"] == "DeadlineExceeded"
    wait_for("running pods to be deleted", lambda: not jobs.pods("slow"))


def test_clean_pod_policy_none_keeps_the_pods(operator: OperatorProcess, jobs: Jobs) -> None:
    jobs.create("keep", workers=2, runPolicy={"activeDeadlineSeconds": 2, "cleanPodPolicy": "None"})
    jobs.wait_phase("keep", "Failed")
    assert len(jobs.pods("keep")) == 2


def test_ttl_after_finished_deletes_the_job(operator: OperatorProcess, jobs: Jobs) -> None:
    jobs.create(
        "brief",
        workers=1,
        runPolicy={"ttlSecondsAfterFinished": 2},
        pod_annotations={"fake.trainyard.dev/run-seconds": "1"},
    )
    # The job reads Succeeded for only ttlSecondsAfterFinished (2 s), which a slow poll can
    # miss; the Succeeded event, posted right after that status write, outlives the job.
    kind, _, _ = jobs.wait_event("brief", "Succeeded")
    assert kind == "Normal"
    wait_for("the finished job to be deleted", lambda: jobs.get("brief") is None)
    wait_for("its pods to go with it", lambda: not jobs.pods("brief"))


def test_more_gpus_than_any_node_fails_as_unschedulable(
    operator: OperatorProcess, jobs: Jobs
) -> None:
    jobs.create(
        "greedy",
        workers=1,
        resources={"gpus": 9, "cpu": "10m", "memory": "32Mi"},
        runPolicy={"schedulingTimeoutSeconds": 3},
    )
    status = jobs.wait_phase("greedy", "Failed")
    failed = condition(status, "Failed")
    assert failed is not None and failed["reason"] == "Unschedulable"
    assert "nvidia.com/gpu" in failed["message"]
    jobs.wait_event("greedy", "Unschedulable")


def test_an_image_that_cannot_be_pulled_fails_the_job(
    operator: OperatorProcess, jobs: Jobs
) -> None:
    jobs.create(
        "typo", workers=2, image="registry.invalid/x:1", runPolicy={"schedulingTimeoutSeconds": 3}
    )
    status = jobs.wait_phase("typo", "Failed")
    failed = condition(status, "Failed")
    assert failed is not None and failed["reason"] == "ImagePullFailed"
    assert "ImagePull" in failed["message"] or "ErrImagePull" in failed["message"]
    wait_for("the stuck pods to be deleted", lambda: not jobs.pods("typo"))
