"""Spike-domain adaptation: dummy shapes and inits, constraints, both thresholding modes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from attacks import AttackSettings, invert, spike_modality
from attacks.spiking import binarize_ste, dummy_shape, init_dummy, model_logits
from fedsnn.core.models import ModelSpec, build_model
from tests.attacks.victims import Victim


def test_dummy_shapes() -> None:
    ann, snn = ModelSpec("lenet"), ModelSpec("lenet-snn", time_steps=5)
    per_step = AttackSettings(time_mode="per-step")
    assert dummy_shape(ann, 2, per_step) == (2, 1, 28, 28)
    assert dummy_shape(snn, 2, AttackSettings()) == (2, 1, 28, 28)
    assert dummy_shape(snn, 2, per_step) == (5, 2, 1, 28, 28)


def test_gray_and_normal_inits() -> None:
    generator = torch.Generator().manual_seed(0)
    gray = init_dummy((4, 1, 28, 28), AttackSettings(), generator)
    assert gray.requires_grad and abs(float(gray.mean()) - 0.5) < 0.01 and float(gray.std()) < 0.02
    spikes = init_dummy((4, 4, 1, 28, 28), spike_modality(init_mean=0.1, init_std=0.05), generator)
    assert float(spikes.min()) >= 0.0  # non-negative, and no clamp at 1
    assert abs(float(spikes.mean()) - 0.1) < 0.01


def test_straight_through_binarization() -> None:
    x = torch.tensor([0.2, 0.5, 0.9], requires_grad=True)
    y = binarize_ste(x, 0.5)
    assert y.tolist() == [0.0, 1.0, 1.0]
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.tolist() == [1.0, 2.0, 3.0]


def test_replicated_dummy_equals_direct_encoding() -> None:
    model = build_model(ModelSpec("lenet-snn"), dlg_init=True, seed=0)
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(model_logits(model, x), model(x))


@pytest.mark.parametrize("attack", ["dlg", "idlg", "grnn"])
@pytest.mark.parametrize("mode", ["post", "in"])
def test_thresholding_returns_binary_spikes(attack: str, mode: str,
                                            victim: Callable[..., Victim]) -> None:
    observation, x, _ = victim("lenet-snn", time_steps=3)
    settings = spike_modality(AttackSettings(attack=attack, optimizer="adam", iterations=3),
                              threshold_mode=mode, threshold=0.1)
    (reconstruction,) = invert([observation], settings)
    assert reconstruction.inputs.shape == (3, *x.shape)
    assert set(reconstruction.inputs.unique().tolist()) <= {0.0, 1.0}
