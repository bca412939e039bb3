"""Which parameters a fine-tune trains: all of them, low-rank adapters (LoRA) or the biases (BitFit).

- ``full``: every parameter of the encoder and the head (the pooler stays frozen where the head
  reads the mean of the token vectors: it is unused, see finetune/pooling.py).
- ``lora`` (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models"): the encoder's
  weights stay frozen; each targeted linear layer ``W`` learns ``W + (alpha / r) B A`` with
  ``A`` (r, in) and ``B`` (out, r), ``B`` starting at zero so that training starts from the
  pretrained model. Built by Hugging Face ``peft`` (``get_peft_model``, task SEQ_CLS), whose
  ``modules_to_save`` trains a copy of the classification head; its adapter folder is what
  ``PeftModel.from_pretrained`` loads.
- ``bitfit`` (Ben Zaken et al., 2022, "BitFit: Simple Parameter-efficient Fine-tuning for
  Transformer-based Masked Language-models"): every bias and every LayerNorm trains, every weight
  matrix stays frozen.

The classification head trains under every method, and ``--head-init probe`` starts it as a
linear probe under every method. Only the parameters that train are checkpointed
(training.weights.trainable_state): the frozen ones are rebuilt by loading the same model again.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from torch import nn

from common.errors import ConfigError
from finetune.config import FinetuneConfig

if TYPE_CHECKING:  # peft loads only for --method lora
    from peft import PeftModel

log = logging.getLogger(__name__)

# The head's submodule in transformers' sequence classifiers (BERT, RoBERTa: classifier; GPT-2, Llama:
# score): peft's SEQ_CLS task trains these (modules_to_save), and so does BitFit.
HEAD_MODULES = ("classifier", "score")
ATTENTION_MARKERS = ("attention", "attn")


@dataclass
class Trainable:
    """What ``apply_method`` made of a classifier: peft's wrapper for LoRA (None otherwise) and the count."""

    adapter: PeftModel | None  # sharing its modules with the classifier; None outside LoRA
    n_params: int  # parameters that train, the head included


def apply_method(classifier: nn.Module, trained: nn.Module, config: FinetuneConfig) -> Trainable:
    """Freeze what ``config.method`` does not train, in place.

    ``classifier`` is transformers' sequence classifier, ``trained`` the module that ``fit`` trains (the
    classifier itself, or finetune.pooling's wrapper around it, which shares its parameters).
    """
    adapter = None
    if config.method == "lora":
        adapter = _apply_lora(classifier, config)
    elif config.method == "bitfit":
        _apply_bitfit(classifier)
    n_params = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    log.info("%s: %d trainable parameters", config.method, n_params)
    return Trainable(adapter, n_params)


def lora_target_modules(classifier: nn.Module, targets: str) -> list[str]:
    """Full names of the linear layers that get adapters: every linear layer in the encoder's blocks
    (``all``) or those of its attention (``attention``: BERT's query, key, value and output dense).

    The encoder is the classifier's base model less its pooler; the head is never a target (it trains whole).
    """
    base = cast(nn.Module, classifier.base_model)  # nn.Module types every attribute as Tensor | Module
    prefix = next(name for name, module in classifier.named_modules() if module is base)
    names = []
    for name, module in base.named_modules():
        if not isinstance(module, nn.Linear) or name.split(".")[0] == "pooler":
            continue
        if targets == "attention" and not any(marker in name for marker in ATTENTION_MARKERS):
            continue
        names.append(f"{prefix}.{name}" if prefix else name)
    if not names:
        raise ConfigError(
            f"--lora-targets {targets}: {type(classifier).__name__} has no such linear layers in its encoder; "
            "use --lora-targets all or --method full"
        )
    return names


def _apply_lora(classifier: nn.Module, config: FinetuneConfig):
    from peft import LoraConfig, TaskType, get_peft_model

    from finetune.lora_layer import LeanLoraLinear

    rank, alpha, dropout, targets = config.lora_rank, config.lora_alpha, config.lora_dropout, config.lora_targets
    if rank is None or alpha is None or dropout is None or targets is None:
        raise ValueError("bug: LoRA options unset; the plan fills them (FinetuneConfig.with_method_defaults)")
    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS,  # trains (and saves) a copy of the head: classifier / score
        r=rank,
        lora_alpha=alpha,  # type: ignore[arg-type]  # peft annotates int; a float scales the same (alpha / r)
        lora_dropout=dropout,
        target_modules=lora_target_modules(classifier, targets),
        bias="none",
    )
    # peft's layers, parameters and adapter format, with a forward that makes fewer passes over memory
    # (finetune/lora_layer.py: why, and what it computes).
    lora._register_custom_module({nn.Linear: LeanLoraLinear})
    # get_peft_model replaces the targeted layers of ``classifier`` in place; the wrapper it returns is
    # kept only to save the adapter and to merge it.
    with warnings.catch_warnings():  # peft asks transformers 5 a deprecated question; nothing for the user to do
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(classifier, lora)


def _apply_bitfit(classifier: nn.Module) -> None:
    heads = [module for name, module in classifier.named_children() if name in HEAD_MODULES]
    if not heads:
        raise ConfigError(
            f"--method bitfit: found no classification head ({' or '.join(HEAD_MODULES)}) in {type(classifier).__name__}; "
            "use --method full"
        )
    head_params = {id(p) for head in heads for p in head.parameters()}
    norm_params = {id(p) for m in classifier.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    for name, param in classifier.named_parameters():
        keep = id(param) in head_params or id(param) in norm_params or name.rsplit(".", 1)[-1] == "bias"
        # A parameter frozen before (the unused pooler of a mean-pooled head) stays frozen.
        param.requires_grad_(param.requires_grad and keep)


def merge_adapter(trainable: Trainable) -> None:
    """LoRA: fold ``(alpha / r) B A`` into each targeted weight and put the head back in place, so that the
    classifier is a plain transformers model again (what ``model/`` holds). Nothing for other methods."""
    if trainable.adapter is not None:
        trainable.adapter.merge_and_unload()
