"""Per-head attention statistics (Clark et al., 2019, "What Does BERT Look At?"), batched.

Every statistic is a property of one attention row (one query token's distribution over the keys)
and is averaged over every real (non-padding) query token of every text: token-weighted, so a long
text counts for more rows than a short one. Padding keys get exactly zero weight from the eager
softmax, so padded batches give the per-text numbers (tested against a plain per-text loop).
"""

import math

import torch
import torch.nn.functional as F

# The order of the rows of every (S, L, H) array, the JSON keys and the PNG names.
STATISTICS = ("entropy", "cls", "sep", "punctuation", "self", "previous", "next", "distance")
DESCRIPTIONS = {
    "entropy": "mean entropy of the attention rows (nats)",
    "cls": "share of attention on [CLS]",
    "sep": "share of attention on [SEP]",
    "punctuation": "share of attention on punctuation tokens",
    "self": "share of attention on the token itself",
    "previous": "share of attention on the previous token",
    "next": "share of attention on the next token",
    "distance": "mean attention distance |i - j| (tokens)",
}


def row_statistics(weights: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Statistics of every attention row of one layer.

    weights: (B, H, T, T) float32, row q = query token q's distribution over the keys.
    flags: (B, T, 3) float32, whether key token k is [CLS], [SEP], punctuation.
    Returns (S, B, H, T) float32 in the order of STATISTICS.
    """
    T = weights.shape[-1]
    # xlogy-style: 0 * log 0 counts as 0 (padding keys and hard-zero weights).
    entropy = -(weights * torch.log(weights.clamp_min(torch.finfo(weights.dtype).tiny))).sum(-1)  # (B, H, T)
    shares = torch.einsum("bhqk,bkf->fbhq", weights, flags)  # (3, B, H, T)
    itself = weights.diagonal(dim1=-2, dim2=-1)  # (B, H, T)
    previous = F.pad(weights.diagonal(offset=-1, dim1=-2, dim2=-1), (1, 0))  # (B, H, T); 0 for the first token
    following = F.pad(weights.diagonal(offset=1, dim1=-2, dim2=-1), (0, 1))  # (B, H, T); 0 for the last
    positions = torch.arange(T, device=weights.device, dtype=weights.dtype)
    gaps = (positions[:, None] - positions[None, :]).abs()  # (T, T)
    distance = torch.einsum("bhqk,qk->bhq", weights, gaps)  # (B, H, T)
    return torch.stack([entropy, shares[0], shares[1], shares[2], itself, previous, following, distance])


class HeadStatistics:
    """Running sums of the row statistics of every layer and head: add batches, read means."""

    def __init__(self, n_layers: int, n_heads: int):
        self.sums = torch.zeros((len(STATISTICS), n_layers, n_heads), dtype=torch.float64)  # (S, L, H)
        self.n_rows = 0

    def add(self, attentions: tuple[torch.Tensor, ...], attention_mask: torch.Tensor, flags: torch.Tensor) -> None:
        """attentions: L x (B, H, T, T); attention_mask: (B, T), 1 on real tokens; flags: (B, T, 3)."""
        mask = attention_mask.to(attentions[0].device, torch.float32)  # (B, T)
        flags = flags.to(attentions[0].device)
        for layer, weights in enumerate(attentions):
            per_row = row_statistics(weights, flags)  # (S, B, H, T)
            self.sums[:, layer] += torch.einsum("sbht,bt->sh", per_row, mask).double().cpu()
        self.n_rows += int(mask.sum())

    def means(self) -> dict[str, list[list[float]]]:
        """{statistic: (L, H) nested lists} averaged over every real query token seen."""
        means = (self.sums / max(self.n_rows, 1)).numpy()
        return {name: means[i].tolist() for i, name in enumerate(STATISTICS)}


class HeadDivergence:
    """Running sums of the Jensen-Shannon divergence (bits, 0..1) between two models' attention rows."""

    def __init__(self, n_layers: int, n_heads: int):
        self.sums = torch.zeros((n_layers, n_heads), dtype=torch.float64)  # (L, H)
        self.n_rows = 0

    def add(
        self, first: tuple[torch.Tensor, ...], second: tuple[torch.Tensor, ...], attention_mask: torch.Tensor
    ) -> None:
        mask = attention_mask.to(first[0].device, torch.float32)  # (B, T)
        for layer, (p, q) in enumerate(zip(first, second)):
            js = jensen_shannon(p, q)  # (B, H, T)
            self.sums[layer] += torch.einsum("bht,bt->h", js, mask).double().cpu()
        self.n_rows += int(mask.sum())

    def means(self) -> list[list[float]]:
        return (self.sums / max(self.n_rows, 1)).tolist()


def jensen_shannon(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """JS divergence in bits between rows of p and q: (..., T) -> (...). Symmetric, 0..1."""
    m = 0.5 * (p + q)
    return 0.5 * (_kl_bits(p, m) + _kl_bits(q, m))


def _kl_bits(p: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    # Where p > 0, m >= p / 2 > 0; where p == 0 the term is 0 (and log would give nan).
    ratio = torch.where(p > 0, p / m.clamp_min(torch.finfo(m.dtype).tiny), torch.ones_like(p))
    return (p * torch.log(ratio)).sum(-1) / math.log(2)
