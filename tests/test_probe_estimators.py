"""The probes as estimators: FAISS k-NN against scikit-learn brute force, C selection on validation."""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from common.splits import stratified_split
from probes import KNNProbe, LogRegProbe, select_C
from probes.knn import Weights, recall_at_k, vote
from probes.synthetic import Mixture


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    mixture = Mixture.random(24, 4, rng, latent_dim=8, clusters_per_class=4, spread=0.6)
    X, y = mixture.sample(600, rng)
    Q, y_q = mixture.sample(200, rng)
    X = X * rng.uniform(0.5, 2.0, (len(X), 1)).astype(np.float32)  # unequal norms, so cosine != l2 ranking
    Q[:5] = X[:5] * 1.5  # exact duplicates in direction: zero cosine distance
    Q[5:10] = X[10:15]  # exact duplicates: zero l2 distance
    return X, y, Q, y_q


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_flat_knn_equals_sklearn_brute_force(vectors, metric, weights, k):
    X, y, Q, _ = vectors
    sk_metric = "cosine" if metric == "cosine" else "euclidean"
    reference = KNeighborsClassifier(n_neighbors=k, metric=sk_metric, weights=weights, algorithm="brute").fit(X, y)
    probe = KNNProbe(k=k, metric=metric, weights=weights, index="flat")
    assert probe.fit(X, y) is probe
    np.testing.assert_array_equal(probe.predict(Q), reference.predict(Q))
    distances, rows = probe.kneighbors(Q)
    ref_distances, ref_rows = reference.kneighbors(Q)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_allclose(distances, ref_distances, atol=2e-4)


def test_knn_keeps_original_labels_and_scores():
    X = np.array([[0, 1], [0, 2], [1, 0], [2, 0]], dtype=np.float32)
    y = np.array([7, 7, 3, 3])
    probe = KNNProbe(k=1, metric="l2").fit(X, y)
    np.testing.assert_array_equal(probe.predict(np.array([[0, 1.5], [1.5, 0]], dtype=np.float32)), [7, 3])
    assert probe.score(X, y) == 1.0


def test_vote_ties_go_to_lowest_class_and_zero_distance_wins():
    labels = np.array([[2, 1], [0, 1]])
    assert list(vote(labels, np.ones((2, 2)), 3, Weights.UNIFORM)) == [1, 0]
    # The zero-distance neighbour takes the vote even against a closer-on-average majority.
    assert list(vote(np.array([[2, 1, 1]]), np.array([[0.0, 0.1, 0.1]]), 3, Weights.DISTANCE)) == [2]


@pytest.mark.parametrize("index", ["hnsw", "ivf"])
def test_approximate_indexes_recall_and_agree(vectors, index):
    X, y, Q, y_q = vectors
    exact = KNNProbe(k=10, index="flat").fit(X, y)
    approximate = KNNProbe(k=10, index=index).fit(X, y)
    recall = recall_at_k(approximate.kneighbors(Q)[1], exact.kneighbors(Q)[1], 10)
    assert recall > 0.9
    assert np.mean(approximate.predict(Q) == exact.predict(Q)) > 0.95


def test_recall_at_k_counts_shared_neighbours():
    approximate = np.array([[1, 2, 3], [4, 5, -1]])
    exact = np.array([[3, 2, 9], [4, 5, 6]])
    assert recall_at_k(approximate, exact, 3) == pytest.approx(4 / 6)


def test_select_C_picks_the_best_validation_accuracy_without_test_data():
    rng = np.random.default_rng(1)
    X, y = Mixture.random(32, 3, rng, latent_dim=8, clusters_per_class=2, spread=1.2).sample(400, rng)
    Cs = (0.001, 0.1, 10.0)
    chosen = select_C(X, y, Cs, validation_fraction=0.25, seed=3)
    fit_rows, validation_rows = stratified_split(y, 0.25, 3)
    assert len(validation_rows) == 100 and not set(fit_rows) & set(validation_rows)
    expected = {
        C: LogRegProbe(C=C, seed=3).fit(X[fit_rows], y[fit_rows]).score(X[validation_rows], y[validation_rows])
        for C in Cs
    }
    # Warm starts reach the same optimum up to the solver's tolerance: at most one validation row differs.
    assert {C: chosen.validation_accuracy[C] for C in Cs} == pytest.approx(expected, abs=0.011)
    # the best validation accuracy; ties to the lower validation loss, then the smaller C; never test
    best = max(chosen.validation_accuracy.values())
    tied = [C for C, a in chosen.validation_accuracy.items() if a == best]
    assert chosen.C == min(tied, key=lambda C: (chosen.validation_loss[C], C))
    assert set(chosen.extended) == set(chosen.validation_accuracy) - set(Cs)
    # Stratified: each class keeps its share in the validation split.
    shares = np.bincount(y[validation_rows]) / np.bincount(y)
    assert shares.min() > 0.2 and shares.max() < 0.3


def test_a_C_on_the_edge_extends_the_grid_until_interior_or_the_bound(monkeypatch):
    import probes.logreg

    rng = np.random.default_rng(4)
    X, y = Mixture.random(16, 3, rng, latent_dim=6, clusters_per_class=1, spread=0.8).sample(300, rng)
    # strong regularisation at the low end of a tiny grid: the choice sits on the upper edge, the grid grows upwards
    chosen = select_C(X, y, (1e-6, 2e-6), seed=0)
    assert chosen.extended and min(chosen.extended) > 2e-6
    assert not chosen.on_edge and chosen.grid[0] < chosen.C < chosen.grid[-1]
    steps = np.diff(np.log10(chosen.grid[1:]))
    assert np.allclose(steps, 1 / 3, atol=0.01)  # a third of a decade, the default grid's own step
    # with a bound right above the grid, it stops there and the choice stays flagged on the edge
    monkeypatch.setattr(probes.logreg, "C_LIMITS", (1e-7, 5e-6))
    bounded = select_C(X, y, (1e-6, 2e-6), seed=0)
    assert max(bounded.grid) <= 5e-6 and bounded.on_edge and bounded.C == max(bounded.grid)


def test_logreg_probe_standardises_features():
    rng = np.random.default_rng(2)
    X, y = Mixture.random(8, 2, rng, latent_dim=4, clusters_per_class=2, spread=0.5).sample(300, rng)
    X[:, 0] *= 1e4  # an "outlier dimension" that would swamp an unscaled penalty
    probe = LogRegProbe(C=1.0).fit(X, y)
    assert probe.score(X, y) > 0.9
    np.testing.assert_allclose(probe.scaler_.transform(X).std(axis=0), 1.0, atol=1e-3)


def test_macro_f1_ignores_classes_absent_from_test_and_predictions():
    """Six named classes, only two in play: a perfect probe scores macro-F1 1.0, not 2/6."""
    from types import SimpleNamespace

    from probes.evaluate import Prediction, ProbeKind, _result

    y = np.array([0, 5, 0, 5])
    m = SimpleNamespace(pooling="mean", layers=(1,), y_test=y, y_train=y, X_train=np.zeros((4, 3)))
    prediction = Prediction(setting="k=1", params={}, y_pred=y.copy(), fit_seconds=0.0, predict_seconds=0.0)
    result = _result(ProbeKind.KNN, m, prediction, tuple("abcdef"))
    assert result.accuracy == 1.0 and result.macro_f1 == 1.0
    assert len(result.per_class) == 6  # the per-class table still lists every named class
