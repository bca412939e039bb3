"""The one validation split of a text run's training rows, and its fingerprint.

Probes choose C, k, pooling and layer on these rows; ``mlx finetune`` chooses its checkpoint on
them. Both call :func:`validation_split` with the training labels in source order (after the same
``--train-size`` subsample) and the run's ``--seed``, so at one seed they hold out the very same
rows, and :func:`validation_fingerprint` of those rows is equal in both run records. A probe on a
fine-tuned encoder then never chooses its settings on rows that encoder was trained on.
"""

import hashlib

import numpy as np

from common.splits import stratified_split

VALIDATION_FRACTION = 0.1


def validation_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows) of ``labels`` (N,): a stratified, seeded 10%, both sorted int arrays."""
    return stratified_split(labels, VALIDATION_FRACTION, seed, what="validation")


def validation_fingerprint(split_fingerprint: str, source_row_ids: np.ndarray) -> str:
    """Fingerprint of validation rows: the source split's fingerprint and the rows' ids in it (order-free)."""
    digest = hashlib.sha256(f"validation|{split_fingerprint}|".encode())
    digest.update(np.sort(np.asarray(source_row_ids, dtype=np.int64)).tobytes())
    return digest.hexdigest()[:16]
