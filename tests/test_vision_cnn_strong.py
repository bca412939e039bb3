"""Issue 12: the cnn-strong recipe, test-time augmentation, per-class accuracy and the error gallery."""

import json
import logging

import numpy as np
import pytest
import torch
from typer.testing import CliRunner
from vision_helpers import write_npz_dataset

from cli.main import app
from common.record import read_record
from training.config import OptimizerName, ScheduleName
from vision import experiment
from vision.augment import affine_matrix, warp_numpy
from vision.data import KMNIST_CLASS_NAMES, KMNIST_HIRAGANA
from vision.experiment import MAX_TTA_VIEWS, predict_logits, predict_probabilities
from vision.plots import class_labels, confused_pairs
from vision.specs import ModelName, build_model, preset

runner = CliRunner()


def test_cnn_strong_is_the_recipe():
    spec = preset(ModelName.CNN_STRONG)
    assert (spec.depth, spec.width, spec.n_pools, spec.dropout, spec.label_smoothing, spec.l2) == (
        3,
        48,
        3,
        0.3,
        0.1,
        5e-4,
    )
    assert (spec.train.optimizer, spec.train.schedule, spec.train.lr, spec.train.batch_size, spec.train.n_epochs) == (
        OptimizerName.ADAMW,
        ScheduleName.ONECYCLE,
        3e-3,
        128,
        40,
    )
    assert spec.augment.max_shift_px == pytest.approx(2.8) and spec.augment.max_scale == pytest.approx(0.1)
    # K=3 ties K=4 on validation and fits 10 min
    assert spec.members == 3 and len(build_model(spec, 0.2, 0.3, seed=0).members) == 3
    model = build_model(preset(ModelName.CNN_STRONG, members=1), 0.2, 0.3, seed=0)
    assert model.features(torch.zeros(2, 1, 28, 28)).shape == (2, 192, 3, 3)  # a pool after each of the 3 blocks
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_the_specs_l2_reaches_the_optimiser_as_weight_decay(monkeypatch, tmp_path):
    import training.loop
    from vision.data import DatasetName, load_splits
    from vision.experiment import train_model

    seen = []
    monkeypatch.setattr(training.loop, "fit", lambda *args, **kwargs: seen.append(kwargs["config"]) or None)
    splits = load_splits(DatasetName.KMNIST, write_npz_dataset(tmp_path / "k", 60, 20), 0.2, 0)
    train_model(preset(ModelName.CNN_STRONG), splits, torch.device("cpu"))
    assert seen[0].weight_decay == 5e-4


def test_identity_warp_keeps_images_and_tta_probabilities_are_averaged():
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    scaled = images.astype(np.float32) / 255
    assert np.allclose(warp_numpy(scaled, np.broadcast_to(affine_matrix(), (5, 2, 3))), scaled, atol=1e-6)
    spec = preset(ModelName.CNN, n_epochs=1)
    model = build_model(spec, 0.2, 0.3, seed=0)
    logits = predict_logits(model, spec, scaled, torch.device("cpu"))
    plain = predict_probabilities(model, spec, images, torch.device("cpu"))
    assert np.allclose(plain, torch.softmax(torch.from_numpy(logits), 1).numpy(), atol=1e-6)
    views = predict_probabilities(model, spec, images, torch.device("cpu"), n_tta_views=MAX_TTA_VIEWS)
    assert views.shape == (5, 10) and np.allclose(views.sum(axis=1), 1, atol=1e-5) and not np.allclose(views, plain)


def test_per_class_accuracy_and_most_confused_pairs():
    confusion = np.array([[8, 2, 0], [0, 5, 5], [1, 0, 0]])
    scores = experiment.TestScores(0.5, 0.5, confusion, np.zeros(21, np.int64), ("a", "b", "c"))
    assert scores.per_class_accuracy == {"a": 0.8, "b": 0.5, "c": 0.0}
    assert confused_pairs(confusion, 2) == [(1, 2, 5), (0, 1, 2)]


