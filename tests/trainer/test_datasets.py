"""The on-disk dataset readers, on small files written here in the standard formats."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainyard_trainer.config import ConfigError
from trainyard_trainer.datasets import load_dataset


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def test_mnist_idx_files_plain_and_gzipped(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 255, (20, 28, 28)))
    write_idx(raw / "train-labels-idx1-ubyte", np.arange(20) % 10, gz=False)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (6, 28, 28)), gz=True)
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.array([3, 1, 4, 1, 5, 9]), gz=True)
    data = load_dataset("mnist", str(tmp_path))
    assert data.train_x.shape == (20, 1, 28, 28) and data.test_x.shape == (6, 1, 28, 28)
    assert data.test_y.tolist() == [3, 1, 4, 1, 5, 9]
    assert abs(float(data.train_x.mean())) < 1e-4  # standardized with training statistics


def test_fashion_mnist_missing_file_names_it(tmp_path: Path) -> None:
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28, 28)))
    with pytest.raises(ConfigError, match=r"trainer.dataPath: .*train-labels-idx1-ubyte"):
        load_dataset("fashion-mnist", str(tmp_path))


def test_cifar10_python_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("data_batch_1", 8), ("data_batch_2", 8), ("test_batch", 4)):
        batch = {
            b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
            b"labels": list(range(n)),
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    data = load_dataset("cifar10", str(tmp_path))
    assert data.train_x.shape == (16, 3, 32, 32) and data.test_y.tolist() == [0, 1, 2, 3]


def test_cifar_reader_refuses_code_in_pickles(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("owned",))

    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(ConfigError, match="not a cifar-10 batch"):
        load_dataset("cifar10", str(tmp_path))


def test_imagefolder_train_test_and_split(tmp_path: Path) -> None:
    for split, per_class in (("train", 4), ("test", 2)):
        for label, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            folder = tmp_path / "tt" / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (40 + i, 30), color).save(folder / f"{i}.png")
    data = load_dataset("imagefolder", str(tmp_path / "tt"))
    assert data.train_x.shape == (8, 3, 32, 32) and data.test_x.shape == (4, 3, 32, 32)
    assert data.num_classes == 2 and sorted(data.test_y.tolist()) == [0, 0, 1, 1]

    flat = tmp_path / "flat"
    for label in ("a", "b"):
        (flat / label).mkdir(parents=True)
        for i in range(5):
            Image.new("L", (8, 8), i * 40).save(flat / label / f"{i}.jpg")
    split = load_dataset("imagefolder", str(flat))
    assert len(split.train_x) + len(split.test_x) == 10 and len(split.test_x) == 2


def test_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^trainer.dataPath: .*nope is not a directory"):
        load_dataset("cifar10", str(tmp_path / "nope"))


def test_embedded_datasets_need_no_files() -> None:
    digits = load_dataset("digits")
    assert digits.train_x.shape[1:] == (1, 8, 8) and len(digits.test_x) == 359
    text = load_dataset("text", model="transformer")
    assert text.kind == "tokens" and text.num_classes == 256
    assert len(text.train_x) > 5000  # ~465 kB of English prose in 64-byte windows
    # The target is the input shifted by one byte.
    assert text.train_x[0, 1:].tolist() == text.train_y[0, :-1].tolist()
