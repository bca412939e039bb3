"""A multilayer perceptron from first principles: NumPy only, no autograd.

Each layer keeps ``forward`` and ``backward`` side by side. ``forward`` caches what ``backward``
needs; ``backward`` takes dLoss/dOutput and returns dLoss/dInput, filling ``grads`` for its
parameters. Parameters and gradients live in dicts with matching names. Every random draw comes
from an ``np.random.Generator`` that the caller passes in.
"""

from dataclasses import dataclass

import numpy as np

from common import ConfigError
from vision.activations import Activation, check_architecture, init_std


class Linear:
    def __init__(self, n_in: int, n_out: int, init_scheme: str, rng: np.random.Generator, dtype=np.float32):
        std = init_std(init_scheme, n_in, n_out)
        self.params = {"W": (rng.standard_normal((n_in, n_out)) * std).astype(dtype), "b": np.zeros(n_out, dtype)}
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}
        # The first layer's input is data: skipping its gradient saves a third of that layer's backward.
        self.needs_input_grad = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x  # (B, D_in)
        return x @ self.params["W"] + self.params["b"]  # (B, D_out)

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        np.matmul(self.x.T, grad_out, out=self.grads["W"])  # (D_in, D_out)
        np.sum(grad_out, axis=0, out=self.grads["b"])  # (D_out,)
        return grad_out @ self.params["W"].T if self.needs_input_grad else None  # (B, D_in)


class ReLU:
    params: dict = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x > 0  # (B, H)
        return x * self.mask

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self.mask


class LeakyReLU:
    params: dict = {}
    slope = 0.01

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.scale = np.where(x > 0, 1.0, self.slope).astype(x.dtype)  # (B, H)
        return x * self.scale

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self.scale


class Tanh:
    params: dict = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.out = np.tanh(x)  # (B, H)
        return self.out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * (1 - self.out * self.out)


class Sigmoid:
    params: dict = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        # Split by sign so exp never overflows for large |x|.
        e = np.exp(-np.abs(x))
        self.out = np.where(x >= 0, 1 / (1 + e), e / (1 + e))  # (B, H)
        return self.out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self.out * (1 - self.out)


class ELU:
    params: dict = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        self.out = np.where(x > 0, x, np.expm1(np.minimum(x, 0)))  # (B, H)
        return self.out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * np.where(self.x > 0, 1, self.out + 1)


class GELU:
    """The tanh approximation (Hendrycks & Gimpel 2016), as torch's ``GELU(approximate='tanh')``."""

    params: dict = {}
    c = np.sqrt(2 / np.pi)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        self.t = np.tanh(self.c * (x + 0.044715 * x**3))  # (B, H)
        return 0.5 * x * (1 + self.t)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x, t = self.x, self.t
        dt = (1 - t * t) * self.c * (1 + 3 * 0.044715 * x * x)
        return grad_out * (0.5 * (1 + t) + 0.5 * x * dt)


ACTIVATION_LAYERS = {
    Activation.RELU: ReLU,
    Activation.LEAKY_RELU: LeakyReLU,
    Activation.TANH: Tanh,
    Activation.SIGMOID: Sigmoid,
    Activation.ELU: ELU,
    Activation.GELU: GELU,
}


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits); backward gives (softmax - onehot) / B, the fused gradient."""

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        shifted = logits - logits.max(axis=1, keepdims=True)  # (B, C), max subtracted: exp cannot overflow
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (B, C)
        self.probs, self.labels = np.exp(log_probs), labels
        return float(-log_probs[np.arange(len(labels)), labels].mean())

    def backward(self) -> np.ndarray:
        grad = self.probs.copy()  # (B, C)
        grad[np.arange(len(self.labels)), self.labels] -= 1
        return grad / len(self.labels)


class MLP:
    """``depth`` hidden layers of ``width`` units, then a linear layer to ``n_classes`` logits.

    ``l2`` adds (l2 / 2) * sum(W**2) over weight matrices (not biases) to the loss.
    """

    # Learned state set by training (and by vision.specs.build_model): the input normalisation.
    input_mean: float
    input_std: float

    def __init__(
        self,
        depth: int,
        width: int,
        activation: Activation,
        rng: np.random.Generator,
        l2: float = 0.0,
        n_inputs: int = 784,
        n_classes: int = 10,
        dtype=np.float32,
    ):
        check_architecture(depth, width)
        if l2 < 0:
            raise ConfigError(f"L2 must be >= 0, got {l2}")
        self.l2 = l2
        sizes = [n_inputs] + [width] * depth
        self.layers: list = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            self.layers += [
                Linear(n_in=fan_in, n_out=fan_out, init_scheme=activation.init_scheme, rng=rng, dtype=dtype),
                ACTIVATION_LAYERS[activation](),
            ]
        # The output layer feeds a softmax, not a rectifier: Xavier init.
        self.layers.append(Linear(n_in=sizes[-1], n_out=n_classes, init_scheme="xavier", rng=rng, dtype=dtype))
        self.layers[0].needs_input_grad = False
        self.loss_layer = SoftmaxCrossEntropy()

    def named_parameters(self):
        """Yield (name, parameter, gradient) for every trainable tensor, e.g. ('layer0.W', W, dW)."""
        for i, layer in enumerate(layer for layer in self.layers if isinstance(layer, Linear)):
            for key, value in layer.params.items():
                yield f"layer{i}.{key}", value, layer.grads[key]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x: (B, D) → logits (B, C)."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def loss(self, x: np.ndarray, labels: np.ndarray) -> float:
        """Data loss plus the L2 penalty, caching what ``backward`` needs."""
        data_loss = self.loss_layer.forward(self.forward(x), labels)
        self.data_loss = data_loss  # reported alone in training curves, like torch's weight decay
        penalty = (
            sum(float(np.vdot(p, p)) for name, p, _ in self.named_parameters() if name.endswith(".W"))
            if self.l2
            else 0.0
        )
        return data_loss + 0.5 * self.l2 * penalty

    def backward(self) -> None:
        """Fill every gradient for the last ``loss`` call."""
        grad = self.loss_layer.backward()
        for layer in reversed(self.layers):
            grad = layer.backward(grad)  # None after the first layer: nothing below it learns
        if self.l2:
            for name, p, g in self.named_parameters():
                if name.endswith(".W"):
                    g += self.l2 * p

    def predict_logits(self, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        return np.concatenate([self.forward(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])

    def n_parameters(self) -> int:
        return sum(p.size for _, p, _ in self.named_parameters())


@dataclass
class SGD:
    """Mini-batch SGD with (heavy-ball) momentum: v = m v + g; p -= lr v (PyTorch's convention)."""

    model: MLP
    momentum: float = 0.9

    def __post_init__(self):
        self.velocity = {name: np.zeros_like(p) for name, p, _ in self.model.named_parameters()}

    def step(self, lr: float) -> None:
        for name, p, g in self.model.named_parameters():
            v = self.velocity[name]
            v *= self.momentum
            v += g
            p -= np.asarray(lr, p.dtype) * v
