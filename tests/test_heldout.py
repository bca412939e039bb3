"""Is the test split held out? (issue 20 items 2 and 6, one check in common/heldout.py for every command)

Item 2: test rows that are all train rows are refused by finetune, vision compare and the probes; some
repeated rows are a warning recorded in the run. Item 6: test classes the training rows lack are a
warning recorded in the run.
"""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from vision_helpers import write_npz_dataset

from tests.helpers import invoke, write_ag_news_folder

# --- the datasets each case is made of ----------------------------------------------------------


def _rows(path: Path) -> list[list[str]]:
    return list(csv.reader(open(path, newline="")))


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as fh:
        csv.writer(fh, quoting=csv.QUOTE_ALL).writerows(rows)


def text_test_is_train(folder: Path) -> None:
    shutil.copy(folder / "train.csv", folder / "test.csv")


def text_test_is_shuffled_train(folder: Path) -> None:
    _write_rows(folder / "test.csv", list(reversed(_rows(folder / "train.csv")))[:20])


def text_test_repeats_some_train_rows(folder: Path) -> None:
    _write_rows(folder / "test.csv", _rows(folder / "test.csv") + _rows(folder / "train.csv")[:4])


def text_train_lacks_a_class(folder: Path) -> None:
    _write_rows(folder / "train.csv", [r for r in _rows(folder / "train.csv") if r[0] != "4"])


def images(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    load = lambda kind: np.load(folder / f"kmnist-{split}-{kind}.npz")["arr_0"]  # noqa: E731
    return load("imgs"), load("labels")


def save_images(folder: Path, split: str, pixels: np.ndarray, labels: np.ndarray) -> None:
    np.savez_compressed(folder / f"kmnist-{split}-imgs.npz", pixels)
    np.savez_compressed(folder / f"kmnist-{split}-labels.npz", labels)


def vision_test_is_train(folder: Path) -> None:
    save_images(folder, "test", *images(folder, "train"))


def vision_test_repeats_some_train_rows(folder: Path) -> None:
    (train_x, train_y), (test_x, test_y) = images(folder, "train"), images(folder, "test")
    save_images(folder, "test", np.concatenate([test_x, train_x[:6]]), np.concatenate([test_y, train_y[:6]]))


def vision_train_lacks_a_class(folder: Path) -> None:
    pixels, labels = images(folder, "train")
    keep = labels != 9
    save_images(folder, "train", pixels[keep], labels[keep])


# --- the commands -------------------------------------------------------------------------------


def finetune(tiny_bert, tmp_path, change, *extra):
    data = write_ag_news_folder(tmp_path / "ag", n_train=48, n_test=16)
    change(data)
    out = tmp_path / "run"
    args = ("finetune", "--model", tiny_bert, "--dataset", data, "--out", out, "--epochs", "1", "--batch-size", "8")
    return invoke(*args, *extra), out


def embed_and_probe(tiny_bert, tmp_path, change, *extra):
    data = write_ag_news_folder(tmp_path / "ag", n_train=48, n_test=16)
    change(data)
    store = tmp_path / "s.h5"
    embedded = invoke("embed", "--model", tiny_bert, "--dataset", data, "--out", store, *extra)
    if embedded.exit_code != 0:
        return embedded, None
    out = tmp_path / "probe-run"
    return invoke("probe", "knn", "--store", store, "--k", "1", "--out", out), out


def vision_compare(tiny_bert, tmp_path, change, *extra):
    data = write_npz_dataset(tmp_path / "kmnist", n_train=120, n_test=60)
    change(data)
    out = tmp_path / "compare"
    args = ("vision", "compare", "--dataset", "kmnist", "--data-dir", data, "--models", "mlp-numpy", "--epochs", "1")
    return invoke(*args, "--device", "cpu", "--out", out, *extra), out


def study_text(tiny_bert, tmp_path, change, *extra):
    data = write_ag_news_folder(tmp_path / "ag", n_train=48, n_test=16)
    change(data)
    out = tmp_path / "study"
    args = ("study", "text", "--model", tiny_bert, "--dataset", data, "--out", out, "--no-finetune")  # fmt: skip
    return invoke(*args, *extra), out


REFUSED = [
    ("study text", study_text, text_test_is_shuffled_train, ()),
    ("finetune", finetune, text_test_is_train, ()),
    ("finetune", finetune, lambda folder: None, ("--split", "train", "--split", "train")),
    ("finetune", finetune, text_test_is_shuffled_train, ()),
    ("vision compare", vision_compare, vision_test_is_train, ()),
]


@pytest.mark.parametrize("command, run, change, extra", REFUSED, ids=[f"{c[0]}-{i}" for i, c in enumerate(REFUSED)])
def test_a_test_split_of_train_rows_is_refused(tiny_bert, tmp_path, command, run, change, extra):
    result, out = run(tiny_bert, tmp_path, change, *extra)
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code != 0 and "are train rows" in errors[-1] and "Traceback" not in result.output, result.output
    assert not out.exists()


def test_probes_refuse_a_test_store_of_train_rows_and_record_a_partial_overlap(tmp_path, isolated_home):
    from probes.synthetic import write_synthetic_store

    small = write_synthetic_store(tmp_path / "a.h5", splits=("train",), n_train=30, seed=0)
    large = write_synthetic_store(tmp_path / "b.h5", splits=("train",), n_train=60, seed=1)
    refused = invoke("probe", "knn", "--store", large, "--test-store", small, "--k", "1")
    assert refused.exit_code != 0 and "all 30 test rows" in refused.stderr and "are train rows" in refused.stderr
    kept = invoke("probe", "knn", "--store", small, "--test-store", large, "--k", "1", "--out", tmp_path / "run")
    assert kept.exit_code == 0, kept.output
    assert "30 of 60 test rows are also train rows" in kept.stderr
    assert any(
        "30 of 60 test rows" in note for note in json.loads((tmp_path / "run" / "run.json").read_text())["notes"]
    )


WARNED = [
    ("finetune", finetune, text_test_repeats_some_train_rows, "4 of 20 test rows are also train rows"),
    ("vision compare", vision_compare, vision_test_repeats_some_train_rows, "6 of 66 test rows are also train rows"),
    ("finetune", finetune, text_train_lacks_a_class, "no row of class 'Sci/Tech', which 4 of 16 test rows (25%)"),
    ("embed + probe", embed_and_probe, text_train_lacks_a_class, "no row of class 'Sci/Tech', which 4 of 16 test rows"),
    (
        "vision compare",
        vision_compare,
        vision_train_lacks_a_class,
        "no row of class 'wo', which 6 of 60 test rows (10%)",
    ),
]


@pytest.mark.parametrize("command, run, change, warning", WARNED, ids=[f"{c[0]}-{i}" for i, c in enumerate(WARNED)])
def test_a_partly_held_out_test_split_is_said_aloud_and_recorded(tiny_bert, tmp_path, command, run, change, warning):
    result, out = run(tiny_bert, tmp_path, change)
    assert result.exit_code == 0, result.output
    assert warning in " ".join(result.stderr.split())
    notes = json.loads((out / "run.json").read_text())["notes"]
    assert any(warning in note for note in notes), notes
