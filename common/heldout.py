"""Is the test split held out? One check for every command that trains on one split and scores another.

- ``check_test_rows``: test rows that repeat train rows. Every test row a train row (``--split train
  --split train``, a test file that is a copy of the training file, test images = train images) is
  refused: the score would measure memory, not generalisation. Some repeated rows are a warning the run
  records in its notes: the test score is inflated.
- ``check_test_classes``: classes of the test split that the training rows lack. Those test rows can
  never be right; the warning says how many there are.

Rows are compared by content (``row_keys``: a digest of each text or image), never by file name.
"""

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from common.errors import DataError


def row_keys(rows: Iterable[Any]) -> list[bytes]:
    """A 16-byte digest per row: a text (str) or an array (its bytes and shape), equal rows, equal keys."""
    keys = []
    for row in rows:
        if isinstance(row, str):
            payload = row.encode("utf-8")
        else:
            payload = str(getattr(row, "shape", "")).encode() + row.tobytes()
        keys.append(hashlib.blake2b(payload, digest_size=16).digest())
    return keys


def check_test_rows(
    train_keys: Sequence[Any], test_keys: Sequence[Any], *, train_what: str, test_what: str
) -> tuple[str, ...]:
    """Refuse a test split whose every row is a train row; a warning (to record in the run) when some are."""
    train = set(train_keys)
    shared = sum(key in train for key in test_keys)
    if test_keys and shared == len(test_keys):
        raise DataError(
            f"all {len(test_keys):,} test rows ({test_what}) are train rows ({train_what}): scoring train against "
            "itself says nothing; pass a test split with other rows"
        )
    if not shared:
        return ()
    return (
        f"warning: {shared:,} of {len(test_keys):,} test rows are also train rows ({test_what} repeats rows of "
        f"{train_what}): the test score is inflated",
    )


def check_test_classes(
    train_labels: Any, test_labels: Any, label_names: Sequence[str], *, train_what: str
) -> tuple[str, ...]:
    """A warning (to record in the run) naming the test classes that no training row has, and their share of the test rows."""
    present = {int(c) for c in train_labels}
    missing = sorted({int(c) for c in test_labels} - present)
    if not missing:
        return ()
    n_unlearnable = sum(int(c) in set(missing) for c in test_labels)
    names = ", ".join(repr(label_names[c]) if c < len(label_names) else str(c) for c in missing)
    return (
        f"warning: {train_what} has no row of class {names}, which {n_unlearnable:,} of {len(test_labels):,} test rows "
        f"({n_unlearnable / len(test_labels):.0%}) have: those can never be predicted right",
    )
