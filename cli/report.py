"""``mlx report``: probe vs fine-tune on one test set, with intervals, paired tests and plots."""

from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cli import ui
from cli.params import InputFolder, OutputFile, OutputFolder, RunParser


def report(
    runs: Optional[list[str]] = typer.Argument(
        None,
        help="Run folders or names (see `mlx runs list`). Default: the latest runs that share a model and a test set.",
        parser=RunParser("RUNS"),
    ),
    root: Optional[Path] = typer.Option(
        None, "--root", help="Where to look for runs. Default: the mlx home.", parser=InputFolder("--root")
    ),
    all_rows: bool = typer.Option(
        False,
        "--all-rows",
        help="Also every setting not chosen on validation, marked * (optimistic) and ranked below the chosen ones.",
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        help="Folder for the PNGs. Default: beside --markdown, else $MLX_HOME/reports/report-<time>-<id>.",
        parser=OutputFolder("--out"),
    ),
    markdown: Optional[Path] = typer.Option(
        None,
        "--markdown",
        help="Also write the table and plots as Markdown to this file.",
        parser=OutputFile("--markdown"),
    ),
    html: Optional[Path] = typer.Option(
        None,
        "--html",
        help="Also write the table and plots as one self-contained HTML page (images inlined).",
        parser=OutputFile("--html"),
    ),
    plots: bool = typer.Option(
        True, "--plots/--no-plots", help="Write PNGs: accuracy by method, by layer, by training size."
    ),
    json_: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """Test accuracy with a 95% bootstrap interval, macro-F1, McNemar p; trainable parameters, train time, peak memory, test texts/s."""
    from report.join import ReportConfig, build_report

    result = build_report(
        ReportConfig(
            runs=tuple(runs or ()), root=root, all_rows=all_rows, out=out, markdown=markdown, html=html, plots=plots
        )
    )
    if json_:
        ui.print_json(
            {
                "test": result.test_description,
                "runs": list(result.runs),
                "rows": [r.to_dict() for r in result.rows],
                "plots": [str(p) for p in result.plots],
                "markdown": str(result.markdown) if result.markdown else None,
                "html": str(result.html) if result.html else None,
                "notes": list(result.notes),
            }
        )
    else:
        ui.out.print(report_table(result))
    for path in result.plots:
        ui.say(f"plot: {path}")
    if result.markdown:
        ui.say(f"markdown: {result.markdown}")
    if result.html:
        ui.say(f"html: {result.html}")


def report_table(result) -> Group:
    """Two tables that fit 80 columns (accuracy, then cost), keyed by row number, and a legend spelling rows out.

    No cell is ever cut: numbers never wrap, and words wrap rather than end in an ellipsis.
    """
    from report.markdown import accuracy_cells, caption, cost_cells, legend, title

    parts: list[RenderableType] = []
    for name, (header, cells) in (("accuracy", accuracy_cells(result)), ("cost", cost_cells(result))):
        table = Table(title=f"{title(result)}: {name}", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for column in header:
            words = column in ("method", "device")
            table.add_column(column, justify="left" if words else "right", no_wrap=not words, overflow="fold")
        for row, line in zip(result.rows, cells):
            table.add_row(*line, style="bold" if row.is_reference else None)
        parts.append(table)
    key = Table(box=None, show_header=False, pad_edge=False)
    key.add_column("#", justify="right", no_wrap=True)
    key.add_column("row", overflow="fold")
    for number, text in legend(result):
        key.add_row(number, text)
    parts += [key, Text(caption(result), style="dim")]
    parts += [Text(f"note: {note}", style="yellow") for note in result.notes]
    return Group(*parts)


def register(app: typer.Typer) -> None:
    app.command()(report)
