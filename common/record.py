"""The one run record: every command that produces results writes ``run.json`` of this shape.

A run folder holds::

    run.json          the RunRecord (schema below), written last: its presence marks the run complete
    predictions.npz   test predictions: ``row_ids`` (N,), ``y_true`` (N,) and one (N,) int64 array of
                      predicted labels per result row, keyed by the row's ``name``
    ...               the command's own artifacts (plots, weights), listed in ``artifacts``

Result rows carry the same metric names everywhere (``accuracy``, ``macro_f1``,
``validation_accuracy``, ``n_train``, ``n_test``, ``trainable_params``, ``train_seconds``) so that
any two runs can be joined; two runs are compared on the same test rows only when their ``test``
split fingerprints agree (``DataRef.test``).

This module imports only the standard library at the top (numpy inside functions): the CLI reads
records without loading anything heavy.
"""

import hashlib
import json
import os
import pickle
import shlex
import sys
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common.artifacts import to_plain
from common.errors import StoreError
from common.paths import PathKind, check_path
from common.schema import check_fields
from common.version import __version__

SCHEMA_VERSION = 1
RECORD_FILE = "run.json"
PREDICTIONS_FILE = "predictions.npz"
KINDS = ("probe", "finetune", "vision", "attention")
# Key names inside predictions.npz that are not result rows.
ROW_IDS_KEY, Y_TRUE_KEY = "row_ids", "y_true"


@dataclass(frozen=True)
class ModelRef:
    id: str
    revision: str = ""


@dataclass(frozen=True)
class SplitRef:
    """One split as a run used it: its role (train/validation/test), fingerprint of the exact rows, size."""

    name: str
    fingerprint: str
    n_rows: int


@dataclass(frozen=True)
class DataRef:
    name: str
    fingerprint: str  # of the whole dataset the run read
    splits: tuple[SplitRef, ...] = ()
    label_names: tuple[str, ...] = ()
    # Text runs: tokens kept per text, and the fingerprint of the rows that chose settings (C, k, the
    # checkpoint). A probe and a fine-tune with equal values saw the same text and chose on the same rows.
    max_length: int | None = None
    validation_fingerprint: str | None = None

    def split(self, name: str) -> SplitRef | None:
        return next((s for s in self.splits if s.name == name), None)

    @property
    def test(self) -> SplitRef | None:
        """The test rows; runs are comparable only when these fingerprints are equal."""
        return self.split("test")


@dataclass(frozen=True)
class ResultRow:
    """One scored setting. ``name`` is unique in its run and keys its predictions in predictions.npz.

    ``method``: knn, logreg, finetune, mlp_numpy, cnn_strong, ...; ``setting``: a short label such as
    ``k=5`` or ``C=0.1``; ``params``: everything else that defines it (pooling, layers, lr, ...).
    ``details``: per-class metrics, confusion matrix, timings that not every kind has.
    """

    name: str
    method: str
    setting: str
    params: dict[str, Any] = field(default_factory=dict)
    accuracy: float | None = None
    macro_f1: float | None = None
    validation_accuracy: float | None = None
    n_train: int | None = None
    n_test: int | None = None
    trainable_params: int | None = None
    train_seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # Cost (common/cost.py): peak memory while training (RSS on CPU, max allocated on CUDA), and test
    # examples per second through the model that makes the prediction (encoder + probe, or the fine-tuned model).
    peak_memory_bytes: int | None = None
    predict_per_second: float | None = None


