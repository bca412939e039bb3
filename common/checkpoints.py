"""Checkpoint files of a training run: atomic writes, keep the last K and the best.

Each checkpoint is one ``step-00000123.pt`` file written under a temporary name and renamed into
place, so a crash (even ``kill -9``) mid-write leaves the previous checkpoints whole. ``best.json``
names the checkpoint with the best validation accuracy; it is never pruned.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path

from common.errors import StoreError
from common.runs import write_json

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
        return sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := _NAME.match(p.name)))

    def path(self, step: int) -> Path:
        return self.folder / f"step-{step:08d}.pt"

    def best_step(self) -> int | None:
        marker = self.folder / "best.json"
        if not marker.exists():
            return None
        return int(json.loads(marker.read_text())["step"])

    def last_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, state: dict, step: int, best: bool) -> Path:
        import torch

        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path(step)
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=f".{target.name}.", suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as stream:
                torch.save(state, stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except OSError as exc:
            Path(temporary).unlink(missing_ok=True)
            raise StoreError(f"cannot write checkpoint {target} ({exc.strerror}); free disk space and run the same command again to resume") from None
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
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

    def load(self, step: int) -> dict:
        import torch

        try:
            return torch.load(self.path(step), map_location="cpu", weights_only=False)
        except (OSError, RuntimeError, EOFError) as exc:
            raise StoreError(f"checkpoint {self.path(step)} cannot be read ({exc}); delete it to resume from an earlier one") from None

    def load_latest(self) -> dict | None:
        last = self.last_step()
        return None if last is None else self.load(last)

    def clean_partials(self) -> None:
        """Remove half-written files left by a crash during a save."""
        if self.folder.is_dir():
            for stale in self.folder.glob(".step-*.partial"):
                stale.unlink(missing_ok=True)
