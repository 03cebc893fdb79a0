"""The distillation loss and step (compression/distill.py) are Hinton et al.'s, term by term.

Each test pins one of the ways a KD implementation goes wrong without crashing (alpha on the
wrong term, no T² factor, a language-model loss summed per window instead of averaged per
token, a teacher that gets gradients or keeps its dropout on) and would make distillation
look useless in bench/trainer.py. Pure tensor code: no processes, milliseconds each.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from trainyard_trainer.compression.distill import kd_loss, kd_step
from trainyard_trainer.config import DistillConfig


def logits(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_alpha_zero_is_plain_cross_entropy_and_alpha_weights_the_soft_term() -> None:
    student, teacher = logits(32, 10, seed=0), logits(32, 10, seed=1)
    labels = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(2))
    hard = float(F.cross_entropy(student, labels))
    assert float(kd_loss(student, teacher, labels, 4.0, 0.0)) == pytest.approx(hard, rel=1e-5)
    # A student that already matches the teacher has nothing left to learn from it.
    assert float(kd_loss(teacher, teacher, labels, 4.0, 1.0)) == pytest.approx(0.0, abs=1e-5)
    assert float(kd_loss(student, teacher, labels, 4.0, 1.0)) > 0.05


def test_soft_gradients_keep_their_size_as_the_temperature_grows() -> None:
    # Softening by T shrinks the KL's gradients by 1/T²; the T² factor undoes that, so the
    # temperature changes what is learned, not how fast (without it: 16x apart from 4 to 16).
    teacher = logits(64, 10, seed=3)
    start = teacher + 0.5 * logits(64, 10, seed=4)
    labels = torch.zeros(64, dtype=torch.long)
    norms = []
    for temperature in (4.0, 8.0, 16.0):
        student = start.clone().requires_grad_()
        kd_loss(student, teacher, labels, temperature, 1.0).backward()  # type: ignore[no-untyped-call]
        assert student.grad is not None
        norms.append(float(student.grad.norm()))
    assert max(norms) / min(norms) < 1.3


def test_language_model_loss_is_a_mean_over_tokens() -> None:
    # (windows, tokens, vocabulary): every token counts once, whatever the window length.
    student, teacher = logits(4, 16, 256, seed=5), logits(4, 16, 256, seed=6)
    labels = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(7))
    whole = float(kd_loss(student, teacher, labels, 2.0, 0.5))
    per_window = [float(kd_loss(student[i], teacher[i], labels[i], 2.0, 0.5)) for i in range(4)]
    per_token = [
        float(kd_loss(student[i, j : j + 1], teacher[i, j : j + 1], labels[i, j : j + 1], 2.0, 0.5))
        for i in range(4)
        for j in range(16)
    ]
    assert whole == pytest.approx(sum(per_window) / 4, rel=1e-5)
    assert whole == pytest.approx(sum(per_token) / 64, rel=1e-5)


def test_teacher_runs_without_dropout_and_gets_no_gradient() -> None:
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(8, 32), nn.Dropout(0.5), nn.Linear(32, 4))  # train mode
    student = nn.Linear(8, 4)
    step = kd_step(student, teacher, DistillConfig(temperature=4.0, alpha=0.7))
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    first, _ = step(x, y)
    second, _ = step(x, y)
    assert float(first.detach()) == float(
        second.detach()
    )  # same soft targets every time: dropout is off
    first.backward()  # type: ignore[no-untyped-call]
    assert all(p.grad is None for p in teacher.parameters())
    assert student.weight.grad is not None and float(student.weight.grad.abs().sum()) > 0
