"""Restarts, time budget and failure containment around one attack on one observation."""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Sequence

import torch

from attacks.matching import loss_scale
from attacks.settings import AttackSettings
from attacks.spiking import dummy_shape
from attacks.types import Observation, Reconstruction, Status

AttackFn = Callable[..., Reconstruction]  # (observation, settings, *, seed, deadline)


def failed_reconstruction(observation: Observation, settings: AttackSettings,
                          message: str) -> Reconstruction:
    """A FAILED result of the right shape (zeros), with the reason."""
    shape = dummy_shape(observation.model_spec, observation.batch_size, settings)
    return Reconstruction(target_id=observation.target_id, attack=settings.attack,
                          inputs=torch.zeros(shape),
                          labels=torch.full((observation.batch_size,), -1, dtype=torch.long),
                          matching_loss=math.inf, status=Status.FAILED, message=message)


def rank(reconstruction: Reconstruction) -> tuple[int, float]:
    """Lower is better: any run with a result beats a failed one, then the matching loss."""
    return (reconstruction.status == Status.FAILED, reconstruction.matching_loss)


def relative_loss(reconstruction: Reconstruction, observation: Observation,
                  settings: AttackSettings) -> float:
    """The matching loss on a scale that does not depend on the gradient's size: divided by the
    squared norm of the observed gradient for "l2" (the loss of an all-zero dummy gradient)."""
    return reconstruction.matching_loss / loss_scale(observation.gradients, settings.distance)


def accepted(reconstruction: Reconstruction | None, observation: Observation,
             settings: AttackSettings) -> bool:
    """Whether a result is good enough to stop restarting (`settings.accept_loss`)."""
    return (reconstruction is not None and settings.accept_loss is not None
            and reconstruction.status != Status.FAILED
            and relative_loss(reconstruction, observation, settings) <= settings.accept_loss)


def invert_one(attack: AttackFn, observation: Observation, settings: AttackSettings) -> Reconstruction:
    """Run `settings.restarts` restarts (seeds seed, seed+1, …) and keep the one with the lowest
    gradient-matching loss; stop early once one is good enough (`settings.accept_loss`). Never
    raises: an exception becomes a FAILED reconstruction."""
    started = time.monotonic()
    deadline = None if settings.time_budget_s is None else started + settings.time_budget_s
    best: Reconstruction | None = None
    for restart in range(settings.restarts):
        if best is not None and deadline is not None and time.monotonic() > deadline:
            break
        try:
            candidate = attack(observation, settings, seed=settings.seed + restart, deadline=deadline)
        except Exception as error:  # noqa: BLE001 - a failing attack must never stop the caller
            detail = traceback.format_exception_only(type(error), error)[-1].strip()
            candidate = failed_reconstruction(observation, settings, f"restart {restart}: {detail}")
        candidate.restart = restart
        if best is None or rank(candidate) < rank(best):
            best = candidate
        if accepted(best, observation, settings):
            break
    assert best is not None
    best.seconds = time.monotonic() - started
    return best


def best_of_restarts(observations: Sequence[Observation], settings: AttackSettings,
                     deadline: float | None,
                     run_pass: Callable[[list[int], int], list[Reconstruction]]
                     ) -> list[Reconstruction]:
    """Restarts of a vectorized attack: `run_pass(pending, restart)` attacks the observations
    still pending (indices) from seed + restart, one result each in order; each observation keeps
    its best restart (`rank`) and leaves once `accepted`, as `invert_one` does for one."""
    best: list[Reconstruction | None] = [None] * len(observations)
    pending = list(range(len(observations)))
    for restart in range(settings.restarts):
        if restart and deadline is not None and time.monotonic() > deadline:
            break
        for i, result in zip(pending, run_pass(pending, restart), strict=True):
            result.restart = restart
            if best[i] is None or rank(result) < rank(best[i]):  # type: ignore[arg-type]
                best[i] = result
        pending = [i for i in pending if not accepted(best[i], observations[i], settings)]
        if not pending:
            break
    return [b for b in best if b is not None]
