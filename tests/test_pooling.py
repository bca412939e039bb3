"""Pooling math against hand-computed references, and padding invariance on a real (tiny) BERT."""

import numpy as np
import pytest
import torch

from common import ConfigError
from text.pooling import Pooling, max_pool, mean_pool, parse_poolings, pool_layer

# Two texts: the first has 3 real tokens, the second 1 (then padding with huge values that must not leak).
HIDDEN = torch.tensor(
    [
        [[1.0, 2.0], [3.0, -4.0], [5.0, 0.0], [100.0, 100.0]],
        [[-1.0, 7.0], [900.0, 900.0], [900.0, 900.0], [900.0, 900.0]],
    ]
)  # (B=2, T=4, H=2)
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])


def test_mean_and_max_ignore_padding():
    np.testing.assert_allclose(mean_pool(HIDDEN, MASK).numpy(), [[3.0, -2 / 3], [-1.0, 7.0]], rtol=1e-6)
    np.testing.assert_allclose(max_pool(HIDDEN, MASK).numpy(), [[5.0, 2.0], [-1.0, 7.0]])


def test_every_strategy_by_hand():
    first = HIDDEN * 3  # a made-up first layer
    pooled = pool_layer(tuple(p for p in Pooling if p is not Pooling.POOLER), HIDDEN, first, MASK)
    np.testing.assert_allclose(pooled[Pooling.CLS].numpy(), [[1.0, 2.0], [-1.0, 7.0]])
    np.testing.assert_allclose(
        pooled[Pooling.MEAN_MAX].numpy(), [[3.0, -2 / 3, 5.0, 2.0], [-1.0, 7.0, -1.0, 7.0]], rtol=1e-6
    )
    # mean of (h1 + hL)/2 = 2 * mean(hL) here
    np.testing.assert_allclose(pooled[Pooling.FIRST_LAST_AVG].numpy(), 2 * mean_pool(HIDDEN, MASK).numpy(), rtol=1e-6)


def test_parse_poolings_all_and_errors():
    assert parse_poolings(["all"]) == tuple(Pooling)
    assert parse_poolings(["max,cls", "cls"]) == (Pooling.CLS, Pooling.MAX)
    with pytest.raises(ConfigError, match="unknown pooling 'avg'; choose from: cls, mean"):
        parse_poolings(["avg"])


def test_padding_never_leaks_through_a_real_model(tiny_bert):
    """A text pooled alone equals the same text pooled beside a much longer one."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(tiny_bert), AutoModel.from_pretrained(tiny_bert).eval()
    short, long = "oil prices", "the team won the cup match after a long season " * 4
    poolings = (Pooling.CLS, Pooling.MEAN, Pooling.MAX, Pooling.FIRST_LAST_AVG)

    def pooled(texts):
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            states = model(**batch, output_hidden_states=True).hidden_states
        return pool_layer(poolings, states[-1], states[1], batch["attention_mask"])

    alone, padded = pooled([short]), pooled([short, long])
    for p in poolings:
        np.testing.assert_allclose(alone[p][0].numpy(), padded[p][0].numpy(), atol=1e-5, err_msg=p.value)
