"""PNG figures: learning curves, a confusion matrix, the effect of each sweep factor."""

from __future__ import annotations

import logging
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers or in tests

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training.history import TrainHistory  # noqa: E402

if TYPE_CHECKING:  # annotations only: vision.experiment imports the models
    from vision.data import ImageSet
    from vision.experiment import TestScores

log = logging.getLogger(__name__)

# Font files whose names suggest Japanese coverage; each is still checked for a hiragana glyph.
_CJK_NAME_HINTS = ("cjk", "jp", "japan", "gothic", "mincho", "ipa", "takao", "hiragino", "droidsansfallback", "unifont")
_PROBE_GLYPH = ord("す")


def plot_learning_curves(histories: dict[str, TrainHistory], path: Path) -> Path:
    """Training loss and validation accuracy per epoch, one line per model."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for name, history in histories.items():
        epochs = [r.epoch for r in history.epochs]
        ax_loss.plot(epochs, [r.train_loss for r in history.epochs], label=name)
        ax_acc.plot(epochs, [r.val_accuracy for r in history.epochs], label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy")
    if not any(np.isfinite(r.val_accuracy) for h in histories.values() for r in h.epochs):
        ax_acc.set_title("Validation accuracy: none (trained on every training image)")
        ax_acc.set_yticks([])
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
    _draw_confusion(ax=ax, confusion=confusion, class_names=class_names, title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _draw_confusion(ax, confusion: np.ndarray, class_names: tuple[str, ...], title: str) -> None:
    image = ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    threshold = confusion.max() / 2
    for (i, j), count in np.ndenumerate(confusion):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color="white" if count > threshold else "black")
    ax.figure.colorbar(image, ax=ax, fraction=0.046)


@lru_cache(maxsize=1)
def japanese_font() -> str | None:
    """The family name of an installed font with hiragana glyphs, or None (then labels are romaji only)."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    def has_hiragana(path: str) -> bool:
        try:
            return _PROBE_GLYPH in FT2Font(path).get_charmap()
        except (OSError, RuntimeError, ValueError):
            return False

    known = {entry.fname for entry in font_manager.fontManager.ttflist}
    # Also fonts installed after matplotlib built its font cache; regular weights before bold ones.
    candidates = [
        p
        for p in known | set(font_manager.findSystemFonts())
        if any(hint in Path(p).name.lower() for hint in _CJK_NAME_HINTS)
    ]
    candidates.sort(
        key=lambda p: (any(w in Path(p).name.lower() for w in ("bold", "black", "heavy", "light", "thin")), p)
    )
    for path in candidates:
        if has_hiragana(path):
            if path not in known:
                font_manager.fontManager.addfont(path)
            return font_manager.FontProperties(fname=path).get_name()
    return None


def class_labels(class_names: tuple[str, ...], glyphs: tuple[str, ...] | None) -> tuple[str, ...]:
    """'す su' per class when a font can draw the glyphs, else the romaji alone (and a log line says so)."""
    if glyphs is None:
        return class_names
    if japanese_font() is None:
        log.warning(
            "no font with Japanese glyphs found (fc-list :lang=ja lists none): the error gallery names classes by romaji only; install one, e.g. apt-get install fonts-noto-cjk"
        )
        return class_names
    return tuple(f"{glyph} {name}" for glyph, name in zip(glyphs, class_names))


def confused_pairs(confusion: np.ndarray, n_pairs: int) -> list[tuple[int, int, int]]:
    """The ``n_pairs`` most frequent (true, predicted, count) errors, most frequent first; ties by class order."""
    errors = [
        (int(confusion[t, p]), t, p)
        for t in range(len(confusion))
        for p in range(len(confusion))
        if t != p and confusion[t, p] > 0
    ]
    errors.sort(key=lambda e: (-e[0], e[1], e[2]))
    return [(t, p, count) for count, t, p in errors[:n_pairs]]


def plot_error_gallery(
    test: ImageSet,
    scores: TestScores,
    glyphs: tuple[str, ...] | None,
    title: str,
    path: Path,
    n_pairs: int = 8,
    n_examples: int = 10,
) -> Path:
    """The confusion matrix beside a grid of misclassified images, one row per most-confused class pair.

    test.images: (N, 28, 28) uint8; test.labels, scores.predicted: (N,) int. Each row shows up to
    ``n_examples`` images of true class t predicted as p, in test-set order, titled "t → p (count)".
    """
    images, labels, predicted = test.images, test.labels, scores.predicted
    confusion, class_names = scores.confusion, scores.class_names
    names = class_labels(class_names, glyphs)
    font = japanese_font() if names != class_names else None
    pairs = confused_pairs(confusion, n_pairs)
    n_rows = max(1, len(pairs))
    fig = plt.figure(figsize=(7.4 + 1.0 * n_examples, max(5.5, 1.15 * n_rows + 0.8)))
    grid = fig.add_gridspec(
        n_rows,
        n_examples + 2,
        width_ratios=[6.5, 0.9] + [1.0] * n_examples,
        hspace=0.45,
        wspace=0.08,
        left=0.05,
        right=0.98,
        top=0.9,
        bottom=0.05,
    )
    with plt.rc_context({"font.family": [font, "DejaVu Sans"]} if font else {}):
        _draw_confusion(
            ax=fig.add_subplot(grid[:, 0]), confusion=confusion, class_names=names, title="confusion (rows: true)"
        )
        for row, (true, guess, count) in enumerate(pairs):
            rows = np.flatnonzero((labels == true) & (predicted == guess))[:n_examples]
            for column in range(n_examples):
                ax = fig.add_subplot(grid[row, column + 2])
                ax.set_axis_off()
                if column < len(rows):
                    ax.imshow(images[rows[column]], cmap="gray_r", vmin=0, vmax=255)
            fig.text(
                fig.axes[-n_examples].get_position().x0,
                fig.axes[-n_examples].get_position().y1 + 0.004,
                f"true {names[true]}  →  predicted {names[guess]}   ({count} test images)",
                fontsize=10,
                va="bottom",
            )
        if not pairs:
            fig.text(0.7, 0.5, "no misclassified images", ha="center")
        fig.suptitle(title)
        fig.savefig(path, dpi=100)
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
