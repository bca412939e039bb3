"""`sweep`: every combination of depth, width, activation and L2 for one model, resumable.

Layout of a sweep folder::

    sweep.json                      the base settings (model, data, epochs, seed): a guard against mixing
    <spec key>/config.json          the spec and the data it was trained on (fingerprint)
    <spec key>/metrics.json
    <spec key>/weights.{npz,pt}
    report-<time>-<id>/             one per invocation: metrics.json (ranking, best test score), plot

Every folder is staged (``common.runs.staged_run_dir``): it appears under its name only when
complete. A re-run with the same settings and the same data finds the same folder and skips
completed configurations; a folder trained on other data (its fingerprint differs) is refused,
never reused. One sweep at a time writes a folder (a lock beside it).
"""

import dataclasses
import hashlib
import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import ConfigError, StoreError
from common import record as run_record
from common.devices import Device, DType
from common.locking import store_lock
from common.options import CPUS
from common.paths import ensure_writable_dir
from common.progress import ProgressCallback, no_progress
from common.runs import clean_stale_staging, new_run_name, staged_run_dir, write_json
from vision.activations import Activation
from vision.data import DatasetName, Splits, load_splits
from vision.experiment import TestScores, data_description, run_model, score
from vision.models import ModelName, ModelSpec, compute_dtype, load_weights, preset, with_dtype
from vision.plots import plot_factor_effects
from vision.runs import CONFIG_SCHEMA, METRICS_SCHEMA, SWEEP_SCHEMA, default_runs_dir, read_json, stamp

FACTORS = ("depth", "width", "activation", "l2")


