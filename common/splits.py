"""The one home of stratified row selection: probes, fine-tuning, vision and ``embed --limit`` use it.

Probes choose C and ``mlx finetune`` chooses its best checkpoint on the same rows when they pass
the same labels, fraction and seed.
"""

from __future__ import annotations

import numpy as np

from common.errors import ConfigError, DataError


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int, what: str = "validation"
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded (kept_rows, held_out_rows) of a label vector (N,), both sorted int arrays.

    ``fraction`` of the rows (per class, rounded by scikit-learn's rule) are held out; ``what``
    names the held-out part in error messages (``validation``, ``test``).
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    if not 0 < fraction < 1:
        raise ConfigError(f"{what} fraction must lie strictly between 0 and 1, got {fraction}")
    if len(labels) == 0:
        raise DataError(f"cannot carve a {what} split from 0 rows")
    counts = np.bincount(np.unique(labels, return_inverse=True)[1])
    if counts.min() < 2:
        raise DataError(
            f"a class has fewer than 2 examples, so no stratified {what} split can hold it; add examples or drop the class"
        )
    rows = np.arange(len(labels))
    try:
        kept, held_out = train_test_split(rows, test_size=fraction, stratify=labels, random_state=seed)
    except ValueError as exc:  # too few rows for one per class on each side
        raise DataError(
            f"cannot carve a stratified {fraction:.0%} {what} split from {len(labels)} rows: {exc}"
        ) from None
    return np.sort(kept), np.sort(held_out)


def stratified_subsample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted rows of a seeded subsample of ``n`` of ``labels`` (N,), class shares kept (largest remainder).

    Unlike :func:`stratified_split` this keeps an exact count (``embed --limit N``), and a class
    too small for its share may get no row at all.
    """
    labels = np.asarray(labels)
    if n < 0:
        raise ConfigError(f"a subsample needs a size of at least 0, got {n}")
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / len(labels)
    take = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - take), kind="stable")[: n - take.sum()]:
        take[i] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))
