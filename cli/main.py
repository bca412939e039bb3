"""Entry point: ``mlx``. The one error boundary for every command lives here (Ctrl-C before a command runs:
``cli/__init__.py``): a typed ``MlxError`` is its own red line; Ctrl-C is exit 130, saying what the
command kept (``cli.kept_on_interrupt``); a reader that closed stdout or stderr (``mlx ... | head``)
ends the command quietly with exit 1, as click does for help; any other exception is a bug: one line
``mlx: internal error: <type>: <message>``, its traceback in a log file under the mlx home (inline
with MLX_DEBUG=1 or ``--debug``), exit 1.
"""

import contextlib
import errno
import importlib
import logging
import os
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

import typer
from typer.core import TyperGroup

# Recent typer vendors click: take the exceptions from wherever its parser raises them.
_click_exceptions = importlib.import_module(typer.BadParameter.__module__)
UsageError = _click_exceptions.UsageError
NoArgsIsHelpError = getattr(_click_exceptions, "NoArgsIsHelpError", ())
# click's own ways out (typer.Exit is a RuntimeError): never bugs, click handles them
ClickExits = (typer.Exit, typer.Abort, _click_exceptions.ClickException)

import cli  # noqa: E402
from cli import attention, embed, finetune, grammar, probe, report, runs, store, study, ui, vision  # noqa: E402  (after the click shims above)
from common import MlxError, __version__  # noqa: E402
from common.paths import mlx_home  # noqa: E402
from common.writes import disk_full_message, is_disk_full  # noqa: E402


class MlxGroup(TyperGroup):
    """Turns library errors and bad options into one red line and a non-zero exit, for every command.

    Built once over the whole command tree, it also applies the one option grammar to every command
    (``cli/grammar.py``: choices in any case, flags without a value type in help).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        grammar.apply(self)

    def make_context(self, info_name, args, parent=None, **extra):
        global _debug
        if parent is None:
            _debug = False  # --debug holds for the command it is given with
        try:
            return super().make_context(info_name, args, parent, **extra)
        except UsageError as exc:
            _usage_error(exc)
        except ClickExits:
            raise
        except (MlxError, KeyboardInterrupt, Exception) as exc:  # an option's own callback: the same boundary
            _end(exc, sys.exit)

    def invoke(self, ctx):
        cli.command_started()
        try:
            result = super().invoke(ctx)
            if cli.interrupted():  # a Ctrl-C that Python swallowed (raised inside a callback): still an interrupted run
                ctx.exit(130)
            return result
        except UsageError as exc:
            _usage_error(exc)
        except ClickExits:
            raise
        except (MlxError, KeyboardInterrupt, Exception) as exc:
            _end(exc, ctx.exit)


def _end(exc: BaseException, leave) -> None:
    """Every way a command fails ends here: one line (or a quiet 130), then ``leave(exit code)``."""
    if isinstance(exc, MlxError):
        ui.print_error(str(exc))
        leave(exc.exit_code)
    elif isinstance(exc, OSError) and exc.errno == errno.EPIPE:  # BrokenPipeError: the reader has gone
        _silence_closed_streams()
        leave(1)
    elif isinstance(exc, KeyboardInterrupt) or cli.interrupted():
        kept = cli.kept_message() if isinstance(exc, KeyboardInterrupt) else None
        if kept is not None:
            ui.warn(f"interrupted: {kept}")
        leave(130)  # whatever was half-written has been removed on the way out
    elif is_disk_full(exc):  # a full disk that no writer named: still one line
        where = getattr(exc, "filename", None)
        ui.print_error(disk_full_message(where) if where else "no space left on device; free some space and re-run")
        leave(1)
    else:
        _internal_error(exc)
        leave(1)


def _silence_closed_streams() -> None:
    """Point a standard stream whose reader has gone at /dev/null: nothing more can reach that reader, and
    Python's flush at exit would otherwise fail on it again ("Exception ignored ... BrokenPipeError")."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            with contextlib.suppress(OSError, ValueError):  # ValueError: a stream without a file descriptor
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


_debug = False  # --debug on this command line


