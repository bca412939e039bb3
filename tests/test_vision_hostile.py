"""`mlx vision` under hostile use (issue 8): changed data, look-alike grid values, interrupted and
concurrent runs, malformed files of each format, absurd options. One line and exit != 0, or a
correct result; never a silently reused number."""

import gzip
import json

import numpy as np
import pytest
from typer.testing import CliRunner
from vision_helpers import idx_bytes, tiny_images, write_npz_dataset

from cli.main import app
from tests.helpers import one_line_error

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["vision", *map(str, args)])


@pytest.fixture
def data_dir(tmp_path):
    return write_npz_dataset(tmp_path / "kmnist", n_train=120, n_test=60)


def sweep_args(data_dir, out, *extra):
    return (
        "sweep",
        "--model",
        "mlp-numpy",
        "--depth",
        "1",
        "--width",
        "8",
        "--epochs",
        "1",
        "--dataset",
        "kmnist",
        "--data-dir",
        data_dir,
        "--out",
        out,
        "--json",
        *extra,
    )


def test_sweep_refuses_to_reuse_results_of_other_data(data_dir, tmp_path):
    """Item 1: a re-run after the data changed must not report the old rows."""
    out = tmp_path / "sweep"
    assert invoke(*sweep_args(data_dir, out)).exit_code == 0
    images, labels = tiny_images(120, seed=7)
    np.savez_compressed(data_dir / "kmnist-train-imgs.npz", images)
    np.savez_compressed(data_dir / "kmnist-train-labels.npz", labels)
    again = invoke(*sweep_args(data_dir, out))
    one_line_error(again, "train data")


def test_sweep_default_folder_follows_the_data(data_dir, tmp_path):
    """Item 1, default --out: changed data gets a fresh sweep folder, the old one is not reused."""
    args = [a for a in sweep_args(data_dir, "unused") if a not in ("--out", "unused")]
    first = json.loads(invoke(*args).stdout)
    images, labels = tiny_images(120, seed=7)
    np.savez_compressed(data_dir / "kmnist-train-imgs.npz", images)
    np.savez_compressed(data_dir / "kmnist-train-labels.npz", labels)
    second = json.loads(invoke(*args).stdout)
    assert second["config"]["n_skipped"] == 0 and first["config"]["sweep_dir"] != second["config"]["sweep_dir"]


def test_grid_values_that_print_alike_get_their_own_folders(data_dir, tmp_path):
    """Item 7: 0.001 and 0.0010000001 are two configurations; 1,1 is one."""
    out = tmp_path / "sweep"
    result = invoke(*sweep_args(data_dir, out, "--l2", "0.001,0.0010000001,1e-3", "--depth", "1,1"))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["results"]
    assert len(rows) == 2 and len({r["name"] for r in rows}) == 2
    again = invoke(*sweep_args(data_dir, out, "--l2", "0.001,0.0010000001,1e-3", "--depth", "1,1"))
    assert again.exit_code == 0 and json.loads(again.stdout)["config"]["n_skipped"] == 2


def test_an_interrupted_sweep_leaves_no_report_folder_and_the_next_run_cleans_up(data_dir, tmp_path, monkeypatch):
    """Item 9: the report folder is staged; staging of a dead process goes on the next run."""
    import vision.sweep

    out = tmp_path / "sweep"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vision.sweep, "plot_factor_effects", interrupted)
    result = invoke(*sweep_args(data_dir, out))
    assert result.exit_code == 130
    assert not list(out.glob("report-*")) and not list(out.glob(".*partial*"))
    from test_writes import dead_pid

    (out / f".report-x.partial-{dead_pid()}-abcdef").mkdir()  # what kill -9 leaves behind
    monkeypatch.undo()
    again = invoke(*sweep_args(data_dir, out))
    assert again.exit_code == 0, again.output
    assert not list(out.glob(".*partial*")) and len(list(out.glob("report-*"))) == 1


def test_two_sweeps_on_one_folder_cannot_interleave(data_dir, tmp_path):
    from common.locking import store_lock

    out = tmp_path / "sweep"
    out.mkdir()
    with store_lock(out, "sweep folder"):  # another process holds the folder
        result = invoke(*sweep_args(data_dir, out))
    one_line_error(result, "in use by pid")


def test_a_full_disk_while_saving_weights_is_one_line(data_dir, tmp_path, monkeypatch):
    """Item 10 for vision: ENOSPC from the writer -> one line, nothing half-written left."""
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    result = invoke(
        "compare",
        "--models",
        "mlp-numpy",
        "--epochs",
        "1",
        "--dataset",
        "kmnist",
        "--data-dir",
        data_dir,
        "--out",
        tmp_path / "runs",
    )
    one_line_error(result, "no space left on device")
    assert not (tmp_path / "runs").exists() and not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def _write_idx(folder, n_train=60, n_test=30, **override):
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = tiny_images(n, seed)
        files = {
            f"{prefix}-images-idx3-ubyte.gz": gzip.compress(idx_bytes(images)),
            f"{prefix}-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(labels)),
        }
        for name, raw in files.items():
            (folder / name).write_bytes(override.get(name, raw))
    return folder


def _npz_with(folder, split, images=None, labels=None):
    write_npz_dataset(folder, 60, 30)
    if images is not None:
        np.savez(folder / f"kmnist-{split}-imgs.npz", images)
    if labels is not None:
        np.savez(folder / f"kmnist-{split}-labels.npz", labels)
    return folder