@dataclass(frozen=True)
class SweepConfig:
    model: ModelName
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    activations: tuple[Activation, ...]
    l2s: tuple[float, ...]
    dataset: DatasetName = DatasetName.digits
    data_dir: Path | None = None
    n_epochs: int | None = None
    augment: bool | None = None
    validation_fraction: float = 0.1
    seed: int = 0
    device: Device = Device.AUTO
    threads: int | None = None  # CPU threads for torch and NumPy's BLAS; None: the libraries' defaults
    dtype: DType = DType.AUTO  # torch models' autocast: auto = bf16 where native (vision.models.with_dtype)
    out: Path | None = None  # the sweep folder itself; default derived from the settings, so re-runs resume

    def base(self) -> dict[str, Any]:
        """Settings shared by every configuration; a sweep folder holds one base only."""
        data_dir = str(Path(self.data_dir).resolve()) if self.data_dir else None
        return {
            "model": self.model.value,
            "dataset": self.dataset.value,
            "data_dir": data_dir,
            "n_epochs": self.n_epochs,
            "augment": self.augment,
            "validation_fraction": self.validation_fraction,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class SweepSetup:
    config: SweepConfig
    specs: tuple[ModelSpec, ...]
    splits: Splits
    device: Any
    sweep_dir: Path
    completed: frozenset[str]
    notes: tuple[str, ...] = ()

    def base(self) -> dict[str, Any]:
        """The config's base plus the data fingerprint: what every finished configuration must match."""
        return sweep_base(self.config, self.specs, self.splits.fingerprint)

    def summary(self) -> dict[str, Any]:
        data = data_description(self.splits)
        return {
            "model": self.config.model.value,
            "grid": f"{len(self.specs)} configurations ({len(self.completed)} already complete, skipped)",
            "data": f"{data['dataset']}: {data['n_train']} train / {data['n_val']} val / {data['n_test']} test (fingerprint {self.splits.fingerprint})",
            "epochs": self.specs[0].train.n_epochs,
            "dtype": compute_dtype(self.specs[0]),
            "device": f"{self.device}"
            + (" (unused: the NumPy MLP runs on CPU)" if self.config.model == ModelName.mlp_numpy else ""),
            "seed": self.config.seed,
            "output": self.sweep_dir,
        }


@dataclass(frozen=True)
class SweepResult:
    rows: tuple[dict[str, Any], ...]  # sorted by validation accuracy, best first
    best_test: TestScores
    n_skipped: int
    report_dir: Path
    figure: Path
    record: run_record.RunRecord | None = None  # what report-*/run.json holds; ``--json`` prints it


def build_grid(config: SweepConfig, device: Any = "cpu") -> tuple[ModelSpec, ...]:
    """Every combination as a checked spec; an empty factor or an invalid value raises before any work."""
    for factor, values in zip(FACTORS, (config.depths, config.widths, config.activations, config.l2s)):
        if not values:
            raise ConfigError(
                f"the sweep grid is empty: --{factor.replace('_', '-')} has no values; give at least one, e.g. --{factor} {'relu' if factor == 'activation' else 1}"
            )
    # One network per configuration (cnn-strong's preset trains four): a sweep ranks architectures.
    base = with_dtype(
        preset(config.model, n_epochs=config.n_epochs, augment=config.augment, seed=config.seed, members=1),
        config.dtype,
        device,
    )
    grid = itertools.product(
        *(dict.fromkeys(values) for values in (config.depths, config.widths, config.activations, config.l2s))
    )
    return tuple(dataclasses.replace(base, depth=d, width=w, activation=a, l2=l2).check() for d, w, a, l2 in grid)


def sweep_base(config: SweepConfig, specs: tuple[ModelSpec, ...], data_fingerprint: str) -> dict[str, Any]:
    """A sweep's identity: its settings, what they resolve to on this machine and mlx version (the compute
    dtype, 'auto' differing between machines, and the networks per configuration), and the data."""
    resolved = {"dtype": compute_dtype(specs[0]), "members": specs[0].members}
    return {**config.base(), **resolved, "data_fingerprint": data_fingerprint}


def default_sweep_dir(base: dict[str, Any]) -> Path:
    """Derived from the settings and the data fingerprint: changed data starts a new sweep, never reuses an old one."""
    digest = hashlib.sha256(json.dumps(base, sort_keys=True).encode()).hexdigest()[:8]
    return default_runs_dir() / f"sweep-{base['model']}-{base['dataset']}-{digest}"


def is_complete(spec: ModelSpec, folder: Path, data_fingerprint: str) -> bool:
    """True when ``folder`` holds finished results of exactly ``spec`` on this data; anything else there is an error."""
    if not folder.exists():
        return False
    if not (folder / "metrics.json").exists():
        raise StoreError(f"{folder} is an incomplete configuration folder (no metrics.json); move it away and re-run")
    saved = read_json(folder / "config.json", CONFIG_SCHEMA)
    if saved.get("spec") != json.loads(json.dumps(spec.to_dict())):
        raise StoreError(f"{folder} holds a different configuration than this sweep asks for; choose another --out")
    if saved.get("data_fingerprint") != data_fingerprint:
        raise StoreError(
            f"{folder} was trained on other data (fingerprint {saved.get('data_fingerprint')}, the data now is "
            f"{data_fingerprint}); its results cannot be reused: choose another --out to train afresh"
        )
    return True


def _remove_unfinished(sweep_dir: Path, specs: tuple[ModelSpec, ...]) -> list[Path]:
    """Configuration folders of this grid with a config.json but no metrics.json (written before staging existed): not results."""
    unfinished = [
        sweep_dir / s.key()
        for s in specs
        if (sweep_dir / s.key() / "config.json").exists() and not (sweep_dir / s.key() / "metrics.json").exists()
    ]
    for folder in unfinished:
        shutil.rmtree(folder)
    return unfinished


def _check_marker(sweep_dir: Path, base: dict[str, Any]) -> None:
    """sweep.json records the base settings and data fingerprint; a folder holds one sweep only."""
    marker = sweep_dir / "sweep.json"
    if not marker.exists():
        if any(not entry.name.startswith(".") for entry in sweep_dir.iterdir()):
            raise StoreError(f"{sweep_dir} is not empty and is not an mlx sweep folder; choose another --out")
        write_json(marker, stamp({"base": base}))
        return
    # Sweeps before --dtype trained in fp32, one network per configuration.
    saved = {"dtype": "fp32", "members": 1, **read_json(marker, SWEEP_SCHEMA)["base"]}
    if saved["dtype"] == "auto":  # saved by mlx before the resolved dtype was the identity
        saved["dtype"] = base["dtype"]
    if saved.get("data_fingerprint") != base["data_fingerprint"] and {
        k: v for k, v in saved.items() if k != "data_fingerprint"
    } == {k: v for k, v in base.items() if k != "data_fingerprint"}:
        raise StoreError(
            f"the data changed since the sweep in {sweep_dir} ran (fingerprint {saved.get('data_fingerprint')}, now "
            f"{base['data_fingerprint']}): its finished configurations do not describe this data; choose another --out to train afresh"
        )
    now = json.loads(json.dumps(base))
    if saved != now:
        changed = ", ".join(
            f"{k} {saved.get(k)} -> {now.get(k)}" for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)
        )
        raise StoreError(
            f"{sweep_dir} belongs to a sweep with other settings ({changed}; see its sweep.json); choose another --out"
        )


