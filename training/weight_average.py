"""An exponential moving average of a model's weights, kept beside training and evaluated in its place."""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from common.errors import ConfigError
from training.weights import trainable_state


class WeightAverage:
    """An exponential moving average of a model's floating-point weights (parameters and float buffers).

    Averaging the weights of the last few hundred steps smooths the noise of the final SGD iterates
    and lands in a flatter region of the loss (Polyak & Juditsky 1992; Izmailov et al. 2018, SWA):
    for fine-tuning it is a cheap, well-known gain. The decay after ``t`` earlier updates is
    ``min(decay, t / (t + 2))``: until ``decay`` takes over (t = 198 for 0.99) the average weights
    the steps so far linearly, the latest most (polynomial-decay averaging, Shamir & Zhang 2013), so
    that a short run averages its own recent weights instead of its starting point, and past that
    point it is the plain moving average whose decay the option names.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.n_updates = 0
        # Frozen parameters would average to themselves: only what trains (and float buffers) is kept.
        self.shadow = {k: v.detach().clone() for k, v in trainable_state(model).items() if v.is_floating_point()}

    def update(self, model: nn.Module) -> None:
        """Move the average towards the model's current weights (call after each optimizer step)."""
        decay = min(self.decay, self.n_updates / (self.n_updates + 2))
        current = model.state_dict()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.shadow.values()), [current[k].detach() for k in self.shadow], 1.0 - decay)
        self.n_updates += 1

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Run the block with the averaged weights in ``model``, then put the trained ones back."""
        current = model.state_dict()
        kept = {k: current[k].detach().clone() for k in self.shadow}
        with torch.no_grad():
            for k, v in self.shadow.items():
                current[k].copy_(v)
        try:
            yield
        finally:
            with torch.no_grad():
                for k, v in kept.items():
                    current[k].copy_(v)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "n_updates": self.n_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        if state["decay"] != self.decay:
            raise ConfigError(
                f"the checkpoint's weight average has decay {state['decay']:g}, this run {self.decay:g}; resume with the original ema_decay"
            )
        missing = sorted(set(self.shadow) - set(state["shadow"]))
        if missing:
            raise ConfigError(
                f"the checkpoint's weight average lacks {len(missing)} trained tensor(s) ({missing[0]}, ...): it was written for "
                "another model or method; resume with the original options"
            )
        self.n_updates = state["n_updates"]
        for k in self.shadow:  # a checkpoint from before averages were kept for trained tensors only holds more
            self.shadow[k].copy_(state["shadow"][k])
