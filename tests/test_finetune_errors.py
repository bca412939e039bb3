"""Bad input to `mlx finetune`: one red line each, a non-zero exit, no traceback, nothing written."""

import pytest

from tests.helpers import invoke, one_line_error, write_ag_news_folder


def write_csv_pair(folder, train_labels, test_labels, classes=None):
    folder.mkdir(parents=True, exist_ok=True)
    for name, labels in (("train.csv", train_labels), ("test.csv", test_labels)):
        rows = ["text,label", *(f"headline number {i} about topic {label},{label}" for i, label in enumerate(labels))]
        (folder / name).write_text("\n".join(rows) + "\n")
    if classes:
        (folder / "classes.txt").write_text("\n".join(classes) + "\n")
    return folder


@pytest.mark.parametrize(
    "options, message",
    [
        (["--lr", "0"], "--lr must be a positive finite number"),
        (["--lr", "-1e-4"], "--lr must be a positive finite number"),
        (["--lr", "nan"], "--lr must be a positive finite number"),
        (["--lr", "inf"], "--lr must be a positive finite number"),
        (["--epochs", "0"], "--epochs"),
        (["--batch-size", "0"], "--batch-size"),
        (["--grad-accum", "0"], "--grad-accum"),
        (["--warmup", "1.5"], "--warmup"),
        (["--layer-lr-decay", "0"], "--layer-lr-decay"),
        (["--head-init", "zeros"], "--head-init: unknown value 'zeros'; choose from probe, random"),
        (["--pooling", "max"], "--pooling: unknown value 'max'; choose from auto, cls, mean"),
        (["--label-smoothing", "1"], "--label-smoothing must lie in [0, 1)"),
        (["--label-smoothing", "-0.1"], "--label-smoothing must lie in [0, 1)"),
        (["--label-smoothing", "nan"], "--label-smoothing must lie in [0, 1)"),
        (["--ema-decay", "1"], "--ema-decay must lie in [0, 1)"),
        (["--ema-decay", "-0.5"], "--ema-decay must lie in [0, 1)"),
        (["--ema-decay", "nan"], "--ema-decay must lie in [0, 1)"),
        (["--eval-every", "often"], "--eval-every"),
        (["--device", "cuda"], "CUDA is not available"),
        (["--nproc", "99"], "only 9 training batch(es)"),
        (["--split", "train"], "--split takes the training split then the test split"),
        (["--max-length", "4096"], "--max-length 4096 is more than"),
    ],
)
def test_bad_options(tiny_bert, tmp_path, options, message):
    data = write_ag_news_folder(tmp_path / "ag", n_train=80, n_test=8)
    one_line_error(
        invoke(
            "finetune",
            "--model",
            tiny_bert,
            "--dataset",
            data,
            "--out",
            tmp_path / "run",
            "--batch-size",
            "8",
            *options,
        ),
        message,
    )
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run.partial"))


def test_unknown_model(tmp_path):
    data = write_ag_news_folder(tmp_path / "ag", n_train=80, n_test=8)
    one_line_error(
        invoke("finetune", "--model", "no-such-org/no-such-model", "--dataset", data, "--out", tmp_path / "run"),
        "no-such-org/no-such-model",
    )


def test_one_class(tiny_bert, tmp_path):
    data = write_csv_pair(tmp_path / "one", [0] * 20, [0] * 4)
    one_line_error(
        invoke("finetune", "--model", tiny_bert, "--dataset", data, "--out", tmp_path / "run"), "only one class"
    )


def test_labels_out_of_range(tiny_bert, tmp_path):
    data = write_csv_pair(tmp_path / "range", [0, 1, 2, 7] * 5, [0, 1], classes=["a", "b", "c", "d"])
    one_line_error(
        invoke("finetune", "--model", tiny_bert, "--dataset", data, "--out", tmp_path / "run"),
        "label 7 is outside 0..3",
    )


def test_output_folder_that_cannot_be_written(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "ag", n_train=80, n_test=8)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    one_line_error(
        invoke("finetune", "--model", tiny_bert, "--dataset", data, "--out", blocker / "run"), "is a file, not a folder"
    )
    assert blocker.read_text() == "not a folder"


def test_output_folder_that_takes_no_files(tiny_bert, tmp_path):
    """/proc passes the writable-folder check (root may write there) but takes no new files."""
    data = write_ag_news_folder(tmp_path / "ag", n_train=80, n_test=8)
    one_line_error(
        invoke("finetune", "--model", tiny_bert, "--dataset", data, "--out", "/proc/mlx-run"), "cannot write /proc/"
    )
