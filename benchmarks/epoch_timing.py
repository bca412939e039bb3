"""Interleaved epoch timing shared by the speed benchmarks: load from other processes hits every side alike."""

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def add_data_options(parser: argparse.ArgumentParser, n_examples: int) -> None:
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per side, after one warm-up epoch")
    parser.add_argument("--n-examples", type=int, default=n_examples, help="synthetic images when no --data-dir")
    parser.add_argument("--data-dir", type=Path, help="KMNIST folder: time on its training images instead")


def load_images(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) float32 in [0, 1] and (N,) int64 labels: KMNIST's training split, or random images."""
    from vision.data import load_kmnist_split

    if args.data_dir:
        train = load_kmnist_split(args.data_dir, "train")
        return train.images.astype(np.float32) / 255, train.labels
    rng = np.random.default_rng(0)
    return rng.random((args.n_examples, 28, 28), dtype=np.float32), rng.integers(0, 10, args.n_examples)


def time_interleaved(sides: dict[str, Callable[[], None]], n_epochs: int) -> dict[str, list[float]]:
    """Run each side's one-epoch function in turn, ``n_epochs`` + 1 rounds; seconds per epoch per side."""
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(n_epochs + 1):
        for name, run_epoch in sides.items():
            start = time.perf_counter()
            run_epoch()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def print_epoch_table(seconds: dict[str, list[float]]) -> dict[str, float]:
    """Print each side's median (the first epoch is a warm-up, not counted) and all epochs; return the medians."""
    medians = {name: statistics.median(values[1:]) for name, values in seconds.items()}
    print(f"{'side':<8}{'s/epoch (median)':>18}{'all epochs (first = warm-up)':>50}")
    for name, values in seconds.items():
        print(f"{name:<8}{medians[name]:>18.3f}{'  '.join(f'{s:.2f}' for s in values):>50}")
    return medians
