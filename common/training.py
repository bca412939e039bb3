"""The one training loop for every PyTorch model in mlx (torch MLPs, CNNs, fine-tuned BERT).

``fit`` takes a model, train and validation data, a loss, an optimisation config, a device and an
optional batch transform (augmentation applied to training inputs only). Training data is either a
pair of tensors ``(inputs, targets)`` (kept on the device and shuffled there: no DataLoader overhead
for small image sets), an ``EpochBatches`` source (a fixed batch list per epoch, e.g. length-grouped
text batches: what exact resume and DDP sharding need), or any iterable of ``(inputs, targets)``
batches such as a DataLoader. Inputs may be a tensor or a dict of tensors (passed to the model as
keyword arguments); a model may return a tensor or a Hugging Face output with ``.logits``.

Beyond the plain loop (the vision default, unchanged), a config can ask for autocast (bf16, or
fp16 with a grad scaler on CUDA), gradient accumulation, evaluation every N optimizer steps, early
stopping, and checkpoints every N steps and at epoch ends from which a run resumes exactly (model,
optimizer, scheduler, scaler, every RNG state and the position in the epoch). Under torchrun
(``dist`` with world size > 1) the model is wrapped in DistributedDataParallel and each rank takes
every world-size-th micro-batch of the shared per-epoch batch list.
"""

import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from functools import partial
from itertools import islice
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from common.artifacts import to_plain
from common.devices import resolve_device  # noqa: F401  (re-exported: the one resolver lives in common.devices)
from common.distributed import DistInfo
from common.errors import ConfigError, StoreError
from common.options import CPUS
from common.progress import ProgressCallback, no_progress
from common.schema import check_fields

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
    linear = "linear"  # linear warmup over ``warmup_fraction`` of the steps, then linear decay to 0


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class TrainConfig:
    """How to optimise. ``weight_decay`` applies to weight matrices and kernels only, not biases or norms.

    ``batch_size`` is per micro-batch and per rank; the optimizer sees ``batch_size x world size x
    grad_accum`` examples per step.
    """

    n_epochs: int = 10
    batch_size: int = 128
    optimizer: OptimizerName = OptimizerName.sgd
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: ScheduleName = ScheduleName.cosine
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
        if not (math.isfinite(self.warmup_fraction) and 0 <= self.warmup_fraction < 1):
            raise ConfigError(f"warmup must be a fraction of the steps in [0, 1), got {self.warmup_fraction}; e.g. 0.1")
        if self.max_grad_norm is not None and not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ConfigError(f"max grad norm must be a positive finite number, got {self.max_grad_norm}; e.g. 1.0")
        if self.autocast not in (None, *AUTOCAST_DTYPES):
            raise ConfigError(f"autocast must be one of bf16, fp16 or none, got {self.autocast!r}")
        if self.ema_decay is not None and not (math.isfinite(self.ema_decay) and 0 < self.ema_decay < 1):
            raise ConfigError(f"EMA decay must lie in (0, 1), got {self.ema_decay}; e.g. 0.99")
        for name in ("eval_every", "checkpoint_every", "patience"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be at least 1, got {value}")
        return self


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclass(frozen=True)
class EvalRecord:
    """One validation pass: after ``step`` optimizer steps, in ``epoch``."""

    step: int
    epoch: int
    train_loss: float  # mean training loss since the previous evaluation
    val_loss: float
    val_accuracy: float


@dataclass(frozen=True)
class TrainHistory:
    epochs: tuple[EpochRecord, ...]
    seconds: float  # wall time of training, evaluation of the validation split included
    evals: tuple[EvalRecord, ...] = ()
    best_step: int | None = None  # the step of the best validation accuracy (its checkpoint is kept)
    best_accuracy: float = float("nan")
    n_steps: int = 0
    train_samples: int = 0  # examples seen in training, all ranks (earlier sessions of a resumed run included)
    train_seconds: float = 0.0  # wall time of the training steps alone (no evaluation, no checkpoints)
    stopped_early: bool = False
    resumed_from_step: int | None = None

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(1, len(self.epochs))

    @property
    def samples_per_second(self) -> float:
        return self.train_samples / self.train_seconds if self.train_seconds else float("nan")


@runtime_checkable
class EpochBatches(Protocol):
    """A training set that hands out the same batch list for the same epoch (resumable, shardable)."""

    def __len__(self) -> int:
        """Batches per epoch."""

    def epoch_batches(self, epoch: int) -> Sequence:
        """The (inputs, targets) batches of ``epoch`` (1-based), in training order."""


class Checkpoints(Protocol):
    """Where ``fit`` keeps its resumable state (see common/checkpoints.py)."""

    def save(self, state: dict, step: int, best: bool) -> None: ...

    def load_latest(self, check: Callable[[dict], list[str]] | None = None) -> dict | None: ...


class TrainingDiverged(ConfigError):
    """The loss became nan or inf; the last good checkpoint is kept."""


@contextmanager
def cpu_threads(n_threads: int | None) -> Iterator[int]:
    """Run the block with ``n_threads`` for torch and the BLAS under NumPy (None: leave both as they are).

    On a CPU shared with other jobs, fewer threads than cores is often faster: a thread pool whose
    threads wait for each other stalls whenever one of them is descheduled.
    """
    if n_threads is None:
        yield torch.get_num_threads()
        return
    CPUS.check(n_threads, "threads")
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
    outputs = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
    return getattr(outputs, "logits", outputs)  # Hugging Face models return an output object


def _autocast(device: torch.device, autocast: str | None):
    if autocast is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[autocast])


