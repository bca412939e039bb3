"""`mlx report`: join runs on one test set; probe vs fine-tune with intervals, paired tests and plots.

Runs are joined only when their test rows are the same rows: equal test-split fingerprint and size
in ``run.json``, and equal row ids and labels in ``predictions.npz``. Anything else is refused with
the reason, never silently mixed.
"""

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from common.errors import ConfigError, StoreError
from common.paths import mlx_home
from common.record import Predictions, ResultRow, RunRecord, SplitRef, read_predictions, read_record
from common.writes import DiskFullError, disk_full_message, is_disk_full, new_run_name, staged_run_dir
from report import stats
from report.locate import find_runs, resolve_run, resolved
from report.rows import Report, ReportRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportConfig:
    runs: tuple[str, ...] = ()  # run folders (paths or names); empty: the latest runs sharing a model and test set
    root: Path | None = None  # where to look for runs; default the mlx home
    all_rows: bool = False  # also every setting not chosen on validation, marked optimistic and ranked below
    html: Path | None = None  # the table and plots as one self-contained HTML page
    out: Path | None = None  # folder for the PNGs; default $MLX_HOME/reports/report-<time>-<id>
    markdown: Path | None = None
    plots: bool = True
    n_bootstrap: int = stats.N_BOOTSTRAP
    seed: int = 0


def build_report(config: ReportConfig) -> Report:
    """Select and check runs, make the rows with intervals and paired tests, write plots and markdown."""
    from report.markdown import check_targets

    check_targets(config.markdown, config.out if config.plots else None, config.html)
    records = _select(config)
    predictions = _check_same_test_rows(records)
    rows, layer_rows, notes = [], [], []
    finetuned = _finetuned_models(records)
    for record in records:
        chosen, skipped = _chosen_rows(record, config.all_rows)
        notes += skipped
        for result, chosen_on in chosen:
            correct = predictions[record.run_dir].by_row[result.name] == predictions[record.run_dir].y_true  # (N,) bool
            low, high = stats.bootstrap_ci(correct, config.n_bootstrap, seed=config.seed)
            rows.append(
                (_row(record=record, r=result, chosen_on=chosen_on, low=low, high=high, finetuned=finetuned), correct)
            )
        layer_rows += [(record, r) for r in record.results if r.accuracy is not None]
    notes += _fairness_notes(records)
    if len(rows) < 2:
        raise ConfigError(
            f"nothing to compare: the run(s) {', '.join(Path(r.run_dir).name for r in records)} give "
            f"{len(rows)} scored result; pass two or more runs on the same test set (see `mlx runs list`)"
        )
    table = _with_paired_tests(rows)
    test = _test_split(records[0])
    description = f"{records[0].data.name}: {test.n_rows} test rows (fingerprint {test.fingerprint})"
    report = Report(
        rows=tuple(table),
        data_name=records[0].data.name,
        test_description=description,
        runs=tuple(r.run_dir for r in records),
        out=None,
        plots=(),
        markdown=None,
        notes=tuple(notes),
    )
    try:
        return _write_outputs(config=config, report=report, layer_rows=layer_rows, finetuned=finetuned)
    except OSError as exc:  # a folder that passed the checks but takes no files (/proc, a read-only mount)
        if is_disk_full(exc):
            raise DiskFullError(disk_full_message(Path(exc.filename or "."))) from None
        raise StoreError(
            f"cannot write the report: {exc.strerror or exc} ({exc.filename}); choose another --out, --markdown or --html"
        ) from None


def _write_outputs(config: ReportConfig, report: Report, layer_rows, finetuned: dict[str, str]) -> Report:
    """The PNGs (unless --no-plots), then --markdown and --html, which show them."""
    if config.plots or config.markdown:
        from report import plots as plotting

        out = _out_dir(config)
        if config.out or config.markdown:  # a folder the user named: plots go into it
            plots = plotting.write_plots(
                folder=out, rows=report.rows, layer_rows=layer_rows, finetuned_models=finetuned
            )
        else:  # a new report folder: staged, so it appears only when complete
            with staged_run_dir(out) as staging:
                plots = plotting.write_plots(
                    folder=staging, rows=report.rows, layer_rows=layer_rows, finetuned_models=finetuned
                )
            plots = tuple(out / Path(p).name for p in plots)
        report = replace(report, out=out, plots=plots)
    if config.markdown:
        from report.markdown import write_markdown

        report = replace(report, markdown=write_markdown(config.markdown, report))
    if config.html:
        from report.html import write_html

        report = replace(report, html=write_html(config.html, report))
    return report


# ---------------------------------------------------------------- choosing runs and rows


