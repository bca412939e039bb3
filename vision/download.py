"""Fetch the official KMNIST files: progress, MD5 check, resume, and never a bad file under the final name.

A file downloads to ``<name>.partial`` beside its final name; an interrupted download resumes from
the bytes already there with an HTTP Range request (or restarts when the server ignores Range).
Only a file whose MD5 equals the published value is renamed into place.
"""

import hashlib
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from common import ConfigError, DataError
from common.paths import ensure_writable_dir
from common.progress import ProgressCallback, no_progress

log = logging.getLogger(__name__)

KMNIST_URL = "http://codh.rois.ac.jp/kmnist/dataset/kmnist"
CHUNK_BYTES = 1 << 16


class FileFormat(str, Enum):
    NPZ = "npz"
    IDX = "idx"


@dataclass(frozen=True)
class RemoteFile:
    name: str
    md5: str


# MD5s published with the release (rois-codh/kmnist; the idx values are torchvision's too).
KMNIST_FILES = {
    FileFormat.NPZ: (
        RemoteFile("kmnist-train-imgs.npz", "a183fbc01ed9a345513b145673d3d0bb"),
        RemoteFile("kmnist-train-labels.npz", "b0e1d240e8afec72b50437fc3bc5908a"),
        RemoteFile("kmnist-test-imgs.npz", "dace6de62ca8b90843cc45366337d02e"),
        RemoteFile("kmnist-test-labels.npz", "3ae489a79983d0fe386152684e3b5412"),
    ),
    FileFormat.IDX: (
        RemoteFile("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7"),
        RemoteFile("train-labels-idx1-ubyte.gz", "e144d726b3acfaa3e44228e80efcd344"),
        RemoteFile("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134"),
    ),
}


class Outcome(str, Enum):
    DOWNLOADED = "downloaded"
    RESUMED = "resumed"
    PRESENT = "already present"


@dataclass(frozen=True)
class Downloaded:
    path: Path
    outcome: Outcome
    n_bytes: int


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, start: int, timeout_s: float):
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        return urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # the partial file is already whole
            return None
        raise DataError(
            f"download of {url} failed: HTTP {exc.code} {exc.reason}; check --url or try again later"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"cannot reach {url}: {reason}; check the network or --url, then re-run to resume") from None


def fetch(url: str, partial: Path, progress: ProgressCallback, task: str, timeout_s: float) -> bool:
    """Append the rest of ``url`` to ``partial``; returns True when it resumed earlier bytes."""
    start = partial.stat().st_size if partial.exists() else 0
    response = _open(url, start, timeout_s)
    if response is None:
        return True
    with response:
        resumed = start > 0 and response.status == 206
        if not resumed:
            start = 0  # the server sent the whole file: start over
        length = response.headers.get("Content-Length")
        total = start + int(length) if length else 0
        with open(partial, "ab" if resumed else "wb") as stream:
            done = start
            try:
                for block in iter(lambda: response.read(CHUNK_BYTES), b""):
                    stream.write(block)
                    done += len(block)
                    progress(task, done, max(total, done))
            except OSError as exc:
                raise DataError(f"download of {url} interrupted after {done} bytes ({exc}); re-run to resume") from None
    return resumed


URL_SCHEMES = ("http", "https", "file")


def check_url(url: str) -> str:
    """``url`` unchanged if urllib can open it; otherwise a ConfigError before any folder is made."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in URL_SCHEMES:
        raise ConfigError(
            f"--url {url!r} is not a URL mlx can download from; give one starting with {', '.join(s + '://' for s in URL_SCHEMES)} (default {KMNIST_URL})"
        )
    return url


def download_file(
    remote: RemoteFile, base_url: str, data_dir: Path, progress: ProgressCallback = no_progress, timeout_s: float = 60.0
) -> Downloaded:
    """Download one file into ``data_dir`` unless a copy with the right MD5 is there already."""
    final = data_dir / remote.name
    if final.exists():
        if file_md5(final) == remote.md5:
            return Downloaded(final, Outcome.PRESENT, final.stat().st_size)
        raise DataError(
            f"{final} exists but its MD5 is not the published {remote.md5}; delete it and re-run `mlx vision download`"
        )
    partial = final.with_name(final.name + ".partial")
    resumed = fetch(
        url=f"{base_url.rstrip('/')}/{remote.name}",
        partial=partial,
        progress=progress,
        task=remote.name,
        timeout_s=timeout_s,
    )
    actual = file_md5(partial)
    if actual != remote.md5:
        partial.unlink()
        raise DataError(
            f"MD5 mismatch for {remote.name} from {base_url}: got {actual}, expected {remote.md5}; the bad download was deleted, re-run `mlx vision download`"
        )
    os.replace(partial, final)
    log.info("%s: %s (%d bytes)", final, "resumed" if resumed else "downloaded", final.stat().st_size)
    return Downloaded(final, Outcome.RESUMED if resumed else Outcome.DOWNLOADED, final.stat().st_size)


def download_kmnist(
    data_dir: Path,
    fmt: FileFormat = FileFormat.NPZ,
    base_url: str = KMNIST_URL,
    progress: ProgressCallback = no_progress,
    files: tuple[RemoteFile, ...] | None = None,
) -> tuple[Downloaded, ...]:
    """Fetch the four KMNIST files of ``fmt`` (or ``files``) into ``data_dir``, checking each MD5."""
    check_url(base_url)
    ensure_writable_dir(Path(data_dir))
    return tuple(
        download_file(remote=remote, base_url=base_url, data_dir=Path(data_dir), progress=progress)
        for remote in (files or KMNIST_FILES[fmt])
    )
