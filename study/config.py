"""The settings of `mlx study text`, apart from the steps that read them (study.steps) and the run (study.text)."""

from dataclasses import dataclass
from pathlib import Path

from common.artifacts import to_plain
from text.defaults import DEFAULT_MODEL, LABEL_COLUMN, TEXT_COLUMN


@dataclass(frozen=True)
class TextStudyConfig:
    model: str = DEFAULT_MODEL
    dataset: str = "demo"
    train_sizes: tuple[int | None, ...] = (None,)  # None: every training row
    poolings: tuple[str, ...] = ("all",)  # embedded (and so probed) poolings
    text_column: str = TEXT_COLUMN
    label_column: str = LABEL_COLUMN
    n_epochs: int = 3  # fine-tuning epochs
    lr: float | None = None  # fine-tuning learning rate; None: by model size
    batch_size: int = 32  # fine-tuning batch
    max_length: int | None = None  # None: text.limits' one default, for the embeddings and the fine-tune alike
    seed: int = 0  # the training subsets, the one validation split (probes and fine-tune) and fine-tuning
    dtype: str = "auto"  # compute dtype of the embeddings and the fine-tune (common.devices.DType values)
    finetune: bool = True
    # Fine-tuning methods run at each size (finetune.config.METHODS). Like the sizes, not part of settings():
    # each method has its own folder, so methods can be added to a study later.
    methods: tuple[str, ...] = ("full", "lora")
    out: Path | None = None

    def settings(self) -> dict:
        """What every result of the folder depends on (not the list of sizes: sizes can be added later)."""
        keys = (
            "model",
            "dataset",
            "poolings",
            "text_column",
            "label_column",
            "n_epochs",
            "lr",
            "batch_size",
            "max_length",
            "seed",
        )
        base = {k: to_plain(getattr(self, k)) for k in keys}
        if self.dtype != "auto":  # studies from before --dtype (auto) keep their identity
            base["dtype"] = self.dtype
        return base
