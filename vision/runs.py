"""Run folders: a new folder per run, self-describing JSON written atomically."""

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common import StoreError, __version__
from common.paths import ensure_writable_dir, mlx_home


def default_runs_dir() -> Path:
    return mlx_home() / "runs" / "vision"


def _run_names(parent: Path, prefix: str) -> Iterator[Path]:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    for k in range(1, 1000):
        yield parent / (f"{prefix}-{stamp}" if k == 1 else f"{prefix}-{stamp}-{k}")


def new_run_dir(parent: Path, prefix: str) -> Path:
    """Create and return a fresh folder ``parent/prefix-YYYYmmdd-HHMMSS[-k]``; never reuses one."""
    ensure_writable_dir(parent)
    for candidate in _run_names(parent, prefix):
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise StoreError(f"cannot find a free run folder name under {parent}; clean it up or choose another --out")


def free_run_name(parent: Path, prefix: str) -> Path:
    """A name ``parent/prefix-YYYYmmdd-HHMMSS[-k]`` not taken yet; nothing is created (see ``staged_run_dir``)."""
    ensure_writable_dir(parent)
    for candidate in _run_names(parent, prefix):
        if not candidate.exists():
            return candidate
    raise StoreError(f"cannot find a free run folder name under {parent}; clean it up or choose another --out")


@contextmanager
def staged_run_dir(final: Path) -> Iterator[Path]:
    """Yield a hidden folder ``.<name>.tmp-<pid>`` beside ``final``; rename it to ``final`` when the block ends.

    A run interrupted by an error or Ctrl-C leaves nothing under the final name: the staging folder
    is deleted, so a folder named like a run is always a complete one.
    """
    stage = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    stage.mkdir(parents=True)
    try:
        yield stage
        try:
            os.rename(stage, final)  # atomic on one file system; fails if ``final`` appeared meanwhile
        except OSError as exc:
            raise StoreError(f"cannot move the finished run to {final} ({exc.strerror}); move that folder away and re-run") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def write_json(path: Path, obj: Any) -> Path:
    """Write JSON to a temporary file beside ``path`` and rename it into place: a reader never sees half a file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    with os.fdopen(handle, "w") as stream:
        json.dump(obj, stream, indent=2, default=str)
    os.replace(temporary, path)
    return path


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable run file ({exc}); move the folder away or choose another --out") from None


def stamp(obj: dict[str, Any]) -> dict[str, Any]:
    """Add the mlx version and a UTC timestamp to a dict saved in a run folder."""
    return {"mlx_version": __version__, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **obj}
