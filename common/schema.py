"""Everything mlx reads back is checked against the shape it was written in, before use.

A schema is a dict ``field name -> allowed types``; ``check_fields`` lists what is wrong with an
object (not an object, a missing field, an unknown field, a wrong type) and ``read_json`` turns a
JSON file that mlx wrote into a dict, or into one ``StoreError`` line naming the file, what is wrong
with it and what to do. ``bool`` never passes for ``int`` or ``float`` (a count or a score is never
true/false). Standard library only: the CLI reads records without loading anything heavy.
"""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.errors import StoreError

Schema = Mapping[str, tuple[type, ...]]


def type_problem(value: Any, allowed: tuple[type, ...], where: str) -> str | None:
    """``where is str, expected int/float``, or None when ``value`` has one of the ``allowed`` types."""
    if isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed):
        return None
    names = "/".join("null" if t is type(None) else t.__name__ for t in allowed)
    return f"{where} is {'null' if value is None else type(value).__name__}, expected {names}"


def check_fields(d: Any, schema: Schema, where: str, optional: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Problems of ``d`` against ``schema`` (empty: it fits). Fields named in ``optional`` may be absent."""
    if not isinstance(d, dict):
        return [f"{where} is {_kind(d)}, not an object"]
    problems = [f"{where} lacks {name!r}" for name in schema if name not in d and name not in optional]
    problems += [f"{where} has unknown field {name!r}" for name in d if name not in schema]
    for name, allowed in schema.items():
        if name in d:
            problem = type_problem(d[name], allowed, f"{where}.{name}")
            if problem:
                problems.append(problem)
    return problems


def read_json(path: Path, remedy: str) -> Any:
    """The JSON value in ``path``; unreadable or not JSON is one ``StoreError`` naming the file and ``remedy``."""
    if Path(path).exists() and not Path(path).is_file():  # a FIFO would block the read forever, a folder fail it
        raise StoreError(f"{path} is damaged (not a regular file); {remedy}")
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not JSON"
        raise StoreError(f"{path} is damaged ({reason}); {remedy}") from None


def read_checked_json(
    path: Path, schema: Schema, remedy: str, optional: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    """``read_json`` then ``check_fields``: a dict of the schema's shape, or one line naming the first problem."""
    d = read_json(path, remedy)
    problems = check_fields(d=d, schema=schema, where=Path(path).name, optional=optional)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise StoreError(f"{path} is damaged ({problems[0]}{more}); {remedy}")
    return d


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", type(None): "null"}.get(type(value), f"a {type(value).__name__}")
