"""The two pruning methods on a real model, in process (the fine-tune is tested end to end)."""

from __future__ import annotations

import torch
from torch.nn.utils import prune

from trainyard_trainer.artifacts import decode_sparse, encode_sparse
from trainyard_trainer.compression.base import prunable, sparsity
from trainyard_trainer.compression.prune import apply_masks
from trainyard_trainer.config import PruneConfig
from trainyard_trainer.models import ModelSpec, build_model


def test_l1_structured_removes_whole_rows_and_spares_the_head() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", ModelSpec((1, 8, 8), 10))
    layers = apply_masks(model, PruneConfig(amount=0.5, method="l1-structured"))
    for layer in layers:
        prune.remove(layer, "weight")  # type: ignore[no-untyped-call]
    body, head = prunable(model)[:-1], prunable(model)[-1]
    for layer in body:
        zero_rows = (layer.weight.abs().sum(dim=1) == 0).sum().item()
        assert zero_rows == layer.weight.shape[0] // 2
    assert (head.weight != 0).all()  # every class keeps its output row
    assert 0.4 < sparsity(model) < 0.5


def test_global_unstructured_hits_the_amount_across_layers() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", ModelSpec((1, 8, 8), 10))
    for layer in apply_masks(model, PruneConfig(amount=0.7)):
        prune.remove(layer, "weight")  # type: ignore[no-untyped-call]
    assert abs(sparsity(model) - 0.7) < 0.01


def test_sparse_encoding_round_trips() -> None:
    tensor = torch.randn(33, 17) * (torch.rand(33, 17) > 0.6)
    assert torch.equal(decode_sparse(encode_sparse(tensor)), tensor)