def test_labels_fall_back_to_romaji_without_a_japanese_font(monkeypatch, caplog):
    import vision.plots

    monkeypatch.setattr(vision.plots, "japanese_font", lambda: None)
    with caplog.at_level(logging.WARNING):
        assert class_labels(KMNIST_CLASS_NAMES, KMNIST_HIRAGANA) == KMNIST_CLASS_NAMES
    assert "no font with Japanese glyphs" in caplog.text
    monkeypatch.setattr(vision.plots, "japanese_font", lambda: "Some CJK Font")
    assert class_labels(KMNIST_CLASS_NAMES, KMNIST_HIRAGANA)[2] == "す su"


def test_compare_plot_detail_and_tta_end_to_end(tmp_path):
    data_dir = write_npz_dataset(tmp_path / "kmnist", n_train=200, n_test=100)
    out = tmp_path / "runs"
    args = [
        "vision",
        "compare",
        "--dataset",
        "kmnist",
        "--data-dir",
        str(data_dir),
        "--models",
        "mlp-torch",
        "--epochs",
        "2",
        "--tta",
        "2",
        "--plot",
        "--detail",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Per-class test accuracy" in result.output and "tsu" in result.output
    run_dir = out
    assert (run_dir / "errors_mlp-torch.png").stat().st_size > 10_000 and (run_dir / "confusion_mlp-torch.png").exists()
    metrics = json.loads((run_dir / "mlp-torch" / "metrics.json").read_text())
    assert set(metrics["per_class_accuracy"]) == set(KMNIST_CLASS_NAMES)
    assert metrics["n_tta_views"] == 2 and 0 <= metrics["validation_accuracy_tta"] <= 1
    (row,) = read_record(run_dir).results  # the run folder's one record
    assert row.details["per_class_accuracy"] == metrics["per_class_accuracy"]
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "config.json").exists()


@pytest.mark.parametrize("value", ["-1", str(MAX_TTA_VIEWS + 1)])
def test_bad_tta_is_one_line(value, isolated_home):
    result = runner.invoke(app, ["vision", "compare", "--tta", value])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    # below 0 the parser's bounds answer first (in our words, not pydantic's); above the views the library's check
    expected = (
        "--tta must lie in 0..1000"
        if value == "-1"
        else f"--tta takes 0 (off) to {MAX_TTA_VIEWS} extra test-time views"
    )
    assert expected in said and "should be" not in said, said
    assert "Traceback" not in result.output and not (isolated_home / "runs").exists()


def test_bad_tta_value_type_is_typers_error():
    result = runner.invoke(app, ["vision", "compare", "--tta", "some"])
    assert result.exit_code == 2 and "--tta" in result.output


