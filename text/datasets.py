"""Text classification datasets: AG News from the hub, local files, and the bundled demo set.

Every loader returns a TextDataset: one TextSplit per split, each holding texts, integer labels
0..C-1 and the source row ids, plus the label names. Files are read strictly: invalid UTF-8, empty
texts, unknown columns and labels out of range are errors naming the file and row.
"""

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from common import ConfigError, DataError
from common.labels import normalise_labels
from common.paths import PathKind, check_path
from common.splits import stratified_subsample
from common.tables import TABLE_SUFFIXES, Table, csv_table, decode, read_csv_rows, read_table

log = logging.getLogger(__name__)

AG_NEWS_HUB_ID = "fancyzhx/ag_news"
AG_NEWS_LABELS = ("World", "Sports", "Business", "Sci/Tech")
CANONICAL_SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {
    "train": "train",
    "test": "test",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
}
DATASET_NAMES = ("demo", "ag_news", AG_NEWS_HUB_ID)
DATASET_HINT = "give 'demo', 'ag_news', a CSV/JSONL/Parquet file or a folder of them"


@dataclass(frozen=True)
class TextSplit:
    name: str
    texts: tuple[str, ...]
    labels: np.ndarray  # (N,) int64, 0..C-1
    row_ids: np.ndarray  # (N,) int64, row index in the source split

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def fingerprint(self) -> str:
        """sha256 over texts, labels and row ids: equal data, equal fingerprint."""
        digest = hashlib.sha256()
        for text in self.texts:
            digest.update(text.encode("utf-8"))
            digest.update(b"\x00")
        digest.update(self.labels.astype(np.int64).tobytes())
        digest.update(self.row_ids.astype(np.int64).tobytes())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TextDataset:
    name: str
    splits: dict[str, TextSplit]
    label_names: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())  # choices made while loading, for the CLI to say aloud

    @property
    def fingerprint(self) -> str:
        parts = [self.name, *self.label_names] + [f"{s}:{split.fingerprint}" for s, split in self.splits.items()]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def load_text_dataset(
    spec: str,
    splits: tuple[str, ...] = (),
    text_column: str = "text",
    label_column: str = "label",
    limit: int | None = None,
    seed: int = 0,
) -> TextDataset:
    """Load ``spec`` (``ag_news``, ``demo`` or a path), keep ``splits`` (all when empty), subsample.

    ``limit`` keeps a stratified, seeded subsample of at most that many rows per split.
    """
    named = {name.lower(): name for name in DATASET_NAMES}
    if spec.lower() in named and not Path(spec).expanduser().exists():
        spec = named[spec.lower()]  # a name in any case, as every choice of the CLI
    if spec == "demo":
        dataset = load_demo()
    elif spec in ("ag_news", AG_NEWS_HUB_ID):
        dataset = load_ag_news_hub()
    else:
        path = check_path(spec, PathKind.FILE_OR_FOLDER, "dataset", hint=DATASET_HINT)
        dataset = load_local(path, text_column, label_column)
    dataset = select_splits(dataset, splits)
    if limit is not None:
        dataset = subsample(dataset, limit, seed)
    empty = [name for name, split in dataset.splits.items() if len(split) == 0]
    if empty or not dataset.splits:
        raise DataError(
            f"split {empty[0] if empty else '(none)'!r} of dataset {dataset.name} has no rows; nothing to embed, so check the data"
        )
    return dataset


def select_splits(dataset: TextDataset, splits: tuple[str, ...]) -> TextDataset:
    if not splits:
        return dataset
    missing = [s for s in splits if s not in dataset.splits]
    if missing:
        raise ConfigError(f"split {missing[0]!r} is not in dataset {dataset.name}; it has: {', '.join(dataset.splits)}")
    return TextDataset(
        name=dataset.name,
        splits={s: dataset.splits[s] for s in splits},
        label_names=dataset.label_names,
        notes=dataset.notes,
    )


