"""Every file mlx reads back, under every defect (issue 20, mechanism 4): truncated, random bytes, empty,
not JSON, the wrong JSON type, an unknown key, a missing key, a field of the wrong type. Each is one
line naming the file, never the internal-error path (conftest fails a test that reaches it)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_report import fake_run

from common.errors import StoreError
from tests.helpers import invoke, one_line_error
from training.checkpoints import CheckpointDir


def defects(valid: dict) -> dict[str, bytes]:
    """Damaged versions of the JSON object ``valid``, by name."""
    text = json.dumps(valid).encode()
    first = next(iter(valid))
    return {
        "truncated": text[: len(text) // 2],
        "random bytes": np.random.default_rng(0).bytes(300),
        "empty": b"",
        "not JSON": b"this is not json",
        "a list": json.dumps([valid]).encode(),
        "null": b"null",
        "a string": b'"text"',
        "a number": b"7",
        "unknown key": json.dumps({**valid, "surprise": 1}).encode(),
        "missing key": json.dumps({k: v for k, v in valid.items() if k != first}).encode(),
        "wrong type": json.dumps({**valid, first: [valid[first]]}).encode(),
        "not UTF-8": b'{"\xff\xfe": 1}',
    }


DEFECTS = sorted(defects({"any": 1}))


def _run(tmp_path) -> Path:
    return fake_run(tmp_path / "runs" / "p", "probe", {"knn-a": 0.75, "logreg-a": 0.8})


@pytest.mark.parametrize("defect", DEFECTS)
def test_a_damaged_run_json_is_one_line_for_every_command_that_reads_it(tmp_path, defect):
    run = _run(tmp_path)
    valid = json.loads((run / "run.json").read_text())
    (run / "run.json").write_bytes(defects(valid)[defect])
    one_line_error(invoke("runs", "show", run), str(run))
    other = fake_run(tmp_path / "runs" / "f", "finetune", {"finetune": 0.9}, seed=1)
    one_line_error(invoke("report", run, other, "--no-plots"), str(run))
    listed = invoke("runs", "list", "--root", tmp_path / "runs")  # a listing skips it, saying so
    assert listed.exit_code == 0 and "internal error" not in listed.stderr


@pytest.mark.parametrize("defect", DEFECTS)
def test_a_damaged_best_json_is_one_line(tmp_path, defect):
    checkpoints = CheckpointDir(tmp_path / "c")
    checkpoints.save({"w": torch.zeros(1)}, 2, best=True)
    (checkpoints.folder / "best.json").write_bytes(defects({"step": 2, "file": "step-00000002.pt"})[defect])
    with pytest.raises(StoreError) as caught:
        checkpoints.best_step()
    assert "best.json" in str(caught.value) and "\n" not in str(caught.value)


HEAD = {"train_accuracy": 0.5, "seconds": 1.0, "n_rows": 10}


@pytest.mark.parametrize("defect", DEFECTS)
def test_a_damaged_head_probe_json_is_one_line(tmp_path, defect):
    from finetune.head import read_head_fit

    path = tmp_path / "head_probe.json"
    path.write_bytes(defects(HEAD)[defect])
    with pytest.raises(StoreError) as caught:
        read_head_fit(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


# ---------------------------------------------------------------- the fine-tune partial folder, through the CLI


class _Crash(Exception):
    pass


FINETUNE = dict(n_epochs=2, lr=2e-3, batch_size=8, checkpoint_every=2, warmup=0.1, head_init="probe")


@pytest.fixture(scope="module")
def interrupted_finetune(tiny_bert, tmp_path_factory):
    """The partial folder of a fine-tune interrupted in its second epoch: config.json, head_probe.json,
    best.json and checkpoints, and the command line that resumes it."""
    from finetune.config import FinetuneConfig
    from finetune.plan import prepare_finetune
    from finetune.run import run_finetune
    from tests.helpers import write_ag_news_folder

    root = tmp_path_factory.mktemp("interrupted")
    data = write_ag_news_folder(root / "ag", n_train=80, n_test=16)
    plan = prepare_finetune(FinetuneConfig(model=str(tiny_bert), dataset=str(data), out=root / "run", **FINETUNE))

    def crash(task, completed, total, **info):
        if task == "finetune" and completed == 12 * plan.global_batch:
            raise _Crash

    with pytest.raises(_Crash):
        run_finetune(plan, crash)
    partial = root / ".run.partial"
    assert {"config.json", "head_probe.json"} <= set(os.listdir(partial))
    assert (partial / "checkpoints" / "best.json").exists()
    args = ["finetune", "--model", tiny_bert, "--dataset", data, "--epochs", "2", "--lr", "2e-3"]
    args += ["--batch-size", "8", "--checkpoint-every", "2", "--warmup", "0.1", "--head-init", "probe"]
    return partial, args


CLI_DEFECTS = ("not JSON", "a list", "unknown key", "missing key", "truncated")


@pytest.mark.parametrize("name", ["config.json", "head_probe.json", "checkpoints/best.json"])
@pytest.mark.parametrize("defect", CLI_DEFECTS)
def test_a_damaged_file_of_an_interrupted_finetune_is_one_line_on_resume(interrupted_finetune, tmp_path, name, defect):
    partial, args = interrupted_finetune
    copy = tmp_path / ".run.partial"
    shutil.copytree(partial, copy)
    valid = json.loads((copy / name).read_text())
    (copy / name).write_bytes(defects(valid)[defect])
    one_line_error(invoke(*args, "--out", tmp_path / "run"), Path(name).name)


# ---------------------------------------------------------------- a finished vision sweep, through the CLI


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    from vision_helpers import write_npz_dataset

    root = tmp_path_factory.mktemp("sweep")
    data = write_npz_dataset(root / "kmnist", n_train=120, n_test=60)
    args = ["vision", "sweep", "--model", "mlp-numpy", "--depth", "1", "--width", "8", "--epochs", "1"]
    args += ["--dataset", "kmnist", "--data-dir", data]
    first = invoke(*args, "--out", root / "out")
    assert first.exit_code == 0, first.output
    return root / "out", args


def _sweep_files(out: Path) -> dict[str, Path]:
    (config,) = out.glob("mlp-numpy-*/config.json")
    return {"sweep.json": out / "sweep.json", "config.json": config, "metrics.json": config.parent / "metrics.json"}


@pytest.mark.parametrize("name", ["sweep.json", "config.json", "metrics.json"])
@pytest.mark.parametrize("defect", ("not JSON", "a list", "null", "missing key", "truncated"))
def test_a_damaged_file_of_a_finished_sweep_is_one_line_on_rerun(finished_sweep, tmp_path, name, defect):
    out, args = finished_sweep
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    path = _sweep_files(copy)[name]
    valid = json.loads(path.read_text())
    path.write_bytes(defects(valid)[defect])
    one_line_error(invoke(*args, "--out", copy), name)


# ---------------------------------------------------------------- embed shards kept for a resume


def _shard_defects(path: Path) -> dict:
    with np.load(path) as saved:
        arrays = {k: saved[k] for k in saved.files}
    key = next(k for k in arrays if "@" in k)
    return {
        "random bytes": lambda: path.write_bytes(np.random.default_rng(0).bytes(2000)),
        "truncated": lambda: path.write_bytes(path.read_bytes()[:500]),
        "empty": lambda: path.write_bytes(b""),
        "rows missing": lambda: np.savez(path, **{**arrays, key: arrays[key][:-1]}),
        "float64": lambda: np.savez(path, **{**arrays, key: arrays[key].astype(np.float64)}),
        "1-D": lambda: np.savez(path, **{**arrays, key: arrays[key][:, 0]}),
        "a pickled object": lambda: np.savez(path, **{**arrays, key: np.array([{"x": 1}], dtype=object)}),
        "nan": lambda: np.savez(path, **{**arrays, key: np.full_like(arrays[key], np.nan)}),
        "a vector missing": lambda: np.savez(path, **{k: v for k, v in arrays.items() if k != key}),
    }


SHARD_DEFECTS = ("random bytes", "truncated", "empty", "rows missing", "float64", "1-D", "a pickled object", "nan")


@pytest.mark.parametrize("defect", [*SHARD_DEFECTS, "a vector missing"])
def test_a_damaged_embed_shard_is_recomputed_said_aloud(tiny_bert, tmp_path, defect, caplog):
    from embeddings.extract import EmbedConfig, extract_embeddings, plan_extraction
    from embeddings.store import EmbeddingStore
    from tests.helpers import write_ag_news_folder

    data = write_ag_news_folder(tmp_path / "ag", n_train=150, n_test=8)
    config = EmbedConfig(
        dataset=str(data), model=str(tiny_bert), batch_size=4, out=tmp_path / "s.h5", poolings=("mean", "cls")
    )
    clean = extract_embeddings(plan_extraction(EmbedConfig(**{**config.__dict__, "out": tmp_path / "clean.h5"})))

    def interrupt(task, done, total, **_):
        if task == "embed train" and done > 64:  # a shard is 16 batches of 4 = 64 texts
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_embeddings(plan_extraction(config), interrupt)
    (shard,) = tmp_path.glob(".s.h5.partial/train-00000.npz")
    _shard_defects(shard)[defect]()
    if defect == "a vector missing":  # each shard whole, but not one extraction: one line, nothing assembled
        with pytest.raises(StoreError, match="do not all hold"):
            extract_embeddings(plan_extraction(config))
        return
    result = extract_embeddings(plan_extraction(config))
    assert result.n_resumed == 0 and f"shard {shard} is damaged" in caplog.text
    with EmbeddingStore(clean.path) as a, EmbeddingStore(result.path) as b:
        assert np.array_equal(a.vectors("train", "mean", 2), b.vectors("train", "mean", 2))


# ---------------------------------------------------------------- an embedding store's own attributes


def _damage_attrs(path: Path, defect: str) -> None:
    import h5py

    with h5py.File(path, "r+") as f:
        if defect == "poolings not JSON":
            f.attrs["poolings"] = "[mean"
        elif defect == "no schema_version":
            del f.attrs["schema_version"]
        elif defect == "layers of text":
            f.attrs["layers"] = json.dumps(["last"])
        elif defect == "split without its size":
            split = next(name for name in f if isinstance(f[name], h5py.Group))
            del f[split].attrs["n_examples"]
        elif defect == "config a list":
            f.attrs["config"] = "[1, 2]"
        elif defect == "max_length text":
            f.attrs["max_length"] = "long"


STORE_DEFECTS = (
    "poolings not JSON",
    "no schema_version",
    "layers of text",
    "split without its size",
    "config a list",
    "max_length text",
)


@pytest.mark.parametrize("defect", STORE_DEFECTS)
def test_a_store_with_damaged_attributes_is_one_line_for_every_command_that_reads_it(tmp_path, defect):
    from probes.synthetic import write_synthetic_store

    store = write_synthetic_store(tmp_path / "s.h5")
    _damage_attrs(store, defect)
    one_line_error(invoke("store", "info", store), str(store))
    one_line_error(invoke("probe", "knn", "--store", store, "--k", "1"), str(store))
    listed = invoke("store", "list", "--root", tmp_path)
    assert listed.exit_code == 0 and "internal error" not in listed.stderr


@pytest.mark.parametrize("memo", ["not json", "[1]", '{"STAMP": 7}', '{"STAMP": "short"}', '{"STAMP": null}'])
def test_a_damaged_weights_hash_memo_is_hashed_again(tmp_path, memo):
    """$MLX_HOME/cache/weights-sha256.json is a cache: an entry that is not a 16-hex-digit hash is ignored."""
    from text.models import _memo_path, weights_sha256

    (tmp_path / "model.safetensors").write_bytes(b"a" * 1000)
    first = weights_sha256(tmp_path)
    stamp = next(iter(json.loads(_memo_path().read_text())))
    _memo_path().write_text(memo.replace("STAMP", stamp.replace("\\", "\\\\")))
    assert weights_sha256(tmp_path) == first


@pytest.mark.parametrize("shape", ["fifo", "folder"])
def test_a_fifo_or_folder_under_a_checkpoint_or_marker_name_neither_blocks_nor_fails(tmp_path, shape):
    checkpoints = CheckpointDir(tmp_path / "c")
    checkpoints.save({"w": torch.zeros(1)}, 2, best=True)
    for name in ("step-00000009.pt", "best.json"):
        path = checkpoints.folder / name
        path.unlink(missing_ok=True)
        os.mkfifo(path) if shape == "fifo" else path.mkdir()
    assert checkpoints.steps() == [2] and checkpoints.last_step() == 2  # not a checkpoint: not counted
    with pytest.raises(StoreError, match="best.json is damaged \\(not a regular file\\)"):
        checkpoints.best_step()
