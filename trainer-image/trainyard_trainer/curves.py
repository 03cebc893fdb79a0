"""TensorBoard event files: one point per epoch of every stage that trains, written by rank 0.

The run's curves go to `<output>/tensorboard/<job>` (trainer-image/README.md), so
`tensorboard --logdir <output>/tensorboard` shows every job that wrote to the same volume as
its own run. Tags are `<stage>/loss`, `<stage>/accuracy`, `<stage>/samples_per_second` and
`<stage>/learning_rate` (`train`, `prune`, `distill`); the step is the epoch's number over the
whole run (training, then each stage that trains), so the stages line up on one axis and
a resumed run continues where its checkpoint left off.

Only the global main process writes: the numbers are already all-reduced, and several
writers would interleave event files in one directory. `metrics.Progress` feeds it, so the
event files, the metrics page and the log line report the same epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Seconds between the writer's own flushes; every epoch also flushes, so a live
#: TensorBoard sees each point as soon as the epoch ends.
FLUSH_SECONDS = 30


def run_directory(output: Path, job: str) -> Path:
    """Where one job's event files go: `<output>/tensorboard/<job>`."""
    return output / "tensorboard" / job


class Curves:
    """A lazily opened `SummaryWriter`; a no-op where `directory` is None (ranks other than 0).

    The writer opens at the first point, with that point's step as TensorBoard's purge step:
    a run resumed from a checkpoint hides what a killed attempt wrote after that checkpoint,
    so every epoch keeps exactly one point.
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._writer: Any = None

    def epoch(
        self,
        stage: str,
        step: int,
        *,
        loss: float,
        accuracy: float,
        samples_per_second: float,
        learning_rate: float,
    ) -> None:
        writer = self._open(step)
        if writer is None:
            return
        for name, value in (
            ("loss", loss),
            ("accuracy", accuracy),
            ("samples_per_second", samples_per_second),
            ("learning_rate", learning_rate),
        ):
            writer.add_scalar(f"{stage}/{name}", value, global_step=step)
        writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open(self, first_step: int) -> Any:
        if self.directory is None:
            return None
        if self._writer is None:
            # Imported here: it costs seconds, and only the process that writes pays it.
            from torch.utils.tensorboard import SummaryWriter

            self.directory.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(
                log_dir=str(self.directory), purge_step=first_step, flush_secs=FLUSH_SECONDS
            )
        return self._writer