def subsample(dataset: TextDataset, limit: int, seed: int) -> TextDataset:
    """Keep a stratified, seeded subsample of at most ``limit`` rows per split (source order kept)."""
    if limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    kept = {}
    for name, split in dataset.splits.items():
        if len(split) <= limit:
            kept[name] = split
            continue
        index = stratified_subsample(split.labels, limit, seed)
        kept[name] = TextSplit(
            name=name,
            texts=tuple(split.texts[i] for i in index),
            labels=split.labels[index],
            row_ids=split.row_ids[index],
        )
    return TextDataset(name=dataset.name, splits=kept, label_names=dataset.label_names, notes=dataset.notes)


# --- the bundled demo set ---------------------------------------------------------------------


def load_demo() -> TextDataset:
    """The bundled demo set: 400 short headlines written for mlx in the four AG News classes.

    A smoke-test set so that mlx runs end to end offline. It is not a benchmark: it is small and
    easy, and its numbers say nothing about AG News.
    """
    raw = resources.files("text.data").joinpath("demo_news.csv").read_bytes()
    rows = read_csv_rows(None, raw, "demo_news.csv")
    header, body = rows[0], rows[1:]
    col = {name: i for i, name in enumerate(header)}
    splits: dict[str, TextSplit] = {}
    for split in ("train", "test"):
        picked = [(i, r) for i, r in enumerate(r for r in body if r[col["split"]] == split)]
        texts = tuple(r[col["text"]] for _, r in picked)
        labels = np.array([AG_NEWS_LABELS.index(r[col["label"]]) for _, r in picked], dtype=np.int64)
        splits[split] = TextSplit(
            name=split, texts=texts, labels=labels, row_ids=np.arange(len(picked), dtype=np.int64)
        )
    return TextDataset("demo", splits, AG_NEWS_LABELS)


# --- AG News from the Hugging Face hub -------------------------------------------------------


def load_ag_news_hub() -> TextDataset:
    """AG News via ``datasets`` (respects the HF cache and HF_HUB_OFFLINE)."""
    try:
        import datasets
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()
        loaded = datasets.load_dataset(AG_NEWS_HUB_ID)
    except Exception as exc:  # datasets raises many types for "no network, no cache"
        log.info("load_dataset(%s) failed: %r", AG_NEWS_HUB_ID, exc)
        raise DataError(
            "AG News is not in the Hugging Face cache and the hub is unreachable (or HF_HUB_OFFLINE is set); "
            "offline alternatives: --dataset demo (bundled) or --dataset PATH (a folder with the original "
            "train.csv/test.csv, or a CSV/JSONL/Parquet file)"
        ) from None
    splits = {}
    for name, table in loaded.items():
        # The hub's `text` is already "title description", joined like the original release.
        texts = tuple(table["text"])
        labels = np.asarray(table["label"], dtype=np.int64)
        splits[name] = TextSplit(name=name, texts=texts, labels=labels, row_ids=np.arange(len(texts), dtype=np.int64))
    label_names = tuple(loaded["train"].features["label"].names) if "train" in loaded else AG_NEWS_LABELS
    return TextDataset("ag_news", splits, label_names)


# --- local files -----------------------------------------------------------------------------


def split_name(path: Path) -> str:
    """`train.csv` -> train, `train_first10429.csv` -> train, `dev.jsonl` -> validation, `x.csv` -> x."""
    head = re.split(r"[_\-.]", path.stem.lower(), maxsplit=1)[0]
    return _SPLIT_ALIASES.get(head, path.stem)


