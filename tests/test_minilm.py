"""The bundled model: `minilm` works offline and mlx's mean pooling equals sentence-transformers'."""

import numpy as np
import pytest

from embeddings.extract import EmbedConfig, extract_embeddings, plan_extraction
from embeddings.store import EmbeddingStore
from text.models import bundled_minilm_path

TEXTS = [
    "Stocks rally as the central bank holds rates steady",
    "Midfielder signs a three-year deal",
    "A very long headline about a new chip that promises to make phones faster and batteries last longer, say engineers",
    "Peace talks resume",
]


def test_minilm_mean_pooling_matches_sentence_transformers(tmp_path):
    st = pytest.importorskip("sentence_transformers")
    data = tmp_path / "texts.csv"
    data.write_text("text,label\n" + "".join(f'"{t}",{i % 2}\n' for i, t in enumerate(TEXTS)))
    plan = plan_extraction(
        EmbedConfig(dataset=str(data), model="minilm", poolings=("mean",), batch_size=3, out=tmp_path / "m.h5")
    )
    assert plan.model_revision.startswith("sha256:") and plan.layers == (6,)
    with EmbeddingStore(extract_embeddings(plan).path) as store:
        ours = store.vectors(store.splits[0], "mean")
    reference = st.SentenceTransformer(str(bundled_minilm_path()), device="cpu").encode(
        TEXTS, normalize_embeddings=False
    )
    cosine = (ours * reference).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
    assert cosine.min() >= 0.9999, cosine
