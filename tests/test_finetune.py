"""`mlx finetune` on a tiny random BERT: learning, the run folder, exact resume, checkpoints, bad input."""

import inspect
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from common.errors import ConfigError
from finetune.config import FinetuneConfig
from finetune.plan import prepare_finetune
from finetune.run import run_finetune
from tests.helpers import invoke, write_ag_news_folder
from training.checkpoints import CheckpointDir
from training.devices import preferred_dtype

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def data(tmp_path):
    return write_ag_news_folder(tmp_path / "ag", n_train=80, n_test=24)


def config(model, data, out, **options) -> FinetuneConfig:
    base = dict(
        model=str(model), dataset=str(data), out=out, n_epochs=2, lr=2e-3, batch_size=8, checkpoint_every=2, warmup=0.1
    )
    return FinetuneConfig(**{**base, **options})


def weights(run: Path) -> dict:
    return load_file(str(run / "model" / "model.safetensors"))


def read_run(run: Path) -> dict:
    """run.json (common/record.py shape) flattened: the one result row's metrics and details, plus the config."""
    record = json.loads((run / "run.json").read_text())
    assert record["kind"] == "finetune" and len(record["results"]) == 1
    row = record["results"][0]
    return {
        **row["details"],
        **{k: v for k, v in row.items() if k != "details"},
        "config": record["config"],
        "record": record,
    }


def same_run(a: Path, b: Path) -> None:
    """Bit-identical weights and identical metrics (timings aside)."""
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    ra, rb = read_run(a), read_run(b)
    for key in ("accuracy", "macro_f1", "validation_accuracy", "best_step", "evals", "confusion_matrix"):
        assert ra[key] == rb[key], key
    assert [(e["train_loss"], e["val_loss"]) for e in ra["epochs"]] == [
        (e["train_loss"], e["val_loss"]) for e in rb["epochs"]
    ]


