"""``mlx report``: probe vs fine-tune on one test set, with intervals, paired tests and plots."""

from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Table

from cli import ui


def report(
    runs: Optional[list[str]] = typer.Argument(
        None,
        help="Run folders or names (see `mlx runs list`). Default: the latest runs that share a model and a test set.",
    ),
    root: Optional[Path] = typer.Option(None, "--root", help="Where to look for runs. Default: the mlx home."),
    all_rows: bool = typer.Option(
        False, "--all-rows", help="Every result row, not only the best of each method per run."
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        help="Folder for the PNGs. Default: beside --markdown, else $MLX_HOME/reports/report-<time>-<id>.",
    ),
    markdown: Optional[Path] = typer.Option(
        None, "--markdown", help="Also write the table and plots as Markdown to this file."
    ),
    plots: bool = typer.Option(
        True, "--plots/--no-plots", help="Write PNGs: accuracy by method, by layer, by training size."
    ),
    json_: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """One table: test accuracy with a 95% bootstrap interval, macro-F1, trainable parameters, train time, device, McNemar p."""
    from report.join import ReportConfig, build_report

    result = build_report(
        ReportConfig(runs=tuple(runs or ()), root=root, all_rows=all_rows, out=out, markdown=markdown, plots=plots)
    )
    if json_:
        ui.print_json(
            {
                "test": result.test_description,
                "runs": list(result.runs),
                "rows": [r.to_dict() for r in result.rows],
                "plots": [str(p) for p in result.plots],
                "markdown": str(result.markdown) if result.markdown else None,
            }
        )
    else:
        ui.out.print(report_table(result))
    for path in result.plots:
        ui.say(f"plot: {path}")
    if result.markdown:
        ui.say(f"markdown: {result.markdown}")


def report_table(result) -> Table:
    from report.markdown import caption, format_rows, title

    header, cells = format_rows(result)
    table = Table(
        title=title(result),
        caption=caption(result),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for name in header:
        table.add_column(
            name,
            justify="left" if name in ("method", "model", "device", "McNemar p") else "right",
            no_wrap=name.startswith("acc"),
        )
    for row, line in zip(result.rows, cells):
        table.add_row(*line, style="bold" if row.is_reference else None)
    return table


def register(app: typer.Typer) -> None:
    app.command()(report)
