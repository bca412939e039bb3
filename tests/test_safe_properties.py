"""Property tests of the read-back readers (issue 20, mechanism 4): whatever the bytes or the JSON value,
a reader returns something of its schema or raises one StoreError line naming the file; nothing else."""

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from common.errors import StoreError
from common.record import DataRef, Predictions, ResultRow, RunRecord, SplitRef, read_predictions, write_record
from common.schema import read_checked_json, type_problem

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SCHEMA = {"step": (int,), "file": (str,), "score": (float, int, type(None))}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# objects close to the schema: its keys (some missing, some of other types) plus a stray key now and then
near_schema = st.fixed_dictionaries(
    {},
    optional={
        "step": st.integers() | json_values,
        "file": st.text() | json_values,
        "score": st.floats(allow_nan=False) | st.none() | json_values,
        "stray": json_values,
    },
)


def _one_line_naming(exc: StoreError, path) -> None:
    assert str(path) in str(exc) and "\n" not in str(exc)


@SETTINGS
@given(value=json_values | near_schema)
def test_read_checked_json_returns_the_schema_or_one_line(tmp_path, value):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(value))
    try:
        d = read_checked_json(path, SCHEMA, "re-run")
    except StoreError as exc:
        _one_line_naming(exc, path)
        return
    assert set(d) == set(SCHEMA) and all(type_problem(d[k], SCHEMA[k], k) is None for k in SCHEMA)


@SETTINGS
@given(content=st.binary(max_size=200))
def test_read_checked_json_of_any_bytes_is_the_schema_or_one_line(tmp_path, content):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    try:
        read_checked_json(path, SCHEMA, "re-run")
    except StoreError as exc:
        _one_line_naming(exc, path)


N = 6


def _record(accuracy: float) -> RunRecord:
    return RunRecord(
        kind="probe",
        command="probe knn",
        command_line="mlx probe knn",
        started_at="t",
        finished_at="t",
        config={},
        model=None,
        data=DataRef("d", "fp", (SplitRef("test", "tfp", N),), ("a", "b", "c")),
        device="cpu",
        results=(ResultRow("knn", "knn", "k=1", accuracy=accuracy, n_test=N),),
    )


arrays = hnp.arrays(
    dtype=st.sampled_from([np.int64, np.int32, np.uint8, np.float64, np.bool_]),
    shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=N + 1),
)


@SETTINGS
@given(
    chosen=st.dictionaries(st.sampled_from(["row_ids", "y_true", "knn", "other"]), arrays, max_size=4),
    accuracy=st.sampled_from([0.0, 0.5, 1.0, 0.99]),
)
def test_read_predictions_returns_consistent_predictions_or_one_line(tmp_path, chosen, accuracy):
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    record = _record(accuracy)
    write_record(run, record)
    np.savez(run / "predictions.npz", **chosen)
    try:
        p = read_predictions(run, record)
    except StoreError as exc:
        _one_line_naming(exc, run / "predictions.npz")
        return
    # what the report then relies on: one integer label in 0..C-1 per test row, the accuracy it records
    assert p.row_ids.shape == p.y_true.shape == p.by_row["knn"].shape == (N,)
    assert len(set(p.row_ids.tolist())) == N
    assert ((0 <= p.y_true) & (p.y_true < 3)).all() and ((0 <= p.by_row["knn"]) & (p.by_row["knn"] < 3)).all()
    assert math.isclose(float(np.mean(p.by_row["knn"] == p.y_true)), accuracy)


def test_a_consistent_predictions_file_is_read(tmp_path):
    """The property above is not vacuous: a file that fits its record is read."""
    record = _record(0.5)
    y_true = np.array([0, 1, 2, 0, 1, 2])
    y_pred = np.array([0, 1, 2, 1, 2, 0])
    write_record(tmp_path, record, Predictions(np.arange(N), y_true, {"knn": y_pred}))
    assert np.array_equal(read_predictions(tmp_path, record).by_row["knn"], y_pred)
    with pytest.raises(StoreError, match="records accuracy 0.9"):
        read_predictions(tmp_path, _record(0.9))


@SETTINGS
@given(content=st.binary(max_size=400), cut=st.integers(min_value=0, max_value=2000))
def test_a_checkpoint_of_any_bytes_loads_as_a_dict_or_is_one_line(tmp_path, content, cut):
    import io

    import torch

    from training.checkpoints import CheckpointDir

    checkpoints = CheckpointDir(tmp_path / "c")
    checkpoints.folder.mkdir(exist_ok=True)
    stream = io.BytesIO()
    torch.save({"w": torch.arange(3)}, stream)
    whole = stream.getvalue()
    for candidate in (content, whole[:cut] + content):  # anything, and a real checkpoint cut and continued
        checkpoints.path(1).write_bytes(candidate)
        try:
            assert isinstance(checkpoints.load(1), dict)
        except StoreError as exc:
            _one_line_naming(exc, checkpoints.path(1))
