"""The HTML viewer in a real browser: headless Chromium runs its script and draws every view.

Skipped, saying why, when no Chromium is installed (`.ci/run` installs the Debian package).
"""

import re
import shutil
import subprocess
import time

import numpy as np
import pytest

from attention.html import render_viewer
from attention.rollout import attention_rollout

CHROMIUM = next(
    (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (apt-get install chromium); the viewer is not tested in a browser",
)


def _attentions(n_layers: int, n_heads: int, n_tokens: int, seed: int = 0) -> np.ndarray:
    """Peaky rows like a trained model's: a softmax of scaled noise plus a diagonal and a [CLS] column."""
    rng = np.random.default_rng(seed)
    logits = 3 * rng.standard_normal((n_layers, n_heads, n_tokens, n_tokens)).astype(np.float32)
    logits[..., 0] += 3
    logits += 4 * np.eye(n_tokens, dtype=np.float32)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def _page(tmp_path, n_layers: int, n_heads: int, n_tokens: int, model: str = "test-model", middle: tuple = ()):
    attentions = _attentions(n_layers, n_heads, n_tokens)
    words = [*middle, *(f"w{i}" for i in range(len(middle) + 1, n_tokens - 2))]
    tokens = ["[CLS]", *words, "</s>", "[SEP]"]  # "</s>" must not end the script
    page = tmp_path / "attention.html"
    page.write_text(render_viewer(attentions, tokens, attention_rollout(attentions)[0], model, model, layer=1, head=2))
    return page


def _chromium(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=30000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def _console_errors(stderr: str) -> list[str]:
    return [
        line for line in stderr.splitlines() if "CONSOLE" in line and re.search(r"error|uncaught", line, re.IGNORECASE)
    ]


def test_viewer_script_runs_and_draws_every_view(tmp_path):
    page = _page(tmp_path, n_layers=3, n_heads=4, n_tokens=24)
    dom = _chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-status="drawn"' in dom.stdout, re.findall(r'<div id="errors">[^<]*', dom.stdout)
    assert re.search(r'<div id="errors">\s*</div>', dom.stdout)
    assert "drawn: rollout, head view, 12 thumbnails" in dom.stdout
    assert dom.stdout.count('class="tok') >= 2 * 24  # rollout strip and head-view tokens
    assert _console_errors(dom.stderr) == []

    shot = tmp_path / "shot.png"
    run = _chromium("--window-size=1200,1400", f"--screenshot={shot}", page.as_uri())
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]  # (H, W, 3) floats 0..1
    blue = (pixels[..., 2] - pixels[..., 0] > 0.15).sum()  # heatmap and thumbnail cells
    orange = (pixels[..., 0] - pixels[..., 2] > 0.3).sum()  # the rollout strip
    assert blue > 5000 and orange > 100, (blue, orange)


HOSTILE = ("m<!--<script>", "</script><script>x()</script>", "a\u2028b", "__DATA__", "<!-- -->", "&amp; &lt;")


@pytest.mark.parametrize("model", HOSTILE)
def test_a_hostile_model_name_or_token_does_not_stop_the_viewer(tmp_path, model):
    """Issue 20 failure 8: `--model 'm<!--<script>'` left the viewer at "loading..."."""
    page = _page(tmp_path, n_layers=1, n_heads=2, n_tokens=12, model=model, middle=(model,))
    dom = _chromium("--dump-dom", page.as_uri())
    assert 'data-status="drawn"' in dom.stdout, (re.findall(r'<div id="errors">[^<]*', dom.stdout), dom.stderr[-2000:])
    assert _console_errors(dom.stderr) == []


@pytest.mark.slow
def test_viewer_stays_responsive_at_512_tokens_and_12_by_12_heads(tmp_path):
    page = _page(tmp_path, n_layers=12, n_heads=12, n_tokens=512)
    size_mb = page.stat().st_size / 1e6
    start = time.perf_counter()
    dom = _chromium("--dump-dom", page.as_uri(), timeout=180)
    seconds = time.perf_counter() - start
    assert 'data-status="drawn"' in dom.stdout, (re.findall(r'<div id="errors">[^<]*', dom.stdout), dom.stderr[-2000:])
    assert "144 thumbnails" in dom.stdout
    assert _console_errors(dom.stderr) == []
    drawn_ms = int(re.search(r"\((\d+) ms after the page opened\)", dom.stdout).group(1))
    print(
        f"512 tokens x 144 heads: {size_mb:.1f} MB page, drawn {drawn_ms} ms after opening ({seconds:.1f} s of headless Chromium in all)"
    )
