"""The shared training loop (training/) and the torch models."""

import numpy as np
import pytest
import torch
from torch import nn

from common import ConfigError
from training.config import ScheduleName, TrainConfig
from training.devices import cpu_threads, resolve_device
from training.loop import fit
from training.optimizer import make_optimizer
from training.predict import evaluate, predict
from vision.activations import Activation
from vision.numpy_mlp import MLP
from vision.specs import ModelName, build_model, load_weights, preset, save_weights
from vision.torch_nets import CNN, CNNConfig, TorchMLP, count_parameters


def blobs(n=200, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    centres = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    return centres[labels] + 0.5 * torch.randn(n, 2, generator=generator), labels


def test_fit_learns_from_tensors_and_from_a_dataloader():
    x, y = blobs()
    config = TrainConfig(n_epochs=5, batch_size=32, lr=0.1, schedule=ScheduleName.ONECYCLE)
    seen = []

    def progress(task, completed, total, **info):
        seen.append((completed, total, info.get("epoch")))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
    history = fit(model, (x, y), (x, y), nn.functional.cross_entropy, config, torch.device("cpu"), progress)
    assert len(history.epochs) == 5 and history.epochs[-1].val_accuracy > 0.95
    assert seen[-1][:2] == (5 * 7, 5 * 7) and seen[-1][2] == 5

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    torch.manual_seed(0)
    other = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
    history = fit(other, loader, loader, nn.functional.cross_entropy, config, torch.device("cpu"))
    assert history.epochs[-1].val_accuracy > 0.95


def test_fit_passes_dict_inputs_as_keyword_arguments_and_applies_the_batch_transform():
    class Keyed(nn.Module):  # like a Hugging Face model: forward(input_ids=..., mask=...)
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 3)

        def forward(self, features, scale):
            return self.linear(features * scale)

    x, y = blobs(64)
    batches = [({"features": x[i : i + 16], "scale": torch.ones(16, 1)}, y[i : i + 16]) for i in range(0, 64, 16)]
    calls = []

    def transform(inputs):
        calls.append(1)
        return inputs

    fit(
        Keyed(),
        batches,
        batches,
        nn.functional.cross_entropy,
        TrainConfig(n_epochs=2, lr=0.1),
        torch.device("cpu"),
        batch_transform=transform,
    )
    assert len(calls) == 8  # training batches only, never validation


def test_training_is_reproducible_and_weight_decay_skips_biases():
    x, y = blobs()
    config = TrainConfig(n_epochs=2, batch_size=50, lr=0.05, weight_decay=0.1)

    def run():
        torch.manual_seed(1)
        model = nn.Linear(2, 3)
        fit(model, (x, y), (x, y), nn.functional.cross_entropy, config, torch.device("cpu"))
        return model

    first, second = run(), run()
    torch.testing.assert_close(first.weight, second.weight, rtol=0, atol=0)
    optimizer, _ = make_optimizer(first, config, steps_per_epoch=4)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and [p.shape for p in decayed["params"]] == [first.weight.shape]
    assert plain["weight_decay"] == 0.0 and [p.shape for p in plain["params"]] == [first.bias.shape]
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        fit(nn.Linear(2, 3), (x, y), (x, y), nn.functional.cross_entropy, TrainConfig(n_epochs=0), torch.device("cpu"))


def test_divergence_is_reported():
    x, y = blobs()
    model = nn.Linear(2, 3)
    with pytest.raises(ConfigError, match="diverged"):
        fit(
            model,
            (x * 1e30, y),
            (x, y),
            nn.functional.cross_entropy,
            TrainConfig(n_epochs=1, lr=1e10),
            torch.device("cpu"),
        )


def test_torch_mlp_matches_numpy_mlp_forward():
    rng = np.random.default_rng(0)
    numpy_model = MLP(2, 20, Activation.GELU, rng, dtype=np.float64)
    twin = TorchMLP(2, 20, Activation.GELU).double()
    linears = [m for m in twin.net if isinstance(m, nn.Linear)]
    numpy_linears = [layer for layer in numpy_model.layers if hasattr(layer, "grads")]
    with torch.no_grad():
        for linear, layer in zip(linears, numpy_linears):
            linear.weight.copy_(torch.from_numpy(layer.params["W"].T))
            linear.bias.copy_(torch.from_numpy(layer.params["b"]))
    x = rng.random((5, 1, 28, 28))
    np.testing.assert_allclose(
        twin(torch.from_numpy(x)).detach().numpy(), numpy_model.forward(x.reshape(5, -1)), rtol=1e-10
    )
    assert count_parameters(twin) == numpy_model.n_parameters()


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_cnn_family_shapes(depth):
    model = CNN(CNNConfig(depth=depth, width=4, activation=Activation.ELU, batch_norm=depth % 2 == 0, dropout=0.2))
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert has_bn == (depth % 2 == 0)


