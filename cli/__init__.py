"""The mlx command line: thin Typer commands over the library packages.

Ctrl-C is handled here, first of all, because the imports that follow take seconds: interrupted
then, or later by an error that the interruption caused (an ImportError from a half-imported
module), mlx exits 130 without a traceback. ``cli.main`` handles Ctrl-C while a command runs.
"""

import os
import signal
import sys

_interrupted = False
_command_started = False


def interrupted() -> bool:
    """True once Ctrl-C was pressed in this process."""
    return _interrupted


def command_started() -> None:
    """From now on Ctrl-C raises KeyboardInterrupt, so a command can remove what it half-wrote."""
    global _command_started
    _command_started = True


def exit_quietly() -> None:
    """Flush the output streams and end the process with status 130 (interrupted)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(130)


def _on_interrupt(signum, frame) -> None:
    global _interrupted
    _interrupted = True
    if not _command_started:
        # Still importing: nothing written yet, and an exception raised here can be swallowed
        # (Python ignores exceptions in some import-machinery callbacks), so leave at once.
        exit_quietly()
    raise KeyboardInterrupt


def _quiet_interrupt(kind, value, traceback, previous=sys.excepthook) -> None:
    if _interrupted or issubclass(kind, KeyboardInterrupt):
        exit_quietly()
    previous(kind, value, traceback)


sys.excepthook = _quiet_interrupt
try:
    if (
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):  # left alone where SIGINT is ignored (background jobs)
        signal.signal(signal.SIGINT, _on_interrupt)
except ValueError:  # imported outside the main thread: nothing to install
    pass
