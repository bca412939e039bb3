"""The one training loop for every PyTorch model in mlx (torch MLPs, CNNs, fine-tuned BERT).

``fit`` takes a model, train and validation data (training/batches.py says which kinds), a loss, an
optimisation config, a device and an optional batch transform (augmentation applied to training
inputs only). It sets a run up, then trains epoch by epoch and step by step.

Beyond the plain loop (the vision default), a config can ask for autocast (bf16, or fp16 with a grad
scaler on CUDA), gradient accumulation, evaluation every N optimizer steps, early stopping, a
moving average of the weights (training/weight_average.py), and checkpoints every N steps and at
epoch ends from which a run resumes exactly (training/resume.py). Under torchrun (``dist`` with world
size > 1) the model is wrapped in DistributedDataParallel and each rank takes every world-size-th
micro-batch of the shared per-epoch batch list.
"""

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from itertools import islice
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from common.progress import ProgressCallback, no_progress
from training.batches import (
    Batches,
    Data,
    EpochBatches,
    autocast_context,
    count_batches,
    forward,
    iterate_batches,
    padded_batch_count,
    steps_per_epoch,
    to_device,
)
from training.config import TrainConfig
from training.distributed import DistInfo, all_reduce_sum, shard
from training.history import EpochRecord, EvalRecord, TrainHistory
from training.optimizer import make_optimizer
from training.predict import evaluate
from training.resume import resume, save_checkpoint
from training.state import Checkpoints, LoopState, Run, TrainingDiverged, kept_checkpoint
from training.weight_average import WeightAverage

log = logging.getLogger(__name__)


def fit(  # noqa: PLR0913  (what every model's training passes: model, data, loss, config, device, progress, ...)
    model: nn.Module,
    train: Data,
    val: Batches,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    config: TrainConfig,
    device: torch.device,
    progress: ProgressCallback = no_progress,
    batch_transform: Callable[[Any], Any] | None = None,
    task: str = "train",
    *,
    param_groups: list[dict] | None = None,
    checkpoints: Checkpoints | None = None,
    dist: DistInfo | None = None,
) -> TrainHistory:
    """Train ``model`` in place for ``config.n_epochs`` epochs; evaluate on ``val`` after each (and every
    ``config.eval_every`` steps). With ``checkpoints``, resume from the latest one and save every
    ``config.checkpoint_every`` steps, at each epoch end and at each new best validation accuracy.
    With ``config.ema_decay`` the moving average of the weights is what is evaluated, checkpointed
    as best (``checkpoint_weights``) and left in ``model`` at the end.

    Progress reports one unit per optimizer step with epoch, loss and the latest validation accuracy.
    """
    config.check()
    dist = dist or DistInfo()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device)
    steps = steps_per_epoch(count_batches(train, config.batch_size), config, dist.world_size)
    optimizer, scheduler = make_optimizer(model, config, steps, param_groups)
    run = Run(
        model=model,
        net=model,
        train=train,
        val=val,
        loss_fn=loss_fn,
        config=config,
        device=device,
        dist=dist,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler(device.type) if config.autocast == "fp16" and device.type == "cuda" else None,
        generator=generator,
        checkpoints=checkpoints,
        batch_transform=batch_transform,
        progress=progress,
        task=task,
        steps_per_epoch=steps,
        ema=WeightAverage(model, config.ema_decay) if config.ema_decay is not None else None,
    )
    return _train(run)


