"""An exclusive, crash-proof lock beside a store or run folder: the OS drops it when its holder dies (even kill -9)."""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.errors import StoreError


@contextmanager
def store_lock(path: Path, what: str = "store") -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``path``; a second holder gets a StoreError at once."""
    lock_path = path.parent / f".{path.name}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except (
        OSError
    ) as exc:  # a folder that passed the writable check but takes no files (/proc, a full or read-only disk)
        raise StoreError(f"cannot write {lock_path} ({exc.strerror}); choose another --out") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise StoreError(
                f"{what} {path} is in use by pid {holder} (another mlx process is writing it); wait for it to finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock; the lock file stays (removing it would race)
