"""`mlx probe` end to end on synthetic stores: tables, --json, run folders, layers, carved test splits."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from common.record import read_predictions, read_record, validate
from embeddings.store import EmbeddingStore, SplitArrays, write_store
from probes import ProbeKind, ProbeRunConfig, run_probes
from probes.logreg import select_C
from probes.synthetic import write_synthetic_store

runner = CliRunner()


@pytest.fixture
def store(tmp_path):
    return write_synthetic_store(tmp_path / "synthetic.h5")


def probe(*args):
    return runner.invoke(app, ["probe", *map(str, args)])


def run_folders(home):
    root = home / "runs" / "probe"
    return sorted(p for p in root.iterdir()) if root.exists() else []


def test_compare_table_sorted_with_best_marked_and_run_folder(store, isolated_home):
    result = probe("compare", "--store", store, "--pooling", "mean", "--k", "1,5")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.strip()[:1] in "★0123456789" and "%" in line]
    assert len(rows) == 3  # knn k=1, knn k=5, logreg
    accuracies = [float(line.split("%")[0].split()[-1]) for line in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert rows[0].lstrip().startswith("★")
    (folder,) = run_folders(isolated_home)
    record = read_record(folder)
    assert record.config["store_meta"]["fingerprint"].startswith("sha256:") and record.mlx_version
    assert record.data.fingerprint == "synthetic-0" and record.kind == "probe" and record.command == "probe compare"
    assert record.config["probes"] == ["knn", "logreg"]
    assert [100 * r.accuracy for r in record.results] == pytest.approx(accuracies, abs=0.01)
    predictions = read_predictions(folder)
    for row in record.results:
        assert np.mean(predictions.by_row[row.name] == predictions.y_true) == pytest.approx(row.accuracy)
    assert [r.trainable_params for r in record.results if r.method == "logreg"] == [3 * 16 + 3]


def test_json_schema_one_object_per_pooling_layer_probe_setting(store):
    result = probe("compare", "--store", store, "--layer", "1", "--layer", "2", "--k", "1,5,10", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert validate(record) == []
    objects = record["results"]
    assert len(objects) == 2 * 2 * (3 + 1)  # poolings x layers x (k values + logreg)
    keys = {(o["method"], o["params"]["pooling"], tuple(o["params"]["layers"]), o["setting"]) for o in objects}
    assert len(keys) == len(objects)
    for o in objects:
        assert {"per_class", "confusion", "fit_seconds"} <= set(o["details"])
        assert 0 <= o["macro_f1"] <= 1 and 0 <= o["accuracy"] <= 1
        assert sum(map(sum, o["details"]["confusion"])) == o["n_test"] == 100
        assert np.trace(np.array(o["details"]["confusion"])) / o["n_test"] == pytest.approx(o["accuracy"])
    logreg = [o for o in objects if o["method"] == "logreg"]
    from probes.logreg import DEFAULT_CS

    assert all(o["params"]["C"] in DEFAULT_CS and o["validation_accuracy"] is not None for o in logreg)


def test_logreg_result_uses_C_chosen_on_validation(store):
    report = run_probes(
        ProbeRunConfig(command="logreg", store=store, probes=(ProbeKind.LOGREG,), poolings=("mean",), layers=((2,),))
    )
    with EmbeddingStore(store) as s:
        expected = select_C(s.vectors("train", "mean", 2), s.labels("train"), report.config.logreg.Cs)
    (result,) = report.results
    assert result.params["C"] == expected.C
    assert result.validation_accuracy == expected.validation_accuracy[expected.C]


@pytest.mark.parametrize("seed", [0, 2])
def test_knn_k_gets_a_validation_accuracy_on_the_logreg_rows(store, seed):
    from sklearn.neighbors import KNeighborsClassifier

    from common.splits import stratified_split

    report = run_probes(
        ProbeRunConfig(
            command="compare",
            store=store,
            probes=(ProbeKind.KNN, ProbeKind.LOGREG),
            poolings=("mean",),
            layers=((2,),),
            seed=seed,
        )
    )
    with EmbeddingStore(store) as s:
        X, y = s.vectors("train", "mean", 2), s.labels("train")
    fit, validation = stratified_split(y, 0.1, seed)  # the rows logistic regression chooses C on
    for result in (r for r in report.results if r.probe == "knn"):
        k = result.params["k"]
        reference = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(X[fit], y[fit])
        assert result.validation_accuracy == pytest.approx(reference.score(X[validation], y[validation]))
    assert report.record.data.validation_fingerprint  # (a synthetic store of vectors has no max length)


def test_layer_all_adds_layer_table_and_plot_and_concatenation_widens(store, isolated_home):
    result = probe(
        "compare",
        "--store",
        store,
        "--pooling",
        "cls",
        "--layer",
        "all",
        "--layer",
        "1,2",
        "--k",
        "5",
        "--plot",
        "--detail",
    )
    assert result.exit_code == 0, result.output
    assert "test accuracy by layer" in result.stdout and "layer 0" in result.stdout
    assert "per class" in result.stdout
    (folder,) = run_folders(isolated_home)
    assert {p.name for p in folder.glob("*.png")} == {
        "accuracy-by-layer.png",
        "confusion-knn.png",
        "confusion-logreg.png",
    }
    record = read_record(folder)
    assert set(record.artifacts) == {"accuracy-by-layer.png", "confusion-knn.png", "confusion-logreg.png"}
    assert {r.details["dim"] for r in record.results if r.params["layers"] == [1, 2]} == {32}
    assert {r.details["dim"] for r in record.results if len(r.params["layers"]) == 1} == {16}


def test_store_is_read_once_per_dataset(store, monkeypatch):
    calls = []
    original = EmbeddingStore.vectors

    def counting(self, split, pooling, layer=None):
        calls.append((split, pooling, layer))
        return original(self, split, pooling, layer)

    monkeypatch.setattr(EmbeddingStore, "vectors", counting)
    result = probe("knn", "--store", store, "--layer", "all", "--layer", "1,2", "--k", "3")
    assert result.exit_code == 0, result.output
    assert len(calls) == len(set(calls)) == 2 * 2 * 3  # splits x poolings x layers, no re-reads


def test_test_fraction_carves_stratified_split_aloud(tmp_path):
    one_split = write_synthetic_store(tmp_path / "one.h5", splits=("train",), n_train=200)
    result = probe("knn", "--store", one_split, "--pooling", "mean", "--k", "5", "--test-fraction", "0.25", "--json")
    assert result.exit_code == 0, result.output
    assert "carving a test split" in result.stderr
    (o,) = json.loads(result.stdout)["results"]
    assert (o["n_train"], o["n_test"]) == (150, 50)
    again = json.loads(
        probe("knn", "--store", one_split, "--pooling", "mean", "--k", "5", "--test-fraction", "0.25", "--json").stdout
    )
    assert again["results"][0]["accuracy"] == o["accuracy"]  # seeded
    assert json.loads(result.stdout)["data"]["splits"] == again["data"]["splits"]  # same carved rows, same fingerprints


@pytest.mark.parametrize("index", ["hnsw", "ivf"])
def test_approximate_index_reports_recall(store, index):
    result = probe("knn", "--store", store, "--index", index, "--k", "5", "--json")
    assert result.exit_code == 0, result.output
    assert all(
        0.9 <= o["details"]["recall_at_k"] <= 1.0 and o["params"]["index"] == index
        for o in json.loads(result.stdout)["results"]
    )


def test_test_split_from_another_store(tmp_path):
    train = write_synthetic_store(tmp_path / "train.h5", splits=("train",), seed=0)
    test = write_synthetic_store(tmp_path / "test.h5", splits=("test",), seed=0)
    result = probe("knn", "--store", train, "--test-store", test, "--pooling", "mean", "--k", "5", "--json")
    assert result.exit_code == 0, result.output
    (o,) = json.loads(result.stdout)["results"]
    assert (o["n_train"], o["n_test"]) == (300, 100)


def test_explicit_out_is_used_and_never_overwritten(store, tmp_path):
    out = tmp_path / "my-run"
    assert probe("knn", "--store", store, "--k", "5", "--out", out).exit_code == 0
    assert (out / "run.json").exists()
    before = (out / "run.json").read_text()
    again = probe("knn", "--store", store, "--k", "1", "--out", out)
    assert again.exit_code != 0 and "already exists" in again.stderr
    assert (out / "run.json").read_text() == before


def test_embed_then_compare_end_to_end(tiny_bert, tmp_path):
    store = tmp_path / "demo.h5"
    embedded = runner.invoke(
        app,
        [
            "embed",
            "--model",
            str(tiny_bert),
            "--dataset",
            "demo",
            "--pooling",
            "mean,cls",
            "--layer",
            "all",
            "--out",
            str(store),
        ],
    )
    assert embedded.exit_code == 0, embedded.output
    result = probe("compare", "--store", store, "--layer", "all", "--k", "5", "--json")
    assert result.exit_code == 0, result.output
    objects = json.loads(result.stdout)["results"]
    assert {o["params"]["pooling"] for o in objects} == {"mean", "cls"} and {
        o["params"]["layers"][0] for o in objects
    } == {0, 1, 2}
    assert all(o["n_train"] == 300 and o["n_test"] == 100 and o["details"]["dim"] == 32 for o in objects)
    # a random tiny BERT still separates the demo's four topics better than chance (25%)
    assert max(o["accuracy"] for o in objects) > 0.3


def _store_with_pooler_at_last_layer(path):
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 60), ("test", 20)):
        labels = np.arange(n) % 2
        vectors = {
            ("mean", layer): rng.standard_normal((n, 4)).astype(np.float32) + labels[:, None] for layer in (0, 1, 2)
        }
        vectors[("pooler", 2)] = rng.standard_normal((n, 4)).astype(np.float32) + labels[:, None]
        splits[split] = SplitArrays(labels, np.arange(n), vectors)
    attrs = {
        "model_id": "m",
        "label_names": ["a", "b"],
        "poolings": ["mean", "pooler"],
        "layers": [0, 1, 2],
        "n_layers": 2,
    }
    return write_store(path, attrs, splits)


def test_layer_all_probes_each_pooling_on_its_own_layers(tmp_path):
    store = _store_with_pooler_at_last_layer(tmp_path / "pooler.h5")
    result = probe("knn", "--store", store, "--layer", "all", "--k", "3", "--json")
    assert result.exit_code == 0, result.output
    pairs = {(o["params"]["pooling"], o["params"]["layers"][0]) for o in json.loads(result.stdout)["results"]}
    assert pairs == {("mean", 0), ("mean", 1), ("mean", 2), ("pooler", 2)}
    assert "pooling 'pooler' skipped for layer(s) 0; 1" in result.stderr
    named = probe("knn", "--store", store, "--pooling", "pooler", "--layer", "1", "--k", "3")
    assert named.exit_code != 0 and "has layers [2] only" in named.stderr
