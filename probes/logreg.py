"""Multinomial logistic regression on standardised features, with C chosen on a validation split."""

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from common import ConfigError
from common.splits import stratified_split
from text.validation import VALIDATION_FRACTION

log = logging.getLogger(__name__)


class LogRegProbe:
    """Standardise, then multinomial logistic regression (lbfgs). ``fit`` returns self.

    Standardising matters: pooled BERT features have a few dimensions with huge magnitude
    (the "outlier dimensions"), which dominate an unscaled L2 penalty.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000, seed: int = 0):
        self.C = C
        self.max_iter = max_iter
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> "LogRegProbe":
        """X: (N, D) float32; y: (N,) integer labels with at least two classes."""
        if not self.C > 0:
            raise ConfigError(f"C must be positive, got {self.C!r}; pass e.g. --C 0.01,0.1,1,10")
        self.scaler_ = StandardScaler().fit(X)
        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed)
        fit_quietly(self.model_, self.scaler_.transform(X), y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(self.scaler_.transform(X))

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y)))


def fit_quietly(model: LogisticRegression, X: np.ndarray, y: np.ndarray) -> None:
    """Fit with one BLAS thread; a convergence failure is logged once, not warned per call."""
    # One BLAS thread: lbfgs makes thousands of small (N, D) x (D, C) products, and idle BLAS
    # threads spinning on busy cores made a 10k x 384 fit 30x slower (12 s instead of 0.4 s).
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(X, y)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.warning("logistic regression with C=%g did not converge in %d iterations", model.C, model.max_iter)


# Log-spaced over six decades, three points per decade (1, 2.15, 4.64): standardised 384-d sentence
# embeddings want C around 1e-3 (AG News, minilm), sparser or lower-dimensional features want 1..100.
# Warm starts along the path make the extra points cheap.
DEFAULT_CS = tuple(float(f"{c:.3g}") for c in np.logspace(-4, 2, 19))


# At an edge the grid extends, by the default grid's own step (a third of a decade), until the chosen C
# is interior or these bounds are passed: a C beyond them would mean the features carry no signal
# (below) or the probe does not regularise at all (above).
C_LIMITS = (1e-7, 1e5)
C_STEP = 10 ** (1 / 3)


@dataclass(frozen=True)
class CSelection:
    """Validation accuracy (and log loss) of every candidate C, the one chosen and how the grid grew."""

    C: float
    validation_accuracy: dict[float, float]
    n_fit: int
    n_validation: int
    validation_loss: dict[float, float] = field(default_factory=dict)
    extended: tuple[float, ...] = ()  # Cs added beyond the given grid because the choice lay on its edge

    @property
    def on_edge(self) -> bool:
        """The chosen C is the smallest or largest tried (even after extending): the best may lie outside."""
        grid = sorted(self.validation_accuracy)
        return len(grid) > 1 and self.C in (grid[0], grid[-1])

    @property
    def grid(self) -> tuple[float, ...]:
        return tuple(sorted(self.validation_accuracy))


def select_C(
    X: np.ndarray,
    y: np.ndarray,
    Cs: tuple[float, ...],
    validation_fraction: float = VALIDATION_FRACTION,
    seed: int = 0,
    max_iter: int = 1000,
) -> CSelection:
    """Fit one probe per C on train minus the validation split, return the C with the best validation accuracy.

    The validation rows are the text runs' one split (text.validation: this fraction, this seed).
    Cs are fitted from the smallest up, each fit starting from the previous solution (a
    regularisation path), so a wide grid costs little more than a few cold fits. Ties in accuracy go
    to the lower validation log loss (on an accuracy plateau at tiny C the probabilities flatten
    towards uniform), then to the smaller C. A choice on the edge of the grid extends it by
    ``C_STEP`` until the choice is interior or ``C_LIMITS`` is reached. Test data are never seen here.
    """
    if not Cs:
        raise ConfigError("no C values given; pass e.g. --C 0.01,0.1,1,10")
    for C in Cs:
        if not C > 0:
            raise ConfigError(f"C must be positive, got {C!r}; pass e.g. --C 0.01,0.1,1,10")
    fit_rows, validation_rows = stratified_split(y, validation_fraction, seed, what="validation")
    scaler = StandardScaler().fit(X[fit_rows])
    X_fit, X_validation = scaler.transform(X[fit_rows]), scaler.transform(X[validation_rows])
    model = LogisticRegression(max_iter=max_iter, random_state=seed, warm_start=True)
    accuracy, loss = {}, {}

    def score(C: float) -> None:
        model.set_params(C=C)
        fit_quietly(model, X_fit, y[fit_rows])
        accuracy[C] = float(np.mean(model.predict(X_validation) == y[validation_rows]))
        loss[C] = float(log_loss(y[validation_rows], model.predict_proba(X_validation), labels=model.classes_))
        log.info("C=%g: validation accuracy %.4f, log loss %.4f", C, accuracy[C], loss[C])

    for C in sorted(set(Cs)):
        score(C)
    extended = []
    while len(accuracy) > 1:
        chosen, grid = _best(accuracy, loss), sorted(accuracy)
        if chosen not in (grid[0], grid[-1]):
            break
        beyond = float(f"{chosen / C_STEP if chosen == grid[0] else chosen * C_STEP:.3g}")
        if not C_LIMITS[0] <= beyond <= C_LIMITS[1] or beyond in accuracy:
            break
        score(beyond)
        extended.append(beyond)
    if extended:
        log.info("C grid extended to %s: C=%g chosen", ", ".join(f"{c:g}" for c in extended), _best(accuracy, loss))
    return CSelection(
        C=_best(accuracy, loss),
        validation_accuracy=accuracy,
        n_fit=len(fit_rows),
        n_validation=len(validation_rows),
        validation_loss=loss,
        extended=tuple(extended),
    )


def _best(accuracy: dict[float, float], loss: dict[float, float]) -> float:
    return min(accuracy, key=lambda C: (-accuracy[C], loss[C], C))
