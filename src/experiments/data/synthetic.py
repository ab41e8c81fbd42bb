"""Synthetic MNIST-format (IDX) datasets: for tests and benchmarks on machines without the real files.

The images are noise plus a bright patch whose position encodes the label, so a model can learn them.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX format: magic (0, 0, dtype=0x08 for ubyte, ndim), big-endian dims, then raw data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def learnable_images(labels: np.ndarray, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """size x size (>= 28) noise with a bright 6x6 patch whose position encodes the label: easy to learn."""
    images = rng.integers(0, 60, size=(len(labels), size, size), dtype=np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[i, 3 + row * 12 : 9 + row * 12, 2 + col * 5 : 8 + col * 5] = 255
    return images


def write_dataset(
    raw_dir: Path, n_train: int = 600, n_test: int = 200, gz: bool = True, seed: int = 0, size: int = 28
) -> Path:
    """Write the four files into raw_dir (gzip-compressed or plain), images of size x size; returns raw_dir."""
    rng = np.random.default_rng(seed)
    raw_dir.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, size=count, dtype=np.uint8)
        arrays = {"images": learnable_images(labels, rng, size), "labels": labels}
        for kind, array in arrays.items():
            data = idx_bytes(array)
            name = FILES[(split, kind)]
            if gz:
                (raw_dir / f"{name}.gz").write_bytes(gzip.compress(data, compresslevel=1))
            else:
                (raw_dir / name).write_bytes(data)
    return raw_dir
