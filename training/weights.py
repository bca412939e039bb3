"""The weights a checkpoint keeps (those that train, and every buffer) and how they are put back."""

from collections.abc import Mapping

import torch
from torch import nn

from common.errors import ConfigError


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The part of ``model.state_dict()`` that a checkpoint keeps: the parameters that train and every buffer.

    Frozen parameters (a LoRA or BitFit run's pretrained weights, an unused pooler) are rebuilt by
    whoever builds the model, from the same source, so a LoRA checkpoint of MiniLM holds 0.3 M values, not 22.7 M.
    """
    return {
        k: v.detach()
        for k, v in model.state_dict(keep_vars=True).items()
        if not isinstance(v, nn.Parameter) or v.requires_grad
    }


def load_trainable_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load a checkpoint's weights (``trainable_state``, or a whole state dict) into ``model``.

    Refused (ConfigError) when the checkpoint lacks a tensor that trains here or holds one ``model`` does not
    have: it was written for another model or method.
    """
    missing, unexpected = model.load_state_dict(state, strict=False)
    frozen = {
        k for k, v in model.state_dict(keep_vars=True).items() if isinstance(v, nn.Parameter) and not v.requires_grad
    }
    missing = [k for k in missing if k not in frozen]
    if missing or unexpected:
        raise ConfigError(
            f"the checkpoint does not fit this model ({len(missing)} trained tensor(s) missing, e.g. {missing[:1]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:1]}): it was written for another model or method; "
            "resume with the original options or pass --force to start over"
        )


def checkpoint_weights(saved: dict) -> dict:
    """The weights a checkpoint stands for: its weight average where training kept one, else the model's."""
    weights = dict(saved["model"])
    if saved.get("ema") is not None:
        weights.update(saved["ema"]["shadow"])
    return weights
