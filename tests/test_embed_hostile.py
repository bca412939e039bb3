"""`mlx embed` and the text loaders under hostile input (issue 8): field counts, label values, classes
across splits, empty data, damaged model folders, --force after Ctrl-C, a full disk."""

import errno
import json
import shutil

import numpy as np
import pytest

from common import DataError
from embeddings.extract import EmbedConfig, extract_embeddings, plan_extraction
from embeddings.store import EmbeddingStore
from tests.helpers import invoke, one_line_error, write_ag_news_folder
from text.datasets import load_text_dataset


def embed_args(model, data, out, *extra):
    return ["embed", "--model", model, "--dataset", data, "--out", out, "--batch-size", "4", *extra]


def test_a_row_with_more_fields_than_the_header_is_an_error(tmp_path):
    """Item 2: the extra field must not become the label."""
    (tmp_path / "train.csv").write_text("text,label\nfine row,sports\nmarkets fell, sharply,business\n")
    with pytest.raises(DataError, match=r"train.csv row 3: 3 fields but the header has 2"):
        load_text_dataset(str(tmp_path / "train.csv"))
    (tmp_path / "train.csv").write_text("text,label\nshort row\n")
    with pytest.raises(DataError, match="row 2: 1 fields"):
        load_text_dataset(str(tmp_path / "train.csv"))


@pytest.mark.parametrize(
    "labels, names",
    [
        (["1000000000", "0", "1"], ("0", "1", "1000000000")),
        (["1000", "2000", "3000"], ("1000", "2000", "3000")),
        (["100000000000000000000", "7"], ("7", "100000000000000000000")),
        (["1", "2", "3", "4"], ("1", "2", "3", "4")),
    ],
)
def test_integer_labels_that_are_not_indices_are_class_names_said_aloud(tmp_path, labels, names):
    """Item 4: never a class count taken from a label's size."""
    rows = "".join(f"text {i},{label}\n" for i, label in enumerate(labels))
    (tmp_path / "train.csv").write_text("text,label\n" + rows)
    dataset = load_text_dataset(str(tmp_path / "train.csv"))
    assert dataset.label_names == names
    assert sorted(dataset.splits["train"].labels.tolist()) == list(range(len(names)))
    assert any("treated as" in note and "class names" in note for note in dataset.notes)


@pytest.mark.parametrize(
    "test_labels, train_labels",
    [
        (["a", "b", "c"], ["a", "b", "c", "d"]),
        (["0", "1", "2"], ["0", "1", "2", "3"]),
    ],
)
def test_classes_come_from_all_splits(tmp_path, test_labels, train_labels):
    """Item 5: test.csv sorts first and lacks a class; train must still load."""
    for name, labels in (("train.csv", train_labels), ("test.csv", test_labels)):
        (tmp_path / name).write_text("text,label\n" + "".join(f"t {i},{label}\n" for i, label in enumerate(labels)))
    dataset = load_text_dataset(str(tmp_path))
    assert len(dataset.label_names) == 4
    assert dataset.splits["train"].labels.tolist() == [0, 1, 2, 3] and dataset.splits["test"].labels.tolist() == [
        0,
        1,
        2,
    ]


def _parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = (
        pa.Table.from_pylist(rows)
        if rows
        else pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.int64())})
    )
    pq.write_table(table, path)


