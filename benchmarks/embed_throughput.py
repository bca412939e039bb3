"""Embedding throughput: sentence-transformers `encode` vs `mlx embed` (fp32, all poolings) vs bf16 vs int8.

Same model (the bundled all-MiniLM-L6-v2), same texts, one run. Prints the CPU (model, cores,
int8/bf16 instruction flags, torch's ISA caps) and the load average, then sentences/s, the ratios,
and the cosine of mlx's mean pooling to sentence-transformers' embedding (and of bf16 and int8 to
fp32: mean and minimum over the texts).

    python benchmarks/embed_throughput.py                 # AG News test texts from ../shared/data when present
    python benchmarks/embed_throughput.py --n 2000 --batch-size 64
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        python benchmarks/embed_throughput.py --skip bf16,ranks   # torch's kernels as on an AVX2-only CPU

The 2-rank row runs `mlx embed --nproc 2` as a whole process (interpreters, two model loads, gloo
rendezvous included); on a 2-core machine it measures the cost of coordination, not a speed-up.

Requires sentence-transformers (pip install -e ".[bench]").
"""

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cost import cpu_flags, device_name  # noqa: E402
from common.devices import EncoderDType  # noqa: E402
from embeddings.extract import EmbedConfig, extract_embeddings, plan_extraction  # noqa: E402
from embeddings.store import EmbeddingStore  # noqa: E402
from text.datasets import load_demo  # noqa: E402
from text.models import bundled_minilm_path  # noqa: E402

# ../shared/data from a checkout in /work/main, ../../shared/data from a worktree in /work/wt/<name>
AG_NEWS_TEST = next(
    (
        p
        for p in (Path(__file__).resolve().parents[i] / "shared" / "data" / "ag_news" / "test.csv" for i in (2, 3))
        if p.exists()
    ),
    Path(__file__).resolve().parents[2] / "shared" / "data" / "ag_news" / "test.csv",
)


def load_texts(n: int) -> tuple[list[str], str]:
    if AG_NEWS_TEST.exists():
        with open(AG_NEWS_TEST, newline="", encoding="utf-8") as fh:
            texts = [f"{title.strip()} {body.strip()}" for _, title, body in csv.reader(fh)]
        return texts[:n], f"AG News test ({AG_NEWS_TEST})"
    return list(load_demo().splits["test"].texts), "bundled demo set (AG News files not found)"


