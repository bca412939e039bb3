"""A cheaper dropout for fine-tuning on CPU: the same distribution as ``nn.Dropout``, a faster random source.

Profiling MiniLM training under bf16 autocast on CPU showed ``aten::bernoulli_`` (torch's Mersenne
Twister, about 4.5 ns per element) taking 13% of every step, more than the optimizer. Here each
dropout call draws one 62-bit seed from torch's default generator and takes its keep-mask from
NumPy's PCG64 (about 1 ns per element): units are kept with probability 1 - p (to 2^-32) and scaled
by 1 / (1 - p), as in ``nn.Dropout``. Because every draw starts from torch's generator, the training
loop's saved RNG state still makes a resumed run bit-identical.

``fast_dropout(model)`` swaps every ``nn.Dropout`` of a Hugging Face model for ``FastDropout`` and,
for BERT-style attention (which passes the attention-probability dropout into its attention
function), routes training-time attention through ``attention_with_fast_dropout``; evaluation keeps
PyTorch's fused scaled-dot-product kernel. On leaving the context the model is restored, so that
``save_pretrained`` writes a plain model.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

ATTENTION_NAME = "mlx_fast_dropout"
_SEED_LIMIT = 2**62


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype) -> torch.Tensor:
    """A CPU tensor of ``shape`` and ``dtype`` holding 0 (dropped, probability ``p``) or 1 / (1 - p)."""
    seed = int(torch.randint(0, _SEED_LIMIT, (1,)))
    n = int(np.prod(shape))
    bits = np.random.Generator(np.random.PCG64(seed)).integers(0, 2**32, n, dtype=np.uint32)
    kept = torch.from_numpy(bits >= np.uint32(min(round(p * 2**32), 2**32 - 1))).view(shape)
    return kept.to(dtype).mul_(1.0 / (1.0 - p))


def apply_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``nn.functional.dropout`` with the PCG64 mask on CPU; torch's own elsewhere (CUDA has a fast one)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return nn.functional.dropout(x, p, training)
    return x * keep_mask(x.shape, p, x.dtype)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` (same ``p``, same state dict: none) drawing its mask with :func:`keep_mask`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_dropout(x, self.p, self.training)


def attention_with_fast_dropout(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention for transformers' ``AttentionInterface``: with dropout (training) the softmax-dropout-matmul
    written out with :func:`apply_dropout`; without it, transformers' SDPA function (the fused kernel)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    # Causal (decoder) attention may arrive with no mask and rely on SDPA's is_causal: leave it to SDPA.
    if dropout == 0.0 or not module.training or query.device.type != "cpu" or getattr(module, "is_causal", False):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    if key.shape[1] != query.shape[1]:  # grouped-query attention: repeat the key/value heads
        repeat = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(repeat, dim=1), value.repeat_interleave(repeat, dim=1)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, H, Q, K)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # transformers' SDPA mask: True = attend
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = apply_dropout(weights, dropout, True)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, attention_with_fast_dropout)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)


@contextmanager
def fast_dropout(model: Any) -> Iterator[Any]:
    """Within the context ``model`` (an nn.Module with transformers' ``set_attn_implementation``) uses :class:`FastDropout` and, where it ran SDPA attention, the attention
    above; both are undone on exit (the weights are untouched either way)."""
    swapped: list[tuple[nn.Module, str, nn.Dropout]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                swapped.append((parent, name, child))
                setattr(parent, name, FastDropout(child.p, child.inplace).train(child.training))
    config = getattr(model, "config", None)
    attention = getattr(config, "_attn_implementation", None)
    switch = attention == "sdpa"
    if switch:
        _register()
        model.set_attn_implementation(ATTENTION_NAME)
    try:
        yield model
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
        if switch:
            model.set_attn_implementation(attention)
