"""What one ``fit`` call works with (``Run``) and where it stands between two steps (``LoopState``)."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from common.errors import ConfigError
from common.progress import ProgressCallback
from training.batches import Batches, Data
from training.config import TrainConfig
from training.distributed import DistInfo
from training.history import EpochRecord, EvalRecord
from training.weight_average import WeightAverage


class Checkpoints(Protocol):
    """Where ``fit`` keeps its resumable state (training/checkpoints.py's ``CheckpointDir``)."""

    def save(self, state: dict, step: int, best: bool) -> Any: ...

    def load_latest(self, check: Callable[[dict], list[str]] | None = None) -> dict | None: ...


class TrainingDiverged(ConfigError):
    """The loss became nan or inf; the last good checkpoint is kept."""


@dataclass
class LoopState:
    """Where training stands between two optimizer steps: everything a checkpoint must restore."""

    epoch: int = 1
    micro_in_epoch: int = 0  # this rank's micro-batches already consumed in ``epoch``
    step: int = 0  # optimizer steps taken
    epoch_loss: float = 0.0  # sum over examples (all ranks) of training loss in this epoch
    epoch_seen: int = 0
    since_eval_loss: float = 0.0
    since_eval_seen: int = 0
    epoch_seconds: float = 0.0
    best_accuracy: float = -1.0
    best_step: int | None = None
    evals_without_gain: int = 0
    last_val_accuracy: float = float("nan")
    stopped_early: bool = False
    elapsed_seconds: float = 0.0  # wall time of earlier sessions (a resumed run counts them)
    train_seconds: float = 0.0  # time in training steps alone, all sessions
    train_samples: int = 0
    records: list[EpochRecord] = field(default_factory=list)
    evals: list[EvalRecord] = field(default_factory=list)

    def count_step(self, n_micro_batches: int, loss_sum: float, n_seen: int) -> None:
        """One optimizer step taken over ``n_micro_batches`` of this rank: ``n_seen`` examples (all ranks)."""
        self.step += 1
        self.micro_in_epoch += n_micro_batches
        self.epoch_loss += loss_sum
        self.epoch_seen += n_seen
        self.since_eval_loss += loss_sum
        self.since_eval_seen += n_seen

    def start_next_epoch(self) -> None:
        self.epoch, self.micro_in_epoch, self.epoch_loss, self.epoch_seen, self.epoch_seconds = (
            self.epoch + 1,
            0,
            0.0,
            0,
            0.0,
        )


@dataclass
class Run:
    """What one ``fit`` call works with (bundled so that its steps stay short); built with keyword arguments."""

    model: nn.Module
    net: nn.Module  # ``model``, or its DistributedDataParallel wrapper
    train: Data
    val: Batches
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    config: TrainConfig
    device: torch.device
    dist: DistInfo
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    generator: torch.Generator  # draws the shuffling of tensor-pair training data
    checkpoints: Checkpoints | None
    batch_transform: Callable[[Any], Any] | None
    progress: ProgressCallback
    task: str
    steps_per_epoch: int
    ema: WeightAverage | None = None
    epoch_start_generator: torch.Tensor | None = None  # ``generator``'s state when this epoch's order was drawn
    started: float = 0.0  # perf_counter() when this session began training
    earlier_seconds: float = 0.0  # wall time of earlier sessions of a resumed run

    @property
    def total_steps(self) -> int:
        return self.config.n_epochs * self.steps_per_epoch


def kept_checkpoint(checkpoints: Checkpoints | None) -> str:
    """Which checkpoint survives a divergence, said in the error."""
    if checkpoints is None:
        return ""
    last = getattr(checkpoints, "last_step", lambda: None)()
    return (
        f"the last good checkpoint (step {last}) is kept; "
        if last is not None
        else "no checkpoint had been written yet; "
    )
