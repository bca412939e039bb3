"""The mlx home: one folder for stores, run folders and caches.

Default ``~/.mlx``; the ``MLX_HOME`` environment variable overrides it. Every command that writes
also takes an explicit ``--out``.
"""

import os
from pathlib import Path

from common.errors import StoreError

DEFAULT_HOME = Path("~/.mlx")


def mlx_home() -> Path:
    """Return the mlx home folder (not created)."""
    return Path(os.environ.get("MLX_HOME") or DEFAULT_HOME).expanduser()


def home_subdir(name: str) -> Path:
    """Return ``mlx_home()/name``, created if needed, with a clear error when it cannot be."""
    path = mlx_home() / name
    ensure_writable_dir(path)
    return path


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and check that we can write there; raise StoreError otherwise."""
    if path.exists() and not path.is_dir():
        raise StoreError(
            f"cannot create folder {path}: it is a file, not a folder; choose another --out or set MLX_HOME"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create folder {path}: {exc.strerror}; choose another --out or set MLX_HOME") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise StoreError(f"folder {path} is not writable; choose another --out or set MLX_HOME")
    return path
