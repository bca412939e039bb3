"""Text classification datasets: AG News from the hub, local files, and the bundled demo set.

Every loader returns a TextDataset: one TextSplit per split, each holding texts, integer labels
0..C-1 and the source row ids, plus the label names. Files are read strictly: invalid UTF-8, empty
texts, unknown columns and labels out of range are errors naming the file and row.
"""

import csv
import hashlib
import io
import json
import logging
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from common import ConfigError, DataError
from common.splits import stratified_subsample

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
FILE_SUFFIXES = (".csv", ".jsonl", ".parquet")


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
    named = {name.lower(): name for name in ("demo", "ag_news", AG_NEWS_HUB_ID)}
    if spec.lower() in named and not Path(spec).expanduser().exists():
        spec = named[spec.lower()]  # a name in any case, as every choice of the CLI
    if spec == "demo":
        dataset = load_demo()
    elif spec in ("ag_news", AG_NEWS_HUB_ID):
        dataset = load_ag_news_hub()
    elif Path(spec).expanduser().exists():
        dataset = load_local(Path(spec).expanduser(), text_column, label_column)
    else:
        raise DataError(f"dataset {spec!r} is neither 'ag_news', 'demo' nor an existing file or folder")
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
    return TextDataset(dataset.name, {s: dataset.splits[s] for s in splits}, dataset.label_names, dataset.notes)


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
        kept[name] = TextSplit(name, tuple(split.texts[i] for i in index), split.labels[index], split.row_ids[index])
    return TextDataset(dataset.name, kept, dataset.label_names, dataset.notes)


# --- the bundled demo set ---------------------------------------------------------------------


def load_demo() -> TextDataset:
    """The bundled demo set: 400 short headlines written for mlx in the four AG News classes.

    A smoke-test set so that mlx runs end to end offline. It is not a benchmark: it is small and
    easy, and its numbers say nothing about AG News.
    """
    raw = resources.files("embeddings.data").joinpath("demo_news.csv").read_bytes()
    rows = _read_csv_rows(raw, "demo_news.csv", header=True)
    header, body = rows[0], rows[1:]
    col = {name: i for i, name in enumerate(header)}
    splits: dict[str, TextSplit] = {}
    for split in ("train", "test"):
        picked = [(i, r) for i, r in enumerate(r for r in body if r[col["split"]] == split)]
        texts = tuple(r[col["text"]] for _, r in picked)
        labels = np.array([AG_NEWS_LABELS.index(r[col["label"]]) for _, r in picked], dtype=np.int64)
        splits[split] = TextSplit(split, texts, labels, np.arange(len(picked), dtype=np.int64))
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
        splits[name] = TextSplit(name, texts, labels, np.arange(len(texts), dtype=np.int64))
    label_names = tuple(loaded["train"].features["label"].names) if "train" in loaded else AG_NEWS_LABELS
    return TextDataset("ag_news", splits, label_names)


# --- local files -----------------------------------------------------------------------------


def split_name(path: Path) -> str:
    """`train.csv` -> train, `train_first10429.csv` -> train, `dev.jsonl` -> validation, `x.csv` -> x."""
    head = re.split(r"[_\-.]", path.stem.lower(), maxsplit=1)[0]
    return _SPLIT_ALIASES.get(head, path.stem)


def load_local(path: Path, text_column: str, label_column: str) -> TextDataset:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in FILE_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise DataError(f"folder {path} holds no .csv, .jsonl or .parquet file; expected e.g. train.csv and test.csv")
    by_split: dict[str, Path] = {}
    for file in files:
        name = split_name(file)
        if name in by_split:
            raise DataError(f"{by_split[name].name} and {file.name} in {path} both map to split {name!r}; keep one")
        by_split[name] = file
    classes_file = (path if path.is_dir() else path.parent) / "classes.txt"
    label_names = _read_classes(classes_file) if classes_file.exists() else None
    notes = [f"{f.name} -> split {s}" for s, f in by_split.items() if f.stem != s]
    texts, raw_labels = {}, {}
    for name, file in by_split.items():
        texts[name], raw_labels[name], ag_news = _load_file(file, text_column, label_column, label_names)
        if ag_news:
            label_names = label_names or AG_NEWS_LABELS
    # Classes come from every split together: a test split lacking a class must not renumber train.
    labels, names, label_notes = encode_labels(raw_labels, by_split, label_names)
    notes += label_notes
    splits = {s: TextSplit(s, texts[s], labels[s], np.arange(len(texts[s]), dtype=np.int64)) for s in by_split}
    seen = set().union(*(set(np.unique(s.labels).tolist()) for s in splits.values()))
    empty = [name for i, name in enumerate(names) if i not in seen]
    if empty:
        notes.append(f"classes with no examples in any split: {', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}")
    ordered = {
        s: splits[s]
        for s in sorted(splits, key=lambda s: (CANONICAL_SPLITS.index(s) if s in CANONICAL_SPLITS else 9, s))
    }
    return TextDataset(path.name or str(path), ordered, tuple(names), tuple(notes))


def _read_classes(path: Path) -> tuple[str, ...]:
    names = tuple(line.strip() for line in _decode(path.read_bytes(), path).splitlines() if line.strip())
    if not names:
        raise DataError(f"{path} is empty; it should list one class name per line")
    return names


