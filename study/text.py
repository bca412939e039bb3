"""`mlx study text`: the whole study in one command, every step cached or resumed.

For each training-set size: embed (all poolings, all layers) -> probe compare (every layer) ->
probe the best layers concatenated -> fine-tune -> embed the fine-tuned model -> probe it -> report.

Layout of a study folder (each step's output is its cache: a finished step is never redone)::

    study.json                      the settings (a guard: one study per folder)
    stores/frozen.h5                the frozen model's embeddings, shared by every size
    n-<size>/probe-layers/          run.json: k-NN + logistic regression, every pooling x layer
    n-<size>/probe-concat/          run.json: the best layers (on validation) concatenated
    n-<size>/finetune/              run.json + model/: the fine-tuned classifier (every parameter)
    n-<size>/finetune-lora/         run.json + model/ + adapter/: LoRA (--methods), likewise finetune-bitfit/
    n-<size>/stores/finetuned.h5    the fine-tuned encoder's embeddings
    n-<size>/probe-finetuned/       run.json: probes on the fine-tuned encoder's layers
    report/                         report.md and the PNGs, rewritten each time (cheap)
"""

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from common.artifacts import Identity, claim_folder, from_legacy, hold, is_done
from common.errors import ConfigError, DataError
from common.heldout import check_test_rows, row_keys
from common.paths import mlx_home
from common.progress import ProgressCallback, no_progress
from common.writes import write_json
from report.join import ReportConfig, build_report
from report.rows import Report
from study import steps
from study.config import TextStudyConfig
from text.datasets import TextDataset, load_text_dataset
from text.models import model_identity, model_shape, resolve_model
from text.validation import VALIDATION_FRACTION

log = logging.getLogger(__name__)

N_CONCAT_LAYERS = 3  # the best layers of the best pooling, concatenated


@dataclass(frozen=True)
class Step:
    size: str  # "all" or the number of training rows; "" for shared steps
    name: str
    output: Path
    cached: bool


@dataclass(frozen=True)
class TextStudyPlan:
    config: TextStudyConfig
    out: Path
    n_train: int  # rows of the training split
    n_test: int
    sizes: tuple[int | None, ...]  # normalised: None for every row
    steps: tuple[Step, ...] = field(default=())
    identity: Identity | None = None  # the settings, the data's and the model's fingerprints (common.artifacts)

    def summary(self) -> dict[str, str]:
        c = self.config
        cached = sum(s.cached for s in self.steps)
        return {
            "model": c.model,
            "data": f"{c.dataset}: {self.n_train:,} train / {self.n_test:,} test",
            "training sizes": ", ".join(size_label(n) for n in self.sizes),
            "steps": f"{len(self.steps)} ({cached} already done, skipped)"
            + ("" if c.finetune else "; fine-tuning off"),
            "fine-tuning": f"{', '.join(c.methods)}: {c.n_epochs} epoch(s), batch {c.batch_size}, lr "
            + (f"{c.lr:g} (full; x5 LoRA, x10 BitFit)" if c.lr else "by model size and method")
            if c.finetune
            else "off",
            "seed": str(c.seed),
            "dtype": c.dtype,
            "output": str(self.out),
        }


@dataclass(frozen=True)
class TextStudyResult:
    out: Path
    runs: tuple[Path, ...]
    report: Report
    n_done: int
    n_cached: int


def size_label(n: int | None) -> str:
    return "all" if n is None else str(n)


def parse_train_sizes(text: str) -> tuple[int | None, ...]:
    """``100,1000,all`` -> (100, 1000, None); positive integers or 'all'."""
    sizes: list[int | None] = []
    for part in (p.strip().lower() for p in text.split(",")):
        if part == "all":
            sizes.append(None)
            continue
        try:
            n = int(part)
        except ValueError:
            raise ConfigError(
                f"cannot read --train-sizes {text!r}: {part!r} is neither a whole number nor 'all'; e.g. 100,1000,all"
            ) from None
        if n < 1:
            raise ConfigError(f"--train-sizes must be positive (or 'all'), got {n}")
        sizes.append(n)
    if not sizes:
        raise ConfigError("--train-sizes is empty; give e.g. 100,1000,all")
    return tuple(dict.fromkeys(sizes))


