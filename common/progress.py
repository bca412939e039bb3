"""Progress reporting without a UI dependency.

Long-running library functions take an optional ``progress`` callback. The CLI passes one that
drives a Rich progress bar; tests and notebooks pass nothing or their own.
"""

from typing import Protocol


class ProgressCallback(Protocol):
    def __call__(self, task: str, completed: int, total: int, **info: float) -> None:
        """Report that ``completed`` of ``total`` units of ``task`` are done (``info``: loss, accuracy, ...)."""


def no_progress(task: str, completed: int, total: int, **info: float) -> None:
    """A ProgressCallback that ignores everything."""