def test_finetune_learns_and_writes_a_complete_run(tiny_bert, data, tmp_path):
    out = tmp_path / "run"
    result = invoke(
        "finetune",
        "--model",
        tiny_bert,
        "--dataset",
        data,
        "--out",
        out,
        "--epochs",
        "8",  # a random tiny BERT: 4 epochs barely move the loss off ln 4
        "--lr",
        "3e-3",
        "--batch-size",
        "8",
        "--eval-every",
        "3",
        "--ema-decay",
        "0",  # the last iterate: a random tiny BERT still learns fast at its last steps, where an average lags
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    record = read_run(out)
    assert summary == record["record"]  # --json prints the run record
    assert record["accuracy"] > 0.5  # 4 balanced classes: chance is 0.25
    assert record["n_train"] == 72 and record["n_validation"] == 8 and record["n_test"] == 24
    assert [s["name"] for s in record["record"]["data"]["splits"]] == ["train", "validation", "test"]
    losses = [e["train_loss"] for e in record["epochs"]]
    assert losses[-1] < losses[0]
    assert record["trainable_params"] > 0 and record["train_seconds"] > 0
    assert record["dtype"] == preferred_dtype("auto", "cpu").value  # bf16 where this CPU has it, else fp32
    assert len(record["evals"]) == 8 * 9 // 3 and record["best_step"] in [e["step"] for e in record["evals"]]
    assert sum(map(sum, record["confusion_matrix"])) == 24 and set(record["per_class"]) == {
        "World",
        "Sports",
        "Business",
        "Sci/Tech",
    }
    predictions = np.load(out / "predictions.npz")
    np.testing.assert_array_equal(predictions["row_ids"], np.arange(24))
    assert np.mean(predictions["finetune"] == predictions["y_true"]) == record["accuracy"]
    assert (out / "learning_curve.png").stat().st_size > 0 and not (out / "checkpoints").exists()
    assert not list(tmp_path.glob(".run.partial*"))
    config_json = json.loads((out / "model" / "config.json").read_text())
    assert config_json["id2label"] == {"0": "World", "1": "Sports", "2": "Business", "3": "Sci/Tech"}
    # the fine-tuned encoder is a Hugging Face folder that `mlx embed` reads like any other
    store = tmp_path / "ft.h5"
    embedded = invoke("embed", "--model", out / "model", "--dataset", data, "--out", store, "--split", "test")
    assert embedded.exit_code == 0, embedded.output


@pytest.mark.parametrize("seed", [0, 3])
def test_validation_rows_are_the_logreg_probes_rows_at_every_seed(tiny_bert, data, tmp_path, seed):
    from common.splits import stratified_split
    from probes.logreg import select_C
    from text.validation import VALIDATION_FRACTION, validation_split

    plan = prepare_finetune(config(tiny_bert, data, tmp_path / "run", seed=seed))
    labels = plan.dataset.splits["train"].labels
    fit_rows, val_rows = validation_split(labels, seed)
    np.testing.assert_array_equal(plan.val_rows, val_rows)
    np.testing.assert_array_equal(plan.fit_rows, fit_rows)
    # the probe chooses C on the rows stratified_split gives at the run's seed and the one fraction
    assert inspect.signature(select_C).parameters["validation_fraction"].default == VALIDATION_FRACTION
    np.testing.assert_array_equal(stratified_split(labels, VALIDATION_FRACTION, seed)[1], plan.val_rows)


def test_embed_and_finetune_resolve_one_default_max_length(tiny_bert, data, tmp_path):
    from embeddings.extract import EmbedConfig, plan_extraction
    from text.limits import DEFAULT_MAX_LENGTH
    from text.models import model_shape

    plan = prepare_finetune(config(tiny_bert, data, tmp_path / "run"))
    store = plan_extraction(EmbedConfig(dataset=str(data), model=str(tiny_bert), out=tmp_path / "s.h5"))
    expected = min(DEFAULT_MAX_LENGTH, model_shape(str(tiny_bert)).max_positions or DEFAULT_MAX_LENGTH)
    assert plan.config.max_length == store.config.max_length == expected


class Crash(Exception):
    pass


def crash_at(step: int, global_batch: int):
    def progress(task, completed, total, **info):
        if task == "finetune" and completed == step * global_batch:
            raise Crash(step)

    return progress


@pytest.mark.parametrize(
    "crash_step", [1, 5, 9, 14]
)  # before any checkpoint, mid-epoch, last step of an epoch, epoch 2
def test_resume_after_a_crash_is_bit_identical(tiny_bert, data, tmp_path, crash_step, reference_run):
    out = tmp_path / "crashed"
    plan = prepare_finetune(config(tiny_bert, data, out))
    with pytest.raises(Crash):
        run_finetune(plan, crash_at(crash_step, plan.global_batch))
    assert not out.exists() and (tmp_path / ".crashed.partial" / "config.json").exists()
    resumed = prepare_finetune(config(tiny_bert, data, out))
    assert resumed.resume_step == (
        (crash_step - 1) // 2 * 2 or None
    )  # a checkpoint every 2 steps, the crash before step k is saved
    result = run_finetune(resumed)
    assert result.history.resumed_from_step == resumed.resume_step
    same_run(out, reference_run)


@pytest.fixture
def reference_run(tiny_bert, data, tmp_path):
    out = tmp_path / "reference"
    run_finetune(prepare_finetune(config(tiny_bert, data, out)))
    return out


def test_kill_9_mid_run_then_the_same_command_resumes_exactly(tiny_bert, data, tmp_path, reference_run):
    out = tmp_path / "killed"
    args = [
        "finetune",
        "--model",
        str(tiny_bert),
        "--dataset",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--lr",
        "2e-3",
        "--batch-size",
        "8",
        "--checkpoint-every",
        "2",
        "--warmup",
        "0.1",
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    checkpoints = CheckpointDir(tmp_path / ".killed.partial" / "checkpoints")
    deadline = time.monotonic() + 600  # a loaded machine takes long to import torch
    while (checkpoints.last_step() or 0) < 4 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    assert not out.exists() and checkpoints.last_step() >= 4
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "resuming from step" in result.stderr
    same_run(out, reference_run)


def test_changed_options_on_resume_are_named_and_a_finished_run_is_kept(tiny_bert, data, tmp_path):
    out = tmp_path / "run"
    plan = prepare_finetune(config(tiny_bert, data, out))
    with pytest.raises(Crash):
        run_finetune(plan, crash_at(3, plan.global_batch))
    result = invoke(
        "finetune",
        "--model",
        tiny_bert,
        "--dataset",
        data,
        "--out",
        out,
        "--epochs",
        "3",
        "--lr",
        "1e-3",
        "--batch-size",
        "8",
        "--checkpoint-every",
        "2",
        "--warmup",
        "0.1",
    )
    assert result.exit_code != 0
    assert "other options (--lr 0.002 -> 0.001, --epochs 2 -> 3)" in result.stderr and "Traceback" not in result.output
    # A run interrupted under torch's own dropout masks (an older mlx) is not resumed under PCG64's.
    partial = next(p for p in tmp_path.iterdir() if p.name.endswith(".partial"))
    saved = json.loads((partial / "config.json").read_text())
    (partial / "config.json").write_text(
        json.dumps(
            {
                **{k: v for k, v in saved.items() if k != "identity"},  # as an older mlx wrote it
                "options": {k: v for k, v in saved["options"].items() if k != "dropout_masks"},
            }
        )
    )
    with pytest.raises(ConfigError, match=r"dropout masks \(an older mlx\) torch -> pcg64"):
        prepare_finetune(config(tiny_bert, data, out))
    (partial / "config.json").write_text(json.dumps(saved))
    run_finetune(prepare_finetune(config(tiny_bert, data, out)))
    before = (out / "run.json").read_text()
    again = invoke("finetune", "--model", tiny_bert, "--dataset", data, "--out", out, "--batch-size", "8")
    assert again.exit_code != 0 and "finished run" in again.stderr and "--force" in again.stderr
    assert (out / "run.json").read_text() == before
    forced = run_finetune(prepare_finetune(config(tiny_bert, data, out, n_epochs=1, force=True)))
    assert forced.history.n_steps == 9 and read_run(out)["config"]["n_epochs"] == 1


def test_pruning_keeps_the_last_k_and_the_best(tmp_path):
    checkpoints = CheckpointDir(tmp_path / "c", keep_last=2)
    for step, best in [(1, False), (2, True), (3, False), (4, False), (5, False)]:
        checkpoints.save({"step": step}, step, best)
    assert checkpoints.steps() == [2, 4, 5] and checkpoints.best_step() == 2
    checkpoints.save({"step": 6}, 6, True)
    assert (
        checkpoints.steps() == [5, 6]
        and checkpoints.load(6) == {"step": 6}
        and checkpoints.load_latest() == {"step": 6}
    )
    (checkpoints.folder / ".step-00000007.pt.abc.partial").write_bytes(b"half")
    checkpoints.clean_partials()
    assert checkpoints.steps() == [5, 6] and not list(checkpoints.folder.glob("*.partial"))


def test_loss_going_nan_stops_and_keeps_the_last_good_checkpoint(tiny_bert, data, tmp_path):
    out = tmp_path / "run"
    result = invoke(
        "finetune",
        "--model",
        tiny_bert,
        "--dataset",
        data,
        "--out",
        out,
        "--lr",
        "1e30",
        "--warmup",
        "0",
        "--max-grad-norm",
        "1e30",
        "--batch-size",
        "8",
        "--checkpoint-every",
        "1",
        "--dtype",
        "fp32",
    )
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    message = result.stderr
    assert "diverged at step" in message and "last good checkpoint" in message, message
    kept = CheckpointDir(tmp_path / ".run.partial" / "checkpoints")
    assert (
        not out.exists()
        and kept.steps()
        and all(np.isfinite(v.float()).all() for v in kept.load_latest()["model"].values() if v.is_floating_point())
    )


def test_gradient_accumulation_takes_one_step_per_group_of_micro_batches(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "ag", n_train=80, n_test=8)
    plan = prepare_finetune(config(tiny_bert, data, tmp_path / "run", batch_size=4, grad_accum=2, n_epochs=1))
    result = run_finetune(plan)
    assert plan.global_batch == 8 and result.history.n_steps == 9  # 72 rows / 4 = 18 micro-batches / 2


def test_the_probe_head_is_the_logistic_regression_of_the_frozen_features(tiny_bert, data, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from finetune.data import encode_split, scoring_batches
    from finetune.head import PROBE_C, classifier_layer, probe_head
    from training.distributed import DistInfo

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=4).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    texts = [f"headline {i} about {w}" for i, w in enumerate(["cup", "market", "chip", "war"] * 6)]
    labels = np.arange(24) % 4
    split = encode_split(texts, labels, np.arange(24), tokenizer, 32)
    batches, order = scoring_batches(split, 5, tokenizer.pad_token_id)
    with torch.no_grad():  # what BERT's classifier reads: the pooled [CLS] (dropout is off in eval)
        features = model.bert(**tokenizer(texts, padding=True, return_tensors="pt")).pooler_output.numpy()
    head = probe_head(model, batches, labels[order], 4, torch.device("cpu"), None, DistInfo(), seed=0)
    expected = LogisticRegression(C=PROBE_C, max_iter=1000, random_state=0).fit(features, labels)
    layer = classifier_layer(model, 4)
    assert layer is model.classifier and head.n_rows == 24
    np.testing.assert_allclose(layer.weight.detach().numpy(), expected.coef_, atol=1e-3)
    np.testing.assert_allclose(layer.bias.detach().numpy(), expected.intercept_, atol=1e-3)
    assert head.train_accuracy == pytest.approx(expected.score(features, labels))


def test_head_init_is_recorded_and_part_of_the_runs_identity(tiny_bert, data, tmp_path):
    probe = run_finetune(prepare_finetune(config(tiny_bert, data, tmp_path / "probe", n_epochs=1)))
    random = run_finetune(
        prepare_finetune(config(tiny_bert, data, tmp_path / "random", n_epochs=1, head_init="random"))
    )
    probe_record, random_record = read_run(probe.out), read_run(random.out)
    assert probe_record["params"]["head_init"] == "probe" and random_record["params"]["head_init"] == "random"
    assert 0 <= probe_record["head_probe"]["train_accuracy"] <= 1 and "head_probe" not in random_record
    assert probe.train_seconds >= probe.history.seconds + probe.head.seconds - 1e-9  # its cost counts
    assert not torch.equal(weights(probe.out)["classifier.weight"], weights(random.out)["classifier.weight"])
    from finetune.plan import run_key

    assert run_key(config(tiny_bert, data, None), 1) != run_key(config(tiny_bert, data, None, head_init="random"), 1)


def test_label_smoothing_is_the_loss_and_part_of_the_runs_identity(tiny_bert, data, tmp_path):
    from finetune.plan import run_key

    plain = run_finetune(prepare_finetune(config(tiny_bert, data, tmp_path / "plain", n_epochs=1)))
    smooth = run_finetune(
        prepare_finetune(config(tiny_bert, data, tmp_path / "smooth", n_epochs=1, label_smoothing=0.2))
    )
    assert (
        read_run(smooth.out)["params"]["label_smoothing"] == 0.2
        and read_run(plain.out)["params"]["label_smoothing"] == 0
    )
    # the same batches and the same start: only the loss differs
    assert smooth.history.epochs[0].train_loss != plain.history.epochs[0].train_loss
    assert not torch.equal(weights(plain.out)["classifier.weight"], weights(smooth.out)["classifier.weight"])
    assert run_key(config(tiny_bert, data, None), 1) != run_key(config(tiny_bert, data, None, label_smoothing=0.1), 1)


def test_probe_heads_for_two_classes_and_for_a_class_without_training_rows():
    from scipy.special import softmax
    from sklearn.linear_model import LogisticRegression

    from finetune.head import ABSENT_CLASS_BIAS, head_parameters

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5))
    binary = LogisticRegression().fit(x, np.where(x[:, 0] > 0, 1, 0))
    weight, bias = head_parameters(binary, 2)
    logits = x @ weight.T + bias  # two logits whose softmax is the regression's sigmoid (not one row copied twice)
    np.testing.assert_allclose(softmax(logits, axis=1), binary.predict_proba(x), atol=1e-12)
    labels = np.array([0, 1, 3])[np.digitize(x[:, 0], [-0.5, 0.5])]  # class 2 has no rows
    three_of_four = LogisticRegression().fit(x, labels)
    weight, bias = head_parameters(three_of_four, 4)
    assert weight.shape == (4, 5) and not weight[2].any() and bias[2] == ABSENT_CLASS_BIAS
    logits = x @ weight.T + bias
    np.testing.assert_array_equal(logits.argmax(axis=1), three_of_four.predict(x))


