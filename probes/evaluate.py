"""One evaluation loop: every pooled matrix x every probe setting -> metrics, saved as a run folder."""

import copy
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from common import ConfigError
from common import record as run_record
from common import runs as common_runs
from common.metrics import macro_f1
from common.options import LayerSpec
from common.progress import ProgressCallback, no_progress
from probes import data, report, runs
from probes.knn import ApproximateParams, IndexKind, KNNProbe, Metric, Weights, recall_at_k
from probes.logreg import DEFAULT_CS, LogRegProbe, select_C

log = logging.getLogger(__name__)


class ProbeKind(str, Enum):
    KNN = "knn"
    LOGREG = "logreg"


@dataclass(frozen=True)
class KNNConfig:
    ks: tuple[int, ...] = (1, 5, 10, 20)
    metric: Metric = Metric.COSINE
    weights: Weights = Weights.UNIFORM
    index: IndexKind = IndexKind.FLAT
    approximate: ApproximateParams = ApproximateParams()


@dataclass(frozen=True)
class LogRegConfig:
    Cs: tuple[float, ...] = DEFAULT_CS
    validation_fraction: float = 0.1
    max_iter: int = 1000


@dataclass(frozen=True)
class ProbeRunConfig:
    """Everything one ``mlx probe`` run needs. ``poolings``/``layers`` hold parsed values (empty = default)."""

    command: str
    store: Path
    probes: tuple[ProbeKind, ...]
    poolings: tuple[str, ...] = ()
    layers: tuple[LayerSpec, ...] = ()  # common.options.parse_layers
    knn: KNNConfig = KNNConfig()
    logreg: LogRegConfig = LogRegConfig()
    test_fraction: float | None = None
    test_store: Path | None = None
    train_size: int | None = None  # a stratified, seeded subset of this many training rows (None: all)
    seed: int = 0
    out: Path | None = None
    plot: bool = False

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ProbeResult:
    """Test metrics of one probe setting on one pooling x layer selection."""

    probe: str
    pooling: str
    layers: tuple[int, ...]
    setting: str  # e.g. "k=5" (metric, weights, index in params), "C=0.1"
    params: dict[str, Any]
    accuracy: float
    macro_f1: float
    per_class: tuple[ClassMetrics, ...]
    confusion: tuple[tuple[int, ...], ...]  # (C, C) rows = true class, columns = predicted
    fit_seconds: float
    predict_seconds: float
    n_train: int
    n_test: int
    dim: int
    validation_accuracy: float | None = None
    recall_at_k: float | None = None
    trainable_params: int = 0  # k-NN learns nothing; logistic regression: coefficients + intercepts

    @property
    def layer_label(self) -> str:
        return data.layer_label(self.layers)

    @property
    def name(self) -> str:
        """Unique within a run; keys this result's test predictions."""
        return f"{self.probe}-{self.pooling}-L{self.layer_label}-{self.setting}"

    def to_row(self) -> run_record.ResultRow:
        d = self.to_dict()
        details = {k: d[k] for k in ("per_class", "confusion", "fit_seconds", "predict_seconds", "dim", "recall_at_k")}
        return run_record.ResultRow(
            name=self.name,
            method=self.probe,
            setting=self.setting,
            params={"pooling": self.pooling, "layers": list(self.layers), **d["params"]},
            accuracy=self.accuracy,
            macro_f1=self.macro_f1,
            validation_accuracy=self.validation_accuracy,
            n_train=self.n_train,
            n_test=self.n_test,
            trainable_params=self.trainable_params,
            train_seconds=self.fit_seconds,
            details=details,
        )

    def to_dict(self) -> dict[str, Any]:
        d = _plain(asdict(self))
        d["layer"] = self.layers[0] if len(self.layers) == 1 else list(self.layers)
        return d


