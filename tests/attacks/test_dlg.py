"""DLG end to end on ANN and SNN, and the loop's failure handling (non-finite, time budget)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from attacks import AttackSettings, Observation, Status, invert
from tests.attacks.victims import Victim


@pytest.mark.parametrize("model_name, optimizer", [("lenet", "lbfgs"), ("lenet", "adam"),
                                                   ("lenet-snn", "lbfgs"), ("lenet-snn", "adam")])
def test_dlg_runs_end_to_end(model_name: str, optimizer: str, victim: Callable[..., Victim]) -> None:
    observation, x, _ = victim(model_name, batch=2)
    settings = AttackSettings(attack="dlg", optimizer=optimizer, iterations=3, lbfgs_max_eval=4)
    (reconstruction,) = invert([observation], settings)
    assert reconstruction.status in (Status.OK,)
    assert reconstruction.inputs.shape == x.shape
    assert torch.isfinite(reconstruction.inputs).all()
    assert reconstruction.labels.shape == (2,)
    assert 0 <= reconstruction.matching_loss < float("inf")
    assert 1 <= len(reconstruction.loss_history) <= 3


def test_dlg_per_step_dummy_on_a_spiking_model(victim: Callable[..., Victim]) -> None:
    observation, x, _ = victim("lenet-snn", time_steps=3)
    settings = AttackSettings(attack="dlg", optimizer="adam", iterations=2, time_mode="per-step")
    (reconstruction,) = invert([observation], settings)
    assert reconstruction.inputs.shape == (3, *x.shape)
    assert torch.isfinite(reconstruction.inputs).all()


def test_several_observations_give_one_reconstruction_each(victim: Callable[..., Victim]) -> None:
    observations = [victim("lenet", index=i, seed=i)[0] for i in range(3)]
    reconstructions = invert(observations, AttackSettings(attack="idlg", optimizer="adam",
                                                          iterations=2))
    assert [r.target_id for r in reconstructions] == [o.target_id for o in observations]


def test_non_finite_gradients_are_marked_not_raised(victim: Callable[..., Victim]) -> None:
    observation, x, _ = victim("lenet")
    poisoned = {k: torch.full_like(v, float("nan")) for k, v in observation.gradients.items()}
    observation = Observation("nan", observation.model_spec, observation.global_state, poisoned)
    (reconstruction,) = invert([observation], AttackSettings(attack="dlg", iterations=3))
    assert reconstruction.status == Status.DIVERGED
    assert reconstruction.inputs.shape == x.shape
    assert torch.isfinite(reconstruction.inputs).all()


def test_a_broken_observation_fails_without_raising(victim: Callable[..., Victim]) -> None:
    observation, x, _ = victim("lenet")
    wrong = {k: v[..., :1] for k, v in observation.gradients.items()}
    observation = Observation("wrong", observation.model_spec, observation.global_state, wrong)
    (reconstruction,) = invert([observation], AttackSettings(attack="dlg", iterations=3))
    assert reconstruction.status == Status.FAILED
    assert "shape" in reconstruction.message
    assert reconstruction.inputs.shape == x.shape


def test_time_budget_returns_the_best_so_far(victim: Callable[..., Victim]) -> None:
    observation, x, _ = victim("lenet")
    settings = AttackSettings(attack="dlg", optimizer="adam", iterations=10_000,
                              time_budget_s=0.5)
    (reconstruction,) = invert([observation], settings)
    assert reconstruction.status == Status.TIMEOUT
    assert reconstruction.inputs.shape == x.shape
    assert len(reconstruction.loss_history) < 10_000
