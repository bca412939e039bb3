"""Digest of mlx's observable behaviour, to show a refactor changed nothing (issue 23).

Runs, offline and in a fresh folder:
- ``mlx vision compare --dataset digits --epochs 1`` (the three default presets: mlp-numpy,
  mlp-torch, cnn-strong) and hashes every weight tensor each preset wrote;
- ``mlx study text --model minilm --dataset demo --train-sizes 100,all`` and keeps its report with
  the cost columns (train s, peak memory, test/s: wall-clock measurements) masked.

Usage: ``python scripts/behaviour_check.py OUT_DIR`` writes ``OUT_DIR/digest.txt``; run it before
and after a change and ``diff`` the two digests. Takes about a minute on 2 idle cores.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

COST_COLUMNS = ("train s", "peak memory", "test/s")


def _run(args: list[str], out: Path) -> None:
    env = dict(os.environ, MLX_HOME=str(out / "home"), HF_HUB_OFFLINE="1")
    subprocess.run([sys.executable, "-m", "cli.main", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def _tensor_hashes(path: Path) -> list[str]:
    if path.suffix == ".npz":
        with np.load(path) as arrays:
            items = {name: arrays[name] for name in arrays.files}
    else:
        items = {name: t.detach().cpu().numpy() for name, t in torch.load(path, weights_only=True).items()}
    return [
        f"{name} {value.dtype} {value.shape} {hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:16]}"
        for name, value in sorted(items.items())
    ]


def _masked_report(text: str) -> list[str]:
    lines, masked = text.splitlines(), []
    cost_at: list[int] = []
    for line in lines:
        if line.startswith("| method"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            cost_at = [i for i, c in enumerate(cells) if c in COST_COLUMNS]
        elif line.startswith("| ") and cost_at:
            cells = [c.strip() for c in line.strip("|").split("|")]
            line = "| " + " | ".join("~" if i in cost_at else c for i, c in enumerate(cells)) + " |"
        # the device sentence names the CPU; elapsed seconds elsewhere are not behaviour either
        masked.append(re.sub(r"\d+(\.\d+)? s\b", "~ s", line))
    return masked


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=False)
    _run(["vision", "compare", "--dataset", "digits", "--epochs", "1", "--out", str(out / "vision")], out)
    _run(
        ["study", "text", "--model", "minilm", "--dataset", "demo", "--train-sizes", "100,all"]
        + ["--out", str(out / "study")],
        out,
    )
    digest = ["# vision compare: weight tensors per preset"]
    for weights in sorted((out / "vision").glob("*/weights.*")):
        digest.append(f"## {weights.parent.name}/{weights.name}")
        digest += _tensor_hashes(weights)
    digest.append("# study text demo: report with cost columns masked")
    digest += _masked_report((out / "study" / "report" / "report.md").read_text())
    (out / "digest.txt").write_text("\n".join(digest) + "\n")
    print(out / "digest.txt")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/behaviour_check.py OUT_DIR (a new folder)")
    main(Path(sys.argv[1]))
