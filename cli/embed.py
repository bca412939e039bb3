"""`mlx embed`: frozen encoder embeddings into an HDF5 store."""

from pathlib import Path

import typer

from cli import kept_on_interrupt, ui
from cli.params import DatasetParser, ModelParser, OutputFile
from common.devices import Device, EncoderDType
from common.options import ALL, BATCH_SIZES, COUNTS, PROCESSES, SEEDS, TOKENS, layer_text, parse_layer, parse_names
from text.defaults import DEFAULT_MODEL
from text.pooling import ALL_POOLINGS


def embed(
    dataset: str = typer.Option(
        "demo",
        help="'ag_news' (Hugging Face hub), 'demo' (bundled smoke-test headlines), or a path: a folder of train.csv/test.csv in the AG News layout, or one CSV/JSONL/Parquet file.",
        parser=DatasetParser(),
    ),
    model: str = typer.Option(
        DEFAULT_MODEL,
        help="Hugging Face model id, local folder, or 'minilm' (bundled all-MiniLM-L6-v2, works offline).",
        parser=ModelParser(),
    ),
    pooling: list[str] = typer.Option(
        ["mean"],
        help=f"Pooling strategy, repeatable or comma-separated: {', '.join(ALL_POOLINGS)}, or 'all'. All come from one forward pass.",
    ),
    layer: str = typer.Option(
        "last",
        help="Hidden layer to pool: 'last', 'all' (every layer, for layer-wise probing), or numbers like 4,5,6 or 4-6 (0 = embedding output).",
    ),
    split: list[str] = typer.Option([], help="Split to embed (repeatable). Default: every split present."),
    limit: int = typer.Option(
        None, help="Keep a stratified, seeded subsample of at most N rows per split.", **COUNTS.bounds
    ),
    seed: int = typer.Option(0, help="Seed for --limit.", **SEEDS.bounds),
    text_column: str = typer.Option("text", help="Text column of a CSV/JSONL/Parquet file."),
    label_column: str = typer.Option(
        "label", help="Label column of a CSV/JSONL/Parquet file (integers 0..C-1 or class names)."
    ),
    max_length: int = typer.Option(
        None, help="Truncate texts to this many tokens. Default: 256, or the model's limit if lower.", **TOKENS.bounds
    ),
    batch_size: int = typer.Option(
        64, help="Texts per forward pass (length-sorted, padded per batch).", **BATCH_SIZES.bounds
    ),
    device: Device = typer.Option(Device.AUTO, help="auto picks CUDA when available."),
    dtype: EncoderDType = typer.Option(
        EncoderDType.AUTO,
        help="auto: bf16 on CUDA, fp32 on CPU. int8 (CPU only, opt-in) quantises the linear layers: faster, but the vectors change (cosine to fp32 about 0.997). Vectors are always stored as float32.",
    ),
    out: Path = typer.Option(
        None, help="Store path. Default: $MLX_HOME/stores/<dataset>-<model>-<key>.h5.", parser=OutputFile("--out")
    ),
    force: bool = typer.Option(False, "--force", help="Recompute even if a complete store of this extraction exists."),
    json_: bool = typer.Option(
        False, "--json", help="Print a JSON summary (path, cached, sizes, seconds) instead of the path."
    ),
    nproc: int = typer.Option(
        None,
        "--nproc",
        help="Run N ranks on this machine (torchrun --standalone); each computes its share of the shards.",
        **PROCESSES.bounds,
    ),
) -> None:
    """Extract frozen embeddings into a cached, resumable, self-describing HDF5 store.

    Re-running a finished extraction returns at once; re-running an interrupted one resumes it.
    Under torchrun (or with --nproc) the ranks share the shards and rank 0 writes the store.
    """
    from training.distributed import launch_local

    if nproc is not None:
        raise typer.Exit(launch_local(nproc))
    from embeddings.extract import EmbedConfig, plan_extraction

    config = EmbedConfig(
        dataset=dataset,
        splits=tuple(split),
        text_column=text_column,
        label_column=label_column,
        limit=limit,
        seed=seed,
        model=model,
        poolings=parse_names(pooling, "--pooling", (*ALL_POOLINGS, ALL)),
        layer=parse_layer(layer),
        max_length=max_length,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        out=out,
        force=force,
    )
    _run(plan_extraction(config), json_)


def _run(plan, json_: bool) -> None:
    """Extract on this rank; rank 0 alone speaks: the summary, progress and the result."""
    from embeddings.extract import extract_embeddings
    from training.distributed import dist_info, shutdown

    if not dist_info().is_main:  # only rank 0 prints
        try:
            extract_embeddings(plan)
        finally:
            shutdown()
        return
    for note in plan.dataset.notes:
        ui.say(note)
    if plan.cached:
        ui.say(f"cache hit: {plan.path} already holds this extraction; no model work (use --force to recompute)")
        _print_result(extract_embeddings(plan), json_)
        return
    ui.summary_panel("mlx embed", _summary(plan))
    if plan.dtype is EncoderDType.INT8:
        ui.say(INT8_NOTE)
    try:
        with kept_on_interrupt("finished shards are kept; run the same command again to resume"):
            with ui.progress_bar("sent") as progress:
                result = extract_embeddings(plan, progress)
    finally:
        shutdown()
    for note in result.notes:
        ui.warn(note)
    resumed = f"; {result.n_resumed:,} resumed from kept shards, not counted" if result.n_resumed else ""
    ui.say(
        f"wrote {result.path}: {sum(result.n_examples.values()):,} texts in {result.seconds:.1f} s ({result.sentences_per_second:,.0f} sentences/s{resumed})"
    )
    _print_result(result, json_)


INT8_NOTE = "int8: the linear layers compute in int8 (dynamic quantisation), so the vectors differ from fp32's; the store records it and is never reused for another dtype"


def _summary(plan) -> dict[str, object]:
    """The one panel before the work: model, data sizes, what is stored, device, dtype, output."""
    from training.distributed import dist_info

    config = plan.config
    sizes = ", ".join(f"{name} {len(s):,}" for name, s in plan.dataset.splits.items())
    ranks = {"ranks": f"{dist_info().world_size} (torchrun; rank 0 writes the store)"} if dist_info().enabled else {}
    return {
        "model": f"{config.model} ({plan.model_revision})",
        "data": f"{plan.dataset.name}: {sizes}",
        "pooling": ", ".join(config.poolings),
        "layer": layer_text(config.layer),
        "device": plan.device,
        "dtype": plan.dtype.value + (" (auto)" if config.dtype is EncoderDType.AUTO else ""),
        "batch / max length": f"{config.batch_size} / {config.max_length}",
        "output": plan.path,
        **ranks,
    }


def _print_result(result, json_: bool) -> None:
    if json_:
        ui.print_json(
            {
                "path": str(result.path),
                "cached": result.cached,
                "n_examples": result.n_examples,
                "n_resumed": result.n_resumed,
                "poolings": list(result.poolings),
                "layers": list(result.layers),
                "seconds": round(result.seconds, 3),
                "sentences_per_second": round(result.sentences_per_second, 1),
            }
        )
    else:
        ui.out.print(str(result.path))


def register(app: typer.Typer) -> None:
    app.command()(embed)
