"""The run record (common/record.py) of `vision compare` and `vision sweep`: one result row per model."""

from pathlib import Path
from typing import Any

import numpy as np

from common import record as run_record
from common.artifacts import to_plain
from vision.data import Splits, fingerprint_arrays
from vision.experiment import ModelRun, TestScores
from vision.specs import ModelSpec


def data_ref(splits: Splits) -> run_record.DataRef:
    refs = tuple(
        run_record.SplitRef(name, fingerprint_arrays(s.images, s.labels), len(s))
        for name, s in (("train", splits.train), ("validation", splits.val), ("test", splits.test))
    )
    return run_record.DataRef(
        name=splits.dataset, fingerprint=splits.fingerprint, splits=refs, label_names=tuple(splits.class_names)
    )


def result_row(
    spec: ModelSpec,
    n_parameters: int,
    train_seconds: float,
    validation_accuracy: float | None,
    test: TestScores | None,
    splits: Splits,
    extra: dict[str, Any] | None = None,
) -> run_record.ResultRow:
    return run_record.ResultRow(
        name=spec.key(),
        method=spec.model.value,
        setting=f"d{spec.depth} w{spec.width} {spec.activation.value} l2={spec.l2:g}"
        + (f" x{spec.members} networks" if spec.members > 1 else "")
        + (f" {spec.train.autocast}" if spec.train.autocast else ""),
        params=spec.to_dict(),
        accuracy=test.accuracy if test else None,
        macro_f1=test.macro_f1 if test else None,
        validation_accuracy=validation_accuracy,
        n_train=len(splits.train),
        n_test=len(splits.test) if test else None,
        trainable_params=n_parameters,
        train_seconds=train_seconds,
        details={
            **({"per_class_accuracy": test.per_class_accuracy, "confusion": test.confusion.tolist()} if test else {}),
            **(extra or {}),
        },
    )


def compare_record(
    runs: tuple[ModelRun, ...],
    splits: Splits,
    config: dict[str, Any],
    device: str,
    artifacts: list[Path],
    started_at: str,
) -> tuple[run_record.RunRecord, run_record.Predictions]:
    rows = tuple(
        result_row(
            spec=r.spec,
            n_parameters=r.n_parameters,
            train_seconds=r.history.seconds,
            validation_accuracy=r.validation_accuracy,
            test=r.test,
            splits=splits,
            extra={
                "seconds_per_epoch": r.history.seconds_per_epoch,
                "n_epochs": len(r.history.epochs),
                "n_tta_views": r.n_tta_views,
                "validation_accuracy_tta": r.validation_accuracy_tta,
            },
        )
        for r in runs
    )
    record = _record(
        command="vision compare",
        rows=rows,
        splits=splits,
        config=config,
        device=device,
        artifacts=artifacts,
        started_at=started_at,
    )
    return record, _predictions(splits, {r.spec.key(): r.test for r in runs if r.test})


def sweep_record(
    rows: list[dict[str, Any]],
    specs: tuple[ModelSpec, ...],
    best_test: TestScores,
    splits: Splits,
    config: dict[str, Any],
    device: str,
    artifacts: list[Path],
    started_at: str,
) -> tuple[run_record.RunRecord, run_record.Predictions]:
    """Every configuration with its validation accuracy; only the best (rows[0]) has test scores."""
    by_key = {s.key(): s for s in specs}
    result_rows = tuple(
        result_row(
            spec=by_key[row["key"]],
            n_parameters=row["n_parameters"],
            train_seconds=row["train_seconds"],
            validation_accuracy=row["validation_accuracy"],
            test=best_test if i == 0 else None,
            splits=splits,
        )
        for i, row in enumerate(rows)
    )
    record = _record(
        command="vision sweep",
        rows=result_rows,
        splits=splits,
        config=config,
        device=device,
        artifacts=artifacts,
        started_at=started_at,
    )
    return record, _predictions(splits, {rows[0]["key"]: best_test})


def _record(
    command: str, rows, splits: Splits, config: dict[str, Any], device: str, artifacts: list[Path], started_at: str
) -> run_record.RunRecord:
    return run_record.RunRecord(
        kind="vision",
        command=command,
        command_line=run_record.command_line(),
        started_at=started_at,
        finished_at=run_record.now(),
        config=to_plain(config),
        model=None,
        data=data_ref(splits),
        device=device,
        results=rows,
        artifacts=tuple(str(p) for p in artifacts),
        notes=splits.notes,
    )


def _predictions(splits: Splits, tests: dict[str, TestScores]) -> run_record.Predictions:
    # The test split is fixed by the data set, so a row id is the row's index in it.
    return run_record.Predictions(
        np.arange(len(splits.test)), splits.test.labels, {k: t.predicted for k, t in tests.items()}
    )
