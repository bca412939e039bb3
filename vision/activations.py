"""Activation names shared by the NumPy and PyTorch models, their init schemes, architecture checks."""

import math
from enum import Enum

from common import ConfigError
from common.options import unknown_choice


class Activation(str, Enum):
    RELU = "relu"
    LEAKY_RELU = "leaky-relu"
    TANH = "tanh"
    SIGMOID = "sigmoid"
    GELU = "gelu"
    ELU = "elu"

    @property
    def init_scheme(self) -> str:
        """He init for the rectifier family (keeps activation variance through ReLU), Xavier for squashing ones."""
        return "xavier" if self in (Activation.TANH, Activation.SIGMOID) else "he"


def init_std(scheme: str, fan_in: int, fan_out: int) -> float:
    """He: sqrt(2 / fan_in) (He et al. 2015); Xavier: sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    return math.sqrt(2.0 / fan_in) if scheme == "he" else math.sqrt(2.0 / (fan_in + fan_out))


def parse_activation(name: str) -> Activation:
    try:
        return Activation(name.strip().lower().replace("_", "-"))
    except ValueError:
        raise ConfigError(unknown_choice("--activation", name, (a.value for a in Activation))) from None


def check_architecture(depth: int, width: int) -> None:
    if depth < 1:
        raise ConfigError(f"depth must be at least 1 (hidden layers or conv blocks), got {depth}")
    if width < 1:
        raise ConfigError(f"width must be at least 1 (units or channels), got {width}")
