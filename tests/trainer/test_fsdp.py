"""strategy: fsdp (FSDP2 fully_shard) trains on CPU with gloo and resumes from its checkpoint."""

from __future__ import annotations

import re

import pytest
from trainer_procs import DIGITS

pytestmark = pytest.mark.timeout(240)


def test_fsdp_two_processes_train_and_resume(trainer) -> None:
    config = {"trainer": {**DIGITS, "epochs": 3, "strategy": "fsdp"}}
    first = trainer(config, nproc=2, name="fsdp")
    assert first.finish() == 0, first.text
    assert "ddp," not in first.text and ", fsdp," in first.text
    assert first.results()["accuracy"] >= 0.9

    more = {"trainer": {**config["trainer"], "epochs": 5}}
    again = trainer(more, nproc=2, name="fsdp")  # same output: picks up the sharded run
    assert again.finish() == 0, again.text
    # more epochs is the same run continued (the fingerprint leaves epochs out)
    assert again.results()["resumedFrom"].startswith("ckpt-e00003-s0000000-")
    assert "[train] epoch 4/5" in again.text and "[train] epoch 1/5" not in again.text
    # The gathered model is the same on both ranks.
    digests = set(re.findall(r"parameters sha256 ([0-9a-f]{64})", again.text))
    assert len(digests) == 1
    assert again.results()["accuracy"] >= first.results()["accuracy"] - 0.01
