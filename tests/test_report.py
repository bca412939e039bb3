"""`mlx report` and `mlx runs` on synthetic run records: statistics, joins, refusals, tables, plots."""

import json
from math import comb
from pathlib import Path

import numpy as np
import pytest
from helpers import invoke

from common.record import DataRef, ModelRef, Predictions, ResultRow, RunRecord, SplitRef, read_record, write_record
from report import stats
from report.join import ReportConfig, build_report

N_TEST = 200


def fake_run(
    folder: Path,
    kind: str,
    rows: dict[str, float],
    *,
    n_train: int = 300,
    test_fingerprint: str = "test-fp",
    seed: int = 0,
    model: str = "tiny-bert",
    row_ids=None,
    finished_at: str = "2026-01-01T00:00:00+00:00",
    layers: bool = False,
) -> Path:
    """A run folder whose rows get exactly the given test accuracies on N_TEST rows of 2 classes."""
    rng = np.random.default_rng(seed)
    y_true = np.arange(N_TEST) % 2
    results, predicted = [], {}
    for i, (name, accuracy) in enumerate(rows.items()):
        wrong = rng.choice(N_TEST, size=round((1 - accuracy) * N_TEST), replace=False)
        y_pred = y_true.copy()
        y_pred[wrong] = 1 - y_pred[wrong]
        method = "finetune" if kind == "finetune" else name.split("-")[0]
        params = {"pooling": "mean", "layers": [i]} if layers else {}
        results.append(
            ResultRow(
                name,
                method,
                name,
                params,
                accuracy=accuracy,
                macro_f1=accuracy,
                n_train=n_train,
                n_test=N_TEST,
                trainable_params=0 if kind == "probe" else 1000,
                train_seconds=1.0,
                validation_accuracy=accuracy if method != "knn" else None,
            )
        )
        predicted[name] = y_pred
    record = RunRecord(
        kind=kind,
        command=kind,
        command_line=f"mlx {kind}",
        started_at=finished_at,
        finished_at=finished_at,
        config={},
        model=ModelRef(model),
        data=DataRef("demo", "data-fp", (SplitRef("test", test_fingerprint, N_TEST),)),
        device="cpu",
        results=tuple(results),
    )
    folder.mkdir(parents=True)
    write_record(folder, record, Predictions(np.arange(N_TEST) if row_ids is None else row_ids, y_true, predicted))
    return folder


# ---------------------------------------------------------------- statistics against hand computations and scipy


def test_mcnemar_matches_hand_computation_and_scipy():
    a = np.array([1, 1, 1, 1, 1, 1, 0, 1, 0, 0], dtype=bool)  # right on 7
    b = np.array([1, 0, 0, 0, 0, 0, 1, 1, 0, 0], dtype=bool)  # right on 3
    test = stats.mcnemar(a, b)
    assert (test.only_a, test.only_b) == (5, 1)
    # two-sided exact binomial: 2 * P(X <= 1), X ~ Bin(6, 1/2) = 2 * (1 + 6) / 64
    assert test.p_value == pytest.approx(2 * (comb(6, 0) + comb(6, 1)) / 2**6)
    assert stats.mcnemar(a, a).p_value == 1.0
    scipy_stats = pytest.importorskip("scipy.stats")
    for k, n in ((5, 6), (0, 9), (3, 6), (430, 905), (1, 3000)):
        assert stats.binomial_two_sided(min(k, n - k), n) == pytest.approx(
            scipy_stats.binomtest(k, n, 0.5).pvalue, rel=1e-9, abs=1e-300
        )


def test_bootstrap_interval_matches_resampling_rows_and_the_normal_approximation():
    correct = np.zeros(400, dtype=bool)
    correct[:320] = True  # accuracy 0.8
    low, high = stats.bootstrap_ci(correct, n_boot=4000)
    half_width = 1.96 * np.sqrt(0.8 * 0.2 / 400)  # hand: the normal approximation, 0.0392
    assert low == pytest.approx(0.8 - half_width, abs=0.006) and high == pytest.approx(0.8 + half_width, abs=0.006)
    rng = np.random.default_rng(1)
    resampled = correct[rng.integers(0, 400, size=(4000, 400))].mean(axis=1)  # the textbook bootstrap, rows resampled
    assert (low, high) == pytest.approx(tuple(np.quantile(resampled, [0.025, 0.975])), abs=0.006)
    scipy_stats = pytest.importorskip("scipy.stats")
    reference = scipy_stats.bootstrap(
        (correct.astype(float),), np.mean, n_resamples=4000, method="percentile", random_state=0
    )
    assert (low, high) == pytest.approx(
        (reference.confidence_interval.low, reference.confidence_interval.high), abs=0.006
    )


# ---------------------------------------------------------------- joins and refusals


