"""Datasets by name, loaded whole into memory as tensors.

`load_dataset(name, data_path)` returns a `DataBundle` (train/test tensors plus the shapes
`models.py` needs). Nothing here touches the network: `digits` is scikit-learn's bundled
copy, `text` is the English prose that CPython ships in `pydoc_data.topics` (byte level),
`synthetic` is generated, and `mnist`, `fashion-mnist`, `cifar10` and `imagefolder` are read
from `dataPath` in their standard on-disk formats (idx files, the python cifar batches,
`<class>/<image>` folders). A path that holds no data raises `ConfigError` naming
`trainer.dataPath`, so the run stops with exit code 2 before training. The train loop
(`train.py`) shards these tensors with a DistributedSampler.
"""

from __future__ import annotations

import gzip
import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from trainyard_trainer.config import ConfigError

# The test split never depends on the job's seed, so runs with different seeds compare.
SPLIT_SEED = 1234
TEXT_BLOCK = 64
IMAGE_SIZE = 32
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


@dataclass(frozen=True)
class DataBundle:
    """A dataset in memory. Images: x float (N, C, H, W), y long (N,). Tokens: (N, T) each."""

    name: str
    kind: str  # "image" or "tokens"
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


def _split(n: int, test_share: float) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    cut = round(n * (1 - test_share))
    return order[:cut], order[cut:]


def _image_bundle(
    name: str,
    *,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
) -> DataBundle:
    """Standardize per channel with the training set's statistics (N, C, H, W float32)."""
    tx = torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.float32))
    ex = torch.from_numpy(np.ascontiguousarray(test_x, dtype=np.float32))
    mean = tx.mean(dim=(0, 2, 3), keepdim=True)
    std = tx.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return DataBundle(
        name=name,
        kind="image",
        train_x=(tx - mean) / std,
        train_y=torch.from_numpy(np.asarray(train_y, dtype=np.int64)),
        test_x=(ex - mean) / std,
        test_y=torch.from_numpy(np.asarray(test_y, dtype=np.int64)),
        num_classes=num_classes,
    )


def load_digits(_: str) -> DataBundle:
    """scikit-learn's 1,797 8x8 handwritten digits, split 80/20."""
    from sklearn.datasets import load_digits as sk_digits

    data = sk_digits()
    images = data.images.astype(np.float32)[:, None, :, :] / 16.0
    train, test = _split(len(images), 0.2)
    return _image_bundle(
        "digits",
        train_x=images[train],
        train_y=data.target[train],
        test_x=images[test],
        test_y=data.target[test],
        num_classes=10,
    )


def english_text() -> bytes:
    """The embedded English corpus: CPython's pydoc topics (~465 kB of prose)."""
    from pydoc_data.topics import topics

    return "\n".join(topics[key] for key in sorted(topics)).encode("utf-8")


