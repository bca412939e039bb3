"""`mlx attention show|stats|diff`: attention maps, per-head statistics, frozen vs fine-tuned.

The library (attention/) imports torch and transformers: it is imported inside each command so
that `mlx --help` stays fast.
"""

from pathlib import Path

import typer

from cli import ui
from cli.params import DatasetParser, ModelParser, OutputFolder
from common import ConfigError
from common.devices import Device, DType, EncoderDType
from common.options import BATCH_SIZES, COUNTS, ROWS, SEEDS, TOKENS
from text.defaults import DEFAULT_MODEL

app = typer.Typer(
    help="Attention weights: one text as PNGs and an HTML viewer, per-head statistics over a data set, and the divergence between two models.",
    no_args_is_help=True,
)

MODEL_HELP = "Hugging Face id (default bert-base-uncased), local folder (e.g. a fine-tuned run's model/), or 'minilm' (bundled, offline)."
DATASET_HELP = "'demo', 'ag_news' or a path, as for mlx embed."


def _index(option: str, value: str) -> int | None:
    """'all' -> None; '3' -> 3 (1-based, range-checked against the model later)."""
    if value.strip().lower() == "all":
        return None
    if not value.strip().isdigit():
        raise ConfigError(f"{option} takes a number (1-based) or 'all', got {value!r}")
    return int(value)


def _check_models(*models: str) -> None:
    """A hub id with no hub to ask fails here at once, before torch and transformers are imported."""
    from text.models import model_shape

    for model in models:
        model_shape(model)


def _source(dataset, split, limit, seed, text_column, label_column):
    from attention.inputs import TextSource

    return TextSource(
        dataset=dataset, split=split, limit=limit, seed=seed, text_column=text_column, label_column=label_column
    )


@app.command()
def show(
    model: str = typer.Option(DEFAULT_MODEL, help=MODEL_HELP, parser=ModelParser()),
    text: str = typer.Option(None, help="The text to show."),
    dataset: str = typer.Option(None, help=f"Show a row of a data set instead: {DATASET_HELP}", parser=DatasetParser()),
    split: str = typer.Option(None, help="Split of --dataset (default: test, or its only split)."),
    row: int = typer.Option(None, help="Row of the split to show (0-based).", **ROWS.bounds),
    layer: str = typer.Option(
        "all", help="Layer 1..L for the grid and the large heatmap, or 'all' (the large heatmap then shows the last)."
    ),
    head: str = typer.Option(
        "all", help="Head 1..H, or 'all' (the large heatmap then shows the mean of the layer's heads)."
    ),
    max_length: int = typer.Option(
        None,
        help="Truncate to this many tokens (default 256, or the model's limit if lower); truncation is said aloud.",
        **TOKENS.bounds,
    ),
    device: Device = typer.Option(Device.AUTO, help="auto picks CUDA when available."),
    out: Path = typer.Option(
        None,
        help="Run folder to create (default: $MLX_HOME/runs/attention/show-<time>-<id>).",
        parser=OutputFolder("--out"),
    ),
) -> None:
    """One text: a layer x head grid PNG, a large heatmap with token labels, rollout, and a self-contained HTML viewer."""
    _check_models(model)
    from attention.show import ShowConfig, prepare_show, run_show

    source = (
        _source(dataset=dataset, split=split, limit=None, seed=0, text_column="text", label_column="label")
        if dataset is not None
        else None
    )
    config = ShowConfig(
        model=model,
        text=text,
        source=source,
        row=row,
        layer=_index("--layer", layer),
        head=_index("--head", head),
        max_length=max_length,
        device=device,
        out=out,
    )
    plan = prepare_show(config)
    for note in plan.notes:
        ui.say(note)
    if plan.truncated:
        ui.warn(plan.truncation_message())
    ui.summary_panel("mlx attention show", plan.summary())
    result = run_show(plan)
    ui.say(
        f"wrote {result.html_path} ({result.html_bytes / 1e6:.2f} MB, {result.n_tokens} tokens; open it in a browser, it needs no network)"
    )
    for png in result.pngs:
        ui.say(f"wrote {png}")
    ui.out.print(str(result.run_dir))


@app.command()
def stats(
    model: str = typer.Option(DEFAULT_MODEL, help=MODEL_HELP, parser=ModelParser()),
    dataset: str = typer.Option("demo", help=DATASET_HELP, parser=DatasetParser()),
    split: str = typer.Option(None, help="Split to read (default: test, or the only split)."),
    limit: int = typer.Option(None, help="Keep a stratified, seeded subsample of at most N texts.", **COUNTS.bounds),
    seed: int = typer.Option(0, help="Seed for --limit.", **SEEDS.bounds),
    text_column: str = typer.Option("text", help="Text column of a CSV/JSONL/Parquet file."),
    label_column: str = typer.Option("label", help="Label column of a CSV/JSONL/Parquet file."),
    max_length: int = typer.Option(
        None, help="Truncate texts to this many tokens (default 256, or the model's limit if lower).", **TOKENS.bounds
    ),
    batch_size: int = typer.Option(
        32, help="Texts per forward pass (length-sorted, padded per batch).", **BATCH_SIZES.bounds
    ),
    device: Device = typer.Option(Device.AUTO, help="auto picks CUDA when available."),
    dtype: EncoderDType = typer.Option(
        EncoderDType.AUTO,
        help="auto: bf16 on CUDA, fp32 on CPU. int8 (CPU only) quantises the linear layers and changes the numbers. bf16/fp16/int8 runs are checked against fp32 on a sample.",
    ),
    out: Path = typer.Option(
        None,
        help="Run folder to create (default: $MLX_HOME/runs/attention/stats-<time>-<id>).",
        parser=OutputFolder("--out"),
    ),
    json_: bool = typer.Option(False, "--json", help="Print stats.json to stdout instead of the tables."),
) -> None:
    """Per layer and head over a data set: entropy; shares on [CLS], [SEP], punctuation, self, previous, next; distance (Clark et al., 2019)."""
    _check_models(model)
    from attention.stats import StatsConfig, prepare_stats, run_stats, stats_document, write_stats_run

    config = StatsConfig(
        model=model,
        source=_source(
            dataset=dataset, split=split, limit=limit, seed=seed, text_column=text_column, label_column=label_column
        ),
        max_length=max_length,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        out=out,
    )
    plan = prepare_stats(config)
    for note in plan.notes:
        ui.say(note)
    ui.summary_panel("mlx attention stats", plan.summary())
    with ui.progress_bar("text") as progress:
        result = run_stats(plan, progress)
    if result.precision_check and not result.precision_ok():
        ui.warn(
            f"{result.dtype.value} differs from fp32 by more than the tolerance on a sample ({_largest(result.precision_check)}); use --dtype fp32 for these numbers"
        )
    elif result.precision_check:
        ui.say(
            f"{result.dtype.value} checked against fp32 on a sample: largest difference {_largest(result.precision_check)}"
        )
    run_dir = write_stats_run(plan, result)
    ui.say(f"wrote {run_dir} ({result.n_texts:,} texts, {result.n_tokens:,} tokens in {result.seconds:.1f} s)")
    if json_:
        ui.print_json(stats_document(plan, result))
        return
    _stats_tables(result)


