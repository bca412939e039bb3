"""How to optimise: the training loop's config and its closed sets of choices (no torch here)."""

import math
from dataclasses import dataclass
from enum import Enum

from common.errors import ConfigError


class OptimizerName(str, Enum):
    SGD = "sgd"
    ADAMW = "adamw"


class ScheduleName(str, Enum):
    CONSTANT = "constant"
    COSINE = "cosine"
    ONECYCLE = "onecycle"
    LINEAR = "linear"  # linear warmup over ``warmup_fraction`` of the steps, then linear decay to 0


AUTOCAST_CHOICES = ("bf16", "fp16")  # compute dtypes under autocast; None trains in fp32


@dataclass(frozen=True)
class TrainConfig:
    """How to optimise. ``weight_decay`` applies to weight matrices and kernels only, not biases or norms.

    ``batch_size`` is per micro-batch and per rank; the optimizer sees ``batch_size x world size x
    grad_accum`` examples per step.
    """

    n_epochs: int = 10
    batch_size: int = 128
    optimizer: OptimizerName = OptimizerName.SGD
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: ScheduleName = ScheduleName.COSINE
    warmup_fraction: float = 0.2  # onecycle and linear: share of steps spent rising to ``lr``
    max_grad_norm: float | None = None
    seed: int = 0
    grad_accum: int = 1
    autocast: str | None = None  # None (fp32), "bf16" or "fp16" (CUDA only, with a grad scaler)
    eval_every: int | None = None  # optimizer steps between validation passes; None: at epoch ends only
    checkpoint_every: int | None = None  # optimizer steps between checkpoints (epoch ends always, when checkpointing)
    patience: int | None = None  # stop after this many evaluations without a better validation accuracy
    fused: bool = False  # fused AdamW kernel (one pass over all parameters per step)
    ema_decay: float | None = None  # evaluate, keep and return an exponential moving average of the weights

    def check(self) -> "TrainConfig":
        """Refuse values no run can train with, in one line naming the value and a valid one; returns self."""
        if self.n_epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.n_epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        # ``not x > 0`` alone lets inf through, and ``x < 0`` lets nan through: both poison every weight.
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"learning rate must be a positive finite number, got {self.lr}; e.g. 0.05")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(
                f"weight decay / L2 must be a finite number >= 0, got {self.weight_decay}; e.g. 0 or 1e-4"
            )
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise ConfigError(f"momentum must lie in [0, 1), got {self.momentum}; e.g. 0.9")
        if self.seed < 0:
            raise ConfigError(
                f"seed must be a non-negative integer (NumPy's generators reject negative seeds), got {self.seed}; use --seed 0 or above"
            )
        if self.grad_accum < 1:
            raise ConfigError(f"gradient accumulation must be at least 1 micro-batch per step, got {self.grad_accum}")
        return self._check_options()

    def _check_options(self) -> "TrainConfig":
        """The optional parts: warmup, clipping, autocast, the weight average, evaluation and checkpoint steps."""
        if not (math.isfinite(self.warmup_fraction) and 0 <= self.warmup_fraction < 1):
            raise ConfigError(f"warmup must be a fraction of the steps in [0, 1), got {self.warmup_fraction}; e.g. 0.1")
        if self.max_grad_norm is not None and not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ConfigError(f"max grad norm must be a positive finite number, got {self.max_grad_norm}; e.g. 1.0")
        if self.autocast not in (None, *AUTOCAST_CHOICES):
            raise ConfigError(f"autocast must be one of bf16, fp16 or none, got {self.autocast!r}")
        if self.ema_decay is not None and not (math.isfinite(self.ema_decay) and 0 < self.ema_decay < 1):
            raise ConfigError(f"EMA decay must lie in (0, 1), got {self.ema_decay}; e.g. 0.99")
        for name in ("eval_every", "checkpoint_every", "patience"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be at least 1, got {value}")
        return self
