"""Text datasets and models, re-exported from ``embeddings/`` until issue 23 moves them here."""

from embeddings.datasets import TextDataset, TextSplit, load_text_dataset
from embeddings.models import model_shape, resolve_model

__all__ = ["TextDataset", "TextSplit", "load_text_dataset", "model_shape", "resolve_model"]