def test_a_run_interrupted_before_its_first_checkpoint_restarts_with_new_options(tiny_bert, data, tmp_path):
    out = tmp_path / "early"
    plan = prepare_finetune(config(tiny_bert, data, out))
    with pytest.raises(Crash):
        run_finetune(plan, crash_at(1, plan.global_batch))  # before the first checkpoint (every 2 steps)
    again = prepare_finetune(config(tiny_bert, data, out, head_init="random", lr=1e-3))  # no refusal: nothing to resume
    assert again.resume_step is None
    run_finetune(again)
    saved = json.loads((out / "config.json").read_text())["options"]
    assert saved["head_init"] == "random" and saved["lr"] == 1e-3 and not (out / "head_probe.json").exists()


def test_the_resolved_dtype_is_part_of_the_runs_identity_and_a_busy_folder_is_refused(
    tiny_bert, data, tmp_path, monkeypatch
):
    import training.devices
    from common import StoreError
    from common.locking import store_lock
    from finetune.plan import run_key

    plans = {}
    for native in (True, False):
        monkeypatch.setattr(training.devices, "native_bf16", lambda device, native=native: native)
        plans[native] = prepare_finetune(config(tiny_bert, data, None))
    assert plans[True].dtype.value == "bf16" and plans[False].dtype.value == "fp32"
    assert plans[True].out != plans[False].out  # 'auto' meant another dtype: another run, never a resume
    assert run_key(plans[True].config, 1) != run_key(plans[False].config, 1)
    plan = prepare_finetune(config(tiny_bert, data, tmp_path / "busy"))
    with store_lock(plan.out, "fine-tune run"), pytest.raises(StoreError, match="in use by pid"):
        run_finetune(plan)
    assert not (tmp_path / "busy").exists()


