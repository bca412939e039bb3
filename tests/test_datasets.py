"""Dataset loading: the AG News layout, generic files, split names, subsampling, the demo, the hub offline."""

import json

import numpy as np
import pytest

from common import DataError
from tests.helpers import write_ag_news_folder
from text.datasets import load_text_dataset, split_name


def test_ag_news_layout(tmp_path):
    dataset = load_text_dataset(str(write_ag_news_folder(tmp_path / "ag")))
    assert list(dataset.splits) == ["train", "test"]
    train = dataset.splits["train"]
    assert train.texts[1].startswith("team wins cup match 1 the team wins cup match")  # title + description
    assert list(train.labels[:4]) == [0, 1, 2, 3]
    assert dataset.label_names == ("World", "Sports", "Business", "Sci/Tech")


def test_split_names_come_from_file_names(tmp_path):
    from pathlib import Path

    assert split_name(Path("train_first10429.csv")) == "train"
    assert split_name(Path("dev.jsonl")) == "validation"
    assert split_name(Path("holdout.csv")) == "holdout"
    folder = write_ag_news_folder(tmp_path / "ag")
    (folder / "train.csv").rename(folder / "train_first24.csv")
    dataset = load_text_dataset(str(folder))
    assert "train" in dataset.splits and any("train_first24.csv -> split train" in n for n in dataset.notes)


def test_jsonl_and_parquet_with_named_labels(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"body": f"text {i}", "topic": ["sport", "world"][i % 2]} for i in range(6)]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    dataset = load_text_dataset(str(tmp_path / "train.jsonl"), text_column="body", label_column="topic")
    assert dataset.label_names == ("sport", "world") and list(dataset.splits["train"].labels) == [0, 1, 0, 1, 0, 1]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    dataset = load_text_dataset(str(tmp_path / "test.parquet"), text_column="body", label_column="topic")
    assert list(dataset.splits) == ["test"] and len(dataset.splits["test"]) == 6


def test_limit_is_stratified_seeded_and_keeps_order(tmp_path):
    folder = write_ag_news_folder(tmp_path / "ag", n_train=40)
    a = load_text_dataset(str(folder), splits=("train",), limit=8, seed=1).splits["train"]
    b = load_text_dataset(str(folder), splits=("train",), limit=8, seed=1).splits["train"]
    c = load_text_dataset(str(folder), splits=("train",), limit=8, seed=2).splits["train"]
    assert a.texts == b.texts and a.texts != c.texts
    assert np.bincount(a.labels).tolist() == [2, 2, 2, 2]
    assert list(a.row_ids) == sorted(a.row_ids)
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_demo_set_is_bundled():
    dataset = load_text_dataset("demo")
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 300, "test": 100}
    assert np.bincount(dataset.splits["test"].labels).tolist() == [25, 25, 25, 25]


def test_ag_news_hub_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="offline alternatives: --dataset demo"):
        load_text_dataset("ag_news")


def test_sparse_integer_labels_are_class_names_said_aloud(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\nalpha,0\nbeta,5\n")
    dataset = load_text_dataset(str(tmp_path / "train.csv"))
    assert dataset.label_names == ("0", "5") and list(dataset.splits["train"].labels) == [0, 1]
    assert any("treated as 2 class names" in note for note in dataset.notes)


def test_layer_ranges():
    from embeddings.extract import resolve_layers

    assert resolve_layers("4-6", 6) == (4, 5, 6) and resolve_layers("1,3-4", 6) == (1, 3, 4)
    assert resolve_layers("last", 6) == (6,) and resolve_layers("all", 2) == (0, 1, 2)
