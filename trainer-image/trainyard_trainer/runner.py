"""One whole trainer run: resume, train, checkpoint, compress, write results.

`run_job` is what `__main__` calls once the config has been checked, the dataset loaded and
the process group formed. It ties the parts together and owns nothing else: the loop is
`train.fit`, the state object and files are `checkpoint`, the stages are `compression`,
the reports are `metrics`, `curves` (TensorBoard) and `results`. The trained model is saved
as stage `train` (dense) so every stage's bytes, accuracy and latency compare against it.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from trainyard_trainer.artifacts import save_dense
from trainyard_trainer.checkpoint import (
    Checkpointer,
    TrainState,
    capture_rng,
    fingerprint,
    restore_rng,
)
from trainyard_trainer.compression import run_stages
from trainyard_trainer.compression.base import StageContext, cpu_latency_ms
from trainyard_trainer.config import JobConfig
from trainyard_trainer.curves import Curves, run_directory
from trainyard_trainer.datasets import DataBundle
from trainyard_trainer.distributed import DistContext, broadcast_object, gather_objects
from trainyard_trainer.logs import emit
from trainyard_trainer.metrics import Progress
from trainyard_trainer.models import ModelSpec, build_model, count_parameters
from trainyard_trainer.results import StageResult, Summary, write_results
from trainyard_trainer.train import (
    LoopConfig,
    StopSignal,
    classification_step,
    evaluate,
    fit,
    make_optimizer,
    wrap,
)


def output_dir(cfg: JobConfig) -> Path:
    """TRAINYARD_OUTPUT_DIR (set by the operator) wins over the config's output.path."""
    return Path(os.environ.get("TRAINYARD_OUTPUT_DIR") or cfg.output.path)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def parameter_digest(model: nn.Module) -> str:
    """sha256 over the parameters' bytes: equal digests mean equal replicas."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def latency_sample(bundle: DataBundle) -> torch.Tensor:
    """What CPU latency is measured on: 64 images, or one 64-token text window (64 rows
    through every Linear layer either way)."""
    return bundle.test_x[: 1 if bundle.kind == "tokens" else 64]


def run_job(cfg: JobConfig, bundle: DataBundle, ctx: DistContext, stop: StopSignal) -> Summary:
    t = cfg.trainer
    output = output_dir(cfg)
    if ctx.is_main:
        output.mkdir(parents=True, exist_ok=True)
    curves = Curves(run_directory(output, cfg.job) if ctx.is_main else None)
    progress = Progress(cfg.total_epochs(), verbose=ctx.is_local_main, curves=curves)
    if ctx.is_local_main:
        port = progress.serve_from_env()
        if port:
            progress.log(f"[metrics] serving on port {port}")
    progress.log(
        f"[trainyard] job {cfg.job}: {t.model} on {t.dataset} "
        f"({len(bundle.train_x)} train / {len(bundle.test_x)} test), {ctx.world_size} "
        f"process(es), {ctx.backend} on {ctx.device.type}, {t.strategy}, {t.epochs} epochs"
    )

    # Same seed everywhere for identical initial weights, then a per-rank stream for dropout.
    seed_everything(t.seed)
    block = bundle.train_x.shape[1] if bundle.kind == "tokens" else 0
    spec = ModelSpec(
        input_shape=bundle.input_shape, num_classes=bundle.num_classes, block_size=block
    )
    model = build_model(t.model, spec)
    seed_everything(t.seed + 1000 * ctx.rank)

    loop = LoopConfig(ctx, bundle, t.batch_size, t.precision, t.seed, progress, stop)
    wrapped = wrap(model, loop, t.strategy)
    optimizer = make_optimizer(t.optimizer, list(wrapped.parameters()), t.learning_rate)
    steps_per_epoch = -(-(len(bundle.train_x) // ctx.world_size) // t.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, t.epochs * steps_per_epoch)
    )
    checkpointer = Checkpointer(
        output / "checkpoints",
        cfg.checkpoint.every_epochs,
        cfg.checkpoint.keep,
        fingerprint(cfg.namespace, cfg.job, t),
    )
    full = StateDictOptions(full_state_dict=True, cpu_offload=True)

    state = TrainState()
    found = checkpointer.load_latest() if ctx.is_main else None
    if ctx.is_main and found is None and (others := checkpointer.foreign()):
        progress.log(
            f"[checkpoint] starting fresh: the {len(others)} checkpoint(s) in "
            f"{checkpointer.directory} were written by another job or another spec.trainer "
            f"(fingerprint {checkpointer.key} is {cfg.namespace}/{cfg.job} with this config)"
        )
    resumed = broadcast_object((found[0].name, found[1]) if found is not None else None, ctx.device)
    resumed_from = None
    if resumed is not None:
        resumed_from, payload = resumed
        set_state_dict(
            wrapped,
            optimizer,
            model_state_dict=payload["model"],
            optim_state_dict=payload["optimizer"],
            options=StateDictOptions(full_state_dict=True),
        )
        scheduler.load_state_dict(payload["scheduler"])
        state = TrainState.from_dict(payload["state"])
        if len(state.rng) == ctx.world_size:
            restore_rng(state.rng[ctx.rank])
        progress.log(
            f"[checkpoint] resumed from {resumed_from} (epoch {state.epoch}, "
            f"step {state.step_in_epoch})"
        )
        progress.skip_epochs(state.epoch)

    def save_checkpoint(st: TrainState) -> None:
        model_sd, optim_sd = get_state_dict(wrapped, optimizer, options=full)
        st.rng = gather_objects(capture_rng())
        if ctx.is_main:
            path = checkpointer.save(
                {"model": model_sd, "optimizer": optim_sd, "scheduler": scheduler.state_dict()},
                st,
            )
            progress.log(f"[checkpoint] saved {path.name}")

    def epoch_end(st: TrainState) -> None:
        if checkpointer.due(st.epoch, t.epochs):
            save_checkpoint(st)

    started = time.perf_counter()
    progress.set_stage("train", t.epochs)
    fit(
        wrapped,
        optimizer,
        scheduler,
        loop,
        state=state,
        epochs=t.epochs,
        step_fn=classification_step(wrapped),
        on_epoch_end=epoch_end,
        on_preempt=save_checkpoint,
    )
    train_seconds = time.perf_counter() - started

    # Every rank's own replica (DDP) or the gathered whole model (FSDP): equal digests on
    # every rank are the user-visible proof that the replicas stayed in step.
    gathered = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True))
    trained = build_model(t.model, spec)
    trained.load_state_dict(gathered)
    trained = trained.to(ctx.device).eval()
    local = wrapped.module if isinstance(wrapped, nn.parallel.DistributedDataParallel) else trained
    emit(f"[rank {ctx.rank}] parameters sha256 {parameter_digest(local)}")

    _, accuracy = evaluate(trained, bundle, ctx)
    path = output / "model-trained.pt"
    size = save_dense(path, trained, t.model, spec) if ctx.is_main else 0
    sample = latency_sample(bundle)
    summary = Summary(
        job=cfg.job,
        world_size=ctx.world_size,
        history=state.history,
        first_loss=state.first_loss,
        resumed_from=resumed_from,
    )
    summary.stages.append(
        StageResult(
            name="train",
            accuracy=accuracy,
            parameters=count_parameters(trained),
            model_bytes=size,
            sparsity=0.0,
            seconds=train_seconds,
            latency_ms=cpu_latency_ms(trained, sample) if ctx.is_main else 0.0,
            artifact=str(path),
        )
    )
    progress.stage_result("train", accuracy=accuracy, model_bytes=size, sparsity=0.0)

    stage_ctx = StageContext(loop=loop, trainer=t, model_name=t.model, spec=spec, output=output)
    run_stages(cfg.compression, trained, stage_ctx, sample, summary.stages.append)

    final = output / "model-final.pt"
    summary.artifact_path = str(final)
    if ctx.is_main:
        staging = final.with_name(f".tmp-{final.name}")
        shutil.copyfile(summary.stages[-1].artifact, staging)
        os.replace(staging, final)  # readers never see a half-copied final model
        results = write_results(summary, output)
        progress.log(f"[trainyard] done: accuracy {summary.stages[-1].accuracy:.4f}, {results}")
    progress.finish()
    dist.barrier()
    return summary
