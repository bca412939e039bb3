"""The plain way, kept as a reference: one text at a time, statistics in NumPy, head by head.

This is what a notebook would do: call the model on each text with ``output_attentions=True`` and
compute the statistics of Clark et al. (2019) head by head in NumPy. It is slow on purpose and shares no code
with attention.heads, so the tests and benchmarks/attention_speed.py can check the batched code
against it.
"""

import numpy as np
import torch

from attention.heads import STATISTICS
from attention.model import AttentionModel, TokenRoles
from text.tokens import cut_text


def per_text_statistics(
    model: AttentionModel, texts: list[str], max_length: int, roles: TokenRoles
) -> dict[str, np.ndarray]:
    """{statistic: (L, H) mean over every query token of every text}, one forward pass per text."""
    network = model.loaded.model
    sums = np.zeros((len(STATISTICS), model.n_layers, model.n_heads))
    n_rows = 0
    for text in texts:
        encoded = model.tokenizer(
            cut_text(text, model.tokenizer, max_length), truncation=True, max_length=max_length, return_tensors="pt"
        )
        with torch.no_grad():
            output = network(**encoded.to(model.loaded.device), output_attentions=True)
        ids = encoded["input_ids"][0].cpu().numpy()
        roles_of_keys = [np.isin(ids, list(group)) for group in (roles.cls_ids, roles.sep_ids, roles.punctuation_ids)]
        for layer, weights in enumerate(output.attentions):
            for head in range(weights.shape[1]):
                sums[:, layer, head] += text_head_sums(weights[0, head].float().cpu().numpy(), roles_of_keys)
        n_rows += len(ids)
    return {name: sums[i] / n_rows for i, name in enumerate(STATISTICS)}


def text_head_sums(weights: np.ndarray, roles_of_keys: list[np.ndarray]) -> np.ndarray:
    """weights: (T, T) of one head on one text, no padding; roles_of_keys: (T,) bool masks of [CLS], [SEP],
    punctuation -> (S,) sums over the rows, in the order of STATISTICS."""
    weights = weights.astype(np.float64)
    is_cls, is_sep, is_punctuation = roles_of_keys
    positions = np.arange(len(weights))
    logs = np.log(np.where(weights > 0, weights, 1.0))  # 0 log 0 = 0
    return np.array(
        [
            -(weights * logs).sum(),
            weights[:, is_cls].sum(),
            weights[:, is_sep].sum(),
            weights[:, is_punctuation].sum(),
            np.trace(weights),
            np.trace(weights, offset=-1),  # row i, column i - 1
            np.trace(weights, offset=1),  # row i, column i + 1
            (weights * np.abs(positions[:, None] - positions[None, :])).sum(),
        ]
    )
