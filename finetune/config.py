"""The options of one fine-tuning run, parsed once by the CLI (no torch import here)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from common.devices import Device, DType
from common.errors import ConfigError
from common.options import CPUS, EPOCHS, RANKS, SEEDS
from text.defaults import DEFAULT_MODEL

if TYPE_CHECKING:
    from text.models import ModelShape


# Options that do not change what a run computes: a resumed run may differ in these.
RUNTIME_OPTIONS = ("out", "force", "device", "keep_checkpoints", "threads")
# How dropout masks are drawn (finetune/dropout.py). Part of a run's identity: a run interrupted under
# torch's own masks (mlx before this) must not resume under these and claim a bit-identical result.
DROPOUT_MASKS = "pcg64"

# Which parameters train (finetune/methods.py): every one, low-rank adapters (LoRA through peft), or
# the biases and LayerNorms (BitFit). The classification head trains under every method.
METHODS = ("full", "lora", "bitfit")
# --lora-targets: every linear layer of the encoder's blocks, or the attention's query/key/value/output.
LORA_TARGETS = ("all", "attention")


class LoraOptions(TypedDict):
    lora_rank: int
    lora_alpha: float
    lora_dropout: float
    lora_targets: str


LORA_DEFAULTS: LoraOptions = {"lora_rank": 8, "lora_alpha": 16.0, "lora_dropout": 0.0, "lora_targets": "all"}

# Which token vectors the classifier head reads (finetune/pooling.py). auto: the encoder's own pooling.
POOLINGS = ("auto", "cls", "mean")
# Heads of one dropout and one linear layer over a pooled vector (BertForSequenceClassification): the
# ones that can be given the mean of the token vectors unchanged.
MEAN_POOLING_MODEL_TYPES = ("bert",)


@dataclass(frozen=True)
class FinetuneConfig:
    model: str = DEFAULT_MODEL
    dataset: str = "demo"
    splits: tuple[str, ...] = ()  # (train split, test split); () means ("train", "test")
    text_column: str = "text"
    label_column: str = "label"
    limit: int | None = None
    train_size: int | None = (
        None  # a stratified, seeded subset of the training split (the rows `probe --train-size` uses)
    )
    n_epochs: int = 3
    lr: float | None = None  # None: by model size (default_lr)
    batch_size: int = 32
    grad_accum: int = 1
    max_length: int | None = None  # None: text.limits.DEFAULT_MAX_LENGTH, capped to the model's limit
    warmup: float = 0.1
    weight_decay: float = 0.01
    layer_lr_decay: float = 1.0
    head_init: str = "probe"  # "probe": the new head starts as a linear probe (finetune/head.py); "random"
    pooling: str = "auto"  # the head reads "cls" (transformers' pooler) or "mean"; auto: resolve_pooling
    max_grad_norm: float = 1.0
    label_smoothing: float = 0.0  # of the cross-entropy, training and validation loss alike
    ema_decay: float = 0.99  # an exponential moving average of the weights is evaluated and kept (0 = off)
    method: str = "full"  # which parameters train: METHODS
    # LoRA's options; None: LORA_DEFAULTS under --method lora (resolved by prepare_finetune), unset otherwise.
    lora_rank: int | None = None
    lora_alpha: float | None = None
    lora_dropout: float | None = None
    lora_targets: str | None = None
    dtype: DType = DType.AUTO
    device: Device = Device.AUTO
    seed: int = 0
    eval_every: int | None = None  # optimizer steps; None: each epoch end
    patience: int | None = None
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    threads: int | None = None
    out: Path | None = None
    force: bool = False

    @property
    def train_split(self) -> str:
        return (self.splits or ("train", "test"))[0]

    @property
    def test_split(self) -> str:
        return (self.splits or ("train", "test"))[1]

    def check(self) -> FinetuneConfig:
        """Cheap checks of option values alone (data and model checks come in prepare_finetune)."""
        if self.splits and len(self.splits) != 2:
            raise ConfigError(
                f"--split takes the training split then the test split (two values), got {len(self.splits)}: {', '.join(self.splits)}"
            )
        EPOCHS.check(self.n_epochs, "--epochs")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(
                f"--lr must be a positive finite number, got {self.lr}; e.g. 1e-4 for MiniLM, 3e-5 for bert-base"
            )
        self._check_steps()
        self._check_rates()
        SEEDS.check(self.seed, "--seed")
        CPUS.check(self.threads, "--threads")
        if self.head_init not in ("probe", "random"):
            raise ConfigError(f"--head-init must be probe or random, got {self.head_init!r}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"--pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        self._check_method()
        self._check_sizes()
        return self

    def _check_steps(self) -> None:
        """Batch, accumulation, checkpoint and token counts."""
        for name, value in (
            ("--batch-size", self.batch_size),
            ("--grad-accum", self.grad_accum),
            ("--keep-checkpoints", self.keep_checkpoints),
            ("--checkpoint-every", self.checkpoint_every),
        ):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if self.max_length is not None and self.max_length < 2:
            raise ConfigError(f"--max-length must be at least 2 (room for [CLS] and [SEP]), got {self.max_length}")

    def _check_rates(self) -> None:
        """Fractions and rates: warmup, weight decay, layer decay, clipping, smoothing, weight average."""
        if not (math.isfinite(self.warmup) and 0 <= self.warmup < 1):
            raise ConfigError(f"--warmup is a fraction of the training steps in [0, 1), got {self.warmup}; e.g. 0.1")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"--weight-decay must be a finite number >= 0, got {self.weight_decay}; e.g. 0.01")
        if not (math.isfinite(self.layer_lr_decay) and 0 < self.layer_lr_decay <= 1):
            raise ConfigError(f"--layer-lr-decay must lie in (0, 1] (1 = off), got {self.layer_lr_decay}; e.g. 0.9")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ConfigError(f"--max-grad-norm must be a positive finite number, got {self.max_grad_norm}; e.g. 1.0")
        if not (math.isfinite(self.label_smoothing) and 0 <= self.label_smoothing < 1):
            raise ConfigError(f"--label-smoothing must lie in [0, 1) (0 = off), got {self.label_smoothing}; e.g. 0.1")
        if not (math.isfinite(self.ema_decay) and 0 <= self.ema_decay < 1):
            raise ConfigError(f"--ema-decay must lie in [0, 1) (0 = off), got {self.ema_decay}; e.g. 0.99")

    def _check_sizes(self) -> None:
        """Row counts and the step counts that may be left unset."""
        if self.train_size is not None and self.train_size < 1:
            raise ConfigError(f"--train-size must be at least 1, got {self.train_size}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}")
        at_least_one: tuple[tuple[str, int | None], ...] = (
            ("--eval-every", self.eval_every),
            ("--patience", self.patience),
            ("--threads", self.threads),
        )
        for name, count in at_least_one:
            if count is not None and count < 1:
                raise ConfigError(f"{name} must be at least 1, got {count}")

    def _check_method(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        given = [option_name(name) for name in LORA_DEFAULTS if getattr(self, name) is not None]
        if self.method != "lora" and given:
            raise ConfigError(
                f"{', '.join(given)} only {'applies' if len(given) == 1 else 'apply'} to --method lora (this run trains with --method {self.method}); "
                "drop them or pass --method lora"
            )
        RANKS.check(self.lora_rank, "--lora-rank")
        if self.lora_alpha is not None and not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            raise ConfigError(f"--lora-alpha must be a positive finite number, got {self.lora_alpha}; e.g. 16")
        if self.lora_dropout is not None and not (math.isfinite(self.lora_dropout) and 0 <= self.lora_dropout < 1):
            raise ConfigError(f"--lora-dropout must lie in [0, 1), got {self.lora_dropout}; e.g. 0.1")
        if self.lora_targets is not None and self.lora_targets not in LORA_TARGETS:
            raise ConfigError(f"--lora-targets must be one of {', '.join(LORA_TARGETS)}, got {self.lora_targets!r}")

    def with_method_defaults(self) -> FinetuneConfig:
        """LoRA's unset options filled with LORA_DEFAULTS (a run's identity holds the values it trained with)."""
        if self.method != "lora":
            return self
        unset = LORA_DEFAULTS
        return replace(
            self,
            lora_rank=unset["lora_rank"] if self.lora_rank is None else self.lora_rank,
            lora_alpha=unset["lora_alpha"] if self.lora_alpha is None else self.lora_alpha,
            lora_dropout=unset["lora_dropout"] if self.lora_dropout is None else self.lora_dropout,
            lora_targets=unset["lora_targets"] if self.lora_targets is None else self.lora_targets,
        )


def resolve_pooling(pooling: str, model: str, shape: ModelShape) -> str:
    """'cls' or 'mean'. auto: mean where the encoder was trained for mean pooling (a sentence-transformers
    model, as its 1_Pooling/config.json says, or a classifier mlx fine-tuned with mean pooling, as its
    config.json says) and has a BERT-style head; for a model whose own head pools by its config's
    classifier_pooling (ModernBERT, EuroBERT), that value; else transformers' [CLS] head."""
    from text.models import sentence_pooling

    model_type = shape.model_type
    # ModernBERT and EuroBERT heads pool by their config's classifier_pooling themselves (finetune.pooling).
    native = model_type not in MEAN_POOLING_MODEL_TYPES and shape.classifier_pooling in ("cls", "mean")
    if pooling == "auto":  # a classifier mlx fine-tuned before keeps the pooling its head was trained on
        if native:
            return shape.classifier_pooling or "cls"  # native: "cls" or "mean", never None
        own = shape.classifier_pooling or sentence_pooling(model)
        return "mean" if model_type in MEAN_POOLING_MODEL_TYPES and own == "mean" else "cls"
    if pooling == "mean" and model_type not in MEAN_POOLING_MODEL_TYPES and not native:
        raise ConfigError(
            f"--pooling mean needs a BERT-style classifier head (model type {', '.join(MEAN_POOLING_MODEL_TYPES)}); "
            f"{model} is {model_type or 'of an unknown type'}: use --pooling cls"
        )
    return pooling


# LoRA and BitFit move few parameters from a pretrained start and take larger steps than full
# fine-tuning: the LoRA paper trained RoBERTa-base at 4e-4..5e-4 (Hu et al., 2021, table 9) where full
# fine-tuning uses 1e-5..3e-5; BitFit searched 1e-4..1e-3 (Ben Zaken et al., 2022). What they give on
# AG News: docs/finetune.md, "Methods".
METHOD_LR_SCALE = {"full": 1.0, "lora": 5.0, "bitfit": 10.0}


def default_lr(hidden_size: int, method: str = "full") -> float:
    """A learning rate that works for a model of this width (smaller models take larger steps) and method."""
    if hidden_size <= 384:
        lr = 1e-4  # MiniLM-L6 / L12, tiny BERTs
    elif hidden_size <= 768:
        lr = 5e-5  # bert-base, roberta-base
    else:
        lr = 2e-5  # large models
    return lr * METHOD_LR_SCALE[method]


def option_name(field_name: str) -> str:
    return {"n_epochs": "--epochs", "splits": "--split"}.get(field_name, "--" + field_name.replace("_", "-"))
