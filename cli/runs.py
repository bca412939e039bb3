"""``mlx runs``: list and show run folders (every folder with a run.json under the mlx home)."""

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Table

from cli import ui
from cli.params import InputFolder, RunParser
from common.record import KINDS, RECORD_FILE

# From common.record.KINDS, the one source of truth; mypy reads only literal Enum() members, hence the ignore.
RunKind = Enum("RunKind", {kind: kind for kind in KINDS}, type=str)  # type: ignore[misc]  # --kind [probe|finetune|...]

runs_app = typer.Typer(
    help="List and show saved runs (probe, finetune, vision, ...): one run.json each.", no_args_is_help=True
)

ROOT = typer.Option(
    None,
    "--root",
    help="Where to look for runs (searched recursively). Default: the mlx home ($MLX_HOME, ~/.mlx).",
    parser=InputFolder("--root"),
)


@runs_app.command("list")
def list_runs(
    kind: Optional[RunKind] = typer.Option(None, "--kind", help="Only runs of this kind."),
    root: Optional[Path] = ROOT,
    json_: bool = typer.Option(False, "--json", help="Print the records as JSON."),
) -> None:
    """Runs, newest first: command, model, data, best test accuracy, when (UTC), folder."""
    from report.locate import find_runs

    kind = kind.value if kind is not None else None
    listing = find_runs(root, kind)
    for line in listing.skipped:
        ui.warn(f"skipped: {line}")
    if json_:
        ui.print_json([{**r.to_dict(), "run_dir": r.run_dir} for r in listing.records])
        return
    if not listing.records:
        ui.say(f"no runs{f' of kind {kind}' if kind else ''} under {root or 'the mlx home'}")
        return
    table = Table(title="runs, newest first", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    # The folder is what a user types next (`mlx runs show`, `mlx report`): it takes the width the others leave,
    # folded onto more lines, never cut. (The command names the kind: `probe compare`, `finetune`, ...)
    widths = {"command": 14, "model": 22, "data": 16, "best": 20}
    for name in ("command", "model", "data", "best acc", "best", "finished", "folder"):
        table.add_column(
            name,
            justify="right" if name == "best acc" else "left",
            overflow="fold",
            no_wrap=name in ("best acc", "finished"),
            max_width=widths.get(name),
        )
    for r in listing.records:
        best = r.best
        table.add_row(
            r.command,
            r.model_named(model_name(r.model.id)) if r.model else "-",
            f"{r.data.name} ({_n_test(r)} test)",
            f"{best.accuracy:.2%}" if best else "-",
            best.name if best else "-",
            r.finished_at[:16].replace("T", " "),  # UTC, to the minute
            r.run_dir,
        )
    ui.out.print(table, soft_wrap=False)  # the console's soft wrap would let the table run past the width


@runs_app.command("show")
def show(
    run: str = typer.Argument(
        ..., help="A run folder, or its name (or a unique name prefix) under the mlx home.", parser=RunParser("RUN")
    ),
    root: Optional[Path] = ROOT,
    json_: bool = typer.Option(False, "--json", help="Print run.json as it is."),
) -> None:
    """One run: what ran, on what, where, and every result row."""
    from common.record import read_record
    from report.locate import resolve_run

    record = read_record(resolve_run(run, root))
    if json_:
        ui.print_json(record.to_dict())
        return
    data_splits = ", ".join(f"{s.name} {s.n_rows:,} ({s.fingerprint})" for s in record.data.splits)
    ui.summary_panel(
        f"{record.command}: {record.run_dir}",
        {
            "command line": record.command_line,
            "model": f"{record.model_named(record.model.id)} ({record.model.revision or 'no revision'})"
            if record.model
            else "-",
            "data": f"{record.data.name} ({record.data.fingerprint}): {data_splits}",
            "device": record.device,
            "time": f"{record.started_at} -> {record.finished_at}",
            "mlx": record.mlx_version,
            "artifacts": ", ".join(record.artifacts) or "-",
            **({"notes": "; ".join(record.notes)} if record.notes else {}),
        },
    )
    table = Table(
        title=f"{len(record.results)} result row(s)", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
    )
    for name in ("name", "acc", "macro-F1", "val acc", "n train", "n test", "trainable", "train s"):
        table.add_column(name, justify="left" if name == "name" else "right")
    for r in sorted(record.results, key=lambda r: -(r.accuracy if r.accuracy is not None else -1)):
        table.add_row(
            r.name,
            _pct(r.accuracy),
            _pct(r.macro_f1),
            _pct(r.validation_accuracy),
            _num(r.n_train),
            _num(r.n_test),
            _num(r.trainable_params),
            "-" if r.train_seconds is None else f"{r.train_seconds:.2f}",
        )
    ui.out.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")


def model_name(model_id: str) -> str:
    """A hub id as it is; a local folder by its name; a fine-tuned model by its run: ``fine-tuned <run name>``.

    ``mlx finetune`` saves the model as ``<run folder>/model``, so the folder's own name says nothing.
    A run folder named after its kind (a study's ``n-100/finetune``) is named with its parent.
    """
    path = Path(model_id)
    if not path.is_absolute():
        return model_id
    run = path.parent
    if path.name == "model" and (run / RECORD_FILE).is_file():
        return f"fine-tuned {run.parent.name + '/' if run.name == 'finetune' else ''}{run.name}"
    return path.name or model_id


def _n_test(record) -> str:
    return f"{record.data.test.n_rows:,}" if record.data.test else "no"


def _pct(value) -> str:
    return "-" if value is None else f"{value:.2%}"


def _num(value) -> str:
    return "-" if value is None else f"{value:,}"
