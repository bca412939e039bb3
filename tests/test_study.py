"""`mlx study` end to end on a tiny BERT and tiny data, then again with no work redone; bad input in one line."""

import json

import pytest
from helpers import invoke, write_ag_news_folder

from common.record import read_record


@pytest.fixture
def news(tmp_path):
    return write_ag_news_folder(tmp_path / "news", n_train=64, n_test=16)


def study_args(tiny_bert, news, out, *extra):
    return (
        "study",
        "text",
        "--model",
        tiny_bert,
        "--dataset",
        news,
        "--train-sizes",
        "40,all",
        "--pooling",
        "mean,cls",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--max-length",
        "32",
        "--seed",
        "1",
        "--out",
        out,
        *extra,
    )


def finetune_available() -> bool:
    try:
        from finetune.config import FinetuneConfig
    except ImportError:
        return False
    return "train_size" in FinetuneConfig.__dataclass_fields__


def test_text_study_end_to_end_then_nothing_redone(tiny_bert, news, tmp_path, monkeypatch):
    out = tmp_path / "study"
    extra = ("--methods", "full,lora,bitfit") if finetune_available() else ("--no-finetune",)
    first = invoke(*study_args(tiny_bert, news, out, *extra))
    assert first.exit_code == 0, first.output
    assert "0 found done" in first.stderr and (out / "report" / "report.md").exists()
    layers = read_record(out / "n-40" / "probe-layers")
    assert {r.n_train for r in layers.results} == {40} and {r.n_test for r in layers.results} == {16}
    assert {r.params["layers"][0] for r in layers.results} == {0, 1, 2}
    concat = read_record(out / "n-40" / "probe-concat")
    assert {len(r.params["layers"]) for r in concat.results} == {
        3
    }  # the best three layers of two hidden layers + embeddings
    assert read_record(out / "n-all" / "probe-layers").results[0].n_train == 64
    report = (out / "report" / "report.md").read_text()
    assert "data-efficiency.png" in report and "accuracy-by-layer.png" in report
    if "--methods" in extra:
        finetuned = read_record(out / "n-40" / "finetune")
        assert finetuned.kind == "finetune" and finetuned.results[0].n_train <= 40
        assert read_record(out / "n-40" / "probe-finetuned").data.test == layers.data.test
        assert "| fine-tune" in report
        # both sides of the headline read the same tokens and chose their settings on the same rows (seed 1)
        for size in ("40", "all"):
            tuned = read_record(out / f"n-{size}" / "finetune")
            assert tuned.data.max_length == 32 and tuned.data.validation_fingerprint
            assert tuned.results[0].peak_memory_bytes > 0 and tuned.results[0].predict_per_second > 0
            for run in ("probe-layers", "probe-concat", "probe-finetuned"):
                probe = read_record(out / f"n-{size}" / run)
                assert probe.data.max_length == 32
                assert probe.data.validation_fingerprint == tuned.data.validation_fingerprint, (size, run)
                assert all(r.predict_per_second and r.peak_memory_bytes for r in probe.results)
        each_method_has_its_rows_against_full_fine_tuning(out, report)

    # Again: every step is found done; no model is loaded, no probe is fitted.
    import embeddings.extract
    import probes.evaluate

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished step was redone")

    monkeypatch.setattr(embeddings.extract, "extract_embeddings", forbidden)
    monkeypatch.setattr(probes.evaluate, "_evaluate", forbidden)
    again = invoke(*study_args(tiny_bert, news, out, *extra))
    assert again.exit_code == 0, again.output
    assert "(0 step(s) run" in again.stderr and "cached: n=40: probes on every layer" in again.stderr


