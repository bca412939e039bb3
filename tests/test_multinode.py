"""Two "nodes" on one machine: `torchrun --nnodes 2 --nproc_per_node 1` with c10d rendezvous on loopback, one
launcher per node, as the multi-node recipe in docs/embed-distributed.md runs them; the store and the
fine-tuned weights equal one node's."""

import socket
import subprocess
import sys

import pytest

from tests.helpers import write_ag_news_folder
from tests.test_embed_distributed import assert_same_store, embed_command, environment
from tests.test_finetune import same_run
from tests.test_finetune_ddp import finetune_args

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def on_two_nodes(args: list[str], env: dict) -> None:
    """Start one torchrun launcher per node, as each node's shell would, and wait for both."""
    rendezvous = [
        "--nnodes",
        "2",
        "--nproc_per_node",
        "1",
        "--rdzv_backend",
        "c10d",
        "--rdzv_endpoint",
        f"127.0.0.1:{free_port()}",
        "--rdzv_id",
        "mlx-test",
        "--local_addr",
        "127.0.0.1",
    ]
    env = dict(env, GLOO_SOCKET_IFNAME="lo")  # loopback only
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", *rendezvous, "-m", "cli.main", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for node in nodes:
        _, stderr = node.communicate(timeout=600)
        assert node.returncode == 0, stderr.decode()[-3000:]


def test_embed_on_two_nodes_writes_the_one_node_store(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "ag", n_train=24, n_test=12)
    env = environment(tmp_path)
    one = embed_command(tiny_bert, data, tmp_path / "one.h5")
    subprocess.run(one, env=env, check=True, capture_output=True)
    on_two_nodes(embed_command(tiny_bert, data, tmp_path / "two.h5")[3:], env)
    assert_same_store(tmp_path / "one.h5", tmp_path / "two.h5")


def test_finetune_on_two_nodes_equals_two_ranks_on_one_node(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "ag", n_train=80, n_test=24)
    env = environment(tmp_path)
    one_node = finetune_args(tiny_bert, data, tmp_path / "one-node", "--nproc", "2")
    subprocess.run([sys.executable, "-m", "cli.main", *one_node], env=env, check=True, capture_output=True)
    on_two_nodes(finetune_args(tiny_bert, data, tmp_path / "two-nodes"), env)
    same_run(tmp_path / "one-node", tmp_path / "two-nodes")
