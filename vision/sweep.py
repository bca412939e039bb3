"""`sweep`: every combination of depth, width, activation and L2 for one model, resumable.

Layout of a sweep folder::

    sweep.json                      the sweep's identity (settings, data fingerprints): a guard against mixing
    <spec key>/config.json          the spec and its identity (the spec and the data it was trained on)
    <spec key>/metrics.json
    <spec key>/weights.{npz,pt}
    report-<time>-<id>/             one per invocation: run.json (ranking, best test score), plot

Every folder is staged (``common.writes.staged_run_dir``): it appears under its name only when
complete. A re-run with the same settings and the same data finds the same folder and skips
completed configurations; a folder trained on other data (its fingerprint differs) is refused,
never reused. One sweep at a time writes a folder (a lock beside it).
"""

import dataclasses
import functools
import itertools
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import ConfigError, StoreError
from common import record as run_record
from common.artifacts import Identity, Reuse, claim_folder, decide, from_legacy, hold, to_plain
from common.devices import Device, DType
from common.options import CPUS
from common.progress import ProgressCallback, no_progress
from common.writes import clean_stale_staging, new_run_name, staged_run_dir
from vision.activations import Activation
from vision.data import DatasetName, Splits, fingerprint_arrays, load_splits
from vision.experiment import (
    CONFIG_SCHEMA,
    METRICS_SCHEMA,
    TestScores,
    data_description,
    default_runs_dir,
    read_json,
    run_model,
    score,
)
from vision.plots import plot_factor_effects
from vision.specs import ModelName, ModelSpec, compute_dtype, load_weights, preset, with_dtype

FACTORS = ("depth", "width", "activation", "l2")


@dataclass(frozen=True)
class SweepConfig:
    model: ModelName
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    activations: tuple[Activation, ...]
    l2s: tuple[float, ...]
    dataset: DatasetName = DatasetName.DIGITS
    data_dir: Path | None = None
    n_epochs: int | None = None
    augment: bool | None = None
    validation_fraction: float = 0.1
    seed: int = 0
    device: Device = Device.AUTO
    threads: int | None = None  # CPU threads for torch and NumPy's BLAS; None: the libraries' defaults
    dtype: DType = DType.AUTO  # torch models' autocast: auto = bf16 where native (vision.specs.with_dtype)
    out: Path | None = None  # the sweep folder itself; default derived from the settings, so re-runs resume

    def settings(self) -> dict[str, Any]:
        """Settings shared by every configuration (the data folder aside: its images' fingerprints count)."""
        keys = ("model", "dataset", "n_epochs", "augment", "validation_fraction", "seed")
        return {k: to_plain(getattr(self, k)) for k in keys}