def _internal_error(exc: BaseException) -> None:
    """A bug: one line naming the exception and where its traceback went (stderr itself under --debug)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    message = " ".join(str(exc).split())
    summary = f"mlx: internal error: {type(exc).__name__}: {message[:300]}"
    if _debug or os.environ.get("MLX_DEBUG", "") not in ("", "0"):
        ui.err.file.write(text)
        ui.print_line(f"{summary} (a bug in mlx; its traceback is above)", "bold red")
        return
    try:
        log = _write_traceback(text)
    except OSError as problem:
        ui.err.file.write(text)
        where = f"could not write it under {mlx_home()}: {problem.strerror or problem}"
        ui.print_line(f"{summary} (a bug in mlx; its traceback is above, {where})", "bold red")
        return
    ui.print_line(f"{summary} (a bug in mlx; traceback in {log}; MLX_DEBUG=1 shows it here)", "bold red")


def _write_traceback(text: str) -> Path:
    """The traceback, with the command line and versions, in $MLX_HOME/logs/internal-error-<time>-<pid>.log."""
    import platform

    from common.record import command_line

    folder = mlx_home() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    log = folder / f"internal-error-{stamp}-{os.getpid()}.log"
    header = f"{command_line()}\nmlx {__version__}, Python {platform.python_version()}, {platform.platform()}\n\n"
    log.write_text(header + text, encoding="utf-8")
    return log


def _usage_error(exc) -> None:
    if isinstance(exc, NoArgsIsHelpError):
        raise exc  # `mlx probe` with no arguments: show the help, as asked
    where = exc.ctx.command_path if exc.ctx else "mlx"
    param = getattr(exc, "param", None)
    if param is not None and grammar.choices(param) is not None:
        message = grammar.choice_error(param, exc)
    elif (
        param is not None and _bounded(param) and "should be" in exc.format_message()
    ):  # pydantic's "Input should be greater than ..."
        value = _given_value(param)
        message = f"{param.opts[0] if param.opts else param.name} must lie in {param.min}..{param.max}" + (
            f", got {value}" if value is not None else ""
        )
    else:  # typer's converters speak pydantic ("Value error, ..."): keep only what is wrong
        message = exc.format_message().replace("Value error, ", "")
    ui.print_error(f"{message} (see '{where} --help')")
    raise typer.Exit(exc.exit_code)


def _bounded(param) -> bool:
    """An integer option declared with IntRange bounds (typer keeps them as min/max on the option)."""
    return getattr(param, "min", None) is not None and getattr(param, "max", None) is not None


def _given_value(param):
    """The text the user gave for ``param``, for the refusal (None where it cannot be found)."""
    args = sys.argv[1:]  # the command line (under a test runner's invoke, not there: then None)
    for opt in param.opts:
        for i, arg in enumerate(args):
            if arg == opt and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(opt + "="):
                return arg[len(opt) + 1 :]
    return None


app = typer.Typer(
    cls=MlxGroup,
    help="mlx: measure what pretrained representations buy you. Frozen BERT embeddings into HDF5 "
    "stores, FAISS/logistic-regression probes, and KMNIST vision baselines; one command each.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        ui.out.print(f"mlx {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log library details to stderr."),
    debug: bool = typer.Option(
        False, "--debug", help="Show the traceback of an internal error here (as MLX_DEBUG=1 does), not only in a log."
    ),
) -> None:
    """mlx: fast, reproducible, honest numbers for representation experiments.

    Artifacts (stores, run folders, caches) live under the mlx home: $MLX_HOME, default ~/.mlx.
    """
    global _debug
    _debug = debug
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    ui.warn_once_per_message()
    if not verbose:
        # The hub client logs every retry when offline; the one-line error that follows says it all.
        for name in ("huggingface_hub", "transformers", "datasets"):
            logging.getLogger(name).setLevel(logging.ERROR)
        # transformers is imported lazily, after this point, and then resets its own logger level from
        # this variable (otherwise its LOAD REPORT table about unused head weights reaches stderr).
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        _quiet_hub()


def _quiet_hub() -> None:
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()


# One module per verb group, each wiring itself onto the app.
for _module in (embed, store, probe, vision, runs, report, study, attention, finetune):
    _module.register(app)


def main() -> None:
    try:
        app()
    except SystemExit:
        if cli.interrupted():
            _exit_interrupted()
        raise


def _exit_interrupted() -> None:
    """Exit 130 after Ctrl-C, cleanly, and for certain.

    CPython remembers a KeyboardInterrupt that interrupted code run through PyRun_String (Cython
    modules run some that way while they import) and, at exit, kills the process with SIGINT instead
    of returning the status the command chose, even though mlx caught the interrupt. So the exit
    functions run here and the process leaves with 130 at once.
    """
    import atexit
    import logging

    # An interrupt that cut a logging handler's __init__ short leaves a handler without its lock;
    # logging's own exit function then fails on it and, with raiseExceptions, prints a traceback.
    logging.raiseExceptions = False
    atexit._run_exitfuncs()
    cli.exit_quietly()


if __name__ == "__main__":
    main()
