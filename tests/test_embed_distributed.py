"""`mlx embed` on 2 torchrun ranks (gloo, CPU): the same store as one process, and resumable after kill -9."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from embeddings.store import EmbeddingStore
from tests.helpers import write_ag_news_folder

ROOT = Path(__file__).resolve().parents[1]


def embed_command(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cli.main",
        "embed",
        "--model",
        str(model),
        "--dataset",
        str(data),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--dtype",
        "fp32",
        "--batch-size",
        "2",
        "--pooling",
        "mean,cls",
        "--layer",
        "all",
        *extra,
    ]


def environment(tmp_path: Path) -> dict:
    # One thread per rank in both runs: the comparison is about sharding, not BLAS threading.
    return dict(os.environ, OMP_NUM_THREADS="1", MLX_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))


def assert_same_store(a: Path, b: Path) -> None:
    with EmbeddingStore(a) as one, EmbeddingStore(b) as two:
        assert one.splits == two.splits
        for split in one.splits:
            np.testing.assert_array_equal(one.labels(split), two.labels(split))
            for pooling in ("mean", "cls"):
                for layer in (0, 1, 2):
                    x, y = one.vectors(split, pooling, layer), two.vectors(split, pooling, layer)
                    assert x.tobytes() == y.tobytes(), (split, pooling, layer)  # bit-identical


def rank_pids(out: Path) -> list[int]:
    """The rank processes of an `mlx embed --out OUT` run (not the --nproc launcher, not torchrun's agent)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        words = [w.decode(errors="replace") for w in argv]
        if (
            "cli.main" in words
            and str(out) in words
            and "--nproc" not in words
            and "torch.distributed.run" not in words
        ):
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow  # two torchrun ranks, a kill and a resume: about 16 s on 2 cores
def test_two_ranks_write_the_one_rank_store_and_resume_after_a_rank_is_killed(tiny_bert, tmp_path):
    """One reference run, one 2-rank run killed with SIGKILL after its first shard, one 2-rank re-run."""
    data = write_ag_news_folder(tmp_path / "ag", n_train=1200, n_test=40)  # 38 + 2 shards of 32 texts
    env = environment(tmp_path)
    reference = tmp_path / "reference.h5"
    one = subprocess.run(embed_command(tiny_bert, data, reference), env=env, cwd=ROOT, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    out, partial = tmp_path / "s.h5", tmp_path / ".s.h5.partial"
    launcher = subprocess.Popen(
        embed_command(tiny_bert, data, out, "--nproc", "2"),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not list(partial.glob("train-*.npz")) and time.monotonic() < deadline and launcher.poll() is None:
            time.sleep(0.005)
        victims = rank_pids(out)
        if victims:
            os.kill(victims[-1], signal.SIGKILL)  # one rank dies as if its machine were lost
        killed = launcher.wait(timeout=120) != 0
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    if killed:  # else the machine was too fast to catch a rank mid-run: the re-run below still checks equality
        assert not out.exists() and list(partial.glob("*.npz")), "a killed run must leave shards and no store"
        kept = {p.name for p in partial.glob("*.npz")}
    print(f"rank killed mid-run: {killed}")
    extra = () if killed else ("--force",)
    again = subprocess.run(
        embed_command(tiny_bert, data, out, "--nproc", "2", *extra),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines() == [str(out)]  # only rank 0 printed
    assert "2 (torchrun; rank 0 writes the store)" in again.stderr
    assert_same_store(reference, out)
    assert not partial.exists()
    if killed:
        assert kept  # the re-run started from these shards (their files were kept, not discarded)