@dataclass(frozen=True)
class RunRecord:
    kind: str
    command: str  # the verb, e.g. "probe compare", "vision sweep", "finetune"
    command_line: str
    started_at: str
    finished_at: str
    config: dict[str, Any]
    model: ModelRef | None
    data: DataRef
    device: str
    results: tuple[ResultRow, ...]
    artifacts: tuple[str, ...] = ()  # paths relative to the run folder
    notes: tuple[str, ...] = ()
    device_name: str = ""  # the CPU model and cores, or the GPU (common.cost.device_name)
    mlx_version: str = __version__
    schema_version: int = SCHEMA_VERSION
    run_dir: str = ""  # where it was read from; not written

    @property
    def best(self) -> ResultRow | None:
        scored = [r for r in self.results if r.accuracy is not None]
        return max(scored, key=lambda r: r.accuracy or 0.0) if scored else None  # never None in scored

    @property
    def quantisation(self) -> str:
        """'int8' when the run read the vectors of an int8-quantised encoder (``mlx embed --dtype int8``: other
        vectors than the model's own), else ''."""
        meta = self.config.get("store_meta")  # a probe: the store's dtype; attention stats: its own --dtype
        stored = meta.get("dtype") if isinstance(meta, dict) else None
        return "int8" if "int8" in (stored, self.config.get("dtype")) else ""

    def model_named(self, name: str) -> str:
        """``name`` (the model as a listing or report shows it), marked 'int8' where the encoder was quantised."""
        return f"{name} {self.quantisation}" if self.quantisation else name

    def row(self, name: str) -> ResultRow:
        for r in self.results:
            if r.name == name:
                return r
        raise StoreError(
            f"run {self.run_dir or self.command} has no result row {name!r}; its rows: "
            f"{', '.join(r.name for r in self.results)}"
        )

    def to_dict(self) -> dict[str, Any]:
        d = to_plain(self)
        d.pop("run_dir")
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], run_dir: str = "") -> "RunRecord":
        problems = validate(d)
        if problems:
            raise StoreError(
                f"{run_dir or 'run record'}: invalid {RECORD_FILE} ({problems[0]}); the folder is damaged, re-run the command"
            )
        data = d["data"]
        return cls(
            kind=d["kind"],
            command=d["command"],
            command_line=d["command_line"],
            started_at=d["started_at"],
            finished_at=d["finished_at"],
            config=dict(d["config"]),
            model=ModelRef(**d["model"]) if d.get("model") else None,
            data=DataRef(
                name=data["name"],
                fingerprint=data["fingerprint"],
                splits=tuple(SplitRef(**s) for s in data.get("splits", ())),
                label_names=tuple(data.get("label_names", ())),
                max_length=data.get("max_length"),
                validation_fingerprint=data.get("validation_fingerprint"),
            ),
            device=d["device"],
            results=tuple(ResultRow(**r) for r in d["results"]),
            artifacts=tuple(d.get("artifacts", ())),
            notes=tuple(d.get("notes", ())),
            device_name=d.get("device_name", ""),
            mlx_version=d["mlx_version"],
            schema_version=d["schema_version"],
            run_dir=run_dir,
        )


@dataclass(frozen=True)
class Predictions:
    """Test predictions of every result row of one run, on the same test rows."""

    row_ids: Any  # (N,) int64 ids of the test rows in their source split
    y_true: Any  # (N,) int64
    by_row: Mapping[str, Any]  # result-row name -> (N,) int64 predicted labels


# ---------------------------------------------------------------- validation

_ROW_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "method": (str,),
    "setting": (str,),
    "params": (dict,),
    "accuracy": (float, int, type(None)),
    "macro_f1": (float, int, type(None)),
    "validation_accuracy": (float, int, type(None)),
    "n_train": (int, type(None)),
    "n_test": (int, type(None)),
    "trainable_params": (int, type(None)),
    "train_seconds": (float, int, type(None)),
    "details": (dict,),
    "peak_memory_bytes": (int, type(None)),
    "predict_per_second": (float, int, type(None)),
}
_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "schema_version": (int,),
    "kind": (str,),
    "command": (str,),
    "command_line": (str,),
    "mlx_version": (str,),
    "started_at": (str,),
    "finished_at": (str,),
    "config": (dict,),
    "model": (dict, type(None)),
    "data": (dict,),
    "device": (str,),
    "results": (list,),
    "artifacts": (list,),
    "notes": (list,),
    "device_name": (str,),
}
_DATA_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "fingerprint": (str,),
    "splits": (list,),
    "label_names": (list,),
    "max_length": (int, type(None)),
    "validation_fingerprint": (str, type(None)),
}
# Fields added after schema 1 was first written: records from before lack them, and read as None / "".
_OPTIONAL = {"peak_memory_bytes", "predict_per_second", "device_name", "max_length", "validation_fingerprint"}


def validate(d: Any) -> list[str]:
    """Problems of a run.json object against the schema (empty list = valid). Checks names, types, ranges."""
    if not isinstance(d, dict):
        return ["not a JSON object"]
    problems = check_fields(d=d, schema=_RECORD_TYPES, where="record", optional=_OPTIONAL)
    if problems:
        return problems
    if d["schema_version"] != SCHEMA_VERSION:
        problems.append(f"schema_version {d['schema_version']} (this mlx reads {SCHEMA_VERSION})")
    if d["kind"] not in KINDS:
        problems.append(f"kind {d['kind']!r} is not one of {', '.join(KINDS)}")
    if d["model"] is not None:
        problems += check_fields(d["model"], {"id": (str,), "revision": (str,)}, "model")
    problems += check_fields(d=d["data"], schema=_DATA_TYPES, where="data", optional=_OPTIONAL)
    for i, s in enumerate(d["data"].get("splits", [])):
        problems += check_fields(s, {"name": (str,), "fingerprint": (str,), "n_rows": (int,)}, f"data.splits[{i}]")
    names: set[str] = set()
    for i, r in enumerate(d["results"]):
        problems += _row_problems(r, f"results[{i}]", names)
    return problems


