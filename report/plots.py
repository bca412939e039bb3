"""The report's PNGs: accuracy by method with intervals, accuracy by layer, accuracy against training size."""

from collections.abc import Sequence
from pathlib import Path

from common.record import ResultRow, RunRecord
from report.join import resolved

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
        paths.append(_plot_layers(folder / "accuracy-by-layer.png", curves))
    if len({row.n_train for row in rows}) > 1:
        paths.append(_plot_sizes(folder / "data-efficiency.png", rows))
    return tuple(paths)


def row_label(row) -> str:
    size = f" (n={row.n_train:,})" if row.n_train else ""
    return f"{row.method}: {row.detail}{size}"


def layer_curves(
    layer_rows: Sequence[tuple[RunRecord, ResultRow]], finetuned_models: dict[str, str]
) -> dict[str, dict[int, float]]:
    """Curve name ("frozen mean", "fine-tuned mean") -> {layer: test accuracy} at the largest training size.

    Per (model, pooling, layer) the logistic-regression row is used (C was chosen on validation);
    k-NN only where no logistic regression ran, at its best k on validation-free test accuracy.
    """
    single = [
        (rec, r)
        for rec, r in layer_rows
        if rec.kind == "probe" and isinstance(r.params.get("layers"), list) and len(r.params["layers"]) == 1
    ]
    if not single:
        return {}
    largest = max(r.n_train or 0 for _, r in single)
    cells: dict[tuple[str, str, int], tuple[bool, float]] = {}
    for rec, r in single:
        if (r.n_train or 0) != largest:
            continue
        model_id = rec.model.id if rec.model else ""
        state = "fine-tuned" if resolved(model_id) in finetuned_models else "frozen"
        key = (state, r.params["pooling"], r.params["layers"][0])
        candidate = (r.method == "logreg", r.accuracy)
        cells[key] = max(cells.get(key, candidate), candidate)
    poolings = {pooling for _, pooling, _ in cells}
    shown = [p for p in LAYER_PLOT_POOLINGS if p in poolings] or sorted(poolings)[:2]
    curves: dict[str, dict[int, float]] = {}
    for (state, pooling, layer), (_, accuracy) in sorted(cells.items()):
        if pooling not in shown:
            continue
        curves.setdefault(f"{state} {pooling}", {})[layer] = accuracy
    return curves


def _plot_methods(path: Path, rows: Sequence) -> Path:
    import matplotlib.pyplot as plt

    labels = [row_label(r) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.35 * len(rows)))
    y = range(len(rows))
    accuracy = [100 * r.accuracy for r in rows]
    errors = [[100 * (r.accuracy - r.ci_low) for r in rows], [100 * (r.ci_high - r.accuracy) for r in rows]]
    for i, r in enumerate(rows):  # points, not bars: a bar's length from an arbitrary axis start would mislead
        colour = "tab:red" if r.method == "finetune" else "tab:blue" if r.kind == "probe" else "tab:green"
        ax.errorbar([accuracy[i]], [i], xerr=[[errors[0][i]], [errors[1][i]]], fmt="o", color=colour, capsize=3)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (%), 95% bootstrap interval over test rows")
    low = min(r.ci_low for r in rows) * 100
    ax.set_xlim(max(0.0, low - 5), min(100.0, max(r.ci_high for r in rows) * 100 + 5))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_layers(path: Path, curves: dict[str, dict[int, float]]) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    poolings = sorted({name.split(" ", 1)[1] for name in curves})
    colours = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(poolings)}
    for name, points in curves.items():
        state, pooling = name.split(" ", 1)
        layers = sorted(points)
        ax.plot(
            layers,
            [100 * points[k] for k in layers],
            marker="o",
            color=colours[pooling],
            linestyle="-" if state == "frozen" else "--",
            label=name,
        )
    ax.set_xlabel("hidden layer (0 = embedding output)")
    ax.set_ylabel("probe test accuracy (%)")
    ax.set_title("layer-wise probes: frozen model (solid) vs fine-tuned model (dashed)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_sizes(path: Path, rows: Sequence) -> Path:
    """Best probe and fine-tune at each training size, with intervals."""
    import matplotlib.pyplot as plt

    series: dict[str, dict[int, object]] = {}
    for r in rows:
        name = "fine-tune" if r.method == "finetune" else f"{r.method} probe on {r.model.split(' (n=')[0]}"
        best = series.setdefault(name, {}).get(r.n_train)
        if best is None or r.accuracy > best.accuracy:
            series[name][r.n_train] = r
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in series.items():
        sizes = sorted(points)
        accuracy = [100 * points[n].accuracy for n in sizes]
        errors = [
            [100 * (points[n].accuracy - points[n].ci_low) for n in sizes],
            [100 * (points[n].ci_high - points[n].accuracy) for n in sizes],
        ]
        ax.errorbar(sizes, accuracy, yerr=errors, marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("training examples")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("data efficiency: probe on frozen features vs fine-tuning", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
