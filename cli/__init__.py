"""The mlx command line: thin Typer commands over the library packages.

Ctrl-C is owned here, first of all, because the imports that follow take seconds: interrupted
then, or later by an error that the interruption caused (an ImportError from a half-imported
module), mlx exits 130 without a traceback. While a command runs, Ctrl-C raises KeyboardInterrupt,
which unwinds the command (its writers remove what they half-wrote) to the one error boundary in
``cli.main``: exit 130, saying what the command kept (``kept_on_interrupt``).
"""

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_interrupted = False
_command_started = False
_kept_message: str | None = None  # what the running command keeps if Ctrl-C ends it


def interrupted() -> bool:
    """True once Ctrl-C was pressed in this process."""
    return _interrupted


def command_started() -> None:
    """From now on Ctrl-C raises KeyboardInterrupt, so a command can remove what it half-wrote."""
    global _command_started, _kept_message
    _command_started = True
    _kept_message = None  # what an earlier command in this process kept is not this one's (in-process runs, tests)


@contextmanager
def kept_on_interrupt(message: str | None) -> Iterator[None]:
    """Ctrl-C inside the block ends the command (exit 130) with ``interrupted: <message>``.

    ``None``: quietly, unless an enclosing block said what it keeps. The message outlives the block
    only when Ctrl-C ends it, for ``cli.main`` to say; nothing here catches the interruption.
    """
    global _kept_message
    outer = _kept_message
    if message is not None:
        _kept_message = message
    try:
        yield
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt):
            _kept_message = outer
        raise
    _kept_message = outer


def kept_message() -> str | None:
    """What the command that Ctrl-C ended kept and how to resume (``kept_on_interrupt``); None: nothing to say."""
    return _kept_message


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
