"""`mlx probe` under hostile use (issue 8): test rows that are train rows, damaged stores, absurd
options, a full disk, an interrupted run, two runs at once."""

import errno
import json
import shutil

import pytest
from typer.testing import CliRunner

from cli.main import app
from probes.synthetic import write_synthetic_store
from tests.helpers import one_line_error

runner = CliRunner()


def probe(*args):
    return runner.invoke(app, ["probe", *map(str, args)])


def no_runs_left(home):
    runs = home / "runs" / "probe"
    return not runs.exists() or not any(runs.iterdir())


def test_the_same_one_split_store_as_test_store_is_refused(tmp_path, isolated_home):
    """Item 3: train scored against itself is 100% and means nothing."""
    store = write_synthetic_store(tmp_path / "s.h5", splits=("train",), n_train=60)
    one_line_error(probe("knn", "--store", store, "--test-store", store, "--k", "1"), "are train rows")
    copy = tmp_path / "copy.h5"
    shutil.copy(store, copy)  # another file, the same rows: the split fingerprint tells
    one_line_error(probe("knn", "--store", store, "--test-store", copy, "--k", "1"), "are train rows")
    assert no_runs_left(isolated_home)


def test_overlapping_rows_are_said_aloud(tmp_path, isolated_home):
    """Item 3, overlap: two subsamples of one source split share rows."""
    train = write_synthetic_store(tmp_path / "a.h5", splits=("train",), n_train=30, seed=0)
    test = write_synthetic_store(tmp_path / "b.h5", splits=("train",), n_train=60, seed=1)
    result = probe("knn", "--store", train, "--test-store", test, "--k", "1")
    assert result.exit_code == 0, result.output
    assert "30 of 60 test rows are also train rows" in result.stderr
    config = json.loads(next((isolated_home / "runs" / "probe").glob("*/run.json")).read_text())
    assert any("also train rows" in note for note in config["notes"])


def _truncated(tmp_path):
    store = write_synthetic_store(tmp_path / "t.h5")
    store.write_bytes(store.read_bytes()[:2000])
    return store


def _file(tmp_path):
    (tmp_path / "f").write_text("x")
    return tmp_path / "f"


HOSTILE = {
    "truncated store": (lambda t: ("knn", "--store", _truncated(t)), "not a readable HDF5"),
    "empty store file": (lambda t: ("knn", "--store", _file(t)), "not a readable HDF5"),
    "store is a folder": (lambda t: ("knn", "--store", t), "is a folder"),
    "k zero": (lambda t: ("knn", "--store", write_synthetic_store(t / "s.h5"), "--k", "0"), "--k"),
    "k negative": (lambda t: ("knn", "--store", write_synthetic_store(t / "s.h5"), "--k", "-5"), "--k"),
    "k text": (lambda t: ("knn", "--store", write_synthetic_store(t / "s.h5"), "--k", "five"), "--k"),
    "k huge": (
        lambda t: ("knn", "--store", write_synthetic_store(t / "s.h5"), "--k", "1000000"),
        "larger than the training set",
    ),
    "C zero": (lambda t: ("logreg", "--store", write_synthetic_store(t / "s.h5"), "--C", "0"), "--C"),
    "C inf": (lambda t: ("logreg", "--store", write_synthetic_store(t / "s.h5"), "--C", "inf"), "--C"),
    "C nan": (lambda t: ("logreg", "--store", write_synthetic_store(t / "s.h5"), "--C", "nan"), "--C"),
    "test fraction 1.5": (
        lambda t: ("knn", "--store", write_synthetic_store(t / "s.h5", splits=("train",)), "--test-fraction", "1.5"),
        "--test-fraction",
    ),
    "seed negative": (
        lambda t: ("knn", "--store", write_synthetic_store(t / "s.h5"), "--seed", "-1", "--k", "1"),
        "--seed",
    ),
    "layer absent": (lambda t: ("knn", "--store", write_synthetic_store(t / "s.h5"), "--layer", "99"), "layer 99"),
    "pooling absent": (
        lambda t: ("knn", "--store", write_synthetic_store(t / "s.h5"), "--pooling", "max"),
        "pooling 'max'",
    ),
    "out exists": (
        lambda t: ("knn", "--store", write_synthetic_store(t / "s.h5"), "--out", _file(t)),
        "is a file, not a folder",
    ),
    "out under a file": (
        lambda t: ("knn", "--store", write_synthetic_store(t / "s.h5"), "--out", _file(t) / "run"),
        "is a file, not a folder",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_is_one_line(tmp_path, isolated_home, case):
    make, fragment = HOSTILE[case]
    one_line_error(probe(*make(tmp_path)), fragment)
    assert no_runs_left(isolated_home)


def test_a_full_disk_while_saving_the_run_is_one_line(tmp_path, isolated_home, monkeypatch):
    """Item 10 for probe: no traceback, no run folder, no staging left."""
    store = write_synthetic_store(tmp_path / "s.h5")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(json, "dump", full)
    one_line_error(probe("knn", "--store", store, "--k", "1"), "no space left on device")
    assert no_runs_left(isolated_home)


def test_an_interrupted_probe_exits_130_and_leaves_nothing(tmp_path, isolated_home, monkeypatch):
    import probes.evaluate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(probes.evaluate, "_evaluate", interrupted)
    result = probe("knn", "--store", write_synthetic_store(tmp_path / "s.h5"), "--k", "1")
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert no_runs_left(isolated_home)


def test_two_runs_in_the_same_second_keep_both(tmp_path, isolated_home):
    store = write_synthetic_store(tmp_path / "s.h5", n_train=30, n_test=10)
    for _ in range(2):
        assert probe("knn", "--store", store, "--k", "1").exit_code == 0
    assert len(list((isolated_home / "runs" / "probe").iterdir())) == 2
