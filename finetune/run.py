"""``mlx finetune``: prepare (cheap checks, the summary) and run (train, score, write the run folder).

A run trains in a hidden folder beside its final name (``.NAME.partial``) holding ``config.json``
and its checkpoints; running the same command again resumes there. When training and scoring are
done the folder is renamed to its final name: a folder under a run's name is always complete.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from common import __version__
from common.artifacts import Identity, IdentityMismatch, Reuse, check_kind, decide, from_legacy, to_plain
from common.cost import device_name, measure, per_second
from common.devices import DType
from common.errors import ConfigError, DataError, ModelLoadError, StoreError
from common.heldout import check_test_classes, check_test_rows, row_keys
from common.paths import ensure_writable_dir, mlx_home
from common.progress import ProgressCallback, no_progress
from common.runs import write_json
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
from finetune.data import LengthGroupedBatches, encode_split, scoring_batches
from text.datasets import TextDataset, load_text_dataset
from text.limits import resolve_max_length
from text.models import model_shape, resolve_model
from text.validation import validation_fingerprint, validation_split
from training.checkpoints import CheckpointDir
from training.config import OptimizerName, ScheduleName, TrainConfig
from training.devices import cpu_threads, preferred_dtype, resolve_device
from training.distributed import DistInfo, barrier, dist_info, init_distributed
from training.history import TrainHistory

log = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 128
ADAPTER_FOLDER = "adapter"  # a LoRA run's adapter in peft's format (PeftModel.from_pretrained)


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
    started_at: str = ""
    identity: Identity | None = None  # what the run computes from (common.artifacts)
    notes: tuple[str, ...] = ()  # warnings on the data, said before training and kept in the record

    @property
    def dtype(self) -> DType:
        """The resolved compute dtype (never 'auto': prepare_finetune resolves it into the config)."""
        return DType(self.config.dtype)

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


def row_name(method: str) -> str:
    """The result row's name and method in run.json: ``finetune`` (every parameter, as before --method), ``lora``, ``bitfit``."""
    return "finetune" if method == "full" else method


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


@dataclass(frozen=True)
class FinetuneResult:
    out: Path
    accuracy: float
    macro_f1: float
    validation_accuracy: float
    best_step: int | None
    n_train: int
    n_validation: int
    n_test: int
    trainable_params: int
    train_seconds: float
    samples_per_second: float
    history: TrainHistory
    peak_memory_bytes: int | None = None  # while training (common.cost.measure)
    predict_per_second: float | None = None  # test texts per second through the fine-tuned model
    notes: tuple[str, ...] = ()
    ranks_in_sync: bool | None = None  # DDP only: the trained parameters are bit-identical on every rank
    head: object = None  # finetune.head.HeadFit when the head started as a linear probe (None: --head-init random)


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
    from text.models import model_identity

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
    if not out.exists() and not _partial(out).exists() and (_partial(legacy) / "config.json").exists():
        log.warning("resuming in %s, the folder an older mlx named this run by", legacy)
        return legacy
    return out


