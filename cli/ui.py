"""Rendering shared by every command: consoles, the error line, progress bars, summaries, JSON."""

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from common.progress import LOG_INTERVAL_SECONDS, ProgressLog

# stdout carries results only; progress, summaries, warnings and errors go to stderr.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def print_error(message: str) -> None:
    """One red line on stderr: never wrapped, never marked up by the message's own brackets."""
    err.print(Text.assemble(("error: ", "bold red"), (message.replace("\n", " "), "red")), soft_wrap=True)


def print_line(message: str, style: str) -> None:
    """One line on stderr in ``style``, never wrapped, never marked up by the message's own brackets."""
    err.print(Text(message.replace("\n", " "), style=style), soft_wrap=True)


def say(message: str) -> None:
    """A one-line notice on stderr (a choice made aloud, a cache hit, a skipped step)."""
    err.print(Text(message, style="cyan"), soft_wrap=True)


def warn(message: str) -> None:
    err.print(Text.assemble(("warning: ", "bold yellow"), (message, "yellow")), soft_wrap=True)


class OncePerMessage(logging.Filter):
    """Let each warning through once per process: a library that warns per model, per plot or per rank says it once."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def warn_once_per_message() -> None:
    """Put the once-per-message filter on the handlers of the root logger (where library warnings reach stderr)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, OncePerMessage) for f in handler.filters):
            handler.addFilter(OncePerMessage())


def print_json(obj: Any) -> None:
    """Machine-readable result on stdout, nothing else on stdout."""
    out.file.write(json.dumps(obj, indent=2, default=str) + "\n")
    out.file.flush()


def summary_panel(title: str, rows: dict[str, Any]) -> None:
    """The one-panel summary printed before long work."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in rows.items():
        grid.add_row(key, str(value))
    err.print(Panel(grid, title=title, expand=False))


class RateColumn(ProgressColumn):
    """Units per second since the task started, e.g. '812 sent/s'."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        # The average since the start, not Rich's 30-second window: length-sorted work speeds up as it goes.
        speed = task.completed / task.elapsed if task.elapsed else None
        return Text(f"{speed:,.0f} {self.unit}/s" if speed else f"- {self.unit}/s", style="magenta")


class InfoColumn(ProgressColumn):
    """Extra numbers reported through the progress callback (loss, accuracy, ...)."""

    def render(self, task) -> Text:
        info = task.fields.get("info") or {}
        return Text("  ".join(f"{k}={v:.4g}" for k, v in info.items()), style="dim")


@contextmanager
def progress_bar(unit: str = "it") -> Iterator:
    """Yield a ProgressCallback on stderr: one Rich bar per task name on a terminal; elsewhere (a log
    file, a pipe) a plain line per task start and end and every LOG_INTERVAL_SECONDS between them."""
    if not err.is_terminal:
        with progress_log(unit) as log_callback:
            yield log_callback
        return
    progress = Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        InfoColumn(),
        console=err,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def callback(task: str, completed: int, total: int, **info: float) -> None:
        if not tasks:  # started at the first report: work that fails before any leaves no blank line on stderr
            progress.start()
        if task not in tasks:
            tasks[task] = progress.add_task(task, total=total, info={})
        progress.update(tasks[task], completed=completed, total=total, info=info)

    try:
        yield callback
    finally:
        if tasks:
            progress.stop()


@contextmanager
def progress_log(unit: str, interval_seconds: float = LOG_INTERVAL_SECONDS) -> Iterator[ProgressLog]:
    """A ProgressLog writing to stderr, with a timer thread so that a line comes on time between rare reports."""
    log = ProgressLog(lambda line: err.print(Text(line), soft_wrap=True, highlight=False), unit, interval_seconds)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(1.0):
            log.tick()

    timer = threading.Thread(target=beat, daemon=True)
    timer.start()
    try:
        yield log
    finally:
        stop.set()
        timer.join()