def run_mlx(texts: list[str], dtype: EncoderDType, batch_size: int, folder: Path) -> tuple[float, np.ndarray]:
    data = folder / f"texts-{dtype.value}.csv"
    with open(data, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows([t, 0] for t in texts)
    config = EmbedConfig(
        dataset=str(data),
        model="minilm",
        poolings=("all",),
        dtype=dtype,
        batch_size=batch_size,
        max_length=256,
        out=folder / f"bench-{dtype.value}.h5",
        device="cpu",
    )
    plan = plan_extraction(config)
    started = time.perf_counter()
    result = extract_embeddings(plan)
    seconds = time.perf_counter() - started  # model load (and int8 quantisation) + forward + pooling + HDF5 write
    with EmbeddingStore(result.path) as store:
        mean = store.vectors(store.splits[0], "mean")
    return seconds, mean


def run_mlx_ranks(texts: list[str], nproc: int, batch_size: int, folder: Path) -> tuple[float, np.ndarray]:
    """`mlx embed --nproc N` (fp32) as a subprocess: N torchrun ranks share the shards, rank 0 writes the store.

    Timed from launch to exit, so it includes N interpreter starts, N model loads and the gloo
    rendezvous: on a machine with as many cores as ranks this is the cost of coordination.
    """
    import subprocess

    data = folder / "texts-ranks.csv"
    with open(data, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows([t, 0] for t in texts)
    out = folder / f"bench-{nproc}-ranks.h5"
    command = [
        sys.executable,
        "-m",
        "cli.main",
        "embed",
        "--dataset",
        str(data),
        "--model",
        "minilm",
        "--pooling",
        "all",
        "--dtype",
        "fp32",
        "--device",
        "cpu",
        "--batch-size",
        str(batch_size),
        "--max-length",
        "256",
        "--out",
        str(out),
        "--nproc",
        str(nproc),
    ]
    env = dict(os.environ, MLX_HOME=str(folder / "home"), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    with EmbeddingStore(out) as store:
        mean = store.vectors(store.splits[0], "mean")
    return seconds, mean


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
OPTIONAL_RUNS = ("bf16", "int8", "ranks")


def describe_machine() -> str:
    """The CPU a timing belongs to: model, cores, flags, torch's ISA and any cap set in the environment."""
    import torch

    caps = ", ".join(f"{name}={os.environ[name]}" for name in ISA_VARIABLES if name in os.environ) or "none"
    return (
        f"CPU: {device_name('cpu')}; flags: {' '.join(cpu_flags()) or 'unknown'}\n"
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, ATen CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; ISA caps: {caps}"
    )


def load_text() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of texts")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--skip", default="", help=f"comma-separated runs to leave out: {', '.join(OPTIONAL_RUNS)}")
    args = parser.parse_args()
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    if skip - set(OPTIONAL_RUNS):
        parser.error(f"--skip takes {', '.join(OPTIONAL_RUNS)}; got {', '.join(sorted(skip - set(OPTIONAL_RUNS)))}")
    from sentence_transformers import SentenceTransformer

    texts, source = load_texts(args.n)
    print(f"{len(texts)} texts from {source}, batch {args.batch_size}")
    print(describe_machine())
    print(f"before: {load_text()}", flush=True)
    st = SentenceTransformer(str(bundled_minilm_path()), device="cpu")
    st.max_seq_length = 256
    st.encode(texts[:64], batch_size=args.batch_size)  # warm-up, as mlx's model load is inside its timing
    started = time.perf_counter()
    st_vectors = st.encode(texts, batch_size=args.batch_size, normalize_embeddings=False, convert_to_numpy=True)
    st_seconds = time.perf_counter() - started
    rows = [("sentence-transformers encode (fp32)", st_seconds)]
    vectors = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in (EncoderDType.FP32, EncoderDType.BF16, EncoderDType.INT8):
            if dtype.value not in skip:
                seconds, vectors[dtype.value] = run_mlx(texts, dtype, args.batch_size, Path(tmp))
                rows.append((f"mlx embed {dtype.value}, all 6 poolings + HDF5", seconds))
        if "ranks" not in skip:
            ranks_seconds, ranks_mean = run_mlx_ranks(texts, 2, args.batch_size, Path(tmp))
            rows.append(("mlx embed fp32, 2 torchrun ranks (process)", ranks_seconds))
    n = len(texts)
    print(f"\n{'run':<42}{'seconds':>9}{'sent/s':>9}{'vs ST':>8}")
    for name, seconds in rows:
        print(f"{name:<42}{seconds:>9.2f}{n / seconds:>9.0f}{st_seconds / seconds:>7.2f}x")
    print(f"after: {load_text()}")
    fp32 = vectors["fp32"]
    c_st = cosine(fp32, st_vectors)
    print(f"\ncosine(mlx fp32 mean, ST)   min {c_st.min():.6f}  mean {c_st.mean():.6f}")
    for name in ("bf16", "int8"):
        if name in vectors:
            c = cosine(vectors[name], fp32)
            print(f"cosine(mlx {name} mean, fp32) min {c.min():.6f}  mean {c.mean():.6f}")
    if "ranks" not in skip:
        print(f"2 ranks vs 1 rank (fp32 mean): max |difference| {np.abs(ranks_mean - fp32).max():.2e}")
        print(
            f"2 ranks: {os.cpu_count()} CPUs here; with as many cores as ranks the row shows coordination cost, not a speed-up"
        )


if __name__ == "__main__":
    main()
