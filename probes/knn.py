"""k-nearest-neighbour probe on FAISS indexes, with the voting rules of scikit-learn.

``KNNProbe(k=5, metric="cosine", weights="uniform", index="flat")`` follows the scikit-learn
estimator API. With ``index="flat"`` the search is exact and predictions equal those of
``KNeighborsClassifier(algorithm="brute")`` with the same metric and weights, ties aside: votes are
summed per class and the lowest class index wins a tie, as in scikit-learn. ``hnsw`` and ``ivf``
are approximate; ``recall_at_k`` measures them against an exact search.
"""

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from common import ConfigError, DataError
from probes.choices import IndexKind, Metric, Weights  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)


MIN_IVF_ROWS = 16


@dataclass(frozen=True)
class ApproximateParams:
    """Search-quality knobs of the approximate indexes.

    ``ivf`` is an inverted file over 4-bit product-quantisation codes scanned with SIMD ("fast scan"),
    whose top ``k * ivf_refine_factor`` candidates are re-ranked with exact distances. Scanning
    compressed codes is what makes it faster than the BLAS-backed flat search; the exact re-ranking
    is what keeps its accuracy within 0.1 point of it. The defaults were chosen with
    ``benchmarks/knn_speed.py`` (see docs/probes.md).
    """

    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128
    ivf_lists: int | None = None  # None: about sqrt(N)/2.7 (128 lists for 120k rows), >= 39 training rows each
    ivf_nprobe: int = 32
    ivf_refine_factor: int = 16
    ivf_training_rows_per_list: int = 40
    ivf_kmeans_iterations: int = 10


def _as_matrix(X: np.ndarray, name: str) -> np.ndarray:
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise DataError(f"{name} must be a 2-D matrix (N, D), got shape {X.shape}")
    return X


def _prepare(X: np.ndarray, metric: Metric) -> np.ndarray:
    """(N, D) float32, unit-normalised for cosine so that inner product = 1 - cosine distance."""
    import faiss  # imported where used: the CLI imports this module for its option enums

    if metric is Metric.COSINE:
        X = X.copy()
        faiss.normalize_L2(X)  # zero rows stay zero, as scikit-learn's normalize leaves them
    return X


def build_index(
    X: np.ndarray, metric: Metric, kind: IndexKind, params: ApproximateParams = ApproximateParams(), seed: int = 0
):
    """A FAISS index over prepared (N, D) float32 vectors ``X``."""
    import faiss

    n, d = X.shape
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric is Metric.COSINE else faiss.METRIC_L2
    index: faiss.Index
    if kind is IndexKind.FLAT:
        index = faiss.IndexFlatIP(d) if metric is Metric.COSINE else faiss.IndexFlatL2(d)
    elif kind is IndexKind.HNSW:
        hnsw = faiss.IndexHNSWFlat(d, params.hnsw_m, faiss_metric)
        hnsw.hnsw.efConstruction = params.hnsw_ef_construction
        hnsw.hnsw.efSearch = params.hnsw_ef_search
        index = hnsw
    else:
        return _ivf_index(X=X, faiss_metric=faiss_metric, params=params, seed=seed)
    index.add(X)
    return index


