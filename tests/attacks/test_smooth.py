"""Smooth-surrogate annealing and the encoder-aware parametrization."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import surrogate

from attacks import AttackSettings, Observation, Status, invert
from attacks.matching import rebuild_victim
from attacks.parametrize import encoder_aware, parametrization, sample_spikes_ste
from attacks.smooth import SmoothSpike, sharpness_schedule, smooth_copy
from fedsnn.core.training import batch_gradient
from fedsnn.core.models import ModelSpec, build_model


def _observation(spec: ModelSpec, seed: int = 0) -> tuple[Observation, torch.Tensor]:
    model = build_model(spec, dlg_init=True, seed=seed)
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    _, gradients = batch_gradient(model, x, torch.tensor([3]))
    return Observation("client", spec, model.state_dict(), gradients), x


def test_smooth_spike_has_the_sigmoid_value_and_the_victims_surrogate_gradient() -> None:
    base = surrogate.ATan()
    u = torch.linspace(-1, 1, 9, requires_grad=True)
    spike = SmoothSpike(base, sharpness=5.0)(u)
    assert torch.allclose(spike, torch.sigmoid(5.0 * u))
    (grad,) = torch.autograd.grad(spike.sum(), u)
    v = u.detach().clone().requires_grad_(True)
    base(v).sum().backward()
    assert torch.allclose(grad, v.grad)


@pytest.mark.parametrize("neuron", ["if", "lif"])
def test_at_a_hard_threshold_the_copy_has_the_victims_gradients(neuron: str) -> None:
    observation, x = _observation(ModelSpec("lenet-snn", neuron=neuron))
    copy = rebuild_victim(observation)
    smooth_copy(copy, sharpness=1e9)
    copy.model.zero_grad()
    torch.nn.functional.cross_entropy(copy.model(x), torch.tensor([3])).backward()
    for name, parameter in copy.model.named_parameters():
        assert torch.allclose(parameter.grad, observation.gradients[name], atol=1e-5), name


def test_the_smoothed_loss_moves_continuously_with_the_input() -> None:
    observation, _ = _observation(ModelSpec("lenet-snn"))
    copy = rebuild_victim(observation)
    smooth_copy(copy, sharpness=4.0)
    direction = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    losses = []
    for step in (0.0, 1e-4, 2e-4):
        x = (0.5 + step * direction).requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(copy.model(x), torch.tensor([3]))
        losses.append(float(loss))
    assert losses[0] != losses[1] != losses[2]
    assert abs(losses[2] - losses[1]) < 1e-2


def test_schedule_is_geometric_between_the_endpoints() -> None:
    ks = sharpness_schedule(AttackSettings(smooth_k_start=2.0, smooth_k_end=32.0, smooth_stages=5))
    assert ks == pytest.approx([2.0, 4.0, 8.0, 16.0, 32.0])


def test_smooth_attack_runs_on_a_spiking_victim_and_refuses_an_ann() -> None:
    observation, _ = _observation(ModelSpec("lenet-snn"))
    settings = AttackSettings(attack="smooth", iterations=3, smooth_stages=3, line_search=True,
                              lbfgs_max_eval=5)
    reconstruction = invert([observation], settings)[0]
    assert reconstruction.status == Status.OK and reconstruction.attack == "smooth"
    assert reconstruction.inputs.shape == (1, 1, 28, 28)
    assert 0.0 <= float(reconstruction.inputs.min()) and float(reconstruction.inputs.max()) <= 1.0
    assert torch.isfinite(torch.tensor(reconstruction.matching_loss))
    ann, _ = _observation(ModelSpec("lenet"))
    failed = invert([ann], settings)[0]
    assert failed.status == Status.FAILED and "spiking" in failed.message


def test_poisson_rates_are_fed_as_expected_spikes_or_straight_through_samples() -> None:
    spec = ModelSpec("mlp-snn", encoding="poisson", time_steps=6)
    generator = torch.Generator().manual_seed(0)
    rates = torch.full((2, 1, 28, 28), 0.3, requires_grad=True)
    expected = parametrization(spec, 2, AttackSettings(), generator)
    assert expected.shape == (2, 1, 28, 28) and expected.to_model_input(rates) is rates
    sampled = parametrization(spec, 2, AttackSettings(rate_mode="sample"), generator)
    spikes = sampled.to_model_input(rates)
    assert spikes.shape == (6, 2, 1, 28, 28) and set(spikes.unique().tolist()) <= {0.0, 1.0}
    spikes.sum().backward()
    assert torch.equal(rates.grad, torch.full_like(rates, 6.0))  # straight through, T steps
    noise = torch.rand(6, 2, 1, 28, 28, generator=generator)
    assert torch.equal(sample_spikes_ste(rates.detach(), noise), (noise < 0.3).float())


def test_encoder_aware_settings_pick_the_dummy_of_the_encoding() -> None:
    settings = AttackSettings(attack="idlg", time_mode="per-step")
    assert encoder_aware(ModelSpec("lenet-snn"), settings).time_mode == "shared"
    assert encoder_aware(ModelSpec("lenet-snn", encoding="poisson"), settings).time_mode == "shared"
    frames = encoder_aware(ModelSpec("lenet-snn", encoding="frames"), settings)
    assert frames.time_mode == "per-step" and frames.non_negative and not frames.clamp
    assert parametrization(ModelSpec("lenet-snn", encoding="frames"), 1, settings,
                           torch.Generator()).shape == (4, 1, 1, 28, 28)
