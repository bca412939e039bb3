"""End-to-end `mlx vision compare` and `sweep` on a tiny dataset; bad input gives one line and exit != 0."""

import json

import pytest
from typer.testing import CliRunner
from vision_helpers import write_npz_dataset

from cli.main import app
from common.record import read_predictions, read_record, validate

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path):
    return write_npz_dataset(tmp_path / "kmnist", n_train=200, n_test=100)


def invoke(*args):
    return runner.invoke(app, ["vision", *map(str, args)])


def test_compare_trains_every_model_and_writes_a_run_folder(data_dir, tmp_path):
    out = tmp_path / "runs"
    result = invoke(
        "compare",
        "--dataset",
        "kmnist",
        "--data-dir",
        data_dir,
        "--models",
        "mlp-numpy,mlp-torch,cnn",
        "--epochs",
        "3",
        "--json",
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert validate(report) == [] and report["kind"] == "vision" and report["command"] == "vision compare"
    rows = {row["method"]: row for row in report["results"]}
    assert set(rows) == {"mlp-numpy", "mlp-torch", "cnn"}
    assert (
        rows["mlp-numpy"]["trainable_params"]
        == rows["mlp-torch"]["trainable_params"]
        == 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10
    )
    assert rows["mlp-numpy"]["accuracy"] > 0.5  # chance is 0.1: a square's position gives the class
    assert rows["mlp-torch"]["accuracy"] > 0.5
    run_dir = out  # --out is the run folder itself
    for name in (
        "run.json",
        "predictions.npz",
        "learning_curves.png",
        "confusion_cnn.png",
        "mlp-numpy/weights.npz",
        "cnn/weights.pt",
        "cnn/metrics.json",
    ):
        assert (run_dir / name).exists(), name
    assert not (run_dir / "config.json").exists() and not (run_dir / "metrics.json").exists()  # one record file
    assert read_record(run_dir).to_dict() == report
    predictions = read_predictions(run_dir)
    for row in report["results"]:
        assert (predictions.by_row[row["name"]] == predictions.y_true).mean() == pytest.approx(row["accuracy"])
    assert report["mlx_version"] and report["config"]["data"]["n_train"] == 180
    history = json.loads((run_dir / "mlp-torch" / "metrics.json").read_text())["history"]
    assert len(history) == 3 and {"train_loss", "val_accuracy"} <= set(history[0])

    second = invoke(
        "compare",
        "--dataset",
        "kmnist",
        "--data-dir",
        data_dir,
        "--models",
        "mlp-numpy",
        "--epochs",
        "1",
        "--json",
        "--out",
        out,
    )
    assert second.exit_code != 0 and "already exists" in second.stderr, second.output
    assert read_record(run_dir).to_dict() == report  # a new run never overwrites an old one


def test_validation_fraction_0_trains_on_every_training_image(data_dir, tmp_path):
    result = invoke(
        "compare", "--dataset", "kmnist", "--data-dir", data_dir, "--models", "mlp-numpy,mlp-torch", "--epochs", "3",
        "--validation-fraction", "0", "--json", "--out", tmp_path / "runs", "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert validate(report) == []
    splits = {s["name"]: s["n_rows"] for s in report["data"]["splits"]}
    assert splits == {"train": 200, "validation": 0, "test": 100}
    for row in report["results"]:
        assert row["n_train"] == 200 and row["validation_accuracy"] is None and row["accuracy"] > 0.5
    run_dir = tmp_path / "runs"
    metrics = json.loads((run_dir / "mlp-torch" / "metrics.json").read_text())  # strict JSON: no NaN for "no score"
    assert metrics["validation_accuracy"] is None and metrics["history"][-1]["val_accuracy"] is None


def test_members_trains_an_ensemble_per_model(data_dir, tmp_path):
    result = invoke(
        "compare", "--dataset", "kmnist", "--data-dir", data_dir, "--models", "mlp-torch", "--epochs", "2",
        "--members", "2", "--json", "--out", tmp_path / "runs", "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["results"]
    assert row["name"].endswith("-x2") and row["params"]["members"] == 2
    assert row["trainable_params"] == 2 * (784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10)
    assert row["accuracy"] > 0.5


def test_compare_table_says_the_device(data_dir, tmp_path):
    result = invoke(
        "compare",
        "--dataset",
        "kmnist",
        "--data-dir",
        data_dir,
        "--models",
        "mlp-torch",
        "--epochs",
        "1",
        "--out",
        tmp_path / "o",
    )
    assert result.exit_code == 0, result.output
    assert "torch device: cpu" in result.output or "torch device: cuda" in result.output
    assert "mlp-torch" in result.output and "macro-F1" in result.output


def test_sweep_ranks_by_validation_and_resumes(data_dir, tmp_path):
    out = tmp_path / "sweep"
    args = (
        "sweep",
        "--model",
        "mlp-numpy",
        "--depth",
        "1,2",
        "--width",
        "16",
        "--activation",
        "relu,tanh",
        "--l2",
        "0",
        "--epochs",
        "2",
        "--dataset",
        "kmnist",
        "--data-dir",
        data_dir,
        "--out",
        out,
        "--json",
    )
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert validate(report) == [] and report["command"] == "vision sweep"
    accuracies = [row["validation_accuracy"] for row in report["results"]]
    assert len(accuracies) == 4 and accuracies == sorted(accuracies, reverse=True)
    assert report["results"][0]["accuracy"] is not None and all(r["accuracy"] is None for r in report["results"][1:])
    assert (out / report["results"][0]["name"] / "weights.npz").exists()

    # An interruption: one configuration lost its metrics (it never finished).
    victim = out / report["results"][-1]["name"]
    (victim / "metrics.json").unlink()
    kept = out / report["results"][0]["name"] / "metrics.json"
    before = kept.stat().st_mtime_ns
    second = invoke(*args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["config"]["n_skipped"] == 3
    assert (victim / "metrics.json").exists() and kept.stat().st_mtime_ns == before
    assert len(list(out.glob("report-*/factor_effects.png"))) == 2


def test_sweep_folder_with_other_settings_is_refused(data_dir, tmp_path):
    out = tmp_path / "sweep"
    base = (
        "sweep",
        "--model",
        "mlp-numpy",
        "--depth",
        "1",
        "--width",
        "8",
        "--dataset",
        "kmnist",
        "--data-dir",
        data_dir,
        "--out",
        out,
    )
    assert invoke(*base, "--epochs", "1").exit_code == 0
    other = invoke(*base, "--epochs", "2")
    assert other.exit_code == 4 or other.exit_code == 1
    assert "other options (n_epochs 1 -> 2)" in " ".join(other.output.split())


@pytest.mark.parametrize(
    "args, code, message",
    [
        (
            ("compare", "--models", "mlp-numpy,resnet"),
            2,
            "--models: unknown value 'resnet'; choose from mlp-numpy, mlp-torch, cnn, cnn-strong",
        ),
        (
            ("sweep", "--model", "mlp-numpy", "--activation", "relu,swishy"),
            2,
            "--activation: unknown value 'swishy'; choose from relu, leaky-relu, tanh",
        ),
        (("sweep", "--model", "mlp-torch", "--width", "0"), 2, "--width: 0 is below 1"),
        (("sweep", "--model", "cnn", "--depth", "0,1"), 2, "--depth: 0 is below 1"),
        (("sweep", "--model", "mlp-numpy", "--depth", ","), 2, "--depth is empty"),
        (("sweep", "--model", "mlp-numpy", "--l2", "-1"), 2, "L2 must be a finite number >= 0, got -1.0"),
        (("sweep", "--model", "mlp-numpy", "--l2", "nan"), 2, "--l2: nan is not a finite number"),
        (
            ("sweep", "--model", "mlp-torch", "--depth", "1", "--width", "4", "--epochs", "1", "--l2", "0,inf"),
            2,
            "--l2: inf is not a finite number",
        ),
        (("gradcheck", "--l2", "nan"), 2, "L2 must be a finite number >= 0, got nan"),
        (("compare", "--seed", "-1"), 2, "--seed must lie in 0.."),
        (("sweep", "--model", "mlp-torch", "--seed", "-1"), 2, "--seed must lie in"),
        (("gradcheck", "--seed", "-1"), 2, "--seed must lie in"),
        (("sweep", "--model", "mlp-numpy", "--width", "a,b"), 2, "--width: cannot read 'a'"),
        (("compare", "--epochs", "0"), 2, "--epochs must lie in 1.."),
        (("compare", "--val-fraction", "1"), 2, "--validation-fraction must lie in [0, 1)"),
        (("compare", "--val-fraction", "-0.1"), 2, "--validation-fraction must lie in [0, 1)"),
        (("compare", "--val-fraction", "0", "--tta", "2"), 2, "--validation-fraction 0 leaves none"),
        (
            ("sweep", "--model", "cnn", "--val-fraction", "0"),
            2,
            "--validation-fraction must lie strictly between 0 and 1",
        ),
        (("compare", "--members", "2"), 2, "drop mlp-numpy from --models"),
        (("compare", "--members", "0"), 2, "--members must lie in 1.."),
        (("sweep", "--model", "cnn", "--val-fraction", "-0.5"), 2, "must lie strictly between 0 and 1, got -0.5"),
        (("compare", "--models", "cnn", "--members", "0"), 2, "--members must lie in"),
        (("compare", "--models", "cnn", "--members", "9"), 2, "an ensemble takes 1 to 8 torch networks"),
        (("compare", "--device", "cuda"), 2, "CUDA is not available"),
        (
            ("sweep", "--model", "cnn", "--device", "mps"),
            2,
            "--device: unknown value 'mps'; choose from auto, cpu, cuda",
        ),
        (("gradcheck", "--activation", "softsign"), 2, "--activation: unknown value 'softsign'"),
        (("compare", "--threads", "0"), 2, "--threads must lie in 1.."),
        (("gradcheck", "--width", "0"), 2, "--width must lie in 1.."),
    ],
)
def test_bad_options_are_one_clear_line(args, code, message, isolated_home):
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a CUDA machine may have the device")
    result = invoke(*args)
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (isolated_home / "runs").exists()  # nothing written before the input was checked


def test_unknown_model_for_sweep_is_typers_choice_error():
    result = invoke("sweep", "--model", "vit")
    assert result.exit_code == 2
    assert "vit" in result.output


@pytest.mark.parametrize(
    "interrupt", [KeyboardInterrupt, pytest.param(RuntimeError, marks=pytest.mark.internal_error)]
)  # a crash (a bug) cleans up as Ctrl-C does
def test_interrupted_compare_leaves_no_run_folder(data_dir, tmp_path, monkeypatch, interrupt):
    import training.loop

    calls = []

    def stopped_fit(*args, **kwargs):  # the torch model, trained after the NumPy one, is stopped as by Ctrl-C
        calls.append(kwargs["model"] if "model" in kwargs else args[0])
        raise interrupt("stopped")

    monkeypatch.setattr(training.loop, "fit", stopped_fit)
    out = tmp_path / "runs"
    result = invoke(
        "compare",
        "--dataset",
        "kmnist",
        "--data-dir",
        data_dir,
        "--models",
        "mlp-numpy,mlp-torch",
        "--epochs",
        "1",
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert result.exit_code != 0 and len(calls) == 1, result.output
    assert not out.exists()  # neither a half run under its final name
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]  # nor the hidden staging folder beside it


def test_a_sweep_folder_remembers_its_resolved_dtype_and_networks(tmp_path, isolated_home, monkeypatch):
    import training.devices

    out = tmp_path / "sweep"
    args = ["vision", "sweep", "--model", "mlp-torch", "--depth", "1", "--width", "16", "--epochs", "1"]
    args += ["--device", "cpu", "--out", str(out)]
    monkeypatch.setattr(training.devices, "native_bf16", lambda device: True)
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    saved = json.loads((out / "sweep.json").read_text())["identity"]["config"]
    assert saved["dtype"] == "bf16" and saved["members"] == 1
    monkeypatch.setattr(training.devices, "native_bf16", lambda device: False)  # 'auto' means fp32 elsewhere
    second = runner.invoke(app, args)
    assert second.exit_code != 0 and "dtype bf16 -> fp32" in " ".join(second.output.split())
    assert "Traceback" not in second.output
