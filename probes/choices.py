"""The k-NN probe's closed choices, importable without NumPy or FAISS (the CLI builds its options from them)."""

from enum import Enum


class Metric(str, Enum):
    COSINE = "cosine"
    L2 = "l2"


class Weights(str, Enum):
    UNIFORM = "uniform"
    DISTANCE = "distance"


class IndexKind(str, Enum):
    FLAT = "flat"
    HNSW = "hnsw"
    IVF = "ivf"
