"""Every file mlx reads back, under every defect (issue 20, mechanism 4): truncated, random bytes, empty,
not JSON, the wrong JSON type, an unknown key, a missing key, a field of the wrong type. Each is one
line naming the file, never the internal-error path (conftest fails a test that reaches it)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_report import fake_run

from common.checkpoints import CheckpointDir
from common.errors import StoreError
from tests.helpers import invoke, one_line_error


def defects(valid: dict) -> dict[str, bytes]:
    """Damaged versions of the JSON object ``valid``, by name."""
    text = json.dumps(valid).encode()
    first = next(iter(valid))
    return {
        "truncated": text[: len(text) // 2],
        "random bytes": np.random.default_rng(0).bytes(300),
        "empty": b"",
        "not JSON": b"this is not json",
        "a list": json.dumps([valid]).encode(),
        "null": b"null",
        "a string": b'"text"',
        "a number": b"7",
        "unknown key": json.dumps({**valid, "surprise": 1}).encode(),
        "missing key": json.dumps({k: v for k, v in valid.items() if k != first}).encode(),
        "wrong type": json.dumps({**valid, first: [valid[first]]}).encode(),
        "not UTF-8": b'{"\xff\xfe": 1}',
    }


DEFECTS = sorted(defects({"any": 1}))


def _run(tmp_path) -> Path:
    return fake_run(tmp_path / "runs" / "p", "probe", {"knn-a": 0.75, "logreg-a": 0.8})


@pytest.mark.parametrize("defect", DEFECTS)
def test_a_damaged_run_json_is_one_line_for_every_command_that_reads_it(tmp_path, defect):
    run = _run(tmp_path)
    valid = json.loads((run / "run.json").read_text())
    (run / "run.json").write_bytes(defects(valid)[defect])
    one_line_error(invoke("runs", "show", run), str(run))
    other = fake_run(tmp_path / "runs" / "f", "finetune", {"finetune": 0.9}, seed=1)
    one_line_error(invoke("report", run, other, "--no-plots"), str(run))
    listed = invoke("runs", "list", "--root", tmp_path / "runs")  # a listing skips it, saying so
    assert listed.exit_code == 0 and "internal error" not in listed.stderr


@pytest.mark.parametrize("defect", DEFECTS)
def test_a_damaged_best_json_is_one_line(tmp_path, defect):
    checkpoints = CheckpointDir(tmp_path / "c")
    checkpoints.save({"w": torch.zeros(1)}, 2, best=True)
    (checkpoints.folder / "best.json").write_bytes(defects({"step": 2, "file": "step-00000002.pt"})[defect])
    with pytest.raises(StoreError) as caught:
        checkpoints.best_step()
    assert "best.json" in str(caught.value) and "\n" not in str(caught.value)


HEAD = {"train_accuracy": 0.5, "seconds": 1.0, "n_rows": 10}


@pytest.mark.parametrize("defect", DEFECTS)
def test_a_damaged_head_probe_json_is_one_line(tmp_path, defect):
    from finetune.run import _read_head_fit

    path = tmp_path / "head_probe.json"
    path.write_bytes(defects(HEAD)[defect])
    with pytest.raises(StoreError) as caught:
        _read_head_fit(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
