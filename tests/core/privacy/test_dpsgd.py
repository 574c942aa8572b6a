"""DP-SGD with Opacus: exact per-sample gradients for the spiking LeNet (batch_first=False), the
accountant's history carried across rounds, and the reported ε."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from opacus.accountants import RDPAccountant

from fedsnn.core.data import load_dataset
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.privacy.accounting import gaussian_epsilon
from fedsnn.core.privacy.dpsgd import (DpSgdSettings, per_sample_gradients, poisson_batch,
                                  private_epochs, private_gradient)


def loop_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, list]:
    out: dict[str, list] = {name: [] for name, _ in model.named_parameters()}
    for i in range(len(x)):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1], reduction="sum").backward()
        for name, parameter in model.named_parameters():
            out[name].append(parameter.grad.detach().clone())
    return out


@pytest.mark.parametrize("name", ["lenet-snn", "lenet"])
def test_opacus_per_sample_gradients_equal_a_one_sample_at_a_time_loop(name: str) -> None:
    spec = ModelSpec(name, neuron="lif")
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 3, 5, 9])
    batched = per_sample_gradients(build_model(spec, dlg_init=True, seed=1), x, y,
                                   batch_first=not spec.is_spiking)
    reference = loop_gradients(build_model(spec, dlg_init=True, seed=1), x, y)
    for key, grads in reference.items():
        assert batched[key].shape[0] == len(x)
        assert torch.allclose(batched[key], torch.stack(grads), atol=1e-5), key
    assert any(torch.stack(g).abs().max() > 1e-4 for g in reference.values())


def test_batch_first_true_silently_treats_time_steps_as_samples_for_the_snn() -> None:
    spec = ModelSpec("lenet-snn", time_steps=4)
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([1, 2, 3])
    wrong = per_sample_gradients(build_model(spec, seed=0), x, y, batch_first=True)
    assert next(iter(wrong.values())).shape[0] == 4  # T, not B: why spiking models need False


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset("digits", 16)
    return data.train_x[:96], data.train_y[:96]


def test_history_carried_across_rounds_accumulates_epsilon_to_the_target(digits) -> None:
    x, y = digits
    settings = DpSgdSettings(max_grad_norm=1.0, delta=1e-5, target_epsilon=4.0, total_epochs=2)
    model = build_model(ModelSpec("lenet", image_size=16), seed=0)
    first = private_epochs(model, x, y, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                           settings=settings, epochs=1, batch_size=16)
    second = private_epochs(model, x, y, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                            settings=settings, epochs=1, batch_size=16, history=first.history)
    assert 0 < first.epsilon < second.epsilon == pytest.approx(4.0, rel=0.02)
    assert first.noise_multiplier == second.noise_multiplier
    assert sum(steps for *_, steps in second.history) == first.steps + second.steps
    fresh = private_epochs(model, x, y, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                           settings=settings, epochs=1, batch_size=16)
    assert fresh.epsilon == pytest.approx(first.epsilon)  # without the history ε restarts: wrong


def independent_opacus_epsilon(history: list[tuple[float, float, int]], delta: float) -> float:
    accountant = RDPAccountant()
    accountant.history = list(history)
    return accountant.get_epsilon(delta)


def test_one_private_gradient_is_a_poisson_sampled_step_accounted_at_its_rate(digits) -> None:
    x, y = digits  # 96 samples, batch 16: q = 1/6
    settings = DpSgdSettings(max_grad_norm=0.5, delta=1e-5, noise_multiplier=2.0)
    model = build_model(ModelSpec("lenet-snn", image_size=16), seed=0)
    sizes = [len(poisson_batch(96, batch_size=16, generator=torch.Generator().manual_seed(s)))
             for s in range(200)]
    assert 14 < sum(sizes) / len(sizes) < 18 and len(set(sizes)) > 3  # Poisson, mean 16
    batch = poisson_batch(96, batch_size=16, generator=torch.Generator().manual_seed(3))
    gradients, outcome = private_gradient(model, x[batch], y[batch], settings=settings,
                                          num_samples=96, batch_size=16)
    assert set(gradients) == {name for name, _ in model.named_parameters()}
    assert outcome.history == [(2.0, pytest.approx(1 / 6), 1)]
    assert outcome.num_examples == 16  # the expected batch size, not the drawn one
    assert outcome.epsilon == pytest.approx(independent_opacus_epsilon([(2.0, 1 / 6, 1)], 1e-5),
                                            abs=1e-6)
    # noise std σC/E[B] per coordinate: far larger than a clipped per-sample gradient's share
    flat = torch.cat([g.flatten() for g in gradients.values()])
    assert flat.std() == pytest.approx(2.0 * 0.5 / 16, rel=0.1)
    empty, _ = private_gradient(model, x[:0], y[:0], settings=settings, num_samples=96,
                                batch_size=16)  # an empty draw: a noise-only step
    assert torch.cat([g.flatten() for g in empty.values()]).std() > 0


def test_fedsgd_rounds_compose_to_the_independent_accountants_epsilon(digits) -> None:
    """Ten FedSGD rounds, history carried: Opacus' ε equals an independent Opacus RDP accountant
    to 1e-6 and dp-accounting's Poisson-subsampled Gaussian to its order grid (1 %)."""
    x, y = digits
    settings = DpSgdSettings(max_grad_norm=1.0, delta=1e-5, target_epsilon=3.0, total_epochs=10)
    model = build_model(ModelSpec("lenet", image_size=16), seed=0)
    history: list = []
    for _ in range(10):
        batch = poisson_batch(96, batch_size=16)
        _, outcome = private_gradient(model, x[batch], y[batch], settings=settings,
                                      num_samples=96, batch_size=16, history=history)
        history = outcome.history
    (sigma, rate, steps), = history
    assert (rate, steps) == (pytest.approx(1 / 6), 10)
    assert outcome.epsilon == pytest.approx(independent_opacus_epsilon(history, 1e-5), abs=1e-6)
    assert outcome.epsilon == pytest.approx(3.0, rel=0.02)  # σ calibrated for 10 steps at q
    reference = gaussian_epsilon(noise_multiplier=sigma, releases=10, delta=1e-5, sample_rate=rate)
    assert outcome.epsilon == pytest.approx(reference, rel=0.01)
