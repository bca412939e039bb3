"""The report's cells, shared by the terminal tables, Markdown and HTML: the table and the plots.

In a terminal the report is two narrow tables (accuracy, then cost) keyed by a row number, and a
legend that spells each row out, so that it fits 80 columns without cutting a number. Markdown and
HTML have room for one wide table.
"""

import os
import re
from pathlib import Path

from common.cost import format_bytes
from common.errors import StoreError
from common.paths import ensure_writable_dir
from common.record import RECORD_FILE
from common.writes import atomic_file

# The first line of every Markdown report: a file that starts so may be replaced by the next report.
MARKER = "<!-- written by `mlx report`; the next report to this file replaces it -->"
HTML_MARKER = "<!DOCTYPE html><!-- written by `mlx report --html`; the next report to this file replaces it -->"

OPTIMISTIC_MARK = "*"
EDGE_MARK = "!"
BEST_FROZEN_MARK = "^"
# Fine-tuning methods as a run record names their rows (finetune.record.row_name) -> how the report says them.
FINETUNE_METHODS = {"finetune": "fine-tune", "lora": "LoRA", "bitfit": "BitFit"}


def method_label(row) -> str:
    """``fine-tune``, ``LoRA``, ``BitFit`` for the fine-tuning methods; a probe's or model's own name else."""
    return FINETUNE_METHODS.get(row.method, row.method) if row.kind == "finetune" else row.method


def short_label(row) -> str:
    """A few characters naming the method: ``fine-tune``, ``logreg``, ``logreg cat`` (layers concatenated),
    ``knn FT`` (a probe of the fine-tuned encoder); the legend spells the row out."""
    name = method_label(row)
    if concatenated(row):
        name += " cat"
    if row.state == "fine-tuned":
        name += " FT"
    return name + marks(row)


def concatenated(row) -> bool:
    """A probe of several layers' vectors side by side (``mean L4,5,6 ...``)."""
    return re.search(r"\bL\d+,\d", row.detail or "") is not None


def marks(row) -> str:
    return (
        (f" {BEST_FROZEN_MARK}" if row.best_frozen else "")
        + (f" {EDGE_MARK}" if row.c_on_grid_edge else "")
        + (f" {OPTIMISTIC_MARK}" if row.chosen_on == "optimistic" else "")
    )


def describe_row(row) -> str:
    """The whole row in words: method, setting, model and how its setting was chosen."""
    if row.kind == "finetune":
        what = "fine-tune" if row.method == "finetune" else f"{method_label(row)} fine-tune"
    else:
        what = f"{row.method} probe"
    detail = f" {row.detail}" if row.detail else ""
    chosen = {
        "validation": "chosen on validation",
        "optimistic": "not the validation choice (optimistic if picked by test)",
        "-": "one setting",
    }.get(row.chosen_on, row.chosen_on)
    if row.chosen_on == "-" and row.validation_accuracy is not None:  # e.g. C of the one layer choice, on validation
        chosen = "chosen on validation"
    if row.kind == "finetune":
        chosen = "checkpoint chosen on validation" if row.validation_accuracy is not None else "last checkpoint"
    if row.validation_accuracy is not None:
        chosen += f", validation {100 * row.validation_accuracy:.1f}%"
    model = f" on {row.model}" if row.model not in ("", "-") else ""
    return f"{what}{detail}{model} ({chosen})"


def p_cell(row) -> str:
    if row.is_reference:
        return "ref"
    if row.p_value is None:
        return "-"
    return f"{row.p_value:.2g} ({row.only_this}/{row.only_reference})"


def accuracy_cells(report) -> tuple[list[str], list[list[str]]]:
    header = ["#", "method", "n train", "acc % [95% CI]", "F1 %", "McNemar p"]
    cells = [
        [
            str(i),
            short_label(r),
            _maybe(r.n_train, "{:,}"),
            _accuracy(r),
            _maybe(None if r.macro_f1 is None else 100 * r.macro_f1, "{:.1f}"),
            p_cell(r),
        ]
        for i, r in enumerate(report.rows, 1)
    ]
    return header, cells


def cost_cells(report) -> tuple[list[str], list[list[str]]]:
    several_devices = len({r.device for r in report.rows}) > 1
    header = ["#", "method", "trainable", "train s", "peak mem", "test/s", *(["device"] if several_devices else [])]
    cells = [
        [
            str(i),
            short_label(r),
            _maybe(r.trainable_params, "{:,}"),
            _maybe(r.train_seconds, "{:.1f}"),
            format_bytes(r.peak_memory_bytes),
            _maybe(r.predict_per_second, "{:,.0f}"),
            *([r.device] if several_devices else []),
        ]
        for i, r in enumerate(report.rows, 1)
    ]
    return header, cells


