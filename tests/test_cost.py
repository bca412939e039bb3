"""common.cost: the one way to measure a method's seconds, peak memory, throughput and device."""

import numpy as np
import pytest

from common.cost import device_name, format_bytes, measure, peak_memory_bytes, per_second


def test_measure_takes_the_peak_of_its_own_block_not_an_earlier_one():
    with measure("cpu") as big:
        block = np.ones(64 * 1024 * 1024 // 8)  # 64 MB touched
        del block
    with measure("cpu") as small:
        pass
    assert big.seconds > 0 and big.memory_kind == "peak RSS"
    assert big.peak_memory_bytes >= 64 * 1024 * 1024
    # the second block started a new peak (where Linux lets it): it does not inherit the 64 MB
    reset_works = small.peak_memory_bytes < big.peak_memory_bytes
    assert reset_works or peak_memory_bytes("cpu") == small.peak_memory_bytes


def test_helpers():
    assert per_second(100, 4.0) == 25.0
    assert per_second(100, 0.0) is None and per_second(5, None) is None
    assert format_bytes(None) == "-" and format_bytes(512) == "512 B"
    assert format_bytes(1_500_000) == "1.5 MB" and format_bytes(2_500_000_000) == "2.5 GB"
    name = device_name("cpu")
    assert name.endswith("cores") and name.split(",")[0]


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_device_names_the_gpu(device):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    assert device_name(device) == torch.cuda.get_device_name(0)
    with measure(device) as usage:
        torch.ones(1024, 1024, device=device)
    assert usage.memory_kind.startswith("max allocated") and usage.peak_memory_bytes >= 4 * 1024 * 1024