@dataclass(frozen=True)
class ProbeReport:
    config: ProbeRunConfig
    results: tuple[ProbeResult, ...]  # sorted by test accuracy, best first
    run_dir: Path
    split_note: str
    carved: bool
    store: dict[str, Any] = field(default_factory=dict)
    plots: tuple[Path, ...] = ()
    layer_selections: tuple[tuple[int, ...], ...] = ()
    notes: tuple[str, ...] = ()
    record: run_record.RunRecord | None = None  # what run.json holds; ``--json`` prints it

    @property
    def warnings(self) -> tuple[str, ...]:
        """Things the reader must know about the numbers: a C chosen on the edge of its grid."""
        return tuple(
            f"logreg {r.pooling} layer {r.layer_label}: C={r.params['C']:g} is on the edge of the C grid "
            f"({min(r.params['C_grid']):g}..{max(r.params['C_grid']):g}); the best C may lie beyond it, widen --C"
            for r in self.results
            if r.params.get("C_on_grid_edge")
        )

    @property
    def best(self) -> ProbeResult:
        return self.results[0]


Prediction = tuple[str, dict[str, Any], np.ndarray, float, float, dict[str, float]]


def run_probes(
    config: ProbeRunConfig,
    progress: ProgressCallback = no_progress,
    on_plan: Callable[[dict[str, Any]], None] | None = None,
) -> ProbeReport:
    """Open the store(s), check everything, evaluate every probe on every pooled matrix, save a run folder.

    ``on_plan`` is called with a summary (sizes, poolings, layers, output folder) before the long work.
    """
    started_at = run_record.now()
    run_dir = common_runs.check_new(config.out or runs.default_run_dir(config.command))
    store = data.open_store(config.store)
    test_store = data.open_store(config.test_store) if config.test_store else None
    try:
        plan = data.plan_splits(store, test_store, config.test_fraction, config.seed)
        plan = data.limit_train(plan, store, config.train_size, config.seed)
        poolings = data.resolve_poolings(config.poolings, store.info.poolings, store.path)
        selections = data.parse_layers(config.layers, store.info.layers, store.path)
        y_train = data.train_labels(plan, store)
        _check_settings(config, len(y_train))
        label_names = store.info.label_names or tuple(str(c) for c in range(int(y_train.max()) + 1))
        explicit = any(name != "all" for name in config.poolings)
        pairs, notes = data.pair_poolings_with_layers(store, plan.train_split, poolings, selections, explicit)
        notes = [*plan.notes, *notes]
        store_meta = _store_meta(store, test_store)
        if on_plan:
            n_test = len(data.test_labels(plan, store, test_store))
            on_plan(
                {
                    "store": str(store.path),
                    "model": store.info.model_id,
                    "split": plan.describe(),
                    "rows": f"{len(y_train):,} train / {n_test:,} test, {len(label_names)} classes, seed {config.seed}",
                    "poolings": ", ".join(poolings),
                    "layers": "; ".join(map(data.layer_label, selections)),
                    "probes": ", ".join(p.value for p in config.probes),
                    "run folder": str(run_dir),
                    "notes": notes,
                }
            )
        with common_runs.staged_run_dir(run_dir) as staging:
            predictions: dict[str, np.ndarray] = {}
            results = _evaluate(
                config,
                data.iter_matrices(store, test_store, plan, pairs),
                len(pairs),
                label_names,
                progress,
                predictions,
            )
            results = tuple(sorted(results, key=lambda r: -r.accuracy))
            plots = report.write_plots(staging, results, selections, label_names) if config.plot else ()
            record = _record(
                config, results, store, test_store, plan, label_names, store_meta, notes, plots, started_at
            )
            row_ids, y_true = data.test_row_ids(plan, store, test_store), data.test_labels(plan, store, test_store)
            run_record.write_record(staging, record, run_record.Predictions(row_ids, y_true, predictions))
        plots = tuple(run_dir / p.name for p in plots)
    finally:
        store.close()
        if test_store:
            test_store.close()
    return ProbeReport(
        config,
        results,
        run_dir,
        plan.describe(),
        plan.carved_fraction is not None,
        store_meta,
        plots,
        selections,
        tuple(notes),
        record,
    )


