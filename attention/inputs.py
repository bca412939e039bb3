"""Where the texts and the outputs of `mlx attention` come from and go."""

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from common.paths import mlx_home
from common.runs import check_new
from embeddings.datasets import TextSplit, load_text_dataset, select_splits, subsample


@dataclass(frozen=True)
class TextSource:
    """Which texts to read: ``dataset`` as `mlx embed` takes it, one ``split``, at most ``limit`` rows."""

    dataset: str = "demo"
    split: str | None = None  # None: the only split, or 'test' when there are several
    limit: int | None = None
    seed: int = 0
    text_column: str = "text"
    label_column: str = "label"


@dataclass(frozen=True)
class LoadedTexts:
    dataset_name: str
    dataset_fingerprint: str
    split: TextSplit
    notes: tuple[str, ...]


def load_texts(source: TextSource) -> LoadedTexts:
    """Load one split (stratified, seeded subsample with ``limit``); notes say the choices made."""
    dataset = load_text_dataset(source.dataset, (), source.text_column, source.label_column)
    notes = list(dataset.notes)
    split = source.split
    if split is None:
        split = "test" if "test" in dataset.splits else next(iter(dataset.splits))
        if len(dataset.splits) > 1:
            notes.append(f"split {split} (of {', '.join(dataset.splits)}; choose another with --split)")
    dataset = select_splits(dataset, (split,))
    if source.limit is not None:
        dataset = subsample(dataset, source.limit, source.seed)
    return LoadedTexts(dataset.name, dataset.fingerprint, dataset.splits[split], tuple(notes))


def default_run_dir(command: str) -> Path:
    """``$MLX_HOME/runs/attention/<UTC time>-<command>-<4 hex>``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return mlx_home() / "runs" / "attention" / f"{stamp}-{command}-{secrets.token_hex(2)}"


def output_dir(out: Path | None, command: str) -> Path:
    """The run folder to create: ``out`` or the default; refused when it exists or cannot be made."""
    return check_new(Path(out).expanduser().absolute() if out is not None else default_run_dir(command))
