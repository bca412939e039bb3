"""`mlx vision ...`: KMNIST download, gradient check, model comparison and sweeps."""

from pathlib import Path

import typer
from rich.table import Table

from cli import ui
from cli.params import InputFolder, OutputFolder
from common.devices import Device, DType
from common.options import (
    BATCH_SIZES,
    DEPTHS,
    EPOCHS,
    GRADCHECK_WIDTHS,
    MEMBERS,
    SEEDS,
    SMALL,
    THREADS,
    WIDTHS,
    parse_floats,
    parse_ints,
    parse_list,
)
from vision.activations import parse_activation
from vision.choices import DatasetName, ModelName, parse_models
from vision.download import KMNIST_URL, FileFormat

vision_app = typer.Typer(
    help="KMNIST vision baselines: a NumPy MLP from first principles, PyTorch MLPs and CNNs.", no_args_is_help=True
)

DATASET_HELP = "kmnist (official files in --data-dir) or digits (scikit-learn's 8x8 digits resized to 28x28: NOT KMNIST, an offline stand-in needing no download)."
DATA_DIR_HELP = (
    "Folder with the KMNIST files (kmnist-*.npz, or *-idx?-ubyte.gz as in torchvision's KMNIST/raw). Default: ./data"
)
DTYPE_HELP = "Compute dtype of the torch models (autocast; weights stay fp32). auto: bf16 where the hardware has it natively (CUDA; CPUs with AVX512-BF16 or AMX), else fp32. fp16 needs CUDA. The NumPy MLP always computes in fp32."
THREADS_HELP = "CPU threads for torch and NumPy's BLAS (default: the libraries' own, usually one per core). On a CPU shared with other jobs, 1 can be faster."
SEED_HELP = "Seed for the validation split, the initial weights, the batch order and augmentation."
OUT_HELP = "The run folder to create (refused if it exists: mlx never overwrites results). Default: $MLX_HOME/runs/vision/compare-<dataset>-<time>-<id>"


def register(app: typer.Typer) -> None:
    app.add_typer(vision_app, name="vision")


def _say_device(device) -> None:
    ui.say(f"torch device: {device}" + ("" if device.type == "cuda" else " (no CUDA device found: training on CPU)"))


@vision_app.command()
def download(
    data_dir: Path = typer.Option(
        Path("data"),
        "--data-dir",
        "--out",
        help="Where to put the files (the same folder the other commands read).",
        parser=OutputFolder("--data-dir"),
    ),
    fmt: FileFormat = typer.Option(
        FileFormat.NPZ, "--format", help="npz: the official kmnist-*.npz; idx: MNIST-format *-ubyte.gz files."
    ),
    url: str = typer.Option(KMNIST_URL, "--url", help="Base URL of the files (a mirror)."),
) -> None:
    """Fetch KMNIST from the official host with MD5 checks; an interrupted download resumes."""
    from vision.download import download_kmnist

    with ui.progress_bar("B") as progress:
        results = download_kmnist(data_dir=data_dir, fmt=fmt, base_url=url, progress=progress)
    for result in results:
        ui.out.print(f"{result.path}  {result.outcome.value}  ({result.n_bytes:,} bytes, MD5 ok)")