def test_report_joins_probe_and_finetune_with_paired_tests_and_plots(tmp_path):
    probe = fake_run(tmp_path / "probe", "probe", {"logreg-a": 0.80, "logreg-b": 0.70, "knn-a": 0.75}, layers=True)
    finetune = fake_run(tmp_path / "ft", "finetune", {"finetune": 0.90}, seed=1)
    report = build_report(
        ReportConfig(runs=(str(probe), str(finetune)), out=tmp_path / "out", markdown=tmp_path / "md" / "r.md")
    )
    by_method = {r.method: r for r in report.rows}
    assert set(by_method) == {"finetune", "logreg", "knn"}  # the best logreg (on validation) and knn of the probe run
    assert by_method["logreg"].row_name == "logreg-a" and by_method["logreg"].chosen_on == "validation"
    assert by_method["finetune"].is_reference and report.rows[0].method == "finetune"
    for row in report.rows:
        assert row.ci_low <= row.accuracy <= row.ci_high
    predictions = {
        name: np.load(tmp_path / folder / "predictions.npz") for name, folder in (("probe", "probe"), ("ft", "ft"))
    }
    y = predictions["ft"]["y_true"]
    expected = stats.mcnemar(predictions["probe"]["logreg-a"] == y, predictions["ft"]["finetune"] == y)
    assert by_method["logreg"].p_value == expected.p_value and by_method["logreg"].only_this == expected.only_a
    assert {p.name for p in report.plots} == {"accuracy-by-method.png", "accuracy-by-layer.png"}
    text = (tmp_path / "md" / "r.md").read_text()
    assert "| fine-tune" in text and "| ref |" in text and "](../out/accuracy-by-method.png)" in text


def test_report_refuses_other_test_rows_and_says_why(tmp_path):
    a = fake_run(tmp_path / "a", "probe", {"logreg-a": 0.8})
    b = fake_run(tmp_path / "b", "finetune", {"finetune": 0.9}, test_fingerprint="other-fp")
    result = invoke("report", a, b, "--no-plots")
    assert result.exit_code != 0 and result.stderr.count("\n") == 1
    assert "different rows" in result.stderr and "other-fp" in result.stderr and "test-fp" in result.stderr
    c = fake_run(tmp_path / "c", "finetune", {"finetune": 0.9}, row_ids=np.arange(N_TEST) + 1)
    result = invoke("report", a, c, "--no-plots")
    assert result.exit_code != 0 and "different test row ids" in result.stderr


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda tmp: [fake_run(tmp / "one", "finetune", {"finetune": 0.9})], "nothing to compare"),
        (lambda tmp: [tmp], "is not an mlx run"),
        (lambda tmp: ["no-such-run"], "no run folder 'no-such-run'"),
        (lambda tmp: [], "no finished runs"),
    ],
)
def test_report_bad_input_is_one_line(tmp_path, setup, message):
    result = invoke("report", *setup(tmp_path), "--no-plots")
    assert result.exit_code != 0 and message in result.stderr and result.stderr.count("\n") == 1, result.output


def test_default_report_takes_the_latest_runs_sharing_model_and_test_set(isolated_home):
    runs = isolated_home / "runs"
    fake_run(runs / "old-probe", "probe", {"logreg-a": 0.6}, finished_at="2026-01-01T00:00:00+00:00")
    fake_run(runs / "new-probe", "probe", {"logreg-a": 0.7}, finished_at="2026-01-02T00:00:00+00:00")
    fake_run(runs / "ft", "finetune", {"finetune": 0.9}, finished_at="2026-01-03T00:00:00+00:00")
    fake_run(
        runs / "other-data", "probe", {"logreg-a": 0.5}, test_fingerprint="x", finished_at="2026-01-01T12:00:00+00:00"
    )
    report = build_report(ReportConfig(plots=False))
    assert sorted(Path(r).name for r in report.runs) == ["ft", "new-probe"]


def test_data_efficiency_plot_and_reference_per_training_size(tmp_path):
    folders = [
        fake_run(tmp_path / f"{kind}-{n}", kind, {name: acc}, n_train=n, seed=n)
        for n in (100, 1000)
        for kind, name, acc in (("probe", "logreg-a", 0.7), ("finetune", "finetune", 0.6 + n / 5000))
    ]
    report = build_report(ReportConfig(runs=tuple(map(str, folders)), out=tmp_path / "out"))
    assert [(r.n_train, r.method, r.is_reference) for r in report.rows] == [
        (1000, "finetune", True),
        (1000, "logreg", False),
        (100, "logreg", False),
        (100, "finetune", True),
    ]
    assert "data-efficiency.png" in {p.name for p in report.plots}


# ---------------------------------------------------------------- mlx runs