@dataclass(frozen=True)
class SweepSetup:
    config: SweepConfig
    specs: tuple[ModelSpec, ...]
    splits: Splits
    device: Any
    sweep_dir: Path
    completed: frozenset[str]
    notes: tuple[str, ...] = ()

    def identity(self) -> Identity:
        """The settings, their resolution here and the data: what every finished configuration must match."""
        return sweep_identity(self.config, self.specs, self.splits)

    def summary(self) -> dict[str, Any]:
        data = data_description(self.splits)
        return {
            "model": self.config.model.value,
            "grid": f"{len(self.specs)} configurations ({len(self.completed)} already complete, skipped)",
            "data": f"{data['dataset']}: {data['n_train']} train / {data['n_val']} val / {data['n_test']} test (fingerprint {self.splits.fingerprint})",
            "epochs": self.specs[0].train.n_epochs,
            "dtype": compute_dtype(self.specs[0]),
            "device": f"{self.device}"
            + (" (unused: the NumPy MLP runs on CPU)" if self.config.model == ModelName.MLP_NUMPY else ""),
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
    record: run_record.RunRecord  # what report-*/run.json holds; ``--json`` prints it


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
    grid = itertools.product(  # each factor's values in order, duplicates dropped
        dict.fromkeys(config.depths),
        dict.fromkeys(config.widths),
        dict.fromkeys(config.activations),
        dict.fromkeys(config.l2s),
    )
    return tuple(dataclasses.replace(base, depth=d, width=w, activation=a, l2=l2).check() for d, w, a, l2 in grid)


KIND = "sweep"
MARKER = "sweep.json"
REMEDY = "choose another --out to train afresh"


def split_fingerprints(splits: Splits) -> dict[str, str]:
    """One fingerprint per split (images and labels) that a sweep reads."""
    parts = {"train": splits.train, "validation": splits.val, "test": splits.test}
    return {name: fingerprint_arrays(s.images, s.labels) for name, s in parts.items()}


def sweep_identity(config: SweepConfig, specs: tuple[ModelSpec, ...], splits: Splits) -> Identity:
    """A sweep's identity: its settings, what they resolve to on this machine and mlx version (the compute
    dtype, 'auto' differing between machines, and the networks per configuration), and the data."""
    resolved = {"dtype": compute_dtype(specs[0]), "members": specs[0].members}
    return Identity.of(KIND, {**config.settings(), **resolved}, data=split_fingerprints(splits))


def spec_identity(spec: ModelSpec, splits: Splits) -> Identity:
    """One configuration's identity: its full spec and the data it trained on."""
    return Identity.of("sweep configuration", spec.to_dict(), data=split_fingerprints(splits))


def default_sweep_dir(identity: Identity) -> Path:
    """Derived from the settings and the data: changed data starts a new sweep, never reuses an old one."""
    return default_runs_dir() / f"sweep-{identity.config['model']}-{identity.config['dataset']}-{identity.key(8)}"


def is_complete(spec: ModelSpec, folder: Path, splits: Splits) -> bool:
    """True when ``folder`` holds finished results of exactly ``spec`` on this data; anything else there is an error."""
    if not folder.exists():
        return False
    if not (folder / "metrics.json").exists():
        raise StoreError(f"{folder} is an incomplete configuration folder (no metrics.json); move it away and re-run")
    saved = read_json(folder / "config.json", CONFIG_SCHEMA)
    now = spec_identity(spec, splits)
    found = Identity.from_dict(saved.get("identity")) if isinstance(saved, dict) else None
    if found is not None:
        flat = found.flat()
    else:  # an older mlx saved the spec and the fingerprint of all the images
        options = {**(saved.get("spec") or {}), "data_fingerprint": saved.get("data_fingerprint")}
        flat = from_legacy(options, now, {"data_fingerprint": splits.fingerprint})
    return decide(folder, now, flat, finished=True, remedy=REMEDY) is Reuse.REUSE


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


def _legacy(saved: dict, now: Identity, config: SweepConfig, splits: Splits) -> dict[str, Any]:
    """sweep.json of an older mlx: its base settings with the resolved data folder and one fingerprint of all
    the images; sweeps before --dtype trained in fp32, one network per configuration."""
    base = {"dtype": "fp32", "members": 1, **(saved.get("base") or {})}
    if base["dtype"] == "auto":  # saved by mlx before the resolved dtype was the identity
        base["dtype"] = now.config["dtype"]
    data_dir = str(Path(config.data_dir).resolve()) if config.data_dir else None
    return from_legacy(base, now, {"data_dir": data_dir, "data_fingerprint": splits.fingerprint})


def prepare_sweep(config: SweepConfig) -> SweepSetup:
    from training.devices import resolve_device

    if not 0 < config.validation_fraction < 1:
        raise ConfigError(
            f"a sweep ranks configurations by validation accuracy: --validation-fraction must lie strictly between 0 and 1, got {config.validation_fraction}"
        )
    CPUS.check(config.threads, "--threads")
    device = resolve_device(config.device)
    specs = build_grid(config, device)
    splits = load_splits(
        dataset=config.dataset,
        data_dir=config.data_dir,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
    )
    identity = sweep_identity(config, specs, splits)
    sweep_dir = Path(config.out) if config.out else default_sweep_dir(identity)
    legacy = functools.partial(_legacy, now=identity, config=config, splits=splits)
    claim_folder(sweep_dir, identity, MARKER, legacy=legacy, remedy=REMEDY)
    removed = clean_stale_staging(sweep_dir) + _remove_unfinished(sweep_dir, specs)
    completed = frozenset(s.key() for s in specs if is_complete(s, sweep_dir / s.key(), splits))
    notes: tuple[str, ...] = (
        (f"removed {len(removed)} unfinished folder(s) of an interrupted sweep",) if removed else ()
    )
    notes += splits.notes
    return SweepSetup(
        config=config, specs=specs, splits=splits, device=device, sweep_dir=sweep_dir, completed=completed, notes=notes
    )


def run_sweep(setup: SweepSetup, progress: ProgressCallback = no_progress) -> SweepResult:
    """Train the missing configurations, rank all by validation accuracy, score the best on test once."""
    from training.devices import cpu_threads

    with hold(setup.sweep_dir, "sweep folder"), cpu_threads(setup.config.threads):
        return _run_sweep(setup, progress)


def _train_missing(setup: SweepSetup, progress: ProgressCallback) -> tuple[list[dict[str, Any]], int]:
    """Train every configuration not finished yet; one row per configuration, and how many were skipped."""
    rows, n_skipped = [], 0
    for done, spec in enumerate(setup.specs):
        folder = setup.sweep_dir / spec.key()
        if is_complete(spec, folder, setup.splits):  # checked again under the lock
            n_skipped += 1
        else:
            with staged_run_dir(folder) as stage:
                identity = spec_identity(spec, setup.splits)
                run_model(
                    spec=spec,
                    splits=setup.splits,
                    device=setup.device,
                    run_dir=stage,
                    progress=progress,
                    score_test=False,
                    identity=identity,
                )
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
    return rows, n_skipped


def _run_sweep(setup: SweepSetup, progress: ProgressCallback) -> SweepResult:
    from vision.record import sweep_record

    started_at = run_record.now()
    rows, n_skipped = _train_missing(setup, progress)
    rows.sort(key=lambda row: -row["validation_accuracy"])
    best = next(s for s in setup.specs if s.key() == rows[0]["key"])
    best_test = score(
        model=load_weights(best, setup.sweep_dir / best.key()),
        spec=best,
        split=setup.splits.test,
        device=setup.device,
        class_names=setup.splits.class_names,
    )
    rows[0] = {**rows[0], "test_accuracy": best_test.accuracy, "test_macro_f1": best_test.macro_f1}
    report_dir = new_run_name(setup.sweep_dir, "report")
    with staged_run_dir(report_dir) as stage:
        figure = plot_factor_effects(rows, FACTORS, stage / "factor_effects.png")
        config = {
            **dataclasses.asdict(setup.config),
            "n_skipped": n_skipped,
            "sweep_dir": setup.sweep_dir,
            "identity": setup.identity().to_dict(),
            "grid": [s.key() for s in setup.specs],
        }
        record, predictions = sweep_record(
            rows=rows,
            specs=setup.specs,
            best_test=best_test,
            splits=setup.splits,
            config=config,
            device=str(setup.device),
            artifacts=[figure.relative_to(stage)],
            started_at=started_at,
        )
        run_record.write_record(stage, record, predictions)
    return SweepResult(
        rows=tuple(rows),
        best_test=best_test,
        n_skipped=n_skipped,
        report_dir=report_dir,
        figure=report_dir / figure.name,
        record=record,
    )
