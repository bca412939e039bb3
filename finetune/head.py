"""Start the new classification head from a linear probe of the frozen model (LP-FT).

A randomly initialised head sends large, noisy gradients into the pretrained layers during the
first steps and distorts the features before the head has learnt anything (Kumar et al., 2022,
"Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution"). Fitting the
head first as a logistic regression on the frozen features it will read, then fine-tuning every
parameter from there, avoids that: the study's probe becomes the fine-tune's starting point.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from common import ConfigError

PROBE_C = 1.0  # inverse L2 strength of the head's logistic regression (scikit-learn's default)


@dataclass(frozen=True)
class HeadFit:
    train_accuracy: float  # the probe head's accuracy on the rows it was fitted on
    seconds: float
    n_rows: int


def classifier_layer(model, n_classes: int):
    """The last linear layer that outputs ``n_classes`` logits (BERT's ``classifier``, RoBERTa's
    ``classifier.out_proj``, GPT-2's ``score``): the layer the probe replaces."""
    from torch import nn

    layers = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == n_classes]
    if not layers:
        raise ConfigError(
            f"--head-init probe: found no linear layer with {n_classes} outputs in this model's head; use --head-init random"
        )
    return layers[-1]


def probe_head(model, batches: list, labels: np.ndarray, n_classes: int, device, autocast: str | None, dist, seed: int):
    """Fit the classifier layer of ``model`` as a logistic regression on the features it receives.

    ``batches`` are (inputs, targets) scoring batches in the order of ``labels``. Under DDP each rank
    encodes every world-size-th batch, the features are gathered, and every rank fits the same
    (deterministic) regression, so all ranks start from the same head.
    """
    import torch
    from sklearn.linear_model import LogisticRegression

    from common.training import predict

    started = time.perf_counter()
    layer = classifier_layer(model, n_classes)
    features = predict(model, batches, device, autocast=autocast, dist=dist, features_of=layer).numpy()  # (N, D)
    regression = LogisticRegression(
        C=PROBE_C, max_iter=1000, random_state=seed, fit_intercept=layer.bias is not None
    ).fit(features, labels)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(regression.coef_, dtype=layer.weight.dtype))
        if layer.bias is not None:
            layer.bias.copy_(torch.as_tensor(regression.intercept_, dtype=layer.bias.dtype))
    accuracy = float(regression.score(features, labels))
    return HeadFit(accuracy, time.perf_counter() - started, len(labels))
