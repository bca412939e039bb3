"""`mlx attention stats`: per-head statistics of Clark et al. (2019) over a data set.

plan = prepare_stats(config) loads the texts and the model and resolves device, dtype and the run
folder; run_stats(plan, progress) runs length-sorted, padded batches through the model and sums
the row statistics of every layer and head (attention.heads); write_stats_run saves JSON and one
heatmap PNG per statistic in a run folder that appears only when complete.

bf16/fp16/int8 are opt-in on CPU (``--dtype``): the statistics of a sample of the texts are then also
computed in fp32 and the largest difference is reported, so "exact enough" is measured, not hoped.
"""

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attention.heads import DESCRIPTIONS, STATISTICS, HeadStatistics
from attention.inputs import LoadedTexts, RunFacts, TextSource, load_texts, output_dir, write_run_record
from attention.model import (
    AttentionModel,
    TokenisedTexts,
    batches,
    load_attention_model,
    pad_id,
    resolve_max_length,
    token_roles,
    tokenise,
)
from common import ConfigError, record
from common.devices import Device, DType, EncoderDType, resolve_encoder_dtype
from common.progress import ProgressCallback, no_progress
from common.writes import staged_run_dir, write_json
from text.defaults import DEFAULT_MODEL
from text.quantize import INT8_SCHEME, check_int8
from training.devices import resolve_device

PRECISION_SAMPLE = 64  # texts recomputed in fp32 to check a bf16/fp16 run
# Above these differences from fp32 a low-precision run is reported as not exact enough.
SHARE_TOLERANCE = 0.01  # absolute, for the shares (0..1)
RELATIVE_TOLERANCE = 0.01  # relative, for entropy and distance


@dataclass(frozen=True)
class StatsConfig:
    model: str = DEFAULT_MODEL
    source: TextSource = TextSource()
    max_length: int | None = None  # None: 256, or the model's limit if lower
    batch_size: int = 32
    device: Device = Device.AUTO
    dtype: EncoderDType = EncoderDType.AUTO
    out: Path | None = None


@dataclass(frozen=True)
class StatsPlan:
    config: StatsConfig
    texts: LoadedTexts
    model: AttentionModel
    tokens: TokenisedTexts
    max_length: int
    device: str
    dtype: EncoderDType
    run_dir: Path
    notes: tuple[str, ...]

    def summary(self) -> dict[str, str]:
        return {
            "model": f"{self.config.model} ({self.model.loaded.revision}): {self.model.n_layers} layers x {self.model.n_heads} heads, eager attention",
            "data": f"{self.texts.dataset_name} {self.texts.split.name}: {len(self.texts.split):,} texts, {self.tokens.n_tokens:,} tokens",
            "device / dtype": f"{self.device} / {self.dtype.value}",
            "batch / max length": f"{self.config.batch_size} / {self.max_length}",
            "output": str(self.run_dir),
        }


@dataclass(frozen=True)
class StatsResult:
    means: dict[str, list[list[float]]]  # statistic -> (L, H), layers and heads in model order
    n_texts: int
    n_tokens: int
    n_truncated: int
    seconds: float
    dtype: EncoderDType
    precision_check: dict[str, float] = field(default_factory=dict)  # statistic -> max |dtype - fp32|; empty for fp32
    started_at: str = ""

    def array(self, statistic: str) -> np.ndarray:
        return np.asarray(self.means[statistic])  # (L, H)

    def layer_means(self) -> dict[str, list[float]]:
        """statistic -> (L,) mean over the heads of each layer."""
        return {name: self.array(name).mean(axis=1).tolist() for name in STATISTICS}

    def extremes(self) -> list[tuple[str, float, tuple[int, int], float, tuple[int, int], float]]:
        """(statistic, lowest, its (layer, head) 1-based, highest, its (layer, head), mean) per statistic."""
        rows = []
        for name in STATISTICS:
            values = self.array(name)
            low, high = np.unravel_index(values.argmin(), values.shape), np.unravel_index(values.argmax(), values.shape)
            rows.append(
                (
                    name,
                    float(values[low]),
                    (low[0] + 1, low[1] + 1),
                    float(values[high]),
                    (high[0] + 1, high[1] + 1),
                    float(values.mean()),
                )
            )
        return rows

    def precision_ok(self) -> bool:
        if not self.precision_check:
            return True
        scale = {name: max(abs(self.array(name)).max(), 1e-12) for name in STATISTICS}
        return all(
            diff <= (RELATIVE_TOLERANCE * scale[name] if name in ("entropy", "distance") else SHARE_TOLERANCE)
            for name, diff in self.precision_check.items()
        )


