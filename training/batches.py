"""The data a training loop reads: tensor pairs, per-epoch batch lists or any iterable of batches.

Training data is either a pair of tensors ``(inputs, targets)`` (kept on the device and shuffled
there: no DataLoader overhead for small image sets), an ``EpochBatches`` source (a fixed batch list
per epoch, e.g. length-grouped text batches: what exact resume and DDP sharding need), or any
iterable of ``(inputs, targets)`` batches such as a DataLoader. Inputs may be a tensor or a dict of
tensors (passed to the model as keyword arguments); a model may return a tensor or a Hugging Face
output with ``.logits``.
"""

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from training.config import TrainConfig

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@runtime_checkable
class EpochBatches(Protocol):
    """A training set that hands out the same batch list for the same epoch (resumable, shardable)."""

    def __len__(self) -> int:
        """Batches per epoch."""
        ...

    def epoch_batches(self, epoch: int) -> Sequence:
        """The (inputs, targets) batches of ``epoch`` (1-based), in training order."""
        ...


TensorPair = tuple[torch.Tensor, torch.Tensor]
Batches = TensorPair | Iterable  # what predict and evaluate read: a tensor pair, or (inputs, targets) batches
Data = Batches | EpochBatches  # what fit trains on


def to_device(inputs: Any, device: torch.device) -> Any:
    """A batch's inputs (a tensor, or a dict of tensors) on ``device``."""
    if isinstance(inputs, Mapping):
        return {key: value.to(device) for key, value in inputs.items()}
    return inputs.to(device)


def forward(model: nn.Module, inputs: Any) -> torch.Tensor:
    """The model's logits for one batch (a dict of inputs goes in as keyword arguments)."""
    outputs = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
    return getattr(outputs, "logits", outputs)  # Hugging Face models return an output object


def autocast_context(device: torch.device, autocast: str | None) -> AbstractContextManager:
    """Autocast to ``autocast`` ('bf16', 'fp16') on ``device``'s type; nothing for None (fp32)."""
    if autocast is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[autocast])


def iterate_batches(data: Batches, batch_size: int, generator: torch.Generator | None) -> Iterator:
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


def count_batches(data: Data, batch_size: int) -> int:
    """Batches per epoch of ``data`` (all ranks)."""
    return math.ceil(len(data[1]) / batch_size) if isinstance(data, tuple) else len(data)  # type: ignore[arg-type]


def padded_batch_count(n_batches: int, world_size: int) -> int:
    """Batches per epoch once padded to a multiple of the world size (every rank steps equally often)."""
    return math.ceil(n_batches / world_size) * world_size


def steps_per_epoch(n_batches: int, config: TrainConfig, world_size: int = 1) -> int:
    """Optimizer steps per epoch: micro-batches per rank, grouped by ``grad_accum`` (last group may be short)."""
    return math.ceil(padded_batch_count(n_batches, world_size) / world_size / config.grad_accum)
