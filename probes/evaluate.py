"""One evaluation loop: every pooled matrix x every probe setting -> metrics, saved as a run folder."""

import copy
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from common import ConfigError, writes
from common import record as run_record
from common.cost import measure
from common.heldout import check_test_classes
from common.metrics import confusion_matrix, macro_f1, per_class_metrics
from common.progress import ProgressCallback, no_progress
from common.splits import stratified_split
from embeddings.store import EmbeddingStore
from probes import data
from probes.config import ProbeKind, ProbeRunConfig
from probes.knn import IndexKind, KNNProbe, recall_at_k
from probes.logreg import C_LIMITS, LogRegProbe, select_C
from probes.plots import write_plots
from probes.record import ProbeResult, default_run_dir, probe_record, store_meta

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeReport:
    config: ProbeRunConfig
    results: tuple[ProbeResult, ...]  # sorted by test accuracy, best first
    run_dir: Path
    split_note: str
    store: dict[str, Any] = field(default_factory=dict)
    plots: tuple[Path, ...] = ()
    layer_selections: tuple[tuple[int, ...], ...] = ()
    notes: tuple[str, ...] = ()
    record: run_record.RunRecord | None = None  # what run.json holds; ``--json`` prints it

    @property
    def warnings(self) -> tuple[str, ...]:
        """Things the reader must know about the numbers: a C chosen on the edge of its grid, even extended."""
        return tuple(
            f"logreg {r.pooling} layer {r.layer_label}: C={r.params['C']:g} is on the edge of the C grid "
            f"({min(r.params['C_grid']):g}..{max(r.params['C_grid']):g}"
            + (", extended as far as it goes" if r.params.get("C_grid_extended") else "")
            + "); the best C may lie beyond it, widen --C"
            for r in self.results
            if r.params.get("C_on_grid_edge")
        )

    @property
    def best(self) -> ProbeResult:
        return self.results[0]


@dataclass(frozen=True)
class Prediction:
    """One probe setting's test predictions and what they cost; a ``ProbeResult`` once scored."""

    setting: str  # e.g. "k=5", "C=0.1"
    params: dict[str, Any]
    y_pred: np.ndarray  # (N_test,) int predicted labels
    fit_seconds: float
    predict_seconds: float
    validation_accuracy: float | None = None
    recall_at_k: float | None = None  # an approximate k-NN index against the exact one
    trainable_params: int = 0


def run_probes(
    config: ProbeRunConfig,
    progress: ProgressCallback = no_progress,
    on_plan: Callable[[dict[str, Any]], None] | None = None,
) -> ProbeReport:
    """Open the store(s), check everything, evaluate every probe on every pooled matrix, save a run folder.

    ``on_plan`` is called with a summary (sizes, poolings, layers, output folder) before the long work.
    """
    started_at = run_record.now()
    run_dir = writes.check_new(config.out or default_run_dir(config.command))
    store = data.open_store(config.store)
    test_store = data.open_store(config.test_store) if config.test_store else None
    try:
        plan = _plan(config, store, test_store)
        if on_plan:
            on_plan(plan.summary(config, run_dir))
        with writes.staged_run_dir(run_dir) as staging:
            results, plots, record = _probe_into(
                staging=staging, config=config, plan=plan, progress=progress, started_at=started_at
            )
        plots = tuple(run_dir / p.name for p in plots)
    finally:
        store.close()
        if test_store:
            test_store.close()
    return ProbeReport(
        config=config,
        results=results,
        run_dir=run_dir,
        split_note=plan.splits.describe(),
        store=plan.store_meta,
        plots=plots,
        layer_selections=plan.selections,
        notes=record.notes,
        record=record,
    )


def _plan(config: ProbeRunConfig, store: EmbeddingStore, test_store: EmbeddingStore | None) -> data.ProbePlan:
    """Every cheap check before any probe runs: splits, poolings, layers, settings, the classes of test."""
    splits = data.plan_splits(store=store, test_store=test_store, test_fraction=config.test_fraction, seed=config.seed)
    splits = data.limit_train(plan=splits, store=store, n=config.train_size, seed=config.seed)
    poolings = data.resolve_poolings(config.poolings, store.info.poolings, store.path)
    selections = data.parse_layers(config.layers, store.info.layers, store.path)
    y_train = data.train_labels(splits, store)
    _check_settings(config, len(y_train))
    label_names = store.info.label_names or tuple(str(c) for c in range(int(y_train.max()) + 1))
    explicit = any(name != "all" for name in config.poolings)
    pairs, pair_notes = data.pair_poolings_with_layers(
        store=store, split=splits.train_split, poolings=poolings, selections=selections, explicit_poolings=explicit
    )
    y_test = data.test_labels(splits, store, test_store)
    missing = check_test_classes(y_train, y_test, label_names, train_what=f"the training rows of {store.path}")
    return data.ProbePlan(
        store=store,
        test_store=test_store,
        splits=splits,
        pairs=pairs,
        poolings=poolings,
        selections=selections,
        label_names=label_names,
        n_train=len(y_train),
        n_test=len(y_test),
        notes=[*splits.notes, *missing, *pair_notes],
        store_meta=store_meta(store, test_store),
    )


