"""Progress reporting without a UI dependency.

Long-running library functions take an optional ``progress`` callback. The CLI passes one that
drives a Rich progress bar on a terminal, and a :class:`ProgressLog` elsewhere (a log file, a pipe,
a batch job), which writes a plain line at a steady interval; tests and notebooks pass nothing or
their own.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

# How often a log gets a line while a task runs: often enough to see it is alive, rarely enough to read.
LOG_INTERVAL_SECONDS = 15.0


class ProgressCallback(Protocol):
    def __call__(self, task: str, completed: int, total: int, **info: float) -> None:
        """Report that ``completed`` of ``total`` units of ``task`` are done (``info``: loss, accuracy, ...)."""


def no_progress(task: str, completed: int, total: int, **info: float) -> None:
    """A ProgressCallback that ignores everything."""


@dataclass
class _TaskState:
    started: float  # clock time of the first report
    first_completed: int  # units already done then (resumed work is not counted in the rate)
    completed: int = 0
    total: int = 0
    info: dict[str, float] = field(default_factory=dict)
    done: bool = False


class ProgressLog:
    """A ProgressCallback for logs: one line per task when it starts and when it ends (each phase change),
    and one at least every ``interval_seconds`` while it runs: done/total, rate, elapsed, ETA, ``info``.

    Lines go to ``write`` (no newline); ``clock`` is injectable so tests need no waiting. Call
    :meth:`tick` from a timer so that a line comes on time even when reports are rare; it is thread-safe.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        unit: str = "it",
        interval_seconds: float = LOG_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.write = write
        self.unit = unit
        self.interval_seconds = interval_seconds
        self.clock = clock
        self._tasks: dict[str, _TaskState] = {}
        self._current: str | None = None
        self._last_line = clock()
        self._lock = threading.Lock()

    def __call__(self, task: str, completed: int, total: int, **info: float) -> None:
        with self._lock:
            now = self.clock()
            state = self._tasks.get(task)
            is_new = state is None or (state.done and completed < state.completed)  # a task run again
            if state is None or is_new:
                state = self._tasks[task] = _TaskState(started=now, first_completed=completed)
            state.completed, state.total, state.info = completed, total, dict(info)
            finished = total > 0 and completed >= total and not state.done
            state.done = state.done or finished
            self._current = task
            if is_new or finished or now - self._last_line >= self.interval_seconds:
                self._emit(task, now)

    def tick(self) -> None:
        """Write the running task's line if none was written for ``interval_seconds``."""
        with self._lock:
            now = self.clock()
            task = self._current
            if task is not None and not self._tasks[task].done and now - self._last_line >= self.interval_seconds:
                self._emit(task, now)

    def _emit(self, task: str, now: float) -> None:
        self._last_line = now
        self.write(format_progress(task=task, state=self._tasks[task], now=now, unit=self.unit))


def format_progress(task: str, state: _TaskState, now: float, unit: str) -> str:
    """'embed train: 1,234/10,429 sent (12%), 85.1 sent/s, 14s elapsed, ETA 1m48s, loss=0.31'."""
    elapsed = now - state.started
    counted = state.completed - state.first_completed
    rate = counted / elapsed if elapsed > 0 and counted > 0 else None
    percent = f" ({100 * state.completed / state.total:.0f}%)" if state.total else ""
    parts = [f"{task}: {state.completed:,}/{state.total:,} {unit}{percent}"]
    parts.append(f"{rate:,.1f} {unit}/s" if rate else f"- {unit}/s")
    parts.append(f"{format_seconds(elapsed)} elapsed")
    if state.done:
        parts.append("done")
    else:
        remaining = state.total - state.completed
        parts.append(f"ETA {format_seconds(remaining / rate)}" if rate and remaining >= 0 else "ETA -")
    parts += [f"{key}={value:.4g}" if not math.isnan(value) else f"{key}=-" for key, value in state.info.items()]
    return ", ".join(parts)


def format_seconds(seconds: float) -> str:
    """'9s', '1m48s', '2h03m'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
