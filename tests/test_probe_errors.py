"""Bad input: one clear line naming the fix, non-zero exit, no traceback, no complete run folder."""

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from embeddings.store import SplitArrays, write_store
from probes.synthetic import write_synthetic_store
from tests.helpers import one_line_error

runner = CliRunner()


def fails_cleanly(args, home, *expected):
    line = one_line_error(runner.invoke(app, ["probe", *map(str, args)]), *expected)
    runs = home / "runs" / "probe"
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())  # nothing half-written, nothing complete
    return line


def _store(path, *, train_dim=8, test_dim=8, train_labels=None, nan=False, model_id="m", dtype="fp32"):
    rng = np.random.default_rng(0)
    labels = {"train": np.array([0, 1] * 10) if train_labels is None else train_labels, "test": np.array([0, 1] * 5)}
    splits = {}
    for split, dim in (("train", train_dim), ("test", test_dim)):
        X = rng.standard_normal((len(labels[split]), dim)).astype(np.float32)
        if nan and split == "test":
            X[3, 2] = np.nan
            X[4, 0] = np.inf
        splits[split] = SplitArrays(labels[split], np.arange(len(X)), {("mean", 1): X})
    attrs = {"model_id": model_id, "label_names": ["a", "b"], "poolings": ["mean"], "layers": [1], "n_layers": 1}
    attrs["dtype"] = dtype
    return write_store(path, attrs, splits)


def test_missing_store(tmp_path, isolated_home):
    fails_cleanly(["knn", "--store", tmp_path / "nope.h5"], isolated_home, "does not exist", "mlx embed")


def test_incomplete_store(tmp_path, isolated_home):
    path = write_synthetic_store(tmp_path / "s.h5")
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    fails_cleanly(["compare", "--store", path], isolated_home, "incomplete", "re-run")


def test_not_a_store(tmp_path, isolated_home):
    path = tmp_path / "junk.h5"
    path.write_text("not hdf5")
    fails_cleanly(["knn", "--store", path], isolated_home, "not a readable HDF5")


def test_pooling_not_in_store(tmp_path, isolated_home):
    path = write_synthetic_store(tmp_path / "s.h5", poolings=("mean",))
    fails_cleanly(["knn", "--store", path, "--pooling", "max"], isolated_home, "'max'", "holds: mean")


@pytest.mark.parametrize("layer", ["7", "1,9"])
def test_layer_not_in_store(tmp_path, isolated_home, layer):
    path = write_synthetic_store(tmp_path / "s.h5", layers=(0, 1, 2))
    fails_cleanly(["logreg", "--store", path, "--layer", layer], isolated_home, "is not in", "[0, 1, 2]")


def test_unreadable_layer_spec(tmp_path, isolated_home):
    path = write_synthetic_store(tmp_path / "s.h5")
    fails_cleanly(["knn", "--store", path, "--layer", "top"], isolated_home, "cannot read --layer", "all")


def test_train_and_test_of_different_dimension(tmp_path, isolated_home):
    path = _store(tmp_path / "s.h5", test_dim=12)
    fails_cleanly(["knn", "--store", path, "--k", "3"], isolated_home, "8 dimensions", "12", "different models")


@pytest.mark.parametrize(
    "train, test, expected",
    [
        ({"model_id": "bert-base-uncased"}, {"model_id": "minilm"}, ("model_id", "same model")),
        ({"dtype": "int8"}, {"dtype": "fp32"}, ("dtype ('int8' vs 'fp32')", "same --dtype")),
        ({"dtype": "bf16"}, {"dtype": "int8"}, ("dtype ('bf16' vs 'int8')", "same --dtype")),
    ],
)
def test_test_store_of_another_model(tmp_path, isolated_home, train, test, expected):
    train = _store(tmp_path / "a.h5", **train)
    other = _store(tmp_path / "b.h5", **test)
    fails_cleanly(["knn", "--store", train, "--test-store", other, "--k", "3"], isolated_home, *expected)


def test_k_larger_than_training_set(tmp_path, isolated_home):
    path = write_synthetic_store(tmp_path / "s.h5", n_train=30)
    fails_cleanly(["knn", "--store", path, "--k", "5,50"], isolated_home, "k=50", "30", "at most 30")


def test_one_class_only(tmp_path, isolated_home):
    path = _store(tmp_path / "s.h5", train_labels=np.zeros(20, dtype=np.int64))
    fails_cleanly(["logreg", "--store", path], isolated_home, "only one class", "'a'")


def test_nan_or_inf_in_vectors(tmp_path, isolated_home):
    path = _store(tmp_path / "s.h5", nan=True)
    fails_cleanly(["knn", "--store", path, "--k", "3"], isolated_home, "NaN or inf", "2 of 10 rows", "re-embed")


def test_one_split_store_without_test_fraction(tmp_path, isolated_home):
    path = write_synthetic_store(tmp_path / "s.h5", splits=("train",))
    fails_cleanly(["knn", "--store", path], isolated_home, "only the split 'train'", "--test-fraction")


def test_bad_option_values(tmp_path, isolated_home):
    path = write_synthetic_store(tmp_path / "s.h5")
    fails_cleanly(["knn", "--store", path, "--k", "five"], isolated_home, "--k", "1,5,10,20")
    fails_cleanly(["logreg", "--store", path, "--C", "0,1"], isolated_home, "--C", "positive")
    fails_cleanly(["knn", "--store", path, "--test-fraction", "0.2"], isolated_home, "already has a test split")


def test_review_findings_fail_cleanly(tmp_path, isolated_home):
    path = _store(tmp_path / "s.h5")
    fails_cleanly(["knn", "--store", path, "--layer", "3-1"], isolated_home, "cannot read --layer '3-1'")
    tiny = _store(tmp_path / "tiny.h5", train_labels=np.array([0, 1] * 5))
    fails_cleanly(
        ["knn", "--store", tiny, "--index", "ivf", "--k", "1"], isolated_home, "needs at least 16", "--index flat"
    )
    fails_cleanly(["logreg", "--store", path, "--C", "inf"], isolated_home, "positive finite")
    fails_cleanly(["logreg", "--store", path, "--seed", "-1"], isolated_home, "--seed")


def test_repeated_k_is_probed_once(tmp_path, isolated_home):
    import json

    result = runner.invoke(app, ["probe", "knn", "--store", str(_store(tmp_path / "s.h5")), "--k", "1,1,3", "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(r["setting"] for r in json.loads(result.stdout)["results"]) == ["k=1", "k=3"]
