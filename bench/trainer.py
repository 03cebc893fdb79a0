"""Trainer benchmark: prints ratios measured in one run on this machine (no assertions).

    .venv/bin/python bench/trainer.py            # about ten minutes on 2 shared cores

1. 1-process DDP (the trainer's own loop, all-reduce hook included) vs a plain PyTorch loop
   on the same model and batches — target >= 0.95 (PyTorch's own figure: 0.97).
2. 2 processes vs 1 under torchrun (global samples/s of the trainer, gloo) — 2.0 is ideal.
3. int8 (dynamic) vs fp32 CPU inference latency: mlp, and the transformer at its default
   width (128) and at width 512 — target for the transformer <= 0.67.
4. Bytes on disk: int8 / fp32 and pruned-50%-sparse / dense.
5. Distillation: the share of the teacher-student accuracy gap that KD recovers,
   (kd - student alone) / (teacher - student alone), for quarter- and tenth-width digits
   students and a quarter-width text transformer (Hinton et al. report ~90% on MNIST).

Latencies interleave the two sides and keep each side's best run; the DDP comparison
interleaves steps. Either way other work on the machine inflates both sides alike rather
than whichever ran during a burst. The trainer tests (tests/trainer) assert behaviour; this
script only measures.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
import torch.distributed as dist
import torch.nn.functional as F  # noqa: N812
from torch import nn

from trainyard_trainer.artifacts import save_dense, save_quantized, save_sparse
from trainyard_trainer.checkpoint import TrainState
from trainyard_trainer.compression import prune as prune_stage
from trainyard_trainer.compression.distill import kd_step
from trainyard_trainer.config import DistillConfig, PruneConfig
from trainyard_trainer.datasets import DataBundle, load_dataset
from trainyard_trainer.distributed import DistContext
from trainyard_trainer.metrics import Progress
from trainyard_trainer.models import ModelSpec, build_model, count_parameters
from trainyard_trainer.quantization import dynamic_int8, quiet_quantized
from trainyard_trainer.train import (
    LoopConfig,
    classification_step,
    fit,
    make_optimizer,
    wrap,
)

ROWS: list[tuple[str, str, str]] = []


def report(name: str, value: float | str, target: str = "") -> None:
    text = f"{value:.3f}" if isinstance(value, float) else value
    ROWS.append((name, text, target))
    print(f"  {name:<78} {text:>14}  {target}", flush=True)


def group() -> DistContext:
    store = dist.HashStore()  # type: ignore[attr-defined]
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    return DistContext(0, 1, 0, 1, "gloo", torch.device("cpu"))


def loop_for(ctx: DistContext, bundle: DataBundle, batch: int = 64) -> LoopConfig:
    return LoopConfig(ctx, bundle, batch, "fp32", 0, Progress(1, verbose=False))


def train(
    ctx: DistContext, bundle: DataBundle, model: nn.Module, epochs: int, step=None
) -> tuple[nn.Module, float]:
    """Train with the trainer's own loop; returns the model and its final test accuracy."""
    loop = loop_for(ctx, bundle, 32)
    wrapped = wrap(model, loop, "ddp")
    optimizer = make_optimizer("adam", list(wrapped.parameters()), 1e-3)
    steps = epochs * -(-len(bundle.train_x) // 32)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    state = fit(
        wrapped,
        optimizer,
        scheduler,
        loop,
        state=TrainState(),
        epochs=epochs,
        step_fn=(step or classification_step)(wrapped),
    )
    return model.eval(), state.history[-1]["accuracy"]


# --- 1. DDP (1 process) vs a plain loop ------------------------------------------------------