def _row_problems(r: Any, where: str, names: set[str]) -> list[str]:
    """Problems of one result row of a run.json (``where``: results[i]); adds its name to ``names``, those seen."""
    problems = check_fields(d=r, schema=_ROW_TYPES, where=where, optional=_OPTIONAL)
    if problems:
        return problems
    if r["name"] in names or not r["name"] or "/" in r["name"] or r["name"] in (ROW_IDS_KEY, Y_TRUE_KEY):
        problems.append(f"{where}.name {r['name']!r} is empty, repeated, reserved or holds '/'")
    names.add(r["name"])
    for metric in ("accuracy", "macro_f1", "validation_accuracy"):
        if r[metric] is not None and not 0 <= r[metric] <= 1:
            problems.append(f"{where}.{metric} = {r[metric]} is outside [0, 1]")
    for cost in ("peak_memory_bytes", "predict_per_second"):
        if r.get(cost) is not None and not 0 <= r[cost] < float("inf"):
            problems.append(f"{where}.{cost} = {r[cost]} is negative or not finite")
    return problems


# ---------------------------------------------------------------- writing and reading


def write_record(run_dir: Path, record: RunRecord, predictions: Predictions | None = None) -> Path:
    """Write predictions.npz (if given) then run.json into ``run_dir`` (a staging folder); return run.json's path.

    Every predictions array must have one label per test row; every key must name a result row.
    """
    from common.writes import write_json

    run_dir = Path(run_dir)
    problems = validate(record.to_dict())
    if problems:
        raise ValueError(f"bug: the record to write is invalid: {problems}")
    if predictions is not None:
        _write_predictions(run_dir / PREDICTIONS_FILE, record, predictions)
    return write_json(run_dir / RECORD_FILE, record.to_dict())


def _write_predictions(path: Path, record: RunRecord, predictions: Predictions) -> None:
    import numpy as np

    from common.writes import atomic_file

    row_ids = np.asarray(predictions.row_ids)
    names = {r.name for r in record.results}
    arrays: dict[str, Any] = {ROW_IDS_KEY: row_ids, Y_TRUE_KEY: np.asarray(predictions.y_true, dtype=np.int64)}
    for name, y_pred in predictions.by_row.items():
        y_pred = np.asarray(y_pred, dtype=np.int64)
        if name not in names or y_pred.shape != row_ids.shape:
            raise ValueError(
                f"bug: predictions {name!r} of shape {y_pred.shape} match no result row / {row_ids.shape} test rows"
            )
        arrays[name] = y_pred
    with atomic_file(path) as stream:
        np.savez_compressed(stream, **arrays)


def read_record(run_dir: Path) -> RunRecord:
    """Read and validate ``run_dir/run.json``; a folder that is not an mlx run is refused with one line."""
    run_dir = Path(run_dir)
    path = run_dir / RECORD_FILE
    if not run_dir.is_dir():
        raise StoreError(f"{run_dir} is not a folder; pass a run folder (see `mlx runs list`)")
    if not path.exists():
        if (run_dir / "metrics.json").exists():
            raise StoreError(
                f"{run_dir} is a run folder of an older mlx without {RECORD_FILE}; re-run its command to compare it"
            )
        raise StoreError(
            f"{run_dir} is not an mlx run: it has no {RECORD_FILE}; pass a run folder (see `mlx runs list`)"
        )
    check_path(path, PathKind.FILE, "run record")  # a named pipe under that name would make read_text wait
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable ({exc}); the folder is damaged, re-run its command") from None
    if isinstance(d, dict) and isinstance(d.get("schema_version"), int) and d["schema_version"] > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {d['schema_version']}, newer than this mlx reads ({SCHEMA_VERSION}); upgrade mlx"
        )
    return RunRecord.from_dict(d, str(run_dir))


