"""``mlx finetune``'s plan: the options checked against the data and the model (cheap, before any training),
the defaults resolved, and the run's identity (common/artifacts.py) and folder.

A run trains in a hidden folder beside its final name (``.NAME.partial``) holding ``config.json``
and its checkpoints; running the same command again resumes there when the identity matches.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np

from common.artifacts import Identity, IdentityMismatch, Reuse, check_kind, decide, from_legacy, to_plain
from common.devices import DType
from common.errors import ConfigError, DataError, StoreError
from common.heldout import check_test_classes, check_test_rows, row_keys
from common.paths import ensure_writable_dir, mlx_home
from common.record import now
from common.schema import read_checked_json
from common.splits import stratified_subsample
from finetune.config import (
    DROPOUT_MASKS,
    LORA_DEFAULTS,
    RUNTIME_OPTIONS,
    FinetuneConfig,
    default_lr,
    option_name,
    resolve_pooling,
)
from finetune.data import LengthGroupedBatches
from text.datasets import TextDataset, load_text_dataset
from text.limits import resolve_max_length
from text.models import model_identity, model_shape, resolve_model
from text.validation import validation_split
from training.checkpoints import CheckpointDir
from training.devices import preferred_dtype, resolve_device
from training.distributed import dist_info

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class FinetunePlan:
    config: FinetuneConfig  # with lr, max_length and dtype resolved
    dataset: TextDataset
    fit_rows: np.ndarray  # rows of the training split trained on
    val_rows: np.ndarray  # rows held out for validation: the probe's (text.validation, the same seed)
    source: str  # resolved model id or folder
    n_layers: int
    device: str
    world_size: int
    n_batches: int  # training micro-batches per epoch (all ranks)
    out: Path
    partial: Path
    resume_step: int | None  # the checkpoint a resumed run starts from
    started_at: str
    identity: Identity  # what the run computes from (common.artifacts)
    notes: tuple[str, ...] = ()  # warnings on the data, said before training and kept in the record

    @property
    def dtype(self) -> DType:
        """The resolved compute dtype (never 'auto': prepare_finetune resolves it into the config)."""
        return DType(self.config.dtype)

    @property
    def lr(self) -> float:
        """The resolved learning rate (prepare_finetune fills in the method's default)."""
        return _resolved(self.config.lr, "lr")

    @property
    def max_length(self) -> int:
        """The resolved maximum tokens per text (prepare_finetune fills in the model's limit)."""
        return _resolved(self.config.max_length, "max_length")

    @property
    def n_classes(self) -> int:
        return len(self.dataset.label_names)

    @property
    def global_batch(self) -> int:
        return self.config.batch_size * self.world_size * self.config.grad_accum

    def summary(self) -> dict[str, str]:
        c = self.config
        test = self.dataset.splits[c.test_split]
        batch = (
            f"{c.batch_size} x {self.world_size} rank(s) x {c.grad_accum} accumulation = {self.global_batch} per step"
        )
        return {
            "model": f"{c.model} ({self.n_layers} layers) + a new {self.n_classes}-class head on "
            + ("the mean of the token vectors " if c.pooling == "mean" else "the [CLS] pooler ")
            + (
                "(started as a linear probe of the frozen features)"
                if c.head_init == "probe"
                else "(initialised from the seed)"
            ),
            "method": _describe_method(c),
            "data": f"{self.dataset.name}: train {len(self.fit_rows):,}, validation {len(self.val_rows):,} (held out of {c.train_split}), test {len(test):,}",
            "training": f"{c.n_epochs} epoch(s), lr {c.lr:g} (linear warmup {c.warmup:g}, then decay), weight decay {c.weight_decay:g}, layer lr decay {c.layer_lr_decay:g}"
            + (f", label smoothing {c.label_smoothing:g}" if c.label_smoothing else "")
            + (f"; scored on the moving average of the weights (decay {c.ema_decay:g})" if c.ema_decay else ""),
            "batch": batch + f"; max length {c.max_length}, length-grouped",
            "device / dtype": f"{self.device} / {self.dtype.value}"
            + (" autocast" if self.dtype is not DType.FP32 else ""),
            "seed": str(c.seed),
            "output": str(self.out)
            + (f" (resuming from step {self.resume_step})" if self.resume_step is not None else ""),
        }


def _resolved(value: T | None, name: str) -> T:
    if value is None:  # a plan built by hand, not by prepare_finetune
        raise ConfigError(f"the plan's {name} was never resolved; build the plan with prepare_finetune")
    return value


def _describe_method(c: FinetuneConfig) -> str:
    if c.method == "lora":
        targets = "every linear layer of the encoder" if c.lora_targets == "all" else "the attention's linear layers"
        return (
            f"LoRA (peft) on {targets}: rank {c.lora_rank}, alpha {c.lora_alpha:g}, dropout {c.lora_dropout:g}; "
            "the encoder's weights stay frozen, the head trains"
        )
    if c.method == "bitfit":
        return "BitFit: every bias and LayerNorm trains, the weights stay frozen; the head trains"
    return "full fine-tuning: every parameter trains"


# Options whose value is a path: the bytes behind them (the data's fingerprints, the model's weights) are the
# run's identity instead, so ./data and data are one run and a rewritten file is another.
PATH_OPTIONS = ("model", "dataset")
# Keys an older mlx did not save, with the value its runs had: those runs resume under them.
LEGACY_OPTIONS = {
    "dropout_masks": "torch",
    "head_init": "random",
    "pooling": "cls",
    "label_smoothing": 0.0,
    "ema_decay": 0.0,
    "validation_seed": 0,
    "method": "full",
}
# Keys run_options leaves out at their 'off' value (so that the legacy folder names hold); the identity has them.
OFF_VALUES = {"ema_decay": 0.0, "validation_seed": 0, "method": "full"}
KIND = "fine-tuning run"


def run_options(config: FinetuneConfig, world_size: int) -> dict:
    """What a run computes depends on: its options less the runtime ones, the world size, the dropout masks.

    Saved in the partial folder; with the data's and the model's fingerprints it is the run's identity.
    """
    options = {k: v for k, v in to_plain(config).items() if k not in RUNTIME_OPTIONS}
    if not options["ema_decay"]:  # off: the identity (and default folder) of runs from before --ema-decay
        del options["ema_decay"]
    if config.seed:  # validation rows follow --seed (text.validation); before, they were seed 0's at any seed
        options["validation_seed"] = config.seed
    if options["method"] == "full":  # the identity (and default folder) of runs from before --method
        del options["method"]
    for name in LORA_DEFAULTS:  # unset outside --method lora
        if options[name] is None:
            del options[name]
    return dict(options, world_size=world_size, dropout_masks=DROPOUT_MASKS)


def run_identity(config: FinetuneConfig, world_size: int, dataset: TextDataset, source: str) -> Identity:
    """The run's options (paths left out), the fingerprints of its train and test rows, the model's weights."""
    splits = {"train": config.train_split, "test": config.test_split}
    return Identity.of(
        KIND,
        {**OFF_VALUES, **run_options(config, world_size)},
        data={role: dataset.splits[name].fingerprint for role, name in splits.items()},
        model=model_identity(source),
        leave_out=PATH_OPTIONS,
    )


def run_key(config: FinetuneConfig, world_size: int) -> str:
    """The hash an older mlx named its default folders by (its options, paths as given): found again to resume."""
    return hashlib.sha256(json.dumps(run_options(config, world_size), sort_keys=True).encode()).hexdigest()[:8]


def default_out(config: FinetuneConfig, identity: Identity) -> Path:
    """$MLX_HOME/finetune/<data>-<model>-<identity key>; a run an older mlx left unfinished under its own
    name for these options is resumed there."""
    model = Path(config.model).name or config.model
    dataset = Path(config.dataset).name or config.dataset
    stem = f"{dataset}-{model}-".replace("/", "_")
    out = mlx_home() / "finetune" / (stem + identity.key(8))
    legacy = mlx_home() / "finetune" / (stem + run_key(config, int(identity.config["world_size"])))
    if not out.exists() and not partial_folder(out).exists() and (partial_folder(legacy) / "config.json").exists():
        log.warning("resuming in %s, the folder an older mlx named this run by", legacy)
        return legacy
    return out


def partial_folder(out: Path) -> Path:
    """The hidden folder a run trains in, renamed to ``out`` when it is whole."""
    return out.parent / f".{out.name}.partial"


def prepare_finetune(config: FinetuneConfig, world_size: int | None = None) -> FinetunePlan:
    """Check everything cheap (options, data, model config, run folder) and resolve the defaults."""
    config = config.check().with_method_defaults()
    world_size = world_size or dist_info().world_size
    dataset = load_text_dataset(
        config.dataset,
        splits=(config.train_split, config.test_split),
        text_column=config.text_column,
        label_column=config.label_column,
        limit=config.limit,
        seed=config.seed,
    )
    fit_rows, val_rows = _training_rows(dataset, config)
    notes = _check_held_out(dataset, config, np.concatenate([fit_rows, val_rows]))
    config, source, n_layers, device = _resolve_model_and_device(config)
    n_batches = _count_batches(config, len(fit_rows), world_size)
    identity = run_identity(config, world_size, dataset, source)
    out = Path(config.out).expanduser() if config.out else default_out(config, identity)
    partial = partial_folder(out)
    return FinetunePlan(
        config=config,
        dataset=dataset,
        fit_rows=fit_rows,
        val_rows=val_rows,
        source=source,
        n_layers=n_layers,
        device=device,
        world_size=world_size,
        n_batches=n_batches,
        out=out,
        partial=partial,
        resume_step=check_run_folder(config, identity, out, partial),
        started_at=now(),
        identity=identity,
        notes=notes,
    )


def _resolve_model_and_device(config: FinetuneConfig) -> tuple[FinetuneConfig, str, int, str]:
    """The config with lr, max length, pooling and dtype resolved for the model and the device; the model's
    source and layer count; the device."""
    shape = model_shape(config.model)
    source = resolve_model(config.model)
    hidden_size = _hidden_size(source)
    if config.method == "lora" and config.lora_rank is not None and config.lora_rank > hidden_size:
        raise ConfigError(
            f"--lora-rank {config.lora_rank} is more than {config.model!r}'s hidden size {hidden_size}: a rank above a "
            f"layer's width adds parameters, not capacity; use --lora-rank {hidden_size} or less (e.g. 8)"
        )
    config = replace(
        config,
        lr=config.lr or default_lr(hidden_size, config.method),
        max_length=resolve_max_length(config.max_length, shape.max_positions, config.model)[0],
        pooling=resolve_pooling(config.pooling, config.model, shape),
    )
    device = resolve_device(config.device)
    # The resolved dtype, not 'auto', is part of the run's identity: 'auto' may mean another dtype elsewhere.
    config = replace(config, dtype=preferred_dtype(config.dtype, device))
    return config, source, shape.n_layers, str(device)


def _count_batches(config: FinetuneConfig, n_rows: int, world_size: int) -> int:
    """Training micro-batches per epoch (all ranks); refused when some rank would have none."""
    n_batches = LengthGroupedBatches.count(n_rows, config.batch_size)
    if world_size > n_batches:
        raise ConfigError(
            f"{world_size} processes but only {n_batches} training batch(es) per epoch; use --nproc {n_batches} or fewer, or a smaller --batch-size"
        )
    return n_batches


def _check_held_out(dataset: TextDataset, config: FinetuneConfig, rows: np.ndarray) -> tuple[str, ...]:
    """Refuse test rows that are all among the training rows read; warn of some, and of test classes they lack."""
    train, test = dataset.splits[config.train_split], dataset.splits[config.test_split]
    train_what = f"split {config.train_split!r} of {dataset.name}"
    notes = check_test_rows(
        row_keys(train.texts[i] for i in rows),
        row_keys(test.texts),
        train_what=train_what,
        test_what=f"split {config.test_split!r}",
    )
    return notes + check_test_classes(train.labels[rows], test.labels, dataset.label_names, train_what=train_what)


def _training_rows(dataset: TextDataset, config: FinetuneConfig) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) rows of the training split; with ``--train-size`` both come from the stratified
    subset that ``probe --train-size`` trains on (common.splits.stratified_subsample, same seed), and the
    validation rows are the probe's (text.validation.validation_split, same seed)."""
    labels, train_size, seed = dataset.splits[config.train_split].labels, config.train_size, config.seed
    present = np.unique(labels)
    if len(present) < 2:
        raise DataError(
            f"split {config.train_split!r} of {dataset.name} has only one class ({dataset.label_names[present[0]]}); a classifier needs at least two"
        )
    rows = np.arange(len(labels))
    if train_size is not None:
        if train_size > len(labels):
            raise ConfigError(
                f"--train-size {train_size} is larger than the {len(labels)} rows of the training split; "
                f"pass at most {len(labels)}"
            )
        rows = stratified_subsample(labels, train_size, seed)
    fit, validation = validation_split(labels[rows], seed)
    return rows[fit], rows[validation]


