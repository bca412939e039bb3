"""Train one model from a spec, score it, and save a self-describing run folder.

Every model (NumPy or torch) sees the same splits: images scaled to [0, 1], standardised inside
the model with the training set's mean and std. The validation split guides nothing but the
reports and sweep ranking; the test split is scored once per trained model, at the end.
"""

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from common import ConfigError, __version__
from common.artifacts import Identity, to_plain
from common.metrics import confusion_matrix, macro_f1, per_class_metrics
from common.paths import mlx_home
from common.progress import ProgressCallback, no_progress
from common.schema import read_checked_json
from common.writes import write_json
from training.history import TrainHistory
from vision.augment import affine_matrix, warp_numpy
from vision.data import N_CLASSES, ImageSet, Splits
from vision.specs import ModelName, ModelSpec, build_model, save_weights

log = logging.getLogger(__name__)

# A model's folder (``run_model``) holds config.json (written first) and metrics.json (written last, so a
# sweep knows the model finished) beside its weights; the run folder around it holds the one run.json.


def default_runs_dir() -> Path:
    return mlx_home() / "runs" / "vision"


_NUMBER = (float, int)
_STAMP = {"mlx_version": (str,), "created_at": (str,)}
# The JSON files a vision folder holds, as mlx writes them (vision/experiment.py, vision/sweep.py); keys that
# older mlx versions did not write are optional.
CONFIG_SCHEMA = {
    **_STAMP,
    "spec": (dict,),
    "data": (dict,),
    "data_fingerprint": (str,),
    "device": (str,),
    "n_tta_views": (int,),
    "identity": (dict,),  # what a sweep reuses the folder under (common.artifacts)
}
METRICS_SCHEMA = {
    **_STAMP,
    "model": (str,),
    "n_parameters": (int,),
    "validation_accuracy": (*_NUMBER, type(None)),
    "val_accuracy": (*_NUMBER, type(None)),  # its name before validation_accuracy
    "n_tta_views": (int,),
    "validation_accuracy_tta": (*_NUMBER, type(None)),
    "test_accuracy": (*_NUMBER, type(None)),
    "test_macro_f1": (*_NUMBER, type(None)),
    "per_class_accuracy": (list, dict),
    "confusion": (list,),
    "train_seconds": _NUMBER,
    "seconds_per_epoch": _NUMBER,
    "n_epochs": (int,),
    "history": (list,),
}
_OPTIONAL = {
    "config.json": {"n_tta_views", "data", "identity"},
    "metrics.json": {"validation_accuracy", "val_accuracy", "n_tta_views", "validation_accuracy_tta"}
    | {"test_accuracy", "test_macro_f1", "per_class_accuracy", "confusion", "seconds_per_epoch", "history"},
}


def read_json(path: Path, schema: Mapping[str, tuple[type, ...]]) -> dict[str, Any]:
    """A JSON file of a vision folder, checked against its ``schema`` (one of the above): one line if damaged."""
    return read_checked_json(
        path,
        schema,
        "move the folder away or choose another --out",
        optional=_OPTIONAL.get(Path(path).name, set()),
    )


def stamp(obj: dict[str, Any]) -> dict[str, Any]:
    """Add the mlx version and a UTC timestamp to a dict saved in a run folder."""
    return {"mlx_version": __version__, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **obj}


@dataclass(frozen=True)
class TestScores:
    accuracy: float
    macro_f1: float
    confusion: np.ndarray  # (C, C) int64, rows = true class
    predicted: np.ndarray  # (N,) int64 predicted labels, saved in the run's predictions.npz
    class_names: tuple[str, ...] = ()

    @property
    def per_class_accuracy(self) -> dict[str, float]:
        """Recall of each class: the share of its images predicted as it (nan for an absent class)."""
        names = self.class_names or tuple(str(c) for c in range(len(self.confusion)))
        return {c.name: c.recall if c.support else float("nan") for c in per_class_metrics(self.confusion, names)}