def _train(run: Run) -> TrainHistory:
    """Resume where the latest checkpoint left off (if any), train the remaining epochs, return the history."""
    resumed = resume(run)
    resumed_from = resumed.step if resumed is not None else None  # ``state`` moves on from here
    state = resumed or LoopState()
    if run.dist.enabled:
        device_ids = [run.device.index] if run.device.type == "cuda" else None
        run.net = DistributedDataParallel(run.model, device_ids=device_ids)
    run.started, run.earlier_seconds = time.perf_counter(), state.elapsed_seconds
    while state.epoch <= run.config.n_epochs and not state.stopped_early:
        _run_epoch(run, state)
    if resumed_from is not None and state.stopped_early:
        log.info("stopped early at step %d", state.step)
    if run.ema is not None:  # the model leaves with the weights that were evaluated
        run.model.load_state_dict(run.ema.shadow, strict=False)
    return TrainHistory(
        epochs=tuple(state.records),
        seconds=run.earlier_seconds + time.perf_counter() - run.started,
        evals=tuple(state.evals),
        best_step=state.best_step,
        best_accuracy=state.best_accuracy,
        n_steps=state.step,
        train_samples=state.train_samples,
        train_seconds=state.train_seconds,
        stopped_early=state.stopped_early,
        resumed_from_step=resumed_from,
    )


def _run_epoch(run: Run, state: LoopState) -> None:
    """The steps left in the current epoch, then its validation, record and checkpoint (unless stopped early)."""
    epoch = state.epoch
    epoch_start = time.perf_counter() - state.epoch_seconds
    micro_batches = _epoch_micro_batches(run, state)
    while not state.stopped_early:
        chunk = list(islice(micro_batches, run.config.grad_accum))
        if not chunk:
            break
        _step(run, state, chunk, epoch_start)
    if state.stopped_early:
        return
    _finish_epoch(run, state, time.perf_counter() - epoch_start)
    last = state.records[-1]
    run.progress(
        run.task,
        epoch * run.steps_per_epoch,
        run.total_steps,
        epoch=epoch,
        loss=last.train_loss,
        val_acc=state.last_val_accuracy,
    )


def _step(run: Run, state: LoopState, chunk: list, epoch_start: float) -> None:
    """One optimizer step over ``chunk``, counted on every rank; then progress, validation and checkpoints."""
    step_start = time.perf_counter()
    loss_sum, n_seen = _train_step(run, chunk)
    if run.ema is not None:
        run.ema.update(run.model)
    # sums over every rank
    total_loss, total_seen, n_bad = all_reduce_sum(
        [loss_sum, n_seen, 0.0 if math.isfinite(loss_sum) else 1.0], run.dist
    )
    state.train_seconds += time.perf_counter() - step_start
    state.train_samples += int(total_seen)
    state.elapsed_seconds = run.earlier_seconds + time.perf_counter() - run.started
    if n_bad or not math.isfinite(total_loss):
        raise TrainingDiverged(
            f"training diverged at step {state.step + 1} (epoch {state.epoch}): the loss became {total_loss / max(1, total_seen)}; "
            + kept_checkpoint(run.checkpoints)
            + "lower the learning rate"
        )
    state.count_step(len(chunk), total_loss, int(total_seen))
    state.epoch_seconds = time.perf_counter() - epoch_start
    loss = state.epoch_loss / state.epoch_seen
    run.progress(run.task, state.step, run.total_steps, epoch=state.epoch, loss=loss, val_acc=state.last_val_accuracy)
    evaluated = run.config.eval_every is not None and state.step % run.config.eval_every == 0
    if evaluated:
        _evaluate_now(run, state)
    if evaluated and state.best_step == state.step:
        save_checkpoint(run, state, best=True)
    elif run.config.checkpoint_every is not None and state.step % run.config.checkpoint_every == 0:
        save_checkpoint(run, state, best=False)


