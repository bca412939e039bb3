"""--pooling: the fine-tuned head reads BERT's [CLS] pooler or the mean of the token vectors (finetune/pooling.py)."""

import json
import shutil

import numpy as np
import pytest
import torch

from common.devices import DType
from common.errors import ConfigError
from finetune.config import resolve_pooling
from finetune.plan import prepare_finetune, run_key
from finetune.run import run_finetune
from tests.helpers import invoke, write_ag_news_folder
from tests.test_finetune import Crash, config, crash_at, read_run, same_run, weights
from text.models import ModelShape


@pytest.fixture
def data(tmp_path):
    return write_ag_news_folder(tmp_path / "ag", n_train=80, n_test=24)


@pytest.fixture
def st_bert(tiny_bert, tmp_path):
    """The tiny BERT laid out as a sentence-transformers model trained with mean pooling (as all-MiniLM-L6-v2)."""
    folder = tmp_path / "st-bert"
    shutil.copytree(tiny_bert, folder)
    (folder / "1_Pooling").mkdir()
    modes = {"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **modes}))
    return folder


def test_auto_pooling_is_the_encoders_own_and_part_of_the_runs_identity(tiny_bert, st_bert, data, tmp_path):
    assert prepare_finetune(config(tiny_bert, data, tmp_path / "a")).config.pooling == "cls"  # a plain BERT
    assert prepare_finetune(config(st_bert, data, tmp_path / "b")).config.pooling == "mean"
    assert prepare_finetune(config(st_bert, data, tmp_path / "c", pooling="cls")).config.pooling == "cls"
    assert prepare_finetune(config(tiny_bert, data, tmp_path / "d", pooling="mean")).config.pooling == "mean"
    assert run_key(config(st_bert, data, None, pooling="mean"), 1) != run_key(
        config(st_bert, data, None, pooling="cls"), 1
    )
    assert "the mean of the token vectors" in prepare_finetune(config(st_bert, data, tmp_path / "e")).summary()["model"]


def test_the_mean_head_reads_real_tokens_only_and_not_the_pooler(tiny_bert):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from finetune.pooling import MeanPooledClassifier

    model = MeanPooledClassifier(AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3)).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    short, long = "team wins cup", "the bank profit shares rise on the market for the software chip"
    with torch.no_grad():
        alone = model(**tokenizer([short], return_tensors="pt")).logits
        padded = model(**tokenizer([short, long], padding=True, return_tensors="pt")).logits[:1]
        hidden = model.classifier_model.bert(**tokenizer([short], return_tensors="pt")).last_hidden_state
        expected = model.classifier_model.classifier(hidden.mean(dim=1))
        model.classifier_model.bert.pooler.dense.weight.add_(1.0)  # the pooler plays no part
        moved = model(**tokenizer([short], return_tensors="pt")).logits
        with_labels = model(**tokenizer([short], return_tensors="pt"), labels=torch.tensor([2]))
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone, expected)
    torch.testing.assert_close(moved, alone)
    torch.testing.assert_close(with_labels.loss, torch.nn.functional.cross_entropy(alone, torch.tensor([2])))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"classifier_model.bert.pooler.dense.weight", "classifier_model.bert.pooler.dense.bias"}


