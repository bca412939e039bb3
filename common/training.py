"""The one training loop for every PyTorch model in mlx (torch MLPs, CNNs, fine-tuned BERT).

``fit`` takes a model, train and validation data, a loss, an optimisation config, a device and an
optional batch transform (augmentation applied to training inputs only). Data is either a pair of
tensors ``(inputs, targets)`` (kept on the device and shuffled there: no DataLoader overhead for
small image sets) or any iterable of ``(inputs, targets)`` batches such as a DataLoader; inputs
may be a tensor or a dict of tensors (passed to the model as keyword arguments).
"""

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import torch
from torch import nn

from common.devices import resolve_device  # noqa: F401  (re-exported: the one resolver lives in common.devices)
from common.errors import ConfigError
from common.progress import ProgressCallback, no_progress

log = logging.getLogger(__name__)

TensorPair = tuple[torch.Tensor, torch.Tensor]
Data = TensorPair | Iterable


class OptimizerName(str, Enum):
    sgd = "sgd"
    adamw = "adamw"


class ScheduleName(str, Enum):
    constant = "constant"
    cosine = "cosine"
    onecycle = "onecycle"


@dataclass(frozen=True)
class TrainConfig:
    """How to optimise. ``weight_decay`` applies to weight matrices and kernels only, not biases or norms."""

    n_epochs: int = 10
    batch_size: int = 128
    optimizer: OptimizerName = OptimizerName.sgd
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: ScheduleName = ScheduleName.cosine
    warmup_fraction: float = 0.2  # onecycle only: share of steps spent rising to ``lr``
    max_grad_norm: float | None = None
    seed: int = 0

    def check(self) -> "TrainConfig":
        if self.n_epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.n_epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        # ``not x > 0`` alone lets inf through, and ``x < 0`` lets nan through: both poison every weight.
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"learning rate must be a positive finite number, got {self.lr}; e.g. 0.05")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight decay / L2 must be a finite number >= 0, got {self.weight_decay}; e.g. 0 or 1e-4")
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise ConfigError(f"momentum must lie in [0, 1), got {self.momentum}; e.g. 0.9")
        if self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer (NumPy's generators reject negative seeds), got {self.seed}; use --seed 0 or above")
        return self


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclass(frozen=True)
class TrainHistory:
    epochs: tuple[EpochRecord, ...]
    seconds: float  # wall time of training, evaluation of the validation split included

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(1, len(self.epochs))


@contextmanager
def cpu_threads(n_threads: int | None) -> Iterator[int]:
    """Run the block with ``n_threads`` for torch and the BLAS under NumPy (None: leave both as they are).

    On a CPU shared with other jobs, fewer threads than cores is often faster: a thread pool whose
    threads wait for each other stalls whenever one of them is descheduled.
    """
    if n_threads is None:
        yield torch.get_num_threads()
        return
    if n_threads < 1:
        raise ConfigError(f"threads must be at least 1, got {n_threads}")
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        with threadpool_limits(n_threads):
            yield n_threads
    finally:
        torch.set_num_threads(previous)


def _to_device(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, Mapping):
        return {key: value.to(device) for key, value in inputs.items()}
    return inputs.to(device)


def _forward(model: nn.Module, inputs: Any) -> torch.Tensor:
    return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)


def _batches(data: Data, batch_size: int, generator: torch.Generator | None) -> Iterable:
    """Yield (inputs, targets) batches; shuffled when a generator is given and data is a tensor pair."""
    if not isinstance(data, tuple):
        yield from data
        return
    inputs, targets = data
    n = len(targets)
    order = torch.randperm(n, generator=generator).to(targets.device) if generator is not None else torch.arange(n, device=targets.device)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield inputs[index], targets[index]


def _n_batches(data: Data, batch_size: int) -> int:
    return math.ceil(len(data[1]) / batch_size) if isinstance(data, tuple) else len(data)  # type: ignore[arg-type]


