"""Model outputs and validation scores over a whole data set, in order; under DDP each rank scores its
share of the batches."""

from collections.abc import Callable

import torch
from torch import nn

from common.errors import ConfigError
from training.batches import Batches, autocast_context, forward, iterate_batches, to_device
from training.distributed import DistInfo, all_gather, all_reduce_sum, shard


@torch.no_grad()
def predict(
    model: nn.Module,
    data: Batches,
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
    outputs: list[torch.Tensor] = []
    captured: list[torch.Tensor] = []
    hook = None if features_of is None else features_of.register_forward_pre_hook(lambda _, a: captured.append(a[0]))
    try:
        for inputs, _ in shard(iterate_batches(data, batch_size, None), dist):
            captured.clear()
            with autocast_context(device, autocast):
                output = forward(model, to_device(inputs, device))
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
    gathered = all_gather(outputs, dist)  # rank r holds batches r, r + world size, ...
    n_batches = sum(len(share) for share in gathered)
    ordered = [gathered[i % dist.world_size][i // dist.world_size] for i in range(n_batches)]
    return torch.cat(ordered)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Batches,
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
    for inputs, targets in shard(iterate_batches(data, batch_size, None), dist):
        with autocast_context(device, autocast):
            outputs = forward(model, to_device(inputs, device)).float()
        targets = targets.to(device)
        total_loss += float(loss_fn(outputs, targets)) * len(targets)
        n_correct += int((outputs.argmax(dim=1) == targets).sum())
        n_seen += len(targets)
    loss_sum, correct, seen = all_reduce_sum([total_loss, n_correct, n_seen], dist)  # all ranks
    if seen == 0:  # no validation rows (vision --validation-fraction 0): no score, not a score of 0
        return float("nan"), float("nan")
    return loss_sum / seen, correct / seen
