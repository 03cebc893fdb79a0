"""TRAINYARD_LOG_FORMAT=json: every line a worker pod prints is one JSON object.

Real runs through the pod's own command (launch.py -> torchrun -> trainers): two processes
training and pruning the digits MLP, and a run whose config is refused (exit 2), where
torchrun itself prints its failure report. A log collector must parse every line, torchrun's
included, and find the job, namespace, rank, stage and epoch of the trainer's own lines.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from trainer_procs import DIGITS, TrainerRun

pytestmark = pytest.mark.timeout(240)

KEYS = {"time", "level", "job", "namespace", "worker", "rank", "stage", "epoch", "message"}
POD_ENV = {
    "TRAINYARD_LOG_FORMAT": "json",
    "TRAINYARD_JOB": "digits-json",
    "TRAINYARD_NAMESPACE": "team-a",
    "PET_NODE_RANK": "0",
}


def objects(run: TrainerRun) -> list[dict[str, Any]]:
    """Every line of the run's output (stdout and stderr), each parsed as a JSON object."""
    parsed = []
    for line in run.text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            pytest.fail(f"a line that is not JSON: {line!r}\n--- output:\n{run.text[-3000:]}")
        assert isinstance(value, dict), line
        assert set(value) == KEYS, line
        parsed.append(value)
    return parsed


def test_a_json_run_prints_only_json_objects_with_stage_and_epoch(trainer) -> None:
    config = {
        "trainer": {**DIGITS, "epochs": 2},
        "compression": [{"prune": {"amount": 0.5, "fineTuneEpochs": 1}}],
    }
    run = trainer(config, nproc=2, **POD_ENV)
    assert run.finish() == 0, run.text
    lines = objects(run)
    assert lines, "the run printed nothing"
    mine = [o for o in lines if o["rank"] is not None]
    assert all(o["job"] == "digits-json" and o["namespace"] == "team-a" for o in lines)
    assert all(o["worker"] == 0 for o in lines)
    epochs = [(o["stage"], o["epoch"]) for o in mine if "] epoch " in o["message"]]
    assert epochs == [("train", 1), ("train", 2), ("prune", 1)], epochs
    first = next(o for o in mine if o["message"].startswith("[train] epoch 1/2"))
    assert first["rank"] == 0 and first["level"] == "info"
    # both ranks' own lines carry their rank
    assert {o["rank"] for o in mine if "parameters sha256" in o["message"]} == {0, 1}


def test_a_refused_config_and_torchruns_report_are_json_too(trainer) -> None:
    run = trainer({"trainer": {**DIGITS, "epochs": 0}}, nproc=1, **POD_ENV)
    assert run.finish() == 2, run.text
    lines = objects(run)
    refused = [o for o in lines if "config error" in o["message"]]
    assert refused and refused[0]["level"] == "error" and refused[0]["rank"] == 0
    # torchrun's own failure report, wrapped line by line by the launcher (no rank claimed)
    assert any(o["rank"] is None and "FAILED" in o["message"] for o in lines), run.text
