"""The optimization loop's learning-rate schedule and plateau stop (attacks/matching.py
`optimize`, settings in attacks/settings.py): what a run actually does step by step."""

from __future__ import annotations

import math

import pytest
import torch

from attacks import AttackSettings, AttackSettingsError
from attacks.matching import optimize
from attacks.progress import watch


@pytest.mark.parametrize("changes", [dict(lr_schedule="step"), dict(lr_warmup=-1),
                                     dict(lr_final=1.5), dict(lr_final=-0.1),
                                     dict(plateau_window=-5), dict(plateau_tol=1.0)])
def test_invalid_schedule_and_plateau_settings_name_the_field(changes: dict) -> None:
    (field,) = changes
    with pytest.raises(AttackSettingsError, match=field):
        AttackSettings(**changes)


def test_the_cosine_schedule_warms_up_then_decays_to_its_floor() -> None:
    settings = AttackSettings(optimizer="adam", lr=0.4, iterations=21, lr_schedule="cosine",
                              lr_warmup=4, lr_final=0.05)
    rates = [settings.lr_at(step) for step in range(21)]
    assert rates[:4] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert rates[4] == pytest.approx(0.4) and rates[-1] == pytest.approx(0.02)
    assert all(a >= b for a, b in zip(rates[4:], rates[5:]))  # non-increasing after warm-up
    assert AttackSettings(optimizer="adam", iterations=21).lr_at(20) == pytest.approx(0.1)


def _linear_run(settings: AttackSettings) -> list[float]:
    """Adam on loss = sum(x): every step moves x by the step's learning rate (m / sqrt(v) = 1
    for a constant gradient), so the moves are the learning rates the loop used."""
    x = torch.zeros(3, requires_grad=True)
    positions = []

    def objective() -> tuple[torch.Tensor, torch.Tensor]:
        return x.sum() + 10.0, x.detach().clone()  # never 0 (a 0 loss ends the run)

    with watch(lambda step: positions.append(float(x.detach()[0])) or True):
        optimize([x], objective, settings)
    return [a - b for a, b in zip([0.0] + positions, positions)]


def test_the_loop_steps_with_the_scheduled_learning_rate() -> None:
    scheduled = AttackSettings(optimizer="adam", lr=0.3, iterations=12, lr_schedule="cosine",
                               lr_warmup=2, lr_final=0.0)
    moves = _linear_run(scheduled)
    assert moves == pytest.approx([scheduled.lr_at(i) for i in range(12)], rel=1e-4, abs=1e-6)
    assert moves[-1] == pytest.approx(0.0, abs=1e-6)
    constant = _linear_run(scheduled.with_(lr_schedule="constant"))
    assert constant == pytest.approx([0.3] * 12, rel=1e-4)


def test_a_plateaued_loss_stops_the_run_and_an_improving_one_does_not() -> None:
    x = torch.zeros(1, requires_grad=True)
    values = iter([5.0, 4.0, 3.0, 2.0] + [2.0] * 100)  # flat from the fourth step on

    def flat() -> tuple[torch.Tensor, torch.Tensor]:
        return x.sum() * 0 + next(values), x.detach().clone()

    settings = AttackSettings(optimizer="adam", iterations=100, plateau_window=5,
                              plateau_tol=0.01)
    outcome = optimize([x], flat, settings)
    # steps 5..9 bring nothing below the best of steps 0..4 (2.0): stop after 10 steps
    assert len(outcome.history) == 10 and "plateaued" in outcome.message
    falling = iter(math.exp(-0.1 * i) for i in range(100))
    outcome = optimize([x], lambda: (x.sum() * 0 + next(falling), x.detach().clone()),
                       settings)
    assert len(outcome.history) == 100 and "plateaued" not in outcome.message
    off = iter([1.0] * 100)
    outcome = optimize([x], lambda: (x.sum() * 0 + next(off), x.detach().clone()),
                       settings.with_(plateau_window=0))
    assert len(outcome.history) == 100
