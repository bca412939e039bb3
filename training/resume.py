"""Resume: what a checkpoint holds (weights, optimiser, schedule, scaler, weight average, every RNG state
and the loop's position), how it is checked before anything is loaded, and how a run is put back.

A run restored from a checkpoint continues exactly: on CPU it ends bit-identical to a run that
was never interrupted.
"""

import logging
import random
from dataclasses import asdict, fields
from functools import partial
from typing import Any

import numpy as np
import torch

from common.artifacts import to_plain
from common.errors import ConfigError, StoreError
from common.schema import check_fields
from training.distributed import all_gather
from training.history import EpochRecord, EvalRecord
from training.state import LoopState, Run, TrainingDiverged, kept_checkpoint
from training.weights import load_trainable_state, trainable_state

log = logging.getLogger(__name__)


def rng_state(generator: torch.Generator) -> dict:
    """Every RNG state a run draws from, as tensors and plain values (loads with ``weights_only=True``)."""
    version, mt_words, gauss_next = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": {"version": version, "state": torch.tensor(mt_words, dtype=torch.int64), "gauss_next": gauss_next},
        # (624,) uint32 key widened to int64: a NumPy array would need pickle to load
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict, generator: torch.Generator) -> None:
    """Inverse of ``rng_state``."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": numpy["key"].numpy().astype(np.uint32), "pos": numpy["pos"]},
            "has_gauss": numpy["has_gauss"],
            "gauss": numpy["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run: Run, state: LoopState, best: bool) -> None:
    """Write a checkpoint of the state *between* steps; every rank takes part (RNG states are gathered)."""
    if run.checkpoints is None:
        return
    if not all(bool(torch.isfinite(p).all()) for p in run.model.parameters()):
        raise TrainingDiverged(
            f"training diverged at step {state.step}: the weights became nan or inf; {kept_checkpoint(run.checkpoints)}lower the learning rate"
        )
    rng = all_gather(rng_state(run.generator), run.dist)  # every rank's states, in rank order
    if not run.dist.is_main:
        return
    run.checkpoints.save(
        {
            "model": trainable_state(run.model),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "ema": run.ema.state_dict() if run.ema is not None else None,
            "rng": rng,
            "epoch_start_generator": run.epoch_start_generator,
            "loop": asdict(state),
            "config": to_plain(run.config),
            "world_size": run.dist.world_size,
        },
        state.step,
        best,
    )


_CHECKPOINT_SCHEMA = {
    "model": (dict,),
    "optimizer": (dict,),
    "scheduler": (dict,),
    "scaler": (dict, type(None)),
    "ema": (dict, type(None)),
    "rng": (list,),
    "epoch_start_generator": (torch.Tensor, type(None)),
    "loop": (dict,),
    "config": (dict,),
    "world_size": (int,),
}
_FIELD_TYPES: dict[Any, tuple[type, ...]] = {int: (int,), float: (float, int), bool: (bool,)}
_LOOP_SCHEMA: dict[str, tuple[type, ...]] = {
    f.name: _FIELD_TYPES.get(f.type, (list,)) for f in fields(LoopState) if f.name != "best_step"
} | {"best_step": (int, type(None))}
_RNG_SCHEMA = {
    "python": (dict,),
    "numpy": (dict,),
    "torch": (torch.Tensor,),
    "generator": (torch.Tensor,),
    "cuda": (list,),
}


def checkpoint_problems(run: Run, saved: dict) -> list[str]:
    """What keeps ``saved`` from restoring ``run`` exactly (empty: nothing); read before anything is loaded."""
    problems = check_fields(saved, _CHECKPOINT_SCHEMA, "checkpoint")
    if problems:
        return problems
    problems += check_fields(saved["loop"], _LOOP_SCHEMA, "checkpoint.loop")
    if not saved["rng"]:
        problems.append("checkpoint.rng is empty")
    for i, state in enumerate(saved["rng"]):
        problems += check_fields(state, _RNG_SCHEMA, f"checkpoint.rng[{i}]", optional={"cuda"})
    expected = run.model.state_dict()
    for name, value in saved["model"].items():
        if name not in expected:
            problems.append(f"checkpoint.model has weight {name!r}, which this model lacks")
        elif not isinstance(value, torch.Tensor) or value.shape != expected[name].shape:
            problems.append(f"checkpoint.model[{name!r}] is not a tensor of shape {tuple(expected[name].shape)}")
    return problems


def restore(run: Run, saved: dict) -> LoopState:
    """Load ``saved`` into ``run`` (weights, optimiser, schedule, scaler, average, RNG states); its loop state."""
    try:
        return _restore_checked(run, saved)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        # what the schema above cannot see (inside the optimizer's or the generator's state)
        where = getattr(run.checkpoints, "folder", "the checkpoint folder")
        raise StoreError(
            f"the latest checkpoint in {where} does not fit this run ({type(exc).__name__}: {str(exc).strip()[:160]}); "
            "delete it to resume from an earlier checkpoint, or pass --force to start over"
        ) from None


def _restore_checked(run: Run, saved: dict) -> LoopState:
    if saved.get("world_size", 1) != run.dist.world_size:
        raise ConfigError(
            f"the checkpoint was written by {saved.get('world_size', 1)} process(es), this run has {run.dist.world_size}; resume with the same --nproc"
        )
    load_trainable_state(run.model, saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    if run.scaler is not None and saved.get("scaler") is not None:
        run.scaler.load_state_dict(saved["scaler"])
    if (run.ema is None) != (saved.get("ema") is None):  # a dropped or missing average would change the result
        raise ConfigError(
            f"the checkpoint was written {'without' if run.ema is not None else 'with'} a weight average and this "
            f"run keeps {'one' if run.ema is not None else 'none'}; resume with the original ema_decay"
        )
    if run.ema is not None:
        run.ema.load_state_dict(saved["ema"])
    rng = saved["rng"]
    restore_rng_state(rng[run.dist.rank] if run.dist.rank < len(rng) else rng[0], run.generator)
    run.epoch_start_generator = saved.get("epoch_start_generator")
    loop = saved["loop"]
    loop["records"] = [EpochRecord(**r) if isinstance(r, dict) else EpochRecord(*r) for r in loop["records"]]
    loop["evals"] = [EvalRecord(**r) if isinstance(r, dict) else EvalRecord(*r) for r in loop["evals"]]
    return LoopState(**loop)


def resume(run: Run) -> LoopState | None:
    """Put ``run`` back where its latest checkpoint left it and return the loop's state there (None: no checkpoint)."""
    if run.checkpoints is None:
        return None
    saved = run.checkpoints.load_latest(partial(checkpoint_problems, run))
    if saved is None:
        return None
    state = restore(run, saved)
    log.info("resumed from step %d (epoch %d, micro-batch %d)", state.step, state.epoch, state.micro_in_epoch)
    return state
