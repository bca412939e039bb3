"""The NumPy MLP against finite differences and PyTorch autograd (float64), its optimiser and training."""

import dataclasses

import numpy as np
import pytest
import torch
from typer.testing import CliRunner
from vision_helpers import tiny_images

from cli.main import app
from common import ConfigError
from training.config import ScheduleName, TrainConfig
from training.optimizer import make_optimizer
from vision.activations import Activation
from vision.augment import AugmentConfig, augment_numpy, stroke_numpy, torch_augmenter
from vision.gradcheck import GradcheckConfig, run_gradcheck
from vision.numpy_mlp import MLP, SGD, ReLU
from vision.numpy_train import NUMPY_SCHEDULES, fit_numpy, lr_at
from vision.specs import PRESETS, ModelName
from vision.torch_nets import TorchMLP

runner = CliRunner()


@pytest.mark.parametrize("activation", list(Activation))
def test_gradients_match_central_differences(activation):
    result = run_gradcheck(
        GradcheckConfig(depth=2, width=8, activation=activation, l2=1e-2, n_inputs=20, max_entries=60)
    )
    assert result.passed, [(t.name, t.relative_error) for t in result.tensors]
    assert [t.name for t in result.tensors] == ["layer0.W", "layer0.b", "layer1.W", "layer1.b", "layer2.W", "layer2.b"]


def torch_copy(model: MLP, activation: Activation) -> TorchMLP:
    """A float64 TorchMLP holding exactly the NumPy model's weights (nn.Linear stores W transposed)."""
    depth = sum(1 for name, _, _ in model.named_parameters() if name.endswith(".W")) - 1
    width = model.layers[0].params["W"].shape[1]
    twin = TorchMLP(depth, width, activation, n_inputs=model.layers[0].params["W"].shape[0]).double()
    linears = [m for m in twin.net if isinstance(m, torch.nn.Linear)]
    numpy_linears = [layer for layer in model.layers if hasattr(layer, "grads")]
    with torch.no_grad():
        for linear, layer in zip(linears, numpy_linears):
            linear.weight.copy_(torch.from_numpy(layer.params["W"].T))
            linear.bias.copy_(torch.from_numpy(layer.params["b"]))
    return twin


@pytest.mark.parametrize("activation", list(Activation))
@pytest.mark.parametrize("depth", [1, 3])
def test_gradients_match_pytorch_autograd(activation, depth):
    rng = np.random.default_rng(1)
    l2 = 1e-2
    model = MLP(depth, 12, activation, rng, l2=l2, n_inputs=30, dtype=np.float64)
    x = rng.standard_normal((16, 30))  # (B, D)
    labels = rng.integers(0, 10, 16)
    loss = model.loss(x, labels)
    model.backward()

    twin = torch_copy(model, activation)
    logits = twin(torch.from_numpy(x))
    weights = [m.weight for m in twin.net if isinstance(m, torch.nn.Linear)]
    torch_loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels)) + 0.5 * l2 * sum(
        (w**2).sum() for w in weights
    )
    torch_loss.backward()

    assert loss == pytest.approx(float(torch_loss.detach()), rel=1e-12)
    linears = [m for m in twin.net if isinstance(m, torch.nn.Linear)]
    grads = {name: g for name, _, g in model.named_parameters()}
    for i, linear in enumerate(linears):
        np.testing.assert_allclose(grads[f"layer{i}.W"], linear.weight.grad.numpy().T, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grads[f"layer{i}.b"], linear.bias.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_sgd_momentum_matches_torch():
    rng = np.random.default_rng(2)
    model = MLP(1, 6, Activation.TANH, rng, n_inputs=5, dtype=np.float64)
    twin = torch_copy(model, Activation.TANH)
    optimizer = SGD(model, momentum=0.9)
    torch_optimizer = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        x, labels = rng.standard_normal((4, 5)), rng.integers(0, 10, 4)
        model.loss(x, labels)
        model.backward()
        optimizer.step(0.1)
        torch_optimizer.zero_grad()
        torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(labels)).backward()
        torch_optimizer.step()
    first = [m for m in twin.net if isinstance(m, torch.nn.Linear)][0]
    np.testing.assert_allclose(model.layers[0].params["W"], first.weight.detach().numpy().T, rtol=1e-10)


def test_training_is_float32_seeded_and_learns():
    images, labels = tiny_images(300, seed=0)
    x = images.astype(np.float32) / 255
    y = labels.astype(np.int64)
    config = TrainConfig(n_epochs=4, batch_size=32, lr=0.05)

    def train(seed):
        model = MLP(2, 32, Activation.RELU, np.random.default_rng(seed), l2=1e-4)
        history = fit_numpy(model, (x[:240], y[:240]), (x[240:], y[240:]), config, np.random.default_rng(seed))
        return model, history

    model, history = train(0)
    assert all(p.dtype == np.float32 for _, p, _ in model.named_parameters())
    assert history.epochs[-1].val_accuracy > 0.9
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss
    again, _ = train(0)
    np.testing.assert_array_equal(model.layers[0].params["W"], again.layers[0].params["W"])