def prepare_stats(config: StatsConfig) -> StatsPlan:
    """Check everything cheap, load texts and model, tokenise: nothing is written yet."""
    if config.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {config.batch_size}")
    run_dir = output_dir(config.out, "stats")
    texts = load_texts(config.source)
    device = str(resolve_device(config.device))
    dtype = resolve_encoder_dtype(config.dtype, device)
    if dtype is EncoderDType.INT8:
        check_int8()
    model = load_attention_model(config.model, device)
    max_length, note = resolve_max_length(model, config.max_length)
    tokens = tokenise(model.tokenizer, texts.split.texts, max_length)
    notes = list(texts.notes) + ([note] if note else [])
    if tokens.n_truncated:
        notes.append(
            f"{tokens.n_truncated:,} of {len(tokens.ids):,} texts are longer than {max_length} tokens and were truncated"
        )
    return StatsPlan(
        config=config,
        texts=texts,
        model=model,
        tokens=tokens,
        max_length=max_length,
        device=device,
        dtype=dtype,
        run_dir=run_dir,
        notes=tuple(notes),
    )


def run_stats(plan: StatsPlan, progress: ProgressCallback = no_progress) -> StatsResult:
    """Per-head statistics over every text of the plan."""
    started_at, start = record.now(), time.perf_counter()
    totals = head_statistics(
        model=plan.model, tokens=plan.tokens, batch_size=plan.config.batch_size, dtype=plan.dtype, progress=progress
    )
    seconds = time.perf_counter() - start
    check = (
        precision_check(model=plan.model, tokens=plan.tokens, batch_size=plan.config.batch_size, dtype=plan.dtype)
        if plan.dtype is not EncoderDType.FP32
        else {}
    )
    return StatsResult(
        means=totals.means(),
        n_texts=len(plan.tokens.ids),
        n_tokens=plan.tokens.n_tokens,
        n_truncated=plan.tokens.n_truncated,
        seconds=seconds,
        dtype=plan.dtype,
        precision_check=check,
        started_at=started_at,
    )


def head_statistics(
    model: AttentionModel,
    tokens: TokenisedTexts,
    batch_size: int,
    dtype: DType | EncoderDType,
    progress: ProgressCallback = no_progress,
) -> HeadStatistics:
    roles = token_roles(model.tokenizer)
    totals = HeadStatistics(model.n_layers, model.n_heads)
    done = 0
    for batch in batches(tokens, batch_size, pad_id(model.tokenizer)):
        attentions = model.attentions(batch.input_ids, batch.attention_mask, dtype)
        totals.add(attentions, batch.attention_mask, roles.flags(batch.input_ids))
        done += len(batch.rows)
        progress("attention", done, len(tokens.ids))
    return totals


def precision_check(
    model: AttentionModel, tokens: TokenisedTexts, batch_size: int, dtype: DType | EncoderDType
) -> dict[str, float]:
    """Largest |statistic in ``dtype`` - statistic in fp32| over every head, on an evenly spread sample of texts."""
    picked = np.linspace(0, len(tokens.ids) - 1, num=min(PRECISION_SAMPLE, len(tokens.ids))).round().astype(int)
    sample = TokenisedTexts(tuple(tokens.ids[i] for i in np.unique(picked)), tokens.n_full[np.unique(picked)])
    low = np.asarray(head_statistics(model=model, tokens=sample, batch_size=batch_size, dtype=dtype).sums)
    exact = np.asarray(head_statistics(model=model, tokens=sample, batch_size=batch_size, dtype=DType.FP32).sums)
    n_rows = max(sample.n_tokens, 1)
    return {name: float(np.abs(low[i] - exact[i]).max() / n_rows) for i, name in enumerate(STATISTICS)}


def stats_document(plan: StatsPlan, result: StatsResult) -> dict:
    """Everything a reader of stats.json needs: what ran on what, and the (L, H) arrays."""
    return {
        "command": "attention stats",
        "model": plan.model.describe(),
        "data": {**plan.texts.describe(result.n_tokens), "n_truncated": result.n_truncated},
        "config": {
            **dataclasses.asdict(plan.config),
            "max_length": plan.max_length,
            "device": plan.device,
            "dtype": plan.dtype.value,
            **({"quantisation": INT8_SCHEME} if plan.dtype is EncoderDType.INT8 else {}),
        },
        "indexing": "layers 1..L and heads 1..H; arrays are [layer - 1][head - 1]",
        "statistics": {name: DESCRIPTIONS[name] for name in STATISTICS},
        "means": result.means,
        "layer_means": result.layer_means(),
        "precision_check": {"max_abs_difference_vs_fp32": result.precision_check, "ok": result.precision_ok()}
        if result.precision_check
        else None,
        "seconds": round(result.seconds, 3),
    }


def write_stats_run(plan: StatsPlan, result: StatsResult) -> Path:
    """stats.json, stats_<statistic>.png and run.json in the plan's run folder, renamed into place when complete."""
    from attention.plots import save_layer_head_heatmap

    artifacts = ("stats.json", *(f"stats_{name}.png" for name in STATISTICS))
    with staged_run_dir(plan.run_dir) as staging:
        write_json(staging / "stats.json", stats_document(plan, result))
        for name in STATISTICS:
            save_layer_head_heatmap(
                result.array(name), staging / f"stats_{name}.png", f"{plan.config.model}: {DESCRIPTIONS[name]}"
            )
        facts = RunFacts.of_texts("stats", plan, model=plan.model)
        write_run_record(staging, facts, started_at=result.started_at, artifacts=artifacts, notes=plan.notes)
    return plan.run_dir
