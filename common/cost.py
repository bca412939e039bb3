"""The cost of a method, measured one way everywhere: seconds, peak memory, throughput and the device's name.

    from common.cost import measure, per_second, device_name

    with measure("cpu") as usage:          # or "cuda" / "cuda:0" / a torch.device
        train(...)
    usage.seconds, usage.peak_memory_bytes  # wall seconds and the block's peak memory
    per_second(n_test, seconds)             # inference throughput: test examples per second
    device_name("cpu")                      # "Intel(R) Xeon(R) Processor, 2 cores"

Peak memory on CPU is the process's resident set (RSS) at its highest during the block: Linux's
high-water mark ``VmHWM``, reset when the block starts (``/proc/self/clear_refs``), so a later
block does not inherit an earlier one's peak; where it cannot be reset, the process's lifetime
peak (``ru_maxrss``). On CUDA it is ``torch.cuda.max_memory_allocated`` since the block started.
Blocks do not nest: an inner block resets the outer one's peak.

Only the standard library at the top: torch is imported only for a CUDA device.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a torch.device is accepted, never required: torch is imported only for a CUDA device
    import torch

CPU_MEMORY = "peak RSS"
CUDA_MEMORY = "max allocated (CUDA)"


@dataclass
class Usage:
    """What one ``measure`` block cost; filled in when the block ends."""

    device: str
    seconds: float = 0.0
    peak_memory_bytes: int | None = None
    memory_kind: str = CPU_MEMORY


@contextmanager
def measure(device: str | torch.device = "cpu") -> Iterator[Usage]:
    """Time a block and take its peak memory on ``device`` (see the module docstring for what that is)."""
    kind = _device_type(device)
    usage = Usage(kind, memory_kind=CUDA_MEMORY if kind == "cuda" else CPU_MEMORY)
    reset_peak_memory(kind)
    started = time.perf_counter()
    try:
        yield usage
    finally:
        usage.seconds = time.perf_counter() - started
        usage.peak_memory_bytes = peak_memory_bytes(kind)


def reset_peak_memory(device: str | torch.device = "cpu") -> None:
    """Start a new peak: CUDA's peak statistics, or the process's RSS high-water mark (Linux)."""
    if _device_type(device) == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
        return
    _return_freed_memory()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS
    except OSError:
        pass  # not Linux, or not allowed: the lifetime peak is reported instead


def _return_freed_memory() -> None:
    """Hand memory that earlier work freed back to the OS (glibc keeps it), so the next peak starts low."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory_bytes(device: str | torch.device = "cpu") -> int | None:
    """Peak memory since the last reset: CUDA max allocated, else the process's peak RSS (None if unknown)."""
    if _device_type(device) == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated())
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, kB elsewhere


def per_second(n_items: int, seconds: float | None) -> float | None:
    """Items per second, or None when no time was measured."""
    return n_items / seconds if seconds and seconds > 0 else None


def device_name(device: str | torch.device = "cpu") -> str:
    """The CPU model and its usable cores, or the GPU's name: what a timing was measured on."""
    if _device_type(device) == "cuda":
        import torch

        index = getattr(device, "index", None)
        if index is None and ":" in str(device):
            index = int(str(device).split(":", 1)[1])
        return torch.cuda.get_device_name(index or 0)
    return f"{cpu_model()}, {usable_cores()} cores"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "asimd", "bf16")


def cpu_flags() -> tuple[str, ...]:
    """Which of the instruction-set flags that decide int8/bf16 speed this CPU reports (x86 or ARM), in
    :data:`SPEED_FLAGS` order; empty where /proc/cpuinfo is not readable."""
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return ()
    return tuple(flag for flag in SPEED_FLAGS if flag in words)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def format_bytes(n: int | None) -> str:
    """1536 -> '1.5 KB', 2.5e9 -> '2.5 GB' (decimal units); None -> '-'."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _device_type(device: str | torch.device) -> str:
    kind = getattr(device, "type", None) or str(device).split(":", 1)[0]
    return "cuda" if kind == "cuda" else "cpu"