def _partial(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def prepare_finetune(config: FinetuneConfig, world_size: int | None = None) -> FinetunePlan:
    """Check everything cheap (options, data, model config, run folder) and resolve the defaults."""
    config = config.check().with_method_defaults()
    world_size = world_size or dist_info().world_size
    dataset = load_text_dataset(
        config.dataset,
        (config.train_split, config.test_split),
        config.text_column,
        config.label_column,
        config.limit,
        config.seed,
    )
    train = dataset.splits[config.train_split]
    present = np.unique(train.labels)
    if len(present) < 2:
        raise DataError(
            f"split {config.train_split!r} of {dataset.name} has only one class ({dataset.label_names[present[0]]}); a classifier needs at least two"
        )
    fit_rows, val_rows = _training_rows(train.labels, config.train_size, config.seed)
    notes = _check_held_out(dataset, config, np.concatenate([fit_rows, val_rows]))
    shape = model_shape(config.model)
    source = resolve_model(config.model)
    hidden_size = _hidden_size(source)
    if config.method == "lora" and config.lora_rank > hidden_size:
        raise ConfigError(
            f"--lora-rank {config.lora_rank} is more than {config.model!r}'s hidden size {hidden_size}: a rank above a "
            f"layer's width adds parameters, not capacity; use --lora-rank {hidden_size} or less (e.g. 8)"
        )
    config = replace(
        config,
        lr=config.lr or default_lr(hidden_size, config.method),
        max_length=_max_length(config, shape.max_positions),
        pooling=resolve_pooling(config.pooling, config.model, shape),
    )
    device = resolve_device(config.device)
    dtype = preferred_dtype(config.dtype, device)
    n_batches = len(LengthGroupedBatches(_LenOnly(len(fit_rows)), config.batch_size, config.seed, 0))
    if world_size > n_batches:
        raise ConfigError(
            f"{world_size} processes but only {n_batches} training batch(es) per epoch; use --nproc {n_batches} or fewer, or a smaller --batch-size"
        )
    # The resolved dtype, not 'auto', is part of the run's identity: 'auto' may mean another dtype elsewhere.
    config = replace(config, dtype=dtype)
    identity = run_identity(config, world_size, dataset, source)
    out = Path(config.out).expanduser() if config.out else default_out(config, identity)
    partial = _partial(out)
    resume_step = _check_run_folder(config, identity, out, partial)
    from common.record import now

    return FinetunePlan(
        config,
        dataset,
        fit_rows,
        val_rows,
        source,
        shape.n_layers,
        str(device),
        world_size,
        n_batches,
        out,
        partial,
        resume_step,
        now(),
        identity,
        notes,
    )


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


def _training_rows(labels: np.ndarray, train_size: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) rows of the training split; with ``train_size`` both come from the stratified
    subset that ``probe --train-size`` trains on (common.splits.stratified_subsample, same seed), and the
    validation rows are the probe's (text.validation.validation_split, same seed)."""
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


class _LenOnly:
    """Stands in for an EncodedSplit when only the batch count is needed."""

    def __init__(self, n: int):
        self.n = n
        self.lengths = np.zeros(n, dtype=np.int64)

    def __len__(self) -> int:
        return self.n


def _hidden_size(source: str) -> int:
    from transformers import AutoConfig

    return int(getattr(AutoConfig.from_pretrained(source), "hidden_size", 768))


def _max_length(config: FinetuneConfig, model_limit: int) -> int:
    return resolve_max_length(config.max_length, model_limit, config.model)[0]


def _check_run_folder(config: FinetuneConfig, identity: Identity, out: Path, partial: Path) -> int | None:
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
            names={**{k: option_name(k) for k in identity.config}, **names},
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


# --- running ----------------------------------------------------------------------------------


def run_finetune(plan: FinetunePlan, progress: ProgressCallback = no_progress) -> FinetuneResult:
    """Train, keep the best checkpoint by validation accuracy, score it once on test, write the run folder."""
    import torch

    dist = init_distributed(torch.device(plan.device).type)
    device = (
        torch.device(f"cuda:{dist.local_rank}")
        if plan.device.startswith("cuda") and dist.enabled
        else torch.device(plan.device)
    )
    if not dist.is_main:
        return _run(plan, progress, dist, device)
    from common.locking import store_lock

    with store_lock(plan.out, "fine-tune run"):  # two runs into one folder: the second is refused at once
        # The folder was checked before the lock: another run may have finished or checkpointed since.
        if _check_run_folder(plan.config, plan.identity, plan.out, plan.partial) != plan.resume_step:
            raise StoreError(
                f"{plan.out} changed while this run was starting (another mlx finetune wrote to it); run the command again"
            )
        return _run(plan, progress, dist, device)


def check_not_busy(plan: FinetunePlan) -> None:
    """StoreError at once when another process is writing this run (the lock is taken and released)."""
    from common.locking import store_lock

    with store_lock(plan.out, "fine-tune run"):
        pass


def _run(plan: FinetunePlan, progress: ProgressCallback, dist: DistInfo, device) -> FinetuneResult:
    from finetune.methods import merge_adapter

    _start_folder(plan, dist)
    with cpu_threads(plan.config.threads):
        tokenizer, model, trainable = _load(plan)
        data = _encode(plan, tokenizer)
        checkpoints = CheckpointDir(plan.partial / "checkpoints", plan.config.keep_checkpoints)
        steps_done = [0]

        def on_step(task: str, completed: int, total: int, **info: float) -> None:
            steps_done[0] = completed
            progress("finetune", completed * plan.global_batch, total * plan.global_batch, **info)

        with measure(device) as training:
            head = _probe_head(plan, model, data, device, dist, progress)
            history = _fit(plan, model, data, device, dist, on_step, checkpoints)
        in_sync = _ranks_in_sync(model, dist)
        from training.predict import predict
        from training.weights import checkpoint_weights, load_trainable_state

        if history.best_step is not None:
            load_trainable_state(model, checkpoint_weights(checkpoints.load(history.best_step)))
        if trainable.adapter is not None and dist.is_main:  # LoRA: peft's adapter, for PeftModel.from_pretrained
            trainable.adapter.save_pretrained(plan.partial / ADAPTER_FOLDER)
        merge_adapter(trainable)  # test is scored on the merged weights: the model/ that users load
        with measure(device) as scoring:
            logits = predict(model, data["test"], device, autocast=_autocast(plan), dist=dist)
    predicted = np.empty(len(logits), dtype=np.int64)
    predicted[data["test_order"]] = logits.argmax(dim=1).numpy()
    result = _result(plan, trainable.n_params, history, predicted, data["test_split"])
    # The probe head is part of what training cost: its seconds count in the run's training time.
    seconds = result.train_seconds + (head.seconds if head is not None else 0.0)
    result = replace(
        result,
        ranks_in_sync=in_sync,
        head=head,
        train_seconds=seconds,
        peak_memory_bytes=training.peak_memory_bytes,
        predict_per_second=per_second(len(predicted), scoring.seconds),
    )
    if dist.is_main:
        _write_run(plan, result, model, tokenizer, predicted, data["test_split"])
    barrier()
    return result


def _fit(plan: FinetunePlan, model, data: dict, device, dist: DistInfo, on_step, checkpoints):
    """The one training loop (training.loop.fit) with fast dropout masks."""
    import torch

    from finetune.dropout import fast_dropout
    from training import loop

    with fast_dropout(model):
        return loop.fit(
            model,
            data["train"],
            data["validation"],
            functools.partial(torch.nn.functional.cross_entropy, label_smoothing=plan.config.label_smoothing),
            _train_config(plan),
            device,
            on_step if dist.is_main else no_progress,
            param_groups=_param_groups(model, plan),
            checkpoints=checkpoints,
            dist=dist,
        )


def _probe_head(plan: FinetunePlan, model, data: dict, device, dist: DistInfo, progress: ProgressCallback):
    """--head-init probe: fit the new head on the frozen features of the training rows (None: random head)."""
    if plan.config.head_init != "probe":
        return None
    from finetune.head import probe_head

    saved = plan.partial / "head_probe.json"
    if plan.resume_step is not None:  # the checkpoint holds the head; its fit is remembered for the record
        return _read_head_fit(saved) if saved.exists() else None

    train = data["train"].split
    batches, order = scoring_batches(train, EVAL_BATCH_SIZE, data["train"].pad_id)
    if dist.is_main:
        progress("head: linear probe", 0, len(order))
    head = probe_head(
        model, batches, train.labels[order], plan.n_classes, device, _autocast(plan), dist, plan.config.seed
    )
    if dist.is_main:
        progress("head: linear probe", len(order), len(order), train_acc=head.train_accuracy)
        write_json(saved, asdict(head))
    return head


def _read_head_fit(path: Path):
    from finetune.head import HeadFit

    schema = {"train_accuracy": (float, int), "seconds": (float, int), "n_rows": (int,)}
    saved = read_checked_json(path, schema, "delete it, or pass --force to start the run over")
    return HeadFit(**saved)


def _autocast(plan: FinetunePlan) -> str | None:
    return None if plan.dtype is DType.FP32 else plan.dtype.value


def _ranks_in_sync(model, dist: DistInfo) -> bool | None:
    """Under DDP: do all ranks hold bit-identical parameters after training? (None for one process)"""
    if not dist.enabled:
        return None
    import torch.distributed as tdist

    digest = hashlib.sha256()
    for param in model.parameters():
        digest.update(param.detach().cpu().numpy().tobytes())
    digests: list = [None] * dist.world_size
    tdist.all_gather_object(digests, digest.hexdigest())
    if len(set(digests)) > 1:
        log.warning("parameters differ between ranks after training: %s", digests)
    return len(set(digests)) == 1


def _train_config(plan: FinetunePlan):
    c = plan.config
    return TrainConfig(
        n_epochs=c.n_epochs,
        batch_size=c.batch_size,
        optimizer=OptimizerName.ADAMW,
        lr=c.lr,
        weight_decay=c.weight_decay,
        schedule=ScheduleName.LINEAR,
        warmup_fraction=c.warmup,
        max_grad_norm=c.max_grad_norm,
        seed=c.seed,
        grad_accum=c.grad_accum,
        autocast=_autocast(plan),
        eval_every=c.eval_every,
        checkpoint_every=c.checkpoint_every,
        patience=c.patience,
        fused=True,
        ema_decay=c.ema_decay or None,
    )


def _start_folder(plan: FinetunePlan, dist: DistInfo) -> None:
    """Rank 0 creates (or, with --force, recreates) the partial folder and its config.json."""
    if dist.is_main:
        if plan.config.force and plan.partial.exists():
            shutil.rmtree(plan.partial)
        try:
            plan.partial.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {plan.partial} ({exc.strerror}); choose another --out") from None
        CheckpointDir(plan.partial / "checkpoints").clean_partials()
        # A fresh start: this run's options replace any left by a run that never checkpointed.
        if plan.resume_step is None:
            (plan.partial / "head_probe.json").unlink(missing_ok=True)
            (plan.partial / "config.json").unlink(missing_ok=True)
        if not (plan.partial / "config.json").exists():
            options = run_options(plan.config, plan.world_size)
            write_json(
                plan.partial / "config.json",
                {
                    "command": "finetune",
                    "options": options,
                    "identity": plan.identity.to_dict() if plan.identity else None,
                    "config": to_plain(plan.config),
                    "mlx_version": __version__,
                },
            )
    barrier()


def _load(plan: FinetunePlan):
    """Tokenizer, the classifier that trains (with its pooling) and what the method trains in it; the new
    head and LoRA's adapters are initialised from the seed."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if not log.isEnabledFor(logging.INFO):
        hf_logging.set_verbosity_error()  # the load report lists the new head's weights as missing: expected here
    names = plan.dataset.label_names
    torch.manual_seed(plan.config.seed)
    try:
        tokenizer = AutoTokenizer.from_pretrained(plan.source)
        model = AutoModelForSequenceClassification.from_pretrained(
            plan.source,
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
            dtype=torch.float32,
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"could not load {plan.config.model!r} as a sequence classifier ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}); use --model minilm or a local model folder"
        ) from None
    from finetune.methods import apply_method
    from finetune.pooling import with_pooling

    trained = with_pooling(model, plan.config.pooling)
    return tokenizer, trained, apply_method(model, trained, plan.config)


def _encode(plan: FinetunePlan, tokenizer) -> dict:
    c = plan.config
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    train, test = plan.dataset.splits[c.train_split], plan.dataset.splits[c.test_split]
    encoded = encode_split(train.texts, train.labels, train.row_ids, tokenizer, c.max_length)
    test_encoded = encode_split(test.texts, test.labels, test.row_ids, tokenizer, c.max_length)
    val_batches, _ = scoring_batches(encoded.subset(plan.val_rows), EVAL_BATCH_SIZE, pad_id)
    test_batches, test_order = scoring_batches(test_encoded, EVAL_BATCH_SIZE, pad_id)
    return {
        "train": LengthGroupedBatches(encoded.subset(plan.fit_rows), c.batch_size, c.seed, pad_id),
        "validation": val_batches,
        "test": test_batches,
        "test_order": test_order,
        "test_split": test_encoded,
    }


def _param_groups(model, plan: FinetunePlan) -> list[dict]:
    """No weight decay on biases and LayerNorm; layer-wise lr decay: layer i of L gets decay^(L-i), embeddings decay^(L+1)."""
    decay, n_layers = plan.config.layer_lr_decay, plan.n_layers
    groups: dict[tuple[float, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim < 2 or "norm" in name.lower()
        depth = _layer_depth(name, n_layers)
        key = (0.0 if no_decay else plan.config.weight_decay, decay ** (n_layers + 1 - depth))
        groups.setdefault(key, []).append(param)
    return [{"params": params, "weight_decay": wd, "lr_scale": scale} for (wd, scale), params in groups.items()]


def _layer_depth(name: str, n_layers: int) -> int:
    """0 for embeddings, i + 1 for encoder layer i, n_layers + 1 for the pooler and classifier head."""
    if "embeddings" in name:
        return 0
    marker = ".layer."
    if marker in name:
        index = name.split(marker, 1)[1].split(".", 1)[0]
        if index.isdigit():
            return int(index) + 1
    return n_layers + 1


def _result(plan: FinetunePlan, trainable: int, history, predicted: np.ndarray, test) -> FinetuneResult:
    from common.metrics import macro_f1 as score_macro_f1

    accuracy = float((predicted == test.labels).mean())
    macro_f1 = score_macro_f1(test.labels, predicted)
    notes = []
    if history.stopped_early:
        notes.append(
            f"stopped early at step {history.n_steps}: {plan.config.patience} evaluation(s) without a better validation accuracy"
        )
    if plan.world_size > 1 and plan.n_batches % plan.world_size:
        notes.append(
            f"{plan.n_batches} batches per epoch do not split evenly over {plan.world_size} ranks; the first {plan.world_size - plan.n_batches % plan.world_size} repeat at each epoch end"
        )
    return FinetuneResult(
        plan.out,
        accuracy,
        macro_f1,
        history.best_accuracy,
        history.best_step,
        len(plan.fit_rows),
        len(plan.val_rows),
        len(test),
        trainable,
        history.seconds,
        history.samples_per_second,
        history,
        tuple(notes),
    )


def _write_run(plan: FinetunePlan, result: FinetuneResult, model, tokenizer, predicted: np.ndarray, test) -> None:
    """Everything into the partial folder, run.json (common/record.py) last, then rename it into place."""
    from common import record as run_record
    from finetune.plots import plot_learning_curve

    folder = plan.partial
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    plot_learning_curve(
        result.history, folder / "learning_curve.png", title=f"{plan.config.model} on {plan.dataset.name}"
    )
    record = _run_record(plan, result, predicted, test)
    run_record.write_record(
        folder, record, run_record.Predictions(test.row_ids, test.labels, {row_name(plan.config.method): predicted})
    )
    if plan.out.exists() and not plan.config.force:  # never replace a result without --force
        raise StoreError(
            f"{plan.out} appeared during this run; mlx never overwrites results: the new run stays in {folder}"
        )
    # --force on a finished run: replaced only now that the new one is whole, and only by a run of its kind
    if check_kind(plan.out, KIND):
        shutil.rmtree(plan.out)
    folder.rename(plan.out)
    shutil.rmtree(CheckpointDir(plan.out / "checkpoints").folder, ignore_errors=True)


def _run_record(plan: FinetunePlan, result: FinetuneResult, predicted: np.ndarray, test):
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from common import record as run_record
    from text.models import model_revision

    c, h = plan.config, result.history
    classes = list(range(plan.n_classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        test.labels, predicted, labels=classes, zero_division=0
    )
    train = plan.dataset.splits[c.train_split]
    details = {
        "best_step": result.best_step,
        "n_validation": result.n_validation,
        "samples_per_second": result.samples_per_second,
        "n_steps": h.n_steps,
        "stopped_early": h.stopped_early,
        "resumed_from_step": h.resumed_from_step,
        "world_size": plan.world_size,
        "global_batch": plan.global_batch,
        "ranks_in_sync": result.ranks_in_sync,
        "dtype": plan.dtype.value,
        "head_init": c.head_init,
        "pooling": c.pooling,
        "method": c.method,
        **(
            {"head_probe": {"train_accuracy": result.head.train_accuracy, "seconds": result.head.seconds}}
            if result.head is not None
            else {}
        ),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for name, p, r, f, n in zip(plan.dataset.label_names, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(test.labels, predicted, labels=classes).tolist(),
        "epochs": [to_plain(r) for r in h.epochs],
        "evals": [to_plain(r) for r in h.evals],
    }
    params = {
        "lr": c.lr,
        "n_epochs": c.n_epochs,
        "batch_size": c.batch_size,
        "grad_accum": c.grad_accum,
        "global_batch": plan.global_batch,
        "max_length": c.max_length,
        "warmup": c.warmup,
        "weight_decay": c.weight_decay,
        "layer_lr_decay": c.layer_lr_decay,
        "head_init": c.head_init,
        "pooling": c.pooling,
        "label_smoothing": c.label_smoothing,
        "ema_decay": c.ema_decay,
        "dtype": plan.dtype.value,
        "method": c.method,
        **{name: getattr(c, name) for name in LORA_DEFAULTS if c.method == "lora"},
    }
    row = run_record.ResultRow(
        name=row_name(c.method),
        method=row_name(c.method),
        setting=f"lr={c.lr:g} epochs={c.n_epochs}"
        + (f" r={c.lora_rank} alpha={c.lora_alpha:g}" if c.method == "lora" else ""),
        params=params,
        accuracy=result.accuracy,
        macro_f1=result.macro_f1,
        validation_accuracy=result.validation_accuracy if result.best_step is not None else None,
        n_train=result.n_train,
        n_test=result.n_test,
        trainable_params=result.trainable_params,
        train_seconds=result.train_seconds,
        details=to_plain(details),
        peak_memory_bytes=result.peak_memory_bytes,
        predict_per_second=result.predict_per_second,
    )
    splits = (
        run_record.SplitRef(
            "train", run_record.subset_fingerprint(train.fingerprint, plan.fit_rows), len(plan.fit_rows)
        ),
        run_record.SplitRef(
            "validation", run_record.subset_fingerprint(train.fingerprint, plan.val_rows), len(plan.val_rows)
        ),
        run_record.SplitRef("test", plan.dataset.splits[c.test_split].fingerprint, len(test)),
    )
    return run_record.RunRecord(
        kind="finetune",
        command="finetune",
        command_line=run_record.command_line(),
        started_at=plan.started_at,
        finished_at=run_record.now(),
        config=to_plain(plan.config),
        model=run_record.ModelRef(c.model, model_revision(plan.source)),
        data=run_record.DataRef(
            plan.dataset.name,
            plan.dataset.fingerprint,
            splits,
            plan.dataset.label_names,
            max_length=c.max_length,
            validation_fingerprint=validation_fingerprint(train.fingerprint, train.row_ids[plan.val_rows]),
        ),
        device=plan.device,
        device_name=device_name(plan.device),
        results=(row,),
        artifacts=(
            "model",
            *((ADAPTER_FOLDER,) if c.method == "lora" else ()),
            "learning_curve.png",
            run_record.PREDICTIONS_FILE,
        ),
        notes=plan.notes + result.notes,
    )