def prepare_text_study(config: TextStudyConfig) -> TextStudyPlan:
    """Check the data, the sizes, the model and the folder before any work; list the steps and what is cached."""
    dataset = load_text_dataset(
        spec=config.dataset,
        splits=(),
        text_column=config.text_column,
        label_column=config.label_column,
        limit=None,
        seed=config.seed,
    )
    if "train" not in dataset.splits or "test" not in dataset.splits:
        raise DataError(
            f"dataset {config.dataset!r} has splits {', '.join(dataset.splits)}; a study needs 'train' and 'test'"
        )
    n_train, n_test = len(dataset.splits["train"]), len(dataset.splits["test"])
    train, test = dataset.splits["train"], dataset.splits["test"]
    what = f"split 'train' of {dataset.name}"
    check_test_rows(row_keys(train.texts), row_keys(test.texts), train_what=what, test_what="split 'test'")
    too_big = [n for n in config.train_sizes if n is not None and n > n_train]
    if too_big:
        raise ConfigError(
            f"--train-sizes {too_big[0]} is larger than the {n_train:,} rows of the training split of "
            f"{dataset.name}; use sizes up to {n_train:,}, or 'all'"
        )
    n_classes = len(dataset.label_names)
    smallest = min((n for n in config.train_sizes if n is not None), default=n_train)
    if smallest * VALIDATION_FRACTION < n_classes:
        # the probes' and fine-tuning's validation split holds 10% of the rows, stratified: one per class at least
        raise ConfigError(
            f"--train-sizes {smallest} is too small for {n_classes} classes: the 10% validation split needs a row "
            f"of each class; use at least {int(n_classes / VALIDATION_FRACTION)}"
        )
    sizes = tuple(dict.fromkeys(None if n == n_train else n for n in config.train_sizes))
    sizes = tuple(sorted(sizes, key=lambda n: n_train if n is None else n))
    model_shape(config.model)  # a bad model name fails here, not after the first step
    identity = study_identity(config, dataset)
    out = Path(config.out).expanduser() if config.out else default_study_dir(config, dataset.name, identity)
    claim_folder(out, identity, MARKER, legacy=functools.partial(_legacy, config=config, dataset=dataset, now=identity))
    plan = TextStudyPlan(config=config, out=out, n_train=n_train, n_test=n_test, sizes=sizes, identity=identity)
    return replace(plan, steps=tuple(_steps(plan)))


MARKER = "study.json"
KIND = "study text"
PATH_SETTINGS = ("model", "dataset")  # their bytes count instead: the data's fingerprints, the model's weights


def study_identity(config: TextStudyConfig, dataset: TextDataset) -> Identity:
    return Identity.of(
        KIND,
        config.settings(),
        data={name: split.fingerprint for name, split in dataset.splits.items()},
        model=model_identity(resolve_model(config.model)),
        leave_out=PATH_SETTINGS,
    )


def default_study_dir(config: TextStudyConfig, dataset_name: str, identity: Identity) -> Path:
    name = f"text-{Path(dataset_name).name}-{Path(config.model).name}-{identity.key(8)}".replace("/", "_")
    return mlx_home() / "studies" / name


def _legacy(saved: dict, config: TextStudyConfig, dataset: TextDataset, now: Identity) -> dict:
    """study.json of an older mlx: its settings with paths and the whole dataset's fingerprint."""
    base = saved.get("base")
    if not isinstance(base, dict):
        base = {}
    stand_ins = {**{k: getattr(config, k) for k in PATH_SETTINGS}, "data_fingerprint": dataset.fingerprint}
    return from_legacy(base, now, stand_ins)


def _steps(plan: TextStudyPlan) -> list[Step]:
    out = plan.out
    steps = [
        Step(
            size="",
            name="embed frozen model",
            output=out / "stores" / "frozen.h5",
            cached=is_done(out / "stores" / "frozen.h5"),
        )
    ]
    for n in plan.sizes:
        folder = out / f"n-{size_label(n)}"
        names = [("probe layers", folder / "probe-layers"), ("probe best layers concatenated", folder / "probe-concat")]
        if plan.config.finetune:
            names += [(f"fine-tune ({method})", folder / finetune_folder(method)) for method in plan.config.methods]
        if plan.config.finetune and "full" in plan.config.methods:
            names += [
                ("embed fine-tuned model", folder / "stores" / "finetuned.h5"),
                ("probe fine-tuned layers", folder / "probe-finetuned"),
            ]
        steps += [Step(size=size_label(n), name=name, output=path, cached=is_done(path)) for name, path in names]
    return steps


