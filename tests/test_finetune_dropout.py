"""finetune.dropout: nn.Dropout's distribution from a faster random source, undone after training."""

import json

import pytest
import torch
from torch import nn

from finetune.dropout import ATTENTION_NAME, FastDropout, apply_dropout, fast_dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_keep_mask_drops_p_and_scales_the_rest(p):
    torch.manual_seed(0)
    mask = keep_mask((400, 1000), p, torch.float32)
    assert torch.allclose(mask[mask != 0], torch.tensor(1 / (1 - p)))
    dropped = float((mask == 0).float().mean())
    assert abs(dropped - p) < 4 * (p * (1 - p) / mask.numel()) ** 0.5  # within 4 standard errors
    assert abs(float(mask.mean()) - 1.0) < 0.01  # expectation kept, as nn.Dropout does


def test_masks_follow_torchs_seed_and_differ_between_calls():
    torch.manual_seed(3)
    a, b = keep_mask((64, 64), 0.1, torch.float32), keep_mask((64, 64), 0.1, torch.float32)
    torch.manual_seed(3)
    assert torch.equal(keep_mask((64, 64), 0.1, torch.float32), a)  # resume restores torch's RNG: same masks
    assert not torch.equal(a, b)


def test_gradient_flows_through_kept_units_only():
    torch.manual_seed(0)
    x = torch.randn(50, 40, requires_grad=True)
    out = apply_dropout(x, 0.2, training=True)
    out.sum().backward()
    kept = out.detach() != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.8))
    assert torch.all(x.grad[~kept] == 0)
    assert apply_dropout(x, 0.2, training=False) is x


def _classifier(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3)


def test_the_model_is_unchanged_in_eval_and_restored_after(tiny_bert, tmp_path):
    model = _classifier(tiny_bert).eval()
    ids = torch.randint(5, 60, (4, 12))
    mask = torch.ones(4, 12, dtype=torch.long)
    mask[1, 7:] = 0  # padding takes the masked path
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
    with fast_dropout(model):
        assert model.config._attn_implementation == ATTENTION_NAME
        assert any(isinstance(m, FastDropout) for m in model.modules())
        with torch.no_grad():
            assert torch.allclose(model(input_ids=ids, attention_mask=mask).logits, before, atol=1e-6)
        model.train()
        runs = []
        for _ in range(2):
            torch.manual_seed(7)
            runs.append(model(input_ids=ids, attention_mask=mask).logits)
        assert torch.equal(runs[0], runs[1])  # seeded: a resumed run replays the same masks
        assert not torch.allclose(runs[0], before)  # and dropout is really applied in training
        runs[0].sum().backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model.config._attn_implementation == "sdpa"
    assert not any(isinstance(m, FastDropout) for m in model.modules())
    assert sum(type(m) is nn.Dropout for m in model.modules()) > 0
    model.save_pretrained(tmp_path / "saved")
    assert ATTENTION_NAME not in (tmp_path / "saved" / "config.json").read_text()
    json.loads((tmp_path / "saved" / "config.json").read_text())


def test_training_attention_matches_sdpa_without_dropout(tiny_bert):
    """The written-out attention (used only when dropout is on) computes what SDPA computes."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from finetune.dropout import attention_with_fast_dropout

    module = nn.Module()
    module.is_causal = False
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 9, 16) for _ in range(3))
    attend = torch.ones(2, 1, 9, 9, dtype=torch.bool)
    attend[1, :, :, 6:] = False
    expected, _ = sdpa_attention_forward(module, q, k, v, attend, dropout=0.0)
    module.training = True
    got, weights = attention_with_fast_dropout(module, q, k, v, attend, dropout=1e-12)  # the written-out path
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.all(weights[1, :, :, 6:] == 0)


def test_causal_attention_is_left_to_sdpa(monkeypatch):
    """A decoder's attention may come with no mask and rely on SDPA's is_causal: never written out without it."""
    import transformers.integrations.sdpa_attention as sdpa

    from finetune.dropout import attention_with_fast_dropout

    calls = []
    monkeypatch.setattr(sdpa, "sdpa_attention_forward", lambda *args, **kwargs: calls.append(kwargs) or ("sdpa", None))
    module = nn.Module()
    module.is_causal = True
    q = torch.randn(1, 2, 4, 8)
    assert attention_with_fast_dropout(module, q, q, q, None, dropout=0.1)[0] == "sdpa"
    assert calls and calls[0]["dropout"] == 0.1
