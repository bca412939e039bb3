"""Training loop for the NumPy MLP: seeded shuffles, optional augmentation, SGD + momentum, constant or cosine LR.

It mirrors training.loop.fit (which serves every torch model) step for step, so that the NumPy
and torch MLPs are trained the same way: same batches per epoch, same schedule, same L2.
"""

import logging
import math
import time

import numpy as np

from common import ConfigError
from common.progress import ProgressCallback, no_progress
from training.config import ScheduleName, TrainConfig
from training.history import EpochRecord, TrainHistory
from vision.augment import NO_AUGMENT, AugmentConfig, augment_numpy
from vision.numpy_mlp import MLP, SGD

log = logging.getLogger(__name__)


# Torch's OneCycleLR also cycles SGD's momentum (0.95 → 0.85 → 0.95) and anneals its warm-up on a
# cosine, so a copy here would be a second implementation to keep in step; the NumPy MLP offers
# only the schedules it reproduces exactly (tests compare both step by step with torch's).
NUMPY_SCHEDULES = (ScheduleName.CONSTANT, ScheduleName.COSINE)


def check_numpy_schedule(config: TrainConfig) -> None:
    if config.schedule not in NUMPY_SCHEDULES:
        raise ConfigError(
            f"the NumPy MLP supports the schedules {', '.join(s.value for s in NUMPY_SCHEDULES)}, not {config.schedule.value}; use one of those or a torch model"
        )


def lr_at(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate of ``step`` (0-based): torch's LambdaLR(1.0) or CosineAnnealingLR(T_max=total_steps)."""
    check_numpy_schedule(config)
    if config.schedule == ScheduleName.COSINE:
        return config.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
    return config.lr


def evaluate_numpy(model: MLP, images: np.ndarray, labels: np.ndarray, mean: float, std: float) -> tuple[float, float]:
    """(mean cross-entropy, accuracy). images: (N, 28, 28) float32 in [0, 1]; (nan, nan) for no images."""
    if len(images) == 0:
        return float("nan"), float("nan")
    logits = model.predict_logits(((images - mean) / std).reshape(len(images), -1))  # (N, C)
    loss = model.loss_layer.forward(logits, labels)
    return loss, float((logits.argmax(axis=1) == labels).mean())


def fit_numpy(
    model: MLP,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    config: TrainConfig,
    rng: np.random.Generator,
    augment: AugmentConfig = NO_AUGMENT,
    progress: ProgressCallback = no_progress,
    task: str = "train",
) -> TrainHistory:
    """Train ``model`` in place. train/val: ((N, 28, 28) float32 in [0, 1], (N,) int64).

    Inputs are augmented in [0, 1] (zero fill = background), then standardised with the training
    set's mean and std, then flattened to (B, 784).
    """
    config.check()
    check_numpy_schedule(config)
    images, labels = train
    mean, std = float(images.mean()), float(images.std())
    optimizer = SGD(model, momentum=config.momentum)
    n_steps = math.ceil(len(labels) / config.batch_size)
    total_steps = config.n_epochs * n_steps
    records, started, val_accuracy = [], time.perf_counter(), float("nan")
    for epoch in range(1, config.n_epochs + 1):
        epoch_start, order, total_loss = time.perf_counter(), rng.permutation(len(labels)), 0.0
        for step in range(n_steps):
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch = augment_numpy(images[index], augment, rng)  # (B, 28, 28)
            x = ((batch - mean) / std).reshape(len(index), -1)  # (B, 784) float32
            model.loss(x, labels[index])
            model.backward()
            optimizer.step(lr_at(config, (epoch - 1) * n_steps + step, total_steps))
            total_loss += model.data_loss * len(index)  # without the L2 term, as torch reports it
            progress(
                task,
                (epoch - 1) * n_steps + step + 1,
                total_steps,
                epoch=epoch,
                loss=total_loss / min(len(labels), (step + 1) * config.batch_size),
                val_acc=val_accuracy,
            )
        train_loss = total_loss / len(labels)
        if not np.isfinite(train_loss):
            raise ConfigError(f"training diverged at epoch {epoch} (loss {train_loss}); lower the learning rate")
        val_loss, val_accuracy = evaluate_numpy(model, *val, mean, std)
        records.append(
            EpochRecord(
                epoch=epoch,
                train_loss=train_loss,
                val_loss=val_loss,
                val_accuracy=val_accuracy,
                seconds=time.perf_counter() - epoch_start,
            )
        )
        progress(task, epoch * n_steps, total_steps, epoch=epoch, loss=train_loss, val_acc=val_accuracy)
        log.info("epoch %d: train loss %.4f, val accuracy %.4f", epoch, train_loss, val_accuracy)
    model.input_mean, model.input_std = mean, std  # learned state: needed to predict later
    return TrainHistory(tuple(records), time.perf_counter() - started)