def _probe_into(
    staging: Path, config: ProbeRunConfig, plan: data.ProbePlan, progress: ProgressCallback, started_at: str
) -> tuple[tuple[ProbeResult, ...], tuple[Path, ...], run_record.RunRecord]:
    """Evaluate every probe on every pooled matrix; write the plots, run.json and the test predictions."""
    store, test_store = plan.store, plan.test_store
    predictions: dict[str, np.ndarray] = {}
    with measure("cpu") as probing:
        matrices = data.iter_matrices(store=store, test_store=test_store, plan=plan.splits, pairs=plan.pairs)
        found = _evaluate(
            config=config,
            matrices=matrices,
            n_matrices=len(plan.pairs),
            label_names=plan.label_names,
            progress=progress,
            predictions=predictions,
        )
    found = _with_encoder_cost(
        results=found, store=store, test_store=test_store, plan=plan.splits, probing_peak=probing.peak_memory_bytes
    )
    results = tuple(sorted(found, key=lambda r: -r.accuracy))
    notes = plan.notes + _grid_notes(results)
    plots = (
        write_plots(folder=staging, results=results, selections=plan.selections, label_names=plan.label_names)
        if config.plot
        else ()
    )
    record = probe_record(config=config, plan=plan, results=results, plots=plots, notes=notes, started_at=started_at)
    row_ids = data.test_row_ids(plan.splits, store, test_store)
    y_true = data.test_labels(plan.splits, store, test_store)
    run_record.write_record(staging, record, run_record.Predictions(row_ids, y_true, predictions))
    return results, plots, record


def _with_encoder_cost(results, store, test_store, plan: data.SplitPlan, probing_peak: int | None) -> list[ProbeResult]:
    """Each result with the frozen encoder's share of the cost, as the store recorded it (stores from before
    mlx recorded it say nothing: None). The encoder's seconds on a split are shared pro rata by the rows used."""
    test_source = test_store or store

    def share(source, split: str, rows) -> float | None:
        seconds = source.info.encode_seconds.get(split)
        if seconds is None:
            return None
        n_split = source.info.splits[split]
        return seconds * (n_split if rows is None else len(rows)) / max(n_split, 1)

    train_s = share(store, plan.train_split, plan.train_rows)
    test_s = share(test_source, plan.test_split, plan.test_rows)
    peaks = [p for p in (probing_peak, store.info.peak_memory_bytes, test_source.info.peak_memory_bytes) if p]
    peak = max(peaks) if peaks else None
    return [
        replace(r, encode_train_seconds=train_s, encode_test_seconds=test_s, peak_memory_bytes=peak) for r in results
    ]


def _grid_notes(results) -> list[str]:
    """Said aloud: where the C grid was extended because the choice lay on its edge."""
    notes = []
    for r in results:
        added = r.params.get("C_grid_extended") or []
        if added:
            edge = " (still on the edge: flagged)" if r.params.get("C_on_grid_edge") else ""
            notes.append(
                f"logreg {r.pooling} layer {r.layer_label}: C grid extended to {min(added):g}..{max(added):g} "
                f"(bounds {C_LIMITS[0]:g}..{C_LIMITS[1]:g}); C={r.params['C']:g} chosen{edge}"
            )
    return notes


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
            for prediction in predict(config, m):
                results.append(_result(kind=kind, m=m, prediction=prediction, label_names=label_names))
                predictions[results[-1].name] = prediction.y_pred
            progress("probing", i * len(config.probes) + j + 1, total)
            log.info("%s on %s layer %s done", kind.value, m.pooling, m.layer_label)
    return results


