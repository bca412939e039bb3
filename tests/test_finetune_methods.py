"""`mlx finetune --method lora|bitfit` on a tiny random BERT: what trains, what is saved, exact resume, DDP, bad options."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from common.errors import ConfigError
from finetune.plan import prepare_finetune, run_key, run_options
from finetune.run import run_finetune
from tests.helpers import invoke, one_line_error, write_ag_news_folder
from tests.test_finetune import Crash, config, crash_at, read_run, same_run, weights
from training.checkpoints import CheckpointDir

METHODS = ("lora", "bitfit")


@pytest.fixture
def data(tmp_path):
    return write_ag_news_folder(tmp_path / "ag", n_train=80, n_test=24)


def pretrained(tiny_bert) -> dict:
    """The tiny BERT's own weights, named as in a sequence classifier's folder."""
    return {f"bert.{k}": v for k, v in load_file(str(tiny_bert / "model.safetensors")).items()}


def is_bitfit_trained(name: str) -> bool:
    return name.endswith(".bias") or "LayerNorm" in name or name.startswith("classifier.")


@pytest.mark.parametrize("method", METHODS)
def test_each_method_learns_trains_only_its_parameters_and_writes_a_model_folder(tiny_bert, data, tmp_path, method):
    out = tmp_path / "run"
    result = invoke(
        "finetune", "--model", tiny_bert, "--dataset", data, "--out", out, "--method", method, "--pooling", "mean",
        "--epochs", "8", "--lr", "1e-2", "--batch-size", "8", "--ema-decay", "0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = read_run(out)
    assert record["accuracy"] > 0.5, record["accuracy"]  # 4 balanced classes: chance is 0.25
    assert record["method"] == record["name"] == method and record["params"]["method"] == method
    assert record["head_probe"]["train_accuracy"] >= 0  # --head-init probe (the default) applies to every method
    before, after = pretrained(tiny_bert), weights(out)
    assert set(before) <= set(after) and {"classifier.weight", "classifier.bias"} <= set(after)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    if method == "bitfit":  # every bias and LayerNorm may move, no weight matrix does
        assert changed and all(is_bitfit_trained(n) for n in changed), sorted(changed)
        assert not any(n.startswith("bert.pooler") for n in changed)  # unused under mean pooling: frozen
        n_params = sum(v.numel() for n, v in after.items() if is_bitfit_trained(n) and not n.startswith("bert.pooler"))
    else:  # LoRA merged into every linear layer of the encoder; embeddings, norms and biases untouched
        linear = {n for n in before if ".encoder." in n and n.endswith(".weight") and "LayerNorm" not in n}
        assert changed == linear, sorted(changed ^ linear)
        # rank 8 adapters on q, k, v, o (32 -> 32) and the feed-forward (32 -> 64 -> 32), 2 layers; the head 32 x 4 + 4
        n_params = 2 * (4 * 8 * (32 + 32) + 2 * 8 * (32 + 64)) + 32 * 4 + 4
        adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
        assert adapter["r"] == 8 and adapter["lora_alpha"] == 16 and len(adapter["target_modules"]) == 12
    assert record["trainable_params"] == n_params
    store = tmp_path / "tuned.h5"  # the tuned encoder is a Hugging Face folder that `mlx embed` reads like any other
    embedded = invoke("embed", "--model", out / "model", "--dataset", data, "--out", store, "--split", "test")
    assert embedded.exit_code == 0, embedded.output


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_the_lora_adapter_loads_with_peft_and_scores_as_the_merged_model_and_the_run(
    tiny_bert, data, tmp_path, pooling
):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from finetune.pooling import load_classifier, with_pooling

    out = tmp_path / "run"
    run_finetune(prepare_finetune(config(tiny_bert, data, out, method="lora", pooling=pooling, dtype="fp32", lr=1e-2)))
    texts = [line.split('","', 1)[1] for line in (data / "test.csv").read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    inputs = tokenizer(texts, padding=True, return_tensors="pt")
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=4)
    wrapped = with_pooling(base, pooling)  # the run's head reads what it was trained on (finetune.pooling)
    PeftModel.from_pretrained(base, out / "adapter")  # replaces base's layers in place
    merged = load_classifier(out / "model")
    with torch.no_grad():
        from_adapter = wrapped.eval()(**inputs).logits
        from_merged = merged.eval()(**inputs).logits
    torch.testing.assert_close(from_adapter, from_merged, atol=1e-5, rtol=1e-4)
    predictions = np.load(out / "predictions.npz")
    np.testing.assert_array_equal(from_merged.argmax(dim=1).numpy(), predictions["lora"])


@pytest.mark.parametrize("method", METHODS)
def test_resume_after_a_crash_is_bit_identical_and_checkpoints_hold_only_what_trains(tiny_bert, data, tmp_path, method):
    # accumulation, the weight average (default) and bf16 autocast (default here) all on
    options = dict(method=method, grad_accum=2, batch_size=4, pooling="mean")
    reference = run_finetune(prepare_finetune(config(tiny_bert, data, tmp_path / "reference", **options)))
    out = tmp_path / "crashed"
    plan = prepare_finetune(config(tiny_bert, data, out, **options))
    with pytest.raises(Crash):
        run_finetune(plan, crash_at(5, plan.global_batch))
    checkpoint = CheckpointDir(tmp_path / ".crashed.partial" / "checkpoints").load_latest()
    assert sum(v.numel() for v in checkpoint["model"].values()) == reference.trainable_params
    assert sum(v.numel() for v in checkpoint["ema"]["shadow"].values()) == reference.trainable_params
    resumed = prepare_finetune(config(tiny_bert, data, out, **options))
    assert resumed.resume_step == 4
    assert run_finetune(resumed).history.resumed_from_step == 4
    same_run(out, reference.out)
    if method == "lora":
        first, second = (load_file(str(r / "adapter" / "adapter_model.safetensors")) for r in (out, reference.out))
        assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_the_method_and_its_options_are_the_runs_identity(tiny_bert, data, tmp_path):
    base = config(tiny_bert, data, None)
    keys = {
        run_key(prepare_finetune(replace(base, **options)).config, 1)
        for options in (
            {},
            {"method": "bitfit"},
            {"method": "lora"},
            {"method": "lora", "lora_rank": 4},
            {"method": "lora", "lora_alpha": 32.0},
            {"method": "lora", "lora_dropout": 0.1},
            {"method": "lora", "lora_targets": "attention"},
        )
    }
    assert len(keys) == 7
    # the defaults are resolved into the identity: naming them is the same run
    spelled = replace(base, method="lora", lora_rank=8, lora_alpha=16.0, lora_dropout=0.0, lora_targets="all")
    assert prepare_finetune(replace(base, method="lora")).out == prepare_finetune(spelled).out
    # full fine-tuning keeps the identity (so the default folder) of runs from before --method
    assert not {"method", "lora_rank", "lora_targets"} & set(run_options(base, 1))
    out = tmp_path / "run"
    plan = prepare_finetune(config(tiny_bert, data, out, method="lora"))
    with pytest.raises(Crash):
        run_finetune(plan, crash_at(3, plan.global_batch))
    with pytest.raises(ConfigError, match=r"--method lora -> bitfit") as refused:
        prepare_finetune(config(tiny_bert, data, out, method="bitfit"))
    # every changed key is named as its option, also one the new method leaves unset
    assert "--lora-rank 8 -> None" in str(refused.value) and "lora_rank" not in str(refused.value)
    with pytest.raises(ConfigError, match=r"--lora-rank 8 -> 4"):
        prepare_finetune(config(tiny_bert, data, out, method="lora", lora_rank=4))


def test_attention_targets_adapt_query_key_value_and_output_only(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    from finetune.methods import lora_target_modules

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=4)
    attention = lora_target_modules(model, "attention")
    assert sorted(n.rsplit(".", 2)[-2] + "." + n.rsplit(".", 1)[-1] for n in attention if ".layer.0." in n) == [
        "output.dense", "self.key", "self.query", "self.value",
    ]  # fmt: skip
    everything = lora_target_modules(model, "all")
    assert set(attention) < set(everything) and len(everything) == 12
    assert not any("pooler" in n or "classifier" in n for n in everything)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--method", "lora", "--lora-rank", "0"], "--lora-rank"),
        (["--method", "lora", "--lora-rank", "33"], "--lora-rank 33 is more than"),  # the tiny BERT's hidden size: 32
        (["--method", "lora", "--lora-alpha", "-8"], "--lora-alpha must be a positive finite number"),
        (["--method", "lora", "--lora-alpha", "nan"], "--lora-alpha must be a positive finite number"),
        (["--method", "lora", "--lora-dropout", "1"], "--lora-dropout must lie in [0, 1)"),
        (
            ["--method", "lora", "--lora-targets", "mlp"],
            "--lora-targets: unknown value 'mlp'; choose from all, attention",
        ),
        (["--lora-rank", "4"], "--lora-rank only applies to --method lora"),
        (
            ["--method", "full", "--lora-alpha", "8", "--lora-targets", "attention"],
            "--lora-alpha, --lora-targets only apply to --method lora",
        ),
        (["--method", "bitfit", "--lora-dropout", "0.1"], "(this run trains with --method bitfit)"),
        (["--method", "adapters"], "--method: unknown value 'adapters'; choose from full, lora, bitfit"),
    ],
)
def test_bad_method_options_are_one_line_each(tiny_bert, tmp_path, options, message):
    data = write_ag_news_folder(tmp_path / "ag", n_train=80, n_test=8)
    one_line_error(
        invoke("finetune", "--model", tiny_bert, "--dataset", data, "--out", tmp_path / "run", *options), message
    )
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run.partial"))


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_two_processes_train_each_method_in_sync(tiny_bert, data, tmp_path, method):
    from tests.test_finetune_ddp import launch

    out = tmp_path / "ddp"
    options = dict(method=method, pooling="mean", lr=3e-3, batch_size=4, checkpoint_every=2, n_epochs=2, dtype="fp32")
    args = ["finetune", "--model", tiny_bert, "--dataset", data, "--out", out, "--nproc", "2", "--method", method]
    args += ["--pooling", "mean", "--lr", "3e-3", "--batch-size", "4", "--checkpoint-every", "2", "--epochs", "2"]
    process = launch([str(a) for a in (*args, "--warmup", "0.1", "--dtype", "fp32")])
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr.decode()
    record = read_run(out)
    assert record["world_size"] == 2 and record["ranks_in_sync"] is True and record["method"] == method
    single = run_finetune(prepare_finetune(config(tiny_bert, data, tmp_path / "one", grad_accum=2, **options)))
    assert record["trainable_params"] == single.trainable_params
    assert single.history.n_steps == record["n_steps"]
    for one, two in zip(single.history.epochs, record["epochs"]):  # the tolerance of tests/test_finetune_ddp.py
        assert abs(one.train_loss - two["train_loss"]) < 0.05
