"""`mlx store list|info`: what the embedding stores hold."""

from pathlib import Path

import typer
from rich.table import Table

from cli import ui
from cli.params import InputFile, InputFolder

store_app = typer.Typer(help="Inspect embedding stores.", no_args_is_help=True)


@store_app.command("list")
def list_(
    root: Path = typer.Option(
        None, "--root", help="Where to look for stores. Default: $MLX_HOME/stores.", parser=InputFolder("--root")
    ),
    json_: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    folder: Path = typer.Option(
        None, "--folder", hidden=True, help="Deprecated spelling of --root.", parser=InputFolder("--folder")
    ),
) -> None:
    """List the stores in a folder (complete ones; incomplete and foreign files are flagged)."""
    from embeddings.store import list_stores

    if folder is not None:
        ui.warn("--folder is now --root (as for `mlx runs list`); --folder will go away")
        root = root or folder
    entries = list_stores(root)
    if json_:
        ui.print_json([e.to_dict() for e in entries])
        return
    table = Table(title=f"stores in {root or 'the mlx home'}")
    for column in ("path", "status", "model", "dataset", "splits", "poolings", "layers", "MB"):
        table.add_column(column)
    for e in entries:
        info = e.info
        splits = ", ".join(f"{k} {v:,}" for k, v in info.splits.items()) if info else ""
        table.add_row(
            str(e.path),
            e.status,
            info.model_id if info else "",
            info.dataset_name if info else "",
            splits,
            ", ".join(info.poolings) if info else "",
            _layers(info.layers) if info else "",
            f"{e.size_mb:.1f}",
        )
    ui.out.print(table)


@store_app.command("info")
def info(
    path: Path = typer.Argument(..., help="Store file.", parser=InputFile("PATH")),
    json_: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show a store's metadata, splits, poolings, layers and dimensions."""
    from embeddings.store import read_info

    store_info = read_info(path)
    if json_:
        ui.print_json(store_info.to_dict())
        return
    table = Table(title=str(path), show_header=False)
    table.add_column(style="bold")
    table.add_column()
    d = store_info.to_dict()
    for key in (
        "model_id",
        "model_revision",
        "dataset_name",
        "dataset_fingerprint",
        "max_length",
        "dtype",
        "mlx_version",
        "created_at",
        "schema_version",
    ):
        table.add_row(key, str(d[key]))
    table.add_row("splits", ", ".join(f"{k} {v:,}" for k, v in store_info.splits.items()))
    table.add_row("labels", ", ".join(store_info.label_names))
    table.add_row("poolings (D)", ", ".join(f"{p} ({store_info.dims.get(p, '?')})" for p in store_info.poolings))
    table.add_row("layers", f"{_layers(store_info.layers)} of {store_info.n_layers}")
    ui.out.print(table)


def _layers(layers) -> str:
    layers = list(layers)
    if len(layers) > 2 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}"
    return ",".join(map(str, layers))


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
