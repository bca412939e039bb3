"""Pooling token vectors into one vector per text.

Every strategy is computed from the same forward pass. Padding never leaks: masked positions are
excluded from means (weight 0) and from maxima (set to -inf before the max).
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the functions that run on tensors, not by the CLI's option enums
    import torch


class Pooling(str, Enum):
    CLS = "cls"
    MEAN = "mean"
    MAX = "max"
    MEAN_MAX = "mean-max"
    FIRST_LAST_AVG = "first-last-avg"
    POOLER = "pooler"


ALL_POOLINGS = tuple(p.value for p in Pooling)


def parse_poolings(names: list[str]) -> tuple[Pooling, ...]:
    """Turn CLI names (``all`` allowed) into unique Pooling values, in canonical order."""
    from common import ConfigError

    wanted: set[Pooling] = set()
    for name in names:
        for part in str(name).split(","):
            part = part.strip().lower()
            if part == "all":
                wanted.update(Pooling)
            elif part in ALL_POOLINGS:
                wanted.add(Pooling(part))
            elif part:
                raise ConfigError(f"unknown pooling {part!r}; choose from: {', '.join(ALL_POOLINGS)}, all")
    if not wanted:
        raise ConfigError(f"no pooling given; choose from: {', '.join(ALL_POOLINGS)}, all")
    return tuple(p for p in Pooling if p in wanted)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) float, (B, T) 0/1 mask -> (B, H) mean over real tokens."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    # clamp: a row with no real token would divide by zero; tokenizers always emit [CLS].
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def max_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H), (B, T) -> (B, H) max over real tokens."""
    return hidden.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).amax(dim=1)


def pool_layer(
    poolings: tuple[Pooling, ...],
    hidden: torch.Tensor,
    first_hidden: torch.Tensor | None,
    mask: torch.Tensor,
) -> dict[Pooling, torch.Tensor]:
    """Pool one layer's (B, T, H) states under every strategy except POOLER, in float32.

    ``first_hidden`` is the first transformer layer's output, needed only for FIRST_LAST_AVG.
    """
    import torch

    hidden = hidden.float()
    out: dict[Pooling, torch.Tensor] = {}
    shared: dict[Pooling, torch.Tensor] = {}  # mean and max serve MEAN_MAX too: each computed once
    if {Pooling.MEAN, Pooling.MEAN_MAX} & set(poolings):
        shared[Pooling.MEAN] = mean_pool(hidden, mask)
    if {Pooling.MAX, Pooling.MEAN_MAX} & set(poolings):
        shared[Pooling.MAX] = max_pool(hidden, mask)
    for pooling in poolings:
        if pooling is Pooling.CLS:
            out[pooling] = hidden[:, 0]
        elif pooling in (Pooling.MEAN, Pooling.MAX):
            out[pooling] = shared[pooling]
        elif pooling is Pooling.MEAN_MAX:
            out[pooling] = torch.cat([shared[Pooling.MEAN], shared[Pooling.MAX]], dim=-1)  # (B, 2H)
        elif pooling is Pooling.FIRST_LAST_AVG:
            if first_hidden is None:
                raise ValueError("bug: first_last_avg pooling needs the first layer's states")
            # Mean pooling is linear, so this equals mean-pooling (h_1 + h_L) / 2 (Su et al., 2021).
            out[pooling] = mean_pool((first_hidden.float() + hidden) / 2, mask)
    return out