def each_method_has_its_rows_against_full_fine_tuning(out, report_text):
    """--methods full,lora,bitfit: a run, a report row and a data-efficiency line per method; McNemar against full."""
    from report.join import ReportConfig, build_report
    from report.plots import parameter_points, size_series

    full, lora, bitfit = (read_record(out / "n-all" / f) for f in ("finetune", "finetune-lora", "finetune-bitfit"))
    assert [r.results[0].method for r in (full, lora, bitfit)] == ["finetune", "lora", "bitfit"]
    assert full.results[0].trainable_params > lora.results[0].trainable_params > bitfit.results[0].trainable_params
    assert (out / "n-all" / "finetune-lora" / "adapter" / "adapter_config.json").exists()
    assert "| LoRA" in report_text and "| BitFit" in report_text and "accuracy-by-parameters.png" in report_text
    runs = sorted(str(p.parent) for p in out.glob("n-*/*/run.json"))
    rows = build_report(ReportConfig(runs=tuple(runs), plots=False)).rows
    for n_train in {r.n_train for r in rows}:
        at_size = [r for r in rows if r.n_train == n_train]
        (reference,) = [r for r in at_size if r.is_reference]
        assert reference.method == "finetune"  # full fine-tuning is the McNemar reference of its size
        assert all(r.p_value is not None for r in at_size if r.method in ("lora", "bitfit"))
    series = size_series(rows)
    assert {"fine-tune", "LoRA", "BitFit"} <= set(series) and all(len(series[k]) == 2 for k in ("LoRA", "BitFit"))
    points = parameter_points(rows)  # the largest size: a frozen probe, BitFit, LoRA, full, by trainable parameters
    assert [p.method for p in points][-3:] == ["bitfit", "lora", "finetune"] and points[0].kind == "probe"


@pytest.mark.parametrize(
    "args, message",
    [
        (("--train-sizes", "0"), "--train-sizes must be positive"),
        (("--train-sizes", "10,abc"), "cannot read --train-sizes '10,abc'"),
        (("--train-sizes", "65"), "--train-sizes 65 is larger than the 64 rows of the training split"),
        (("--train-sizes", "20,all"), "--train-sizes 20 is too small for 4 classes"),
        (("--methods", "full,adapters"), "--methods: unknown value 'adapters'; choose from full, lora, bitfit"),
    ],
)
def test_bad_train_sizes_are_one_line(tiny_bert, news, tmp_path, args, message):
    result = invoke("study", "text", "--model", tiny_bert, "--dataset", news, "--out", tmp_path / "s", *args)
    assert result.exit_code != 0 and message in result.stderr and result.stderr.count("\n") == 1, result.output
    assert not (tmp_path / "s").exists()