def ddp_vs_plain(ctx: DistContext, batch: int) -> None:
    """Alternate one plain step and one DDP step (what `train.fit` does per step: DDP as
    `train.wrap` sets it up, scheduler, metrics), so load from other work hits both alike.

    Which side goes first swaps every step (the second one finds warmer caches), and the
    ratio is printed two ways: total time (samples/s over the run) and median step time,
    which a burst of other work on these shared cores barely moves.
    """
    bundle = load_dataset("synthetic")
    spec = ModelSpec(bundle.input_shape, bundle.num_classes)
    torch.manual_seed(0)
    plain = build_model("mlp", spec)
    loop = loop_for(ctx, bundle)
    wrapped = wrap(copy.deepcopy(plain), loop, "ddp")
    plain_opt = make_optimizer("adam", list(plain.parameters()), 1e-3)  # the same (fused) Adam
    opt = make_optimizer("adam", list(wrapped.parameters()), 1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10_000)
    step_fn = classification_step(wrapped)
    loss_sum = torch.zeros((), dtype=torch.float64)

    def plain_step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(plain(x), y)
        plain_opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        plain_opt.step()

    def ddp_step(x: torch.Tensor, y: torch.Tensor) -> None:
        nonlocal loss_sum
        loss, _ = step_fn(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
        loss_sum += loss.detach().double() * len(y)
        loop.progress.step(len(y))

    n = len(bundle.train_x)
    times: dict[str, list[float]] = {"plain": [], "ddp": []}
    sides = [("plain", plain_step), ("ddp", ddp_step)]
    for epoch in range(4):
        order = torch.randperm(n)
        for step, i in enumerate(range(0, n - batch + 1, batch)):
            sel = order[i : i + batch]
            x, y = bundle.train_x[sel], bundle.train_y[sel]
            for name, fn in sides if step % 2 else reversed(sides):
                start = time.perf_counter()
                fn(x, y)
                if epoch > 0:  # the first epoch warms allocators and kernels
                    times[name].append(time.perf_counter() - start)
    float(loss_sum)  # what fit reads once per epoch
    total = sum(times["plain"]) / sum(times["ddp"])
    median = statistics.median(times["plain"]) / statistics.median(times["ddp"])
    report(
        f"1-process DDP / plain loop (mlp 784-512-256-128-10, batch {batch}): samples/s, median",
        f"{total:.3f}, {median:.3f}",
        ">= 0.95",
    )


# --- 2. 2 processes vs 1 ------------------------------------------------------------------


def torchrun_throughput(nproc: int, workdir: Path, batch: int) -> float:
    out = workdir / f"np{nproc}-b{batch}"
    config = {"trainer": {"model": "mlp", "dataset": "synthetic", "epochs": 3, "batchSize": batch}}
    env = {
        **os.environ,
        "TRAINYARD_CONFIG": json.dumps(config),
        "TRAINYARD_OUTPUT_DIR": str(out),
        "TRAINYARD_TERMINATION_LOG": str(workdir / "termination-log"),
        "OMP_NUM_THREADS": "1",
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            "-m",
            "trainyard_trainer",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    history = json.loads((out / "results.json").read_text())["history"]
    return max(h["samplesPerSecond"] for h in history[1:])


def scaling() -> None:
    for batch in (64, 256):  # per process; larger batches amortize each all-reduce
        with tempfile.TemporaryDirectory() as tmp:
            one = torchrun_throughput(1, Path(tmp), batch)
            two = torchrun_throughput(2, Path(tmp), batch)
        report(
            f"torchrun 2 processes / 1 process (global samples/s, gloo, batch {batch})",
            two / one,
            f"2.0 ideal on {os.cpu_count()} idle cores",
        )


# --- 3. int8 vs fp32 latency ----------------------------------------------------------------


@torch.no_grad()
def best_ms(models: list[nn.Module], x: torch.Tensor, runs: int = 60) -> list[float]:
    best = [float("inf")] * len(models)
    with quiet_quantized():
        for model in models:
            for _ in range(3):
                model(x)
        for _ in range(runs):
            for i, model in enumerate(models):
                start = time.perf_counter()
                model(x)
                best[i] = min(best[i], time.perf_counter() - start)
    return [b * 1000 for b in best]


def latency() -> None:
    torch.manual_seed(0)
    mlp = build_model("mlp", ModelSpec((1, 28, 28), 10)).eval()
    fp, q = best_ms([mlp, dynamic_int8(mlp)], torch.randn(64, 1, 28, 28))
    report(f"int8 / fp32 latency, mlp, 64 images ({fp:.2f} ms fp32)", q / fp)
    for scale, label in ((1.0, "default width 128"), (4.0, "width 512")):
        gpt = build_model("transformer", ModelSpec((64,), 256, 64, scale=scale)).eval()
        fp, q = best_ms([gpt, dynamic_int8(gpt)], torch.randint(0, 256, (1, 64)))
        report(
            f"int8 / fp32 latency, transformer {label}, 1x64 tokens ({fp:.2f} ms)",
            q / fp,
            "<= 0.67",
        )


# --- 4 and 5. sizes, and distillation on digits and text ----------------------------------


def sizes_and_distillation(ctx: DistContext) -> None:
    digits = load_dataset("digits")
    spec = ModelSpec(digits.input_shape, digits.num_classes)
    torch.manual_seed(0)
    teacher, teacher_acc = train(ctx, digits, build_model("mlp", spec), 12)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        dense = save_dense(d / "dense.pt", teacher, "mlp", spec)
        int8 = save_quantized(d / "int8.pt", dynamic_int8(teacher), "mlp", spec, "dynamic")
        pruned = copy.deepcopy(teacher)
        layers = prune_stage.apply_masks(pruned, PruneConfig(amount=0.5))
        for layer in layers:
            torch.nn.utils.prune.remove(layer, "weight")  # type: ignore[no-untyped-call]
        sparse = save_sparse(d / "sparse.pt", pruned, "mlp", spec)
        gpt = build_model("transformer", ModelSpec((64,), 256, 64))
        gpt_spec = ModelSpec((64,), 256, 64)
        gpt_dense = save_dense(d / "gpt.pt", gpt, "transformer", gpt_spec)
        gpt_int8 = save_quantized(
            d / "gpt8.pt", dynamic_int8(gpt), "transformer", gpt_spec, "dynamic"
        )
    report("bytes: int8 / fp32, digits mlp", int8 / dense, "<= 0.30")
    report("bytes: int8 / fp32, transformer (embeddings stay fp32)", gpt_int8 / gpt_dense)
    report("bytes: 50% pruned, values + bitmask / dense, digits mlp", sparse / dense, "<= 0.65")

    # Digits: the teacher barely beats a quarter-width student, so there is little to recover;
    # a 1/10-width student (bottleneck 13 units) opens a gap of several points.
    for scale in (0.25, 0.1):
        distillation(
            ctx,
            "digits mlp",
            bundle=digits,
            teacher=teacher,
            teacher_acc=teacher_acc,
            spec=spec,
            family="mlp",
            scale=scale,
            epochs=12,
            settings=((4.0, 0.7), (1.0, 0.9)),
            check_alpha_zero=scale == 0.25,
        )
    # Text: a teacher trained 3 epochs against a quarter-width student (44k parameters) trained
    # 6 epochs (KD's share grows with the student's epochs: about +0.09 at 3, +0.18 at 6).
    # Language models distill at T=1: over 256 next bytes a softened distribution is close to
    # uniform and drowns the label (the CRD default T=4 is shown next to it).
    text = load_dataset("text", model="transformer")
    gpt_spec = ModelSpec(text.input_shape, text.num_classes, text.input_shape[0])
    torch.manual_seed(0)
    gpt_teacher, gpt_acc = train(ctx, text, build_model("transformer", gpt_spec), 3)
    distillation(
        ctx,
        "text transformer",
        bundle=text,
        teacher=gpt_teacher,
        teacher_acc=gpt_acc,
        spec=gpt_spec,
        family="transformer",
        scale=0.25,
        epochs=6,
        settings=((1.0, 0.9), (4.0, 0.7)),
    )


def distillation(
    ctx: DistContext,
    label: str,
    *,
    bundle: DataBundle,
    teacher: nn.Module,
    teacher_acc: float,
    spec: ModelSpec,
    family: str,
    scale: float,
    epochs: int,
    settings: tuple[tuple[float, float], ...],
    check_alpha_zero: bool = False,
) -> None:
    """A student at `scale` of the widths trained alone vs with KD at each (temperature,
    alpha) of `settings`: same seed (same initial student), same batches, same epochs.

    With `check_alpha_zero`, KD with alpha = 0 (labels only, the teacher still run) is shown
    to land exactly on the student alone, so any difference is the soft targets' doing.
    """
    student_spec = replace(spec, scale=scale, dropout=0.0)
    torch.manual_seed(1)
    student, alone = train(ctx, bundle, build_model(family, student_spec), epochs)
    gap = teacher_acc - alone
    name = f"{label}: teacher / student x{scale:g} alone ({count_parameters(student)} params)"
    report(name, f"{teacher_acc:.3f}/{alone:.3f}")
    runs = ((4.0, 0.0), *settings) if check_alpha_zero else settings
    for temperature, alpha in runs:
        config = DistillConfig(scale, temperature, alpha, epochs)
        torch.manual_seed(1)
        _, kd = train(
            ctx,
            bundle,
            build_model(family, student_spec),
            epochs,
            step=lambda s, cfg=config: kd_step(s, teacher, cfg),
        )
        if alpha == 0.0:
            report(
                f"{label}: x{scale:g} KD alpha=0 (labels only) == student alone", str(kd == alone)
            )
            continue
        name = f"{label}: x{scale:g} KD T={temperature:g} a={alpha:g}: acc, share of gap recovered"
        share = f"{(kd - alone) / gap:+.2f}" if gap > 0.005 else "no gap"
        report(name, f"{kd:.3f}, {share}", "~0.9 (Hinton, MNIST)")


def main() -> None:
    torch.set_num_threads(1)
    print(f"trainer bench: torch {torch.__version__}, {os.cpu_count()} cores, 1 thread per process")
    ctx = group()
    try:
        for batch in (64, 256):  # DDP's fixed per-step cost weighs less on longer steps
            ddp_vs_plain(ctx, batch)
        latency()
        sizes_and_distillation(ctx)
    finally:
        dist.destroy_process_group()
    scaling()


if __name__ == "__main__":
    main()