def _largest(check: dict[str, float]) -> str:
    name = max(check, key=check.__getitem__)
    return f"{check[name]:.2g} on {name}"


def _stats_tables(result) -> None:
    from rich.table import Table

    from attention.heads import DESCRIPTIONS, STATISTICS

    extremes = Table(title="extremes over heads (layer-head, 1-based)")
    for column in ("statistic", "lowest", "head", "highest", "head", "mean"):
        extremes.add_column(column, justify="left" if column == "statistic" else "right")
    for name, low, low_at, high, high_at, mean in result.extremes():
        extremes.add_row(
            DESCRIPTIONS[name],
            f"{low:.3f}",
            f"{low_at[0]}-{low_at[1]}",
            f"{high:.3f}",
            f"{high_at[0]}-{high_at[1]}",
            f"{mean:.3f}",
        )
    ui.out.print(extremes)
    per_layer = Table(title="mean over the heads of each layer")
    per_layer.add_column("layer", justify="right")
    for name in STATISTICS:
        per_layer.add_column(name, justify="right")
    means = result.layer_means()
    for layer in range(len(means[STATISTICS[0]])):
        per_layer.add_row(str(layer + 1), *(f"{means[name][layer]:.3f}" for name in STATISTICS))
    ui.out.print(per_layer)


@app.command()
def diff(
    model: list[str] = typer.Option(
        ...,
        help="Two models, --model A --model B, sharing a tokenizer (e.g. minilm and its fine-tuned model/ folder).",
        parser=ModelParser(),
    ),
    dataset: str = typer.Option("demo", help=DATASET_HELP, parser=DatasetParser()),
    split: str = typer.Option(None, help="Split to read (default: test, or the only split)."),
    limit: int = typer.Option(None, help="Keep a stratified, seeded subsample of at most N texts.", **COUNTS.bounds),
    seed: int = typer.Option(0, help="Seed for --limit.", **SEEDS.bounds),
    max_length: int = typer.Option(
        None, help="Truncate texts to this many tokens (default 256, or the models' limit if lower).", **TOKENS.bounds
    ),
    batch_size: int = typer.Option(32, help="Texts per forward pass.", **BATCH_SIZES.bounds),
    device: Device = typer.Option(Device.AUTO, help="auto picks CUDA when available."),
    dtype: DType = typer.Option(DType.AUTO, help="auto: bf16 on CUDA, fp32 on CPU."),
    out: Path = typer.Option(
        None,
        help="Run folder to create (default: $MLX_HOME/runs/attention/diff-<time>-<id>).",
        parser=OutputFolder("--out"),
    ),
    json_: bool = typer.Option(False, "--json", help="Print the per-head divergences as JSON."),
) -> None:
    """Per head: mean Jensen-Shannon divergence (bits) between two models' attention rows on the same texts."""
    _check_models(*model)
    from attention.diff import DiffConfig, prepare_diff, run_diff, write_diff_run

    if len(model) != 2:
        raise ConfigError(f"diff compares exactly two models: pass --model A --model B (got {len(model)})")
    config = DiffConfig(
        models=(model[0], model[1]),
        source=_source(dataset=dataset, split=split, limit=limit, seed=seed, text_column="text", label_column="label"),
        max_length=max_length,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        out=out,
    )
    plan = prepare_diff(config)
    for note in plan.notes:
        ui.say(note)
    ui.summary_panel("mlx attention diff", plan.summary())
    with ui.progress_bar("text") as progress:
        result = run_diff(plan, progress)
    run_dir = write_diff_run(plan, result)
    ui.say(f"wrote {run_dir}")
    if json_:
        ui.print_json({"run_dir": str(run_dir), "divergence": result.divergence, "layer_means": result.layer_means()})
        return
    _diff_table(result)


def _diff_table(result) -> None:
    from rich.table import Table

    values = result.array()
    table = Table(title="Jensen-Shannon divergence per layer (bits; 0 = same attention)")
    for column in ("layer", "mean", "max", "head of max"):
        table.add_column(column, justify="right")
    for layer, row in enumerate(values):
        table.add_row(str(layer + 1), f"{row.mean():.4f}", f"{row.max():.4f}", str(int(row.argmax()) + 1))
    ui.out.print(table)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="attention")