def test_weights_round_trip_for_numpy_and_torch(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (4, 28, 28)).astype(np.float32) / 255
    for name in (ModelName.MLP_NUMPY, ModelName.CNN):
        spec = preset(name, depth=1, width=8)
        model = build_model(spec, 0.2, 0.3, seed=0)
        folder = tmp_path / name.value
        folder.mkdir()
        save_weights(model, spec, folder)
        loaded = load_weights(spec, folder)
        if name == ModelName.MLP_NUMPY:
            np.testing.assert_array_equal(loaded.forward(x.reshape(4, -1)), model.forward(x.reshape(4, -1)))
            assert loaded.input_mean == pytest.approx(0.2)
        else:
            model.eval(), loaded.eval()
            torch.testing.assert_close(
                loaded(torch.from_numpy(x).unsqueeze(1)), model(torch.from_numpy(x).unsqueeze(1))
            )


def test_predict_and_evaluate_keep_order():
    x, y = blobs(10)
    model = nn.Linear(2, 3)
    outputs = predict(model, (x, y), torch.device("cpu"), batch_size=3)
    torch.testing.assert_close(outputs, model(x).detach())
    loss, accuracy = evaluate(model, (x, y), nn.functional.cross_entropy, torch.device("cpu"), batch_size=4)
    assert loss == pytest.approx(float(nn.functional.cross_entropy(model(x), y).detach()), rel=1e-5)
    assert resolve_device("cpu").type == "cpu"


def test_cpu_threads_sets_and_restores_torch_and_blas_threads():
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    with cpu_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError, match=r"threads must lie in 1\.\."):
        with cpu_threads(0):
            pass


def test_the_weight_average_is_the_warmed_up_ema_of_the_trajectory_and_is_what_fit_evaluates_and_returns(tmp_path):
    from training.checkpoints import CheckpointDir
    from training.weights import checkpoint_weights

    x, y = blobs()
    config = TrainConfig(n_epochs=2, batch_size=50, lr=0.05, checkpoint_every=1)
    trajectory = {}

    def record(model):
        def progress(task, completed, total, **info):
            trajectory[completed] = {k: v.detach().double().clone() for k, v in model.state_dict().items()}

        return progress

    torch.manual_seed(1)
    plain = nn.Linear(2, 3)
    start = {k: v.detach().double().clone() for k, v in plain.state_dict().items()}
    fit(plain, (x, y), (x, y), nn.functional.cross_entropy, config, torch.device("cpu"), record(plain))
    expected = start
    for t, step in enumerate(sorted(trajectory)):  # decay min(0.5, t / (t + 2)) after t updates: both regimes
        decay = min(0.5, t / (t + 2))
        expected = {k: decay * expected[k] + (1 - decay) * trajectory[step][k] for k in expected}

    torch.manual_seed(1)
    averaged = nn.Linear(2, 3)
    checkpoints = CheckpointDir(tmp_path / "checkpoints", keep_last=1)
    history = fit(
        averaged,
        (x, y),
        (x, y),
        nn.functional.cross_entropy,
        TrainConfig(**{**config.__dict__, "ema_decay": 0.5}),
        torch.device("cpu"),
        checkpoints=checkpoints,
    )
    torch.manual_seed(1)
    slower = nn.Linear(2, 3)
    fit(
        slower,
        (x, y),
        (x, y),
        nn.functional.cross_entropy,
        TrainConfig(**{**config.__dict__, "ema_decay": 0.8}),
        torch.device("cpu"),
    )
    assert not torch.equal(slower.weight, averaged.weight)  # the decay is not drowned by the warm-up
    for name, value in averaged.state_dict().items():  # the model leaves fit holding the average
        torch.testing.assert_close(value.double(), expected[name], rtol=0, atol=1e-6)
        assert not torch.equal(value.double(), trajectory[max(trajectory)][name])  # not the last iterate
    # the validation score is the average's, and its checkpoint stands for the average too
    _, accuracy = evaluate(averaged, (x, y), nn.functional.cross_entropy, torch.device("cpu"))
    assert history.epochs[-1].val_accuracy == accuracy
    saved = checkpoints.load(checkpoints.last_step())
    assert all(torch.equal(checkpoint_weights(saved)[k], v) for k, v in averaged.state_dict().items())
    assert not torch.equal(saved["model"]["weight"], averaged.weight)  # the trained weights, for resuming
    with pytest.raises(ConfigError, match="EMA decay must lie in"):
        TrainConfig(ema_decay=1.0).check()


def test_a_checkpoint_and_a_run_that_disagree_on_the_weight_average_are_refused(tmp_path):
    from training.checkpoints import CheckpointDir

    x, y = blobs()
    config = TrainConfig(n_epochs=1, batch_size=50, lr=0.05, checkpoint_every=1)
    for written, resumed in ((0.5, None), (None, 0.5), (0.5, 0.8)):
        checkpoints = CheckpointDir(tmp_path / f"{written}-{resumed}", keep_last=1)
        train = TrainConfig(**{**config.__dict__, "ema_decay": written})
        fit(
            nn.Linear(2, 3),
            (x, y),
            (x, y),
            nn.functional.cross_entropy,
            train,
            torch.device("cpu"),
            checkpoints=checkpoints,
        )
        again = TrainConfig(**{**config.__dict__, "n_epochs": 2, "ema_decay": resumed})
        with pytest.raises(ConfigError, match="ema_decay"):
            fit(
                nn.Linear(2, 3),
                (x, y),
                (x, y),
                nn.functional.cross_entropy,
                again,
                torch.device("cpu"),
                checkpoints=checkpoints,
            )
