"""Models by name: `mlp`, `cnn`, `transformer`, each sized to the dataset and to a width scale.

`build_model(name, spec)` is the only entry point; `datasets.py` supplies the `ModelSpec`
(input shape, classes, vocabulary) and the distill stage builds its student by calling it
again with a smaller `scale`. The models are written so the compression stages can work on
them without special cases: every projection is an `nn.Linear` (dynamic int8 quantizes all
of them, the transformer's attention included, which `nn.MultiheadAttention` would not
allow), and the cnn carries quant/dequant stubs and names its conv/ReLU pairs for fusion so
static int8 can convert it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub


@dataclass(frozen=True)
class ModelSpec:
    """What a model must fit: the dataset's shapes, and the width scale (1.0 = teacher)."""

    input_shape: tuple[int, ...]
    num_classes: int
    block_size: int = 0
    scale: float = 1.0
    dropout: float | None = None  # None: the family's default


def _width(base: int, scale: float, multiple: int = 1) -> int:
    return max(multiple, round(base * scale / multiple) * multiple)


class MLP(nn.Module):
    """The classic 784-512-256-128-10 net with dropout; input and output fit the dataset."""

    HIDDEN = (512, 256, 128)

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        dropout = 0.2 if spec.dropout is None else spec.dropout
        in_features = 1
        for dim in spec.input_shape:
            in_features *= dim
        layers: list[nn.Module] = [nn.Flatten()]
        for hidden in self.HIDDEN:
            width = _width(hidden, spec.scale)
            layers += [nn.Linear(in_features, width), nn.ReLU(), nn.Dropout(dropout)]
            in_features = width
        layers.append(nn.Linear(in_features, spec.num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class CNN(nn.Module):
    """Three conv layers and two Linear layers; quant stubs make it statically quantizable."""

    # Pairs that static quantization fuses into single int8 kernels.
    FUSE = (("conv1", "relu1"), ("conv2", "relu2"), ("conv3", "relu3"), ("fc1", "relu4"))

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        dropout = 0.2 if spec.dropout is None else spec.dropout
        channels = spec.input_shape[0]
        c1, c2, c3 = (_width(c, spec.scale) for c in (32, 64, 128))
        hidden = _width(128, spec.scale)
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(channels, c1, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
        self.relu3 = nn.ReLU()
        # A fixed 2x2 grid makes the head independent of the image size (8x8 digits, 32x32 cifar).
        self.gap = nn.AdaptiveAvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(c3 * 4, hidden)
        self.relu4 = nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, spec.num_classes)
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        x = self.gap(self.relu3(self.conv3(x)))
        x = self.drop(self.relu4(self.fc1(self.flatten(x))))
        out: torch.Tensor = self.dequant(self.fc2(x))
        return out


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention with plain Linear projections (quantizable)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        shape = (batch, steps, self.heads, width // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out: torch.Tensor = self.proj(y.transpose(1, 2).reshape(batch, steps, width))
        return out


class Block(nn.Module):
    """Pre-norm transformer block: attention then a 4x GELU MLP, both residual."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.act = nn.GELU(approximate="tanh")  # GPT-2's form; erf GELU is slow on CPU
        self.out = nn.Linear(4 * width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        out: torch.Tensor = x + self.drop(self.out(self.act(self.fc(self.ln2(x)))))
        return out


class TinyGPT(nn.Module):
    """A small decoder-only language model: token + position embeddings, blocks, LM head."""

    WIDTH = 128
    HEAD_DIM = 32
    LAYERS = 2

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        dropout = 0.1 if spec.dropout is None else spec.dropout
        width = _width(self.WIDTH, spec.scale, multiple=16)
        heads = max(1, width // self.HEAD_DIM)
        while width % heads:
            heads -= 1
        self.block_size = spec.block_size
        self.tok = nn.Embedding(spec.num_classes, width)
        self.pos = nn.Embedding(spec.block_size, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(self.LAYERS))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, spec.num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.drop(self.tok(tokens) + self.pos(positions))
        for block in self.blocks:
            x = block(x)
        out: torch.Tensor = self.head(self.ln(x))
        return out


MODELS: dict[str, Callable[[ModelSpec], nn.Module]] = {
    "mlp": MLP,
    "cnn": CNN,
    "transformer": TinyGPT,
}


def build_model(name: str, spec: ModelSpec) -> nn.Module:
    """Build the named model for `spec` (names are checked by config.py already)."""
    return MODELS[name](spec)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (pruned weights still count: they are stored as zeros or masks)."""
    return sum(p.numel() for p in model.parameters())
