"""Train one model from a spec, score it, and save a self-describing run folder.

Every model (NumPy or torch) sees the same splits: images scaled to [0, 1], standardised inside
the model with the training set's mean and std. The validation split guides nothing but the
reports and sweep ranking; the test split is scored once per trained model, at the end.
"""

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score

from common.progress import ProgressCallback, no_progress
from common.runs import write_json
from common.training import TrainHistory
from vision.data import N_CLASSES, ImageSet, Splits
from vision.models import ModelName, ModelSpec, build_model, save_weights
from vision.runs import stamp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TestScores:
    accuracy: float
    macro_f1: float
    confusion: np.ndarray  # (C, C) int64, rows = true class
    predicted: np.ndarray | None = None  # (N,) int64 predicted labels, saved in the run's predictions.npz


@dataclass(frozen=True)
class ModelRun:
    spec: ModelSpec
    history: TrainHistory
    n_parameters: int
    validation_accuracy: float
    test: TestScores | None
    run_dir: Path

    def metrics(self) -> dict[str, Any]:
        scores = {} if self.test is None else {"test_accuracy": self.test.accuracy, "test_macro_f1": self.test.macro_f1, "confusion": self.test.confusion.tolist()}
        return {
            "model": self.spec.model.value,
            "n_parameters": self.n_parameters,
            "validation_accuracy": self.validation_accuracy,
            **scores,
            "train_seconds": self.history.seconds,
            "seconds_per_epoch": self.history.seconds_per_epoch,
            "n_epochs": len(self.history.epochs),
            "history": [vars(r) for r in self.history.epochs],
        }


def scaled(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 → (N, 28, 28) float32 in [0, 1]."""
    return images.astype(np.float32) / 255.0


def _tensors(split: ImageSet, device):
    import torch

    return torch.from_numpy(scaled(split.images)).unsqueeze(1).to(device), torch.from_numpy(split.labels).to(device)  # (N, 1, 28, 28), (N,)


def train_model(spec: ModelSpec, splits: Splits, device, progress: ProgressCallback = no_progress, task: str = "train"):
    """Build and train the model of ``spec`` on splits.train; returns (model, TrainHistory)."""
    train_images = scaled(splits.train.images)
    mean, std = float(train_images.mean()), float(train_images.std())
    model = build_model(spec, mean, std, seed=spec.train.seed)
    if spec.model == ModelName.mlp_numpy:
        from vision.numpy_train import fit_numpy

        rng = np.random.default_rng(spec.train.seed + 1)
        val = (scaled(splits.val.images), splits.val.labels)
        history = fit_numpy(model, (train_images, splits.train.labels), val, spec.train, rng, spec.augment, progress, task)
        return model, history
    import torch.nn.functional as F

    from common.training import fit
    from vision.augment import torch_augmenter

    loss = partial(F.cross_entropy, label_smoothing=spec.label_smoothing)
    augment = torch_augmenter(spec.augment, seed=spec.train.seed + 1)
    history = fit(model, _tensors(splits.train, device), _tensors(splits.val, device), loss, spec.train, device, progress, augment, task)
    return model, history


def predict_logits(model, spec: ModelSpec, images: np.ndarray, device) -> np.ndarray:
    """(N, 28, 28) uint8 → (N, C) float32 logits."""
    if spec.model == ModelName.mlp_numpy:
        x = (scaled(images) - model.input_mean) / model.input_std
        return model.predict_logits(x.reshape(len(images), -1))
    import torch

    from common.training import predict

    inputs = torch.from_numpy(scaled(images)).unsqueeze(1)
    return predict(model.to(device), (inputs, torch.zeros(len(images), dtype=torch.long)), device).numpy()


def score(model, spec: ModelSpec, split: ImageSet, device) -> TestScores:
    predicted = predict_logits(model, spec, split.images, device).argmax(axis=1)
    return TestScores(
        accuracy=float((predicted == split.labels).mean()),
        macro_f1=float(f1_score(split.labels, predicted, average="macro")),
        confusion=confusion_matrix(split.labels, predicted, labels=list(range(N_CLASSES))),
        predicted=predicted.astype(np.int64),
    )


def n_parameters(model, spec: ModelSpec) -> int:
    if spec.model == ModelName.mlp_numpy:
        return model.n_parameters()
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def data_description(splits: Splits) -> dict[str, Any]:
    return {"dataset": splits.dataset, "source": splits.train.source, "n_train": len(splits.train), "n_val": len(splits.val), "n_test": len(splits.test)}


def run_model(spec: ModelSpec, splits: Splits, device, run_dir: Path, progress: ProgressCallback = no_progress, score_test: bool = True) -> ModelRun:
    """Train, score and save one model into ``run_dir`` (config.json first, metrics.json last)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", stamp({"spec": spec.to_dict(), "data": data_description(splits), "data_fingerprint": splits.fingerprint, "device": str(device)}))
    model, history = train_model(spec, splits, device, progress, task=spec.key())
    validation_accuracy = history.epochs[-1].val_accuracy
    test = score(model, spec, splits.test, device) if score_test else None
    save_weights(model, spec, run_dir)
    run = ModelRun(spec, history, n_parameters(model, spec), validation_accuracy, test, run_dir)
    write_json(run_dir / "metrics.json", stamp(run.metrics()))
    return run