@vision_app.command()
def gradcheck(
    depth: int = typer.Option(2, help="Hidden layers.", **DEPTHS.bounds),
    width: int = typer.Option(16, help="Units per hidden layer.", **GRADCHECK_WIDTHS.bounds),
    activation: str = typer.Option("tanh", help="relu, leaky-relu, tanh, sigmoid, gelu or elu."),
    l2: float = typer.Option(1e-3, help="L2 penalty on weights."),
    batch_size: int = typer.Option(8, help="Examples in the random batch.", **BATCH_SIZES.bounds),
    tolerance: float = typer.Option(1e-6, help="Largest relative error that passes."),
    seed: int = typer.Option(0, help="Seed for the weights and the random batch.", **SEEDS.bounds),
    json_: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Compare the NumPy MLP's gradients with central differences in float64; exit 1 if any fails."""
    from vision.gradcheck import GradcheckConfig, run_gradcheck

    config = GradcheckConfig(
        depth=depth,
        width=width,
        activation=parse_activation(activation),
        l2=l2,
        batch_size=batch_size,
        tolerance=tolerance,
        seed=seed,
    )
    result = run_gradcheck(config)
    if json_:
        ui.print_json({"passed": result.passed, "tensors": [vars(t) for t in result.tensors]})
    else:
        table = Table(
            title=f"Gradient check: depth {depth}, width {width}, {config.activation.value}, L2 {l2:g} (float64, tolerance {tolerance:g})"
        )
        for column in ("tensor", "shape", "entries checked", "relative error", "max abs error", "ok"):
            table.add_column(column, justify="left" if column == "tensor" else "right")
        for t in result.tensors:
            table.add_row(
                t.name,
                "x".join(map(str, t.shape)),
                str(t.n_checked),
                f"{t.relative_error:.2e}",
                f"{t.max_abs_error:.2e}",
                "[green]yes" if t.passed else "[red]NO",
            )
        ui.out.print(table)
    if not result.passed:
        ui.print_error(
            f"gradient check failed: relative error above {tolerance:g} in "
            + ", ".join(t.name for t in result.tensors if not t.passed)
        )
        raise typer.Exit(1)


@vision_app.command()
def compare(
    models: str = typer.Option(
        "mlp-numpy,mlp-torch,cnn-strong", help="Comma-separated: " + ", ".join(m.value for m in ModelName)
    ),
    epochs: int = typer.Option(
        None, "--epochs", help="Epochs for every model (default: each preset's own).", **EPOCHS.bounds
    ),
    dataset: DatasetName = typer.Option(DatasetName.DIGITS, help=DATASET_HELP),
    data_dir: Path = typer.Option(None, "--data-dir", help=DATA_DIR_HELP, parser=InputFolder("--data-dir")),
    augment: bool = typer.Option(
        None, "--augment/--no-augment", help="Force random shifts/rotations on or off (default: each preset's own)."
    ),
    validation_fraction: float = typer.Option(
        0.1,
        "--validation-fraction",
        "--val-fraction",
        help="Share of train carved out (stratified, seeded) for validation; 0 trains on every training image (no validation, so no --tta).",
    ),
    seed: int = typer.Option(0, help=SEED_HELP, **SEEDS.bounds),
    device: Device = typer.Option(Device.AUTO, help="auto picks CUDA when available."),
    threads: int = typer.Option(None, "--threads", help=THREADS_HELP, **THREADS.bounds),
    dtype: DType = typer.Option(DType.AUTO, "--dtype", help=DTYPE_HELP),
    out: Path = typer.Option(None, "--out", help=OUT_HELP, parser=OutputFolder("--out")),
    tta: int = typer.Option(
        0,
        "--tta",
        help="Test-time augmentation: average the prediction over the image and this many fixed small warps (0 = off, up to 8); validation is scored with and without.",
        **SMALL.bounds,
    ),
    plot: bool = typer.Option(
        False,
        "--plot",
        help="Also write errors_<model>.png: misclassified test images grouped by the most confused class pairs, beside the confusion matrix.",
    ),
    detail: bool = typer.Option(False, "--detail", help="Also print each model's per-class test accuracy."),
    members: int = typer.Option(
        None,
        "--members",
        help="Train each torch model as an ensemble of this many networks (different initial weights, the same batches; "
        "the prediction averages their probabilities). Default: each preset's own (cnn-strong 3, the others 1). "
        "Costs N times one network's training time. Not for mlp-numpy.",
        **MEMBERS.bounds,
    ),
    json_: bool = typer.Option(False, "--json", help="Print the run record (run.json) instead of a table."),
) -> None:
    """Train each model on the same data and budget; a table, learning curves and confusion matrices."""
    from vision.compare import CompareConfig, prepare_compare, run_compare

    config = CompareConfig(
        models=parse_models(models),
        dataset=dataset,
        data_dir=data_dir,
        n_epochs=epochs,
        augment=augment,
        validation_fraction=validation_fraction,
        seed=seed,
        device=device,
        threads=threads,
        out=out,
        tta_views=tta,
        plot_errors=plot,
        members=members,
        dtype=dtype,
    )
    setup = prepare_compare(config)
    _say_device(setup.device)
    for note in setup.splits.notes:
        ui.say(note)
    ui.summary_panel("mlx vision compare", setup.summary())
    with ui.progress_bar("batch") as progress:
        result = run_compare(setup, progress)
    if json_:
        ui.print_json(result.record.to_dict())
        ui.say(f"run folder: {result.run_dir}")
        return
    table = Table(
        title=f"{setup.splits.dataset}: {len(setup.splits.train)} train images, test on {len(setup.splits.test)}"
    )
    # With test-time views, validation with and without them is what decides whether to use them.
    columns = (
        ("model",)
        + (("val acc.", f"val + {tta} views") if tta else ())
        + ("test accuracy", "macro-F1", "params", "train s", "s / epoch", "epochs")
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in result.rows():
        validation = (f"{row['validation_accuracy']:.2%}", f"{row['validation_accuracy_tta']:.2%}") if tta else ()
        table.add_row(
            row["model"] + (f" ({row['members']} networks)" if row["members"] > 1 else ""),
            *validation,
            f"{row['test_accuracy']:.2%}",
            f"{row['test_macro_f1']:.4f}",
            f"{row['n_parameters']:,}",
            f"{row['train_seconds']:.1f}",
            f"{row['seconds_per_epoch']:.2f}",
            str(row["n_epochs"]),
        )
    ui.out.print(table)
    if detail:
        _print_per_class(result.rows(), setup.splits.class_names)
    ui.say(f"run folder: {result.run_dir} (figures: {', '.join(p.name for p in result.figures)})")


def _print_per_class(rows: list[dict], class_names: tuple[str, ...]) -> None:
    table = Table(title="Per-class test accuracy (share of each class's test images predicted correctly)")
    table.add_column("class")
    for row in rows:
        table.add_column(row["model"], justify="right")
    for name in class_names:
        table.add_row(name, *(f"{row['per_class_accuracy'][name]:.2%}" for row in rows))
    ui.out.print(table)


@vision_app.command()
def sweep(
    model: ModelName = typer.Option(..., "--model", help="The model family to sweep."),
    depth: str = typer.Option("1,2", help="Comma-separated depths (hidden layers or conv blocks)."),
    width: str = typer.Option("128,512", help="Comma-separated widths (units or base channels)."),
    activation: str = typer.Option(
        "relu", help="Comma-separated activations: relu, leaky-relu, tanh, sigmoid, gelu, elu."
    ),
    l2: str = typer.Option("0", "--l2", help="Comma-separated L2 / weight-decay values."),
    epochs: int = typer.Option(
        None, "--epochs", help="Epochs per configuration (default: the preset's).", **EPOCHS.bounds
    ),
    dataset: DatasetName = typer.Option(DatasetName.DIGITS, help=DATASET_HELP),
    data_dir: Path = typer.Option(None, "--data-dir", help=DATA_DIR_HELP, parser=InputFolder("--data-dir")),
    augment: bool = typer.Option(
        None, "--augment/--no-augment", help="Force augmentation on or off (default: the preset's)."
    ),
    validation_fraction: float = typer.Option(
        0.1,
        "--validation-fraction",
        "--val-fraction",
        help="Share of train carved out (stratified, seeded) for validation.",
    ),
    seed: int = typer.Option(0, help=SEED_HELP, **SEEDS.bounds),
    device: Device = typer.Option(Device.AUTO, help="auto picks CUDA when available."),
    threads: int = typer.Option(None, "--threads", help=THREADS_HELP, **THREADS.bounds),
    dtype: DType = typer.Option(DType.AUTO, "--dtype", help=DTYPE_HELP),
    out: Path = typer.Option(
        None,
        "--out",
        help="The sweep folder; re-running with the same one skips finished configurations. Default: derived from the settings under $MLX_HOME/runs/vision",
        parser=OutputFolder("--out"),
    ),
    json_: bool = typer.Option(False, "--json", help="Print the run record (report-*/run.json) instead of a table."),
) -> None:
    """Train every combination, rank by validation accuracy, score only the best on test; resumable."""
    from vision.sweep import SweepConfig, prepare_sweep, run_sweep

    config = SweepConfig(
        model=model,
        depths=parse_ints(values=depth, option="--depth", minimum=DEPTHS.low, example="1,2", maximum=DEPTHS.high),
        widths=parse_ints(values=width, option="--width", minimum=WIDTHS.low, example="128,512", maximum=WIDTHS.high),
        activations=parse_list(values=activation, convert=parse_activation, option="--activation", example="relu,tanh"),
        l2s=parse_floats(l2, "--l2", example="0,1e-4"),
        dataset=dataset,
        data_dir=data_dir,
        n_epochs=epochs,
        augment=augment,
        validation_fraction=validation_fraction,
        seed=seed,
        device=device,
        threads=threads,
        dtype=dtype,
        out=out,
    )
    setup = prepare_sweep(config)
    _say_device(setup.device)
    for note in setup.notes:
        ui.say(note)
    ui.summary_panel("mlx vision sweep", setup.summary())
    with ui.progress_bar("batch") as progress:
        result = run_sweep(setup, progress)
    if json_:
        ui.print_json(result.record.to_dict())
        ui.say(f"report: {result.report_dir}")
        return
    table = Table(
        title=f"sweep {model.value}: {len(result.rows)} configurations by validation accuracy ({result.n_skipped} resumed from disk)"
    )
    for column in ("depth", "width", "activation", "L2", "params", "validation accuracy", "test accuracy", "train s"):
        table.add_column(column, justify="right")
    for row in result.rows:
        test = f"{row['test_accuracy']:.2%}" if "test_accuracy" in row else "-"
        table.add_row(
            str(row["depth"]),
            str(row["width"]),
            row["activation"],
            f"{row['l2']:g}",
            f"{row['n_parameters']:,}",
            f"{row['validation_accuracy']:.2%}",
            test,
            f"{row['train_seconds']:.1f}",
        )
    ui.out.print(table)
    ui.say(f"report: {result.report_dir} (plot: {result.figure.name})")
