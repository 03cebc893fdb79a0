"""Restarts: a worker killed with SIGKILL mid-epoch resumes from the latest checkpoint and
lands where an uninterrupted run lands; SIGTERM checkpoints and exits 143 within the pod's
grace period."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
import torch
from trainer_procs import DIGITS, free_port, scrape, worker_pids

pytestmark = pytest.mark.timeout(300)

# Small batches make an epoch last about a second, long enough to be killed inside it.
CONFIG = {
    "trainer": {**DIGITS, "epochs": 6, "batchSize": 16, "seed": 7},
    "checkpoint": {"everyEpochs": 1, "keep": 2},
}


def test_sigkill_mid_epoch_then_restart_resumes_and_matches(trainer) -> None:
    reference = trainer(CONFIG, nproc=2, name="reference")
    assert reference.finish() == 0, reference.text

    first = trainer(CONFIG, nproc=2, name="interrupted")
    first.wait_for_line("[checkpoint] saved ckpt-e00002")
    # Kill one worker outright, as a node failure would: usually inside epoch 3, later when
    # this test reads the line late (a busy machine), which the checks below allow for.
    workers = worker_pids(first.proc.pid)
    assert len(workers) == 2
    os.kill(workers[-1], signal.SIGKILL)
    # Retryable for the ExitCode policy (128+), though torchrun itself says 1.
    assert first.finish() == 137, first.text
    saved = [p.name for p in (first.output / "checkpoints").glob("ckpt-*.pt")]
    latest = max(int(name.split("-e")[1][:5]) for name in saved)
    assert 2 <= latest < 6, saved

    again = trainer(CONFIG, nproc=2, name="interrupted")  # same output path: a gang restart
    assert again.finish() == 0, again.text
    results = again.results()
    # resumed from the newest checkpoint the killed run left, training none of its epochs again
    assert int(results["resumedFrom"].split("-e")[1][:5]) == latest
    assert "[train] epoch 1/6" not in again.text
    assert f"[train] epoch {latest}/6" not in again.text
    assert f"[train] epoch {latest + 1}/6" in again.text
    assert abs(results["accuracy"] - reference.results()["accuracy"]) <= 0.01
    # Checkpoints are pruned to `keep`.
    assert len(list((again.output / "checkpoints").glob("ckpt-*.pt"))) == 2


def steps(port: int) -> float:
    """Optimizer steps so far, from rank 0's live metrics."""
    found = re.search(r"^trainyard_trainer_steps_total (\S+)$", scrape(port), re.M)
    return float(found.group(1)) if found else 0.0


def test_sigterm_saves_a_checkpoint_and_exits_143_within_the_grace_period(trainer) -> None:
    port = free_port()
    run = trainer(
        {**CONFIG, "trainer": {**CONFIG["trainer"], "epochs": 50}},
        nproc=2,
        TRAINYARD_METRICS_PORT=str(port),
        TRAINYARD_METRICS_HOST="127.0.0.1",
    )
    run.wait_for_line("[train] epoch 2/50")
    # inside epoch 3 once a step past the end of epoch 2 has been taken
    after_epoch_2 = steps(port)
    deadline = time.monotonic() + 120
    while steps(port) <= after_epoch_2:
        assert time.monotonic() < deadline, "no step after epoch 2"
        time.sleep(0.02)
    sent = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)  # as the kubelet does to the container's PID 1
    code = run.finish(timeout=30)
    elapsed = time.monotonic() - sent
    assert code == 143, run.text
    # what matters to a user: done before the kubelet's SIGKILL at the default 30 s grace period
    # (a busy 2-core machine has taken several seconds; the bound is not about speed)
    assert elapsed < 30, f"took {elapsed:.1f}s to stop"
    # Both trainer processes stopped at the same step and exited 143 themselves.
    assert run.text.count("stopping on SIGTERM") == 2
    newest = sorted((run.output / "checkpoints").glob("ckpt-*.pt"))[-1]
    state = torch.load(newest, weights_only=True)["state"]
    # Saved at the step where the signal landed, not just the last epoch boundary.
    assert (state["epoch"], state["step_in_epoch"]) > (2, 0)
    assert "[checkpoint] saved " + newest.name in run.text


def test_a_changed_config_on_the_same_volume_starts_fresh_and_says_why(trainer) -> None:
    short = {"trainer": {**DIGITS, "epochs": 2, "seed": 7}, "checkpoint": {"everyEpochs": 1}}
    first = trainer(short, name="shared")
    assert first.finish() == 0, first.text
    # the same job name and volume, another learning rate: the old checkpoints are not its own
    changed = {**short, "trainer": {**short["trainer"], "learningRate": 0.01}}
    again = trainer(changed, name="shared")
    assert again.finish() == 0, again.text
    assert again.results()["resumedFrom"] is None
    assert "[checkpoint] starting fresh" in again.text and "[train] epoch 1/2" in again.text
    # the unchanged config still resumes from its own
    same = trainer(short, name="shared")
    assert same.finish() == 0, same.text
    assert same.results()["resumedFrom"]
