"""`mlx embed` end to end on a tiny random BERT: store contents, cache, resume, lock, bad input."""

import json
import os

import h5py
import numpy as np
import pytest

from common.locking import store_lock
from embeddings import extract
from embeddings.extract import EmbedConfig, extract_embeddings, plan_extraction
from embeddings.store import EmbeddingStore
from tests.helpers import invoke, one_line_error, write_ag_news_folder


def embed_args(model, data, out, *extra):
    return ["embed", "--model", model, "--dataset", data, "--out", out, "--batch-size", "4", *extra]


def test_embed_writes_a_self_describing_store(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "ag")
    out = tmp_path / "s.h5"
    result = invoke(*embed_args(tiny_bert, data, out, "--pooling", "all", "--layer", "all"))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    info = json.loads(invoke("store", "info", out, "--json").stdout)
    assert info["splits"] == {"train": 24, "test": 12}
    assert info["label_names"] == ["World", "Sports", "Business", "Sci/Tech"]
    assert info["layers"] == [0, 1, 2] and info["n_layers"] == 2
    # the tiny BERT's pooler is random but part of the checkpoint, so it is kept
    assert set(info["poolings"]) == {"cls", "mean", "max", "mean-max", "first-last-avg", "pooler"}
    assert info["dims"]["mean"] == 32 and info["dims"]["mean-max"] == 64
    assert info["model_revision"].startswith("sha256:") and info["dataset_fingerprint"]
    assert info["config"]["batch_size"] == 4
    with EmbeddingStore(out) as store:
        labels = store.labels("train")
        assert labels.dtype == np.int64 and sorted(set(labels)) == [0, 1, 2, 3]
        np.testing.assert_array_equal(store.row_ids("train"), np.arange(24))
        assert store.vectors("test", "mean", 2).shape == (12, 32)


def test_rows_keep_source_order_despite_length_sorting(tiny_bert, tmp_path):
    """Vectors come back in file order: row i's vector equals that text embedded alone."""
    data = write_ag_news_folder(tmp_path / "ag", n_train=8, n_test=4)
    out = tmp_path / "s.h5"
    assert invoke(*embed_args(tiny_bert, data, out, "--split", "train")).exit_code == 0
    single = tmp_path / "single.h5"
    lines = (data / "train.csv").read_text().splitlines()
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "train.csv").write_text(lines[5] + "\n")
    assert invoke(*embed_args(tiny_bert, tmp_path / "one", single)).exit_code == 0
    with EmbeddingStore(out) as a, EmbeddingStore(single) as b:
        assert a.splits == ["train"]
        np.testing.assert_allclose(a.vectors("train", "mean")[5], b.vectors("train", "mean")[0], atol=1e-5)


def test_second_run_is_a_cache_hit_without_model_work(tiny_bert, tmp_path, monkeypatch):
    data = write_ag_news_folder(tmp_path / "ag")
    out = tmp_path / "s.h5"
    assert invoke(*embed_args(tiny_bert, data, out)).exit_code == 0
    before = out.stat().st_mtime_ns

    def no_model(*a, **k):
        raise AssertionError("the model must not be loaded on a cache hit")

    monkeypatch.setattr(extract, "load_model", no_model)
    result = invoke(*embed_args(tiny_bert, data, out))
    assert result.exit_code == 0 and "cache hit" in result.stderr
    assert out.stat().st_mtime_ns == before
    # other options are another extraction: refused without --force, never overwritten silently
    result = invoke(*embed_args(tiny_bert, data, out, "--pooling", "max"))
    assert result.exit_code != 0 and "started with other options (poolings" in result.stderr
    assert out.stat().st_mtime_ns == before


def test_parsed_options_share_one_cache_key(tiny_bert, tmp_path, monkeypatch):
    """--layer 1-2 == --layer 2,1,1 == ... and pooling order/repetition: one extraction, one cache entry."""
    data = write_ag_news_folder(tmp_path / "ag", n_train=8, n_test=4)
    first = invoke(
        *embed_args(tiny_bert, data, tmp_path / "ignored.h5", "--layer", "1-2", "--pooling", "mean,cls", "--json")
    )
    assert first.exit_code == 0, first.output
    monkeypatch.setattr(extract, "load_model", lambda *a, **k: pytest.fail("a cache hit must not load the model"))
    for layer, pooling in (("1,2", ["cls", "--pooling", "mean"]), ("2,1,1", ["mean,cls,mean"])):
        again = invoke(
            *embed_args(tiny_bert, data, tmp_path / "ignored.h5", "--layer", layer, "--pooling", *pooling, "--json")
        )
        assert again.exit_code == 0, again.output
        assert json.loads(again.stdout)["cached"] is True


