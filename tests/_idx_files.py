"""IDX files for tests: the Fashion-MNIST file layout without the real data."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray, magic: bytes = b"\x00\x00\x08") -> bytes:
    """IDX: magic 00 00 08 (uint8), ndim, big-endian int32 sizes, then the uint8 data."""
    header = magic + bytes([array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_striped_mnist(folder: Path, n_train: int = 1200, n_test: int = 200) -> Path:
    """Fashion-MNIST-named IDX files of a learnable 10-class set: class k has a bright band at rows 2k..2k+5."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 100, size=(n, 28, 28))
        for i, k in enumerate(labels):
            images[i, 2 * k : 2 * k + 6, :] += 150
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images), mtime=0))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels), mtime=0))
    return folder
