"""``mlx probe``: k-NN and logistic-regression probes over an embedding store, compared in tables."""

from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Table

from cli import ui
from cli.params import InputFile, OutputFolder
from common.options import COUNTS, SEEDS, parse_floats, parse_ints, parse_layers, parse_names
from probes.choices import IndexKind, Metric, Weights

probe_app = typer.Typer(
    help="Probe stored embeddings: FAISS k-NN, logistic regression, and a comparison of both.", no_args_is_help=True
)

STORE = typer.Option(
    ...,
    "--store",
    help="Embedding store written by `mlx embed` (.h5).",
    parser=InputFile("--store", hint="write one with `mlx embed`"),
)
POOLING = typer.Option(
    None,
    "--pooling",
    help="Pooling(s) to probe, repeatable or comma-separated; 'all' (default) = every stored pooling.",
)
LAYER = typer.Option(
    None,
    "--layer",
    help="Layer: a number, 'last' (default), 'all' (each on its own), or a list such as 4,5,6 "
    "(vectors concatenated). Repeatable.",
)
K = typer.Option("1,5,10,20", "--k", help="Comma-separated numbers of neighbours.")
METRIC = typer.Option(Metric.COSINE, "--metric", help="Distance for k-NN.")
WEIGHTS = typer.Option(Weights.UNIFORM, "--weights", help="Vote weights: uniform, or 1/distance.")
INDEX = typer.Option(
    IndexKind.FLAT, "--index", help="FAISS index: flat (exact) or approximate hnsw/ivf (recall@k reported)."
)
CS = typer.Option(
    None,
    "--C",
    help="Comma-separated inverse regularisation strengths, chosen on a validation split of train. "
    "Default: 19 log-spaced values 1e-4..1e2 (fitted with warm starts); a C on the grid's edge is warned about.",
)
TEST_FRACTION = typer.Option(
    None, "--test-fraction", help="For a one-split store: carve a stratified, seeded test split of this fraction."
)
TEST_STORE = typer.Option(
    None,
    "--test-store",
    help="Take the test split from this store (same model and labels).",
    parser=InputFile("--test-store", hint="write one with `mlx embed`"),
)
TRAIN_SIZE = typer.Option(
    None,
    "--train-size",
    help="Train on a stratified, seeded subset of this many training rows (data-efficiency studies).",
    **COUNTS.bounds,
)
SEED = typer.Option(0, "--seed", help="Seed for the validation and carved test splits.", **SEEDS.bounds)
OUT = typer.Option(
    None,
    "--out",
    help="Run folder to create (must not exist); default $MLX_HOME/runs/probe/<command>-<time>-<id>.",
    parser=OutputFolder("--out"),
)
JSON = typer.Option(
    False,
    "--json",
    help="Print the run record (run.json: one result row per pooling x layer x probe x setting) on stdout.",
)
DETAIL = typer.Option(
    False,
    "--detail",
    help="Also print per-class precision/recall/F1 and the confusion matrix of the best result of each probe.",
)
PLOT = typer.Option(
    False, "--plot", help="Write confusion-matrix PNGs (and accuracy-by-layer with several layers) into the run folder."
)


@probe_app.command()
def knn(
    store: Path = STORE,
    pooling: Optional[list[str]] = POOLING,
    layer: Optional[list[str]] = LAYER,
    k: str = K,
    metric: Metric = METRIC,
    weights: Weights = WEIGHTS,
    index: IndexKind = INDEX,
    test_fraction: Optional[float] = TEST_FRACTION,
    test_store: Optional[Path] = TEST_STORE,
    train_size: Optional[int] = TRAIN_SIZE,
    seed: int = SEED,
    out: Optional[Path] = OUT,
    json_: bool = JSON,
    detail: bool = DETAIL,
    plot: bool = PLOT,
) -> None:
    """k-nearest-neighbour probe on a FAISS index (flat = exact, equal to scikit-learn brute force)."""
    _run("knn", locals())


@probe_app.command()
def logreg(
    store: Path = STORE,
    pooling: Optional[list[str]] = POOLING,
    layer: Optional[list[str]] = LAYER,
    c: Optional[str] = CS,
    test_fraction: Optional[float] = TEST_FRACTION,
    test_store: Optional[Path] = TEST_STORE,
    train_size: Optional[int] = TRAIN_SIZE,
    seed: int = SEED,
    out: Optional[Path] = OUT,
    json_: bool = JSON,
    detail: bool = DETAIL,
    plot: bool = PLOT,
) -> None:
    """Multinomial logistic regression on standardised features; C chosen on a validation split of train."""
    _run("logreg", locals())


@probe_app.command()
def compare(
    store: Path = STORE,
    pooling: Optional[list[str]] = POOLING,
    layer: Optional[list[str]] = LAYER,
    k: str = K,
    metric: Metric = METRIC,
    weights: Weights = WEIGHTS,
    index: IndexKind = INDEX,
    c: Optional[str] = CS,
    test_fraction: Optional[float] = TEST_FRACTION,
    test_store: Optional[Path] = TEST_STORE,
    train_size: Optional[int] = TRAIN_SIZE,
    seed: int = SEED,
    out: Optional[Path] = OUT,
    json_: bool = JSON,
    detail: bool = DETAIL,
    plot: bool = PLOT,
) -> None:
    """Every probe over every pooling (and layer) in one table sorted by test accuracy, best marked."""
    _run("compare", locals())


def register(app: typer.Typer) -> None:
    app.add_typer(probe_app, name="probe")


