"""Seconds per epoch of the cnn-strong preset: mlx's training loop against a plain PyTorch loop.

Both sides train one network of the preset (which trains four side by side and averages them; the
loop's overhead is per network) on the same tensors, in the same dtype, with the same work per epoch: a shuffled pass in batches, the preset's random affine warps of every batch, label-smoothed
cross-entropy, AdamW with a one-cycle schedule, then one evaluation pass over a small validation
set. The mlx side is ``training.loop.fit`` as `mlx vision compare` calls it; the plain side is the
ten-line loop anyone would write. Epochs alternate (mlx, plain, mlx, ...) so that load from other
processes hits both alike; the first epoch of each is a warm-up and the median of the rest is
reported. The ratio is the loop's overhead (target: under 10%).

    python benchmarks/cnn_speed.py                                            # synthetic images
    python benchmarks/cnn_speed.py --data-dir /work/home/i12/kmnist-6284 --epochs 2 --threads 1
"""

import argparse
import dataclasses
import sys
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.epoch_timing import add_data_options, load_images, print_epoch_table, time_interleaved  # noqa: E402
from training.devices import cpu_threads  # noqa: E402
from training.loop import fit  # noqa: E402
from vision.augment import torch_augmenter  # noqa: E402
from vision.specs import ModelName, build_model, compute_dtype, preset, with_dtype  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_options(parser, n_examples=6284)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads for torch")
    parser.add_argument(
        "--dtype", choices=("auto", "fp32", "bf16"), default="auto", help="as `mlx vision compare --dtype` (both sides)"
    )
    return parser.parse_args()


def plain_epoch(model, images, labels, val, spec, augment, generator) -> None:
    """One epoch written out by hand: the reference the shared loop is measured against."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.train.lr, weight_decay=spec.l2)
    steps = -(-len(labels) // spec.train.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=spec.train.lr, total_steps=steps, pct_start=spec.train.warmup_fraction
    )
    model.train()
    order = torch.randperm(len(labels), generator=generator)
    for start in range(0, len(labels), spec.train.batch_size):
        index = order[start : start + spec.train.batch_size]
        inputs = augment(images[index])  # outside autocast, as fit applies its batch transform
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec.train.autocast == "bf16"):
            loss = F.cross_entropy(model(inputs), labels[index], label_smoothing=spec.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    model.eval()
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec.train.autocast == "bf16"):
            model(val[0]).argmax(1).eq(val[1]).float().mean()


def main() -> None:
    args = parse_args()
    with cpu_threads(args.threads):
        run(args)


def run(args: argparse.Namespace) -> None:
    spec = with_dtype(preset(ModelName.CNN_STRONG, n_epochs=1, members=1), args.dtype, torch.device("cpu"))
    images, labels = (torch.from_numpy(a) for a in load_images(args))
    images = images.unsqueeze(1)  # (N, 1, 28, 28)
    val = (images[:256], labels[:256])  # small: the per-epoch validation pass is part of both loops
    mean, std = float(images.mean()), float(images.std())
    models = {"mlx": build_model(spec, mean, std, seed=0), "plain": build_model(spec, mean, std, seed=0)}
    augment = torch_augmenter(spec.augment, seed=1)
    loss = partial(F.cross_entropy, label_smoothing=spec.label_smoothing)
    train = dataclasses.replace(spec.train, weight_decay=spec.l2)
    generator = torch.Generator().manual_seed(0)
    seconds = time_interleaved(
        {
            "mlx": lambda: fit(
                models["mlx"], (images, labels), val, loss, train, torch.device("cpu"), batch_transform=augment
            ),
            "plain": lambda: plain_epoch(models["plain"], images, labels, val, spec, augment, generator),
        },
        args.epochs,
    )
    print(
        f"cnn-strong ({spec.depth} blocks, width {spec.width}, {sum(p.numel() for p in models['mlx'].parameters()):,} parameters), "
        f"batch {spec.train.batch_size}, {len(labels):,} images with affine warps, {compute_dtype(spec)} (channels-last), CPU, {args.threads} thread(s), torch {torch.__version__}"
    )
    median = print_epoch_table(seconds)
    print(f"ratio mlx loop / plain loop: {median['mlx'] / median['plain']:.3f}x (target: < 1.10x)")


if __name__ == "__main__":
    main()
