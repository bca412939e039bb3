"""Seconds per epoch: the NumPy MLP against the torch MLP of identical architecture, on CPU.

Both sides run their real training loops (vision.numpy_train.fit_numpy and common.training.fit)
on the same float32 data, batch size, SGD + momentum and L2, one epoch at a time and interleaved
(numpy, torch, numpy, torch, ...) so that load from other processes hits both alike. The first
epoch of each is a warm-up and not counted; the median of the rest is reported.

    python benchmarks/mlp_speed.py                       # 6,000 KMNIST-sized images, 2x1024 ReLU
    python benchmarks/mlp_speed.py --data-dir /tmp/kmnist-6284 --epochs 5 --threads 1
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.training import ScheduleName, TrainConfig, cpu_threads, fit  # noqa: E402
from vision.activations import parse_activation  # noqa: E402
from vision.data import load_kmnist_split  # noqa: E402
from vision.numpy_mlp import MLP  # noqa: E402
from vision.numpy_train import fit_numpy  # noqa: E402
from vision.torch_models import TorchMLP  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4, help="timed epochs per side, after one warm-up epoch")
    parser.add_argument("--n-examples", type=int, default=6000, help="synthetic images when no --data-dir")
    parser.add_argument("--data-dir", type=Path, help="KMNIST folder: time on its training images instead")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads for both sides (torch and NumPy's BLAS)")
    return parser.parse_args()


def load_images(args) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) float32 in [0, 1] and (N,) int64 labels."""
    if args.data_dir:
        train = load_kmnist_split(args.data_dir, "train")
        return train.images.astype(np.float32) / 255, train.labels
    rng = np.random.default_rng(0)
    return rng.random((args.n_examples, 28, 28), dtype=np.float32), rng.integers(0, 10, args.n_examples)


def main() -> None:
    args = parse_args()
    with cpu_threads(args.threads):
        run(args)


def run(args: argparse.Namespace) -> None:
    activation = parse_activation(args.activation)
    images, labels = load_images(args)
    val = (images[:256], labels[:256])  # small: the per-epoch validation pass is part of both loops
    config = TrainConfig(n_epochs=1, batch_size=args.batch_size, lr=0.01, weight_decay=1e-4, schedule=ScheduleName.constant)

    numpy_model = MLP(args.depth, args.width, activation, np.random.default_rng(0), l2=1e-4)
    torch_model = TorchMLP(args.depth, args.width, activation)
    torch_train = (torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels))
    torch_val = (torch.from_numpy(val[0]).unsqueeze(1), torch.from_numpy(val[1]))
    rng = np.random.default_rng(1)
    seconds: dict[str, list[float]] = {"numpy": [], "torch": []}
    for _ in range(args.epochs + 1):
        start = time.perf_counter()
        fit_numpy(numpy_model, (images, labels), val, config, rng)
        seconds["numpy"].append(time.perf_counter() - start)
        start = time.perf_counter()
        fit(torch_model, torch_train, torch_val, torch.nn.functional.cross_entropy, config, torch.device("cpu"))
        seconds["torch"].append(time.perf_counter() - start)

    numpy_s, torch_s = (statistics.median(seconds[k][1:]) for k in ("numpy", "torch"))
    print(f"MLP {args.depth}x{args.width} {activation.value}, batch {args.batch_size}, {len(labels):,} images, float32, CPU, "
          f"{args.threads} thread(s) for torch {torch.__version__} and NumPy {np.__version__}'s BLAS")
    print(f"{'side':<8}{'s/epoch (median)':>18}{'all epochs (first = warm-up)':>50}")
    for side in ("numpy", "torch"):
        print(f"{side:<8}{statistics.median(seconds[side][1:]):>18.3f}{'  '.join(f'{s:.2f}' for s in seconds[side]):>50}")
    print(f"ratio numpy / torch: {numpy_s / torch_s:.2f}x (target: <= 1.3x)")


if __name__ == "__main__":
    main()