HOSTILE_DATA = {
    "npz zero test images": (
        lambda d: _npz_with(d, "test", np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8)),
        "zero images",
    ),
    "npz zero train images": (
        lambda d: _npz_with(d, "train", np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8)),
        "zero images",
    ),
    "npz all black": (lambda d: _npz_with(d, "train", np.zeros((60, 28, 28), np.uint8)), "identical"),
    "npz not a zip": (
        lambda d: (_npz_with(d, "train"), (d / "kmnist-train-imgs.npz").write_bytes(b"junk"))[0],
        "not a readable npz",
    ),
    "npz labels out of range": (lambda d: _npz_with(d, "train", labels=np.full(60, 12, np.uint8)), "expected 0..9"),
    "npz float images": (lambda d: _npz_with(d, "test", images=np.zeros((30, 28, 28), np.float32)), "dtype"),
    "idx zero images": (
        lambda d: _write_idx(
            d,
            **{
                "t10k-images-idx3-ubyte.gz": gzip.compress(idx_bytes(np.zeros((0, 28, 28), np.uint8))),
                "t10k-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(np.zeros(0, np.uint8))),
            },
        ),
        "zero images",
    ),
    "idx truncated": (
        lambda d: _write_idx(
            d, **{"train-images-idx3-ubyte.gz": gzip.compress(idx_bytes(np.zeros((60, 28, 28), np.uint8))[:-5])}
        ),
        "truncated",
    ),
    "idx bad magic": (
        lambda d: _write_idx(d, **{"train-labels-idx1-ubyte.gz": gzip.compress(b"\x01\x02\x03\x04")}),
        "magic",
    ),
    "idx not gzip": (lambda d: _write_idx(d, **{"train-labels-idx1-ubyte.gz": b"plain"}), "cannot read idx"),
}


@pytest.mark.parametrize("command", ["compare", "sweep"])
@pytest.mark.parametrize("case", list(HOSTILE_DATA))
def test_malformed_data_is_one_line_before_any_training(tmp_path, case, command):
    """Item 11 and the all-black images: the error names the cause, before training starts."""
    make, message = HOSTILE_DATA[case]
    folder = make(tmp_path / "d")
    args = ("--epochs", "1", "--dataset", "kmnist", "--data-dir", folder, "--out", tmp_path / "o")
    result = (
        invoke(command, "--models", "mlp-numpy", *args)
        if command == "compare"
        else invoke("sweep", "--model", "mlp-numpy", "--depth", "1", "--width", "8", *args)
    )
    one_line_error(result, message)
    assert "diverged" not in result.output and not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def _file(tmp_path):
    (tmp_path / "f").write_text("x")
    return tmp_path / "f"


HOSTILE_OPTIONS = {
    "device mps": (lambda t: ("--device", "mps"), "--device: unknown value 'mps'; choose from auto, cpu, cuda"),
    "device tpu": (lambda t: ("--device", "tpu"), "--device: unknown value 'tpu'; choose from auto, cpu, cuda"),
    "out is a file": (lambda t: ("--out", _file(t)), "is a file, not a folder"),
    "out is another folder": (lambda t: ("--out", _file(t).parent), ("already exists (a folder)", "not a sweep")),
    "out under a file": (lambda t: ("--out", _file(t) / "sub"), "is a file, not a folder"),
    "data-dir with digits": (lambda t: ("--dataset", "digits", "--data-dir", t), "only read with --dataset kmnist"),
    "epochs zero": (lambda t: ("--epochs", "0"), "epoch"),
    "val fraction 1": (lambda t: ("--val-fraction", "1"), "--validation-fraction must lie"),
    "threads zero": (lambda t: ("--threads", "0"), "threads"),
    "seed negative": (lambda t: ("--seed", "-1"), "seed"),
}


@pytest.mark.parametrize("command", ["compare", "sweep"])
@pytest.mark.parametrize("case", list(HOSTILE_OPTIONS))
def test_absurd_options_are_one_line(tmp_path, case, command):
    """Items 13 and 14 and their class: every bad option is refused with one line before any work."""
    extra, message = HOSTILE_OPTIONS[case]
    extra = extra(tmp_path)
    head = (
        ("compare", "--models", "mlp-numpy")
        if command == "compare"
        else ("sweep", "--model", "mlp-numpy", "--depth", "1", "--width", "8")
    )
    defaults = () if "--out" in extra else ("--out", tmp_path / "o")
    result = invoke(*head, *defaults, *extra)
    line = one_line_error(result)
    assert any(m in line for m in (message if isinstance(message, tuple) else (message,))), line


@pytest.mark.parametrize("model, width", [("mlp-numpy", 10**6), ("mlp-torch", 10**9), ("cnn", 10**5)])
def test_a_model_too_big_to_train_is_refused_before_allocating(tmp_path, model, width):
    """The unbounded-memory class (item 4) for vision: a width is never taken as an allocation on faith."""
    result = invoke("sweep", "--model", model, "--depth", "2", "--width", width, "--out", tmp_path / "o")
    one_line_error(result, "parameters", "smaller --width")


def test_the_parameter_estimate_matches_the_models():
    import dataclasses

    from vision.specs import ModelName, build_model, estimated_parameters, preset

    for name in (ModelName.MLP_NUMPY, ModelName.MLP_TORCH):
        spec = dataclasses.replace(preset(name), depth=2, width=16)
        model = build_model(spec, 0.0, 1.0, seed=0)
        n = model.n_parameters() if name == ModelName.MLP_NUMPY else sum(p.numel() for p in model.parameters())
        assert estimated_parameters(spec) == n
    cnn = dataclasses.replace(preset(ModelName.CNN), depth=2, width=16)
    assert (
        abs(estimated_parameters(cnn) - sum(p.numel() for p in build_model(cnn, 0.0, 1.0, seed=0).parameters())) < 200
    )
