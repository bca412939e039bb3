"""Checkpoints load with ``torch.load(weights_only=True)`` (issue 20, mechanism 4): no checkpoint can
run code, a damaged one is one line naming it, and resume stays exact."""

import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn

from common.errors import StoreError
from training.checkpoints import CheckpointDir
from training.config import OptimizerName, ScheduleName, TrainConfig
from training.loop import fit
from training.resume import restore_rng_state, rng_state


def blobs(n=120, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    centres = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    return centres[labels] + 0.5 * torch.randn(n, 2, generator=generator), labels


class _Crash(Exception):
    pass


def _train(checkpoints, config, crash_at=None):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = blobs()

    def progress(task, completed, total, **info):
        if crash_at is not None and completed == crash_at:
            raise _Crash

    fit(
        model,
        (x, y),
        (x, y),
        nn.functional.cross_entropy,
        config,
        torch.device("cpu"),
        progress,
        checkpoints=checkpoints,
    )
    return model


@pytest.mark.parametrize(
    "options",
    [
        dict(optimizer=OptimizerName.SGD, schedule=ScheduleName.ONECYCLE),
        dict(optimizer=OptimizerName.ADAMW, schedule=ScheduleName.LINEAR, ema_decay=0.5),
        dict(optimizer=OptimizerName.ADAMW, schedule=ScheduleName.COSINE),
        dict(optimizer=OptimizerName.SGD, schedule=ScheduleName.CONSTANT),
    ],
)
def test_every_checkpoint_the_loop_writes_loads_weights_only_and_resumes_exactly(tmp_path, options):
    config = TrainConfig(n_epochs=3, batch_size=16, lr=0.05, checkpoint_every=2, **options)
    reference = _train(CheckpointDir(tmp_path / "reference"), config)
    crashed = CheckpointDir(tmp_path / "crashed")
    with pytest.raises(_Crash):
        _train(crashed, config, crash_at=13)
    for step in crashed.steps():  # plain tensors and containers only
        saved = torch.load(crashed.path(step), map_location="cpu", weights_only=True)
        assert isinstance(saved["rng"][0]["numpy"]["key"], torch.Tensor)
    resumed = _train(crashed, config)
    for name, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def _draws(generator):
    """One draw from each generator a run uses."""
    return (
        random.random(),
        random.gauss(0, 1),
        np.random.standard_normal(3),
        torch.rand(3),
        torch.rand(2, generator=generator),
    )


def test_every_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    generator = torch.Generator().manual_seed(5)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # a cached Gaussian is part of NumPy's legacy state
    random.gauss(0, 1)
    torch.save(rng_state(generator), tmp_path / "rng.pt")
    expected = _draws(generator)
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    generator.manual_seed(9)
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True), generator)
    again = _draws(generator)
    assert expected[:2] == again[:2]
    assert np.array_equal(expected[2], again[2])
    assert torch.equal(expected[3], again[3]) and torch.equal(expected[4], again[4])


class _Payload:
    """A pickle that runs code when loaded (issue 20, failure 7)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickle(marker):
    return pickle.dumps({"model": _Payload(marker)})


def _torch_pickle(marker):
    import io

    stream = io.BytesIO()
    torch.save({"model": _Payload(marker)}, stream)
    return stream.getvalue()


DAMAGED = {
    "a plain pickle that runs code": _pickle,
    "a torch file that runs code": _torch_pickle,
    "random bytes": lambda marker: np.random.default_rng(0).bytes(4096),
    "empty": lambda marker: b"",
    "JSON": lambda marker: b'{"model": {}}',
}


@pytest.mark.parametrize("defect", sorted(DAMAGED))
def test_a_damaged_or_hostile_newest_checkpoint_is_one_line_and_runs_no_code(tmp_path, defect):
    config = TrainConfig(n_epochs=2, batch_size=16, lr=0.05, checkpoint_every=2)
    checkpoints = CheckpointDir(tmp_path / "c")
    with pytest.raises(_Crash):
        _train(checkpoints, config, crash_at=5)
    marker = tmp_path / "pwned"
    newest = checkpoints.path(checkpoints.last_step() + 100)
    newest.write_bytes(DAMAGED[defect](marker))
    with pytest.raises(StoreError) as caught:
        _train(checkpoints, config)
    assert not marker.exists()
    message = str(caught.value)
    assert str(newest) in message and "\n" not in message and "delete it" in message


def test_a_truncated_checkpoint_is_one_line(tmp_path):
    config = TrainConfig(n_epochs=2, batch_size=16, lr=0.05, checkpoint_every=2)
    checkpoints = CheckpointDir(tmp_path / "c")
    with pytest.raises(_Crash):
        _train(checkpoints, config, crash_at=5)
    newest = checkpoints.path(checkpoints.last_step())
    newest.write_bytes(newest.read_bytes()[:3000])
    with pytest.raises(StoreError, match="cannot be read"):
        _train(checkpoints, config)


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: [s],  # a list, not a checkpoint
        lambda s: {k: v for k, v in s.items() if k != "rng"},  # a key missing
        lambda s: {**s, "loop": {**s["loop"], "step": "7"}},  # a wrong type
        lambda s: {**s, "loop": {**s["loop"], "surprise": 1}},  # an unknown key
        lambda s: {**s, "model": {"weight": torch.zeros(1)}},  # weights of another model
        lambda s: {**s, "rng": []},
    ],
    ids=["list", "missing key", "wrong type", "unknown key", "other model", "no rng"],
)
def test_a_checkpoint_of_the_wrong_shape_is_one_line(tmp_path, damage):
    config = TrainConfig(n_epochs=2, batch_size=16, lr=0.05, checkpoint_every=2)
    checkpoints = CheckpointDir(tmp_path / "c")
    with pytest.raises(_Crash):
        _train(checkpoints, config, crash_at=5)
    newest = checkpoints.path(checkpoints.last_step())
    torch.save(damage(torch.load(newest, weights_only=True)), newest)
    with pytest.raises(StoreError) as caught:
        _train(checkpoints, config)
    assert str(newest) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "content", ["not json", "[1]", '{"step": "x", "file": "a"}', '{"file": "a"}', '{"step": 2, "file": "a", "more": 1}']
)
def test_a_damaged_best_json_is_one_line(tmp_path, content):
    checkpoints = CheckpointDir(tmp_path / "c")
    checkpoints.save({"step": torch.tensor(2)}, 2, best=True)
    (checkpoints.folder / "best.json").write_text(content)
    with pytest.raises(StoreError, match="best.json"):
        checkpoints.best_step()
