"""Two real torchrun processes (gloo) train the digits MLP: accuracy, replicas in step,
live metrics on the contract's names, results.json and the termination message."""

from __future__ import annotations

import json
import re
import time

import pytest
from trainer_procs import DIGITS, TrainerRun, free_port, scrape

pytestmark = pytest.mark.timeout(240)


def live_metrics(run: TrainerRun, port: int) -> str:
    """Rank 0's metrics once an epoch's figures are in (the epoch line and the gauges are
    written one after the other, so a scrape can fall between them)."""
    deadline = time.monotonic() + 60
    while True:
        assert run.proc.poll() is None, "the run ended before its metrics were read"
        metrics = scrape(port)
        if re.search(r"^trainyard_trainer_accuracy 0\.[5-9]", metrics, re.M):
            return metrics
        assert time.monotonic() < deadline, metrics
        time.sleep(0.05)


def test_two_processes_reach_95_percent_with_identical_replicas(trainer) -> None:
    port = free_port()
    run = trainer(
        {"trainer": {**DIGITS, "epochs": 12}},
        nproc=2,
        TRAINYARD_METRICS_PORT=str(port),
        TRAINYARD_METRICS_HOST="127.0.0.1",
    )
    run.wait_for_line("[train] epoch 2/12")
    metrics = live_metrics(run, port)  # served by local rank 0 while training runs
    assert 'trainyard_trainer_stage{stage="train"} 1.0' in metrics
    assert re.search(r"^trainyard_trainer_epoch [1-9]", metrics, re.M)
    assert re.search(r"^trainyard_trainer_steps_total [1-9]", metrics, re.M)
    assert re.search(r"^trainyard_trainer_accuracy 0\.[5-9]", metrics, re.M)
    assert re.search(r"^trainyard_trainer_allreduce_seconds_count [1-9]", metrics, re.M)
    for name in (
        "progress_ratio",
        "eta_seconds",
        "loss",
        "samples_per_second",
        "samples_total",
        "step_compute_seconds_total",
        "last_progress_timestamp_seconds",
        "epochs",
    ):
        assert f"\ntrainyard_trainer_{name} " in metrics, name

    assert run.finish() == 0, run.text
    digests = dict(re.findall(r"\[rank (\d)\] parameters sha256 ([0-9a-f]{64})", run.text))
    assert set(digests) == {"0", "1"}
    assert digests["0"] == digests["1"]

    results = run.results()
    assert results["worldSize"] == 2
    assert results["accuracy"] >= 0.95
    # One progress line per epoch, in the documented shape.
    assert (
        len(
            re.findall(
                r"^\[train\] epoch \d+/12 loss [\d.]+ acc [\d.]+ \d+ samples/s eta \d+s$",
                run.text,
                re.M,
            )
        )
        == 12
    )

    message = run.termination_log.read_text()
    assert len(message.encode()) <= 4096
    compact = json.loads(message)
    assert compact["accuracy"] == pytest.approx(results["accuracy"], abs=1e-4)
    assert compact["stages"][0]["name"] == "train"
    assert set(compact["stages"][0]) == {"name", "accuracy", "modelBytes", "sparsity", "seconds"}
    assert compact["artifactPath"].endswith("model-final.pt")


def test_bf16_autocast_trains(trainer) -> None:
    run = trainer({"trainer": {**DIGITS, "epochs": 4, "precision": "bf16"}}, torchrun=False)
    assert run.finish() == 0, run.text
    assert run.results()["accuracy"] >= 0.9