@dataclass(frozen=True)
class ModelRun:
    spec: ModelSpec
    history: TrainHistory
    n_parameters: int
    validation_accuracy: float | None  # None: trained with no validation split (--validation-fraction 0)
    test: TestScores | None
    run_dir: Path
    n_tta_views: int = 0
    validation_accuracy_tta: float | None = None  # with the test-time views, when n_tta_views > 0

    def metrics(self) -> dict[str, Any]:
        scores = (
            {}
            if self.test is None
            else {
                "test_accuracy": self.test.accuracy,
                "test_macro_f1": self.test.macro_f1,
                "per_class_accuracy": self.test.per_class_accuracy,
                "confusion": self.test.confusion.tolist(),
            }
        )
        return {
            "model": self.spec.model.value,
            "n_parameters": self.n_parameters,
            "validation_accuracy": self.validation_accuracy,
            "n_tta_views": self.n_tta_views,
            "validation_accuracy_tta": self.validation_accuracy_tta,
            **scores,
            "train_seconds": self.history.seconds,
            "seconds_per_epoch": self.history.seconds_per_epoch,
            "n_epochs": len(self.history.epochs),
            "history": [to_plain(r) for r in self.history.epochs],
        }


# Test-time augmentation: fixed small warps, each a plausible redrawing of the same character.
# The prediction averages the softmax over the original and the first n of these views.
TTA_VIEWS = (
    affine_matrix(shift_x_px=1.0),
    affine_matrix(shift_x_px=-1.0),
    affine_matrix(shift_y_px=1.0),
    affine_matrix(shift_y_px=-1.0),
    affine_matrix(rotation_deg=6.0),
    affine_matrix(rotation_deg=-6.0),
    affine_matrix(scale=1.06),
    affine_matrix(scale=0.94),
)
MAX_TTA_VIEWS = len(TTA_VIEWS)


def check_tta_views(n_views: int) -> int:
    if not 0 <= n_views <= MAX_TTA_VIEWS:
        raise ConfigError(
            f"--tta takes 0 (off) to {MAX_TTA_VIEWS} extra test-time views (shifts, rotations, scalings), got {n_views}"
        )
    return n_views