def test_numpy_and_torch_augmentation_agree():
    images, _ = tiny_images(6, seed=3)
    x = images.astype(np.float32) / 255
    config = AugmentConfig(max_shift_px=2.5, max_rotation_deg=15, max_scale=0.1, elastic_px=1.5, stroke_prob=0.3)
    warped = augment_numpy(x, config, np.random.default_rng(7))
    warped_torch = torch_augmenter(config, seed=7)(torch.from_numpy(x).unsqueeze(1)).squeeze(1).numpy()
    assert not np.allclose(warped, x)
    np.testing.assert_allclose(warped, warped_torch, atol=1e-4)


def test_stroke_width_changes_match_torch_pooling():
    images, _ = tiny_images(4, seed=5)
    x = images.astype(np.float32) / 255
    ops = np.array([1, -1, 0, 1])
    changed = stroke_numpy(x, ops)
    tx = torch.from_numpy(x).unsqueeze(1)
    np.testing.assert_allclose(changed[0], torch.nn.functional.max_pool2d(tx, 3, 1, 1)[0, 0].numpy())
    np.testing.assert_allclose(changed[1], -torch.nn.functional.max_pool2d(-tx, 3, 1, 1)[1, 0].numpy())
    np.testing.assert_array_equal(changed[2], x[2])
    assert changed[0].sum() > x[0].sum() > changed[1].sum()


def test_pure_integer_shift_moves_pixels():
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 10, 10] = 1.0
    config = AugmentConfig(max_shift_px=3.0)

    class FixedShift:  # a Generator stand-in: uniform() returns the upper bound → shift of +3 px
        def uniform(self, low, high, size):
            return np.full(size, high, dtype=np.float64)

    moved = augment_numpy(image, config, FixedShift())
    # The matrix maps output to input offsets: output (r, c) reads input (r + 3, c + 3).
    assert moved[0, 7, 7] == pytest.approx(1.0)
    assert moved.sum() == pytest.approx(1.0)


def test_gradcheck_cli_passes_and_fails(monkeypatch):
    ok = runner.invoke(app, ["vision", "gradcheck", "--depth", "2", "--width", "6", "--activation", "relu"])
    assert ok.exit_code == 0, ok.output
    assert "layer2.W" in ok.output and "NO" not in ok.output

    monkeypatch.setattr(ReLU, "backward", lambda self, grad_out: grad_out)  # drop the mask: wrong gradients
    bad = runner.invoke(app, ["vision", "gradcheck", "--depth", "2", "--width", "6", "--activation", "relu"])
    assert bad.exit_code == 1
    assert "gradient check failed" in bad.output


@pytest.mark.parametrize("schedule", NUMPY_SCHEDULES)
@pytest.mark.parametrize("n_epochs, steps_per_epoch", [(1, 7), (3, 5), (40, 50)])
def test_lr_at_matches_torch_scheduler_step_by_step(schedule, n_epochs, steps_per_epoch):
    config = TrainConfig(n_epochs=n_epochs, lr=0.05, schedule=schedule)
    optimizer, scheduler = make_optimizer(torch.nn.Linear(2, 2), config, steps_per_epoch)
    total_steps = n_epochs * steps_per_epoch
    for step in range(total_steps):
        torch_lr = optimizer.param_groups[0]["lr"]  # the LR optimizer.step() uses at this step
        assert lr_at(config, step, total_steps) == pytest.approx(torch_lr, rel=1e-9, abs=1e-12), step
        optimizer.step()
        scheduler.step()


def test_numpy_mlp_refuses_schedules_it_does_not_reproduce():
    assert ScheduleName.ONECYCLE not in NUMPY_SCHEDULES  # torch's OneCycleLR also cycles momentum
    config = TrainConfig(schedule=ScheduleName.ONECYCLE)
    with pytest.raises(ConfigError, match="NumPy MLP supports the schedules constant, cosine, not onecycle"):
        lr_at(config, 0, 10)
    x, y = np.zeros((4, 28, 28), np.float32), np.zeros(4, np.int64)
    model = MLP(1, 4, Activation.RELU, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="not onecycle"):
        fit_numpy(model, (x, y), (x, y), config, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="not onecycle"):
        dataclasses.replace(PRESETS[ModelName.MLP_NUMPY], train=config).check()
    dataclasses.replace(PRESETS[ModelName.MLP_TORCH], train=config).check()  # torch models run OneCycleLR itself
