"""Vectorized GRNN (attacks/batched_grnn.py) against one generator at a time (attacks/grnn.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attacks import AttackSettings, Observation, Status, invert, spike_modality
from attacks.batched import invert_batched, supports
from tests.attacks.victims import observe

GRNN = AttackSettings(attack="grnn", iterations=20, tv_weight=1e-3, stop_loss=1e-7)


def targets(digits: tuple[torch.Tensor, torch.Tensor], model: str, n: int = 4, batch: int = 1
            ) -> list[Observation]:
    x, y = digits
    return [observe(model, x[batch * i:batch * (i + 1)], y[batch * i:batch * (i + 1)], seed=i)
            for i in range(n)]


def assert_same(one, many) -> None:
    """The same run up to float noise: target, status, steps, loss curve, images, labels."""
    assert many.target_id == one.target_id and many.status == one.status
    assert len(many.loss_history) == len(one.loss_history)
    torch.testing.assert_close(torch.tensor(many.loss_history), torch.tensor(one.loss_history),
                               rtol=2e-3, atol=1e-6)
    torch.testing.assert_close(many.inputs, one.inputs, rtol=0, atol=5e-3)
    assert torch.equal(many.labels, one.labels)
    assert many.matching_loss == pytest.approx(one.matching_loss, rel=2e-3)


@pytest.mark.parametrize("model,batch", [("lenet", 1), ("lenet-snn", 1), ("lenet", 2)])
def test_each_target_gets_its_one_at_a_time_result(digits, model, batch):
    observations = targets(digits, model, batch=batch)
    single = invert(observations, GRNN)
    batched = invert(observations, GRNN, vectorize=True)
    for one, many in zip(single, batched, strict=True):
        assert_same(one, many)


def test_per_step_dummies_of_the_spike_modality(digits):
    # an IF network's loss jumps where a spike flips, so float noise is compared over 3 steps only
    observations = targets(digits, "lenet-snn", n=2)
    settings = spike_modality(GRNN, iterations=3)
    single, batched = invert(observations, settings), invert_batched(observations, settings)
    assert batched[0].inputs.shape == (4, 1, 1, 28, 28)
    for one, many in zip(single, batched, strict=True):
        assert_same(one, many)


def test_early_stop_and_restarts_are_per_target(digits):
    observations = targets(digits, "lenet", n=3)
    settings = GRNN.with_(iterations=6, restarts=2, stop_loss=None, accept_loss=1e-9)
    single, batched = invert(observations, settings), invert_batched(observations, settings, max_batch=2)
    for one, many in zip(single, batched, strict=True):
        assert many.restart == one.restart
        assert_same(one, many)


def test_a_diverging_target_does_not_disturb_the_others(digits):
    observations = targets(digits, "lenet")
    broken = dataclasses.replace(observations[1], gradients={
        name: torch.full_like(g, float("nan")) for name, g in observations[1].gradients.items()})
    settings = GRNN.with_(iterations=4)
    clean = invert_batched(observations, settings)
    mixed = invert_batched([observations[0], broken, *observations[2:]], settings)
    assert mixed[1].status == Status.DIVERGED and torch.isfinite(mixed[1].inputs).all()
    for i in (0, 2, 3):
        assert mixed[i].loss_history == pytest.approx(clean[i].loss_history, rel=1e-5)


def test_lbfgs_generators_stay_one_at_a_time(digits):
    assert supports(GRNN) and not supports(GRNN.with_(grnn_optimizer="lbfgs"))
    observations = targets(digits, "lenet", n=1)
    settings = GRNN.with_(iterations=2, grnn_optimizer="lbfgs")
    assert invert(observations, settings, vectorize=True)[0].status == Status.OK
