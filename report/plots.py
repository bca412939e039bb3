"""The report's PNGs: accuracy by method with intervals, accuracy by layer, accuracy against training size,
and accuracy against trainable parameters (probe, BitFit, LoRA, full fine-tuning)."""

from collections.abc import Sequence
from pathlib import Path

from common.record import ResultRow, RunRecord
from report.locate import resolved
from report.markdown import FINETUNE_METHODS, concatenated, method_label
from report.rows import ReportRow

LAYER_PLOT_POOLINGS = ("mean", "cls")  # two poolings keep the layer plot readable; the table has them all


def write_plots(
    folder: Path, rows: Sequence, layer_rows: Sequence[tuple[RunRecord, ResultRow]], finetuned_models: dict[str, str]
) -> tuple[Path, ...]:
    """Write every plot the runs allow into ``folder``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    paths = [_plot_methods(folder / "accuracy-by-method.png", rows)]
    curves = layer_curves(layer_rows, finetuned_models)
    if any(len(points) > 1 for points in curves.values()):
        paths.append(_plot_layers(folder / "accuracy-by-layer.png", curves, layer_plot_size(layer_rows)))
    if len({row.n_train for row in rows}) > 1:
        paths.append(_plot_sizes(folder / "data-efficiency.png", rows))
    points = parameter_points(rows)
    if len(points) > 1 and any(row_kind(r) != "frozen" for r in points):
        paths.append(_plot_parameters(folder / "accuracy-by-parameters.png", points))
    return tuple(paths)


# One colour per kind of model, the same in every plot: frozen and fine-tuned are never confused.
COLOURS = {
    "fine-tune": "tab:red",
    "LoRA": "tab:purple",
    "BitFit": "tab:brown",
    "frozen": "tab:blue",
    "fine-tuned": "tab:orange",
    "trained": "tab:green",
}
KIND_LABELS = {
    "fine-tune": "fine-tuned model (predicts itself)",
    "LoRA": "LoRA fine-tune (low-rank adapters, predicts itself)",
    "BitFit": "BitFit fine-tune (biases and LayerNorms, predicts itself)",
    "frozen": "probe on the frozen encoder",
    "fine-tuned": "probe on the fine-tuned encoder",
    "trained": "trained from scratch",
}


def row_label(row) -> str:
    """``logreg, frozen: mean L6 C=0.01 (n=300)``: the method, the encoder it read, its setting and training size."""
    size = f" (n={row.n_train:,})" if row.n_train else ""
    name = method_label(row)
    encoder = {"frozen": ", frozen", "fine-tuned": ", fine-tuned encoder"}.get(row.state, "")
    flag = " *" if row.chosen_on == "optimistic" else ""
    return f"{name}{encoder}: {row.detail}{size}{flag}" if row.detail else f"{name}{encoder}{size}{flag}"


def row_kind(row) -> str:
    """fine-tune, LoRA, BitFit (fine-tuning methods), frozen (a probe of the frozen encoder), fine-tuned (a probe
    of a fine-tuned encoder), trained (vision models)."""
    if row.kind == "finetune" and row.method in FINETUNE_METHODS:
        return method_label(row)
    return row.state or "trained"


def series_name(row) -> str:
    """The method a data-efficiency line follows across sizes: the same procedure, whatever setting it chose."""
    kind = row_kind(row)
    if kind in FINETUNE_METHODS.values():
        return kind
    where = {"frozen": "frozen encoder", "fine-tuned": "fine-tuned encoder"}.get(kind, "")
    layers = ", layers concatenated" if concatenated(row) else ""
    return f"{row.method} on the {where}{layers}" if where else row.method


def layer_plot_size(layer_rows: Sequence[tuple[RunRecord, ResultRow]]) -> int:
    """The training size the layer plot shows: the largest among the single-layer probe rows."""
    return max((r.n_train or 0 for rec, r in layer_rows if rec.kind == "probe"), default=0)


def layer_curves(
    layer_rows: Sequence[tuple[RunRecord, ResultRow]], finetuned_models: dict[str, str]
) -> dict[str, dict[int, float]]:
    """Curve name ("frozen mean", "fine-tuned mean") -> {layer: test accuracy} at the largest training size.

    Per (model, pooling, layer) the logistic-regression row is used (C was chosen on validation);
    k-NN only where no logistic regression ran, at its best k on validation. Returns also the size shown.
    """
    single = [
        (rec, r)
        for rec, r in layer_rows
        if rec.kind == "probe" and isinstance(r.params.get("layers"), list) and len(r.params["layers"]) == 1
    ]
    if not single:
        return {}
    largest = max(r.n_train or 0 for _, r in single)
    cells: dict[tuple[str, str, int], tuple[bool, float, float]] = {}
    for rec, r in single:
        if (r.n_train or 0) != largest:
            continue
        model_id = rec.model.id if rec.model else ""
        state = "fine-tuned" if resolved(model_id) in finetuned_models else "frozen"
        key = (state, r.params["pooling"], r.params["layers"][0])
        candidate = (r.method == "logreg", r.validation_accuracy or 0.0, r.accuracy or 0.0)  # layer rows are scored
        cells[key] = max(cells.get(key, candidate), candidate)
    poolings = {pooling for _, pooling, _ in cells}
    shown = [p for p in LAYER_PLOT_POOLINGS if p in poolings] or sorted(poolings)[:2]
    curves: dict[str, dict[int, float]] = {}
    for (state, pooling, layer), (_, _, accuracy) in sorted(cells.items()):
        if pooling not in shown:
            continue
        curves.setdefault(f"{state} {pooling}", {})[layer] = accuracy
    return curves


def _plot_methods(path: Path, rows: Sequence) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.35 * len(rows)))
    for i, r in enumerate(rows):  # points, not bars: a bar's length from an arbitrary axis start would mislead
        colour = COLOURS[row_kind(r)]
        ax.errorbar(
            [100 * r.accuracy],
            [i],
            xerr=[[100 * (r.accuracy - r.ci_low)], [100 * (r.ci_high - r.accuracy)]],
            fmt="o",
            color=colour,
            markerfacecolor="white" if r.chosen_on == "optimistic" else colour,
            capsize=3,
        )
    ax.set_yticks(list(range(len(rows))), [f"{i}. {row_label(r)}" for i, r in enumerate(rows, 1)], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (%), 95% bootstrap interval over test rows")
    low = min(r.ci_low for r in rows) * 100
    ax.set_xlim(max(0.0, low - 5), min(100.0, max(r.ci_high for r in rows) * 100 + 5))
    ax.grid(axis="x", alpha=0.3)
    kinds = list(dict.fromkeys(row_kind(r) for r in rows))
    handles = [Line2D([], [], marker="o", linestyle="", color=COLOURS[k], label=KIND_LABELS[k]) for k in kinds]
    if any(r.chosen_on == "optimistic" for r in rows):
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                linestyle="",
                color="grey",
                markerfacecolor="white",
                label="* not the validation choice",
            )
        )
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    ax.set_title("Test accuracy of each method (settings chosen on validation)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_layers(path: Path, curves: dict[str, dict[int, float]], n_train: int) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    poolings = sorted({name.split(" ", 1)[1] for name in curves})
    markers = {p: m for p, m in zip(poolings, "osD^v")}
    for name, points in curves.items():
        state, pooling = name.split(" ", 1)
        layers = sorted(points)
        ax.plot(
            layers,
            [100 * points[k] for k in layers],
            marker=markers.get(pooling, "o"),
            color=COLOURS[state],
            linestyle="-" if state == "frozen" else "--",
            label=f"{'frozen encoder' if state == 'frozen' else 'fine-tuned encoder'}, {pooling} pooling",
        )
    ax.set_xlabel("hidden layer (0 = embedding output)")
    ax.set_ylabel("probe test accuracy (%)")
    ax.set_title(
        f"Probe accuracy by layer, {n_train:,} training rows: frozen (solid) vs fine-tuned encoder (dashed)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def size_series(rows: Sequence[ReportRow]) -> dict[str, dict[int, ReportRow]]:
    """Method -> {training size: its row}: rows chosen on validation only, the same method joined across sizes."""
    series: dict[str, dict[int, ReportRow]] = {}
    for r in rows:
        if r.chosen_on == "optimistic" or not r.n_train:
            continue
        points = series.setdefault(series_name(r), {})
        held = points.get(r.n_train)
        # two runs of one method at one size (rare): the one validation prefers, never the test score
        if held is None or (r.validation_accuracy or 0.0) > (held.validation_accuracy or 0.0):
            points[r.n_train] = r
    return series


def _plot_sizes(path: Path, rows: Sequence[ReportRow]) -> Path:
    """Each method at each training size, with intervals; one line per method."""
    import matplotlib.pyplot as plt

    styles = {"logreg": "-", "knn": ":"}
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for name, points in size_series(rows).items():
        sizes = sorted(points)
        first = points[sizes[0]]
        accuracy = [100 * points[n].accuracy for n in sizes]
        errors = [
            [100 * (points[n].accuracy - points[n].ci_low) for n in sizes],
            [100 * (points[n].ci_high - points[n].accuracy) for n in sizes],
        ]
        ax.errorbar(
            sizes,
            accuracy,
            yerr=errors,
            marker="s" if "concatenated" in name else "o",
            capsize=3,
            color=COLOURS[row_kind(first)],
            linestyle=styles.get(first.method, "-"),
            label=name,
        )
    ax.set_xscale("log")
    ax.set_xlabel("labelled training rows (validation rows included)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Data efficiency: each method across training sizes (settings chosen on validation)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def parameter_points(rows: Sequence[ReportRow]) -> list[ReportRow]:
    """At the largest training size: the frozen-encoder probe and each fine-tuning method, one row each
    (rows chosen on validation only; where one kind has several, the one validation prefers)."""
    chosen = [r for r in rows if r.chosen_on != "optimistic" and r.trainable_params and r.n_train]
    if not chosen:
        return []
    largest = max(r.n_train or 0 for r in chosen)
    best: dict[str, ReportRow] = {}
    for r in chosen:
        kind = row_kind(r)
        if r.n_train != largest or kind not in ("frozen", *FINETUNE_METHODS.values()):
            continue
        held = best.get(kind)
        if held is None or (r.validation_accuracy or 0.0) > (held.validation_accuracy or 0.0):
            best[kind] = r
    return sorted(best.values(), key=lambda r: r.trainable_params or 0)


PARAMETER_LABELS = {"frozen": "probe on the frozen encoder ({method})", "fine-tune": "full fine-tune"}


def _plot_parameters(path: Path, points: Sequence) -> Path:
    """Test accuracy against trainable parameters (log scale): the cost axis of probe -> BitFit -> LoRA -> full."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for r in points:
        kind = row_kind(r)
        ax.errorbar(
            [r.trainable_params],
            [100 * r.accuracy],
            yerr=[[100 * (r.accuracy - r.ci_low)], [100 * (r.ci_high - r.accuracy)]],
            fmt="o",
            capsize=3,
            color=COLOURS[kind],
            label=f"{PARAMETER_LABELS.get(kind, kind).format(method=r.method)}: {r.trainable_params:,} parameters",
        )
    ax.plot([r.trainable_params for r in points], [100 * r.accuracy for r in points], color="grey", alpha=0.4)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale; the classification head included)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Accuracy against trainable parameters, {points[0].n_train:,} training rows", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
