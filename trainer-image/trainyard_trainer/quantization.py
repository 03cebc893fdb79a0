"""int8 model transforms: dynamic (Linear layers) and static post-training (the cnn).

These are the pure model-to-model steps; `compression/quantize.py` runs them as a stage
(calibration data, evaluation, measurement) and `artifacts.py` replays them on a fresh
model to load a saved int8 state dict. They use `torch.ao.quantization`'s eager-mode API on
purpose: it is deprecated in favour of torchao, but on CPU it is the path that is actually
faster than fp32 (fbgemm/x86 int8 kernels). Measured on this project's machines, torchao's
`Int8DynamicActivationInt8WeightConfig` ran about 21x slower than fp32 in eager mode and
`Int8WeightOnlyConfig` 1.2x slower, at the same 0.25x bytes. The deprecation warning is
silenced here, in one place, with that reason.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def quiet_quantized() -> Iterator[None]:
    """Silence the deprecation notices of torch's int8 path (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"(?s).*quantized tensor creation functions")
        # torch.load of quantized tensors still goes through TypedStorage internally.
        warnings.filterwarnings("ignore", message=r"TypedStorage is deprecated")
        # Observers that saw no data (when replaying the transform to load a saved model).
        warnings.filterwarnings("ignore", message=r"must run observer before calling")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\.quantization")
        yield


def dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` with every nn.Linear as int8 weights, activations quantized on the fly."""
    from torch.ao.quantization import quantize_dynamic

    with quiet_quantized():
        quantized: nn.Module = quantize_dynamic(  # type: ignore[no-untyped-call]
            copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8
        )
    return quantized


def static_int8(
    model: nn.Module,
    fuse: tuple[tuple[str, str], ...],
    calibrate: Callable[[nn.Module], None] | None,
) -> nn.Module:
    """A copy of `model` with int8 weights and activations; `calibrate` feeds sample batches.

    The model must carry QuantStub/DeQuantStub (models.CNN does); `fuse` names the
    conv/ReLU and Linear/ReLU pairs that become single int8 kernels.
    """
    from torch.ao.quantization import convert, fuse_modules, get_default_qconfig, prepare

    engine = torch.backends.quantized.engine
    with quiet_quantized():
        work: nn.Module = copy.deepcopy(model).cpu().eval()
        work = fuse_modules(work, [list(pair) for pair in fuse])  # type: ignore[no-untyped-call]
        qconfig = get_default_qconfig(engine)  # type: ignore[no-untyped-call]
        work.qconfig = qconfig
        prepare(work, inplace=True)  # type: ignore[no-untyped-call]
        if calibrate is not None:
            with torch.no_grad():
                calibrate(work)
        convert(work, inplace=True)  # type: ignore[no-untyped-call]
    return work
