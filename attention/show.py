"""`mlx attention show`: one text's attention as PNGs and a self-contained HTML viewer.

plan = prepare_show(config) picks the text (given, or a data set row), loads the model with eager
attention and checks layer, head and output folder; run_show(plan) runs one forward pass in fp32
and writes, into a run folder that appears only when complete:

- attention_grid.png: a layer x head grid of small heatmaps (the chosen layers and heads),
- attention_head.png: the chosen head (or the mean of a layer's heads) with token labels,
- rollout.png: the attention rollout of [CLS] as a token-importance strip,
- attention.html: the viewer (head view with hover, model view, rollout strip).
"""

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attention.inputs import RunFacts, TextSource, load_texts, output_dir, write_run_record
from attention.model import (
    AttentionModel,
    TokenisedTexts,
    load_attention_model,
    resolve_max_length,
    tokenise,
)
from attention.rollout import attention_rollout
from common import ConfigError, DataError, record
from common.devices import Device
from common.progress import ProgressCallback, no_progress
from common.writes import staged_run_dir, write_json
from text.defaults import DEFAULT_MODEL
from training.devices import resolve_device

HTML_FILE = "attention.html"


@dataclass(frozen=True)
class ShowConfig:
    model: str = DEFAULT_MODEL
    text: str | None = None
    source: TextSource | None = None  # with ``row``: the text is that row of the split
    row: int | None = None
    layer: int | None = None  # 1..L; None: all (the large heatmap shows the last)
    head: int | None = None  # 1..H; None: all (the large heatmap shows the mean of the layer's heads)
    max_length: int | None = None  # None: 512, or the model's limit if lower
    device: Device = Device.AUTO
    out: Path | None = None


@dataclass(frozen=True)
class ShowPlan:
    config: ShowConfig
    text: str
    where: str  # "--text" or "ag_news test row 12"
    model: AttentionModel
    tokens: TokenisedTexts
    max_length: int
    device: str
    run_dir: Path
    notes: tuple[str, ...]

    @property
    def truncated(self) -> bool:
        return self.tokens.n_truncated > 0

    def truncation_message(self) -> str:
        return f"the text has {self.tokens.n_full[0]} tokens; only the first {self.max_length} are shown (truncated to the model's limit or --max-length)"

    def summary(self) -> dict[str, str]:
        n_tokens = len(self.tokens.ids[0])
        return {
            "model": f"{self.config.model} ({self.model.loaded.revision}): {self.model.n_layers} layers x {self.model.n_heads} heads, eager attention",
            "text": f"{self.where}: {n_tokens} tokens"
            + (f" (truncated from {self.tokens.n_full[0]})" if self.truncated else ""),
            "layer / head": f"{self.config.layer or 'all'} / {self.config.head or 'all'}",
            "device": self.device,
            "output": str(self.run_dir),
        }


@dataclass(frozen=True)
class ShowResult:
    run_dir: Path
    html_path: Path
    html_bytes: int
    pngs: tuple[Path, ...]
    n_tokens: int
    truncated: bool
    seconds: float


def prepare_show(config: ShowConfig) -> ShowPlan:
    """Check the text, the model, the layer and head and the output folder before any work."""
    text, where, notes = _choose_text(config)
    run_dir = output_dir(config.out, "show")
    device = str(resolve_device(config.device))
    model = load_attention_model(config.model, device)
    check_index(option="--layer", value=config.layer, count=model.n_layers, what=f"model {config.model!r} has layers")
    check_index(option="--head", value=config.head, count=model.n_heads, what=f"model {config.model!r} has heads")
    max_length, note = resolve_max_length(model, config.max_length)
    tokens = tokenise(model.tokenizer, [text], max_length, count_every_token=True)
    if note:
        notes.append(note)
    return ShowPlan(
        config=config,
        text=text,
        where=where,
        model=model,
        tokens=tokens,
        max_length=max_length,
        device=device,
        run_dir=run_dir,
        notes=tuple(notes),
    )


def _choose_text(config: ShowConfig) -> tuple[str, str, list[str]]:
    if (config.text is None) == (config.source is None):
        raise ConfigError(
            'give either --text "..." or --dataset D (with --split S and --row N), not both and not neither'
        )
    if config.text is not None:
        if config.row is not None:
            raise ConfigError("--row picks a row of --dataset; with --text leave it out")
        if not config.text.strip():
            raise ConfigError("--text is empty; give a text with at least one word")
        return config.text, "--text", []
    if config.row is None:
        raise ConfigError("--dataset needs --row N: the row of the split to show (0-based)")
    assert config.source is not None, "checked above: exactly one of text and source"
    texts = load_texts(config.source)
    split = texts.split
    if config.row < 0:
        raise ConfigError(
            f"--row {config.row} is negative; rows count from 0 (0..{len(split) - 1} in {texts.dataset_name} split {split.name})"
        )
    if config.row >= len(split):
        raise DataError(
            f"--row {config.row} is past the end of {texts.dataset_name} split {split.name}, which has rows 0..{len(split) - 1}"
        )
    return split.texts[config.row], f"{texts.dataset_name} {split.name} row {config.row}", list(texts.notes)


