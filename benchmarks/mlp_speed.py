"""Seconds per epoch: the NumPy MLP against the torch MLP of identical architecture, on CPU.

Both sides run their real training loops (vision.numpy_train.fit_numpy and training.loop.fit)
on the same float32 data, batch size, SGD + momentum and L2, one epoch at a time and interleaved
(numpy, torch, numpy, torch, ...) so that load from other processes hits both alike. The first
epoch of each is a warm-up and not counted; the median of the rest is reported.

    python benchmarks/mlp_speed.py                       # 6,000 KMNIST-sized images, 2x1024 ReLU
    python benchmarks/mlp_speed.py --data-dir /tmp/kmnist-6284 --epochs 5 --threads 1
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.epoch_timing import add_data_options, load_images, print_epoch_table, time_interleaved  # noqa: E402
from training.config import ScheduleName, TrainConfig  # noqa: E402
from training.devices import cpu_threads  # noqa: E402
from training.loop import fit  # noqa: E402
from vision.activations import parse_activation  # noqa: E402
from vision.numpy_mlp import MLP  # noqa: E402
from vision.numpy_train import fit_numpy  # noqa: E402
from vision.torch_nets import TorchMLP  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--batch-size", type=int, default=128)
    add_data_options(parser, n_examples=6000)
    parser.set_defaults(epochs=4)
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="CPU threads for both sides (torch and NumPy's BLAS)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with cpu_threads(args.threads):
        run(args)


def run(args: argparse.Namespace) -> None:
    activation = parse_activation(args.activation)
    images, labels = load_images(args)
    val = (images[:256], labels[:256])  # small: the per-epoch validation pass is part of both loops
    config = TrainConfig(
        n_epochs=1, batch_size=args.batch_size, lr=0.01, weight_decay=1e-4, schedule=ScheduleName.CONSTANT
    )

    numpy_model = MLP(args.depth, args.width, activation, np.random.default_rng(0), l2=1e-4)
    torch_model = TorchMLP(args.depth, args.width, activation)
    torch_train = (torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels))
    torch_val = (torch.from_numpy(val[0]).unsqueeze(1), torch.from_numpy(val[1]))
    rng = np.random.default_rng(1)
    seconds = time_interleaved(
        {
            "numpy": lambda: fit_numpy(numpy_model, (images, labels), val, config, rng),
            "torch": lambda: fit(
                torch_model, torch_train, torch_val, torch.nn.functional.cross_entropy, config, torch.device("cpu")
            ),
        },
        args.epochs,
    )
    print(
        f"MLP {args.depth}x{args.width} {activation.value}, batch {args.batch_size}, {len(labels):,} images, float32, CPU, "
        f"{args.threads} thread(s) for torch {torch.__version__} and NumPy {np.__version__}'s BLAS"
    )
    median = print_epoch_table(seconds)
    print(f"ratio numpy / torch: {median['numpy'] / median['torch']:.2f}x (target: <= 1.3x)")


if __name__ == "__main__":
    main()