def _epoch_micro_batches(run: Run, state: LoopState) -> Iterator:
    """This rank's micro-batches of the current epoch from position ``state.micro_in_epoch`` on."""
    train = run.train
    if isinstance(train, EpochBatches):
        batches = list(train.epoch_batches(state.epoch))
        if run.dist.enabled:  # wrap around so that every rank steps equally often (said aloud by the caller)
            batches += batches[: padded_batch_count(len(batches), run.dist.world_size) - len(batches)]
        return islice(iter(shard(batches, run.dist)), state.micro_in_epoch, None)
    if isinstance(train, tuple):
        # The epoch's permutation is drawn from ``generator``: rewind it to the epoch start on resume.
        if state.micro_in_epoch and run.epoch_start_generator is not None:
            run.generator.set_state(run.epoch_start_generator)
        run.epoch_start_generator = run.generator.get_state()
    return islice(iter(iterate_batches(train, run.config.batch_size, run.generator)), state.micro_in_epoch, None)


def _train_step(run: Run, chunk: list) -> tuple[float, int]:
    """One optimizer step over ``chunk`` (this rank's micro-batches); returns (loss sum over examples, examples)."""
    run.net.train()
    run.optimizer.zero_grad(set_to_none=True)
    loss_sum, n_seen = 0.0, 0
    for i, (inputs, targets) in enumerate(chunk):
        inputs, targets = to_device(inputs, run.device), targets.to(run.device)
        if run.batch_transform is not None:
            inputs = run.batch_transform(inputs)
        # DDP: gradients are averaged over the ranks once, at the group's last micro-batch
        last = i == len(chunk) - 1
        sync = run.net.no_sync() if isinstance(run.net, DistributedDataParallel) and not last else nullcontext()
        with sync:
            with autocast_context(run.device, run.config.autocast):
                loss = run.loss_fn(forward(run.net, inputs), targets)
            scaled = loss if len(chunk) == 1 else loss / len(chunk)
            (run.scaler.scale(scaled) if run.scaler is not None else scaled).backward()
        loss_sum += float(loss.detach()) * len(targets)
        n_seen += len(targets)
    if run.config.max_grad_norm is not None:
        if run.scaler is not None:
            run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), run.config.max_grad_norm)
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.scheduler.step()
    return loss_sum, n_seen


def _evaluate_now(run: Run, state: LoopState) -> None:
    """Validate, record, keep the best checkpoint, count evaluations without gain."""
    with run.ema.applied(run.model) if run.ema is not None else nullcontext():
        val_loss, val_accuracy = evaluate(
            run.model, run.val, run.loss_fn, run.device, autocast=run.config.autocast, dist=run.dist
        )
    train_loss = state.since_eval_loss / max(1, state.since_eval_seen)
    state.evals.append(EvalRecord(state.step, state.epoch, train_loss, val_loss, val_accuracy))
    state.since_eval_loss, state.since_eval_seen = 0.0, 0
    state.last_val_accuracy = val_accuracy
    log.info("step %d: val loss %.4f, val accuracy %.4f", state.step, val_loss, val_accuracy)
    if val_accuracy > state.best_accuracy:
        state.best_accuracy, state.best_step, state.evals_without_gain = val_accuracy, state.step, 0
        return
    state.evals_without_gain += 1
    if run.config.patience is not None and state.evals_without_gain >= run.config.patience:
        state.stopped_early = True


def _finish_epoch(run: Run, state: LoopState, seconds: float) -> None:
    """The epoch's record (validated now unless its last step already was), then a checkpoint at the next epoch's start."""
    epoch = state.epoch
    train_loss = state.epoch_loss / max(1, state.epoch_seen)
    if not math.isfinite(train_loss):
        raise TrainingDiverged(f"training diverged at epoch {epoch} (loss {train_loss}); lower the learning rate")
    if not state.evals or state.evals[-1].step != state.step:
        _evaluate_now(run, state)
    last = state.evals[-1]
    state.records.append(EpochRecord(epoch, train_loss, last.val_loss, last.val_accuracy, seconds))
    log.info(
        "epoch %d: train loss %.4f, val loss %.4f, val accuracy %.4f",
        epoch,
        train_loss,
        last.val_loss,
        last.val_accuracy,
    )
    state.start_next_epoch()
    save_checkpoint(run, state, best=state.best_step == state.step)
