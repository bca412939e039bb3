"""What a probe run saves: its folder under ``mlx_home()/runs/probe/`` (or ``--out``) and its run record.

The folder is written under a hidden temporary name beside its final one and renamed into place
only when everything is written (``common.writes``), so a folder under its final name is always
complete. Existing results are never overwritten.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import record as run_record
from common.artifacts import to_plain
from common.cost import device_name, per_second
from common.metrics import ClassMetrics
from common.paths import mlx_home
from common.splits import stratified_split
from common.writes import new_run_name
from embeddings.store import EmbeddingStore
from probes import data
from probes.config import ProbeRunConfig
from probes.data import ProbePlan
from text.validation import validation_fingerprint

_EDGE_BYTES = 1 << 20


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
    # Cost through the frozen encoder (from the store; None when it does not say) plus this probe.
    encode_train_seconds: float | None = None  # the encoder's time on the training texts used
    encode_test_seconds: float | None = None
    peak_memory_bytes: int | None = None  # the encoder pass's or the probing's, the larger

    @property
    def train_seconds(self) -> float:
        """Encoding the training texts with the frozen encoder (when known) plus fitting the probe."""
        return self.fit_seconds + (self.encode_train_seconds or 0.0)

    @property
    def predict_per_second(self) -> float | None:
        """Test texts per second through the frozen encoder and this probe (None: the encoder's time unknown)."""
        if self.encode_test_seconds is None:
            return None
        return per_second(self.n_test, self.encode_test_seconds + self.predict_seconds)

    @property
    def layer_label(self) -> str:
        return data.layer_label(self.layers)

    @property
    def name(self) -> str:
        """Unique within a run; keys this result's test predictions."""
        return f"{self.probe}-{self.pooling}-L{self.layer_label}-{self.setting}"

    def to_row(self) -> run_record.ResultRow:
        d = self.to_dict()
        details = {
            k: d[k]
            for k in (
                "per_class",
                "confusion",
                "fit_seconds",
                "predict_seconds",
                "dim",
                "recall_at_k",
                "encode_train_seconds",
                "encode_test_seconds",
            )
        }
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
            train_seconds=self.train_seconds,
            details=details,
            peak_memory_bytes=self.peak_memory_bytes,
            predict_per_second=self.predict_per_second,
        )

    def to_dict(self) -> dict[str, Any]:
        d = to_plain(self)
        d["layer"] = self.layers[0] if len(self.layers) == 1 else list(self.layers)
        return d


def default_run_dir(command: str) -> Path:
    return new_run_name(mlx_home() / "runs" / "probe", command)


def store_fingerprint(path: Path) -> str:
    """sha256 of the store's size and its first and last MiB (which hold the root attributes).

    Reading a multi-GB store in full for every probe run would cost more than the probes; size plus
    both ends changes whenever the store is rewritten (created_at is a root attribute).
    """
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(_EDGE_BYTES))
        if size > _EDGE_BYTES:
            f.seek(max(_EDGE_BYTES, size - _EDGE_BYTES))
            digest.update(f.read())
    return "sha256:" + digest.hexdigest()[:32]


def store_meta(store: EmbeddingStore, test_store: EmbeddingStore | None) -> dict[str, Any]:
    """The store(s) a run read, as its record states them: paths, fingerprints, model, dataset, splits."""
    info = store.info
    meta = {
        "path": str(info.path),
        "fingerprint": store_fingerprint(info.path),
        "model_id": info.model_id,
        "model_revision": info.model_revision,
        "dataset_name": info.dataset_name,
        "dataset_fingerprint": info.dataset_fingerprint,
        "created_at": info.created_at,
        "splits": info.splits,
        "dtype": info.dtype,  # int8: vectors of a quantised encoder (RunRecord.quantisation)
    }
    if test_store:
        meta["test_store"] = {
            "path": str(test_store.info.path),
            "fingerprint": store_fingerprint(test_store.info.path),
            "dataset_fingerprint": test_store.info.dataset_fingerprint,
        }
    return meta


def probe_record(
    config: ProbeRunConfig,
    plan: ProbePlan,
    results: tuple[ProbeResult, ...],
    plots: tuple[Path, ...],
    notes: list[str],
    started_at: str,
) -> run_record.RunRecord:
    """run.json of a probe run: one result row per probe setting, best test accuracy first."""
    info = plan.store.info
    return run_record.RunRecord(
        kind="probe",
        command=f"probe {config.command}",
        command_line=run_record.command_line(),
        started_at=started_at,
        finished_at=run_record.now(),
        config={**config.to_dict(), "store_meta": plan.store_meta, "split": plan.splits.describe()},
        model=run_record.ModelRef(info.model_id, info.model_revision),
        data=run_record.DataRef(
            name=info.dataset_name,
            fingerprint=info.dataset_fingerprint,
            splits=data.split_refs(plan.splits, plan.store, plan.test_store),
            label_names=tuple(plan.label_names),
            max_length=info.max_length or None,
            validation_fingerprint=_validation_fingerprint(config, plan.store, plan.splits),
        ),
        device="cpu",
        device_name=info.device_name or device_name("cpu"),
        results=tuple(r.to_row() for r in results),
        artifacts=tuple(p.name for p in plots),
        notes=tuple(notes),
    )


def _validation_fingerprint(config: ProbeRunConfig, store: EmbeddingStore, plan: data.SplitPlan) -> str:
    """The fingerprint of the rows C and k were chosen on (text.validation), by their ids in the source split."""
    y_train = data.train_labels(plan, store)
    _, validation = stratified_split(y_train, config.logreg.validation_fraction, config.seed, what="validation")
    positions = validation if plan.train_rows is None else plan.train_rows[validation]
    ids = store.row_ids(plan.train_split)[positions]
    return validation_fingerprint(store.split_fingerprint(plan.train_split), ids)
