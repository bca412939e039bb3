"""Issue 20 item 12: tokenising is bounded by --max-length, not by the length of a text, and gives the
same token ids (so the same vectors) as tokenising whole texts."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import text.tokens
from embeddings.store import EmbeddingStore
from tests.conftest import TINY_VOCAB
from tests.helpers import invoke
from text.tokens import cut_text, cut_texts

WORDS = st.sampled_from(
    [w for w in TINY_VOCAB if not w.startswith(("[", "##"))] + ["naïve", "日本語", "x" * 120, "ab-cd"]
)
GAPS = st.sampled_from([" ", "  ", "\t", "\n", " \n ", "\u00a0", "\u2028", ", ", ". ", "'"])
TEXTS = st.lists(st.tuples(WORDS, GAPS), min_size=1, max_size=120).map(lambda parts: "".join(w + g for w, g in parts))


@pytest.fixture(scope="module")
def tokenizers(tiny_bert):
    from transformers import AutoTokenizer

    from text.models import bundled_minilm_path

    return [AutoTokenizer.from_pretrained(tiny_bert), AutoTokenizer.from_pretrained(bundled_minilm_path())]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(TEXTS, min_size=1, max_size=4), max_length=st.integers(2, 40), chars=st.integers(1, 8))
def test_cut_texts_give_the_ids_of_whole_texts(tokenizers, monkeypatch, texts, max_length, chars):
    """Whatever the text (words longer than WordPiece's 100 characters, unicode, odd whitespace), the
    first max_length ids of the cut text are those of the whole text; short texts are not touched."""
    monkeypatch.setattr(text.tokens, "CHARS_PER_TOKEN", chars)  # small windows: most texts get cut
    for tokenizer in tokenizers:
        bounded = cut_texts(texts, tokenizer, max_length)
        whole = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        assert tokenizer(bounded, truncation=True, max_length=max_length)["input_ids"] == whole
        for original, cut in zip(texts, bounded):
            assert original.startswith(cut)
            if len(original) <= chars * max_length:
                assert cut is original


class SpyTokenizer:
    """A tokenizer that remembers the longest text it was asked to encode."""

    longest = 0

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, texts, *args, **kwargs):
        batch = [texts] if isinstance(texts, str) else list(texts)
        SpyTokenizer.longest = max([SpyTokenizer.longest, *map(len, batch)])
        return self.inner(texts, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _long_texts(tmp_path, n=6, n_words=20_000):
    words = ["market", "team", "bank", "software", "police", "season"]
    rows = [" ".join(words[(i + j) % len(words)] for j in range(n_words)) for i in range(n)]
    lines = ["text,label"] + [f"{row},{'ab'[i % 2]}" for i, row in enumerate(rows)]
    (tmp_path / "long.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "long.csv", max(map(len, rows))


@pytest.mark.parametrize("command", ["embed", "finetune"])
def test_long_texts_never_reach_the_tokenizer_whole(tiny_bert, tmp_path, monkeypatch, command):
    """Item 12: texts were tokenised whole before truncation (160 texts of 100,000 characters: 2.2 GB)."""
    from transformers import AutoTokenizer

    real = AutoTokenizer.from_pretrained
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", lambda *a, **k: SpyTokenizer(real(*a, **k)))
    SpyTokenizer.longest = 0
    data, longest_text = _long_texts(tmp_path, n=6 if command == "embed" else 30, n_words=3_000)
    args = ["--model", tiny_bert, "--dataset", data, "--max-length", "16", "--out", tmp_path / "out"]
    if command == "finetune":
        data.rename(tmp_path / "train.csv")
        train_lines = (tmp_path / "train.csv").read_text().splitlines()
        # test rows must differ from train rows (the held-out check refuses a test split of train rows)
        (tmp_path / "test.csv").write_text(
            "\n".join([train_lines[0]] + [f"new {line}" for line in train_lines[1:]]) + "\n"
        )
        args[3] = tmp_path
        args += ["--epochs", "1", "--batch-size", "2", "--head-init", "random", "--split", "train", "--split", "test"]
    result = invoke(command, *args)
    assert SpyTokenizer.longest > 0, result.output
    assert SpyTokenizer.longest <= 4 * text.tokens.CHARS_PER_TOKEN * 16 < longest_text


def test_vectors_of_long_texts_are_those_of_whole_texts(tiny_bert, tmp_path, monkeypatch):
    data, _ = _long_texts(tmp_path, n=4, n_words=3_000)
    bounded = invoke("embed", "--model", tiny_bert, "--dataset", data, "--max-length", "32", "--out", tmp_path / "a.h5")
    assert bounded.exit_code == 0, bounded.output
    monkeypatch.setattr("embeddings.extract.cut_texts", lambda texts, tokenizer, max_length: list(texts))
    whole = invoke("embed", "--model", tiny_bert, "--dataset", data, "--max-length", "32", "--out", tmp_path / "b.h5")
    assert whole.exit_code == 0, whole.output
    a, b = EmbeddingStore(tmp_path / "a.h5"), EmbeddingStore(tmp_path / "b.h5")
    split = a.splits[0]
    assert np.array_equal(a.vectors(split, "mean", a.info.layers[-1]), b.vectors(split, "mean", b.info.layers[-1]))


def test_a_text_without_word_breaks_is_left_whole(tokenizers):
    """WordPiece makes one [UNK] of a word over 100 characters: cutting inside it would change the ids."""
    word = "x" * 5_000
    assert cut_text(word, tokenizers[0], 4) is word
