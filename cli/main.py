"""Entry point: ``mlx``. One error handler for every command lives here."""

import logging

import typer
from typer.core import TyperGroup

from cli import ui
from common import MlxError, __version__


class MlxGroup(TyperGroup):
    """Turns library errors into one red line and a non-zero exit, for every subcommand."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MlxError as exc:
            ui.print_error(str(exc))
            ctx.exit(exc.exit_code)


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


def _register() -> None:
    # Each verb group is one module; a module that is not there yet is simply not registered.
    import importlib

    for module_name in ("cli.embed", "cli.store", "cli.probe", "cli.vision"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register(app)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