def read_predictions(run_dir: Path, record: RunRecord | None = None) -> Predictions:
    """The test predictions saved beside run.json, checked against the run's record (read when not given):
    1-D integer arrays, one label per test row, labels in 0..C-1, unique row ids, one array per scored row
    and none for a row the record lacks, and each row's recorded accuracy equal to its predictions' accuracy.
    """
    import numpy as np

    path = Path(run_dir) / PREDICTIONS_FILE
    record = record or read_record(Path(run_dir))
    if not path.exists():
        raise StoreError(
            f"{run_dir} has no {PREDICTIONS_FILE}; a paired test needs test predictions, re-run its command"
        )
    check_path(path, PathKind.FILE, "predictions file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, pickle.UnpicklingError) as exc:
        reason = "empty" if path.stat().st_size == 0 else f"not a whole .npz file: {type(exc).__name__}"
        raise StoreError(f"{path} is unreadable ({reason}); the folder is damaged, re-run its command") from None
    problems = prediction_problems(arrays, record)
    if problems:
        raise StoreError(
            f"{path} does not fit its {RECORD_FILE} ({problems[0]}); the folder is damaged or was edited, re-run its command"
        )
    row_ids, y_true = arrays.pop(ROW_IDS_KEY), arrays.pop(Y_TRUE_KEY)
    return Predictions(row_ids, y_true, arrays)


def prediction_problems(arrays: Mapping[str, Any], record: RunRecord) -> list[str]:
    """What keeps ``arrays`` (predictions.npz) from being the test predictions of ``record`` (empty: nothing)."""
    return _array_shape_problems(arrays, record) or _label_problems(arrays, record)


def _array_shape_problems(arrays: Mapping[str, Any], record: RunRecord) -> list[str]:
    """The arrays' names, dtypes and lengths against the record's result rows and test split."""
    import numpy as np

    missing = [key for key in (ROW_IDS_KEY, Y_TRUE_KEY) if key not in arrays]
    missing += [r.name for r in record.results if r.accuracy is not None and r.name not in arrays]
    if missing:
        return [f"no array {missing[0]!r}"]
    names = {r.name for r in record.results}
    strangers = [key for key in arrays if key not in names and key not in (ROW_IDS_KEY, Y_TRUE_KEY)]
    if strangers:
        return [f"array {strangers[0]!r} names no result row"]
    for key, values in arrays.items():
        if values.ndim != 1 or values.dtype == bool or not np.issubdtype(values.dtype, np.integer):
            return [f"{key!r} is a {values.ndim}-D {values.dtype} array, not a 1-D integer one"]
    n_rows = len(arrays[ROW_IDS_KEY])
    test = record.data.test
    if test is not None and n_rows != test.n_rows:
        return [f"{n_rows} row ids for the {test.n_rows} test rows the record names"]
    wrong_length = [key for key, values in arrays.items() if len(values) != n_rows]
    if wrong_length:
        return [f"{wrong_length[0]!r} has {len(arrays[wrong_length[0]])} labels for {n_rows} test rows"]
    if len(np.unique(arrays[ROW_IDS_KEY])) != n_rows:
        return ["the test row ids repeat"]
    return []


def _label_problems(arrays: Mapping[str, Any], record: RunRecord) -> list[str]:
    """The labels against the record's classes, and each scored row's accuracy recomputed from them."""
    import numpy as np

    n_rows = len(arrays[ROW_IDS_KEY])
    n_classes = len(record.data.label_names) or None
    for key, values in arrays.items():
        if key != ROW_IDS_KEY and len(values) and (values.min() < 0 or (n_classes and values.max() >= n_classes)):
            return [f"{key!r} holds labels outside 0..{n_classes - 1 if n_classes else 'C-1'}"]
    y_true = arrays[Y_TRUE_KEY]
    for r in record.results:
        if r.accuracy is None:
            continue
        recomputed = float(np.mean(arrays[r.name] == y_true)) if n_rows else 0.0
        if abs(recomputed - r.accuracy) > 1e-9:
            return [f"row {r.name!r} records accuracy {r.accuracy:g} but its predictions give {recomputed:.4g}"]
        if r.n_test is not None and r.n_test != n_rows:
            return [f"row {r.name!r} records {r.n_test} test rows, its predictions {n_rows}"]
    return []


# ---------------------------------------------------------------- helpers for writers


def now() -> str:
    """UTC time stamp for started_at / finished_at."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def command_line(argv: list[str] | None = None) -> str:
    """The command line that made the run (``mlx ...``), shell-quoted."""
    argv = list(sys.argv if argv is None else argv)
    if argv and (os.path.basename(argv[0]) in ("mlx", "__main__.py", "main.py") or argv[0].endswith("cli/main.py")):
        argv[0] = "mlx"
    return shlex.join(argv)


def subset_fingerprint(fingerprint: str, rows: Any) -> str:
    """Fingerprint of the rows ``rows`` (indices) of a split whose fingerprint is ``fingerprint``."""
    import numpy as np

    digest = hashlib.sha256(fingerprint.encode())
    digest.update(np.asarray(rows, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]
