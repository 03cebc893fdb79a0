"""Fixtures for the trainer tests (helpers live in trainer_procs.py).

`trainer` starts real trainer processes in tmp_path and kills any still running at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from trainer_procs import TrainerRun, start_trainer


@pytest.fixture
def trainer(tmp_path: Path) -> Iterator[Any]:
    """Start trainers in tmp_path; every one still running at the end is killed."""
    runs: list[TrainerRun] = []

    def start(config: dict[str, Any], nproc: int = 1, name: str = "run", **kw: Any) -> TrainerRun:
        run = start_trainer(config, tmp_path / name / "output", nproc, **kw)
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.communicate(timeout=30)