def load_text(_: str) -> DataBundle:
    """Byte-level next-token prediction on English prose: the last 10% is the test text."""
    data = torch.frombuffer(bytearray(english_text()), dtype=torch.uint8).long()
    cut = int(len(data) * 0.9)

    def windows(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count = (len(tokens) - 1) // TEXT_BLOCK
        x = tokens[: count * TEXT_BLOCK].view(count, TEXT_BLOCK)
        y = tokens[1 : count * TEXT_BLOCK + 1].view(count, TEXT_BLOCK)
        return x.contiguous(), y.contiguous()

    train_x, train_y = windows(data[:cut])
    test_x, test_y = windows(data[cut:])
    return DataBundle("text", "tokens", train_x, train_y, test_x, test_y, 256)


def load_synthetic(_: str) -> DataBundle:
    """Random 1x28x28 images labelled by a fixed random linear teacher (learnable, for speed)."""
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    x = torch.randn(8192 + 2048, 1, 28, 28, generator=gen)
    teacher = torch.randn(28 * 28, 10, generator=gen)
    y = (x.flatten(1) @ teacher).argmax(dim=1)
    return DataBundle("synthetic", "image", x[:8192], y[:8192], x[8192:], y[8192:], 10)


def synthetic_tokens(num_classes: int = 256) -> DataBundle:
    """Random token windows, for transformer throughput runs on `synthetic`."""
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    tokens = torch.randint(0, num_classes, (4096 + 512, TEXT_BLOCK + 1), generator=gen)
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    return DataBundle("synthetic", "tokens", x[:4096], y[:4096], x[4096:], y[4096:], num_classes)


# --- on-disk formats ---------------------------------------------------------------------


def _no_data(path: Path, expected: str) -> ConfigError:
    return ConfigError("trainer.dataPath", f"{path} holds no data (expected {expected})")


def read_idx(path: Path) -> np.ndarray:
    """Read one idx file (the MNIST format), gzipped or not."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ConfigError("trainer.dataPath", f"{path} is not an idx file")
    dtype: dict[int, Any] = {
        0x08: np.uint8,
        0x09: np.int8,
        0x0B: ">i2",
        0x0C: ">i4",
        0x0D: ">f4",
        0x0E: ">f8",
    }
    if raw[2] not in dtype:
        raise ConfigError("trainer.dataPath", f"{path}: unknown idx element type {raw[2]:#x}")
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    array = np.frombuffer(raw, dtype=dtype[raw[2]], offset=4 + 4 * dims)
    expected = int(np.prod(shape))
    if array.size != expected:
        raise ConfigError("trainer.dataPath", f"{path}: {array.size} values, header says {shape}")
    return cast(np.ndarray, array.reshape(shape))


def _find(root: Path, stem: str, subdirs: tuple[str, ...]) -> Path | None:
    for sub in subdirs:
        for suffix in ("", ".gz"):
            candidate = root / sub / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _load_idx_dataset(name: str, data_path: str) -> DataBundle:
    root = Path(data_path)
    # The plain layout, and torchvision's (<root>/MNIST/raw, <root>/FashionMNIST/raw).
    folder = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[name]
    subdirs = (".", "raw", f"{folder}/raw")
    parts = {}
    for key, stem in (
        ("train_x", "train-images-idx3-ubyte"),
        ("train_y", "train-labels-idx1-ubyte"),
        ("test_x", "t10k-images-idx3-ubyte"),
        ("test_y", "t10k-labels-idx1-ubyte"),
    ):
        found = _find(root, stem, subdirs)
        if found is None:
            raise _no_data(root, f"{stem}[.gz] for {name}")
        parts[key] = read_idx(found)
    return _image_bundle(
        name,
        train_x=parts["train_x"][:, None, :, :].astype(np.float32) / 255.0,
        train_y=parts["train_y"],
        test_x=parts["test_x"][:, None, :, :].astype(np.float32) / 255.0,
        test_y=parts["test_y"],
        num_classes=10,
    )


def load_mnist(data_path: str) -> DataBundle:
    """MNIST from idx files in dataPath."""
    return _load_idx_dataset("mnist", data_path)


def load_fashion_mnist(data_path: str) -> DataBundle:
    """Fashion-MNIST from idx files in dataPath (same format and names as MNIST)."""
    return _load_idx_dataset("fashion-mnist", data_path)


class _ArraysOnly(pickle.Unpickler):
    """Unpickle the cifar batches without executing arbitrary code from the data volume."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name} in a cifar batch")


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArraysOnly(io.BytesIO(path.read_bytes()), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as exc:
        raise ConfigError("trainer.dataPath", f"{path} is not a cifar-10 batch ({exc})") from exc
    return data, labels


def load_cifar10(data_path: str) -> DataBundle:
    """CIFAR-10 from the python batches (data_batch_1..5, test_batch) in dataPath."""
    root = Path(data_path)
    for folder in (root, root / "cifar-10-batches-py"):
        train_files = sorted(folder.glob("data_batch_*"))
        test_file = folder / "test_batch"
        if train_files and test_file.is_file():
            train = [_cifar_batch(p) for p in train_files]
            test_x, test_y = _cifar_batch(test_file)
            return _image_bundle(
                "cifar10",
                train_x=np.concatenate([x for x, _ in train]).astype(np.float32) / 255.0,
                train_y=np.concatenate([y for _, y in train]),
                test_x=test_x.astype(np.float32) / 255.0,
                test_y=test_y,
                num_classes=10,
            )
    raise _no_data(root, "data_batch_1..5 and test_batch, as in cifar-10-batches-py")


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE))
        return np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0


def _class_folders(root: Path) -> dict[str, list[Path]]:
    classes: dict[str, list[Path]] = {}
    if not root.is_dir():
        return classes
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            classes[sub.name] = images
    return classes


def load_imagefolder(data_path: str) -> DataBundle:
    """`<class>/<image>` folders, resized to 32x32 RGB; `train/` and `test/` if present,
    else one set of class folders split 80/20."""
    root = Path(data_path)
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_classes = _class_folders(root / "train")
        test_classes = _class_folders(root / "test")
    else:
        train_classes = _class_folders(root)
        test_classes = {}
    names = sorted(set(train_classes) | set(test_classes))
    if not train_classes:
        raise _no_data(root, "<class>/<image> folders, optionally under train/ and test/")
    index = {name: i for i, name in enumerate(names)}

    def read(classes: dict[str, list[Path]]) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(p, index[c]) for c, paths in classes.items() for p in paths]
        x = np.stack([_read_image(p) for p, _ in pairs])
        return x, np.asarray([label for _, label in pairs], dtype=np.int64)

    x, y = read(train_classes)
    if test_classes:
        test_x, test_y = read(test_classes)
        return _image_bundle(
            "imagefolder",
            train_x=x,
            train_y=y,
            test_x=test_x,
            test_y=test_y,
            num_classes=len(names),
        )
    train, test = _split(len(x), 0.2)
    if len(test) == 0:
        raise _no_data(root, "at least 5 images, so that a test split exists")
    return _image_bundle(
        "imagefolder",
        train_x=x[train],
        train_y=y[train],
        test_x=x[test],
        test_y=y[test],
        num_classes=len(names),
    )


DATASETS: dict[str, Callable[[str], DataBundle]] = {
    "digits": load_digits,
    "text": load_text,
    "synthetic": load_synthetic,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "imagefolder": load_imagefolder,
}


def load_dataset(name: str, data_path: str = "", model: str = "mlp") -> DataBundle:
    """Load the named dataset; `synthetic` yields tokens for the transformer, else images."""
    if name == "synthetic" and model == "transformer":
        return synthetic_tokens()
    if (
        name in ("mnist", "fashion-mnist", "cifar10", "imagefolder")
        and not Path(data_path).is_dir()
    ):
        raise ConfigError("trainer.dataPath", f"{data_path or '(empty)'} is not a directory")
    return DATASETS[name](data_path)
