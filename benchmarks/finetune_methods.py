"""Full fine-tuning, LoRA and BitFit side by side: the same rows, mlx's defaults, one run each.

    python benchmarks/finetune_methods.py --data ../shared/data/ag_news --threads 1      # the README table
    python benchmarks/finetune_methods.py --data demo --limit 200 --epochs 1             # offline smoke run
    python benchmarks/finetune_methods.py --data ../shared/data/ag_news --methods full,lora --lora-lr 5e-4,1e-3

Each method runs ``mlx finetune`` (prepare_finetune / run_finetune, defaults unless given here) in a
process of its own. Peak memory is the run's own record (``peak_memory_bytes``, common.cost: the
process's resident set at its highest while the head probe and training ran; max allocated on CUDA),
test/s its inference throughput (test texts per second through the tuned model). Training seconds per epoch are the optimizer steps
alone (the loop's ``train_seconds``, no validation, no checkpoints); samples/s is training rows per
second of those steps. CPU seconds per epoch (the process's CPU time in ``fit``: steps, validation
passes and checkpoints) are the steadier figure on a shared machine. Every method trains and scores the same rows (the same seed, validation rows
and test split). Ratios are against full fine-tuning. With several learning rates for a method
(``--lora-lr 5e-4,1e-3``) each is run and the one with the best validation accuracy is the method's
row; the others are printed too, marked as not chosen. Test accuracy never chooses.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finetune.config import METHODS  # after the path set-up (no torch import)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo", help="'demo' or an AG News folder (train*.csv, test.csv)")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--limit", type=int, default=None, help="at most this many rows per split (stratified)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--methods", default="full,lora,bitfit", help="comma-separated: full, lora, bitfit")
    for method in METHODS:
        parser.add_argument(
            f"--{method}-lr",
            default=None,
            help=f"{method}: learning rate(s), comma-separated (default: mlx's default for the method); "
            "several: the best on validation is the method's row",
        )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one run: METHOD:LR, prints JSON
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        parser.error(f"--methods takes {', '.join(METHODS)}, got {args.methods!r}")
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    lrs = {m: _learning_rates(parser, getattr(args, f"{m}_lr"), m) for m in methods}
    if args.data != "demo" and Path(args.data).exists():
        args.data = str(Path(args.data).resolve())
    if args.child:
        method, lr = args.child.split(":")
        print(json.dumps(run_one(args, method, float(lr) if lr else None)), flush=True)
        return
    work = Path(tempfile.mkdtemp(prefix="finetune-methods-"))
    try:
        compare(args, methods, lrs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _learning_rates(parser, text: str | None, method: str) -> list[float | None]:
    if text is None:
        return [None]
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--{method}-lr takes numbers separated by commas, got {text!r}")
    if not values or not all(0 < v < 1 for v in values):
        parser.error(f"--{method}-lr takes learning rates in (0, 1), got {text!r}")
    return values


def compare(args, methods: list[str], lrs: dict, work: Path) -> None:
    from common.cost import device_name

    print(
        f"model {args.model}, data {args.data}, {args.epochs} epoch(s), seed {args.seed}, threads {args.threads or 'torch default'}, "
        f"CPU {device_name('cpu')}, load {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f}",
        flush=True,
    )
    chosen = {}
    for method in methods:
        runs = []
        for lr in lrs[method]:
            run = _child(args, method, lr, work / f"{method}-{lr}")
            runs.append(run)
            print(f"  {_line(run)}", flush=True)
        chosen[method] = max(runs, key=lambda r: r["validation_accuracy"])
        if len(runs) > 1:
            print(f"  {method}: lr {chosen[method]['lr']:g} chosen on validation", flush=True)
    print(_table(chosen), flush=True)
    print(f"load at the end {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f}", flush=True)


def _child(args, method: str, lr: float | None, out: Path) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", f"{method}:{lr or ''}", "--out", str(out)]
    command += ["--data", args.data, "--model", args.model, "--epochs", str(args.epochs), "--seed", str(args.seed)]
    command += ["--limit", str(args.limit)] if args.limit else []
    command += ["--threads", str(args.threads)] if args.threads else []
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(f"{method} failed (exit {done.returncode}); its error is above")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_one(args, method: str, lr: float | None) -> dict:
    """One ``mlx finetune`` run in this process; its figures as a dict."""
    os.environ.setdefault("MLX_HOME", str(Path(args.out) / "home"))
    from common.errors import MlxError
    from finetune.config import FinetuneConfig
    from finetune.plan import prepare_finetune
    from finetune.run import run_finetune

    config = FinetuneConfig(
        model=args.model,
        dataset=args.data,
        limit=args.limit,
        n_epochs=args.epochs,
        lr=lr,
        method=method,
        seed=args.seed,
        threads=args.threads,
        out=Path(args.out) / "run",
    )
    import training.loop

    fit, spent = training.loop.fit, {}

    def timed_fit(*args, **kwargs):  # the CPU time of the training phase alone
        started = time.process_time()
        try:
            return fit(*args, **kwargs)
        finally:
            spent["cpu"] = time.process_time() - started

    training.loop.fit = timed_fit
    try:
        plan = prepare_finetune(config)
        result = run_finetune(plan)
    except MlxError as exc:  # bad options or data: one line, as mlx itself says it
        sys.exit(f"error: {exc}")
    finally:
        training.loop.fit = fit
    history = result.history
    return {
        "method": method,
        "lr": plan.config.lr,
        "n_train": result.n_train,
        "n_test": result.n_test,
        "accuracy": result.accuracy,
        "validation_accuracy": result.validation_accuracy,
        "trainable_params": result.trainable_params,
        "epoch_seconds": history.train_seconds / max(1, len(history.epochs)),
        "epoch_cpu_seconds": spent["cpu"] / max(1, len(history.epochs)),
        "samples_per_second": history.samples_per_second,
        "fit_seconds": history.seconds,
        "peak_memory_bytes": result.peak_memory_bytes or 0,  # while training (common.cost.measure); 0: unknown
        "predict_per_second": result.predict_per_second or 0.0,
        "dtype": plan.dtype.value,
        "load": os.getloadavg()[0],
    }


def _line(run: dict) -> str:
    return (
        f"{run['method']:<7} lr {run['lr']:<8g} test {100 * run['accuracy']:.2f}%  validation {100 * run['validation_accuracy']:.2f}%  "
        f"{run['trainable_params']:,} trainable  {run['epoch_seconds']:.0f} s/epoch ({run['epoch_cpu_seconds']:.0f} CPU s)  "
        f"{run['samples_per_second']:.1f} samples/s  peak memory {run['peak_memory_bytes'] / 2**20:,.0f} MiB  "
        f"{run['predict_per_second']:,.0f} test/s  "
        f"({run['n_train']:,} train rows, {run['dtype']}, load {run['load']:.1f})"
    )


def _table(chosen: dict) -> str:
    """One row per method; against full fine-tuning: accuracy in points, then ratios of parameters, time, memory."""
    full = chosen.get("full")
    header = f"{'method':<7} {'lr':>7} {'test acc':>9} {'trainable':>11} {'s/epoch':>8} {'CPU s':>6} {'samples/s':>10} {'peak mem':>10} {'test/s':>7}"
    if full:
        header += f"  {'vs full: acc':>12} {'params':>7} {'time':>6} {'CPU':>6} {'memory':>7}"
    lines = [header]
    for method, r in chosen.items():
        line = (
            f"{method:<7} {r['lr']:>7g} {100 * r['accuracy']:>8.2f}% {r['trainable_params']:>11,} {r['epoch_seconds']:>8.0f} "
            f"{r['epoch_cpu_seconds']:>6.0f} {r['samples_per_second']:>10.1f} {r['peak_memory_bytes'] / 2**20:>6,.0f} MiB "
            f"{r['predict_per_second']:>7,.0f}"
        )
        if full:
            line += (
                f"  {100 * (r['accuracy'] - full['accuracy']):>+9.2f} pt {r['trainable_params'] / full['trainable_params']:>6.2%} "
                f"{r['epoch_seconds'] / full['epoch_seconds']:>5.2f}x {r['epoch_cpu_seconds'] / full['epoch_cpu_seconds']:>5.2f}x "
                f"{r['peak_memory_bytes'] / full['peak_memory_bytes']:>6.2f}x"
            )
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
