"""Run folders: every probe run is saved under ``mlx_home()/runs/probe/`` (or ``--out``).

The folder is written under a hidden temporary name beside its final one and renamed into place
only when everything is written, so a folder under its final name is always complete. Existing
results are never overwritten.
"""

import hashlib
import json
import os
import secrets
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from common import StoreError
from common.paths import ensure_writable_dir, mlx_home

_EDGE_BYTES = 1 << 20


def default_run_dir(command: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return mlx_home() / "runs" / "probe" / f"{stamp}-{command}-{secrets.token_hex(2)}"


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


def check_new(run_dir: Path) -> Path:
    """Refuse to reuse a folder that exists; create its parent."""
    run_dir = Path(run_dir)
    if run_dir.exists():
        raise StoreError(f"{run_dir} already exists; mlx never overwrites results, so choose another --out")
    ensure_writable_dir(run_dir.parent)
    return run_dir


@contextmanager
def staged_run_dir(run_dir: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``run_dir``; rename it to ``run_dir`` on success, delete it on error."""
    run_dir = check_new(run_dir)
    staging = run_dir.parent / f".{run_dir.name}.partial-{secrets.token_hex(3)}"
    staging.mkdir()
    try:
        yield staging
        if run_dir.exists():
            raise StoreError(f"{run_dir} appeared while this run was writing; results left in {staging}")
        os.rename(staging, run_dir)
    except BaseException:
        if staging.exists() and not run_dir.exists():
            shutil.rmtree(staging, ignore_errors=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, default=str) + "\n")
