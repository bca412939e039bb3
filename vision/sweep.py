"""`sweep`: every combination of depth, width, activation and L2 for one model, resumable.

Layout of a sweep folder::

    sweep.json                      the base settings (model, data, epochs, seed): a guard against mixing
    <spec key>/config.json          written when a configuration starts
    <spec key>/metrics.json         written last: its presence marks the configuration complete
    <spec key>/weights.{npz,pt}
    report-<timestamp>/             one per invocation: metrics.json (ranking, best test score), plot

A re-run with the same settings finds the same folder and skips completed configurations.
"""

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import ConfigError, StoreError
from common.progress import ProgressCallback, no_progress
from vision.activations import Activation
from vision.data import DatasetName, Splits, load_splits
from vision.experiment import TestScores, data_description, run_model, score
from vision.models import ModelName, ModelSpec, load_weights, preset
from vision.plots import plot_factor_effects
from common.runs import write_json
from vision.runs import default_runs_dir, new_run_dir, read_json, stamp

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
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    threads: int | None = None  # CPU threads for torch and NumPy's BLAS; None: the libraries' defaults
    out: Path | None = None  # the sweep folder itself; default derived from the settings, so re-runs resume

    def base(self) -> dict[str, Any]:
        """Settings shared by every configuration; a sweep folder holds one base only."""
        data_dir = str(Path(self.data_dir).resolve()) if self.data_dir else None
        return {"model": self.model.value, "dataset": self.dataset.value, "data_dir": data_dir, "n_epochs": self.n_epochs, "augment": self.augment, "val_fraction": self.val_fraction, "seed": self.seed}


@dataclass(frozen=True)
class SweepSetup:
    config: SweepConfig
    specs: tuple[ModelSpec, ...]
    splits: Splits
    device: Any
    sweep_dir: Path
    completed: frozenset[str]

    def summary(self) -> dict[str, Any]:
        data = data_description(self.splits)
        return {
            "model": self.config.model.value,
            "grid": f"{len(self.specs)} configurations ({len(self.completed)} already complete, skipped)",
            "data": f"{data['dataset']}: {data['n_train']} train / {data['n_val']} val / {data['n_test']} test",
            "epochs": self.specs[0].train.n_epochs,
            "device": f"{self.device}" + (" (unused: the NumPy MLP runs on CPU)" if self.config.model == ModelName.mlp_numpy else ""),
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


def build_grid(config: SweepConfig) -> tuple[ModelSpec, ...]:
    """Every combination as a checked spec; an empty factor or an invalid value raises before any work."""
    for factor, values in zip(FACTORS, (config.depths, config.widths, config.activations, config.l2s)):
        if not values:
            raise ConfigError(f"the sweep grid is empty: --{factor.replace('_', '-')} has no values; give at least one, e.g. --{factor} {'relu' if factor == 'activation' else 1}")
    base = preset(config.model, n_epochs=config.n_epochs, augment=config.augment, seed=config.seed)
    return tuple(
        dataclasses.replace(base, depth=d, width=w, activation=a, l2=l2).check()
        for d, w, a, l2 in itertools.product(config.depths, config.widths, config.activations, config.l2s)
    )


def default_sweep_dir(config: SweepConfig) -> Path:
    digest = hashlib.sha256(json.dumps(config.base(), sort_keys=True).encode()).hexdigest()[:8]
    return default_runs_dir() / f"sweep-{config.model.value}-{config.dataset.value}-{digest}"


def is_complete(spec: ModelSpec, folder: Path) -> bool:
    """True when ``folder`` holds finished metrics for exactly ``spec``; a different spec there is an error."""
    if not (folder / "metrics.json").exists():
        return False
    saved = read_json(folder / "config.json").get("spec")
    if saved != json.loads(json.dumps(spec.to_dict())):
        raise StoreError(f"{folder} holds a different configuration than this sweep asks for; choose another --out")
    return True


def prepare_sweep(config: SweepConfig) -> SweepSetup:
    from common.training import resolve_device

    specs = build_grid(config)
    if config.threads is not None and config.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {config.threads}")
    device = resolve_device(config.device)
    splits = load_splits(config.dataset, config.data_dir, config.val_fraction, config.seed)
    sweep_dir = Path(config.out) if config.out else default_sweep_dir(config)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    marker = sweep_dir / "sweep.json"
    if marker.exists():
        if read_json(marker).get("base") != json.loads(json.dumps(config.base())):
            raise StoreError(f"{sweep_dir} belongs to a sweep with other settings (see its sweep.json); choose another --out")
    else:
        write_json(marker, stamp({"base": config.base()}))
    completed = frozenset(s.key() for s in specs if is_complete(s, sweep_dir / s.key()))
    return SweepSetup(config, specs, splits, device, sweep_dir, completed)


def run_sweep(setup: SweepSetup, progress: ProgressCallback = no_progress) -> SweepResult:
    """Train the missing configurations, rank all by validation accuracy, score the best on test once."""
    from common.training import cpu_threads

    with cpu_threads(setup.config.threads):
        return _run_sweep(setup, progress)


def _run_sweep(setup: SweepSetup, progress: ProgressCallback) -> SweepResult:
    rows = []
    for done, spec in enumerate(setup.specs):
        folder = setup.sweep_dir / spec.key()
        if spec.key() not in setup.completed:
            run_model(spec, setup.splits, setup.device, folder, progress, score_test=False)
        metrics = read_json(folder / "metrics.json")
        rows.append({"key": spec.key(), "depth": spec.depth, "width": spec.width, "activation": spec.activation.value, "l2": spec.l2,
                     "val_accuracy": metrics["val_accuracy"], "n_parameters": metrics["n_parameters"], "train_seconds": metrics["train_seconds"]})
        progress("sweep", done + 1, len(setup.specs))
    rows.sort(key=lambda row: -row["val_accuracy"])
    best = next(s for s in setup.specs if s.key() == rows[0]["key"])
    best_test = score(load_weights(best, setup.sweep_dir / best.key()), best, setup.splits.test, setup.device, setup.splits.class_names)
    rows[0] = {**rows[0], "test_accuracy": best_test.accuracy, "test_macro_f1": best_test.macro_f1}
    report_dir = new_run_dir(setup.sweep_dir, "report")
    figure = plot_factor_effects(rows, FACTORS, report_dir / "factor_effects.png")
    write_json(report_dir / "config.json", stamp({"command": "sweep", "base": setup.config.base(), "grid": [s.key() for s in setup.specs]}))
    write_json(report_dir / "metrics.json", stamp({"rows": rows, "best": rows[0]["key"], "best_test_accuracy": best_test.accuracy}))
    return SweepResult(tuple(rows), best_test, len(setup.completed), report_dir, figure)
