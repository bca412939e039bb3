"""`mlx finetune`: train every parameter of an encoder on a text classification set."""

import json
from enum import Enum
from pathlib import Path

import typer

from cli import kept_on_interrupt, ui
from cli.params import DatasetParser, ModelParser, OutputFolder
from common.devices import Device, DType
from common.options import BATCH_SIZES, COUNTS, EPOCHS, PROCESSES, RANKS, SEEDS, THREADS, TOKENS
from finetune.config import LORA_DEFAULTS, LORA_TARGETS, METHODS, POOLINGS
from text.defaults import DEFAULT_MODEL

# Choices built from finetune.config's tuples, the one source of truth; mypy reads the members of literal
# Enum() calls only, so each line ignores that one check ([misc]) and defaults are looked up by value.
HeadPooling = Enum("HeadPooling", {name: name for name in POOLINGS}, type=str)  # type: ignore[misc]  # [auto|cls|mean]
Method = Enum("Method", {name: name for name in METHODS}, type=str)  # type: ignore[misc]  # [full|lora|bitfit]
LoraTargets = Enum("LoraTargets", {name: name for name in LORA_TARGETS}, type=str)  # type: ignore[misc]


class HeadInit(str, Enum):  # --head-init [probe|random]
    probe = "probe"
    random = "random"


