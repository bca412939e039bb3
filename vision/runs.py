"""Vision run folders: where they go and what they carry (names and staging: ``common.runs``)."""

from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common import __version__
from common.paths import mlx_home
from common.schema import read_checked_json


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
