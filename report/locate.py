"""Finding run folders: every folder under the runs root that holds a ``run.json``."""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from common.errors import MlxError, StoreError
from common.paths import PathKind, check_path, mlx_home
from common.record import RECORD_FILE, RunRecord, read_record

log = logging.getLogger(__name__)


def default_root() -> Path:
    """Where commands save runs by default; study folders and ``--out`` folders under it are found too."""
    return mlx_home()


@dataclass(frozen=True)
class RunListing:
    records: tuple[RunRecord, ...]  # newest first
    skipped: tuple[str, ...]  # one line per run.json that could not be read


def find_runs(root: Path | None = None, kind: str | None = None) -> RunListing:
    """Every readable run under ``root`` (default the mlx home), newest first; hidden (staging) folders skipped."""
    if root:
        root = check_path(root, PathKind.FOLDER, "runs root")  # a typo in --root is not an empty listing
    else:
        root = default_root()
        if not root.exists():
            return RunListing((), ())
    records, skipped = [], []
    for folder, names, files in os.walk(root):
        names[:] = sorted(n for n in names if not n.startswith("."))  # staging folders are not runs yet
        if RECORD_FILE in files:
            try:
                records.append(read_record(Path(folder)))
            except MlxError as exc:
                skipped.append(str(exc))
    if kind:
        records = [r for r in records if r.kind == kind]
    records.sort(key=lambda r: (r.finished_at, r.run_dir), reverse=True)
    return RunListing(tuple(records), tuple(skipped))


def resolve_run(spec: str | Path, root: Path | None = None) -> Path:
    """A run folder, resolved (so that every spelling of one folder is one run), from a path, or from a
    folder name (or unique name prefix) found under the root."""
    if not str(spec).strip():  # Path("") is the current folder: never what an empty name meant
        raise StoreError("an empty run name; pass a run folder or a name from `mlx runs list`")
    path = Path(spec).expanduser()
    if os.path.lexists(path):
        return check_path(path, PathKind.FOLDER, "run folder").resolve()
    matches = [Path(r.run_dir) for r in find_runs(root).records if Path(r.run_dir).name.startswith(str(spec))]
    if len(matches) == 1:
        return matches[0].resolve()
    if not matches:
        raise StoreError(
            f"no run folder {spec!r}: not a path, and no run under {root or default_root()} is named so; see `mlx runs list`"
        )
    shown = ", ".join(str(m) for m in matches[:4]) + (f" and {len(matches) - 4} more" if len(matches) > 4 else "")
    raise StoreError(f"{spec!r} names {len(matches)} runs: {shown}; pass one of these folders")


def resolved(model_id: str) -> str:
    """A model id that names a folder, as its absolute path (how a store names a fine-tuned model); else as given."""
    try:
        return str(Path(model_id).resolve()) if Path(model_id).exists() else model_id
    except OSError:
        return model_id
