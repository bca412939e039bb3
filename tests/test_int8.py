"""`--dtype int8` (text.quantize): vectors close to fp32, recorded in the store, never mixed with fp32 stores."""

import json

import h5py
import numpy as np
import pytest
import torch

from common import ConfigError
from common.devices import EncoderDType, resolve_encoder_dtype
from embeddings.store import EmbeddingStore
from tests.helpers import invoke, one_line_error, write_ag_news_folder


def embed(model, data, out, *extra):
    return invoke("embed", "--model", model, "--dataset", data, "--out", out, "--batch-size", "4", *extra)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # (N,) row by row
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_int8_quantises_widening_layers_and_keeps_narrowing_ones_fp32(tiny_bert):
    from transformers import BertModel

    from text.quantize import quantize_encoder

    model = BertModel.from_pretrained(tiny_bert).eval()
    engine = torch.backends.quantized.engine
    quantized = quantize_encoder(model)
    layer = quantized.encoder.layer[0]
    assert type(layer.intermediate.dense).__name__ == "Int8Linear"  # 32 -> 64
    assert type(layer.attention.self.query).__name__ == "Int8Linear"  # 32 -> 32
    assert type(layer.output.dense) is torch.nn.Linear  # 64 -> 32: the down-projection stays fp32
    assert type(model.encoder.layer[0].intermediate.dense) is torch.nn.Linear  # the input model is untouched
    assert torch.backends.quantized.engine == engine  # the global engine is restored


def test_int8_vectors_are_close_to_fp32_but_not_equal(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "ag")
    assert embed(tiny_bert, data, tmp_path / "fp32.h5", "--dtype", "fp32").exit_code == 0
    result = embed(tiny_bert, data, tmp_path / "int8.h5", "--dtype", "int8")
    assert result.exit_code == 0, result.output
    assert "vectors differ from fp32" in result.stderr  # said aloud in the summary
    with EmbeddingStore(tmp_path / "fp32.h5") as fp32, EmbeddingStore(tmp_path / "int8.h5") as int8:
        for split in ("train", "test"):
            a, b = fp32.vectors(split, "mean"), int8.vectors(split, "mean")
            assert not np.array_equal(a, b)
            assert cosines(a, b).min() > 0.99


def test_store_records_int8_and_how_it_was_quantised(tiny_bert, tmp_path):
    from text.quantize import INT8_SCHEME

    data = write_ag_news_folder(tmp_path / "ag")
    out = tmp_path / "int8.h5"
    assert embed(tiny_bert, data, out, "--dtype", "int8").exit_code == 0
    info = json.loads(invoke("store", "info", out, "--json").stdout)
    assert info["dtype"] == "int8"
    with h5py.File(out) as f:
        assert f.attrs["quantisation"] == INT8_SCHEME
        assert json.loads(f.attrs["identity"])["config"]["quantisation"] == INT8_SCHEME


def test_an_fp32_store_is_never_reused_for_int8(tiny_bert, tmp_path, isolated_home):
    data = write_ag_news_folder(tmp_path / "ag")
    out = tmp_path / "s.h5"
    assert embed(tiny_bert, data, out, "--dtype", "fp32").exit_code == 0
    one_line_error(embed(tiny_bert, data, out, "--dtype", "int8"), "dtype", "--force")
    forced = embed(tiny_bert, data, out, "--dtype", "int8", "--force")
    assert forced.exit_code == 0 and "cache hit" not in forced.stderr
    assert json.loads(invoke("store", "info", out, "--json").stdout)["dtype"] == "int8"
    # without --out, each dtype has its own default store
    args = ("embed", "--model", tiny_bert, "--dataset", data, "--batch-size", "4", "--dtype")
    paths = {invoke(*args, dtype).stdout.strip() for dtype in ("fp32", "int8")}
    assert len(paths) == 2
    again = invoke(*args, "int8")
    assert "cache hit" in again.stderr and again.stdout.strip() in paths


def test_attention_stats_in_int8_is_checked_against_fp32(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "news")
    out = tmp_path / "s"
    result = invoke("attention", "stats", "--model", tiny_bert, "--dataset", data, "--dtype", "int8", "--out", out)
    assert result.exit_code == 0, result.output
    assert "int8 checked against fp32" in result.stderr or "int8 differs from fp32" in result.stderr
    document = json.loads((out / "stats.json").read_text())
    assert document["config"]["dtype"] == "int8" and "onednn" in document["config"]["quantisation"]
    assert 0 < max(document["precision_check"]["max_abs_difference_vs_fp32"].values()) < 0.1


def test_int8_is_refused_off_cpu():
    assert resolve_encoder_dtype("int8", "cpu") is EncoderDType.INT8
    with pytest.raises(ConfigError, match="CPU only.*--device cpu"):
        resolve_encoder_dtype("int8", "cuda:0")


@pytest.mark.parametrize("command", ["embed", "attention"])
def test_int8_without_the_engine_is_one_line(tiny_bert, tmp_path, monkeypatch, command):
    monkeypatch.setattr(type(torch.backends.quantized), "supported_engines", property(lambda self: ["qnnpack"]))
    data = write_ag_news_folder(tmp_path / "ag")
    if command == "embed":
        result = embed(tiny_bert, data, tmp_path / "s.h5", "--dtype", "int8")
    else:
        result = invoke("attention", "stats", "--model", tiny_bert, "--dataset", data, "--dtype", "int8")
    one_line_error(result, "--dtype int8 needs", "'onednn'", "qnnpack", "--dtype fp32")
    assert not (tmp_path / "s.h5").exists()


def test_a_probe_of_quantised_vectors_is_marked_wherever_its_model_is_named(tiny_bert, tmp_path, isolated_home):
    data = write_ag_news_folder(tmp_path / "ag", n_train=80, n_test=16)
    runs = {}
    for dtype in ("fp32", "int8"):
        assert embed(tiny_bert, data, tmp_path / f"{dtype[0]}.h5", "--dtype", dtype).exit_code == 0
        runs[dtype] = tmp_path / f"probe-{dtype[0]}"
        probed = invoke("probe", "logreg", "--store", tmp_path / f"{dtype[0]}.h5", "--out", runs[dtype])
        assert probed.exit_code == 0, probed.output
    name = tiny_bert.name
    listed = invoke("runs", "list", "--root", tmp_path).stdout
    assert listed.count("int8") == 1 and "int8" not in str(tmp_path)  # the table wraps: the model cell of one run
    shown = {dtype: invoke("runs", "show", runs[dtype]).stderr for dtype in runs}  # the summary panel
    assert f"{name} int8" in shown["int8"] and f"{name} int8" not in shown["fp32"]
    report = json.loads(invoke("report", runs["fp32"], runs["int8"], "--no-plots", "--json").stdout)
    assert sorted(row["model"] for row in report["rows"]) == [str(tiny_bert), f"{tiny_bert} int8"]
    # and a probe never trains on one and tests on the other
    mixed = invoke("probe", "logreg", "--store", tmp_path / "i.h5", "--test-store", tmp_path / "f.h5")
    one_line_error(mixed, "differ in dtype ('int8' vs 'fp32')")
