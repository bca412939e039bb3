"""What a report is: its rows (one per method and setting, with its interval and paired test) and the whole.

``report.join`` builds a ``Report`` from run folders; ``report.markdown``, ``report.html`` and
``report.plots`` render it.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ReportRow:
    run_dir: str
    kind: str
    method: str  # knn, logreg, finetune, cnn-strong, ...
    detail: str  # pooling / layer / setting, or the fine-tune settings
    model: str
    n_train: int | None
    accuracy: float
    ci_low: float
    ci_high: float
    macro_f1: float | None
    trainable_params: int | None
    train_seconds: float | None
    device: str
    chosen_on: str  # "validation", "-" (one setting, nothing chosen) or "optimistic" (--all-rows: not the choice)
    is_reference: bool = False
    p_value: float | None = None  # exact McNemar against the reference row of the same training size
    only_this: int | None = None  # test rows only this row gets right (vs the reference)
    only_reference: int | None = None
    row_name: str = ""
    validation_accuracy: float | None = None
    peak_memory_bytes: int | None = None
    predict_per_second: float | None = None  # test examples per second through the predicting model
    device_name: str = ""
    c_on_grid_edge: bool = False  # logistic regression's C stayed on the edge of its (extended) grid
    state: str = ""  # "frozen" / "fine-tuned" (the encoder a probe read), "trained" (fine-tune, vision)
    best_frozen: bool = False  # the frozen-encoder probe with the best validation accuracy at its size

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Report:
    rows: tuple[ReportRow, ...]
    data_name: str
    test_description: str
    runs: tuple[str, ...]
    out: Path | None
    plots: tuple[Path, ...] = ()
    markdown: Path | None = None
    notes: tuple[str, ...] = ()
    html: Path | None = None
