"""The report as Markdown: the table and the plots, for a README or a paper."""

import os
from pathlib import Path

from common.errors import StoreError
from common.paths import ensure_writable_dir
from common.record import RECORD_FILE
from common.runs import atomic_file

# The first line of every Markdown report: a file that starts so may be replaced by the next report.
MARKER = "<!-- written by `mlx report`; the next report to this file replaces it -->"


def format_rows(report) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by the Rich table and the Markdown one; model and device columns only when they vary."""
    several_models = len({r.model for r in report.rows}) > 1
    several_devices = len({r.device for r in report.rows}) > 1
    header = [
        "method",
        *(["model"] if several_models else []),
        "train rows",
        "acc % [95% CI]",
        "macro-F1 %",
        "trainable",
        "train s",
        *(["device"] if several_devices else []),
        "McNemar p",
    ]
    cells = []
    for r in report.rows:
        p = (
            "ref"
            if r.is_reference
            else "-"
            if r.p_value is None
            else f"{r.p_value:.2g} ({r.only_this}/{r.only_reference})"
        )
        cells.append(
            [
                f"{r.method} {r.detail}" + (" *" if r.chosen_on == "test" else ""),
                *([r.model] if several_models else []),
                _maybe(r.n_train, "{:,}"),
                f"{100 * r.accuracy:.1f} [{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}]",
                _maybe(None if r.macro_f1 is None else 100 * r.macro_f1, "{:.1f}"),
                _maybe(r.trainable_params, "{:,}"),
                _maybe(r.train_seconds, "{:.1f}"),
                *([r.device] if several_devices else []),
                p,
            ]
        )
    return header, cells


def title(report) -> str:
    kinds = {r.kind for r in report.rows}
    what = "Probe vs fine-tune" if kinds & {"probe", "finetune"} else "Models compared"
    return f"{what} on {report.data_name}"


def models_and_devices(report) -> str:
    models = sorted({r.model for r in report.rows} - {"-"}) or ["trained from scratch"]
    devices = sorted({r.device for r in report.rows})
    return f"model {', '.join(models)}; device {', '.join(devices)}"


def caption(report) -> str:
    return (
        f"Test set: {report.test_description}; {models_and_devices(report)}. Intervals: percentile bootstrap over test rows. McNemar p: exact "
        "paired test against the reference row (ref: the fine-tuned model, else the most accurate) of the same "
        "training size, with the rows only this one / only the reference gets right. * best of several settings "
        "picked on test accuracy (optimistic); other rows were chosen on validation or had one setting. "
        "Train rows: labelled rows used, validation rows included."
    )


def write_markdown(path: Path, report) -> Path:
    path = Path(path)
    header, cells = format_rows(report)
    lines = [
        MARKER,
        f"## {title(report)}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    lines += ["", caption(report), ""]
    for plot in report.plots:
        lines += [f"![{plot.stem}]({os.path.relpath(plot, path.parent)})", ""]
    lines += ["Runs: " + ", ".join(f"`{os.path.relpath(r, path.parent)}`" for r in report.runs), ""]
    ensure_writable_dir(path.parent)
    with atomic_file(path, "w") as stream:
        stream.write("\n".join(lines))
    return path


def check_targets(markdown: Path | None, plots_dir: Path | None) -> None:
    """Before any work: never write over a file that is not a report of mlx's own, nor into a run folder."""
    if markdown is not None:
        markdown = Path(markdown)
        if markdown.is_dir():
            raise StoreError(f"--markdown {markdown} is a folder; pass a file name such as {markdown / 'report.md'}")
        if markdown.exists() and not _is_own_report(markdown):
            what = "a run record" if markdown.name == RECORD_FILE else "not an mlx report"
            raise StoreError(
                f"--markdown {markdown} exists and is {what}; mlx never writes over it: choose another file"
            )
    for folder, option in ((plots_dir, "--out"), (markdown.parent if markdown else None, "--markdown")):
        if folder is not None and (Path(folder) / RECORD_FILE).exists():
            raise StoreError(
                f"{option} {markdown if option == '--markdown' else folder}: {folder} is a run folder and a report "
                "never writes into a run; choose another folder"
            )


def _is_own_report(path: Path) -> bool:
    """Written by ``write_markdown``: its marker first, or (before the marker) a title and the runs line."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read(1 << 16)
    except (OSError, UnicodeDecodeError):
        return False
    legacy = text.startswith("## ") and "\nRuns: `" in text
    return text.startswith(MARKER + "\n") or legacy


def _maybe(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