HOSTILE_FILES = {
    "csv header only": ("train.csv", lambda p: p.write_text("text,label\n"), "no data rows (only a header)"),
    "csv empty": ("train.csv", lambda p: p.write_text(""), "no data rows"),
    "csv extra field": ("train.csv", lambda p: p.write_text("text,label\na, b,0\n"), "row 2: 3 fields"),
    "csv bad utf8": ("train.csv", lambda p: p.write_bytes(b"text,label\n\xff\xfe,0\n"), "not valid UTF-8"),
    "csv empty label": ("train.csv", lambda p: p.write_text("text,label\nhello,\n"), "label ('label') is empty"),
    "csv unclosed quote": (
        "train.csv",
        lambda p: p.write_text('text,label\n"unclosed,0\nb,1\n'),
        "1 fields but the header has 2",
    ),
    "ag news short row": ("train.csv", lambda p: p.write_text('"1","t","d"\n"2","t"\n'), "expected 3 fields"),
    "jsonl empty": ("train.jsonl", lambda p: p.write_text("\n\n"), "has no data rows; add rows"),  # no header
    "jsonl array": ("train.jsonl", lambda p: p.write_text("[1, 2]\n"), "JSON object per line"),
    "jsonl list label": ("train.jsonl", lambda p: p.write_text('{"text": "a", "label": [1]}\n'), "is a list"),
    "jsonl NaN label": ("train.jsonl", lambda p: p.write_text('{"text": "a", "label": NaN}\n'), "is empty"),
    "jsonl missing label": ("train.jsonl", lambda p: p.write_text('{"text": "a"}\n'), "no column 'label'"),
    "parquet empty": ("train.parquet", lambda p: _parquet(p, []), "no data rows"),
    "jsonl zero bytes": ("train.jsonl", lambda p: p.write_text(""), "has no data rows; add rows"),
    "parquet junk": ("train.parquet", lambda p: p.write_bytes(b"PAR1 not really"), "not a readable Parquet file"),
    "parquet no text": ("train.parquet", lambda p: _parquet(p, [{"body": "x", "label": 0}]), "no column 'text'"),
    "parquet null text": (
        "train.parquet",
        lambda p: _parquet(p, [{"text": None, "label": 0}, {"text": "b", "label": 1}]),
        "row 1",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE_FILES))
def test_malformed_files_are_one_line(tiny_bert, tmp_path, case):
    """Items 2 and 11 and their class, for every supported format."""
    name, write, fragment = HOSTILE_FILES[case]
    path = tmp_path / name
    write(path)
    out = tmp_path / "s.h5"
    one_line_error(invoke(*embed_args(tiny_bert, path, out)), fragment)
    assert not out.exists()


