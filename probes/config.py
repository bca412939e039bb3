"""What one ``mlx probe`` run is asked to do: the probes, their settings, the store(s) and the rows."""

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from common.artifacts import to_plain
from common.options import LayerSpec
from probes.choices import IndexKind, Metric, Weights
from probes.knn import ApproximateParams
from probes.logreg import DEFAULT_CS
from text.validation import VALIDATION_FRACTION


class ProbeKind(str, Enum):
    KNN = "knn"
    LOGREG = "logreg"


@dataclass(frozen=True)
class KNNConfig:
    ks: tuple[int, ...] = (1, 5, 10, 20)
    metric: Metric = Metric.COSINE
    weights: Weights = Weights.UNIFORM
    index: IndexKind = IndexKind.FLAT
    approximate: ApproximateParams = ApproximateParams()


@dataclass(frozen=True)
class LogRegConfig:
    Cs: tuple[float, ...] = DEFAULT_CS
    validation_fraction: float = VALIDATION_FRACTION  # the run's validation rows, for k-NN's k too
    max_iter: int = 1000


@dataclass(frozen=True)
class ProbeRunConfig:
    """Everything one ``mlx probe`` run needs. ``poolings``/``layers`` hold parsed values (empty = default)."""

    command: str
    store: Path
    probes: tuple[ProbeKind, ...]
    poolings: tuple[str, ...] = ()
    layers: tuple[LayerSpec, ...] = ()  # common.options.parse_layers
    knn: KNNConfig = KNNConfig()
    logreg: LogRegConfig = LogRegConfig()
    test_fraction: float | None = None
    test_store: Path | None = None
    train_size: int | None = None  # a stratified, seeded subset of this many training rows (None: all)
    seed: int = 0
    out: Path | None = None
    plot: bool = False

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)
