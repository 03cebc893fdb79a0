"""The operator can die at any moment: killed with SIGKILL while it creates a large gang and
started again, it finishes the gang without a duplicate or a replaced pod."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from integration.operator_fixtures import Jobs, wait_for
from trainyard_local.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

WORKERS = 40


def test_killed_mid_creation_and_restarted_creates_no_duplicates(
    operator_factory: Callable[[], OperatorProcess], jobs: Jobs
) -> None:
    first = operator_factory()
    jobs.create("big", workers=WORKERS)
    wait_for("the first pods of the gang", lambda: jobs.pods("big"), interval=0.02)
    first.kill()
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in jobs.pods("big")}
    print(f"{len(before)} of {WORKERS} pods existed when the operator was killed")

    operator_factory()
    # 40 pods through a restarted operator and the agent: more than the default minute can
    # take on a loaded 2-core machine (the timeout only bounds a hang)
    pods = jobs.wait_pods("big", WORKERS, timeout=180)
    status = jobs.wait_phase("big", "Running")
    names = [p["metadata"]["name"] for p in pods]
    assert sorted(names) == sorted(f"big-worker-{i}" for i in range(WORKERS))
    assert {p["metadata"]["labels"]["trainyard.dev/restart"] for p in pods} == {"0"}
    # Pods created before the kill are the same objects now: none was deleted and remade.
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}
    assert {name: after[name] for name in before} == before
    assert status["restarts"] == 0
    assert status["workers"]["active"] == WORKERS