def _load_file(file: Path, text_column: str, label_column: str, label_names) -> tuple[tuple[str, ...], list, bool]:
    """(texts, raw labels, is the original AG News layout) of one file; every row checked."""
    suffix = file.suffix.lower()
    if suffix == ".csv":
        rows = _read_csv_rows(file.read_bytes(), file, header=False)
        if _is_ag_news_row(rows[0]):
            texts, labels = _from_ag_news_rows(rows, file, label_names or AG_NEWS_LABELS)
            return texts, labels, True
        header = rows[0]
        for i, row in enumerate(rows[1:]):
            if len(row) != len(header):
                raise DataError(
                    f"{file} row {i + 2}: {len(row)} fields but the header has {len(header)} ({', '.join(header)}); "
                    'quote fields that contain commas, e.g. "a, b"'
                )
        records, columns = [dict(zip(header, r)) for r in rows[1:]], header
    elif suffix == ".jsonl":
        records = _read_jsonl(file)
        columns = list(dict.fromkeys(k for r in records for k in r))
    else:
        records, columns = _read_parquet(file)
    if not records:
        raise DataError(f"{file} has no data rows (only a header); add rows or leave the file out")
    texts, labels = _from_records(records, columns, file, text_column, label_column)
    return texts, labels, False


def _decode(raw: bytes, where) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where} is not valid UTF-8 (bad byte at offset {exc.start}); re-save it as UTF-8") from None


def _read_csv_rows(raw: bytes, where, header: bool) -> list[list[str]]:
    text = _decode(raw, where)
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    except csv.Error as exc:
        raise DataError(f"{where} is not a readable CSV file: {exc}") from None
    if not rows or (header and len(rows) < 2):
        raise DataError(f"{where} has no data rows")
    return rows


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


def _read_jsonl(file: Path) -> list[dict]:
    records = []
    for i, line in enumerate(_decode(file.read_bytes(), file).splitlines()):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{file} line {i + 1} is not valid JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise DataError(f"{file} line {i + 1}: expected a JSON object per line")
        records.append(record)
    if not records:
        raise DataError(f"{file} has no data rows")
    return records


def _read_parquet(file: Path):
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(file)
    except Exception as exc:
        raise DataError(f"{file} is not a readable Parquet file: {exc}") from None
    return table.to_pylist(), table.column_names


def _from_records(records, columns, file, text_column, label_column) -> tuple[tuple[str, ...], list]:
    for column, option in ((text_column, "--text-column"), (label_column, "--label-column")):
        if column not in columns:
            raise DataError(f"{file} has no column {column!r} (columns: {', '.join(map(str, columns))}); pass {option}")
    texts, raw_labels = [], []
    for i, record in enumerate(records):
        text = record.get(text_column)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{file} row {i + 1}: column {text_column!r} is empty or not text")
        label = record.get(label_column)
        if (
            label is None
            or (isinstance(label, str) and not label.strip())
            or (isinstance(label, float) and not math.isfinite(label))
        ):
            raise DataError(f"{file} row {i + 1}: the label ({label_column!r}) is empty")
        if not isinstance(label, (str, int, float, np.integer, np.floating)):
            raise DataError(
                f"{file} row {i + 1}: the label ({label_column!r}) is a {type(label).__name__}, not a class name or number"
            )
        texts.append(text)
        raw_labels.append(label)
    return tuple(texts), raw_labels


def encode_labels(
    raw: dict[str, list], files: dict[str, Path], label_names
) -> tuple[dict[str, np.ndarray], tuple[str, ...], list[str]]:
    """Labels of every split -> (N,) int64 class indices, the class names, and notes to say aloud.

    Integers are class indices only when they are exactly 0..C-1 (or index ``classes.txt``);
    any other integers (1000/2000/3000, 1..4, 10**20) are class names, said aloud, never sizes.
    Strings are class names: those of ``classes.txt``, or their sorted set.
    """
    values = [v for labels in raw.values() for v in labels]
    if values and all(_is_int(v) for v in values):
        ints = sorted({int(v) for v in values})
        if ints[0] < 0:
            split = next(s for s, labels in raw.items() if any(int(v) < 0 for v in labels))
            raise DataError(f"{files[split]}: label {ints[0]} is negative; labels must be 0..C-1 or class names")
        if label_names and (ints[-1] < len(label_names) or not {str(i) for i in ints} <= set(label_names)):
            _check_indices(raw, files, label_names)
            return (
                {s: np.array([int(v) for v in labels], dtype=np.int64) for s, labels in raw.items()},
                tuple(label_names),
                [],
            )
        if not label_names and ints == list(range(len(ints))):
            return (
                {s: np.array([int(v) for v in labels], dtype=np.int64) for s, labels in raw.items()},
                tuple(map(str, ints)),
                [],
            )
        names = label_names or tuple(str(i) for i in ints)
        shown = ", ".join(map(str, ints[:5])) + (" ..." if len(ints) > 5 else "")
        notes = (
            []
            if label_names
            else [f"integer labels {shown} are not 0..{len(ints) - 1}: treated as {len(ints)} class names"]
        )
        return _by_name(raw, files, names, key=lambda v: str(int(v))), tuple(names), notes
    names = label_names or tuple(sorted({str(v) for v in values}))
    return _by_name(raw, files, names, key=str), tuple(names), []


def _check_indices(raw, files, names) -> None:
    for split, labels in raw.items():
        for i, v in enumerate(labels):
            if not 0 <= int(v) < len(names):
                raise DataError(
                    f"{files[split]} row {i + 1}: label {int(v)} is outside 0..{len(names) - 1} ({len(names)} classes: {', '.join(names)})"
                )


def _by_name(raw, files, names, key) -> dict[str, np.ndarray]:
    index = {name: i for i, name in enumerate(names)}
    encoded = {}
    for split, labels in raw.items():
        unknown = next((v for v in labels if key(v) not in index), None)
        if unknown is not None:
            raise DataError(f"{files[split]}: label {key(unknown)!r} is not among the class names {', '.join(names)}")
        encoded[split] = np.array([index[key(v)] for v in labels], dtype=np.int64)
    return encoded


def _is_int(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()