def scaled(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 → (N, 28, 28) float32 in [0, 1]."""
    return images.astype(np.float32) / 255.0


def _tensors(split: ImageSet, device):
    import torch

    return torch.from_numpy(scaled(split.images)).unsqueeze(1).to(device), torch.from_numpy(split.labels).to(
        device
    )  # (N, 1, 28, 28), (N,)


def train_model(spec: ModelSpec, splits: Splits, device, progress: ProgressCallback = no_progress, task: str = "train"):
    """Build and train the model of ``spec`` on splits.train; returns (model, TrainHistory)."""
    train_images = scaled(splits.train.images)
    mean, std = float(train_images.mean()), float(train_images.std())
    model = build_model(spec, mean, std, seed=spec.train.seed)
    if spec.model == ModelName.MLP_NUMPY:
        from vision.numpy_train import fit_numpy

        rng = np.random.default_rng(spec.train.seed + 1)
        val = (scaled(splits.val.images), splits.val.labels)
        history = fit_numpy(
            model=model,
            train=(train_images, splits.train.labels),
            val=val,
            config=spec.train,
            rng=rng,
            augment=spec.augment,
            progress=progress,
            task=task,
        )
        return model, history
    from training import loop
    from vision.augment import torch_augmenter
    from vision.torch_nets import member_loss

    loss = member_loss(spec.label_smoothing)
    augment = torch_augmenter(spec.augment, seed=spec.train.seed + 1)
    # The spec's L2 is the optimiser's weight decay (SGD: the same gradient as the NumPy MLP's penalty).
    train = dataclasses.replace(spec.train, weight_decay=spec.l2)
    history = loop.fit(
        model=model,
        train=_tensors(splits.train, device),
        val=_tensors(splits.val, device),
        loss_fn=loss,
        config=train,
        device=device,
        progress=progress,
        batch_transform=augment,
        task=task,
    )
    return model, history


def predict_logits(model, spec: ModelSpec, images: np.ndarray, device) -> np.ndarray:
    """(N, 28, 28) float32 in [0, 1] → (N, C) float32 logits."""
    if spec.model == ModelName.MLP_NUMPY:
        x = (images - model.input_mean) / model.input_std
        return model.predict_logits(x.reshape(len(images), -1))
    import torch

    from training.predict import predict

    inputs = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
    return predict(model.to(device), (inputs, torch.zeros(len(images), dtype=torch.long)), device).numpy()


def predict_probabilities(model, spec: ModelSpec, images: np.ndarray, device, n_tta_views: int = 0) -> np.ndarray:
    """(N, 28, 28) uint8 → (N, C) float32 class probabilities, averaged over the original and
    ``n_tta_views`` fixed warps (``TTA_VIEWS``)."""
    from scipy.special import softmax

    original = scaled(images)  # (N, 28, 28)
    views = [original] + [
        warp_numpy(original, np.broadcast_to(matrix, (len(images), 2, 3))) for matrix in TTA_VIEWS[:n_tta_views]
    ]
    return np.mean(
        [softmax(predict_logits(model=model, spec=spec, images=view, device=device), axis=1) for view in views], axis=0
    )


def score(
    model, spec: ModelSpec, split: ImageSet, device, class_names: tuple[str, ...], n_tta_views: int = 0
) -> TestScores:
    predicted = predict_probabilities(
        model=model, spec=spec, images=split.images, device=device, n_tta_views=n_tta_views
    ).argmax(axis=1)
    return TestScores(
        accuracy=float((predicted == split.labels).mean()),
        macro_f1=macro_f1(split.labels, predicted),
        confusion=confusion_matrix(split.labels, predicted, N_CLASSES),
        predicted=predicted.astype(np.int64),
        class_names=class_names,
    )


def n_parameters(model, spec: ModelSpec) -> int:
    if spec.model == ModelName.MLP_NUMPY:
        return model.n_parameters()
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def data_description(splits: Splits) -> dict[str, Any]:
    return {
        "dataset": splits.dataset,
        "source": splits.train.source,
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "n_test": len(splits.test),
    }


def run_model(
    spec: ModelSpec,
    splits: Splits,
    device,
    run_dir: Path,
    progress: ProgressCallback = no_progress,
    score_test: bool = True,
    n_tta_views: int = 0,
    identity: Identity | None = None,
) -> ModelRun:
    """Train, score and save one model into ``run_dir`` (config.json first, metrics.json last).

    With ``n_tta_views`` > 0 the validation split is scored with and without the test-time views
    (so the choice can be made on validation) and the test split with them. ``identity``: what a sweep
    reuses the folder under (common.artifacts), saved in config.json.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        run_dir / "config.json",
        stamp(
            {
                "spec": spec.to_dict(),
                "data": data_description(splits),
                "data_fingerprint": splits.fingerprint,
                "device": str(device),
                "n_tta_views": n_tta_views,
                **({"identity": identity.to_dict()} if identity else {}),
            }
        ),
    )
    model, history = train_model(spec=spec, splits=splits, device=device, progress=progress, task=spec.key())

    def scored(split: ImageSet, views: int) -> TestScores:
        return score(
            model=model, spec=spec, split=split, device=device, class_names=splits.class_names, n_tta_views=views
        )

    validation_accuracy = to_plain(history.epochs[-1].val_accuracy)  # nan only with no validation rows
    validation_accuracy_tta = None
    if n_tta_views and len(splits.val):  # with and without the views, scored alike (fp32), to choose between them
        validation_accuracy = scored(splits.val, 0).accuracy
        validation_accuracy_tta = scored(splits.val, n_tta_views).accuracy
    test = scored(splits.test, n_tta_views) if score_test else None
    save_weights(model, spec, run_dir)
    run = ModelRun(
        spec=spec,
        history=history,
        n_parameters=n_parameters(model, spec),
        validation_accuracy=validation_accuracy,
        test=test,
        run_dir=run_dir,
        n_tta_views=n_tta_views,
        validation_accuracy_tta=validation_accuracy_tta,
    )
    write_json(run_dir / "metrics.json", stamp(run.metrics()))
    return run
