"""Synthetic labelled vectors and stores, for tests, benchmarks and trying probes without a model."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeddings.store import SplitArrays, write_store


@dataclass(frozen=True)
class Mixture:
    """Labelled clusters in a ``latent_dim``-dimensional space, mapped linearly into ``dim`` dimensions.

    Real sentence embeddings are clustered and have a low intrinsic dimension; isotropic noise in all
    768 dimensions would make every point nearly equidistant from every other, a regime neither k-NN
    nor approximate indexes meet on real data. ``spread`` is the within-cluster noise in latent units
    (larger = more class overlap); ``noise`` adds a little full-dimensional noise on top.
    """

    centres: np.ndarray  # (K, L) float32, cluster centres; cluster c belongs to class c // clusters_per_class
    projection: np.ndarray  # (L, D) float32
    clusters_per_class: int
    spread: float
    noise: float

    @classmethod
    def random(
        cls,
        dim: int,
        n_classes: int,
        rng: np.random.Generator,
        *,
        latent_dim: int = 48,
        clusters_per_class: int = 16,
        spread: float = 1.5,
        noise: float = 0.05,
    ) -> "Mixture":
        centres = rng.standard_normal((n_classes * clusters_per_class, latent_dim)).astype(np.float32)
        projection = (rng.standard_normal((latent_dim, dim)) / np.sqrt(latent_dim)).astype(np.float32)
        return cls(centres, projection, clusters_per_class, spread, noise)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(N, D) float32 unit vectors and (N,) int64 labels."""
        n_classes = len(self.centres) // self.clusters_per_class
        labels = rng.integers(0, n_classes, n)
        cluster = labels * self.clusters_per_class + rng.integers(0, self.clusters_per_class, n)
        Z = self.centres[cluster] + self.spread * rng.standard_normal(
            (n, self.centres.shape[1]), dtype=np.float32
        )  # (N, L)
        X = Z @ self.projection + self.noise * rng.standard_normal(
            (n, self.projection.shape[1]), dtype=np.float32
        )  # (N, D)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        return X.astype(np.float32), labels.astype(np.int64)


def write_synthetic_store(  # noqa: PLR0913  (keyword-only test-data knobs, each with a default)
    path: Path,
    *,
    n_train: int = 300,
    n_test: int = 100,
    dim: int = 16,
    n_classes: int = 3,
    poolings: Sequence[str] = ("mean", "cls"),
    layers: Sequence[int] = (0, 1, 2),
    spread: float = 1.5,
    seed: int = 0,
    splits: Sequence[str] = ("train", "test"),
    model_id: str = "synthetic/random",
) -> Path:
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
        split_arrays[split] = SplitArrays(
            labels=labels,
            row_ids=np.arange(n, dtype=np.int64),
            vectors=vectors,
            fingerprint=f"synthetic-{split}-{seed}",
        )
    attrs = {
        "model_id": model_id,
        "model_revision": "none",
        "max_length": 0,
        "dtype": "float32",
        "dataset_name": "synthetic",
        "dataset_fingerprint": f"synthetic-{seed}",
        "label_names": [f"class{c}" for c in range(n_classes)],
        "poolings": list(poolings),
        "layers": list(layers),
        "n_layers": max(layers),
        "config": {"synthetic": True, "seed": seed},
    }
    return write_store(Path(path), attrs, split_arrays)
