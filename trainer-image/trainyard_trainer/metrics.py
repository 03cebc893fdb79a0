"""Progress reporting: the trainer's Prometheus metrics and the per-epoch log line.

The metric names are the ones in docs/contracts.md; the operator scrapes them from local
rank 0 of every worker (that is how it fills `status.progress` without giving pods API
credentials). `Progress` owns one private registry so several trainers in one test process
never collide, serves it on TRAINYARD_METRICS_HOST:TRAINYARD_METRICS_PORT when the port is
set and non-zero, and keeps the whole-run ETA: training and every stage that trains count
as epochs, so `progress_ratio` runs 0..1 once over the run. `train.py` and the compression
stages call it; nothing here knows about models. Each epoch also goes to the run's TensorBoard
event files (`curves`, written by rank 0 only) with the same numbers.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from trainyard_trainer.curves import Curves
from trainyard_trainer.logs import emit

STAGE_NAMES = ("train", "prune", "distill", "quantize", "done")


class Progress:
    """Metrics registry + progress lines for one trainer process."""

    def __init__(self, total_epochs: int, *, verbose: bool, curves: Curves | None = None) -> None:
        self.verbose = verbose
        self.curves = curves or Curves(None)
        self.total_epochs = max(1, total_epochs)
        self.epochs_done = 0
        self.started = time.monotonic()
        self.epoch_seconds: list[float] = []
        self.registry = CollectorRegistry()
        r = self.registry
        self.stage = Gauge(
            "trainyard_trainer_stage", "1 for the running stage", ["stage"], registry=r
        )
        self.epoch = Gauge("trainyard_trainer_epoch", "Epochs completed in the stage", registry=r)
        self.epochs = Gauge("trainyard_trainer_epochs", "Epochs the stage will run", registry=r)
        self.ratio = Gauge(
            "trainyard_trainer_progress_ratio", "0..1 over the whole run", registry=r
        )
        self.eta = Gauge("trainyard_trainer_eta_seconds", "Seconds left for the run", registry=r)
        self.loss = Gauge("trainyard_trainer_loss", "Mean training loss, last epoch", registry=r)
        self.accuracy = Gauge(
            "trainyard_trainer_accuracy", "Last evaluation accuracy (all ranks)", registry=r
        )
        self.throughput = Gauge(
            "trainyard_trainer_samples_per_second", "Global samples/s, last epoch", registry=r
        )
        self.steps = Counter("trainyard_trainer_steps", "Optimizer steps", registry=r)
        self.step_compute = Counter(
            "trainyard_trainer_step_compute_seconds",
            "Seconds of optimizer steps spent computing, not waiting for the other ranks",
            registry=r,
        )
        #: perf_counter() when the running backward handed its last gradient bucket to the
        #: all-reduce (set by DDP's comm hook in train.py): from then on the step only waits
        self.gradients_ready = 0.0
        self.samples = Counter("trainyard_trainer_samples", "Samples on this process", registry=r)
        self.last_progress = Gauge(
            "trainyard_trainer_last_progress_timestamp_seconds",
            "Unix time of the last completed step",
            registry=r,
        )
        self.model_bytes = Gauge(
            "trainyard_trainer_model_bytes",
            "Model bytes on disk after a stage",
            ["stage"],
            registry=r,
        )
        self.sparsity = Gauge(
            "trainyard_trainer_sparsity_ratio", "Share of zero weights", ["stage"], registry=r
        )
        self.stage_accuracy = Gauge(
            "trainyard_trainer_stage_accuracy", "Accuracy after a stage", ["stage"], registry=r
        )
        self.allreduce = Histogram(
            "trainyard_trainer_allreduce_seconds",
            "Time in gradient all-reduce",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.current = "train"
        self.stage_epoch = 0  # epochs completed in the running stage (for the log lines)
        self.set_stage("train", 0)

    def serve_from_env(self) -> int | None:
        """Start the HTTP endpoint if TRAINYARD_METRICS_PORT is set and non-zero."""
        port = int(os.environ.get("TRAINYARD_METRICS_PORT", "0") or "0")
        if port <= 0:
            return None
        host = os.environ.get("TRAINYARD_METRICS_HOST", "0.0.0.0")
        start_http_server(port, addr=host, registry=self.registry)
        return port

    def set_stage(self, stage: str, epochs: int) -> None:
        self.current = stage
        for name in STAGE_NAMES:
            self.stage.labels(stage=name).set(1 if name == stage else 0)
        self.epoch.set(0)
        self.stage_epoch = 0
        self.epochs.set(epochs)

    def step(self, samples: int, *, compute_seconds: float = 0.0) -> None:
        """One optimizer step; `compute_seconds`: its time less its wait for other ranks.

        Under DDP every rank steps in lockstep, so each step takes as long on every worker
        and only the compute share tells the slow worker from those waiting for it (the
        operator's straggler check and the dashboard read it per worker).
        """
        self.steps.inc()
        self.samples.inc(samples)
        self.step_compute.inc(max(0.0, compute_seconds))
        self.last_progress.set(time.time())

    def eta_seconds(self) -> float:
        if not self.epoch_seconds:
            return 0.0
        per_epoch = sum(self.epoch_seconds[-5:]) / len(self.epoch_seconds[-5:])
        return max(0.0, (self.total_epochs - self.epochs_done) * per_epoch)

    def epoch_done(
        self,
        *,
        epoch: int,
        epochs: int,
        loss: float,
        accuracy: float,
        samples_per_second: float,
        seconds: float,
        learning_rate: float,
    ) -> None:
        """Record one finished epoch of the running stage and print its line."""
        self.epochs_done += 1
        self.epoch_seconds.append(seconds)
        self.epoch.set(epoch)
        self.stage_epoch = epoch
        self.loss.set(loss)
        self.accuracy.set(accuracy)
        self.throughput.set(samples_per_second)
        self.ratio.set(min(1.0, self.epochs_done / self.total_epochs))
        eta = self.eta_seconds()
        self.eta.set(eta)
        self.curves.epoch(
            self.current,
            self.epochs_done,
            loss=loss,
            accuracy=accuracy,
            samples_per_second=samples_per_second,
            learning_rate=learning_rate,
        )
        self.log(
            f"[{self.current}] epoch {epoch}/{epochs} loss {loss:.4f} acc {accuracy:.4f} "
            f"{samples_per_second:.0f} samples/s eta {eta:.0f}s"
        )

    def skip_epochs(self, count: int) -> None:
        """Epochs already done before a resume still count toward the run's progress."""
        self.epochs_done += count
        self.ratio.set(min(1.0, self.epochs_done / self.total_epochs))

    def stage_result(
        self, stage: str, *, accuracy: float, model_bytes: int, sparsity: float
    ) -> None:
        self.stage_accuracy.labels(stage=stage).set(accuracy)
        self.model_bytes.labels(stage=stage).set(model_bytes)
        self.sparsity.labels(stage=stage).set(sparsity)

    def finish(self) -> None:
        self.set_stage("done", 0)
        self.ratio.set(1.0)
        self.eta.set(0)
        self.curves.close()

    def log(self, line: str) -> None:
        """A line of local rank 0's, with the stage and epoch it is about (logs.py)."""
        if self.verbose:
            emit(line, stage=self.current, epoch=self.stage_epoch)