def load_local(path: Path, text_column: str, label_column: str) -> TextDataset:
    path = check_path(path, PathKind.FILE_OR_FOLDER, "dataset", hint=DATASET_HINT)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in TABLE_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise DataError(f"folder {path} holds no .csv, .jsonl or .parquet file; expected e.g. train.csv and test.csv")
    by_split: dict[str, Path] = {}
    for file in files:
        name = split_name(file)
        if name in by_split:
            raise DataError(f"{by_split[name].name} and {file.name} in {path} both map to split {name!r}; keep one")
        by_split[name] = file
    classes_file = (path if path.is_dir() else path.parent) / "classes.txt"
    label_names = _read_classes(classes_file) if os.path.lexists(classes_file) else None
    notes = [f"{f.name} -> split {s}" for s, f in by_split.items() if f.stem != s]
    texts, raw_labels = {}, {}
    for name, file in by_split.items():
        texts[name], raw_labels[name], ag_news = _load_file(
            file=file, text_column=text_column, label_column=label_column, label_names=label_names
        )
        if ag_news:
            label_names = label_names or AG_NEWS_LABELS
    labels, names, label_notes = normalise_labels(
        raw=raw_labels, files=by_split, label_names=label_names, column=label_column
    )
    notes += label_notes
    splits = {
        s: TextSplit(name=s, texts=texts[s], labels=labels[s], row_ids=np.arange(len(texts[s]), dtype=np.int64))
        for s in by_split
    }
    seen = set().union(*(set(np.unique(s.labels).tolist()) for s in splits.values()))
    empty = [name for i, name in enumerate(names) if i not in seen]
    if empty:
        notes.append(f"classes with no examples in any split: {', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}")
    ordered = {
        s: splits[s]
        for s in sorted(splits, key=lambda s: (CANONICAL_SPLITS.index(s) if s in CANONICAL_SPLITS else 9, s))
    }
    return TextDataset(name=path.name or str(path), splits=ordered, label_names=tuple(names), notes=tuple(notes))


def _read_classes(path: Path) -> tuple[str, ...]:
    path = check_path(path, PathKind.FILE, "class names file")
    names = tuple(line.strip() for line in decode(path.read_bytes(), path).splitlines() if line.strip())
    if not names:
        raise DataError(f"{path} is empty; it should list one class name per line")
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:
        raise DataError(f"{path} lists the class {repeated!r} twice; give each class one line")
    return names


def _load_file(
    file: Path, text_column: str, label_column: str, label_names
) -> tuple[tuple[str, ...], Sequence[Any], bool]:
    """(texts, raw labels, is the original AG News layout) of one file; every row checked."""
    if text_column.strip() == label_column.strip():
        raise ConfigError(f"--text-column and --label-column are both {text_column!r}; give two columns")
    file = check_path(file, PathKind.FILE, "dataset file")
    if file.suffix.lower() == ".csv":
        rows = read_csv_rows(file)
        if _is_ag_news_row(rows[0]):
            texts, labels = _from_ag_news_rows(rows, file, label_names or AG_NEWS_LABELS)
            return texts, labels, True
        table = csv_table(rows, file)
        if not table.rows:
            raise DataError(f"{file} has no data rows (only a header); add rows or leave the file out")
    else:
        table = read_table(file)
    return _texts(table, text_column), tuple(table.column(label_column, "--label-column")), False


def _is_ag_news_row(row: list[str]) -> bool:
    """The original release: headerless rows `"class index","title","description"`."""
    return len(row) == 3 and row[0].strip().isdigit()


def _from_ag_news_rows(rows, file, names) -> tuple[tuple[str, ...], list[int]]:
    labels, texts = [], []
    for i, row in enumerate(rows):
        if len(row) != 3 or not row[0].strip().isdigit():
            raise DataError(
                f'{file} row {i + 1}: expected 3 fields "class index","title","description", got {len(row)}'
            )
        index = int(row[0])
        if not 1 <= index <= len(names):
            raise DataError(f"{file} row {i + 1}: class index {index} is outside 1..{len(names)} ({', '.join(names)})")
        # Joined as in the hub copy; the backslash escapes of the original release are kept as they are.
        text = f"{row[1].strip()} {row[2].strip()}".strip()
        if not text:
            raise DataError(f"{file} row {i + 1}: title and description are both empty")
        labels.append(index - 1)
        texts.append(text)
    return tuple(texts), labels


def _texts(table: Table, column: str) -> tuple[str, ...]:
    texts = table.column(column, "--text-column")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{table.path} row {i + 1}: column {column!r} is empty or not text")
    return tuple(texts)