def test_default_output_lives_under_mlx_home(tiny_bert, tmp_path, isolated_home):
    data = write_ag_news_folder(tmp_path / "ag")
    result = invoke("embed", "--model", tiny_bert, "--dataset", data, "--batch-size", "8")
    assert result.exit_code == 0, result.output
    path = result.stdout.strip()
    assert path.startswith(str(isolated_home / "stores")) and os.path.exists(path)
    listing = json.loads(invoke("store", "list", "--json").stdout)
    assert [e["status"] for e in listing] == ["complete"]


def test_resume_after_crash_equals_uninterrupted_run(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "ag", n_train=150, n_test=8)
    config = EmbedConfig(dataset=str(data), model=str(tiny_bert), poolings=("all",), layer="all", batch_size=4)
    whole = extract_embeddings(plan_extraction(EmbedConfig(**{**config.__dict__, "out": tmp_path / "whole.h5"})))

    crashed = EmbedConfig(**{**config.__dict__, "out": tmp_path / "crashed.h5"})
    calls = {"n": 0}

    def crash_after_first_shard(task, done, total, **_):
        calls["n"] += 1
        if task == "embed train" and done > 64:  # a shard is 16 batches of 4 = 64 texts
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_embeddings(plan_extraction(crashed), crash_after_first_shard)
    assert not crashed.out.exists()  # nothing under the final name before completion
    partial = tmp_path / ".crashed.h5.partial"
    assert sorted(p.name for p in partial.glob("*.npz")) == ["train-00000.npz"]

    resumed_calls = []
    extract_embeddings(plan_extraction(crashed), lambda task, done, total, **_: resumed_calls.append((task, done)))
    assert ("embed train", 64) in resumed_calls and (
        "embed train",
        4,
    ) not in resumed_calls  # shard 0 was not recomputed
    assert not partial.exists()
    with EmbeddingStore(whole.path) as a, EmbeddingStore(crashed.out) as b:
        for split in ("train", "test"):
            for pooling in a.info.poolings:
                for layer in a.info.layers:
                    if pooling == "pooler" and layer != 2:
                        continue
                    np.testing.assert_array_equal(a.vectors(split, pooling, layer), b.vectors(split, pooling, layer))


def test_a_second_writer_gets_a_clear_error(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "ag")
    out = tmp_path / "s.h5"
    with store_lock(out):
        result = invoke(*embed_args(tiny_bert, data, out))
    assert result.exit_code != 0
    assert "in use by pid" in result.stderr and not out.exists()
    assert invoke(*embed_args(tiny_bert, data, out)).exit_code == 0  # the lock died with its holder


def test_force_recomputes(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "ag")
    out = tmp_path / "s.h5"
    assert invoke(*embed_args(tiny_bert, data, out)).exit_code == 0
    result = invoke(*embed_args(tiny_bert, data, out, "--pooling", "cls", "--force"))
    assert result.exit_code == 0 and "cache hit" not in result.stderr
    with h5py.File(out) as f:
        assert json.loads(f.attrs["poolings"]) == ["cls"]


@pytest.mark.parametrize(
    "name, content, fragments",
    [
        ("wrong_columns.csv", b"sentence,y\nhello,0\n", ["no column 'text'", "--text-column"]),
        ("empty_text.csv", b"text,label\nhello,0\n ,1\n", ["row 2", "empty"]),
        ("latin1.csv", "text,label\ncaf\u00e9,0\n".encode("latin-1"), ["not valid UTF-8"]),
        ("negative.csv", b"text,label\nhello,-1\n", ["negative"]),
        ("bad.jsonl", b'{"text": "a", "label": 0}\n{oops\n', ["line 2", "not valid JSON"]),
    ],
)
def test_bad_files_get_one_line(tiny_bert, tmp_path, name, content, fragments):
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "s.h5"
    one_line_error(invoke(*embed_args(tiny_bert, path, out)), *fragments)
    assert not out.exists()


