"""The one macro-F1 every command reports, so that `mlx report` compares like with like."""

import numpy as np


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over the classes in play: those in the truth or the predictions (N,) int labels.

    Classes absent from both have no F1; averaging their 0 would understate the score.
    """
    from sklearn.metrics import f1_score

    labels = np.union1d(y_true, y_pred)
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
