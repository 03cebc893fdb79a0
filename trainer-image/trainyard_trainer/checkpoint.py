"""Checkpoints: one state object, written atomically, the newest K kept, resumed on start.

A checkpoint is a single `torch.save`d dict: the model and optimizer as full (unsharded)
state dicts in torch.distributed.checkpoint's FQN form (so DDP and FSDP2 runs save the same
thing), the LR scheduler, and `TrainState` — epochs done, batches done in the epoch in
progress (a SIGTERM can land mid-epoch), the loss/accuracy history, and every rank's RNG
state (dropout and data order continue exactly). Only global rank 0 writes; it writes to a
temporary file in the same directory and renames it, so a crash mid-write never leaves a
torn checkpoint behind. `train.py` decides when to save; this module decides how.
Files hold only tensors and plain values, so they load with `weights_only=True`.

Checkpoints are keyed by who wrote them: the file name ends in a fingerprint of the job's
namespace and name and of its `spec.trainer` but epochs (`fingerprint`), so two jobs sharing one
volume, a job re-created under the same name with other hyperparameters, or two local runs
of different configs never resume from (or rotate away) each other's checkpoints. A run
that finds only other fingerprints starts fresh and says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from trainyard_trainer.logs import emit

_NAME = re.compile(r"^ckpt-e(\d{5})-s(\d{7})-([0-9a-f]{12})\.pt$")


def fingerprint(namespace: str, job: str, trainer: Any) -> str:
    """12 hex digits naming a job's identity and training config (a dataclass).

    `epochs` is left out: the same run given more epochs continues where it stopped (train
    longer); every other field (model, data, batch size, optimizer, learning rate, precision,
    strategy, seed) makes it another run.
    """
    config = {k: v for k, v in asdict(trainer).items() if k != "epochs"}
    canonical = json.dumps({"namespace": namespace, "job": job, "trainer": config}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # batches done in the epoch in progress
    global_step: int = 0
    first_loss: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    rng: list[dict[str, Any]] = field(default_factory=list)  # one entry per rank

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        return cls(**data)


def capture_rng() -> dict[str, Any]:
    """This process's RNG state as tensors and plain values (weights_only-loadable)."""
    np_state = cast(tuple[Any, ...], np.random.get_state())
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_rest": [int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": list(random.getstate()[1]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back a state from `capture_rng`."""
    torch.set_rng_state(state["torch"])
    pos, has_gauss, cached = state["numpy_rest"]
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(pos), int(has_gauss), float(cached)))
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: Path) -> int:
    """torch.save to a temp file beside `path`, fsync, rename; returns the bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path.stat().st_size


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small text file so readers see the old or the new content, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Checkpointer:
    """Saves and finds this run's checkpoints (its fingerprint) in `<output>/checkpoints`."""

    def __init__(self, directory: Path, every_epochs: int, keep: int, key: str) -> None:
        self.directory = directory
        self.every_epochs = every_epochs
        self.keep = keep
        self.key = key

    def due(self, epoch: int, total: int) -> bool:
        """Save after this (1-based) epoch? Always after the last one."""
        return epoch % self.every_epochs == 0 or epoch == total

    def _all(self) -> list[tuple[Path, str]]:
        if not self.directory.is_dir():
            return []
        found = ((p, _NAME.match(p.name)) for p in self.directory.iterdir())
        return sorted((p, m.group(3)) for p, m in found if m)

    def paths(self) -> list[Path]:
        """This run's checkpoints, oldest first (names sort by epoch, then step)."""
        return [p for p, key in self._all() if key == self.key]

    def foreign(self) -> list[Path]:
        """Checkpoints in the directory written by another job or another config."""
        return [p for p, key in self._all() if key != self.key]

    def save(self, payload: dict[str, Any], state: TrainState) -> Path:
        """Write one checkpoint and delete all but the newest `keep`."""
        name = f"ckpt-e{state.epoch:05d}-s{state.step_in_epoch:07d}-{self.key}.pt"
        path = self.directory / name
        atomic_save({**payload, "state": state.to_dict()}, path)
        for old in self.paths()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that loads; a damaged one falls back to the one before."""
        for path in reversed(self.paths()):
            try:
                payload = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # a torn file can fail anywhere inside the unpickler
                emit(f"[checkpoint] skipping unreadable {path.name}: {exc}", level="warning")
                continue
            return path, payload
        return None
