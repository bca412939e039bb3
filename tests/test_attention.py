"""mlx attention: the math against references, the commands end to end, and bad input."""

import json
import math

import numpy as np
import torch

from attention.heads import STATISTICS, HeadStatistics, jensen_shannon, row_statistics
from attention.html import dequantise, quantise
from attention.rollout import attention_rollout
from tests.helpers import invoke, one_line_error, write_ag_news_folder

TEXTS = [
    "stocks fell, oil prices rose.",
    "the team wins the cup!",
    "president says talks with the minister will go on after the election, police say.",
    "nasa",
    "new software for web users: a phone, a chip and data",
]


# --- math ------------------------------------------------------------------------------------


def test_batched_statistics_match_the_per_text_loop(tiny_bert):
    """Padded, length-sorted batches give the numbers of one text at a time (the benchmark's reference)."""
    from attention.model import load_attention_model, token_roles, tokenise
    from attention.reference import per_text_statistics
    from attention.stats import head_statistics
    from common.devices import DType

    model = load_attention_model(str(tiny_bert), "cpu")
    roles = token_roles(model.tokenizer)
    batched = head_statistics(model, tokenise(model.tokenizer, TEXTS, 64), batch_size=2, dtype=DType.FP32).means()
    reference = per_text_statistics(model, TEXTS, 64, roles)
    for name in STATISTICS:
        np.testing.assert_allclose(np.asarray(batched[name]), reference[name], atol=1e-5, err_msg=name)
    assert 0 < np.asarray(batched["punctuation"]).min()  # the texts have punctuation, and it was found


def test_statistics_of_hand_made_heads():
    """Head 0 attends to itself, head 1 to the previous token (the first token to itself)."""
    T = 4
    weights = torch.zeros((1, 2, T, T))
    weights[0, 0] = torch.eye(T)
    weights[0, 1, 0, 0] = 1
    for i in range(1, T):
        weights[0, 1, i, i - 1] = 1
    flags = torch.zeros((1, T, 3))
    flags[0, 0, 0] = 1  # token 0 is [CLS]
    flags[0, T - 1, 1] = 1  # the last is [SEP]
    per_row = row_statistics(weights, flags)  # (S, 1, 2, T)
    stat = {name: per_row[i, 0] for i, name in enumerate(STATISTICS)}
    assert torch.equal(stat["self"][0], torch.ones(T)) and torch.equal(stat["distance"][0], torch.zeros(T))
    assert torch.allclose(stat["entropy"], torch.zeros(2, T))
    assert stat["previous"][1].tolist() == [0, 1, 1, 1] and stat["next"][1].tolist() == [0, 0, 0, 0]
    assert stat["cls"][1].tolist() == [1, 1, 0, 0] and stat["sep"][0].tolist() == [0, 0, 0, 1]
    assert stat["distance"][1].tolist() == [0, 1, 1, 1]
    # Uniform rows: entropy log T; padding rows are not counted.
    uniform = torch.full((1, 1, T, T), 1 / T)
    totals = HeadStatistics(1, 1)
    totals.add((uniform,), torch.ones((1, T)), torch.zeros((1, T, 3)))
    assert math.isclose(totals.means()["entropy"][0][0], math.log(T), rel_tol=1e-6)
    assert totals.n_rows == T


