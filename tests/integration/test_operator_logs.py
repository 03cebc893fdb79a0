"""The operator's log tells a job's story at its default level, and in JSON mode every line
is one JSON object (TRAINYARD_LOG_FORMAT=json, kopf's JSON format) that the trainer pods are
told to use too.

A job lives through creation, running, a worker killed with 137 (a gang restart), a running
second gang and success, on the fake-node agent (`fake.trainyard.dev/exit-code` ends a
running pod with that code). What a user notices: the operator's log, read as a file, has one
line per decision and action naming `<namespace>/<job>`, in the order they happened.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from integration.operator_fixtures import Jobs
from trainyard_local.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

EXIT = "fake.trainyard.dev/exit-code"
# The line the test harness (trainyard_local.processes.spawn) writes before each start.
HARNESS = "--- "
NAME = "story"


def live_a_life(jobs: Jobs, name: str) -> None:
    """Create, run, kill worker 1 (137: a gang restart), run again, succeed."""
    jobs.create(name, workers=2, runPolicy={"restartPolicy": "OnFailure", "backoffLimit": 3})
    jobs.wait_pods(name, 2, restart=0)
    jobs.wait_phase(name, "Running")
    jobs.annotate_pod(f"{name}-worker-1", {EXIT: "137"})
    jobs.wait_pods(name, 2, restart=1, timeout=90)
    jobs.wait_phase(name, "Running")
    for index in (0, 1):
        jobs.annotate_pod(f"{name}-worker-{index}", {EXIT: "0"})
    jobs.wait_phase(name, "Succeeded")


def in_order(lines: list[str], wanted: list[str]) -> list[str]:
    """The first line holding each wanted text, each after the previous one's."""
    found: list[str] = []
    start = 0
    for text in wanted:
        hit = next((i for i in range(start, len(lines)) if text in lines[i]), None)
        assert hit is not None, f"no line with {text!r} after {found[-1:]}; log:\n" + "\n".join(
            lines
        )
        found.append(lines[hit])
        start = hit + 1
    return found


def story(who: str) -> list[str]:
    return [
        f"{who}: WorkersCreated: creating 2 worker pods (attempt 0)",
        f"{who}: created the headless Service",
        f"{who}: created pods {NAME}-worker-0, {NAME}-worker-1 (attempt 0)",
        f"{who}: phase Pending -> Running",
        f"{who}: GangRestart: worker 1 failed with exit code 137",
        f"{who}: phase Running -> Restarting",
        f"{who}: deleting pods ",
        f"{who}: WorkersCreated: creating 2 worker pods (attempt 1)",
        f"{who}: created pods {NAME}-worker-0, {NAME}-worker-1 (attempt 1)",
        f"{who}: phase Restarting -> Running",
        f"{who}: Succeeded: all 2 workers exited 0",
        f"{who}: phase Running -> Succeeded",
    ]


def test_a_jobs_life_is_readable_from_the_default_log(
    operator_factory: Callable[..., OperatorProcess], jobs: Jobs, namespace: str
) -> None:
    operator = operator_factory()  # TRAINYARD_LOG_LEVEL and _FORMAT left at their defaults
    live_a_life(jobs, NAME)
    lines = operator.log_path.read_text().splitlines()
    found = in_order(lines, story(f"{namespace}/{NAME}"))
    # the restart says why, as a warning; the plain steps are INFO
    assert " WARNING trainyard_operator.handlers.worker: " in found[4], found[4]
    assert " INFO trainyard_operator.handlers.worker: " in found[3], found[3]


def test_in_json_mode_every_operator_line_is_a_json_object(
    operator_factory: Callable[..., OperatorProcess], jobs: Jobs, namespace: str
) -> None:
    operator = operator_factory(TRAINYARD_LOG_FORMAT="json")
    live_a_life(jobs, NAME)
    pod = jobs.pods(NAME)[0]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["TRAINYARD_LOG_FORMAT"] == "json"  # the trainers log JSON too
    operator.stop()  # its shutdown lines count as well

    objects: list[dict[str, Any]] = []
    for line in operator.log_path.read_text().splitlines():
        if line.startswith(HARNESS):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            pytest.fail(f"a line that is not JSON: {line!r}")
        assert isinstance(value, dict) and {"message", "timestamp", "severity"} <= set(value)
        objects.append(value)
    mine = [o for o in objects if o.get("job") == NAME]
    assert all(o["namespace"] == namespace for o in mine)
    messages = [str(o["message"]) for o in mine]
    in_order(messages, story(f"{namespace}/{NAME}"))
    restart = next(o for o in mine if "GangRestart:" in o["message"])
    assert restart["severity"] == "warn"
