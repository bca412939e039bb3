"""The one run record: round trip, schema validation, predictions, refusal of foreign folders."""

import json

import numpy as np
import pytest

from common import StoreError
from common.record import (
    DataRef,
    ModelRef,
    Predictions,
    ResultRow,
    RunRecord,
    SplitRef,
    command_line,
    read_predictions,
    read_record,
    subset_fingerprint,
    validate,
    write_record,
)


def make_record(**overrides) -> RunRecord:
    rows = (
        ResultRow(
            "logreg-mean-L2-C=1",
            "logreg",
            "C=1",
            {"pooling": "mean", "layers": [2]},
            accuracy=0.75,
            macro_f1=0.7,
            validation_accuracy=0.8,
            n_train=8,
            n_test=4,
            trainable_params=132,
            train_seconds=0.1,
        ),
        ResultRow(
            "knn-mean-L2-k=1",
            "knn",
            "k=1",
            {"pooling": "mean", "layers": [2], "k": 1},
            accuracy=0.5,
            macro_f1=0.5,
            n_train=8,
            n_test=4,
            trainable_params=0,
            train_seconds=0.01,
        ),
    )
    fields = dict(
        kind="probe",
        command="probe compare",
        command_line="mlx probe compare --store s.h5",
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:00:01+00:00",
        config={"seed": 0},
        model=ModelRef("tiny", "abc"),
        data=DataRef("demo", "f00", (SplitRef("train", "aa", 8), SplitRef("test", "bb", 4)), ("a", "b")),
        device="cpu",
        results=rows,
        artifacts=("accuracy-by-layer.png",),
    )
    return RunRecord(**{**fields, **overrides})


def test_round_trip_with_predictions(tmp_path):
    record = make_record()
    predictions = Predictions(
        np.array([3, 5, 7, 9]),
        np.array([0, 1, 0, 1]),
        {"logreg-mean-L2-C=1": np.array([0, 1, 1, 1]), "knn-mean-L2-k=1": np.array([1, 1, 0, 0])},
    )
    write_record(tmp_path, record, predictions)
    back = read_record(tmp_path)
    assert back.to_dict() == record.to_dict()
    assert back.best.name == "logreg-mean-L2-C=1"
    assert back.data.test.fingerprint == "bb"
    saved = read_predictions(tmp_path)
    assert saved.row_ids.tolist() == [3, 5, 7, 9]
    assert saved.by_row["knn-mean-L2-k=1"].tolist() == [1, 1, 0, 0]


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda d: d.pop("kind"), "lacks 'kind'"),
        (lambda d: d.update(kind="nonsense"), "kind 'nonsense'"),
        (lambda d: d["results"][0].update(accuracy=1.5), "outside [0, 1]"),
        (lambda d: d["results"][0].update(val_accuracy=0.5), "unknown field 'val_accuracy'"),
        (lambda d: d["results"][1].update(name=d["results"][0]["name"]), "repeated"),
        (lambda d: d["results"][0].update(n_test="4"), "n_test is str"),
        (lambda d: d["data"]["splits"][0].pop("n_rows"), "lacks 'n_rows'"),
        (lambda d: d["data"].update(max_length="128"), "max_length is str"),
        (lambda d: d["results"][0].update(peak_memory_bytes=-1), "negative or not finite"),
        (lambda d: d["results"][0].update(predict_per_second=float("inf")), "negative or not finite"),
        (lambda d: d.update(device_name=None), "device_name is null"),
    ],
)
def test_validator_names_the_problem(edit, problem):
    d = make_record().to_dict()
    assert validate(d) == []
    edit(d)
    assert any(problem in p for p in validate(d)), validate(d)


def test_cost_and_text_fields_round_trip_and_records_from_before_them_still_read(tmp_path):
    data = DataRef("demo", "f00", (SplitRef("test", "bb", 4),), ("a", "b"), 256, "v123")
    row = ResultRow("finetune", "finetune", "lr=1", accuracy=0.5, peak_memory_bytes=2_000_000, predict_per_second=12.5)
    record = make_record(data=data, results=(row,), device_name="Some CPU, 2 cores")
    write_record(tmp_path, record)
    back = read_record(tmp_path)
    assert (back.data.max_length, back.data.validation_fingerprint, back.device_name) == (
        256,
        "v123",
        "Some CPU, 2 cores",
    )
    assert (back.results[0].peak_memory_bytes, back.results[0].predict_per_second) == (2_000_000, 12.5)
    old = make_record().to_dict()  # as written before these fields existed
    for key in ("max_length", "validation_fingerprint"):
        old["data"].pop(key)
    old.pop("device_name")
    for r in old["results"]:
        r.pop("peak_memory_bytes"), r.pop("predict_per_second")
    assert validate(old) == []
    (tmp_path / "run.json").write_text(json.dumps(old))
    back = read_record(tmp_path)
    assert (back.data.max_length, back.device_name, back.results[0].peak_memory_bytes) == (None, "", None)


def test_foreign_old_and_damaged_folders_are_refused_with_one_line(tmp_path):
    with pytest.raises(StoreError, match="not an mlx run"):
        read_record(tmp_path)
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(StoreError, match="older mlx"):
        read_record(tmp_path)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(StoreError, match="unreadable"):
        read_record(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({**make_record().to_dict(), "schema_version": 99}))
    with pytest.raises(StoreError, match="newer"):
        read_record(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({**make_record().to_dict(), "results": [{"name": "x"}]}))
    with pytest.raises(StoreError, match="invalid run.json"):
        read_record(tmp_path)


def test_predictions_must_match_rows(tmp_path):
    with pytest.raises(ValueError, match="match no result row"):
        write_record(tmp_path, make_record(), Predictions(np.arange(4), np.zeros(4), {"other": np.zeros(4)}))
    with pytest.raises(ValueError, match="match no result row"):
        write_record(tmp_path, make_record(), Predictions(np.arange(4), np.zeros(4), {"knn-mean-L2-k=1": np.zeros(3)}))


def test_helpers():
    assert command_line(["/x/bin/mlx", "report", "a b"]) == "mlx report 'a b'"
    assert subset_fingerprint("f", [1, 2]) == subset_fingerprint("f", np.array([1, 2]))
    assert subset_fingerprint("f", [1, 2]) != subset_fingerprint("f", [1, 3])


@pytest.mark.parametrize(
    "config, named",
    [
        ({}, "minilm"),
        ({"store_meta": {"dtype": "fp32"}}, "minilm"),
        ({"store_meta": {"dtype": "int8"}}, "minilm int8"),  # a probe of an int8 store
        ({"dtype": "int8"}, "minilm int8"),  # attention stats --dtype int8
        ({"dtype": "bf16"}, "minilm"),  # fine-tuning in bf16: the model's own weights
        ({"store_meta": "damaged"}, "minilm"),
    ],
)
def test_a_run_of_a_quantised_encoder_names_its_model_int8(config, named):
    assert make_record(config=config).model_named("minilm") == named
