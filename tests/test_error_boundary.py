"""The one error boundary in cli/ (issue 20, mechanism 3): an unexpected exception is one line, its
traceback in a log file under the mlx home; MLX_DEBUG=1 or --debug shows it inline; Ctrl-C is 130."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import invoke, write_ag_news_folder

REPO = Path(__file__).resolve().parents[1]


def _bug(*args, **kwargs):
    raise ZeroDivisionError("the bug's own words\nsecond line")


@pytest.fixture
def buggy(monkeypatch):
    monkeypatch.setattr("embeddings.store.list_stores", _bug)


@pytest.mark.internal_error  # reaches the internal-error path on purpose
def test_an_unexpected_exception_is_one_line_naming_its_type_and_the_log_with_the_traceback(buggy, isolated_home):
    result = invoke("store", "list")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and result.stdout == ""
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("mlx: internal error: ZeroDivisionError: the bug's own words second line"), line
    log = Path(re.search(r"traceback in (\S+?);", line).group(1))
    assert log.parent == isolated_home / "logs" and log.is_file()
    written = log.read_text()
    assert "Traceback (most recent call last)" in written and "_bug" in written


@pytest.mark.internal_error  # reaches the internal-error path on purpose
@pytest.mark.parametrize("how", ["env", "flag"])
def test_mlx_debug_or_debug_shows_the_traceback_inline(buggy, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("MLX_DEBUG", "1")
        result = invoke("store", "list")
    else:
        result = invoke("--debug", "store", "list")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr and "_bug" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("mlx: internal error: ZeroDivisionError")
    again = invoke("store", "list")  # --debug holds for its own command only
    assert "Traceback" not in again.stderr or how == "env"


@pytest.mark.internal_error  # reaches the internal-error path on purpose
def test_an_unwritable_home_still_gives_the_traceback(buggy, tmp_path, monkeypatch):
    home = tmp_path / "file-home"
    home.write_text("not a folder")
    monkeypatch.setenv("MLX_HOME", str(home))
    result = invoke("store", "list")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("mlx: internal error: ZeroDivisionError")


def test_expected_errors_stay_their_own_one_line(isolated_home):
    result = invoke("runs", "show", "no-such-run")
    assert result.exit_code != 0 and "internal error" not in result.stderr
    assert not (isolated_home / "logs").exists()


def test_the_boundary_holds_in_a_real_process(tmp_path):
    """Outside CliRunner too: a bug in a command is one line and exit 1."""
    script = (
        "import sys, embeddings.store\n"
        "def bug(*a, **k): raise KeyError('x')\n"
        "embeddings.store.list_stores = bug\n"
        "sys.argv = ['mlx', 'store', 'list']\n"
        "from cli.main import main\n"
        "main()\n"
    )
    env = {**os.environ, "MLX_HOME": str(tmp_path / "home")}
    env.pop("MLX_DEBUG", None)
    child = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert child.returncode == 1, child.stderr
    lines = [line for line in child.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mlx: internal error: KeyError: 'x'"), child.stderr
    (log,) = (tmp_path / "home" / "logs").iterdir()
    assert log.read_text().startswith("mlx store list\n")  # the command line heads the log


def _closed_pipe() -> int:
    """The write end of a pipe whose reader has already gone (as after ``| head -3``)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


@pytest.mark.parametrize(
    "args",
    [("--help",), ("vision", "compare", "--help"), ("runs", "list", "--json")],
    ids=["help", "subcommand help", "json"],
)
def test_a_closed_stdout_ends_the_command_quietly(args, tmp_path):
    """The class: any write to a closed pipe (help, tables, --json) is exit 1 and nothing on stderr."""
    env = {**os.environ, "MLX_HOME": str(tmp_path / "home")}
    stdout = _closed_pipe()
    try:
        child = subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            cwd=REPO,
            env=env,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(stdout)
    assert (child.returncode, child.stderr) == (1, "")
    assert not (tmp_path / "home" / "logs").exists()  # not an internal error


def test_a_closed_stderr_ends_the_command_quietly(tmp_path):
    env = {**os.environ, "MLX_HOME": str(tmp_path / "home")}
    stderr = _closed_pipe()
    try:  # `runs list` with no runs says so on stderr
        child = subprocess.run(
            [sys.executable, "-m", "cli.main", "runs", "list"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    finally:
        os.close(stderr)
    assert (child.returncode, child.stdout) == (1, "")
    assert not (tmp_path / "home" / "logs").exists()


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("command", ["embed", "finetune", "study"])
def test_ctrl_c_is_exit_130_saying_what_the_command_kept(command, tiny_bert, tmp_path, monkeypatch):
    """One handler (cli.main) ends every interrupted command; each names what it keeps."""
    data = write_ag_news_folder(tmp_path / "ag", n_train=80, n_test=8)
    args, target, kept = {
        "embed": (
            ["embed", "--model", tiny_bert, "--dataset", data, "--out", tmp_path / "s.h5"],
            "embeddings.extract.extract_embeddings",
            "finished shards are kept",
        ),
        "finetune": (
            ["finetune", "--model", tiny_bert, "--dataset", data, "--out", tmp_path / "ft"],
            "finetune.run.run_finetune",
            "checkpoints are kept in",
        ),
        "study": (
            ["study", "vision", "--out", tmp_path / "study"],
            "study.vision.run_vision_study",
            "finished steps are kept in",
        ),
    }[command]
    monkeypatch.setattr(target, _interrupt)
    result = invoke(*args)
    assert result.exit_code == 130, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("warning: interrupted: ") and kept in last and "run the same command again" in last
