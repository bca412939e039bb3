"""Tiny KMNIST-shaped datasets for the vision tests: learnable, built in a few milliseconds."""

import gzip
from pathlib import Path

import numpy as np


def tiny_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 images whose class (0..9) sets where a bright 6x6 square sits, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = 3 + 8 * (label // 4), 3 + 8 * (label % 4)
        images[i, row : row + 6, col : col + 6] = 250
    return images, labels.astype(np.uint8)


def write_npz_dataset(folder: Path, n_train: int = 200, n_test: int = 100) -> Path:
    """The four official-format KMNIST npz files (arrays under arr_0) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images, labels = tiny_images(n, seed)
        np.savez_compressed(folder / f"kmnist-{split}-imgs.npz", images)
        np.savez_compressed(folder / f"kmnist-{split}-labels.npz", labels)
    return folder


def idx_bytes(array: np.ndarray) -> bytes:
    """MNIST idx encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian dims, raw bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(folder: Path, n_train: int = 120, n_test: int = 60) -> Path:
    """torchvision's KMNIST/raw layout of gzip-compressed idx files."""
    raw = folder / "KMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = tiny_images(n, seed)
        (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return folder
