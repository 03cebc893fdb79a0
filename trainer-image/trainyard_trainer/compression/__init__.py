"""Compression stages by name, and the runner that applies them in the declared order.

Each stage module (`prune`, `distill`, `quantize`) exposes `run(settings, model, ctx)`;
`STAGES` registers them by the name used in the TrainingJob's `compression` list.
`run_stages` chains them (each gets the previous stage's model) and measures every stage
the same way, so the per-stage results in `results.py` compare like with like.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from trainyard_trainer.compression import distill, prune, quantize
from trainyard_trainer.compression.base import StageContext, StageOutput, cpu_latency_ms
from trainyard_trainer.config import Stage
from trainyard_trainer.results import StageResult
from trainyard_trainer.train import evaluate

StageFn = Callable[[Any, nn.Module, StageContext], StageOutput]

STAGES: dict[str, StageFn] = {
    "prune": prune.run,
    "distill": distill.run,
    "quantize": quantize.run,
}


def run_stages(
    stages: tuple[Stage, ...],
    model: nn.Module,
    ctx: StageContext,
    latency_sample: torch.Tensor,
    on_result: Callable[[StageResult], None],
) -> tuple[nn.Module, StageContext]:
    """Run `stages` in order from `model`; returns the last model and its context."""
    loop = ctx.loop
    for stage in stages:
        started = time.perf_counter()
        out = STAGES[stage.name](stage.config, model, ctx)
        seconds = time.perf_counter() - started
        device = torch.device("cpu") if out.on_cpu else loop.ctx.device
        _, accuracy = evaluate(out.model, loop.bundle, loop.ctx, precision="fp32", device=device)
        latency = cpu_latency_ms(out.model, latency_sample) if loop.ctx.is_main else 0.0
        result = StageResult(
            name=stage.name,
            accuracy=accuracy,
            parameters=out.parameters,
            model_bytes=out.model_bytes,
            sparsity=out.sparsity,
            seconds=seconds,
            latency_ms=latency,
            artifact=str(out.artifact),
        )
        loop.progress.stage_result(
            stage.name, accuracy=accuracy, model_bytes=out.model_bytes, sparsity=out.sparsity
        )
        loop.progress.log(
            f"[{stage.name}] accuracy {accuracy:.4f} parameters {out.parameters} "
            f"bytes {out.model_bytes} sparsity {out.sparsity:.2f} "
            f"latency {latency:.2f}ms ({seconds:.1f}s)"
        )
        on_result(result)
        model = out.model
        ctx = replace(ctx, spec=out.spec)
    return model, ctx
