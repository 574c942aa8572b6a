"""The rate-decoder experiment's client side: spike-DP and FedAvg replies reach the attacker as the
client pipeline produces them (experiments/rate_decoder.py)."""

from __future__ import annotations

from dataclasses import replace

import torch

from fedsnn.core.models import ModelSpec, build_model
from experiments.rate_decoder import SETTINGS, client_gradient
from fedsnn.core.training import batch_gradient

SPEC = ModelSpec(name="lenet-snn", in_channels=1, num_classes=10, image_size=28, time_steps=4)


def _victim() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    model = build_model(SPEC, dlg_init=True, seed=0, encoder_seed=0)
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return model, x, torch.tensor([3])


def test_one_local_sgd_step_gives_the_fedsgd_gradient_back() -> None:
    model, x, y = _victim()
    estimate, epsilon = client_gradient(replace(SETTINGS["snn"], local_steps=1), model, x, y, SPEC)
    expected = batch_gradient(model, x, y)[1]  # after: the client trains a copy, not the model
    assert epsilon is None
    for name, gradient in expected.items():
        torch.testing.assert_close(estimate[name], gradient, atol=1e-4, rtol=1e-3)


def test_more_local_steps_move_the_update_away_from_the_gradient() -> None:
    model, x, y = _victim()
    name = last_weight(model)
    estimate, _ = client_gradient(SETTINGS["snn-steps-20-p1000"], model, x, y, SPEC)
    expected = batch_gradient(model, x, y)[1][name]
    assert not torch.allclose(estimate[name], expected, atol=1e-4)


def test_spike_dp_trains_on_flipped_spikes_and_reports_the_per_sample_epsilon() -> None:
    model, x, y = _victim()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    noisy, epsilon = client_gradient(SETTINGS["snn-spikedp-1-p1000"], model, x, y, SPEC)
    clean = batch_gradient(model, x, y)[1]
    name = last_weight(model)
    assert not torch.allclose(noisy[name], clean[name])
    # per-sample ε of 3,136 bits at ε_bit = 1 is far above the per-bit figure
    assert epsilon is not None and epsilon > 100
    # the shared global model keeps its own (direct) encoder and weights
    assert type(model.encoder).__name__ != "FramesEncoder"
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def last_weight(model: torch.nn.Module) -> str:
    """The readout's weight (the head the attack reads the rate map from)."""
    return [name for name, _ in model.named_parameters() if name.endswith("weight")][-1]


def test_a_spike_dp_aware_attacker_privatizes_its_public_images_as_the_clients_are() -> None:
    from fedsnn.core.data import ImageData
    from experiments.rate_decoder import public_data

    images = torch.rand(50, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    labels = torch.zeros(50, dtype=torch.long)
    data = ImageData("toy", images, labels, images[:2], labels[:2], num_classes=10)
    public = public_data(SETTINGS["snn-spikedp-4-aware-p1000"], data, pool_ids=[])
    assert torch.equal(public.images, images)  # the decoder still learns the clean images
    assert public.inputs is not None and public.inputs.shape == (50, 4, 1, 28, 28)
    assert bool(((public.inputs == 0) | (public.inputs == 1)).all())
    # Poisson rates plus 1.8 % flips (ε_bit = 4): the spike rate follows the pixels, not a copy
    assert abs(float(public.inputs.mean()) - float(images.mean())) < 0.02
    assert public_data(SETTINGS["snn-spikedp-4-p1000"], data, pool_ids=[]).inputs is None
