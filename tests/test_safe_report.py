"""`mlx report` reads nothing it has not checked (issue 20, mechanism 4; failures 3, 5 and 9): predictions
against their record, paths resolved before de-duplicating, never writing over a file that is not a report."""

import json
import os

import numpy as np
import pytest
from test_report import N_TEST, fake_run

from tests.helpers import invoke, one_line_error


@pytest.fixture
def two_runs(tmp_path):
    probe = fake_run(tmp_path / "runs" / "probe", "probe", {"logreg-a": 0.80, "knn-a": 0.75})
    finetune = fake_run(tmp_path / "runs" / "ft", "finetune", {"finetune": 0.90}, seed=1)
    return probe, finetune


def _rewrite_predictions(run, **arrays):
    with np.load(run / "predictions.npz") as saved:
        current = {k: saved[k] for k in saved.files}
    current.update(arrays)
    np.savez(run / "predictions.npz", **{k: v for k, v in current.items() if v is not None})


def _set_accuracy(run, accuracy):
    record = json.loads((run / "run.json").read_text())
    record["results"][0]["accuracy"] = accuracy
    (run / "run.json").write_text(json.dumps(record))


def test_an_edited_accuracy_is_refused_naming_the_recomputed_one(two_runs):
    """Failure 3: run.json said 0.99 and the report printed "99.0 [12.5, 40.0]"."""
    probe, finetune = two_runs
    _set_accuracy(finetune, 0.99)
    one_line_error(invoke("report", probe, finetune, "--no-plots"), str(finetune), "0.99", "0.9")


y = np.arange(N_TEST) % 2
DEFECTS = {
    "float labels": dict(finetune=y.astype(np.float64) + 0.5),
    "one element (broadcast)": dict(finetune=np.array([1])),
    "2-D": dict(finetune=np.stack([y, y])),
    "too short": dict(finetune=y[:-1]),
    "too long": dict(finetune=np.append(y, 0)),
    "negative label": dict(finetune=-y),
    "label past the classes": dict(finetune=y + 2),
    "booleans": dict(finetune=y.astype(bool)),
    "no row ids": dict(row_ids=None),
    "no true labels": dict(y_true=None),
    "no key for the method": dict(finetune=None),
    "row ids repeated": dict(row_ids=np.zeros(N_TEST, dtype=np.int64)),
    "float row ids": dict(row_ids=np.arange(N_TEST) + 0.5),
    "a key for no row": dict(stranger=y),
    "true labels of another length": dict(y_true=y[:10]),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_predictions_that_do_not_fit_their_record_are_one_line(two_runs, defect):
    probe, finetune = two_runs
    _rewrite_predictions(finetune, **DEFECTS[defect])
    one_line_error(invoke("report", probe, finetune, "--no-plots"), str(finetune / "predictions.npz"))


@pytest.mark.parametrize(
    "content",
    [b"", b"random bytes" * 100, None],
    ids=["empty", "random bytes", "truncated"],
)
def test_an_unreadable_predictions_file_is_one_line(two_runs, content):
    probe, finetune = two_runs
    path = finetune / "predictions.npz"
    path.write_bytes(path.read_bytes()[:300] if content is None else content)
    one_line_error(invoke("report", probe, finetune, "--no-plots"), str(path))


def test_the_same_run_by_any_spelling_is_one_run(two_runs, tmp_path, monkeypatch):
    """Failure 5: a run given twice (relative and absolute, or through a symlink) appeared twice."""
    probe, finetune = two_runs
    once = json.loads(invoke("report", probe, finetune, "--no-plots", "--json").stdout)
    monkeypatch.chdir(tmp_path)
    os.symlink(finetune, tmp_path / "link")
    spellings = (probe, finetune, os.path.relpath(finetune), "link", "runs/../runs/ft")
    result = invoke("report", *spellings, "--no-plots", "--json")
    assert result.exit_code == 0, result.output
    twice = json.loads(result.stdout)
    assert len(twice["rows"]) == len(once["rows"]) and len(twice["runs"]) == 2


def test_markdown_over_a_run_record_is_refused_and_the_run_is_untouched(two_runs):
    """Failure 9: --markdown RUN/run.json wrote markdown over the record and a PNG into the run."""
    probe, finetune = two_runs
    before = sorted(os.listdir(finetune)), (finetune / "run.json").read_bytes()
    one_line_error(invoke("report", probe, finetune, "--markdown", finetune / "run.json"), "run.json", "--markdown")
    assert (sorted(os.listdir(finetune)), (finetune / "run.json").read_bytes()) == before


@pytest.mark.parametrize("target", ["notes.md", "run-folder/report.md"])
def test_markdown_over_a_foreign_file_or_into_a_run_folder_is_refused(two_runs, tmp_path, target):
    probe, finetune = two_runs
    (tmp_path / "notes.md").write_text("# my notes\n")
    (tmp_path / "run-folder").mkdir()
    (tmp_path / "run-folder" / "run.json").write_text("{}")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    one_line_error(invoke("report", probe, finetune, "--markdown", tmp_path / target), "--markdown")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_plots_into_a_run_folder_are_refused(two_runs):
    probe, finetune = two_runs
    one_line_error(invoke("report", probe, finetune, "--out", finetune), "--out", str(finetune))
    assert not list(finetune.glob("*.png"))


def test_a_report_of_its_own_is_replaced(two_runs, tmp_path):
    probe, finetune = two_runs
    target = tmp_path / "reports" / "r.md"
    assert invoke("report", probe, finetune, "--no-plots", "--markdown", target).exit_code == 0
    first = target.read_text()
    result = invoke("report", probe, finetune, "--no-plots", "--markdown", target)
    assert result.exit_code == 0, result.output
    assert target.read_text() == first


def test_a_name_that_matches_several_runs_lists_their_folders(isolated_home):
    """Item 13: `runs show NAME` listed names without folders."""
    a = fake_run(isolated_home / "runs" / "probe" / "demo-knn", "probe", {"knn-a": 0.75})
    b = fake_run(isolated_home / "studies" / "s1" / "demo-knn-2", "probe", {"knn-a": 0.75})
    line = one_line_error(invoke("runs", "show", "demo-knn"), "names 2 runs", str(a), str(b))
    assert "pass one of these folders" in line


@pytest.mark.parametrize("command", [("runs", "show"), ("report",)])
def test_an_empty_run_name_is_refused_not_read_as_the_current_folder(two_runs, command, monkeypatch):
    monkeypatch.chdir(two_runs[0])  # a run folder: "" must not become it
    one_line_error(invoke(*command, "", *([two_runs[1]] if command == ("report",) else [])), "is empty")
