"""One identity and reuse rule (common/artifacts.py): what every resumable or reusable artifact answers to.

Issue 20, mechanism 1 and its failures: a rewritten training file or model is another run (1); --force
replaces only an artifact of its own kind (10); a study folder is held by one process (11); a study's
stale store names the remedy a study has (13).
"""

import csv
import json
import os
import shutil
from enum import Enum
from pathlib import Path

import numpy as np
import pytest

from common.errors import ConfigError, StoreError
from tests.helpers import invoke, write_ag_news_folder


class Colour(str, Enum):
    RED = "red"


# --- the converter and the rule ---------------------------------------------------------------


def test_to_plain_is_json_ready_for_everything_mlx_saves():
    from dataclasses import dataclass

    from common.artifacts import to_plain

    @dataclass(frozen=True)
    class Inner:
        path: Path
        colour: Colour

    value = {
        "inner": Inner(Path("a/b"), Colour.RED),
        "tuple": (1, 2.5, None),
        "numpy": [np.int64(3), np.float32(0.5), np.arange(3)],
        "nan": float("nan"),
        "inf": float("-inf"),
        7: True,
    }
    plain = to_plain(value)
    assert plain == {
        "inner": {"path": "a/b", "colour": "red"},
        "tuple": [1, 2.5, None],
        "numpy": [3, 0.5, [0, 1, 2]],
        "nan": None,
        "inf": None,
        "7": True,
    }
    json.dumps(plain, allow_nan=False)  # strict JSON


def identity(**changes):
    from common.artifacts import Identity

    base = dict(config={"lr": 0.1, "n_epochs": 2}, data={"train": "aaaa", "test": "bbbb"}, model="sha256:w1")
    return Identity("thing", **{**base, **changes})


@pytest.mark.parametrize(
    "saved, finished, progress, force, expected",
    [
        (None, False, False, False, "new"),
        ({}, True, True, False, "reuse"),
        ({}, False, True, False, "resume"),
        ({}, False, False, False, "new"),
        (dict(config={"lr": 0.2, "n_epochs": 2}), False, False, False, "restart"),
        (dict(data={"train": "cccc", "test": "bbbb"}), True, True, True, "restart"),
        ({}, True, True, True, "restart"),
    ],
)
def test_the_reuse_rule(saved, finished, progress, force, expected, tmp_path):
    from common.artifacts import decide

    found = None if saved is None else identity(**saved).flat()
    assert decide(tmp_path, identity(), found, finished=finished, progress=progress, force=force).value == expected


@pytest.mark.parametrize(
    "changed, named",
    [
        (dict(config={"lr": 0.2, "n_epochs": 2}), "lr 0.2 -> 0.1"),
        (dict(data={"train": "cccc", "test": "bbbb"}), "train data cccc -> aaaa"),
        (dict(model="sha256:w0"), "model weights sha256:w0 -> sha256:w1"),
    ],
)
@pytest.mark.parametrize("finished", [True, False])
def test_another_identity_with_work_in_it_is_refused_naming_the_keys(changed, named, finished, tmp_path):
    from common.artifacts import IdentityMismatch, decide

    with pytest.raises(IdentityMismatch, match="other options") as raised:
        decide(tmp_path, identity(), identity(**changed).flat(), finished=finished, progress=True, remedy="do X")
    assert named in str(raised.value) and str(raised.value).endswith("do X") and raised.value.changed == (named,)


def test_identity_keys_ignore_key_order_and_paths_left_out():
    from common.artifacts import Identity, differences

    a = Identity.of("run", {"dataset": "./data", "lr": 0.1, "seed": 1}, data={"train": "f"}, leave_out=("dataset",))
    b = Identity.of("run", {"seed": 1, "lr": 0.1, "dataset": "data"}, data={"train": "f"}, leave_out=("dataset",))
    assert a.key() == b.key() and a == Identity.from_dict(json.loads(json.dumps(a.to_dict())))
    assert differences({"x": (1, 2)}, {"x": [1, 2]}) == []  # a tuple read back from JSON is a list


# --- item 1: a rewritten training file or model is another run, never a resume ---------------


def finetune_args(model, data, out, *extra):
    options = {"--model": model, "--dataset": data, "--out": out, "--epochs": 2, "--lr": 2e-3, "--batch-size": 8}
    return ("finetune", *(str(part) for pair in options.items() for part in pair), "--checkpoint-every", "2", *extra)


class Crash(Exception):
    pass


def crash_after_a_checkpoint(task, completed, total, **info):
    if task == "finetune" and completed >= 5 * 8:
        raise Crash()


def interrupted_run(model, data, out):
    """A fine-tuning run killed after its checkpoint at step 4."""
    from finetune.config import FinetuneConfig
    from finetune.plan import prepare_finetune
    from finetune.run import run_finetune

    config = FinetuneConfig(
        model=str(model), dataset=str(data), out=out, n_epochs=2, lr=2e-3, batch_size=8, checkpoint_every=2
    )
    with pytest.raises(Crash):
        run_finetune(prepare_finetune(config), crash_after_a_checkpoint)
    assert prepare_finetune(config).resume_step == 4
    return config