def test_a_mean_pooled_run_saves_a_folder_that_loads_back_as_trained(st_bert, data, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from finetune.pooling import MeanPooledClassifier, load_classifier
    from text.datasets import load_text_dataset

    out = tmp_path / "run"
    result = run_finetune(prepare_finetune(config(st_bert, data, out, n_epochs=1, dtype=DType.FP32)))
    record = read_run(out)
    assert record["params"]["pooling"] == "mean" and record["pooling"] == "mean"
    assert json.loads((out / "model" / "config.json").read_text())["classifier_pooling"] == "mean"
    saved, start = weights(out), load_file(str(st_bert / "model.safetensors"))  # the pooler is kept, untrained
    assert torch.equal(saved["bert.pooler.dense.weight"], start["pooler.dense.weight"])
    assert not torch.equal(
        saved["bert.encoder.layer.0.attention.self.query.weight"], start["encoder.layer.0.attention.self.query.weight"]
    )
    n_pooler = start["pooler.dense.weight"].numel() + start["pooler.dense.bias"].numel()
    assert result.trainable_params == sum(v.numel() for v in saved.values()) - n_pooler
    model = load_classifier(out / "model").eval()
    assert isinstance(model, MeanPooledClassifier)
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    test = load_text_dataset(str(data), ("train", "test"), "text", "label", None, 0).splits["test"]
    predictions = np.load(out / "predictions.npz")
    np.testing.assert_array_equal(predictions["row_ids"], test.row_ids)
    texts = list(test.texts)
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")).logits
    np.testing.assert_array_equal(logits.argmax(dim=1).numpy(), predictions["finetune"])


def test_a_crashed_mean_pooled_run_resumes_bit_identical(st_bert, data, tmp_path):
    reference = tmp_path / "reference"
    run_finetune(prepare_finetune(config(st_bert, data, reference)))
    out = tmp_path / "crashed"
    plan = prepare_finetune(config(st_bert, data, out))
    with pytest.raises(Crash):
        run_finetune(plan, crash_at(5, plan.global_batch))
    resumed = prepare_finetune(config(st_bert, data, out))
    assert resumed.resume_step == 4
    run_finetune(resumed)
    same_run(out, reference)


def test_mean_pooling_needs_a_bert_head_and_auto_falls_back_to_cls():
    with pytest.raises(ConfigError, match="needs a BERT-style classifier head"):
        resolve_pooling("mean", "roberta-base", ModelShape(12, 512, "roberta"))
    assert resolve_pooling("auto", "roberta-base", ModelShape(12, 512, "roberta")) == "cls"


def test_a_fine_tuned_folder_keeps_its_pooling_and_a_cls_run_from_it_says_cls(st_bert, data, tmp_path):
    from finetune.pooling import MeanPooledClassifier, load_classifier

    first = tmp_path / "first"
    run_finetune(prepare_finetune(config(st_bert, data, first, n_epochs=1, dtype=DType.FP32)))
    again = prepare_finetune(config(first / "model", data, tmp_path / "again", n_epochs=1, dtype=DType.FP32))
    assert again.config.pooling == "mean"  # auto: the pooling the saved head was trained on
    cls_run = tmp_path / "cls"
    run_finetune(prepare_finetune(config(first / "model", data, cls_run, n_epochs=1, pooling="cls", dtype=DType.FP32)))
    assert json.loads((cls_run / "model" / "config.json").read_text())["classifier_pooling"] == "cls"
    model = load_classifier(cls_run / "model").eval()
    assert not isinstance(model, MeanPooledClassifier)
    assert prepare_finetune(config(cls_run / "model", data, tmp_path / "third")).config.pooling == "cls"


def test_a_sentence_transformer_that_concatenates_poolings_is_not_read_as_mean(st_bert):
    from text.models import sentence_pooling

    assert sentence_pooling(str(st_bert)) == "mean"
    pooling = st_bert / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps({**json.loads(pooling.read_text()), "pooling_mode_cls_token": True}))
    assert sentence_pooling(str(st_bert)) is None
    assert resolve_pooling("auto", str(st_bert), ModelShape(2, 128, "bert")) == "cls"


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]"])
def test_a_malformed_pooling_config_is_one_line_not_a_guess(st_bert, data, tmp_path, content):
    (st_bert / "1_Pooling" / "config.json").write_text(content)
    result = invoke("finetune", "--model", st_bert, "--dataset", data, "--out", tmp_path / "r", "--epochs", "1")
    assert result.exit_code != 0 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "1_Pooling/config.json is not a JSON object" in errors[0]
    assert not (tmp_path / "r").exists()
    assert prepare_finetune(config(st_bert, data, tmp_path / "s", pooling="cls")).config.pooling == "cls"


def test_a_head_that_pools_by_its_own_config_keeps_it_unless_asked(tmp_path):
    """ModernBERT's own config key classifier_pooling chooses its head's pooling: auto reads it, --pooling sets it."""
    from transformers import ModernBertConfig, ModernBertForSequenceClassification

    from finetune.pooling import load_classifier, with_pooling

    ids = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)
    small = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    config = ModernBertConfig(**small, **ids, max_position_embeddings=64, classifier_pooling="mean", num_labels=3)
    torch.manual_seed(0)
    ModernBertForSequenceClassification(config).save_pretrained(tmp_path / "modernbert")
    shape = ModelShape(2, 64, "modernbert", "mean")
    assert resolve_pooling("auto", "m", shape) == "mean" and resolve_pooling("mean", "m", shape) == "mean"
    assert resolve_pooling("cls", "m", shape) == "cls"
    loaded = load_classifier(tmp_path / "modernbert").eval()
    assert type(loaded) is ModernBertForSequenceClassification and loaded.config.classifier_pooling == "mean"
    inputs = dict(input_ids=torch.tensor([[1, 5, 6, 7, 2]]), attention_mask=torch.ones(1, 5, dtype=torch.long))
    with torch.no_grad():
        mean_logits = loaded(**inputs).logits
        assert with_pooling(loaded, "cls") is loaded and loaded.config.classifier_pooling == "cls"
        assert not torch.allclose(loaded(**inputs).logits, mean_logits)  # its own head now reads [CLS]
