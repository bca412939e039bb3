"""`mlx study vision`: compare the models, sweep one of them a little, report both on the same test images.

Layout: ``compare/compare-*/`` (one finished compare is reused), ``sweep/`` (resumable on its own;
its latest ``report-*/run.json`` is reused), ``report/`` (report.md and the PNGs).
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.errors import StoreError
from common.paths import ensure_writable_dir, mlx_home
from common.progress import ProgressCallback, no_progress
from common.record import RECORD_FILE, to_plain
from common.runs import new_run_name, write_json


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

    def base(self) -> dict:
        return {k: v for k, v in to_plain(self.__dict__).items() if k not in ("device", "threads", "out")}


@dataclass(frozen=True)
class VisionStudyResult:
    out: Path
    runs: tuple[Path, ...]
    report: object  # report.join.Report
    n_done: int
    n_cached: int


def default_vision_study_dir(config: VisionStudyConfig) -> Path:
    import hashlib

    digest = hashlib.sha256(json.dumps(config.base(), sort_keys=True).encode()).hexdigest()[:8]
    return mlx_home() / "studies" / f"vision-{config.dataset}-{digest}"


def run_vision_study(
    config: VisionStudyConfig,
    progress: ProgressCallback = no_progress,
    notify: Callable[[str], None] = lambda line: None,
) -> VisionStudyResult:
    from report.join import ReportConfig, build_report

    out = Path(config.out).expanduser() if config.out else default_vision_study_dir(config)
    _claim(out, {**config.base(), "data_fingerprint": _data_fingerprint(config)})
    compare_run, did_compare = _compare(config, out / "compare", progress, notify)
    sweep_run, did_sweep = _sweep(config, out / "sweep", progress, notify)
    runs = (compare_run, sweep_run)
    report = build_report(
        ReportConfig(runs=tuple(map(str, runs)), out=out / "report", markdown=out / "report" / "report.md")
    )
    return VisionStudyResult(out, runs, report, did_compare + did_sweep, 2 - did_compare - did_sweep)


def _data_fingerprint(config: VisionStudyConfig) -> str:
    """The images' fingerprint: finished steps are reused only on the same data (a changed --data-dir is refused)."""
    from vision.data import DatasetName, load_splits

    return load_splits(DatasetName(config.dataset), config.data_dir, 0.1, config.seed).fingerprint


def _claim(out: Path, base: dict) -> None:
    ensure_writable_dir(out)
    marker = out / "study.json"
    if marker.exists():
        saved = json.loads(marker.read_text()).get("base") or {}
        if saved != json.loads(json.dumps(base)):
            changed = sorted(k for k in base if saved.get(k) != json.loads(json.dumps(base))[k])
            raise StoreError(
                f"{out} holds a study with other settings or data ({', '.join(changed)}; see its study.json); "
                "re-run with those to resume, or choose another --out"
            )
    elif any(out.iterdir()):
        raise StoreError(f"{out} is not empty and is not an mlx study; choose another --out")
    else:
        write_json(marker, {"kind": "study vision", "base": base})


def _latest(pattern_dir: Path, pattern: str) -> Path | None:
    found = sorted(p.parent for p in pattern_dir.glob(f"{pattern}/{RECORD_FILE}")) if pattern_dir.exists() else []
    return found[-1] if found else None


def _compare(config: VisionStudyConfig, parent: Path, progress, notify) -> tuple[Path, bool]:
    from vision.compare import CompareConfig, prepare_compare, run_compare
    from vision.data import DatasetName
    from vision.models import ModelName

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
            device=config.device,
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
    from vision.models import ModelName
    from vision.sweep import SweepConfig, prepare_sweep, run_sweep

    done = _latest(folder, "report-*")
    if done:
        notify(f"cached: sweep of {config.sweep_model} ({done})")
        return done, False
    setup = prepare_sweep(
        SweepConfig(
            ModelName(config.sweep_model),
            config.sweep_depths,
            config.sweep_widths,
            (Activation.relu,),
            (0.0,),
            DatasetName(config.dataset),
            config.data_dir,
            config.n_epochs,
            seed=config.seed,
            device=config.device,
            threads=config.threads,
            out=folder,
        )
    )
    result = run_sweep(setup, progress)
    notify(f"done: sweep of {config.sweep_model}, {len(result.rows)} configurations ({result.report_dir})")
    return result.report_dir, True