def _ivf_index(X: np.ndarray, faiss_metric: int, params: ApproximateParams, seed: int):
    import faiss

    n, d = X.shape
    if n < MIN_IVF_ROWS:  # 4-bit PQ trains 16 centroids per sub-quantiser
        raise ConfigError(
            f"--index ivf needs at least {MIN_IVF_ROWS} training rows, the store has {n}; use --index flat (exact, and fast at this size)"
        )
    n_lists = max(1, min(params.ivf_lists or int(math.sqrt(n) / 2.7), n // 39))
    n_codes = max(m for m in range(1, max(1, d // 8) + 1) if d % m == 0)  # ~8 dimensions per 4-bit code
    # FAISS's stubs type both as a plain Index; at run time they are an IndexRefineFlat over an IndexIVFPQFastScan.
    index: Any = faiss.index_factory(d, f"IVF{n_lists},PQ{n_codes}x4fs,RFlat", faiss_metric)
    ivf: Any = faiss.downcast_index(faiss.extract_index_ivf(index))
    ivf.by_residual = False  # one lookup table per query, not one per (query, list)
    ivf.cp.seed, ivf.cp.niter = seed, params.ivf_kmeans_iterations  # coarse centroids need not converge
    ivf.pq.cp.seed, ivf.pq.cp.niter = seed, params.ivf_kmeans_iterations
    ivf.pq.cp.min_points_per_centroid = ivf.cp.min_points_per_centroid = 1  # small stores: no FAISS warnings
    ivf.nprobe = min(params.ivf_nprobe, n_lists)
    index.k_factor = params.ivf_refine_factor
    n_sample = max(39, params.ivf_training_rows_per_list) * n_lists
    sample = X if n <= n_sample else X[np.sort(np.random.default_rng(seed).choice(n, n_sample, replace=False))]
    coarse = faiss.Clustering(d, n_lists, ivf.cp)
    coarse.train(sample, ivf.quantizer)  # k-means with every thread; index.train then sees it trained
    threads = faiss.omp_get_max_threads()
    # PQ training nests OpenMP loops: with 2 threads on 2 busy cores it ran 40x slower than with 1,
    # and adding codes was 20% slower too.
    faiss.omp_set_num_threads(1)
    try:
        index.train(sample)
        index.add(X)
    finally:
        faiss.omp_set_num_threads(threads)
    return index


def search(index, Q: np.ndarray, k: int, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    """(N, k) float32 distances in scikit-learn's units and (N, k) int64 neighbour rows.

    Cosine: 1 - cosine similarity. L2: Euclidean distance (FAISS returns its square).
    """
    import faiss

    if isinstance(index, faiss.IndexFlat):
        # Bigger database blocks make bigger GEMMs: ~15% faster than FAISS's default 1024 on 2 cores.
        saved = faiss.cvar.distance_compute_blas_database_bs
        faiss.cvar.distance_compute_blas_database_bs = 4096
        try:
            scores, rows = index.search(Q, k)
        finally:
            faiss.cvar.distance_compute_blas_database_bs = saved
    else:
        scores, rows = index.search(Q, k)
    if metric is Metric.COSINE:
        distances = 1.0 - scores
    else:
        distances = np.sqrt(np.maximum(scores, 0.0))
    return np.maximum(distances, 0.0), rows


def vote(neighbour_labels: np.ndarray, distances: np.ndarray, n_classes: int, weights: Weights) -> np.ndarray:
    """(N,) int64 class indices from (N, k) neighbour labels and distances, as scikit-learn votes.

    Distance weights are 1/d; a query with a neighbour at distance 0 gives weight 1 to its
    zero-distance neighbours and 0 to the rest (scikit-learn's ``_get_weights``).
    """
    n, k = neighbour_labels.shape
    if weights is Weights.UNIFORM:
        w = np.ones((n, k), dtype=np.float64)
    else:
        d = distances.astype(np.float64)
        with np.errstate(divide="ignore"):
            w = 1.0 / d
        exact = np.isinf(w)
        has_exact = exact.any(axis=1)
        w[has_exact] = exact[has_exact]
    scores = np.zeros((n, n_classes), dtype=np.float64)  # (N, C)
    np.add.at(scores, (np.repeat(np.arange(n), k), neighbour_labels.ravel()), w.ravel())
    return scores.argmax(axis=1)  # argmax takes the first maximum: lowest class wins ties


class KNNProbe:
    """k-NN classifier over a FAISS index. ``fit`` returns self; learned state ends in ``_``."""

    def __init__(
        self,
        k: int = 5,
        metric: str = "cosine",
        weights: str = "uniform",
        index: str = "flat",
        params: ApproximateParams = ApproximateParams(),
        seed: int = 0,
    ):
        self.k = k
        self.metric = metric
        self.weights = weights
        self.index = index
        self.params = params
        self.seed = seed

    def _choices(self) -> tuple[Metric, Weights, IndexKind]:
        try:
            return Metric(self.metric), Weights(self.weights), IndexKind(self.index)
        except ValueError:
            raise ConfigError(
                f"unknown k-NN option (metric={self.metric!r}, weights={self.weights!r}, index={self.index!r}); "
                f"metric is one of {[m.value for m in Metric]}, weights one of {[w.value for w in Weights]}, "
                f"index one of {[i.value for i in IndexKind]}"
            ) from None

    def fit(self, X: np.ndarray, y: np.ndarray) -> "KNNProbe":
        """X: (N, D) float32 training vectors; y: (N,) integer labels."""
        metric, _, kind = self._choices()
        X = _as_matrix(X, "training vectors")
        if not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ConfigError(f"k must be a positive integer, got {self.k!r}")
        if self.k > len(X):
            raise ConfigError(
                f"k={self.k} is larger than the training set ({len(X)} rows); choose --k of at most {len(X)}"
            )
        self.classes_, self.y_ = np.unique(np.asarray(y), return_inverse=True)
        self.n_features_in_ = X.shape[1]
        self.index_ = build_index(X=_prepare(X, metric), metric=metric, kind=kind, params=self.params, seed=self.seed)
        log.info("built %s %s index over %d x %d vectors", kind.value, metric.value, *X.shape)
        return self

    def kneighbors(self, X: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) distances (scikit-learn units) and (N, k) training-row indices, nearest first."""
        metric, _, _ = self._choices()
        X = _as_matrix(X, "query vectors")
        if X.shape[1] != self.n_features_in_:
            raise DataError(
                f"query vectors have {X.shape[1]} features but the probe was fitted on {self.n_features_in_}"
            )
        return search(index=self.index_, Q=_prepare(X, metric), k=k or self.k, metric=metric)

    def predict_from_neighbours(self, distances: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Labels from a (possibly wider) neighbour search: only the first ``k`` columns vote."""
        _, weights, _ = self._choices()
        rows = rows[:, : self.k]
        if (rows < 0).any():
            # An approximate index can return fewer than k hits (-1 rows); they must not vote.
            raise DataError(
                f"the {self.index} index returned fewer than k={self.k} neighbours; use --index flat or a smaller k"
            )
        return self.classes_[
            vote(
                neighbour_labels=self.y_[rows],
                distances=distances[:, : self.k],
                n_classes=len(self.classes_),
                weights=weights,
            )
        ]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(N,) predicted labels for (N, D) queries."""
        return self.predict_from_neighbours(*self.kneighbors(X))

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y)))


def recall_at_k(approximate_rows: np.ndarray, exact_rows: np.ndarray, k: int) -> float:
    """Mean fraction of the exact k nearest neighbours that the approximate search also returned."""
    a, e = approximate_rows[:, :k], exact_rows[:, :k]  # (N, k) each
    hits = (a[:, :, None] == e[:, None, :]) & (a[:, :, None] >= 0)  # (N, k, k)
    return float(hits.any(axis=2).sum() / e.size)
