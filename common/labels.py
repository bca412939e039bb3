"""The one label normaliser: raw label values of every split -> class indices 0..C-1 and class names.

One value is one class however it was written: ``1``, ``1.0``, ``"1"``, ``" 1 "`` and ``"1.0"`` are
the class 1, said aloud when spellings were merged. Empty values (None, NaN, blank strings),
infinities, numbers that are not whole and booleans mixed with other labels are refused naming
the file and row; containers are refused. Whole numbers are class indices only when they are
exactly 0..C-1 (or index the given class names); other whole numbers are class names, said aloud.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from common.errors import DataError

# A number as people write one in a table: 3, -2, 1.0, .5, 1e3. Not "nan", "inf", "0x1f" or "1_000".
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")

BOOL_NAMES = ("False", "True")


def normalise_labels(
    raw: Mapping[str, Sequence],
    files: dict[str, Path],
    label_names: tuple[str, ...] | None = None,
    column: str = "label",
) -> tuple[dict[str, np.ndarray], tuple[str, ...], list[str]]:
    """Labels of every split -> ((N,) int64 class indices per split, class names, notes to say aloud).

    Classes come from every split together, so a split lacking a class does not renumber the others.
    ``label_names`` (e.g. from ``classes.txt``) fixes the names and their order.
    """
    parsed = {
        split: [_parse(value=v, file=files[split], row=i, column=column) for i, v in enumerate(values)]
        for split, values in raw.items()
    }
    kinds = {kind for values in parsed.values() for kind, _, _ in values}
    notes = _merge_notes(parsed)
    if "bool" in kinds and len(kinds) > 1:
        split, row = next((s, i) for s, values in parsed.items() for i, (k, _, _) in enumerate(values) if k == "bool")
        raise DataError(
            f"{files[split]} row {row + 1}: label ({column!r}) {raw[split][row]!r} is a boolean but other labels are "
            "numbers or names; write every label the same way"
        )
    if kinds == {"bool"}:
        names = label_names or BOOL_NAMES
        notes += [] if label_names else ["boolean labels: class 0 = False, class 1 = True"]
        return _by_name(parsed=parsed, files=files, names=names, column=column), tuple(names), notes
    if kinds == {"number"}:
        _check_whole(parsed=parsed, raw=raw, files=files, column=column)
        ints = {s: [int(v) for _, v, _ in values] for s, values in parsed.items()}
        encoded, names, int_notes = _encode_integers(ints=ints, files=files, label_names=label_names, column=column)
        return encoded, names, notes + int_notes
    # Names, or numbers mixed with names: every label is a class name, numbers in one spelling.
    keyed = {s: [("name", _canonical(kind, v), w) for kind, v, w in values] for s, values in parsed.items()}
    names = label_names or tuple(sorted({v for values in keyed.values() for _, v, _ in values}))
    return _by_name(parsed=keyed, files=files, names=names, column=column), tuple(names), notes


def _parse(value, file: Path, row: int, column: str) -> tuple[str, str | int | float, str]:
    """(kind, value, spelling): kind is 'bool', 'number' (int or float) or 'name' (a stripped string)."""
    where = f"{file} row {row + 1}: the label ({column!r})"
    if isinstance(value, (bool, np.bool_)):
        return "bool", BOOL_NAMES[int(value)], str(bool(value))
    if isinstance(value, (int, np.integer)):
        return "number", int(value), str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            raise DataError(f"{where} is empty (NaN); every row needs a label")
        if math.isinf(value):
            raise DataError(f"{where} is {value}, not a class; every row needs a class name or number")
        return "number", float(value), repr(float(value))
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{where} is empty; every row needs a label")
    if not isinstance(value, str):
        raise DataError(f"{where} is a {type(value).__name__}, not a class name or number")
    text = value.strip()
    if _NUMBER.fullmatch(text):
        number = int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
        if isinstance(number, float) and math.isinf(number):
            raise DataError(f"{where} {text!r} is too large for a number; write it as a class name")
        return "number", number, value
    return "name", text, value


def _merge_notes(parsed: dict[str, list]) -> list[str]:
    """Say aloud every label read other than as written (1.0 -> 1, ' a' -> 'a'): spellings of one class merge."""
    rewritten: dict[str, str] = {}
    for values in parsed.values():
        for kind, value, written in values:
            if kind != "bool" and _canonical(kind, value) != written:
                rewritten.setdefault(written, _canonical(kind, value))
    if not rewritten:
        return []
    shown = ", ".join(f"{w!r} -> {c!r}" for w, c in list(rewritten.items())[:4])
    return [f"labels read as one spelling per class: {shown}{' ...' if len(rewritten) > 4 else ''}"]


def _canonical(kind: str, value) -> str:
    if kind == "number" and float(value).is_integer():
        return str(int(value))
    return repr(float(value)) if kind == "number" else str(value)


def _check_whole(parsed, raw, files, column) -> None:
    for split, values in parsed.items():
        for i, (_, value, _) in enumerate(values):
            if not float(value).is_integer():
                raise DataError(
                    f"{files[split]} row {i + 1}: the label ({column!r}) {raw[split][i]!r} is not a whole number; "
                    "mlx trains classifiers: give class indices 0..C-1 or class names, not scores"
                )


def _encode_integers(
    ints: dict[str, list[int]], files, label_names, column
) -> tuple[dict[str, np.ndarray], tuple[str, ...], list[str]]:
    """Whole numbers: indices when exactly 0..C-1 (or into ``label_names``), else class names said aloud."""
    every = sorted({v for values in ints.values() for v in values})
    as_array = lambda: {s: np.array(values, dtype=np.int64) for s, values in ints.items()}
    if every[0] < 0:
        split = next(s for s, values in ints.items() if every[0] in values)
        raise DataError(f"{files[split]}: label {every[0]} is negative; labels must be 0..C-1 or class names")
    if label_names and (every[-1] < len(label_names) or not {str(i) for i in every} <= set(label_names)):
        for split, values in ints.items():
            for i, v in enumerate(values):
                if v >= len(label_names):
                    raise DataError(
                        f"{files[split]} row {i + 1}: label {v} is outside 0..{len(label_names) - 1} "
                        f"({len(label_names)} classes: {', '.join(label_names)})"
                    )
        return as_array(), tuple(label_names), []
    if not label_names and every == list(range(len(every))):
        return as_array(), tuple(map(str, every)), []
    names = label_names or tuple(str(i) for i in every)
    shown = ", ".join(map(str, every[:5])) + (" ..." if len(every) > 5 else "")
    notes = (
        []
        if label_names
        else [f"integer labels {shown} are not 0..{len(every) - 1}: treated as {len(every)} class names"]
    )
    keyed = {s: [("name", str(v), str(v)) for v in values] for s, values in ints.items()}
    return _by_name(parsed=keyed, files=files, names=names, column=column), tuple(names), notes


def _by_name(parsed, files, names, column) -> dict[str, np.ndarray]:
    index = {name: i for i, name in enumerate(names)}
    encoded = {}
    for split, values in parsed.items():
        keys = [str(v) for _, v, _ in values]
        unknown = next((i for i, key in enumerate(keys) if key not in index), None)
        if unknown is not None:
            raise DataError(
                f"{files[split]} row {unknown + 1}: label ({column!r}) {keys[unknown]!r} is not among the class names "
                f"{', '.join(names)}"
            )
        encoded[split] = np.array([index[key] for key in keys], dtype=np.int64)
    return encoded
