"""PNG figures: learning curves, a confusion matrix, the effect of each sweep factor."""

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers or in tests

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.training import TrainHistory  # noqa: E402


def plot_learning_curves(histories: dict[str, TrainHistory], path: Path) -> Path:
    """Training loss and validation accuracy per epoch, one line per model."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for name, history in histories.items():
        epochs = [r.epoch for r in history.epochs]
        ax_loss.plot(epochs, [r.train_loss for r in history.epochs], label=name)
        ax_acc.plot(epochs, [r.val_accuracy for r in history.epochs], label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(confusion: np.ndarray, class_names: tuple[str, ...], title: str, path: Path) -> Path:
    """confusion: (C, C) int counts, rows = true class, columns = predicted."""
    fig, ax = plt.subplots(figsize=(6, 5.5))
    image = ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    threshold = confusion.max() / 2
    for (i, j), count in np.ndenumerate(confusion):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color="white" if count > threshold else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_factor_effects(rows: list[dict], factors: tuple[str, ...], path: Path) -> Path:
    """One panel per factor: mean and best validation accuracy over configurations at each level."""
    fig, axes = plt.subplots(1, len(factors), figsize=(3.6 * len(factors), 3.4), squeeze=False)
    for ax, factor in zip(axes[0], factors):
        by_level: dict = defaultdict(list)
        for row in rows:
            by_level[row[factor]].append(row["validation_accuracy"])
        levels = sorted(by_level, key=lambda v: (isinstance(v, str), v))
        positions = range(len(levels))
        ax.plot(positions, [np.mean(by_level[v]) for v in levels], "o-", label="mean")
        ax.plot(positions, [np.max(by_level[v]) for v in levels], "s--", label="best")
        ax.set_xticks(list(positions), [f"{v:g}" if isinstance(v, float) else str(v) for v in levels])
        ax.set(title=factor, xlabel=factor, ylabel="validation accuracy")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
