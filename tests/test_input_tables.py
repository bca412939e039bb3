"""Issue 20, mechanism 2: one table reader (common.tables) and one label normaliser (common.labels).

Generated tables (CSV, JSONL, Parquet; random headers, texts with quotes, newlines and unicode, labels
of one class written in several ways) either load to exactly the rows written, one class per value,
or fail with one DataError line naming the file.
"""

import csv
import json
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import DataError, MlxError
from common.labels import normalise_labels
from tests.helpers import invoke
from text.datasets import load_text_dataset

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Texts: any unicode but surrogates (not encodable) and NUL; quotes, commas, newlines, U+2028 included.
TEXTS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40
).filter(lambda t: t.strip())
NAMES = st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd", "Zs", "Pd")), max_size=6)


def spellings(value: int, fmt: str):
    """Ways to write the class ``value`` in a ``fmt`` file; all must read as one class."""
    if fmt == "csv":
        return [str(value), f"{value}.0", f" {value} ", f"{value}.000"]
    if fmt == "jsonl":
        return [value, float(value), str(value), f"{value}.0"]
    return [value]  # Parquet: one type per column, chosen below


def write_table(path, header, rows, fmt):
    if fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
    elif fmt == "jsonl":
        # Duplicate keys reach the file as written: json.dumps of a dict could not hold them.
        lines = [
            "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in zip(header, row)) + "}" for row in rows
        ]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = [pa.array([row[i] for row in rows]) for i in range(len(header))]
        pq.write_table(pa.Table.from_arrays(columns, names=list(header)), path)


