"""GRNN end to end on ANN and SNN, and its generator's shapes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from attacks import AttackSettings, Status, invert
from attacks.grnn import Generator
from tests.attacks.victims import Victim


@pytest.mark.parametrize("model_name", ["lenet", "lenet-snn"])
def test_grnn_runs_end_to_end(model_name: str, victim: Callable[..., Victim]) -> None:
    observation, x, _ = victim(model_name, batch=2)
    settings = AttackSettings(attack="grnn", iterations=3, tv_weight=1e-3)
    (reconstruction,) = invert([observation], settings)
    assert reconstruction.status == Status.OK
    assert reconstruction.inputs.shape == x.shape
    assert torch.isfinite(reconstruction.inputs).all()
    assert ((reconstruction.inputs >= 0) & (reconstruction.inputs <= 1)).all()
    assert reconstruction.labels.shape == (2,)
    assert len(reconstruction.loss_history) == 3


def test_grnn_per_step_output_on_a_spiking_model(victim: Callable[..., Victim]) -> None:
    observation, x, _ = victim("lenet-snn", time_steps=2)
    settings = AttackSettings(attack="grnn", iterations=2, time_mode="per-step")
    (reconstruction,) = invert([observation], settings)
    assert reconstruction.inputs.shape == (2, *x.shape)


@pytest.mark.parametrize("size", [8, 28, 32])
def test_generator_covers_any_image_size(size: int) -> None:
    images, labels = Generator(16, 10, 3, size)(torch.randn(2, 16))
    assert images.shape == (2, 3, size, size)
    assert torch.allclose(labels.sum(-1), torch.ones(2))
