"""The trainer follows the GPUs the operator gave its worker (`TRAINYARD_GPUS`).

0 means gloo on CPU even where a node exposes GPUs anyway; more means CUDA and nccl, and a
worker given GPUs that CUDA cannot see fails at once with a message saying so, instead of
quietly training on CPU. Without the variable (a plain local run) the hardware decides.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from trainer_procs import DIGITS, trainer_env

from trainyard_trainer.distributed import GpusMissingError, use_cuda

pytestmark = pytest.mark.timeout(180)


def test_the_given_count_decides_over_what_cuda_sees() -> None:
    assert use_cuda({"TRAINYARD_GPUS": "0"}, available=True) is False
    assert use_cuda({"TRAINYARD_GPUS": "4"}, available=True) is True
    assert use_cuda({}, available=True) is True
    assert use_cuda({}, available=False) is False
    with pytest.raises(GpusMissingError, match=r"given 2 GPU\(s\) \(TRAINYARD_GPUS\) but CUDA"):
        use_cuda({"TRAINYARD_GPUS": "2", "CUDA_VISIBLE_DEVICES": ""}, available=False)
    with pytest.raises(GpusMissingError, match="is not a number of GPUs"):
        use_cuda({"TRAINYARD_GPUS": "many"}, available=True)


def _run(tmp_path: Path, gpus: str) -> subprocess.CompletedProcess[str]:
    config = {"job": "g", "trainer": {**DIGITS, "epochs": 1}}
    # no GPU visible, whatever the machine has: what a worker without a device sees
    env = trainer_env(config, tmp_path / "output", TRAINYARD_GPUS=gpus, CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [sys.executable, "-m", "trainyard_trainer"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=150,
    )


def test_a_worker_given_no_gpus_trains_with_gloo_on_cpu(tmp_path: Path) -> None:
    done = _run(tmp_path, "0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gloo on cpu" in done.stdout


def test_a_worker_given_gpus_cuda_cannot_see_fails_saying_so(tmp_path: Path) -> None:
    done = _run(tmp_path, "1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "epoch" not in done.stdout  # nothing trained on CPU instead
    message = (tmp_path / "termination-log").read_text()
    assert message.startswith("error: the worker was given 1 GPU(s) (TRAINYARD_GPUS)")
    assert "CUDA sees none" in message