def prepare_sweep(config: SweepConfig) -> SweepSetup:
    from common.devices import resolve_device

    if not 0 < config.validation_fraction < 1:
        raise ConfigError(
            f"a sweep ranks configurations by validation accuracy: --validation-fraction must lie strictly between 0 and 1, got {config.validation_fraction}"
        )
    CPUS.check(config.threads, "--threads")
    device = resolve_device(config.device)
    specs = build_grid(config, device)
    splits = load_splits(config.dataset, config.data_dir, config.validation_fraction, config.seed)
    base = sweep_base(config, specs, splits.fingerprint)
    sweep_dir = ensure_writable_dir(Path(config.out) if config.out else default_sweep_dir(base))
    _check_marker(sweep_dir, base)
    removed = clean_stale_staging(sweep_dir) + _remove_unfinished(sweep_dir, specs)
    completed = frozenset(s.key() for s in specs if is_complete(s, sweep_dir / s.key(), splits.fingerprint))
    notes = (f"removed {len(removed)} unfinished folder(s) of an interrupted sweep",) if removed else ()
    return SweepSetup(config, specs, splits, device, sweep_dir, completed, notes)


def run_sweep(setup: SweepSetup, progress: ProgressCallback = no_progress) -> SweepResult:
    """Train the missing configurations, rank all by validation accuracy, score the best on test once."""
    from common.training import cpu_threads

    with store_lock(setup.sweep_dir, "sweep folder"), cpu_threads(setup.config.threads):
        return _run_sweep(setup, progress)


def _run_sweep(setup: SweepSetup, progress: ProgressCallback) -> SweepResult:
    from vision.record import sweep_record

    started_at = run_record.now()
    rows, n_skipped = [], 0
    for done, spec in enumerate(setup.specs):
        folder = setup.sweep_dir / spec.key()
        if is_complete(spec, folder, setup.splits.fingerprint):  # checked again under the lock
            n_skipped += 1
        else:
            with staged_run_dir(folder) as stage:
                run_model(spec, setup.splits, setup.device, stage, progress, score_test=False)
        metrics = read_json(folder / "metrics.json", METRICS_SCHEMA)
        rows.append(
            {
                "key": spec.key(),
                "depth": spec.depth,
                "width": spec.width,
                "activation": spec.activation.value,
                "l2": spec.l2,
                "validation_accuracy": metrics.get("validation_accuracy", metrics.get("val_accuracy")),
                "n_parameters": metrics["n_parameters"],
                "train_seconds": metrics["train_seconds"],
            }
        )
        progress("sweep", done + 1, len(setup.specs))
    rows.sort(key=lambda row: -row["validation_accuracy"])
    best = next(s for s in setup.specs if s.key() == rows[0]["key"])
    best_test = score(
        load_weights(best, setup.sweep_dir / best.key()),
        best,
        setup.splits.test,
        setup.device,
        setup.splits.class_names,
    )
    rows[0] = {**rows[0], "test_accuracy": best_test.accuracy, "test_macro_f1": best_test.macro_f1}
    report_dir = new_run_name(setup.sweep_dir, "report")
    with staged_run_dir(report_dir) as stage:
        figure = plot_factor_effects(rows, FACTORS, stage / "factor_effects.png")
        write_json(
            stage / "config.json",
            stamp({"command": "sweep", "base": setup.base(), "grid": [s.key() for s in setup.specs]}),
        )
        write_json(
            stage / "metrics.json",
            stamp({"rows": rows, "best": rows[0]["key"], "best_test_accuracy": best_test.accuracy}),
        )
        config = {**dataclasses.asdict(setup.config), "n_skipped": n_skipped, "sweep_dir": setup.sweep_dir}
        record, predictions = sweep_record(
            rows,
            setup.specs,
            best_test,
            setup.splits,
            config,
            str(setup.device),
            [figure.relative_to(stage)],
            started_at,
        )
        run_record.write_record(stage, record, predictions)
    return SweepResult(tuple(rows), best_test, n_skipped, report_dir, report_dir / figure.name, record)
