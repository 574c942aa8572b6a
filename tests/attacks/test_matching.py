"""Gradient matching: the objective is zero at the client's data (same loss and reduction),
the distances and the TV prior behave."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from attacks import AttackSettings
from attacks.matching import (cosine_distance, l2_distance, matching_loss, rebuild_victim,
                              soft_cross_entropy, total_variation)
from tests.attacks.victims import Victim


@pytest.mark.parametrize("model_name", ["lenet", "lenet-snn", "lenet5", "lenet5-snn"])
def test_matching_loss_is_zero_at_the_clients_batch(model_name: str,
                                                    victim: Callable[..., Victim]) -> None:
    observation, x, y = victim(model_name, batch=3)
    rebuilt = rebuild_victim(observation)
    loss = matching_loss(rebuilt, x, lambda logits: F.cross_entropy(logits, y), AttackSettings())
    assert float(loss) < 1e-10
    one_hot = F.one_hot(y, 10).float()
    soft = matching_loss(rebuilt, x, lambda logits: soft_cross_entropy(logits, one_hot),
                         AttackSettings(distance="cosine"))
    assert abs(float(soft)) < 1e-5


def test_distances() -> None:
    a, b = [torch.ones(2, 2), torch.zeros(3)], [torch.zeros(2, 2), torch.ones(3)]
    assert float(l2_distance(a, b)) == 7.0  # no 0.5 factor
    assert abs(float(cosine_distance(a, a))) < 1e-6
    assert abs(float(cosine_distance(a, b)) - 1.0) < 1e-6


def test_total_variation() -> None:
    assert float(total_variation(torch.full((2, 1, 5, 5), 0.3))) == 0.0
    stripes = torch.zeros(1, 1, 4, 4)
    stripes[..., ::2] = 1.0
    assert float(total_variation(stripes)) == pytest.approx(2.0)  # 2 * (0 + mean 1)
    assert float(total_variation(stripes.expand(3, 1, 1, 4, 4))) == pytest.approx(6.0)


def test_a_budget_spent_before_the_first_step_returns_the_start_as_timeout() -> None:
    """Regression: a deadline already in the past used to raise IndexError."""
    import time as _time

    from attacks import AttackSettings, invert
    from fedsnn.core.training import batch_gradient
    from fedsnn.core.models import ModelSpec, build_model
    from attacks.types import Observation, Status

    spec = ModelSpec("lenet")
    model = build_model(spec, seed=0, dlg_init=True)
    x, y = torch.rand(1, 1, 28, 28), torch.tensor([3])
    _, grads = batch_gradient(model, x, y)
    observation = Observation("t", spec, model.state_dict(), grads)
    settings = AttackSettings(attack="idlg", iterations=5, time_budget_s=1e-9)
    _time.sleep(0.01)
    (reconstruction,) = invert([observation], settings)
    assert reconstruction.status in (Status.TIMEOUT, Status.OK)
    assert reconstruction.inputs.shape == (1, 1, 28, 28)
