"""`mlx finetune --nproc 2`: torchrun DDP on CPU (gloo) with a tiny BERT: ranks in sync, like one process, resumable."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.checkpoints import CheckpointDir
from finetune.config import FinetuneConfig
from finetune.run import prepare_finetune, run_finetune
from tests.helpers import run_summary, write_ag_news_folder
from tests.test_finetune import same_run, weights

REPO = Path(__file__).resolve().parents[1]
# The documented tolerance between a 2-process run and a 1-process run with the same global batch:
# both see the same micro-batches in the same steps, but rank 1 draws its own dropout masks.
LOSS_TOLERANCE = 0.05
ACCURACY_TOLERANCE = 0.125  # one of the 8 validation rows

pytestmark = pytest.mark.slow


def finetune_args(model, data, out, *extra) -> list[str]:
    return ["finetune", "--model", str(model), "--dataset", str(data), "--out", str(out), "--epochs", "2", "--lr", "3e-3",
            "--batch-size", "4", "--checkpoint-every", "2", "--warmup", "0.1", *extra]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its ranks in sessions of their own)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


def launch(args, **options) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)


@pytest.fixture(scope="module")
def ddp_run(tiny_bert, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    data = write_ag_news_folder(folder / "ag", n_train=80, n_test=24)
    out = folder / "ddp-run"
    process = launch(finetune_args(tiny_bert, data, out, "--nproc", "2"))
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr.decode()
    return data, out, stderr.decode()


def test_two_processes_stay_in_sync_and_match_one_process_with_the_same_global_batch(tiny_bert, ddp_run, tmp_path):
    data, out, stderr = ddp_run
    record = run_summary(out)
    assert record["world_size"] == 2 and record["global_batch"] == 8 and "global batch 8" in stderr
    assert record["ranks_in_sync"] is True  # every rank hashed its trained parameters; all equal
    single = run_finetune(prepare_finetune(FinetuneConfig(
        model=str(tiny_bert), dataset=str(data), out=tmp_path / "one", n_epochs=2, lr=3e-3, batch_size=4, grad_accum=2, checkpoint_every=2, warmup=0.1,
    )))
    assert single.history.n_steps == record["n_steps"] == 18
    for one, two in zip(single.history.epochs, record["epochs"]):
        assert abs(one.train_loss - two["train_loss"]) < LOSS_TOLERANCE
        assert abs(one.val_loss - two["val_loss"]) < LOSS_TOLERANCE
        assert abs(one.val_accuracy - two["val_accuracy"]) <= ACCURACY_TOLERANCE


def test_a_killed_ddp_run_resumes_to_the_same_weights(tiny_bert, ddp_run, tmp_path):
    data, reference, _ = ddp_run
    out = tmp_path / "killed"
    args = finetune_args(tiny_bert, data, out, "--nproc", "2")
    process = launch(args)
    checkpoints = CheckpointDir(tmp_path / ".killed.partial" / "checkpoints")
    deadline = time.monotonic() + 300
    while (checkpoints.last_step() or 0) < 4 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    for pid in [process.pid, *descendants(process.pid)]:  # the launcher and both ranks, as a crash would
        os.kill(pid, signal.SIGKILL)
    process.wait()
    assert not out.exists() and checkpoints.last_step() >= 4
    again = launch(args)
    _, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr.decode()
    assert "resuming from step" in stderr.decode()
    assert run_summary(out)["resumed_from_step"] >= 4
    same_run(out, reference)
    assert weights(out).keys() == weights(reference).keys()
