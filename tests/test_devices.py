"""training.devices.native_bf16: bf16 is native only where the CPU has the instructions and torch may use them."""

import pytest
import torch

from training.devices import native_bf16


@pytest.mark.parametrize(
    "avx512_bf16, amx, aten, onednn, native",
    [
        (True, False, "AVX512", "", True),  # e.g. AMD EPYC Zen 4
        (False, True, "AVX512", "", True),  # e.g. Intel Xeon Sapphire Rapids
        (True, True, "AVX512", "AVX512_CORE_AMX", True),
        (False, False, "AVX512", "", False),  # AVX-512 without bf16 (Skylake, Zen 3 has no AVX-512 at all)
        (False, False, "AVX2", "", False),  # AVX2-only
        (True, True, "AVX2", "", False),  # ATEN_CPU_CAPABILITY=avx2 on a bf16 CPU
        (True, True, "AVX512", "AVX2", False),  # ONEDNN_MAX_CPU_ISA=AVX2 on a bf16 CPU
        (True, True, "AVX512", "avx512_core_vnni", False),
        (False, False, "DEFAULT", "", False),  # e.g. ARM, where the x86 probes say no
    ],
)
def test_native_bf16_needs_the_instructions_and_no_cap_below_them(monkeypatch, avx512_bf16, amx, aten, onednn, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: aten)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", onednn)
    assert native_bf16("cpu") is native
