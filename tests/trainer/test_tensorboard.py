"""TensorBoard: the trainer writes event files under `<output>/tensorboard/<job>` that
TensorBoard's own reader parses, one point per epoch for every stage that trains, from rank 0
only; a run resumed after a crash still shows one point per epoch."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from trainer_procs import DIGITS, worker_pids

pytestmark = pytest.mark.timeout(300)

METRICS = ("loss", "accuracy", "samples_per_second", "learning_rate")


def read_scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag as (step, value) points, as TensorBoard shows them."""
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def test_two_process_run_writes_one_point_per_epoch_per_stage(trainer) -> None:
    run = trainer(
        {
            "job": "digits-tb",
            "trainer": {**DIGITS, "epochs": 3},
            "compression": [
                {"prune": {"amount": 0.5, "fineTuneEpochs": 2}},
                {"quantize": {"method": "dynamic"}},
            ],
        },
        nproc=2,
    )
    assert run.finish() == 0, run.text
    logdir = run.output / "tensorboard" / "digits-tb"
    # One writer (rank 0), not one per process.
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1, list(logdir.iterdir())

    scalars = read_scalars(logdir)
    assert set(scalars) == {f"{stage}/{m}" for stage in ("train", "prune") for m in METRICS}
    # Training is epochs 1-3 of the run, the prune fine-tune 4-5; quantize does not train.
    for metric in METRICS:
        assert [step for step, _ in scalars[f"train/{metric}"]] == [1, 2, 3]
        assert [step for step, _ in scalars[f"prune/{metric}"]] == [4, 5]
    # The same numbers as the run's own record of each epoch.
    history = run.results()["history"]
    for (_, loss), epoch in zip(scalars["train/loss"], history, strict=True):
        assert loss == pytest.approx(epoch["loss"], rel=1e-5)
    for (_, accuracy), epoch in zip(scalars["train/accuracy"], history, strict=True):
        assert accuracy == pytest.approx(epoch["accuracy"], rel=1e-5)
    assert all(value > 0 for _, value in scalars["train/samples_per_second"])
    # Cosine annealing: the learning rate falls from the configured 0.001 over training.
    rates = [value for _, value in scalars["train/learning_rate"]]
    assert 0.001 > rates[0] > rates[1] > rates[2] >= 0


def test_resumed_run_keeps_one_point_per_epoch(trainer) -> None:
    config = {
        "job": "resumed",
        # Small batches make an epoch last about a second, long enough to be killed inside it.
        "trainer": {**DIGITS, "epochs": 6, "batchSize": 16, "seed": 3},
        "checkpoint": {"everyEpochs": 3, "keep": 2},
    }
    first = trainer(config, nproc=1, name="crashed")
    # Killed after epoch 4's point was written and before the next checkpoint (epoch 6): the
    # restart resumes from epoch 3 and trains epoch 4 again, which must not show twice.
    first.wait_for_line("[train] epoch 4/6")
    os.kill(worker_pids(first.proc.pid)[0], signal.SIGKILL)
    assert first.finish() == 137, first.text
    logdir = first.output / "tensorboard" / "resumed"
    written = [step for step, _ in read_scalars(logdir)["train/loss"]]
    assert written[:4] == [1, 2, 3, 4]

    again = trainer(config, nproc=1, name="crashed")  # same output: a gang restart
    assert again.finish() == 0, again.text
    assert again.results()["resumedFrom"].startswith("ckpt-e00003")
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 2  # one per attempt
    scalars = read_scalars(logdir)
    for metric in METRICS:
        assert [step for step, _ in scalars[f"train/{metric}"]] == [1, 2, 3, 4, 5, 6]
    # Epochs 4 onwards are the resumed run's points, as in the results' history.
    history = again.results()["history"]
    assert [value for _, value in scalars["train/loss"]] == pytest.approx(
        [epoch["loss"] for epoch in history], rel=1e-5
    )