def _select(config: ReportConfig) -> list[RunRecord]:
    if config.runs:
        records = [read_record(resolve_run(spec, config.root)) for spec in config.runs]
        unique: dict[str, RunRecord] = {}  # the first of each run folder, in the order given
        for r in records:
            unique.setdefault(r.run_dir, r)
        return list(unique.values())
    listing = find_runs(config.root)
    scored = [r for r in listing.records if r.data.test is not None and r.best is not None]
    if not scored:
        raise StoreError(
            f"no finished runs with test results under {config.root or mlx_home()}; run `mlx probe compare` "
            "or `mlx finetune` first, or pass run folders"
        )
    newest = scored[0]
    finetuned = _finetuned_models(scored)
    family = {newest.model.id if newest.model else None} | set(finetuned)
    group, latest = [], set()
    for r in scored:  # newest first: keep the latest run of each command, model and training size
        same_test = _test_split(r).fingerprint == _test_split(newest).fingerprint
        same_model = (r.model.id if r.model else None) in family or (
            r.kind == "finetune" and newest.model and r.model and r.model.id == newest.model.id
        )
        best = r.best
        assert best is not None, "scored runs have a best row"
        key = (r.command, r.model.id if r.model else None, labelled_rows(r, best))
        if same_test and same_model and key not in latest:
            latest.add(key)
            group.append(r)
    return group


def _chosen_rows(record: RunRecord, all_rows: bool) -> tuple[list[tuple[ResultRow, str]], list[str]]:
    """Per method the setting with the best validation accuracy (k, C, pooling, layer: never test), and notes.

    A method with several settings of which some have no validation score cannot be chosen fairly: it
    is left out (said in a note). ``all_rows`` adds every other setting, marked "optimistic": picking one
    of them by its test accuracy would be choosing on test.
    """
    scored = [r for r in record.results if r.accuracy is not None]
    chosen, notes = [], []
    for method in dict.fromkeys(r.method for r in scored):
        candidates = [r for r in scored if r.method == method]
        pick = None
        if len(candidates) == 1:
            pick = (candidates[0], "-")
        elif all(r.validation_accuracy is not None for r in candidates):
            pick = (max(candidates, key=lambda r: (r.validation_accuracy, *_tie_break(r))), "validation")
        else:
            notes.append(
                f"{Path(record.run_dir).name}: its {method} rows have no validation score, so none can be chosen "
                "without test: left out (re-run it with this mlx; --all-rows shows them, marked optimistic)"
            )
        if pick:
            chosen.append(pick)
        if all_rows:
            chosen += [(r, "optimistic") for r in candidates if pick is None or r is not pick[0]]
    return chosen, notes


def _fairness_notes(records: list[RunRecord]) -> list[str]:
    """Text runs of one training size should read the same tokens and choose on the same validation rows."""
    notes = []
    for size in sorted({labelled_rows(r, r.best) or 0 for r in records if r.best}):
        group = [r for r in records if r.best and (labelled_rows(r, r.best) or 0) == size]
        for field_name, what in (("max_length", "max lengths"), ("validation_fingerprint", "validation rows")):
            values = {getattr(r.data, field_name) for r in group} - {None}
            if len(values) > 1:
                notes.append(
                    f"runs with {size:,} training rows used different {what} ({', '.join(sorted(map(str, values)))}): "
                    "they are not on equal terms; re-run them with one --seed and --max-length"
                )
    return notes


def _tie_break(r: ResultRow) -> tuple:
    """Among equal validation accuracies (common on small validation splits) prefer mean pooling and later
    layers, the usual default, then the name: never the test accuracy."""
    layers = r.params.get("layers")
    if not isinstance(layers, list):
        layers = []
    return (r.params.get("pooling") == "mean", max(layers, default=0), -len(layers), r.name)


def _row(
    record: RunRecord, r: ResultRow, chosen_on: str, low: float, high: float, finetuned: dict[str, str]
) -> ReportRow:
    model = model_label(record, finetuned)
    if r.accuracy is None:
        raise ValueError(f"bug: {record.run_dir} result {r.name!r} has no accuracy but was chosen for the report")
    return ReportRow(
        run_dir=record.run_dir,
        kind=record.kind,
        method=r.method,
        detail=describe(r),
        model=model,
        n_train=labelled_rows(record, r),
        accuracy=r.accuracy,
        ci_low=low,
        ci_high=high,
        macro_f1=r.macro_f1,
        trainable_params=r.trainable_params,
        train_seconds=r.train_seconds,
        device=record.device,
        chosen_on=chosen_on,
        row_name=r.name,
        validation_accuracy=r.validation_accuracy,
        peak_memory_bytes=r.peak_memory_bytes,
        predict_per_second=r.predict_per_second,
        device_name=record.device_name,
        c_on_grid_edge=bool(r.params.get("C_on_grid_edge")),
        state=("fine-tuned" if " fine-tuned" in model else "frozen") if record.kind == "probe" else "trained",
    )


def labelled_rows(record: RunRecord, r: ResultRow) -> int | None:
    """Labelled training rows the method saw, its validation rows included.

    A fine-tune run fits on 90% of its rows and picks its checkpoint on the other 10%, recorded as
    two splits; a probe picks C on a split of its ``train`` rows. Counting both the same way puts
    probe and fine-tune at one training-set size side by side (and under one McNemar reference).
    """
    used = [s.n_rows for s in record.data.splits if s.name in ("train", "validation")]
    return sum(used) if used else r.n_train


