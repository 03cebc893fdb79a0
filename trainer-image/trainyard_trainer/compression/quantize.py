"""The quantize stage: int8 after everything else (config.py makes sure it is last).

`dynamic` turns every nn.Linear into int8 weights with activations quantized per batch (all
three models); `static` also quantizes activations, calibrated on `calibrationBatches`
training batches, and needs the cnn's quant stubs. The int8 model runs on CPU; the artifact
is the int8 state dict, which `artifacts.load_model` turns back into a runnable model.
"""

from __future__ import annotations

import torch
from torch import nn

from trainyard_trainer.artifacts import save_quantized
from trainyard_trainer.compression.base import StageContext, StageOutput, sparsity
from trainyard_trainer.config import QuantizeConfig
from trainyard_trainer.models import CNN, count_parameters
from trainyard_trainer.quantization import dynamic_int8, static_int8


def run(settings: QuantizeConfig, model: nn.Module, ctx: StageContext) -> StageOutput:
    loop = ctx.loop
    loop.progress.set_stage("quantize", 0)
    # Counted before conversion: int8 modules hide their weights in packed params.
    parameters, zeros = count_parameters(model), sparsity(model)
    if settings.method == "static":
        bundle, batch = loop.bundle, loop.batch_size

        def calibrate(work: nn.Module) -> None:
            for i in range(settings.calibration_batches):
                chunk = bundle.train_x[i * batch : (i + 1) * batch]
                if len(chunk) == 0:
                    break
                work(chunk)

        quantized = static_int8(model, CNN.FUSE, calibrate)
    else:
        quantized = dynamic_int8(model)
    path = ctx.output / "model-quantized.pt"
    size = (
        save_quantized(path, quantized, ctx.model_name, ctx.spec, settings.method)
        if loop.ctx.is_main
        else 0
    )
    torch.distributed.barrier()
    return StageOutput(
        model=quantized,
        spec=ctx.spec,
        artifact=path,
        model_bytes=size,
        parameters=parameters,
        sparsity=zeros,
        on_cpu=True,
    )
