"""Run folders shared by every command that saves results.

A run is written into a hidden staging folder beside its final name and renamed into place only
when complete, so a folder under a run's name is always whole; existing results are never
overwritten. JSON files are written atomically.
"""

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common.errors import StoreError
from common.paths import ensure_writable_dir


def check_new(run_dir: Path) -> Path:
    """Refuse a folder that exists; create its parent."""
    run_dir = Path(run_dir)
    if run_dir.exists():
        raise StoreError(f"{run_dir} already exists; mlx never overwrites results, so choose another --out")
    ensure_writable_dir(run_dir.parent)
    return run_dir


@contextmanager
def staged_run_dir(run_dir: Path) -> Iterator[Path]:
    """Yield a hidden folder beside ``run_dir``; rename it to ``run_dir`` on success, delete it on any error (Ctrl-C too)."""
    run_dir = check_new(run_dir)
    staging = run_dir.parent / f".{run_dir.name}.partial-{secrets.token_hex(3)}"
    staging.mkdir()
    try:
        yield staging
        try:
            os.rename(staging, run_dir)  # atomic on one file system; fails if ``run_dir`` appeared meanwhile
        except OSError as exc:
            raise StoreError(f"cannot move the finished run to {run_dir} ({exc.strerror}); move that folder away and re-run") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_json(path: Path, obj: Any) -> Path:
    """Write JSON to a temporary file beside ``path`` and rename it into place: a reader never sees half a file."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(obj, stream, indent=2, default=str)
            stream.write("\n")
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