def test_an_ensemble_trains_each_member_on_its_own_loss_and_averages_probabilities(tmp_path):
    import dataclasses

    from common import ConfigError
    from vision.specs import load_weights, save_weights
    from vision.torch_nets import Ensemble, member_loss

    single = dataclasses.replace(preset(ModelName.CNN), width=4)
    pair = dataclasses.replace(single, members=2).check()
    model = build_model(pair, 0.2, 0.3, seed=0)
    assert isinstance(model, Ensemble) and len(model.members) == 2
    assert sum(p.numel() for p in model.parameters()) == 2 * sum(
        p.numel() for p in build_model(single, 0.2, 0.3, seed=0).parameters()
    )
    first, second = (dict(m.named_parameters()) for m in model.members)
    assert not torch.equal(first["features.0.0.weight"], second["features.0.0.weight"])  # members start apart
    x, y = torch.rand(5, 1, 28, 28), torch.tensor([0, 1, 2, 3, 4])
    model.train()
    logits = model(x)  # (B, C, K): each member's own logits
    assert logits.shape == (5, 10, 2)
    loss = member_loss(0.1)(logits, y)
    each = [torch.nn.functional.cross_entropy(logits[..., k], y, label_smoothing=0.1) for k in range(2)]
    assert torch.allclose(loss, sum(each) / 2)  # reported: the mean over members
    (gradient,) = torch.autograd.grad(loss, logits)
    (alone,) = torch.autograd.grad(each[0], logits)  # member 0 trained alone
    assert torch.allclose(gradient[..., 0], alone[..., 0])  # each member gets its own loss's full gradient
    model.eval()
    with torch.no_grad():
        log_mean = model(x)
        members = torch.stack([torch.softmax(m(x), dim=1) for m in model.members])
    assert torch.allclose(log_mean.exp(), members.mean(dim=0), atol=1e-6)  # the mean of the members' probabilities
    assert pair.key().endswith("-x2") and single.key() != pair.key()
    save_weights(model, pair, tmp_path)
    again = load_weights(pair, tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(again(x), log_mean)
    with pytest.raises(ConfigError, match="ensemble takes 1 to 8"):
        dataclasses.replace(preset(ModelName.MLP_NUMPY), members=2).check()
    with pytest.raises(ConfigError, match="ensemble takes 1 to 8"):
        dataclasses.replace(single, members=0).check()


def test_dtype_auto_is_bf16_only_where_the_hardware_has_it(monkeypatch):
    import training.devices
    from common import ConfigError
    from common.devices import DType
    from training.devices import preferred_dtype
    from vision.specs import compute_dtype, with_dtype

    cpu = torch.device("cpu")
    for native, expected in ((True, DType.BF16), (False, DType.FP32)):
        monkeypatch.setattr(training.devices, "native_bf16", lambda device, native=native: native)
        assert preferred_dtype("auto", cpu) is expected
        assert compute_dtype(with_dtype(preset(ModelName.CNN_STRONG), "auto", cpu)) == expected.value
        assert preferred_dtype("fp32", cpu) is DType.FP32 and preferred_dtype("bf16", cpu) is DType.BF16
    numpy_mlp = preset(ModelName.MLP_NUMPY)
    assert with_dtype(numpy_mlp, "bf16", cpu) == numpy_mlp  # the NumPy MLP computes in fp32 whatever is asked
    assert with_dtype(preset(ModelName.CNN), "bf16", cpu).train.autocast == "bf16"
    assert with_dtype(preset(ModelName.CNN), "fp32", cpu).train.autocast is None
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        with_dtype(preset(ModelName.CNN), "fp16", cpu)


def test_cnns_are_channels_last_and_bf16_training_learns_and_reloads(tmp_path):
    import dataclasses

    from vision.data import DatasetName, load_splits
    from vision.experiment import train_model
    from vision.specs import load_weights, save_weights, with_dtype

    small = dataclasses.replace(preset(ModelName.CNN_STRONG, n_epochs=3, augment=False, members=1), width=8)
    spec = with_dtype(small, "bf16", torch.device("cpu"))
    model = build_model(spec, 0.2, 0.3, seed=0)
    conv = model.features[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and conv.dtype == torch.float32
    splits = load_splits(DatasetName.DIGITS, None, 0.2, 0)
    model, history = train_model(spec, splits, torch.device("cpu"))
    assert history.epochs[-1].val_accuracy > 0.5  # ten classes: chance is 0.1
    assert next(model.parameters()).dtype == torch.float32  # autocast: the weights stay fp32
    images = splits.test.images[:32].astype(np.float32) / 255
    save_weights(model, spec, tmp_path)
    again = load_weights(spec, tmp_path)
    assert np.array_equal(
        predict_logits(again, spec, images, torch.device("cpu")),
        predict_logits(model, spec, images, torch.device("cpu")),
    )


def test_compare_says_its_dtype_and_refuses_fp16_on_cpu(tmp_path, isolated_home):
    data_dir = write_npz_dataset(tmp_path / "kmnist", n_train=120, n_test=40)
    base = ["vision", "compare", "--dataset", "kmnist", "--data-dir", str(data_dir), "--device", "cpu"]
    result = runner.invoke(app, [*base, "--models", "mlp-torch", "--dtype", "fp16"])
    assert result.exit_code == 2, result.output
    assert "--dtype fp16 needs CUDA" in result.output and "Traceback" not in result.output
    assert not (isolated_home / "runs").exists()
    out = tmp_path / "runs"
    args = [*base, "--models", "mlp-numpy,mlp-torch", "--epochs", "1", "--dtype", "bf16", "--json", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "mlp-numpy=fp32, mlp-torch=bf16" in " ".join(result.output.split())
    record = json.loads((out / "run.json").read_text())
    settings = {row["method"]: row["setting"] for row in record["results"]}
    assert settings["mlp-torch"].endswith(" bf16") and not settings["mlp-numpy"].endswith("bf16")