def test_ag_news_label_out_of_range(tiny_bert, tmp_path):
    folder = write_ag_news_folder(tmp_path / "ag")
    (folder / "test.csv").write_text('"5","title","body"\n')
    one_line_error(invoke(*embed_args(tiny_bert, folder, tmp_path / "s.h5")), "class index 5 is outside 1..4")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--pooling", "avg"], ["--pooling: unknown value 'avg'", "mean-max"]),
        (["--layer", "7"], ["layers 0..2"]),
        (["--layer", "2-1"], ["cannot read --layer '2-1'", "'last' or 'all'"]),
        (["--split", "dev"], ["split 'dev' is not in"]),
        (["--max-length", "129"], ["more than model", "128 tokens"]),
        (["--limit", "5", "--seed", "-1"], ["--seed"]),
        (["--dataset", "no/such/place"], ["--dataset no/such/place does not exist", "'ag_news'"]),
    ],
)
def test_bad_options_get_one_line(tiny_bert, tmp_path, args, fragments):
    data = write_ag_news_folder(tmp_path / "ag")
    out = tmp_path / "s.h5"
    base = embed_args(tiny_bert, data, out)
    if "--dataset" in args:
        base[base.index("--dataset") + 1] = args[1]
        args = []
    one_line_error(invoke(*base, *args), *fragments)
    assert not out.exists()
    assert not list((tmp_path / ".s.h5.partial").glob("*.npz"))  # no model work was done either


def test_model_not_found_offline(tmp_path):
    data = write_ag_news_folder(tmp_path / "ag")
    result = invoke(*embed_args("no-such-org/no-such-model", data, tmp_path / "s.h5"))
    one_line_error(result, "no-such-org/no-such-model", "--model minilm")


def test_model_folder_without_config(tmp_path):
    data = write_ag_news_folder(tmp_path / "ag")
    (tmp_path / "empty-model").mkdir()
    one_line_error(invoke(*embed_args(tmp_path / "empty-model", data, tmp_path / "s.h5")), "no config.json")


def test_output_folder_not_writable(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "ag")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    one_line_error(invoke(*embed_args(tiny_bert, data, blocker / "s.h5")), "is a file, not a folder")


def test_refuses_to_overwrite_a_foreign_file(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "ag")
    out = tmp_path / "precious.h5"
    out.write_bytes(b"my thesis")
    one_line_error(invoke(*embed_args(tiny_bert, data, out)), "is a file, not an mlx embedding store")
    one_line_error(invoke(*embed_args(tiny_bert, data, out, "--force")), "mlx never overwrites it")
    assert out.read_bytes() == b"my thesis"


def test_store_info_on_unreadable_and_foreign_files(tmp_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x00" * 100)
    one_line_error(invoke("store", "info", garbage), "not a readable HDF5 file")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    one_line_error(invoke("store", "info", foreign), "not an mlx embedding store")
    one_line_error(invoke("store", "info", tmp_path / "missing.h5"), "does not exist")
    incomplete = tmp_path / "incomplete.h5"
    with h5py.File(incomplete, "w") as f:
        f.attrs["mlx_format"] = "mlx-embedding-store"
        f.attrs["schema_version"] = 1
        f.attrs["complete"] = False
    one_line_error(invoke("store", "info", incomplete), "incomplete")


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_to_the_same_store(tiny_bert, tmp_path):
    """A real `mlx embed` process killed with SIGKILL mid-run; the re-run finishes from its shards."""
    import signal
    import subprocess
    import sys
    import time

    data = write_ag_news_folder(tmp_path / "ag", n_train=1800, n_test=8)
    args = [sys.executable, "-m", "cli.main", *embed_args(tiny_bert, data, tmp_path / "k.h5", "--layer", "all")]
    args = [str(a) for a in args]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = tmp_path / ".k.h5.partial"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(partial.glob("*.npz"))) < 2:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "k.h5").exists()
    done_before = len(list(partial.glob("*.npz")))
    assert 2 <= done_before < 29, done_before  # 1800 texts / 64 per shard
    assert subprocess.run(args, capture_output=True).returncode == 0
    whole = tmp_path / "whole.h5"
    assert invoke(*embed_args(tiny_bert, data, whole, "--layer", "all")).exit_code == 0
    with EmbeddingStore(tmp_path / "k.h5") as a, EmbeddingStore(whole) as b:
        for layer in (0, 1, 2):
            np.testing.assert_array_equal(a.vectors("train", "mean", layer), b.vectors("train", "mean", layer))


def test_typer_usage_errors_are_one_line_too():
    one_line_error(
        invoke("embed", "--device", "tpu"),
        "--device: unknown value 'tpu'; choose from auto, cpu, cuda",
        "mlx embed --help",
    )
    one_line_error(invoke("store", "info"), "Missing argument")
    version = invoke("--version")
    assert version.exit_code == 0 and version.stdout.startswith("mlx ")


def test_json_output(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "ag")
    first = json.loads(invoke(*embed_args(tiny_bert, data, tmp_path / "s.h5", "--json")).stdout)
    again = json.loads(invoke(*embed_args(tiny_bert, data, tmp_path / "s.h5", "--json")).stdout)
    assert first["cached"] is False and again["cached"] is True
    assert first["n_examples"] == {"train": 24, "test": 12} and first["layers"] == [2]