def test_a_run_prepared_before_another_finished_is_refused_under_the_lock(tiny_bert, data, tmp_path):
    from common import StoreError

    out = tmp_path / "raced"
    plan = prepare_finetune(config(tiny_bert, data, out))
    late = prepare_finetune(config(tiny_bert, data, out))  # prepared while the folder was still empty
    run_finetune(plan)
    finished = (out / "run.json").read_text()
    with pytest.raises(StoreError, match="holds a finished run"):
        run_finetune(late)
    assert (out / "run.json").read_text() == finished  # the finished result is untouched


def test_a_run_with_a_weight_average_scores_it_resumes_bit_identical_and_names_it(tiny_bert, data, tmp_path):
    from finetune.plan import run_key

    averaged = config(tiny_bert, data, tmp_path / "ema", ema_decay=0.8)
    reference = run_finetune(prepare_finetune(averaged))
    plain = run_finetune(prepare_finetune(config(tiny_bert, data, tmp_path / "plain", ema_decay=0.0)))
    # the average does not change training (same losses), only the weights that are validated and kept
    assert [e.train_loss for e in reference.history.epochs] == [e.train_loss for e in plain.history.epochs]
    assert not torch.equal(weights(reference.out)["classifier.weight"], weights(plain.out)["classifier.weight"])
    assert read_run(reference.out)["params"]["ema_decay"] == 0.8
    assert run_key(averaged, 1) != run_key(config(tiny_bert, data, None, ema_decay=0.0), 1)

    out = tmp_path / "crashed"
    plan = prepare_finetune(replace(averaged, out=out))
    with pytest.raises(Crash):
        run_finetune(plan, crash_at(5, plan.global_batch))
    resumed = prepare_finetune(replace(averaged, out=out))
    assert resumed.resume_step == 4
    run_finetune(resumed)
    same_run(out, reference.out)


def test_a_run_interrupted_before_weight_averaging_resumes_only_without_it(tiny_bert, data, tmp_path):
    out = tmp_path / "old"
    old = config(tiny_bert, data, out, ema_decay=0.0)
    plan = prepare_finetune(old)
    with pytest.raises(Crash):
        run_finetune(plan, crash_at(5, plan.global_batch))
    written = json.loads((tmp_path / ".old.partial" / "config.json").read_text())
    assert "ema_decay" not in written["options"]  # as an mlx from before --ema-decay wrote it
    with pytest.raises(ConfigError, match=r"--ema-decay 0.0 -> 0.99"):
        prepare_finetune(replace(old, ema_decay=0.99))
    assert prepare_finetune(old).resume_step == 4
    from finetune.plan import run_key, run_options

    # without the average a run keeps the identity, so the default folder, of a run from before the option
    assert "ema_decay" not in run_options(old, 1) and run_key(old, 1) == run_key(replace(old, ema_decay=-0.0), 1)
