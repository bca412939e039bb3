"""Check the NumPy MLP's backward pass against central differences in float64."""

import math
from dataclasses import dataclass

import numpy as np

from common import ConfigError
from common.progress import ProgressCallback, no_progress
from vision.activations import Activation
from vision.numpy_mlp import MLP


@dataclass(frozen=True)
class GradcheckConfig:
    depth: int = 2
    width: int = 16
    activation: Activation = Activation.TANH
    l2: float = 1e-3
    batch_size: int = 8
    n_inputs: int = 784
    max_entries: int = 200  # entries checked per tensor, chosen at random: all of a 784x16 matrix takes long
    epsilon: float = 1e-6
    tolerance: float = 1e-6
    seed: int = 0

    def check(self) -> "GradcheckConfig":
        for name in ("batch_size", "n_inputs", "max_entries"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        if not (self.epsilon > 0 and self.tolerance > 0):
            raise ConfigError("epsilon and tolerance must be positive")
        if not (math.isfinite(self.l2) and self.l2 >= 0):
            raise ConfigError(f"L2 must be a finite number >= 0, got {self.l2}; e.g. --l2 1e-3")
        if self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed}; use --seed 0 or above")
        return self


@dataclass(frozen=True)
class TensorCheck:
    name: str
    shape: tuple[int, ...]
    n_checked: int
    relative_error: float  # ||numeric - analytic|| / max(||numeric|| + ||analytic||, tiny)
    max_abs_error: float
    passed: bool


@dataclass(frozen=True)
class GradcheckResult:
    config: GradcheckConfig
    tensors: tuple[TensorCheck, ...]

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.tensors)


def relative_error(numeric: np.ndarray, analytic: np.ndarray) -> float:
    denominator = max(np.linalg.norm(numeric) + np.linalg.norm(analytic), 1e-300)
    return float(np.linalg.norm(numeric - analytic) / denominator)


def check_tensor(
    model: MLP,
    x: np.ndarray,
    labels: np.ndarray,
    param: np.ndarray,
    analytic: np.ndarray,
    entries: np.ndarray,
    epsilon: float,
) -> np.ndarray:
    """Central differences (L(p+e) - L(p-e)) / 2e at the flat ``entries`` of ``param``, restored after."""
    flat = param.reshape(-1)  # a view: writing it perturbs the model
    numeric = np.empty(len(entries))
    for k, i in enumerate(entries):
        original = flat[i]
        flat[i] = original + epsilon
        plus = model.loss(x, labels)
        flat[i] = original - epsilon
        minus = model.loss(x, labels)
        flat[i] = original
        numeric[k] = (plus - minus) / (2 * epsilon)
    return numeric


def run_gradcheck(config: GradcheckConfig, progress: ProgressCallback = no_progress) -> GradcheckResult:
    """Build a float64 MLP on a random batch and compare every gradient tensor with finite differences."""
    config.check()
    rng = np.random.default_rng(config.seed)
    model = MLP(
        depth=config.depth,
        width=config.width,
        activation=config.activation,
        rng=rng,
        l2=config.l2,
        n_inputs=config.n_inputs,
        dtype=np.float64,
    )
    x = rng.standard_normal((config.batch_size, config.n_inputs))  # (B, D) float64
    labels = rng.integers(0, 10, config.batch_size)  # (B,)
    model.loss(x, labels)
    model.backward()
    analytic = {name: grad.copy() for name, _, grad in model.named_parameters()}
    named = list(model.named_parameters())
    checks = []
    for done, (name, param, _) in enumerate(named):
        n_checked = min(config.max_entries, param.size)
        entries = rng.choice(param.size, size=n_checked, replace=False)
        numeric = check_tensor(
            model=model,
            x=x,
            labels=labels,
            param=param,
            analytic=analytic[name],
            entries=entries,
            epsilon=config.epsilon,
        )
        expected = analytic[name].reshape(-1)[entries]
        error = relative_error(numeric, expected)
        checks.append(
            TensorCheck(
                name=name,
                shape=param.shape,
                n_checked=n_checked,
                relative_error=error,
                max_abs_error=float(np.max(np.abs(numeric - expected))),
                passed=error <= config.tolerance,
            )
        )
        progress("gradcheck", done + 1, len(named))
    return GradcheckResult(config, tuple(checks))
