"""The mlx command line: thin Typer commands over the library packages.

Ctrl-C is handled here, first of all, because the imports that follow take seconds: interrupted
then, or later by an error that the interruption caused (an ImportError from a half-imported
module), mlx exits 130 without a traceback. ``cli.main`` handles Ctrl-C while a command runs.
"""

import os
import signal
import sys

_interrupted = False


def interrupted() -> bool:
    """True once Ctrl-C was pressed in this process."""
    return _interrupted


def _on_interrupt(signum, frame) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def _quiet_interrupt(kind, value, traceback, previous=sys.excepthook) -> None:
    if _interrupted or issubclass(kind, KeyboardInterrupt):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(130)
    previous(kind, value, traceback)


sys.excepthook = _quiet_interrupt
try:
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # left alone where SIGINT is ignored (background jobs)
        signal.signal(signal.SIGINT, _on_interrupt)
except ValueError:  # imported outside the main thread: nothing to install
    pass
