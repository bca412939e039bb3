"""`mlx finetune` against transformers' Trainer: the same model, rows, hyperparameters and dtype, one run each.

    python benchmarks/finetune_speed.py --data ../shared/data/ag_news --limit 2000 --epochs 1
    python benchmarks/finetune_speed.py --data demo --epochs 2           # offline smoke run
    python benchmarks/finetune_speed.py --data ../shared/data/ag_news --nproc 2 --threads 1   # mlx as 2 DDP ranks
    python benchmarks/finetune_speed.py --data ../shared/data/ag_news --limit 4000 --seeds 4  # mean paired accuracy gap

Both train on the same rows (mlx's training rows after carving validation off), validate on the
same validation rows at each epoch end, and score the same test rows once. Trainer gets what its
users would switch on: ``group_by_length`` sampling, bf16 autocast, fused AdamW, linear warmup and
decay, no checkpoints. Samples/s is training rows x epochs / wall time of the training phase
(validation passes included for both; mlx's epoch-end checkpoints included). CPU seconds of the
same phase are reported too: on a shared machine they are the steadier figure. Needs the ``bench`` extra
(``accelerate``).

With ``--nproc N`` the mlx side runs as ``mlx finetune --nproc N`` (N torchrun ranks, per-rank batch
= batch / N, so the global batch is the same) and its training time is the run record's fit wall
time; Trainer stays one process with ``--threads`` threads, as its users run it on one machine.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo", help="'demo' or an AG News folder (train*.csv, test.csv)")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--limit", type=int, default=None, help="at most this many rows per split (stratified)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of both sides (head, dropout, batch order, --limit rows)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="run seeds --seed .. --seed + N - 1 and summarise (mean paired accuracy gap)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's choice)")
    parser.add_argument("--only", choices=("mlx", "trainer"), default=None)
    parser.add_argument("--nproc", type=int, default=1, help="run mlx as this many DDP ranks (torchrun, gloo)")
    parser.add_argument(
        "--head-init",
        choices=("random", "probe"),
        default="random",
        help="mlx's head: random (default: Trainer's starting point, so both do the same work) or probe (mlx's default; "
        "its encoding pass is not in the timed training phase)",
    )
    parser.add_argument(
        "--pooling",
        choices=("cls", "mean", "auto"),
        default="cls",
        help="what mlx's head reads: cls (default: Trainer's BertForSequenceClassification head, the same work) or "
        "mean / auto (mlx's default for minilm)",
    )
    parser.add_argument(
        "--ema-decay",
        type=float,
        default=0.0,
        help="mlx's moving average of the weights: 0 (default: off, Trainer keeps none, so both do the same work) or "
        "0.99 (mlx's default; one lerp over the weights per step)",
    )
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    if args.nproc < 1 or args.batch_size % args.nproc:
        parser.error(
            f"--nproc must be at least 1 and divide --batch-size {args.batch_size} (same global batch), got {args.nproc}"
        )
    if args.data != "demo" and Path(args.data).exists():
        args.data = str(Path(args.data).resolve())  # the DDP side runs from the repository root
    if Path(args.model).exists():
        args.model = str(Path(args.model).resolve())

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="finetune-bench-"))
    try:
        os.environ.setdefault("MLX_HOME", str(work / "home"))
        from common.errors import MlxError

        try:
            runs = [run_seed(args, seed, work / f"seed-{seed}") for seed in range(args.seed, args.seed + args.seeds)]
        except MlxError as exc:  # bad options or data: one line, as mlx itself says it
            parser.error(str(exc))
        if len(runs) > 1 and all(len(r) == 2 for r in runs):
            summarise(runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_seed(args, seed: int, work: Path) -> dict:
    """Both sides with one seed (the same rows, head start and hyperparameters); prints a line each and the ratio."""
    import torch

    from finetune.config import FinetuneConfig
    from finetune.plan import prepare_finetune

    config = FinetuneConfig(
        model=args.model,
        dataset=args.data,
        limit=args.limit,
        n_epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        checkpoint_every=10**9,
        head_init=args.head_init,
        pooling=args.pooling,
        ema_decay=args.ema_decay,
        seed=seed,
        out=work / "mlx-run",
    )
    plan = prepare_finetune(config)
    n_rows = len(plan.fit_rows) * args.epochs
    print(
        f"model {args.model}, data {plan.dataset.name}: train {len(plan.fit_rows)}, validation {len(plan.val_rows)}, "
        f"test {len(plan.dataset.splits['test'])}; {args.epochs} epoch(s), batch {args.batch_size}, lr {args.lr:g}, {plan.dtype.value}, mlx head {args.head_init} on {plan.config.pooling}, mlx EMA {args.ema_decay:g}, seed {seed}, "
        f"threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    results = {}
    if args.only in (None, "mlx"):
        results["mlx"] = run_mlx(plan, n_rows) if args.nproc == 1 else run_mlx_ddp(args, seed, work, n_rows)
        print(f"mlx finetune   {results['mlx']}", flush=True)
    if args.only in (None, "trainer"):
        results["trainer"] = run_trainer(plan, work, n_rows)
        print(f"hf Trainer     {results['trainer']}", flush=True)
    if len(results) == 2:
        mlx, hf = results["mlx"], results["trainer"]
        per_cpu = (
            f"{mlx['samples_per_cpu_s'] / hf['samples_per_cpu_s']:.2f}x samples per CPU second; "
            if mlx["samples_per_cpu_s"]
            else ""
        )
        print(
            f"ratio mlx/Trainer: {mlx['samples_per_s'] / hf['samples_per_s']:.2f}x samples/s (wall), {per_cpu}"
            f"test accuracy {mlx['accuracy']:.4f} vs {hf['accuracy']:.4f} ({100 * (mlx['accuracy'] - hf['accuracy']):+.2f} pt); "
            f"load at the end {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    return results


def summarise(runs: list[dict]) -> None:
    """Over the seeds: the ratio of total rows per total second, and the mean paired accuracy difference.

    One seed's accuracy gap on a few thousand rows is mostly seed noise (dropout, batch order); the
    mean of the paired differences and its standard error say whether the two recipes differ.
    """
    import numpy as np

    seconds = {side: sum(r[side]["train_s"] for r in runs) for side in ("mlx", "trainer")}
    rows = sum(r["mlx"]["rows"] for r in runs)
    accuracy = {side: np.array([r[side]["accuracy"] for r in runs]) for side in ("mlx", "trainer")}
    gaps = 100 * (accuracy["mlx"] - accuracy["trainer"])
    print(
        f"over {len(runs)} seeds: mlx {rows / seconds['mlx']:.2f} samples/s, Trainer {rows / seconds['trainer']:.2f}; "
        f"ratio {seconds['trainer'] / seconds['mlx']:.2f}x; test accuracy mlx {100 * accuracy['mlx'].mean():.2f}% "
        f"vs Trainer {100 * accuracy['trainer'].mean():.2f}%, paired gap {gaps.mean():+.2f} pt "
        f"(standard error {gaps.std(ddof=1) / np.sqrt(len(gaps)):.2f}; per seed {', '.join(f'{g:+.2f}' for g in gaps)})"
    )


def run_mlx(plan, n_rows: int) -> dict:
    import training.loop
    from finetune.run import run_finetune

    fit, spent = training.loop.fit, {}

    def timed_fit(*args, **kwargs):  # the training phase alone, as Trainer.train() below
        cpu, started = time.process_time(), time.perf_counter()
        try:
            return fit(*args, **kwargs)
        finally:
            spent["cpu"], spent["wall"] = time.process_time() - cpu, time.perf_counter() - started

    training.loop.fit = timed_fit
    try:
        result = run_finetune(plan)
    finally:
        training.loop.fit = fit
    seconds, cpu = spent["wall"], spent["cpu"]
    return {
        "rows": n_rows,
        "accuracy": round(result.accuracy, 4),
        "train_s": round(seconds, 1),
        "samples_per_s": round(n_rows / seconds, 2),
        "samples_per_cpu_s": round(n_rows / cpu, 2),
    }


def run_mlx_ddp(args, seed: int, work: Path, n_rows: int) -> dict:
    """``mlx finetune --nproc N`` in a subprocess; wall time of its training phase from run.json."""
    import json
    import subprocess

    out = work / "mlx-ddp"
    command = [sys.executable, "-m", "cli.main", "finetune", "--model", args.model, "--dataset", args.data]
    command += ["--epochs", str(args.epochs), "--lr", str(args.lr), "--max-length", str(args.max_length)]
    command += ["--batch-size", str(args.batch_size // args.nproc), "--nproc", str(args.nproc), "--out", str(out)]
    command += ["--checkpoint-every", str(10**9), "--head-init", args.head_init, "--seed", str(seed)]
    command += ["--pooling", args.pooling, "--ema-decay", str(args.ema_decay)]
    command += ["--limit", str(args.limit)] if args.limit else []
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    subprocess.run(command, check=True, env=env, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL)
    result = json.loads((out / "run.json").read_text())["results"][0]
    seconds = result["train_seconds"] - result["details"].get("head_probe", {}).get("seconds", 0.0)  # training phase
    return {
        "rows": n_rows,
        "accuracy": round(result["accuracy"], 4),
        "train_s": round(seconds, 1),
        "samples_per_s": round(n_rows / seconds, 2),
        "samples_per_cpu_s": None,  # the ranks' CPU time of the training phase alone is not recorded
        "ranks": args.nproc,
    }


def run_trainer(plan, work: Path, n_rows: int) -> dict:
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    c = plan.config
    tokenizer = AutoTokenizer.from_pretrained(plan.source)
    train, test = plan.dataset.splits[c.train_split], plan.dataset.splits[c.test_split]

    def table(texts, labels):
        encoded = tokenizer(list(texts), truncation=True, max_length=c.max_length)
        return Dataset.from_dict(
            {
                "input_ids": encoded["input_ids"],
                "attention_mask": encoded["attention_mask"],
                "labels": [int(v) for v in labels],
            }
        )

    fit = table([train.texts[i] for i in plan.fit_rows], train.labels[plan.fit_rows])
    val = table([train.texts[i] for i in plan.val_rows], train.labels[plan.val_rows])
    names = plan.dataset.label_names
    torch.manual_seed(c.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        plan.source,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    arguments = TrainingArguments(
        output_dir=str(work / "trainer"),
        per_device_train_batch_size=c.batch_size,
        per_device_eval_batch_size=128,
        learning_rate=c.lr,
        num_train_epochs=c.n_epochs,
        warmup_steps=c.warmup,
        weight_decay=c.weight_decay,
        max_grad_norm=c.max_grad_norm,
        lr_scheduler_type="linear",
        bf16=plan.dtype.value == "bf16",  # the same dtype as the mlx side
        use_cpu=True,
        train_sampling_strategy="group_by_length",
        eval_strategy="epoch",
        save_strategy="no",
        report_to="none",
        seed=c.seed,
        logging_strategy="no",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=fit,
        eval_dataset=val,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    cpu, started = time.process_time(), time.perf_counter()
    trainer.train()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    # With group_by_length Trainer also length-groups (reorders) evaluation batches: score against its label_ids.
    output = trainer.predict(table(test.texts, test.labels))
    predicted, truth = output.predictions.argmax(axis=1), output.label_ids
    accuracy = float(np.mean(predicted == truth))
    return {
        "rows": n_rows,
        "accuracy": round(accuracy, 4),
        "train_s": round(seconds, 1),
        "samples_per_s": round(n_rows / seconds, 2),
        "samples_per_cpu_s": round(n_rows / cpu, 2),
    }


if __name__ == "__main__":
    main()
