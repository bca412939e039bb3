"""Tokenising with memory bounded by ``max_length``, not by the length of the text.

A fast tokenizer asked for ``truncation=True`` still encodes the whole text first (offsets, word
ids, every token) and cuts afterwards: 160 texts of 100,000 characters took 2.2 GB to keep 256
tokens each. :func:`cut_texts` hands every tokenizer call a prefix of each long text instead: the
shortest prefix, ending just before an ASCII space, tab or newline, that already holds
``max_length`` tokens. Every tokenizer mlx loads splits words at those characters and normalises
character by character, so the first ``max_length`` tokens of the prefix are the first
``max_length`` tokens of the text: the ids, and so the vectors, do not change (tests compare them).
"""

from __future__ import annotations

from collections.abc import Sequence

CHARS_PER_TOKEN = 8  # the first prefix tried: generous for English (about 4-5 characters per token)
_WORD_BREAKS = frozenset(" \t\n\r")  # whitespace every pre-tokenizer splits at


def cut_texts(texts: Sequence[str], tokenizer, max_length: int) -> list[str]:
    """``texts`` with each long one cut to a prefix that tokenises to the same first ``max_length`` tokens."""
    return [cut_text(text, tokenizer, max_length) for text in texts]


def cut_text(text: str, tokenizer, max_length: int) -> str:
    """The text itself when short; else its shortest tried prefix (doubling) holding ``max_length`` tokens.

    A prefix ends before a word break, so its last word is whole. The tokenizer sees at most about
    twice the characters that ``max_length`` tokens need (all of a text without enough breaks).
    """
    window = CHARS_PER_TOKEN * max_length
    while window < len(text):
        end = _last_break(text, window)
        if end > 0 and len(tokenizer(text[:end], add_special_tokens=False)["input_ids"]) >= max_length:
            return text[:end]
        window *= 2
    return text


def _last_break(text: str, end: int) -> int:
    """Index of the last word break before ``end`` (0 when there is none)."""
    for i in range(end - 1, 0, -1):
        if text[i] in _WORD_BREAKS:
            return i
    return 0
