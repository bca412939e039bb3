"""Attention statistics speed, in one run on the same texts: `mlx attention stats` vs a per-text loop.

    python benchmarks/attention_speed.py                  # minilm, 1,000 AG News test texts
    python benchmarks/attention_speed.py --n 200 --data demo

The per-text loop (attention.reference) is what a notebook does: one forward pass per text with
``output_attentions=True``, then the statistics of Clark et al. (2019) head by head in NumPy. mlx
runs length-sorted, padded batches and computes every head's statistics in a few tensor ops
(attention.heads). Both compute in fp32 and must agree to 1e-4 on every statistic and head; the
bf16 run of mlx is timed too and its largest difference to fp32 reported. Model loading and
tokenisation are not timed. On a shared machine run it twice: other jobs inflate whichever
contender they overlap.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

AG_NEWS_TEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "ag_news" / "test.csv"
TOLERANCE = 1e-4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm")
    parser.add_argument(
        "--data",
        default=str(AG_NEWS_TEST if AG_NEWS_TEST.exists() else "demo"),
        help="dataset as mlx takes it (default: AG News test.csv)",
    )
    parser.add_argument("--n", type=int, default=1000, help="texts (stratified, seeded subsample)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for both contenders")
    parser.add_argument("--skip-bf16", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import torch

    from attention.inputs import TextSource
    from attention.model import TokenisedTexts, token_roles
    from attention.reference import per_text_statistics
    from attention.stats import StatsConfig, prepare_stats, run_stats
    from common.devices import EncoderDType

    torch.set_num_threads(args.threads)
    config = StatsConfig(
        model=args.model,
        source=TextSource(dataset=args.data, limit=args.n),
        max_length=args.max_length,
        batch_size=args.batch_size,
        device="cpu",
        dtype=EncoderDType.FP32,
        out=Path(tempfile.mkdtemp()) / "unused",
    )
    plan = prepare_stats(config)
    texts = list(plan.texts.split.texts)
    print(
        f"{args.model}: {len(texts):,} texts of {plan.texts.dataset_name} {plan.texts.split.name}, {plan.tokens.n_tokens:,} tokens "
        f"({plan.tokens.n_truncated} truncated at {plan.max_length}), {args.threads} threads, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    run_stats(replace(plan, tokens=TokenisedTexts(plan.tokens.ids[:64], plan.tokens.n_full[:64])))  # warm-up
    fp32 = run_stats(plan)
    print(f"mlx attention stats fp32: {fp32.seconds:.2f} s", flush=True)
    bf16 = None
    if not args.skip_bf16:
        bf16 = run_stats(replace(plan, dtype=EncoderDType.BF16))
        print(f"mlx attention stats bf16: {bf16.seconds:.2f} s", flush=True)

    start = time.perf_counter()
    reference = per_text_statistics(plan.model, texts, plan.max_length, token_roles(plan.model.tokenizer))
    loop_seconds = time.perf_counter() - start
    print(f"per-text loop (output_attentions=True, NumPy statistics): {loop_seconds:.2f} s", flush=True)

    fp32_diff = {name: float(np.abs(fp32.array(name) - reference[name]).max()) for name in reference}
    report = {
        "model": args.model,
        "n_texts": len(texts),
        "n_tokens": plan.tokens.n_tokens,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "load_average": os.getloadavg()[0],
        "seconds": {
            "per_text_loop": round(loop_seconds, 2),
            "mlx_fp32": round(fp32.seconds, 2),
            **({"mlx_bf16": round(bf16.seconds, 2)} if bf16 else {}),
        },
        "speedup": {
            "mlx_fp32": round(loop_seconds / fp32.seconds, 2),
            **({"mlx_bf16": round(loop_seconds / bf16.seconds, 2)} if bf16 else {}),
        },
        "max_abs_difference": {
            "mlx_fp32_vs_loop": max(fp32_diff.values()),
            **(
                {"mlx_bf16_vs_fp32": max(float(np.abs(bf16.array(n) - fp32.array(n)).max()) for n in reference)}
                if bf16
                else {}
            ),
        },
        "same_numbers_to_1e-4": max(fp32_diff.values()) <= TOLERANCE,
    }
    if bf16:
        report["max_abs_difference_bf16_by_statistic"] = {
            n: float(np.abs(bf16.array(n) - fp32.array(n)).max()) for n in reference
        }
    print(
        f"speed-up fp32 {report['speedup']['mlx_fp32']:.1f}x"
        + (f", bf16 {report['speedup']['mlx_bf16']:.1f}x" if bf16 else "")
        + f"; fp32 vs loop max |diff| {report['max_abs_difference']['mlx_fp32_vs_loop']:.2e}"
    )
    print(json.dumps(report))
    if not report["same_numbers_to_1e-4"]:
        sys.exit(f"mlx and the per-text loop differ by more than {TOLERANCE}: {fp32_diff}")


if __name__ == "__main__":
    main()
