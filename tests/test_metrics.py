import numpy as np

from common.metrics import confusion_matrix, macro_f1, per_class_metrics


def test_macro_f1_averages_over_classes_in_truth_or_predictions():
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 2, 1, 1])  # class 2 predicted but absent from the truth: its F1 of 0 counts
    # per class: 0 -> P 1, R 0.5, F1 2/3; 1 -> 1; 2 -> 0; class 3 (in neither) is not averaged
    assert abs(macro_f1(y_true, y_pred) - (2 / 3 + 1 + 0) / 3) < 1e-12


def test_per_class_metrics_equal_scikit_learns_bit_for_bit():
    from sklearn.metrics import confusion_matrix as sk_confusion
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(0)
    for n_classes, n in [(2, 1), (3, 50), (5, 7), (10, 400)]:
        y_true = rng.integers(0, n_classes, n)
        y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, n_classes, n))  # some classes never predicted
        labels = np.arange(n_classes)
        confusion = confusion_matrix(y_true, y_pred, n_classes)
        assert confusion.dtype == np.int64
        assert np.array_equal(confusion, sk_confusion(y_true, y_pred, labels=labels))
        names = [f"c{i}" for i in range(n_classes)]
        precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
        got = per_class_metrics(confusion, names)
        assert [c.name for c in got] == names
        assert [c.precision for c in got] == precision.tolist()  # exact: the same divisions
        assert [c.recall for c in got] == recall.tolist()
        assert [c.f1 for c in got] == f1.tolist()
        assert [c.support for c in got] == support.tolist()


def test_per_class_metrics_of_an_absent_class_are_zero_not_nan():
    confusion = confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), 3)  # class 2: no example, no prediction
    absent = per_class_metrics(confusion, ["a", "b", "c"])[2]
    assert (absent.precision, absent.recall, absent.f1, absent.support) == (0.0, 0.0, 0.0, 0)
