"""`mlx attention diff`: how far two models' attention moved, per head (e.g. frozen vs fine-tuned).

Both models read the same token ids (they must share a tokenizer), and for every real query token
the Jensen-Shannon divergence (bits, 0 = identical rows, 1 = disjoint) between their attention rows
is averaged per layer and head.
"""

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attention.heads import HeadDivergence
from attention.inputs import LoadedTexts, RunFacts, TextSource, load_texts, output_dir, write_run_record
from attention.model import (
    AttentionModel,
    TokenisedTexts,
    batches,
    load_attention_model,
    pad_id,
    resolve_max_length,
    tokenise,
)
from common import ConfigError, record
from common.devices import Device, DType, resolve_dtype
from common.progress import ProgressCallback, no_progress
from common.writes import staged_run_dir, write_json
from text.defaults import DEFAULT_MODEL
from training.devices import resolve_device


@dataclass(frozen=True)
class DiffConfig:
    models: tuple[str, str] = (DEFAULT_MODEL, DEFAULT_MODEL)
    source: TextSource = TextSource()
    max_length: int | None = None
    batch_size: int = 32
    device: Device = Device.AUTO
    dtype: DType = DType.AUTO
    out: Path | None = None


@dataclass(frozen=True)
class DiffPlan:
    config: DiffConfig
    texts: LoadedTexts
    first: AttentionModel
    second: AttentionModel
    tokens: TokenisedTexts
    max_length: int
    device: str
    dtype: DType
    run_dir: Path
    notes: tuple[str, ...]

    def summary(self) -> dict[str, str]:
        a, b = self.config.models
        return {
            "models": f"A {a} ({self.first.loaded.revision})  vs  B {b} ({self.second.loaded.revision})",
            "shape": f"{self.first.n_layers} layers x {self.first.n_heads} heads, shared tokenizer",
            "data": f"{self.texts.dataset_name} {self.texts.split.name}: {len(self.texts.split):,} texts, {self.tokens.n_tokens:,} tokens",
            "device / dtype": f"{self.device} / {self.dtype.value}",
            "output": str(self.run_dir),
        }


@dataclass(frozen=True)
class DiffResult:
    divergence: list[list[float]]  # (L, H) mean JS divergence in bits
    n_texts: int
    n_tokens: int
    seconds: float
    started_at: str = ""

    def array(self) -> np.ndarray:
        return np.asarray(self.divergence)

    def layer_means(self) -> list[float]:
        return self.array().mean(axis=1).tolist()


def prepare_diff(config: DiffConfig) -> DiffPlan:
    if len(config.models) != 2:
        raise ConfigError(f"diff compares exactly two models: pass --model A --model B (got {len(config.models)})")
    if config.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {config.batch_size}")
    run_dir = output_dir(config.out, "diff")
    texts = load_texts(config.source)
    device = str(resolve_device(config.device))
    dtype = resolve_dtype(config.dtype, device)
    first, second = (load_attention_model(name, device) for name in config.models)
    max_length, note = resolve_max_length(first, config.max_length)
    if second.max_positions and second.max_positions < max_length:
        max_length = second.max_positions
    tokens = check_comparable(first=first, second=second, texts=texts.split.texts, max_length=max_length)
    notes = list(texts.notes) + ([note] if note else [])
    if tokens.n_truncated:
        notes.append(
            f"{tokens.n_truncated:,} of {len(tokens.ids):,} texts are longer than {max_length} tokens and were truncated"
        )
    return DiffPlan(
        config=config,
        texts=texts,
        first=first,
        second=second,
        tokens=tokens,
        max_length=max_length,
        device=device,
        dtype=dtype,
        run_dir=run_dir,
        notes=tuple(notes),
    )


def check_comparable(first: AttentionModel, second: AttentionModel, texts, max_length: int) -> TokenisedTexts:
    """Same layers and heads, and the same token ids for every text; refuse otherwise."""
    a, b = first.name, second.name
    if (first.n_layers, first.n_heads) != (second.n_layers, second.n_heads):
        raise ConfigError(
            f"models {a!r} ({first.n_layers} layers x {first.n_heads} heads) and {b!r} ({second.n_layers} x {second.n_heads}) do not have the same heads; diff compares head by head"
        )
    tokens = tokenise(first.tokenizer, texts, max_length)
    other = tokenise(second.tokenizer, texts, max_length)
    if first.tokenizer.get_vocab() != second.tokenizer.get_vocab() or tokens.ids != other.ids:
        raise ConfigError(
            f"models {a!r} and {b!r} do not share a tokenizer (their vocabularies or token ids differ); diff compares attention on the same tokens, so use two models with one tokenizer (e.g. a model and its fine-tuned copy)"
        )
    return tokens


def run_diff(plan: DiffPlan, progress: ProgressCallback = no_progress) -> DiffResult:
    started_at, start = record.now(), time.perf_counter()
    totals = HeadDivergence(plan.first.n_layers, plan.first.n_heads)
    done = 0
    for batch in batches(plan.tokens, plan.config.batch_size, pad_id(plan.first.tokenizer)):
        first = plan.first.attentions(batch.input_ids, batch.attention_mask, plan.dtype)
        second = plan.second.attentions(batch.input_ids, batch.attention_mask, plan.dtype)
        totals.add(first, second, batch.attention_mask)
        done += len(batch.rows)
        progress("attention", done, len(plan.tokens.ids))
    return DiffResult(
        divergence=totals.means(),
        n_texts=len(plan.tokens.ids),
        n_tokens=plan.tokens.n_tokens,
        seconds=time.perf_counter() - start,
        started_at=started_at,
    )


def write_diff_run(plan: DiffPlan, result: DiffResult) -> Path:
    """diff.json, diff_js.png and run.json in the plan's run folder, renamed into place when complete."""
    from attention.plots import save_layer_head_heatmap

    a, b = plan.config.models
    document = {
        "command": "attention diff",
        "models": [plan.first.describe(), plan.second.describe()],
        "data": plan.texts.describe(result.n_tokens),
        "config": {
            **dataclasses.asdict(plan.config),
            "max_length": plan.max_length,
            "device": plan.device,
            "dtype": plan.dtype.value,
        },
        "statistic": "mean Jensen-Shannon divergence (bits, 0..1) between the two models' attention rows, per layer and head",
        "indexing": "layers 1..L and heads 1..H; arrays are [layer - 1][head - 1]",
        "divergence": result.divergence,
        "layer_means": result.layer_means(),
        "seconds": round(result.seconds, 3),
    }
    with staged_run_dir(plan.run_dir) as staging:
        write_json(staging / "diff.json", document)
        save_layer_head_heatmap(result.array(), staging / "diff_js.png", f"JS divergence (bits): {a} vs {b}")
        notes = (*plan.notes, f"model B: {b} ({plan.second.loaded.revision})")
        facts = RunFacts.of_texts("diff", plan, model=plan.first)
        write_run_record(
            staging, facts, started_at=result.started_at, artifacts=("diff.json", "diff_js.png"), notes=notes
        )
    return plan.run_dir
