"""The self-contained HTML viewer: one file, inline CSS, JS and data; no network; works from file://.

The weights travel once, as one byte per weight on a square-root scale (``q = round(255 *
sqrt(w))``, so a weight of 0.002, uniform attention over 512 tokens, is still 11 levels above
zero), deflated and base64-encoded; the page inflates them with the browser's DecompressionStream
and draws every view on canvases. 12 layers x 12 heads x 512 x 512 tokens are 37.7 M weights.
"""

import base64
import html
import zlib
from importlib import resources

import numpy as np

from common.htmlsafe import fill_template, script_json

ENCODING = "sqrt-uint8-deflate-base64"


def quantise(attentions: np.ndarray) -> np.ndarray:
    """(L, H, T, T) weights in 0..1 -> uint8 on the square-root scale; decode with (q / 255) ** 2."""
    return np.rint(np.sqrt(np.clip(attentions, 0.0, 1.0)) * 255).astype(np.uint8)


def dequantise(quantised: np.ndarray) -> np.ndarray:
    return (quantised.astype(np.float64) / 255) ** 2


def render_viewer(
    attentions: np.ndarray,
    tokens: list[str],
    rollout_cls: np.ndarray,
    model: str,
    source: str,
    note: str = "",
    layer: int = 0,
    head: int = 0,
) -> str:
    """The viewer page as a string. attentions: (L, H, T, T); rollout_cls: (T,); layer/head: 0-based, opened first."""
    n_layers, n_heads, n_tokens, _ = attentions.shape
    packed = zlib.compress(quantise(attentions).tobytes(), level=6)
    payload = {
        "model": model,
        "source": source,
        "note": note,
        "n_layers": n_layers,
        "n_heads": n_heads,
        "n_tokens": n_tokens,
        "tokens": list(tokens),
        "rollout": [round(float(v), 5) for v in rollout_cls],
        "initial": {"layer": layer, "head": head},
        "encoding": ENCODING,
        "weights": base64.b64encode(packed).decode("ascii"),
    }
    # a token such as "</s>" or a model named "m<!--<script>" must not end or bend the data block (common/htmlsafe.py)
    template = resources.files("attention").joinpath("viewer.html").read_text(encoding="utf-8")
    return fill_template(template, {"__TITLE__": html.escape(model), "__DATA__": script_json(payload)})