def test_a_split_left_empty_is_an_error(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\na,0\nb,1\n")
    (folder / "test.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="test.csv has no data rows"):
        load_text_dataset(str(folder))


def _damaged_model(tiny_bert, tmp_path, damage):
    folder = tmp_path / "model"
    shutil.copytree(tiny_bert, folder)
    damage(folder)
    return folder


def _truncate(folder):
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


MODEL_DAMAGE = {
    "truncated weights": (_truncate, "could not be loaded"),
    "broken config.json": (lambda f: (f / "config.json").write_text("{not json"), "config.json is not valid JSON"),
    "no weights": (lambda f: (f / "model.safetensors").unlink(), "has no weights file"),
    "no config": (lambda f: (f / "config.json").unlink(), "has no config.json"),
}


@pytest.mark.parametrize("case", list(MODEL_DAMAGE))
def test_a_damaged_model_folder_is_one_line(tiny_bert, tmp_path, case):
    """Item 12: and never 'not in the local HF cache' for a folder."""
    damage, fragment = MODEL_DAMAGE[case]
    model = _damaged_model(tiny_bert, tmp_path, damage)
    result = invoke(*embed_args(model, "demo", tmp_path / "s.h5", "--limit", "8"))
    one_line_error(result, fragment)
    assert "cache" not in result.stderr


def _run_folder(tmp_path, tiny_bert, adapter: bool = False):
    """A fine-tuning run's folder: model/ (a whole model), run.json, and for LoRA adapter/ (peft's files)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_bert, run / "model")
    (run / "run.json").write_text("{}")
    (run / "config.json").write_text("{}")  # the run's options, as mlx finetune writes them
    if adapter:
        _adapter(run / "adapter")
    return run


def _adapter(folder):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"")
    return folder


# folders beside a model given as --model: (the folder given, the one-line error's fragment); {run}: the run folder
MODEL_NEIGHBOURS = {
    "a run folder": (
        lambda t, b: _run_folder(t, b),
        "{run} is a run folder, not a model; its fine-tuned model is {run}/model: pass --model {run}/model",
    ),
    "a LoRA run's adapter": (
        lambda t, b: _run_folder(t, b, adapter=True) / "adapter",
        "holds a LoRA adapter (peft), not a whole model; pass the run's merged model, --model {run}/model",
    ),
    "an adapter alone": (lambda t, b: _adapter(t / "adapter"), "merge_and_unload() and save_pretrained the result"),
}


@pytest.mark.parametrize("case", list(MODEL_NEIGHBOURS))
def test_a_folder_beside_a_model_names_the_model_folder(tiny_bert, tmp_path, case):
    make, fragment = MODEL_NEIGHBOURS[case]
    given = make(tmp_path, tiny_bert)
    result = invoke(*embed_args(given, "demo", tmp_path / "s.h5", "--limit", "8"))
    one_line_error(result, fragment.format(run=(tmp_path / "run").resolve()))
    assert not (tmp_path / "s.h5").exists()


def test_a_model_path_that_does_not_exist_is_named_as_such(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    one_line_error(invoke(*embed_args(tmp_path / "no-such-model", "demo", tmp_path / "s.h5")), "does not exist")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--limit", "0"], "--limit"),
        (["--batch-size", "0"], "--batch-size"),
        (["--max-length", "1"], "--max-length"),
        (["--max-length", "100000"], "more than model"),
        (["--seed", "-3"], "--seed"),
        (["--layer", "99"], "layers 0..2"),
        (["--layer", "3-1"], "--layer"),
        (["--pooling", "nope"], "pooling"),
        (["--split", "nope"], "split 'nope'"),
        (["--device", "mps"], "mps"),
    ],
)
def test_absurd_options_are_one_line(tiny_bert, tmp_path, args, fragment):
    one_line_error(invoke(*embed_args(tiny_bert, "demo", tmp_path / "s.h5", *args)), fragment)


def test_force_after_ctrl_c_keeps_the_finished_shards_and_the_rate_counts_only_new_work(tiny_bert, tmp_path):
    """Item 8 and the smaller item on sentences/s after a resume."""
    data = write_ag_news_folder(tmp_path / "ag", n_train=150, n_test=8)
    config = EmbedConfig(dataset=str(data), model=str(tiny_bert), batch_size=4, out=tmp_path / "s.h5", force=True)

    def interrupt(task, done, total, **_):
        if task == "embed train" and done > 64:  # a shard is 16 batches of 4 = 64 texts
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_embeddings(plan_extraction(config), interrupt)
    seen = []
    result = extract_embeddings(plan_extraction(config), lambda task, done, total, **_: seen.append((task, done)))
    assert ("embed train", 4) not in seen  # shard 0 was kept, not recomputed
    assert result.n_resumed == 64 and result.n_embedded == 158 - 64
    assert result.sentences_per_second == pytest.approx(94 / result.seconds)


def test_a_full_disk_while_writing_the_store_is_one_line_and_keeps_the_shards(tiny_bert, tmp_path, monkeypatch):
    """Item 10 for embed: the store write fails cleanly; the shards stay for a resume."""
    import embeddings.store

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(embeddings.store, "_write_split", full)
    data = write_ag_news_folder(tmp_path / "ag")
    out = tmp_path / "s.h5"
    one_line_error(invoke(*embed_args(tiny_bert, data, out)), "no space left on device")
    assert not out.exists() and not list(tmp_path.glob(".s.h5.partial-*"))
    assert list((tmp_path / ".s.h5.partial").glob("*.npz"))
    monkeypatch.undo()
    assert invoke(*embed_args(tiny_bert, data, out)).exit_code == 0
    with EmbeddingStore(out) as store:
        assert store.info.splits == {"train": 24, "test": 12}


def test_a_store_too_big_for_the_disk_is_refused_before_writing(tiny_bert, tmp_path, monkeypatch):
    import shutil as shutil_module
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage(10, 10, 0))
    data = write_ag_news_folder(tmp_path / "ag")
    one_line_error(invoke(*embed_args(tiny_bert, data, tmp_path / "s.h5")), "no space left on device", "MB are free")


def test_store_list_of_a_missing_folder_is_an_error(tmp_path):
    """Item 16."""
    one_line_error(invoke("store", "list", "--root", tmp_path / "nope"), "does not exist")
    (tmp_path / "file").write_text("x")
    one_line_error(invoke("store", "list", "--root", tmp_path / "file"), "not a folder")
    assert json.loads(invoke("store", "list", "--root", tmp_path, "--json").stdout) == []


def test_demo_rows_still_load():
    dataset = load_text_dataset("demo")
    assert np.bincount(dataset.splits["test"].labels).tolist() == [25, 25, 25, 25]