def check_index(option: str, value: int | None, count: int, what: str) -> None:
    """A 1-based layer or head number must be in 1..count (None means all)."""
    if value is not None and not 1 <= value <= count:
        raise ConfigError(f"{option} {value} is out of range: {what} 1..{count} (or 'all')")


def run_show(plan: ShowPlan, progress: ProgressCallback = no_progress) -> ShowResult:
    import torch

    started_at, start = record.now(), time.perf_counter()
    ids = torch.tensor([plan.tokens.ids[0]])
    weights = plan.model.attentions(ids, torch.ones_like(ids))  # L x (1, H, T, T)
    attentions = torch.stack([w[0] for w in weights]).cpu().numpy()  # (L, H, T, T)
    progress("attention", 1, 3)
    tokens = plan.model.tokenizer.convert_ids_to_tokens(list(plan.tokens.ids[0]))
    rollout = attention_rollout(attentions)[0]  # (T,): how much each input token flows into [CLS]
    with staged_run_dir(plan.run_dir) as staging:
        pngs = _write_pngs(plan=plan, attentions=attentions, tokens=tokens, rollout=rollout, folder=staging)
        progress("attention", 2, 3)
        html_bytes = _write_html(
            plan=plan, attentions=attentions, tokens=tokens, rollout=rollout, path=staging / HTML_FILE
        )
        write_json(staging / "show.json", _document(plan, tokens, rollout))
        text_ref = record.DataRef(plan.where, hashlib.sha256(plan.text.encode("utf-8")).hexdigest()[:16])
        facts = RunFacts(
            command="show",
            config=plan.config,
            model=plan.model,
            data=text_ref,
            device=plan.device,
            max_length=plan.max_length,
        )
        artifacts = (HTML_FILE, *(p.name for p in pngs), "show.json")
        write_run_record(staging, facts, started_at=started_at, artifacts=artifacts, notes=plan.notes)
    progress("attention", 3, 3)
    final_pngs = tuple(plan.run_dir / p.name for p in pngs)
    return ShowResult(
        run_dir=plan.run_dir,
        html_path=plan.run_dir / HTML_FILE,
        html_bytes=html_bytes,
        pngs=final_pngs,
        n_tokens=len(tokens),
        truncated=plan.truncated,
        seconds=time.perf_counter() - start,
    )


def _large_head(plan: ShowPlan, attentions: np.ndarray) -> tuple[np.ndarray, int, int | None, str]:
    """The heatmap to draw large: the chosen head, or the mean of the chosen (default: last) layer's heads."""
    layer = (plan.config.layer or plan.model.n_layers) - 1
    if plan.config.head is None:
        return attentions[layer].mean(axis=0), layer, None, f"layer {layer + 1}, mean of {plan.model.n_heads} heads"
    head = plan.config.head - 1
    return attentions[layer, head], layer, head, f"layer {layer + 1}, head {head + 1}"


def _write_pngs(
    plan: ShowPlan, attentions: np.ndarray, tokens: list[str], rollout: np.ndarray, folder: Path
) -> list[Path]:
    from attention.plots import save_head_grid, save_head_heatmap, save_rollout_strip

    layers = [plan.config.layer - 1] if plan.config.layer else list(range(plan.model.n_layers))
    heads = [plan.config.head - 1] if plan.config.head else list(range(plan.model.n_heads))
    weights, _, _, label = _large_head(plan, attentions)
    return [
        save_head_grid(
            attentions=attentions,
            layers=layers,
            heads=heads,
            path=folder / "attention_grid.png",
            title=f"{plan.config.model}: {plan.where}",
        ),
        save_head_heatmap(
            weights=weights, tokens=tokens, path=folder / "attention_head.png", title=f"{plan.config.model}: {label}"
        ),
        save_rollout_strip(
            importance=rollout,
            tokens=tokens,
            path=folder / "rollout.png",
            title=f"{plan.config.model}: attention rollout of [CLS]",
        ),
    ]


def _write_html(plan: ShowPlan, attentions: np.ndarray, tokens: list[str], rollout: np.ndarray, path: Path) -> int:
    from attention.html import render_viewer

    _, layer, head, _ = _large_head(plan, attentions)
    note = plan.truncation_message() if plan.truncated else ""
    page = render_viewer(
        attentions=attentions,
        tokens=tokens,
        rollout_cls=rollout,
        model=plan.config.model,
        source=plan.where,
        note=note,
        layer=layer,
        head=head or 0,
    )
    path.write_text(page, encoding="utf-8")
    return path.stat().st_size


def _document(plan: ShowPlan, tokens: list[str], rollout: np.ndarray) -> dict:
    return {
        "command": "attention show",
        "model": plan.model.describe(),
        "text": plan.text,
        "where": plan.where,
        "tokens": tokens,
        "n_tokens_before_truncation": int(plan.tokens.n_full[0]),
        "truncated": plan.truncated,
        "rollout_cls": [float(v) for v in rollout],
        "layer": plan.config.layer,
        "head": plan.config.head,
    }
