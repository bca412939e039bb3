"""A classification head that reads the mean of the token vectors (``--pooling mean``).

Sentence-transformers encoders such as all-MiniLM-L6-v2 were trained to put a text's meaning in the
mean of the last layer's token vectors; their [CLS] vector and BERT pooler were not trained for it.
transformers' ``BertForSequenceClassification`` reads the pooler. With ``--pooling mean`` (the
default for such models, ``--pooling auto``) the same dropout and linear classifier read the mean
over the real tokens instead. On AG News with MiniLM the linear probe that starts the head fits
90.0% of the training rows from the mean against 86.7% from the pooler.

The pooler is kept but frozen: it is unused, so it would not train anyway, and under DDP every
trainable parameter must get a gradient. ``model/`` therefore stays a complete BERT folder (what
``mlx embed`` and ``mlx attention`` load), and its config.json says ``classifier_pooling: mean``;
:func:`load_classifier` reads it back. Plain ``AutoModelForSequenceClassification`` would use the
pooler and score the head on the wrong vector.
"""

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from common import ConfigError
from finetune.config import MEAN_POOLING_MODEL_TYPES
from text.pooling import mean_pool


class MeanPooledClassifier(nn.Module):
    """A BertForSequenceClassification whose head reads mean-pooled token vectors (padding excluded)."""

    def __init__(self, classifier: Any):
        super().__init__()
        if not isinstance(getattr(classifier, "classifier", None), nn.Linear) or not hasattr(classifier, "dropout"):
            raise ConfigError(
                f"--pooling mean needs a head of one dropout and one linear layer; {type(classifier).__name__} "
                "has another: use --pooling cls"
            )
        # Any: a transformers classifier (an nn.Module) whose head (classifier, dropout, pooler) differs by
        # architecture; nn.Module would type each such attribute as Tensor | Module.
        self.classifier_model: Any = classifier
        classifier.base_model.pooler.requires_grad_(False)
        classifier.config.classifier_pooling = "mean"

    @property
    def config(self):  # read by fast_dropout
        return self.classifier_model.config

    def set_attn_implementation(self, name: str) -> None:
        self.classifier_model.set_attn_implementation(name)

    def save_pretrained(self, folder: Path) -> None:
        self.classifier_model.save_pretrained(folder)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **inputs,
    ) -> SequenceClassifierOutput:
        model = self.classifier_model
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask, **inputs).last_hidden_state
        pooled = mean_pool(hidden, attention_mask)  # (N, T, H) -> (N, H)
        logits = model.classifier(model.dropout(pooled))  # (N, C)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def with_pooling(classifier: PreTrainedModel, pooling: str) -> PreTrainedModel | MeanPooledClassifier:
    """``classifier`` as trained with ``pooling`` ('cls' or 'mean').

    A BERT gets :class:`MeanPooledClassifier` for 'mean'; either way its config records the pooling,
    so that a classifier fine-tuned again from a mean-pooled folder with 'cls' is not saved under the
    old folder's ``classifier_pooling: mean``. Models whose own head already pools by that config key
    (ModernBERT, EuroBERT) get the key set and pool themselves; other heads are left as they are.
    """
    if classifier.config.model_type in MEAN_POOLING_MODEL_TYPES:
        if pooling == "mean":
            return MeanPooledClassifier(classifier)
        classifier.config.classifier_pooling = "cls"
    elif hasattr(classifier.config, "classifier_pooling"):
        classifier.config.classifier_pooling = pooling
    return classifier


def load_classifier(folder: Path) -> nn.Module:
    """A fine-tuned ``model/`` folder as the classifier mlx trained (mean-pooled where its config says so)."""
    from transformers import AutoModelForSequenceClassification

    classifier = AutoModelForSequenceClassification.from_pretrained(folder)
    return with_pooling(classifier, getattr(classifier.config, "classifier_pooling", "cls"))
