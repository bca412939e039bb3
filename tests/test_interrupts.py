"""Ctrl-C anywhere, including while Python still imports: exit 130, no traceback (issue 8 item 15)."""

import signal
import subprocess
import sys
import time

import pytest

import cli
from tests.helpers import invoke


@pytest.mark.parametrize("delay_seconds", [0.3, 1.5])
def test_ctrl_c_in_the_first_seconds_exits_130_quietly(tmp_path, delay_seconds):
    command = [
        sys.executable,
        "-m",
        "cli.main",
        "vision",
        "compare",
        "--models",
        "mlp-numpy",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "runs"),
    ]
    child = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(delay_seconds)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 130, stderr
    assert "Traceback" not in stderr and "Error" not in stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_an_error_caused_by_the_interrupt_is_the_interrupt(monkeypatch):
    """scipy can turn an interrupted import into an ImportError: after Ctrl-C it still means 130."""
    import embeddings.store

    def broken_import(*args, **kwargs):
        raise ImportError("cannot import name '_fblas' from partially initialized module")

    monkeypatch.setattr(embeddings.store, "list_stores", broken_import)
    monkeypatch.setattr(cli, "_interrupted", True)
    result = invoke("store", "list")
    assert result.exit_code == 130 and "Traceback" not in result.output


def test_what_an_interrupted_command_kept_is_not_said_for_the_next_one(monkeypatch):
    def interrupted_keeping(*args, **kwargs):
        with cli.kept_on_interrupt("shards are kept"):
            raise KeyboardInterrupt

    monkeypatch.setattr("embeddings.store.list_stores", interrupted_keeping)
    first = invoke("store", "list")
    assert first.exit_code == 130 and "interrupted: shards are kept" in first.stderr
    test_keyboard_interrupt_inside_a_command_exits_130(monkeypatch)  # the next command kept nothing: quiet


def test_keyboard_interrupt_inside_a_command_exits_130(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("embeddings.store.list_stores", interrupted)
    result = invoke("store", "list")
    assert result.exit_code == 130 and result.output.strip() == ""


def test_a_logging_handler_the_interrupt_cut_short_prints_no_traceback_at_exit():
    """Ctrl-C inside a StreamHandler's __init__ (while Python imports) leaves a handler without a lock."""
    code = (
        "import logging, cli.main\n"
        "handler = logging.StreamHandler.__new__(logging.StreamHandler)  # __init__ never ran\n"
        "logging._addHandlerRef(handler)\n"
        "cli.main._exit_interrupted()\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert child.returncode == 130 and "Traceback" not in child.stderr, child.stderr
