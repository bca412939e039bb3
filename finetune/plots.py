"""The learning curve of a fine-tuning run: training loss and validation accuracy against steps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_learning_curve(history, path: Path, title: str) -> Path:
    """Training loss (mean since the previous evaluation) and validation loss/accuracy at each evaluation."""
    steps = [e.step for e in history.evals]
    figure, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(steps, [e.train_loss for e in history.evals], marker="o", label="train")
    ax_loss.plot(steps, [e.val_loss for e in history.evals], marker="o", label="validation")
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend()
    ax_acc.plot(steps, [e.val_accuracy for e in history.evals], marker="o", color="tab:green")
    if history.best_step is not None:
        ax_acc.axvline(history.best_step, color="grey", linestyle="--", label=f"best (step {history.best_step})")
        ax_acc.legend()
    ax_acc.set_xlabel("optimizer step")
    ax_acc.set_ylabel("validation accuracy")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
