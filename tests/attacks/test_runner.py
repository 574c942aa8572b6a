"""Restarts: the best is chosen by the attacker's own matching loss; nothing in an attack's
signature can carry ground truth; failures are contained."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch

from attacks import ATTACKS, AttackSettings, Reconstruction, Status, invert
from attacks.runner import invert_one
from tests.attacks.victims import Victim

# `public`: the public same-domain images a threat model may grant (disjoint from every client);
# `other_rounds`: the same client's replies in other rounds, observations like `observation`
ALLOWED = {"observation", "observations", "settings", "seed", "deadline", "public", "other_rounds"}


def test_no_parameter_through_which_ground_truth_could_arrive() -> None:
    # vectorize (attacks/batched.py) picks how many targets share an optimization, nothing more
    assert set(inspect.signature(invert).parameters) == {"observations", "settings", "vectorize",
                                                         "public"}
    for name, attack in ATTACKS.items():
        assert set(inspect.signature(attack).parameters) <= ALLOWED, name
    assert set(inspect.signature(invert_one).parameters) == {"attack", "observation", "settings"}


def _fake(losses: dict[int, float]) -> Callable[..., Reconstruction]:
    calls = []

    def attack(observation: object, settings: AttackSettings, *, seed: int,
               deadline: float | None = None) -> Reconstruction:
        calls.append(seed)
        if losses[seed] < 0:
            raise RuntimeError("boom")
        return Reconstruction("t", "fake", torch.full((1, 1, 2, 2), float(seed)),
                              torch.tensor([seed]), matching_loss=losses[seed])

    attack.calls = calls  # type: ignore[attr-defined]
    return attack


def test_lowest_matching_loss_wins_and_failures_are_contained(
        victim: Callable[..., Victim]) -> None:
    observation, _, _ = victim("lenet")
    attack = _fake({10: 5.0, 11: -1.0, 12: 0.5, 13: 2.0})
    best = invert_one(attack, observation, AttackSettings(restarts=4, seed=10))
    assert (best.restart, best.matching_loss, best.status) == (2, 0.5, Status.OK)
    assert attack.calls == [10, 11, 12, 13]  # type: ignore[attr-defined]


def test_all_restarts_failing_gives_a_failed_reconstruction(victim: Callable[..., Victim]) -> None:
    observation, x, _ = victim("lenet")
    best = invert_one(_fake({0: -1.0, 1: -1.0}), observation, AttackSettings(restarts=2))
    assert best.status == Status.FAILED and "boom" in best.message
    assert best.inputs.shape == x.shape and math.isinf(best.matching_loss)


def test_accept_loss_skips_the_remaining_restarts(victim: Callable[..., Victim]) -> None:
    observation, _, _ = victim("lenet")
    attack = _fake({0: 1e-12, 1: 0.0, 2: 0.0})
    invert_one(attack, observation, AttackSettings(restarts=3, accept_loss=1e-6))
    assert attack.calls == [0]  # type: ignore[attr-defined]
