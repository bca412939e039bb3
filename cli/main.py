"""Entry point: ``mlx``. One error handler for every command lives here."""

import importlib
import logging

import typer
from typer.core import TyperGroup

# Recent typer vendors click: take the exceptions from wherever its parser raises them.
_click_exceptions = importlib.import_module(typer.BadParameter.__module__)
UsageError = _click_exceptions.UsageError
NoArgsIsHelpError = getattr(_click_exceptions, "NoArgsIsHelpError", ())

from cli import embed, probe, report, runs, store, study, ui, vision
from common import MlxError, __version__


class MlxGroup(TyperGroup):
    """Turns library errors and bad options into one red line and a non-zero exit, for every command."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except UsageError as exc:
            _usage_error(exc)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MlxError as exc:
            ui.print_error(str(exc))
            ctx.exit(exc.exit_code)
        except UsageError as exc:
            _usage_error(exc)


def _usage_error(exc) -> None:
    if isinstance(exc, NoArgsIsHelpError):
        raise exc  # `mlx probe` with no arguments: show the help, as asked
    where = exc.ctx.command_path if exc.ctx else "mlx"
    ui.print_error(f"{exc.format_message()} (see '{where} --help')")
    raise typer.Exit(exc.exit_code)


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
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log library details to stderr."),
) -> None:
    """mlx: fast, reproducible, honest numbers for representation experiments.

    Artifacts (stores, run folders, caches) live under the mlx home: $MLX_HOME, default ~/.mlx.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        # The hub client logs every retry when offline; the one-line error that follows says it all.
        for name in ("huggingface_hub", "transformers", "datasets"):
            logging.getLogger(name).setLevel(logging.ERROR)
        _quiet_hub()


def _quiet_hub() -> None:
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()


# One module per verb group, each wiring itself onto the app.
for _module in (embed, store, probe, vision, runs, report, study):
    _module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
