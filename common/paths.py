"""The mlx home, and the one check every path a user gives goes through.

The home is ``~/.mlx`` by default; the ``MLX_HOME`` environment variable overrides it. Every command
that writes also takes an explicit ``--out``.

:func:`check_path` turns every file-system shape that cannot serve as what a command expects (a
file to read, a folder to read, a new output) into one line naming the path: missing, a folder
where a file is expected and the reverse, a dangling symbolic link, a link loop, no permission, a
named pipe, socket or device, a path under a file. It only calls ``stat``: it never opens what it
checks, so a named pipe cannot make it wait.
"""

from __future__ import annotations

import errno
import os
import stat
from enum import Enum
from pathlib import Path

from common.errors import MlxError, StoreError

DEFAULT_HOME = Path("~/.mlx")


class PathError(MlxError):
    """A path the user gave cannot serve as the file or folder asked for."""

    exit_code = 2


class PathKind(str, Enum):
    """What a path must be."""

    FILE = "file"  # an existing regular file, read
    FOLDER = "folder"  # an existing folder, read
    FILE_OR_FOLDER = "file or folder"  # either, read (a dataset file or a folder of them)
    NEW_FILE = "new file"  # an output file: absent (its folder is created), or a regular file
    NEW_FOLDER = "new folder"  # an output folder: absent (created), or a folder

    @property
    def is_output(self) -> bool:
        return self in (PathKind.NEW_FILE, PathKind.NEW_FOLDER)


def mlx_home() -> Path:
    """Return the mlx home folder (not created)."""
    return Path(os.environ.get("MLX_HOME") or DEFAULT_HOME).expanduser()


def home_subdir(name: str) -> Path:
    """Return ``mlx_home()/name``, created if needed, with a clear error when it cannot be."""
    path = mlx_home() / name
    try:
        ensure_writable_dir(path, "the mlx home folder")
    except PathError as exc:
        raise StoreError(f"{exc}; set MLX_HOME to a folder you can write") from None
    return path


def ensure_writable_dir(path: Path, what: str = "folder") -> Path:
    """Create ``path`` (and parents) after :func:`check_path` as a new folder; PathError otherwise."""
    path = check_path(path, PathKind.NEW_FOLDER, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PathError(f"{what} {path} cannot be created: {exc.strerror}") from None
    return path


def check_path(path: str | os.PathLike, kind: PathKind, what: str = "path", hint: str = "") -> Path:
    """Return ``path`` (user-expanded) when it can serve as ``kind``; raise PathError naming it otherwise.

    ``what`` names the path in the message (an option such as ``--store``, or "dataset");
    ``hint`` is added when the path does not exist.
    """
    shown = os.path.expanduser(os.fspath(path))  # as typed: Path() would drop a leading ./
    if not shown.strip():  # Path("") is ".": an empty value would quietly mean the current folder
        raise PathError(f"{what} is empty; give a path")
    if "\x00" in shown:
        raise PathError(f"{what} {shown!r} holds a NUL character, which no path can; give a path")
    path = Path(shown)
    name = f"{what} {shown}" if what else shown
    try:
        mode = path.stat().st_mode  # follows symbolic links; never opens the file
    except OSError as exc:
        problem = _unreachable(path, exc)
        if problem:
            raise PathError(f"{name} {problem}") from None
        if kind.is_output:
            _check_creatable(path, name)
            return path
        raise PathError(f"{name} does not exist" + (f"; {hint}" if hint else "")) from None
    _check_mode(path=path, mode=mode, kind=kind, name=name)
    return path


def _check_mode(path: Path, mode: int, kind: PathKind, name: str) -> None:
    """Refuse an existing ``path`` of file ``mode`` that cannot serve as ``kind`` (wrong type, no permission)."""
    if stat.S_ISDIR(mode):
        if kind in (PathKind.FILE, PathKind.NEW_FILE):
            raise PathError(f"{name} is a folder, not a file; give a file")
        needed, verb = (os.W_OK | os.X_OK, "written") if kind.is_output else (os.R_OK | os.X_OK, "read")
        if not _permitted(path, needed):
            raise PathError(f"{name} is a folder that cannot be {verb} (permission denied); check its permissions")
    elif stat.S_ISREG(mode):
        if kind in (PathKind.FOLDER, PathKind.NEW_FOLDER):
            raise PathError(f"{name} is a file, not a folder; give a folder")
        if kind.is_output:
            _check_creatable(path, name)  # outputs are replaced by a rename in their folder
        elif not _permitted(path, os.R_OK):
            raise PathError(f"{name} cannot be read (permission denied); check its permissions")
    else:
        raise PathError(
            f"{name} is {_special_kind(mode)}, not a regular {kind.value.replace('new ', '')}; give a path to a real one"
        )


def _permitted(path: Path, mode: int) -> bool:
    """os.access, kept apart so that tests running as root (who may do anything) can deny it."""
    return os.access(path, mode)


def _unreachable(path: Path, exc: OSError) -> str:
    """Why ``stat`` failed, when the reason is not simply that nothing is there ('' then)."""
    if exc.errno == errno.ELOOP:
        return "is a symbolic link loop (following it never reaches a file); replace the link"
    if exc.errno == errno.ENAMETOOLONG:
        return "has a name too long for the file system; give a shorter path"
    if exc.errno == errno.EACCES:
        return "cannot be reached: a folder above it does not allow access (permission denied)"
    if exc.errno == errno.ENOTDIR:
        above = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
        return f"cannot exist: {above or 'a path above it'} is a file, not a folder"
    if exc.errno != errno.ENOENT:
        return f"cannot be checked: {exc.strerror}"
    if path.is_symlink():
        return f"is a symbolic link to {os.readlink(path)}, which does not exist; fix or remove the link"
    link = next((p for p in reversed(path.parents) if p.is_symlink() and not p.exists()), None)
    if link is not None:
        return f"cannot exist: {link} is a symbolic link to {os.readlink(link)}, which does not exist"
    return ""


def _check_creatable(path: Path, name: str) -> None:
    """An output can be created when its nearest existing folder above lets us write."""
    folder = next((p for p in path.parents if os.path.lexists(p)), Path("."))
    if not folder.is_dir():  # a dangling link or a file above: _unreachable says which
        raise PathError(f"{name} cannot be created: {folder} is not a folder")
    if not _permitted(folder, os.W_OK | os.X_OK):
        raise PathError(f"{name} cannot be created: folder {folder} is not writable (permission denied)")


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "an unknown kind of file"
