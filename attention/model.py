"""Encoders that return their attention weights, and batches of tokenised text to feed them.

transformers 5.x loads encoders with the ``sdpa`` attention by default, and sdpa returns *no*
attention weights when asked for them (an empty tuple and one log line). mlx loads every model
here with the ``eager`` implementation, runs one tiny forward pass, and refuses a model that still
yields none, so no statistic is ever computed from nothing.
"""

import copy
import logging
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from common import ModelLoadError
from common.devices import DType, EncoderDType
from text.limits import resolve_max_length as text_max_length
from text.models import LoadedModel, load_model, model_shape
from text.tokens import cut_texts
from training.devices import torch_dtype

log = logging.getLogger(__name__)


@dataclass
class AttentionModel:
    """A loaded encoder (fp32 weights, eager attention) plus what the attention code needs to know."""

    loaded: LoadedModel
    n_layers: int
    n_heads: int
    max_positions: int  # longest input in tokens; 0 when the config does not say
    _copies: dict = field(default_factory=dict, repr=False)  # dtype -> low-precision or int8 copy

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    @property
    def name(self) -> str:
        return self.loaded.model_id

    def describe(self) -> dict:
        """Identity and shape, for the JSON documents of every command."""
        loaded = self.loaded
        return {
            "id": self.name,
            "source": loaded.source,
            "revision": loaded.revision,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
        }

    def network(self, dtype: DType | EncoderDType) -> torch.nn.Module:
        """The encoder in ``dtype``; bf16/fp16/int8 copies are made once, so fp32 stays available as the reference."""
        dtype = EncoderDType(dtype.value)
        if dtype in (EncoderDType.FP32, EncoderDType.AUTO):
            return self.loaded.model
        if dtype not in self._copies:
            if dtype is EncoderDType.INT8:
                from text.quantize import quantize_encoder

                self._copies[dtype] = quantize_encoder(self.loaded.model)
            else:
                self._copies[dtype] = copy.deepcopy(self.loaded.model).to(torch_dtype(DType(dtype.value)))
        return self._copies[dtype]

    def attentions(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, dtype: DType | EncoderDType = DType.FP32
    ) -> tuple[torch.Tensor, ...]:
        """One forward pass: L tensors of shape (B, H, T, T), float32, rows summing to 1 over real tokens."""
        device = self.loaded.device
        with torch.inference_mode():
            output = self.network(dtype)(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), output_attentions=True
            )
        weights = getattr(output, "attentions", None)
        if not weights or any(w is None for w in weights):
            raise ModelLoadError(
                f"model {self.name!r} returned no attention weights; mlx attention needs an encoder that can output them (BERT-family models do)"
            )
        return tuple(w.float() for w in weights)


def load_attention_model(model_id: str, device: str) -> AttentionModel:
    """Load ``model_id`` with eager attention in fp32 and check that it really returns attention weights."""
    loaded = load_model(model_id, device, DType.FP32, attn_implementation="eager")
    config = loaded.model.config
    n_heads = int(getattr(config, "num_attention_heads", 0) or 0)
    model = AttentionModel(
        loaded=loaded, n_layers=loaded.n_layers, n_heads=n_heads, max_positions=model_shape(model_id).max_positions
    )
    ids = loaded.tokenizer(["attention"], return_tensors="pt")
    weights = model.attentions(ids["input_ids"], ids["attention_mask"])  # raises when there are none
    model.n_layers, model.n_heads = len(weights), int(weights[0].shape[1])  # what the model really returns
    log.info("%s: %d layers x %d heads, eager attention", model_id, model.n_layers, model.n_heads)
    return model


def resolve_max_length(model: AttentionModel, max_length: int | None) -> tuple[int, str | None]:
    """The token limit to use (the one text default, text.limits), and a note when the model's limit lowered it."""
    return text_max_length(max_length, model.max_positions, model.name)


@dataclass(frozen=True)
class TokenisedTexts:
    """Token ids of N texts, truncated to ``max_length``; ``n_full`` holds each text's untruncated length."""

    ids: tuple[tuple[int, ...], ...]
    n_full: np.ndarray  # (N,) int64

    @property
    def n_truncated(self) -> int:
        return int(sum(full > len(ids) for full, ids in zip(self.n_full, self.ids)))

    @property
    def n_tokens(self) -> int:
        return sum(len(ids) for ids in self.ids)


def tokenise(
    tokenizer, texts: list[str] | tuple[str, ...], max_length: int, count_every_token: bool = False
) -> TokenisedTexts:
    """Tokenise with the model's special tokens, truncating to ``max_length`` (counted, never silent).

    Memory is bounded by ``max_length`` (text.tokens.cut_texts): ``n_full`` then counts a long text's
    tokens only as far as its cut, which is more than ``max_length``, so truncation is still counted.
    ``count_every_token`` (one text shown to a person) tokenises whole texts to give their full length.
    """
    texts = list(texts) if count_every_token else cut_texts(texts, tokenizer, max_length)
    full = tokenizer(texts, truncation=False, verbose=False)["input_ids"]
    cut = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return TokenisedTexts(tuple(tuple(i) for i in cut), np.array([len(i) for i in full], dtype=np.int64))


@dataclass(frozen=True)
class Batch:
    rows: np.ndarray  # (B,) positions of these texts in the TokenisedTexts
    input_ids: torch.Tensor  # (B, T) int64, right-padded
    attention_mask: torch.Tensor  # (B, T) int64, 1 on real tokens


def batches(texts: TokenisedTexts, batch_size: int, pad_id: int) -> Iterator[Batch]:
    """Length-sorted batches padded to their own longest text: short texts never pay for long ones."""
    order = np.argsort([len(ids) for ids in texts.ids], kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        longest = max(len(texts.ids[r]) for r in rows)
        input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(texts.ids[r])] = torch.tensor(texts.ids[r])
            mask[i, : len(texts.ids[r])] = 1
        yield Batch(rows, input_ids, mask)


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


@dataclass(frozen=True)
class TokenRoles:
    """Ids of the tokens that Clark et al. (2019) single out: [CLS], [SEP] and punctuation."""

    cls_ids: frozenset[int]
    sep_ids: frozenset[int]
    punctuation_ids: frozenset[int]

    def flags(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, 3) float32: is [CLS], is [SEP], is punctuation."""
        columns = [
            torch.isin(input_ids, torch.tensor(sorted(ids) or [-1], device=input_ids.device))
            for ids in (self.cls_ids, self.sep_ids, self.punctuation_ids)
        ]
        return torch.stack(columns, dim=-1).float()


def token_roles(tokenizer) -> TokenRoles:
    """[CLS]/[SEP] (or a RoBERTa-style <s>/</s>) and every vocabulary entry made only of punctuation."""
    cls = {i for i in (tokenizer.cls_token_id, tokenizer.bos_token_id) if i is not None}
    sep = {i for i in (tokenizer.sep_token_id, tokenizer.eos_token_id) if i is not None}
    special = set(getattr(tokenizer, "all_special_ids", []))
    punctuation = {i for token, i in tokenizer.get_vocab().items() if i not in special and is_punctuation(token)}
    return TokenRoles(frozenset(cls), frozenset(sep), frozenset(punctuation))


def is_punctuation(token: str) -> bool:
    """A token made only of Unicode punctuation ('.', ',', '##!', 'Ġ,'), word-piece markers stripped."""
    core = token.removeprefix("##").lstrip("Ġ▁")
    return bool(core) and all(unicodedata.category(c).startswith("P") for c in core)