def _knn_predictions(config: ProbeRunConfig, m: data.PooledMatrices) -> Iterator[Prediction]:
    """One index and one search at the largest k serve every k: the k nearest are a prefix of the k_max nearest."""
    c = config.knn
    k_max = max(c.ks)
    start = time.perf_counter()
    probe = _knn_probe(config, k_max).fit(m.X_train, m.y_train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    distances, rows = probe.kneighbors(m.X_test, k_max)
    search_s = time.perf_counter() - start
    exact_rows = None
    if c.index is not IndexKind.FLAT:
        exact = KNNProbe(k=k_max, metric=c.metric.value, index="flat").fit(m.X_train, m.y_train)
        exact_rows = exact.kneighbors(m.X_test, k_max)[1]
    validation = _knn_validation(config, m)
    for k in sorted(c.ks):
        start = time.perf_counter()
        with_k = copy.copy(probe)  # shares the fitted index
        with_k.k = k
        y_pred = with_k.predict_from_neighbours(distances, rows)
        vote_s = time.perf_counter() - start
        yield Prediction(
            setting=f"k={k}",
            params={"k": k, "metric": c.metric.value, "weights": c.weights.value, "index": c.index.value},
            y_pred=y_pred,
            fit_seconds=fit_s,
            predict_seconds=search_s + vote_s,
            validation_accuracy=validation[k],
            recall_at_k=None if exact_rows is None else recall_at_k(rows, exact_rows, k),
        )


def _knn_probe(config: ProbeRunConfig, k: int) -> KNNProbe:
    c = config.knn
    return KNNProbe(
        k=k, metric=c.metric.value, weights=c.weights.value, index=c.index.value, params=c.approximate, seed=config.seed
    )


def _knn_validation(config: ProbeRunConfig, m: data.PooledMatrices) -> dict[int, float]:
    """Validation accuracy of every k: an index of the fit rows queried with the validation rows (the rows
    logistic regression chooses C on), so that k, like C, is chosen without test."""
    c = config.knn
    fit_rows, validation_rows = stratified_split(
        m.y_train, config.logreg.validation_fraction, config.seed, what="validation"
    )
    k_max = min(max(c.ks), len(fit_rows))
    probe = _knn_probe(config, k_max).fit(m.X_train[fit_rows], m.y_train[fit_rows])
    distances, rows = probe.kneighbors(m.X_train[validation_rows], k_max)
    accuracy = {}
    for k in sorted(c.ks):
        with_k = copy.copy(probe)
        with_k.k = min(k, k_max)
        y_pred = with_k.predict_from_neighbours(distances, rows)
        accuracy[k] = float(np.mean(y_pred == m.y_train[validation_rows]))
    return accuracy


def _logreg_predictions(config: ProbeRunConfig, m: data.PooledMatrices) -> Iterator[Prediction]:
    """C chosen on a stratified validation split of train; refit on all of train; one test prediction."""
    c = config.logreg
    start = time.perf_counter()
    chosen = select_C(
        X=m.X_train,
        y=m.y_train,
        Cs=c.Cs,
        validation_fraction=c.validation_fraction,
        seed=config.seed,
        max_iter=c.max_iter,
    )
    probe = LogRegProbe(C=chosen.C, max_iter=c.max_iter, seed=config.seed).fit(m.X_train, m.y_train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    y_pred = probe.predict(m.X_test)
    predict_s = time.perf_counter() - start
    params = {
        "C": chosen.C,
        "C_grid": list(chosen.grid),
        "C_grid_extended": list(chosen.extended),
        "validation_accuracy_by_C": {str(k): v for k, v in sorted(chosen.validation_accuracy.items())},
        "validation_loss_by_C": {str(k): v for k, v in sorted(chosen.validation_loss.items())},
        "n_fit": chosen.n_fit,
        "n_validation": chosen.n_validation,
        "C_on_grid_edge": chosen.on_edge,
    }
    if chosen.on_edge:
        log.info("%s layer %s: C=%g is on the edge of the C grid", m.pooling, m.layer_label, chosen.C)
    n_weights = probe.model_.coef_.size + probe.model_.intercept_.size
    yield Prediction(
        setting=f"C={chosen.C:g}",
        params=params,
        y_pred=y_pred,
        fit_seconds=fit_s,
        predict_seconds=predict_s,
        validation_accuracy=chosen.validation_accuracy[chosen.C],
        trainable_params=int(n_weights),
    )


def _result(
    kind: ProbeKind, m: data.PooledMatrices, prediction: Prediction, label_names: tuple[str, ...]
) -> ProbeResult:
    y_pred = prediction.y_pred
    confusion = confusion_matrix(m.y_test, y_pred, len(label_names))  # (C, C)
    return ProbeResult(
        probe=kind.value,
        pooling=m.pooling,
        layers=m.layers,
        setting=prediction.setting,
        params=prediction.params,
        accuracy=float(np.mean(y_pred == m.y_test)),
        macro_f1=macro_f1(m.y_test, y_pred),
        per_class=per_class_metrics(confusion, label_names),
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
        fit_seconds=prediction.fit_seconds,
        predict_seconds=prediction.predict_seconds,
        n_train=len(m.y_train),
        n_test=len(m.y_test),
        dim=int(m.X_train.shape[1]),
        validation_accuracy=prediction.validation_accuracy,
        recall_at_k=prediction.recall_at_k,
        trainable_params=prediction.trainable_params,
    )