def describe(r: ResultRow) -> str:
    p = r.params
    if "pooling" in p and "layers" in p:
        layers = p["layers"] if isinstance(p["layers"], list) else [p["layers"]]
        return f"{p['pooling']} L{','.join(map(str, layers))} {r.setting}"
    return r.setting


def model_label(record: RunRecord, finetuned: dict[str, str]) -> str:
    """The model id, or ``<base> fine-tuned (n=N)`` for a store embedded with a fine-tuned model of these runs."""
    if record.model is None:
        return "-"  # vision models are trained from scratch: the method names the model
    return record.model_named(finetuned.get(resolved(record.model.id), record.model.id))


def _finetuned_models(records) -> dict[str, str]:
    """Model folders written by fine-tune runs (as a store's model id names them) -> ``<base> fine-tuned (n=N)``."""
    found = {}
    for r in records:
        if r.kind == "finetune" and r.model:
            n = labelled_rows(r, r.best) if r.best else None
            size = f" (n={n:,})" if n else ""
            for artifact in r.artifacts:
                found[str((Path(r.run_dir) / artifact).resolve())] = (
                    f"{Path(r.model.id).name or r.model.id} fine-tuned{size}"
                )
    return found


# ---------------------------------------------------------------- checks and tests


def _test_split(record: RunRecord) -> SplitRef:
    """The run's test split; a run without one cannot be compared on test rows."""
    if record.data.test is None:
        raise StoreError(f"{record.run_dir} records no test split, so it cannot be compared on test rows; re-run it")
    return record.data.test


def _check_same_test_rows(records: list[RunRecord]) -> dict[str, Predictions]:
    first = records[0]
    for r in records:
        _test_split(r)
    for r in records[1:]:
        a, b = _test_split(first), _test_split(r)
        if (a.fingerprint, a.n_rows) != (b.fingerprint, b.n_rows):
            why = (
                "other data"
                if first.data.fingerprint != r.data.fingerprint
                else "the same data but other test rows (another split, subset or carve)"
            )
            raise StoreError(
                f"runs test on different rows, never mixed: {Path(first.run_dir).name} on {first.data.name} test "
                f"({a.n_rows} rows, fingerprint {a.fingerprint}) but {Path(r.run_dir).name} on {r.data.name} test "
                f"({b.n_rows} rows, fingerprint {b.fingerprint}): {why}; report them separately"
            )
    predictions = {r.run_dir: read_predictions(Path(r.run_dir), r) for r in records}  # checked against each record
    reference = predictions[first.run_dir]
    for r in records[1:]:
        p = predictions[r.run_dir]
        if not (np.array_equal(p.row_ids, reference.row_ids) and np.array_equal(p.y_true, reference.y_true)):
            raise StoreError(
                f"{Path(r.run_dir).name} and {Path(first.run_dir).name} record the same test fingerprint but "
                "different test row ids or labels in predictions.npz; the folders are damaged, re-run them"
            )
    return predictions


def _with_paired_tests(rows: list[tuple[ReportRow, np.ndarray]]) -> list[ReportRow]:
    """Per training size: the reference is the fine-tuned model (else the best row), every other row is tested
    against it, and the frozen-encoder probe that validation prefers is marked (the headline's probe)."""
    table = []
    for n_train in dict.fromkeys(sorted((row.n_train or 0 for row, _ in rows), reverse=True)):
        group = [(row, correct) for row, correct in rows if (row.n_train or 0) == n_train]
        fair = [item for item in group if item[0].chosen_on != "optimistic"] or group
        finetuned = [item for item in fair if item[0].method == "finetune"]
        reference, reference_correct = _by_validation(finetuned or fair)
        frozen = [item for item in fair if item[0].state == "frozen" and item[0].validation_accuracy is not None]
        headline = _by_validation(frozen)[0] if frozen else None
        # rows chosen on validation first; --all-rows' optimistic rows never rank above them
        for row, correct in sorted(group, key=lambda item: (item[0].chosen_on == "optimistic", -item[0].accuracy)):
            row = replace(row, best_frozen=row is headline)
            if correct is reference_correct:
                table.append(replace(row, is_reference=True))
                continue
            test = stats.mcnemar(correct, reference_correct)
            table.append(replace(row, p_value=test.p_value, only_this=test.only_a, only_reference=test.only_b))
    return table


def _by_validation(items: list[tuple[ReportRow, np.ndarray]]) -> tuple[ReportRow, np.ndarray]:
    """The item validation prefers (ties to the listed order); by test accuracy only where no row has a
    validation score (a vision compare of fixed presets: nothing there was chosen)."""
    if all(row.validation_accuracy is None for row, _ in items):
        return max(items, key=lambda item: item[0].accuracy)
    return max(items, key=lambda item: -1.0 if item[0].validation_accuracy is None else item[0].validation_accuracy)


def _out_dir(config: ReportConfig) -> Path:
    from common.paths import ensure_writable_dir

    if config.out:
        return ensure_writable_dir(Path(config.out))
    if config.markdown:
        return ensure_writable_dir(Path(config.markdown).parent)
    return new_run_name(mlx_home() / "reports", "report")
