"""Small builders shared by the tests."""

import csv
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def invoke(*args: str):
    """Run `mlx ARGS...` in-process; returns click's Result (exit_code, stdout, stderr)."""
    return runner.invoke(app, [str(a) for a in args], prog_name="mlx")


def one_line_error(result, *fragments: str) -> str:
    """Assert a handled failure: exit != 0 (not 130), no traceback, not the internal-error path, and exactly
    one ``error:`` line on stderr, its last line (a summary or warnings may come before), holding every
    fragment. Returns that line. (conftest's ``no_internal_error`` fails any test that reaches that path.)"""
    assert result.exit_code not in (0, 130), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "internal error" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def write_ag_news_folder(folder: Path, n_train: int = 24, n_test: int = 12) -> Path:
    """A folder in the original AG News layout: headerless "class","title","description" rows."""
    folder.mkdir(parents=True, exist_ok=True)
    topics = ["president election talks", "team wins cup match", "bank profit shares", "software chip internet"]
    # Test rows are numbered after the train rows: a test row that repeated a train row would be refused
    # (common/heldout.py) or inflate the score.
    for name, n, first in (("train.csv", n_train, 0), ("test.csv", n_test, n_train)):
        with open(folder / name, "w", newline="") as fh:
            writer = csv.writer(fh, quoting=csv.QUOTE_ALL)
            for i in range(first, first + n):
                c = i % 4
                writer.writerow([c + 1, f"{topics[c]} {i}", f"the {topics[c]} on day {i} " * (1 + i % 3)])
    (folder / "classes.txt").write_text("World\nSports\nBusiness\nSci/Tech\n")
    return folder