def test_runs_list_and_show(isolated_home):
    runs = isolated_home / "runs"
    fake_run(runs / "p1", "probe", {"logreg-a": 0.7}, finished_at="2026-01-01T00:00:00+00:00")
    fake_run(runs / "f1", "finetune", {"finetune": 0.9}, finished_at="2026-01-02T00:00:00+00:00")
    (runs / ".staging-partial").mkdir()
    (runs / ".staging-partial" / "run.json").write_text("{}")
    (runs / "broken").mkdir()
    (runs / "broken" / "run.json").write_text("{}")
    listed = invoke("runs", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [Path(r["run_dir"]).name for r in json.loads(listed.stdout)] == ["f1", "p1"]  # newest first
    assert "skipped" in listed.stderr and "broken" in listed.stderr and "staging" not in listed.stderr
    probes = json.loads(invoke("runs", "list", "--kind", "probe", "--json").stdout)
    assert [r["kind"] for r in probes] == ["probe"]
    table = invoke("runs", "list")
    assert "finetune" in table.stdout and "90.00%" in table.stdout
    shown = invoke("runs", "show", "f1")
    assert shown.exit_code == 0 and "finetune" in shown.stdout and "90.00%" in shown.stdout
    assert json.loads(invoke("runs", "show", str(runs / "p1"), "--json").stdout) == read_record(runs / "p1").to_dict()
    bad = invoke("runs", "list", "--kind", "nonsense")
    assert bad.exit_code != 0 and "'nonsense'" in bad.stderr and "probe, finetune, vision, attention" in bad.stderr


# ---------------------------------------------------------------- a fair and readable report


def test_no_default_row_is_chosen_on_test_and_all_rows_ranks_the_optimistic_ones_below(tmp_path):
    # k-NN rows with no validation score (a run from before k was chosen on validation): none can be chosen fairly
    probe = fake_run(
        tmp_path / "probe", "probe", {"logreg-a": 0.70, "logreg-b": 0.80, "knn-a": 0.95, "knn-b": 0.60}, layers=True
    )
    finetune = fake_run(tmp_path / "ft", "finetune", {"finetune": 0.85}, seed=1)
    runs = (str(probe), str(finetune))
    report = build_report(ReportConfig(runs=runs, plots=False))
    assert {r.chosen_on for r in report.rows} <= {"validation", "-"}
    assert [r.method for r in report.rows] == ["finetune", "logreg"]  # the test-best k-NN (0.95) is not shown
    assert any("knn rows have no validation score" in note for note in report.notes)
    wide = build_report(ReportConfig(runs=runs, plots=False, all_rows=True))
    chosen_on = [r.chosen_on for r in wide.rows]
    assert chosen_on.count("optimistic") == 3 and chosen_on.index("optimistic") == 2  # below every fair row
    assert wide.rows[0].method == "finetune" and wide.rows[0].is_reference
    assert not any(r.is_reference for r in wide.rows if r.chosen_on == "optimistic")
    result = invoke("report", *runs, "--no-plots", "--all-rows")
    assert result.exit_code == 0 and "knn *" in result.stdout


def _wide_report(tmp_path):
    """A study-like report whose cells are as wide as real ones: 10k rows, 22.6M parameters, long details."""
    folders = []
    for n, seed in ((10429, 1), (1000, 2)):
        folders.append(fake_run(tmp_path / f"ft-{n}", "finetune", {"finetune": 0.91}, n_train=n, seed=seed))
        folders.append(
            fake_run(
                tmp_path / f"probe-{n}",
                "probe",
                {"logreg-first-last-avg-L4,5,6-C=0.00215": 0.88, "knn-mean-max-L12-k=20": 0.87},
                n_train=n,
                seed=seed + 10,
                layers=True,
            )
        )
    report = build_report(ReportConfig(runs=tuple(map(str, folders)), plots=False))
    return report


def test_the_terminal_report_fits_80_columns_without_cutting_a_cell(tmp_path):
    from rich.console import Console

    from cli.report import report_table
    from report.markdown import accuracy_cells, cost_cells

    report = _wide_report(tmp_path)
    rows = [
        r.__class__(**{**r.to_dict(), "trainable_params": 22_566_916, "train_seconds": 4318.4}) for r in report.rows
    ]
    report = report.__class__(**{**report.__dict__, "rows": tuple(rows)})
    console = Console(width=80, record=True, color_system=None)
    console.print(report_table(report))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    for _, cells in (accuracy_cells(report), cost_cells(report)):
        for line in cells:
            for cell in line[2:]:  # every number whole, on one line
                assert cell in text, cell


def test_the_frozen_probe_validation_prefers_is_marked_and_the_reference_is_never_chosen_on_test(tmp_path):
    # two frozen-probe runs: the concatenated one is better on test, the single-layer one on validation
    single = fake_run(tmp_path / "single", "probe", {"logreg-a": 0.70}, layers=True)
    concat = fake_run(tmp_path / "concat", "probe", {"logreg-b": 0.80}, layers=True, seed=3)
    tuned = fake_run(tmp_path / "ft", "finetune", {"finetune": 0.90}, seed=1)
    for folder, validation in ((single, 0.95), (concat, 0.85)):
        record = json.loads((folder / "run.json").read_text())
        record["results"][0]["validation_accuracy"] = validation
        (folder / "run.json").write_text(json.dumps(record))
    report = build_report(ReportConfig(runs=(str(single), str(concat), str(tuned)), plots=False))
    marked = [r.row_name for r in report.rows if r.best_frozen]
    assert marked == ["logreg-a"]  # validation's choice, not the test-best 0.80
    from report.markdown import short_label

    assert short_label(next(r for r in report.rows if r.best_frozen)).endswith("^")
