"""Attention rollout (Abnar & Zuidema, 2020, "Quantifying Attention Flow in Transformers").

Raw attention of a deep layer mixes tokens that earlier layers already mixed. Rollout follows the
mixing back to the input: average the heads of a layer, add the identity for the residual
connection, renormalise each row, and multiply the layers together from the first to the last.
"""

import numpy as np


def attention_rollout(attentions: np.ndarray) -> np.ndarray:
    """attentions: (L, H, T, T) rows summing to 1 -> (T, T) rollout, rows summing to 1.

    Row i says how much each input token flows into output position i; row 0 is [CLS].
    """
    n_tokens = attentions.shape[-1]
    identity = np.eye(n_tokens)
    joint = identity
    for layer in attentions.astype(np.float64):
        mixed = layer.mean(axis=0) + identity  # (T, T): heads averaged, plus the residual path
        mixed /= mixed.sum(axis=-1, keepdims=True)
        joint = mixed @ joint  # this layer reads what the earlier layers produced
    return joint
