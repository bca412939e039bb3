"""Vision run folders: where they go and what they carry (names and staging: ``common.runs``)."""

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common import StoreError, __version__
from common.paths import mlx_home


def default_runs_dir() -> Path:
    return mlx_home() / "runs" / "vision"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable run file ({exc}); move the folder away or choose another --out") from None


def stamp(obj: dict[str, Any]) -> dict[str, Any]:
    """Add the mlx version and a UTC timestamp to a dict saved in a run folder."""
    return {"mlx_version": __version__, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **obj}
