"""The server's replay of local training reproduces the real client's update (fedsnn/core/training.py)."""

import copy

import pytest
import torch

from attacks.local_training import simulate_update
from attacks.types import LocalTraining
from fedsnn.core.training import batch_gradient, train_epochs
from fedsnn.core.models import ModelSpec, build_model

CASES = [("sgd", 0.0, 0.05), ("sgd", 0.9, 0.05), ("adam", 0.0, 0.003)]


def _data(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((n, 1, 28, 28), generator=generator), torch.randint(0, 10, (n,), generator=generator)


@pytest.mark.parametrize("model_name", ["lenet", "lenet-snn"])
@pytest.mark.parametrize(("optimizer", "momentum", "lr"), CASES)
def test_replay_with_the_true_data_and_shuffle_equals_the_real_update(model_name, optimizer,
                                                                       momentum, lr):
    # DLG init: spikes reach every layer, so every parameter moves (PyTorch init: the head of a
    # fresh lenet-snn sees no spike).
    model = build_model(ModelSpec(model_name, time_steps=2), seed=1, dlg_init=True)
    sent = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = _data()
    training = LocalTraining("fedavg", optimizer, lr, momentum, epochs=2, batch_size=5,
                             num_examples=len(x), shuffle_seed=1234)
    client = copy.deepcopy(model)
    result = train_epochs(client, x, y, epochs=2, batch_size=5, lr=lr, optimizer=optimizer,
                          momentum=momentum, seed=1234)
    assert result.steps == training.steps == 6
    real = {n: sent[n] - p.detach() for n, p in client.named_parameters()}
    simulated = simulate_update(model, sent, x, y, training)
    assert all(real[name].abs().max() > 0 for name in real)
    for name in real:
        torch.testing.assert_close(simulated[name], real[name], rtol=0, atol=1e-5)


def test_fedsgd_is_one_plain_step_on_the_whole_batch():
    model = build_model(ModelSpec("lenet"), seed=2)
    sent = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = _data(8)
    _, gradients = batch_gradient(copy.deepcopy(model), x, y)
    training = LocalTraining("gradient", "adam", 0.1, 0.0, epochs=5, batch_size=2, num_examples=8)
    simulated = simulate_update(model, sent, x, y, training)
    for name, gradient in gradients.items():
        torch.testing.assert_close(simulated[name], 0.1 * gradient, rtol=0, atol=1e-6)


def test_replayed_update_is_differentiable_in_the_inputs():
    model = build_model(ModelSpec("lenet-snn", time_steps=2), seed=3)
    sent = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = _data(4)
    x.requires_grad_(True)
    training = LocalTraining("fedavg", "adam", 0.01, 0.0, epochs=2, batch_size=2, num_examples=4)
    delta = simulate_update(model, sent, x, y, training, create_graph=True)
    (gradient,) = torch.autograd.grad(sum(d.square().sum() for d in delta.values()), x)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0


def test_a_smoothed_adam_replay_is_a_soft_sign_of_the_gradient_and_sgd_ignores_it():
    """`adam_eps_scale`: Adam's first step is lr * g / (|g| + eps); the client's eps (1e-8) makes
    it lr * sign(g), the smoothed one, eps = scale * mean |g| per tensor, a soft sign."""
    model = build_model(ModelSpec("lenet"), seed=2, dlg_init=True)
    sent = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = _data(8)
    _, gradients = batch_gradient(copy.deepcopy(model), x, y)
    adam = LocalTraining("fedavg", "adam", 0.01, 0.0, epochs=1, batch_size=8, num_examples=8)
    client = simulate_update(model, sent, x, y, adam)
    smoothed = simulate_update(model, sent, x, y, adam, adam_eps_scale=1.0)
    for name, g in gradients.items():
        moving = g.abs() > 1e-4  # where 1e-8 is negligible beside |g|
        torch.testing.assert_close(client[name][moving], 0.01 * g.sign()[moving], rtol=1e-3,
                                   atol=0)
        soft = 0.01 * g / (g.abs() + g.abs().mean() + 1e-8)
        torch.testing.assert_close(smoothed[name], soft, rtol=1e-3, atol=1e-7)
    sgd = LocalTraining("fedavg", "sgd", 0.01, 0.0, epochs=2, batch_size=4, num_examples=8)
    plain, ignored = (simulate_update(model, sent, x, y, sgd, adam_eps_scale=s) for s in (0, 1))
    assert all(torch.equal(plain[n], ignored[n]) for n in plain)
