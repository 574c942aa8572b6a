"""The strongest-attack mode: every attack that applies, the best reconstruction kept.

For one observation, each candidate attack runs with encoder-aware settings
(attacks/parametrize.py): the analytic recovery first (exact when it is determined, and nearly
free), the rate decoder when the threat model grants public data (attacks/rate_decoder.py), then
iDLG, the smooth-surrogate annealing attack (spiking victims), DLG and GRNN. The
reconstruction kept is chosen by one criterion for all (`rank`), computed on the victim as the
attacker rebuilt it: one that reproduces the observed gradient exactly (`consistency_loss` ~ 0,
e.g. the analytic attack) wins; otherwise the one whose readout features are closest to those the
head's gradient gives away, among those with the labels it gives away (`readout_consistency`,
attacks/readout.py), then the lowest `consistency_loss`. Ground truth has no way in: the entry
point takes the observation and the attacker's settings, nothing else.

The result is the winner's reconstruction, with `attack="strongest"`, `winner` naming the attack
that won and `message` listing every candidate's relative loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn.functional as F

from attacks.analytic import EXACT_RELATIVE_LOSS, analytic, labels_from_features
from attacks.dlg import dlg
from attacks.grnn import grnn
from attacks.idlg import idlg
from attacks.matching import final_loss, rebuild_victim
from attacks.parametrize import encoder_aware
from attacks.rate_decoder import PublicData, rate_decoder
from attacks.readout import observed_features, readout_distance
from attacks.runner import AttackFn, relative_loss
from attacks.settings import AttackSettings
from attacks.smooth import smooth
from attacks.types import Observation, Reconstruction, Status
from fedsnn.core.models import ModelSpec


@dataclass(frozen=True)
class Candidate:
    """One attack of the strongest mode.

    Attributes:
        attack: the attack function (one restart).
        applies: whether it can run against a victim of this spec.
        adapt: the candidate's settings, derived from the strongest mode's.
        needs_public_data: runs only when the threat model grants public images (`public=`).
    """

    attack: AttackFn
    applies: Callable[[ModelSpec], bool]
    adapt: Callable[[ModelSpec, AttackSettings], AttackSettings]
    needs_public_data: bool = False


def _always(_spec: ModelSpec) -> bool:
    return True


def _spiking(spec: ModelSpec) -> bool:
    return spec.is_spiking


def _plain(name: str) -> Callable[[ModelSpec, AttackSettings], AttackSettings]:
    return lambda spec, settings: encoder_aware(spec, settings.with_(attack=name))


def _smooth_settings(spec: ModelSpec, settings: AttackSettings) -> AttackSettings:
    # the smoothed loss is differentiable: L-BFGS gets its line search
    return encoder_aware(spec, settings.with_(attack="smooth", line_search=True))


# name -> candidate, in the order they run (cheapest and most decisive first)
CANDIDATES: dict[str, Candidate] = {
    "analytic": Candidate(analytic, _always, lambda _spec, s: s.with_(attack="analytic")),
    "rate-decoder": Candidate(rate_decoder, _always, lambda _spec, s: s.with_(attack="rate-decoder"),
                              needs_public_data=True),
    "idlg": Candidate(idlg, _always, _plain("idlg")),
    "smooth": Candidate(smooth, _spiking, _smooth_settings),
    "dlg": Candidate(dlg, _always, _plain("dlg")),
    "grnn": Candidate(grnn, _always, _plain("grnn")),
}


def consistency_loss(observation: Observation, reconstruction: Reconstruction,
                     settings: AttackSettings) -> float:
    """How far the gradient of the reconstruction's inputs and hard labels, on the victim the
    attacker rebuilt from the observation, is from the observed gradient (settings.distance); inf
    for a failed or label-less reconstruction. Uses nothing but the observation."""
    labels = reconstruction.labels
    if reconstruction.status == Status.FAILED or labels.numel() != observation.batch_size \
            or bool((labels < 0).any()):
        return math.inf
    victim = rebuild_victim(observation)
    fixed = labels.detach().long()

    def loss_of_logits(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, fixed)

    try:
        return final_loss(victim, reconstruction.inputs, loss_of_logits, settings)
    except (RuntimeError, ValueError):  # inputs of a shape the victim does not take
        return math.inf


def rank(observation: Observation, settings: AttackSettings, reconstruction: Reconstruction,
         loss: float) -> tuple[bool, float, float]:
    """The strongest mode's criterion, lower is better, from the observation alone: a
    reconstruction that reproduces the whole gradient exactly first; then `readout_consistency`
    (on conv-first spiking victims every candidate matches the convolutions' gradients about
    equally badly, while the head's gradient, Σ δ hᵀ, gives the readout features h and the labels
    away exactly); then the whole gradient's consistency loss."""
    if not math.isfinite(loss):
        return (True, math.inf, math.inf)
    if relative_loss(replace(reconstruction, matching_loss=loss), observation, settings) \
            <= EXACT_RELATIVE_LOSS:
        return (False, 0.0, loss)
    return (True, readout_consistency(observation, reconstruction), loss)


