"""Run folders: a new folder per run, self-describing JSON written atomically."""

import json
from collections.abc import Iterator
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
    """A name ``parent/prefix-YYYYmmdd-HHMMSS[-k]`` not taken yet; nothing is created (see ``common.runs.staged_run_dir``)."""
    ensure_writable_dir(parent)
    for candidate in _run_names(parent, prefix):
        if not candidate.exists():
            return candidate
    raise StoreError(f"cannot find a free run folder name under {parent}; clean it up or choose another --out")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable run file ({exc}); move the folder away or choose another --out") from None


def stamp(obj: dict[str, Any]) -> dict[str, Any]:
    """Add the mlx version and a UTC timestamp to a dict saved in a run folder."""
    return {"mlx_version": __version__, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **obj}
