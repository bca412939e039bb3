"""``mlx study``: the whole study in one resumable command (text: probe vs fine-tune; vision: compare + sweep)."""

from pathlib import Path
from typing import Optional

import typer

from cli import kept_on_interrupt, ui
from cli.params import DatasetParser, InputFolder, ModelParser, OutputFolder
from common.devices import Device, DType
from common.options import ALL, BATCH_SIZES, EPOCHS, SEEDS, THREADS, TOKENS, parse_names
from finetune.config import METHODS
from text.defaults import DEFAULT_MODEL
from text.pooling import ALL_POOLINGS
from vision.choices import DatasetName

study_app = typer.Typer(
    help="Run a whole study end to end, every step cached: re-running redoes nothing that finished.",
    no_args_is_help=True,
)


@study_app.command()
def text(
    model: str = typer.Option(
        DEFAULT_MODEL,
        "--model",
        help="Hugging Face model id, local folder, or 'minilm' (bundled, offline; the hub's models need a network or the cache).",
        parser=ModelParser(),
    ),
    dataset: str = typer.Option(
        "demo",
        "--dataset",
        help="'demo', 'ag_news', or a path (folder with train.csv/test.csv, or a file).",
        parser=DatasetParser(),
    ),
    pooling: str = typer.Option("all", "--pooling", help="Poolings to embed and probe, comma-separated, or 'all'."),
    train_sizes: str = typer.Option(
        "all",
        "--train-sizes",
        help="Comma-separated training-set sizes, e.g. 100,1000,all (stratified, seeded subsets).",
    ),
    epochs: int = typer.Option(3, "--epochs", help="Fine-tuning epochs.", **EPOCHS.bounds),
    lr: Optional[float] = typer.Option(None, "--lr", help="Fine-tuning learning rate (default: by model size)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Fine-tuning batch size.", **BATCH_SIZES.bounds),
    max_length: Optional[int] = typer.Option(
        None,
        "--max-length",
        help="Truncate texts to this many tokens, embedding and fine-tuning alike (default 256, or the model's limit if lower).",
        **TOKENS.bounds,
    ),
    text_column: str = typer.Option("text", "--text-column", help="Text column of a CSV/JSONL/Parquet file."),
    label_column: str = typer.Option(
        "label", "--label-column", help="Label column of a CSV/JSONL/Parquet file (integers 0..C-1 or class names)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed for the training subsets, validation splits and fine-tuning.", **SEEDS.bounds
    ),
    dtype: DType = typer.Option(
        DType.AUTO,
        "--dtype",
        help="Compute dtype of the embeddings and the fine-tune alike (auto: each command's own: fp32 embeddings on CPU, bf16 autocast where native for the fine-tune).",
    ),
    finetune: bool = typer.Option(
        True, "--finetune/--no-finetune", help="--no-finetune: probes on the frozen model only."
    ),
    methods: str = typer.Option(
        "full,lora",
        "--methods",
        help="Fine-tuning methods at each size, comma-separated: full, lora, bitfit (mlx finetune --method).",
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        help="The study folder; re-running with it resumes. Default: derived from the settings under $MLX_HOME/studies.",
        parser=OutputFolder("--out"),
    ),
) -> None:
    """Embed (all poolings and layers) -> probes per layer and on the best layers concatenated -> fine-tune (each
    of --methods) -> embed the fully fine-tuned model -> probe it -> report, at each training-set size."""
    from study.text import TextStudyConfig, parse_train_sizes, prepare_text_study, run_text_study

    config = TextStudyConfig(
        model=model,
        dataset=dataset,
        train_sizes=parse_train_sizes(train_sizes),
        poolings=parse_names(pooling, "--pooling", (*ALL_POOLINGS, ALL)),
        text_column=text_column,
        label_column=label_column,
        n_epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
        dtype=dtype.value,
        finetune=finetune,
        methods=parse_names(methods, "--methods", METHODS),
        out=out,
    )
    plan = prepare_text_study(config)
    ui.summary_panel("mlx study text", plan.summary())
    with ui.progress_bar("it") as progress:
        result = _interruptible(lambda: run_text_study(plan, progress, ui.say), plan.out)
    _render(result)


@study_app.command()
def vision(
    dataset: DatasetName = typer.Option(
        DatasetName.DIGITS, "--dataset", help="kmnist (files in --data-dir) or digits (offline stand-in)."
    ),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", help="Folder with the KMNIST files. Default: ./data", parser=InputFolder("--data-dir")
    ),
    models: str = typer.Option("mlp-numpy,mlp-torch,cnn-strong", "--models", help="Models to compare."),
    sweep_model: str = typer.Option(
        "mlp-torch", "--sweep-model", help="The model whose depth x width is swept (a small 2 x 2 grid)."
    ),
    epochs: Optional[int] = typer.Option(
        None, "--epochs", help="Epochs for every model (default: each preset's own).", **EPOCHS.bounds
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed for the validation splits, the initial weights and the batch order.", **SEEDS.bounds
    ),
    device: Device = typer.Option(Device.AUTO, "--device", help="auto (CUDA when present), cpu or cuda."),
    threads: Optional[int] = typer.Option(
        None, "--threads", help="CPU threads for torch and NumPy's BLAS.", **THREADS.bounds
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        help="The study folder; re-running with it resumes. Default: under $MLX_HOME/studies.",
        parser=OutputFolder("--out"),
    ),
) -> None:
    """Compare the models, sweep one a little, and report both on the same test images."""
    from study.vision import VisionStudyConfig, default_vision_study_dir, run_vision_study
    from vision.specs import parse_models

    chosen = tuple(m.value for m in parse_models(models)) + tuple(m.value for m in parse_models(sweep_model))
    config = VisionStudyConfig(
        dataset=dataset.value,
        data_dir=data_dir,
        models=chosen[:-1],
        sweep_model=chosen[-1],
        n_epochs=epochs,
        seed=seed,
        device=device.value,
        threads=threads,
        out=out,
    )
    folder = out or default_vision_study_dir(config)
    ui.summary_panel(
        "mlx study vision",
        {
            "data": dataset.value,
            "compare": ", ".join(config.models),
            "sweep": f"{config.sweep_model}: depth {config.sweep_depths} x width {config.sweep_widths}",
            "epochs": epochs or "each preset's own",
            "seed": seed,
            "output": folder,
        },
    )
    with ui.progress_bar("batch") as progress:
        result = _interruptible(lambda: run_vision_study(config, progress, ui.say), folder)
    _render(result)


def _interruptible(work, folder: Path):
    with kept_on_interrupt(f"finished steps are kept in {folder}; run the same command again to resume"):
        return work()


def _render(result) -> None:
    from cli.report import report_table

    ui.out.print(report_table(result.report))
    ui.say(f"study: {result.out} ({result.n_done} step(s) run, {result.n_cached} found done)")
    ui.say(f"report: {result.report.markdown}")


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")