def rotate_labels(data: Path) -> None:
    rows = list(csv.reader(open(data / "train.csv", newline="")))
    with open(data / "train.csv", "w", newline="") as fh:
        csv.writer(fh, quoting=csv.QUOTE_ALL).writerows([[str(int(r[0]) % 4 + 1), *r[1:]] for r in rows])


def rewrite_weights(model: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(str(model / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = weights[name] + 1.0
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda data, model: rotate_labels(data), "train data"),
        (lambda data, model: rewrite_weights(model), "model weights"),
    ],
    ids=["training file rewritten", "model folder's weights rewritten"],
)
def test_a_resume_after_the_data_or_the_model_changed_is_refused_naming_it(tiny_bert, tmp_path, change, named):
    from finetune.plan import prepare_finetune

    model = tmp_path / "model"
    shutil.copytree(tiny_bert, model)
    data = write_ag_news_folder(tmp_path / "ag", n_train=80, n_test=24)
    config = interrupted_run(model, data, tmp_path / "run")
    change(data, model)
    with pytest.raises(ConfigError, match=f"other options \\({named} [0-9a-z:]+ -> ") as raised:
        prepare_finetune(config)
    assert "--force to start over" in str(raised.value)
    result = invoke(*finetune_args(model, data, tmp_path / "run"))
    assert result.exit_code != 0 and named in result.stderr and "resuming" not in result.stderr


def test_two_spellings_of_one_dataset_are_one_run(tiny_bert, tmp_path, monkeypatch):
    from finetune.plan import prepare_finetune

    data = write_ag_news_folder(tmp_path / "ag", n_train=80, n_test=24)
    config = interrupted_run(tiny_bert, data, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    from dataclasses import replace

    for spelling in ("ag", "./ag", "ag/", str(tmp_path / "ag" / ".." / "ag")):
        assert prepare_finetune(replace(config, dataset=spelling)).resume_step == 4, spelling
    plans = [prepare_finetune(replace(config, dataset=s, out=None)) for s in ("ag", "./ag")]
    assert plans[0].out == plans[1].out  # the default folder too


def test_a_run_an_older_mlx_left_unfinished_in_its_default_folder_resumes(tiny_bert, tmp_path):
    """Folders named by the options' hash (before the identity held fingerprints) are found again."""
    from dataclasses import replace

    from common.paths import mlx_home
    from finetune.plan import prepare_finetune, run_key

    data = write_ag_news_folder(tmp_path / "ag", n_train=80, n_test=24)
    config = interrupted_run(tiny_bert, data, tmp_path / "run")
    plan = prepare_finetune(replace(config, out=None))
    legacy = mlx_home() / "finetune" / f"ag-{tiny_bert.name}-{run_key(plan.config, 1)}"
    marker = tmp_path / ".run.partial" / "config.json"
    saved = json.loads(marker.read_text())
    del saved["identity"]  # as an older mlx wrote it
    marker.write_text(json.dumps(saved))
    legacy.parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / ".run.partial").rename(legacy.parent / f".{legacy.name}.partial")
    resumed = prepare_finetune(replace(config, out=None))
    assert resumed.out == legacy and resumed.resume_step == 4
    moved = prepare_finetune(replace(config, out=None, lr=1e-3))  # other options: a new run in its own folder
    assert moved.out != legacy and moved.resume_step is None


# --- item 10: --force replaces only an artifact of its own kind -------------------------------


def probe_run(tmp_path) -> Path:
    folder = tmp_path / "probe-run"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"kind": "probe"}))
    return folder


def text_study(tmp_path) -> Path:
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "study.json").write_text(json.dumps({"kind": "study text", "base": {}}))
    return folder


def precious_file(tmp_path) -> Path:
    path = tmp_path / "thesis.h5"
    path.write_bytes(b"my thesis")
    return path