def finetune(
    model: str = typer.Option(
        DEFAULT_MODEL,
        help="Hugging Face model id, local folder, or 'minilm' (bundled all-MiniLM-L6-v2, works offline).",
        parser=ModelParser(),
    ),
    dataset: str = typer.Option(
        "demo",
        help="'ag_news' (hub), 'demo' (bundled), or a path: a folder of train.csv/test.csv, or a CSV/JSONL/Parquet file.",
        parser=DatasetParser(),
    ),
    split: list[str] = typer.Option(
        [], help="The training split then the test split (give both). Default: train, test."
    ),
    limit: int = typer.Option(
        None, help="Keep a stratified, seeded subsample of at most N rows per split.", **COUNTS.bounds
    ),
    text_column: str = typer.Option("text", help="Text column of a CSV/JSONL/Parquet file."),
    label_column: str = typer.Option("label", help="Label column (integers 0..C-1 or class names)."),
    epochs: int = typer.Option(3, help="Passes over the training rows.", **EPOCHS.bounds),
    lr: float = typer.Option(
        None,
        help="Peak learning rate. Default by model width: 1e-4 up to hidden size 384 (MiniLM), 5e-5 up to 768 (bert-base), 2e-5 above; "
        "x5 for --method lora, x10 for --method bitfit.",
    ),
    batch_size: int = typer.Option(32, help="Examples per micro-batch and rank.", **BATCH_SIZES.bounds),
    grad_accum: int = typer.Option(
        1, help="Micro-batches per optimizer step (global batch = batch size x ranks x this).", **COUNTS.bounds
    ),
    max_length: int = typer.Option(
        None,
        help="Truncate texts to this many tokens. Default: 256 (as embed), or the model's limit if lower.",
        **TOKENS.bounds,
    ),
    warmup: float = typer.Option(
        0.1, help="Fraction of the steps with a linear warmup; the learning rate then decays linearly to 0."
    ),
    weight_decay: float = typer.Option(0.01, help="AdamW weight decay (not on biases and LayerNorm)."),
    layer_lr_decay: float = typer.Option(
        1.0, help="Layer-wise learning-rate decay: layer i of L trains at lr x decay^(L-i) (1.0 = off)."
    ),
    max_grad_norm: float = typer.Option(1.0, help="Clip the gradient norm to this."),
    label_smoothing: float = typer.Option(
        0.0, help="Label smoothing of the cross-entropy, in [0, 1) (0 = off; training and validation loss alike)."
    ),
    ema_decay: float = typer.Option(
        0.99,
        help="Validate, keep and score an exponential moving average of the weights with this decay per step, "
        "in [0, 1) (0 = off; 0.99 averages about the last 100 steps; a run of fewer than 2 / (1 - decay) steps "
        "weights its steps linearly, the latest most).",
    ),
    head_init: HeadInit = typer.Option(
        HeadInit.probe,
        "--head-init",
        help="probe: start the new classification head as a logistic regression on the frozen model's features "
        "(linear probe, then fine-tune: LP-FT; one encoding pass over the training rows first). random: transformers' initialisation.",
    ),
    pooling: HeadPooling = typer.Option(
        HeadPooling("auto"),
        help="What the classification head reads: cls (transformers' head: the [CLS] vector through BERT's pooler) or "
        "mean (the mean of the last layer's token vectors, padding excluded; BERT-style models). "
        "auto: mean for a sentence-transformers model trained with mean pooling (its 1_Pooling/config.json says so; minilm), else cls.",
    ),
    method: Method = typer.Option(
        Method("full"),
        help="Which parameters train: full (every one), lora (low-rank adapters on the encoder's linear layers, "
        "through peft; the weights stay frozen) or bitfit (every bias and LayerNorm). The classification head trains under each.",
    ),
    lora_rank: int = typer.Option(
        None,
        help=f"LoRA: rank r of each adapter B A (default {LORA_DEFAULTS['lora_rank']}). Only with --method lora.",
        **RANKS.bounds,
    ),
    lora_alpha: float = typer.Option(
        None,
        help=f"LoRA: the update B A is scaled by alpha / r (default {LORA_DEFAULTS['lora_alpha']:g}). Only with --method lora.",
    ),
    lora_dropout: float = typer.Option(
        None,
        help=f"LoRA: dropout on each adapter's input, in [0, 1) (default {LORA_DEFAULTS['lora_dropout']:g}). Only with --method lora.",
    ),
    lora_targets: LoraTargets = typer.Option(
        None,
        help="LoRA: all (every linear layer of the encoder, default) or attention (query, key, value and output only). "
        "Only with --method lora.",
    ),
    dtype: DType = typer.Option(
        DType.AUTO,
        help="auto: bf16 autocast (fp32 master weights) where the hardware has native bf16 (CUDA; CPUs with AVX512-BF16 or AMX), else fp32; fp16 (CUDA only) uses a grad scaler; fp32 turns autocast off.",
    ),
    device: Device = typer.Option(Device.AUTO, help="auto picks CUDA when available."),
    seed: int = typer.Option(0, help="Seed for the head, dropout, the batch order and --limit.", **SEEDS.bounds),
    eval_every: str = typer.Option(
        "epoch", help="Validate at each epoch end ('epoch') or also every N optimizer steps."
    ),
    patience: int = typer.Option(
        None, help="Stop after N validations without a better validation accuracy.", **COUNTS.bounds
    ),
    checkpoint_every: int = typer.Option(
        200, help="Write a checkpoint every N optimizer steps (and at each epoch end).", **COUNTS.bounds
    ),
    keep_checkpoints: int = typer.Option(2, help="Keep the last N checkpoints (and always the best).", **COUNTS.bounds),
    threads: int = typer.Option(None, help="CPU threads for torch (default: torch's choice).", **THREADS.bounds),
    nproc: int = typer.Option(
        1, help="Launch N processes on this machine with torchrun (DDP; gloo on CPU, nccl on CUDA).", **PROCESSES.bounds
    ),
    out: Path = typer.Option(
        None, help="Run folder. Default: $MLX_HOME/finetune/<dataset>-<model>-<key>.", parser=OutputFolder("--out")
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Train again even if the run folder holds a finished run, or start an interrupted one over.",
    ),
    train_size: int = typer.Option(
        None,
        "--train-size",
        help="Train on a stratified, seeded subset of this many training rows (the rows `probe --train-size` uses).",
        **COUNTS.bounds,
    ),
    json_: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Fine-tune a Hugging Face encoder end to end (every parameter, LoRA or BitFit); the best checkpoint (by
    validation accuracy) is scored on test.

    Validation rows are the ones the logistic-regression probe selects C on (10%, seed 0). After
    Ctrl-C or a crash, run the same command again: it resumes from the last checkpoint, and on CPU
    ends bit-identical to an uninterrupted run.
    """
    from finetune.config import FinetuneConfig
    from text.models import model_shape
    from training.distributed import dist_info

    model_shape(model)  # a hub id with no hub to ask fails here at once, not after torch's import
    from finetune.plan import prepare_finetune

    config = FinetuneConfig(
        model=model,
        dataset=dataset,
        splits=tuple(split),
        text_column=text_column,
        label_column=label_column,
        limit=limit,
        train_size=train_size,
        n_epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_length=max_length,
        warmup=warmup,
        weight_decay=weight_decay,
        layer_lr_decay=layer_lr_decay,
        head_init=head_init.value,
        pooling=pooling.value,
        max_grad_norm=max_grad_norm,
        label_smoothing=label_smoothing,
        ema_decay=ema_decay or 0.0,  # -0 is 0: one identity, one folder
        method=method.value,
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        lora_targets=lora_targets.value if lora_targets is not None else None,
        dtype=dtype,
        device=device,
        seed=seed,
        eval_every=_eval_every(eval_every),
        patience=patience,
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints,
        threads=threads,
        out=out,
        force=force,
    )
    if nproc < 1:
        raise typer.BadParameter(f"must be at least 1, got {nproc}", param_hint="--nproc")
    main = dist_info().is_main
    plan = prepare_finetune(config, world_size=nproc if nproc > 1 else None)
    if nproc > 1:
        _launch(plan, nproc)
    else:
        _run(plan, main, json_)


def _launch(plan, nproc: int) -> None:
    """``--nproc N``: start N ranks with torchrun on this machine, each running this command again."""
    from finetune.run import check_not_busy
    from training.distributed import launch_local

    check_not_busy(plan)  # before torchrun: a busy folder is one line here, not a rank-0 failure in the noise
    ui.say(f"launching {nproc} processes with torchrun (global batch {plan.global_batch})")
    code = launch_local(nproc)
    if code:
        raise typer.Exit(code)


def _run(plan, main: bool, json_: bool) -> None:
    """Train on this rank (one of several under torchrun); the main rank alone speaks."""
    from finetune.run import run_finetune
    from training.distributed import shutdown

    if main:
        for note in plan.dataset.notes + plan.notes:
            ui.say(note)
        ui.summary_panel("mlx finetune", plan.summary())
    kept = f"checkpoints are kept in {plan.partial}; run the same command again to resume"
    try:
        with kept_on_interrupt(kept if main else None):
            if main:
                with ui.progress_bar("samples") as progress:
                    result = run_finetune(plan, progress)
            else:
                result = run_finetune(plan)
    finally:
        shutdown()
    if main:
        _render(result, json_)


def _eval_every(value: str) -> int | None:
    if value.strip().lower() == "epoch":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise typer.BadParameter(f"'epoch' or a number of steps >= 1, got {value!r}", param_hint="--eval-every")
    return int(value)


def _render(result, json_: bool) -> None:
    for note in result.notes:
        ui.warn(note)
    ui.say(
        f"wrote {result.out}: test accuracy {result.accuracy:.4f}, macro-F1 {result.macro_f1:.4f} (best validation accuracy "
        f"{result.validation_accuracy:.4f} at step {result.best_step}); {result.train_seconds:.0f} s of training"
        + (f" (linear-probe head {result.head.seconds:.0f} s)" if result.head is not None else "")
        + f", {result.samples_per_second:.1f} samples/s"
    )
    if json_:  # the run record itself, as every command's --json
        ui.print_json(json.loads((result.out / "run.json").read_text()))
    else:
        ui.out.print(str(result.out))


def register(app: typer.Typer) -> None:
    app.command()(finetune)
