"""PyTorch networks for images: an MLP mirroring the NumPy one (vision/numpy_mlp.py), and a configurable CNN family.

Both take (B, 1, 28, 28) float inputs in [0, 1] and standardise them inside the model (so that
augmentation can zero-fill with the true background value first), returning (B, C) logits.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from common import ConfigError
from vision.activations import Activation, check_architecture, init_std


class Standardize(nn.Module):
    """(x - mean) / std with constants fixed at construction (saved with the model)."""

    mean: torch.Tensor  # buffers, registered below
    std: torch.Tensor

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def torch_activation(activation: Activation) -> nn.Module:
    factories: dict[Activation, Callable[[], nn.Module]] = {
        Activation.RELU: nn.ReLU,
        Activation.LEAKY_RELU: lambda: nn.LeakyReLU(0.01),
        Activation.TANH: nn.Tanh,
        Activation.SIGMOID: nn.Sigmoid,
        Activation.GELU: lambda: nn.GELU(approximate="tanh"),
        Activation.ELU: nn.ELU,
    }
    return factories[activation]()


class TorchMLP(nn.Module):
    """depth hidden layers of ``width`` units; the same architecture and init as vision.numpy_mlp.MLP."""

    def __init__(
        self,
        depth: int,
        width: int,
        activation: Activation,
        n_inputs: int = 784,
        n_classes: int = 10,
        mean: float = 0.0,
        std: float = 1.0,
    ):
        super().__init__()
        check_architecture(depth, width)
        layers: list[nn.Module] = [Standardize(mean, std), nn.Flatten()]
        sizes = [n_inputs] + [width] * depth
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), torch_activation(activation)]
        layers.append(nn.Linear(sizes[-1], n_classes))
        self.net = nn.Sequential(*layers)
        linears = [module for module in self.net if isinstance(module, nn.Linear)]
        for i, linear in enumerate(linears):
            scheme = "xavier" if i == len(linears) - 1 else activation.init_scheme
            nn.init.normal_(linear.weight, 0.0, init_std(scheme, linear.in_features, linear.out_features))
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) → (B, C)
        return self.net(x)


@dataclass(frozen=True)
class CNNConfig:
    """``depth`` conv blocks (two 3x3 convs each); block i has ``width * 2**i`` channels.

    The first ``n_pools`` blocks end with a 2x2 max pool (2: 28 → 14 → 7, later blocks keep 7x7;
    3: 28 → 14 → 7 → 3). A global average pool and one linear layer make the head, so the
    parameter count does not grow with the image size.
    """

    depth: int = 3
    width: int = 32
    activation: Activation = Activation.RELU
    batch_norm: bool = True
    dropout: float = 0.0
    n_pools: int = 2

    def check(self) -> "CNNConfig":
        check_architecture(self.depth, self.width)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout}")
        if not 0 <= self.n_pools <= 3:
            raise ConfigError(
                f"CNN pooling: {self.n_pools} pooled blocks, expected 0..3 (28 px halves to 3 px after three)"
            )
        return self


def conv_block(c_in: int, c_out: int, config: CNNConfig, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for channels_in in (c_in, c_out):
        layers.append(nn.Conv2d(channels_in, c_out, 3, padding=1, bias=not config.batch_norm))
        if config.batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(torch_activation(config.activation))
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class CNN(nn.Module):
    def __init__(self, config: CNNConfig, n_classes: int = 10, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        config.check()
        self.standardize = Standardize(mean, std)
        blocks, c_in = [], 1
        for i in range(config.depth):
            c_out = config.width * 2**i
            blocks.append(conv_block(c_in, c_out, config, pool=i < config.n_pools))
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(config.dropout), nn.Linear(c_in, n_classes)
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) → (B, C)
        return self.head(self.features(self.standardize(x)))


class Ensemble(nn.Module):
    """Several networks trained side by side on the same batches; the prediction averages their probabilities.

    In training the output is (B, C, K) logits, one column per member, for :func:`member_loss` (each
    member learns on its own loss, as if trained alone); in evaluation it is (B, C) log mean
    probability, so argmax, softmax and cross-entropy treat the ensemble as one model.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([member(x) for member in self.members], dim=-1)  # (B, C, K)
        if self.training:
            return logits
        return torch.logsumexp(torch.log_softmax(logits, dim=1), dim=-1) - math.log(len(self.members))


def member_loss(label_smoothing: float = 0.0):
    """Cross-entropy of (B, C) outputs; for (B, C, K) ensemble outputs the mean over members as the value
    and the sum as the gradient, so that each member gets the full gradient of its own loss (as if
    trained alone: under SGD a mean would train each at lr / K)."""

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if outputs.ndim == 2:
            return nn.functional.cross_entropy(outputs, targets, label_smoothing=label_smoothing)
        n_members = outputs.shape[-1]
        targets = targets.unsqueeze(1).expand(-1, n_members)  # (B, K)
        mean = nn.functional.cross_entropy(outputs, targets, label_smoothing=label_smoothing)
        return mean + (n_members - 1) * (mean - mean.detach())  # value: the mean; gradient: the sum

    return loss


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
