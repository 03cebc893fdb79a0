"""Run policies on failure, as a user sees them: a killed worker restarts the whole gang,
backoffLimit ends the retries, and ExitCode tells permanent errors from retryable ones.
Exit codes come from the fake-node agent (`fake.trainyard.dev/exit-code` on a running pod
terminates it now)."""

from __future__ import annotations

import pytest
from kubernetes import client

from integration.operator_fixtures import Jobs, condition, wait_for
from trainyard_local.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

EXIT = "fake.trainyard.dev/exit-code"


def kill_worker(jobs: Jobs, job: str, index: int, code: int) -> None:
    jobs.annotate_pod(f"{job}-worker-{index}", {EXIT: str(code)})


def test_exit_137_under_on_failure_restarts_the_whole_gang(
    operator: OperatorProcess, jobs: Jobs
) -> None:
    jobs.create("flaky", workers=2, runPolicy={"restartPolicy": "OnFailure", "backoffLimit": 3})
    first = jobs.wait_pods("flaky", 2, restart=0)
    kill_worker(jobs, "flaky", 1, 137)
    pods = jobs.wait_pods("flaky", 2, restart=1)
    # Both workers were replaced, not only the one that died: DDP needs every rank anew.
    old_uids = {p["metadata"]["uid"] for p in first}
    assert not old_uids & {p["metadata"]["uid"] for p in pods}
    status = jobs.wait_phase("flaky", "Running")
    assert status["restarts"] == 1
    restarting = condition(status, "Restarting")
    assert restarting is not None and restarting["status"] == "False"
    _, _, message = jobs.wait_event("flaky", "GangRestart")
    assert "worker 1 failed with exit code 137" in message
    env = {e["name"]: e.get("value") for e in pods[0]["spec"]["containers"][0]["env"]}
    assert env["TRAINYARD_RESTART"] == "1"


def test_past_backoff_limit_the_job_fails(operator: OperatorProcess, jobs: Jobs) -> None:
    jobs.create(
        "doomed",
        workers=2,
        runPolicy={"backoffLimit": 1},
        pod_annotations={"fake.trainyard.dev/run-seconds": "1", EXIT: "137"},
    )
    status = jobs.wait_phase("doomed", "Failed")
    assert status["restarts"] == 1
    failed = condition(status, "Failed")
    assert failed is not None and failed["reason"] == "BackoffLimitExceeded"
    assert status["completionTime"]
    jobs.wait_event("doomed", "BackoffLimitExceeded")
    # Nothing is created after the terminal state (ANCHORS #7).
    assert all(p["metadata"]["labels"]["trainyard.dev/restart"] == "1" for p in jobs.pods("doomed"))


def test_exit_code_policy_fails_at_once_on_exit_1(operator: OperatorProcess, jobs: Jobs) -> None:
    jobs.create("strict", workers=2, runPolicy={"restartPolicy": "ExitCode", "backoffLimit": 3})
    jobs.wait_phase("strict", "Running")
    kill_worker(jobs, "strict", 0, 1)
    status = jobs.wait_phase("strict", "Failed")
    assert status["restarts"] == 0
    failed = condition(status, "Failed")
    assert failed is not None and failed["reason"] == "PermanentError"
    # cleanPodPolicy Running: the worker still running was stopped (ANCHORS #5).
    jobs.wait_pods("strict", 1, phase="Failed")


def test_exit_code_policy_retries_exit_137(operator: OperatorProcess, jobs: Jobs) -> None:
    jobs.create("signal", workers=2, runPolicy={"restartPolicy": "ExitCode", "backoffLimit": 3})
    jobs.wait_phase("signal", "Running")
    kill_worker(jobs, "signal", 1, 137)
    jobs.wait_pods("signal", 2, restart=1)
    status = jobs.wait_phase("signal", "Running")
    assert status["restarts"] == 1


def test_an_evicted_worker_restarts_the_gang_without_spending_the_backoff_limit(
    operator: OperatorProcess, jobs: Jobs
) -> None:
    # Neither restartPolicy Never nor backoffLimit 0 stops the retry: the worker did not fail,
    # it was taken away (a drain, a preemption, a node going away).
    jobs.create("evictable", workers=2, runPolicy={"restartPolicy": "Never", "backoffLimit": 0})
    jobs.wait_pods("evictable", 2, restart=0)
    jobs.wait_phase("evictable", "Running")
    eviction = client.V1Eviction(
        metadata=client.V1ObjectMeta(name="evictable-worker-1", namespace=jobs.namespace)
    )
    jobs.core.create_namespaced_pod_eviction("evictable-worker-1", jobs.namespace, eviction)

    jobs.wait_pods("evictable", 2, restart=1)
    status = jobs.wait_phase("evictable", "Running")
    assert (status["restarts"], status["disruptions"]) == (1, 1)
    _, _, message = jobs.wait_event("evictable", "GangRestart")
    assert "worker 1" in message and "not counted against backoffLimit 0" in message

    # A failure of the worker itself still ends the job at once.
    kill_worker(jobs, "evictable", 0, 1)
    failed = condition(jobs.wait_phase("evictable", "Failed"), "Failed")
    assert failed is not None and failed["reason"] == "WorkerFailed"


def test_a_restart_held_up_by_a_pod_that_will_not_go_says_why(
    operator: OperatorProcess, jobs: Jobs
) -> None:
    # A finalizer nobody removes keeps a pod Terminating, as an unreachable node does.
    jobs.create("held", workers=2)
    jobs.wait_pods("held", 2, restart=0)
    hold = {"metadata": {"finalizers": ["example.com/hold"]}}
    jobs.core.patch_namespaced_pod("held-worker-1", jobs.namespace, hold)
    release = {"metadata": {"finalizers": None}}
    try:
        kill_worker(jobs, "held", 0, 137)
        _, _, message = jobs.wait_event("held", "WorkersTerminating", timeout=150)
        assert "held-worker-1" in message and "still terminating" in message
        status = jobs.status("held")
        assert status["phase"] == "Restarting"
        running = condition(status, "Running")
        assert running is not None and running["reason"] == "WorkersTerminating"
        assert [p["metadata"]["name"] for p in jobs.pods("held")] == ["held-worker-1"]
    finally:
        # released whatever happened, or the test namespace could never be deleted
        jobs.core.patch_namespaced_pod("held-worker-1", jobs.namespace, release)
    jobs.wait_pods("held", 2, restart=1)
    jobs.wait_phase("held", "Running")


def test_a_deleted_headless_service_comes_back_with_the_next_gang(
    operator: OperatorProcess, jobs: Jobs
) -> None:
    jobs.create("dns", workers=2, runPolicy={"restartPolicy": "OnFailure", "backoffLimit": 3})
    jobs.wait_pods("dns", 2, restart=0)
    jobs.core.delete_namespaced_service("dns", jobs.namespace)
    wait_for("the Service to be gone", lambda: not service_exists(jobs, "dns"))
    # the next gang's workers find each other through it: it is ensured again
    kill_worker(jobs, "dns", 0, 137)
    jobs.wait_pods("dns", 2, restart=1)
    wait_for("the Service to be back", lambda: service_exists(jobs, "dns"))


def service_exists(jobs: Jobs, name: str) -> bool:
    try:
        jobs.core.read_namespaced_service(name, jobs.namespace)
    except client.ApiException as err:
        if err.status == 404:
            return False
        raise
    return True