def plain_folder(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8")
    return folder


def store_file(tmp_path) -> Path:
    from probes.synthetic import write_synthetic_store

    return write_synthetic_store(tmp_path / "store.h5")


TARGETS = {
    "a probe run": probe_run,
    "a study text": text_study,
    "a file": precious_file,
    "a folder that is not an mlx artifact": plain_folder,
    "an mlx embedding store": store_file,
}


def snapshot(path: Path) -> dict:
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("found", list(TARGETS))
@pytest.mark.parametrize("command", ["finetune", "embed"])
def test_force_replaces_only_an_artifact_of_the_same_kind(tiny_bert, tmp_path, command, found):
    data = write_ag_news_folder(tmp_path / "ag", n_train=40, n_test=8)
    target = TARGETS[found](tmp_path)
    if command == "embed" and found == "an mlx embedding store":
        pytest.skip("an embedding store is what embed --force replaces")
    before = snapshot(target)
    if command == "finetune":
        args = finetune_args(tiny_bert, data, target, "--force")
    else:
        args = ("embed", "--model", tiny_bert, "--dataset", data, "--out", target, "--force")
    result = invoke(*args)
    assert result.exit_code != 0, result.output
    error = [line for line in result.stderr.splitlines() if line.strip()]
    # A path of the wrong shape (a file for finetune's run folder, a folder for embed's store file) is named
    # so by the input boundary (common/paths.py); one of the right shape is named for what it holds.
    wanted = "folder" if command == "finetune" else "file"
    shape = "folder" if target.is_dir() else "file"
    named = f"is {found}" if shape == wanted else f"is a {shape}, not a {wanted}"
    assert len(error) == 1 and named in error[0] and "Traceback" not in result.output, result.output
    assert snapshot(target) == before


def test_what_is_names_each_kind(tmp_path):
    from common.artifacts import what_is

    (tmp_path / "empty").mkdir()
    link = tmp_path / "dangling"
    os.symlink(tmp_path / "gone", link)
    assert what_is(tmp_path / "empty") == "an empty folder"
    assert what_is(link) == "a dangling symbolic link"
    assert what_is(tmp_path / "nothing-here") == "nothing"
    os.mkfifo(tmp_path / "fifo")
    assert what_is(tmp_path / "fifo") == "a special file (a FIFO, socket or device)"
    finetuned = tmp_path / "ft"
    finetuned.mkdir()
    (finetuned / "run.json").write_text(json.dumps({"kind": "finetune"}))
    assert what_is(finetuned) == "a fine-tuning run"
    for found, build in TARGETS.items():
        assert what_is(build(tmp_path)) == found


def test_a_damaged_partial_marker_is_one_line(tiny_bert, tmp_path):
    from finetune.plan import prepare_finetune

    data = write_ag_news_folder(tmp_path / "ag", n_train=80, n_test=24)
    config = interrupted_run(tiny_bert, data, tmp_path / "run")
    (tmp_path / ".run.partial" / "config.json").write_text("[1, 2]")
    with pytest.raises(StoreError, match="config.json is damaged"):
        prepare_finetune(config)


# --- item 11: one study writes a study folder; item 13: a stale study store names the study's remedy ----


def study_args(model, data, out, *extra):
    options = {"--model": model, "--dataset": data, "--out": out, "--pooling": "mean"}
    return ("study", "text", *(str(part) for pair in options.items() for part in pair), "--no-finetune", *extra)


def vision_study_args(tmp_path, out):
    from vision_helpers import write_npz_dataset

    data = write_npz_dataset(tmp_path / "kmnist", n_train=120, n_test=60)
    return ("study", "vision", "--dataset", "kmnist", "--data-dir", data, "--models", "mlp-numpy", "--epochs", "1",
            "--sweep-model", "mlp-numpy", "--device", "cpu", "--out", out)  # fmt: skip


@pytest.mark.parametrize("study", ["text", "vision"])
def test_a_study_folder_in_use_is_refused_at_once_naming_the_process(tiny_bert, tmp_path, study):
    from common.locking import store_lock

    out = tmp_path / "study"
    if study == "text":
        args = study_args(tiny_bert, write_ag_news_folder(tmp_path / "ag", n_train=40, n_test=12), out)
    else:
        args = vision_study_args(tmp_path, out)
    out.mkdir()
    with store_lock(out, "study"):  # another mlx process is running a study there
        result = invoke(*args)
    assert result.exit_code != 0 and f"in use by pid {os.getpid()}" in result.stderr, result.output
    assert not list(out.rglob("run.json"))  # nothing computed beside the running study


def test_a_stale_study_store_names_what_a_study_can_do(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "ag", n_train=40, n_test=12)
    out = tmp_path / "study"
    assert invoke(*study_args(tiny_bert, data, out)).exit_code == 0
    frozen = out / "stores" / "frozen.h5"
    replaced = invoke("embed", "--model", tiny_bert, "--dataset", data, "--pooling", "max", "--out", frozen, "--force")
    assert replaced.exit_code == 0, replaced.output
    result = invoke(*study_args(tiny_bert, data, out))
    error = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert result.exit_code != 0 and len(error) == 1, result.output
    assert "--force" not in error[0] and "delete it" in error[0] and "poolings" in error[0], error[0]


def test_a_study_an_older_mlx_started_is_resumed(tiny_bert, tmp_path):
    """study.json held the settings with paths and the whole dataset's fingerprint."""
    from text.datasets import load_text_dataset

    data = write_ag_news_folder(tmp_path / "ag", n_train=40, n_test=12)
    out = tmp_path / "study"
    assert invoke(*study_args(tiny_bert, data, out)).exit_code == 0
    fingerprint = load_text_dataset(str(data)).fingerprint
    saved = json.loads((out / "study.json").read_text())
    base = {
        **saved["identity"]["config"],
        "model": str(tiny_bert),
        "dataset": str(data),
        "data_fingerprint": fingerprint,
    }
    (out / "study.json").write_text(json.dumps({"kind": "study text", "base": base}))
    again = invoke(*study_args(tiny_bert, data, out))
    assert again.exit_code == 0 and "0 step(s) run" in again.stderr, again.output
    (out / "study.json").write_text(json.dumps({"kind": "study text", "base": {**base, "data_fingerprint": "0ld"}}))
    refused = invoke(*study_args(tiny_bert, data, out))
    assert refused.exit_code != 0 and "data_fingerprint (older mlx) 0ld -> None" in refused.stderr
