import numpy as np

from common.metrics import macro_f1


def test_macro_f1_averages_over_classes_in_truth_or_predictions():
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 2, 1, 1])  # class 2 predicted but absent from the truth: its F1 of 0 counts
    # per class: 0 -> P 1, R 0.5, F1 2/3; 1 -> 1; 2 -> 0; class 3 (in neither) is not averaged
    assert abs(macro_f1(y_true, y_pred) - (2 / 3 + 1 + 0) / 3) < 1e-12
