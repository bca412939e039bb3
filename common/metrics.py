"""The one macro-F1 and the one per-class table every command reports, so that `mlx report` compares like with like."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over the classes in play: those in the truth or the predictions (N,) int labels.

    Classes absent from both have no F1; averaging their 0 would understate the score.
    """
    from sklearn.metrics import f1_score

    labels = np.union1d(y_true, y_pred)
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


@dataclass(frozen=True)
class ClassMetrics:
    """One class's scores on a test set; 0.0 where a ratio has nothing to divide by (no prediction, no example)."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int  # examples of the class in the truth


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(N,) int labels in 0..C-1, twice -> (C, C) int64 counts, rows = true class, columns = predicted."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if len(y_true) and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n_classes):
        raise ValueError(f"bug: labels outside 0..{n_classes - 1}")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_metrics(confusion: np.ndarray, class_names: Sequence[str]) -> tuple[ClassMetrics, ...]:
    """Precision, recall, F1 and support of each class from a (C, C) confusion matrix (rows = true class).

    F1 is 2·TP / (support + predicted), not 2PR / (P + R): the same value without a second rounding,
    and the form scikit-learn uses, so these numbers equal ``precision_recall_fscore_support``'s.
    """
    confusion = np.asarray(confusion, dtype=np.int64)  # (C, C)
    tp = np.diag(confusion).astype(np.float64)  # (C,)
    support = confusion.sum(axis=1)  # (C,) true examples of each class
    predicted = confusion.sum(axis=0)  # (C,) predictions of each class
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    both = (support + predicted).astype(np.float64)
    f1 = np.divide(2.0 * tp, both, out=np.zeros_like(tp), where=both > 0)
    return tuple(
        ClassMetrics(name=name, precision=float(p), recall=float(r), f1=float(f), support=int(n))
        for name, p, r, f, n in zip(class_names, precision, recall, f1, support)
    )
