"""Run folders and atomic writes, shared by every command that saves results.

- ``new_run_name(parent, prefix)``: ``prefix-YYYYmmdd-HHMMSS-<6 hex>``, unique even for runs started
  in the same second (by other processes too), sortable by time. Nothing is created.
- ``staged_run_dir(run_dir)``: the run is written into a hidden staging folder beside its final name,
  ``.<name>.partial-<pid>-<hex>``, and renamed into place only when complete, so a folder under a
  run's name is always whole; existing results are never overwritten. Staging left behind by a
  process that died (kill -9, power loss) is removed by the next run in the same parent folder.
- ``atomic_path`` / ``atomic_file`` and ``write_json`` / ``write_npz``: one file written to a
  temporary name beside its target, fsynced, renamed into place; removed on any error.
- ``disk_errors(path)``: a full disk (ENOSPC, EDQUOT) becomes ``DiskFullError``, one line naming
  the file system and the file.
"""

import errno
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from common.errors import StoreError
from common.paths import ensure_writable_dir

log = logging.getLogger(__name__)

_STAGING = re.compile(r"^\..+\.partial-(\d+)-[0-9a-f]+$")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(StoreError):
    """The file system ran out of space (or quota) while mlx wrote to it."""


# --- names -----------------------------------------------------------------------------------


def new_run_name(parent: Path, prefix: str) -> Path:
    """A free name ``parent/prefix-YYYYmmdd-HHMMSS-<6 hex>`` (UTC); ``parent`` is created, the run folder is not.

    The random suffix keeps two runs started in the same second apart, whichever process they run in.
    """
    parent = ensure_writable_dir(Path(parent))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        candidate = parent / f"{prefix}-{stamp}-{secrets.token_hex(3)}"
        if not candidate.exists():
            return candidate
    raise StoreError(f"cannot find a free run folder name under {parent}; clean it up or choose another --out")


def staging_name(target: Path) -> Path:
    """``.<name>.partial-<pid>-<hex>`` beside ``target``: hidden, unique, and tells whose it is."""
    target = Path(target)
    return target.parent / f".{target.name}.partial-{os.getpid()}-{secrets.token_hex(3)}"


def check_new(run_dir: Path) -> Path:
    """Refuse a path that exists; create its parent."""
    run_dir = Path(run_dir)
    if run_dir.exists() or run_dir.is_symlink():
        kind = "a folder" if run_dir.is_dir() else "a file"
        raise StoreError(f"{run_dir} already exists ({kind}); mlx never overwrites results, so choose another --out")
    ensure_writable_dir(run_dir.parent)
    return run_dir


# --- staging and its clean-up ----------------------------------------------------------------


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale_staging(parent: Path) -> list[Path]:
    """Remove staging folders and temporary files in ``parent`` whose writing process is dead; return them."""
    removed: list[Path] = []
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _STAGING.match(entry.name)
        if not match or _alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
        log.warning("removed %s, left behind by an interrupted run (process %s)", entry, match.group(1))
    return removed


@contextmanager
def staged_run_dir(run_dir: Path) -> Iterator[Path]:
    """Yield a hidden folder beside ``run_dir``; rename it to ``run_dir`` on success, delete it on any error (Ctrl-C too)."""
    run_dir = check_new(run_dir)
    clean_stale_staging(run_dir.parent)
    staging = staging_name(run_dir)
    with disk_errors(staging):
        staging.mkdir()
    try:
        with disk_errors(staging):
            yield staging
        try:
            # rename(2) refuses a non-empty target; an empty one can only be a folder someone made meanwhile.
            if run_dir.exists():
                raise FileExistsError(errno.EEXIST, "exists")
            os.rename(staging, run_dir)
        except OSError as exc:
            raise StoreError(
                f"cannot move the finished run to {run_dir} ({exc.strerror}); move that folder away and re-run"
            ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# --- atomic files ----------------------------------------------------------------------------


def _mount_point(path: Path) -> str:
    path = Path(os.path.abspath(path))
    while not path.exists() or not os.path.ismount(path):
        if path.parent == path:
            break
        path = path.parent
    return str(path)


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC/EDQUOT, also when a library (h5py) only names it in its message."""
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return True
    text = str(exc)
    return isinstance(exc, OSError) and (
        "No space left on device" in text or "errno = 28" in text or "Disk quota exceeded" in text
    )


def disk_full_message(path: Path, detail: str = "") -> str:
    return (
        f"no space left on device {_mount_point(path)} ({path}){detail}; free some space there or choose another --out"
    )


@contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Turn a full disk inside the block into a DiskFullError naming the file system and ``path``."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(disk_full_message(path)) from None
        raise


def check_free_space(path: Path, n_bytes: int) -> None:
    """Refuse up front when the file system of ``path`` has less than ``n_bytes`` free.

    HDF5 writes that hit a full disk can fail badly (a crash rather than an error), so large stores
    are checked before the write starts; the margin covers metadata.
    """
    folder = Path(path).parent
    free = shutil.disk_usage(folder).free
    needed = int(n_bytes * 1.02) + (256 << 10)
    if free < needed:
        raise DiskFullError(
            disk_full_message(path, f": the write needs {needed / 1e6:,.1f} MB, {free / 1e6:,.1f} MB are free")
        )


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for any writer (h5py, torch.save); fsync and rename it into place on success.

    On any error (a full disk, Ctrl-C) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    clean_stale_staging_files(path)
    temporary = staging_name(path)
    try:
        with disk_errors(path):
            yield temporary
            fd = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(temporary, 0o666 & ~_umask())  # an ordinary file, as open() would have made it
            os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def clean_stale_staging_files(path: Path) -> None:
    """Remove temporary files of ``path`` left by dead writers (cheap: one folder listing)."""
    prefix = f".{Path(path).name}.partial-"
    parent = Path(path).parent
    try:
        stale = [p for p in parent.iterdir() if p.name.startswith(prefix) and p.is_file()]
    except OSError:
        return
    for entry in stale:
        match = _STAGING.match(entry.name)
        if match and not _alive(int(match.group(1))):
            entry.unlink(missing_ok=True)


@contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Yield an open file that becomes ``path`` only when the block completes (see ``atomic_path``)."""
    with atomic_path(path) as temporary:
        with open(temporary, mode) as stream:
            yield stream
            stream.flush()


def write_json(path: Path, obj: Any) -> Path:
    """Write JSON atomically: a reader never sees half a file."""
    with atomic_file(path, "w") as stream:
        json.dump(obj, stream, indent=2, default=str)
        stream.write("\n")
    return Path(path)


def write_npz(path: Path, arrays: dict[str, Any]) -> Path:
    """Write arrays to an uncompressed ``.npz`` atomically (``path`` should end in .npz)."""
    import numpy as np

    with atomic_file(path, "wb") as stream:
        np.savez(stream, **arrays)
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