def _batches(data: Data, batch_size: int, generator: torch.Generator | None) -> Iterable:
    """Yield (inputs, targets) batches; shuffled when a generator is given and data is a tensor pair."""
    if not isinstance(data, tuple):
        yield from data
        return
    inputs, targets = data
    n = len(targets)
    order = (
        torch.randperm(n, generator=generator).to(targets.device)
        if generator is not None
        else torch.arange(n, device=targets.device)
    )
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield inputs[index], targets[index]


def _n_batches(data: Data, batch_size: int) -> int:
    return math.ceil(len(data[1]) / batch_size) if isinstance(data, tuple) else len(data)  # type: ignore[arg-type]


def padded_batch_count(n_batches: int, world_size: int) -> int:
    """Batches per epoch once padded to a multiple of the world size (every rank steps equally often)."""
    return math.ceil(n_batches / world_size) * world_size


def steps_per_epoch(n_batches: int, config: TrainConfig, world_size: int = 1) -> int:
    """Optimizer steps per epoch: micro-batches per rank, grouped by ``grad_accum`` (last group may be short)."""
    return math.ceil(padded_batch_count(n_batches, world_size) / world_size / config.grad_accum)


def make_optimizer(model: nn.Module, config: TrainConfig, steps_per_epoch: int, param_groups: list[dict] | None = None):
    """Optimizer and per-step LR scheduler; decay only on tensors with 2+ dims (weights, kernels).

    ``param_groups`` (optional) replaces the default two groups; a group's ``lr_scale`` multiplies
    ``config.lr`` (layer-wise learning-rate decay).
    """
    if param_groups is None:
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
        groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    else:
        groups = [
            {
                "params": g["params"],
                "weight_decay": g.get("weight_decay", 0.0),
                "lr": config.lr * g.get("lr_scale", 1.0),
            }
            for g in param_groups
        ]
    if config.optimizer == OptimizerName.sgd:
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr, **({"fused": True} if config.fused else {}))
    total_steps = config.n_epochs * steps_per_epoch
    if config.schedule == ScheduleName.onecycle:
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=config.warmup_fraction
        )
    elif config.schedule == ScheduleName.cosine:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    elif config.schedule == ScheduleName.linear:
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _linear_schedule(total_steps, round(config.warmup_fraction * total_steps))
        )
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return optimizer, scheduler


def _linear_schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def _shard(batches: Sequence, dist: DistInfo) -> Sequence:
    return batches[dist.rank :: dist.world_size] if dist.enabled else batches


def _all_reduce_sum(values: list[float], dist: DistInfo) -> list[float]:
    if not dist.enabled:
        return values
    import torch.distributed as tdist

    tensor = torch.tensor(values, dtype=torch.float64)
    tdist.all_reduce(tensor)
    return tensor.tolist()