def test_study_folder_with_other_settings_or_foreign_content_is_refused(tiny_bert, news, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = invoke("study", "text", "--model", tiny_bert, "--dataset", news, "--out", out, "--no-finetune")
    assert result.exit_code != 0 and "is a folder that is not an mlx artifact, not a study text" in result.stderr
    assert (out / "mine.txt").read_text() == "keep me"
    other = tmp_path / "other"
    other.mkdir()
    (other / "study.json").write_text(json.dumps({"base": {"model": "x"}}))
    result = invoke("study", "text", "--model", tiny_bert, "--dataset", news, "--out", other, "--no-finetune")
    assert result.exit_code != 0 and "model (older mlx) x -> None" in result.stderr


def test_interrupted_probe_step_leaves_no_run_and_resumes(tiny_bert, news, tmp_path, monkeypatch):
    """Ctrl-C inside a step: its staging folder is removed, finished steps stay, and the re-run finishes the rest."""
    import probes.evaluate

    out = tmp_path / "s"
    original = probes.evaluate._evaluate
    calls = []

    def interrupted_second_time(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(probes.evaluate, "_evaluate", interrupted_second_time)
    first = invoke(
        "study", "text", "--model", tiny_bert, "--dataset", news, "--out", out, "--no-finetune", "--pooling", "mean"
    )
    assert first.exit_code == 130 and "run the same command again to resume" in first.stderr
    assert (out / "n-all" / "probe-layers" / "run.json").exists() and not (out / "n-all" / "probe-concat").exists()
    assert not list((out / "n-all").glob(".*partial*"))
    monkeypatch.setattr(probes.evaluate, "_evaluate", original)
    again = invoke(
        "study", "text", "--model", tiny_bert, "--dataset", news, "--out", out, "--no-finetune", "--pooling", "mean"
    )
    assert again.exit_code == 0, again.output
    assert (
        "cached: n=all: probes on every layer" in again.stderr
        and (out / "n-all" / "probe-concat" / "run.json").exists()
    )


def test_vision_study_compare_and_sweep_then_cached(tmp_path):
    from vision_helpers import write_npz_dataset

    data = write_npz_dataset(tmp_path / "kmnist", n_train=120, n_test=60)
    args = (
        "study",
        "vision",
        "--dataset",
        "kmnist",
        "--data-dir",
        data,
        "--models",
        "mlp-numpy,mlp-torch",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        tmp_path / "v",
    )
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert (
        "Models compared on kmnist" in first.stdout and (tmp_path / "v" / "report" / "accuracy-by-method.png").exists()
    )
    assert "| mlp-numpy" in (tmp_path / "v" / "report" / "report.md").read_text()
    again = invoke(*args)
    assert again.exit_code == 0 and "0 step(s) run, 2 found done" in again.stderr


def test_a_study_on_changed_data_is_refused_not_reused(tiny_bert, news, tmp_path):
    """Issue 8 item 1's rule for the study caches: finished steps describe their data only."""
    from study.text import TextStudyConfig, prepare_text_study

    config = TextStudyConfig(model=str(tiny_bert), dataset=str(news), out=tmp_path / "s")
    prepare_text_study(config)  # claims the folder for this data
    with open(news / "train.csv", "a") as stream:
        stream.write('"1","a new row","changes the data"\n')
    with pytest.raises(Exception, match="train data [0-9a-f]+ -> [0-9a-f]+"):
        prepare_text_study(config)


def test_a_vision_study_on_changed_data_is_refused(tmp_path):
    import numpy as np
    from vision_helpers import tiny_images, write_npz_dataset

    data = write_npz_dataset(tmp_path / "kmnist", n_train=120, n_test=60)
    args = (
        "study",
        "vision",
        "--dataset",
        "kmnist",
        "--data-dir",
        data,
        "--models",
        "mlp-numpy",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        tmp_path / "v",
    )
    assert invoke(*args).exit_code == 0
    images, labels = tiny_images(120, seed=9)
    np.savez_compressed(data / "kmnist-train-imgs.npz", images)
    np.savez_compressed(data / "kmnist-train-labels.npz", labels)
    again = invoke(*args)
    assert again.exit_code != 0 and "train data" in again.stderr


def test_study_dtype_reaches_the_embeddings_and_the_fine_tune_and_auto_keeps_old_studies(monkeypatch, tmp_path):
    import embeddings.extract
    import finetune.plan
    from study import steps
    from study.text import TextStudyConfig

    seen = {}

    def plan(config):
        seen["embed"] = config.dtype
        raise RuntimeError("stop")

    def prepare(config):
        seen["finetune"] = config.dtype
        raise RuntimeError("stop")

    monkeypatch.setattr(embeddings.extract, "plan_extraction", plan)
    monkeypatch.setattr(finetune.plan, "prepare_finetune", prepare)
    config = TextStudyConfig(model="minilm", dataset="demo", dtype="bf16")
    for step in (
        lambda: steps.embed(config, model="minilm", path=tmp_path / "s.h5", progress=None),
        lambda: steps.finetune(config, n_train=None, run_dir=tmp_path / "f", progress=None, notify=None, what=""),
    ):
        with pytest.raises(RuntimeError):
            step()
    assert seen == {"embed": "bf16", "finetune": "bf16"}
    assert config.settings()["dtype"] == "bf16" and "dtype" not in TextStudyConfig().settings()
