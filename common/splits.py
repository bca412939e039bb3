"""The one stratified splitter: probes, fine-tuning and vision carve validation/test rows with it.

Probes choose C and ``mlx finetune`` chooses its best checkpoint on the same rows when they pass
the same labels, fraction and seed.
"""

from __future__ import annotations

import numpy as np

from common.errors import ConfigError, DataError


def stratified_split(labels: np.ndarray, fraction: float, seed: int, what: str = "validation") -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded (kept_rows, held_out_rows) of a label vector (N,), both sorted int arrays.

    ``fraction`` of the rows (per class, rounded by scikit-learn's rule) are held out.
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    if not 0 < fraction < 1:
        raise ConfigError(f"{what} fraction must be between 0 and 1, got {fraction}")
    if len(labels) == 0:
        raise DataError(f"cannot carve a {what} split from 0 rows")
    counts = np.bincount(np.unique(labels, return_inverse=True)[1])
    if counts.min() < 2:
        raise DataError(f"a class has fewer than 2 examples, so no stratified {what} split can hold it; add examples or drop the class")
    rows = np.arange(len(labels))
    try:
        kept, held_out = train_test_split(rows, test_size=fraction, stratify=labels, random_state=seed)
    except ValueError as exc:  # too few rows for one per class on each side
        raise DataError(f"cannot carve a stratified {fraction:.0%} {what} split from {len(labels)} rows: {exc}") from None
    return np.sort(kept), np.sort(held_out)


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted rows of a stratified, seeded subset of ``n`` of the (N,) ``labels`` (all rows when n == N).

    Probes and ``mlx finetune`` at one training-set size train on these same rows.
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    if not 0 < n <= len(labels):
        raise ConfigError(f"a training subset of {n} rows needs 1 to {len(labels)} (the training rows)")
    rows = np.arange(len(labels))
    if n == len(labels):
        return rows
    try:
        kept, _ = train_test_split(rows, train_size=n, stratify=labels, random_state=seed)
    except ValueError as exc:  # fewer rows than classes, or a class with one example
        raise DataError(f"cannot draw a stratified subset of {n} of {len(labels)} training rows: {exc}; choose a larger size") from None
    return np.sort(kept)