def make_optimizer(model: nn.Module, config: TrainConfig, steps_per_epoch: int):
    """Optimizer and per-step LR scheduler; decay only on tensors with 2+ dims (weights, kernels)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == OptimizerName.sgd:
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr)
    total_steps = config.n_epochs * steps_per_epoch
    if config.schedule == ScheduleName.onecycle:
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=config.warmup_fraction)
    elif config.schedule == ScheduleName.cosine:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return optimizer, scheduler


@torch.no_grad()
def predict(model: nn.Module, data: Data, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """Model outputs for every example of ``data`` in order, as one (N, C) CPU tensor."""
    model.eval()
    outputs = [_forward(model, _to_device(inputs, device)).float().cpu() for inputs, _ in _batches(data, batch_size, None)]
    return torch.cat(outputs)


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, loss_fn: Callable, device: torch.device, batch_size: int = 1024) -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` on ``data``."""
    model.eval()
    total_loss, n_correct, n_seen = 0.0, 0, 0
    for inputs, targets in _batches(data, batch_size, None):
        outputs = _forward(model, _to_device(inputs, device))
        targets = targets.to(device)
        total_loss += float(loss_fn(outputs, targets)) * len(targets)
        n_correct += int((outputs.argmax(dim=1) == targets).sum())
        n_seen += len(targets)
    return total_loss / max(1, n_seen), n_correct / max(1, n_seen)


def train_one_epoch(model, data, loss_fn, optimizer, scheduler, config, device, generator, batch_transform, on_step) -> float:
    """One pass over ``data``; returns the mean training loss."""
    model.train()
    total_loss, n_seen = 0.0, 0
    for step, (inputs, targets) in enumerate(_batches(data, config.batch_size, generator)):
        inputs, targets = _to_device(inputs, device), targets.to(device)
        if batch_transform is not None:
            inputs = batch_transform(inputs)
        loss = loss_fn(_forward(model, inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        total_loss += float(loss.detach()) * len(targets)
        n_seen += len(targets)
        on_step(step, total_loss / n_seen)
    return total_loss / max(1, n_seen)


def fit(
    model: nn.Module,
    train: Data,
    val: Data,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    config: TrainConfig,
    device: torch.device,
    progress: ProgressCallback = no_progress,
    batch_transform: Callable[[Any], Any] | None = None,
    task: str = "train",
) -> TrainHistory:
    """Train ``model`` in place for ``config.n_epochs`` epochs; evaluate on ``val`` after each.

    Progress reports one unit per batch with epoch, loss and the latest validation accuracy.
    """
    config.check()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device)
    steps = _n_batches(train, config.batch_size)
    optimizer, scheduler = make_optimizer(model, config, steps)
    records: list[EpochRecord] = []
    started = time.perf_counter()
    val_accuracy = float("nan")
    for epoch in range(1, config.n_epochs + 1):
        epoch_start = time.perf_counter()

        def on_step(step: int, loss: float) -> None:
            progress(task, (epoch - 1) * steps + step + 1, config.n_epochs * steps, epoch=epoch, loss=loss, val_acc=val_accuracy)

        train_loss = train_one_epoch(model, train, loss_fn, optimizer, scheduler, config, device, generator, batch_transform, on_step)
        if not np.isfinite(train_loss):
            raise ConfigError(f"training diverged at epoch {epoch} (loss {train_loss}); lower the learning rate")
        val_loss, val_accuracy = evaluate(model, val, loss_fn, device)
        records.append(EpochRecord(epoch, train_loss, val_loss, val_accuracy, time.perf_counter() - epoch_start))
        progress(task, epoch * steps, config.n_epochs * steps, epoch=epoch, loss=train_loss, val_acc=val_accuracy)
        log.info("epoch %d: train loss %.4f, val loss %.4f, val accuracy %.4f", epoch, train_loss, val_loss, val_accuracy)
    return TrainHistory(tuple(records), time.perf_counter() - started)