def format_rows(report) -> tuple[list[str], list[list[str]]]:
    """One wide table (Markdown, HTML): every column, the method spelled out; model and device when they vary."""
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
        "peak memory",
        "test/s",
        *(["device"] if several_devices else []),
        "McNemar p",
    ]
    cells = []
    for r in report.rows:
        label = method_label(r)
        cells.append(
            [
                f"{label} {r.detail}".strip() + marks(r),
                *([r.model] if several_models else []),
                _maybe(r.n_train, "{:,}"),
                _accuracy(r),
                _maybe(None if r.macro_f1 is None else 100 * r.macro_f1, "{:.1f}"),
                _maybe(r.trainable_params, "{:,}"),
                _maybe(r.train_seconds, "{:.1f}"),
                format_bytes(r.peak_memory_bytes),
                _maybe(r.predict_per_second, "{:,.0f}"),
                *([r.device] if several_devices else []),
                p_cell(r),
            ]
        )
    return header, cells


def legend(report) -> list[tuple[str, str]]:
    """(row number, the row in words) for the terminal tables."""
    return [(str(i), describe_row(r)) for i, r in enumerate(report.rows, 1)]


def title(report) -> str:
    kinds = {r.kind for r in report.rows}
    what = "Probe vs fine-tune" if kinds & {"probe", "finetune"} else "Models compared"
    return f"{what} on {report.data_name}"


def models_and_devices(report) -> str:
    models = sorted({r.model for r in report.rows} - {"-"}) or ["trained from scratch"]
    devices = sorted({f"{r.device} ({r.device_name})" if r.device_name else r.device for r in report.rows})
    return f"model {', '.join(models)}; device {', '.join(devices)}"


def caption(report) -> str:
    return (
        f"Test set: {report.test_description}; {models_and_devices(report)}. Every setting (k, C, pooling, layer, "
        "the fine-tune's checkpoint) was chosen on validation rows, never on test. Intervals: percentile bootstrap "
        "over test rows. McNemar p: exact paired test against the reference row (ref: the fine-tuned model, else "
        "the row validation prefers) of the same training size, with the rows only this one / only the reference gets "
        f"right. {BEST_FROZEN_MARK} the probe of the frozen encoder that validation prefers at its training size "
        f"(the probe a fine-tune must beat). {EDGE_MARK} C on the edge of its grid even after extending it. {OPTIMISTIC_MARK} not the "
        "validation choice (--all-rows): choosing it by its test accuracy would be optimistic. Train rows: labelled "
        "rows used, validation rows included. FT: a probe of the fine-tuned encoder. Train s: fitting (probes: "
        "plus encoding the training texts). Peak mem: while training (process RSS on CPU, max allocated on CUDA; "
        "probes: the encoder pass or the fit, the larger). Test/s: test texts per second through the model that "
        "predicts (frozen encoder plus probe, or the fine-tuned model). LoRA, BitFit: fine-tuning only low-rank "
        "adapters, or only the biases and LayerNorms (mlx finetune --method), the head included."
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
    lines += [f"- {note}" for note in report.notes] + ([""] if report.notes else [])
    for plot in report.plots:
        lines += [f"![{plot.stem}]({os.path.relpath(plot, path.parent)})", ""]
    lines += ["Runs: " + ", ".join(f"`{os.path.relpath(r, path.parent)}`" for r in report.runs), ""]
    ensure_writable_dir(path.parent)
    with atomic_file(path, "w") as stream:
        stream.write("\n".join(lines))
    return path


def check_targets(markdown: Path | None, plots_dir: Path | None, html: Path | None = None) -> None:
    """Before any work: never write over a file that is not a report of mlx's own, nor into a run folder."""
    if html is not None:
        html = Path(html)
        if html.is_dir():
            raise StoreError(f"--html {html} is a folder; pass a file name such as {html / 'report.html'}")
        if html.exists() and not _is_own_report(html, HTML_MARKER):
            raise StoreError(
                f"--html {html} exists and is not an mlx report; mlx never writes over it: choose another file"
            )
        if (html.parent / RECORD_FILE).exists():
            raise StoreError(
                f"--html {html}: {html.parent} is a run folder and a report never writes into a run; choose another folder"
            )
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


def _is_own_report(path: Path, marker: str = MARKER) -> bool:
    """Written by ``write_markdown`` (or ``report.html``): its marker first, or (Markdown from before the
    marker) a title and the runs line."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read(1 << 16)
    except (OSError, UnicodeDecodeError):
        return False
    legacy = marker == MARKER and text.startswith("## ") and "\nRuns: `" in text
    return text.startswith(marker + "\n") or legacy


def _accuracy(r) -> str:
    return f"{100 * r.accuracy:.1f} [{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}]"


def _maybe(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