def _check_settings(config: ProbeRunConfig, n_train: int) -> None:
    if ProbeKind.KNN in config.probes:
        if not config.knn.ks or min(config.knn.ks) < 1:
            raise ConfigError(f"--k needs positive integers such as 1,5,10,20, got {list(config.knn.ks)}")
        if max(config.knn.ks) > n_train:
            raise ConfigError(
                f"k={max(config.knn.ks)} is larger than the training set ({n_train} rows); "
                f"choose --k values of at most {n_train}"
            )
    if ProbeKind.LOGREG in config.probes:
        if not config.logreg.Cs or not all(0 < c < float("inf") for c in config.logreg.Cs):
            raise ConfigError(f"--C needs positive finite numbers such as 0.01,0.1,1,10, got {list(config.logreg.Cs)}")
    if config.seed < 0:
        raise ConfigError(f"--seed must be 0 or more, got {config.seed}")


def _evaluate(
    config: ProbeRunConfig,
    matrices: Iterator[data.PooledMatrices],
    n_matrices: int,
    label_names: tuple[str, ...],
    progress: ProgressCallback,
    predictions: dict[str, np.ndarray],
) -> list[ProbeResult]:
    """The one loop: for each pooled matrix, for each probe, fit on train and score once on test.

    ``predictions`` receives each result's (N_test,) predicted labels under the result's name.
    """
    results: list[ProbeResult] = []
    total = n_matrices * len(config.probes)
    progress("probing", 0, total)
    for i, m in enumerate(matrices):
        for j, kind in enumerate(config.probes):
            predict = _knn_predictions if kind is ProbeKind.KNN else _logreg_predictions
            for setting, params, y_pred, fit_s, predict_s, extra in predict(config, m):
                results.append(_result(kind, m, setting, params, y_pred, fit_s, predict_s, extra, label_names))
                predictions[results[-1].name] = y_pred
            progress("probing", i * len(config.probes) + j + 1, total)
            log.info("%s on %s layer %s done", kind.value, m.pooling, m.layer_label)
    return results


