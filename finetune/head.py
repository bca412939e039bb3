"""Start the new classification head from a linear probe of the frozen model (LP-FT).

A randomly initialised head sends large, noisy gradients into the pretrained layers during the
first steps and distorts the features before the head has learnt anything (Kumar et al., 2022,
"Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution"). Fitting the
head first as a logistic regression on the frozen features it will read, then fine-tuning every
parameter from there, avoids that. This is not `mlx probe logreg` (standardised features, C chosen
on validation): it reads the unscaled input of the head's last linear layer, with C = 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from common import ConfigError
from common.schema import read_checked_json
from probes.logreg import fit_quietly
from training.distributed import DistInfo
from training.predict import predict

PROBE_C = 1.0  # inverse L2 strength of the head's logistic regression (scikit-learn's default)


@dataclass(frozen=True)
class HeadFit:
    train_accuracy: float  # the probe head's accuracy on the rows it was fitted on
    seconds: float
    n_rows: int


HEAD_FIT_SCHEMA = {"train_accuracy": (float, int), "seconds": (float, int), "n_rows": (int,)}


def read_head_fit(path: Path) -> HeadFit:
    """A ``HeadFit`` saved as JSON (a resumed run's record names the probe head it started from)."""
    return HeadFit(**read_checked_json(path, HEAD_FIT_SCHEMA, "delete it, or pass --force to start the run over"))


def classifier_layer(model: nn.Module, n_classes: int) -> nn.Linear:
    """The last linear layer that outputs ``n_classes`` logits (BERT's ``classifier``, RoBERTa's
    ``classifier.out_proj``, GPT-2's ``score``): the layer the probe replaces."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == n_classes]
    if not layers:
        raise ConfigError(
            f"--head-init probe: found no linear layer with {n_classes} outputs in this model's head; use --head-init random"
        )
    return layers[-1]


def probe_head(
    model: nn.Module,
    batches: list,
    labels: np.ndarray,
    n_classes: int,
    device: torch.device,
    autocast: str | None,
    dist: DistInfo,
    seed: int,
) -> HeadFit:
    """Fit the classifier layer of ``model`` as a logistic regression on the features it receives.

    ``batches`` are (inputs, targets) scoring batches in the order of ``labels``. Under DDP each rank
    encodes every world-size-th batch, the features are gathered, and every rank fits the same
    (deterministic) regression, so all ranks start from the same head.
    """
    started = time.perf_counter()
    layer = classifier_layer(model, n_classes)
    features = predict(model, batches, device, autocast=autocast, dist=dist, features_of=layer).numpy()  # (N, D)
    present = np.unique(labels)
    if len(present) < 2:
        raise ConfigError(
            "--head-init probe needs at least two classes among the training rows; use --head-init random"
        )
    regression = LogisticRegression(C=PROBE_C, max_iter=1000, random_state=seed, fit_intercept=layer.bias is not None)
    fit_quietly(regression, features, labels)
    weight, bias = head_parameters(regression, n_classes)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight, dtype=layer.weight.dtype))
        if layer.bias is not None:
            layer.bias.copy_(torch.as_tensor(bias, dtype=layer.bias.dtype))
    logits = features @ weight.T + (bias if layer.bias is not None else 0.0)  # the head as installed
    accuracy = float(np.mean(logits.argmax(axis=1) == labels))
    return HeadFit(accuracy, time.perf_counter() - started, len(labels))


ABSENT_CLASS_BIAS = -10.0  # a class with no training rows: a logit far below the others until training moves it


def head_parameters(regression, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, D) weights and (C,) biases of a linear layer that scores like ``regression`` over all ``n_classes``.

    scikit-learn keeps one row per class it saw (``classes_``), and for two classes a single row: the
    log-odds of the second, split here as -w/2 and +w/2 so that the softmax of the two logits is its sigmoid.
    A class it never saw gets zero weights and a low bias.
    """
    coef = np.asarray(regression.coef_, dtype=np.float64)
    intercept = np.broadcast_to(np.asarray(regression.intercept_, dtype=np.float64), (coef.shape[0],))
    if len(regression.classes_) == 2:
        coef, intercept = np.stack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = np.zeros((n_classes, coef.shape[1]))
    bias = np.full(n_classes, ABSENT_CLASS_BIAS)
    weight[regression.classes_], bias[regression.classes_] = coef, intercept
    return weight, bias
