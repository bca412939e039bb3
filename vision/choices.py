"""The vision commands' closed choices, datasets and models, importable without torch (the CLI builds its options
from them; vision.models, where the models are built, imports the training loop and so torch)."""

from enum import Enum

from common.options import parse_names


class DatasetName(str, Enum):
    kmnist = "kmnist"
    digits = "digits"


class ModelName(str, Enum):
    mlp_numpy = "mlp-numpy"
    mlp_torch = "mlp-torch"
    cnn = "cnn"
    cnn_strong = "cnn-strong"

    @property
    def is_cnn(self) -> bool:
        return self in (ModelName.cnn, ModelName.cnn_strong)


def parse_models(text: str, option: str = "--models") -> tuple[ModelName, ...]:
    """'mlp-numpy,cnn' -> (ModelName.mlp_numpy, ModelName.cnn); unknown names raise ConfigError listing choices."""
    return tuple(ModelName(name) for name in parse_names(text, option, [m.value for m in ModelName]))
