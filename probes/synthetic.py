"""Synthetic labelled vectors and stores, for tests, benchmarks and trying probes without a model."""

from pathlib import Path
from typing import Sequence

import numpy as np

from embeddings.store import SplitArrays, write_store


def clustered_vectors(n: int, dim: int, n_classes: int, rng: np.random.Generator, *, clusters_per_class: int = 4,
                      spread: float = 1.0, centres: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D) float32 unit vectors drawn around per-class cluster centres, (N,) int64 labels, and the centres.

    Real sentence embeddings are clustered, not uniform on the sphere; a mixture keeps k-NN accuracy
    meaningful and gives approximate indexes the structure they rely on. ``spread`` scales the noise
    (larger = harder). Pass ``centres`` from a first call to draw a test set from the same mixture.
    """
    if centres is None:
        centres = rng.standard_normal((n_classes * clusters_per_class, dim)).astype(np.float32)  # (K, D)
    labels = rng.integers(0, n_classes, n)
    cluster = labels * clusters_per_class + rng.integers(0, clusters_per_class, n)
    X = centres[cluster] + spread * rng.standard_normal((n, dim)).astype(np.float32)  # (N, D)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), labels.astype(np.int64), centres


def write_synthetic_store(path: Path, *, n_train: int = 300, n_test: int = 100, dim: int = 16, n_classes: int = 3,
                          poolings: Sequence[str] = ("mean", "cls"), layers: Sequence[int] = (0, 1, 2),
                          spread: float = 1.5, seed: int = 0, splits: Sequence[str] = ("train", "test"),
                          model_id: str = "synthetic/random") -> Path:
    """A complete store of clustered vectors: later layers are less noisy, so layer choice matters."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes * 2, dim)).astype(np.float32)
    sizes = {"train": n_train, "test": n_test}
    split_arrays = {}
    for split in splits:
        n = sizes.get(split, n_train)
        labels = rng.integers(0, n_classes, n).astype(np.int64)
        labels[:n_classes] = np.arange(n_classes)  # every class present
        cluster = labels * 2 + rng.integers(0, 2, n)
        vectors = {}
        for pooling in poolings:
            for layer in layers:
                noise = spread * (1.0 + (max(layers) - layer) * 0.5)
                X = centres[cluster] + noise * rng.standard_normal((n, dim)).astype(np.float32)
                vectors[(pooling, layer)] = X.astype(np.float32)
        split_arrays[split] = SplitArrays(labels=labels, row_ids=np.arange(n, dtype=np.int64), vectors=vectors,
                                          fingerprint=f"synthetic-{split}-{seed}")
    attrs = {"model_id": model_id, "model_revision": "none", "max_length": 0, "dtype": "float32",
             "dataset_name": "synthetic", "dataset_fingerprint": f"synthetic-{seed}",
             "label_names": [f"class{c}" for c in range(n_classes)], "poolings": list(poolings), "layers": list(layers),
             "n_layers": max(layers), "config": {"synthetic": True, "seed": seed}}
    return write_store(Path(path), attrs, split_arrays)
