"""torchrun awareness shared by ``mlx embed`` and ``mlx finetune``.

Under ``torchrun`` every rank runs the same command; ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` tell
each process who it is. gloo is used on CPU, nccl on CUDA (one GPU per rank, chosen by LOCAL_RANK).
``--nproc N`` on a command re-runs it under ``torch.distributed.run --standalone`` on this machine.
Only rank 0 prints and writes run folders; every rank may write its own shard files.

torch is imported only inside the functions that talk to the process group: the CLI reads
``dist_info`` and launches ranks before any heavy library is loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

from common.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """Who this process is, from the torchrun environment (a single process when it is absent)."""
    try:
        return DistInfo(
            int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
        )
    except ValueError:
        raise ConfigError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (they are set by torchrun)") from None


def init_distributed(device_type: str = "cpu") -> DistInfo:
    """Join the process group when launched by torchrun (idempotent); a no-op for one process."""
    info = dist_info()
    if not info.enabled:
        return info
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            import torch

            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def shard(batches: Iterable[T], dist: DistInfo) -> Iterable[T]:
    """This rank's share of ``batches``: every world-size-th one, from its rank on (all of them for one process)."""
    return islice(batches, dist.rank, None, dist.world_size) if dist.enabled else batches


def all_reduce_sum(values: list[float], dist: DistInfo) -> list[float]:
    """Element-wise sums of ``values`` over every rank (``values`` itself for one process)."""
    if not dist.enabled:
        return values
    import torch
    import torch.distributed as tdist

    tensor = torch.tensor(values, dtype=torch.float64)
    tdist.all_reduce(tensor)
    return tensor.tolist()


def all_gather(value: Any, dist: DistInfo) -> list:
    """``value`` of every rank, in rank order (``[value]`` for one process)."""
    if not dist.enabled:
        return [value]
    import torch.distributed as tdist

    gathered: list = [None] * dist.world_size
    tdist.all_gather_object(gathered, value)
    return gathered


def barrier() -> None:
    """Wait for every rank (no-op for one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N`` (the launched ranks must not launch again)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        out.append(arg)
    return out


def launch_local(nproc: int, argv: list[str] | None = None) -> int:
    """Re-run this mlx command as ``nproc`` ranks on this machine; returns the launcher's exit code.

    Equivalent to ``torchrun --standalone --nproc_per_node N -m cli.main ARGS``.
    """
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    if dist_info().enabled:
        raise ConfigError("--nproc cannot be used inside torchrun; drop it (torchrun already started the ranks)")
    args = strip_nproc(list(sys.argv[1:] if argv is None else argv))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "cli.main",
        *args,
    ]
    env = dict(
        os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    )
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 130
