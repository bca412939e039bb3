"""PNG figures of attention (matplotlib, Agg backend: no display needed)."""

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_layer_head_heatmap(values: np.ndarray, path: Path, title: str) -> Path:
    """values: (L, H) -> a heatmap with layers as rows (1..L) and heads as columns (1..H), each cell labelled."""
    plt = _pyplot()
    n_layers, n_heads = values.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * n_heads, 1.0 + 0.45 * n_layers), dpi=110)
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(n_heads), [str(h + 1) for h in range(n_heads)])
    ax.set_yticks(range(n_layers), [str(layer + 1) for layer in range(n_layers)])
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=9)
    middle = (np.nanmax(values) + np.nanmin(values)) / 2
    for layer in range(n_layers):
        for head in range(n_heads):
            ax.text(
                head,
                layer,
                f"{values[layer, head]:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="black" if values[layer, head] > middle else "white",
            )
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def save_head_grid(attentions: np.ndarray, layers: list[int], heads: list[int], path: Path, title: str) -> Path:
    """attentions: (L, H, T, T) -> a grid of small heatmaps, one per chosen layer (rows) and head (columns); 0-based indices."""
    plt = _pyplot()
    size = 1.1 if len(heads) > 4 else 2.0
    width = max(5.0, 0.6 + size * len(heads))  # room for the title when one head is drawn
    fig, axes = plt.subplots(len(layers), len(heads), figsize=(width, 0.8 + size * len(layers)), dpi=100, squeeze=False)
    for row, layer in enumerate(layers):
        for column, head in enumerate(heads):
            ax = axes[row][column]
            ax.imshow(np.sqrt(attentions[layer, head]), cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"head {head + 1}", fontsize=7)
            if column == 0:
                ax.set_ylabel(f"layer {layer + 1}", fontsize=7)
    fig.suptitle(f"{title}\n(colour: square root of the weight)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def save_head_heatmap(weights: np.ndarray, tokens: list[str], path: Path, title: str) -> Path:
    """weights: (T, T), rows = query tokens attending to columns = key tokens, with token labels."""
    plt = _pyplot()
    n_tokens = len(tokens)
    inches = min(4 + 0.16 * n_tokens, 30)
    fig, ax = plt.subplots(figsize=(inches + 1.5, inches), dpi=100)
    image = ax.imshow(weights, cmap="Blues", vmin=0, vmax=max(float(weights.max()), 1e-6), interpolation="nearest")
    step = max(1, n_tokens // 150)  # beyond ~150 labels they overlap whatever the size
    ticks = list(range(0, n_tokens, step))
    fontsize = 8 if n_tokens <= 40 else 5
    ax.set_xticks(ticks, [tokens[i] for i in ticks], rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, [tokens[i] for i in ticks], fontsize=fontsize)
    ax.set_xlabel("attends to (key)")
    ax.set_ylabel("token (query)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def save_rollout_strip(importance: np.ndarray, tokens: list[str], path: Path, title: str) -> Path:
    """importance: (T,) rollout of [CLS] over the input tokens -> one row of coloured cells with labels."""
    plt = _pyplot()
    n_tokens = len(tokens)
    fig, ax = plt.subplots(figsize=(min(2 + 0.22 * n_tokens, 60), 1.9), dpi=100)
    ax.imshow(importance[None, :], cmap="Oranges", aspect="auto", interpolation="nearest")
    step = max(1, n_tokens // 200)
    ticks = list(range(0, n_tokens, step))
    ax.set_xticks(ticks, [tokens[i] for i in ticks], rotation=90, fontsize=7)
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
