"""Option parsers that put every path a user gives through common.paths.check_path while options are parsed.

Declared on the option (``typer.Option(None, "--store", parser=InputFile("--store"))``), so a bad path is
one line naming the option and the path before any work starts, and a test can walk the CLI to find
every path option and its kind. Options that take a name or a path (``--dataset demo``, ``--model
org/name``, ``runs show NAME``) check only the values that are paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from common.paths import PathKind, check_path


class PathParser:
    """Parses one path option of a :class:`PathKind`; values ``is_name`` accepts pass unchecked as names (str)."""

    def __init__(self, kind: PathKind, option: str, is_name: Callable[[str], bool] | None = None, hint: str = ""):
        self.kind, self.option, self.is_name, self.hint = kind, option, is_name, hint

    def __call__(self, value: str | os.PathLike) -> Path | str:
        text = os.fspath(value)
        if self.is_name is not None:  # an empty value is no name: check_path refuses it
            return (
                text
                if text.strip() and self.is_name(text)
                else str(check_path(path=text, kind=self.kind, what=self.option, hint=self.hint))
            )
        return check_path(path=text, kind=self.kind, what=self.option, hint=self.hint)

    def __repr__(self) -> str:
        return f"PathParser({self.kind.value!r}, {self.option!r})"


def InputFile(option: str, hint: str = "") -> PathParser:
    return PathParser(PathKind.FILE, option, hint=hint)


def InputFolder(option: str) -> PathParser:
    return PathParser(PathKind.FOLDER, option)


def OutputFile(option: str) -> PathParser:
    return PathParser(PathKind.NEW_FILE, option)


def OutputFolder(option: str) -> PathParser:
    return PathParser(PathKind.NEW_FOLDER, option)


def DatasetParser(option: str = "--dataset") -> PathParser:
    """A dataset name ('demo', 'ag_news') or a CSV/JSONL/Parquet file or a folder of them."""
    from text.datasets import DATASET_HINT, DATASET_NAMES

    names = {name.lower() for name in DATASET_NAMES}  # in any case, unless a file of that name is here
    return PathParser(
        PathKind.FILE_OR_FOLDER,
        option,
        is_name=lambda text: text.lower() in names and not os.path.lexists(text),
        hint=DATASET_HINT,
    )


def ModelParser(option: str = "--model") -> PathParser:
    """A hub id ('org/name') or alias passes as a name; anything written as a path must be a model folder."""
    from text.models import MODEL_HINT, is_model_path

    return PathParser(PathKind.FOLDER, option, is_name=lambda text: not is_model_path(text), hint=MODEL_HINT)


def RunParser(option: str = "RUN") -> PathParser:
    """A run folder, or the name (or name prefix) of one under the root."""
    return PathParser(PathKind.FOLDER, option, is_name=lambda text: not looks_like_path(text))


def looks_like_path(text: str) -> bool:
    """A value that names a place on disk: something is there (even a dangling link), or it is written as a path."""
    return os.path.lexists(os.path.expanduser(text)) or text.startswith(("/", ".", "~")) or os.sep in text
