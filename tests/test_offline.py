"""Offline first hour: a hub id with HF_HUB_OFFLINE=1 or no network is one line naming --model minilm, given
before any hub request; a cached hub model is used without waiting for the hub."""

import shutil
import socket

import pytest

from common.hub import hub_unreachable_reason
from tests.helpers import invoke, write_ag_news_folder
from tests.test_embed import one_line_error


def closed_port() -> int:
    """A localhost port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_network(monkeypatch):
    """Online mode, but every hub connection goes to a proxy on a closed localhost port: refused at once."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "NO_PROXY", "no_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port()}")


@pytest.fixture
def no_hub_request(monkeypatch):
    """Any attempt to ask the hub for a config or tokenizer fails the test."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("the hub was asked although it cannot answer")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)


COMMANDS = {
    "embed": ["embed"],
    "finetune": ["finetune"],
    "attention stats": ["attention", "stats"],
    "attention diff": ["attention", "diff", "--model", "minilm"],
    "study text": ["study", "text"],
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
@pytest.mark.parametrize("network", ["HF_HUB_OFFLINE", "unreachable"])
def test_a_hub_id_without_a_hub_is_one_line_naming_the_bundled_model(
    command, network, request, no_hub_request, tmp_path
):
    if network == "unreachable":
        request.getfixturevalue("no_network")
    data = write_ag_news_folder(tmp_path / "ag", n_train=80)  # enough rows for study's smallest train size
    result = invoke(*command, "--model", "no-such-org/no-such-model", "--dataset", data)
    why = "HF_HUB_OFFLINE is set" if network == "HF_HUB_OFFLINE" else "the hub cannot be reached (proxy 127.0.0.1:"
    one_line_error(result, "no-such-org/no-such-model", why, "--model minilm")


def test_the_probe_says_why_and_sees_a_hub_that_answers(monkeypatch, no_network):
    assert "Connection refused" in hub_unreachable_reason()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_unreachable_reason() == "HF_HUB_OFFLINE is set"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with socket.socket() as server:  # a local "hub" that accepts connections
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert hub_unreachable_reason() is None


def test_a_cached_hub_model_is_used_at_once_when_the_hub_cannot_be_reached(
    tiny_bert, tmp_path, monkeypatch, no_network, caplog
):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    entry = cache / "models--tiny-org--tiny-bert"
    shutil.copytree(tiny_bert, entry / "snapshots" / "0123abcd")
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    data = write_ag_news_folder(tmp_path / "ag")
    out = tmp_path / "s.h5"
    result = invoke("embed", "--model", "tiny-org/tiny-bert", "--dataset", data, "--out", out, "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert "using the cached copy of tiny-org/tiny-bert" in caplog.text and out.exists()  # said aloud
