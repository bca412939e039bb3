"""common/splits.py: the one stratified splitter and the one stratified subsample."""

import numpy as np
import pytest

from common import ConfigError, DataError
from common.splits import stratified_split, stratified_subsample


def test_split_is_stratified_seeded_sorted_and_disjoint():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    kept, held = stratified_split(labels, 0.2, seed=3)
    kept_again, held_again = stratified_split(labels, 0.2, seed=3)
    _, held_other = stratified_split(labels, 0.2, seed=4)
    np.testing.assert_array_equal(held, held_again)
    np.testing.assert_array_equal(kept, kept_again)
    assert not np.array_equal(held, held_other)
    assert np.bincount(labels[held]).tolist() == [12, 6, 2]
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(100))
    assert list(kept) == sorted(kept) and list(held) == sorted(held)


def test_split_matches_scikit_learn_rows():
    """Probe figures depend on these exact rows: the split must stay scikit-learn's."""
    from sklearn.model_selection import train_test_split

    labels = np.random.default_rng(0).integers(0, 4, 500)
    kept, held = stratified_split(labels, 0.1, seed=7)
    sk_kept, sk_held = train_test_split(np.arange(500), test_size=0.1, stratify=labels, random_state=7)
    np.testing.assert_array_equal(held, np.sort(sk_held))
    np.testing.assert_array_equal(kept, np.sort(sk_kept))


@pytest.mark.parametrize(
    "labels, fraction, error, message",
    [
        (np.array([0, 1] * 5), 1.0, ConfigError, "between 0 and 1"),
        (np.array([], dtype=int), 0.2, DataError, "from 0 rows"),
        (np.array([0, 0, 0, 1]), 0.5, DataError, "fewer than 2 examples"),
        (np.array([0, 0, 1, 1, 2, 2]), 0.1, DataError, "cannot carve"),
    ],
)
def test_split_refuses_impossible_requests(labels, fraction, error, message):
    with pytest.raises(error, match=message):
        stratified_split(labels, fraction, seed=0, what="test")


def test_subsample_keeps_class_shares_and_exact_count():
    labels = np.array([0] * 90 + [1] * 10)
    rows = stratified_subsample(labels, 20, seed=0)
    assert len(rows) == 20 and np.bincount(labels[rows]).tolist() == [18, 2]
    assert list(rows) == sorted(rows)
    np.testing.assert_array_equal(rows, stratified_subsample(labels, 20, seed=0))
    assert not np.array_equal(rows, stratified_subsample(labels, 20, seed=1))
    np.testing.assert_array_equal(stratified_subsample(labels, 500, seed=0), np.arange(100))