def test_jensen_shannon_against_scipy():
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(7), size=5), rng.dirichlet(np.ones(7), size=5)
    p[0, :3] = 0
    p[0] /= p[0].sum()
    ours = jensen_shannon(torch.tensor(p), torch.tensor(q)).numpy()
    np.testing.assert_allclose(ours, [jensenshannon(a, b, base=2) ** 2 for a, b in zip(p, q)], atol=1e-12)
    assert jensen_shannon(torch.tensor(p), torch.tensor(p)).abs().max() < 1e-12
    disjoint = jensen_shannon(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    assert math.isclose(float(disjoint), 1.0, rel_tol=1e-9)


def test_rollout():
    rng = np.random.default_rng(1)
    attentions = rng.dirichlet(np.ones(5), size=(3, 2, 5))  # (L, H, T, T)
    rollout = attention_rollout(attentions)
    np.testing.assert_allclose(rollout.sum(axis=1), 1.0)
    one_layer = attention_rollout(attentions[:1])
    np.testing.assert_allclose(one_layer, (attentions[0].mean(axis=0) + np.eye(5)) / 2)
    expected = np.eye(5)
    for layer in attentions:
        expected = ((layer.mean(axis=0) + np.eye(5)) / 2) @ expected
    np.testing.assert_allclose(rollout, expected)
    np.testing.assert_allclose(attention_rollout(np.broadcast_to(np.eye(5), (2, 3, 5, 5))), np.eye(5))


def test_quantisation_keeps_small_weights():
    weights = np.array([0.0, 0.002, 0.01, 0.3, 1.0])
    restored = dequantise(quantise(weights))
    assert restored[1] > 0  # uniform attention over 512 tokens survives
    assert (np.abs(restored - weights) <= np.sqrt(weights) / 255 + 4e-6).all()  # half a level of sqrt


# --- commands --------------------------------------------------------------------------------


def test_show_writes_pngs_and_a_self_contained_viewer(tiny_bert, tmp_path):
    out = tmp_path / "show"
    result = invoke(
        "attention",
        "show",
        "--model",
        tiny_bert,
        "--text",
        "the team wins the cup, says the coach.",
        "--head",
        "2",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert {p.name for p in out.iterdir()} == {
        "attention.html",
        "attention_grid.png",
        "attention_head.png",
        "rollout.png",
        "show.json",
        "run.json",
    }
    page = (out / "attention.html").read_text()
    assert "MB" in result.stderr and "attention.html" in result.stderr  # its size is said
    assert "<script src" not in page and "<link" not in page and "http://" not in page and "https://" not in page
    shown = json.loads((out / "show.json").read_text())
    assert shown["tokens"][0] == "[CLS]" and shown["tokens"][-1] == "[SEP]"
    assert math.isclose(sum(shown["rollout_cls"]), 1.0, rel_tol=1e-6)


def test_show_a_dataset_row_and_truncation(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "news")
    result = invoke(
        "attention",
        "show",
        "--model",
        tiny_bert,
        "--dataset",
        data,
        "--split",
        "test",
        "--row",
        "3",
        "--out",
        tmp_path / "a",
    )
    assert result.exit_code == 0, result.output
    assert "test row 3" in json.loads((tmp_path / "a" / "show.json").read_text())["where"]
    long_text = "the market " * 100  # more than the tiny model's 128 positions
    result = invoke("attention", "show", "--model", tiny_bert, "--text", long_text, "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert "truncated" in result.stderr
    shown = json.loads((tmp_path / "b" / "show.json").read_text())
    assert shown["truncated"] and len(shown["tokens"]) == 128 and shown["n_tokens_before_truncation"] == 202


def test_stats_end_to_end(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "news")
    out = tmp_path / "stats"
    result = invoke(
        "attention",
        "stats",
        "--model",
        tiny_bert,
        "--dataset",
        data,
        "--limit",
        "8",
        "--batch-size",
        "3",
        "--json",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["data"]["n_texts"] == 8 and document["data"]["split"] == "test"
    assert set(document["means"]) == set(STATISTICS)
    assert np.asarray(document["means"]["cls"]).shape == (2, 2)
    assert document == json.loads((out / "stats.json").read_text())
    listed = invoke("runs", "list", "--kind", "attention", "--root", tmp_path, "--json")
    assert listed.exit_code == 0, listed.output
    assert str(out) in listed.stdout and "attention stats" in listed.stdout
    assert {f"stats_{name}.png" for name in STATISTICS} <= {p.name for p in out.iterdir()}
    shares = sum(np.asarray(document["means"][name]) for name in ("cls", "sep"))
    assert (shares <= 1 + 1e-6).all()


def test_stats_bf16_is_checked_against_fp32(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "news")
    result = invoke(
        "attention", "stats", "--model", tiny_bert, "--dataset", data, "--dtype", "bf16", "--out", tmp_path / "s"
    )
    assert result.exit_code == 0, result.output
    assert "checked against fp32" in result.stderr or "differs from fp32" in result.stderr
    check = json.loads((tmp_path / "s" / "stats.json").read_text())["precision_check"]
    assert set(check["max_abs_difference_vs_fp32"]) == set(STATISTICS)
    assert 0 < max(check["max_abs_difference_vs_fp32"].values()) < 0.1


def test_diff_same_model_is_zero_and_a_changed_copy_is_not(tiny_bert, tmp_path):
    from transformers import BertModel

    changed = tmp_path / "changed"
    model = BertModel.from_pretrained(tiny_bert)
    with torch.no_grad():
        model.encoder.layer[1].attention.self.query.weight.mul_(3.0)  # only layer 2's attention moves
    model.save_pretrained(changed)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_bert / name).exists():
            (changed / name).write_bytes((tiny_bert / name).read_bytes())
    data = write_ag_news_folder(tmp_path / "news")
    same = invoke(
        "attention",
        "diff",
        "--model",
        tiny_bert,
        "--model",
        tiny_bert,
        "--dataset",
        data,
        "--json",
        "--out",
        tmp_path / "d1",
    )
    assert same.exit_code == 0, same.output
    assert np.abs(json.loads(same.stdout)["divergence"]).max() < 1e-6
    moved = invoke(
        "attention",
        "diff",
        "--model",
        tiny_bert,
        "--model",
        changed,
        "--dataset",
        data,
        "--json",
        "--out",
        tmp_path / "d2",
    )
    assert moved.exit_code == 0, moved.output
    layers = json.loads(moved.stdout)["layer_means"]
    assert layers[0] < 1e-6 < layers[1]
    assert (tmp_path / "d2" / "diff_js.png").exists() and (tmp_path / "d2" / "diff.json").exists()


# --- bad input -------------------------------------------------------------------------------


def fails_cleanly(args, *expected):
    return one_line_error(invoke("attention", *args), *expected)


def test_bad_input(tiny_bert, tmp_path, isolated_home):
    data = write_ag_news_folder(tmp_path / "news", n_test=12)
    model = ["--model", tiny_bert]
    fails_cleanly(["show", *model, "--text", "   "], "--text is empty")
    fails_cleanly(["show", *model], "either --text")
    fails_cleanly(["show", *model, "--text", "the cup", "--layer", "3"], "--layer 3 is out of range", "1..2")
    fails_cleanly(["show", *model, "--text", "the cup", "--head", "0"], "--head 0 is out of range", "1..2")
    fails_cleanly(["show", *model, "--text", "the cup", "--head", "first"], "--head takes a number")
    fails_cleanly(
        ["show", *model, "--dataset", data, "--split", "test", "--row", "12"], "--row 12 is past the end", "0..11"
    )
    fails_cleanly(
        ["show", *model, "--dataset", data, "--split", "test", "--row", "-1"], "--row must lie in 0..", "0..1000000000"
    )
    fails_cleanly(["show", *model, "--dataset", data, "--split", "dev", "--row", "0"], "split 'dev'")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    fails_cleanly(
        ["show", *model, "--text", "the cup", "--out", blocker / "run"], str(blocker), "is a file, not a folder"
    )
    fails_cleanly(
        ["stats", *model, "--dataset", data, "--out", blocker / "run"], str(blocker), "is a file, not a folder"
    )
    existing = tmp_path / "existing"
    existing.mkdir()
    fails_cleanly(["show", *model, "--text", "the cup", "--out", existing], "already exists")
    fails_cleanly(["show", *model, "--text", "the cup", "--max-length", "1000"], "--max-length 1000", "128")
    fails_cleanly(["diff", *model, "--dataset", data], "exactly two models")
    assert not (isolated_home / "runs").exists() or not any((isolated_home / "runs").rglob("*.html"))


def test_diff_refuses_models_with_different_tokenizers(tiny_bert, tmp_path):
    from transformers import BertTokenizerFast

    other = tmp_path / "other"
    other.mkdir()
    for path in tiny_bert.iterdir():
        if path.suffix in (".json", ".safetensors") and "token" not in path.name:
            (other / path.name).write_bytes(path.read_bytes())
    vocab = (tiny_bert / "vocab.txt").read_text().splitlines()
    (other / "vocab.txt").write_text("\n".join(vocab[:5] + vocab[5:][::-1]) + "\n")  # same size, other ids
    BertTokenizerFast(vocab=str(other / "vocab.txt"), do_lower_case=True).save_pretrained(other)
    data = write_ag_news_folder(tmp_path / "news")
    fails_cleanly(
        ["diff", "--model", tiny_bert, "--model", other, "--dataset", data, "--out", tmp_path / "d"],
        "do not share a tokenizer",
    )
    assert not (tmp_path / "d").exists()


def test_a_model_without_attention_weights_is_refused(tiny_bert, monkeypatch):
    """transformers' default sdpa attention returns no weights: what mlx would see without eager."""
    import attention.model
    from text.models import load_model

    monkeypatch.setattr(
        attention.model,
        "load_model",
        lambda model_id, device, dtype, attn_implementation=None: load_model(model_id, device, dtype),
    )
    fails_cleanly(["show", "--model", tiny_bert, "--text", "the cup"], "returned no attention weights")


def test_no_half_written_viewer_under_the_final_name(tiny_bert, tmp_path, monkeypatch):
    """A disk that fills up half-way through the HTML: one line, no folder under the final name, no staging left."""
    import attention.show

    def broken_writer(plan, attentions, tokens, rollout, path):
        path.write_text("<!DOCTYPE html><html><body>half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(attention.show, "_write_html", broken_writer)
    out = tmp_path / "runs" / "show"
    fails_cleanly(["show", "--model", tiny_bert, "--text", "the cup", "--out", out], "no space left")
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_cli_module_imports_no_heavy_library():
    import subprocess
    import sys

    code = "import sys, cli.attention; print(sorted(m for m in ('torch', 'transformers', 'matplotlib', 'attention.model') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
