"""Run folders: every probe run is saved under ``mlx_home()/runs/probe/`` (or ``--out``).

The folder is written under a hidden temporary name beside its final one and renamed into place
only when everything is written, so a folder under its final name is always complete. Existing
results are never overwritten.
"""

import hashlib
from pathlib import Path

from common.paths import mlx_home
from common.runs import new_run_name

_EDGE_BYTES = 1 << 20


def default_run_dir(command: str) -> Path:
    return new_run_name(mlx_home() / "runs" / "probe", command)


def store_fingerprint(path: Path) -> str:
    """sha256 of the store's size and its first and last MiB (which hold the root attributes).

    Reading a multi-GB store in full for every probe run would cost more than the probes; size plus
    both ends changes whenever the store is rewritten (created_at is a root attribute).
    """
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(_EDGE_BYTES))
        if size > _EDGE_BYTES:
            f.seek(max(_EDGE_BYTES, size - _EDGE_BYTES))
            digest.update(f.read())
    return "sha256:" + digest.hexdigest()[:32]
