"""What every compression stage receives and returns, and how a stage is measured.

A stage is a function `(settings, model, StageContext) -> StageOutput` registered by name
in `compression/__init__.py`. It gets a plain (unwrapped) trained model, may train with
DDP through `train.fit`, and returns the new model plus the artifact it saved. The runner
then measures every stage the same way with the helpers here: accuracy (all-reduced, via
`train.evaluate`), parameter count, share of zero weights, and CPU inference latency.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from trainyard_trainer.checkpoint import TrainState
from trainyard_trainer.config import TrainerConfig
from trainyard_trainer.models import ModelSpec
from trainyard_trainer.quantization import quiet_quantized
from trainyard_trainer.train import LoopConfig, StepFn, fit, make_optimizer, wrap

LATENCY_RUNS = 20


@dataclass
class StageContext:
    """The run's shared pieces that a stage may use."""

    loop: LoopConfig
    trainer: TrainerConfig
    model_name: str
    spec: ModelSpec
    output: Path


@dataclass
class StageOutput:
    """A stage's result before measurement."""

    model: nn.Module
    spec: ModelSpec
    artifact: Path
    model_bytes: int
    parameters: int
    sparsity: float
    on_cpu: bool = False  # int8 models only run on CPU


def prunable(model: nn.Module) -> list[nn.Module]:
    """The layers whose weights pruning and sparsity are about: Linear and Conv2d."""
    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def sparsity(model: nn.Module) -> float:
    """Share of exactly-zero weights over the prunable layers."""
    zeros = total = 0
    for module in prunable(model):
        weight = module.weight
        if isinstance(weight, torch.Tensor):
            zeros += int((weight == 0).sum())
            total += weight.numel()
    return zeros / total if total else 0.0


def train_stage(
    ctx: StageContext,
    model: nn.Module,
    stage: str,
    epochs: int,
    step_for: Callable[[nn.Module], StepFn],
) -> None:
    """Train `model` in place for a stage's epochs with DDP, reporting progress as `stage`.

    The job's optimizer and learning rate, cosine-annealed over the stage's steps; a fresh
    train state (stages are not checkpointed mid-way). `step_for` gets the DDP-wrapped model.
    """
    ctx.loop.progress.set_stage(stage, epochs)
    wrapped = wrap(model, ctx.loop, "ddp")
    optimizer = make_optimizer(
        ctx.trainer.optimizer, list(wrapped.parameters()), ctx.trainer.learning_rate
    )
    per_rank = len(ctx.loop.bundle.train_x) // ctx.loop.ctx.world_size
    steps = max(1, epochs * -(-per_rank // ctx.loop.batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    fit(
        wrapped,
        optimizer,
        scheduler,
        ctx.loop,
        state=TrainState(),
        epochs=epochs,
        step_fn=step_for(wrapped),
    )


@torch.no_grad()
def cpu_latency_ms(model: nn.Module, sample: torch.Tensor) -> float:
    """Median milliseconds of one forward pass over `sample` on CPU (eval mode)."""
    work = copy.deepcopy(model).cpu().eval()
    sample = sample.cpu()
    times = []
    with quiet_quantized():
        for i in range(LATENCY_RUNS + 3):
            start = time.perf_counter()
            work(sample)
            if i >= 3:  # the first calls allocate and pick kernels
                times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0
