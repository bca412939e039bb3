"""The vision commands' closed choices, datasets and models, importable without torch (the CLI builds its options
from them; vision.specs, where the models are built from them, imports the training loop and so torch)."""

from enum import Enum

from common.options import parse_names


class DatasetName(str, Enum):
    KMNIST = "kmnist"
    DIGITS = "digits"


class ModelName(str, Enum):
    MLP_NUMPY = "mlp-numpy"
    MLP_TORCH = "mlp-torch"
    CNN = "cnn"
    CNN_STRONG = "cnn-strong"

    @property
    def is_cnn(self) -> bool:
        return self in (ModelName.CNN, ModelName.CNN_STRONG)


def parse_models(text: str, option: str = "--models") -> tuple[ModelName, ...]:
    """'mlp-numpy,cnn' -> (ModelName.MLP_NUMPY, ModelName.CNN); unknown names raise ConfigError listing choices."""
    return tuple(ModelName(name) for name in parse_names(text, option, [m.value for m in ModelName]))
