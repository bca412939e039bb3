"""A really full disk (issue 8 item 10): a 1 MiB tmpfs, where the machine lets the tests mount one
(root in a container with CAP_SYS_ADMIN); elsewhere the patched-writer tests cover the same paths."""

import subprocess

import pytest

from tests.helpers import invoke, one_line_error, write_ag_news_folder


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=False)


def test_vision_run_on_a_full_disk(small_disk):
    result = invoke("vision", "compare", "--models", "mlp-numpy", "--epochs", "1", "--out", small_disk / "runs")
    one_line_error(result, f"no space left on device {small_disk}", "weights.npz")
    assert not (small_disk / "runs").exists()  # no half run under its name,
    assert not [p for p in small_disk.iterdir() if ".partial-" in p.name]  # and the staging folder went with the error


def test_embed_on_a_full_disk_then_resumes_elsewhere(tiny_bert, small_disk, tmp_path):
    (small_disk / "ballast").write_bytes(b"\0" * (1024 * 1024 - 16 * 1024))  # leave 16 KiB
    data = write_ag_news_folder(tmp_path / "ag", n_train=200, n_test=40)
    result = invoke(
        "embed",
        "--model",
        tiny_bert,
        "--dataset",
        data,
        "--layer",
        "all",
        "--pooling",
        "all",
        "--out",
        small_disk / "s.h5",
    )
    one_line_error(result, f"no space left on device {small_disk}")
    assert not (small_disk / "s.h5").exists()
    assert not [p for p in small_disk.iterdir() if ".partial-" in p.name]  # no stray temporary file


def test_probe_run_on_a_full_disk(small_disk, tmp_path):
    from probes.synthetic import write_synthetic_store

    store = write_synthetic_store(tmp_path / "s.h5")
    (small_disk / "ballast").write_bytes(b"\0" * (1024 * 1024 - 4096))
    result = invoke("probe", "knn", "--store", store, "--k", "1", "--out", small_disk / "run")
    one_line_error(result, "no space left on device")
    assert [p.name for p in small_disk.iterdir()] == ["ballast"]
