"""The steps of a study, each one library call that skips itself when its output exists.

Each returns True when it did work and False when it found its output (said through ``notify``).
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.artifacts import IdentityMismatch, is_done
from common.devices import DType, EncoderDType
from common.errors import StoreError
from common.options import LayerSpec
from common.progress import ProgressCallback
from common.record import read_record
from study.config import TextStudyConfig

KS = (1, 5, 10, 20)


def embed(config: TextStudyConfig, model: str, path: Path, progress: ProgressCallback) -> bool:
    """Embed the study's dataset with ``model`` (every pooling, every layer) into ``path``; cached by the store's key."""
    from embeddings.extract import EmbedConfig, extract_embeddings, plan_extraction

    embed_config = EmbedConfig(
        dataset=config.dataset,
        text_column=config.text_column,
        label_column=config.label_column,
        seed=config.seed,
        model=model,
        poolings=tuple(config.poolings),
        layer="all",
        max_length=config.max_length,
        dtype=EncoderDType(config.dtype),
        out=path,
    )
    try:
        plan = plan_extraction(embed_config)
    except IdentityMismatch as exc:  # `study` has no --force: name what it can do instead
        raise StoreError(
            f"{path} is a store this study made with other options ({', '.join(exc.changed)}); delete it and the probe "
            "runs made from it (n-*/probe-layers, n-*/probe-concat), then run the same command again, or choose another --out"
        ) from None
    if plan.cached:
        return False
    extract_embeddings(plan, progress)
    return True


@dataclass(frozen=True)
class ProbeStep:
    """What every probe step at one training size shares: the rows, the seed, and where it reports."""

    n_train: int | None
    seed: int
    progress: ProgressCallback
    notify: Callable[[str], None]


def probe(
    step: ProbeStep,
    store: Path,
    run_dir: Path,
    what: str,
    poolings: tuple[str, ...] = (),
    layers: tuple[LayerSpec, ...] = ("all",),
) -> bool:
    """k-NN and logistic regression on every pooling x layer of ``store`` (or the ones given), at one training size."""
    from probes import KNNConfig, ProbeKind, ProbeRunConfig, run_probes

    n_train, seed, progress, notify = step.n_train, step.seed, step.progress, step.notify
    if is_done(run_dir):
        notify(f"cached: {what} ({run_dir})")
        return False
    ks = tuple(k for k in KS if n_train is None or k <= n_train) or (1,)
    run_probes(
        ProbeRunConfig(
            command="compare",
            store=store,
            probes=(ProbeKind.KNN, ProbeKind.LOGREG),
            poolings=poolings,
            layers=layers,
            knn=KNNConfig(ks=ks),
            train_size=n_train,
            seed=seed,
            out=run_dir,
        ),
        progress,
    )
    notify(f"done: {what} ({run_dir})")
    return True


def best_layers(layers_run: Path, n_layers: int) -> tuple[str, tuple[int, ...]] | None:
    """The pooling and the ``n_layers`` layers whose logistic-regression probes scored best on validation (never test)."""
    rows = [
        r
        for r in read_record(layers_run).results
        if r.method == "logreg" and r.validation_accuracy is not None and len(r.params.get("layers", [])) == 1
    ]
    if len({r.params["layers"][0] for r in rows}) < 2:
        return None
    by_pooling: dict[str, list] = {}
    for r in rows:
        by_pooling.setdefault(r.params["pooling"], []).append(r)
    # ties on validation go to the pooling named first and to later layers: never to test accuracy
    pooling, candidates = max(sorted(by_pooling.items()), key=lambda item: max(r.validation_accuracy for r in item[1]))
    top = sorted(candidates, key=lambda r: (-r.validation_accuracy, -r.params["layers"][0]))[:n_layers]
    return pooling, tuple(sorted(r.params["layers"][0] for r in top))


def probe_concatenated(step: ProbeStep, store: Path, layers_run: Path, run_dir: Path, n_layers: int, what: str) -> bool:
    if is_done(run_dir):
        step.notify(f"cached: {what} ({run_dir})")
        return False
    chosen = best_layers(layers_run, n_layers)
    if chosen is None:
        step.notify(f"skipped: {what} (the store has one layer)")
        return False
    pooling, layers = chosen
    return probe(
        step,
        store=store,
        run_dir=run_dir,
        what=f"{what}: {pooling} layers {','.join(map(str, layers))}",
        poolings=(pooling,),
        layers=(layers,),
    )


def finetune(
    config: TextStudyConfig,
    n_train: int | None,
    run_dir: Path,
    progress: ProgressCallback,
    notify: Callable[[str], None],
    what: str,
    method: str = "full",
) -> bool:
    """`mlx finetune --method METHOD` on the study's data at one training size; it resumes an interrupted run
    on its own. The study's lr is full fine-tuning's; LoRA and BitFit scale it as their defaults do."""
    if is_done(run_dir):
        notify(f"cached: {what} ({run_dir})")
        return False
    from finetune.config import METHOD_LR_SCALE, FinetuneConfig
    from finetune.plan import prepare_finetune
    from finetune.run import run_finetune

    finetune_config = FinetuneConfig(
        model=config.model,
        dataset=config.dataset,
        text_column=config.text_column,
        label_column=config.label_column,
        n_epochs=config.n_epochs,
        lr=config.lr * METHOD_LR_SCALE[method] if config.lr else None,
        method=method,
        batch_size=config.batch_size,
        max_length=config.max_length,
        seed=config.seed,
        dtype=DType(config.dtype),
        out=run_dir,
        train_size=n_train,
    )
    run_finetune(prepare_finetune(finetune_config), progress)
    read_record(run_dir)  # the report needs the one run record: fail here, not there
    notify(f"done: {what} ({run_dir})")
    return True


def finetuned_model_dir(run_dir: Path) -> Path:
    """The fine-tuned encoder saved by a finetune run (its ``model`` artifact)."""
    record = read_record(run_dir)
    for artifact in record.artifacts:
        if (run_dir / artifact / "config.json").exists():
            return (run_dir / artifact).resolve()
    raise StoreError(f"{run_dir} holds no saved model (no artifact with a config.json); re-run its fine-tuning")