def readout_consistency(observation: Observation, reconstruction: Reconstruction) -> float:
    """How far the reconstruction's readout features are from those the head's gradient gives
    away (`attacks.readout.readout_distance`); inf when its labels are not the ones the head
    gives away, or when the head does not give the features away."""
    victim = rebuild_victim(observation)
    try:
        observed = observed_features(observation).rows
    except ValueError:
        return math.inf
    given = labels_from_features(victim, observed, observation)
    if sorted(reconstruction.labels.tolist()) != sorted(given.tolist()):
        return math.inf
    return readout_distance(victim.model, reconstruction.inputs, observed)


def select(candidates: Sequence[tuple[str, Reconstruction, float]],
           observation: Observation | None = None, settings: AttackSettings | None = None
           ) -> tuple[str, Reconstruction, float]:
    """The (name, reconstruction, loss) ranked first by `rank` (given the observation and
    settings), else by the consistency loss alone; the first one on ties."""
    if not candidates:
        raise ValueError("the strongest mode needs at least one candidate")
    if observation is None or settings is None:
        keys = [(False, 0.0, loss) for _, _, loss in candidates]
    else:
        keys = [rank(observation, settings, reconstruction, loss)
                for _, reconstruction, loss in candidates]
    return candidates[min(range(len(candidates)), key=lambda i: (keys[i], i))]


def run_candidates(observation: Observation, settings: AttackSettings, *, seed: int,
                   deadline: float | None = None, names: Sequence[str] | None = None,
                   public: PublicData | None = None) -> list[tuple[str, Reconstruction, float]]:
    """Run each applicable candidate once (one restart) and score it by `consistency_loss`.

    The time left before `deadline` is shared among the candidates still to run. The loop stops
    early once a candidate's relative loss is at or below `settings.accept_loss` (by default
    EXACT_RELATIVE_LOSS: nothing beats a reconstruction that reproduces the gradient exactly).

    Args:
        observation: what the attacker saw.
        settings: the strongest mode's settings (iterations, optimizer, budget, ...).
        seed: seeds every candidate's starting point.
        deadline: `time.monotonic()` value after which no candidate starts (and running ones stop).
        names: candidates to consider (default: all of CANDIDATES, in order).
        public: public same-domain images, if the threat model grants them (candidates that need
            them are left out otherwise).
    """
    chosen = [n for n in (names or CANDIDATES) if CANDIDATES[n].applies(observation.model_spec)
              and (public is not None or not CANDIDATES[n].needs_public_data)]
    results: list[tuple[str, Reconstruction, float]] = []
    for position, name in enumerate(chosen):
        candidate = CANDIDATES[name]
        if deadline is not None and time.monotonic() > deadline and results:
            break
        share = None if deadline is None else \
            time.monotonic() + max(deadline - time.monotonic(), 0.0) / (len(chosen) - position)
        sub_settings = candidate.adapt(observation.model_spec, settings)
        attack = partial(candidate.attack, public=public) if candidate.needs_public_data \
            else candidate.attack
        try:
            reconstruction = attack(observation, sub_settings, seed=seed, deadline=share)
        except Exception as error:  # noqa: BLE001 - one failing candidate must not stop the others
            results.append((name, _failed(observation, name, error), math.inf))
            continue
        loss = consistency_loss(observation, reconstruction, settings)
        results.append((name, reconstruction, loss))
        enough = EXACT_RELATIVE_LOSS if settings.accept_loss is None else settings.accept_loss
        if math.isfinite(loss) and \
                relative_loss(replace(reconstruction, matching_loss=loss), observation, settings) <= enough:
            break
    return results


def _failed(observation: Observation, name: str, error: Exception) -> Reconstruction:
    return Reconstruction(target_id=observation.target_id, attack=name, inputs=torch.zeros(0),
                          labels=torch.full((observation.batch_size,), -1, dtype=torch.long),
                          matching_loss=math.inf, status=Status.FAILED,
                          message=f"{type(error).__name__}: {error}")


def summary(candidates: Sequence[tuple[str, Reconstruction, float]], observation: Observation,
            settings: AttackSettings) -> str:
    """One line per run: each candidate's relative loss (and its head consistency), or why it
    failed."""
    parts = []
    for name, reconstruction, loss in candidates:
        if math.isfinite(loss):
            relative = relative_loss(replace(reconstruction, matching_loss=loss), observation, settings)
            readout = readout_consistency(observation, reconstruction)
            parts.append(f"{name} {relative:.2e} (readout {readout:.2e})")
        else:
            parts.append(f"{name} failed ({reconstruction.message[:120]})")
    return "; ".join(parts)


def strongest(observation: Observation, settings: AttackSettings, *, seed: int,
              deadline: float | None = None, public: PublicData | None = None) -> Reconstruction:
    """Run every applicable attack and keep the reconstruction that reproduces the observed
    gradient best (one restart of each; `invert` repeats this for `settings.restarts`).

    Example:
        >>> invert([observation], AttackSettings(attack="strongest"))[0].winner  # doctest: +SKIP
        'analytic'
    """
    started = time.monotonic()
    candidates = run_candidates(observation, settings, seed=seed, deadline=deadline, public=public)
    name, best, loss = select(candidates, observation, settings)
    if not math.isfinite(loss):
        raise RuntimeError(f"every candidate failed: {summary(candidates, observation, settings)}")
    return replace(best, attack="strongest", winner=name, matching_loss=loss,
                   message=f"won by {name} (relative loss of each, and its readout distance: "
                           f"{summary(candidates, observation, settings)}); {best.message}",
                   seconds=time.monotonic() - started)
