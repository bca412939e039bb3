"""What training did: one record per epoch and per validation pass, and the history ``fit`` returns."""

from dataclasses import dataclass


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclass(frozen=True)
class EvalRecord:
    """One validation pass: after ``step`` optimizer steps, in ``epoch``."""

    step: int
    epoch: int
    train_loss: float  # mean training loss since the previous evaluation
    val_loss: float
    val_accuracy: float


@dataclass(frozen=True)
class TrainHistory:
    epochs: tuple[EpochRecord, ...]
    seconds: float  # wall time of training, evaluation of the validation split included
    evals: tuple[EvalRecord, ...] = ()
    best_step: int | None = None  # the step of the best validation accuracy (its checkpoint is kept)
    best_accuracy: float = float("nan")
    n_steps: int = 0
    train_samples: int = 0  # examples seen in training, all ranks (earlier sessions of a resumed run included)
    train_seconds: float = 0.0  # wall time of the training steps alone (no evaluation, no checkpoints)
    stopped_early: bool = False
    resumed_from_step: int | None = None

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(1, len(self.epochs))

    @property
    def samples_per_second(self) -> float:
        return self.train_samples / self.train_seconds if self.train_seconds else float("nan")
