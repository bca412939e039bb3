"""``mlx finetune``'s run: load the model, train it with the one training loop (training/loop.py), score
the best checkpoint once on test and write the run folder (finetune/record.py).

A run trains in the plan's hidden partial folder (finetune/plan.py) and resumes there; the folder is
renamed to its final name only when training and scoring are done.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from common import __version__
from common.artifacts import to_plain
from common.cost import measure, per_second
from common.devices import DType
from common.errors import ModelLoadError, StoreError
from common.locking import store_lock
from common.progress import ProgressCallback, no_progress
from common.writes import write_json
from finetune.data import EncodedSplit, LengthGroupedBatches, encode_split, scoring_batches
from finetune.dropout import fast_dropout
from finetune.head import HeadFit, probe_head, read_head_fit
from finetune.methods import Trainable, apply_method, merge_adapter
from finetune.plan import FinetunePlan, check_run_folder, run_options
from finetune.pooling import MeanPooledClassifier, with_pooling
from finetune.record import ADAPTER_FOLDER, FinetuneResult, finetune_result, write_run
from training import loop
from training.checkpoints import CheckpointDir
from training.config import OptimizerName, ScheduleName, TrainConfig
from training.devices import cpu_threads
from training.distributed import DistInfo, all_gather, barrier, init_distributed
from training.history import TrainHistory
from training.predict import predict
from training.weights import checkpoint_weights, load_trainable_state

log = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 128
HEAD_FIT_FILE = "head_probe.json"  # the probe head's fit, kept in the partial folder for the record of a resumed run


@dataclass(frozen=True)
class EncodedData:
    """The run's tokenised splits as the loop reads them."""

    train: LengthGroupedBatches  # the fit rows, length-grouped per epoch
    validation: list  # scoring batches of the validation rows
    test: list  # scoring batches of the test split, in ``test_order``
    test_order: np.ndarray  # (N,) test rows in the order of ``test``
    test_split: EncodedSplit


@dataclass(frozen=True)
class _Job:
    """What this rank works with while it trains and scores (bundled so that the steps below stay short)."""

    plan: FinetunePlan
    model: PreTrainedModel | MeanPooledClassifier  # the classifier that trains, with its pooling
    trainable: Trainable  # what the method trains in it
    data: EncodedData
    device: torch.device
    dist: DistInfo
    checkpoints: CheckpointDir


def run_finetune(plan: FinetunePlan, progress: ProgressCallback = no_progress) -> FinetuneResult:
    """Train, keep the best checkpoint by validation accuracy, score it once on test, write the run folder."""
    dist = init_distributed(torch.device(plan.device).type)
    device = (
        torch.device(f"cuda:{dist.local_rank}")
        if plan.device.startswith("cuda") and dist.enabled
        else torch.device(plan.device)
    )
    if not dist.is_main:
        return _run(plan, progress, dist, device)
    with store_lock(plan.out, "fine-tune run"):  # two runs into one folder: the second is refused at once
        # The folder was checked before the lock: another run may have finished or checkpointed since.
        if check_run_folder(plan.config, plan.identity, plan.out, plan.partial) != plan.resume_step:
            raise StoreError(
                f"{plan.out} changed while this run was starting (another mlx finetune wrote to it); run the command again"
            )
        return _run(plan, progress, dist, device)


def check_not_busy(plan: FinetunePlan) -> None:
    """StoreError at once when another process is writing this run (the lock is taken and released)."""
    with store_lock(plan.out, "fine-tune run"):
        pass


def _run(plan: FinetunePlan, progress: ProgressCallback, dist: DistInfo, device: torch.device) -> FinetuneResult:
    _start_folder(plan, dist)
    with cpu_threads(plan.config.threads):
        tokenizer, model, trainable = _load(plan)
        job = _Job(
            plan=plan,
            model=model,
            trainable=trainable,
            data=_encode(plan, tokenizer),
            device=device,
            dist=dist,
            checkpoints=CheckpointDir(plan.partial / "checkpoints", plan.config.keep_checkpoints),
        )
        with measure(device) as training:
            head = _probe_head(job, progress)
            history = _fit(job, progress)
        in_sync = _ranks_in_sync(model, dist)
        _take_best(job, history.best_step)
        with measure(device) as scoring:
            logits = predict(model, job.data.test, device, autocast=_autocast(plan), dist=dist)
    predicted = np.empty(len(logits), dtype=np.int64)
    predicted[job.data.test_order] = logits.argmax(dim=1).numpy()
    result = finetune_result(plan, trainable.n_params, history, predicted, job.data.test_split)
    result = replace(
        result,
        ranks_in_sync=in_sync,
        head=head,
        # The probe head is part of what training cost: its seconds count in the run's training time.
        train_seconds=result.train_seconds + (head.seconds if head is not None else 0.0),
        peak_memory_bytes=training.peak_memory_bytes,
        predict_per_second=per_second(len(predicted), scoring.seconds),
    )
    if dist.is_main:
        write_run(plan, result, model, tokenizer, predicted, job.data.test_split)
    barrier()
    return result


