"""The optimiser and its per-step learning-rate schedule."""

from collections.abc import Callable

import torch
from torch import nn

from training.config import OptimizerName, ScheduleName, TrainConfig


def make_optimizer(
    model: nn.Module, config: TrainConfig, steps_per_epoch: int, param_groups: list[dict] | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
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
    optimizer: torch.optim.Optimizer
    if config.optimizer == OptimizerName.SGD:
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    else:  # fused=None is AdamW's default (its own choice of kernel)
        optimizer = torch.optim.AdamW(groups, lr=config.lr, fused=True if config.fused else None)
    return optimizer, _schedule(optimizer, config, config.n_epochs * steps_per_epoch)


def _schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-step learning-rate schedule ``config.schedule`` names, over ``total_steps`` optimizer steps."""
    scheduler: torch.optim.lr_scheduler.LRScheduler
    if config.schedule == ScheduleName.ONECYCLE:
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=config.warmup_fraction
        )
    elif config.schedule == ScheduleName.COSINE:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    elif config.schedule == ScheduleName.LINEAR:
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _linear_schedule(total_steps, round(config.warmup_fraction * total_steps))
        )
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return scheduler


def _linear_schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor
