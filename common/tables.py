"""The one reader for tables a user gives: CSV (with a header), JSONL and Parquet.

Every file is checked as a path first (common.paths), read strictly (invalid UTF-8, malformed rows
and ragged CSV rows are errors naming the file and row), and its header checked: blank, duplicate
(after stripping spaces) and, per row, missing names are errors, never a column silently dropped
or overwritten. Values are returned as written: strings from CSV, JSON values from JSONL, Python
values from Parquet; labels are normalised later by common.labels.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from common.errors import DataError
from common.paths import PathKind, check_path

TABLE_SUFFIXES = (".csv", ".jsonl", ".parquet")

# The csv module refuses fields over 131,072 characters by default; a long document is a valid field.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class Table:
    """Rows of one file, each a dict keyed by the column names (CSV values are strings)."""

    path: Path
    columns: tuple[str, ...]
    rows: tuple[dict, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str, option: str) -> list:
        """The values of column ``name`` (one per row); DataError listing the columns, or naming a row without it."""
        if name not in self.columns:
            shown = ", ".join(repr(c) for c in self.columns)
            raise DataError(f"{self.path} has no column {name!r} (columns: {shown}); pass {option}")
        values = []
        for i, row in enumerate(self.rows):
            if name not in row:
                raise DataError(f"{self.path} row {i + 1} has no {name!r}; give every row the same columns")
            values.append(row[name])
        return values


def read_table(path: str | Path) -> Table:
    """A CSV, JSONL or Parquet file (by suffix) as a checked Table with at least one row."""
    path = check_path(path, PathKind.FILE, "table")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table = csv_table(read_csv_rows(path), path)
    elif suffix == ".jsonl":
        table = _read_jsonl(path)
    elif suffix == ".parquet":
        table = _read_parquet(path)
    else:
        raise DataError(f"{path}: unknown table format {suffix!r}; give a {', '.join(TABLE_SUFFIXES)} file")
    if not table.rows:
        header = " (only a header)" if suffix == ".csv" else ""  # JSONL has none; Parquet's schema is not a row
        raise DataError(f"{path} has no data rows{header}; add rows or leave the file out")
    return table


def decode(raw: bytes, where) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where} is not valid UTF-8 (bad byte at offset {exc.start}); re-save it as UTF-8") from None


def read_csv_rows(path: Path | None, raw: bytes | None = None, where=None) -> list[list[str]]:
    """Every non-blank row of a CSV file (or of ``raw`` bytes) as lists of strings; at least one row."""
    where = where or path
    if raw is None:
        if path is None:
            raise ValueError("read_csv_rows needs a path or the raw bytes")
        raw = check_path(path, PathKind.FILE, "table").read_bytes()
    text = decode(raw, where)
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    except csv.Error as exc:
        raise DataError(f"{where} is not a readable CSV file: {exc}") from None
    if not rows:
        raise DataError(f"{where} has no data rows")
    return rows


def csv_table(rows: list[list[str]], where) -> Table:
    """Rows of a CSV file whose first row is the header; every row must have as many fields as the header."""
    header = check_header(rows[0], where)
    for i, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise DataError(
                f"{where} row {i + 2}: {len(row)} fields but the header has {len(header)} ({', '.join(header)}); "
                'quote fields that contain commas, e.g. "a, b"'
            )
    return Table(Path(where), header, tuple(dict(zip(header, row)) for row in rows[1:]))


def check_header(names, where) -> tuple[str, ...]:
    """Column names stripped of spaces; DataError for a blank or a repeated name."""
    stripped = tuple(str(name).strip() for name in names)
    for i, name in enumerate(stripped):
        if not name:
            raise DataError(
                f"{where}: column {i + 1} of the header has no name; name every column "
                "(a pandas index column: write the file with index=False)"
            )
    repeated = [name for name, n in Counter(stripped).items() if n > 1]
    if repeated:
        places = [str(i + 1) for i, name in enumerate(stripped) if name == repeated[0]]
        raise DataError(
            f"{where}: column {repeated[0]!r} appears {len(places)} times in the header (columns {', '.join(places)}); "
            "give every column its own name"
        )
    return stripped


def _read_jsonl(path: Path) -> Table:
    rows, columns = [], {}
    # Lines end at "\n" only: str.splitlines would also cut at U+2028 and other separators inside strings.
    for i, line in enumerate(decode(path.read_bytes(), path).split("\n")):
        if not line.strip():
            continue
        where = f"{path} line {i + 1}"
        try:
            record = json.loads(line, object_pairs_hook=_Object)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where} is not valid JSON: {exc.msg}") from None
        if not isinstance(record, _Object):  # every JSON object is one (object_pairs_hook)
            raise DataError(f"{where}: expected a JSON object per line")
        record = dict(zip(check_header(record.names, where), record.values()))  # names unique once checked
        rows.append(record)
        columns.update(dict.fromkeys(record))
    return Table(path, tuple(columns), tuple(rows))


class _Object(dict):
    """A JSON object that remembers every key as written: json.loads would keep only the last of two."""

    def __init__(self, pairs: list[tuple[str, object]]):
        super().__init__(pairs)
        self.names = [key for key, _ in pairs]


def _read_parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq

        header = check_header(pq.read_schema(path).names, path)  # before reading: pyarrow fails on a repeated name
        table = pq.read_table(path)
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several types for a damaged file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{path} is not a readable Parquet file: {reason}") from None
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return Table(path, header, tuple(dict(zip(header, values)) for values in zip(*columns)))