def run_text_study(
    plan: TextStudyPlan, progress: ProgressCallback = no_progress, notify: Callable[[str], None] = lambda line: None
) -> TextStudyResult:
    """Run every step not done yet, in order; then write the report over every run of the study."""
    with hold(plan.out, KIND):  # a second study into this folder is refused at once, naming this process
        return _run_steps(plan, progress, notify)


def _run_steps(plan: TextStudyPlan, progress: ProgressCallback, notify: Callable[[str], None]) -> TextStudyResult:
    c = plan.config
    write_json(
        plan.out / MARKER,
        {
            "kind": KIND,
            "identity": plan.identity.to_dict() if plan.identity else None,
            "train_sizes": [size_label(n) for n in plan.sizes],
        },
    )
    done = cached = 0
    frozen = plan.out / "stores" / "frozen.h5"
    did = steps.embed(c, model=c.model, path=frozen, progress=progress)
    done, cached = done + did, cached + (not did)
    notify(f"{'embedded' if did else 'cached'}: {frozen}")
    runs: list[Path] = []
    for n in plan.sizes:
        folder = plan.out / f"n-{size_label(n)}"
        for run_dir, did in _size_steps(plan=plan, n=n, folder=folder, frozen=frozen, progress=progress, notify=notify):
            done, cached = done + did, cached + (not did)
            if run_dir is not None:
                runs.append(run_dir)
    report = build_report(
        ReportConfig(runs=tuple(map(str, runs)), out=plan.out / "report", markdown=plan.out / "report" / "report.md")
    )
    return TextStudyResult(out=plan.out, runs=tuple(runs), report=report, n_done=done, n_cached=cached)


def _size_steps(
    plan: TextStudyPlan,
    n: int | None,
    folder: Path,
    frozen: Path,
    progress: ProgressCallback,
    notify: Callable[[str], None],
):
    """Yield (run folder or None, True if work was done) for each step at one training size."""
    c, label = plan.config, size_label(n)
    step = steps.ProbeStep(n_train=n, seed=c.seed, progress=progress, notify=notify)
    probe = functools.partial(steps.probe, step)
    layers_run = folder / "probe-layers"
    yield layers_run, probe(store=frozen, run_dir=layers_run, what=f"n={label}: probes on every layer")
    concat_run = folder / "probe-concat"
    yield (
        concat_run,
        steps.probe_concatenated(
            step,
            store=frozen,
            layers_run=layers_run,
            run_dir=concat_run,
            n_layers=N_CONCAT_LAYERS,
            what=f"n={label}: probe on the best layers concatenated",
        ),
    )
    if not c.finetune:
        return
    for method in c.methods:
        run = folder / finetune_folder(method)
        what = f"n={label}: fine-tune ({method})"
        yield (
            run,
            steps.finetune(c, n_train=n, run_dir=run, progress=progress, notify=notify, what=what, method=method),
        )
    if "full" not in c.methods:
        return
    finetune_run = folder / finetune_folder("full")
    model_dir = steps.finetuned_model_dir(finetune_run)
    finetuned = folder / "stores" / "finetuned.h5"
    did = steps.embed(c, model=str(model_dir), path=finetuned, progress=progress)
    notify(f"n={label}: {'embedded' if did else 'cached'} the fine-tuned model: {finetuned}")
    yield None, did
    probe_run = folder / "probe-finetuned"
    yield (
        probe_run,
        probe(store=finetuned, run_dir=probe_run, what=f"n={label}: probes on the fine-tuned model's layers"),
    )


def finetune_folder(method: str) -> str:
    """``finetune`` for full fine-tuning (the folder of studies from before --methods), ``finetune-<method>`` else."""
    return "finetune" if method == "full" else f"finetune-{method}"
