"""Checkpoint files: atomic, the newest K kept, a damaged newest one skipped."""

from __future__ import annotations

from pathlib import Path

import torch

from trainyard_trainer.checkpoint import (
    Checkpointer,
    TrainState,
    capture_rng,
    fingerprint,
    restore_rng,
)
from trainyard_trainer.config import TrainerConfig

KEY = fingerprint("ns", "job", TrainerConfig())


def test_keep_k_and_fall_back_past_a_damaged_file(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "ckpt", every_epochs=1, keep=2, key=KEY)
    for epoch in (1, 2, 3):
        ckpt.save({"model": {"w": torch.full((3,), float(epoch))}}, TrainState(epoch=epoch))
    names = [p.name for p in ckpt.paths()]
    assert names == [f"ckpt-e00002-s0000000-{KEY}.pt", f"ckpt-e00003-s0000000-{KEY}.pt"]
    assert not list((tmp_path / "ckpt").glob(".tmp-*"))  # no temp files left behind

    ckpt.paths()[-1].write_bytes(b"torn write")
    found = ckpt.load_latest()
    assert found is not None
    path, payload = found
    assert path.name == f"ckpt-e00002-s0000000-{KEY}.pt"
    assert payload["state"]["epoch"] == 2
    assert payload["model"]["w"].tolist() == [2.0, 2.0, 2.0]


def test_mid_epoch_checkpoint_sorts_after_its_epoch(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path, every_epochs=1, keep=5, key=KEY)
    ckpt.save({}, TrainState(epoch=2))
    ckpt.save({}, TrainState(epoch=2, step_in_epoch=17))
    found = ckpt.load_latest()
    assert found is not None and found[1]["state"]["step_in_epoch"] == 17


def test_checkpoints_of_another_job_or_config_are_neither_loaded_nor_rotated(
    tmp_path: Path,
) -> None:
    # two jobs on one volume, and the same name re-created with another learning rate
    other_job = Checkpointer(tmp_path, 1, 1, fingerprint("ns", "other", TrainerConfig()))
    changed = Checkpointer(
        tmp_path, 1, 1, fingerprint("ns", "job", TrainerConfig(learning_rate=0.1))
    )
    assert len({KEY, other_job.key, changed.key}) == 3
    # more epochs is the same run, continued
    assert fingerprint("ns", "job", TrainerConfig(epochs=99)) == KEY
    other_job.save({}, TrainState(epoch=7))
    changed.save({}, TrainState(epoch=9))
    mine = Checkpointer(tmp_path, 1, 1, KEY)
    assert mine.load_latest() is None
    assert len(mine.foreign()) == 2
    mine.save({}, TrainState(epoch=1))  # keep=1 rotates only its own files
    assert len(list(tmp_path.glob("ckpt-*.pt"))) == 3
    found = mine.load_latest()
    assert found is not None and found[1]["state"]["epoch"] == 1


def test_rng_state_round_trips() -> None:
    import random

    import numpy as np

    state = capture_rng()
    expected = (torch.rand(3), np.random.rand(), random.random())
    restore_rng(state)
    again = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]
