"""GPU benchmark: bf16 training throughput and model FLOPs utilization of the trainer's transformer.

    python bench/gpu_transformer.py [--width 1024] [--layers 12] [--batch 16] [--compile]

Runs only where CUDA is present (exits 0 with a note otherwise). It trains the same model
class the trainer uses (`models.TinyGPT`, decoder-only, byte vocabulary) scaled up so a GPU
has work to do, under bf16 autocast with AdamW, and prints tokens/s, achieved TFLOP/s and
MFU = achieved / peak dense bf16 TFLOP/s. FLOPs per token follow the PaLM appendix:
6 * non-embedding parameters + 12 * layers * context * width (attention scores). The peak
is looked up by device name or given with --peak-tflops. Synthetic tokens: throughput does
not depend on the data. No assertions; bench/trainer.py has the CPU figures.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F  # noqa: N812

from trainyard_trainer.models import ModelSpec, TinyGPT

# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity), from the vendors' datasheets.
PEAK_BF16 = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def peak_for(name: str) -> float | None:
    for key, value in PEAK_BF16.items():
        if key in name:
            return value
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--peak-tflops", type=float, help="override the device's bf16 peak")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_transformer: no CUDA device here; nothing to measure")
        return

    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    layers = args.layers

    class Model(TinyGPT):
        LAYERS = layers

    spec = ModelSpec((args.context,), 256, args.context, scale=args.width / TinyGPT.WIDTH)
    model = Model(spec).to(device)
    width = model.ln.normalized_shape[0]
    runner = torch.compile(model) if args.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)
    params = sum(p.numel() for p in model.parameters())
    embedding = model.tok.weight.numel() + model.pos.weight.numel()
    flops_per_token = 6 * (params - embedding) + 12 * layers * args.context * width

    tokens = torch.randint(0, 256, (args.batch, args.context + 1), device=device)
    x, y = tokens[:, :-1], tokens[:, 1:]

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = runner(x)
            loss = F.cross_entropy(logits.reshape(-1, 256).float(), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    for _ in range(5):  # warm-up: kernels chosen, compile done, allocator settled
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start

    name = torch.cuda.get_device_name(device)
    tokens_per_s = args.batch * args.context * args.steps / seconds
    achieved = tokens_per_s * flops_per_token / 1e12
    peak = args.peak_tflops or peak_for(name)
    print(f"device {name}, torch {torch.__version__}, compile={args.compile}")
    print(
        f"model: width {width}, {layers} layers, context {args.context}, {params / 1e6:.1f}M params"
    )
    ms_per_step = seconds / args.steps * 1e3
    print(f"bf16 training throughput  {tokens_per_s:,.0f} tokens/s ({ms_per_step:.1f} ms/step)")
    print(f"achieved                  {achieved:.1f} TFLOP/s")
    if peak:
        print(
            f"MFU                       {achieved / peak:.3f} (peak {peak:.0f} TFLOP/s dense bf16)"
        )
    else:
        print("MFU                       unknown device peak; pass --peak-tflops")


if __name__ == "__main__":
    main()