def _hidden_size(source: str) -> int:
    from transformers import AutoConfig

    return int(getattr(AutoConfig.from_pretrained(source), "hidden_size", 768))


def _option_keys(config: FinetuneConfig, identity: Identity) -> set[str]:
    """Identity keys that a difference names as their option: every config field (one the saved run had and this
    one lacks too, e.g. --lora-rank), except where the identity uses the key for itself (``model``: the weights)."""
    own = identity.flat().keys() - identity.config.keys()
    return {*identity.config, *(k for k in to_plain(config) if k not in own)}


def check_run_folder(config: FinetuneConfig, identity: Identity, out: Path, partial: Path) -> int | None:
    """Refuse what --out holds unless --force may replace it (a finished fine-tuning run only) and a resume
    under another identity; return the step a resumed run starts from."""
    if check_kind(out, KIND) and not config.force:
        raise StoreError(
            f"{out} holds a finished run; mlx never overwrites results: choose another --out, or pass --force to train it again"
        )
    ensure_writable_dir(out.parent)
    marker = partial / "config.json"
    saved = None if not marker.exists() else {} if config.force else _saved_identity(marker, config, identity)
    last_step = CheckpointDir(partial / "checkpoints").last_step()
    names = {"world_size": "--nproc", "dropout_masks": "dropout masks (an older mlx)"}
    try:
        decision = decide(
            out,
            identity,
            saved,
            finished=False,
            progress=last_step is not None,
            force=config.force,
            names={**{k: option_name(k) for k in _option_keys(config, identity)}, **names},
            remedy="re-run with the original options and data to resume, or pass --force to start over",
        )
    except IdentityMismatch as exc:
        raise ConfigError(str(exc)) from None
    return last_step if decision is Reuse.RESUME else None


# config.json of a partial folder, as _start_folder writes it
PARTIAL_SCHEMA = {
    "command": (str,),
    "options": (dict,),
    "identity": (dict, type(None)),
    "config": (dict,),
    "mlx_version": (str,),
}


def _saved_identity(marker: Path, config: FinetuneConfig, identity: Identity) -> dict:
    """The flat identity a partial folder was started with, keys an older mlx did not save filled in as it ran."""
    # "identity" is absent from the folders of an older mlx, which resume on their options
    saved = read_checked_json(marker, PARTIAL_SCHEMA, "pass --force to start the run over", optional={"identity"})
    found = Identity.from_dict(saved.get("identity"))
    if found is not None:
        flat = found.flat()
    else:  # an older mlx saved its options with paths and no fingerprints: its paths stand in for the bytes
        flat = from_legacy(saved["options"], identity, {k: getattr(config, k) for k in PATH_OPTIONS})
    flat = {**LEGACY_OPTIONS, **flat}
    if flat.get("dtype") == "auto":  # saved by mlx before the resolved dtype was the identity: what auto means here
        flat["dtype"] = identity.config["dtype"]
    return flat
