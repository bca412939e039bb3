"""KMNIST npz/idx loading, validation of bad files, splits and the digits stand-in."""

import gzip

import numpy as np
import pytest
from typer.testing import CliRunner
from vision_helpers import idx_bytes, tiny_images, write_idx_dataset, write_npz_dataset

from cli.main import app
from common import ConfigError, DataError
from vision.data import DatasetName, load_digits28, load_kmnist_split, load_splits

runner = CliRunner()


def test_npz_and_idx_layouts_load_the_same_arrays(tmp_path):
    npz = load_kmnist_split(write_npz_dataset(tmp_path / "npz", n_train=120, n_test=60), "train")
    idx = load_kmnist_split(write_idx_dataset(tmp_path / "idx", n_train=120, n_test=60), "train")
    assert npz.images.shape == (120, 28, 28) and npz.images.dtype == np.uint8
    assert npz.labels.dtype == np.int64
    np.testing.assert_array_equal(npz.images, idx.images)
    np.testing.assert_array_equal(npz.labels, idx.labels)
    assert "KMNIST/raw" in idx.source


def test_uncompressed_idx_files_are_read_too(tmp_path):
    images, labels = tiny_images(30, seed=0)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    test = load_kmnist_split(tmp_path, "test")
    np.testing.assert_array_equal(test.images, images)


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    images, labels = tiny_images(30, seed=0)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)[:-100]))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(DataError, match="truncated"):
        load_kmnist_split(tmp_path, "test")


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (np.zeros((10, 28, 27), np.uint8), np.zeros(10, np.uint8), "expected \\(N, 28, 28\\)"),
        (np.zeros((10, 28, 28), np.float64), np.zeros(10, np.uint8), "dtype float64, expected uint8"),
        (np.zeros((10, 28, 28), np.uint8), np.full(10, 10, np.uint8), "labels range 10..10, expected 0..9"),
        (np.zeros((10, 28, 28), np.uint8), np.zeros(9, np.uint8), "10 images but 9 labels"),
        (np.zeros((10, 28, 28), np.uint8), np.zeros(10, np.float32), "expected \\(N,\\) integers"),
    ],
)
def test_malformed_npz_files_are_rejected(tmp_path, images, labels, message):
    np.savez(tmp_path / "kmnist-test-imgs.npz", images)
    np.savez(tmp_path / "kmnist-test-labels.npz", labels)
    with pytest.raises(DataError, match=message):
        load_kmnist_split(tmp_path, "test")


def test_npz_without_arr_0_and_garbage_files(tmp_path):
    np.savez(tmp_path / "kmnist-test-imgs.npz", images=np.zeros((2, 28, 28), np.uint8))
    np.savez(tmp_path / "kmnist-test-labels.npz", np.zeros(2, np.uint8))
    with pytest.raises(DataError, match="no array 'arr_0'"):
        load_kmnist_split(tmp_path, "test")
    (tmp_path / "kmnist-test-imgs.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="not a readable npz"):
        load_kmnist_split(tmp_path, "test")


def test_missing_files_cli_message_names_files_folder_and_download(tmp_path):
    result = runner.invoke(
        app, ["vision", "compare", "--dataset", "kmnist", "--data-dir", str(tmp_path), "--epochs", "1"]
    )
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert "kmnist-train-imgs.npz" in line and "kmnist-train-labels.npz" in line
    assert str(tmp_path.name) in line and "mlx vision download" in line
    assert "Traceback" not in result.output


def test_bad_dtype_through_the_cli_is_one_line_and_nothing_written(tmp_path, isolated_home):
    write_npz_dataset(tmp_path)
    np.savez(tmp_path / "kmnist-test-imgs.npz", np.zeros((100, 28, 28), np.int32))
    result = runner.invoke(
        app,
        [
            "vision",
            "compare",
            "--dataset",
            "kmnist",
            "--data-dir",
            str(tmp_path),
            "--epochs",
            "1",
            "--models",
            "mlp-numpy",
        ],
    )
    assert result.exit_code == 1
    assert "dtype int32, expected uint8" in result.output
    assert not (isolated_home / "runs").exists()


def test_validation_split_is_stratified_seeded_and_disjoint(tmp_path):
    folder = write_npz_dataset(tmp_path, n_train=300)
    splits = load_splits(DatasetName.KMNIST, folder, 0.2, seed=3)
    again = load_splits(DatasetName.KMNIST, folder, 0.2, seed=3)
    other = load_splits(DatasetName.KMNIST, folder, 0.2, seed=4)
    fit, val = splits.train, splits.val
    np.testing.assert_array_equal(val.images, again.val.images)
    assert not np.array_equal(val.images, other.val.images)
    assert len(fit) + len(val) == 300
    assert np.bincount(val.labels, minlength=10).tolist() == [6] * 10
    train_rows = {row.tobytes() for row in fit.images}
    assert not any(row.tobytes() in train_rows for row in val.images)
    with pytest.raises(ConfigError, match=r"must lie in \[0, 1\)"):
        load_splits(DatasetName.KMNIST, folder, 1.0, seed=0)
    everything = load_splits(DatasetName.KMNIST, folder, 0.0, seed=0)  # 0: train on all, no validation
    assert len(everything.train) == 300 and len(everything.val) == 0


def test_digits_stand_in_is_28x28_and_says_it_is_not_kmnist():
    train, test = load_digits28()
    assert train.images.shape[1:] == (28, 28) and train.images.dtype == np.uint8
    assert len(train) + len(test) == 1797
    assert "not KMNIST" in train.source
    splits = load_splits(DatasetName.DIGITS, None, 0.1, seed=0)
    assert len(splits.test) == len(test)
