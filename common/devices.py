"""The device and dtype choices of embed, finetune, attention and vision, and what can be said of them
without torch (the CLI builds its options from these enums at start-up).

Resolving a choice against the hardware is training/devices.py's job.
"""

from __future__ import annotations

import os
from enum import Enum
from typing import Protocol

from common.errors import ConfigError


class Device(str, Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class DType(str, Enum):
    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class EncoderDType(str, Enum):
    """``--dtype`` of the commands that only run an encoder forward (embed, attention stats): :class:`DType`'s
    choices plus int8 (dynamic quantisation, text.quantize), which changes the vectors and so is never automatic."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    INT8 = "int8"


DEVICE_CHOICES = ", ".join(d.value for d in Device)


class HasDeviceType(Protocol):
    """A device object such as ``torch.device``: its ``type`` is 'cpu' or 'cuda'."""

    @property
    def type(self) -> str: ...


def cuda_possible() -> bool:
    """False when this machine cannot have CUDA (no NVIDIA driver): then 'auto' is CPU without importing torch."""
    return os.path.exists("/proc/driver/nvidia") or any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvidiactl"))


def resolve_dtype(requested: DType | str, device: HasDeviceType | str, cpu_default: DType = DType.FP32) -> DType:
    """'auto' -> bf16 on CUDA, ``cpu_default`` on CPU; an explicit choice is kept as it is.

    ``device`` is a device or its name ('cpu', 'cuda:0'); only its type is read."""
    try:
        dtype = DType(requested)
    except ValueError:
        raise ConfigError(f"unknown dtype {requested!s}; choose one of {', '.join(d.value for d in DType)}") from None
    device_type = getattr(device, "type", str(device).split(":")[0])
    if dtype is DType.AUTO:
        return DType.BF16 if device_type == "cuda" else cpu_default
    return dtype


def resolve_encoder_dtype(requested: EncoderDType | str, device: HasDeviceType | str) -> EncoderDType:
    """:func:`resolve_dtype` for an encoder's forward; int8 is kept, on CPU only (its engine: text.quantize.check_int8)."""
    try:
        dtype = EncoderDType(requested)
    except ValueError:
        choices = ", ".join(d.value for d in EncoderDType)
        raise ConfigError(f"unknown dtype {requested!s}; choose one of {choices}") from None
    device_type = getattr(device, "type", str(device).split(":")[0])
    if dtype is EncoderDType.INT8 and device_type != "cpu":
        raise ConfigError(
            f"--dtype int8 runs on CPU only (torch's dynamic int8 kernels), not on {device}; add --device cpu, or use --dtype bf16 on the GPU"
        )
    if dtype is EncoderDType.INT8:
        return dtype
    return EncoderDType(resolve_dtype(dtype.value, device).value)


def weights_dtype(dtype: EncoderDType | DType) -> DType:
    """The dtype an encoder is loaded in: int8 quantises fp32 weights after loading."""
    return DType.FP32 if dtype == EncoderDType.INT8 else DType(dtype.value)
