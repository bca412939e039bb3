"""Where the texts and the outputs of `mlx attention` come from and go."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import record
from common.artifacts import to_plain
from common.paths import mlx_home
from common.writes import check_new, new_run_name
from text.datasets import TextSplit, load_text_dataset, select_splits, subsample


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
    label_names: tuple[str, ...] = ()

    def describe(self, n_tokens: int) -> dict:
        """Which rows were read, for the JSON documents."""
        split = self.split
        return {
            "name": self.dataset_name,
            "split": split.name,
            "fingerprint": split.fingerprint,
            "n_texts": len(split),
            "n_tokens": n_tokens,
        }

    def data_ref(self) -> record.DataRef:
        split = record.SplitRef(self.split.name, self.split.fingerprint, len(self.split))
        return record.DataRef(
            name=self.dataset_name, fingerprint=self.dataset_fingerprint, splits=(split,), label_names=self.label_names
        )


def load_texts(source: TextSource) -> LoadedTexts:
    """Load one split (stratified, seeded subsample with ``limit``); notes say the choices made."""
    dataset = load_text_dataset(
        spec=source.dataset, splits=(), text_column=source.text_column, label_column=source.label_column
    )
    notes = list(dataset.notes)
    split = source.split
    if split is None:
        split = "test" if "test" in dataset.splits else next(iter(dataset.splits))
        if len(dataset.splits) > 1:
            notes.append(f"split {split} (of {', '.join(dataset.splits)}; choose another with --split)")
    dataset = select_splits(dataset, (split,))
    if source.limit is not None:
        dataset = subsample(dataset, source.limit, source.seed)
    return LoadedTexts(
        dataset_name=dataset.name,
        dataset_fingerprint=dataset.fingerprint,
        split=dataset.splits[split],
        notes=tuple(notes),
        label_names=dataset.label_names,
    )


def output_dir(out: Path | None, command: str) -> Path:
    """The run folder to create: ``out``, or a new name under ``$MLX_HOME/runs/attention/``; refused when it exists or cannot be made."""
    if out is None:
        return new_run_name(mlx_home() / "runs" / "attention", command)
    return check_new(Path(out).expanduser().absolute())


@dataclass(frozen=True)
class RunFacts:
    """What an attention command ran on what, as its run.json states it."""

    command: str  # show, stats or diff
    config: Any  # the command's frozen config
    model: Any  # attention.model.AttentionModel: its name and loaded revision
    data: record.DataRef
    device: str
    max_length: int | None = None  # the tokens kept per text (text.limits), stated in the data like every text run's

    @classmethod
    def of_texts(cls, command: str, plan: Any, model: Any) -> "RunFacts":
        """The facts of a command over many texts (``plan.texts``: stats, diff) with its config, device and limit."""
        return cls(
            command=command,
            config=plan.config,
            model=model,
            data=plan.texts.data_ref(),
            device=plan.device,
            max_length=plan.max_length,
        )


def write_run_record(
    folder: Path, facts: RunFacts, started_at: str, artifacts: tuple[str, ...], notes: tuple[str, ...] = ()
) -> Path:
    """run.json (common/record.py) in the staging ``folder``: what ran on what; the numbers are in the artifacts."""
    from common.cost import device_name

    run = record.RunRecord(
        kind="attention",
        command=f"attention {facts.command}",
        command_line=record.command_line(),
        started_at=started_at,
        finished_at=record.now(),
        config=to_plain(facts.config),
        model=record.ModelRef(facts.model.name, facts.model.loaded.revision),
        data=dataclasses.replace(facts.data, max_length=facts.max_length),
        device=facts.device,
        device_name=device_name(facts.device),
        results=(),
        artifacts=artifacts,
        notes=notes,
    )
    return record.write_record(folder, run)