@SETTINGS
@given(
    fmt=st.sampled_from(["csv", "jsonl", "parquet"]),
    extra=st.lists(NAMES, max_size=3),
    rows=st.lists(st.tuples(TEXTS, st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=12),
    parquet_float=st.booleans(),
)
def test_generated_tables_load_exactly_or_fail_in_one_line(tmp_path_factory, fmt, extra, rows, parquet_float):
    folder = tmp_path_factory.mktemp("table")
    header = ["text", "label", *extra]
    body = []
    for text, cls, spelling in rows:
        forms = spellings(cls, fmt)
        label = (float(cls) if parquet_float else cls) if fmt == "parquet" else forms[spelling % len(forms)]
        body.append([text, label, *(["x"] * len(extra))])
    path = folder / f"train.{fmt}"
    write_table(path, header, body, fmt)
    clean = [name.strip() for name in header]
    try:
        dataset = load_text_dataset(str(path))
    except MlxError as exc:
        message = str(exc)
        assert isinstance(exc, DataError) and "\n" not in message and str(path) in message, message
        # The only refusals a well-formed generated table earns: a header name blank or repeated.
        assert any(not name for name in clean) or len(set(clean)) < len(clean), message
        return
    assert all(name and clean.count(name) == 1 for name in clean), "a defective header was accepted"
    split = dataset.splits["train"]
    assert split.texts == tuple(text for text, _, _ in rows)
    classes = [cls for _, cls, _ in rows]
    loaded = split.labels.tolist()
    # One class per value, however written: the loaded labels partition the rows like the classes.
    assert all((a == b) == (x == y) for a, x in zip(classes, loaded) for b, y in zip(classes, loaded))
    assert len(dataset.label_names) == len(set(classes))


@pytest.mark.parametrize(
    "header, fragment",
    [
        ("text,label,label", "column 'label' appears 2 times"),
        ("text, label,label ", "column 'label' appears 2 times"),
        ("text,,label", "column 2 of the header has no name"),
        (",text,label", "column 1 of the header has no name"),
    ],
)
def test_csv_header_defects_are_refused(tmp_path, header, fragment):
    """A repeated name used to keep the last column silently; a blank one was a column named ''."""
    path = tmp_path / "train.csv"
    path.write_text(header + "\n" + ",".join(["a", "0", "1"][: header.count(",") + 1]) + "\n")
    with pytest.raises(DataError, match=fragment):
        load_text_dataset(str(path))


def test_jsonl_and_parquet_header_defects_are_refused(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": 0, "label": 1}\n')
    with pytest.raises(DataError, match="line 1: column 'label' appears 2 times"):
        load_text_dataset(str(path))
    path.write_text('{"text": "a", "label": 0, "": 1}\n')
    with pytest.raises(DataError, match="column 3 of the header has no name"):
        load_text_dataset(str(path))
    path.write_text('{"text": "a", "label": 0}\n{"text": "b"}\n')
    with pytest.raises(DataError, match="row 2 has no 'label'"):
        load_text_dataset(str(path))
    path = tmp_path / "train.parquet"
    write_table(path, ["text", "label", "label"], [["a", 0, 1]], "parquet")
    with pytest.raises(DataError, match="column 'label' appears 2 times"):
        load_text_dataset(str(path))


def test_one_column_for_text_and_label_and_a_class_named_twice_are_refused(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\nhello,a\nworld,b\n")
    with pytest.raises(MlxError, match="both 'text'"):
        load_text_dataset(str(path), text_column="text", label_column="text")
    (tmp_path / "classes.txt").write_text("a\nb\na\n")
    with pytest.raises(DataError, match="lists the class 'a' twice"):
        load_text_dataset(str(path))


def test_jsonl_lines_end_at_newlines_only(tmp_path):
    """U+2028 inside a JSON string is valid JSON; str.splitlines cut the record there."""
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a\u2028b", "label": 0}\n{"text": "c\x85d", "label": 1}\n', encoding="utf-8")
    assert load_text_dataset(str(path)).splits["train"].texts == ("a\u2028b", "c\x85d")


# --- item 4: one class per value --------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, labels",
    [
        ("csv", ["0", "1", "2", "3", "0.0", "1.0", "2.0", "3.0"]),
        ("jsonl", [0, 1, 2, 3, 0.0, 1.0, 2.0, 3.0]),
        ("jsonl", ["1", 1, 1.0, "1.0", " 1 ", "0", 0, 0.0]),
    ],
)
def test_one_and_one_point_zero_are_one_class_said_aloud(tmp_path, fmt, labels):
    """Item 4: `1` and `1.0` in one column became two classes each (8 classes from 4)."""
    path = tmp_path / f"train.{fmt}"
    write_table(path, ["text", "label"], [[f"text {i}", v] for i, v in enumerate(labels)], fmt)
    dataset = load_text_dataset(str(path))
    values = [int(float(v)) for v in labels]
    assert len(dataset.label_names) == len(set(values))
    assert dataset.splits["train"].labels.tolist() == values
    assert any("one spelling per class" in note and "'1.0' -> '1'" in note for note in dataset.notes)


def test_float_labels_make_as_many_classes_as_values_in_finetune(tmp_path):
    """Item 4: float labels silently made an 8-class fine-tune; the plan now has the 4 classes."""
    from finetune.config import FinetuneConfig
    from finetune.plan import prepare_finetune

    for split, offset in (("train", 0), ("test", 1000)):  # test rows differ from train rows (held-out check)
        rows = [[f"word{i + offset} text", float(i % 4) if i % 2 else i % 4] for i in range(40)]
        write_table(tmp_path / f"{split}.jsonl", ["text", "label"], rows, "jsonl")
    plan = prepare_finetune(FinetuneConfig(model="minilm", dataset=str(tmp_path), out=tmp_path / "run").check())
    assert len(plan.dataset.label_names) == 4


@pytest.mark.parametrize(
    "labels, fragment",
    [
        ([0, 1, 0.5], "0.5 is not a whole number"),
        ([0, 1, True], "is a boolean but other labels"),
        ([0, 1, None], "is empty"),
        ([0, 1, float("nan")], "is empty (NaN)"),
        ([0, 1, float("inf")], "inf, not a class"),
        ([0, 1, [1]], "is a list"),
        (["0", "1", "1e999"], "too large for a number"),
    ],
)
def test_labels_that_name_no_class_are_refused_naming_the_row(tmp_path, labels, fragment):
    with pytest.raises(DataError, match=fragment.replace("(", r"\(").replace(")", r"\)")) as info:
        normalise_labels({"train": labels}, {"train": tmp_path / "train.jsonl"})
    assert "row 3" in str(info.value)


def test_booleans_alone_are_two_classes_said_aloud(tmp_path):
    encoded, names, notes = normalise_labels({"train": [True, False, True]}, {"train": tmp_path / "t.jsonl"})
    assert names == ("False", "True") and encoded["train"].tolist() == [1, 0, 1] and notes


@SETTINGS
@given(
    values=st.lists(st.integers(0, 5), min_size=1, max_size=20),
    forms=st.lists(st.integers(0, 5), min_size=20, max_size=20),
)
def test_generated_spellings_never_split_a_class(tmp_path_factory, values, forms):
    def spell(v, k):
        return [v, float(v), str(v), f"{v}.0", f" {v}", f"{v:+d}"][k]

    raw = [spell(v, k) for v, k in zip(values, forms)]
    encoded, names, _ = normalise_labels({"train": raw}, {"train": tmp_path_factory.mktemp("l") / "t.csv"})
    labels = encoded["train"]
    assert len(names) == len(set(values))
    assert all((a == b) == (x == y) for a, x in zip(values, labels) for b, y in zip(values, labels))
    assert not any(isinstance(n, float) or (isinstance(n, str) and "." in n) for n in names)
    assert math.isfinite(float(np.sum(labels)))


# --- item 12: a valid long field --------------------------------------------------------------


def test_a_csv_field_over_the_csv_modules_default_limit_loads(tmp_path):
    """Item 12: a field over 131,072 characters was refused ('field larger than field limit')."""
    long_text = "word " * 60_000  # 300,000 characters
    path = tmp_path / "train.csv"
    write_table(path, ["text", "label"], [[long_text, "a"], ["short", "b"]], "csv")
    assert load_text_dataset(str(path)).splits["train"].texts[0] == long_text


# --- option bounds through the CLI ------------------------------------------------------------


@pytest.mark.parametrize(
    "args, option",
    [
        (["finetune", "--seed", str(2**64)], "--seed"),
        (["embed", "--seed", str(2**63)], "--seed"),
        (["finetune", "--threads", "100000"], "--threads"),
        (["finetune", "--model", "minilm", "--threads", str((os.cpu_count() or 1) + 1)], "one per CPU present"),
        (["vision", "compare", "--threads", "100000"], "--threads"),
        (["finetune", "--epochs", str(2**63)], "--epochs"),
        (["study", "text", "--epochs", "100000"], "--epochs"),
        (["attention", "show", "--row", "-1"], "--row"),
    ],
)
def test_absurd_integers_are_one_parser_line_and_leave_nothing(isolated_home, args, option):
    """--seed above 2**63 (OverflowError from torch), --threads 100000 (MemoryError and a staging folder
    left behind), --epochs 2**63 (accepted): refused before any work, by the option's bounds."""
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("error:") == 1 and option in result.stderr and "Traceback" not in result.output
    assert not isolated_home.exists() or not any(isolated_home.rglob("*"))
