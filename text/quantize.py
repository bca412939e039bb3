"""int8 inference for frozen encoders: dynamic quantisation of their linear layers (``--dtype int8``, CPU only).

torch.ao's dynamic quantisation stores each quantised ``nn.Linear``'s weights as int8 (one scale per
output channel) and, on every call, quantises the input to uint8 with the range of that very tensor.
It changes the vectors, so it is opt-in and part of a store's identity (:data:`INT8_SCHEME`).

Three choices, each measured on AG News texts with all-MiniLM-L6-v2 (README, "int8"):

- **oneDNN's kernels** (engine ``onednn``): faster than fbgemm's here (AMX on the project's Xeon), and
  they obey ``ONEDNN_MAX_CPU_ISA``, so an AVX2-only CPU can be imitated on a newer one; fbgemm cannot be.
- **8-bit activations** (``reduce_range=False``). torch's default keeps 7 bits, a guard against int16
  saturation in fbgemm's AVX2 kernels without VNNI; on these texts 7 bits gave a mean cosine to fp32
  of 0.977 where 8 bits gave 0.993 (every Linear quantised).
- **Narrowing layers stay fp32**: a Linear with more inputs than outputs is the feed-forward
  down-projection, whose input is a GELU output with a long tail (up to about 30 where most values
  are below 1), so one per-tensor scale leaves the bulk of it a few levels. Keeping those layers
  fp32 took the minimum cosine from 0.98 to 0.99, for about half of the int8 speed-up (2.44x ->
  1.91x sentence-transformers on 1,000 texts).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

from common.errors import ConfigError

if TYPE_CHECKING:  # torch loads with the model: a store's identity (INT8_SCHEME) is read without it
    import torch

log = logging.getLogger(__name__)

INT8_ENGINE = "onednn"
INT8_SCHEME = (
    "torch.ao dynamic int8, onednn: weights per output channel (qint8), activations per tensor (quint8, 8 bits); "
    "narrowing linear layers (feed-forward down-projections) kept fp32"
)


def check_int8() -> None:
    """Refuse, in one line, a torch build that cannot run int8 here (no oneDNN engine, or torch.ao's dynamic
    quantisation gone). That int8 runs on CPU only is checked with the dtype (common.devices)."""
    import torch

    engines = [engine for engine in torch.backends.quantized.supported_engines if engine != "none"]
    if INT8_ENGINE not in engines or _quantize_dynamic() is None:
        raise ConfigError(
            f"--dtype int8 needs torch.ao's dynamic quantisation with the {INT8_ENGINE!r} engine, which torch "
            f"{torch.__version__} here lacks (engines: {', '.join(engines) or 'none'}); use --dtype fp32"
        )


def quantize_encoder(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose widening and square ``nn.Linear`` layers compute in int8 (see the module doc).

    The input model is left as it was (fp32, on CPU). Embeddings, LayerNorm, attention scores and
    softmax stay fp32, and so do the outputs. Call :func:`check_int8` first.
    """
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig

    names = {
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module.in_features <= module.out_features
    }
    if not names:
        raise ConfigError(f"--dtype int8 found no linear layer to quantise in {type(model).__name__}; use --dtype fp32")
    quantize_dynamic = _quantize_dynamic()
    # torch.ao tells developers to move to torchao; said once per call it would only clutter a user's stderr
    with _engine(INT8_ENGINE), warnings.catch_warnings():  # packed weights keep the engine they were packed for
        warnings.simplefilter("ignore")
        quantized = quantize_dynamic(
            model,
            {name: per_channel_dynamic_qconfig for name in names},
            dtype=torch.qint8,
            mapping={torch.nn.Linear: _int8_linear()},
        )
    log.info("int8: %d linear layers quantised, the narrowing ones kept fp32", len(names))
    return quantized


def _quantize_dynamic():
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:  # deprecated in torch 2.10 in favour of torchao; a later torch may drop it
        return None
    return quantize_dynamic


@contextlib.contextmanager
def _engine(name: str) -> Iterator[None]:
    import torch

    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


@functools.cache
def _int8_linear() -> type:
    """torch.ao's dynamic Linear with 8-bit activations (its own forward asks for 7: ``reduce_range=True``)."""
    import torch
    from torch.ao.nn.quantized.dynamic import Linear

    class Int8Linear(Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params, reduce_range=False)

    return Int8Linear
