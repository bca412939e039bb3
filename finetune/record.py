"""``mlx finetune``'s result and its run folder: the scores, ``run.json`` (common/record.py) with the
per-class figures, the predictions, the model and the learning curve."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from common import record as run_record
from common.artifacts import check_kind, to_plain
from common.cost import device_name
from common.errors import StoreError
from common.metrics import confusion_matrix, per_class_metrics
from common.metrics import macro_f1 as score_macro_f1
from finetune.config import LORA_DEFAULTS
from finetune.data import EncodedSplit
from finetune.head import HeadFit
from finetune.plan import KIND, FinetunePlan
from finetune.plots import plot_learning_curve
from text.models import model_revision
from text.validation import validation_fingerprint
from training.checkpoints import CheckpointDir
from training.history import TrainHistory

ADAPTER_FOLDER = "adapter"  # a LoRA run's adapter in peft's format (PeftModel.from_pretrained)


class Pretrained(Protocol):
    """A Hugging Face model or tokenizer: it saves itself into a folder."""

    def save_pretrained(self, folder: Path, /) -> Any: ...


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
    head: HeadFit | None = None  # when the head started as a linear probe (None: --head-init random)


def row_name(method: str) -> str:
    """The result row's name and method in run.json: ``finetune`` (every parameter, as before --method), ``lora``, ``bitfit``."""
    return "finetune" if method == "full" else method


def finetune_result(
    plan: FinetunePlan, trainable: int, history: TrainHistory, predicted: np.ndarray, test: EncodedSplit
) -> FinetuneResult:
    """Test accuracy and macro-F1 of ``predicted`` (N,) int64 class ids, with the history's validation figures."""
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
        out=plan.out,
        accuracy=accuracy,
        macro_f1=macro_f1,
        validation_accuracy=history.best_accuracy,
        best_step=history.best_step,
        n_train=len(plan.fit_rows),
        n_validation=len(plan.val_rows),
        n_test=len(test),
        trainable_params=trainable,
        train_seconds=history.seconds,
        samples_per_second=history.samples_per_second,
        history=history,
        notes=tuple(notes),
    )


def write_run(
    plan: FinetunePlan,
    result: FinetuneResult,
    model: Pretrained,
    tokenizer: Pretrained,
    predicted: np.ndarray,
    test: EncodedSplit,
) -> None:
    """Everything into the partial folder, run.json (common/record.py) last, then rename it into place."""
    folder = plan.partial
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    plot_learning_curve(
        result.history, folder / "learning_curve.png", title=f"{plan.config.model} on {plan.dataset.name}"
    )
    record = run_record_of(plan, result, predicted, test)
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


def run_record_of(
    plan: FinetunePlan, result: FinetuneResult, predicted: np.ndarray, test: EncodedSplit
) -> run_record.RunRecord:
    """The run's record: its config, model, data (train, validation and test fingerprints), one result row."""
    c = plan.config
    train = plan.dataset.splits[c.train_split]
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
        results=(_result_row(plan, result, predicted, test),),
        artifacts=(
            "model",
            *((ADAPTER_FOLDER,) if c.method == "lora" else ()),
            "learning_curve.png",
            run_record.PREDICTIONS_FILE,
        ),
        notes=plan.notes + result.notes,
    )


def _result_row(
    plan: FinetunePlan, result: FinetuneResult, predicted: np.ndarray, test: EncodedSplit
) -> run_record.ResultRow:
    c = plan.config
    return run_record.ResultRow(
        name=row_name(c.method),
        method=row_name(c.method),
        setting=f"lr={c.lr:g} epochs={c.n_epochs}"
        + (f" r={c.lora_rank} alpha={c.lora_alpha:g}" if c.method == "lora" else ""),
        params=_params(plan),
        accuracy=result.accuracy,
        macro_f1=result.macro_f1,
        validation_accuracy=result.validation_accuracy if result.best_step is not None else None,
        n_train=result.n_train,
        n_test=result.n_test,
        trainable_params=result.trainable_params,
        train_seconds=result.train_seconds,
        details=to_plain(_details(plan, result, predicted, test)),
        peak_memory_bytes=result.peak_memory_bytes,
        predict_per_second=result.predict_per_second,
    )


def _params(plan: FinetunePlan) -> dict[str, Any]:
    """The options a reader compares runs by (the result row's ``params``)."""
    c = plan.config
    return {
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


def _details(plan: FinetunePlan, result: FinetuneResult, predicted: np.ndarray, test: EncodedSplit) -> dict[str, Any]:
    """How training went (steps, ranks, the probe head, each epoch and evaluation) and the per-class scores."""
    c, h = plan.config, result.history
    confusion = confusion_matrix(test.labels, predicted, plan.n_classes)
    return {
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
            m.name: {"precision": m.precision, "recall": m.recall, "f1": m.f1, "support": m.support}
            for m in per_class_metrics(confusion, plan.dataset.label_names)
        },
        "confusion_matrix": confusion.tolist(),
        "epochs": [to_plain(r) for r in h.epochs],
        "evals": [to_plain(r) for r in h.evals],
    }
