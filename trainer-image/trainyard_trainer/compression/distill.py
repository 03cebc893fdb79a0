"""The distill stage: train a narrower student of the same family against the current model.

The student is `models.build_model` at `studentScale` of the teacher's widths. Its loss is
Hinton et al.'s: alpha * T^2 * KL(student/T || teacher/T) + (1 - alpha) * cross-entropy,
trained with DDP like the teacher was; the teacher only runs forward. The student replaces
the model for the stages after this one (quantize then shrinks the student).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from torch import nn

from trainyard_trainer.artifacts import save_dense
from trainyard_trainer.compression.base import StageContext, StageOutput, sparsity, train_stage
from trainyard_trainer.config import DistillConfig
from trainyard_trainer.models import ModelSpec, build_model, count_parameters
from trainyard_trainer.train import StepFn


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Soft-target KL (scaled by T^2 so its gradients match the hard loss) plus hard CE."""
    classes = student_logits.shape[-1]
    s = student_logits.reshape(-1, classes).float()
    t = teacher_logits.reshape(-1, classes).float()
    soft = F.kl_div(
        F.log_softmax(s / temperature, dim=-1),
        F.log_softmax(t / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (temperature**2)
    hard = F.cross_entropy(s, targets.reshape(-1))
    return alpha * soft + (1.0 - alpha) * hard


def kd_step(student: nn.Module, teacher: nn.Module, settings: DistillConfig) -> StepFn:
    """The distill stage's train step: the teacher's logits on the same batch, without grad.

    The teacher is put in eval mode here, not only by the caller: with its dropout on, the
    soft targets would be a different noisy sample every step.
    """
    teacher.eval()

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            teacher_logits = teacher(x)
        logits = student(x)
        return kd_loss(logits, teacher_logits, y, settings.temperature, settings.alpha), logits

    return step


def build_student(ctx: StageContext, scale: float) -> tuple[nn.Module, ModelSpec]:
    # No dropout in the student: the teacher's soft targets already regularize it (Hinton et
    # al.), and dropping units from a layer a quarter as wide costs more than it saves.
    spec = replace(ctx.spec, scale=ctx.spec.scale * scale, dropout=0.0)
    # Same seed on every rank: identical initial students (DDP would broadcast anyway).
    torch.manual_seed(ctx.loop.seed + 1)
    return build_model(ctx.model_name, spec), spec


def run(settings: DistillConfig, model: nn.Module, ctx: StageContext) -> StageOutput:
    loop = ctx.loop
    teacher = model.to(loop.ctx.device).eval()
    student, spec = build_student(ctx, settings.student_scale)
    train_stage(
        ctx,
        student,
        "distill",
        settings.epochs,
        lambda wrapped: kd_step(wrapped, teacher, settings),
    )
    student.eval()
    path = ctx.output / "model-distilled.pt"
    size = save_dense(path, student, ctx.model_name, spec) if loop.ctx.is_main else 0
    torch.distributed.barrier()
    return StageOutput(
        model=student,
        spec=spec,
        artifact=path,
        model_bytes=size,
        parameters=count_parameters(student),
        sparsity=sparsity(student),
    )
