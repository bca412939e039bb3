"""peft's LoRA linear layer with a leaner training step on CPU: the same function, fewer passes over memory.

peft builds, saves, loads and merges the adapters; this module only replaces the arithmetic of
``peft.tuners.lora.layer.Linear.forward`` (registered through peft's custom-module hook, so the
layer keeps peft's parameters, state-dict names, ``merge``/``unmerge`` and adapter format).

Why: profiling MiniLM on AG News rows (batches of 32 x 65 tokens, bf16 autocast, one thread, this
project's Xeon) put peft's LoRA step at 1.1x a full fine-tuning step although the frozen encoder
skips every weight gradient (BitFit's step: 0.74x). The rank-8 products themselves are about 1.5% of
the encoder's FLOPs; the cost was in passes over activation-sized tensors, each about as slow on
this CPU as the layer's bf16 matrix product (AMX):

- peft casts the layer's input to the adapters' fp32 and autocast casts it back to bf16 for
  ``lora_A``: two copies of the input per adapted layer (and two casts of its gradient back);
- ``result + lora_B(h) * scaling`` writes the output-sized update, scales it and adds it: three
  passes over the output (and a scaled copy of its gradient in backward);
- the input's gradient arrives in two pieces (base and adapter) that autograd adds in one more pass.

Here the forward is ``y = x W^T + b`` then ``y += s (x A^T) B^T`` in place (``addmm_``), on one
cast of ``x``; the backward computes ``dx = g W`` and adds ``s (g B) A`` into it in place, and the
adapters' gradients ``s (g B)^T x`` and ``s g^T (x A^T)``. Weight gradients of the frozen base are
never formed. The products run in the autocast dtype like autocast's own ``linear`` (bf16 inputs,
fp32 accumulation, bf16 outputs), and the adapters' gradients reach their fp32 weights through the
cast, as under autocast; the rounding differs from peft's by where the scaling and the sum are
rounded (one bf16 rounding of ``x W^T + b + s h B^T`` here, three in peft). In fp32 the two agree to
float rounding (tests/test_finetune_methods.py).

Anything this fast path does not cover (LoRA variants such as DoRA, several active adapters,
merged or disabled adapters, extra forward arguments) goes through peft's own forward.
"""

from __future__ import annotations

import typing

import torch
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from torch import nn


class _LoraLinearFunction(torch.autograd.Function):
    """``y = x W^T + b + s (x_a A^T) B^T`` and its gradients for ``x``, ``x_a``, ``b``, ``A``, ``B`` (not ``W``).

    x: (N, in); x_a: the adapters' input, None for ``x`` itself (no dropout); W: (out, in);
    b: (out,) or None; A: (r, in); B: (out, r); all in one dtype. Returns y: (N, out).
    """

    @staticmethod
    def forward(ctx, x, x_a, weight, bias, lora_a, lora_b, scaling: float):
        shared = x_a is None
        x_a = x if shared else x_a
        h = x_a @ lora_a.t()  # (N, r)
        y = torch.addmm(bias, x, weight.t()) if bias is not None else x @ weight.t()  # (N, out)
        y.addmm_(h, lora_b.t(), alpha=scaling)
        ctx.save_for_backward(x_a, weight, lora_a, lora_b, h)
        ctx.scaling, ctx.shared = scaling, shared
        return y

    @staticmethod
    def backward(ctx, grad):  # grad: (N, out)
        x_a, weight, lora_a, lora_b, h = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_h = (grad @ lora_b).mul_(ctx.scaling)  # (N, r)
        grad_x = grad_x_a = grad_bias = grad_a = grad_b = None
        if needs[0]:
            grad_x = grad @ weight  # (N, in)
            if ctx.shared:
                grad_x.addmm_(grad_h, lora_a)  # the adapters' share, added in place
        if needs[1]:
            grad_x_a = grad_h @ lora_a
        if needs[3]:
            grad_bias = grad.sum(0)
        if needs[4]:
            grad_a = grad_h.t() @ x_a  # (r, in)
        if needs[5]:
            grad_b = (grad.t() @ h).mul_(ctx.scaling)  # (out, r)
        return grad_x, grad_x_a, None, grad_bias, grad_a, grad_b, None


class LeanLoraLinear(PeftLoraLinear):
    """peft's ``lora.Linear`` whose forward runs :class:`_LoraLinearFunction` for one plain active adapter."""

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        active = [name for name in self.active_adapters if name in self.lora_A]
        plain = len(active) == 1 and active[0] not in self.lora_variant and not self.fan_in_fan_out
        # A base weight that trains (not LoRA's case) needs its gradient: peft's forward computes it.
        if self.disable_adapters or self.merged or args or kwargs or not plain or self.base_layer.weight.requires_grad:
            return super().forward(x, *args, **kwargs)
        name = active[0]
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype

        def cast(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(dtype)

        flat = x.reshape(-1, x.shape[-1])  # (N, in)
        dropout = self.lora_dropout[name]
        x_a = None if isinstance(dropout, nn.Identity) else cast(dropout(flat))
        # nn.Module types submodules' attributes as Tensor | Module; here they are nn.Linear layers.
        base, lora_a, lora_b = (
            typing.cast(nn.Linear, m) for m in (self.base_layer, self.lora_A[name], self.lora_B[name])
        )
        y = _LoraLinearFunction.apply(
            cast(flat),
            x_a,
            cast(base.weight),
            cast(base.bias),
            cast(lora_a.weight),
            cast(lora_b.weight),
            self.scaling[name],
        )
        return y.view(*x.shape[:-1], y.shape[-1])