@torch.no_grad()
def predict(
    model: nn.Module,
    data: Data,
    device: torch.device,
    batch_size: int = 1024,
    autocast: str | None = None,
    dist: DistInfo | None = None,
    features_of: nn.Module | None = None,
) -> torch.Tensor:
    """Model outputs for every example of ``data`` in order, as one (N, C) float32 CPU tensor; with
    ``features_of``, the input that submodule receives instead (N, D): e.g. the features a head reads.

    Under DDP each rank predicts every world-size-th batch and the outputs are gathered, in order,
    on every rank (no example is counted twice).
    """
    model.eval()
    dist = dist or DistInfo()
    batches = list(_batches(data, batch_size, None)) if dist.enabled else _batches(data, batch_size, None)
    outputs, captured = [], []
    hook = None if features_of is None else features_of.register_forward_pre_hook(lambda _, a: captured.append(a[0]))
    try:
        for inputs, _ in _shard(batches, dist):
            captured.clear()
            with _autocast(device, autocast):
                output = _forward(model, _to_device(inputs, device))
            if hook is not None and len(captured) != 1:
                raise ConfigError(
                    f"{type(features_of).__name__} ran {len(captured)} times in one forward pass (expected once): "
                    "its input is not one feature per example"
                )
            outputs.append((output if hook is None else captured[0]).float().cpu())
    finally:
        if hook is not None:
            hook.remove()
    if not dist.enabled:
        return torch.cat(outputs)
    import torch.distributed as tdist

    gathered: list = [None] * dist.world_size
    tdist.all_gather_object(gathered, outputs)
    ordered = [gathered[i % dist.world_size][i // dist.world_size] for i in range(len(batches))]
    return torch.cat(ordered)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Data,
    loss_fn: Callable,
    device: torch.device,
    batch_size: int = 1024,
    autocast: str | None = None,
    dist: DistInfo | None = None,
) -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` on ``data``; under DDP each rank scores its share of the batches."""
    model.eval()
    dist = dist or DistInfo()
    total_loss, n_correct, n_seen = 0.0, 0, 0
    batches = list(_batches(data, batch_size, None)) if dist.enabled else _batches(data, batch_size, None)
    for inputs, targets in _shard(batches, dist):
        with _autocast(device, autocast):
            outputs = _forward(model, _to_device(inputs, device)).float()
        targets = targets.to(device)
        total_loss += float(loss_fn(outputs, targets)) * len(targets)
        n_correct += int((outputs.argmax(dim=1) == targets).sum())
        n_seen += len(targets)
    total_loss, n_correct, n_seen = _all_reduce_sum([total_loss, n_correct, n_seen], dist)
    if n_seen == 0:  # no validation rows (vision --validation-fraction 0): no score, not a score of 0
        return float("nan"), float("nan")
    return total_loss / n_seen, n_correct / n_seen


# --- weight averaging -------------------------------------------------------------------------


class WeightAverage:
    """An exponential moving average of a model's floating-point weights (parameters and float buffers).

    Averaging the weights of the last few hundred steps smooths the noise of the final SGD iterates
    and lands in a flatter region of the loss (Polyak & Juditsky 1992; Izmailov et al. 2018, SWA):
    for fine-tuning it is a cheap, well-known gain. The decay after ``t`` earlier updates is
    ``min(decay, t / (t + 2))``: until ``decay`` takes over (t = 198 for 0.99) the average weights
    the steps so far linearly, the latest most (polynomial-decay averaging, Shamir & Zhang 2013), so
    that a short run averages its own recent weights instead of its starting point, and past that
    point it is the plain moving average whose decay the option names.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.n_updates = 0
        # Frozen parameters would average to themselves: only what trains (and float buffers) is kept.
        self.shadow = {k: v.detach().clone() for k, v in trainable_state(model).items() if v.is_floating_point()}

    def update(self, model: nn.Module) -> None:
        """Move the average towards the model's current weights (call after each optimizer step)."""
        decay = min(self.decay, self.n_updates / (self.n_updates + 2))
        current = model.state_dict()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.shadow.values()), [current[k].detach() for k in self.shadow], 1.0 - decay)
        self.n_updates += 1

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Run the block with the averaged weights in ``model``, then put the trained ones back."""
        current = model.state_dict()
        kept = {k: current[k].detach().clone() for k in self.shadow}
        with torch.no_grad():
            for k, v in self.shadow.items():
                current[k].copy_(v)
        try:
            yield
        finally:
            with torch.no_grad():
                for k, v in kept.items():
                    current[k].copy_(v)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "n_updates": self.n_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        if state["decay"] != self.decay:
            raise ConfigError(
                f"the checkpoint's weight average has decay {state['decay']:g}, this run {self.decay:g}; resume with the original ema_decay"
            )
        missing = sorted(set(self.shadow) - set(state["shadow"]))
        if missing:
            raise ConfigError(
                f"the checkpoint's weight average lacks {len(missing)} trained tensor(s) ({missing[0]}, ...): it was written for "
                "another model or method; resume with the original options"
            )
        self.n_updates = state["n_updates"]
        for k in self.shadow:  # a checkpoint from before averages were kept for trained tensors only holds more
            self.shadow[k].copy_(state["shadow"][k])


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The part of ``model.state_dict()`` that a checkpoint keeps: the parameters that train and every buffer.

    Frozen parameters (a LoRA or BitFit run's pretrained weights, an unused pooler) are rebuilt by
    whoever builds the model, from the same source, so a LoRA checkpoint of MiniLM holds 0.3 M values, not 22.7 M.
    """
    return {
        k: v.detach()
        for k, v in model.state_dict(keep_vars=True).items()
        if not isinstance(v, nn.Parameter) or v.requires_grad
    }


def load_trainable_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load a checkpoint's weights (``trainable_state``, or a whole state dict) into ``model``.

    Refused (ConfigError) when the checkpoint lacks a tensor that trains here or holds one ``model`` does not
    have: it was written for another model or method.
    """
    missing, unexpected = model.load_state_dict(state, strict=False)
    frozen = {
        k for k, v in model.state_dict(keep_vars=True).items() if isinstance(v, nn.Parameter) and not v.requires_grad
    }
    missing = [k for k in missing if k not in frozen]
    if missing or unexpected:
        raise ConfigError(
            f"the checkpoint does not fit this model ({len(missing)} trained tensor(s) missing, e.g. {missing[:1]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:1]}): it was written for another model or method; "
            "resume with the original options or pass --force to start over"
        )


def checkpoint_weights(saved: dict) -> dict:
    """The weights a checkpoint stands for: its weight average where training kept one, else the model's."""
    weights = dict(saved["model"])
    if saved.get("ema") is not None:
        weights.update(saved["ema"]["shadow"])
    return weights


# --- the loop ---------------------------------------------------------------------------------


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
    records: list = field(default_factory=list)
    evals: list = field(default_factory=list)


def rng_state(generator: torch.Generator) -> dict:
    """Every RNG state a run draws from, as tensors and plain values (loads with ``weights_only=True``)."""
    version, mt_words, gauss_next = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": {"version": version, "state": torch.tensor(mt_words, dtype=torch.int64), "gauss_next": gauss_next},
        # (624,) uint32 key widened to int64: a NumPy array would need pickle to load
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict, generator: torch.Generator) -> None:
    """Inverse of ``rng_state``."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": numpy["key"].numpy().astype(np.uint32), "pos": numpy["pos"]},
            "has_gauss": numpy["has_gauss"],
            "gauss": numpy["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class _Run:
    """What one ``fit`` call works with (bundled so that helpers stay short)."""

    model: nn.Module
    net: nn.Module  # ``model``, or its DistributedDataParallel wrapper
    loss_fn: Callable
    config: TrainConfig
    device: torch.device
    dist: DistInfo
    optimizer: Any
    scheduler: Any
    scaler: Any
    generator: torch.Generator
    checkpoints: Checkpoints | None
    batch_transform: Callable | None
    epoch_start_generator: Any = None
    ema: "WeightAverage | None" = None


def _gather_rng(run: _Run) -> list:
    states = [rng_state(run.generator)]
    if not run.dist.enabled:
        return states
    import torch.distributed as tdist

    gathered: list = [None] * run.dist.world_size
    tdist.all_gather_object(gathered, states[0])
    return gathered


def _save(run: _Run, state: LoopState, best: bool) -> None:
    """Write a checkpoint of the state *between* steps; every rank takes part (RNG states are gathered)."""
    if run.checkpoints is None:
        return
    if not all(bool(torch.isfinite(p).all()) for p in run.model.parameters()):
        raise TrainingDiverged(
            f"training diverged at step {state.step}: the weights became nan or inf; {_kept(run.checkpoints)}lower the learning rate"
        )
    rng = _gather_rng(run)
    if not run.dist.is_main:
        return
    run.checkpoints.save(
        {
            "model": trainable_state(run.model),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "ema": run.ema.state_dict() if run.ema is not None else None,
            "rng": rng,
            "epoch_start_generator": run.epoch_start_generator,
            "loop": asdict(state),
            "config": to_plain(run.config),
            "world_size": run.dist.world_size,
        },
        state.step,
        best,
    )


_CHECKPOINT_SCHEMA = {
    "model": (dict,),
    "optimizer": (dict,),
    "scheduler": (dict,),
    "scaler": (dict, type(None)),
    "ema": (dict, type(None)),
    "rng": (list,),
    "epoch_start_generator": (torch.Tensor, type(None)),
    "loop": (dict,),
    "config": (dict,),
    "world_size": (int,),
}
_LOOP_SCHEMA = {
    f.name: {int: (int,), float: (float, int), bool: (bool,)}.get(f.type, (list,))
    for f in fields(LoopState)
    if f.name != "best_step"
} | {"best_step": (int, type(None))}
_RNG_SCHEMA = {
    "python": (dict,),
    "numpy": (dict,),
    "torch": (torch.Tensor,),
    "generator": (torch.Tensor,),
    "cuda": (list,),
}


def _checkpoint_problems(run: _Run, saved: dict) -> list[str]:
    """What keeps ``saved`` from restoring ``run`` exactly (empty: nothing); read before anything is loaded."""
    problems = check_fields(saved, _CHECKPOINT_SCHEMA, "checkpoint")
    if problems:
        return problems
    problems += check_fields(saved["loop"], _LOOP_SCHEMA, "checkpoint.loop")
    if not saved["rng"]:
        problems.append("checkpoint.rng is empty")
    for i, state in enumerate(saved["rng"]):
        problems += check_fields(state, _RNG_SCHEMA, f"checkpoint.rng[{i}]", optional={"cuda"})
    expected = run.model.state_dict()
    for name, value in saved["model"].items():
        if name not in expected:
            problems.append(f"checkpoint.model has weight {name!r}, which this model lacks")
        elif not isinstance(value, torch.Tensor) or value.shape != expected[name].shape:
            problems.append(f"checkpoint.model[{name!r}] is not a tensor of shape {tuple(expected[name].shape)}")
    return problems


def _restore(run: _Run, saved: dict) -> LoopState:
    try:
        return _restore_checked(run, saved)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        # what the schema above cannot see (inside the optimizer's or the generator's state)
        where = getattr(run.checkpoints, "folder", "the checkpoint folder")
        raise StoreError(
            f"the latest checkpoint in {where} does not fit this run ({type(exc).__name__}: {str(exc).strip()[:160]}); "
            "delete it to resume from an earlier checkpoint, or pass --force to start over"
        ) from None


def _restore_checked(run: _Run, saved: dict) -> LoopState:
    if saved.get("world_size", 1) != run.dist.world_size:
        raise ConfigError(
            f"the checkpoint was written by {saved.get('world_size', 1)} process(es), this run has {run.dist.world_size}; resume with the same --nproc"
        )
    load_trainable_state(run.model, saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    if run.scaler is not None and saved.get("scaler") is not None:
        run.scaler.load_state_dict(saved["scaler"])
    if (run.ema is None) != (saved.get("ema") is None):  # a dropped or missing average would change the result
        raise ConfigError(
            f"the checkpoint was written {'without' if run.ema is not None else 'with'} a weight average and this "
            f"run keeps {'one' if run.ema is not None else 'none'}; resume with the original ema_decay"
        )
    if run.ema is not None:
        run.ema.load_state_dict(saved["ema"])
    rng = saved["rng"]
    restore_rng_state(rng[run.dist.rank] if run.dist.rank < len(rng) else rng[0], run.generator)
    run.epoch_start_generator = saved.get("epoch_start_generator")
    loop = saved["loop"]
    loop["records"] = [EpochRecord(**r) if isinstance(r, dict) else EpochRecord(*r) for r in loop["records"]]
    loop["evals"] = [EvalRecord(**r) if isinstance(r, dict) else EvalRecord(*r) for r in loop["evals"]]
    return LoopState(**loop)


def _epoch_micro_batches(run: _Run, train: Data, epoch: int, state: LoopState) -> Iterator:
    """This rank's micro-batches of ``epoch`` from position ``state.micro_in_epoch`` on."""
    if isinstance(train, EpochBatches):
        batches = list(train.epoch_batches(epoch))
        if run.dist.enabled:  # wrap around so that every rank steps equally often (said aloud by the caller)
            batches += batches[: padded_batch_count(len(batches), run.dist.world_size) - len(batches)]
        return islice(iter(_shard(batches, run.dist)), state.micro_in_epoch, None)
    if isinstance(train, tuple):
        # The epoch's permutation is drawn from ``generator``: rewind it to the epoch start on resume.
        if state.micro_in_epoch and run.epoch_start_generator is not None:
            run.generator.set_state(run.epoch_start_generator)
        run.epoch_start_generator = run.generator.get_state()
    return islice(iter(_batches(train, run.config.batch_size, run.generator)), state.micro_in_epoch, None)


def _train_step(run: _Run, chunk: list) -> tuple[float, int]:
    """One optimizer step over ``chunk`` (this rank's micro-batches); returns (loss sum over examples, examples)."""
    run.net.train()
    run.optimizer.zero_grad(set_to_none=True)
    loss_sum, n_seen = 0.0, 0
    for i, (inputs, targets) in enumerate(chunk):
        inputs, targets = _to_device(inputs, run.device), targets.to(run.device)
        if run.batch_transform is not None:
            inputs = run.batch_transform(inputs)
        sync = nullcontext() if (not run.dist.enabled or i == len(chunk) - 1) else run.net.no_sync()
        with sync:
            with _autocast(run.device, run.config.autocast):
                loss = run.loss_fn(_forward(run.net, inputs), targets)
            scaled = loss if len(chunk) == 1 else loss / len(chunk)
            (run.scaler.scale(scaled) if run.scaler is not None else scaled).backward()
        loss_sum += float(loss.detach()) * len(targets)
        n_seen += len(targets)
    if run.config.max_grad_norm is not None:
        if run.scaler is not None:
            run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), run.config.max_grad_norm)
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.scheduler.step()
    return loss_sum, n_seen


def _evaluate_now(run: _Run, val: Data, state: LoopState, epoch: int) -> None:
    """Validate, record, keep the best checkpoint, count evaluations without gain."""
    with run.ema.applied(run.model) if run.ema is not None else nullcontext():
        val_loss, val_accuracy = evaluate(
            run.model, val, run.loss_fn, run.device, autocast=run.config.autocast, dist=run.dist
        )
    train_loss = state.since_eval_loss / max(1, state.since_eval_seen)
    state.evals.append(EvalRecord(state.step, epoch, train_loss, val_loss, val_accuracy))
    state.since_eval_loss, state.since_eval_seen = 0.0, 0
    state.last_val_accuracy = val_accuracy
    log.info("step %d: val loss %.4f, val accuracy %.4f", state.step, val_loss, val_accuracy)
    if val_accuracy > state.best_accuracy:
        state.best_accuracy, state.best_step, state.evals_without_gain = val_accuracy, state.step, 0
        return
    state.evals_without_gain += 1
    if run.config.patience is not None and state.evals_without_gain >= run.config.patience:
        state.stopped_early = True


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
    *,
    param_groups: list[dict] | None = None,
    checkpoints: Checkpoints | None = None,
    dist: DistInfo | None = None,
) -> TrainHistory:
    """Train ``model`` in place for ``config.n_epochs`` epochs; evaluate on ``val`` after each (and every
    ``config.eval_every`` steps). With ``checkpoints``, resume from the latest one and save every
    ``config.checkpoint_every`` steps, at each epoch end and at each new best validation accuracy.
    With ``config.ema_decay`` the moving average of the weights is what is evaluated, checkpointed
    as best (``checkpoint_weights``) and left in ``model`` at the end.

    Progress reports one unit per optimizer step with epoch, loss and the latest validation accuracy.
    """
    config.check()
    dist = dist or DistInfo()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device)
    steps = steps_per_epoch(_n_batches(train, config.batch_size), config, dist.world_size)
    optimizer, scheduler = make_optimizer(model, config, steps, param_groups)
    scaler = torch.amp.GradScaler(device.type) if config.autocast == "fp16" and device.type == "cuda" else None
    run = _Run(
        model,
        model,
        loss_fn,
        config,
        device,
        dist,
        optimizer,
        scheduler,
        scaler,
        generator,
        checkpoints,
        batch_transform,
        ema=WeightAverage(model, config.ema_decay) if config.ema_decay is not None else None,
    )
    state, resumed_from = LoopState(), None
    saved = checkpoints.load_latest(partial(_checkpoint_problems, run)) if checkpoints is not None else None
    if saved is not None:
        state = _restore(run, saved)
        resumed_from = state.step
        log.info("resumed from step %d (epoch %d, micro-batch %d)", state.step, state.epoch, state.micro_in_epoch)
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        run.net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    total = config.n_epochs * steps
    started, earlier_seconds = time.perf_counter(), state.elapsed_seconds
    while state.epoch <= config.n_epochs and not state.stopped_early:
        epoch = state.epoch
        epoch_start = time.perf_counter() - state.epoch_seconds
        micro_batches = _epoch_micro_batches(run, train, epoch, state)
        while not state.stopped_early:
            chunk = list(islice(micro_batches, config.grad_accum))
            if not chunk:
                break
            step_start = time.perf_counter()
            loss_sum, n_seen = _train_step(run, chunk)
            if run.ema is not None:
                run.ema.update(run.model)
            loss_sum, n_seen, n_bad = _all_reduce_sum([loss_sum, n_seen, 0.0 if math.isfinite(loss_sum) else 1.0], dist)
            state.train_seconds += time.perf_counter() - step_start
            state.train_samples += int(n_seen)
            state.elapsed_seconds = earlier_seconds + time.perf_counter() - started
            if n_bad or not math.isfinite(loss_sum):
                raise TrainingDiverged(
                    f"training diverged at step {state.step + 1} (epoch {epoch}): the loss became {loss_sum / max(1, n_seen)}; "
                    + _kept(checkpoints)
                    + "lower the learning rate"
                )
            state.step += 1
            state.micro_in_epoch += len(chunk)
            state.epoch_loss += loss_sum
            state.epoch_seen += int(n_seen)
            state.since_eval_loss += loss_sum
            state.since_eval_seen += int(n_seen)
            state.epoch_seconds = time.perf_counter() - epoch_start
            progress(
                task,
                state.step,
                total,
                epoch=epoch,
                loss=state.epoch_loss / state.epoch_seen,
                val_acc=state.last_val_accuracy,
            )
            evaluated = config.eval_every is not None and state.step % config.eval_every == 0
            if evaluated:
                _evaluate_now(run, val, state, epoch)
            if evaluated and state.best_step == state.step:
                _save(run, state, best=True)
            elif config.checkpoint_every is not None and state.step % config.checkpoint_every == 0:
                _save(run, state, best=False)
        if state.stopped_early:
            break
        _finish_epoch(run, val, state, epoch, time.perf_counter() - epoch_start)
        progress(
            task, epoch * steps, total, epoch=epoch, loss=state.records[-1].train_loss, val_acc=state.last_val_accuracy
        )
    if resumed_from is not None and state.stopped_early:
        log.info("stopped early at step %d", state.step)
    if run.ema is not None:  # the model leaves with the weights that were evaluated
        model.load_state_dict(run.ema.shadow, strict=False)
    return TrainHistory(
        tuple(state.records),
        earlier_seconds + time.perf_counter() - started,
        tuple(state.evals),
        state.best_step,
        state.best_accuracy,
        state.step,
        state.train_samples,
        state.train_seconds,
        state.stopped_early,
        resumed_from,
    )


def _finish_epoch(run: _Run, val: Data, state: LoopState, epoch: int, seconds: float) -> None:
    train_loss = state.epoch_loss / max(1, state.epoch_seen)
    if not math.isfinite(train_loss):
        raise TrainingDiverged(f"training diverged at epoch {epoch} (loss {train_loss}); lower the learning rate")
    if not state.evals or state.evals[-1].step != state.step:
        _evaluate_now(run, val, state, epoch)
    last = state.evals[-1]
    state.records.append(EpochRecord(epoch, train_loss, last.val_loss, last.val_accuracy, seconds))
    log.info(
        "epoch %d: train loss %.4f, val loss %.4f, val accuracy %.4f",
        epoch,
        train_loss,
        last.val_loss,
        last.val_accuracy,
    )
    state.epoch, state.micro_in_epoch, state.epoch_loss, state.epoch_seen, state.epoch_seconds = (
        epoch + 1,
        0,
        0.0,
        0,
        0.0,
    )
    _save(run, state, best=state.best_step == state.step)


def _kept(checkpoints: Checkpoints | None) -> str:
    """Which checkpoint survives a divergence, said in the error."""
    if checkpoints is None:
        return ""
    last = getattr(checkpoints, "last_step", lambda: None)()
    return (
        f"the last good checkpoint (step {last}) is kept; "
        if last is not None
        else "no checkpoint had been written yet; "
    )
