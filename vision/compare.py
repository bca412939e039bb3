"""`compare`: train several models on the same splits and budget; one row of scores per model."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import ConfigError
from common import record as run_record
from common.devices import Device, DType
from common.options import CPUS
from common.progress import ProgressCallback, no_progress
from common.writes import check_new, new_run_name, staged_run_dir
from vision.data import KMNIST_CLASS_NAMES, KMNIST_HIRAGANA, DatasetName, Splits, load_splits
from vision.experiment import ModelRun, check_tta_views, data_description, default_runs_dir, run_model
from vision.plots import plot_confusion, plot_error_gallery, plot_learning_curves
from vision.specs import ModelName, ModelSpec, compute_dtype, preset, with_dtype

DEFAULT_COMPARE_MODELS = (ModelName.MLP_NUMPY, ModelName.MLP_TORCH, ModelName.CNN_STRONG)


@dataclass(frozen=True)
class CompareConfig:
    models: tuple[ModelName, ...] = DEFAULT_COMPARE_MODELS
    dataset: DatasetName = DatasetName.DIGITS
    data_dir: Path | None = None
    n_epochs: int | None = None  # None: each preset's own default
    augment: bool | None = None  # None: each preset's own default
    validation_fraction: float = 0.1
    seed: int = 0
    device: Device = Device.AUTO
    threads: int | None = None  # CPU threads for torch and NumPy's BLAS; None: the libraries' defaults
    out: Path | None = (
        None  # the run folder to create (refused if it exists); default mlx_home()/runs/vision/compare-<dataset>-<time>-<id>
    )
    tta_views: int = 0  # extra test-time views averaged into each prediction (0: off)
    plot_errors: bool = False  # an error gallery per model beside its confusion matrix
    members: int | None = None  # each torch model as an ensemble of this many networks; None: each preset's own
    dtype: DType = DType.AUTO  # torch models' autocast: auto = bf16 where native (vision.specs.with_dtype)


@dataclass(frozen=True)
class CompareSetup:
    config: CompareConfig
    specs: tuple[ModelSpec, ...]
    splits: Splits
    device: Any  # torch.device
    run_dir: Path  # the final name; created only when the run is complete

    def summary(self) -> dict[str, Any]:
        data = data_description(self.splits)
        return {
            "models": ", ".join(s.model.value for s in self.specs),
            "data": f"{data['dataset']}: {data['n_train']} train / {data['n_val']} val / {data['n_test']} test",
            "source": data["source"],
            "epochs": ", ".join(f"{s.model.value}={s.train.n_epochs}" for s in self.specs),
            **(
                {"ensemble": ", ".join(f"{s.model.value}={s.members} networks" for s in self.specs if s.members > 1)}
                if any(s.members > 1 for s in self.specs)
                else {}
            ),
            "device": f"{self.device} (torch models; the NumPy MLP always runs on CPU)",
            "dtype": ", ".join(f"{s.model.value}={compute_dtype(s)}" for s in self.specs)
            + (" (autocast: fp32 weights)" if any(s.train.autocast for s in self.specs) else ""),
            "threads": self.config.threads or "library default",
            "seed": self.config.seed,
            "test-time views": self.config.tta_views or "off",
            "output": self.run_dir,
        }


def result_rows(runs: tuple[ModelRun, ...]) -> list[dict[str, Any]]:
    """One summary dict per model run: scores, size and time."""
    return [
        {
            "model": r.spec.model.value,
            "members": r.spec.members,
            "test_accuracy": r.test.accuracy if r.test else None,
            "test_macro_f1": r.test.macro_f1 if r.test else None,
            "validation_accuracy": r.validation_accuracy,
            "validation_accuracy_tta": r.validation_accuracy_tta,
            "per_class_accuracy": r.test.per_class_accuracy if r.test else None,
            "n_parameters": r.n_parameters,
            "train_seconds": r.history.seconds,
            "seconds_per_epoch": r.history.seconds_per_epoch,
            "n_epochs": len(r.history.epochs),
        }
        for r in runs
    ]


@dataclass(frozen=True)
class CompareResult:
    runs: tuple[ModelRun, ...]
    run_dir: Path
    figures: tuple[Path, ...]
    record: run_record.RunRecord  # what run.json holds; ``--json`` prints it

    def rows(self) -> list[dict[str, Any]]:
        return result_rows(self.runs)


def prepare_compare(config: CompareConfig) -> CompareSetup:
    """Validate everything, load the data and pick the device before any folder is made or time spent."""
    from training.devices import resolve_device

    check_tta_views(config.tta_views)
    if config.tta_views and config.validation_fraction == 0:
        raise ConfigError(
            "--tta is judged on validation (scored with and without the views), and --validation-fraction 0 leaves none; "
            "use a fraction above 0 with --tta"
        )
    CPUS.check(config.threads, "--threads")
    device = resolve_device(config.device)
    specs = tuple(
        with_dtype(
            preset(
                m,
                n_epochs=config.n_epochs,
                augment=config.augment,
                seed=config.seed,
                **({} if config.members is None else {"members": config.members}),
            ),
            config.dtype,
            device,
        )
        for m in config.models
    )
    splits = load_splits(
        dataset=config.dataset,
        data_dir=config.data_dir,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
    )
    run_dir = (
        check_new(Path(config.out).expanduser())
        if config.out
        else new_run_name(default_runs_dir(), f"compare-{config.dataset.value}")
    )
    return CompareSetup(config=config, specs=specs, splits=splits, device=device, run_dir=run_dir)


def run_compare(setup: CompareSetup, progress: ProgressCallback = no_progress) -> CompareResult:
    """Train every spec of ``setup`` in turn; write per-model folders, figures and the run record (run.json).

    Everything is written to a hidden staging folder that is renamed to ``setup.run_dir`` only once
    complete, so an interrupted compare leaves no half-written run under a run's name.
    """
    from training.devices import cpu_threads
    from vision.record import compare_record

    started_at = run_record.now()
    final = setup.run_dir
    with staged_run_dir(final) as stage:
        with cpu_threads(setup.config.threads) as n_threads:
            runs = tuple(
                run_model(
                    spec=spec,
                    splits=setup.splits,
                    device=setup.device,
                    run_dir=stage / spec.model.value,
                    progress=progress,
                    n_tta_views=setup.config.tta_views,
                )
                for spec in setup.specs
            )
        figures = _write_figures(runs=runs, splits=setup.splits, folder=stage, plot_errors=setup.config.plot_errors)
        config = {
            **dataclasses.asdict(setup.config),
            "specs": [s.to_dict() for s in setup.specs],
            "data": data_description(setup.splits),
            "n_threads": n_threads,  # the threads the models trained with (``threads``: as asked)
        }
        record, predictions = compare_record(
            runs=runs,
            splits=setup.splits,
            config=config,
            device=str(setup.device),
            artifacts=[f.relative_to(stage) for f in figures],
            started_at=started_at,
        )
        run_record.write_record(stage, record, predictions)
    runs = tuple(dataclasses.replace(r, run_dir=final / r.run_dir.name) for r in runs)
    return CompareResult(runs=runs, run_dir=final, figures=tuple(final / f.name for f in figures), record=record)


def _write_figures(runs: tuple[ModelRun, ...], splits: Splits, folder: Path, plot_errors: bool) -> list[Path]:
    figures = [plot_learning_curves({r.spec.model.value: r.history for r in runs}, folder / "learning_curves.png")]
    glyphs = KMNIST_HIRAGANA if splits.class_names == KMNIST_CLASS_NAMES else None
    for r in runs:
        test = r.test
        assert test is not None, "compare scores every model on the test split"
        name = r.spec.model.value
        title = f"{name}: test accuracy {test.accuracy:.2%}"
        figures.append(
            plot_confusion(
                confusion=test.confusion,
                class_names=splits.class_names,
                title=title,
                path=folder / f"confusion_{name}.png",
            )
        )
        if plot_errors:
            errors = int(test.confusion.sum() - np.trace(test.confusion))
            gallery_title = f"{name}: {errors:,} of {len(splits.test):,} test images misclassified ({test.accuracy:.2%} correct), by the most confused pairs"
            figures.append(
                plot_error_gallery(
                    test=splits.test,
                    scores=test,
                    glyphs=glyphs,
                    title=gallery_title,
                    path=folder / f"errors_{name}.png",
                )
            )
    return figures
