"""Tokenised text splits and their batches: length-grouped for training, length-sorted for scoring."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from text.tokens import cut_texts

MEGA_BATCH = 50  # batches per mega-batch sorted by length (the size transformers' Trainer uses)


@dataclass(frozen=True)
class EncodedSplit:
    """Token ids of one split, unpadded: ``ids[i]`` is (T_i,) int64."""

    ids: tuple[np.ndarray, ...]
    labels: np.ndarray  # (N,) int64
    row_ids: np.ndarray  # (N,) int64, rows of the source split

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.ids), dtype=np.int64, count=len(self.ids))

    def subset(self, rows: np.ndarray) -> EncodedSplit:
        return EncodedSplit(tuple(self.ids[i] for i in rows), self.labels[rows], self.row_ids[rows])


def encode_split(texts, labels, row_ids, tokenizer, max_length: int) -> EncodedSplit:
    """Tokenise once, truncating to ``max_length`` tokens (memory bounded by it); padding happens per batch later."""
    encoded = tokenizer(cut_texts(texts, tokenizer, max_length), truncation=True, max_length=max_length)["input_ids"]
    return EncodedSplit(
        tuple(np.asarray(ids, dtype=np.int64) for ids in encoded),
        np.asarray(labels, dtype=np.int64),
        np.asarray(row_ids, dtype=np.int64),
    )


def collate(split: EncodedSplit, rows: np.ndarray, pad_id: int) -> tuple[dict, torch.Tensor]:
    """Pad ``rows`` of ``split`` to their longest: ({input_ids, attention_mask}: (B, T) int64, labels (B,))."""
    longest = max(len(split.ids[i]) for i in rows)
    input_ids = np.full((len(rows), longest), pad_id, dtype=np.int64)  # (B, T)
    mask = np.zeros((len(rows), longest), dtype=np.int64)  # (B, T)
    for j, i in enumerate(rows):
        input_ids[j, : len(split.ids[i])] = split.ids[i]
        mask[j, : len(split.ids[i])] = 1
    inputs = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
    return inputs, torch.from_numpy(split.labels[rows])


class LengthGroupedBatches:
    """Training batches of one split; the same list for the same (seed, epoch), whatever ran before.

    Per epoch: shuffle, cut into mega-batches of ``MEGA_BATCH`` batches, sort each by length, cut
    into batches, shuffle the batches. Padding then costs little and the batch order stays random.
    A pure function of (seed, epoch) is what makes resume and DDP sharding exact.
    """

    def __init__(self, split: EncodedSplit, batch_size: int, seed: int, pad_id: int):
        self.split, self.batch_size, self.seed, self.pad_id = split, batch_size, seed, pad_id
        self.lengths = split.lengths

    def __len__(self) -> int:
        return self.count(len(self.split), self.batch_size)

    @staticmethod
    def count(n_rows: int, batch_size: int) -> int:
        """Batches per epoch of ``n_rows`` rows (the last batch of each mega-batch may be short)."""
        mega = MEGA_BATCH * batch_size
        full, rest = divmod(n_rows, mega)
        return full * MEGA_BATCH + math.ceil(rest / batch_size)

    def epoch_rows(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.split))
        mega = MEGA_BATCH * self.batch_size
        batches = []
        for start in range(0, len(order), mega):
            chunk = order[start : start + mega]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def epoch_batches(self, epoch: int) -> list:
        return [collate(self.split, rows, self.pad_id) for rows in self.epoch_rows(epoch)]


def scoring_batches(split: EncodedSplit, batch_size: int, pad_id: int) -> tuple[list, np.ndarray]:
    """Length-sorted batches for evaluation and the sort order (outputs[k] belongs to row order[k])."""
    order = np.argsort(-split.lengths, kind="stable")
    return [collate(split, order[i : i + batch_size], pad_id) for i in range(0, len(order), batch_size)], order
