"""The one device and dtype resolver for embed, finetune, attention and vision, and the CPU threads a
block runs with.

torch is imported only when a choice is resolved: ``resolve_device_name`` answers 'cpu' without it,
which keeps a cached ``mlx embed`` fast to start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from common.devices import DEVICE_CHOICES, Device, DType, cuda_possible, resolve_dtype
from common.errors import ConfigError
from common.options import CPUS

if TYPE_CHECKING:
    import torch


def resolve_device(requested: Device | str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' without CUDA and unknown names are refused.

    ``cuda:N`` is accepted for a given GPU. The caller says the choice aloud.
    """
    import torch

    name = requested.value if isinstance(requested, Device) else str(requested).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base, _, index = name.partition(":")
    if base not in ("cpu", "cuda") or (index and not index.isdigit()) or (base == "cpu" and index):
        raise ConfigError(f"unknown device {requested!s}; choose one of {DEVICE_CHOICES} (or cuda:N)")
    if base == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here; use --device cpu or auto")
    if base == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(name)


def resolve_device_name(requested: Device | str = "auto") -> str:
    """:func:`resolve_device` as a string; 'cpu', and 'auto' on a machine without an NVIDIA driver, skip torch."""
    name = requested.value if isinstance(requested, Device) else str(requested).strip().lower()
    if name == "cpu" or (name == "auto" and not cuda_possible()):
        return "cpu"
    return str(resolve_device(requested))


def native_bf16(device: torch.device | str) -> bool:
    """Whether bf16 matrix products and convolutions run natively here: a CUDA GPU that supports bf16, or
    a CPU with AVX512-BF16 or AMX. Elsewhere (e.g. AVX2-only CPUs) torch emulates them, slower than fp32."""
    import torch

    device_type = getattr(device, "type", str(device).split(":")[0])
    if device_type == "cuda":  # Ampere (compute capability 8.0) and later; older GPUs only emulate bf16
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so looked up defensively
    has_bf16 = any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    return has_bf16 and not cpu_isa_capped_below_bf16()


# oneDNN's ISA levels (ONEDNN_MAX_CPU_ISA) that have no bf16 dot-product instructions.
ONEDNN_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


def cpu_isa_capped_below_bf16() -> bool:
    """Whether the environment keeps torch off the CPU's bf16 instructions although the CPU has them:
    ``ONEDNN_MAX_CPU_ISA`` at an ISA without bf16 (matrix products) or ``ATEN_CPU_CAPABILITY`` below avx512
    (ATen's own kernels). ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` runs as an AVX2-only CPU."""
    import torch

    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    aten = torch.backends.cpu.get_cpu_capability().upper()
    return isa in ONEDNN_ISAS_WITHOUT_BF16 or not aten.startswith("AVX512")


def preferred_dtype(requested: DType | str, device: torch.device | str) -> DType:
    """The compute dtype for training under autocast (weights stay fp32): 'auto' -> bf16 where the hardware
    computes it natively (:func:`native_bf16`), else fp32; an explicit choice is kept, but fp16 only on CUDA
    (where it trains with a grad scaler)."""
    dtype = resolve_dtype(requested, device)
    if DType(requested) is DType.AUTO:
        return DType.BF16 if native_bf16(device) else DType.FP32
    if dtype is DType.FP16 and getattr(device, "type", str(device).split(":")[0]) != "cuda":
        raise ConfigError("--dtype fp16 needs CUDA (it trains with a grad scaler there); on CPU use bf16 or fp32")
    return dtype


def torch_dtype(dtype: DType) -> torch.dtype:
    """The torch dtype of a resolved (non-auto) DType."""
    import torch

    return {DType.FP32: torch.float32, DType.BF16: torch.bfloat16, DType.FP16: torch.float16}[DType(dtype)]


@contextmanager
def cpu_threads(n_threads: int | None) -> Iterator[int]:
    """Run the block with ``n_threads`` for torch and the BLAS under NumPy (None: leave both as they are).

    On a CPU shared with other jobs, fewer threads than cores is often faster: a thread pool whose
    threads wait for each other stalls whenever one of them is descheduled.
    """
    import torch

    if n_threads is None:
        yield torch.get_num_threads()
        return
    CPUS.check(n_threads, "threads")
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        with threadpool_limits(n_threads):
            yield n_threads
    finally:
        torch.set_num_threads(previous)