def _take_best(job: _Job, best_step: int | None) -> None:
    """Put the best checkpoint's weights in the model; LoRA: save peft's adapter, then merge it into the weights."""
    if best_step is not None:
        load_trainable_state(job.model, checkpoint_weights(job.checkpoints.load(best_step)))
    adapter = job.trainable.adapter
    if adapter is not None and job.dist.is_main:  # LoRA: peft's adapter, for PeftModel.from_pretrained
        adapter.save_pretrained(str(job.plan.partial / ADAPTER_FOLDER))
    merge_adapter(job.trainable)  # test is scored on the merged weights: the model/ that users load


def _fit(job: _Job, progress: ProgressCallback) -> TrainHistory:
    """The one training loop (training.loop.fit) with fast dropout masks; progress counts training examples."""
    plan = job.plan

    def on_step(task: str, completed: int, total: int, **info: float) -> None:
        progress("finetune", completed * plan.global_batch, total * plan.global_batch, **info)

    with fast_dropout(job.model):
        return loop.fit(
            job.model,
            job.data.train,
            job.data.validation,
            functools.partial(torch.nn.functional.cross_entropy, label_smoothing=plan.config.label_smoothing),
            _train_config(plan),
            job.device,
            on_step if job.dist.is_main else no_progress,
            param_groups=_param_groups(job.model, plan),
            checkpoints=job.checkpoints,
            dist=job.dist,
        )


def _probe_head(job: _Job, progress: ProgressCallback) -> HeadFit | None:
    """--head-init probe: fit the new head on the frozen features of the training rows (None: random head)."""
    plan, dist = job.plan, job.dist
    if plan.config.head_init != "probe":
        return None
    saved = plan.partial / HEAD_FIT_FILE
    if plan.resume_step is not None:  # the checkpoint holds the head; its fit is remembered for the record
        return read_head_fit(saved) if saved.exists() else None

    train = job.data.train.split
    batches, order = scoring_batches(train, EVAL_BATCH_SIZE, job.data.train.pad_id)
    if dist.is_main:
        progress("head: linear probe", 0, len(order))
    head = probe_head(
        job.model,
        batches,
        labels=train.labels[order],
        n_classes=plan.n_classes,
        device=job.device,
        autocast=_autocast(plan),
        dist=dist,
        seed=plan.config.seed,
    )
    if dist.is_main:
        progress("head: linear probe", len(order), len(order), train_acc=head.train_accuracy)
        write_json(saved, asdict(head))
    return head


def _autocast(plan: FinetunePlan) -> str | None:
    return None if plan.dtype is DType.FP32 else plan.dtype.value


def _ranks_in_sync(model: nn.Module, dist: DistInfo) -> bool | None:
    """Under DDP: do all ranks hold bit-identical parameters after training? (None for one process)"""
    if not dist.enabled:
        return None
    digest = hashlib.sha256()
    for param in model.parameters():
        digest.update(param.detach().cpu().numpy().tobytes())
    digests = all_gather(digest.hexdigest(), dist)
    if len(set(digests)) > 1:
        log.warning("parameters differ between ranks after training: %s", digests)
    return len(set(digests)) == 1


def _train_config(plan: FinetunePlan) -> TrainConfig:
    c = plan.config
    return TrainConfig(
        n_epochs=c.n_epochs,
        batch_size=c.batch_size,
        optimizer=OptimizerName.ADAMW,
        lr=plan.lr,
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
            (plan.partial / HEAD_FIT_FILE).unlink(missing_ok=True)
            (plan.partial / "config.json").unlink(missing_ok=True)
        if not (plan.partial / "config.json").exists():
            _write_partial_config(plan)
    barrier()


def _write_partial_config(plan: FinetunePlan) -> None:
    """config.json of the partial folder: what a later run must match to resume here (finetune.plan.PARTIAL_SCHEMA)."""
    write_json(
        plan.partial / "config.json",
        {
            "command": "finetune",
            "options": run_options(plan.config, plan.world_size),
            "identity": plan.identity.to_dict(),
            "config": to_plain(plan.config),
            "mlx_version": __version__,
        },
    )


def _load(plan: FinetunePlan) -> tuple[PreTrainedTokenizerBase, PreTrainedModel | MeanPooledClassifier, Trainable]:
    """Tokenizer, the classifier that trains (with its pooling) and what the method trains in it; the new
    head and LoRA's adapters are initialised from the seed."""
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
    trained = with_pooling(model, plan.config.pooling)
    return tokenizer, trained, apply_method(model, trained, plan.config)


def _encode(plan: FinetunePlan, tokenizer: PreTrainedTokenizerBase) -> EncodedData:
    c = plan.config
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    train, test = plan.dataset.splits[c.train_split], plan.dataset.splits[c.test_split]
    encoded = encode_split(train.texts, train.labels, train.row_ids, tokenizer, plan.max_length)
    test_encoded = encode_split(test.texts, test.labels, test.row_ids, tokenizer, plan.max_length)
    val_batches, _ = scoring_batches(encoded.subset(plan.val_rows), EVAL_BATCH_SIZE, pad_id)
    test_batches, test_order = scoring_batches(test_encoded, EVAL_BATCH_SIZE, pad_id)
    return EncodedData(
        train=LengthGroupedBatches(encoded.subset(plan.fit_rows), c.batch_size, c.seed, pad_id),
        validation=val_batches,
        test=test_batches,
        test_order=test_order,
        test_split=test_encoded,
    )


def _param_groups(model: nn.Module, plan: FinetunePlan) -> list[dict]:
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
