"""The prune stage: magnitude pruning, fine-tuned with DDP, made permanent, stored sparse.

`global-unstructured` removes the smallest |w| across every Linear/Conv layer at once (layers
that matter keep more weights); `l1-structured` removes whole output rows/channels with the
smallest L1 norm in each layer except the classifier head (removing head rows would delete
classes). torch's pruning masks stay applied during fine-tuning, `prune.remove` then bakes
the zeros into the weights, and `artifacts.save_sparse` stores them as values + bitmask.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from trainyard_trainer.artifacts import save_sparse
from trainyard_trainer.compression.base import (
    StageContext,
    StageOutput,
    prunable,
    sparsity,
    train_stage,
)
from trainyard_trainer.config import PruneConfig
from trainyard_trainer.models import count_parameters
from trainyard_trainer.train import classification_step


def apply_masks(model: nn.Module, settings: PruneConfig) -> list[nn.Module]:
    """Attach pruning masks (weights become weight_orig * mask); returns the pruned layers."""
    layers = prunable(model)
    if settings.method == "global-unstructured":
        prune.global_unstructured(
            [(m, "weight") for m in layers],
            pruning_method=prune.L1Unstructured,
            amount=settings.amount,
        )
        return layers
    body = layers[:-1]  # the last Linear is the classifier / LM head
    for module in body:
        prune.ln_structured(  # type: ignore[no-untyped-call]
            module, "weight", amount=settings.amount, n=1, dim=0
        )
    return body


def run(settings: PruneConfig, model: nn.Module, ctx: StageContext) -> StageOutput:
    loop = ctx.loop
    model = model.to(loop.ctx.device)
    layers = apply_masks(model, settings)
    if settings.fine_tune_epochs > 0:
        train_stage(ctx, model, "prune", settings.fine_tune_epochs, classification_step)
    for module in layers:
        prune.remove(module, "weight")  # type: ignore[no-untyped-call]
    model.eval()
    path = ctx.output / "model-pruned.pt"
    size = save_sparse(path, model, ctx.model_name, ctx.spec) if loop.ctx.is_main else 0
    torch.distributed.barrier()
    return StageOutput(
        model=model,
        spec=ctx.spec,
        artifact=path,
        model_bytes=size,
        parameters=count_parameters(model),
        sparsity=sparsity(model),
    )
