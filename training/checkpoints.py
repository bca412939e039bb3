"""Checkpoint files of a training run: atomic writes, keep the last K and the best.

Each checkpoint is one ``step-00000123.pt`` file written under a temporary name and renamed into
place, so a crash (even ``kill -9``) mid-write leaves the previous checkpoints whole. ``best.json``
names the checkpoint with the best validation accuracy; it is never pruned.

Checkpoints hold tensors and plain containers only and are read with ``torch.load(weights_only=True)``:
a file placed in the folder cannot run code, and one that is damaged, foreign or of another shape is
one line naming it (the caller's ``check`` lists what its own state needs).
"""

from __future__ import annotations

import logging
import pickle
import re
import warnings
from collections.abc import Callable
from pathlib import Path

from common.errors import StoreError
from common.schema import read_checked_json
from common.writes import atomic_path, write_json

log = logging.getLogger(__name__)

_NAME = re.compile(r"^step-(\d{8})\.pt$")


class CheckpointDir:
    """Resumable state of one run in ``folder`` (created on first save)."""

    def __init__(self, folder: Path, keep_last: int = 2):
        if keep_last < 1:
            raise StoreError(f"keep at least 1 checkpoint, got {keep_last}")
        self.folder = Path(folder)
        self.keep_last = keep_last

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints, oldest first."""
        if not self.folder.is_dir():
            return []
        # regular files only: a FIFO or a folder under a checkpoint's name is not one (and would block or fail a read)
        return sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := _NAME.match(p.name)) and p.is_file())

    def path(self, step: int) -> Path:
        return self.folder / f"step-{step:08d}.pt"

    def best_step(self) -> int | None:
        marker = self.folder / "best.json"
        if not marker.exists():
            return None
        saved = read_checked_json(
            marker,
            {"step": (int,), "file": (str,)},
            "delete it and run the same command again (the last checkpoints are kept)",
        )
        return saved["step"]

    def last_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, state: dict, step: int, best: bool) -> Path:
        import torch

        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path(step)
        try:
            with atomic_path(target) as temporary:  # fsynced, then renamed: a crash leaves the older checkpoints whole
                torch.save(state, temporary)
        except OSError as exc:
            raise StoreError(
                f"cannot write checkpoint {target} ({exc.strerror}); free disk space and run the same command again to resume"
            ) from None
        if best:
            write_json(self.folder / "best.json", {"step": step, "file": target.name})
        self._prune()
        log.info("checkpoint %s%s", target, " (best)" if best else "")
        return target

    def _prune(self) -> None:
        steps = self.steps()
        keep = set(steps[-self.keep_last :]) | {self.best_step()}
        for step in steps:
            if step not in keep:
                self.path(step).unlink(missing_ok=True)

    def load(self, step: int, check: Callable[[dict], list[str]] | None = None) -> dict:
        """The checkpoint of ``step``, a dict; ``check`` lists what is wrong with its contents (empty: fine)."""
        import torch

        path = self.path(step)
        remedy = "delete it to resume from an earlier checkpoint, or pass --force to start over"
        try:
            with warnings.catch_warnings():  # torch warns about the pickle protocol of a file it then refuses
                warnings.simplefilter("ignore", UserWarning)
                saved = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:  # weights_only refused a global: code, or an object torch does not know
            raise StoreError(
                f"checkpoint {path} is not a plain-tensor mlx checkpoint ({_unpickler_reason(exc)}); it was not loaded: {remedy}"
            ) from None
        except Exception as exc:  # the unpickler meets any bytes: IndexError, struct.error, ... all mean damaged
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "truncated, or not a torch file"
            raise StoreError(f"checkpoint {path} cannot be read ({reason}); {remedy}") from None
        problems = ["it holds a " + type(saved).__name__ + ", not a dict"] if not isinstance(saved, dict) else []
        if not problems and check is not None:
            problems = check(saved)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise StoreError(f"checkpoint {path} does not fit this run ({problems[0]}{more}); {remedy}")
        return saved

    def load_latest(self, check: Callable[[dict], list[str]] | None = None) -> dict | None:
        last = self.last_step()
        return None if last is None else self.load(last, check)

    def clean_partials(self) -> None:
        """Remove half-written files left by a crash during a save."""
        if self.folder.is_dir():
            for stale in self.folder.glob(".step-*.partial*"):
                stale.unlink(missing_ok=True)


def _unpickler_reason(exc: Exception) -> str:
    """The one useful sentence of torch's weights-only refusal (its message is a page of advice)."""
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)", str(exc))
    return found.group(1)[:120] if found else "not a torch file"
