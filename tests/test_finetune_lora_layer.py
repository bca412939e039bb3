"""finetune.lora_layer: peft's LoRA linear layer with a leaner forward computes what peft computes."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from finetune.lora_layer import LeanLoraLinear


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(12, 20)
        self.down = nn.Linear(20, 12, bias=False)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def adapted(lean: bool, dropout: float) -> nn.Module:
    """The same random two-layer net with rank-4 adapters (B non-zero, so that the adapters count), peft's or lean."""
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["up", "down"])
    if lean:
        config._register_custom_module({nn.Linear: LeanLoraLinear})
    model = get_peft_model(TwoLayers(), config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    return model


def step(model: nn.Module, x: torch.Tensor, autocast: bool):
    """Output, input gradient and adapter gradients of one forward/backward (dropout drawn from seed 1)."""
    x = x.clone().requires_grad_(True)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = model(x)
    y.float().square().sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return y.float(), x.grad, grads


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_the_lean_layer_matches_peft_in_fp32_values_and_gradients(dropout):
    lean, peft_own = adapted(True, dropout), adapted(False, dropout)
    assert isinstance(lean.base_model.model.up, LeanLoraLinear)
    assert not isinstance(peft_own.base_model.model.up, LeanLoraLinear)
    x = torch.randn(3, 5, 12)  # (B, T, in): the layer flattens and restores the leading dimensions
    y, dx, grads = step(lean, x, autocast=False)
    y_ref, dx_ref, grads_ref = step(peft_own, x, autocast=False)
    assert y.shape == (3, 5, 12)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-5, atol=1e-5)
    assert grads.keys() == grads_ref.keys() and any("lora_A" in n for n in grads)
    for name in grads:
        torch.testing.assert_close(grads[name], grads_ref[name], rtol=1e-5, atol=1e-5)


def relative_error(value: torch.Tensor, exact: torch.Tensor) -> float:
    return float((value.detach().float() - exact).abs().max() / exact.abs().max())


def test_under_bf16_autocast_the_lean_layer_is_as_close_to_fp32_as_peft():
    x = torch.randn(4, 6, 12)
    y, dx, grads = step(adapted(True, 0.0), x, autocast=True)
    y_ref, dx_ref, grads_ref = step(adapted(False, 0.0), x, autocast=True)
    exact, dx_exact, exact_grads = step(adapted(False, 0.0), x, autocast=False)
    # Both round to bf16 (8 bits of mantissa), in different places: neither may stray further from fp32 than the
    # other by more than a little (a wrong gradient is off by far more than 1%).
    pairs = [(y, y_ref, exact), (dx, dx_ref, dx_exact)] + [(grads[n], grads_ref[n], exact_grads[n]) for n in grads]
    for lean, peft_own, fp32 in pairs:
        assert relative_error(lean, fp32) <= 1.5 * relative_error(peft_own, fp32) + 0.01
    assert all(
        g.dtype == torch.float32 for g in grads.values()
    )  # the adapters' gradients land in fp32, as under autocast


def test_merged_adapters_give_the_same_function_as_the_lean_layer():
    model = adapted(True, 0.0).eval()
    x = torch.randn(2, 3, 12)
    with torch.no_grad():
        before = model(x)
        merged = model.merge_and_unload()
        assert type(merged.up) is nn.Linear
        torch.testing.assert_close(merged(x), before, rtol=1e-5, atol=1e-5)
