"""One identity and one reuse rule for everything mlx finds again on disk.

An artifact (an embedding store, a fine-tuning run, a sweep and its configurations, a study and its
steps) is identified by what it computes from, never by where its inputs lay:

- its typed config, converted once (``to_plain``), less the options that change nothing it computes
  (output path, device, threads, --force) and less option values that are paths;
- the fingerprints of the data it read, one per split;
- the model's revision (a hub commit) or the hash of its weights.

So ``./data`` and ``data`` (the same bytes) are the same artifact, and the same path holding other
bytes is not. Every command asks the same questions in the same words:

- ``check_replaceable``: may ``--force`` replace what lies at this path? (only an artifact of its own kind)
- ``decide``: reuse / resume / refuse (naming the keys that differ) / start over (said aloud).
- ``claim_folder``: one artifact per folder (a marker file records its identity); anything else there
  is refused naming what it is; ``hold``: one process writes a folder ("in use by pid N" to a second).
- ``is_done``: a run folder is done when its ``run.json`` exists, a store when it is marked complete.

This module imports only the standard library (and ``common``) at the top: the CLI reads it cheaply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from common.errors import StoreError

log = logging.getLogger(__name__)

RECORD_FILE = "run.json"
STORE_SUFFIX = ".h5"


# --- the one JSON converter ------------------------------------------------------------------


def to_plain(obj: Any) -> Any:
    """Anything mlx saves -> JSON-ready values: dataclasses to dicts, Enums to their value, Paths to str,
    tuples to lists, numpy scalars and arrays to Python numbers and lists, non-finite floats to null
    (strict JSON has no nan: a missing score or a diverged loss records null)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_plain({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    if isinstance(obj, Enum):
        return to_plain(obj.value)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # numpy scalar or array, without importing numpy
        return to_plain(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# --- identity ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """What an artifact computes from. ``kind`` names it in messages ("fine-tune run", "embedding store")."""

    kind: str
    config: Mapping[str, Any]
    data: Mapping[str, str] = field(default_factory=dict)  # split -> fingerprint of the rows read
    model: str = ""  # revision or weights hash; "" where no model is involved

    @classmethod
    def of(
        cls,
        kind: str,
        config: Any,
        *,
        data: Mapping[str, str] | None = None,
        model: str = "",
        leave_out: tuple[str, ...] = (),
    ) -> Identity:
        """Build from a typed config (a dataclass or a dict); ``leave_out`` names fields that are not identity
        (the output path, the device, --force, and any option whose value is a path: its bytes count instead)."""
        plain = to_plain(config)
        return cls(kind, {k: v for k, v in plain.items() if k not in leave_out}, dict(data or {}), model)

    def flat(self) -> dict[str, Any]:
        """One level of keys, as differences name them: config keys, ``data.<split>``, ``model``."""
        flat = dict(self.config)
        flat.update({f"data.{split}": fingerprint for split, fingerprint in self.data.items()})
        if self.model:
            flat["model"] = self.model
        return flat

    def key(self, n_hex: int = 16) -> str:
        """A short hash of the identity: equal identities, equal keys (default folder and file names)."""
        text = json.dumps(self.flat(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:n_hex]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": dict(self.config), "data": dict(self.data), "model": self.model}

    @classmethod
    def from_dict(cls, saved: Any) -> Identity | None:
        """The identity saved by ``to_dict``; None for anything else (a damaged or an older marker)."""
        if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
            return None
        data = saved.get("data")
        if not isinstance(data, dict):
            data = {}
        return cls(str(saved.get("kind", "")), saved["config"], data, str(saved.get("model", "")))


def differences(saved: Mapping[str, Any], now: Mapping[str, Any], names: Mapping[str, str] | None = None) -> list[str]:
    """``name before -> now`` for every key whose value differs (a missing key reads as None)."""
    names = names or {}
    keys = sorted(set(saved) | set(now))
    return [
        f"{names.get(k) or _name(k)} {_short(saved.get(k))} -> {_short(now.get(k))}"
        for k in keys
        if to_plain(saved.get(k)) != to_plain(now.get(k))
    ]


def _name(key: str) -> str:
    """``data.train`` -> "train data", ``model`` -> "model weights"; config keys as they are."""
    if key.startswith("data."):
        return f"{key[5:]} data"
    return "model weights" if key == "model" else key


def _short(value: Any) -> str:
    text = json.dumps(to_plain(value)) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- the reuse rule ---------------------------------------------------------------------------


class Reuse(str, Enum):
    NEW = "new"  # nothing there: start
    REUSE = "reuse"  # a finished artifact of this identity: use it, compute nothing
    RESUME = "resume"  # an unfinished artifact of this identity with progress: continue it
    RESTART = "restart"  # something there is thrown away and started over (said aloud)


class IdentityMismatch(StoreError):
    """A folder or file holds an artifact of another identity; the message lists the keys that differ."""

    def __init__(self, message: str, changed: tuple[str, ...] = ()):
        super().__init__(message)
        self.changed = changed


def decide(
    where: Path,
    now: Identity,
    saved: Mapping[str, Any] | None,
    *,
    finished: bool,
    progress: bool = True,
    force: bool = False,
    names: Mapping[str, str] | None = None,
    remedy: str = "pass --force to start over, or choose another --out",
) -> Reuse:
    """The one reuse rule.

    ``saved``: the flat identity found at ``where`` (None: nothing there); ``finished``: it is complete;
    ``progress``: an unfinished artifact holds work worth resuming (a checkpoint, a shard).

    - nothing there -> NEW;
    - --force -> RESTART (aloud);
    - the same identity -> REUSE when finished, RESUME when it holds progress, else NEW;
    - another identity with nothing to keep (unfinished, no progress) -> RESTART (aloud);
    - another identity otherwise -> ``IdentityMismatch`` listing the keys that differ and ``remedy``.
    """
    if saved is None:
        return Reuse.NEW
    if force:
        log.warning("%s: --force: the %s there is replaced", where, now.kind)
        return Reuse.RESTART
    changed = differences(saved, now.flat(), names)
    if not changed:
        return Reuse.REUSE if finished else Reuse.RESUME if progress else Reuse.NEW
    if not finished and not progress:
        log.warning(
            "%s: an unfinished %s with other settings (%s) and nothing to resume: started over",
            where,
            now.kind,
            ", ".join(changed),
        )
        return Reuse.RESTART
    raise IdentityMismatch(
        f"{where} holds {_article(now.kind)} {now.kind} started with other options ({', '.join(changed)}); {remedy}",
        tuple(changed),
    )


def from_legacy(options: Mapping[str, Any], now: Identity, stand_ins: Mapping[str, Any]) -> dict[str, Any]:
    """The flat identity of a marker an older mlx wrote: its options with paths (and a whole-data fingerprint)
    where the identity now holds the bytes. When every stand-in saved equals its value now, the data and model
    fingerprints now are taken as the saved ones (what the older mlx checked); each that differs is listed."""
    flat = {k: v for k, v in options.items() if k not in stand_ins}
    differing = {k: options.get(k) for k, value in stand_ins.items() if to_plain(options.get(k)) != to_plain(value)}
    flat.update({f"{k} (older mlx)": value for k, value in differing.items()})
    if not differing:
        flat.update({k: v for k, v in now.flat().items() if k.startswith("data.") or k == "model"})
    return flat


# --- what lies at a path; replacing it --------------------------------------------------------


def what_is(path: Path) -> str:
    """A few words naming what lies at ``path``: "a probe run", "an mlx embedding store", "a text study", ..."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return "a dangling symbolic link"
    if not path.exists():
        return "nothing"
    if path.is_file():
        return "an mlx embedding store" if _is_store(path) else "a file"
    if not path.is_dir():
        return "a special file (a FIFO, socket or device)"
    record = _read_json(path / RECORD_FILE)
    if isinstance(record, dict) and isinstance(record.get("kind"), str):
        kind = record["kind"]
        return f"a {'fine-tuning' if kind == 'finetune' else kind} run"
    for marker, name in (("study.json", "study"), ("sweep.json", "sweep folder")):
        saved = _read_json(path / marker)
        if isinstance(saved, dict):
            return f"a {saved.get('kind', name)}" if name == "study" else f"a {name}"
    if not any(path.iterdir()):
        return "an empty folder"
    return "a folder that is not an mlx artifact"


def check_kind(path: Path, kind: str) -> bool:
    """Is there an artifact of ``kind`` ("fine-tuning run", "mlx embedding store") at ``path``? False: nothing
    there. Anything else is refused, naming what it is: --force replaces only an artifact of the same kind."""
    found = what_is(path)
    if found == "nothing":
        return False
    if found.split(" ", 1)[1] != kind:
        raise StoreError(
            f"{path} is {found}, not {_article(kind)} {kind}; mlx never overwrites it "
            f"(--force replaces only that kind), so choose another --out"
        )
    return True


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" or noun.startswith("mlx") else "a"


def is_done(path: Path) -> bool:
    """A run folder is done when its run.json exists; a store when it is a complete mlx store."""
    path = Path(path)
    return _is_store(path) if path.suffix == STORE_SUFFIX else (path / RECORD_FILE).exists()


def _is_store(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return f.attrs.get("mlx_format") == "mlx-embedding-store" and bool(f.attrs.get("complete", False))
    except (OSError, ImportError):
        return False


def _read_json(path: Path) -> Any:
    if not path.is_file():  # a named pipe is never opened: reading it would wait for a writer
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- claiming a folder ------------------------------------------------------------------------


def claim_folder(
    folder: Path,
    now: Identity,
    marker: str,
    *,
    legacy: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
    remedy: str = "re-run with the original options and data to resume it, or choose another --out",
) -> Path:
    """One artifact of one identity per folder. A new or empty folder is claimed (``marker`` records the
    identity); a folder of this identity is resumed; one of another identity is refused naming the keys
    that differ; anything else in the folder is refused naming what it is. ``legacy``: the flat identity
    of a marker an older mlx wrote (no "identity" in it)."""
    from common.paths import ensure_writable_dir
    from common.writes import write_json

    folder = ensure_writable_dir(Path(folder))
    path = folder / marker
    if not path.exists():
        if any(not entry.name.startswith(".") for entry in folder.iterdir()):  # hidden: staging, locks
            raise StoreError(
                f"{folder} is {what_is(folder)}, not {_article(now.kind)} {now.kind}; choose another --out"
            )
        write_json(path, {"kind": now.kind, "identity": now.to_dict()})
        return folder
    saved = _read_json(path)
    found = Identity.from_dict(saved.get("identity")) if isinstance(saved, dict) else None
    if found is not None and saved.get("kind") != now.kind:  # claim_folder always writes both keys
        raise StoreError(
            f"{path} is damaged: its 'kind' is {saved.get('kind')!r}, not {now.kind!r}; "
            f"delete {folder} to start over, or choose another --out"
        )
    if found is not None:
        flat = found.flat()
    elif isinstance(saved, dict) and legacy is not None:
        flat = legacy(saved)
    else:
        flat = {f"unreadable {marker}": str(path)}
    decide(folder, now, flat, finished=False, progress=True, remedy=remedy)
    return folder


@contextmanager
def hold(folder: Path, kind: str) -> Iterator[Path]:
    """Hold ``folder`` for this process while it writes there: a second mlx process is refused at once
    ("in use by pid N"); the lock dies with its holder, even under kill -9."""
    from common.locking import store_lock

    with store_lock(Path(folder), kind):
        yield Path(folder)
