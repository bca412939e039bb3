"""`mlx study vision`: compare the models, sweep one of them a little, report both on the same test images.

Layout: ``compare/compare-*/`` (one finished compare is reused), ``sweep/`` (resumable on its own;
its latest ``report-*/run.json`` is reused), ``report/`` (report.md and the PNGs).
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.artifacts import Identity, claim_folder, from_legacy, hold, to_plain
from common.devices import Device
from common.paths import mlx_home
from common.progress import ProgressCallback, no_progress
from common.record import RECORD_FILE
from common.writes import new_run_name
from report.join import ReportConfig, build_report
from report.rows import Report


@dataclass(frozen=True)
class VisionStudyConfig:
    dataset: str = "digits"  # vision.data.DatasetName value
    data_dir: Path | None = None
    models: tuple[str, ...] = ("mlp-numpy", "mlp-torch", "cnn-strong")
    sweep_model: str = "mlp-torch"
    sweep_depths: tuple[int, ...] = (1, 2)
    sweep_widths: tuple[int, ...] = (64, 256)
    n_epochs: int | None = None  # None: each preset's own
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    out: Path | None = None

    def settings(self) -> dict:
        """What the study's results depend on, the data folder aside (its images' fingerprints count instead)."""
        return {k: v for k, v in to_plain(self).items() if k not in ("device", "threads", "out", "data_dir")}


@dataclass(frozen=True)
class VisionStudyResult:
    out: Path
    runs: tuple[Path, ...]
    report: Report
    n_done: int
    n_cached: int


KIND = "study vision"
MARKER = "study.json"


def study_identity(config: VisionStudyConfig) -> Identity:
    """The settings and the fingerprints of the images of each split: finished steps are reused only on the same data."""
    from vision.data import DatasetName, fingerprint_arrays, load_splits

    splits = load_splits(
        dataset=DatasetName(config.dataset), data_dir=config.data_dir, validation_fraction=0.1, seed=config.seed
    )
    parts = {"train": splits.train, "validation": splits.val, "test": splits.test}
    return Identity.of(
        KIND, config.settings(), data={name: fingerprint_arrays(s.images, s.labels) for name, s in parts.items()}
    )


def default_vision_study_dir(config: VisionStudyConfig, identity: Identity | None = None) -> Path:
    identity = identity or study_identity(config)
    return mlx_home() / "studies" / f"vision-{config.dataset}-{identity.key(8)}"


def run_vision_study(
    config: VisionStudyConfig,
    progress: ProgressCallback = no_progress,
    notify: Callable[[str], None] = lambda line: None,
) -> VisionStudyResult:
    identity = study_identity(config)
    out = Path(config.out).expanduser() if config.out else default_vision_study_dir(config, identity)
    claim_folder(out, identity, MARKER, legacy=functools.partial(_legacy, config=config, now=identity))
    with hold(out, KIND):  # a second study into this folder is refused at once, naming this process
        return _run_steps(config=config, out=out, progress=progress, notify=notify)


def _run_steps(config: VisionStudyConfig, out: Path, progress, notify) -> VisionStudyResult:
    compare_run, did_compare = _compare(config=config, parent=out / "compare", progress=progress, notify=notify)
    sweep_run, did_sweep = _sweep(config=config, folder=out / "sweep", progress=progress, notify=notify)
    runs = (compare_run, sweep_run)
    report = build_report(
        ReportConfig(runs=tuple(map(str, runs)), out=out / "report", markdown=out / "report" / "report.md")
    )
    return VisionStudyResult(
        out=out, runs=runs, report=report, n_done=did_compare + did_sweep, n_cached=2 - did_compare - did_sweep
    )


def _legacy(saved: dict, config: VisionStudyConfig, now: Identity) -> dict:
    """study.json of an older mlx: its settings with the data folder and the fingerprint of all the images."""
    from vision.data import DatasetName, load_splits

    base = saved.get("base")
    if not isinstance(base, dict):
        base = {}
    whole = load_splits(
        dataset=DatasetName(config.dataset), data_dir=config.data_dir, validation_fraction=0.1, seed=config.seed
    ).fingerprint
    data_dir = str(config.data_dir) if config.data_dir else None
    return from_legacy(base, now, {"data_dir": data_dir, "data_fingerprint": whole})


def _latest(pattern_dir: Path, pattern: str) -> Path | None:
    found = sorted(p.parent for p in pattern_dir.glob(f"{pattern}/{RECORD_FILE}")) if pattern_dir.exists() else []
    return found[-1] if found else None


def _compare(config: VisionStudyConfig, parent: Path, progress, notify) -> tuple[Path, bool]:
    from vision.compare import CompareConfig, prepare_compare, run_compare
    from vision.data import DatasetName
    from vision.specs import ModelName

    done = _latest(parent, "compare-*")
    if done:
        notify(f"cached: model comparison ({done})")
        return done, False
    setup = prepare_compare(
        CompareConfig(
            models=tuple(ModelName(m) for m in config.models),
            dataset=DatasetName(config.dataset),
            data_dir=config.data_dir,
            n_epochs=config.n_epochs,
            seed=config.seed,
            device=Device(config.device),
            threads=config.threads,
            out=new_run_name(parent, f"compare-{config.dataset}"),
        )
    )
    result = run_compare(setup, progress)
    notify(f"done: model comparison ({result.run_dir})")
    return result.run_dir, True


def _sweep(config: VisionStudyConfig, folder: Path, progress, notify) -> tuple[Path, bool]:
    from vision.activations import Activation
    from vision.data import DatasetName
    from vision.specs import ModelName
    from vision.sweep import SweepConfig, prepare_sweep, run_sweep

    done = _latest(folder, "report-*")
    if done:
        notify(f"cached: sweep of {config.sweep_model} ({done})")
        return done, False
    setup = prepare_sweep(
        SweepConfig(
            model=ModelName(config.sweep_model),
            depths=config.sweep_depths,
            widths=config.sweep_widths,
            activations=(Activation.RELU,),
            l2s=(0.0,),
            dataset=DatasetName(config.dataset),
            data_dir=config.data_dir,
            n_epochs=config.n_epochs,
            seed=config.seed,
            device=Device(config.device),
            threads=config.threads,
            out=folder,
        )
    )
    result = run_sweep(setup, progress)
    notify(f"done: sweep of {config.sweep_model}, {len(result.rows)} configurations ({result.report_dir})")
    return result.report_dir, True