def _config(command: str, options: dict):
    """Options of one probe command -> a ProbeRunConfig of parsed, typed values."""
    from probes import KNNConfig, LogRegConfig, ProbeKind, ProbeRunConfig

    kinds = {"knn": (ProbeKind.KNN,), "logreg": (ProbeKind.LOGREG,), "compare": (ProbeKind.KNN, ProbeKind.LOGREG)}[
        command
    ]
    knn = (
        KNNConfig(
            ks=parse_ints(
                values=options["k"], option="--k", minimum=COUNTS.low, example="1,5,10,20", maximum=COUNTS.high
            ),
            metric=options["metric"],
            weights=options["weights"],
            index=options["index"],
        )
        if "k" in options
        else KNNConfig()
    )
    logreg = LogRegConfig()
    if options.get("c") is not None:
        logreg = LogRegConfig(Cs=parse_floats(options["c"], "--C", positive=True, example="0.01,0.1,1,10"))
    poolings = parse_names(options["pooling"], "--pooling") if options["pooling"] else ()
    return ProbeRunConfig(
        command=command,
        store=options["store"],
        probes=kinds,
        poolings=poolings,
        layers=parse_layers(options["layer"] or ()),
        knn=knn,
        logreg=logreg,
        test_fraction=options["test_fraction"],
        test_store=options["test_store"],
        train_size=options["train_size"],
        seed=options["seed"],
        out=options["out"],
        plot=options["plot"],
    )


def _run(command: str, options: dict) -> None:
    from probes import run_probes

    config, as_json, detail = _config(command, options), options["json_"], options["detail"]

    def on_plan(summary: dict) -> None:
        if config.test_fraction is not None:
            ui.say(f"carving a test split: {summary['split']}, seed {config.seed}")
        for note in summary.pop("notes"):
            ui.say(note)
        ui.summary_panel(f"mlx probe {config.command}", summary)

    with ui.progress_bar(unit="probe") as progress:
        report = run_probes(config, progress=progress, on_plan=on_plan)
    for note in report.notes:
        if note.startswith("logreg ") and "C grid extended" in note:
            ui.say(note)  # said aloud: the grid grew because the choice lay on its edge
    for warning in report.warnings:
        ui.warn(warning)
    if as_json:
        ui.print_json(report.record.to_dict())
    else:
        _render(report, detail)
    ui.say(f"run saved to {report.run_dir}")
    for path in report.plots:
        ui.say(f"plot: {path}")


def _render(report, detail: bool) -> None:
    from probes.plots import accuracy_by_layer

    ui.out.print(results_table(report))
    columns, rows = accuracy_by_layer(report.results, report.layer_selections)
    if len(columns) > 1:
        ui.out.print(layer_table(columns, rows))
    if detail:
        for probe in dict.fromkeys(r.probe for r in report.results):
            ui.out.print(detail_table(max((r for r in report.results if r.probe == probe), key=lambda r: r.accuracy)))


def results_table(report) -> Table:
    approximate = any(r.recall_at_k is not None for r in report.results)
    validated = any(r.validation_accuracy is not None for r in report.results)
    knn = report.config.knn
    table = Table(
        title=f"probes on {report.store.get('model_id') or report.config.store}, sorted by test accuracy",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0),
        collapse_padding=True,
        caption="; ".join(
            [report.split_note]
            + (
                [f"k-NN: {knn.metric.value}, {knn.weights.value} weights, {knn.index.value} index"]
                if "knn" in report.config.probes
                else []
            )
            + (
                ["logreg: C chosen on a validation split of train (val acc); fit s includes choosing C"]
                if "logreg" in report.config.probes
                else []
            )
        ),
    )
    for name in (
        ["", "probe", "pooling", "layer", "setting", "dim", "acc", "macro-F1"]
        + (["val acc"] if validated else [])
        + (["recall@k"] if approximate else [])
        + ["fit s", "pred s"]
    ):
        table.add_column(name, justify="left" if name in ("probe", "pooling", "layer", "setting") else "right")
    for i, r in enumerate(report.results):
        row = [
            "★" if i == 0 else str(i + 1),
            r.probe,
            r.pooling,
            r.layer_label,
            r.setting,
            str(r.dim),
            f"{r.accuracy:.2%}",
            f"{r.macro_f1:.2%}",
        ]
        row += [_maybe(r.validation_accuracy, "{:.2%}")] if validated else []
        row += [_maybe(r.recall_at_k, "{:.4f}")] if approximate else []
        row += [f"{r.fit_seconds:.2f}", f"{r.predict_seconds:.2f}"]
        table.add_row(*row, style="bold green" if i == 0 else None)
    return table


def layer_table(columns: list[str], rows: list) -> Table:
    table = Table(
        title="test accuracy by layer", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0), collapse_padding=True
    )
    table.add_column("pooling / probe")
    for column in columns:
        table.add_column(f"layer {column}", justify="right")
    for name, values in rows:
        best = max(v for v in values if v is not None)
        table.add_row(name, *[("[bold]" if v == best else "") + _maybe(v, "{:.2%}") for v in values])
    return table


def detail_table(r) -> Table:
    table = Table(
        title=f"{r.probe} {r.pooling} layer {r.layer_label} {r.setting}: per class, with confusion-matrix rows",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0),
        collapse_padding=True,
    )
    for name in ["class", "precision", "recall", "F1", "support"]:
        table.add_column(name, justify="left" if name == "class" else "right")
    for name in (m.name for m in r.per_class):
        table.add_column(f"→{name}", justify="right", style="dim")
    for m, confusion_row in zip(r.per_class, r.confusion):
        table.add_row(
            m.name, f"{m.precision:.4f}", f"{m.recall:.4f}", f"{m.f1:.4f}", str(m.support), *map(str, confusion_row)
        )
    return table


def _maybe(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
