"""Model files in the output path: dense, sparse (values + bitmask) and int8, self-describing.

Every artifact is one `torch.save`d dict that says which model it holds (name and
`ModelSpec`) and in which form, so `load_model(path)` rebuilds a runnable module with no
other input: that is how a user (or a test) checks that a saved int8 model loads and
evaluates. The sparse form is what makes pruning shrink bytes on disk: torch.save of a
masked dense tensor stores every zero, while values + a 1-bit-per-weight mask stores about
(1 - sparsity) + 1/32 of the float32 bytes. The compression stages call the `save_*`
functions; `results.py` reports the byte counts they return.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainyard_trainer.checkpoint import atomic_save
from trainyard_trainer.models import CNN, ModelSpec, build_model
from trainyard_trainer.quantization import dynamic_int8, quiet_quantized, static_int8

FORMAT = "trainyard-model/1"
# Tensors smaller than this stay dense: a mask costs more than it saves on biases.
SPARSE_MIN_ELEMENTS = 1024


def _header(model_name: str, spec: ModelSpec, kind: str) -> dict[str, Any]:
    meta = asdict(spec)
    meta["input_shape"] = list(spec.input_shape)
    return {"format": FORMAT, "model": model_name, "spec": meta, "kind": kind}


def save_dense(path: Path, model: nn.Module, model_name: str, spec: ModelSpec) -> int:
    """Plain float state dict; returns bytes on disk."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_save({**_header(model_name, spec, "dense"), "state": state}, path)


def encode_sparse(tensor: torch.Tensor) -> dict[str, Any]:
    """Nonzero values plus a packed bitmask of where they go."""
    flat = tensor.detach().cpu().reshape(-1)
    mask = flat != 0
    bits = np.packbits(mask.numpy())
    return {
        "shape": list(tensor.shape),
        "mask": torch.from_numpy(bits),
        "values": flat[mask].clone(),
    }


def decode_sparse(entry: dict[str, Any]) -> torch.Tensor:
    """Inverse of `encode_sparse`."""
    shape = entry["shape"]
    count = int(np.prod(shape)) if shape else 1
    mask = torch.from_numpy(np.unpackbits(entry["mask"].numpy())[:count].astype(bool))
    values: torch.Tensor = entry["values"]
    flat = torch.zeros(count, dtype=values.dtype)
    flat[mask] = values
    return flat.view(shape)


def save_sparse(path: Path, model: nn.Module, model_name: str, spec: ModelSpec) -> int:
    """Large float tensors as values + bitmask, the rest dense; returns bytes on disk."""
    dense: dict[str, torch.Tensor] = {}
    sparse: dict[str, dict[str, Any]] = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point() and value.numel() >= SPARSE_MIN_ELEMENTS:
            sparse[key] = encode_sparse(value)
        else:
            dense[key] = value.detach().cpu()
    payload = {**_header(model_name, spec, "sparse"), "state": dense, "sparse": sparse}
    return atomic_save(payload, path)


def save_quantized(
    path: Path, model: nn.Module, model_name: str, spec: ModelSpec, method: str
) -> int:
    """An int8 model's state dict (method: dynamic or static); returns bytes on disk."""
    state = model.state_dict()
    return atomic_save({**_header(model_name, spec, f"int8-{method}"), "state": state}, path)


def load_model(path: Path) -> nn.Module:
    """Rebuild the module stored at `path` in eval mode, whatever form it was saved in."""
    with quiet_quantized():
        payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a trainyard model file")
    meta = dict(payload["spec"])
    meta["input_shape"] = tuple(meta["input_shape"])
    spec = ModelSpec(**meta)
    model = build_model(payload["model"], spec).eval()
    kind = payload["kind"]
    # The loaded state dict is kept as-is: its `_metadata` carries the module versions that
    # int8 modules need to read their packed weights back.
    state = payload["state"]
    if kind == "sparse":
        state.update({k: decode_sparse(v) for k, v in payload["sparse"].items()})
    elif kind == "int8-dynamic":
        model = dynamic_int8(model)
    elif kind == "int8-static":
        model = static_int8(model, CNN.FUSE, calibrate=None)
    elif kind != "dense":
        raise ValueError(f"{path}: unknown model kind {kind!r}")
    with quiet_quantized():
        model.load_state_dict(state)
    return model.eval()
