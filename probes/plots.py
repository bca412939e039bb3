"""Probe results drawn: accuracy by layer (a table for the CLI, a PNG) and confusion matrices (PNGs)."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def accuracy_by_layer(
    results: Sequence, selections: Sequence[tuple[int, ...]]
) -> tuple[list[str], list[tuple[str, list[float | None]]]]:
    """Columns (single layers, in order) and rows (pooling + probe setting -> accuracy per layer).

    Only single-layer selections take part; rows keep every setting, so nothing here is chosen on test.
    """
    layers = [s[0] for s in selections if len(s) == 1]
    cells: dict[tuple[str, str, int], dict[int, float]] = {}
    for r in results:
        if len(r.layers) == 1 and r.layers[0] in layers:
            cells.setdefault((r.pooling, r.probe, r.params.get("k", 0)), {})[r.layers[0]] = r.accuracy
    rows = [
        (
            f"{pooling} {probe} {f'k={k}' if probe == 'knn' else '(C on validation)'}",
            [cell.get(layer) for layer in layers],
        )
        for (pooling, probe, k), cell in sorted(cells.items())
    ]
    return [str(layer) for layer in layers], rows


def write_plots(
    folder: Path, results: Sequence, selections: Sequence[tuple[int, ...]], label_names: Sequence[str]
) -> tuple[Path, ...]:
    """Confusion matrix PNG of the best result of each probe, and accuracy-by-layer PNG if several layers."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    paths = []
    for probe in dict.fromkeys(r.probe for r in results):
        best = max((r for r in results if r.probe == probe), key=lambda r: r.accuracy)
        paths.append(_plot_confusion(folder / f"confusion-{probe}.png", best, label_names))
    columns, rows = accuracy_by_layer(results, selections)
    if len(columns) > 1:
        paths.append(_plot_layers(folder / "accuracy-by-layer.png", columns, rows))
    return tuple(paths)


def _plot_confusion(path: Path, result, label_names: Sequence[str]) -> Path:
    import matplotlib.pyplot as plt

    matrix = np.array(result.confusion)  # (C, C) true x predicted
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(label_names), 1.0 + 0.6 * len(label_names)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    ax.set_yticks(range(len(label_names)), label_names)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            str(value),
            ha="center",
            va="center",
            color="white" if value > matrix.max() / 2 else "black",
            fontsize=8,
        )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(
        f"{result.probe} {result.pooling} layer {result.layer_label} {result.setting}\naccuracy {result.accuracy:.2%}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_layers(path: Path, columns: list[str], rows: list[tuple[str, list[float | None]]]) -> Path:
    """Two panels, one colour per pooling: logistic regression, and k-NN at its largest k."""
    import matplotlib.pyplot as plt

    x = [int(c) for c in columns]
    k_max = max((int(name.split("k=")[1]) for name, _ in rows if " knn k=" in name), default=None)
    panels = [("logistic regression (C on validation)", " logreg "), (f"k-NN, k={k_max}", f" knn k={k_max}")]
    panels = [(title, tag) for title, tag in panels if any(tag in name + " " for name, _ in rows)]
    poolings = list(dict.fromkeys(name.split(" ")[0] for name, _ in rows))
    colours = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(poolings)}
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), sharey=True, squeeze=False)
    for ax, (title, tag) in zip(axes[0], panels):
        for name, values in rows:
            if tag in name + " ":
                points = [(layer, 100 * v) for layer, v in zip(x, values) if v is not None]
                pooling = name.split(" ")[0]
                ax.plot(*zip(*points), marker="o", color=colours[pooling], label=pooling)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("hidden layer (0 = embedding output)")
        ax.set_xticks(x)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