def _knn_predictions(config: ProbeRunConfig, m: data.PooledMatrices) -> Iterator[Prediction]:
    """One index and one search at the largest k serve every k: the k nearest are a prefix of the k_max nearest."""
    c = config.knn
    k_max = max(c.ks)
    start = time.perf_counter()
    probe = KNNProbe(
        k=k_max,
        metric=c.metric.value,
        weights=c.weights.value,
        index=c.index.value,
        params=c.approximate,
        seed=config.seed,
    ).fit(m.X_train, m.y_train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    distances, rows = probe.kneighbors(m.X_test, k_max)
    search_s = time.perf_counter() - start
    exact_rows = None
    if c.index is not IndexKind.FLAT:
        exact = KNNProbe(k=k_max, metric=c.metric.value, index="flat").fit(m.X_train, m.y_train)
        exact_rows = exact.kneighbors(m.X_test, k_max)[1]
    for k in sorted(c.ks):
        start = time.perf_counter()
        with_k = copy.copy(probe)  # shares the fitted index
        with_k.k = k
        y_pred = with_k.predict_from_neighbours(distances, rows)
        vote_s = time.perf_counter() - start
        extra = {} if exact_rows is None else {"recall_at_k": recall_at_k(rows, exact_rows, k)}
        params = {"k": k, "metric": c.metric.value, "weights": c.weights.value, "index": c.index.value}
        yield f"k={k}", params, y_pred, fit_s, search_s + vote_s, extra


def _logreg_predictions(config: ProbeRunConfig, m: data.PooledMatrices) -> Iterator[Prediction]:
    """C chosen on a stratified validation split of train; refit on all of train; one test prediction."""
    c = config.logreg
    start = time.perf_counter()
    chosen = select_C(m.X_train, m.y_train, c.Cs, c.validation_fraction, config.seed, c.max_iter)
    probe = LogRegProbe(C=chosen.C, max_iter=c.max_iter, seed=config.seed).fit(m.X_train, m.y_train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    y_pred = probe.predict(m.X_test)
    predict_s = time.perf_counter() - start
    params = {
        "C": chosen.C,
        "C_grid": list(c.Cs),
        "validation_accuracy_by_C": {str(k): v for k, v in chosen.validation_accuracy.items()},
        "n_fit": chosen.n_fit,
        "n_validation": chosen.n_validation,
        "C_on_grid_edge": chosen.on_edge,
    }
    if chosen.on_edge:
        log.info("%s layer %s: C=%g is on the edge of the C grid", m.pooling, m.layer_label, chosen.C)
    n_weights = probe.model_.coef_.size + probe.model_.intercept_.size
    yield (
        f"C={chosen.C:g}",
        params,
        y_pred,
        fit_s,
        predict_s,
        {"validation_accuracy": chosen.validation_accuracy[chosen.C], "trainable_params": int(n_weights)},
    )


def _result(
    kind: ProbeKind,
    m: data.PooledMatrices,
    setting: str,
    params: dict[str, Any],
    y_pred: np.ndarray,
    fit_s: float,
    predict_s: float,
    extra: dict[str, float],
    label_names: tuple[str, ...],
) -> ProbeResult:
    labels = np.arange(len(label_names))
    precision, recall, f1, support = precision_recall_fscore_support(m.y_test, y_pred, labels=labels, zero_division=0)
    per_class = tuple(
        ClassMetrics(name, float(p), float(r), float(f), int(s))
        for name, p, r, f, s in zip(label_names, precision, recall, f1, support)
    )
    confusion = confusion_matrix(m.y_test, y_pred, labels=labels)
    return ProbeResult(
        probe=kind.value,
        pooling=m.pooling,
        layers=m.layers,
        setting=setting,
        params=params,
        accuracy=float(np.mean(y_pred == m.y_test)),
        macro_f1=macro_f1(m.y_test, y_pred),
        per_class=per_class,
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
        fit_seconds=fit_s,
        predict_seconds=predict_s,
        n_train=len(m.y_train),
        n_test=len(m.y_test),
        dim=int(m.X_train.shape[1]),
        **extra,
    )


def _store_meta(store, test_store) -> dict[str, Any]:
    info = store.info
    meta = {
        "path": str(info.path),
        "fingerprint": runs.store_fingerprint(info.path),
        "model_id": info.model_id,
        "model_revision": info.model_revision,
        "dataset_name": info.dataset_name,
        "dataset_fingerprint": info.dataset_fingerprint,
        "created_at": info.created_at,
        "splits": info.splits,
    }
    if test_store:
        meta["test_store"] = {
            "path": str(test_store.info.path),
            "fingerprint": runs.store_fingerprint(test_store.info.path),
            "dataset_fingerprint": test_store.info.dataset_fingerprint,
        }
    return meta


def _record(
    config: ProbeRunConfig,
    results: tuple[ProbeResult, ...],
    store,
    test_store,
    plan: data.SplitPlan,
    label_names: tuple[str, ...],
    store_meta: dict[str, Any],
    notes: list[str],
    plots: tuple[Path, ...],
    started_at: str,
) -> run_record.RunRecord:
    info = store.info
    return run_record.RunRecord(
        kind="probe",
        command=f"probe {config.command}",
        command_line=run_record.command_line(),
        started_at=started_at,
        finished_at=run_record.now(),
        config={**config.to_dict(), "store_meta": store_meta, "split": plan.describe()},
        model=run_record.ModelRef(info.model_id, info.model_revision),
        data=run_record.DataRef(
            info.dataset_name, info.dataset_fingerprint, data.split_refs(plan, store, test_store), tuple(label_names)
        ),
        device="cpu",
        results=tuple(r.to_row() for r in results),
        artifacts=tuple(p.name for p in plots),
        notes=tuple(notes),
    )


def _plain(obj: Any) -> Any:
    """Dataclass dicts -> JSON-ready values (Enums to their value, Paths and tuples to str/list)."""
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
